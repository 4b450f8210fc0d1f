"""Linux boot time: QEMU's start to Linux's first line, under SeaBIOS and OVMF, on q35.

Subjects, run interleaved (one run of each per round, so all see the same machine load), each
booting Debian 12's kernel (tests/fetch_debian.sh) with the tests' busybox initramfs
(tests/linux_initramfs.py) and `console=ttyS0 earlyprintk=ttyS0`:
  floor   QEMU's own direct boot: -kernel / -initrd / -append (SeaBIOS's linuxboot option ROM;
          OVMF's QEMU kernel loader, through the kernel's EFI stub)
  hvboot  `hvboot build` of the kernel with the initramfs as its module
  grub    GRUB (`linux` / `initrd`) in the same GPT layout (skipped without grub-mkimage)

    .venv/bin/python bench/linux_boot.py [--runs N] [--firmwares bios,uefi]

The figure is from QEMU's start to "Linux version" on serial (every subject, both firmwares:
the floor has no StartImage line to clock from). Prints medians of N runs, the minimum, the
overhead over the floor and that overhead over GRUB's (the issue's goal: at most 0.5). A
benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import benchlib as bl
from linux_initramfs import initramfs_parts

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.build import build_image
from hvboot.image.fat import FatFile

ROOT = Path(__file__).resolve().parent.parent
VMLINUZ = ROOT / "tests" / ".cache" / "debian" / "linux" / "vmlinuz"
CMDLINE = "console=ttyS0 earlyprintk=ttyS0 panic=-1"
MARKER = b"Linux version"
SUBJECTS = ("floor", "hvboot", "grub")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--firmwares", default="bios,uefi")
    args = ap.parse_args()
    firmwares = args.firmwares.split(",")
    if not VMLINUZ.is_file():
        print(f"{VMLINUZ}: missing; run tests/fetch_debian.sh", file=sys.stderr)
        return 2
    w = bl.Workdir.create()
    try:
        initrd = w.path / "initrd.cpio"
        initrd.write_bytes(b"".join(initramfs_parts()))
        module = ModuleSpec(path=initrd, name="initrd", cmdline="")
        cfg = BuildConfig(VMLINUZ, CMDLINE, (module,), output=None, image_size=None)
        hv = build_image(cfg, w.path / "hvboot-linux.img").output
        direct = ("-kernel", str(VMLINUZ), "-initrd", str(initrd), "-append", CMDLINE)
        images: dict[str, tuple[Path, tuple[str, ...]]] = {
            "floor": (hv, direct),
            "hvboot": (hv, ()),
        }
        if bl.have_grub():
            files = [
                FatFile("vmlinuz", VMLINUZ.read_bytes()),
                FatFile("initrd", initrd.read_bytes()),
            ]
            lines = [f"linux /vmlinuz {CMDLINE}", "initrd /initrd"]
            images["grub"] = (bl.grub_disk(w, lines, files, "linux", "grub-linux.img"), ())
        else:
            print("grub-mkimage not found: GRUB skipped")
        trials = [
            bl.Trial((fw, name), img, fw, "q35", MARKER, qemu_args, from_qemu_start=True)
            for fw in firmwares
            for name, (img, qemu_args) in images.items()
        ]
        boots = bl.run_rounds(trials, args.runs, timeout=600.0)
        print(f"\nQEMU start to Linux's first line (median of {args.runs}, seconds)")
        print(f"{'firmware':8} {'subject':8} {'median':>7} {'min':>7} {'over floor':>10} "
              f"{'x grub over':>11}")  # fmt: skip
        for fw in firmwares:
            med = {n: bl.median([b.measured for b in boots[(fw, n)]]) for n in images}
            floor, grub_over = med["floor"], med.get("grub", float("nan")) - med["floor"]
            for name in images:
                runs = boots[(fw, name)]
                if len(runs) < args.runs:
                    print(f"{fw:8} {name:8} FAILED ({len(runs)}/{args.runs} reached the marker)")
                if not runs:
                    continue
                over = med[name] - floor
                ratio = f"{over / grub_over:11.2f}" if grub_over > 0 else f"{'-':>11}"
                low = min(b.measured for b in runs)
                print(f"{fw:8} {name:8} {med[name]:7.2f} {low:7.2f} {over:10.2f} {ratio}")
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
