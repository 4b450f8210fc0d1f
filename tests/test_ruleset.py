"""One rule set: the loader core decides what a kernel, its request and a loader config may be,
and the toolkit only asks it (hvboot-check). These tests show the toolkit's verdicts are the
core's, with the same field and the same message (docs/loader.md, "One rule set")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import make_image
from fat_reader import read_fat

from hvboot.errors import HvbootError
from hvboot.image.build import esp_files
from hvboot.kernel.elf import check_kernel, load_plan_bytes
from hvboot.loader import artifacts, checker, config_file


def core(subcommand: str, data: bytes) -> dict[str, object]:
    """hvboot-check run by hand over `data`."""
    r = subprocess.run(
        [str(artifacts.checker()), subcommand, "-"], input=data, capture_output=True, check=False
    )
    assert r.returncode in (0, 1), r.stderr
    doc: dict[str, object] = json.loads(r.stdout)
    return doc


def mutants(kernel: bytes) -> list[bytes]:
    """Bad kernels: each damages one header field of a real test kernel."""
    out = []
    for off, value in [
        (4, 1),  # EI_CLASS
        (5, 2),  # EI_DATA
        (6, 0),  # EI_VERSION
        (16, 4),  # e_type ET_CORE (ET_DYN is a position-independent kernel)
        (18, 3),  # e_machine EM_386
        (54, 32),  # e_phentsize
        (64 + 4, 7),  # first program header's p_flags: RWX
        (64 + 56 + 4, 0),  # second's: unreadable
        (64 + 48, 3),  # first's p_align
    ]:
        buf = bytearray(kernel)
        buf[off] = value
        out.append(bytes(buf))
    out.append(kernel[:40])
    out.append(b"")
    return out


def test_toolkit_errors_are_the_core_problems(report_kernel: Path) -> None:
    for data in mutants(report_kernel.read_bytes()):
        doc = core("kernel", data)
        problems = doc["problems"]
        assert isinstance(problems, list) and problems
        first = problems[0]
        with pytest.raises(HvbootError) as err:
            load_plan_bytes(data, "k.elf")
        assert err.value.where == (f"k.elf: {first['field']}" if first["field"] else "k.elf")
        assert err.value.what == first["message"]
        verdict = check_kernel(data, "k.elf")
        assert [(e.where, e.what) for e in verdict.problems] == [
            (f"k.elf: {p['field']}" if p["field"] else "k.elf", p["message"]) for p in problems
        ]


def test_build_refuses_a_config_the_loader_would_refuse() -> None:
    # A command line with a line break would make the loader read a second, unknown key.
    with pytest.raises(HvbootError) as err:
        esp_files(b"", "console=ttyS0\nbogus 1", [], b"")
    assert err.value.where == f"{config_file.CONFIG_PATH}: line 6"  # after kernel-blake3
    assert err.value.what.startswith("unknown key `bogus`")
    config_file.check(config_file.render("console=ttyS0", []))


def test_config_verdict_is_the_core_parse() -> None:
    pin = config_file.digest(b"guest")
    text = config_file.render(
        "x=1",
        [config_file.LoaderModule("hvboot/modules/g.bin", "guest", "mem=64M", pin)],
        tpm="required",
    )
    doc = core("config", text.encode())
    assert doc["ok"] is True
    assert doc["config"] == {
        "kernel": "/hvboot/kernel.elf",
        "kernel_blake3": None,
        "cmdline": "x=1",
        "tpm": "required",
        "modules": [
            {"path": "/hvboot/modules/g.bin", "name": "guest", "cmdline": "mem=64M", "blake3": pin}
        ],
    }
    assert core("config", b"\xff")["problems"] == [
        {
            "field": "config",
            "message": "not UTF-8 text: invalid utf-8 sequence of 1 bytes from index 0",
        }
    ]


def test_esp_is_read_as_the_loader_reads_it(tmp_path: Path, report_kernel: Path) -> None:
    """inspect and debug list the ESP through the core's GPT and FAT reader; it reads every
    file the writer wrote, byte for byte (the writer's own reader, read_fat, agrees)."""
    image = make_image(tmp_path, report_kernel, "x=1")
    disk = image.output.read_bytes()
    files = checker.esp_files(disk, str(image.output))
    assert files == {f.path: f.data for f in image.files}
    esp = disk[image.layout.esp_first_lba * 512 :]
    assert read_fat(esp[: image.layout.esp_sectors * 512]) == files
    with pytest.raises(HvbootError) as err:
        checker.esp_files(bytes(len(disk)), "blank.img")
    assert err.value.where == "blank.img: GPT"
