//! A walk of the 4-level page tables in CR3 (Intel SDM Vol. 3A §4.5), read
//! through the direct map, to check the permissions the loader gave the kernel.

use hvboot_api::BootInfo;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_BIT: u64 = 1 << 7; // PS: a 1 GiB (PDPTE) or 2 MiB (PDE) page
const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 4096;

/// Effective permissions of a mapped page: writable only if every level
/// allows writes, executable only if no level sets XD.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Perms {
    writable: bool,
    executable: bool,
}

/// Translates `virt`'s permissions, or None if it is not mapped (or the tables
/// are outside the direct map).
fn lookup(info: &BootInfo, cr3: u64, virt: u64) -> Option<Perms> {
    let mut table = cr3 & ADDR_MASK;
    let mut perms = Perms {
        writable: true,
        executable: true,
    };
    for level in (0..4).rev() {
        let index = (virt >> (12 + 9 * level)) & 0x1ff;
        let entry_phys = table + index * 8;
        if !info.in_direct_map(entry_phys, 8) {
            return None;
        }
        // SAFETY: a page-table entry inside the direct map (checked).
        let entry =
            unsafe { core::ptr::read_volatile(info.phys_to_virt(entry_phys) as *const u64) };
        if entry & PRESENT == 0 {
            return None;
        }
        perms.writable &= entry & WRITABLE != 0;
        perms.executable &= entry & NO_EXECUTE == 0;
        if level == 0 || ((level == 1 || level == 2) && entry & PAGE_SIZE_BIT != 0) {
            return Some(perms);
        }
        table = entry & ADDR_MASK;
    }
    None
}

/// Whether every page of `start..end` is mapped with exactly `want`.
fn range_has(info: &BootInfo, cr3: u64, start: u64, end: u64, want: Perms) -> bool {
    let mut page = start & !(PAGE - 1);
    while page < end {
        if lookup(info, cr3, page) != Some(want) {
            return false;
        }
        page += PAGE;
    }
    true
}

extern "C" {
    // Defined by crates/hvboot-api/kernel.ld; page aligned.
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
}

/// Text R-X, rodata R-- NX, data/bss RW- NX, entry stack RW- NX.
pub fn kernel_permissions_ok(info: &BootInfo, cr3: u64) -> bool {
    let addr = |p: *const u8| p as u64;
    // Only the addresses of the linker-script symbols are taken (safe with &raw).
    let text = (addr(&raw const __text_start), addr(&raw const __text_end));
    let rodata = (
        addr(&raw const __rodata_start),
        addr(&raw const __rodata_end),
    );
    let data = (addr(&raw const __data_start), addr(&raw const __data_end));
    let rx = Perms {
        writable: false,
        executable: true,
    };
    let r = Perms {
        writable: false,
        executable: false,
    };
    let rw = Perms {
        writable: true,
        executable: false,
    };
    let stack = (info.stack_top.wrapping_sub(info.stack_size), info.stack_top);
    range_has(info, cr3, text.0, text.1, rx)
        && range_has(info, cr3, rodata.0, rodata.1, r)
        && range_has(info, cr3, data.0, data.1, rw)
        && info.stack_size != 0
        && range_has(info, cr3, stack.0, stack.1, rw)
}
