//! Linux bzImage kernels (the Linux x86 boot protocol, Documentation/arch/x86/boot.rst): the
//! setup header's rules and the load plan.
//!
//! The one rule set for such kernels (docs/loader.md, "One rule set"): the loader's flow and
//! `hvboot-check` both call [`check`]. Every offset is bounds-checked (fuzz target `bzimage`).
//! The protected-mode kernel (the file after the real-mode setup, boot.rst "LOADING THE REST OF
//! THE KERNEL") is loaded at `pref_address`, or elsewhere at `kernel_alignment` when it is
//! relocatable, with `init_size` bytes of room, and entered at its 64-bit entry (load address +
//! 0x200, boot.rst "64-bit BOOT PROTOCOL"): hvboot requires protocol 2.12 and `XLF_KERNEL_64`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The setup header's magic "HdrS" at 0x202 (boot.rst "THE REAL-MODE KERNEL HEADER").
pub const HEADER_MAGIC: &[u8; 4] = b"HdrS";
/// The lowest protocol version hvboot boots: 2.12 (Linux 3.8) has `xloadflags` and
/// `XLF_CAN_BE_LOADED_ABOVE_4G`, which the 64-bit entry and the ext_ fields rely on.
pub const MIN_VERSION: u16 = 0x020c;
/// Where the setup header starts in the file and in boot_params (the "zero page").
pub const HEADER_START: usize = 0x1f1;
/// The last byte of the header fields hvboot reads (`init_size`, 0x260..0x264, protocol 2.10).
const HEADER_READ_END: usize = 0x264;
/// `loadflags` bit 0: the protected-mode kernel runs at 0x100000 or above (a bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags` bit 0: the kernel has the 64-bit entry at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit 1: kernel, boot_params, command line and initrd may lie above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// Offset of the 64-bit entry from the protected-mode kernel's start.
pub const ENTRY_64: u64 = 0x200;
/// The lowest address the protected-mode kernel is loaded at (boot.rst: "0x100000").
pub const MIN_LOAD: u64 = 0x10_0000;

/// The setup header fields hvboot reads (boot.rst "THE REAL-MODE KERNEL HEADER"), decoded
/// from whatever the file holds (`hvboot inspect` shows it even when refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetupHeader {
    /// 0x1f1: sectors of real-mode setup after the boot sector (0 means 4).
    pub setup_sects: u8,
    /// 0x1fe: 0xAA55.
    pub boot_flag: u16,
    /// 0x206: the protocol version (major << 8 | minor).
    pub version: u16,
    /// 0x211: LOADED_HIGH, KASLR_FLAG, QUIET_FLAG, KEEP_SEGMENTS, CAN_USE_HEAP.
    pub loadflags: u8,
    /// 0x214: the 32-bit entry's default address.
    pub code32_start: u32,
    /// 0x22c: the highest address the initrd's last byte may have.
    pub initrd_addr_max: u32,
    /// 0x230: the alignment a relocatable kernel needs.
    pub kernel_alignment: u32,
    /// 0x234: whether the kernel may be loaded elsewhere than `pref_address`.
    pub relocatable_kernel: bool,
    /// 0x236: XLF_KERNEL_64, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_EFI_HANDOVER_*, ...
    pub xloadflags: u16,
    /// 0x238: the longest command line (bytes, without the terminator).
    pub cmdline_size: u32,
    /// 0x258: where the kernel would like to be loaded.
    pub pref_address: u64,
    /// 0x260: the linear memory the kernel needs from its load address (decompression room).
    pub init_size: u32,
    /// Bytes of the header to copy into boot_params from 0x1f1 (0x202 + the byte at 0x201).
    pub header_len: usize,
}

impl SetupHeader {
    /// Bytes of the real-mode setup (boot sector included), where the protected-mode kernel
    /// starts in the file.
    pub fn setup_bytes(&self) -> u64 {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        (u64::from(sects) + 1) * 512
    }
}

/// Where and how a bzImage's protected-mode kernel is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The decoded setup header.
    pub header: SetupHeader,
    /// Where the protected-mode kernel starts in the file.
    pub offset: u64,
    /// Its bytes in the file.
    pub filesz: u64,
    /// The room it needs from its load address: `init_size`, at least `filesz`.
    pub memsz: u64,
    /// The load address it prefers (`pref_address`).
    pub load: u64,
    /// The alignment a relocated kernel needs; None when it is not relocatable.
    pub align: Option<u64>,
}

/// One refused field of a bzImage: a field and a message, the shape every kernel rule set reports.
pub use crate::multiboot2::Problem;

fn problem(field: &str, message: String) -> Problem {
    Problem {
        field: format!("setup header {field}"),
        message,
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

/// Whether `image` is a bzImage: "HdrS" at 0x202 (any version; [`check`] refuses old ones).
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(0x202..0x206) == Some(HEADER_MAGIC.as_slice())
}

/// The setup header as the file has it (fields past the file's end read as 0).
pub fn decode(image: &[u8]) -> SetupHeader {
    SetupHeader {
        setup_sects: image.get(0x1f1).copied().unwrap_or(0),
        boot_flag: u16_at(image, 0x1fe),
        version: u16_at(image, 0x206),
        loadflags: image.get(0x211).copied().unwrap_or(0),
        code32_start: u32_at(image, 0x214),
        initrd_addr_max: u32_at(image, 0x22c),
        kernel_alignment: u32_at(image, 0x230),
        relocatable_kernel: image.get(0x234).is_some_and(|&b| b != 0),
        xloadflags: u16_at(image, 0x236),
        cmdline_size: u32_at(image, 0x238),
        pref_address: u64_at(image, 0x258),
        init_size: u32_at(image, 0x260),
        header_len: 0x202 + usize::from(image.get(0x201).copied().unwrap_or(0)) - HEADER_START,
    }
}

/// The plan, or every problem (each with its field). Not a bzImage at all is one problem.
pub fn check(image: &[u8]) -> Result<Plan, Vec<Problem>> {
    if !is_bzimage(image) {
        return Err(alloc::vec![problem(
            "header",
            "no \"HdrS\" at offset 0x202: not a Linux bzImage".into()
        )]);
    }
    let h = decode(image);
    let v = |v: u16| format!("{}.{:02}", v >> 8, v & 0xff);
    if h.version < MIN_VERSION {
        // Older headers lack the fields the rest checks: stop here.
        return Err(alloc::vec![problem(
            "version",
            format!(
                "boot protocol {}, expected {} or later (Linux 3.8+)",
                v(h.version),
                v(MIN_VERSION)
            )
        )]);
    }
    let mut out = Vec::new();
    let mut bad = |field: &str, message: String| out.push(problem(field, message));
    if image.len() < HEADER_READ_END {
        bad(
            "length",
            format!(
                "the file is {} bytes, shorter than the setup header ({HEADER_READ_END:#x})",
                image.len()
            ),
        );
    }
    if HEADER_START + h.header_len > 0x400 || HEADER_START + h.header_len < HEADER_READ_END {
        bad(
            "jump",
            format!(
                "the header ends at {:#x}, expected from {HEADER_READ_END:#x} to 0x400",
                HEADER_START + h.header_len
            ),
        );
    }
    if h.boot_flag != 0xaa55 {
        bad(
            "boot_flag",
            format!("{:#06x}, expected 0xaa55", h.boot_flag),
        );
    }
    if h.loadflags & LOADED_HIGH == 0 {
        bad(
            "loadflags",
            format!(
                "{:#04x} without LOADED_HIGH: a zImage, expected a bzImage",
                h.loadflags
            ),
        );
    }
    if h.xloadflags & XLF_KERNEL_64 == 0 {
        bad(
            "xloadflags",
            format!(
                "{:#06x} without XLF_KERNEL_64: hvboot enters Linux at its 64-bit entry",
                h.xloadflags
            ),
        );
    }
    let offset = h.setup_bytes();
    let filesz = (image.len() as u64).saturating_sub(offset);
    if filesz <= ENTRY_64 {
        bad(
            "setup_sects",
            format!(
                "{} sectors of setup leave {filesz} bytes of protected-mode kernel in a file of {} \
                 bytes, expected more than {ENTRY_64:#x}",
                h.setup_sects,
                image.len()
            ),
        );
    }
    let align = u64::from(h.kernel_alignment);
    if h.relocatable_kernel && !align.is_power_of_two() {
        bad(
            "kernel_alignment",
            format!("{align:#x}, expected a power of two"),
        );
    }
    let memsz = u64::from(h.init_size).max(filesz);
    if h.pref_address < MIN_LOAD || h.pref_address.checked_add(memsz).is_none() {
        bad(
            "pref_address",
            format!(
                "{:#x} with {memsz:#x} bytes, expected at least {MIN_LOAD:#x}",
                h.pref_address
            ),
        );
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(Plan {
        header: h,
        offset,
        filesz,
        memsz,
        load: h.pref_address,
        align: h.relocatable_kernel.then_some(align),
    })
}

/// The command line's rule (boot.rst, field `cmdline_size`): at most `cmdline_size` bytes, the
/// terminator not counted; the kernel would cut a longer one.
pub fn check_cmdline(h: &SetupHeader, cmdline: &str) -> Result<(), Problem> {
    let len = cmdline.len();
    if len <= h.cmdline_size as usize {
        return Ok(());
    }
    let message = format!(
        "the command line is {len} bytes, the kernel takes at most {}",
        h.cmdline_size
    );
    Err(problem("cmdline_size", message))
}

/// The first problem [`check`] finds: what the loader refuses the kernel for.
pub fn plan(image: &[u8]) -> Result<Plan, Problem> {
    check(image).map_err(|mut all| all.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::linux::bzimage;

    #[test]
    fn plan_of_a_good_header() {
        let p = plan(&bzimage()).unwrap();
        assert_eq!((p.offset, p.filesz, p.memsz), (0x1000, 0x1000, 0x40_0000));
        assert_eq!((p.load, p.align), (0x100_0000, Some(2 << 20)));
        assert_eq!(p.header.header_len, 0x26c - HEADER_START);
    }

    #[test]
    fn old_protocol_is_refused_by_version() {
        let mut b = bzimage();
        b[0x206..0x208].copy_from_slice(&0x020bu16.to_le_bytes());
        let e = plan(&b).unwrap_err();
        assert_eq!(e.field, "setup header version");
        assert!(e.message.contains("2.11, expected 2.12"), "{}", e.message);
    }

    #[test]
    fn every_problem_is_listed() {
        let mut b = bzimage();
        b[0x1fe] = 0;
        b[0x236] = 0;
        b[0x230] = 3;
        let fields: Vec<_> = check(&b)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "setup header boot_flag",
                "setup header xloadflags",
                "setup header kernel_alignment"
            ]
        );
    }

    #[test]
    fn mutated_headers_never_panic() {
        let base = bzimage();
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = 0x1f0 + (rng as usize >> 8) % 0x80;
                b[at] = rng as u8;
            }
            b.truncate(((rng >> 40) as usize % b.len()).max(0x200));
            if let Err(all) = check(&b) {
                assert_eq!(plan(&b).unwrap_err(), all[0]);
            }
        }
    }
}
