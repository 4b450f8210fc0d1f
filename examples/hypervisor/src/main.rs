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
mod frames;
mod guest;
mod report;
mod reservation;
mod svm;
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
    let mut frames = frames::Frames::new(info);
    let guest_ok = run_guest(info, &cpu, &mut frames);

    match info.framebuffer() {
        Some(framebuffer) => match fb::draw_test_pattern(info, framebuffer) {
            Ok(()) => serial_println!("framebuffer: drew a test pattern"),
            Err(why) => serial_println!("framebuffer: not drawn: {why}"),
        },
        None => serial_println!("framebuffer: none"),
    }

    let ticks = info.tsc_handoff.wrapping_sub(info.tsc_loader_start);
    serial_println!("boot time: {ticks} TSC ticks (loader start to kernel entry)");
    if !guest_ok {
        serial_println!("hvboot-sample-hypervisor: FAILED");
        hvboot_api::exit_qemu(hvboot_api::EXIT_FAILURE)
    }
    serial_println!("hvboot-sample-hypervisor: OK");
    hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
}

/// Runs the sample guest if the CPU can (SVM with nested paging); says why not
/// otherwise. False only when a run was attempted and failed.
fn run_guest(info: &BootInfo, cpu: &virt::VirtSupport, frames: &mut frames::Frames<'_>) -> bool {
    if !cpu.svm {
        if cpu.vmx {
            serial_println!(
                "guest: not run: Intel VMX is present but this sample drives AMD SVM only"
            );
        } else {
            serial_println!("guest: not run: no SVM (CPUID 80000001h:ECX[2] = 0) and VMX absent (CPUID 1:ECX[5] = 0)");
        }
        return true;
    }
    if !cpu.npt {
        serial_println!("guest: not run: SVM without nested paging (CPUID 8000000Ah:EDX[0] = 0); this sample needs NPT");
        return true;
    }
    match guest::run(info, frames) {
        Ok(_) => {
            serial_println!("guest: ran under SVM with nested paging");
            true
        }
        Err(e) => {
            serial_println!("guest: FAILED: {e}");
            false
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hvboot_api::report_panic(info)
}
