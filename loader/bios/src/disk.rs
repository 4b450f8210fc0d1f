//! The boot disk through INT 13h extended reads (Phoenix EDD 3.0, AH=42h), in transfers of up to
//! 127 sectors into the low bounce buffer, each copied up to the destination, all of one read in
//! one trip to real mode (stage 2's `rm_read_batch`). A read that fails is retried from the
//! failing transfer, after a drive reset (INT 13h AH=00h), up to RETRIES times before it is
//! reported.

use alloc::format;
use alloc::string::String;

use hvboot_loader_core::fat::{BlockDevice, SECTOR};

use crate::lowmem::{self, BOUNCE, BOUNCE_SECTORS};
use crate::thunk::{self, Regs};

/// How many times a failed transfer is tried again before the error is reported.
pub const RETRIES: u32 = 3;

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
        let mut lba = lba;
        let mut dest = dest;
        let mut sectors = sectors;
        let mut tries = 0;
        loop {
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
            if !r.carry() && r.ah() == 0 {
                return Ok(());
            }
            let at = r.ecx as u64 | (r.ebp as u64) << 32;
            if tries == RETRIES || !(lba..lba + sectors).contains(&at) {
                return Err(format!(
                    "disk read error at LBA {at} ({} sectors, drive {:#04x}): INT 13h status \
                     {:#04x}{}",
                    r.edi,
                    self.drive,
                    r.ah(),
                    if tries > 0 {
                        format!(
                            " (tried {} times, resetting the drive in between)",
                            tries + 1
                        )
                    } else {
                        String::new()
                    }
                ));
            }
            // The sectors before the failing transfer are in place: go on from it.
            tries += 1;
            log::warn!(
                "disk read error at LBA {at}: INT 13h status {:#04x}; resetting the drive, try {}",
                r.ah(),
                tries + 1
            );
            let done = at - lba;
            dest += done * SECTOR as u64;
            sectors -= done;
            lba = at;
            let mut reset = Regs {
                edx: self.drive as u32,
                ..Regs::default()
            };
            thunk::int(0x13, &mut reset);
        }
    }

    /// INT 13h AH=48h (EDD 3.0 "get drive parameters"): the total number of sectors.
    fn sectors(&mut self) -> Option<u64> {
        let (seg, off) = thunk::seg_off(BOUNCE);
        // SAFETY: the bounce buffer is the loader's and nothing else uses it now; 0x1A is the
        // size of the EDD 1.x result buffer, which the BIOS fills.
        unsafe {
            lowmem::write::<[u8; 0x1A]>(BOUNCE, [0; 0x1A]);
            lowmem::write::<u16>(BOUNCE, 0x1A);
        }
        let mut r = Regs {
            eax: 0x4800,
            edx: self.drive as u32,
            esi: off as u32,
            ds: seg,
            ..Regs::default()
        };
        thunk::int(0x13, &mut r);
        if r.carry() || r.ah() != 0 {
            return None;
        }
        // SAFETY: the BIOS filled the result buffer; the total sector count is at offset 16.
        let total = unsafe { lowmem::read::<u64>(BOUNCE + 16) };
        (total != 0 && total != u64::MAX).then_some(total)
    }
}
