"""A deterministic FAT16/FAT32 file-system writer.

The layout follows the Microsoft FAT specification ("Microsoft Extensible Firmware Initiative
FAT32 File System Specification", fatgen103, version 1.03), by its section headings:

* "Boot Sector and BPB", "FAT Type Determination" and "FAT Volume Initialization" (the
  DskTableFAT16/DskTableFAT32 cluster-size tables and the FATSz computation),
* "FAT Data Structure" (FAT[0]/FAT[1], end-of-chain marks),
* "FAT32 FSInfo Sector Structure and Backup Boot Sector",
* "FAT Directory Structure" (directory entries, date and time formats, the 65536-entry
  directory limit),
* "FAT Long Directory Entries" (LFN entries, ChkSum(), basis-name and numeric-tail short-name
  generation).

Everything written is a function of the inputs: fixed timestamps, entries sorted by name, and
clusters handed out in one pass (root, then every sub-directory, then every file, depth first),
so each file and directory occupies one contiguous run of clusters.

The toolkit reads images through the loader core (`hvboot-check esp`); the writer's own tests
read back with an independent reader in tests/fat_reader.py, with mtools and fsck.fat.
"""

from __future__ import annotations

import datetime
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hvboot.errors import HvbootError
from hvboot.units import MIB, SECTOR_SIZE

# fatgen103 "FAT Type Determination": the cluster count alone decides the type.
FAT12_MAX_CLUSTERS = 4084
FAT16_MAX_CLUSTERS = 65524

# fatgen103 DskTableFAT16 / DskTableFAT32 (512-byte sectors): (up to this many sectors, sectors
# per cluster). 0 means "not allowed for this type".
_FAT16_TABLE: tuple[tuple[int, int], ...] = (
    (8400, 0),
    (32680, 2),
    (262144, 4),
    (524288, 8),
    (1048576, 16),
    (2097152, 32),
    (4194304, 64),
    (0xFFFFFFFF, 0),
)
_FAT32_TABLE: tuple[tuple[int, int], ...] = (
    (66600, 0),
    (532480, 1),
    (16777216, 8),
    (33554432, 16),
    (67108864, 32),
    (0xFFFFFFFF, 64),
)
_FAT16_MIN_SECTORS = _FAT16_TABLE[0][0] + 1
_FAT32_MIN_SECTORS = _FAT32_TABLE[0][0] + 1
_MAX_SECTORS = 0xFFFFFFFF

_FAT16_ROOT_ENTRIES = 512
_FAT16_RESERVED = 1
_FAT32_RESERVED = 32
_FAT32_FSINFO_SECTOR = 1
_FAT32_BACKUP_BOOT_SECTOR = 6
_NUM_FATS = 2
_MEDIA = 0xF8
_DIR_ENTRY = 32
_MAX_DIR_ENTRIES = 65536
_MAX_FILE_SIZE = 0xFFFFFFFF

ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LONG_NAME = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID

_LFN_CHARS_PER_ENTRY = 13
_LFN_MAX_UNITS = 255
_LFN_LAST = 0x40

DEFAULT_TIMESTAMP = datetime.datetime(2020, 1, 1, 0, 0, 0)

# Characters allowed in a short (8.3) name besides A-Z and 0-9
# (fatgen103 "FAT Directory Structure").
_SHORT_SPECIALS = "$%'-_@~`!(){}^#&"
_SHORT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + _SHORT_SPECIALS)
# Characters never allowed in a long name, besides controls below 0x20
# (fatgen103 "FAT Long Directory Entries").
_LFN_BAD_CHARS = frozenset('"*/:<>?\\|\x7f')

# x86 boot code placed after the BPB: int 0x18 ("no bootable device"), then cli; hlt; jmp hlt.
_BOOT_STUB = bytes((0xCD, 0x18, 0xFA, 0xF4, 0xEB, 0xFD))

if array("I").itemsize != 4 or array("H").itemsize != 2:  # pragma: no cover
    raise ImportError("hvboot.image.fat needs 16- and 32-bit array item types")


class Unused(int):
    """A run of bytes whose contents nothing reads: zeros in an image file, left as they are
    when a device is written in place (so a 64 GiB stick is not zeroed)."""


@dataclass(frozen=True)
class FatFile:
    """One file to put in the file system: a "/"-separated path (no leading "/") and bytes."""

    path: str
    data: bytes


@dataclass(frozen=True)
class FatGeometry:
    """Where each region of a FAT volume lives, in 512-byte sectors."""

    fat_type: str  # "FAT16" or "FAT32"
    total_sectors: int
    sectors_per_cluster: int
    reserved_sectors: int
    fat_sectors: int  # sectors of one FAT
    root_entries: int  # fixed root directory entries (FAT16), 0 on FAT32
    cluster_count: int  # data clusters, numbered 2 .. cluster_count + 1

    @property
    def cluster_bytes(self) -> int:
        return self.sectors_per_cluster * SECTOR_SIZE

    @property
    def root_dir_sectors(self) -> int:
        return (self.root_entries * _DIR_ENTRY + SECTOR_SIZE - 1) // SECTOR_SIZE

    @property
    def first_data_sector(self) -> int:
        return self.reserved_sectors + _NUM_FATS * self.fat_sectors + self.root_dir_sectors


def _fat_geometry(fat_type: str, total_sectors: int) -> FatGeometry | None:
    """The fatgen103 geometry of one FAT type for a volume size, or None if it does not fit."""
    table = _FAT32_TABLE if fat_type == "FAT32" else _FAT16_TABLE
    spc = next(s for limit, s in table if total_sectors <= limit)
    if spc == 0:
        return None
    reserved = _FAT32_RESERVED if fat_type == "FAT32" else _FAT16_RESERVED
    root_entries = 0 if fat_type == "FAT32" else _FAT16_ROOT_ENTRIES
    root_dir_sectors = (root_entries * _DIR_ENTRY + SECTOR_SIZE - 1) // SECTOR_SIZE
    # fatgen103 "FAT Volume Initialization": the FATSz computation.
    tmp1 = total_sectors - (reserved + root_dir_sectors)
    tmp2 = 256 * spc + _NUM_FATS
    if fat_type == "FAT32":
        tmp2 //= 2
    fat_sectors = (tmp1 + tmp2 - 1) // tmp2
    data_sectors = total_sectors - (reserved + _NUM_FATS * fat_sectors + root_dir_sectors)
    clusters = data_sectors // spc if data_sectors > 0 else 0
    entry_bytes = 4 if fat_type == "FAT32" else 2
    assert (clusters + 2) * entry_bytes <= fat_sectors * SECTOR_SIZE
    if fat_type == "FAT32":
        if clusters <= FAT16_MAX_CLUSTERS:
            return None
    elif not FAT12_MAX_CLUSTERS < clusters <= FAT16_MAX_CLUSTERS:
        return None
    return FatGeometry(
        fat_type=fat_type,
        total_sectors=total_sectors,
        sectors_per_cluster=spc,
        reserved_sectors=reserved,
        fat_sectors=fat_sectors,
        root_entries=root_entries,
        cluster_count=clusters,
    )


def fat_geometry(size_bytes: int) -> FatGeometry:
    """The geometry build_fat uses for a volume of `size_bytes`: FAT32 whenever it fits."""
    if size_bytes % SECTOR_SIZE:
        raise HvbootError(
            "FAT size", f"{size_bytes} bytes is not a multiple of the {SECTOR_SIZE}-byte sector"
        )
    total = size_bytes // SECTOR_SIZE
    if total > _MAX_SECTORS:
        raise HvbootError(
            "FAT size",
            f"{size_bytes} bytes is too large: at most {_MAX_SECTORS * SECTOR_SIZE} bytes "
            "(2^32 - 1 sectors) can be described",
        )
    geo = _fat_geometry("FAT32", total) or _fat_geometry("FAT16", total)
    if geo is None:
        raise HvbootError(
            "FAT size",
            f"{size_bytes} bytes is too small for a FAT16 volume: at least "
            f"{_FAT16_MIN_SECTORS * SECTOR_SIZE} bytes are needed",
        )
    return geo


# --------------------------------------------------------------------------------------------
# Names


def _utf16_units(name: str) -> bytes:
    return name.encode("utf-16-le")


def _check_component(name: str, path: str) -> None:
    where = f"FAT path {path!r}"
    if name in ("", ".", ".."):
        raise HvbootError(
            where,
            f"path component {name!r} is not a file name: expected a '/'-separated relative "
            "path with no empty, '.' or '..' components",
        )
    bad = sorted({c for c in name if ord(c) < 0x20 or c in _LFN_BAD_CHARS})
    if bad:
        raise HvbootError(
            where,
            f"component {name!r} holds {', '.join(repr(c) for c in bad)}, which FAT names "
            'cannot hold (no control characters or any of " * / : < > ? \\ |)',
        )
    if name[0] == " " or name[-1] in " .":
        raise HvbootError(
            where,
            f"component {name!r} starts with a space or ends with a space or '.', which FAT "
            "drivers strip: the name could not be found again",
        )
    try:
        units = len(_utf16_units(name)) // 2
    except UnicodeEncodeError:
        raise HvbootError(where, f"component {name!r} is not valid Unicode text") from None
    if units > _LFN_MAX_UNITS:
        raise HvbootError(
            where,
            f"component is {units} UTF-16 code units long; a FAT long name holds at most "
            f"{_LFN_MAX_UNITS}",
        )


def _exact_short_name(name: str) -> bytes | None:
    """The 11-byte directory name if `name` is already a valid upper-case 8.3 name."""
    base, dot, ext = name.partition(".")
    if not 1 <= len(base) <= 8 or len(ext) > 3 or (dot and not ext):
        return None
    if not all(c in _SHORT_CHARS for c in base + ext):
        return None
    return (base.ljust(8) + ext.ljust(3)).encode("ascii")


def _short_basis(name: str) -> tuple[str, str, bool]:
    """fatgen103 basis-name generation: (base, extension, whether a numeric tail is needed)."""
    lossy = False

    def convert(text: str) -> str:
        nonlocal lossy
        out = []
        for c in text:
            up = c.upper() if c.isascii() else c
            if up in _SHORT_CHARS:
                out.append(up)
            else:
                out.append("_")
                lossy = True
        return "".join(out)

    stripped = name.replace(" ", "").lstrip(".")
    if stripped != name:
        lossy = True
    base_part, dot, ext_part = stripped.rpartition(".")
    if not dot:
        base_part, ext_part = stripped, ""
    if "." in base_part:
        base_part = base_part.replace(".", "")
        lossy = True
    base, ext = convert(base_part), convert(ext_part)
    if len(base) > 8 or len(ext) > 3:
        lossy = True
    if not base:
        base, lossy = "_", True
    return base, ext[:3], lossy


def _short_entry_name(base: str, ext: str) -> bytes:
    return (base.ljust(8) + ext.ljust(3)).encode("ascii")


def lfn_checksum(short_name: bytes) -> int:
    """fatgen103 ChkSum(): the checksum of an 11-byte short name, kept in each LFN entry."""
    total = 0
    for byte in short_name:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


# --------------------------------------------------------------------------------------------
# The tree of files and directories


@dataclass(eq=False)
class _Node:
    name: str
    data: bytes | None = None  # None for a directory
    children: dict[str, _Node] = field(default_factory=dict)  # key: name.upper()
    short: bytes = b""
    lfn_units: bytes = b""  # UTF-16LE long name, empty when the short name is exact
    parent: _Node | None = None
    first_cluster: int = 0
    clusters: int = 0

    @property
    def is_dir(self) -> bool:
        return self.data is None

    def sorted_children(self) -> list[_Node]:
        return [self.children[k] for k in sorted(self.children)]

    def lfn_entries(self) -> int:
        units = len(self.lfn_units) // 2
        return (units + _LFN_CHARS_PER_ENTRY - 1) // _LFN_CHARS_PER_ENTRY

    def dir_entry_count(self, is_root: bool, has_label: bool) -> int:
        count = (1 if has_label else 0) if is_root else 2  # volume label, or "." and ".."
        return count + sum(c.lfn_entries() + 1 for c in self.children.values())


def _build_tree(files: Sequence[FatFile]) -> _Node:
    root = _Node(name="")
    for f in files:
        path = f.path
        if not isinstance(path, str) or not isinstance(f.data, bytes | bytearray | memoryview):
            raise HvbootError(f"FAT path {path!r}", "expected a str path and bytes data")
        parts = path.split("/")
        for part in parts:
            _check_component(part, path)
        node = root
        for depth, part in enumerate(parts):
            key = part.upper()
            last = depth == len(parts) - 1
            child = node.children.get(key)
            if child is None:
                if last and len(f.data) > _MAX_FILE_SIZE:
                    raise HvbootError(
                        f"FAT path {path!r}",
                        f"file is {len(f.data)} bytes; a FAT file holds at most {_MAX_FILE_SIZE}",
                    )
                child = _Node(name=part, data=bytes(f.data) if last else None, parent=node)
                node.children[key] = child
            elif last:
                prefix = "/".join([*parts[:depth], child.name])
                what = (
                    f"duplicate file: {prefix!r} is already a "
                    f"{'directory' if child.is_dir else 'file'}"
                )
                if child.name != part:
                    what += " (FAT names are case-insensitive)"
                raise HvbootError(f"FAT path {path!r}", what)
            elif not child.is_dir:
                prefix = "/".join([*parts[:depth], child.name])
                raise HvbootError(
                    f"FAT path {path!r}", f"{prefix!r} is a file, so it cannot be a directory"
                )
            node = child
    for d in _walk_dirs(root):
        _assign_short_names(d)
        # fatgen103 "FAT Directory Structure": a directory holds at most 65536 32-byte
        # entries (2 MiB); one is kept for the volume label in the root.
        if d.dir_entry_count(d is root, True) > _MAX_DIR_ENTRIES:
            raise HvbootError(
                f"FAT directory {_dir_path(d)!r}",
                f"its entries (long-name entries included) exceed the FAT limit of "
                f"{_MAX_DIR_ENTRIES} per directory",
            )
    return root


def _dir_path(node: _Node) -> str:
    parts = []
    while node.parent is not None:
        parts.append(node.name)
        node = node.parent
    return "/" + "/".join(reversed(parts))


def _assign_short_names(directory: _Node) -> None:
    children = directory.sorted_children()
    taken: set[bytes] = set()
    pending: list[_Node] = []
    for child in children:
        exact = _exact_short_name(child.name)
        if exact is not None:
            child.short, child.lfn_units = exact, b""
            taken.add(exact)
        else:
            pending.append(child)
    # The next tail to try per 6-character basis prefix: many similar names stay linear.
    next_tail: dict[tuple[str, str], int] = {}
    for child in pending:
        base, ext, lossy = _short_basis(child.name)
        candidate = _short_entry_name(base, ext)
        if lossy or candidate in taken:
            for n in range(next_tail.get((base[:6], ext), 1), 1_000_000):
                tail = f"~{n}"
                candidate = _short_entry_name(base[: 8 - len(tail)] + tail, ext)
                if candidate not in taken:
                    next_tail[base[:6], ext] = n + 1
                    break
            else:  # pragma: no cover - a million names with one basis
                raise HvbootError(
                    f"FAT directory {directory.name!r}", "ran out of numeric-tail short names"
                )
        child.short = candidate
        child.lfn_units = _utf16_units(child.name)
        taken.add(candidate)


def _walk_dirs(root: _Node) -> list[_Node]:
    """Every directory, depth first (pre-order), children sorted by name."""
    out: list[_Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed([c for c in node.sorted_children() if c.is_dir]))
    return out


def _clusters_for(nbytes: int, cluster_bytes: int) -> int:
    return (nbytes + cluster_bytes - 1) // cluster_bytes


def _clusters_needed(root: _Node, geo: FatGeometry, has_label: bool) -> int | None:
    """Clusters the tree takes on `geo`, or None if the FAT16 root directory overflows."""
    total = 0
    for d in _walk_dirs(root):
        entries = d.dir_entry_count(d is root, has_label)
        if d is root and geo.fat_type != "FAT32":
            if entries > geo.root_entries:
                return None
        else:
            total += max(1, _clusters_for(entries * _DIR_ENTRY, geo.cluster_bytes))
        total += sum(
            _clusters_for(len(c.data), geo.cluster_bytes)
            for c in d.children.values()
            if c.data is not None
        )
    return total


def _smallest_size(
    root: _Node, *, headroom: int, fat32: bool, has_label: bool, at_least: int = 0
) -> int:
    data = sum(len(c.data) for d in _walk_dirs(root) for c in d.children.values() if c.data)
    floor_sectors = _FAT32_MIN_SECTORS if fat32 else _FAT16_MIN_SECTORS
    mib = max(
        (floor_sectors * SECTOR_SIZE + MIB - 1) // MIB, data // MIB, (at_least + MIB - 1) // MIB
    )
    while True:
        size = mib * MIB
        geo = fat_geometry(size)
        need = _clusters_needed(root, geo, has_label)
        if need is not None and (geo.cluster_count - need) * geo.cluster_bytes >= headroom:
            return size
        mib += 1


def fat_size_needed(
    files: Sequence[FatFile], *, fat32: bool = True, headroom: bool = True, at_least: int = 0
) -> int:
    """The smallest volume size, a whole number of MiB, that holds `files` with headroom.

    The headroom (free space left) is 1 MiB or a tenth of the file data, whichever is more;
    `headroom=False` asks for the smallest size that holds the files at all. With `fat32` (the
    default, as the UEFI specification asks of a system partition) the size is at least the
    FAT32 minimum of 33 MiB, so build_fat picks FAT32; otherwise FAT16 sizes count too. The
    result is at least `at_least` bytes. (Bigger is not always roomier: a FAT16 volume just
    past a cluster-size step can hold fewer small files than one just below it.)
    """
    root = _build_tree(files)
    data = sum(len(f.data) for f in files)
    return _smallest_size(
        root,
        headroom=max(MIB, data // 10) if headroom else 0,
        fat32=fat32,
        has_label=True,
        at_least=at_least,
    )


# --------------------------------------------------------------------------------------------
# Writing


def _dos_date(ts: datetime.datetime) -> int:
    return ((ts.year - 1980) << 9) | (ts.month << 5) | ts.day


def _dos_time(ts: datetime.datetime) -> int:
    return (ts.hour << 11) | (ts.minute << 5) | (ts.second // 2)


def _check_label(label: str) -> bytes:
    up = label.upper()
    if len(up) > 11 or not all(c in _SHORT_CHARS or c == " " for c in up) or up.startswith(" "):
        raise HvbootError(
            "FAT volume label",
            f"{label!r} is not a volume label: expected at most 11 characters from A-Z, 0-9, "
            f"space and {_SHORT_SPECIALS}, not starting with a space",
        )
    return up.ljust(11).encode("ascii")


def _short_entry(
    name: bytes, attr: int, cluster: int, size: int, date: int, time: int, tenth: int
) -> bytes:
    return struct.pack(
        "<11sBBBHHHHHHHI",
        name,
        attr,
        0,  # DIR_NTRes
        tenth,
        time,
        date,
        date,  # DIR_LstAccDate
        cluster >> 16,
        time,
        date,
        cluster & 0xFFFF,
        size,
    )


def _lfn_entry_bytes(units: bytes, short: bytes) -> list[bytes]:
    """The LFN entries for a UTF-16LE name, in on-disk order (last part first)."""
    count = (len(units) // 2 + _LFN_CHARS_PER_ENTRY - 1) // _LFN_CHARS_PER_ENTRY
    padded = units
    if len(units) // 2 < count * _LFN_CHARS_PER_ENTRY:
        padded += b"\x00\x00"
    padded = padded.ljust(count * _LFN_CHARS_PER_ENTRY * 2, b"\xff")
    checksum = lfn_checksum(short)
    entries = []
    for seq in range(1, count + 1):
        chunk = padded[(seq - 1) * 26 : seq * 26]
        order = seq | (_LFN_LAST if seq == count else 0)
        entries.append(
            struct.pack(
                "<B10sBBB12sH4s",
                order,
                chunk[0:10],
                ATTR_LONG_NAME,
                0,  # LDIR_Type
                checksum,
                chunk[10:22],
                0,  # LDIR_FstClusLO
                chunk[22:26],
            )
        )
    entries.reverse()
    return entries


@dataclass(frozen=True)
class FatPlan:
    """A laid-out FAT volume; `chunks()` yields its bytes in order (an int is a run of zeros)."""

    geometry: FatGeometry
    root: _Node = field(repr=False)
    dirs: tuple[_Node, ...] = field(repr=False)
    files: tuple[_Node, ...] = field(repr=False)
    used_clusters: int
    label: bytes | None
    volume_id: int
    hidden_sectors: int
    timestamp: datetime.datetime

    @property
    def fat_type(self) -> str:
        return self.geometry.fat_type

    @property
    def size_bytes(self) -> int:
        return self.geometry.total_sectors * SECTOR_SIZE

    def _boot_sector(self) -> bytes:
        geo = self.geometry
        fat32 = geo.fat_type == "FAT32"
        total16 = geo.total_sectors if not fat32 and geo.total_sectors < 0x10000 else 0
        total32 = 0 if total16 else geo.total_sectors
        sector = bytearray(SECTOR_SIZE)
        struct.pack_into(
            "<3s8sHBHBHHBHHHII",
            sector,
            0,
            bytes((0xEB, 0x58 if fat32 else 0x3C, 0x90)),
            b"MSWIN4.1",
            SECTOR_SIZE,
            geo.sectors_per_cluster,
            geo.reserved_sectors,
            _NUM_FATS,
            geo.root_entries,
            total16,
            _MEDIA,
            0 if fat32 else geo.fat_sectors,
            63,  # BPB_SecPerTrk
            255,  # BPB_NumHeads
            self.hidden_sectors,
            total32,
        )
        vol_label = self.label if self.label is not None else b"NO NAME    "
        if fat32:
            struct.pack_into(
                "<IHHIHH12sBBBI11s8s",
                sector,
                36,
                geo.fat_sectors,
                0,  # BPB_ExtFlags: both FATs mirrored
                0,  # BPB_FSVer 0.0
                2,  # BPB_RootClus
                _FAT32_FSINFO_SECTOR,
                _FAT32_BACKUP_BOOT_SECTOR,
                b"",
                0x80,  # BS_DrvNum
                0,
                0x29,  # BS_BootSig
                self.volume_id,
                vol_label,
                b"FAT32   ",
            )
            boot_code = 90
        else:
            struct.pack_into(
                "<BBBI11s8s",
                sector,
                36,
                0x80,
                0,
                0x29,
                self.volume_id,
                vol_label,
                geo.fat_type.encode("ascii").ljust(8),
            )
            boot_code = 62
        sector[boot_code : boot_code + len(_BOOT_STUB)] = _BOOT_STUB
        sector[510:512] = b"\x55\xaa"
        return bytes(sector)

    def _fsinfo_sector(self) -> bytes:
        geo = self.geometry
        free = geo.cluster_count - self.used_clusters
        next_free = 2 + self.used_clusters if free else 0xFFFFFFFF
        sector = bytearray(SECTOR_SIZE)
        struct.pack_into("<I", sector, 0, 0x41615252)  # FSI_LeadSig
        struct.pack_into("<IIII", sector, 484, 0x61417272, free, next_free, 0)
        struct.pack_into("<I", sector, 508, 0xAA550000)  # FSI_TrailSig
        return bytes(sector)

    def _reserved_region(self) -> bytes:
        geo = self.geometry
        region = bytearray(geo.reserved_sectors * SECTOR_SIZE)
        boot = self._boot_sector()
        region[0:SECTOR_SIZE] = boot
        if geo.fat_type == "FAT32":
            fsinfo = self._fsinfo_sector()
            for base in (0, _FAT32_BACKUP_BOOT_SECTOR):
                region[base * SECTOR_SIZE : (base + 1) * SECTOR_SIZE] = boot
                at = (base + _FAT32_FSINFO_SECTOR) * SECTOR_SIZE
                region[at : at + SECTOR_SIZE] = fsinfo
        return bytes(region)

    def _fat(self) -> bytes:
        geo = self.geometry
        fat32 = geo.fat_type == "FAT32"
        kind, eoc = ("I", 0x0FFFFFFF) if fat32 else ("H", 0xFFFF)
        entries = array(kind, bytes((2 + self.used_clusters) * array(kind).itemsize))
        entries[0] = (0x0FFFFF00 if fat32 else 0xFF00) | _MEDIA
        entries[1] = eoc
        for node in (*self.dirs, *self.files):
            start, count = node.first_cluster, node.clusters
            if count:
                entries[start : start + count] = array(kind, range(start + 1, start + count + 1))
                entries[start + count - 1] = eoc
        if sys.byteorder != "little":  # pragma: no cover
            entries.byteswap()
        return entries.tobytes().ljust(geo.fat_sectors * SECTOR_SIZE, b"\x00")

    def _directory(self, node: _Node) -> bytes:
        ts = self.timestamp
        date, time = _dos_date(ts), _dos_time(ts)
        tenth = (ts.second % 2) * 100 + ts.microsecond // 10000
        parts: list[bytes] = []
        if node is self.root:
            if self.label is not None:
                parts.append(_short_entry(self.label, ATTR_VOLUME_ID, 0, 0, date, time, 0))
        else:
            # ".." of a directory in the root points to cluster 0, even on FAT32.
            parent = (
                0 if node.parent is self.root or node.parent is None else node.parent.first_cluster
            )
            parts.append(
                _short_entry(b".          ", ATTR_DIRECTORY, node.first_cluster, 0, date, time, 0)
            )
            parts.append(_short_entry(b"..         ", ATTR_DIRECTORY, parent, 0, date, time, 0))
        for child in node.sorted_children():
            if child.lfn_units:
                parts.extend(_lfn_entry_bytes(child.lfn_units, child.short))
            if child.data is None:
                attr, size = ATTR_DIRECTORY, 0
            else:
                attr, size = ATTR_ARCHIVE, len(child.data)
            parts.append(
                _short_entry(child.short, attr, child.first_cluster, size, date, time, tenth)
            )
        return b"".join(parts)

    def chunks(self) -> Iterator[bytes | int]:
        """The volume's bytes in order; an int stands for that many zero bytes, an `Unused`
        for bytes nothing reads (a file's slack, the free clusters)."""
        geo = self.geometry
        yield self._reserved_region()
        fat = self._fat()
        for _ in range(_NUM_FATS):
            yield fat
        if geo.fat_type != "FAT32":
            root = self._directory(self.root)
            yield root
            yield geo.root_dir_sectors * SECTOR_SIZE - len(root)
        cluster_bytes = geo.cluster_bytes
        for d in self.dirs:
            if d.clusters:
                raw = self._directory(d)
                yield raw
                yield d.clusters * cluster_bytes - len(raw)
        for f in self.files:
            data = f.data if f.data is not None else b""
            if data:
                yield data
                yield Unused(f.clusters * cluster_bytes - len(data))
        data_end = geo.first_data_sector * SECTOR_SIZE + self.used_clusters * cluster_bytes
        yield Unused(self.size_bytes - data_end)


def plan_fat(
    files: Sequence[FatFile],
    size_bytes: int,
    *,
    label: str = "HVBOOT",
    volume_id: int = 0x48564254,
    timestamp: datetime.datetime = DEFAULT_TIMESTAMP,
    hidden_sectors: int = 0,
) -> FatPlan:
    """Validate the inputs and lay out the volume (see build_fat); no bytes are produced yet."""
    if not 0 <= volume_id <= 0xFFFFFFFF:
        raise HvbootError("FAT volume id", f"{volume_id:#x} does not fit in 32 bits")
    if not 0 <= hidden_sectors <= 0xFFFFFFFF:
        raise HvbootError("FAT hidden sectors", f"{hidden_sectors} does not fit in 32 bits")
    if not 1980 <= timestamp.year <= 2107:
        raise HvbootError(
            "FAT timestamp", f"{timestamp.isoformat()} is outside the FAT range 1980-2107"
        )
    label_bytes = _check_label(label) if label else None
    root = _build_tree(files)
    has_label = label_bytes is not None
    if size_bytes % SECTOR_SIZE == 0 and 0 <= size_bytes < _FAT16_MIN_SECTORS * SECTOR_SIZE:
        needed = _smallest_size(root, headroom=0, fat32=False, has_label=has_label)
        raise HvbootError(
            "FAT size",
            f"{size_bytes} bytes is too small: the smallest FAT16 volume is "
            f"{_FAT16_MIN_SECTORS * SECTOR_SIZE} bytes, and {needed} bytes are needed for "
            "these files",
        )
    geo = fat_geometry(size_bytes)
    need = _clusters_needed(root, geo, has_label)
    if need is None or need > geo.cluster_count:
        needed = _smallest_size(
            root, headroom=0, fat32=False, has_label=has_label, at_least=size_bytes + 1
        )
        if need is None:
            why = (
                f"its root directory needs more than the {geo.root_entries} entries a "
                f"{geo.fat_type} root holds"
            )
        else:
            why = (
                f"the files and directories need {need} clusters of {geo.cluster_bytes} "
                f"bytes but a {geo.fat_type} volume of this size has {geo.cluster_count}"
            )
        raise HvbootError(
            "FAT size",
            f"{size_bytes} bytes is too small for these files ({why}); {needed} bytes are needed",
        )

    dirs = _walk_dirs(root)
    files_in_order = [c for d in dirs for c in d.sorted_children() if c.data is not None]
    next_cluster = 2
    for d in dirs:
        if d is root and geo.fat_type != "FAT32":
            continue
        entries = d.dir_entry_count(d is root, has_label)
        d.clusters = max(1, _clusters_for(entries * _DIR_ENTRY, geo.cluster_bytes))
        d.first_cluster, next_cluster = next_cluster, next_cluster + d.clusters
    for f in files_in_order:
        assert f.data is not None
        f.clusters = _clusters_for(len(f.data), geo.cluster_bytes)
        if f.clusters:
            f.first_cluster, next_cluster = next_cluster, next_cluster + f.clusters
    assert next_cluster - 2 == need
    return FatPlan(
        geometry=geo,
        root=root,
        dirs=tuple(dirs),
        files=tuple(files_in_order),
        used_clusters=need,
        label=label_bytes,
        volume_id=volume_id,
        hidden_sectors=hidden_sectors,
        timestamp=timestamp,
    )


def build_fat(
    files: Sequence[FatFile],
    size_bytes: int,
    *,
    label: str = "HVBOOT",
    volume_id: int = 0x48564254,
    timestamp: datetime.datetime = DEFAULT_TIMESTAMP,
    hidden_sectors: int = 0,
) -> bytes:
    """A FAT volume image of exactly `size_bytes` bytes holding `files`.

    FAT32 is chosen whenever the size gives at least 65525 clusters (from 66601 sectors,
    about 33 MiB), FAT16 below that; volumes under 8401 sectors (about 4.1 MB) are refused.
    Names that are not upper-case 8.3 names get long-name entries. `hidden_sectors` is the
    LBA of the partition holding the volume (BPB_HiddSec). The same inputs (in any order)
    always give the same bytes.
    """
    plan = plan_fat(
        files,
        size_bytes,
        label=label,
        volume_id=volume_id,
        timestamp=timestamp,
        hidden_sectors=hidden_sectors,
    )
    image = b"".join(c if isinstance(c, bytes) else bytes(c) for c in plan.chunks())
    assert len(image) == size_bytes
    return image


__all__ = [
    "DEFAULT_TIMESTAMP",
    "FatFile",
    "FatGeometry",
    "FatPlan",
    "build_fat",
    "fat_geometry",
    "fat_size_needed",
    "lfn_checksum",
    "plan_fat",
]
