//! Phase 1, the inputs: the config file, the kernel's bytes, what kind of kernel it is and what
//! it asks for (its `.hvboot_request`, docs/hypervisor.md), defaults filled in.

use alloc::string::String;

use hvboot_api::{
    KernelRequest, MemoryKind, RequestFlags, DEFAULT_AP_STACK_SIZE, DEFAULT_DIRECT_MAP_OFFSET,
    DEFAULT_STACK_SIZE, FRAMEBUFFER_NONE, STACK_REGION_BASE,
};

use super::{measure, phys_slice, Error, Platform, CONFIG_PATH};
use crate::config::{self, LoaderConfig};
use crate::{bootloader_api, elf, limine, linux, multiboot2, request, PAGE_SIZE as PAGE};

/// Everything the later phases read.
pub struct Inputs {
    /// The parsed `/hvboot/hvboot.cfg`.
    pub config: LoaderConfig,
    /// The kernel file, read and recognised.
    pub kernel: Kernel,
    /// What the kernel asks for.
    pub wants: Wants,
    /// Whether this boot measures into a TPM (`measure`).
    pub measuring: measure::Measuring,
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
/// (`crate::protocols`).
pub enum KernelImage {
    /// An ELF64 executable checked by `elf::plan` (docs/protocol.md, "The kernel").
    HvbootElf(elf::LoadPlan),
    /// A Multiboot2 kernel checked by `multiboot2::plan` (docs/multiboot2.md), with the
    /// `elf::LoadPlan` view of its image the shared phases read (one block at its physical
    /// address, identity "virtual" addresses).
    Multiboot2(multiboot2::Plan, elf::LoadPlan),
    /// A Linux bzImage checked by `linux::plan` (docs/linux.md), with the `elf::LoadPlan` view
    /// of its protected-mode kernel (one block at `pref_address`, `init_size` long).
    Linux(linux::Plan, elf::LoadPlan),
    /// A Limine kernel (`crate::limine`): an ELF plan and the requests found in it.
    Limine(elf::LoadPlan, limine::Found),
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
            Self::Linux(..) => elf::KernelKind::Linux,
            Self::Limine(..) => elf::KernelKind::Limine,
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
            | KernelImage::Linux(_, plan)
            | KernelImage::Limine(plan, _)
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

    /// The bzImage plan, for a Linux kernel.
    pub fn linux(&self) -> Option<&linux::Plan> {
        match &self.image {
            KernelImage::Linux(plan, _) => Some(plan),
            _ => None,
        }
    }

    /// What the Limine scan found, for a Limine kernel.
    pub fn limine(&self) -> Option<&limine::Found> {
        match &self.image {
            KernelImage::Limine(_, found) => Some(found),
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
    /// 5-level paging where the CPU has LA57 (a Limine kernel's Paging Mode request).
    pub five_level: bool,
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
            five_level: false,
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

    /// What a Limine kernel wants: the defaults, with the Stack Size request's size (limine-
    /// protocol PROTOCOL.md: at least 64 KiB, which is hvboot's default) in whole pages for
    /// every CPU, and the APs started when it makes the MP request.
    pub fn limine(file: &[u8], found: &limine::Found) -> Self {
        let asked = found.request("stack size").map_or(0, |r| {
            let at = (r.offset + limine::REQUEST_HEADER) as usize;
            file.get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        });
        let stack_size = asked
            .max(DEFAULT_STACK_SIZE)
            .checked_next_multiple_of(PAGE)
            .unwrap_or(DEFAULT_STACK_SIZE);
        // The MP request: every AP started and parked, on a stack of the same size.
        let flags = if found.request("MP").is_some() {
            RequestFlags::START_APS
        } else {
            RequestFlags::default()
        };
        let mut w = Self::of(Some(KernelRequest {
            stack_size,
            ap_stack_size: stack_size,
            flags,
            ..KernelRequest::default()
        }));
        // The Paging Mode request (PROTOCOL.md): its preferred `mode`, or from request
        // revision 1 its `min_mode`, 5-level (LIMINE_PAGING_MODE_X86_64_5LVL, 1).
        w.five_level = found.request("paging mode").is_some_and(|r| {
            let member = |i: u64| {
                let at = (r.offset + limine::REQUEST_HEADER + i * 8) as usize;
                file.get(at..at + 8)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            };
            member(0) == 1 || (r.revision >= 1 && member(2) == 1)
        });
        w
    }

    /// Whether the request sets flag `f`.
    pub fn flag(&self, f: RequestFlags) -> bool {
        self.request.is_some_and(|r| r.flags.contains(f))
    }
}

/// Reads and parses the config, reads the kernel, checks it and finds its request.
pub fn read<P: Platform>(p: &mut P) -> Result<Inputs, Error> {
    let (cfg_phys, cfg_size) = p.read_file(
        CONFIG_PATH,
        MemoryKind::LOADER_RECLAIMABLE.0,
        config::MAX_CONFIG_BYTES as u64,
    )?;
    // SAFETY: read_file filled exactly this range.
    let bytes = unsafe { phys_slice(p, cfg_phys, cfg_size) };
    // A signed loader pins the config it was built with (crate::pin).
    Error::check_digest(CONFIG_PATH, bytes, crate::pin::config())?;
    // The same rule the toolkit asks of `hvboot-check config` (UTF-8, then the line format).
    let config = config::parse_bytes(bytes).map_err(Error::Config)?;
    log::info!(
        "config: kernel {}, {} module(s)",
        config.kernel,
        config.modules.len()
    );
    let measuring = measure::start(p, &config, bytes)?;

    let path = config.kernel.clone();
    let (file_phys, file_len) = p.read_file(&path, MemoryKind::LOADER_RECLAIMABLE.0, u64::MAX)?;
    // SAFETY: read_file filled exactly this range.
    let file = unsafe { phys_slice(p, file_phys, file_len) };
    measuring.file(p, &path, file, config.kernel_digest)?;
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
        measuring,
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
    if elf::kind(file) == Some(elf::KernelKind::Linux) {
        let plan = linux::plan(file).map_err(|why| Error::Linux {
            kernel: kernel(),
            why,
        })?;
        let view = linux_view(&plan);
        // The firmware's framebuffer (VBE under BIOS, GOP under UEFI), described in screen_info.
        return Ok((KernelImage::Linux(plan, view), Wants::of(None)));
    }
    if elf::kind(file) == Some(elf::KernelKind::Limine) {
        // The same verdict `hvboot-check` gives the toolkit; its first problem is the reason.
        let mut v = limine::verdict(file);
        let plan = match v.plan {
            Some(plan) if v.problems.is_empty() => plan,
            _ => {
                let why = v.problems.swap_remove(0);
                return Err(Error::Limine {
                    kernel: kernel(),
                    why,
                });
            }
        };
        let wants = Wants::limine(file, &v.found);
        let plan = slid(plan.default_slide(), plan, path)?;
        return Ok((KernelImage::Limine(plan, v.found), wants));
    }
    let plan = elf::plan(file).map_err(|why| Error::Elf {
        kernel: kernel(),
        why,
    })?;
    if let Some(api) = bootloader_api_of(file, path)? {
        let slide = bootloader_api::kernel_slide(&api.config, &plan).map_err(|why| {
            Error::BootloaderApi {
                kernel: kernel(),
                why,
            }
        })?;
        let plan = slid(slide, plan, path)?;
        let wants = Wants::bootloader_api(&api.config, &plan);
        return Ok((KernelImage::BootloaderApi(api, plan), wants));
    }
    let request = request::find(file).map_err(|why| Error::Request {
        kernel: kernel(),
        why,
    })?;
    let plan = slid(plan.default_slide(), plan, path)?;
    Ok((KernelImage::HvbootElf(plan), Wants::of(request)))
}

/// `plan` moved to where its protocol runs it (`slide`, checked by the rule that chose it; a
/// fixed-address kernel's is 0).
fn slid(slide: u64, plan: elf::LoadPlan, path: &str) -> Result<elf::LoadPlan, Error> {
    plan.slid(slide).ok_or_else(|| Error::Elf {
        kernel: String::from(path),
        why: elf::ElfError::NoRoomToSlide { size: plan.size() },
    })
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
        relocations: None,
    }
}

/// A bzImage's protected-mode kernel as the shared phases see a lower-half kernel: one block of
/// `init_size` bytes at `pref_address` (the file after the setup, the rest zeroed), entered at
/// the 64-bit entry (boot.rst "64-bit BOOT PROTOCOL").
fn linux_view(p: &linux::Plan) -> elf::LoadPlan {
    let segment = elf::Segment {
        index: 0,
        vaddr: p.load,
        paddr: p.load,
        memsz: p.memsz,
        filesz: p.filesz,
        offset: p.offset,
        writable: true,
        executable: true,
    };
    elf::LoadPlan {
        entry: p.load + linux::ENTRY_64,
        higher_half: false,
        segments: alloc::vec![segment],
        virt_start: p.load,
        virt_end: p.load + p.memsz,
        relocations: None,
    }
}
