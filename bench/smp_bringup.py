"""How long the loader takes to bring up the processors (issue 11): from the first INIT to the
last AP parked, read from the TSC stamps of the smp kernel's report (tests/kernels/smp). The
BSP's `CpuStart.tsc_arrived` is the TSC of the first INIT, each AP's its own TSC when it parked;
ticks become microseconds at the loader's `tsc_frequency_hz`. The time includes the SDM's
10 ms INIT-to-SIPI wait and the 200 µs after the first SIPI. Not a test; its figures are in
bench/README.md.

    .venv/bin/python bench/smp_bringup.py [--smp 1 --smp 2 ...] [--firmware uefi ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from report_kernel import parse_report  # noqa: E402

from hvboot.config.build import BuildConfig  # noqa: E402
from hvboot.image.build import build_image  # noqa: E402
from hvboot.loader import artifacts  # noqa: E402
from hvboot.vm import qemu  # noqa: E402
from hvboot.vm.machine import Machine  # noqa: E402

SMP_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-smp-kernel"
BSP, PARKED = 1, 2


def bring_up(image: Path, firmware: str, smp: int) -> str:
    """One table row: CPUs parked, first INIT to last parked in µs, TSC rate."""
    machine = Machine(firmware=firmware, memory="512M", cpus=smp, cpu="max")
    result = qemu.run(qemu.QemuSpec(image=image, machine=machine, snapshot=True), timeout=300)
    if not result.ok:
        return f"| {firmware} | {smp} | boot failed: {result.outcome} | | |"
    report = parse_report(result.serial)
    starts = report.all("cpu_start")
    hz = int(report.one("tsc_freq")["loader_hz"])
    bsp = next(int(s["tsc"]) for s in starts if int(s["state"]) == BSP)
    parked = [int(s["tsc"]) for s in starts if int(s["state"]) == PARKED]
    if not parked:
        return f"| {firmware} | {smp} | 0 APs (nothing to start) | - | {hz / 1e9:.3f} |"
    span_us = (max(parked) - bsp) * 1_000_000 / hz
    first_us = (min(parked) - bsp) * 1_000_000 / hz
    return (
        f"| {firmware} | {smp} | {len(parked)} APs parked | {first_us:.0f} / {span_us:.0f} "
        f"| {hz / 1e9:.3f} |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smp", type=int, action="append")
    ap.add_argument("--firmware", action="append", choices=("uefi", "bios"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hvboot-bringup-") as tmp:
        cfg = BuildConfig(kernel=SMP_KERNEL, cmdline="", modules=(), output=None, image_size=None)
        image = build_image(cfg, Path(tmp) / "disk.img").output
        print("| firmware | -smp | CPUs | first INIT to first / last AP parked, µs | TSC GHz |")
        print("|---|---:|---|---:|---:|")
        for firmware in args.firmware or ["bios", "uefi"]:
            for smp in args.smp or [1, 2, 8, 64]:
                print(bring_up(image, firmware, smp), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
