"""The `hvboot` command line through a real process: bad inputs, exit statuses, serial logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPORT_KERNEL

from hvboot.loader import artifacts

OUTCOME_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-outcome-kernel"


def hvboot(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvboot", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def kernel(request: pytest.FixtureRequest) -> Path:
    if not REPORT_KERNEL.is_file():
        request.getfixturevalue("built")
    return REPORT_KERNEL


@pytest.fixture(scope="module")
def outcome_kernel(request: pytest.FixtureRequest) -> Path:
    if not OUTCOME_KERNEL.is_file():
        request.getfixturevalue("built")
    return OUTCOME_KERNEL


# --- hvboot build: bad input exits 2 and names the file and the field -------------------------


def test_build_not_an_elf(tmp_path: Path) -> None:
    bad = tmp_path / "kernel.bin"
    bad.write_bytes(b"MZ\x90\x00" + bytes(100))
    r = hvboot("build", str(bad), "-o", str(tmp_path / "disk.img"))
    assert r.returncode == 2
    assert f"{bad}: ELF header e_ident" in r.stderr and "not an ELF file" in r.stderr
    assert not (tmp_path / "disk.img").exists()


def test_build_missing_kernel(tmp_path: Path) -> None:
    missing = tmp_path / "nope.elf"
    r = hvboot("build", str(missing), "-o", str(tmp_path / "disk.img"))
    assert r.returncode == 2
    assert str(missing) in r.stderr and "no such file" in r.stderr


def test_build_bad_toml_key(tmp_path: Path, kernel: Path) -> None:
    cfg = tmp_path / "hvboot.toml"
    cfg.write_text(f'kernel = "{kernel}"\noutput = "disk.img"\ncmdlin = "x"\n')
    r = hvboot("build", "--config", str(cfg))
    assert r.returncode == 2
    assert f"{cfg}: cmdlin" in r.stderr and "unknown key" in r.stderr
    assert "did you mean 'cmdline'" in r.stderr


def test_build_bad_module_field(tmp_path: Path, kernel: Path) -> None:
    cfg = tmp_path / "hvboot.toml"
    cfg.write_text(f'kernel = "{kernel}"\noutput = "disk.img"\n[[modules]]\npath = 5\n')
    r = hvboot("build", "--config", str(cfg))
    assert r.returncode == 2
    assert "modules[0].path" in r.stderr and str(cfg) in r.stderr


def test_build_without_output(kernel: Path) -> None:
    r = hvboot("build", str(kernel))
    assert r.returncode == 2 and "-o IMAGE" in r.stderr


def test_build_writes_an_image(tmp_path: Path, kernel: Path) -> None:
    out = tmp_path / "disk.img"
    r = hvboot("build", str(kernel), "-o", str(out), "--cmdline", "a=b")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and f"wrote {out}" in r.stderr


# --- hvboot test / run --------------------------------------------------------------------------


@pytest.mark.boot
def test_test_good_kernel_with_serial_log(tmp_path: Path, kernel: Path) -> None:
    log = tmp_path / "serial.log"
    r = hvboot("test", str(kernel), "--serial-log", str(log), "--timeout", "120")
    assert r.returncode == 0, r.stderr[-3000:]
    # Progress while the image is built, then the verdict.
    assert "building a disk image for" in r.stderr and "built disk.img" in r.stderr
    assert "PASS: the kernel reported success" in r.stderr
    text = log.read_text()
    assert "hvboot: leaving the firmware" in text and "HVB end" in text
    assert "HVB end" in r.stdout  # and still on the terminal
    # The entry the hand-off chose; for hvboot's own protocol, the ELF's.
    entry = int.from_bytes(kernel.read_bytes()[24:32], "little")
    assert f"hvboot: jumping to the kernel at {entry:#x} (boot information at 0x" in text


@pytest.mark.boot
@pytest.mark.parametrize(
    ("outcome", "status", "message"),
    [
        ("failure", 1, "the kernel reported failure"),
        ("exit:5", (5 << 1) | 1, "the kernel exited with code 0x5"),
        ("triple", 8, "reset or powered off"),
    ],
)
def test_test_exit_status_per_outcome(
    outcome_kernel: Path, outcome: str, status: int, message: str
) -> None:
    r = hvboot("test", str(outcome_kernel), "--cmdline", f"outcome={outcome}", "--timeout", "120")
    assert r.returncode == status, r.stderr[-3000:]
    assert message in r.stderr and f"exit status {status}" in r.stderr


@pytest.mark.boot
def test_timeout_is_named_with_its_status(outcome_kernel: Path) -> None:
    r = hvboot("test", str(outcome_kernel), "--cmdline", "outcome=hang", "--timeout", "8")
    assert r.returncode == 4, r.stderr[-3000:]
    assert "timed out after 8 s" in r.stderr and "--timeout 8" in r.stderr


def test_qemu_error_is_shown(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    for command in ("test", "run"):
        r = hvboot(command, str(image), "--memory", "1T", "--timeout", "30")
        assert r.returncode == 10, r.stderr
        assert "QEMU failed" in r.stderr
        # QEMU's own message, not just ours.
        assert "qemu-system-x86_64:" in r.stderr


def test_run_missing_target(tmp_path: Path) -> None:
    r = hvboot("run", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "nothing" in r.stderr


# --- other commands -----------------------------------------------------------------------------


def test_doctor_runs() -> None:
    r = hvboot("doctor")
    assert r.returncode in (0, 1), r.stderr
    assert "qemu-system-x86_64" in r.stdout and "gdb" in r.stdout
    assert "present" in r.stderr


def test_version_and_help() -> None:
    r = hvboot("--version")
    assert r.returncode == 0 and r.stdout.startswith("hvboot ")
    r = hvboot("--help")
    for command in ("build", "run", "test", "debug", "inspect", "new", "doctor"):
        assert command in r.stdout
