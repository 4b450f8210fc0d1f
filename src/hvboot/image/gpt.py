"""GUID Partition Table and protective MBR writer, and a reader that checks them.

Follows the UEFI Specification 2.10, chapter 5 "GUID Partition Table (GPT) Disk Layout":
section 5.2.3 (protective MBR), section 5.3.2 (GPT header, table 5-5), section 5.3.3 (GPT
partition entry array, table 5-6). Sectors are 512 bytes; the entry array has 128 entries of
128 bytes (16 KiB, 32 sectors), so the primary structures take LBA 0-33 and the backup ones the
last 33 sectors of the disk.
"""

from __future__ import annotations

import itertools
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from hvboot.errors import HvbootError
from hvboot.units import SECTOR_SIZE

ENTRY_COUNT = 128
ENTRY_SIZE = 128
ENTRY_ARRAY_SECTORS = ENTRY_COUNT * ENTRY_SIZE // SECTOR_SIZE  # 32
HEAD_SECTORS = 2 + ENTRY_ARRAY_SECTORS  # protective MBR + header + entries = 34
TAIL_SECTORS = ENTRY_ARRAY_SECTORS + 1  # entries + backup header = 33
FIRST_USABLE_LBA = HEAD_SECTORS
MIN_DISK_SECTORS = HEAD_SECTORS + TAIL_SECTORS + 1
MBR_BOOT_CODE_MAX = 440
NAME_UNITS = 36  # UTF-16 code units in PartitionName

ESP_TYPE = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
BIOS_BOOT_TYPE = uuid.UUID("21686148-6449-6E6F-744E-656564454649")

_SIGNATURE = b"EFI PART"
_REVISION = 0x00010000
_HEADER_SIZE = 92
# Signature, Revision, HeaderSize, HeaderCRC32, Reserved, MyLBA, AlternateLBA, FirstUsableLBA,
# LastUsableLBA, DiskGUID, PartitionEntryLBA, NumberOfPartitionEntries,
# SizeOfPartitionEntry, PartitionEntryArrayCRC32.
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
# PartitionTypeGUID, UniquePartitionGUID, StartingLBA, EndingLBA, Attributes, PartitionName.
_ENTRY = struct.Struct("<16s16sQQQ72s")
_ZERO_GUID = uuid.UUID(int=0)
assert _HEADER.size == _HEADER_SIZE and _ENTRY.size == ENTRY_SIZE


@dataclass(frozen=True)
class Partition:
    """One GPT partition entry; LBAs are inclusive, GUIDs are ordinary uuid.UUID values."""

    name: str
    type_guid: uuid.UUID
    first_lba: int
    last_lba: int
    unique_guid: uuid.UUID
    attributes: int = 0


def last_usable_lba(total_sectors: int) -> int:
    """The last LBA a partition may use on a disk of `total_sectors` sectors."""
    return total_sectors - TAIL_SECTORS - 1


def _chs(lba: int) -> bytes:
    """The 3-byte CHS address of an LBA (255 heads, 63 sectors), or FF FF FF if too large."""
    cylinder, rest = divmod(lba, 255 * 63)
    if cylinder > 1023:
        return b"\xff\xff\xff"
    head, sector = divmod(rest, 63)
    return bytes((head, (sector + 1) | ((cylinder >> 8) << 6), cylinder & 0xFF))


def _protective_mbr(total_sectors: int, boot_code: bytes) -> bytes:
    size = min(total_sectors - 1, 0xFFFFFFFF)
    mbr = bytearray(SECTOR_SIZE)
    mbr[0 : len(boot_code)] = boot_code
    # UniqueMBRDiskSignature (440) and Unknown (444) stay 0; one record at 446 (table 5-4):
    # BootIndicator 0, StartingCHS 000200h, OSType EEh, EndingCHS, StartingLBA 1, SizeInLBA.
    mbr[446:462] = b"\x00" + _chs(1) + b"\xee" + _chs(size) + struct.pack("<II", 1, size)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def _check_partitions(total_sectors: int, partitions: Sequence[Partition]) -> None:
    if len(partitions) > ENTRY_COUNT:
        raise HvbootError(
            "GPT partitions", f"{len(partitions)} partitions given; the table holds {ENTRY_COUNT}"
        )
    last_usable = last_usable_lba(total_sectors)
    for index, p in enumerate(partitions, 1):
        where = f"GPT partition {index} ({p.name!r})"
        if not FIRST_USABLE_LBA <= p.first_lba <= p.last_lba <= last_usable:
            raise HvbootError(
                where,
                f"LBAs {p.first_lba}-{p.last_lba}: expected first <= last within the usable "
                f"LBAs {FIRST_USABLE_LBA}-{last_usable} of a {total_sectors}-sector disk",
            )
        if p.type_guid == _ZERO_GUID:
            raise HvbootError(where, "type GUID is all zero, which marks an unused entry")
        if not 0 <= p.attributes < 1 << 64:
            raise HvbootError(where, f"attributes {p.attributes:#x} do not fit in 64 bits")
        try:
            units = len(p.name.encode("utf-16-le")) // 2
        except UnicodeEncodeError:
            raise HvbootError(where, "name is not valid Unicode text") from None
        if units > NAME_UNITS or "\x00" in p.name:
            raise HvbootError(
                where,
                f"name is {units} UTF-16 code units: at most {NAME_UNITS}, without NUL",
            )
    ordered = sorted(enumerate(partitions, 1), key=lambda ip: ip[1].first_lba)
    for (ia, a), (ib, b) in itertools.pairwise(ordered):
        if b.first_lba <= a.last_lba:
            raise HvbootError(
                f"GPT partition {ib} ({b.name!r})",
                f"LBAs {b.first_lba}-{b.last_lba} overlap partition {ia} ({a.name!r}) at "
                f"LBAs {a.first_lba}-{a.last_lba}",
            )


def _entry_array(partitions: Sequence[Partition]) -> bytes:
    entries = bytearray(ENTRY_COUNT * ENTRY_SIZE)
    for i, p in enumerate(partitions):
        _ENTRY.pack_into(
            entries,
            i * ENTRY_SIZE,
            p.type_guid.bytes_le,
            p.unique_guid.bytes_le,
            p.first_lba,
            p.last_lba,
            p.attributes,
            p.name.encode("utf-16-le"),
        )
    return bytes(entries)


def _header(
    my_lba: int,
    alternate_lba: int,
    entries_lba: int,
    total_sectors: int,
    disk_guid: uuid.UUID,
    entries_crc: int,
) -> bytes:
    fields = [
        _SIGNATURE,
        _REVISION,
        _HEADER_SIZE,
        0,  # HeaderCRC32, computed over the header with this field zero
        0,
        my_lba,
        alternate_lba,
        FIRST_USABLE_LBA,
        last_usable_lba(total_sectors),
        disk_guid.bytes_le,
        entries_lba,
        ENTRY_COUNT,
        ENTRY_SIZE,
        entries_crc,
    ]
    fields[3] = zlib.crc32(_HEADER.pack(*fields))
    return _HEADER.pack(*fields).ljust(SECTOR_SIZE, b"\x00")


def build_gpt(
    total_sectors: int,
    partitions: Sequence[Partition],
    disk_guid: uuid.UUID,
    mbr_boot_code: bytes | None = None,
) -> tuple[bytes, bytes]:
    """(LBA 0-33: protective MBR, primary header and entries; the last 33 sectors: backup).

    `mbr_boot_code` (at most 440 bytes) is placed at offset 0 of the protective MBR.
    """
    if total_sectors < MIN_DISK_SECTORS:
        raise HvbootError(
            "GPT disk size",
            f"{total_sectors} sectors is too small: a GPT disk needs at least "
            f"{MIN_DISK_SECTORS} sectors ({HEAD_SECTORS} + {TAIL_SECTORS} for the tables)",
        )
    boot_code = b"" if mbr_boot_code is None else bytes(mbr_boot_code)
    if len(boot_code) > MBR_BOOT_CODE_MAX:
        raise HvbootError(
            "MBR boot code",
            f"{len(boot_code)} bytes: at most {MBR_BOOT_CODE_MAX} fit before the disk "
            "signature and partition table",
        )
    _check_partitions(total_sectors, partitions)
    entries = _entry_array(partitions)
    entries_crc = zlib.crc32(entries)
    last_lba = total_sectors - 1
    primary = _header(1, last_lba, 2, total_sectors, disk_guid, entries_crc)
    backup = _header(
        last_lba, 1, total_sectors - TAIL_SECTORS, total_sectors, disk_guid, entries_crc
    )
    head = _protective_mbr(total_sectors, boot_code) + primary + entries
    tail = entries + backup
    assert len(head) == HEAD_SECTORS * SECTOR_SIZE and len(tail) == TAIL_SECTORS * SECTOR_SIZE
    return head, tail


@dataclass(frozen=True)
class GptHeader:
    """The fields of a GPT header that a reader needs."""

    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: uuid.UUID
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int


def _read_header(disk: bytes, lba: int, where: str) -> GptHeader:
    at = lba * SECTOR_SIZE
    raw = disk[at : at + SECTOR_SIZE]
    if len(raw) < _HEADER_SIZE:
        raise HvbootError(where, f"the disk ({len(disk)} bytes) ends before LBA {lba}")
    sig, _rev, size, crc, _res, my_lba, alt, first, last, guid, ent_lba, count, esize, ecrc = (
        _HEADER.unpack_from(raw)
    )
    if sig != _SIGNATURE:
        raise HvbootError(where, f"Signature is {sig!r}: expected {_SIGNATURE!r}")
    if not _HEADER_SIZE <= size <= SECTOR_SIZE:
        raise HvbootError(where, f"HeaderSize is {size}: expected {_HEADER_SIZE}-{SECTOR_SIZE}")
    zeroed = raw[:16] + b"\x00\x00\x00\x00" + raw[20:size]
    actual = zlib.crc32(zeroed)
    if crc != actual:
        raise HvbootError(
            where, f"HeaderCRC32 is {crc:#010x} but the header's CRC32 is {actual:#010x}"
        )
    if my_lba != lba:
        raise HvbootError(where, f"MyLBA is {my_lba}: expected {lba}")
    if esize < ENTRY_SIZE or esize % 8:
        raise HvbootError(
            where, f"SizeOfPartitionEntry is {esize}: expected a multiple of 8, at least 128"
        )
    return GptHeader(
        my_lba, alt, first, last, uuid.UUID(bytes_le=guid), ent_lba, count, esize, ecrc
    )


def _read_entries(disk: bytes, header: GptHeader, where: str) -> bytes:
    at = header.entries_lba * SECTOR_SIZE
    size = header.entry_count * header.entry_size
    raw = disk[at : at + size]
    if len(raw) != size:
        raise HvbootError(
            where, f"the partition entry array (LBA {header.entries_lba}) runs past the disk end"
        )
    actual = zlib.crc32(raw)
    if actual != header.entries_crc:
        raise HvbootError(
            where,
            f"PartitionEntryArrayCRC32 is {header.entries_crc:#010x} but the entry array's "
            f"CRC32 is {actual:#010x}",
        )
    return raw


def read_gpt(disk: bytes) -> list[Partition]:
    """The used partition entries of a GPT disk, after checking the protective MBR signature,
    the header signatures and CRCs, and the backup header and entries when the disk holds them.
    """
    if len(disk) < 2 * SECTOR_SIZE:
        raise HvbootError("GPT disk", f"{len(disk)} bytes is shorter than two sectors")
    if disk[510:512] != b"\x55\xaa":
        raise HvbootError("protective MBR", "signature at offset 510 is not 55 AA")
    primary = _read_header(disk, 1, "GPT primary header (LBA 1)")
    entries = _read_entries(disk, primary, "GPT primary partition entries")
    if (primary.alternate_lba + 1) * SECTOR_SIZE <= len(disk):
        where = f"GPT backup header (LBA {primary.alternate_lba})"
        backup = _read_header(disk, primary.alternate_lba, where)
        backup_entries = _read_entries(disk, backup, "GPT backup partition entries")
        if backup.alternate_lba != 1:
            raise HvbootError(where, f"AlternateLBA is {backup.alternate_lba}: expected 1")
        if backup_entries != entries or backup.disk_guid != primary.disk_guid:
            raise HvbootError(where, "backup entries or DiskGUID differ from the primary ones")
    partitions = []
    for i in range(primary.entry_count):
        raw = entries[i * primary.entry_size : i * primary.entry_size + ENTRY_SIZE]
        type_guid, unique, first, last, attrs, name = _ENTRY.unpack(raw)
        if type_guid == bytes(16):
            continue
        units = name
        for j in range(0, len(units), 2):
            if units[j : j + 2] == b"\x00\x00":
                units = units[:j]
                break
        partitions.append(
            Partition(
                name=units.decode("utf-16-le", errors="replace"),
                type_guid=uuid.UUID(bytes_le=type_guid),
                first_lba=first,
                last_lba=last,
                unique_guid=uuid.UUID(bytes_le=unique),
                attributes=attrs,
            )
        )
    return partitions


__all__ = [
    "BIOS_BOOT_TYPE",
    "ESP_TYPE",
    "HEAD_SECTORS",
    "TAIL_SECTORS",
    "GptHeader",
    "Partition",
    "build_gpt",
    "last_usable_lba",
    "read_gpt",
]
