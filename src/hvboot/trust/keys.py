"""`hvboot keys new DIR`: a Secure Boot key set of one's own (UEFI 2.10 §32.3, "Firmware/OS Key
Exchange"): the platform key (PK), a key exchange key (KEK) and a signature database key (db),
each an RSA-2048 key pair with a self-signed X.509 certificate (RSA-2048 is what §32.3.6 asks a
firmware to support for PK and KEK), and the owner GUID the firmware records with each enrolled
certificate. Made with the `cryptography` library; existing keys are never overwritten."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from hvboot.errors import HvbootError

KEYS = ("PK", "KEK", "db")
GUID_FILE = "GUID.txt"
VALID_DAYS = 3650


def files(directory: Path) -> list[Path]:
    """Every file a key set consists of."""
    pairs = [directory / f"{k}.{ext}" for k in KEYS for ext in ("key", "crt")]
    return [*pairs, directory / GUID_FILE]


def _certificate(name: str, key: rsa.RSAPrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hvboot {name}")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def new(directory: Path) -> list[Path]:
    """Write a new key set into `directory` (created if missing); refuses if any of its files
    exists. Returns the files written."""
    if directory.exists() and not directory.is_dir():
        raise HvbootError(directory, "keys: not a directory")
    existing = [p for p in files(directory) if p.exists()]
    if existing:
        raise HvbootError(
            existing[0], "keys: already exists; `hvboot keys new` never overwrites keys"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in KEYS:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_new(directory / f"{name}.key", pem, 0o600)
            cert = _certificate(name, key).public_bytes(serialization.Encoding.PEM)
            _write_new(directory / f"{name}.crt", cert, 0o644)
        _write_new(directory / GUID_FILE, f"{uuid.uuid4()}\n".encode(), 0o644)
    except OSError as e:
        raise HvbootError(directory, f"keys: cannot write them: {e.strerror}") from None
    return files(directory)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    with path.open("xb") as f:  # "x": never replaces a file that appeared meanwhile
        f.write(data)
    path.chmod(mode)


def owner_guid(directory: Path) -> uuid.UUID:
    """The key set's owner GUID."""
    path = directory / GUID_FILE
    try:
        return uuid.UUID(path.read_text().strip())
    except FileNotFoundError:
        raise HvbootError(
            path, "keys: no such file (make a key set with `hvboot keys new`)"
        ) from None
    except ValueError:
        raise HvbootError(path, "keys: expected one GUID such as 8be4df61-...") from None


def require(directory: Path, name: str) -> tuple[Path, Path]:
    """The key and certificate of `name` (PK, KEK or db) in `directory`, which must exist."""
    pair = directory / f"{name}.key", directory / f"{name}.crt"
    for path in pair:
        if not path.is_file():
            raise HvbootError(
                path, "keys: no such file (make a key set with `hvboot keys new DIR`)"
            )
    return pair
