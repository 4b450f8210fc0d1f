"""Load throughput for a 64 MiB module: hvboot vs GRUB `module2` vs a raw-read floor.

Each subject is booted with and without the 64 MiB module (QEMU start -> the kernel's first
serial line); the difference is the time the module costs, reported as MiB/s. The raw-read
floors read the same number of bytes as fast as the firmware lets a program do it, against the
plain floor: under BIOS a boot sector doing back-to-back INT 13h extended reads (127 sectors a
call) into one low buffer; under UEFI a BOOTX64.EFI doing back-to-back
EFI_BLOCK_IO_PROTOCOL.ReadBlocks calls (1 MiB each) into one 64 MiB buffer. Runs interleave
(one run of every image per round); medians of N runs. Under UEFI the clock starts when OVMF
prints "BdsDxe: starting Boot..." (benchlib.Boot.measured), which keeps OVMF's own start-up
jitter (several tenths of a second) out of the figures. "x raw" is a subject's load
time over the raw floor's on the same machine and firmware (the goal for hvboot: at most 1.5).

    .venv/bin/python bench/load_throughput.py [--runs N] [--machines q35,pc] [--firmwares bios,uefi]

A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
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
    machines = args.machines.split(",")
    firmwares = args.firmwares.split(",")
    w = bl.Workdir.create()
    try:
        mod = bl.module_file(w, MODULE_BYTES)
        sectors = MODULE_BYTES // bl.SECTOR
        # (subject, firmware) -> (image without, image with, marker)
        pairs: dict[tuple[str, str], tuple[Path, Path, bytes]] = {}
        if "bios" in firmwares:
            pairs[("raw-read", "bios")] = (
                bl.floor_bios_image(w),
                bl.floor_bios_image(w, raw_sectors=sectors),
                b"FLOOR up",
            )
        if "uefi" in firmwares:
            pairs[("raw-read", "uefi")] = (
                bl.floor_uefi_image(w),
                bl.floor_uefi_image(w, raw=mod),
                b"FLOOR up",
            )
        hv, hv_mod = bl.hvboot_image(w), bl.hvboot_image(w, mod)
        for fw in firmwares:
            pairs[("hvboot", fw)] = (hv, hv_mod, b"HVB begin")
        if bl.have_grub():
            gr, gr_mod = bl.grub_image(w), bl.grub_image(w, mod)
            for fw in firmwares:
                pairs[("grub", fw)] = (gr, gr_mod, b"MB2 up")
        else:
            print("grub-mkimage not found: GRUB skipped", file=sys.stderr)
        trials = [
            bl.Trial((m, fw, name, with_mod), img, fw, m, marker)
            for m in machines
            for (name, fw), (plain, loaded, marker) in pairs.items()
            for with_mod, img in ((False, plain), (True, loaded))
        ]
        boots = bl.run_rounds(trials, args.runs, timeout=300)
        times = {key: [b.measured for b in bs] for key, bs in boots.items()}
        print(f"\nload time of a {MODULE_BYTES >> 20} MiB module (median of {args.runs} runs; "
              f"load = median with module - median without; {bl.CLOCK_NOTE})")  # fmt: skip
        print(f"{'machine':8} {'firmware':8} {'subject':9} {'without s':>9} {'with s':>8} "
              f"{'load s':>7} {'MiB/s':>7} {'x raw':>6} {'x grub':>6}")  # fmt: skip
        for m in machines:
            for fw in firmwares:
                loads: dict[str, float] = {}
                for name in ("raw-read", "hvboot", "grub"):
                    a, b = times.get((m, fw, name, False)), times.get((m, fw, name, True))
                    if a and b:
                        loads[name] = bl.median(b) - bl.median(a)
                for name in ("raw-read", "hvboot", "grub"):
                    a, b = times.get((m, fw, name, False)), times.get((m, fw, name, True))
                    if a is None or b is None:
                        continue  # not a subject here
                    if len(a) < args.runs or len(b) < args.runs:
                        print(f"{m:8} {fw:8} {name:9} FAILED ({len(a)}/{len(b)} runs reached "
                              "the marker)")  # fmt: skip
                    if name not in loads:
                        continue
                    load = loads[name]
                    rate = (MODULE_BYTES >> 20) / load if load > 0 else float("inf")
                    ratios = [
                        f"{load / loads[ref]:6.2f}" if loads.get(ref, 0) > 0 else f"{'-':>6}"
                        for ref in ("raw-read", "grub")
                    ]
                    print(f"{m:8} {fw:8} {name:9} {bl.median(a):9.3f} {bl.median(b):8.3f} "
                          f"{load:7.3f} {rate:7.1f} {ratios[0]} {ratios[1]}")  # fmt: skip
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
