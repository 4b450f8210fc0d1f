"""Boot time: to the kernel's first serial line, under SeaBIOS and OVMF, on q35 and pc.

Subjects, run interleaved (one run of each per round, so all see the same machine load):
  floor   a 512-byte boot sector (BIOS) / a minimal BOOTX64.EFI (UEFI) printing one line
  hvboot  `hvboot build` of the report kernel (first line: "HVB begin")
  grub    GRUB booting an equally small Multiboot2 kernel (skipped without grub-mkimage)

    .venv/bin/python bench/boot_time.py [--runs N] [--machines q35,pc] [--firmwares bios,uefi]

The compared figure ("boot s") runs from QEMU's start under BIOS and, under UEFI, from OVMF's
"BdsDxe: starting Boot..." line (StartImage of BOOTX64.EFI; benchlib.Boot.measured), which
keeps OVMF's own start-up jitter (several tenths of a second) out so the loaders' overhead
shows; "qemu s" is the same boots from QEMU's start. Prints medians of N runs, the minimum,
the overhead over the floor (median - the floor's median) and that overhead over GRUB's (the
goal for hvboot: at most 0.5). A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

SUBJECTS = ("floor", "hvboot", "grub")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--machines", default="q35,pc")
    ap.add_argument("--firmwares", default="bios,uefi")
    args = ap.parse_args()
    machines = args.machines.split(",")
    firmwares = args.firmwares.split(",")
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
        trials = [
            bl.Trial((m, fw, name), img, fw, m, marker)
            for m in machines
            for fw in firmwares
            for (name, f), (img, marker) in images.items()
            if f == fw
        ]
        boots = bl.run_rounds(trials, args.runs)
        print(f"\nboot time to the kernel's first serial line (median of {args.runs}; "
              f"boot s: {bl.CLOCK_NOTE}; qemu s: from QEMU's start)")  # fmt: skip
        print(f"{'machine':8} {'firmware':8} {'subject':8} {'qemu s':>7} {'boot s':>7} "
              f"{'min s':>7} {'over floor':>10} {'x grub over':>11}")  # fmt: skip
        for m in machines:
            for fw in firmwares:
                med = {
                    name: bl.median([b.measured for b in boots[(m, fw, name)]])
                    for name in SUBJECTS
                    if boots.get((m, fw, name))
                }
                floor = med.get("floor", float("nan"))
                grub_over = med.get("grub", float("nan")) - floor
                for name in SUBJECTS:
                    runs = boots.get((m, fw, name))
                    if runs is None:
                        continue  # not a subject here
                    if len(runs) < args.runs:
                        print(f"{m:8} {fw:8} {name:8} FAILED ({len(runs)}/{args.runs} runs "
                              "reached the marker)")  # fmt: skip
                    if not runs:
                        continue
                    qemu_med = bl.median([b.marker for b in runs])
                    low = min(b.measured for b in runs)
                    over = med[name] - floor
                    ratio = f"{over / grub_over:11.2f}" if grub_over > 0 else f"{'-':>11}"
                    print(f"{m:8} {fw:8} {name:8} {qemu_med:7.3f} {med[name]:7.3f} {low:7.3f} "
                          f"{over:10.3f} {ratio}")  # fmt: skip
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
