"""Boot tests of the sample hypervisor (examples/hypervisor) under QEMU's TCG.

- `-cpu max` (AMD, SVM with nested paging), `-smp 1` and `-smp 4`: the hypervisor starts every
  AP the loader parked (START_APS) and runs its 64-bit guest with VMRUN on every CPU, each in its
  own share of the loader's guest reservation; every guest computes fib(90), the BSP prints
  `smp: N of N CPUs online` and `cpu K: guest result: R` for each CPU, and every R must be right.
- `-cpu qemu64` (SVM without NPT): it reports that and does not run the guest.
- an Intel model (`Skylake-Client`; TCG cannot emulate VMX): it reports VMX absent.
- the CPU list it reads from the loader (the ACPI MADT) matches QEMU's CPUs.

Each boot must end with the kernel's own success exit (QEMU status 33).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import FIRMWARES

from hvboot.config.build import BuildConfig
from hvboot.image.build import build_image
from hvboot.loader import artifacts
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

pytestmark = pytest.mark.boot

BOOT_TIMEOUT = 120.0
FIB_N = 90
INTEL_MODEL = "Skylake-Client"


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@pytest.fixture(scope="module")
def hypervisor_image(built: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    subprocess.run(
        ["cargo", "build", "--release", "--quiet"], cwd=artifacts.HYPERVISOR_CRATE, check=True
    )
    kernel = artifacts.HYPERVISOR_ELF
    assert kernel.is_file()
    cfg = BuildConfig(kernel=kernel, cmdline="", modules=(), output=None, image_size=None)
    return build_image(cfg, tmp_path_factory.mktemp("hv") / "disk.img").output


def _boot(image: Path, firmware: str, cpu: str, cpus: int = 1) -> list[str]:
    machine = Machine(firmware=firmware, cpu=cpu, cpus=cpus)
    spec = qemu.QemuSpec(image=image, machine=machine, snapshot=True)
    result = qemu.run(spec, timeout=BOOT_TIMEOUT)
    detail = f"{result.outcome}\n--- serial ---\n{result.serial[-6000:]}\n{result.stderr[-2000:]}"
    assert result.ok, detail
    lines = result.serial.replace("\r", "").splitlines()
    assert "hvboot-sample-hypervisor: OK" in lines, detail
    return lines


def _summary(lines: list[str], prefix: str) -> dict[str, str]:
    """The key=value fields of the one line that starts with `prefix`."""
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, f"expected one {prefix!r} line, got {found}"
    return dict(field.split("=", 1) for field in found[0][len(prefix) :].split())


@pytest.mark.parametrize("firmware", FIRMWARES)
@pytest.mark.parametrize("cpus", [1, 4])
def test_guest_runs_under_svm_with_nested_paging(
    firmware: str, cpus: int, hypervisor_image: Path
) -> None:
    lines = _boot(hypervisor_image, firmware, "max", cpus)

    virt = _summary(lines, "virt: summary ")
    assert virt["vendor"] == "AuthenticAMD"
    assert (virt["svm"], virt["npt"], virt["vmx"]) == ("1", "1", "0")

    # Every CPU ran its guest: one result line per CPU, BSP (CPU 0) included, each fib(90).
    assert f"smp: {cpus} of {cpus} CPUs online" in lines
    results = [line for line in lines if line.startswith("cpu ")]
    assert results == [f"cpu {k}: guest result: {_fib(FIB_N)}" for k in range(cpus)]
    # The BSP tells its guest's story: a nested page fault the host resolved, then the result
    # through VMMCALL and HLT.
    assert any(line.startswith("svm: #VMEXIT NPF ") for line in lines)
    assert any(line.startswith("svm: #VMEXIT HLT ") for line in lines)
    assert f"guest check: ok (fib({FIB_N}) = {_fib(FIB_N)})" in lines
    # The guests' memory is the loader's guest reservation, asked for in the request header.
    assert any(
        line.startswith(f"smp: {cpus} shares of ") and "the loader's guest reservation" in line
        for line in lines
    ), [line for line in lines if line.startswith("smp:")]

    # The CPU list: QEMU gives CPUs APIC IDs 0..n-1 and boots on CPU 0.
    cpu_list = _summary(lines, "cpus: summary ")
    assert int(cpu_list["count"]) == cpus
    assert int(cpu_list["usable"]) == cpus
    assert cpu_list["apic_ids"] == ",".join(str(i) for i in range(cpus))
    assert cpu_list["bsp"] == "0"
    assert sum(" BSP" in line for line in lines if line.startswith("cpus:   [")) == 1


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_svm_without_nested_paging_is_reported(firmware: str, hypervisor_image: Path) -> None:
    lines = _boot(hypervisor_image, firmware, "qemu64")
    virt = _summary(lines, "virt: summary ")
    assert (virt["svm"], virt["npt"]) == ("1", "0")
    assert any("SVM without nested paging" in line for line in lines)
    assert not any(line.startswith("cpu ") for line in lines)
    assert not any(line.startswith("svm: VMRUN") for line in lines)


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_intel_model_reports_vmx_absent(firmware: str, hypervisor_image: Path) -> None:
    lines = _boot(hypervisor_image, firmware, INTEL_MODEL)
    virt = _summary(lines, "virt: summary ")
    assert virt["vendor"] == "GenuineIntel"
    assert (virt["vmx"], virt["svm"], virt["npt"], virt["ept"]) == ("0", "0", "0", "0")
    assert "virt: Intel VMX:     absent" in lines
    assert not any(line.startswith("cpu ") for line in lines)
