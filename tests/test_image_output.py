"""Where `hvboot build -o` writes (issue 10, item 5): through a symlink and a block device, never
replacing the link or the node; a FIFO, a character device and /proc refused by name, untouched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import boot_report

from hvboot.units import MIB

HVBOOT = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "hvboot"


def _build(kernel: Path, output: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HVBOOT), "build", str(kernel), "-o", str(output), *extra],
        capture_output=True,
        text=True,
    )


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    return result.stderr


def _gpt_ok(disk: Path | str) -> None:
    out = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True).stdout
    assert "No problems found" in out, out


def test_a_symlink_is_written_through(tmp_path: Path, report_kernel: Path) -> None:
    (tmp_path / "real.img").write_bytes(b"old")
    link = tmp_path / "disk.img"
    link.symlink_to("real.img")
    result = _build(report_kernel, link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == "real.img"
    _gpt_ok(tmp_path / "real.img")
    assert not list(tmp_path.glob("*.tmp"))


def test_a_dangling_symlink_creates_its_target(tmp_path: Path, report_kernel: Path) -> None:
    link = tmp_path / "disk.img"
    link.symlink_to("new.img")
    assert _build(report_kernel, link).returncode == 0
    assert link.is_symlink()
    _gpt_ok(tmp_path / "new.img")


def test_a_fifo_is_refused_and_kept(tmp_path: Path, report_kernel: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "to-pipe"
    link.symlink_to(fifo)
    error = _refused(_build(report_kernel, link))
    assert f"{link}: output: is a FIFO (a link to {fifo}), expected a regular file" in error
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/dev/null", "output: is a character device, expected a regular file"),
        ("/proc/version", "output: is a file of the proc pseudo file system, not storage"),
    ],
)
def test_special_files_are_refused_by_name(report_kernel: Path, path: str, words: str) -> None:
    before = os.stat(path)
    error = _refused(_build(report_kernel, path))
    assert f"hvboot: error: {path}: {words}" in error
    after = os.stat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 48 MiB loop device over a file full of old bytes: (the device, its backing file)."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("a loop device needs root and losetup")
    backing = tmp_path / "stick.raw"
    backing.write_bytes(b"\xa5" * (48 * MIB))
    made = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"no loop device: {made.stderr.strip()}")
    device = Path(made.stdout.strip())
    try:
        yield device, backing
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=True)


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_a_block_device_is_written_through_and_boots(
    tmp_path: Path, report_kernel: Path, loop_device: tuple[Path, Path], firmware: str
) -> None:
    device, backing = loop_device
    link = tmp_path / "stick"
    link.symlink_to(device)
    result = _build(report_kernel, link, "--cmdline", "on=stick")
    assert result.returncode == 0, result.stderr
    assert stat.S_ISBLK(os.stat(device).st_mode) and link.is_symlink()
    assert "(48 MiB," in result.stderr  # the image fills the device: its backup GPT at the end
    _gpt_ok(device)
    # What the device holds boots: the report kernel runs and reports its command line.
    subprocess.run(["sync"], check=True)
    _, report = boot_report(backing, firmware)
    assert report.one("cmdline")["text"] == "on=stick"


def test_a_device_too_small_is_refused(report_kernel: Path, loop_device: tuple[Path, Path]) -> None:
    device, backing = loop_device
    error = _refused(_build(report_kernel, device, "--image-size", "64M"))
    assert f"{device}: output: the image is {64 * MIB} bytes but the device holds only" in error
    assert stat.S_ISBLK(os.stat(device).st_mode)
    assert backing.read_bytes()[:512] == b"\xa5" * 512  # not a byte written
