"""Boot time: QEMU start -> the kernel's first serial line, under SeaBIOS and OVMF, on q35 and pc.

Subjects, run interleaved (one run of each per round, so all see the same machine load):
  floor   a 512-byte boot sector (BIOS) / a minimal BOOTX64.EFI (UEFI) printing one line
  hvboot  `hvboot build` of the report kernel (first line: "HVB begin")
  grub    GRUB booting an equally small Multiboot2 kernel (skipped without grub-mkimage)

    .venv/bin/python bench/boot_time.py [--runs N] [--machines q35,pc] [--firmwares bios,uefi]

Prints the median of N runs per subject and the ratios to the floor and to GRUB. A benchmark,
not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--machines", default="q35,pc")
    ap.add_argument("--firmwares", default="bios,uefi")
    args = ap.parse_args()
    w = bl.Workdir.create()
    try:
        images = {
            ("floor", "bios"): (bl.floor_bios_image(w), b"FLOOR up"),
            ("floor", "uefi"): (bl.floor_uefi_image(w), b"FLOOR up"),
        }
        hv = bl.hvboot_image(w)
        images[("hvboot", "bios")] = images[("hvboot", "uefi")] = (hv, b"HVB begin")
        if bl.have_grub():
            gr = bl.grub_image(w)
            images[("grub", "bios")] = images[("grub", "uefi")] = (gr, b"MB2 up")
        else:
            print("grub-mkimage not found: GRUB skipped (apt-get install grub-pc-bin "
                  "grub-efi-amd64-bin grub-common)")  # fmt: skip
        machines = args.machines.split(",")
        firmwares = args.firmwares.split(",")
        times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        failed: set[tuple[str, str, str]] = set()
        for r in range(args.runs):
            for m in machines:
                for fw in firmwares:
                    for (name, f), (img, marker) in images.items():
                        if f != fw:
                            continue
                        t = bl.time_to_marker(img, fw, m, marker)
                        if t is None:
                            failed.add((m, fw, name))
                        else:
                            times[(m, fw, name)].append(t)
            print(f"round {r + 1}/{args.runs} done", file=sys.stderr)
        print(f"\nboot time, QEMU start -> kernel's first serial line (median of {args.runs})")
        print(f"{'machine':8} {'firmware':8} {'subject':8} {'median s':>9} {'min s':>7} "
              f"{'x floor':>8} {'x grub':>7}")  # fmt: skip
        for m in machines:
            for fw in firmwares:
                floor = bl.median(times[(m, fw, "floor")])
                grub = bl.median(times[(m, fw, "grub")])
                for name in ("floor", "hvboot", "grub"):
                    key = (m, fw, name)
                    if key in failed and not times[key]:
                        print(f"{m:8} {fw:8} {name:8} {'FAILED':>9}")
                        continue
                    if not times[key]:
                        continue
                    med = bl.median(times[key])
                    print(f"{m:8} {fw:8} {name:8} {med:9.3f} {min(times[key]):7.3f} "
                          f"{med / floor:8.2f} {med / grub:7.2f}")  # fmt: skip
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
