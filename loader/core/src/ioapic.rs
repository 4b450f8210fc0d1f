//! Masking I/O APIC redirection entries for a Limine kernel (limine-protocol PROTOCOL.md,
//! "Machine State at Entry", x86-64): every entry whose delivery mode is Fixed or Lowest
//! Priority is masked, and from base revision 5 NMI and ExtINT ones too; the rest of each entry
//! stays as the firmware left it. The I/O APICs are the MADT's type-1 structures (ACPI 6.5
//! §5.2.12.3: I/O APIC ID, reserved, 32-bit address, GSI base). Registers (Intel 82093AA I/O
//! APIC datasheet §3.0, 3.2.4): IOREGSEL at +0x00 selects, IOWIN at +0x10 reads and writes;
//! register 1 the version (bits 23:16 the highest redirection entry), 0x10 + 2n the low dword
//! of entry n (bits 10:8 delivery mode, bit 16 the mask).

use hvboot_api::acpi::Madt;

/// MADT interrupt controller structure type of an I/O APIC, and its length.
const MADT_IO_APIC: u8 = 1;
const MADT_IO_APIC_LEN: usize = 12;

const VERSION: u32 = 1;
const REDIRECTION: u32 = 0x10;
const MASK: u32 = 1 << 16;

/// An I/O APIC's indirect register window.
pub trait Window {
    /// Register `reg`'s value.
    fn read(&mut self, reg: u32) -> u32;
    /// Sets register `reg`.
    fn write(&mut self, reg: u32, value: u32);
}

/// The low dword `low` of a redirection entry as the protocol leaves it: masked when its
/// delivery mode is Fixed (0) or Lowest Priority (1), and with `strict` (base revision 5 on)
/// NMI (4) or ExtINT (7).
pub const fn masked(low: u32, strict: bool) -> u32 {
    match (low >> 8) & 7 {
        0 | 1 => low | MASK,
        4 | 7 if strict => low | MASK,
        _ => low,
    }
}

/// Applies [`masked`] to every redirection entry of the I/O APIC behind `w`; returns how many
/// entries it has and how many it masked (that were not).
pub fn mask_entries(w: &mut impl Window, strict: bool) -> (u32, u32) {
    let entries = ((w.read(VERSION) >> 16) & 0xff) + 1;
    let mut newly = 0;
    for n in 0..entries {
        let reg = REDIRECTION + 2 * n;
        let low = w.read(reg);
        let want = masked(low, strict);
        if want != low {
            w.write(reg, want);
            newly += 1;
        }
    }
    (entries, newly)
}

/// The I/O APICs of `madt`: (ID, physical address).
pub fn io_apics<'a>(madt: &Madt<'a>) -> impl Iterator<Item = (u8, u64)> + 'a {
    madt.entries()
        .filter(|(kind, e)| *kind == MADT_IO_APIC && e.len() >= MADT_IO_APIC_LEN)
        .map(|(_, e)| {
            (
                e[2],
                u64::from(u32::from_le_bytes([e[4], e[5], e[6], e[7]])),
            )
        })
}

/// IOREGSEL selects, IOWIN (+0x10) reads and writes.
impl Window for crate::mmio::Mmio {
    fn read(&mut self, reg: u32) -> u32 {
        self.write32(0, reg);
        self.read32(0x10)
    }

    fn write(&mut self, reg: u32, value: u32) {
        self.write32(0, reg);
        self.write32(0x10, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An I/O APIC with 24 entries (QEMU's), its registers in an array.
    struct Fake {
        regs: [u32; 0x40],
        writes: u32,
    }

    impl Window for Fake {
        fn read(&mut self, reg: u32) -> u32 {
            self.regs[reg as usize]
        }
        fn write(&mut self, reg: u32, value: u32) {
            assert_ne!(reg, VERSION, "the version register is read-only");
            self.regs[reg as usize] = value;
            self.writes += 1;
        }
    }

    #[test]
    fn fixed_and_lowest_priority_always_nmi_and_extint_from_revision_5() {
        for mode in 0..8u32 {
            let low = mode << 8 | 0x30 | 1 << 15;
            let always = mode <= 1;
            let strict = always || mode == 4 || mode == 7;
            assert_eq!(masked(low, false) & MASK != 0, always, "mode {mode}");
            assert_eq!(masked(low, true) & MASK != 0, strict, "mode {mode}");
            // Nothing but the mask changes.
            assert_eq!(masked(low, true) & !MASK, low);
        }
    }

    #[test]
    fn every_entry_is_read_and_only_those_the_rule_names_written() {
        for strict in [false, true] {
            let mut f = Fake {
                regs: [0; 0x40],
                writes: 0,
            };
            f.regs[1] = 0x0017_0020; // 24 entries, version 0x20.
                                     // Entry 0 ExtINT, 1 Fixed unmasked, 2 NMI, 3 SMI (2), 4 Lowest Priority already
                                     // masked, the rest Fixed masked as at reset.
            let lows = [0x700, 0x31, 0x400, 0x200, 0x1_0100];
            for n in 0..24 {
                f.regs[0x10 + 2 * n] = lows.get(n).copied().unwrap_or(MASK);
                f.regs[0x11 + 2 * n] = 0xff00_0000;
            }
            let (entries, newly) = mask_entries(&mut f, strict);
            assert_eq!(entries, 24);
            let want = if strict { 3 } else { 1 };
            assert_eq!((newly, f.writes), (want, want));
            assert_eq!(f.regs[0x12], 0x1_0031);
            assert_eq!(f.regs[0x10] & MASK != 0, strict);
            assert_eq!(f.regs[0x14] & MASK != 0, strict);
            assert_eq!(f.regs[0x16], 0x200, "SMI left alone");
            assert!(
                (0..24).all(|n| f.regs[0x11 + 2 * n] == 0xff00_0000),
                "high dwords kept"
            );
        }
    }

    #[test]
    fn the_madts_io_apics_short_ones_skipped() {
        let mut t = alloc::vec![0u8; 44];
        t[..4].copy_from_slice(b"APIC");
        t.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // a processor
        t.extend_from_slice(&[1, 12, 2, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]);
        t.extend_from_slice(&[1, 8, 3, 0, 0, 0, 0xc1, 0xfe]); // too short for its fields
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        let madt = Madt::parse(&t).unwrap();
        assert_eq!(
            io_apics(&madt).collect::<alloc::vec::Vec<_>>(),
            [(2, 0xfec0_0000)]
        );
    }
}
