"""Linux kernels through the Linux x86 boot protocol (docs/linux.md): the core's setup-header rules
as the toolkit sees them (Debian 12's own bzImage, fetched by tests/fetch_debian.sh; crafted bad
headers; gzip), and Debian's Linux booted under both firmwares to an initramfs of ours
(tests/linux_initramfs.py) that reports what the kernel found."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
from conftest import make_image

from hvboot.cli.inspect import _kernel_text, inspect_kernel_bytes
from hvboot.errors import HvbootError
from hvboot.kernel.elf import check_kernel, load_plan
from hvboot.loader.config_file import KERNEL_PATH

VMLINUZ = Path(__file__).parent / ".cache" / "debian" / "linux" / "vmlinuz"


@pytest.fixture(scope="module")
def vmlinuz() -> Path:
    if not VMLINUZ.is_file():
        pytest.fail(f"{VMLINUZ}: missing; tests/fetch_debian.sh (scripts/setup.sh) fetches it")
    return VMLINUZ


def crafted_bzimage(version: int = 0x020F) -> bytes:
    """A bzImage setup header as boot.rst lays it out (8 setup sectors, 64-bit, relocatable) and
    4 KiB of "protected-mode kernel"."""
    b = bytearray(0x2000)
    b[0x1F1] = 7
    struct.pack_into("<H", b, 0x1FE, 0xAA55)
    b[0x201] = 0x6A
    b[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", b, 0x206, version)
    b[0x211] = 1  # LOADED_HIGH
    struct.pack_into("<IIBxH", b, 0x22C, 0x7FFF_FFFF, 2 << 20, 1, 3)
    struct.pack_into("<Q", b, 0x258, 0x100_0000)
    struct.pack_into("<I", b, 0x260, 0x40_0000)
    return bytes(b)


def test_debian_linux_is_a_bzimage(vmlinuz: Path) -> None:
    verdict = check_kernel(vmlinuz.read_bytes(), str(vmlinuz))
    assert verdict.ok and verdict.kind == "linux", verdict.problems
    h = verdict.linux
    assert h is not None and h["version"] >= "2.15" and h["relocatable_kernel"]
    assert verdict.plan is not None and verdict.plan.entry == h["pref_address"] + 0x200


def test_inspect_names_the_protocol_and_decodes_the_header(vmlinuz: Path) -> None:
    report = inspect_kernel_bytes(vmlinuz.read_bytes(), str(vmlinuz))
    assert report["kernel_kind"] == "linux" and report["ok"]
    assert report["linux"]["kernel_alignment"] == "0x200000"
    text = "\n".join(_kernel_text(report))
    assert "protocol: Linux x86 boot protocol" in text
    assert "setup header: boot protocol 2." in text


def test_a_crafted_header_is_accepted() -> None:
    plan = check_kernel(crafted_bzimage(), "k").plan
    assert plan is not None and (plan.entry, plan.phys_base) == (0x100_0200, 0x100_0000)


def test_a_protocol_older_than_2_12_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "old-bzImage"
    path.write_bytes(crafted_bzimage(0x020B))
    with pytest.raises(HvbootError) as err:
        load_plan(path)
    assert err.value.where == f"{path}: setup header version"
    assert "boot protocol 2.11, expected 2.12 or later" in err.value.what
    with pytest.raises(HvbootError) as err:
        make_image(tmp_path, path)
    assert err.value.where == f"{path}: setup header version"


def test_gzip_kernels(tmp_path: Path) -> None:
    kz = tmp_path / "vmlinuz.gz"
    kz.write_bytes(gzip.compress(crafted_bzimage()))
    files = {f.path: f.data for f in make_image(tmp_path, kz).files}
    assert files[KERNEL_PATH] == crafted_bzimage()
    bad = tmp_path / "broken.gz"
    bad.write_bytes(gzip.compress(crafted_bzimage())[:40])
    with pytest.raises(HvbootError) as err:
        make_image(tmp_path, bad)
    assert err.value.where == str(bad)
    assert "kernel: gzip data that does not decompress" in err.value.what
