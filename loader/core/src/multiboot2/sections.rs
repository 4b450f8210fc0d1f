//! The ELF section header table for Multiboot2's ELF-symbols information tag (specification
//! 2.0 §3.6.7, given when the header's information request names type 9): the table as the
//! file has it, with each section that is not in a loaded segment (no SHF_ALLOC: `.symtab`,
//! `.strtab`, `.shstrtab`, debug sections) loaded by the loader and its `sh_addr` set to where,
//! as GRUB does. ELF32 and ELF64 (System V gABI, "Sections"); extended numbering (`e_shnum` 0,
//! the count in section 0's `sh_size`; `e_shstrndx` SHN_XINDEX, the index in its `sh_link`).

use alloc::format;
use alloc::vec::Vec;

use super::{problem, u16_at, u32_at, u64_at, Problem};

const SHT_NULL: u32 = 0;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHN_XINDEX: u32 = 0xffff;

/// A section the loader copies from the file into memory of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// Its index in the table.
    pub index: usize,
    /// Its bytes in the file.
    pub offset: u64,
    /// Its size.
    pub size: u64,
    /// Its alignment (`sh_addralign`, at least 1, at most a page).
    pub align: u64,
}

/// The table, ready for the tag once each [`Load`] has an address ([`Sections::set_addr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    /// Number of entries.
    pub num: u32,
    /// Bytes of one entry (40 for ELF32, 64 for ELF64).
    pub entsize: u32,
    /// The index of the section-name string table.
    pub shndx: u32,
    /// The entries, as in the file until [`Sections::set_addr`].
    pub table: Vec<u8>,
    /// The sections to load, in table order.
    pub loads: Vec<Load>,
}

impl Sections {
    /// Records that section `index` was loaded at `addr` (below 4 GiB for ELF32).
    pub fn set_addr(&mut self, index: usize, addr: u64) {
        let at = index * self.entsize as usize;
        if self.entsize == 64 {
            self.table[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
        } else {
            self.table[at + 12..at + 16].copy_from_slice(&(addr as u32).to_le_bytes());
        }
    }

    /// Bytes the loaded sections take, each at its alignment, packed in table order.
    pub fn load_bytes(&self) -> u64 {
        self.loads
            .iter()
            .fold(0, |end, l| end.next_multiple_of(l.align) + l.size)
    }
}

/// One entry's (type, flags, offset, size, alignment).
fn entry(t: &[u8], b64: bool) -> (u32, u64, u64, u64, u64) {
    let w = |at: usize| {
        if b64 {
            u64_at(t, at).unwrap_or(0)
        } else {
            u64::from(u32_at(t, at).unwrap_or(0))
        }
    };
    let ty = u32_at(t, 4).unwrap_or(0);
    if b64 {
        (ty, w(8), w(24), w(32), w(48))
    } else {
        (ty, w(8), w(16), w(20), w(32))
    }
}

/// The section header table of the ELF `image` (class from `e_ident`), or None when it has
/// none (`e_shoff` 0). Every problem is pushed with its field.
pub fn read(image: &[u8], problems: &mut Vec<Problem>) -> Option<Sections> {
    let b64 = image.get(4) == Some(&2);
    let (shoff, entsize, shnum, shstrndx) = if b64 {
        (
            u64_at(image, 40),
            u16_at(image, 58),
            u16_at(image, 60),
            u16_at(image, 62),
        )
    } else {
        (
            u32_at(image, 32).map(u64::from),
            u16_at(image, 46),
            u16_at(image, 48),
            u16_at(image, 50),
        )
    };
    let (Some(shoff), Some(entsize), Some(shnum), Some(shstrndx)) =
        (shoff, entsize, shnum, shstrndx)
    else {
        problems.push(problem("ELF header", "truncated".into()));
        return None;
    };
    if shoff == 0 {
        return None;
    }
    let want: u16 = if b64 { 64 } else { 40 };
    if entsize != want {
        let m = format!(
            "{entsize}: ELF{} section headers are {want} bytes",
            if b64 { 64 } else { 32 }
        );
        problems.push(problem("ELF header e_shentsize", m));
        return None;
    }
    let size = u64::from(want);
    let first = usize::try_from(shoff)
        .ok()
        .and_then(|at| image.get(at..at.checked_add(want.into())?));
    let Some(first) = first else {
        let m = format!("{shoff:#x}: the section header table starts beyond the file's end");
        problems.push(problem("ELF header e_shoff", m));
        return None;
    };
    let (_, _, _, first_size, _) = entry(first, b64);
    let link0 = u32_at(first, if b64 { 40 } else { 24 }).unwrap_or(0);
    let num = if shnum == 0 {
        first_size
    } else {
        u64::from(shnum)
    };
    let shndx = match u32::from(shstrndx) {
        SHN_XINDEX => link0,
        i => i,
    };
    let end = num.checked_mul(size).and_then(|n| n.checked_add(shoff));
    let table =
        end.and_then(|end| image.get(usize::try_from(shoff).ok()?..usize::try_from(end).ok()?));
    let Some(table) = table else {
        let m =
            format!("{num} entries from {shoff:#x}: the section header table ends beyond the file");
        problems.push(problem("ELF header e_shoff", m));
        return None;
    };
    if u64::from(shndx) >= num {
        let m = format!("{shndx}: there are {num} sections");
        problems.push(problem("ELF header e_shstrndx", m));
    }
    let mut loads = Vec::new();
    for (index, t) in table.chunks(want.into()).enumerate() {
        let (ty, flags, offset, size, align) = entry(t, b64);
        if ty == SHT_NULL || ty == SHT_NOBITS || flags & SHF_ALLOC != 0 || size == 0 {
            continue;
        }
        if offset
            .checked_add(size)
            .is_none_or(|e| e > image.len() as u64)
        {
            let m = format!("bytes {offset:#x}+{size:#x} lie beyond the file's end");
            problems.push(problem(format!("section header {index}"), m));
            continue;
        }
        let align = align.clamp(1, crate::PAGE_SIZE);
        loads.push(Load {
            index,
            offset,
            size,
            align: if align.is_power_of_two() { align } else { 1 },
        });
    }
    Some(Sections {
        num: num as u32,
        entsize: want.into(),
        shndx,
        table: table.to_vec(),
        loads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF32 head with a section table at 0x100 of `entries` (type, flags, offset, size).
    fn elf32(entries: &[(u32, u32, u32, u32)], shstrndx: u16) -> Vec<u8> {
        let mut f = alloc::vec![0u8; 0x100 + 40 * entries.len()];
        f[..5].copy_from_slice(b"\x7fELF\x01");
        f[32..36].copy_from_slice(&0x100u32.to_le_bytes());
        f[46..48].copy_from_slice(&40u16.to_le_bytes());
        f[48..50].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        f[50..52].copy_from_slice(&shstrndx.to_le_bytes());
        for (i, &(ty, flags, offset, size)) in entries.iter().enumerate() {
            let at = 0x100 + 40 * i;
            for (k, v) in [(4, ty), (8, flags), (16, offset), (20, size), (32, 4)] {
                f[at + k..at + k + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        f
    }

    #[test]
    fn the_non_alloc_sections_are_loaded() {
        let img = elf32(&[(0, 0, 0, 0), (1, 6, 0x40, 0x10), (2, 0, 0x50, 0x30)], 2);
        let mut problems = Vec::new();
        let mut s = read(&img, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((s.num, s.entsize, s.shndx), (3, 40, 2));
        let load = Load {
            index: 2,
            offset: 0x50,
            size: 0x30,
            align: 4,
        };
        assert_eq!(s.loads, [load]);
        assert_eq!(s.load_bytes(), 0x30);
        s.set_addr(2, 0x1234_5000);
        assert_eq!(&s.table[80 + 12..80 + 16], &0x1234_5000u32.to_le_bytes());
        // No section table: no tag.
        let mut none = img.clone();
        none[32..36].fill(0);
        assert_eq!(read(&none, &mut problems), None);
        assert!(problems.is_empty());
    }

    #[test]
    fn each_problem_names_its_field() {
        let field = |img: &[u8]| {
            let mut problems = Vec::new();
            read(img, &mut problems);
            problems.into_iter().map(|p| p.field).collect::<Vec<_>>()
        };
        let good = elf32(&[(0, 0, 0, 0), (2, 0, 0x50, 0x30)], 1);
        let mut bad = good.clone();
        bad[46] = 32;
        assert_eq!(field(&bad), ["ELF header e_shentsize"]);
        let mut bad = good.clone();
        bad[48] = 200;
        assert_eq!(field(&bad), ["ELF header e_shoff"]);
        let mut bad = good.clone();
        bad[50] = 7;
        assert_eq!(field(&bad), ["ELF header e_shstrndx"]);
        let bad = elf32(&[(0, 0, 0, 0), (2, 0, 0x50, 0x3000)], 1);
        assert_eq!(field(&bad), ["section header 1"]);
        // Extended numbering: the count in section 0's sh_size, the index in its sh_link.
        let mut ext = elf32(&[(0, 0, 0, 2), (2, 0, 0x50, 0x30)], 0xffff);
        ext[48..50].fill(0);
        ext[0x100 + 24..0x100 + 28].copy_from_slice(&1u32.to_le_bytes());
        let mut problems = Vec::new();
        let s = read(&ext, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((s.num, s.shndx, s.loads.len()), (2, 1, 1));
    }
}
