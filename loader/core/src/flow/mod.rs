//! The boot flow shared by the UEFI and BIOS loaders, as phases with typed results
//! (docs/loader.md, "The boot flow"):
//!
//! 1. [`inputs`]: config, kernel bytes, the kernel's kind and request -> [`inputs::Inputs`];
//! 2. [`place`]: guest reservation, AP trampoline page, kernel, modules -> [`place::Placed`];
//! 3. [`firmware`]: tables, framebuffer, memory-map extent -> [`firmware::Firmware`];
//! 4. [`address_space`]: page-table pool, GDT/TSS, tables, direct map, guarded stack, hand-off
//!    code mapping -> [`address_space::AddressSpace`];
//! 5. [`cpus`], CPU start-up (START_APS): trampoline and per-CPU data prepared here, the APs
//!    started by [`hand_off`] right after the firmware is left -> [`cpus::Aps`];
//! 6. [`hand_off`]: the protocol's information sized, the firmware left, the APs started, the
//!    final memory map, the information written -> a [`Handoff`] plan.
//!
//! The flow returns the plan instead of jumping; the platform's main calls `handoff::jump`.
//! Everything it touches goes through [`Platform`] (firmware, physical memory) and [`Cpu`], so a
//! host test runs it whole (`flow/tests.rs`).

pub mod address_space;
mod cpu;
pub mod cpus;
mod error;
pub mod firmware;
pub mod five_level;
pub mod hand_off;
pub mod inputs;
mod linux;
pub mod measure;
pub mod place;
mod platform;
pub mod tsc;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bootloader_api;

use alloc::vec::Vec;

use hvboot_api::{
    AcpiTables, CpuEntry, FirmwareKind, RequestFlags, TscSource, TscStage, VirtReport,
};

pub use cpu::{has_1g_pages, Cpu, Ipi, Machine};
pub use error::{Error, PlatformError};
pub use platform::{
    fail, framebuffer_32bpp, phys_slice, ConsoleLogger, FirmwareTables, PanicReason, Placement,
    Platform, VbeInfo,
};

use crate::handoff::Handoff;
use crate::hv;
use crate::protocols::bootloader_api::BootloaderApi;
use crate::protocols::hvboot::Hvboot;
use crate::protocols::limine::Limine;
use crate::protocols::multiboot2::{keeps_boot_services, Multiboot2};
use crate::protocols::Protocol;

/// Where the loader's config lives on the ESP.
pub const CONFIG_PATH: &str = "/hvboot/hvboot.cfg";

/// Everything the phases found, as the protocol's hand-off reads it.
pub struct Boot {
    /// The firmware kind reported to the kernel.
    pub firmware_kind: FirmwareKind,
    /// Config, kernel, request.
    pub inputs: inputs::Inputs,
    /// Physical placements and extents.
    pub placed: place::Placed,
    /// The firmware's tables, framebuffer, map size.
    pub firmware: firmware::Firmware,
    /// The kernel's address space.
    pub space: address_space::AddressSpace,
    /// The BSP's virtualization report.
    pub virt: VirtReport,
    /// The MADT's processors (empty without one).
    pub cpus: Vec<CpuEntry>,
    /// The local APIC's base, 0 without a MADT.
    pub local_apic: u64,
    /// Where the MADT, FADT, MCFG, SRAT, DMAR and IVRS are (0 = absent).
    pub acpi_tables: AcpiTables,
    /// The TSC frequency (0 = unknown) and where it comes from.
    pub tsc: (u64, TscSource),
    /// The application processors to start (START_APS and a MADT), and their records.
    pub aps: Option<cpus::Aps>,
    /// TSC stamps, indexed by `TscStage`.
    pub stamps: [u64; 5],
}

/// Reads the inputs and boots the kernel with its kind's protocol: hvboot's own ([`run`]),
/// Multiboot2 ([`run_multiboot2`]) or bootloader_api (hvboot's flow, its own hand-off). What each platform's main calls.
pub fn boot<P: Platform, C: Cpu>(p: &mut P, cpu: &C, tsc_start: u64) -> Result<Handoff, Error> {
    let inputs = inputs::read(p)?;
    if inputs.kernel.multiboot2().is_some() {
        return run_multiboot2(p, cpu, inputs, tsc_start);
    }
    if inputs.kernel.linux().is_some() {
        return linux::run(p, cpu, inputs, tsc_start);
    }
    if let Some(found) = inputs.kernel.limine() {
        let mut limine = Limine::new(found.clone(), p.phys_offset());
        return run_inputs(p, cpu, &mut limine, inputs, tsc_start);
    }
    if inputs.kernel.bootloader_api().is_some() {
        let mut protocol = BootloaderApi::default();
        return run_inputs(p, cpu, &mut protocol, inputs, tsc_start);
    }
    run_inputs(p, cpu, &mut Hvboot::default(), inputs, tsc_start)
}

/// Runs the flow on `p` and returns the hand-off for `protocol`. On an error before the
/// firmware is left the firmware is still usable (for the error message on the screen).
pub fn run<P: Platform, C: Cpu, H: Protocol>(
    p: &mut P,
    cpu: &C,
    protocol: &mut H,
    tsc_start: u64,
) -> Result<Handoff, Error> {
    let inputs = inputs::read(p)?;
    run_inputs(p, cpu, protocol, inputs, tsc_start)
}

/// The stamps with the loader's entry set.
fn stamps_from(tsc_start: u64) -> [u64; 5] {
    let mut stamps = [0u64; 5];
    stamps[TscStage::LOADER_ENTRY.0 as usize] = tsc_start;
    stamps
}

/// A Multiboot2 kernel: placed at its physical addresses (or relocated within its relocatable
/// tag's bounds), the firmware surveyed, the RSDP and SMBIOS entry points copied for the
/// information; no address space of hvboot's and no CPU start-up (the kernel runs with paging
/// off and starts its own processors). Under UEFI a kernel with the EFI boot services and EFI
/// amd64 entry tags keeps the boot services and is entered at that entry in 64-bit mode;
/// any other is entered as under BIOS after ExitBootServices (docs/multiboot2.md).
pub fn run_multiboot2<P: Platform, C: Cpu>(
    p: &mut P,
    cpu: &C,
    inputs: inputs::Inputs,
    tsc_start: u64,
) -> Result<Handoff, Error> {
    let mut stamps = stamps_from(tsc_start);
    let placed = place::place(p, &inputs)?;
    stamps[TscStage::FILES_READ.0 as usize] = cpu.rdtsc();
    let firmware = firmware::survey(p, &inputs)?;
    let plan = inputs.kernel.multiboot2().expect("a Multiboot2 kernel");
    let keep = keeps_boot_services(plan, firmware.tables.system_table);
    // Under BIOS the loader is linked at 0x8000; OVMF loads it where it likes. The EFI
    // boot-services path stays in 64-bit mode and does not need the 32-bit code.
    let code = crate::handoff::multiboot2_code();
    if P::FIRMWARE == FirmwareKind::UEFI && !keep && code >= 1 << 32 {
        return Err(Error::Multiboot2 {
            kernel: inputs.kernel.path.clone(),
            why: crate::multiboot2::Problem {
                field: "multiboot2 header".into(),
                message: alloc::format!(
                    "the loader's 32-bit hand-off code is at {code:#x}, above 4 GiB, where a \
                     Multiboot2 kernel cannot be entered from"
                ),
            },
        });
    }
    let rsdp = copy_table(p, firmware.tables.rsdp, b"RSD PTR ", 23, |t| {
        if t[15] >= 2 {
            u32::from_le_bytes([t[20], t[21], t[22], t[23]]) as usize
        } else {
            20
        }
    });
    let mut smbios = copy_table(p, firmware.tables.smbios, b"_SM_", 7, |t| usize::from(t[5]));
    if smbios.is_empty() {
        smbios = copy_table(p, firmware.tables.smbios3, b"_SM3_", 7, |t| {
            usize::from(t[6])
        });
    }
    let mut protocol = Multiboot2::new(rsdp, smbios);
    // VBE info (§3.6.9) when asked for and a VBE mode was set for the framebuffer tag.
    let wants_vbe = plan.header.requests.iter().any(|&(t, _)| t == 7);
    if let Some(vbe) = p.vbe_info().filter(|_| wants_vbe) {
        protocol = protocol.with_vbe(vbe);
    }
    if let Some(sections) = load_sections(p, &inputs)? {
        protocol = protocol.with_elf_sections(sections);
    }
    if keep {
        protocol = protocol.keeping_boot_services(p.image_handle());
    }
    // Multiboot2 has no tag for the ACPI table addresses or the TSC: the kernel reads ACPI
    // through the RSDP tags and times itself.
    let boot = Boot::without_address_space::<P>(inputs, placed, firmware, stamps);
    hand_off::hand_off(p, cpu, &mut protocol, boot)
}

impl Boot {
    /// What the phases found for a kernel that brings its own paging (Multiboot2, Linux):
    /// phases 1-3 only, so no address space of hvboot's, no CPU start-up, no ACPI table
    /// addresses or TSC frequency (those protocols have no field for them).
    pub(crate) fn without_address_space<P: Platform>(
        inputs: inputs::Inputs,
        placed: place::Placed,
        firmware: firmware::Firmware,
        stamps: [u64; 5],
    ) -> Self {
        Boot {
            firmware_kind: P::FIRMWARE,
            inputs,
            placed,
            firmware,
            space: address_space::AddressSpace::default(),
            virt: VirtReport::default(),
            cpus: Vec::new(),
            local_apic: 0,
            acpi_tables: AcpiTables::default(),
            tsc: (0, TscSource::UNKNOWN),
            aps: None,
            stamps,
        }
    }
}

/// The ELF-symbols tag's section headers (docs/multiboot2.md), when the kernel asks for them:
/// the sections outside its loaded segments copied from the file into one block below 4 GiB,
/// each at its alignment, and their `sh_addr` set to where.
fn load_sections<P: Platform>(
    p: &mut P,
    inputs: &inputs::Inputs,
) -> Result<Option<crate::multiboot2::sections::Sections>, Error> {
    let k = &inputs.kernel;
    let Some(mut s) = k.multiboot2().and_then(|m| m.sections.clone()) else {
        return Ok(None);
    };
    let bytes = s.load_bytes();
    if bytes == 0 {
        return Ok(Some(s));
    }
    let block = p
        .allocate(
            hvboot_api::MemoryKind::KERNEL.0,
            bytes,
            Placement::Below((1 << 32) - 1),
        )
        .map_err(Error::no_memory("the kernel's ELF sections"))?;
    // SAFETY: read_file filled the first range; the second was just allocated for the sections.
    let (file, to) = unsafe {
        (
            phys_slice(p, k.file_phys, k.file_len),
            phys_slice(p, block, bytes),
        )
    };
    let mut at = 0u64;
    for l in s.loads.clone() {
        at = at.next_multiple_of(l.align);
        let (from, len) = (l.offset as usize, l.size as usize);
        to[at as usize..at as usize + len].copy_from_slice(&file[from..from + len]);
        s.set_addr(l.index, block + at);
        at += l.size;
    }
    Ok(Some(s))
}

/// The bytes of the firmware structure at `phys` (0: none) that starts with `signature`, whose
/// length `len` reads from its first `head + 1` bytes (read whatever the structure's length);
/// at most 4 KiB. Empty when there is none.
fn copy_table<P: Platform>(
    p: &P,
    phys: u64,
    signature: &[u8],
    head: usize,
    len: impl Fn(&[u8]) -> usize,
) -> Vec<u8> {
    if phys == 0 {
        return Vec::new();
    }
    // SAFETY: the firmware published a structure at least `head + 1` bytes long there.
    let first = unsafe { phys_slice(p, phys, head as u64 + 1) };
    if !first.starts_with(signature) {
        return Vec::new();
    }
    let n = len(first).clamp(1, 4096);
    // SAFETY: as above, of the length the structure gives.
    unsafe { phys_slice(p, phys, n as u64) }.to_vec()
}

/// The flow for hvboot's protocol after the inputs.
fn run_inputs<P: Platform, C: Cpu, H: Protocol>(
    p: &mut P,
    cpu: &C,
    protocol: &mut H,
    inputs: inputs::Inputs,
    tsc_start: u64,
) -> Result<Handoff, Error> {
    let mut stamps = stamps_from(tsc_start);
    let mut placed = place::place(p, &inputs)?;
    stamps[TscStage::FILES_READ.0 as usize] = cpu.rdtsc();
    let firmware = firmware::survey(p, &inputs)?;
    // The MADT's processors first: the address space maps a stack for each AP to start.
    let window = hv::PhysWindow {
        offset: p.phys_offset(),
    };
    let (cpus, local_apic) = hv::cpu_list(cpu, &window, firmware.tables.rsdp).unwrap_or_default();
    let acpi_tables = hvboot_api::acpi::table_addresses(&window, firmware.tables.rsdp);
    let start_aps = cpus::wanted(&inputs.wants) && local_apic != 0;
    let ap_count = if start_aps {
        cpus::targets(&cpus).len()
    } else {
        0
    };
    let space = address_space::build(p, cpu, &inputs, &mut placed, &firmware, ap_count)?;
    stamps[TscStage::PAGE_TABLES_BUILT.0 as usize] = cpu.rdtsc();

    // What the processors offer, read on this one (the BSP) while the firmware is still here.
    let virt = hv::virt_report(cpu, inputs.wants.flag(RequestFlags::ENABLE_VMX));
    // The TSC's rate: CPUID's, else measured against the PM timer (30 ms).
    let tsc = tsc::frequency(cpu, &window, acpi_tables.fadt, virt.tsc_frequency_hz);
    // CPU start-up, first half: the trampoline and the per-CPU data (the APs are started
    // after the firmware is left, in `hand_off`).
    let aps = if start_aps {
        let tables = (space.cr3, space.direct_map_offset, space.la57_switch != 0);
        let aps = cpus::prepare(
            p,
            cpu,
            &inputs.wants,
            &mut placed,
            tables,
            &cpus,
            local_apic,
            &virt,
            tsc.0,
        )?;
        Some(aps)
    } else {
        None
    };
    let boot = Boot {
        firmware_kind: P::FIRMWARE,
        inputs,
        placed,
        firmware,
        space,
        virt,
        cpus,
        local_apic,
        acpi_tables,
        tsc,
        aps,
        stamps,
    };
    hand_off::hand_off(p, cpu, protocol, boot)
}
