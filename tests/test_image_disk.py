"""Tests for the whole-disk image writer, checked with sgdisk, fsck.fat and mtools."""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from fat_reader import read_fat

from hvboot.errors import HvbootError
from hvboot.image.disk import DiskLayout, write_disk_image
from hvboot.image.fat import FatFile
from hvboot.image.gpt import BIOS_BOOT_TYPE, ESP_TYPE, read_gpt

MIB = 1024 * 1024
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C.UTF-8"}


def _esp_files(seed: int = 1) -> list[FatFile]:
    rng = random.Random(seed)
    return [
        FatFile("EFI/BOOT/BOOTX64.EFI", rng.randbytes(90_000)),
        FatFile("hvboot/kernel.elf", rng.randbytes(400_000)),
        FatFile("hvboot/modules/guest image.bin", rng.randbytes(2 * MIB + 3)),
        FatFile("hvboot/hvboot.cfg", b"kernel=/hvboot/kernel.elf\n"),
    ]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, env=MTOOLS_ENV, check=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_esp(image: Path, layout: DiskLayout, files: list[FatFile], work: Path) -> None:
    raw = image.read_bytes()
    start = layout.esp_first_lba * 512
    esp = raw[start : start + layout.esp_sectors * 512]
    assert read_fat(esp) == {f.path: f.data for f in files}
    extracted = work / "esp.img"
    extracted.write_bytes(esp)
    fsck = _run("fsck.fat", "-n", "-v", str(extracted))
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    bits = "32" if layout.fat_type == "FAT32" else "16"
    assert f"{bits} bit entries" in fsck.stdout
    assert f"{layout.esp_first_lba} hidden sectors" in fsck.stdout
    # mtools straight on the disk image, at the partition's byte offset.
    listing = _run("mdir", "-/", "-b", "-i", f"{image}@@{start}", "::")
    assert listing.returncode == 0, listing.stderr
    listed = {
        line.removeprefix("::/")
        for line in listing.stdout.splitlines()
        if line.startswith("::/") and not line.endswith("/")
    }
    assert listed == {f.path for f in files}


def test_bios_and_uefi_image(tmp_path: Path) -> None:
    files = _esp_files()
    stage2 = random.Random(2).randbytes(300_000)
    stage1 = bytes([0xEB, 0xFE]) + bytes(range(200))
    image = tmp_path / "disk.img"
    layout = write_disk_image(image, files, bios_stage2=stage2, mbr_boot_code=stage1)

    assert layout.stage2_first_lba == 2048 and layout.stage2_sectors == 2048
    assert layout.esp_first_lba == 4096 and layout.esp_first_lba % 2048 == 0
    assert layout.esp_sectors % 2048 == 0 and layout.esp_sectors * 512 >= 33 * MIB
    assert layout.fat_type == "FAT32"
    assert layout.total_sectors == layout.esp_first_lba + layout.esp_sectors + 2048
    assert image.stat().st_size == layout.total_sectors * 512
    assert not list(tmp_path.glob("*.tmp"))

    raw = image.read_bytes()
    assert raw[: len(stage1)] == stage1 and raw[450] == 0xEE and raw[510:512] == b"\x55\xaa"
    at = layout.stage2_first_lba * 512
    assert raw[at : at + len(stage2)] == stage2

    parts = read_gpt(raw)
    assert [(p.name, p.type_guid, p.first_lba, p.last_lba) for p in parts] == [
        ("BIOS boot", BIOS_BOOT_TYPE, 2048, 4095),
        ("EFI system", ESP_TYPE, 4096, 4096 + layout.esp_sectors - 1),
    ]
    verify = _run("sgdisk", "-v", str(image))
    assert "No problems found" in verify.stdout, verify.stdout
    printed = _run("sgdisk", "-p", str(image)).stdout
    rows = [
        line.split(None, 6) for line in printed.splitlines() if re.match(r"^\s+\d+\s+\d+", line)
    ]
    assert [(r[0], r[1], r[5], r[6]) for r in rows] == [
        ("1", "2048", "EF02", "BIOS boot"),
        ("2", "4096", "EF00", "EFI system"),
    ]
    _check_esp(image, layout, files, tmp_path)


def test_uefi_only_image(tmp_path: Path) -> None:
    files = _esp_files()
    image = tmp_path / "disk.img"
    layout = write_disk_image(image, files)
    assert layout.stage2_first_lba is None and layout.stage2_sectors is None
    assert layout.esp_first_lba == 2048
    assert [p.name for p in read_gpt(image.read_bytes())] == ["EFI system"]
    assert "No problems found" in _run("sgdisk", "-v", str(image)).stdout
    _check_esp(image, layout, files, tmp_path)


@pytest.mark.parametrize(
    ("length", "sectors"), [(0, 2048), (1, 2048), (MIB, 2048), (MIB + 1, 4096)]
)
def test_stage2_partition_is_rounded_up_to_a_mib(tmp_path: Path, length: int, sectors: int) -> None:
    layout = write_disk_image(tmp_path / "d.img", [], bios_stage2=bytes(length))
    assert layout.stage2_sectors == sectors
    assert layout.esp_first_lba == 2048 + sectors


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    files = _esp_files()
    a, b, c = tmp_path / "a.img", tmp_path / "b.img", tmp_path / "c.img"
    layout_a = write_disk_image(a, files, bios_stage2=b"stage2", seed=b"s")
    layout_b = write_disk_image(b, list(reversed(files)), bios_stage2=b"stage2", seed=b"s")
    assert layout_a == layout_b
    assert _sha256(a) == _sha256(b)

    changed = [*files[:-1], FatFile(files[-1].path, files[-1].data + b"#")]
    write_disk_image(c, changed, bios_stage2=b"stage2", seed=b"s")
    assert _sha256(c) != _sha256(a)
    guids_a = {p.unique_guid for p in read_gpt(a.read_bytes())}
    guids_c = {p.unique_guid for p in read_gpt(c.read_bytes())}
    assert not guids_a & guids_c

    write_disk_image(c, files, bios_stage2=b"stage2", seed=b"other seed")
    assert _sha256(c) != _sha256(a)
    write_disk_image(c, files, bios_stage2=b"stage3", seed=b"s")
    assert _sha256(c) != _sha256(a)


@pytest.mark.parametrize(("size", "fat_type"), [(12 * MIB, "FAT16"), (100 * MIB, "FAT32")])
def test_size_bytes_sets_the_total_size(tmp_path: Path, size: int, fat_type: str) -> None:
    files = _esp_files()
    image = tmp_path / "disk.img"
    layout = write_disk_image(image, files, size_bytes=size, bios_stage2=b"2")
    assert layout.total_sectors * 512 == size == image.stat().st_size
    assert layout.fat_type == fat_type
    esp_end = layout.esp_first_lba + layout.esp_sectors
    assert esp_end % 2048 == 0 and esp_end <= layout.total_sectors - 33
    assert "No problems found" in _run("sgdisk", "-v", str(image)).stdout
    _check_esp(image, layout, files, tmp_path)


def test_too_small_names_both_sizes(tmp_path: Path) -> None:
    files = _esp_files()
    image = tmp_path / "disk.img"
    with pytest.raises(HvbootError) as err:
        write_disk_image(image, files, size_bytes=4 * MIB, bios_stage2=b"2")
    message = str(err.value)
    assert err.value.where == "disk image size"
    assert f"{4 * MIB} bytes is too small" in message
    needed = int(re.findall(r"a disk image of (\d+) bytes is needed", message)[0])
    assert needed > 4 * MIB
    assert not image.exists() and not list(tmp_path.iterdir())
    # The size the message asks for is enough.
    layout = write_disk_image(image, files, size_bytes=needed, bios_stage2=b"2")
    assert read_fat(
        image.read_bytes()[layout.esp_first_lba * 512 : (layout.total_sectors - 33) * 512]
    ) == {f.path: f.data for f in files}

    # Too small for the data (not only for the FAT16 minimum).
    big = [FatFile("big.bin", bytes(20 * MIB))]
    with pytest.raises(HvbootError, match=f"{16 * MIB} bytes is too small") as err:
        write_disk_image(image, big, size_bytes=16 * MIB)
    needed = int(re.findall(r"a disk image of (\d+) bytes is needed", str(err.value))[0])
    assert needed > 20 * MIB
    write_disk_image(image, big, size_bytes=needed)


def test_bad_size_and_bad_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HvbootError, match="positive multiple of 512"):
        write_disk_image(tmp_path / "d.img", [], size_bytes=40 * MIB + 100)
    with pytest.raises(HvbootError, match="FAT path"):
        write_disk_image(tmp_path / "d.img", [FatFile("/EFI/BOOT/BOOTX64.EFI", b"")])
    with pytest.raises(HvbootError, match="MBR boot code"):
        write_disk_image(tmp_path / "d.img", [], mbr_boot_code=bytes(441))
    assert not list(tmp_path.iterdir())


def test_large_module(tmp_path: Path) -> None:
    module = random.Random(3).randbytes(64 * MIB)
    files = [FatFile("hvboot/modules/big.bin", module), FatFile("EFI/BOOT/BOOTX64.EFI", b"pe")]
    image = tmp_path / "disk.img"
    layout = write_disk_image(image, files)
    assert layout.fat_type == "FAT32"
    assert layout.esp_sectors * 512 >= 64 * MIB + 6 * MIB  # headroom: a tenth of the data
    raw = image.read_bytes()
    # The module is stored in one contiguous run inside the ESP.
    at = raw.find(module[: 64 * 1024])
    assert at > layout.esp_first_lba * 512
    assert raw[at : at + len(module)] == module


def test_unwritable_path_is_reported(tmp_path: Path) -> None:
    target = tmp_path / "missing dir" / "disk.img"
    with pytest.raises(HvbootError, match=r"output: the directory .* does not exist") as err:
        write_disk_image(target, [])
    assert err.value.where == str(target)


def test_too_large_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HvbootError, match=f"{3 * 2**40} bytes is too large"):
        write_disk_image(tmp_path / "d.img", [], size_bytes=3 * 2**40)
    assert not list(tmp_path.iterdir())
