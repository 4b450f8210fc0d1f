//! What the firmware tells us about the machine: configuration tables (ACPI, SMBIOS; UEFI 2.10
//! §4.6), the framebuffer (Graphics Output Protocol, UEFI 2.10 §12.9) and the time (GetTime,
//! §8.3.1).

use hvboot_api::{Framebuffer, PixelFormat};
use hvboot_loader_core::flow::{self, FirmwareTables};
use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams};
use uefi::proto::console::gop::{self, GraphicsOutput};
use uefi::table::cfg::ConfigTableEntry;

/// The runtime services' GetTime as Unix seconds (`hvboot_loader_core::rtc` for the zone).
pub fn wall_clock() -> Option<i64> {
    let t = uefi::runtime::get_time().ok()?;
    let date = hvboot_loader_core::rtc::DateTime {
        year: t.year(),
        month: t.month(),
        day: t.day(),
        hour: t.hour(),
        minute: t.minute(),
        second: t.second(),
    };
    hvboot_loader_core::rtc::efi_unix_seconds(
        &date,
        t.time_zone()
            .unwrap_or(hvboot_loader_core::rtc::EFI_UNSPECIFIED_TIMEZONE),
    )
}

pub fn tables() -> FirmwareTables {
    let mut t = FirmwareTables::default();
    let mut acpi1 = 0;
    uefi::system::with_config_table(|entries| {
        for e in entries {
            let addr = e.address as u64;
            match e.guid {
                ConfigTableEntry::ACPI2_GUID => t.rsdp = addr,
                ConfigTableEntry::ACPI_GUID => acpi1 = addr,
                ConfigTableEntry::SMBIOS_GUID => t.smbios = addr,
                ConfigTableEntry::SMBIOS3_GUID => t.smbios3 = addr,
                crate::tpm::FINAL_EVENTS_GUID => t.tpm_final_events = addr,
                _ => {}
            }
        }
    });
    // Prefer the ACPI 2.0+ RSDP (it carries the XSDT); fall back to the 1.0 one.
    if t.rsdp == 0 {
        t.rsdp = acpi1;
    }
    t.system_table = uefi::table::system_table_raw().map_or(0, |p| p.as_ptr() as u64);
    t
}

/// Switches GOP to the smallest mode (by pixel count) of at least `width` x `height`; keeps the
/// current mode when the firmware has none that large or the switch fails.
pub fn set_mode_at_least(width: u32, height: u32) {
    let Ok(handle) = boot::get_handle_for_protocol::<GraphicsOutput>() else {
        return;
    };
    // SAFETY: as in framebuffer(); the mode switch happens before we read the framebuffer.
    let Ok(mut gop) = (unsafe {
        boot::open_protocol::<GraphicsOutput>(
            OpenProtocolParams {
                handle,
                agent: boot::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }) else {
        return;
    };
    let (w, h) = (width as usize, height as usize);
    let current = gop.current_mode_info().resolution();
    let best = gop
        .modes()
        .filter(|m| {
            let (mw, mh) = m.info().resolution();
            mw >= w && mh >= h && m.info().pixel_format() != gop::PixelFormat::BltOnly
        })
        .min_by_key(|m| {
            let (mw, mh) = m.info().resolution();
            mw * mh
        });
    if let Some(mode) = best {
        if mode.info().resolution() != current {
            let _ = gop.set_mode(&mode);
        }
    }
}

/// The current GOP mode as a protocol framebuffer; None without GOP or in a Blt-only mode.
pub fn framebuffer() -> Option<Framebuffer> {
    let handle = boot::get_handle_for_protocol::<GraphicsOutput>().ok()?;
    // Non-exclusive: an exclusive open would disconnect the firmware's graphics console, and the
    // screen is where our error messages go until ExitBootServices.
    // SAFETY: we only read the mode and do not keep the protocol past boot services.
    let mut gop = unsafe {
        boot::open_protocol::<GraphicsOutput>(
            OpenProtocolParams {
                handle,
                agent: boot::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }
    .ok()?;
    let info = gop.current_mode_info();
    let (width, height) = info.resolution();
    let (format, masks) = match info.pixel_format() {
        gop::PixelFormat::Rgb => (PixelFormat::RGB, [8, 0, 8, 8, 8, 16, 8, 24]),
        gop::PixelFormat::Bgr => (PixelFormat::BGR, [8, 16, 8, 8, 8, 0, 8, 24]),
        gop::PixelFormat::Bitmask => {
            let m = info.pixel_bitmask()?;
            let field = |mask: u32| [mask.count_ones() as u8, mask.trailing_zeros() as u8];
            let [rs, rsh] = field(m.red);
            let [gs, gsh] = field(m.green);
            let [bs, bsh] = field(m.blue);
            let [xs, xsh] = field(m.reserved);
            (PixelFormat::BITMASK, [rs, rsh, gs, gsh, bs, bsh, xs, xsh])
        }
        gop::PixelFormat::BltOnly => return None,
    };
    let mut fb = gop.frame_buffer();
    let pitch = info.stride() as u32 * 4;
    Some(flow::framebuffer_32bpp(
        fb.as_mut_ptr() as u64,
        fb.size() as u64,
        (width as u32, height as u32, pitch),
        format,
        masks,
    ))
}
