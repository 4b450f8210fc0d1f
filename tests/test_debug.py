"""`hvboot debug`: a real GDB against real QEMU, in batch mode.

At the kernel's entry RDI points at the boot information, whose first 8 bytes are its magic
"HVBOOTBI" (0x4942544f4f425648): GDB must show it with `x/gx $rdi`. Under UEFI a breakpoint in
the loader (its `efi_main`, symbols placed where OVMF loaded it) must be hit as well.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIRMWARES, PIE_BASE, REPORT_KERNEL, make_image, pie_kernel

from hvboot.image.disk import write_disk_image

pytestmark = pytest.mark.boot

MAGIC = "0x4942544f4f425648"
SESSION_TIMEOUT = 240


def hvboot(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvboot", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def kernel(request: pytest.FixtureRequest) -> Path:
    if not REPORT_KERNEL.is_file():
        request.getfixturevalue("built")
    return REPORT_KERNEL


def _script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "session.gdb"
    path.write_text(text)
    return path


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_entry_and_named_breakpoints(tmp_path: Path, kernel: Path, firmware: str) -> None:
    """--break _start --break kernel_main: both hit, RDI = &BootInfo at both."""
    script = _script(
        tmp_path,
        "continue\ninfo symbol $pc\nx/gx $rdi\ncontinue\ninfo symbol $pc\nx/gx $rdi\n",
    )
    r = hvboot(
        "debug",
        str(kernel),
        "--firmware",
        firmware,
        "--break",
        "_start",
        "--break",
        "kernel_main",
        "--batch",
        str(script),
        "--timeout",
        str(SESSION_TIMEOUT),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "Hardware assisted breakpoint 1" in out and "Hardware assisted breakpoint 2" in out
    first = out.index("_start in section .text")
    second = out.index("kernel_main in section .text")
    assert first < second
    assert len(re.findall(rf":\s+{MAGIC}\b", out)) == 2, out[-3000:]
    # The breakpoint stopped the kernel before it printed its report.
    assert out.index("HVB begin") > second if "HVB begin" in out else True


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_default_breakpoint_is_the_entry_no_gdb(
    tmp_path: Path, kernel: Path, firmware: str
) -> None:
    """--no-gdb on a disk image: QEMU waits; the printed command attaches with the symbols
    (read back from the image) and a breakpoint at the entry."""
    image = make_image(tmp_path, kernel).output
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hvboot",
            "debug",
            str(image),
            "--firmware",
            firmware,
            "--no-gdb",
            "--timeout",
            str(SESSION_TIMEOUT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        command = None
        for line in proc.stdout:
            if line.startswith("attach with:"):
                command = next(proc.stdout).strip()
                break
        assert command is not None, proc.stderr.read() if proc.stderr else ""
        assert "target remote 127.0.0.1:" in command and "hbreak _start" in command
        gdb = subprocess.run(
            [*_split(command), "-batch", "-ex", "continue", "-ex", "x/gx $rdi"],
            capture_output=True,
            text=True,
            timeout=SESSION_TIMEOUT,
        )
        assert re.search(rf":\s+{MAGIC}\b", gdb.stdout), gdb.stdout + gdb.stderr
        assert "in _start" in gdb.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _split(command: str) -> list[str]:
    import shlex

    return shlex.split(command)


def test_loader_breakpoint(tmp_path: Path, kernel: Path) -> None:
    """--loader: the UEFI application's symbols at the base OVMF chose; efi_main is hit, in
    the loader's code, before the loader printed anything."""
    script = _script(
        tmp_path,
        "continue\ninfo symbol $pc\nbt 1\n",
    )
    r = hvboot(
        "debug",
        str(kernel),
        "--loader",
        "--batch",
        str(script),
        "--timeout",
        str(SESSION_TIMEOUT),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "OVMF loads the loader at 0x" in r.stderr
    out = r.stdout
    assert "Hardware assisted breakpoint 1" in out
    assert "Breakpoint 1," in out
    assert re.search(r"efi_main(\s\+\s\d+)? in section \.text", out), out[-3000:]
    # Stopped at the loader's entry: it had not started printing yet.
    hit = out.index("Breakpoint 1,")
    assert "hvboot: " not in out[:hit]


def test_unknown_breakpoint_symbol(kernel: Path) -> None:
    r = hvboot("debug", str(kernel), "--break", "no_such_function", "--no-gdb")
    assert r.returncode == 2
    assert "no_such_function" in r.stderr and str(kernel) in r.stderr


def test_batch_file_missing(tmp_path: Path, kernel: Path) -> None:
    r = hvboot("debug", str(kernel), "--batch", str(tmp_path / "nope.gdb"))
    assert r.returncode == 2
    assert "nope.gdb" in r.stderr


def test_bios_without_stage2_is_refused(tmp_path: Path, kernel: Path) -> None:
    """An image without a BIOS boot partition cannot boot under BIOS: say so, do not hang."""
    built = make_image(tmp_path, kernel)
    uefi_only = tmp_path / "uefi-only.img"
    write_disk_image(uefi_only, built.files)  # the same ESP, no BIOS boot partition
    r = hvboot("debug", str(uefi_only), "--firmware", "bios", "--no-gdb")
    assert r.returncode == 2
    assert "no BIOS boot partition" in r.stderr and str(uefi_only) in r.stderr


def test_bios_loader_breakpoints(tmp_path: Path, kernel: Path) -> None:
    """--loader --firmware bios: stage 1 at 0x7c00, then stage 2's first instruction."""
    script = _script(tmp_path, "continue\np/x $pc\ncontinue\ninfo symbol $pc\n")
    r = hvboot(
        "debug",
        str(kernel),
        "--firmware",
        "bios",
        "--loader",
        "--batch",
        str(script),
        "--timeout",
        str(SESSION_TIMEOUT),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "$1 = 0x7c00" in out
    assert "stage2_start in section .stage2" in out
    hit = out.index("Breakpoint 1,")
    assert "hvboot: " not in out[:hit]


def test_position_independent_kernel_symbols_are_slid(tmp_path: Path) -> None:
    """The Limine test kernel as a static PIE runs slid to 0xffffffff80000000: GDB gets its
    symbols moved by the core plan's slide, so the entry it is released at names itself."""
    from hvboot.kernel.elf import symbols

    kernel = pie_kernel("limine")
    (link,) = [a for n, a in symbols(kernel).items() if "limine_entry" in n]
    script = _script(tmp_path, "continue\ninfo symbol $pc\np/x $pc\n")
    r = hvboot(
        "debug",
        str(kernel),
        "--firmware",
        "bios",
        "--break",
        f"{PIE_BASE + link:#x}",
        "--batch",
        str(script),
        "--timeout",
        str(SESSION_TIMEOUT),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r"limine_entry.* in section \.text", r.stdout), r.stdout[-3000:]
    assert f"= {PIE_BASE + link:#x}" in r.stdout
