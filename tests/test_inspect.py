"""`hvboot inspect` on a good kernel, bad kernels, a built disk image, and missing files."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PIE_BASE, REPORT_KERNEL, make_image, pie_kernel

from hvboot.kernel.elf import load_plan
from hvboot.loader import artifacts

FIXTURES = Path(__file__).parent / "fixtures" / "elf"
KERNEL_KEYS = {
    "kind",
    "kernel_kind",
    "protocol",
    "multiboot2",
    "linux",
    "limine",
    "bootloader_api",
    "path",
    "size",
    "ok",
    "entry",
    "entry_symbol",
    "higher_half",
    "relocatable",
    "image",
    "segments",
    "request_header",
    "problems",
}
SEGMENT_KEYS = {
    "index",
    "vaddr",
    "vaddr_end",
    "paddr",
    "memsz",
    "filesz",
    "offset",
    "flags",
    "placement",
}
IMAGE_KEYS = {
    "kind",
    "path",
    "size",
    "partitions",
    "stage2",
    "esp",
    "loader_config",
    "kernel",
    "trust",
    "problems",
}


def hvboot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvboot", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def kernel(request: pytest.FixtureRequest) -> Path:
    if not REPORT_KERNEL.is_file():
        request.getfixturevalue("built")
    return REPORT_KERNEL


def test_good_kernel_text(kernel: Path) -> None:
    r = hvboot("inspect", str(kernel))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    plan = load_plan(kernel)
    assert f"entry {plan.entry:#x}" in out
    assert "entry symbol: _start" in out
    assert "request header: no request header (defaults apply)" in out
    assert "problems: none" in out
    for seg in plan.segments:
        assert f"{seg.vaddr:#x}-{seg.vaddr_end:#x}" in out
        assert seg.flags in out
    assert "loader's choice (2 MiB aligned)" in out


def test_position_independent_kernel(built: None, tmp_path: Path) -> None:
    """The report kernel as a static PIE (tests/kernels/build-pie.sh): where it runs, its slide
    and relocation count, the entry named through the link-time symbols; `build` says so."""
    pie = pie_kernel("report")
    plan = load_plan(pie)
    r = hvboot("inspect", "--json", str(pie))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["relocatable"] == {"slide": f"{PIE_BASE:#x}", "relocations": plan.relocations}
    assert plan.relocations > 0 and doc["entry_symbol"] == "_start"
    assert doc["image"]["virt_start"] == f"{PIE_BASE:#x}"
    assert {s["placement"] for s in doc["segments"]} == {"loader"}
    text = hvboot("inspect", str(pie)).stdout
    assert (
        f"position-independent (ET_DYN): linked at 0x0, runs slid by {PIE_BASE:#x}, "
        f"{plan.relocations} relocations applied at load"
    ) in text
    r = hvboot("build", str(pie), "-o", str(tmp_path / "pie.img"))
    assert r.returncode == 0, r.stderr
    said = f"position-independent kernel: {plan.relocations} relocations, runs at {PIE_BASE:#x}"
    assert said in r.stdout + r.stderr


def test_good_kernel_json(kernel: Path) -> None:
    r = hvboot("inspect", "--json", str(kernel))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == KERNEL_KEYS
    plan = load_plan(kernel)
    assert doc["kind"] == "kernel" and doc["ok"] is True and doc["problems"] == []
    assert doc["kernel_kind"] == "hvboot-elf"
    assert doc["entry"] == f"{plan.entry:#x}" and doc["entry_symbol"] == "_start"
    assert doc["higher_half"] is True and doc["request_header"] is None
    assert doc["relocatable"] is None
    assert doc["image"] == {
        "virt_start": f"{plan.virt_start:#x}",
        "virt_end": f"{plan.virt_end:#x}",
        "size": plan.image_size,
    }
    assert [s["flags"] for s in doc["segments"]] == [s.flags for s in plan.segments]
    for got, seg in zip(doc["segments"], plan.segments, strict=True):
        assert set(got) == SEGMENT_KEYS
        assert got["vaddr"] == f"{seg.vaddr:#x}" and got["memsz"] == seg.memsz
        assert got["placement"] == "loader"


def test_not_an_elf(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, not a kernel\n")
    r = hvboot("inspect", str(bad))
    assert r.returncode == 1
    assert "the loader would refuse this kernel" in r.stdout
    assert "not an ELF file" in r.stdout and str(bad) in r.stdout
    doc = json.loads(hvboot("inspect", "--json", str(bad)).stdout)
    assert doc["ok"] is False and len(doc["problems"]) == 1
    assert "e_ident" in doc["problems"][0]["where"]


def _set_load_flags(data: bytearray, which: list[int], flags: int) -> None:
    """Set p_flags of the listed PT_LOAD headers (counted among PT_LOADs) of an ELF64 file."""
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phnum = struct.unpack_from("<H", data, 56)[0]
    loads = [i for i in range(phnum) if struct.unpack_from("<I", data, phoff + i * 56)[0] == 1]
    for n in which:
        struct.pack_into("<I", data, phoff + loads[n] * 56 + 4, flags)


def test_every_problem_is_listed(tmp_path: Path, kernel: Path) -> None:
    """Two W+X segments and one unreadable one: all three are reported, not just the first."""
    data = bytearray(kernel.read_bytes())
    _set_load_flags(data, [0, 2], 7)  # RWX
    _set_load_flags(data, [1], 0)  # ---
    bad = tmp_path / "bad.elf"
    bad.write_bytes(bytes(data))
    r = hvboot("inspect", str(bad))
    assert r.returncode == 1
    assert "problems (3):" in r.stdout, r.stdout
    assert r.stdout.count("both writable and executable") == 2
    assert "not readable" in r.stdout
    doc = json.loads(hvboot("inspect", "--json", str(bad)).stdout)
    assert set(doc) == KERNEL_KEYS
    wheres = sorted(p["where"] for p in doc["problems"])
    assert wheres == [f"{bad}: program header {i} (PT_LOAD)" for i in range(3)]
    assert [s["flags"] for s in doc["segments"]] == ["RWX", "---", "RWX"]


def test_problems_are_the_core_verdict(tmp_path: Path, kernel: Path) -> None:
    """inspect lists exactly the loader core's problems (hvboot-check run by hand): same order,
    same field, same message."""
    data = bytearray(kernel.read_bytes())
    _set_load_flags(data, [0, 2], 7)
    bad = tmp_path / "bad.elf"
    bad.write_bytes(bytes(data))
    core = subprocess.run(
        [str(artifacts.checker()), "kernel", str(bad)], capture_output=True, text=True
    )
    assert core.returncode == 1
    verdict = json.loads(core.stdout)
    doc = json.loads(hvboot("inspect", "--json", str(bad)).stdout)
    assert doc["problems"] == [
        {"where": f"{bad}: {p['field']}", "what": p["message"]} for p in verdict["problems"]
    ]


def test_missing_checker_is_named(tmp_path: Path, kernel: Path) -> None:
    missing = tmp_path / "no-such-hvboot-check"
    r = subprocess.run(
        [sys.executable, "-m", "hvboot", "inspect", str(kernel)],
        capture_output=True,
        text=True,
        env={**os.environ, "HVBOOT_CHECK": str(missing)},
    )
    assert r.returncode == 2
    assert str(missing) in r.stderr and "hvboot-check" in r.stderr
    assert "cargo build --release" in r.stderr


def test_rwx_kernel_built_by_ld(tmp_path: Path) -> None:
    obj, elf = tmp_path / "k.o", tmp_path / "rwx.elf"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-ffreestanding",
            "-fno-asynchronous-unwind-tables",
            "-fno-stack-protector",
            "-nostdlib",
            "-fno-pic",
            "-fno-pie",
            "-mcmodel=kernel",
            "-c",
            str(FIXTURES / "kernel.c"),
            "-o",
            str(obj),
        ],
        check=True,
    )
    subprocess.run(
        [
            "ld",
            "-nostdlib",
            "-static",
            "-no-pie",
            "--no-warn-rwx-segments",
            "-T",
            str(FIXTURES / "rwx.ld"),
            "-o",
            str(elf),
            str(obj),
        ],
        check=True,
    )
    r = hvboot("inspect", str(elf))
    assert r.returncode == 1
    assert "program header 0 (PT_LOAD)" in r.stdout and "W^X" in r.stdout


def test_image(tmp_path: Path, kernel: Path) -> None:
    built = make_image(tmp_path, kernel, cmdline="console=ttyS0 inspect=1")
    r = hvboot("inspect", str(built.output))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "'EFI system' (EFI system, C12A7328-F81F-11D2-BA4B-00A0C93EC93B)" in out
    if built.layout.stage2_first_lba is None:
        assert "stage 2: none" in out
    else:
        assert f"stage 2: BIOS boot partition at LBA {built.layout.stage2_first_lba}" in out
        assert "(BIOS boot, 21686148-6449-6E6F-744E-656564454649)" in out
    for f in built.files:
        assert f"/{f.path}" in out and hashlib.sha256(f.data).hexdigest() in out
    assert "| cmdline console=ttyS0 inspect=1" in out
    assert "entry symbol: _start" in out
    assert "UEFI loader: unsigned" in out and "UEFI loader pins hvboot.cfg: none" in out
    assert "measured boot (UEFI, PCRs 8 and 9): tpm if-present;" in out

    doc = json.loads(hvboot("inspect", "--json", str(built.output)).stdout)
    assert set(doc) == IMAGE_KEYS and doc["kind"] == "image" and doc["problems"] == []
    esp = [p for p in doc["partitions"] if p["type"] == "EFI system"]
    assert len(esp) == 1 and esp[0]["first_lba"] == built.layout.esp_first_lba
    assert doc["esp"]["first_lba"] == built.layout.esp_first_lba
    files = {f["path"]: f for f in doc["esp"]["files"]}
    assert set(files) == {"/" + f.path for f in built.files}
    for f in built.files:
        assert files["/" + f.path]["size"] == len(f.data)
        assert files["/" + f.path]["sha256"] == hashlib.sha256(f.data).hexdigest()
    cfg = next(f.data for f in built.files if f.path.endswith("hvboot.cfg"))
    assert doc["loader_config"] == cfg.decode()
    if built.layout.stage2_first_lba is None:
        assert doc["stage2"] is None
    else:
        assert doc["stage2"] == {
            "first_lba": built.layout.stage2_first_lba,
            "sectors": built.layout.stage2_sectors,
            "offset": built.layout.stage2_first_lba * 512,
        }
    assert doc["kernel"]["ok"] is True and doc["kernel"]["entry_symbol"] == "_start"


def test_missing_file(tmp_path: Path) -> None:
    r = hvboot("inspect", str(tmp_path / "nothing.elf"))
    assert r.returncode == 2
    assert "nothing.elf" in r.stderr and "no such file" in r.stderr
