"""Convert an x86_64 static-PIE ELF into a PE32+ EFI application, and check PE images.

The UEFI loader is built for the host target (x86_64-unknown-linux-gnu) as a static PIE
whose entry point is ``extern "efiapi"``. Firmware only loads PE/COFF images, so this
module lays the ELF's ``PT_LOAD`` segments out as PE sections and turns the ELF's
``R_X86_64_RELATIVE`` relocations into PE base relocations (``IMAGE_REL_BASED_DIR64``).

Layout: the PE headers own RVA 0 up to the first page boundary, and both GNU ld and LLD
link a static PIE at address 0 with its first segment (ELF headers, dynamic tables and,
with LLD, ``.rodata``) in that page. The whole image is therefore moved by a whole
number of pages (up, for an ELF linked at 0): a segment at ELF address ``vaddr`` lands
at RVA ``vaddr + delta`` with ``delta = 0x1000 - page_floor(lowest PT_LOAD address)``
(``0x1000`` for an ELF linked at 0). A PIE can be loaded at any page-aligned bias, so
this changes nothing but the bias: each relocated pointer is written as
``IMAGE_BASE + delta + addend``, the entry point is ``e_entry + delta``, and the firmware
applies the DIR64 fixups when it loads the image somewhere other than ``IMAGE_BASE``.

References are to the Microsoft PE Format specification ("PE/COFF"): 3.x headers, 4
section table, 6.6 ``.reloc`` section, and to the System V gABI / x86-64 psABI for ELF.
"""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pefile
from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_RELOC_TYPE_x64
from elftools.elf.segments import InterpSegment

from hvboot.errors import HvbootError
from hvboot.kernel.elf import PF_R, PF_W, PF_X

__all__ = [
    "FILE_ALIGNMENT",
    "IMAGE_BASE",
    "SECTION_ALIGNMENT",
    "SUBSYSTEM_EFI_APPLICATION",
    "check_pe",
    "elf_to_pe",
]

# --- PE/COFF constants (PE Format spec, sections 3.3 - 6.6) -----------------------------

IMAGE_BASE = 0x1000_0000  # preferred load address; a multiple of 64 KiB (3.4.2)
SECTION_ALIGNMENT = 0x1000
FILE_ALIGNMENT = 0x200

SUBSYSTEM_EFI_APPLICATION = 10
_EFI_SUBSYSTEMS = {
    10: "EFI_APPLICATION",
    11: "EFI_BOOT_SERVICE_DRIVER",
    12: "EFI_RUNTIME_DRIVER",
    13: "EFI_ROM",
}

_MACHINE_AMD64 = 0x8664
_PE32PLUS_MAGIC = 0x20B

_FILE_RELOCS_STRIPPED = 0x0001
_FILE_EXECUTABLE_IMAGE = 0x0002
_FILE_LARGE_ADDRESS_AWARE = 0x0020

_DLL_DYNAMIC_BASE = 0x0040
_DLL_NX_COMPAT = 0x0100

_SCN_CNT_CODE = 0x0000_0020
_SCN_CNT_INITIALIZED_DATA = 0x0000_0040
_SCN_CNT_UNINITIALIZED_DATA = 0x0000_0080
_SCN_MEM_DISCARDABLE = 0x0200_0000
_SCN_MEM_EXECUTE = 0x2000_0000
_SCN_MEM_READ = 0x4000_0000
_SCN_MEM_WRITE = 0x8000_0000

_DIR_BASERELOC = 5
_NUM_DATA_DIRECTORIES = 16

_REL_BASED_ABSOLUTE = 0
_REL_BASED_DIR64 = 10

_DOS_HEADER_SIZE = 0x40
_PE_SIGNATURE = b"PE\0\0"
_COFF_HEADER = struct.Struct("<HHIIIHH")
_OPTIONAL_HEADER = struct.Struct("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII")
_DATA_DIRECTORY = struct.Struct("<II")
_SECTION_HEADER = struct.Struct("<8sIIIIIIHHI")
_OPTIONAL_HEADER_SIZE = _OPTIONAL_HEADER.size + _NUM_DATA_DIRECTORIES * _DATA_DIRECTORY.size
_RELOC_BLOCK_HEADER = struct.Struct("<II")

_STACK_RESERVE = 0x10_0000
_STACK_COMMIT = 0x1000
_HEAP_RESERVE = 0x10_0000
_HEAP_COMMIT = 0x1000

# --- ELF constants (System V gABI, x86-64 psABI) ----------------------------------------

_DT_RELA_TAG = 7  # value of DT_PLTREL when .rela.plt uses RELA entries
_RELA_ENTRY = struct.Struct("<QQq")
_R_X86_64_NONE = 0
_R_X86_64_RELATIVE = 8
_RELOC_TYPE_NAMES = {value: name for name, value in ENUM_RELOC_TYPE_x64.items()}

_U64_MASK = (1 << 64) - 1

# What pyelftools (and the construct library under it) raise on malformed input.
_PARSE_ERRORS = (ELFError, ValueError, struct.error, EOFError, OverflowError, IndexError, KeyError)


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _page_floor(value: int) -> int:
    return value - value % SECTION_ALIGNMENT


# --- reading the ELF ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Load:
    """One PT_LOAD program header."""

    index: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int
    align: int

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz


@dataclass(frozen=True)
class _DynamicTag:
    index: int
    tag: int | str
    value: int
    needed: str | None


@dataclass
class _Elf:
    loads: list[_Load]
    entry: int
    dynamic: list[_DynamicTag]


def _relocation_name(rtype: int) -> str:
    return _RELOC_TYPE_NAMES.get(rtype, f"type {rtype}")


def _parse_elf(elf: bytes, source: str) -> _Elf:
    """Read and validate the ELF header and program headers with pyelftools."""
    if len(elf) < 16 or elf[:4] != b"\x7fELF":
        raise HvbootError(
            f"{source}: e_ident[EI_MAG]",
            f"starts with {elf[:4]!r}, expected the ELF magic b'\\x7fELF' (not an ELF file)",
        )
    if elf[4] != 2:
        kind = {1: "ELFCLASS32 (32-bit)"}.get(elf[4], f"class {elf[4]}")
        raise HvbootError(f"{source}: e_ident[EI_CLASS]", f"is {kind}, expected ELFCLASS64")
    if elf[5] != 1:
        raise HvbootError(
            f"{source}: e_ident[EI_DATA]",
            f"is {elf[5]}, expected 1 (ELFDATA2LSB, little-endian)",
        )
    try:
        elffile = ELFFile(io.BytesIO(elf))
        header = elffile.header
        machine = header["e_machine"]
        etype = header["e_type"]
        entry = int(header["e_entry"])
    except _PARSE_ERRORS as exc:
        raise HvbootError(f"{source}: ELF header", f"cannot be parsed: {exc}") from exc

    if machine != "EM_X86_64":
        raise HvbootError(f"{source}: e_machine", f"is {machine}, expected EM_X86_64")
    if etype != "ET_DYN":
        hint = (
            " (a position-dependent executable: link with -static-pie)"
            if etype == "ET_EXEC"
            else ""
        )
        raise HvbootError(
            f"{source}: e_type",
            f"is {etype}{hint}, expected ET_DYN (a static PIE)",
        )

    loads: list[_Load] = []
    dynamic: list[_DynamicTag] = []
    try:
        for index, segment in enumerate(elffile.iter_segments()):
            ptype = segment["p_type"]
            end = int(segment["p_offset"]) + int(segment["p_filesz"])
            if ptype != "PT_LOAD" and end > len(elf):
                raise HvbootError(
                    f"{source}: program header {index} ({ptype})",
                    f"ends at file offset {end:#x}, past the end of the file ({len(elf):#x})",
                )
            if isinstance(segment, InterpSegment):
                raise HvbootError(
                    f"{source}: program header {index} (PT_INTERP)",
                    f"requests the dynamic linker {segment.get_interp_name()!r}; expected a "
                    "self-contained static PIE (link with -static-pie "
                    "-Wl,--no-dynamic-linker)",
                )
            if ptype == "PT_TLS":
                raise HvbootError(
                    f"{source}: program header {index} (PT_TLS)",
                    "declares thread-local storage, which UEFI does not provide; "
                    "expected no thread-locals",
                )
            if ptype == "PT_LOAD":
                loads.append(
                    _Load(
                        index=index,
                        offset=int(segment["p_offset"]),
                        vaddr=int(segment["p_vaddr"]),
                        filesz=int(segment["p_filesz"]),
                        memsz=int(segment["p_memsz"]),
                        flags=int(segment["p_flags"]),
                        align=int(segment["p_align"]),
                    )
                )
            elif isinstance(segment, DynamicSegment):
                for tag_index, tag in enumerate(segment.iter_tags()):
                    name = tag.entry.d_tag
                    # pyelftools resolves DT_NEEDED's string into a dynamic attribute.
                    needed = str(getattr(tag, "needed", "?")) if name == "DT_NEEDED" else None
                    dynamic.append(_DynamicTag(tag_index, name, int(tag.entry.d_val), needed))
    except HvbootError:
        raise
    except _PARSE_ERRORS as exc:
        raise HvbootError(f"{source}: program headers", f"cannot be parsed: {exc}") from exc

    return _Elf(loads=_check_loads(loads, elf, source), entry=entry, dynamic=dynamic)


def _check_loads(loads: list[_Load], elf: bytes, source: str) -> list[_Load]:
    """Validate PT_LOAD segments; return the non-empty ones in address order."""
    kept: list[_Load] = []
    for load in loads:
        where = f"{source}: program header {load.index} (PT_LOAD)"
        if load.filesz > load.memsz:
            raise HvbootError(where, f"p_filesz {load.filesz:#x} exceeds p_memsz {load.memsz:#x}")
        if load.offset + load.filesz > len(elf):
            raise HvbootError(
                where,
                f"p_offset {load.offset:#x} + p_filesz {load.filesz:#x} runs past the end "
                f"of the file ({len(elf):#x} bytes)",
            )
        if load.align > SECTION_ALIGNMENT:
            raise HvbootError(
                where,
                f"p_align is {load.align:#x}, expected at most the PE section alignment "
                f"{SECTION_ALIGNMENT:#x} (link with -z max-page-size=4096)",
            )
        if load.memsz == 0:
            continue
        if load.vaddr + load.memsz > 0xFFFF_0000:
            raise HvbootError(
                where, f"ends at {load.end:#x}, expected the image to stay below 4 GiB"
            )
        kept.append(load)
    if not kept:
        raise HvbootError(f"{source}: program headers", "contain no non-empty PT_LOAD segment")
    for previous, load in itertools.pairwise(kept):
        if load.vaddr < previous.vaddr:
            raise HvbootError(
                f"{source}: program header {load.index} (PT_LOAD)",
                f"p_vaddr {load.vaddr:#x} is below that of program header {previous.index}; "
                "expected PT_LOAD segments in ascending address order",
            )
        if _page_floor(load.vaddr) < _align_up(previous.end, SECTION_ALIGNMENT):
            raise HvbootError(
                f"{source}: program header {load.index} (PT_LOAD)",
                f"p_vaddr {load.vaddr:#x} shares a 4 KiB page with program header "
                f"{previous.index} (ends at {previous.end:#x}); expected every segment on its "
                "own pages (link with -z max-page-size=4096)",
            )
    return kept


# --- relocations -------------------------------------------------------------------------


def _read_vaddr(elf: bytes, loads: list[_Load], vaddr: int, size: int) -> bytes | None:
    """The file bytes backing [vaddr, vaddr + size), or None if not file-backed."""
    for load in loads:
        if load.vaddr <= vaddr and vaddr + size <= load.vaddr + load.filesz:
            start = load.offset + vaddr - load.vaddr
            return elf[start : start + size]
    return None


def _tag_values(dynamic: list[_DynamicTag]) -> dict[int | str, int]:
    values: dict[int | str, int] = {}
    for tag in dynamic:
        values.setdefault(tag.tag, tag.value)
    return values


def _table(
    elf: bytes,
    loads: list[_Load],
    values: dict[int | str, int],
    source: str,
    address_tag: str,
    size_tag: str,
) -> bytes:
    address = values[address_tag]
    if size_tag not in values:
        raise HvbootError(f"{source}: {size_tag}", f"is missing, expected with {address_tag}")
    size = values[size_tag]
    if size == 0:
        return b""
    data = _read_vaddr(elf, loads, address, size)
    if data is None:
        raise HvbootError(
            f"{source}: {address_tag}",
            f"table at {address:#x} ({size:#x} bytes) is not inside a PT_LOAD segment's file data",
        )
    return data


def _rela_entries(table: bytes, label: str, source: str) -> Iterator[tuple[int, int]]:
    """Yield (r_offset, r_addend) of each R_X86_64_RELATIVE entry; reject other types."""
    if len(table) % _RELA_ENTRY.size:
        raise HvbootError(
            f"{source}: {label}",
            f"size {len(table):#x} is not a multiple of the {_RELA_ENTRY.size}-byte Elf64_Rela",
        )
    for index, (offset, info, addend) in enumerate(_RELA_ENTRY.iter_unpack(table)):
        rtype = info & 0xFFFF_FFFF
        if rtype == _R_X86_64_NONE:
            continue
        if rtype != _R_X86_64_RELATIVE:
            raise HvbootError(
                f"{source}: {label}[{index}] r_info",
                f"relocation {_relocation_name(rtype)} at offset {offset:#x} is not supported; "
                "expected R_X86_64_RELATIVE or R_X86_64_NONE (the image must not import "
                "symbols)",
            )
        yield offset, addend


def _relr_entries(
    table: bytes, elf: bytes, loads: list[_Load], source: str
) -> Iterator[tuple[int, int]]:
    """Decode a DT_RELR table (gABI packed relative relocations); addends are implicit."""
    if len(table) % 8:
        raise HvbootError(f"{source}: .relr.dyn", f"size {len(table):#x} is not a multiple of 8")
    next_address: int | None = None
    for index, (word,) in enumerate(struct.iter_unpack("<Q", table)):
        if word & 1 == 0:
            addresses = [word]
            next_address = word + 8
        else:
            if next_address is None:
                raise HvbootError(
                    f"{source}: .relr.dyn[{index}]",
                    "is a bitmap without a preceding address entry",
                )
            addresses = [next_address + 8 * bit for bit in range(63) if word >> (bit + 1) & 1]
            next_address += 63 * 8
        for address in addresses:
            stored = _read_vaddr(elf, loads, address, 8)
            if stored is None:
                raise HvbootError(
                    f"{source}: .relr.dyn[{index}]",
                    f"relocates {address:#x}, which is not inside a PT_LOAD segment's file data",
                )
            yield address, struct.unpack("<q", stored)[0]


def _relocations(parsed: _Elf, elf: bytes, source: str) -> dict[int, int]:
    """Every relative relocation as {ELF address: addend}, after checking the dynamic tags."""
    for tag in parsed.dynamic:
        if tag.tag == "DT_NEEDED":
            raise HvbootError(
                f"{source}: .dynamic[{tag.index}] DT_NEEDED",
                f"imports the shared library {tag.needed!r}; expected no imports "
                "(a self-contained static PIE)",
            )
    values = _tag_values(parsed.dynamic)
    if values.get("DT_RELSZ", 0) or values.get("DT_REL", 0):
        raise HvbootError(
            f"{source}: DT_REL",
            "uses Elf64_Rel relocations, expected Elf64_Rela (DT_RELA) as x86_64 does",
        )

    entries: list[tuple[str, int, int]] = []
    if "DT_RELA" in values:
        if values.get("DT_RELAENT", _RELA_ENTRY.size) != _RELA_ENTRY.size:
            raise HvbootError(
                f"{source}: DT_RELAENT",
                f"is {values['DT_RELAENT']}, expected {_RELA_ENTRY.size}",
            )
        table = _table(elf, parsed.loads, values, source, "DT_RELA", "DT_RELASZ")
        entries += [(".rela.dyn", o, a) for o, a in _rela_entries(table, ".rela.dyn", source)]
    if "DT_JMPREL" in values and values.get("DT_PLTRELSZ", 0):
        if values.get("DT_PLTREL") != _DT_RELA_TAG:
            raise HvbootError(f"{source}: DT_PLTREL", "expected DT_RELA entries in .rela.plt")
        table = _table(elf, parsed.loads, values, source, "DT_JMPREL", "DT_PLTRELSZ")
        entries += [(".rela.plt", o, a) for o, a in _rela_entries(table, ".rela.plt", source)]
    if "DT_RELR" in values:
        if values.get("DT_RELRENT", 8) != 8:
            raise HvbootError(f"{source}: DT_RELRENT", f"is {values['DT_RELRENT']}, expected 8")
        table = _table(elf, parsed.loads, values, source, "DT_RELR", "DT_RELRSZ")
        entries += [(".relr.dyn", o, a) for o, a in _relr_entries(table, elf, parsed.loads, source)]

    relocations: dict[int, int] = {}
    for label, offset, addend in entries:
        if not any(load.vaddr <= offset and offset + 8 <= load.end for load in parsed.loads):
            raise HvbootError(
                f"{source}: {label}",
                f"relocates {offset:#x}, expected an address inside a PT_LOAD segment",
            )
        if relocations.get(offset, addend) != addend:
            raise HvbootError(
                f"{source}: {label}",
                f"relocates {offset:#x} twice with different addends "
                f"({relocations[offset]:#x} and {addend:#x})",
            )
        relocations[offset] = addend
    return relocations


# --- building the PE ---------------------------------------------------------------------


@dataclass
class _Section:
    name: bytes
    rva: int
    virtual_size: int
    data: bytearray
    characteristics: int
    raw_pointer: int = 0

    @property
    def raw_size(self) -> int:
        return _align_up(len(self.data), FILE_ALIGNMENT)


def _segment_characteristics(flags: int, initialized: bool) -> tuple[bytes, int]:
    """Section name and characteristics (PE/COFF 4.1) for an ELF segment's p_flags."""
    access = 0
    if flags & PF_R:
        access |= _SCN_MEM_READ
    if flags & PF_W:
        access |= _SCN_MEM_WRITE
    if flags & PF_X:
        return b".text", access | _SCN_MEM_EXECUTE | _SCN_CNT_CODE
    if not initialized:
        return b".bss", access | _SCN_CNT_UNINITIALIZED_DATA
    if flags & PF_W:
        return b".data", access | _SCN_CNT_INITIALIZED_DATA
    return b".rdata", access | _SCN_CNT_INITIALIZED_DATA


def _reloc_blocks(rvas: list[int]) -> bytes:
    """PE/COFF 6.6 base relocation blocks, one per 4 KiB page, each a multiple of 4 bytes."""
    pages: dict[int, list[int]] = {}
    for rva in sorted(rvas):
        pages.setdefault(_page_floor(rva), []).append(_REL_BASED_DIR64 << 12 | rva % 0x1000)
    if not pages:
        # Nothing to relocate: still emit one well-formed block (two ABSOLUTE entries) so
        # the image keeps a valid, non-empty .reloc rather than looking relocation-stripped.
        pages[0] = []
    out = bytearray()
    for page, entries in pages.items():
        while not entries or len(entries) % 2:
            entries.append(_REL_BASED_ABSOLUTE << 12)
        out += _RELOC_BLOCK_HEADER.pack(page, _RELOC_BLOCK_HEADER.size + 2 * len(entries))
        out += struct.pack(f"<{len(entries)}H", *entries)
    return bytes(out)


def _headers_size(section_count: int) -> int:
    return _align_up(
        _DOS_HEADER_SIZE
        + len(_PE_SIGNATURE)
        + _COFF_HEADER.size
        + _OPTIONAL_HEADER_SIZE
        + section_count * _SECTION_HEADER.size,
        FILE_ALIGNMENT,
    )


def elf_to_pe(elf: bytes, *, source: str = "<elf>", subsystem: int = 10) -> bytes:
    """Convert an x86_64 static-PIE ELF to a PE32+ image (an EFI application by default).

    ``source`` names the input in error messages. Each PT_LOAD segment becomes one section
    at RVA ``p_vaddr + delta`` (see the module docstring); R_X86_64_RELATIVE relocations
    are applied for ``IMAGE_BASE`` and emitted as DIR64 base relocations in ``.reloc``.
    Raises HvbootError naming the file and field for input this cannot convert faithfully.
    """
    if subsystem not in _EFI_SUBSYSTEMS:
        raise ValueError(
            f"subsystem {subsystem} is not an EFI subsystem, expected one of "
            f"{sorted(_EFI_SUBSYSTEMS)}"
        )
    parsed = _parse_elf(elf, source)
    relocations = _relocations(parsed, elf, source)
    loads = parsed.loads

    section_count = len(loads) + 1
    size_of_headers = _headers_size(section_count)
    header_span = _align_up(size_of_headers, SECTION_ALIGNMENT)
    delta = header_span - _page_floor(loads[0].vaddr)
    bias = IMAGE_BASE + delta

    if not any(load.flags & PF_X and load.vaddr <= parsed.entry < load.end for load in loads):
        raise HvbootError(
            f"{source}: e_entry",
            f"{parsed.entry:#x} is not inside an executable PT_LOAD segment",
        )

    sections: list[_Section] = []
    for load in loads:
        start = _page_floor(load.vaddr)
        lead = load.vaddr - start
        data = bytearray(lead) + elf[load.offset : load.offset + load.filesz]
        for address, addend in relocations.items():
            if load.vaddr <= address < load.end:
                at = address - start
                if at + 8 > len(data):  # a relocation in the zero-fill part: materialise it
                    data += bytes(at + 8 - len(data))
                data[at : at + 8] = struct.pack("<Q", (bias + addend) & _U64_MASK)
        if not any(data):
            data = bytearray()
        name, characteristics = _segment_characteristics(load.flags, bool(data))
        sections.append(_Section(name, start + delta, lead + load.memsz, data, characteristics))
    # PE/COFF 4: section RVAs must be ascending and adjacent; widen each one over any gap.
    for previous, section in itertools.pairwise(sections):
        previous.virtual_size = section.rva - previous.rva

    reloc_data = bytearray(_reloc_blocks([address + delta for address in relocations]))
    last = sections[-1]
    reloc_rva = _align_up(last.rva + last.virtual_size, SECTION_ALIGNMENT)
    sections.append(
        _Section(
            b".reloc",
            reloc_rva,
            len(reloc_data),
            reloc_data,
            _SCN_CNT_INITIALIZED_DATA | _SCN_MEM_READ | _SCN_MEM_DISCARDABLE,
        )
    )
    size_of_image = _align_up(reloc_rva + len(reloc_data), SECTION_ALIGNMENT)

    file_offset = size_of_headers
    for section in sections:
        if section.data:
            section.raw_pointer = file_offset
            file_offset += section.raw_size

    writable_code = any(
        s.characteristics & _SCN_MEM_WRITE and s.characteristics & _SCN_MEM_EXECUTE
        for s in sections
    )
    dll_characteristics = _DLL_DYNAMIC_BASE | (0 if writable_code else _DLL_NX_COMPAT)
    code = [s for s in sections if s.characteristics & _SCN_CNT_CODE]

    directories = [(0, 0)] * _NUM_DATA_DIRECTORIES
    directories[_DIR_BASERELOC] = (reloc_rva, len(reloc_data))

    out = bytearray(size_of_headers)
    # DOS header (PE/COFF 2): only e_magic and e_lfanew matter to a PE loader.
    out[0:2] = b"MZ"
    struct.pack_into("<I", out, 0x3C, _DOS_HEADER_SIZE)
    at = _DOS_HEADER_SIZE
    out[at : at + 4] = _PE_SIGNATURE
    at += 4
    _COFF_HEADER.pack_into(
        out,
        at,
        _MACHINE_AMD64,
        len(sections),
        0,  # TimeDateStamp: 0 keeps the output deterministic
        0,  # PointerToSymbolTable
        0,  # NumberOfSymbols
        _OPTIONAL_HEADER_SIZE,
        _FILE_EXECUTABLE_IMAGE | _FILE_LARGE_ADDRESS_AWARE,
    )
    at += _COFF_HEADER.size
    _OPTIONAL_HEADER.pack_into(
        out,
        at,
        _PE32PLUS_MAGIC,
        0,  # MajorLinkerVersion
        0,  # MinorLinkerVersion
        sum(s.raw_size for s in code),  # SizeOfCode
        sum(s.raw_size for s in sections if s.characteristics & _SCN_CNT_INITIALIZED_DATA),
        sum(
            _align_up(s.virtual_size, SECTION_ALIGNMENT)
            for s in sections
            if s.characteristics & _SCN_CNT_UNINITIALIZED_DATA
        ),
        parsed.entry + delta,  # AddressOfEntryPoint
        code[0].rva if code else 0,  # BaseOfCode
        IMAGE_BASE,
        SECTION_ALIGNMENT,
        FILE_ALIGNMENT,
        0,  # MajorOperatingSystemVersion
        0,  # MinorOperatingSystemVersion
        0,  # MajorImageVersion
        0,  # MinorImageVersion
        0,  # MajorSubsystemVersion
        0,  # MinorSubsystemVersion
        0,  # Win32VersionValue (reserved, must be 0)
        size_of_image,
        size_of_headers,
        0,  # CheckSum: not verified for EFI images
        subsystem,
        dll_characteristics,
        _STACK_RESERVE,
        _STACK_COMMIT,
        _HEAP_RESERVE,
        _HEAP_COMMIT,
        0,  # LoaderFlags (reserved, must be 0)
        _NUM_DATA_DIRECTORIES,
    )
    at += _OPTIONAL_HEADER.size
    for rva, size in directories:
        _DATA_DIRECTORY.pack_into(out, at, rva, size)
        at += _DATA_DIRECTORY.size
    for section in sections:
        _SECTION_HEADER.pack_into(
            out,
            at,
            section.name,
            section.virtual_size,
            section.rva,
            section.raw_size if section.data else 0,
            section.raw_pointer,
            0,  # PointerToRelocations
            0,  # PointerToLinenumbers
            0,  # NumberOfRelocations
            0,  # NumberOfLinenumbers
            section.characteristics,
        )
        at += _SECTION_HEADER.size
    for section in sections:
        if section.data:
            out += section.data
            out += bytes(section.raw_size - len(section.data))
    return bytes(out)


# --- checking a PE -----------------------------------------------------------------------


def check_pe(pe: bytes) -> list[str]:
    """Problems that would stop UEFI firmware loading ``pe`` as an x64 EFI image.

    Parses the headers with pefile and walks the base relocation blocks. An empty list
    means no problem was found.
    """
    try:
        image = pefile.PE(data=pe, fast_load=True)
    except pefile.PEFormatError as exc:
        return [f"not a PE image: {exc.value}"]
    try:
        return _check_parsed(image, pe)
    finally:
        image.close()


def _check_parsed(image: pefile.PE, pe: bytes) -> list[str]:
    problems: list[str] = []
    coff = image.FILE_HEADER
    opt = image.OPTIONAL_HEADER
    if coff.Machine != _MACHINE_AMD64:
        problems.append(f"COFF Machine is {coff.Machine:#x}, expected {_MACHINE_AMD64:#x} (x64)")
    if not coff.Characteristics & _FILE_EXECUTABLE_IMAGE:
        problems.append("COFF Characteristics lacks IMAGE_FILE_EXECUTABLE_IMAGE")
    if coff.Characteristics & _FILE_RELOCS_STRIPPED:
        problems.append("COFF Characteristics has IMAGE_FILE_RELOCS_STRIPPED")
    if opt.Magic != _PE32PLUS_MAGIC:
        problems.append(f"optional header Magic is {opt.Magic:#x}, expected 0x20b (PE32+)")
        return problems
    if opt.Subsystem not in _EFI_SUBSYSTEMS:
        problems.append(f"Subsystem is {opt.Subsystem}, expected an EFI subsystem (10-13)")

    section_alignment = int(opt.SectionAlignment)
    file_alignment = int(opt.FileAlignment)
    size_of_image = int(opt.SizeOfImage)
    if section_alignment < 0x1000 or section_alignment & (section_alignment - 1):
        problems.append(f"SectionAlignment {section_alignment:#x} is not a power of 2 >= 4 KiB")
        section_alignment = 0x1000
    if not 0x200 <= file_alignment <= 0x10000 or file_alignment & (file_alignment - 1):
        problems.append(f"FileAlignment {file_alignment:#x} is not a power of 2 in 512..64K")
        file_alignment = 0x200
    if opt.ImageBase % 0x10000:
        problems.append(f"ImageBase {opt.ImageBase:#x} is not a multiple of 64 KiB")
    if size_of_image % section_alignment:
        problems.append(f"SizeOfImage {size_of_image:#x} is not a multiple of SectionAlignment")
    if opt.SizeOfHeaders % file_alignment or opt.SizeOfHeaders > len(pe):
        problems.append(f"SizeOfHeaders {opt.SizeOfHeaders:#x} is misaligned or past the file")

    end_of_previous = _align_up(int(opt.SizeOfHeaders), section_alignment)
    for section in image.sections:
        name = section.Name.rstrip(b"\0").decode("ascii", "replace")
        rva, vsize = int(section.VirtualAddress), int(section.Misc_VirtualSize)
        raw_pointer, raw_size = int(section.PointerToRawData), int(section.SizeOfRawData)
        if rva % section_alignment:
            problems.append(f"section {name}: VirtualAddress {rva:#x} is not section-aligned")
        if rva != end_of_previous:
            problems.append(
                f"section {name}: VirtualAddress {rva:#x}, expected {end_of_previous:#x} "
                "(sections must be ascending and adjacent)"
            )
        end_of_previous = _align_up(rva + max(vsize, 1), section_alignment)
        if rva + vsize > size_of_image:
            problems.append(f"section {name}: ends at {rva + vsize:#x}, past SizeOfImage")
        if raw_size % file_alignment or raw_pointer % file_alignment:
            problems.append(f"section {name}: raw data is not file-aligned")
        if raw_size and raw_pointer + raw_size > len(pe):
            problems.append(
                f"section {name}: raw data {raw_pointer:#x}+{raw_size:#x} runs past the end "
                f"of the file ({len(pe):#x})"
            )
        flags = int(section.Characteristics)
        if (
            flags & _SCN_MEM_WRITE
            and flags & _SCN_MEM_EXECUTE
            and (opt.DllCharacteristics & _DLL_NX_COMPAT)
        ):
            problems.append(f"section {name}: writable and executable in an NX_COMPAT image")

    entry = int(opt.AddressOfEntryPoint)
    entry_section = image.get_section_by_rva(entry)
    if entry_section is None or not entry_section.Characteristics & _SCN_MEM_EXECUTE:
        problems.append(f"AddressOfEntryPoint {entry:#x} is not in an executable section")

    problems += _check_relocations(image, size_of_image)
    return problems


def _check_relocations(image: pefile.PE, size_of_image: int) -> list[str]:
    """Walk the BASERELOC directory the way EDK2's PE/COFF loader does."""
    opt = image.OPTIONAL_HEADER
    if opt.NumberOfRvaAndSizes <= _DIR_BASERELOC or len(opt.DATA_DIRECTORY) <= _DIR_BASERELOC:
        return ["optional header has no BASERELOC data directory"]
    directory = opt.DATA_DIRECTORY[_DIR_BASERELOC]
    rva, size = int(directory.VirtualAddress), int(directory.Size)
    if size == 0:
        return ["BASERELOC directory is empty: the image cannot be relocated"]
    section = image.get_section_by_rva(rva)
    if section is None or rva + size > section.VirtualAddress + max(
        section.Misc_VirtualSize, section.SizeOfRawData
    ):
        return [f"BASERELOC directory {rva:#x}+{size:#x} is not inside one section"]
    data = image.get_data(rva, size)
    if rva + size > section.VirtualAddress + section.SizeOfRawData or len(data) < size:
        return [f"BASERELOC directory {rva:#x}+{size:#x} is not backed by file data"]

    problems: list[str] = []
    at = 0
    while at < size:
        if size - at < _RELOC_BLOCK_HEADER.size:
            problems.append(f"BASERELOC block at +{at:#x}: truncated header")
            break
        page, block_size = _RELOC_BLOCK_HEADER.unpack_from(data, at)
        if block_size < _RELOC_BLOCK_HEADER.size or block_size > size - at:
            problems.append(
                f"BASERELOC block at +{at:#x}: SizeOfBlock {block_size:#x} does not fit the "
                f"directory ({size:#x} bytes)"
            )
            break
        if block_size % 4:
            problems.append(
                f"BASERELOC block at +{at:#x}: SizeOfBlock {block_size:#x} is not a multiple "
                "of 4 (odd entry count without ABSOLUTE padding)"
            )
        if page >= size_of_image:
            problems.append(f"BASERELOC block at +{at:#x}: page {page:#x} is past SizeOfImage")
        count = (block_size - _RELOC_BLOCK_HEADER.size) // 2
        for (entry,) in struct.iter_unpack("<H", data[at + 8 : at + 8 + 2 * count]):
            kind, target = entry >> 12, page + (entry & 0xFFF)
            if kind == _REL_BASED_ABSOLUTE:
                continue
            if kind != _REL_BASED_DIR64:
                problems.append(f"base relocation at {target:#x}: type {kind}, expected DIR64")
            elif target + 8 > size_of_image or image.get_section_by_rva(target) is None:
                problems.append(f"base relocation at {target:#x}: outside every section")
        at += block_size
    return problems
