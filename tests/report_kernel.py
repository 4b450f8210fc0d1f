"""Reading the machine-readable report a test kernel prints on serial.

Each line is `HVB <item> key=value ...` (tests/kernels/report prints them; the format is in
docs/testing.md). Values never contain spaces: strings travel as hex under keys ending in `_hex`,
which this parser also decodes into the key without the suffix (the raw hex stays, for binary
data such as a module's first bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hvboot.errors import HvbootError

PREFIX = "HVB "


@dataclass
class BootReport:
    items: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def all(self, item: str) -> list[dict[str, str]]:
        return self.items.get(item, [])

    def one(self, item: str) -> dict[str, str]:
        found = self.all(item)
        if len(found) != 1:
            raise HvbootError("boot report", f"expected one `HVB {item}` line, got {len(found)}")
        return found[0]

    def int(self, item: str, key: str) -> int:
        return int(self.one(item)[key], 0)


def parse_line(rest: str) -> tuple[str, dict[str, str]]:
    item, *pairs = rest.split(" ")
    fields: dict[str, str] = {}
    words: list[str] = []
    for pair in pairs:
        if "=" not in pair:
            words.append(pair)
            continue
        key, value = pair.split("=", 1)
        fields[key] = value
        if key.endswith("_hex"):
            fields[key[:-4]] = bytes.fromhex(value).decode("utf-8", "replace")
    if words:
        fields["_words"] = " ".join(words)
    return item, fields


def parse_report(serial: str) -> BootReport:
    """The report in `serial` (other output around it is ignored)."""
    report = BootReport()
    for raw in serial.splitlines():
        line = raw.strip("\r\x00")
        if PREFIX not in line:
            continue
        item, fields = parse_line(line[line.index(PREFIX) + len(PREFIX) :].strip())
        report.items.setdefault(item, []).append(fields)
    if "begin" not in report.items:
        raise HvbootError("boot report", "no `HVB begin` line on serial: the kernel never ran")
    if "end" not in report.items:
        panic = report.all("panic")
        detail = f": kernel panic: {panic[0].get('_words', '')}" if panic else ""
        raise HvbootError("boot report", f"the report was cut short (no `HVB end`){detail}")
    return report
