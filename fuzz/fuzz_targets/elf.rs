//! The kernel ELF checks and load plan (loader/core/src/elf.rs); an accepted plan is laid out
//! as the loader does (up to 64 MiB).
#![no_main]

use hvboot_loader_core::elf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = elf::plan(data) {
        let _ = plan.phys_base();
        if plan.size() <= 64 << 20 {
            let mut dest = vec![0u8; plan.size() as usize];
            plan.copy_into(data, &mut dest);
        }
    }
});
