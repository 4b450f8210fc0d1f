#!/usr/bin/env python3
"""rust-osdev/bootloader's own test kernels (its tests/test_kernels), fetched, their build files
adapted to build on stable Rust for the host target as hvboot's kernels are
(tests/kernels/bootapi/build.rs, docs/kernel-api.md), their code unchanged.

    tests/rust_osdev.py            # fetch (if absent), adapt and build into tests/.cache

The sources are not on crates.io (the `bootloader` crate's package excludes tests/test_kernels),
so they come from the repository's git tag: `git clone` from GitHub, or from the git
repository $HVBOOT_BOOTLOADER_GIT (a mirror, for machines without GitHub). Nothing of
rust-osdev's is committed here.

What is adapted, and why: their workspace asks for `x86_64-unknown-none` and nightly's
`profile-rustflags`; each crate takes `bootloader_api` from the repository by path. The adapted
workspace builds each crate for the host target with hvboot's code-generation flags, the
crates.io `bootloader_api` of the tag's version, hvboot's linker script (through bootapi's
build.rs, which needs hvboot-api as a dependency for its path) and hvboot-rt's mem* symbols
(the host target's precompiled `core` calls them; linked as an archive, the kernels' code does
not name the crate). Binaries are renamed `<crate>--<bin>`: several crates have a basic_boot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = "v0.11.16"
API_VERSION = "0.11.16"
URL = "https://github.com/rust-osdev/bootloader"
CACHE = ROOT / "tests" / ".cache" / "rust-osdev-bootloader"
SOURCES = CACHE / "src"  # the tag's tests/ directory
# The adapted workspace, one level down as in their tree: the ramdisk kernels include
# ../../../ramdisk.txt from their src/.
BUILD = CACHE / "adapted" / "test_kernels"
HOST = "x86_64-unknown-linux-gnu"
RELEASE = BUILD / "target" / HOST / "release"
KERNELS_TARGET = ROOT / "tests" / "kernels" / "target" / "release"
RUSTFLAGS = ["relocation-model=static", "code-model=kernel", "no-redzone=yes"]
# Crates their workspace links elsewhere (profile.test.package.*.rustflags, nightly's
# profile-rustflags): higher_half at --image-base 0xFFFF800000000000 with code-model=large.
# Built on their own, statically at that base.
LINKED_AT = {"higher_half": "0xffff800000000000"}
# Crates whose tests are about where a position-independent kernel runs (kernel_base) or that
# it is relocated: built as x86_64-unknown-none builds every kernel, a static PIE linked at 0
# in the linker's own layout (bootapi's build.rs with HVBOOT_KERNEL_PIE), each on its own.
PIE = ("pie", "fixed_kernel_address", "stack_address")
PIE_RUSTFLAGS = [
    "relocation-model=pie",
    "code-model=small",
    "no-redzone=yes",
    "target-feature=+crt-static",
]


def fetch() -> None:
    """The tag's tests/ directory into SOURCES."""
    if (SOURCES / "test_kernels" / "Cargo.toml").is_file():
        return
    with tempfile.TemporaryDirectory() as t:
        local = os.environ.get("HVBOOT_BOOTLOADER_GIT")
        if local:
            repo = Path(local)
        else:
            repo = Path(t) / "bootloader"
            clone = ["git", "clone", "--quiet", "--depth", "1", "--branch", TAG, URL, str(repo)]
            subprocess.run(clone, check=True)
        archive = Path(t) / "tests.tar"
        with archive.open("wb") as out:
            cmd = ["git", f"--git-dir={_git_dir(repo)}", "archive", TAG, "tests"]
            subprocess.run(cmd, check=True, stdout=out)
        SOURCES.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(SOURCES, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(t) / "x", filter="data")
        shutil.move(Path(t) / "x" / "tests", SOURCES)


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def _rt_archive() -> Path:
    """hvboot-rt's rlib, built with the test kernels (an ar archive the linker reads)."""
    found = sorted(
        (KERNELS_TARGET / "deps").glob("libhvboot_rt-*.rlib"), key=lambda p: p.stat().st_mtime
    )
    if not found:
        sys.exit(f"{KERNELS_TARGET}: no hvboot-rt build; run scripts/setup.sh --no-demo first")
    return found[-1]


def members() -> list[str]:
    text = (SOURCES / "test_kernels" / "Cargo.toml").read_text()
    block = re.search(r"members\s*=\s*\[(.*?)\]", text, re.S)
    assert block, "test_kernels/Cargo.toml: no members"
    return re.findall(r'"([^"]+)"', block[1])


def _manifest(name: str, src: Path) -> str:
    """Their crate's Cargo.toml with hvboot's build files: crates.io bootloader_api, bootapi's
    build.rs (and hvboot-api for its linker script), renamed binaries, no nightly feature."""
    manifest = (
        (src / "Cargo.toml").read_text().replace('cargo-features = ["profile-rustflags"]', "")
    )
    manifest = manifest.replace(
        'bootloader_api = { path = "../../../api" }', f'bootloader_api = "={API_VERSION}"'
    )
    manifest = manifest.replace(
        "[target.'cfg(target_arch = \"x86_64\")'.dependencies]", "[dependencies]"
    )
    build = f'build = "{ROOT}/tests/kernels/bootapi/build.rs"\nautobins = false\n'
    manifest = manifest.replace("[package]\n", f"[package]\n{build}", 1)
    manifest += f'\nhvboot-api = {{ path = "{ROOT}/crates/hvboot-api" }}\n'
    for f in sorted((src / "src" / "bin").glob("*.rs")):
        manifest += f'\n[[bin]]\nname = "{name}--{f.stem}"\npath = "src/bin/{f.name}"\n'
    return manifest


def adapt() -> None:
    """The adapted workspace: their crates' sources as they are, build files rewritten."""
    BUILD.mkdir(parents=True, exist_ok=True)
    names = members()
    for name in names:
        src, dst = SOURCES / "test_kernels" / name, BUILD / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        (dst / "Cargo.toml").write_text(_manifest(name, src))
    quoted = ", ".join(f'"{n}"' for n in names)
    (BUILD / "Cargo.toml").write_text(
        f'[workspace]\nresolver = "2"\nmembers = [{quoted}]\n\n'
        '[profile.release]\npanic = "abort"\n\n[profile.dev]\npanic = "abort"\n'
    )
    flags = ", ".join(f'"{f}"' for f in _flags(RUSTFLAGS))
    (BUILD / ".cargo").mkdir(exist_ok=True)
    (BUILD / ".cargo" / "config.toml").write_text(f"[build]\nrustflags = [{flags}]\n")
    shutil.copy(SOURCES / "ramdisk.txt", BUILD.parent / "ramdisk.txt")


def _flags(codegen: list[str]) -> list[str]:
    """rustc arguments: the code-generation options and hvboot-rt's archive to link."""
    out = [a for c in codegen for a in ("-C", c)]
    return [*out, "-C", f"link-arg={_rt_archive()}"]


def build() -> None:
    # An explicit --target keeps the kernels' flags off their proc-macro dependencies.
    cmd = ["cargo", "build", "--release", "--quiet", "--target", HOST]
    alone = [*LINKED_AT, *PIE]
    excluded = [a for name in alone for a in ("--exclude", f"test_kernel_{name}")]
    subprocess.run([*cmd, "--workspace", *excluded], cwd=BUILD, check=True)
    for name in alone:
        if name in PIE:
            codegen, extra = PIE_RUSTFLAGS, {"HVBOOT_KERNEL_PIE": "1"}
        else:
            codegen = [f if f != "code-model=kernel" else "code-model=large" for f in RUSTFLAGS]
            extra = {"HVBOOT_KERNEL_BASE": LINKED_AT[name]}
        env = {**os.environ, "CARGO_ENCODED_RUSTFLAGS": "\x1f".join(_flags(codegen)), **extra}
        target = ["--target-dir", str(BUILD / "target" / name)]
        cargo = [*cmd, "-p", f"test_kernel_{name}", *target]
        subprocess.run(cargo, cwd=BUILD, check=True, env=env)


def kernel_path(crate: str, binary: str) -> Path:
    """Where the adapted build put the kernel."""
    alone = crate in LINKED_AT or crate in PIE
    target = BUILD / "target" / crate if alone else BUILD / "target"
    return target / HOST / "release" / f"{crate}--{binary}"


def kernels() -> list[tuple[str, str]]:
    """(crate, binary) of every test kernel in the adapted workspace."""
    out = []
    for name in members():
        for f in sorted((BUILD / name / "src" / "bin").glob("*.rs")):
            out.append((name, f.stem))
    return out


def main() -> None:
    fetch()
    adapt()
    build()
    print(f"rust-osdev test kernels: {len(kernels())} built in {BUILD / 'target'}")


if __name__ == "__main__":
    main()
