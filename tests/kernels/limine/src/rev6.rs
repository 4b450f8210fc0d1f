//! The Limine test kernel (`kernel.rs`) asking for base revision 6, the `limine` crate 0.6's
//! default: on x86-64 revision 5's entry state, SMBIOS and the EFI system table through the HHDM.
#![no_std]
#![no_main]

/// The base revision the tag asks for.
const REVISION: u64 = 6;

include!("kernel.rs");
