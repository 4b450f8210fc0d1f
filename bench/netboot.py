"""A 64 MiB module over TFTP (UEFI network boot) against the same module from disk, in MiB/s.

The same build (report kernel + one 64 MiB module) as a disk image and as a `--netboot` TFTP
tree, booted under OVMF. The time is the module's own: from the loader's `kernel: entry` line
(the kernel is in) to its `module big.bin:` line (the module is in), host clock on serial
arrival, so firmware start-up, DHCP and the kernel's own transfer are left out. Subjects:

- disk: the ESP through Block I/O (the core's FAT reader), as every `hvboot build` image;
- tftp-ovmf: virtio-net with OVMF's own PXE Base Code (QEMU's iPXE ROM left off);
- tftp-ipxe: e1000 with iPXE's EFI ROM (Debian's ipxe-qemu), whose PXE Base Code cannot tell a
  file's size, so the loader reads the module twice (docs/netboot.md): its figure counts both.

QEMU's user-mode network (slirp) is the TFTP server, on the same host.

    .venv/bin/python bench/netboot.py [--runs N] [--module-mib 64]

A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.netboot import BOOT_FILE, build_netboot
from hvboot.vm import qemu
from hvboot.vm.firmware import find_ovmf
from hvboot.vm.machine import Machine

START = b"hvboot: kernel: entry"
END = b"hvboot: module big.bin:"
SUBJECTS = {"disk": None, "tftp-ovmf": "virtio-net-pci,romfile=", "tftp-ipxe": "e1000"}


def module_seconds(spec: qemu.QemuSpec, timeout: float) -> float | None:
    """Seconds between START and END on serial; None if END never came."""
    with tempfile.TemporaryDirectory(prefix="hvboot-bench-net-") as tmp:
        vars_copy = Path(tmp) / "OVMF_VARS.fd"
        shutil.copyfile(find_ovmf().vars_template, vars_copy)
        cmd = qemu.command(spec, vars_copy)
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        stdout = proc.stdout
        assert isinstance(stdout, io.BufferedReader)
        begin = time.monotonic()
        seen, started = b"", None
        try:
            while time.monotonic() - begin < timeout:
                data = stdout.read1(65536)
                if not data:
                    return None
                now = time.monotonic()
                seen = (seen + data)[-8192:]
                if started is None and START in seen:
                    started, seen = now, seen[seen.index(START) :]
                if started is not None and END in seen:
                    return now - started
            return None
        finally:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--module-mib", type=int, default=64)
    args = ap.parse_args()
    w = bl.Workdir.create()
    module = bl.module_file(w, args.module_mib << 20)
    image = bl.hvboot_image(w, module)
    cfg = BuildConfig(
        kernel=bl.REPORT_KERNEL,
        cmdline="",
        modules=(ModuleSpec(module, "big.bin", ""),),
        output=None,
        image_size=None,
    )
    try:
        return _run(args.runs, args.timeout, args.module_mib, image, cfg, w)
    finally:
        w.cleanup()


def _run(runs: int, timeout: float, mib: int, image: Path, cfg: BuildConfig, w: bl.Workdir) -> int:
    tree = build_netboot(cfg, w.path / "tftp").root
    machine = Machine(firmware="uefi", memory="512M")
    times: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    for r in range(runs):
        for name, nic in SUBJECTS.items():
            if nic is None:
                spec = qemu.QemuSpec(image=image, machine=machine, snapshot=True)
            else:
                spec = qemu.QemuSpec(image=tree / BOOT_FILE, machine=machine, tftp=tree, nic=nic)
            t = module_seconds(spec, timeout)
            if t is not None:
                times[name].append(t)
            print(f"{name}: {t if t is None else round(t, 2)} s", file=sys.stderr)
        print(f"round {r + 1}/{runs} done", file=sys.stderr)
    disk = bl.median(times["disk"])
    print("| subject | runs | module s | MiB/s | x disk |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        s = bl.median(ts)
        print(f"| {name} | {len(ts)} | {s:.2f} | {mib / s:.1f} | {s / disk:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
