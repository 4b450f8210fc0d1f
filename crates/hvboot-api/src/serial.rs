//! A polled 16550 UART driver for COM1 (I/O port 0x3F8), 115200 baud 8N1, and
//! the [`serial_print!`](crate::serial_print) / [`serial_println!`](crate::serial_println)
//! macros.
//!
//! Bytes go out exactly as given: `\n` is not turned into `\r\n`, so what a
//! test reads from QEMU's `-serial` file or pipe is byte for byte what the
//! kernel printed.
//!
//! The macros share one global port guarded by a spin lock, so lines printed
//! from several CPUs do not interleave. Code that may run while that lock is
//! held (a panic handler) should use [`emergency_port`] instead, as
//! [`report_panic`](crate::report_panic) does. Interrupts are not disabled
//! while printing; a kernel that prints from interrupt handlers must take care
//! of that itself.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu::{inb, outb};

/// The I/O base of COM1.
pub const COM1_BASE: u16 = 0x3F8;

// Register offsets from the base (DLAB = 0 unless noted).
const DATA: u16 = 0; // THR on write, RBR on read; DLL when DLAB = 1
const IER: u16 = 1; // interrupt enable; DLM when DLAB = 1
const FCR: u16 = 2; // FIFO control (write)
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status

const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
const LSR_THR_EMPTY: u8 = 0x20;

/// A 16550-compatible UART at an I/O base. The value holds no state besides
/// the base, so any number of them may exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialPort {
    base: u16,
}

impl SerialPort {
    /// COM1.
    pub const COM1: Self = Self { base: COM1_BASE };

    /// A UART at I/O base `base`.
    pub const fn new(base: u16) -> Self {
        Self { base }
    }

    /// Programs 115200 baud, 8 data bits, no parity, 1 stop bit, FIFOs on,
    /// interrupts off.
    pub fn init(&self) {
        // SAFETY: the standard 16550 programming sequence on the port's own registers.
        unsafe {
            outb(self.base + IER, 0x00); // no interrupts
            outb(self.base + LCR, LCR_DLAB); // divisor latch access
            outb(self.base + DATA, 0x01); // divisor 1 = 115200 baud, low byte
            outb(self.base + IER, 0x00); // high byte
            outb(self.base + LCR, LCR_8N1); // 8N1, DLAB off
            outb(self.base + FCR, 0xC7); // enable + clear FIFOs, 14-byte threshold
            outb(self.base + MCR, 0x03); // DTR + RTS
        }
    }

    /// Sends one byte, waiting until the transmit holding register is empty.
    /// (Without a UART the status port reads 0xFF, so this never hangs.)
    pub fn write_byte(&self, byte: u8) {
        // SAFETY: reading LSR and writing THR of the port.
        unsafe {
            while inb(self.base + LSR) & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            outb(self.base + DATA, byte);
        }
    }

    /// Sends bytes as they are.
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl fmt::Write for SerialPort {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

static INITIALISED: AtomicBool = AtomicBool::new(false);
static LOCKED: AtomicBool = AtomicBool::new(false);

/// Programs COM1 for the macros. Optional: the first print does it anyway.
pub fn init() {
    SerialPort::COM1.init();
    INITIALISED.store(true, Ordering::Release);
}

/// COM1 for a panic handler: bypasses the lock (the panic may have happened
/// while it was held) and programs the UART only if nobody has done so yet.
pub fn emergency_port() -> SerialPort {
    if !INITIALISED.load(Ordering::Acquire) {
        init();
    }
    SerialPort::COM1
}

/// Runs `f` with the global COM1 port, holding its lock and initialising it on
/// first use.
pub fn with_com1<R>(f: impl FnOnce(&mut SerialPort) -> R) -> R {
    while LOCKED
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    if !INITIALISED.load(Ordering::Acquire) {
        init();
    }
    let mut port = SerialPort::COM1;
    let r = f(&mut port);
    LOCKED.store(false, Ordering::Release);
    r
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    use fmt::Write;
    with_com1(|port| {
        let _ = port.write_fmt(args);
    });
}

/// Prints to COM1, like `print!`.
#[macro_export]
macro_rules! serial_print {
    ($($arg:tt)*) => {
        $crate::serial::_print(::core::format_args!($($arg)*))
    };
}

/// Prints to COM1 with a trailing `\n`, like `println!`.
#[macro_export]
macro_rules! serial_println {
    () => {
        $crate::serial::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::serial::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
