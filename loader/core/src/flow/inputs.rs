//! Phase 1, the inputs: the config file, the kernel's bytes, what kind of kernel it is and what
//! it asks for (its `.hvboot_request`, docs/hypervisor.md), defaults filled in.

use alloc::string::String;

use hvboot_api::{
    KernelRequest, MemoryKind, RequestFlags, DEFAULT_AP_STACK_SIZE, DEFAULT_DIRECT_MAP_OFFSET,
    DEFAULT_STACK_SIZE, FRAMEBUFFER_NONE,
};

use super::{phys_slice, Error, Platform, CONFIG_PATH};
use crate::config::{self, LoaderConfig};
use crate::{elf, limine, linux, multiboot2, request, PAGE_SIZE as PAGE};

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
}

impl KernelImage {
    /// Its kind, as the checker reports it.
    pub fn kind(&self) -> elf::KernelKind {
        match self {
            Self::HvbootElf(_) => elf::KernelKind::HvbootElf,
            Self::Multiboot2(..) => elf::KernelKind::Multiboot2,
            Self::Linux(..) => elf::KernelKind::Linux,
            Self::Limine(..) => elf::KernelKind::Limine,
        }
    }
}

impl Kernel {
    /// The load plan (segments, entry, virtual extent).
    pub fn plan(&self) -> &elf::LoadPlan {
        match &self.image {
            KernelImage::HvbootElf(plan)
            | KernelImage::Multiboot2(_, plan)
            | KernelImage::Linux(_, plan) => plan,
            | KernelImage::Limine(plan, _) => plan,
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
        }
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
        Self::of(Some(KernelRequest {
            stack_size,
            ap_stack_size: stack_size,
            flags,
            ..KernelRequest::default()
        }))
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

    let path = config.kernel.clone();
    let (file_phys, file_len) = p.read_file(&path, MemoryKind::LOADER_RECLAIMABLE.0, u64::MAX)?;
    // SAFETY: read_file filled exactly this range.
    let file = unsafe { phys_slice(p, file_phys, file_len) };
    Error::check_digest(&path, file, config.kernel_digest)?;
    if elf::kind(file) == Some(elf::KernelKind::Multiboot2) {
        let plan = match multiboot2::plan(file) {
            Ok(plan) => plan,
            Err(why) => return Err(Error::Multiboot2 { kernel: path, why }),
        };
        let view = elf_view(&plan);
        let fb = plan.header.framebuffer;
        let image = KernelImage::Multiboot2(plan, view);
        let kernel = Kernel {
            path,
            file_phys,
            file_len,
            image,
        };
        let wants = Wants::multiboot2(fb);
        return Ok(Inputs {
            config,
            kernel,
            wants,
        });
    }
    if elf::kind(file) == Some(elf::KernelKind::Linux) {
        let plan = linux::plan(file).map_err(|why| Error::Linux {
            kernel: path.clone(),
            why,
        })?;
        let view = linux_view(&plan);
        let kernel = Kernel {
            path,
            file_phys,
            file_len,
            image: KernelImage::Linux(plan, view),
        };
        // The firmware's framebuffer (VBE under BIOS, GOP under UEFI), described in screen_info.
        let wants = Wants::of(None);
        return Ok(Inputs {
            config,
            kernel,
            wants,
        });
    }
    if elf::kind(file) == Some(elf::KernelKind::Limine) {
        // The same verdict `hvboot-check` gives the toolkit; its first problem is the reason.
        let mut v = limine::verdict(file);
        let plan = match v.plan {
            Some(plan) if v.problems.is_empty() => plan,
            _ => {
                let why = v.problems.swap_remove(0);
                return Err(Error::Limine { kernel: path, why });
            }
        };
        let wants = Wants::limine(file, &v.found);
        let image = KernelImage::Limine(plan, v.found);
        let kernel = Kernel {
            path,
            file_phys,
            file_len,
            image,
        };
        return Ok(Inputs {
            config,
            kernel,
            wants,
        });
    }
    let plan = match elf::plan(file) {
        Ok(plan) => plan,
        Err(why) => return Err(Error::Elf { kernel: path, why }),
    };
    let wants = match request::find(file) {
        Ok(r) => Wants::of(r),
        Err(why) => return Err(Error::Request { kernel: path, why }),
    };
    Ok(Inputs {
        config,
        kernel: Kernel {
            path,
            file_phys,
            file_len,
            image: KernelImage::HvbootElf(plan),
        },
        wants,
    })
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
    }
}
