"""Multiboot2 kernels: the core's verdict through the toolkit (kind, decoded header, every bad
header named by file and field), gzip-compressed inputs, and a boot under BIOS of our 32-bit
test kernel (tests/kernels/multiboot2) whose report of every tag it got is compared with what
the host set (command line, modules' bytes, -m, RSDP, load base, the machine state)."""

from __future__ import annotations

import gzip
import itertools
import random
import re
import struct
import zlib
from pathlib import Path

import pytest
from conftest import (
    FIRMWARES,
    MB2_EFI64_KERNEL,
    MB2_FB_KERNEL,
    MB2_KERNEL,
    boot,
    make_image,
    replace_on_esp,
)
from elftools.elf.elffile import ELFFile

from hvboot.cli.inspect import _kernel_text, inspect_kernel_bytes
from hvboot.config.build import ModuleSpec
from hvboot.errors import HvbootError
from hvboot.kernel.elf import check_kernel, load_plan, load_plan_bytes
from hvboot.loader.config_file import KERNEL_PATH

MAGIC = 0xE85250D6
LOAD = 0x20_0000
MIB = 1 << 20


def tag(kind: int, flags: int, *body: int) -> bytes:
    t = struct.pack("<HHI", kind, flags, 8 + 4 * len(body)) + struct.pack(f"<{len(body)}I", *body)
    return t + bytes(-len(t) % 8)


def flat_kernel(*tags: bytes, checksum_delta: int = 0) -> bytes:
    """A flat Multiboot2 image: the header at offset 0 with `tags`, loaded by an address tag
    (unless `tags` has its own) at 2 MiB, entered at its start + 0x100."""
    body = b"".join(tags) + tag(0, 0)
    length = 16 + len(body)
    checksum = (-(MAGIC + length) + checksum_delta) & 0xFFFF_FFFF
    return struct.pack("<4I", MAGIC, 0, length, checksum) + body + bytes(0x200)


ADDRESS = tag(2, 0, LOAD, LOAD, 0, 0)
ENTRY = tag(3, 0, LOAD + 0x100)


@pytest.fixture(scope="module")
def mb2_kernel(built: None) -> Path:
    assert MB2_KERNEL.is_file()
    return MB2_KERNEL


def test_the_core_names_the_kind_and_decodes_the_header(mb2_kernel: Path) -> None:
    verdict = check_kernel(mb2_kernel.read_bytes(), str(mb2_kernel))
    assert verdict.ok and verdict.kind == "multiboot2"
    h = verdict.multiboot2
    assert h is not None and h["architecture"] == 0
    required = [r["type"] for r in h["information_request"] if not r["optional"]]
    optional = [r["type"] for r in h["information_request"] if r["optional"]]
    assert (required, optional) == ([1, 2, 3, 4, 6, 21], [7, 8, 9, 13, 14, 15])
    assert h["module_alignment"] and h["console_flags"] == 2
    assert verdict.plan is not None and verdict.plan.phys_base == LOAD
    assert LOAD <= verdict.plan.entry < verdict.plan.virt_end


def test_inspect_names_the_protocol(mb2_kernel: Path) -> None:
    report = inspect_kernel_bytes(mb2_kernel.read_bytes(), "mb2.elf")
    assert report["kernel_kind"] == "multiboot2"
    assert report["protocol"].startswith("Multiboot2 (32-bit")
    assert report["multiboot2"]["checksum"].startswith("0x")
    text = "\n".join(_kernel_text(report))
    assert "information request: 21 (image load base physical address), required" in text
    assert "module alignment: yes" in text


@pytest.mark.parametrize(
    ("image", "field", "words"),
    [
        (flat_kernel(ADDRESS, ENTRY, checksum_delta=1), "multiboot2 header checksum", "0 mod 2^32"),
        (
            flat_kernel(tag(1, 0, 1, 5), ADDRESS, ENTRY),
            "multiboot2 tag 0 (information request, type 1)",
            "requires information tag type 5 (BIOS boot device)",
        ),
        (
            flat_kernel(tag(2, 0, 0x8000, 0x8000, 0, 0), tag(3, 0, 0x8100)),
            "multiboot2 tag (address)",
            "from 1 MiB",
        ),
        (flat_kernel(ADDRESS), "multiboot2 tag (entry address)", "needs an entry address tag"),
        (
            flat_kernel(tag(77, 0), ADDRESS, ENTRY),
            "multiboot2 tag 0 (unknown, type 77)",
            "marked required",
        ),
    ],
)
def test_bad_headers_name_the_file_and_field(
    tmp_path: Path, image: bytes, field: str, words: str
) -> None:
    path = tmp_path / "bad-mb2.bin"
    path.write_bytes(image)
    with pytest.raises(HvbootError) as err:
        load_plan(path)
    assert err.value.where == f"{path}: {field}"
    assert words in err.value.what


def test_every_problem_is_listed(tmp_path: Path) -> None:
    image = flat_kernel(tag(1, 0, 5, 17), tag(77, 0), ADDRESS, checksum_delta=1)
    fields = [e.where for e in check_kernel(image, "k").problems]
    assert fields == [
        "k: multiboot2 header checksum",
        "k: multiboot2 tag 0 (information request, type 1)",
        "k: multiboot2 tag 0 (information request, type 1)",
        "k: multiboot2 tag 1 (unknown, type 77)",
        "k: multiboot2 tag (entry address)",
    ]


def test_gzip_inputs(tmp_path: Path, mb2_kernel: Path) -> None:
    kz = tmp_path / "kernel.gz"
    kz.write_bytes(gzip.compress(mb2_kernel.read_bytes()))
    mz = tmp_path / "mod.gz"
    mz.write_bytes(gzip.compress(b"module bytes"))
    result = make_image(tmp_path, kz, modules=(ModuleSpec(path=mz, name="mod", cmdline=""),))
    files = {f.path: f.data for f in result.files}
    assert files[KERNEL_PATH] == mb2_kernel.read_bytes()
    assert b"module bytes" in files.values()
    bad = tmp_path / "broken.gz"
    bad.write_bytes(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(HvbootError) as err:
        make_image(tmp_path, mb2_kernel, modules=(ModuleSpec(path=bad, name="b", cmdline=""),))
    assert err.value.where == str(bad)
    assert "gzip data that does not decompress" in err.value.what


def _lines(serial: str, item: str) -> list[list[str]]:
    return [line.split()[2:] for line in serial.splitlines() if line.startswith(f"mb2: {item} ")]


def _check_elf_sections(serial: str, kernel: Path) -> None:
    """The ELF-symbols tag (the kernel asks for it, optionally) against the file: the table's
    count, entry size and name-table index, and each section outside the loaded segments
    (.symtab, .strtab, .shstrtab) loaded by hvboot below 4 GiB with the file's bytes."""
    shf_alloc = 2
    with kernel.open("rb") as f:
        elf = ELFFile(f)
        ((num, ent, shndx),) = _lines(serial, "elf-sections")
        assert (int(num), int(ent), int(shndx)) == (
            elf.num_sections(),
            elf["e_shentsize"],
            elf["e_shstrndx"],
        )
        got = {
            name: (int(a, 16), int(n, 16), int(c, 16))
            for name, a, n, _, _, c in _lines(serial, "section")
        }
        loaded = [
            sec
            for sec in elf.iter_sections()
            if not sec["sh_flags"] & shf_alloc
            and sec["sh_type"] not in ("SHT_NULL", "SHT_NOBITS")
            and sec["sh_size"]
        ]
        assert {sec.name for sec in loaded} >= {".symtab", ".strtab", ".shstrtab"}
        for sec in loaded:
            addr, size, crc = got[sec.name]
            assert 0 < addr < 1 << 32 and size == sec["sh_size"], sec.name
            assert crc == zlib.crc32(sec.data()), sec.name


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_boot(tmp_path: Path, mb2_kernel: Path, firmware: str) -> None:
    """Under BIOS the kernel is entered as the specification's §3.3 says; under UEFI the boot
    services are exited first and the EFI system table and memory map tags come along."""
    bios = firmware == "bios"
    rng = random.Random(2)
    specs = []
    for name, size, cmdline in (("guest.bin", 300 * 1024 + 7, "mem=64M"), ("cfg.txt", 1, "")):
        path = tmp_path / name
        path.write_bytes(rng.randbytes(size))
        specs.append(ModuleSpec(path=path, name=name, cmdline=cmdline))
    cmdline = "console=com1 com1=115200,8n1 x=1"
    kz = tmp_path / "mb2.elf.gz"
    kz.write_bytes(gzip.compress(mb2_kernel.read_bytes()))
    image = make_image(tmp_path, kz, cmdline=cmdline, modules=tuple(specs)).output
    result = boot(image, firmware, memory="512M")
    serial = result.serial
    assert result.ok, f"{result.outcome}\n{serial[-3000:]}"

    # The machine state of the specification's §3.3.
    ((magic, _, info),) = [ln[:3] for ln in _lines(serial, "magic")]
    assert int(magic, 16) == 0x36D76289 and int(info, 16) < 1 << 32
    state = dict(re.findall(r"(\w+) (0x[0-9a-f]+)", serial.split("mb2: cr0", 1)[1].split("\n")[0]))
    cr0 = int(serial.split("mb2: cr0 ")[1].split()[0], 16)
    assert cr0 & 1 and not cr0 & (1 << 31), "protected mode, paging off"
    assert not int(state["eflags"], 16) & (1 << 9), "interrupts off"
    assert (int(state["cs"], 16), int(state["ds"], 16)) == (0x08, 0x10)

    # Strings: the file name first, as GRUB 1 did (Xen drops the first word).
    assert _lines(serial, "cmdline") == [["/hvboot/kernel.elf", *cmdline.split()]]
    assert _lines(serial, "loader")[0][0] == "hvboot"

    # Modules: bytes (CRC-32), sizes, strings, page alignment (the header asks for it).
    mods = _lines(serial, "module")
    assert len(mods) == len(specs)
    for (start, end, _, crc, *string), spec in zip(mods, specs, strict=True):
        data = spec.path.read_bytes()
        assert int(end, 16) - int(start, 16) == len(data)
        assert int(crc, 16) == zlib.crc32(data)
        assert int(start, 16) % 4096 == 0
        assert " ".join(string) == f"{spec.name} {spec.cmdline}".strip()

    # Memory: the map against -m; basic memory against the map.
    ram = 512 * MIB
    mmap = [(int(b, 16), int(n, 16), int(t)) for b, n, t in _lines(serial, "mmap")]
    assert mmap == sorted(mmap)
    for (b1, n1, _), (b2, _, _) in itertools.pairwise(mmap):
        assert b1 + n1 <= b2
    available = sum(n for b, n, t in mmap if t == 1 and b < 4 << 30)
    assert ram - (4 if bios else 16) * MIB <= available <= ram
    lower, upper = (int(v) for v in _lines(serial, "basic")[0])
    high = next(b + n for b, n, t in mmap if b <= MIB < b + n and t == 1)
    assert upper == (high - MIB) >> 10
    _check_elf_sections(serial, mb2_kernel)
    if not bios:
        # The EFI system table (12, 8 bytes) and the EFI memory map (17) after ExitBootServices.
        assert _lines(serial, "tag 12") == [["12", "size", "16"]]
        assert _lines(serial, "tag 17")
        (new,) = _lines(serial, "rsdp-new")
        assert new[1] == "0" and new[3] == "0", "OVMF's RSDP is ACPI 2.0"
        return
    assert lower == 639
    # The BIOS stays re-enterable: the BDA's EBDA pointer and base memory agree with the map, the
    # disk, video and system-services vectors point into the BIOS (segment 0xC000 and up), not
    # at anything of hvboot's.
    ((_, ebda, _, basemem, *vectors),) = _lines(serial, "bda")
    assert int(ebda, 16) << 4 >= 0x9F000 and int(basemem) == lower
    assert all(int(v, 16) >= 0xC000 for v in vectors[1::2]), vectors
    # Nothing of hvboot's between 640 KiB and 1 MiB or in page 0: reserved, as the BIOS left it.
    assert all(t != 1 for b, n, t in mmap if b < 0x1000 or 0xA0000 <= b < MIB)

    # ACPI: the RSDP's checksums; SMBIOS; the load base (the ELF's physical address).
    (old,) = _lines(serial, "rsdp-old")
    assert old[:4] == ["sum", "0", "sig", "RSD"]
    for new in _lines(serial, "rsdp-new"):
        assert new[1] == "0" and new[3] == "0"
    assert _lines(serial, "smbios"), "SeaBIOS publishes SMBIOS and the header asks for it"
    assert [int(v, 16) for (v,) in _lines(serial, "loadbase")] == [LOAD]
    assert "mb2: framebuffer" not in serial, "no framebuffer tag in the header: text mode"
    assert "mb2: vbe" not in serial, "no VBE mode set: no VBE info"


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_the_loader_refuses_a_bad_header_in_the_toolkits_words(
    tmp_path: Path, mb2_kernel: Path, firmware: str
) -> None:
    """A good image whose kernel is swapped on the ESP (mtools, as a user could) for one with a
    wrong checksum: the loader stops with the toolkit's words under either firmware, the kernel
    never runs."""
    data = bytearray(mb2_kernel.read_bytes())
    at = check_kernel(bytes(data), "k").multiboot2["offset"]  # type: ignore[index]
    data[at + 12] ^= 1
    result = make_image(tmp_path, mb2_kernel)
    replace_on_esp(result, f"/{KERNEL_PATH}", bytes(data), tmp_path, repin=True)
    run = boot(result.output, firmware)
    assert not run.ok and "mb2: magic" not in run.serial
    with pytest.raises(HvbootError) as host:
        load_plan_bytes(bytes(data), f"/{KERNEL_PATH}")
    assert run.loader_error == str(host.value)
    assert "multiboot2 header checksum" in str(host.value)


@pytest.mark.boot
def test_efi_boot_services_path(tmp_path: Path, built: None) -> None:
    """Under UEFI a kernel with the EFI boot services and EFI amd64 entry tags (the 64-bit
    variant of the test kernel) is entered there with boot services running (specification
    2.0 §3.3, "EFI amd64 machine state with boot services enabled"): 64-bit on the firmware's
    state, the image 2 MiB aligned below 4 GiB as its relocatable tag asks, tags 18 and 20
    given; the kernel calls the boot services with the handle and table it got, and its own
    ExitBootServices succeeds."""
    spec = ModuleSpec(path=tmp_path / "m.bin", name="m.bin", cmdline="x")
    spec.path.write_bytes(random.Random(3).randbytes(5000))
    image = make_image(tmp_path, MB2_EFI64_KERNEL, cmdline="a=1", modules=(spec,)).output
    result = boot(image, "uefi", memory="512M")
    serial = result.serial
    assert result.ok, f"{result.outcome}\n{serial[-3000:]}"
    assert "hvboot: keeping the boot services" in serial and "hvboot: error" not in serial

    ((magic, _, info),) = [ln[:3] for ln in _lines(serial, "magic")]
    assert int(magic, 16) == 0x36D76289 and int(info, 16) < 1 << 32
    ((cr0, _, eflags, *_),) = _lines(serial, "cr0")
    assert int(cr0, 16) & (1 << 31), "paging on: the firmware's identity map"
    assert int(eflags, 16) & (1 << 9), "interrupts on, as UEFI runs boot services"
    ((efer, _, header_at),) = _lines(serial, "efer")
    assert int(efer, 16) & (1 << 10), "EFER.LMA: 64-bit mode"
    # Where the image went: 2 MiB aligned below 4 GiB, entered at its EFI entry plus the slide
    # (the code runs and finds its header at the load base).
    ((base,),) = _lines(serial, "loadbase")
    assert int(base, 16) % (2 * MIB) == 0 and int(base, 16) < 1 << 32
    # Its relocatable tag prefers high addresses (preference 2): placed in the upper half of
    # the 512 MiB, not at its free link address (2 MiB).
    assert int(base, 16) >= 256 * MIB
    assert int(header_at, 16) == int(base, 16)

    # Tags: boot services not terminated (18), the image handle (20), the system table (12),
    # the EFI memory map (17); the strings and the module as under BIOS.
    assert "mb2: efi-bs" in serial
    ((handle,),) = _lines(serial, "efi-ih")
    ((table,),) = _lines(serial, "efi-st")
    assert int(handle, 16) != 0 and int(table, 16) != 0
    assert _lines(serial, "tag 17")
    assert _lines(serial, "cmdline") == [["/hvboot/kernel.elf", "a=1"]]
    _check_elf_sections(serial, MB2_EFI64_KERNEL)
    ((start, end, _, crc, *string),) = _lines(serial, "module")
    assert int(end, 16) - int(start, 16) == 5000 and int(crc, 16) == zlib.crc32(
        spec.path.read_bytes()
    )
    assert string == ["m.bin", "x"]
    mmap = [(int(b, 16), int(n, 16), int(t)) for b, n, t in _lines(serial, "mmap")]
    assert 512 * MIB - 16 * MIB <= sum(n for b, n, t in mmap if t == 1 and b < 4 << 30) <= 512 * MIB

    # The boot services run: "IBI SYST" and "BOOTSERV" signatures, the handle is a loaded image
    # of that system table, and ExitBootServices(handle, key) returns EFI_SUCCESS.
    ((st_sig, bs_sig),) = _lines(serial, "efi-sigs")
    assert int(st_sig, 16) == int.from_bytes(b"IBI SYST", "little")
    assert int(bs_sig, 16) == int.from_bytes(b"BOOTSERV", "little")
    ((status, li_table),) = _lines(serial, "efi-image")
    assert int(status, 16) == 0 and int(li_table, 16) == int(table, 16)
    assert _lines(serial, "efi-exit") == [["0x0000000000000000", "0x0000000000000000"]]


@pytest.mark.boot
def test_vbe_info_under_bios(tmp_path: Path, built: None) -> None:
    """The test kernel with a framebuffer tag that asks (optionally) for VBE info: under BIOS a
    VBE mode is set and the VBE info tag (§3.6.9) carries the controller block ("VESA") and the
    set mode's block, whose address, width and depth are the framebuffer tag's."""
    image = make_image(tmp_path, MB2_FB_KERNEL).output
    result = boot(image, "bios")
    assert result.ok, f"{result.outcome}\n{result.serial[-3000:]}"
    ((mode, sig, phys, width, bpp),) = _lines(result.serial, "vbe")
    ((fb_phys, _, fb_width, fb_bpp),) = _lines(result.serial, "framebuffer")
    assert sig == "VESA" and int(mode, 16) >= 0x100
    assert (int(phys, 16), int(width), int(bpp)) == (int(fb_phys, 16), int(fb_width), int(fb_bpp))
