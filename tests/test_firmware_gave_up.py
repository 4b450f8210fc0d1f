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


def _damaged(tmp: Path, kernel: Path, at_sector: int | None, offset: int, data: bytes) -> Path:
    """An image with `data` written at `offset` into sector `at_sector` (None: the ESP's)."""
    image = make_image(tmp, kernel)
    sector = image.layout.esp_first_lba if at_sector is None else at_sector
    with open(image.output, "r+b") as f:
        f.seek(sector * SECTOR + offset)
        f.write(data)
    return image.output


@pytest.mark.parametrize(
    ("firmware", "at_sector", "offset", "data", "words"),
    [
        # The ESP's boot sector zeroed: OVMF finds no file system, so no BOOTX64.EFI.
        ("uefi", None, 0, bytes(SECTOR), 'BdsDxe: failed to load Boot0002 "UEFI QEMU HARDDISK'),
        # No 55 AA at the MBR's end: not a boot disk to SeaBIOS.
        ("bios", 0, 510, b"\0\0", "Hard Disk: Boot failed: not a bootable disk"),
    ],
)
def test_hvboot_test_says_the_firmware_gave_up(
    tmp_path: Path,
    report_kernel: Path,
    firmware: str,
    at_sector: int | None,
    offset: int,
    data: bytes,
    words: str,
) -> None:
    image = _damaged(tmp_path, report_kernel, at_sector, offset, data)
    result = _hvboot_test(image, firmware)
    assert result.returncode == EXIT_NO_LOADER, result.stdout + result.stderr
    said = f"hvboot: FAIL: the firmware did not start the loader; its last words: {words}"
    assert said in result.stderr, result.stderr
    assert "timed out" not in result.stderr  # stopped when it gave up, not at the timeout


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
