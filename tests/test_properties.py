"""Property tests (hypothesis) of the toolkit's writers against the loader core's own readers,
asked through `hvboot-check` (issue 10, "the toolkit's parsers get the same treatment"): what
`hvboot build` writes, the loader reads back exactly.

- the loader config: any command line and modules the host accepts render to a file the core
  parses into the same kernel path, command line, module paths, names and command lines;
- the disk: any set of files written by image/disk.py (GPT + FAT, FAT16 and FAT32) is found by the
  core's GPT reader and read back by its FAT reader with the same paths and bytes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_image_fat import file_sets

from hvboot.config.build import check_cmdline, check_module_name
from hvboot.config.settings import TPM_POLICIES
from hvboot.errors import HvbootError
from hvboot.image.disk import write_disk_image
from hvboot.image.fat import FatFile
from hvboot.loader import checker
from hvboot.loader import config_file as loader_config


def _accepted(check: Callable[[str, str], str], where: str) -> Callable[[str], bool]:
    """Keeps the values the host's own check accepts: the property is about those."""

    def ok(value: str) -> bool:
        try:
            check(value, where)
        except HvbootError:
            return False
        return True

    return ok


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
cmdlines = _TEXT.filter(_accepted(check_cmdline, "cmdline"))
# A file's pin as `hvboot build` writes it: the BLAKE3 of some bytes, lower-case hex.
pins = st.binary(max_size=64).map(loader_config.digest)
names = st.text(min_size=1, max_size=20).filter(_accepted(check_module_name, "name"))


@settings(max_examples=100, deadline=None)
@given(
    cmdline=cmdlines,
    modules=st.lists(
        st.tuples(names, cmdlines, st.none() | pins), max_size=6, unique_by=lambda m: m[0]
    ),
    kernel_pin=st.none() | pins,
    tpm=st.sampled_from(TPM_POLICIES),
)
def test_the_core_parses_the_config_the_host_writes(
    cmdline: str, modules: list[tuple[str, str, str | None]], kernel_pin: str | None, tpm: str
) -> None:
    entries = [
        loader_config.LoaderModule(f"{loader_config.MODULE_DIR}/module{i}", name, line, pin)
        for i, (name, line, pin) in enumerate(modules)
    ]
    text = loader_config.render(cmdline, entries, kernel_digest=kernel_pin, tpm=tpm)
    doc = checker.check_config(text)
    assert doc["ok"], doc["problems"]
    assert doc["config"] == {
        "kernel": f"/{loader_config.KERNEL_PATH}",
        "kernel_blake3": kernel_pin,
        "cmdline": cmdline,
        "tpm": tpm,
        "modules": [
            {"path": f"/{m.path}", "name": m.name, "cmdline": m.cmdline, "blake3": m.digest}
            for m in entries
        ],
    }


@settings(max_examples=25, deadline=None)
@given(files=file_sets, fat16=st.booleans())
def test_the_core_reads_back_the_disk_the_host_writes(files: list[FatFile], fat16: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "disk.img"
        # 24 MiB gives the ESP a FAT16 volume; without a size it is FAT32 (at least 33 MiB).
        write_disk_image(image, files, size_bytes=24 << 20 if fat16 else None)
        got = checker.esp_files(image.read_bytes(), str(image))
    assert got == {f.path: f.data for f in files}
