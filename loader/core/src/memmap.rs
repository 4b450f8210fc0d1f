//! Normalisation of the memory map handed to the kernel.
//!
//! The loader gathers regions from the firmware (UEFI `GetMemoryMap`, UEFI
//! 2.10 §7.2; later the BIOS E820 map) and adds its own (kernel, modules,
//! page tables, ...). [`normalize`] turns that list into the form the boot
//! protocol promises: sorted by base, non-overlapping, adjacent regions of
//! the same kind merged, no empty regions. Where regions overlap, the kind
//! with the higher priority wins the overlapped bytes.
//!
//! [`normalize`] does not allocate when the vector's capacity is at least
//! [`normalize_capacity`]`(len)`, so the loader can run it after
//! `ExitBootServices` on a vector it reserved beforehand.

use alloc::vec::Vec;

/// Memory region kinds of the boot protocol.
///
/// These are the protocol's numbers; keep them in this one block so they can
/// be replaced by the generated protocol constants.
pub mod kind {
    /// Free RAM the kernel may use.
    pub const USABLE: u32 = 1;
    /// Not RAM, or RAM the firmware keeps (includes MMIO, runtime services).
    pub const RESERVED: u32 = 2;
    /// ACPI tables; usable once the kernel has read them.
    pub const ACPI_RECLAIMABLE: u32 = 3;
    /// ACPI non-volatile storage; must be preserved.
    pub const ACPI_NVS: u32 = 4;
    /// RAM reported as faulty.
    pub const BAD: u32 = 5;
    /// The loader's own code and data; usable once the kernel is done with
    /// the boot information.
    pub const LOADER_RECLAIMABLE: u32 = 6;
    /// The loaded kernel image.
    pub const KERNEL: u32 = 7;
    /// Loaded modules.
    pub const MODULES: u32 = 8;
    /// The boot information structure (and what it points to).
    pub const BOOT_INFO: u32 = 9;
    /// The page tables the loader built for the kernel.
    pub const PAGE_TABLES: u32 = 10;
    /// The framebuffer.
    pub const FRAMEBUFFER: u32 = 11;
    /// The kernel's initial stack.
    pub const KERNEL_STACK: u32 = 12;
    /// Guest memory the kernel asked for (`.hvboot_request`); never touched by the loader.
    pub const GUEST_RESERVED: u32 = 13;
    /// The AP start-up page below 1 MiB the kernel asked for.
    pub const AP_TRAMPOLINE: u32 = 14;
    /// The highest kind number defined above.
    pub const MAX: u32 = 14;
}

/// A physical memory region `base..base + length` of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// Physical start address.
    pub base: u64,
    /// Length in bytes.
    pub length: u64,
    /// One of the [`kind`] constants.
    pub kind: u32,
}

impl Region {
    /// End (exclusive) of the region. Saturates at `u64::MAX`: a region
    /// cannot cover the very last byte of the physical address space.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

/// The default priority of each kind when regions overlap.
///
/// Lowest to highest: usable; loader-reclaimable; the loader's own
/// allocations (kernel, modules, boot info, page tables, kernel stack,
/// framebuffer, guest reservation, AP trampoline); then what the firmware says is not free: ACPI reclaimable,
/// reserved (and unknown kinds), ACPI NVS, bad. So a loader allocation is
/// never reported as usable, and firmware truth is never overwritten by
/// usable memory or by the loader.
pub fn default_priority(k: u32) -> u8 {
    match k {
        kind::USABLE => 0,
        kind::LOADER_RECLAIMABLE => 1,
        kind::KERNEL => 10,
        kind::MODULES => 11,
        kind::BOOT_INFO => 12,
        kind::PAGE_TABLES => 13,
        kind::KERNEL_STACK => 14,
        kind::FRAMEBUFFER => 15,
        kind::GUEST_RESERVED => 16,
        kind::AP_TRAMPOLINE => 17,
        kind::ACPI_RECLAIMABLE => 20,
        kind::RESERVED => 21,
        kind::ACPI_NVS => 22,
        kind::BAD => 23,
        _ => 21,
    }
}

/// First of the EFI memory types reserved for OS loaders (UEFI 2.10 §7.2.1,
/// `EFI_MEMORY_TYPE` values `0x80000000..=0xFFFFFFFF`).
pub const EFI_OS_LOADER_TYPE_BASE: u32 = 0x8000_0000;

/// The EFI memory type the loader allocates pages of `kind` with, so that the
/// firmware's memory map already tells the loader's allocations apart.
pub const fn efi_type_for_kind(k: u32) -> u32 {
    EFI_OS_LOADER_TYPE_BASE | k
}

/// Maps an `EFI_MEMORY_TYPE` (UEFI 2.10 §7.2.1 `AllocatePages()`, the
/// table "Memory Type Usage after ExitBootServices()") to a region kind, as
/// seen after `ExitBootServices`:
///
/// | EFI type | kind |
/// | --- | --- |
/// | 0 EfiReservedMemoryType | RESERVED |
/// | 1 EfiLoaderCode, 2 EfiLoaderData | LOADER_RECLAIMABLE |
/// | 3 EfiBootServicesCode, 4 EfiBootServicesData | USABLE |
/// | 5 EfiRuntimeServicesCode, 6 EfiRuntimeServicesData | RESERVED (the firmware keeps them) |
/// | 7 EfiConventionalMemory | USABLE |
/// | 8 EfiUnusableMemory | BAD |
/// | 9 EfiACPIReclaimMemory | ACPI_RECLAIMABLE |
/// | 10 EfiACPIMemoryNVS | ACPI_NVS |
/// | 11 EfiMemoryMappedIO, 12 EfiMemoryMappedIOPortSpace, 13 EfiPalCode | RESERVED |
/// | 14 EfiPersistentMemory | RESERVED (the protocol has no persistent kind; the kernel must not use it as scratch RAM) |
/// | 15 EfiUnacceptedMemoryType | RESERVED (must be accepted before use) |
/// | `0x80000000 + k`, `k` a kind | `k` (the loader's own allocations) |
/// | anything else (OEM types, unknown OS-loader types) | RESERVED |
pub fn efi_type_to_kind(efi_type: u32) -> u32 {
    match efi_type {
        0 => kind::RESERVED,
        1 | 2 => kind::LOADER_RECLAIMABLE,
        3 | 4 => kind::USABLE,
        5 | 6 => kind::RESERVED,
        7 => kind::USABLE,
        8 => kind::BAD,
        9 => kind::ACPI_RECLAIMABLE,
        10 => kind::ACPI_NVS,
        11..=13 => kind::RESERVED,
        14 => kind::RESERVED,
        15 => kind::RESERVED,
        t if t >= EFI_OS_LOADER_TYPE_BASE => {
            let k = t - EFI_OS_LOADER_TYPE_BASE;
            if (1..=kind::MAX).contains(&k) {
                k
            } else {
                kind::RESERVED
            }
        }
        _ => kind::RESERVED,
    }
}

/// A capacity with which [`normalize`] never allocates, for `len` input
/// regions: the input plus at most `2 * len - 1` output regions (n regions
/// have at most 2n boundaries).
pub const fn normalize_capacity(len: usize) -> usize {
    3 * len
}

/// Normalises a memory map in place: sorted by base, non-overlapping,
/// adjacent regions of the same kind merged, zero-length regions removed.
///
/// Where regions overlap, each overlapped byte gets the kind with the highest
/// `priority` (ties: the higher kind number), splitting regions as needed.
/// Bytes covered by no region stay uncovered.
///
/// Runs in O(n²) time for n regions (memory maps have at most a few hundred
/// entries). The output is built after the input in the same vector, so it
/// allocates nothing if `regions.capacity()` is at least `len + output len`;
/// [`normalize_capacity`]`(len)` always suffices.
pub fn normalize(regions: &mut Vec<Region>, priority: impl Fn(u32) -> u8) {
    regions.retain(|r| r.end() > r.base);
    let n = regions.len();
    let rank = |k: u32| (priority(k), k);

    // Sweep the address space from boundary to boundary; the output is
    // appended after the n input regions, which are then drained.
    let mut pos = match regions.iter().map(|r| r.base).min() {
        Some(base) => base,
        None => return,
    };
    loop {
        // The winning kind at `pos`, and the next boundary after `pos`.
        let mut best: Option<u32> = None;
        let mut next: Option<u64> = None;
        for r in &regions[..n] {
            let end = r.end();
            if r.base <= pos && pos < end {
                if best.is_none_or(|b| rank(r.kind) > rank(b)) {
                    best = Some(r.kind);
                }
                next = Some(next.map_or(end, |x| x.min(end)));
            } else if r.base > pos {
                next = Some(next.map_or(r.base, |x| x.min(r.base)));
            }
        }
        if let (Some(k), Some(end)) = (best, next) {
            match regions[n..].last_mut() {
                Some(last) if last.kind == k && last.end() == pos => {
                    last.length = end - last.base;
                }
                _ => regions.push(Region {
                    base: pos,
                    length: end - pos,
                    kind: k,
                }),
            }
        }
        match next {
            Some(x) => pos = x,
            None => break,
        }
    }
    regions.drain(..n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn r(base: u64, length: u64, kind: u32) -> Region {
        Region { base, length, kind }
    }

    fn norm(mut v: Vec<Region>) -> Vec<Region> {
        normalize(&mut v, default_priority);
        v
    }

    #[test]
    fn empty_and_zero_length() {
        assert_eq!(norm(vec![]), vec![]);
        assert_eq!(norm(vec![r(0x1000, 0, kind::USABLE)]), vec![]);
    }

    #[test]
    fn sorts_and_merges() {
        let out = norm(vec![
            r(0x3000, 0x1000, kind::USABLE),
            r(0x1000, 0x1000, kind::USABLE),
            r(0x2000, 0x1000, kind::USABLE),
            r(0x5000, 0x1000, kind::USABLE), // gap at 0x4000
            r(0x6000, 0x1000, kind::RESERVED),
        ]);
        assert_eq!(
            out,
            vec![
                r(0x1000, 0x3000, kind::USABLE),
                r(0x5000, 0x1000, kind::USABLE),
                r(0x6000, 0x1000, kind::RESERVED),
            ]
        );
    }

    #[test]
    fn loader_allocation_splits_usable() {
        let out = norm(vec![
            r(0, 0x10_0000, kind::USABLE),
            r(0x2000, 0x3000, kind::KERNEL),
        ]);
        assert_eq!(
            out,
            vec![
                r(0, 0x2000, kind::USABLE),
                r(0x2000, 0x3000, kind::KERNEL),
                r(0x5000, 0x10_0000 - 0x5000, kind::USABLE),
            ]
        );
    }

    #[test]
    fn usable_never_overwrites_firmware_reservations() {
        let out = norm(vec![
            r(0x1000, 0x1000, kind::RESERVED),
            r(0, 0x10000, kind::USABLE),
            r(0x8000, 0x1000, kind::BAD),
            r(0x8000, 0x2000, kind::KERNEL),
        ]);
        assert_eq!(
            out,
            vec![
                r(0, 0x1000, kind::USABLE),
                r(0x1000, 0x1000, kind::RESERVED),
                r(0x2000, 0x6000, kind::USABLE),
                r(0x8000, 0x1000, kind::BAD),
                r(0x9000, 0x1000, kind::KERNEL),
                r(0xa000, 0x6000, kind::USABLE),
            ]
        );
    }

    #[test]
    fn region_at_top_of_address_space() {
        let out = norm(vec![
            r(u64::MAX - 0xfff, 0x1000, kind::RESERVED),
            r(u64::MAX - 0x1fff, 0x1000, kind::RESERVED),
        ]);
        assert_eq!(out, vec![r(u64::MAX - 0x1fff, 0x1fff, kind::RESERVED)]);
    }

    #[test]
    fn does_not_allocate_with_spare_capacity() {
        let mut v = Vec::with_capacity(30);
        v.extend_from_slice(&[
            r(0, 0x10000, kind::USABLE),
            r(0x1000, 0x1000, kind::KERNEL),
            r(0x3000, 0x1000, kind::MODULES),
            r(0x5000, 0x1000, kind::PAGE_TABLES),
            r(0x7000, 0x1000, kind::BOOT_INFO),
        ]);
        let ptr = v.as_ptr();
        let cap = v.capacity();
        normalize(&mut v, default_priority);
        assert_eq!(v.len(), 9);
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, cap));

        // Worst case: nested regions, each of higher priority than the one
        // around it, give 2n - 1 output regions.
        let n = 12u64;
        let mut v = Vec::with_capacity(normalize_capacity(n as usize));
        v.extend((0..n).map(|i| r(i, 2 * n - 2 * i, i as u32)));
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        normalize(&mut v, |k| k as u8);
        assert_eq!(v.len() as u64, 2 * n - 1);
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, cap));
    }

    #[test]
    fn default_priorities_are_distinct_for_known_kinds() {
        let mut p: Vec<u8> = (1..=kind::MAX).map(default_priority).collect();
        p.sort();
        p.dedup();
        assert_eq!(p.len(), kind::MAX as usize);
        let usable = default_priority(kind::USABLE);
        for k in 2..=kind::MAX {
            assert!(default_priority(k) > usable);
        }
        for own in [
            kind::KERNEL,
            kind::MODULES,
            kind::BOOT_INFO,
            kind::PAGE_TABLES,
            kind::KERNEL_STACK,
            kind::GUEST_RESERVED,
            kind::AP_TRAMPOLINE,
        ] {
            assert!(own_below_firmware(own));
            assert!(default_priority(own) > default_priority(kind::LOADER_RECLAIMABLE));
        }
    }

    fn own_below_firmware(own: u32) -> bool {
        [
            kind::RESERVED,
            kind::ACPI_RECLAIMABLE,
            kind::ACPI_NVS,
            kind::BAD,
        ]
        .iter()
        .all(|&fw| default_priority(fw) > default_priority(own))
    }

    #[test]
    fn efi_types() {
        let table = [
            (0, kind::RESERVED),
            (1, kind::LOADER_RECLAIMABLE),
            (2, kind::LOADER_RECLAIMABLE),
            (3, kind::USABLE),
            (4, kind::USABLE),
            (5, kind::RESERVED),
            (6, kind::RESERVED),
            (7, kind::USABLE),
            (8, kind::BAD),
            (9, kind::ACPI_RECLAIMABLE),
            (10, kind::ACPI_NVS),
            (11, kind::RESERVED),
            (12, kind::RESERVED),
            (13, kind::RESERVED),
            (14, kind::RESERVED),
            (15, kind::RESERVED),
            (16, kind::RESERVED),
            (0x7000_0000, kind::RESERVED),
            (0x8000_0000, kind::RESERVED),
            (0x8000_0000 + kind::MAX + 1, kind::RESERVED),
            (u32::MAX, kind::RESERVED),
        ];
        for (t, k) in table {
            assert_eq!(efi_type_to_kind(t), k, "EFI type {t:#x}");
        }
        for k in 1..=kind::MAX {
            assert_eq!(efi_type_to_kind(efi_type_for_kind(k)), k);
        }
        assert_eq!(efi_type_for_kind(kind::KERNEL), 0x8000_0007);
    }

    /// xorshift64*: a small deterministic PRNG for the randomised checks.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The kind an address has in `regions` (max priority, ties to the
    /// higher kind), computed independently of `normalize`.
    fn oracle(regions: &[Region], addr: u64, priority: &dyn Fn(u32) -> u8) -> Option<u32> {
        regions
            .iter()
            .filter(|r| r.base <= addr && addr < r.end())
            .map(|r| (priority(r.kind), r.kind))
            .max()
            .map(|(_, k)| k)
    }

    fn check_invariants(out: &[Region]) {
        for w in out.windows(2) {
            assert!(w[0].base < w[1].base, "not sorted: {w:?}");
            assert!(w[0].end() <= w[1].base, "overlap: {w:?}");
            assert!(
                !(w[0].end() == w[1].base && w[0].kind == w[1].kind),
                "not merged: {w:?}"
            );
        }
        assert!(out.iter().all(|r| r.length > 0));
    }

    fn random_case(rng: &mut Rng, priority: &dyn Fn(u32) -> u8) {
        let n = rng.below(12) as usize;
        // Small coordinates (in 256-byte units over a 16 KiB window) so that
        // regions overlap, touch and nest often.
        let input: Vec<Region> = (0..n)
            .map(|_| {
                let base = rng.below(64) * 256 + if rng.below(8) == 0 { 1 } else { 0 };
                let length = match rng.below(6) {
                    0 => 0,
                    1 => rng.below(4096),
                    _ => rng.below(32) * 256,
                };
                r(base, length, 1 + rng.below(kind::MAX as u64 + 1) as u32)
            })
            .collect();
        let mut out = input.clone();
        out.reserve_exact(normalize_capacity(n) - n);
        let (ptr, cap) = (out.as_ptr(), out.capacity());
        normalize(&mut out, priority);
        assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap), "allocated");
        check_invariants(&out);

        // Every boundary, its neighbours and random addresses.
        let mut samples: Vec<u64> = Vec::new();
        for reg in input.iter().chain(out.iter()) {
            for a in [reg.base, reg.end()] {
                samples.extend([a.saturating_sub(1), a, a + 1]);
            }
        }
        samples.extend((0..64).map(|_| rng.below(64 * 256 + 32 * 256 + 4096)));
        for addr in samples {
            let expected = oracle(&input, addr, priority);
            let got = out
                .iter()
                .find(|reg| reg.base <= addr && addr < reg.end())
                .map(|reg| reg.kind);
            assert_eq!(
                got, expected,
                "addr {addr:#x}\ninput {input:?}\noutput {out:?}"
            );
        }
    }

    #[test]
    fn randomised_against_oracle_default_priority() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            random_case(&mut rng, &default_priority);
        }
    }

    #[test]
    fn randomised_against_oracle_with_ties() {
        // Few priority levels: many ties, broken by the kind number.
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let coarse = |k: u32| (k % 3) as u8;
        for _ in 0..5000 {
            random_case(&mut rng, &coarse);
        }
    }

    #[test]
    fn exhaustive_two_regions() {
        // Every placement of two regions on a grid of 6 points, every pair
        // of kinds from a small set.
        let kinds = [kind::USABLE, kind::KERNEL, kind::RESERVED];
        for a0 in 0..6u64 {
            for a1 in a0..6 {
                for b0 in 0..6u64 {
                    for b1 in b0..6 {
                        for &ka in &kinds {
                            for &kb in &kinds {
                                let input = vec![r(a0, a1 - a0, ka), r(b0, b1 - b0, kb)];
                                let out = norm(input.clone());
                                check_invariants(&out);
                                for addr in 0..7 {
                                    let got = out
                                        .iter()
                                        .find(|reg| reg.base <= addr && addr < reg.end())
                                        .map(|reg| reg.kind);
                                    assert_eq!(
                                        got,
                                        oracle(&input, addr, &default_priority),
                                        "{input:?} -> {out:?} at {addr}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
