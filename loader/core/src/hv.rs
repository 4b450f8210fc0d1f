//! What the loader reports to a hypervisor kernel beyond protocol.md (docs/hypervisor.md): the
//! virtualization report, the CPU list from the ACPI MADT, and the identity-mapped physical
//! memory both are read through. The decisions themselves are hvboot-api's (`cpu::virt`,
//! `acpi`), host-tested there.

use alloc::vec;
use alloc::vec::Vec;

use hvboot_api::acpi::{Madt, PhysMemory};
use hvboot_api::cpu::virt::{self, CpuidLeaves};
use hvboot_api::{CpuEntry, VirtReport};

/// The firmware's tables read through the loader's identity mapping. Both platforms map at least
/// the first 4 GiB (the BIOS stage 2 maps exactly that), where ACPI tables live.
pub struct IdentityMemory;

/// How far [`IdentityMemory`] reads.
const IDENTITY_LIMIT: u64 = 4 << 30;

impl PhysMemory for IdentityMemory {
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
        let end = phys.checked_add(len as u64)?;
        if phys == 0 || end > IDENTITY_LIMIT {
            return None;
        }
        // SAFETY: identity-mapped below 4 GiB on both platforms; ACPI tables are not written
        // while the loader runs.
        Some(unsafe { core::slice::from_raw_parts(phys as *const u8, len) })
    }
}

/// The virtualization report of the processor running the loader (the BSP). With `enable_vmx`,
/// sets VMX-outside-SMX and the lock bit of an unlocked IA32_FEATURE_CONTROL first (never a
/// locked MSR, never locked with VMX off: `virt::feature_control_to_write`).
pub fn virt_report(enable_vmx: bool) -> VirtReport {
    // SAFETY: the loader runs in ring 0; detect reads only MSRs CPUID says exist.
    unsafe { virt::detect(enable_vmx) }
}

/// The APIC ID of the running processor: the x2APIC ID from CPUID leaf 0Bh when the CPU has the
/// leaf (Intel SDM Vol. 3A §10.12.8.1; also on AMD), else the 8-bit initial APIC ID of leaf 1.
pub fn current_apic_id() -> u32 {
    let max = hvboot_api::cpu::cpuid(0, 0).0;
    if max >= 0xB {
        let (_, ebx, _, edx) = hvboot_api::cpu::cpuid(0xB, 0);
        if ebx & 0xFFFF != 0 {
            return edx;
        }
    }
    CpuidLeaves::read().initial_apic_id()
}

/// The processors of the MADT (BSP marked) and the local APIC base; None without a readable MADT
/// (the boot goes on without a CPU list).
pub fn cpu_list(rsdp: u64) -> Option<(Vec<CpuEntry>, u64)> {
    if rsdp == 0 {
        return None;
    }
    let mem = IdentityMemory;
    let madt = Madt::find(&mem, rsdp).ok()?;
    let bsp = Some(current_apic_id());
    let n = madt.cpus(bsp).count();
    let mut cpus = vec![CpuEntry::default(); n];
    madt.cpus_into(bsp, &mut cpus);
    Some((cpus, madt.local_apic_phys()))
}
