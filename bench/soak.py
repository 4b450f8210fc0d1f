"""The soak matrix (issue 10): the report kernel with a module booted N times in each of
{BIOS, UEFI} x {AHCI, virtio-blk, NVMe, USB} x {1, 8 CPUs} x {512M, 6G} (q35), then a fault
pass: QEMU's blkdebug fails the first sector of each kind of read the loader makes (GPT, FAT,
directory, config, kernel, module), once and persistently, under both firmwares on both machine
types (pc: IDE, q35: AHCI). Not a test (scripts/test.sh does not run it); its figures are in
docs/testing.md.

    .venv/bin/python bench/soak.py [--boots 20] [--no-matrix] [--no-faults] [--timeout 120]

A matrix boot is one of: ok; hang (no result before the timeout); reset (QEMU status 0);
firmware (the firmware never started the loader); loader (the loader stopped); exit (another
failure); wrong report (the kernel's command line or module bytes are not the host's). A fault
boot is ok when the boot succeeds with the right bytes (a once-only fault retried away) or
stops with a clear error: the loader's `hvboot: error:` line or the firmware's refusal; a hang,
a reset or wrong bytes are failures. Exits 1 if any boot failed.
"""

from __future__ import annotations

import argparse
import itertools
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from report_kernel import parse_report  # noqa: E402
from verdict import judge  # noqa: E402

from hvboot.config.build import BuildConfig, ModuleSpec  # noqa: E402
from hvboot.image.build import BuildResult, build_image  # noqa: E402
from hvboot.loader import artifacts  # noqa: E402
from hvboot.vm import qemu  # noqa: E402
from hvboot.vm.machine import Machine  # noqa: E402

REPORT_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-report-kernel"
CMDLINE = "soak=1 console=ttyS0"
BUSES = {"AHCI": "ide", "virtio-blk": "virtio", "NVMe": "nvme", "USB": "usb"}
SECTOR = 512


def build(tmp: Path) -> tuple[BuildResult, bytes]:
    module = tmp / "guest.bin"
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(96 * 1024))
    module.write_bytes(data)
    spec = ModuleSpec(module, "guest.bin", "role=guest")
    cfg = BuildConfig(REPORT_KERNEL, CMDLINE, (spec,), output=None, image_size=None)
    return build_image(cfg, tmp / "disk.img"), data


def wrong_report(serial: str, module: bytes) -> str | None:
    report = parse_report(serial)
    if report.one("cmdline")["text"] != CMDLINE:
        return "command line"
    [m] = report.all("module")
    if int(m["size"]) != len(module) or int(m["crc32"], 16) != zlib.crc32(module):
        return "module bytes"
    return None


def read_sectors(image: BuildResult, kernel: bytes, module: bytes) -> dict[str, int]:
    """The first sector of each kind of read: the FAT writer stores each file in order."""
    data = image.output.read_bytes()
    esp = image.layout.esp_first_lba * SECTOR
    reserved = struct.unpack_from("<H", data, esp + 14)[0]

    def at(needle: bytes) -> int:
        found = data.find(needle, esp)
        assert found > 0 and found % SECTOR == 0, needle[:16]
        return int(found // SECTOR)

    config = data.find(b"hvboot-config 1", esp)
    directory = data.find(b"HVBOOT  CFG", esp)  # /hvboot's entry of hvboot.cfg
    return {
        "GPT": 1,
        "FAT": (esp + reserved * SECTOR) // SECTOR,
        "directory": directory // SECTOR,
        "config": config // SECTOR,
        "kernel": at(kernel[:4096]) + 8,
        "module": at(module[:4096]),
    }


def boot(
    image: Path, machine: Machine, bus: str, timeout: float, rules: Path | None = None
) -> tuple[qemu.RunResult, float]:
    start = time.monotonic()
    spec = qemu.QemuSpec(image=image, machine=machine, snapshot=True, disk_bus=bus, blkdebug=rules)
    return qemu.run(spec, timeout=timeout), time.monotonic() - start


def matrix(image: Path, module: bytes, boots: int, timeout: float, firmwares: list[str]) -> int:
    failed = 0
    for firmware, bus, cpus, memory in itertools.product(firmwares, BUSES, (1, 8), ("512M", "6G")):
        machine = Machine(firmware=firmware, memory=memory, cpus=cpus, type="q35")
        kinds: Counter[str] = Counter()
        times = []
        for _ in range(boots):
            result, took = boot(image, machine, BUSES[bus], timeout)
            times.append(took)
            kinds[judge(result, lambda serial: wrong_report(serial, module)).split(":")[0]] += 1
        bad = boots - kinds["ok"]
        failed += bad
        print(
            f"{firmware} {bus:10} -smp {cpus} -m {memory:4}: {kinds['ok']}/{boots} ok; failures: "
            f"{dict(kinds - Counter(ok=kinds['ok'])) or 'none'}; "
            f"{min(times):.1f}-{max(times):.1f} s a boot",
            flush=True,
        )
    return failed


def faults(
    image: BuildResult, module: bytes, tmp: Path, timeout: float, firmwares: list[str]
) -> int:
    failed = 0
    sectors = read_sectors(image, REPORT_KERNEL.read_bytes(), module)
    for (kind, sector), once, firmware, machine_type in itertools.product(
        sectors.items(), (True, False), firmwares, ("pc", "q35")
    ):
        rules = tmp / "blkdebug.cfg"
        rules.write_text(
            f'[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "{sector}"\n'
            f'once = "{"on" if once else "off"}"\n'
        )
        machine = Machine(firmware=firmware, type=machine_type)
        result, took = boot(image.output, machine, "ide", timeout, rules)
        verdict = judge(result, lambda serial: wrong_report(serial, module))
        clear = verdict == "ok" or verdict.startswith(("loader", "firmware"))
        failed += not clear
        words = result.loader_error or (result.outcome if verdict == "firmware" else "")
        print(
            f"{kind:9} sector {sector:6} {'once' if once else 'always':6} {firmware} "
            f"{machine_type:3}: {'ok' if clear else 'FAIL'} {verdict.split(':')[0]} ({took:.1f} s)"
            + (f": {words}" if words else ""),
            flush=True,
        )
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boots", type=int, default=20, help="boots per matrix cell (20)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a boot (120)")
    ap.add_argument("--no-matrix", action="store_true", help="only the fault pass")
    ap.add_argument("--no-faults", action="store_true", help="only the matrix")
    ap.add_argument(
        "--firmwares",
        nargs="+",
        choices=("bios", "uefi"),
        default=["bios", "uefi"],
        help="the firmwares to soak (both)",
    )
    args = ap.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="hvboot-soak-") as tmp:
        image, module = build(Path(tmp))
        if not args.no_matrix:
            failed += matrix(image.output, module, args.boots, args.timeout, args.firmwares)
        if not args.no_faults:
            failed += faults(image, module, Path(tmp), args.timeout, args.firmwares)
    print(f"soak: {failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
