//! The memory map from INT 15h E820 (ACPI 6.5 §15.1, "INT 15H, E820H - Query System Address
//! Map") and the loader's page allocator over it: top-down, above 1 MiB, never over another
//! allocation; below 4 GiB (what stage 2's tables identity-map) while anything fits there, else in
//! the RAM above 4 GiB, which [`Memory::map_high`] identity-maps in whole 2 MiB pages first.
//!
//! The list of allocations grows with the work: it lives in pages the allocator takes for it
//! (loader-reclaimable, listed like any other allocation) and moves to a run twice as large when
//! full, so it never needs the heap, whose growth it serves (`main.rs`, `grow_heap`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use hvboot_api::{FirmwareMemoryEntry, MemoryKind};
use hvboot_loader_core::flow::{Placement, PlatformError};
use hvboot_loader_core::memmap::Region;
use hvboot_loader_core::{align_down, align_up, PAGE_SIZE};

use crate::lowmem::{self, E820_BUF, IMAGE_LIMIT, LOADER_END, LOADER_START};
use crate::thunk::{self, Regs};

const MAX_E820: usize = 128;
/// Entries of the first run of the list of allocations (one page).
const FIRST_ALLOCS: usize = PAGE_SIZE as usize / core::mem::size_of::<Region>();
const SMAP: u32 = 0x534D_4150;
const MIB: u64 = 1 << 20;
/// The end of what stage 2 identity-maps, and of what real-mode code and its 32-bit copies reach.
pub const FOUR_GIB: u64 = 4 << 30;
/// The page size of the map above 4 GiB; RAM there is handed out in whole such pages.
const LARGE: u64 = 2 << 20;
/// Page-table entry bits: present, writable, and (in a page directory) a 2 MiB page.
const PRESENT_RW: u64 = 0b11;
const LARGE_PAGE: u64 = 1 << 7;
/// The physical address bits of a page-table entry (Intel SDM Vol. 3A §5.5, 4-level paging).
const ENTRY_ADDR: u64 = 0x000F_FFFF_FFFF_F000;
const EMPTY: Region = Region {
    base: 0,
    length: 0,
    kind: 0,
};

/// The one allocator, shared by the platform and the heap's grow hook. A `try_with` inside
/// another finds it busy instead of making a second `&mut`; it cannot happen in practice, since
/// the allocator never allocates on the heap.
pub struct Shared {
    memory: UnsafeCell<Option<Memory>>,
    busy: AtomicBool,
}

// SAFETY: the loader is single-threaded; `busy` keeps borrows exclusive.
unsafe impl Sync for Shared {}

pub static MEMORY: Shared = Shared {
    memory: UnsafeCell::new(None),
    busy: AtomicBool::new(false),
};

impl Shared {
    pub fn install(&self, m: Memory) {
        // SAFETY: called once, before any other use.
        unsafe { *self.memory.get() = Some(m) };
    }

    /// Runs `f` on the allocator; None if it is not installed or already in use.
    pub fn try_with<R>(&self, f: impl FnOnce(&mut Memory) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::SeqCst) {
            return None;
        }
        // SAFETY: `busy` makes this the only reference.
        let r = unsafe { (*self.memory.get()).as_mut() }.map(f);
        self.busy.store(false, Ordering::SeqCst);
        r
    }

    /// Runs `f` on the allocator, which must be installed and not in use.
    pub fn with<R>(&self, f: impl FnOnce(&mut Memory) -> R) -> R {
        self.try_with(f)
            .expect("the BIOS allocator is missing or re-entered")
    }
}

pub struct Memory {
    e820: [Region; MAX_E820],
    n: usize,
    /// Every entry as the BIOS gave it (for the kernel's raw firmware map).
    raw: [FirmwareMemoryEntry; MAX_E820],
    nraw: usize,
    /// The list of allocations: `na` entries in a run of pages with room for `cap`.
    allocs: *mut Region,
    cap: usize,
    na: usize,
}

fn e820_kind(t: u32) -> u32 {
    match t {
        1 => MemoryKind::USABLE.0,
        3 => MemoryKind::ACPI_RECLAIMABLE.0,
        4 => MemoryKind::ACPI_NVS.0,
        5 => MemoryKind::BAD.0,
        _ => MemoryKind::RESERVED.0,
    }
}

impl Memory {
    /// Reads the E820 map. Usable ranges are rounded inwards to 4 KiB, the others outwards.
    pub fn from_e820() -> Result<Self, String> {
        let mut m = Self {
            e820: [EMPTY; MAX_E820],
            n: 0,
            raw: [FirmwareMemoryEntry::default(); MAX_E820],
            nraw: 0,
            allocs: core::ptr::null_mut(),
            cap: 0,
            na: 0,
        };
        let (seg, off) = thunk::seg_off(E820_BUF);
        let mut cont = 0u32;
        loop {
            // SAFETY: the E820 buffer is the loader's; ACPI 3.0 extended attributes preset to
            // "valid" for BIOSes that return only 20 bytes.
            unsafe { lowmem::write::<u32>(E820_BUF + 20, 1) };
            let mut r = Regs {
                eax: 0xE820,
                ebx: cont,
                ecx: 24,
                edx: SMAP,
                edi: off as u32,
                es: seg,
                ..Regs::default()
            };
            thunk::int(0x15, &mut r);
            if r.carry() || r.eax != SMAP {
                if m.n == 0 {
                    return Err(format!(
                        "INT 15h E820 is not supported (eax={:#x}, carry={})",
                        r.eax,
                        r.carry()
                    ));
                }
                break; // some BIOSes end the list with carry set
            }
            // SAFETY: the BIOS wrote one entry there.
            let (base, len, ty, attr) = unsafe {
                (
                    lowmem::read::<u64>(E820_BUF),
                    lowmem::read::<u64>(E820_BUF + 8),
                    lowmem::read::<u32>(E820_BUF + 16),
                    lowmem::read::<u32>(E820_BUF + 20),
                )
            };
            if m.nraw < MAX_E820 {
                m.raw[m.nraw] = FirmwareMemoryEntry {
                    base,
                    length: len,
                    firmware_type: ty,
                    reserved: 0,
                    attributes: if r.ecx >= 24 { u64::from(attr) } else { 1 },
                };
                m.nraw += 1;
            }
            let ignore = r.ecx >= 24 && attr & 1 == 0;
            if !ignore && len > 0 {
                if m.n == MAX_E820 {
                    return Err(format!("more than {MAX_E820} E820 entries"));
                }
                let kind = e820_kind(ty);
                // Stage 2 checked the BDA's EBDA segment and memory size; the E820 map must
                // agree that the loader's low area (asm/layout.inc) is RAM.
                if kind != MemoryKind::USABLE.0
                    && base < LOADER_END
                    && base.saturating_add(len) > LOADER_START
                {
                    return Err(format!(
                        "the E820 map reserves {base:#x}..{:#x} (type {ty}), inside the BIOS \
                         loader's low memory {LOADER_START:#x}..{LOADER_END:#x} (docs/bios.md)",
                        base.saturating_add(len)
                    ));
                }
                let (b, e) = if kind == MemoryKind::USABLE.0 {
                    (
                        align_up(base, PAGE_SIZE).unwrap_or(u64::MAX),
                        align_down(base.saturating_add(len), PAGE_SIZE),
                    )
                } else {
                    (
                        align_down(base, PAGE_SIZE),
                        align_up(base.saturating_add(len), PAGE_SIZE).unwrap_or(u64::MAX),
                    )
                };
                if e > b {
                    m.e820[m.n] = Region {
                        base: b,
                        length: e - b,
                        kind,
                    };
                    m.n += 1;
                }
            }
            cont = r.ebx;
            if cont == 0 {
                break;
            }
        }
        Ok(m)
    }

    pub fn e820(&self) -> &[Region] {
        &self.e820[..self.n]
    }

    /// The E820 entries as the BIOS returned them.
    pub fn raw_e820(&self) -> &[FirmwareMemoryEntry] {
        &self.raw[..self.nraw]
    }

    pub fn allocations(&self) -> &[Region] {
        if self.na == 0 {
            return &[];
        }
        // SAFETY: the run holds `na` initialised entries.
        unsafe { core::slice::from_raw_parts(self.allocs, self.na) }
    }

    /// Room for one more allocation: a first run of one page, or a run twice as large with the
    /// entries copied over (the old run stays listed, loader-reclaimable).
    fn reserve_one(&mut self) -> Result<(), PlatformError> {
        if self.na < self.cap {
            return Ok(());
        }
        let cap = (self.cap * 2).max(FIRST_ALLOCS);
        let bytes = (cap * core::mem::size_of::<Region>()) as u64;
        let run = self.find(bytes, Placement::Anywhere)? as *mut Region;
        if self.na > 0 {
            // SAFETY: free usable memory, identity-mapped, now ours; the old run has `na` entries.
            unsafe { core::ptr::copy_nonoverlapping(self.allocs, run, self.na) };
        }
        (self.allocs, self.cap) = (run, cap);
        self.record(run as u64, bytes, MemoryKind::LOADER_RECLAIMABLE.0);
        Ok(())
    }

    /// Lists an allocation; [`Memory::reserve_one`] made room.
    fn record(&mut self, base: u64, bytes: u64, kind: u32) {
        debug_assert!(self.na < self.cap);
        let length = bytes.max(1).next_multiple_of(PAGE_SIZE);
        // SAFETY: inside the run (na < cap).
        unsafe {
            self.allocs
                .add(self.na)
                .write(Region { base, length, kind })
        };
        self.na += 1;
    }

    /// What the allocator hands out: usable RAM from 1 MiB; below 4 GiB as E820 says, above it
    /// the whole 2 MiB pages inside each range (what [`Memory::map_high`] maps).
    fn usable(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        // Each entry twice, its part below and its part above 4 GiB (no `flat_map`: its code
        // is large, and the loader image must stay below IMAGE_LIMIT).
        (0..2 * self.n)
            .map(|i| (&self.e820[i / 2], i % 2 == 1))
            .filter(|(r, _)| r.kind == MemoryKind::USABLE.0)
            .map(|(r, high)| match high {
                false => (r.base.max(MIB), r.end().min(FOUR_GIB)),
                true => high_part(r),
            })
            .filter(|(b, e)| e > b)
    }

    /// Whether E820 has usable RAM above 4 GiB (in at least one whole 2 MiB page).
    pub fn has_high(&self) -> bool {
        self.usable().any(|(_, e)| e > FOUR_GIB)
    }

    /// Identity-maps the usable RAM above 4 GiB with 2 MiB pages in the loader's tables (stage
    /// 2 maps only the first 4 GiB), so the allocator can hand it out. The new tables come from
    /// below 4 GiB, loader-reclaimable. Returns the bytes mapped.
    pub fn map_high(&mut self) -> Result<u64, PlatformError> {
        let mut mapped = 0;
        for i in 0..self.n {
            let r = self.e820[i];
            if r.kind != MemoryKind::USABLE.0 {
                continue;
            }
            let (start, end) = high_part(&r);
            for page in (start..end).step_by(LARGE as usize) {
                let pdpt = self.next_table(lowmem::PML4, page >> 39)?;
                let pd = self.next_table(pdpt, page >> 30)?;
                // SAFETY: `pd` is a page directory of the loader's tables (below 4 GiB, mapped).
                unsafe { entry(pd, page >> 21).write(page | PRESENT_RW | LARGE_PAGE) };
                mapped += LARGE;
            }
        }
        // Entries only went from not present to present, which needs no invalidation (Intel SDM
        // Vol. 3A §5.10.4.3); CR3 is reloaded anyway so no paging-structure cache can miss them.
        // SAFETY: the same tables, extended.
        unsafe {
            core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack));
        }
        Ok(mapped)
    }

    /// The table entry `index` (its low 9 bits) of `table` points to; a zeroed one below 4 GiB
    /// if it is not present yet.
    fn next_table(&mut self, table: u64, index: u64) -> Result<u64, PlatformError> {
        // SAFETY: `table` is one of the loader's tables, below 4 GiB and mapped.
        let e = unsafe { entry(table, index) };
        // SAFETY: as above.
        let old = unsafe { e.read() };
        if old & 1 != 0 {
            return Ok(old & ENTRY_ADDR);
        }
        let kind = MemoryKind::LOADER_RECLAIMABLE.0;
        let new = self.allocate(kind, PAGE_SIZE, Placement::Below(FOUR_GIB - 1))?;
        // SAFETY: as above.
        unsafe { e.write(new | PRESENT_RW) };
        Ok(new)
    }

    fn free(&self, start: u64, size: u64) -> bool {
        let end = start + size;
        self.usable().any(|(b, e)| b <= start && end <= e)
            && self
                .allocations()
                .iter()
                .all(|a| end <= a.base || a.end() <= start)
    }

    /// Allocates zeroed pages; returns their physical (= identity-mapped) address.
    pub fn allocate(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, PlatformError> {
        let start = self.allocate_untouched(kind, bytes, at)?;
        let size = align_up(bytes.max(1), PAGE_SIZE)
            .ok_or(PlatformError::Unsupported("size overflows"))?;
        // SAFETY: the range is usable RAM, identity-mapped, and now ours.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, size as usize) };
        Ok(start)
    }

    /// The highest free page below the EBDA and above the loader's low area (docs/bios.md),
    /// inside E820 usable memory: the AP trampoline page. Zeroed.
    pub fn allocate_low_page(&mut self, kind: u32) -> Result<u64, PlatformError> {
        self.reserve_one()?;
        let top = ebda_start();
        let page = (LOADER_END / PAGE_SIZE..top / PAGE_SIZE)
            .rev()
            .map(|p| p * PAGE_SIZE)
            .find(|&p| {
                self.e820().iter().any(|r| {
                    r.kind == MemoryKind::USABLE.0 && r.base <= p && p + PAGE_SIZE <= r.end()
                }) && self
                    .allocations()
                    .iter()
                    .all(|a| p + PAGE_SIZE <= a.base || a.end() <= p)
            })
            .ok_or(PlatformError::NoLowPage {
                from: LOADER_END,
                to: top,
            })?;
        self.record(page, PAGE_SIZE, kind);
        // SAFETY: usable low RAM nobody else uses, identity-mapped, now ours.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, PAGE_SIZE as usize) };
        Ok(page)
    }

    /// Allocates pages without touching them (the guest reservation).
    pub fn allocate_untouched(
        &mut self,
        kind: u32,
        bytes: u64,
        at: Placement,
    ) -> Result<u64, PlatformError> {
        self.reserve_one()?;
        let start = self.find(bytes, at)?;
        self.record(start, bytes, kind);
        Ok(start)
    }

    /// Where `bytes` (rounded up to pages) can go at `at`, without taking it.
    fn find(&self, bytes: u64, at: Placement) -> Result<u64, PlatformError> {
        let size = align_up(bytes.max(1), PAGE_SIZE)
            .ok_or(PlatformError::Unsupported("size overflows"))?;
        let start = match at {
            Placement::At(p) => {
                if p % PAGE_SIZE != 0 || !self.free(p, size) {
                    return Err(PlatformError::NotFree {
                        start: p,
                        end: p + size,
                        allowed: "in usable RAM above 1 MiB",
                    });
                }
                p
            }
            _ => {
                let (limit, align) = match at {
                    Placement::Below(max) => (max.saturating_add(1), PAGE_SIZE),
                    Placement::Aligned(a) => (u64::MAX, a.max(PAGE_SIZE)),
                    Placement::AlignedBelow { align, max } => {
                        (max.saturating_add(1), align.max(PAGE_SIZE))
                    }
                    _ => (u64::MAX, PAGE_SIZE),
                };
                // Below 4 GiB while anything fits there (where 32-bit hand-offs reach and the
                // BIOS loader has always put things), above it only when nothing does.
                let top = self.usable().map(|(_, e)| e).max().unwrap_or(0);
                self.top_down(size, limit.min(FOUR_GIB), align)
                    .or_else(|| self.top_down(size, limit, align))
                    .ok_or(PlatformError::NoFreeBlock {
                        size,
                        limit: limit.min(top),
                    })?
            }
        };
        Ok(start)
    }

    /// The highest free block of `size` bytes aligned to `align` and ending at or below
    /// `limit`: tried ending at each usable range's end and below each allocation. (No heap
    /// here: the heap itself is the first allocation.)
    fn top_down(&self, size: u64, limit: u64, align: u64) -> Option<u64> {
        let ends = self.usable().map(|(_, e)| e.min(limit));
        let below = self.allocations().iter().map(|a| a.base.min(limit));
        ends.chain(below)
            .filter(|&e| e >= size)
            .map(|e| align_down(e - size, align))
            .filter(|&s| self.free(s, size))
            .max()
    }

    /// The map for the kernel: E820, the loader's allocations, the low-memory areas.
    pub fn final_map(&self, out: &mut Vec<Region>) {
        out.extend_from_slice(self.e820());
        out.extend_from_slice(self.allocations());
        // IVT and BDA: reserved (the first page).
        out.push(Region {
            base: 0,
            length: PAGE_SIZE,
            kind: MemoryKind::RESERVED.0,
        });
        // Stage 1, stage 2 and the loader image as far as it reaches; then the long-mode
        // stack, the bounce buffer and the page tables. The room the image may grow into
        // (its end up to IMAGE_LIMIT) is untouched and stays usable: kernels want low pages
        // (AP trampolines; rust-osdev's lower_memory_free asks for more than 16).
        let image_end = align_up(lowmem::image_end(), PAGE_SIZE).unwrap_or(IMAGE_LIMIT);
        for (base, end) in [(LOADER_START, image_end), (IMAGE_LIMIT, LOADER_END)] {
            out.push(Region {
                base,
                length: end - base,
                kind: MemoryKind::LOADER_RECLAIMABLE.0,
            });
        }
        // EBDA up to 1 MiB (VGA memory, option ROMs, the BIOS): reserved, whatever E820 says.
        out.push(Region {
            base: ebda_start(),
            length: MIB - ebda_start(),
            kind: MemoryKind::RESERVED.0,
        });
    }
}

/// The part of usable range `r` above 4 GiB, in whole 2 MiB pages (empty if none).
fn high_part(r: &Region) -> (u64, u64) {
    let start = align_up(r.base.max(FOUR_GIB), LARGE).unwrap_or(u64::MAX);
    (start, align_down(r.end(), LARGE))
}

/// Entry `index` (its low 9 bits) of the page table at physical (= identity) address `table`.
///
/// # Safety
/// `table` must be a mapped page table of the loader's.
unsafe fn entry(table: u64, index: u64) -> *mut u64 {
    (table as *mut u64).add((index & 511) as usize)
}

/// The start of the EBDA (BDA word 0x40E, a segment), page-aligned down; 0xA0000 without one.
pub fn ebda_start() -> u64 {
    // SAFETY: the BDA is always mapped.
    let seg = unsafe { lowmem::read::<u16>(0x40E) } as u64;
    let base = seg << 4;
    if (LOADER_END..0xA_0000).contains(&base) {
        align_down(base, PAGE_SIZE)
    } else {
        0xA_0000
    }
}
