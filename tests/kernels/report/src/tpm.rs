//! The TPM event log the loader hands over (`BootInfo::tpm_event_log`), read as a TCG2
//! crypto-agile log (TCG PC Client PFP 1.05 §10.2): a SHA-1-format first event, the Spec ID
//! event (PCR 0, EV_NO_ACTION, a zero digest, data "Spec ID Event03" with the digest sizes of
//! the banks), then TCG_PCR_EVENT2 records. Lines:
//!
//! ```text
//! HVB tpm log=0x.. size=N final=0x.. spec_id=1 events=N to_end=1   | HVB tpm none
//! HVB tpm_event pcr=N type=N sha256_hex=.. data_hex=..   (each event of PCR 8 and 9)
//! ```
//!
//! `spec_id=1`: the first event is the Spec ID event; `events`: the TCG_PCR_EVENT2 records
//! parsed; `to_end=1`: they end exactly at `size`.

use hvboot_api::{serial_println, BootInfo, TPM_PCR_CONFIG, TPM_PCR_FILES};

use crate::hex::Hex;

const EV_NO_ACTION: u32 = 3;
const SPEC_ID: &[u8; 16] = b"Spec ID Event03\0";
const TPM_ALG_SHA256: u16 = 0x000B;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// The Spec ID event's (algorithm, digest size) pairs, or None when the first event is not it.
fn spec_id(r: &mut Reader<'_>, sizes: &mut [(u16, u16); 8]) -> Option<usize> {
    let (pcr, kind) = (r.u32()?, r.u32()?);
    let digest = r.take(20)?;
    let len = r.u32()? as usize;
    let data = r.take(len)?;
    if pcr != 0 || kind != EV_NO_ACTION || digest.iter().any(|&b| b != 0) {
        return None;
    }
    let mut d = Reader { bytes: data, at: 0 };
    if d.take(16)? != SPEC_ID {
        return None;
    }
    d.take(8)?; // platform class, version minor/major, errata, uintn size
    let count = d.u32()? as usize;
    if count == 0 || count > sizes.len() {
        return None;
    }
    for slot in sizes.iter_mut().take(count) {
        *slot = (d.u16()?, d.u16()?);
    }
    Some(count)
}

pub fn report(info: &BootInfo) {
    let Some((phys, size)) = info.tpm_event_log() else {
        serial_println!("HVB tpm none");
        return;
    };
    let final_events = info.tpm_final_events().unwrap_or(0);
    if !info.in_direct_map(phys, size) {
        serial_println!(
            "HVB tpm log={phys:#x} size={size} final={final_events:#x} spec_id=0 events=0 to_end=0"
        );
        return;
    }
    // SAFETY: the loader copied the log there; the direct map covers it.
    let bytes =
        unsafe { core::slice::from_raw_parts(info.phys_to_virt(phys) as *const u8, size as usize) };
    let mut r = Reader { bytes, at: 0 };
    let mut sizes = [(0u16, 0u16); 8];
    let Some(banks) = spec_id(&mut r, &mut sizes) else {
        serial_println!(
            "HVB tpm log={phys:#x} size={size} final={final_events:#x} spec_id=0 events=0 to_end=0"
        );
        return;
    };
    let mut events = 0;
    while r.at < bytes.len() {
        let Some(()) = event(&mut r, &sizes[..banks]) else {
            break;
        };
        events += 1;
    }
    let to_end = u8::from(r.at == bytes.len());
    serial_println!(
        "HVB tpm log={phys:#x} size={size} final={final_events:#x} spec_id=1 events={events} to_end={to_end}"
    );
}

/// One TCG_PCR_EVENT2; prints it when it is on PCR 8 or 9.
fn event(r: &mut Reader<'_>, sizes: &[(u16, u16)]) -> Option<()> {
    let (pcr, kind, count) = (r.u32()?, r.u32()?, r.u32()?);
    let mut sha256: &[u8] = &[];
    for _ in 0..count {
        let alg = r.u16()?;
        let &(_, n) = sizes.iter().find(|(a, _)| *a == alg)?;
        let digest = r.take(n as usize)?;
        if alg == TPM_ALG_SHA256 {
            sha256 = digest;
        }
    }
    let len = r.u32()? as usize;
    let data = r.take(len)?;
    if pcr == TPM_PCR_CONFIG || pcr == TPM_PCR_FILES {
        serial_println!(
            "HVB tpm_event pcr={pcr} type={kind} sha256_hex={} data_hex={}",
            Hex(sha256),
            Hex(data)
        );
    }
    Some(())
}
