"""`hvboot build`: a kernel, its modules and a command line -> one bootable raw disk image.

The image is GPT with a protective MBR and an EFI system partition holding the UEFI loader
(\\EFI\\BOOT\\BOOTX64.EFI), the loader's config (/hvboot/hvboot.cfg), the kernel and the modules.
For BIOS, the protective MBR carries stage 1 (patched with stage 2's LBA and length) and a BIOS
boot partition holds stage 2 + the BIOS loader (docs/bios.md).
The kernel and the loader config are checked by the loader core itself (hvboot-check), so a bad
kernel or config is refused here, with the file and field named, rather than on the machine.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.errors import HvbootError
from hvboot.image.disk import ALIGN_SECTORS, DiskLayout, write_disk_image
from hvboot.image.fat import FatFile
from hvboot.image.output import image_target
from hvboot.kernel.elf import LoadPlan, accepted
from hvboot.loader import artifacts
from hvboot.loader import bios_stages as bios_boot
from hvboot.loader import config_file as loader_config
from hvboot.trust import pin, sign
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
    kind: str | None = None  # the kernel's kind, as hvboot-check names it
    limine: dict[str, Any] | None = None  # what a Limine kernel asks for (kind limine)


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
    kernel: bytes,
    cmdline: str,
    modules: Sequence[tuple[ModuleSpec, bytes]],
    loader_pe: bytes,
    tpm: str = "if-present",
) -> list[FatFile]:
    """The files of the EFI system partition, in a fixed order."""
    entries = []
    files = [FatFile(EFI_BOOT_PATH, loader_pe), FatFile(loader_config.KERNEL_PATH, kernel)]
    for index, (spec, data) in enumerate(modules):
        path = f"{loader_config.MODULE_DIR}/{_module_file_name(index, spec.name)}"
        pin = loader_config.digest(data)
        entries.append(loader_config.LoaderModule(path, spec.name, spec.cmdline, pin))
        files.append(FatFile(path, data))
    # Every placed file pinned: the loader checks each against its digest (docs/trust.md).
    text = loader_config.render(
        cmdline, entries, kernel_digest=loader_config.digest(kernel), tpm=tpm
    )
    loader_config.check(text)
    files.insert(1, FatFile(loader_config.CONFIG_PATH, text.encode()))
    return files


def _sign(
    files: list[FatFile], bios: bios_boot.BiosBoot, key_dir: Path, source: str
) -> tuple[FatFile, bios_boot.BiosBoot]:
    """Both loaders pin the config (trust/pin.py), then the UEFI one is signed with the db key:
    the firmware checks the loader, the loader the config, the config every file."""
    [config] = [f for f in files if f.path == loader_config.CONFIG_PATH]
    digest = loader_config.digest(config.data)
    pe = sign.sign(pin.pin(files[0].data, digest, source), key_dir)
    stage2 = pin.pin(bios.stage2, digest, bios.source)
    return FatFile(EFI_BOOT_PATH, pe), dataclasses.replace(bios, stage2=stage2)


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


@dataclass(frozen=True)
class BootFiles:
    """What every medium carries: the kernel's plan, the ESP's files and a digest of them."""

    plan: LoadPlan
    files: list[FatFile]
    digest: bytes
    bios: bios_boot.BiosBoot  # the BIOS stages, pinned to the config when signed
    kind: str | None = None  # the kernel's kind, as hvboot-check names it
    limine: dict[str, Any] | None = None  # what a Limine kernel asks for (kind limine)


def boot_files(cfg: BuildConfig) -> BootFiles:
    """The checked kernel, the modules, the loader config and the UEFI loader, as ESP files."""
    kernel = gunzip(_read(cfg.kernel, "kernel"), cfg.kernel, "kernel")
    verdict = accepted(kernel, str(cfg.kernel), cfg.cmdline)
    assert verdict.plan is not None
    modules = []
    for m in cfg.modules:
        what = f"module {m.name!r}"
        modules.append((m, gunzip(_read(m.path, what), m.path, what)))
    files = esp_files(kernel, cfg.cmdline, modules, artifacts.uefi_loader_pe(), cfg.tpm)
    bios = bios_boot.load(artifacts.bios_loader_elf())
    if cfg.sign is not None:
        files[0], bios = _sign(files, bios, cfg.sign, str(artifacts.uefi_loader_elf()))
    seed = hashlib.sha256()
    for f in files:
        seed.update(f.path.encode() + b"\0" + hashlib.sha256(f.data).digest())
    return BootFiles(verdict.plan, files, seed.digest(), bios, verdict.kind, verdict.limine)


def build_image(cfg: BuildConfig, output: Path) -> BuildResult:
    """Write the disk image for `cfg` to `output`; the same inputs give the same bytes."""
    boot = boot_files(cfg)
    plan, files, bios = boot.plan, boot.files, boot.bios
    image_target(output)  # refuse a place an image cannot go before writing
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
        seed=boot.digest,
    )
    _check_stage2_fits(layout, stage2_lba, len(bios.stage2), bios.source, output)
    return BuildResult(output, layout, plan, tuple(files), boot.kind, boot.limine)
