//! Helpers shared by the crate's host tests.
// Test-only helpers: their names and the builder's doc say what they are.
#![allow(missing_docs)]

pub mod elf;
pub mod limine;
pub mod linux;
pub mod multiboot2;

/// xorshift64 from `state`: the seeded mutators' deterministic generator.
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
