//! Any bytes as a Multiboot2 kernel: `multiboot2::check` (every problem) never panics, its first
//! problem is `multiboot2::plan`'s, every problem has a field and a message, and an accepted
//! plan's pieces lie in the file and in its image. The same bytes as an ELF's section header
//! table (`multiboot2::sections::read`, the ELF-symbols tag): never a panic, and what it loads
//! lies in the file.
#![no_main]

use hvboot_loader_core::multiboot2;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match (multiboot2::check(data), multiboot2::plan(data)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            for p in &a.pieces {
                assert!(p.offset + p.filesz <= data.len() as u64);
                assert!(p.phys >= a.start && p.phys + p.memsz <= a.end);
            }
        }
        (Err(all), Err(first)) => {
            assert_eq!(all[0], first);
            for e in &all {
                assert!(!e.field.is_empty() && !e.message.is_empty());
            }
        }
        _ => panic!("check and plan disagree"),
    }
    let mut problems = Vec::new();
    if let Some(s) = multiboot2::sections::read(data, &mut problems) {
        assert_eq!(
            s.table.len() as u64,
            u64::from(s.num) * u64::from(s.entsize)
        );
        for l in &s.loads {
            assert!(l.offset + l.size <= data.len() as u64);
            assert!(l.align.is_power_of_two() && l.align <= 4096);
        }
    }
});
