"""When the firmware never starts the loader (issue 10, item 8), `hvboot test` says so with the
firmware's last words and exits 12, at once rather than after the timeout: OVMF with the ESP's
boot sector zeroed, SeaBIOS with no boot signature in the MBR or a failing read of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import make_image

from hvboot.cli.main import EXIT_NO_LOADER
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

pytestmark = pytest.mark.boot
HVBOOT = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "hvboot"
SECTOR = 512


def _hvboot_test(image: Path, firmware: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HVBOOT), "test", str(image), "--firmware", firmware, "--timeout", "120"],
        capture_output=True,
        text=True,
    )


def test_ovmf_refuses_an_esp_without_its_boot_sector(tmp_path: Path, report_kernel: Path) -> None:
    image = make_image(tmp_path, report_kernel)
    with open(image.output, "r+b") as f:
        f.seek(image.layout.esp_first_lba * SECTOR)
        f.write(bytes(SECTOR))
    result = _hvboot_test(image.output, "uefi")
    assert result.returncode == EXIT_NO_LOADER, result.stdout + result.stderr
    assert (
        "hvboot: FAIL: the firmware did not start the loader; its last words: BdsDxe: failed to "
        'load Boot0002 "UEFI QEMU HARDDISK' in result.stderr
    ), result.stderr
    assert "Not Found" in result.stderr
    assert "timed out" not in result.stderr  # the shell it fell back to was not waited on


def test_seabios_refuses_a_disk_without_a_boot_signature(
    tmp_path: Path, report_kernel: Path
) -> None:
    image = make_image(tmp_path, report_kernel)
    with open(image.output, "r+b") as f:
        f.seek(510)
        f.write(b"\0\0")
    result = _hvboot_test(image.output, "bios")
    assert result.returncode == EXIT_NO_LOADER, result.stdout + result.stderr
    assert (
        "hvboot: FAIL: the firmware did not start the loader; its last words: Hard Disk: Boot "
        "failed: not a bootable disk" in result.stderr
    ), result.stderr


def test_seabios_cannot_read_the_mbr(tmp_path: Path, report_kernel: Path) -> None:
    image = make_image(tmp_path, report_kernel)
    rules = tmp_path / "blkdebug.cfg"
    rules.write_text('[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "0"\n')
    spec = qemu.QemuSpec(
        image=image.output, machine=Machine(firmware="bios"), snapshot=True, blkdebug=rules
    )
    result = qemu.run(spec, timeout=120)
    assert not result.loader_started and not result.ok and not result.timed_out
    assert result.outcome == (
        "the firmware did not start the loader; its last words: Hard Disk: Boot failed: could "
        "not read the boot disk"
    )
