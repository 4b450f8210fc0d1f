//! x86_64 4-level page tables for the kernel's address space.
//!
//! Implements Intel SDM Vol. 3A §4.5 ("4-Level Paging and 5-Level Paging",
//! 4-level case: PML4 → PDPT → PD → PT, with 1 GiB pages in the PDPT and
//! 2 MiB pages in the PD) with the `x86_64` crate's paging structures.
//!
//! The tables are built in physical memory that the loader reaches at
//! `phys + phys_to_virt_offset`: under UEFI memory is identity-mapped, so the
//! offset is 0; in host tests it is the address of a page-aligned arena whose
//! "physical addresses" are offsets into it.
//!
//! Mappings never set `GLOBAL` or `USER_ACCESSIBLE`. Non-executable mappings
//! set `NO_EXECUTE` (bit 63), which is only valid once `IA32_EFER.NXE` is set
//! (SDM Vol. 3A §4.1.3, §4.6): the loader must set it before loading CR3 with
//! these tables. Intermediate entries are `PRESENT | WRITABLE` without `NO_EXECUTE`,
//! so the leaf entry alone decides the access rights (SDM §4.6.1).
//! 1 GiB pages need `CPUID.80000001H:EDX.Page1GB[bit 26]`; the caller
//! decides whether to use them.

use core::fmt;

use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags, PhysFrame,
    Size1GiB, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::align_up;

/// Size of a 4 KiB page.
pub const SIZE_4K: u64 = Size4KiB::SIZE;
/// Size of a 2 MiB page.
pub const SIZE_2M: u64 = Size2MiB::SIZE;
/// Size of a 1 GiB page.
pub const SIZE_1G: u64 = Size1GiB::SIZE;

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingError {
    /// The frame allocator ran out of frames for page tables.
    OutOfFrames,
    /// The page at `virt` is already mapped (possibly as part of a huge page).
    AlreadyMapped {
        /// Start of the page.
        virt: u64,
    },
    /// An address that must be aligned is not.
    Misaligned {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The required alignment.
        align: u64,
    },
    /// The virtual range `virt..virt + size` is not canonical (or wraps).
    NonCanonical {
        /// Start of the range.
        virt: u64,
        /// Size of the range.
        size: u64,
    },
    /// The physical range `phys..phys + size` exceeds 52-bit physical
    /// addresses.
    PhysicalOutOfRange {
        /// Start of the range.
        phys: u64,
        /// Size of the range.
        size: u64,
    },
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PagingError::OutOfFrames => f.write_str("out of frames for page tables"),
            PagingError::AlreadyMapped { virt } => {
                write!(f, "virtual page {virt:#x} is already mapped")
            }
            PagingError::Misaligned { what, value, align } => {
                write!(f, "{what} {value:#x} is not aligned to {align:#x}")
            }
            PagingError::NonCanonical { virt, size } => {
                write!(f, "virtual range {virt:#x} + {size:#x} is not canonical")
            }
            PagingError::PhysicalOutOfRange { phys, size } => write!(
                f,
                "physical range {phys:#x} + {size:#x} exceeds 52-bit physical addresses"
            ),
        }
    }
}

impl core::error::Error for PagingError {}

/// A bump allocator of 4 KiB frames over the physical range `next..end`.
///
/// The loader reserves one physical block for page tables and hands it to a
/// `BumpFrames`; after building, `start()..next()` is the extent used.
#[derive(Debug, Clone)]
pub struct BumpFrames {
    start: u64,
    next: u64,
    end: u64,
}

impl BumpFrames {
    /// A bump allocator over `start..end`; `start` is rounded up to 4 KiB.
    ///
    /// # Safety
    ///
    /// The physical range must be unused memory, reserved for this allocator
    /// (it hands out frames as unused, see [`FrameAllocator`]).
    pub unsafe fn new(start: u64, end: u64) -> Self {
        let start = align_up(start, SIZE_4K).unwrap_or(u64::MAX);
        BumpFrames {
            start,
            next: start,
            end,
        }
    }

    /// First frame of the range.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The next frame to hand out (end of the used extent).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// End of the range.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Number of frames handed out.
    pub fn used_frames(&self) -> u64 {
        (self.next.saturating_sub(self.start)) / SIZE_4K
    }
}

// SAFETY: `new`'s contract makes the range unused; each frame is handed out
// once.
unsafe impl FrameAllocator<Size4KiB> for BumpFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let end = self.next.checked_add(SIZE_4K)?;
        if end > self.end {
            return None;
        }
        let frame = PhysFrame::from_start_address(PhysAddr::try_new(self.next).ok()?).ok()?;
        self.next = end;
        Some(frame)
    }
}

/// Wraps the caller's allocator to count the table frames taken.
struct Counting<'a, A> {
    inner: &'a mut A,
    frames: usize,
}

// SAFETY: forwards the inner allocator's frames unchanged.
unsafe impl<A: FrameAllocator<Size4KiB>> FrameAllocator<Size4KiB> for Counting<'_, A> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = self.inner.allocate_frame();
        if frame.is_some() {
            self.frames += 1;
        }
        frame
    }
}

/// Builds a 4-level page table hierarchy in physical memory.
pub struct TableBuilder<'a, A: FrameAllocator<Size4KiB>> {
    offset: u64,
    pml4: PhysFrame<Size4KiB>,
    alloc: Counting<'a, A>,
}

/// Flags of intermediate (non-leaf) entries.
const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

fn leaf_flags(writable: bool, executable: bool) -> PageTableFlags {
    let mut flags = PageTableFlags::PRESENT;
    if writable {
        flags |= PageTableFlags::WRITABLE;
    }
    if !executable {
        flags |= PageTableFlags::NO_EXECUTE;
    }
    flags
}

/// Checks that `virt..virt + size` (size > 0) is canonical and stays in one
/// half of the address space.
fn check_virt_range(virt: u64, size: u64) -> Result<(), PagingError> {
    let bad = PagingError::NonCanonical { virt, size };
    let last = virt.checked_add(size - 1).ok_or(bad)?;
    let (first, last) = (
        VirtAddr::try_new(virt).map_err(|_| bad)?,
        VirtAddr::try_new(last).map_err(|_| bad)?,
    );
    // Both canonical and no wrap: the range is canonical iff both ends are
    // in the same half (bit 47, SDM Vol. 1 §3.3.7.1).
    if (first.as_u64() >> 47) != (last.as_u64() >> 47) {
        return Err(bad);
    }
    Ok(())
}

fn check_phys_range(phys: u64, size: u64) -> Result<(), PagingError> {
    let bad = PagingError::PhysicalOutOfRange { phys, size };
    let last = phys.checked_add(size - 1).ok_or(bad)?;
    PhysAddr::try_new(last).map_err(|_| bad)?;
    Ok(())
}

fn check_aligned(what: &'static str, value: u64, align: u64) -> Result<(), PagingError> {
    if value.is_multiple_of(align) {
        Ok(())
    } else {
        Err(PagingError::Misaligned { what, value, align })
    }
}

fn map_error<S: PageSize>(err: MapToError<S>, virt: u64) -> PagingError {
    match err {
        MapToError::FrameAllocationFailed => PagingError::OutOfFrames,
        MapToError::ParentEntryHugePage | MapToError::PageAlreadyMapped(_) => {
            PagingError::AlreadyMapped { virt }
        }
    }
}

impl<'a, A: FrameAllocator<Size4KiB>> TableBuilder<'a, A> {
    /// Allocates and zeroes an empty PML4.
    ///
    /// # Safety
    ///
    /// Every frame that `alloc` hands out must be writable memory at
    /// `frame + phys_to_virt_offset`, used by nothing else for as long as the
    /// builder (and the tables) live; `phys_to_virt_offset` plus any such
    /// frame address must be a canonical address.
    pub unsafe fn new(phys_to_virt_offset: u64, alloc: &'a mut A) -> Result<Self, PagingError> {
        let mut alloc = Counting {
            inner: alloc,
            frames: 0,
        };
        let pml4 = alloc.allocate_frame().ok_or(PagingError::OutOfFrames)?;
        let builder = TableBuilder {
            offset: phys_to_virt_offset,
            pml4,
            alloc,
        };
        // SAFETY: the frame is ours (allocator contract) and reachable at the
        // offset (this function's contract).
        unsafe { (*builder.table_ptr(pml4.start_address().as_u64())).zero() };
        Ok(builder)
    }

    fn table_ptr(&self, phys: u64) -> *mut PageTable {
        (self.offset + phys) as *mut PageTable
    }

    /// Runs `f` with an `OffsetPageTable` over our PML4 and the counting
    /// allocator.
    fn with_mapper<R>(
        &mut self,
        f: impl FnOnce(&mut OffsetPageTable<'_>, &mut Counting<'a, A>) -> R,
    ) -> R {
        let pml4 = self.table_ptr(self.pml4.start_address().as_u64());
        // SAFETY: `new`'s contract: all table frames are reachable at the
        // offset and used by nothing else; the PML4 reference lives only for
        // this call.
        let mut mapper = unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(self.offset)) };
        f(&mut mapper, &mut self.alloc)
    }

    /// Maps `virt..virt + size` (size rounded up to 4 KiB) to
    /// `phys..phys + size` with 4 KiB pages: present, writable if `writable`,
    /// `NO_EXECUTE` unless `executable`, never global or user.
    ///
    /// `virt` and `phys` must be 4 KiB aligned. Fails with
    /// [`PagingError::AlreadyMapped`] on the first page that is already
    /// mapped; the pages before it stay mapped.
    pub fn map_4k_range(
        &mut self,
        virt: u64,
        phys: u64,
        size: u64,
        writable: bool,
        executable: bool,
    ) -> Result<(), PagingError> {
        check_aligned("virtual address", virt, SIZE_4K)?;
        check_aligned("physical address", phys, SIZE_4K)?;
        let size = align_up(size, SIZE_4K).ok_or(PagingError::NonCanonical { virt, size })?;
        if size == 0 {
            return Ok(());
        }
        check_virt_range(virt, size)?;
        check_phys_range(phys, size)?;
        let flags = leaf_flags(writable, executable);
        self.with_mapper(|mapper, alloc| {
            for i in 0..size / SIZE_4K {
                let v = virt + i * SIZE_4K;
                let page = Page::<Size4KiB>::containing_address(VirtAddr::new(v));
                let frame =
                    PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(phys + i * SIZE_4K));
                // SAFETY: only builds tables in our own frames; nothing runs
                // on them yet, so no TLB flush is needed.
                unsafe { mapper.map_to_with_table_flags(page, frame, flags, TABLE_FLAGS, alloc) }
                    .map_err(|e| map_error(e, v))?
                    .ignore();
            }
            Ok(())
        })
    }

    /// Maps all physical memory `0..phys_end` (rounded up to 1 GiB) at
    /// virtual `offset` (the kernel's direct map): present, writable,
    /// `NO_EXECUTE`, with 1 GiB pages if `huge_1g`, else 2 MiB pages.
    ///
    /// `offset` must be aligned to the page size used.
    pub fn map_direct(
        &mut self,
        offset: u64,
        phys_end: u64,
        huge_1g: bool,
    ) -> Result<(), PagingError> {
        let page_size = if huge_1g { SIZE_1G } else { SIZE_2M };
        check_aligned("direct map offset", offset, page_size)?;
        let size = align_up(phys_end, SIZE_1G).ok_or(PagingError::PhysicalOutOfRange {
            phys: 0,
            size: phys_end,
        })?;
        if size == 0 {
            return Ok(());
        }
        check_virt_range(offset, size)?;
        check_phys_range(0, size)?;
        let flags = leaf_flags(true, false);
        self.with_mapper(|mapper, alloc| {
            for i in 0..size / page_size {
                let v = offset + i * page_size;
                let p = PhysAddr::new(i * page_size);
                // SAFETY: as in `map_4k_range`.
                let result = if huge_1g {
                    let page = Page::<Size1GiB>::containing_address(VirtAddr::new(v));
                    let frame = PhysFrame::<Size1GiB>::containing_address(p);
                    unsafe {
                        mapper.map_to_with_table_flags(page, frame, flags, TABLE_FLAGS, alloc)
                    }
                    .map(|flush| flush.ignore())
                    .map_err(|e| map_error(e, v))
                } else {
                    let page = Page::<Size2MiB>::containing_address(VirtAddr::new(v));
                    let frame = PhysFrame::<Size2MiB>::containing_address(p);
                    unsafe {
                        mapper.map_to_with_table_flags(page, frame, flags, TABLE_FLAGS, alloc)
                    }
                    .map(|flush| flush.ignore())
                    .map_err(|e| map_error(e, v))
                };
                result?;
            }
            Ok(())
        })
    }

    /// Physical address of the PML4 (the value for CR3).
    pub fn pml4_phys(&self) -> u64 {
        self.pml4.start_address().as_u64()
    }

    /// Number of 4 KiB frames taken for tables so far (PML4 included).
    pub fn table_frames(&self) -> usize {
        self.alloc.frames
    }

    /// Looks up `virt` in the tables built so far (see [`translate`]).
    pub fn translate(&self, virt: u64) -> Option<Translation> {
        // SAFETY: `new`'s contract makes the tables readable at the offset.
        unsafe { translate(self.offset, self.pml4_phys(), virt) }
    }
}

/// Result of a page walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// Physical address `virt` maps to.
    pub phys: u64,
    /// Flags of the leaf entry (PTE, or PDE/PDPTE of a huge page).
    pub flags: PageTableFlags,
    /// Size of the page: 4 KiB, 2 MiB or 1 GiB.
    pub page_size: u64,
    /// Writable at every level (SDM Vol. 3A §4.6.1: R/W of all entries).
    pub writable: bool,
    /// Executable: no level sets `NO_EXECUTE` (SDM Vol. 3A §4.6.1).
    pub executable: bool,
}

/// Walks the 4-level tables rooted at `pml4_phys` for `virt`, following
/// 1 GiB and 2 MiB pages. Returns `None` if `virt` is not canonical or not
/// mapped.
///
/// # Safety
///
/// The tables (every frame reachable from the PML4) must be readable at
/// `phys + phys_to_virt_offset`.
pub unsafe fn translate(
    phys_to_virt_offset: u64,
    pml4_phys: u64,
    virt: u64,
) -> Option<Translation> {
    let addr = VirtAddr::try_new(virt).ok()?;
    let indices = [
        addr.p4_index(),
        addr.p3_index(),
        addr.p2_index(),
        addr.p1_index(),
    ];
    let mut table_phys = pml4_phys;
    let mut writable = true;
    let mut executable = true;
    for (level, index) in indices.into_iter().enumerate() {
        // SAFETY: the caller's contract.
        let table = unsafe { &*((phys_to_virt_offset + table_phys) as *const PageTable) };
        let entry = &table[index];
        let flags = entry.flags();
        if !flags.contains(PageTableFlags::PRESENT) {
            return None;
        }
        writable &= flags.contains(PageTableFlags::WRITABLE);
        executable &= !flags.contains(PageTableFlags::NO_EXECUTE);
        // Level 0 is the PML4 (no huge pages), 1 the PDPT (1 GiB), 2 the PD
        // (2 MiB), 3 the PT (4 KiB).
        let leaf_size = match level {
            1 if flags.contains(PageTableFlags::HUGE_PAGE) => Some(SIZE_1G),
            2 if flags.contains(PageTableFlags::HUGE_PAGE) => Some(SIZE_2M),
            3 => Some(SIZE_4K),
            _ => None,
        };
        match leaf_size {
            Some(page_size) => {
                return Some(Translation {
                    phys: entry.addr().as_u64() + (virt & (page_size - 1)),
                    flags,
                    page_size,
                    writable,
                    executable,
                })
            }
            None => table_phys = entry.addr().as_u64(),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// One 4 KiB, 4 KiB-aligned frame of the test arena.
    #[derive(Clone)]
    #[repr(C, align(4096))]
    struct Frame([u8; 4096]);

    /// A page-aligned heap arena standing for physical memory `0..len`.
    struct Arena {
        frames: Vec<Frame>,
    }

    impl Arena {
        fn new(frames: usize) -> Self {
            // Garbage, so tables that are not zeroed show up as bogus entries.
            Arena {
                frames: alloc::vec![Frame([0xa5; 4096]); frames],
            }
        }
        fn offset(&mut self) -> u64 {
            self.frames.as_mut_ptr() as u64
        }
        fn len(&self) -> u64 {
            self.frames.len() as u64 * SIZE_4K
        }
    }

    /// Hands out arena frames from the top down, so nothing depends on
    /// tables being allocated in increasing order.
    struct TopDown {
        next: u64,
    }

    unsafe impl FrameAllocator<Size4KiB> for TopDown {
        fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
            self.next = self.next.checked_sub(SIZE_4K)?;
            Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
        }
    }

    const KBASE: u64 = 0xffff_ffff_8000_0000;
    const KPHYS: u64 = 0x20_0000;
    const DIRECT: u64 = 0xffff_8000_0000_0000;
    const GIB: u64 = 1 << 30;

    /// Maps a higher-half kernel: text (r-x, 3 pages), rodata (r--, 1 page),
    /// a guard page, data (rw-, 2 pages).
    fn map_kernel<A: FrameAllocator<Size4KiB>>(b: &mut TableBuilder<'_, A>) {
        b.map_4k_range(KBASE, KPHYS, 0x3000, false, true).unwrap();
        b.map_4k_range(KBASE + 0x3000, KPHYS + 0x3000, 0x1000, false, false)
            .unwrap();
        b.map_4k_range(KBASE + 0x5000, KPHYS + 0x5000, 0x1800, true, false)
            .unwrap();
    }

    fn check_kernel<A: FrameAllocator<Size4KiB>>(b: &TableBuilder<'_, A>) {
        let t = b.translate(KBASE + 0x1234).unwrap();
        assert_eq!(t.phys, KPHYS + 0x1234);
        assert_eq!(t.page_size, SIZE_4K);
        assert!(t.executable && !t.writable);
        assert!(!t.flags.contains(PageTableFlags::NO_EXECUTE));
        assert!(!t.flags.contains(PageTableFlags::GLOBAL));
        assert!(!t.flags.contains(PageTableFlags::USER_ACCESSIBLE));

        let t = b.translate(KBASE + 0x3fff).unwrap();
        assert_eq!(t.phys, KPHYS + 0x3fff);
        assert!(!t.executable && !t.writable);
        assert!(t.flags.contains(PageTableFlags::NO_EXECUTE));

        // Guard page between rodata and data.
        assert_eq!(b.translate(KBASE + 0x4000), None);
        assert_eq!(b.translate(KBASE + 0x4fff), None);

        for va in [KBASE + 0x5000, KBASE + 0x6ffc] {
            let t = b.translate(va).unwrap();
            assert_eq!(t.phys, KPHYS + (va - KBASE));
            assert!(t.writable && !t.executable);
            assert!(t
                .flags
                .contains(PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE));
        }
        // Size 0x1800 was rounded up to two pages; nothing after them.
        assert_eq!(b.translate(KBASE + 0x7000), None);
        assert_eq!(b.translate(KBASE - 1), None);
    }

    #[test]
    fn kernel_and_direct_map_with_1g_pages() {
        let mut arena = Arena::new(32);
        let offset = arena.offset();
        let mut frames = unsafe { BumpFrames::new(0x1000, arena.len()) };
        let mut b = unsafe { TableBuilder::new(offset, &mut frames) }.unwrap();
        assert_eq!(b.pml4_phys(), 0x1000);
        assert_eq!(b.table_frames(), 1);
        map_kernel(&mut b);
        // PML4 + PDPT + PD + PT.
        assert_eq!(b.table_frames(), 4);
        b.map_direct(DIRECT, 5 * GIB + 1, true).unwrap();
        // + one PDPT for the direct map.
        assert_eq!(b.table_frames(), 5);
        check_kernel(&b);

        for pa in [0, 0x1234_5678, 5 * GIB, 6 * GIB - 1] {
            let t = b.translate(DIRECT + pa).unwrap();
            assert_eq!(t.phys, pa);
            assert_eq!(t.page_size, SIZE_1G);
            assert!(t.writable && !t.executable);
            assert!(t.flags.contains(PageTableFlags::HUGE_PAGE));
            assert!(!t.flags.contains(PageTableFlags::GLOBAL));
        }
        // phys_end rounded up to 6 GiB, not further.
        assert_eq!(b.translate(DIRECT + 6 * GIB), None);
        // Lower half untouched.
        assert_eq!(b.translate(0), None);
        assert_eq!(b.translate(KPHYS), None);

        let pages = b.table_frames() as u64;
        assert_eq!(frames.used_frames(), pages);
        assert_eq!(frames.next(), 0x1000 + pages * SIZE_4K);
    }

    #[test]
    fn kernel_and_direct_map_with_2m_pages() {
        let mut arena = Arena::new(32);
        let offset = arena.offset();
        let mut frames = TopDown { next: arena.len() };
        let mut b = unsafe { TableBuilder::new(offset, &mut frames) }.unwrap();
        map_kernel(&mut b);
        b.map_direct(DIRECT, 5 * GIB + 1, false).unwrap();
        // PML4 + 3 kernel tables + direct map PDPT + 6 PDs.
        assert_eq!(b.table_frames(), 11);
        check_kernel(&b);
        for pa in [
            0,
            SIZE_2M - 1,
            SIZE_2M,
            0x1234_5678,
            5 * GIB + 3 * SIZE_2M + 5,
            6 * GIB - 1,
        ] {
            let t = b.translate(DIRECT + pa).unwrap();
            assert_eq!(t.phys, pa, "{pa:#x}");
            assert_eq!(t.page_size, SIZE_2M);
            assert!(t.writable && !t.executable);
            assert!(t.flags.contains(PageTableFlags::HUGE_PAGE));
        }
        assert_eq!(b.translate(DIRECT + 6 * GIB), None);
    }

    #[test]
    fn double_map_is_an_error() {
        let mut arena = Arena::new(16);
        let offset = arena.offset();
        let mut frames = unsafe { BumpFrames::new(0, arena.len()) };
        let mut b = unsafe { TableBuilder::new(offset, &mut frames) }.unwrap();
        map_kernel(&mut b);
        // The third page of this range is the kernel's first rodata page.
        assert_eq!(
            b.map_4k_range(KBASE + 0x1000, 0x90_0000, 0x3000, true, false),
            Err(PagingError::AlreadyMapped {
                virt: KBASE + 0x1000
            })
        );
        assert_eq!(
            b.map_4k_range(KBASE + 0x4000, 0x90_0000, 0x2000, true, false),
            Err(PagingError::AlreadyMapped {
                virt: KBASE + 0x5000
            })
        );
        // The guard page before it did get mapped (no rollback).
        assert_eq!(b.translate(KBASE + 0x4000).unwrap().phys, 0x90_0000);

        // 4 KiB into a huge page, and a huge page over existing tables.
        b.map_direct(DIRECT, GIB, true).unwrap();
        assert_eq!(
            b.map_4k_range(DIRECT + 0x5000, 0, 0x1000, true, false),
            Err(PagingError::AlreadyMapped {
                virt: DIRECT + 0x5000
            })
        );
        assert_eq!(
            b.map_direct(DIRECT, GIB, false),
            Err(PagingError::AlreadyMapped { virt: DIRECT })
        );
        let mut b2 = unsafe { TableBuilder::new(offset, &mut frames) }.unwrap();
        b2.map_4k_range(DIRECT + 0x4000_0000, 0, 0x1000, true, false)
            .unwrap();
        assert_eq!(
            b2.map_direct(DIRECT, 2 * GIB, true),
            Err(PagingError::AlreadyMapped { virt: DIRECT + GIB })
        );
        assert_eq!(
            b2.map_direct(DIRECT + GIB, GIB, false),
            Err(PagingError::AlreadyMapped { virt: DIRECT + GIB })
        );
    }

    #[test]
    fn argument_checks() {
        let mut arena = Arena::new(8);
        let offset = arena.offset();
        let mut frames = unsafe { BumpFrames::new(0, arena.len()) };
        let mut b = unsafe { TableBuilder::new(offset, &mut frames) }.unwrap();
        assert!(matches!(
            b.map_4k_range(KBASE + 1, 0, 0x1000, false, false),
            Err(PagingError::Misaligned {
                what: "virtual address",
                ..
            })
        ));
        assert!(matches!(
            b.map_4k_range(KBASE, 0x10, 0x1000, false, false),
            Err(PagingError::Misaligned {
                what: "physical address",
                ..
            })
        ));
        assert_eq!(
            b.map_4k_range(0x0000_8000_0000_0000, 0, 0x1000, false, false),
            Err(PagingError::NonCanonical {
                virt: 0x0000_8000_0000_0000,
                size: 0x1000
            })
        );
        assert!(matches!(
            b.map_4k_range(0x0000_7fff_ffff_f000, 0, 0x2000, false, false),
            Err(PagingError::NonCanonical { .. })
        ));
        assert!(matches!(
            b.map_4k_range(0xffff_ffff_ffff_f000, 0, 0x2000, false, false),
            Err(PagingError::NonCanonical { .. })
        ));
        assert!(matches!(
            b.map_4k_range(KBASE, 0x000f_ffff_ffff_f000, 0x2000, false, false),
            Err(PagingError::PhysicalOutOfRange { .. })
        ));
        assert!(matches!(
            b.map_direct(DIRECT + SIZE_2M, GIB, true),
            Err(PagingError::Misaligned { .. })
        ));
        assert!(matches!(
            b.map_direct(DIRECT + 0x1000, GIB, false),
            Err(PagingError::Misaligned { .. })
        ));
        // Zero sizes map nothing.
        b.map_4k_range(KBASE, 0, 0, true, true).unwrap();
        b.map_direct(DIRECT, 0, true).unwrap();
        assert_eq!(b.table_frames(), 1);
        assert_eq!(b.translate(KBASE), None);
        // The very last page is fine.
        b.map_4k_range(0xffff_ffff_ffff_f000, 0x5000, 0x1000, false, false)
            .unwrap();
        assert_eq!(b.translate(u64::MAX).unwrap().phys, 0x5fff);
        assert_eq!(
            PagingError::AlreadyMapped { virt: 0x1000 }.to_string(),
            "virtual page 0x1000 is already mapped"
        );
    }

    #[test]
    fn out_of_frames() {
        let mut arena = Arena::new(4);
        let offset = arena.offset();
        let mut frames = unsafe { BumpFrames::new(0, 2 * SIZE_4K) };
        let mut b = unsafe { TableBuilder::new(offset, &mut frames) }.unwrap();
        assert_eq!(
            b.map_4k_range(KBASE, 0, 0x1000, false, true),
            Err(PagingError::OutOfFrames)
        );
        let mut none = unsafe { BumpFrames::new(0x1000, 0x1000) };
        assert!(matches!(
            unsafe { TableBuilder::new(offset, &mut none) },
            Err(PagingError::OutOfFrames)
        ));
    }

    #[test]
    fn bump_frames() {
        let mut f = unsafe { BumpFrames::new(0x1001, 0x4000) };
        assert_eq!(f.start(), 0x2000);
        assert_eq!(f.allocate_frame().unwrap().start_address().as_u64(), 0x2000);
        assert_eq!(f.allocate_frame().unwrap().start_address().as_u64(), 0x3000);
        assert_eq!(f.allocate_frame(), None);
        assert_eq!(f.used_frames(), 2);
        assert_eq!((f.next(), f.end()), (0x4000, 0x4000));
        let mut top = unsafe { BumpFrames::new(u64::MAX - 0xfff, u64::MAX) };
        assert_eq!(top.allocate_frame(), None);
    }

    #[test]
    fn lower_half_identity_mapping() {
        // A lower-half kernel placed at its p_paddr, identity-mapped.
        let mut arena = Arena::new(8);
        let offset = arena.offset();
        let mut frames = unsafe { BumpFrames::new(0, arena.len()) };
        let mut b = unsafe { TableBuilder::new(offset, &mut frames) }.unwrap();
        b.map_4k_range(0x10_0000, 0x10_0000, 0x2000, false, true)
            .unwrap();
        let t = b.translate(0x10_1abc).unwrap();
        assert_eq!(t.phys, 0x10_1abc);
        assert!(t.executable);
        assert_eq!(b.translate(0x10_2000), None);
    }
}
