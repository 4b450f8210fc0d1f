//! The kernel request header (loader/core/src/request.rs): found in the input as an ELF, and
//! the input parsed as the section's bytes.
#![no_main]

use hvboot_loader_core::request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = request::find(data);
    let _ = request::parse(data);
});
