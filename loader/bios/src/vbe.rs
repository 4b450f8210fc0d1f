//! A linear framebuffer through VBE (VESA BIOS Extension 3.0: 4F00h controller information,
//! 4F01h mode information, 4F02h set mode). Only 32-bit direct-colour modes with a linear
//! framebuffer are used. Without a request it prefers 1024x768, else the largest mode up to that
//! size; for a kernel that asked for W x H, the smallest mode of at least W x H, else the largest
//! (the same rule as the UEFI platform's GOP choice).

use hvboot_api::{Framebuffer, PixelFormat};
use hvboot_loader_core::flow::{framebuffer_32bpp, VbeInfo};

use crate::lowmem::{self, VBE_INFO, VBE_MODE};
use crate::thunk::{self, Regs};

const PREFERRED: (u32, u32) = (1024, 768);

struct Mode {
    number: u16,
    fb: Framebuffer,
}

fn mode_info(number: u16, version: u16) -> Option<Mode> {
    let (seg, off) = thunk::seg_off(VBE_MODE);
    let mut r = Regs {
        eax: 0x4F01,
        ecx: number as u32,
        edi: off as u32,
        es: seg,
        ..Regs::default()
    };
    thunk::int(0x10, &mut r);
    if r.eax & 0xFFFF != 0x004F {
        return None;
    }
    // SAFETY: the BIOS filled the 256-byte ModeInfoBlock (VBE 3.0 §4.4).
    let rd8 = |o: u64| unsafe { lowmem::read::<u8>(VBE_MODE + o) };
    let rd16 = |o: u64| unsafe { lowmem::read::<u16>(VBE_MODE + o) };
    let rd32 = |o: u64| unsafe { lowmem::read::<u32>(VBE_MODE + o) };
    let attrs = rd16(0);
    // Supported (bit 0), graphics (bit 4), linear framebuffer (bit 7).
    if attrs & 0x91 != 0x91 || rd8(0x19) != 32 || rd8(0x1B) != 6 {
        return None;
    }
    let (width, height) = (rd16(0x12) as u32, rd16(0x14) as u32);
    let phys = rd32(0x28) as u64;
    // VBE 3.0 has separate linear-mode pitch and masks; use them when filled in.
    let lin = version >= 0x300 && rd16(0x32) != 0;
    let pitch = if lin { rd16(0x32) } else { rd16(0x10) } as u32;
    let m = if lin && rd8(0x36) != 0 { 0x36 } else { 0x1F };
    let masks: [u8; 8] = core::array::from_fn(|i| rd8(m + i as u64));
    if phys == 0 || width == 0 || height == 0 || pitch < width * 4 {
        return None;
    }
    let format = match masks {
        [8, 16, 8, 8, 8, 0, ..] => PixelFormat::BGR,
        [8, 0, 8, 8, 8, 16, ..] => PixelFormat::RGB,
        _ => PixelFormat::BITMASK,
    };
    Some(Mode {
        number,
        fb: framebuffer_32bpp(
            phys,
            u64::from(pitch) * u64::from(height),
            (width, height, pitch),
            format,
            masks,
        ),
    })
}

/// Sets the chosen mode and returns its framebuffer and what VBE said of it (the controller
/// block and the mode's, copied out of the low buffer the disk reads share); None when VBE
/// offers no usable mode.
pub fn set_mode(want: Option<(u32, u32)>) -> Option<(Framebuffer, VbeInfo)> {
    // SAFETY: the info buffer is the loader's; "VBE2" asks for VBE 2.0+ information.
    unsafe { lowmem::write::<[u8; 4]>(VBE_INFO, *b"VBE2") };
    let (seg, off) = thunk::seg_off(VBE_INFO);
    let mut r = Regs {
        eax: 0x4F00,
        edi: off as u32,
        es: seg,
        ..Regs::default()
    };
    thunk::int(0x10, &mut r);
    // SAFETY: the BIOS filled the VbeInfoBlock (VBE 3.0 §4.3).
    let (sig, version, list) = unsafe {
        (
            lowmem::read::<[u8; 4]>(VBE_INFO),
            lowmem::read::<u16>(VBE_INFO + 4),
            lowmem::read::<u32>(VBE_INFO + 14),
        )
    };
    if r.eax & 0xFFFF != 0x004F || &sig != b"VESA" {
        return None;
    }
    // The mode list (a far pointer) may point into the info block: copy it first.
    let list = ((list >> 16) as u64) * 16 + (list & 0xFFFF) as u64;
    let mut modes = [0u16; 256];
    let mut count = 0;
    while count < modes.len() {
        // SAFETY: below 1 MiB, identity-mapped; the list ends with 0xFFFF.
        let m = unsafe { lowmem::read::<u16>(list + 2 * count as u64) };
        if m == 0xFFFF {
            break;
        }
        modes[count] = m;
        count += 1;
    }
    let mut best: Option<Mode> = None;
    // Higher is better: (class, then a rank within the class).
    let score = |fb: &Framebuffer| -> (u8, u64) {
        let area = fb.width as u64 * fb.height as u64;
        let (w, h) = (fb.width, fb.height);
        match want {
            None if (w, h) == PREFERRED => (3, 0),
            None if w <= PREFERRED.0 && h <= PREFERRED.1 => (2, area),
            None => (1, u64::MAX - area),
            Some((ww, wh)) if w >= ww && h >= wh => (2, u64::MAX - area),
            Some(_) => (1, area),
        }
    };
    for &n in &modes[..count] {
        if let Some(m) = mode_info(n, version) {
            if best.as_ref().is_none_or(|b| score(&m.fb) > score(&b.fb)) {
                best = Some(m);
            }
        }
    }
    let best = best?;
    let mut r = Regs {
        eax: 0x4F02,
        ebx: best.number as u32 | 0x4000, // linear framebuffer
        ..Regs::default()
    };
    thunk::int(0x10, &mut r);
    if r.eax & 0xFFFF != 0x004F {
        return None;
    }
    // The scan left the last mode's block in VBE_MODE: ask for the chosen one's again.
    mode_info(best.number, version)?;
    // SAFETY: the BIOS filled both blocks (VBE 3.0 §4.3, §4.4); below 1 MiB, identity-mapped.
    let info = unsafe {
        VbeInfo {
            mode: best.number,
            control_info: lowmem::read(VBE_INFO),
            mode_info: lowmem::read(VBE_MODE),
        }
    };
    Some((best.fb, info))
}
