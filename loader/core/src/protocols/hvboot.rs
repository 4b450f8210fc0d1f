//! hvboot's own protocol (docs/protocol.md): the `BootInfo` block, written with
//! `hvboot_api::BootInfoBuilder`, reached through the direct map; RDI points at it.

use alloc::format;
use alloc::vec::Vec;
use core::mem::size_of;

use hvboot_api::{
    BootInfo, BootInfoBuilder, BuildError, CpuEntry, CpuStart, FirmwareMemoryEntry, MemoryKind,
    MemoryRegion, Module, PlacedExtent,
};

use super::{Info, Protocol};
use crate::flow::{Boot, Error};
use crate::handoff::{EntryMode, Handoff};
use crate::memmap;

/// The hvboot protocol, with the buffers it fills after the firmware is gone.
#[derive(Default)]
pub struct Hvboot {
    modules: Vec<Module>,
    map: Vec<MemoryRegion>,
}

impl Protocol for Hvboot {
    fn prepare(&mut self, boot: &Boot) -> u64 {
        let cfg = &boot.inputs.config;
        let entries = boot.firmware.map_entries;
        let strings = super::config_string_bytes(cfg) + 256;
        // The BOOT_INFO extent itself is added after sizing.
        let extents = boot.placed.extents.len() + 1;
        self.modules = Vec::with_capacity(cfg.modules.len());
        self.map = Vec::with_capacity(boot.firmware.map_capacity);
        (size_of::<BootInfo>()
            + entries * size_of::<MemoryRegion>()
            + entries * size_of::<FirmwareMemoryEntry>()
            + cfg.modules.len() * size_of::<Module>()
            + boot.cpus.len() * size_of::<CpuEntry>()
            + boot.aps.as_ref().map_or(0, |a| a.starts.len()) * size_of::<CpuStart>()
            + extents * size_of::<PlacedExtent>()
            + boot.stamps.len() * 8
            + 8 * 8
            + strings) as u64
    }

    fn write(&mut self, boot: &Boot, info: Info<'_>) -> Result<Handoff, Error> {
        let space = &boot.space;
        let offset = space.direct_map_offset;
        let Info {
            phys,
            bytes,
            map,
            firmware_map,
        } = info;
        self.build(boot, phys, bytes, (map, firmware_map))
            .map_err(|e| Error::BootInfo(format!("{e:?}")))?;
        Ok(Handoff {
            mode: EntryMode::Hvboot,
            cr3: space.cr3,
            stack_top: space.stack_top(),
            entry: boot.inputs.kernel.plan().entry,
            boot_info: phys + offset,
            gdt_virt: space.gdt_phys + offset,
        })
    }
}

impl Hvboot {
    /// Writes the block at `phys` (`buf`) with the final map and the firmware's raw map.
    fn build(
        &mut self,
        boot: &Boot,
        phys: u64,
        buf: &mut [u8],
        (map, firmware_map): (&[memmap::Region], &[FirmwareMemoryEntry]),
    ) -> Result<usize, BuildError> {
        let mut b = BootInfoBuilder::new(buf);
        let cfg = &boot.inputs.config;
        let mut header = BootInfo {
            firmware: boot.firmware_kind,
            loader_name: b.push_str(crate::LOADER_NAME)?,
            loader_version: b.push_str(crate::LOADER_VERSION)?,
            cmdline: b.push_str(&cfg.cmdline)?,
            ..BootInfo::default()
        };
        for (m, &(phys, size)) in cfg.modules.iter().zip(&boot.placed.modules) {
            let (name, cmdline) = (b.push_str(&m.name)?, b.push_str(&m.cmdline)?);
            let module = Module {
                phys_addr: phys,
                size,
                name,
                cmdline,
            };
            self.modules.push(module);
        }
        header.modules = b.push_array(&self.modules)?;
        self.map.extend(map.iter().map(|r| MemoryRegion {
            base: r.base,
            length: r.length,
            kind: MemoryKind(r.kind),
            reserved: 0,
        }));
        header.memory_map = b.push_array(&self.map)?;
        if let Some(fb) = boot.firmware.framebuffer {
            header.framebuffer = fb;
        }
        let t = &boot.firmware.tables;
        header.rsdp_phys = t.rsdp;
        header.smbios_entry_phys = t.smbios;
        header.smbios3_entry_phys = t.smbios3;
        header.efi_system_table = t.system_table;
        (header.tpm_event_log_phys, header.tpm_event_log_size) = boot.firmware.tpm_log;
        header.tpm_final_events_phys = t.tpm_final_events;
        let (plan, placed, space) = (boot.inputs.kernel.plan(), &boot.placed, &boot.space);
        header.kernel_phys_base = placed.kernel_phys;
        header.kernel_virt_base = plan.virt_start;
        header.kernel_size = placed.image_size;
        header.direct_map_offset = space.direct_map_offset;
        header.direct_map_size = space.direct_map_size;
        header.boot_info_phys = phys;
        header.page_tables_phys = space.cr3;
        header.stack_top = space.stack_top();
        header.stack_size = space.stack_size;
        header.tsc_loader_start = boot.stamps[0];
        header.virt = boot.virt;
        header.cpus = b.push_array(&boot.cpus)?;
        if let Some(aps) = &boot.aps {
            header.cpu_starts = b.push_array(&aps.starts)?;
            let records = phys + u64::from(header.cpu_starts.offset);
            crate::flow::cpus::point_mailboxes(aps, records + boot.space.direct_map_offset);
        }
        header.local_apic_phys = boot.local_apic;
        header.acpi_tables = boot.acpi_tables;
        (header.tsc_frequency_hz, header.tsc_source) = boot.tsc;
        header.firmware_memory_map = b.push_array(firmware_map)?;
        header.placed_extents = b.push_array(&placed.extents)?;
        (header.guest_reservation_phys, header.guest_reservation_size) = placed.guest;
        header.ap_trampoline_phys = placed.ap_trampoline;
        header.request_version = boot.inputs.wants.request.map_or(0, |r| r.version);
        header.tsc_stamps = b.push_array(&boot.stamps)?;
        header.tsc_handoff = boot.stamps[hvboot_api::TscStage::HANDOFF.0 as usize];
        b.finish(header)
    }
}
