//! The kernel entry point: [`entry_point!`](crate::entry_point).
//!
//! `entry_point!(path)` defines the ELF entry symbol `_start` (in the kernel
//! crate, with `global_asm!`) and an `extern "C"` shim. At `_start` the loader
//! guarantees: 64-bit long mode, interrupts off, RDI = virtual address of the
//! [`BootInfo`] block, RSP % 16 == 0 with no return address pushed, on a stack
//! with an unmapped guard page below. `_start`:
//!
//! 1. saves the entry RSP in RSI (second argument of the shim),
//! 2. clears RBP (ends frame-pointer backtraces) and the direction flag (the
//!    ABI requires DF = 0),
//! 3. `call`s the shim. The call pushes 8 bytes, so the shim starts with
//!    RSP % 16 == 8, exactly as the SysV ABI expects of any function.
//!
//! The shim records the entry RSP (see [`entry_rsp`]), checks the block
//! (magic, version, [`BootInfo::validate`]) and calls the kernel's function. If
//! the check fails it prints the reason on COM1 and calls
//! [`exit_qemu`](crate::exit_qemu)`(`[`EXIT_FAILURE`](crate::EXIT_FAILURE)`)`,
//! which halts forever outside QEMU.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::BootInfo;

static ENTRY_RSP: AtomicU64 = AtomicU64::new(0);

/// RSP at the first instruction of `_start` (0 before the entry point ran).
pub fn entry_rsp() -> u64 {
    ENTRY_RSP.load(Ordering::Relaxed)
}

/// The kernel function type that [`entry_point!`](crate::entry_point) accepts.
pub type KernelMain = fn(&'static BootInfo) -> !;

/// Called by the shim that [`entry_point!`](crate::entry_point) generates; not
/// for direct use.
///
/// # Safety
/// Only from `_start`, with `info` as the loader passed it in RDI.
#[doc(hidden)]
pub unsafe fn __enter(info: *const BootInfo, entry_rsp: u64, main: KernelMain) -> ! {
    ENTRY_RSP.store(entry_rsp, Ordering::Relaxed);
    if info.is_null() || !info.is_aligned() {
        fail(info, format_args!("pointer null or misaligned"));
    }
    // SAFETY: the loader passes the address of a mapped block that starts with a
    // header and is `size` bytes long; validate() reads only inside `size`.
    let info: &'static BootInfo = unsafe { &*info };
    if let Err(e) = info.validate() {
        fail(info, format_args!("{e}"));
    }
    main(info)
}

fn fail(info: *const BootInfo, why: core::fmt::Arguments<'_>) -> ! {
    use core::fmt::Write;
    let mut port = crate::serial::emergency_port();
    let _ = writeln!(port, "hvboot-api: invalid boot info at {info:p}: {why}");
    crate::exit_qemu(crate::EXIT_FAILURE)
}

/// Defines the kernel's entry point `_start`, which checks the boot
/// information and calls `path`, a `fn(&'static BootInfo) -> !`.
///
/// Use it once, in the kernel's binary crate:
///
/// ```ignore
/// #![no_std]
/// #![no_main]
/// use hvboot_api::{entry_point, BootInfo};
/// use hvboot_rt as _;
///
/// entry_point!(kernel_main);
///
/// fn kernel_main(info: &'static BootInfo) -> ! {
///     hvboot_api::serial_println!("hello from {}", info.loader_name());
///     hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
/// }
/// ```
///
/// See the [module documentation](crate::entry) for the entry sequence.
#[macro_export]
macro_rules! entry_point {
    ($path:path) => {
        #[doc(hidden)]
        extern "C" fn __hvboot_api_entry(info: *const $crate::BootInfo, entry_rsp: u64) -> ! {
            let main: $crate::entry::KernelMain = $path;
            // SAFETY: called only from `_start` below, with the loader's RDI.
            unsafe { $crate::entry::__enter(info, entry_rsp, main) }
        }

        ::core::arch::global_asm!(
            ".pushsection .text._start, \"ax\", @progbits",
            ".globl _start",
            ".type _start, @function",
            "_start:",
            "    mov rsi, rsp",
            "    xor ebp, ebp",
            "    cld",
            "    call {entry}",
            "    ud2",
            ".size _start, . - _start",
            ".popsection",
            entry = sym __hvboot_api_entry,
        );
    };
}
