//! The boot disk through INT 13h extended reads (Phoenix EDD 3.0, AH=42h), in transfers of up to
//! 127 sectors into the low bounce buffer, each copied up to the destination, all of one read in
//! one trip to real mode (stage 2's `rm_read_batch`). A read that fails is retried from the
//! failing transfer, after a drive reset (INT 13h AH=00h), up to RETRIES times before it is
//! reported.
//!
//! Stage 2 copies each transfer up in 32-bit protected mode without paging, so it reaches only
//! the first 4 GiB: a read into RAM above 4 GiB goes through a staging buffer below 4 GiB (taken
//! once, when the machine has such RAM) and is copied up from there in long mode.
//!
//! The loader reads 512-byte sectors (GPT, FAT). A CD booted through El Torito has 2048-byte
//! sectors (EDD AH=48h says so); there a read is turned into reads of whole CD sectors, with
//! a partial first or last CD sector going through a one-sector scratch buffer (docs/bios.md,
//! "From a CD").

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hvboot_loader_core::fat::{BlockDevice, SECTOR};

use hvboot_api::MemoryKind;
use hvboot_loader_core::flow::Placement;

use crate::lowmem::{self, BOUNCE, BOUNCE_SECTORS};
use crate::mem::{FOUR_GIB, MEMORY};
use crate::thunk::{self, Regs};

/// How many times a failed transfer is tried again before the error is reported.
pub const RETRIES: u32 = 3;

/// The largest device sector the loader reads through (a CD's).
const MAX_SECTOR: usize = 2048;

/// The staging buffer for reads above 4 GiB: one trip to real mode per this many bytes.
const STAGING: usize = 2 << 20;

pub struct Disk {
    drive: u8,
    /// log2 of the drive's sector size: 9, or 11 on a CD.
    shift: u32,
    /// One device sector, for the partial ends of a read on a CD.
    scratch: Vec<u8>,
    /// The staging buffer below 4 GiB (STAGING bytes), when there is RAM above 4 GiB.
    staging: Option<u64>,
}

impl Disk {
    /// The drive, with its sector size from EDD AH=48h (512 when the BIOS does not say, or
    /// says a size the loader does not read through).
    pub fn new(drive: u8) -> Self {
        let staging = MEMORY.with(|m| {
            let kind = MemoryKind::LOADER_RECLAIMABLE.0;
            let below = Placement::Below(FOUR_GIB - 1);
            m.has_high()
                .then(|| m.allocate_untouched(kind, STAGING as u64, below).ok())
                .flatten()
        });
        let mut d = Self {
            drive,
            shift: 9,
            scratch: Vec::new(),
            staging,
        };
        if let Some((_, bytes)) = d.parameters() {
            if bytes == MAX_SECTOR as u16 {
                d.shift = bytes.trailing_zeros();
                d.scratch = vec![0; MAX_SECTOR];
            }
        }
        d
    }

    /// The sector size in bytes.
    pub fn sector_bytes(&self) -> usize {
        1 << self.shift
    }

    /// 512-byte sectors per device sector.
    fn ratio(&self) -> u64 {
        1 << (self.shift - 9)
    }

    /// INT 13h AH=48h (EDD 3.0 "get drive parameters"): total sectors and bytes per sector.
    fn parameters(&mut self) -> Option<(u64, u16)> {
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
        // SAFETY: the BIOS filled the result buffer: total sectors at +16, bytes per sector at
        // +24.
        unsafe {
            Some((
                lowmem::read::<u64>(BOUNCE + 16),
                lowmem::read::<u16>(BOUNCE + 24),
            ))
        }
    }

    /// Whole device sectors from device LBA `lba` into `buf` (a multiple of the sector size):
    /// straight there below 4 GiB, else through the staging buffer a chunk at a time.
    fn read_device(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let dest = buf.as_ptr() as u64;
        if dest + buf.len() as u64 <= FOUR_GIB {
            return self.read_low(lba, buf);
        }
        let staging = self.staging.ok_or_else(|| {
            format!("read into {dest:#x}: above 4 GiB, and no staging buffer below it")
        })?;
        // SAFETY: the staging buffer is the disk's alone, STAGING bytes below 4 GiB, mapped.
        let staged = unsafe { core::slice::from_raw_parts_mut(staging as *mut u8, STAGING) };
        let mut lba = lba;
        for chunk in buf.chunks_mut(STAGING) {
            self.read_low(lba, &mut staged[..chunk.len()])?;
            chunk.copy_from_slice(&staged[..chunk.len()]);
            lba += (chunk.len() >> self.shift) as u64;
        }
        Ok(())
    }

    /// Whole device sectors from device LBA `lba` into `buf` below 4 GiB. One trip to real mode
    /// for the whole read: stage 2's `rm_read_batch` issues the transfers into the bounce buffer
    /// and copies each up to `buf` (docs/bios.md, "Disk").
    fn read_low(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let sectors = (buf.len() >> self.shift) as u64;
        if sectors == 0 {
            return Ok(());
        }
        let dest = buf.as_mut_ptr() as u64;
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
                edx: self.drive as u32 | self.shift << 8,
                esi: BOUNCE as u32,
                edi: ((BOUNCE_SECTORS * SECTOR as u64) >> self.shift) as u32,
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
                    "disk read error at LBA {at} ({} sectors{}, drive {:#04x}): INT 13h status \
                     {:#04x}{}",
                    r.edi,
                    if self.shift == 9 {
                        String::new()
                    } else {
                        format!(" of {} bytes", self.sector_bytes())
                    },
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
            dest += done << self.shift;
            sectors -= done;
            lba = at;
            let mut reset = Regs {
                edx: self.drive as u32,
                ..Regs::default()
            };
            thunk::int(0x13, &mut reset);
        }
    }
}

impl BlockDevice for Disk {
    /// 512-byte sectors: straight through on a disk; on a CD, the whole CD sectors in the
    /// middle straight into `buf`, a partial first or last one through the scratch sector.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let r = self.ratio();
        if r == 1 {
            return self.read_device(lba, buf);
        }
        let mut lba = lba;
        let mut buf = buf;
        while !buf.is_empty() {
            let skip = (lba % r) as usize * SECTOR;
            let whole = buf.len() / self.sector_bytes() * self.sector_bytes();
            if skip == 0 && whole > 0 {
                let (head, rest) = core::mem::take(&mut buf).split_at_mut(whole);
                self.read_device(lba / r, head)?;
                lba += (whole / SECTOR) as u64;
                buf = rest;
                continue;
            }
            let mut scratch = core::mem::take(&mut self.scratch);
            let read = self.read_device(lba / r, &mut scratch);
            let n = (scratch.len() - skip).min(buf.len());
            if read.is_ok() {
                buf[..n].copy_from_slice(&scratch[skip..skip + n]);
            }
            self.scratch = scratch;
            read?;
            lba += (n / SECTOR) as u64;
            buf = &mut core::mem::take(&mut buf)[n..];
        }
        Ok(())
    }

    /// The total number of 512-byte sectors (EDD AH=48h).
    fn sectors(&mut self) -> Option<u64> {
        let (total, _) = self.parameters()?;
        (total != 0 && total != u64::MAX).then(|| total * self.ratio())
    }
}
