"""The one error type the toolkit raises for bad input: it names the file and the field."""

from __future__ import annotations

from pathlib import Path


class HvbootError(Exception):
    """A user-facing error. `where` is the file (and field) at fault, `what` what was wrong."""

    def __init__(self, where: str | Path | None, what: str) -> None:
        self.where = str(where) if where is not None else None
        self.what = what
        super().__init__(f"{self.where}: {what}" if self.where else what)
