//! The last phase: the protocol sizes its information (allocated while the firmware and the heap
//! may still grow), the firmware is left (or, when the protocol says so, kept: [`Leave`]), the
//! final memory map is made, and the protocol writes its information and names the hand-off.

use alloc::vec::Vec;

use hvboot_api::{ExtentKind, FirmwareMemoryEntry, MemoryKind, TscStage};

use super::place::extent;
use super::{phys_slice, Boot, Cpu, Error, Platform};
use crate::handoff::Handoff;
use crate::memmap;
use crate::protocols::{Info, Protocol};
use crate::PAGE_SIZE as PAGE;

/// What the hand-off does with the firmware, as the protocol asks ([`Protocol::leave`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Leave it for good ([`Platform::exit_firmware`]): the kernel owns the machine.
    Exit,
    /// Keep its boot services running ([`Platform::keep_firmware`]): the kernel calls them and
    /// exits them itself (Multiboot2's EFI boot-services path). The map is the one of the moment.
    KeepBootServices,
}

/// Leaves (or keeps) the firmware and returns the protocol's hand-off. Errors after
/// [`Platform::exit_firmware`] are only the map outgrowing its room or the block its size.
pub fn hand_off<P: Platform, H: Protocol>(
    p: &mut P,
    cpu: &impl Cpu,
    protocol: &mut H,
    mut boot: Boot,
) -> Result<Handoff, Error> {
    let size = protocol.prepare(&boot);
    let info_phys = p
        .allocate(MemoryKind::BOOT_INFO.0, size, protocol.placement())
        .map_err(Error::no_memory("the boot information"))?;
    let size = size.next_multiple_of(PAGE);
    let e = extent(ExtentKind::BOOT_INFO, 0, info_phys, 0, size);
    boot.placed.extents.push(e);

    // Everything the map needs, allocated while the heap may still grow.
    let entries = boot.firmware.map_entries;
    let mut regions = Vec::with_capacity(boot.firmware.map_capacity);
    let mut fw_map: Vec<FirmwareMemoryEntry> = Vec::with_capacity(entries);
    match protocol.leave() {
        Leave::Exit => {
            log::info!("leaving the firmware");
            p.exit_firmware(&mut regions);
        }
        Leave::KeepBootServices => {
            log::info!("keeping the boot services for the kernel's EFI entry");
            p.keep_firmware(&mut regions)?;
        }
    }
    boot.stamps[TscStage::FIRMWARE_EXITED.0 as usize] = cpu.rdtsc();
    // CPU start-up, second half: with the firmware gone, one path for both firmwares.
    if let Some(aps) = boot.aps.as_mut() {
        super::cpus::start(cpu, aps, &boot.cpus);
    }
    p.firmware_map(&mut fw_map);
    fw_map.truncate(entries);
    final_map(&mut regions, &boot, entries)?;

    boot.stamps[TscStage::HANDOFF.0 as usize] = cpu.rdtsc();
    // SAFETY: the block's pages were just allocated for it.
    let bytes = unsafe { phys_slice(p, info_phys, size) };
    let info = Info {
        phys: info_phys,
        bytes,
        map: &regions,
        firmware_map: &fw_map,
    };
    let handoff = protocol.write(&boot, info)?;
    // The protocol decides the entry (Linux's startup_64, Limine's entry-point request, Xen's
    // EFI entry plus the slide), so it is logged here rather than the ELF's e_entry. The
    // serial console outlives the firmware on both platforms.
    log::info!(
        "jumping to the kernel at {:#x} (boot information at {:#x})",
        handoff.entry,
        handoff.boot_info
    );
    Ok(handoff)
}

/// The firmware's final map plus the framebuffer, normalized (sorted, merged, the more
/// restrictive kind winning), within the room made for it.
fn final_map(regions: &mut Vec<memmap::Region>, boot: &Boot, room: usize) -> Result<(), Error> {
    if let Some(fb) = &boot.firmware.framebuffer {
        regions.push(memmap::Region {
            base: fb.phys_addr,
            length: fb.size,
            kind: MemoryKind::FRAMEBUFFER.0,
        });
    }
    let too_large = |what, entries| Error::MapTooLarge {
        what,
        entries,
        room,
    };
    if regions.len() > room {
        return Err(too_large("the firmware's memory map", regions.len()));
    }
    memmap::normalize(regions, memmap::default_priority);
    if regions.len() > room {
        return Err(too_large("the memory map", regions.len()));
    }
    Ok(())
}
