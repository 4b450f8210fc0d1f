//! What the fuzz targets share: the fuzz input as a disk.

use hvboot_loader_core::fat::{BlockDevice, SECTOR};

/// The fuzz input as a disk of `sectors` 512-byte sectors: the input's bytes first, zeros after
/// (so a small input can stand for a FAT16 volume of a few MiB whose tail is empty).
pub struct InputDisk<'a> {
    pub data: &'a [u8],
    pub sectors: u64,
}

impl BlockDevice for InputDisk<'_> {
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        assert_eq!(buf.len() % SECTOR, 0, "a read of part of a sector");
        let n = (buf.len() / SECTOR) as u64;
        if lba.checked_add(n).is_none_or(|end| end > self.sectors) {
            return Err(format!("read of {n} sectors at LBA {lba}: past the end"));
        }
        buf.fill(0);
        let at = lba.saturating_mul(SECTOR as u64);
        if at < self.data.len() as u64 {
            let from = &self.data[at as usize..];
            let k = from.len().min(buf.len());
            buf[..k].copy_from_slice(&from[..k]);
        }
        Ok(())
    }

    fn sectors(&mut self) -> Option<u64> {
        Some(self.sectors)
    }
}
