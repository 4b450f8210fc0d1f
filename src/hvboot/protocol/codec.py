"""Bytes <-> values for any struct of the protocol, derived from its one definition (layout.py).

Nothing here is written per struct: field names, types and offsets come from `PROTOCOL`, so a
field added to layout.py is encoded and decoded without a change here. A struct is a dict of its
fields (nested structs as nested dicts, arrays as lists), little endian, C layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hvboot.protocol.layout import PRIMITIVES, PROTOCOL


def _pack_into(buf: bytearray, type_name: str, offset: int, value: Any) -> None:
    if type_name in PRIMITIVES:
        size = PRIMITIVES[type_name]
        buf[offset : offset + size] = int(value).to_bytes(size, "little")
    elif type_name.endswith("]"):
        elem = type_name[:-1].split("[")[0]
        step = PROTOCOL.size_align(elem)[0]
        for i, item in enumerate(value):
            _pack_into(buf, elem, offset + i * step, item)
    else:
        for field, off in PROTOCOL.offsets(type_name):
            _pack_into(buf, field.type, offset + off, value.get(field.name, 0))


def _unpack(raw: bytes, type_name: str, offset: int) -> Any:
    if type_name in PRIMITIVES:
        return int.from_bytes(raw[offset : offset + PRIMITIVES[type_name]], "little")
    if type_name.endswith("]"):
        elem, count = type_name[:-1].split("[")
        step = PROTOCOL.size_align(elem)[0]
        return [_unpack(raw, elem, offset + i * step) for i in range(int(count))]
    return {f.name: _unpack(raw, f.type, offset + off) for f, off in PROTOCOL.offsets(type_name)}


def pack(struct_name: str, values: Mapping[str, Any]) -> bytes:
    """The bytes of `struct_name` holding `values` (missing fields are 0)."""
    buf = bytearray(PROTOCOL.size_align(struct_name)[0])
    _pack_into(buf, struct_name, 0, values)
    return bytes(buf)


def unpack(struct_name: str, raw: bytes) -> dict[str, Any]:
    """The fields of `struct_name` in `raw` (zero-padded if shorter)."""
    size = PROTOCOL.size_align(struct_name)[0]
    result: dict[str, Any] = _unpack(raw[:size].ljust(size, b"\0"), struct_name, 0)
    return result
