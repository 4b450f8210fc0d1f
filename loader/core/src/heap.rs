//! The loader's heap: a bump allocator over pages taken from the firmware, growing by further
//! pages while the firmware is there. Each loader binary declares its `#[global_allocator]` as a
//! [`BumpHeap`].
//!
//! (UEFI) The firmware's pool allocator disappears at ExitBootServices, but the loader still builds the
//! memory map after that; a heap of its own serves both phases. Nothing is ever freed: the loader
//! runs once and every arena is reported to the kernel as loader-reclaimable. The heap grows
//! (a new arena from the platform's `grow` hook) only until [`BumpHeap::stop_growing`], which
//! each platform calls as it leaves the firmware: after that no page may change hands.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

/// Asked for an arena of at least the given bytes; returns (base, size) or None.
pub type Grow = fn(usize) -> Option<(usize, usize)>;

/// A bump allocator over one arena at a time; `dealloc` does nothing.
pub struct BumpHeap {
    state: Cell<(usize, usize)>, // (next, end)
    grow: Cell<Option<Grow>>,
}

// SAFETY: the loader is single-threaded and runs with no code re-entering the allocator (the
// grow hook takes its pages from the platform without allocating on this heap).
unsafe impl Sync for BumpHeap {}

impl BumpHeap {
    /// A heap without an arena: every allocation fails until [`BumpHeap::init`].
    pub const fn empty() -> Self {
        Self {
            state: Cell::new((0, 0)),
            grow: Cell::new(None),
        }
    }

    /// Give the heap its first arena, and the hook that gives it more (None: it never grows).
    /// Called once, before the first allocation.
    ///
    /// # Safety
    /// `base..base+size`, and every arena `grow` returns, must be memory the loader owns for the
    /// rest of its life.
    pub unsafe fn init(&self, base: usize, size: usize, grow: Option<Grow>) {
        self.state.set((base, base + size));
        self.grow.set(grow);
    }

    /// No more arenas: the firmware is being left.
    pub fn stop_growing(&self) {
        self.grow.set(None);
    }

    fn bump(&self, layout: Layout) -> Option<usize> {
        let (next, end) = self.state.get();
        let start = next.checked_add(layout.align() - 1)? & !(layout.align() - 1);
        let stop = start.checked_add(layout.size())?;
        if end == 0 || stop > end {
            return None;
        }
        self.state.set((stop, end));
        Some(start)
    }
}

unsafe impl GlobalAlloc for BumpHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(p) = self.bump(layout) {
            return p as *mut u8;
        }
        // A new arena; the rest of the old one is left unused.
        let grown = self
            .grow
            .get()
            .and_then(|grow| grow(layout.size() + layout.align()));
        match grown {
            Some((base, size)) => {
                // Logging allocates nothing (the platforms' loggers format straight to COM1).
                log::info!("heap: another {size:#x}-byte arena at {base:#x}");
                self.state.set((base, base + size));
                self.bump(layout)
                    .map_or(core::ptr::null_mut(), |p| p as *mut u8)
            }
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    static mut ARENAS: [[u64; 64]; 4] = [[0; 64]; 4];
    static mut TAKEN: usize = 0;

    fn grow(min: usize) -> Option<(usize, usize)> {
        // SAFETY: the test is the only user of these statics.
        unsafe {
            if TAKEN == 3 || min > 512 {
                return None;
            }
            TAKEN += 1;
            Some((core::ptr::addr_of_mut!(ARENAS[TAKEN]) as usize, 512))
        }
    }

    #[test]
    fn grows_until_told_to_stop() {
        let heap = BumpHeap::empty();
        // SAFETY: the arenas are statics used by this test alone.
        unsafe { heap.init(core::ptr::addr_of_mut!(ARENAS[0]) as usize, 512, Some(grow)) };
        let layout = Layout::from_size_align(200, 8).unwrap();
        let got: Vec<usize> = (0..6)
            .map(|_| unsafe { heap.alloc(layout) } as usize)
            .collect();
        // Two allocations fit an arena; the third and fifth start a new one.
        assert!(got.iter().all(|&p| p != 0), "{got:?}");
        assert_eq!(got[1] - got[0], 200);
        assert_ne!(got[2] - got[1], 200);
        heap.stop_growing();
        assert!(
            unsafe { heap.alloc(layout) }.is_null(),
            "no arena after stop_growing"
        );
        assert!(!unsafe { heap.alloc(Layout::from_size_align(8, 8).unwrap()) }.is_null());
    }
}
