"""How `hvboot test` judges each way a kernel can end, through the real CLI and real QEMU, and
`hvboot test` as a cargo runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hvboot.loader import artifacts

pytestmark = pytest.mark.boot
OUTCOME_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-outcome-kernel"


def hvboot(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvboot", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("outcome", "ok", "message"),
    [
        ("success", True, "the kernel reported success"),
        ("failure", False, "the kernel reported failure"),
        ("exit:5", False, "the kernel exited with code 0x5"),
        ("panic", False, "the kernel reported failure"),
        ("triple", False, "reset or powered off"),
    ],
)
def test_outcome(built: None, outcome: str, ok: bool, message: str) -> None:
    r = hvboot("test", str(OUTCOME_KERNEL), "--cmdline", f"outcome={outcome}", "--timeout", "90")
    assert (r.returncode == 0) == ok, r.stderr
    assert message in r.stderr
    assert ("PASS" in r.stderr) == ok
    assert f"outcome kernel: {outcome}" in r.stdout


def test_panic_message_is_shown(built: None) -> None:
    r = hvboot("test", str(OUTCOME_KERNEL), "--cmdline", "outcome=panic", "--timeout", "90")
    assert "asked to panic" in r.stdout


def test_timeout_is_named(built: None) -> None:
    r = hvboot("test", str(OUTCOME_KERNEL), "--cmdline", "outcome=hang", "--timeout", "12")
    assert r.returncode != 0
    assert "timed out after 12 s" in r.stderr


def test_qemu_error_is_shown(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 1024 * 1024)
    r = hvboot("test", str(image), "--memory", "1T", "--timeout", "30")
    assert r.returncode != 0
    assert "QEMU failed" in r.stderr and "memory" in r.stderr.lower()


@pytest.mark.parametrize(("outcome", "ok"), [("success", True), ("failure", False)])
def test_cargo_runner(built: None, outcome: str, ok: bool) -> None:
    """`runner = "hvboot test"`: cargo runs the kernel through the toolkit."""
    runner = f"target.x86_64-unknown-linux-gnu.runner=['{sys.executable}','-m','hvboot','test']"
    r = subprocess.run(
        [
            "cargo",
            "run",
            "--release",
            "--quiet",
            "-p",
            "hvboot-outcome-kernel",
            "--config",
            runner,
            "--",
            "--cmdline",
            f"outcome={outcome}",
            "--timeout",
            "90",
        ],
        cwd=artifacts.TEST_KERNELS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (r.returncode == 0) == ok, r.stderr[-2000:]
    assert f"outcome kernel: {outcome}" in r.stdout


def test_demo_boots_under_both_firmwares(built: None) -> None:
    r = hvboot("demo", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("PASS") == 2
    assert "under BIOS" in r.stderr and "under UEFI" in r.stderr
    assert r.stdout.count("hvboot-sample-hypervisor: OK") == 2
    assert r.stdout.count("smp: 4 of 4 CPUs online") == 2
