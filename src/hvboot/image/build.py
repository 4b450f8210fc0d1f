"""`hvboot build`: a kernel, its modules and a command line -> one bootable raw disk image.

The image is GPT with a protective MBR and an EFI system partition holding the UEFI loader
(\\EFI\\BOOT\\BOOTX64.EFI), the loader's config (/hvboot/hvboot.cfg), the kernel and the modules.
For BIOS, the protective MBR carries stage 1 (patched with stage 2's LBA and length) and a BIOS
boot partition holds stage 2 + the BIOS loader (docs/bios.md).
The kernel and the loader config are checked by the loader core itself (hvboot-check), so a bad
kernel or config is refused here, with the file and field named, rather than on the machine.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.errors import HvbootError
from hvboot.image.disk import ALIGN_SECTORS, DiskLayout, write_disk_image
from hvboot.image.fat import FatFile
from hvboot.image.output import image_target
from hvboot.kernel.elf import LoadPlan, load_plan_bytes
from hvboot.loader import artifacts
from hvboot.loader import bios_stages as bios_boot
from hvboot.loader import config_file as loader_config
from hvboot.loader.pe import elf_to_pe
from hvboot.units import SECTOR_SIZE

EFI_BOOT_PATH = "EFI/BOOT/BOOTX64.EFI"
# Characters a FAT long file name cannot hold (Microsoft FAT spec, "Long Name Character Set").
_FAT_UNSAFE = re.compile(r'[\x00-\x1f"*/:<>?\\|]')


@dataclass(frozen=True)
class BuildResult:
    output: Path
    layout: DiskLayout
    plan: LoadPlan
    files: tuple[FatFile, ...]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise HvbootError(path, f"{what}: no such file") from None
    except IsADirectoryError:
        raise HvbootError(path, f"{what}: is a directory, expected a file") from None
    except OSError as e:
        raise HvbootError(path, f"{what}: cannot read it: {e.strerror}") from None


GZIP_MAGIC = b"\x1f\x8b"


def gunzip(data: bytes, path: Path, what: str) -> bytes:
    """`data` decompressed if it is gzip (RFC 1952 magic 1f 8b), else as it is. Kernels such as
    Debian's xen-4.17-amd64.gz are shipped compressed; the loader gets them decompressed."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise HvbootError(path, f"{what}: gzip data that does not decompress: {e}") from None


def _module_file_name(index: int, name: str) -> str:
    if _FAT_UNSAFE.search(name) or name.strip(" .") != name or not name:
        return f"module{index}"
    return name


def esp_files(
    kernel: bytes, cmdline: str, modules: Sequence[tuple[ModuleSpec, bytes]], loader_pe: bytes
) -> list[FatFile]:
    """The files of the EFI system partition, in a fixed order."""
    entries = []
    files = [FatFile(EFI_BOOT_PATH, loader_pe), FatFile(loader_config.KERNEL_PATH, kernel)]
    for index, (spec, data) in enumerate(modules):
        path = f"{loader_config.MODULE_DIR}/{_module_file_name(index, spec.name)}"
        entries.append(loader_config.LoaderModule(path, spec.name, spec.cmdline))
        files.append(FatFile(path, data))
    text = loader_config.render(cmdline, entries)
    loader_config.check(text)
    files.insert(1, FatFile(loader_config.CONFIG_PATH, text.encode()))
    return files


def _check_stage2_fits(layout: DiskLayout, lba: int, size: int, source: str, output: Path) -> None:
    """Stage 1 was patched for `lba`; refuse an image whose BIOS boot partition differs."""
    have = (layout.stage2_sectors or 0) * SECTOR_SIZE
    if layout.stage2_first_lba != lba or have < size:
        target = image_target(output)
        if not target.is_device:  # a device node is never removed
            target.real.unlink(missing_ok=True)
        raise HvbootError(
            source,
            f"stage 2 is {size} bytes but the BIOS boot partition holds {have} bytes at LBA "
            f"{layout.stage2_first_lba} (stage 1 was patched for LBA {lba})",
        )


def build_image(cfg: BuildConfig, output: Path) -> BuildResult:
    """Write the disk image for `cfg` to `output`; the same inputs give the same bytes."""
    kernel = gunzip(_read(cfg.kernel, "kernel"), cfg.kernel, "kernel")
    plan = load_plan_bytes(kernel, str(cfg.kernel))
    modules = []
    for m in cfg.modules:
        what = f"module {m.name!r}"
        modules.append((m, gunzip(_read(m.path, what), m.path, what)))
    loader_elf = artifacts.uefi_loader_elf()
    loader_pe = elf_to_pe(loader_elf.read_bytes(), source=str(loader_elf))
    files = esp_files(kernel, cfg.cmdline, modules, loader_pe)
    seed = hashlib.sha256()
    for f in files:
        seed.update(f.path.encode() + b"\0" + hashlib.sha256(f.data).digest())
    image_target(output)  # refuse a place an image cannot go before the slow part
    bios = bios_boot.load(artifacts.bios_loader_elf())
    sectors = bios_boot.stage2_sectors(bios.stage2)
    # write_disk_image puts the BIOS boot partition first, at the first 1 MiB boundary.
    stage2_lba = ALIGN_SECTORS
    mbr_code = bios_boot.patch_stage1(
        bios.stage1, stage2_lba=stage2_lba, sectors=sectors, source=bios.source
    )
    layout = write_disk_image(
        output,
        files,
        size_bytes=cfg.image_size,
        bios_stage2=bios.stage2,
        mbr_boot_code=mbr_code,
        seed=seed.digest(),
    )
    _check_stage2_fits(layout, stage2_lba, len(bios.stage2), bios.source, output)
    return BuildResult(output, layout, plan, tuple(files))
