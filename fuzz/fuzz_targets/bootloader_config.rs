//! A `bootloader_api` kernel's `.bootloader-config` (loader/core/src/bootloader_api.rs): found
//! in the input as an ELF (with its TLS template and kind), and the input decoded as the
//! section's bytes; a decoded config's layout and what hvboot cannot honour in it.
#![no_main]

use hvboot_loader_core::{bootloader_api, elf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = elf::kind(data);
    let _ = bootloader_api::tls_template(data);
    for found in [
        bootloader_api::find(data),
        bootloader_api::decode(data).map(Some),
    ] {
        if let Ok(Some(c)) = found {
            let _ = c.info_layout();
            for p in bootloader_api::unsupported(&c) {
                assert!(!p.field.is_empty() && !p.message.is_empty());
            }
        }
    }
});
