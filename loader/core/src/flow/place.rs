//! Phase 2, placement: the guest reservation and the AP trampoline page first (before the
//! loader's own large allocations, so a fixed or low reservation still finds its room), then the
//! kernel image and the modules. Every placement is recorded as a placed extent
//! (docs/hypervisor.md, "Placed extents").

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hvboot_api::{ExtentKind, GuestRequest, MemoryKind, PlacedExtent, RequestFlags};

use super::inputs::Inputs;
use super::{phys_slice, Error, Placement, Platform, PlatformError};
use crate::PAGE_SIZE as PAGE;

/// Where everything went (physical addresses).
#[derive(Debug, Default)]
pub struct Placed {
    /// The guest reservation (base, size); (0, 0) when none was asked for.
    pub guest: (u64, u64),
    /// The AP start-up page, 0 when none was asked for.
    pub ap_trampoline: u64,
    /// The loader's own trampoline page for START_APS, 0 when not asked.
    pub ap_start: u64,
    /// The kernel image's first byte (its lowest segment page).
    pub kernel_phys: u64,
    /// Bytes of the kernel image (virtual extent of its segments).
    pub image_size: u64,
    /// Each module's (base, exact size), in config order.
    pub modules: Vec<(u64, u64)>,
    /// The placed extents so far (later phases add theirs).
    pub extents: Vec<PlacedExtent>,
}

/// A placed extent, its length rounded up to whole pages.
pub fn extent(what: ExtentKind, index: u32, phys: u64, virt: u64, length: u64) -> PlacedExtent {
    PlacedExtent {
        phys,
        virt,
        length: length.next_multiple_of(PAGE),
        what,
        index,
    }
}

/// Places the guest reservation, the AP page, the kernel and the modules, in that order.
pub fn place<P: Platform>(p: &mut P, inputs: &Inputs) -> Result<Placed, Error> {
    let mut placed = Placed::default();
    guest_reservation(p, inputs, &mut placed)?;
    ap_trampoline(p, inputs, &mut placed)?;
    kernel(p, inputs, &mut placed)?;
    modules(p, inputs, &mut placed)?;
    Ok(placed)
}

/// The guest reservation's placement, and words for it in an error message.
fn guest_placement(g: &GuestRequest) -> (Placement, String) {
    let align = g.alignment.max(PAGE);
    if g.fixed_base != 0 {
        return (
            Placement::At(g.fixed_base),
            format!("at {:#x}", g.fixed_base),
        );
    }
    if g.max_address == 0 {
        let words = format!("{align:#x}-aligned, anywhere");
        return (
            Placement::AlignedBelow {
                align,
                max: u64::MAX,
            },
            words,
        );
    }
    let words = format!(
        "{align:#x}-aligned, ending at or below {:#x}",
        g.max_address
    );
    let max = g.max_address - 1;
    (Placement::AlignedBelow { align, max }, words)
}

fn unmet(inputs: &Inputs, field: &'static str, why: String) -> Error {
    Error::Unmet {
        kernel: inputs.kernel.path.clone(),
        field,
        why,
    }
}

fn guest_reservation<P: Platform>(
    p: &mut P,
    inputs: &Inputs,
    placed: &mut Placed,
) -> Result<(), Error> {
    let Some(r) = inputs.wants.request.filter(|r| r.guest.size != 0) else {
        return Ok(());
    };
    let (at, words) = guest_placement(&r.guest);
    let size = r.guest.size;
    let phys = p
        .allocate_untouched(MemoryKind::GUEST_RESERVED.0, size, at)
        .map_err(|e| {
            let why = format!("cannot reserve {size:#x} bytes of guest memory ({words}): {e}");
            unmet(inputs, "guest.size", why)
        })?;
    log::info!("guest reservation: {size:#x} bytes at {phys:#x}");
    placed.guest = (phys, size);
    let e = extent(ExtentKind::GUEST_RESERVATION, 0, phys, 0, size);
    placed.extents.push(e);
    Ok(())
}

/// The kernel's AP trampoline page (AP_TRAMPOLINE, extent index 0) and the loader's own for
/// START_APS (extent index 1): the parked APs run from it until the kernel releases them.
fn ap_trampoline<P: Platform>(
    p: &mut P,
    inputs: &Inputs,
    placed: &mut Placed,
) -> Result<(), Error> {
    for (index, flag) in [
        (0, RequestFlags::AP_TRAMPOLINE),
        (1, RequestFlags::START_APS),
    ] {
        if !inputs.wants.flag(flag) {
            continue;
        }
        let page = p
            .allocate_low_page(MemoryKind::AP_TRAMPOLINE.0)
            .map_err(|e| {
                let name = if index == 0 {
                    "AP_TRAMPOLINE"
                } else {
                    "START_APS"
                };
                let why = format!("{name}: no free page below 1 MiB: {e}");
                unmet(inputs, "flags", why)
            })?;
        log::info!("AP trampoline page at {page:#x}");
        if index == 0 {
            placed.ap_trampoline = page;
        } else {
            placed.ap_start = page;
        }
        let e = extent(ExtentKind::AP_TRAMPOLINE, index, page, 0, PAGE);
        placed.extents.push(e);
    }
    Ok(())
}

/// A higher-half kernel goes to a 2 MiB-aligned block anywhere (so it can remap itself with
/// large pages), a lower-half one at its `p_paddr` (docs/protocol.md, "The kernel").
fn kernel<P: Platform>(p: &mut P, inputs: &Inputs, placed: &mut Placed) -> Result<(), Error> {
    let k = &inputs.kernel;
    let plan = k.plan();
    let size = plan.virt_end - plan.virt_start;
    // A position-independent kernel runs wherever its slide put it: any 2 MiB-aligned block too.
    let placement = if plan.higher_half || plan.relocatable() {
        Placement::Aligned(2 << 20)
    } else {
        let base = plan.phys_base().ok_or_else(|| Error::NotOneBlock {
            kernel: k.path.clone(),
        })?;
        Placement::At(base)
    };
    let relocatable = k.multiboot2().and_then(|m| m.header.relocatable);
    let linked = match relocatable {
        // A relocatable Multiboot2 kernel that prefers low or high addresses goes there
        // (§3.1.12); without a preference its link address is tried first.
        Some(r) if r.preference != 0 => relocate(p, size, r).ok_or(PlatformError::NoFreeBlock {
            size,
            limit: u64::from(r.max_addr),
        }),
        _ => p.allocate(MemoryKind::KERNEL.0, size, placement),
    };
    let phys = linked
        .or_else(|why| match (relocatable, k.linux().and_then(|l| l.align)) {
            // A Multiboot2 kernel whose address is taken may move within its tag's bounds.
            (Some(r), _) if r.preference == 0 => relocate(p, size, r).ok_or(why),
            (Some(_), _) => Err(why),
            // A relocatable bzImage goes anywhere at its kernel_alignment (boot.rst, field
            // relocatable_kernel): the 64-bit entry runs on an identity map of all memory.
            (None, Some(align)) => {
                p.allocate(MemoryKind::KERNEL.0, size, Placement::Aligned(align))
            }
            (None, None) => Err(why),
        })
        .map_err(|why| Error::KernelPlacement {
            kernel: k.path.clone(),
            size,
            why,
        })?;
    // SAFETY: read_file filled the first range; the second was just allocated for the image.
    let (file, image) = unsafe {
        (
            phys_slice(p, k.file_phys, k.file_len),
            phys_slice(p, phys, size),
        )
    };
    plan.copy_into(file, image);
    // The relocation phase: a position-independent kernel's addresses moved by its slide.
    plan.relocate(file, image);
    if let Some(r) = &plan.relocations {
        log::info!(
            "kernel: {} relocations applied, slide {:#x}",
            r.count,
            r.slide
        );
    }
    log::info!(
        "kernel: entry {:#x}, {:#x} bytes at virtual {:#x}, physical {:#x}",
        plan.entry,
        size,
        plan.virt_start,
        phys
    );
    (placed.kernel_phys, placed.image_size) = (phys, size);
    for s in &plan.segments {
        let seg_phys = phys + (s.page_start() - plan.virt_start);
        let len = s.page_end() - s.page_start();
        let e = extent(
            ExtentKind::KERNEL_SEGMENT,
            s.index as u32,
            seg_phys,
            s.page_start(),
            len,
        );
        placed.extents.push(e);
    }
    Ok(())
}

/// A relocatable Multiboot2 image's block (specification 2.0 §3.1.12): aligned as it asks,
/// ending at or below `max_addr`, starting at or above `min_addr` (and 1 MiB); None when no
/// such block is free. Preference 1 (low) takes the lowest such block: the platforms allocate
/// top-down or at an address, so each aligned address from min_addr up is asked in turn.
/// Otherwise (2, high, or none) the highest: the platform's top-down allocation below max_addr.
fn relocate<P: Platform>(p: &mut P, size: u64, r: crate::multiboot2::Relocatable) -> Option<u64> {
    const LOW: u32 = 1;
    let align = u64::from(r.align).max(PAGE);
    let (min, max) = (
        u64::from(r.min_addr).max(crate::multiboot2::MIN_LOAD_ADDR),
        u64::from(r.max_addr),
    );
    if r.preference == LOW {
        let mut at = min.next_multiple_of(align);
        while at.checked_add(size - 1).is_some_and(|end| end <= max) {
            if let Ok(phys) = p.allocate(MemoryKind::KERNEL.0, size, Placement::At(at)) {
                return Some(phys);
            }
            at += align;
        }
        return None;
    }
    let at = Placement::AlignedBelow { align, max };
    let phys = p.allocate(MemoryKind::KERNEL.0, size, at).ok()?;
    (phys >= min).then_some(phys)
}

/// Each module read straight into its own pages (4 KiB aligned), or read and copied to the
/// boundary the kernel asked for (2 MiB).
fn modules<P: Platform>(p: &mut P, inputs: &Inputs, placed: &mut Placed) -> Result<(), Error> {
    if let Some(linux) = inputs.kernel.linux() {
        return initrd(p, inputs, linux, placed);
    }
    let align = inputs.wants.module_alignment;
    for (index, m) in inputs.config.modules.iter().enumerate() {
        let (phys, size) = if align > PAGE {
            let (tmp, size) = p.read_file(&m.path, MemoryKind::LOADER_RECLAIMABLE.0, u64::MAX)?;
            // SAFETY: read_file filled exactly this range.
            let file = unsafe { phys_slice(p, tmp, size) };
            inputs.measuring.file(p, &m.path, file, m.digest)?;
            let phys = p
                .allocate(
                    MemoryKind::MODULES.0,
                    size.max(1),
                    Placement::Aligned(align),
                )
                .map_err(|why| Error::ModuleAlignment {
                    path: m.path.clone(),
                    why,
                })?;
            // SAFETY: both ranges are ours, distinct, and `size` bytes long.
            let (from, to) = unsafe { (phys_slice(p, tmp, size), phys_slice(p, phys, size)) };
            to.copy_from_slice(from);
            (phys, size)
        } else {
            let (phys, size) = p.read_file(&m.path, MemoryKind::MODULES.0, u64::MAX)?;
            // SAFETY: read_file filled exactly this range.
            let file = unsafe { phys_slice(p, phys, size) };
            inputs.measuring.file(p, &m.path, file, m.digest)?;
            (phys, size)
        };
        log::info!("module {}: {size} bytes at {phys:#x}", m.name);
        placed.modules.push((phys, size));
        let e = extent(ExtentKind::MODULE, index as u32, phys, 0, size.max(1));
        placed.extents.push(e);
    }
    Ok(())
}

/// A Linux kernel's modules are its initrd: read in config order and concatenated into one
/// block (as GRUB's `initrd a b`), each module's extent inside it. The block ends at or below
/// `initrd_addr_max` unless the kernel sets XLF_CAN_BE_LOADED_ABOVE_4G (boot.rst, fields
/// initrd_addr_max and xloadflags).
fn initrd<P: Platform>(
    p: &mut P,
    inputs: &Inputs,
    linux: &crate::linux::Plan,
    placed: &mut Placed,
) -> Result<(), Error> {
    let mut files = Vec::with_capacity(inputs.config.modules.len());
    for m in &inputs.config.modules {
        let (tmp, size) = p.read_file(&m.path, MemoryKind::LOADER_RECLAIMABLE.0, u64::MAX)?;
        // SAFETY: read_file filled exactly this range.
        let file = unsafe { phys_slice(p, tmp, size) };
        inputs.measuring.file(p, &m.path, file, m.digest)?;
        files.push((tmp, size));
    }
    let total: u64 = files.iter().map(|f| f.1).sum();
    if total == 0 {
        return Ok(());
    }
    let h = &linux.header;
    let max = if h.xloadflags & crate::linux::XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
        u64::MAX
    } else {
        u64::from(h.initrd_addr_max)
    };
    let base = p
        .allocate(MemoryKind::MODULES.0, total, Placement::Below(max))
        .map_err(Error::no_memory(format!(
            "the initrd ({total} bytes, ending at or below {max:#x})"
        )))?;
    let mut at = base;
    for (index, (tmp, size)) in files.into_iter().enumerate() {
        // SAFETY: both ranges are ours, distinct, and `size` bytes long.
        let (from, to) = unsafe { (phys_slice(p, tmp, size), phys_slice(p, at, size)) };
        to.copy_from_slice(from);
        log::info!("initrd part {index}: {size} bytes at {at:#x}");
        placed.modules.push((at, size));
        // Extents are page-rounded; the parts are byte-contiguous, so each names where it starts.
        let e = extent(
            ExtentKind::MODULE,
            index as u32,
            at & !(PAGE - 1),
            0,
            size.max(1),
        );
        placed.extents.push(e);
        at += size;
    }
    Ok(())
}
