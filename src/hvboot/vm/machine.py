"""The virtual machine a kernel boots on: the one type `run`, `test`, `debug` and `demo` take.

Its fields are the `[machine]` table of hvboot.toml and the machine flags of the CLI; both are
declared, with their checks, defaults and help, in src/hvboot/config/settings.py. The defaults
here are the table's (a test there keeps them equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    firmware: str = "uefi"  # "uefi" (OVMF) or "bios" (SeaBIOS)
    memory: str = "512M"  # guest RAM, as QEMU's -m
    cpus: int = 1
    type: str = "q35"  # QEMU's machine type (-machine)
    cpu: str = "max"  # QEMU's CPU model (-cpu)
    timeout: float | None = None  # seconds before hvboot gives up on the boot (None: never)
    qemu_args: Sequence[str] = ()  # extra QEMU arguments, appended to hvboot's
    serial_log: Path | None = None  # also write the serial output to this file
    tpm: bool = False  # a software TPM 2.0 (swtpm) attached for the boot
    secure_boot: Path | None = None  # a key set (hvboot keys new): OVMF enforcing with it
