"""Where the toolkit finds the loader it puts on images, the checker and the sample kernel.

Two places, one lookup: an installed wheel carries them as package data (`hvboot/_bundle/`,
laid out by hvboot.loader.bundle when the wheel is built); a source checkout (an editable
install) finds what scripts/setup.sh built with cargo below the repository root. Either way
HVBOOT_UEFI_LOADER overrides the UEFI loader (an ELF, converted to PE32+), HVBOOT_BIOS_LOADER
the BIOS loader (an ELF holding stage 1 and stage 2, see hvboot.loader.bios_stages) and
HVBOOT_CHECK the checker (hvboot-check, the loader core's rules on the host, see
hvboot.loader.checker).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from hvboot.errors import HvbootError
from hvboot.loader import bundle

BUNDLE = Path(__file__).resolve().parents[1] / bundle.DIR_NAME
INSTALLED = (BUNDLE / bundle.BUILD_INFO).is_file()

# The source checkout (meaningful only when not INSTALLED).
REPO = Path(__file__).resolve().parents[3]
# One Cargo workspace (Cargo.toml at the root) builds the loader and the kernel-side crates.
RUST_WORKSPACE = REPO
RUST_RELEASE = REPO / "target" / "release"
HYPERVISOR_CRATE = REPO / "examples" / "hypervisor"
HYPERVISOR_ELF = HYPERVISOR_CRATE / "target" / "release" / bundle.HYPERVISOR
TEST_KERNELS = REPO / "tests" / "kernels"


def checkout(verb: str) -> Path:
    """The source checkout, for the commands that change it (gen-protocol, gen-docs)."""
    if INSTALLED or not (REPO / "Cargo.toml").is_file():
        raise HvbootError(
            f"hvboot {verb}",
            "changes the files of a source checkout of hvboot; this hvboot is a package "
            f"installed in {BUNDLE.parent.parent}",
        )
    return REPO


def _built(env: str | None, name: str, what: str) -> Path:
    path = Path((env and os.environ.get(env)) or (BUNDLE if INSTALLED else RUST_RELEASE) / name)
    if not path.is_file():
        hint = (
            "the installed package is incomplete; reinstall the hvboot wheel"
            if INSTALLED
            else f"run scripts/setup.sh, or: cargo build --release --manifest-path "
            f"{RUST_WORKSPACE / 'Cargo.toml'}"
        )
        raise HvbootError(path, f"{what} is not built; {hint}")
    return path


def uefi_loader_elf() -> Path:
    return _built("HVBOOT_UEFI_LOADER", bundle.UEFI_ELF, "the UEFI loader")


def bios_loader_elf() -> Path:
    return _built("HVBOOT_BIOS_LOADER", bundle.BIOS_ELF, "the BIOS loader")


def checker() -> Path:
    return _built("HVBOOT_CHECK", bundle.CHECKER, "the checker (hvboot-check, loader/check)")


def uefi_loader_pe() -> bytes:
    """The UEFI loader as the PE32+ application that goes on the ESP.

    An installed package carries it converted; otherwise the ELF is converted once and the PE
    kept beside it under the ELF's hash, so a rebuilt loader is converted again.
    """
    if INSTALLED and not os.environ.get("HVBOOT_UEFI_LOADER"):
        return _built(None, bundle.UEFI_PE, "the UEFI loader (PE)").read_bytes()
    from hvboot.loader.pe import elf_to_pe

    elf_path = uefi_loader_elf()
    elf = elf_path.read_bytes()
    cached = elf_path.with_name(f"{elf_path.name}.{hashlib.sha256(elf).hexdigest()[:16]}.efi")
    if cached.is_file():
        return cached.read_bytes()
    pe = elf_to_pe(elf, source=str(elf_path))
    try:
        partial = cached.with_name(f"{cached.name}.{os.getpid()}")
        partial.write_bytes(pe)
        os.replace(partial, cached)  # atomic: parallel builds never read half a file
        for stale in elf_path.parent.glob(f"{elf_path.name}.*.efi"):
            if stale != cached:
                stale.unlink(missing_ok=True)  # conversions of earlier builds of the loader
    except OSError:
        pass  # a read-only location: convert every time
    return pe


def build_info() -> bundle.BuildInfo:
    """The package, the loader build and the protocol (for `hvboot --version`)."""
    if INSTALLED:
        return bundle.BuildInfo.read(BUNDLE / bundle.BUILD_INFO)
    try:
        bios = bios_loader_elf().read_bytes()
        pe = uefi_loader_pe()
    except HvbootError:
        pe, bios = b"", b""
    info = bundle.build_info(REPO, pe, bios)
    built = info.loader_id if pe else "not built"
    return bundle.BuildInfo(
        info.package, f"{info.loader_source} in the checkout {REPO}", built, info.protocol
    )


def kernel_crate(name: str) -> Path:
    """The sources of a kernel-side crate (hvboot-api, hvboot-rt) that `hvboot new` vendors."""
    path = BUNDLE / bundle.CRATES / name if INSTALLED else REPO / "crates" / name
    if not (path / "Cargo.toml").is_file():
        raise HvbootError(path, f"the sources of {name} are missing")
    return path


def sample_hypervisor() -> Path:
    """The sample hypervisor kernel: prebuilt in a wheel, built with cargo in a checkout."""
    if INSTALLED:
        return _built(None, bundle.HYPERVISOR, "the sample hypervisor")
    cargo_build(HYPERVISOR_CRATE)
    return HYPERVISOR_ELF


def cargo_build(crate_dir: Path, *, quiet: bool = True) -> None:
    """`cargo build --release` in a crate or workspace of this repository."""
    cmd = ["cargo", "build", "--release"]
    if quiet:
        cmd.append("--quiet")
    result = subprocess.run(cmd, cwd=crate_dir, capture_output=quiet, text=True)
    if result.returncode != 0:
        detail = (result.stderr or "").strip()[-2000:] if quiet else ""
        raise HvbootError(crate_dir, f"cargo build failed\n{detail}")
