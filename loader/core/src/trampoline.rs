//! The application processors' start-up code (docs/hypervisor.md, "Starting the processors"):
//! copied to a page below 1 MiB, where a SIPI starts an AP in real mode at `CS = page >> 4,
//! IP = 0` (Intel SDM Vol. 3A §9.4.4). It goes from real mode straight to long mode on the
//! kernel's page tables (PE and PG set together; CR3 is below 4 GiB), finds its slot by its own
//! APIC ID, takes its own stack, GDT and TSS, copies the BSP's MTRRs and PAT (SDM §12.11.8:
//! caching off, WBINVD, MTRRs, WBINVD, caching on), sets IA32_FEATURE_CONTROL like the BSP when
//! asked, reports itself in its mailbox and parks on it (MONITOR/MWAIT or PAUSE).
//!
//! The 16-bit part is spelled as bytes (the assembler's 16-bit Intel syntax is not worth the
//! doubt); the 64-bit part runs at the page's identity address and reaches its parameters
//! RIP-relative, so the blob works wherever it is copied. The BSP fills [`ApParams`] at
//! [`params_offset`].

use core::arch::global_asm;

use hvboot_api::CpuMailbox;

/// The parameters behind the code (`hvboot_ap_params`), as the trampoline reads them.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApParams {
    /// A GDT for the switch: null, 64-bit code (0x08), data (0x10).
    pub gdt: [u64; 3],
    /// Padding so that `gdtr_limit` starts the 6-byte GDTR pseudo-descriptor.
    pub gdtr_pad: u16,
    /// GDTR limit of `gdt`.
    pub gdtr_limit: u16,
    /// GDTR base: the physical (= identity) address of `gdt`.
    pub gdtr_base: u32,
    /// The kernel's PML4 (below 4 GiB).
    pub cr3: u32,
    /// Slots: entries of `apic_ids`, `stack_tops`, mailboxes and GDTs.
    pub count: u32,
    /// Non-zero: set IA32_FEATURE_CONTROL as on the BSP (ENABLE_VMX).
    pub enable_vmx: u32,
    /// Entries of `msrs`, written after MTRRdefType is cleared; the last is MTRRdefType.
    pub msr_count: u32,
    /// Non-zero: park with MONITOR/MWAIT, else PAUSE.
    pub mwait: u32,
    /// Non-zero: write 0 to IA32_BIOS_SIGN_ID before CPUID.1 (Intel's way to read the
    /// microcode revision; AMD's patch-level MSR is read-only).
    pub microcode_write: u32,
    /// u32 APIC ID per slot (virtual address in the kernel's tables).
    pub apic_ids: u64,
    /// u64 initial RSP per slot (virtual).
    pub stack_tops: u64,
    /// The GDTs, [`GDT_SLOT`] bytes per slot, TSS at `handoff::TSS_OFFSET` (virtual).
    pub gdts: u64,
    /// The mailboxes, one `CpuMailbox` per slot (virtual).
    pub mailboxes: u64,
    /// (u32 MSR, u32 0, u64 value) pairs (virtual).
    pub msrs: u64,
    /// The far pointer real mode jumps through: physical address of the 64-bit code.
    pub long_entry: u32,
    /// Its selector (0x08).
    pub long_selector: u16,
    /// CR4 bits set besides PAE, OSFXSR and OSXMMEXCPT: [`CR4_LA57`] for 5-level tables.
    pub cr4_extra: u16,
    /// u64 per slot: the TSC when the AP reached its 64-bit code (virtual), for the phase
    /// figures of `flow::cpus::start`.
    pub stamps: u64,
}

/// CR4.LA57 (bit 12): `cr3` is a PML5 (SDM Vol. 3A §2.5).
pub const CR4_LA57: u16 = 1 << 12;

/// Where in a mailbox (its first reserved word) a loader may put a release hook: non-zero, the
/// released AP jumps there with RAX = the entry, RDI = `cpu_start`, RSP = its stack top, R14 =
/// the mailbox, instead of to the entry (`handoff::limine_ap_release`, a Limine kernel's
/// base-revision-5 state). hvboot's own protocol leaves it 0.
pub const MAILBOX_RELEASE_HOOK: usize = core::mem::offset_of!(CpuMailbox, reserved);

/// Bytes per AP of GDT + TSS in the CPU data.
pub const GDT_SLOT: u64 = 256;
/// The most MSRs the trampoline copies (PAT, 11 fixed MTRRs, up to 16 variable pairs,
/// MTRRdefType).
pub const MAX_MSRS: usize = 48;

const _: () = assert!(core::mem::size_of::<ApParams>() == 112);
const _: () = assert!(core::mem::size_of::<CpuMailbox>() == 128);
const _: () = assert!(core::mem::offset_of!(ApParams, gdtr_limit) == 26);
const _: () = assert!(core::mem::offset_of!(ApParams, cr3) == 32);
const _: () = assert!(core::mem::offset_of!(ApParams, apic_ids) == 56);
const _: () = assert!(core::mem::offset_of!(ApParams, long_entry) == 96);
const _: () = assert!(core::mem::offset_of!(ApParams, cr4_extra) == 102);
const _: () = assert!(core::mem::offset_of!(ApParams, stamps) == 104);
const _: () = assert!(core::mem::offset_of!(CpuMailbox, state) == 24);
const _: () = assert!(core::mem::offset_of!(CpuMailbox, cpuid1_ecx) == 64);

global_asm!(
    ".section .text.hvboot_ap,\"ax\",@progbits",
    ".balign 16",
    ".global hvboot_ap_start",
    "hvboot_ap_start:",
    // Real mode, CS = page >> 4, IP = 0.
    ".byte 0xFA",                   // cli
    ".byte 0xFC",                   // cld
    ".byte 0x8C, 0xC8",             // mov ax, cs
    ".byte 0x8E, 0xD8",             // mov ds, ax
    ".byte 0x66, 0x0F, 0x01, 0x16", // o32 lgdt [params + 26]
    ".word hvboot_ap_params - hvboot_ap_start + 26",
    ".byte 0x66, 0xA1", // mov eax, [params + 100] (cr4_extra << 16 | selector)
    ".word hvboot_ap_params - hvboot_ap_start + 100",
    ".byte 0x66, 0xC1, 0xE8, 0x10", // shr eax, 16
    ".byte 0x66, 0x0D",
    ".long 0x620",            // or eax, PAE | OSFXSR | OSXMMEXCPT
    ".byte 0x0F, 0x22, 0xE0", // mov cr4, eax
    ".byte 0x66, 0xA1",       // mov eax, [params + 32] (cr3)
    ".word hvboot_ap_params - hvboot_ap_start + 32",
    ".byte 0x0F, 0x22, 0xD8", // mov cr3, eax
    ".byte 0x66, 0xB9",
    ".long 0xC0000080", // mov ecx, IA32_EFER
    ".byte 0x0F, 0x32", // rdmsr
    ".byte 0x66, 0x0D",
    ".long 0x900",      // or eax, LME | NXE
    ".byte 0x0F, 0x30", // wrmsr
    ".byte 0x66, 0xB8",
    ".long 0x80010023",       // mov eax, PG | WP | NE | MP | PE
    ".byte 0x0F, 0x22, 0xC0", // mov cr0, eax
    ".byte 0x66, 0xFF, 0x2E", // jmp far dword [params + 96]
    ".word hvboot_ap_params - hvboot_ap_start + 96",
    ".code64",
    ".balign 16",
    ".global hvboot_ap_long",
    "hvboot_ap_long:",
    "mov eax, 0x10",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "xor eax, eax",
    "mov fs, eax",
    "mov gs, eax",
    // r8d = own APIC ID: CPUID 0Bh when present and valid, else CPUID.1:EBX[31:24].
    "xor eax, eax",
    "xor ecx, ecx",
    "cpuid",
    "cmp eax, 0xB",
    "jb 1f",
    "mov eax, 0xB",
    "xor ecx, ecx",
    "cpuid",
    "test ebx, 0xFFFF",
    "jz 1f",
    "mov r8d, edx",
    "jmp 2f",
    "1:",
    "mov eax, 1",
    "xor ecx, ecx",
    "cpuid",
    "shr ebx, 24",
    "mov r8d, ebx",
    // r10 = slot with that APIC ID.
    "2:",
    "mov r9, [rip + hvboot_ap_params + 56]",
    "mov ecx, [rip + hvboot_ap_params + 36]",
    "xor r10d, r10d",
    "3:",
    "cmp r10d, ecx",
    "jae 20f",
    "cmp [r9 + r10 * 4], r8d",
    "je 4f",
    "inc r10d",
    "jmp 3b",
    "4:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r9, [rip + hvboot_ap_params + 104]",
    "mov [r9 + r10 * 8], rax",
    "mov r9, [rip + hvboot_ap_params + 64]",
    "mov rsp, [r9 + r10 * 8]",
    // Its own GDT (and TSS), then CS and the data segments from it.
    "mov r11, r10",
    "shl r11, 8",
    "add r11, [rip + hvboot_ap_params + 72]",
    "sub rsp, 16",
    "mov word ptr [rsp + 6], 39",
    "mov [rsp + 8], r11",
    "lgdt [rsp + 6]",
    "add rsp, 16",
    "push 0x08",
    "lea rax, [rip + 5f]",
    "push rax",
    "retfq",
    "5:",
    "mov eax, 0x10",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov eax, 0x18",
    "ltr ax",
    // The BSP's MTRRs and PAT: caching off, WBINVD, MTRRdefType = 0, the list (ending with
    // MTRRdefType), WBINVD, caching on.
    "mov r13d, [rip + hvboot_ap_params + 44]",
    "test r13d, r13d",
    "jz 7f",
    "mov rax, cr0",
    "or eax, 0x40000000",
    "mov cr0, rax",
    "wbinvd",
    "mov ecx, 0x2FF",
    "xor eax, eax",
    "xor edx, edx",
    "wrmsr",
    "mov r12, [rip + hvboot_ap_params + 88]",
    "6:",
    "mov ecx, [r12]",
    "mov eax, [r12 + 8]",
    "mov edx, [r12 + 12]",
    "wrmsr",
    "add r12, 16",
    "dec r13d",
    "jnz 6b",
    "wbinvd",
    "mov rax, cr0",
    "and eax, 0x9FFFFFFF",
    "mov cr0, rax",
    "7:",
    // r14 = the mailbox; what this CPU is.
    "mov r14, r10",
    "shl r14, 7",
    "add r14, [rip + hvboot_ap_params + 80]",
    "mov [r14 + 28], r8d",
    "mov eax, 1",
    "xor ecx, ecx",
    "cpuid",
    "mov r15d, ecx",
    "mov [r14 + 64], ecx",
    "mov eax, 0x80000000",
    "cpuid",
    "cmp eax, 0x80000001",
    "jb 8f",
    "mov eax, 0x80000001",
    "xor ecx, ecx",
    "cpuid",
    "mov [r14 + 68], ecx",
    "8:",
    "cmp dword ptr [rip + hvboot_ap_params + 52], 0",
    "je 9f",
    "mov ecx, 0x8B",
    "xor eax, eax",
    "xor edx, edx",
    "wrmsr",
    "mov eax, 1",
    "xor ecx, ecx",
    "cpuid",
    "9:",
    "mov ecx, 0x8B",
    "rdmsr",
    "mov [r14 + 56], eax",
    "mov [r14 + 60], edx",
    // IA32_FEATURE_CONTROL exists with VMX or SMX; set VMX-outside-SMX + lock only when asked,
    // with VMX, and unlocked (hvboot_api::cpu::virt::feature_control_to_write).
    "test r15d, 0x60",
    "jz 11f",
    "mov ecx, 0x3A",
    "rdmsr",
    "mov [r14 + 40], eax",
    "mov [r14 + 44], edx",
    "cmp dword ptr [rip + hvboot_ap_params + 40], 0",
    "je 10f",
    "test r15d, 0x20",
    "jz 10f",
    "test eax, 1",
    "jnz 10f",
    "or eax, 5",
    "wrmsr",
    "10:",
    "mov ecx, 0x3A",
    "rdmsr",
    "mov [r14 + 48], eax",
    "mov [r14 + 52], edx",
    "11:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov [r14 + 32], rax",
    "mov dword ptr [r14 + 24], 1",
    // Park until the kernel writes an entry address.
    "cmp dword ptr [rip + hvboot_ap_params + 48], 0",
    "je 13f",
    "12:",
    "mov rax, [r14]",
    "test rax, rax",
    "jnz 14f",
    "mov rax, r14",
    "xor ecx, ecx",
    "xor edx, edx",
    ".byte 0x0F, 0x01, 0xC8", // monitor
    "mov rax, [r14]",
    "test rax, rax",
    "jnz 14f",
    "xor eax, eax",
    "xor ecx, ecx",
    ".byte 0x0F, 0x01, 0xC9", // mwait
    "jmp 12b",
    "13:",
    "pause",
    "mov rax, [r14]",
    "test rax, rax",
    "jz 13b",
    // RDI = its CpuStart, RSI = the argument, RSP = its stack top.
    "14:",
    "mov rdi, [r14 + 16]",
    "mov rsi, [r14 + 8]",
    "mov r9, [rip + hvboot_ap_params + 64]",
    "mov rsp, [r9 + r10 * 8]",
    "mov dword ptr [r14 + 24], 2",
    // A release hook in the mailbox (MAILBOX_RELEASE_HOOK): it gets rax = the entry, r14 = the
    // mailbox and sets the state itself.
    "mov r11, [r14 + {hook}]",
    "test r11, r11",
    "jz 15f",
    "jmp r11",
    "15:",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor edx, edx",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "xor r10d, r10d",
    "xor r11d, r11d",
    "xor r12d, r12d",
    "xor r13d, r13d",
    "xor r14d, r14d",
    "xor r15d, r15d",
    "jmp rax",
    // Not in the table: nothing to report to; stop.
    "20:",
    "cli",
    "hlt",
    "jmp 20b",
    ".balign 8",
    ".global hvboot_ap_params",
    "hvboot_ap_params:",
    ".fill 112, 1, 0",
    ".global hvboot_ap_end",
    "hvboot_ap_end:",
    ".text",
    hook = const MAILBOX_RELEASE_HOOK,
);

extern "C" {
    static hvboot_ap_start: u8;
    static hvboot_ap_long: u8;
    static hvboot_ap_params: u8;
    static hvboot_ap_end: u8;
}

fn addr(s: &u8) -> usize {
    s as *const u8 as usize
}

/// The trampoline's bytes (code and an empty parameter block).
pub fn code() -> &'static [u8] {
    // SAFETY: the symbols delimit one blob in the loader's own text.
    unsafe {
        let start = addr(&hvboot_ap_start);
        core::slice::from_raw_parts(start as *const u8, addr(&hvboot_ap_end) - start)
    }
}

/// Where [`ApParams`] lies in [`code`].
pub fn params_offset() -> usize {
    // SAFETY: taking the addresses of the symbols only.
    unsafe { addr(&hvboot_ap_params) - addr(&hvboot_ap_start) }
}

/// Where the 64-bit code lies in [`code`].
pub fn long_offset() -> usize {
    // SAFETY: as above.
    unsafe { addr(&hvboot_ap_long) - addr(&hvboot_ap_start) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn blob_fits_a_page_and_starts_in_real_mode() {
        let c = code();
        assert!(c.len() <= 4096 && params_offset() + size_of::<ApParams>() == c.len());
        assert_eq!(&c[..2], &[0xFA, 0xFC]);
        let lgdt_disp = u16::from_le_bytes([c[10], c[11]]) as usize;
        assert_eq!(lgdt_disp, params_offset() + 26);
        assert!(long_offset() < params_offset());
    }
}
