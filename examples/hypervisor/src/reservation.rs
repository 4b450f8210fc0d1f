//! The seam between the sample and the loader's guest-memory reservation.
//!
//! The kernel asks for guest memory in its request header (`request!` in
//! main.rs). A loader that honours it reports the block in
//! `BootInfo.guest_reservation_*` (memory kind `GUEST_RESERVED`); this module
//! turns it into a [`Block`]. Until the loader does, [`from_boot_info`]
//! returns None and the guest's memory is carved from `USABLE` regions.

use hvboot_api::BootInfo;

use crate::frames::Block;

/// The loader's guest reservation as a block, if the loader made one of at
/// least `min_len` bytes, 4 KiB aligned and inside the direct map.
pub fn from_boot_info(info: &BootInfo, min_len: u64) -> Option<Block> {
    let r = info.guest_reservation()?;
    if r.len < min_len || r.phys % 4096 != 0 || !info.in_direct_map(r.phys, r.len) {
        return None;
    }
    let block = Block {
        phys: r.phys,
        virt: info.phys_to_virt(r.phys),
        len: min_len,
    };
    // SAFETY: the loader reserved this memory for the kernel's guests and left
    // it untouched; nothing else refers to it.
    unsafe { block.bytes_mut().fill(0) };
    Some(block)
}
