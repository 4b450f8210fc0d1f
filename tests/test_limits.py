"""The limits a user may reach (issue 10, "no cap a user meets"): command lines of 64 KiB, the
kernel's and each module's, booted under both firmwares and compared byte for byte with what the
kernel reads; one byte more is refused on the host by name, as is a loader config past the
loader's own limit (config.rs MAX_CONFIG_BYTES)."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot_report, make_image

from hvboot.config.build import MAX_CMDLINE_BYTES, ModuleSpec, check_cmdline
from hvboot.errors import HvbootError
from hvboot.loader import config_file

MAX_CONFIG_BYTES = 80 << 20  # loader/core/src/config.rs


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
