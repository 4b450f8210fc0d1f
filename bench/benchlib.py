"""Shared pieces of the benchmarks (not tests): the subjects' images and a timed QEMU run.

Every image is built into a scratch directory from sources written here or in the repository:
- floor: a 512-byte boot sector (BIOS) and a minimal BOOTX64.EFI (UEFI, a tiny static-pie C
  program converted by hvboot's PE converter) that write one serial line and exit through
  isa-debug-exit; their raw-read variants first read N bytes off the disk as fast as the
  firmware allows (INT 13h AH=42h, 127 sectors a call / EFI_BLOCK_IO_PROTOCOL.ReadBlocks);
- hvboot: `hvboot build` of the report kernel (tests/kernels), optionally with a module;
- GRUB: the distribution's GRUB (grub-pc-bin, grub-efi-amd64-bin) in the same kind of GPT image
  (its core.img in the BIOS boot partition, boot.img in the MBR, grub's BOOTX64.EFI on the ESP),
  booting an equally small Multiboot2 kernel written here in NASM.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from hvboot.config.build import BuildConfig, ModuleSpec
from hvboot.image.build import BuildResult, build_image
from hvboot.image.disk import ALIGN_SECTORS, write_disk_image
from hvboot.image.fat import FatFile
from hvboot.loader import artifacts, config_file
from hvboot.loader.pe import elf_to_pe
from hvboot.vm import qemu
from hvboot.vm.firmware import find_ovmf
from hvboot.vm.machine import Machine

REPORT_KERNEL = artifacts.TEST_KERNELS / "target" / "release" / "hvboot-report-kernel"
GRUB_PC = Path("/usr/lib/grub/i386-pc")
GRUB_EFI = Path("/usr/lib/grub/x86_64-efi")
SECTOR = 512

FLOOR_BOOT_SECTOR = r"""
bits 16
org 0x7C00
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
%ifdef RAW_READ
    ; Back-to-back INT 13h extended reads of RAW_SECTORS sectors from LBA 2048, 127 per call,
    ; into one low buffer (what a loader's disk path cannot beat).
    mov ebp, RAW_SECTORS
.read:
    mov ax, 127
    cmp ebp, 127
    jae .n
    mov ax, bp
.n:
    mov [dap + 2], ax
    mov si, dap
    mov ah, 0x42
    push ax
    int 0x13
    pop ax
    jc .fail
    movzx eax, word [dap + 2]
    add [dap + 8], eax
    sub ebp, eax
    jnz .read
%endif
    mov si, msg
    mov dx, 0x3F8
.l: lodsb
    test al, al
    jz .done
    out dx, al
    jmp .l
.done:
    mov al, 0x10
    out 0xF4, al
.fail:
    hlt
    jmp .fail
msg: db "FLOOR up", 13, 10, 0
align 4
dap: db 16, 0
    dw 0, 0, 0x1000
    dq 2048
    times 510 - ($ - $$) db 0
    dw 0xAA55
"""

FLOOR_EFI_C = r"""
typedef unsigned long long u64;
typedef unsigned int u32;
#define EFIAPI __attribute__((ms_abi))

static inline void outb(unsigned short port, unsigned char v) {
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static void say(const char *m) {
    for (; *m; m++) outb(0x3F8, (unsigned char)*m);
}
static void halt(void) {
    for (;;) __asm__ volatile("hlt");
}

#ifdef RAW_READ
/* UEFI 2.10: EFI_SYSTEM_TABLE.BootServices at byte 96; in EFI_BOOT_SERVICES (after the 24-byte
 * header) AllocatePages is entry 2 and HandleProtocol entry 16; EFI_LOADED_IMAGE_PROTOCOL's
 * DeviceHandle at byte 24; EFI_BLOCK_IO_PROTOCOL = Revision, Media, Reset, ReadBlocks, ... and
 * EFI_BLOCK_IO_MEDIA starts with MediaId. */
typedef struct { u32 a; unsigned short b, c; unsigned char d[8]; } guid;
static const guid loaded_image_guid =
    {0x5B1B31A1, 0x9562, 0x11D2, {0x8E, 0x3F, 0x00, 0xA0, 0xC9, 0x69, 0x72, 0x3B}};
static const guid block_io_guid =
    {0x964E5B21, 0x6459, 0x11D2, {0x8E, 0x39, 0x00, 0xA0, 0xC9, 0x69, 0x72, 0x3B}};
typedef u64(EFIAPI *handle_protocol_fn)(void *handle, const guid *g, void **out);
typedef u64(EFIAPI *allocate_pages_fn)(int type, int kind, u64 pages, u64 *addr);
struct block_io {
    u64 revision;
    u32 *media;
    void *reset;
    u64(EFIAPI *read_blocks)(struct block_io *self, u32 media_id, u64 lba, u64 size, void *buf);
};
#endif

EFIAPI u64 efi_main(void *image, void **system_table) {
    (void)image; (void)system_table;
#ifdef RAW_READ
    /* Back-to-back ReadBlocks of RAW_CHUNK bytes each, RAW_BYTES in all, from the start of the
     * partition this application was loaded from into one buffer of RAW_BYTES. */
    void **bs = (void **)system_table[12];
    handle_protocol_fn handle_protocol = (handle_protocol_fn)bs[3 + 16];
    allocate_pages_fn allocate_pages = (allocate_pages_fn)bs[3 + 2];
    void **loaded = 0;
    struct block_io *bio = 0;
    u64 buf = 0;
    if (handle_protocol(image, &loaded_image_guid, (void **)&loaded) ||
        handle_protocol(loaded[3], &block_io_guid, (void **)&bio) ||
        allocate_pages(0 /* AllocateAnyPages */, 2 /* EfiLoaderData */, RAW_BYTES / 4096, &buf)) {
        say("FLOOR setup failed\r\n");
        halt();
    }
    for (u64 done = 0; done < RAW_BYTES; done += RAW_CHUNK) {
        if (bio->read_blocks(bio, *bio->media, done / 512, RAW_CHUNK, (char *)buf + done)) {
            say("FLOOR read failed\r\n");
            halt();
        }
    }
#endif
    say("FLOOR up\r\n");
    outb(0xF4, 0x10);
    halt();
    return 0;
}
"""

# ReadBlocks transfer size of the UEFI raw-read floor (1 MiB: what one large file read through
# OVMF's FAT driver turns into at most; OVMF's AHCI driver splits it further itself).
UEFI_RAW_CHUNK = 1 << 20

MB2_KERNEL = r"""
; A minimal Multiboot2 kernel: prints one line on COM1 and exits through isa-debug-exit.
bits 32
section .multiboot2 align=8
hdr:
    dd 0xE85250D6, 0, hdr_end - hdr, -(0xE85250D6 + (hdr_end - hdr))
    dw 0, 0
    dd 8
hdr_end:
section .text
global _start
_start:
    mov esi, msg
    mov dx, 0x3F8
.l: lodsb
    test al, al
    jz .done
    out dx, al
    jmp .l
.done:
    mov al, 0x10
    out 0xF4, al
.h: hlt
    jmp .h
section .rodata
msg: db "MB2 up", 13, 10, 0
"""


def run(cmd: list[str], cwd: Path | None = None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)


@dataclass
class Workdir:
    path: Path

    @classmethod
    def create(cls) -> Workdir:
        return cls(Path(tempfile.mkdtemp(prefix="hvboot-bench-")))

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def floor_bios_image(w: Workdir, raw_sectors: int | None = None) -> Path:
    name = "floor-raw" if raw_sectors else "floor-bios"
    src = w.path / f"{name}.asm"
    src.write_text(FLOOR_BOOT_SECTOR)
    out = w.path / f"{name}.bin"
    defs = ["-DRAW_READ", f"-DRAW_SECTORS={raw_sectors}"] if raw_sectors else []
    run(["nasm", "-f", "bin", *defs, "-o", str(out), str(src)])
    img = w.path / f"{name}.img"
    total = (2048 + (raw_sectors or 0) + 2048) * SECTOR
    with open(img, "wb") as f:
        f.write(out.read_bytes())
        f.truncate(total)
    return img


def floor_uefi_image(w: Workdir, raw: Path | None = None) -> Path:
    """The minimal BOOTX64.EFI; with `raw`, a file that goes on the ESP too and whose size in
    bytes the application reads from the ESP's first LBA with ReadBlocks before printing."""
    name = "floor-uefi-raw" if raw else "floor-uefi"
    src = w.path / "floor.c"
    src.write_text(FLOOR_EFI_C)
    elf = w.path / f"{name}.elf"
    defs = []
    files = []
    if raw:
        size = raw.stat().st_size
        assert size % UEFI_RAW_CHUNK == 0
        defs = ["-DRAW_READ", f"-DRAW_BYTES={size}ULL", f"-DRAW_CHUNK={UEFI_RAW_CHUNK}ULL"]
        files.append(FatFile("raw.bin", raw.read_bytes()))
    run(
        [
            "gcc", "-O2", "-ffreestanding", "-fPIE", "-fno-stack-protector", "-mno-red-zone",
            "-static-pie", "-nostdlib", "-nostartfiles", "-Wl,-e,efi_main",
            "-Wl,--no-dynamic-linker", "-Wl,-z,norelro", "-Wl,-z,max-page-size=4096",
            "-Wl,--build-id=none", *defs, "-o", str(elf), str(src),
        ]
    )  # fmt: skip
    pe = elf_to_pe(elf.read_bytes(), source=str(elf))
    img = w.path / f"{name}.img"
    write_disk_image(img, [FatFile("EFI/BOOT/BOOTX64.EFI", pe), *files])
    return img


def module_file(w: Workdir, size: int) -> Path:
    path = w.path / f"module-{size}.bin"
    if not path.exists():
        with open(path, "wb") as f:
            block = bytes(range(256)) * 4096  # 1 MiB, incompressible enough for a disk
            for _ in range(size // len(block)):
                f.write(block)
    return path


def hvboot_image(w: Workdir, module: Path | None = None) -> Path:
    img = w.path / ("hvboot-mod.img" if module else "hvboot.img")
    mods = (ModuleSpec(module, "big.bin", ""),) if module else ()
    cfg = BuildConfig(kernel=REPORT_KERNEL, cmdline="", modules=mods, output=None, image_size=None)
    build_image(cfg, img)
    return img


def drop_pins(built: BuildResult, w: Workdir, prefix: str = "") -> None:
    """Removes the `{prefix}*-blake3` pins from `built`'s hvboot.cfg on its ESP (mtools), so the
    loader reads those files without checking them (docs/trust.md: a config without pins)."""
    text = next(f.data for f in built.files if f.path == config_file.CONFIG_PATH).decode()
    keep = [x for x in text.splitlines(True) if not re.match(rf"{prefix}\S*-blake3 ", x)]
    src = w.path / "hvboot.cfg"
    src.write_text("".join(keep))
    esp = f"{built.output}@@{built.layout.esp_first_lba * SECTOR}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(
        ["mcopy", "-o", "-i", esp, str(src), f"::/{config_file.CONFIG_PATH}"], check=True, env=env
    )


def have_grub() -> bool:
    return bool(shutil.which("grub-mkimage")) and GRUB_PC.is_dir() and GRUB_EFI.is_dir()


def grub_image(w: Workdir, module: Path | None = None) -> Path:
    """GRUB (i386-pc core.img + x86_64-efi BOOTX64.EFI) booting the Multiboot2 kernel."""
    src = w.path / "mb2.asm"
    src.write_text(MB2_KERNEL)
    obj, kernel = w.path / "mb2.o", w.path / "mb2.elf"
    run(["nasm", "-f", "elf32", "-o", str(obj), str(src)])
    run(["ld", "-m", "elf_i386", "-Ttext=0x200000", "-e", "_start", "-o", str(kernel), str(obj)])
    lines = ["multiboot2 /kernel.mb2"]
    files = [FatFile("kernel.mb2", kernel.read_bytes())]
    if module:
        lines.append("module2 /big.bin")
        files.append(FatFile("big.bin", module.read_bytes()))
    return grub_disk(w, lines, files, "multiboot2", "grub-mod.img" if module else "grub.img")


def grub_disk(w: Workdir, lines: list[str], files: list[FatFile], loader: str, name: str) -> Path:
    """A GPT image whose GRUB (i386-pc core.img + x86_64-efi BOOTX64.EFI, module `loader`
    built in) runs `lines` from its embedded config, with `files` on the ESP."""
    cfg = w.path / "early.cfg"
    cfg.write_text("\n".join(["set timeout=0", "set root=(hd0,gpt2)", *lines, "boot"]) + "\n")
    mods = ["part_gpt", "fat", loader, "boot", "configfile", "echo", "test"]
    core = w.path / "core.img"
    run(["grub-mkimage", "-O", "i386-pc", "-o", str(core), "-p", "(hd0,gpt2)/boot/grub",
         "-c", str(cfg), "biosdisk", *mods])  # fmt: skip
    efi = w.path / "grubx64.efi"
    run(["grub-mkimage", "-O", "x86_64-efi", "-o", str(efi), "-p", "(hd0,gpt2)/boot/grub",
         "-c", str(cfg), *mods])  # fmt: skip
    core_bytes = bytearray(core.read_bytes())
    core_bytes += bytes(-len(core_bytes) % SECTOR)
    n = len(core_bytes) // SECTOR
    lba = ALIGN_SECTORS  # write_disk_image's BIOS boot partition
    # GRUB's i386-pc on-disk layout: boot.img holds core.img's first LBA at 0x5C; the first
    # sector of core.img (diskboot) ends with a block list: start LBA (u64) at 0x1F4, sector
    # count (u16) at 0x1FC, for the rest of core.img.
    boot = bytearray((GRUB_PC / "boot.img").read_bytes())
    struct.pack_into("<Q", boot, 0x5C, lba)
    struct.pack_into("<QH", core_bytes, 0x1F4, lba + 1, n - 1)
    files = [FatFile("EFI/BOOT/BOOTX64.EFI", efi.read_bytes()), *files]
    img = w.path / name
    write_disk_image(img, files, bios_stage2=bytes(core_bytes), mbr_boot_code=bytes(boot[:440]))
    return img


# What OVMF prints on serial just before StartImage of the boot option (after loading it).
OVMF_STARTING = b"BdsDxe: starting Boot"

# How the benchmarks' figures are clocked (for their headings).
CLOCK_NOTE = "BIOS: from QEMU's start; UEFI: from OVMF's StartImage line"


@dataclass(frozen=True)
class Boot:
    """One boot's serial timestamps, in seconds from QEMU's start."""

    marker: float  # the subject's marker line
    start_image: float | None  # OVMF's StartImage line (UEFI boots); None under BIOS

    @property
    def measured(self) -> float:
        """The figure the benchmarks compare: under UEFI the time from OVMF's StartImage line
        (just before it starts BOOTX64.EFI), which keeps OVMF's own start-up jitter (several
        tenths of a second) out; under BIOS the time from QEMU's start (SeaBIOS is quick and
        steady)."""
        return self.marker - (self.start_image if self.start_image is not None else 0.0)


def time_boot(
    image: Path,
    firmware: str,
    machine: str,
    marker: bytes,
    timeout: float = 120.0,
    qemu_args: tuple[str, ...] = (),
    from_qemu_start: bool = False,
) -> Boot | None:
    """Boot `image` (with `qemu_args`) and time `marker` on serial (under UEFI, unless
    `from_qemu_start`, the StartImage line too, and the marker only after it); None if either
    never came within `timeout` seconds."""
    m = Machine(firmware=firmware, type=machine, memory="512M", qemu_args=qemu_args)
    spec = qemu.QemuSpec(image=image, machine=m, snapshot=True)
    uefi = firmware == "uefi"
    wait_start = uefi and not from_qemu_start
    with tempfile.TemporaryDirectory(prefix="hvboot-bench-q-") as tmp:
        vars_copy = None
        if uefi:
            vars_copy = Path(tmp) / "OVMF_VARS.fd"
            shutil.copyfile(find_ovmf().vars_template, vars_copy)
        cmd = qemu.command(spec, vars_copy)
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        stdout = proc.stdout
        assert isinstance(stdout, io.BufferedReader)  # bufsize -1: buffered, has read1
        seen = b""
        start_image: float | None = None
        try:
            while True:
                data = stdout.read1(65536)
                if not data:
                    break
                now = time.monotonic() - start
                seen = (seen + data)[-4096:]
                if wait_start and start_image is None and OVMF_STARTING in seen:
                    start_image = now
                    seen = seen[seen.index(OVMF_STARTING) + len(OVMF_STARTING) :]
                if (start_image is not None or not wait_start) and marker in seen:
                    return Boot(marker=now, start_image=start_image)
                if now > timeout:
                    break
        finally:
            proc.kill()
            proc.wait()
        return None


@dataclass(frozen=True)
class Trial:
    """One boot to repeat: `key` names it in the results."""

    key: Hashable
    image: Path
    firmware: str
    machine: str
    marker: bytes
    qemu_args: tuple[str, ...] = ()
    from_qemu_start: bool = False


def run_rounds(
    trials: list[Trial], rounds: int, timeout: float = 120.0
) -> dict[Hashable, list[Boot]]:
    """Boot every trial once per round (interleaved, so all see the same machine load); the
    boots that reached their marker, by key (fewer than `rounds`: some failed)."""
    boots: dict[Hashable, list[Boot]] = {t.key: [] for t in trials}
    for r in range(rounds):
        for t in trials:
            b = time_boot(
                t.image, t.firmware, t.machine, t.marker, timeout, t.qemu_args, t.from_qemu_start
            )
            if b is not None:
                boots[t.key].append(b)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    return boots


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def debian_bench_args(doc: str, needs: tuple[Path, ...]) -> argparse.Namespace | None:
    """`--runs N` and `--firmwares` of the benchmarks that boot Debian's kernels; None (said on
    stderr) when a file tests/fetch_debian.sh fetches is missing."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--firmwares", default="bios,uefi", type=lambda s: s.split(","))
    args = ap.parse_args()
    for need in needs:
        if not need.is_file():
            print(f"{need}: missing; run tests/fetch_debian.sh", file=sys.stderr)
            return None
    return args


def print_over_floor(
    title: str, boots: dict[Hashable, list[Boot]], firmwares: list[str], subjects: list[str],
    runs: int,
) -> None:  # fmt: skip
    """The side-by-side table of `boots` keyed (firmware, subject): per firmware, each
    subject's median and minimum, its overhead over the "floor" subject's median and that
    overhead over GRUB's (the issues' goal for hvboot: at most 0.5)."""
    print(f"\n{title} (median of {runs}, seconds)")
    print(f"{'firmware':8} {'subject':8} {'median':>7} {'min':>7} {'over floor':>10} "
          f"{'x grub over':>11}")  # fmt: skip
    for fw in firmwares:
        med = {n: median([b.measured for b in boots[(fw, n)]]) for n in subjects}
        floor, grub_over = med["floor"], med.get("grub", float("nan")) - med["floor"]
        for name in subjects:
            done = boots[(fw, name)]
            if len(done) < runs:
                print(f"{fw:8} {name:8} FAILED ({len(done)}/{runs} reached the marker)")
            if not done:
                continue
            over = med[name] - floor
            ratio = f"{over / grub_over:11.2f}" if grub_over > 0 else f"{'-':>11}"
            low = min(b.measured for b in done)
            print(f"{fw:8} {name:8} {med[name]:7.2f} {low:7.2f} {over:10.2f} {ratio}")


Subject = tuple[str, str, Callable[[], Path], bytes]  # (name, firmware, image, marker)
