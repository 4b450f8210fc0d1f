//! The flow for a Linux bzImage (docs/linux.md): placed (the protected-mode kernel at its
//! preferred or an aligned address, the modules concatenated into one initrd), the firmware
//! surveyed, the setup header copied for boot_params; no address space of hvboot's and no CPU
//! start-up (Linux builds its own tables and starts its own processors).

use alloc::vec::Vec;

use hvboot_api::{AcpiTables, TscSource, TscStage, VirtReport};

use super::{address_space, firmware, hand_off, inputs, phys_slice, place, stamps_from};
use super::{Boot, Cpu, Error, Platform};
use crate::handoff::Handoff;
use crate::linux::{Problem, HEADER_START};
use crate::protocols::linux::Linux;

/// Boots the Linux kernel of `inputs` (its kind is `KernelKind::Linux`).
pub fn run<P: Platform, C: Cpu>(
    p: &mut P,
    cpu: &C,
    inputs: inputs::Inputs,
    tsc_start: u64,
) -> Result<Handoff, Error> {
    let Some(plan) = inputs.kernel.linux() else {
        unreachable!("linux::run is called for Linux kernels only")
    };
    let h = plan.header;
    let refuse = |field: &str, message| Error::Linux {
        kernel: inputs.kernel.path.clone(),
        why: Problem {
            field: alloc::format!("setup header {field}"),
            message,
        },
    };
    let len = inputs.config.cmdline.len();
    if len > h.cmdline_size as usize {
        let message = alloc::format!(
            "the command line is {len} bytes, the kernel takes at most {}",
            h.cmdline_size
        );
        return Err(refuse("cmdline_size", message));
    }
    // SAFETY: read_file filled the kernel's pages; `linux::check` saw the header within them.
    let file = unsafe { phys_slice(p, inputs.kernel.file_phys, inputs.kernel.file_len) };
    let header = file[HEADER_START..HEADER_START + h.header_len].to_vec();

    let mut stamps = stamps_from(tsc_start);
    let placed = place::place(p, &inputs)?;
    stamps[TscStage::FILES_READ.0 as usize] = cpu.rdtsc();
    let firmware = firmware::survey(p, &inputs.wants)?;
    let boot = Boot {
        firmware_kind: P::FIRMWARE,
        inputs,
        placed,
        firmware,
        space: address_space::AddressSpace::default(),
        virt: VirtReport::default(),
        cpus: Vec::new(),
        local_apic: 0,
        // Linux reads ACPI through acpi_rsdp_addr and calibrates its own TSC.
        acpi_tables: AcpiTables::default(),
        tsc: (0, TscSource::UNKNOWN),
        aps: None,
        stamps,
    };
    hand_off::hand_off(p, cpu, &mut Linux::new(header), boot)
}
