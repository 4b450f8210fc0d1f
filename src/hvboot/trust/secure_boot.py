"""A machine with Secure Boot enforcing and a key set of one's own enrolled: OVMF's Secure Boot
build (Debian's OVMF_CODE_4M.secboot.fd, which requires SMM, so q35 with `smm=on` and the
variable flash secured) and a variable store where the key set's PK, KEK and db are enrolled and
Secure Boot is on. The store is made with `virt-fw-vars` (PyPI virt-firmware, pinned) from
OVMF's empty 4 MiB template, once per key set, and cached by the certificates' digest."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hvboot.errors import HvbootError
from hvboot.trust import keys

CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
VARS_TEMPLATE = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hvboot" / "secure-boot"
# The QEMU arguments the SMM build needs (OVMF's README, "SMM support"): SMM on, and the variable
# flash writable from SMM only.
QEMU_ARGS = ("-global", "driver=cfi.pflash01,property=secure,value=on")
# OVMF's boot manager when an image does not verify (MdeModulePkg BmBoot.c: "failed to load
# <option> ... : <status>"; EFI_ACCESS_DENIED is "Access Denied" there, EFI_SECURITY_VIOLATION
# "Security Violation").
REFUSED = re.compile(r"BdsDxe: failed to load (Boot\w+) .*: (Access Denied|Security Violation)")


def _tool() -> str:
    found = shutil.which("virt-fw-vars") or str(Path(sys.executable).parent / "virt-fw-vars")
    if not Path(found).is_file():
        raise HvbootError("virt-fw-vars", "not found: install the toolkit (pip install -e .)")
    return found


def firmware_files() -> Path:
    """The Secure Boot OVMF code, which must exist."""
    for path in (CODE, VARS_TEMPLATE):
        if not path.is_file():
            raise HvbootError(path, "no such file: install Debian's ovmf (scripts/setup.sh)")
    return CODE


def enrolled_vars(key_dir: Path) -> Path:
    """A variable store with `key_dir`'s PK, KEK and db enrolled and Secure Boot on (cached)."""
    firmware_files()
    guid = str(keys.owner_guid(key_dir))
    certs = {name: keys.require(key_dir, name)[1] for name in keys.KEYS}
    h = hashlib.sha256(guid.encode() + VARS_TEMPLATE.read_bytes())
    for name in keys.KEYS:
        h.update(certs[name].read_bytes())
    cached = CACHE / f"{h.hexdigest()[:32]}.fd"
    if cached.is_file():
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        out = Path(tmp) / "vars.fd"
        cmd = [_tool(), "-i", str(VARS_TEMPLATE), "-o", str(out), "--sb",
               "--set-pk", guid, str(certs["PK"]), "--add-kek", guid, str(certs["KEK"]),
               "--add-db", guid, str(certs["db"])]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0 or not out.is_file():
            detail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            raise HvbootError(key_dir, f"cannot enroll the keys: virt-fw-vars: {detail[0]}")
        os.replace(out, cached)  # atomic: a parallel run sees the whole file or none
    return cached


def refusal(serial: str) -> str | None:
    """The firmware's line when Secure Boot refused to start a boot option, else None."""
    m = REFUSED.search(serial)
    return m.group(0) if m else None
