//! Validation of the kernel ELF and its load plan.
//!
//! Implements the checks hvboot makes on a kernel image, the same rules as
//! the host toolkit (`hvboot.kernel_elf`), in terms of the ELF-64 Object File
//! Format (v1.5) and the System V ABI (gABI ch. 4 "ELF Header", ch. 5
//! "Program Header"; the AMD64 psABI for the 4 KiB page size and
//! `EM_X86_64`):
//!
//! - ELF header (§3 "ELF Header"): magic `\x7fELF`, `ELFCLASS64`,
//!   `ELFDATA2LSB`, `EV_CURRENT`, `e_machine == EM_X86_64` (62),
//!   `e_type == ET_EXEC`; `e_phentsize == 56`, `e_phnum` neither 0 nor
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

use ::elf::abi;
use ::elf::endian::LittleEndian;
use ::elf::file::{parse_ident, Class, FileHeader};
use ::elf::segment::SegmentTable;
use alloc::vec::Vec;
use core::fmt;

use crate::{align_down, align_up, PAGE_SIZE};

/// Lowest canonical higher-half address (48-bit virtual addresses).
pub const HIGHER_HALF_START: u64 = 0xffff_8000_0000_0000;
/// End (exclusive) of the canonical lower half (48-bit virtual addresses).
pub const LOWER_HALF_END: u64 = 0x0000_8000_0000_0000;
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
    /// The virtual range is not canonical, crosses the non-canonical hole or
    /// wraps (or ends in the last 4 KiB page of the address space).
    NonCanonical {
        /// `p_vaddr`
        vaddr: u64,
        /// `p_memsz`
        memsz: u64,
    },
    /// Both `PF_W` and `PF_X` are set.
    WritableAndExecutable,
    /// `PF_R` is not set.
    NotReadable,
    /// Lower-half segment with `p_paddr` below 1 MiB.
    LowPhysicalAddress {
        /// `p_paddr`
        paddr: u64,
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

/// Why a kernel image is rejected. `Display` names the field at fault.
#[derive(Debug)]
pub enum ElfError {
    /// The file is shorter than an ELF-64 header.
    TooShort {
        /// The file's length.
        len: usize,
    },
    /// `e_ident[EI_MAG0..=EI_MAG3]` is not `\x7fELF`.
    Magic([u8; 4]),
    /// `e_ident[EI_CLASS]` is not `ELFCLASS64`.
    Class(u8),
    /// `e_ident[EI_DATA]` is not `ELFDATA2LSB`.
    Data(u8),
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
    NoLoadSegments,
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
        /// The first lower-half segment's program header index.
        lower: usize,
        /// The first higher-half segment's program header index.
        higher: usize,
    },
    /// Two segments' ranges overlap.
    Overlap {
        /// Program header index of the segment that starts lower.
        first: usize,
        /// Program header index of the other segment.
        second: usize,
        /// Physical ranges (lower-half kernels), else virtual.
        physical: bool,
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
    },
    /// `e_entry` is not inside any `PT_LOAD`.
    EntryOutside(u64),
    /// `e_entry` is inside a `PT_LOAD` that is not executable.
    EntryNotExecutable {
        /// `e_entry`
        entry: u64,
        /// Program header index of the segment containing it.
        index: usize,
    },
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SegmentProblem::FileSizeExceedsMemSize { filesz, memsz } => {
                write!(f, "p_filesz {filesz:#x} is larger than p_memsz {memsz:#x}")
            }
            SegmentProblem::FileRangeOutside {
                offset,
                filesz,
                file_len,
            } => write!(
                f,
                "p_offset {offset:#x} + p_filesz {filesz:#x} is past the end of the file ({file_len:#x} bytes)"
            ),
            SegmentProblem::BadAlign { align } => {
                write!(f, "p_align {align:#x} is neither 0 nor a power of two")
            }
            SegmentProblem::Misaligned { vaddr, offset } => write!(
                f,
                "p_vaddr {vaddr:#x} and p_offset {offset:#x} differ modulo the 4 KiB page size"
            ),
            SegmentProblem::NonCanonical { vaddr, memsz } => write!(
                f,
                "p_vaddr {vaddr:#x} + p_memsz {memsz:#x} is not a canonical address range"
            ),
            SegmentProblem::WritableAndExecutable => f.write_str(
                "writable and executable; hvboot maps W^X, split the segment in the linker script",
            ),
            SegmentProblem::NotReadable => {
                f.write_str("p_flags lacks PF_R; x86_64 pages are always readable")
            }
            SegmentProblem::LowPhysicalAddress { paddr } => write!(
                f,
                "p_paddr {paddr:#x} is below 1 MiB (lower-half kernels are placed at p_paddr, which must be >= {MIN_LOWER_HALF_PADDR:#x})"
            ),
            SegmentProblem::PhysicalOutOfRange { paddr, memsz } => write!(
                f,
                "p_paddr {paddr:#x} + p_memsz {memsz:#x} is beyond the 52-bit physical address limit"
            ),
            SegmentProblem::PhysicalMisaligned { paddr, vaddr } => write!(
                f,
                "p_paddr {paddr:#x} and p_vaddr {vaddr:#x} differ modulo the 4 KiB page size"
            ),
        }
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::TooShort { len } => write!(
                f,
                "file: {len} bytes, too short for an ELF-64 header ({EHDR64_SIZE} bytes)"
            ),
            ElfError::Magic(m) => write!(
                f,
                "e_ident[EI_MAG0..3]: {:02x} {:02x} {:02x} {:02x} (expected 7f 45 4c 46, \"\\x7fELF\")",
                m[0], m[1], m[2], m[3]
            ),
            ElfError::Class(c) => write!(f, "e_ident[EI_CLASS]: {c} (expected 2, ELFCLASS64)"),
            ElfError::Data(d) => write!(
                f,
                "e_ident[EI_DATA]: {d} (expected 1, ELFDATA2LSB little-endian)"
            ),
            ElfError::Version(v) => {
                write!(f, "e_ident[EI_VERSION]: {v} (expected 1, EV_CURRENT)")
            }
            ElfError::Machine(m) => write!(f, "e_machine: {m} (expected 62, EM_X86_64)"),
            ElfError::Type(t) => write!(
                f,
                "e_type: {t} (expected 2, ET_EXEC; hvboot loads statically linked, non-PIE kernels)"
            ),
            ElfError::NoProgramHeaders => {
                f.write_str("e_phnum: 0 (expected at least one PT_LOAD program header)")
            }
            ElfError::ExtendedPhNum => f.write_str(
                "e_phnum: 0xffff (PN_XNUM, extended program header numbering is not supported)",
            ),
            ElfError::PhEntSize(size) => write!(
                f,
                "e_phentsize: {size} (expected {PHDR64_SIZE}, sizeof(Elf64_Phdr))"
            ),
            ElfError::PhTableOutside {
                phoff,
                phnum,
                file_len,
            } => write!(
                f,
                "e_phoff: program header table at {phoff:#x} ({phnum} entries) is past the end of the file ({file_len:#x} bytes)"
            ),
            ElfError::Malformed(e) => write!(f, "malformed ELF header: {e}"),
            ElfError::NoLoadSegments => f.write_str("program headers: no PT_LOAD segment"),
            ElfError::AllLoadSegmentsEmpty => {
                f.write_str("program headers: every PT_LOAD segment has p_memsz 0")
            }
            ElfError::Segment { index, problem } => {
                write!(f, "program header {index} (PT_LOAD): {problem}")
            }
            ElfError::MixedHalves { lower, higher } => write!(
                f,
                "program headers {} and {} (PT_LOAD): p_vaddr mixes the lower half (< {LOWER_HALF_END:#x}, header {lower}) and the higher half (>= {HIGHER_HALF_START:#x}, header {higher}); link the whole kernel in one half",
                lower.min(higher),
                lower.max(higher)
            ),
            ElfError::Overlap {
                first,
                second,
                physical,
            } => write!(
                f,
                "program headers {} and {} (PT_LOAD): {} ranges overlap",
                first.min(second),
                first.max(second),
                if *physical { "physical" } else { "virtual" }
            ),
            ElfError::SharedPage {
                first,
                second,
                page,
                physical,
            } => write!(
                f,
                "program headers {} and {} (PT_LOAD): both use the 4 KiB {} page at {page:#x}; align segments to 4 KiB in the linker script",
                first.min(second),
                first.max(second),
                if *physical { "physical" } else { "virtual" }
            ),
            ElfError::EntryOutside(entry) => write!(
                f,
                "e_entry: {entry:#x} is not inside any PT_LOAD segment"
            ),
            ElfError::EntryNotExecutable { entry, index } => write!(
                f,
                "e_entry: {entry:#x} is inside program header {index} (PT_LOAD), which is not executable"
            ),
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

/// Checks the ELF identification and file header; returns the parsed header.
fn check_header(image: &[u8]) -> Result<FileHeader<LittleEndian>, ElfError> {
    if image.len() < 4 {
        return Err(ElfError::TooShort { len: image.len() });
    }
    if image[..4] != abi::ELFMAGIC {
        return Err(ElfError::Magic([image[0], image[1], image[2], image[3]]));
    }
    if let Some(&class) = image.get(abi::EI_CLASS) {
        if class != abi::ELFCLASS64 {
            return Err(ElfError::Class(class));
        }
    }
    if let Some(&data) = image.get(abi::EI_DATA) {
        if data != abi::ELFDATA2LSB {
            return Err(ElfError::Data(data));
        }
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
    if ehdr.e_type != abi::ET_EXEC {
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
    // Canonical, in one half, and the page-rounded end fits in a u64.
    let canonical = match ph.p_vaddr.checked_add(ph.p_memsz) {
        Some(end) => {
            let last = end - 1;
            is_canonical(ph.p_vaddr)
                && is_canonical(last)
                && (ph.p_vaddr >= HIGHER_HALF_START) == (last >= HIGHER_HALF_START)
                && align_up(end, PAGE_SIZE).is_some()
        }
        None => false,
    };
    if !canonical {
        return Err(bad(SegmentProblem::NonCanonical {
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
        }));
    }
    let writable = ph.p_flags & abi::PF_W != 0;
    let executable = ph.p_flags & abi::PF_X != 0;
    if writable && executable {
        return Err(bad(SegmentProblem::WritableAndExecutable));
    }
    if ph.p_flags & abi::PF_R == 0 {
        return Err(bad(SegmentProblem::NotReadable));
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
        if b_start < a_end {
            return Err(ElfError::Overlap {
                first,
                second,
                physical,
            });
        }
        if (a_end - 1) / PAGE_SIZE == b_start / PAGE_SIZE {
            return Err(ElfError::SharedPage {
                first,
                second,
                page: align_down(b_start, PAGE_SIZE),
                physical,
            });
        }
    }
    Ok(())
}

/// Validates a kernel ELF image and returns how to load it.
pub fn plan(image: &[u8]) -> Result<LoadPlan, ElfError> {
    let ehdr = check_header(image)?;
    let file_len = image.len() as u64;
    let table_size = u64::from(ehdr.e_phnum) * u64::from(PHDR64_SIZE);
    let table = match ehdr.e_phoff.checked_add(table_size) {
        Some(end) if end <= file_len => &image[ehdr.e_phoff as usize..end as usize],
        _ => {
            return Err(ElfError::PhTableOutside {
                phoff: ehdr.e_phoff,
                phnum: ehdr.e_phnum,
                file_len,
            })
        }
    };
    let table = SegmentTable::new(LittleEndian, Class::ELF64, table);

    let mut any_load = false;
    let mut segments: Vec<Segment> = Vec::new();
    for index in 0..table.len() {
        let ph = table.get(index)?;
        if ph.p_type != abi::PT_LOAD {
            continue;
        }
        any_load = true;
        if let Some(segment) = check_load(index, &ph, file_len)? {
            segments.push(segment);
        }
    }
    if !any_load {
        return Err(ElfError::NoLoadSegments);
    }
    if segments.is_empty() {
        return Err(ElfError::AllLoadSegmentsEmpty);
    }

    let lower = segments.iter().find(|s| s.vaddr < LOWER_HALF_END);
    let higher = segments.iter().find(|s| s.vaddr >= HIGHER_HALF_START);
    if let (Some(lower), Some(higher)) = (lower, higher) {
        return Err(ElfError::MixedHalves {
            lower: lower.index,
            higher: higher.index,
        });
    }
    let higher_half = higher.is_some();
    check_disjoint(&segments, false, |s| (s.vaddr, s.vend()))?;

    if !higher_half {
        for s in &segments {
            let bad = |problem| ElfError::Segment {
                index: s.index,
                problem,
            };
            if s.paddr < MIN_LOWER_HALF_PADDR {
                return Err(bad(SegmentProblem::LowPhysicalAddress { paddr: s.paddr }));
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
        }
        check_disjoint(&segments, true, |s| (s.paddr, s.paddr + s.memsz))?;
    }

    let entry = ehdr.e_entry;
    match segments
        .iter()
        .find(|s| s.vaddr <= entry && entry < s.vend())
    {
        None => return Err(ElfError::EntryOutside(entry)),
        Some(s) if !s.executable => {
            return Err(ElfError::EntryNotExecutable {
                entry,
                index: s.index,
            })
        }
        Some(_) => {}
    }

    segments.sort_by_key(|s| s.vaddr);
    let virt_start = segments[0].page_start();
    let virt_end = segments[segments.len() - 1].page_end();
    Ok(LoadPlan {
        entry,
        higher_half,
        segments,
        virt_start,
        virt_end,
    })
}

impl LoadPlan {
    /// Size in bytes of the loaded image, `virt_end - virt_start`.
    pub fn size(&self) -> u64 {
        self.virt_end - self.virt_start
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

    const PF_R: u32 = 4;
    const PF_W: u32 = 2;
    const PF_X: u32 = 1;

    #[derive(Clone, Copy)]
    struct Ph {
        p_type: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        paddr: u64,
        filesz: u64,
        memsz: u64,
    }

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
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
    fn build_with(e_type: u16, machine: u16, entry: u64, phs: &[Ph], min_len: usize) -> Vec<u8> {
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

    fn build(entry: u64, phs: &[Ph]) -> Vec<u8> {
        build_with(abi::ET_EXEC, abi::EM_X86_64, entry, phs, 0)
    }

    const KBASE: u64 = 0xffff_ffff_8000_0000;

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
        assert!(e.to_string().starts_with("file: 40 bytes"), "{e}");

        let e = plan_err(b"#!/bin/sh\necho not an elf\n");
        assert!(
            e.to_string()
                .starts_with("e_ident[EI_MAG0..3]: 23 21 2f 62"),
            "{e}"
        );

        let mut f = good.clone();
        f[4] = 1;
        assert_eq!(
            plan_err(&f).to_string(),
            "e_ident[EI_CLASS]: 1 (expected 2, ELFCLASS64)"
        );
        let mut f = good.clone();
        f[5] = 2;
        assert!(plan_err(&f).to_string().starts_with("e_ident[EI_DATA]: 2"));
        let mut f = good.clone();
        f[6] = 0;
        assert!(plan_err(&f)
            .to_string()
            .starts_with("e_ident[EI_VERSION]: 0"));

        let f = build_with(abi::ET_EXEC, 3, KBASE, &kernel_phs(), 0);
        assert_eq!(
            plan_err(&f).to_string(),
            "e_machine: 3 (expected 62, EM_X86_64)"
        );
        let f = build_with(abi::ET_DYN, abi::EM_X86_64, KBASE, &kernel_phs(), 0);
        assert!(plan_err(&f)
            .to_string()
            .starts_with("e_type: 3 (expected 2, ET_EXEC"));
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
            "e_phoff: program header table at 0x40 (4 entries) is past the end of the file (0xc8 bytes)"
        );
    }

    #[test]
    fn needs_a_load_segment() {
        let f = build(KBASE, &[]);
        assert!(matches!(plan_err(&f), ElfError::NoProgramHeaders));
        let f = build(KBASE, &kernel_phs()[2..3]);
        assert!(matches!(plan_err(&f), ElfError::NoLoadSegments));
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
            "program header 3 (PT_LOAD): p_offset 0x5010 + p_filesz 0x100 is past the end of the file (0x510f bytes)"
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
            "program header 3 (PT_LOAD): writable and executable; hvboot maps W^X, split the segment in the linker script"
        );
    }

    #[test]
    fn non_canonical_ranges() {
        for (vaddr, memsz) in [
            (0x0000_8000_0000_0000u64, 0x1000u64), // in the hole
            (0x0000_7fff_ffff_f000, 0x2000),       // crosses into the hole
            (0xffff_7fff_ffff_f000, 0x1000),       // in the hole
            (0xffff_ffff_ffff_f000, 0x1000),       // ends at 2^64
            (0xffff_ffff_ffff_f000, 0x2000),       // wraps
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
            e,
            ElfError::MixedHalves {
                lower: 1,
                higher: 0
            }
        ));
        assert!(e.to_string().contains("mixes the lower half"));
    }

    #[test]
    fn lower_half_needs_paddr_above_1mib() {
        let mut ph = load(PF_R | PF_X, 0x1000, 0x40_0000, 0x10, 0x10);
        ph.paddr = 0xf_f000;
        let (_, p) = segment_problem(&[ph]);
        assert_eq!(p, SegmentProblem::LowPhysicalAddress { paddr: 0xf_f000 });
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
                    physical: false
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "program headers 1 and 3 (PT_LOAD): virtual ranges overlap"
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
                    physical: false
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
                    physical: false
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn entry_must_be_in_executable_segment() {
        for entry in [KBASE + 0x2345, KBASE - 1, 0, KBASE + 0x4800] {
            let e = plan_err(&build(entry, &kernel_phs()));
            assert!(matches!(e, ElfError::EntryOutside(x) if x == entry), "{e}");
        }
        assert_eq!(
            plan_err(&build(KBASE + 0x4800, &kernel_phs())).to_string(),
            "e_entry: 0xffffffff80004800 is not inside any PT_LOAD segment"
        );
        let e = plan_err(&build(KBASE + 0x4000, &kernel_phs()));
        assert!(matches!(e, ElfError::EntryNotExecutable { index: 1, .. }));
        assert_eq!(
            e.to_string(),
            "e_entry: 0xffffffff80004000 is inside program header 1 (PT_LOAD), which is not executable"
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
            "e_phentsize: 64 (expected 56, sizeof(Elf64_Phdr))"
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
            "program header 1 (PT_LOAD): p_align 0x1800 is neither 0 nor a power of two"
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
        assert_eq!((i, p), (0, SegmentProblem::NotReadable));
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
                    physical: true
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "program headers 0 and 1 (PT_LOAD): physical ranges overlap"
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
                    physical: true
                }
            ),
            "{e}"
        );
    }
}
