"""Tests for hvboot.loader.pe: ELF static PIE -> PE32+ EFI application.

Inputs are real links made here (gcc with GNU ld and LLD, rustc with the loader's flags)
plus a few byte-patched copies for malformed input. The output is read back with pefile,
and (tests marked ``boot``) started under OVMF in QEMU.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pefile
import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection, RelrRelocationSection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvboot.errors import HvbootError
from hvboot.loader.pe import IMAGE_BASE, check_pe, elf_to_pe

FIXTURES = Path(__file__).parent / "fixtures" / "pe"

# The toolkit's link recipe for the UEFI loader, as gcc flags.
STATIC_PIE = [
    "-fPIE",
    "-static-pie",
    "-Wl,--no-dynamic-linker",
    "-Wl,-e,efi_main",
    "-Wl,-z,norelro",
    "-Wl,-z,max-page-size=4096",
    "-Wl,--build-id=none",
]
FREESTANDING = [
    "-std=gnu11",
    "-O2",
    "-ffreestanding",
    "-fno-stack-protector",
    "-mno-red-zone",
    "-nostdlib",
    "-Wall",
    "-Werror",
]
RUSTC_FLAGS = [
    "--edition=2021",
    "--crate-type=bin",
    "-Copt-level=2",
    "-Cpanic=abort",
    "-Crelocation-model=pie",
    *(
        f"-Clink-arg={arg}"
        for arg in (
            "-nostartfiles",
            "-nostdlib",
            "-static-pie",
            "-Wl,--no-dynamic-linker",
            "-Wl,-e,efi_main",
            "-Wl,-z,norelro",
            "-Wl,-z,max-page-size=4096",
            "-Wl,--build-id=none",
        )
    ),
]

# The PE headers of every fixture fit in one page, so the converter puts the lowest
# PT_LOAD's page at RVA 0x1000 and moves everything else along with it (see hvboot.loader.pe).
HEADER_PAGE = 0x1000

R_X86_64_RELATIVE = 8
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_RELOCS_STRIPPED = 0x0001
IMAGE_FILE_LARGE_ADDRESS_AWARE = 0x0020
SCN_CODE = 0x20
SCN_INITIALIZED = 0x40
SCN_UNINITIALIZED = 0x80
SCN_DISCARDABLE = 0x0200_0000
SCN_EXECUTE = 0x2000_0000
SCN_READ = 0x4000_0000
SCN_WRITE = 0x8000_0000


# --- building inputs ---------------------------------------------------------------------


class Builder:
    """Links fixture programs on first use, once per session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cache: dict[str, bytes] = {}

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            pytest.fail(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def gcc(self, name: str, source: str, flags: list[str]) -> bytes:
        if name not in self.cache:
            output = self.directory / f"{name}.elf"
            self._run(["gcc", *FREESTANDING, str(FIXTURES / source), *flags, "-o", str(output)])
            self.cache[name] = output.read_bytes()
        return self.cache[name]

    def rust(self) -> bytes:
        if "rust" not in self.cache:
            output = self.directory / "rust.elf"
            self._run(["rustc", *RUSTC_FLAGS, "-o", str(output), str(FIXTURES / "rust_app.rs")])
            self.cache["rust"] = output.read_bytes()
        return self.cache["rust"]

    def imports(self) -> bytes:
        """A PIE that imports a symbol from a shared library (DT_NEEDED, R_X86_64_64)."""
        if "imports" not in self.cache:
            library = self.directory / "libthing.so"
            source = str(FIXTURES / "imports.c")
            self._run(
                ["gcc", "-DLIBRARY", "-shared", "-fPIC", "-nostdlib", source, "-o", str(library)]
            )
            flags = ["-fPIE", "-pie", "-Wl,--no-dynamic-linker", "-Wl,-e,efi_main"]
            self.gcc("imports", "imports.c", [*flags, str(library)])
        return self.cache["imports"]


def needs_lld() -> None:
    """ld.lld comes with set-up (scripts/setup.sh installs lld): its absence is a failure."""
    assert shutil.which("ld.lld") is not None, "ld.lld is not installed (apt-get install lld)"


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    return Builder(tmp_path_factory.mktemp("pe-fixtures"))


def build_gcc_bfd(b: Builder) -> bytes:
    return b.gcc("gcc-bfd", "efi_app.c", STATIC_PIE)


def build_gcc_lld(b: Builder) -> bytes:
    needs_lld()
    return b.gcc("gcc-lld", "efi_app.c", [*STATIC_PIE, "-fuse-ld=lld"])


def build_gcc_lld_based(b: Builder) -> bytes:
    """Linked at 0x200000 rather than 0: the converter moves the image down."""
    needs_lld()
    flags = [*STATIC_PIE, "-fuse-ld=lld", "-Wl,--image-base=0x200000"]
    return b.gcc("gcc-lld-based", "efi_app.c", flags)


def build_gcc_relr(b: Builder) -> bytes:
    return b.gcc("gcc-relr", "efi_app.c", [*STATIC_PIE, "-Wl,-z,pack-relative-relocs"])


def build_rust(b: Builder) -> bytes:
    return b.rust()


def build_norelocs(b: Builder) -> bytes:
    return b.gcc("norelocs", "efi_norelocs.c", STATIC_PIE)


APPS: dict[str, Callable[[Builder], bytes]] = {
    "gcc-bfd": build_gcc_bfd,
    "gcc-lld": build_gcc_lld,
    "gcc-lld-based": build_gcc_lld_based,
    "gcc-relr": build_gcc_relr,
    "rust": build_rust,
    "norelocs": build_norelocs,
}


@dataclass
class Converted:
    name: str
    elf: bytes
    pe_bytes: bytes
    pe: pefile.PE


@pytest.fixture(scope="session", params=sorted(APPS))
def converted(request: pytest.FixtureRequest, builder: Builder) -> Converted:
    name: str = request.param
    elf = APPS[name](builder)
    pe_bytes = elf_to_pe(elf, source=f"{name}.elf")
    return Converted(name, elf, pe_bytes, pefile.PE(data=pe_bytes))


# --- reading the ELF independently of hvboot.loader.pe (through section headers) ----------------


@dataclass
class Segment:
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int


def delta(elf: bytes) -> int:
    """RVA minus ELF address: the lowest PT_LOAD's page lands right after the headers."""
    lowest = min(segment.vaddr for segment in load_segments(elf))
    return HEADER_PAGE - lowest // 0x1000 * 0x1000


def load_segments(elf: bytes) -> list[Segment]:
    elffile = ELFFile(io.BytesIO(elf))
    return [
        Segment(s["p_offset"], s["p_vaddr"], s["p_filesz"], s["p_memsz"], s["p_flags"])
        for s in elffile.iter_segments()
        if s["p_type"] == "PT_LOAD" and s["p_memsz"]
    ]


def elf_word(elf: bytes, vaddr: int) -> int:
    for segment in load_segments(elf):
        if segment.vaddr <= vaddr < segment.vaddr + segment.filesz:
            at = segment.offset + vaddr - segment.vaddr
            value: int = struct.unpack_from("<q", elf, at)[0]
            return value
    raise AssertionError(f"{vaddr:#x} is not file-backed")


def relative_relocations(elf: bytes) -> dict[int, int]:
    """{r_offset: addend} of every R_X86_64_RELATIVE (RELA or RELR) in the section table."""
    elffile = ELFFile(io.BytesIO(elf))
    found: dict[int, int] = {}
    for section in elffile.iter_sections():
        if isinstance(section, RelrRelocationSection):
            for reloc in section.iter_relocations():
                found[reloc["r_offset"]] = elf_word(elf, reloc["r_offset"])
        elif isinstance(section, RelocationSection):
            for reloc in section.iter_relocations():
                assert reloc["r_info_type"] == R_X86_64_RELATIVE, section.name
                found[reloc["r_offset"]] = reloc["r_addend"]
    return found


def reloc_blocks(pe_bytes: bytes) -> tuple[int, list[tuple[int, int, list[int]]]]:
    """(directory size, [(page RVA, SizeOfBlock, raw entries)]) walked by hand."""
    pe = pefile.PE(data=pe_bytes, fast_load=True)
    directory = pe.OPTIONAL_HEADER.DATA_DIRECTORY[5]
    data = pe.get_data(directory.VirtualAddress, directory.Size)
    blocks = []
    at = 0
    while at < len(data):
        page, size = struct.unpack_from("<II", data, at)
        assert size >= 8
        entries = list(struct.unpack_from(f"<{(size - 8) // 2}H", data, at + 8))
        blocks.append((page, size, entries))
        at += size
    return directory.Size, blocks


# --- the converted image -----------------------------------------------------------------


def test_headers(converted: Converted) -> None:
    pe = converted.pe
    assert pe.DOS_HEADER.e_magic == 0x5A4D
    assert pe.NT_HEADERS.Signature == 0x4550
    assert pe.FILE_HEADER.Machine == 0x8664
    assert pe.FILE_HEADER.TimeDateStamp == 0
    flags = pe.FILE_HEADER.Characteristics
    assert flags & IMAGE_FILE_EXECUTABLE_IMAGE
    assert flags & IMAGE_FILE_LARGE_ADDRESS_AWARE
    assert not flags & IMAGE_FILE_RELOCS_STRIPPED
    opt = pe.OPTIONAL_HEADER
    assert opt.Magic == 0x20B
    assert opt.Subsystem == 10
    assert opt.ImageBase == IMAGE_BASE == 0x1000_0000
    assert opt.SectionAlignment == 0x1000
    assert opt.FileAlignment == 0x200
    assert opt.DllCharacteristics == 0x0040 | 0x0100  # DYNAMIC_BASE | NX_COMPAT
    assert opt.NumberOfRvaAndSizes == 16
    assert len(opt.DATA_DIRECTORY) == 16
    assert opt.SizeOfStackReserve >= opt.SizeOfStackCommit > 0
    assert opt.SizeOfHeapReserve >= opt.SizeOfHeapCommit > 0
    assert opt.SizeOfHeaders % 0x200 == 0
    assert opt.SizeOfImage % 0x1000 == 0
    last = pe.sections[-1]
    assert opt.SizeOfImage >= last.VirtualAddress + last.Misc_VirtualSize
    assert opt.SizeOfImage - 0x1000 < last.VirtualAddress + last.Misc_VirtualSize
    # only BASERELOC is filled in
    filled = [i for i, d in enumerate(opt.DATA_DIRECTORY) if d.VirtualAddress or d.Size]
    assert filled == [5]


def test_entry_point(converted: Converted) -> None:
    elffile = ELFFile(io.BytesIO(converted.elf))
    entry = converted.pe.OPTIONAL_HEADER.AddressOfEntryPoint
    assert entry == elffile.header["e_entry"] + delta(converted.elf)
    linked_at = min(segment.vaddr for segment in load_segments(converted.elf))
    assert linked_at == (0x200000 if converted.name == "gcc-lld-based" else 0)
    assert delta(converted.elf) == 0x1000 - linked_at
    section = converted.pe.get_section_by_rva(entry)
    assert section is not None and section.Name.rstrip(b"\0") == b".text"
    assert section.Characteristics & SCN_EXECUTE


def test_sections_follow_segments(converted: Converted) -> None:
    segments = load_segments(converted.elf)
    sections = converted.pe.sections
    shift = delta(converted.elf)
    assert len(sections) == len(segments) + 1
    end = 0x1000  # the headers' page
    for segment, section in zip(segments, sections, strict=False):
        assert section.VirtualAddress == segment.vaddr // 0x1000 * 0x1000 + shift
        assert section.VirtualAddress == end, "sections must be adjacent"
        assert section.VirtualAddress + section.Misc_VirtualSize >= (
            segment.vaddr + segment.memsz + shift
        )
        end = section.VirtualAddress + (section.Misc_VirtualSize + 0xFFF) // 0x1000 * 0x1000
        name = section.Name.rstrip(b"\0")
        flags = section.Characteristics
        assert bool(flags & SCN_READ) == bool(segment.flags & 4)
        assert bool(flags & SCN_WRITE) == bool(segment.flags & 2)
        assert bool(flags & SCN_EXECUTE) == bool(segment.flags & 1)
        if segment.flags & 1:
            assert (name, flags & (SCN_CODE | SCN_INITIALIZED)) == (b".text", SCN_CODE)
        elif segment.flags & 2:
            assert (name, flags & SCN_INITIALIZED) == (b".data", SCN_INITIALIZED)
        else:
            assert (name, flags & SCN_INITIALIZED) == (b".rdata", SCN_INITIALIZED)
        assert section.PointerToRawData % 0x200 == 0
        assert section.SizeOfRawData % 0x200 == 0
        assert section.PointerToRawData + section.SizeOfRawData <= len(converted.pe_bytes)
    reloc = sections[-1]
    assert reloc.Name.rstrip(b"\0") == b".reloc"
    assert reloc.VirtualAddress == end
    assert reloc.Characteristics == SCN_DISCARDABLE | SCN_READ | SCN_INITIALIZED


def test_segments_appear_in_mapped_image(converted: Converted) -> None:
    """Every PT_LOAD's bytes sit at RVA p_vaddr + delta; the relocated qwords hold
    ImageBase + delta + addend; the rest of p_memsz is zero."""
    mapped = converted.pe.get_memory_mapped_image()
    shift = delta(converted.elf)
    relocations = relative_relocations(converted.elf)
    patched = {o + i for o in relocations for i in range(8)}
    for segment in load_segments(converted.elf):
        rva = segment.vaddr + shift
        expected = bytearray(converted.elf[segment.offset : segment.offset + segment.filesz])
        expected += bytes(segment.memsz - segment.filesz)
        actual = bytearray(mapped[rva : rva + segment.memsz].ljust(segment.memsz, b"\0"))
        for i in range(segment.memsz):
            if segment.vaddr + i in patched:
                expected[i] = actual[i] = 0
        assert actual == expected, f"segment at {segment.vaddr:#x}"
    for offset, addend in relocations.items():
        (value,) = struct.unpack_from("<Q", mapped, offset + shift)
        assert value == IMAGE_BASE + shift + addend, f"relocation at {offset:#x}"


def test_base_relocations_match_elf(converted: Converted) -> None:
    relocations = relative_relocations(converted.elf)
    shift = delta(converted.elf)
    if converted.name != "norelocs":
        assert len(relocations) >= 4  # the fixture keeps that many pointers in statics
    pe = converted.pe
    rvas = [
        entry.rva
        for block in getattr(pe, "DIRECTORY_ENTRY_BASERELOC", [])
        for entry in block.entries
        if entry.type == 10  # IMAGE_REL_BASED_DIR64
    ]
    assert len(rvas) == len(set(rvas))
    assert set(rvas) == {offset + shift for offset in relocations}
    others = {
        entry.type
        for block in getattr(pe, "DIRECTORY_ENTRY_BASERELOC", [])
        for entry in block.entries
        if entry.type != 10
    }
    assert others <= {0}  # only ABSOLUTE padding


def test_base_relocation_blocks_are_well_formed(converted: Converted) -> None:
    size, blocks = reloc_blocks(converted.pe_bytes)
    assert blocks
    assert size == sum(block_size for _, block_size, _ in blocks)
    pages = [page for page, _, _ in blocks]
    assert pages == sorted(set(pages))
    for page, block_size, entries in blocks:
        assert page % 0x1000 == 0
        assert block_size == 8 + 2 * len(entries)
        assert len(entries) % 2 == 0 and entries
        padding = [e for e in entries if e >> 12 == 0]
        assert all(e == 0 for e in padding)
        assert len(padding) <= 1 or all(e >> 12 == 0 for e in entries)
    reloc = converted.pe.sections[-1]
    assert converted.pe.OPTIONAL_HEADER.DATA_DIRECTORY[5].VirtualAddress == reloc.VirtualAddress
    assert reloc.Misc_VirtualSize == size


def test_pefile_relocates_to_another_base(converted: Converted) -> None:
    """pefile applies our .reloc itself: every pointer moves with the load address."""
    new_base = 0x7654_0000
    pe = pefile.PE(data=converted.pe_bytes)
    mapped = pe.get_memory_mapped_image(ImageBase=new_base)
    shift = delta(converted.elf)
    for offset, addend in relative_relocations(converted.elf).items():
        (value,) = struct.unpack_from("<Q", mapped, offset + shift)
        assert value == new_base + shift + addend


def test_check_pe_accepts(converted: Converted) -> None:
    assert check_pe(converted.pe_bytes) == []


def test_no_relocations_emit_one_empty_block(builder: Builder) -> None:
    elf = build_norelocs(builder)
    assert relative_relocations(elf) == {}
    pe_bytes = elf_to_pe(elf)
    size, blocks = reloc_blocks(pe_bytes)
    assert size == 12
    assert len(blocks) == 1
    (_, block_size, entries) = blocks[0]
    assert (block_size, entries) == (12, [0, 0])


def test_deterministic(builder: Builder) -> None:
    elf = build_gcc_bfd(builder)
    first = elf_to_pe(elf, source="a.elf")
    assert elf_to_pe(elf, source="b.elf") == first
    assert elf_to_pe(bytes(elf)) == first


def test_subsystem(builder: Builder) -> None:
    elf = build_gcc_bfd(builder)
    pe = pefile.PE(data=elf_to_pe(elf, subsystem=11), fast_load=True)
    assert pe.OPTIONAL_HEADER.Subsystem == 11
    with pytest.raises(ValueError, match="subsystem 2"):
        elf_to_pe(elf, subsystem=2)


# --- rejected input ----------------------------------------------------------------------


def convert_error(elf: bytes, source: str = "loader.elf") -> HvbootError:
    with pytest.raises(HvbootError) as info:
        elf_to_pe(elf, source=source)
    assert info.value.where is not None
    assert info.value.where.startswith(f"{source}: ")
    assert str(info.value).startswith(f"{source}: ")
    return info.value


def test_rejects_non_elf() -> None:
    error = convert_error(b"MZ" + bytes(200))
    assert "EI_MAG" in str(error.where) and "not an ELF" in error.what
    error = convert_error(b"")
    assert "EI_MAG" in str(error.where)


def test_rejects_elf32() -> None:
    # A hand-made ELF32 header for EM_386 (gcc -m32 may not be installed).
    header = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    header += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x8048000, 52, 0, 0, 52, 32, 0, 40, 0, 0)
    error = convert_error(header)
    assert "EI_CLASS" in str(error.where)
    assert "ELFCLASS32" in error.what and "ELFCLASS64" in error.what


def test_rejects_big_endian(builder: Builder) -> None:
    elf = bytearray(build_gcc_bfd(builder))
    elf[5] = 2
    assert "EI_DATA" in str(convert_error(bytes(elf)).where)


def test_rejects_other_machine(builder: Builder) -> None:
    elf = bytearray(build_gcc_bfd(builder))
    struct.pack_into("<H", elf, 18, 183)  # EM_AARCH64
    error = convert_error(bytes(elf))
    assert "e_machine" in str(error.where) and "EM_X86_64" in error.what


def test_rejects_et_exec(builder: Builder) -> None:
    elf = builder.gcc("exec", "efi_app.c", ["-fno-pie", "-no-pie", "-static", "-Wl,-e,efi_main"])
    error = convert_error(elf)
    assert "e_type" in str(error.where)
    assert "ET_EXEC" in error.what and "ET_DYN" in error.what


def test_rejects_interpreter(builder: Builder) -> None:
    elf = builder.gcc("interp", "efi_norelocs.c", ["-fPIE", "-pie", "-Wl,-e,efi_main"])
    error = convert_error(elf)
    assert "PT_INTERP" in str(error.where) and "ld-linux" in error.what


def test_rejects_shared_library_import(builder: Builder) -> None:
    error = convert_error(builder.imports())
    assert "DT_NEEDED" in str(error.where) and "libthing.so" in error.what


def test_rejects_tls(builder: Builder) -> None:
    error = convert_error(builder.gcc("tls", "tls.c", STATIC_PIE))
    assert "PT_TLS" in str(error.where)


def test_rejects_large_page_alignment(builder: Builder) -> None:
    elf = builder.gcc("bigpage", "efi_app.c", [*STATIC_PIE, "-Wl,-z,max-page-size=0x200000"])
    error = convert_error(elf)
    assert "PT_LOAD" in str(error.where) and "p_align is 0x200000" in error.what


def rela_dyn_offset(elf: bytes) -> int:
    section = ELFFile(io.BytesIO(elf)).get_section_by_name(".rela.dyn")
    assert section is not None and section["sh_size"] >= 24
    offset: int = section["sh_offset"]
    return offset


def test_rejects_unsupported_relocation(builder: Builder) -> None:
    elf = bytearray(build_gcc_bfd(builder))
    at = rela_dyn_offset(bytes(elf)) + 24  # the second Elf64_Rela
    r_offset = struct.unpack_from("<Q", elf, at)[0]
    struct.pack_into("<Q", elf, at + 8, 6)  # R_X86_64_GLOB_DAT, symbol 0
    error = convert_error(bytes(elf))
    assert ".rela.dyn[1]" in str(error.where)
    assert "R_X86_64_GLOB_DAT" in error.what
    assert f"{r_offset:#x}" in error.what
    assert "R_X86_64_RELATIVE" in error.what


def test_accepts_r_x86_64_none(builder: Builder) -> None:
    elf = bytearray(build_gcc_bfd(builder))
    at = rela_dyn_offset(bytes(elf))
    r_offset = struct.unpack_from("<Q", elf, at)[0]
    struct.pack_into("<Q", elf, at + 8, 0)  # R_X86_64_NONE
    pe_bytes = elf_to_pe(bytes(elf))
    assert check_pe(pe_bytes) == []
    pe = pefile.PE(data=pe_bytes)
    rvas = {e.rva for b in pe.DIRECTORY_ENTRY_BASERELOC for e in b.entries if e.type == 10}
    assert r_offset + delta(bytes(elf)) not in rvas
    assert len(rvas) == len(relative_relocations(build_gcc_bfd(builder))) - 1


def program_header_offsets(elf: bytes, kind: str) -> list[int]:
    elffile = ELFFile(io.BytesIO(elf))
    base, size = elffile.header["e_phoff"], elffile.header["e_phentsize"]
    return [
        base + i * size
        for i, segment in enumerate(elffile.iter_segments())
        if segment["p_type"] == kind
    ]


def test_rejects_no_pt_load(builder: Builder) -> None:
    elf = bytearray(build_gcc_bfd(builder))
    for at in program_header_offsets(bytes(elf), "PT_LOAD"):
        struct.pack_into("<I", elf, at, 0)  # PT_NULL
    error = convert_error(bytes(elf))
    assert "program headers" in str(error.where) and "PT_LOAD" in error.what


def test_rejects_segments_sharing_a_page(builder: Builder) -> None:
    elf = bytearray(build_gcc_bfd(builder))
    loads = program_header_offsets(bytes(elf), "PT_LOAD")
    first_vaddr = struct.unpack_from("<Q", elf, loads[0] + 16)[0]
    struct.pack_into("<QQ", elf, loads[1] + 16, first_vaddr + 0x800, first_vaddr + 0x800)
    error = convert_error(bytes(elf))
    assert "program header 1 (PT_LOAD)" in str(error.where)
    assert "shares a 4 KiB page" in error.what


def test_rejects_entry_outside_code(builder: Builder) -> None:
    elf = bytearray(build_gcc_bfd(builder))
    struct.pack_into("<Q", elf, 24, 0x40)  # e_entry into the (read-only) ELF headers
    error = convert_error(bytes(elf))
    assert "e_entry" in str(error.where)


def test_rejects_truncated_file(builder: Builder) -> None:
    elf = build_gcc_bfd(builder)
    error = convert_error(elf[:0x1800])
    assert "PT_LOAD" in str(error.where) or "program headers" in str(error.where)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples every run: no flaky CI
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_elf_is_rejected_or_valid(builder: Builder, data: st.DataObject) -> None:
    """Corrupting ELF header bytes never crashes the converter: it either reports an
    HvbootError or produces an image check_pe finds nothing wrong with."""
    elf = bytearray(build_gcc_bfd(builder))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, 0x400))  # headers, program headers, dynamic tables
        elf[at] = data.draw(st.integers(0, 255))
    try:
        pe_bytes = elf_to_pe(bytes(elf), source="fuzz.elf")
    except HvbootError as error:
        assert str(error).startswith("fuzz.elf")
    else:
        assert check_pe(pe_bytes) == []


# --- check_pe finds problems -------------------------------------------------------------


def pe_offsets(pe_bytes: bytes) -> tuple[int, int]:
    """File offsets of the COFF header and the optional header."""
    (lfanew,) = struct.unpack_from("<I", pe_bytes, 0x3C)
    return lfanew + 4, lfanew + 24


def test_check_pe_reports_problems(builder: Builder) -> None:
    good = elf_to_pe(build_gcc_bfd(builder))
    coff, opt = pe_offsets(good)
    pe = pefile.PE(data=good, fast_load=True)
    reloc_raw = pe.sections[-1].PointerToRawData

    assert check_pe(b"not a PE at all")[0].startswith("not a PE image")

    bad = bytearray(good)
    struct.pack_into("<H", bad, coff, 0x14C)  # i386
    assert any("Machine" in p for p in check_pe(bytes(bad)))

    bad = bytearray(good)
    struct.pack_into("<H", bad, opt + 68, 3)  # Subsystem = WINDOWS_CUI
    assert any("Subsystem" in p for p in check_pe(bytes(bad)))

    bad = bytearray(good)
    struct.pack_into("<I", bad, reloc_raw + 4, 8 + 2 * 3)  # odd entry count
    assert any("SizeOfBlock" in p for p in check_pe(bytes(bad)))

    bad = bytearray(good)
    struct.pack_into("<I", bad, opt + 112 + 5 * 8 + 4, 0)  # BASERELOC size 0
    assert any("BASERELOC" in p for p in check_pe(bytes(bad)))

    bad = bytearray(good)
    struct.pack_into("<I", bad, opt + 16, 0x40)  # AddressOfEntryPoint into the headers
    assert any("AddressOfEntryPoint" in p for p in check_pe(bytes(bad)))

    assert any("past the end" in p for p in check_pe(good[:-0x200]))


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples every run: no flaky CI
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_check_pe_survives_corruption(builder: Builder, data: st.DataObject) -> None:
    """check_pe reports problems as strings; corrupt input never makes it raise."""
    pe_bytes = bytearray(elf_to_pe(build_gcc_bfd(builder)))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(pe_bytes) - 1))
        pe_bytes[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0x40, len(pe_bytes)))
    problems = check_pe(bytes(pe_bytes[:cut]))
    assert all(isinstance(problem, str) for problem in problems)


def test_check_pe_reports_bad_relocation_target(builder: Builder) -> None:
    good = elf_to_pe(build_gcc_bfd(builder))
    pe = pefile.PE(data=good, fast_load=True)
    bad = bytearray(good)
    struct.pack_into("<I", bad, pe.sections[-1].PointerToRawData, 0x100_0000)  # page RVA
    problems = check_pe(bytes(bad))
    assert any("past SizeOfImage" in p for p in problems)


# --- booting under OVMF ------------------------------------------------------------------

OVMF_PAIRS = [
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
]

BOOT_EXPECTED = {
    "gcc-bfd": "hvboot-pe: relocations ok",
    "gcc-lld": "hvboot-pe: relocations ok",
    "gcc-lld-based": "hvboot-pe: relocations ok",
    "gcc-relr": "hvboot-pe: relocations ok",
    "rust": "hvboot-pe (rust): relocations ok",
    "norelocs": "hvboot-pe: no relocations",
}


@pytest.mark.boot
@pytest.mark.parametrize("name", sorted(BOOT_EXPECTED))
def test_boots_under_ovmf(builder: Builder, tmp_path: Path, name: str) -> None:
    """OVMF loads the image at an address other than ImageBase, applies .reloc and runs
    efi_main, which checks its pointers, prints and shuts the machine down."""
    qemu = shutil.which("qemu-system-x86_64")
    firmware = next(((c, v) for c, v in OVMF_PAIRS if Path(c).exists() and Path(v).exists()), None)
    assert qemu is not None and firmware is not None, "qemu-system-x86_64 and OVMF are set-up's"
    esp = tmp_path / "esp"
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    (esp / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(elf_to_pe(APPS[name](builder)))
    variables = tmp_path / "vars.fd"
    shutil.copyfile(firmware[1], variables)
    command = [
        qemu,
        "-machine",
        "q35,accel=tcg",  # TCG: works without (or with a broken) /dev/kvm
        "-m",
        "256",  # ImageBase 0x10000000 is at the top of RAM: OVMF must relocate
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-net",
        "none",
        "-drive",
        f"if=pflash,format=raw,readonly=on,file={firmware[0]}",
        "-drive",
        f"if=pflash,format=raw,file={variables}",
        "-drive",
        f"format=raw,file=fat:rw:{esp}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as timeout:
        output = serial_text(timeout.stdout or b"")
        pytest.fail(f"QEMU did not shut down within 60 s; serial output:\n{output}")
    output = serial_text(result.stdout)
    assert BOOT_EXPECTED[name] in output, output
    assert "BAD" not in output


def serial_text(raw: bytes) -> str:
    """The last lines of OVMF's serial console without its terminal escape sequences."""
    text = re.sub(r"\x1b\[[0-9;=?]*[A-Za-z]", "", raw.decode(errors="replace"))
    return text[-3000:]
