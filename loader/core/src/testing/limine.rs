//! A Limine kernel for host tests: a code page at `KBASE` and a data page after it holding the
//! words given (tags, markers, requests), as the `limine` crate lays them out.

use alloc::vec::Vec;

use super::elf::{build, load, KBASE, PF_R, PF_W, PF_X};
use crate::limine::{BASE_REVISION_MAGIC, COMMON_MAGIC, END_MARKER, START_MARKER};

/// Where the data page (the words) starts.
pub const DATA: u64 = KBASE + 0x1000;

/// The kernel with `words` at the start of its data page.
pub fn kernel(words: &[u64]) -> Vec<u8> {
    let phs = [
        load(PF_R | PF_X, 0x1000, KBASE, 0x1000, 0x1000),
        load(PF_R | PF_W, 0x2000, DATA, 0x1000, 0x1000),
    ];
    let mut f = build(KBASE, &phs);
    f[0x2000..0x3000].fill(0);
    for (i, w) in words.iter().enumerate() {
        f[0x2000 + i * 8..0x2008 + i * 8].copy_from_slice(&w.to_le_bytes());
    }
    f
}

pub fn tag(revision: u64) -> Vec<u64> {
    [BASE_REVISION_MAGIC[0], BASE_REVISION_MAGIC[1], revision].to_vec()
}

/// A request's header (id, revision, response 0) and `extra` zero words.
pub fn request(id: [u64; 2], revision: u64, extra: usize) -> Vec<u64> {
    let mut w = [COMMON_MAGIC[0], COMMON_MAGIC[1], id[0], id[1], revision, 0].to_vec();
    w.resize(6 + extra, 0);
    w
}

pub fn start() -> Vec<u64> {
    START_MARKER.to_vec()
}

pub fn end() -> Vec<u64> {
    END_MARKER.to_vec()
}
