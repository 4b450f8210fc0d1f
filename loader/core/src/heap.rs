//! The loader's heap: a bump allocator over pages taken from the firmware once, at start.
//! Each loader binary declares its `#[global_allocator]` as a [`BumpHeap`].
//!
//! (UEFI) The firmware's pool allocator disappears at ExitBootServices, but the loader still builds the
//! memory map after that; a heap of its own serves both phases. Nothing is ever freed: the loader
//! runs once and the whole arena is reported to the kernel as loader-reclaimable.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// A bump allocator over one arena; `dealloc` does nothing.
pub struct BumpHeap {
    state: UnsafeCell<(usize, usize)>, // (next, end)
}

// SAFETY: the loader is single-threaded and runs with no code re-entering the allocator.
unsafe impl Sync for BumpHeap {}

impl BumpHeap {
    /// A heap without an arena: every allocation fails until [`BumpHeap::init`].
    pub const fn empty() -> Self {
        Self {
            state: UnsafeCell::new((0, 0)),
        }
    }

    /// Give the heap its arena. Called once, before the first allocation.
    ///
    /// # Safety
    /// `base..base+size` must be memory the loader owns for the rest of its life.
    pub unsafe fn init(&self, base: usize, size: usize) {
        *self.state.get() = (base, base + size);
    }
}

unsafe impl GlobalAlloc for BumpHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let state = &mut *self.state.get();
        let start = (state.0 + layout.align() - 1) & !(layout.align() - 1);
        match start.checked_add(layout.size()) {
            Some(end) if state.1 != 0 && end <= state.1 => {
                state.0 = end;
                start as *mut u8
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}
