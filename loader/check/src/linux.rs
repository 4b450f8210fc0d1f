//! `hvboot-check kernel` on a Linux bzImage: the decoded setup header, the plan in the shape of
//! an ELF plan (the protected-mode kernel as one segment at `pref_address`, entered at its
//! 64-bit entry) and every problem (`hvboot_loader_core::linux`).

use hvboot_loader_core::{elf, linux};

use crate::json::Json;
use crate::problem;

/// The setup header fields the core reads, refused or not (`hvboot inspect` shows them).
fn header(h: &linux::SetupHeader) -> Json {
    Json::object([
        (
            "version",
            format!("{}.{:02}", h.version >> 8, h.version & 0xff).into(),
        ),
        ("setup_sects", u64::from(h.setup_sects).into()),
        ("boot_flag", u64::from(h.boot_flag).into()),
        ("loadflags", u64::from(h.loadflags).into()),
        ("xloadflags", u64::from(h.xloadflags).into()),
        ("code32_start", u64::from(h.code32_start).into()),
        ("initrd_addr_max", u64::from(h.initrd_addr_max).into()),
        ("kernel_alignment", u64::from(h.kernel_alignment).into()),
        ("relocatable_kernel", h.relocatable_kernel.into()),
        ("cmdline_size", u64::from(h.cmdline_size).into()),
        ("pref_address", h.pref_address.into()),
        ("init_size", u64::from(h.init_size).into()),
    ])
}

fn plan(p: &linux::Plan) -> Json {
    let segment = Json::object([
        ("index", Json::from(0u64)),
        ("vaddr", p.load.into()),
        ("paddr", p.load.into()),
        ("memsz", p.memsz.into()),
        ("filesz", p.filesz.into()),
        ("offset", p.offset.into()),
        ("flags", "RWX".into()),
        ("writable", true.into()),
        ("executable", true.into()),
    ]);
    Json::object([
        ("entry", (p.load + linux::ENTRY_64).into()),
        ("higher_half", false.into()),
        ("virt_start", p.load.into()),
        ("virt_end", (p.load + p.memsz).into()),
        ("phys_base", p.load.into()),
        ("segments", Json::Array(vec![segment])),
        ("elf_class", Json::Null),
    ])
}

/// The verdict on a bzImage, and on the command line it is to be given when there is one.
pub fn check(data: &[u8], cmdline: Option<&str>) -> (bool, Json) {
    let (plan, problems) = match linux::check(data) {
        Ok(p) => match cmdline.map(|c| linux::check_cmdline(&p.header, c)) {
            Some(Err(e)) => (plan(&p), vec![problem(e.field, e.message)]),
            _ => (plan(&p), vec![]),
        },
        Err(all) => (
            Json::Null,
            all.into_iter()
                .map(|e| problem(e.field, e.message))
                .collect(),
        ),
    };
    let ok = problems.is_empty();
    let doc = Json::object([
        ("size", Json::from(data.len() as u64)),
        ("kind", elf::KernelKind::Linux.name().into()),
        ("ok", ok.into()),
        ("plan", plan),
        ("request", Json::Null),
        ("multiboot2", Json::Null),
        ("linux", header(&linux::decode(data))),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
}
