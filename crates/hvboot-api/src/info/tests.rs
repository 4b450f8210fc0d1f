//! Host tests of the builder and the accessors: round trips, every kind of
//! corruption, and a deterministic fuzzer. Nothing may panic or read outside
//! the buffer.

use core::mem::offset_of;

use crate::builder::{BootInfoBuilder, BuildError};
use crate::info::{Field, InfoError, PhysRange, RefError, HEADER_SIZE, MIN_HEADER_SIZE};
use crate::protocol::*;

/// An 8-byte aligned byte buffer.
struct Buf(Vec<u64>);

impl Buf {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(8)])
    }
    fn bytes(&self) -> &[u8] {
        unsafe { core::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 8) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        unsafe { core::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 8) }
    }
    fn put_u32(&mut self, at: usize, v: u32) {
        self.bytes_mut()[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn get_u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes()[at..at + 4].try_into().unwrap())
    }
    /// The header at the start, without validation. Only sound while `size` is
    /// at most the buffer's length (the callers check).
    fn header(&self) -> &BootInfo {
        assert!(self.get_u32(offset_of!(BootInfo, size)) as usize <= self.bytes().len());
        unsafe { &*self.0.as_ptr().cast::<BootInfo>() }
    }
}

fn region(base: u64, length: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion {
        base,
        length,
        kind,
        reserved: 0,
    }
}

const MAP: [MemoryRegion; 4] = [
    MemoryRegion {
        base: 0,
        length: 0x9f000,
        kind: MemoryKind::USABLE,
        reserved: 0,
    },
    MemoryRegion {
        base: 0x100000,
        length: 0x200000,
        kind: MemoryKind::KERNEL,
        reserved: 0,
    },
    MemoryRegion {
        base: 0x300000,
        length: 0x7000_0000,
        kind: MemoryKind::USABLE,
        reserved: 0,
    },
    MemoryRegion {
        base: 0xfee0_0000,
        length: 0x1000,
        kind: MemoryKind(99),
        reserved: 0,
    },
];

/// Builds a typical block; returns the buffer and the block's size.
fn sample() -> (Buf, usize) {
    let mut buf = Buf::new(4096);
    let mut b = BootInfoBuilder::new(buf.bytes_mut());
    let loader_name = b.push_str("hvboot").unwrap();
    let loader_version = b.push_str("0.1.0").unwrap();
    let cmdline = b.push_str("console=ttyS0 héllo").unwrap();
    let memory_map = b.push_array(&MAP).unwrap();
    let m0 = Module {
        phys_addr: 0x40_0000,
        size: 1234,
        name: b.push_str("initrd").unwrap(),
        cmdline: b.push_str("root=/dev/ram0").unwrap(),
    };
    let m1 = Module {
        phys_addr: 0x50_0000,
        size: 1,
        name: b.push_str("guest.bin").unwrap(),
        cmdline: StrRef::default(),
    };
    let modules = b.push_array(&[m0, m1]).unwrap();
    let header = BootInfo {
        firmware: FirmwareKind::UEFI,
        loader_name,
        loader_version,
        cmdline,
        memory_map,
        modules,
        framebuffer: Framebuffer {
            phys_addr: 0x8000_0000,
            size: 0x30_0000,
            width: 1024,
            height: 768,
            pitch: 4096,
            bpp: 32,
            format: PixelFormat::BGR,
            ..Default::default()
        },
        rsdp_phys: 0x7fb7e014,
        direct_map_offset: DEFAULT_DIRECT_MAP_OFFSET,
        direct_map_size: 0x1_0000_0000,
        tsc_loader_start: 10,
        tsc_handoff: 20,
        ..Default::default()
    };
    let size = b.finish(header).unwrap();
    (buf, size)
}

#[test]
fn round_trip() {
    let (buf, size) = sample();
    let info = BootInfo::from_bytes(&buf.bytes()[..size]).unwrap();
    assert_eq!(info.magic, BOOT_INFO_MAGIC);
    assert_eq!(info.version, PROTOCOL_VERSION);
    assert_eq!(info.size as usize, size);
    assert_eq!(info.header_size as usize, HEADER_SIZE);
    assert_eq!(info.validate(), Ok(()));
    assert_eq!(info.loader_name(), "hvboot");
    assert_eq!(info.loader_version(), "0.1.0");
    assert_eq!(info.cmdline(), "console=ttyS0 héllo");
    assert_eq!(info.memory_map(), &MAP);
    assert_eq!(info.usable_bytes(), 0x9f000 + 0x7000_0000);
    let mods = info.modules();
    assert_eq!(mods.len(), 2);
    assert_eq!((mods[0].phys_addr, mods[0].size), (0x40_0000, 1234));
    assert_eq!(info.module_name(&mods[0]), "initrd");
    assert_eq!(info.module_cmdline(&mods[0]), "root=/dev/ram0");
    assert_eq!(info.module_name(&mods[1]), "guest.bin");
    assert_eq!(info.module_cmdline(&mods[1]), "");
    let fb = info.framebuffer().unwrap();
    assert_eq!(
        (fb.width, fb.height, fb.pitch, fb.bpp, fb.format),
        (1024, 768, 4096, 32, PixelFormat::BGR)
    );
    assert_eq!(info.rsdp_phys, 0x7fb7e014);
    assert_eq!(info.firmware, FirmwareKind::UEFI);
    assert_eq!(info.phys_to_virt(0x1000), 0xffff_8000_0000_1000);
    assert!(info.in_direct_map(0xffff_f000, 0x1000));
    assert!(!info.in_direct_map(0xffff_f000, 0x1001));
    assert!(!info.in_direct_map(u64::MAX, 2));

    // The layout rules: NUL after every string, arrays 8-aligned, data after the header.
    for r in [
        info.loader_name,
        info.loader_version,
        info.cmdline,
        mods[0].name,
        mods[0].cmdline,
    ] {
        assert!(r.offset as usize >= HEADER_SIZE);
        assert_eq!(buf.bytes()[(r.offset + r.len) as usize], 0);
    }
    for a in [info.memory_map, info.modules] {
        assert_eq!(a.offset % 8, 0);
    }
}

#[test]
fn minimal_block() {
    let mut buf = Buf::new(HEADER_SIZE);
    let size = BootInfoBuilder::new(buf.bytes_mut())
        .finish(BootInfo::default())
        .unwrap();
    assert_eq!(size, HEADER_SIZE);
    let info = BootInfo::from_bytes(buf.bytes()).unwrap();
    assert_eq!(info.cmdline(), "");
    assert_eq!(info.loader_name(), "");
    assert!(info.memory_map().is_empty());
    assert!(info.modules().is_empty());
    assert!(info.framebuffer().is_none());
    assert_eq!(info.usable_bytes(), 0);
}

#[test]
fn default_header_is_harmless() {
    let info = BootInfo::default();
    assert!(info.validate().is_err());
    assert_eq!(info.cmdline(), "");
    assert!(info.memory_map().is_empty());
    assert_eq!(
        info.try_str(StrRef { offset: 0, len: 5 }),
        Err(RefError::NoBlock)
    );
}

#[test]
fn out_of_space() {
    let mut buf = Buf::new(HEADER_SIZE + 8);
    let mut b = BootInfoBuilder::new(buf.bytes_mut());
    assert!(b.push_str("1234567").is_ok()); // 7 + NUL fits exactly
    assert_eq!(
        b.push_str("x"),
        Err(BuildError::OutOfSpace {
            needed: HEADER_SIZE + 10,
            available: HEADER_SIZE + 8
        })
    );
    assert!(matches!(
        b.push_array(&[0u64]),
        Err(BuildError::OutOfSpace { .. })
    ));
    assert_eq!(b.push_array::<u64>(&[]).unwrap().count, 0); // nothing to place: fits at the end
    assert_eq!(b.finish(BootInfo::default()), Ok(HEADER_SIZE + 8));

    let mut small = [0u8; 16];
    let mut b = BootInfoBuilder::new(&mut small);
    assert!(matches!(b.push_str(""), Err(BuildError::OutOfSpace { .. })));
    assert!(matches!(
        b.finish(BootInfo::default()),
        Err(BuildError::OutOfSpace { .. })
    ));
}

#[test]
fn array_padding_is_zeroed() {
    let mut buf = Buf::new(512);
    buf.bytes_mut().fill(0xAA);
    let mut b = BootInfoBuilder::new(buf.bytes_mut());
    let s = b.push_str("ab").unwrap(); // 3 bytes; then 5 bytes of padding
    let a = b.push_array(&[region(1, 2, MemoryKind::BAD)]).unwrap();
    let size = b.finish(BootInfo::default()).unwrap();
    assert_eq!(a.offset as usize, HEADER_SIZE + 8);
    assert!(buf.bytes()[(s.offset + 3) as usize..a.offset as usize]
        .iter()
        .all(|&x| x == 0));
    assert_eq!(size, HEADER_SIZE + 8 + 24);
}

#[test]
fn truncated_buffers() {
    let (buf, size) = sample();
    for n in 0..size {
        let r = BootInfo::from_bytes(&buf.bytes()[..n]);
        assert!(
            matches!(r, Err(InfoError::Truncated { .. })),
            "n = {n}: {r:?}"
        );
    }
    assert!(BootInfo::from_bytes(&buf.bytes()[..size]).is_ok());
    // A smaller `size` that cuts off the data: errors, and accessors return empty.
    for cut in [HEADER_SIZE, HEADER_SIZE + 3, size / 2, size - 1] {
        let mut b2 = Buf::new(4096);
        b2.bytes_mut().copy_from_slice(buf.bytes());
        b2.put_u32(offset_of!(BootInfo, size), cut as u32);
        let info = b2.header();
        assert!(info.validate().is_err(), "cut = {cut}");
        let _ = (
            info.cmdline(),
            info.memory_map(),
            info.modules(),
            info.loader_name(),
        );
    }
}

#[test]
fn misaligned_buffer() {
    let mut storage = Buf::new(4096 + 8);
    let (buf, size) = sample();
    storage.bytes_mut()[1..1 + size].copy_from_slice(&buf.bytes()[..size]);
    assert_eq!(
        BootInfo::from_bytes(&storage.bytes()[1..1 + size]),
        Err(InfoError::Misaligned)
    );
}

/// Applies `f` to a copy of the sample and returns validate()'s verdict.
fn corrupt(f: impl FnOnce(&mut Buf, &BootInfo)) -> Result<(), InfoError> {
    let (orig, _) = sample();
    let mut buf = Buf::new(4096);
    buf.bytes_mut().copy_from_slice(orig.bytes());
    let hdr = *orig.header(); // a copy, used only for its field values
    f(&mut buf, &hdr);
    buf.header().validate()
}

fn bad(field: Field, error: RefError) -> Result<(), InfoError> {
    Err(InfoError::BadRef { field, error })
}

#[test]
fn header_corruption() {
    assert!(matches!(
        corrupt(|b, _| b.bytes_mut()[0] ^= 1),
        Err(InfoError::BadMagic(_))
    ));
    assert_eq!(
        corrupt(|b, _| b.put_u32(8, 2)),
        Err(InfoError::UnsupportedVersion(2))
    );
    let hs = offset_of!(BootInfo, header_size);
    assert!(matches!(
        corrupt(|b, _| b.put_u32(hs, 8)),
        Err(InfoError::BadHeaderSize { .. })
    ));
    assert!(matches!(
        corrupt(|b, h| b.put_u32(hs, h.size + 8)),
        Err(InfoError::BadHeaderSize { .. })
    ));
    // A longer header (header_size > 224) is allowed, but data inside it is refused.
    assert_eq!(
        corrupt(|b, _| b.put_u32(hs, HEADER_SIZE as u32 + 1)),
        bad(Field::LoaderName, RefError::InHeader)
    );
}

#[test]
fn reference_corruption() {
    let name = offset_of!(BootInfo, loader_name);
    let cmd = offset_of!(BootInfo, cmdline);
    let map = offset_of!(BootInfo, memory_map);
    let mods = offset_of!(BootInfo, modules);

    assert_eq!(
        corrupt(|b, _| b.put_u32(name, 8)),
        bad(Field::LoaderName, RefError::InHeader)
    );
    assert_eq!(
        corrupt(|b, h| b.put_u32(name, h.size)),
        bad(Field::LoaderName, RefError::OutOfBounds)
    );
    assert_eq!(
        corrupt(|b, _| b.put_u32(name + 4, u32::MAX)),
        bad(Field::LoaderName, RefError::OutOfBounds)
    );
    assert_eq!(
        corrupt(|b, _| b.put_u32(name, u32::MAX)),
        bad(Field::LoaderName, RefError::OutOfBounds)
    );
    // "hvboot" -> "hvbo": the byte after it is 'o', not NUL.
    assert_eq!(
        corrupt(|b, _| b.put_u32(name + 4, 4)),
        bad(Field::LoaderName, RefError::NotTerminated)
    );
    // Invalid UTF-8 in the command line.
    assert_eq!(
        corrupt(|b, h| b.bytes_mut()[h.cmdline.offset as usize] = 0xff),
        bad(Field::Cmdline, RefError::NotUtf8)
    );
    // Cut in the middle of "é" (and NUL there, so only UTF-8 fails).
    assert_eq!(
        corrupt(|b, h| {
            // "...héllo": keep the first byte of "é" (0xc3), then NUL.
            let at = (h.cmdline.offset + h.cmdline.len - 4) as usize;
            b.bytes_mut()[at] = 0;
            b.put_u32(cmd + 4, h.cmdline.len - 4);
        }),
        bad(Field::Cmdline, RefError::NotUtf8)
    );
    assert_eq!(
        corrupt(|b, h| b.put_u32(map, h.memory_map.offset + 4)),
        bad(Field::MemoryMap, RefError::Misaligned)
    );
    assert_eq!(
        corrupt(|b, _| b.put_u32(map + 4, 1000)),
        bad(Field::MemoryMap, RefError::OutOfBounds)
    );
    assert_eq!(
        corrupt(|b, _| b.put_u32(map + 4, u32::MAX)),
        bad(Field::MemoryMap, RefError::OutOfBounds)
    );
    assert_eq!(
        corrupt(|b, _| b.put_u32(mods, 0)),
        bad(Field::Modules, RefError::InHeader)
    );
    // Module 1's name pointing past the end.
    assert_eq!(
        corrupt(|b, h| {
            let at = h.modules.offset as usize + 32 + offset_of!(Module, name);
            b.put_u32(at, h.size - 2);
        }),
        bad(Field::ModuleName(1), RefError::OutOfBounds)
    );
    assert_eq!(
        corrupt(|b, h| {
            let at = h.modules.offset as usize + offset_of!(Module, cmdline) + 4;
            b.put_u32(at, 0x7fff_ffff);
        }),
        bad(Field::ModuleCmdline(0), RefError::OutOfBounds)
    );
    // Zero-length references are empty whatever their offset.
    assert_eq!(
        corrupt(|b, _| {
            b.put_u32(cmd, u32::MAX);
            b.put_u32(cmd + 4, 0)
        }),
        Ok(())
    );
    assert_eq!(
        corrupt(|b, _| {
            b.put_u32(map, 3);
            b.put_u32(map + 4, 0)
        }),
        Ok(())
    );
}

/// xorshift64*: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Everything an accessor returns must lie inside the buffer.
fn check_inside(buf: &Buf, ptr: *const u8, len: usize) {
    let start = buf.bytes().as_ptr() as usize;
    let end = start + buf.bytes().len();
    let p = ptr as usize;
    assert!(
        len == 0 || (p >= start && p + len <= end),
        "{p:#x}+{len} outside {start:#x}..{end:#x}"
    );
}

fn exercise(buf: &Buf) {
    let info = buf.header();
    let valid = info.validate();
    for s in [info.cmdline(), info.loader_name(), info.loader_version()] {
        check_inside(buf, s.as_ptr(), s.len());
    }
    let map = info.memory_map();
    check_inside(buf, map.as_ptr().cast(), core::mem::size_of_val(map));
    let mods = info.modules();
    check_inside(buf, mods.as_ptr().cast(), core::mem::size_of_val(mods));
    for m in mods {
        for s in [info.module_name(m), info.module_cmdline(m)] {
            check_inside(buf, s.as_ptr(), s.len());
        }
    }
    let _ = info.usable_bytes();
    let _ = info.framebuffer();
    let cpus = info.cpus();
    check_inside(buf, cpus.as_ptr().cast(), core::mem::size_of_val(cpus));
    let fw = info.firmware_memory_map();
    check_inside(buf, fw.as_ptr().cast(), core::mem::size_of_val(fw));
    let ext = info.placed_extents();
    check_inside(buf, ext.as_ptr().cast(), core::mem::size_of_val(ext));
    let tsc = info.tsc_stamps();
    check_inside(buf, tsc.as_ptr().cast(), core::mem::size_of_val(tsc));
    let _ = (
        info.virt_report(),
        info.local_apic_phys(),
        info.guest_reservation(),
        info.ap_trampoline_phys(),
        info.request_version(),
        info.tsc_stamp(TscStage::HANDOFF),
    );
    if valid.is_ok() {
        // A valid block resolves every reference without falling back.
        assert!(info.try_str(info.cmdline).is_ok());
        assert!(info.try_str(info.loader_name).is_ok());
        assert!(info.try_array::<MemoryRegion>(info.memory_map).is_ok());
        let mods = info.try_array::<Module>(info.modules).unwrap();
        for m in mods {
            assert!(info.try_str(m.name).is_ok() && info.try_str(m.cmdline).is_ok());
        }
    }
    let _ = format!(
        "{valid:?} {}",
        valid.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

#[test]
fn fuzz() {
    let (orig, size) = sample();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Offsets of every u32 in the header that locates data.
    let ref_fields: Vec<usize> = [
        offset_of!(BootInfo, size),
        offset_of!(BootInfo, header_size),
        offset_of!(BootInfo, loader_name),
        offset_of!(BootInfo, loader_version),
        offset_of!(BootInfo, cmdline),
        offset_of!(BootInfo, memory_map),
        offset_of!(BootInfo, modules),
    ]
    .iter()
    .flat_map(|&o| if o < 24 { vec![o] } else { vec![o, o + 4] })
    .collect();
    let hdr = *orig.header();
    let module_fields: Vec<usize> = (0..2)
        .flat_map(|i| {
            let m = hdr.modules.offset as usize + 32 * i;
            [16, 20, 24, 28].map(|o| m + o)
        })
        .collect();
    let mut valid_count = 0;
    for _ in 0..20_000 {
        let mut buf = Buf::new(4096);
        buf.bytes_mut().copy_from_slice(orig.bytes());
        for _ in 0..1 + rng.below(4) {
            let interesting = [
                0,
                1,
                7,
                8,
                HEADER_SIZE as u32,
                size as u32 - 1,
                size as u32,
                4096,
                u32::MAX,
                u32::MAX / 24,
            ];
            let value = match rng.below(3) {
                0 => interesting[rng.below(interesting.len() as u64) as usize],
                1 => rng.below(size as u64 + 16) as u32,
                _ => rng.next() as u32,
            };
            match rng.below(4) {
                0 => {
                    let at = ref_fields[rng.below(ref_fields.len() as u64) as usize];
                    buf.put_u32(at, value);
                }
                1 => {
                    let at = module_fields[rng.below(module_fields.len() as u64) as usize];
                    buf.put_u32(at, value);
                }
                2 => {
                    let at = (rng.below(size as u64 - 4)) as usize;
                    buf.put_u32(at, value);
                }
                _ => {
                    let at = rng.below(size as u64) as usize;
                    buf.bytes_mut()[at] = rng.next() as u8;
                }
            }
        }
        // Magic and version intact most of the time, so the deeper checks run.
        if rng.below(8) != 0 {
            buf.bytes_mut()[..8].copy_from_slice(&BOOT_INFO_MAGIC.to_le_bytes());
            buf.put_u32(8, PROTOCOL_VERSION);
        }
        let block_size = buf.get_u32(offset_of!(BootInfo, size)) as usize;
        let r = BootInfo::from_bytes(buf.bytes());
        if block_size <= buf.bytes().len() {
            assert_eq!(r.map(|_| ()), buf.header().validate());
            exercise(&buf);
            valid_count += usize::from(r.is_ok());
        } else {
            assert!(matches!(r, Err(InfoError::Truncated { .. })));
        }
    }
    // The fuzzer must reach both outcomes to be worth anything.
    assert!(valid_count > 100, "only {valid_count} valid blocks");
}

// ---------------------------------------------------------------------------
// The fields appended after the first v1 layout, and header_size.

const CPUS: [CpuEntry; 2] = [
    CpuEntry {
        apic_id: 0,
        acpi_uid: 0,
        flags: CpuFlags(CpuFlags::ENABLED.0 | CpuFlags::BSP.0),
        reserved: 0,
    },
    CpuEntry {
        apic_id: 1,
        acpi_uid: 1,
        flags: CpuFlags::ENABLED,
        reserved: 0,
    },
];

/// A block with every later field filled in; returns the buffer and its size.
fn sample_with_additions() -> (Buf, usize) {
    let mut buf = Buf::new(4096);
    let mut b = BootInfoBuilder::new(buf.bytes_mut());
    let loader_name = b.push_str("hvboot").unwrap();
    let memory_map = b.push_array(&MAP).unwrap();
    let cpus = b.push_array(&CPUS).unwrap();
    let fw = [FirmwareMemoryEntry {
        base: 0,
        length: 0xa0000,
        firmware_type: 7,
        reserved: 0,
        attributes: 0xf,
    }];
    let firmware_memory_map = b.push_array(&fw).unwrap();
    let ext = [PlacedExtent {
        phys: 0x100000,
        virt: 0xffff_ffff_8000_0000,
        length: 0x2000,
        what: ExtentKind::KERNEL_SEGMENT,
        index: 0,
    }];
    let placed_extents = b.push_array(&ext).unwrap();
    let tsc_stamps = b.push_array(&[100u64, 0, 300, 400, 500]).unwrap();
    let header = BootInfo {
        loader_name,
        memory_map,
        virt: VirtReport {
            vendor: *b"AuthenticAMD",
            flags: VirtFlags::VALID | VirtFlags::SVM | VirtFlags::NPT,
            max_phys_addr_bits: 40,
            ..Default::default()
        },
        cpus,
        firmware_memory_map,
        placed_extents,
        tsc_stamps,
        local_apic_phys: 0xfee0_0000,
        guest_reservation_phys: 0x4000_0000,
        guest_reservation_size: 0x400_0000,
        ap_trampoline_phys: 0x8000,
        request_version: 1,
        ..Default::default()
    };
    let size = b.finish(header).unwrap();
    (buf, size)
}

#[test]
fn additions_round_trip() {
    let (buf, size) = sample_with_additions();
    let info = BootInfo::from_bytes(&buf.bytes()[..size]).unwrap();
    assert_eq!(info.header_size as usize, HEADER_SIZE);
    let v = info.virt_report().unwrap();
    assert_eq!(v.vendor_str(), "AuthenticAMD");
    assert!(v.flags.contains(VirtFlags::SVM | VirtFlags::NPT));
    assert_eq!(info.cpus(), &CPUS);
    assert_eq!(info.firmware_memory_map()[0].attributes, 0xf);
    assert_eq!(info.placed_extents()[0].what, ExtentKind::KERNEL_SEGMENT);
    assert_eq!(info.tsc_stamps(), &[100, 0, 300, 400, 500]);
    assert_eq!(info.tsc_stamp(TscStage::LOADER_ENTRY), Some(100));
    assert_eq!(info.tsc_stamp(TscStage::FILES_READ), None); // 0 = not recorded
    assert_eq!(info.tsc_stamp(TscStage::HANDOFF), Some(500));
    assert_eq!(info.tsc_stamp(TscStage(9)), None);
    assert_eq!(info.local_apic_phys(), Some(0xfee0_0000));
    assert_eq!(
        info.guest_reservation(),
        Some(PhysRange {
            phys: 0x4000_0000,
            len: 0x400_0000
        })
    );
    assert_eq!(info.ap_trampoline_phys(), Some(0x8000));
    assert_eq!(info.request_version(), Some(1));
}

#[test]
fn additions_absent_when_zero() {
    // A current loader that fills in none of the later fields.
    let (buf, size) = sample();
    let info = BootInfo::from_bytes(&buf.bytes()[..size]).unwrap();
    assert!(info.virt_report().is_none());
    assert!(info.cpus().is_empty());
    assert!(info.firmware_memory_map().is_empty());
    assert!(info.placed_extents().is_empty());
    assert!(info.tsc_stamps().is_empty());
    assert_eq!(info.tsc_stamp(TscStage::HANDOFF), None);
    assert_eq!(info.local_apic_phys(), None);
    assert_eq!(info.guest_reservation(), None);
    assert_eq!(info.ap_trampoline_phys(), None);
    assert_eq!(info.request_version(), None);
}

/// A block as a loader built against the first v1 layout writes it:
/// header_size = 224, data right after it. The bytes where the later fields
/// would be hold that data (here: a string and a memory map), and the rest of
/// the buffer holds garbage; none of it may be taken for the later fields.
fn v1_block() -> (Buf, usize) {
    let mut buf = Buf::new(4096);
    buf.bytes_mut().fill(0xA5);
    let h = MIN_HEADER_SIZE;
    buf.bytes_mut()[..h].fill(0);
    buf.bytes_mut()[..8].copy_from_slice(&BOOT_INFO_MAGIC.to_le_bytes());
    buf.put_u32(offset_of!(BootInfo, version), PROTOCOL_VERSION);
    buf.put_u32(offset_of!(BootInfo, header_size), h as u32);
    buf.put_u32(offset_of!(BootInfo, firmware), FirmwareKind::BIOS.0);
    // loader_name -> "hvboot\0" at 224; memory map (one region) at 232.
    buf.bytes_mut()[h..h + 7].copy_from_slice(b"hvboot\0");
    buf.bytes_mut()[h + 7] = 0;
    buf.put_u32(offset_of!(BootInfo, loader_name), h as u32);
    buf.put_u32(offset_of!(BootInfo, loader_name) + 4, 6);
    let region = [0x1000u64, 0x9_f000, u64::from(MemoryKind::USABLE.0)];
    for (i, v) in region.iter().enumerate() {
        buf.bytes_mut()[h + 8 + i * 8..h + 16 + i * 8].copy_from_slice(&v.to_le_bytes());
    }
    buf.put_u32(offset_of!(BootInfo, memory_map), (h + 8) as u32);
    buf.put_u32(offset_of!(BootInfo, memory_map) + 4, 1);
    let size = h + 8 + 24;
    buf.put_u32(offset_of!(BootInfo, size), size as u32);
    (buf, size)
}

#[test]
fn v1_header_size_is_accepted_and_later_fields_are_absent() {
    let (buf, size) = v1_block();
    assert!(size < HEADER_SIZE);
    // from_bytes needs a whole BootInfo's worth of buffer; the block itself is shorter.
    let info = BootInfo::from_bytes(buf.bytes()).unwrap();
    assert_eq!(info.validate(), Ok(()));
    assert_eq!(info.header_size as usize, MIN_HEADER_SIZE);
    assert_eq!(info.loader_name(), "hvboot");
    assert_eq!(info.memory_map().len(), 1);
    assert_eq!(info.memory_map()[0].base, 0x1000);
    assert_eq!(info.firmware, FirmwareKind::BIOS);
    // The raw fields hold the string, the region and garbage...
    assert_ne!(info.ap_trampoline_phys, 0);
    assert_ne!(info.cpus.count, 0);
    // ...but the accessors know that header_size does not cover them.
    assert!(!info.has_field(HEADER_SIZE));
    assert!(info.has_field(MIN_HEADER_SIZE));
    assert!(info.virt_report().is_none());
    assert!(info.cpus().is_empty());
    assert!(info.firmware_memory_map().is_empty());
    assert!(info.placed_extents().is_empty());
    assert!(info.tsc_stamps().is_empty());
    assert_eq!(info.local_apic_phys(), None);
    assert_eq!(info.guest_reservation(), None);
    assert_eq!(info.ap_trampoline_phys(), None);
    assert_eq!(info.request_version(), None);
    exercise(&buf);
}

#[test]
fn partial_header_sizes() {
    // header_size between the v1 size and the full one: fields are present
    // exactly when they end at or before header_size.
    let (orig, _) = sample_with_additions();
    let hs = offset_of!(BootInfo, header_size);
    let present = |header_size: usize| {
        let mut buf = Buf::new(4096);
        buf.bytes_mut().copy_from_slice(orig.bytes());
        buf.put_u32(hs, header_size as u32);
        let info = buf.header();
        assert_eq!(info.validate(), Ok(()), "header_size {header_size}");
        (
            info.virt_report().is_some(),
            !info.cpus().is_empty(),
            !info.tsc_stamps().is_empty(),
            info.local_apic_phys().is_some(),
            info.guest_reservation().is_some(),
            info.request_version().is_some(),
        )
    };
    let virt_end = offset_of!(BootInfo, virt) + size_of::<VirtReport>();
    let cpus_end = offset_of!(BootInfo, cpus) + 8;
    assert_eq!(
        present(MIN_HEADER_SIZE),
        (false, false, false, false, false, false)
    );
    assert_eq!(
        present(virt_end - 8),
        (false, false, false, false, false, false)
    );
    assert_eq!(present(virt_end), (true, false, false, false, false, false));
    assert_eq!(present(cpus_end), (true, true, false, false, false, false));
    assert_eq!(
        present(offset_of!(BootInfo, guest_reservation_size) + 4),
        (true, true, true, true, false, false)
    );
    assert_eq!(present(HEADER_SIZE), (true, true, true, true, true, true));
    // Below the v1 size: refused.
    let mut buf = Buf::new(4096);
    buf.bytes_mut().copy_from_slice(orig.bytes());
    buf.put_u32(hs, MIN_HEADER_SIZE as u32 - 8);
    assert!(matches!(
        buf.header().validate(),
        Err(InfoError::BadHeaderSize { .. })
    ));
}

#[test]
fn later_arrays_are_validated() {
    let (orig, _) = sample_with_additions();
    let check = |field_off: usize, value: u32| {
        let mut buf = Buf::new(4096);
        buf.bytes_mut().copy_from_slice(orig.bytes());
        buf.put_u32(field_off, value);
        buf.header().validate()
    };
    let size = orig.header().size;
    assert_eq!(
        check(offset_of!(BootInfo, cpus), size),
        bad(Field::Cpus, RefError::OutOfBounds)
    );
    assert_eq!(
        check(offset_of!(BootInfo, firmware_memory_map), 4),
        bad(Field::FirmwareMemoryMap, RefError::InHeader)
    );
    assert_eq!(
        check(offset_of!(BootInfo, placed_extents) + 4, 1000),
        bad(Field::PlacedExtents, RefError::OutOfBounds)
    );
    let tsc = orig.header().tsc_stamps.offset;
    assert_eq!(
        check(offset_of!(BootInfo, tsc_stamps), tsc - 4),
        bad(Field::TscStamps, RefError::Misaligned)
    );
    // The same corruption in a block whose header_size does not cover the
    // field is not looked at (the field is absent).
    let mut buf = Buf::new(4096);
    buf.bytes_mut().copy_from_slice(orig.bytes());
    buf.put_u32(offset_of!(BootInfo, cpus), size);
    buf.put_u32(offset_of!(BootInfo, header_size), MIN_HEADER_SIZE as u32);
    // (The data now starts after the smaller header; references stay valid.)
    assert_eq!(buf.header().validate(), Ok(()));
    assert!(buf.header().cpus().is_empty());
}
