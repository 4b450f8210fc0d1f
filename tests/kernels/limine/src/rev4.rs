//! The Limine test kernel (`kernel.rs`) asking for base revision 4: the RSDP through the HHDM,
//! the ACPI tables in entries the HHDM maps.
#![no_std]
#![no_main]

/// The base revision the tag asks for.
const REVISION: u64 = 4;

include!("kernel.rs");
