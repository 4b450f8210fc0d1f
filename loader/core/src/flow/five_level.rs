//! 5-level paging for a kernel that asks for it (a Limine kernel's Paging Mode request) on a CPU
//! with LA57 (Intel SDM Vol. 3A §5.5, "4-level paging and 5-level paging"): the 4-level tables
//! the address-space phase built become the two halves of a PML5, and a second PML5 lets the
//! hand-off turn LA57 on under the loader's own tables (`crate::handoff`).
//!
//! A canonical 48-bit address keeps its translation: bits 56:48 are all 0 (the lower half,
//! PML5 entry 0) or all 1 (the higher half, entry 511), and bits 47:0 index the same PML4.
//! The PML4 is split so that no 57-bit address aliases the other half: entry 0 gets the PML4's
//! lower 256 entries, entry 511 a copy holding its upper 256.

use x86_64::structures::paging::FrameAllocator;

use super::Platform;
use crate::paging::BumpFrames;

/// Present | writable: a table entry's flags (SDM Vol. 3A §5.5.5, Table 5-15).
const TABLE: u64 = 0b11;
/// Where in the switch page the GDT copy lies ([`SwitchPage`]).
pub const SWITCH_GDT_OFFSET: u64 = 0x800;

/// The tables made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiveLevel {
    /// The kernel's PML5 (physical): CR3.
    pub pml5: u64,
    /// The switch page (physical, below 4 GiB): a PML5 whose entry 0 the hand-off points at the
    /// loader's PML4 of the moment, with a copy of the protocol's GDT at [`SWITCH_GDT_OFFSET`]
    /// that is reachable while paging is off.
    pub switch: u64,
}

/// Whether the CPU has LA57: CPUID.(EAX=07H,ECX=0):ECX[16] (SDM Vol. 2A, CPUID).
pub fn has_la57(cpu: &impl super::cpu::Cpu) -> bool {
    cpu.cpuid(0, 0)[0] >= 7 && cpu.cpuid(7, 0)[2] & (1 << 16) != 0
}

/// Builds the PML5 over `pml4` and the switch page (with `gdt` in it) from `frames`, which
/// come zeroed (the pool is allocated zeroed and each frame handed out once); `None` when the
/// pool has no three frames left.
pub fn build<P: Platform>(
    p: &mut P,
    frames: &mut BumpFrames,
    pml4: u64,
    gdt: &[u64],
) -> Option<FiveLevel> {
    let mut frame = || frames.allocate_frame().map(|f| f.start_address().as_u64());
    let (pml5, high, switch) = (frame()?, frame()?, frame()?);
    let table = |phys: u64| phys.wrapping_add(p.phys_offset()) as *mut u64;
    // SAFETY: the PML4 and the three frames are page-table pages of the pool (512 entries
    // each), reached through the platform's view of physical memory.
    unsafe {
        let (low, upper, top, s) = (table(pml4), table(high), table(pml5), table(switch));
        core::ptr::copy_nonoverlapping(low.add(256), upper.add(256), 256);
        core::ptr::write_bytes(low.add(256), 0, 256);
        top.write(pml4 | TABLE);
        top.add(511).write(high | TABLE);
        let at = s.add(SWITCH_GDT_OFFSET as usize / 8);
        core::ptr::copy_nonoverlapping(gdt.as_ptr(), at, gdt.len().min(256));
    }
    Some(FiveLevel { pml5, switch })
}
