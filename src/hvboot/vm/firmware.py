"""Finding firmware for QEMU: OVMF for UEFI, QEMU's built-in SeaBIOS for BIOS.

OVMF is found through QEMU's firmware descriptors (docs/interop/firmware.json in QEMU: JSON files
in /usr/share/qemu/firmware and friends), picking a UEFI build without Secure Boot and without
SMM, as a plain `-machine pc`/`q35` needs; known Debian paths are the fallback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from hvboot.errors import HvbootError

DESCRIPTOR_DIRS = (
    Path("/etc/qemu/firmware"),
    Path("/usr/share/qemu/firmware"),
    Path("/usr/local/share/qemu/firmware"),
)
FALLBACK = (
    (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    (Path("/usr/share/OVMF/OVMF_CODE.fd"), Path("/usr/share/OVMF/OVMF_VARS.fd")),
)
FIRMWARES = ("uefi", "bios")


@dataclass(frozen=True)
class Ovmf:
    code: Path
    vars_template: Path


def _from_descriptor(path: Path) -> Ovmf | None:
    try:
        desc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if "uefi" not in desc.get("interface-types", []):
        return None
    features = set(desc.get("features", []))
    if features & {"secure-boot", "requires-smm", "enrolled-keys"}:
        return None
    mapping = desc.get("mapping", {})
    if mapping.get("device") != "flash":
        return None
    if not any(t.get("architecture") == "x86_64" for t in desc.get("targets", [])):
        return None
    try:
        code = Path(mapping["executable"]["filename"])
        template = Path(mapping["nvram-template"]["filename"])
    except (KeyError, TypeError):
        return None
    if mapping["executable"].get("format", "raw") != "raw":
        return None
    return Ovmf(code, template) if code.is_file() and template.is_file() else None


def find_ovmf() -> Ovmf:
    """OVMF's code and variable-store template; HVBOOT_OVMF_CODE/_VARS override the search."""
    code_env, vars_env = os.environ.get("HVBOOT_OVMF_CODE"), os.environ.get("HVBOOT_OVMF_VARS")
    if code_env or vars_env:
        if not (code_env and vars_env):
            raise HvbootError("environment", "set both HVBOOT_OVMF_CODE and HVBOOT_OVMF_VARS")
        for name, value in (("HVBOOT_OVMF_CODE", code_env), ("HVBOOT_OVMF_VARS", vars_env)):
            if not Path(value).is_file():
                raise HvbootError(name, f"{value}: no such file")
        return Ovmf(Path(code_env), Path(vars_env))
    for directory in DESCRIPTOR_DIRS:
        if directory.is_dir():
            for desc in sorted(directory.glob("*.json")):
                found = _from_descriptor(desc)
                if found:
                    return found
    for code, template in FALLBACK:
        if code.is_file() and template.is_file():
            return Ovmf(code, template)
    raise HvbootError(
        "OVMF",
        "no UEFI firmware for x86_64 found (looked in QEMU's firmware descriptors and "
        "/usr/share/OVMF); install it with: apt-get install ovmf",
    )
