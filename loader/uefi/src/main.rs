//! hvboot's UEFI application (\EFI\BOOT\BOOTX64.EFI).
//!
//! Reads `/hvboot/hvboot.cfg`, the kernel and the modules from its own volume, checks and loads the
//! kernel ELF, builds the kernel's page tables, gathers what the firmware knows, exits boot
//! services and jumps to the kernel with RDI = the boot information (docs/protocol.md).
//! Any failure prints its reason on serial and screen and halts: the loader never jumps into a
//! kernel it could not fully load.

#![no_std]
#![no_main]

extern crate alloc;
extern crate hvboot_rt;

mod console;
mod files;
mod firmware;
mod handoff;
mod heap;
mod memory;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hvboot_api::{
    BootInfo, BootInfoBuilder, FirmwareKind, MemoryKind, MemoryRegion, Module,
    DEFAULT_DIRECT_MAP_OFFSET, DEFAULT_STACK_SIZE, STACK_REGION_BASE,
};
use hvboot_loader_core::{config, elf, memmap, paging};
use uefi::boot;
use uefi::mem::memory_map::MemoryMap;
use uefi::prelude::*;

use memory::PAGE;

const CONFIG_PATH: &str = "/hvboot/hvboot.cfg";
const HEAP_SIZE: u64 = 4 << 20;
const GIB: u64 = 1 << 30;

#[entry]
fn main() -> Status {
    let tsc_start = rdtsc();
    console::init();
    match memory::allocate(MemoryKind::LOADER_RECLAIMABLE.0, HEAP_SIZE, None) {
        // SAFETY: the arena is ours for the loader's whole life.
        Ok(base) => unsafe { heap::HEAP.init(base as usize, HEAP_SIZE as usize) },
        Err(e) => console::fail(format_args!("cannot allocate the loader heap: {e}")),
    }
    say!(
        "{} {} (UEFI) starting",
        hvboot_loader_core::LOADER_NAME,
        hvboot_loader_core::LOADER_VERSION
    );
    match load(tsc_start) {
        Ok(never) => match never {},
        Err(e) => console::fail(format_args!("{e}")),
    }
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CPUID.80000001h:EDX[26]: 1 GiB pages (Intel SDM Vol. 2A, CPUID).
fn has_1g_pages() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// Everything needed after ExitBootServices, gathered while the firmware still serves us.
fn load(tsc_start: u64) -> Result<core::convert::Infallible, String> {
    let mut volume = files::Volume::boot_volume()?;

    let text = volume.read_small(CONFIG_PATH, 1 << 20)?;
    let text = core::str::from_utf8(&text).map_err(|e| format!("{CONFIG_PATH}: not UTF-8: {e}"))?;
    let cfg = config::parse(text).map_err(|e| format!("{CONFIG_PATH}: {e}"))?;
    say!(
        "config: kernel {}, {} module(s)",
        cfg.kernel,
        cfg.modules.len()
    );

    // The kernel: read, check, place.
    let (file_phys, file_size) =
        volume.read_to_pages(&cfg.kernel, MemoryKind::LOADER_RECLAIMABLE.0)?;
    // SAFETY: read_to_pages filled exactly this range.
    let kernel_file = unsafe { memory::phys_slice(file_phys, file_size) };
    let plan = elf::plan(kernel_file).map_err(|e| format!("{}: {e}", cfg.kernel))?;
    let image_size = plan.virt_end - plan.virt_start;
    let kernel_phys = if plan.higher_half {
        // 2 MiB alignment lets a kernel remap itself with large pages.
        memory::allocate_aligned(MemoryKind::KERNEL.0, image_size, 2 << 20)
    } else {
        let base = plan.phys_base().ok_or_else(|| {
            format!(
                "{}: the segments' physical addresses are not at one offset from their virtual \
                 addresses; hvboot places a lower-half kernel as one block",
                cfg.kernel
            )
        })?;
        memory::allocate_at(MemoryKind::KERNEL.0, base, image_size)
    }
    .map_err(|e| {
        format!(
            "{}: cannot place {image_size:#x} bytes of kernel: {e}",
            cfg.kernel
        )
    })?;
    // SAFETY: freshly allocated for the kernel image.
    plan.copy_into(kernel_file, unsafe {
        memory::phys_slice(kernel_phys, image_size)
    });
    say!(
        "kernel: entry {:#x}, {:#x} bytes at virtual {:#x}, physical {:#x}",
        plan.entry,
        image_size,
        plan.virt_start,
        kernel_phys
    );

    // Modules, each read straight into its own pages.
    let mut modules = Vec::new();
    for m in &cfg.modules {
        let (phys, size) = volume.read_to_pages(&m.path, MemoryKind::MODULES.0)?;
        say!("module {}: {size} bytes at {phys:#x}", m.name);
        modules.push((phys, size));
    }

    let tables = firmware::tables();
    let fb = firmware::framebuffer();

    // How much physical address space the direct map covers: all the firmware's memory map,
    // the framebuffer, and at least 4 GiB so that the local APIC, IOAPIC and PCI holes are in.
    let map = boot::memory_map(boot::MemoryType::LOADER_DATA)
        .map_err(|e| format!("cannot read the memory map: {:?}", e.status()))?;
    let mut top = 4 * GIB;
    for d in map.entries() {
        top = top.max(d.phys_start + d.page_count * PAGE);
    }
    if let Some(fb) = &fb {
        top = top.max(fb.phys_addr + fb.size);
    }
    let direct_map_size = top.next_multiple_of(GIB);
    // Room for the final map (it grows a little at ExitBootServices) plus our additions, with
    // the headroom normalize() needs so that it never allocates after boot services are gone.
    let map_entries = map.len() + 64;
    let map_capacity = memmap::normalize_capacity(map_entries);
    drop(map);

    // Page tables, in a pool below 4 GiB (so a 32-bit AP trampoline can load CR3).
    let huge = has_1g_pages();
    let dm_tables = if huge {
        direct_map_size / (512 * GIB) + 2
    } else {
        direct_map_size / GIB + 2
    };
    let pool_pages = 64 + dm_tables + image_size / (512 * PAGE) * 2;
    let pool = memory::allocate(
        MemoryKind::PAGE_TABLES.0,
        pool_pages * PAGE,
        Some(0xFFFF_FFFF),
    )
    .map_err(|e| format!("no memory for {pool_pages} page-table pages: {e}"))?;
    let gdt_phys = pool;
    // SAFETY: the first pool page is ours; the GDT is 24 bytes.
    unsafe { core::ptr::copy_nonoverlapping(handoff::GDT.as_ptr(), gdt_phys as *mut u64, 3) };
    // SAFETY: the pool was just allocated for page tables and is identity-mapped (offset 0).
    let mut frames = unsafe { paging::BumpFrames::new(pool + PAGE, pool + pool_pages * PAGE) };
    let mut tables_b = unsafe { paging::TableBuilder::new(0, &mut frames) }
        .map_err(|e| format!("page tables: {e}"))?;
    for s in &plan.segments {
        let phys = kernel_phys + (s.page_start() - plan.virt_start);
        tables_b
            .map_4k_range(
                s.page_start(),
                phys,
                s.page_end() - s.page_start(),
                s.writable,
                s.executable,
            )
            .map_err(|e| format!("{}: mapping segment {}: {e}", cfg.kernel, s.index))?;
    }
    let offset = DEFAULT_DIRECT_MAP_OFFSET;
    tables_b
        .map_direct(offset, direct_map_size, huge)
        .map_err(|e| format!("direct map: {e}"))?;

    // The stack, above an unmapped guard page.
    let stack_size = DEFAULT_STACK_SIZE;
    let stack_phys = memory::allocate(MemoryKind::KERNEL_STACK.0, stack_size, None)
        .map_err(|e| format!("no memory for the kernel stack: {e}"))?;
    let stack_bottom = STACK_REGION_BASE + PAGE;
    tables_b
        .map_4k_range(stack_bottom, stack_phys, stack_size, true, false)
        .map_err(|e| format!("mapping the stack: {e}"))?;

    // The hand-off code stays reachable while CR3 changes under it.
    let (code_start, code_end) = handoff::code_pages();
    tables_b
        .map_4k_range(code_start, code_start, code_end - code_start, false, true)
        .map_err(|e| format!("mapping the hand-off code at {code_start:#x}: {e}"))?;
    let cr3 = tables_b.pml4_phys();
    drop(tables_b);

    // The boot information block: room for the final memory map and every string.
    let strings: usize = cfg.cmdline.len()
        + cfg
            .modules
            .iter()
            .map(|m| m.name.len() + m.cmdline.len() + 2)
            .sum::<usize>()
        + 256;
    let info_size = (core::mem::size_of::<BootInfo>()
        + map_entries * core::mem::size_of::<MemoryRegion>()
        + modules.len() * core::mem::size_of::<Module>()
        + strings) as u64;
    let info_phys = memory::allocate(MemoryKind::BOOT_INFO.0, info_size, None)
        .map_err(|e| format!("no memory for the boot information: {e}"))?;
    let info_size = info_size.next_multiple_of(PAGE);

    say!(
        "exiting boot services; jumping to the kernel at {:#x}",
        plan.entry
    );
    console::boot_services_ending();
    // SAFETY: nothing of the firmware's boot services is used after this point.
    let final_map = unsafe { boot::exit_boot_services(None) };

    let mut regions = Vec::with_capacity(map_capacity);
    for d in final_map.entries() {
        regions.push(memmap::Region {
            base: d.phys_start,
            length: d.page_count * PAGE,
            kind: memmap::efi_type_to_kind(d.ty.0),
        });
    }
    if let Some(fb) = &fb {
        regions.push(memmap::Region {
            base: fb.phys_addr,
            length: fb.size,
            kind: MemoryKind::FRAMEBUFFER.0,
        });
    }
    memmap::normalize(&mut regions, memmap::default_priority);
    if regions.len() > map_entries {
        console::fail(format_args!(
            "the memory map has {} entries, room was made for {map_entries}",
            regions.len()
        ));
    }

    // SAFETY: the block's pages are ours.
    let buf = unsafe { memory::phys_slice(info_phys, info_size) };
    let mut b = BootInfoBuilder::new(buf);
    let built = (|| {
        let mut header = BootInfo {
            firmware: FirmwareKind::UEFI,
            loader_name: b.push_str(hvboot_loader_core::LOADER_NAME)?,
            loader_version: b.push_str(hvboot_loader_core::LOADER_VERSION)?,
            cmdline: b.push_str(&cfg.cmdline)?,
            ..BootInfo::default()
        };
        let mut mods = Vec::with_capacity(modules.len());
        for (m, &(phys, size)) in cfg.modules.iter().zip(&modules) {
            mods.push(Module {
                phys_addr: phys,
                size,
                name: b.push_str(&m.name)?,
                cmdline: b.push_str(&m.cmdline)?,
            });
        }
        header.modules = b.push_array(&mods)?;
        let map: Vec<MemoryRegion> = regions
            .iter()
            .map(|r| MemoryRegion {
                base: r.base,
                length: r.length,
                kind: MemoryKind(r.kind),
                reserved: 0,
            })
            .collect();
        header.memory_map = b.push_array(&map)?;
        if let Some(fb) = fb {
            header.framebuffer = fb;
        }
        header.rsdp_phys = tables.rsdp;
        header.smbios_entry_phys = tables.smbios;
        header.smbios3_entry_phys = tables.smbios3;
        header.efi_system_table = tables.system_table;
        header.kernel_phys_base = kernel_phys;
        header.kernel_virt_base = plan.virt_start;
        header.kernel_size = image_size;
        header.direct_map_offset = offset;
        header.direct_map_size = direct_map_size;
        header.boot_info_phys = info_phys;
        header.page_tables_phys = cr3;
        header.stack_top = stack_bottom + stack_size;
        header.stack_size = stack_size;
        header.tsc_loader_start = tsc_start;
        header.tsc_handoff = rdtsc();
        b.finish(header)
    })();
    if let Err(e) = built {
        console::fail(format_args!("writing the boot information: {e:?}"));
    }

    let h = handoff::Handoff {
        cr3,
        stack_top: stack_bottom + stack_size,
        entry: plan.entry,
        boot_info: info_phys + offset,
        gdt_virt: gdt_phys + offset,
    };
    // SAFETY: the tables map the hand-off code, the stack, the GDT (direct map) and the kernel.
    unsafe { handoff::jump(&h) }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::fail(format_args!("loader panic: {info}"))
}
