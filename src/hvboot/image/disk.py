"""Put a GPT, an optional BIOS boot partition and a FAT EFI system partition in one raw image.

Layout (512-byte sectors, partitions aligned to 1 MiB = 2048 sectors):

    LBA 0            protective MBR (with the optional stage-1 boot code at offset 0)
    LBA 1-33         primary GPT header and partition entries
    LBA 2048         "BIOS boot" partition holding stage 2 (only with bios_stage2)
    next MiB         "EFI system" partition: a FAT16/FAT32 volume with the ESP files
    last 33 sectors  backup GPT entries and header

Every GUID and the FAT volume serial number come from a SHA-256 of `seed` and all the inputs,
so the same inputs always give the same bytes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hvboot.errors import HvbootError
from hvboot.image.fat import FatFile, fat_size_needed, plan_fat
from hvboot.image.gpt import (
    BIOS_BOOT_TYPE,
    ESP_TYPE,
    HEAD_SECTORS,
    TAIL_SECTORS,
    Partition,
    build_gpt,
    last_usable_lba,
)
from hvboot.image.output import image_target
from hvboot.units import MIB, SECTOR_SIZE

ALIGN_SECTORS = 2048  # 1 MiB
assert ALIGN_SECTORS * SECTOR_SIZE == MIB
BIOS_BOOT_NAME = "BIOS boot"
ESP_NAME = "EFI system"
_MAX_ESP_BYTES = 0xFFFFFFFF * SECTOR_SIZE // MIB * MIB
# Namespace for the name-based (version 5) UUIDs of hvboot disk images.
_GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "hvboot:disk-image")


@dataclass(frozen=True)
class DiskLayout:
    """Where things are in a written disk image (LBAs of 512-byte sectors)."""

    total_sectors: int
    esp_first_lba: int
    esp_sectors: int
    stage2_first_lba: int | None
    stage2_sectors: int | None
    fat_type: str  # "FAT16" or "FAT32"


def _round_up(value: int, unit: int) -> int:
    return (value + unit - 1) // unit * unit


def _input_digest(
    esp_files: Sequence[FatFile],
    size_bytes: int | None,
    bios_stage2: bytes | None,
    mbr_boot_code: bytes | None,
    seed: bytes,
) -> bytes:
    h = hashlib.sha256()

    def put(blob: bytes | None) -> None:
        if blob is None:
            h.update(b"\xff" * 8)
        else:
            h.update(len(blob).to_bytes(8, "little"))
            h.update(blob)

    put(b"hvboot disk image v1")
    put(seed)
    put(None if size_bytes is None else str(size_bytes).encode())
    put(bios_stage2)
    put(mbr_boot_code)
    for f in sorted(esp_files, key=lambda f: f.path):
        put(f.path.encode("utf-8", errors="surrogatepass"))
        put(f.data)
    return h.digest()


def _guid(digest: bytes, role: str) -> uuid.UUID:
    return uuid.uuid5(_GUID_NAMESPACE, f"{digest.hex()}/{role}")


def write_disk_image(
    path: Path,
    esp_files: Sequence[FatFile],
    *,
    size_bytes: int | None = None,
    bios_stage2: bytes | None = None,
    mbr_boot_code: bytes | None = None,
    seed: bytes = b"",
) -> DiskLayout:
    """Write a GPT disk image to `path` and return where its partitions are.

    Without `size_bytes` the ESP gets fat_size_needed(esp_files) (at least 33 MiB, so FAT32)
    and the disk ends 1 MiB after it; a block device's own size is its `size_bytes`. `path`
    may be a file, a symlink or a block device (image/output.py). With `size_bytes` the ESP
    fills the disk up to the last 1 MiB boundary before the backup GPT; HvbootError names the
    size given and the size needed if the files do not fit.
    """
    path = Path(path)
    target = image_target(path)
    if size_bytes is None and target.device_bytes is not None:
        # A disk's GPT ends at its last sector (UEFI 2.10 §5.3.1), so the image fills it.
        size_bytes = target.device_bytes // SECTOR_SIZE * SECTOR_SIZE
    stage2_first: int | None = None
    stage2_sectors: int | None = None
    esp_first = ALIGN_SECTORS
    if bios_stage2 is not None:
        stage2_first = ALIGN_SECTORS
        stage2_sectors = _round_up(max(len(bios_stage2), 1), MIB) // SECTOR_SIZE
        esp_first = stage2_first + stage2_sectors
    digest = _input_digest(esp_files, size_bytes, bios_stage2, mbr_boot_code, seed)
    volume_id = int.from_bytes(digest[:4], "little")

    if size_bytes is None:
        esp_bytes = fat_size_needed(esp_files)
        total_sectors = esp_first + esp_bytes // SECTOR_SIZE + ALIGN_SECTORS
    else:
        if size_bytes <= 0 or size_bytes % SECTOR_SIZE:
            raise HvbootError(
                "disk image size",
                f"{size_bytes} bytes: expected a positive multiple of {SECTOR_SIZE}",
            )
        total_sectors = size_bytes // SECTOR_SIZE
        # The ESP ends on a 1 MiB boundary too, before the backup GPT.
        esp_end = (last_usable_lba(total_sectors) + 1) // ALIGN_SECTORS * ALIGN_SECTORS
        esp_bytes = max(0, (esp_end - esp_first) * SECTOR_SIZE)
        if esp_bytes > _MAX_ESP_BYTES:
            raise HvbootError(
                "disk image size",
                f"{size_bytes} bytes is too large: the ESP would be {esp_bytes} bytes, more "
                f"than the {_MAX_ESP_BYTES} bytes (2^32 - 1 sectors) a FAT32 volume can span",
            )
    try:
        plan = plan_fat(esp_files, esp_bytes, volume_id=volume_id, hidden_sectors=esp_first)
    except HvbootError as err:
        if size_bytes is None or err.where != "FAT size":
            raise
        overhead = (esp_first + TAIL_SECTORS) * SECTOR_SIZE  # the bytes outside the ESP
        needed = overhead + fat_size_needed(
            esp_files, fat32=False, headroom=False, at_least=esp_bytes + 1
        )
        raise HvbootError(
            "disk image size",
            f"{size_bytes} bytes is too small: the ESP would get {esp_bytes} bytes, which "
            f"cannot hold the {len(esp_files)} ESP files; a disk image of {needed} bytes "
            "is needed",
        ) from None
    esp_sectors = esp_bytes // SECTOR_SIZE

    partitions = []
    if stage2_first is not None and stage2_sectors is not None:
        partitions.append(
            Partition(
                name=BIOS_BOOT_NAME,
                type_guid=BIOS_BOOT_TYPE,
                first_lba=stage2_first,
                last_lba=stage2_first + stage2_sectors - 1,
                unique_guid=_guid(digest, "bios-boot"),
            )
        )
    partitions.append(
        Partition(
            name=ESP_NAME,
            type_guid=ESP_TYPE,
            first_lba=esp_first,
            last_lba=esp_first + esp_sectors - 1,
            unique_guid=_guid(digest, "esp"),
        )
    )
    head, tail = build_gpt(total_sectors, partitions, _guid(digest, "disk"), mbr_boot_code)
    assert len(head) == HEAD_SECTORS * SECTOR_SIZE

    target.check_fits(total_sectors * SECTOR_SIZE)
    pieces: list[tuple[int, Iterable[bytes | int]]] = [(0, [head])]
    if bios_stage2 is not None and stage2_first is not None:
        pieces.append((stage2_first * SECTOR_SIZE, [bios_stage2]))
    pieces.append((esp_first * SECTOR_SIZE, plan.chunks()))
    pieces.append(((total_sectors - TAIL_SECTORS) * SECTOR_SIZE, [tail]))
    target.write(total_sectors * SECTOR_SIZE, pieces)
    return DiskLayout(
        total_sectors=total_sectors,
        esp_first_lba=esp_first,
        esp_sectors=esp_sectors,
        stage2_first_lba=stage2_first,
        stage2_sectors=stage2_sectors,
        fat_type=plan.fat_type,
    )


__all__ = ["BIOS_BOOT_NAME", "ESP_NAME", "DiskLayout", "write_disk_image"]
