//! Any bytes as a kernel: `elf::check` (every problem) never panics, its first problem is
//! `elf::plan`'s, every problem has a field and a message, and `request::find` never panics.
#![no_main]

use hvboot_loader_core::{elf, request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match (elf::check(data), elf::plan(data)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(all), Err(first)) => {
            assert_eq!(all[0].to_string(), first.to_string());
            for e in &all {
                assert!(!e.message().is_empty());
                assert!(!e.field().is_empty() || data.is_empty());
            }
        }
        _ => panic!("check and plan disagree"),
    }
    let _ = elf::kind(data);
    let _ = request::find(data);
});
