"""rust-osdev/bootloader's own test kernels (its tests/test_kernels at the tag
tests/rust_osdev.py fetches), built with their build files adapted and their code unchanged,
each booted from an hvboot image as a named test expecting what rust-osdev's runner
(tests/runner) expects of every one of them: exit status 33 (isa-debug-exit 0x10), with their
ramdisks and QEMU's default 128 MiB. Every kernel boots under SeaBIOS; the ones in `UEFI_TOO`
(the BootInfo checks of each kind) under OVMF as well, to keep the suite's boot time in bounds
(docs/bootloader-api.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import rust_osdev
from conftest import boot, make_image

from hvboot.config.build import ModuleSpec

pytestmark = pytest.mark.boot

UEFI_TOO = {
    "default_settings--check_boot_info",
    "higher_half--check_boot_info",
    "map_phys_mem--check_boot_info",
    "ramdisk--ramdisk",
    "ramdisk--memory_map",
    "write_usable_memory--write_usable_memory",
    "pie--global_variable",
    "fixed_kernel_address--verify_kernel_address",
}
RAMDISK = rust_osdev.BUILD.parent / "ramdisk.txt"


def _params() -> list[object]:
    if not (rust_osdev.RELEASE).is_dir():
        why = (
            f"{rust_osdev.RELEASE}: rust-osdev's test kernels are not built: run "
            "tests/rust_osdev.py (it needs GitHub, or HVBOOT_BOOTLOADER_GIT)"
        )
        return [pytest.param("", "", "bios", marks=pytest.mark.skip(reason=why), id="absent")]
    out: list[object] = []
    for crate, binary in rust_osdev.kernels():
        name = f"{crate}--{binary}"
        firmwares = ["bios", "uefi"] if name in UEFI_TOO else ["bios"]
        out += [pytest.param(crate, binary, fw, id=f"{name}-{fw}") for fw in firmwares]
    return out


@pytest.mark.parametrize(("crate", "binary", "firmware"), _params())
def test_kernel(tmp_path: Path, built: None, crate: str, binary: str, firmware: str) -> None:
    kernel = rust_osdev.kernel_path(crate, binary)
    modules: tuple[ModuleSpec, ...] = ()
    if crate == "ramdisk":
        ramdisk = RAMDISK
        if binary == "large_ramdisk":
            # Their runner's: a 16 MiB file of zeros.
            ramdisk = tmp_path / "large.img"
            with ramdisk.open("wb") as f:
                f.truncate(16 << 20)
        modules = (ModuleSpec(ramdisk, ramdisk.name, ""),)
    image = make_image(tmp_path, kernel, modules=modules)
    run = boot(image.output, firmware, memory="128M")
    assert run.status == 33, f"{run.outcome}\n--- serial ---\n{run.serial[-3000:]}"
