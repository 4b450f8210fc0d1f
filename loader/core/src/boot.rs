//! The boot flow shared by the UEFI and BIOS loaders, behind the small [`Platform`] interface.
//!
//! read config -> read kernel -> its request (`.hvboot_request`) -> guest reservation, AP
//! trampoline -> load ELF -> modules -> page tables -> virtualization report, CPU list ->
//! boot info -> exit firmware -> jump to the kernel (docs/protocol.md, docs/hypervisor.md).
//!
//! Both platforms identity-map the physical memory the loader allocates (UEFI does so by
//! definition; the BIOS stage 2 maps the first 4 GiB and the BIOS platform allocates below
//! 4 GiB), so a physical address returned by [`Platform::allocate`] is also a pointer.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;

use hvboot_api::{
    BootInfo, BootInfoBuilder, CpuEntry, ExtentKind, FirmwareKind, FirmwareMemoryEntry,
    Framebuffer, KernelRequest, MemoryKind, MemoryRegion, Module, PixelFormat, PlacedExtent,
    RequestFlags, TscStage, DEFAULT_DIRECT_MAP_OFFSET, DEFAULT_STACK_SIZE, FRAMEBUFFER_NONE,
    STACK_REGION_BASE,
};

use crate::{config, elf, handoff, hv, memmap, paging, request, PAGE_SIZE as PAGE};

/// Where the loader's config lives on the ESP.
pub const CONFIG_PATH: &str = "/hvboot/hvboot.cfg";
const GIB: u64 = 1 << 30;

/// Where [`Platform::allocate`] may put an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Anywhere the loader can reach.
    Anywhere,
    /// Ending at or below this address (inclusive upper bound of the last byte).
    Below(u64),
    /// Exactly at this address.
    At(u64),
    /// Starting on a multiple of this power of two.
    Aligned(u64),
    /// Starting on a multiple of `align` (a power of two) and ending at or below `max`
    /// (inclusive upper bound of the last byte, as in [`Placement::Below`]).
    AlignedBelow {
        /// The alignment of the start.
        align: u64,
        /// The highest address the last byte may have.
        max: u64,
    },
}

/// What the firmware publishes: ACPI and SMBIOS entry points, the EFI system table.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirmwareTables {
    /// ACPI RSDP (2.0+ preferred), 0 if none.
    pub rsdp: u64,
    /// SMBIOS 2.x entry point (`_SM_`), 0 if none.
    pub smbios: u64,
    /// SMBIOS 3.x entry point (`_SM3_`), 0 if none.
    pub smbios3: u64,
    /// EFI system table, 0 under BIOS.
    pub system_table: u64,
}

/// What a firmware interface provides to the shared boot flow.
pub trait Platform {
    /// The firmware kind reported to the kernel.
    const FIRMWARE: FirmwareKind;

    /// Allocates zeroed pages (`bytes` rounded up to 4 KiB) of memory kind `kind`.
    /// Returns the physical (= loader-virtual) address.
    fn allocate(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, String>;

    /// Reads the file at `path` (`/`-separated, from the ESP) into fresh pages of `kind`.
    /// Refuses files larger than `limit`. Returns (physical address, size in bytes).
    fn read_file(&mut self, path: &str, kind: u32, limit: u64) -> Result<(u64, u64), String>;

    /// ACPI / SMBIOS / EFI entry points.
    fn tables(&mut self) -> FirmwareTables;

    /// The framebuffer the kernel gets (may set a mode), or None.
    fn framebuffer(&mut self) -> Option<Framebuffer>;

    /// The end of the highest range in the firmware's memory map and the map's entry count.
    fn memory_extent(&mut self) -> Result<(u64, usize), String>;

    /// Leaves the firmware for good, appending its final memory map (as protocol kinds, the
    /// loader's allocations included) to `regions`, whose capacity the caller reserved.
    /// Nothing may allocate on the heap or call the firmware after this.
    fn exit_firmware(&mut self, regions: &mut Vec<memmap::Region>);

    /// Prints a progress line on the loader's console (serial).
    fn print(&mut self, args: fmt::Arguments<'_>);

    /// Like [`Platform::allocate`], but leaves the pages' contents as they are (the guest
    /// reservation, which the loader never writes). The default zeroes them anyway.
    fn allocate_untouched(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, String> {
        self.allocate(kind, bytes, at)
    }

    /// One free 4 KiB page below 1 MiB of memory kind `kind` for an AP start-up trampoline:
    /// never page 0, nothing the firmware or the loader uses (under BIOS below the EBDA).
    fn allocate_low_page(&mut self, kind: u32) -> Result<u64, String> {
        let _ = kind;
        Err(String::from("this platform cannot allocate below 1 MiB"))
    }

    /// The framebuffer for a kernel that asked for `width` x `height` pixels: the platform may
    /// switch modes. The default gives [`Platform::framebuffer`].
    fn framebuffer_sized(&mut self, width: u32, height: u32) -> Option<Framebuffer> {
        let _ = (width, height);
        self.framebuffer()
    }

    /// After [`Platform::exit_firmware`]: appends the firmware's own final memory map,
    /// untranslated (EFI descriptors / E820 entries), to `out`, whose capacity the caller
    /// reserved (room for the entry count of [`Platform::memory_extent`] plus 64). The default
    /// appends nothing (the kernel sees no firmware map).
    fn firmware_map(&mut self, out: &mut Vec<FirmwareMemoryEntry>) {
        let _ = out;
    }
}

/// A 32-bit-per-pixel linear framebuffer as the protocol describes it. `masks` holds the
/// (size, shift) pairs of red, green, blue and reserved, as GOP bitmasks and VBE mode
/// information give them; both platforms build their framebuffer through this.
pub fn framebuffer_32bpp(
    phys_addr: u64,
    bytes: u64,
    (width, height, pitch): (u32, u32, u32),
    format: PixelFormat,
    masks: [u8; 8],
) -> Framebuffer {
    Framebuffer {
        phys_addr,
        size: bytes
            .max(u64::from(pitch) * u64::from(height))
            .next_multiple_of(PAGE),
        width,
        height,
        pitch,
        bpp: 32,
        format,
        red_mask_size: masks[0],
        red_mask_shift: masks[1],
        green_mask_size: masks[2],
        green_mask_shift: masks[3],
        blue_mask_size: masks[4],
        blue_mask_shift: masks[5],
        reserved_mask_size: masks[6],
        reserved_mask_shift: masks[7],
    }
}

/// Prints `hvboot: error: <args>` on serial and on the screen, then `hvboot: halted`, then
/// stops the CPU for good (docs/protocol.md, "Failure"): the loader never jumps into a kernel
/// it could not fully load. Each platform passes its own serial and screen writers.
pub fn fail(
    serial: fn(fmt::Arguments<'_>),
    screen: fn(fmt::Arguments<'_>),
    args: fmt::Arguments<'_>,
) -> ! {
    serial(format_args!("hvboot: error: {args}\r\n"));
    screen(format_args!("hvboot: error: {args}\r\n"));
    serial(format_args!("hvboot: halted\r\n"));
    loop {
        // SAFETY: stopping the CPU is always sound.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CPUID.80000001h:EDX[26]: 1 GiB pages (Intel SDM Vol. 2A, CPUID).
pub fn has_1g_pages() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// A mutable view of identity-mapped physical memory the loader allocated.
///
/// # Safety
/// The range must be memory the loader owns and has mapped at its physical address.
pub unsafe fn phys_slice<'a>(phys: u64, len: u64) -> &'a mut [u8] {
    core::slice::from_raw_parts_mut(phys as *mut u8, len as usize)
}

macro_rules! say {
    ($p:expr, $($arg:tt)*) => {
        $p.print(format_args!("hvboot: {}\r\n", format_args!($($arg)*)))
    };
}

/// What the kernel's request asks for, with the defaults filled in.
struct Wants {
    request: Option<KernelRequest>,
    stack_size: u64,
    direct_map_offset: u64,
    module_alignment: u64,
}

impl Wants {
    fn of(request: Option<KernelRequest>) -> Self {
        let r = request.unwrap_or_default();
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        Self {
            request,
            stack_size: or(r.stack_size, DEFAULT_STACK_SIZE),
            direct_map_offset: or(r.direct_map_offset, DEFAULT_DIRECT_MAP_OFFSET),
            module_alignment: or(u64::from(r.module_alignment), PAGE),
        }
    }

    fn flag(&self, f: RequestFlags) -> bool {
        self.request.is_some_and(|r| r.flags.contains(f))
    }
}

/// The guest reservation's placement, and words for it in an error message.
fn guest_placement(g: &hvboot_api::GuestRequest) -> (Placement, String) {
    let align = g.alignment.max(PAGE);
    if g.fixed_base != 0 {
        return (
            Placement::At(g.fixed_base),
            format!("at {:#x}", g.fixed_base),
        );
    }
    let max = if g.max_address == 0 {
        u64::MAX
    } else {
        g.max_address - 1
    };
    let words = if g.max_address == 0 {
        format!("{align:#x}-aligned, anywhere")
    } else {
        format!(
            "{align:#x}-aligned, ending at or below {:#x}",
            g.max_address
        )
    };
    (Placement::AlignedBelow { align, max }, words)
}

/// `.hvboot_request: <field>: <why>` for a request this machine cannot meet.
fn unmet(kernel: &str, field: &str, why: fmt::Arguments<'_>) -> String {
    format!("{kernel}: .hvboot_request: {field}: {why}")
}

/// Loads the kernel named by the config and jumps to it. Returns only on failure, before
/// [`Platform::exit_firmware`] when possible.
pub fn boot<P: Platform>(p: &mut P, tsc_start: u64) -> Result<Infallible, String> {
    let mut stamps = [0u64; 5];
    stamps[TscStage::LOADER_ENTRY.0 as usize] = tsc_start;
    let (cfg_phys, cfg_size) =
        p.read_file(CONFIG_PATH, MemoryKind::LOADER_RECLAIMABLE.0, 1 << 20)?;
    // SAFETY: read_file filled exactly this range.
    let text = unsafe { phys_slice(cfg_phys, cfg_size) };
    let text = core::str::from_utf8(text).map_err(|e| format!("{CONFIG_PATH}: not UTF-8: {e}"))?;
    let cfg = config::parse(text).map_err(|e| format!("{CONFIG_PATH}: {e}"))?;
    say!(
        p,
        "config: kernel {}, {} module(s)",
        cfg.kernel,
        cfg.modules.len()
    );

    // The kernel: read, check, read its request, place.
    let (file_phys, file_size) =
        p.read_file(&cfg.kernel, MemoryKind::LOADER_RECLAIMABLE.0, u64::MAX)?;
    // SAFETY: read_file filled exactly this range.
    let kernel_file = unsafe { phys_slice(file_phys, file_size) };
    let plan = elf::plan(kernel_file).map_err(|e| format!("{}: {e}", cfg.kernel))?;
    let wants = Wants::of(request::find(kernel_file).map_err(|e| format!("{}: {e}", cfg.kernel))?);
    let image_size = plan.virt_end - plan.virt_start;
    let mut extents: Vec<PlacedExtent> = Vec::new();
    let extent = |what: ExtentKind, index: u32, phys: u64, virt: u64, length: u64| PlacedExtent {
        phys,
        virt,
        length: length.next_multiple_of(PAGE),
        what,
        index,
    };

    // Guest memory first, before the loader's own large allocations, then the AP page.
    let mut guest = (0, 0);
    if let Some(r) = wants.request.filter(|r| r.guest.size != 0) {
        let (at, words) = guest_placement(&r.guest);
        let phys = p
            .allocate_untouched(MemoryKind::GUEST_RESERVED.0, r.guest.size, at)
            .map_err(|e| {
                unmet(
                    &cfg.kernel,
                    "guest.size",
                    format_args!(
                        "cannot reserve {:#x} bytes of guest memory ({words}): {e}",
                        r.guest.size
                    ),
                )
            })?;
        say!(
            p,
            "guest reservation: {:#x} bytes at {phys:#x}",
            r.guest.size
        );
        guest = (phys, r.guest.size);
        extents.push(extent(
            ExtentKind::GUEST_RESERVATION,
            0,
            phys,
            0,
            r.guest.size,
        ));
    }
    let mut ap_trampoline = 0;
    if wants.flag(RequestFlags::AP_TRAMPOLINE) {
        ap_trampoline = p
            .allocate_low_page(MemoryKind::AP_TRAMPOLINE.0)
            .map_err(|e| {
                unmet(
                    &cfg.kernel,
                    "flags",
                    format_args!("AP_TRAMPOLINE: no free page below 1 MiB: {e}"),
                )
            })?;
        say!(p, "AP trampoline page at {ap_trampoline:#x}");
        extents.push(extent(ExtentKind::AP_TRAMPOLINE, 0, ap_trampoline, 0, PAGE));
    }

    let placement = if plan.higher_half {
        // 2 MiB alignment lets a kernel remap itself with large pages.
        Placement::Aligned(2 << 20)
    } else {
        Placement::At(plan.phys_base().ok_or_else(|| {
            format!(
                "{}: the segments' physical addresses are not at one offset from their virtual \
                 addresses; hvboot places a lower-half kernel as one block",
                cfg.kernel
            )
        })?)
    };
    let kernel_phys = p
        .allocate(MemoryKind::KERNEL.0, image_size, placement)
        .map_err(|e| {
            format!(
                "{}: cannot place {image_size:#x} bytes of kernel: {e}",
                cfg.kernel
            )
        })?;
    // SAFETY: freshly allocated for the kernel image.
    plan.copy_into(kernel_file, unsafe { phys_slice(kernel_phys, image_size) });
    say!(
        p,
        "kernel: entry {:#x}, {:#x} bytes at virtual {:#x}, physical {:#x}",
        plan.entry,
        image_size,
        plan.virt_start,
        kernel_phys
    );
    for s in &plan.segments {
        let phys = kernel_phys + (s.page_start() - plan.virt_start);
        let len = s.page_end() - s.page_start();
        extents.push(extent(
            ExtentKind::KERNEL_SEGMENT,
            s.index as u32,
            phys,
            s.page_start(),
            len,
        ));
    }

    // Modules, each read straight into its own pages (4 KiB aligned), or read and copied to a
    // 2 MiB boundary when the kernel asked for that.
    let mut modules = Vec::new();
    for (index, m) in cfg.modules.iter().enumerate() {
        let (phys, size) = if wants.module_alignment > PAGE {
            let (tmp, size) = p.read_file(&m.path, MemoryKind::LOADER_RECLAIMABLE.0, u64::MAX)?;
            let phys = p
                .allocate(
                    MemoryKind::MODULES.0,
                    size.max(1),
                    Placement::Aligned(wants.module_alignment),
                )
                .map_err(|e| format!("{}: no 2 MiB aligned memory for it: {e}", m.path))?;
            // SAFETY: both ranges are ours, distinct, and `size` bytes long.
            unsafe {
                core::ptr::copy_nonoverlapping(tmp as *const u8, phys as *mut u8, size as usize)
            };
            (phys, size)
        } else {
            p.read_file(&m.path, MemoryKind::MODULES.0, u64::MAX)?
        };
        say!(p, "module {}: {size} bytes at {phys:#x}", m.name);
        modules.push((phys, size));
        extents.push(extent(
            ExtentKind::MODULE,
            index as u32,
            phys,
            0,
            size.max(1),
        ));
    }
    stamps[TscStage::FILES_READ.0 as usize] = rdtsc();

    let tables = p.tables();
    let req = wants.request.unwrap_or_default();
    let fb = match (req.framebuffer_width, req.framebuffer_height) {
        (FRAMEBUFFER_NONE, FRAMEBUFFER_NONE) => None,
        (0, 0) => p.framebuffer(),
        (w, h) => p.framebuffer_sized(w, h),
    };

    // How much physical address space the direct map covers: all the firmware's memory map,
    // the framebuffer, and at least 4 GiB so that the local APIC, IOAPIC and PCI holes are in.
    let (map_top, map_len) = p.memory_extent()?;
    let mut top = (4 * GIB).max(map_top);
    if let Some(fb) = &fb {
        top = top.max(fb.phys_addr + fb.size);
    }
    let direct_map_size = top.next_multiple_of(GIB);
    // Room for the final map (it grows a little at ExitBootServices) plus our additions, with
    // the headroom normalize() needs so that it never allocates after the firmware is gone.
    let map_entries = map_len + 64;
    let map_capacity = memmap::normalize_capacity(map_entries);

    // The direct map must not cover the kernel or the stack region.
    let offset = wants.direct_map_offset;
    let stack_size = wants.stack_size;
    let stack_region = (STACK_REGION_BASE, STACK_REGION_BASE + PAGE + stack_size);
    let dm_end = offset.checked_add(direct_map_size).ok_or_else(|| {
        unmet(
            &cfg.kernel,
            "direct_map_offset",
            format_args!(
                "{offset:#x}: the {direct_map_size:#x}-byte direct map does not fit above it"
            ),
        )
    })?;
    for (what, (start, end)) in [
        ("the kernel", (plan.virt_start, plan.virt_end)),
        ("the stack region", stack_region),
    ] {
        if start < dm_end && offset < end {
            return Err(unmet(
                &cfg.kernel,
                "direct_map_offset",
                format_args!(
                    "the direct map {offset:#x}..{dm_end:#x} would overlap {what} at {start:#x}..{end:#x}"
                ),
            ));
        }
    }

    // Page tables, in a pool below 4 GiB (so a 32-bit AP trampoline can load CR3). Its first
    // page holds the GDT and, behind it, the TSS.
    let huge = has_1g_pages();
    let dm_tables = if huge {
        direct_map_size / (512 * GIB) + 2
    } else {
        direct_map_size / GIB + 2
    };
    let pool_pages = 64 + dm_tables + image_size / (512 * PAGE) * 2 + stack_size / (512 * PAGE);
    let pool = p
        .allocate(
            MemoryKind::PAGE_TABLES.0,
            pool_pages * PAGE,
            Placement::Below(0xFFFF_FFFF),
        )
        .map_err(|e| format!("no memory for {pool_pages} page-table pages: {e}"))?;
    let gdt_phys = pool;
    let tss_phys = pool + handoff::TSS_OFFSET;
    let gdt = handoff::gdt(tss_phys + offset);
    let tss = handoff::tss();
    // SAFETY: the first pool page is ours; the GDT (40 bytes) ends before the TSS (104 bytes).
    unsafe {
        core::ptr::copy_nonoverlapping(gdt.as_ptr(), gdt_phys as *mut u64, gdt.len());
        core::ptr::copy_nonoverlapping(tss.as_ptr(), tss_phys as *mut u8, tss.len());
    }
    extents.push(extent(ExtentKind::GDT, 0, gdt_phys, 0, PAGE));
    extents.push(extent(
        ExtentKind::PAGE_TABLES,
        0,
        pool + PAGE,
        0,
        (pool_pages - 1) * PAGE,
    ));
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
    tables_b
        .map_direct(offset, direct_map_size, huge)
        .map_err(|e| format!("direct map: {e}"))?;

    // The stack, above an unmapped guard page.
    let stack_phys = p
        .allocate(MemoryKind::KERNEL_STACK.0, stack_size, Placement::Anywhere)
        .map_err(|e| format!("no memory for the kernel stack: {e}"))?;
    let stack_bottom = STACK_REGION_BASE + PAGE;
    tables_b
        .map_4k_range(stack_bottom, stack_phys, stack_size, true, false)
        .map_err(|e| format!("mapping the stack: {e}"))?;
    extents.push(extent(
        ExtentKind::STACK,
        0,
        stack_phys,
        stack_bottom,
        stack_size,
    ));

    // The hand-off code stays reachable while CR3 changes under it.
    let (code_start, code_end) = handoff::code_pages();
    tables_b
        .map_4k_range(code_start, code_start, code_end - code_start, false, true)
        .map_err(|e| format!("mapping the hand-off code at {code_start:#x}: {e}"))?;
    let cr3 = tables_b.pml4_phys();
    let _ = tables_b; // the builder borrows `frames`; done with both
    stamps[TscStage::PAGE_TABLES_BUILT.0 as usize] = rdtsc();

    // What the processors offer, read on this one (the BSP) while the firmware is still here.
    let virt = hv::virt_report(wants.flag(RequestFlags::ENABLE_VMX));
    let (cpus, local_apic) = hv::cpu_list(tables.rsdp).unwrap_or_default();

    // The boot information block: room for the final memory map and every string and array.
    let strings: usize = cfg.cmdline.len()
        + cfg
            .modules
            .iter()
            .map(|m| m.name.len() + m.cmdline.len() + 2)
            .sum::<usize>()
        + 256;
    let extent_room = extents.len() + 1;
    let info_size = (core::mem::size_of::<BootInfo>()
        + map_entries * core::mem::size_of::<MemoryRegion>()
        + map_entries * core::mem::size_of::<FirmwareMemoryEntry>()
        + modules.len() * core::mem::size_of::<Module>()
        + cpus.len() * core::mem::size_of::<CpuEntry>()
        + extent_room * core::mem::size_of::<PlacedExtent>()
        + stamps.len() * 8
        + 8 * 8
        + strings) as u64;
    let info_phys = p
        .allocate(MemoryKind::BOOT_INFO.0, info_size, Placement::Anywhere)
        .map_err(|e| format!("no memory for the boot information: {e}"))?;
    let info_size = info_size.next_multiple_of(PAGE);
    extents.push(extent(ExtentKind::BOOT_INFO, 0, info_phys, 0, info_size));

    // Everything the block needs, allocated while the heap may still grow.
    let mut regions = Vec::with_capacity(map_capacity);
    let mut mods = Vec::with_capacity(modules.len());
    let mut map: Vec<MemoryRegion> = Vec::with_capacity(map_capacity);
    let mut fw_map: Vec<FirmwareMemoryEntry> = Vec::with_capacity(map_entries);

    say!(
        p,
        "leaving the firmware; jumping to the kernel at {:#x}",
        plan.entry
    );
    p.exit_firmware(&mut regions);
    stamps[TscStage::FIRMWARE_EXITED.0 as usize] = rdtsc();
    p.firmware_map(&mut fw_map);
    fw_map.truncate(map_entries);

    if let Some(fb) = &fb {
        regions.push(memmap::Region {
            base: fb.phys_addr,
            length: fb.size,
            kind: MemoryKind::FRAMEBUFFER.0,
        });
    }
    if regions.len() > map_entries {
        return Err(format!(
            "the firmware's memory map has {} entries, room was made for {map_entries}",
            regions.len()
        ));
    }
    memmap::normalize(&mut regions, memmap::default_priority);
    if regions.len() > map_entries {
        return Err(format!(
            "the memory map has {} entries, room was made for {map_entries}",
            regions.len()
        ));
    }

    // SAFETY: the block's pages are ours.
    let buf = unsafe { phys_slice(info_phys, info_size) };
    let mut b = BootInfoBuilder::new(buf);
    let built = (|| {
        let mut header = BootInfo {
            firmware: P::FIRMWARE,
            loader_name: b.push_str(crate::LOADER_NAME)?,
            loader_version: b.push_str(crate::LOADER_VERSION)?,
            cmdline: b.push_str(&cfg.cmdline)?,
            ..BootInfo::default()
        };
        for (m, &(phys, size)) in cfg.modules.iter().zip(&modules) {
            mods.push(Module {
                phys_addr: phys,
                size,
                name: b.push_str(&m.name)?,
                cmdline: b.push_str(&m.cmdline)?,
            });
        }
        header.modules = b.push_array(&mods)?;
        map.extend(regions.iter().map(|r| MemoryRegion {
            base: r.base,
            length: r.length,
            kind: MemoryKind(r.kind),
            reserved: 0,
        }));
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
        header.virt = virt;
        header.cpus = b.push_array(&cpus)?;
        header.local_apic_phys = local_apic;
        header.firmware_memory_map = b.push_array(&fw_map)?;
        header.placed_extents = b.push_array(&extents)?;
        header.guest_reservation_phys = guest.0;
        header.guest_reservation_size = guest.1;
        header.ap_trampoline_phys = ap_trampoline;
        header.request_version = wants.request.map_or(0, |r| r.version);
        let handoff = rdtsc();
        stamps[TscStage::HANDOFF.0 as usize] = handoff;
        header.tsc_stamps = b.push_array(&stamps)?;
        header.tsc_handoff = handoff;
        b.finish(header)
    })();
    if let Err(e) = built {
        return Err(format!("writing the boot information: {e:?}"));
    }

    let h = handoff::Handoff {
        cr3,
        stack_top: stack_bottom + stack_size,
        entry: plan.entry,
        boot_info: info_phys + offset,
        gdt_virt: gdt_phys + offset,
    };
    // SAFETY: the tables map the hand-off code, the stack, the GDT and TSS (direct map) and the
    // kernel.
    unsafe { handoff::jump(&h) }
}
