//! The boot disk through INT 13h extended reads (Phoenix EDD 3.0, AH=42h), in transfers of up to
//! 127 sectors into the low bounce buffer, copied up to the destination.

use alloc::format;
use alloc::string::String;

use hvboot_loader_core::fat::{BlockDevice, SECTOR};

use crate::lowmem::{self, BOUNCE, BOUNCE_SECTORS, DAP};
use crate::thunk::{self, Regs};

pub struct Disk {
    drive: u8,
}

impl Disk {
    pub fn new(drive: u8) -> Self {
        Self { drive }
    }

    fn read_chunk(&mut self, lba: u64, count: u64) -> Result<(), u8> {
        // SAFETY: the DAP area is the loader's.
        unsafe {
            lowmem::write::<u8>(DAP, 16);
            lowmem::write::<u8>(DAP + 1, 0);
            lowmem::write::<u16>(DAP + 2, count as u16);
            let (seg, off) = thunk::seg_off(BOUNCE);
            lowmem::write::<u16>(DAP + 4, off);
            lowmem::write::<u16>(DAP + 6, seg);
            lowmem::write::<u64>(DAP + 8, lba);
        }
        let (seg, off) = thunk::seg_off(DAP);
        let mut r = Regs {
            eax: 0x4200,
            edx: self.drive as u32,
            esi: off as u32,
            ds: seg,
            ..Regs::default()
        };
        thunk::int(0x13, &mut r);
        if r.carry() || r.ah() != 0 {
            return Err(r.ah());
        }
        Ok(())
    }
}

impl BlockDevice for Disk {
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let sectors = (buf.len() / SECTOR) as u64;
        let mut done = 0u64;
        while done < sectors {
            let n = (sectors - done).min(BOUNCE_SECTORS);
            let at = lba + done;
            if let Err(status) = self.read_chunk(at, n) {
                return Err(format!(
                    "disk read error at LBA {at} ({n} sectors, drive {:#04x}): INT 13h status \
                     {status:#04x}",
                    self.drive
                ));
            }
            let bytes = (n as usize) * SECTOR;
            let start = done as usize * SECTOR;
            let dest = &mut buf[start..start + bytes];
            // SAFETY: the bounce buffer holds `bytes` bytes just read (a multiple of 512, so of
            // 8); `dest` is exactly that long and does not overlap it. `rep movsq` rather than
            // memcpy's `rep movsb`: under QEMU's TCG it moves 8 bytes per step, which makes
            // the copy-up a small part of a large read instead of most of it.
            unsafe {
                core::arch::asm!(
                    "rep movsq",
                    inout("rcx") bytes / 8 => _,
                    inout("rsi") BOUNCE => _,
                    inout("rdi") dest.as_mut_ptr() => _,
                    options(nostack, preserves_flags)
                );
            }
            done += n;
        }
        Ok(())
    }
}
