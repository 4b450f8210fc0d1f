"""QEMU command lines and process control: serial capture, exit codes, timeouts.

The kernel reports its result through QEMU's isa-debug-exit device (port 0xf4): writing V makes
QEMU exit with status (V << 1) | 1. hvboot-api's EXIT_SUCCESS (0x10) gives status 33, which no
other QEMU exit produces (QEMU itself exits 0 on power-off or, with -no-reboot, on a reset such
as a triple fault, and 1 on its own errors).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hvboot.errors import HvbootError
from hvboot.trust import secure_boot
from hvboot.vm import firmware_words
from hvboot.vm.firmware import find_ovmf
from hvboot.vm.machine import Machine
from hvboot.vm.tpm import Pcrs, SoftwareTpm

DEBUG_EXIT_PORT = 0xF4
EXIT_SUCCESS = 0x10
EXIT_FAILURE = 0x11
STATUS_SUCCESS = (EXIT_SUCCESS << 1) | 1  # 33
STATUS_FAILURE = (EXIT_FAILURE << 1) | 1  # 35

# The disk's devices for each bus but IDE (which `-drive if=ide` makes, AHCI on q35).
DISK_BUSES: dict[str, tuple[str, ...]] = {
    "ide": (),
    "virtio": ("virtio-blk-pci,drive=disk0,bootindex=0",),
    "nvme": ("nvme,serial=hvboot0,drive=disk0,bootindex=0",),
    "usb": ("qemu-xhci,id=xhci", "usb-storage,bus=xhci.0,drive=disk0,bootindex=0"),
}

# What the loader prints when it gives up (loader/uefi/src/console.rs): it then halts for good.
LOADER_HALTED = "hvboot: halted"
LOADER_ERROR = "hvboot: error: "


@dataclass
class QemuSpec:
    image: Path
    machine: Machine = field(default_factory=Machine)
    gdb_port: int | None = None
    stopped: bool = False
    display: bool = False
    snapshot: bool = False  # writes go to a temporary overlay: the image stays as it was
    # A blkdebug rules file: the disk goes through QEMU's blkdebug driver, which injects the
    # I/O errors the file describes (tests of the loader's read-error handling).
    blkdebug: Path | None = None
    # "disk" (IDE hard disk) or "cdrom" (IDE CD-ROM: an ISO, booted through El Torito).
    media: str = "disk"
    # Network boot instead of a disk: QEMU's user-mode network serves this directory over TFTP
    # and names `image` (a path inside it) as the DHCP boot file; the NIC is `nic`.
    tftp: Path | None = None
    nic: str = "virtio-net-pci"
    # How the disk is attached (DISK_BUSES): IDE (AHCI on q35), virtio-blk, NVMe or USB (xHCI).
    disk_bus: str = "ide"


@dataclass
class RunResult:
    status: int | None  # QEMU's exit status; None when hvboot stopped it
    serial: str
    stderr: str
    elapsed: float
    timed_out: bool = False
    loader_error: str | None = None
    loader_started: bool = True  # False: the firmware gave up on the disk (firmware_words)
    outcome: str = ""
    ok: bool = False
    lines: list[str] = field(default_factory=list)
    pcrs: Pcrs | None = None  # with --tpm: every PCR of every active bank after the boot


def qemu_binary() -> str:
    found = shutil.which("qemu-system-x86_64")
    if not found:
        raise HvbootError(
            "qemu-system-x86_64",
            "not found on PATH; install it with: apt-get install qemu-system-x86",
        )
    return found


def command(
    spec: QemuSpec,
    vars_copy: Path | None,
    firmware_log: Path | None = None,
    tpm: SoftwareTpm | None = None,
) -> list[str]:
    """The full QEMU command line for `spec` (TCG; KVM is not used, see docs/testing.md);
    with `firmware_log`, the firmware's debug console goes to that file; with `tpm`, that
    software TPM is attached."""
    m = spec.machine
    if m.firmware not in ("uefi", "bios"):
        raise HvbootError("--firmware", f"{m.firmware!r}: expected 'uefi' or 'bios'")
    if not spec.image.is_file():
        raise HvbootError(spec.image, "no such disk image")
    smm = ""
    if m.secure_boot is not None:
        if m.firmware != "uefi" or m.type != "q35":
            raise HvbootError(
                "--secure-boot", "needs --firmware uefi on --machine q35 (OVMF's SMM build)"
            )
        smm = ",smm=on"
    cmd = [
        qemu_binary(),
        "-machine",
        f"{m.type},accel=tcg{smm}",
        "-cpu",
        m.cpu,
        "-m",
        m.memory,
        "-smp",
        str(m.cpus),
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-device",
        f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04",
    ]
    if not spec.display:
        cmd += ["-display", "none"]
    if firmware_log is not None:
        port = firmware_words.DEBUGCON_PORT
        cmd += ["-debugcon", f"file:{firmware_log}", "-global", f"isa-debugcon.iobase={port:#x}"]
    if m.firmware == "uefi":
        code = find_ovmf().code if m.secure_boot is None else secure_boot.firmware_files()
        assert vars_copy is not None
        cmd += [*(secure_boot.QEMU_ARGS if m.secure_boot else ())]
        cmd += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]
    if tpm is not None:
        cmd += tpm.qemu_args(m.type)
    if spec.tftp is not None:
        boot_file = spec.image.relative_to(spec.tftp).as_posix()
        cmd += ["-netdev", f"user,id=n0,tftp={spec.tftp},bootfile={boot_file}"]
        cmd += ["-device", f"{spec.nic},netdev=n0"]
        return _tail(cmd, spec)
    cmd += ["-net", "none"]
    if spec.disk_bus not in DISK_BUSES:
        raise HvbootError("disk bus", f"{spec.disk_bus!r}: expected one of {', '.join(DISK_BUSES)}")
    drive = f"file={spec.image},format=raw"
    if spec.blkdebug is not None:
        # raw on top of blkdebug: the raw driver emits the read_aio events the rules match.
        drive = (
            f"driver=raw,file.driver=blkdebug,file.config={spec.blkdebug},"
            f"file.image.filename={spec.image}"
        )
    drive += ",snapshot=on" if spec.snapshot else ""
    if spec.disk_bus == "ide":
        cmd += ["-drive", f"{drive},if=ide,index=0,media={spec.media}"]
    else:
        cmd += ["-drive", f"{drive},if=none,id=disk0"]
        for device in DISK_BUSES[spec.disk_bus]:
            cmd += ["-device", device]
    return _tail(cmd, spec)


def _tail(cmd: list[str], spec: QemuSpec) -> list[str]:
    """GDB, -S and the user's own arguments, last."""
    m = spec.machine
    if spec.gdb_port is not None:
        cmd += ["-gdb", f"tcp:127.0.0.1:{spec.gdb_port}"]
    if spec.stopped:
        cmd += ["-S"]
    cmd += list(m.qemu_args)
    return cmd


def vars_template(m: Machine) -> Path:
    """The UEFI variable store a boot of `m` starts from (a copy is what QEMU writes): OVMF's
    empty one, or with --secure-boot the one with the key set enrolled."""
    if m.secure_boot is None:
        return find_ovmf().vars_template
    return secure_boot.enrolled_vars(m.secure_boot)


def _firmware_gave_up(seen_on_serial: threading.Event, firmware_log: Path | None) -> bool:
    """Whether the firmware gave up on the disk, on serial (OVMF) or in its log (SeaBIOS)."""
    said = "" if seen_on_serial.is_set() else _read_log(firmware_log, tail=4096)
    if firmware_words.GAVE_UP.search(said):
        seen_on_serial.set()
    return seen_on_serial.is_set()


def _read_log(path: Path | None, tail: int | None = None) -> str:
    """The firmware log's text (its last `tail` bytes), empty if there is none."""
    if path is None:
        return ""
    try:
        with path.open("rb") as f:
            if tail is not None:
                f.seek(max(0, f.seek(0, os.SEEK_END) - tail))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def describe_status(status: int | None) -> tuple[bool, str]:
    """(success, what the exit status means)."""
    if status == STATUS_SUCCESS:
        return True, "the kernel reported success"
    if status == STATUS_FAILURE:
        return False, "the kernel reported failure"
    if status == 0:
        return False, (
            "the machine reset or powered off before the kernel reported a result "
            "(a triple fault resets the machine; -no-reboot turns that into an exit)"
        )
    if status == 1:
        return False, "QEMU failed (its messages are above)"
    if status is not None and status > 1 and status % 2 == 1:
        return False, f"the kernel exited with code {(status - 1) // 2:#x}"
    return False, f"QEMU exited with status {status}"


def run(
    spec: QemuSpec,
    *,
    timeout: float | None = None,
    echo: Callable[[str], None] | None = None,
    serial_log: Path | None = None,
    interactive: bool = False,
    until: re.Pattern[str] | None = None,
) -> RunResult:
    """Boot `spec` and wait for QEMU to exit, the loader to halt on an error, the timeout, or
    (with `until`) a serial line matching that pattern, whereupon QEMU is stopped."""
    with (
        tempfile.TemporaryDirectory(prefix="hvboot-qemu-") as tmp,
        contextlib.ExitStack() as stack,  # the TPM stops before its directory goes
    ):
        vars_copy = None
        if spec.machine.firmware == "uefi":
            vars_copy = Path(tmp) / "OVMF_VARS.fd"
            shutil.copyfile(vars_template(spec.machine), vars_copy)
        firmware_log = Path(tmp) / "firmware.log"
        tpm = None
        if spec.machine.tpm:
            tpm = stack.enter_context(SoftwareTpm(Path(tmp) / "tpm"))
        cmd = command(spec, vars_copy, firmware_log, tpm)
        result = _supervise(cmd, timeout, echo, serial_log, interactive, until, firmware_log)
        if tpm is not None:  # QEMU is gone: _supervise waited for it or stopped it
            result.pcrs = tpm.read_pcrs()
        return result


def _supervise(
    cmd: list[str],
    timeout: float | None,
    echo: Callable[[str], None] | None,
    serial_log: Path | None,
    interactive: bool,
    until: re.Pattern[str] | None = None,
    firmware_log: Path | None = None,
) -> RunResult:
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=None if interactive else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    halted = threading.Event()
    refused = threading.Event()  # Secure Boot refused the loader: the firmware goes on alone
    reached = threading.Event()
    gave_up = threading.Event()  # the firmware gave up on the disk (firmware_words.GAVE_UP)
    log = serial_log.open("wb") if serial_log else None

    def pump_serial() -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            if log:
                log.write(data)
                log.flush()
            if echo:
                echo(data.decode("utf-8", "replace"))
            pending = (pending + data)[-4096:]
            if LOADER_HALTED.encode() in pending:
                halted.set()
            text = pending.decode("utf-8", "replace")
            if secure_boot.refusal(text):
                refused.set()
            if until is not None and until.search(text):
                reached.set()
            if firmware_words.GAVE_UP.search(text):
                gave_up.set()

    def pump_stderr() -> None:
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        for data in iter(lambda: os.read(fd, 65536), b""):
            err_chunks.append(data)
            if echo:
                sys.stderr.write(data.decode("utf-8", "replace"))

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_serial, pump_stderr)]
    for t in readers:
        t.start()
    timed_out = False
    status: int | None = None
    try:
        while True:
            try:
                status = proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if halted.is_set() or refused.is_set():
                time.sleep(0.2)  # let the last lines arrive
                break
            if reached.is_set():
                break
            if not interactive and _firmware_gave_up(gave_up, firmware_log):
                time.sleep(0.2)  # let the last lines arrive
                break
            if timeout is not None and time.monotonic() - start > timeout:
                timed_out = True
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in readers:
            t.join(timeout=5)
        if log:
            log.close()
    elapsed = time.monotonic() - start
    serial = b"".join(chunks).decode("utf-8", "replace")
    stderr = b"".join(err_chunks).decode("utf-8", "replace")
    result = RunResult(status, serial, stderr, elapsed, timed_out=timed_out)
    result.lines = [line.rstrip("\r") for line in serial.split("\n")]
    for line in result.lines:
        if LOADER_ERROR in line:
            result.loader_error = line[line.index(LOADER_ERROR) + len(LOADER_ERROR) :].strip()
            break
    firmware_said = _read_log(firmware_log)
    started = firmware_words.loader_started(serial)
    if refused.is_set():
        why = secure_boot.refusal(serial)
        result.ok, result.outcome = False, f"Secure Boot refused the loader (firmware: {why})"
    elif not started and gave_up.is_set():
        result.loader_started = False
        result.outcome = firmware_words.never_started(serial, firmware_said)
    elif result.loader_error is not None and (halted.is_set() or status is None):
        result.ok, result.outcome = False, f"the loader stopped: {result.loader_error}"
    elif timed_out:
        result.ok = False
        result.outcome = f"timed out after {timeout:g} s without the kernel reporting a result"
        if not started:  # a slow firmware, or one stuck retrying its own reads
            result.outcome += f"; {firmware_words.not_yet_started(serial, firmware_said)}"
    else:
        result.ok, result.outcome = describe_status(status)
        if status == 1 and stderr.strip():
            result.outcome = f"QEMU failed: {stderr.strip().splitlines()[-1]}"
    return result
