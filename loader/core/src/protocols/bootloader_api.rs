//! rust-osdev's `bootloader_api` 0.11 hand-off (docs/bootloader-api.md): its `BootInfo` in the
//! layout of the kernel's api version, then the memory regions, in one block reached through
//! hvboot's physical-memory mapping; the kernel entered in 64-bit mode on hvboot's tables with
//! RDI = `&mut BootInfo` (the crate's `entry_point!` makes `_start` an `extern "C"` function of
//! it).
//!
//! The layout is the crate's `info.rs` (`#[repr(C)]`), checked against `offset_of!` of
//! bootloader_api 0.11.17 built for the host: `Optional<T>` and the enums with fields are a u32
//! tag (`Optional`: 0 Some, 1 None) then their payload at its alignment.

use alloc::vec::Vec;

use hvboot_api::{FirmwareKind, MemoryKind, PixelFormat};

use super::{Info, Protocol};
use crate::bootloader_api::InfoLayout;
use crate::flow::{Boot, Error};
use crate::handoff::{EntryMode, Handoff};

/// `size_of::<MemoryRegion>()`: start, end, kind (tag + u32).
const REGION_SIZE: usize = 24;
/// The `BootInfo` of the newest layout (0.11.14 on); older ones are prefixes of it.
const INFO_MAX: usize = 232;

/// `MemoryRegionKind` tags.
const USABLE: u32 = 0;
const BOOTLOADER: u32 = 1;
const UNKNOWN_UEFI: u32 = 2;
const UNKNOWN_BIOS: u32 = 3;

/// Byte offsets of `BootInfo`'s fields.
mod at {
    pub const API_VERSION: usize = 0;
    pub const MEMORY_REGIONS: usize = 8;
    pub const FRAMEBUFFER: usize = 24;
    pub const PHYSICAL_MEMORY_OFFSET: usize = 88;
    pub const RECURSIVE_INDEX: usize = 104;
    pub const RSDP_ADDR: usize = 112;
    pub const TLS_TEMPLATE: usize = 128;
    pub const RAMDISK_ADDR: usize = 160;
    pub const RAMDISK_LEN: usize = 176;
    pub const KERNEL_ADDR: usize = 184;
    pub const KERNEL_LEN: usize = 192;
    pub const KERNEL_IMAGE_OFFSET: usize = 200;
    pub const KERNEL_STACK_BOTTOM: usize = 208;
    pub const KERNEL_STACK_LEN: usize = 216;
}

/// The size of the `BootInfo` a layout has.
pub fn info_size(layout: InfoLayout) -> usize {
    match layout {
        InfoLayout::V0_11_0 => at::RAMDISK_ADDR,
        InfoLayout::V0_11_1 => at::KERNEL_ADDR + 8,
        InfoLayout::V0_11_5 => at::KERNEL_STACK_BOTTOM + 8,
        InfoLayout::V0_11_14 => INFO_MAX,
    }
}

/// The `MemoryRegionKind` (tag, payload) of a region of hvboot's final map: free RAM and the
/// loader's reclaimable pages are usable; what hvboot placed for the kernel (its image and
/// file, modules, stack, tables, this block) is the bootloader's; the rest is the firmware's
/// type, as UEFI (UEFI 2.10 §7.2.1) or E820 (ACPI 6.5 §15) numbers it.
pub fn region_kind(kind: u32, firmware: FirmwareKind) -> (u32, u32) {
    let (uefi, e820) = match MemoryKind(kind) {
        MemoryKind::USABLE => return (USABLE, 0),
        MemoryKind::ACPI_RECLAIMABLE => (9, 3),
        MemoryKind::ACPI_NVS => (10, 4),
        MemoryKind::BAD => (8, 5),
        MemoryKind::RESERVED | MemoryKind::GUEST_RESERVED => (0, 2),
        MemoryKind::FRAMEBUFFER => (11, 2),
        // The kernel's ELF file is in the loader's pages (BootInfo.kernel_addr points there).
        _ => return (BOOTLOADER, 0),
    };
    if firmware == FirmwareKind::UEFI {
        (UNKNOWN_UEFI, uefi)
    } else {
        (UNKNOWN_BIOS, e820)
    }
}

/// The bootloader_api protocol, with the map it fills after the firmware is gone.
#[derive(Default)]
pub struct BootloaderApi {
    regions: Vec<(u64, u64, (u32, u32))>,
}

/// A little-endian writer at fixed offsets.
struct Block<'a>(&'a mut [u8]);

impl Block<'_> {
    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn u64(&mut self, at: usize, v: u64) {
        self.put(at, &v.to_le_bytes());
    }
    fn u32(&mut self, at: usize, v: u32) {
        self.put(at, &v.to_le_bytes());
    }
    /// An `Optional<u64>`-like field: the tag, then the value 8 bytes on (None: tag 1).
    fn optional_u64(&mut self, at: usize, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u32(at, 0);
                self.u64(at + 8, v);
            }
            None => self.u32(at, 1),
        }
    }
}

impl Protocol for BootloaderApi {
    fn prepare(&mut self, boot: &Boot) -> u64 {
        self.regions = Vec::with_capacity(boot.firmware.map_capacity);
        (INFO_MAX + boot.firmware.map_capacity * REGION_SIZE) as u64
    }

    fn write(&mut self, boot: &Boot, info: Info<'_>) -> Result<Handoff, Error> {
        let api = boot
            .inputs
            .kernel
            .bootloader_api()
            .ok_or_else(|| Error::BootInfo("not a bootloader_api kernel".into()))?;
        let (c, space) = (&api.config, &boot.space);
        let offset = space.direct_map_offset;
        let layout = c.info_layout();
        let size = info_size(layout);
        let virt = info.phys + offset;

        for r in info.map {
            let kind = region_kind(r.kind, boot.firmware_kind);
            match self.regions.last_mut() {
                Some((_, end, k)) if *k == kind && *end == r.base => *end += r.length,
                _ => self.regions.push((r.base, r.base + r.length, kind)),
            }
        }
        let regions_at = size.next_multiple_of(8);
        let room = (info.bytes.len() - regions_at) / REGION_SIZE;
        if self.regions.len() > room {
            return Err(Error::MapTooLarge {
                what: "the bootloader_api memory regions",
                entries: self.regions.len(),
                room,
            });
        }
        let mut b = Block(info.bytes);
        let v = c.version;
        for (i, part) in [v.major, v.minor, v.patch].into_iter().enumerate() {
            b.put(at::API_VERSION + 2 * i, &part.to_le_bytes());
        }
        b.put(at::API_VERSION + 6, &[u8::from(v.pre_release)]);
        b.u64(at::MEMORY_REGIONS, virt + regions_at as u64);
        b.u64(at::MEMORY_REGIONS + 8, self.regions.len() as u64);
        for (i, &(start, end, (tag, payload))) in self.regions.iter().enumerate() {
            let o = regions_at + i * REGION_SIZE;
            b.u64(o, start);
            b.u64(o + 8, end);
            b.u32(o + 16, tag);
            b.u32(o + 20, payload);
        }
        framebuffer(&mut b, boot, offset);
        let phys_offset = c.physical_memory.map(|_| offset);
        b.optional_u64(at::PHYSICAL_MEMORY_OFFSET, phys_offset);
        b.u32(at::RECURSIVE_INDEX, 1);
        let rsdp = boot.firmware.tables.rsdp;
        b.optional_u64(at::RSDP_ADDR, (rsdp != 0).then_some(rsdp));
        match api.tls {
            Some((start, file_size, mem_size)) => {
                b.u32(at::TLS_TEMPLATE, 0);
                let start = start.wrapping_add(boot.inputs.kernel.plan().slide());
                b.u64(at::TLS_TEMPLATE + 8, start);
                b.u64(at::TLS_TEMPLATE + 16, file_size);
                b.u64(at::TLS_TEMPLATE + 24, mem_size);
            }
            None => b.u32(at::TLS_TEMPLATE, 1),
        }
        if layout >= InfoLayout::V0_11_1 {
            // The ramdisk is the first module, in its own 4 KiB mapping (address_space).
            let ramdisk = boot.placed.modules.first();
            let virt = boot.inputs.wants.ramdisk_virt;
            b.optional_u64(at::RAMDISK_ADDR, ramdisk.and(virt));
            b.u64(at::RAMDISK_LEN, ramdisk.map_or(0, |&(_, len)| len));
        }
        if layout >= InfoLayout::V0_11_5 {
            let k = &boot.inputs.kernel;
            b.u64(at::KERNEL_ADDR, k.file_phys);
            b.u64(at::KERNEL_LEN, k.file_len);
            // The slide: 0 for a fixed-address (ET_EXEC) kernel, which runs where it is linked
            // (rust-osdev's load_kernel.rs, `virtual_address_offset`).
            b.u64(at::KERNEL_IMAGE_OFFSET, k.plan().slide());
        }
        if layout >= InfoLayout::V0_11_14 {
            b.u64(at::KERNEL_STACK_BOTTOM, space.stack_bottom);
            b.u64(at::KERNEL_STACK_LEN, space.stack_size);
        }
        Ok(Handoff {
            mode: EntryMode::Hvboot,
            cr3: space.cr3,
            // `_start` is an `extern "C"` function: RSP + 8 16-byte aligned at its first
            // instruction, as after a call (System V AMD64 psABI §3.2.2).
            stack_top: space.stack_top() - 8,
            entry: boot.inputs.kernel.plan().entry,
            boot_info: virt,
            gdt_virt: space.gdt_phys + offset,
        })
    }
}

/// `Optional<FrameBuffer>`: the buffer through the physical-memory mapping, its geometry, the
/// pixel format (`Rgb`/`Bgr` for 8-bit channels in that byte order, else `Unknown` with each
/// channel's bit position; stride in pixels).
fn framebuffer(b: &mut Block<'_>, boot: &Boot, offset: u64) {
    let Some(fb) = boot.firmware.framebuffer.filter(|f| f.phys_addr != 0) else {
        b.u32(at::FRAMEBUFFER, 1);
        return;
    };
    let bytes_pp = u64::from(fb.bpp).div_ceil(8).max(1);
    let f = at::FRAMEBUFFER + 8;
    b.u32(at::FRAMEBUFFER, 0);
    b.u64(f, fb.phys_addr + offset);
    b.u64(f + 8, u64::from(fb.pitch) * u64::from(fb.height));
    b.u64(f + 16, u64::from(fb.width));
    b.u64(f + 24, u64::from(fb.height));
    let (tag, positions) = match fb.format {
        PixelFormat::RGB => (0, [0; 3]),
        PixelFormat::BGR => (1, [0; 3]),
        _ => (
            3,
            [fb.red_mask_shift, fb.green_mask_shift, fb.blue_mask_shift],
        ),
    };
    b.u32(f + 32, tag);
    b.put(f + 36, &positions);
    b.u64(f + 40, bytes_pp);
    b.u64(f + 48, u64::from(fb.pitch) / bytes_pp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_prefixes() {
        assert_eq!(info_size(InfoLayout::V0_11_0), 160);
        assert_eq!(info_size(InfoLayout::V0_11_1), 192);
        assert_eq!(info_size(InfoLayout::V0_11_5), 216);
        assert_eq!(info_size(InfoLayout::V0_11_14), 232);
    }

    #[test]
    fn kinds() {
        let k = |m: MemoryKind, f| region_kind(m.0, f);
        assert_eq!(k(MemoryKind::USABLE, FirmwareKind::BIOS), (USABLE, 0));
        assert_eq!(k(MemoryKind::KERNEL, FirmwareKind::UEFI), (BOOTLOADER, 0));
        assert_eq!(
            k(MemoryKind::ACPI_NVS, FirmwareKind::UEFI),
            (UNKNOWN_UEFI, 10)
        );
        assert_eq!(
            k(MemoryKind::ACPI_NVS, FirmwareKind::BIOS),
            (UNKNOWN_BIOS, 4)
        );
    }
}
