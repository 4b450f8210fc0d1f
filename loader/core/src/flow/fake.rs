//! A platform and a CPU for host tests of the whole flow. "Physical memory" 0..[`RAM_END`] is a
//! host arena (phys `a` at `arena + a`, through `Platform::phys_offset`); the firmware's memory
//! map, tables, framebuffer and files are what a test puts in. Allocation is top-down like the
//! BIOS platform's and honours every `Placement`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use core::cell::{Cell, RefCell};

use hvboot_api::cpu::virt::Regs;
use hvboot_api::{FirmwareKind, FirmwareMemoryEntry, Framebuffer, MemoryKind, PixelFormat};

use super::{framebuffer_32bpp, Cpu, FirmwareTables, Ipi, Placement, Platform, PlatformError};
use crate::memmap::Region;
use crate::trampoline::{self, ApParams};
use crate::PAGE_SIZE as PAGE;
use hvboot_api::{CpuMailbox, MailboxState};

pub const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The end of the arena-backed RAM.
pub const RAM_END: u64 = 320 * MIB;
/// Where the fake's default framebuffer lives (not backed: the flow never writes it).
pub const FB_PHYS: u64 = 0xFD00_0000;
/// The fake CPU's TSC rate, as its PM timer sees it.
pub const FAKE_TSC_HZ: u64 = 2_000_000_000;
/// The fake FADT's PM timer port (PM_TMR_BLK).
pub const FAKE_PM_PORT: u16 = 0x608;

/// The fake's RSDP address: zeros (no RSDP, so no CPU list) unless `with_madt` writes tables.
pub const RSDP: u64 = 0xE_0000;
const ALIGN: usize = 2 << 20;

/// The fake firmware.
pub struct FakePlatform {
    /// The calloc'd block (lazily zeroed pages) and, inside it, phys 0 (2 MiB aligned).
    block: *mut u8,
    arena: *mut u8,
    /// The firmware's memory map (E820-like types: 1 usable, 2 reserved, 3 ACPI).
    pub firmware_map: Vec<(u64, u64, u32)>,
    /// Files on the "ESP".
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every allocation: base, page-rounded length, kind.
    pub allocations: Vec<Region>,
    /// Kinds whose allocations fail (OUT_OF_RESOURCES).
    pub refuse: Vec<u32>,
    /// Whether pages below 1 MiB can be had.
    pub low_pages: bool,
    /// The framebuffer's default mode, None for a machine without one.
    pub framebuffer: Option<(u32, u32)>,
    /// The sizes `framebuffer_sized` was asked for.
    pub sized_requests: Vec<(u32, u32)>,
    /// Set by `exit_firmware`; nothing may be asked of the platform after it.
    pub exited: bool,
    /// Reserved pages the firmware's final map gains at exit (as ExitBootServices may add).
    pub exit_extra: u64,
    /// An EFI system table's address to publish (0: none, a BIOS machine); with one, the
    /// firmware can be kept (`keep_firmware`) and the loader has an image handle.
    pub system_table: u64,
    /// Set by `keep_firmware`: the boot services were kept for the kernel.
    pub kept: bool,
    /// What "VBE" says of the mode set, as a BIOS platform keeps it.
    pub vbe: Option<super::VbeInfo>,
    /// The real-time clock's reading (Unix seconds), None for a machine without one.
    pub clock: Option<i64>,
    /// A TPM: every measurement (PCR, bytes hashed, event data) in order; None for none.
    pub tpm: Option<Vec<(u32, Vec<u8>, Vec<u8>)>>,
}

/// The fake TPM's event log: these bytes in a fresh BOOT_INFO page.
pub const FAKE_EVENT_LOG: &[u8] = b"Spec ID Event03";

/// The fake's image handle, given when it has a system table.
pub const IMAGE_HANDLE: u64 = 0x7_1000;

impl FakePlatform {
    /// A machine with RAM up to [`RAM_END`] (holes below 1 MiB and an ACPI range), a reserved
    /// MMIO page at the local APIC and a 1024x768 framebuffer.
    pub fn new() -> Self {
        // Over-aligned alloc_zeroed would memset the whole arena; calloc's fresh mapping is
        // zero already, so align by hand inside a block one alignment larger.
        let layout = Layout::from_size_align(RAM_END as usize + ALIGN, 16).unwrap();
        // SAFETY: non-zero size; freed in Drop with the same layout.
        let block = unsafe { alloc_zeroed(layout) };
        assert!(!block.is_null(), "no host memory for the arena");
        let arena = block.wrapping_add(block.align_offset(ALIGN));
        Self {
            block,
            arena,
            firmware_map: std::vec![
                (0, PAGE, 2),
                (PAGE, 0x9_F000 - PAGE, 1),
                (0x9_F000, 0x10_0000 - 0x9_F000, 2),
                (0x10_0000, 200 * MIB - 0x10_0000, 1),
                (200 * MIB, MIB, 3),
                (201 * MIB, RAM_END - 201 * MIB, 1),
                (0xFEE0_0000, PAGE, 2),
            ],
            files: BTreeMap::new(),
            allocations: Vec::new(),
            refuse: Vec::new(),
            low_pages: true,
            framebuffer: Some((1024, 768)),
            sized_requests: Vec::new(),
            exited: false,
            exit_extra: 0,
            system_table: 0,
            kept: false,
            vbe: None,
            clock: None,
            tpm: None,
        }
    }

    /// Puts a file on the ESP.
    pub fn file(&mut self, path: &str, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.files.insert(path.to_string(), bytes.into());
        self
    }

    /// The arena's bytes at `phys`.
    pub fn bytes(&self, phys: u64, len: u64) -> &[u8] {
        assert!(
            phys + len <= RAM_END,
            "{phys:#x}+{len:#x} is outside the arena"
        );
        // SAFETY: inside the arena.
        unsafe { core::slice::from_raw_parts(self.arena.add(phys as usize), len as usize) }
    }

    /// ACPI 1.0 tables for `cpus` processors (APIC IDs 0..cpus, all enabled): the RSDP at
    /// [`RSDP`], an RSDT and a MADT behind it (ACPI 6.5 §5.2.5, §5.2.7, §5.2.12).
    pub fn with_madt(&mut self, cpus: u8) -> &mut Self {
        let list: Vec<(u8, u32)> = (0..cpus).map(|id| (id, 1)).collect();
        self.with_madt_cpus(&list)
    }

    /// Like [`FakePlatform::with_madt`] with each processor's (APIC ID, MADT flags): bit 0
    /// Enabled, bit 1 Online Capable. The ACPI UID is the APIC ID.
    pub fn with_madt_cpus(&mut self, cpus: &[(u8, u32)]) -> &mut Self {
        self.with_acpi_tables(cpus, &[])
    }

    /// Like [`FakePlatform::with_madt_cpus`], and after the MADT in the RSDT one table (a bare
    /// header; a FADT with a PM timer) of each signature in `more`; table `i` lies at [`FakePlatform::acpi_table_at`].
    pub fn with_acpi_tables(&mut self, cpus: &[(u8, u32)], more: &[[u8; 4]]) -> &mut Self {
        let entries: Vec<u8> = cpus
            .iter()
            .flat_map(|&(id, flags)| {
                let mut e = std::vec![0, 8, id, id]; // Processor Local APIC
                e.extend_from_slice(&flags.to_le_bytes());
                e
            })
            .collect();
        self.with_madt_entries(&entries, more)
    }

    /// A MADT whose processors are (x2APIC ID, flags) in Processor Local x2APIC entries (type
    /// 9, ACPI 6.5 §5.2.12.12; ACPI UID = the ID), and nothing else in the RSDT.
    pub fn with_x2apic_madt(&mut self, cpus: &[(u32, u32)]) -> &mut Self {
        let entries: Vec<u8> = cpus
            .iter()
            .flat_map(|&(id, flags)| {
                let mut e = std::vec![9, 16, 0, 0];
                for v in [id, flags, id] {
                    e.extend_from_slice(&v.to_le_bytes());
                }
                e
            })
            .collect();
        self.with_madt_entries(&entries, &[])
    }

    fn with_madt_entries(&mut self, entries: &[u8], more: &[[u8; 4]]) -> &mut Self {
        let rsdt_at = RSDP + 0x100;
        let sdt = |sig: &[u8; 4], body: &[u8]| {
            let mut t = std::vec![0u8; 36];
            t[..4].copy_from_slice(sig);
            t[4..8].copy_from_slice(&(36 + body.len() as u32).to_le_bytes());
            t[8] = 1;
            t.extend_from_slice(body);
            t[9] = checksum(&t);
            t
        };
        let mut madt = Vec::new();
        madt.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
        madt.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        madt.extend_from_slice(entries);
        let mut rsdp = std::vec![0u8; 20];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[16..20].copy_from_slice(&(rsdt_at as u32).to_le_bytes());
        rsdp[8] = checksum(&rsdp);
        let madt_at = Self::acpi_table_at(0);
        let mut tables = std::vec![(RSDP, rsdp), (madt_at, sdt(b"APIC", &madt))];
        for (i, sig) in more.iter().enumerate() {
            // A FADT (ACPI 6.5 §5.2.9) has PM_TMR_BLK = FAKE_PM_PORT at 76, PM_TMR_LEN 4 at 91.
            let mut body = std::vec![0u8; if sig == b"FACP" { 244 - 36 } else { 0 }];
            if sig == b"FACP" {
                body[76 - 36..80 - 36].copy_from_slice(&u32::from(FAKE_PM_PORT).to_le_bytes());
                body[91 - 36] = 4;
            }
            tables.push((Self::acpi_table_at(i + 1), sdt(sig, &body)));
        }
        let entries: Vec<u8> = tables[1..]
            .iter()
            .flat_map(|(at, _)| (*at as u32).to_le_bytes())
            .collect();
        tables.push((rsdt_at, sdt(b"RSDT", &entries)));
        for (at, bytes) in tables {
            // SAFETY: inside the arena, in a reserved range the flow never allocates.
            let dest = unsafe { super::phys_slice(self, at, bytes.len() as u64) };
            dest.copy_from_slice(&bytes);
        }
        self
    }

    /// Where [`FakePlatform::with_acpi_tables`] puts table `i` (0 = the MADT).
    pub const fn acpi_table_at(i: usize) -> u64 {
        RSDP + 0x200 + 0x100 * i as u64
    }

    fn usable(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let low = if self.low_pages { 0 } else { 0x10_0000 };
        self.firmware_map
            .iter()
            .filter(|r| r.2 == 1)
            .map(move |&(b, l, _)| (b.max(low), b + l))
            .filter(|(b, e)| b < e)
    }

    fn free(&self, start: u64, size: u64) -> bool {
        let end = start + size;
        self.usable().any(|(b, e)| b <= start && end <= e)
            && self
                .allocations
                .iter()
                .all(|a| end <= a.base || a.end() <= start)
    }

    fn take(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, PlatformError> {
        assert!(!self.exited, "allocation after exit_firmware");
        if self.refuse.contains(&kind) {
            return Err(PlatformError::Status("OUT_OF_RESOURCES".into()));
        }
        let size = bytes.max(1).next_multiple_of(PAGE);
        let (limit, align) = match at {
            Placement::At(p) => {
                if p % PAGE != 0 || !self.free(p, size) {
                    let allowed = "in the fake's RAM";
                    return Err(PlatformError::NotFree {
                        start: p,
                        end: p + size,
                        allowed,
                    });
                }
                self.allocations.push(Region {
                    base: p,
                    length: size,
                    kind,
                });
                return Ok(p);
            }
            Placement::Anywhere => (u64::MAX, PAGE),
            Placement::Below(max) => (max.saturating_add(1), PAGE),
            Placement::Aligned(a) => (u64::MAX, a.max(PAGE)),
            Placement::AlignedBelow { align, max } => (max.saturating_add(1), align.max(PAGE)),
        };
        let ends = self.usable().map(|(_, e)| e.min(limit));
        let below = self.allocations.iter().map(|a| a.base.min(limit));
        let mut starts: Vec<u64> = ends
            .chain(below)
            .filter(|&e| e >= size)
            .map(|e| (e - size) & !(align - 1))
            .collect();
        // Highest first, stopping at the first free one: a firmware map of thousands of
        // entries would otherwise make every allocation check them all.
        starts.sort_unstable_by(|a, b| b.cmp(a));
        let start =
            starts
                .into_iter()
                .find(|&s| self.free(s, size))
                .ok_or(PlatformError::NoFreeBlock {
                    size,
                    limit: limit.min(RAM_END),
                })?;
        self.allocations.push(Region {
            base: start,
            length: size,
            kind,
        });
        Ok(start)
    }

    fn zero(&mut self, phys: u64, bytes: u64) {
        let len = bytes.max(1).next_multiple_of(PAGE);
        // SAFETY: an allocation inside the arena.
        unsafe { core::ptr::write_bytes(self.arena.add(phys as usize), 0, len as usize) };
    }

    fn fb(&self, (width, height): (u32, u32)) -> Framebuffer {
        let masks = [8, 16, 8, 8, 8, 0, 8, 24];
        let bytes = u64::from(width * 4) * u64::from(height);
        framebuffer_32bpp(
            FB_PHYS,
            bytes,
            (width, height, width * 4),
            PixelFormat::BGR,
            masks,
        )
    }
}

/// The byte that makes `bytes` sum to zero (with the checksum byte itself zero).
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(RAM_END as usize + ALIGN, 16).unwrap();
        // SAFETY: allocated in new() with this layout.
        unsafe { dealloc(self.block, layout) };
    }
}

impl Platform for FakePlatform {
    const FIRMWARE: FirmwareKind = FirmwareKind::BIOS;

    fn tpm(&mut self) -> Result<(), PlatformError> {
        match self.tpm {
            Some(_) => Ok(()),
            None => Err(PlatformError::Unsupported("the fake has no TPM")),
        }
    }

    fn measure(&mut self, pcr: u32, data: &[u8], event: &[u8]) -> Result<(), PlatformError> {
        assert!(!self.exited, "measured after leaving the firmware");
        let log = self.tpm.as_mut().expect("measured without a TPM");
        log.push((pcr, data.to_vec(), event.to_vec()));
        Ok(())
    }

    fn tpm_event_log(&mut self) -> Result<(u64, u64), PlatformError> {
        let len = FAKE_EVENT_LOG.len() as u64;
        let phys = self.allocate(MemoryKind::BOOT_INFO.0, len, Placement::Anywhere)?;
        // SAFETY: just allocated, `len` bytes.
        unsafe { super::phys_slice(self, phys, len) }.copy_from_slice(FAKE_EVENT_LOG);
        Ok((phys, len))
    }

    fn allocate(&mut self, kind: u32, bytes: u64, at: Placement) -> Result<u64, PlatformError> {
        let phys = self.take(kind, bytes, at)?;
        self.zero(phys, bytes);
        Ok(phys)
    }

    fn allocate_untouched(
        &mut self,
        kind: u32,
        bytes: u64,
        at: Placement,
    ) -> Result<u64, PlatformError> {
        self.take(kind, bytes, at)
    }

    fn allocate_low_page(&mut self, kind: u32) -> Result<u64, PlatformError> {
        let at = Placement::AlignedBelow {
            align: PAGE,
            max: 0xF_FFFF,
        };
        match self.take(kind, PAGE, at) {
            Ok(0) | Err(_) => Err(PlatformError::NoLowPage {
                from: PAGE,
                to: 0xA_0000,
            }),
            Ok(p) => Ok(p),
        }
    }

    fn read_file(
        &mut self,
        path: &str,
        kind: u32,
        limit: u64,
    ) -> Result<(u64, u64), PlatformError> {
        let Some(bytes) = self.files.get(path).cloned() else {
            return Err(PlatformError::File(format!("{path}: not found")));
        };
        let size = bytes.len() as u64;
        if size > limit {
            let why = format!("{path}: {size} bytes, more than the {limit} allowed");
            return Err(PlatformError::File(why));
        }
        // As the real platforms word it (fat.rs, loader/uefi files.rs): the file is named.
        let phys = self
            .take(kind, size, Placement::Anywhere)
            .map_err(|e| PlatformError::File(format!("{path}: no memory for {size} bytes: {e}")))?;
        self.zero(phys, size);
        // SAFETY: the allocation just made, `size` bytes at least.
        let dest = unsafe { super::phys_slice(self, phys, size) };
        dest.copy_from_slice(&bytes);
        Ok((phys, size))
    }

    fn tables(&mut self) -> FirmwareTables {
        FirmwareTables {
            rsdp: RSDP,
            smbios: 0xF_0000,
            smbios3: 0xF_0100,
            system_table: self.system_table,
            tpm_final_events: 0,
        }
    }

    fn framebuffer(&mut self) -> Option<Framebuffer> {
        self.framebuffer.map(|mode| self.fb(mode))
    }

    fn framebuffer_sized(&mut self, width: u32, height: u32) -> Option<Framebuffer> {
        self.sized_requests.push((width, height));
        self.framebuffer.map(|_| self.fb((width, height)))
    }

    fn memory_extent(&mut self) -> Result<(u64, usize), PlatformError> {
        let top = self
            .firmware_map
            .iter()
            .map(|r| r.0 + r.1)
            .max()
            .unwrap_or(0);
        Ok((top, self.firmware_map.len() + 96))
    }

    fn keep_firmware(&mut self, regions: &mut Vec<Region>) -> Result<(), PlatformError> {
        assert!(
            self.system_table != 0,
            "only UEFI has boot services to keep"
        );
        self.exit_firmware(regions);
        (self.exited, self.kept) = (false, true);
        Ok(())
    }

    fn vbe_info(&self) -> Option<super::VbeInfo> {
        self.vbe
    }

    fn wall_clock(&mut self) -> Option<i64> {
        self.clock
    }

    fn image_handle(&self) -> u64 {
        if self.system_table != 0 {
            IMAGE_HANDLE
        } else {
            0
        }
    }

    fn exit_firmware(&mut self, regions: &mut Vec<Region>) {
        assert!(regions.capacity() > 0, "no room reserved for the map");
        let cap = regions.capacity();
        for &(base, length, t) in &self.firmware_map {
            let kind = match t {
                1 => MemoryKind::USABLE.0,
                3 => MemoryKind::ACPI_RECLAIMABLE.0,
                _ => MemoryKind::RESERVED.0,
            };
            regions.push(Region { base, length, kind });
        }
        regions.extend_from_slice(&self.allocations);
        regions.extend((0..self.exit_extra).map(|i| Region {
            base: 8 * GIB + i * 2 * PAGE,
            length: PAGE,
            kind: MemoryKind::RESERVED.0,
        }));
        assert_eq!(regions.capacity(), cap, "the map outgrew its reserved room");
        self.exited = true;
    }

    fn firmware_map(&mut self, out: &mut Vec<FirmwareMemoryEntry>) {
        out.extend(
            self.firmware_map
                .iter()
                .map(|&(base, length, t)| FirmwareMemoryEntry {
                    base,
                    length,
                    firmware_type: t,
                    reserved: 0,
                    attributes: 0,
                }),
        );
    }

    fn phys_offset(&self) -> u64 {
        self.arena as u64
    }
}

/// A CPU with a counting TSC and AMD-like CPUID (SVM with nested paging), 1 GiB pages or not.
pub struct FakeCpu {
    tsc: Cell<u64>,
    /// CPUID.80000001h:EDX[26].
    pub gib_pages: bool,
    /// CPUID.(07H,0):ECX[16], 5-level paging (the highest leaf is then 7, else 1).
    pub la57: bool,
    /// WRMSRs made.
    pub msr_writes: RefCell<Vec<(u32, u64)>>,
    /// The application processors it simulates.
    pub aps: RefCell<ApSim>,
    /// PIT channel 2 (None: no PIT, its ports read 0xFF).
    pub pit: RefCell<Option<FakePit>>,
}

/// PIT channel 2 as `tsc::measure_pit` drives it: mode 0 counting down from the loaded count
/// at `tsc::PIT_HZ` (derived from the TSC at [`FAKE_TSC_HZ`]) from the gate's rise; the latch
/// command and the low-then-high byte order of both the count and the latched value.
#[derive(Default, Clone, Copy)]
pub struct FakePit {
    gate: bool,
    reload: u16,
    started: u64,
    latched: Option<u16>,
    high_next: bool,
    port61: u8,
}

impl FakePit {
    fn count(&self, tsc: u64) -> u16 {
        if !self.gate {
            return self.reload;
        }
        let ticks = u128::from(tsc - self.started) * u128::from(super::tsc::PIT_HZ)
            / u128::from(FAKE_TSC_HZ);
        self.reload.wrapping_sub(ticks as u16)
    }
}

/// Simulated APs: each one listed in `answer` does at its first SIPI what the trampoline does
/// (finds its slot by APIC ID in the parameters, writes its report in its mailbox, parks).
#[derive(Default)]
pub struct ApSim {
    /// The platform's `phys_offset` (the arena).
    pub arena: u64,
    /// The direct map the parameters' addresses are in.
    pub direct_map_offset: u64,
    /// APIC IDs of the APs that answer.
    pub answer: Vec<u32>,
    /// (APIC ID, microcode revision) of APs whose microcode differs from the BSP's 0.
    pub microcode: Vec<(u32, u64)>,
    /// Every IPI sent: (destination, IPI).
    pub ipis: Vec<(u32, Ipi)>,
    /// The parameters the trampoline was given (at the first SIPI).
    pub params: Option<ApParams>,
}

impl ApSim {
    /// APs `answer` answering on `p`'s arena, with the default direct map.
    pub fn on(p: &FakePlatform, answer: &[u32]) -> Self {
        Self {
            arena: p.phys_offset(),
            direct_map_offset: hvboot_api::DEFAULT_DIRECT_MAP_OFFSET,
            answer: answer.to_vec(),
            ..Self::default()
        }
    }

    fn phys(&self, virt: u64) -> *mut u8 {
        (virt - self.direct_map_offset + self.arena) as *mut u8
    }

    fn sipi(&mut self, dest: u32, vector: u8, tsc: u64) {
        let at = (u64::from(vector) << 12) + trampoline::params_offset() as u64 + self.arena;
        // SAFETY: the trampoline page lies in the arena; ApParams is plain old data.
        let params: ApParams = unsafe { (at as *const ApParams).read_unaligned() };
        self.params = Some(params);
        if !self.answer.contains(&dest) {
            return;
        }
        // SAFETY: the parameters point into the CPU data, in the arena.
        unsafe {
            let ids = self.phys(params.apic_ids) as *const u32;
            let Some(slot) = (0..params.count as usize).find(|&k| *ids.add(k) == dest) else {
                return;
            };
            let m = (self.phys(params.mailboxes) as *mut CpuMailbox).add(slot);
            if (*m).state != MailboxState::EMPTY {
                return;
            }
            (*m).apic_id = dest;
            (*m).tsc_arrived = tsc;
            (*m).cpuid_ext_ecx = 1 << 2;
            let code = self
                .microcode
                .iter()
                .find(|c| c.0 == dest)
                .map_or(0, |c| c.1);
            (*m).microcode = code << 32;
            (*m).state = MailboxState::PARKED;
        }
    }
}

impl FakeCpu {
    pub fn new(gib_pages: bool) -> Self {
        Self {
            tsc: Cell::new(1000),
            gib_pages,
            la57: false,
            msr_writes: RefCell::new(Vec::new()),
            aps: RefCell::new(ApSim::default()),
            pit: RefCell::new(Some(FakePit::default())),
        }
    }
}

impl Cpu for FakeCpu {
    fn rdtsc(&self) -> u64 {
        self.tsc.set(self.tsc.get() + 1000);
        self.tsc.get()
    }

    fn cpuid(&self, leaf: u32, _subleaf: u32) -> Regs {
        let vendor = |s: &[u8; 12]| {
            let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
            [1, w(0), w(8), w(4)]
        };
        match leaf {
            0 => {
                let mut v = vendor(b"AuthenticAMD");
                v[0] = if self.la57 { 7 } else { 1 };
                v
            }
            7 if self.la57 => [0, 0, 1 << 16, 0],
            0x8000_0000 => [0x8000_000a, 0, 0, 0],
            0x8000_0001 => [0, 0, 1 << 2, if self.gib_pages { 1 << 26 } else { 0 }],
            0x8000_000a => [1, 64, 0, 1],
            _ => [0; 4],
        }
    }

    fn rdmsr(&self, _msr: u32) -> u64 {
        0
    }

    fn wrmsr(&self, msr: u32, value: u64) {
        self.msr_writes.borrow_mut().push((msr, value));
    }

    /// A spin-wait: time passes faster there (1 000 000 ticks), so that the start-up's waits
    /// (seconds at the assumed 10 GHz) take few iterations.
    fn pause(&self) {
        self.tsc.set(self.tsc.get() + 1_000_000);
    }

    /// The PM timer at [`FAKE_PM_PORT`] (24 bits), derived from the TSC at [`FAKE_TSC_HZ`];
    /// every read takes 1000 TSC ticks, as RDTSC does.
    fn inl(&self, port: u16) -> u32 {
        self.tsc.set(self.tsc.get() + 1000);
        if port != FAKE_PM_PORT {
            return u32::MAX;
        }
        let ticks = u128::from(self.tsc.get()) * u128::from(super::tsc::PM_TIMER_HZ)
            / u128::from(FAKE_TSC_HZ);
        (ticks as u32) & 0xFF_FFFF
    }

    /// Port 0x61 (bit 0 the gate) and the latched count at 0x42, low byte first; every access
    /// takes 1000 TSC ticks.
    fn inb(&self, port: u16) -> u8 {
        let tsc = self.tsc.get() + 1000;
        self.tsc.set(tsc);
        let mut pit = self.pit.borrow_mut();
        let Some(pit) = pit.as_mut() else {
            return 0xFF;
        };
        match port {
            0x61 => pit.port61,
            0x42 => {
                let v = pit.latched.unwrap_or_else(|| pit.count(tsc));
                let byte = if pit.high_next {
                    (v >> 8) as u8
                } else {
                    v as u8
                };
                if pit.high_next {
                    pit.latched = None;
                }
                pit.high_next = !pit.high_next;
                byte
            }
            _ => 0xFF,
        }
    }

    fn outb(&self, port: u16, value: u8) {
        let tsc = self.tsc.get() + 1000;
        self.tsc.set(tsc);
        let mut pit = self.pit.borrow_mut();
        let Some(pit) = pit.as_mut() else {
            return;
        };
        match (port, value) {
            (0x61, v) => {
                if v & 1 != 0 && !pit.gate {
                    pit.started = tsc;
                }
                pit.gate = v & 1 != 0;
                pit.port61 = v;
            }
            (0x43, 0x80) => pit.latched = Some(pit.count(tsc)),
            (0x43, 0xB0) => {
                pit.reload = 0;
                pit.high_next = false;
            }
            (0x42, v) => {
                pit.reload = if pit.high_next {
                    pit.reload | u16::from(v) << 8
                } else {
                    u16::from(v)
                };
                pit.high_next = !pit.high_next;
            }
            _ => {}
        }
    }

    fn send_ipi(&self, apic_base: u64, dest: u32, ipi: Ipi) {
        assert_eq!(apic_base, 0xFEE0_0000);
        let mut aps = self.aps.borrow_mut();
        aps.ipis.push((dest, ipi));
        if let Ipi::Startup(vector) = ipi {
            aps.sipi(dest, vector, self.tsc.get());
        }
    }
}
