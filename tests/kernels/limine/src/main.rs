//! A kernel written for the Limine protocol with the crates.io `limine` crate, as a user's
//! would be: a base-revision tag (revision 3, the crate's default) and requests between the
//! start and end markers. `hvboot build` and `hvboot inspect` must name them
//! (tests/test_limine.py); on entry it checks that the base revision was answered and that
//! the HHDM and memory-map responses are there, prints what it got on COM1 and exits through
//! isa-debug-exit (0x10 success, 0x11 failure).
#![no_std]
#![no_main]

use hvboot_api::{exit_qemu, serial_println, EXIT_FAILURE, EXIT_SUCCESS};
use hvboot_rt as _;
use limine::request::{
    RequestsEndMarker, RequestsStartMarker,
    BootloaderInfoRequest, ExecutableCmdlineRequest, FirmwareTypeRequest, HhdmRequest,
    MemoryMapRequest, RsdpRequest, StackSizeRequest,
};
use limine::BaseRevision;

/// The requests, delimited by the markers, in one block so the order is the declaration's.
#[repr(C)]
struct Requests {
    start: RequestsStartMarker,
    base: BaseRevision,
    info: BootloaderInfoRequest,
    firmware: FirmwareTypeRequest,
    cmdline: ExecutableCmdlineRequest,
    stack: StackSizeRequest,
    hhdm: HhdmRequest,
    memmap: MemoryMapRequest,
    rsdp: RsdpRequest,
    end: RequestsEndMarker,
}

#[used]
#[link_section = ".data.limine_requests"]
static REQUESTS: Requests = Requests {
    start: RequestsStartMarker::new(),
    base: BaseRevision::new(),
    info: BootloaderInfoRequest::new(),
    firmware: FirmwareTypeRequest::new(),
    cmdline: ExecutableCmdlineRequest::new(),
    stack: StackSizeRequest::new().with_size(128 * 1024),
    hhdm: HhdmRequest::new(),
    memmap: MemoryMapRequest::new(),
    rsdp: RsdpRequest::new(),
    end: RequestsEndMarker::new(),
};

#[no_mangle]
extern "C" fn _start() -> ! {
    hvboot_api::serial::init();
    let r = &REQUESTS;
    if !r.base.is_supported() {
        serial_println!("LIMINE base revision 3 not answered");
        exit_qemu(EXIT_FAILURE);
    }
    let (Some(hhdm), Some(map)) = (r.hhdm.get_response(), r.memmap.get_response()) else {
        serial_println!("LIMINE no HHDM or memory map response");
        exit_qemu(EXIT_FAILURE);
    };
    serial_println!(
        "LIMINE hhdm={:#x} memmap_entries={}",
        hhdm.offset(),
        map.entries().len()
    );
    exit_qemu(EXIT_SUCCESS);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial_println!("LIMINE panic: {info}");
    exit_qemu(EXIT_FAILURE);
}
