//! Boot protocols: how the kernel is told what the loader did. The flow (`crate::flow`) is the
//! same for every protocol up to the hand-off; a [`Protocol`] sizes its information before the
//! firmware is left, writes it once the final memory map is known, and says with which register
//! state the kernel is entered.
//!
//! - [`hvboot`]: hvboot's own `BootInfo` (docs/protocol.md), RDI = the block.
//! - [`multiboot2`]: the Multiboot2 information (docs/multiboot2.md), 32-bit entry, EBX = it.
//! - [`linux`]: Linux's boot_params (docs/linux.md), 64-bit entry, RSI = it.
//! - [`limine`]: Limine's responses written into the kernel's requests (docs/limine.md).
//! - [`bootloader_api`]: rust-osdev's `BootInfo` (docs/bootloader-api.md), RDI = it.
//!
//! Each brings its kernel kind (`elf::KernelKind`, `flow::inputs::KernelImage`) with it.

pub mod bootloader_api;
pub mod hvboot;
pub mod limine;
pub mod linux;
pub mod multiboot2;

use hvboot_api::FirmwareMemoryEntry;

use crate::flow::hand_off::Leave;
use crate::flow::{Boot, Error, Placement};
use crate::handoff::Handoff;
use crate::memmap;

/// The information block's pages and what the firmware left behind.
pub struct Info<'a> {
    /// The block (physical), `bytes.len()` long, zeroed, of memory kind `BOOT_INFO`.
    pub phys: u64,
    /// The block as the loader reaches it.
    pub bytes: &'a mut [u8],
    /// The final memory map: normalized, protocol kinds, the loader's allocations included.
    pub map: &'a [memmap::Region],
    /// The firmware's own final map, untranslated (may be empty).
    pub firmware_map: &'a [FirmwareMemoryEntry],
}

/// Bytes of the config's strings as a protocol stores them: the command line and each
/// module's name and command line, each with room for a terminator or separator.
pub fn config_string_bytes(cfg: &crate::config::LoaderConfig) -> usize {
    cfg.cmdline.len()
        + cfg
            .modules
            .iter()
            .map(|m| m.name.len() + m.cmdline.len() + 2)
            .sum::<usize>()
}

/// One boot protocol's hand-off.
pub trait Protocol {
    /// Before leaving the firmware: the bytes the information block needs for `boot`, with
    /// room for a final map of `boot.firmware.map_entries` entries. Reserves every buffer
    /// [`Protocol::write`] needs: nothing may allocate once the firmware is gone.
    fn prepare(&mut self, boot: &Boot) -> u64;

    /// Where the information block may go (a 32-bit protocol needs it below 4 GiB).
    fn placement(&self) -> Placement {
        Placement::Anywhere
    }

    /// Whether the firmware is left before [`Protocol::write`] (the default) or its boot
    /// services kept for the kernel.
    fn leave(&self) -> Leave {
        Leave::Exit
    }

    /// After leaving the firmware: writes the information into `info` and returns the hand-off
    /// (CR3, stack, entry, the register that points at the information, GDT).
    fn write(&mut self, boot: &Boot, info: Info<'_>) -> Result<Handoff, Error>;
}
