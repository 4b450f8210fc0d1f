//! rust-osdev's `bootloader_api` 0.11 kernels (docs/bootloader-api.md): the serialized
//! `BootloaderConfig` in the kernel's `.bootloader-config` section, decoded for each layout the
//! crate has shipped, and which `BootInfo` layout the kernel's api version reads.
//!
//! Facts from the crate's `config.rs` (`BootloaderConfig::serialize`, read for 0.11.0-0.11.17):
//! a 16-byte UUID, the api version (major, minor, patch as u16 LE, pre-release as a 0/1 byte),
//! the kernel stack size (u64 LE), then the mappings, each a `Mapping` of 9 bytes (0 and eight
//! zero bytes: dynamic; 1 and a u64 LE: a fixed address) or an `Option` of one (a 0/1 byte before
//! it), `aslr` (a 0/1 byte), the dynamic range's start and end (`Option<u64>`: a 0/1 byte and a
//! u64 LE, all zero for None), and the minimum framebuffer height and width (`Option<u64>`).
//! 0.11.1 added `ramdisk_memory` after the dynamic range (115 -> 124 bytes), 0.11.11
//! `kernel_base` after `kernel_stack` (-> 133 bytes).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ::elf::abi;
use ::elf::endian::LittleEndian;
use ::elf::ElfBytes;

/// The section `bootloader_api::entry_point!` writes the config into.
pub const CONFIG_SECTION: &str = ".bootloader-config";
/// `BootloaderConfig::UUID`: the first 16 bytes of every serialized config.
pub const UUID: [u8; 16] = [
    0x74, 0x3C, 0xA9, 0x61, 0x09, 0x36, 0x46, 0xA0, 0xBB, 0x55, 0x5C, 0x15, 0x89, 0x15, 0x25, 0x3D,
];
/// The newest 0.11 patch release whose layouts hvboot knows (a newer one may have grown its
/// `BootInfo`, which hvboot would then write short).
pub const NEWEST_PATCH: u16 = 17;

/// Where a dynamic `ramdisk_memory` mapping goes: 4 KiB pages of its own (as rust-osdev's
/// loader maps it), below hvboot's stack region and far above its direct map.
pub const RAMDISK_WINDOW: u64 = 0xffff_fd00_0000_0000;

/// A dynamic physical-memory mapping's place when the kernel is linked in the 64 TiB at hvboot's
/// default direct-map offset.
pub const SECOND_PHYS_OFFSET: u64 = 0xffff_c000_0000_0000;

/// A virtual mapping the kernel asks for (`bootloader_api::config::Mapping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Wherever the loader likes.
    Dynamic,
    /// At this virtual address.
    Fixed(u64),
}

/// The kernel's api version (`ApiVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    /// Major (0).
    pub major: u16,
    /// Minor (11).
    pub minor: u16,
    /// Patch (0-17).
    pub patch: u16,
    /// A pre-release of that version.
    pub pre_release: bool,
}

impl core::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let pre = if self.pre_release { "-pre" } else { "" };
        write!(f, "{}.{}.{}{pre}", self.major, self.minor, self.patch)
    }
}

/// Which `BootInfo` the kernel's api version reads (the crate's `info.rs`): fields were only
/// ever appended before `_test_sentinel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InfoLayout {
    /// 0.11.0: up to `tls_template`, no sentinel.
    V0_11_0,
    /// 0.11.1-0.11.4: `ramdisk_addr`, `ramdisk_len`, then `_test_sentinel`.
    V0_11_1,
    /// 0.11.5-0.11.13: `kernel_addr`, `kernel_len`, `kernel_image_offset`.
    V0_11_5,
    /// 0.11.14-0.11.17: `kernel_stack_bottom`, `kernel_stack_len`.
    V0_11_14,
}

impl InfoLayout {
    /// The layout of a 0.11 patch release.
    pub fn of(patch: u16) -> Self {
        match patch {
            0 => Self::V0_11_0,
            1..=4 => Self::V0_11_1,
            5..=13 => Self::V0_11_5,
            _ => Self::V0_11_14,
        }
    }
}

/// The decoded `BootloaderConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The api version the kernel was built against.
    pub version: ApiVersion,
    /// The serialized length (115, 124 or 133 bytes).
    pub serialized_len: usize,
    /// Bytes of kernel stack.
    pub kernel_stack_size: u64,
    /// `mappings.kernel_stack`.
    pub kernel_stack: Mapping,
    /// `mappings.kernel_base` (0.11.11 on; dynamic before).
    pub kernel_base: Mapping,
    /// `mappings.boot_info`.
    pub boot_info: Mapping,
    /// `mappings.framebuffer`.
    pub framebuffer: Mapping,
    /// `mappings.physical_memory`: None = not asked for.
    pub physical_memory: Option<Mapping>,
    /// `mappings.page_table_recursive`: None = not asked for.
    pub page_table_recursive: Option<Mapping>,
    /// `mappings.aslr`.
    pub aslr: bool,
    /// `mappings.dynamic_range_start`.
    pub dynamic_range_start: Option<u64>,
    /// `mappings.dynamic_range_end`.
    pub dynamic_range_end: Option<u64>,
    /// `mappings.ramdisk_memory` (0.11.1 on; dynamic before).
    pub ramdisk_memory: Mapping,
    /// `frame_buffer.minimum_framebuffer_height`.
    pub min_framebuffer_height: Option<u64>,
    /// `frame_buffer.minimum_framebuffer_width`.
    pub min_framebuffer_width: Option<u64>,
}

impl Config {
    /// The `BootInfo` layout the kernel reads.
    pub fn info_layout(&self) -> InfoLayout {
        InfoLayout::of(self.version.patch)
    }
}

/// What is wrong with a config: the field (as the crate names it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `version`, `mappings.kernel_stack`, ... or `section` for the section as a whole.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl core::fmt::Display for Problem {
    /// As `hvboot-check` prints it after the file: `.bootloader-config: <field>: <message>`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{CONFIG_SECTION}: {}: {}", self.field, self.message)
    }
}

impl Problem {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: String::from(field),
            message: message.into(),
        }
    }
}

/// The serialized length of a 0.11 patch release's config.
fn serialized_len(patch: u16) -> usize {
    match patch {
        0 => 115,
        1..=10 => 124,
        _ => 133,
    }
}

/// A cursor over the section's bytes; its callers check the length first.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        out
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    fn flag(&mut self, field: &str) -> Result<bool, Problem> {
        match self.take::<1>()[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Problem::new(field, format!("is {b}, expected 0 or 1"))),
        }
    }

    /// An `Option<u64>`: a 0/1 byte, then the value (all zero for None).
    fn option_u64(&mut self, field: &str) -> Result<Option<u64>, Problem> {
        let some = self.take::<1>()[0];
        let value = self.u64();
        match (some, value) {
            (0, 0) => Ok(None),
            (1, v) => Ok(Some(v)),
            (0, v) => Err(Problem::new(
                field,
                format!("says None but carries {v:#x}, expected zero bytes after the 0"),
            )),
            (b, _) => Err(Problem::new(
                field,
                format!("option byte is {b}, expected 0 (None) or 1 (Some)"),
            )),
        }
    }

    /// A `Mapping`: 0 + zeros (dynamic) or 1 + a u64 LE (fixed).
    fn mapping(&mut self, field: &str) -> Result<Mapping, Problem> {
        let some = self.option_u64(field).map_err(|p| {
            Problem::new(
                field,
                p.message
                    .replace("None", "Dynamic")
                    .replace("Some", "FixedAddress"),
            )
        })?;
        Ok(some.map_or(Mapping::Dynamic, Mapping::Fixed))
    }

    /// An `Option<Mapping>`: a 0/1 byte, then a mapping (all zero for None).
    fn option_mapping(&mut self, field: &str) -> Result<Option<Mapping>, Problem> {
        let some = self.take::<1>()[0];
        let raw: [u8; 9] = self.bytes[self.at..self.at + 9]
            .try_into()
            .unwrap_or([0; 9]);
        match some {
            0 if raw == [0; 9] => {
                self.at += 9;
                Ok(None)
            }
            1 => self.mapping(field).map(Some),
            0 => Err(Problem::new(
                field,
                "says None but carries a mapping, expected zero bytes after the 0",
            )),
            b => Err(Problem::new(
                field,
                format!("option byte is {b}, expected 0 (None) or 1 (Some)"),
            )),
        }
    }
}

/// Decodes the section's bytes: every layout 0.11.0-0.11.17 wrote. A version other than those
/// is refused by name, so the loader never writes a `BootInfo` the kernel reads differently.
pub fn decode(bytes: &[u8]) -> Result<Config, Problem> {
    if bytes.len() < 23 {
        return Err(Problem::new(
            "section",
            format!(
                "is {} bytes, too short for the UUID and the api version (23 bytes)",
                bytes.len()
            ),
        ));
    }
    let mut r = Reader { bytes, at: 0 };
    if r.take::<16>() != UUID {
        return Err(Problem::new(
            "uuid",
            "is not bootloader_api's BootloaderConfig UUID 743ca961-0936-46a0-bb55-5c158915253d",
        ));
    }
    let (major, minor, patch) = (
        u16::from_le_bytes(r.take()),
        u16::from_le_bytes(r.take()),
        u16::from_le_bytes(r.take()),
    );
    let pre_release = r.flag("version.pre_release")?;
    let version = ApiVersion {
        major,
        minor,
        patch,
        pre_release,
    };
    if major != 0 || minor != 11 || patch > NEWEST_PATCH {
        return Err(Problem::new(
            "version",
            format!(
                "bootloader_api {version} is not supported: hvboot reads the configs of 0.11.0 to \
                 0.11.{NEWEST_PATCH}"
            ),
        ));
    }
    let len = serialized_len(patch);
    if bytes.len() != len {
        return Err(Problem::new(
            "section",
            format!(
                "is {} bytes, expected {len} (the config of bootloader_api {version})",
                bytes.len()
            ),
        ));
    }
    let kernel_stack_size = r.u64();
    let kernel_stack = r.mapping("mappings.kernel_stack")?;
    let kernel_base = if patch >= 11 {
        r.mapping("mappings.kernel_base")?
    } else {
        Mapping::Dynamic
    };
    let boot_info = r.mapping("mappings.boot_info")?;
    let framebuffer = r.mapping("mappings.framebuffer")?;
    let physical_memory = r.option_mapping("mappings.physical_memory")?;
    let page_table_recursive = r.option_mapping("mappings.page_table_recursive")?;
    let aslr = r.flag("mappings.aslr")?;
    let dynamic_range_start = r.option_u64("mappings.dynamic_range_start")?;
    let dynamic_range_end = r.option_u64("mappings.dynamic_range_end")?;
    let ramdisk_memory = if patch >= 1 {
        r.mapping("mappings.ramdisk_memory")?
    } else {
        Mapping::Dynamic
    };
    let min_framebuffer_height = r.option_u64("frame_buffer.minimum_framebuffer_height")?;
    let min_framebuffer_width = r.option_u64("frame_buffer.minimum_framebuffer_width")?;
    Ok(Config {
        version,
        serialized_len: len,
        kernel_stack_size,
        kernel_stack,
        kernel_base,
        boot_info,
        framebuffer,
        physical_memory,
        page_table_recursive,
        aslr,
        dynamic_range_start,
        dynamic_range_end,
        ramdisk_memory,
        min_framebuffer_height,
        min_framebuffer_width,
    })
}

/// The section's file bytes, None without one (or without readable section headers).
fn section(image: &[u8]) -> Option<Result<&[u8], Problem>> {
    crate::elf::section_bytes(image, CONFIG_SECTION)
        .map(|r| r.map_err(|why| Problem::new("section", why)))
}

/// Whether `image` is a `bootloader_api` kernel: an ELF with a `.bootloader-config` section.
pub fn is_bootloader_api(image: &[u8]) -> bool {
    section(image).is_some()
}

/// The kernel's config, None when it has no `.bootloader-config` section.
pub fn find(image: &[u8]) -> Result<Option<Config>, Problem> {
    match section(image) {
        None => Ok(None),
        Some(bytes) => decode(bytes?).map(Some),
    }
}

/// The kernel's TLS template (its `PT_TLS` program header: virtual start, file size, memory
/// size), None without one or with an empty one (a linker script that lists a `PT_TLS` makes
/// it even when the kernel has no thread-local data, as tests/kernels/bootapi/build.rs's does).
pub fn tls_template(image: &[u8]) -> Option<(u64, u64, u64)> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(image).ok()?;
    let tls = file
        .segments()?
        .iter()
        .find(|p| p.p_type == abi::PT_TLS && p.p_memsz > 0)?;
    Some((tls.p_vaddr, tls.p_filesz, tls.p_memsz))
}

/// Where a kernel with this config runs: the slide of its `plan` (`elf::LoadPlan::slid`), as
/// rust-osdev's loader chooses it (its load_kernel.rs): `kernel_base: FixedAddress(a)` moves a
/// position-independent kernel by `a` (its link addresses plus `a`) and is refused for a
/// fixed-address (ET_EXEC) one, which runs where it is linked; `Dynamic` is hvboot's default
/// slide (`LoadPlan::default_slide`; rust-osdev's loader takes the first free 512 GiB slot).
/// The loader and `hvboot-check` both ask it.
pub fn kernel_slide(c: &Config, plan: &crate::elf::LoadPlan) -> Result<u64, Problem> {
    let Mapping::Fixed(a) = c.kernel_base else {
        return Ok(plan.default_slide());
    };
    let field = "mappings.kernel_base";
    let why = if !plan.relocatable() {
        "only a position-independent (ET_DYN) kernel can be moved; this one is a fixed-address \
         ET_EXEC, which runs where it is linked: use Mapping::Dynamic or build it as a PIE"
    } else if a % crate::PAGE_SIZE != 0 {
        "the address is not 4 KiB-aligned"
    } else if plan.slid(a).is_none() {
        "the image moved there would not lie in one canonical half of the address space"
    } else {
        return Ok(a);
    };
    Err(Problem::new(
        field,
        format!("FixedAddress({a:#x}) is not supported: {why}"),
    ))
}

/// What hvboot cannot honour in a config it decoded, each by its field: the loader refuses
/// such a kernel before it is placed, and `hvboot build` refuses it in the same words.
pub fn unsupported(c: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let fixed = |m: Mapping, field: &str, out: &mut Vec<Problem>, why: &str| {
        if let Mapping::Fixed(a) = m {
            out.push(Problem::new(
                field,
                format!("FixedAddress({a:#x}) is not supported: {why}"),
            ));
        }
    };
    fixed(
        c.boot_info,
        "mappings.boot_info",
        &mut out,
        "hvboot places the BootInfo in the physical-memory mapping; use Mapping::Dynamic",
    );
    fixed(
        c.framebuffer,
        "mappings.framebuffer",
        &mut out,
        "hvboot reaches the framebuffer through the physical-memory mapping; use Mapping::Dynamic",
    );
    if c.page_table_recursive.is_some() {
        out.push(Problem::new(
            "mappings.page_table_recursive",
            "a recursive page-table entry is not supported: hvboot maps all physical memory \
             instead; set mappings.physical_memory and walk the tables through it",
        ));
    }
    for (m, field) in [
        (c.kernel_stack, "mappings.kernel_stack"),
        (c.ramdisk_memory, "mappings.ramdisk_memory"),
    ] {
        if let Mapping::Fixed(a) = m {
            if a % crate::PAGE_SIZE != 0 {
                out.push(Problem::new(
                    field,
                    format!("FixedAddress({a:#x}) is not 4 KiB-aligned"),
                ));
            }
        }
    }
    if let Some(Mapping::Fixed(a)) = c.physical_memory {
        if a % (1 << 30) != 0 {
            out.push(Problem::new(
                "mappings.physical_memory",
                format!("FixedAddress({a:#x}) is not 1 GiB-aligned, as hvboot's physical-memory mapping must be"),
            ));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A config as `BootloaderConfig::serialize` writes it for `patch`, with a fixed
    /// physical-memory offset and stack size.
    pub(crate) fn serialized(patch: u16, phys: Option<u64>, stack: u64) -> Vec<u8> {
        let mut b = Vec::from(UUID);
        for v in [0u16, 11, patch] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(0);
        b.extend_from_slice(&stack.to_le_bytes());
        let dynamic = [0u8; 9];
        b.extend_from_slice(&dynamic); // kernel_stack
        if patch >= 11 {
            b.extend_from_slice(&dynamic); // kernel_base
        }
        b.extend_from_slice(&dynamic); // boot_info
        b.extend_from_slice(&dynamic); // framebuffer
        match phys {
            Some(a) => {
                b.extend_from_slice(&[1, 1]);
                b.extend_from_slice(&a.to_le_bytes());
            }
            None => b.extend_from_slice(&[0; 10]),
        }
        b.extend_from_slice(&[0; 10]); // page_table_recursive
        b.push(0); // aslr
        b.extend_from_slice(&[0; 18]); // dynamic range
        if patch >= 1 {
            b.extend_from_slice(&dynamic); // ramdisk_memory
        }
        b.extend_from_slice(&[0; 18]); // minimum framebuffer height, width
        b
    }

    #[test]
    fn every_layout_decodes() {
        for (patch, len) in [(0, 115), (4, 124), (10, 124), (11, 133), (17, 133)] {
            let bytes = serialized(patch, Some(0x10_0000_0000), 0x8000);
            assert_eq!(bytes.len(), len, "0.11.{patch}");
            let c = decode(&bytes).unwrap();
            assert_eq!(c.version.patch, patch);
            assert_eq!(c.serialized_len, len);
            assert_eq!(c.kernel_stack_size, 0x8000);
            assert_eq!(c.physical_memory, Some(Mapping::Fixed(0x10_0000_0000)));
            assert_eq!(c.page_table_recursive, None);
            assert!(unsupported(&c).is_empty());
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let mut b = serialized(17, None, 0x8000);
        b[20] = 18;
        let p = decode(&b).unwrap_err();
        assert_eq!(p.field, "version");
        assert!(
            p.message
                .starts_with("bootloader_api 0.11.18 is not supported"),
            "{}",
            p.message
        );
        let b = serialized(10, None, 0x8000);
        let mut wrong = b.clone();
        wrong[20] = 11; // a 0.11.11 version on a 124-byte config
        assert_eq!(decode(&wrong).unwrap_err().field, "section");
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad).unwrap_err().field, "uuid");
        let mut bad = b.clone();
        bad[31] = 2; // kernel_stack's variant byte
        let p = decode(&bad).unwrap_err();
        assert_eq!(p.field, "mappings.kernel_stack");
        assert!(
            p.message
                .contains("expected 0 (Dynamic) or 1 (FixedAddress)"),
            "{}",
            p.message
        );
        let mut rec = b.clone();
        rec[68] = 1; // page_table_recursive: Some(Dynamic)
        let c = decode(&rec).unwrap();
        assert_eq!(c.page_table_recursive, Some(Mapping::Dynamic));
        assert_eq!(unsupported(&c)[0].field, "mappings.page_table_recursive");
        assert_eq!(decode(&b[..10]).unwrap_err().field, "section");
    }

    /// A seeded mutator over every layout (stable's stand-in for the `bootloader_config` fuzz
    /// target): `decode` never panics, and what it accepts has its length and a known version.
    /// `BOOTAPI_MUTATIONS=1000000 cargo test` for a longer run.
    #[test]
    fn mutated_configs_never_panic() {
        let runs: u64 = option_env!("BOOTAPI_MUTATIONS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: Vec<Vec<u8>> = [0, 5, 10, 11, 17]
            .iter()
            .map(|&p| serialized(p, Some(0x4000_0000_0000), 0x8000))
            .collect();
        let mut accepted = 0;
        for i in 0..runs {
            let mut b = seeds[(i % 5) as usize].clone();
            for _ in 0..=(next() % 4) {
                let at = (next() % b.len() as u64) as usize;
                match next() % 4 {
                    0 => b[at] = next() as u8,
                    1 => b[at] ^= 1 << (next() % 8),
                    2 => b.truncate(at),
                    _ => b.insert(at, next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            if let Ok(c) = decode(&b) {
                assert_eq!(c.serialized_len, b.len());
                assert!(c.version.patch <= NEWEST_PATCH);
                let _ = unsupported(&c);
                accepted += 1;
            }
        }
        assert!(accepted > 0, "no mutation decoded: the seeds are wrong");
    }

    #[test]
    fn kernel_base_moves_position_independent_kernels_only() {
        use crate::testing::elf::{build, load, pie, KBASE, PF_R, PF_X};
        let mut c = decode(&serialized(17, None, 0x8000)).unwrap();
        let fixed = crate::elf::plan(&build(KBASE, &[load(PF_R | PF_X, 0x1000, KBASE, 16, 16)]));
        let (fixed, pie) = (fixed.unwrap(), crate::elf::plan(&pie(&[], &[])).unwrap());
        assert_eq!(kernel_slide(&c, &fixed), Ok(0));
        assert_eq!(kernel_slide(&c, &pie), Ok(pie.default_slide()));
        c.kernel_base = Mapping::Fixed(0x1987_6543_0000);
        // rust-osdev's fixed_kernel_address: the link addresses plus the address.
        assert_eq!(kernel_slide(&c, &pie), Ok(0x1987_6543_0000));
        let p = kernel_slide(&c, &fixed).unwrap_err();
        assert_eq!(p.field, "mappings.kernel_base");
        assert!(p.message.starts_with(
            "FixedAddress(0x198765430000) is not supported: only a position-independent (ET_DYN)"
        ));
        c.kernel_base = Mapping::Fixed(0x1987_6543_0010);
        assert!(kernel_slide(&c, &pie)
            .unwrap_err()
            .message
            .ends_with("not 4 KiB-aligned"));
        c.kernel_base = Mapping::Fixed(0x7fff_ffff_f000);
        let p = kernel_slide(&c, &pie).unwrap_err();
        assert!(
            p.message
                .ends_with("one canonical half of the address space"),
            "{}",
            p.message
        );
    }

    #[test]
    fn info_layouts_follow_the_patch_release() {
        assert_eq!(InfoLayout::of(0), InfoLayout::V0_11_0);
        assert_eq!(InfoLayout::of(3), InfoLayout::V0_11_1);
        assert_eq!(InfoLayout::of(13), InfoLayout::V0_11_5);
        assert_eq!(InfoLayout::of(14), InfoLayout::V0_11_14);
    }
}
