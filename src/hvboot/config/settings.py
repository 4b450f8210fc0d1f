"""The settings table: everything a user can set, declared once.

Each `Setting` names its TOML key (and table), its CLI flag(s), the check that turns a value
from the file or from a flag into a checked one, its default, the verbs that take it and its help.
The table feeds:

* the CLI: `add_flags` adds a verb's flags to its argparse parser (src/hvboot/cli/main.py);
* hvboot.toml: `read_file` checks a file against it (unknown keys, wrong types, missing files,
  every error naming the file and the key path);
* the docs: `doc_section` is the settings reference in docs/config.md (`hvboot gen-docs`).

Precedence is default < file < flag (`resolve`): a flag given on the command line replaces the
file's value, lists included (`--module` flags replace the file's `[[modules]]`, the QEMU
arguments after `--` replace `machine.qemu_args`). `run`, `test` and `debug` without `--config`
use the hvboot.toml that `discover` finds inside a Cargo crate (the cargo-runner case).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvboot.config.build import (
    MAX_CMDLINE_BYTES,
    BuildConfig,
    ModuleSpec,
    _check_file,
    _check_keys,
    _describe,
    _expect_str,
    _module,
    _read_toml,
    _resolve,
    check_cmdline,
    check_unique_names,
    module_arg,
    parse_size,
)
from hvboot.errors import HvbootError
from hvboot.units import MIB, SECTOR_SIZE
from hvboot.vm.machine import Machine

__all__ = [
    "CONFIG_NAME",
    "SETTINGS",
    "Setting",
    "Settings",
    "add_flags",
    "discover",
    "doc_section",
    "load_config",
    "read_file",
    "require_kernel",
    "resolve",
]

CONFIG_NAME = "hvboot.toml"
BUILD_VERBS = ("build", "run", "test", "debug")
BOOT_VERBS = ("run", "test", "debug")
MACHINE_TABLE = "machine"

# A check turns a value from the file (any TOML type) or a flag (after argparse's `type`) into
# the checked value; `where` names the file and key, or the flag; `base` is the directory
# relative paths are resolved against (the file's, or the current one for flags).
Check = Callable[[Any, str, Path], Any]


@dataclass(frozen=True)
class Setting:
    name: str  # the attribute: Settings.<name>, or Machine.<name> for the [machine] table
    table: str  # the TOML table ("" is the top level)
    key: str  # the TOML key
    flags: tuple[str, ...]  # the CLI flags; () for a positional argument (see `positional`)
    kind: str  # what a value must be, as the docs and errors say it
    check: Check
    default: Any
    verbs: tuple[str, ...]  # the commands that take it
    help: str
    positional: str = ""  # how the CLI gives it when it has no flag (docs)
    metavar: str | None = None
    cli_type: Callable[[str], Any] | None = None  # argparse's type= for the flag
    choices: tuple[str, ...] | None = None
    repeat: bool = False  # the flag is repeatable and gives a list
    repeat_verbs: tuple[str, ...] = ()  # verbs where a single-value flag is repeatable
    flag_check: Check | None = None  # when flags are checked differently from the file
    verb_defaults: Mapping[str, Any] = field(default_factory=dict)
    switch: bool = False  # a flag without a value (`--iso`); `key = true` in the file

    @property
    def path(self) -> str:
        """The key path in the file: `cmdline`, `machine.cpus`."""
        return f"{self.table}.{self.key}" if self.table else self.key

    def default_for(self, verb: str) -> Any:
        return self.verb_defaults.get(verb, self.default)


# ---------------------------------------------------------------------------
# Checks


def _string(value: object, where: str, base: Path) -> str:
    text = _expect_str(value, where)
    if not text.strip():
        raise HvbootError(where, "expected a non-empty string")
    return text


def _cmdline(value: object, where: str, base: Path) -> str:
    return check_cmdline(_expect_str(value, where), where)


def _existing_file(value: object, where: str, base: Path) -> Path:
    path = _resolve(_expect_str(value, where), base, where)
    _check_file(path, where, f" (relative paths are resolved against {base})")
    return path


TPM_POLICIES = ("required", "if-present")


def _tpm_policy(value: object, where: str, base: Path) -> str:
    text = _expect_str(value, where)
    if text not in TPM_POLICIES:
        raise HvbootError(where, f'{text!r}: expected "required" or "if-present"')
    return text


def _path(value: object, where: str, base: Path) -> Path:
    return _resolve(_expect_str(value, where), base, where)


def _image_size(value: object, where: str, base: Path) -> int:
    return parse_size(value, where, multiple_of=SECTOR_SIZE)  # type: ignore[arg-type]


def _file_modules(value: object, where: str, base: Path) -> tuple[ModuleSpec, ...]:
    if not isinstance(value, list):
        raise HvbootError(
            where, f"expected an array of tables ([[modules]]), got {_describe(value)}"
        )
    file = where.rpartition(": ")[0]
    named = [_module(entry, i, file, base) for i, entry in enumerate(value)]
    check_unique_names(named)
    return tuple(spec for _, spec in named)


def _flag_modules(value: Sequence[str], where: str, base: Path) -> tuple[ModuleSpec, ...]:
    modules = tuple(module_arg(m) for m in value)
    names = [m.name for m in modules]
    for name in names:
        if names.count(name) > 1:
            raise HvbootError(where, f"two modules are named {name!r}; names must differ")
    return modules


def _boolean(value: object, where: str, base: Path) -> bool:
    if not isinstance(value, bool):
        raise HvbootError(where, f"expected true or false, got {_describe(value)}")
    return value


def _firmware(value: object, where: str, base: Path) -> str:
    if value not in ("uefi", "bios"):
        raise HvbootError(where, f'expected "uefi" or "bios", got {_describe(value)}')
    return str(value)


def _memory(value: object, where: str, base: Path) -> str:
    """Guest RAM as QEMU's -m takes it: a bare number is MiB, else a size with a suffix."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = f"{value.strip()}M"
    expected = 'a size such as "512M" or "2G", or a number of MiB'
    if not isinstance(value, str):
        raise HvbootError(where, f"expected {expected}, got {_describe(value)}")
    try:
        size = parse_size(value, where, multiple_of=MIB)
    except HvbootError as exc:
        raise HvbootError(where, f"{exc.what} (expected {expected})") from None
    return f"{size // MIB}M"


def _cpus(value: object, where: str, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HvbootError(where, f"expected an integer of at least 1, got {_describe(value)}")
    return value


def _timeout(value: object, where: str, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise HvbootError(
            where, f"expected a number of seconds greater than 0, got {_describe(value)}"
        )
    return float(value)


def _qemu_args(value: object, where: str, base: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HvbootError(
            where, f'expected an array of strings, e.g. ["-d", "int"], got {_describe(value)}'
        )
    return tuple(value)


def _as_given(value: Any, where: str, base: Path) -> Any:
    return value


# ---------------------------------------------------------------------------
# The table


SETTINGS: tuple[Setting, ...] = (
    Setting(
        name="kernel",
        table="",
        key="kernel",
        flags=(),
        positional="KERNEL (build) / TARGET (run, test, debug)",
        kind="path of an existing file",
        check=_existing_file,
        flag_check=_as_given,  # the command checks it (a run/test/debug TARGET may be an image)
        default=None,
        verbs=BUILD_VERBS,
        help="The kernel ELF file. Required by `build` (from the file or the command line).",
    ),
    Setting(
        name="cmdline",
        table="",
        key="cmdline",
        flags=("--cmdline",),
        kind="string",
        check=_cmdline,
        default="",
        verbs=BUILD_VERBS,
        help=f"The kernel command line: at most {MAX_CMDLINE_BYTES} bytes of UTF-8, one line, "
        "no NUL.",
    ),
    Setting(
        name="output",
        table="",
        key="output",
        flags=("-o", "--output"),
        kind="path",
        check=_path,
        default=None,
        verbs=("build",),
        help="The disk image to write.",
        metavar="IMAGE",
    ),
    Setting(
        name="image_size",
        table="",
        key="image_size",
        flags=("--image-size",),
        kind="size",
        check=_image_size,
        default=None,
        verbs=("build",),
        help="Total image size, e.g. `64M`: bytes or a number with a K, M, G or T suffix, a "
        "multiple of 512 (default: just enough).",
        metavar="SIZE",
    ),
    Setting(
        name="iso",
        table="",
        key="iso",
        flags=("--iso",),
        kind="boolean",
        check=_boolean,
        default=False,
        verbs=("build",),
        switch=True,
        help="Write a hybrid ISO 9660 image instead of a disk image: El Torito entries for BIOS "
        "and UEFI, and an MBR and GPT, so the same file boots as a CD and written to a disk or "
        "USB stick (xorriso; docs/image-format.md).",
    ),
    Setting(
        name="netboot",
        table="",
        key="netboot",
        flags=("--netboot",),
        kind="path",
        check=_path,
        default=None,
        verbs=("build",),
        help="Write a TFTP tree laid out like the ESP (EFI/BOOT/BOOTX64.EFI, hvboot/...) into "
        "this directory instead of an image, for UEFI network boot (docs/netboot.md).",
    ),
    Setting(
        name="sign",
        table="",
        key="sign",
        flags=("--sign",),
        kind="path of a key directory",
        check=_path,
        default=None,
        verbs=("build",),
        help="Sign the UEFI loader with this key set's db key (`hvboot keys new DIR`) and pin "
        "hvboot.cfg's digest in both loaders (docs/trust.md).",
        metavar="DIR",
    ),
    Setting(
        name="tpm_policy",
        table="",
        key="tpm_policy",
        flags=("--tpm-policy",),
        kind='"required" or "if-present"',
        check=_tpm_policy,
        default="if-present",
        verbs=BUILD_VERBS,
        choices=TPM_POLICIES,
        help="What the loader does on a machine without a TPM to measure into: `required` "
        "stops with an error, `if-present` boots unmeasured and says so (docs/trust.md).",
    ),
    Setting(
        name="modules",
        table="",
        key="modules",
        flags=("--module",),
        kind="array of tables",
        check=_file_modules,
        flag_check=_flag_modules,
        default=(),
        verbs=BUILD_VERBS,
        help="Modules handed to the kernel, in this order (`[[modules]]` below). On the command "
        "line `--module PATH[:CMDLINE]`, repeatable; the flags replace the file's modules.",
        metavar="PATH[:CMDLINE]",
        repeat=True,
    ),
    Setting(
        name="firmware",
        table=MACHINE_TABLE,
        key="firmware",
        flags=("--firmware",),
        kind='"uefi" or "bios"',
        check=_firmware,
        choices=("uefi", "bios"),
        default="uefi",
        verbs=(*BOOT_VERBS, "demo"),
        repeat_verbs=("demo",),
        help="The firmware: OVMF (UEFI) or SeaBIOS (BIOS). `demo` takes the flag repeatedly "
        "and boots under each (default: bios and uefi).",
    ),
    Setting(
        name="memory",
        table=MACHINE_TABLE,
        key="memory",
        flags=("--memory",),
        kind="size or integer",
        check=_memory,
        default="512M",
        verbs=BOOT_VERBS,
        help="Guest RAM, as QEMU's `-m`: a size such as `512M` or `2G`, or a number of MiB; "
        "a multiple of 1 MiB.",
    ),
    Setting(
        name="cpus",
        table=MACHINE_TABLE,
        key="cpus",
        flags=("--cpus",),
        kind="integer",
        check=_cpus,
        cli_type=int,
        default=1,
        verb_defaults={"demo": 4},
        verbs=(*BOOT_VERBS, "demo"),
        help="Virtual CPUs (QEMU's `-smp`), at least 1. The demo runs its guest on each.",
    ),
    Setting(
        name="type",
        table=MACHINE_TABLE,
        key="type",
        flags=("--machine",),
        kind="string",
        check=_string,
        default="q35",
        verbs=BOOT_VERBS,
        help="QEMU's machine type: `q35` or `pc` (i440FX), or any other QEMU accepts.",
    ),
    Setting(
        name="cpu",
        table=MACHINE_TABLE,
        key="cpu",
        flags=("--cpu",),
        kind="string",
        check=_string,
        default="max",
        verbs=BOOT_VERBS,
        help="QEMU's CPU model; `max` has SVM with nested paging.",
    ),
    Setting(
        name="timeout",
        table=MACHINE_TABLE,
        key="timeout",
        flags=("--timeout",),
        kind="number",
        check=_timeout,
        cli_type=float,
        default=None,
        verb_defaults={"test": 120.0, "demo": 180.0},
        verbs=(*BOOT_VERBS, "demo"),
        help="Seconds before hvboot gives up on the boot; greater than 0.",
    ),
    Setting(
        name="qemu_args",
        table=MACHINE_TABLE,
        key="qemu_args",
        flags=(),
        positional="-- ARGS...",
        kind="array of strings",
        check=_qemu_args,
        flag_check=lambda value, where, base: tuple(value),
        default=(),
        verbs=BOOT_VERBS,
        help="Extra QEMU arguments, after hvboot's own. On the command line: after `--`.",
    ),
    Setting(
        name="serial_log",
        table=MACHINE_TABLE,
        key="serial_log",
        flags=("--serial-log",),
        kind="path",
        check=_path,
        default=None,
        verbs=BOOT_VERBS,
        help="Also write the serial output to this file.",
        metavar="FILE",
    ),
    Setting(
        name="tpm",
        table=MACHINE_TABLE,
        key="tpm",
        flags=("--tpm",),
        kind="boolean",
        check=_boolean,
        default=False,
        verbs=BOOT_VERBS,
        switch=True,
        help="Attach a software TPM 2.0 (Debian's swtpm, fresh for each boot); `run` and `test` "
        'then print PCRs 8 and 9 against `hvboot predict-pcrs` (docs/trust.md, "Measured boot").',
    ),
    Setting(
        name="secure_boot",
        table=MACHINE_TABLE,
        key="secure_boot",
        flags=("--secure-boot",),
        kind="path of a key directory",
        check=_path,
        default=None,
        verbs=BOOT_VERBS,
        help="Boot with Secure Boot enforcing and this key set (`hvboot keys new DIR`) enrolled: "
        "OVMF's Secure Boot build on q35 with SMM (UEFI only; docs/trust.md).",
        metavar="DIR",
    ),
)

_TOP = tuple(s for s in SETTINGS if not s.table)
_TABLES = {t: tuple(s for s in SETTINGS if s.table == t) for t in (MACHINE_TABLE,)}


def _shown(value: Any) -> str:
    if value is None or value == () or value is False:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def machine_toml(verb: str = "test") -> str:
    """A `[machine]` table with every machine setting that has a default for `verb`, each
    under its help line: what `hvboot new` puts in a crate, so that `cargo run`/`cargo test`
    pick the machine from the crate (docs/config.md) and the user sees what can be set."""
    lines = [f"[{MACHINE_TABLE}]"]
    for s in _TABLES[MACHINE_TABLE]:
        value = s.default_for(verb)
        if value is None or value == () or value is False:  # a switch left off
            continue
        first_sentence = s.help.split(". ")[0].rstrip(".") + "."
        line = f"{s.key} = {_toml_value(value)}"
        # A default that differs between the verbs that read the file (the timeout: `test` has
        # one, `run` none) would change the other verbs if written down: shown, commented out.
        # `demo` reads no file, so its own defaults (4 CPUs) do not count.
        differs = any(verb in BOOT_VERBS for verb in s.verb_defaults)
        lines += [f"# {first_sentence}", f"# {line}" if differs else line]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# The CLI


def add_flags(parser: argparse.ArgumentParser, verb: str) -> None:
    """Add the flags of the settings `verb` takes. A flag not given parses as None."""
    for s in SETTINGS:
        if verb not in s.verbs:
            continue
        default = _shown(s.default_for(verb))
        text = s.help + (f" (default {default})" if default else "")
        if s.name == "qemu_args":
            parser.add_argument("qemu_args", nargs="*", default=None, help=text)
            continue
        if not s.flags:
            continue  # the kernel: each command names its positional argument itself
        if s.switch:
            parser.add_argument(*s.flags, dest=s.name, action="store_true", default=None, help=text)
            continue
        if verb in s.repeat_verbs:
            parser.add_argument(
                *s.flags, dest=f"{s.name}s", action="append", choices=s.choices, help=s.help
            )
            continue
        parser.add_argument(
            *s.flags,
            dest=s.name,
            action="append" if s.repeat else "store",
            type=s.cli_type or str,
            choices=s.choices,
            metavar=s.metavar,
            default=None,
            help=text.replace("%", "%%"),
        )


def _flag_values(args: argparse.Namespace, verb: str) -> dict[str, Any]:
    """The settings given as flags (not None, not an empty list), checked."""
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if verb not in s.verbs or verb in s.repeat_verbs:
            continue
        value = getattr(args, s.name, None)
        if value is None or value == []:
            continue
        where = s.flags[-1] if s.flags else s.name
        out[s.name] = (s.flag_check or s.check)(value, where, Path.cwd())
    return out


# ---------------------------------------------------------------------------
# The file


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings `path` sets, checked, by setting name (keys it leaves out are absent)."""
    cfg_path = Path(path)
    file = str(cfg_path)
    doc = _read_toml(cfg_path)
    base = cfg_path.parent.absolute()
    _check_keys(doc, (*(s.key for s in _TOP), *_TABLES), f"{file}: ")
    out: dict[str, Any] = {}
    for s in _TOP:
        if s.key in doc:
            out[s.name] = s.check(doc[s.key], f"{file}: {s.key}", base)
    for table, settings in _TABLES.items():
        if table not in doc:
            continue
        values = doc[table]
        if not isinstance(values, dict):
            raise HvbootError(
                f"{file}: {table}", f"expected a table ([{table}]), got {_describe(values)}"
            )
        _check_keys(values, tuple(s.key for s in settings), f"{file}: {table}.")
        for s in settings:
            if s.key in values:
                out[s.name] = s.check(values[s.key], f"{file}: {s.path}", base)
    return out


def require_kernel(values: Mapping[str, Any], file: Path) -> Path:
    kernel = values.get("kernel")
    if kernel is None:
        raise HvbootError(
            f"{file}: kernel",
            'missing required key (the kernel ELF file, e.g. kernel = "build/kernel.elf")',
        )
    assert isinstance(kernel, Path)
    return kernel


def load_config(path: str | os.PathLike[str]) -> BuildConfig:
    """Read and check the build configuration of the TOML file at `path` (its `kernel` is
    required; its `[machine]` table is checked but is not part of a BuildConfig)."""
    values = read_file(path)
    kernel = require_kernel(values, Path(path))
    return BuildConfig(
        kernel=kernel,
        cmdline=values.get("cmdline", ""),
        modules=values.get("modules", ()),
        output=values.get("output"),
        image_size=values.get("image_size"),
        sign=values.get("sign"),
        tpm=values.get("tpm_policy", "if-present"),
    )


def discover(start: Path | None = None) -> Path | None:
    """The hvboot.toml of the Cargo crate around `start` (default: the current directory).

    From `start` upwards, the first directory that holds an hvboot.toml wins; the search ends at
    the first directory that holds a Cargo.toml (the crate's root), after looking there. Outside
    a Cargo crate nothing is discovered.
    """
    here = (start or Path.cwd()).absolute()
    passed: list[Path] = []
    for d in (here, *here.parents):
        passed.append(d / CONFIG_NAME)
        if (d / "Cargo.toml").is_file():
            return next((p for p in passed if p.is_file()), None)
    return None


# ---------------------------------------------------------------------------
# Layering


@dataclass(frozen=True)
class Settings:
    """Every setting of one command, after layering default < file < flag."""

    kernel: Path | None
    cmdline: str
    modules: tuple[ModuleSpec, ...]
    output: Path | None
    image_size: int | None
    sign: Path | None
    machine: Machine
    config: Path | None  # the file the settings came from, if any
    iso: bool = False
    netboot: Path | None = None
    tpm_policy: str = "if-present"

    def build_config(self, kernel: Path | None = None) -> BuildConfig:
        """The build configuration for `kernel` (default: the settings' own kernel)."""
        kernel = kernel or self.kernel
        assert kernel is not None
        return BuildConfig(
            kernel=kernel.absolute(),
            cmdline=self.cmdline,
            modules=self.modules,
            output=self.output,
            image_size=self.image_size,
            sign=self.sign,
            tpm=self.tpm_policy,
        )


def resolve(verb: str, args: argparse.Namespace | None, config: Path | None) -> Settings:
    """The settings of `verb`: the table's defaults, then `config`'s values, then the flags."""
    values: dict[str, Any] = {s.name: s.default_for(verb) for s in SETTINGS}
    if config is not None:
        values.update(read_file(config))
    if args is not None:
        values.update(_flag_values(args, verb))
    machine = Machine(**{s.name: values[s.name] for s in _TABLES[MACHINE_TABLE]})
    return Settings(
        kernel=values["kernel"],
        cmdline=values["cmdline"],
        modules=values["modules"],
        output=values["output"],
        image_size=values["image_size"],
        sign=values["sign"],
        machine=machine,
        config=config,
        iso=values["iso"],
        netboot=values["netboot"],
        tpm_policy=values["tpm_policy"],
    )


# ---------------------------------------------------------------------------
# The docs

DOC_BEGIN = (
    "<!-- BEGIN settings: generated by `hvboot gen-docs` from src/hvboot/config/settings.py -->"
)
DOC_END = "<!-- END settings -->"
DOC_PATH = Path("docs/config.md")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def doc_section() -> str:
    """The settings reference of docs/config.md, between DOC_BEGIN and DOC_END."""
    out = [
        DOC_BEGIN,
        "",
        "| file key | command line | type | default | commands | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        cli = ", ".join(f"`{f}`" for f in s.flags) or f"`{s.positional}`"
        defaults = [f"`{_shown(s.default)}`" if _shown(s.default) else "none"]
        defaults += [f"`{_shown(v)}` for `{verb}`" for verb, v in s.verb_defaults.items()]
        if s.name == "cmdline":
            defaults = ['`""`']
        out.append(
            f"| `{s.path}` | {cli} | {_cell(s.kind)} | {', '.join(defaults)} | "
            f"{', '.join(s.verbs)} | {_cell(s.help)} |"
        )
    out += ["", DOC_END]
    return "\n".join(out)


def render_doc(text: str) -> str:
    """`text` (docs/config.md) with its settings section regenerated."""
    start, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if start < 0 or end < start:
        raise HvbootError(DOC_PATH, f"no settings section ({DOC_BEGIN} ... {DOC_END})")
    return text[:start] + doc_section() + text[end + len(DOC_END) :]
