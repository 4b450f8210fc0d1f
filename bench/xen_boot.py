"""Xen boot time: to Xen's banner, under SeaBIOS and OVMF, on q35.

Subjects, run interleaved (one run of each per round, so all see the same machine load), each
booting Debian 12's Xen 4.17 (tests/fetch_debian.sh) with Debian's Linux as the dom0 kernel and
the tests' busybox initramfs (tests/linux_initramfs.py) as dom0's initrd, so every subject reads
the same ~10 MiB of modules before Xen runs:
  floor   Xen with no bootloader in between. BIOS: QEMU's own Multiboot (1) loader, -kernel of
          the decompressed xen-4.17-amd64 (an ELF32 with a Multiboot 1 header as well) and
          -initrd for the modules (SeaBIOS's multiboot option ROM); QEMU cannot -kernel a
          Multiboot2 image. UEFI: OVMF starting Debian's own xen-4.17-amd64.efi as BOOTX64.EFI,
          which reads BOOTX64.cfg and the modules itself (QEMU's -kernel under OVMF takes only
          bzImages and PE images that are not Xen's).
  hvboot  `hvboot build` of xen-4.17-amd64.gz with both modules
  unpinned  the same image with the BLAKE3 pins taken out of hvboot.cfg (docs/trust.md): the
          loader reads the files without checking them, as GRUB and the floors do
  grub    GRUB (`multiboot2` / `module2`) in the same GPT layout (skipped without grub-mkimage)

    .venv/bin/python bench/xen_boot.py [--runs N] [--firmwares bios,uefi]

The figure is the time to "(XEN) Xen version" on serial: under BIOS from QEMU's start, under
UEFI from OVMF's StartImage line (benchlib.Boot.measured), which every UEFI subject passes (all
three boot a BOOTX64.EFI from the disk) and which keeps OVMF's own start-up jitter (several
tenths of a second) out; OVMF has read that BOOTX64.EFI by then, so Xen's 2.8 MB xen.efi is
not on the floor's clock while the loaders' smaller PE files are not on theirs. Prints medians
of N runs, the minimum, the overhead over the floor and that overhead over GRUB's (the issue's
goal: at most 0.5). A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import benchlib as bl
from linux_initramfs import initramfs_parts

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.build import build_image
from hvboot.image.disk import write_disk_image
from hvboot.image.fat import FatFile

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT / "tests" / ".cache" / "debian"
XEN_GZ = DEBIAN / "xen" / "boot" / "xen-4.17-amd64.gz"
XEN_EFI = DEBIAN / "xen" / "boot" / "xen-4.17-amd64.efi"
VMLINUZ = DEBIAN / "linux" / "vmlinuz"
XEN_CMDLINE = "console=com1 com1=115200,8n1"
DOM0_CMDLINE = "console=hvc0"
MARKER = b"(XEN) Xen version"


def xen_efi_image(w: bl.Workdir, initrd: Path) -> Path:
    """Xen's own EFI loader as the ESP's BOOTX64.EFI; it reads <its name>.cfg next to it
    (Xen's docs/misc/efi.pandoc: [global] default=, a section's options/kernel/ramdisk)."""
    cfg = (
        "[global]\ndefault=xen\n\n[xen]\n"
        f"options={XEN_CMDLINE}\nkernel=vmlinuz {DOM0_CMDLINE}\nramdisk=initrd\n"
    )
    img = w.path / "floor-xen-efi.img"
    files = [
        FatFile("EFI/BOOT/BOOTX64.EFI", XEN_EFI.read_bytes()),
        FatFile("EFI/BOOT/BOOTX64.cfg", cfg.encode()),
        FatFile("EFI/BOOT/vmlinuz", VMLINUZ.read_bytes()),
        FatFile("EFI/BOOT/initrd", initrd.read_bytes()),
    ]
    write_disk_image(img, files)
    return img


def main() -> int:
    args = bl.debian_bench_args(__doc__, (XEN_GZ, XEN_EFI, VMLINUZ))
    if args is None:
        return 2
    firmwares: list[str] = args.firmwares
    w = bl.Workdir.create()
    try:
        initrd = w.path / "initrd"
        initrd.write_bytes(b"".join(initramfs_parts()))
        xen = w.path / "xen"
        xen.write_bytes(gzip.decompress(XEN_GZ.read_bytes()))
        modules = (
            ModuleSpec(path=VMLINUZ, name="vmlinuz", cmdline=DOM0_CMDLINE),
            ModuleSpec(path=initrd, name="initrd", cmdline=""),
        )
        cfg = BuildConfig(XEN_GZ, XEN_CMDLINE, modules, output=None, image_size=None)
        hv = build_image(cfg, w.path / "hvboot-xen.img").output
        unpinned = w.path / "hvboot-xen-unpinned.img"
        bl.drop_pins(build_image(cfg, unpinned), w)
        # QEMU's -initrd for a Multiboot kernel: comma-separated modules, each "path string".
        direct = ("-kernel", str(xen), "-append", XEN_CMDLINE,
                  "-initrd", f"{VMLINUZ} {DOM0_CMDLINE},{initrd}")  # fmt: skip
        floors = {"bios": (hv, direct), "uefi": (xen_efi_image(w, initrd), ())}
        grub = None
        if bl.have_grub():
            files = [
                FatFile("xen", xen.read_bytes()),
                FatFile("vmlinuz", VMLINUZ.read_bytes()),
                FatFile("initrd", initrd.read_bytes()),
            ]
            lines = [
                f"multiboot2 /xen {XEN_CMDLINE}",
                f"module2 /vmlinuz {DOM0_CMDLINE}",
                "module2 /initrd",
            ]
            grub = bl.grub_disk(w, lines, files, "multiboot2", "grub-xen.img")
        else:
            print("grub-mkimage not found: GRUB skipped")
        subjects = ["floor", "hvboot", "unpinned"] + (["grub"] if grub else [])
        trials = []
        for fw in firmwares:
            images = {"floor": floors[fw], "hvboot": (hv, ()), "unpinned": (unpinned, ())}
            if grub:
                images["grub"] = (grub, ())
            trials += [
                bl.Trial((fw, name), img, fw, "q35", MARKER, qemu_args)
                for name, (img, qemu_args) in images.items()
            ]
        boots = bl.run_rounds(trials, args.runs, timeout=300.0)
        title = f"To Xen's banner ({bl.CLOCK_NOTE})"
        bl.print_over_floor(title, boots, firmwares, subjects, args.runs)
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
