"""Initramfs archives for the Linux boot tests: cpio "newc" (Linux
Documentation/driver-api/early-userspace/buffer-format.rst), written here because Python's
standard library has no cpio writer and the format is a 110-byte ASCII header per entry.

`initramfs_parts` makes two archives the loader concatenates into one initrd (Linux unpacks
concatenated archives in order, a later file replacing an earlier one): the first holds
Debian's busybox-static and an /etc/order saying "first", the second the /init script and an
/etc/order saying "second". /init prints, each line prefixed "hvboot-linux:", its command line,
MemTotal, the ACPI tables Linux found (/sys/firmware/acpi/tables), /etc/order and whether
Linux runs on EFI (/sys/firmware/efi), then powers the machine off."""

from __future__ import annotations

from pathlib import Path

BUSYBOX = Path(__file__).parent / ".cache" / "debian" / "busybox" / "bin" / "busybox"
PREFIX = "hvboot-linux:"

INIT = f"""#!/bin/busybox sh
b=/bin/busybox
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
echo "{PREFIX} cmdline: $($b cat /proc/cmdline)"
echo "{PREFIX} $($b grep MemTotal /proc/meminfo)"
echo "{PREFIX} acpi: $($b ls /sys/firmware/acpi/tables | $b tr '\\n' ' ')"
echo "{PREFIX} order: $($b cat /etc/order)"
if [ -d /sys/firmware/efi ]; then echo "{PREFIX} efi: yes"; else echo "{PREFIX} efi: no"; fi
echo "{PREFIX} done"
$b poweroff -f
"""

DIR, FILE, CHAR = 0o040000, 0o100000, 0o020000


class Cpio:
    """A newc archive being written: entries in order, then the trailer."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.ino = 1

    def entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out += name.encode() + b"\0"
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def finish(self) -> bytes:
        self.entry("TRAILER!!!", 0)
        return bytes(self.out)


def initramfs_parts() -> tuple[bytes, bytes]:
    """(the busybox archive, the /init archive), to be concatenated in this order."""
    first = Cpio()
    for d in ("bin", "dev", "etc", "proc", "sys"):
        first.entry(d, DIR | 0o755)
    first.entry("dev/console", CHAR | 0o600, rdev=(5, 1))
    first.entry("bin/busybox", FILE | 0o755, BUSYBOX.read_bytes())
    first.entry("etc/order", FILE | 0o644, b"first\n")
    second = Cpio()
    second.entry("etc", DIR | 0o755)
    second.entry("etc/order", FILE | 0o644, b"second\n")
    second.entry("init", FILE | 0o755, INIT.encode())
    return first.finish(), second.finish()


def report(serial: str) -> dict[str, str]:
    """The /init's lines from the serial output: {"cmdline": ..., "MemTotal": ..., ...}."""
    out = {}
    for line in serial.splitlines():
        if line.startswith(PREFIX):
            key, _, value = line[len(PREFIX) :].strip().partition(":")
            out[key.strip()] = value.strip()
    return out
