//! What a firmware interface provides to the boot flow ([`Platform`]), and the pieces both
//! firmware layers share: the framebuffer constructor, the failure path, the console logger.

use alloc::vec::Vec;
use core::fmt;

use hvboot_api::{FirmwareKind, FirmwareMemoryEntry, Framebuffer, PixelFormat};

use super::PlatformError;
use crate::{memmap, PAGE_SIZE as PAGE};

/// Where [`Platform::allocate`] may put an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Anywhere the loader can reach.
    Anywhere,
    /// Ending at or below this address (inclusive upper bound of the last byte).
    Below(u64),
    /// Exactly at this address.
    At(u64),
    /// Starting on a multiple of this power of two.
    Aligned(u64),
    /// Starting on a multiple of `align` (a power of two) and ending at or below `max`
    /// (inclusive upper bound of the last byte, as in [`Placement::Below`]).
    AlignedBelow {
        /// The alignment of the start.
        align: u64,
        /// The highest address the last byte may have.
        max: u64,
    },
}

/// What the firmware publishes: ACPI and SMBIOS entry points, the EFI system table.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirmwareTables {
    /// ACPI RSDP (2.0+ preferred), 0 if none.
    pub rsdp: u64,
    /// SMBIOS 2.x entry point (`_SM_`), 0 if none.
    pub smbios: u64,
    /// SMBIOS 3.x entry point (`_SM3_`), 0 if none.
    pub smbios3: u64,
    /// EFI system table, 0 under BIOS.
    pub system_table: u64,
    /// EFI_TCG2_FINAL_EVENTS_TABLE (TCG EFI Protocol §6.4), 0 if none.
    pub tpm_final_events: u64,
}

/// What VBE said of the display mode the loader set (VBE 3.0 §4.3 VbeInfoBlock, §4.4
/// ModeInfoBlock), as Multiboot2's VBE info tag carries it (specification 2.0 §3.6.9).
#[derive(Debug, Clone, Copy)]
pub struct VbeInfo {
    /// The mode number set (4F02h).
    pub mode: u16,
    /// The controller information (4F00h), as the BIOS wrote it.
    pub control_info: [u8; 512],
    /// The set mode's information (4F01h).
    pub mode_info: [u8; 256],
}

/// What a firmware interface provides to the shared boot flow.
pub trait Platform {
    /// The firmware kind reported to the kernel.
    const FIRMWARE: FirmwareKind;

    /// Allocates zeroed pages (`bytes` rounded up to 4 KiB) of memory kind `kind`.
    /// Returns the physical address (see [`Platform::phys_offset`]).
    fn allocate(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, PlatformError>;

    /// Reads the file at `path` (`/`-separated, from the ESP) into fresh pages of `kind`.
    /// Refuses files larger than `limit`. Returns (physical address, size in bytes).
    fn read_file(&mut self, path: &str, kind: u32, limit: u64)
        -> Result<(u64, u64), PlatformError>;

    /// ACPI / SMBIOS / EFI entry points.
    fn tables(&mut self) -> FirmwareTables;

    /// The framebuffer the kernel gets (may set a mode), or None.
    fn framebuffer(&mut self) -> Option<Framebuffer>;

    /// The end of the highest range in the firmware's memory map and the map's entry count.
    fn memory_extent(&mut self) -> Result<(u64, usize), PlatformError>;

    /// Leaves the firmware for good, appending its final memory map (as protocol kinds, the
    /// loader's allocations included) to `regions`, whose capacity the caller reserved.
    /// Nothing may allocate on the heap or call the firmware after this.
    fn exit_firmware(&mut self, regions: &mut Vec<memmap::Region>);

    /// Where the loader reaches physical memory: physical address `a` is at loader-virtual
    /// `a + phys_offset()` (wrapping). 0 on both firmware platforms: UEFI identity-maps by
    /// definition (UEFI 2.10 §2.3.4), the BIOS stage 2 identity-maps the first 4 GiB and the
    /// BIOS platform maps the RAM above it before allocating there. A host test's fake backs
    /// memory with an arena.
    fn phys_offset(&self) -> u64 {
        0
    }

    /// Like [`Platform::allocate`], but leaves the pages' contents as they are (the guest
    /// reservation, which the loader never writes). The default zeroes them anyway.
    fn allocate_untouched(
        &mut self,
        kind: u32,
        bytes: u64,
        at: Placement,
    ) -> Result<u64, PlatformError> {
        self.allocate(kind, bytes, at)
    }

    /// One free 4 KiB page below 1 MiB of memory kind `kind` for an AP start-up trampoline:
    /// never page 0, nothing the firmware or the loader uses (under BIOS below the EBDA).
    fn allocate_low_page(&mut self, kind: u32) -> Result<u64, PlatformError> {
        let _ = kind;
        Err(PlatformError::Unsupported(
            "this platform cannot allocate below 1 MiB",
        ))
    }

    /// The framebuffer for a kernel that asked for `width` x `height` pixels: the platform may
    /// switch modes. The default gives [`Platform::framebuffer`].
    fn framebuffer_sized(&mut self, width: u32, height: u32) -> Option<Framebuffer> {
        let _ = (width, height);
        self.framebuffer()
    }

    /// Instead of [`Platform::exit_firmware`], for a kernel that calls the firmware itself
    /// (Multiboot2's EFI boot-services path): appends the firmware's current memory map to
    /// `regions` as [`Platform::exit_firmware`] would, and keeps the firmware running; its
    /// untranslated entries are then what [`Platform::firmware_map`] gives. The default refuses
    /// (only UEFI has boot services to keep).
    fn keep_firmware(&mut self, regions: &mut Vec<memmap::Region>) -> Result<(), PlatformError> {
        let _ = regions;
        Err(PlatformError::Unsupported(
            "this platform has no boot services to keep",
        ))
    }

    /// What VBE said of the mode [`Platform::framebuffer`] set, None when no VBE mode was set
    /// (and always under UEFI).
    fn vbe_info(&self) -> Option<VbeInfo> {
        None
    }

    /// The wall-clock time now, in seconds since the Unix epoch (UTC), from the firmware's
    /// real-time clock (`crate::rtc`); None when the clock cannot be read or reads as no valid
    /// time. Asked while the firmware is still there. The default has no clock.
    fn wall_clock(&mut self) -> Option<i64> {
        None
    }

    /// The firmware's handle of the loader itself (UEFI: the image handle the loader was
    /// started with), 0 when there is none.
    fn image_handle(&self) -> u64 {
        0
    }

    /// Whether a TPM is there to measure into (docs/trust.md, "Measured boot"): Err with the
    /// reason when not. The default: this platform does not measure.
    fn tpm(&mut self) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported(
            "this loader measures only under UEFI (EFI_TCG2_PROTOCOL)",
        ))
    }

    /// Extends PCR `pcr` in every active bank with the digest of `data` and logs an EV_IPL
    /// event whose data is `event`. Only called after [`Platform::tpm`] said yes.
    fn measure(&mut self, pcr: u32, data: &[u8], event: &[u8]) -> Result<(), PlatformError> {
        let _ = (pcr, data, event);
        self.tpm()
    }

    /// The TPM event log after the loader's last measurement, copied where the kernel can
    /// read it (physical address, bytes); (0, 0) without one. Called before the firmware is
    /// left.
    fn tpm_event_log(&mut self) -> Result<(u64, u64), PlatformError> {
        Ok((0, 0))
    }

    /// untranslated (EFI descriptors / E820 entries), to `out`, whose capacity the caller
    /// reserved (room for the entry count of [`Platform::memory_extent`] plus 64). The default
    /// appends nothing (the kernel sees no firmware map).
    fn firmware_map(&mut self, out: &mut Vec<FirmwareMemoryEntry>) {
        let _ = out;
    }
}

/// A 32-bit-per-pixel linear framebuffer as the protocol describes it. `masks` holds the
/// (size, shift) pairs of red, green, blue and reserved, as GOP bitmasks and VBE mode
/// information give them; both platforms build their framebuffer through this.
pub fn framebuffer_32bpp(
    phys_addr: u64,
    bytes: u64,
    (width, height, pitch): (u32, u32, u32),
    format: PixelFormat,
    masks: [u8; 8],
) -> Framebuffer {
    Framebuffer {
        phys_addr,
        size: bytes
            .max(u64::from(pitch) * u64::from(height))
            .next_multiple_of(PAGE),
        width,
        height,
        pitch,
        bpp: 32,
        format,
        red_mask_size: masks[0],
        red_mask_shift: masks[1],
        green_mask_size: masks[2],
        green_mask_shift: masks[3],
        blue_mask_size: masks[4],
        blue_mask_shift: masks[5],
        reserved_mask_size: masks[6],
        reserved_mask_shift: masks[7],
    }
}

/// Prints `hvboot: error: <args>` on serial and on the screen, then `hvboot: halted`, then
/// stops the CPU for good (docs/protocol.md, "Failure"): the loader never jumps into a kernel
/// it could not fully load. Each platform passes its own serial and screen writers.
pub fn fail(
    serial: fn(fmt::Arguments<'_>),
    screen: fn(fmt::Arguments<'_>),
    args: fmt::Arguments<'_>,
) -> ! {
    serial(format_args!("hvboot: error: {args}\r\n"));
    screen(format_args!("hvboot: error: {args}\r\n"));
    serial(format_args!("hvboot: halted\r\n"));
    loop {
        // SAFETY: stopping the CPU is always sound.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

/// A loader panic in one line, for [`fail`]'s `hvboot: error:` line: the reason first, then
/// where (`loader panic: <message> (at <file>:<line>:<col>)`). `PanicInfo`'s own `Display`
/// puts the source path first and the reason on a second line, which the host's one-line
/// reading of the error would lose.
pub struct PanicReason<'a, M: fmt::Display> {
    /// The panic's message.
    pub message: M,
    /// Where it panicked, when known.
    pub location: Option<&'a core::panic::Location<'a>>,
}

impl<'a> PanicReason<'a, core::panic::PanicMessage<'a>> {
    /// The reason of a panic handler's `info`.
    pub fn of(info: &'a core::panic::PanicInfo<'a>) -> Self {
        Self {
            message: info.message(),
            location: info.location(),
        }
    }
}

impl<M: fmt::Display> fmt::Display for PanicReason<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("loader panic: ")?;
        // Line breaks inside the message would split the error line.
        fmt::write(&mut OneLine(f), format_args!("{}", self.message))?;
        if let Some(l) = self.location {
            write!(f, " (at {}:{}:{})", l.file(), l.line(), l.column())?;
        }
        Ok(())
    }
}

/// A writer that turns line breaks into "; ".
struct OneLine<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for OneLine<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split(['\r', '\n']).enumerate() {
            if i > 0 && !part.is_empty() {
                self.0.write_str("; ")?;
            }
            self.0.write_str(part)?;
        }
        Ok(())
    }
}

/// A mutable view of `len` bytes of physical memory at `phys`, through the platform's
/// [`Platform::phys_offset`].
///
/// # Safety
/// The range must be memory the platform gave the loader (allocated or read into), not
/// borrowed elsewhere for the slice's life.
pub unsafe fn phys_slice<'a, P: Platform + ?Sized>(p: &P, phys: u64, len: u64) -> &'a mut [u8] {
    core::slice::from_raw_parts_mut(phys.wrapping_add(p.phys_offset()) as *mut u8, len as usize)
}

/// The `log` facade's sink on a platform: every record as `hvboot: <message>` on one line of
/// the console `write` (serial on both platforms; see `fail` for errors on the screen).
pub struct ConsoleLogger {
    /// Writes to the console.
    pub write: fn(fmt::Arguments<'_>),
}

impl log::Log for ConsoleLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        (self.write)(format_args!("hvboot: {}\r\n", record.args()));
    }

    fn flush(&self) {}
}

impl ConsoleLogger {
    /// Makes this logger the facade's, at level Info (once, at the loader's start).
    pub fn install(&'static self) {
        if log::set_logger(self).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    }
}

#[cfg(test)]
mod panic_reason_tests {
    use super::PanicReason;
    use alloc::format;

    #[test]
    fn a_panic_is_one_line_reason_first() {
        let at = core::panic::Location::caller();
        let r = PanicReason {
            message: "memory allocation of 2097152 bytes failed\nsecond\r\nthird",
            location: Some(at),
        };
        assert_eq!(
            format!("{r}"),
            format!(
                "loader panic: memory allocation of 2097152 bytes failed; second; third (at {}:{}:{})",
                at.file(),
                at.line(),
                at.column()
            )
        );
        let bare = PanicReason {
            message: "x",
            location: None,
        };
        assert_eq!(format!("{bare}"), "loader panic: x");
    }
}
