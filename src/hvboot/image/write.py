"""`hvboot write IMAGE DEVICE`: put a disk image or ISO on a USB stick or disk, then check it.

Before anything is opened for writing, the target is refused, each time by name, when it is a
partition instead of a whole disk, when it holds the running system (the filesystem of /,
/boot, /boot/efi or /usr, also through device-mapper or md layers), or when any part of it is
mounted or used as swap. What the kernel knows is read from sysfs (`/sys/dev/block/MAJ:MIN`,
a device's `partition`, `slaves/`, `holders/` and `size`: Documentation/ABI/stable/sysfs-block)
and from /proc/self/mountinfo (proc(5)) and /proc/swaps; `HostView` holds those roots so the
refusals can be tested on a fake tree. The block device is opened with O_EXCL, which Linux
refuses (EBUSY) while the kernel itself uses the device, as a last guard. After writing, the
page cache is dropped for the device and the image is read back and compared.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hvboot.errors import HvbootError

CHUNK = 4 << 20
# Mount points whose disks are the running system's.
SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi", "/usr")


@dataclass(frozen=True)
class HostView:
    """Where the kernel's view of block devices, mounts and swap is read."""

    sys: Path = Path("/sys")
    mountinfo: Path = Path("/proc/self/mountinfo")
    swaps: Path = Path("/proc/swaps")


@dataclass(frozen=True)
class Mount:
    devnum: str  # MAJ:MIN of the mounted filesystem's device
    source: str  # what it was mounted from, e.g. /dev/sda1
    point: str


@dataclass(frozen=True)
class Target:
    """A whole disk that passed every check."""

    name: str  # e.g. sdb
    size: int  # bytes
    model: str


@dataclass(frozen=True)
class WriteResult:
    bytes: int
    seconds: float


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo (proc(5))."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(view: HostView) -> list[Mount]:
    """Every mount in mountinfo: `ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS] - TYPE SOURCE ...`."""
    found = []
    for line in view.mountinfo.read_text().splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        found.append(Mount(fields[2], _unescape(tail[1]), _unescape(fields[4])))
    return found


def _swaps(view: HostView) -> list[str]:
    if not view.swaps.is_file():
        return []
    return [line.split()[0] for line in view.swaps.read_text().splitlines()[1:] if line.strip()]


def _node(view: HostView, devnum: str) -> Path | None:
    link = view.sys / "dev" / "block" / devnum
    return link.resolve() if link.exists() else None


def _links(node: Path, sub: str) -> list[Path]:
    folder = node / sub
    return sorted(p.resolve() for p in folder.iterdir()) if folder.is_dir() else []


def _disks_under(node: Path) -> set[Path]:
    """The whole disks a device lives on: itself, its disk if a partition, through slaves/."""
    slaves = _links(node, "slaves")
    if slaves:
        return set().union(*(_disks_under(s) for s in slaves))
    return {node.parent if (node / "partition").is_file() else node}


def _stack(disk: Path) -> list[Path]:
    """The disk, its partitions and every device built on them (holders/: dm, md, ...)."""
    todo = [disk, *(p for p in sorted(disk.iterdir()) if (p / "partition").is_file())]
    seen: list[Path] = []
    while todo:
        node = todo.pop(0)
        if node not in seen:
            seen.append(node)
            todo.extend(_links(node, "holders"))
    return seen


def _read(path: Path) -> str:
    return path.read_text().strip() if path.is_file() else ""


def check_disk(device: str, devnum: str, view: HostView = HostView()) -> Target:
    """Refuse `device` (MAJ:MIN `devnum`) unless it is a whole disk no one uses; say why."""
    node = _node(view, devnum)
    if node is None:
        raise HvbootError(device, f"is not a block device the kernel lists ({devnum})")
    if (node / "partition").is_file():
        disk = node.parent.name
        raise HvbootError(
            device,
            f"is partition {_read(node / 'partition')} of /dev/{disk}, not a whole disk; "
            f"an image holds its own partition table: write it to /dev/{disk}",
        )
    all_mounts = mounts(view)
    for m in all_mounts:
        under = _node(view, m.devnum)
        if m.point in SYSTEM_MOUNTS and under is not None and node in _disks_under(under):
            raise HvbootError(
                device,
                f"holds the running system ({m.point} is mounted from {m.source}); "
                "refusing to overwrite it",
            )
    stack = _stack(node)
    devnums = {_read(n / "dev") for n in stack}
    names = {n.name for n in stack}
    for m in all_mounts:
        if m.devnum in devnums or Path(m.source).name in names:
            which = "is" if m.devnum == devnum else f"{m.source} on it is"
            raise HvbootError(device, f"{which} mounted on {m.point}; unmount it first")
    for swap in _swaps(view):
        if Path(swap).name in names:
            raise HvbootError(device, f"{swap} on it is in use as swap; swapoff it first")
    size = int(_read(node / "size") or 0) * 512  # in 512-byte units whatever the device's
    model = " ".join(_read(node / "device" / f) for f in ("vendor", "model")).strip()
    return Target(node.name, size, model)


def write(
    image: Path,
    device: Path,
    *,
    confirm: Callable[[str], bool],
    view: HostView = HostView(),
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> WriteResult:
    """Write `image` to the whole disk (or regular file) `device`, then read it back."""
    if not image.is_file():
        why = "is not a regular file" if image.exists() else "no such file"
        raise HvbootError(image, f"image: {why}")
    total = image.stat().st_size
    try:
        st = os.stat(device)
    except OSError as e:
        raise HvbootError(device, f"device: {e.strerror}") from e
    block = stat.S_ISBLK(st.st_mode)
    if block:
        target = check_disk(str(device), f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", view)
        what = f"/dev/{target.name} ({target.model or 'disk'}, {target.size / 2**20:.0f} MiB)"
        if total > target.size:
            raise HvbootError(
                device, f"holds {target.size} bytes; the image {image} has {total} bytes"
            )
    elif stat.S_ISREG(st.st_mode):
        what = f"the file {device}"
    else:
        raise HvbootError(device, "is neither a block device (a whole disk) nor a regular file")
    if not confirm(f"write {image} ({total / 2**20:.1f} MiB) to {what}, overwriting it?"):
        raise HvbootError(device, "not written: not confirmed")
    start = time.monotonic()
    flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_EXCL if block else 0)
    try:
        fd = os.open(device, flags)
    except OSError as e:
        raise HvbootError(device, f"cannot be opened for writing: {e.strerror}") from e
    try:
        with image.open("rb") as src:
            done = 0
            while chunk := src.read(CHUNK):
                rest = memoryview(chunk)
                while rest:
                    rest = rest[os.write(fd, rest) :]
                done += len(chunk)
                progress(done, total)
        os.fsync(fd)
        # Read back from the device, not from the page cache the write just filled.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    verify(image, device, total)
    return WriteResult(total, time.monotonic() - start)


def verify(image: Path, device: Path, total: int) -> None:
    with image.open("rb") as want, device.open("rb") as got:
        offset = 0
        while offset < total:
            a = want.read(CHUNK)
            b = got.read(len(a))
            if a != b:
                at = offset + next(
                    (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                    min(len(a), len(b)),
                )
                raise HvbootError(
                    device, f"verification failed: byte {at} read back differs from {image}"
                )
            offset += len(a)
