"""The boot-information additions for hypervisors (docs/hypervisor.md) under both firmwares, with
the report kernel: the virtualization report equals what the kernel computes from its own CPUID
and MSRs (`virt_here`) and what QEMU's CPU models are known to offer under TCG; the CPU list
equals the MADT the kernel parses itself (`madt_here`) and QEMU's -smp; the raw firmware map is
there and backs the merged map; the TSC stamps increase; every placed extent is sound.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot_report, make_image
from test_request import EXTENT, KIND, check_extents, covered, firmware_free, regions

from hvboot.image.build import BuildResult
from hvboot.protocol.layout import PROTOCOL

pytestmark = pytest.mark.boot

VIRT = {v.name: v.value for e in PROTOCOL.enums if e.name == "VirtFlags" for v in e.values}
CPU = {v.name: v.value for e in PROTOCOL.enums if e.name == "CpuFlags" for v in e.values}
# What QEMU 7.2's TCG models offer (docs/hypervisor.md, the toolchain notes): vendor, then the
# flags that must be set and those that must be clear.
MODELS = {
    "max": ("AuthenticAMD", {"SVM", "NPT", "GIB_PAGES"}, {"VMX"}),
    "qemu64": ("AuthenticAMD", {"SVM"}, {"NPT", "VMX"}),
    "Skylake-Client": ("GenuineIntel", set(), {"VMX", "SVM", "NPT", "EPT"}),
}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, report_kernel: Path) -> BuildResult:
    return make_image(tmp_path_factory.mktemp("img"), report_kernel)


@pytest.mark.parametrize("firmware", FIRMWARES)
@pytest.mark.parametrize(
    ("cpu", "cpus"), [("max", 1), ("max", 4), ("qemu64", 1), ("Skylake-Client", 4)]
)
def test_virt_report_and_cpu_list(firmware: str, cpu: str, cpus: int, image: BuildResult) -> None:
    _, report = boot_report(image.output, firmware, cpu=cpu, cpus=cpus)  # type: ignore[arg-type]

    # The virtualization report: present, equal to the kernel's own reading (no VMX to enable
    # under TCG, so nothing changed in between), and what the model is known to offer.
    virt, here = report.one("virt"), report.one("virt_here")
    assert virt.pop("present") == "1"
    assert virt == here
    vendor, on, off = MODELS[cpu]
    assert virt["vendor"] == vendor
    flags = int(virt["flags"], 0)
    assert flags & VIRT["VALID"]
    for name in on:
        assert flags & VIRT[name], f"{cpu}: {name} missing in {flags:#x}"
    for name in off:
        assert not flags & VIRT[name], f"{cpu}: {name} unexpectedly in {flags:#x}"
    assert bool(flags & VIRT["VM_CR_READ"]) == bool(flags & VIRT["SVM"])
    assert not flags & VIRT["VMX_ENABLED_BY_LOADER"]
    assert int(virt["fc_before"], 0) == int(virt["fc_after"], 0)
    assert 36 <= int(virt["maxphyaddr"]) <= 52

    # The CPU list: QEMU numbers its CPUs' APIC IDs 0..n-1 and boots on CPU 0.
    listed = report.all("cpu")
    assert [int(c["apic_id"]) for c in listed] == list(range(cpus))
    for c in listed:
        f = int(c["flags"], 0)
        assert f & CPU["ENABLED"]
        assert bool(f & CPU["BSP"]) == (c["apic_id"] == "0")
    summary, madt = report.one("cpus"), report.one("madt_here")
    assert int(summary["count"]) == int(madt["count"]) == cpus
    assert madt["apic_ids"] == ",".join(str(i) for i in range(cpus))
    assert int(summary["local_apic"], 0) == int(madt["local_apic"], 0) == 0xFEE0_0000


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_firmware_map_extents_and_stamps(firmware: str, image: BuildResult) -> None:
    _, report = boot_report(image.output, firmware, memory="512M")

    # The raw firmware map: in firmware order, every entry non-empty; under UEFI page-granular
    # EFI descriptors with attributes, under BIOS E820 entries. The merged map's usable memory
    # lies in what the firmware called free.
    fw = report.all("fw_region")
    assert fw, "no raw firmware map"
    assert [int(e["index"]) for e in fw] == list(range(len(fw)))
    assert all(int(e["length"], 0) > 0 for e in fw)
    types = {int(e["type"]) for e in fw}
    if firmware == "uefi":
        assert 7 in types, "no EfiConventionalMemory"
        assert all(int(e["base"], 0) % 4096 == 0 and int(e["length"], 0) % 4096 == 0 for e in fw)
        assert any(int(e["attributes"], 0) & 0xF for e in fw), "no cacheability attributes"
        assert any(t >= 0x8000_0000 for t in types), "the loader's own allocations are missing"
    else:
        assert 1 in types and types <= {1, 2, 3, 4, 5}
    free = firmware_free(report, firmware)
    for base, length, kind in regions(report):
        if kind == KIND["USABLE"]:
            assert covered(free, base, length), f"usable {base:#x}+{length:#x} not free RAM"

    # Every placed extent: inside free RAM, inside regions of its kind, overlapping no other;
    # one per kernel segment, the boot information, the page tables, the GDT and the stack.
    got = check_extents(report, firmware)
    what = [e["what"] for e in got]
    for name in ("BOOT_INFO", "PAGE_TABLES", "GDT", "STACK"):
        assert what.count(EXTENT[name]) == 1, name
    k = report.one("kernel")
    segs = [e for e in got if e["what"] == EXTENT["KERNEL_SEGMENT"]]
    assert segs and min(e["phys"] for e in segs) == int(k["phys_base"], 0)
    assert min(e["virt"] for e in segs) == int(k["virt_base"], 0)

    # TSC stamps: the five stages in order, the first and last equal to the v1 fields.
    stamps = [int(v) for v in report.one("tsc_stamps")["values"].split(",")]
    assert len(stamps) == 5
    assert all(a < b for a, b in itertools.pairwise(stamps))
    tsc = report.one("tsc")
    assert stamps[0] == int(tsc["loader_start"]) and stamps[4] == int(tsc["handoff"])
    header = report.one("header")
    # The header as the protocol definition sizes it (it grows by appending, docs/protocol.md).
    assert int(header["header_size"]) == PROTOCOL.size_align("BootInfo")[0]
    assert int(header["request_version"]) == 0
