"""`hvboot build --netboot DIR`: the ESP's files as a TFTP tree, for UEFI network boot.

The tree is laid out as an image's ESP (EFI/BOOT/BOOTX64.EFI, hvboot/hvboot.cfg, the kernel,
hvboot/modules/...): the DHCP server names EFI/BOOT/BOOTX64.EFI as the boot file, the firmware
fetches it over TFTP, and the loader, finding itself started from the network, fetches the rest
from the same server through the PXE Base Code protocol (docs/netboot.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hvboot.config.build import BuildConfig
from hvboot.errors import HvbootError
from hvboot.image.build import EFI_BOOT_PATH, boot_files
from hvboot.image.fat import FatFile

BOOT_FILE = EFI_BOOT_PATH


@dataclass(frozen=True)
class NetbootResult:
    root: Path
    files: tuple[FatFile, ...]


def build_netboot(cfg: BuildConfig, root: Path) -> NetbootResult:
    """Write the TFTP tree for `cfg` under `root` (created if missing; files it holds already
    are replaced, others left alone)."""
    boot = boot_files(cfg)
    if root.exists() and not root.is_dir():
        raise HvbootError(root, "netboot: not a directory")
    if not root.parent.is_dir():
        raise HvbootError(root, f"netboot: the directory {root.parent} does not exist")
    for f in boot.files:
        path = root / f.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(f.data)
            tmp.replace(path)
        except OSError as e:
            raise HvbootError(path, f"netboot: cannot write it: {e.strerror}") from None
    return NetbootResult(root, tuple(boot.files))


__all__ = ["BOOT_FILE", "NetbootResult", "build_netboot"]
