; hvboot stage 1: the boot code in the first 440 bytes of the protective MBR.
;
; The BIOS loads this sector at 0x7C00 and jumps to it with DL = the boot drive. Stage 1 checks
; the INT 13h extensions (EDD 3.0, AH=41h), reads stage 2 from the BIOS boot partition with
; extended reads (AH=42h) to 0x8000, checks stage 2's signature and jumps to it with DL = drive.
; Failures print a short reason on the screen (INT 10h) and COM1, then halt.
;
; The same code is the first 2048 bytes of an ISO's El Torito no-emulation boot image, which the
; BIOS loads at 0x7C00 too (El Torito 1.0 §2.0, "no emulation"): there the drive has 2048-byte
; sectors (EDD AH=48h says so) and stage 2 is the rest of that image, whose LBA xorriso's
; -boot-info-table writes at byte 12 (hence bytes 8..63 are left free). On the same ISO written
; to a disk, xorriso's --grub2-mbr fills the patch block's LBA with the image's LBA + 4 (512-byte
; blocks), which is stage 2 there (docs/bios.md, "From a CD").
;
; The image builder (src/hvboot/build.py) patches the patch block at PATCH_OFFSET:
;   +0  4 bytes  "HVS1"              (checked, not changed: proves the block is where it says)
;   +4  u16      stage 2 sectors     (0 in the unpatched binary: stage 1 refuses to boot)
;   +6  u16      reserved (0)
;   +8  u64      stage 2 first LBA
; (docs/bios.md). Memory (layout.inc): stack below 0x7C00, stage 2 at IMAGE_START..IMAGE_LIMIT.

bits 16
org 0x7C00

%include "layout.inc"
STAGE2_SEG      equ IMAGE_START >> 4
STAGE2_MAX_SEG  equ IMAGE_LIMIT >> 4 ; stage 2 must end at or below IMAGE_LIMIT
CHUNK           equ 64              ; sectors per read: 32 KiB, never crosses a 64 KiB boundary
PATCH_OFFSET    equ 0x1A8
COM1            equ 0x3F8
EDD_BUF         equ 0x0600          ; AH=48h result buffer (free conventional memory)

start:
    jmp short go
    times 8 - ($ - $$) db 0
boot_info:                          ; El Torito boot-info table (mkisofs -boot-info-table)
    dd 0                            ; +8  the primary volume descriptor's LBA
bi_file:
    dd 0                            ; +12 this boot image's LBA (2048-byte sectors)
    times 64 - ($ - $$) db 0        ; +16 length, +20 checksum, +24 reserved
go:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    jmp 0:.cs_ok                    ; some BIOSes enter at 07C0:0000
.cs_ok:
    sti
    cld
    mov [drive], dl

    ; INT 13h extensions present and supporting the DAP calls (bit 0 of CX)?
    mov ah, 0x41
    mov bx, 0x55AA
    int 0x13
    mov si, msg_noext
    jc fail
    cmp bx, 0xAA55
    jne fail
    test cl, 1
    jz fail

    mov si, patch_lba
    mov di, dap_lba
    movsd
    movsd
    mov si, msg_patch
    mov cx, [patch_sectors]
    test cx, cx
    jz fail
    cmp cx, (STAGE2_MAX_SEG - STAGE2_SEG) / 32
    ja fail

    ; The sector size (EDD 3.0 AH=48h, bytes per sector at +18h): 2048 on a CD. No answer: a
    ; disk, as before. (AH=48h leaves CX as it was.)
    mov si, EDD_BUF
    mov word [si], 0x1A
    mov ah, 0x48
    mov dl, [drive]
    int 0x13
    jc .read
    cmp word [si + 0x18], 2048
    jne .read
    mov eax, [bi_file]              ; stage 2: the boot image's second CD sector on
    inc eax
    mov [dap_lba], eax
    add cx, 3                       ; 512-byte sectors -> CD sectors, rounded up
    shr cx, 2
    mov word [chunk], (2048 / 16) << 8 | CHUNK / 4   ; and seg_step

.read:
    movzx ax, byte [chunk]
    cmp cx, ax
    jae .n
    mov ax, cx
.n:
    mov [dap_count], ax
    mov si, dap
    mov dl, [drive]
    push cx
    push ax
    mov ah, 0x42
    int 0x13
    pop ax
    pop cx
    mov si, msg_read
    jc fail
    ; advance: buffer segment += n * sector size / 16, LBA += n
    movzx bx, byte [seg_step]
    imul bx, ax
    add [dap_seg], bx
    movzx eax, ax
    add [dap_lba], eax
    adc dword [dap_lba + 4], 0
    sub cx, [dap_count]
    jnz .read

    mov si, msg_sig
    cmp dword [0x8004], 'HVS2'
    jne fail
    mov dl, [drive]
    jmp 0:0x8000

; Print the NUL-terminated string at SI with the prefix, then halt.
fail:
    push si
    mov si, msg_prefix
    call puts
    pop si
    call puts
.halt:
    cli
    hlt
    jmp .halt

puts:
    lodsb
    test al, al
    jz .done
    mov ah, 0x0E
    mov bx, 0x0007
    push ax
    int 0x10
    pop ax
    mov dx, COM1                    ; and COM1 (the BIOS has programmed it; polled)
    out dx, al
    jmp puts
.done:
    ret

msg_prefix: db "hvboot stage 1: ", 0
msg_noext:  db "no INT 13h extensions", 13, 10, 0
msg_patch:  db "not patched", 13, 10, 0
msg_read:   db "read error", 13, 10, 0
msg_sig:    db "bad stage 2", 13, 10, 0

drive: db 0
chunk: db CHUNK                     ; sectors per read (32 KiB)
seg_step: db 512 / 16               ; paragraphs per sector

align 4
dap:
    db 16, 0
dap_count:
    dw 0
    dw 0                            ; buffer offset
dap_seg:
    dw STAGE2_SEG
dap_lba:
    dq 0                            ; copied from the patch block below

    times PATCH_OFFSET - ($ - $$) db 0
patch:
    db "HVS1"
patch_sectors:
    dw 0
    dw 0
patch_lba:
    dq 0

    times 440 - ($ - $$) db 0       ; fails to assemble if stage 1 outgrows 440 bytes
