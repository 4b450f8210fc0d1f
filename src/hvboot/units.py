"""Sizes every stage of the toolkit shares: each has its home here and nowhere else."""

from __future__ import annotations

# The logical sector of every image hvboot writes and reads (GPT, FAT, BIOS stages): 512 bytes,
# the LBA size of the disks QEMU, OVMF and INT 13h present (UEFI 2.10 §5.3.1).
SECTOR_SIZE = 512
# The x86_64 base page (Intel SDM Vol. 3A §4.5).
PAGE_SIZE = 4096
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
