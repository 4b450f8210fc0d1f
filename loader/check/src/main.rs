//! `hvboot-check`: the loader core's rules, run on the host for the toolkit.
//!
//! The loader core (`hvboot-loader-core`) is the one authority on what a kernel, its request and
//! a loader config may be. The toolkit (src/hvboot/loader/checker.py) runs this program instead
//! of re-implementing the rules, so `hvboot build` and `hvboot inspect` refuse exactly what the
//! loader refuses, with the loader's words.
//!
//! ```text
//! hvboot-check kernel FILE [CMDLINE]  the kernel's kind, load plan, request and every problem
//!                             (JSON); with CMDLINE, also the rules on the command line it gets
//!                             (a Linux kernel's cmdline_size)
//! hvboot-check config FILE   the loader config (/hvboot/hvboot.cfg) parsed, or its problem
//! hvboot-check esp IMAGE [DIR]  the files of a disk image's EFI system partition, read through
//!                               the core's GPT and FAT reader (the loader's), each written
//!                               below DIR if given
//! ```
//!
//! `FILE` may be `-` for standard input. The verdict is one JSON object on standard output;
//! every problem is `{"field": ..., "message": ...}`, printed by the toolkit and the loader alike
//! as `<file>: <field>: <message>`. Exit status: 0 accepted, 1 refused (the problems are in the
//! JSON), 2 the file could not be read or the command line is wrong (a message on stderr).

mod json;
mod linux;

use std::io::Read;
use std::process::ExitCode;

use hvboot_api::request::REQUEST_SECTION;
use hvboot_api::KernelRequest;
use hvboot_loader_core::bootloader_api::{self, Mapping, CONFIG_SECTION};
use hvboot_loader_core::fat::{self, BlockDevice, Volume};
use hvboot_loader_core::{config, elf, gpt, limine, multiboot2, request};
use json::Json;

const USAGE: &str =
    "usage: hvboot-check kernel FILE [CMDLINE] | config FILE | esp IMAGE [DIR] | pin LOADER   (FILE may be - for stdin)";

fn read(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| format!("<stdin>: cannot read it: {e}"))?;
        return Ok(data);
    }
    std::fs::read(path).map_err(|e| format!("{path}: cannot read it: {e}"))
}

pub(crate) fn problem(field: String, message: String) -> Json {
    Json::object([
        ("field", Json::from(field)),
        ("message", Json::from(message)),
    ])
}

fn segment(s: &elf::Segment) -> Json {
    Json::object([
        ("index", Json::from(s.index as u64)),
        ("vaddr", s.vaddr.into()),
        ("paddr", s.paddr.into()),
        ("memsz", s.memsz.into()),
        ("filesz", s.filesz.into()),
        ("offset", s.offset.into()),
        ("flags", s.flags().into()),
        ("writable", s.writable.into()),
        ("executable", s.executable.into()),
    ])
}

fn plan(p: &elf::LoadPlan) -> Json {
    Json::object([
        ("entry", p.entry.into()),
        ("higher_half", p.higher_half.into()),
        ("virt_start", p.virt_start.into()),
        ("virt_end", p.virt_end.into()),
        ("phys_base", p.phys_base().map_or(Json::Null, Json::from)),
        ("relocatable", p.relocatable().into()),
        ("slide", p.slide().into()),
        (
            "relocations",
            p.relocations.as_ref().map_or(0, |r| r.count).into(),
        ),
        (
            "segments",
            Json::Array(p.segments.iter().map(segment).collect()),
        ),
    ])
}

/// Every field of the request (version 2; a version-1 request reads with `ap_stack_size` 0).
fn kernel_request(r: &KernelRequest) -> Json {
    let g = &r.guest;
    Json::object([
        ("magic", r.magic.into()),
        ("version", u64::from(r.version).into()),
        ("size", u64::from(r.size).into()),
        ("flags", u64::from(r.flags.0).into()),
        ("framebuffer_width", u64::from(r.framebuffer_width).into()),
        ("framebuffer_height", u64::from(r.framebuffer_height).into()),
        ("module_alignment", u64::from(r.module_alignment).into()),
        ("stack_size", r.stack_size.into()),
        ("direct_map_offset", r.direct_map_offset.into()),
        (
            "guest",
            Json::object([
                ("size", g.size.into()),
                ("alignment", g.alignment.into()),
                ("max_address", g.max_address.into()),
                ("fixed_base", g.fixed_base.into()),
            ]),
        ),
        ("ap_stack_size", r.ap_stack_size.into()),
    ])
}

/// The decoded Multiboot2 header (every tag hvboot reads).
fn mb2_header(h: &multiboot2::Header) -> Json {
    let opt = |v: Option<u32>| v.map_or(Json::Null, |v| Json::from(u64::from(v)));
    let requests = h.requests.iter().map(|&(t, optional)| {
        Json::object([
            ("type", Json::from(u64::from(t))),
            ("name", multiboot2::info_name(t).into()),
            ("optional", optional.into()),
        ])
    });
    let address = h.address.map_or(Json::Null, |a| {
        Json::object([
            ("header_addr", Json::from(u64::from(a.header_addr))),
            ("load_addr", u64::from(a.load_addr).into()),
            ("load_end_addr", u64::from(a.load_end_addr).into()),
            ("bss_end_addr", u64::from(a.bss_end_addr).into()),
        ])
    });
    let reloc = h.relocatable.map_or(Json::Null, |r| {
        Json::object([
            ("min_addr", Json::from(u64::from(r.min_addr))),
            ("max_addr", u64::from(r.max_addr).into()),
            ("align", u64::from(r.align).into()),
            ("preference", u64::from(r.preference).into()),
        ])
    });
    let fb = h.framebuffer.map_or(Json::Null, |f| {
        Json::object([
            ("width", Json::from(u64::from(f.width))),
            ("height", u64::from(f.height).into()),
            ("depth", u64::from(f.depth).into()),
        ])
    });
    Json::object([
        ("offset", Json::from(h.offset as u64)),
        ("architecture", u64::from(h.architecture).into()),
        ("header_length", u64::from(h.length).into()),
        ("checksum", u64::from(h.checksum).into()),
        ("information_request", Json::Array(requests.collect())),
        ("address", address),
        ("entry_address", opt(h.entry_addr)),
        ("console_flags", opt(h.console_flags)),
        ("framebuffer", fb),
        ("module_alignment", h.module_align.into()),
        ("efi_boot_services", h.efi_boot_services.into()),
        ("efi_i386_entry", opt(h.efi32_entry)),
        ("efi_amd64_entry", opt(h.efi64_entry)),
        ("relocatable", reloc),
    ])
}

/// A Multiboot2 kernel's plan in the shape of an ELF plan (each piece a segment at its
/// physical address) with the decoded header beside it.
fn mb2_plan(p: &multiboot2::Plan) -> Json {
    let segments = p.pieces.iter().map(|s| {
        Json::object([
            ("index", Json::from(s.segment.unwrap_or(0) as u64)),
            ("vaddr", s.vaddr.into()),
            ("paddr", s.phys.into()),
            ("memsz", s.memsz.into()),
            ("filesz", s.filesz.into()),
            ("offset", s.offset.into()),
            ("flags", "RWX".into()),
            ("writable", true.into()),
            ("executable", true.into()),
        ])
    });
    Json::object([
        ("entry", u64::from(p.entry).into()),
        ("higher_half", false.into()),
        ("virt_start", p.start.into()),
        ("virt_end", p.end.into()),
        ("phys_base", p.start.into()),
        ("segments", Json::Array(segments.collect())),
        (
            "elf_class",
            p.elf_class.map_or(Json::Null, |c| Json::from(u64::from(c))),
        ),
    ])
}

/// The verdict on a Multiboot2 kernel: the decoded header, the plan, every problem.
fn check_multiboot2(data: &[u8]) -> (bool, Json) {
    let (plan, problems) = match multiboot2::check(data) {
        Ok(p) => (mb2_plan(&p), vec![]),
        Err(all) => (
            Json::Null,
            all.into_iter()
                .map(|e| problem(e.field, e.message))
                .collect(),
        ),
    };
    let mut header = vec![];
    if let Some(at) = multiboot2::find(data) {
        // Decoded as far as it goes, refused or not (inspect shows it either way).
        let mut ignored = vec![];
        header.push(mb2_header(&multiboot2::decode(data, at, &mut ignored)));
    }
    let ok = problems.is_empty();
    let doc = Json::object([
        ("size", Json::from(data.len() as u64)),
        ("kind", elf::KernelKind::Multiboot2.name().into()),
        ("ok", ok.into()),
        ("plan", plan),
        ("request", Json::Null),
        ("multiboot2", header.pop().unwrap_or(Json::Null)),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
}

/// What the Limine scan found: the base revision asked for (and the tag's address), the
/// markers, each request with its name (null for one hvboot does not know), ID and revision.
fn limine_found(f: &limine::Found) -> Json {
    let opt = |v: Option<u64>| v.map_or(Json::Null, Json::from);
    let requests = f.requests.iter().map(|r| {
        Json::object([
            ("name", r.name().map_or(Json::Null, Json::from)),
            ("id", Json::Array(vec![r.id[0].into(), r.id[1].into()])),
            ("revision", r.revision.into()),
            ("address", r.vaddr.into()),
        ])
    });
    Json::object([
        ("base_revision", f.base_revision().into()),
        ("tag_address", opt(f.tag.map(|t| t.0))),
        ("start_marker", opt(f.markers.0)),
        ("end_marker", opt(f.markers.1)),
        ("requests", Json::Array(requests.collect())),
    ])
}

/// The verdict on a Limine kernel: the ELF plan, what the scan found, every problem.
fn check_limine(data: &[u8]) -> (bool, Json) {
    let v = limine::verdict(data);
    let problems: Vec<Json> = v
        .problems
        .into_iter()
        .map(|p| problem(p.field, p.message))
        .collect();
    let ok = problems.is_empty();
    let doc = Json::object([
        ("size", Json::from(data.len() as u64)),
        ("kind", elf::KernelKind::Limine.name().into()),
        ("ok", ok.into()),
        (
            "plan",
            v.plan
                .as_ref()
                .map_or(Json::Null, |p| where_it_runs(p, None)),
        ),
        ("request", Json::Null),
        ("multiboot2", Json::Null),
        ("limine", limine_found(&v.found)),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
}

/// A `bootloader_api` mapping: "dynamic" or the fixed address.
fn mapping(m: Mapping) -> Json {
    match m {
        Mapping::Dynamic => "dynamic".into(),
        Mapping::Fixed(a) => a.into(),
    }
}

/// The decoded `.bootloader-config` (every field; `null` = None).
fn bootloader_config(c: &bootloader_api::Config) -> Json {
    let opt = |v: Option<u64>| v.map_or(Json::Null, Json::from);
    let opt_map = |m: Option<Mapping>| m.map_or(Json::Null, mapping);
    Json::object([
        ("api_version", Json::from(c.version.to_string())),
        ("serialized_len", (c.serialized_len as u64).into()),
        ("kernel_stack_size", c.kernel_stack_size.into()),
        ("kernel_stack", mapping(c.kernel_stack)),
        ("kernel_base", mapping(c.kernel_base)),
        ("boot_info", mapping(c.boot_info)),
        ("framebuffer", mapping(c.framebuffer)),
        ("physical_memory", opt_map(c.physical_memory)),
        ("page_table_recursive", opt_map(c.page_table_recursive)),
        ("aslr", c.aslr.into()),
        ("dynamic_range_start", opt(c.dynamic_range_start)),
        ("dynamic_range_end", opt(c.dynamic_range_end)),
        ("ramdisk_memory", mapping(c.ramdisk_memory)),
        ("minimum_framebuffer_height", opt(c.min_framebuffer_height)),
        ("minimum_framebuffer_width", opt(c.min_framebuffer_width)),
    ])
}

/// A `bootloader_api` kernel's config, decoded, and its problems (what cannot be decoded, or
/// what hvboot cannot honour), as the loader's `flow::inputs` refuses them.
/// The config, and the slide it gives the ELF's `plan` (`bootloader_api::kernel_slide`, the
/// loader's rule) when it can.
fn check_bootloader_api(
    data: &[u8],
    plan: Option<&elf::LoadPlan>,
    problems: &mut Vec<Json>,
) -> (Json, Option<u64>) {
    let mut refuse = |p: bootloader_api::Problem| {
        problems.push(problem(format!("{CONFIG_SECTION}: {}", p.field), p.message));
    };
    match bootloader_api::find(data) {
        Ok(Some(c)) => {
            bootloader_api::unsupported(&c)
                .into_iter()
                .for_each(&mut refuse);
            let slide = plan.and_then(|p| {
                bootloader_api::kernel_slide(&c, p)
                    .map_err(&mut refuse)
                    .ok()
            });
            (bootloader_config(&c), slide)
        }
        Ok(None) => (Json::Null, None),
        Err(p) => {
            refuse(p);
            (Json::Null, None)
        }
    }
}

/// A plan where the kernel runs: moved by `slide`, or the protocol's default slide without one.
fn where_it_runs(p: &elf::LoadPlan, slide: Option<u64>) -> Json {
    let slid = p.slid(slide.unwrap_or_else(|| p.default_slide()));
    plan(slid.as_ref().unwrap_or(p))
}

/// The verdict on a kernel: its kind, plan, request and problems (ELF first, then the request).
fn check_kernel(data: &[u8], cmdline: Option<&str>) -> (bool, Json) {
    match elf::kind(data) {
        Some(elf::KernelKind::Multiboot2) => return check_multiboot2(data),
        Some(elf::KernelKind::Linux) => return linux::check(data, cmdline),
        Some(elf::KernelKind::Limine) => return check_limine(data),
        _ => {}
    }
    let mut problems = Vec::new();
    let checked = match elf::check(data) {
        Ok(p) => Some(p),
        Err(all) => {
            problems.extend(all.iter().map(|e| problem(e.field(), e.message())));
            None
        }
    };
    let request = match request::find(data) {
        Ok(r) => r.as_ref().map_or(Json::Null, kernel_request),
        Err(e) => {
            problems.push(problem(format!("{REQUEST_SECTION}: {}", e.field), e.why));
            Json::Null
        }
    };
    let (api, slide) = check_bootloader_api(data, checked.as_ref(), &mut problems);
    let plan = checked
        .as_ref()
        .map_or(Json::Null, |p| where_it_runs(p, slide));
    let ok = problems.is_empty();
    let kind = elf::kind(data).map_or(Json::Null, |k| k.name().into());
    let doc = Json::object([
        ("size", Json::from(data.len() as u64)),
        ("kind", kind),
        ("ok", ok.into()),
        ("plan", plan),
        ("request", request),
        ("multiboot2", Json::Null),
        ("bootloader_api", api),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
}

/// A pinned digest as lower-case hex, null without one.
fn digest_json(d: Option<hvboot_loader_core::digest::Digest>) -> Json {
    d.map_or(Json::Null, |d| Json::from(d.to_string()))
}

/// The verdict on a loader config: parsed, or its problem (the parser stops at the first).
fn check_config(data: &[u8]) -> (bool, Json) {
    let (cfg, problems) = match config::parse_bytes(data) {
        Ok(c) => {
            let modules = c.modules.iter().map(|m| {
                Json::object([
                    ("path", Json::from(m.path.as_str())),
                    ("name", m.name.as_str().into()),
                    ("cmdline", m.cmdline.as_str().into()),
                    ("blake3", digest_json(m.digest)),
                ])
            });
            let cfg = Json::object([
                ("kernel", Json::from(c.kernel.as_str())),
                ("kernel_blake3", digest_json(c.kernel_digest)),
                ("cmdline", c.cmdline.as_str().into()),
                ("tpm", c.tpm.name().into()),
                ("modules", Json::Array(modules.collect())),
            ]);
            (cfg, vec![])
        }
        Err(e) => (Json::Null, vec![problem(e.field(), e.message.clone())]),
    };
    let ok = problems.is_empty();
    let doc = Json::object([
        ("ok", Json::from(ok)),
        ("config", cfg),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
}

/// A disk image in memory, as the loader's block device.
struct Disk<'d>(&'d [u8]);

impl BlockDevice for Disk<'_> {
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let start = lba.checked_mul(fat::SECTOR as u64).map(|s| s as usize);
        match start.and_then(|s| Some(s..s.checked_add(buf.len())?)) {
            Some(r) if r.end <= self.0.len() => {
                buf.copy_from_slice(&self.0[r]);
                Ok(())
            }
            _ => Err(format!("LBA {lba} is past the end of the image")),
        }
    }

    /// The image's size tells where the backup GPT is, as a disk's does for the loader.
    fn sectors(&mut self) -> Option<u64> {
        Some((self.0.len() / fat::SECTOR) as u64)
    }
}

/// Every file below `dir` as (path without a leading `/`, entry), depth first, in directory
/// order; a directory met twice (a loop in a corrupt volume) is an error.
fn walk(
    vol: &mut Volume<Disk<'_>>,
    dir: fat::Entry,
    prefix: &str,
    seen: &mut Vec<u32>,
    out: &mut Vec<(String, fat::Entry)>,
) -> Result<(), String> {
    for (name, entry) in vol.list(&dir).map_err(|e| format!("/{prefix}: {e}"))? {
        let path = format!("{prefix}{name}");
        if entry.is_dir {
            if entry.first_cluster == 0 || seen.contains(&entry.first_cluster) {
                return Err(format!(
                    "/{path}: bad or repeated directory cluster {}",
                    entry.first_cluster
                ));
            }
            seen.push(entry.first_cluster);
            walk(vol, entry, &format!("{path}/"), seen, out)?;
        } else {
            out.push((path, entry));
        }
    }
    Ok(())
}

/// The files of the image's EFI system partition as the loader reads them; with `dir`, each
/// file's bytes are written below it.
fn list_esp(disk: &[u8], dir: Option<&std::path::Path>) -> Result<(u64, Vec<Json>), Json> {
    let bad = |field: &str, e: String| problem(field.into(), e);
    let first_lba = gpt::find_esp(&mut Disk(disk))
        .map_err(|e| bad("GPT", e))?
        .first_lba;
    let mut vol = Volume::mount(Disk(disk), first_lba).map_err(|e| bad("ESP", e))?;
    let mut files = Vec::new();
    let root = vol.root();
    walk(&mut vol, root, "", &mut Vec::new(), &mut files).map_err(|e| bad("ESP", e))?;
    let mut listed = Vec::new();
    for (path, entry) in files {
        if let Some(dir) = dir {
            let mut data = vec![0u8; (entry.size as usize).next_multiple_of(fat::SECTOR)];
            vol.read(&entry, &mut data)
                .map_err(|e| bad("ESP", format!("/{path}: {e}")))?;
            let out = dir.join(&path);
            let written = out
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&out, &data[..entry.size as usize]));
            written.map_err(|e| {
                bad(
                    "ESP",
                    format!("/{path}: cannot write {}: {e}", out.display()),
                )
            })?;
        }
        listed.push(Json::object([
            ("path", Json::from(path)),
            ("size", u64::from(entry.size).into()),
        ]));
    }
    Ok((first_lba, listed))
}

fn check_esp(disk: &[u8], dir: Option<&std::path::Path>) -> (bool, Json) {
    let (first_lba, files, problems) = match list_esp(disk, dir) {
        Ok((lba, files)) => (Json::from(lba), files, vec![]),
        Err(p) => (Json::Null, vec![], vec![p]),
    };
    let ok = problems.is_empty();
    let doc = Json::object([
        ("ok", Json::from(ok)),
        ("first_lba", first_lba),
        ("files", Json::Array(files)),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
}

/// A loader binary's config pin (`hvboot_loader_core::pin`): where its reserved bytes are, the
/// offsets of its fields (the toolkit patches them there) and what it pins.
fn check_pin(data: &[u8]) -> (bool, Json) {
    use hvboot_loader_core::pin::{ConfigPin, DIGEST_OFFSET, MAGIC, PINNED, STATE_OFFSET};
    let found: Vec<usize> = data
        .windows(MAGIC.len())
        .enumerate()
        .filter_map(|(i, w)| (w == MAGIC).then_some(i))
        .collect();
    let size = core::mem::size_of::<ConfigPin>();
    let (at, digest, problems) = match found[..] {
        [at] if at + size <= data.len() => {
            let state = u32::from_le_bytes(data[at + STATE_OFFSET..][..4].try_into().unwrap());
            let digest = (state == PINNED).then(|| {
                let bytes = data[at + DIGEST_OFFSET..][..32].try_into().unwrap();
                hvboot_loader_core::digest::Digest(bytes).to_string()
            });
            (
                Json::from(at as u64),
                digest.map_or(Json::Null, Json::from),
                vec![],
            )
        }
        _ => {
            let why = format!(
                "expected its reserved bytes once, found them {} times",
                found.len()
            );
            (
                Json::Null,
                Json::Null,
                vec![problem("config pin".into(), why)],
            )
        }
    };
    let ok = problems.is_empty();
    let doc = Json::object([
        ("ok", Json::from(ok)),
        ("at", at),
        ("state_offset", Json::from(STATE_OFFSET as u64)),
        ("pinned_state", Json::from(u64::from(PINNED))),
        ("digest_offset", Json::from(DIGEST_OFFSET as u64)),
        ("digest", digest),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, path, extra) = match &args[..] {
        [c, p] => (c.as_str(), p, None),
        [c, p, d] if c == "esp" || c == "kernel" => (c.as_str(), p, Some(d.as_str())),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    type Check<'a> = Box<dyn Fn(&[u8]) -> (bool, Json) + 'a>;
    let check: Check = match command {
        "kernel" => Box::new(move |d| check_kernel(d, extra)),
        "config" => Box::new(check_config),
        "esp" => Box::new(move |d| check_esp(d, extra.map(std::path::Path::new))),
        "pin" => Box::new(check_pin),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let data = match read(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hvboot-check: {e}");
            return ExitCode::from(2);
        }
    };
    let (ok, doc) = check(&data);
    println!("{doc}");
    ExitCode::from(if ok { 0 } else { 1 })
}
