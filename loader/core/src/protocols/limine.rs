//! The Limine protocol's hand-off (limine-protocol PROTOCOL.md; docs/limine.md): each request
//! the kernel made (`crate::limine`'s scan) that hvboot knows is answered by writing a pointer
//! to its response into the request's `response` member in the loaded image; the base-revision
//! tag's third word is set to 0 (supported) and its second to the revision used. Responses,
//! their arrays and strings, and the GDT the protocol describes live in the information block
//! (loader memory, bootloader-reclaimable in the kernel's map), reached through the HHDM (the
//! direct map).
//!
//! Requests hvboot knows but cannot answer here (the device tree blob on x86, the EFI ones under
//! BIOS, the MP request until its hand-off is there) are said on the console and left
//! unanswered, as the protocol does with any request a loader does not satisfy.

use alloc::format;
use alloc::vec::Vec;

use hvboot_api::{FirmwareKind, MemoryKind};

use super::{Info, Protocol};
use crate::flow::{Boot, Error};
use crate::handoff::{EntryMode, Handoff};
use crate::limine::{Found, Request, REQUEST_HEADER};
use crate::memmap;
use crate::PAGE_SIZE as PAGE;

/// Memory-map entry types (PROTOCOL.md "Memory Map Feature").
mod map_type {
    pub const USABLE: u64 = 0;
    pub const RESERVED: u64 = 1;
    pub const ACPI_RECLAIMABLE: u64 = 2;
    pub const ACPI_NVS: u64 = 3;
    pub const BAD_MEMORY: u64 = 4;
    pub const BOOTLOADER_RECLAIMABLE: u64 = 5;
    pub const KERNEL_AND_MODULES: u64 = 6;
    pub const FRAMEBUFFER: u64 = 7;
    /// Base revision 4 on: reserved, and mapped in the HHDM.
    pub const RESERVED_MAPPED: u64 = 8;
}

/// The GDT of PROTOCOL.md "Machine state at entry" (x86-64): null, 16-bit code and data
/// (limit 0xffff), 32-bit code and data (flat 4 GiB), 64-bit code and data (Intel SDM Vol. 3A
/// §3.4.5 descriptor layout); then, as the protocol's "at least" allows, a 64-bit TSS descriptor
/// of base 0 and limit 0 (SDM Vol. 3A §8.2.3: type 9, present; two entries) that base revision
/// 5's "task register loaded with base 0 and limit 0" loads at [`TSS_SELECTOR`].
pub const GDT: [u64; 9] = [
    0,
    0x0000_9a00_0000_ffff,
    0x0000_9200_0000_ffff,
    0x00cf_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0x00af_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0x0000_8900_0000_0000,
    0,
];
/// The TSS selector in [`GDT`] (base revision 5 on).
pub const TSS_SELECTOR: u16 = 0x38;
/// The 64-bit code and data selectors in [`GDT`].
pub const CODE_SELECTOR: u16 = 0x28;
/// See [`CODE_SELECTOR`].
pub const DATA_SELECTOR: u16 = 0x30;

/// Bytes of a `struct limine_file` (revision 0): revision, address, size, path, cmdline, six
/// 32-bit fields, three 16-byte UUIDs.
const FILE_SIZE: usize = 5 * 8 + 6 * 4 + 3 * 16;
/// Bytes of a `struct limine_framebuffer` (response revision 0).
const FRAMEBUFFER_SIZE: usize = 64;
/// Bytes of a `struct limine_mp_info` (x86-64): processor_id, lapic_id, reserved, goto_address,
/// extra_argument.
const MP_INFO_SIZE: usize = 32;
/// Where in an MP info its `goto_address` is: laid over an AP's mailbox, it is the mailbox's
/// `entry`, the word the park loop watches, and `extra_argument` the mailbox's `argument`.
pub const MP_INFO_GOTO: u64 = 16;
const _: () = {
    use core::mem::{offset_of, size_of};
    use hvboot_api::CpuMailbox;
    assert!(offset_of!(CpuMailbox, entry) == 0 && offset_of!(CpuMailbox, argument) == 8);
    // The 16 bytes before a mailbox are the previous one's last reserved bytes (or the gap
    // `cpus::prepare` leaves before the first): the info's processor and APIC IDs.
    assert!(offset_of!(CpuMailbox, reserved) + 7 * 8 == size_of::<CpuMailbox>());
    assert!(size_of::<CpuMailbox>() - offset_of!(CpuMailbox, reserved) >= MP_INFO_GOTO as usize);
    // The release hook and the two words after it lie before the next AP's info.
    assert!(MAILBOX_AP_HHDM + 8 <= size_of::<CpuMailbox>() - MP_INFO_GOTO as usize);
    assert!(MAILBOX_AP_GDT == crate::trampoline::MAILBOX_RELEASE_HOOK + 8);
};
/// Base revision 5+: where in an AP's mailbox (reserved words, after the release hook) its
/// own copy of [`GDT`] (virtual) and the HHDM offset are, for `handoff`'s `hvboot_limine_ap`.
pub const MAILBOX_AP_GDT: usize = 80;
/// See [`MAILBOX_AP_GDT`].
pub const MAILBOX_AP_HHDM: usize = 88;

/// Bytes of an EFI_MEMORY_DESCRIPTOR (UEFI 2.10 §7.2, version 1).
const EFI_DESCRIPTOR_SIZE: u64 = 40;

/// The Limine protocol for one kernel.
pub struct Limine {
    found: Found,
    /// Where the loader reaches physical memory (`Platform::phys_offset`): the kernel's
    /// requests are written through it.
    phys_offset: u64,
    /// The memory map in Limine's types, filled after the firmware is gone.
    map: Vec<[u64; 3]>,
    /// Pointer arrays (map entries, files, CPUs) gathered before they are written; sized in
    /// `prepare`, since nothing may allocate once the firmware is gone.
    scratch: Vec<u64>,
}

impl Limine {
    /// The hand-off for the requests `found`, written through `phys_offset`.
    pub fn new(found: Found, phys_offset: u64) -> Self {
        Self {
            found,
            phys_offset,
            map: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

/// Limine's memory-map type for hvboot's kind `k` (the loader's own allocations are
/// bootloader-reclaimable, as Limine's page tables, stacks and responses are).
pub fn map_type(k: MemoryKind) -> u64 {
    match k {
        MemoryKind::USABLE => map_type::USABLE,
        MemoryKind::ACPI_RECLAIMABLE => map_type::ACPI_RECLAIMABLE,
        MemoryKind::ACPI_NVS => map_type::ACPI_NVS,
        MemoryKind::BAD => map_type::BAD_MEMORY,
        MemoryKind::KERNEL | MemoryKind::MODULES => map_type::KERNEL_AND_MODULES,
        MemoryKind::FRAMEBUFFER => map_type::FRAMEBUFFER,
        MemoryKind::LOADER_RECLAIMABLE
        | MemoryKind::BOOT_INFO
        | MemoryKind::PAGE_TABLES
        | MemoryKind::KERNEL_STACK
        | MemoryKind::AP_TRAMPOLINE => map_type::BOOTLOADER_RECLAIMABLE,
        _ => map_type::RESERVED,
    }
}

/// The final map in Limine's types into `out` (room made in `prepare`): PROTOCOL.md "Memory Map
/// Feature" never marks the first page usable, so a usable range from 0 gives its first page to
/// a reserved entry. From base revision 4 a reserved range the HHDM maps (below
/// `mapped_below`, the direct map's end: hvboot maps every range there) is "reserved mapped",
/// which is where revisions 4 and 5 promise the ACPI and SMBIOS tables and the EFI runtime
/// regions the kernel may read through the HHDM.
fn limine_map(map: &[memmap::Region], out: &mut Vec<[u64; 3]>, mapped_below: u64) {
    for r in map {
        let mut t = map_type(MemoryKind(r.kind));
        if t == map_type::RESERVED && r.base.saturating_add(r.length) <= mapped_below {
            t = map_type::RESERVED_MAPPED;
        }
        if t == map_type::USABLE && r.base < PAGE && r.length > 0 {
            let first = (PAGE - r.base).min(r.length);
            out.push([r.base, first, map_type::RESERVED]);
            if r.length > first {
                out.push([PAGE, r.length - first, t]);
            }
        } else {
            out.push([r.base, r.length, t]);
        }
    }
}

/// Appends to the information block, 8-byte aligned, and gives back virtual (HHDM) addresses.
struct Writer<'a> {
    bytes: &'a mut [u8],
    used: usize,
    virt: u64,
}

impl Writer<'_> {
    /// Room for `len` bytes at the next 8-byte boundary: their offset in the block.
    fn room(&mut self, len: usize) -> Result<usize, Error> {
        let at = self.used.next_multiple_of(8);
        if at + len > self.bytes.len() {
            return Err(Error::BootInfo(format!(
                "the Limine responses need more than the {} bytes sized for them",
                self.bytes.len()
            )));
        }
        self.used = at + len;
        Ok(at)
    }

    fn words(&mut self, words: &[u64]) -> Result<u64, Error> {
        let at = self.room(words.len() * 8)?;
        for (i, w) in words.iter().enumerate() {
            self.bytes[at + i * 8..at + i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        Ok(self.virt + at as u64)
    }

    fn bytes_(&mut self, data: &[u8]) -> Result<u64, Error> {
        let at = self.room(data.len())?;
        self.bytes[at..at + data.len()].copy_from_slice(data);
        Ok(self.virt + at as u64)
    }

    /// A NUL-terminated string (the block is zeroed: the terminator is there).
    fn string(&mut self, s: &str) -> Result<u64, Error> {
        let at = self.room(s.len() + 1)?;
        self.bytes[at..at + s.len()].copy_from_slice(s.as_bytes());
        Ok(self.virt + at as u64)
    }

    /// A `struct limine_file` for a file at `phys` of `size` bytes.
    fn file(
        &mut self,
        hhdm: u64,
        (phys, size): (u64, u64),
        path: &str,
        cmdline: &str,
    ) -> Result<u64, Error> {
        let (path, cmdline) = (self.string(path)?, self.string(cmdline)?);
        let mut f = [0u8; FILE_SIZE];
        for (i, w) in [0, phys + hhdm, size, path, cmdline].iter().enumerate() {
            f[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        // media_type GENERIC (0); no TFTP, partition index or UUIDs (left 0: "invalid").
        self.bytes_(&f)
    }
}

impl Protocol for Limine {
    fn prepare(&mut self, boot: &Boot) -> u64 {
        let cfg = &boot.inputs.config;
        let entries = boot.firmware.map_entries;
        self.map = Vec::with_capacity(boot.firmware.map_capacity + 1);
        let arrays = (boot.firmware.map_capacity + 1)
            .max(cfg.modules.len())
            .max(boot.cpus.len());
        self.scratch = Vec::with_capacity(arrays);
        let files = cfg.modules.len() + 1;
        let strings = super::config_string_bytes(cfg)
            + cfg.modules.iter().map(|m| m.path.len() + 8).sum::<usize>()
            + boot.inputs.kernel.path.len()
            + 256;
        (core::mem::size_of_val(&GDT)
            + self.found.requests.len() * 64
            + (entries + 1) * (24 + 8)
            + entries * EFI_DESCRIPTOR_SIZE as usize
            + files * (FILE_SIZE + 8)
            + FRAMEBUFFER_SIZE
            + boot.cpus.len() * (8 + core::mem::size_of_val(&GDT))
            + MP_INFO_SIZE
            + 32
            + 8
            + strings
            + 64) as u64
    }

    fn write(&mut self, boot: &Boot, info: Info<'_>) -> Result<Handoff, Error> {
        let hhdm = boot.space.direct_map_offset;
        let gdt_len = core::mem::size_of_val(&GDT);
        let mut w = Writer {
            bytes: info.bytes,
            used: 0,
            virt: info.phys + hhdm,
        };
        let gdt = w.words(&GDT)?;
        debug_assert_eq!(w.used, gdt_len);
        // Base revision 4's "reserved mapped" type; 0 (none) before it.
        let mapped_below = if self.revision() >= 4 {
            boot.space.direct_map_size
        } else {
            0
        };
        limine_map(info.map, &mut self.map, mapped_below);
        for i in 0..self.found.requests.len() {
            let r = self.found.requests[i];
            if let Some(response) = self.respond(boot, &r, &mut w, info.firmware_map)? {
                // The `response` member: the request's sixth word (PROTOCOL.md "Features").
                self.write_word(boot, r.vaddr + 40, response);
            }
        }
        if let Some((vaddr, _, revision)) = self.found.tag {
            // PROTOCOL.md "Base protocol revisions": 0 in the third word means supported; the
            // second word says the revision the kernel was booted with (what the `limine`
            // crate's `loaded_revision` reads).
            self.write_word(boot, vaddr + 16, 0);
            self.write_word(boot, vaddr + 8, revision);
        }
        let entry = self.entry(boot);
        self.mask_io_apics(boot);
        if self.strict() {
            self.iommus_off(boot);
        }
        Ok(Handoff {
            mode: EntryMode::Limine {
                strict: self.strict(),
                hhdm,
                la57_switch: boot.space.la57_switch,
            },
            cr3: boot.space.cr3,
            stack_top: boot.space.stack_top(),
            entry,
            boot_info: 0,
            gdt_virt: gdt,
        })
    }
}

impl Limine {
    /// The base revision the kernel is booted with (the scan refused any other).
    fn revision(&self) -> u64 {
        self.found.base_revision()
    }

    /// Base revision 5's stricter entry state, on the BSP and every AP.
    fn strict(&self) -> bool {
        self.revision() >= crate::limine::STRICT_ENTRY_REVISION
    }

    /// The I/O APICs' redirection entries as PROTOCOL.md's entry state has them
    /// (`crate::ioapic`), the firmware being gone; each I/O APIC said on serial.
    fn mask_io_apics(&self, boot: &Boot) {
        let window = crate::hv::PhysWindow {
            offset: self.phys_offset,
        };
        let Ok(madt) = hvboot_api::acpi::Madt::find(&window, boot.firmware.tables.rsdp) else {
            return;
        };
        for (id, phys) in crate::ioapic::io_apics(&madt) {
            // SAFETY: the MADT's I/O APIC, below 4 GiB where both loaders reach physical
            // memory at `phys_offset`; the firmware that used it has been left.
            let mut w = unsafe { crate::mmio::Mmio::new(phys + self.phys_offset) };
            let (entries, newly) = crate::ioapic::mask_entries(&mut w, self.strict());
            log::info!("limine: I/O APIC {id} at {phys:#x}: {entries} entries, {newly} masked");
        }
    }

    /// Base revision 5: every VT-d and AMD-Vi unit the DMAR and IVRS list turned off
    /// (`crate::iommu`), the firmware being gone; each said on serial, a unit that does not
    /// acknowledge as a warning (the kernel is entered all the same: its DMA may then be
    /// translated, which it can see in the unit's status).
    fn iommus_off(&self, boot: &Boot) {
        use crate::iommu::{turn_off, units, Kind};
        use crate::mmio::Mmio;
        let window = crate::hv::PhysWindow {
            offset: self.phys_offset,
        };
        let t = &boot.acpi_tables;
        for (kind, phys, sig) in [(Kind::VtD, t.dmar, b"DMAR"), (Kind::AmdVi, t.ivrs, b"IVRS")] {
            let Ok(table) = hvboot_api::acpi::read_table(&window, phys, Some(sig)) else {
                continue;
            };
            for base in units(kind, table) {
                if base.saturating_add(0x1000) > 4 << 30 {
                    // The BIOS loader reaches only the first 4 GiB; hardware puts these
                    // registers in the MMIO hole below it.
                    log::warn!(
                        "limine: {} unit at {base:#x} left on: above 4 GiB",
                        kind.name()
                    );
                    continue;
                }
                // SAFETY: a register page the firmware's table names, below 4 GiB on every
                // machine that has one (VT-d and AMD-Vi place them in the MMIO hole), where
                // both loaders reach physical memory at `phys_offset`.
                let mut r = unsafe { Mmio::new(base + self.phys_offset) };
                let o = turn_off(kind, &mut r);
                let what = format!(
                    "limine: {} unit at {base:#x} off: status {:#x} -> {:#x}",
                    kind.name(),
                    o.before,
                    o.after
                );
                if o.acknowledged {
                    log::info!("{what}");
                } else {
                    log::warn!("{what}, not acknowledged");
                }
            }
        }
    }

    /// A firmware table's address in a response: physical in the base revisions `physical`
    /// (PROTOCOL.md "Base Revision Changes Summary": the RSDP in revision 3 only, SMBIOS and
    /// the EFI system table in 3 and 4), else through the HHDM; 0 stays 0 (absent).
    fn table(&self, phys: u64, physical: core::ops::RangeInclusive<u64>, hhdm: u64) -> u64 {
        if phys == 0 || physical.contains(&self.revision()) {
            phys
        } else {
            phys + hhdm
        }
    }

    /// Word `at` (a virtual address in the kernel's image) written through the kernel's
    /// physical placement.
    fn write_word(&self, boot: &Boot, vaddr: u64, value: u64) {
        let phys = Self::image_phys(boot, vaddr);
        // SAFETY: the scan found the word inside a segment's file bytes, which `place` copied
        // to the kernel's block; the loader reaches physical memory at `phys_offset`.
        unsafe {
            core::ptr::write_unaligned((phys + self.phys_offset) as *mut u64, value);
        }
    }

    /// Where the word at link-time address `vaddr` (the scan's) of the kernel's image is in
    /// physical memory: the image runs at its link address moved by its slide.
    fn image_phys(boot: &Boot, vaddr: u64) -> u64 {
        let plan = boot.inputs.kernel.plan();
        let offset = vaddr
            .wrapping_add(plan.slide())
            .wrapping_sub(plan.virt_start);
        boot.placed.kernel_phys + offset
    }

    /// The MP response (PROTOCOL.md "SMP (multiprocessor) Feature", x86-64) over hvboot's SMP
    /// engine (`flow::cpus`): every AP that arrived is parked on its mailbox, and its
    /// `limine_mp_info` is laid over the mailbox so that `goto_address` is the word the park
    /// loop watches and `extra_argument` the one it passes on; the mailbox's `cpu_start` (RDI at
    /// release) points at the info, and the stack top it is released with is 8 bytes lower,
    /// where a 0 return address lies, as on the BSP. The BSP's info is in the block. From base
    /// revision 5 the mailbox's release hook sends the AP through the BSP's strict state
    /// (`handoff::limine_ap_release`) on its own copy of [`GDT`] in the block.
    /// x2APIC is not turned on (flags 0): the request's bit asks for it only "if possible".
    fn mp(
        &mut self,
        boot: &Boot,
        aps: &crate::flow::cpus::Aps,
        w: &mut Writer<'_>,
    ) -> Result<u64, Error> {
        let hhdm = boot.space.direct_map_offset;
        let strict = self.strict();
        let infos = &mut self.scratch;
        infos.clear();
        let mut bsp_apic = 0u32;
        for (i, s) in aps.starts.iter().enumerate() {
            let ids = u64::from(s.acpi_uid) | u64::from(s.apic_id) << 32;
            if s.state == hvboot_api::CpuState::BSP {
                bsp_apic = s.apic_id;
                infos.push(w.words(&[ids, 0, 0, 0])?);
                continue;
            }
            let Some(k) = aps.slots.iter().position(|&j| j == i) else {
                continue;
            };
            if s.state != hvboot_api::CpuState::PARKED {
                continue;
            }
            let mailbox = aps.mailboxes[k] as u64;
            let info = mailbox - MP_INFO_GOTO;
            let virt = info - self.phys_offset + hhdm;
            // SAFETY: the info's first 16 bytes are reserved, zero bytes before the mailbox
            // (see the assertions at `MP_INFO_GOTO`); the mailbox's `cpu_start` and the stack
            // top are read by the AP only once the kernel writes `goto_address`.
            let gdt = if strict { w.words(&GDT)? } else { 0 };
            unsafe {
                core::ptr::write_volatile(info as *mut u64, ids);
                let m = aps.mailboxes[k];
                core::ptr::addr_of_mut!((*m).cpu_start).write_volatile(virt);
                if gdt != 0 {
                    let word = |at: usize| (m as *mut u8).add(at) as *mut u64;
                    word(MAILBOX_AP_GDT).write_volatile(gdt);
                    word(MAILBOX_AP_HHDM).write_volatile(hhdm);
                    let hook = word(crate::trampoline::MAILBOX_RELEASE_HOOK);
                    hook.write_volatile(crate::handoff::limine_ap_release());
                }
                let top = aps.stack_tops.add(k);
                top.write_volatile(top.read_volatile() - 8);
            }
            // The 0 return address, in the stack's last word (its extent: STACK, slot + 1).
            let stack = boot
                .placed
                .extents
                .iter()
                .find(|e| e.what == hvboot_api::ExtentKind::STACK && e.index == k as u32 + 1);
            if let Some(e) = stack {
                let last = e.phys + e.length - 8 + self.phys_offset;
                // SAFETY: the AP's own stack, unused until its release.
                unsafe { core::ptr::write_volatile(last as *mut u64, 0) };
            }
            infos.push(virt);
        }
        let array = w.words(infos)?;
        w.words(&[0, u64::from(bsp_apic) << 32, infos.len() as u64, array])
    }

    /// Member `index` (in words after the header) of request `r`, from the loaded image (a
    /// relocatable kernel's pointers there are relocated); 0 past the image's end (a request
    /// claiming a revision whose members it does not have).
    fn request_member(&self, boot: &Boot, r: &Request, index: u64) -> u64 {
        let off = REQUEST_HEADER + index * 8;
        let at = Self::image_phys(boot, r.vaddr + off);
        if at + 8 > boot.placed.kernel_phys + boot.placed.image_size {
            return 0;
        }
        // SAFETY: inside the kernel's block, which the loader reaches at `phys_offset`.
        unsafe { core::ptr::read_unaligned((at + self.phys_offset) as *const u64) }
    }

    /// The entry point: the Entry Point request's, else the ELF's.
    fn entry(&self, boot: &Boot) -> u64 {
        match self.found.request("entry point") {
            Some(r) => self.request_member(boot, r, 0),
            None => boot.inputs.kernel.plan().entry,
        }
    }

    /// Writes the response to `r` and returns its address, `None` for a request left
    /// unanswered.
    fn respond(
        &mut self,
        boot: &Boot,
        r: &Request,
        w: &mut Writer<'_>,
        firmware_map: &[hvboot_api::FirmwareMemoryEntry],
    ) -> Result<Option<u64>, Error> {
        let hhdm = boot.space.direct_map_offset;
        let t = &boot.firmware.tables;
        let cfg = &boot.inputs.config;
        let uefi = boot.firmware_kind == FirmwareKind::UEFI;
        let Some(name) = r.name() else {
            return Ok(None);
        };
        let response = match name {
            "bootloader info" => {
                let (n, v) = (
                    w.string(crate::LOADER_NAME)?,
                    w.string(crate::LOADER_VERSION)?,
                );
                w.words(&[0, n, v])?
            }
            // LIMINE_FIRMWARE_TYPE_X86BIOS 0, UEFI64 2.
            "firmware type" => w.words(&[0, if uefi { 2 } else { 0 }])?,
            "executable command line" => {
                let s = w.string(&cfg.cmdline)?;
                w.words(&[0, s])?
            }
            "stack size" | "entry point" => w.words(&[0])?,
            "HHDM" => w.words(&[0, hhdm])?,
            "framebuffer" => match &boot.firmware.framebuffer {
                Some(fb) => {
                    let f = framebuffer(fb, hhdm);
                    let one = w.bytes_(&f)?;
                    let array = w.words(&[one])?;
                    w.words(&[0, 1, array])?
                }
                None => return unanswered(name, "the firmware gave no framebuffer"),
            },
            "paging mode" => {
                // Request revision 1 adds max_mode and min_mode after mode.
                let min = if r.revision >= 1 {
                    self.request_member(boot, r, 2)
                } else {
                    0
                };
                // LIMINE_PAGING_MODE_X86_64_5LVL (1) when the address space is 5-level
                // (`flow::five_level`: asked for, and the CPU has LA57), else 4LVL (0).
                let five = boot.space.la57_switch != 0;
                if min > 0 && !five {
                    return unanswered(name, "min_mode 5-level, no LA57");
                }
                w.words(&[0, u64::from(five)])?
            }
            "memory map" => {
                self.scratch.clear();
                for e in &self.map {
                    self.scratch.push(w.words(e)?);
                }
                let array = w.words(&self.scratch)?;
                w.words(&[0, self.scratch.len() as u64, array])?
            }
            "executable file" => {
                let k = &boot.inputs.kernel;
                let f = w.file(hhdm, (k.file_phys, k.file_len), &k.path, &cfg.cmdline)?;
                w.words(&[0, f])?
            }
            "module" => {
                self.scratch.clear();
                for (m, &placed) in cfg.modules.iter().zip(&boot.placed.modules) {
                    self.scratch
                        .push(w.file(hhdm, placed, &m.path, &m.cmdline)?);
                }
                let array = w.words(&self.scratch)?;
                w.words(&[0, self.scratch.len() as u64, array])?
            }
            "RSDP" if t.rsdp != 0 => w.words(&[0, self.table(t.rsdp, 3..=3, hhdm)])?,
            "SMBIOS" if t.smbios != 0 || t.smbios3 != 0 => {
                let (e32, e64) = (
                    self.table(t.smbios, 3..=4, hhdm),
                    self.table(t.smbios3, 3..=4, hhdm),
                );
                w.words(&[0, e32, e64])?
            }
            "EFI system table" if uefi && t.system_table != 0 => {
                w.words(&[0, self.table(t.system_table, 3..=4, hhdm)])?
            }
            "EFI memory map" if uefi && !firmware_map.is_empty() => {
                let start = w.used.next_multiple_of(8);
                for e in firmware_map {
                    let d = [
                        u64::from(e.firmware_type),
                        e.base,
                        0,
                        e.length / PAGE,
                        e.attributes,
                    ];
                    w.words(&d)?;
                }
                let size = (w.used - start) as u64;
                let at = w.virt + start as u64;
                w.words(&[0, at, size, EFI_DESCRIPTOR_SIZE, 1])?
            }
            "executable address" => {
                let virt = boot.inputs.kernel.plan().virt_start;
                w.words(&[0, boot.placed.kernel_phys, virt])?
            }
            "bootloader performance" => {
                // reset_usec, init_usec, exec_usec (the `limine` crate's layout): the TSC at
                // the loader's entry and at the hand-off, in microseconds since reset.
                let hz = boot.tsc.0;
                if hz == 0 {
                    return unanswered(name, "the TSC's frequency is unknown");
                }
                let us = |tsc: u64| (u128::from(tsc) * 1_000_000 / u128::from(hz)) as u64;
                let handoff = boot.stamps[hvboot_api::TscStage::HANDOFF.0 as usize];
                w.words(&[0, 0, us(boot.stamps[0]), us(handoff)])?
            }
            "RSDP" | "SMBIOS" => return unanswered(name, "the firmware has none"),
            "EFI system table" | "EFI memory map" => {
                return unanswered(name, "booted by BIOS, there is no EFI")
            }
            "MP" => match &boot.aps {
                Some(aps) => {
                    // The request's `flags` bit 0: x2APIC mode "if possible" (PROTOCOL.md).
                    if self.request_member(boot, r, 0) & 1 != 0 {
                        log::warn!("limine: MP request's x2APIC flag left unset: no x2APIC switch");
                    }
                    self.mp(boot, aps, w)?
                }
                None => return unanswered(name, "no MADT lists the processors"),
            },
            // The Unix time the real-time clock gave while the firmware was there.
            "date at boot" => match boot.firmware.boot_time {
                Some(t) => w.words(&[0, t as u64])?,
                None => return unanswered(name, "no valid RTC time"),
            },
            _ => return unanswered(name, "not on x86-64"),
        };
        Ok(Some(response))
    }
}

/// A request hvboot knows but leaves unanswered here, said on the console.
fn unanswered(name: &str, why: &str) -> Result<Option<u64>, Error> {
    log::warn!("limine: {name} request left unanswered: {why}");
    Ok(None)
}

/// A `struct limine_framebuffer` (response revision 0) for `fb`.
fn framebuffer(fb: &hvboot_api::Framebuffer, hhdm: u64) -> [u8; FRAMEBUFFER_SIZE] {
    let mut f = [0u8; FRAMEBUFFER_SIZE];
    let words = [
        fb.phys_addr + hhdm,
        u64::from(fb.width),
        u64::from(fb.height),
        u64::from(fb.pitch),
    ];
    for (i, v) in words.iter().enumerate() {
        f[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    f[32..34].copy_from_slice(&fb.bpp.to_le_bytes());
    // LIMINE_FRAMEBUFFER_RGB: the masks describe the pixel, whatever hvboot's format.
    f[34] = 1;
    f[35..41].copy_from_slice(&[
        fb.red_mask_size,
        fb.red_mask_shift,
        fb.green_mask_size,
        fb.green_mask_shift,
        fb.blue_mask_size,
        fb.blue_mask_shift,
    ]);
    // unused[7], edid_size 0, edid NULL.
    f
}
