"""Shared pieces of the benchmarks (not tests): the subjects' images and a timed QEMU run.

Every image is built into a scratch directory from sources written here or in the repository:
- floor: a 512-byte boot sector (BIOS) and a minimal BOOTX64.EFI (UEFI, a tiny static-pie C
  program converted by hvboot's PE converter) that write one serial line and exit through
  isa-debug-exit;
- hvboot: `hvboot build` of the report kernel (tests/kernels), optionally with a module;
- GRUB: the distribution's GRUB (grub-pc-bin, grub-efi-amd64-bin) in the same kind of GPT image
  (its core.img in the BIOS boot partition, boot.img in the MBR, grub's BOOTX64.EFI on the ESP),
  booting an equally small Multiboot2 kernel written here in NASM.
"""

from __future__ import annotations

import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hvboot import artifacts, qemu
from hvboot.build import build_image
from hvboot.config import BuildConfig, ModuleSpec
from hvboot.firmware import find_ovmf
from hvboot.image.disk import ALIGN_SECTORS, write_disk_image
from hvboot.image.fat import FatFile
from hvboot.pe import elf_to_pe

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
static inline void outb(unsigned short port, unsigned char v) {
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
__attribute__((ms_abi)) unsigned long efi_main(void *image, void *system_table) {
    (void)image; (void)system_table;
    for (const char *m = "FLOOR up\r\n"; *m; m++) outb(0x3F8, (unsigned char)*m);
    outb(0xF4, 0x10);
    for (;;) __asm__ volatile("hlt");
}
"""

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


def floor_uefi_image(w: Workdir) -> Path:
    src = w.path / "floor.c"
    src.write_text(FLOOR_EFI_C)
    elf = w.path / "floor.elf"
    run(
        [
            "gcc", "-O2", "-ffreestanding", "-fPIE", "-fno-stack-protector", "-mno-red-zone",
            "-static-pie", "-nostdlib", "-nostartfiles", "-Wl,-e,efi_main",
            "-Wl,--no-dynamic-linker", "-Wl,-z,norelro", "-Wl,-z,max-page-size=4096",
            "-Wl,--build-id=none", "-o", str(elf), str(src),
        ]
    )  # fmt: skip
    pe = elf_to_pe(elf.read_bytes(), source=str(elf))
    img = w.path / "floor-uefi.img"
    write_disk_image(img, [FatFile("EFI/BOOT/BOOTX64.EFI", pe)])
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


def have_grub() -> bool:
    return bool(shutil.which("grub-mkimage")) and GRUB_PC.is_dir() and GRUB_EFI.is_dir()


def grub_image(w: Workdir, module: Path | None = None) -> Path:
    """GRUB (i386-pc core.img + x86_64-efi BOOTX64.EFI) booting the Multiboot2 kernel."""
    src = w.path / "mb2.asm"
    src.write_text(MB2_KERNEL)
    obj, kernel = w.path / "mb2.o", w.path / "mb2.elf"
    run(["nasm", "-f", "elf32", "-o", str(obj), str(src)])
    run(["ld", "-m", "elf_i386", "-Ttext=0x200000", "-e", "_start", "-o", str(kernel), str(obj)])
    lines = ["set timeout=0", "set root=(hd0,gpt2)", "multiboot2 /kernel.mb2"]
    if module:
        lines.append("module2 /big.bin")
    lines.append("boot")
    cfg = w.path / "early.cfg"
    cfg.write_text("\n".join(lines) + "\n")
    mods = ["part_gpt", "fat", "multiboot2", "boot", "configfile", "echo", "test"]
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
    files = [FatFile("EFI/BOOT/BOOTX64.EFI", efi.read_bytes()),
             FatFile("kernel.mb2", kernel.read_bytes())]  # fmt: skip
    if module:
        files.append(FatFile("big.bin", module.read_bytes()))
    img = w.path / ("grub-mod.img" if module else "grub.img")
    write_disk_image(img, files, bios_stage2=bytes(core_bytes), mbr_boot_code=bytes(boot[:440]))
    return img


def time_to_marker(
    image: Path, firmware: str, machine: str, marker: bytes, timeout: float = 120.0
) -> float | None:
    """Seconds from QEMU's start to `marker` on serial; None if it never came."""
    spec = qemu.QemuSpec(
        image=image, firmware=firmware, machine=machine, memory="512M", snapshot=True
    )
    with tempfile.TemporaryDirectory(prefix="hvboot-bench-q-") as tmp:
        vars_copy = None
        if firmware == "uefi":
            vars_copy = Path(tmp) / "OVMF_VARS.fd"
            shutil.copyfile(find_ovmf().vars_template, vars_copy)
        cmd = qemu.command(spec, vars_copy)
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        seen = b""
        found: float | None = None
        try:
            while True:
                data = proc.stdout.read1(65536)
                if not data:
                    break
                seen = (seen + data)[-4096:]
                if marker in seen:
                    found = time.monotonic() - start
                    break
                if time.monotonic() - start > timeout:
                    break
        finally:
            proc.kill()
            proc.wait()
        return found


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


Subject = tuple[str, str, Callable[[], Path], bytes]  # (name, firmware, image, marker)
