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
}

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
}

/// CPUID.80000001h:EDX[26]: 1 GiB pages (Intel SDM Vol. 2A, CPUID).
pub fn has_1g_pages(cpu: &impl Cpu) -> bool {
    cpu.cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 && cpu.cpuid(0x8000_0001, 0)[3] & (1 << 26) != 0
}
