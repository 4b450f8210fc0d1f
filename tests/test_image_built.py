"""A real image from `hvboot build`, checked by independent tools: sgdisk, fsck.fat, mtools and
pefile; and reproducible to the byte."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pefile
import pytest
from conftest import make_image

from hvboot.config.build import ModuleSpec
from hvboot.image.build import BuildResult
from hvboot.loader.pe import check_pe

ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


@pytest.fixture(scope="module")
def module_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mod") / "guest image.bin"
    path.write_bytes(bytes(range(256)) * 4099)
    return path


@pytest.fixture(scope="module")
def image(
    tmp_path_factory: pytest.TempPathFactory, report_kernel: Path, module_file: Path
) -> BuildResult:
    mods = (ModuleSpec(module_file, module_file.name, "a=b c"),)
    return make_image(tmp_path_factory.mktemp("img"), report_kernel, "console=ttyS0", mods)


def test_sgdisk_verifies_the_partition_table(image: BuildResult) -> None:
    out = subprocess.run(["sgdisk", "-v", str(image.output)], capture_output=True, text=True)
    assert out.returncode == 0 and "No problems found" in out.stdout, out.stdout + out.stderr
    table = subprocess.run(["sgdisk", "-p", str(image.output)], capture_output=True, text=True)
    assert "EF00" in table.stdout


def test_fsck_fat_accepts_the_esp(image: BuildResult, tmp_path: Path) -> None:
    esp = tmp_path / "esp.img"
    start = image.layout.esp_first_lba * 512
    with image.output.open("rb") as f:
        f.seek(start)
        esp.write_bytes(f.read(image.layout.esp_sectors * 512))
    out = subprocess.run(["fsck.fat", "-n", str(esp)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert image.layout.fat_type == "FAT32"


def test_mtools_lists_and_reads_every_file(image: BuildResult, tmp_path: Path) -> None:
    spec = f"{image.output}@@{image.layout.esp_first_lba * 512}"
    listing = subprocess.run(
        ["mdir", "-/", "-b", "-i", spec, "::"], capture_output=True, text=True, env=ENV, check=True
    ).stdout
    for f in image.files:
        assert f"::/{f.path}" in listing
        out = tmp_path / "copy"
        subprocess.run(["mcopy", "-o", "-i", spec, f"::/{f.path}", str(out)], env=ENV, check=True)
        assert out.read_bytes() == f.data, f.path


def test_loader_is_a_valid_efi_application(image: BuildResult) -> None:
    loader = next(f.data for f in image.files if f.path == "EFI/BOOT/BOOTX64.EFI")
    assert check_pe(loader) == []
    pe = pefile.PE(data=loader)
    assert pe.OPTIONAL_HEADER.Subsystem == 10
    assert pe.FILE_HEADER.Machine == 0x8664
    assert pe.DIRECTORY_ENTRY_BASERELOC, "no base relocations: OVMF could not relocate it"


def test_config_on_the_esp(image: BuildResult, module_file: Path) -> None:
    cfg = next(f.data for f in image.files if f.path == "hvboot/hvboot.cfg").decode()
    assert cfg.splitlines()[0] == "hvboot-config 1"
    assert "cmdline console=ttyS0" in cfg
    assert f"module-name {module_file.name}" in cfg and "module-cmdline a=b c" in cfg


def test_same_inputs_same_bytes(tmp_path: Path, report_kernel: Path, module_file: Path) -> None:
    mods = (ModuleSpec(module_file, module_file.name, ""),)
    digests = set()
    for name in ("a.img", "b.img"):
        built = make_image(tmp_path, report_kernel, "x", mods, name=name)
        digests.add(hashlib.sha256(built.output.read_bytes()).hexdigest())
    assert len(digests) == 1
    other = make_image(tmp_path, report_kernel, "y", mods, name="c.img")
    assert hashlib.sha256(other.output.read_bytes()).hexdigest() not in digests
