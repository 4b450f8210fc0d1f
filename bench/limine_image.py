"""A disk image on which Limine 8.x (a release binary, never committed here) boots a
Limine-protocol kernel under SeaBIOS and OVMF, for the benchmarks' side-by-sides.

The release comes from a git repository holding Limine's binary branch (`v8.x-binary`: the
branch Limine's own README tells users to clone), by default the mirror on these machines, or
from a directory holding the same files. Its installer `limine.c` is compiled with gcc into
tests/.cache/limine-<version>/ at run time. The image is hvboot's own GPT + FAT writer with
Limine's files on the ESP (BOOTX64.EFI for OVMF, limine-bios.sys and `limine bios-install`,
which embeds its stage 2 after the GPT entries, for SeaBIOS), so the two loaders boot from disks
of the same shape.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from hvboot.image.disk import write_disk_image
from hvboot.image.fat import FatFile

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path("/work/.mirror/limine-bootloader+limine/repo")
BRANCH = "v8.x-binary"
FILES = ("BOOTX64.EFI", "limine-bios.sys", "limine-bios-hdd.h", "limine.c")
HOW_TO_GET = (
    f"git clone --bare --branch={BRANCH} --depth=1 "
    "https://github.com/limine-bootloader/limine.git limine.git; then --limine limine.git"
)


def release(source: Path | None) -> Path:
    """The directory with Limine's release files and its compiled installer `limine`: `source`
    (a git repository with branch v8.x-binary, or a directory with the files) or the mirror."""
    source = source or MIRROR
    if (source / "limine.c").is_file():
        files = {name: (source / name).read_bytes() for name in FILES}
    elif (source / "HEAD").is_file() or (source / ".git").exists():
        files = {name: _git_show(source, name) for name in FILES}
    else:
        raise SystemExit(f"{source}: no Limine {BRANCH} release there; {HOW_TO_GET}")
    tag = hashlib.sha256(b"".join(files[name] for name in FILES)).hexdigest()[:12]
    cache = ROOT / "tests" / ".cache" / f"limine-{tag}"
    installer = cache / "limine"
    if not installer.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (cache / name).write_bytes(data)
        # The release Makefile's own command for the installer (C99, the HDD stages included).
        cmd = ["gcc", "-O2", "-std=c99", "limine.c", "-o", "limine"]
        subprocess.run(cmd, cwd=cache, check=True)
    return cache


def version(cache: Path) -> str:
    out = subprocess.run([str(cache / "limine"), "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else "Limine (version unknown)"


def _git_show(repo: Path, name: str) -> bytes:
    cmd = ["git", "--git-dir", str(_git_dir(repo)), "show", f"{BRANCH}:{name}"]
    done = subprocess.run(cmd, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(
            f"{repo}: no {BRANCH}:{name} ({done.stderr.decode().strip()}); {HOW_TO_GET}"
        )
    return done.stdout


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def image(cache: Path, kernel: Path, cmdline: str, out: Path) -> Path:
    """`out`: Limine booting `kernel` (Limine protocol) with `cmdline`, menu skipped. Limine
    8.x's config keys (its CONFIG.md): `kernel_path`, `kernel_cmdline`; `boot():` is the
    partition Limine itself was loaded from."""
    conf = (
        "timeout: 0\n"
        "/bench\n"
        "    protocol: limine\n"
        "    kernel_path: boot():/boot/kernel\n"
        f"    kernel_cmdline: {cmdline}\n"
    )
    files = [
        FatFile("EFI/BOOT/BOOTX64.EFI", (cache / "BOOTX64.EFI").read_bytes()),
        FatFile("boot/limine/limine-bios.sys", (cache / "limine-bios.sys").read_bytes()),
        FatFile("limine.conf", conf.encode()),
        FatFile("boot/kernel", kernel.read_bytes()),
    ]
    write_disk_image(out, files)
    subprocess.run(
        [str(cache / "limine"), "bios-install", str(out)], check=True, capture_output=True
    )
    return out
