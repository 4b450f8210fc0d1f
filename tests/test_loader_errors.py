"""Failure on the machine: the loader prints what went wrong and where on serial, then halts.

The host refuses bad kernels at build time, so these tests damage a good image afterwards with
mtools (an independent FAT implementation), as a user replacing files on the ESP could.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import boot, make_image, replace_on_esp

from hvboot.config.build import ModuleSpec
from hvboot.errors import HvbootError
from hvboot.image.build import BuildResult
from hvboot.kernel.elf import load_plan_bytes
from hvboot.loader import config_file

pytestmark = pytest.mark.boot
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def _esp(image: BuildResult) -> str:
    return f"{image.output}@@{image.layout.esp_first_lba * 512}"


def _mtools(*args: str) -> None:
    subprocess.run(args, check=True, env=ENV, capture_output=True)


def _replace(image: BuildResult, path: str, data: bytes, tmp: Path) -> None:
    """A file replaced with its pin updated: the loader's rules for its contents judge it."""
    replace_on_esp(image, path, data, tmp, repin=True)


@pytest.fixture
def image(tmp_path: Path, report_kernel: Path) -> BuildResult:
    return make_image(tmp_path, report_kernel, "x=1")


def _loader_error(image: BuildResult) -> str:
    result = boot(image.output, "uefi")
    assert not result.ok
    assert result.loader_error is not None, f"no loader error on serial:\n{result.serial[-3000:]}"
    assert "hvboot: halted" in result.serial
    assert "HVB begin" not in result.serial, "the kernel ran although the loader failed"
    return result.loader_error


def _not_found(error: str) -> bool:
    """The reason is "not found": the FAT reader's words (BIOS, and UEFI over Block I/O), or the
    firmware's NOT_FOUND status (UEFI through the Simple File System fallback)."""
    return "not found" in error or "NOT_FOUND" in error


def test_missing_kernel_file(image: BuildResult) -> None:
    _mtools("mdel", "-i", _esp(image), "::/hvboot/kernel.elf")
    error = _loader_error(image)
    assert "/hvboot/kernel.elf" in error and _not_found(error)


def test_corrupt_kernel_is_refused(image: BuildResult, report_kernel: Path, tmp_path: Path) -> None:
    data = bytearray(report_kernel.read_bytes())
    data[18] = 3  # e_machine = EM_386
    _replace(image, "/hvboot/kernel.elf", bytes(data), tmp_path)
    error = _loader_error(image)
    assert "/hvboot/kernel.elf" in error and "e_machine" in error
    assert error == _host_error(bytes(data)), "the loader and the toolkit word it differently"


def _host_error(kernel: bytes) -> str:
    """What `hvboot build` says about the kernel, as if it were the file on the ESP."""
    with pytest.raises(HvbootError) as err:
        load_plan_bytes(kernel, "/hvboot/kernel.elf")
    return str(err.value)


def test_truncated_kernel_is_refused(
    image: BuildResult, report_kernel: Path, tmp_path: Path
) -> None:
    _replace(image, "/hvboot/kernel.elf", report_kernel.read_bytes()[:200], tmp_path)
    error = _loader_error(image)
    assert "/hvboot/kernel.elf" in error
    assert error == _host_error(report_kernel.read_bytes()[:200])


def test_bad_config_names_the_line(image: BuildResult, tmp_path: Path) -> None:
    text = "hvboot-config 1\nkernel /hvboot/kernel.elf\nframebuffer 1024x768\n"
    replace_on_esp(image, "/hvboot/hvboot.cfg", text.encode(), tmp_path, repin=False)
    error = _loader_error(image)
    assert "/hvboot/hvboot.cfg" in error and "line 3" in error and "framebuffer" in error
    with pytest.raises(HvbootError) as host:
        config_file.check(text)
    assert error == f"/{host.value}", "the loader and the toolkit word it differently"


def test_missing_module_names_the_file(tmp_path: Path, report_kernel: Path) -> None:
    mod = tmp_path / "guest.bin"
    mod.write_bytes(b"guest" * 100)
    image = make_image(tmp_path, report_kernel, "", (ModuleSpec(mod, "guest.bin", ""),))
    _mtools("mdel", "-i", _esp(image), "::/hvboot/modules/guest.bin")
    error = _loader_error(image)
    assert "/hvboot/modules/guest.bin" in error and _not_found(error)
