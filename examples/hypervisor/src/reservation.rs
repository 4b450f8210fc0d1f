//! The seam between the sample and the loader's guest-memory reservation.

use hvboot_api::BootInfo;

use crate::frames::Block;

/// The loader's guest reservation as a block, if the loader made one of at
/// least `min_len` bytes inside the direct map.
pub fn from_boot_info(info: &BootInfo, min_len: u64) -> Option<Block> {
    let _ = (info, min_len);
    None
}
