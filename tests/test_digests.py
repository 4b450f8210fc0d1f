"""No wrong bytes, ever: hvboot.cfg pins the kernel and every module by BLAKE3, and the loader
refuses a file replaced on the ESP after `hvboot build`, naming it and both digests, under BIOS
and UEFI, before the kernel runs (docs/trust.md, "File digests")."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIRMWARES, boot, make_image, replace_on_esp

from hvboot.config.build import ModuleSpec
from hvboot.image.build import BuildResult
from hvboot.loader import checker, config_file

GUEST = bytes(range(256)) * 64


@pytest.fixture
def image(tmp_path: Path, report_kernel: Path) -> BuildResult:
    mod = tmp_path / "guest.bin"
    mod.write_bytes(GUEST)
    return make_image(tmp_path, report_kernel, "x=1", (ModuleSpec(mod, "guest.bin", "m=1"),))


def test_build_pins_every_file_it_places(image: BuildResult, report_kernel: Path) -> None:
    """The pins the core parses from the written config are the files' own digests."""
    cfg = next(f.data for f in image.files if f.path == config_file.CONFIG_PATH)
    doc = checker.check_config(cfg.decode())
    assert doc["config"]["kernel_blake3"] == config_file.digest(report_kernel.read_bytes())
    [module] = doc["config"]["modules"]
    assert module["blake3"] == config_file.digest(GUEST)


def _refused(image: BuildResult, firmware: str, path: str, data: bytes, tmp: Path) -> None:
    replace_on_esp(image, path, data, tmp, repin=False)
    result = boot(image.output, firmware)
    assert not result.ok and "HVB begin" not in result.serial, "the kernel ran"
    old = next(f.data for f in image.files if f"/{f.path}" == path)
    assert result.loader_error == (
        f"{path}: blake3 mismatch: expected {config_file.digest(old)}, "
        f"got {config_file.digest(data)}"
    ), result.serial[-3000:]
    assert "hvboot: halted" in result.serial


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_a_replaced_kernel_is_refused(
    image: BuildResult, firmware: str, report_kernel: Path, tmp_path: Path
) -> None:
    # One flipped bit in the last byte: the same size, a valid ELF still.
    data = bytearray(report_kernel.read_bytes())
    data[-1] ^= 1
    _refused(image, firmware, "/hvboot/kernel.elf", bytes(data), tmp_path)


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_a_replaced_module_is_refused(image: BuildResult, firmware: str, tmp_path: Path) -> None:
    data = bytearray(GUEST)
    data[len(data) // 2] ^= 0x80
    _refused(image, firmware, "/hvboot/modules/guest.bin", bytes(data), tmp_path)
