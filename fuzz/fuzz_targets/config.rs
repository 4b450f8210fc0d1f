//! The loader config parser (loader/core/src/config.rs) on the input as text.
#![no_main]

use hvboot_loader_core::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = config::parse(text);
    }
});
