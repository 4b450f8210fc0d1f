//! The GPT lookup (loader/core/src/gpt.rs) on a disk made of the input, its last sector the
//! backup header's place.
#![no_main]

use hvboot_fuzz::InputDisk;
use hvboot_loader_core::gpt::find_esp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sectors = (data.len() as u64).div_ceil(512);
    let _ = find_esp(&mut InputDisk { data, sectors });
});
