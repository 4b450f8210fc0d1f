//! The boot disk through INT 13h extended reads (Phoenix EDD 3.0, AH=42h), in transfers of up to
//! 127 sectors into the low bounce buffer, each copied up to the destination, all of one read in
//! one trip to real mode (stage 2's `rm_read_batch`).

use alloc::format;
use alloc::string::String;

use hvboot_loader_core::fat::{BlockDevice, SECTOR};

use crate::lowmem::{BOUNCE, BOUNCE_SECTORS};
use crate::thunk::{self, Regs};

pub struct Disk {
    drive: u8,
}

impl Disk {
    pub fn new(drive: u8) -> Self {
        Self { drive }
    }
}

impl BlockDevice for Disk {
    /// One trip to real mode for the whole read: stage 2's `rm_read_batch` issues the 127-sector
    /// transfers into the bounce buffer and copies each up to `buf` (docs/bios.md, "Disk").
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let sectors = (buf.len() / SECTOR) as u64;
        if sectors == 0 {
            return Ok(());
        }
        let dest = buf.as_mut_ptr() as u64;
        let end = dest + sectors * SECTOR as u64;
        if end > 1 << 32 {
            return Err(format!(
                "read of {sectors} sectors into {dest:#x}: not below 4 GiB"
            ));
        }
        let mut r = Regs {
            eax: sectors as u32,
            ebx: dest as u32,
            ecx: lba as u32,
            ebp: (lba >> 32) as u32,
            edx: self.drive as u32,
            esi: BOUNCE as u32,
            edi: BOUNCE_SECTORS as u32,
            ..Regs::default()
        };
        // SAFETY: `buf` lies below 4 GiB (checked) and is ours; the bounce buffer is the
        // loader's (lowmem.rs), 16-byte aligned and BOUNCE_SECTORS sectors long.
        unsafe { thunk::read_batch(&mut r) };
        if r.carry() || r.ah() != 0 {
            let at = r.ecx as u64 | (r.ebp as u64) << 32;
            return Err(format!(
                "disk read error at LBA {at} ({} sectors, drive {:#04x}): INT 13h status \
                 {:#04x}",
                r.edi,
                self.drive,
                r.ah()
            ));
        }
        Ok(())
    }
}
