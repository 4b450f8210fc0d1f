"""A small FAT12/16/32 reader for the writer's round-trip tests (test-only: the toolkit reads
images through the loader core, `hvboot-check esp`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hvboot.errors import HvbootError
from hvboot.image.fat import _DIR_ENTRY as DIR_ENTRY
from hvboot.image.fat import _LFN_LAST as LFN_LAST
from hvboot.image.fat import (
    ATTR_DIRECTORY,
    ATTR_LONG_NAME,
    ATTR_VOLUME_ID,
    FAT12_MAX_CLUSTERS,
    FAT16_MAX_CLUSTERS,
    lfn_checksum,
)
from hvboot.units import SECTOR_SIZE


@dataclass(frozen=True)
class _Volume:
    image: bytes
    fat_type: str
    bytes_per_sector: int
    cluster_bytes: int
    cluster_count: int
    fat_offset: int
    root_offset: int  # FAT12/16 fixed root directory
    root_entries: int
    root_cluster: int  # FAT32
    data_offset: int

    def fat_entry(self, cluster: int) -> int:
        if self.fat_type == "FAT12":
            at = self.fat_offset + cluster + cluster // 2
            value = int.from_bytes(self.image[at : at + 2], "little")
            return value >> 4 if cluster & 1 else value & 0xFFF
        if self.fat_type == "FAT16":
            at = self.fat_offset + cluster * 2
            return int.from_bytes(self.image[at : at + 2], "little")
        at = self.fat_offset + cluster * 4
        return int.from_bytes(self.image[at : at + 4], "little") & 0x0FFFFFFF

    @property
    def end_of_chain(self) -> int:
        return {"FAT12": 0xFF8, "FAT16": 0xFFF8, "FAT32": 0x0FFFFFF8}[self.fat_type]

    def chain(self, first: int, where: str) -> list[int]:
        clusters: list[int] = []
        cluster = first
        while True:
            if not 2 <= cluster < self.cluster_count + 2:
                raise HvbootError(where, f"cluster chain reaches invalid cluster {cluster:#x}")
            if len(clusters) >= self.cluster_count:
                raise HvbootError(where, "cluster chain loops")
            clusters.append(cluster)
            cluster = self.fat_entry(cluster)
            if cluster >= self.end_of_chain:
                return clusters

    def read_chain(self, first: int, where: str, size: int | None = None) -> bytes:
        clusters = self.chain(first, where)
        if size is not None and len(clusters) * self.cluster_bytes < size:
            raise HvbootError(
                where,
                f"file size is {size} bytes but its {len(clusters)} clusters hold "
                f"{len(clusters) * self.cluster_bytes}",
            )
        pieces: list[bytes] = []
        run_start = 0
        for i in range(1, len(clusters) + 1):
            if i == len(clusters) or clusters[i] != clusters[i - 1] + 1:
                at = self.data_offset + (clusters[run_start] - 2) * self.cluster_bytes
                pieces.append(self.image[at : at + (i - run_start) * self.cluster_bytes])
                run_start = i
        data = b"".join(pieces)
        return data if size is None else data[:size]


def _read_volume(image: bytes) -> _Volume:
    where = "FAT boot sector"
    if len(image) < SECTOR_SIZE:
        raise HvbootError(where, f"image is {len(image)} bytes, shorter than one sector")
    if image[510:512] != b"\x55\xaa":
        raise HvbootError(where, "signature at offset 510 is not 55 AA")
    (bps, spc, reserved, nfats, root_entries, total16, _media, fat16) = struct.unpack_from(
        "<HBHBHHBH", image, 11
    )
    (total32, fat32) = struct.unpack_from("<II", image, 32)
    if bps not in (512, 1024, 2048, 4096):
        raise HvbootError(where, f"BPB_BytsPerSec is {bps}: expected 512, 1024, 2048 or 4096")
    if spc == 0 or spc & (spc - 1):
        raise HvbootError(where, f"BPB_SecPerClus is {spc}: expected a power of two")
    if reserved == 0 or nfats == 0:
        raise HvbootError(where, "BPB_RsvdSecCnt and BPB_NumFATs must not be 0")
    fat_sectors = fat16 or fat32
    total = total16 or total32
    root_sectors = (root_entries * DIR_ENTRY + bps - 1) // bps
    data_start = reserved + nfats * fat_sectors + root_sectors
    if fat_sectors == 0 or total <= data_start:
        raise HvbootError(where, "BPB sizes leave no data region")
    if len(image) < total * bps:
        raise HvbootError(
            where, f"BPB says {total * bps} bytes but the image is {len(image)} bytes"
        )
    clusters = (total - data_start) // spc
    if clusters <= FAT12_MAX_CLUSTERS:
        fat_type = "FAT12"
    elif clusters <= FAT16_MAX_CLUSTERS:
        fat_type = "FAT16"
    else:
        fat_type = "FAT32"
    root_cluster = struct.unpack_from("<I", image, 44)[0] if fat_type == "FAT32" else 0
    return _Volume(
        image=image,
        fat_type=fat_type,
        bytes_per_sector=bps,
        cluster_bytes=spc * bps,
        cluster_count=clusters,
        fat_offset=reserved * bps,
        root_offset=(reserved + nfats * fat_sectors) * bps,
        root_entries=root_entries,
        root_cluster=root_cluster,
        data_offset=data_start * bps,
    )


@dataclass(frozen=True)
class _Entry:
    name: str
    attr: int
    cluster: int
    size: int


def _lfn_units(entry: bytes) -> bytes:
    return entry[1:11] + entry[14:26] + entry[28:32]


def _parse_directory(raw: bytes, fat32: bool) -> list[_Entry]:
    out: list[_Entry] = []
    parts: dict[int, bytes] = {}
    expected = 0
    checksum = -1
    for at in range(0, len(raw) - DIR_ENTRY + 1, DIR_ENTRY):
        entry = raw[at : at + DIR_ENTRY]
        first, attr = entry[0], entry[11]
        if first == 0x00:
            break
        if first == 0xE5:
            parts, expected = {}, 0
            continue
        if attr & 0x3F == ATTR_LONG_NAME:
            seq = first & 0x1F
            if first & LFN_LAST:
                parts, expected, checksum = {}, seq, entry[13]
            if expected and seq >= 1 and entry[13] == checksum and seq not in parts:
                parts[seq] = _lfn_units(entry)
            else:
                parts, expected = {}, 0
            continue
        short = bytes((0xE5,)) + entry[1:11] if first == 0x05 else entry[0:11]
        long_name = None
        if (
            expected
            and sorted(parts) == list(range(1, expected + 1))
            and lfn_checksum(entry[0:11]) == checksum
        ):
            units = b"".join(parts[i] for i in range(1, expected + 1))
            for i in range(0, len(units), 2):
                if units[i : i + 2] == b"\x00\x00":
                    units = units[:i]
                    break
            long_name = units.decode("utf-16-le", errors="replace")
        parts, expected = {}, 0
        if attr & ATTR_VOLUME_ID:
            continue
        if short in (b".          ", b"..         "):
            continue
        if long_name is None:
            base = short[:8].rstrip(b" ").decode("cp437")
            ext = short[8:].rstrip(b" ").decode("cp437")
            nt = entry[12]
            if nt & 0x08:
                base = base.lower()
            if nt & 0x10:
                ext = ext.lower()
            long_name = f"{base}.{ext}" if ext else base
        cluster = int.from_bytes(entry[26:28], "little")
        if fat32:
            cluster |= int.from_bytes(entry[20:22], "little") << 16
        size = int.from_bytes(entry[28:32], "little")
        out.append(_Entry(long_name, attr, cluster, size))
    return out


def read_fat(image: bytes) -> dict[str, bytes]:
    """Every file in a FAT12/16/32 volume: "/"-separated path -> contents (long names used)."""
    vol = _read_volume(image)
    fat32 = vol.fat_type == "FAT32"
    result: dict[str, bytes] = {}
    if fat32:
        root_raw = vol.read_chain(vol.root_cluster, "FAT root directory")
    else:
        root_raw = image[vol.root_offset : vol.root_offset + vol.root_entries * DIR_ENTRY]
    visited: set[int] = set()
    stack: list[tuple[str, bytes]] = [("", root_raw)]
    while stack:
        prefix, raw = stack.pop()
        for entry in _parse_directory(raw, fat32):
            path = prefix + entry.name
            if entry.attr & ATTR_DIRECTORY:
                if entry.cluster == 0 or entry.cluster in visited:
                    raise HvbootError(
                        f"FAT directory {path!r}", f"bad or repeated cluster {entry.cluster}"
                    )
                visited.add(entry.cluster)
                stack.append((path + "/", vol.read_chain(entry.cluster, f"FAT directory {path!r}")))
            elif entry.size == 0:
                result[path] = b""
            else:
                result[path] = vol.read_chain(entry.cluster, f"FAT file {path!r}", entry.size)
    return dict(sorted(result.items()))
