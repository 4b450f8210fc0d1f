//! The processor list from the ACPI MADT, found from the RSDP.
//!
//! Written from ACPI 6.5:
//!
//! - §5.2.5.3 RSDP: "RSD PTR " at 0, checksum of bytes 0..20 at 8, revision
//!   at 15, RSDT address (u32) at 16; revision >= 2 adds length (u32) at 20,
//!   XSDT address (u64) at 24 and an extended checksum of `length` bytes.
//! - §5.2.6 system description table header (36 bytes): signature at 0,
//!   length at 4, checksum (all bytes sum to 0) at 9.
//! - §5.2.7 RSDT (u32 entries from 36) and §5.2.8 XSDT (u64 entries from 36).
//! - §5.2.12 MADT ("APIC"): local interrupt controller address (u32) at 36,
//!   flags at 40, interrupt controller structures from 44, each with type (u8)
//!   and length (u8) first:
//!   - type 0 Processor Local APIC (8 bytes): ACPI processor UID (u8) at 2,
//!     APIC ID (u8) at 3, flags (u32) at 4;
//!   - type 5 Local APIC Address Override (12 bytes): address (u64) at 4;
//!   - type 9 Processor Local x2APIC (16 bytes): x2APIC ID (u32) at 4, flags
//!     (u32) at 8, ACPI processor UID (u32) at 12.
//!
//!   Local APIC flags (§5.2.12.2, Table 5.23): bit 0 Enabled, bit 1 Online
//!   Capable (only meaningful when Enabled is clear).
//!
//! Physical memory is read through a [`PhysMemory`]; in a kernel that is
//! [`DirectMap`] (the loader's direct map), in host tests a byte buffer.
//! Every length is bounds-checked and every table's checksum verified.

use core::fmt;

use crate::protocol::{AcpiTables, BootInfo, CpuEntry, CpuFlags};

/// Reads physical memory.
pub trait PhysMemory {
    /// `len` bytes at physical address `phys`, or None if they cannot be read.
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]>;
}

/// Physical memory through the loader's direct map.
#[derive(Clone, Copy, Debug)]
pub struct DirectMap<'a> {
    info: &'a BootInfo,
}

impl<'a> DirectMap<'a> {
    /// Reads through `info`'s direct map.
    ///
    /// # Safety
    /// Only in the kernel, while the loader's direct map is in place; the
    /// ranges read (ACPI tables) must not be written concurrently.
    pub unsafe fn new(info: &'a BootInfo) -> Self {
        Self { info }
    }
}

impl PhysMemory for DirectMap<'_> {
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
        if !self.info.in_direct_map(phys, len as u64) {
            return None;
        }
        // SAFETY: inside the direct map (checked); the constructor's contract
        // says it is in place and the memory is not being written.
        Some(unsafe { core::slice::from_raw_parts(self.info.phys_to_virt(phys) as *const u8, len) })
    }
}

/// Why the MADT could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP address (0).
    NoRsdp,
    /// The memory at an address could not be read.
    Unreadable(u64),
    /// The RSDP's signature or checksum is wrong.
    BadRsdp,
    /// A table's signature, length or checksum is wrong.
    BadTable([u8; 4]),
    /// No MADT in the RSDT/XSDT.
    NoMadt,
    /// An interrupt controller structure runs past the table's end or has a
    /// length too small for its type.
    BadEntry {
        /// Byte offset of the structure in the MADT.
        offset: usize,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRsdp => f.write_str("no RSDP"),
            Self::Unreadable(a) => write!(f, "cannot read memory at {a:#x}"),
            Self::BadRsdp => f.write_str("RSDP signature or checksum wrong"),
            Self::BadTable(sig) => write!(
                f,
                "table {:?}: bad signature, length or checksum",
                core::str::from_utf8(sig).unwrap_or("????")
            ),
            Self::NoMadt => f.write_str("no MADT (\"APIC\") table"),
            Self::BadEntry { offset } => write!(f, "MADT entry at offset {offset} malformed"),
        }
    }
}

/// Largest table this module reads (a sanity bound against corrupt lengths).
const MAX_TABLE_LEN: usize = 1 << 20;
const HEADER_LEN: usize = 36;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// A system description table at `phys`, checked: signature (if given),
/// length, checksum.
pub fn read_table<'m, M: PhysMemory>(
    mem: &'m M,
    phys: u64,
    signature: Option<&[u8; 4]>,
) -> Result<&'m [u8], AcpiError> {
    let head = mem
        .read(phys, HEADER_LEN)
        .ok_or(AcpiError::Unreadable(phys))?;
    let mut sig = [0u8; 4];
    sig.copy_from_slice(&head[..4]);
    if signature.is_some_and(|s| *s != sig) {
        return Err(AcpiError::BadTable(sig));
    }
    let len = u32_at(head, 4) as usize;
    if !(HEADER_LEN..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::BadTable(sig));
    }
    let table = mem.read(phys, len).ok_or(AcpiError::Unreadable(phys))?;
    if sum(table) != 0 {
        return Err(AcpiError::BadTable(sig));
    }
    Ok(table)
}

/// The physical addresses the root table lists (zeros skipped): the XSDT's
/// when the RSDP at `rsdp_phys` has one, else the RSDT's.
fn root_entries<M: PhysMemory>(
    mem: &M,
    rsdp_phys: u64,
) -> Result<impl Iterator<Item = u64> + '_, AcpiError> {
    if rsdp_phys == 0 {
        return Err(AcpiError::NoRsdp);
    }
    let rsdp = mem
        .read(rsdp_phys, 20)
        .ok_or(AcpiError::Unreadable(rsdp_phys))?;
    if &rsdp[..8] != b"RSD PTR " || sum(rsdp) != 0 {
        return Err(AcpiError::BadRsdp);
    }
    let revision = rsdp[15];
    let (root_phys, entry_size) = if revision >= 2 {
        let full = mem
            .read(rsdp_phys, 36)
            .ok_or(AcpiError::Unreadable(rsdp_phys))?;
        let len = u32_at(full, 20) as usize;
        let ext = mem
            .read(rsdp_phys, len.clamp(36, 4096))
            .ok_or(AcpiError::Unreadable(rsdp_phys))?;
        let xsdt = u64_at(full, 24);
        if len < 36 || sum(ext) != 0 {
            return Err(AcpiError::BadRsdp);
        }
        if xsdt != 0 {
            (xsdt, 8)
        } else {
            (u64::from(u32_at(rsdp, 16)), 4)
        }
    } else {
        (u64::from(u32_at(rsdp, 16)), 4)
    };
    let root_sig = if entry_size == 8 { b"XSDT" } else { b"RSDT" };
    let root = read_table(mem, root_phys, Some(root_sig))?;
    Ok(root[HEADER_LEN..]
        .chunks_exact(entry_size)
        .map(move |entry| {
            if entry_size == 8 {
                u64_at(entry, 0)
            } else {
                u64::from(u32_at(entry, 0))
            }
        })
        .filter(|&phys| phys != 0))
}

/// The physical address of the first table with `signature`, found through
/// the RSDP at `rsdp_phys` (the XSDT when the RSDP has one, else the RSDT).
pub fn find_table<M: PhysMemory>(
    mem: &M,
    rsdp_phys: u64,
    signature: &[u8; 4],
) -> Result<u64, AcpiError> {
    root_entries(mem, rsdp_phys)?
        .find(|&phys| mem.read(phys, 4) == Some(&signature[..]))
        .ok_or(AcpiError::NoMadt)
}

/// The addresses of the MADT, FADT, MCFG, SRAT, DMAR and IVRS listed in the
/// root table: the first well-formed table (signature, length, checksum) of
/// each signature, 0 where there is none. All zeros without a readable RSDP
/// and root table.
pub fn table_addresses<M: PhysMemory>(mem: &M, rsdp_phys: u64) -> AcpiTables {
    let mut found = AcpiTables::default();
    let Ok(entries) = root_entries(mem, rsdp_phys) else {
        return found;
    };
    for phys in entries {
        let Ok(table) = read_table(mem, phys, None) else {
            continue;
        };
        let slot = match &table[..4] {
            b"APIC" => &mut found.madt,
            b"FACP" => &mut found.fadt,
            b"MCFG" => &mut found.mcfg,
            b"SRAT" => &mut found.srat,
            b"DMAR" => &mut found.dmar,
            b"IVRS" => &mut found.ivrs,
            _ => continue,
        };
        if *slot == 0 {
            *slot = phys;
        }
    }
    found
}

/// A parsed MADT.
#[derive(Clone, Copy, Debug)]
pub struct Madt<'a> {
    table: &'a [u8],
}

/// MADT flag bit 0: the system also has dual 8259 PICs.
pub const MADT_PCAT_COMPAT: u32 = 1;

const LAPIC_ENABLED: u32 = 1 << 0;
const LAPIC_ONLINE_CAPABLE: u32 = 1 << 1;

impl<'a> Madt<'a> {
    /// The MADT in `table` (a checked table with signature "APIC"). Checks
    /// that every interrupt controller structure lies inside the table.
    pub fn parse(table: &'a [u8]) -> Result<Self, AcpiError> {
        if table.len() < 44 || &table[..4] != b"APIC" {
            return Err(AcpiError::BadTable(*b"APIC"));
        }
        let madt = Self { table };
        let mut offset = 44;
        while offset < table.len() {
            let (kind, len) = madt.entry_header(offset)?;
            let min = match kind {
                0 => 8,
                5 => 12,
                9 => 16,
                _ => 2,
            };
            if len < min {
                return Err(AcpiError::BadEntry { offset });
            }
            offset += len;
        }
        Ok(madt)
    }

    /// The MADT found through the RSDP.
    pub fn find<M: PhysMemory>(mem: &'a M, rsdp_phys: u64) -> Result<Self, AcpiError> {
        let phys = find_table(mem, rsdp_phys, b"APIC")?;
        Self::parse(read_table(mem, phys, Some(b"APIC"))?)
    }

    fn entry_header(&self, offset: usize) -> Result<(u8, usize), AcpiError> {
        let t = self.table;
        if offset + 2 > t.len() {
            return Err(AcpiError::BadEntry { offset });
        }
        let len = usize::from(t[offset + 1]);
        if len < 2 || offset + len > t.len() {
            return Err(AcpiError::BadEntry { offset });
        }
        Ok((t[offset], len))
    }

    /// The MADT's flags (bit 0: PC-AT compatible dual 8259s).
    pub fn flags(&self) -> u32 {
        u32_at(self.table, 40)
    }

    /// The local APIC's physical address: the 64-bit override (type 5) if
    /// there is one, else the 32-bit field of the header.
    pub fn local_apic_phys(&self) -> u64 {
        self.entries()
            .find(|&(kind, _)| kind == 5)
            .map(|(_, e)| u64_at(e, 4))
            .unwrap_or_else(|| u64::from(u32_at(self.table, 36)))
    }

    /// The interrupt controller structures: (type, bytes).
    pub fn entries(&self) -> impl Iterator<Item = (u8, &'a [u8])> + Clone + 'a {
        let t = self.table;
        let mut offset = 44;
        core::iter::from_fn(move || {
            // parse() checked every structure's bounds.
            let &kind = t.get(offset)?;
            let len = usize::from(*t.get(offset + 1)?);
            let entry = t.get(offset..offset + len)?;
            offset += len.max(2);
            Some((kind, entry))
        })
    }

    /// The processors (types 0 and 9), in MADT order. `bsp_apic_id` is the
    /// APIC ID of the CPU running this code; its entry gets [`CpuFlags::BSP`].
    pub fn cpus(&self, bsp_apic_id: Option<u32>) -> impl Iterator<Item = CpuEntry> + Clone + 'a {
        self.entries().filter_map(move |(kind, e)| {
            let (apic_id, acpi_uid, raw, x2) = match kind {
                0 => (u32::from(e[3]), u32::from(e[2]), u32_at(e, 4), false),
                9 => (u32_at(e, 4), u32_at(e, 12), u32_at(e, 8), true),
                _ => return None,
            };
            let flags = CpuFlags::EMPTY
                .with(CpuFlags::ENABLED, raw & LAPIC_ENABLED != 0)
                .with(
                    CpuFlags::ONLINE_CAPABLE,
                    raw & LAPIC_ENABLED == 0 && raw & LAPIC_ONLINE_CAPABLE != 0,
                )
                .with(CpuFlags::BSP, bsp_apic_id == Some(apic_id))
                .with(CpuFlags::X2APIC, x2);
            Some(CpuEntry {
                apic_id,
                acpi_uid,
                flags,
                reserved: 0,
            })
        })
    }

    /// Copies the processors into `out`; returns how many there are (which
    /// may exceed `out.len()`: the rest are not copied).
    pub fn cpus_into(&self, bsp_apic_id: Option<u32>, out: &mut [CpuEntry]) -> usize {
        let mut n = 0;
        for cpu in self.cpus(bsp_apic_id) {
            if let Some(slot) = out.get_mut(n) {
                *slot = cpu;
            }
            n += 1;
        }
        n
    }
}

impl CpuEntry {
    /// The processor can be used now or brought online later.
    pub fn usable(&self) -> bool {
        self.flags.contains(CpuFlags::ENABLED) || self.flags.contains(CpuFlags::ONLINE_CAPABLE)
    }
}

#[cfg(test)]
mod tests;
