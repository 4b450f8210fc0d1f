"""Boots the smp test kernel (tests/kernels/smp: START_APS) many times in a row with -smp 8
under each firmware and counts the failures by kind (issue 11: rust-osdev/bootloader#400 was a
UEFI hang that grew with -smp). Not a test (scripts/test.sh does not run it); its figure is in
docs/testing.md.

    .venv/bin/python bench/smp_soak.py [--boots 20] [--smp 8] [--firmware uefi --firmware bios]

Each boot is judged like tests/test_smp.py judges one:
- hang, reset, loader, exit (bench/verdict.py);
- wrong report: the kernel succeeded but its report is not QEMU's truth (CPU count, APIC IDs in
  MADT order, one BSP, every other CPU parked, every AP released and reporting with its
  argument).
Prints one line per boot and a summary per firmware; exits 1 if any boot failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from report_kernel import parse_report  # noqa: E402
from verdict import judge  # noqa: E402

from hvboot.config.build import BuildConfig  # noqa: E402
from hvboot.image.build import build_image  # noqa: E402
from hvboot.loader import artifacts  # noqa: E402
from hvboot.vm import qemu  # noqa: E402
from hvboot.vm.machine import Machine  # noqa: E402

SMP_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-smp-kernel"
ARG_BASE = 0x5EED_0000_0000
BSP, PARKED = 1, 2


def wrong_report(serial: str, cpus: int) -> str | None:
    """Why the report is not QEMU's truth for -smp `cpus`, or None."""
    report = parse_report(serial)
    madt = report.one("madt_here")
    starts = report.all("cpu_start")
    if int(madt["count"]) != cpus or len(starts) != cpus:
        return f"{len(starts)} records, MADT {madt['count']}, want {cpus}"
    if [s["apic_id"] for s in starts] != madt["apic_ids"].split(","):
        return "APIC IDs differ from the MADT's"
    states = [int(s["state"]) for s in starts]
    if states[0] != BSP or states.count(PARKED) != cpus - 1:
        return f"states {states}"
    aps = {a["apic_id"]: a for a in report.all("ap")}
    if report.one("smp")["released"] != str(cpus - 1) or len(aps) != cpus - 1:
        return f"{len(aps)} APs reported after release"
    for s in starts[1:]:
        a = aps.get(s["apic_id"])
        if a is None or a["me_ok"] != "1" or int(a["arg"], 16) != ARG_BASE + int(s["apic_id"]):
            return f"AP {s['apic_id']} reported wrongly: {a}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boots", type=int, default=20)
    ap.add_argument("--smp", type=int, default=8)
    ap.add_argument("--firmware", action="append", choices=("uefi", "bios"))
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    firmwares = args.firmware or ["uefi", "bios"]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="hvboot-soak-") as tmp:
        cfg = BuildConfig(kernel=SMP_KERNEL, cmdline="", modules=(), output=None, image_size=None)
        image = build_image(cfg, Path(tmp) / "disk.img").output
        for firmware in firmwares:
            machine = Machine(firmware=firmware, memory="512M", cpus=args.smp, cpu="max")
            kinds: Counter[str] = Counter()
            times = []
            for n in range(1, args.boots + 1):
                start = time.monotonic()
                spec = qemu.QemuSpec(image=image, machine=machine, snapshot=True)
                result = qemu.run(spec, timeout=args.timeout)
                times.append(time.monotonic() - start)
                kind = judge(result, lambda serial: wrong_report(serial, args.smp))
                kinds[kind.split(":")[0]] += 1
                print(f"{firmware} boot {n:2}: {kind} ({times[-1]:.1f} s)", flush=True)
            bad = args.boots - kinds["ok"]
            failed += bad
            print(
                f"{firmware}: {kinds['ok']} of {args.boots} boots with -smp {args.smp} ok; "
                f"failures: {dict(kinds - Counter(ok=kinds['ok'])) or 'none'}; "
                f"{min(times):.1f}-{max(times):.1f} s a boot",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
