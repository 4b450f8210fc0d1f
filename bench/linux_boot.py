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
    args = bl.debian_bench_args(__doc__, (VMLINUZ,))
    if args is None:
        return 2
    firmwares: list[str] = args.firmwares
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
        title = "QEMU start to Linux's first line"
        bl.print_over_floor(title, boots, firmwares, list(images), args.runs)
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
