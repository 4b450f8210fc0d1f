"""GDB scripts for `hvboot debug`, and finding where the firmware loaded the UEFI loader.

The kernel is easy: it is an ET_EXEC linked at its run-time addresses, so GDB takes its symbols
as they are (``symbol-file``). Breakpoints in it are hardware ones (``hbreak``): the kernel's
pages do not exist until the loader maps them, and a software breakpoint written into memory
early would be overwritten when the loader copies the kernel in.

The UEFI loader is a static PIE linked at 0 and converted to PE32+ (src/hvboot/pe.py): ELF address
``v`` is RVA ``v + delta`` (``delta = 0x1000`` for an ELF linked at 0), so once the image base
``B`` the firmware chose is known, ``add-symbol-file ELF -o B+delta`` puts every symbol in place.
The loader does not print ``B``. OVMF is deterministic under TCG (same firmware, same machine,
same disk image, a fresh variable store each run), so `probe_loader_base` boots the image once
without a debugger, stops the machine (QMP ``stop``) as soon as the loader's first ``hvboot:``
line appears on COM1, saves guest RAM (QMP ``pmemsave``) and looks for our PE image in it: the
image's headers at a page boundary, its code at the RVAs of its sections, and its DIR64 base
relocations applied for that base. The debug session then boots the same way with ``-S`` and
breaks in the loader at ``B``-relative addresses, and checks ``B`` again when the first
breakpoint is hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pefile
from elftools.elf.elffile import ELFFile

from hvboot import qemu
from hvboot.errors import HvbootError
from hvboot.firmware import find_ovmf

#: What the loader prints first on COM1 (loader/uefi/src/console.rs: every line starts so).
LOADER_LINE = b"hvboot: "
PAGE = 0x1000
#: Below 4 GiB, q35 and pc put at most this much RAM (the rest goes above 4 GiB).
_LOW_RAM_MAX = 2 << 30
_CHUNK = 64 << 20


def gdb_binary() -> str:
    found = shutil.which("gdb")
    if not found:
        raise HvbootError("gdb", "not found on PATH; install it with: apt-get install gdb")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quote(path: Path | str) -> str:
    """A file name as GDB's commands read it (double quotes, backslash escapes)."""
    text = str(path)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Scripts


def breakpoint_location(symbol: str) -> str:
    """`hbreak` argument: `*ADDR` for a number, the symbol name otherwise."""
    if re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)", symbol):
        return f"*{symbol}"
    return symbol


def kernel_script(kernel: Path, port: int, breaks: Sequence[str]) -> str:
    """Commands that attach to QEMU's stub with the kernel's symbols and hardware breakpoints."""
    lines = [
        "set pagination off",
        "set confirm off",
        "set architecture i386:x86-64",
        f"file {quote(kernel)}",
        f"target remote 127.0.0.1:{port}",
    ]
    lines += [f"hbreak {breakpoint_location(b)}" for b in breaks]
    return "\n".join(lines) + "\n"


def loader_script(
    loader_elf: Path, port: int, image_base: int, delta: int, breaks: Sequence[str]
) -> str:
    """Commands that attach with the UEFI loader's symbols at the base the firmware chose."""
    lines = [
        "set pagination off",
        "set confirm off",
        "set architecture i386:x86-64",
        f"add-symbol-file {quote(loader_elf)} -o {image_base + delta:#x}",
        f"target remote 127.0.0.1:{port}",
    ]
    lines += [f"hbreak {breakpoint_location(b)}" for b in breaks]
    return "\n".join(lines) + "\n"


def bios_loader_script(loader_elf: Path, port: int, breaks: Sequence[str]) -> str:
    """Commands for the BIOS stages: stage 2 and the BIOS loader are an ET_EXEC linked where
    stage 1 loads them (0x8000), so their symbols need no offset. Stage 1 runs at 0x7c00.

    QEMU's breakpoints match linear addresses (CS base + IP), which is what `hbreak *0x7c00`
    gives. GDB keeps the x86-64 register layout QEMU's stub describes: in real mode $pc is IP,
    and `set architecture i8086` does not change how GDB 13 disassembles against
    qemu-system-x86_64 (its target description wins), so 16-bit code is shown as 32-bit.
    """
    lines = [
        "set pagination off",
        "set confirm off",
        "set architecture i386:x86-64",
        f"symbol-file {quote(loader_elf)}",
        f"target remote 127.0.0.1:{port}",
    ]
    lines += [f"hbreak {breakpoint_location(b)}" for b in breaks]
    return "\n".join(lines) + "\n"


def attach_command(script: Path) -> list[str]:
    return [gdb_binary(), "-q", "-x", str(script)]


# ---------------------------------------------------------------------------------------------
# The loader's image base


def elf_delta(loader_elf: bytes) -> int:
    """pe.py's `delta` for this ELF: RVA = ELF address + delta."""
    import io

    elf = ELFFile(io.BytesIO(loader_elf))
    lows = [int(s["p_vaddr"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    if not lows:
        raise HvbootError("UEFI loader ELF", "no PT_LOAD segment")
    return PAGE - min(lows) // PAGE * PAGE


@dataclass(frozen=True)
class PeSignature:
    """What identifies our PE image in guest memory once the firmware has loaded it."""

    dos: bytes  # the first 0x40 bytes (DOS header with e_lfanew)
    coff_at: int  # offset of "PE\0\0" + the COFF file header
    coff: bytes
    code_rva: int
    code: bytes  # bytes of the first executable section, away from relocations
    relocs: tuple[tuple[int, int], ...]  # (rva, value in the file) of a few DIR64 slots
    preferred_base: int

    @classmethod
    def of(cls, pe_bytes: bytes) -> PeSignature:
        pe = pefile.PE(data=pe_bytes, fast_load=False)
        lfanew = int(pe.DOS_HEADER.e_lfanew)
        reloc_rvas: list[int] = []
        for block in getattr(pe, "DIRECTORY_ENTRY_BASERELOC", []):
            for entry in block.entries:
                if entry.type == pefile.RELOCATION_TYPE["IMAGE_REL_BASED_DIR64"]:
                    reloc_rvas.append(int(entry.rva))
        code_rva, code = 0, b""
        for sec in pe.sections:
            if sec.Characteristics & 0x2000_0000:  # IMAGE_SCN_MEM_EXECUTE
                start = int(sec.VirtualAddress)
                raw = sec.get_data()[:4096]
                hits = [r for r in reloc_rvas if start - 8 < r < start + len(raw)]
                if hits:
                    raw = raw[: max(0, min(hits) - start)]
                code_rva, code = start, raw[:256]
                break
        base = int(pe.OPTIONAL_HEADER.ImageBase)
        relocs = tuple(
            (rva, struct.unpack_from("<Q", pe.get_data(rva, 8))[0]) for rva in reloc_rvas[:16]
        )
        return cls(
            dos=pe_bytes[:0x40],
            coff_at=lfanew,
            coff=pe_bytes[lfanew : lfanew + 24],
            code_rva=code_rva,
            code=code,
            relocs=relocs,
            preferred_base=base,
        )

    def matches(self, read: _Reader, base: int) -> bool:
        """Whether the image at `base` is ours, loaded and relocated for `base`."""
        if read(base, 0x40) != self.dos or read(base + self.coff_at, 24) != self.coff:
            return False
        if self.code and read(base + self.code_rva, len(self.code)) != self.code:
            return False
        for rva, value in self.relocs:
            got = read(base + rva, 8)
            if len(got) != 8:
                return False
            if struct.unpack("<Q", got)[0] != (value - self.preferred_base + base) % (1 << 64):
                return False
        return True


class _Reader:
    """Reads guest-physical bytes out of a RAM dump that starts at `start`."""

    def __init__(self, dump: bytes, start: int) -> None:
        self.dump, self.start = dump, start

    def __call__(self, addr: int, size: int) -> bytes:
        off = addr - self.start
        if off < 0 or off + size > len(self.dump):
            return b""
        return self.dump[off : off + size]


def find_image(dump: bytes, start: int, sig: PeSignature) -> int | None:
    """The base of our loaded PE image inside a RAM dump of guest-physical `start`..."""
    read = _Reader(dump, start)
    pos = 0
    while True:
        pos = dump.find(sig.dos[:0x40], pos)
        if pos < 0:
            return None
        base = start + pos
        if base % PAGE == 0 and sig.matches(read, base):
            return base
        pos += 1


def _image_size(pe_bytes: bytes) -> int:
    return int(pefile.PE(data=pe_bytes, fast_load=True).OPTIONAL_HEADER.SizeOfImage)


def ram_bytes(memory: str) -> int:
    """QEMU's -m value in bytes (a plain number is MiB)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", memory, re.IGNORECASE)
    if not m:
        raise HvbootError("--memory", f"{memory!r}: expected a size such as 512M or 2G")
    shift = {"": 20, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    return int(m.group(1)) << shift


class Qmp:
    """A minimal QMP client on a Unix socket (QEMU's JSON monitor protocol)."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise HvbootError("QEMU", "its QMP socket never came up") from None
                time.sleep(0.05)
        self.file = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        while True:
            line = self.file.readline()
            if not line:
                raise HvbootError("QEMU", "the QMP connection closed (QEMU exited?)")
            msg: dict[str, object] = json.loads(line)
            if "event" not in msg:
                return msg

    def execute(self, command: str, **arguments: object) -> object:
        msg: dict[str, object] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise HvbootError(f"QEMU QMP {command}", str(reply["error"]))
        return reply.get("return")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


@contextlib.contextmanager
def _qemu(cmd: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def probe_loader_base(spec: qemu.QemuSpec, pe_bytes: bytes, timeout: float = 120.0) -> int:
    """Boot `spec` once, stop when the loader speaks, and return where the firmware loaded it."""
    if spec.firmware != "uefi":
        raise HvbootError("--firmware", "the loader's image base is a UEFI notion")
    sig = PeSignature.of(pe_bytes)
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="hvboot-probe-") as tmp:
        vars_copy = Path(tmp) / "OVMF_VARS.fd"
        shutil.copyfile(find_ovmf().vars_template, vars_copy)
        sock = Path(tmp) / "qmp.sock"
        probe = qemu.QemuSpec(
            image=spec.image,
            firmware=spec.firmware,
            memory=spec.memory,
            cpus=spec.cpus,
            machine=spec.machine,
            cpu=spec.cpu,
            extra=[*spec.extra, "-qmp", f"unix:{sock},server=on,wait=off"],
            snapshot=True,
        )
        cmd = qemu.command(probe, vars_copy)
        with _qemu(cmd) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            seen = threading.Event()
            serial = bytearray()

            def pump() -> None:
                assert proc.stdout is not None
                while data := os.read(proc.stdout.fileno(), 65536):
                    serial.extend(data)
                    if LOADER_LINE in serial:
                        seen.set()

            threading.Thread(target=pump, daemon=True).start()
            qmp = Qmp(sock, deadline)
            try:
                while not seen.wait(0.05):
                    if proc.poll() is not None:
                        err = proc.stderr.read().decode("utf-8", "replace").strip()
                        raise HvbootError(
                            "QEMU", f"exited ({proc.returncode}) before the loader started {err}"
                        )
                    if time.monotonic() > deadline:
                        raise HvbootError(
                            "hvboot debug --loader",
                            f"timed out after {timeout:g} s waiting for the loader's first "
                            "line on COM1",
                        )
                qmp.execute("stop")
                top = min(ram_bytes(spec.memory), _LOW_RAM_MAX)
                dump_path = Path(tmp) / "ram.bin"
                # EDK2 loads an image at its preferred base when that memory is free.
                size = _image_size(pe_bytes)
                if sig.preferred_base + size <= top:
                    qmp.execute(
                        "pmemsave", val=sig.preferred_base, size=size, filename=str(dump_path)
                    )
                    if find_image(dump_path.read_bytes(), sig.preferred_base, sig) is not None:
                        return sig.preferred_base
                # Firmware allocates from the top down: look there first.
                for end in range(top, 0, -_CHUNK):
                    begin = max(0, end - _CHUNK - PAGE)  # overlap: an image across chunks
                    qmp.execute("pmemsave", val=begin, size=end - begin, filename=str(dump_path))
                    found = find_image(dump_path.read_bytes(), begin, sig)
                    if found is not None:
                        return found
            finally:
                qmp.close()
                with contextlib.suppress(OSError):
                    os.unlink(Path(tmp) / "ram.bin")
    raise HvbootError(
        "hvboot debug --loader",
        "the loader's PE image was not found in guest RAM after it started",
    )
