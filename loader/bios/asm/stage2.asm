; hvboot stage 2 (BIOS): the assembly half of the BIOS loader, linked with the Rust BIOS
; platform layer into one flat binary that stage 1 loads at 0x8000 (loader/bios/bios.ld).
;
; Real mode: enable A20 (INT 15h 2401h, then port 0x92) and check it, check that the CPU has
; long mode, build identity page tables for the first 4 GiB (2 MiB pages), then enter long mode
; straight from real mode with SSE enabled, zero .bss, and call the Rust entry `bios_main`.
;
; `hvboot_bios_call` is the real-mode call thunk: from long mode it drops to compatibility mode,
; turns paging and long mode off, goes through 16-bit protected mode to real mode, loads the
; caller's registers, issues INT n, stores the registers back and climbs back to long mode.
; `hvboot_bios_read` goes down the same way but runs `rm_read_batch` instead of one INT: a whole
; disk read (any number of 127-sector INT 13h transfers, each copied up to its destination below
; 4 GiB in 32-bit protected mode without paging) per trip to real mode.
;
; Everything here lives in the first 64 KiB (segment 0) so real-mode code reaches it with DS = 0.
; Memory (docs/bios.md "Memory below 1 MiB"): the addresses come from layout.inc.

%include "layout.inc"
EFER        equ 0xC0000080

SEL_CODE64  equ 0x08
SEL_DATA    equ 0x10
SEL_CODE32  equ 0x18
SEL_CODE16  equ 0x20
SEL_DATA16  equ 0x28

extern bios_main
extern __bss_start
extern __bss_end
global stage2_start
global hvboot_bios_call
global hvboot_bios_read
global hvboot_boot_drive

section .stage2.entry progbits alloc exec write align=16
bits 16
stage2_start:
    jmp short real_start
    nop
    nop
    db "HVS2"                       ; at 0x8004: stage 1 checks it

real_start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, RM_STACK
    sti
    cld
    mov [hvboot_boot_drive], dl

    ; A20 (so odd MiBs are not aliases of even ones).
    call a20_on
    jnc .a20_ok
    mov ax, 0x2401                  ; INT 15h: enable A20 gate
    int 0x15
    call a20_on
    jnc .a20_ok
    in al, 0x92                     ; "fast A20" (system control port A), without reset
    or al, 2
    and al, 0xFE
    out 0x92, al
    call a20_on
    jnc .a20_ok
    mov si, msg_a20
    jmp fail16
.a20_ok:

    ; Long mode available? CPUID 80000001h EDX bit 29 (Intel SDM Vol. 2A, CPUID).
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb .no_lm
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jnz .lm_ok
.no_lm:
    mov si, msg_lm
    jmp fail16
.lm_ok:

    ; Everything up to LOADER_END is ours (layout.inc): stop if the EBDA (segment at BDA 0x40E)
    ; or the conventional memory size (BDA 0x413, KiB, what INT 12h returns) says it is not,
    ; before the page tables are written there (real EBDAs start from ~0x80000 up).
    mov ax, [0x40E]
    test ax, ax
    jz .no_ebda
    cmp ax, LOADER_END >> 4
    jb .low_mem
.no_ebda:
    cmp word [0x413], LOADER_END >> 10
    jae .mem_ok
.low_mem:
    mov si, msg_low_mem
    jmp fail16_bare
.mem_ok:

    ; Identity page tables for 0..4 GiB with 2 MiB pages.
    push es
    mov ax, PML4 >> 4
    mov es, ax
    xor di, di
    xor eax, eax
    mov cx, 6 * 4096 / 4
    rep stosd
    mov dword [es:0], PDPT | 3                    ; PML4[0] -> PDPT (P, RW)
    mov eax, PD0 | 3
    mov di, PDPT - PML4
.pdpt:
    mov [es:di], eax                              ; PDPT[0..4] -> PD0..PD3
    add eax, 0x1000
    add di, 8
    cmp di, PDPT - PML4 + 4 * 8
    jb .pdpt
    mov eax, 0x83                                 ; P, RW, PS: a 2 MiB page at 0
    mov di, PD0 - PML4
.pd:
    mov [es:di], eax
    add eax, 0x200000
    add di, 8
    cmp di, PD0 - PML4 + 4 * 4096
    jb .pd
    pop es

    ; Long mode, straight from real mode (Intel SDM Vol. 3A §10.8.5): PAE + SSE in CR4, CR3,
    ; EFER.LME, then CR0.PG and CR0.PE together; CR0.MP set and CR0.EM clear for SSE.
    cli
    o32 lgdt [gdtr]
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)      ; PAE, OSFXSR, OSXMMEXCPT
    mov cr4, eax
    mov eax, PML4
    mov cr3, eax
    mov ecx, EFER
    rdmsr
    or eax, 1 << 8                                ; LME
    wrmsr
    mov eax, cr0
    and eax, ~(1 << 2)                            ; EM off
    or eax, (1 << 31) | (1 << 1) | 1              ; PG, MP, PE
    mov cr0, eax
    jmp dword SEL_CODE64:long_start

; CF clear if A20 is on: compare 0000:0500 with FFFF:0510 (the same address with A20 off).
a20_on:
    push ds
    push es
    xor ax, ax
    mov ds, ax
    mov ax, 0xFFFF
    mov es, ax
    mov bl, [0x0500]
    mov byte [0x0500], 0x5A
    mov byte [es:0x0510], 0xA5
    cmp byte [0x0500], 0x5A
    mov [0x0500], bl
    pop es
    pop ds
    je .on
    stc
    ret
.on:
    clc
    ret

; Print the NUL-terminated string at SI (screen and COM1), then halt.
fail16:
    push si
    mov si, msg_prefix
    call puts16
    pop si
fail16_bare:                        ; the message names its own prefix
    call puts16
.halt:
    cli
    hlt
    jmp .halt

puts16:
    lodsb
    test al, al
    jz .done
    mov ah, 0x0E
    mov bx, 0x0007
    push ax
    int 0x10
    pop ax
    mov dx, 0x3F8
    out dx, al
    jmp puts16
.done:
    ret

bits 64
long_start:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, LM_STACK
    lidt [null_idtr]
    mov rdi, __bss_start
    mov rcx, __bss_end
    sub rcx, rdi
    xor eax, eax
    rep stosb
    movzx edi, byte [hvboot_boot_drive]
    call bios_main
.halt:
    cli
    hlt
    jmp .halt

; extern "sysv64" fn hvboot_bios_call(int_no: u32, regs: *mut BiosRegs)
; BiosRegs: eax ebx ecx edx esi edi ebp (u32 each), ds es (u16 each), eflags (u32): 36 bytes.
hvboot_bios_call:
    mov [int_insn + 1], dil         ; the INT's immediate (the far jumps below serialise)
    mov word [rm_target], rm_int
    jmp thunk_common

; extern "sysv64" fn hvboot_bios_read(regs: *mut BiosRegs): runs `rm_read_batch` in real mode
; with `regs` (its inputs and outputs are described there) and returns its registers and flags.
hvboot_bios_read:
    mov rsi, rdi
    mov word [rm_target], rm_read_batch
    ; fall through

; RSI = the caller's BiosRegs; rm_target = the real-mode routine (a near call in segment 0).
thunk_common:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    pushfq
    mov [saved_rsp], rsp
    mov [saved_regs], rsi
    mov rdi, rm_regs
    mov ecx, 36
    rep movsb
    sgdt [saved_gdtr]
    ; Down: long mode -> compatibility mode.
    push SEL_CODE32
    mov rax, .compat
    push rax
    retfq
bits 32
.compat:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr0
    and eax, 0x7FFFFFFF             ; paging off: leaves long mode (LMA = 0)
    mov cr0, eax
    mov ecx, EFER
    rdmsr
    and eax, ~(1 << 8)              ; LME off
    wrmsr
    jmp SEL_CODE16:.pm16
bits 16
.pm16:
    mov ax, SEL_DATA16              ; 64 KiB limits in the segment caches, as real mode expects
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov eax, cr0
    and eax, ~1                     ; PE off: real mode
    mov cr0, eax
    jmp 0:.real
.real:
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov esp, RM_STACK
    lidt [rm_idtr]
    mov es, [rm_regs + 30]
    push word [rm_regs + 28]
    mov eax, [rm_regs + 0]
    mov ebx, [rm_regs + 4]
    mov ecx, [rm_regs + 8]
    mov edx, [rm_regs + 12]
    mov esi, [rm_regs + 16]
    mov edi, [rm_regs + 20]
    mov ebp, [rm_regs + 24]
    pop ds
    sti
    call word [cs:rm_target]
    cli
    pushfd
    push ds
    push word 0
    pop ds
    mov [rm_regs + 0], eax
    mov [rm_regs + 4], ebx
    mov [rm_regs + 8], ecx
    mov [rm_regs + 12], edx
    mov [rm_regs + 16], esi
    mov [rm_regs + 20], edi
    mov [rm_regs + 24], ebp
    mov [rm_regs + 30], es
    pop word [rm_regs + 28]
    pop dword [rm_regs + 32]
    ; Up: real mode -> protected mode -> long mode (the BIOS may have loaded its own GDT).
    o32 lgdt [gdtr]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp dword SEL_CODE32:.pm32
bits 32
.pm32:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov ecx, EFER
    rdmsr
    or eax, 1 << 8                  ; LME
    wrmsr
    mov eax, cr0
    or eax, 1 << 31                 ; PG: back in long mode (compatibility mode)
    mov cr0, eax
    jmp SEL_CODE64:.back
bits 64
.back:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, [saved_rsp]
    lidt [null_idtr]
    lgdt [saved_gdtr]
    mov rdi, [saved_regs]
    mov rsi, rm_regs
    mov ecx, 36
    rep movsb
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

; The real-mode routines the thunk calls (near, in segment 0; interrupts on, SS:SP = 0:7C00).
bits 16
rm_int:
int_insn:
    int 0x00                        ; the immediate is patched by hvboot_bios_call
    ret

; A whole disk read in real mode (Phoenix EDD 3.0, INT 13h AH=42h), copied up as it goes.
; In:  EAX = sectors (> 0), EBX = destination (linear, below 4 GiB, the whole range identity-
;      reachable), ECX = LBA bits 0-31, EBP = LBA bits 32-63, DL = drive, DH = log2 of the
;      sector size (9, or 11 on a CD), ESI = the bounce buffer (linear, 16-byte aligned, below
;      1 MiB), EDI = sectors per transfer (1..127, the bounce buffer's size / the sector size).
; Out: CF clear and AH = 0 when every sector was read and copied. Else CF set, AH = the INT 13h
;      status of the failing transfer, ECX:EBP = its first LBA and EDI its sector count; the
;      transfers before it are in place.
; Each transfer: the DAP names the bounce buffer; INT 13h (interrupts on); then, interrupts off,
; our GDT is loaded again (the BIOS may run in protected mode with its own), CR0.PE set and a
; far jump made to the flat 32-bit code segment (no paging: linear = physical), the chunk is
; copied with SSE (CR4.OSFXSR is still set, CR0.EM/TS clear), and a 16-bit protected-mode
; segment with 64 KiB limits leads back to real mode (Intel SDM Vol. 3A §9.9.1, §9.9.2).
rm_read_batch:
    mov [cs:rb_left], eax
    mov [cs:rb_dest], ebx
    mov [cs:rb_lba], ecx
    mov [cs:rb_lba + 4], ebp
    mov [cs:rb_drive], dl
    mov [cs:rb_shift], dh
    mov [cs:rb_bounce], esi
    mov [cs:rb_max], edi
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov byte [rb_dap], 16           ; DAP size
    mov byte [rb_dap + 1], 0
    shr esi, 4
    mov word [rb_dap + 4], 0        ; buffer offset:segment
    mov [rb_dap + 6], si
.next:
    mov eax, [rb_left]
    cmp eax, [rb_max]
    jbe .count
    mov eax, [rb_max]
.count:
    mov [rb_count], eax
    mov [rb_dap + 2], ax            ; sectors
    mov eax, [rb_lba]
    mov [rb_dap + 8], eax
    mov eax, [rb_lba + 4]
    mov [rb_dap + 12], eax
    mov si, rb_dap
    mov dl, [rb_drive]
    mov ah, 0x42
    sti
    int 0x13
    cli
    push word 0
    pop ds
    jc .fail
    test ah, ah
    jnz .fail
    ; Copy the chunk up in 32-bit protected mode.
    o32 lgdt [gdtr]
    mov eax, cr0
    or al, 1                        ; PE
    mov cr0, eax
    jmp dword SEL_CODE32:.copy32
bits 32
.copy32:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov esi, [rb_bounce]
    mov edi, [rb_dest]
    mov ecx, [rb_count]
    mov ebx, ecx
    mov cl, [rb_shift]
    shl ebx, cl                     ; bytes: a multiple of 512, so of 128
    mov ecx, ebx
.copy:
    movdqa xmm0, [esi]
    movdqa xmm1, [esi + 16]
    movdqa xmm2, [esi + 32]
    movdqa xmm3, [esi + 48]
    movdqa xmm4, [esi + 64]
    movdqa xmm5, [esi + 80]
    movdqa xmm6, [esi + 96]
    movdqa xmm7, [esi + 112]
    movdqu [edi], xmm0
    movdqu [edi + 16], xmm1
    movdqu [edi + 32], xmm2
    movdqu [edi + 48], xmm3
    movdqu [edi + 64], xmm4
    movdqu [edi + 80], xmm5
    movdqu [edi + 96], xmm6
    movdqu [edi + 112], xmm7
    add esi, 128
    add edi, 128
    sub ecx, 128
    jnz .copy
    mov [rb_dest], edi
    jmp SEL_CODE16:.pm16
bits 16
.pm16:
    mov ax, SEL_DATA16              ; real-mode limits back in the segment caches
    mov ds, ax
    mov es, ax
    mov eax, cr0
    and al, 0xFE                    ; PE off
    mov cr0, eax
    jmp 0:.real
.real:
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov eax, [rb_count]
    add [rb_lba], eax
    adc dword [rb_lba + 4], 0
    sub [rb_left], eax
    jnz .next
    xor eax, eax                    ; AH = 0, CF clear
    ret
.fail:
    mov ecx, [rb_lba]
    mov ebp, [rb_lba + 4]
    mov edi, [rb_count]
    stc
    ret

section .stage2.data progbits alloc noexec write align=16
align 16
gdt:
    dq 0
    dq 0x00AF9A000000FFFF           ; 0x08 64-bit code
    dq 0x00CF92000000FFFF           ; 0x10 flat data
    dq 0x00CF9A000000FFFF           ; 0x18 32-bit code
    dq 0x00009A000000FFFF           ; 0x20 16-bit code, 64 KiB
    dq 0x000092000000FFFF           ; 0x28 16-bit data, 64 KiB
gdt_end:
align 8
    dw 0, 0, 0
gdtr:
    dw gdt_end - gdt - 1
    dq gdt
align 8
    dw 0, 0, 0
saved_gdtr:
    dw 0
    dq 0
align 8
    dw 0, 0, 0
null_idtr:
    dw 0
    dq 0
align 8
    dw 0, 0, 0
rm_idtr:
    dw 0x3FF
    dq 0
align 8
saved_rsp:  dq 0
saved_regs: dq 0
rm_target:  dw 0
align 8
rb_lba:     dq 0                    ; rm_read_batch's state (see there)
rb_left:    dd 0
rb_dest:    dd 0
rb_count:   dd 0
rb_bounce:  dd 0
rb_max:     dd 0
rb_drive:   db 0
rb_shift:   db 0
align 4
rb_dap:     times 16 db 0           ; its INT 13h disk address packet
rm_regs:    times 36 db 0
hvboot_boot_drive: db 0

msg_prefix: db "hvboot stage 2: ", 0
msg_a20:    db "cannot enable A20", 13, 10, 0
msg_lm:     db "the CPU has no 64-bit long mode", 13, 10, 0
%defstr LOADER_END_STR LOADER_END
msg_low_mem: db "hvboot: error: the EBDA (BDA 0x40E) or the conventional memory size (BDA 0x413) "
            db "ends below ", LOADER_END_STR, ": the BIOS loader's buffers, stack and page tables "
            db "lie there (docs/bios.md)", 13, 10, "hvboot: halted", 13, 10, 0
