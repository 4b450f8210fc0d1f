//! hvboot's BIOS loader: the Rust half of stage 2 (asm/stage2.asm calls `bios_main` in long
//! mode) and the BIOS platform layer under the shared boot flow (`hvboot_loader_core::flow`).
//!
//! Disk reads (INT 13h extensions), the memory map (E820) and the framebuffer (VBE) come from the
//! BIOS through the real-mode call thunk; the loader finds the ESP in the GPT and reads the FAT
//! file system itself; ACPI and SMBIOS entry points are found by scanning BIOS memory.
//! docs/bios.md describes the stages and the memory layout.

#![no_std]
#![no_main]

extern crate alloc;
extern crate hvboot_rt;

mod console;
mod disk;
mod lowmem;
mod mem;
mod thunk;
mod vbe;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hvboot_api::{FirmwareKind, FirmwareMemoryEntry, Framebuffer, MemoryKind};
use hvboot_loader_core::fat::Volume;
use hvboot_loader_core::flow::{
    self, Cpu, FirmwareTables, Machine, Placement, Platform, PlatformError, VbeInfo,
};
use hvboot_loader_core::gpt;
use hvboot_loader_core::heap::BumpHeap;
use hvboot_loader_core::{biostables, handoff, memmap};

const HEAP_SIZE: u64 = 4 << 20;

/// Stage 1 (the MBR boot code), carried in a section the image builder reads; not loaded.
#[used]
#[link_section = ".hvboot.stage1"]
static STAGE1: [u8; 440] = *include_bytes!(env!("HVBOOT_STAGE1_BIN"));

#[global_allocator]
static HEAP: BumpHeap = BumpHeap::empty();

struct Bios {
    volume: Volume<disk::Disk>,
    /// What VBE said of the mode set, once one is.
    vbe: Option<VbeInfo>,
}

/// More heap while the BIOS is ours: another arena of at least `min` bytes (4 MiB at least)
/// from the allocator. The heap stops growing at `exit_firmware`.
fn grow_heap(min: usize) -> Option<(usize, usize)> {
    let size = (min as u64).next_multiple_of(4096).max(HEAP_SIZE);
    let kind = MemoryKind::LOADER_RECLAIMABLE.0;
    let base = mem::MEMORY.try_with(|m| m.allocate_untouched(kind, size, Placement::Anywhere))?;
    Some((base.ok()? as usize, size as usize))
}

/// Called by stage 2 in long mode with the boot drive (DL at boot).
#[no_mangle]
pub extern "sysv64" fn bios_main(drive: u32) -> ! {
    // SAFETY: stage 2 calls bios_main in 64-bit mode at CPL 0 (docs/bios.md).
    let cpu = unsafe { Machine::new() };
    let tsc_start = cpu.rdtsc();
    console::init();
    log::info!(
        "{} {} (BIOS) starting, boot drive {drive:#04x}",
        hvboot_loader_core::LOADER_NAME,
        hvboot_loader_core::LOADER_VERSION
    );
    match mem::Memory::from_e820() {
        Ok(m) => mem::MEMORY.install(m),
        Err(e) => console::fail(format_args!("{e}")),
    };
    match mem::MEMORY.with(|m| m.map_high()) {
        Ok(0) => {}
        Ok(bytes) => log::info!("RAM above 4 GiB: {} MiB identity-mapped", bytes >> 20),
        Err(e) => console::fail(format_args!("mapping the RAM above 4 GiB: {e}")),
    }
    let kind = MemoryKind::LOADER_RECLAIMABLE.0;
    match mem::MEMORY.with(|m| m.allocate(kind, HEAP_SIZE, Placement::Anywhere)) {
        // SAFETY: the arena, and every one grow_heap adds, is ours for the loader's whole life.
        Ok(base) => unsafe { HEAP.init(base as usize, HEAP_SIZE as usize, Some(grow_heap)) },
        Err(e) => console::fail(format_args!("cannot allocate the loader heap: {e}")),
    }
    let mut platform = match open_volume(drive as u8) {
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

fn open_volume(drive: u8) -> Result<Bios, String> {
    let mut d = disk::Disk::new(drive);
    if d.sector_bytes() != hvboot_loader_core::fat::SECTOR {
        log::info!(
            "boot drive {drive:#04x}: {}-byte sectors (a CD), read as 512-byte ones",
            d.sector_bytes()
        );
    }
    let gpt::Esp {
        first_lba: esp,
        primary_bad,
    } = gpt::find_esp(&mut d)?;
    if let Some(why) = primary_bad {
        log::warn!("primary GPT damaged ({why}): using the backup GPT");
    }
    let volume = Volume::mount(d, esp).map_err(|e| format!("EFI system partition: {e}"))?;
    log::info!("ESP at LBA {esp} ({:?})", volume.fat_type);
    Ok(Bios { volume, vbe: None })
}

impl Bios {
    /// Sets a VBE mode (the default choice, or the smallest of at least `want`) and says so.
    fn set_video_mode(&mut self, want: Option<(u32, u32)>) -> Option<Framebuffer> {
        let (fb, info) = vbe::set_mode(want).unzip();
        self.vbe = info;
        if let Some(fb) = &fb {
            console::graphics_mode_set();
            log::info!(
                "framebuffer {}x{}x32 at {:#x}",
                fb.width,
                fb.height,
                fb.phys_addr
            );
        }
        fb
    }
}

impl Platform for Bios {
    const FIRMWARE: FirmwareKind = FirmwareKind::BIOS;

    fn allocate(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, PlatformError> {
        mem::MEMORY.with(|m| m.allocate(kind, bytes, at))
    }

    fn read_file(
        &mut self,
        path: &str,
        kind: u32,
        limit: u64,
    ) -> Result<(u64, u64), PlatformError> {
        self.volume
            .read_file_to_pages(path, limit, |bytes| {
                mem::MEMORY.with(|m| m.allocate_untouched(kind, bytes, Placement::Anywhere))
            })
            .map_err(PlatformError::File)
    }

    fn wall_clock(&mut self) -> Option<i64> {
        // The CMOS clock through index port 0x70 and data port 0x71; a reading that keeps
        // changing is retried a few times.
        let read = |reg: u8| {
            // SAFETY: selecting and reading a CMOS register has no other effect.
            unsafe {
                hvboot_api::cpu::outb(0x70, reg);
                hvboot_api::cpu::inb(0x71)
            }
        };
        let cmos = hvboot_loader_core::rtc::read_cmos(read, 8)?;
        hvboot_loader_core::rtc::decode(&cmos).map(|t| t.unix_seconds())
    }

    fn tables(&mut self) -> FirmwareTables {
        // SAFETY: below 1 MiB, identity-mapped, read-only here.
        let slice = |base: u64, len: u64| unsafe {
            core::slice::from_raw_parts(base as *const u8, len as usize)
        };
        let ebda = mem::ebda_start();
        let rsdp = if ebda < 0xA_0000 {
            // SAFETY: the BDA is mapped.
            let exact = (unsafe { lowmem::read::<u16>(0x40E) } as u64) << 4;
            biostables::find_rsdp(slice(exact, 1024), exact)
        } else {
            None
        }
        .or_else(|| biostables::find_rsdp(slice(0xE_0000, 0x2_0000), 0xE_0000));
        let (sm2, sm3) = biostables::find_smbios(slice(0xF_0000, 0x1_0000), 0xF_0000);
        FirmwareTables {
            rsdp: rsdp.unwrap_or(0),
            smbios: sm2.unwrap_or(0),
            smbios3: sm3.unwrap_or(0),
            system_table: 0,
            tpm_final_events: 0,
        }
    }

    fn framebuffer(&mut self) -> Option<Framebuffer> {
        self.set_video_mode(None)
    }

    fn vbe_info(&self) -> Option<VbeInfo> {
        self.vbe
    }

    fn framebuffer_sized(&mut self, width: u32, height: u32) -> Option<Framebuffer> {
        self.set_video_mode(Some((width, height)))
    }

    fn memory_extent(&mut self) -> Result<(u64, usize), PlatformError> {
        mem::MEMORY.with(|m| {
            let top = m.e820().iter().map(|r| r.end()).max().unwrap_or(0);
            // The final map: E820, the allocations so far and the few still to come (page
            // tables, stack, boot information, heap arenas), the low-memory areas.
            Ok((top, m.e820().len() + m.allocations().len() + 32 + 8))
        })
    }

    fn exit_firmware(&mut self, regions: &mut Vec<memmap::Region>) {
        HEAP.stop_growing();
        console::bios_gone();
        mem::MEMORY.with(|m| m.final_map(regions));
    }

    fn allocate_untouched(
        &mut self,
        kind: u32,
        bytes: u64,
        at: Placement,
    ) -> Result<u64, PlatformError> {
        mem::MEMORY.with(|m| m.allocate_untouched(kind, bytes, at))
    }

    fn allocate_low_page(&mut self, kind: u32) -> Result<u64, PlatformError> {
        mem::MEMORY.with(|m| m.allocate_low_page(kind))
    }

    fn firmware_map(&mut self, out: &mut Vec<FirmwareMemoryEntry>) {
        let room = out.capacity() - out.len();
        mem::MEMORY.with(|m| {
            let raw = m.raw_e820();
            out.extend_from_slice(&raw[..raw.len().min(room)]);
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
