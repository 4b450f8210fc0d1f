//! Validation of the kernel ELF and its load plan.
//!
//! Implements the checks hvboot makes on a kernel image: the one rule set, used by the loader
//! and, through `hvboot-check` (loader/check), by the host toolkit. In terms of the ELF-64 Object File
//! Format (v1.5) and the System V ABI (gABI ch. 4 "ELF Header", ch. 5
//! "Program Header"; the AMD64 psABI for the 4 KiB page size and
//! `EM_X86_64`):
//!
//! - ELF header (§3 "ELF Header"): magic `\x7fELF`, `ELFCLASS64`,
//!   `ELFDATA2LSB`, `EV_CURRENT`, `e_machine == EM_X86_64` (62),
//!   `e_type == ET_EXEC`, or `ET_DYN` (a position-independent kernel, relocated by
//!   `crate::reloc`); `e_phentsize == 56`, `e_phnum` neither 0 nor
//!   `PN_XNUM`, the program header table inside the file.
//! - At least one `PT_LOAD`, and at least one with `p_memsz > 0`.
//! - Each `PT_LOAD` (§8 "Program Header Table"): `p_filesz <= p_memsz`; the
//!   file range `p_offset..p_offset + p_filesz` inside the file; `p_align` 0
//!   or a power of two; `p_vaddr % 4096 == p_offset % 4096` (when
//!   `p_filesz > 0`). `PT_LOAD`s with `p_memsz == 0` occupy no memory: they
//!   pass these checks and are then left out of the plan. The others: a
//!   canonical virtual range (Intel SDM Vol. 1 §3.3.7.1) not crossing the
//!   non-canonical hole and whose end rounded up to 4 KiB fits in 64 bits;
//!   never both writable and executable (hvboot maps W^X); readable (`PF_R`).
//! - All segments in the higher half (`p_vaddr >= 0xffff_8000_0000_0000`) or
//!   all in the lower half (below `0x0000_8000_0000_0000`).
//! - No two `PT_LOAD` virtual ranges overlap or share a 4 KiB page (each page
//!   gets the permissions of exactly one segment).
//! - Lower-half kernels are placed at `p_paddr`: it must be at least 1 MiB,
//!   end below 2^52, be congruent to `p_vaddr` modulo 4 KiB, and the physical
//!   ranges must not overlap or share a 4 KiB page either.
//! - `e_entry` lies inside an executable `PT_LOAD`.
//! - `ET_DYN` kernels: no placement at `p_paddr` (they go anywhere, slid as their protocol says:
//!   [`LoadPlan::slid`]); their `PT_DYNAMIC` and relocations pass `crate::reloc::parse`; the
//!   image fits at the default slide ([`LoadPlan::default_slide`]).

use ::elf::abi;
use ::elf::endian::LittleEndian;
use ::elf::file::{parse_ident, Class, FileHeader};
use ::elf::segment::SegmentTable;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::reloc::{self, Relocations};
use crate::{align_down, align_up, PAGE_SIZE};

/// Lowest canonical higher-half address (48-bit virtual addresses).
pub const HIGHER_HALF_START: u64 = 0xffff_8000_0000_0000;
/// End (exclusive) of the canonical lower half (48-bit virtual addresses).
pub const LOWER_HALF_END: u64 = 0x0000_8000_0000_0000;
/// Where a position-independent kernel linked below it runs by default: the lowest page of its
/// image there (limine-protocol PROTOCOL.md "Entry memory layout": the minimum slide of a
/// relocatable kernel; hvboot-api's kernel.ld links fixed-address kernels there too).
pub const DEFAULT_PIE_BASE: u64 = 0xffff_ffff_8000_0000;
/// Lowest physical address at which a lower-half kernel may be placed.
pub const MIN_LOWER_HALF_PADDR: u64 = 0x10_0000;
/// Architectural limit of physical addresses (MAXPHYADDR <= 52).
pub const PHYS_LIMIT: u64 = 1 << 52;

/// Size of an ELF-64 file header.
const EHDR64_SIZE: usize = 64;
/// Size of an ELF-64 program header.
const PHDR64_SIZE: u16 = 56;
/// `e_phnum` value announcing extended numbering (gABI ch. 4).
const PN_XNUM: u16 = 0xffff;

/// The kinds of kernel the loader boots: hvboot's own (an x86_64 ELF executable entered in
/// long mode with hvboot's boot information and an optional `.hvboot_request`), Multiboot2
/// (`crate::multiboot2`), Linux bzImages (`crate::linux`), Limine kernels (`crate::limine`) and
/// rust-osdev's `bootloader_api` kernels (`crate::bootloader_api`), each recognised by [`kind`]
/// and checked by its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelKind {
    /// hvboot's own protocol: the ELF rules of this module.
    HvbootElf,
    /// A Multiboot2 header in the first 32 KiB: the rules of `crate::multiboot2`.
    Multiboot2,
    /// A Linux bzImage ("HdrS" at 0x202): the rules of `crate::linux`.
    Linux,
    /// An ELF with Limine's base-revision tag or requests: `crate::limine`.
    Limine,
    /// rust-osdev's `bootloader_api`: an ELF with a `.bootloader-config` section, this
    /// module's ELF rules and `crate::bootloader_api`'s config rules.
    BootloaderApi,
}

impl KernelKind {
    /// The kind's stable name (`hvboot-check`'s JSON, `hvboot inspect`).
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::HvbootElf => "hvboot-elf",
            KernelKind::Multiboot2 => "multiboot2",
            KernelKind::Linux => "linux",
            KernelKind::Limine => "limine",
            KernelKind::BootloaderApi => "bootloader-api",
        }
    }
}

/// The kind of kernel `image` is, `None` when it is none the loader knows (its file header is
/// refused). A Multiboot2 header in the first 32 KiB makes it a Multiboot2 kernel even if it
/// is an ELF64 (as GRUB, which prefers the header to the ELF); an ELF64 with Limine's magic is
/// a Limine kernel.
pub fn kind(image: &[u8]) -> Option<KernelKind> {
    if crate::multiboot2::is_multiboot2(image) {
        return Some(KernelKind::Multiboot2);
    }
    if crate::linux::is_bzimage(image) {
        return Some(KernelKind::Linux);
    }
    check_header(image).ok()?;
    if crate::limine::is_limine(image) {
        return Some(KernelKind::Limine);
    }
    if crate::bootloader_api::is_bootloader_api(image) {
        return Some(KernelKind::BootloaderApi);
    }
    Some(KernelKind::HvbootElf)
}

/// The file bytes of section `name` of ELF `image`: None when `image` has no such section (or
/// no readable section headers), else the bytes or why there are none (`SHT_NOBITS`, a range
/// outside the file). How the `.hvboot_request` and `.bootloader-config` sections are read.
pub fn section_bytes<'a>(image: &'a [u8], name: &str) -> Option<Result<&'a [u8], String>> {
    let file = ::elf::ElfBytes::<LittleEndian>::minimal_parse(image).ok()?;
    let shdr = file.section_header_by_name(name).ok()??;
    if shdr.sh_type == abi::SHT_NOBITS {
        return Some(Err("has no bytes in the file (SHT_NOBITS)".into()));
    }
    let end = shdr.sh_offset.checked_add(shdr.sh_size);
    let bytes = end
        .filter(|&e| e <= image.len() as u64)
        .map(|e| &image[shdr.sh_offset as usize..e as usize]);
    Some(bytes.ok_or_else(|| {
        format!(
            "file bytes {:#x}..{:#x} lie outside the {}-byte file",
            shdr.sh_offset,
            shdr.sh_offset.saturating_add(shdr.sh_size),
            image.len()
        )
    }))
}

/// One loadable segment (`PT_LOAD`) of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the program header in the program header table.
    pub index: usize,
    /// `p_vaddr`: virtual address of the segment's first byte.
    pub vaddr: u64,
    /// `p_paddr`: physical address (where a lower-half kernel is placed).
    pub paddr: u64,
    /// `p_memsz`: size in memory (at least `filesz`; the rest is zeroed).
    pub memsz: u64,
    /// `p_filesz`: number of bytes taken from the file.
    pub filesz: u64,
    /// `p_offset`: offset of the segment's bytes in the file.
    pub offset: u64,
    /// `PF_W` is set.
    pub writable: bool,
    /// `PF_X` is set.
    pub executable: bool,
}

impl Segment {
    /// End (exclusive) of the segment's virtual range.
    pub fn vend(&self) -> u64 {
        // Checked by `plan`: cannot overflow.
        self.vaddr + self.memsz
    }

    /// `R-X`, `RW-` or `R--` (a planned segment is readable and never writable and executable).
    pub fn flags(&self) -> &'static str {
        flags_str(
            abi::PF_R
                | (u32::from(self.writable) * abi::PF_W)
                | (u32::from(self.executable) * abi::PF_X),
        )
    }

    /// First virtual page of the segment (4 KiB aligned).
    pub fn page_start(&self) -> u64 {
        align_down(self.vaddr, PAGE_SIZE)
    }

    /// End (exclusive, 4 KiB aligned) of the segment's virtual pages.
    pub fn page_end(&self) -> u64 {
        // Checked by `plan`: cannot overflow.
        align_up(self.vend(), PAGE_SIZE).unwrap_or(u64::MAX)
    }
}

/// How to load a validated kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// `e_entry`: the kernel's entry point (virtual address).
    pub entry: u64,
    /// All segments are in the higher half (else all are in the lower half,
    /// and each is placed at its `paddr`).
    pub higher_half: bool,
    /// The loadable segments with `p_memsz > 0`, sorted by `vaddr` (so
    /// `segments[0]` is the lowest).
    pub segments: Vec<Segment>,
    /// Lowest segment address, rounded down to 4 KiB.
    pub virt_start: u64,
    /// Highest segment end, rounded up to 4 KiB.
    pub virt_end: u64,
    /// A position-independent (`ET_DYN`) kernel's relocations; None for `ET_EXEC`.
    pub relocations: Option<Relocations>,
}

/// Why a program header is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentProblem {
    /// `p_filesz > p_memsz`.
    FileSizeExceedsMemSize {
        /// `p_filesz`
        filesz: u64,
        /// `p_memsz`
        memsz: u64,
    },
    /// `p_offset + p_filesz` is past the end of the file.
    FileRangeOutside {
        /// `p_offset`
        offset: u64,
        /// `p_filesz`
        filesz: u64,
        /// The file's length.
        file_len: u64,
    },
    /// `p_align` is neither 0 nor a power of two.
    BadAlign {
        /// `p_align`
        align: u64,
    },
    /// `p_vaddr % 4096 != p_offset % 4096`.
    Misaligned {
        /// `p_vaddr`
        vaddr: u64,
        /// `p_offset`
        offset: u64,
    },
    /// `p_vaddr + p_memsz`, rounded up to 4 KiB, does not fit in 64 bits.
    AddressWraps {
        /// `p_vaddr`
        vaddr: u64,
        /// `p_memsz`
        memsz: u64,
    },
    /// The virtual range is not canonical or crosses the non-canonical hole.
    NonCanonical {
        /// `p_vaddr`
        vaddr: u64,
        /// `p_memsz`
        memsz: u64,
    },
    /// Both `PF_W` and `PF_X` are set.
    WritableAndExecutable {
        /// `p_flags`
        flags: u32,
    },
    /// `PF_R` is not set.
    NotReadable {
        /// `p_flags`
        flags: u32,
    },
    /// Lower-half segment with `p_paddr` below 1 MiB.
    LowPhysicalAddress {
        /// `p_paddr`
        paddr: u64,
        /// `p_memsz`
        memsz: u64,
    },
    /// Lower-half segment whose physical range ends above 2^52.
    PhysicalOutOfRange {
        /// `p_paddr`
        paddr: u64,
        /// `p_memsz`
        memsz: u64,
    },
    /// Lower-half segment with `p_paddr % 4096 != p_vaddr % 4096`.
    PhysicalMisaligned {
        /// `p_paddr`
        paddr: u64,
        /// `p_vaddr`
        vaddr: u64,
    },
}

/// Why a kernel image is rejected. [`field`](Self::field) names the field at fault,
/// [`message`](Self::message) says what is wrong and what was expected; `Display` is
/// `<field>: <message>`. The loader prints it after the kernel's path; `hvboot-check` hands the
/// two parts to the host toolkit, which prints them the same way.
#[derive(Debug)]
pub enum ElfError {
    /// The file is empty.
    Empty,
    /// `e_ident[EI_MAG0..=EI_MAG3]` is not `\x7fELF` (the file's first bytes, up to 4).
    Magic([u8; 4], usize),
    /// The file ends inside `e_ident`'s class and data bytes.
    IdentTooShort {
        /// The file's length.
        len: usize,
    },
    /// `e_ident[EI_CLASS]` is not `ELFCLASS64`.
    Class(u8),
    /// `e_ident[EI_DATA]` is not `ELFDATA2LSB`.
    Data(u8),
    /// The file is shorter than an ELF-64 header.
    TooShort {
        /// The file's length.
        len: usize,
    },
    /// `e_ident[EI_VERSION]` is not `EV_CURRENT`.
    Version(u8),
    /// `e_machine` is not `EM_X86_64`.
    Machine(u16),
    /// `e_type` is not `ET_EXEC`.
    Type(u16),
    /// `e_phnum` is 0 (no program headers).
    NoProgramHeaders,
    /// `e_phnum` is `PN_XNUM` (extended numbering, not supported).
    ExtendedPhNum,
    /// `e_phentsize` is not 56.
    PhEntSize(u16),
    /// The program header table is not inside the file.
    PhTableOutside {
        /// `e_phoff`
        phoff: u64,
        /// `e_phnum`
        phnum: u16,
        /// The file's length.
        file_len: u64,
    },
    /// The `elf` crate could not parse a header.
    Malformed(::elf::ParseError),
    /// No program header is `PT_LOAD`.
    NoLoadSegments {
        /// `e_phnum`
        count: usize,
        /// The distinct `p_type`s found, sorted.
        types: Vec<u32>,
    },
    /// Every `PT_LOAD` has `p_memsz == 0`.
    AllLoadSegmentsEmpty,
    /// A `PT_LOAD` program header is rejected.
    Segment {
        /// Index in the program header table.
        index: usize,
        /// What is wrong with it.
        problem: SegmentProblem,
    },
    /// Some segments are in the lower half and some in the higher half.
    MixedHalves {
        /// The first lower-half segment.
        lower: Box<Segment>,
        /// The first higher-half segment.
        higher: Box<Segment>,
    },
    /// Two segments' ranges overlap.
    Overlap {
        /// Program header index of the segment that starts lower.
        first: usize,
        /// Program header index of the other segment.
        second: usize,
        /// Physical ranges (lower-half kernels), else virtual.
        physical: bool,
        /// The two segments (`first`, `second`).
        segments: Box<[Segment; 2]>,
    },
    /// Two segments share a 4 KiB page.
    SharedPage {
        /// Program header index of the segment that starts lower.
        first: usize,
        /// Program header index of the other segment.
        second: usize,
        /// Address of the shared page.
        page: u64,
        /// A physical page (lower-half kernels), else virtual.
        physical: bool,
        /// The two segments (`first`, `second`).
        segments: Box<[Segment; 2]>,
    },
    /// `e_entry` is not inside any `PT_LOAD` (the segments, in program header order).
    EntryOutside(u64, Vec<Segment>),
    /// An `ET_DYN` kernel's dynamic section or a relocation is refused.
    Dynamic(reloc::Problem),
    /// An `ET_DYN` kernel does not fit at the default slide (`DEFAULT_PIE_BASE`).
    NoRoomToSlide {
        /// The image's size (page-rounded).
        size: u64,
    },
    /// `e_entry` is inside a `PT_LOAD` that is not executable.
    EntryNotExecutable {
        /// `e_entry`
        entry: u64,
        /// Program header index of the segment containing it.
        index: usize,
        /// That segment.
        segment: Segment,
    },
}

/// `R-X`-style flags of a `p_flags` value.
pub fn flags_str(p_flags: u32) -> &'static str {
    const ALL: [&str; 8] = ["---", "--X", "-W-", "-WX", "R--", "R-X", "RW-", "RWX"];
    ALL[(p_flags & 7) as usize]
}

/// `0x1000-0x2000`; the end may lie past 2^64 (u128).
struct Range(u64, u128);

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.0, self.1)
    }
}

fn range(start: u64, len: u64) -> Range {
    Range(start, u128::from(start) + u128::from(len))
}

/// The gABI names of common `e_machine` values.
const MACHINES: &[(u32, &str)] = &[
    (0, "EM_NONE"),
    (2, "EM_SPARC"),
    (3, "EM_386"),
    (4, "EM_68K"),
    (8, "EM_MIPS"),
    (20, "EM_PPC"),
    (21, "EM_PPC64"),
    (22, "EM_S390"),
    (40, "EM_ARM"),
    (43, "EM_SPARCV9"),
    (50, "EM_IA_64"),
    (62, "EM_X86_64"),
    (183, "EM_AARCH64"),
    (243, "EM_RISCV"),
    (258, "EM_LOONGARCH"),
];
/// The gABI names of the `e_type` values.
const TYPES: &[(u32, &str)] = &[
    (0, "ET_NONE"),
    (1, "ET_REL"),
    (2, "ET_EXEC"),
    (3, "ET_DYN"),
    (4, "ET_CORE"),
];
/// The names of common `p_type` values.
const SEGMENT_TYPES: &[(u32, &str)] = &[
    (0, "PT_NULL"),
    (1, "PT_LOAD"),
    (2, "PT_DYNAMIC"),
    (3, "PT_INTERP"),
    (4, "PT_NOTE"),
    (5, "PT_SHLIB"),
    (6, "PT_PHDR"),
    (7, "PT_TLS"),
    (0x6474_e550, "PT_GNU_EH_FRAME"),
    (0x6474_e551, "PT_GNU_STACK"),
    (0x6474_e552, "PT_GNU_RELRO"),
    (0x6474_e553, "PT_GNU_PROPERTY"),
];

fn name_of(names: &[(u32, &'static str)], value: u32) -> Option<&'static str> {
    names.iter().find(|(v, _)| *v == value).map(|(_, n)| *n)
}

/// `EM_386 (3)`, `ET_CORE (4)`, `unknown (48879)`.
fn named(names: &[(u32, &'static str)], value: u16) -> String {
    let name = name_of(names, value.into()).unwrap_or("unknown");
    format!("{name} ({value})")
}

/// `PT_NOTE`, or the value in hex.
fn segment_type_name(t: u32) -> String {
    name_of(SEGMENT_TYPES, t).map_or_else(|| format!("{t:#x}"), String::from)
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SegmentProblem::FileSizeExceedsMemSize { filesz, memsz } => write!(
                f,
                "p_filesz ({filesz:#x}) is larger than p_memsz ({memsz:#x}); expected \
                 p_filesz <= p_memsz (the file bytes must fit in the segment)"
            ),
            SegmentProblem::FileRangeOutside {
                offset,
                filesz,
                file_len,
            } => write!(
                f,
                "file bytes {} (p_offset + p_filesz) lie outside the file ({file_len} bytes); \
                 the file is truncated or p_offset/p_filesz are wrong",
                range(offset, filesz)
            ),
            SegmentProblem::BadAlign { align } => write!(
                f,
                "p_align is {align:#x}, expected 0 or a power of two (such as 0x1000)"
            ),
            SegmentProblem::Misaligned { vaddr, offset } => write!(
                f,
                "p_vaddr {vaddr:#x} and p_offset {offset:#x} differ modulo the 4 KiB page size \
                 ({:#x} vs {:#x}); expected p_vaddr % 4096 == p_offset % 4096 so the segment \
                 can be mapped page by page",
                vaddr % PAGE_SIZE,
                offset % PAGE_SIZE
            ),
            SegmentProblem::AddressWraps { vaddr, memsz } => write!(
                f,
                "p_vaddr {vaddr:#x} + p_memsz {memsz:#x} reaches or wraps past the end of the \
                 64-bit address space; expected the segment's last page to end below 2**64"
            ),
            SegmentProblem::NonCanonical { vaddr, memsz } => write!(
                f,
                "virtual range {} is not canonical; expected addresses below \
                 {LOWER_HALF_END:#x} (lower half) or at/above {HIGHER_HALF_START:#x} (higher half)",
                range(vaddr, memsz)
            ),
            SegmentProblem::WritableAndExecutable { flags } => write!(
                f,
                "segment is both writable and executable (flags {}); hvboot enforces W^X: split \
                 it in the linker script (PHDRS) into an R-X text segment and an RW- data \
                 segment on separate pages",
                flags_str(flags)
            ),
            SegmentProblem::NotReadable { flags } => write!(
                f,
                "segment is not readable (flags {}); x86_64 page tables cannot map non-readable \
                 pages, expected R-X, RW- or R-- (add PF_R to the PHDRS FLAGS)",
                flags_str(flags)
            ),
            SegmentProblem::LowPhysicalAddress { paddr, memsz } => write!(
                f,
                "lower-half kernel segment is placed at p_paddr {paddr:#x} (physical {}), which \
                 overlaps the first 1 MiB reserved for firmware and the loader; expected \
                 p_paddr >= {MIN_LOWER_HALF_PADDR:#x} (link the kernel at 1 MiB or above, e.g. \
                 0x200000)",
                range(paddr, memsz)
            ),
            SegmentProblem::PhysicalOutOfRange { paddr, memsz } => write!(
                f,
                "physical range {} goes beyond the 52-bit physical address limit {PHYS_LIMIT:#x}",
                range(paddr, memsz)
            ),
            SegmentProblem::PhysicalMisaligned { paddr, vaddr } => write!(
                f,
                "p_paddr {paddr:#x} and p_vaddr {vaddr:#x} differ modulo the 4 KiB page size; \
                 expected p_paddr % 4096 == p_vaddr % 4096"
            ),
        }
    }
}

impl ElfError {
    /// The field at fault, as the toolkit and the loader print it after the file's path:
    /// `ELF header e_machine`, `program header 2 (PT_LOAD)`, `program headers 0 and 1
    /// (PT_LOAD)`; empty for the file as a whole (an empty file).
    pub fn field(&self) -> String {
        let pair =
            |a: usize, b: usize| format!("program headers {} and {} (PT_LOAD)", a.min(b), a.max(b));
        match self {
            ElfError::Empty => String::new(),
            ElfError::Magic(..) | ElfError::IdentTooShort { .. } => "ELF header e_ident".into(),
            ElfError::Class(_) => "ELF header e_ident[EI_CLASS]".into(),
            ElfError::Data(_) => "ELF header e_ident[EI_DATA]".into(),
            ElfError::Version(_) => "ELF header e_ident[EI_VERSION]".into(),
            ElfError::TooShort { .. } | ElfError::Malformed(_) => "ELF header".into(),
            ElfError::Machine(_) => "ELF header e_machine".into(),
            ElfError::Type(_) => "ELF header e_type".into(),
            ElfError::NoProgramHeaders | ElfError::ExtendedPhNum => "ELF header e_phnum".into(),
            ElfError::PhEntSize(_) => "ELF header e_phentsize".into(),
            ElfError::PhTableOutside { .. } => "ELF header e_phoff".into(),
            ElfError::NoLoadSegments { .. } | ElfError::AllLoadSegmentsEmpty => {
                "program headers".into()
            }
            ElfError::Segment { index, .. } => format!("program header {index} (PT_LOAD)"),
            ElfError::MixedHalves { lower, higher } => pair(lower.index, higher.index),
            ElfError::Overlap { first, second, .. }
            | ElfError::SharedPage { first, second, .. } => pair(*first, *second),
            ElfError::EntryOutside(..) | ElfError::EntryNotExecutable { .. } => {
                "ELF header e_entry".into()
            }
            ElfError::Dynamic(p) => p.field.clone(),
            ElfError::NoRoomToSlide { .. } => "program headers".into(),
        }
    }

    /// What is wrong, and what was expected.
    pub fn message(&self) -> String {
        format!("{}", Message(self))
    }
}

/// [`ElfError::message`]'s text.
struct Message<'e>(&'e ElfError);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = |physical: bool| if physical { "physical" } else { "virtual" };
        let span =
            |s: &Segment, physical: bool| range(if physical { s.paddr } else { s.vaddr }, s.memsz);
        match self.0 {
            ElfError::Empty => f.write_str("file is empty, expected an x86_64 ELF kernel"),
            ElfError::Magic(m, n) => {
                f.write_str("not an ELF file: magic bytes are")?;
                for b in &m[..*n] {
                    write!(f, " {b:02x}")?;
                }
                f.write_str(", expected 7f 45 4c 46 ('\\x7fELF')")
            }
            ElfError::IdentTooShort { len } => {
                write!(f, "file is only {len} bytes, too short for an ELF header")
            }
            ElfError::Class(c) => {
                match c {
                    1 => f.write_str("ELF32 (EI_CLASS=1)")?,
                    _ => write!(f, "unknown EI_CLASS={c}")?,
                }
                f.write_str(
                    " file; hvboot loads 64-bit kernels only, expected ELFCLASS64 (2): build the \
                     kernel for x86_64",
                )
            }
            ElfError::Data(d) => {
                match d {
                    2 => f.write_str("big-endian (EI_DATA=2)")?,
                    _ => write!(f, "unknown EI_DATA={d}")?,
                }
                f.write_str(" file; expected little-endian ELFDATA2LSB (1) as used by x86_64")
            }
            ElfError::TooShort { len } => write!(
                f,
                "file is only {len} bytes, shorter than the {EHDR64_SIZE}-byte ELF64 header \
                 (truncated file?)"
            ),
            ElfError::Version(v) => write!(f, "ELF version is {v}, expected 1 (EV_CURRENT)"),
            ElfError::Machine(m) => write!(
                f,
                "machine is {}, expected EM_X86_64 (62): build the kernel for x86_64",
                named(MACHINES, *m)
            ),
            ElfError::Type(1) => f.write_str(
                "ET_REL (relocatable object file), expected an executable (ET_EXEC): link the \
                 object files into a kernel first",
            ),
            ElfError::Type(t) => write!(
                f,
                "file type is {}, expected an executable (ET_EXEC (2)) or a position-independent \
                 one (ET_DYN (3))",
                named(TYPES, *t)
            ),
            ElfError::NoProgramHeaders => f.write_str(
                "no program headers (e_phnum is 0), expected at least one PT_LOAD segment to load",
            ),
            ElfError::ExtendedPhNum => f.write_str(
                "e_phnum is 0xffff (PN_XNUM, extended program header numbering), which hvboot \
                 does not support; a kernel needs only a handful of program headers",
            ),
            ElfError::PhEntSize(size) => write!(
                f,
                "program header size is {size}, expected {PHDR64_SIZE} (sizeof(Elf64_Phdr))"
            ),
            ElfError::PhTableOutside {
                phoff,
                phnum,
                file_len,
            } => write!(
                f,
                "program header table at file offset {} ({phnum} entries) lies outside the file \
                 ({file_len} bytes); the file is truncated or e_phoff/e_phnum are wrong",
                range(*phoff, u64::from(*phnum) * u64::from(PHDR64_SIZE))
            ),
            ElfError::Malformed(e) => write!(f, "malformed ELF header: {e}"),
            ElfError::NoLoadSegments { count, types } => {
                write!(f, "no PT_LOAD segment among the {count} program headers (")?;
                for (i, t) in types.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{}", segment_type_name(*t))?;
                }
                f.write_str("); expected at least one loadable segment")
            }
            ElfError::AllLoadSegmentsEmpty => f.write_str(
                "every PT_LOAD segment is empty (p_memsz 0); expected at least one segment with \
                 contents",
            ),
            ElfError::Segment { problem, .. } => write!(f, "{problem}"),
            ElfError::MixedHalves { lower, higher } => write!(
                f,
                "header {} is in the lower half ({:#x}) but header {} is in the higher half \
                 ({:#x}); expected every PT_LOAD in the same half",
                lower.index, lower.vaddr, higher.index, higher.vaddr
            ),
            ElfError::Overlap {
                physical, segments, ..
            } => write!(
                f,
                "{} ranges overlap: header {} covers {} and header {} covers {}; expected \
                 disjoint PT_LOAD segments",
                kind(*physical),
                segments[0].index,
                span(&segments[0], *physical),
                segments[1].index,
                span(&segments[1], *physical)
            ),
            ElfError::SharedPage {
                page,
                physical,
                segments,
                ..
            } => {
                let [a, b] = &**segments;
                write!(
                f,
                "header {} ({}, {}) and header {} ({}, {}) share the 4 KiB {} page at {page:#x}; \
                 hvboot maps per page with each segment's permissions, so align every PT_LOAD to \
                 4 KiB in the linker script (e.g. . = ALIGN(4096))",
                a.index,
                span(a, *physical),
                a.flags(),
                b.index,
                span(b, *physical),
                b.flags(),
                kind(*physical)
            )
            }
            ElfError::EntryOutside(entry, segments) => {
                write!(
                    f,
                    "entry point {entry:#x} is not inside any PT_LOAD segment ("
                )?;
                for (i, s) in segments.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{}: {} {}", s.index, span(s, false), s.flags())?;
                }
                f.write_str(
                    "); expected it inside the executable (R-X) segment: check ENTRY() in the \
                     linker script",
                )
            }
            ElfError::Dynamic(p) => f.write_str(&p.message),
            ElfError::NoRoomToSlide { size } => write!(
                f,
                "the position-independent image ({size:#x} bytes) does not fit between \
                 {DEFAULT_PIE_BASE:#x} and the end of the address space, where it would run"
            ),
            ElfError::EntryNotExecutable {
                entry,
                index,
                segment,
            } => write!(
                f,
                "entry point {entry:#x} is inside program header {index} ({}), which is not \
                 executable (flags {}); expected it inside an R-X segment",
                span(segment, false),
                segment.flags()
            ),
        }
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field();
        if field.is_empty() {
            write!(f, "{}", Message(self))
        } else {
            write!(f, "{field}: {}", Message(self))
        }
    }
}

impl core::error::Error for ElfError {}

impl From<::elf::ParseError> for ElfError {
    fn from(e: ::elf::ParseError) -> Self {
        ElfError::Malformed(e)
    }
}

/// Whether `addr` is a canonical 48-bit virtual address (bits 63:47 equal).
fn is_canonical(addr: u64) -> bool {
    !(LOWER_HALF_END..HIGHER_HALF_START).contains(&addr)
}

/// Checks the ELF identification and file header; returns the parsed header. The first
/// problem stops: nothing after a bad header can be trusted.
fn check_header(image: &[u8]) -> Result<FileHeader<LittleEndian>, ElfError> {
    if image.is_empty() {
        return Err(ElfError::Empty);
    }
    if image.len() < 4 || image[..4] != abi::ELFMAGIC {
        let mut m = [0u8; 4];
        let n = image.len().min(4);
        m[..n].copy_from_slice(&image[..n]);
        return Err(ElfError::Magic(m, n));
    }
    if image.len() <= abi::EI_DATA {
        return Err(ElfError::IdentTooShort { len: image.len() });
    }
    if image[abi::EI_CLASS] != abi::ELFCLASS64 {
        return Err(ElfError::Class(image[abi::EI_CLASS]));
    }
    if image[abi::EI_DATA] != abi::ELFDATA2LSB {
        return Err(ElfError::Data(image[abi::EI_DATA]));
    }
    if image.len() < EHDR64_SIZE {
        return Err(ElfError::TooShort { len: image.len() });
    }
    if image[abi::EI_VERSION] != abi::EV_CURRENT {
        return Err(ElfError::Version(image[abi::EI_VERSION]));
    }
    let ident = parse_ident::<LittleEndian>(&image[..abi::EI_NIDENT])?;
    let ehdr = FileHeader::parse_tail(ident, &image[abi::EI_NIDENT..EHDR64_SIZE])?;
    debug_assert_eq!(ehdr.class, Class::ELF64);
    if ehdr.e_machine != abi::EM_X86_64 {
        return Err(ElfError::Machine(ehdr.e_machine));
    }
    if ehdr.e_type != abi::ET_EXEC && ehdr.e_type != abi::ET_DYN {
        return Err(ElfError::Type(ehdr.e_type));
    }
    if ehdr.e_phnum == 0 {
        return Err(ElfError::NoProgramHeaders);
    }
    if ehdr.e_phnum == PN_XNUM {
        return Err(ElfError::ExtendedPhNum);
    }
    if ehdr.e_phentsize != PHDR64_SIZE {
        return Err(ElfError::PhEntSize(ehdr.e_phentsize));
    }
    Ok(ehdr)
}

/// The per-header checks of one `PT_LOAD`; `None` if it is empty
/// (`p_memsz == 0`).
fn check_load(
    index: usize,
    ph: &::elf::segment::ProgramHeader,
    file_len: u64,
) -> Result<Option<Segment>, ElfError> {
    let bad = |problem| ElfError::Segment { index, problem };
    if ph.p_filesz > ph.p_memsz {
        return Err(bad(SegmentProblem::FileSizeExceedsMemSize {
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
        }));
    }
    if ph.p_filesz > 0
        && ph
            .p_offset
            .checked_add(ph.p_filesz)
            .is_none_or(|e| e > file_len)
    {
        return Err(bad(SegmentProblem::FileRangeOutside {
            offset: ph.p_offset,
            filesz: ph.p_filesz,
            file_len,
        }));
    }
    if ph.p_align != 0 && !ph.p_align.is_power_of_two() {
        return Err(bad(SegmentProblem::BadAlign { align: ph.p_align }));
    }
    if ph.p_filesz > 0 && ph.p_vaddr % PAGE_SIZE != ph.p_offset % PAGE_SIZE {
        return Err(bad(SegmentProblem::Misaligned {
            vaddr: ph.p_vaddr,
            offset: ph.p_offset,
        }));
    }
    if ph.p_memsz == 0 {
        return Ok(None);
    }
    // The page-rounded end fits in a u64; canonical, in one half.
    let Some(end) = ph
        .p_vaddr
        .checked_add(ph.p_memsz)
        .filter(|&end| align_up(end, PAGE_SIZE).is_some())
    else {
        return Err(bad(SegmentProblem::AddressWraps {
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
        }));
    };
    let last = end - 1;
    if !(is_canonical(ph.p_vaddr)
        && is_canonical(last)
        && (ph.p_vaddr >= HIGHER_HALF_START) == (last >= HIGHER_HALF_START))
    {
        return Err(bad(SegmentProblem::NonCanonical {
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
        }));
    }
    let writable = ph.p_flags & abi::PF_W != 0;
    let executable = ph.p_flags & abi::PF_X != 0;
    if writable && executable {
        return Err(bad(SegmentProblem::WritableAndExecutable {
            flags: ph.p_flags,
        }));
    }
    if ph.p_flags & abi::PF_R == 0 {
        return Err(bad(SegmentProblem::NotReadable { flags: ph.p_flags }));
    }
    Ok(Some(Segment {
        index,
        vaddr: ph.p_vaddr,
        paddr: ph.p_paddr,
        memsz: ph.p_memsz,
        filesz: ph.p_filesz,
        offset: ph.p_offset,
        writable,
        executable,
    }))
}

/// No two segments overlap or share a 4 KiB page, comparing the ranges
/// `range(segment) = (start, end)`.
fn check_disjoint(
    segments: &[Segment],
    physical: bool,
    range: impl Fn(&Segment) -> (u64, u64),
) -> Result<(), ElfError> {
    let mut order: Vec<&Segment> = segments.iter().collect();
    order.sort_by_key(|s| (range(s).0, s.index));
    for pair in order.windows(2) {
        let ((_, a_end), (b_start, _)) = (range(pair[0]), range(pair[1]));
        let (first, second) = (pair[0].index, pair[1].index);
        let segments = Box::new([*pair[0], *pair[1]]);
        if b_start < a_end {
            return Err(ElfError::Overlap {
                first,
                second,
                physical,
                segments,
            });
        }
        if (a_end - 1) / PAGE_SIZE == b_start / PAGE_SIZE {
            return Err(ElfError::SharedPage {
                first,
                second,
                page: align_down(b_start, PAGE_SIZE),
                physical,
                segments,
            });
        }
    }
    Ok(())
}

/// The placement checks of one lower-half segment (it is placed at its `p_paddr`).
fn check_lower_half(s: &Segment) -> Result<(), ElfError> {
    let bad = |problem| ElfError::Segment {
        index: s.index,
        problem,
    };
    if s.paddr < MIN_LOWER_HALF_PADDR {
        return Err(bad(SegmentProblem::LowPhysicalAddress {
            paddr: s.paddr,
            memsz: s.memsz,
        }));
    }
    if s.paddr
        .checked_add(s.memsz)
        .is_none_or(|end| end > PHYS_LIMIT)
    {
        return Err(bad(SegmentProblem::PhysicalOutOfRange {
            paddr: s.paddr,
            memsz: s.memsz,
        }));
    }
    if s.paddr % PAGE_SIZE != s.vaddr % PAGE_SIZE {
        return Err(bad(SegmentProblem::PhysicalMisaligned {
            paddr: s.paddr,
            vaddr: s.vaddr,
        }));
    }
    Ok(())
}

/// Validates a kernel ELF image and returns how to load it, or its first problem (the one
/// [`check`] lists first).
pub fn plan(image: &[u8]) -> Result<LoadPlan, ElfError> {
    check(image).map_err(|mut problems| problems.swap_remove(0))
}

/// Validates a kernel ELF image and returns how to load it, or every problem found (never an
/// empty list). A bad file header stops at once (nothing after it can be trusted); then each
/// `PT_LOAD` header is checked on its own and all their problems are listed; if they are all
/// good, the checks across segments (one half, disjoint ranges, lower-half placement, entry
/// point) are listed together. The order is the order of the rules in the module
/// documentation, so the first problem is the one [`plan`] reports.
pub fn check(image: &[u8]) -> Result<LoadPlan, Vec<ElfError>> {
    let ehdr = check_header(image).map_err(|e| vec![e])?;
    let file_len = image.len() as u64;
    let table_size = u64::from(ehdr.e_phnum) * u64::from(PHDR64_SIZE);
    let table = match ehdr.e_phoff.checked_add(table_size) {
        Some(end) if end <= file_len => &image[ehdr.e_phoff as usize..end as usize],
        _ => {
            return Err(vec![ElfError::PhTableOutside {
                phoff: ehdr.e_phoff,
                phnum: ehdr.e_phnum,
                file_len,
            }])
        }
    };
    let table = SegmentTable::new(LittleEndian, Class::ELF64, table);

    let mut any_load = false;
    let mut types: Vec<u32> = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut problems: Vec<ElfError> = Vec::new();
    let mut dynamic = None;
    for index in 0..table.len() {
        let ph = table.get(index).map_err(|e| vec![e.into()])?;
        if ph.p_type == abi::PT_DYNAMIC && dynamic.is_none() {
            dynamic = Some((index, ph.p_offset, ph.p_filesz));
        }
        if ph.p_type != abi::PT_LOAD {
            if let Err(at) = types.binary_search(&ph.p_type) {
                types.insert(at, ph.p_type);
            }
            continue;
        }
        any_load = true;
        match check_load(index, &ph, file_len) {
            Ok(Some(segment)) => segments.push(segment),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    if !any_load {
        return Err(vec![ElfError::NoLoadSegments {
            count: table.len(),
            types,
        }]);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if segments.is_empty() {
        return Err(vec![ElfError::AllLoadSegmentsEmpty]);
    }

    let lower = segments.iter().find(|s| s.vaddr < LOWER_HALF_END);
    let higher = segments.iter().find(|s| s.vaddr >= HIGHER_HALF_START);
    if let (Some(lower), Some(higher)) = (lower, higher) {
        return Err(vec![ElfError::MixedHalves {
            lower: Box::new(*lower),
            higher: Box::new(*higher),
        }]);
    }
    let higher_half = higher.is_some();
    problems.extend(check_disjoint(&segments, false, |s| (s.vaddr, s.vend())).err());

    let relocatable = ehdr.e_type == abi::ET_DYN;
    if !higher_half && !relocatable {
        let placement: Vec<ElfError> = segments
            .iter()
            .filter_map(|s| check_lower_half(s).err())
            .collect();
        if placement.is_empty() {
            problems
                .extend(check_disjoint(&segments, true, |s| (s.paddr, s.paddr + s.memsz)).err());
        }
        problems.extend(placement);
    }

    let entry = ehdr.e_entry;
    match segments
        .iter()
        .find(|s| s.vaddr <= entry && entry < s.vend())
    {
        None => problems.push(ElfError::EntryOutside(entry, segments.clone())),
        Some(s) if !s.executable => problems.push(ElfError::EntryNotExecutable {
            entry,
            index: s.index,
            segment: *s,
        }),
        Some(_) => {}
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    segments.sort_by_key(|s| s.vaddr);
    let virt_start = segments[0].page_start();
    let virt_end = segments[segments.len() - 1].page_end();
    let relocations = if relocatable {
        let r = reloc::parse(image, dynamic, &segments, virt_start)
            .map_err(|p| vec![ElfError::Dynamic(p)])?;
        Some(r)
    } else {
        None
    };
    let plan = LoadPlan {
        entry,
        higher_half,
        segments,
        virt_start,
        virt_end,
        relocations,
    };
    if plan.slid(plan.default_slide()).is_none() {
        return Err(vec![ElfError::NoRoomToSlide { size: plan.size() }]);
    }
    Ok(plan)
}

impl LoadPlan {
    /// Size in bytes of the loaded image, `virt_end - virt_start`.
    pub fn size(&self) -> u64 {
        self.virt_end - self.virt_start
    }

    /// Whether this is a position-independent (`ET_DYN`) kernel: placed anywhere in physical
    /// memory and run where its protocol slides it.
    pub fn relocatable(&self) -> bool {
        self.relocations.is_some()
    }

    /// The slide a position-independent kernel gets unless its protocol asks for another: one
    /// linked below `DEFAULT_PIE_BASE` runs with its lowest page there, one linked at or above
    /// it where it is linked (Limine's rule without KASLR, PROTOCOL.md "Entry memory layout").
    /// 0 for a fixed-address kernel.
    pub fn default_slide(&self) -> u64 {
        match self.relocatable() && self.virt_start < DEFAULT_PIE_BASE {
            true => DEFAULT_PIE_BASE - self.virt_start,
            false => 0,
        }
    }

    /// The plan of a position-independent kernel moved by `slide` (added to every address,
    /// wrapping: a slide may move it down), None when the moved image would not be canonical and
    /// in one half, or would wrap; the relocations then write addresses moved by `slide`. A
    /// fixed-address kernel only with slide 0.
    pub fn slid(&self, slide: u64) -> Option<LoadPlan> {
        if slide == 0 {
            return Some(self.clone());
        }
        let relocations = self.relocations.as_ref()?;
        let start = self.virt_start.wrapping_add(slide);
        let last = start.checked_add(self.size() - 1)?;
        let half = |a: u64| a >= HIGHER_HALF_START;
        if !(is_canonical(start) && is_canonical(last) && half(start) == half(last)) {
            return None;
        }
        let mut relocations = relocations.clone();
        relocations.slide = slide;
        let mut segments = self.segments.clone();
        for s in &mut segments {
            s.vaddr = s.vaddr.wrapping_add(slide);
        }
        Some(LoadPlan {
            entry: self.entry.wrapping_add(slide),
            higher_half: half(start),
            segments,
            virt_start: start,
            virt_end: start.wrapping_add(self.size()),
            relocations: Some(relocations),
        })
    }

    /// The distance from where the kernel is linked to where it runs (0 for fixed-address kernels).
    pub fn slide(&self) -> u64 {
        self.relocations.as_ref().map_or(0, |r| r.slide)
    }

    /// Applies a position-independent kernel's relocations to `dest`, the image
    /// [`copy_into`](Self::copy_into) laid out from `image`; nothing for a fixed-address kernel.
    pub fn relocate(&self, image: &[u8], dest: &mut [u8]) {
        if let Some(r) = &self.relocations {
            r.apply(image, dest);
        }
    }

    /// For a lower-half plan: the physical address of `virt_start` when every
    /// segment has the same `p_vaddr - p_paddr` distance, so that the one
    /// contiguous buffer [`copy_into`](Self::copy_into) fills, placed there,
    /// puts each segment at its `p_paddr`. `None` for higher-half plans
    /// (placed wherever the loader chooses) and for lower-half plans whose
    /// segments would have to be placed one by one.
    pub fn phys_base(&self) -> Option<u64> {
        if self.higher_half {
            return None;
        }
        let first = &self.segments[0];
        let delta = first.vaddr.wrapping_sub(first.paddr);
        if self
            .segments
            .iter()
            .any(|s| s.vaddr.wrapping_sub(s.paddr) != delta)
        {
            return None;
        }
        // `segments[0]` is the lowest, so `virt_start` is its page; `plan`
        // checked `p_paddr % 4096 == p_vaddr % 4096`.
        Some(align_down(first.paddr, PAGE_SIZE))
    }

    /// Lays out all segments in `dest`, which stands for the virtual range
    /// `virt_start..virt_end`: each segment's file bytes are copied to
    /// `vaddr - virt_start`, and everything else (`.bss`, the rest of each
    /// segment's pages, gaps between segments) is zeroed.
    ///
    /// # Panics
    ///
    /// If `dest.len() != self.size()`, or if `image` is not the image this
    /// plan was made from (a segment's file range is out of bounds).
    pub fn copy_into(&self, image: &[u8], dest: &mut [u8]) {
        assert_eq!(
            dest.len() as u64,
            self.size(),
            "LoadPlan::copy_into: destination length must be virt_end - virt_start"
        );
        dest.fill(0);
        for s in &self.segments {
            let from = s.offset as usize;
            let to = (s.vaddr - self.virt_start) as usize;
            let len = s.filesz as usize;
            if len == 0 {
                continue; // p_offset is not checked then (fuzz-found: it may lie past the file)
            }
            dest[to..to + len].copy_from_slice(&image[from..from + len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    use crate::testing::elf::{build, build_with, load, Ph, KBASE, PF_R, PF_W, PF_X};

    /// A typical higher-half kernel: text, rodata, data+bss with a guard gap.
    fn kernel_phs() -> Vec<Ph> {
        vec![
            load(PF_R | PF_X, 0x1000, KBASE, 0x2345, 0x2345),
            load(PF_R, 0x4000, KBASE + 0x4000, 0x800, 0x800),
            // A PT_GNU_STACK-like header that is not PT_LOAD.
            Ph {
                p_type: 0x6474_e551,
                flags: PF_R | PF_W,
                offset: 0,
                vaddr: 0,
                paddr: 0,
                filesz: 0,
                memsz: 0,
            },
            load(PF_R | PF_W, 0x5010, KBASE + 0x7010, 0x100, 0x3000),
        ]
    }

    fn plan_err(image: &[u8]) -> ElfError {
        plan(image).expect_err("expected an error")
    }

    #[test]
    fn plans_higher_half_kernel() {
        let image = build(KBASE + 0x10, &kernel_phs());
        let p = plan(&image).unwrap();
        assert_eq!(p.entry, KBASE + 0x10);
        assert!(p.higher_half);
        assert_eq!(p.virt_start, KBASE);
        assert_eq!(p.virt_end, KBASE + 0xb000);
        assert_eq!(p.size(), 0xb000);
        let idx: Vec<usize> = p.segments.iter().map(|s| s.index).collect();
        assert_eq!(idx, vec![0, 1, 3]);
        let s = p.segments[2];
        assert_eq!(
            s,
            Segment {
                index: 3,
                vaddr: KBASE + 0x7010,
                paddr: 0x20_7010,
                memsz: 0x3000,
                filesz: 0x100,
                offset: 0x5010,
                writable: true,
                executable: false,
            }
        );
        assert_eq!(s.page_start(), KBASE + 0x7000);
        assert_eq!(s.page_end(), KBASE + 0xb000);
        assert!(p.segments[0].executable && !p.segments[0].writable);
        assert!(!p.segments[1].executable && !p.segments[1].writable);
    }

    #[test]
    fn copy_into_lays_out_and_zeroes() {
        let image = build(KBASE, &kernel_phs());
        let p = plan(&image).unwrap();
        let mut dest = vec![0xaau8; p.size() as usize];
        p.copy_into(&image, &mut dest);
        for (i, &b) in dest.iter().enumerate() {
            let va = p.virt_start + i as u64;
            let expected = p
                .segments
                .iter()
                .find(|s| s.vaddr <= va && va < s.vaddr + s.filesz)
                .map(|s| image[(s.offset + (va - s.vaddr)) as usize])
                .unwrap_or(0);
            assert_eq!(b, expected, "byte at {va:#x}");
        }
        // File bytes are never zero in the test image, so the checks above
        // really tell copied bytes from zeroed ones.
        assert_ne!(dest[0], 0);
        assert_eq!(dest[0x7010 + 0x100], 0); // bss
        assert_eq!(dest[0x3000], 0); // gap page
    }

    #[test]
    #[should_panic(expected = "destination length")]
    fn copy_into_checks_length() {
        let image = build(KBASE, &kernel_phs());
        let p = plan(&image).unwrap();
        let mut dest = vec![0u8; 10];
        p.copy_into(&image, &mut dest);
    }

    #[test]
    fn plans_lower_half_kernel() {
        let mut phs = vec![
            load(PF_R | PF_X, 0x1000, 0x20_0000, 0x1000, 0x1000),
            load(PF_R | PF_W, 0x2000, 0x20_1000, 0x10, 0x2000),
        ];
        for p in &mut phs {
            p.paddr = p.vaddr;
        }
        let image = build(0x20_0000, &phs);
        let p = plan(&image).unwrap();
        assert!(!p.higher_half);
        assert_eq!((p.virt_start, p.virt_end), (0x20_0000, 0x20_3000));
        assert_eq!(p.segments[1].paddr, 0x20_1000);
        assert_eq!(p.phys_base(), Some(0x20_0000));

        // Linked at 4 MiB, loaded at 2 MiB.
        let p = plan(&build(0x40_0000, &lower_phs())).unwrap();
        assert_eq!(p.phys_base(), Some(0x20_0000));
        // Different vaddr-paddr distances: no single base.
        let mut phs = lower_phs();
        phs[1].paddr += 0x10_0000;
        let p = plan(&build(0x40_0000, &phs)).unwrap();
        assert_eq!(p.phys_base(), None);
        // Higher half: the loader chooses.
        assert_eq!(
            plan(&build(KBASE, &kernel_phs())).unwrap().phys_base(),
            None
        );
    }

    #[test]
    fn header_errors_name_the_field() {
        let good = build(KBASE, &kernel_phs());

        let e = plan_err(&good[..40]);
        assert!(matches!(e, ElfError::TooShort { len: 40 }));
        assert!(
            e.to_string()
                .starts_with("ELF header: file is only 40 bytes"),
            "{e}"
        );

        let e = plan_err(b"#!/bin/sh\necho not an elf\n");
        assert!(
            e.to_string()
                .starts_with("ELF header e_ident: not an ELF file: magic bytes are 23 21 2f 62"),
            "{e}"
        );

        let mut f = good.clone();
        f[4] = 1;
        assert_eq!(
            plan_err(&f).to_string(),
            "ELF header e_ident[EI_CLASS]: ELF32 (EI_CLASS=1) file; hvboot loads 64-bit kernels only, expected ELFCLASS64 (2): build the kernel for x86_64"
        );
        let mut f = good.clone();
        f[5] = 2;
        assert!(plan_err(&f)
            .to_string()
            .starts_with("ELF header e_ident[EI_DATA]: big-endian (EI_DATA=2)"));
        let mut f = good.clone();
        f[6] = 0;
        assert!(plan_err(&f)
            .to_string()
            .starts_with("ELF header e_ident[EI_VERSION]: ELF version is 0"));

        let f = build_with(abi::ET_EXEC, 3, KBASE, &kernel_phs(), 0);
        assert_eq!(
            plan_err(&f).to_string(),
            "ELF header e_machine: machine is EM_386 (3), expected EM_X86_64 (62): build the kernel for x86_64"
        );
        let f = build_with(abi::ET_CORE, abi::EM_X86_64, KBASE, &kernel_phs(), 0);
        assert_eq!(
            plan_err(&f).to_string(),
            "ELF header e_type: file type is ET_CORE (4), expected an executable (ET_EXEC (2)) \
             or a position-independent one (ET_DYN (3))"
        );
        // ET_DYN is a position-independent kernel (crate::reloc's tests).
        let f = build_with(abi::ET_DYN, abi::EM_X86_64, KBASE, &kernel_phs(), 0);
        assert!(plan(&f).unwrap().relocatable());
    }

    #[test]
    fn truncated_program_header_table() {
        let good = build(KBASE, &kernel_phs());
        // Cut inside the program header table (64 + 4 * 56 bytes).
        let e = plan_err(&good[..200]);
        assert!(
            matches!(
                e,
                ElfError::PhTableOutside {
                    phoff: 64,
                    phnum: 4,
                    file_len: 200
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "ELF header e_phoff: program header table at file offset 0x40-0x120 (4 entries) lies outside the file (200 bytes); the file is truncated or e_phoff/e_phnum are wrong"
        );
    }

    #[test]
    fn needs_a_load_segment() {
        let f = build(KBASE, &[]);
        assert!(matches!(plan_err(&f), ElfError::NoProgramHeaders));
        let f = build(KBASE, &kernel_phs()[2..3]);
        assert!(matches!(plan_err(&f), ElfError::NoLoadSegments { .. }));
        // An empty PT_LOAD does not count.
        let f = build(KBASE, &[load(PF_R | PF_X, 0x1000, KBASE, 0, 0)]);
        assert!(matches!(plan_err(&f), ElfError::AllLoadSegmentsEmpty));
    }

    #[test]
    fn empty_load_segments_are_skipped() {
        let mut phs = kernel_phs();
        phs.push(load(PF_R | PF_W | PF_X, 0, 0x1000, 0, 0));
        let p = plan(&build(KBASE, &phs)).unwrap();
        assert_eq!(p.segments.len(), 3);
    }

    fn segment_problem(phs: &[Ph]) -> (usize, SegmentProblem) {
        match plan_err(&build(KBASE, phs)) {
            ElfError::Segment { index, problem } => (index, problem),
            e => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn filesz_larger_than_memsz() {
        let mut phs = kernel_phs();
        phs[1].filesz = 0x801;
        let (i, p) = segment_problem(&phs);
        assert_eq!(i, 1);
        assert_eq!(
            p,
            SegmentProblem::FileSizeExceedsMemSize {
                filesz: 0x801,
                memsz: 0x800
            }
        );
    }

    #[test]
    fn file_range_outside_file() {
        let phs = kernel_phs();
        let mut image = build(KBASE, &phs);
        image.truncate(0x5010 + 0xff);
        let e = plan_err(&image);
        assert_eq!(
            e.to_string(),
            "program header 3 (PT_LOAD): file bytes 0x5010-0x5110 (p_offset + p_filesz) lie outside the file (20751 bytes); the file is truncated or p_offset/p_filesz are wrong"
        );
        // Offset overflow.
        let mut phs = kernel_phs();
        phs[0].offset = u64::MAX - 0xfff;
        phs[0].vaddr = KBASE + 0xf000;
        phs[0].filesz = 0x1000;
        phs[0].memsz = 0x1000;
        assert!(matches!(
            plan_err(&build(KBASE, &phs)),
            ElfError::Segment {
                index: 0,
                problem: SegmentProblem::FileRangeOutside { .. }
            }
        ));
    }

    #[test]
    fn vaddr_offset_congruence() {
        let mut phs = kernel_phs();
        phs[3].offset = 0x5020;
        let (i, p) = segment_problem(&phs);
        assert_eq!(i, 3);
        assert!(matches!(p, SegmentProblem::Misaligned { .. }));
    }

    #[test]
    fn writable_and_executable() {
        let mut phs = kernel_phs();
        phs[3].flags = PF_R | PF_W | PF_X;
        let e = plan_err(&build(KBASE, &phs));
        assert_eq!(
            e.to_string(),
            "program header 3 (PT_LOAD): segment is both writable and executable (flags RWX); hvboot enforces W^X: split it in the linker script (PHDRS) into an R-X text segment and an RW- data segment on separate pages"
        );
    }

    #[test]
    fn non_canonical_ranges() {
        for (vaddr, memsz) in [
            (0x0000_8000_0000_0000u64, 0x1000u64), // in the hole
            (0x0000_7fff_ffff_f000, 0x2000),       // crosses into the hole
            (0xffff_7fff_ffff_f000, 0x1000),       // in the hole
        ] {
            let phs = [load(PF_R | PF_X, 0x1000, vaddr, 0, memsz)];
            let (i, p) = segment_problem(&phs);
            assert_eq!(i, 0);
            assert_eq!(
                p,
                SegmentProblem::NonCanonical { vaddr, memsz },
                "{vaddr:#x}"
            );
        }
        for (vaddr, memsz) in [
            (0xffff_ffff_ffff_f000u64, 0x1000u64), // ends at 2^64
            (0xffff_ffff_ffff_f000, 0x2000),       // wraps
        ] {
            let phs = [load(PF_R | PF_X, 0x1000, vaddr, 0, memsz)];
            assert_eq!(
                segment_problem(&phs),
                (0, SegmentProblem::AddressWraps { vaddr, memsz })
            );
        }
        // The last page below 2^64 minus one byte is fine.
        let top = 0xffff_ffff_ffff_e000;
        let p = plan(&build(top, &[load(PF_R | PF_X, 0x1000, top, 0, 0x1000)])).unwrap();
        assert_eq!(p.virt_end, 0xffff_ffff_ffff_f000);
    }

    #[test]
    fn mixed_halves() {
        let mut phs = kernel_phs();
        phs[1].vaddr = 0x40_0000;
        phs[1].paddr = 0x40_0000;
        let e = plan_err(&build(KBASE, &phs));
        assert!(matches!(
            &e,
            ElfError::MixedHalves { lower, higher } if lower.index == 1 && higher.index == 0
        ));
        assert!(e.to_string().contains(
            "header 1 is in the lower half (0x400000) but header 0 is in the higher half"
        ));
    }

    #[test]
    fn lower_half_needs_paddr_above_1mib() {
        let mut ph = load(PF_R | PF_X, 0x1000, 0x40_0000, 0x10, 0x10);
        ph.paddr = 0xf_f000;
        let (_, p) = segment_problem(&[ph]);
        assert_eq!(
            p,
            SegmentProblem::LowPhysicalAddress {
                paddr: 0xf_f000,
                memsz: 0x10
            }
        );
        // Higher-half kernels are not placed at p_paddr: any value is fine.
        let mut phs = kernel_phs();
        phs[0].paddr = 0;
        assert!(plan(&build(KBASE, &phs)).is_ok());
    }

    #[test]
    fn overlapping_segments() {
        let mut phs = kernel_phs();
        // rodata 0x4000..0x4800 now reaches into data at 0x7010.
        phs[1].memsz = 0x3011;
        let e = plan_err(&build(KBASE, &phs));
        assert!(
            matches!(
                e,
                ElfError::Overlap {
                    first: 1,
                    second: 3,
                    physical: false,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "program headers 1 and 3 (PT_LOAD): virtual ranges overlap: header 1 covers 0xffffffff80004000-0xffffffff80007011 and header 3 covers 0xffffffff80007010-0xffffffff8000a010; expected disjoint PT_LOAD segments"
        );
    }

    #[test]
    fn segments_sharing_a_page() {
        let mut phs = kernel_phs();
        phs[1].memsz = 0x3010; // ends exactly where data starts, same page
        let e = plan_err(&build(KBASE, &phs));
        assert!(
            matches!(
                e,
                ElfError::SharedPage {
                    first: 1,
                    second: 3,
                    page: 0xffff_ffff_8000_7000,
                    physical: false,
                    ..
                }
            ),
            "{e}"
        );
        // Touching at a page boundary is fine.
        let mut phs = kernel_phs();
        phs[1].memsz = 0x3000;
        assert!(plan(&build(KBASE, &phs)).is_ok());
    }

    #[test]
    fn segments_are_sorted_by_vaddr() {
        let mut phs = kernel_phs();
        phs.swap(0, 3);
        let p = plan(&build(KBASE, &phs)).unwrap();
        let idx: Vec<usize> = p.segments.iter().map(|s| s.index).collect();
        assert_eq!(idx, vec![3, 1, 0]);
        assert_eq!((p.virt_start, p.virt_end), (KBASE, KBASE + 0xb000));
    }

    #[test]
    fn overlap_detected_regardless_of_header_order() {
        let mut phs = kernel_phs();
        phs.swap(0, 3);
        phs[0].vaddr = KBASE + 0x1010; // data (now header 0) inside text
        let e = plan_err(&build(KBASE, &phs));
        assert!(
            matches!(
                e,
                ElfError::Overlap {
                    first: 3,
                    second: 0,
                    physical: false,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn entry_must_be_in_executable_segment() {
        for entry in [KBASE + 0x2345, KBASE - 1, 0, KBASE + 0x4800] {
            let e = plan_err(&build(entry, &kernel_phs()));
            assert!(
                matches!(e, ElfError::EntryOutside(x, _) if x == entry),
                "{e}"
            );
        }
        assert_eq!(
            plan_err(&build(KBASE + 0x4800, &kernel_phs())).to_string(),
            "ELF header e_entry: entry point 0xffffffff80004800 is not inside any PT_LOAD segment (0: 0xffffffff80000000-0xffffffff80002345 R-X, 1: 0xffffffff80004000-0xffffffff80004800 R--, 3: 0xffffffff80007010-0xffffffff8000a010 RW-); expected it inside the executable (R-X) segment: check ENTRY() in the linker script"
        );
        let e = plan_err(&build(KBASE + 0x4000, &kernel_phs()));
        assert!(matches!(e, ElfError::EntryNotExecutable { index: 1, .. }));
        assert_eq!(
            e.to_string(),
            "ELF header e_entry: entry point 0xffffffff80004000 is inside program header 1 (0xffffffff80004000-0xffffffff80004800), which is not executable (flags R--); expected it inside an R-X segment"
        );
        assert!(plan(&build(KBASE + 0x2344, &kernel_phs())).is_ok());
    }

    #[test]
    fn program_header_table_checks() {
        let good = build(KBASE, &kernel_phs());
        // e_phnum = 0xffff.
        let mut f = good.clone();
        f[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(matches!(plan_err(&f), ElfError::ExtendedPhNum));
        // e_phentsize = 64.
        let mut f = good.clone();
        f[54..56].copy_from_slice(&64u16.to_le_bytes());
        assert_eq!(
            plan_err(&f).to_string(),
            "ELF header e_phentsize: program header size is 64, expected 56 (sizeof(Elf64_Phdr))"
        );
        // e_phoff past the end, and overflowing.
        for phoff in [good.len() as u64 - 56, u64::MAX - 8] {
            let mut f = good.clone();
            f[32..40].copy_from_slice(&phoff.to_le_bytes());
            assert!(
                matches!(plan_err(&f), ElfError::PhTableOutside { phoff: p, phnum: 4, .. } if p == phoff)
            );
        }
        // Section headers are not looked at: a bogus e_shoff/e_shnum is fine.
        let mut f = good.clone();
        f[40..48].copy_from_slice(&0xdead_beef_u64.to_le_bytes());
        f[60..62].copy_from_slice(&7u16.to_le_bytes());
        assert!(plan(&f).is_ok());
    }

    #[test]
    fn p_align_must_be_zero_or_power_of_two() {
        let mut phs = kernel_phs();
        let mut image = build(KBASE, &phs);
        // p_align of program header 1 is at 64 + 56 + 48.
        image[64 + 56 + 48..64 + 56 + 56].copy_from_slice(&0x1800u64.to_le_bytes());
        assert_eq!(
            plan_err(&image).to_string(),
            "program header 1 (PT_LOAD): p_align is 0x1800, expected 0 or a power of two (such as 0x1000)"
        );
        image[64 + 56 + 48..64 + 56 + 56].copy_from_slice(&0u64.to_le_bytes());
        assert!(plan(&image).is_ok());
        // Empty PT_LOADs get the file-level checks too.
        phs.push(load(PF_R, 0, KBASE + 0x20_0000, 1, 0));
        let (i, p) = segment_problem(&phs);
        assert_eq!(i, 4);
        assert!(matches!(p, SegmentProblem::FileSizeExceedsMemSize { .. }));
    }

    #[test]
    fn segments_must_be_readable() {
        let mut phs = kernel_phs();
        phs[0].flags = PF_X;
        let (i, p) = segment_problem(&phs);
        assert_eq!((i, p), (0, SegmentProblem::NotReadable { flags: 1 }));
    }

    fn lower_phs() -> Vec<Ph> {
        let mut phs = vec![
            load(PF_R | PF_X, 0x1000, 0x40_0000, 0x1000, 0x1000),
            load(PF_R | PF_W, 0x2000, 0x40_2000, 0x10, 0x2000),
        ];
        for p in &mut phs {
            p.paddr = p.vaddr - 0x20_0000;
        }
        phs
    }

    #[test]
    fn lower_half_physical_checks() {
        assert!(plan(&build(0x40_0000, &lower_phs())).is_ok());
        let err = |phs: &[Ph]| plan_err(&build(0x40_0000, phs));

        let mut phs = lower_phs();
        phs[1].paddr = 0x000f_ffff_ffff_f000;
        assert!(matches!(
            err(&phs),
            ElfError::Segment {
                index: 1,
                problem: SegmentProblem::PhysicalOutOfRange { .. }
            }
        ));
        let mut phs = lower_phs();
        phs[1].paddr += 0x10;
        assert!(matches!(
            err(&phs),
            ElfError::Segment {
                index: 1,
                problem: SegmentProblem::PhysicalMisaligned { .. }
            }
        ));
        let mut phs = lower_phs();
        phs[1].paddr = 0x20_0800;
        phs[1].vaddr = 0x40_2800;
        phs[1].offset = 0x2800;
        let e = err(&phs);
        assert!(
            matches!(
                e,
                ElfError::Overlap {
                    first: 0,
                    second: 1,
                    physical: true,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "program headers 0 and 1 (PT_LOAD): physical ranges overlap: header 0 covers 0x200000-0x201000 and header 1 covers 0x200800-0x202800; expected disjoint PT_LOAD segments"
        );
        // Virtually disjoint pages, but physically segment 1 starts in the
        // page where segment 0 ends.
        let mut phs = lower_phs();
        phs[0].memsz = 0x1010;
        phs[1].vaddr = 0x40_2010;
        phs[1].offset = 0x2010;
        phs[1].paddr = 0x20_1010;
        let e = err(&phs);
        assert!(
            matches!(
                e,
                ElfError::SharedPage {
                    first: 0,
                    second: 1,
                    page: 0x20_1000,
                    physical: true,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn check_lists_every_segment_problem() {
        let mut phs = kernel_phs();
        phs[0].flags = PF_R | PF_W | PF_X;
        phs[3].filesz = phs[3].memsz + 1;
        let all = check(&build(KBASE, &phs)).unwrap_err();
        let fields: Vec<String> = all.iter().map(ElfError::field).collect();
        assert_eq!(
            fields,
            ["program header 0 (PT_LOAD)", "program header 3 (PT_LOAD)"]
        );
        assert_eq!(
            plan_err(&build(KBASE, &phs)).to_string(),
            all[0].to_string()
        );
        // Checks across segments are listed together: an overlap and a bad entry point.
        let mut phs = kernel_phs();
        phs[1].vaddr = KBASE;
        let all = check(&build(KBASE + 0x20_0000, &phs)).unwrap_err();
        assert!(matches!(all[0], ElfError::Overlap { .. }), "{}", all[0]);
        assert!(matches!(all[1], ElfError::EntryOutside(..)), "{}", all[1]);
        // A bad file header stops at once.
        assert_eq!(check(&build(KBASE, &phs)[..40]).unwrap_err().len(), 1);
    }

    /// A seeded mutator over a good kernel's headers (a few thousand cases, on stable): `check`
    /// never panics, its first problem is `plan`'s, every problem names a field.
    #[test]
    fn mutated_headers_never_panic_and_agree() {
        let good = build(KBASE, &kernel_phs());
        let header_end = 64 + 4 * 56;
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let mut f = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % header_end as u64) as usize;
                f[at] = next() as u8;
            }
            let len = if next() % 8 == 0 {
                (next() as usize) % f.len()
            } else {
                f.len()
            };
            let f = &f[..len];
            match (check(f), plan(f)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(all), Err(first)) => {
                    assert!(!all.is_empty());
                    assert_eq!(all[0].to_string(), first.to_string());
                    for e in &all {
                        assert!(!e.message().is_empty());
                        assert!(!e.field().is_empty() || f.is_empty(), "{e}");
                    }
                }
                _ => panic!("check and plan disagree"),
            }
        }
    }
}
