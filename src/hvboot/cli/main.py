"""The `hvboot` command line: build, run, test, debug, inspect, predict-pcrs, new, demo, doctor,
gen-*.

Exit statuses of `hvboot run` and `hvboot test` (docs/getting-started.md, "Exit statuses"):

    0   the kernel reported success (exit_qemu(EXIT_SUCCESS), QEMU status 33)
    1   the kernel reported failure (exit_qemu(EXIT_FAILURE), QEMU status 35)
    2   bad input: hvboot refused before booting (the message names the file and field)
    4   timed out (the message names the timeout)
    6   the loader stopped with an error ("hvboot: error: ..." on COM1)
    8   the machine reset or powered off before the kernel reported (e.g. a triple fault)
    10  QEMU failed (its own messages are shown) or was killed
    12  the firmware never started the loader (the message quotes the firmware's last words)
    14  --tpm: the loader measured, and the PCRs differ from `hvboot predict-pcrs`
    odd the kernel exited with another code V: QEMU's status (V << 1) | 1 (mod 256), as is

Every other command exits 0 on success, 2 on bad input and 1 on other failures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hvboot.cli import doctor
from hvboot.config import settings
from hvboot.config.build import BuildConfig
from hvboot.errors import HvbootError
from hvboot.image.build import BuildResult, build_image
from hvboot.image.iso import build_iso, is_iso
from hvboot.image.netboot import BOOT_FILE, build_netboot
from hvboot.kernel import limine
from hvboot.kernel.elf import ELF_MAGIC
from hvboot.loader import artifacts
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

# Exit statuses of `hvboot run` / `hvboot test` (see the module docstring).
EXIT_OK = 0
EXIT_KERNEL_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 4
EXIT_LOADER_ERROR = 6
EXIT_NO_RESULT = 8
EXIT_QEMU_FAILED = 10
EXIT_NO_LOADER = 12
EXIT_PCRS_DIFFER = 14
PCRS_DIFFER = "the PCRs differ from predict-pcrs"
BATCH_TIMEOUT = 600.0


def _say(text: str) -> None:
    print(f"hvboot: {text}", file=sys.stderr, flush=True)


def _add_target(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "target",
        nargs="?",
        type=Path,
        help="a disk image or a kernel ELF (default: the config file's kernel)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings from this hvboot.toml; flags override them (default: the hvboot.toml "
        "of the Cargo crate around the current directory, docs/config.md)",
    )
    settings.add_flags(p, verb)


class _Version(argparse.Action):
    """--version: the package, the loader build and the protocol, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: object) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="the package version, the loader build and the boot protocol version",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(artifacts.build_info().line())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hvboot", description="Build, boot and test x86_64 hypervisor kernels."
    )
    ap.add_argument("--version", action=_Version)
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="write a bootable disk image for a kernel")
    b.add_argument("kernel", nargs="?", type=Path, help="the kernel ELF")
    b.add_argument(
        "--config", type=Path, help="settings from a TOML file (docs/config.md); flags override"
    )
    settings.add_flags(b, "build")

    for name, text in (
        ("run", "boot an image or kernel in QEMU, serial on the terminal"),
        ("test", "boot headless; exit 0 only if the kernel reports success"),
    ):
        _add_target(sub.add_parser(name, help=text), name)

    dbg = sub.add_parser(
        "debug", help="boot stopped at reset with GDB attached (kernel or loader symbols)"
    )
    _add_target(dbg, "debug")
    dbg.add_argument(
        "--break",
        dest="breaks",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="hardware breakpoint at SYMBOL or *ADDR (repeatable; default: the entry point)",
    )
    dbg.add_argument(
        "--loader",
        action="store_true",
        help="load the UEFI loader's symbols where OVMF put it instead (default break: efi_main)",
    )
    dbg.add_argument(
        "--no-gdb", action="store_true", help="only start QEMU and print the gdb command"
    )
    dbg.add_argument(
        "--batch",
        type=Path,
        metavar="FILE",
        help="run GDB on FILE in batch mode; exit with its status",
    )

    ins = sub.add_parser(
        "inspect", help="show a kernel's load plan and problems, or a disk image's contents"
    )
    ins.add_argument("target", type=Path, help="a kernel ELF or an hvboot disk image")
    ins.add_argument("--json", action="store_true", help="machine-readable output")

    pp = sub.add_parser(
        "predict-pcrs",
        help="the PCR values a measured boot of an image leaves (docs/trust.md)",
    )
    pp.add_argument("image", type=Path, help="an hvboot disk image")
    new = sub.add_parser("new", help="write a new kernel crate (cargo run / cargo test boot it)")
    new.add_argument("name", help="the crate's name, e.g. my-kernel")
    new.add_argument(
        "--path", type=Path, help="where to create the crate (default: ./NAME); must not exist"
    )

    d = sub.add_parser("demo", help="build the sample hypervisor and boot it (BIOS, then UEFI)")
    settings.add_flags(d, "demo")

    w = sub.add_parser("write", help="write an image or ISO to a whole disk (USB stick), verified")
    w.add_argument("image", type=Path, help="the disk image or ISO (hvboot build -o ...)")
    w.add_argument("device", type=Path, help="the whole disk, e.g. /dev/sdb (not /dev/sdb1)")
    w.add_argument("--yes", action="store_true", help="do not ask before overwriting DEVICE")

    k = sub.add_parser("keys", help="Secure Boot keys of your own (docs/trust.md)")
    k.add_argument("action", choices=["new"], help="new: make a PK, KEK and db key set")
    k.add_argument("dir", type=Path, help="the directory to write them to (never overwritten)")

    sub.add_parser("doctor", help="what is installed, what is missing and how to get it")

    g = sub.add_parser("gen-protocol", help="regenerate the protocol's Rust, C and doc files")
    g.add_argument("--check", action="store_true", help="only check that they are up to date")

    gd = sub.add_parser("gen-docs", help="regenerate the settings reference in docs/config.md")
    gd.add_argument("--check", action="store_true", help="only check that it is up to date")
    return ap


def cmd_build(args: argparse.Namespace) -> int:
    s = settings.resolve("build", args, args.config)
    if s.kernel is None:
        if args.config:
            settings.require_kernel({}, args.config)
        raise HvbootError("hvboot build", "give a kernel ELF, or --config FILE")
    if s.netboot is not None:
        if s.iso:
            raise HvbootError("--netboot", "writes a TFTP tree; it does not go with --iso")
        tree = build_netboot(s.build_config(), s.netboot)
        _say(f"wrote {len(tree.files)} files under {tree.root} (TFTP boot file {BOOT_FILE})")
        return 0
    output = s.output
    if output is None:
        if args.config:
            raise HvbootError(args.config, "output: no output image given (set it or use -o)")
        raise HvbootError("hvboot build", "give the image to write with -o IMAGE")
    cfg = s.build_config()
    if s.iso:
        iso = build_iso(cfg, output)
        _say(
            f"wrote {output} ({iso.size // (1 << 20)} MiB hybrid ISO, {iso.fat_type} ESP image, "
            f"{len(cfg.modules)} module(s))"
        )
        return 0
    result = build_image(cfg, output)
    _say(
        f"wrote {output} ({result.layout.total_sectors * 512 // (1 << 20)} MiB, "
        f"{result.layout.fat_type} ESP, {len(cfg.modules)} module(s), "
        f"kernel kind {result.plan.kind})"
    )
    if result.plan.relocatable:
        _say(
            f"position-independent kernel: {result.plan.relocations} relocations, "
            f"runs at {result.plan.virt_start:#x} (slide {result.plan.slide:#x})"
        )
    if result.limine is not None:
        _say("kernel protocol: limine")
        for line in limine.describe(result.limine):
            _say(line)
    return 0


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == ELF_MAGIC
    except FileNotFoundError:
        raise HvbootError(path, "no such file (expected a disk image or a kernel ELF)") from None
    except OSError as e:
        raise HvbootError(path, f"cannot read it: {e.strerror}") from None


def _build_with_progress(cfg: BuildConfig, image: Path) -> BuildResult:
    _say(f"building a disk image for {cfg.kernel} ...")
    start = time.monotonic()
    result = build_image(cfg, image)
    size = result.layout.total_sectors * 512 // (1 << 20)
    _say(
        f"built {image.name}: {size} MiB, {result.layout.fat_type} ESP, kernel entry "
        f"{result.plan.entry:#x}, {len(result.files)} file(s) ({time.monotonic() - start:.1f} s)"
    )
    return result


def _settings(verb: str, args: argparse.Namespace) -> settings.Settings:
    """The settings of run/test/debug: --config FILE, else the crate's hvboot.toml, and flags."""
    config = args.config
    if config is None:
        config = settings.discover()
        if config is not None:
            _say(f"settings from {config} (the crate's {settings.CONFIG_NAME}; flags override)")
    return settings.resolve(verb, args, config)


@dataclass(frozen=True)
class _Target:
    given: Path  # what the user named (or the config's kernel)
    image: Path  # the disk image to boot
    kernel: Path | None  # the kernel ELF the image was built from, when hvboot built it
    machine: Machine


def _prepare(verb: str, args: argparse.Namespace, tmp: Path) -> _Target:
    """Settle the settings, and build a disk image when the target is a kernel ELF."""
    s = _settings(verb, args)
    target = args.target or s.kernel
    if target is None:
        raise HvbootError(
            f"hvboot {verb}", "give a disk image or a kernel ELF (or `kernel` in the config file)"
        )
    if _is_elf(target):
        image = tmp / "disk.img"
        _build_with_progress(s.build_config(target), image)
        return _Target(target, image, target, s.machine)
    if args.cmdline is not None or args.modules:
        raise HvbootError(target, "--cmdline and --module need a kernel ELF, not an image")
    return _Target(target, target, None, s.machine)


def _boot(target: Path, image: Path, machine: Machine, *, interactive: bool) -> qemu.RunResult:
    media = "cdrom" if is_iso(image) else "disk"
    spec = qemu.QemuSpec(image=image, machine=machine, snapshot=not interactive, media=media)
    timeout = f", timeout {machine.timeout:g} s" if machine.timeout else ""
    as_cd = " as a CD" if media == "cdrom" else ""
    _say(f"booting {target}{as_cd} under {machine.firmware.upper()} (QEMU, TCG{timeout})")
    if machine.serial_log:
        _say(f"serial output also goes to {machine.serial_log}")

    def echo(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    return qemu.run(
        spec,
        timeout=machine.timeout,
        echo=echo,
        serial_log=machine.serial_log,
        interactive=interactive,
    )


def _boot_target(verb: str, args: argparse.Namespace) -> tuple[Machine, qemu.RunResult]:
    with tempfile.TemporaryDirectory(prefix="hvboot-") as tmp:
        t = _prepare(verb, args, Path(tmp))
        result = _boot(t.given, t.image, t.machine, interactive=verb == "run")
        if result.pcrs is not None:
            _tpm_report(t.image, result)
        return t.machine, result


def _tpm_report(image: Path, result: qemu.RunResult) -> None:
    """With --tpm: the PCRs the loader extends, against `predict-pcrs`; a boot the loader
    measured fails when they differ."""
    from hvboot.loader import checker
    from hvboot.trust import pcrs

    assert result.pcrs is not None
    try:
        expected = pcrs.predict(checker.esp_files(image.read_bytes(), str(image)), str(image))
    except HvbootError as e:
        _say(f"tpm: no prediction ({e})")
        expected = {}
    measured = any(pcrs.MEASURED in line for line in result.lines)
    if not measured:
        _say("tpm: the loader measured nothing (its reason is on serial)")
    wrong = []
    for bank, values in result.pcrs.items():
        for index in (pcrs.PCR_CONFIG, pcrs.PCR_FILES):
            got, want = values.get(index), expected.get(bank, {}).get(index)
            note = "" if want is None else " (as predicted)" if got == want else " (DIFFERS)"
            _say(f"tpm: {bank}:{index} {got}{note}")
            if want is not None and got != want:
                wrong.append(f"{bank}:{index}")
    if measured and wrong:
        result.ok = False
        result.outcome = f"{PCRS_DIFFER}: {', '.join(wrong)}"


def exit_status(result: qemu.RunResult) -> int:
    """The exit status of `hvboot run`/`hvboot test` for a boot's result (module docstring)."""
    if result.ok:
        return EXIT_OK
    if result.outcome.startswith("the loader stopped"):
        return EXIT_LOADER_ERROR
    if result.outcome.startswith(PCRS_DIFFER):
        return EXIT_PCRS_DIFFER
    if not result.loader_started:
        return EXIT_NO_LOADER
    if result.timed_out:
        return EXIT_TIMEOUT
    status = result.status
    if status == qemu.STATUS_FAILURE:
        return EXIT_KERNEL_FAILURE
    if status == 0:
        return EXIT_NO_RESULT
    if status == 1:
        # QEMU's own errors come with a message; exit_qemu(0) exits 1 silently.
        return EXIT_QEMU_FAILED if result.stderr.strip() else EXIT_KERNEL_FAILURE
    if status is not None and 1 < status < 256 and status % 2 == 1:
        return status
    return EXIT_QEMU_FAILED


def _outcome(machine: Machine, result: qemu.RunResult) -> str:
    text = result.outcome
    if result.timed_out and machine.timeout is not None:
        text += f" (--timeout {machine.timeout:g}; give a larger one if the kernel is just slow)"
    return f"{text} ({result.elapsed:.1f} s, exit status {exit_status(result)})"


def cmd_run(args: argparse.Namespace) -> int:
    machine, result = _boot_target("run", args)
    _say(_outcome(machine, result))
    return exit_status(result)


def _verdict(machine: Machine, result: qemu.RunResult) -> int:
    _say(("PASS: " if result.ok else "FAIL: ") + _outcome(machine, result))
    return exit_status(result)


def cmd_test(args: argparse.Namespace) -> int:
    return _verdict(*_boot_target("test", args))


def cmd_debug(args: argparse.Namespace) -> int:
    from hvboot.vm import debug

    with tempfile.TemporaryDirectory(prefix="hvboot-") as tmp:
        t = _prepare("debug", args, Path(tmp))
        if args.batch is not None and not args.batch.is_file():
            raise HvbootError(args.batch, "--batch: no such GDB script")
        machine = t.machine
        if args.batch and not machine.timeout:
            # A batch session must end: a breakpoint that is never hit would wait forever.
            machine = dataclasses.replace(machine, timeout=BATCH_TIMEOUT)
        req = debug.DebugRequest(
            image=t.image,
            kernel=t.kernel,
            machine=machine,
            breaks=args.breaks,
            loader=args.loader,
            no_gdb=args.no_gdb,
            batch=args.batch,
            say=_say,
        )
        result = debug.run(req)
    if result.timed_out:
        _say(f"debug session timed out after {req.machine.timeout:g} s (--timeout); QEMU stopped")
        return EXIT_TIMEOUT
    return result.status


def cmd_inspect(args: argparse.Namespace) -> int:
    from hvboot.cli import inspect as inspect_cmd

    return inspect_cmd.main(args.target, as_json=args.json)


def cmd_predict_pcrs(args: argparse.Namespace) -> int:
    from hvboot.loader import checker
    from hvboot.trust import pcrs

    image: Path = args.image
    if not image.is_file():
        raise HvbootError(image, "no such disk image")
    files = checker.esp_files(image.read_bytes(), str(image))
    for line in pcrs.text(pcrs.predict(files, str(image))):
        print(line)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from hvboot.cli import new as template

    dest = template.create(args.name, args.path)
    _say(f"created kernel crate {args.name!r} in {dest}")
    print(f"next: cd {dest} && cargo run    # boots it in QEMU; cargo test runs tests/ in QEMU")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from hvboot.trust import keys

    written = keys.new(args.dir)
    _say(f"wrote {len(written)} files to {args.dir}: " + ", ".join(p.name for p in written))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if not artifacts.INSTALLED:
        _say(f"building the sample hypervisor ({artifacts.HYPERVISOR_CRATE})")
    kernel = artifacts.sample_hypervisor()
    s = settings.resolve("demo", args, None)
    cfg = dataclasses.replace(s.build_config(kernel), cmdline="demo=1")
    status = 0
    with tempfile.TemporaryDirectory(prefix="hvboot-") as tmp:
        image = Path(tmp) / "disk.img"
        _build_with_progress(cfg, image)
        for firmware in args.firmwares or ["bios", "uefi"]:
            machine = dataclasses.replace(s.machine, firmware=firmware)
            result = _boot(cfg.kernel, image, machine, interactive=False)
            status = status or _verdict(machine, result)
    return status


def cmd_gen_protocol(args: argparse.Namespace) -> int:
    from hvboot.protocol import codegen

    repo = artifacts.checkout("gen-protocol")
    if args.check:
        stale = [
            str(rel)
            for rel, text in codegen.outputs().items()
            if not (repo / rel).is_file() or (repo / rel).read_text() != text
        ]
        if stale:
            raise HvbootError(", ".join(stale), "stale: run `hvboot gen-protocol`")
        _say("generated protocol files are up to date")
        return 0
    for path in codegen.write_all(repo):
        _say(f"wrote {path}")
    return 0


def cmd_gen_docs(args: argparse.Namespace) -> int:
    path = artifacts.checkout("gen-docs") / settings.DOC_PATH
    text = path.read_text()
    fresh = settings.render_doc(text)
    if args.check:
        if fresh != text:
            raise HvbootError(path, "the settings section is stale: run `hvboot gen-docs`")
        _say(f"the settings reference in {settings.DOC_PATH} is up to date")
    elif fresh != text:
        path.write_text(fresh)
        _say(f"wrote {path}")
    return 0


def cmd_write(args: argparse.Namespace) -> int:
    from hvboot.image import write

    def confirm(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise HvbootError(args.device, "not written: no terminal to ask on; pass --yes")
        return input(f"hvboot: {question} Type yes: ").strip() == "yes"

    def progress(done: int, total: int) -> None:
        print(f"\rhvboot: written {done >> 20} of {total >> 20} MiB", end="", file=sys.stderr)

    live = sys.stderr.isatty()
    result = write.write(
        args.image, args.device, confirm=confirm, progress=progress if live else lambda *_: None
    )
    if live:
        print(file=sys.stderr)
    mib_s = result.bytes / 2**20 / max(result.seconds, 1e-6)
    _say(f"wrote and verified {result.bytes} bytes on {args.device} ({mib_s:.1f} MiB/s)")
    return 0


COMMANDS = {
    "build": cmd_build,
    "run": cmd_run,
    "test": cmd_test,
    "debug": cmd_debug,
    "inspect": cmd_inspect,
    "predict-pcrs": cmd_predict_pcrs,
    "new": cmd_new,
    "keys": cmd_keys,
    "demo": cmd_demo,
    "write": cmd_write,
    "doctor": lambda _args: doctor.main(),
    "gen-protocol": cmd_gen_protocol,
    "gen-docs": cmd_gen_docs,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except HvbootError as e:
        _say(f"error: {e}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`hvboot inspect ... | head`): not an error of ours. Point
        # stdout at /dev/null so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
