"""`hvboot doctor`: what is installed, what is missing, and how to get it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from hvboot.errors import HvbootError
from hvboot.loader import artifacts
from hvboot.vm.firmware import find_ovmf


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str


def _tool(name: str, version_arg: str, fix: str, why: str) -> Check:
    path = shutil.which(name)
    if not path:
        return Check(name, False, f"not found ({why})", fix)
    try:
        out = subprocess.run([path, version_arg], capture_output=True, text=True, timeout=20)
        first = (out.stdout or out.stderr).strip().splitlines()
        return Check(name, True, first[0] if first else path, "")
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check(name, False, f"{path} does not run: {e}", fix)


def checks() -> list[Check]:
    apt = "apt-get install -y"
    out = [
        _tool("qemu-system-x86_64", "--version", f"{apt} qemu-system-x86", "boots images"),
        _tool("gdb", "--version", f"{apt} gdb", "hvboot debug"),
        _tool("xorriso", "-version", f"{apt} xorriso", "hvboot build --iso"),
        _tool("sbsign", "--version", f"{apt} sbsigntool", "hvboot build --sign"),
        _tool("swtpm", "--version", f"{apt} swtpm swtpm-tools", "hvboot run|test --tpm"),
        _tool("tpm2_pcrread", "--version", f"{apt} tpm2-tools", "hvboot run|test --tpm"),
    ]
    if artifacts.INSTALLED:
        # An installed wheel carries the loader built: cargo only builds the user's kernels.
        fix = "install Rust (rustup: https://rustup.rs)"
        out.append(_tool("cargo", "--version", fix, "builds kernels made by hvboot new"))
    else:
        # A checkout builds the loader itself and runs the test suite's image checks.
        fix = "install Rust (rustup) and re-run scripts/setup.sh"
        out += [
            _tool("cargo", "--version", fix, "builds the loader and kernels"),
            _tool("nasm", "--version", f"{apt} nasm", "assembles the BIOS stages"),
            _tool("sgdisk", "--version", f"{apt} gdisk", "checks images in tests"),
            _tool("fsck.fat", "--help", f"{apt} dosfstools", "checks images in tests"),
            _tool("mdir", "--version", f"{apt} mtools", "checks images in tests"),
        ]
    try:
        ovmf = find_ovmf()
        out.append(Check("OVMF", True, f"{ovmf.code}", ""))
    except HvbootError as e:
        out.append(Check("OVMF", False, e.what, f"{apt} ovmf"))
    for name, find in (("UEFI loader", artifacts.uefi_loader_elf), ("checker", artifacts.checker)):
        try:
            out.append(Check(name, True, str(find()), ""))
        except HvbootError as e:
            fix = "reinstall the hvboot wheel" if artifacts.INSTALLED else "scripts/setup.sh"
            out.append(Check(name, False, e.what, fix))
    return out


def main() -> int:
    results = checks()
    width = max(len(c.name) for c in results)
    for c in results:
        mark = "ok     " if c.ok else "MISSING"
        print(f"{mark} {c.name:<{width}}  {c.detail}")
        if not c.ok:
            print(f"        {'':<{width}}  fix: {c.fix}")
    missing = [c for c in results if not c.ok]
    print(f"\n{len(results) - len(missing)} of {len(results)} present", file=sys.stderr)
    return 1 if missing else 0
