"""Boot tests of START_APS (docs/hypervisor.md, "Starting the processors"): the smp kernel
(tests/kernels/smp, the report kernel asking for the APs) under OVMF and SeaBIOS with several
-smp settings. The loader's per-CPU records must match QEMU's truth (the MADT the kernel parses
itself: `madt_here`; -smp N,maxcpus=M lists M-N processors that are not enabled), and each AP,
released through its mailbox with an argument, reports its own CR3, RSP, GDT/TSS, EFER, PAT and
MTRR default type."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIRMWARES, make_image
from report_kernel import parse_report

from hvboot.loader import artifacts
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

pytestmark = pytest.mark.boot

SMP_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-smp-kernel"
ARG_BASE = 0x5EED_0000_0000
STATE = {"BSP": 1, "PARKED": 2, "ONLINE_CAPABLE": 5, "DISABLED": 4}
# (QEMU -smp, started CPUs, listed CPUs)
SMP = {
    "1": (1, 1),
    "2": (2, 2),
    "4": (4, 4),
    "8": (8, 8),
    "64": (64, 64),
    "4,maxcpus=8": (4, 8),
}


@pytest.fixture(scope="session")
def smp_kernel(built: None) -> Path:
    assert SMP_KERNEL.is_file()
    return SMP_KERNEL


def boot_smp(image: Path, firmware: str, smp: str) -> str:
    # -smp takes more than a count here ("4,maxcpus=8"); QEMU gets the string as it is.
    machine = Machine(firmware=firmware, memory="512M", cpus=smp, cpu="max")  # type: ignore[arg-type]
    result = qemu.run(qemu.QemuSpec(image=image, machine=machine, snapshot=True), timeout=240)
    assert result.ok, f"{result.outcome}\n--- serial ---\n{result.serial[-4000:]}\n{result.stderr}"
    return result.serial


@pytest.mark.parametrize("smp", list(SMP))
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_every_cpu_started_parked_and_released(
    firmware: str, smp: str, smp_kernel: Path, tmp_path: Path
) -> None:
    started, listed = SMP[smp]
    image = make_image(tmp_path, smp_kernel)
    report = parse_report(boot_smp(image.output, firmware, smp))
    madt = report.one("madt_here")
    starts = report.all("cpu_start")
    # QEMU's truth: the MADT as the kernel parses it, in the same order as the records.
    assert int(madt["count"]) == listed == len(starts)
    assert [s["apic_id"] for s in starts] == madt["apic_ids"].split(",")
    states = [int(s["state"]) for s in starts]
    assert states[0] == STATE["BSP"]
    assert states.count(STATE["PARKED"]) == started - 1, starts
    assert all(st in (STATE["ONLINE_CAPABLE"], STATE["DISABLED"]) for st in states[started:])
    bsp = report.one("bsp_state")
    aps = {a["apic_id"]: a for a in report.all("ap")}
    assert report.one("smp")["released"] == str(started - 1)
    assert len(aps) == started - 1
    for s in starts:
        if int(s["state"]) != STATE["PARKED"]:
            continue
        a = aps[s["apic_id"]]
        bottom, size = int(s["stack_bottom"], 16), int(s["stack_size"], 16)
        assert a["me_ok"] == "1"
        assert int(a["arg"], 16) == ARG_BASE + int(s["apic_id"])
        assert a["cr3"] == bsp["cr3"], "the kernel's tables"
        assert bottom < int(a["rsp"], 16) <= bottom + size, "its own stack"
        assert int(a["tr"], 16) == 0x18 and a["gdt_limit"] == "39", "its own GDT and TSS"
        assert int(a["efer"], 16) & 0x500 == 0x500, "LMA + LME"
        assert int(a["efer"], 16) & 0x800, "NXE"
        assert a["pat"] == bsp["pat"] and a["mtrr_def"] == bsp["mtrr_def"], "the BSP's"
        assert int(a["cr0"], 16) & 0x8001_0021 == 0x8001_0021, "PG, WP, NE, PE"
        assert int(a["cr4"], 16) & 0x620 == 0x620, "PAE, OSFXSR, OSXMMEXCPT"
        assert int(a["rflags"], 16) & 0x200 == 0, "interrupts off"
        assert int(s["tsc"]) > 0
    gdts = {a["gdt"] for a in aps.values()}
    assert len(gdts) == len(aps), "one GDT per AP"


def test_without_acpi_one_cpu_and_the_tsc_against_the_pit(smp_kernel: Path, tmp_path: Path) -> None:
    """`-machine pc,acpi=off` (SeaBIOS publishes no RSDP, so no MADT and no FADT): the loader
    boots the START_APS kernel on the BSP alone (no CPU list, no local APIC, no AP started)
    and measures the TSC against PIT channel 2 (source 3), within 1 % of the kernel's own
    measurement against the PIT. OVMF does not start without ACPI (docs/testing.md)."""
    image = make_image(tmp_path, smp_kernel)
    machine = Machine(firmware="bios", memory="512M", cpus=4, cpu="max", type="pc,acpi=off")
    result = qemu.run(
        qemu.QemuSpec(image=image.output, machine=machine, snapshot=True), timeout=240
    )
    assert result.ok, f"{result.outcome}\n--- serial ---\n{result.serial[-4000:]}"
    report = parse_report(result.serial)
    tables = report.one("acpi_tables")
    assert {k: int(v, 0) for k, v in tables.items() if k != "_words"} == dict.fromkeys(
        ("madt", "fadt", "mcfg", "srat", "dmar", "ivrs"), 0
    )
    assert report.one("cpus")["count"] == "0" and int(report.one("cpus")["local_apic"], 0) == 0
    assert report.all("cpu_start") == [] and report.one("smp")["released"] == "0"
    tsc = report.one("tsc_freq")
    assert tsc["source"] == "3" and tsc["here"] == "pit", tsc
    loader_hz, here_hz = int(tsc["loader_hz"]), int(tsc["here_hz"])
    assert abs(loader_hz - here_hz) < here_hz / 100, tsc
