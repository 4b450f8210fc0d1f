"""Linux kernels through the Linux x86 boot protocol (docs/linux.md): the core's setup-header rules
as the toolkit sees them (Debian 12's own bzImage, fetched by tests/fetch_debian.sh; crafted bad
headers; gzip), and Debian's Linux booted under both firmwares to an initramfs of ours
(tests/linux_initramfs.py) that reports what the kernel found."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot, make_image, replace_on_esp
from linux_initramfs import BUSYBOX, initramfs_parts, report

from hvboot.cli.inspect import _kernel_text, inspect_kernel_bytes
from hvboot.config.build import ModuleSpec
from hvboot.errors import HvbootError
from hvboot.kernel.elf import check_kernel, load_plan, load_plan_bytes
from hvboot.loader.config_file import KERNEL_PATH
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

VMLINUZ = Path(__file__).parent / ".cache" / "debian" / "linux" / "vmlinuz"


@pytest.fixture(scope="module")
def vmlinuz() -> Path:
    if not VMLINUZ.is_file():
        pytest.fail(f"{VMLINUZ}: missing; tests/fetch_debian.sh (scripts/setup.sh) fetches it")
    return VMLINUZ


def crafted_bzimage(version: int = 0x020F) -> bytes:
    """A bzImage setup header as boot.rst lays it out (8 setup sectors, 64-bit, relocatable) and
    4 KiB of "protected-mode kernel"."""
    b = bytearray(0x2000)
    b[0x1F1] = 7
    struct.pack_into("<H", b, 0x1FE, 0xAA55)
    b[0x201] = 0x6A
    b[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", b, 0x206, version)
    b[0x211] = 1  # LOADED_HIGH
    struct.pack_into("<IIBxH", b, 0x22C, 0x7FFF_FFFF, 2 << 20, 1, 3)
    struct.pack_into("<I", b, 0x238, 2047)  # cmdline_size
    struct.pack_into("<Q", b, 0x258, 0x100_0000)
    struct.pack_into("<I", b, 0x260, 0x40_0000)
    return bytes(b)


def test_debian_linux_is_a_bzimage(vmlinuz: Path) -> None:
    verdict = check_kernel(vmlinuz.read_bytes(), str(vmlinuz))
    assert verdict.ok and verdict.kind == "linux", verdict.problems
    h = verdict.linux
    assert h is not None and h["version"] >= "2.15" and h["relocatable_kernel"]
    assert verdict.plan is not None and verdict.plan.entry == h["pref_address"] + 0x200


def test_inspect_names_the_protocol_and_decodes_the_header(vmlinuz: Path) -> None:
    report = inspect_kernel_bytes(vmlinuz.read_bytes(), str(vmlinuz))
    assert report["kernel_kind"] == "linux" and report["ok"]
    assert report["linux"]["kernel_alignment"] == "0x200000"
    text = "\n".join(_kernel_text(report))
    assert "protocol: Linux x86 boot protocol" in text
    assert "setup header: boot protocol 2." in text


def test_a_crafted_header_is_accepted() -> None:
    plan = check_kernel(crafted_bzimage(), "k").plan
    assert plan is not None and (plan.entry, plan.phys_base) == (0x100_0200, 0x100_0000)


def test_a_protocol_older_than_2_12_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "old-bzImage"
    path.write_bytes(crafted_bzimage(0x020B))
    with pytest.raises(HvbootError) as err:
        load_plan(path)
    assert err.value.where == f"{path}: setup header version"
    assert "boot protocol 2.11, expected 2.12 or later" in err.value.what
    with pytest.raises(HvbootError) as err:
        make_image(tmp_path, path)
    assert err.value.where == f"{path}: setup header version"


def test_a_command_line_past_cmdline_size_is_refused_by_name(tmp_path: Path) -> None:
    """The kernel's cmdline_size is a limit a user can meet: the host refuses past it as the
    loader would (flow/linux.rs's host test has the loader's words)."""
    path = tmp_path / "bzImage"
    path.write_bytes(crafted_bzimage())
    make_image(tmp_path, path, cmdline="x" * 2047)
    with pytest.raises(HvbootError) as err:
        make_image(tmp_path, path, cmdline="x" * 2048)
    assert err.value.where == f"{path}: setup header cmdline_size"
    assert err.value.what == "the command line is 2048 bytes, the kernel takes at most 2047"


def test_gzip_kernels(tmp_path: Path) -> None:
    kz = tmp_path / "vmlinuz.gz"
    kz.write_bytes(gzip.compress(crafted_bzimage()))
    files = {f.path: f.data for f in make_image(tmp_path, kz).files}
    assert files[KERNEL_PATH] == crafted_bzimage()
    bad = tmp_path / "broken.gz"
    bad.write_bytes(gzip.compress(crafted_bzimage())[:40])
    with pytest.raises(HvbootError) as err:
        make_image(tmp_path, bad)
    assert err.value.where == str(bad)
    assert "kernel: gzip data that does not decompress" in err.value.what


#: Linux under TCG takes 15-60 s to its init on an idle machine; several times that on a busy one.
LINUX_TIMEOUT = 900.0
MEMORY_MIB = 512


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_debian_linux_boots_to_our_init(tmp_path: Path, vmlinuz: Path, firmware: str) -> None:
    """Debian's Linux with a two-part initrd (busybox, then /init) reaches /init, which sees the
    command line the host set, the memory of -m, the firmware's ACPI tables (through
    acpi_rsdp_addr), the second part's /etc/order (the parts concatenated in order) and EFI
    under UEFI only (efi_info)."""
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX}: missing; tests/fetch_debian.sh (scripts/setup.sh) fetches it")
    parts = []
    for name, data in zip(("busybox.cpio", "init.cpio"), initramfs_parts(), strict=True):
        (tmp_path / name).write_bytes(data)
        parts.append(ModuleSpec(path=tmp_path / name, name=name, cmdline=""))
    cmdline = f"console=ttyS0 quiet panic=-1 hvboot.test={firmware}"
    image = make_image(tmp_path, vmlinuz, cmdline=cmdline, modules=tuple(parts)).output
    machine = Machine(firmware=firmware, memory=f"{MEMORY_MIB}M")
    run = qemu.run(
        qemu.QemuSpec(image=image, machine=machine, snapshot=True), timeout=LINUX_TIMEOUT
    )
    seen = report(run.serial)
    assert "done" in seen, f"{run.outcome}\n--- serial ---\n{run.serial[-4000:]}"
    assert seen["cmdline"] == cmdline
    mem_kib = int(seen["MemTotal"].split()[0])
    # MemTotal is RAM less the firmware's, the kernel's image and its reservations.
    assert (MEMORY_MIB - 96) << 10 < mem_kib <= MEMORY_MIB << 10, seen["MemTotal"]
    assert {"APIC", "FACP", "DSDT", "MCFG"} <= set(seen["acpi"].split()), seen["acpi"]
    assert seen["order"] == "second"
    assert seen["efi"] == ("yes" if firmware == "uefi" else "no")
    assert "hvboot: error" not in run.serial


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_the_loader_refuses_an_old_protocol_in_the_toolkits_words(
    tmp_path: Path, firmware: str
) -> None:
    """A good image whose bzImage is swapped on the ESP (mtools) for one of protocol 2.11: the
    loader stops with the toolkit's words under either firmware."""
    good = tmp_path / "bzImage"
    good.write_bytes(crafted_bzimage())
    result = make_image(tmp_path, good)
    bad = tmp_path / "old-bzImage"
    bad.write_bytes(crafted_bzimage(0x020B))
    replace_on_esp(result, f"/{KERNEL_PATH}", bad.read_bytes(), tmp_path, repin=True)
    run = boot(result.output, firmware)
    with pytest.raises(HvbootError) as host:
        load_plan_bytes(bad.read_bytes(), f"/{KERNEL_PATH}")
    assert not run.ok and run.loader_error == str(host.value)
    assert "setup header version: boot protocol 2.11" in str(host.value)


XEN = Path(__file__).parent / ".cache" / "debian" / "xen" / "boot" / "xen-4.17-amd64.gz"
DOM0_BANNER = re.compile(r"Linux version 6\.1\.")


@pytest.mark.boot
@pytest.mark.parametrize(
    ("firmware", "real_mode"),
    [("bios", True), ("bios", False), ("uefi", True)],
    ids=["bios-real-mode", "bios-no-real-mode", "uefi"],
)
def test_xen_hands_over_to_debian_linux_as_dom0(
    tmp_path: Path, vmlinuz: Path, firmware: str, real_mode: bool
) -> None:
    """Debian's Xen (Multiboot2) with Debian's Linux as the dom0 kernel (module 1) and the
    initramfs as its initrd (module 2): Xen builds dom0 with both and dom0's banner comes out on
    the Xen console. Under UEFI Xen takes its EFI path (boot services kept, docs/multiboot2.md);
    `no-real-mode` only means something under BIOS. `smap=0 smep=0`: under QEMU's TCG, Xen's
    delivery of dom0's first exception faults on the PV guest's stack with SMAP on (dom0
    crashes in Xen's create_bounce_frame); on hardware neither is needed."""
    if not XEN.is_file():
        pytest.fail(f"{XEN}: missing; tests/fetch_debian.sh (scripts/setup.sh) unpacks it")
    initrd = tmp_path / "initrd.cpio"
    initrd.write_bytes(b"".join(initramfs_parts()))
    modules = (
        ModuleSpec(path=vmlinuz, name="vmlinuz", cmdline="console=hvc0 earlyprintk=xen"),
        ModuleSpec(path=initrd, name="initrd", cmdline=""),
    )
    cmdline = "console=com1 com1=115200,8n1 dom0_mem=256M smap=0 smep=0"
    cmdline += "" if real_mode else " no-real-mode"
    image = make_image(tmp_path, XEN, cmdline=cmdline, modules=modules).output
    machine = Machine(firmware=firmware, memory="1G")
    spec = qemu.QemuSpec(image=image, machine=machine, snapshot=True)
    run = qemu.run(spec, timeout=LINUX_TIMEOUT, until=DOM0_BANNER)
    assert DOM0_BANNER.search(run.serial), run.serial[-4000:]
    ramdisk = re.search(r"Init\. ramdisk: ([0-9a-f]+)->([0-9a-f]+)", run.serial)
    assert ramdisk, "Xen names dom0's initrd"
    assert int(ramdisk[2], 16) - int(ramdisk[1], 16) == initrd.stat().st_size
    assert ("hvboot: keeping the boot services" in run.serial) == (firmware == "uefi")
    assert "hvboot: error" not in run.serial
