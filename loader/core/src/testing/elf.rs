//! An ELF64 x86_64 executable builder for host tests (the ELF checks' tests and the boot
//! flow's): program headers as given, optionally sections (for `.hvboot_request`).

use ::elf::abi;
use alloc::vec::Vec;

/// The usual higher-half base of the tests' kernels.
pub const KBASE: u64 = 0xffff_ffff_8000_0000;

pub const PF_R: u32 = 4;
pub const PF_W: u32 = 2;
pub const PF_X: u32 = 1;

#[derive(Clone, Copy)]
pub struct Ph {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

pub fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
    Ph {
        p_type: abi::PT_LOAD,
        flags,
        offset,
        vaddr,
        paddr: vaddr.wrapping_sub(KBASE).wrapping_add(0x20_0000),
        filesz,
        memsz,
    }
}

/// Builds a little-endian ELF-64 x86_64 executable with the given program
/// headers; every file byte outside the headers is `(offset * 7) as u8 | 1`.
pub fn build_with(e_type: u16, machine: u16, entry: u64, phs: &[Ph], min_len: usize) -> Vec<u8> {
    let phoff = 64u64;
    let hdr_end = 64 + 56 * phs.len();
    let data_end = phs
        .iter()
        .filter_map(|p| p.offset.checked_add(p.filesz))
        .filter(|&end| end < 1 << 24)
        .max()
        .map(|end| end as usize)
        .unwrap_or(0);
    let len = hdr_end.max(data_end).max(min_len);
    let mut f: Vec<u8> = (0..len).map(|i| ((i * 7) as u8) | 1).collect();
    let mut h = Vec::new();
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&e_type.to_le_bytes());
    h.extend_from_slice(&machine.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // e_version
    h.extend_from_slice(&entry.to_le_bytes());
    h.extend_from_slice(&phoff.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&(phs.len() as u16).to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(h.len(), 64);
    for p in phs {
        h.extend_from_slice(&p.p_type.to_le_bytes());
        h.extend_from_slice(&p.flags.to_le_bytes());
        h.extend_from_slice(&p.offset.to_le_bytes());
        h.extend_from_slice(&p.vaddr.to_le_bytes());
        h.extend_from_slice(&p.paddr.to_le_bytes());
        h.extend_from_slice(&p.filesz.to_le_bytes());
        h.extend_from_slice(&p.memsz.to_le_bytes());
        h.extend_from_slice(&0x1000u64.to_le_bytes());
    }
    f[..h.len()].copy_from_slice(&h);
    f
}

pub fn build(entry: u64, phs: &[Ph]) -> Vec<u8> {
    build_with(abi::ET_EXEC, abi::EM_X86_64, entry, phs, 0)
}

/// Appends sections named `sections` (PROGBITS, with their bytes), a `.shstrtab` and the section
/// header table to `image`, and points the ELF header at them (gABI ch. 4, "Sections").
pub fn with_sections(mut image: Vec<u8>, sections: &[(&str, &[u8])]) -> Vec<u8> {
    let pad8 = |v: &mut Vec<u8>| v.resize(v.len().next_multiple_of(8), 0);
    let mut names = alloc::vec![0u8];
    let mut headers: Vec<[u64; 6]> = Vec::new(); // name, type, offset, size
    for (name, bytes) in sections {
        pad8(&mut image);
        headers.push([
            names.len() as u64,
            1,
            image.len() as u64,
            bytes.len() as u64,
            0,
            0,
        ]);
        image.extend_from_slice(bytes);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let strtab_name = names.len() as u64;
    names.extend_from_slice(b".shstrtab\0");
    headers.push([strtab_name, 3, image.len() as u64, names.len() as u64, 0, 0]);
    image.extend_from_slice(&names);
    pad8(&mut image);
    let shoff = image.len() as u64;
    image.extend_from_slice(&[0; 64]); // the null section
    for [name, ty, offset, size, ..] in &headers {
        image.extend_from_slice(&(*name as u32).to_le_bytes());
        image.extend_from_slice(&(*ty as u32).to_le_bytes());
        image.extend_from_slice(&0u64.to_le_bytes()); // sh_flags
        image.extend_from_slice(&0u64.to_le_bytes()); // sh_addr
        image.extend_from_slice(&offset.to_le_bytes());
        image.extend_from_slice(&size.to_le_bytes());
        image.extend_from_slice(&[0; 8]); // sh_link, sh_info
        image.extend_from_slice(&1u64.to_le_bytes()); // sh_addralign
        image.extend_from_slice(&0u64.to_le_bytes()); // sh_entsize
    }
    let count = headers.len() as u16 + 1;
    image[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    image[0x3c..0x3e].copy_from_slice(&count.to_le_bytes());
    image[0x3e..0x40].copy_from_slice(&(count - 1).to_le_bytes());
    image
}

/// Where `pie` puts things (link addresses; file offset = address): text, the read-only
/// segment with the relocation tables and the dynamic array, data (+ one page of bss).
pub const PIE_TEXT: u64 = 0x1000;
pub const PIE_RELA: u64 = 0x2000;
pub const PIE_REL: u64 = 0x2400;
pub const PIE_RELR: u64 = 0x2800;
pub const PIE_DYNAMIC: u64 = 0x2c00;
pub const PIE_DATA: u64 = 0x3000;

/// An `Elf64_Rela` (AMD64 psABI §4.4: `r_info` = symbol << 32 | type).
pub fn rela(offset: u64, r_type: u32, addend: i64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&u64::from(r_type).to_le_bytes());
    b.extend_from_slice(&addend.to_le_bytes());
    b
}

/// A static PIE (`ET_DYN`) linked at 0 as `build` lays it out: the `dynamic` entries (tag, value;
/// a DT_NULL is appended) in a `PT_DYNAMIC`, and `tables` (link address, bytes) written into the
/// file, such as relocation tables at `PIE_RELA`.. and data words at `PIE_DATA`...
pub fn pie(dynamic: &[(i64, u64)], tables: &[(u64, &[u8])]) -> Vec<u8> {
    let dyn_size = 16 * (dynamic.len() as u64 + 1);
    let mut phs = alloc::vec![
        load(PF_R | PF_X, PIE_TEXT, PIE_TEXT, 0x1000, 0x1000),
        load(PF_R, 0x2000, 0x2000, 0x1000, 0x1000),
        load(PF_R | PF_W, PIE_DATA, PIE_DATA, 0x1000, 0x2000),
        Ph {
            p_type: abi::PT_DYNAMIC,
            flags: PF_R,
            offset: PIE_DYNAMIC,
            vaddr: PIE_DYNAMIC,
            paddr: PIE_DYNAMIC,
            filesz: dyn_size,
            memsz: dyn_size,
        },
    ];
    for p in &mut phs {
        p.paddr = p.vaddr;
    }
    let mut f = build_with(abi::ET_DYN, abi::EM_X86_64, PIE_TEXT, &phs, 0x4000);
    let mut d = Vec::new();
    for &(tag, val) in dynamic.iter().chain(&[(0, 0)]) {
        d.extend_from_slice(&tag.to_le_bytes());
        d.extend_from_slice(&val.to_le_bytes());
    }
    let at = PIE_DYNAMIC as usize;
    f[at..at + d.len()].copy_from_slice(&d);
    for (addr, bytes) in tables {
        let at = *addr as usize;
        f[at..at + bytes.len()].copy_from_slice(bytes);
    }
    f
}
