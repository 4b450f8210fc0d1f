//! Page allocations from the firmware, tagged with the boot protocol's memory kind.
//!
//! Each allocation uses the OS-loader memory type 0x8000_0000 | kind (UEFI 2.10 §7.2.1 reserves
//! 0x8000_0000..=0xFFFF_FFFF for OS loaders), so the firmware's own memory map later tells the
//! kernel, modules, page tables and so on apart without the loader keeping a list.

use alloc::format;

use hvboot_loader_core::flow::PlatformError;

use uefi::boot::{self, AllocateType, MemoryType};

pub const PAGE: u64 = 4096;

/// A failed firmware call as the flow reports it: the status's name (`OUT_OF_RESOURCES`).
fn status(e: uefi::Error) -> PlatformError {
    PlatformError::Status(format!("{:?}", e.status()))
}

pub fn pages(bytes: u64) -> usize {
    bytes.div_ceil(PAGE) as usize
}

/// Allocate zeroed pages of `kind`, anywhere or below `max_addr`.
pub fn allocate(kind: u32, bytes: u64, max_addr: Option<u64>) -> Result<u64, PlatformError> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let how = match max_addr {
        Some(max) => AllocateType::MaxAddress(max),
        None => AllocateType::AnyPages,
    };
    let count = pages(bytes);
    let ptr = boot::allocate_pages(how, ty, count).map_err(status)?;
    // SAFETY: freshly allocated, identity-mapped pages.
    unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, count * PAGE as usize) };
    Ok(ptr.as_ptr() as u64)
}

/// Allocate pages of `kind` anywhere without touching them (for a buffer about to be filled).
pub fn allocate_untouched(kind: u32, bytes: u64) -> Result<u64, PlatformError> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let ptr = boot::allocate_pages(AllocateType::AnyPages, ty, pages(bytes)).map_err(status)?;
    Ok(ptr.as_ptr() as u64)
}

/// Allocate pages of `kind` at exactly `phys` (a lower-half kernel's p_paddr).
pub fn allocate_at(kind: u32, phys: u64, bytes: u64) -> Result<u64, PlatformError> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let count = pages(bytes);
    let ptr = boot::allocate_pages(AllocateType::Address(phys), ty, count).map_err(status)?;
    // SAFETY: freshly allocated, identity-mapped pages.
    unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, count * PAGE as usize) };
    Ok(ptr.as_ptr() as u64)
}

/// Allocate pages of `kind` whose start is aligned to `align` (a power of two), zeroed.
pub fn allocate_aligned(kind: u32, bytes: u64, align: u64) -> Result<u64, PlatformError> {
    let start = allocate_aligned_below(kind, bytes, align, None)?;
    // SAFETY: freshly allocated, identity-mapped pages.
    unsafe { core::ptr::write_bytes(start as *mut u8, 0, pages(bytes) * PAGE as usize) };
    Ok(start)
}

/// Allocate pages of `kind` whose start is aligned to `align` (a power of two) and whose last
/// byte is at or below `max` (if given), without touching them: over-allocate by the alignment
/// and give the unused head and tail back.
pub fn allocate_aligned_below(
    kind: u32,
    bytes: u64,
    align: u64,
    max: Option<u64>,
) -> Result<u64, PlatformError> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let count = pages(bytes);
    let extra = pages(align.max(PAGE)) - 1;
    let how = match max {
        Some(max) => AllocateType::MaxAddress(max),
        None => AllocateType::AnyPages,
    };
    let raw = boot::allocate_pages(how, ty, count + extra)
        .map_err(status)?
        .as_ptr() as u64;
    let start = raw.next_multiple_of(align.max(PAGE));
    let head = ((start - raw) / PAGE) as usize;
    let tail = extra - head;
    // SAFETY: we give back the unused ends of our own allocation.
    unsafe {
        if head > 0 {
            boot::free_pages(core::ptr::NonNull::new_unchecked(raw as *mut u8), head)
                .map_err(status)?;
        }
        if tail > 0 {
            let tail_start = start + count as u64 * PAGE;
            boot::free_pages(
                core::ptr::NonNull::new_unchecked(tail_start as *mut u8),
                tail,
            )
            .map_err(status)?;
        }
    }
    Ok(start)
}

/// Allocate `bytes` of `kind` at exactly `phys` without touching them.
pub fn allocate_at_untouched(kind: u32, phys: u64, bytes: u64) -> Result<u64, PlatformError> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let ptr =
        boot::allocate_pages(AllocateType::Address(phys), ty, pages(bytes)).map_err(status)?;
    Ok(ptr.as_ptr() as u64)
}

/// One page of `kind` below 1 MiB, never page 0: AllocateMaxAddress 0xFFFFF, and if the
/// firmware hands out page 0, keep it allocated while asking again, then give it back.
pub fn allocate_low_page(kind: u32) -> Result<u64, PlatformError> {
    let ty = MemoryType::custom(0x8000_0000 | kind);
    let mut page_zero = None;
    let mut found = Err(PlatformError::Other("no free page below 1 MiB".into()));
    for _ in 0..2 {
        match boot::allocate_pages(AllocateType::MaxAddress(0xF_FFFF), ty, 1) {
            Ok(p) if p.as_ptr() as u64 == 0 => page_zero = Some(p),
            Ok(p) => {
                found = Ok(p.as_ptr() as u64);
                break;
            }
            Err(e) => {
                found = Err(status(e));
                break;
            }
        }
    }
    if let Some(p) = page_zero {
        // SAFETY: our own allocation of page 0, never used.
        let _ = unsafe { boot::free_pages(p, 1) };
    }
    let phys = found?;
    // SAFETY: freshly allocated, identity-mapped page.
    unsafe { core::ptr::write_bytes(phys as *mut u8, 0, PAGE as usize) };
    Ok(phys)
}
