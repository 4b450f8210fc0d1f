"""The BIOS boot code on an hvboot image: stage 1 (MBR) and stage 2 (BIOS boot partition).

Both come from one ELF, `loader/target/release/hvboot-bios` (loader/bios): stage 2 + the BIOS
loader core are its PT_LOAD segment(s), linked at 0x8000 and laid out flat here (what
`objcopy -O binary` does; .bss is zeroed by stage 2 itself); stage 1 is its non-loaded
`.hvboot.stage1` section, 440 bytes assembled by NASM.

Stage 1 carries a patch block at PATCH_OFFSET (loader/bios/asm/stage1.asm, docs/bios.md):

    +0  b"HVS1"   checked before patching: the block is where this module expects it
    +4  u16       stage 2 length in sectors
    +6  u16       reserved, 0
    +8  u64       stage 2's first LBA
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from hvboot.errors import HvbootError
from hvboot.units import SECTOR_SIZE

STAGE1_SIZE = 440
PATCH_OFFSET = 0x1A8
PATCH_MAGIC = b"HVS1"
STAGE2_MAGIC = b"HVS2"  # at byte 4 of stage 2
# IMAGE_START and IMAGE_LIMIT of loader/bios/asm/layout.inc (tests/test_bios.py compares them):
# stage 2 (with its .bss) must end where the loader's long-mode stack begins.
STAGE2_LOAD = 0x8000
STAGE2_LIMIT = 0x70000
STAGE2_MAX_BYTES = STAGE2_LIMIT - STAGE2_LOAD


@dataclass(frozen=True)
class BiosBoot:
    stage1: bytes  # unpatched, 440 bytes
    stage2: bytes  # flat, loaded at STAGE2_LOAD
    source: str


def load(path: Path) -> BiosBoot:
    """Stage 1 and the flat stage 2 from the BIOS loader ELF at `path`."""
    try:
        data = path.read_bytes()
        elf = ELFFile(io.BytesIO(data))
        sec = elf.get_section_by_name(".hvboot.stage1")
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    except OSError as e:
        raise HvbootError(path, f"BIOS loader: cannot read it: {e.strerror}") from None
    except ELFError as e:
        raise HvbootError(path, f"BIOS loader: not a valid ELF file: {e}") from None
    if sec is None:
        raise HvbootError(path, "BIOS loader: no .hvboot.stage1 section (stage 1 missing)")
    stage1 = sec.data()
    if len(stage1) != STAGE1_SIZE:
        raise HvbootError(
            path, f"BIOS loader: stage 1 is {len(stage1)} bytes, expected {STAGE1_SIZE}"
        )
    if stage1[PATCH_OFFSET : PATCH_OFFSET + 4] != PATCH_MAGIC:
        raise HvbootError(path, f"BIOS loader: stage 1 has no {PATCH_MAGIC!r} patch block")
    if not loads:
        raise HvbootError(path, "BIOS loader: no PT_LOAD segments")
    base = min(s["p_paddr"] for s in loads)
    if base != STAGE2_LOAD:
        raise HvbootError(path, f"BIOS loader: linked at {base:#x}, expected {STAGE2_LOAD:#x}")
    end = max(s["p_paddr"] + s["p_memsz"] for s in loads)
    if end > STAGE2_LIMIT:
        raise HvbootError(
            path,
            f"BIOS loader: stage 2 spans {end - base} bytes in memory (with .bss); stage 1 "
            f"can load at most {STAGE2_MAX_BYTES} bytes ({STAGE2_LOAD:#x}..{STAGE2_LIMIT:#x})",
        )
    flat = bytearray(max(s["p_paddr"] + s["p_filesz"] for s in loads) - base)
    for s in loads:
        off = s["p_paddr"] - base
        flat[off : off + s["p_filesz"]] = s.data()
    if flat[4:8] != STAGE2_MAGIC:
        raise HvbootError(path, f"BIOS loader: stage 2 does not start with {STAGE2_MAGIC!r}")
    return BiosBoot(stage1, bytes(flat), str(path))


def stage2_sectors(stage2: bytes) -> int:
    return (len(stage2) + SECTOR_SIZE - 1) // SECTOR_SIZE


def patch_stage1(stage1: bytes, *, stage2_lba: int, sectors: int, source: str = "") -> bytes:
    """Stage 1 with stage 2's LBA and length in its patch block."""
    if len(stage1) != STAGE1_SIZE or stage1[PATCH_OFFSET : PATCH_OFFSET + 4] != PATCH_MAGIC:
        raise HvbootError(source or "stage 1", "no patch block at its documented offset")
    if stage1[PATCH_OFFSET + 4 : PATCH_OFFSET + 16] != bytes(12):
        raise HvbootError(source or "stage 1", "the patch block is already filled in")
    if not 0 < sectors <= STAGE2_MAX_BYTES // SECTOR_SIZE:
        raise HvbootError(
            source or "stage 2",
            f"{sectors} sectors: stage 1 loads 1..{STAGE2_MAX_BYTES // SECTOR_SIZE} sectors",
        )
    out = bytearray(stage1)
    struct.pack_into("<HHQ", out, PATCH_OFFSET + 4, sectors, 0, stage2_lba)
    return bytes(out)
