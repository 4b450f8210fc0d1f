"""Limine kernels on the host: what the loader core found in one (`hvboot-check kernel`'s
``limine`` object), in words for `hvboot build` and `hvboot inspect` (docs/limine.md)."""

from __future__ import annotations

from typing import Any


def describe(found: dict[str, Any]) -> list[str]:
    """The base revision asked for and each request found, one line each."""
    tag = found["tag_address"]
    where = f"tag at {tag:#x}" if tag is not None else "no tag"
    lines = [f"limine base revision: {found['base_revision']} ({where})"]
    markers = [
        f"{name} marker at {found[key]:#x}"
        for key, name in (("start_marker", "start"), ("end_marker", "end"))
        if found[key] is not None
    ]
    if markers:
        lines.append("limine requests delimited: " + ", ".join(markers))
    for r in found["requests"]:
        name = r["name"] or "unknown to hvboot (left unanswered): ID {:#018x}:{:#018x}".format(
            *r["id"]
        )
        lines.append(f"  limine request: {name}, revision {r['revision']}, at {r['address']:#x}")
    if not found["requests"]:
        lines.append("  limine requests: none")
    return lines
