//! Small x86_64 helpers: time stamp counter, CPUID, control registers, MSRs,
//! port I/O, halting.
//!
//! All of them are single instructions. Reading control registers and MSRs
//! faults outside ring 0, so only kernels may call them (the host unit tests do
//! not).

use core::arch::asm;

pub mod virt;

/// Reads the time stamp counter (`rdtsc`).
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc has no side effects (CR4.TSD is clear in ring 0).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Executes `cpuid` with EAX = `leaf`, ECX = `subleaf`; returns (EAX, EBX, ECX, EDX).
#[inline]
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: cpuid only reads identification data. RBX is reserved by LLVM, so
    // it is saved in another register around the instruction.
    unsafe {
        asm!(
            "mov {save:r}, rbx",
            "cpuid",
            "xchg {save:r}, rbx",
            save = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags)
        );
    }
    (eax, ebx, ecx, edx)
}

/// The CPU vendor string from CPUID leaf 0 (e.g. `GenuineIntel`, `AuthenticAMD`).
pub fn cpu_vendor() -> [u8; 12] {
    let (_, ebx, ecx, edx) = cpuid(0, 0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&ebx.to_le_bytes());
    v[4..8].copy_from_slice(&edx.to_le_bytes());
    v[8..12].copy_from_slice(&ecx.to_le_bytes());
    v
}

/// Reads CR0.
#[inline]
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effects (ring 0 only).
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3 (physical address of the top-level page table plus flags).
#[inline]
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects (ring 0 only).
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR4.
#[inline]
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects (ring 0 only).
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The IA32_EFER MSR (long mode, NX enable, SVM enable).
pub const MSR_EFER: u32 = 0xC000_0080;
/// EFER.NXE: execute-disable bits in page tables are honoured.
pub const EFER_NXE: u64 = 1 << 11;
/// EFER.SVME: AMD SVM enabled.
pub const EFER_SVME: u64 = 1 << 12;

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (otherwise #GP), and the caller must run in ring 0.
#[inline]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and accept `value`; writing MSRs can change how the CPU
/// behaves in arbitrary ways.
#[inline]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags)
        )
    };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading some ports has side effects on devices.
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// Writing ports drives devices; the caller must know what the port does.
#[inline]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Disables interrupts and halts forever.
pub fn hlt_loop() -> ! {
    loop {
        // SAFETY: cli; hlt only stops the CPU (an NMI or SMI may wake it; then it
        // halts again).
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
