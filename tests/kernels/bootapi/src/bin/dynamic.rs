//! The bootapi test kernel with the physical-memory mapping and the stack where the loader
//! likes (`Mapping::Dynamic`), and a 96 KiB stack.
#![no_std]
#![no_main]

#[path = "../report.rs"]
mod report;

use bootloader_api::config::Mapping;
use bootloader_api::{entry_point, BootInfo, BootloaderConfig};
use hvboot_rt as _;

const CONFIG: BootloaderConfig = {
    let mut c = BootloaderConfig::new_default();
    c.mappings.physical_memory = Some(Mapping::Dynamic);
    c.kernel_stack_size = 96 * 1024;
    c
};

entry_point!(main, config = &CONFIG);

fn main(info: &'static mut BootInfo) -> ! {
    report::run(info)
}
