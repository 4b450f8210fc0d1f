"""Where a disk image goes: a regular file (replaced whole) or a block device (written through).

`-o` may name a file, a symlink or a device node such as /dev/sdX. A symlink is followed to
what it names and stays a link; a block device is written in place like `dd` would, never
replaced by a regular file; anything else that is not a regular file (a character device, a
FIFO, a socket, /proc) is refused by name before a byte is written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hvboot.errors import HvbootError
from hvboot.image.fat import Unused

_ZEROS = bytes(1 << 20)
# File systems whose "regular files" are kernel interfaces, not storage.
_PSEUDO_FS = frozenset({"proc", "sysfs", "debugfs", "securityfs", "cgroup2", "tracefs"})


@dataclass(frozen=True)
class ImageTarget:
    """The output as given (`path`) and what is written (`real`, symlinks followed)."""

    path: Path
    real: Path
    device_bytes: int | None  # a block device's size; None for a regular file

    @property
    def is_device(self) -> bool:
        return self.device_bytes is not None

    def check_fits(self, image_bytes: int) -> None:
        if self.device_bytes is not None and image_bytes > self.device_bytes:
            raise HvbootError(
                self.path,
                f"output: the image is {image_bytes} bytes but the device holds only "
                f"{self.device_bytes} bytes",
            )

    def write(self, total_bytes: int, pieces: Iterable[tuple[int, Iterable[bytes | int]]]) -> None:
        """Write `pieces` ((offset, chunks); an int chunk is that many zero bytes, an `Unused`
        one bytes nothing reads) in order.

        A file is written next to its target and renamed over it, so a failure never leaves
        half an image; its zero runs become holes. A device gets zeros written where its old
        contents would otherwise show through, and keeps them where nothing reads.
        """
        if self.is_device:
            try:
                with open(self.real, "r+b") as dev:
                    _write_pieces(dev, pieces, fill=True)
                    _zero_to(dev, total_bytes)
                    dev.flush()
                    os.fsync(dev.fileno())
            except OSError as err:
                raise HvbootError(self.path, f"cannot write the device: {err.strerror}") from None
            return
        tmp = self.real.with_name(self.real.name + ".tmp")
        try:
            out = open(tmp, "wb")  # noqa: SIM115 - closed below, before the rename
        except OSError as err:
            raise HvbootError(
                self.path,
                f"output: cannot create {tmp.name} in {self.real.parent} ({err.strerror}); "
                "the image is written beside its target and renamed over it, so a writable "
                "directory is expected",
            ) from None
        try:
            with out:
                _write_pieces(out, pieces, fill=False)
                out.truncate(total_bytes)
            os.replace(tmp, self.real)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, OSError):
                why = f"cannot write the disk image: {err.strerror}"
                raise HvbootError(self.path, why) from None
            raise


def image_target(path: Path) -> ImageTarget:
    """Resolve `-o PATH`, or say by name why an image cannot go there."""
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        if not real.parent.is_dir():
            raise HvbootError(path, f"output: the directory {real.parent} does not exist") from None
        return ImageTarget(path, real, None)
    except OSError as err:
        raise HvbootError(path, f"output: cannot look at it: {err.strerror}") from None
    via = f" (a link to {real})" if real != Path(os.path.abspath(path)) else ""
    if stat.S_ISDIR(st.st_mode):
        raise HvbootError(path, f"output: is a directory{via}, expected an image file path")
    if stat.S_ISBLK(st.st_mode):
        return ImageTarget(path, real, _device_bytes(path, real))
    if not stat.S_ISREG(st.st_mode):
        raise HvbootError(
            path,
            f"output: is a {_kind(st.st_mode)}{via}, expected a regular file, a block device "
            "or a new file's path",
        )
    pseudo = _pseudo_fs(real)
    if pseudo is not None:
        raise HvbootError(
            path,
            f"output: is a file of the {pseudo} pseudo file system{via}, not storage; expected "
            "a regular file, a block device or a new file's path",
        )
    return ImageTarget(path, real, None)


def _device_bytes(path: Path, real: Path) -> int:
    try:
        with open(real, "rb") as dev:
            return dev.seek(0, os.SEEK_END)
    except OSError as err:
        raise HvbootError(path, f"output: cannot open the device {real}: {err.strerror}") from None


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _pseudo_fs(real: Path) -> str | None:
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            table = [line.split()[:3] for line in mounts]
    except OSError:
        return None
    # The longest mount point that contains `real` is the file system it lives on.
    best: tuple[int, str] | None = None
    for _dev, point, fstype in table:
        point = point.replace("\\040", " ")
        if (real == Path(point) or Path(point) in real.parents) and (
            best is None or len(point) > best[0]
        ):
            best = (len(point), fstype)
    if best is not None and best[1] in _PSEUDO_FS:
        return best[1]
    return None


def _write_pieces(
    out: BinaryIO, pieces: Iterable[tuple[int, Iterable[bytes | int]]], *, fill: bool
) -> None:
    for offset, chunks in pieces:
        if fill:
            _zero_to(out, offset)
        else:
            out.seek(offset)
        for chunk in chunks:
            if isinstance(chunk, bytes):
                out.write(chunk)
            elif fill and not isinstance(chunk, Unused):
                _write_zeros(out, chunk)
            else:
                out.seek(chunk, os.SEEK_CUR)


def _zero_to(out: BinaryIO, offset: int) -> None:
    here = out.tell()
    if offset < here:
        raise ValueError(f"image pieces out of order: {offset:#x} after {here:#x}")
    _write_zeros(out, offset - here)


def _write_zeros(out: BinaryIO, count: int) -> None:
    while count > 0:
        n = min(count, len(_ZEROS))
        out.write(_ZEROS[:n])
        count -= n
