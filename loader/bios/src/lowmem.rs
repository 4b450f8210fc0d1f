//! The fixed areas below 1 MiB the BIOS loader uses (docs/bios.md).

/// The disk bounce buffer: 127 sectors (the EDD limit per call) fit below 0x6FE00. Stage 2's
/// `rm_read_batch` reads into it (its disk address packet lives in stage 2's data).
pub const BOUNCE: u64 = 0x6_0000;
/// Sectors per INT 13h read (EDD 3.0: at most 127).
pub const BOUNCE_SECTORS: u64 = 127;
/// One E820 entry.
pub const E820_BUF: u64 = 0x6_FF80;
/// The VBE controller information block (512 bytes), then the mode information block.
pub const VBE_INFO: u64 = 0x6_0000;
pub const VBE_MODE: u64 = 0x6_0200;
/// Stage 2's PML4 (then its PDPT and four page directories, identity-mapping 0..4 GiB).
pub const PML4: u64 = 0x8_0000;
/// Everything from here up to LOADER_END is the loader's (stage 1, stage 2, buffers, stack,
/// page tables): reported as loader-reclaimable.
pub const LOADER_START: u64 = 0x1000;
pub const LOADER_END: u64 = 0x8_6000;

/// Reads a `T` at a physical address (identity-mapped).
///
/// # Safety
/// The address must be mapped and hold a `T`.
pub unsafe fn read<T: Copy>(addr: u64) -> T {
    core::ptr::read_unaligned(addr as *const T)
}

/// Writes a `T` at a physical address (identity-mapped).
///
/// # Safety
/// The address must be mapped and be the loader's.
pub unsafe fn write<T: Copy>(addr: u64, v: T) {
    core::ptr::write_unaligned(addr as *mut T, v)
}
