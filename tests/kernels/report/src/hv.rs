//! The report lines for the boot-information fields appended after the first
//! v1 layout (docs/hypervisor.md), and the same facts computed by the kernel
//! itself, so a test can compare what the loader passed with the machine:
//!
//! ```text
//! HVB header size=N header_size=N request_version=N
//! HVB virt present=0|1 vendor_hex=.. flags=0x.. fc_before=0x.. fc_after=0x.. vm_cr=0x.. ept_vpid_cap=0x.. tsc_hz=N maxphyaddr=N
//! HVB virt_here vendor_hex=.. flags=0x.. fc_before=0x.. fc_after=0x.. vm_cr=0x.. ept_vpid_cap=0x.. tsc_hz=N maxphyaddr=N
//! HVB cpu index=N apic_id=N acpi_uid=N flags=0x..           (one per BootInfo.cpus entry)
//! HVB cpus count=N local_apic=0x..
//! HVB madt_here count=N apic_ids=a,b,.. local_apic=0x..   | HVB madt_here error_hex=..
//! HVB fw_region index=N base=0x.. length=0x.. type=N attributes=0x..   (one per entry)
//! HVB extent index=N phys=0x.. virt=0x.. length=0x.. what=N which=N    (one per entry)
//! HVB reservation guest_phys=0x.. guest_size=0x.. ap_trampoline=0x..
//! HVB tsc_stamps values=N,N,..
//! ```
//!
//! Absent fields (header_size too small, or zero) print as 0 / count=0 /
//! `present=0` / an empty list. `virt_here` uses hvboot-api's `cpu::virt`
//! without enabling VMX; `madt_here` parses the MADT through the direct map
//! with hvboot-api's `acpi` module.

use core::fmt;

use hvboot_api::acpi::{DirectMap, Madt};
use hvboot_api::cpu::virt::{self, CpuidLeaves};
use hvboot_api::{serial_println, BootInfo, CpuEntry, VirtReport};

use crate::hex::Hex;

/// Comma-separated values.
struct List<I>(I);

impl<I: Clone + Iterator<Item = T>, T: fmt::Display> fmt::Display for List<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.clone().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

fn virt_fields(v: &VirtReport) -> impl fmt::Display + '_ {
    struct F<'a>(&'a VirtReport);
    impl fmt::Display for F<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let v = self.0;
            write!(
                f,
                "vendor_hex={} flags={:#x} fc_before={:#x} fc_after={:#x} vm_cr={:#x} ept_vpid_cap={:#x} tsc_hz={} maxphyaddr={}",
                Hex(&v.vendor),
                v.flags.0,
                v.feature_control_before,
                v.feature_control_after,
                v.vm_cr,
                v.vmx_ept_vpid_cap,
                v.tsc_frequency_hz,
                v.max_phys_addr_bits
            )
        }
    }
    F(v)
}

/// Prints the lines above.
pub fn report(info: &BootInfo) {
    serial_println!(
        "HVB header size={} header_size={} request_version={}",
        info.size,
        info.header_size,
        info.request_version().unwrap_or(0)
    );

    match info.virt_report() {
        Some(v) => serial_println!("HVB virt present=1 {}", virt_fields(v)),
        None => serial_println!("HVB virt present=0"),
    }
    // SAFETY: ring 0; detect() reads only MSRs that CPUID says exist, and
    // changes nothing without enable_vmx.
    let here = unsafe { virt::detect(false) };
    serial_println!("HVB virt_here {}", virt_fields(&here));

    let cpus = info.cpus();
    for (index, c) in cpus.iter().enumerate() {
        serial_println!(
            "HVB cpu index={index} apic_id={} acpi_uid={} flags={:#x}",
            c.apic_id,
            c.acpi_uid,
            c.flags.0
        );
    }
    serial_println!(
        "HVB cpus count={} local_apic={:#x}",
        cpus.len(),
        info.local_apic_phys().unwrap_or(0)
    );
    // SAFETY: the loader's direct map is in place; ACPI tables are not written.
    let mem = unsafe { DirectMap::new(info) };
    match Madt::find(&mem, info.rsdp_phys) {
        Ok(madt) => {
            let bsp = CpuidLeaves::read().initial_apic_id();
            serial_println!(
                "HVB madt_here count={} apic_ids={} local_apic={:#x}",
                madt.cpus(Some(bsp)).count(),
                List(madt.cpus(Some(bsp)).map(|c: CpuEntry| c.apic_id)),
                madt.local_apic_phys()
            );
        }
        Err(e) => {
            let mut text = [0u8; 96];
            let n = crate::hex::format_into(&mut text, format_args!("{e}"));
            serial_println!("HVB madt_here error_hex={}", Hex(&text[..n]));
        }
    }

    for (index, e) in info.firmware_memory_map().iter().enumerate() {
        serial_println!(
            "HVB fw_region index={index} base={:#x} length={:#x} type={} attributes={:#x}",
            e.base,
            e.length,
            e.firmware_type,
            e.attributes
        );
    }
    for (index, e) in info.placed_extents().iter().enumerate() {
        serial_println!(
            "HVB extent index={index} phys={:#x} virt={:#x} length={:#x} what={} which={}",
            e.phys,
            e.virt,
            e.length,
            e.what.0,
            e.index
        );
    }
    let guest = info.guest_reservation();
    serial_println!(
        "HVB reservation guest_phys={:#x} guest_size={:#x} ap_trampoline={:#x}",
        guest.map_or(0, |g| g.phys),
        guest.map_or(0, |g| g.len),
        info.ap_trampoline_phys().unwrap_or(0)
    );
    serial_println!("HVB tsc_stamps values={}", List(info.tsc_stamps().iter()));
}
