//! Where the loader's words go: COM1 always, and the firmware's console (the screen) for errors
//! while boot services last. Progress goes to COM1 only: OVMF mirrors its console onto the same
//! serial port, so writing progress to both would print every line twice there.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use hvboot_api::serial::SerialPort;
use hvboot_loader_core::flow::ConsoleLogger;

static BOOT_SERVICES: AtomicBool = AtomicBool::new(true);

/// Progress lines (the `log` facade) go to COM1 only.
static LOGGER: ConsoleLogger = ConsoleLogger { write: serial };

pub fn init() {
    SerialPort::COM1.init();
    LOGGER.install();
}

/// Called just before ExitBootServices: the firmware console is gone after it.
pub fn boot_services_ending() {
    BOOT_SERVICES.store(false, Ordering::SeqCst);
}

pub fn serial(args: fmt::Arguments<'_>) {
    let _ = { SerialPort::COM1 }.write_fmt(args);
}

pub fn screen(args: fmt::Arguments<'_>) {
    if BOOT_SERVICES.load(Ordering::SeqCst) {
        uefi::system::with_stdout(|out| {
            let _ = out.write_fmt(args);
        });
    }
}

/// Print the reason on serial and screen, then halt for good (hvboot_loader_core::flow::fail).
pub fn fail(args: fmt::Arguments<'_>) -> ! {
    hvboot_loader_core::flow::fail(serial, screen, args)
}
