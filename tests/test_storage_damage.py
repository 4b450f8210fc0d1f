"""Damaged storage on the machine (issue 10): FAT cluster-chain loops in the kernel, a module and
a directory are refused as corrupt FAT under both firmwares (BIOS and UEFI both read the ESP with
the loader core's FAT reader, docs/loader.md "Reading files"); under SeaBIOS a damaged primary GPT
boots from the backup GPT, both damaged are refused by name, and a read error that happens once
is retried away (docs/bios.md)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot, esp_fats, kernel_read_error, make_image

from hvboot.config.build import ModuleSpec
from hvboot.image.build import BuildResult

pytestmark = pytest.mark.boot
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
SECTOR = 512
MODULE = "/hvboot/modules/guest.bin"


@pytest.fixture
def image(tmp_path: Path, report_kernel: Path) -> BuildResult:
    mod = tmp_path / "guest.bin"
    mod.write_bytes(bytes(range(256)) * 256)  # 64 KiB: 128 clusters of 512 bytes
    return make_image(tmp_path, report_kernel, "x=1", (ModuleSpec(mod, "guest.bin", ""),))


def _first_cluster(image: BuildResult, path: str) -> int:
    esp = f"{image.output}@@{image.layout.esp_first_lba * SECTOR}"
    out = subprocess.run(
        ["mshowfat", "-i", esp, f"::{path}"], check=True, env=ENV, capture_output=True, text=True
    ).stdout
    match = re.search(r"<(\d+)", out)
    assert match, out
    return int(match.group(1))


def _link(image: BuildResult, cluster: int, to: int) -> None:
    """Sets cluster's FAT32 entry to `to`, in every FAT copy."""
    with open(image.output, "r+b") as f:
        for at, _ in esp_fats(image):
            f.seek(at + cluster * 4)
            f.write(struct.pack("<I", to))


def _refused(image: BuildResult, firmware: str) -> str:
    result = boot(image.output, firmware)
    assert not result.ok
    assert result.loader_error is not None, f"no loader error on serial:\n{result.serial[-3000:]}"
    assert "hvboot: halted" in result.serial
    assert "HVB begin" not in result.serial, "the kernel ran although the loader failed"
    return result.loader_error


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_loop_in_the_kernel_chain(image: BuildResult, firmware: str) -> None:
    # A loop far shorter than the file: cluster 20 of the kernel links back to cluster 5.
    first = _first_cluster(image, "/hvboot/kernel.elf")
    _link(image, first + 20, first + 5)
    error = _refused(image, firmware)
    assert "/hvboot/kernel.elf" in error and "corrupt FAT" in error and "loops" in error, error


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_loop_in_a_module_chain(image: BuildResult, firmware: str) -> None:
    first = _first_cluster(image, MODULE)
    _link(image, first + 100, first + 99)
    error = _refused(image, firmware)
    assert MODULE in error and "corrupt FAT" in error and "loops" in error, error


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_loop_in_a_directory_chain(image: BuildResult, firmware: str) -> None:
    # /hvboot/modules is one cluster; now it is its own successor. Before, the loader read the
    # directory until its heap ran out.
    cluster = _first_cluster(image, "/hvboot/modules")
    _link(image, cluster, cluster)
    error = _refused(image, firmware)
    assert MODULE in error and "corrupt FAT" in error and "loops" in error, error


def _damage_gpt_header(image: BuildResult, lba: int) -> None:
    with open(image.output, "r+b") as f:
        f.seek(lba * SECTOR + 40)  # FirstUsableLBA: only the header CRC notices
        byte = f.read(1)[0]
        f.seek(lba * SECTOR + 40)
        f.write(bytes([byte ^ 1]))


def _last_lba(image: BuildResult) -> int:
    return image.output.stat().st_size // SECTOR - 1


def test_damaged_primary_gpt_boots_from_the_backup(image: BuildResult) -> None:
    _damage_gpt_header(image, 1)
    result = boot(image.output, "bios")
    assert result.ok, f"{result.outcome}\n{result.serial[-3000:]}"
    assert "primary GPT damaged (header CRC32" in result.serial
    assert "using the backup GPT" in result.serial


def test_both_gpts_damaged_are_refused(image: BuildResult) -> None:
    _damage_gpt_header(image, 1)
    _damage_gpt_header(image, _last_lba(image))
    error = _refused(image, "bios")
    assert "no valid GPT" in error, error
    assert "primary (LBA 1): header CRC32" in error, error
    assert f"backup (LBA {_last_lba(image)}): header CRC32" in error, error


def test_a_read_error_that_happens_once_is_retried(
    image: BuildResult, report_kernel: Path, tmp_path: Path
) -> None:
    # As in test_bios.py, but failing once: the first read of the sector fails, the retry works.
    _, result = kernel_read_error(image, report_kernel, tmp_path, once=True)
    assert result.ok, f"{result.outcome}\n{result.serial[-3000:]}"
    assert "resetting the drive, try 2" in result.serial, result.serial[-3000:]
