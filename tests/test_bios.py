"""The BIOS path: stage 1's size and patch block, the builder's checks, and failures on the
machine under SeaBIOS (a disk read error injected with QEMU's blkdebug driver, a missing kernel,
a corrupt FAT), each printing its reason on serial and halting (docs/bios.md)."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import BOOT_TIMEOUT, esp_fats, kernel_read_error, make_image

from hvboot.errors import HvbootError
from hvboot.image.build import BuildResult, _check_stage2_fits
from hvboot.image.disk import DiskLayout
from hvboot.loader import artifacts
from hvboot.loader import bios_stages as bios
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
SECTOR = 512


@pytest.fixture(scope="module")
def boot_code(built: None) -> bios.BiosBoot:
    return bios.load(artifacts.bios_loader_elf())


def test_stage1_fits_the_mbr_boot_code_area(boot_code: bios.BiosBoot) -> None:
    # The build fails if NASM's output outgrows 440 bytes (loader/bios/build.rs); the section
    # the builder takes it from holds exactly the MBR's boot-code area.
    assert len(boot_code.stage1) == bios.STAGE1_SIZE == 440
    block = boot_code.stage1[bios.PATCH_OFFSET : bios.PATCH_OFFSET + 16]
    assert block == b"HVS1" + bytes(12), "the unpatched block must be empty"
    assert boot_code.stage2[4:8] == b"HVS2"
    assert len(boot_code.stage2) <= bios.STAGE2_MAX_BYTES


def test_image_mbr_is_patched_for_its_bios_boot_partition(
    tmp_path: Path, report_kernel: Path, boot_code: bios.BiosBoot
) -> None:
    image = make_image(tmp_path, report_kernel)
    data = image.output.read_bytes()
    layout = image.layout
    assert layout.stage2_first_lba is not None and layout.stage2_sectors is not None
    magic, sectors, _, lba = struct.unpack_from("<4sHHQ", data, bios.PATCH_OFFSET)
    assert magic == b"HVS1"
    assert lba == layout.stage2_first_lba
    assert sectors == (len(boot_code.stage2) + SECTOR - 1) // SECTOR
    assert sectors <= layout.stage2_sectors
    start = lba * SECTOR
    assert data[start : start + len(boot_code.stage2)] == boot_code.stage2
    # The rest of stage 1 is the loader's, untouched; the partition table follows it.
    assert data[: bios.PATCH_OFFSET] == boot_code.stage1[: bios.PATCH_OFFSET]
    assert data[510:512] == b"\x55\xaa" and data[450] == 0xEE  # protective MBR entry


def test_patch_refuses_bad_input(boot_code: bios.BiosBoot) -> None:
    too_many = bios.STAGE2_MAX_BYTES // SECTOR + 1
    with pytest.raises(HvbootError, match=f"{too_many} sectors"):
        bios.patch_stage1(boot_code.stage1, stage2_lba=2048, sectors=too_many)
    once = bios.patch_stage1(boot_code.stage1, stage2_lba=2048, sectors=10)
    with pytest.raises(HvbootError, match="already filled in"):
        bios.patch_stage1(once, stage2_lba=2048, sectors=10)
    with pytest.raises(HvbootError, match="no patch block"):
        bios.patch_stage1(bytes(440), stage2_lba=2048, sectors=10)


def test_builder_refuses_a_bios_boot_partition_too_small(tmp_path: Path) -> None:
    out = tmp_path / "disk.img"
    out.write_bytes(b"x")
    layout = DiskLayout(
        total_sectors=1,
        esp_first_lba=4096,
        esp_sectors=1,
        stage2_first_lba=2048,
        stage2_sectors=100,
        fat_type="FAT32",
    )
    with pytest.raises(HvbootError) as err:
        _check_stage2_fits(layout, 2048, 100 * SECTOR + 1, "loader/hvboot-bios", out)
    assert err.value.where == "loader/hvboot-bios"
    assert (
        f"{100 * SECTOR + 1} bytes" in err.value.what and f"{100 * SECTOR} bytes" in err.value.what
    )
    assert not out.exists(), "a half-usable image was left behind"


# --- failures on the machine (SeaBIOS) -------------------------------------------------------


def _esp(image: BuildResult) -> str:
    return f"{image.output}@@{image.layout.esp_first_lba * SECTOR}"


def _bios_error(image_or_run: BuildResult | qemu.RunResult) -> str:
    if isinstance(image_or_run, BuildResult):
        spec = qemu.QemuSpec(
            image=image_or_run.output, machine=Machine(firmware="bios"), snapshot=True
        )
        result = qemu.run(spec, timeout=BOOT_TIMEOUT)
    else:
        result = image_or_run
    assert not result.ok
    assert result.loader_error is not None, f"no loader error on serial:\n{result.serial[-3000:]}"
    assert "hvboot: halted" in result.serial
    assert "HVB begin" not in result.serial, "the kernel ran although the loader failed"
    return result.loader_error


@pytest.fixture
def image(tmp_path: Path, report_kernel: Path) -> BuildResult:
    return make_image(tmp_path, report_kernel, "x=1")


@pytest.mark.boot
def test_disk_read_error_in_the_kernel(
    image: BuildResult, report_kernel: Path, tmp_path: Path
) -> None:
    bad, result = kernel_read_error(image, report_kernel, tmp_path, once=False)
    error = _bios_error(result)
    assert "/hvboot/kernel.elf" in error and "disk read error" in error, error
    # The failing transfer is named by its first LBA and covers the bad sector.
    lba = int(error.split("at LBA ")[1].split()[0])
    count = int(error.split("(")[1].split()[0])
    assert lba <= bad < lba + count, error


@pytest.mark.boot
def test_missing_kernel_file(image: BuildResult) -> None:
    subprocess.run(
        ["mdel", "-i", _esp(image), "::/hvboot/kernel.elf"],
        check=True,
        env=ENV,
        capture_output=True,
    )
    error = _bios_error(image)
    assert "/hvboot/kernel.elf" in error and "not found" in error, error


@pytest.mark.boot
def test_corrupt_fat(image: BuildResult) -> None:
    # Overwrite every sector of both FATs (after the reserved clusters 0 and 1) with zeros:
    # every chain, the root directory's included, now runs into a "free" cluster.
    with open(image.output, "r+b") as f:
        for at, size in esp_fats(image):
            f.seek(at + 8)
            f.write(bytes(size - 8))
    error = _bios_error(image)
    assert "corrupt FAT" in error and "/hvboot/hvboot.cfg" in error, error
