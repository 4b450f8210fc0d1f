//! Ends the way its command line asks, so tests can check what `hvboot test` makes of each
//! ending: `outcome=success`, `outcome=failure`, `outcome=exit:N` (isa-debug-exit value N),
//! `outcome=triple` (a triple fault), `outcome=hang` (halts forever), `outcome=panic`.

#![no_std]
#![no_main]

use hvboot_api::{entry_point, exit_qemu, serial_println, BootInfo, EXIT_FAILURE, EXIT_SUCCESS};
use hvboot_rt as _;

entry_point!(kernel_main);

fn kernel_main(info: &'static BootInfo) -> ! {
    let outcome = info
        .cmdline()
        .split(' ')
        .find_map(|w| w.strip_prefix("outcome="))
        .unwrap_or("success");
    serial_println!("outcome kernel: {outcome}");
    match outcome {
        "success" => exit_qemu(EXIT_SUCCESS),
        "failure" => exit_qemu(EXIT_FAILURE),
        "triple" => triple_fault(),
        "panic" => panic!("asked to panic"),
        "hang" => hvboot_api::cpu::hlt_loop(),
        other => match other.strip_prefix("exit:").and_then(|n| n.parse::<u8>().ok()) {
            Some(code) => exit_qemu(code),
            None => panic!("unknown outcome {other:?}"),
        },
    }
}

/// Load an empty IDT and raise an exception: no handler -> double fault -> triple fault.
fn triple_fault() -> ! {
    let idt = [0u16; 5];
    // SAFETY: deliberately resets the machine.
    unsafe { core::arch::asm!("lidt [{}]", "int3", in(reg) idt.as_ptr(), options(noreturn)) }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hvboot_api::report_panic(info)
}
