"""`hvboot new NAME`: write a kernel crate whose `cargo run` and `cargo test` boot it in QEMU.

The crate follows docs/kernel-api.md (stable Rust, host target, hvboot-api's linker script) and
adds what the Rust OS community does with bootimage: `.cargo/config.toml` names `hvboot test` as
the runner, so `cargo run` builds the kernel and boots it, and `cargo test` boots each
integration test (a `#![no_std]` `#![no_main]` kernel of its own in tests/, `harness = false`),
which passes by calling `exit_qemu(EXIT_SUCCESS)` and fails by panicking or calling
`exit_qemu(EXIT_FAILURE)`. The runner's exit status is what cargo sees.
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from pathlib import Path

from hvboot.config.settings import CONFIG_NAME, machine_toml
from hvboot.errors import HvbootError
from hvboot.loader import artifacts, bundle

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RESERVED = {"test", "core", "std", "alloc", "proc_macro", "self", "crate", "super"}

CARGO_TOML = """\
# A kernel for hvboot, written by `hvboot new`. See docs/getting-started.md and
# docs/kernel-api.md in the hvboot repository.
#
#   cargo run            build the kernel and boot it in QEMU (the runner is `hvboot test`)
#   cargo test           boot every test kernel in tests/ in QEMU, one after another
#   hvboot debug target/debug/{name}    the same kernel stopped in GDB at its entry
[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false
build = "build.rs"
# Each file in tests/ is a bare-metal kernel without the libtest harness: give every one a
# [[test]] entry with `harness = false` below (a file without one is not built).
autotests = false

[[bin]]
name = "{name}"
path = "src/main.rs"
test = false            # no unit-test harness on bare metal: tests live in tests/
bench = false

[[test]]
name = "basic_boot"
harness = false

# hvboot's kernel-side crates, vendored from the hvboot that wrote this crate (version {api}):
# the crate builds without an hvboot checkout or a registry. Replace vendor/ to update them.
[dependencies]
hvboot-api = {{ path = "vendor/hvboot-api", version = "={api}" }}
hvboot-rt = {{ path = "vendor/hvboot-rt", version = "={rt}" }}

# Not part of any other workspace.
[workspace]

# Nothing can unwind on bare metal. (Test targets ignore `panic` here; .cargo/config.toml
# passes -C panic=abort to every target for that reason.)
[profile.dev]
panic = "abort"

[profile.release]
panic = "abort"
opt-level = "s"
# DWARF for GDB (`hvboot debug`); the linker script keeps it out of the loaded segments.
debug = true
"""

BUILD_RS = """\
//! Link arguments for an hvboot kernel (docs/kernel-api.md): freestanding, static, linked with
//! hvboot-api's kernel.ld, which hvboot-api exports as DEP_HVBOOT_API_LINKER_SCRIPT. They go to
//! the kernel binary and to the test kernels in tests/, never to this build script.
fn main() {
    let script = std::env::var("DEP_HVBOOT_API_LINKER_SCRIPT").expect("hvboot-api is a dependency");
    for kind in ["bins", "tests"] {
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-static",
            "-Wl,--build-id=none",
            "-Wl,-z,max-page-size=0x1000",
        ] {
            println!("cargo:rustc-link-arg-{kind}={arg}");
        }
        println!("cargo:rustc-link-arg-{kind}=-Wl,-T,{script}");
    }
    println!("cargo:rerun-if-changed={script}");
}
"""

CARGO_CONFIG = """\
# Code generation for an hvboot kernel built with stable Rust for the host target as a
# freestanding higher-half binary (docs/kernel-api.md). Link arguments are in build.rs.
[build]
rustflags = [
    "-C", "relocation-model=static",   # absolute addresses; the loader applies no relocations
    "-C", "code-model=kernel",         # code and data in the top 2 GiB
    "-C", "no-redzone=yes",            # interrupt handlers may run on the kernel stack
    "-C", "force-unwind-tables=no",    # nothing unwinds
    "-C", "panic=abort",               # also for tests/, whose profile ignores `panic`
]

# `cargo run` and `cargo test` hand each kernel binary to hvboot, which builds a temporary disk
# image, boots it in QEMU (TCG) and exits 0 only if the kernel called exit_qemu(EXIT_SUCCESS).
# Extra options go before the binary, e.g. ["{hvboot}", "test", "--timeout", "300"].
[target.x86_64-unknown-linux-gnu]
runner = ["{hvboot}", "test"]
"""

MAIN_RS = """\
#![no_std]
#![no_main]

use hvboot_api::{entry_point, serial_println, BootInfo};
use hvboot_rt as _; // memcpy & co.

entry_point!(kernel_main);

fn kernel_main(info: &'static BootInfo) -> ! {
    let (loader, version) = (info.loader_name(), info.loader_version());
    serial_println!("hello from {name}, loaded by {loader} {version}");
    serial_println!("command line: {:?}", info.cmdline());
    serial_println!("usable memory: {} MiB", info.usable_bytes() >> 20);
    // Under QEMU (with hvboot's isa-debug-exit device) this ends the run: `hvboot test`, and so
    // `cargo run`, exit 0. On real hardware it halts.
    hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hvboot_api::report_panic(info) // prints on COM1, exits QEMU with EXIT_FAILURE
}
"""

TEST_RS = """\
//! An integration test: a kernel of its own, booted by `cargo test` through `hvboot test`.
//! It passes when it calls exit_qemu(EXIT_SUCCESS) and fails when it panics (report_panic
//! exits with EXIT_FAILURE) or never reports (hvboot test times out).
#![no_std]
#![no_main]

use hvboot_api::{entry_point, serial_println, BootInfo, MemoryKind};
use hvboot_rt as _;

entry_point!(test_main);

fn test_main(info: &'static BootInfo) -> ! {
    serial_println!("basic_boot: running");
    assert_eq!(info.loader_name(), "hvboot");
    assert!(info.usable_bytes() > 0, "no usable memory");
    assert!(info.memory_map().iter().any(|r| r.kind == MemoryKind::KERNEL));
    serial_println!("basic_boot: ok");
    hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hvboot_api::report_panic(info)
}
"""

GITIGNORE = "/target\n"
VENDOR = "vendor"

# The crate's hvboot.toml: `hvboot run`/`hvboot test` (the cargo runner) find it from the crate's
# directory and take the machine from it (docs/config.md, "Which file is used").
HVBOOT_TOML = """\
# How `cargo run` and `cargo test` boot this kernel: hvboot run/test read this file from the
# crate (docs/config.md). A flag given to hvboot overrides a value here.

"""


def hvboot_command() -> str:
    """The absolute path of this installation's `hvboot` script (for the cargo runner)."""
    beside = Path(sys.executable).parent / "hvboot"
    if beside.is_file():
        return str(beside)
    found = shutil.which("hvboot")
    return str(Path(found).absolute()) if found else "hvboot"


def _crate_version(crate: Path) -> str:
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    return str(manifest["package"]["version"])


def files(name: str, hvboot: str | None = None) -> dict[str, str]:
    """The crate's files: relative path -> text."""
    api, rt = (_crate_version(artifacts.kernel_crate(c)) for c in bundle.KERNEL_CRATES)
    runner = (hvboot or hvboot_command()).replace("\\", "\\\\").replace('"', '\\"')
    return {
        "Cargo.toml": CARGO_TOML.format(name=name, api=api, rt=rt),
        "build.rs": BUILD_RS,
        ".cargo/config.toml": CARGO_CONFIG.replace("{hvboot}", runner),
        "src/main.rs": MAIN_RS.replace("{name}", name),
        "tests/basic_boot.rs": TEST_RS,
        ".gitignore": GITIGNORE,
        CONFIG_NAME: HVBOOT_TOML + machine_toml("test"),
    }


def create(name: str, path: Path | None = None) -> Path:
    """Write a new kernel crate `name` to `path` (default ./NAME) and return its directory."""
    if not _NAME.fullmatch(name) or name.replace("-", "_") in _RESERVED:
        raise HvbootError(
            f"hvboot new {name}",
            "the name must be a valid crate name: a letter, then letters, digits, - or _ "
            "(at most 64), and not a reserved name such as test or core",
        )
    dest = (path if path is not None else Path(name)).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise HvbootError(dest, "already exists and is not an empty directory")
    for rel, text in files(name).items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for crate in bundle.KERNEL_CRATES:
        bundle.copy_crate(artifacts.kernel_crate(crate), dest / VENDOR / crate)
    return dest
