"""Authenticode signing of the UEFI loader with a key set's db key, and reading a signature
back. Signing runs Debian's sbsigntool (`sbsign`, scripts/setup.sh installs it): no well-kept
Python library writes Authenticode signatures (signify and pefile only read them), and sbsign is
what Debian signs its own EFI binaries with. Reading uses pefile and `cryptography`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pefile
from cryptography.hazmat.primitives.serialization import pkcs7

from hvboot.errors import HvbootError
from hvboot.trust import keys

# PE/COFF spec, "Optional Header Data Directories": the certificate table is entry 4.
SECURITY_DIRECTORY = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]
WIN_CERT_HEADER = 8  # dwLength, wRevision, wCertificateType (PE/COFF spec, "The Attribute
# Certificate Table")


def sign(pe: bytes, key_dir: Path) -> bytes:
    """`pe` signed with `key_dir`'s db key and certificate."""
    key, cert = keys.require(key_dir, "db")
    tool = shutil.which("sbsign")
    if tool is None:
        raise HvbootError("sbsign", "not found: install Debian's sbsigntool (scripts/setup.sh)")
    with tempfile.TemporaryDirectory(prefix="hvboot-sign-") as tmp:
        src, out = Path(tmp) / "loader.efi", Path(tmp) / "loader.signed.efi"
        src.write_bytes(pe)
        run = subprocess.run(
            [tool, "--key", str(key), "--cert", str(cert), "--output", str(out), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise HvbootError(key, f"sbsign could not sign the loader: {run.stderr.strip()}")
        return out.read_bytes()


@dataclass(frozen=True)
class Signature:
    signers: tuple[str, ...]  # the certificates' subjects, in the signature's order


def signature(pe: bytes, source: str) -> Signature | None:
    """The Authenticode signature of `pe`, None when it has none."""
    try:
        image = pefile.PE(data=pe, fast_load=True)
    except pefile.PEFormatError as e:
        raise HvbootError(source, f"not a PE file: {e}") from None
    entry = image.OPTIONAL_HEADER.DATA_DIRECTORY[SECURITY_DIRECTORY]
    if entry.Size == 0:
        return None
    at = entry.VirtualAddress  # a file offset for this directory entry
    length = int.from_bytes(pe[at : at + 4], "little")
    blob = pe[at + WIN_CERT_HEADER : at + length]
    try:
        certs = pkcs7.load_der_pkcs7_certificates(blob)
    except ValueError as e:
        raise HvbootError(source, f"certificate table: not a PKCS#7 signature: {e}") from None
    return Signature(tuple(c.subject.rfc4514_string() for c in certs))
