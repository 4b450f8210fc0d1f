//! Multiboot2 images for host tests: a header with the tags given, in a flat file (address
//! tag) or at the start of an ELF32 with one `PT_LOAD` segment.

use alloc::vec::Vec;

use crate::multiboot2::HEADER_MAGIC;

/// A tag: type, flags, and its body (padded to 8 bytes by [`header`]).
pub fn tag(kind: u16, flags: u16, body: &[u32]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&kind.to_le_bytes());
    t.extend_from_slice(&flags.to_le_bytes());
    t.extend_from_slice(&(8 + 4 * body.len() as u32).to_le_bytes());
    for w in body {
        t.extend_from_slice(&w.to_le_bytes());
    }
    t
}

/// A header (magic, architecture 0, length, checksum) with `tags` and the end tag.
pub fn header(tags: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for t in tags.iter().chain([&tag(0, 0, &[])]) {
        body.extend_from_slice(t);
        body.resize(body.len().next_multiple_of(8), 0);
    }
    let len = 16 + body.len() as u32;
    let sum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(len);
    let mut h = Vec::new();
    for w in [HEADER_MAGIC, 0, len, sum] {
        h.extend_from_slice(&w.to_le_bytes());
    }
    h.extend_from_slice(&body);
    h
}

/// An ELF32 (EM_386) whose one RWX segment holds the file from offset 0x1000 at physical
/// `load`, `code` bytes long, entered at `load`; the header at file offset 0x100.
pub fn elf32(hdr: &[u8], load: u32, code: &[u8]) -> Vec<u8> {
    let mut f = alloc::vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 1; // ELFCLASS32
    f[5] = 1; // little-endian
    f[6] = 1;
    let put16 =
        |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut f, 16, 2); // ET_EXEC
    put16(&mut f, 18, 3); // EM_386
    put32(&mut f, 20, 1);
    put32(&mut f, 24, load); // e_entry
    put32(&mut f, 28, 52); // e_phoff
    put16(&mut f, 40, 52);
    put16(&mut f, 42, 32);
    put16(&mut f, 44, 1);
    let len = code.len().max(1) as u32;
    for (i, v) in [1, 0x1000, load, load, len, len + 0x1000, 7, 0x1000]
        .iter()
        .enumerate()
    {
        put32(&mut f, 52 + 4 * i, *v);
    }
    f[0x100..0x100 + hdr.len()].copy_from_slice(hdr);
    f.extend_from_slice(code);
    f
}
