"""rust-osdev bootloader_api kernels (docs/bootloader-api.md): the core names the kind and
decodes the `.bootloader-config`, refuses what it cannot honour by field, on the host and on the
machine in the same words; and our test kernel (tests/kernels/bootapi, built against crates.io
`bootloader_api` 0.11.17) boots under both firmwares with a dynamic and a fixed
physical-memory offset, its `BootInfo` compared field by field with what the host knows."""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot, make_image, replace_on_esp
from elftools.elf.elffile import ELFFile

from hvboot.cli.inspect import _kernel_text, inspect_kernel_bytes
from hvboot.config.build import ModuleSpec
from hvboot.errors import HvbootError
from hvboot.kernel.elf import check_kernel, load_plan_bytes
from hvboot.loader import artifacts
from hvboot.loader.config_file import KERNEL_PATH

RELEASE = artifacts.TEST_KERNELS / "target" / "release"
# What tests/kernels/bootapi/src/bin/*.rs ask for: (stack size, physical-memory offset, stack).
KERNELS = {
    "dynamic": (96 * 1024, None, None),
    "fixed": (64 * 1024, 0x0000_4000_0000_0000, 0x0000_7F00_0000_0000),
}
MIB = 1 << 20


def kernel(name: str) -> Path:
    path = RELEASE / f"hvboot-bootapi-{name}"
    assert path.is_file(), f"{path}: not built (cargo build --release in tests/kernels)"
    return path


def config_offset(data: bytes) -> int:
    """The file offset of the `.bootloader-config` section."""
    section = ELFFile(io.BytesIO(data)).get_section_by_name(".bootloader-config")
    assert section is not None
    return int(section["sh_offset"])


def with_config_byte(data: bytes, at: int, value: int) -> bytes:
    """The kernel with byte `at` of its serialized config set to `value`."""
    out = bytearray(data)
    out[config_offset(data) + at] = value
    return bytes(out)


def test_the_core_names_the_kind_and_decodes_the_config(built: None) -> None:
    verdict = check_kernel(kernel("fixed").read_bytes(), "k")
    assert verdict.ok and verdict.kind == "bootloader-api"
    c = verdict.bootloader_api
    assert c is not None
    assert (c["api_version"], c["serialized_len"]) == ("0.11.17", 133)
    assert c["kernel_stack_size"] == 64 * 1024
    assert c["physical_memory"] == KERNELS["fixed"][1]
    assert c["kernel_stack"] == KERNELS["fixed"][2]
    assert c["boot_info"] == "dynamic" and c["page_table_recursive"] is None
    report = inspect_kernel_bytes(kernel("dynamic").read_bytes(), "k")
    assert report["kernel_kind"] == "bootloader-api"
    text = "\n".join(_kernel_text(report))
    assert "protocol: rust-osdev bootloader_api" in text
    assert "bootloader_api config: api version 0.11.17, 133 bytes" in text
    assert "  physical_memory: dynamic" in text


def test_build_names_the_kind(built: None, tmp_path: Path) -> None:
    out = tmp_path / "k.img"
    run = subprocess.run(
        [sys.executable, "-m", "hvboot", "build", str(kernel("dynamic")), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "kernel kind bootloader-api" in run.stderr


@pytest.mark.parametrize(
    ("at", "value", "field", "words"),
    [
        # The api version's patch (bytes 20-21): a release hvboot does not know.
        (20, 99, "version", "bootloader_api 0.11.99 is not supported"),
        # The minor version: 0.12 is no 0.11.
        (18, 12, "version", "bootloader_api 0.12.17 is not supported"),
        (0, 0, "uuid", "is not bootloader_api's BootloaderConfig UUID"),
        # page_table_recursive: Some(Dynamic) (its option byte at 77 in the 0.11.11+ layout).
        (77, 1, "mappings.page_table_recursive", "a recursive page-table entry is not supported"),
        (31, 7, "mappings.kernel_stack", "expected 0 (Dynamic) or 1 (FixedAddress)"),
    ],
)
def test_refusals_name_the_file_and_field(
    built: None, at: int, value: int, field: str, words: str
) -> None:
    data = with_config_byte(kernel("dynamic").read_bytes(), at, value)
    with pytest.raises(HvbootError) as e:
        load_plan_bytes(data, "k.elf")
    assert str(e.value).startswith(f"k.elf: .bootloader-config: {field}: "), str(e.value)
    assert words in str(e.value)


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_the_loader_refuses_an_unsupported_version_in_the_toolkits_words(
    tmp_path: Path, built: None, firmware: str
) -> None:
    """A good image whose kernel is swapped on the ESP for one built against an api version
    hvboot does not know: the loader says which, in the toolkit's words, and halts."""
    data = with_config_byte(kernel("dynamic").read_bytes(), 20, 99)
    image = make_image(tmp_path, kernel("dynamic"))
    replace_on_esp(image, f"/{KERNEL_PATH}", data, tmp_path, repin=True)
    run = boot(image.output, firmware)
    assert not run.ok and "BAPI begin" not in run.serial
    assert "hvboot: halted" in run.serial
    with pytest.raises(HvbootError) as host:
        load_plan_bytes(data, f"/{KERNEL_PATH}")
    assert run.loader_error == str(host.value)
    assert "bootloader_api 0.11.99 is not supported" in str(host.value)


def parse(serial: str) -> tuple[dict[str, dict[str, str]], list[tuple[int, int, str]]]:
    """The `BAPI` lines: each item's fields (`none` as {"none": ""}), and the regions."""
    items: dict[str, dict[str, str]] = {}
    regions = []
    for line in serial.splitlines():
        m = re.match(r"BAPI (\w+)(.*)$", line.strip())
        if not m:
            continue
        fields = {}
        for f in m[2].split():
            key, _, value = f.partition("=")
            fields[key] = value
        if m[1] == "region":
            regions.append((int(fields["start"], 16), int(fields["end"], 16), fields["kind"]))
        else:
            items[m[1]] = fields
    return items, regions


def covered(regions: list[tuple[int, int, str]], start: int, end: int) -> set[str]:
    """The kinds of the regions that [start, end) meets; {} when it meets none."""
    return {k for s, e, k in regions if s < end and start < e}


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_boot(tmp_path: Path, built: None, firmware: str, name: str) -> None:
    stack_size, fixed_offset, fixed_stack = KERNELS[name]
    ramdisk = tmp_path / "ramdisk.bin"
    ramdisk.write_bytes(random.Random(name).randbytes(300_000))
    path = kernel(name)
    image = make_image(tmp_path, path, modules=(ModuleSpec(ramdisk, "ramdisk.bin", ""),))
    memory = 512
    run = boot(image.output, firmware, memory=f"{memory}M")
    assert run.ok, f"{run.outcome}\n{run.serial[-4000:]}"
    items, regions = parse(run.serial)
    assert "end" in items, run.serial[-3000:]

    assert items["begin"]["api"] == "0.11.17" and items["begin"]["pre"] == "0"
    # The memory regions: sorted, disjoint; the RAM (usable and the bootloader's) is -m's.
    assert items["regions"] == {"count": str(len(regions)), "sorted": "1", "overlapping": "0"}
    ram = sum(e - s for s, e, k in regions if k in ("usable", "bootloader"))
    assert memory * MIB - 16 * MIB <= ram <= memory * MIB, [hex(r) for r in (ram,)]
    unknown = "uefi:" if firmware == "uefi" else "bios:"
    assert all(k in ("usable", "bootloader") or k.startswith(unknown) for _, _, k in regions)

    offset = int(items["physical_memory_offset"]["value"], 16)
    if fixed_offset is not None:
        assert offset == fixed_offset
    info_phys = int(items["begin"]["boot_info"], 16) - offset
    assert covered(regions, info_phys, info_phys + 232) == {"bootloader"}
    assert items["recursive_index"] == {"none": ""}

    # The RSDP, read by the kernel through the physical-memory offset, is ACPI's.
    rsdp = items["rsdp"]
    assert (rsdp["signature_ok"], rsdp["checksum_ok"]) == ("1", "1")
    assert "usable" not in covered(regions, int(rsdp["addr"], 16), int(rsdp["addr"], 16) + 20)

    fb = items["framebuffer"]
    width, height, stride, bpp = (
        int(fb[k]) for k in ("width", "height", "stride", "bytes_per_pixel")
    )
    assert fb["pixel_ok"] == "1" and fb["format"] in ("rgb", "bgr") and bpp == 4
    assert width <= stride and int(fb["byte_len"]) == stride * height * bpp
    fb_phys = int(fb["addr"], 16) - offset
    kinds = covered(regions, fb_phys, fb_phys + int(fb["byte_len"]))
    assert kinds and "usable" not in kinds and "bootloader" not in kinds

    # The TLS template is the ELF's PT_TLS (the kernel compared its bytes).
    with path.open("rb") as f:
        (tls,) = [s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_TLS"]
    t = items["tls"]
    assert t["bytes_ok"] == "1"
    assert (int(t["start"], 16), int(t["file_size"]), int(t["mem_size"])) == (
        tls["p_vaddr"],
        tls["p_filesz"],
        tls["p_memsz"],
    )

    # The ramdisk is the first module, byte for byte.
    data = ramdisk.read_bytes()
    rd = items["ramdisk"]
    assert int(rd["len"]) == len(data)
    assert int(rd["crc32"], 16) == zlib.crc32(data)
    assert rd["head_hex"] == data[:16].hex()

    k = items["kernel"]
    assert int(k["len"]) == path.stat().st_size and k["elf_magic_ok"] == "1"
    assert int(k["image_offset"], 16) == 0
    kernel_phys = int(k["addr"], 16)
    assert covered(regions, kernel_phys, kernel_phys + int(k["len"])) == {"bootloader"}

    s = items["stack"]
    assert int(s["len"]) == stack_size and s["rsp_in_stack"] == "1"
    if fixed_stack is not None:
        # The guard page at the fixed address, the stack above it (as rust-osdev's loader).
        assert int(s["bottom"], 16) == fixed_stack + 4096
