//! Phase 3, the kernel's address space (docs/protocol.md, "Paging at entry"): a page-table pool
//! below 4 GiB whose first page holds the GDT and TSS, the kernel's segments with their own
//! permissions, the direct map, the stack above an unmapped guard page, and an identity mapping
//! of the hand-off code.

use alloc::format;

use hvboot_api::{ExtentKind, MemoryKind};

use super::cpu::{has_1g_pages, Cpu};
use super::cpus;
use super::firmware::Firmware;
use super::inputs::Inputs;
use super::place::{extent, Placed};
use super::{phys_slice, Error, Placement, Platform, PlatformError};
use crate::paging::{BumpFrames, PagingError, TableBuilder};
use crate::{handoff, PAGE_SIZE as PAGE};

const GIB: u64 = 1 << 30;

/// The finished address space (all zero for a protocol that does not enter through hvboot's
/// tables, such as Multiboot2).
#[derive(Debug, Clone, Copy, Default)]
pub struct AddressSpace {
    /// The PML4 (physical): CR3.
    pub cr3: u64,
    /// The GDT (physical), the TSS `handoff::TSS_OFFSET` bytes behind it.
    pub gdt_phys: u64,
    /// Where all physical memory is mapped.
    pub direct_map_offset: u64,
    /// How much physical memory the direct map covers.
    pub direct_map_size: u64,
    /// The stack's lowest mapped address (virtual); the guard page is just below.
    pub stack_bottom: u64,
    /// Bytes of stack.
    pub stack_size: u64,
    /// With 5-level paging, `cr3` is a PML5 and this the hand-off's switch page
    /// (`five_level::FiveLevel::switch`); 0 with 4-level paging.
    pub la57_switch: u64,
}

impl AddressSpace {
    /// The kernel's initial RSP (virtual).
    pub fn stack_top(&self) -> u64 {
        self.stack_bottom + self.stack_size
    }
}

fn paging(what: impl Into<alloc::string::String>) -> impl FnOnce(PagingError) -> Error {
    let what = what.into();
    move |why| Error::Paging { what, why }
}

/// An allocation the kernel's request made this large: named by the kernel and the request's
/// `field` (`<kernel>: .hvboot_request: <field>: no memory for <what>: <why>`), so the user
/// knows what to change; without a request the loader's own wording.
fn no_memory_for<'a>(
    inputs: &'a Inputs,
    field: &'static str,
    what: alloc::string::String,
) -> impl FnOnce(PlatformError) -> Error + 'a {
    move |why| match inputs.wants.request {
        Some(_) => Error::Unmet {
            kernel: inputs.kernel.path.clone(),
            field,
            why: format!("no memory for {what}: {why}"),
        },
        None => Error::NoMemory { what, why },
    }
}

/// Builds the tables and records the GDT, page-table and stack extents.
///
/// With `aps` processors to start (START_APS), also their stacks at `cpus::stack_bottom` and
/// the loader's trampoline page, identity-mapped so that paging can be turned on under it.
pub fn build<P: Platform>(
    p: &mut P,
    cpu: &impl Cpu,
    inputs: &Inputs,
    placed: &mut Placed,
    fw: &Firmware,
    aps: usize,
) -> Result<AddressSpace, Error> {
    let direct_map_size = direct_map_size(fw);
    let offset = inputs.wants.direct_map_offset;
    let stack_size = inputs.wants.stack_size;
    check_direct_map(inputs, offset, direct_map_size, aps)?;
    let huge = has_1g_pages(cpu);
    // Saturating: the sizes come from the kernel's request, and a huge one must be refused by
    // the allocation below (naming its field), not wrap into a small pool.
    let ap_stacks = (aps as u64).saturating_mul(inputs.wants.ap_stack_size);
    let stacks = stack_size
        .saturating_add(ap_stacks)
        .saturating_add(aps as u64 * 512 * PAGE);
    let (pool, pool_pages) = pool(p, inputs, placed, direct_map_size, huge, stacks)?;
    write_gdt(p, pool, offset);
    // SAFETY: the pool was just allocated for page tables; its frames are reached through the
    // platform's view of physical memory.
    let mut frames = unsafe { BumpFrames::new(pool + PAGE, pool + pool_pages * PAGE) };
    let mut tables = unsafe { TableBuilder::new(p.phys_offset(), &mut frames) }
        .map_err(paging("page tables"))?;
    map_kernel(&mut tables, inputs, placed)?;
    tables
        .map_direct(offset, direct_map_size, huge)
        .map_err(paging("direct map"))?;
    let stack = (inputs.wants.stack_base, stack_size);
    let stack_bottom = map_stack(p, inputs, &mut tables, placed, stack)?;
    if aps > 0 {
        map_ap_stacks(p, inputs, &mut tables, placed, aps)?;
    }
    if let (Some(virt), Some(&(phys, size))) = (inputs.wants.ramdisk_virt, placed.modules.first()) {
        tables
            .map_4k_range(virt, phys, size.max(1).next_multiple_of(PAGE), true, false)
            .map_err(paging(format!("mapping the ramdisk at {virt:#x}")))?;
    }
    if placed.ap_start != 0 {
        let page = placed.ap_start;
        tables
            .map_4k_range(page, page, PAGE, false, true)
            .map_err(paging("mapping the AP trampoline"))?;
    }
    let (code_start, code_end) = handoff::code_pages();
    tables
        .map_4k_range(code_start, code_start, code_end - code_start, false, true)
        .map_err(paging(format!(
            "mapping the hand-off code at {code_start:#x}"
        )))?;
    let mut cr3 = tables.pml4_phys();
    let mut la57_switch = 0;
    if inputs.wants.five_level && super::five_level::has_la57(cpu) {
        let gdt = &crate::protocols::limine::GDT;
        let five =
            super::five_level::build(p, &mut frames, cr3, gdt).ok_or_else(|| Error::Paging {
                what: "the 5-level tables".into(),
                why: PagingError::OutOfFrames,
            })?;
        (cr3, la57_switch) = (five.pml5, five.switch);
    }
    Ok(AddressSpace {
        cr3,
        la57_switch,
        gdt_phys: pool,
        direct_map_offset: offset,
        direct_map_size,
        stack_bottom,
        stack_size,
    })
}

/// All the firmware's memory map, the framebuffer, and at least 4 GiB so that the local APIC,
/// IOAPIC and PCI holes are in; whole GiB.
fn direct_map_size(fw: &Firmware) -> u64 {
    let mut top = (4 * GIB).max(fw.map_top);
    if let Some(fb) = &fw.framebuffer {
        top = top.max(fb.phys_addr + fb.size);
    }
    top.next_multiple_of(GIB)
}

/// The direct map must fit the address space and cover neither the kernel nor the stack region.
fn check_direct_map(inputs: &Inputs, offset: u64, size: u64, aps: usize) -> Result<(), Error> {
    let unmet = |why| Error::Unmet {
        kernel: inputs.kernel.path.clone(),
        field: "direct_map_offset",
        why,
    };
    let dm_end = offset.checked_add(size).ok_or_else(|| {
        unmet(format!(
            "{offset:#x}: the {size:#x}-byte direct map does not fit above it"
        ))
    })?;
    let plan = inputs.kernel.plan();
    let stack_end = cpus::stack_region_end(&inputs.wants, aps);
    for (what, (start, end)) in [
        ("the kernel", (plan.virt_start, plan.virt_end)),
        ("the stack region", (inputs.wants.stack_base, stack_end)),
    ] {
        if start < dm_end && offset < end {
            return Err(unmet(format!(
                "the direct map {offset:#x}..{dm_end:#x} would overlap {what} at {start:#x}..{end:#x}"
            )));
        }
    }
    Ok(())
}

/// The page-table pool, below 4 GiB so that a 32-bit AP trampoline can load CR3. Sized for the
/// direct map's tables, the kernel's and the stack's page tables, and spare.
fn pool<P: Platform>(
    p: &mut P,
    inputs: &Inputs,
    placed: &mut Placed,
    direct_map_size: u64,
    huge: bool,
    stack_size: u64,
) -> Result<(u64, u64), Error> {
    let dm_tables = if huge {
        direct_map_size / (512 * GIB) + 2
    } else {
        direct_map_size / GIB + 2
    };
    let stack_tables = stack_size / (512 * PAGE);
    let pages = 64 + dm_tables + placed.image_size / (512 * PAGE) * 2 + stack_tables;
    let at = Placement::Below(0xFFFF_FFFF);
    // The stacks' tables outweigh the rest only when the request asked for huge stacks.
    let field = if inputs.wants.ap_stack_size > inputs.wants.stack_size {
        "ap_stack_size"
    } else {
        "stack_size"
    };
    let what = format!("{pages} page-table pages");
    let pool = p
        .allocate(MemoryKind::PAGE_TABLES.0, pages.saturating_mul(PAGE), at)
        .map_err(|why| {
            if stack_tables > 64 + dm_tables {
                no_memory_for(inputs, field, what)(why)
            } else {
                Error::NoMemory { what, why }
            }
        })?;
    placed
        .extents
        .push(extent(ExtentKind::GDT, 0, pool, 0, PAGE));
    let tables = extent(
        ExtentKind::PAGE_TABLES,
        0,
        pool + PAGE,
        0,
        (pages - 1) * PAGE,
    );
    placed.extents.push(tables);
    Ok((pool, pages))
}

/// The GDT at the pool's start and the TSS behind it in the same page, both reached by the
/// kernel through the direct map (docs/protocol.md, "State at entry").
fn write_gdt<P: Platform>(p: &mut P, page: u64, direct_map_offset: u64) {
    let gdt = handoff::gdt(page + handoff::TSS_OFFSET + direct_map_offset);
    let tss = handoff::tss();
    // SAFETY: the pool's first page is ours and nothing else uses it.
    let bytes = unsafe { phys_slice(p, page, PAGE) };
    for (i, entry) in gdt.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&entry.to_le_bytes());
    }
    let tss_at = handoff::TSS_OFFSET as usize;
    bytes[tss_at..tss_at + tss.len()].copy_from_slice(&tss);
}

/// Each segment page by page with its own permissions (W^X, NX).
fn map_kernel(
    tables: &mut TableBuilder<'_, BumpFrames>,
    inputs: &Inputs,
    placed: &Placed,
) -> Result<(), Error> {
    let plan = inputs.kernel.plan();
    for s in &plan.segments {
        let phys = placed.kernel_phys + (s.page_start() - plan.virt_start);
        let len = s.page_end() - s.page_start();
        tables
            .map_4k_range(s.page_start(), phys, len, s.writable, s.executable)
            .map_err(paging(format!(
                "{}: mapping segment {}",
                inputs.kernel.path, s.index
            )))?;
    }
    Ok(())
}

/// The APs' stacks (one allocation), each above an unmapped guard page; STACK extents with
/// index = slot + 1.
fn map_ap_stacks<P: Platform>(
    p: &mut P,
    inputs: &Inputs,
    tables: &mut TableBuilder<'_, BumpFrames>,
    placed: &mut Placed,
    aps: usize,
) -> Result<(), Error> {
    let wants = &inputs.wants;
    let size = wants.ap_stack_size;
    let what = format!("{aps} AP stacks of {size:#x} bytes");
    let phys = p
        .allocate(
            MemoryKind::KERNEL_STACK.0,
            size.saturating_mul(aps as u64),
            Placement::Anywhere,
        )
        .map_err(no_memory_for(inputs, "ap_stack_size", what))?;
    for k in 0..aps {
        let (at, bottom) = (phys + k as u64 * size, cpus::stack_bottom(wants, k));
        tables
            .map_4k_range(bottom, at, size, true, false)
            .map_err(paging("mapping an AP stack"))?;
        placed
            .extents
            .push(extent(ExtentKind::STACK, k as u32 + 1, at, bottom, size));
    }
    Ok(())
}

/// The stack at `stack_base + 4 KiB` (`STACK_REGION_BASE` unless the protocol places it), the
/// page below left unmapped as a guard.
fn map_stack<P: Platform>(
    p: &mut P,
    inputs: &Inputs,
    tables: &mut TableBuilder<'_, BumpFrames>,
    placed: &mut Placed,
    (stack_base, stack_size): (u64, u64),
) -> Result<u64, Error> {
    let what = format!("the {stack_size:#x}-byte kernel stack");
    let phys = p
        .allocate(MemoryKind::KERNEL_STACK.0, stack_size, Placement::Anywhere)
        .map_err(no_memory_for(inputs, "stack_size", what))?;
    let bottom = stack_base + PAGE;
    tables
        .map_4k_range(bottom, phys, stack_size, true, false)
        .map_err(paging("mapping the stack"))?;
    let e = extent(ExtentKind::STACK, 0, phys, bottom, stack_size);
    placed.extents.push(e);
    Ok(bottom)
}
