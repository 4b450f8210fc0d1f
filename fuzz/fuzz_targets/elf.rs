//! Any bytes as a kernel (loader/core/src/elf.rs, request.rs): `elf::check` (every problem) never
//! panics and its first problem is `elf::plan`'s, every problem has a field and a message,
//! `request::find` never panics, and an accepted plan is laid out as the loader does (up to
//! 64 MiB).
#![no_main]

use hvboot_loader_core::{elf, request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = elf::kind(data);
    let _ = request::find(data);
    match (elf::check(data), elf::plan(data)) {
        (Ok(checked), Ok(plan)) => {
            assert_eq!(checked, plan);
            let _ = plan.phys_base();
            if plan.size() <= 64 << 20 {
                let mut dest = vec![0u8; plan.size() as usize];
                plan.copy_into(data, &mut dest);
            }
        }
        (Err(all), Err(first)) => {
            assert_eq!(all[0].to_string(), first.to_string());
            for e in &all {
                assert!(!e.message().is_empty());
                assert!(!e.field().is_empty() || data.is_empty());
            }
        }
        _ => panic!("elf::check and elf::plan disagree"),
    }
});
