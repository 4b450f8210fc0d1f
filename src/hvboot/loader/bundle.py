"""The built loader a wheel carries (package data `hvboot/_bundle/`), and how it is made.

setup.py calls `write()` while `pip wheel .` builds the wheel; `hvboot.loader.artifacts` reads
the same names when the package is installed. This module is the one definition of the
bundle's layout (docs/packaging.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from hvboot import __version__
from hvboot.errors import HvbootError
from hvboot.protocol.layout import PROTOCOL

DIR_NAME = "_bundle"
UEFI_PE = "BOOTX64.EFI"  # the UEFI loader, converted to PE32+ once, when the wheel is built
UEFI_ELF = "hvboot-uefi"  # its ELF: the symbols for `hvboot debug --loader`
BIOS_ELF = "hvboot-bios"  # stage 1 + stage 2 + the BIOS loader (hvboot.loader.bios_stages)
CHECKER = "hvboot-check"
HYPERVISOR = "hvboot-sample-hypervisor"  # `hvboot demo`'s kernel, prebuilt
CRATES = "crates"  # the sources of KERNEL_CRATES, which `hvboot new` vendors
KERNEL_CRATES = ("hvboot-api", "hvboot-rt")
BUILD_INFO = "build.json"

# What a crate copy leaves out: build output and editor/VCS litter.
_CRATE_IGNORE = shutil.ignore_patterns("target", "Cargo.lock", ".*")


@dataclass(frozen=True)
class BuildInfo:
    """What `hvboot --version` names: the package, the loader build and the protocol."""

    package: str
    loader_source: str  # `git describe` of the sources the loader was built from
    loader_id: str  # sha256 of the UEFI loader's PE and the BIOS loader's ELF, shortened
    protocol: int

    def line(self) -> str:
        return (
            f"hvboot {self.package}, loader {self.loader_source} "
            f"(build {self.loader_id}), boot protocol {self.protocol}"
        )

    @staticmethod
    def read(path: Path) -> BuildInfo:
        return BuildInfo(**json.loads(path.read_text()))


def loader_id(uefi_pe: bytes, bios_elf: bytes) -> str:
    digest = hashlib.sha256()
    for part in (uefi_pe, bios_elf):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def git_describe(repo: Path) -> str:
    """`git describe --always --dirty` of `repo`, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def build_info(repo: Path, uefi_pe: bytes, bios_elf: bytes) -> BuildInfo:
    return BuildInfo(
        package=__version__,
        loader_source=git_describe(repo),
        loader_id=loader_id(uefi_pe, bios_elf),
        protocol=PROTOCOL.version,
    )


def copy_crate(src: Path, dest: Path) -> None:
    """Copy a kernel-side crate's sources (what `cargo package` would take) to `dest`."""
    shutil.copytree(src, dest, ignore=_CRATE_IGNORE)


def _cargo(repo: Path, *args: str) -> None:
    cmd = ["cargo", "build", "--release", "--locked", *args]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HvbootError(repo, f"{' '.join(cmd)} failed\n{result.stderr.strip()[-2000:]}")


def write(repo: Path, dest: Path) -> BuildInfo:
    """Build the loader, the checker and the sample hypervisor in `repo` and lay out `dest`."""
    from hvboot.loader.pe import elf_to_pe  # pyelftools + pefile: build requirements

    _cargo(repo)
    _cargo(repo, "--manifest-path", str(repo / "examples" / "hypervisor" / "Cargo.toml"))
    release = repo / "target" / "release"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in (UEFI_ELF, BIOS_ELF, CHECKER):
        shutil.copy2(release / name, dest / name)
    shutil.copy2(
        repo / "examples" / "hypervisor" / "target" / "release" / HYPERVISOR, dest / HYPERVISOR
    )
    uefi_pe = elf_to_pe((release / UEFI_ELF).read_bytes(), source=str(release / UEFI_ELF))
    (dest / UEFI_PE).write_bytes(uefi_pe)
    for crate in KERNEL_CRATES:
        copy_crate(repo / "crates" / crate, dest / CRATES / crate)
    info = build_info(repo, uefi_pe, (release / BIOS_ELF).read_bytes())
    (dest / BUILD_INFO).write_text(json.dumps(asdict(info), indent=1) + "\n")
    return info
