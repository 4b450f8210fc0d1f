//! The virtualization report and the CPU list, printed.

use hvboot_api::acpi::{DirectMap, Madt};
use hvboot_api::cpu::virt::{self, CpuidLeaves};
use hvboot_api::{serial_println, BootInfo, CpuEntry, CpuFlags, VirtFlags, VirtReport};

/// The virtualization report of this CPU, computed here from CPUID and MSRs
/// with hvboot-api's `cpu::virt` (the loader's copy, `BootInfo.virt`, is
/// compared with it when the loader provides one).
pub fn virt_report(info: &BootInfo) -> VirtReport {
    // SAFETY: ring 0; detect() reads only MSRs that CPUID says exist. No VMX
    // enabling here: locking IA32_FEATURE_CONTROL is the loader's business.
    let report = unsafe { virt::detect(false) };
    let f = report.flags;
    let yes = |flag: VirtFlags| if f.contains(flag) { "yes" } else { "no" };
    serial_println!("virt: vendor:        {}", report.vendor_str());
    serial_println!("virt: under a hypervisor: {}", yes(VirtFlags::HYPERVISOR));
    serial_println!(
        "virt: Intel VMX:     {}",
        if f.contains(VirtFlags::VMX) {
            "present"
        } else {
            "absent"
        }
    );
    serial_println!(
        "virt: AMD SVM:       {}",
        if f.contains(VirtFlags::SVM) {
            "present"
        } else {
            "absent"
        }
    );
    if f.contains(VirtFlags::SVM) {
        serial_println!(
            "virt:   SVM revision {}, {} ASIDs, nested paging (NPT): {}",
            report.svm_revision,
            report.svm_asids,
            yes(VirtFlags::NPT)
        );
    }
    if f.contains(VirtFlags::VM_CR_READ) {
        serial_println!(
            "virt:   VM_CR {:#x}{}",
            report.vm_cr,
            if report.svm_disabled_by_firmware() {
                " (SVM disabled by firmware)"
            } else {
                ""
            }
        );
    }
    if f.contains(VirtFlags::VMX) {
        serial_println!(
            "virt:   EPT: {}, VPID: {}",
            yes(VirtFlags::EPT),
            yes(VirtFlags::VPID)
        );
    }
    if f.contains(VirtFlags::FEATURE_CONTROL_READ) {
        serial_println!(
            "virt:   IA32_FEATURE_CONTROL {:#x}{}",
            report.feature_control_after,
            if report.vmx_locked_off() {
                " (VMX locked off)"
            } else {
                ""
            }
        );
    }
    if f.contains(VirtFlags::EPT_VPID_CAP_READ) {
        serial_println!(
            "virt:   IA32_VMX_EPT_VPID_CAP {:#x}",
            report.vmx_ept_vpid_cap
        );
    }
    serial_println!(
        "virt: MAXPHYADDR {} bits, linear {} bits; 1 GiB pages: {}; x2APIC: {}; invariant TSC: {}",
        report.max_phys_addr_bits,
        report.max_linear_addr_bits,
        yes(VirtFlags::GIB_PAGES),
        yes(VirtFlags::X2APIC),
        yes(VirtFlags::INVARIANT_TSC)
    );
    match report.tsc_frequency_hz {
        0 => serial_println!("virt: TSC frequency: not reported by CPUID"),
        hz => serial_println!("virt: TSC frequency: {hz} Hz"),
    }
    // One machine-readable line (tests/test_hypervisor.py parses it).
    let b = |flag: VirtFlags| u8::from(f.contains(flag));
    serial_println!(
        "virt: summary vendor={} vmx={} svm={} npt={} ept={} gib_pages={} x2apic={} maxphyaddr={}",
        report.vendor_str(),
        b(VirtFlags::VMX),
        b(VirtFlags::SVM),
        b(VirtFlags::NPT),
        b(VirtFlags::EPT),
        b(VirtFlags::GIB_PAGES),
        b(VirtFlags::X2APIC),
        report.max_phys_addr_bits
    );
    match info.virt_report() {
        Some(loader) if loader.flags == report.flags && loader.vendor == report.vendor => {
            serial_println!("virt: the loader's report agrees");
        }
        Some(loader) => serial_println!(
            "virt: the loader's report differs: flags {:#x} (here {:#x})",
            loader.flags.0,
            f.0
        ),
        None => serial_println!("virt: (the loader passed no report; computed here)"),
    }
    report
}

/// Room for this many CPUs when the MADT is parsed here.
const MAX_CPUS: usize = 256;

/// Prints the CPU list: the loader's (`BootInfo.cpus`) if it passed one,
/// else the MADT parsed here through the direct map. False if neither works.
pub fn cpu_list(info: &BootInfo) -> bool {
    let bsp = CpuidLeaves::read().initial_apic_id();
    let mut storage = [CpuEntry::default(); MAX_CPUS];
    let (cpus, source, lapic): (&[CpuEntry], &str, u64) = if !info.cpus().is_empty() {
        (
            info.cpus(),
            "the loader",
            info.local_apic_phys().unwrap_or(0),
        )
    } else {
        // SAFETY: the loader's direct map is in place; ACPI tables are not written.
        let mem = unsafe { DirectMap::new(info) };
        match Madt::find(&mem, info.rsdp_phys) {
            Ok(madt) => {
                let n = madt.cpus_into(Some(bsp), &mut storage);
                if n > MAX_CPUS {
                    serial_println!("cpus: {n} in the MADT; listing the first {MAX_CPUS}");
                }
                (
                    &storage[..n.min(MAX_CPUS)],
                    "the ACPI MADT, parsed here",
                    madt.local_apic_phys(),
                )
            }
            Err(e) => {
                serial_println!("cpus: cannot read the MADT: {e}");
                return false;
            }
        }
    };
    serial_println!(
        "cpus: {} from {source}; local APIC at {lapic:#x}",
        cpus.len()
    );
    for (i, c) in cpus.iter().enumerate() {
        let f = c.flags;
        serial_println!(
            "cpus:   [{i}] APIC ID {} ACPI UID {}{}{}{}{}",
            c.apic_id,
            c.acpi_uid,
            if f.contains(CpuFlags::ENABLED) {
                " enabled"
            } else {
                ""
            },
            if f.contains(CpuFlags::ONLINE_CAPABLE) {
                " online-capable"
            } else {
                ""
            },
            if f.contains(CpuFlags::BSP) {
                " BSP"
            } else {
                ""
            },
            if f.contains(CpuFlags::X2APIC) {
                " x2APIC"
            } else {
                ""
            },
        );
    }
    let usable = cpus.iter().filter(|c| c.usable()).count();
    serial_println!(
        "cpus: summary count={} usable={usable} bsp={bsp} apic_ids={}",
        cpus.len(),
        Ids(cpus)
    );
    true
}

/// Comma-separated APIC IDs.
struct Ids<'a>(&'a [CpuEntry]);

impl core::fmt::Display for Ids<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", c.apic_id)?;
        }
        Ok(())
    }
}
