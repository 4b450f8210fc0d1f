//! Where the BIOS loader's words go: COM1 always; errors also on the screen through INT 10h
//! teletype output while the display is still in text mode (before the VBE mode is set).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use hvboot_api::serial::SerialPort;
use hvboot_loader_core::flow::ConsoleLogger;

use crate::thunk::{self, Regs};

static TEXT_MODE: AtomicBool = AtomicBool::new(true);
static BIOS_GONE: AtomicBool = AtomicBool::new(false);

/// Progress lines (the `log` facade) go to COM1 only.
static LOGGER: ConsoleLogger = ConsoleLogger { write: serial };

pub fn init() {
    SerialPort::COM1.init();
    LOGGER.install();
}

/// The display left text mode (a VBE graphics mode is set).
pub fn graphics_mode_set() {
    TEXT_MODE.store(false, Ordering::SeqCst);
}

/// No more BIOS calls (the loader is handing over).
pub fn bios_gone() {
    BIOS_GONE.store(true, Ordering::SeqCst);
}

pub fn serial(args: fmt::Arguments<'_>) {
    let _ = { SerialPort::COM1 }.write_fmt(args);
}

struct Screen;

impl Write for Screen {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let b = if c.is_ascii() { c as u8 } else { b'?' };
            let mut r = Regs {
                eax: 0x0E00 | b as u32,
                ebx: 0x0007,
                ..Regs::default()
            };
            thunk::int(0x10, &mut r);
        }
        Ok(())
    }
}

pub fn screen(args: fmt::Arguments<'_>) {
    if TEXT_MODE.load(Ordering::SeqCst) && !BIOS_GONE.load(Ordering::SeqCst) {
        let _ = Screen.write_fmt(args);
    }
}

/// Print the reason on serial and screen, then halt for good (hvboot_loader_core::flow::fail).
pub fn fail(args: fmt::Arguments<'_>) -> ! {
    hvboot_loader_core::flow::fail(serial, screen, args)
}
