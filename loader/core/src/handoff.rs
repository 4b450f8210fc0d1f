//! The last instructions the loader runs: switch to the kernel's page tables, stack and GDT, then
//! jump to its entry point with RDI = the boot information.
//!
//! Shared by the UEFI and BIOS loaders. This code runs while CR3 changes under it, so the page that holds it is identity-mapped in the
//! kernel's tables too (reported as loader-reclaimable memory).

use core::arch::global_asm;

/// The GDT (selectors 0x08 code, 0x10 data; Intel SDM Vol. 3A §3.4.5, §5.2.1): null, code (L=1, P=1, DPL 0, type execute/read), data (P=1, writable).
pub const GDT: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];

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
    "mov rdi, rcx",
    "xor eax, eax",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor esi, esi",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "jmp rdx",
    ".global hvboot_handoff_end",
    "hvboot_handoff_end:",
    ".text",
);

extern "C" {
    fn hvboot_handoff(cr3: u64, stack_top: u64, entry: u64, info: u64, gdt: u64, limit: u64) -> !;
    static hvboot_handoff_end: u8;
}

/// The physical (= identity) range holding the hand-off code, page aligned.
pub fn code_pages() -> (u64, u64) {
    let start = hvboot_handoff as *const () as u64;
    let end = core::ptr::addr_of!(hvboot_handoff_end) as u64;
    (start & !0xfff, (end + 0xfff) & !0xfff)
}

/// Everything the hand-off needs, already valid in the kernel's address space.
pub struct Handoff {
    /// The kernel's PML4 (physical).
    pub cr3: u64,
    /// The kernel's initial RSP (virtual).
    pub stack_top: u64,
    /// The kernel's entry point (virtual).
    pub entry: u64,
    /// The boot information (virtual, in the direct map).
    pub boot_info: u64,
    /// The GDT (virtual, in the direct map).
    pub gdt_virt: u64,
}

/// Turn on EFER.NXE (the kernel's tables use the NX bit) and CR0.WP, then jump.
///
/// # Safety
/// The tables in `h.cr3` must map this code's page, the stack, the GDT and the kernel.
pub unsafe fn jump(h: &Handoff) -> ! {
    const IA32_EFER: u32 = 0xC000_0080;
    let (lo, hi): (u32, u32);
    core::arch::asm!("rdmsr", in("ecx") IA32_EFER, out("eax") lo, out("edx") hi);
    let efer = ((hi as u64) << 32 | lo as u64) | (1 << 11);
    core::arch::asm!("wrmsr", in("ecx") IA32_EFER, in("eax") efer as u32, in("edx") (efer >> 32) as u32);
    core::arch::asm!("mov rax, cr0", "or rax, 0x10000", "mov cr0, rax", out("rax") _);
    let limit = (core::mem::size_of_val(&GDT) - 1) as u64;
    hvboot_handoff(h.cr3, h.stack_top, h.entry, h.boot_info, h.gdt_virt, limit)
}
