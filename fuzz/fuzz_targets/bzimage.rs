//! Any bytes as a Linux bzImage: `linux::check` (every problem) never panics, its first problem
//! is `linux::plan`'s, every problem has a field and a message, and an accepted plan's
//! protected-mode kernel lies in the file and within the room it asks for.
#![no_main]

use hvboot_loader_core::linux;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match (linux::check(data), linux::plan(data)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(a.offset + a.filesz == data.len() as u64);
            assert!(a.filesz <= a.memsz && a.load >= linux::MIN_LOAD);
            assert!(linux::HEADER_START + a.header.header_len <= 0x400);
        }
        (Err(all), Err(first)) => {
            assert_eq!(all[0], first);
            for e in &all {
                assert!(!e.field.is_empty() && !e.message.is_empty());
            }
        }
        _ => panic!("check and plan disagree"),
    }
});
