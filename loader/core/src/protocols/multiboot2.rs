//! The Multiboot2 hand-off (Multiboot2 specification 2.0, §3.3 machine state, §3.6 boot
//! information): the information block below 4 GiB, then the kernel entered in 32-bit protected
//! mode with EAX = 0x36d76289 and EBX = the block (`handoff::EntryMode::Multiboot2`); or, under
//! UEFI for a kernel with the EFI boot services and EFI amd64 entry tags, at that entry in 64-bit
//! mode with boot services still running (`handoff::EntryMode::Multiboot2Efi64`, Xen's way).
//!
//! The block is written by hand into the pages the flow allocated (docs/multiboot2.md says why
//! not with the `multiboot2` crate's builder): tags 8-byte aligned after `total_size` and a
//! reserved word, ended by the end tag.

use alloc::string::String;
use alloc::vec::Vec;

use hvboot_api::{FirmwareKind, FirmwareMemoryEntry, MemoryKind};

use super::{Info, Protocol};
use crate::flow::hand_off::Leave;
use crate::flow::{Boot, Error, Placement, VbeInfo};
use crate::handoff::{EntryMode, Handoff};
use crate::memmap;
use crate::multiboot2::sections::Sections;
use crate::multiboot2::Plan;

/// Memory map entry types (§3.6.8).
const AVAILABLE: u32 = 1;
const RESERVED: u32 = 2;
const ACPI_RECLAIMABLE: u32 = 3;
const ACPI_NVS: u32 = 4;
const BAD: u32 = 5;
const MMAP_ENTRY_SIZE: usize = 24;
/// EFI_MEMORY_DESCRIPTOR (UEFI 2.10 §7.2.3): type, padding, physical start, virtual start,
/// page count, attributes.
const EFI_DESCRIPTOR_SIZE: u32 = 40;
const FOUR_GIB: u64 = 1 << 32;

/// The Multiboot2 protocol, with what it copies from the firmware before the hand-off.
#[derive(Default)]
pub struct Multiboot2 {
    /// The RSDP's bytes (ACPI 1.0: 20, 2.0+: its `length`), empty without one.
    rsdp: Vec<u8>,
    /// The SMBIOS entry point's bytes (2.x `_SM_` or 3.x `_SM3_`), empty without one.
    smbios: Vec<u8>,
    map: Vec<(u64, u64, u32)>,
    /// The loader's EFI image handle when the kernel is entered with boot services running
    /// (the EFI boot-services path), None otherwise.
    efi_image_handle: Option<u64>,
    /// The ELF-symbols tag's section headers, their loaded sections' addresses set.
    sections: Option<Sections>,
    /// What VBE said of the mode set (BIOS), for the VBE info tag.
    vbe: Option<VbeInfo>,
}

/// Whether a kernel takes the EFI boot-services path (§3.1.10, §3.1.9): under UEFI (there is
/// an EFI system table), with the EFI boot services tag and a 64-bit EFI entry to jump to.
/// Without them it is entered after ExitBootServices, as under BIOS.
pub fn keeps_boot_services(plan: &Plan, system_table: u64) -> bool {
    system_table != 0 && plan.header.efi_boot_services && plan.header.efi64_entry.is_some()
}

/// The type a region of the final map has for the kernel: everything that is RAM is available
/// (the kernel, its modules and this block too, as GRUB reports them: the kernel knows where
/// they are from the information itself).
pub fn mb2_type(kind: u32) -> u32 {
    match MemoryKind(kind) {
        MemoryKind::ACPI_RECLAIMABLE => ACPI_RECLAIMABLE,
        MemoryKind::ACPI_NVS => ACPI_NVS,
        MemoryKind::BAD => BAD,
        MemoryKind::RESERVED | MemoryKind::FRAMEBUFFER | MemoryKind::GUEST_RESERVED => RESERVED,
        _ => AVAILABLE,
    }
}

/// The final map in Multiboot2 types, neighbours of one type merged.
fn typed_map(map: &[memmap::Region], out: &mut Vec<(u64, u64, u32)>) {
    for r in map {
        let t = mb2_type(r.kind);
        match out.last_mut() {
            Some((base, len, lt)) if *lt == t && *base + *len == r.base => *len += r.length,
            _ => out.push((r.base, r.length, t)),
        }
    }
}

/// `mem_lower` and `mem_upper` (§3.6.4) in KiB: available memory from 0 (at most 640 KiB) and
/// from 1 MiB up to the first hole.
pub fn basic_memory(map: &[(u64, u64, u32)]) -> (u32, u32) {
    let run_from = |start: u64| {
        map.iter()
            .find(|&&(b, l, t)| t == AVAILABLE && b <= start && start < b + l)
            .map_or(0, |&(b, l, _)| b + l - start)
    };
    let lower = run_from(0).min(640 << 10) >> 10;
    let upper = run_from(1 << 20) >> 10;
    (lower as u32, upper.min(u64::from(u32::MAX)) as u32)
}

/// The kernel's command line as Multiboot2 kernels read it: its file name first, as GRUB 1
/// did (Xen drops the first word unless the loader calls itself GRUB 2).
fn with_name(name: &str, args: &str) -> String {
    let mut s = String::from(name);
    if !args.is_empty() {
        s.push(' ');
        s.push_str(args);
    }
    s
}

/// A writer of tags into the block.
struct Tags<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Tags<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.at + bytes.len();
        let room = self.buf.len();
        let dst = self.buf.get_mut(self.at..end).ok_or_else(|| {
            Error::BootInfo(alloc::format!(
                "the Multiboot2 information outgrew its {room} bytes"
            ))
        })?;
        dst.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), Error> {
        self.put(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<(), Error> {
        self.put(&v.to_le_bytes())
    }

    /// A tag of `kind` whose body `body` writes; its size filled in, the next tag aligned.
    fn tag(
        &mut self,
        kind: u32,
        body: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = self.at;
        self.u32(kind)?;
        self.u32(0)?;
        body(self)?;
        let size = (self.at - start) as u32;
        self.buf[start + 4..start + 8].copy_from_slice(&size.to_le_bytes());
        let pad = self.at.next_multiple_of(8) - self.at;
        self.put(&[0u8; 8][..pad])
    }

    fn string(&mut self, kind: u32, s: &str) -> Result<(), Error> {
        self.tag(kind, |t| {
            t.put(s.as_bytes())?;
            t.put(&[0])
        })
    }
}

impl Multiboot2 {
    /// The protocol with the firmware's RSDP and SMBIOS entry point as copied before the
    /// hand-off (empty when there is none).
    pub fn new(rsdp: Vec<u8>, smbios: Vec<u8>) -> Self {
        Self {
            rsdp,
            smbios,
            map: Vec::new(),
            efi_image_handle: None,
            sections: None,
            vbe: None,
        }
    }

    /// The protocol with the VBE info tag (type 7).
    pub fn with_vbe(mut self, vbe: VbeInfo) -> Self {
        self.vbe = Some(vbe);
        self
    }

    /// The protocol with the ELF-symbols tag (type 9): `sections` as
    /// `crate::flow::run_multiboot2` loaded them.
    pub fn with_elf_sections(mut self, sections: Sections) -> Self {
        self.sections = Some(sections);
        self
    }

    /// The protocol for the EFI boot-services path ([`keeps_boot_services`]): the firmware
    /// kept, the information with "EFI boot services not terminated" and the loader's
    /// `image_handle` (which the kernel passes to ExitBootServices), the EFI amd64 entry.
    pub fn keeping_boot_services(mut self, image_handle: u64) -> Self {
        self.efi_image_handle = Some(image_handle);
        self
    }

    fn plan(boot: &Boot) -> &Plan {
        boot.inputs
            .kernel
            .multiboot2()
            .expect("a Multiboot2 kernel")
    }

    fn requested(plan: &Plan, t: u32) -> bool {
        plan.header.requests.iter().any(|&(r, _)| r == t)
    }

    fn build(
        &mut self,
        boot: &Boot,
        buf: &mut [u8],
        (map, firmware_map): (&[memmap::Region], &[FirmwareMemoryEntry]),
    ) -> Result<usize, Error> {
        let plan = Self::plan(boot);
        let cfg = &boot.inputs.config;
        let mut t = Tags { buf, at: 8 };
        t.string(1, &with_name(&boot.inputs.kernel.path, &cfg.cmdline))?;
        let name = alloc::format!("{} {}", crate::LOADER_NAME, crate::LOADER_VERSION);
        t.string(2, &name)?;
        for (m, &(phys, size)) in cfg.modules.iter().zip(&boot.placed.modules) {
            if phys + size > FOUR_GIB {
                return Err(Error::BootInfo(alloc::format!(
                    "module {} at {phys:#x} ends above 4 GiB, out of a Multiboot2 kernel's reach",
                    m.name
                )));
            }
            t.tag(3, |t| {
                t.u32(phys as u32)?;
                t.u32((phys + size) as u32)?;
                t.put(with_name(&m.name, &m.cmdline).as_bytes())?;
                t.put(&[0])
            })?;
        }
        // Basic memory as the firmware reports it under BIOS (E820, as GRUB gives it); the map
        // below is the final one, where hvboot keeps page 0 and the EBDA's page reserved.
        // Under UEFI the final map (the firmware's has EFI types).
        self.map.clear();
        if boot.firmware_kind == FirmwareKind::BIOS {
            let raw = firmware_map.iter();
            self.map
                .extend(raw.map(|e| (e.base, e.length, e.firmware_type)));
        }
        if self.map.is_empty() {
            typed_map(map, &mut self.map);
        }
        let (lower, upper) = basic_memory(&self.map);
        self.map.clear();
        typed_map(map, &mut self.map);
        t.tag(4, |t| {
            t.u32(lower)?;
            t.u32(upper)
        })?;
        let entries = &self.map;
        t.tag(6, |t| {
            t.u32(MMAP_ENTRY_SIZE as u32)?;
            t.u32(0)?;
            for &(base, len, kind) in entries {
                t.u64(base)?;
                t.u64(len)?;
                t.u32(kind)?;
                t.u32(0)?;
            }
            Ok(())
        })?;
        if let Some(s) = &self.sections {
            // ELF-symbols (§3.6.7): num, entsize and shndx as u32 words, as GRUB writes them
            // (its multiboot2.h) and the rust-osdev `multiboot2` crate reads them (the
            // specification's text shows u16 fields), then the table.
            t.tag(9, |t| {
                t.u32(s.num)?;
                t.u32(s.entsize)?;
                t.u32(s.shndx)?;
                t.put(&s.table)
            })?;
        }
        if let Some(v) = &self.vbe {
            // VBE info (§3.6.9): the mode, the protected-mode interface (not asked of the BIOS:
            // zeros, which the specification allows), the two blocks.
            t.tag(7, |t| {
                t.put(&v.mode.to_le_bytes())?;
                t.put(&[0; 6])?;
                t.put(&v.control_info)?;
                t.put(&v.mode_info)
            })?;
        }
        if let Some(fb) = boot.firmware.framebuffer {
            t.tag(8, |t| {
                t.u64(fb.phys_addr)?;
                t.u32(fb.pitch)?;
                t.u32(fb.width)?;
                t.u32(fb.height)?;
                // bpp, type 1 (direct RGB), reserved; then the colour fields.
                t.put(&[fb.bpp as u8, 1, 0, 0])?;
                t.put(&[
                    fb.red_mask_shift,
                    fb.red_mask_size,
                    fb.green_mask_shift,
                    fb.green_mask_size,
                    fb.blue_mask_shift,
                    fb.blue_mask_size,
                ])
            })?;
        }
        let system_table = boot.firmware.tables.system_table;
        if let Some(handle) = self.efi_image_handle {
            // EFI boot services not terminated (§3.6.17) and the EFI 64-bit image handle
            // (§3.6.19).
            t.tag(18, |_| Ok(()))?;
            t.tag(20, |t| t.u64(handle))?;
        }
        if system_table != 0 {
            // EFI 64-bit system table pointer (§3.6.13) and the EFI memory map (§3.6.16), one
            // descriptor per firmware entry: after ExitBootServices, or on the boot-services
            // path the map of the hand-off's moment (the kernel takes its own before it exits
            // them).
            t.tag(12, |t| t.u64(system_table))?;
            t.tag(17, |t| {
                t.u32(EFI_DESCRIPTOR_SIZE)?;
                t.u32(1)?;
                for e in firmware_map {
                    t.u32(e.firmware_type)?;
                    t.u32(0)?;
                    t.u64(e.base)?;
                    t.u64(0)?;
                    t.u64(e.length / 4096)?;
                    t.u64(e.attributes)?;
                }
                Ok(())
            })?;
        }
        if !self.smbios.is_empty() && Self::requested(plan, 13) {
            let (major, minor) = smbios_version(&self.smbios);
            let smbios = &self.smbios;
            t.tag(13, |t| {
                t.put(&[major, minor, 0, 0, 0, 0, 0, 0])?;
                t.put(smbios)
            })?;
        }
        if self.rsdp.len() >= 20 {
            let rsdp = &self.rsdp;
            t.tag(14, |t| t.put(&rsdp[..20]))?;
            if rsdp.len() > 20 {
                t.tag(15, |t| t.put(rsdp))?;
            }
        }
        let base = boot.placed.kernel_phys as u32;
        t.tag(21, |t| t.u32(base))?;
        t.tag(0, |_| Ok(()))?;
        let total = t.at;
        buf_header(t.buf, total);
        Ok(total)
    }
}

fn buf_header(buf: &mut [u8], total: usize) {
    buf[..4].copy_from_slice(&(total as u32).to_le_bytes());
    buf[4..8].fill(0);
}

/// The SMBIOS version an entry point names: `_SM_` (2.x, bytes 6 and 7) or `_SM3_` (bytes 7
/// and 8).
fn smbios_version(ep: &[u8]) -> (u8, u8) {
    let at = if ep.starts_with(b"_SM3_") { 7 } else { 6 };
    (
        ep.get(at).copied().unwrap_or(0),
        ep.get(at + 1).copied().unwrap_or(0),
    )
}

impl Protocol for Multiboot2 {
    fn prepare(&mut self, boot: &Boot) -> u64 {
        let cfg = &boot.inputs.config;
        let strings = boot.inputs.kernel.path.len() + super::config_string_bytes(cfg) + 64;
        self.map = Vec::with_capacity(boot.firmware.map_capacity);
        (8 + 16 * 8
            + strings
            + cfg.modules.len() * 24
            + 16
            + boot.firmware.map_entries * MMAP_ENTRY_SIZE
            + 32
            + boot.firmware.map_entries * EFI_DESCRIPTOR_SIZE as usize
            + 48
            + 16
            + 24
            + self.sections.as_ref().map_or(0, |s| 24 + s.table.len())
            + 8
            + 8
            + 768
            + self.smbios.len()
            + 2 * (8 + self.rsdp.len())
            + 16) as u64
    }

    fn placement(&self) -> Placement {
        Placement::Below(FOUR_GIB - 1)
    }

    fn leave(&self) -> Leave {
        match self.efi_image_handle {
            Some(_) => Leave::KeepBootServices,
            None => Leave::Exit,
        }
    }

    fn write(&mut self, boot: &Boot, info: Info<'_>) -> Result<Handoff, Error> {
        if info.phys + info.bytes.len() as u64 > FOUR_GIB {
            return Err(Error::BootInfo(
                "the Multiboot2 information lies above 4 GiB".into(),
            ));
        }
        let phys = info.phys;
        self.build(boot, info.bytes, (info.map, info.firmware_map))?;
        let plan = Self::plan(boot);
        let slide = boot.placed.kernel_phys.wrapping_sub(plan.start);
        let (mode, entry) = match (self.efi_image_handle, plan.header.efi64_entry) {
            (Some(_), Some(efi64)) => (EntryMode::Multiboot2Efi64, efi64),
            _ => (EntryMode::Multiboot2, plan.entry),
        };
        Ok(Handoff {
            mode,
            cr3: 0,
            stack_top: 0,
            entry: u64::from(entry).wrapping_add(slide),
            boot_info: phys,
            gdt_virt: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_memory_and_types() {
        let map = [
            (0, 0x9_fc00, AVAILABLE),
            (0x9_fc00, 0x400, RESERVED),
            (0x10_0000, 0x1ff0_0000, AVAILABLE),
            (0x2000_0000, 0x1000, ACPI_RECLAIMABLE),
        ];
        assert_eq!(basic_memory(&map), (639, 0x1ff0_0000 >> 10));
        let regions = [
            memmap::Region {
                base: 0x10_0000,
                length: 0x1000,
                kind: MemoryKind::KERNEL.0,
            },
            memmap::Region {
                base: 0x10_1000,
                length: 0x1000,
                kind: MemoryKind::USABLE.0,
            },
            memmap::Region {
                base: 0x10_2000,
                length: 0x1000,
                kind: MemoryKind::ACPI_NVS.0,
            },
        ];
        let mut out = Vec::new();
        typed_map(&regions, &mut out);
        assert_eq!(
            out,
            [
                (0x10_0000, 0x2000, AVAILABLE),
                (0x10_2000, 0x1000, ACPI_NVS)
            ]
        );
    }

    #[test]
    fn names_come_first() {
        assert_eq!(
            with_name("/hvboot/kernel.elf", "console=com1"),
            "/hvboot/kernel.elf console=com1"
        );
        assert_eq!(with_name("initrd", ""), "initrd");
    }
}
