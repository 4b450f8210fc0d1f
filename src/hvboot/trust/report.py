"""What `hvboot inspect IMAGE` shows of the chain of trust: the UEFI loader's signature, the
config digest each loader pins, and each file's pin in hvboot.cfg against the file's bytes."""

from __future__ import annotations

from typing import Any

from hvboot.errors import HvbootError
from hvboot.loader import checker, config_file
from hvboot.trust import pin, sign

Json = dict[str, Any]
EFI_BOOT_PATH = "EFI/BOOT/BOOTX64.EFI"


def _pinned(binary: bytes | None, source: str) -> str | None:
    if binary is None:
        return None
    try:
        return pin.pinned(binary, source)
    except HvbootError:
        return None  # a loader of another make: nothing pinned that hvboot could read


def trust(files: dict[str, bytes], stage2: bytes | None, source: str) -> Json:
    """The trust section of an image's report; `files` are the ESP's (paths without `/`)."""
    pe = files.get(EFI_BOOT_PATH)
    signed = sign.signature(pe, f"{source}:/{EFI_BOOT_PATH}") if pe is not None else None
    cfg = files.get(config_file.CONFIG_PATH)
    pins: list[Json] = []
    tpm = None
    if cfg is not None:
        doc = checker.check_config(cfg.decode("utf-8", "replace")).get("config") or {}
        tpm = doc.get("tpm")
        wanted = [(doc.get("kernel"), doc.get("kernel_blake3"))] + [
            (m["path"], m["blake3"]) for m in doc.get("modules", [])
        ]
        for path, pinned in wanted:
            data = files.get(str(path).lstrip("/"))
            actual = config_file.digest(data) if data is not None else None
            pins.append({"path": path, "pinned": pinned, "actual": actual})
    return {
        "signers": list(signed.signers) if signed else None,
        "config_digest": config_file.digest(cfg) if cfg is not None else None,
        "uefi_config_pin": _pinned(pe, source),
        "bios_config_pin": _pinned(stage2, source),
        "file_pins": pins,
        "tpm_policy": tpm,
    }


def text(t: Json) -> list[str]:
    signers = t["signers"]
    lines = ["trust (docs/trust.md):"]
    lines.append(
        f"  UEFI loader: signed by {', '.join(signers)}" if signers else "  UEFI loader: unsigned"
    )
    for name in ("uefi", "bios"):
        p = t[f"{name}_config_pin"]
        state = "none" if p is None else p + (" (matches)" if p == t["config_digest"] else
                                               " (DIFFERS from hvboot.cfg)")  # fmt: skip
        lines.append(f"  {name.upper()} loader pins hvboot.cfg: {state}")
    for f in t["file_pins"]:
        if f["pinned"] is None:
            lines.append(f"  {f['path']}: not pinned")
        else:
            ok = "matches" if f["pinned"] == f["actual"] else f"DIFFERS (file: {f['actual']})"
            lines.append(f"  {f['path']}: blake3 {f['pinned']} ({ok})")
    if t["tpm_policy"] is not None:
        lines.append(
            f"  measured boot (UEFI, PCRs 8 and 9): tpm {t['tpm_policy']}; "
            "the values: hvboot predict-pcrs IMAGE"
        )
    return lines
