//! The bootapi test kernel with the physical-memory mapping and the stack at fixed addresses
//! (tests/test_bootloader_api.py knows them: PHYS_OFFSET, STACK_ADDR).
#![no_std]
#![no_main]

#[path = "../report.rs"]
mod report;

use bootloader_api::config::Mapping;
use bootloader_api::{entry_point, BootInfo, BootloaderConfig};
use hvboot_rt as _;

const CONFIG: BootloaderConfig = {
    let mut c = BootloaderConfig::new_default();
    c.mappings.physical_memory = Some(Mapping::FixedAddress(0x0000_4000_0000_0000));
    c.mappings.kernel_stack = Mapping::FixedAddress(0x0000_7f00_0000_0000);
    c.kernel_stack_size = 64 * 1024;
    c
};

entry_point!(main, config = &CONFIG);

fn main(info: &'static mut BootInfo) -> ! {
    report::run(info)
}
