"""The limits a user may reach (issue 10, "no cap a user meets"): command lines of 64 KiB, the
kernel's and each module's, booted under both firmwares and compared byte for byte with what the
kernel reads; one byte more is refused on the host by name, as is a loader config past the
loader's own limit (config.rs MAX_CONFIG_BYTES). Modules as large as memory allows: above
4 GiB when the RAM below is too small, under both firmwares; a Multiboot2 kernel, whose module
tags are 32-bit, refused by name instead."""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import pytest
from conftest import FIRMWARES, MB2_KERNEL, boot, boot_report, check_modules, make_image

from hvboot.config.build import MAX_CMDLINE_BYTES, ModuleSpec, check_cmdline
from hvboot.errors import HvbootError
from hvboot.loader import config_file

MAX_CONFIG_BYTES = 80 << 20  # loader/core/src/config.rs

# A q35 with 256 MiB of RAM below 4 GiB (QEMU's max-ram-below-4g) and 512 MiB above, from
# 4 GiB. Plain q35 puts 2 GiB below 4 GiB from -m 2752M on: a module too large for that takes
# minutes to read, hash and check under TCG; this one, as large as all the RAM below, seconds.
LOW_RAM = 256 << 20
HIGH_RAM = 512 << 20
FOUR_GIB = 1 << 32
SMALL_LOW = {
    "memory": f"{(LOW_RAM + HIGH_RAM) >> 20}M",
    "machine": f"q35,max-ram-below-4g={LOW_RAM >> 20}M",
}
RESERVED_KIND, MODULES_KIND = 2, 8  # MemoryKind (src/hvboot/protocol/layout.py)


def _line(seed: int, size: int) -> str:
    rng = random.Random(seed)
    return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(size))


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_command_lines_at_the_limit_boot(
    firmware: str, report_kernel: Path, tmp_path: Path
) -> None:
    cmdline = _line(1, MAX_CMDLINE_BYTES)
    specs = []
    for i in range(2):
        path = tmp_path / f"m{i}.bin"
        path.write_bytes(bytes([i]) * 4096)
        specs.append(ModuleSpec(path, f"m{i}.bin", _line(10 + i, MAX_CMDLINE_BYTES)))
    image = make_image(tmp_path, report_kernel, cmdline, tuple(specs))
    _, report = boot_report(image.output, firmware)
    assert report.one("cmdline")["text"] == cmdline
    got = report.all("module")
    assert [m["cmdline"] for m in got] == [s.cmdline for s in specs]
    assert [int(m["crc32"], 16) for m in got] == [zlib.crc32(s.path.read_bytes()) for s in specs]


def test_a_byte_past_the_limit_is_refused_by_name() -> None:
    with pytest.raises(HvbootError) as err:
        check_cmdline("x" * (MAX_CMDLINE_BYTES + 1), "modules[3].cmdline")
    assert err.value.where == "modules[3].cmdline"
    assert f"longer than the limit of {MAX_CMDLINE_BYTES} bytes" in err.value.what


def test_a_config_past_the_loaders_limit_is_refused_by_name() -> None:
    # 1,300 modules with 64 KiB command lines: more than the loader reads as its config.
    line = "y" * MAX_CMDLINE_BYTES
    modules = [
        config_file.LoaderModule(f"{config_file.MODULE_DIR}/m{i}", f"m{i}", line)
        for i in range(1300)
    ]
    text = config_file.render("", modules)
    assert len(text) > MAX_CONFIG_BYTES
    with pytest.raises(HvbootError) as err:
        config_file.check(text)
    assert f"more than the loader's limit of {MAX_CONFIG_BYTES} bytes" in str(err.value)


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_a_module_larger_than_the_ram_below_4_gib_goes_above_or_is_refused_by_name(
    firmware: str, report_kernel: Path, tmp_path: Path
) -> None:
    # LOW_RAM random bytes cannot fit below 4 GiB on the SMALL_LOW machine.
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(LOW_RAM))
    spec = ModuleSpec(path, "big.bin", "")
    image = make_image(tmp_path, report_kernel, "", (spec,))
    _, report = boot_report(image.output, firmware, **SMALL_LOW)
    check_modules(report, (spec,))
    phys = int(report.one("module")["phys"], 0)
    assert phys >= FOUR_GIB and phys + LOW_RAM <= FOUR_GIB + HIGH_RAM
    regions = [
        (int(r["base"], 0), int(r["length"], 0), int(r["kind"])) for r in report.all("region")
    ]
    assert report.one("memory")["overlapping"] == "0"
    assert any(b <= phys and phys + LOW_RAM <= b + n and k == MODULES_KIND for b, n, k in regions)
    # Above 4 GiB the map's RAM is what QEMU put there, all of it (QEMU also reserves a range
    # below 1 TiB, the HyperTransport hole, on AMD hosts).
    high = [(b, n) for b, n, k in regions if b + n > FOUR_GIB and k != RESERVED_KIND]
    assert all(b >= FOUR_GIB and b + n <= FOUR_GIB + HIGH_RAM for b, n in high), high
    assert sum(n for _, n in high) == HIGH_RAM
    # A Multiboot2 kernel's module tags hold 32-bit addresses: the same module is refused by name.
    image = make_image(tmp_path, MB2_KERNEL, "", (spec,), name="mb2.img")
    result = boot(image.output, firmware, **SMALL_LOW)
    assert result.loader_error is not None, result.serial[-2000:]
    assert "module big.bin at 0x1" in result.loader_error
    assert "ends above 4 GiB, out of a Multiboot2 kernel's reach" in result.loader_error
