"""Tests for hvboot.kernel.elf: real kernels built with gcc/ld, bad ones crafted from them."""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvboot.errors import HvbootError
from hvboot.kernel.elf import (
    LoadPlan,
    describe,
    load_plan,
    load_plan_bytes,
    symbol_address,
    symbols,
)

FIXTURES = Path(__file__).parent / "fixtures" / "elf"
HIGHER_BASE = 0xFFFF_FFFF_8000_0000
LOWER_BASE = 0x20_0000

CFLAGS = [
    "-O2",
    "-ffreestanding",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
    "-mno-red-zone",
    "-nostdlib",
]
LDFLAGS = ["-nostdlib", "-static", "-no-pie", "--no-warn-rwx-segments"]


@dataclass(frozen=True)
class Kernels:
    higher: Path  # good higher-half kernel, 4 PT_LOADs (text, rodata, data, bss)
    lower: Path  # good lower-half kernel at 2 MiB, 3 PT_LOADs
    rwx: Path  # one RWX PT_LOAD
    pie: Path  # ET_DYN
    elf32: Path  # ELF32 i386
    obj: Path  # ET_REL object file


def _run(*cmd: str | Path) -> None:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{result.stderr}")


@pytest.fixture(scope="session")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Kernels:
    out = tmp_path_factory.mktemp("kernels")
    src = FIXTURES / "kernel.c"
    k_obj = out / "kernel-kernel-model.o"
    _run("gcc", *CFLAGS, "-fno-pic", "-fno-pie", "-mcmodel=kernel", "-c", src, "-o", k_obj)
    low_obj = out / "kernel-small-model.o"
    _run("gcc", *CFLAGS, "-fno-pic", "-fno-pie", "-c", src, "-o", low_obj)
    pie_obj = out / "kernel-pie.o"
    _run("gcc", *CFLAGS, "-fpie", "-c", src, "-o", pie_obj)
    obj32 = out / "start32.o"
    _run("as", "--32", FIXTURES / "start32.s", "-o", obj32)

    k = Kernels(
        higher=out / "higher.elf",
        lower=out / "lower.elf",
        rwx=out / "rwx.elf",
        pie=out / "pie.elf",
        elf32=out / "elf32.elf",
        obj=k_obj,
    )
    _run("ld", *LDFLAGS, "-T", FIXTURES / "higher_half.ld", "-o", k.higher, k_obj)
    _run("ld", *LDFLAGS, "-T", FIXTURES / "lower_half.ld", "-o", k.lower, low_obj)
    _run("ld", *LDFLAGS, "-T", FIXTURES / "rwx.ld", "-o", k.rwx, k_obj)
    _run("ld", "-nostdlib", "-pie", "--no-dynamic-linker", "-e", "_start", "-o", k.pie, pie_obj)
    _run(
        "ld", "-m", "elf_i386", "-nostdlib", "-Ttext=0x100000", "-e", "_start", "-o", k.elf32, obj32
    )
    return k


# ---------------------------------------------------------------------------
# Byte patching helpers (ELF64 little-endian layout)

EHDR_FIELDS = {  # name: (offset, struct format)
    "e_type": (16, "<H"),
    "e_machine": (18, "<H"),
    "e_entry": (24, "<Q"),
    "e_phoff": (32, "<Q"),
    "e_shoff": (40, "<Q"),
    "e_phentsize": (54, "<H"),
    "e_phnum": (56, "<H"),
    "e_shentsize": (58, "<H"),
    "e_shnum": (60, "<H"),
    "e_shstrndx": (62, "<H"),
}
PHDR_FIELDS = {
    "p_type": (0, "<I"),
    "p_flags": (4, "<I"),
    "p_offset": (8, "<Q"),
    "p_vaddr": (16, "<Q"),
    "p_paddr": (24, "<Q"),
    "p_filesz": (32, "<Q"),
    "p_memsz": (40, "<Q"),
    "p_align": (48, "<Q"),
}


def ehdr(data: bytes, field: str) -> int:
    off, fmt = EHDR_FIELDS[field]
    return int(struct.unpack_from(fmt, data, off)[0])


def patch_ehdr(data: bytes, **fields: int) -> bytes:
    buf = bytearray(data)
    for field, value in fields.items():
        off, fmt = EHDR_FIELDS[field]
        struct.pack_into(fmt, buf, off, value)
    return bytes(buf)


def phdr(data: bytes, index: int, field: str) -> int:
    off, fmt = PHDR_FIELDS[field]
    return int(struct.unpack_from(fmt, data, ehdr(data, "e_phoff") + 56 * index + off)[0])


def patch_phdr(data: bytes, index: int, **fields: int) -> bytes:
    buf = bytearray(data)
    base = ehdr(data, "e_phoff") + 56 * index
    for field, value in fields.items():
        off, fmt = PHDR_FIELDS[field]
        struct.pack_into(fmt, buf, base + off, value)
    return bytes(buf)


def expect_error(data: bytes, *fragments: str, source: str = "kernel.elf") -> HvbootError:
    with pytest.raises(HvbootError) as info:
        load_plan_bytes(data, source)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return info.value


# ---------------------------------------------------------------------------
# Good kernels


def test_higher_half_kernel_plan(kernels: Kernels) -> None:
    plan = load_plan(kernels.higher)
    assert isinstance(plan, LoadPlan)
    assert plan.source == str(kernels.higher)
    assert plan.higher_half
    assert plan.entry == symbol_address(kernels.higher, "_start") == HIGHER_BASE
    assert [s.flags for s in plan.segments] == ["R-X", "R--", "RW-", "RW-"]
    assert [s.index for s in plan.segments] == [0, 1, 2, 3]
    assert [s.vaddr for s in plan.segments] == [HIGHER_BASE + 0x1000 * i for i in range(4)]
    text, rodata, data, bss = plan.segments
    assert text.executable and text.readable and not text.writable
    assert rodata.readable and not rodata.writable and not rodata.executable
    assert data.writable and not data.executable
    assert bss.filesz == 0 and bss.memsz == 8192
    assert all(s.filesz <= s.memsz for s in plan.segments)
    assert plan.virt_start == HIGHER_BASE
    assert plan.virt_end == HIGHER_BASE + 0x5000
    assert plan.image_size == 0x5000
    assert plan.segment_at(HIGHER_BASE + 0x1004) == rodata
    assert plan.segment_at(HIGHER_BASE + 0x4FFF) == bss
    assert plan.segment_at(HIGHER_BASE + 0x5000) is None


def test_higher_half_segment_file_bytes_match_elf(kernels: Kernels) -> None:
    data = kernels.higher.read_bytes()
    plan = load_plan_bytes(data, "k")
    for seg in plan.segments:
        assert seg.offset == phdr(data, seg.index, "p_offset")
        assert seg.paddr == phdr(data, seg.index, "p_paddr")
        assert seg.offset % 4096 == seg.vaddr % 4096


def test_lower_half_kernel_plan(kernels: Kernels) -> None:
    plan = load_plan(str(kernels.lower))
    assert not plan.higher_half
    assert [s.flags for s in plan.segments] == ["R-X", "R--", "RW-"]
    assert all(s.paddr == s.vaddr for s in plan.segments)
    assert plan.virt_start == LOWER_BASE
    assert plan.entry == symbol_address(kernels.lower, "_start")
    data_seg = plan.segments[2]
    assert data_seg.memsz > data_seg.filesz  # .bss follows .data in the same segment
    assert plan.virt_end == LOWER_BASE + 0x2000 + -(-data_seg.memsz // 4096) * 4096


def test_describe_higher_half(kernels: Kernels) -> None:
    text = describe(load_plan(kernels.higher))
    lines = text.splitlines()
    assert "higher-half" in lines[0] and "entry 0xffffffff80000000" in lines[0]
    assert "0xffffffff80000000-0xffffffff80005000" in lines[1] and "20 KiB" in lines[1]
    assert lines[2].split()[:3] == ["segment", "virtual", "range"]
    assert len(lines) == 3 + 4
    assert "0xffffffff80003000-0xffffffff80005000" in lines[6]
    assert "8 KiB" in lines[6]
    for line, flags in zip(lines[3:], ["R-X", "R--", "RW-", "RW-"], strict=True):
        assert f" {flags} " in line
        assert line.endswith("loader's choice (2 MiB aligned)")


def test_describe_lower_half(kernels: Kernels) -> None:
    text = describe(load_plan(kernels.lower))
    assert "lower-half" in text
    assert "at p_paddr 0x200000" in text
    assert "at p_paddr 0x201000" in text
    assert "loader's choice" not in text


def test_symbols(kernels: Kernels) -> None:
    plan = load_plan(kernels.higher)
    syms = symbols(kernels.higher)
    assert syms["_start"] == plan.entry
    rodata_seg = plan.segment_at(syms["hv_banner"])
    assert rodata_seg is not None and rodata_seg.flags == "R--"
    counter_seg = plan.segment_at(syms["hv_counter"])
    assert counter_seg is not None and counter_seg.flags == "RW-" and counter_seg.filesz > 0
    scratch_seg = plan.segment_at(syms["hv_scratch"])
    assert scratch_seg is not None and scratch_seg.filesz == 0
    assert "kernel.c" not in syms  # STT_FILE symbols are not addresses
    assert symbol_address(kernels.higher.read_bytes(), "hv_banner") == syms["hv_banner"]
    assert symbol_address(kernels.higher, "no_such_symbol") is None


def test_symbols_without_section_headers(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_shoff=0, e_shnum=0)
    assert symbol_address(data, "_start") is None
    assert symbols(data) == {}
    load_plan_bytes(data, "k")  # the loader does not need sections


def test_symbols_of_stripped_kernel(kernels: Kernels, tmp_path: Path) -> None:
    stripped = tmp_path / "stripped.elf"
    _run("strip", "-o", stripped, kernels.higher)
    assert symbol_address(stripped, "_start") is None
    assert load_plan(stripped).entry == HIGHER_BASE


# ---------------------------------------------------------------------------
# Reading errors


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.elf"
    with pytest.raises(HvbootError) as info:
        load_plan(missing)
    assert info.value.where == str(missing)
    assert "file not found" in info.value.what
    with pytest.raises(HvbootError, match="file not found"):
        symbol_address(missing, "_start")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(HvbootError) as info:
        load_plan(tmp_path)
    assert info.value.where == str(tmp_path)
    assert "is a directory" in info.value.what


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read unreadable files")
def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "k.elf"
    f.write_bytes(b"\x7fELF")
    f.chmod(0)
    with pytest.raises(HvbootError, match="cannot read file"):
        load_plan(f)


def test_empty_file() -> None:
    err = expect_error(b"", "file is empty", "x86_64 ELF kernel")
    assert err.where == "kernel.elf"


def test_text_file(tmp_path: Path) -> None:
    f = tmp_path / "kernel.txt"
    f.write_text("#!/bin/sh\necho this is not a kernel\n")
    with pytest.raises(HvbootError) as info:
        load_plan(f)
    assert info.value.where == f"{f}: ELF header e_ident"
    assert "not an ELF file" in info.value.what
    assert "23 21 2f 62" in info.value.what  # "#!/b"
    assert "7f 45 4c 46" in info.value.what
    with pytest.raises(HvbootError, match="not an ELF file"):
        symbols(f)


def test_too_short_for_ident() -> None:
    expect_error(b"\x7fELF", "only 4 bytes", "too short")


def test_elf32(kernels: Kernels) -> None:
    err = expect_error(kernels.elf32.read_bytes(), "ELF32 (EI_CLASS=1)", "64-bit", "ELFCLASS64")
    assert err.where == "kernel.elf: ELF header e_ident[EI_CLASS]"


def test_unknown_class(kernels: Kernels) -> None:
    data = bytearray(kernels.higher.read_bytes())
    data[4] = 7
    expect_error(bytes(data), "unknown EI_CLASS=7", "expected ELFCLASS64")


def test_big_endian(kernels: Kernels) -> None:
    data = bytearray(kernels.higher.read_bytes())
    data[5] = 2
    err = expect_error(bytes(data), "big-endian", "expected little-endian")
    assert err.where == "kernel.elf: ELF header e_ident[EI_DATA]"
    data[5] = 0
    expect_error(bytes(data), "unknown EI_DATA=0")


def test_bad_elf_version(kernels: Kernels) -> None:
    data = bytearray(kernels.higher.read_bytes())
    data[6] = 0
    err = expect_error(bytes(data), "ELF version is 0", "expected 1 (EV_CURRENT)")
    assert err.where == "kernel.elf: ELF header e_ident[EI_VERSION]"


def test_truncated_header(kernels: Kernels) -> None:
    err = expect_error(kernels.higher.read_bytes()[:40], "only 40 bytes", "64-byte ELF64 header")
    assert err.where == "kernel.elf: ELF header"


# ---------------------------------------------------------------------------
# ELF header errors


def test_wrong_machine(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_machine=3)
    err = expect_error(data, "EM_386 (3)", "expected EM_X86_64 (62)")
    assert err.where == "kernel.elf: ELF header e_machine"
    expect_error(patch_ehdr(data, e_machine=0xBEEF), "unknown (48879)")


def test_position_independent_kernel(kernels: Kernels) -> None:
    """An ET_DYN kernel linked at 0 runs slid to -2 GiB (docs/loader.md, "Relocation")."""
    data = kernels.pie.read_bytes()
    plan = load_plan_bytes(data, "kernel.elf")
    base = 0xFFFF_FFFF_8000_0000
    (e_entry,) = struct.unpack_from("<Q", data, 24)
    assert (plan.relocatable, plan.slide, plan.virt_start) == (True, base, base)
    assert plan.higher_half and plan.entry == e_entry + base
    assert "position-independent (ET_DYN): linked at 0x0, runs slid by 0xffffffff80000000" in (
        describe(plan)
    )


def _pie_with_pointer(tmp: Path) -> bytes:
    """A static PIE whose one initialised pointer is an R_X86_64_RELATIVE in .rela.dyn."""
    src = tmp / "pointer.c"
    src.write_text("static int x;\nint *p = &x;\nvoid _start(void) { for (;;) *p = 1; }\n")
    obj, out = tmp / "pointer.o", tmp / "pointer.elf"
    _run("gcc", *CFLAGS, "-fpie", "-c", src, "-o", obj)
    _run("ld", "-nostdlib", "-pie", "--no-dynamic-linker", "-e", "_start", "-o", out, obj)
    return out.read_bytes()


def test_relocations_are_counted_and_other_types_refused_by_name(tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile

    data = _pie_with_pointer(tmp_path)
    assert load_plan_bytes(data, "kernel.elf").relocations == 1
    with (tmp_path / "pointer.elf").open("rb") as f:
        rela = ELFFile(f).get_section_by_name(".rela.dyn")
        offset = rela["sh_offset"]
        (target,) = struct.unpack_from("<Q", data, offset)
    patched = bytearray(data)
    patched[offset + 8] = 6  # r_info's type: R_X86_64_GLOB_DAT
    err = expect_error(
        bytes(patched),
        f"relocation type R_X86_64_GLOB_DAT (6) at offset {target:#x} is not supported",
        "R_X86_64_RELATIVE only",
    )
    assert err.where == "kernel.elf: DT_RELA entry 0"


def test_object_file(kernels: Kernels) -> None:
    expect_error(kernels.obj.read_bytes(), "ET_REL", "relocatable", "expected an executable")


def test_core_file(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_type=4)
    expect_error(data, "ET_CORE (4)", "expected an executable (ET_EXEC (2))")


def test_no_program_headers(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_phnum=0)
    err = expect_error(data, "no program headers", "e_phnum is 0", "PT_LOAD")
    assert err.where == "kernel.elf: ELF header e_phnum"


def test_extended_phnum(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_phnum=0xFFFF)
    expect_error(data, "PN_XNUM", "does not support")


def test_wrong_phentsize(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_phentsize=32)
    err = expect_error(data, "program header size is 32", "expected 56")
    assert err.where == "kernel.elf: ELF header e_phentsize"


def test_program_header_table_outside_file(kernels: Kernels) -> None:
    raw = kernels.higher.read_bytes()
    data = patch_ehdr(raw, e_phoff=len(raw) - 8)
    err = expect_error(data, "program header table", "lies outside the file", f"{len(raw)} bytes")
    assert err.where == "kernel.elf: ELF header e_phoff"


def test_no_pt_load(kernels: Kernels) -> None:
    data = kernels.higher.read_bytes()
    for i in range(ehdr(data, "e_phnum")):
        data = patch_phdr(data, i, p_type=4)  # PT_NOTE
    err = expect_error(data, "no PT_LOAD segment among the 4 program headers", "PT_NOTE")
    assert err.where == "kernel.elf: program headers"


def test_only_empty_pt_loads(kernels: Kernels) -> None:
    data = kernels.higher.read_bytes()
    for i in range(4):
        data = patch_phdr(data, i, p_filesz=0, p_memsz=0)
    expect_error(data, "every PT_LOAD segment is empty")


def test_empty_pt_load_is_left_out(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 1, p_filesz=0, p_memsz=0)
    plan = load_plan_bytes(data, "k")
    assert [s.index for s in plan.segments] == [0, 2, 3]


# ---------------------------------------------------------------------------
# PT_LOAD errors


def test_filesz_larger_than_memsz(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 2, p_filesz=0x10, p_memsz=0x8)
    err = expect_error(data, "p_filesz (0x10) is larger than p_memsz (0x8)")
    assert err.where == "kernel.elf: program header 2 (PT_LOAD)"


def test_file_range_outside_file(kernels: Kernels) -> None:
    raw = kernels.higher.read_bytes()
    data = patch_phdr(raw, 1, p_offset=len(raw) - 4)
    err = expect_error(data, "lie outside the file", f"({len(raw)} bytes)", "truncated")
    assert err.where == "kernel.elf: program header 1 (PT_LOAD)"
    # a truncated file is caught the same way
    expect_error(raw[: phdr(raw, 2, "p_offset") + 2], "program header 2", "lie outside the file")


def test_bad_p_align(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 0, p_align=0x1800)
    err = expect_error(data, "p_align is 0x1800", "power of two")
    assert err.where == "kernel.elf: program header 0 (PT_LOAD)"


def test_vaddr_offset_not_congruent(kernels: Kernels) -> None:
    raw = kernels.higher.read_bytes()
    data = patch_phdr(raw, 0, p_offset=phdr(raw, 0, "p_offset") + 8)
    err = expect_error(data, "differ modulo the 4 KiB page size", "p_vaddr % 4096 == p_offset")
    assert err.where == "kernel.elf: program header 0 (PT_LOAD)"


def test_overlapping_segments(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 1, p_vaddr=HIGHER_BASE)
    err = expect_error(data, "virtual ranges overlap", "header 0 covers", "header 1 covers")
    assert err.where == "kernel.elf: program headers 0 and 1 (PT_LOAD)"


def test_overlap_with_unsorted_headers(kernels: Kernels) -> None:
    # header 3 (bss) moved onto the rodata page: names both, lowest index first
    data = patch_phdr(kernels.higher.read_bytes(), 3, p_vaddr=HIGHER_BASE + 0x1000)
    err = expect_error(data, "overlap")
    assert err.where == "kernel.elf: program headers 1 and 3 (PT_LOAD)"


def test_segments_sharing_a_page(kernels: Kernels) -> None:
    raw = kernels.higher.read_bytes()
    # rodata moved right after text inside text's page (offset kept congruent)
    data = patch_phdr(
        raw, 1, p_vaddr=HIGHER_BASE + 0x800, p_offset=phdr(raw, 1, "p_offset") + 0x800
    )
    err = expect_error(
        data,
        "share the 4 KiB virtual page at 0xffffffff80000000",
        "R-X",
        "R--",
        "per page",
    )
    assert err.where == "kernel.elf: program headers 0 and 1 (PT_LOAD)"


def test_rwx_segment(kernels: Kernels) -> None:
    err = expect_error(
        kernels.rwx.read_bytes(), "writable and executable", "RWX", "W^X", "split", "linker script"
    )
    assert err.where == "kernel.elf: program header 0 (PT_LOAD)"


def test_unreadable_segment(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 0, p_flags=1)
    expect_error(data, "not readable (flags --X)", "R-X, RW- or R--")


def test_entry_outside_segments(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_entry=0xFFFF_FFFF_9000_0000)
    err = expect_error(data, "entry point 0xffffffff90000000 is not inside any PT_LOAD", "ENTRY()")
    assert err.where == "kernel.elf: ELF header e_entry"


def test_entry_in_non_executable_segment(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_entry=HIGHER_BASE + 0x1000)
    expect_error(data, "inside program header 1", "not executable (flags R--)")


def test_entry_in_bss(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_entry=HIGHER_BASE + 0x4000)
    expect_error(data, "inside program header 3", "not executable (flags RW-)")


def test_non_canonical_vaddr(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 2, p_vaddr=0x0000_8000_0000_2000)
    err = expect_error(data, "is not canonical", "0x800000002000")
    assert err.where == "kernel.elf: program header 2 (PT_LOAD)"


def test_segment_crossing_into_non_canonical_hole(kernels: Kernels) -> None:
    data = patch_phdr(kernels.lower.read_bytes(), 2, p_vaddr=0x7FFF_FFFF_F000)
    expect_error(data, "program header 2", "is not canonical")


def test_segment_wrapping_address_space(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 3, p_memsz=1 << 63)
    expect_error(data, "program header 3", "wraps past the end of the 64-bit address space")


def test_segment_reaching_top_of_address_space(kernels: Kernels) -> None:
    # bss moved to the very last page: its page-rounded end would be 2**64
    data = patch_phdr(kernels.higher.read_bytes(), 3, p_vaddr=(1 << 64) - 0x2000)
    err = expect_error(data, "reaches or wraps past the end", "below 2**64")
    assert err.where == "kernel.elf: program header 3 (PT_LOAD)"
    data = patch_phdr(kernels.higher.read_bytes(), 3, p_vaddr=(1 << 64) - 0x3000)
    assert load_plan_bytes(data, "k").virt_end == (1 << 64) - 0x1000


def test_mixed_halves(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 2, p_vaddr=0x40_0000)
    err = expect_error(data, "lower half (0x400000)", "higher half (0xffffffff80000000)")
    assert err.where == "kernel.elf: program headers 0 and 2 (PT_LOAD)"


# ---------------------------------------------------------------------------
# Lower-half placement errors


def test_lower_half_below_1mib(kernels: Kernels) -> None:
    data = patch_phdr(kernels.lower.read_bytes(), 0, p_paddr=0x8000)
    err = expect_error(data, "p_paddr 0x8000", "first 1 MiB", "p_paddr >= 0x100000")
    assert err.where == "kernel.elf: program header 0 (PT_LOAD)"


def test_lower_half_linked_below_1mib(kernels: Kernels) -> None:
    # the whole kernel moved down to 512 KiB (virtual and physical)
    data = kernels.lower.read_bytes()
    for i in range(3):
        low = phdr(data, i, "p_vaddr") - LOWER_BASE + 0x8_0000
        data = patch_phdr(data, i, p_vaddr=low, p_paddr=low)
    data = patch_ehdr(data, e_entry=ehdr(data, "e_entry") - LOWER_BASE + 0x8_0000)
    expect_error(data, "program header 0", "overlaps the first 1 MiB")


def test_lower_half_beyond_physical_limit(kernels: Kernels) -> None:
    data = patch_phdr(kernels.lower.read_bytes(), 1, p_paddr=(1 << 52) - 0x1000 + 0x1000)
    expect_error(data, "program header 1", "52-bit physical address limit")


def test_lower_half_paddr_not_congruent(kernels: Kernels) -> None:
    data = patch_phdr(kernels.lower.read_bytes(), 1, p_paddr=0x30_0800)
    expect_error(data, "program header 1", "p_paddr 0x300800", "p_paddr % 4096 == p_vaddr % 4096")


def test_lower_half_physical_overlap(kernels: Kernels) -> None:
    data = patch_phdr(kernels.lower.read_bytes(), 2, p_paddr=LOWER_BASE)
    err = expect_error(data, "physical ranges overlap")
    assert err.where == "kernel.elf: program headers 0 and 2 (PT_LOAD)"


def test_lower_half_physical_page_shared(kernels: Kernels) -> None:
    raw = kernels.lower.read_bytes()
    data = patch_phdr(raw, 1, p_vaddr=LOWER_BASE + 0x1800, p_paddr=LOWER_BASE + 0x800)
    data = patch_phdr(data, 1, p_offset=phdr(raw, 1, "p_offset") + 0x800)
    err = expect_error(data, "share the 4 KiB physical page at 0x200000")
    assert err.where == "kernel.elf: program headers 0 and 1 (PT_LOAD)"


def test_higher_half_ignores_paddr(kernels: Kernels) -> None:
    data = patch_phdr(kernels.higher.read_bytes(), 0, p_paddr=0)
    assert load_plan_bytes(data, "k").higher_half


# ---------------------------------------------------------------------------
# Symbol table errors


def test_symbols_bad_section_header_size(kernels: Kernels) -> None:
    data = patch_ehdr(kernels.higher.read_bytes(), e_shentsize=40)
    with pytest.raises(HvbootError) as info:
        symbols(data)
    assert info.value.where == "<kernel bytes>: ELF header e_shentsize"
    assert "expected 64" in info.value.what


def test_symbols_section_table_outside_file(kernels: Kernels) -> None:
    raw = kernels.higher.read_bytes()
    data = patch_ehdr(raw, e_shoff=len(raw))
    with pytest.raises(HvbootError, match=r"section header table .* lies outside the file"):
        symbol_address(data, "_start")


def _patch_symtab_header(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Patch a field of the .symtab (sh_type SHT_SYMTAB) section header."""
    shoff = ehdr(raw, "e_shoff")
    buf = bytearray(raw)
    for i in range(ehdr(raw, "e_shnum")):
        base = shoff + 64 * i
        if struct.unpack_from("<I", raw, base + 4)[0] == 2:
            struct.pack_into(fmt, buf, base + offset, value)
            return bytes(buf)
    raise AssertionError("no .symtab")


def test_symbols_symtab_bad_entsize(kernels: Kernels) -> None:
    data = _patch_symtab_header(kernels.higher.read_bytes(), 56, "<Q", 16)  # sh_entsize
    with pytest.raises(HvbootError) as info:
        symbols(data)
    assert info.value.where == "<kernel bytes>: section .symtab"
    assert "sh_entsize 16, expected 24" in info.value.what


def test_symbols_symtab_outside_file(kernels: Kernels) -> None:
    raw = kernels.higher.read_bytes()
    data = _patch_symtab_header(raw, 32, "<Q", len(raw))  # sh_size
    with pytest.raises(HvbootError, match="lies outside the file"):
        symbols(data)


def test_symbols_symtab_bad_link(kernels: Kernels) -> None:
    data = _patch_symtab_header(kernels.higher.read_bytes(), 40, "<I", 1)  # sh_link -> .text
    with pytest.raises(HvbootError) as info:
        symbols(data)
    assert info.value.where == "<kernel bytes>: section .symtab"
    assert info.value.what.startswith("malformed symbol table: ")


# ---------------------------------------------------------------------------
# Fuzzing: any header damage gives HvbootError or a plan, never another exception


def _header_end(data: bytes) -> int:
    return ehdr(data, "e_phoff") + 56 * ehdr(data, "e_phnum")


_FIELD_SPOTS = [(off, struct.calcsize(fmt)) for off, fmt in EHDR_FIELDS.values()] + [
    (4, 1),
    (5, 1),
    (6, 1),
]
_INTERESTING = st.sampled_from(
    [0, 1, 2, 3, 4, 7, 56, 64, 0xFFF, 0x1000, 0x7FFF_FFFF_F000, 1 << 47, 1 << 63, (1 << 64) - 1]
)


def _check_mutant(data: bytes) -> None:
    try:
        plan = load_plan_bytes(data, "mutant")
    except HvbootError as exc:
        assert exc.where and exc.where.startswith("mutant")
        assert exc.what
    else:
        assert plan.segments
        assert describe(plan)
    try:
        symbols(data)
    except HvbootError as exc:
        assert exc.what


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(["higher", "lower"]),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_fuzz_header_bytes(kernels: Kernels, which: str, flips: list[tuple[int, int]]) -> None:
    raw = getattr(kernels, which).read_bytes()
    end = _header_end(raw)
    buf = bytearray(raw)
    for pos, value in flips:
        buf[pos % end] = value
    _check_mutant(bytes(buf))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(["higher", "lower"]),
    writes=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(_FIELD_SPOTS),
                st.tuples(st.integers(0, 3), st.sampled_from(list(PHDR_FIELDS.values()))).map(
                    lambda t: (64 + 56 * t[0] + t[1][0], struct.calcsize(t[1][1]))
                ),
            ),
            st.one_of(_INTERESTING, st.integers(0, (1 << 64) - 1)),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_header_fields(
    kernels: Kernels, which: str, writes: list[tuple[tuple[int, int], int]]
) -> None:
    raw = getattr(kernels, which).read_bytes()
    assert ehdr(raw, "e_phoff") == 64
    buf = bytearray(raw)
    for (off, size), value in writes:
        buf[off : off + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    _check_mutant(bytes(buf))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8))
def test_fuzz_section_headers(kernels: Kernels, flips: list[tuple[int, int]]) -> None:
    raw = kernels.higher.read_bytes()
    # everything after the loaded bytes: .symtab, .strtab, .shstrtab, section headers
    start = max(phdr(raw, i, "p_offset") + phdr(raw, i, "p_filesz") for i in range(4))
    buf = bytearray(raw)
    for pos, value in flips:
        buf[start + pos % (len(raw) - start)] = value
    _check_mutant(bytes(buf))
