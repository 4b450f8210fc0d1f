//! hvboot's UEFI application (\EFI\BOOT\BOOTX64.EFI).
//!
//! The boot flow itself is shared with the BIOS loader (`hvboot_loader_core::flow`); this crate
//! is the UEFI platform layer under it: files through the core's FAT reader over Block I/O (the
//! Simple File System protocol as a fallback, `files.rs`; TFTP when booted from the network,
//! `net.rs`), pages from AllocatePages, GOP, the
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
mod net;
mod tpm;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hvboot_api::{FirmwareKind, FirmwareMemoryEntry, Framebuffer, MemoryKind};
use hvboot_loader_core::flow::{
    self, Cpu, FirmwareTables, Machine, Placement, Platform, PlatformError,
};
use hvboot_loader_core::heap::BumpHeap;
use hvboot_loader_core::{handoff, memmap};
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
    // SAFETY: UEFI runs applications in ring 0 (UEFI 2.10 §2.3.4).
    let cpu = unsafe { Machine::new() };
    let tsc_start = cpu.rdtsc();
    console::init();
    match memory::allocate(MemoryKind::LOADER_RECLAIMABLE.0, HEAP_SIZE, None) {
        // SAFETY: the arena, and every one grow_heap adds, is ours for the loader's whole life.
        Ok(base) => unsafe { HEAP.init(base as usize, HEAP_SIZE as usize, Some(grow_heap)) },
        Err(e) => console::fail(format_args!("cannot allocate the loader heap: {e}")),
    }
    // The image base lets `hvboot debug --loader` place the loader's symbols (docs/debugging.md).
    log::info!(
        "{} {} (UEFI) starting, image base {:#x}",
        hvboot_loader_core::LOADER_NAME,
        hvboot_loader_core::LOADER_VERSION,
        image_base()
    );
    let mut platform = match Uefi::new() {
        Ok(p) => p,
        Err(e) => console::fail(format_args!("{e}")),
    };
    match flow::boot(&mut platform, &cpu, tsc_start) {
        // SAFETY: the flow's tables map the hand-off code, the stack, the GDT and TSS (direct
        // map) and the kernel.
        Ok(plan) => unsafe { handoff::jump(&plan) },
        Err(e) => console::fail(format_args!("{e}")),
    }
}

/// More heap while boot services last: another arena of at least `min` bytes (4 MiB at least).
/// The heap stops growing before ExitBootServices.
fn grow_heap(min: usize) -> Option<(usize, usize)> {
    let size = (min as u64).next_multiple_of(PAGE).max(HEAP_SIZE);
    let base = memory::allocate_untouched(MemoryKind::LOADER_RECLAIMABLE.0, size).ok()?;
    Some((base as usize, size as usize))
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
        log::info!("{how}");
        Ok(Self {
            volume,
            final_map: None,
        })
    }
}

impl Platform for Uefi {
    const FIRMWARE: FirmwareKind = FirmwareKind::UEFI;

    fn allocate(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, PlatformError> {
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

    fn allocate_untouched(
        &mut self,
        kind: u32,
        bytes: u64,
        at: Placement,
    ) -> Result<u64, PlatformError> {
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

    fn allocate_low_page(&mut self, kind: u32) -> Result<u64, PlatformError> {
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

    fn read_file(
        &mut self,
        path: &str,
        kind: u32,
        limit: u64,
    ) -> Result<(u64, u64), PlatformError> {
        self.volume
            .read_to_pages(path, kind, limit)
            .map_err(PlatformError::File)
    }

    fn wall_clock(&mut self) -> Option<i64> {
        firmware::wall_clock()
    }

    fn tables(&mut self) -> FirmwareTables {
        firmware::tables()
    }

    fn framebuffer(&mut self) -> Option<Framebuffer> {
        firmware::framebuffer()
    }

    fn memory_extent(&mut self) -> Result<(u64, usize), PlatformError> {
        let map = boot::memory_map(boot::MemoryType::LOADER_DATA).map_err(|e| {
            PlatformError::Other(format!("cannot read the memory map: {:?}", e.status()))
        })?;
        let top = map
            .entries()
            .map(|d| d.phys_start + d.page_count * PAGE)
            .max()
            .unwrap_or(0);
        Ok((top, map.len()))
    }

    fn exit_firmware(&mut self, regions: &mut Vec<memmap::Region>) {
        HEAP.stop_growing();
        console::boot_services_ending();
        // SAFETY: nothing of the firmware's boot services is used after this point.
        let final_map = unsafe { boot::exit_boot_services(None) };
        push_regions(&final_map, regions);
        self.final_map = Some(final_map);
    }

    fn keep_firmware(&mut self, regions: &mut Vec<memmap::Region>) -> Result<(), PlatformError> {
        let map = boot::memory_map(boot::MemoryType::LOADER_DATA).map_err(|e| {
            PlatformError::Other(format!("cannot read the memory map: {:?}", e.status()))
        })?;
        push_regions(&map, regions);
        self.final_map = Some(map);
        Ok(())
    }

    fn image_handle(&self) -> u64 {
        boot::image_handle().as_ptr() as u64
    }

    fn tpm(&mut self) -> Result<(), PlatformError> {
        tpm::present()
    }

    fn measure(&mut self, pcr: u32, data: &[u8], event: &[u8]) -> Result<(), PlatformError> {
        tpm::measure(pcr, data, event)
    }

    fn tpm_event_log(&mut self) -> Result<(u64, u64), PlatformError> {
        tpm::event_log_copy()
    }
}

/// The firmware's map as protocol kinds (the loader's OS-loader types back to their kinds).
fn push_regions(map: &MemoryMapOwned, regions: &mut Vec<memmap::Region>) {
    for d in map.entries() {
        regions.push(memmap::Region {
            base: d.phys_start,
            length: d.page_count * PAGE,
            kind: memmap::efi_type_to_kind(d.ty.0),
        });
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::fail(format_args!(
        "{}",
        hvboot_loader_core::flow::PanicReason::of(info)
    ))
}
