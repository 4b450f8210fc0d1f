"""What the file digest costs: a 64 MiB module read with and without its BLAKE3 check.

Three hvboot images of the report kernel, booted interleaved under each firmware (QEMU start ->
the kernel's first serial line; under UEFI from OVMF's StartImage line, benchlib.Boot.measured):
no module; the 64 MiB module with its pin removed from hvboot.cfg (mtools rewrites the config,
as `hvboot build` always pins); the module pinned as `hvboot build` writes it. read = unpinned -
no module; check = pinned - unpinned; the goal (issue 10, "No wrong bytes, ever") is check <=
30 % of read.

    .venv/bin/python bench/digest_cost.py [--runs N] [--machine q35] [--firmwares bios,uefi]

A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.build import build_image

MODULE_BYTES = 64 << 20


def unpinned(w: bl.Workdir, module: Path) -> Path:
    """An image with `module` whose hvboot.cfg has no `module-blake3` line."""
    out = w.path / "hvboot-mod-unpinned.img"
    mods = (ModuleSpec(module, "big.bin", ""),)
    cfg = BuildConfig(
        kernel=bl.REPORT_KERNEL, cmdline="", modules=mods, output=None, image_size=None
    )
    bl.drop_pins(build_image(cfg, out), w, prefix="module")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--machine", default="q35")
    ap.add_argument("--firmwares", default="bios,uefi")
    args = ap.parse_args()
    firmwares = args.firmwares.split(",")
    w = bl.Workdir.create()
    try:
        mod = bl.module_file(w, MODULE_BYTES)
        images = {
            "none": bl.hvboot_image(w),
            "unpinned": unpinned(w, mod),
            "pinned": bl.hvboot_image(w, mod),
        }
        trials = [
            bl.Trial((fw, name), img, fw, args.machine, b"HVB begin")
            for fw in firmwares
            for name, img in images.items()
        ]
        boots = bl.run_rounds(trials, args.runs, timeout=300)
        med = {key: bl.median([b.measured for b in bs]) for key, bs in boots.items()}
        print(f"\nBLAKE3 check of a {MODULE_BYTES >> 20} MiB module, {args.machine} "
              f"(median of {args.runs} runs; {bl.CLOCK_NOTE})")  # fmt: skip
        print(f"{'firmware':8} {'none s':>7} {'unpinned s':>10} {'pinned s':>9} {'read s':>7} "
              f"{'check s':>8} {'check/read':>10} {'MiB/s':>7}")  # fmt: skip
        for fw in firmwares:
            n, u, p = (med[(fw, k)] for k in ("none", "unpinned", "pinned"))
            read, check = u - n, p - u
            rate = (MODULE_BYTES >> 20) / check if check > 0 else float("inf")
            print(f"{fw:8} {n:7.3f} {u:10.3f} {p:9.3f} {read:7.3f} {check:8.3f} "
                  f"{check / read:10.0%} {rate:7.1f}")  # fmt: skip
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
