//! Platform-free logic shared by the hvboot loaders (UEFI and BIOS).
//!
//! Everything here is `no_std` + `alloc` and touches no firmware interface, so
//! it runs unchanged inside the UEFI application and is unit-tested on the
//! host with `cargo test`:
//!
//! - [`config`]: the loader config file the host toolkit writes on the ESP.
//! - [`elf`]: validation of the kernel ELF and its load plan.
//! - [`paging`]: x86_64 4-level page tables for the kernel's address space.
//! - [`biostables`]: the RSDP / SMBIOS scans of BIOS memory.
//! - [`fat`]: a read-only FAT16/FAT32 reader and the GPT ESP lookup (BIOS path).
//! - [`memmap`]: normalisation of the memory map handed to the kernel.
//! - [`flow`]: the boot flow itself, in phases, over the [`flow::Platform`] and [`flow::Cpu`]
//!   interfaces; it returns a hand-off plan.
//! - [`protocols`]: the boot protocols' hand-offs (hvboot's own `BootInfo`).
//! - [`handoff`]: the trampoline that switches to the kernel's tables and jumps.
//! - [`heap`]: the loaders' bump heap.
//! - [`request`]: the kernel's `.hvboot_request` section, found and checked.
//! - [`hv`]: the virtualization report and the CPU list handed to hypervisor kernels.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod biostables;
pub mod bootloader_api;
pub mod config;
pub mod digest;
pub mod elf;
pub mod fat;
pub mod flow;
#[cfg(test)]
mod fuzz_found;
pub mod gpt;
pub mod handoff;
pub mod heap;
pub mod hv;
pub mod ioapic;
pub mod iommu;
pub mod limine;
pub mod linux;
pub mod memmap;
pub mod mmio;
pub mod multiboot2;
pub mod paging;
pub mod pin;
pub mod protocols;
pub mod reloc;
pub mod request;
pub mod rtc;
#[cfg(test)]
pub mod testing;
pub mod trampoline;

/// The loader's name, as reported to the kernel and on the console.
pub const LOADER_NAME: &str = "hvboot";

/// The loader's version (this crate's version).
pub const LOADER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Size of a 4 KiB page (Intel SDM Vol. 3A §4.5, 4-level paging).
pub const PAGE_SIZE: u64 = 4096;

/// Rounds `value` up to a multiple of `align`, which must be a power of two.
///
/// Returns `None` if the result does not fit in a `u64`.
#[inline]
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Rounds `value` down to a multiple of `align`, which must be a power of two.
#[inline]
pub const fn align_down(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    value & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_helpers() {
        assert_eq!(align_up(0, 4096), Some(0));
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(4097, 4096), Some(8192));
        assert_eq!(align_up(u64::MAX, 4096), None);
        assert_eq!(align_up(u64::MAX - 4095, 4096), Some(u64::MAX - 4095));
        assert_eq!(align_down(0, 4096), 0);
        assert_eq!(align_down(4095, 4096), 0);
        assert_eq!(align_down(8191, 4096), 4096);
        assert_eq!(align_down(u64::MAX, 1 << 21), 0xffff_ffff_ffe0_0000);
        assert_eq!(align_up(5, 1), Some(5));
    }

    #[test]
    fn names() {
        assert_eq!(LOADER_NAME, "hvboot");
        assert!(!LOADER_VERSION.is_empty());
    }
}
