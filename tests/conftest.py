"""Shared fixtures: the built loader and test kernels, and a helper that boots an image."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from report_kernel import BootReport, parse_report

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.build import BuildResult, build_image
from hvboot.loader import artifacts, config_file
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

REPORT_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-report-kernel"
# The Multiboot2 test kernel (C, 32-bit): tests/kernels/multiboot2/build.sh writes it.
MB2_BUILD = artifacts.TEST_KERNELS / "multiboot2" / "build.sh"
MB2_KERNEL = artifacts.TEST_KERNELS / "build" / "hvboot-mb2-kernel.elf"
# Its variants (the same build.sh): with a framebuffer tag, and 64-bit for the EFI boot-services
# path.
MB2_FB_KERNEL = artifacts.TEST_KERNELS / "build" / "hvboot-mb2-fb-kernel.elf"
MB2_EFI64_KERNEL = artifacts.TEST_KERNELS / "build" / "hvboot-mb2-efi64-kernel.elf"
# The report and Limine test kernels built as static PIEs linked at 0 (tests/kernels/build-pie.sh),
# and where the loader runs them (docs/loader.md, "Relocation").
PIE_BUILD = artifacts.TEST_KERNELS / "build-pie.sh"
PIE_BASE = 0xFFFF_FFFF_8000_0000


def pie_kernel(name: str) -> Path:
    """`hvboot-<name>-kernel` as a static PIE, built (a no-op when it is up to date)."""
    subprocess.run([str(PIE_BUILD)], check=True)
    release = artifacts.TEST_KERNELS / "target/pie/x86_64-unknown-linux-gnu/release"
    return release / f"hvboot-{name}-kernel"


# Boot tests run under every firmware the loader supports: OVMF (UEFI) and SeaBIOS (BIOS).
BIOS_LAYOUT_INC = artifacts.REPO / "loader" / "bios" / "asm" / "layout.inc"


def bios_layout() -> dict[str, int]:
    """The BIOS loader's addresses below 1 MiB (`%define NAME VALUE` lines of layout.inc)."""
    out: dict[str, int] = {}
    for line in BIOS_LAYOUT_INC.read_text().splitlines():
        if line.startswith("%define "):
            _, name, value = line.split(";")[0].split()
            out[name] = int(value, 0)
    return out


def bios_image_end() -> int:
    """Where the built BIOS loader image (with .bss) ends: its `__loader_end`, page-aligned up."""
    with artifacts.bios_loader_elf().open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert symtab is not None
        end = next(s["st_value"] for s in symtab.iter_symbols() if s.name == "__loader_end")
    return -(-end // 0x1000) * 0x1000


FIRMWARES = ["uefi", "bios"]
BOOT_TIMEOUT = 120.0


def _cargo_build(path: Path) -> None:
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=path, check=True)


@pytest.fixture(scope="session")
def built() -> None:
    """The loader and the test kernels, built (a no-op after scripts/setup.sh)."""
    _cargo_build(artifacts.RUST_WORKSPACE)
    _cargo_build(artifacts.TEST_KERNELS)
    subprocess.run([str(MB2_BUILD)], check=True)


@pytest.fixture(scope="session")
def report_kernel(built: None) -> Path:
    assert REPORT_KERNEL.is_file()
    return REPORT_KERNEL


def boot(
    image: Path,
    firmware: str,
    *,
    memory: str = "512M",
    cpus: int = 1,
    cpu: str = "max",
    machine: str = "q35",
    qemu_args: tuple[str, ...] = (),
) -> qemu.RunResult:
    """Boots `image`; `machine` is QEMU's -machine value (a type and its properties),
    `qemu_args` more QEMU arguments (a device, say)."""
    vm = Machine(
        firmware=firmware, memory=memory, cpus=cpus, cpu=cpu, type=machine, qemu_args=qemu_args
    )
    spec = qemu.QemuSpec(image=image, machine=vm, snapshot=True)
    return qemu.run(spec, timeout=BOOT_TIMEOUT)


def boot_report(image: Path, firmware: str, **kw: str) -> tuple[qemu.RunResult, BootReport]:
    result = boot(image, firmware, **kw)  # type: ignore[arg-type]
    assert result.ok, f"{result.outcome}\n--- serial ---\n{result.serial[-4000:]}\n{result.stderr}"
    return result, parse_report(result.serial)


def check_modules(report: BootReport, modules: tuple[ModuleSpec, ...]) -> None:
    """The kernel got `modules` in order: names, command lines, sizes, CRC-32 and first bytes
    as the kernel read them through the direct map."""
    got = report.all("module")
    assert [m["name"] for m in got] == [s.name for s in modules]
    for spec, m in zip(modules, got, strict=True):
        data = spec.path.read_bytes()
        assert (m["cmdline"], int(m["size"])) == (spec.cmdline, len(data))
        assert int(m["crc32"], 16) == zlib.crc32(data)
        assert bytes.fromhex(m["head_hex"]) == data[:16]


def make_image(
    tmp: Path,
    kernel: Path,
    cmdline: str = "",
    modules: tuple[ModuleSpec, ...] = (),
    name: str = "disk.img",
) -> BuildResult:
    cfg = BuildConfig(kernel=kernel, cmdline=cmdline, modules=modules, output=None, image_size=None)
    return build_image(cfg, tmp / name)


def kernel_read_error(
    image: BuildResult, kernel: Path, tmp: Path, *, once: bool
) -> tuple[int, qemu.RunResult]:
    """Boots `image` under SeaBIOS with QEMU's blkdebug failing reads of the kernel's 9th sector
    (once, or every time). The FAT writer stores a file's clusters in order, so the kernel's first
    4 KiB mark its first sector. Returns (the bad sector, the run)."""
    data = image.output.read_bytes()
    at = data.find(kernel.read_bytes()[:4096])
    assert at > 0 and at % 512 == 0
    bad = at // 512 + 8
    rules = tmp / "blkdebug.cfg"
    rules.write_text(
        f'[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "{bad}"\n'
        f'once = "{"on" if once else "off"}"\n'
    )
    spec = qemu.QemuSpec(
        image=image.output, machine=Machine(firmware="bios"), snapshot=True, blkdebug=rules
    )
    return bad, qemu.run(spec, timeout=BOOT_TIMEOUT)


def esp_fats(image: BuildResult) -> list[tuple[int, int]]:
    """Where the ESP's FAT32 copies are in the image file: (byte offset, length) of each."""
    esp = image.layout.esp_first_lba * 512
    with open(image.output, "rb") as f:
        f.seek(esp)
        bpb = f.read(512)
    reserved, nfats = struct.unpack_from("<HB", bpb, 14)
    size = struct.unpack_from("<I", bpb, 36)[0] * 512
    return [(esp + reserved * 512 + i * size, size) for i in range(nfats)]


def replace_on_esp(image: BuildResult, path: str, data: bytes, tmp: Path, *, repin: bool) -> None:
    """Replaces the ESP file `path` (absolute) with `data` through mtools, an independent FAT
    implementation, as a user could. With `repin`, its pin in hvboot.cfg follows (as a user who
    also edits the config), so the loader's later rules, not the digest check, judge the bytes."""
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    esp = f"{image.output}@@{image.layout.esp_first_lba * 512}"
    files = {f"/{f.path}": f.data for f in image.files}
    replacements = {path: data}
    if repin:
        cfg = f"/{config_file.CONFIG_PATH}"
        old, new = config_file.digest(files[path]), config_file.digest(data)
        assert old in files[cfg].decode(), f"{path} is not pinned"
        replacements[cfg] = files[cfg].decode().replace(old, new).encode()
    for at, content in replacements.items():
        src = tmp / "replacement"
        src.write_bytes(content)
        subprocess.run(["mcopy", "-o", "-i", esp, str(src), f"::{at}"], check=True, env=env)
