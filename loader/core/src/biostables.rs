//! Finding the ACPI RSDP and the SMBIOS entry points in BIOS memory (no firmware tables to ask):
//!
//! - RSDP (ACPI 6.5 §5.2.5.1): "RSD PTR " on a 16-byte boundary in the first KiB of the EBDA,
//!   then in 0xE0000..=0xFFFFF; valid if the first 20 bytes sum to 0 and, for revision 2+, the
//!   whole `length` bytes do too (§5.2.5.3).
//! - SMBIOS (DSP0134 3.x §5.2): "_SM_" (2.1, 32-bit; checksum over its length byte 5 and "_DMI_"
//!   at 0x10) and "_SM3_" (3.0, 64-bit; checksum over its length byte 6), on 16-byte boundaries
//!   in 0xF0000..=0xFFFFF.
//!
//! The functions scan a byte slice that holds memory from physical address `base` on, so they
//! are tested on the host.

fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x)) == 0
}

/// The address of the first valid RSDP in `mem` (memory from `base`), if any.
pub fn find_rsdp(mem: &[u8], base: u64) -> Option<u64> {
    (0..mem.len().saturating_sub(19)).step_by(16).find_map(|i| {
        let r = &mem[i..];
        if &r[..8] != b"RSD PTR " || !sums_to_zero(&r[..20]) {
            return None;
        }
        if r[15] >= 2 {
            let len = u32::from_le_bytes(r.get(20..24)?.try_into().ok()?) as usize;
            if !(36..=4096).contains(&len) || !sums_to_zero(r.get(..len)?) {
                return None;
            }
        }
        Some(base + i as u64)
    })
}

/// The addresses of the SMBIOS 2.x and 3.x entry points in `mem` (memory from `base`).
pub fn find_smbios(mem: &[u8], base: u64) -> (Option<u64>, Option<u64>) {
    let (mut sm2, mut sm3) = (None, None);
    for i in (0..mem.len()).step_by(16) {
        let r = &mem[i..];
        if sm3.is_none() && r.starts_with(b"_SM3_") {
            let len = *r.get(6).unwrap_or(&0) as usize;
            if len >= 0x18 && r.len() >= len && sums_to_zero(&r[..len]) {
                sm3 = Some(base + i as u64);
            }
        }
        if sm2.is_none() && r.starts_with(b"_SM_") {
            let len = *r.get(5).unwrap_or(&0) as usize;
            if len >= 0x1F
                && r.len() >= len
                && sums_to_zero(&r[..len])
                && &r[0x10..0x15] == b"_DMI_"
            {
                sm2 = Some(base + i as u64);
            }
        }
    }
    (sm2, sm3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn fix(b: &mut [u8], at: usize) {
        let s = b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        b[at] = b[at].wrapping_sub(s);
    }

    #[test]
    fn rsdp_v1_and_v2() {
        let mut mem = vec![0u8; 0x400];
        // A signature off the 16-byte grid is ignored.
        mem[0x21..0x29].copy_from_slice(b"RSD PTR ");
        let mut r = [0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = 2;
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        fix(&mut r[..20], 8);
        fix(&mut r, 32);
        assert!(sums_to_zero(&r[..20]));
        mem[0x100..0x124].copy_from_slice(&r);
        assert_eq!(find_rsdp(&mem, 0xE0000), Some(0xE0100));
        mem[0x123] ^= 1; // extended checksum broken
        assert_eq!(find_rsdp(&mem, 0xE0000), None);
        // ACPI 1.0: only the first 20 bytes count.
        let mut v1 = [0u8; 20];
        v1[..8].copy_from_slice(b"RSD PTR ");
        fix(&mut v1, 8);
        mem[0x200..0x214].copy_from_slice(&v1);
        assert_eq!(find_rsdp(&mem, 0), Some(0x200));
    }

    #[test]
    fn smbios_entry_points() {
        let mut mem = vec![0u8; 0x200];
        let mut e2 = [0u8; 0x1F];
        e2[..4].copy_from_slice(b"_SM_");
        e2[5] = 0x1F;
        e2[0x10..0x15].copy_from_slice(b"_DMI_");
        fix(&mut e2, 4);
        mem[0x40..0x5F].copy_from_slice(&e2);
        let mut e3 = [0u8; 0x18];
        e3[..5].copy_from_slice(b"_SM3_");
        e3[6] = 0x18;
        fix(&mut e3, 5);
        mem[0x100..0x118].copy_from_slice(&e3);
        assert_eq!(find_smbios(&mem, 0xF0000), (Some(0xF0040), Some(0xF0100)));
        mem[0x41] = b'X';
        assert_eq!(find_smbios(&mem, 0xF0000), (None, Some(0xF0100)));
    }
}
