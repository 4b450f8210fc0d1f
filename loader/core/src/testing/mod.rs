//! Helpers shared by the crate's host tests.
// Test-only helpers: their names and the builder's doc say what they are.
#![allow(missing_docs)]

pub mod elf;
pub mod limine;
pub mod multiboot2;
