//! hvboot's UEFI application (\EFI\BOOT\BOOTX64.EFI).
//!
//! The boot flow itself is shared with the BIOS loader (`hvboot_loader_core::boot`); this crate
//! is the UEFI platform layer under it: files through the core's FAT reader over Block I/O (the
//! Simple File System protocol as a fallback, `files.rs`), pages from AllocatePages, GOP, the
//! configuration tables, GetMemoryMap and ExitBootServices.
//! Any failure prints its reason on serial and screen and halts: the loader never jumps into a
//! kernel it could not fully load.

#![no_std]
#![no_main]

extern crate alloc;
extern crate hvboot_rt;

mod console;
mod files;
mod firmware;
mod memory;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hvboot_api::{FirmwareKind, FirmwareMemoryEntry, Framebuffer, MemoryKind};
use hvboot_loader_core::boot::{self as flow, FirmwareTables, Placement, Platform};
use hvboot_loader_core::heap::BumpHeap;
use hvboot_loader_core::memmap;
use uefi::boot;
use uefi::mem::memory_map::{MemoryMap, MemoryMapOwned};
use uefi::prelude::*;
use uefi::proto::loaded_image::LoadedImage;

use memory::PAGE;

const HEAP_SIZE: u64 = 4 << 20;

#[global_allocator]
static HEAP: BumpHeap = BumpHeap::empty();

#[entry]
fn main() -> Status {
    let tsc_start = flow::rdtsc();
    console::init();
    match memory::allocate(MemoryKind::LOADER_RECLAIMABLE.0, HEAP_SIZE, None) {
        // SAFETY: the arena is ours for the loader's whole life.
        Ok(base) => unsafe { HEAP.init(base as usize, HEAP_SIZE as usize) },
        Err(e) => console::fail(format_args!("cannot allocate the loader heap: {e}")),
    }
    // The image base lets `hvboot debug --loader` place the loader's symbols (docs/debugging.md).
    say!(
        "{} {} (UEFI) starting, image base {:#x}",
        hvboot_loader_core::LOADER_NAME,
        hvboot_loader_core::LOADER_VERSION,
        image_base()
    );
    let mut platform = match Uefi::new() {
        Ok(p) => p,
        Err(e) => console::fail(format_args!("{e}")),
    };
    match flow::boot(&mut platform, tsc_start) {
        Ok(never) => match never {},
        Err(e) => console::fail(format_args!("{e}")),
    }
}

/// Where the firmware loaded this application (EFI_LOADED_IMAGE_PROTOCOL.ImageBase), 0 if unknown.
fn image_base() -> u64 {
    boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle())
        .map_or(0, |image| image.info().0 as u64)
}

struct Uefi {
    volume: files::Volume,
    /// The map whose key exited boot services (for the kernel's raw firmware map).
    final_map: Option<MemoryMapOwned>,
}

impl Uefi {
    fn new() -> Result<Self, String> {
        let (volume, how) = files::Volume::boot_volume()?;
        say!("{how}");
        Ok(Self {
            volume,
            final_map: None,
        })
    }
}

impl Platform for Uefi {
    const FIRMWARE: FirmwareKind = FirmwareKind::UEFI;

    fn allocate(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, String> {
        match at {
            Placement::Anywhere => memory::allocate(kind, bytes, None),
            Placement::Below(max) => memory::allocate(kind, bytes, Some(max)),
            Placement::At(phys) => memory::allocate_at(kind, phys, bytes),
            Placement::Aligned(align) => memory::allocate_aligned(kind, bytes, align),
            Placement::AlignedBelow { align, max } => {
                let start = memory::allocate_aligned_below(kind, bytes, align, Some(max))?;
                // SAFETY: freshly allocated, identity-mapped pages.
                unsafe {
                    core::ptr::write_bytes(
                        start as *mut u8,
                        0,
                        memory::pages(bytes) * PAGE as usize,
                    )
                };
                Ok(start)
            }
        }
    }

    fn allocate_untouched(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, String> {
        match at {
            Placement::At(phys) => memory::allocate_at_untouched(kind, phys, bytes),
            Placement::Anywhere => memory::allocate_aligned_below(kind, bytes, PAGE, None),
            Placement::Below(max) => memory::allocate_aligned_below(kind, bytes, PAGE, Some(max)),
            Placement::Aligned(align) => memory::allocate_aligned_below(kind, bytes, align, None),
            Placement::AlignedBelow { align, max } => {
                memory::allocate_aligned_below(kind, bytes, align, Some(max))
            }
        }
    }

    fn allocate_low_page(&mut self, kind: u32) -> Result<u64, String> {
        memory::allocate_low_page(kind)
    }

    fn framebuffer_sized(&mut self, width: u32, height: u32) -> Option<Framebuffer> {
        firmware::set_mode_at_least(width, height);
        firmware::framebuffer()
    }

    fn firmware_map(&mut self, out: &mut Vec<FirmwareMemoryEntry>) {
        let Some(map) = &self.final_map else { return };
        for d in map.entries() {
            if out.len() == out.capacity() {
                break; // never allocate: the firmware is gone
            }
            out.push(FirmwareMemoryEntry {
                base: d.phys_start,
                length: d.page_count * PAGE,
                firmware_type: d.ty.0,
                reserved: 0,
                attributes: d.att.bits(),
            });
        }
    }

    fn read_file(&mut self, path: &str, kind: u32, limit: u64) -> Result<(u64, u64), String> {
        self.volume.read_to_pages(path, kind, limit)
    }

    fn tables(&mut self) -> FirmwareTables {
        firmware::tables()
    }

    fn framebuffer(&mut self) -> Option<Framebuffer> {
        firmware::framebuffer()
    }

    fn memory_extent(&mut self) -> Result<(u64, usize), String> {
        let map = boot::memory_map(boot::MemoryType::LOADER_DATA)
            .map_err(|e| format!("cannot read the memory map: {:?}", e.status()))?;
        let top = map
            .entries()
            .map(|d| d.phys_start + d.page_count * PAGE)
            .max()
            .unwrap_or(0);
        Ok((top, map.len()))
    }

    fn exit_firmware(&mut self, regions: &mut Vec<memmap::Region>) {
        console::boot_services_ending();
        // SAFETY: nothing of the firmware's boot services is used after this point.
        let final_map = unsafe { boot::exit_boot_services(None) };
        for d in final_map.entries() {
            regions.push(memmap::Region {
                base: d.phys_start,
                length: d.page_count * PAGE,
                kind: memmap::efi_type_to_kind(d.ty.0),
            });
        }
        self.final_map = Some(final_map);
    }

    fn print(&mut self, args: fmt::Arguments<'_>) {
        console::serial(args);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::fail(format_args!("loader panic: {info}"))
}
