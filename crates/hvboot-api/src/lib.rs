//! Kernel-side API of the hvboot boot protocol.
//!
//! - [`protocol`] (generated from `src/hvboot/protocol/layout.py`; re-exported at
//!   the crate root): the binary layout of the boot-information block.
//! - [`info`]: safe, bounds-checked access to a block ([`BootInfo::cmdline`],
//!   [`BootInfo::memory_map`], [`BootInfo::validate`], ...).
//! - [`builder`]: [`BootInfoBuilder`], which the loader uses to lay a block out.
//! - [`entry`]: [`entry_point!`], the kernel's ELF entry `_start`.
//! - [`request`]: [`request!`], the kernel's [`KernelRequest`] in the ELF
//!   section `.hvboot_request`.
//! - [`acpi`]: the CPU list from the ACPI MADT.
//! - [`cpu::virt`]: the virtualization report ([`VirtReport`]) from CPUID and MSRs.
//! - [`flags`]: set operations on the flag newtypes.
//! - [`serial`], [`qemu`], [`cpu`]: COM1 output, QEMU exit codes, CPU helpers.
//! - [`crc32`]: zlib's CRC-32 (module checks; GPT).
//!
//! The crate is `no_std` and has no dependencies. Its unit tests run on the host
//! (`cargo test`); the inline-assembly modules compile there but are not called.
//! How to set up a kernel crate: `docs/kernel-api.md`.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod acpi;
pub mod builder;
pub mod cpu;
pub mod crc32;
pub mod entry;
pub mod flags;
pub mod info;
pub mod protocol;
pub mod qemu;
pub mod request;
pub mod serial;
pub mod smp;

pub use builder::{BootInfoBuilder, BuildError, Plain};
pub use info::{Field, InfoError, PhysRange, RefError};
pub use protocol::*;
pub use qemu::{exit_qemu, EXIT_FAILURE, EXIT_SUCCESS};

/// Prints a panic report on COM1 and exits QEMU with [`EXIT_FAILURE`]; halts
/// forever when not running under QEMU. For a kernel's `#[panic_handler]`:
///
/// ```ignore
/// #[panic_handler]
/// fn panic(info: &core::panic::PanicInfo) -> ! {
///     hvboot_api::report_panic(info)
/// }
/// ```
pub fn report_panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let mut port = serial::emergency_port();
    let _ = writeln!(port, "\nkernel panic: {info}");
    exit_qemu(EXIT_FAILURE)
}
