"""The BIOS path: stage 1's size and patch block, the builder's checks, and failures on the
machine under SeaBIOS (a disk read error injected with QEMU's blkdebug driver, a missing kernel,
a corrupt FAT), each printing its reason on serial and halting (docs/bios.md)."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BOOT_TIMEOUT, bios_layout, esp_fats, kernel_read_error, make_image
from elftools.elf.elffile import ELFFile

from hvboot.errors import HvbootError
from hvboot.image.build import BuildResult, _check_stage2_fits
from hvboot.image.disk import DiskLayout
from hvboot.loader import artifacts
from hvboot.loader import bios_stages as bios
from hvboot.vm import qemu
from hvboot.vm.machine import Machine

ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
SECTOR = 512


@pytest.fixture(scope="module")
def boot_code(built: None) -> bios.BiosBoot:
    return bios.load(artifacts.bios_loader_elf())


def test_stage1_fits_the_mbr_boot_code_area(boot_code: bios.BiosBoot) -> None:
    # The build fails if NASM's output outgrows 440 bytes (loader/bios/build.rs); the section
    # the builder takes it from holds exactly the MBR's boot-code area.
    assert len(boot_code.stage1) == bios.STAGE1_SIZE == 440
    block = boot_code.stage1[bios.PATCH_OFFSET : bios.PATCH_OFFSET + 16]
    assert block == b"HVS1" + bytes(12), "the unpatched block must be empty"
    assert boot_code.stage2[4:8] == b"HVS2"
    assert len(boot_code.stage2) <= bios.STAGE2_MAX_BYTES


def test_image_mbr_is_patched_for_its_bios_boot_partition(
    tmp_path: Path, report_kernel: Path, boot_code: bios.BiosBoot
) -> None:
    image = make_image(tmp_path, report_kernel)
    data = image.output.read_bytes()
    layout = image.layout
    assert layout.stage2_first_lba is not None and layout.stage2_sectors is not None
    magic, sectors, _, lba = struct.unpack_from("<4sHHQ", data, bios.PATCH_OFFSET)
    assert magic == b"HVS1"
    assert lba == layout.stage2_first_lba
    assert sectors == (len(boot_code.stage2) + SECTOR - 1) // SECTOR
    assert sectors <= layout.stage2_sectors
    start = lba * SECTOR
    assert data[start : start + len(boot_code.stage2)] == boot_code.stage2
    # The rest of stage 1 is the loader's, untouched; the partition table follows it.
    assert data[: bios.PATCH_OFFSET] == boot_code.stage1[: bios.PATCH_OFFSET]
    assert data[510:512] == b"\x55\xaa" and data[450] == 0xEE  # protective MBR entry


def test_layout_is_one_source(built: None) -> None:
    # layout.inc is the one source of the addresses below 1 MiB: the Python builder's limit,
    # the linked ELF (build.rs's HVBOOT_* symbols, which bios.ld's ASSERT uses) and the table
    # in docs/bios.md must say the same.
    lay = bios_layout()
    assert (lay["IMAGE_START"], lay["IMAGE_LIMIT"]) == (bios.STAGE2_LOAD, bios.STAGE2_LIMIT)
    with artifacts.bios_loader_elf().open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert symtab is not None
        syms = {s.name: s["st_value"] for s in symtab.iter_symbols()}
    assert {k: syms[f"HVBOOT_{k}"] for k in lay} == lay
    assert lay["IMAGE_START"] <= syms["__loader_end"] <= lay["IMAGE_LIMIT"]

    doc = (artifacts.REPO / "docs" / "bios.md").read_text()
    table = doc[doc.index("## Memory below 1 MiB") :].split("\n\n")
    rows = [r for part in table if "| range |" in part for r in part.splitlines()[2:]]
    ranges: dict[str, tuple[int, int]] = {}
    spans = []
    for row in rows:
        cell, use = row.split("|")[1].strip(), row.split("|")[2].strip()
        if cell.count("0x") == 2:
            lo, hi = (int(x, 0) for x in cell.split("-"))
            ranges[use.split(" (")[0].split(";")[0]] = (lo, hi + 1)
            spans.append((lo, hi + 1))
    # Contiguous from 0 to LOADER_END, every row ending where the next starts.
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == lay["LOADER_END"], spans
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), spans
    sector = 512
    bounce_end = lay["BOUNCE"] + lay["BOUNCE_SECTORS"] * sector
    assert ranges["real-mode stack"] == (lay["LOADER_START"], lay["RM_STACK"])
    assert ranges["stage 2 + the Rust BIOS loader"] == (lay["IMAGE_START"], lay["IMAGE_LIMIT"])
    assert ranges["long-mode stack"] == (lay["IMAGE_LIMIT"], lay["LM_STACK"])
    assert ranges["disk bounce buffer"] == (lay["BOUNCE"], bounce_end)
    assert ranges["E820 entry buffer"] == (lay["E820_BUF"], lay["E820_BUF"] + 24)
    assert ranges["the loader's identity page tables"] == (lay["PML4"], lay["LOADER_END"])
    assert f"| {lay['LOADER_END']:#x}-EBDA | free | USABLE |" in doc


def test_patch_refuses_bad_input(boot_code: bios.BiosBoot) -> None:
    too_many = bios.STAGE2_MAX_BYTES // SECTOR + 1
    with pytest.raises(HvbootError, match=f"{too_many} sectors"):
        bios.patch_stage1(boot_code.stage1, stage2_lba=2048, sectors=too_many)
    once = bios.patch_stage1(boot_code.stage1, stage2_lba=2048, sectors=10)
    with pytest.raises(HvbootError, match="already filled in"):
        bios.patch_stage1(once, stage2_lba=2048, sectors=10)
    with pytest.raises(HvbootError, match="no patch block"):
        bios.patch_stage1(bytes(440), stage2_lba=2048, sectors=10)


def test_builder_refuses_a_bios_boot_partition_too_small(tmp_path: Path) -> None:
    out = tmp_path / "disk.img"
    out.write_bytes(b"x")
    layout = DiskLayout(
        total_sectors=1,
        esp_first_lba=4096,
        esp_sectors=1,
        stage2_first_lba=2048,
        stage2_sectors=100,
        fat_type="FAT32",
    )
    with pytest.raises(HvbootError) as err:
        _check_stage2_fits(layout, 2048, 100 * SECTOR + 1, "loader/hvboot-bios", out)
    assert err.value.where == "loader/hvboot-bios"
    assert (
        f"{100 * SECTOR + 1} bytes" in err.value.what and f"{100 * SECTOR} bytes" in err.value.what
    )
    assert not out.exists(), "a half-usable image was left behind"


# --- failures on the machine (SeaBIOS) -------------------------------------------------------


def _esp(image: BuildResult) -> str:
    return f"{image.output}@@{image.layout.esp_first_lba * SECTOR}"


def _bios_error(image_or_run: BuildResult | qemu.RunResult) -> str:
    if isinstance(image_or_run, BuildResult):
        spec = qemu.QemuSpec(
            image=image_or_run.output, machine=Machine(firmware="bios"), snapshot=True
        )
        result = qemu.run(spec, timeout=BOOT_TIMEOUT)
    else:
        result = image_or_run
    assert not result.ok
    assert result.loader_error is not None, f"no loader error on serial:\n{result.serial[-3000:]}"
    assert "hvboot: halted" in result.serial
    assert "HVB begin" not in result.serial, "the kernel ran although the loader failed"
    return result.loader_error


@pytest.fixture
def image(tmp_path: Path, report_kernel: Path) -> BuildResult:
    return make_image(tmp_path, report_kernel, "x=1")


@pytest.mark.boot
def test_disk_read_error_in_the_kernel(
    image: BuildResult, report_kernel: Path, tmp_path: Path
) -> None:
    bad, result = kernel_read_error(image, report_kernel, tmp_path, once=False)
    error = _bios_error(result)
    assert "/hvboot/kernel.elf" in error and "disk read error" in error, error
    # The failing transfer is named by its first LBA and covers the bad sector.
    lba = int(error.split("at LBA ")[1].split()[0])
    count = int(error.split("(")[1].split()[0])
    assert lba <= bad < lba + count, error


@pytest.mark.boot
def test_missing_kernel_file(image: BuildResult) -> None:
    subprocess.run(
        ["mdel", "-i", _esp(image), "::/hvboot/kernel.elf"],
        check=True,
        env=ENV,
        capture_output=True,
    )
    error = _bios_error(image)
    assert "/hvboot/kernel.elf" in error and "not found" in error, error


@pytest.mark.boot
def test_corrupt_fat(image: BuildResult) -> None:
    # Overwrite every sector of both FATs (after the reserved clusters 0 and 1) with zeros:
    # every chain, the root directory's included, now runs into a "free" cluster.
    with open(image.output, "r+b") as f:
        for at, size in esp_fats(image):
            f.seek(at + 8)
            f.write(bytes(size - 8))
    error = _bios_error(image)
    assert "corrupt FAT" in error and "/hvboot/hvboot.cfg" in error, error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.boot
def test_an_ebda_inside_the_loaders_low_area_is_refused(image: BuildResult, tmp_path: Path) -> None:
    # SeaBIOS always puts its EBDA at 0x9FC00, so GDB stops the machine at stage 2's first
    # instruction and moves the BDA's EBDA segment (0x40E) to where a real machine might have
    # it, inside the loader's low area: stage 2 must refuse before it writes its page tables.
    lay = bios_layout()
    ebda = lay["LOADER_END"] - 0x8000
    port = _free_port()
    spec = qemu.QemuSpec(
        image=image.output,
        machine=Machine(firmware="bios"),
        snapshot=True,
        gdb_port=port,
        stopped=True,
    )
    script = tmp_path / "ebda.gdb"
    script.write_text(
        f"target remote 127.0.0.1:{port}\nhbreak *{lay['IMAGE_START']:#x}\ncontinue\n"
        f"set {{short}}0x40E = {ebda >> 4:#x}\ndelete\ndetach\nquit\n"
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        boot = pool.submit(qemu.run, spec, timeout=BOOT_TIMEOUT)
        for _ in range(50):  # until QEMU listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        gdb = subprocess.run(
            ["gdb", "-nx", "-batch", "-x", str(script)],
            capture_output=True,
            text=True,
            timeout=BOOT_TIMEOUT,
        )
        error = _bios_error(boot.result())
    assert gdb.returncode == 0, gdb.stdout + gdb.stderr
    assert f"ends below {lay['LOADER_END']:#x}" in error and "EBDA" in error, error
