"""The `hvboot` command line: build, run, test, debug, inspect, new, demo, doctor, gen-protocol.

Exit statuses of `hvboot run` and `hvboot test` (docs/getting-started.md, "Exit statuses"):

    0   the kernel reported success (exit_qemu(EXIT_SUCCESS), QEMU status 33)
    1   the kernel reported failure (exit_qemu(EXIT_FAILURE), QEMU status 35)
    2   bad input: hvboot refused before booting (the message names the file and field)
    4   timed out (the message names the timeout)
    6   the loader stopped with an error ("hvboot: error: ..." on COM1)
    8   the machine reset or powered off before the kernel reported (e.g. a triple fault)
    10  QEMU failed (its own messages are shown) or was killed
    odd the kernel exited with another code V: QEMU's status (V << 1) | 1 (mod 256), as is

Every other command exits 0 on success, 2 on bad input and 1 on other failures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from hvboot import __version__
from hvboot.cli import doctor
from hvboot.config.build import BuildConfig, check_cmdline, load_config, module_arg, parse_size
from hvboot.errors import HvbootError
from hvboot.image.build import BuildResult, build_image
from hvboot.kernel.elf import ELF_MAGIC
from hvboot.loader import artifacts
from hvboot.vm import qemu

# Exit statuses of `hvboot run` / `hvboot test` (see the module docstring).
EXIT_OK = 0
EXIT_KERNEL_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 4
EXIT_LOADER_ERROR = 6
EXIT_NO_RESULT = 8
EXIT_QEMU_FAILED = 10
BATCH_TIMEOUT = 600.0


def _say(text: str) -> None:
    print(f"hvboot: {text}", file=sys.stderr, flush=True)


def _add_build_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cmdline", default=None, help="the kernel command line")
    p.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="PATH[:CMDLINE]",
        help="a module to load (repeatable); its name is the file name",
    )


def _add_machine(p: argparse.ArgumentParser, default_timeout: float | None) -> None:
    p.add_argument("--firmware", choices=("uefi", "bios"), default="uefi")
    p.add_argument("--memory", default="512M", help="guest RAM, as QEMU's -m (default 512M)")
    p.add_argument("--cpus", type=int, default=1, help="virtual CPUs (default 1)")
    p.add_argument("--machine", default="q35", help="QEMU machine type (default q35)")
    p.add_argument("--cpu", default="max", help="QEMU CPU model (default max: SVM + NPT)")
    p.add_argument(
        "--timeout",
        type=float,
        default=default_timeout,
        help=f"seconds before giving up (default {default_timeout or 'none'})",
    )
    p.add_argument("--serial-log", type=Path, help="also write the serial output to this file")
    p.add_argument("qemu_args", nargs="*", help="extra QEMU arguments, after --")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hvboot", description="Build, boot and test x86_64 hypervisor kernels."
    )
    ap.add_argument("--version", action="version", version=f"hvboot {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="write a bootable disk image for a kernel")
    b.add_argument("kernel", nargs="?", type=Path, help="the kernel ELF")
    b.add_argument("-o", "--output", type=Path, help="the image to write")
    b.add_argument("--config", type=Path, help="read kernel, cmdline and modules from a TOML file")
    b.add_argument("--image-size", help="total image size, e.g. 64M (default: just enough)")
    _add_build_inputs(b)

    for name, timeout, text in (
        ("run", None, "boot an image or kernel in QEMU, serial on the terminal"),
        ("test", 120.0, "boot headless; exit 0 only if the kernel reports success"),
    ):
        r = sub.add_parser(name, help=text)
        r.add_argument("target", type=Path, help="a disk image or a kernel ELF")
        _add_build_inputs(r)
        _add_machine(r, timeout)

    dbg = sub.add_parser(
        "debug", help="boot stopped at reset with GDB attached (kernel or loader symbols)"
    )
    dbg.add_argument("target", type=Path, help="a disk image or a kernel ELF")
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
    _add_build_inputs(dbg)
    _add_machine(dbg, None)

    ins = sub.add_parser(
        "inspect", help="show a kernel's load plan and problems, or a disk image's contents"
    )
    ins.add_argument("target", type=Path, help="a kernel ELF or an hvboot disk image")
    ins.add_argument("--json", action="store_true", help="machine-readable output")

    new = sub.add_parser("new", help="write a new kernel crate (cargo run / cargo test boot it)")
    new.add_argument("name", help="the crate's name, e.g. my-kernel")
    new.add_argument(
        "--path", type=Path, help="where to create the crate (default: ./NAME); must not exist"
    )

    d = sub.add_parser("demo", help="build the sample hypervisor and boot it (BIOS, then UEFI)")
    d.add_argument(
        "--firmware",
        choices=("uefi", "bios"),
        action="append",
        help="boot under this firmware only (repeatable; default: bios and uefi)",
    )
    d.add_argument("--timeout", type=float, default=180.0)

    sub.add_parser("doctor", help="what is installed, what is missing and how to get it")

    g = sub.add_parser("gen-protocol", help="regenerate the protocol's Rust, C and doc files")
    g.add_argument("--check", action="store_true", help="only check that they are up to date")
    return ap


def _cli_config(args: argparse.Namespace, kernel: Path) -> BuildConfig:
    cmdline = check_cmdline(args.cmdline or "", "--cmdline")
    modules = tuple(module_arg(m) for m in args.module)
    names = [m.name for m in modules]
    for name in names:
        if names.count(name) > 1:
            raise HvbootError("--module", f"two modules are named {name!r}; names must differ")
    size = getattr(args, "image_size", None)
    return BuildConfig(
        kernel=kernel.absolute(),
        cmdline=cmdline,
        modules=modules,
        output=None,
        image_size=parse_size(size, "--image-size", multiple_of=512) if size else None,
    )


def cmd_build(args: argparse.Namespace) -> int:
    if args.config:
        if args.kernel or args.cmdline is not None or args.module:
            raise HvbootError("--config", "give the kernel, --cmdline and --module in the file")
        cfg = load_config(args.config)
        if args.image_size:
            size = parse_size(args.image_size, "--image-size", multiple_of=512)
            cfg = BuildConfig(cfg.kernel, cfg.cmdline, cfg.modules, cfg.output, size)
        output = args.output or cfg.output
        if output is None:
            raise HvbootError(args.config, "output: no output image given (set it or use -o)")
    else:
        if args.kernel is None:
            raise HvbootError("hvboot build", "give a kernel ELF, or --config FILE")
        cfg = _cli_config(args, args.kernel)
        output = args.output
        if output is None:
            raise HvbootError("hvboot build", "give the image to write with -o IMAGE")
    result = build_image(cfg, output)
    _say(
        f"wrote {output} ({result.layout.total_sectors * 512 // (1 << 20)} MiB, "
        f"{result.layout.fat_type} ESP, {len(cfg.modules)} module(s))"
    )
    return 0


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == ELF_MAGIC
    except FileNotFoundError:
        raise HvbootError(path, "no such file (expected a disk image or a kernel ELF)") from None
    except OSError as e:
        raise HvbootError(path, f"cannot read it: {e.strerror}") from None


def _build_with_progress(args: argparse.Namespace, kernel: Path, image: Path) -> BuildResult:
    _say(f"building a disk image for {kernel} ...")
    start = time.monotonic()
    result = build_image(_cli_config(args, kernel), image)
    size = result.layout.total_sectors * 512 // (1 << 20)
    _say(
        f"built {image.name}: {size} MiB, {result.layout.fat_type} ESP, kernel entry "
        f"{result.plan.entry:#x}, {len(result.files)} file(s) ({time.monotonic() - start:.1f} s)"
    )
    return result


def _boot(args: argparse.Namespace, *, interactive: bool) -> qemu.RunResult:
    with tempfile.TemporaryDirectory(prefix="hvboot-") as tmp:
        image = args.target
        if _is_elf(args.target):
            image = Path(tmp) / "disk.img"
            _build_with_progress(args, args.target, image)
        elif args.cmdline is not None or args.module:
            raise HvbootError(args.target, "--cmdline and --module need a kernel ELF, not an image")
        spec = qemu.QemuSpec(
            image=image,
            firmware=args.firmware,
            memory=args.memory,
            cpus=args.cpus,
            machine=args.machine,
            cpu=args.cpu,
            extra=args.qemu_args,
            snapshot=not interactive,
        )
        timeout = f", timeout {args.timeout:g} s" if args.timeout else ""
        _say(f"booting {args.target} under {args.firmware.upper()} (QEMU, TCG{timeout})")
        if args.serial_log:
            _say(f"serial output also goes to {args.serial_log}")

        def echo(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        return qemu.run(
            spec,
            timeout=args.timeout,
            echo=echo,
            serial_log=args.serial_log,
            interactive=interactive,
        )


def exit_status(result: qemu.RunResult) -> int:
    """The exit status of `hvboot run`/`hvboot test` for a boot's result (module docstring)."""
    if result.ok:
        return EXIT_OK
    if result.outcome.startswith("the loader stopped"):
        return EXIT_LOADER_ERROR
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


def _outcome(args: argparse.Namespace, result: qemu.RunResult) -> str:
    text = result.outcome
    if result.timed_out:
        text += f" (--timeout {args.timeout:g}; give a larger one if the kernel is just slow)"
    return f"{text} ({result.elapsed:.1f} s, exit status {exit_status(result)})"


def cmd_run(args: argparse.Namespace) -> int:
    result = _boot(args, interactive=True)
    _say(_outcome(args, result))
    return exit_status(result)


def cmd_test(args: argparse.Namespace) -> int:
    result = _boot(args, interactive=False)
    _say(("PASS: " if result.ok else "FAIL: ") + _outcome(args, result))
    return exit_status(result)


def cmd_debug(args: argparse.Namespace) -> int:
    from hvboot.vm import debug

    with tempfile.TemporaryDirectory(prefix="hvboot-") as tmp:
        kernel: Path | None = None
        image = args.target
        if _is_elf(args.target):
            kernel = args.target
            image = Path(tmp) / "disk.img"
            _build_with_progress(args, args.target, image)
        elif args.cmdline is not None or args.module:
            raise HvbootError(args.target, "--cmdline and --module need a kernel ELF, not an image")
        if args.batch is not None and not args.batch.is_file():
            raise HvbootError(args.batch, "--batch: no such GDB script")
        req = debug.DebugRequest(
            image=image,
            kernel=kernel,
            firmware=args.firmware,
            breaks=args.breaks,
            loader=args.loader,
            no_gdb=args.no_gdb,
            batch=args.batch,
            memory=args.memory,
            cpus=args.cpus,
            machine=args.machine,
            cpu=args.cpu,
            extra=args.qemu_args,
            serial_log=args.serial_log,
            # A batch session must end: a breakpoint that is never hit would wait forever.
            timeout=args.timeout if args.timeout or not args.batch else BATCH_TIMEOUT,
            say=_say,
        )
        result = debug.run(req)
    if result.timed_out:
        _say(f"debug session timed out after {req.timeout:g} s (--timeout); QEMU stopped")
        return EXIT_TIMEOUT
    return result.status


def cmd_inspect(args: argparse.Namespace) -> int:
    from hvboot.cli import inspect as inspect_cmd

    return inspect_cmd.main(args.target, as_json=args.json)


def cmd_new(args: argparse.Namespace) -> int:
    from hvboot.cli import new as template

    dest = template.create(args.name, args.path)
    _say(f"created kernel crate {args.name!r} in {dest}")
    print(f"next: cd {dest} && cargo run    # boots it in QEMU; cargo test runs tests/ in QEMU")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _say(f"building the sample hypervisor ({artifacts.HYPERVISOR_CRATE})")
    artifacts.cargo_build(artifacts.HYPERVISOR_CRATE)
    status = 0
    for firmware in args.firmware or ["bios", "uefi"]:
        ns = argparse.Namespace(
            target=artifacts.HYPERVISOR_ELF,
            cmdline="demo=1",
            module=[],
            image_size=None,
            firmware=firmware,
            memory="512M",
            cpus=1,
            machine="q35",
            cpu="max",
            timeout=args.timeout,
            serial_log=None,
            qemu_args=[],
        )
        status = status or cmd_test(ns)
    return status


def cmd_gen_protocol(args: argparse.Namespace) -> int:
    from hvboot.protocol import codegen

    if args.check:
        stale = [
            str(rel)
            for rel, text in codegen.outputs().items()
            if not (artifacts.REPO / rel).is_file() or (artifacts.REPO / rel).read_text() != text
        ]
        if stale:
            raise HvbootError(", ".join(stale), "stale: run `hvboot gen-protocol`")
        _say("generated protocol files are up to date")
        return 0
    for path in codegen.write_all(artifacts.REPO):
        _say(f"wrote {path}")
    return 0


COMMANDS = {
    "build": cmd_build,
    "run": cmd_run,
    "test": cmd_test,
    "debug": cmd_debug,
    "inspect": cmd_inspect,
    "new": cmd_new,
    "demo": cmd_demo,
    "doctor": lambda _args: doctor.main(),
    "gen-protocol": cmd_gen_protocol,
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
