//! Phase 1, the inputs: the config file, the kernel's bytes, what kind of kernel it is and what
//! it asks for (its `.hvboot_request`, docs/hypervisor.md), defaults filled in.

use alloc::string::String;

use hvboot_api::{
    KernelRequest, MemoryKind, RequestFlags, DEFAULT_AP_STACK_SIZE, DEFAULT_DIRECT_MAP_OFFSET,
    DEFAULT_STACK_SIZE, FRAMEBUFFER_NONE, STACK_REGION_BASE,
};

use super::{phys_slice, Error, Platform, CONFIG_PATH};
use crate::config::{self, LoaderConfig};
use crate::{bootloader_api, elf, multiboot2, request, PAGE_SIZE as PAGE};

/// Everything the later phases read.
pub struct Inputs {
    /// The parsed `/hvboot/hvboot.cfg`.
    pub config: LoaderConfig,
    /// The kernel file, read and recognised.
    pub kernel: Kernel,
    /// What the kernel asks for.
    pub wants: Wants,
}

/// The kernel file in loader-reclaimable pages, and its kind.
pub struct Kernel {
    /// Its path on the ESP (as the config names it; every kernel error starts with it).
    pub path: String,
    /// Where the file's bytes are (physical).
    pub file_phys: u64,
    /// The file's size.
    pub file_len: u64,
    /// How to load it.
    pub image: KernelImage,
}

/// A recognised kernel with what loading it needs, one variant per [`elf::KernelKind`] (the
/// kinds `hvboot-check` names to the toolkit); each comes with its protocol
/// (`crate::protocols`). A Linux bzImage kind would be a further one.
pub enum KernelImage {
    /// An ELF64 executable checked by `elf::plan` (docs/protocol.md, "The kernel").
    HvbootElf(elf::LoadPlan),
    /// A Multiboot2 kernel checked by `multiboot2::plan` (docs/multiboot2.md), with the
    /// `elf::LoadPlan` view of its image the shared phases read (one block at its physical
    /// address, identity "virtual" addresses).
    Multiboot2(multiboot2::Plan, elf::LoadPlan),
    /// A `bootloader_api` kernel (docs/bootloader-api.md): its decoded config and TLS template
    /// beside the ELF plan `elf::plan` checked.
    BootloaderApi(BootApi, elf::LoadPlan),
}

/// What a `bootloader_api` kernel's hand-off reads from its file.
#[derive(Debug, Clone, Copy)]
pub struct BootApi {
    /// The `.bootloader-config`, decoded.
    pub config: bootloader_api::Config,
    /// Its `PT_TLS` (virtual start, file size, memory size).
    pub tls: Option<(u64, u64, u64)>,
}

impl KernelImage {
    /// Its kind, as the checker reports it.
    pub fn kind(&self) -> elf::KernelKind {
        match self {
            Self::HvbootElf(_) => elf::KernelKind::HvbootElf,
            Self::Multiboot2(..) => elf::KernelKind::Multiboot2,
            Self::BootloaderApi(..) => elf::KernelKind::BootloaderApi,
        }
    }
}

impl Kernel {
    /// The load plan (segments, entry, virtual extent).
    pub fn plan(&self) -> &elf::LoadPlan {
        match &self.image {
            KernelImage::HvbootElf(plan)
            | KernelImage::Multiboot2(_, plan)
            | KernelImage::BootloaderApi(_, plan) => plan,
        }
    }

    /// The Multiboot2 plan, for a Multiboot2 kernel.
    pub fn multiboot2(&self) -> Option<&multiboot2::Plan> {
        match &self.image {
            KernelImage::Multiboot2(plan, _) => Some(plan),
            _ => None,
        }
    }

    /// The `bootloader_api` config and TLS template, for such a kernel.
    pub fn bootloader_api(&self) -> Option<&BootApi> {
        match &self.image {
            KernelImage::BootloaderApi(api, _) => Some(api),
            _ => None,
        }
    }
}

/// What the kernel's request asks for, with the defaults filled in.
#[derive(Debug, Clone, Copy)]
pub struct Wants {
    /// The request as the kernel gave it (version-1 view), None without a section.
    pub request: Option<KernelRequest>,
    /// Bytes of entry stack.
    pub stack_size: u64,
    /// Where the direct map starts.
    pub direct_map_offset: u64,
    /// Alignment of each module's start.
    pub module_alignment: u64,
    /// Bytes of stack per started AP (START_APS).
    pub ap_stack_size: u64,
    /// Where the stack region starts: its guard page (`STACK_REGION_BASE` but for a
    /// `bootloader_api` kernel's fixed stack address).
    pub stack_base: u64,
    /// Where the first module is mapped again, in 4 KiB pages (a `bootloader_api` ramdisk);
    /// None: only through the direct map.
    pub ramdisk_virt: Option<u64>,
}

impl Wants {
    /// The defaults, overridden by what `request` sets.
    pub fn of(request: Option<KernelRequest>) -> Self {
        let r = request.unwrap_or_default();
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        Self {
            request,
            stack_size: or(r.stack_size, DEFAULT_STACK_SIZE),
            direct_map_offset: or(r.direct_map_offset, DEFAULT_DIRECT_MAP_OFFSET),
            module_alignment: or(u64::from(r.module_alignment), PAGE),
            ap_stack_size: or(r.ap_stack_size, DEFAULT_AP_STACK_SIZE),
            stack_base: STACK_REGION_BASE,
            ramdisk_virt: None,
        }
    }

    /// What a `bootloader_api` kernel's config asks for: its stack (size, and address when
    /// fixed: the guard page there, as rust-osdev's loader does), the ramdisk's own mapping, the physical-memory offset
    /// when fixed, else hvboot's default, or the start of the dynamic range (1 GiB-aligned) when
    /// the default lies outside it; the firmware's framebuffer.
    pub fn bootloader_api(c: &bootloader_api::Config, plan: &elf::LoadPlan) -> Self {
        let mut w = Self::of(None);
        w.stack_size = c.kernel_stack_size.max(PAGE).next_multiple_of(PAGE);
        if let bootloader_api::Mapping::Fixed(a) = c.kernel_stack {
            w.stack_base = a;
        }
        w.ramdisk_virt = Some(match c.ramdisk_memory {
            bootloader_api::Mapping::Fixed(a) => a,
            bootloader_api::Mapping::Dynamic => bootloader_api::RAMDISK_WINDOW,
        });
        w.direct_map_offset = match c.physical_memory {
            Some(bootloader_api::Mapping::Fixed(a)) => a,
            _ => {
                let (start, end) = (c.dynamic_range_start, c.dynamic_range_end);
                // The upper quarter when the kernel is linked where the default would be
                // (rust-osdev's higher-half test kernel is, at 0xffff_8000_0000_0000).
                let mut d = w.direct_map_offset;
                if plan.virt_start >> 46 == d >> 46 {
                    d = bootloader_api::SECOND_PHYS_OFFSET;
                }
                let inside = start.is_none_or(|s| d >= s) && end.is_none_or(|e| d < e);
                match start {
                    Some(s) if !inside => s.next_multiple_of(1 << 30),
                    _ => d,
                }
            }
        };
        w
    }

    /// What a Multiboot2 kernel wants: the defaults, and no framebuffer unless its header has a
    /// framebuffer tag (then the mode it prefers, 0 x 0 for the firmware's); the display stays
    /// in text mode otherwise, where such kernels (Xen) print.
    pub fn multiboot2(fb: Option<multiboot2::FramebufferTag>) -> Self {
        let (w, h) = fb.map_or((FRAMEBUFFER_NONE, FRAMEBUFFER_NONE), |f| {
            (f.width, f.height)
        });
        let request = KernelRequest {
            framebuffer_width: w,
            framebuffer_height: h,
            ..KernelRequest::default()
        };
        Self::of(Some(request))
    }

    /// Whether the request sets flag `f`.
    pub fn flag(&self, f: RequestFlags) -> bool {
        self.request.is_some_and(|r| r.flags.contains(f))
    }
}

/// Reads and parses the config, reads the kernel, checks it and finds its request.
pub fn read<P: Platform>(p: &mut P) -> Result<Inputs, Error> {
    let (cfg_phys, cfg_size) =
        p.read_file(CONFIG_PATH, MemoryKind::LOADER_RECLAIMABLE.0, 1 << 20)?;
    // SAFETY: read_file filled exactly this range.
    let bytes = unsafe { phys_slice(p, cfg_phys, cfg_size) };
    // The same rule the toolkit asks of `hvboot-check config` (UTF-8, then the line format).
    let config = config::parse_bytes(bytes).map_err(Error::Config)?;
    log::info!(
        "config: kernel {}, {} module(s)",
        config.kernel,
        config.modules.len()
    );

    let path = config.kernel.clone();
    let (file_phys, file_len) = p.read_file(&path, MemoryKind::LOADER_RECLAIMABLE.0, u64::MAX)?;
    // SAFETY: read_file filled exactly this range.
    let file = unsafe { phys_slice(p, file_phys, file_len) };
    let (image, wants) = kernel_image(file, &path)?;
    let kernel = Kernel {
        path,
        file_phys,
        file_len,
        image,
    };
    Ok(Inputs {
        config,
        kernel,
        wants,
    })
}

/// What kind of kernel `file` is, with what loading it needs, and what it asks for.
fn kernel_image(file: &[u8], path: &str) -> Result<(KernelImage, Wants), Error> {
    let kernel = || String::from(path);
    if elf::kind(file) == Some(elf::KernelKind::Multiboot2) {
        let plan = multiboot2::plan(file).map_err(|why| Error::Multiboot2 {
            kernel: kernel(),
            why,
        })?;
        let wants = Wants::multiboot2(plan.header.framebuffer);
        let view = elf_view(&plan);
        return Ok((KernelImage::Multiboot2(plan, view), wants));
    }
    let plan = elf::plan(file).map_err(|why| Error::Elf {
        kernel: kernel(),
        why,
    })?;
    if let Some(api) = bootloader_api_of(file, path)? {
        let wants = Wants::bootloader_api(&api.config, &plan);
        return Ok((KernelImage::BootloaderApi(api, plan), wants));
    }
    let request = request::find(file).map_err(|why| Error::Request {
        kernel: kernel(),
        why,
    })?;
    Ok((KernelImage::HvbootElf(plan), Wants::of(request)))
}

/// A `bootloader_api` kernel's config (None for any other kernel), refused when it cannot be
/// decoded or asks for what hvboot cannot honour: the first problem of `hvboot-check`'s list.
fn bootloader_api_of(file: &[u8], path: &str) -> Result<Option<BootApi>, Error> {
    let refuse = |why| Error::BootloaderApi {
        kernel: String::from(path),
        why,
    };
    let Some(config) = bootloader_api::find(file).map_err(refuse)? else {
        return Ok(None);
    };
    if let Some(why) = bootloader_api::unsupported(&config).into_iter().next() {
        return Err(refuse(why));
    }
    let tls = bootloader_api::tls_template(file);
    Ok(Some(BootApi { config, tls }))
}

/// A Multiboot2 image as the shared phases see a lower-half kernel: one block at its physical
/// start, entered at its physical entry.
fn elf_view(p: &multiboot2::Plan) -> elf::LoadPlan {
    let segments = p
        .pieces
        .iter()
        .enumerate()
        .map(|(i, s)| elf::Segment {
            index: s.segment.unwrap_or(i),
            vaddr: s.phys,
            paddr: s.phys,
            memsz: s.memsz,
            filesz: s.filesz,
            offset: s.offset,
            writable: true,
            executable: true,
        })
        .collect();
    elf::LoadPlan {
        entry: u64::from(p.entry),
        higher_half: false,
        segments,
        virt_start: p.start,
        virt_end: p.end,
    }
}
