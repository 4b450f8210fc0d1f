"""Did the firmware start the loader? What the firmware said when it did not.

OVMF writes its boot manager's messages to the serial port; SeaBIOS writes its log to the debug
console (port 0x402, which `qemu.command` sends to a file). The loader's first serial line starts
with `hvboot: ` on both firmwares, so a boot without one never reached the loader: the disk was
not bootable to the firmware (a damaged ESP boot sector under OVMF, no boot signature under
SeaBIOS), or the firmware's own read of it failed.
"""

from __future__ import annotations

import re

# Every line the loader prints starts with this (loader/*/src/console.rs, flow::ConsoleLogger).
LOADER_PREFIX = "hvboot: "
# SeaBIOS's debug console port (its CONFIG_DEBUG_IO default); OVMF's release builds stay quiet.
DEBUGCON_PORT = 0x402

# The firmware has given up on the disk: OVMF falls back to its built-in shell or finds no boot
# option at all (BdsDxe, MdeModulePkg/Universal/BdsDxe/BdsEntry.c); SeaBIOS has tried every
# device (boot.c, boot_fail).
GAVE_UP = re.compile(
    r'BdsDxe: starting Boot\w+ "EFI Internal Shell"|BdsDxe: No bootable option|No bootable device'
)
# How each firmware says it refused a boot device: OVMF in one line naming the device, SeaBIOS
# in a "Booting from <device>..." line followed by "Boot failed: <why>".
_OVMF_REFUSED = re.compile(r"BdsDxe: failed to load .*")
_SEABIOS_BOOTING = re.compile(r"Booting from (.*?)\.*$")
_SEABIOS_REFUSED = re.compile(r"Boot failed: .*")
_ANSI = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]")


def loader_started(serial: str) -> bool:
    return any(line.startswith(LOADER_PREFIX) for line in _lines(serial))


def last_words(serial: str, firmware_log: str) -> str:
    """The firmware's last word on the disk: its last refusal of the hard disk, else of any
    boot device, else its last line; empty when it said nothing."""
    lines = _lines(firmware_log) + _lines(serial)
    refusals: list[tuple[bool, str]] = []  # (about the hard disk, the words)
    device = ""
    for line in lines:
        if m := _SEABIOS_BOOTING.match(line):
            device = m.group(1)
        elif m := _SEABIOS_REFUSED.search(line):
            words = f"{device}: {m.group(0)}" if device else m.group(0)
            refusals.append(("Hard Disk" in device, words))
        elif m := _OVMF_REFUSED.search(line):
            refusals.append(("HARDDISK" in line, m.group(0)))
    disk = [words for about_disk, words in refusals if about_disk]
    if disk or refusals:
        return (disk or [words for _, words in refusals])[-1]
    return lines[-1] if lines else ""


def never_started(serial: str, firmware_log: str) -> str:
    """The outcome of a boot whose firmware gave up before it reached the loader."""
    return f"the firmware did not start the loader{_said(serial, firmware_log)}"


def not_yet_started(serial: str, firmware_log: str) -> str:
    """What to add to a timeout that came before the loader's first line."""
    return f"the firmware had not started the loader{_said(serial, firmware_log)}"


def _said(serial: str, firmware_log: str) -> str:
    words = last_words(serial, firmware_log)
    return f"; its last words: {words}" if words else " (it printed nothing)"


def _lines(text: str) -> list[str]:
    clean = _ANSI.sub("", text).replace("\r", "\n")
    return [line.strip() for line in clean.split("\n") if line.strip()]
