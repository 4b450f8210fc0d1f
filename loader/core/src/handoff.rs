//! The last instructions the loader runs: switch to the kernel's page tables, stack and GDT, then
//! jump to its entry point with RDI = the boot information; or, for a Multiboot2 kernel, leave
//! long mode and enter it in 32-bit protected mode ([`EntryMode::Multiboot2`]).
//!
//! Shared by the UEFI and BIOS loaders. This code runs while CR3 changes under it, so the page that holds it is identity-mapped in the
//! kernel's tables too (reported as loader-reclaimable memory).

use core::arch::global_asm;

/// The GDT's first three entries (selectors 0x08 code, 0x10 data; Intel SDM Vol. 3A §3.4.5,
/// §5.2.1): null, code (L=1, P=1, DPL 0, type execute/read), data (P=1, writable). The 64-bit TSS
/// descriptor follows ([`gdt`]).
pub const GDT: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];

/// The TSS selector (GDT index 3; the descriptor takes two entries in long mode).
pub const TSS_SELECTOR: u16 = 0x18;
/// Bytes of a 64-bit TSS (Intel SDM Vol. 3A §8.7, Figure 8-11).
pub const TSS_SIZE: usize = 104;
/// Entries of the full GDT: null, code, data, and the 16-byte TSS descriptor.
pub const GDT_ENTRIES: usize = 5;
/// Where the TSS lies behind the GDT in the GDT's page (bytes from the GDT's start).
pub const TSS_OFFSET: u64 = 0x80;

/// The full GDT with a 64-bit TSS descriptor for a TSS at virtual address `tss` (Intel SDM Vol.
/// 3A §8.2.3, Figure 8-4: limit 103, type 9 "available 64-bit TSS", P=1, DPL 0, byte
/// granularity; base bits 63:32 in the second entry).
pub const fn gdt(tss: u64) -> [u64; GDT_ENTRIES] {
    let limit = (TSS_SIZE - 1) as u64;
    let low = (limit & 0xffff)
        | (tss & 0xff_ffff) << 16
        | 0x89 << 40
        | ((limit >> 16) & 0xf) << 48
        | ((tss >> 24) & 0xff) << 56;
    [GDT[0], GDT[1], GDT[2], low, tss >> 32]
}

/// The TSS's bytes: all stack pointers 0 (the kernel runs in ring 0 and sets its own IST), the
/// I/O map base at the TSS's end (no I/O permission bitmap).
pub const fn tss() -> [u8; TSS_SIZE] {
    let mut t = [0u8; TSS_SIZE];
    t[102] = TSS_SIZE as u8;
    t
}

global_asm!(
    ".section .text.hvboot_handoff,\"ax\",@progbits",
    ".balign 64",
    ".global hvboot_handoff",
    "hvboot_handoff:",
    // rdi = CR3, rsi = stack top, rdx = entry, rcx = boot info (virtual),
    // r8 = GDT base (virtual), r9 = GDT limit.
    "cli",
    "mov cr3, rdi",
    "mov rsp, rsi",
    "sub rsp, 16",
    "mov word ptr [rsp + 6], r9w",
    "mov qword ptr [rsp + 8], r8",
    "lgdt [rsp + 6]",
    "add rsp, 16",
    "push 0x08",
    "lea rax, [rip + 2f]",
    "push rax",
    "retfq",
    "2:",
    "mov eax, 0x10",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov fs, eax",
    "mov gs, eax",
    "mov eax, 0x18",
    "ltr ax",
    "mov rdi, rcx",
    "xor eax, eax",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor esi, esi",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "jmp rdx",
    // The Limine entry (limine-protocol PROTOCOL.md, "Machine State at Entry", x86-64):
    // rdi = CR3, rsi = stack top, rdx = entry, rcx = GDT base (virtual), r8 = GDT limit,
    // r9 = 1 for base revision 5's stricter state, [rsp + 8] the 5-level switch page (0: 4-level
    // paging; `flow::five_level`), [rsp + 16] the HHDM offset (the xAPIC page through it). The legacy PICs masked, the GDT's 64-bit
    // selectors 0x28/0x30 loaded, RFLAGS 2 (IF, DF clear), a return address of 0 pushed and the
    // entry reached by RET so that every general-purpose register is 0. Revision 5 also: the
    // strict state of `hvboot_limine_strict` below.
    ".global hvboot_limine",
    "hvboot_limine:",
    "cli",
    "cld",
    "mov al, 0xff",
    "out 0x21, al",
    "out 0xa1, al",
    // 5-level paging: CR4.LA57 changes only with paging off (SDM Vol. 3A §2.5, §10.8.5), so
    // through 32-bit protected mode: the switch page's PML5 takes the loader's PML4 of the
    // moment as its entry 0 (the same identity map, stack and code included), its GDT copy is
    // loaded by its physical address, code 0x18 is the protocol's 32-bit segment; paging off,
    // LA57 on, CR3 = the switch PML5, paging on, back to 64-bit code at 0x28. This code and
    // the loader's stack lie below 4 GiB on both firmwares.
    "mov r11, [rsp + 8]",
    "test r11, r11",
    "jz 6f",
    "mov rax, cr4",
    "btr rax, 17",
    "mov cr4, rax",
    "mov rax, cr3",
    "and rax, -4096",
    "or rax, 3",
    "mov [r11], rax",
    "sub rsp, 16",
    "mov word ptr [rsp + 6], r8w",
    "lea rax, [r11 + 0x800]",
    "mov qword ptr [rsp + 8], rax",
    "lgdt [rsp + 6]",
    "add rsp, 16",
    "mov rbp, r11",
    "lea rbx, [rip + 8f]",
    "push 0x18",
    "lea rax, [rip + 7f]",
    "push rax",
    "retfq",
    ".code32",
    "7:",
    "mov eax, 0x20",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov eax, cr0",
    "and eax, 0x7fffffff",
    "mov cr0, eax",
    "mov eax, cr4",
    "or eax, 0x1000",
    "mov cr4, eax",
    "mov cr3, ebp",
    "mov eax, cr0",
    "or eax, 0x80000000",
    "mov cr0, eax",
    "push 0x28",
    "push ebx",
    "retf",
    ".code64",
    "8:",
    "6:",
    // The HHDM offset, read here rather than kept in a register across the 5-level switch (SDM
    // Vol. 1 §3.4.1.1: R8-R15 are undefined after a trip through legacy mode).
    "mov r12, [rsp + 16]",
    "mov cr3, rdi",
    "mov rsp, rsi",
    "sub rsp, 16",
    "mov word ptr [rsp + 6], r8w",
    "mov qword ptr [rsp + 8], rcx",
    "lgdt [rsp + 6]",
    "add rsp, 16",
    "push 0x28",
    "lea rax, [rip + 4f]",
    "push rax",
    "retfq",
    "4:",
    "mov eax, 0x30",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov fs, eax",
    "mov gs, eax",
    "mov r10, rdx",
    "test r9, r9",
    "jz 5f",
    "mov r11, r12",
    "call hvboot_limine_strict",
    "5:",
    "push 0",
    "xor edi, edi",
    // The release, the BSP's and (`hvboot_limine_ap`) an AP's: r10 = the entry, rdi = its
    // argument, a 0 return address on top of the stack; RFLAGS 2, every other register 0.
    "9:",
    "push r10",
    "push 2",
    "xor eax, eax",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor esi, esi",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "xor r10d, r10d",
    "xor r11d, r11d",
    "xor r12d, r12d",
    "xor r13d, r13d",
    "xor r14d, r14d",
    "xor r15d, r15d",
    "xor edx, edx",
    "popfq",
    "ret",
    // An AP of a base revision 5+ kernel released through its `goto_address` (PROTOCOL.md, MP
    // feature: "the CPU state will be the same as described for the bootstrap processor"),
    // reached from the trampoline's park loop through its mailbox's release hook
    // (`trampoline::MAILBOX_RELEASE_HOOK`): rax = goto_address, rdi = its MP info, rsp its stack
    // with the 0 return address on top, r14 = the mailbox, which holds (`protocols::limine`)
    // this AP's own copy of the protocol's GDT (its TSS descriptor turns busy at LTR, so one
    // per CPU) and the HHDM offset. The protocol's GDT, CS 0x28 and DS..SS 0x30, the strict
    // state, then the BSP's release.
    ".global hvboot_limine_ap",
    "hvboot_limine_ap:",
    "mov r10, rax",
    "mov rcx, [r14 + {ap_gdt}]",
    "sub rsp, 16",
    "mov word ptr [rsp + 6], {gdt_limit}",
    "mov [rsp + 8], rcx",
    "lgdt [rsp + 6]",
    "add rsp, 16",
    "push 0x28",
    "lea rax, [rip + 22f]",
    "push rax",
    "retfq",
    "22:",
    "mov eax, 0x30",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov fs, eax",
    "mov gs, eax",
    "mov r11, [r14 + {ap_hhdm}]",
    "call hvboot_limine_strict",
    "jmp 9b",
    // Base revision 5's x86-64 state (PROTOCOL.md "Machine State at Entry"), one definition for
    // the BSP and every AP, on the protocol's GDT (its TSS at 0x38): TR = that base-0 limit-0
    // TSS, LDTR null, IDTR base 0 limit 0, CR0 = PE|ET|WP|PG, CR4 = PAE (LA57 kept), EFER =
    // LME|LMA|NXE; the local APIC enabled (IA32_APIC_BASE bit 11, SDM Vol. 3A §11.4.4), SVR
    // 0x1FF, TPR 0, each LVT entry (the table at 39, with the lowest "max LVT entry", version
    // register bits 23:16, at which it exists) whose delivery mode (bits 10:8) is Fixed 0,
    // Lowest Priority 1, NMI 4 or ExtINT 7 masked (bit 16; the timer's and error's mode bits
    // are reserved 0: Fixed), the rest as the firmware left it. xAPIC registers (SDM §11.4.1
    // Table 11-1) through r11 + the page's physical address, x2APIC ones as MSR 0x800 + offset
    // / 16 (§11.12.1.2). Clobbers every register but r10, rdi and rsp.
    "hvboot_limine_strict:",
    "mov eax, 0x38",
    "ltr ax",
    "xor eax, eax",
    "lldt ax",
    "push 0",
    "push 0",
    "lidt [rsp + 6]",
    "add rsp, 16",
    "mov rax, cr4",
    "and eax, 0x1020",
    "mov cr4, rax",
    "mov eax, 0x80010011",
    "mov cr0, rax",
    "mov ecx, 0xc0000080",
    "rdmsr",
    "and eax, 0xd00",
    "xor edx, edx",
    "wrmsr",
    "mov ecx, 0x1b",
    "rdmsr",
    "bts eax, 11",
    "jc 23f",
    "wrmsr",
    "23:",
    // rbx = the xAPIC's registers, 0 in x2APIC mode (bit 10).
    "xor ebx, ebx",
    "bt eax, 10",
    "jc 24f",
    "shl rdx, 32",
    "or rax, rdx",
    "mov rbx, 0x000ffffffffff000",
    "and rbx, rax",
    "add rbx, r11",
    "24:",
    "mov esi, 0xf0",
    "mov eax, 0x1ff",
    "call 27f",
    "mov esi, 0x80",
    "xor eax, eax",
    "call 27f",
    "mov esi, 0x30",
    "call 28f",
    "shr eax, 16",
    "movzx ebp, al",
    "lea r13, [rip + 39f]",
    "mov r9d, 7",
    "25:",
    "movzx esi, word ptr [r13]",
    "movzx eax, word ptr [r13 + 2]",
    "cmp ebp, eax",
    "jb 26f",
    "call 28f",
    "mov ecx, eax",
    "shr ecx, 8",
    "and ecx, 7",
    "mov edx, 0x93",
    "bt edx, ecx",
    "jnc 26f",
    "or eax, 0x10000",
    "call 27f",
    "26:",
    "add r13, 4",
    "dec r9d",
    "jnz 25b",
    "ret",
    // Write eax to the local APIC register at offset esi.
    "27:",
    "test rbx, rbx",
    "jz 29f",
    "mov [rbx + rsi], eax",
    "ret",
    "29:",
    "mov ecx, esi",
    "shr ecx, 4",
    "add ecx, 0x800",
    "xor edx, edx",
    "wrmsr",
    "ret",
    // Read the local APIC register at offset esi into eax.
    "28:",
    "test rbx, rbx",
    "jz 38f",
    "mov eax, [rbx + rsi]",
    "ret",
    "38:",
    "mov ecx, esi",
    "shr ecx, 4",
    "add ecx, 0x800",
    "rdmsr",
    "ret",
    // (LVT offset, lowest max-LVT entry): CMCI, timer, thermal, performance counter, LINT0,
    // LINT1, error.
    ".balign 4",
    "39:",
    ".short 0x2f0, 6, 0x320, 0, 0x330, 5, 0x340, 4, 0x350, 0, 0x360, 0, 0x370, 0",
    ".global hvboot_handoff_end",
    "hvboot_handoff_end:",
    ".text",
    ap_gdt = const crate::protocols::limine::MAILBOX_AP_GDT,
    ap_hhdm = const crate::protocols::limine::MAILBOX_AP_HHDM,
    gdt_limit = const core::mem::size_of_val(&crate::protocols::limine::GDT) - 1,
);

// The Multiboot2 entry (Multiboot2 specification 2.0, §3.3): from 64-bit mode on the loader's
// identity-mapped tables, through a 32-bit compatibility-mode code segment, paging off (which
// leaves long mode; Intel SDM Vol. 3A §10.8.5.4), EFER.LME off, flat 32-bit data segments, then
// EAX = the magic, EBX = the information, a jump to the entry. This code, its GDT and the
// caller's stack must lie below 4 GiB (the loader's image does on both firmwares).
global_asm!(
    ".section .text.hvboot_handoff,\"ax\",@progbits",
    ".balign 16",
    "hvboot_mb2_gdt:",
    ".quad 0",
    // 0x08: 32-bit code, base 0, limit 4 GiB, accessed preset (no write to a read-only page).
    ".quad 0x00cf9b000000ffff",
    // 0x10: data, base 0, limit 4 GiB, read/write, accessed preset.
    ".quad 0x00cf93000000ffff",
    // The limit loaded below: 3 entries, 23.
    ".balign 16",
    ".global hvboot_multiboot2",
    "hvboot_multiboot2:",
    // edi = entry (physical), esi = information (physical).
    "cli",
    "lea rax, [rip + hvboot_mb2_gdt]",
    "sub rsp, 16",
    "mov word ptr [rsp + 6], 23",
    "mov qword ptr [rsp + 8], rax",
    "lgdt [rsp + 6]",
    "add rsp, 16",
    "push 0x08",
    "lea rax, [rip + 3f]",
    "push rax",
    "retfq",
    ".code32",
    "3:",
    "mov eax, 0x10",
    "mov ds, eax",
    "mov es, eax",
    "mov fs, eax",
    "mov gs, eax",
    "mov ss, eax",
    "mov eax, cr0",
    "and eax, 0x7fffffff",
    "mov cr0, eax",
    "mov ecx, 0xc0000080",
    "rdmsr",
    "and eax, 0xfffffeff",
    "wrmsr",
    // CR4: PAE and PGE off (paging is off; the kernel sets its own), the rest as it was.
    "mov eax, cr4",
    "and eax, 0xffffff5f",
    "mov cr4, eax",
    "mov eax, 0x36d76289",
    "mov ebx, esi",
    "xor ecx, ecx",
    "xor edx, edx",
    "xor esi, esi",
    "xor ebp, ebp",
    "jmp edi",
    ".code64",
    ".text",
);

// The Multiboot2 EFI amd64 entry with boot services running (specification 2.0, §3.3 "EFI
// amd64 machine state with boot services enabled"): EAX = the magic, EBX = the information,
// everything else as the UEFI specification has it for boot services (UEFI 2.10 §2.3.4: the
// firmware's identity map, GDT and IDT, interrupts as the firmware runs them, the loader's
// firmware-given stack). So nothing is changed but the two registers.
global_asm!(
    ".section .text.hvboot_handoff,\"ax\",@progbits",
    ".global hvboot_multiboot2_efi64",
    "hvboot_multiboot2_efi64:",
    // rdi = entry, rsi = information (below 4 GiB).
    "mov eax, 0x36d76289",
    "mov rbx, rsi",
    "jmp rdi",
    ".text",
);

extern "C" {
    fn hvboot_multiboot2(entry: u64, info: u64) -> !;
    fn hvboot_multiboot2_efi64(entry: u64, info: u64) -> !;
    fn hvboot_handoff(cr3: u64, stack_top: u64, entry: u64, info: u64, gdt: u64, limit: u64) -> !;
    fn hvboot_limine(
        cr3: u64,
        stack_top: u64,
        entry: u64,
        gdt: u64,
        limit: u64,
        strict: u64,
        la57_switch: u64,
        hhdm: u64,
    ) -> !;
    fn hvboot_limine_ap() -> !;
    static hvboot_handoff_end: u8;
}

/// Where the Multiboot2 hand-off code is (identity-mapped on both firmwares): it runs in 32-bit
/// mode, so it must be below 4 GiB.
pub fn multiboot2_code() -> u64 {
    hvboot_multiboot2 as *const () as u64
}

/// The physical (= identity) range holding the hand-off code, page aligned.
pub fn code_pages() -> (u64, u64) {
    let start = hvboot_handoff as *const () as u64;
    let end = core::ptr::addr_of!(hvboot_handoff_end) as u64;
    (start & !0xfff, (end + 0xfff) & !0xfff)
}

/// Where an AP of a base revision 5+ Limine kernel goes at its release (identity-mapped with
/// the rest of the hand-off code): the release hook `protocols::limine` puts in its mailbox.
pub fn limine_ap_release() -> u64 {
    hvboot_limine_ap as *const () as u64
}

/// How the kernel is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// hvboot's protocol: 64-bit, the kernel's tables, RDI = the boot information.
    Hvboot,
    /// Multiboot2: 32-bit protected mode, paging off, EAX = 0x36d76289, EBX = the information
    /// (physical); `cr3`, `stack_top` and `gdt_virt` are unused.
    Multiboot2,
    /// Linux's 64-bit boot protocol: `cr3` an identity map, RSI = boot_params (`boot_info`),
    /// `gdt_virt` the GDT's descriptor (`crate::protocols::linux::enter`).
    Linux,
    /// Multiboot2's EFI amd64 entry, boot services running: 64-bit on the firmware's state,
    /// EAX = 0x36d76289, EBX = the information; `cr3`, `stack_top` and `gdt_virt` are unused.
    Multiboot2Efi64,
    /// Limine: 64-bit, the kernel's tables, the protocol's GDT at `gdt_virt` (selectors 0x28 and
    /// 0x30, `crate::protocols::limine::GDT`), a 0 return address on the stack, every other
    /// register 0; `boot_info` is unused. `strict`: base revision 5's control registers, null
    /// descriptor tables and local APIC state (`hvboot_limine_strict`, which the APs run too
    /// at their release, `hvboot_limine_ap`). `la57_switch`: `cr3` is a PML5 and this the
    /// switch page that turns LA57 on (`flow::five_level`), 0 for 4-level paging.
    Limine {
        /// Base revision 5 or later.
        strict: bool,
        /// The HHDM offset: the strict state reaches the xAPIC's page through it.
        hhdm: u64,
        /// The 5-level switch page (physical), 0 for none.
        la57_switch: u64,
    },
}

/// Everything the hand-off needs, already valid in the kernel's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// How the kernel is entered.
    pub mode: EntryMode,
    /// The kernel's PML4 (physical).
    pub cr3: u64,
    /// The kernel's initial RSP (virtual).
    pub stack_top: u64,
    /// The kernel's entry point (virtual).
    pub entry: u64,
    /// The boot information (virtual, in the direct map).
    pub boot_info: u64,
    /// The GDT (virtual, in the direct map), with the TSS [`TSS_OFFSET`] bytes behind it.
    pub gdt_virt: u64,
}

/// The entry state of docs/protocol.md, then the jump: EFER.NXE on (the kernel's tables use the
/// NX bit) and EFER.SVME off; CR0.WP and CR0.NE on; CR4.VMXE off (the loader never enters VMX
/// operation, so clearing it cannot fault). MTRRs and PAT stay as the firmware left them.
///
/// # Safety
/// The tables in `h.cr3` must map this code's page, the stack, the GDT (with its TSS behind it,
/// see [`gdt`]) and the kernel.
pub unsafe fn jump(h: &Handoff) -> ! {
    match h.mode {
        EntryMode::Multiboot2 => hvboot_multiboot2(h.entry, h.boot_info),
        EntryMode::Multiboot2Efi64 => hvboot_multiboot2_efi64(h.entry, h.boot_info),
        EntryMode::Linux => crate::protocols::linux::enter(h),
        EntryMode::Hvboot | EntryMode::Limine { .. } => {}
    }
    const IA32_EFER: u32 = 0xC000_0080;
    const EFER_NXE: u64 = 1 << 11;
    const EFER_SVME: u64 = 1 << 12;
    let (lo, hi): (u32, u32);
    core::arch::asm!("rdmsr", in("ecx") IA32_EFER, out("eax") lo, out("edx") hi);
    let efer = (((hi as u64) << 32 | lo as u64) | EFER_NXE) & !EFER_SVME;
    core::arch::asm!("wrmsr", in("ecx") IA32_EFER, in("eax") efer as u32, in("edx") (efer >> 32) as u32);
    // CR0.WP (bit 16), CR0.NE (bit 5); CR4.VMXE (bit 13).
    core::arch::asm!("mov rax, cr0", "or rax, 0x10020", "mov cr0, rax", out("rax") _);
    core::arch::asm!("mov rax, cr4", "btr rax, 13", "mov cr4, rax", out("rax") _);
    if let EntryMode::Limine {
        strict,
        hhdm,
        la57_switch,
    } = h.mode
    {
        let limit = core::mem::size_of_val(&crate::protocols::limine::GDT) as u64 - 1;
        hvboot_limine(
            h.cr3,
            h.stack_top,
            h.entry,
            h.gdt_virt,
            limit,
            u64::from(strict),
            la57_switch,
            hhdm,
        )
    }
    let limit = (GDT_ENTRIES * 8 - 1) as u64;
    hvboot_handoff(h.cr3, h.stack_top, h.entry, h.boot_info, h.gdt_virt, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_descriptor_fields() {
        let tss_virt = 0xffff_8000_1234_5080u64;
        let g = gdt(tss_virt);
        assert_eq!(&g[..3], &GDT);
        let low = g[3];
        assert_eq!(low & 0xffff, 103, "limit 15:0");
        let base = (low >> 16) & 0xff_ffff | ((low >> 56) & 0xff) << 24 | g[4] << 32;
        assert_eq!(base, tss_virt);
        assert_eq!((low >> 40) & 0xf, 9, "type: available 64-bit TSS");
        assert_eq!((low >> 44) & 1, 0, "system descriptor");
        assert_eq!((low >> 47) & 1, 1, "present");
        assert_eq!((low >> 45) & 3, 0, "DPL 0");
        assert_eq!(usize::from(TSS_SELECTOR) / 8, 3);
        let t = tss();
        assert_eq!(u16::from_le_bytes([t[102], t[103]]), 104);
    }
}
