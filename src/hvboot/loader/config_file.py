"""The config file the loader reads from the ESP (/hvboot/hvboot.cfg).

A line format simple enough to parse in the loader without a TOML parser; its grammar is in
loader/core/src/config.rs and docs/protocol.md. The TOML the user writes (config.py) is turned
into this by `hvboot build`, which then has the loader core parse it (`check`, through
hvboot-check) so an image never carries a config the loader would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from hvboot.loader import checker

CONFIG_PATH = "hvboot/hvboot.cfg"
KERNEL_PATH = "hvboot/kernel.elf"
MODULE_DIR = "hvboot/modules"


@dataclass(frozen=True)
class LoaderModule:
    path: str  # on the ESP, without leading slash
    name: str
    cmdline: str
    digest: str | None = None  # the file's pin (`module-blake3`), lower-case hex


def digest(data: bytes) -> str:
    """The pin of a file's bytes as the config carries it: BLAKE3, lower-case hex
    (loader/core/src/digest.rs says why BLAKE3)."""
    return str(blake3.blake3(data).hexdigest())


def render(
    cmdline: str,
    modules: Sequence[LoaderModule],
    kernel_path: str = KERNEL_PATH,
    kernel_digest: str | None = None,
    tpm: str = "if-present",
) -> str:
    lines = ["hvboot-config 1", "# written by hvboot build", f"kernel /{kernel_path}"]
    if kernel_digest:
        lines.append(f"kernel-blake3 {kernel_digest}")
    if cmdline:
        lines.append(f"cmdline {cmdline}")
    if tpm != "if-present":  # the loader's default (docs/trust.md, "Measured boot")
        lines.append(f"tpm {tpm}")
    for m in modules:
        lines.append(f"module /{m.path}")
        lines.append(f"module-name {m.name}")
        if m.cmdline:
            lines.append(f"module-cmdline {m.cmdline}")
        if m.digest:
            lines.append(f"module-blake3 {m.digest}")
    return "\n".join(lines) + "\n"


def check(text: str) -> None:
    """Refuse `text` if the loader core would: `HvbootError` ``hvboot/hvboot.cfg: line N``
    (or ``: config`` for the whole file) with the core's message."""
    doc = checker.check_config(text)
    for problem in checker.problems(doc):
        raise problem.error(CONFIG_PATH)
