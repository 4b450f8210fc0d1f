"""`hvboot inspect`: what the loader would do with a kernel ELF, or what a disk image holds.

A kernel: its load plan (segments, permissions, entry, placement), its protocol request header
(the `.hvboot_request` section, decoded; "no request header (defaults apply)" without one), and
every problem the loader would refuse it for. A disk image: the GPT partitions, the stage-2
location (the BIOS boot partition, if any), the ESP's files with sizes and SHA-256, the loader
config text, and the kernel on it.

``--json`` prints one object. Its keys are stable (new keys may be added, none renamed or
removed); addresses are strings of hex digits ("0xffffffff80000000", exact in every JSON
parser), sizes and LBAs are integers. The schema is in docs/debugging.md ("hvboot inspect").

Exit status: 0 when nothing is wrong, 1 when problems were found (they are listed), 2 when the
file cannot be read at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile

from hvboot.errors import HvbootError
from hvboot.image.gpt import BIOS_BOOT_TYPE, ESP_TYPE, read_gpt
from hvboot.kernel import elf as kernel_elf
from hvboot.kernel import limine
from hvboot.kernel.elf import ELF_MAGIC, REQUEST_SECTION
from hvboot.loader import checker
from hvboot.loader.config_file import CONFIG_PATH, KERNEL_PATH
from hvboot.protocol.layout import PROTOCOL
from hvboot.trust import report as trust_report
from hvboot.units import PAGE_SIZE, SECTOR_SIZE

GPT_SIGNATURE = b"EFI PART"
#: The section the loader reads the kernel's requests from (docs/hypervisor.md).
NO_REQUEST = "no request header (defaults apply)"
PARTITION_TYPES = {ESP_TYPE: "EFI system", BIOS_BOOT_TYPE: "BIOS boot"}
FRAMEBUFFER_NONE = next(c.value for c in PROTOCOL.constants if c.name == "FRAMEBUFFER_NONE")

Json = dict[str, Any]


def _hex(n: int) -> str:
    return f"{n:#x}"


@dataclass(frozen=True)
class Problem:
    where: str
    what: str

    @classmethod
    def of(cls, err: HvbootError) -> Problem:
        return cls(err.where or "", err.what)

    def json(self) -> Json:
        return {"where": self.where, "what": self.what}


# ---------------------------------------------------------------------------------------------
# Kernels


def request_header(data: bytes, verdict: kernel_elf.KernelCheck | None = None) -> Json | None:
    """The kernel's request to the loader (``.hvboot_request``, docs/hypervisor.md) as the
    loader core decodes it, or None (then the loader's defaults apply).

    A request the loader would refuse is reported with ``decoded`` false and its ``problem``
    (it is also among the kernel's problems).
    """
    if verdict is None:
        verdict = kernel_elf.check_kernel(data, "kernel")
    prefix = f"{verdict.source}: "
    refused = [
        e for e in verdict.problems if (e.where or "").startswith(f"{prefix}{REQUEST_SECTION}:")
    ]
    if refused:
        sec_size = None
        try:
            sec = ELFFile(io.BytesIO(data)).get_section_by_name(REQUEST_SECTION)
            sec_size = None if sec is None else int(sec["sh_size"])
        except Exception:
            pass
        where = (refused[0].where or "").removeprefix(prefix)
        return {
            "section": REQUEST_SECTION,
            "size": sec_size,
            "decoded": False,
            "problem": f"{where}: {refused[0].what}",
        }
    req = verdict.request
    if req is None:
        return None
    none = FRAMEBUFFER_NONE
    w, h = req["framebuffer_width"], req["framebuffer_height"]
    framebuffer = f"{w}x{h}"
    if (w, h) in ((none, none), (0, 0)):
        framebuffer = "none" if w == none else "default"
    guest = req["guest"]
    return {
        "section": REQUEST_SECTION,
        "size": req["size"],
        "decoded": True,
        "version": req["version"],
        "flags": _flag_names(req["flags"]),
        "framebuffer": framebuffer,
        "module_alignment": req["module_alignment"] or PAGE_SIZE,
        "stack_size": req["stack_size"] or None,
        "direct_map_offset": _hex(req["direct_map_offset"]) if req["direct_map_offset"] else None,
        "guest": None
        if guest["size"] == 0
        else {
            "size": guest["size"],
            "alignment": guest["alignment"] or PAGE_SIZE,
            "max_address": _hex(guest["max_address"]) if guest["max_address"] else None,
            "fixed_base": _hex(guest["fixed_base"]) if guest["fixed_base"] else None,
        },
    }


def _flag_names(flags: int) -> list[str]:
    """The names of the request's flag bits (protocol/layout.py's RequestFlags), unknown bits
    in hex."""
    bits = {v.name: v.value for e in PROTOCOL.enums if e.name == "RequestFlags" for v in e.values}
    names = [n for n, bit in bits.items() if flags & bit]
    unknown = flags & ~sum(bits.values())
    return names + ([f"{unknown:#x}"] if unknown else [])


def _raw_segments(data: bytes) -> list[Json]:
    """The PT_LOAD headers as they are, for a kernel without a load plan."""
    try:
        elf = ELFFile(io.BytesIO(data))
        out = []
        for i, seg in enumerate(elf.iter_segments()):
            if seg["p_type"] != "PT_LOAD":
                continue
            flags = int(seg["p_flags"])
            out.append(
                {
                    "index": i,
                    "vaddr": _hex(int(seg["p_vaddr"])),
                    "vaddr_end": _hex(int(seg["p_vaddr"]) + int(seg["p_memsz"])),
                    "paddr": _hex(int(seg["p_paddr"])),
                    "memsz": int(seg["p_memsz"]),
                    "filesz": int(seg["p_filesz"]),
                    "offset": int(seg["p_offset"]),
                    "flags": ("R" if flags & 4 else "-")
                    + ("W" if flags & 2 else "-")
                    + ("X" if flags & 1 else "-"),
                    "placement": None,
                }
            )
        return out
    except Exception:
        return []


#: The boot protocol each kernel kind (hvboot-check's names) is entered with.
PROTOCOL_NAMES = {
    "hvboot-elf": "hvboot (64-bit entry, RDI = BootInfo)",
    "multiboot2": "Multiboot2 (32-bit protected-mode entry, EAX = 0x36d76289, EBX = information)",
    "linux": "Linux x86 boot protocol (64-bit entry at load address + 0x200, RSI = boot_params)",
    "limine": "Limine (64-bit entry, responses in the kernel's requests; docs/limine.md)",
    "bootloader-api": "rust-osdev bootloader_api (64-bit entry, RDI = &mut BootInfo)",
}

#: The setup header fields `hvboot inspect` shows in hex (the rest are counts, flags, strings).
_LINUX_HEX = frozenset(
    [
        "boot_flag",
        "loadflags",
        "xloadflags",
        "code32_start",
        "initrd_addr_max",
        "kernel_alignment",
        "pref_address",
        "init_size",
    ]
)


def _linux_header(h: Json | None) -> Json | None:
    """The core's decoded bzImage setup header with addresses and flags as hex strings."""
    if h is None:
        return None
    return {k: _hex(v) if k in _LINUX_HEX else v for k, v in h.items()}


def _linux_text(h: Json) -> list[str]:
    return [f"setup header: boot protocol {h['version']}"] + [
        f"  {k}: {v}" for k, v in h.items() if k != "version"
    ]


def _multiboot2_header(h: Json | None) -> Json | None:
    """The core's decoded Multiboot2 header with addresses as hex strings."""
    if h is None:
        return None
    out = dict(h)
    for key in ("checksum", "entry_address", "efi_i386_entry", "efi_amd64_entry"):
        if out[key] is not None:
            out[key] = _hex(out[key])
    for key in ("address", "relocatable"):
        if out[key] is not None:
            out[key] = {k: _hex(v) if k != "preference" else v for k, v in out[key].items()}
    return out


def _multiboot2_text(h: Json) -> list[str]:
    lines = [
        f"multiboot2 header: at file offset {h['offset']:#x}, architecture {h['architecture']}, "
        f"{h['header_length']} bytes, checksum {h['checksum']}"
    ]
    for r in h["information_request"]:
        need = "optional" if r["optional"] else "required"
        lines.append(f"  information request: {r['type']} ({r['name']}), {need}")
    simple = [
        ("address", "address tag"),
        ("entry_address", "entry address"),
        ("console_flags", "console flags"),
        ("framebuffer", "framebuffer"),
        ("efi_i386_entry", "EFI i386 entry"),
        ("efi_amd64_entry", "EFI amd64 entry"),
        ("relocatable", "relocatable"),
    ]
    for key, name in simple:
        if h[key] is not None:
            value = h[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            lines.append(f"  {name}: {value}")
    for key, name in (
        ("module_alignment", "module alignment"),
        ("efi_boot_services", "EFI boot services"),
    ):
        if h[key]:
            lines.append(f"  {name}: yes")
    return lines


def _bootloader_api_text(c: Json) -> list[str]:
    """The decoded .bootloader-config, one line per field (addresses in hex)."""
    lines = [f"bootloader_api config: api version {c['api_version']}, {c['serialized_len']} bytes"]
    for key, value in c.items():
        if key in ("api_version", "serialized_len"):
            continue
        shown = _hex(value) if isinstance(value, int) and not isinstance(value, bool) else value
        lines.append(f"  {key}: {'None' if value is None else shown}")
    return lines


def inspect_kernel_bytes(data: bytes, source: str) -> Json:
    """The kernel report as a JSON-ready dict (see the module docstring for the keys)."""
    report: Json = {
        "kind": "kernel",
        "path": source,
        "size": len(data),
        "kernel_kind": None,
        "protocol": None,
        "multiboot2": None,
        "linux": None,
        "limine": None,
        "bootloader_api": None,
        "ok": False,
        "entry": None,
        "entry_symbol": None,
        "higher_half": None,
        "relocatable": None,
        "image": None,
        "segments": [],
        "request_header": None,
        "problems": [],
    }
    verdict = kernel_elf.check_kernel(data, source)
    report["kernel_kind"] = verdict.kind
    report["protocol"] = PROTOCOL_NAMES.get(verdict.kind or "")
    report["multiboot2"] = _multiboot2_header(verdict.multiboot2)
    report["linux"] = _linux_header(verdict.linux)
    report["limine"] = verdict.limine
    report["bootloader_api"] = verdict.bootloader_api
    report["problems"] = [Problem.of(e).json() for e in verdict.problems]
    report["request_header"] = request_header(data, verdict)
    plan = verdict.plan
    if plan is None:
        report["segments"] = _raw_segments(data)
        return report
    try:
        # Symbols are at link addresses; a position-independent kernel runs slid.
        link_entry = (plan.entry - plan.slide) % (1 << 64)
        names = sorted(n for n, a in kernel_elf.symbols(data).items() if a == link_entry)
    except HvbootError:
        names = []
    report.update(
        ok=verdict.ok,
        entry=_hex(plan.entry),
        entry_symbol=("_start" if "_start" in names else names[0]) if names else None,
        higher_half=plan.higher_half,
        relocatable=(
            {"slide": _hex(plan.slide), "relocations": plan.relocations}
            if plan.relocatable
            else None
        ),
        image={
            "virt_start": _hex(plan.virt_start),
            "virt_end": _hex(plan.virt_end),
            "size": plan.image_size,
        },
        segments=[
            {
                "index": s.index,
                "vaddr": _hex(s.vaddr),
                "vaddr_end": _hex(s.vaddr_end),
                "paddr": _hex(s.paddr),
                "memsz": s.memsz,
                "filesz": s.filesz,
                "offset": s.offset,
                "flags": s.flags,
                "placement": "loader" if plan.higher_half or plan.relocatable else "paddr",
            }
            for s in plan.segments
        ],
        describe=kernel_elf.describe(plan),
    )
    return report


def _kernel_text(r: Json, indent: str = "") -> list[str]:
    lines: list[str] = []
    if r.get("protocol"):
        lines.append(f"protocol: {r['protocol']}")
    if r.get("multiboot2"):
        lines += _multiboot2_text(r["multiboot2"])
    if r.get("linux"):
        lines += _linux_text(r["linux"])
    if r.get("limine"):
        lines += limine.describe(r["limine"])
    if r.get("bootloader_api"):
        lines += _bootloader_api_text(r["bootloader_api"])
    if r.get("describe"):
        lines += r["describe"].splitlines()
        if r["entry_symbol"]:
            lines.append(f"entry symbol: {r['entry_symbol']}")
    if not r["ok"]:
        lines.append(f"{r['path']}: the loader would refuse this kernel")
        if r["segments"] and not r.get("describe"):
            lines.append("PT_LOAD headers as found:")
            for s in r["segments"]:
                lines.append(
                    f"  {s['index']}: {s['vaddr']}-{s['vaddr_end']} {s['flags']} "
                    f"memsz {s['memsz']:#x} filesz {s['filesz']:#x}"
                )
    req = r["request_header"]
    if req is None:
        lines.append(f"request header: {NO_REQUEST}")
    elif not req["decoded"]:
        lines.append(f"request header: section {req['section']}: {req['problem']}")
    else:
        guest = req["guest"]
        lines.append(f"request header: section {req['section']} (version {req['version']})")
        lines.append(f"  stack size:       {req['stack_size'] or 'default'}")
        lines.append(f"  framebuffer:      {req['framebuffer']}")
        lines.append(f"  direct map:       {req['direct_map_offset'] or 'default'}")
        lines.append(f"  module alignment: {req['module_alignment']:#x}")
        lines.append(f"  flags:            {', '.join(req['flags']) or 'none'}")
        if guest is None:
            lines.append("  guest memory:     none")
        else:
            lines.append(
                f"  guest memory:     {guest['size']:#x} bytes, aligned {guest['alignment']:#x}, "
                f"below {guest['max_address'] or 'any'}, at {guest['fixed_base'] or 'any base'}"
            )
    if r["problems"]:
        lines.append(f"problems ({len(r['problems'])}):")
        lines += [f"  - {p['where']}: {p['what']}" for p in r["problems"]]
    else:
        lines.append("problems: none (the loader accepts this kernel)")
    return [indent + line for line in lines]


# ---------------------------------------------------------------------------------------------
# Disk images


def inspect_image_bytes(disk: bytes, source: str) -> Json:
    report: Json = {
        "kind": "image",
        "path": source,
        "size": len(disk),
        "partitions": [],
        "stage2": None,
        "esp": None,
        "loader_config": None,
        "kernel": None,
        "trust": None,
        "problems": [],
    }
    problems: list[Problem] = []
    try:
        parts = read_gpt(disk)
    except HvbootError as err:
        report["problems"] = [Problem.of(err).json()]
        return report
    for i, p in enumerate(parts):
        report["partitions"].append(
            {
                "index": i,
                "name": p.name,
                "type": PARTITION_TYPES.get(p.type_guid, "other"),
                "type_guid": str(p.type_guid).upper(),
                "guid": str(p.unique_guid).upper(),
                "first_lba": p.first_lba,
                "last_lba": p.last_lba,
                "size": (p.last_lba - p.first_lba + 1) * SECTOR_SIZE,
            }
        )
    bios = next((p for p in parts if p.type_guid == BIOS_BOOT_TYPE), None)
    if bios is not None:
        report["stage2"] = {
            "first_lba": bios.first_lba,
            "sectors": bios.last_lba - bios.first_lba + 1,
            "offset": bios.first_lba * SECTOR_SIZE,
        }
    esp = next((p for p in parts if p.type_guid == ESP_TYPE), None)
    if esp is None:
        problems.append(Problem("GPT", "no EFI system partition"))
    else:
        try:
            files = checker.esp_files(disk, source)
        except HvbootError as err:
            problems.append(Problem.of(err))
            files = {}
        report["esp"] = {
            "first_lba": esp.first_lba,
            "files": [
                {"path": "/" + path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for path, data in files.items()
            ],
        }
        cfg = files.get(CONFIG_PATH.lstrip("/"))
        if cfg is None:
            problems.append(Problem(f"ESP {CONFIG_PATH}", "missing: the loader needs it"))
        else:
            report["loader_config"] = cfg.decode("utf-8", "replace")
        s2 = report["stage2"]
        stage2 = disk[s2["offset"] :][: s2["sectors"] * SECTOR_SIZE] if s2 else None
        try:
            report["trust"] = trust_report.trust(files, stage2, source)
        except HvbootError as err:
            problems.append(Problem.of(err))
        kernel = files.get(KERNEL_PATH.lstrip("/"))
        if kernel is not None:
            sub = inspect_kernel_bytes(kernel, f"{source}:/{KERNEL_PATH.lstrip('/')}")
            report["kernel"] = sub
            problems += [Problem(p["where"], p["what"]) for p in sub["problems"]]
    report["problems"] = [p.json() for p in problems]
    return report


def _image_text(r: Json) -> list[str]:
    mib = r["size"] / (1 << 20)
    lines = [f"{r['path']}: disk image, {r['size']} bytes ({mib:.1f} MiB), GPT"]
    lines.append("partitions:")
    for p in r["partitions"]:
        lines.append(
            f"  {p['index']}: {p['name']!r} ({p['type']}, {p['type_guid']}) "
            f"LBA {p['first_lba']}-{p['last_lba']} ({p['size']} bytes)"
        )
    s2 = r["stage2"]
    if s2 is None:
        lines.append("stage 2: none (no BIOS boot partition: the image boots under UEFI only)")
    else:
        lines.append(
            f"stage 2: BIOS boot partition at LBA {s2['first_lba']} ({s2['sectors']} sectors)"
        )
    if r["esp"] is not None:
        lines.append(f"ESP files (partition at LBA {r['esp']['first_lba']}):")
        width = max((len(f["path"]) for f in r["esp"]["files"]), default=0)
        for f in r["esp"]["files"]:
            lines.append(f"  {f['path']:<{width}}  {f['size']:>10}  sha256 {f['sha256']}")
    if r["loader_config"] is not None:
        lines.append(f"loader config (/{CONFIG_PATH.lstrip('/')}):")
        lines += ["  | " + line for line in r["loader_config"].splitlines()]
    if r["trust"] is not None:
        lines += trust_report.text(r["trust"])
    if r["kernel"] is not None:
        lines.append(f"kernel (/{KERNEL_PATH.lstrip('/')}):")
        lines += _kernel_text(r["kernel"], "  ")
    elif r["problems"]:
        lines.append(f"problems ({len(r['problems'])}):")
        lines += [f"  - {p['where']}: {p['what']}" for p in r["problems"]]
    return lines


# ---------------------------------------------------------------------------------------------


def inspect_path(path: Path) -> Json:
    """The report for a kernel ELF or a disk image (told apart by their first bytes)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HvbootError(path, "no such file (expected a kernel ELF or a disk image)") from None
    except IsADirectoryError:
        raise HvbootError(path, "is a directory, expected a kernel ELF or a disk image") from None
    except OSError as e:
        raise HvbootError(path, f"cannot read it: {e.strerror}") from None
    if data[:4] != ELF_MAGIC and data[SECTOR_SIZE : SECTOR_SIZE + 8] == GPT_SIGNATURE:
        return inspect_image_bytes(data, str(path))
    return inspect_kernel_bytes(data, str(path))


def main(path: Path, *, as_json: bool) -> int:
    report = inspect_path(path)
    if as_json:
        out = {k: v for k, v in report.items() if k != "describe"}
        if isinstance(out.get("kernel"), dict):
            out["kernel"] = {k: v for k, v in out["kernel"].items() if k != "describe"}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        lines = _image_text(report) if report["kind"] == "image" else _kernel_text(report)
        print("\n".join(lines))
    return 1 if report["problems"] else 0
