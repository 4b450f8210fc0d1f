"""A software TPM 2.0 for one boot (`--tpm`, docs/trust.md "Measured boot"): Debian's swtpm in a
fresh state directory, attached to QEMU as QEMU's docs/specs/tpm.rst describes (a chardev on
swtpm's control socket, `-tpmdev emulator`, a CRB interface on q35 and TIS elsewhere), and its
PCRs read afterwards with tpm2-tools.

QEMU hands swtpm its data channel over the UnixIO control socket, so tpm2-tools (whose `swtpm`
TCTI talks TCP) cannot share that instance. After QEMU is gone the TPM's volatile state (the
PCRs) is stored into the state directory (`swtpm_ioctl -v`), that swtpm is shut down, and a
second one on TCP ports resumes from the same state for `tpm2_pcrread`. Both are always stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from hvboot.errors import HvbootError

START_TIMEOUT = 10.0
# A bank line of tpm2_pcrread's output (`  sha256:`) and a PCR line (`    8 : 0x...`).
_BANK = re.compile(r"^\s+(\w+):\s*$")
_PCR = re.compile(r"^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$")

Pcrs = dict[str, dict[int, str]]  # bank -> PCR index -> lower-case hex


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise HvbootError(
            name, "not found on PATH; --tpm needs: apt-get install swtpm swtpm-tools tpm2-tools"
        )
    return found


def _free_port_pair() -> int:
    """A TCP port P on 127.0.0.1 with P + 1 free too (swtpm's server and control ports)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return int(port)
    raise HvbootError("swtpm", "no two adjacent free TCP ports on 127.0.0.1")


def parse_pcrread(text: str) -> Pcrs:
    """tpm2_pcrread's YAML-like output as bank -> index -> hex."""
    banks: Pcrs = {}
    bank: str | None = None
    for line in text.splitlines():
        if m := _BANK.match(line):
            bank = m.group(1)
            banks[bank] = {}
        elif (m := _PCR.match(line)) and bank is not None:
            banks[bank][int(m.group(1))] = m.group(2).lower()
    return banks


class SoftwareTpm:
    """swtpm for one boot in `directory` (which the caller removes)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.state = directory / "state"
        self.ctrl = directory / "swtpm.ctrl"
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> SoftwareTpm:
        self.state.mkdir(parents=True, exist_ok=True)
        self._start(["--ctrl", f"type=unixio,path={self.ctrl}"], ready=self.ctrl.exists)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, channels: list[str], ready: Callable[[], bool]) -> subprocess.Popen[bytes]:
        log = self.dir / f"swtpm{len(self._procs)}.log"
        cmd = [_tool("swtpm"), "socket", "--tpm2", "--tpmstate", f"dir={self.state}"]
        cmd += [*channels, "--log", f"file={log},level=1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
                raise HvbootError("swtpm", f"did not start: {err.strip() or 'no reason given'}")
            time.sleep(0.05)
        return proc

    def qemu_args(self, machine_type: str) -> list[str]:
        device = "tpm-crb" if machine_type == "q35" else "tpm-tis"
        return [
            "-chardev",
            f"socket,id=hvboot-tpm,path={self.ctrl}",
            "-tpmdev",
            "emulator,id=hvboot-tpm0,chardev=hvboot-tpm",
            "-device",
            f"{device},tpmdev=hvboot-tpm0",
        ]

    def read_pcrs(self) -> Pcrs:
        """Every PCR of every active bank; only after QEMU has exited."""
        ioctl = _tool("swtpm_ioctl")
        for flag in ("-v", "-s"):  # store the volatile state, then shut this instance down
            r = subprocess.run([ioctl, "--unix", str(self.ctrl), flag], capture_output=True)
            if r.returncode != 0:
                raise HvbootError("swtpm_ioctl", f"{flag}: {r.stderr.decode().strip()}")
        self._procs[0].wait(timeout=START_TIMEOUT)
        port = _free_port_pair()

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port + 1)) == 0

        self._start(
            [
                "--server",
                f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--flags",
                "not-need-init",
            ],
            ready=listening,
        )
        env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:host=127.0.0.1,port={port}"}
        r = subprocess.run(
            [_tool("tpm2_pcrread")], capture_output=True, env=env, timeout=60, check=False
        )
        if r.returncode != 0:
            raise HvbootError("tpm2_pcrread", r.stderr.decode("utf-8", "replace").strip())
        return parse_pcrread(r.stdout.decode())

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr:
                proc.stderr.close()
