#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, made from what the test set-up builds (scripts/setup.sh):
an image by `hvboot build` of the report kernel, and the test kernels; for the reloc target two
static PIEs that gcc and ld link here (RELA and RELR) and rust-osdev's `pie` kernel when built.

    fuzz/seeds.py            # the small seeds, into fuzz/seeds/TARGET/ (committed)
    fuzz/seeds.py --large    # only the stripped test kernels (30-45 KiB each), into
                             # fuzz/corpus/TARGET/ (not committed; scripts/fuzz.sh runs this)

--large leaves the committed seeds alone: they are made from kernels whose bytes change with
every build, so rewriting them on each fuzz run would dirty the checkout with no new coverage.

Small means a few KiB: the GPT seeds keep the image's own MBR and entries but with a 4-entry
array (8 sectors in all); the FAT seed is a FAT16 volume (mkfs.fat, one FAT, 16 root entries)
holding the image's hvboot.cfg and short stand-ins for the kernel and a module, its all-zero
tail cut off (the fuzz target reads past the input as zeros).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "tests/kernels/target/release"
SECTOR = 512
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, env=ENV, capture_output=True)


def gpt_disk(image: bytes, damage_primary: bool) -> bytes:
    """An 8-sector disk: MBR, header, 4 entries, 3 empty sectors, backup entries, backup header."""
    entries = image[2 * SECTOR : 2 * SECTOR + 4 * 128]
    entries_crc = zlib.crc32(entries)

    def header(my: int, alt: int, entries_lba: int) -> bytes:
        h = bytearray(image[SECTOR : SECTOR + 92])
        struct.pack_into("<QQ", h, 24, my, alt)
        struct.pack_into("<QQ", h, 40, 3, 5)  # first and last usable LBA
        struct.pack_into("<QIII", h, 72, entries_lba, 4, 128, entries_crc)
        struct.pack_into("<I", h, 16, 0)
        struct.pack_into("<I", h, 16, zlib.crc32(bytes(h)))
        return bytes(h).ljust(SECTOR, b"\0")

    disk = bytearray(8 * SECTOR)
    disk[:SECTOR] = image[:SECTOR]
    disk[SECTOR : 2 * SECTOR] = header(1, 7, 2)
    disk[2 * SECTOR : 2 * SECTOR + len(entries)] = entries
    disk[6 * SECTOR : 6 * SECTOR + len(entries)] = entries
    disk[7 * SECTOR :] = header(7, 1, 6)
    if damage_primary:
        disk[SECTOR + 40] ^= 1
    return bytes(disk)


def fat_volume(tmp: Path, cfg: bytes) -> bytes:
    img = tmp / "fat16.img"
    run("mkfs.fat", "-F", "16", "-s", "1", "-f", "1", "-r", "16", "-R", "1", "-C", img, "2100")
    files = {"hvboot.cfg": cfg, "kernel.elf": b"\x7fELF" + bytes(range(256)) * 3, "x.bin": b"x"}
    run("mmd", "-i", img, "::/hvboot", "::/hvboot/modules")
    for name, data in files.items():
        src = tmp / name
        src.write_bytes(data)
        dest = "::/hvboot/modules/x.bin" if name == "x.bin" else f"::/hvboot/{name}"
        run("mcopy", "-i", img, src, dest)
    return img.read_bytes().rstrip(b"\0")


def small_elf(kernel: bytes) -> bytes:
    """The kernel's ELF header and program headers (every segment's file bytes dropped: p_filesz
    0, so the plan zero-fills them) and its .hvboot_request section with a section-name table:
    the real layout, entry and request in well under 1 KiB."""
    (phoff, shoff) = struct.unpack_from("<QQ", kernel, 32)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", kernel, 54)
    shdr = [kernel[shoff + i * shentsize : shoff + (i + 1) * shentsize] for i in range(shnum)]
    strtab_off = struct.unpack_from("<Q", shdr[shstrndx], 24)[0]

    def name(h: bytes) -> bytes:
        at = strtab_off + struct.unpack_from("<I", h, 0)[0]
        return kernel[at : kernel.index(b"\0", at)]

    request = next((h for h in shdr if name(h) == b".hvboot_request"), None)
    out = bytearray(kernel[:64])
    phdrs = bytearray(kernel[phoff : phoff + phnum * phentsize])
    for i in range(phnum):
        struct.pack_into("<Q", phdrs, i * phentsize + 8, 0)  # p_offset
        struct.pack_into("<Q", phdrs, i * phentsize + 32, 0)  # p_filesz
    struct.pack_into("<Q", out, 32, 64)
    out += phdrs
    if request is None:  # no sections at all
        struct.pack_into("<Q", out, 40, 0)
        struct.pack_into("<HHH", out, 58, 0, 0, 0)
        return bytes(out)
    r_off, r_size = struct.unpack_from("<QQ", request, 24)
    data_off = len(out)
    out += kernel[r_off : r_off + r_size]
    names = b"\0.hvboot_request\0.shstrtab\0"
    names_off = len(out)
    out += names
    while len(out) % 8:
        out += b"\0"
    sh_off = len(out)
    out += bytes(64)
    req = bytearray(request)
    struct.pack_into("<I", req, 0, 1)
    struct.pack_into("<Q", req, 24, data_off)
    out += req
    strtab = bytearray(64)
    struct.pack_into("<IIQQQQ", strtab, 0, 17, 3, 0, 0, names_off, len(names))
    out += strtab
    struct.pack_into("<Q", out, 40, sh_off)
    struct.pack_into("<HHH", out, 58, 64, 3, 2)
    return bytes(out)


def bootapi_seeds() -> None:
    """The bootapi test kernels' `.bootloader-config` alone in an ELF (objcopy), and the section's
    bytes in each layout bootloader_api 0.11 shipped: 133 bytes (0.11.11 on), 124 (0.11.1-0.11.10:
    no kernel_base, bytes 40-48) and 115 (0.11.0: no ramdisk_memory either)."""
    for k in ("dynamic", "fixed"):
        kernel = KERNELS / f"hvboot-bootapi-{k}"
        with tempfile.TemporaryDirectory() as t:
            out = Path(t) / "config.elf"
            run("objcopy", "--only-section=.bootloader-config", kernel, out)
            write("bootloader_config", f"bootapi-{k}-section.elf", out.read_bytes())
            raw = Path(t) / "config.bin"
            run("objcopy", "-O", "binary", "--only-section=.bootloader-config", kernel, raw)
            v11 = raw.read_bytes()
        v1 = bytearray(v11[:40] + v11[49:])
        v1[20:22] = struct.pack("<H", 10)
        v0 = bytearray(v1[:97] + v1[106:])
        v0[20:22] = struct.pack("<H", 0)
        for name, data in (("0.11.17", v11), ("0.11.10", v1), ("0.11.0", v0)):
            write("bootloader_config", f"bootapi-{k}-{name}.bin", bytes(data))


def rtc_seeds() -> None:
    """CMOS clock registers (loader/core/src/rtc.rs: seconds, minutes, hours, day, month, year,
    century, status register B) for 2026-12-01 18:30:59 in each format, and a clock never set."""
    write("rtc", "bcd-24h", bytes([0x59, 0x30, 0x18, 0x01, 0x12, 0x26, 0x20, 0x02]))
    write("rtc", "binary-24h", bytes([59, 30, 18, 1, 12, 26, 20, 0x06]))
    write("rtc", "bcd-12h-pm", bytes([0x59, 0x30, 0x86, 0x01, 0x12, 0x26, 0x20, 0x00]))
    write("rtc", "binary-12h-pm", bytes([59, 30, 0x86, 1, 12, 26, 20, 0x04]))
    write("rtc", "unset", bytes([0xFF] * 8))


def iommu_seeds() -> None:
    """ACPI DMAR and IVRS tables (loader/core/src/iommu.rs; the input's first byte picks the
    table kind, 0 DMAR, 1 IVRS): QEMU intel-iommu's DRHD with a device scope plus an RMRR; an
    AMD-Vi unit as IVHD 10h and 11h, an IVMD and an IVHD 40h."""

    def table(sig: bytes, body: bytes) -> bytes:
        head = bytearray(48)
        head[:4] = sig
        head[4:8] = struct.pack("<I", 48 + len(body))
        return bytes(head) + body

    scope = bytes([1, 8, 0, 0, 0, 0, 0x1F, 0])
    drhd = struct.pack("<HHBBHQ", 0, 16 + len(scope), 1, 0, 0, 0xFED9_0000) + scope
    rmrr = struct.pack("<HHHHQQ", 1, 24, 0, 0, 0x7F00_0000, 0x7F0F_FFFF)
    write("iommu", "qemu-dmar", b"\0" + table(b"DMAR", drhd + rmrr))
    ivhd10 = struct.pack("<BBHHHQHHI", 0x10, 0xB0, 24, 2, 0x40, 0xFEB8_0000, 0, 0, 0)
    ivhd11 = struct.pack("<BBHHHQHHI", 0x11, 0xB0, 40, 2, 0x40, 0xFEB8_0000, 0, 0, 0) + bytes(16)
    ivmd = struct.pack("<BBHHHQQQ", 0x20, 0, 32, 0, 0, 0, 0x7F00_0000, 0x10_0000)
    ivhd40 = struct.pack("<BBHHHQHHI", 0x40, 0xB0, 40, 3, 0x40, 0xFEB9_0000, 0, 0, 0) + bytes(16)
    write("iommu", "amd-ivrs", b"\1" + table(b"IVRS", ivhd10 + ivhd11 + ivmd + ivhd40))


# A static PIE with a few initialised pointers: R_X86_64_RELATIVE relocations (RELA, or RELR
# with -z pack-relative-relocs), for the reloc target.
PIE_SOURCE = """static int a, b, c;
int *table[] = {&a, &b, &c, &a};
void _start(void) { for (;;) *table[a & 3] = 1; }
"""


def reloc_seeds(tmp: Path) -> None:
    src, obj = tmp / "pie.c", tmp / "pie.o"
    src.write_text(PIE_SOURCE)
    flags = ["-O2", "-ffreestanding", "-fno-asynchronous-unwind-tables", "-fpie", "-nostdlib"]
    run("gcc", *flags, "-c", src, "-o", obj)
    for name, extra in [("pie-rela", []), ("pie-relr", ["-z", "pack-relative-relocs"])]:
        out = tmp / name
        run(
            "ld", "-nostdlib", "-pie", "--no-dynamic-linker", *extra, "-e", "_start", "-o", out, obj
        )
        run("strip", out)
        write("reloc", name, out.read_bytes())
    # rust-osdev's PIE test kernel as tests/rust_osdev.py builds it, when it is built.
    built = ROOT / "tests/.cache/rust-osdev-bootloader/adapted/test_kernels/target/pie"
    kernel = built / "x86_64-unknown-linux-gnu/release/pie--global_variable"
    if kernel.is_file():
        run("strip", "-o", tmp / "rust-pie", kernel)
        write("reloc", "rust-osdev-pie-global-variable", (tmp / "rust-pie").read_bytes())


def write(target: str, name: str, data: bytes, under: str = "seeds") -> None:
    d = ROOT / "fuzz" / under / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main() -> None:
    if "--large" in sys.argv[1:]:
        large_corpus()
        return
    kernel = KERNELS / "hvboot-report-kernel"
    if not kernel.exists():
        sys.exit(f"fuzz/seeds.py: {kernel} is missing: run scripts/setup.sh --no-demo first")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        reloc_seeds(tmp)
        mod = tmp / "guest.bin"
        mod.write_bytes(b"guest" * 10)
        image_path = tmp / "disk.img"
        hvboot = shutil.which("hvboot") or str(ROOT / ".venv/bin/hvboot")
        run(
            hvboot,
            "build",
            kernel,
            "-o",
            image_path,
            "--cmdline",
            "console=ttyS0 x=1",
            "--module",
            f"{mod}:mem=64M",
        )
        image = image_path.read_bytes()
        write("gpt", "hvboot-image", gpt_disk(image, damage_primary=False))
        write("gpt", "hvboot-image-primary-damaged", gpt_disk(image, damage_primary=True))
        esp = struct.unpack_from("<Q", image, 2 * SECTOR + 32)[0] * SECTOR
        for i in range(4):  # the ESP is the entry whose type is C12A7328-...
            at = 2 * SECTOR + i * 128
            if image[at : at + 4] == bytes.fromhex("28732ac1"):
                esp = struct.unpack_from("<Q", image, at + 32)[0] * SECTOR
        cfg_path = tmp / "hvboot.cfg"
        run("mcopy", "-i", f"{image_path}@@{esp}", "::/hvboot/hvboot.cfg", cfg_path)
        cfg = cfg_path.read_bytes()
        write("config", "hvboot-image.cfg", cfg)
        write("fat", "fat16-hvboot-files", fat_volume(tmp, cfg))
    # The Multiboot2 test kernels (tests/kernels/multiboot2, built by the set-up), stripped: a
    # 32-bit and a 64-bit ELF with their header and tags in the first page and a section header
    # table (.shstrtab) for the ELF-symbols tag they request.
    with tempfile.TemporaryDirectory() as t:
        for name, built in (("test-kernel", "mb2"), ("test-kernel-efi64", "mb2-efi64")):
            stripped = Path(t) / name
            run("strip", "-o", stripped, ROOT / f"tests/kernels/build/hvboot-{built}-kernel.elf")
            write("multiboot2", name, stripped.read_bytes())
    # Debian 12's bzImage (tests/fetch_debian.sh): its real-mode setup and the protected-mode
    # kernel's first 4 KiB (the whole file is 8 MiB; the rules read only the setup header).
    vmlinuz = ROOT / "tests/.cache/debian/linux/vmlinuz"
    if vmlinuz.exists():
        data = vmlinuz.read_bytes()
        write("bzimage", "debian-12-setup", data[: (data[0x1F1] + 1) * 512 + 4096])
    # The Limine test kernel (tests/kernels/limine), stripped: its markers, base-revision tag
    # and requests in the data segment; and the same with the tag asking for revision 7, one
    # hvboot refuses.
    with tempfile.TemporaryDirectory() as t:
        stripped = Path(t) / "limine"
        run("strip", "-o", stripped, KERNELS / "hvboot-limine-kernel")
        data = stripped.read_bytes()
        write("limine", "test-kernel", data)
        tag = struct.pack("<QQ", 0xF9562B2D5C95A6C8, 0x6A7B384944536BDC)
        at = data.index(tag) + 16
        write("limine", "test-kernel-revision-7", data[:at] + struct.pack("<Q", 7) + data[at + 8 :])
    for k in ("report", "request"):
        elf = small_elf((KERNELS / f"hvboot-{k}-kernel").read_bytes())
        write("elf", f"{k}-kernel-headers", elf)
        write("request", f"{k}-kernel-headers", elf)
    bootapi_seeds()
    rtc_seeds()
    iommu_seeds()


def large_corpus() -> None:
    """The whole stripped test kernels, as corpus entries for the ELF and request targets."""
    for k in ("report", "request", "outcome"):
        built = KERNELS / f"hvboot-{k}-kernel"
        if not built.exists():
            sys.exit(f"fuzz/seeds.py: {built} is missing: run scripts/setup.sh --no-demo first")
        out = ROOT / "fuzz/corpus/elf" / f"{k}-kernel"
        out.parent.mkdir(parents=True, exist_ok=True)
        run("strip", "-o", out, built)
        write("request", f"{k}-kernel", out.read_bytes(), under="corpus")


if __name__ == "__main__":
    main()
