use alloc::vec::Vec;

use super::*;

/// A table: `sig`, the 48-byte header (length filled in), then `body`.
fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = alloc::vec![0u8; HEADER];
    t[..4].copy_from_slice(sig);
    t.extend_from_slice(body);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t
}

/// A DMAR structure of `kind` and `len` bytes with `base` at +8 (when it fits).
fn dmar_struct(kind: u16, len: u16, base: u64) -> Vec<u8> {
    let mut s = alloc::vec![0u8; usize::from(len)];
    s[..2].copy_from_slice(&kind.to_le_bytes());
    s[2..4].copy_from_slice(&len.to_le_bytes());
    if s.len() >= 16 {
        s[8..16].copy_from_slice(&base.to_le_bytes());
    }
    s
}

/// An IVRS block of `kind` and `len` bytes with `base` at +8 (when it fits).
fn ivrs_block(kind: u8, len: u16, base: u64) -> Vec<u8> {
    let mut s = alloc::vec![0u8; usize::from(len)];
    s[0] = kind;
    s[2..4].copy_from_slice(&len.to_le_bytes());
    if s.len() >= 16 {
        s[8..16].copy_from_slice(&base.to_le_bytes());
    }
    s
}

#[test]
fn dmar_units_are_its_drhds() {
    // QEMU's intel-iommu: one DRHD (with a device scope) at 0xfed90000; an RMRR (type 1) and a
    // DRHD too short for its base are not units.
    let body = [
        dmar_struct(DRHD, 24, 0xfed9_0000),
        dmar_struct(1, 32, 0x1234_5000),
        dmar_struct(DRHD, 12, 0xdead_0000),
        dmar_struct(DRHD, 16, 0xfed9_1000),
    ]
    .concat();
    let t = table(b"DMAR", &body);
    let got: Vec<u64> = units(Kind::VtD, &t).collect();
    assert_eq!(got, [0xfed9_0000, 0xfed9_1000]);
}

#[test]
fn ivrs_units_are_its_ivhds() {
    // The same unit as IVHD 10h and 11h (both listed: turning it off twice is harmless), an
    // IVMD (20h) that is not a unit, an IVHD 40h.
    let body = [
        ivrs_block(0x10, 24, 0xfeb8_0000),
        ivrs_block(0x11, 40, 0xfeb8_0000),
        ivrs_block(0x20, 32, 0x1000),
        ivrs_block(0x40, 40, 0xfeb9_0000),
    ]
    .concat();
    let t = table(b"IVRS", &body);
    let got: Vec<u64> = units(Kind::AmdVi, &t).collect();
    assert_eq!(got, [0xfeb8_0000, 0xfeb8_0000, 0xfeb9_0000]);
}

#[test]
fn a_walk_stops_at_a_structure_it_cannot_step_over_or_that_runs_past_the_end() {
    for len in [0u16, 3] {
        let body = [dmar_struct(DRHD, 16, 1), dmar_struct(DRHD, len.max(4), 2)].concat();
        let mut t = table(b"DMAR", &body);
        t[HEADER + 16 + 2..HEADER + 16 + 4].copy_from_slice(&len.to_le_bytes());
        t.extend(dmar_struct(DRHD, 16, 3));
        assert_eq!(
            units(Kind::VtD, &t).collect::<Vec<_>>(),
            [1],
            "length {len}"
        );
    }
    let mut t = table(b"DMAR", &dmar_struct(DRHD, 16, 1));
    t.extend(dmar_struct(DRHD, 16, 2));
    t.truncate(t.len() - 1);
    assert_eq!(units(Kind::VtD, &t).collect::<Vec<_>>(), [1]);
    assert_eq!(units(Kind::VtD, &[0u8; 10]).count(), 0);
}

/// A VT-d unit: GCMD's TE and IRE bits show in GSTS once `delay` reads have passed (never with
/// `u32::MAX`); GCMD writes recorded.
struct VtD {
    gsts: u32,
    pending: Option<(u32, u32)>,
    delay: u32,
    commands: Vec<u32>,
}

impl Regs for VtD {
    fn read32(&mut self, offset: u64) -> u32 {
        assert_eq!(offset, GSTS);
        if let Some((cmd, left)) = self.pending {
            if left == 0 {
                self.gsts = (self.gsts & !(VTD_TE | VTD_IRE)) | (cmd & (VTD_TE | VTD_IRE));
                self.pending = None;
            } else if self.delay != u32::MAX {
                self.pending = Some((cmd, left - 1));
            }
        }
        self.gsts
    }
    fn write32(&mut self, offset: u64, value: u32) {
        assert_eq!(offset, GCMD);
        self.commands.push(value);
        self.pending = Some((value, self.delay));
    }
    fn read64(&mut self, _: u64) -> u64 {
        unreachable!("VT-d's registers used are 32-bit")
    }
    fn write64(&mut self, _: u64, _: u64) {
        unreachable!("VT-d's registers used are 32-bit")
    }
}

fn vtd(gsts: u32, delay: u32) -> VtD {
    VtD {
        gsts,
        pending: None,
        delay,
        commands: Vec::new(),
    }
}

#[test]
fn vtd_translation_then_interrupt_remapping_off_one_bit_per_command() {
    // TES, IRES, QIES (bit 26), and the one-shot RTPS (bit 30) and IRTPS (bit 24) set.
    let on = VTD_TE | VTD_IRE | 1 << 26 | 1 << 30 | 1 << 24;
    let mut u = vtd(on, 3);
    let out = turn_off(Kind::VtD, &mut u);
    assert_eq!(out.before, u64::from(on));
    assert!(out.acknowledged);
    assert_eq!(out.after & u64::from(VTD_TE | VTD_IRE), 0);
    // Each command: the persistent bits (the one-shot ones left out) with one bit cleared.
    assert_eq!(u.commands, [VTD_IRE | 1 << 26, 1 << 26]);
}

#[test]
fn vtd_already_off_is_left_alone_and_a_silent_unit_is_said() {
    let mut u = vtd(1 << 26, 0);
    let out = turn_off(Kind::VtD, &mut u);
    assert!(u.commands.is_empty() && out.acknowledged);
    let mut u = vtd(VTD_TE, u32::MAX);
    let out = turn_off(Kind::VtD, &mut u);
    assert_eq!(u.commands, [0]);
    assert!(!out.acknowledged, "never acknowledged: bounded, and said");
}

/// An AMD-Vi unit's control register.
struct AmdVi(u64);

impl Regs for AmdVi {
    fn read32(&mut self, _: u64) -> u32 {
        unreachable!("AMD-Vi's control register is 64-bit")
    }
    fn write32(&mut self, _: u64, _: u32) {
        unreachable!("AMD-Vi's control register is 64-bit")
    }
    fn read64(&mut self, offset: u64) -> u64 {
        assert_eq!(offset, AMD_CONTROL);
        self.0
    }
    fn write64(&mut self, offset: u64, value: u64) {
        assert_eq!(offset, AMD_CONTROL);
        self.0 = value;
    }
}

#[test]
fn amd_vi_iommu_enable_cleared_the_rest_kept() {
    let mut u = AmdVi(0x1005);
    let out = turn_off(Kind::AmdVi, &mut u);
    assert_eq!(
        (out.before, out.after, out.acknowledged),
        (0x1005, 0x1004, true)
    );
    let mut u = AmdVi(0x1004);
    assert_eq!(turn_off(Kind::AmdVi, &mut u).after, 0x1004);
}
