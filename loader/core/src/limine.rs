//! Limine kernels (limine-protocol PROTOCOL.md, the Limine 8.x text): recognising one and
//! finding its base-revision tag and requests in the loaded image.
//!
//! The one rule set for such kernels (docs/loader.md, "One rule set"): the loader's flow and
//! `hvboot-check` both call [`verdict`]. A kernel is a Limine kernel when its file holds, on an
//! 8-byte boundary, a base-revision tag or a request (the common magic) ([`is_limine`]); its
//! image is then an ordinary higher-half ELF (`crate::elf`'s rules).
//!
//! The scan walks every `PT_LOAD` segment's file bytes at 8-byte-aligned virtual addresses
//! (requests live in initialised data, never in `.bss`): PROTOCOL.md "Requests Delimiters" — only
//! what lies between the last start marker and the first end marker counts, when there are
//! markers (hvboot honours them for every base revision, which revisions 0 and 1 allow).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::elf::{LoadPlan, Segment};
pub use crate::multiboot2::Problem;

/// The first two words of every request's ID (PROTOCOL.md "Features").
pub const COMMON_MAGIC: [u64; 2] = [0xc7b1_dd30_df4c_8b88, 0x0a82_e883_a194_f07b];
/// The base-revision tag's magic; its third word is the revision asked for (PROTOCOL.md "Base
/// protocol revisions"). The loader writes 0 there when it boots the kernel with that revision.
pub const BASE_REVISION_MAGIC: [u64; 2] = [0xf956_2b2d_5c95_a6c8, 0x6a7b_3849_4453_6bdc];
/// The requests start marker (PROTOCOL.md "Requests Delimiters").
pub const START_MARKER: [u64; 4] = [
    0xf6b8_f4b3_9de7_d1ae,
    0xfab9_1a69_40fc_b9cf,
    0x785c_6ed0_15d3_e316,
    0x181e_920a_7852_b9d9,
];
/// The requests end marker.
pub const END_MARKER: [u64; 2] = [0xadc0_e053_1bb1_0d03, 0x9572_709f_3176_4c62];

/// The base revisions hvboot boots with: 1 to 6 (6 is the `limine` crate 0.6's default; PROTOCOL.md
/// "Base Revision Changes Summary"). Revision 0 (no tag) is deprecated and maps the low 4 GiB
/// identically; a revision above 6 is refused, not booted on a guess at what it changes.
pub const SUPPORTED_REVISIONS: core::ops::RangeInclusive<u64> = 1..=6;

/// The first base revision with revision 5's stricter x86-64 entry state (PROTOCOL.md "Machine
/// State at Entry": other CR0/CR4/EFER bits clear, RFLAGS 2, null TR/LDTR/IDTR, the local APIC
/// reset). Revision 6 changes nothing on x86-64.
pub const STRICT_ENTRY_REVISION: u64 = 5;

/// The lowest address a Limine kernel may be linked at (PROTOCOL.md "Entry memory layout").
pub const LOWEST_VADDR: u64 = crate::elf::DEFAULT_PIE_BASE;

/// Bytes of a request's mandatory members: `id[4]`, `revision`, `response`.
pub const REQUEST_HEADER: u64 = 48;

/// The requests hvboot knows: name, the ID's last two words, and the bytes of request members
/// after the header that hvboot reads (PROTOCOL.md "Feature List"; the first revision of each).
pub const KNOWN: [(&str, [u64; 2], u64); 20] = [
    (
        "bootloader info",
        [0xf550_38d8_e2a1_202f, 0x2794_26fc_f5f5_9740],
        0,
    ),
    (
        "executable command line",
        [0x4b16_1536_e598_651e, 0xb390_ad4a_2f1f_303a],
        0,
    ),
    (
        "firmware type",
        [0x8c2f_75d9_0bef_28a8, 0x7045_a468_8eac_00c3],
        0,
    ),
    (
        "stack size",
        [0x224e_f046_0a8e_8926, 0xe1cb_0fc2_5f46_ea3d],
        8,
    ),
    ("HHDM", [0x48dc_f1cb_8ad2_b852, 0x6398_4e95_9a98_244b], 0),
    (
        "framebuffer",
        [0x9d58_27dc_d881_dd75, 0xa314_8604_f6fa_b11b],
        0,
    ),
    (
        "paging mode",
        [0x95c1_a0ed_ab09_44cb, 0xa4e5_cb38_42f7_488a],
        8,
    ),
    ("MP", [0x95a6_7b81_9a1b_857e, 0xa0b6_1b72_3b6a_73e0], 8),
    (
        "memory map",
        [0x67cf_3d9d_378a_806f, 0xe304_acdf_c50c_3c62],
        0,
    ),
    (
        "entry point",
        [0x13d8_6c03_5a1c_d3e1, 0x2b0c_aa89_d8f3_026a],
        8,
    ),
    (
        "executable file",
        [0xad97_e90e_83f1_ed67, 0x31eb_5d1c_5ff2_3b69],
        0,
    ),
    ("module", [0x3e7e_2797_02be_32af, 0xca1c_4f3b_d128_0cee], 0),
    ("RSDP", [0xc5e7_7b6b_397e_7b43, 0x2763_7845_accd_cf3c], 0),
    ("SMBIOS", [0x9e90_46f1_1e09_5391, 0xaa4a_520f_efbd_e5ee], 0),
    (
        "EFI system table",
        [0x5ceb_a516_3eaa_f6d6, 0x0a69_8161_0cf6_5fcc],
        0,
    ),
    (
        "EFI memory map",
        [0x7df6_2a43_1d68_72d5, 0xa4fc_dfb3_e573_06c8],
        0,
    ),
    (
        "date at boot",
        [0x5027_46e1_84c0_88aa, 0xfbc5_ec83_e632_7893],
        0,
    ),
    (
        "executable address",
        [0x71ba_7686_3cc5_5f63, 0xb264_4a48_c516_a487],
        0,
    ),
    (
        "device tree blob",
        [0xb40d_db48_fb54_bac7, 0x5450_8149_3f81_ffb7],
        0,
    ),
    (
        "bootloader performance",
        [0x6b50_ad9b_f36d_13ad, 0xdc4c_7e88_fc75_9e17],
        0,
    ),
];

/// The name of the request with ID words `id` (`None`: one hvboot does not know, left
/// unanswered as the protocol says).
pub fn request_name(id: [u64; 2]) -> Option<&'static str> {
    KNOWN.iter().find(|k| k.1 == id).map(|k| k.0)
}

/// One request found in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The ID's last two words (the first two are [`COMMON_MAGIC`]).
    pub id: [u64; 2],
    /// The request's `revision` member.
    pub revision: u64,
    /// Its virtual address (where the loader writes the response pointer, 40 bytes on).
    pub vaddr: u64,
    /// Its offset in the file.
    pub offset: u64,
}

impl Request {
    /// Its name, `None` for a request hvboot does not know.
    pub fn name(&self) -> Option<&'static str> {
        request_name(self.id)
    }

    /// `HHDM request at 0x...` / `request 0x...:0x... at 0x...`, for messages.
    pub fn describe(&self) -> String {
        match self.name() {
            Some(n) => format!("{n} request at {:#x}", self.vaddr),
            None => format!(
                "request {:#018x}:{:#018x} at {:#x}",
                self.id[0], self.id[1], self.vaddr
            ),
        }
    }
}

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The base-revision tag: its virtual address, file offset and the revision asked for.
    pub tag: Option<(u64, u64, u64)>,
    /// The start and end markers' virtual addresses, when present.
    pub markers: (Option<u64>, Option<u64>),
    /// The requests between the markers, in address order.
    pub requests: Vec<Request>,
}

impl Found {
    /// The base revision asked for: the tag's, 0 without one (PROTOCOL.md).
    pub fn base_revision(&self) -> u64 {
        self.tag.map_or(0, |t| t.2)
    }

    /// The request named `name`, if the kernel made it.
    pub fn request(&self, name: &str) -> Option<&Request> {
        self.requests.iter().find(|r| r.name() == Some(name))
    }
}

/// Whether `image` carries a base-revision tag or a request's common magic on an 8-byte
/// boundary of the file (a segment's bytes keep their virtual alignment mod 8 in the file, since
/// `p_offset` and `p_vaddr` agree mod the page size).
pub fn is_limine(image: &[u8]) -> bool {
    let words = image.len() / 8;
    (0..words.saturating_sub(1)).any(|i| {
        let pair = [word(image, i * 8), word(image, i * 8 + 8)];
        pair == BASE_REVISION_MAGIC || pair == COMMON_MAGIC
    })
}

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

fn problem(field: impl Into<String>, message: String) -> Problem {
    Problem {
        field: field.into(),
        message,
    }
}

/// The 8-byte words of each segment's file bytes at 8-aligned virtual addresses, in address
/// order: (virtual address, file offset, the bytes from there to the segment's file end).
fn words<'a>(
    image: &'a [u8],
    segments: &'a [Segment],
) -> impl Iterator<Item = (u64, u64, &'a [u8])> + 'a {
    segments.iter().flat_map(move |s| {
        let start = s.offset.min(image.len() as u64);
        let end = s.offset.saturating_add(s.filesz).min(image.len() as u64);
        let bytes = &image[start as usize..end as usize];
        let skip = (8 - s.vaddr % 8) % 8;
        (skip..(bytes.len() as u64).saturating_sub(7))
            .step_by(8)
            .map(move |i| (s.vaddr + i, s.offset + i, &bytes[i as usize..]))
    })
}

/// Finds the tag, the markers and the requests in the loaded image `plan` describes, and checks
/// them: every problem, each with its field. Problems: a base revision hvboot does not boot
/// with, two tags, a request ID made twice, a request cut off by its segment's file end.
pub fn scan(image: &[u8], plan: &LoadPlan) -> (Found, Vec<Problem>) {
    let mut segments = plan.segments.clone();
    segments.sort_by_key(|s| s.vaddr);
    let mut found = Found::default();
    let mut problems = Vec::new();
    // The last start marker and the first end marker (PROTOCOL.md "Requests Delimiters").
    for (vaddr, _, rest) in words(image, &segments) {
        if rest.len() >= 32 && (0..4).all(|k| word(rest, k * 8) == START_MARKER[k]) {
            found.markers.0 = Some(vaddr);
        }
        if found.markers.1.is_none()
            && rest.len() >= 16
            && (0..2).all(|k| word(rest, k * 8) == END_MARKER[k])
        {
            found.markers.1 = Some(vaddr);
        }
    }
    let from = found.markers.0.map_or(0, |v| v + 32);
    let to = found.markers.1.unwrap_or(u64::MAX);
    for (vaddr, offset, rest) in words(image, &segments) {
        if vaddr < from || vaddr >= to || rest.len() < 16 {
            continue;
        }
        let magic = [word(rest, 0), word(rest, 8)];
        if magic == BASE_REVISION_MAGIC {
            scan_tag(&mut found, &mut problems, (vaddr, offset, rest));
        } else if magic == COMMON_MAGIC {
            scan_request(&mut found, &mut problems, (vaddr, offset, rest));
        }
    }
    if found.tag.is_none() && !SUPPORTED_REVISIONS.contains(&0) {
        problems.insert(
            0,
            problem(
                "limine base revision",
                format!(
                    "none (base revision 0, deprecated): hvboot boots base revisions {} to {}; \
                     give the kernel a base-revision tag (limine::BaseRevision, \
                     LIMINE_BASE_REVISION)",
                    SUPPORTED_REVISIONS.start(),
                    SUPPORTED_REVISIONS.end()
                ),
            ),
        );
    }
    (found, problems)
}

fn scan_tag(
    found: &mut Found,
    problems: &mut Vec<Problem>,
    (vaddr, offset, rest): (u64, u64, &[u8]),
) {
    let field = "limine base revision";
    if rest.len() < 24 {
        let message = format!(
            "the tag at {vaddr:#x} is cut off by its segment's file end (3 words expected)"
        );
        problems.push(problem(field, message));
        return;
    }
    let revision = word(rest, 16);
    if let Some((first, _, _)) = found.tag {
        let message = format!("two base-revision tags, at {first:#x} and {vaddr:#x}; one expected");
        problems.push(problem(field, message));
        return;
    }
    found.tag = Some((vaddr, offset, revision));
    if !SUPPORTED_REVISIONS.contains(&revision) {
        let message = format!(
            "{revision} (tag at {vaddr:#x}): hvboot boots base revisions {} to {}",
            SUPPORTED_REVISIONS.start(),
            SUPPORTED_REVISIONS.end()
        );
        problems.insert(0, problem(field, message));
    }
}

fn scan_request(
    found: &mut Found,
    problems: &mut Vec<Problem>,
    (vaddr, offset, rest): (u64, u64, &[u8]),
) {
    if rest.len() < 32 {
        let message = format!("its ID at {vaddr:#x} is cut off by its segment's file end");
        problems.push(problem("limine request", message));
        return;
    }
    let id = [word(rest, 16), word(rest, 24)];
    let mut r = Request {
        id,
        revision: 0,
        vaddr,
        offset,
    };
    let field = format!("limine {}", r.describe());
    let extra = KNOWN.iter().find(|k| k.1 == id).map_or(0, |k| k.2);
    let need = REQUEST_HEADER + extra;
    if (rest.len() as u64) < need {
        let message = format!(
            "cut off by its segment's file end: {need} bytes expected, {} there",
            rest.len()
        );
        problems.push(problem(field, message));
        return;
    }
    r.revision = word(rest, 32);
    if let Some(first) = found.requests.iter().find(|q| q.id == id) {
        let message = format!(
            "made twice, at {:#x} and {vaddr:#x}; the protocol allows one of each",
            first.vaddr
        );
        problems.push(problem(field, message));
        return;
    }
    found.requests.push(r);
}

/// The verdict on a Limine kernel: its plan (`None` when the ELF is refused), what the scan
/// found, and every problem (the ELF's, `crate::elf::check`, then the scan's).
pub struct Verdict {
    /// The load plan, when the ELF rules accept the image.
    pub plan: Option<LoadPlan>,
    /// The tag, markers and requests (empty when the ELF is refused).
    pub found: Found,
    /// Every problem, the one the loader stops at first.
    pub problems: Vec<Problem>,
}

/// The whole verdict on `image` (what `hvboot-check` reports).
pub fn verdict(image: &[u8]) -> Verdict {
    let plan = match crate::elf::check(image) {
        Ok(plan) => plan,
        Err(all) => {
            let problems = all
                .iter()
                .map(|e| problem(e.field(), e.message()))
                .collect();
            return Verdict {
                plan: None,
                found: Found::default(),
                problems,
            };
        }
    };
    let (found, mut problems) = scan(image, &plan);
    // PROTOCOL.md "Entry memory layout": at or above -2 GiB, never in the lower half.
    // A relocatable one linked lower is slid there (`LoadPlan::default_slide`).
    if plan.virt_start < LOWEST_VADDR && !plan.relocatable() {
        let message = format!(
            "the image starts at {:#x}; a Limine kernel is linked at or above {LOWEST_VADDR:#x}",
            plan.virt_start
        );
        problems.insert(0, problem("limine image", message));
    }
    Verdict {
        plan: Some(plan),
        found,
        problems,
    }
}

#[cfg(test)]
mod tests;
