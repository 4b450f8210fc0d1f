"""What the chain of trust costs (issue 14): a signed, measured boot against a plain one.

Two images of the report kernel with a 64 MiB module: plain (`hvboot build`), and signed
(`--sign` with a fresh key set) booted with Secure Boot enforcing (OVMF's SMM build with the keys
enrolled) and a software TPM (`--tpm`: the loader measures into PCRs 8 and 9). Times run from
OVMF's StartImage line (`BdsDxe: starting Boot...`, after the firmware checked the signature) to
the kernel's first line, and from the loader's first line to the kernel's first; the goal is a
ratio of at most 1.3. Both go through `hvboot.vm.qemu.run`, so the TPM is swtpm as `--tpm` starts
it; a line's time is when its bytes reach the host (serial is unbuffered).

    .venv/bin/python bench/trust_cost.py [--runs N]

A benchmark, not a test: scripts/test.sh does not run it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.build import build_image
from hvboot.trust import keys
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

MODULE_BYTES = 64 << 20
MARKS = {"start": bl.OVMF_STARTING.decode(), "loader": "hvboot: hvboot ", "kernel": "HVB begin"}


def timed_boot(image: Path, machine: Machine) -> dict[str, float]:
    """Seconds from QEMU's start to the first sight of each of MARKS on serial."""
    seen: dict[str, float] = {}
    text = ""
    t0 = time.monotonic()

    def echo(chunk: str) -> None:
        nonlocal text
        now = time.monotonic() - t0
        text = (text + chunk)[-8192:]
        for name, mark in MARKS.items():
            if name not in seen and mark in text:
                seen[name] = now

    spec = qemu.QemuSpec(image=image, machine=machine, snapshot=True)
    result = qemu.run(spec, timeout=600, echo=echo)
    if not result.ok or set(seen) != set(MARKS):
        raise SystemExit(f"{image.name}: {result.outcome}\n{result.serial[-2000:]}")
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    w = bl.Workdir.create()
    try:
        key_dir = w.path / "keys"
        keys.new(key_dir)
        mods = (ModuleSpec(bl.module_file(w, MODULE_BYTES), "big.bin", ""),)

        def image(name: str, sign: Path | None) -> Path:
            cfg = BuildConfig(bl.REPORT_KERNEL, "", mods, None, None, sign=sign)
            return build_image(cfg, w.path / f"{name}.img").output

        subjects = {
            "plain": (image("plain", None), Machine()),
            "signed+measured": (
                image("signed", key_dir),
                Machine(secure_boot=key_dir, tpm=True),
            ),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in subjects}
        for r in range(args.runs):
            for name, (img, machine) in subjects.items():
                runs[name].append(timed_boot(img, machine))
            print(f"round {r + 1}/{args.runs} done", file=sys.stderr)

        def span(name: str, frm: str) -> float:
            return bl.median([b["kernel"] - b[frm] for b in runs[name]])

        print(f"\nSigned + measured vs plain, report kernel + {MODULE_BYTES >> 20} MiB module, "
              f"q35, median of {args.runs} run(s)")  # fmt: skip
        print(f"{'boot':16} {'StartImage->kernel s':>21} {'loader->kernel s':>17}")
        for name in subjects:
            print(f"{name:16} {span(name, 'start'):21.2f} {span(name, 'loader'):17.2f}")
        for frm in ("start", "loader"):
            ratio = span("signed+measured", frm) / span("plain", frm)
            print(f"ratio from {MARKS[frm]!r}: {ratio:.2f}x (goal <= 1.3x)")
        return 0
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
