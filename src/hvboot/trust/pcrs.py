"""`hvboot predict-pcrs IMAGE`: the PCR values a measured boot of an image leaves in the PCRs the
loader extends (docs/trust.md, "Measured boot"), in every bank a TPM 2.0 commonly has active.

The loader's measurements (loader/core/src/flow/measure.rs), in order: PCR TPM_PCR_CONFIG is
extended with hvboot.cfg's bytes, then the kernel command line's; PCR TPM_PCR_FILES with the
BLAKE3 digest of the kernel, then of each module in config order. The firmware leaves both PCRs
at zero (PCRs 8-15 are the OS's, TCG PC Client PFP §3.3.4), so the values are predictable, unlike
PCRs 0-7.
"""

from __future__ import annotations

import hashlib

from hvboot.errors import HvbootError
from hvboot.loader import checker, config_file
from hvboot.protocol.layout import PROTOCOL

PCR_CONFIG = next(c.value for c in PROTOCOL.constants if c.name == "TPM_PCR_CONFIG")
PCR_FILES = next(c.value for c in PROTOCOL.constants if c.name == "TPM_PCR_FILES")
BANKS = ("sha1", "sha256", "sha384", "sha512")
# What the loader prints once it has measured the config (flow/measure.rs, `start`).
MEASURED = "hvboot: tpm: measured "


def measurements(files: dict[str, bytes], source: str) -> list[tuple[int, bytes]]:
    """(PCR, bytes the TPM hashes) for each measurement the loader makes, in order; `files`
    are the ESP's (paths without the leading `/`)."""
    cfg = files.get(config_file.CONFIG_PATH.lstrip("/"))
    if cfg is None:
        raise HvbootError(f"{source}: {config_file.CONFIG_PATH}", "missing")
    config_file.check(cfg.decode("utf-8", "replace"))
    doc = checker.check_config(cfg.decode("utf-8"))["config"]
    out = [(PCR_CONFIG, cfg), (PCR_CONFIG, str(doc["cmdline"]).encode())]
    for path in [doc["kernel"], *(m["path"] for m in doc["modules"])]:
        data = files.get(str(path).lstrip("/"))
        if data is None:
            raise HvbootError(f"{source}: {path}", "named in hvboot.cfg but not on the ESP")
        out.append((PCR_FILES, bytes.fromhex(config_file.digest(data))))
    return out


def predict(files: dict[str, bytes], source: str) -> dict[str, dict[int, str]]:
    """bank -> PCR -> the expected value (lower-case hex)."""
    steps = measurements(files, source)
    out: dict[str, dict[int, str]] = {}
    for bank in BANKS:
        size = hashlib.new(bank).digest_size
        pcrs = {PCR_CONFIG: bytes(size), PCR_FILES: bytes(size)}
        for pcr, data in steps:
            pcrs[pcr] = hashlib.new(bank, pcrs[pcr] + hashlib.new(bank, data).digest()).digest()
        out[bank] = {i: v.hex() for i, v in sorted(pcrs.items())}
    return out


def text(pcrs: dict[str, dict[int, str]]) -> list[str]:
    return [f"{bank}:{i}: {value}" for bank, values in pcrs.items() for i, value in values.items()]
