"""A kernel ELF on the host: the loader core's verdict on it, its symbols, a description.

What a kernel may be is decided in one place, the loader core (loader/core/src/elf.rs for the ELF
and its load plan, loader/core/src/request.rs and hvboot-api's ``KernelRequest::check`` for its
``.hvboot_request``). `load_plan` does not re-implement those rules: it asks the core through
``hvboot-check`` (hvboot.loader.checker) and turns its answer into a `LoadPlan`, or into an
`HvbootError` naming the file and the field, with the core's message (what is wrong and what was
expected) -- the words the loader prints on the machine. docs/loader.md ("One rule set").

What stays here is host work: reading the file, the symbol table for GDB (pyelftools), and the
human description of a plan.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from hvboot.errors import HvbootError
from hvboot.loader import checker
from hvboot.units import PAGE_SIZE

__all__ = [
    "PAGE_SIZE",
    "REQUEST_SECTION",
    "KernelCheck",
    "LoadPlan",
    "Request",
    "Segment",
    "accepted",
    "check_kernel",
    "describe",
    "load_plan",
    "load_plan_bytes",
    "read_request",
    "symbol_address",
    "symbols",
]

ELF_MAGIC = b"\x7fELF"
_SHDR_SIZE = 64
_SYM_SIZE = 24
PF_X = 0x1
PF_W = 0x2
PF_R = 0x4
REQUEST_SECTION = ".hvboot_request"

#: A decoded ``KernelRequest`` (every field of protocol/layout.py's struct; ``guest`` nested).
Request = dict[str, Any]


@dataclass(frozen=True)
class Segment:
    """One loadable (``PT_LOAD``) segment of a kernel, as the core plans it."""

    index: int  # index of the program header in the file
    vaddr: int
    paddr: int
    memsz: int
    filesz: int
    offset: int
    flags: str  # "R-X", "RW-" or "R--"
    writable: bool
    executable: bool
    readable: bool = True  # the core refuses segments that are not

    @property
    def vaddr_end(self) -> int:
        """One past the last virtual address of the segment."""
        return self.vaddr + self.memsz

    @property
    def paddr_end(self) -> int:
        """One past the last physical address (meaningful for lower-half kernels)."""
        return self.paddr + self.memsz


@dataclass(frozen=True)
class LoadPlan:
    """What the loader will do with an accepted kernel (the core's plan)."""

    source: str
    entry: int
    segments: tuple[Segment, ...]  # by virtual address, as the core orders them
    higher_half: bool
    virt_start: int  # first segment's page, rounded down to 4 KiB
    virt_end: int  # end of the last segment, rounded up to 4 KiB
    request: Request | None = None  # the kernel's .hvboot_request, if it has one
    phys_base: int | None = None  # lower half, one contiguous block: its physical address
    kind: str | None = None  # hvboot-check's kind name ("hvboot-elf", "bootloader-api", ...)
    # A position-independent (ET_DYN) kernel: the addresses above are where it runs, its link
    # addresses moved by `slide`; `relocations` R_X86_64_RELATIVE words are written at load.
    relocatable: bool = False
    slide: int = 0
    relocations: int = 0

    @property
    def image_size(self) -> int:
        """Bytes of memory the loaded image spans (``virt_end - virt_start``)."""
        return self.virt_end - self.virt_start

    def segment_at(self, vaddr: int) -> Segment | None:
        """The segment containing virtual address `vaddr`, if any."""
        for seg in self.segments:
            if seg.vaddr <= vaddr < seg.vaddr_end:
                return seg
        return None


@dataclass(frozen=True)
class KernelCheck:
    """The core's whole verdict on a kernel: every problem, not only the first."""

    source: str
    kind: str | None  # hvboot-elf, multiboot2, linux, limine, bootloader-api; None: unknown
    plan: LoadPlan | None  # None when the ELF is refused
    request: Request | None  # None without a .hvboot_request section, or with a refused one
    problems: tuple[HvbootError, ...]  # in the core's order: the loader reports the first
    multiboot2: dict[str, Any] | None = None  # the decoded Multiboot2 header (kind multiboot2)
    linux: dict[str, Any] | None = None  # the decoded bzImage setup header (kind linux)
    limine: dict[str, Any] | None = None  # base revision, markers, requests (kind limine)
    bootloader_api: dict[str, Any] | None = None  # the decoded .bootloader-config

    @property
    def ok(self) -> bool:
        return not self.problems


def check_kernel(data: bytes, source: str, cmdline: str | None = None) -> KernelCheck:
    """The loader core's verdict on kernel ELF `data` (`source` names it in errors), and on the
    command line it is to get, if given."""
    doc = checker.check_kernel(data, cmdline)
    request: Request | None = doc["request"]
    plan = None
    if doc["plan"] is not None:
        p = doc["plan"]
        plan = LoadPlan(
            source=source,
            entry=p["entry"],
            segments=tuple(Segment(**s) for s in p["segments"]),
            higher_half=p["higher_half"],
            virt_start=p["virt_start"],
            virt_end=p["virt_end"],
            request=request,
            phys_base=p["phys_base"],
            kind=doc["kind"],
            relocatable=p.get("relocatable", False),
            slide=p.get("slide", 0),
            relocations=p.get("relocations", 0),
        )
    problems = tuple(pr.error(source) for pr in checker.problems(doc))
    return KernelCheck(
        source,
        doc["kind"],
        plan,
        request,
        problems,
        doc.get("multiboot2"),
        doc.get("linux"),
        doc.get("limine"),
        doc.get("bootloader_api"),
    )


def accepted(data: bytes, source: str, cmdline: str | None = None) -> KernelCheck:
    """The core's verdict on kernel `data` when the loader accepts it; `HvbootError` with the
    first problem the loader would refuse it for (``<source>: <field>``, the core's message),
    `cmdline` included."""
    verdict = check_kernel(data, source, cmdline)
    if verdict.problems:
        raise verdict.problems[0]
    assert verdict.plan is not None
    return verdict


def load_plan_bytes(data: bytes, source: str, cmdline: str | None = None) -> LoadPlan:
    """The load plan of kernel ELF `data` (`accepted`'s)."""
    plan = accepted(data, source, cmdline).plan
    assert plan is not None
    return plan


def read_request(data: bytes, source: str) -> Request | None:
    """The kernel's request as the loader reads it, None without a ``.hvboot_request``
    section; `HvbootError` (``<source>: .hvboot_request: <field>``) for one it would refuse."""
    verdict = check_kernel(data, source)
    for problem in verdict.problems:
        if (problem.where or "").startswith(f"{source}: {REQUEST_SECTION}:"):
            raise problem
    return verdict.request


# ---------------------------------------------------------------------------
# Reading


def _read(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise HvbootError(p, "file not found (expected the kernel ELF file)") from None
    except IsADirectoryError:
        raise HvbootError(p, "is a directory, expected the kernel ELF file") from None
    except OSError as exc:
        raise HvbootError(p, f"cannot read file: {exc.strerror or exc}") from None


def load_plan(path: str | os.PathLike[str]) -> LoadPlan:
    """Check the kernel ELF file at `path` and return how it will be loaded."""
    return load_plan_bytes(_read(path), str(path))


def _open(data: bytes, source: str) -> ELFFile:
    """The file for pyelftools (symbols only; the loader's rules are the core's)."""
    try:
        return ELFFile(io.BytesIO(data))
    except Exception as exc:  # pyelftools reports malformed input with assorted exceptions
        raise HvbootError(
            f"{source}: ELF header", f"not an ELF file the symbol reader can read: {exc}"
        ) from None


def _range(start: int, end: int) -> str:
    return f"{start:#x}-{end:#x}"


# ---------------------------------------------------------------------------
# Description for the CLI


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if n % size == 0 else f"{value:.1f} {unit}"
    return f"{n} B"


def describe(plan: LoadPlan) -> str:
    """A human-readable table of how `plan` will be loaded."""
    half = "higher-half" if plan.higher_half else "lower-half"
    lines = [
        f"{plan.source}: x86_64 ELF kernel, {half}, entry {plan.entry:#x}",
        f"image: {_range(plan.virt_start, plan.virt_end)} ({_human(plan.image_size)})",
    ]
    if plan.relocatable:
        linked = (plan.virt_start - plan.slide) % (1 << 64)
        lines.append(
            f"position-independent (ET_DYN): linked at {linked:#x}, runs slid by {plan.slide:#x}, "
            f"{plan.relocations} relocations applied at load"
        )
    rows = [("segment", "virtual range", "flags", "size", "in file", "placement")]
    for s in plan.segments:
        placement = (
            "loader's choice (2 MiB aligned)"
            if plan.higher_half or plan.relocatable
            else f"at p_paddr {s.paddr:#x}"
        )
        rows.append(
            (
                str(s.index),
                _range(s.vaddr, s.vaddr_end),
                s.flags,
                _human(s.memsz),
                _human(s.filesz),
                placement,
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        cells = [
            r[c].rjust(widths[c]) if c in (3, 4) else r[c].ljust(widths[c]) for c in range(len(r))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Symbols


def _load_any(path_or_bytes: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return bytes(path_or_bytes), "<kernel bytes>"
    return _read(path_or_bytes), str(path_or_bytes)


def _symtab_bounds_ok(elf: ELFFile, data: bytes, source: str) -> bool:
    """Check the section header table lies in the file. False if there is none."""
    shoff: int = elf["e_shoff"]
    shnum: int = elf["e_shnum"]
    if shoff == 0 or shnum == 0:
        return False
    shentsize: int = elf["e_shentsize"]
    if shentsize != _SHDR_SIZE:
        raise HvbootError(
            f"{source}: ELF header e_shentsize",
            f"section header size is {shentsize}, expected {_SHDR_SIZE} (sizeof(Elf64_Shdr))",
        )
    end = shoff + shnum * shentsize
    if end > len(data):
        raise HvbootError(
            f"{source}: ELF header e_shoff",
            f"section header table at file offset {_range(shoff, end)} lies outside the file "
            f"({len(data)} bytes)",
        )
    return True


def _section_in_file(sh: Any, data: bytes) -> bool:
    return int(sh["sh_offset"]) + int(sh["sh_size"]) <= len(data)


def symbols(path_or_bytes: bytes | str | os.PathLike[str]) -> dict[str, int]:
    """All defined symbols of the ELF's ``.symtab`` as name -> address.

    Global symbols win over local ones of the same name. A file without a
    symbol table (a stripped kernel) gives an empty dict.
    """
    data, source = _load_any(path_or_bytes)
    elf = _open(data, source)
    if not _symtab_bounds_ok(elf, data, source):
        return {}
    where = f"{source}: section .symtab"
    result: dict[str, int] = {}
    is_global: dict[str, bool] = {}
    try:
        for sec in elf.iter_sections(type="SHT_SYMTAB"):
            if not isinstance(sec, SymbolTableSection):
                continue
            strtab_hdr = elf.get_section(int(sec["sh_link"])).header
            if (
                int(sec["sh_entsize"]) != _SYM_SIZE
                or not _section_in_file(sec.header, data)
                or not _section_in_file(strtab_hdr, data)
            ):
                raise HvbootError(
                    where,
                    "symbol table (or its string table) lies outside the file or has "
                    f"sh_entsize {sec['sh_entsize']}, expected {_SYM_SIZE}",
                )
            for sym in sec.iter_symbols():
                if (
                    not sym.name
                    or sym["st_shndx"] == "SHN_UNDEF"
                    or sym["st_info"]["type"] in ("STT_FILE", "STT_SECTION")
                ):
                    continue
                glob = sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
                if sym.name not in result or (glob and not is_global[sym.name]):
                    result[sym.name] = int(sym["st_value"])
                    is_global[sym.name] = glob
    except HvbootError:
        raise
    except Exception as exc:  # pyelftools reports malformed input with assorted exceptions
        raise HvbootError(where, f"malformed symbol table: {exc}") from None
    return result


def symbol_address(path_or_bytes: bytes | str | os.PathLike[str], name: str) -> int | None:
    """Address of symbol `name` from the ELF's ``.symtab``, or None if it has none.

    Boot tests use this to check that the kernel runs at its linked address.
    """
    return symbols(path_or_bytes).get(name)
