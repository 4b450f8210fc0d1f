//! The Limine test kernel (`kernel.rs`) asking for base revision 3, the `limine` crate 0.5's
//! default.
#![no_std]
#![no_main]

/// The base revision the tag asks for.
const REVISION: u64 = 3;

include!("kernel.rs");
