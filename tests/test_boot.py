"""Boot tests: the report kernel boots in real QEMU and what it received is compared with what
the host knows (the command line, the modules' bytes, QEMU's -m, the kernel's ELF, ACPI)."""

from __future__ import annotations

import itertools
import random
import zlib
from pathlib import Path

import pytest
from conftest import (
    FIRMWARES,
    PIE_BASE,
    bios_image_end,
    bios_layout,
    boot_report,
    make_image,
    pie_kernel,
)
from report_kernel import BootReport

from hvboot.config.build import ModuleSpec
from hvboot.image.build import BuildResult
from hvboot.kernel.elf import load_plan, symbol_address
from hvboot.protocol.layout import PROTOCOL

pytestmark = pytest.mark.boot

KIND = {v.name: v.value for v in PROTOCOL.enums[0].values}
CMDLINE = "console=ttyS0 hv.guests=2 quoted='a b' path=/x/y \u00e9"
MIB = 1 << 20


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleSpec, ...]:
    d = tmp_path_factory.mktemp("modules")
    rng = random.Random(1234)
    specs = []
    for name, size, cmdline in (
        ("guest.bin", 300 * 1024 + 7, "mem=64M root=/dev/vda"),
        ("initrd.img", 1, ""),
        ("vm-config.json", 2 * MIB + 123, "role=primary"),
    ):
        path = d / name
        path.write_bytes(rng.randbytes(size))
        specs.append(ModuleSpec(path=path, name=name, cmdline=cmdline))
    return tuple(specs)


@pytest.fixture(scope="module")
def image(
    tmp_path_factory: pytest.TempPathFactory, report_kernel: Path, modules: tuple[ModuleSpec, ...]
) -> BuildResult:
    return make_image(tmp_path_factory.mktemp("img"), report_kernel, CMDLINE, modules)


def _regions(report: BootReport) -> list[tuple[int, int, int]]:
    return [(int(r["base"], 0), int(r["length"], 0), int(r["kind"])) for r in report.all("region")]


def _kind_at(regions: list[tuple[int, int, int]], start: int, size: int) -> set[int]:
    return {k for b, n, k in regions if b < start + max(size, 1) and start < b + n}


def _parse_mem(text: str) -> int:
    return int(text[:-1]) * {"M": MIB, "G": 1 << 30}[text[-1]]


@pytest.mark.parametrize("firmware", FIRMWARES)
@pytest.mark.parametrize("memory", ["128M", "512M", "2G"])
def test_boot_report_matches_host(
    firmware: str,
    memory: str,
    image: BuildResult,
    modules: tuple[ModuleSpec, ...],
    report_kernel: Path,
) -> None:
    result, report = boot_report(image.output, firmware, memory=memory)
    # Both loaders read the ESP themselves (loader/core/src/fat.rs); under UEFI through Block I/O.
    if firmware == "uefi":
        assert "through Block I/O" in result.serial

    begin = report.one("begin")
    assert begin["firmware"] == firmware.upper()
    assert begin["loader"] == "hvboot"
    assert int(begin["version"]) == 1
    assert report.one("cmdline")["text"] == CMDLINE

    # Modules: names, command lines, sizes and contents (CRC-32 computed by the kernel through
    # the direct map), in configuration order, 4 KiB aligned.
    got = report.all("module")
    assert [m["name"] for m in got] == [s.name for s in modules]
    regions = _regions(report)
    for spec, m in zip(modules, got, strict=True):
        data = spec.path.read_bytes()
        assert m["cmdline"] == spec.cmdline
        assert int(m["size"]) == len(data)
        assert int(m["crc32"], 16) == zlib.crc32(data)
        assert bytes.fromhex(m["head_hex"]) == data[:16]
        phys = int(m["phys"], 0)
        assert phys % 4096 == 0
        assert _kind_at(regions, phys, len(data)) == {KIND["MODULES"]}

    # The memory map: sorted, non-overlapping, merged, and its usable RAM close to QEMU's -m.
    assert regions, "no memory map"
    for (b1, n1, k1), (b2, _n2, k2) in itertools.pairwise(regions):
        assert b1 + n1 <= b2, "overlapping or unsorted regions"
        assert not (b1 + n1 == b2 and k1 == k2), "adjacent regions of one kind not merged"
    assert all(b % 4096 == 0 and n % 4096 == 0 and n > 0 for b, n, _ in regions)
    mem = report.one("memory")
    assert mem["sorted"] == "1" and mem["overlapping"] == "0"
    ram = _parse_mem(memory)
    usable = int(mem["usable_bytes"])
    assert usable == sum(n for _, n, k in regions if k == KIND["USABLE"])
    ram_kinds = {
        KIND[k]
        for k in (
            "USABLE",
            "LOADER_RECLAIMABLE",
            "KERNEL",
            "MODULES",
            "BOOT_INFO",
            "PAGE_TABLES",
            "KERNEL_STACK",
            "ACPI_RECLAIMABLE",
            "ACPI_NVS",
        )
    }
    ram_reported = sum(n for _, n, k in regions if k in ram_kinds)
    assert ram_reported <= ram
    # OVMF keeps a few MiB for itself (runtime services, SMM-free reserved areas). Under SeaBIOS
    # only the 384 KiB legacy hole (0xA0000..1 MiB), the EBDA page, the IVT/BDA page and the
    # 128 KiB SeaBIOS keeps below the top of low RAM are not RAM-kind: about 0.5 MiB.
    lost = 16 * MIB if firmware == "uefi" else 1 * MIB
    assert ram_reported >= ram - lost, f"only {ram_reported / MIB:.1f} MiB of {memory}"
    assert usable >= ram - 48 * MIB - sum(s.path.stat().st_size for s in modules)

    # The kernel runs at its linked virtual address, from a 2 MiB aligned physical block.
    plan = load_plan(report_kernel)
    k = report.one("kernel")
    assert int(k["virt_base"], 0) == plan.virt_start
    assert int(k["main"], 0) == symbol_address(report_kernel, "kernel_main")
    phys_base = int(k["phys_base"], 0)
    assert phys_base % (2 * MIB) == 0
    assert _kind_at(regions, phys_base, plan.image_size) == {KIND["KERNEL"]}
    # The entry stack: RSP 16-byte aligned at the top of the reported stack.
    assert int(k["entry_rsp"], 0) == int(k["stack_top"], 0)
    assert int(k["entry_rsp"], 0) % 16 == 0

    # Framebuffer on QEMU's VGA: the mode the host expects (OVMF's GOP starts in 1280x800, its
    # PcdVideoHorizontal/VerticalResolution; under BIOS the loader sets VBE 1024x768x32),
    # consistent geometry, reported in the map.
    fb = report.one("framebuffer")
    width, height, pitch = int(fb["width"]), int(fb["height"]), int(fb["pitch"])
    assert (width, height) == {"uefi": (1280, 800), "bios": (1024, 768)}[firmware]
    assert int(fb["bpp"]) == 32
    assert pitch >= width * 4
    assert KIND["FRAMEBUFFER"] in _kind_at(regions, int(fb["phys"], 0), pitch * height)

    # ACPI: the RSDP the firmware published, checksums valid (ACPI 6.5 §5.2.5.3).
    rsdp = report.one("rsdp")
    assert rsdp["signature"] == "RSD PTR "
    assert rsdp["checksum_ok"] == "1"
    if int(rsdp["revision"]) >= 2:
        assert rsdp["ext_checksum_ok"] == "1" and int(rsdp["xsdt"], 0) != 0
    # The tables the loader reports are the first of each signature in the root table as the
    # kernel walks it itself; q35 always has a MADT, a FADT and an MCFG (no SRAT without -numa,
    # no DMAR or IVRS without an IOMMU device).
    listed: dict[str, int] = {}
    for t in report.all("acpi_table_here"):
        listed.setdefault(t["sig"], int(t["phys"], 0))
    loader = {k: int(v, 0) for k, v in report.one("acpi_tables").items() if k != "_words"}
    sigs = {"madt": "APIC", "fadt": "FACP", "mcfg": "MCFG", "srat": "SRAT"}
    sigs |= {"dmar": "DMAR", "ivrs": "IVRS"}
    assert loader == {k: listed.get(sig, 0) for k, sig in sigs.items()}
    assert loader["madt"] and loader["fadt"] and loader["mcfg"], listed
    # The TSC frequency: QEMU's -cpu max (AMD) has no CPUID 15h, so the loader measured it
    # against the PM timer; within 1 % of what the kernel measures itself.
    tsc = report.one("tsc_freq")
    assert tsc["source"] == "2", tsc
    loader_hz, here_hz = int(tsc["loader_hz"]), int(tsc["here_hz"])
    assert abs(loader_hz - here_hz) < here_hz / 100, tsc

    # Firmware-specific facts (docs/bios.md), the direct map, paging and timestamps.
    system_table = int(report.one("efi")["system_table"], 0)
    if firmware == "uefi":
        assert system_table != 0
    else:
        assert system_table == 0
        # IVT + BDA and the EBDA .. 1 MiB stay reserved; the BIOS stages' memory is reclaimable.
        assert _kind_at(regions, 0, 0x500) == {KIND["RESERVED"]}
        assert _kind_at(regions, 0xA0000, 0x60000) == {KIND["RESERVED"]}
        # The loader's low area (loader/bios/asm/layout.inc, docs/bios.md's table) is
        # reclaimable but for the room above the image's end, which stays usable, as does RAM
        # above the area up to the EBDA (QEMU: 0x9FC00).
        lay, image_end = bios_layout(), bios_image_end()
        reclaimable = {KIND["LOADER_RECLAIMABLE"]}
        start, limit, end = lay["LOADER_START"], lay["IMAGE_LIMIT"], lay["LOADER_END"]
        assert _kind_at(regions, start, image_end - start) == reclaimable
        assert _kind_at(regions, limit, end - limit) == reclaimable
        assert image_end < limit and _kind_at(regions, image_end, limit - image_end) == {
            KIND["USABLE"]
        }
        assert KIND["USABLE"] in _kind_at(regions, lay["LOADER_END"], 0x9F000 - lay["LOADER_END"])
        # SeaBIOS publishes the RSDP and an SMBIOS entry point in the BIOS area.
        assert 0xE0000 <= int(rsdp["phys"], 0) < 0x100000
        assert 0xF0000 <= int(report.one("smbios")["entry"], 0) < 0x100000
    dm = report.one("direct_map")
    assert int(dm["offset"], 0) == 0xFFFF_8000_0000_0000
    assert int(dm["size"], 0) >= max(ram, 4 << 30)
    assert report.one("paging")["nx_ok"] == "1"
    tsc = report.one("tsc")
    assert 0 < int(tsc["loader_start"]) < int(tsc["handoff"]) <= int(tsc["now"])


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_position_independent_kernel_runs_slid(
    firmware: str, tmp_path: Path, modules: tuple[ModuleSpec, ...], built: None
) -> None:
    """hvboot's own protocol takes a static PIE too (docs/protocol.md, "The kernel"): the report
    kernel built so (tests/kernels/build-pie.sh), linked at 0 with its relocations, runs slid to
    0xffffffff80000000 with what it reports as the fixed-address build does."""
    kernel = pie_kernel("report")
    plan = load_plan(kernel)
    assert (plan.relocatable, plan.slide, plan.virt_start) == (True, PIE_BASE, PIE_BASE)
    assert plan.relocations > 0
    image = make_image(tmp_path, kernel, CMDLINE, modules)
    _, report = boot_report(image.output, firmware)
    assert report.one("cmdline")["text"] == CMDLINE
    for spec, m in zip(modules, report.all("module"), strict=True):
        assert int(m["crc32"], 16) == zlib.crc32(spec.path.read_bytes())
    k = report.one("kernel")
    assert int(k["virt_base"], 0) == PIE_BASE
    assert int(k["main"], 0) == symbol_address(kernel, "kernel_main") + PIE_BASE
    assert int(k["phys_base"], 0) % (2 * MIB) == 0
