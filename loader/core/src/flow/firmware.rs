//! What the firmware offers the kernel, gathered before the address space is sized: ACPI / SMBIOS
//! / EFI entry points, the framebuffer the kernel asked for, and the memory map's extent.

use hvboot_api::{Framebuffer, FRAMEBUFFER_NONE};

use super::inputs::Inputs;
use super::{Error, FirmwareTables, Platform};
use crate::memmap;

/// The firmware's facts.
#[derive(Debug, Clone, Copy)]
pub struct Firmware {
    /// Entry points of the firmware's tables.
    pub tables: FirmwareTables,
    /// The framebuffer, if the kernel wants one and there is one.
    pub framebuffer: Option<Framebuffer>,
    /// The end of the highest range in the firmware's memory map.
    pub map_top: u64,
    /// Entries the final memory map may have: the firmware's count now plus room for what
    /// ExitBootServices and the loader add.
    pub map_entries: usize,
    /// Capacity for the map with the headroom `memmap::normalize` needs, so that it never
    /// allocates after the firmware is gone.
    pub map_capacity: usize,
    /// The real-time clock's reading, Unix seconds (UTC), when it could be read.
    pub boot_time: Option<i64>,
    /// The TPM event log copied after the last measurement (physical address, bytes); (0, 0)
    /// when nothing was measured.
    pub tpm_log: (u64, u64),
}

/// Asks the platform for its tables, the framebuffer (none, the default one, or one of the
/// requested size), its memory map's extent and, after a measured boot's last measurement, the
/// TPM event log.
pub fn survey<P: Platform>(p: &mut P, inputs: &Inputs) -> Result<Firmware, Error> {
    let tables = p.tables();
    let tpm_log = if inputs.measuring.0 {
        p.tpm_event_log().map_err(|why| Error::Measure {
            what: "the TPM event log".into(),
            why,
        })?
    } else {
        (0, 0)
    };
    let req = inputs.wants.request.unwrap_or_default();
    let framebuffer = match (req.framebuffer_width, req.framebuffer_height) {
        (FRAMEBUFFER_NONE, FRAMEBUFFER_NONE) => None,
        (0, 0) => p.framebuffer(),
        (w, h) => p.framebuffer_sized(w, h),
    };
    let (map_top, map_len) = p.memory_extent()?;
    let map_entries = map_len + 64;
    let boot_time = p.wall_clock();
    Ok(Firmware {
        tables,
        framebuffer,
        map_top,
        map_entries,
        map_capacity: memmap::normalize_capacity(map_entries),
        boot_time,
        tpm_log,
    })
}
