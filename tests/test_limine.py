"""Limine kernels (docs/limine.md): our kernel built against the crates.io `limine` crate
(tests/kernels/limine) is recognised by the loader core, its base-revision tag and requests are
found where its symbol table says they are, and a base revision hvboot does not boot with is
refused by name on the host and, in the same words, by the loader under both firmwares."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot, make_image
from test_loader_errors import _host_error, _replace

from hvboot.cli.inspect import _kernel_text, inspect_kernel_bytes
from hvboot.kernel.elf import check_kernel, symbols
from hvboot.loader import artifacts
from hvboot.loader.config_file import KERNEL_PATH

LIMINE_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-limine-kernel"
TAG_MAGIC = struct.pack("<QQ", 0xF9562B2D5C95A6C8, 0x6A7B384944536BDC)
# The kernel's `Requests` block in declaration order after the 32-byte start marker and the
# 24-byte tag: each request's name and size (48 bytes of header, 8 more for the stack size).
REQUESTS = [
    ("bootloader info", 48),
    ("firmware type", 48),
    ("executable command line", 48),
    ("stack size", 56),
    ("HHDM", 48),
    ("memory map", 48),
    ("RSDP", 48),
]


@pytest.fixture(scope="module")
def limine_kernel(built: None) -> Path:
    assert LIMINE_KERNEL.is_file()
    return LIMINE_KERNEL


def _with_revision(kernel: Path, revision: int) -> bytes:
    data = bytearray(kernel.read_bytes())
    at = data.index(TAG_MAGIC)
    data[at + 16 : at + 24] = struct.pack("<Q", revision)
    return bytes(data)


def test_the_core_finds_the_tag_and_every_request_where_the_symbols_say(
    limine_kernel: Path,
) -> None:
    data = limine_kernel.read_bytes()
    verdict = check_kernel(data, "k")
    assert verdict.kind == "limine" and verdict.limine is not None
    # `static REQUESTS` (a mangled local symbol).
    block = next(a for n, a in symbols(data).items() if "limine_kernel8REQUESTS" in n)
    found = verdict.limine
    assert found["start_marker"] == block
    assert (found["base_revision"], found["tag_address"]) == (3, block + 32)
    at, expected = block + 32 + 24, []
    for name, size in REQUESTS:
        expected.append({"name": name, "revision": 0, "address": at})
        at += size
    assert found["end_marker"] == at
    got = [{k: r[k] for k in ("name", "revision", "address")} for r in found["requests"]]
    assert got == expected


def test_inspect_and_build_name_the_protocol_base_revision_and_requests(
    limine_kernel: Path, tmp_path: Path
) -> None:
    report = inspect_kernel_bytes(limine_kernel.read_bytes(), "k.elf")
    assert report["kernel_kind"] == "limine" and report["protocol"].startswith("Limine")
    text = "\n".join(_kernel_text(report))
    assert "limine base revision: 3 (tag at 0xffffffff" in text
    for name, _ in REQUESTS:
        assert f"  limine request: {name}, revision 0, at 0xffffffff" in text
    result = make_image(tmp_path, limine_kernel)
    assert result.kind == "limine" and result.limine == report["limine"]


@pytest.mark.parametrize("revision", [0, 4, 6])
def test_an_unsupported_base_revision_is_refused_by_name_on_the_host(
    limine_kernel: Path, revision: int
) -> None:
    error = _host_error(_with_revision(limine_kernel, revision))
    assert error.startswith(f"/{KERNEL_PATH}: limine base revision: {revision} (tag at 0xffff")
    assert error.endswith("): hvboot boots base revisions 1 to 3")


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_the_loader_refuses_an_unsupported_base_revision_in_the_toolkits_words(
    limine_kernel: Path, report_kernel: Path, tmp_path: Path, firmware: str
) -> None:
    """A good image whose kernel is swapped on the ESP for the Limine kernel asking for base
    revision 6 (the `limine` crate 0.6's): the loader says so, halts, the kernel never runs."""
    bad = _with_revision(limine_kernel, 6)
    image = make_image(tmp_path, report_kernel)
    _replace(image, f"/{KERNEL_PATH}", bad, tmp_path)
    result = boot(image.output, firmware)
    assert not result.ok and "LIMINE" not in result.serial
    assert "hvboot: halted" in result.serial
    assert result.loader_error == _host_error(bad)
    assert "limine base revision: 6" in result.loader_error
