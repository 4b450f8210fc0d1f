//! hvboot's sample hypervisor kernel.
//!
//! It reports what the loader handed over (loader, firmware, command line,
//! memory map, modules, framebuffer, ACPI), what the CPU offers a hypervisor
//! (hvboot-api's `cpu::virt` report) and the processors the ACPI MADT lists;
//! then, on an AMD CPU with SVM and nested paging, it starts every AP the
//! loader parked and runs a small 64-bit guest with VMRUN on every CPU
//! ([`smp`], [`guest`], [`svm`]) and checks what each guest computed. It ends
//! with `hvboot-sample-hypervisor: OK` and `EXIT_SUCCESS` (QEMU status 33) when
//! everything it attempted worked, `FAILED` and `EXIT_FAILURE` otherwise. On a
//! CPU without SVM+NPT it says why it does not run the guest.
//!
//! Layout: `main.rs` is the boot sequence, [`report`] prints the boot
//! information, [`cpus`] the virtualization report and the CPU list,
//! [`frames`] hands out physical memory, [`reservation`] is the seam for the
//! loader's guest reservation, [`smp`] runs the guest on every CPU, [`svm`] is the VMCB / nested paging / VMRUN
//! layer, [`guest`] the guest and its exit handling, [`fb`] draws.
#![no_std]
#![no_main]

mod cpus;
mod fb;
mod frames;
mod guest;
mod report;
mod reservation;
mod smp;
mod svm;

use hvboot_api::{entry_point, serial_println, BootInfo, KernelRequest, VirtFlags, VirtReport};
use hvboot_rt as _;

entry_point!(kernel_main);

// What this kernel asks of the loader: every AP started and parked (64 KiB
// stacks), and memory for one guest per CPU (a share of `CPU_SHARE` bytes for
// each of up to `smp::MAX_CPUS` CPUs, 2 MiB aligned, below 4 GiB). Without a
// reservation the guests' memory comes from USABLE regions (reservation.rs).
hvboot_api::request!(KernelRequest::new()
    .start_aps(smp::AP_STACK)
    .guest_memory(guest::CPU_SHARE * smp::MAX_CPUS as u64, 2 * 1024 * 1024)
    .guest_below(1 << 32));

fn kernel_main(info: &'static BootInfo) -> ! {
    hvboot_api::serial::init();
    serial_println!();
    serial_println!("hvboot-sample-hypervisor {}", env!("CARGO_PKG_VERSION"));
    report::boot_info(info);

    match info.request_version() {
        Some(v) => serial_println!("request:     the loader honoured our request (version {v})"),
        None => serial_println!("request:     the loader did not report honouring our request"),
    }
    let cpu = cpus::virt_report(info);
    let cpus_ok = cpus::cpu_list(info);
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
    if !(guest_ok && cpus_ok) {
        serial_println!("hvboot-sample-hypervisor: FAILED");
        hvboot_api::exit_qemu(hvboot_api::EXIT_FAILURE)
    }
    serial_println!("hvboot-sample-hypervisor: OK");
    hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
}

/// Runs the sample guest if the CPU can (SVM with nested paging); says why not
/// otherwise. False only when a run was attempted and failed.
fn run_guest(info: &'static BootInfo, cpu: &VirtReport, frames: &mut frames::Frames<'_>) -> bool {
    if !cpu.flags.contains(VirtFlags::SVM) {
        if cpu.flags.contains(VirtFlags::VMX) {
            serial_println!(
                "guest: not run: Intel VMX is present but this sample drives AMD SVM only"
            );
        } else {
            serial_println!("guest: not run: no SVM (CPUID 80000001h:ECX[2] = 0) and VMX absent (CPUID 1:ECX[5] = 0)");
        }
        return true;
    }
    if cpu.svm_disabled_by_firmware() {
        serial_println!("guest: not run: SVM is disabled by firmware (VM_CR.SVMDIS = 1)");
        return true;
    }
    if !cpu.flags.contains(VirtFlags::NPT) {
        serial_println!("guest: not run: SVM without nested paging (CPUID 8000000Ah:EDX[0] = 0); this sample needs NPT");
        return true;
    }
    let ok = smp::run_everywhere(info, frames);
    if ok {
        serial_println!("guest: ran under SVM with nested paging on every CPU");
    }
    ok
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hvboot_api::report_panic(info)
}
