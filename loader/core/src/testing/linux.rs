//! A crafted Linux bzImage for the core's tests (boot.rst, "THE REAL-MODE KERNEL HEADER").

use alloc::vec::Vec;

use crate::linux::{HEADER_MAGIC, LOADED_HIGH};

/// A minimal well-formed bzImage: protocol 2.15, 64-bit, relocatable, 2 MiB aligned.
pub fn bzimage() -> Vec<u8> {
    let mut b = alloc::vec![0u8; 0x1000 + 0x1000];
    b[0x1f1] = 7; // 8 sectors of setup: the kernel at 0x1000
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x201] = 0x6a; // header to 0x26c
    b[0x202..0x206].copy_from_slice(HEADER_MAGIC);
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x211] = LOADED_HIGH;
    b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    b[0x230..0x234].copy_from_slice(&(2u32 << 20).to_le_bytes());
    b[0x234] = 1;
    b[0x236..0x238].copy_from_slice(&3u16.to_le_bytes());
    b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    b[0x260..0x264].copy_from_slice(&0x40_0000u32.to_le_bytes());
    b
}
