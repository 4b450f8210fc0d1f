//! Leaving QEMU with a status code through the `isa-debug-exit` device.
//!
//! QEMU must be started with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`
//! (or the default `iosize=0x01`): a value `v` written to port 0xf4 makes QEMU
//! exit with status `(v << 1) | 1`. So a guest can never produce status 0, and
//! the two codes here give 33 and 35, which no other QEMU exit produces.

/// The isa-debug-exit I/O port.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Success: QEMU exits with status `(0x10 << 1) | 1` = 33.
pub const EXIT_SUCCESS: u8 = 0x10;

/// Failure: QEMU exits with status `(0x11 << 1) | 1` = 35.
pub const EXIT_FAILURE: u8 = 0x11;

/// The QEMU process exit status that [`exit_qemu`]`(code)` produces.
pub const fn qemu_status(code: u8) -> i32 {
    ((code as i32) << 1) | 1
}

/// Exits QEMU with status `(code << 1) | 1`. If no isa-debug-exit device is
/// present (real hardware, or QEMU without it), disables interrupts and halts
/// forever.
pub fn exit_qemu(code: u8) -> ! {
    // A one-byte write works with iosize 1 and 4 alike.
    // SAFETY: port 0xf4 is the debug-exit device under QEMU and unused on PCs.
    unsafe { crate::cpu::outb(DEBUG_EXIT_PORT, code) };
    crate::cpu::hlt_loop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(qemu_status(EXIT_SUCCESS), 33);
        assert_eq!(qemu_status(EXIT_FAILURE), 35);
    }
}
