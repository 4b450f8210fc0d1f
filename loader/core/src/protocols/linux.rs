//! The Linux hand-off (Documentation/arch/x86/boot.rst, "64-bit BOOT PROTOCOL"; the zero page's
//! layout is Documentation/arch/x86/zero-page.rst): boot_params with the kernel's setup header
//! copied in and filled as a boot loader must, the command line, the e820 map (entries past the
//! zero page's 128 in a SETUP_E820_EXT setup_data), the initrd, the ACPI RSDP, screen_info for
//! the framebuffer and, under UEFI, efi_info; then the kernel entered at load address + 0x200 in
//! 64-bit mode with RSI = boot_params, on page tables of the block's own that identity-map all
//! memory (at least 4 GiB) and the GDT boot.rst asks for (`__BOOT_CS` 0x10, `__BOOT_DS` 0x18).
//!
//! The block (below 4 GiB, so every 32-bit pointer field holds its whole address): page 0
//! boot_params; page 1 the GDT, its descriptor and the entry stack; then the page tables, the
//! command line, the setup_data and the EFI memory map.

use alloc::vec::Vec;

use hvboot_api::{FirmwareKind, FirmwareMemoryEntry, Framebuffer};

use super::multiboot2::mb2_type;
use super::{Info, Protocol};
use crate::flow::{Boot, Error, Placement};
use crate::handoff::{EntryMode, Handoff};
use crate::linux::{ENTRY_64, HEADER_START};
use crate::memmap;
use crate::PAGE_SIZE as PAGE;

const FOUR_GIB: u64 = 1 << 32;
const GIB: u64 = 1 << 30;

// zero-page.rst offsets.
const SCREEN_INFO: usize = 0x000;
const ACPI_RSDP_ADDR: usize = 0x070;
const EXT_RAMDISK_IMAGE: usize = 0x0c0;
const EXT_RAMDISK_SIZE: usize = 0x0c4;
const EXT_CMD_LINE_PTR: usize = 0x0c8;
const EFI_INFO: usize = 0x1c0;
const E820_ENTRIES: usize = 0x1e8;
const E820_TABLE: usize = 0x2d0;
/// Entries the zero page's e820 table holds (E820_MAX_ENTRIES_ZEROPAGE).
const E820_IN_ZERO_PAGE: usize = 128;
const E820_ENTRY: usize = 20;
// Setup header offsets (boot.rst, "THE REAL-MODE KERNEL HEADER").
const TYPE_OF_LOADER: usize = 0x210;
const CODE32_START: usize = 0x214;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const SETUP_DATA: usize = 0x250;
/// `type_of_loader` 0xFF: boot.rst asks a boot loader without an assigned ID to put 0xFF here
/// (hvboot has none; the kernel only reports it in /sys/kernel/boot_params).
const LOADER_UNDEFINED: u8 = 0xff;
/// setup_data type SETUP_E820_EXT: more e820 entries (struct boot_e820_entry each).
const SETUP_E820_EXT: u32 = 1;
/// screen_info.orig_video_isVGA for a VESA linear framebuffer (BIOS) and an EFI one (UEFI).
const VIDEO_TYPE_VLFB: u8 = 0x23;
const VIDEO_TYPE_EFI: u8 = 0x70;
/// screen_info.capabilities: ext_lfb_base holds the base's high 32 bits.
const VIDEO_CAPABILITY_64BIT_BASE: u32 = 1 << 1;
/// The GDT of boot.rst: entries 2 (`__BOOT_CS`, 64-bit code) and 3 (`__BOOT_DS`, data).
const GDT: [u64; 4] = [0, 0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
/// EFI_MEMORY_DESCRIPTOR (UEFI 2.10 §7.2.3) as Linux reads efi_memmap: 40 bytes, version 1.
const EFI_DESCRIPTOR_SIZE: usize = 40;
/// EfiLoaderData: what the loader's own `0x8000_0000 | kind` allocations are to the kernel.
const EFI_LOADER_DATA: u32 = 2;

/// Where each piece lies in the block (bytes from its start).
#[derive(Default, Clone, Copy)]
struct Layout {
    tables: usize,
    table_pages: usize,
    cmdline: usize,
    setup_data: usize,
    efi_map: usize,
    end: usize,
}

/// The Linux protocol, with the setup header copied from the kernel's file before the hand-off.
pub struct Linux {
    /// The file's bytes from 0x1f1 to the end of its setup header.
    header: Vec<u8>,
    /// The top of the identity map (a multiple of 1 GiB, at least 4 GiB).
    identity_top: u64,
    layout: Layout,
    e820: Vec<(u64, u64, u32)>,
}

impl Linux {
    /// The protocol for a kernel whose setup header (from 0x1f1) is `header`.
    pub fn new(header: Vec<u8>) -> Self {
        Self {
            header,
            identity_top: FOUR_GIB,
            layout: Layout::default(),
            e820: Vec::new(),
        }
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The final map as e820 entries (types as Multiboot2's, which are E820's: RAM of every kind is
/// 1, as GRUB reports it; the kernel reserves its image, initrd and setup_data itself).
fn e820_map(map: &[memmap::Region], out: &mut Vec<(u64, u64, u32)>) {
    for r in map {
        let t = mb2_type(r.kind);
        match out.last_mut() {
            Some((base, len, lt)) if *lt == t && *base + *len == r.base => *len += r.length,
            _ => out.push((r.base, r.length, t)),
        }
    }
}

fn e820_entry(buf: &mut [u8], at: usize, &(base, len, t): &(u64, u64, u32)) {
    put(buf, at, &base.to_le_bytes());
    put(buf, at + 8, &len.to_le_bytes());
    put(buf, at + 16, &t.to_le_bytes());
}

/// The e820 map into boot_params (`buf` at `phys`): the first 128 entries in the zero page, the
/// rest in a SETUP_E820_EXT setup_data at `setup_at` chained from the header's `setup_data`.
fn write_e820(buf: &mut [u8], phys: u64, setup_at: usize, e820: &[(u64, u64, u32)]) {
    let (zero_page, rest) = e820.split_at(e820.len().min(E820_IN_ZERO_PAGE));
    for (i, e) in zero_page.iter().enumerate() {
        e820_entry(buf, E820_TABLE + i * E820_ENTRY, e);
    }
    buf[E820_ENTRIES] = zero_page.len() as u8;
    if !rest.is_empty() {
        // struct setup_data: next (0, the last), type, len, then the entries.
        put(buf, setup_at + 8, &SETUP_E820_EXT.to_le_bytes());
        put(
            buf,
            setup_at + 12,
            &((rest.len() * E820_ENTRY) as u32).to_le_bytes(),
        );
        for (i, e) in rest.iter().enumerate() {
            e820_entry(buf, setup_at + 16 + i * E820_ENTRY, e);
        }
        put(buf, SETUP_DATA, &(phys + setup_at as u64).to_le_bytes());
    }
}

/// screen_info (include/uapi/linux/screen_info.h) for `fb`; VGA text mode 3 under BIOS without
/// one (what the BIOS left on screen).
fn screen_info(si: &mut [u8], fb: Option<&Framebuffer>, firmware: FirmwareKind) {
    let Some(fb) = fb else {
        if firmware == FirmwareKind::BIOS {
            si[0x06] = 3; // orig_video_mode
            si[0x07] = 80; // orig_video_cols
            si[0x0e] = 25; // orig_video_lines
            si[0x0f] = 1; // orig_video_isVGA
            put(si, 0x10, &16u16.to_le_bytes()); // orig_video_points
        }
        return;
    };
    let uefi = firmware == FirmwareKind::UEFI;
    si[0x0f] = if uefi {
        VIDEO_TYPE_EFI
    } else {
        VIDEO_TYPE_VLFB
    };
    put(si, 0x12, &(fb.width as u16).to_le_bytes());
    put(si, 0x14, &(fb.height as u16).to_le_bytes());
    put(si, 0x16, &fb.bpp.to_le_bytes());
    put(si, 0x18, &(fb.phys_addr as u32).to_le_bytes());
    // efifb reads lfb_size in bytes, vesafb in 64 KiB units.
    let size = if uefi {
        fb.size
    } else {
        fb.size.div_ceil(1 << 16)
    };
    put(si, 0x1c, &(size as u32).to_le_bytes());
    put(si, 0x24, &(fb.pitch as u16).to_le_bytes());
    let masks = [
        fb.red_mask_size,
        fb.red_mask_shift,
        fb.green_mask_size,
        fb.green_mask_shift,
        fb.blue_mask_size,
        fb.blue_mask_shift,
        fb.reserved_mask_size,
        fb.reserved_mask_shift,
    ];
    put(si, 0x26, &masks);
    if fb.phys_addr >> 32 != 0 {
        put(si, 0x36, &VIDEO_CAPABILITY_64BIT_BASE.to_le_bytes());
        put(si, 0x3a, &((fb.phys_addr >> 32) as u32).to_le_bytes());
    }
}

/// Writes the firmware's final EFI map as 40-byte descriptors at `at`; returns its bytes.
fn efi_map(buf: &mut [u8], at: usize, map: &[FirmwareMemoryEntry]) -> usize {
    for (i, e) in map.iter().enumerate() {
        let d = at + i * EFI_DESCRIPTOR_SIZE;
        let t = if e.firmware_type >= 0x8000_0000 {
            EFI_LOADER_DATA
        } else {
            e.firmware_type
        };
        put(buf, d, &t.to_le_bytes());
        put(buf, d + 8, &e.base.to_le_bytes());
        put(buf, d + 24, &(e.length / PAGE).to_le_bytes());
        put(buf, d + 32, &e.attributes.to_le_bytes());
    }
    map.len() * EFI_DESCRIPTOR_SIZE
}

/// Page tables at `tables` (physical `phys`) identity-mapping 0..`top` with 2 MiB pages:
/// PML4, then the PDPTs, then one PD per GiB.
fn identity_map(buf: &mut [u8], phys: u64, top: u64) {
    let gibs = (top / GIB) as usize;
    let pdpts = gibs.div_ceil(512);
    let pdpt_phys = |i: usize| phys + ((1 + i) as u64) * PAGE;
    let pd_phys = |g: usize| phys + ((1 + pdpts + g) as u64) * PAGE;
    for i in 0..pdpts {
        put(buf, i * 8, &(pdpt_phys(i) | 3).to_le_bytes());
    }
    for g in 0..gibs {
        let pdpt = (1 + g / 512) * PAGE as usize;
        put(buf, pdpt + (g % 512) * 8, &(pd_phys(g) | 3).to_le_bytes());
        let pd = (1 + pdpts + g) * PAGE as usize;
        for e in 0..512 {
            let addr = g as u64 * GIB + (e as u64) * (2 << 20);
            // Present, writable, 2 MiB page.
            put(buf, pd + e * 8, &(addr | 0x83).to_le_bytes());
        }
    }
}

impl Protocol for Linux {
    fn prepare(&mut self, boot: &Boot) -> u64 {
        self.identity_top = boot.firmware.map_top.max(FOUR_GIB).next_multiple_of(GIB);
        let gibs = (self.identity_top / GIB) as usize;
        let table_pages = 1 + gibs.div_ceil(512) + gibs;
        let entries = boot.firmware.map_entries;
        let page = PAGE as usize;
        let tables = 2 * page;
        let cmdline = tables + table_pages * page;
        let setup_data = (cmdline + boot.inputs.config.cmdline.len() + 1).next_multiple_of(8);
        let efi_map = (setup_data + 16 + entries * E820_ENTRY).next_multiple_of(8);
        let end = efi_map + entries * EFI_DESCRIPTOR_SIZE;
        self.layout = Layout {
            tables,
            table_pages,
            cmdline,
            setup_data,
            efi_map,
            end,
        };
        self.e820 = Vec::with_capacity(boot.firmware.map_capacity);
        end as u64
    }

    fn placement(&self) -> Placement {
        Placement::Below(FOUR_GIB - 1)
    }

    fn write(&mut self, boot: &Boot, info: Info<'_>) -> Result<Handoff, Error> {
        let l = self.layout;
        let phys = info.phys;
        let buf = info.bytes;
        if phys + l.end as u64 > FOUR_GIB || buf.len() < l.end {
            return Err(Error::BootInfo(
                "the Linux boot_params block lies above 4 GiB or outgrew its room".into(),
            ));
        }
        // boot.rst: copy the setup header from the file, then fill the boot loader's fields.
        put(buf, HEADER_START, &self.header);
        buf[TYPE_OF_LOADER] = LOADER_UNDEFINED;
        let kernel = boot.placed.kernel_phys;
        put(buf, CODE32_START, &(kernel as u32).to_le_bytes());

        let cmdline = boot.inputs.config.cmdline.as_bytes();
        put(buf, l.cmdline, cmdline);
        let cmd_phys = phys + l.cmdline as u64;
        put(buf, CMD_LINE_PTR, &(cmd_phys as u32).to_le_bytes());
        put(
            buf,
            EXT_CMD_LINE_PTR,
            &((cmd_phys >> 32) as u32).to_le_bytes(),
        );

        // The initrd: the modules, concatenated in order by the place phase.
        let parts = &boot.placed.modules;
        if let Some(&(start, _)) = parts.first() {
            let size: u64 = parts.iter().map(|m| m.1).sum();
            put(buf, RAMDISK_IMAGE, &(start as u32).to_le_bytes());
            put(
                buf,
                EXT_RAMDISK_IMAGE,
                &((start >> 32) as u32).to_le_bytes(),
            );
            put(buf, RAMDISK_SIZE, &(size as u32).to_le_bytes());
            put(buf, EXT_RAMDISK_SIZE, &((size >> 32) as u32).to_le_bytes());
        }

        self.e820.clear();
        e820_map(info.map, &mut self.e820);
        write_e820(buf, phys, l.setup_data, &self.e820);

        put(
            buf,
            ACPI_RSDP_ADDR,
            &boot.firmware.tables.rsdp.to_le_bytes(),
        );
        let fb = boot.firmware.framebuffer.as_ref();
        screen_info(
            &mut buf[SCREEN_INFO..SCREEN_INFO + 64],
            fb,
            boot.firmware_kind,
        );

        let systab = boot.firmware.tables.system_table;
        if boot.firmware_kind == FirmwareKind::UEFI && systab != 0 {
            // efi_info: "EL64", the system table, the final memory map (zero-page.rst 0x1c0).
            let size = efi_map(buf, l.efi_map, info.firmware_map);
            let map = phys + l.efi_map as u64;
            let e = EFI_INFO;
            put(buf, e, b"EL64");
            put(buf, e + 4, &(systab as u32).to_le_bytes());
            put(buf, e + 8, &(EFI_DESCRIPTOR_SIZE as u32).to_le_bytes());
            put(buf, e + 12, &1u32.to_le_bytes());
            put(buf, e + 16, &(map as u32).to_le_bytes());
            put(buf, e + 20, &(size as u32).to_le_bytes());
            put(buf, e + 24, &((systab >> 32) as u32).to_le_bytes());
            put(buf, e + 28, &((map >> 32) as u32).to_le_bytes());
        }

        // Page 1: the GDT, its descriptor (limit, base) at +32, the stack below the page's end.
        let page1 = PAGE as usize;
        for (i, d) in GDT.iter().enumerate() {
            put(buf, page1 + i * 8, &d.to_le_bytes());
        }
        put(buf, page1 + 32, &((GDT.len() * 8 - 1) as u16).to_le_bytes());
        put(buf, page1 + 34, &(phys + PAGE).to_le_bytes());
        let tables_end = l.tables + l.table_pages * PAGE as usize;
        let tables_phys = phys + l.tables as u64;
        identity_map(
            &mut buf[l.tables..tables_end],
            tables_phys,
            self.identity_top,
        );

        Ok(Handoff {
            mode: EntryMode::Linux,
            cr3: tables_phys,
            stack_top: phys + 2 * PAGE,
            entry: kernel + ENTRY_64,
            boot_info: phys,
            gdt_virt: phys + PAGE + 32,
        })
    }
}

core::arch::global_asm!(
    ".section .text.hvboot_linux,\"ax\",@progbits",
    ".balign 16",
    ".global hvboot_linux64",
    "hvboot_linux64:",
    // rdi = CR3 (identity map), rsi = boot_params, rdx = entry, rcx = stack top,
    // r8 = the GDT's descriptor; all physical = virtual in the old and the new tables.
    "cli",
    "mov cr3, rdi",
    "mov rsp, rcx",
    "lgdt [r8]",
    "push 0x10",
    "lea rax, [rip + 2f]",
    "push rax",
    "retfq",
    "2:",
    "mov eax, 0x18",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov fs, eax",
    "mov gs, eax",
    "xor eax, eax",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor edi, edi",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "jmp rdx",
    ".text",
);

extern "C" {
    fn hvboot_linux64(cr3: u64, boot_params: u64, entry: u64, stack: u64, gdt: u64) -> !;
}

/// Enters the kernel as boot.rst's "64-bit BOOT PROTOCOL" says: long mode, the identity map in
/// `h.cr3`, CS = `__BOOT_CS`, DS/ES/SS = `__BOOT_DS`, interrupts off, RSI = boot_params.
///
/// # Safety
/// `h` must come from [`Linux::write`]: its tables map all memory, this code included.
pub unsafe fn enter(h: &Handoff) -> ! {
    hvboot_linux64(h.cr3, h.boot_info, h.entry, h.stack_top, h.gdt_virt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_map_covers_every_gib() {
        let top = 5 * GIB;
        let pages = 1 + 1 + 5;
        let mut buf = alloc::vec![0u8; pages * PAGE as usize];
        identity_map(&mut buf, 0x10_0000, top);
        let q = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
        assert_eq!(q(0), 0x10_1000 | 3);
        assert_eq!(q(0x1000 + 4 * 8), 0x10_0000 + 6 * 0x1000 | 3);
        // The last 2 MiB page of the fifth GiB maps itself.
        assert_eq!(q(6 * 0x1000 + 511 * 8), (5 * GIB - (2 << 20)) | 0x83);
    }

    /// 200 entries: 128 in the zero page, 72 in one SETUP_E820_EXT setup_data it points at.
    #[test]
    fn e820_entries_past_128_go_to_setup_data() {
        let e820: Vec<_> = (0..200u64)
            .map(|i| (i << 20, 0x8_0000, 1 + (i % 2) as u32))
            .collect();
        let (phys, setup_at) = (0x7_0000u64, 0x3000usize);
        let mut buf = alloc::vec![0u8; 0x4000];
        write_e820(&mut buf, phys, setup_at, &e820);
        let q = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
        let d = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
        assert_eq!(buf[E820_ENTRIES], 128);
        assert_eq!(
            (q(E820_TABLE + 127 * 20), d(E820_TABLE + 127 * 20 + 16)),
            (127 << 20, 2)
        );
        assert_eq!(q(SETUP_DATA), phys + setup_at as u64);
        assert_eq!(
            (q(setup_at), d(setup_at + 8), d(setup_at + 12)),
            (0, 1, 72 * 20)
        );
        let last = setup_at + 16 + 71 * 20;
        assert_eq!(
            (q(last), q(last + 8), d(last + 16)),
            (199 << 20, 0x8_0000, 2)
        );
    }

    #[test]
    fn neighbours_of_one_type_merge() {
        use hvboot_api::MemoryKind;
        let r = |base, length, kind: MemoryKind| memmap::Region {
            base,
            length,
            kind: kind.0,
        };
        let map = [
            r(0, 0x9f000, MemoryKind::USABLE),
            r(0x10_0000, 0x10_0000, MemoryKind::USABLE),
            r(0x20_0000, 0x10_0000, MemoryKind::KERNEL),
            r(0x30_0000, 0x1000, MemoryKind::ACPI_NVS),
        ];
        let mut out = Vec::new();
        e820_map(&map, &mut out);
        assert_eq!(
            out,
            [
                (0, 0x9f000, 1),
                (0x10_0000, 0x20_0000, 1),
                (0x30_0000, 0x1000, 4)
            ]
        );
    }
}
