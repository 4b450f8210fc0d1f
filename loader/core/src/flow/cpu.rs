//! The processor as the boot flow uses it, behind [`Cpu`] so that the whole flow runs on the
//! host with a fake one. The hand-off itself (EFER, CR0, CR4, CR3: `handoff::jump`) is not
//! here: it runs after the flow, on the real machine only.

use hvboot_api::cpu::virt::Regs;

/// What the flow asks of the CPU running the loader (the BSP).
pub trait Cpu {
    /// The time-stamp counter (RDTSC).
    fn rdtsc(&self) -> u64;
    /// CPUID with EAX = `leaf`, ECX = `subleaf`: EAX, EBX, ECX, EDX.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> Regs;
    /// RDMSR of an MSR that CPUID says exists.
    fn rdmsr(&self, msr: u32) -> u64;
    /// WRMSR of an MSR that exists, with a value it accepts.
    fn wrmsr(&self, msr: u32, value: u64);
    /// Sends `ipi` to the processor with APIC ID `dest` through this processor's local APIC,
    /// whose xAPIC MMIO base is `apic_base` (x2APIC MSRs when it is in x2APIC mode), and waits
    /// until the APIC accepted it.
    fn send_ipi(&self, apic_base: u64, dest: u32, ipi: Ipi);
    /// A spin-wait hint (PAUSE).
    fn pause(&self) {}
    /// IN of a 32-bit I/O port (the ACPI PM timer).
    fn inl(&self, port: u16) -> u32;
    /// IN of an 8-bit I/O port (the PIT's port 0x61).
    fn inb(&self, port: u16) -> u8;
    /// OUT to an 8-bit I/O port (the PIT's channel 2 and port 0x61).
    fn outb(&self, port: u16, value: u8);
}

/// The inter-processor interrupts of the start-up sequence (Intel SDM Vol. 3A §9.4.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipi {
    /// INIT, level assert.
    Init,
    /// INIT level de-assert (xAPIC only; an x2APIC does not have it and skips it).
    InitDeassert,
    /// Start-up at physical page `vector` (`vector << 12`, below 1 MiB).
    Startup(u8),
}

impl Ipi {
    /// The ICR's low 32 bits: delivery mode, level, trigger, vector (SDM Vol. 3A §11.6.1).
    pub fn icr_low(self) -> u32 {
        match self {
            Ipi::Init => 0x0000_4500,
            Ipi::InitDeassert => 0x0000_8500,
            Ipi::Startup(v) => 0x0000_4600 | u32::from(v),
        }
    }
}

/// IA32_APIC_BASE (SDM Vol. 3A §11.4.4): bit 10 EXTD = x2APIC mode.
const IA32_APIC_BASE: u32 = 0x1B;
/// The x2APIC ICR MSR (SDM Vol. 3A §11.12.9).
const X2APIC_ICR: u32 = 0x830;

/// The processor the loader runs on.
pub struct Machine(());

impl Machine {
    /// The running CPU.
    ///
    /// # Safety
    /// Ring 0 only: [`Cpu::rdmsr`] and [`Cpu::wrmsr`] execute RDMSR / WRMSR.
    pub unsafe fn new() -> Self {
        Self(())
    }
}

impl Cpu for Machine {
    fn rdtsc(&self) -> u64 {
        hvboot_api::cpu::rdtsc()
    }

    fn cpuid(&self, leaf: u32, subleaf: u32) -> Regs {
        let (a, b, c, d) = hvboot_api::cpu::cpuid(leaf, subleaf);
        [a, b, c, d]
    }

    fn rdmsr(&self, msr: u32) -> u64 {
        // SAFETY: ring 0 (Machine::new's contract); callers ask for MSRs CPUID reports.
        unsafe { hvboot_api::cpu::rdmsr(msr) }
    }

    fn wrmsr(&self, msr: u32, value: u64) {
        // SAFETY: as for rdmsr; callers write only values the SDM allows.
        unsafe { hvboot_api::cpu::wrmsr(msr, value) }
    }

    fn send_ipi(&self, apic_base: u64, dest: u32, ipi: Ipi) {
        if self.rdmsr(IA32_APIC_BASE) & (1 << 10) != 0 {
            if ipi != Ipi::InitDeassert {
                self.wrmsr(X2APIC_ICR, u64::from(dest) << 32 | u64::from(ipi.icr_low()));
            }
            return;
        }
        // xAPIC: ICR high (destination in bits 31:24) at 0x310, low at 0x300; bit 12 of the
        // low word is "send pending" (SDM Vol. 3A §11.6.1). The loader identity-maps the page.
        let reg = |off: u64| (apic_base + off) as *mut u32;
        // SAFETY: the local APIC's registers, identity-mapped on both platforms.
        unsafe {
            while reg(0x300).read_volatile() & (1 << 12) != 0 {
                core::hint::spin_loop();
            }
            reg(0x310).write_volatile(dest << 24);
            reg(0x300).write_volatile(ipi.icr_low());
            while reg(0x300).read_volatile() & (1 << 12) != 0 {
                core::hint::spin_loop();
            }
        }
    }

    fn pause(&self) {
        core::hint::spin_loop();
    }

    fn inl(&self, port: u16) -> u32 {
        let value: u32;
        // SAFETY: ring 0; callers read the PM timer port the FADT names, which has no side
        // effects.
        unsafe {
            core::arch::asm!("in eax, dx", out("eax") value, in("dx") port,
                options(nomem, nostack, preserves_flags));
        }
        value
    }

    fn inb(&self, port: u16) -> u8 {
        // SAFETY: ring 0; callers read the PIT's control port 0x61 only.
        unsafe { hvboot_api::cpu::inb(port) }
    }

    fn outb(&self, port: u16, value: u8) {
        // SAFETY: ring 0; callers program PIT channel 2 and its gate (tsc.rs), which the
        // firmware does not use once it is left and which drives nothing but the speaker.
        unsafe { hvboot_api::cpu::outb(port, value) }
    }
}

/// CPUID.80000001h:EDX[26]: 1 GiB pages (Intel SDM Vol. 2A, CPUID).
pub fn has_1g_pages(cpu: &impl Cpu) -> bool {
    cpu.cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 && cpu.cpuid(0x8000_0001, 0)[3] & (1 << 26) != 0
}
