"""Host-side checking of kernel ELF files and the plan for loading them.

The boot loader only accepts a narrow kind of ELF file. `load_plan` checks a
kernel against the same rules on the host, so a bad kernel is rejected at image
build time with a message naming the file and the offending header field
instead of failing (or worse, half-working) at boot.

A kernel is accepted when it is:

* an ELF64, little-endian, ``EV_CURRENT``, ``EM_X86_64``, ``ET_EXEC`` file (position-independent
  ``ET_DYN`` kernels are not supported yet);
* with at least one ``PT_LOAD`` program header, where every ``PT_LOAD`` has
  ``p_filesz <= p_memsz``, file bytes inside the file, a power-of-two (or 0)
  ``p_align`` and ``p_vaddr % 4096 == p_offset % 4096``;
* readable and never both writable and executable (W^X);
* with canonical virtual addresses, all in the lower half or all in the higher
  half of the address space (a segment's page-rounded end must fit in 64 bits);
* with no two ``PT_LOAD`` ranges overlapping or sharing a 4 KiB page (the
  loader maps page by page, each page with its segment's permissions);
* whose entry point lies inside an executable ``PT_LOAD``;
* if lower-half (``p_vaddr < 0x8000_0000_0000``): the segments are placed at
  ``p_paddr``, which must be at or above 1 MiB, congruent to ``p_vaddr``
  modulo 4 KiB, below 2**52, and without overlapping or shared physical pages.
  Higher-half kernels are placed wherever the loader chooses (2 MiB aligned).

``PT_LOAD`` headers with ``p_memsz == 0`` occupy no memory: they are checked
for the file-level rules but left out of the plan.

A kernel may carry a request to the loader in a ``.hvboot_request`` section
(docs/hypervisor.md). `load_plan` checks it with the loader's rules
(``KernelRequest::check`` and loader/core/src/request.rs) and refuses a bad one
with ``<kernel>: .hvboot_request: <field>: <why>``, the loader's own wording.
A kernel whose section header table cannot be read has no request, for the
loader as here.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_P_TYPE_BASE
from elftools.elf.sections import SymbolTableSection

from hvboot.errors import HvbootError
from hvboot.protocol.layout import REQUEST_MAGIC
from hvboot.units import MIB, PAGE_SIZE

__all__ = [
    "HIGHER_HALF_START",
    "LOWER_HALF_END",
    "LOWER_HALF_MIN_PADDR",
    "PAGE_SIZE",
    "REQUEST_SECTION",
    "KernelRequest",
    "LoadPlan",
    "Segment",
    "describe",
    "load_plan",
    "load_plan_bytes",
    "read_request",
    "request_problem",
    "symbol_address",
    "symbols",
]


#: First non-canonical address above the lower half (48-bit virtual addresses).
LOWER_HALF_END = 0x0000_8000_0000_0000
#: First canonical address of the higher half.
HIGHER_HALF_START = 0xFFFF_8000_0000_0000
#: Lower-half kernels must not be placed in the first 1 MiB of physical memory.
LOWER_HALF_MIN_PADDR = 0x10_0000
#: Architectural limit on physical addresses (MAXPHYADDR <= 52).
PHYS_LIMIT = 1 << 52
HIGHER_HALF_ALIGN = 2 * 1024 * 1024

_ADDR_LIMIT = 1 << 64
ELF_MAGIC = b"\x7fELF"
_EHDR_SIZE = 64
_PHDR_SIZE = 56
_SHDR_SIZE = 64
_SYM_SIZE = 24
_PN_XNUM = 0xFFFF
PF_X = 0x1
PF_W = 0x2
PF_R = 0x4
_PT_LOAD = ENUM_P_TYPE_BASE["PT_LOAD"]


@dataclass(frozen=True)
class Segment:
    """One loadable (``PT_LOAD``) segment of a kernel."""

    index: int  # index of the program header in the file
    vaddr: int
    paddr: int
    memsz: int
    filesz: int
    offset: int
    flags: str  # "R-X", "RW-" or "R--"
    readable: bool
    writable: bool
    executable: bool

    @property
    def vaddr_end(self) -> int:
        """One past the last virtual address of the segment."""
        return self.vaddr + self.memsz

    @property
    def paddr_end(self) -> int:
        """One past the last physical address (meaningful for lower-half kernels)."""
        return self.paddr + self.memsz


REQUEST_SECTION = ".hvboot_request"
REQUEST_VERSION = 1
REQUEST_SIZE = 80
REQUEST_HEADER_SIZE = 16
FRAMEBUFFER_NONE = 0xFFFF_FFFF
REQUEST_FLAGS = {"AP_TRAMPOLINE": 1 << 0, "ENABLE_VMX": 1 << 1, "START_APS": 1 << 2}
# magic, version, size, flags, framebuffer_width, framebuffer_height, module_alignment,
# stack_size, direct_map_offset, guest.size, guest.alignment, guest.max_address,
# guest.fixed_base (layout.py's KernelRequest; tests/test_request.py checks the two agree).
_REQUEST_FORMAT = "<QIIIIIIQQQQQQ"
_SHT_NOBITS = 8
_TWO_MIB = 2 * MIB


@dataclass(frozen=True)
class KernelRequest:
    """A kernel's ``.hvboot_request`` (the version-1 fields)."""

    magic: int
    version: int
    size: int
    flags: int
    framebuffer_width: int
    framebuffer_height: int
    module_alignment: int
    stack_size: int
    direct_map_offset: int
    guest_size: int
    guest_alignment: int
    guest_max_address: int
    guest_fixed_base: int

    @classmethod
    def unpack(cls, raw: bytes) -> KernelRequest:
        """The request in the first 80 bytes of `raw` (zero-padded if shorter)."""
        return cls(*struct.unpack(_REQUEST_FORMAT, raw[:REQUEST_SIZE].ljust(REQUEST_SIZE, b"\0")))

    def pack(self) -> bytes:
        return struct.pack(
            _REQUEST_FORMAT,
            self.magic,
            self.version,
            self.size,
            self.flags,
            self.framebuffer_width,
            self.framebuffer_height,
            self.module_alignment,
            self.stack_size,
            self.direct_map_offset,
            self.guest_size,
            self.guest_alignment,
            self.guest_max_address,
            self.guest_fixed_base,
        )

    def flag_names(self) -> list[str]:
        names = [n for n, bit in REQUEST_FLAGS.items() if self.flags & bit]
        unknown = self.flags & ~sum(REQUEST_FLAGS.values())
        return names + ([f"{unknown:#x}"] if unknown else [])


def request_problem(req: KernelRequest) -> tuple[str, str] | None:
    """(field, why) for a request the loader refuses, None for a good one: the rules of
    ``KernelRequest::check`` in hvboot-api, with its wording."""
    if req.magic != REQUEST_MAGIC:
        return "magic", 'magic is not "HVBOOTRQ"'
    if req.version == 0:
        return "version", "version 0"
    if req.size < REQUEST_SIZE:
        return "size", "size smaller than the version-1 request"
    if req.stack_size % PAGE_SIZE:
        return "stack_size", "stack_size is not a multiple of 4 KiB"
    if req.module_alignment not in (0, PAGE_SIZE, _TWO_MIB):
        return "module_alignment", "module_alignment must be 0, 4096 or 2 MiB"
    dm = req.direct_map_offset
    if dm != 0 and (dm < HIGHER_HALF_START or dm % (1 << 30)):
        return (
            "direct_map_offset",
            "direct_map_offset must be 0 or a 1 GiB aligned higher-half address",
        )
    if req.guest_size == 0:
        return None
    align = req.guest_alignment or PAGE_SIZE
    bad = (
        req.guest_size % PAGE_SIZE != 0
        or align & (align - 1) != 0
        or align < PAGE_SIZE
        or req.guest_fixed_base % align != 0
        or (
            req.guest_max_address != 0
            and req.guest_fixed_base + req.guest_size > min(req.guest_max_address, _ADDR_LIMIT - 1)
        )
    )
    if bad:
        return (
            "guest",
            "guest: size must be a multiple of 4 KiB, alignment a power of two >= 4 KiB, "
            "fixed_base aligned, and the range below max_address",
        )
    return None


def read_request(data: bytes, source: str) -> KernelRequest | None:
    """The kernel's request, None without a ``.hvboot_request`` section; `HvbootError`
    (``<source>: .hvboot_request: <field>``) for one the loader would refuse."""
    try:
        sec = ELFFile(io.BytesIO(data)).get_section_by_name(REQUEST_SECTION)
    except Exception:  # an unreadable section header table: the loader sees no request either
        return None
    if sec is None:
        return None

    def refuse(field: str, why: str) -> HvbootError:
        return HvbootError(f"{source}: {REQUEST_SECTION}: {field}", why)

    if sec["sh_type"] in ("SHT_NOBITS", _SHT_NOBITS):
        raise refuse("section", "has no bytes in the file (SHT_NOBITS)")
    off, size = int(sec["sh_offset"]), int(sec["sh_size"])
    if off + size > len(data):
        raise refuse(
            "section",
            f"file bytes {_range(off, off + size)} lie outside the {len(data)}-byte file",
        )
    raw = data[off : off + size]
    if size < REQUEST_HEADER_SIZE:
        raise refuse(
            "section", f"{size} bytes, shorter than the {REQUEST_HEADER_SIZE}-byte request header"
        )
    req = KernelRequest.unpack(raw)
    problem = request_problem(req)
    if problem is not None:
        raise refuse(*problem)
    if size < REQUEST_SIZE:
        raise refuse("size", f"says {req.size} bytes but the section holds only {size}")
    return req


@dataclass(frozen=True)
class LoadPlan:
    """What the loader will do with an accepted kernel."""

    source: str
    entry: int
    segments: tuple[Segment, ...]  # in program header order
    higher_half: bool
    virt_start: int  # first segment's page, rounded down to 4 KiB
    virt_end: int  # end of the last segment, rounded up to 4 KiB
    request: KernelRequest | None = None  # the kernel's .hvboot_request, if it has one

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


# ---------------------------------------------------------------------------
# ELF header checks shared by load planning and symbol lookup


def _enum_name(enum: Any, value: Any, raw: int) -> str:
    """'EM_386 (3)' for a pyelftools enum value (a name, or the raw int if unknown)."""
    if isinstance(value, str):
        return f"{value} ({raw})"
    for name, num in enum.items():
        if num == raw and not name.startswith("_"):
            return f"{name} ({raw})"
    return f"unknown ({raw})"


def _check_ident(data: bytes, source: str) -> None:
    where = f"{source}: ELF header e_ident"
    if len(data) == 0:
        raise HvbootError(source, "file is empty, expected an x86_64 ELF kernel")
    if data[:4] != ELF_MAGIC:
        got = " ".join(f"{b:02x}" for b in data[:4])
        raise HvbootError(
            where,
            f"not an ELF file: magic bytes are {got}, expected 7f 45 4c 46 ('\\x7fELF')",
        )
    if len(data) < 6:
        raise HvbootError(where, f"file is only {len(data)} bytes, too short for an ELF header")
    ei_class, ei_data = data[4], data[5]
    if ei_class != 2:
        kind = {1: "ELF32 (EI_CLASS=1)"}.get(ei_class, f"unknown EI_CLASS={ei_class}")
        raise HvbootError(
            f"{where}[EI_CLASS]",
            f"{kind} file; hvboot loads 64-bit kernels only, expected ELFCLASS64 (2): "
            "build the kernel for x86_64",
        )
    if ei_data != 1:
        kind = {2: "big-endian (EI_DATA=2)"}.get(ei_data, f"unknown EI_DATA={ei_data}")
        raise HvbootError(
            f"{where}[EI_DATA]",
            f"{kind} file; expected little-endian ELFDATA2LSB (1) as used by x86_64",
        )
    if len(data) < _EHDR_SIZE:
        raise HvbootError(
            f"{source}: ELF header",
            f"file is only {len(data)} bytes, shorter than the {_EHDR_SIZE}-byte ELF64 header "
            "(truncated file?)",
        )
    if data[6] != 1:
        raise HvbootError(
            f"{where}[EI_VERSION]",
            f"ELF version is {data[6]}, expected 1 (EV_CURRENT)",
        )


def _open(data: bytes, source: str) -> ELFFile:
    _check_ident(data, source)
    try:
        return ELFFile(io.BytesIO(data))
    except Exception as exc:  # pyelftools reports malformed input with assorted exceptions
        raise HvbootError(f"{source}: ELF header", f"malformed ELF header: {exc}") from None


def _u16(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 2], "little")


# ---------------------------------------------------------------------------
# Load planning


def _flags_str(p_flags: int) -> str:
    return (
        ("R" if p_flags & PF_R else "-")
        + ("W" if p_flags & PF_W else "-")
        + ("X" if p_flags & PF_X else "-")
    )


def _page_up(addr: int) -> int:
    return -(-addr // PAGE_SIZE) * PAGE_SIZE


def _canonical(addr: int) -> bool:
    return addr < LOWER_HALF_END or HIGHER_HALF_START <= addr < _ADDR_LIMIT


def _range(start: int, end: int) -> str:
    return f"{start:#x}-{end:#x}"


def _where(source: str, index: int) -> str:
    return f"{source}: program header {index} (PT_LOAD)"


def _where2(source: str, a: int, b: int) -> str:
    lo, hi = sorted((a, b))
    return f"{source}: program headers {lo} and {hi} (PT_LOAD)"


def _check_header(elf: ELFFile, data: bytes, source: str) -> list[Any]:
    """Check the ELF header; return the parsed program headers (all types)."""
    e_machine_raw = _u16(data, 18)
    if e_machine_raw != ENUM_E_MACHINE["EM_X86_64"]:
        name = _enum_name(ENUM_E_MACHINE, elf["e_machine"], e_machine_raw)
        raise HvbootError(
            f"{source}: ELF header e_machine",
            f"machine is {name}, expected EM_X86_64 (62): build the kernel for x86_64",
        )
    e_type_raw = _u16(data, 16)
    if e_type_raw == ENUM_E_TYPE["ET_DYN"]:
        raise HvbootError(
            f"{source}: ELF header e_type",
            "ET_DYN (position-independent executable or shared object): position-independent "
            "kernels are not supported yet; link the kernel as a fixed-address ET_EXEC with "
            "-no-pie / -static (Rust: -C relocation-model=static)",
        )
    if e_type_raw == ENUM_E_TYPE["ET_REL"]:
        raise HvbootError(
            f"{source}: ELF header e_type",
            "ET_REL (relocatable object file), expected an executable (ET_EXEC): "
            "link the object files into a kernel first",
        )
    if e_type_raw != ENUM_E_TYPE["ET_EXEC"]:
        name = _enum_name(ENUM_E_TYPE, elf["e_type"], e_type_raw)
        raise HvbootError(
            f"{source}: ELF header e_type",
            f"file type is {name}, expected an executable (ET_EXEC (2))",
        )

    e_phnum: int = elf["e_phnum"]
    e_phoff: int = elf["e_phoff"]
    e_phentsize: int = elf["e_phentsize"]
    if e_phnum == 0:
        raise HvbootError(
            f"{source}: ELF header e_phnum",
            "no program headers (e_phnum is 0), expected at least one PT_LOAD segment to load",
        )
    if e_phnum == _PN_XNUM:
        raise HvbootError(
            f"{source}: ELF header e_phnum",
            "e_phnum is 0xffff (PN_XNUM, extended program header numbering), which hvboot "
            "does not support; a kernel needs only a handful of program headers",
        )
    if e_phentsize != _PHDR_SIZE:
        raise HvbootError(
            f"{source}: ELF header e_phentsize",
            f"program header size is {e_phentsize}, expected {_PHDR_SIZE} (sizeof(Elf64_Phdr))",
        )
    table_end = e_phoff + e_phnum * e_phentsize
    if table_end > len(data):
        raise HvbootError(
            f"{source}: ELF header e_phoff",
            f"program header table at file offset {_range(e_phoff, table_end)} "
            f"({e_phnum} entries) lies outside the file ({len(data)} bytes); "
            "the file is truncated or e_phoff/e_phnum are wrong",
        )
    phdrs: list[Any] = []
    for i in range(e_phnum):
        off = e_phoff + i * _PHDR_SIZE
        try:
            phdrs.append(elf.structs.Elf_Phdr.parse(data[off : off + _PHDR_SIZE]))
        except Exception as exc:  # defensive: the slice is always long enough
            raise HvbootError(
                f"{source}: program header {i}", f"malformed program header: {exc}"
            ) from None
    return phdrs


def _check_load_header(ph: Any, index: int, data: bytes, source: str) -> Segment | None:
    """File-level checks of one PT_LOAD header. None for an empty (p_memsz == 0) one."""
    where = _where(source, index)
    vaddr: int = ph["p_vaddr"]
    paddr: int = ph["p_paddr"]
    offset: int = ph["p_offset"]
    filesz: int = ph["p_filesz"]
    memsz: int = ph["p_memsz"]
    align: int = ph["p_align"]
    p_flags: int = ph["p_flags"]

    if filesz > memsz:
        raise HvbootError(
            where,
            f"p_filesz ({filesz:#x}) is larger than p_memsz ({memsz:#x}); "
            "expected p_filesz <= p_memsz (the file bytes must fit in the segment)",
        )
    if filesz and offset + filesz > len(data):
        raise HvbootError(
            where,
            f"file bytes {_range(offset, offset + filesz)} (p_offset + p_filesz) lie outside "
            f"the file ({len(data)} bytes); the file is truncated or p_offset/p_filesz are wrong",
        )
    if align & (align - 1):
        raise HvbootError(
            where, f"p_align is {align:#x}, expected 0 or a power of two (such as 0x1000)"
        )
    if filesz and vaddr % PAGE_SIZE != offset % PAGE_SIZE:
        raise HvbootError(
            where,
            f"p_vaddr {vaddr:#x} and p_offset {offset:#x} differ modulo the 4 KiB page size "
            f"({vaddr % PAGE_SIZE:#x} vs {offset % PAGE_SIZE:#x}); expected "
            "p_vaddr % 4096 == p_offset % 4096 so the segment can be mapped page by page",
        )
    if memsz == 0:
        return None
    end = vaddr + memsz
    if _page_up(end) >= _ADDR_LIMIT:
        raise HvbootError(
            where,
            f"p_vaddr {vaddr:#x} + p_memsz {memsz:#x} reaches or wraps past the end of the "
            "64-bit address space; expected the segment's last page to end below 2**64",
        )
    if not (_canonical(vaddr) and _canonical(end - 1)) or (vaddr < LOWER_HALF_END <= end - 1):
        raise HvbootError(
            where,
            f"virtual range {_range(vaddr, end)} is not canonical; expected addresses below "
            f"{LOWER_HALF_END:#x} (lower half) or at/above {HIGHER_HALF_START:#x} (higher half)",
        )
    flags = _flags_str(p_flags)
    readable = bool(p_flags & PF_R)
    writable = bool(p_flags & PF_W)
    executable = bool(p_flags & PF_X)
    if writable and executable:
        raise HvbootError(
            where,
            f"segment is both writable and executable (flags {flags}); hvboot enforces W^X: "
            "split it in the linker script (PHDRS) into an R-X text segment and an RW- data "
            "segment on separate pages",
        )
    if not readable:
        raise HvbootError(
            where,
            f"segment is not readable (flags {flags}); x86_64 page tables cannot map "
            "non-readable pages, expected R-X, RW- or R-- (add PF_R to the PHDRS FLAGS)",
        )
    return Segment(
        index=index,
        vaddr=vaddr,
        paddr=paddr,
        memsz=memsz,
        filesz=filesz,
        offset=offset,
        flags=flags,
        readable=readable,
        writable=writable,
        executable=executable,
    )


def _check_disjoint(segs: Sequence[Segment], source: str, physical: bool) -> None:
    """No two segments overlap or share a 4 KiB page (virtually, or physically)."""
    kind = "physical" if physical else "virtual"

    def start(s: Segment) -> int:
        return s.paddr if physical else s.vaddr

    def end(s: Segment) -> int:
        return s.paddr_end if physical else s.vaddr_end

    ordered = sorted(segs, key=lambda s: (start(s), s.index))
    for a, b in itertools.pairwise(ordered):
        if start(b) < end(a):
            raise HvbootError(
                _where2(source, a.index, b.index),
                f"{kind} ranges overlap: header {a.index} covers {_range(start(a), end(a))} and "
                f"header {b.index} covers {_range(start(b), end(b))}; "
                "expected disjoint PT_LOAD segments",
            )
        if (end(a) - 1) // PAGE_SIZE == start(b) // PAGE_SIZE:
            page = start(b) // PAGE_SIZE * PAGE_SIZE
            raise HvbootError(
                _where2(source, a.index, b.index),
                f"header {a.index} ({_range(start(a), end(a))}, {a.flags}) and header {b.index} "
                f"({_range(start(b), end(b))}, {b.flags}) share the 4 KiB {kind} page at "
                f"{page:#x}; hvboot maps per page with each segment's permissions, so align "
                "every PT_LOAD to 4 KiB in the linker script (e.g. . = ALIGN(4096))",
            )


def _check_lower_half(segs: Sequence[Segment], source: str) -> None:
    for s in segs:
        where = _where(source, s.index)
        if s.paddr < LOWER_HALF_MIN_PADDR:
            raise HvbootError(
                where,
                f"lower-half kernel segment is placed at p_paddr {s.paddr:#x} "
                f"(physical {_range(s.paddr, s.paddr_end)}), which overlaps the first 1 MiB "
                "reserved for firmware and the loader; expected p_paddr >= 0x100000 "
                "(link the kernel at 1 MiB or above, e.g. 0x200000)",
            )
        if s.paddr_end > PHYS_LIMIT:
            raise HvbootError(
                where,
                f"physical range {_range(s.paddr, s.paddr_end)} goes beyond the 52-bit "
                f"physical address limit {PHYS_LIMIT:#x}",
            )
        if s.paddr % PAGE_SIZE != s.vaddr % PAGE_SIZE:
            raise HvbootError(
                where,
                f"p_paddr {s.paddr:#x} and p_vaddr {s.vaddr:#x} differ modulo the 4 KiB page "
                "size; expected p_paddr % 4096 == p_vaddr % 4096",
            )
    _check_disjoint(segs, source, physical=True)


def load_plan_bytes(data: bytes, source: str) -> LoadPlan:
    """Check kernel ELF `data` (`source` names it in errors) and return its load plan."""
    elf = _open(data, source)
    phdrs = _check_header(elf, data, source)

    loads = [(i, ph) for i, ph in enumerate(phdrs) if _p_type(ph) == _PT_LOAD]
    if not loads:
        types = ", ".join(sorted({str(ph["p_type"]) for ph in phdrs}))
        raise HvbootError(
            f"{source}: program headers",
            f"no PT_LOAD segment among the {len(phdrs)} program headers ({types}); "
            "expected at least one loadable segment",
        )
    segs = [seg for i, ph in loads if (seg := _check_load_header(ph, i, data, source)) is not None]
    if not segs:
        raise HvbootError(
            f"{source}: program headers",
            "every PT_LOAD segment is empty (p_memsz 0); expected at least one segment "
            "with contents",
        )

    lower = [s for s in segs if s.vaddr < LOWER_HALF_END]
    higher = [s for s in segs if s.vaddr >= HIGHER_HALF_START]
    if lower and higher:
        lo, hi = lower[0], higher[0]
        raise HvbootError(
            _where2(source, lo.index, hi.index),
            f"header {lo.index} is in the lower half ({lo.vaddr:#x}) but header {hi.index} is "
            f"in the higher half ({hi.vaddr:#x}); expected every PT_LOAD in the same half",
        )
    higher_half = bool(higher)
    _check_disjoint(segs, source, physical=False)
    if not higher_half:
        _check_lower_half(segs, source)

    entry: int = elf["e_entry"]
    containing = next((s for s in segs if s.vaddr <= entry < s.vaddr_end), None)
    if containing is None:
        ranges = ", ".join(f"{s.index}: {_range(s.vaddr, s.vaddr_end)} {s.flags}" for s in segs)
        raise HvbootError(
            f"{source}: ELF header e_entry",
            f"entry point {entry:#x} is not inside any PT_LOAD segment ({ranges}); "
            "expected it inside the executable (R-X) segment: check ENTRY() in the linker script",
        )
    if not containing.executable:
        raise HvbootError(
            f"{source}: ELF header e_entry",
            f"entry point {entry:#x} is inside program header {containing.index} "
            f"({_range(containing.vaddr, containing.vaddr_end)}), which is not executable "
            f"(flags {containing.flags}); expected it inside an R-X segment",
        )

    virt_start = min(s.vaddr for s in segs) // PAGE_SIZE * PAGE_SIZE
    virt_end = _page_up(max(s.vaddr_end for s in segs))
    return LoadPlan(
        source=source,
        entry=entry,
        segments=tuple(segs),
        higher_half=higher_half,
        virt_start=virt_start,
        virt_end=virt_end,
        request=read_request(data, source),
    )


def _p_type(ph: Any) -> int:
    value = ph["p_type"]
    if isinstance(value, int):
        return value
    return int(ENUM_P_TYPE_BASE.get(str(value), -1))


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
    rows = [("segment", "virtual range", "flags", "size", "in file", "placement")]
    for s in plan.segments:
        placement = (
            "loader's choice (2 MiB aligned)" if plan.higher_half else f"at p_paddr {s.paddr:#x}"
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
