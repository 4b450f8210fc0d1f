//! `hvboot-check`: the loader core's rules, run on the host for the toolkit.
//!
//! The loader core (`hvboot-loader-core`) is the one authority on what a kernel, its request and
//! a loader config may be. The toolkit (src/hvboot/loader/checker.py) runs this program instead
//! of re-implementing the rules, so `hvboot build` and `hvboot inspect` refuse exactly what the
//! loader refuses, with the loader's words.
//!
//! ```text
//! hvboot-check kernel FILE   the kernel's kind, load plan, request and every problem (JSON)
//! hvboot-check config FILE   the loader config (/hvboot/hvboot.cfg) parsed, or its problem
//! ```
//!
//! `FILE` may be `-` for standard input. The verdict is one JSON object on standard output;
//! every problem is `{"field": ..., "message": ...}`, printed by the toolkit and the loader alike
//! as `<file>: <field>: <message>`. Exit status: 0 accepted, 1 refused (the problems are in the
//! JSON), 2 the file could not be read or the command line is wrong (a message on stderr).

mod json;

use std::io::Read;
use std::process::ExitCode;

use hvboot_api::request::REQUEST_SECTION;
use hvboot_api::KernelRequest;
use hvboot_loader_core::{config, elf, request};
use json::Json;

const USAGE: &str = "usage: hvboot-check kernel FILE | config FILE   (FILE may be - for stdin)";

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

fn problem(field: String, message: String) -> Json {
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
        (
            "segments",
            Json::Array(p.segments.iter().map(segment).collect()),
        ),
    ])
}

/// Every field of the request (the version-1 prefix the loader honours).
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
    ])
}

/// The verdict on a kernel: its kind, plan, request and problems (ELF first, then the request).
fn check_kernel(data: &[u8]) -> (bool, Json) {
    let mut problems = Vec::new();
    let plan = match elf::check(data) {
        Ok(p) => plan(&p),
        Err(all) => {
            problems.extend(all.iter().map(|e| problem(e.field(), e.message())));
            Json::Null
        }
    };
    let request = match request::find(data) {
        Ok(r) => r.as_ref().map_or(Json::Null, kernel_request),
        Err(e) => {
            problems.push(problem(format!("{REQUEST_SECTION}: {}", e.field), e.why));
            Json::Null
        }
    };
    let ok = problems.is_empty();
    let kind = elf::kind(data).map_or(Json::Null, |k| k.name().into());
    let doc = Json::object([
        ("size", Json::from(data.len() as u64)),
        ("kind", kind),
        ("ok", ok.into()),
        ("plan", plan),
        ("request", request),
        ("problems", Json::Array(problems)),
    ]);
    (ok, doc)
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
                ])
            });
            let cfg = Json::object([
                ("kernel", Json::from(c.kernel.as_str())),
                ("cmdline", c.cmdline.as_str().into()),
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check: fn(&[u8]) -> (bool, Json) = match args.first().map(String::as_str) {
        Some("kernel") => check_kernel,
        Some("config") => check_config,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let [_, path] = &args[..] else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
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
