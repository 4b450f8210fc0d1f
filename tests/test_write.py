"""`hvboot write IMAGE DEVICE`: every refusal (on a fake /sys and /proc tree, and on this
machine's own root disk), the write and its read-back on a regular file and, where the machine
allows it, on a loop device."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hvboot.errors import HvbootError
from hvboot.image import write
from hvboot.image.write import HostView, check_disk


def hvboot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvboot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


class FakeHost:
    """A /sys block tree, /proc/self/mountinfo and /proc/swaps as Linux lays them out."""

    def __init__(self, root: Path) -> None:
        self.view = HostView(root / "sys", root / "mountinfo", root / "swaps")
        self.mount_lines: list[str] = []
        self.swap_lines: list[str] = []
        self.nodes: dict[str, Path] = {}
        (root / "sys" / "dev" / "block").mkdir(parents=True)
        self.flush()

    def _node(self, name: str, devnum: str, parent: Path) -> Path:
        node = parent / name
        node.mkdir(parents=True)
        (node / "dev").write_text(devnum + "\n")
        link = self.view.sys / "dev" / "block" / devnum
        link.symlink_to(os.path.relpath(node, link.parent))
        self.nodes[name] = node
        return node

    def disk(self, name: str, major: int, partitions: int = 0, sectors: int = 2048) -> None:
        node = self._node(name, f"{major}:0", self.view.sys / "devices" / "pci0" / "block")
        (node / "size").write_text(f"{sectors}\n")
        (node / "device").mkdir()
        (node / "device" / "vendor").write_text("ACME    \n")
        (node / "device" / "model").write_text("Stick\n")
        for n in range(1, partitions + 1):
            part = self._node(f"{name}{n}", f"{major}:{n}", node)
            (part / "partition").write_text(f"{n}\n")

    def mapper(self, name: str, devnum: str, on: str) -> None:
        """A device-mapper device on top of `on` (slaves/ and holders/ link them)."""
        node = self._node(name, devnum, self.view.sys / "devices" / "virtual" / "block")
        for folder, target in ((node / "slaves", on), (self.nodes[on] / "holders", name)):
            folder.mkdir(exist_ok=True)
            (folder / target).symlink_to(os.path.relpath(self.nodes[target], folder))

    def mount(self, devnum: str, source: str, point: str) -> None:
        n = len(self.mount_lines) + 20
        self.mount_lines.append(f"{n} 1 {devnum} / {point} rw,relatime shared:1 - ext4 {source} rw")
        self.flush()

    def swap(self, path: str) -> None:
        self.swap_lines.append(f"{path}  partition\t1048572\t0\t-2")
        self.flush()

    def flush(self) -> None:
        self.view.mountinfo.write_text("".join(f"{line}\n" for line in self.mount_lines))
        self.view.swaps.write_text(
            "Filename\tType\tSize\tUsed\tPriority\n" + "".join(f"{s}\n" for s in self.swap_lines)
        )


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    """sda (the system disk: / on sda1, swap-free) and sdb (a USB stick with one partition)."""
    h = FakeHost(tmp_path)
    h.disk("sda", 8, partitions=2)
    h.disk("sdb", 8 + 16, partitions=1, sectors=4096)
    h.mount("8:1", "/dev/sda1", "/")
    h.mount("0:5", "proc", "/proc")
    return h


def refusal(host: FakeHost, device: str, devnum: str) -> str:
    with pytest.raises(HvbootError) as e:
        check_disk(device, devnum, host.view)
    assert e.value.where == device
    return e.value.what


def test_unused_whole_disk_passes(host: FakeHost) -> None:
    target = check_disk("/dev/sdb", "24:0", host.view)
    assert target == write.Target("sdb", 4096 * 512, "ACME Stick")


def test_partition_refused(host: FakeHost) -> None:
    what = refusal(host, "/dev/sdb1", "24:1")
    assert "is partition 1 of /dev/sdb, not a whole disk" in what
    assert "write it to /dev/sdb" in what


def test_running_system_disk_refused(host: FakeHost) -> None:
    what = refusal(host, "/dev/sda", "8:0")
    assert what.startswith("holds the running system (/ is mounted from /dev/sda1)")


def test_running_system_through_device_mapper_refused(tmp_path: Path) -> None:
    h = FakeHost(tmp_path)
    h.disk("nvme0n1", 259, partitions=3)
    h.mapper("dm-0", "253:0", on="nvme0n13")
    h.mount("253:0", "/dev/mapper/vg-root", "/")
    what = refusal(h, "/dev/nvme0n1", "259:0")
    assert "holds the running system (/ is mounted from /dev/mapper/vg-root)" in what


@pytest.mark.parametrize("point", ["/boot", "/boot/efi", "/usr"])
def test_boot_and_usr_disks_refused(host: FakeHost, point: str) -> None:
    host.mount("24:1", "/dev/sdb1", point)
    assert f"holds the running system ({point} is mounted" in refusal(host, "/dev/sdb", "24:0")


def test_mounted_partition_refused(host: FakeHost) -> None:
    host.mount("24:1", "/dev/sdb1", "/media/my\\040stick")  # mountinfo's escape for a space
    what = refusal(host, "/dev/sdb", "24:0")
    assert what == "/dev/sdb1 on it is mounted on /media/my stick; unmount it first"


def test_mounted_through_a_holder_refused(host: FakeHost) -> None:
    host.mapper("dm-3", "253:3", on="sdb1")
    host.mount("253:3", "/dev/mapper/crypt", "/secret")
    assert "/dev/mapper/crypt on it is mounted on /secret" in refusal(host, "/dev/sdb", "24:0")


def test_swap_refused(host: FakeHost) -> None:
    host.swap("/dev/sdb1")
    assert (
        refusal(host, "/dev/sdb", "24:0") == "/dev/sdb1 on it is in use as swap; swapoff it first"
    )


def test_unknown_device_refused(host: FakeHost) -> None:
    assert "is not a block device the kernel lists (7:99)" in refusal(host, "/dev/loop99", "7:99")


def test_real_root_disk_refused(tmp_path: Path) -> None:
    """This machine's own disk holding /, found by the real /sys and /proc: refused by name."""
    root = next((m for m in write.mounts(HostView()) if m.point == "/"), None)
    if root is None or not (Path("/sys/dev/block") / root.devnum).exists():
        pytest.skip(f"/ is not on a block device here ({root})")
    disk = Path("/sys/dev/block", root.devnum).resolve()
    disk = disk.parent if (disk / "partition").is_file() else disk
    if (disk / "slaves").is_dir() and any((disk / "slaves").iterdir()):
        pytest.skip(f"/ is on a stacked device ({disk.name}); the fake-tree test covers it")
    device = Path("/dev") / disk.name
    if not device.exists():
        pytest.skip(f"{device} has no device node here")
    # No --yes: even a wrong verdict could not write.
    (tmp_path / "x.img").write_bytes(b"\0" * 512)
    r = hvboot("write", str(tmp_path / "x.img"), str(device))
    assert r.returncode == 2
    assert f"{device}: holds the running system (/ is mounted from" in r.stderr


# --- writing ------------------------------------------------------------------------------


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(write.CHUNK + 12345))  # more than one chunk, not sector-sized
    return path


def test_write_to_regular_file_and_verify(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "stick.bin"
    target.write_bytes(b"\xee" * (2 * write.CHUNK))
    r = hvboot("write", str(image), str(target), "--yes")
    assert r.returncode == 0, r.stderr
    assert f"wrote and verified {image.stat().st_size} bytes on {target}" in r.stderr
    data = target.read_bytes()
    assert data[: image.stat().st_size] == image.read_bytes()
    assert data[image.stat().st_size :] == b"\xee" * (len(data) - image.stat().st_size)


def test_asks_unless_yes(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "stick.bin"
    target.write_bytes(b"keep")
    r = hvboot("write", str(image), str(target))
    assert r.returncode == 2
    assert f"{target}: not written: no terminal to ask on; pass --yes" in r.stderr
    questions: list[str] = []

    def no(question: str) -> bool:
        questions.append(question)
        return False

    with pytest.raises(HvbootError, match="not confirmed"):
        write.write(image, target, confirm=no)
    assert target.read_bytes() == b"keep"
    assert questions == [f"write {image} (4.0 MiB) to the file {target}, overwriting it?"]


@pytest.mark.parametrize(("answer", "written"), [("no", False), ("yes", True)])
def test_asks_on_a_terminal(image: Path, tmp_path: Path, answer: str, written: bool) -> None:
    """Without --yes, on a terminal: only the answer "yes" writes."""
    target = tmp_path / "stick.bin"
    target.write_bytes(b"keep")
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "hvboot", "write", str(image), str(target)],
        stdin=secondary,
        stdout=secondary,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        os.close(secondary)
        os.write(primary, f"{answer}\n".encode())
        _, err = proc.communicate(timeout=120)
    os.close(primary)
    assert proc.returncode == (0 if written else 2), err
    assert (target.read_bytes() == image.read_bytes()) is written
    if not written:
        assert f"{target}: not written: not confirmed" in err


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("/dev/null", "is neither a block device (a whole disk) nor a regular file"),
        ("/nonexistent/sdz", "device: No such file or directory"),
    ],
)
def test_bad_device_refused(image: Path, device: str, expected: str) -> None:
    r = hvboot("write", str(image), device, "--yes")
    assert r.returncode == 2
    assert f"{device}: {expected}" in r.stderr


def test_missing_image_refused(tmp_path: Path) -> None:
    r = hvboot("write", str(tmp_path / "nope.img"), str(tmp_path), "--yes")
    assert r.returncode == 2 and "nope.img: image: no such file" in r.stderr
    r = hvboot("write", "/dev/null", str(tmp_path), "--yes")
    assert r.returncode == 2 and "/dev/null: image: is not a regular file" in r.stderr


def test_verification_names_the_first_differing_byte(image: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.bin"
    data = bytearray(image.read_bytes())
    data[write.CHUNK + 7] ^= 1
    copy.write_bytes(data)
    with pytest.raises(HvbootError, match=f"byte {write.CHUNK + 7} read back differs"):
        write.verify(image, copy, len(data))


# --- a real block device ----------------------------------------------------------------


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Path]:
    """A 8 MiB loop device of our own, detached afterwards (skipped where losetup is denied)."""
    if shutil.which("losetup") is None:
        pytest.skip("losetup is not installed")
    backing = tmp_path / "backing.bin"
    backing.write_bytes(b"\0" * (8 << 20))
    r = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        pytest.skip(f"no loop device on this machine: losetup: {r.stderr.strip()}")
    device = Path(r.stdout.strip())
    yield device
    subprocess.run(["losetup", "--detach", str(device)], check=False)


def test_write_to_loop_device_and_verify(image: Path, loop: Path) -> None:
    r = hvboot("write", str(image), str(loop), "--yes")
    assert r.returncode == 0, r.stderr
    with loop.open("rb") as f:
        assert f.read(image.stat().st_size) == image.read_bytes()


def test_image_larger_than_the_disk_refused(tmp_path: Path, loop: Path) -> None:
    big = tmp_path / "big.img"
    big.write_bytes(b"\1" * ((8 << 20) + 512))
    r = hvboot("write", str(big), str(loop), "--yes")
    assert r.returncode == 2
    assert f"{loop}: holds {8 << 20} bytes; the image {big} has {(8 << 20) + 512} bytes" in r.stderr


def test_mounted_loop_device_refused(loop: Path, tmp_path: Path, image: Path) -> None:
    """A filesystem really mounted from the device (ext2: the kernel here may lack vfat)."""
    if shutil.which("mkfs.ext2") is None:
        pytest.skip("mkfs.ext2 (e2fsprogs) is not installed")
    subprocess.run(["mkfs.ext2", "-q", str(loop)], check=True)
    point = tmp_path / "mnt"
    point.mkdir()
    r = subprocess.run(["mount", str(loop), str(point)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"this machine does not let us mount: {r.stderr.strip()}")
    try:
        r = hvboot("write", str(image), str(loop), "--yes")
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert r.returncode == 2
    assert f"{loop}: is mounted on {point}; unmount it first" in r.stderr
