"""The protocol definition and its generated files: not stale, laid out as layout.py computes
(no implicit padding anywhere), and accepted by the compilers that use them (gcc for the C header
with its _Static_asserts, cargo for the Rust crate with its const asserts and unit tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hvboot.loader import artifacts
from hvboot.protocol import codegen
from hvboot.protocol.layout import PRIMITIVES, PROTOCOL, Protocol

REPO = artifacts.REPO
API_CRATE = REPO / "crates" / "hvboot-api"

# The offsets of protocol version 1's BootInfo: later additions go after them, so that kernels
# built against the first layout still read every field where they expect it.
V1_BOOT_INFO = {
    "magic": 0,
    "version": 8,
    "size": 12,
    "header_size": 16,
    "firmware": 20,
    "loader_name": 24,
    "loader_version": 32,
    "cmdline": 40,
    "memory_map": 48,
    "modules": 56,
    "framebuffer": 64,
    "rsdp_phys": 104,
    "smbios_entry_phys": 112,
    "smbios3_entry_phys": 120,
    "efi_system_table": 128,
    "kernel_phys_base": 136,
    "kernel_virt_base": 144,
    "kernel_size": 152,
    "direct_map_offset": 160,
    "direct_map_size": 168,
    "boot_info_phys": 176,
    "page_tables_phys": 184,
    "stack_top": 192,
    "stack_size": 200,
    "tsc_loader_start": 208,
    "tsc_handoff": 216,
}
V1_HEADER_SIZE = 224


@pytest.mark.parametrize("rel", sorted(codegen.outputs(), key=str))
def test_generated_files_are_not_stale(rel: Path) -> None:
    expected = codegen.outputs()[rel]
    path = REPO / rel
    assert path.is_file(), f"{rel} missing: run `hvboot gen-protocol`"
    assert path.read_text() == expected, f"{rel} is stale: run `hvboot gen-protocol`"


def _field_size(proto: Protocol, type_name: str) -> int:
    return proto.size_align(type_name)[0]


@pytest.mark.parametrize("name", [s.name for s in PROTOCOL.structs])
def test_struct_layout_has_no_holes(name: str) -> None:
    """Each field starts where the previous one ends, on its own alignment, and the struct's
    size is the sum of its fields' sizes and a multiple of its alignment."""
    size, align = PROTOCOL.size_align(name)
    end = 0
    for field, offset in PROTOCOL.offsets(name):
        assert offset == end, f"{name}.{field.name} at {offset}, previous field ended at {end}"
        falign = PROTOCOL.size_align(field.type)[1]
        assert offset % falign == 0, f"{name}.{field.name} misaligned"
        end = offset + _field_size(PROTOCOL, field.type)
    assert end == size
    assert size % align == 0
    assert align in (1, 2, 4, 8)


def test_every_field_type_is_known() -> None:
    structs = {s.name for s in PROTOCOL.structs}
    enums = {e.name: e for e in PROTOCOL.enums}
    for s in PROTOCOL.structs:
        for f in s.fields:
            base = f.type.split("[")[0]
            assert base in PRIMITIVES or base in structs, f"{s.name}.{f.name}: {f.type}"
            if f.enum is not None:
                assert f.enum in enums, f"{s.name}.{f.name}: unknown enum {f.enum}"
                assert enums[f.enum].type == f.type, f"{s.name}.{f.name}: enum type mismatch"


def test_enum_values_are_unique_and_fit() -> None:
    for e in PROTOCOL.enums:
        values = [v.value for v in e.values]
        names = [v.name for v in e.values]
        assert len(set(values)) == len(values), e.name
        assert len(set(names)) == len(names), e.name
        bits = PRIMITIVES[e.type] * 8
        assert all(0 <= v < (1 << bits) for v in values), e.name


def test_constants_fit_their_types() -> None:
    for c in PROTOCOL.constants:
        assert 0 <= c.value < (1 << (PRIMITIVES[c.type] * 8)), c.name


def test_boot_info_v1_prefix_is_unchanged() -> None:
    """New BootInfo fields are appended: version 1's fields keep their offsets."""
    offsets = {f.name: off for f, off in PROTOCOL.offsets("BootInfo")}
    for name, off in V1_BOOT_INFO.items():
        assert offsets[name] == off, f"BootInfo.{name} moved"
    later = [off for name, off in offsets.items() if name not in V1_BOOT_INFO]
    assert all(off >= V1_HEADER_SIZE for off in later)
    assert PROTOCOL.size_align("BootInfo")[0] >= V1_HEADER_SIZE


def test_kernel_request_starts_with_magic_version_size() -> None:
    fields = [(f.name, f.type, off) for f, off in PROTOCOL.offsets("KernelRequest")]
    assert fields[:3] == [("magic", "u64", 0), ("version", "u32", 8), ("size", "u32", 12)]


def test_generated_rust_asserts_every_offset() -> None:
    text = codegen.rust()
    for s in PROTOCOL.structs:
        size, align = PROTOCOL.size_align(s.name)
        assert f"size_of::<{s.name}>() == {size})" in text
        assert f"align_of::<{s.name}>() == {align})" in text
        for f, off in PROTOCOL.offsets(s.name):
            assert f"offset_of!({s.name}, {f.name}) == {off})" in text


def test_c_header_compiles(tmp_path: Path) -> None:
    """The header compiles as strict C11 with warnings as errors, and its
    _Static_asserts (every size and offset) hold; a deliberately wrong assert fails, so the
    check is not vacuous."""
    header = REPO / codegen.C_PATH
    src = tmp_path / "use.c"
    src.write_text(
        '#include "hvboot.h"\n'
        '_Static_assert(sizeof(hvboot_boot_info) % 8 == 0, "BootInfo size");\n'
        "int hvboot_magic_ok(const hvboot_boot_info *b) {\n"
        "    return b->magic == HVBOOT_BOOT_INFO_MAGIC;\n"
        "}\n"
    )
    cmd = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"]
    ok = subprocess.run([*cmd, "-I", str(header.parent), str(src)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr

    bad = tmp_path / "bad.c"
    size, _ = PROTOCOL.size_align("BootInfo")
    bad.write_text(
        '#include "hvboot.h"\n'
        f'_Static_assert(sizeof(hvboot_boot_info) == {size + 8}, "wrong on purpose");\n'
    )
    fail = subprocess.run(
        [*cmd, "-I", str(header.parent), str(bad)], capture_output=True, text=True
    )
    assert fail.returncode != 0 and "wrong on purpose" in fail.stderr


def test_rust_crate_builds_and_its_tests_pass() -> None:
    """`cargo test` in crates/hvboot-api: compiles protocol.rs (whose const asserts check every
    size, alignment and offset) and runs the accessors' host unit tests."""
    result = subprocess.run(
        ["cargo", "test", "--quiet"], cwd=API_CRATE, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
