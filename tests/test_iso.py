"""`hvboot build --iso`: the hybrid ISO checked by independent tools (xorriso's El Torito and
system-area reports, sgdisk, mtools), then booted in QEMU as a CD and as a disk under BIOS and
UEFI, the report kernel's findings compared with the host's."""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import BOOT_TIMEOUT, check_modules
from report_kernel import parse_report

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.errors import HvbootError
from hvboot.image.iso import BIOS_IMAGE, CD_SECTOR, ESP_IMAGE, IsoResult, build_iso, is_iso
from hvboot.kernel.elf import symbol_address
from hvboot.loader import bios_stages
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

CMDLINE = "console=ttyS0 from=iso \u00e9"


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleSpec, ...]:
    d = tmp_path_factory.mktemp("iso-modules")
    rng = random.Random(15)
    specs = []
    # Sizes that end inside a CD sector, and one spanning many BIOS transfers (31 CD sectors).
    for name, size, cmdline in (("guest.bin", 3 * (1 << 20) + 513, "mem=64M"), ("tiny", 1, "")):
        path = d / name
        path.write_bytes(rng.randbytes(size))
        specs.append(ModuleSpec(path=path, name=name, cmdline=cmdline))
    return tuple(specs)


def _config(kernel: Path, modules: tuple[ModuleSpec, ...]) -> BuildConfig:
    return BuildConfig(
        kernel=kernel, cmdline=CMDLINE, modules=modules, output=None, image_size=None
    )


@pytest.fixture(scope="module")
def iso(
    tmp_path_factory: pytest.TempPathFactory, report_kernel: Path, modules: tuple[ModuleSpec, ...]
) -> IsoResult:
    return build_iso(_config(report_kernel, modules), tmp_path_factory.mktemp("iso") / "x.iso")


def _xorriso_report(iso: Path) -> str:
    proc = subprocess.run(
        ["xorriso", "-indev", str(iso), "-report_el_torito", "plain", "-report_system_area",
         "plain"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout


def test_el_torito_entries_and_hybrid_partitions(iso: IsoResult) -> None:
    assert is_iso(iso.output)
    report = _xorriso_report(iso.output)
    entries = re.findall(r"El Torito boot img :\s+(\d)\s+(\w+)\s+y\s+none\s+\S+\s+\S+\s+(\d+)"
                         r"\s+(\d+)", report)  # fmt: skip
    assert [(n, p) for n, p, _, _ in entries] == [("1", "BIOS"), ("2", "UEFI")], report
    bios_lba = int(entries[0][3])
    assert entries[0][2] == "4"  # one CD sector: stage 1
    assert f"El Torito img path :   1  /{BIOS_IMAGE}" in report
    assert f"El Torito img path :   2  /{ESP_IMAGE}" in report
    assert "El Torito img opts :   1  boot-info-table" in report
    assert re.search(r"System area summary: MBR protective-msdos-label grub2-mbr .*GPT", report)
    assert f"GPT partition path :   2  /{ESP_IMAGE}" in report
    # The GPT is sound (sgdisk reads it on its own) and its EFI partition holds the ESP files.
    verify = subprocess.run(["sgdisk", "-v", str(iso.output)], capture_output=True, text=True)
    assert "No problems found" in verify.stdout, verify.stdout
    start = int(re.findall(r"GPT start and size :   2  (\d+)", report)[0])
    cfg = subprocess.run(
        ["mtype", "-i", f"{iso.output}@@{start * 512}", "::/hvboot/hvboot.cfg"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "guest.bin" in cfg and "mem=64M" in cfg
    # What stage 1 is given: the boot-info table in the El Torito image (its own LBA at byte 12)
    # and the MBR's patch block (stage 2 = the image's 512-byte LBA + 4).
    data = iso.output.read_bytes()
    image = data[bios_lba * CD_SECTOR :]
    assert struct.unpack_from("<I", image, 12)[0] == bios_lba
    off = bios_stages.PATCH_OFFSET
    assert data[off : off + 4] == image[off : off + 4] == bios_stages.PATCH_MAGIC
    assert struct.unpack_from("<Q", data, off + 8)[0] == bios_lba * 4 + 4
    assert struct.unpack_from("<H", data, off + 4)[0] > 0


def test_same_inputs_give_the_same_iso(
    iso: IsoResult, report_kernel: Path, modules: tuple[ModuleSpec, ...], tmp_path: Path
) -> None:
    again = build_iso(_config(report_kernel, modules), tmp_path / "again.iso")
    assert again.output.read_bytes() == iso.output.read_bytes()


def test_missing_xorriso_is_named(
    report_kernel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HvbootError) as err:
        build_iso(_config(report_kernel, ()), tmp_path / "x.iso")
    assert err.value.where == "xorriso" and "setup.sh" in err.value.what
    assert not (tmp_path / "x.iso").exists()
    assert shutil.which("xorriso") is None


@pytest.mark.boot
@pytest.mark.parametrize("media", ["cdrom", "disk"])
@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_iso_boots(
    firmware: str,
    media: str,
    iso: IsoResult,
    modules: tuple[ModuleSpec, ...],
    report_kernel: Path,
) -> None:
    spec = qemu.QemuSpec(
        image=iso.output, machine=Machine(firmware=firmware), snapshot=True, media=media
    )
    result = qemu.run(spec, timeout=BOOT_TIMEOUT)
    assert result.ok, f"{result.outcome}\n--- serial ---\n{result.serial[-4000:]}"
    # Each path read the medium as expected: BIOS from a CD through 2048-byte sectors, UEFI from
    # a CD through the firmware's file system on the El Torito image, both from the hybrid GPT's
    # ESP as a disk.
    serial = result.serial
    cd_line = "2048-byte sectors (a CD)"
    if firmware == "bios":
        assert (cd_line in serial) == (media == "cdrom"), serial[:2000]
    elif media == "cdrom":
        assert "files: through the firmware's file system" in serial
    else:
        assert "through Block I/O" in serial
    report = parse_report(serial)
    assert report.one("begin")["firmware"] == firmware.upper()
    assert report.one("cmdline")["text"] == CMDLINE
    check_modules(report, modules)
    assert int(report.one("kernel")["main"], 0) == symbol_address(report_kernel, "kernel_main")
