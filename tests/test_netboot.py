"""`hvboot build --netboot DIR` and the UEFI loader booted from the network: QEMU's user-mode
network serves the tree over TFTP and names EFI/BOOT/BOOTX64.EFI as the DHCP boot file; the
loader reads its config, kernel and modules over PXE Base Code TFTP. Two PXE implementations:
OVMF's own (virtio-net without its option ROM) and iPXE's (e1000 with Debian's ipxe-qemu EFI
ROM, which OVMF needs for that NIC), which cannot tell a file's size."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BOOT_TIMEOUT, check_modules
from report_kernel import parse_report

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.build import boot_files
from hvboot.image.netboot import BOOT_FILE, build_netboot
from hvboot.kernel.elf import symbol_address
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

CMDLINE = "console=ttyS0 from=tftp"
SERVER = "tftp://10.0.2.2/"  # QEMU user networking's host address (its TFTP server)
# OVMF drives virtio-net itself (VirtioNetDxe + its PXE Base Code) once QEMU attaches no iPXE ROM.
OVMF_PXE = "virtio-net-pci,romfile="
IPXE_PXE = "e1000"  # QEMU loads efi-e1000.rom (Debian's ipxe-qemu): iPXE's PXE Base Code
E1000_ROM = Path("/usr/lib/ipxe/qemu/efi-e1000.rom")  # QEMU looks there on Debian


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleSpec, ...]:
    d = tmp_path_factory.mktemp("net-modules")
    path = d / "guest.bin"
    path.write_bytes(random.Random(15).randbytes(2 * (1 << 20) + 77))
    return (ModuleSpec(path=path, name="guest.bin", cmdline="mem=64M"),)


def _config(kernel: Path, modules: tuple[ModuleSpec, ...]) -> BuildConfig:
    return BuildConfig(
        kernel=kernel, cmdline=CMDLINE, modules=modules, output=None, image_size=None
    )


def _boot(tree: Path, nic: str) -> qemu.RunResult:
    spec = qemu.QemuSpec(
        image=tree / BOOT_FILE, machine=Machine(firmware="uefi"), tftp=tree, nic=nic
    )
    return qemu.run(spec, timeout=BOOT_TIMEOUT)


def test_tree_is_the_esp_layout(
    report_kernel: Path, modules: tuple[ModuleSpec, ...], tmp_path: Path
) -> None:
    cfg = _config(report_kernel, modules)
    tree = build_netboot(cfg, tmp_path / "tftp")
    on_disk = sorted(
        (p.relative_to(tree.root).as_posix(), p.read_bytes())
        for p in tree.root.rglob("*")
        if p.is_file()
    )
    assert on_disk == sorted((f.path, f.data) for f in boot_files(cfg).files)
    assert (tree.root / BOOT_FILE).read_bytes()[:2] == b"MZ"


def test_netboot_with_iso_is_refused(report_kernel: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hvboot", "build", str(report_kernel), "--iso",
         "--netboot", str(tmp_path / "t"), "-o", str(tmp_path / "x.iso")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--netboot" in proc.stderr and "--iso" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ipxe_e1000_rom_is_installed() -> None:
    assert E1000_ROM.is_file(), f"{E1000_ROM}: missing (Debian's ipxe-qemu, scripts/setup.sh)"


@pytest.mark.boot
@pytest.mark.parametrize("nic", [OVMF_PXE, IPXE_PXE])
def test_netboot_report_matches_host(
    nic: str, report_kernel: Path, modules: tuple[ModuleSpec, ...], tmp_path: Path
) -> None:
    tree = build_netboot(_config(report_kernel, modules), tmp_path / "tftp")
    result = _boot(tree.root, nic)
    assert result.ok, f"{result.outcome}\n--- serial ---\n{result.serial[-4000:]}"
    serial = result.serial
    assert f"files: over the network from {SERVER}" in serial
    # Progress on serial, per file; iPXE cannot tell a size, so that path reads twice.
    for f in ("hvboot/hvboot.cfg", "hvboot/kernel.elf", "hvboot/modules/guest.bin"):
        assert f"net: {SERVER}{f}:" in serial
    assert ("reading it twice" in serial) == (nic == IPXE_PXE)
    report = parse_report(serial)
    assert report.one("begin")["firmware"] == "UEFI"
    assert report.one("cmdline")["text"] == CMDLINE
    check_modules(report, modules)
    assert int(report.one("kernel")["main"], 0) == symbol_address(report_kernel, "kernel_main")


@pytest.mark.boot
def test_a_missing_file_names_the_server_and_the_path(
    report_kernel: Path, modules: tuple[ModuleSpec, ...], tmp_path: Path
) -> None:
    tree = build_netboot(_config(report_kernel, modules), tmp_path / "tftp")
    (tree.root / "hvboot/modules/guest.bin").unlink()
    result = _boot(tree.root, OVMF_PXE)
    assert not result.ok
    assert result.loader_error is not None, result.serial[-3000:]
    assert result.loader_error.startswith(f"{SERVER}hvboot/modules/guest.bin: ")
    assert "not found" in result.loader_error.lower()
    assert "HVB begin" not in result.serial  # the kernel never ran
