//! Any bytes as /hvboot/hvboot.cfg: the parser never panics; a refusal names a line or the file.
#![no_main]

use hvboot_loader_core::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = config::parse_bytes(data) {
        assert!(!e.field().is_empty() && !e.message.is_empty());
    }
});
