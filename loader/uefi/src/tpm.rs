//! Measured boot under UEFI (docs/trust.md, "Measured boot"): the core's measurements through
//! EFI_TCG2_PROTOCOL (TCG EFI Protocol Specification 1.22 §6): GetCapability for a TPM,
//! HashLogExtendEvent per measurement (an EV_IPL event, TCG PC Client PFP §10.4.1), and
//! GetEventLog for the log the kernel gets a copy of: the firmware keeps its log in boot-services
//! memory, which the kernel may overwrite (as Linux's EFI stub, the loader copies it first).

use hvboot_api::MemoryKind;
use hvboot_loader_core::flow::PlatformError;
use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol};
use uefi::proto::tcg::v2::{HashLogExtendEventFlags, PcrEventInputs, Tcg};
use uefi::proto::tcg::{EventType, PcrIndex};
use uefi::{guid, Guid};
use uefi_raw::protocol::tcg::v2::{Tcg2EventLogFormat, Tcg2Protocol};
use uefi_raw::Boolean;

use crate::memory;

/// EFI_TCG2_FINAL_EVENTS_TABLE_GUID (TCG EFI Protocol §6.4).
pub const FINAL_EVENTS_GUID: Guid = guid!("1e2ed096-30e2-4254-bd89-863bbef82325");

fn status(what: &str, e: uefi::Error<impl core::fmt::Debug>) -> PlatformError {
    PlatformError::Status(alloc::format!("EFI_TCG2_PROTOCOL.{what}: {:?}", e.status()))
}

/// The protocol, opened without taking it from anyone (the firmware's own drivers use it too).
fn open() -> Result<ScopedProtocol<Tcg>, PlatformError> {
    let handle = boot::get_handle_for_protocol::<Tcg>().map_err(|_| {
        PlatformError::Unsupported("the firmware has no EFI_TCG2_PROTOCOL (no TPM 2.0)")
    })?;
    // SAFETY: used only while boot services last, never past this call's caller.
    unsafe {
        boot::open_protocol::<Tcg>(
            OpenProtocolParams {
                handle,
                agent: boot::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }
    .map_err(|e| status("open", e))
}

/// Ok when a TPM is behind the protocol (GetCapability's TPMPresentFlag).
pub fn present() -> Result<(), PlatformError> {
    let cap = open()?
        .get_capability()
        .map_err(|e| status("GetCapability", e))?;
    if cap.tpm_present() {
        Ok(())
    } else {
        Err(PlatformError::Unsupported(
            "EFI_TCG2_PROTOCOL says no TPM is present",
        ))
    }
}

/// HashLogExtendEvent: `data`'s digest into `pcr`, an EV_IPL event with `event`.
pub fn measure(pcr: u32, data: &[u8], event: &[u8]) -> Result<(), PlatformError> {
    let input = PcrEventInputs::new_in_box(PcrIndex(pcr), EventType::IPL, event)
        .map_err(|e| status("event", e))?;
    open()?
        .hash_log_extend_event(HashLogExtendEventFlags::empty(), data, &input)
        .map_err(|e| status("HashLogExtendEvent", e))
}

/// The crypto-agile event log as it stands, copied into fresh BOOT_INFO pages:
/// (physical address, bytes). GetEventLog gives the first and the last event's start; the last
/// event's end is where its event data ends.
pub fn event_log_copy() -> Result<(u64, u64), PlatformError> {
    let mut tcg = open()?;
    let (mut location, mut last, mut truncated) = (0u64, 0u64, Boolean::default());
    // SAFETY: `Tcg` is a transparent wrapper of the raw protocol; the out-pointers are ours.
    let raw = core::ptr::from_mut(&mut *tcg).cast::<Tcg2Protocol>();
    let s = unsafe {
        ((*raw).get_event_log)(
            raw,
            Tcg2EventLogFormat::TCG_2,
            &mut location,
            &mut last,
            &mut truncated,
        )
    };
    if s.is_error() || location == 0 {
        return Err(PlatformError::Status(alloc::format!(
            "EFI_TCG2_PROTOCOL.GetEventLog: {s:?}, log at {location:#x}"
        )));
    }
    let log = tcg
        .get_event_log_v2()
        .map_err(|e| status("GetEventLog", e))?;
    let end = log
        .iter()
        .map(|e| e.event_data().as_ptr() as u64 + e.event_data().len() as u64)
        .max()
        .unwrap_or(last)
        .max(last);
    let size = end - location;
    let copy = memory::allocate(MemoryKind::BOOT_INFO.0, size, None)?;
    // SAFETY: the firmware's log is `size` readable bytes; the copy is fresh, identity-mapped.
    unsafe {
        core::ptr::copy_nonoverlapping(location as *const u8, copy as *mut u8, size as usize)
    };
    log::info!("tpm: event log ({size} bytes) copied to {copy:#x}");
    Ok((copy, size))
}
