//! The `bootloader_api` hand-off through the whole flow on the fake platform: the BootInfo read
//! back at the crate's offsets (the layouts of 0.11.0, 0.11.10 and 0.11.17), its memory
//! regions against the fake's allocations, the mappings against the page tables, and the
//! refusals in their exact words. tests/test_bootloader_api.py boots the same in QEMU.

use std::string::ToString;
use std::vec::Vec;

use hvboot_api::{MemoryKind, STACK_REGION_BASE};

use super::fake::{FakeCpu, FakePlatform, FB_PHYS, MIB, RSDP};
use super::{boot, CONFIG_PATH};
use crate::bootloader_api::tests::serialized;
use crate::bootloader_api::CONFIG_SECTION;
use crate::handoff::Handoff;
use crate::paging;
use crate::testing::elf::{build, load, with_sections, KBASE, PF_R, PF_W, PF_X};
use crate::PAGE_SIZE as PAGE;

const KERNEL: &str = "/hvboot/kernel.elf";
const MODULE: &str = "/hvboot/modules/ramdisk.bin";
const PHYS_OFFSET: u64 = 0x4000_0000_0000;

fn kernel(config: &[u8]) -> Vec<u8> {
    let phs = [
        load(PF_R | PF_X, 0x1000, KBASE, 0x2000, 0x2000),
        load(PF_R | PF_W, 0x3000, KBASE + 0x3000, 0x100, 0x2000),
    ];
    with_sections(build(KBASE + 0x10, &phs), &[(CONFIG_SECTION, config)])
}

fn machine(config: &[u8], ramdisk: &[u8]) -> FakePlatform {
    let mut p = FakePlatform::new();
    let cfg = std::format!(
        "hvboot-config 1\nkernel {KERNEL}\ncmdline \nmodule {MODULE}\nmodule-name ramdisk\nmodule-cmdline \n"
    );
    p.file(CONFIG_PATH, cfg)
        .file(KERNEL, kernel(config))
        .file(MODULE, ramdisk.to_vec());
    p
}

fn u64_at(p: &FakePlatform, phys: u64) -> u64 {
    u64::from_le_bytes(p.bytes(phys, 8).try_into().unwrap())
}

fn u32_at(p: &FakePlatform, phys: u64) -> u32 {
    u32::from_le_bytes(p.bytes(phys, 4).try_into().unwrap())
}

fn mapped(p: &FakePlatform, h: &Handoff, virt: u64) -> Option<u64> {
    let arena = super::Platform::phys_offset(p);
    // SAFETY: the tables live in the arena, reached at the platform's offset.
    unsafe { paging::translate(arena, h.cr3, virt) }.map(|t| t.phys)
}

/// Boots a kernel of api version 0.11.`patch` and checks every field it has.
fn boots(patch: u16) {
    let ramdisk: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
    let config = serialized(patch, Some(PHYS_OFFSET), 0x9000);
    let mut p = machine(&config, &ramdisk);
    let h = boot(&mut p, &FakeCpu::new(true), 42).expect("boots");
    let info = h.boot_info - PHYS_OFFSET;
    assert_eq!(h.stack_top % 16, 8, "RSP + 8 aligned, as at a call");
    // api_version: the kernel's own.
    assert_eq!(p.bytes(info, 7), [0, 0, 11, 0, patch as u8, 0, 0]);
    // memory_regions: right behind the struct, sorted, the kernel's allocations the
    // bootloader's, free RAM usable.
    let (regions, n) = (u64_at(&p, info + 8), u64_at(&p, info + 16));
    let size = match patch {
        0 => 160,
        1..=4 => 192,
        5..=13 => 216,
        _ => 232,
    };
    assert_eq!(regions, h.boot_info + size);
    let map: Vec<(u64, u64, u32, u32)> = (0..n)
        .map(|i| {
            let at = info + size + i * 24;
            let kind = (u32_at(&p, at + 16), u32_at(&p, at + 20));
            (u64_at(&p, at), u64_at(&p, at + 8), kind.0, kind.1)
        })
        .collect();
    for w in map.windows(2) {
        assert!(w[0].1 <= w[1].0 && w[0].0 < w[0].1, "{w:x?}");
        assert!(
            w[0].1 < w[1].0 || w[0].2 != w[1].2 || w[0].3 != w[1].3,
            "unmerged {w:x?}"
        );
    }
    let kind_at = |a: u64| map.iter().find(|r| r.0 <= a && a < r.1).map(|r| (r.2, r.3));
    for a in &p.allocations {
        let want = if a.kind == MemoryKind::FRAMEBUFFER.0 {
            (3, 2)
        } else {
            (1, 0)
        };
        assert_eq!(kind_at(a.base), Some(want), "{a:?}");
    }
    assert_eq!(kind_at(300 * MIB), Some((0, 0)), "free RAM is usable");
    // The fake is a BIOS machine: the framebuffer is E820 "reserved".
    assert_eq!(
        kind_at(FB_PHYS),
        Some((3, 2)),
        "the framebuffer: UnknownBios(2)"
    );
    // framebuffer: Some, through the physical-memory mapping, 32-bit BGR.
    assert_eq!(u32_at(&p, info + 24), 0);
    assert_eq!(u64_at(&p, info + 32), FB_PHYS + PHYS_OFFSET);
    let (width, stride) = (u64_at(&p, info + 48), u64_at(&p, info + 80));
    assert_eq!(stride, width);
    assert_eq!(
        (u32_at(&p, info + 88), u64_at(&p, info + 96)),
        (0, PHYS_OFFSET)
    );
    assert_eq!(u32_at(&p, info + 104), 1, "recursive_index: None");
    assert_eq!((u32_at(&p, info + 112), u64_at(&p, info + 120)), (0, RSDP));
    assert_eq!(u32_at(&p, info + 128), 1, "tls_template: None (no PT_TLS)");
    assert_eq!(mapped(&p, &h, PHYS_OFFSET + RSDP), Some(RSDP));
    if patch >= 1 {
        let addr = u64_at(&p, info + 168);
        assert_eq!(
            addr,
            crate::bootloader_api::RAMDISK_WINDOW,
            "its own 4 KiB mapping"
        );
        assert_eq!((u32_at(&p, info + 160), u64_at(&p, info + 176)), (0, 5000));
        let phys = mapped(&p, &h, addr).expect("the ramdisk is mapped");
        assert_eq!(p.bytes(phys, 5000), ramdisk.as_slice());
    }
    if patch >= 5 {
        let (addr, len) = (u64_at(&p, info + 184), u64_at(&p, info + 192));
        assert_eq!(p.bytes(addr, len), kernel(&config).as_slice());
        assert_eq!(u64_at(&p, info + 200), 0);
    }
    if patch >= 14 {
        let (bottom, len) = (u64_at(&p, info + 208), u64_at(&p, info + 216));
        assert_eq!((bottom, len), (STACK_REGION_BASE + PAGE, 0x9000));
        assert_eq!(h.stack_top, bottom + len - 8);
    }
    if patch >= 1 {
        assert_eq!(u64_at(&p, info + size - 8), 0, "_test_sentinel");
    }
}

#[test]
fn every_layout_is_written_at_the_crates_offsets() {
    for patch in [0, 4, 10, 13, 17] {
        boots(patch);
    }
}

#[test]
fn a_fixed_stack_has_its_guard_page_at_the_address() {
    let mut config = serialized(17, None, 0x4000);
    config[31] = 1; // mappings.kernel_stack: FixedAddress
    config[32..40].copy_from_slice(&0x7f00_0000_0000u64.to_le_bytes());
    let mut p = machine(&config, b"rd");
    let h = boot(&mut p, &FakeCpu::new(true), 42).expect("boots");
    assert_eq!(mapped(&p, &h, 0x7f00_0000_0000), None, "guard page");
    assert!(mapped(&p, &h, 0x7f00_0000_1000).is_some());
    assert_eq!(h.stack_top, 0x7f00_0000_1000 + 0x4000 - 8);
    // No physical-memory mapping asked for: the field says None (hvboot maps it anyway).
    let info = h.boot_info - hvboot_api::DEFAULT_DIRECT_MAP_OFFSET;
    assert_eq!(u32_at(&p, info + 88), 1);
}

#[test]
fn refusals_name_the_field_before_the_firmware_is_left() {
    let refusal = |config: Vec<u8>| {
        let mut p = machine(&config, b"rd");
        let e = boot(&mut p, &FakeCpu::new(true), 42).expect_err("refused");
        assert!(!p.exited);
        e.to_string()
    };
    let mut newer = serialized(17, None, 0x4000);
    newer[20] = 18;
    assert_eq!(
        refusal(newer),
        "/hvboot/kernel.elf: .bootloader-config: version: bootloader_api 0.11.18 is not \
         supported: hvboot reads the configs of 0.11.0 to 0.11.17"
    );
    let mut boot_info = serialized(17, None, 0x4000);
    boot_info[49] = 1; // mappings.boot_info: FixedAddress(0)
    assert!(refusal(boot_info).starts_with(
        "/hvboot/kernel.elf: .bootloader-config: mappings.boot_info: FixedAddress(0x0)"
    ));
}

/// `mappings.kernel_base: FixedAddress(a)` moves a position-independent kernel by `a`, as
/// rust-osdev's fixed_kernel_address kernels expect: entered at `a` + its link-time entry, its
/// relocations written with `a`, `kernel_image_offset` = `a`. A fixed-address kernel is refused.
#[test]
fn kernel_base_moves_a_position_independent_kernel() {
    use crate::testing::elf::{pie, rela, PIE_DATA, PIE_RELA, PIE_TEXT};
    const BASE: u64 = 0x1987_6543_0000;
    let mut config = serialized(17, None, 0x4000);
    config[40] = 1; // mappings.kernel_base: FixedAddress(BASE)
    config[41..49].copy_from_slice(&BASE.to_le_bytes());
    let relas = rela(PIE_DATA, ::elf::abi::R_X86_64_RELATIVE, 0x42);
    let dynamic = [
        (::elf::abi::DT_RELA, PIE_RELA),
        (::elf::abi::DT_RELASZ, 24),
        (::elf::abi::DT_RELAENT, 24),
    ];
    let image = with_sections(
        pie(&dynamic, &[(PIE_RELA, &relas)]),
        &[(CONFIG_SECTION, &config)],
    );
    let mut p = machine(&config, b"rd");
    p.file(KERNEL, image);
    let h = boot(&mut p, &FakeCpu::new(true), 42).expect("boots");
    assert_eq!(h.entry, BASE + PIE_TEXT);
    let info = h.boot_info - hvboot_api::DEFAULT_DIRECT_MAP_OFFSET;
    assert_eq!(u64_at(&p, info + 200), BASE, "kernel_image_offset");
    let data = mapped(&p, &h, BASE + PIE_DATA).expect("the data page is mapped");
    assert_eq!(u64_at(&p, data), BASE + 0x42, "relocated with the slide");

    let mut p = machine(&config, b"rd");
    let e = boot(&mut p, &FakeCpu::new(true), 42).expect_err("an ET_EXEC cannot move");
    assert!(e.to_string().starts_with(
        "/hvboot/kernel.elf: .bootloader-config: mappings.kernel_base: \
         FixedAddress(0x198765430000) is not supported: only a position-independent (ET_DYN)"
    ));
}
