"""The config pin in a loader binary: `hvboot build --sign` writes the BLAKE3 digest of hvboot.cfg
into reserved bytes of the UEFI loader (PE) and of BIOS stage 2, and the loader refuses a config
whose digest differs. The layout is the loader core's (loader/core/src/pin.rs); the toolkit asks
`hvboot-check pin` where the bytes are and what they hold, never re-declaring it."""

from __future__ import annotations

from hvboot.loader import checker


def _where(binary: bytes, source: str) -> checker.Json:
    doc = checker.run("pin", binary)
    for problem in checker.problems(doc):
        raise problem.error(source)
    return doc


def pinned(binary: bytes, source: str) -> str | None:
    """The config digest `binary` pins (lower-case hex), None when it pins none."""
    digest: str | None = _where(binary, source)["digest"]
    return digest


def pin(binary: bytes, config_digest: str, source: str) -> bytes:
    """`binary` with its reserved bytes set to pin the config whose digest is `config_digest`."""
    doc = _where(binary, source)
    at = doc["at"]
    out = bytearray(binary)
    state = at + doc["state_offset"]
    out[state : state + 4] = int(doc["pinned_state"]).to_bytes(4, "little")
    digest = at + doc["digest_offset"]
    out[digest : digest + 32] = bytes.fromhex(config_digest)
    return bytes(out)
