//! Multiboot2 kernels (Multiboot2 specification 2.0): the header's rules and the load plan.
//!
//! The one rule set for such kernels (docs/loader.md, "One rule set"): the loader's flow and
//! `hvboot-check` both call [`check`]. The header is read from a byte slice with every offset
//! bounds-checked (it is fuzzed: loader/core/fuzz, `multiboot2_check`); see docs/multiboot2.md
//! for why this is not the `multiboot2-header` crate.
//!
//! The image is either an ELF (ELF32 or ELF64, x86; each `PT_LOAD` segment goes to its
//! physical address; segments may be RWX) or, with an address tag, a flat range of the file.
//! A relocatable tag lets the loader move the whole image by a slide within its bounds.

pub mod sections;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The header's magic (§3.1.1).
pub const HEADER_MAGIC: u32 = 0xE852_50D6;
/// What EAX holds at the kernel's entry (§3.3).
pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// The header lies within this many bytes of the image's start, 8-byte aligned (§3.1.1).
pub const SEARCH_LIMIT: usize = 32768;
/// `architecture`: 32-bit (protected mode of) i386, the only one hvboot boots.
pub const ARCH_I386: u32 = 0;

/// Information (boot information tag types, §3.6) hvboot gives under BIOS, so a kernel may
/// require them in its information request: command line (1), boot loader name (2), modules
/// (3), basic memory (4), memory map (6), framebuffer (8), SMBIOS (13), ACPI old and new RSDP
/// (14, 15), load base address (21).
pub const GIVEN_INFO: [u32; 11] = [1, 2, 3, 4, 6, 8, 9, 13, 14, 15, 21];

/// The name of boot information tag type `t` (§3.6), for messages and `hvboot inspect`.
pub fn info_name(t: u32) -> &'static str {
    match t {
        0 => "end",
        1 => "boot command line",
        2 => "boot loader name",
        3 => "modules",
        4 => "basic memory information",
        5 => "BIOS boot device",
        6 => "memory map",
        7 => "VBE info",
        8 => "framebuffer info",
        9 => "ELF-symbols",
        10 => "APM table",
        11 => "EFI 32-bit system table",
        12 => "EFI 64-bit system table",
        13 => "SMBIOS tables",
        14 => "ACPI old RSDP",
        15 => "ACPI new RSDP",
        16 => "networking information",
        17 => "EFI memory map",
        18 => "EFI boot services not terminated",
        19 => "EFI 32-bit image handle",
        20 => "EFI 64-bit image handle",
        21 => "image load base physical address",
        _ => "unknown",
    }
}

/// The address tag (type 2, §3.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressTag {
    /// Where the header's magic is to be in memory.
    pub header_addr: u32,
    /// The physical address of the text segment's start (file offset `header offset -
    /// (header_addr - load_addr)`).
    pub load_addr: u32,
    /// The end of the data to load, 0 for the end of the file.
    pub load_end_addr: u32,
    /// The end of the bss (zeroed), 0 for none.
    pub bss_end_addr: u32,
}

/// The relocatable tag (type 10, §3.1.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocatable {
    /// The lowest address the image may start at.
    pub min_addr: u32,
    /// The highest address the image may end at.
    pub max_addr: u32,
    /// The image's start alignment.
    pub align: u32,
    /// 0 none, 1 as low as possible, 2 as high as possible.
    pub preference: u32,
}

/// The framebuffer tag (type 5, §3.1.10): the preferred mode, 0 for no preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramebufferTag {
    /// Columns (pixels).
    pub width: u32,
    /// Lines.
    pub height: u32,
    /// Bits per pixel.
    pub depth: u32,
}

/// A decoded Multiboot2 header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Byte offset of the magic in the file.
    pub offset: usize,
    /// `architecture`.
    pub architecture: u32,
    /// `header_length`.
    pub length: u32,
    /// `checksum`.
    pub checksum: u32,
    /// The information request (type 1): (tag type, the request tag is optional).
    pub requests: Vec<(u32, bool)>,
    /// The address tag (type 2).
    pub address: Option<AddressTag>,
    /// The entry address tag (type 3): the 32-bit entry point (physical).
    pub entry_addr: Option<u32>,
    /// The console flags tag (type 4).
    pub console_flags: Option<u32>,
    /// The framebuffer tag (type 5).
    pub framebuffer: Option<FramebufferTag>,
    /// The module alignment tag (type 6): modules page aligned.
    pub module_align: bool,
    /// The EFI boot services tag (type 7).
    pub efi_boot_services: bool,
    /// The EFI i386 entry address tag (type 8).
    pub efi32_entry: Option<u32>,
    /// The EFI amd64 entry address tag (type 9).
    pub efi64_entry: Option<u32>,
    /// The relocatable tag (type 10).
    pub relocatable: Option<Relocatable>,
}

/// One range to copy from the file into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Where its bytes start in the file.
    pub offset: u64,
    /// Bytes taken from the file.
    pub filesz: u64,
    /// Bytes in memory (the rest zeroed).
    pub memsz: u64,
    /// Its physical address (before any relocation).
    pub phys: u64,
    /// Its virtual address (`p_vaddr`; the physical one for the address tag's range).
    pub vaddr: u64,
    /// `PT_LOAD` index, or `None` for the address tag's range.
    pub segment: Option<usize>,
}

/// How to load a Multiboot2 kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The decoded header.
    pub header: Header,
    /// `Some(32)`/`Some(64)`: an ELF of that class; `None`: loaded by the address tag.
    pub elf_class: Option<u8>,
    /// The ranges to load, sorted by physical address.
    pub pieces: Vec<Piece>,
    /// The image's physical start (lowest piece, page aligned down).
    pub start: u64,
    /// The image's physical end (highest piece end, page aligned up).
    pub end: u64,
    /// The 32-bit entry point (physical, before any relocation).
    pub entry: u32,
    /// The section header table for the ELF-symbols tag, when the header requests it (type 9)
    /// and the ELF has one.
    pub sections: Option<sections::Sections>,
}

impl Plan {
    /// Bytes of the image in memory.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// Copies the pieces into `image`, the memory of the image placed at `base` (so a piece at
    /// `phys` goes to `phys - start` in it), zeroing the bss. `image` must be [`Plan::size`]
    /// bytes and zeroed (fresh pages are).
    pub fn copy_into(&self, file: &[u8], image: &mut [u8]) {
        for p in &self.pieces {
            let at = (p.phys - self.start) as usize;
            let from = &file[p.offset as usize..(p.offset + p.filesz) as usize];
            image[at..at + from.len()].copy_from_slice(from);
        }
    }
}

/// One thing wrong with a Multiboot2 kernel: where (`field`) and what (`message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `multiboot2 header checksum`, `multiboot2 tag 2 (address)`, `program header 1 (PT_LOAD)`...
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl core::fmt::Display for Problem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn problem(field: impl Into<String>, message: String) -> Problem {
    Problem {
        field: field.into(),
        message,
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The offset of the header's magic: the first 8-byte aligned one in the first 32 KiB whose
/// fixed part (16 bytes) fits there too.
pub fn find(image: &[u8]) -> Option<usize> {
    let limit = image.len().min(SEARCH_LIMIT);
    (0..limit.saturating_sub(15))
        .step_by(8)
        .find(|&at| u32_at(image, at) == Some(HEADER_MAGIC))
}

/// Whether `image` is a Multiboot2 kernel (its header found; it may still be refused).
pub fn is_multiboot2(image: &[u8]) -> bool {
    find(image).is_some()
}

const TAG_NAMES: [&str; 11] = [
    "end",
    "information request",
    "address",
    "entry address",
    "console flags",
    "framebuffer",
    "module alignment",
    "EFI boot services",
    "EFI i386 entry address",
    "EFI amd64 entry address",
    "relocatable",
];

/// The header at `at` (from [`find`]), decoded, with every problem of the header itself.
pub fn decode(image: &[u8], at: usize, problems: &mut Vec<Problem>) -> Header {
    let word = |i: usize| u32_at(image, at + 4 * i).unwrap_or(0);
    let mut h = Header {
        offset: at,
        architecture: word(1),
        length: word(2),
        checksum: word(3),
        ..Header::default()
    };
    if h.architecture != ARCH_I386 {
        let m = format!(
            "{}: hvboot boots only architecture 0 (32-bit protected-mode i386)",
            h.architecture
        );
        problems.push(problem("multiboot2 header architecture", m));
    }
    let sum = HEADER_MAGIC
        .wrapping_add(h.architecture)
        .wrapping_add(h.length)
        .wrapping_add(h.checksum);
    if sum != 0 {
        let want = 0u32
            .wrapping_sub(HEADER_MAGIC)
            .wrapping_sub(h.architecture)
            .wrapping_sub(h.length);
        let m = format!(
            "{:#010x}: magic + architecture + header_length + checksum must be 0 mod 2^32 \
             (expected {want:#010x})",
            h.checksum
        );
        problems.push(problem("multiboot2 header checksum", m));
    }
    let len = h.length as usize;
    let fits = at
        .checked_add(len)
        .is_some_and(|e| e <= image.len().min(SEARCH_LIMIT));
    if len < 24 || !fits {
        let m = format!(
            "{}: the header (at file offset {at:#x}) must be at least 24 bytes (16 and an end \
             tag) and lie within the file's first 32768 bytes",
            h.length
        );
        problems.push(problem("multiboot2 header header_length", m));
        return h;
    }
    tags(&image[at..at + len], &mut h, problems);
    h
}

/// The tags from byte 16 of `hdr` (the header's `header_length` bytes) to the end tag.
fn tags(hdr: &[u8], h: &mut Header, problems: &mut Vec<Problem>) {
    let mut at = 16usize;
    let mut index = 0usize;
    loop {
        let (Some(kind), Some(flags), Some(size)) =
            (u16_at(hdr, at), u16_at(hdr, at + 2), u32_at(hdr, at + 4))
        else {
            let m = format!(
                "no end tag (type 0, size 8) before the header's end at {:#x}",
                hdr.len()
            );
            problems.push(problem("multiboot2 header tags", m));
            return;
        };
        let name = TAG_NAMES
            .get(usize::from(kind))
            .copied()
            .unwrap_or("unknown");
        let field = format!("multiboot2 tag {index} ({name}, type {kind})");
        let size = size as usize;
        let Some(tag) = at
            .checked_add(size)
            .and_then(|e| hdr.get(at..e))
            .filter(|_| size >= 8)
        else {
            let m = format!(
                "size {size}: a tag is at least 8 bytes and lies within header_length {}",
                hdr.len()
            );
            problems.push(problem(field, m));
            return;
        };
        let optional = flags & 1 != 0;
        let w = |i: usize| u32_at(tag, 8 + 4 * i);
        let need = |n: usize, problems: &mut Vec<Problem>| {
            if size < 8 + 4 * n {
                let m = format!("size {size}: this tag is {} bytes", 8 + 4 * n);
                problems.push(problem(field.clone(), m));
                false
            } else {
                true
            }
        };
        match kind {
            0 => {
                if size != 8 {
                    problems.push(problem(
                        field,
                        format!("size {size}: the end tag is 8 bytes"),
                    ));
                }
                return;
            }
            1 => {
                let n = (size - 8) / 4;
                for i in 0..n {
                    let t = w(i).unwrap_or(0);
                    h.requests.push((t, optional));
                    if !optional && !GIVEN_INFO.contains(&t) {
                        let m = format!(
                            "requires information tag type {t} ({}), which hvboot does not \
                             give; hvboot gives types {GIVEN_INFO:?}",
                            info_name(t)
                        );
                        problems.push(problem(field.clone(), m));
                    }
                }
            }
            2 if need(4, problems) => {
                h.address = Some(AddressTag {
                    header_addr: w(0).unwrap_or(0),
                    load_addr: w(1).unwrap_or(0),
                    load_end_addr: w(2).unwrap_or(0),
                    bss_end_addr: w(3).unwrap_or(0),
                });
            }
            3 if need(1, problems) => h.entry_addr = w(0),
            4 if need(1, problems) => h.console_flags = w(0),
            5 if need(3, problems) => {
                h.framebuffer = Some(FramebufferTag {
                    width: w(0).unwrap_or(0),
                    height: w(1).unwrap_or(0),
                    depth: w(2).unwrap_or(0),
                });
            }
            6 => h.module_align = true,
            7 => h.efi_boot_services = true,
            8 if need(1, problems) => h.efi32_entry = w(0),
            9 if need(1, problems) => h.efi64_entry = w(0),
            10 if need(4, problems) => {
                let r = Relocatable {
                    min_addr: w(0).unwrap_or(0),
                    max_addr: w(1).unwrap_or(0),
                    align: w(2).unwrap_or(0),
                    preference: w(3).unwrap_or(0),
                };
                relocatable(&r, &field, problems);
                h.relocatable = Some(r);
            }
            2..=10 => {}
            _ if optional => {}
            _ => {
                let m = format!("unknown tag type {kind} marked required (flags bit 0 clear)");
                problems.push(problem(field, m));
            }
        }
        at += size.next_multiple_of(8);
        index += 1;
    }
}

fn relocatable(r: &Relocatable, field: &str, problems: &mut Vec<Problem>) {
    if r.min_addr > r.max_addr {
        let m = format!(
            "min_addr {:#x} is above max_addr {:#x}",
            r.min_addr, r.max_addr
        );
        problems.push(problem(field, m));
    }
    if r.align != 0 && !r.align.is_power_of_two() {
        problems.push(problem(
            field,
            format!("align {:#x}: not a power of two", r.align),
        ));
    }
    if r.preference > 2 {
        let m = format!("preference {}: 0 (none), 1 (low) or 2 (high)", r.preference);
        problems.push(problem(field, m));
    }
}

/// The lowest address a kernel may load at: below 1 MiB are the BIOS's IVT, BDA, EBDA and ROMs,
/// which a Multiboot2 kernel such as Xen still uses (docs/multiboot2.md).
pub const MIN_LOAD_ADDR: u64 = 1 << 20;
const FOUR_GIB: u64 = 1 << 32;

/// Checks `image` as a Multiboot2 kernel: its plan, or every problem found.
pub fn check(image: &[u8]) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(at) = find(image) else {
        let m = "no Multiboot2 header (magic 0xe85250d6, 8-byte aligned) in the first 32768 bytes"
            .into();
        return Err(alloc::vec![problem("multiboot2 header", m)]);
    };
    let header = decode(image, at, &mut problems);
    let elf = image.get(..4) == Some(&b"\x7fELF"[..]);
    let (elf_class, mut pieces, elf_entry) = match (&header.address, elf) {
        (Some(a), _) => (None, address_pieces(image, &header, a, &mut problems), None),
        (None, true) => {
            let (class, pieces, entry) = elf_pieces(image, &mut problems);
            (Some(class), pieces, Some(entry))
        }
        (None, false) => {
            let m = "neither an ELF file nor a header with an address tag (type 2)".into();
            problems.push(problem("multiboot2 tag 2 (address)", m));
            (None, Vec::new(), None)
        }
    };
    pieces.sort_by_key(|p| p.phys);
    let entry = entry(&header, elf_entry, &pieces, &mut problems);
    efi64_entry(&header, &pieces, &mut problems);
    let mut sections = None;
    if let Some(&(_, optional)) = header.requests.iter().find(|&&(t, _)| t == 9) {
        if elf {
            sections = sections::read(image, &mut problems);
        } else if !optional {
            let m = "requires information tag type 9 (ELF-symbols): an image loaded by its \
                     address tag has no section headers"
                .into();
            problems.push(problem("multiboot2 tag (information request)", m));
        }
    }
    for w in pieces.windows(2) {
        if w[0].phys + w[0].memsz > w[1].phys {
            let m = format!("{:#x} and {:#x} overlap in memory", w[0].phys, w[1].phys);
            problems.push(problem("multiboot2 image", m));
        }
    }
    let start = pieces.first().map_or(0, |p| p.phys) & !0xfff;
    let end = pieces
        .iter()
        .map(|p| p.phys + p.memsz)
        .max()
        .unwrap_or(0)
        .next_multiple_of(0x1000);
    if let Some(r) = &header.relocatable {
        if end - start > u64::from(r.max_addr).saturating_sub(u64::from(r.min_addr)) + 1 {
            let m = format!(
                "the image ({:#x} bytes) does not fit between min_addr {:#x} and max_addr {:#x}",
                end - start,
                r.min_addr,
                r.max_addr
            );
            problems.push(problem("multiboot2 tag (relocatable)", m));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        header,
        elf_class,
        pieces,
        start,
        end,
        entry: entry.unwrap_or(0),
        sections,
    })
}

/// The first problem of [`check`], for the loader.
pub fn plan(image: &[u8]) -> Result<Plan, Problem> {
    check(image).map_err(|mut all| all.swap_remove(0))
}

/// Where a piece may be: from 1 MiB, ending below 4 GiB.
fn placeable(field: &str, phys: u64, memsz: u64, problems: &mut Vec<Problem>) {
    let end = phys.saturating_add(memsz);
    if phys < MIN_LOAD_ADDR || end > FOUR_GIB {
        let m = format!(
            "{phys:#x}..{end:#x}: a Multiboot2 image loads from 1 MiB (below it are the \
             BIOS's IVT, BDA, EBDA and ROMs) to 4 GiB"
        );
        problems.push(problem(field, m));
    }
}

/// The address tag's one piece.
fn address_pieces(
    image: &[u8],
    h: &Header,
    a: &AddressTag,
    problems: &mut Vec<Problem>,
) -> Vec<Piece> {
    let field = "multiboot2 tag (address)";
    let file = image.len() as u64;
    let (header_addr, load) = (u64::from(a.header_addr), u64::from(a.load_addr));
    let Some(offset) = (h.offset as u64)
        .checked_sub(header_addr.wrapping_sub(load))
        .filter(|_| header_addr >= load)
    else {
        let m = format!(
            "header_addr {header_addr:#x} and load_addr {load:#x}: the load start must be at or \
             before the header and within the file"
        );
        problems.push(problem(field, m));
        return Vec::new();
    };
    let load_end = if a.load_end_addr == 0 {
        load + (file - offset)
    } else {
        u64::from(a.load_end_addr)
    };
    if load_end < load || load_end - load > file - offset {
        let m = format!(
            "load_end_addr {:#x}: from load_addr {load:#x} there are {:#x} bytes in the file",
            a.load_end_addr,
            file - offset
        );
        problems.push(problem(field, m));
        return Vec::new();
    }
    let bss_end = if a.bss_end_addr == 0 {
        load_end
    } else {
        u64::from(a.bss_end_addr)
    };
    if bss_end < load_end {
        let m = format!("bss_end_addr {bss_end:#x} is below load_end_addr {load_end:#x}");
        problems.push(problem(field, m));
        return Vec::new();
    }
    placeable(field, load, bss_end - load, problems);
    alloc::vec![Piece {
        offset,
        filesz: load_end - load,
        memsz: bss_end - load,
        phys: load,
        vaddr: load,
        segment: None
    }]
}

/// An ELF32 or ELF64 x86 executable's `PT_LOAD` segments at their physical addresses; its class
/// and `e_entry`.
fn elf_pieces(image: &[u8], problems: &mut Vec<Problem>) -> (u8, Vec<Piece>, u64) {
    let class = image.get(4).copied().unwrap_or(0);
    let b64 = class == 2;
    let bits = if b64 { 64 } else { 32 };
    let machine = u16_at(image, 18).unwrap_or(0);
    let header_bad = if class != 1 && class != 2 {
        Some((
            "ELF header e_ident[EI_CLASS]",
            format!("{class}: 1 (ELF32) or 2 (ELF64)"),
        ))
    } else if image.get(5) != Some(&1) {
        Some((
            "ELF header e_ident[EI_DATA]",
            "not little-endian (ELFDATA2LSB)".into(),
        ))
    } else if machine != 3 && machine != 62 {
        Some((
            "ELF header e_machine",
            format!("{machine}: EM_386 (3) or EM_X86_64 (62)"),
        ))
    } else {
        None
    };
    if let Some((f, m)) = header_bad {
        problems.push(problem(f, m));
        return (bits, Vec::new(), 0);
    }
    let (entry, phoff, phentsize, phnum) = if b64 {
        (
            u64_at(image, 24),
            u64_at(image, 32),
            u16_at(image, 54),
            u16_at(image, 56),
        )
    } else {
        (
            u32_at(image, 24).map(u64::from),
            u32_at(image, 28).map(u64::from),
            u16_at(image, 42),
            u16_at(image, 44),
        )
    };
    let want = if b64 { 56 } else { 32 };
    let (Some(entry), Some(phoff), Some(phnum)) = (entry, phoff, phnum) else {
        problems.push(problem("ELF header", "truncated".into()));
        return (bits, Vec::new(), 0);
    };
    if phentsize != Some(want) {
        let m = format!(
            "{}: ELF{bits} program headers are {want} bytes",
            phentsize.unwrap_or(0)
        );
        problems.push(problem("ELF header e_phentsize", m));
        return (bits, Vec::new(), entry);
    }
    let mut pieces = Vec::new();
    let file = image.len() as u64;
    for i in 0..usize::from(phnum) {
        let field = format!("program header {i} (PT_LOAD)");
        let at = phoff.saturating_add(i as u64 * u64::from(want));
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        let ph = if b64 {
            let w = |k: usize| u64_at(image, at + 8 + 8 * k);
            (u32_at(image, at), w(0), w(1), w(2), w(3), w(4))
        } else {
            let w = |k: usize| u32_at(image, at + 4 * k).map(u64::from);
            (u32_at(image, at), w(1), w(2), w(3), w(4), w(5))
        };
        let (Some(ptype), Some(offset), Some(vaddr), Some(paddr), Some(filesz), Some(memsz)) = ph
        else {
            let m = format!(
                "program header table at {phoff:#x} ({phnum} entries) is past the end of the file"
            );
            problems.push(problem(format!("program header {i}"), m));
            break;
        };
        if ptype != 1 || memsz == 0 {
            continue;
        }
        if filesz > memsz || offset.checked_add(filesz).is_none_or(|e| e > file) {
            let m = format!(
                "p_offset {offset:#x}, p_filesz {filesz:#x}, p_memsz {memsz:#x}: the file range \
                 must lie in the file ({file:#x} bytes) and p_filesz be at most p_memsz"
            );
            problems.push(problem(field, m));
            continue;
        }
        placeable(&field, paddr, memsz, problems);
        pieces.push(Piece {
            offset,
            filesz,
            memsz,
            phys: paddr,
            vaddr,
            segment: Some(i),
        });
    }
    if pieces.is_empty() && problems.is_empty() {
        problems.push(problem(
            "ELF program headers",
            "no PT_LOAD segment with p_memsz > 0".into(),
        ));
    }
    (bits, pieces, entry)
}

/// The 32-bit physical entry: the entry address tag, else the ELF's `e_entry` (a virtual
/// address turned physical through the segment that holds it, as GRUB does).
fn entry(
    h: &Header,
    elf_entry: Option<u64>,
    pieces: &[Piece],
    problems: &mut Vec<Problem>,
) -> Option<u32> {
    let (field, e) = match (h.entry_addr, elf_entry) {
        (Some(e), _) => ("multiboot2 tag (entry address)", u64::from(e)),
        (None, Some(e)) => ("ELF header e_entry", e),
        (None, None) => {
            if h.address.is_some() {
                let m =
                    "a kernel loaded by its address tag needs an entry address tag (type 3)".into();
                problems.push(problem("multiboot2 tag (entry address)", m));
            }
            return None;
        }
    };
    if pieces.is_empty() {
        return None;
    }
    // e_entry is virtual: made physical through the segment whose virtual range holds it (as
    // GRUB does); the entry address tag is physical already.
    let phys = if h.entry_addr.is_some() {
        Some(e)
    } else {
        pieces
            .iter()
            .find(|p| e >= p.vaddr && e - p.vaddr < p.memsz)
            .map(|p| e - p.vaddr + p.phys)
    };
    match phys.filter(|p| pieces.iter().any(|s| *p >= s.phys && *p < s.phys + s.memsz)) {
        Some(p) if p < FOUR_GIB => Some(p as u32),
        _ => {
            let m = format!("{e:#x}: the entry must lie in a loaded segment below 4 GiB");
            problems.push(problem(field, m));
            None
        }
    }
}

/// The EFI amd64 entry (§3.1.9, physical like the entry address tag) lies in a loaded range:
/// the loader jumps there on the EFI boot-services path.
fn efi64_entry(h: &Header, pieces: &[Piece], problems: &mut Vec<Problem>) {
    let Some(e) = h.efi64_entry.map(u64::from) else {
        return;
    };
    if !pieces.is_empty() && !pieces.iter().any(|s| e >= s.phys && e - s.phys < s.memsz) {
        let m = format!("{e:#x}: the EFI amd64 entry must lie in a loaded range");
        problems.push(problem("multiboot2 tag (EFI amd64 entry address)", m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::multiboot2::{elf32, header, tag};

    const LOAD: u32 = 0x20_0000;

    fn fields(image: &[u8]) -> Vec<String> {
        check(image)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn elf32_with_tags_decodes_and_plans() {
        let tags = [
            tag(1, 0, &[1, 6, 14]),
            tag(1, 1, &[9]),
            tag(4, 0, &[3]),
            tag(5, 1, &[1024, 768, 32]),
            tag(6, 0, &[]),
            tag(7, 1, &[]),
            tag(9, 1, &[LOAD + 0x10]),
            tag(10, 1, &[0x10_0000, 0xffff_ffff, 0x20_0000, 2]),
        ];
        let img = elf32(&header(&tags), LOAD, &[0x90; 100]);
        let p = check(&img).unwrap();
        let h = &p.header;
        assert_eq!(h.offset, 0x100);
        assert_eq!(
            h.requests,
            alloc::vec![(1, false), (6, false), (14, false), (9, true)]
        );
        assert_eq!(h.console_flags, Some(3));
        assert_eq!(
            h.framebuffer,
            Some(FramebufferTag {
                width: 1024,
                height: 768,
                depth: 32
            })
        );
        assert!(h.module_align && h.efi_boot_services);
        assert_eq!(h.efi64_entry, Some(LOAD + 0x10));
        let r = h.relocatable.unwrap();
        assert_eq!((r.align, r.preference), (0x20_0000, 2));
        assert_eq!(
            (p.elf_class, p.entry, p.start, p.end),
            (Some(32), LOAD, u64::from(LOAD), u64::from(LOAD) + 0x2000)
        );
        assert_eq!(p.pieces[0].offset, 0x1000);
        assert_eq!(plan(&img).unwrap(), p);
        assert_eq!(
            crate::elf::kind(&img),
            Some(crate::elf::KernelKind::Multiboot2)
        );
    }

    #[test]
    fn efi64_entry_outside_the_image_is_refused() {
        let img = elf32(
            &header(&[tag(9, 0, &[LOAD + 0x10_0000])]),
            LOAD,
            &[0x90; 100],
        );
        let e = check(&img).unwrap_err();
        assert_eq!(e[0].field, "multiboot2 tag (EFI amd64 entry address)");
        assert!(e[0].message.starts_with("0x300000: "), "{}", e[0].message);
    }

    #[test]
    fn address_tag_loads_the_flat_file() {
        // The header at file offset 0 is at load_addr; load the whole file, 0x3000 of bss.
        let tags = [
            tag(2, 0, &[LOAD, LOAD, 0, LOAD + 0x4000]),
            tag(3, 0, &[LOAD + 0x40]),
        ];
        let mut img = header(&tags);
        img.resize(0x200, 0xcc);
        let p = check(&img).unwrap();
        assert_eq!(p.elf_class, None);
        assert_eq!(
            p.pieces,
            alloc::vec![Piece {
                offset: 0,
                filesz: 0x200,
                memsz: 0x4000,
                phys: u64::from(LOAD),
                vaddr: u64::from(LOAD),
                segment: None
            }]
        );
        assert_eq!(p.entry, LOAD + 0x40);
    }

    #[test]
    fn every_problem_with_its_field() {
        let mut img = elf32(
            &header(&[tag(1, 0, &[5, 17]), tag(42, 0, &[])]),
            LOAD,
            &[0; 8],
        );
        img[0x10c] ^= 1; // the checksum
        let f = fields(&img);
        assert_eq!(
            f,
            [
                "multiboot2 header checksum",
                "multiboot2 tag 0 (information request, type 1)",
                "multiboot2 tag 0 (information request, type 1)",
                "multiboot2 tag 1 (unknown, type 42)",
            ]
        );
        let e = check(&img).unwrap_err();
        assert!(
            e[1].message.contains("type 5 (BIOS boot device)"),
            "{}",
            e[1].message
        );
        assert!(e[2].message.contains("type 17 (EFI memory map)"));
        // An optional unknown tag and an optional request are fine.
        let ok = elf32(&header(&[tag(1, 1, &[5]), tag(42, 1, &[])]), LOAD, &[0; 8]);
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn bad_address_tags() {
        // Below 1 MiB: the BIOS's memory.
        let low = header(&[tag(2, 0, &[0x8000, 0x8000, 0, 0]), tag(3, 0, &[0x8000])]);
        assert_eq!(fields(&low), ["multiboot2 tag (address)"]);
        // load_addr after header_addr; and no entry address tag.
        let after = header(&[tag(2, 0, &[LOAD, LOAD + 0x10, 0, 0])]);
        assert_eq!(
            fields(&after),
            ["multiboot2 tag (address)", "multiboot2 tag (entry address)"]
        );
        // load_end past the file.
        let long = header(&[
            tag(2, 0, &[LOAD, LOAD, LOAD + 0x10_0000, 0]),
            tag(3, 0, &[LOAD]),
        ]);
        assert_eq!(fields(&long), ["multiboot2 tag (address)"]);
        // bss_end below load_end.
        let bss = header(&[
            tag(2, 0, &[LOAD, LOAD, LOAD + 0x20, LOAD + 0x10]),
            tag(3, 0, &[LOAD]),
        ]);
        assert_eq!(fields(&bss), ["multiboot2 tag (address)"]);
    }

    #[test]
    fn header_shape_problems() {
        assert_eq!(fields(b"not a kernel"), ["multiboot2 header"]);
        let mut h = header(&[]);
        h[4] = 4; // MIPS
        let sum = 0u32
            .wrapping_sub(HEADER_MAGIC)
            .wrapping_sub(4)
            .wrapping_sub(24);
        h[12..16].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            fields(&elf32(&h, LOAD, &[0])),
            ["multiboot2 header architecture"]
        );
        // No end tag: the length cuts the header after the fixed part and one tag.
        let mut cut = header(&[tag(4, 0, &[0])]);
        let len = 16u32 + 16;
        cut[8..12].copy_from_slice(&len.to_le_bytes());
        let sum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(len);
        cut[12..16].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(fields(&elf32(&cut, LOAD, &[0])), ["multiboot2 header tags"]);
        // A magic not 8-byte aligned is no header.
        let mut odd = alloc::vec![0u8; 4];
        odd.extend_from_slice(&header(&[]));
        assert!(find(&odd).is_none());
        // Relocatable with bad fields.
        let r = header(&[tag(10, 0, &[0x40_0000, 0x10_0000, 3, 7])]);
        assert_eq!(fields(&elf32(&r, LOAD, &[0])).len(), 4);
    }

    #[test]
    fn elf_rules() {
        // Entry outside the segment.
        let mut img = elf32(&header(&[]), LOAD, &[0; 16]);
        img[24..28].copy_from_slice(&0x1234u32.to_le_bytes());
        assert_eq!(fields(&img), ["ELF header e_entry"]);
        // Segment below 1 MiB.
        let low = elf32(&header(&[]), 0x9_0000, &[0; 16]);
        assert_eq!(fields(&low), ["program header 0 (PT_LOAD)"]);
        // Wrong machine.
        let mut arm = elf32(&header(&[]), LOAD, &[0; 16]);
        arm[18] = 40;
        assert_eq!(fields(&arm), ["ELF header e_machine"]);
    }

    /// A seeded mutator over a valid image's header: `check` never panics and `plan` is its
    /// first problem.
    #[test]
    fn mutated_headers_never_panic() {
        let tags = [
            tag(1, 0, &[1, 6]),
            tag(2, 0, &[LOAD, LOAD, 0, 0]),
            tag(3, 0, &[LOAD]),
            tag(10, 1, &[0, !0, 8, 1]),
        ];
        let base = header(&tags);
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..5000 {
            let mut img = base.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % img.len() as u64) as usize;
                img[at] = (seed >> 32) as u8;
            }
            match (check(&img), plan(&img)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(all), Err(first)) => assert_eq!(all[0], first),
                _ => panic!("check and plan disagree"),
            }
        }
    }
}
