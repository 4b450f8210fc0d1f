"""The loader core's verdict on a kernel or a loader config, asked of `hvboot-check`.

The loader core (loader/core: elf.rs, request.rs, config.rs) is the one authority on what a
kernel, its ``.hvboot_request`` and the loader config may be. The toolkit does not re-implement
those rules: it runs ``hvboot-check`` (loader/check, built with the loaders into target/release/,
HVBOOT_CHECK overrides the path) and turns its JSON into the toolkit's shapes. Every problem is a
field and a message; the toolkit and the loader both print it as ``<file>: <field>: <message>``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvboot.errors import HvbootError
from hvboot.loader import artifacts

Json = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """One thing the loader would refuse: the field at fault and what is wrong with it."""

    field: str  # "program header 2 (PT_LOAD)", ".hvboot_request: stack_size", "line 3", ...
    message: str

    def error(self, source: str) -> HvbootError:
        """The toolkit's error for it: ``<source>: <field>`` and the message."""
        return HvbootError(f"{source}: {self.field}" if self.field else source, self.message)


def run(subcommand: str, data: bytes, *args: str) -> Json:
    """`hvboot-check <subcommand> - [args]` over `data`: its JSON verdict."""
    exe = artifacts.checker()
    try:
        result = subprocess.run(
            [str(exe), subcommand, "-", *args], input=data, capture_output=True, check=False
        )
    except OSError as exc:
        raise HvbootError(exe, f"cannot run the checker: {exc.strerror or exc}") from None
    if result.returncode not in (0, 1):
        detail = result.stderr.decode(errors="replace").strip()
        raise HvbootError(exe, f"the checker failed (exit status {result.returncode}): {detail}")
    doc: Json = json.loads(result.stdout)
    return doc


def problems(doc: Json) -> list[Problem]:
    """The problems of a verdict, in the core's order (the loader reports the first)."""
    return [Problem(p["field"], p["message"]) for p in doc["problems"]]


def check_kernel(data: bytes, cmdline: str | None = None) -> Json:
    """The core's verdict on kernel `data`: ``kind``, ``plan``, ``request``, ``problems``; with
    `cmdline`, also the kernel's rules on the command line it is to get."""
    return run("kernel", data, *(() if cmdline is None else (cmdline,)))


def check_config(text: str) -> Json:
    """The core's verdict on loader-config `text`: ``config`` (parsed) or ``problems``."""
    return run("config", text.encode())


def esp_files(disk: bytes, source: str) -> dict[str, bytes]:
    """Every file of disk image `disk`'s EFI system partition (path without a leading ``/`` ->
    bytes), read as the loader reads them: through the core's GPT and FAT reader. `HvbootError`
    ``<source>: GPT`` or ``<source>: ESP`` when the loader could not read them either."""
    with tempfile.TemporaryDirectory(prefix="hvboot-esp-") as tmp:
        doc = run("esp", disk, tmp)
        for problem in problems(doc):
            raise problem.error(source)
        return {
            f["path"]: (Path(tmp) / f["path"]).read_bytes()
            for f in sorted(doc["files"], key=lambda f: str(f["path"]))
        }
