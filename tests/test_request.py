"""The kernel's request (`.hvboot_request`, docs/hypervisor.md) honoured by the loader under both
firmwares, and checked on the host.

The request kernel (tests/kernels/request) is the report kernel with a request; each case
patches the request's bytes in a copy of the ELF, so one build serves every case. The boot
tests check what the kernel got against the request and against the firmware's own memory map:
the guest reservation (aligned, typed GUEST_RESERVED, overlapping nothing), the AP trampoline
page (below 1 MiB, never page 0, typed AP_TRAMPOLINE), every placed extent (inside memory the
firmware called usable, inside map regions of its kind, overlapping no other extent), the stack
size, the direct-map offset, 2 MiB module alignment, the framebuffer request, the entry state
(CR0/CR4/EFER, a loaded 64-bit TSS), and a request the machine cannot meet (an error naming the
field on serial, then a halt).
"""

from __future__ import annotations

import io
import itertools
import struct
from pathlib import Path

import pytest
from conftest import FIRMWARES, boot, boot_report, make_image
from elftools.elf.elffile import ELFFile
from report_kernel import BootReport

from hvboot.cli.inspect import request_header
from hvboot.config.build import ModuleSpec
from hvboot.errors import HvbootError
from hvboot.kernel import elf as kernel_elf
from hvboot.kernel.elf import Request
from hvboot.loader import artifacts
from hvboot.protocol import codec
from hvboot.protocol.layout import PROTOCOL

KIND = {v.name: v.value for v in PROTOCOL.enums[0].values}
EXTENT = {v.name: v.value for e in PROTOCOL.enums if e.name == "ExtentKind" for v in e.values}
MIB = 1 << 20
GIB = 1 << 30
REQUEST_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-request-kernel"
KERNEL_PATH = "/hvboot/kernel.elf"
DIRECT_MAP = 0xFFFF_C000_0000_0000  # the request kernel's direct_map_offset
# The memory kind each extent must lie in (docs/hypervisor.md, PlacedExtent).
EXTENT_KIND = {
    "KERNEL_SEGMENT": "KERNEL",
    "MODULE": "MODULES",
    "BOOT_INFO": "BOOT_INFO",
    "PAGE_TABLES": "PAGE_TABLES",
    "STACK": "KERNEL_STACK",
    "GDT": "PAGE_TABLES",
    "AP_TRAMPOLINE": "AP_TRAMPOLINE",
    "GUEST_RESERVATION": "GUEST_RESERVED",
}
# Firmware memory types the loader may place things in: EFI loader code/data, boot-services
# code/data, conventional memory, and the loader's own OS-loader types (0x8000_0000 | kind, which
# the firmware carved out of conventional memory); E820 type 1.
EFI_FREE = {1, 2, 3, 4, 7}


@pytest.fixture(scope="session")
def request_kernel(built: None) -> Path:
    assert REQUEST_KERNEL.is_file()
    return REQUEST_KERNEL


def replace(req: Request, **fields: int) -> Request:
    """`req` with some fields changed (``guest_*`` name the fields of its guest request)."""
    out = {**req, "guest": dict(req["guest"])}
    for name, value in fields.items():
        if name.startswith("guest_"):
            out["guest"][name.removeprefix("guest_")] = value
        else:
            out[name] = value
    return out


def default_request(kernel: Path) -> Request:
    req = kernel_elf.read_request(kernel.read_bytes(), str(kernel))
    assert req is not None
    return req


def patched(kernel: Path, tmp: Path, req: Request, raw: bytes | None = None) -> Path:
    """A copy of `kernel` whose .hvboot_request holds `req` (or the bytes `raw`)."""
    data = bytearray(kernel.read_bytes())
    with kernel.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(kernel_elf.REQUEST_SECTION)
        assert sec is not None
        off, size = int(sec["sh_offset"]), int(sec["sh_size"])
    body = codec.pack("KernelRequest", req) if raw is None else raw
    assert len(body) <= size
    data[off : off + len(body)] = body
    out = tmp / "kernel.elf"
    out.write_bytes(bytes(data))
    return out


def regions(report: BootReport) -> list[tuple[int, int, int]]:
    return [(int(r["base"], 0), int(r["length"], 0), int(r["kind"])) for r in report.all("region")]


def kinds_at(regs: list[tuple[int, int, int]], start: int, size: int) -> set[int]:
    return {k for b, n, k in regs if b < start + size and start < b + n}


def covered(ranges: list[tuple[int, int]], start: int, size: int) -> bool:
    """`start..start+size` lies inside the union of `ranges` (base, length)."""
    pos, end = start, start + size
    for b, n in sorted(ranges):
        if b <= pos < b + n:
            pos = b + n
        if pos >= end:
            return True
    return pos >= end


def extents(report: BootReport) -> list[dict[str, int]]:
    return [
        {k: int(e[k], 0) for k in ("phys", "virt", "length", "what", "which")}
        for e in report.all("extent")
    ]


def firmware_free(report: BootReport, firmware: str) -> list[tuple[int, int]]:
    """The ranges the firmware's own map calls free RAM (or already gave the loader)."""
    out = []
    for e in report.all("fw_region"):
        t = int(e["type"])
        free = t in EFI_FREE or t >= 0x8000_0000 if firmware == "uefi" else t == 1
        if free:
            out.append((int(e["base"], 0), int(e["length"], 0)))
    return out


def check_extents(report: BootReport, firmware: str) -> list[dict[str, int]]:
    """Every extent: 4 KiB granular, inside firmware-free RAM, inside map regions of its kind,
    overlapping no other extent. Returns them."""
    regs = regions(report)
    free = firmware_free(report, firmware)
    assert free, "no firmware memory map"
    names = {v: k for k, v in EXTENT.items()}
    got = extents(report)
    for e in got:
        name = names[e["what"]]
        assert e["phys"] % 4096 == 0 and e["length"] % 4096 == 0 and e["length"] > 0, e
        assert covered(free, e["phys"], e["length"]), f"{name} extent outside free RAM: {e}"
        want = KIND[EXTENT_KIND[name]]
        assert kinds_at(regs, e["phys"], e["length"]) == {want}, f"{name}: {e}"
    spans = sorted((e["phys"], e["phys"] + e["length"]) for e in got)
    for (_, end1), (start2, _) in itertools.pairwise(spans):
        assert end1 <= start2, f"extents overlap: {spans}"
    return got


def check_reservation(report: BootReport, firmware: str, req: Request) -> None:
    res = report.one("reservation")
    phys, size = int(res["guest_phys"], 0), int(res["guest_size"], 0)
    assert size == req["guest"]["size"]
    assert phys % max(req["guest"]["alignment"], 4096) == 0
    if req["guest"]["fixed_base"]:
        assert phys == req["guest"]["fixed_base"]
    if req["guest"]["max_address"]:
        assert phys + size <= req["guest"]["max_address"]
    regs = regions(report)
    assert kinds_at(regs, phys, size) == {KIND["GUEST_RESERVED"]}
    # Nothing else of that kind: the reservation is exactly the GUEST_RESERVED memory.
    assert sum(n for _, n, k in regs if k == KIND["GUEST_RESERVED"]) == size
    [guest] = [e for e in extents(report) if e["what"] == EXTENT["GUEST_RESERVATION"]]
    assert (guest["phys"], guest["length"], guest["virt"]) == (phys, size, 0)

    tramp = int(res["ap_trampoline"], 0)
    assert 0 < tramp < MIB and tramp % 4096 == 0
    assert kinds_at(regs, tramp, 4096) == {KIND["AP_TRAMPOLINE"]}
    assert sum(n for _, n, k in regs if k == KIND["AP_TRAMPOLINE"]) == 4096
    if firmware == "bios":
        assert tramp + 4096 <= 0xA0000
    check_extents(report, firmware)


CASES = {
    "16M-2M": dict(guest_size=16 * MIB, guest_alignment=2 * MIB),
    "64M-2M": dict(guest_size=64 * MIB, guest_alignment=2 * MIB),
    "8M-at-64M": dict(guest_size=8 * MIB, guest_alignment=2 * MIB, guest_fixed_base=64 * MIB),
    "4M-4K-below-256M": dict(guest_size=4 * MIB, guest_alignment=0, guest_max_address=256 * MIB),
}


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
@pytest.mark.parametrize("case", list(CASES))
def test_guest_reservation_and_trampoline(
    firmware: str, case: str, request_kernel: Path, tmp_path: Path
) -> None:
    req = replace(default_request(request_kernel), **CASES[case])
    mod = tmp_path / "guest.bin"
    mod.write_bytes(b"guest image" * 1000)
    image = make_image(
        tmp_path, patched(request_kernel, tmp_path, req), "", (ModuleSpec(mod, "guest.bin", ""),)
    )
    _, report = boot_report(image.output, firmware)
    assert int(report.one("header")["request_version"]) == 2
    check_reservation(report, firmware, req)

    # The other requested settings: stack size, direct-map offset, 2 MiB module alignment.
    k = report.one("kernel")
    assert int(k["stack_size"]) == req["stack_size"] == 128 * 1024
    assert int(report.one("direct_map")["offset"], 0) == req["direct_map_offset"] == DIRECT_MAP
    assert int(report.one("module")["phys"], 0) % (2 * MIB) == 0
    [stack] = [e for e in extents(report) if e["what"] == EXTENT["STACK"]]
    assert stack["length"] == req["stack_size"]
    assert stack["virt"] + stack["length"] == int(k["stack_top"], 0)


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("guest_size", "guest.size: cannot reserve 0x40000000 bytes of guest memory"),
        # Issue 10, item 7: the allocation the request made large names the kernel and field.
        ("stack_size", "stack_size: no memory for the 0x40000000-byte kernel stack: "),
    ],
)
def test_unmet_request_stops_the_boot(
    firmware: str, field: str, words: str, request_kernel: Path, tmp_path: Path
) -> None:
    error = _refused(request_kernel, tmp_path, firmware, **{field: GIB})
    assert error.startswith(f"{KERNEL_PATH}: .hvboot_request: {words}"), error


def _refused(kernel: Path, tmp: Path, firmware: str, **fields: int) -> str:
    """The loader's error for `kernel` with its request's `fields` changed, on 512 MiB."""
    req = replace(default_request(kernel), **fields)
    result = boot(make_image(tmp, patched(kernel, tmp, req)).output, firmware, memory="512M")
    assert not result.ok
    assert result.loader_error is not None, result.serial[-3000:]
    assert "hvboot: halted" in result.serial
    assert "HVB begin" not in result.serial
    return result.loader_error


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_no_framebuffer_requested(firmware: str, request_kernel: Path, tmp_path: Path) -> None:
    none = next(c.value for c in PROTOCOL.constants if c.name == "FRAMEBUFFER_NONE")
    req = replace(
        default_request(request_kernel),
        framebuffer_width=none,
        framebuffer_height=none,
        guest_size=0,
        flags=0,
    )
    image = make_image(tmp_path, patched(request_kernel, tmp_path, req))
    _, report = boot_report(image.output, firmware)
    assert report.one("framebuffer").get("_words") == "none"
    assert KIND["FRAMEBUFFER"] not in {k for _, _, k in regions(report)}
    res = report.one("reservation")
    assert int(res["guest_size"], 0) == 0 and int(res["ap_trampoline"], 0) == 0
    check_extents(report, firmware)


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
@pytest.mark.parametrize(("asked", "got"), [((1000, 700), (1024, 768)), ((800, 600), (800, 600))])
def test_framebuffer_size_requested(
    firmware: str,
    asked: tuple[int, int],
    got: tuple[int, int],
    request_kernel: Path,
    tmp_path: Path,
) -> None:
    # The smallest mode of at least the size asked for: OVMF's GOP and SeaBIOS's VBE both offer
    # 800x600 and 1024x768 (and nothing between 1000x700 and 1024x768).
    req = replace(
        default_request(request_kernel), framebuffer_width=asked[0], framebuffer_height=asked[1]
    )
    image = make_image(tmp_path, patched(request_kernel, tmp_path, req))
    _, report = boot_report(image.output, firmware)
    fb = report.one("framebuffer")
    assert (int(fb["width"]), int(fb["height"])) == got
    assert int(fb["pitch"]) >= got[0] * 4


def _bits(value: str, *bits: int) -> list[int]:
    v = int(value, 0)
    return [(v >> b) & 1 for b in bits]


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_entry_state(firmware: str, report_kernel: Path, tmp_path: Path) -> None:
    image = make_image(tmp_path, report_kernel)
    _, report = boot_report(image.output, firmware)
    e = report.one("entry")
    # CR0: PE, NE, WP, PG set. CR4: PAE set, VMXE clear. EFER: LME, LMA, NXE set, SVME clear.
    assert _bits(e["cr0"], 0, 5, 16, 31) == [1, 1, 1, 1]
    assert _bits(e["cr4"], 5, 13) == [1, 0]
    assert _bits(e["efer"], 8, 10, 11, 12) == [1, 1, 1, 0]
    assert _bits(e["rflags"], 9) == [0], "interrupts on at entry"
    assert (int(e["cs"], 0), int(e["ss"], 0)) == (0x08, 0x10)
    # A loaded (busy) 64-bit TSS at selector 0x18, in the GDT's page-table memory.
    assert int(e["tr"], 0) == 0x18
    assert int(e["gdt_limit"]) == 39
    assert (e["tss_type"], e["tss_present"], e["tss_limit"]) == ("11", "1", "103")
    offset = int(report.one("direct_map")["offset"], 0)
    regs = regions(report)
    for virt, size in ((int(e["gdt_base"], 0), 40), (int(e["tss_base"], 0), 104)):
        assert virt >= offset
        assert kinds_at(regs, virt - offset, size) == {KIND["PAGE_TABLES"]}
    [gdt] = [x for x in extents(report) if x["what"] == EXTENT["GDT"]]
    assert gdt["phys"] <= int(e["gdt_base"], 0) - offset < gdt["phys"] + gdt["length"]
    assert gdt["phys"] <= int(e["tss_base"], 0) - offset < gdt["phys"] + gdt["length"]


# ---------------------------------------------------------------------------------------------
# Host side: hvboot build refuses what the loader refuses; hvboot inspect decodes the request.


def test_layout_matches_protocol() -> None:
    names = [
        "magic",
        "version",
        "size",
        "flags",
        "framebuffer_width",
        "framebuffer_height",
        "module_alignment",
        "stack_size",
        "direct_map_offset",
        "guest",
        "ap_stack_size",
    ]
    assert [f.name for f, _ in PROTOCOL.offsets("KernelRequest")] == names
    assert PROTOCOL.size_align("KernelRequest")[0] == 88
    # ap_stack_size (version 2) follows the 80-byte version-1 request.
    assert dict((f.name, o) for f, o in PROTOCOL.offsets("KernelRequest"))["ap_stack_size"] == 80
    assert [f.name for f, _ in PROTOCOL.offsets("GuestRequest")] == [
        "size",
        "alignment",
        "max_address",
        "fixed_base",
    ]


BAD = {
    "magic": dict(magic=0),
    "version": dict(version=0),
    "size": dict(size=16),
    "stack_size": dict(stack_size=100),
    "module_alignment": dict(module_alignment=8192),
    "direct_map_offset": dict(direct_map_offset=0x1000),
    "guest": dict(guest_size=16 * MIB, guest_alignment=3 * 4096),
}


@pytest.mark.parametrize("field", list(BAD))
def test_build_refuses_a_bad_request(field: str, request_kernel: Path, tmp_path: Path) -> None:
    req = replace(default_request(request_kernel), **BAD[field])
    kernel = patched(request_kernel, tmp_path, req)
    with pytest.raises(HvbootError) as err:
        make_image(tmp_path, kernel)
    assert err.value.where == f"{kernel}: .hvboot_request: {field}"
    doc = request_header(kernel.read_bytes())
    assert doc is not None and doc["decoded"] is False
    assert doc["problem"].startswith(f".hvboot_request: {field}: ")


@pytest.mark.parametrize(("sh_size", "field"), [(40, "size"), (8, "section")])
def test_short_section_is_refused(sh_size: int, field: str, request_kernel: Path) -> None:
    data = bytearray(request_kernel.read_bytes())
    elf = ELFFile(io.BytesIO(bytes(data)))
    index = next(
        i for i, sec in enumerate(elf.iter_sections()) if sec.name == kernel_elf.REQUEST_SECTION
    )
    struct.pack_into("<Q", data, elf["e_shoff"] + index * elf["e_shentsize"] + 32, sh_size)
    with pytest.raises(HvbootError) as err:
        kernel_elf.read_request(bytes(data), "k")
    assert err.value.where == f"k: .hvboot_request: {field}"


def test_inspect_decodes_the_request(request_kernel: Path) -> None:
    doc = request_header(request_kernel.read_bytes())
    assert doc == {
        "section": ".hvboot_request",
        "size": 88,
        "decoded": True,
        "version": 2,
        "flags": ["AP_TRAMPOLINE"],
        "framebuffer": "default",
        "module_alignment": 2 * MIB,
        "stack_size": 128 * 1024,
        "direct_map_offset": hex(DIRECT_MAP),
        "guest": {"size": 16 * MIB, "alignment": 2 * MIB, "max_address": None, "fixed_base": None},
    }


def test_report_kernel_has_no_request(report_kernel: Path) -> None:
    assert kernel_elf.read_request(report_kernel.read_bytes(), "k") is None
    assert kernel_elf.load_plan(report_kernel).request is None


def test_codec_reads_what_the_core_decodes(request_kernel: Path) -> None:
    """The request codec derived from layout.py and the loader core read the same bytes alike."""
    data = request_kernel.read_bytes()
    sec = ELFFile(io.BytesIO(data)).get_section_by_name(kernel_elf.REQUEST_SECTION)
    assert sec is not None
    raw = data[int(sec["sh_offset"]) : int(sec["sh_offset"]) + int(sec["sh_size"])]
    core = default_request(request_kernel)
    assert codec.unpack("KernelRequest", raw) == core
    assert codec.pack("KernelRequest", core) == raw[: len(codec.pack("KernelRequest", core))]


# --- refusals that name the kernel and the field (issue 10, items 6 and 7) --------------------


def _damage_unrelated_section_headers(kernel: Path, tmp: Path) -> Path:
    """A copy of `kernel` whose every section header but the request's and the name table's is
    malformed: its name past the string table, its bytes past the file, an unknown type."""
    data = bytearray(kernel.read_bytes())
    elf = ELFFile(io.BytesIO(bytes(data)))
    damaged = 0
    for i, sec in enumerate(elf.iter_sections()):
        if i in (0, elf["e_shstrndx"]) or sec.name == kernel_elf.REQUEST_SECTION:
            continue
        at = elf["e_shoff"] + i * elf["e_shentsize"]
        struct.pack_into("<IIQQQQ", data, at, 0xFFFF_FFF0, 0x6FFF_FFF3, 0, 1 << 62, 1 << 62, 0)
        damaged += 1
    assert damaged >= 3
    out = tmp / "damaged.elf"
    out.write_bytes(bytes(data))
    return out


def test_host_finds_the_request_past_malformed_section_headers(
    request_kernel: Path, tmp_path: Path
) -> None:
    kernel = _damage_unrelated_section_headers(request_kernel, tmp_path)
    assert request_header(kernel.read_bytes()) == request_header(request_kernel.read_bytes())
    assert kernel_elf.load_plan(kernel).request == default_request(request_kernel)


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_loader_honours_the_request_past_malformed_section_headers(
    firmware: str, request_kernel: Path, tmp_path: Path
) -> None:
    # Host and loader ask the same core (request::find): both find the request, and the
    # kernel gets what it asked for, not the defaults.
    kernel = _damage_unrelated_section_headers(request_kernel, tmp_path)
    _, report = boot_report(make_image(tmp_path, kernel).output, firmware)
    assert int(report.one("kernel")["stack_size"]) == 128 * 1024
    assert int(report.one("direct_map")["offset"], 0) == DIRECT_MAP


@pytest.mark.boot
@pytest.mark.parametrize("firmware", FIRMWARES)
def test_a_module_larger_than_memory_names_the_module(
    firmware: str, report_kernel: Path, tmp_path: Path
) -> None:
    mod = tmp_path / "huge.bin"
    with mod.open("wb") as f:
        f.truncate(192 * MIB)
    image = make_image(tmp_path, report_kernel, "", (ModuleSpec(mod, "huge.bin", ""),))
    result = boot(image.output, firmware, memory="128M")
    assert result.loader_error is not None, result.serial[-3000:]
    assert result.loader_error.startswith(
        f"/hvboot/modules/huge.bin: no memory for {192 * MIB} bytes: "
    ), result.loader_error
    assert "HVB begin" not in result.serial
