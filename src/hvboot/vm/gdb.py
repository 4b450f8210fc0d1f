"""GDB scripts for `hvboot debug`, and finding where the firmware loaded the UEFI loader.

The kernel is easy: an ET_EXEC is linked at its run-time addresses, so GDB takes its symbols
as they are (``symbol-file``); a position-independent one runs slid by what the loader core's
plan says (docs/loader.md, "Relocation"), so its symbols are loaded with ``-o SLIDE``.
Breakpoints in it are hardware ones (``hbreak``): the kernel's pages do not exist until the
loader maps them, and a software breakpoint written into memory
early would be overwritten when the loader copies the kernel in.

The UEFI loader is a static PIE linked at 0 and converted to PE32+ (src/hvboot/pe.py): ELF address
``v`` is RVA ``v + delta`` (``delta = 0x1000`` for an ELF linked at 0), so once the image base
``B`` the firmware chose is known, ``add-symbol-file ELF -o B+delta`` puts every symbol in place.
The loader prints ``B`` in its first line (``hvboot: ... (UEFI) starting, image base 0x...``,
from EFI_LOADED_IMAGE_PROTOCOL). OVMF is deterministic under TCG (same firmware, same machine,
same disk image, a fresh variable store each run), so `probe_loader_base` boots the image once
without a debugger until that line appears; the debug session then boots the same way with
``-S``, breaks in the loader at ``B``-relative addresses, and checks ``B`` again when the first
breakpoint is hit.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from elftools.elf.elffile import ELFFile

from hvboot.errors import HvbootError
from hvboot.vm import qemu

#: The UEFI loader's first line on COM1 (loader/uefi/src/main.rs), with its image base.
IMAGE_BASE_LINE = re.compile(r"hvboot: .*\(UEFI\) starting, image base (0x[0-9a-f]+)")
PAGE = 0x1000


def gdb_binary() -> str:
    found = shutil.which("gdb")
    if not found:
        raise HvbootError("gdb", "not found on PATH; install it with: apt-get install gdb")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quote(path: Path | str) -> str:
    """A file name as GDB's commands read it (double quotes, backslash escapes)."""
    text = str(path)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Scripts


def breakpoint_location(symbol: str) -> str:
    """`hbreak` argument: `*ADDR` for a number, the symbol name otherwise."""
    if re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)", symbol):
        return f"*{symbol}"
    return symbol


def kernel_script(kernel: Path, port: int, breaks: Sequence[str], slide: int = 0) -> str:
    """Commands that attach to QEMU's stub with the kernel's symbols (moved by `slide`, a
    position-independent kernel's) and hardware breakpoints."""
    symbols = f"symbol-file -o {slide:#x} {quote(kernel)}" if slide else f"file {quote(kernel)}"
    lines = [
        "set pagination off",
        "set confirm off",
        "set architecture i386:x86-64",
        symbols,
        f"target remote 127.0.0.1:{port}",
    ]
    lines += [f"hbreak {breakpoint_location(b)}" for b in breaks]
    return "\n".join(lines) + "\n"


def loader_script(
    loader_elf: Path, port: int, image_base: int, delta: int, breaks: Sequence[str]
) -> str:
    """Commands that attach with the UEFI loader's symbols at the base the firmware chose."""
    lines = [
        "set pagination off",
        "set confirm off",
        "set architecture i386:x86-64",
        f"add-symbol-file {quote(loader_elf)} -o {image_base + delta:#x}",
        f"target remote 127.0.0.1:{port}",
    ]
    lines += [f"hbreak {breakpoint_location(b)}" for b in breaks]
    return "\n".join(lines) + "\n"


def bios_loader_script(loader_elf: Path, port: int, breaks: Sequence[str]) -> str:
    """Commands for the BIOS stages: stage 2 and the BIOS loader are an ET_EXEC linked where
    stage 1 loads them (0x8000), so their symbols need no offset. Stage 1 runs at 0x7c00.

    QEMU's breakpoints match linear addresses (CS base + IP), which is what `hbreak *0x7c00`
    gives. GDB keeps the x86-64 register layout QEMU's stub describes: in real mode $pc is IP,
    and `set architecture i8086` does not change how GDB 13 disassembles against
    qemu-system-x86_64 (its target description wins), so 16-bit code is shown as 32-bit.
    """
    lines = [
        "set pagination off",
        "set confirm off",
        "set architecture i386:x86-64",
        f"symbol-file {quote(loader_elf)}",
        f"target remote 127.0.0.1:{port}",
    ]
    lines += [f"hbreak {breakpoint_location(b)}" for b in breaks]
    return "\n".join(lines) + "\n"


def attach_command(script: Path) -> list[str]:
    return [gdb_binary(), "-q", "-x", str(script)]


# ---------------------------------------------------------------------------------------------
# The loader's image base


def elf_delta(loader_elf: bytes) -> int:
    """pe.py's `delta` for this ELF: RVA = ELF address + delta."""
    import io

    elf = ELFFile(io.BytesIO(loader_elf))
    lows = [int(s["p_vaddr"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    if not lows:
        raise HvbootError("UEFI loader ELF", "no PT_LOAD segment")
    return PAGE - min(lows) // PAGE * PAGE


def probe_loader_base(spec: qemu.QemuSpec, timeout: float = 120.0) -> int:
    """Boot `spec` once until the loader names its image base on COM1, and return that base."""
    if spec.machine.firmware != "uefi":
        raise HvbootError("--firmware", "the loader's image base is a UEFI notion")
    probe = dataclasses.replace(spec, snapshot=True, stopped=False, gdb_port=None)
    result = qemu.run(probe, timeout=timeout, until=IMAGE_BASE_LINE)
    found = IMAGE_BASE_LINE.search(result.serial)
    if found is None or int(found.group(1), 16) == 0:
        raise HvbootError(
            "hvboot debug --loader",
            f"the loader did not name its image base on COM1 ({result.outcome})",
        )
    return int(found.group(1), 16)
