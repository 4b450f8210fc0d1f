"""`hvboot debug`: QEMU stopped at reset with its GDB stub on a free port, and GDB attached.

A session: make (or take) the disk image, find the kernel ELF for its symbols (the one given, or
/hvboot/kernel.elf read back from the image's ESP), pick a free TCP port on 127.0.0.1, start
QEMU with ``-S -gdb tcp:127.0.0.1:PORT``, write a GDB script (src/hvboot/gdb.py) and run GDB on
it: interactively, in batch mode with the user's script after ours (``--batch FILE``, exit status
= GDB's), or not at all (``--no-gdb``: print the command that attaches and wait for QEMU).

With ``--loader`` the symbols are the UEFI loader's, placed at the base OVMF loaded it at (found
by `gdb.probe_loader_base`), and the default breakpoint is ``efi_main``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hvboot.errors import HvbootError
from hvboot.image.gpt import BIOS_BOOT_TYPE, ESP_TYPE, read_gpt
from hvboot.kernel.elf import check_kernel, load_plan, symbols
from hvboot.loader import artifacts, checker
from hvboot.loader.config_file import KERNEL_PATH
from hvboot.units import SECTOR_SIZE
from hvboot.vm import gdb, qemu
from hvboot.vm.machine import Machine
from hvboot.vm.tpm import SoftwareTpm

LOADER_ENTRY = "efi_main"
#: Stage 1 (the MBR code, where the BIOS jumps) and stage 2's first instruction.
BIOS_LOADER_BREAKS = ("0x7c00", "stage2_start")


@dataclass
class DebugRequest:
    image: Path  # a disk image (already built)
    kernel: Path | None  # the kernel ELF whose symbols to load (None: read it from the image)
    machine: Machine = field(default_factory=Machine)
    breaks: Sequence[str] = ()
    loader: bool = False
    no_gdb: bool = False
    batch: Path | None = None
    say: Callable[[str], None] = field(default=lambda text: None)


@dataclass
class DebugResult:
    status: int  # GDB's exit status (or QEMU's with --no-gdb)
    timed_out: bool = False
    qemu_status: int | None = None
    qemu_stderr: str = ""


def check_firmware(image: Path, firmware: str) -> None:
    """Refuse to wait forever on an image the firmware cannot boot: BIOS needs stage 2."""
    if firmware != "bios":
        return
    try:
        with image.open("rb") as f:
            head = f.read(34 * SECTOR_SIZE)
        parts = read_gpt(head)
    except (OSError, HvbootError):
        return  # not ours to judge: QEMU and the firmware will say
    if not any(p.type_guid == BIOS_BOOT_TYPE for p in parts):
        raise HvbootError(
            image,
            "--firmware bios: the image has no BIOS boot partition (no stage 2), so it cannot "
            "boot under BIOS; this hvboot build writes UEFI-only images",
        )


def kernel_from_image(image: Path, dest: Path) -> Path:
    """Write the kernel ELF held on `image`'s ESP (/hvboot/kernel.elf) to `dest`."""
    disk = image.read_bytes()
    esp = next((p for p in read_gpt(disk) if p.type_guid == ESP_TYPE), None)
    if esp is None:
        raise HvbootError(image, "no EFI system partition: is this an hvboot image?")
    files = checker.esp_files(disk, str(image))
    data = files.get(KERNEL_PATH.lstrip("/"))
    if data is None:
        raise HvbootError(image, f"the ESP holds no {KERNEL_PATH}: is this an hvboot image?")
    dest.write_bytes(data)
    return dest


def check_breaks(elf: Path, breaks: Sequence[str]) -> None:
    """Every --break names a symbol of `elf`, an address, or a Rust path GDB can resolve."""
    known = symbols(elf)
    for b in breaks:
        if b in known or "::" in b or gdb.breakpoint_location(b) != b:
            continue
        raise HvbootError(f"--break {b}", f"{elf} has no symbol {b!r}")


def default_kernel_break(kernel: Path) -> str:
    """The kernel's entry: its symbol's name when it has one (`_start`), else the address."""
    plan = load_plan(kernel)
    entry = plan.entry
    link_entry = (entry - plan.slide) % (1 << 64)  # symbols are at link addresses
    names = sorted(n for n, a in symbols(kernel).items() if a == link_entry)
    if "_start" in names:
        return "_start"
    return names[0] if names else f"{entry:#x}"


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (read from /proc, without connecting)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(
                line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:]
            )
    except OSError:
        return True  # cannot tell: let GDB try


@contextlib.contextmanager
def _ignore_sigint() -> Iterator[None]:
    """GDB handles Ctrl-C (it interrupts the target); hvboot must not die of it meanwhile."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _script(req: DebugRequest, kernel: Path | None, port: int, tmp: Path) -> tuple[str, str]:
    """(the GDB script, what it breaks at) for the kernel or the loader."""
    if req.loader and req.machine.firmware == "bios":
        elf = artifacts.bios_loader_elf()
        breaks = list(req.breaks) or list(BIOS_LOADER_BREAKS)
        check_breaks(elf, [b for b in breaks if b != "0x7c00"])
        return gdb.bios_loader_script(elf, port, breaks), ", ".join(breaks)
    if req.loader:
        loader_elf = artifacts.uefi_loader_elf()
        elf_bytes = loader_elf.read_bytes()
        breaks = list(req.breaks) or [LOADER_ENTRY]
        check_breaks(loader_elf, breaks)
        req.say("finding where the firmware loads the UEFI loader (one boot without a debugger)")
        spec = _spec(req, None)
        base = gdb.probe_loader_base(spec)
        delta = gdb.elf_delta(elf_bytes)
        req.say(
            f"OVMF loads the loader at {base:#x}; its ELF addresses are offset by {base + delta:#x}"
        )
        return gdb.loader_script(loader_elf, port, base, delta, breaks), ", ".join(breaks)
    assert kernel is not None
    breaks = list(req.breaks) or [default_kernel_break(kernel)]
    check_breaks(kernel, breaks)
    plan = check_kernel(kernel.read_bytes(), str(kernel)).plan
    slide = plan.slide if plan is not None else 0
    return gdb.kernel_script(kernel, port, breaks, slide), ", ".join(breaks)


def _spec(req: DebugRequest, port: int | None) -> qemu.QemuSpec:
    return qemu.QemuSpec(
        image=req.image,
        machine=req.machine,
        gdb_port=port,
        stopped=port is not None,
        snapshot=True,
    )


class _Qemu:
    """QEMU in its own session (Ctrl-C in GDB must not reach it), serial echoed and logged."""

    def __init__(self, cmd: list[str], serial_log: Path | None) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.stderr = bytearray()
        self.quiet = False  # set once GDB is gone: what QEMU prints then is noise
        log = serial_log.open("wb") if serial_log else None

        def pump_serial() -> None:
            assert self.proc.stdout is not None
            while data := os.read(self.proc.stdout.fileno(), 65536):
                if not self.quiet:
                    sys.stdout.buffer.write(data)
                    sys.stdout.flush()
                if log:
                    log.write(data)
                    log.flush()
            if log:
                log.close()

        def pump_stderr() -> None:
            assert self.proc.stderr is not None
            while data := os.read(self.proc.stderr.fileno(), 65536):
                self.stderr.extend(data)
                sys.stderr.buffer.write(data)
                sys.stderr.flush()

        self.threads = [threading.Thread(target=f, daemon=True) for f in (pump_serial, pump_stderr)]
        for t in self.threads:
            t.start()

    def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if self.proc.poll() is not None:
                raise HvbootError(
                    "QEMU", f"exited with status {self.proc.returncode} before GDB could attach"
                )
            if time.monotonic() > deadline:
                raise HvbootError("QEMU", f"its GDB stub did not listen on port {port}")
            time.sleep(0.02)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        status = self.proc.wait()
        for t in self.threads:
            t.join(timeout=5)
        return status


def run(req: DebugRequest) -> DebugResult:
    with (
        tempfile.TemporaryDirectory(prefix="hvboot-debug-") as tmpdir,
        contextlib.ExitStack() as stack,  # the TPM stops before its directory goes
    ):
        tmp = Path(tmpdir)
        check_firmware(req.image, req.machine.firmware)
        kernel = req.kernel
        if kernel is None and not req.loader:
            kernel = kernel_from_image(req.image, tmp / "kernel.elf")
        port = gdb.free_port()
        script_text, where = _script(req, kernel, port, tmp)
        script = tmp / "attach.gdb"
        script.write_text(script_text)
        vars_copy = None
        if req.machine.firmware == "uefi":
            vars_copy = tmp / "OVMF_VARS.fd"
            vars_copy.write_bytes(qemu.vars_template(req.machine).read_bytes())
        tpm = stack.enter_context(SoftwareTpm(tmp / "tpm")) if req.machine.tpm else None
        cmd = qemu.command(_spec(req, port), vars_copy, tpm=tpm)
        vm = _Qemu(cmd, req.machine.serial_log)
        try:
            vm.wait_listening(port)
            req.say(
                f"QEMU is stopped at reset under {req.machine.firmware.upper()}, GDB stub on "
                f"127.0.0.1:{port}; breakpoint(s): {where}"
            )
            if req.no_gdb:
                return _wait_without_gdb(req, vm, script, port)
            gdb_cmd = [gdb.gdb_binary(), "-q", "-x", str(script)]
            if req.batch is not None:
                gdb_cmd = [
                    gdb.gdb_binary(),
                    "-q",
                    "-batch",
                    "-x",
                    str(script),
                    "-x",
                    str(req.batch),
                ]
            else:
                req.say("type `continue` to run to the breakpoint; quitting GDB stops QEMU")
            with _ignore_sigint():
                proc = subprocess.Popen(gdb_cmd)
                try:
                    status = proc.wait(timeout=req.machine.timeout)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    status, timed_out = 124, True
        finally:
            vm.quiet = True
            qemu_status = vm.stop()
        return DebugResult(
            status=status,
            timed_out=timed_out,
            qemu_status=qemu_status,
            qemu_stderr=vm.stderr.decode("utf-8", "replace"),
        )


def _wait_without_gdb(req: DebugRequest, vm: _Qemu, script: Path, port: int) -> DebugResult:
    inline = [gdb.gdb_binary(), "-q"]
    for line in script.read_text().splitlines():
        inline += ["-ex", line]
    print(
        "attach with:\n  " + shlex.join(inline) + "\n(QEMU keeps running until it exits or you "
        "press Ctrl-C here)",
        flush=True,
    )
    try:
        status = vm.proc.wait(timeout=req.machine.timeout)
        return DebugResult(status=0, qemu_status=status)
    except subprocess.TimeoutExpired:
        return DebugResult(status=124, timed_out=True)
    except KeyboardInterrupt:
        return DebugResult(status=130)
