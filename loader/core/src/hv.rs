//! What the loader reports to a hypervisor kernel beyond protocol.md (docs/hypervisor.md): the
//! virtualization report, the CPU list from the ACPI MADT, and the identity-mapped physical
//! memory both are read through. The decisions themselves are hvboot-api's (`cpu::virt`,
//! `acpi`), host-tested there.

use alloc::vec;
use alloc::vec::Vec;

use hvboot_api::acpi::{Madt, PhysMemory};
use hvboot_api::cpu::virt::{self, CpuidLeaves, MsrPlan};
use hvboot_api::{CpuEntry, VirtReport};

use crate::flow::Cpu;

/// The firmware's tables read through the loader's view of physical memory (physical address
/// `a` at `a + offset`, see `flow::Platform::phys_offset`). Both platforms map at least the
/// first 4 GiB (the BIOS stage 2 maps exactly that), where ACPI tables live.
pub struct PhysWindow {
    /// Loader-virtual minus physical address (0 on both firmware platforms).
    pub offset: u64,
}

/// How far [`PhysWindow`] reads.
const WINDOW_LIMIT: u64 = 4 << 30;

impl PhysMemory for PhysWindow {
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
        let end = phys.checked_add(len as u64)?;
        if phys == 0 || end > WINDOW_LIMIT {
            return None;
        }
        // SAFETY: mapped below 4 GiB on both platforms (and in a test's arena); ACPI tables are
        // not written while the loader runs.
        Some(unsafe {
            core::slice::from_raw_parts(phys.wrapping_add(self.offset) as *const u8, len)
        })
    }
}

/// The virtualization report of the processor running the loader (the BSP). With `enable_vmx`,
/// sets VMX-outside-SMX and the lock bit of an unlocked IA32_FEATURE_CONTROL first (never a
/// locked MSR, never locked with VMX off: `virt::feature_control_to_write`).
pub fn virt_report(cpu: &impl Cpu, enable_vmx: bool) -> VirtReport {
    let leaves = CpuidLeaves::from_fn(|leaf, sub| cpu.cpuid(leaf, sub));
    let mut msrs = virt::read_msrs_with(&MsrPlan::for_cpu(&leaves), |m| cpu.rdmsr(m));
    if enable_vmx {
        virt::enable_vmx_with(&leaves, &mut msrs, |m| cpu.rdmsr(m), |m, v| cpu.wrmsr(m, v));
    }
    virt::report(&leaves, &msrs)
}

/// The APIC ID of the running processor: the x2APIC ID from CPUID leaf 0Bh when the CPU has the
/// leaf (Intel SDM Vol. 3A §10.12.8.1; also on AMD), else the 8-bit initial APIC ID of leaf 1.
pub fn current_apic_id(cpu: &impl Cpu) -> u32 {
    let max = cpu.cpuid(0, 0)[0];
    if max >= 0xB {
        let [_, ebx, _, edx] = cpu.cpuid(0xB, 0);
        if ebx & 0xFFFF != 0 {
            return edx;
        }
    }
    cpu.cpuid(1, 0)[1] >> 24
}

/// The processors of the MADT (BSP marked) and the local APIC base; None without a readable MADT
/// (the boot goes on without a CPU list).
pub fn cpu_list(cpu: &impl Cpu, mem: &PhysWindow, rsdp: u64) -> Option<(Vec<CpuEntry>, u64)> {
    if rsdp == 0 {
        return None;
    }
    let madt = Madt::find(mem, rsdp).ok()?;
    let bsp = Some(current_apic_id(cpu));
    let n = madt.cpus(bsp).count();
    let mut cpus = vec![CpuEntry::default(); n];
    madt.cpus_into(bsp, &mut cpus);
    Some((cpus, madt.local_apic_phys()))
}
