//! Finding the EFI system partition in a GUID Partition Table (UEFI 2.10 §5.3), as firmware
//! does: the primary GPT (header at LBA 1) is used only if its header and its partition-entry
//! array pass their CRC32 checks and the header says it is where it was read; otherwise the
//! backup (header at the disk's last LBA, entries just before it) is used. The BIOS loader finds
//! its ESP this way; under UEFI the firmware has already done it.

use alloc::format;
use alloc::string::String;

use hvboot_api::crc32::crc32_update as crc32;

use crate::fat::{BlockDevice, SECTOR};

/// The GPT partition type of an EFI system partition, as stored on disk (mixed-endian
/// C12A7328-F81F-11D2-BA4B-00A0C93EC93B; UEFI 2.10 §5.3.3).
pub const ESP_TYPE_GUID: [u8; 16] = [
    0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
];

/// The largest partition-entry array accepted (the usual one is 128 x 128 bytes = 16 KiB).
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// Sectors of the entry array read at once (into a buffer on the stack).
const CHUNK: usize = 8;

/// The ESP that [`find_esp`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Esp {
    /// The partition's first LBA.
    pub first_lba: u64,
    /// Why the primary GPT was not used, when the ESP comes from the backup.
    pub primary_bad: Option<String>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    le32(b, at) as u64 | (le32(b, at + 4) as u64) << 32
}

/// Finds the first EFI system partition of `dev`: in the primary GPT, or in the backup when the
/// primary is damaged (UEFI 2.10 §5.3.2). A valid GPT without an ESP is an error, not a reason
/// to look at the backup.
pub fn find_esp<D: BlockDevice>(dev: &mut D) -> Result<Esp, String> {
    let primary_bad = match read_gpt(dev, 1) {
        Ok(found) => return esp_or_none(found, None),
        Err(e) => e,
    };
    let backup = match dev.sectors() {
        Some(n) if n > 2 => n - 1,
        _ => {
            return Err(format!(
                "primary GPT (LBA 1): {primary_bad}; the disk's size is unknown, so its backup \
                 GPT cannot be found"
            ))
        }
    };
    match read_gpt(dev, backup) {
        Ok(found) => esp_or_none(found, Some(primary_bad)),
        Err(e) => Err(format!(
            "no valid GPT: primary (LBA 1): {primary_bad}; backup (LBA {backup}): {e}"
        )),
    }
}

fn esp_or_none(found: Option<u64>, primary_bad: Option<String>) -> Result<Esp, String> {
    match found {
        Some(first_lba) => Ok(Esp {
            first_lba,
            primary_bad,
        }),
        None => Err("no EFI system partition in the GPT".into()),
    }
}

/// Checks the GPT whose header is at `lba` (signature, header size and CRC, MyLBA, entry size
/// and count, entry-array CRC) and returns its first ESP's first LBA, if it has one.
fn read_gpt<D: BlockDevice>(dev: &mut D, lba: u64) -> Result<Option<u64>, String> {
    let mut hdr = [0u8; SECTOR];
    dev.read(lba, &mut hdr)
        .map_err(|e| format!("header: {e}"))?;
    if &hdr[..8] != b"EFI PART" {
        return Err("no header (signature \"EFI PART\" missing)".into());
    }
    let header_size = le32(&hdr, 12) as usize;
    if !(92..=SECTOR).contains(&header_size) {
        return Err(format!("header size {header_size} outside 92..=512"));
    }
    let stored = le32(&hdr, 16);
    let mut copy = hdr;
    copy[16..20].fill(0);
    let actual = crc32(0, &copy[..header_size]);
    if stored != actual {
        return Err(format!(
            "header CRC32 {stored:#010x}, the header's bytes give {actual:#010x}"
        ));
    }
    let my_lba = le64(&hdr, 24);
    if my_lba != lba {
        return Err(format!("the header says it is at LBA {my_lba}"));
    }
    let entries_lba = le64(&hdr, 72);
    let count = le32(&hdr, 80) as u64;
    let size = le32(&hdr, 84) as u64;
    if size < 128 || !size.is_multiple_of(128) || count * size > MAX_ENTRY_BYTES {
        return Err(format!(
            "{count} partition entries of {size} bytes is not plausible"
        ));
    }
    // The array, CHUNK sectors at a time; an entry's first 40 bytes (type, GUID, first LBA)
    // never straddle a sector, since entries are multiples of 128 bytes.
    let bytes = count * size;
    let mut buf = [0u8; CHUNK * SECTOR];
    let (mut crc, mut done, mut esp) = (0u32, 0u64, None);
    while done < bytes {
        let sectors = (bytes - done).div_ceil(SECTOR as u64).min(CHUNK as u64);
        let part = &mut buf[..sectors as usize * SECTOR];
        dev.read(entries_lba + done / SECTOR as u64, part)
            .map_err(|e| format!("partition entries: {e}"))?;
        let used = (bytes - done).min(part.len() as u64) as usize;
        crc = crc32(crc, &part[..used]);
        for at in (0..used).step_by(128) {
            let entry_at = done + at as u64;
            if esp.is_none() && entry_at.is_multiple_of(size) && part[at..at + 16] == ESP_TYPE_GUID
            {
                esp = Some(le64(part, at + 32));
            }
        }
        done += used as u64;
    }
    let stored = le32(&hdr, 88);
    if stored != crc {
        return Err(format!(
            "partition-entry array CRC32 {stored:#010x}, its bytes give {crc:#010x}"
        ));
    }
    Ok(esp)
}

#[cfg(test)]
mod tests;
