//! Any bytes as an ACPI DMAR (first byte even) or IVRS (odd) table, the rest of the input:
//! `iommu::units` never panics, always ends, and yields at most one unit per 16 bytes past the
//! 48-byte header (a DRHD or IVHD is at least that long).
#![no_main]

use hvboot_loader_core::iommu::{units, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, table)) = data.split_first() else {
        return;
    };
    let kind = if pick & 1 == 0 {
        Kind::VtD
    } else {
        Kind::AmdVi
    };
    let n = units(kind, table).count();
    assert!(n <= table.len().saturating_sub(48) / 16);
});
