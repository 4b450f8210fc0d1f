//! hvboot's sample hypervisor kernel.
//!
//! For now it only reports: what the loader handed over (loader, firmware,
//! command line, memory map, modules, framebuffer, ACPI) and what the CPU
//! offers a hypervisor (see [`virt`]), then draws a test pattern into the
//! framebuffer, prints `hvboot-sample-hypervisor: OK` and exits QEMU with
//! `EXIT_SUCCESS` (status 33).
//!
//! Layout: `main.rs` is the boot sequence, [`report`] prints the boot
//! information, [`virt`] detects virtualization support, [`fb`] draws. Running
//! a guest will add an `svm` module (VMCB, nested page tables, VMRUN loop)
//! that starts from [`virt::VirtSupport`].
#![no_std]
#![no_main]

mod fb;
mod report;
mod virt;

use hvboot_api::{entry_point, serial_println, BootInfo};
use hvboot_rt as _;

entry_point!(kernel_main);

fn kernel_main(info: &'static BootInfo) -> ! {
    hvboot_api::serial::init();
    serial_println!();
    serial_println!("hvboot-sample-hypervisor {}", env!("CARGO_PKG_VERSION"));
    report::boot_info(info);

    let cpu = virt::VirtSupport::detect();
    cpu.print();

    match info.framebuffer() {
        Some(framebuffer) => match fb::draw_test_pattern(info, framebuffer) {
            Ok(()) => serial_println!("framebuffer: drew a test pattern"),
            Err(why) => serial_println!("framebuffer: not drawn: {why}"),
        },
        None => serial_println!("framebuffer: none"),
    }

    let ticks = info.tsc_handoff.wrapping_sub(info.tsc_loader_start);
    serial_println!("boot time: {ticks} TSC ticks (loader start to kernel entry)");
    serial_println!("hvboot-sample-hypervisor: OK");
    hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hvboot_api::report_panic(info)
}
