//! Page allocations from the firmware, tagged with the boot protocol's memory kind.
//!
//! Each allocation uses the OS-loader memory type 0x8000_0000 | kind (UEFI 2.10 §7.2.1 reserves
//! 0x8000_0000..=0xFFFF_FFFF for OS loaders), so the firmware's own memory map later tells the
//! kernel, modules, page tables and so on apart without the loader keeping a list.

use alloc::format;
use alloc::string::String;

use uefi::boot::{self, AllocateType, MemoryType};

pub const PAGE: u64 = 4096;

pub fn pages(bytes: u64) -> usize {
    bytes.div_ceil(PAGE) as usize
}

/// Allocate zeroed pages of `kind`, anywhere or below `max_addr`.
pub fn allocate(kind: u32, bytes: u64, max_addr: Option<u64>) -> Result<u64, String> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let how = match max_addr {
        Some(max) => AllocateType::MaxAddress(max),
        None => AllocateType::AnyPages,
    };
    let count = pages(bytes);
    let ptr = boot::allocate_pages(how, ty, count).map_err(|e| format!("{:?}", e.status()))?;
    // SAFETY: freshly allocated, identity-mapped pages.
    unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, count * PAGE as usize) };
    Ok(ptr.as_ptr() as u64)
}

/// Allocate pages of `kind` at exactly `phys` (a lower-half kernel's p_paddr).
pub fn allocate_at(kind: u32, phys: u64, bytes: u64) -> Result<u64, String> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let count = pages(bytes);
    let ptr = boot::allocate_pages(AllocateType::Address(phys), ty, count)
        .map_err(|e| format!("{:?}", e.status()))?;
    // SAFETY: freshly allocated, identity-mapped pages.
    unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, count * PAGE as usize) };
    Ok(ptr.as_ptr() as u64)
}

/// Allocate pages of `kind` whose start is aligned to `align` (a power of two).
pub fn allocate_aligned(kind: u32, bytes: u64, align: u64) -> Result<u64, String> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let count = pages(bytes);
    let extra = pages(align) - 1;
    let raw = boot::allocate_pages(AllocateType::AnyPages, ty, count + extra)
        .map_err(|e| format!("{:?}", e.status()))?
        .as_ptr() as u64;
    let start = (raw + align - 1) & !(align - 1);
    let head = ((start - raw) / PAGE) as usize;
    let tail = extra - head;
    // SAFETY: we give back the unused ends of our own allocation.
    unsafe {
        if head > 0 {
            boot::free_pages(core::ptr::NonNull::new_unchecked(raw as *mut u8), head)
                .map_err(|e| format!("{:?}", e.status()))?;
        }
        if tail > 0 {
            let tail_start = start + count as u64 * PAGE;
            boot::free_pages(
                core::ptr::NonNull::new_unchecked(tail_start as *mut u8),
                tail,
            )
            .map_err(|e| format!("{:?}", e.status()))?;
        }
        core::ptr::write_bytes(start as *mut u8, 0, count * PAGE as usize);
    }
    Ok(start)
}
