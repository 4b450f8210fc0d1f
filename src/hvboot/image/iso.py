"""`hvboot build --iso`: one hybrid ISO that boots as a CD and as a disk, under BIOS and UEFI.

Laid out by xorriso (Debian's `xorriso`, run as `xorriso -as mkisofs`), which is what GRUB's
grub-mkrescue and Debian's own installer images use: it writes ISO 9660 with El Torito, the
hybrid MBR and GPT, and patches boot code with where things landed, all of which pycdlib either
lacks (GPT) or does only for SYSLINUX's MBR (docs/image-format.md, "ISO").

    El Torito entry 1, BIOS, no emulation: /boot/hvboot-bios.img = stage 1 (its first 2048
      bytes; -boot-info-table writes the image's LBA into bytes 8..63) + stage 2. The BIOS
      loads the first 2048 bytes; stage 1 reads stage 2 from the CD in 2048-byte sectors.
    El Torito entry 2, UEFI: the ESP image (FAT16/32, the same files as a disk image's ESP),
      appended after the ISO 9660 tree as GPT partition 2.
    System area: stage 1 as the MBR's boot code (--grub2-mbr: xorriso writes the boot image's
      512-byte LBA + 4, i.e. stage 2, into its patch block at 0x1B0), a protective MBR and a GPT
      whose ESP is that same appended partition. Written to a disk or USB stick, BIOS runs stage
      1 from the MBR and UEFI finds the ESP through the GPT, as on an `hvboot build` disk image.

The BIOS loader finds the ESP through the GPT in both cases (its reads of 512-byte sectors go
through whole CD sectors on a CD; docs/bios.md, "From a CD").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hvboot.config.build import BuildConfig
from hvboot.errors import HvbootError
from hvboot.image.build import boot_files
from hvboot.image.fat import build_fat, fat_geometry, fat_size_needed
from hvboot.image.output import image_target
from hvboot.loader import bios_stages as bios_boot
from hvboot.units import SECTOR_SIZE

CD_SECTOR = 2048
BIOS_IMAGE = "boot/hvboot-bios.img"
CATALOG = "boot/boot.cat"
ESP_IMAGE = "boot/esp.img"
# xorriso takes SOURCE_DATE_EPOCH for the volume's dates and the GPT GUIDs it derives from them;
# the files get it as their mtime: the same inputs give the same ISO (2020-01-01, the FAT
# writer's timestamp).
_EPOCH = "1577836800"


@dataclass(frozen=True)
class IsoResult:
    output: Path
    size: int
    esp_bytes: int
    fat_type: str


def is_iso(path: Path) -> bool:
    """Whether `path` holds an ISO 9660 volume (ECMA-119 §8.1: "CD001" in the volume
    descriptor at byte 32768 + 1)."""
    try:
        with path.open("rb") as f:
            f.seek(16 * CD_SECTOR + 1)
            return f.read(5) == b"CD001"
    except OSError:
        return False


def xorriso() -> str:
    found = shutil.which("xorriso")
    if found is None:
        raise HvbootError(
            "xorriso", "not found: --iso needs Debian's xorriso (scripts/setup.sh installs it)"
        )
    return found


def bios_boot_image(stage1: bytes, stage2: bytes) -> bytes:
    """The El Torito BIOS image: stage 1 patched with stage 2's length, padded to one CD
    sector, then stage 2 (its LBA is filled in by xorriso: boot-info table and MBR)."""
    sectors = bios_boot.stage2_sectors(stage2)
    patched = bios_boot.patch_stage1(stage1, stage2_lba=0, sectors=sectors)
    return patched.ljust(CD_SECTOR, b"\0") + stage2


def build_iso(cfg: BuildConfig, output: Path) -> IsoResult:
    """Write the hybrid ISO for `cfg` to `output`."""
    boot = boot_files(cfg)
    image_target(output)  # refuse a place an image cannot go before writing
    tool = xorriso()
    image = bios_boot_image(boot.bios.stage1, boot.bios.stage2)
    # FAT16 where it fits: an El Torito image is counted in 512-byte units up to 0xFFFF
    # (El Torito 1.0 §2.2, "Sector Count"); firmware reads a larger one to the end of the medium.
    esp_bytes = fat_size_needed(boot.files, fat32=False)
    volume_id = int.from_bytes(boot.digest[:4], "little")
    esp = build_fat(boot.files, esp_bytes, volume_id=volume_id)
    with tempfile.TemporaryDirectory(prefix="hvboot-iso-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "root"
        (root / "boot").mkdir(parents=True)
        (root / BIOS_IMAGE).write_bytes(image)
        mbr = tmp / "mbr.bin"
        mbr.write_bytes(image[: bios_boot.STAGE1_SIZE].ljust(SECTOR_SIZE, b"\0"))
        (root / ESP_IMAGE).write_bytes(esp)
        for path in (root, root / "boot", root / BIOS_IMAGE, root / ESP_IMAGE):
            os.utime(path, (int(_EPOCH), int(_EPOCH)))
        partial = output.with_name(output.name + ".tmp")
        cmd = [
            tool, "-as", "mkisofs", "-o", str(partial), "-V", "HVBOOT", "-R",
            "--grub2-mbr", str(mbr),
            "-b", BIOS_IMAGE, "-c", CATALOG,
            "-no-emul-boot", "-boot-load-size", str(CD_SECTOR // SECTOR_SIZE), "-boot-info-table",
            "-eltorito-alt-boot",
            "-e", ESP_IMAGE, "-no-emul-boot", "--efi-boot-part", "--efi-boot-image",
            str(root),
        ]  # fmt: skip
        env = {**os.environ, "SOURCE_DATE_EPOCH": _EPOCH}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            lines = [ln for ln in proc.stderr.splitlines() if "FAILURE" in ln or "SORRY" in ln]
            raise HvbootError(
                output,
                f"xorriso failed (exit {proc.returncode}): "
                + ("; ".join(lines) or proc.stderr.strip()[-500:]),
            )
        os.replace(partial, output)
    fat_type = fat_geometry(esp_bytes).fat_type
    return IsoResult(output, output.stat().st_size, esp_bytes, fat_type)


__all__ = [
    "BIOS_IMAGE",
    "CD_SECTOR",
    "ESP_IMAGE",
    "IsoResult",
    "bios_boot_image",
    "build_iso",
    "is_iso",
]
