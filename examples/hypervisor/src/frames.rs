//! Physical memory for the hypervisor's own structures and for the guest,
//! taken from the `USABLE` regions of the boot information's memory map and
//! reached through the loader's direct map.
//!
//! A bump allocator: it never frees, which is all a sample that runs one guest
//! per CPU needs. It hands out memory above 1 MiB only (the first MiB is where a later
//! version will want its AP trampoline, and firmware leftovers live there).

use hvboot_api::{BootInfo, MemoryKind};

/// 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// Nothing below this is handed out.
const LOW_LIMIT: u64 = 0x10_0000;

/// A contiguous block of physical memory, mapped at `virt` through the direct map.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// Physical address of the first byte.
    pub phys: u64,
    /// Virtual address of the first byte (in the direct map).
    pub virt: u64,
    /// Bytes.
    pub len: u64,
}

impl Block {
    /// The block as bytes.
    ///
    /// # Safety
    /// The block must be memory this kernel owns (handed out by [`Frames`]) and
    /// not aliased by another live reference.
    pub unsafe fn bytes_mut(&self) -> &'static mut [u8] {
        // SAFETY: forwarded to the caller; the block lies in the direct map
        // (checked when it was handed out).
        unsafe { core::slice::from_raw_parts_mut(self.virt as *mut u8, self.len as usize) }
    }

    /// The block as a page of 512 u64 entries (a page table or a VMCB).
    ///
    /// # Safety
    /// As for [`Self::bytes_mut`]; the block must be at least one page long.
    pub unsafe fn table_mut(&self) -> &'static mut [u64; 512] {
        assert!(self.len >= PAGE_SIZE);
        // SAFETY: forwarded to the caller; page aligned, at least 4 KiB.
        unsafe { &mut *(self.virt as *mut [u64; 512]) }
    }
}

/// Hands out zeroed, page-aligned blocks from the memory map's `USABLE` regions, or from one
/// block of its own ([`Frames::within`]: a CPU's share of the guest reservation).
pub struct Frames<'a> {
    info: &'a BootInfo,
    /// Carve from this block only, not from the memory map.
    pool: Option<Block>,
    /// Index of the region being carved.
    region: usize,
    /// Next free address in that region.
    next: u64,
    /// Bytes handed out so far.
    pub used: u64,
}

impl<'a> Frames<'a> {
    /// An allocator over `info`'s memory map.
    pub fn new(info: &'a BootInfo) -> Self {
        Self {
            info,
            pool: None,
            region: 0,
            next: 0,
            used: 0,
        }
    }

    /// An allocator over `block` only (memory this kernel owns, in the direct map).
    pub fn within(info: &'a BootInfo, block: Block) -> Self {
        Self {
            info,
            pool: Some(block),
            region: 0,
            next: block.phys,
            used: 0,
        }
    }

    /// `len` bytes (rounded up to pages) aligned to `align` (a power of two, at
    /// least 4 KiB), zeroed; None when no `USABLE` region has room left.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<Block> {
        let len = len.checked_next_multiple_of(PAGE_SIZE)?;
        let align = align.max(PAGE_SIZE);
        if !align.is_power_of_two() || len == 0 {
            return None;
        }
        if let Some(pool) = self.pool {
            let start = self.next.checked_next_multiple_of(align)?;
            let end = start.checked_add(len)?;
            if end > pool.phys + pool.len {
                return None;
            }
            return Some(self.hand_out(start, len));
        }
        let map = self.info.memory_map();
        while self.region < map.len() {
            let r = &map[self.region];
            if r.kind == MemoryKind::USABLE {
                let start = self.next.max(r.base).max(LOW_LIMIT);
                if let Some(start) = start.checked_next_multiple_of(align) {
                    if let Some(end) = start.checked_add(len) {
                        if end <= r.end() && self.info.in_direct_map(start, len) {
                            return Some(self.hand_out(start, len));
                        }
                    }
                }
            }
            self.region += 1;
            self.next = 0;
        }
        None
    }

    /// Hands out `start..start + len` (checked by the caller to be ours), zeroed.
    fn hand_out(&mut self, start: u64, len: u64) -> Block {
        self.next = start + len;
        self.used += len;
        let block = Block {
            phys: start,
            virt: self.info.phys_to_virt(start),
            len,
        };
        // SAFETY: USABLE memory or our own pool, handed out once, in the direct map.
        unsafe { block.bytes_mut().fill(0) };
        block
    }

    /// The direct-map address of physical address `phys`.
    pub fn virt(&self, phys: u64) -> u64 {
        self.info.phys_to_virt(phys)
    }

    /// One zeroed page.
    pub fn page(&mut self) -> Option<Block> {
        self.alloc(PAGE_SIZE, PAGE_SIZE)
    }
}
