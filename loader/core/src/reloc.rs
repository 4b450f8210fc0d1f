//! Run-time relocation of position-independent (`ET_DYN`) kernels: the `PT_DYNAMIC` array and
//! the relocation tables it names, checked once (`parse`, part of `crate::elf::check`) and
//! applied after the image is laid out in memory and before the hand-off (`Relocations::apply`).
//!
//! What a kernel linked as a static PIE (`-static-pie`, or rust-lld's `-pie` as
//! `x86_64-unknown-none` links) carries, per the gABI ch. 5 "Dynamic Section" and the AMD64
//! psABI §4.4 "Relocation": `DT_RELA`/`DT_RELASZ`/`DT_RELAENT` (24-byte `Elf64_Rela`),
//! `DT_REL`/`DT_RELSZ`/`DT_RELENT` (16-byte `Elf64_Rel`, the addend in place), `DT_JMPREL`/
//! `DT_PLTRELSZ`/`DT_PLTREL` and `DT_RELR`/`DT_RELRSZ`/`DT_RELRENT` (the gABI's packed relative
//! relocations: an even word is an address, an odd one a bitmap of the 63 words after it). Only
//! `R_X86_64_RELATIVE` (B + A) is applied, and `R_X86_64_NONE` skipped: a static PIE resolves
//! every symbol at link time, so anything else means the kernel expects a dynamic linker, and is
//! refused by name with its table, index and offset. `DT_NEEDED` is refused (no shared objects);
//! `DT_TEXTREL` needs nothing (the loader writes the image before it maps it).
//!
//! The `elf` crate parses the dynamic entries and the `Rela`/`Rel` records; the address checks
//! (every table inside a segment's file bytes, every target inside a segment's memory) are ours.

use ::elf::abi;
use ::elf::dynamic::DynamicTable;
use ::elf::endian::LittleEndian;
use ::elf::file::Class;
use ::elf::relocation::{RelIterator, RelaIterator};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::elf::Segment;

/// `DT_RELRSZ`, `DT_RELR`, `DT_RELRENT` (gABI, 2022; not in the `elf` crate's `abi`).
const DT_RELRSZ: i64 = 35;
const DT_RELR: i64 = 36;
const DT_RELRENT: i64 = 37;
/// Sizes of `Elf64_Rela`, `Elf64_Rel`, `Elf64_Relr`, `Elf64_Dyn`.
const RELA_SIZE: u64 = 24;
const REL_SIZE: u64 = 16;
const RELR_SIZE: u64 = 8;
const DYN_SIZE: u64 = 16;

/// The AMD64 psABI names of the relocation types (Table 4.9), for refusals.
const TYPES: &[&str] = &[
    "R_X86_64_NONE",
    "R_X86_64_64",
    "R_X86_64_PC32",
    "R_X86_64_GOT32",
    "R_X86_64_PLT32",
    "R_X86_64_COPY",
    "R_X86_64_GLOB_DAT",
    "R_X86_64_JUMP_SLOT",
    "R_X86_64_RELATIVE",
    "R_X86_64_GOTPCREL",
    "R_X86_64_32",
    "R_X86_64_32S",
    "R_X86_64_16",
    "R_X86_64_PC16",
    "R_X86_64_8",
    "R_X86_64_PC8",
    "R_X86_64_DTPMOD64",
    "R_X86_64_DTPOFF64",
    "R_X86_64_TPOFF64",
    "R_X86_64_TLSGD",
    "R_X86_64_TLSLD",
    "R_X86_64_DTPOFF32",
    "R_X86_64_GOTTPOFF",
    "R_X86_64_TPOFF32",
    "R_X86_64_PC64",
    "R_X86_64_GOTOFF64",
    "R_X86_64_GOTPC32",
    "R_X86_64_GOT64",
    "R_X86_64_GOTPCREL64",
    "R_X86_64_GOTPC64",
    "R_X86_64_GOTPLT64",
    "R_X86_64_PLTOFF64",
    "R_X86_64_SIZE32",
    "R_X86_64_SIZE64",
    "R_X86_64_GOTPC32_TLSDESC",
    "R_X86_64_TLSDESC_CALL",
    "R_X86_64_TLSDESC",
    "R_X86_64_IRELATIVE",
    "R_X86_64_RELATIVE64",
];

/// `R_X86_64_GLOB_DAT (6)`, `unknown (99)`.
fn type_name(t: u32) -> String {
    let name = TYPES.get(t as usize).copied().unwrap_or("unknown");
    format!("{name} ({t})")
}

/// Why the dynamic section or a relocation is refused: the field at fault (`program header 3
/// (PT_DYNAMIC) DT_RELASZ`, `DT_RELA entry 12`) and what is wrong and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is at fault.
    pub field: String,
    /// What is wrong, what was expected.
    pub message: String,
}

/// The three table formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Rela,
    Rel,
    Relr,
}

/// One relocation table: its dynamic tag's name, format and file bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Table {
    name: &'static str,
    format: Format,
    offset: usize,
    size: usize,
}

/// A position-independent kernel's relocations, checked: where they are in the file, how many,
/// and (once the loader chose it) the slide, the distance from the link address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocations {
    tables: Vec<Table>,
    /// How many relocations will be written (`R_X86_64_RELATIVE`s and RELR words).
    pub count: u64,
    /// The lowest segment page at the link address: what the image buffer's byte 0 stands for.
    pub link_start: u64,
    /// Added to every link-time address: where the kernel runs minus where it is linked.
    pub slide: u64,
}

/// One write: the target's link-time address and the addend (None: the addend is in place, REL
/// and RELR).
type Write = (u64, Option<i64>);

impl Relocations {
    /// Each relocation's (target, addend) in table order; stops early (returning the problem)
    /// at the first one `visit` refuses or that is malformed.
    fn each(
        &self,
        file: &[u8],
        mut visit: impl FnMut(&'static str, usize, Write) -> Result<(), Problem>,
    ) -> Result<(), Problem> {
        for t in &self.tables {
            let bytes = &file[t.offset..t.offset + t.size];
            match t.format {
                Format::Rela => {
                    let it = RelaIterator::new(LittleEndian, Class::ELF64, bytes);
                    for (i, r) in it.enumerate() {
                        check_type(t.name, i, r.r_type, r.r_offset)?;
                        if r.r_type == abi::R_X86_64_RELATIVE {
                            visit(t.name, i, (r.r_offset, Some(r.r_addend)))?;
                        }
                    }
                }
                Format::Rel => {
                    let it = RelIterator::new(LittleEndian, Class::ELF64, bytes);
                    for (i, r) in it.enumerate() {
                        check_type(t.name, i, r.r_type, r.r_offset)?;
                        if r.r_type == abi::R_X86_64_RELATIVE {
                            visit(t.name, i, (r.r_offset, None))?;
                        }
                    }
                }
                Format::Relr => {
                    // gABI "Relative relocation (RELR)": the bitmap's bit i (from 1) is the word
                    // (i - 1) after `next`; each bitmap moves `next` on by 63 words.
                    let mut next: Option<u64> = None;
                    for (i, w) in bytes.chunks_exact(8).enumerate() {
                        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
                        if w & 1 == 0 {
                            visit(t.name, i, (w, None))?;
                            next = w.checked_add(8);
                            continue;
                        }
                        let Some(base) = next else {
                            return Err(Problem {
                                field: format!("{} entry {i}", t.name),
                                message: format!(
                                    "bitmap {w:#x} does not follow an address (an even entry); \
                                     expected the table to start with one"
                                ),
                            });
                        };
                        for bit in 1..64 {
                            if w >> bit & 1 != 0 {
                                let at = base.wrapping_add((bit - 1) * 8);
                                visit(t.name, i, (at, None))?;
                            }
                        }
                        next = base.checked_add(63 * 8);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes every relocation into `image`, the laid-out kernel (`crate::elf::LoadPlan::
    /// copy_into`), whose byte 0 is `link_start`: B + A for RELA, B + the word in place for REL
    /// and RELR, B being the slide. `file` is the file `parse` checked.
    pub fn apply(&self, file: &[u8], image: &mut [u8]) {
        let (slide, start) = (self.slide, self.link_start);
        // `parse` checked every target inside a segment, so none is refused here.
        let _ = self.each(file, |_, _, (target, addend)| {
            let at = target.wrapping_sub(start) as usize;
            if let Some(word) = at.checked_add(8).and_then(|end| image.get_mut(at..end)) {
                let value = match addend {
                    Some(a) => slide.wrapping_add(a as u64),
                    None => slide
                        .wrapping_add(u64::from_le_bytes((&*word).try_into().unwrap_or_default())),
                };
                word.copy_from_slice(&value.to_le_bytes());
            }
            Ok(())
        });
    }
}

/// `R_X86_64_RELATIVE` and `R_X86_64_NONE` pass; every other type is refused by name.
fn check_type(table: &str, index: usize, t: u32, offset: u64) -> Result<(), Problem> {
    if t == abi::R_X86_64_RELATIVE || t == abi::R_X86_64_NONE {
        return Ok(());
    }
    Err(Problem {
        field: format!("{table} entry {index}"),
        message: format!(
            "relocation type {} at offset {offset:#x} is not supported: hvboot applies \
             R_X86_64_RELATIVE only, as in a static PIE; link the kernel with -static-pie \
             (every symbol resolved at link time) or as a fixed-address ET_EXEC",
            type_name(t)
        ),
    })
}

/// The file range of `len` bytes at link address `addr`, when one segment's file bytes hold it.
fn file_range(segments: &[Segment], addr: u64, len: u64) -> Option<usize> {
    let s = segments.iter().find(|s| {
        s.vaddr <= addr
            && addr
                .checked_add(len)
                .is_some_and(|e| e <= s.vaddr + s.filesz)
    })?;
    usize::try_from(s.offset + (addr - s.vaddr)).ok()
}

/// Reads and checks the `PT_DYNAMIC` of program header `index` (file bytes `offset..offset +
/// filesz`) of an `ET_DYN` kernel whose loadable `segments` are checked, and every relocation
/// its tables hold. None for `dynamic` means the kernel has no `PT_DYNAMIC`: nothing to relocate.
pub fn parse(
    file: &[u8],
    dynamic: Option<(usize, u64, u64)>,
    segments: &[Segment],
    link_start: u64,
) -> Result<Relocations, Problem> {
    let mut r = Relocations {
        tables: Vec::new(),
        count: 0,
        link_start,
        slide: 0,
    };
    let Some((index, offset, filesz)) = dynamic else {
        return Ok(r);
    };
    let header = format!("program header {index} (PT_DYNAMIC)");
    let bad = |field: &str, message: String| Problem {
        field: if field.is_empty() {
            header.clone()
        } else {
            format!("{header} {field}")
        },
        message,
    };
    let bytes = offset
        .checked_add(filesz)
        .filter(|&end| end <= file.len() as u64)
        .map(|end| &file[offset as usize..end as usize])
        .ok_or_else(|| {
            bad(
                "",
                format!(
                    "file bytes {offset:#x}..{:#x} lie outside the {}-byte file",
                    offset.saturating_add(filesz),
                    file.len()
                ),
            )
        })?;
    if filesz % DYN_SIZE != 0 {
        return Err(bad(
            "",
            format!("p_filesz {filesz:#x} is not a whole number of 16-byte Elf64_Dyn entries"),
        ));
    }
    // [address, size, entry size] of RELA, REL, RELR, JMPREL; and DT_PLTREL.
    let mut tags = [[None::<u64>; 3]; 4];
    let mut pltrel = None;
    for d in DynamicTable::new(LittleEndian, Class::ELF64, bytes).iter() {
        let v = d.d_val();
        let slot = match d.d_tag {
            abi::DT_NULL => break,
            abi::DT_NEEDED => {
                return Err(bad(
                    "DT_NEEDED",
                    "the kernel needs a shared library; expected a static PIE (-static-pie) \
                     or a fixed-address executable, which need none"
                        .into(),
                ))
            }
            abi::DT_RELA => (0, 0),
            abi::DT_RELASZ => (0, 1),
            abi::DT_RELAENT => (0, 2),
            abi::DT_REL => (1, 0),
            abi::DT_RELSZ => (1, 1),
            abi::DT_RELENT => (1, 2),
            DT_RELR => (2, 0),
            DT_RELRSZ => (2, 1),
            DT_RELRENT => (2, 2),
            abi::DT_JMPREL => (3, 0),
            abi::DT_PLTRELSZ => (3, 1),
            abi::DT_PLTREL => {
                pltrel = Some(v);
                continue;
            }
            _ => continue,
        };
        tags[slot.0][slot.1] = Some(v);
    }
    let jmprel_format = match pltrel {
        None | Some(7) => (Format::Rela, RELA_SIZE),
        Some(17) => (Format::Rel, REL_SIZE),
        Some(v) => {
            return Err(bad(
                "DT_PLTREL",
                format!("is {v}, expected DT_RELA (7) or DT_REL (17)"),
            ))
        }
    };
    let kinds = [
        (
            "DT_RELA",
            "DT_RELASZ",
            Some("DT_RELAENT"),
            Format::Rela,
            RELA_SIZE,
        ),
        (
            "DT_REL",
            "DT_RELSZ",
            Some("DT_RELENT"),
            Format::Rel,
            REL_SIZE,
        ),
        (
            "DT_RELR",
            "DT_RELRSZ",
            Some("DT_RELRENT"),
            Format::Relr,
            RELR_SIZE,
        ),
        (
            "DT_JMPREL",
            "DT_PLTRELSZ",
            None,
            jmprel_format.0,
            jmprel_format.1,
        ),
    ];
    for ([addr, size, ent], (name, size_name, ent_name, format, want)) in
        tags.into_iter().zip(kinds)
    {
        let Some(addr) = addr else {
            if size.is_some_and(|s| s != 0) {
                return Err(bad(size_name, format!("is set but {name} is not")));
            }
            continue;
        };
        let Some(size) = size else {
            return Err(bad(name, format!("is set but {size_name} is not")));
        };
        if let (Some(ent_name), Some(e)) = (ent_name, ent) {
            if e != want {
                return Err(bad(ent_name, format!("is {e}, expected {want}")));
            }
        }
        if size % want != 0 {
            return Err(bad(
                size_name,
                format!("{size:#x} is not a whole number of {want}-byte entries"),
            ));
        }
        let offset = file_range(segments, addr, size).ok_or_else(|| {
            bad(
                name,
                format!(
                    "the table at {addr:#x} ({size:#x} bytes) is not inside one PT_LOAD \
                     segment's file bytes"
                ),
            )
        })?;
        r.tables.push(Table {
            name,
            format,
            offset,
            size: size as usize,
        });
    }
    // Every target inside a segment's memory: the word written is part of the loaded image.
    let mut count = 0u64;
    r.each(file, |table, i, (target, _)| {
        let inside = segments
            .iter()
            .any(|s| s.vaddr <= target && target.checked_add(8).is_some_and(|e| e <= s.vend()));
        if !inside {
            return Err(Problem {
                field: format!("{table} entry {i}"),
                message: format!(
                    "R_X86_64_RELATIVE at offset {target:#x} writes outside every PT_LOAD \
                     segment; expected its 8 bytes inside the loaded image"
                ),
            });
        }
        count += 1;
        Ok(())
    })?;
    r.count = count;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{self, ElfError, LoadPlan, DEFAULT_PIE_BASE};
    use crate::testing::elf::{
        pie, rela, PIE_DATA, PIE_DYNAMIC, PIE_REL, PIE_RELA, PIE_RELR, PIE_TEXT,
    };
    use alloc::vec;

    /// The default slide of `pie`'s images (lowest page 0x1000).
    const SLIDE: u64 = DEFAULT_PIE_BASE - PIE_TEXT;

    fn problem(image: &[u8]) -> (String, String) {
        match elf::plan(image) {
            Err(ElfError::Dynamic(p)) => (p.field, p.message),
            other => panic!("expected a dynamic-section problem, got {other:?}"),
        }
    }

    /// `plan` laid out at its default slide and relocated: (the plan, the image).
    fn loaded(image: &[u8]) -> (LoadPlan, Vec<u8>) {
        let plan = elf::plan(image).unwrap();
        let plan = plan.slid(plan.default_slide()).unwrap();
        let mut dest = vec![0u8; plan.size() as usize];
        plan.copy_into(image, &mut dest);
        plan.relocate(image, &mut dest);
        (plan, dest)
    }

    fn word(plan: &LoadPlan, dest: &[u8], link: u64) -> u64 {
        let at = (link + plan.slide() - plan.virt_start) as usize;
        u64::from_le_bytes(dest[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn rela_rel_and_relr_are_applied_with_the_slide() {
        let mut relas = rela(PIE_DATA, abi::R_X86_64_RELATIVE, 0x1234);
        relas.extend(rela(PIE_DATA + 0x1800, abi::R_X86_64_RELATIVE, 0x10)); // in .bss
        relas.extend(rela(0, abi::R_X86_64_NONE, 0));
        // REL: the addend is the word in place (0x40 in the file).
        let mut rel = (PIE_DATA + 0x10).to_le_bytes().to_vec();
        rel.extend_from_slice(&u64::from(abi::R_X86_64_RELATIVE).to_le_bytes());
        // RELR: the word at 0x3020, then a bitmap for 0x3028 (bit 1) and 0x3038 (bit 3).
        let mut relr = (PIE_DATA + 0x20).to_le_bytes().to_vec();
        relr.extend_from_slice(&0b1011u64.to_le_bytes());
        let mut data = vec![0u8; 0x40];
        for (i, v) in [(0x10, 0x40u64), (0x20, 0x100), (0x28, 0x200), (0x38, 0x300)] {
            data[i..i + 8].copy_from_slice(&v.to_le_bytes());
        }
        let image = pie(
            &[
                (abi::DT_RELA, PIE_RELA),
                (abi::DT_RELASZ, relas.len() as u64),
                (abi::DT_RELAENT, 24),
                (abi::DT_REL, PIE_REL),
                (abi::DT_RELSZ, 16),
                (abi::DT_RELENT, 16),
                (DT_RELR, PIE_RELR),
                (DT_RELRSZ, 16),
                (DT_RELRENT, 8),
                (abi::DT_TEXTREL, 0),
            ],
            &[
                (PIE_RELA, &relas),
                (PIE_REL, &rel),
                (PIE_RELR, &relr),
                (PIE_DATA, &data),
            ],
        );
        let (plan, dest) = loaded(&image);
        assert_eq!(plan.relocations.as_ref().unwrap().count, 6);
        assert_eq!(
            (plan.slide(), plan.virt_start, plan.entry),
            (SLIDE, DEFAULT_PIE_BASE, DEFAULT_PIE_BASE)
        );
        assert!(plan.higher_half && plan.segments[0].vaddr == DEFAULT_PIE_BASE);
        for (link, want) in [
            (PIE_DATA, SLIDE + 0x1234),
            (PIE_DATA + 0x1800, SLIDE + 0x10),
            (PIE_DATA + 0x10, SLIDE + 0x40),
            (PIE_DATA + 0x20, SLIDE + 0x100),
            (PIE_DATA + 0x28, SLIDE + 0x200),
            (PIE_DATA + 0x30, 0), // bit 2 clear
            (PIE_DATA + 0x38, SLIDE + 0x300),
        ] {
            assert_eq!(
                word(&plan, &dest, link),
                want,
                "word at link address {link:#x}"
            );
        }
    }

    #[test]
    fn without_dynamic_entries_nothing_is_written() {
        let image = pie(&[], &[]);
        let (plan, _) = loaded(&image);
        assert_eq!(plan.relocations.as_ref().unwrap().count, 0);
        let plan = elf::plan(&image).unwrap();
        assert_eq!(plan.default_slide(), SLIDE);
        assert!(plan.slid(1 << 63).is_none(), "non-canonical");
        assert!(plan.slid(0x1000).is_some());
    }

    #[test]
    fn fixed_address_kernels_only_move_by_zero() {
        let image = crate::testing::elf::build(
            crate::testing::elf::KBASE,
            &[crate::testing::elf::load(
                crate::testing::elf::PF_R | crate::testing::elf::PF_X,
                0x1000,
                crate::testing::elf::KBASE,
                0x100,
                0x100,
            )],
        );
        let plan = elf::plan(&image).unwrap();
        assert!(!plan.relocatable());
        assert_eq!(plan.default_slide(), 0);
        assert!(plan.slid(0).is_some() && plan.slid(0x1000).is_none());
    }

    fn with_rela(relas: &[u8]) -> Vec<u8> {
        pie(
            &[
                (abi::DT_RELA, PIE_RELA),
                (abi::DT_RELASZ, relas.len() as u64),
                (abi::DT_RELAENT, 24),
            ],
            &[(PIE_RELA, relas)],
        )
    }

    #[test]
    fn other_relocation_types_are_refused_by_name() {
        let mut relas = rela(PIE_DATA, abi::R_X86_64_RELATIVE, 0);
        relas.extend(rela(PIE_DATA + 8, abi::R_X86_64_GLOB_DAT, 0));
        assert_eq!(
            problem(&with_rela(&relas)),
            (
                "DT_RELA entry 1".into(),
                "relocation type R_X86_64_GLOB_DAT (6) at offset 0x3008 is not supported: hvboot \
                 applies R_X86_64_RELATIVE only, as in a static PIE; link the kernel with \
                 -static-pie (every symbol resolved at link time) or as a fixed-address ET_EXEC"
                    .into()
            )
        );
        let (_, m) = problem(&with_rela(&rela(PIE_DATA, 200, 0)));
        assert!(
            m.starts_with("relocation type unknown (200) at offset 0x3000"),
            "{m}"
        );
    }

    #[test]
    fn targets_outside_the_image_are_refused() {
        let (f, m) = problem(&with_rela(&rela(0x9000, abi::R_X86_64_RELATIVE, 0)));
        assert_eq!(f, "DT_RELA entry 0");
        assert!(
            m.contains("at offset 0x9000 writes outside every PT_LOAD"),
            "{m}"
        );
        // The last word of the data segment's memory is in; one byte further is not.
        let last = PIE_DATA + 0x2000 - 8;
        assert!(elf::plan(&with_rela(&rela(last, abi::R_X86_64_RELATIVE, 0))).is_ok());
        assert!(elf::plan(&with_rela(&rela(last + 1, abi::R_X86_64_RELATIVE, 0))).is_err());
        // RELR: a bitmap first; a bit past the image.
        let relr = |words: &[u64]| {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            pie(
                &[
                    (DT_RELR, PIE_RELR),
                    (DT_RELRSZ, bytes.len() as u64),
                    (DT_RELRENT, 8),
                ],
                &[(PIE_RELR, &bytes)],
            )
        };
        let (f, m) = problem(&relr(&[3]));
        assert_eq!(f, "DT_RELR entry 0");
        assert!(m.contains("does not follow an address"), "{m}");
        let (f, _) = problem(&relr(&[PIE_DATA + 0x1f00, 1 << 63]));
        assert_eq!(f, "DT_RELR entry 1");
    }

    #[test]
    fn dynamic_entries_are_checked_by_name() {
        let dynamic = |tags: &[(i64, u64)]| problem(&pie(tags, &[]));
        let cases: &[(&[(i64, u64)], &str, &str)] = &[
            (
                &[(abi::DT_RELA, PIE_RELA)],
                "DT_RELA",
                "is set but DT_RELASZ is not",
            ),
            (
                &[(abi::DT_RELSZ, 16)],
                "DT_RELSZ",
                "is set but DT_REL is not",
            ),
            (
                &[
                    (abi::DT_RELA, PIE_RELA),
                    (abi::DT_RELASZ, 24),
                    (abi::DT_RELAENT, 16),
                ],
                "DT_RELAENT",
                "is 16, expected 24",
            ),
            (
                &[(abi::DT_RELA, PIE_RELA), (abi::DT_RELASZ, 25)],
                "DT_RELASZ",
                "0x19 is not a whole number of 24-byte entries",
            ),
            (
                &[(abi::DT_RELA, 0x2ff0), (abi::DT_RELASZ, 48)],
                "DT_RELA",
                "the table at 0x2ff0 (0x30 bytes) is not inside one PT_LOAD segment's file bytes",
            ),
            (
                &[(abi::DT_NEEDED, 1)],
                "DT_NEEDED",
                "the kernel needs a shared library; expected a static PIE (-static-pie) or a \
                 fixed-address executable, which need none",
            ),
            (
                &[
                    (abi::DT_JMPREL, PIE_RELA),
                    (abi::DT_PLTRELSZ, 24),
                    (abi::DT_PLTREL, 9),
                ],
                "DT_PLTREL",
                "is 9, expected DT_RELA (7) or DT_REL (17)",
            ),
        ];
        for (tags, field, message) in cases {
            assert_eq!(
                dynamic(tags),
                (
                    format!("program header 3 (PT_DYNAMIC) {field}"),
                    String::from(*message)
                )
            );
        }
        // PT_DYNAMIC itself: cut off by the file, or not whole entries.
        let mut image = pie(&[], &[]);
        let at = 64 + 3 * 56 + 32; // program header 3's p_filesz
        image[at..at + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
        let (f, m) = problem(&image);
        assert_eq!(f, "program header 3 (PT_DYNAMIC)");
        assert!(
            m.starts_with("file bytes 0x2c00..0x102c00 lie outside"),
            "{m}"
        );
        image[at..at + 8].copy_from_slice(&0x18u64.to_le_bytes());
        assert!(problem(&image)
            .1
            .contains("not a whole number of 16-byte Elf64_Dyn"));
        let _ = PIE_DYNAMIC;
    }

    #[test]
    fn jmprel_relative_entries_are_applied() {
        let relas = rela(PIE_DATA, abi::R_X86_64_RELATIVE, 8);
        let image = pie(
            &[
                (abi::DT_JMPREL, PIE_RELA),
                (abi::DT_PLTRELSZ, 24),
                (abi::DT_PLTREL, 7),
            ],
            &[(PIE_RELA, &relas)],
        );
        let (plan, dest) = loaded(&image);
        assert_eq!(word(&plan, &dest, PIE_DATA), SLIDE + 8);
    }
}
