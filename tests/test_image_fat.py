"""Tests for the FAT writer and reader, checked against dosfstools (fsck.fat) and mtools."""

from __future__ import annotations

import datetime
import os
import random
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from fat_reader import read_fat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvboot.errors import HvbootError
from hvboot.image.fat import (
    FatFile,
    build_fat,
    fat_geometry,
    fat_size_needed,
    lfn_checksum,
)

MIB = 1024 * 1024
FAT16_SIZES = (6 * MIB, 20 * MIB)  # 2 and 4 sectors per cluster
FAT32_SIZES = (40 * MIB, 64 * MIB)
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C.UTF-8"}


# Characters valid in long names, including ones a short name cannot hold (space . + , ; = [ ]).
NAME_ALPHABET = "abcXYZ019 ._-~+,;=[]()!&'$%@#^{}"


def _valid_component(name: str) -> bool:
    return name not in (".", "..") and name[0] != " " and name[-1] not in " ."


components = st.text(NAME_ALPHABET, min_size=1, max_size=30).filter(_valid_component)
paths = st.lists(components, min_size=1, max_size=3).map("/".join)
sizes = st.one_of(st.just(0), st.integers(1, 700), st.integers(700, 12000))


def _without_conflicts(raw: list[tuple[str, int, int]]) -> list[FatFile]:
    """Drop files whose path clashes, case-insensitively, with an earlier file or directory."""
    files: set[str] = set()
    dirs: set[str] = set()
    out = []
    for path, size, seed in raw:
        parts = path.upper().split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        key = "/".join(parts)
        if key in files or key in dirs or prefixes & files:
            continue
        files.add(key)
        dirs |= prefixes
        out.append(FatFile(path, random.Random(seed).randbytes(size)))
    return out


file_sets = st.lists(st.tuples(paths, sizes, st.integers(0, 2**32)), max_size=10).map(
    _without_conflicts
)


def _as_dict(files: list[FatFile]) -> dict[str, bytes]:
    return {f.path: f.data for f in files}


def _fsck(image: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["fsck.fat", "-n", "-v", str(image)], capture_output=True, text=True, check=False
    )


def _mtools(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, env=MTOOLS_ENV, check=False)


def _check_with_tools(image_bytes: bytes, files: list[FatFile], workdir: Path) -> None:
    image = workdir / "fat.img"
    image.write_bytes(image_bytes)
    fsck = _fsck(image)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    listing = _mtools("mdir", "-/", "-b", "-i", str(image), "::")
    listed = {
        line.removeprefix("::/")
        for line in listing.stdout.splitlines()
        if line.startswith("::/") and not line.endswith("/")
    }
    assert listed == {f.path for f in files}, listing.stdout + listing.stderr
    if files:
        out = workdir / "out"
        out.mkdir()
        copy = _mtools("mcopy", "-s", "-n", "-i", str(image), "::/*", str(out))
        assert copy.returncode == 0, copy.stderr
        copied = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert copied == _as_dict(files)


# --------------------------------------------------------------------------------------------
# Round trips


@settings(max_examples=60, deadline=None)
@given(files=file_sets, size=st.sampled_from(FAT16_SIZES + FAT32_SIZES))
def test_build_then_read_round_trips(files: list[FatFile], size: int) -> None:
    image = build_fat(files, size)
    assert len(image) == size
    assert read_fat(image) == _as_dict(files)
    # The output does not depend on the order of the inputs.
    assert build_fat(list(reversed(files)), size) == image


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=file_sets, size=st.sampled_from(FAT16_SIZES + FAT32_SIZES))
def test_fsck_and_mtools_accept_the_image(files: list[FatFile], size: int) -> None:
    image = build_fat(files, size)
    with tempfile.TemporaryDirectory() as tmp:
        _check_with_tools(image, files, Path(tmp))


def test_typical_esp_with_tools(tmp_path: Path) -> None:
    files = [
        FatFile("EFI/BOOT/BOOTX64.EFI", os.urandom(70_000)),
        FatFile("hvboot/kernel.elf", os.urandom(300_000)),
        FatFile("hvboot/modules/guest.bin", os.urandom(1_000_000)),
        FatFile("hvboot/modules/empty module", b""),
        FatFile("hvboot/hvboot.cfg", b"kernel=/hvboot/kernel.elf\n"),
        FatFile("x" * 255, b"longest name"),
    ]
    for size in (8 * MIB, 64 * MIB):
        work = tmp_path / str(size)
        work.mkdir()
        image = build_fat(files, size)
        assert read_fat(image) == _as_dict(files)
        _check_with_tools(image, files, work)


# --------------------------------------------------------------------------------------------
# FAT type choice and on-disk fields


def _bpb(image: bytes) -> dict[str, int]:
    names = [
        "bytes_per_sector",
        "sectors_per_cluster",
        "reserved",
        "fats",
        "root_entries",
        "total16",
        "media",
        "fat16_size",
        "sectors_per_track",
        "heads",
        "hidden",
        "total32",
    ]
    return dict(zip(names, struct.unpack_from("<HBHBHHBHHHII", image, 11), strict=True))


def test_fat32_is_chosen_for_64_mib(tmp_path: Path) -> None:
    image = build_fat([FatFile("a.txt", b"a")], 64 * MIB)
    geo = fat_geometry(64 * MIB)
    assert geo.fat_type == "FAT32"
    assert geo.cluster_count >= 65525
    bpb = _bpb(image)
    assert bpb["fat16_size"] == 0 and bpb["total16"] == 0 and bpb["root_entries"] == 0
    assert bpb["total32"] == 64 * MIB // 512
    assert bpb["reserved"] == 32 and bpb["fats"] == 2 and bpb["media"] == 0xF8
    assert image[82:90] == b"FAT32   "
    (tmp_path / "img").write_bytes(image)
    fsck = _fsck(tmp_path / "img")
    assert fsck.returncode == 0 and "32 bit entries" in fsck.stdout


@pytest.mark.parametrize("size", [5 * MIB, 16 * MIB, 32 * MIB])
def test_fat16_is_chosen_below_the_fat32_minimum(tmp_path: Path, size: int) -> None:
    image = build_fat([FatFile("a.txt", b"a")], size)
    geo = fat_geometry(size)
    assert geo.fat_type == "FAT16"
    assert 4085 <= geo.cluster_count <= 65524
    bpb = _bpb(image)
    assert bpb["reserved"] == 1 and bpb["root_entries"] == 512 and bpb["fat16_size"] > 0
    assert image[54:62] == b"FAT16   "
    (tmp_path / "img").write_bytes(image)
    fsck = _fsck(tmp_path / "img")
    assert fsck.returncode == 0 and "16 bit entries" in fsck.stdout


def test_fat32_starts_at_the_specification_threshold() -> None:
    # fatgen103 DskTableFAT32: volumes up to 66600 sectors are too small for FAT32.
    assert fat_geometry(66600 * 512).fat_type == "FAT16"
    assert fat_geometry(66601 * 512).fat_type == "FAT32"
    assert fat_geometry(33 * MIB).fat_type == "FAT32"


def test_fat32_reserved_sectors() -> None:
    image = build_fat([FatFile("EFI/BOOT/BOOTX64.EFI", b"pe")], 40 * MIB, volume_id=0x1234)
    assert image[0:3] == b"\xeb\x58\x90"
    assert image[510:512] == b"\x55\xaa"
    root_cluster, fsinfo, backup = struct.unpack_from("<IHH", image, 44)
    assert (root_cluster, fsinfo, backup) == (2, 1, 6)
    assert struct.unpack_from("<I", image, 67)[0] == 0x1234
    assert image[71:82] == b"HVBOOT     "
    # Backup boot sector and FSInfo at sectors 6 and 7.
    assert image[6 * 512 : 8 * 512] == image[0:1024]
    (lead,) = struct.unpack_from("<I", image, 512)
    struc, free, next_free = struct.unpack_from("<III", image, 512 + 484)
    (trail,) = struct.unpack_from("<I", image, 512 + 508)
    assert (lead, struc, trail) == (0x41615252, 0x61417272, 0xAA550000)
    geo = fat_geometry(40 * MIB)
    # root, EFI, EFI/BOOT, one file cluster
    assert free == geo.cluster_count - 4 and next_free == 6
    fat = image[32 * 512 :]
    assert struct.unpack_from("<II", fat) == (0x0FFFFFF8, 0x0FFFFFFF)
    # Both FATs are the same.
    fat_bytes = geo.fat_sectors * 512
    assert fat[:fat_bytes] == fat[fat_bytes : 2 * fat_bytes]


def test_files_are_contiguous_and_laid_out_in_order() -> None:
    rng = random.Random(7)
    files = [FatFile(f"dir{i % 3}/file {i}.bin", rng.randbytes(3000 + 997 * i)) for i in range(8)]
    for size in (6 * MIB, 40 * MIB):
        image = build_fat(files, size)
        offsets = {f.path: image.find(f.data) for f in files}
        # Each file's bytes appear in one piece, so its clusters are consecutive.
        assert all(at > 0 for at in offsets.values())
        # Files follow one another in path order (directory by directory).
        ordered = sorted(files, key=lambda f: [p.upper() for p in f.path.split("/")])
        assert [offsets[f.path] for f in ordered] == sorted(offsets.values())


def test_same_inputs_same_bytes_and_fixed_time() -> None:
    files = [FatFile("EFI/BOOT/BOOTX64.EFI", b"x" * 5000), FatFile("notes.txt", b"n")]
    a = build_fat(files, 40 * MIB)
    assert a == build_fat(list(files), 40 * MIB)
    # 2020-01-01 00:00:00: date (40 << 9) | (1 << 5) | 1, time 0.
    assert struct.pack("<HH", 0, (40 << 9) | (1 << 5) | 1) in a
    later = build_fat(files, 40 * MIB, timestamp=datetime.datetime(2024, 5, 6, 7, 8, 10))
    assert later != a and read_fat(later) == read_fat(a)
    assert build_fat(files, 40 * MIB, label="OTHER") != a
    assert build_fat(files, 40 * MIB, volume_id=1) != a


# --------------------------------------------------------------------------------------------
# Names


def _root_entries(image: bytes) -> list[bytes]:
    geo = fat_geometry(len(image))
    assert geo.fat_type == "FAT16"
    at = (geo.reserved_sectors + 2 * geo.fat_sectors) * 512
    raw = image[at : at + geo.root_entries * 32]
    entries = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    return [e for e in entries[: next(i for i, e in enumerate(entries) if e[0] == 0)]]


def test_upper_case_83_names_have_no_long_name_entries() -> None:
    image = build_fat([FatFile("README.TXT", b"r"), FatFile("BOOT", b"b")], 6 * MIB)
    entries = _root_entries(image)
    assert [e[:11] for e in entries] == [b"HVBOOT     ", b"BOOT       ", b"README  TXT"]
    assert [e[11] for e in entries] == [0x08, 0x20, 0x20]


def test_long_name_entries_and_checksum() -> None:
    image = build_fat([FatFile("kernel.elf", b"k")], 6 * MIB, label="")
    lfn, short = _root_entries(image)
    assert short[:11] == b"KERNEL  ELF" and short[11] == 0x20
    assert lfn[0] == 0x41 and lfn[11] == 0x0F and lfn[12] == 0 and lfn[26:28] == b"\0\0"
    assert lfn[13] == lfn_checksum(b"KERNEL  ELF")
    units = lfn[1:11] + lfn[14:26] + lfn[28:32]
    assert units == "kernel.elf".encode("utf-16-le") + b"\0\0" + b"\xff\xff" * 2


def test_lfn_checksum_matches_the_specification_algorithm() -> None:
    # fatgen103 ChkSum(): rotate right by one bit, then add the next byte, modulo 256.
    def reference(name: bytes) -> int:
        s = 0
        for b in name:
            s = ((s >> 1) | ((s & 1) << 7)) + b
            s &= 0xFF
        return s

    for name in (b"KERNEL  ELF", b"LONGFI~1TXT", b"A          ", bytes(range(65, 76))):
        assert lfn_checksum(name) == reference(name)


def test_short_names_get_numeric_tails_and_long_names_keep_case(tmp_path: Path) -> None:
    files = [
        FatFile("Long File Name.txt", b"1"),
        FatFile("Long File Name2.txt", b"2"),
        FatFile("LONGFI~1.TXT", b"explicit"),  # an exact 8.3 name keeps its short name
        FatFile("hvboot/kernel.elf", b"k"),
        FatFile("a+b.c", b"lossy"),
    ]
    image = build_fat(files, 6 * MIB)
    (tmp_path / "img").write_bytes(image)
    root = _mtools("mdir", "-i", str(tmp_path / "img"), "::/").stdout
    lines = {" ".join(line.split()) for line in root.splitlines()}
    assert any(
        line.startswith("LONGFI~2 TXT 1 ") and "Long File Name.txt" in line for line in lines
    )
    assert any(
        line.startswith("LONGFI~3 TXT 1 ") and "Long File Name2.txt" in line for line in lines
    )
    assert any(line.startswith("LONGFI~1 TXT 8 ") for line in lines)
    assert any(line.startswith("A_B~1 C 5 ") and "a+b.c" in line for line in lines)
    assert any(line.startswith("HVBOOT <DIR>") and line.endswith(" hvboot") for line in lines)
    sub = _mtools("mdir", "-i", str(tmp_path / "img"), "::/hvboot").stdout
    assert any(" ".join(line.split()).endswith(" kernel.elf") for line in sub.splitlines())


def test_many_names_with_one_basis_get_distinct_short_names() -> None:
    files = [FatFile(f"Program Files {i}.data", bytes([i])) for i in range(30)]
    image = build_fat(files, 6 * MIB)
    shorts = [e[:11] for e in _root_entries(image) if e[11] == 0x20]
    assert len(shorts) == len(set(shorts)) == 30
    assert b"PROGRA~1DAT" in shorts and b"PROGR~10DAT" in shorts
    assert read_fat(image) == _as_dict(files)


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "path",
    [
        "/abs",
        "a//b",
        "dir/",
        "",
        "a/../b",
        "./a",
        "a:b",
        "what?",
        'quo"te',
        "back\\slash",
        "tab\there",
        " lead",
        "trail ",
        "dot.",
        "x" * 256,
    ],
)
def test_unrepresentable_paths_are_refused(path: str) -> None:
    with pytest.raises(HvbootError) as err:
        build_fat([FatFile(path, b"")], 6 * MIB)
    assert repr(path) in str(err.value)


def test_duplicates_and_file_directory_clashes_are_refused() -> None:
    with pytest.raises(HvbootError, match=r"duplicate file.*case-insensitive"):
        build_fat([FatFile("EFI/boot.efi", b""), FatFile("efi/BOOT.EFI", b"")], 6 * MIB)
    with pytest.raises(HvbootError, match="duplicate file"):
        build_fat([FatFile("a", b"1"), FatFile("a", b"2")], 6 * MIB)
    with pytest.raises(HvbootError, match="is a file, so it cannot be a directory"):
        build_fat([FatFile("a", b"1"), FatFile("a/b", b"2")], 6 * MIB)
    with pytest.raises(HvbootError, match="already a directory"):
        build_fat([FatFile("a/b", b"1"), FatFile("a", b"2")], 6 * MIB)


def test_too_small_names_both_sizes_and_the_needed_size_works() -> None:
    files = [FatFile("big.bin", bytes(7 * MIB))]
    with pytest.raises(HvbootError) as err:
        build_fat(files, 6 * MIB)
    message = str(err.value)
    assert str(6 * MIB) in message
    needed = int(message.rsplit("; ", 1)[1].split()[0])
    assert needed > 7 * MIB
    assert read_fat(build_fat(files, needed)) == _as_dict(files)

    with pytest.raises(HvbootError, match=f"{MIB} bytes is too small.*4301312"):
        build_fat([], MIB)
    with pytest.raises(HvbootError, match="multiple of the 512-byte sector"):
        build_fat([], 6 * MIB + 1)


def test_fat16_root_directory_limit() -> None:
    files = [FatFile(f"file number {i}.txt", b"") for i in range(200)]  # 3 entries each
    with pytest.raises(HvbootError, match="root directory needs more than the 512 entries"):
        build_fat(files, 6 * MIB)
    assert read_fat(build_fat(files, 40 * MIB)) == _as_dict(files)
    assert fat_size_needed(files, fat32=False) >= 33 * MIB


def test_bad_label_is_refused() -> None:
    with pytest.raises(HvbootError, match="volume label"):
        build_fat([], 6 * MIB, label="TWELVE CHARS")
    with pytest.raises(HvbootError, match="volume label"):
        build_fat([], 6 * MIB, label="A/B")


# --------------------------------------------------------------------------------------------
# Sizing


@settings(max_examples=30, deadline=None)
@given(files=file_sets, big=st.integers(0, 3 * MIB))
def test_fat_size_needed(files: list[FatFile], big: int) -> None:
    # NAME_ALPHABET has no "l", "g" or "o", so this path cannot clash with a generated one.
    files = [*files, FatFile("large/blob.bin", bytes(big))]
    data = sum(len(f.data) for f in files)

    size = fat_size_needed(files)
    assert size % MIB == 0 and size >= 33 * MIB
    geo = fat_geometry(size)
    assert geo.fat_type == "FAT32"
    image = build_fat(files, size)
    assert read_fat(image) == _as_dict(files)
    free = struct.unpack_from("<I", image, 512 + 488)[0] * geo.cluster_bytes
    assert free >= max(MIB, data // 10)

    smallest = fat_size_needed(files, fat32=False, headroom=False)
    assert smallest % MIB == 0
    assert read_fat(build_fat(files, smallest)) == _as_dict(files)
    if smallest > 5 * MIB:
        with pytest.raises(HvbootError, match="too small"):
            build_fat(files, smallest - MIB)


# --------------------------------------------------------------------------------------------
# Reading images made by another tool


@pytest.mark.parametrize(
    ("fat", "mformat_args"),
    [
        ("12", ["-f", "1440"]),
        ("16", ["-T", str(16 * 2048), "-h", "64", "-s", "32"]),
        ("32", ["-T", str(64 * 2048), "-h", "64", "-s", "32", "-F"]),
    ],
)
def test_read_fat_reads_mtools_images(tmp_path: Path, fat: str, mformat_args: list[str]) -> None:
    image = tmp_path / "m.img"
    with open(image, "wb") as f:
        f.truncate(1440 * 1024 if fat == "12" else int(mformat_args[1]) * 512)
    assert _mtools("mformat", "-i", str(image), *mformat_args, "::").returncode == 0
    src = tmp_path / "src"
    rng = random.Random(fat)
    expected = {
        "kernel.elf": rng.randbytes(5000),  # mtools stores this with lower-case flags, no LFN
        "UPPER.TXT": b"upper",
        "Mixed Case Long Name.data": rng.randbytes(20000),
        "sub/dir/deep file": rng.randbytes(1),
        "sub/empty": b"",
    }
    for name, data in expected.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    for top in ("kernel.elf", "UPPER.TXT", "Mixed Case Long Name.data", "sub"):
        done = _mtools("mcopy", "-s", "-i", str(image), str(src / top), "::/")
        assert done.returncode == 0, done.stderr
    assert f"{fat} bit entries" in _fsck(image).stdout
    assert read_fat(image.read_bytes()) == expected


def test_read_fat_rejects_garbage() -> None:
    with pytest.raises(HvbootError, match="FAT boot sector"):
        read_fat(bytes(4096))
    image = bytearray(build_fat([FatFile("a.bin", bytes(5000))], 6 * MIB))
    image[11:13] = (100).to_bytes(2, "little")
    with pytest.raises(HvbootError, match="BPB_BytsPerSec"):
        read_fat(bytes(image))


def test_directory_entry_limit() -> None:
    # Each lower-case name takes a long-name entry and a short entry; with "." and ".." that
    # is 65538 entries, two more than a FAT directory may hold.
    files = [FatFile(f"d/f{i}", b"") for i in range(32768)]
    with pytest.raises(HvbootError, match="65536 per directory") as err:
        build_fat(files, 40 * MIB)
    assert err.value.where == "FAT directory '/d'"
    image = build_fat(files[:-1], 40 * MIB)
    assert len(read_fat(image)) == 32767


def test_deep_paths_and_many_tails() -> None:
    deep = "/".join(f"level {i}" for i in range(1500)) + "/leaf.bin"
    many = [FatFile(f"same/Same Basis Name {i}.txt", b"") for i in range(3000)]
    files = [FatFile(deep, b"deep"), *many]
    assert read_fat(build_fat(files, 40 * MIB)) == _as_dict(files)
