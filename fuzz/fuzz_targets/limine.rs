//! Any bytes as a Limine kernel: `limine::is_limine` and `limine::verdict` (the ELF rules, then
//! the scan for the base-revision tag, the markers and the requests) never panic; every problem
//! has a message and a field (but for an empty file, which the file's name alone locates); every request found lies between the markers, in a segment's file
//! bytes, 8-byte aligned, its ID made once.
#![no_main]

use hvboot_loader_core::limine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = limine::is_limine(data);
    let v = limine::verdict(data);
    assert!(v.plan.is_some() || !v.problems.is_empty());
    for p in &v.problems {
        assert!(!p.message.is_empty() && (!p.field.is_empty() || data.is_empty()));
    }
    let f = &v.found;
    let (from, to) = (f.markers.0.map_or(0, |s| s + 32), f.markers.1.unwrap_or(u64::MAX));
    for (i, r) in f.requests.iter().enumerate() {
        assert!(r.vaddr % 8 == 0 && from <= r.vaddr && r.vaddr < to);
        assert!(r.offset + limine::REQUEST_HEADER <= data.len() as u64);
        assert!(f.requests[..i].iter().all(|q| q.id != r.id));
    }
});
