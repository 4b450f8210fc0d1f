"""The build configuration (kernel, command line, modules, image) and the checks of its values.

The file itself, hvboot.toml, is read by src/hvboot/config/settings.py (`read_file`,
`load_config`), whose settings table declares every key; the checks it uses live here.

Schema (every key other than those listed is an error)::

    kernel = "path/to/kernel.elf"          # required string
    cmdline = "console=ttyS0 loglevel=3"   # optional string, default ""
    output = "disk.img"                    # optional string (the CLI's -o overrides it)
    image_size = "64M"                     # optional: integer bytes, or a string with a
                                           # K, M, G or T suffix (binary: 1K = 1024)

    [[modules]]                            # optional array of tables, in load order
    path = "guest.bin"                     # required string
    name = "guest"                         # optional string, default: file name of path
    cmdline = "..."                        # optional string, default ""

Rules:

* Relative paths (``kernel``, ``output``, ``modules[i].path``) are resolved
  against the directory containing the TOML file, not the current directory.
* ``kernel`` and every ``modules[i].path`` must name an existing regular file.
* ``image_size`` must be positive and a multiple of 512 bytes (one disk sector).
* A command line (``cmdline``, ``modules[i].cmdline``) is at most 65536 bytes of
  UTF-8 and contains no newline (``\\n``, ``\\r``) and no NUL character.
* A module name is 1 to 64 bytes of UTF-8, printable, without ``/`` or ``\\``,
  and unique among the modules.
* ``modules[i]`` counts the ``[[modules]]`` tables from 0.

Errors are `HvbootError` whose `where` names the file and the key path, such as
``hvboot.toml: modules[2].cmdline: expected a string, got integer 5``.

On the command line, a module is given as ``--module PATH[:CMDLINE]`` (see
`module_arg`), with the same checks; its relative path is resolved against the
current directory.

The user documentation of this format is docs/config.md.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvboot.errors import HvbootError

__all__ = [
    "MAX_CMDLINE_BYTES",
    "MAX_MODULE_NAME_BYTES",
    "BuildConfig",
    "ModuleSpec",
    "check_cmdline",
    "check_module_name",
    "check_unique_names",
    "module_arg",
    "parse_size",
]

# 64 KiB (issue 10); a thousand such lines stay within the loader's MAX_CONFIG_BYTES (config.rs).
MAX_CMDLINE_BYTES = 64 * 1024
MAX_MODULE_NAME_BYTES = 64

MODULE_KEYS = ("path", "name", "cmdline")


@dataclass(frozen=True)
class ModuleSpec:
    """A module (a guest image, initrd, ...) handed to the kernel."""

    path: Path
    name: str
    cmdline: str


@dataclass(frozen=True)
class BuildConfig:
    """A checked build configuration. Paths are absolute."""

    kernel: Path
    cmdline: str
    modules: tuple[ModuleSpec, ...]
    output: Path | None
    image_size: int | None
    sign: Path | None = None  # a key set (hvboot keys new): pin the config, sign the loader
    tpm: str = "if-present"  # the loader's policy without a TPM: "required" or "if-present"


# ---------------------------------------------------------------------------
# Value descriptions for error messages


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: object) -> str:
    """'integer 5', 'string "abc"', 'table' ... using TOML's names for types."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {_clip(json.dumps(value, ensure_ascii=False))}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime):
        return f"datetime {value.isoformat()}"
    if isinstance(value, datetime.date):
        return f"date {value.isoformat()}"
    if isinstance(value, datetime.time):
        return f"time {value.isoformat()}"
    return type(value).__name__  # pragma: no cover - tomllib produces nothing else


def _expect_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise HvbootError(where, f"expected a string, got {_describe(value)}")
    return value


def _check_keys(table: Mapping[str, object], known: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
            raise HvbootError(
                f"{prefix}{key}",
                f"unknown key (known keys: {', '.join(known)}){did_you_mean}",
            )


# ---------------------------------------------------------------------------
# Shared value checks


def parse_size(text: str | int, where: str, *, multiple_of: int = 1) -> int:
    """Parse a size: an int of bytes, or a string like ``"4096"``, ``"512K"``, ``"64M"``, ``"1G"``.

    Suffixes K, M, G and T are binary (1K = 1024) and may be written in either
    case, optionally followed by ``iB`` (``"64MiB"``). The size must be
    positive and, if `multiple_of` is given, a multiple of it.
    """
    example = "expected a positive number of bytes or a number with a K, M or G suffix, e.g. 64M"
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise HvbootError(where, f"{example}; got {_describe(text)}")
    if isinstance(text, int):
        size = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:([KMGTkmgt])(?:[iI][bB])?)?\s*", text)
        if m is None:
            raise HvbootError(where, f"invalid size {json.dumps(_clip(text))}: {example}")
        shift = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[(m.group(2) or "").upper()]
        size = int(m.group(1)) << shift
    if size <= 0:
        raise HvbootError(where, f"size must be greater than 0 bytes, got {size}")
    if size % multiple_of:
        lower = size // multiple_of * multiple_of
        upper = lower + multiple_of
        suggestion = f"{lower} or {upper}" if lower else f"{upper}"
        raise HvbootError(
            where,
            f"size {size} is not a multiple of {multiple_of} bytes; use e.g. {suggestion}",
        )
    return size


def check_cmdline(cmdline: str, where: str) -> str:
    """Check a kernel or module command line; return it unchanged."""
    size = len(cmdline.encode("utf-8", "surrogatepass"))
    if size > MAX_CMDLINE_BYTES:
        raise HvbootError(
            where,
            f"command line is {size} bytes long, longer than the limit of "
            f"{MAX_CMDLINE_BYTES} bytes",
        )
    for i, ch in enumerate(cmdline):
        if ch in "\n\r":
            raise HvbootError(
                where,
                f"command line contains a newline at character {i}; expected a single line",
            )
        if ch == "\0":
            raise HvbootError(
                where,
                f"command line contains a NUL character at character {i}; NUL ends the "
                "command line the kernel sees, so it is not allowed inside it",
            )
    return cmdline


def check_module_name(name: str, where: str) -> str:
    """Check a module name; return it unchanged."""
    shown = _clip(json.dumps(name, ensure_ascii=True))
    if not name:
        raise HvbootError(where, "module name is empty; expected 1 to 64 printable characters")
    for sep in ("/", "\\"):
        if sep in name:
            raise HvbootError(
                where,
                f"module name {shown} contains '{sep}'; expected a plain name without "
                "path separators",
            )
    bad = next((ch for ch in name if not ch.isprintable()), None)
    if bad is not None:
        raise HvbootError(
            where,
            f"module name {shown} contains the non-printable character U+{ord(bad):04X}; "
            "expected printable characters only",
        )
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_MODULE_NAME_BYTES:
        raise HvbootError(
            where,
            f"module name {shown} is {size} bytes long, longer than the limit of "
            f"{MAX_MODULE_NAME_BYTES} bytes",
        )
    return name


def check_unique_names(modules: Iterable[tuple[str, ModuleSpec]]) -> None:
    """Check module names are unique; `modules` pairs each spec with where it came from.

    The error names the second module's origin and the first one's.
    """
    seen: dict[str, str] = {}
    for where, spec in modules:
        first = seen.get(spec.name)
        if first is not None:
            file, _, _ = where.rpartition(": ")
            first_file, _, first_key = first.rpartition(": ")
            if file and file == first_file:
                first = first_key  # same file: the key path is enough
            raise HvbootError(
                where,
                f"duplicate module name {json.dumps(spec.name)} (already used by {first}); "
                "module names must be unique: set a different name",
            )
        seen[spec.name] = where


def _check_file(path: Path, where: str, base_note: str) -> None:
    if path.is_file():
        return
    if path.is_dir():
        raise HvbootError(where, f"{path} is a directory, expected a file")
    if path.exists():
        raise HvbootError(where, f"{path} is not a regular file")
    raise HvbootError(where, f"file not found: {path}{base_note}")


def _resolve(value: str, base: Path, where: str) -> Path:
    if not value:
        raise HvbootError(where, "path is empty, expected a file path")
    if "\0" in value:
        raise HvbootError(where, "path contains a NUL character")
    path = Path(value)
    return path if path.is_absolute() else (base / path).absolute()


# ---------------------------------------------------------------------------
# The TOML file


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HvbootError(path, "config file not found") from None
    except IsADirectoryError:
        raise HvbootError(path, "is a directory, expected a TOML config file") from None
    except OSError as exc:
        raise HvbootError(path, f"cannot read config file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise HvbootError(
            f"{path}: line {line}",
            f"not valid UTF-8 (byte {exc.start}); TOML files must be UTF-8",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
        if m is not None:
            where = f"{path}: line {m.group(2)}, column {m.group(3)}"
            message = m.group(1)
        elif message.endswith(" (at end of document)"):
            where = f"{path}: end of file (line {text.count(chr(10)) + 1})"
            message = message.removesuffix(" (at end of document)")
        else:  # pragma: no cover - tomllib always gives a position
            where = str(path)
        raise HvbootError(where, f"TOML syntax error: {message}") from None


def _module(entry: object, index: int, file: str, base: Path) -> tuple[str, ModuleSpec]:
    """Check one [[modules]] table; return (where its name comes from, spec)."""
    prefix = f"{file}: modules[{index}]"
    if not isinstance(entry, dict):
        raise HvbootError(prefix, f"expected a table ([[modules]]), got {_describe(entry)}")
    _check_keys(entry, MODULE_KEYS, f"{prefix}.")
    if "path" not in entry:
        raise HvbootError(
            f"{prefix}.path",
            'missing required key (the module file, e.g. path = "guest.bin")',
        )
    path_where = f"{prefix}.path"
    path = _resolve(_expect_str(entry["path"], path_where), base, path_where)
    _check_file(path, path_where, f" (relative paths are resolved against {base})")
    if "name" in entry:
        name_where = f"{prefix}.name"
        name = check_module_name(_expect_str(entry["name"], name_where), name_where)
    else:
        name_where = path_where
        try:
            name = check_module_name(path.name, path_where)
        except HvbootError as exc:
            raise HvbootError(
                path_where,
                f"{exc.what} (the name defaults to the file name; set modules[{index}].name)",
            ) from None
    cmdline_where = f"{prefix}.cmdline"
    cmdline = check_cmdline(_expect_str(entry.get("cmdline", ""), cmdline_where), cmdline_where)
    return name_where, ModuleSpec(path=path, name=name, cmdline=cmdline)


# ---------------------------------------------------------------------------
# The command line form


def module_arg(spec: str, source: str = "--module") -> ModuleSpec:
    """Parse a command-line module ``PATH[:CMDLINE]`` (split at the first ':').

    The name is the file name of PATH; relative paths are resolved against the
    current directory. `source` names the option in errors.
    """
    where = f"{source} {_clip(spec, 60)}"
    path_text, sep, cmdline = spec.partition(":")
    if not path_text:
        raise HvbootError(
            where,
            "the module path is empty; expected PATH[:CMDLINE], e.g. guest.bin:console=ttyS0",
        )
    path = _resolve(path_text, Path.cwd(), where)
    _check_file(path, where, "")
    name = check_module_name(path.name, where)
    check_cmdline(cmdline if sep else "", where)
    return ModuleSpec(path=path, name=name, cmdline=cmdline)
