"""How long the processors take to come up (issue 11), in one run, both firmwares.

1. hvboot alone, from the first INIT to the last AP parked, read from the TSC stamps of the smp
   kernel's report (tests/kernels/smp): the BSP's `CpuStart.tsc_arrived` is the TSC of the first
   INIT, each AP's its own TSC when it parked; ticks become microseconds at the loader's
   `tsc_frequency_hz`. It includes the SDM's 10 ms INIT-to-SIPI wait and the 200 µs after the
   first SIPI.
2. Side by side with Limine 8.x (a release binary, bench/limine_image.py): the same
   Limine-protocol kernel (tests/kernels/limine with the command line `mpbench`) booted by
   Limine and by hvboot on the same CPUs, measured by the kernel the same way under both: the
   TSC at its entry (QEMU's TCG TSC counts from the start of the VM, so this is the time from
   power-on through firmware and loader, start-up of every AP included), and the TSC when the
   last AP checked in through its `goto_address`. One TSC rate converts every figure of both
   tables: the median of the loader's calibrated `tsc_frequency_hz` over the runs of table 1
   (the same host TSC under both loaders). Medians of --runs boots per cell. Not a test; its
   figures are in bench/README.md.

    .venv/bin/python bench/smp_bringup.py [--smp 1 --smp 8 ...] [--firmware uefi ...]
        [--limine PATH | --no-limine]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import limine_image  # noqa: E402
from report_kernel import parse_report  # noqa: E402

from hvboot.config.build import BuildConfig  # noqa: E402
from hvboot.image.build import build_image  # noqa: E402
from hvboot.loader import artifacts  # noqa: E402
from hvboot.vm import qemu  # noqa: E402
from hvboot.vm.machine import Machine  # noqa: E402

SMP_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-smp-kernel"
LIMINE_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-limine-kernel"
BSP, PARKED = 1, 2
MPBENCH = re.compile(r"HVB mpbench cpus=(\d+) entry_tsc=(\d+) last_in_tsc=(\d+)")


def boot(image: Path, firmware: str, smp: int) -> qemu.RunResult | str:
    """The run's result, or why it failed."""
    machine = Machine(firmware=firmware, memory="512M", cpus=smp, cpu="max")
    result = qemu.run(qemu.QemuSpec(image=image, machine=machine, snapshot=True), timeout=300)
    return result if result.ok else f"boot failed: {result.outcome}"


def bring_up(image: Path, firmware: str, smp: int, rates: list[int]) -> str:
    """One row of table 1: CPUs parked, first INIT to first / last parked in µs, TSC rate
    (also appended to `rates`)."""
    result = boot(image, firmware, smp)
    if isinstance(result, str):
        return f"| {firmware} | {smp} | {result} | | |"
    report = parse_report(result.serial)
    starts = report.all("cpu_start")
    hz = int(report.one("tsc_freq")["loader_hz"])
    rates.append(hz)
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


Stamps = tuple[int, int, int]  # CPUs, entry TSC, last-AP-in TSC


def mpbench(image: Path, firmware: str, smp: int) -> Stamps | str:
    """One boot of the limine kernel's `mpbench`: its stamps, or why there are none."""
    result = boot(image, firmware, smp)
    if isinstance(result, str):
        return result
    found = MPBENCH.search(result.serial)
    if found is None:
        return "no `HVB mpbench` line"
    cpus, entry, last = (int(g) for g in found.groups())
    return cpus, entry, last


def side_by_side(runs: dict[tuple[str, int, str], list[Stamps | str]], firmwares: list[str],
                 smps: list[int], loaders: list[str], hz: float) -> None:  # fmt: skip
    """Table 2: per firmware, -smp and loader, the medians of the runs, at one TSC rate `hz`,
    so the loaders' figures differ only by their stamps."""
    print(f"TSC rate: {hz / 1e9:.3f} GHz (median of the loader's calibrations in table 1)")
    print(
        "| firmware | -smp | loader | CPUs | kernel entry after power-on, ms "
        "| growth over -smp 1, ms | entry to last AP in, ms | runs |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for fw in firmwares:
        base: dict[str, float] = {}
        for smp in smps:
            for loader in loaders:
                cell = runs[(fw, smp, loader)]
                ok = [r for r in cell if not isinstance(r, str)]
                if not ok:
                    print(f"| {fw} | {smp} | {loader} | {cell[0]} | | | | 0 |")
                    continue
                entry = statistics.median(r[1] for r in ok) * 1000 / hz
                if smp == 1:
                    base[loader] = entry
                grew = f"{entry - base[loader]:.0f}" if loader in base and smp != 1 else "-"
                spans = [r[2] - r[1] for r in ok if r[2]]
                release = f"{statistics.median(spans) * 1000 / hz:.1f}" if spans else "-"
                print(
                    f"| {fw} | {smp} | {loader} | {ok[0][0]} | {entry:.0f} | {grew} | {release} "
                    f"| {len(ok)} of {len(cell)} |"
                )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smp", type=int, action="append")
    ap.add_argument("--firmware", action="append", choices=("uefi", "bios"))
    ap.add_argument(
        "--limine",
        type=Path,
        help="a git repository with Limine's v8.x-binary branch, or a directory with its "
        f"files (default: {limine_image.MIRROR}; to get one: {limine_image.HOW_TO_GET})",
    )
    ap.add_argument("--runs", type=int, default=3, help="boots per cell of table 2")
    ap.add_argument("--no-limine", action="store_true", help="table 1 only")
    args = ap.parse_args()
    firmwares = args.firmware or ["bios", "uefi"]
    smps = args.smp or [1, 8, 64]
    with tempfile.TemporaryDirectory(prefix="hvboot-bringup-") as tmp:
        cfg = BuildConfig(kernel=SMP_KERNEL, cmdline="", modules=(), output=None, image_size=None)
        image = build_image(cfg, Path(tmp) / "disk.img").output
        print("| firmware | -smp | CPUs | first INIT to first / last AP parked, µs | TSC GHz |")
        print("|---|---:|---|---:|---:|")
        rates: list[int] = []
        for firmware in firmwares:
            for smp in smps:
                print(bring_up(image, firmware, smp, rates), flush=True)
        if args.no_limine:
            return 0
        cache = limine_image.release(args.limine)
        bench = BuildConfig(
            kernel=LIMINE_KERNEL, cmdline="mpbench", modules=(), output=None, image_size=None
        )
        images = {
            "hvboot": build_image(bench, Path(tmp) / "hvboot-mp.img").output,
            "limine": limine_image.image(
                cache, LIMINE_KERNEL, "mpbench", Path(tmp) / "limine-mp.img"
            ),
        }
        print(f"\nhvboot against {limine_image.version(cache)}, the limine kernel's `mpbench`")
        runs: dict[tuple[str, int, str], list[Stamps | str]] = {}
        # Rounds over every cell, so that a stretch of host load falls on all of them alike.
        for _ in range(args.runs):
            for fw in firmwares:
                for smp in sorted(smps):
                    for loader, image in images.items():
                        got = mpbench(image, fw, smp)
                        runs.setdefault((fw, smp, loader), []).append(got)
                        print(f"  {fw} -smp {smp} {loader}: {got}", file=sys.stderr, flush=True)
        if not rates:
            print("no TSC rate: every boot of table 1 failed", file=sys.stderr)
            return 1
        side_by_side(runs, firmwares, sorted(smps), list(images), statistics.median(rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
