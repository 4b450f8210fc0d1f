//! Turning the IOMMUs off for a Limine kernel of base revision 5 on (limine-protocol
//! PROTOCOL.md, "Machine State at Entry", x86-64: VT-d DMA translation and interrupt remapping
//! off, AMD-Vi off), after the firmware is left.
//!
//! The units come from the ACPI tables: VT-d's DMAR (Intel VT-d specification 4.1 §8.1: a
//! 48-byte header, then remapping structures of type u16 and length u16; a DRHD, type 0, has its
//! register base at +8) and AMD-Vi's IVRS (AMD I/O Virtualization Technology specification 3.x
//! §5.2: a 48-byte header, then IVDBs of type u8 and length u16 at +2; an IVHD, types 0x10, 0x11
//! and 0x40, has its MMIO base at +8; several IVHDs may describe one unit).
//!
//! VT-d (§11.4.4, §11.4.5): GCMD at +0x18, GSTS at +0x1C. A command is GSTS's persistent bits
//! (GSTS & 0x96FF_FFFF: the one-shot SRTP, SFL, WBF, SIRTP and CFI left out) with the one bit
//! changed, written to GCMD; hardware acknowledges it in GSTS. Translation (TE, bit 31) is
//! turned off first, then interrupt remapping (IRE, bit 25). AMD-Vi (§3.4.1): the 64-bit
//! control register at +0x18, bit 0 IommuEn, cleared.

/// How far the structures start in either table.
const HEADER: usize = 48;
/// DMAR structure type of a DMA-remapping hardware unit, and its shortest length.
const DRHD: u16 = 0;
const DRHD_LEN: usize = 16;
/// IVRS block types that describe an IOMMU (IVHD types 10h, 11h, 40h), and the shortest.
const IVHD: [u8; 3] = [0x10, 0x11, 0x40];
const IVHD_LEN: usize = 24;

/// VT-d registers and bits.
const GCMD: u64 = 0x18;
const GSTS: u64 = 0x1C;
const GSTS_PERSISTENT: u32 = 0x96FF_FFFF;
/// Translation enable (status TES), interrupt-remapping enable (status IRES).
pub const VTD_TE: u32 = 1 << 31;
/// See [`VTD_TE`].
pub const VTD_IRE: u32 = 1 << 25;
/// AMD-Vi control register and its IommuEn bit.
const AMD_CONTROL: u64 = 0x18;
const AMD_IOMMU_EN: u64 = 1;

/// How many GSTS reads a command gets to be acknowledged (each an uncached MMIO read: far
/// more than hardware needs, bounded so that a unit that never answers cannot hang the loader).
const POLLS: u32 = 1_000_000;

/// The kind of an IOMMU unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Intel VT-d (a DMAR DRHD).
    VtD,
    /// AMD-Vi (an IVRS IVHD).
    AmdVi,
}

impl Kind {
    /// Its name, as serial says it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::VtD => "VT-d",
            Kind::AmdVi => "AMD-Vi",
        }
    }
}

/// The register bases of the units the table `table` lists, `kind` saying which table it is:
/// each structure's bounds checked, a structure too short for its fields skipped, the walk
/// stopped at the first whose length is too small to step over or runs past the table.
pub fn units(kind: Kind, table: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let mut at = HEADER;
    core::iter::from_fn(move || loop {
        let head = table.get(at..at + 4)?;
        let (kind_of, len) = match kind {
            Kind::VtD => (
                u16::from_le_bytes([head[0], head[1]]),
                usize::from(u16::from_le_bytes([head[2], head[3]])),
            ),
            Kind::AmdVi => (
                u16::from(head[0]),
                usize::from(u16::from_le_bytes([head[2], head[3]])),
            ),
        };
        let s = table.get(at..at.checked_add(len)?)?;
        if len < 4 {
            return None;
        }
        at += len;
        let wanted = match kind {
            Kind::VtD => kind_of == DRHD && len >= DRHD_LEN,
            Kind::AmdVi => IVHD.iter().any(|&t| u16::from(t) == kind_of) && len >= IVHD_LEN,
        };
        if wanted {
            return Some(u64::from_le_bytes(s[8..16].try_into().ok()?));
        }
    })
}

/// A unit's registers.
pub trait Regs {
    /// The 32-bit register at `offset`.
    fn read32(&mut self, offset: u64) -> u32;
    /// Sets the 32-bit register at `offset`.
    fn write32(&mut self, offset: u64, value: u32);
    /// The 64-bit register at `offset`.
    fn read64(&mut self, offset: u64) -> u64;
    /// Sets the 64-bit register at `offset`.
    fn write64(&mut self, offset: u64, value: u64);
}

/// What [`turn_off`] found and left: the unit's status before and after (VT-d: GSTS; AMD-Vi:
/// the control register), and whether every command was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Before.
    pub before: u64,
    /// After.
    pub after: u64,
    /// Every command acknowledged within [`POLLS`] reads.
    pub acknowledged: bool,
}

/// Turns the unit behind `r` off as the module's header says.
pub fn turn_off(kind: Kind, r: &mut impl Regs) -> Outcome {
    match kind {
        Kind::VtD => {
            let before = r.read32(GSTS);
            let mut acknowledged = true;
            for bit in [VTD_TE, VTD_IRE] {
                let status = r.read32(GSTS);
                if status & bit == 0 {
                    continue;
                }
                r.write32(GCMD, status & GSTS_PERSISTENT & !bit);
                acknowledged &= (0..POLLS).any(|_| r.read32(GSTS) & bit == 0);
            }
            Outcome {
                before: u64::from(before),
                after: u64::from(r.read32(GSTS)),
                acknowledged,
            }
        }
        Kind::AmdVi => {
            let before = r.read64(AMD_CONTROL);
            if before & AMD_IOMMU_EN != 0 {
                r.write64(AMD_CONTROL, before & !AMD_IOMMU_EN);
            }
            let after = r.read64(AMD_CONTROL);
            Outcome {
                before,
                after,
                acknowledged: after & AMD_IOMMU_EN == 0,
            }
        }
    }
}

impl Regs for crate::mmio::Mmio {
    fn read32(&mut self, offset: u64) -> u32 {
        crate::mmio::Mmio::read32(self, offset)
    }
    fn write32(&mut self, offset: u64, value: u32) {
        crate::mmio::Mmio::write32(self, offset, value)
    }
    fn read64(&mut self, offset: u64) -> u64 {
        crate::mmio::Mmio::read64(self, offset)
    }
    fn write64(&mut self, offset: u64, value: u64) {
        crate::mmio::Mmio::write64(self, offset, value)
    }
}

#[cfg(test)]
mod tests;
