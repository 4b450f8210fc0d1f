"""Load throughput for a 64 MiB module: hvboot vs GRUB `module2` vs a raw-read floor.

Each subject is booted with and without the 64 MiB module (QEMU start -> the kernel's first
serial line); the difference is the time the module costs, reported as MiB/s. The raw-read floor
(BIOS only) is a boot sector doing back-to-back INT 13h extended reads of the same number of
sectors (127 per call) before printing, against the plain floor boot sector. Runs interleave;
medians of N runs.

    .venv/bin/python bench/load_throughput.py [--runs N] [--machines q35,pc] [--firmwares bios,uefi]

A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

MODULE_BYTES = 64 << 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--machines", default="q35,pc")
    ap.add_argument("--firmwares", default="bios,uefi")
    args = ap.parse_args()
    w = bl.Workdir.create()
    try:
        mod = bl.module_file(w, MODULE_BYTES)
        sectors = MODULE_BYTES // bl.SECTOR
        # (subject, firmware) -> (image without, image with, marker)
        pairs = {
            ("raw-read", "bios"): (
                bl.floor_bios_image(w),
                bl.floor_bios_image(w, raw_sectors=sectors),
                b"FLOOR up",
            ),
        }
        hv, hv_mod = bl.hvboot_image(w), bl.hvboot_image(w, mod)
        for fw in ("bios", "uefi"):
            pairs[("hvboot", fw)] = (hv, hv_mod, b"HVB begin")
        if bl.have_grub():
            gr, gr_mod = bl.grub_image(w), bl.grub_image(w, mod)
            for fw in ("bios", "uefi"):
                pairs[("grub", fw)] = (gr, gr_mod, b"MB2 up")
        machines = args.machines.split(",")
        firmwares = args.firmwares.split(",")
        times: dict[tuple[str, str, str, bool], list[float]] = defaultdict(list)
        for r in range(args.runs):
            for m in machines:
                for (name, fw), (plain, loaded, marker) in pairs.items():
                    if fw not in firmwares:
                        continue
                    for with_mod, img in ((False, plain), (True, loaded)):
                        t = bl.time_to_marker(img, fw, m, marker, timeout=300)
                        if t is not None:
                            times[(m, fw, name, with_mod)].append(t)
            print(f"round {r + 1}/{args.runs} done", file=sys.stderr)
        print(f"\nload time of a {MODULE_BYTES >> 20} MiB module (median of {args.runs}; "
              "with-module minus without)")  # fmt: skip
        print(f"{'machine':8} {'firmware':8} {'subject':9} {'without s':>9} {'with s':>8} "
              f"{'load s':>7} {'MiB/s':>7} {'x raw':>6}")  # fmt: skip
        for m in machines:
            raw = None
            for fw in firmwares:
                for name in ("raw-read", "hvboot", "grub"):
                    a, b = times[(m, fw, name, False)], times[(m, fw, name, True)]
                    if not a or not b:
                        continue
                    load = bl.median(b) - bl.median(a)
                    if name == "raw-read":
                        raw = load
                    rate = (MODULE_BYTES >> 20) / load if load > 0 else float("inf")
                    ratio = f"{load / raw:6.2f}" if raw and fw == "bios" else f"{'-':>6}"
                    print(f"{m:8} {fw:8} {name:9} {bl.median(a):9.3f} {bl.median(b):8.3f} "
                          f"{load:7.3f} {rate:7.1f} {ratio}")  # fmt: skip
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
