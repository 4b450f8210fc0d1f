use alloc::vec::Vec;

use super::*;
use crate::elf::{kind, KernelKind};
use crate::testing::limine::{end, kernel, request, start, tag, DATA};

const HHDM: [u64; 2] = KNOWN[4].1;
const STACK: [u64; 2] = KNOWN[3].1;

fn words(parts: &[Vec<u64>]) -> Vec<u64> {
    parts.concat()
}

fn problems(image: &[u8]) -> Vec<Problem> {
    verdict(image).problems
}

/// What the scan found in a kernel with no problem of its own.
fn accepted(image: &[u8]) -> Found {
    assert_eq!(problems(image), []);
    verdict(image).found
}

#[test]
fn a_tag_and_requests_make_a_limine_kernel_and_are_found_at_their_addresses() {
    let w = words(&[tag(3), request(HHDM, 0, 0), request(STACK, 0, 1)]);
    let image = kernel(&w);
    assert_eq!(kind(&image), Some(KernelKind::Limine));
    let found = accepted(&image);
    assert_eq!(found.tag, Some((DATA, 0x2000, 3)));
    assert_eq!(found.base_revision(), 3);
    let names: Vec<_> = found.requests.iter().map(|r| r.name()).collect();
    assert_eq!(names, [Some("HHDM"), Some("stack size")]);
    assert_eq!(found.requests[0].vaddr, DATA + 24);
    assert_eq!(found.requests[1].vaddr, DATA + 24 + 48);
    assert_eq!(found.request("HHDM").unwrap().offset, 0x2000 + 24);
}

#[test]
fn requests_alone_make_a_limine_kernel_but_without_a_tag_it_is_revision_0_and_refused() {
    let image = kernel(&request(HHDM, 0, 0));
    assert_eq!(kind(&image), Some(KernelKind::Limine));
    let p = problems(&image);
    assert_eq!(p[0].field, "limine base revision");
    assert!(
        p[0].message
            .starts_with("none (base revision 0, deprecated)"),
        "{}",
        p[0]
    );
}

#[test]
fn without_magic_it_is_an_hvboot_kernel() {
    assert_eq!(kind(&kernel(&[1, 2, 3])), Some(KernelKind::HvbootElf));
}

#[test]
fn a_revision_hvboot_does_not_boot_with_is_named() {
    for r in [0, 7, 8, 1 << 40] {
        let image = kernel(&tag(r));
        let p = problems(&image);
        assert_eq!(p[0].field, "limine base revision");
        assert_eq!(
            p[0].message,
            format!("{r} (tag at {DATA:#x}): hvboot boots base revisions 1 to 6")
        );
    }
    for r in SUPPORTED_REVISIONS {
        accepted(&kernel(&tag(r)));
    }
}

#[test]
fn only_what_lies_between_the_last_start_and_the_first_end_marker_counts() {
    let w = words(&[
        request(STACK, 0, 1),
        start(),
        tag(9),
        start(),
        tag(2),
        request(HHDM, 1, 0),
        end(),
        request(KNOWN[0].1, 0, 0),
        end(),
    ]);
    let found = accepted(&kernel(&w));
    assert_eq!(found.base_revision(), 2);
    assert_eq!(found.requests.len(), 1);
    assert_eq!(found.requests[0].name(), Some("HHDM"));
    assert_eq!(found.requests[0].revision, 1);
    let first_start = DATA + 7 * 8;
    assert_eq!(found.markers.0, Some(first_start + 32 + 24));
}

#[test]
fn a_request_made_twice_and_two_tags_are_refused() {
    let w = words(&[tag(3), request(HHDM, 0, 0), tag(3), request(HHDM, 0, 0)]);
    let p = problems(&kernel(&w));
    let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
    let second = DATA + 24 + 48 + 24;
    assert_eq!(
        fields,
        [
            "limine base revision",
            &format!("limine HHDM request at {second:#x}")
        ]
    );
    assert!(p[1]
        .message
        .starts_with(&format!("made twice, at {:#x}", DATA + 24)));
}

#[test]
fn an_unknown_request_is_found_and_named_by_its_id() {
    let w = words(&[tag(3), request([1, 2], 0, 0)]);
    let found = accepted(&kernel(&w));
    assert_eq!(found.requests[0].name(), None);
    assert!(found.requests[0]
        .describe()
        .starts_with("request 0x0000000000000001:0x0000000000000002"));
}

#[test]
fn a_request_cut_off_by_the_segment_end_is_refused() {
    // The stack-size request needs 56 bytes; put it 48 bytes before the data page's end.
    let mut w = [0u64; 512].to_vec();
    w[..3].copy_from_slice(&tag(3));
    let r = request(STACK, 0, 0);
    w[506..].copy_from_slice(&r);
    let p = problems(&kernel(&w));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        p[0].message,
        "cut off by its segment's file end: 56 bytes expected, 48 there"
    );
}

#[test]
fn a_lower_half_kernel_is_refused_by_name() {
    use crate::testing::elf::{build, load, PF_R, PF_X};
    let mut f = build(
        0x20_0000,
        &[load(PF_R | PF_X, 0x1000, 0x20_0000, 0x1000, 0x1000)],
    );
    f[0x1000..0x1018].copy_from_slice(
        &tag(3)
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    assert_eq!(kind(&f), Some(KernelKind::Limine));
    let p = problems(&f);
    assert_eq!(p[0].field, "limine image");
}

#[test]
fn scanning_never_panics_on_cut_or_odd_images() {
    let image = kernel(&words(&[tag(3), request(HHDM, 0, 0)]));
    for len in (0..image.len()).step_by(97) {
        let _ = is_limine(&image[..len]);
        let _ = verdict(&image[..len]);
    }
}

/// A seeded mutator (on stable, a few thousand cases) over a Limine kernel's program headers and
/// requests: `verdict` never panics, every problem names a field, and every request it finds
/// lies between the markers, 8-byte aligned, inside the file, its ID once. The same invariants as
/// the `limine` fuzz target.
#[test]
fn mutated_kernels_never_panic_and_keep_the_scan_rules() {
    let w = words(&[
        start(),
        tag(3),
        request(HHDM, 0, 0),
        request(STACK, 0, 1),
        end(),
    ]);
    let good = kernel(&w);
    let spots = [(0usize, 64 + 2 * 56), (0x2000, 0x2000 + w.len() * 8)];
    let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..5000 {
        let mut f = good.clone();
        for _ in 0..1 + next() % 4 {
            let (from, to) = spots[(next() % 2) as usize];
            let at = from + (next() as usize) % (to - from);
            f[at] = next() as u8;
        }
        let v = verdict(&f);
        assert!(v.plan.is_some() || !v.problems.is_empty());
        for p in &v.problems {
            assert!(!p.field.is_empty() && !p.message.is_empty());
        }
        let found = &v.found;
        let (from, to) = (
            found.markers.0.map_or(0, |s| s + 32),
            found.markers.1.unwrap_or(u64::MAX),
        );
        for (i, r) in found.requests.iter().enumerate() {
            assert!(r.vaddr % 8 == 0 && from <= r.vaddr && r.vaddr < to);
            assert!(r.offset + REQUEST_HEADER <= f.len() as u64);
            assert!(found.requests[..i].iter().all(|q| q.id != r.id));
        }
    }
}
