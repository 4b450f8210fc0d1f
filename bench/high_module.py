"""What placing a module above 4 GiB costs the BIOS loader: the same image booted on a q35 where
the module fits below 4 GiB and on one where it does not.

The image: the report kernel with a 160 MiB module (pinned, as `hvboot build` writes it). The
machines, both `-m 512M`: plain q35 (all 512 MiB below 4 GiB: the module is read straight to
its pages) and q35 with `max-ram-below-4g=128M` (128 MiB below, 384 MiB above: the module goes
above 4 GiB and every 2 MiB of it is read into the staging buffer below 4 GiB, then copied up in
long mode; docs/bios.md). Booted interleaved under SeaBIOS, timed from QEMU's start to the
kernel's first serial line; the difference is the staging's cost (and the larger direct map's).

    .venv/bin/python bench/high_module.py [--runs N]

A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

MODULE_MIB = 160
MACHINES = {"below": "q35", "above": "q35,max-ram-below-4g=128M"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    w = bl.Workdir.create()
    try:
        image = bl.hvboot_image(w, bl.module_file(w, MODULE_MIB << 20))
        trials = [bl.Trial(k, image, "bios", m, b"HVB begin") for k, m in MACHINES.items()]
        boots = bl.run_rounds(trials, args.runs, timeout=300)
        med = {k: bl.median([b.measured for b in bs]) for k, bs in boots.items()}
        extra = med["above"] - med["below"]
        print(
            f"\n{MODULE_MIB} MiB module under BIOS, median of {args.runs} runs (from QEMU's start)"
        )
        print(f"{'below 4 GiB s':>13} {'above 4 GiB s':>13} {'extra s':>8} {'extra MiB/s':>11}")
        rate = MODULE_MIB / extra if extra > 0 else float("inf")
        print(f"{med['below']:13.3f} {med['above']:13.3f} {extra:8.3f} {rate:11.1f}")
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
