"""Debian 12's own Xen 4.17 (xen-hypervisor-4.17-amd64, fetched and unpacked by
tests/fetch_debian.sh in the set-up, never installed) boots from an hvboot image under BIOS: the
gzip-compressed Multiboot2 kernel is accepted, placed (relocatable, 2 MiB aligned), entered in
32-bit mode, goes back to real mode for E820/EDD/VBE (the BIOS stays re-enterable) and prints its
banner on COM1. Without a dom0 kernel it stops there, which is all this test asks."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from conftest import BOOT_TIMEOUT, make_image

from hvboot.kernel.elf import check_kernel
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

pytestmark = pytest.mark.boot

XEN = Path(__file__).parent / ".cache" / "debian" / "xen" / "boot" / "xen-4.17-amd64.gz"
BANNER = re.compile(r"\(XEN\) Xen version 4\.17")


PLACED = re.compile(r"hvboot: kernel: .* physical (0x[0-9a-f]+)")
XEN_BASE = re.compile(r"\(XEN\) Xen image load base address: (0x[0-9a-f]+|0)")
XEN_LINKED = 2 << 20


def check_placement(serial: str) -> None:
    """Xen asks (relocatable tag) for 2 MiB alignment below 4 GiB, preferring high addresses:
    where hvboot put it, and where Xen says it runs (its offset from its 2 MiB link address)."""
    placed = int(PLACED.search(serial).group(1), 16)  # type: ignore[union-attr]
    assert placed % XEN_LINKED == 0 and XEN_LINKED < placed < 1 << 32, hex(placed)
    xen_base = XEN_BASE.search(serial)
    assert xen_base and int(xen_base.group(1), 16) == placed - XEN_LINKED, serial[-3000:]


@pytest.fixture(scope="module")
def xen() -> Path:
    if not XEN.is_file():
        pytest.fail(f"{XEN}: missing; tests/fetch_debian.sh (run by scripts/setup.sh) unpacks it")
    return XEN


def test_debian_xen_is_a_multiboot2_kernel(xen: Path) -> None:
    verdict = check_kernel(gzip.decompress(xen.read_bytes()), str(xen))
    assert verdict.ok and verdict.kind == "multiboot2", verdict.problems
    h = verdict.multiboot2
    assert h is not None and h["relocatable"]["align"] == 2 << 20


@pytest.mark.parametrize("real_mode", [True, False], ids=["real-mode", "no-real-mode"])
def test_debian_xen_prints_its_banner_under_bios(
    tmp_path: Path, xen: Path, real_mode: bool
) -> None:
    cmdline = "console=com1 com1=115200,8n1 loglvl=all" + ("" if real_mode else " no-real-mode")
    image = make_image(tmp_path, xen, cmdline=cmdline).output
    spec = qemu.QemuSpec(image=image, machine=Machine(firmware="bios", memory="1G"), snapshot=True)
    result = qemu.run(spec, timeout=BOOT_TIMEOUT, until=XEN_BASE)
    assert BANNER.search(result.serial), result.serial[-4000:]
    assert "hvboot: error" not in result.serial
    check_placement(result.serial)


def test_debian_xen_prints_its_banner_under_uefi(tmp_path: Path, xen: Path) -> None:
    """Under UEFI Xen takes its EFI path: its header's EFI boot services and EFI amd64 entry
    tags make hvboot keep the boot services and jump to that entry in 64-bit mode with the
    image handle and system table; Xen exits the boot services itself."""
    cmdline = "console=com1 com1=115200,8n1 loglvl=all"
    image = make_image(tmp_path, xen, cmdline=cmdline).output
    spec = qemu.QemuSpec(image=image, machine=Machine(firmware="uefi", memory="1G"), snapshot=True)
    result = qemu.run(spec, timeout=BOOT_TIMEOUT, until=XEN_BASE)
    assert BANNER.search(result.serial), result.serial[-4000:]
    assert "hvboot: keeping the boot services" in result.serial
    assert "hvboot: error" not in result.serial
    check_placement(result.serial)
