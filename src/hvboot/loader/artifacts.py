"""Where the toolkit finds the loader binaries it puts on images, and the sample kernels.

They are built from this repository's sources during set-up (scripts/setup.sh runs cargo); the
toolkit finds them by fixed paths below the repository root. HVBOOT_UEFI_LOADER overrides the
UEFI loader's path (an ELF, converted to PE32+ when an image is written), HVBOOT_BIOS_LOADER the
BIOS loader's (an ELF holding stage 1 and stage 2, see hvboot.loader.bios_stages), HVBOOT_CHECK
the checker's (hvboot-check, the loader core's rules on the host, see hvboot.loader.checker).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hvboot.errors import HvbootError

REPO = Path(__file__).resolve().parents[3]
# One Cargo workspace (Cargo.toml at the root) builds the loader and the kernel-side crates.
RUST_WORKSPACE = REPO
RUST_RELEASE = REPO / "target" / "release"
UEFI_LOADER_ELF = RUST_RELEASE / "hvboot-uefi"
BIOS_LOADER_ELF = RUST_RELEASE / "hvboot-bios"
CHECKER = RUST_RELEASE / "hvboot-check"
HYPERVISOR_CRATE = REPO / "examples" / "hypervisor"
HYPERVISOR_ELF = HYPERVISOR_CRATE / "target" / "release" / "hvboot-sample-hypervisor"
TEST_KERNELS = REPO / "tests" / "kernels"


def _built(env: str, default: Path, what: str) -> Path:
    path = Path(os.environ.get(env, default))
    if not path.is_file():
        raise HvbootError(
            path,
            f"{what} is not built; run scripts/setup.sh, or: "
            f"cargo build --release --manifest-path {RUST_WORKSPACE / 'Cargo.toml'}",
        )
    return path


def uefi_loader_elf() -> Path:
    return _built("HVBOOT_UEFI_LOADER", UEFI_LOADER_ELF, "the UEFI loader")


def bios_loader_elf() -> Path:
    return _built("HVBOOT_BIOS_LOADER", BIOS_LOADER_ELF, "the BIOS loader")


def checker() -> Path:
    return _built("HVBOOT_CHECK", CHECKER, "the checker (hvboot-check, loader/check)")


def cargo_build(crate_dir: Path, *, quiet: bool = True) -> None:
    """`cargo build --release` in a crate or workspace of this repository."""
    cmd = ["cargo", "build", "--release"]
    if quiet:
        cmd.append("--quiet")
    result = subprocess.run(cmd, cwd=crate_dir, capture_output=quiet, text=True)
    if result.returncode != 0:
        detail = (result.stderr or "").strip()[-2000:] if quiet else ""
        raise HvbootError(crate_dir, f"cargo build failed\n{detail}")
