//! The whole flow on the host: a fake platform over an arena, a fake CPU, kernels built here.
//! Mirrors what tests/test_boot.py, test_request.py, test_loader_errors.py and
//! test_hypervisor.py boot in QEMU, down to the exact error messages.

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use hvboot_api::{
    AcpiTables, BootInfo, CpuFlags, ExtentKind, FirmwareKind, KernelRequest, MemoryKind,
    RequestFlags, TscStage, DEFAULT_DIRECT_MAP_OFFSET, DEFAULT_STACK_SIZE, FRAMEBUFFER_NONE,
    STACK_REGION_BASE,
};

use hvboot_api::request::REQUEST_SECTION;

use super::fake::{FakeCpu, FakePlatform, FB_PHYS, MIB, RAM_END};
use super::{run, Error, CONFIG_PATH};
use crate::handoff::{self, Handoff};
use crate::paging::{self, Translation};
use crate::protocols::hvboot::Hvboot;
use crate::testing::elf::{build, load, Ph, KBASE, PF_R, PF_W, PF_X};
use crate::PAGE_SIZE as PAGE;

const KERNEL: &str = "/hvboot/kernel.elf";
const GIB: u64 = 1 << 30;

/// Text (RX), rodata (R), data + bss (RW) at `base`; the second `Ph` list entry is the entry.
fn segments(base: u64) -> Vec<Ph> {
    let mut phs = std::vec![
        load(PF_R | PF_X, 0x1000, base, 0x2345, 0x2345),
        load(PF_R, 0x4000, base + 0x4000, 0x800, 0x800),
        load(PF_R | PF_W, 0x5010, base + 0x7010, 0x100, 0x3000),
    ];
    if base < KBASE {
        for p in &mut phs {
            p.paddr = p.vaddr; // lower half: placed at p_paddr = p_vaddr
        }
    }
    phs
}

fn request_bytes(r: &KernelRequest) -> Vec<u8> {
    // SAFETY: KernelRequest is plain old data.
    unsafe {
        core::slice::from_raw_parts(
            (r as *const KernelRequest).cast::<u8>(),
            core::mem::size_of::<KernelRequest>(),
        )
    }
    .to_vec()
}

fn kernel_at(base: u64, request: Option<KernelRequest>) -> Vec<u8> {
    let elf = build(base + 0x10, &segments(base));
    match request {
        Some(r) => {
            crate::testing::elf::with_sections(elf, &[(REQUEST_SECTION, &request_bytes(&r))])
        }
        None => elf,
    }
}

/// Config text for the kernel, a command line and modules (path, name, cmdline).
fn config(cmdline: &str, modules: &[(&str, &str, &str)]) -> String {
    let mut s = format!("hvboot-config 1\nkernel {KERNEL}\ncmdline {cmdline}\n");
    for (path, name, cmd) in modules {
        s += &format!("module {path}\nmodule-name {name}\nmodule-cmdline {cmd}\n");
    }
    s
}

fn machine(kernel: Vec<u8>, cfg: &str) -> FakePlatform {
    let mut p = FakePlatform::new();
    p.file(CONFIG_PATH, cfg).file(KERNEL, kernel);
    p
}

fn boot(p: &mut FakePlatform) -> Result<Handoff, Error> {
    run(p, &FakeCpu::new(true), &mut Hvboot::default(), 42)
}

fn refusal(mut p: FakePlatform) -> String {
    let e = boot(&mut p)
        .expect_err("the flow should refuse")
        .to_string();
    assert!(!p.exited, "refused after leaving the firmware: {e}");
    e
}

/// The block through the hand-off's direct-map pointer, checked by hvboot-api's reader.
fn info<'a>(p: &'a FakePlatform, h: &Handoff) -> &'a BootInfo {
    let phys = h.boot_info - DEFAULT_DIRECT_MAP_OFFSET.min(h.boot_info);
    let b = BootInfo::from_bytes(p.bytes(phys, block_size(p, phys))).expect("a readable block");
    b.validate().expect("a valid block");
    assert_eq!(b.boot_info_phys, phys);
    b
}

/// The block's `size` field, read before the block is.
fn block_size(p: &FakePlatform, phys: u64) -> u64 {
    let at = core::mem::offset_of!(BootInfo, size) as u64;
    u64::from(u32::from_le_bytes(
        p.bytes(phys + at, 4).try_into().unwrap(),
    ))
}

fn walk(p: &FakePlatform, h: &Handoff, virt: u64) -> Option<Translation> {
    // SAFETY: the tables live in the arena, reached at the platform's offset.
    unsafe { paging::translate(p.phys_offset_for_tests(), h.cr3, virt) }
}

impl FakePlatform {
    fn phys_offset_for_tests(&self) -> u64 {
        super::Platform::phys_offset(self)
    }
}

/// Sorted, non-overlapping, every allocation with its own kind, the framebuffer typed.
fn check_map(p: &FakePlatform, b: &BootInfo) {
    let map = b.memory_map();
    for w in map.windows(2) {
        assert!(
            w[0].base + w[0].length <= w[1].base,
            "overlap or unsorted: {w:?}"
        );
    }
    let kind_at = |a: u64| {
        map.iter()
            .find(|r| r.base <= a && a < r.base + r.length)
            .map(|r| r.kind.0)
    };
    for a in &p.allocations {
        for page in (a.base..a.end()).step_by(PAGE as usize) {
            assert_eq!(kind_at(page), Some(a.kind), "allocation {a:?} at {page:#x}");
        }
    }
    if let Some(fb) = b.framebuffer() {
        assert_eq!(kind_at(fb.phys_addr), Some(MemoryKind::FRAMEBUFFER.0));
    }
}

fn extents_of(b: &BootInfo, what: ExtentKind) -> Vec<hvboot_api::PlacedExtent> {
    b.placed_extents()
        .iter()
        .copied()
        .filter(|e| e.what == what)
        .collect()
}

/// Kernel pages map to the image with their segment's W/X; the bytes are the file's.
fn check_kernel(p: &FakePlatform, h: &Handoff, b: &BootInfo, file: &[u8], base: u64) {
    for s in segments(base).iter() {
        let page_start = s.vaddr & !(PAGE - 1);
        let page_end = (s.vaddr + s.memsz).next_multiple_of(PAGE);
        for v in (page_start..page_end).step_by(PAGE as usize) {
            let t = walk(p, h, v).expect("kernel page mapped");
            assert_eq!(t.phys, b.kernel_phys_base + (v - base));
            assert_eq!(
                (t.writable, t.executable),
                (s.flags & PF_W != 0, s.flags & PF_X != 0)
            );
        }
        let phys = b.kernel_phys_base + (s.vaddr - base);
        let got = p.bytes(phys, s.memsz);
        let (filed, bss) = got.split_at(s.filesz as usize);
        assert_eq!(
            filed,
            &file[s.offset as usize..(s.offset + s.filesz) as usize]
        );
        assert!(bss.iter().all(|&x| x == 0), "bss zeroed");
    }
    let segs = extents_of(b, ExtentKind::KERNEL_SEGMENT);
    assert_eq!(segs.len(), 3);
    assert!(segs
        .iter()
        .all(|e| e.phys == b.kernel_phys_base + (e.virt - base)));
}

/// The stack below its top with a guard page, the direct map, the hand-off code, the GDT.
fn check_address_space(p: &FakePlatform, h: &Handoff, b: &BootInfo, stack_size: u64) {
    let (bottom, top) = (
        STACK_REGION_BASE + PAGE,
        STACK_REGION_BASE + PAGE + stack_size,
    );
    assert_eq!(
        (h.stack_top, b.stack_top, b.stack_size),
        (top, top, stack_size)
    );
    assert_eq!(h.stack_top % 16, 0);
    assert!(
        walk(p, h, STACK_REGION_BASE).is_none(),
        "guard page unmapped"
    );
    assert!(walk(p, h, top).is_none(), "nothing above the stack");
    let [stack] = extents_of(b, ExtentKind::STACK)[..] else {
        panic!("one stack extent")
    };
    for v in (bottom..top).step_by(PAGE as usize) {
        let t = walk(p, h, v).expect("stack mapped");
        assert_eq!(t.phys, stack.phys + (v - bottom));
        assert!(t.writable && !t.executable);
    }
    let off = b.direct_map_offset;
    assert!(b.direct_map_size >= 4 * GIB && b.direct_map_size.is_multiple_of(GIB));
    for phys in [
        0,
        0x12_3000,
        RAM_END - PAGE,
        0xFEE0_0000,
        b.direct_map_size - PAGE,
    ] {
        let t = walk(p, h, off + phys).expect("direct map");
        assert_eq!(t.phys, phys);
        assert!(t.writable && !t.executable);
    }
    assert!(walk(p, h, off + b.direct_map_size).is_none());
    let (code, _) = handoff::code_pages();
    let t = walk(p, h, code).expect("hand-off code identity-mapped");
    assert!(t.phys == code && t.executable && !t.writable);
    let gdt_phys = h.gdt_virt - off;
    let [g] = extents_of(b, ExtentKind::GDT)[..] else {
        panic!("one GDT extent")
    };
    assert_eq!(g.phys, gdt_phys);
    let gdt = p.bytes(gdt_phys, 40);
    let expect = handoff::gdt(gdt_phys + handoff::TSS_OFFSET + off);
    for (i, e) in expect.iter().enumerate() {
        assert_eq!(&gdt[i * 8..i * 8 + 8], &e.to_le_bytes());
    }
    assert_eq!(b.page_tables_phys, h.cr3);
    assert!(h.cr3 < 4 * GIB);
}

#[test]
fn higher_half_kernel_with_modules() {
    let kernel = kernel_at(KBASE, None);
    let cfg = config(
        "console=ttyS0 x=1",
        &[
            ("/hvboot/modules/guest.bin", "guest.bin", "mem=64M"),
            ("/hvboot/modules/empty", "empty", ""),
        ],
    );
    let mut p = machine(kernel.clone(), &cfg);
    let guest: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();
    p.file("/hvboot/modules/guest.bin", guest.clone())
        .file("/hvboot/modules/empty", "");
    let h = boot(&mut p).unwrap();
    assert!(p.exited);
    let b = info(&p, &h);
    assert_eq!(b.firmware, FirmwareKind::BIOS);
    assert_eq!(
        (b.cmdline(), b.loader_name()),
        ("console=ttyS0 x=1", "hvboot")
    );
    assert_eq!(h.entry, KBASE + 0x10);
    assert_eq!((b.kernel_virt_base, b.kernel_size), (KBASE, 0xb000));
    assert_eq!(b.kernel_phys_base % (2 * MIB), 0);
    check_kernel(&p, &h, b, &kernel, KBASE);
    check_address_space(&p, &h, b, DEFAULT_STACK_SIZE);
    check_map(&p, b);

    let m = b.modules();
    assert_eq!(m.len(), 2);
    assert_eq!(
        (b.module_name(&m[0]), b.module_cmdline(&m[0])),
        ("guest.bin", "mem=64M")
    );
    assert_eq!(
        (b.module_name(&m[1]), b.module_cmdline(&m[1])),
        ("empty", "")
    );
    assert_eq!((m[0].size, m[1].size), (100_000, 0));
    assert_eq!(p.bytes(m[0].phys_addr, 100_000), &guest[..]);
    assert!(p
        .bytes(m[0].phys_addr + 100_000, 0x1000 - 100_000 % 0x1000)
        .iter()
        .all(|&x| x == 0));
    assert!(m.iter().all(|m| m.phys_addr % PAGE == 0));
    let mods = extents_of(b, ExtentKind::MODULE);
    assert_eq!(
        mods.iter()
            .map(|e| (e.index, e.phys, e.length))
            .collect::<Vec<_>>(),
        std::vec![(0, m[0].phys_addr, 0x19000), (1, m[1].phys_addr, PAGE)]
    );
    let [bi] = extents_of(b, ExtentKind::BOOT_INFO)[..] else {
        panic!()
    };
    assert_eq!(bi.phys, b.boot_info_phys);

    let fb = b.framebuffer().expect("the default framebuffer");
    assert_eq!(
        (fb.phys_addr, fb.width, fb.height, fb.pitch),
        (FB_PHYS, 1024, 768, 4096)
    );
    assert_eq!(
        (b.rsdp_phys, b.smbios_entry_phys, b.smbios3_entry_phys),
        (0xE_0000, 0xF_0000, 0xF_0100)
    );
    assert_eq!(b.cpus(), &[], "no MADT behind the fake RSDP");
    assert_eq!(b.firmware_memory_map().len(), p.firmware_map.len());
    assert_eq!(b.request_version, 0);
    assert_eq!(
        b.virt_report().map(|v| v.vendor_str()),
        Some("AuthenticAMD")
    );
    let stamps = b.tsc_stamps();
    assert_eq!(stamps[TscStage::LOADER_ENTRY.0 as usize], 42);
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    assert_eq!(b.tsc_handoff, stamps[TscStage::HANDOFF.0 as usize]);
}

#[test]
fn lower_half_kernel_is_placed_at_its_physical_address() {
    let base = 0x40_0000;
    let kernel = kernel_at(base, None);
    let mut p = machine(kernel.clone(), &config("", &[]));
    let h = boot(&mut p).unwrap();
    let b = info(&p, &h);
    assert_eq!(
        (b.kernel_phys_base, b.kernel_virt_base, h.entry),
        (base, base, base + 0x10)
    );
    check_kernel(&p, &h, b, &kernel, base);
    check_address_space(&p, &h, b, DEFAULT_STACK_SIZE);
    check_map(&p, b);
}

/// A position-independent kernel linked at 0 runs at `elf::DEFAULT_PIE_BASE`, placed anywhere,
/// entered at its slid entry, with its R_X86_64_RELATIVE word written before the hand-off.
#[test]
fn position_independent_kernel_is_slid_and_relocated() {
    use crate::testing::elf::{pie, rela, PIE_DATA, PIE_RELA, PIE_TEXT};
    let relas = rela(PIE_DATA + 8, ::elf::abi::R_X86_64_RELATIVE, 0x1234);
    let kernel = pie(
        &[
            (::elf::abi::DT_RELA, PIE_RELA),
            (::elf::abi::DT_RELASZ, 24),
            (::elf::abi::DT_RELAENT, 24),
        ],
        &[(PIE_RELA, &relas)],
    );
    let mut p = machine(kernel.clone(), &config("", &[]));
    let h = boot(&mut p).unwrap();
    let b = info(&p, &h);
    let base = crate::elf::DEFAULT_PIE_BASE;
    let slide = base - PIE_TEXT;
    assert_eq!((b.kernel_virt_base, h.entry), (base, slide + PIE_TEXT));
    assert_eq!(b.kernel_phys_base % (2 << 20), 0, "2 MiB-aligned block");
    let at = |link: u64| {
        let t = walk(&p, &h, slide + link).expect("kernel page mapped");
        u64::from_le_bytes(p.bytes(t.phys, 8).try_into().unwrap())
    };
    assert_eq!(at(PIE_DATA + 8), slide + 0x1234, "relocated");
    let file_word =
        |o: u64| u64::from_le_bytes(kernel[o as usize..o as usize + 8].try_into().unwrap());
    assert_eq!(at(PIE_DATA), file_word(PIE_DATA), "the rest as in the file");
    let t = walk(&p, &h, slide + PIE_DATA).unwrap();
    assert!(t.writable && !t.executable);
    check_map(&p, b);
}

#[test]
fn direct_map_in_2mib_pages_and_beyond_4gib() {
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.firmware_map.push((5 * GIB, PAGE, 2));
    let h = run(&mut p, &FakeCpu::new(false), &mut Hvboot::default(), 1).unwrap();
    let b = info(&p, &h);
    assert_eq!(b.direct_map_size, 6 * GIB);
    let t = walk(&p, &h, DEFAULT_DIRECT_MAP_OFFSET + 5 * GIB).unwrap();
    assert_eq!((t.phys, t.page_size), (5 * GIB, 2 * MIB));
    check_address_space(&p, &h, b, DEFAULT_STACK_SIZE);
}

/// tests/test_request.py's reservation cases, with its other requested settings.
#[test]
fn requests_are_honoured() {
    let offset = 0xffff_c000_0000_0000;
    let base = KernelRequest::new()
        .flags(RequestFlags::AP_TRAMPOLINE)
        .stack_size(128 * 1024)
        .direct_map_offset(offset)
        .modules_2mib_aligned()
        .framebuffer(800, 600);
    let cases = [
        (base.guest_memory(16 * MIB, 2 * MIB), None),
        (base.guest_memory(64 * MIB, 2 * MIB), None),
        (
            base.guest_memory(8 * MIB, 2 * MIB).guest_at(64 * MIB),
            Some(64 * MIB),
        ),
        (base.guest_memory(4 * MIB, 0).guest_below(256 * MIB), None),
    ];
    for (req, fixed) in cases {
        let cfg = config("", &[("/hvboot/modules/guest.bin", "guest.bin", "")]);
        let mut p = machine(kernel_at(KBASE, Some(req)), &cfg);
        let module = b"guest image".repeat(1000);
        p.file("/hvboot/modules/guest.bin", module.clone());
        let h = boot(&mut p).unwrap();
        assert_eq!(h.boot_info - offset, h.boot_info.wrapping_sub(offset));
        let b = {
            let phys = h.boot_info - offset;
            let b = BootInfo::from_bytes(p.bytes(phys, block_size(&p, phys))).unwrap();
            b.validate().unwrap();
            b
        };
        assert_eq!(b.request_version, hvboot_api::REQUEST_VERSION);
        let g = b.guest_reservation().expect("a reservation");
        let align = req.guest.alignment.max(PAGE);
        assert_eq!((g.len, g.phys % align), (req.guest.size, 0));
        if let Some(at) = fixed {
            assert_eq!(g.phys, at);
        }
        if req.guest.max_address != 0 {
            assert!(g.phys + g.len <= req.guest.max_address);
        }
        let [ge] = extents_of(b, ExtentKind::GUEST_RESERVATION)[..] else {
            panic!()
        };
        assert_eq!((ge.phys, ge.length, ge.virt), (g.phys, g.len, 0));
        let tramp = b.ap_trampoline_phys().expect("a trampoline page");
        assert!(tramp > 0 && tramp < MIB && tramp % PAGE == 0 && tramp + PAGE <= 0x9_F000);
        assert_eq!(extents_of(b, ExtentKind::AP_TRAMPOLINE)[0].phys, tramp);
        assert_eq!(b.direct_map_offset, offset);
        assert_eq!(walk(&p, &h, offset + 0x1000).unwrap().phys, 0x1000);
        assert!(walk(&p, &h, DEFAULT_DIRECT_MAP_OFFSET).is_none());
        check_address_space(&p, &h, b, 128 * 1024);
        let m = b.modules()[0];
        assert_eq!(m.phys_addr % (2 * MIB), 0);
        assert_eq!(p.bytes(m.phys_addr, m.size), &module[..]);
        assert_eq!(p.sized_requests, [(800, 600)]);
        assert_eq!(
            b.framebuffer().map(|f| (f.width, f.height)),
            Some((800, 600))
        );
        check_map(&p, b);
        let kinds = |k: MemoryKind| {
            b.memory_map()
                .iter()
                .filter(|r| r.kind == k)
                .map(|r| r.length)
                .sum::<u64>()
        };
        assert_eq!(kinds(MemoryKind::GUEST_RESERVED), req.guest.size);
        assert_eq!(kinds(MemoryKind::AP_TRAMPOLINE), PAGE);
    }
}

#[test]
fn no_framebuffer_when_the_kernel_asks_for_none_or_the_machine_has_none() {
    let req = KernelRequest::new().no_framebuffer();
    let mut p = machine(kernel_at(KBASE, Some(req)), &config("", &[]));
    let h = boot(&mut p).unwrap();
    let b = info(&p, &h);
    assert_eq!(
        (b.framebuffer, FRAMEBUFFER_NONE),
        (b.framebuffer, req.framebuffer_width)
    );
    assert!(b.framebuffer().is_none());
    assert!(b
        .memory_map()
        .iter()
        .all(|r| r.kind != MemoryKind::FRAMEBUFFER));
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.framebuffer = None;
    let h = boot(&mut p).unwrap();
    assert!(info(&p, &h).framebuffer().is_none());
}

#[test]
fn enable_vmx_is_asked_of_the_cpu_only_when_requested() {
    let req = KernelRequest::new().flags(RequestFlags::ENABLE_VMX);
    let mut p = machine(kernel_at(KBASE, Some(req)), &config("", &[]));
    let cpu = FakeCpu::new(true);
    run(&mut p, &cpu, &mut Hvboot::default(), 1).unwrap();
    // The fake CPU is AMD (no VMX): nothing to enable, no MSR written.
    assert!(cpu.msr_writes.borrow().is_empty());
}

fn with(cfg: &str, kernel: Vec<u8>, f: impl FnOnce(&mut FakePlatform)) -> String {
    let mut p = machine(kernel, cfg);
    f(&mut p);
    refusal(p)
}

#[test]
fn refusals_before_the_kernel() {
    let k = || kernel_at(KBASE, None);
    let none = |_: &mut FakePlatform| {};
    let e = with("", k(), |p| {
        p.files.remove(CONFIG_PATH);
    });
    assert_eq!(e, "/hvboot/hvboot.cfg: not found");
    let e = with("", k(), |p| {
        p.file(CONFIG_PATH, &b"hvboot-config 1\nkernel \xff\n"[..]);
    });
    assert!(
        e.starts_with("/hvboot/hvboot.cfg: config: not UTF-8 text: invalid utf-8"),
        "{e}"
    );
    let bad = "hvboot-config 1\nkernel /hvboot/kernel.elf\nframebuffer 1024x768\n";
    let e = with(bad, k(), none);
    assert!(e.starts_with("/hvboot/hvboot.cfg: line 3: "), "{e}");
    assert!(e.contains("framebuffer"), "{e}");
    let e = with(&config("", &[]), k(), |p| {
        p.files.remove(KERNEL);
    });
    assert_eq!(e, "/hvboot/kernel.elf: not found");
    let e = with(
        &config("", &[("/hvboot/modules/x.bin", "x.bin", "")]),
        k(),
        none,
    );
    assert_eq!(e, "/hvboot/modules/x.bin: not found");
}

#[test]
fn refusals_of_the_kernel() {
    let cfg = config("", &[]);
    let mut bad = kernel_at(KBASE, None);
    bad[18] = 3; // e_machine = EM_386
    let e = with(&cfg, bad, |_| {});
    assert!(
        e.starts_with("/hvboot/kernel.elf: ") && e.contains("e_machine"),
        "{e}"
    );
    let e = with(&cfg, kernel_at(KBASE, None)[..200].to_vec(), |_| {});
    assert!(e.starts_with("/hvboot/kernel.elf: "), "{e}");
    let mut r = KernelRequest::new();
    r.stack_size = 100;
    let e = with(&cfg, kernel_at(KBASE, Some(r)), |_| {});
    assert!(
        e.starts_with("/hvboot/kernel.elf: .hvboot_request: stack_size: "),
        "{e}"
    );
    // A lower-half kernel whose segments are not at one physical offset.
    let mut phs = segments(0x40_0000);
    phs[2].paddr += 0x10_0000;
    let e = with(&cfg, build(0x40_0010, &phs), |_| {});
    assert_eq!(
        e,
        "/hvboot/kernel.elf: the segments' physical addresses are not at one offset \
        from their virtual addresses; hvboot places a lower-half kernel as one block"
    );
    // A lower-half kernel where there is no RAM.
    let e = with(&cfg, kernel_at(0x4000_0000, None), |_| {});
    assert_eq!(
        e,
        "/hvboot/kernel.elf: cannot place 0xb000 bytes of kernel: \
        0x40000000..0x4000b000 is not free usable memory in the fake's RAM"
    );
}

#[test]
fn refusals_of_the_request() {
    let cfg = config("", &[]);
    let unmet =
        |r: KernelRequest, f: fn(&mut FakePlatform)| with(&cfg, kernel_at(KBASE, Some(r)), f);
    let e = unmet(KernelRequest::new().guest_memory(GIB, PAGE), |_| {});
    assert_eq!(
        e,
        "/hvboot/kernel.elf: .hvboot_request: guest.size: cannot reserve 0x40000000 \
        bytes of guest memory (0x1000-aligned, anywhere): no free block of 0x40000000 bytes \
        below 0x14000000"
    );
    let e = unmet(
        KernelRequest::new()
            .guest_memory(8 * MIB, 0)
            .guest_at(200 * MIB),
        |_| {},
    );
    assert_eq!(
        e,
        "/hvboot/kernel.elf: .hvboot_request: guest.size: cannot reserve 0x800000 \
        bytes of guest memory (at 0xc800000): 0xc800000..0xd000000 is not free usable memory \
        in the fake's RAM"
    );
    let e = unmet(
        KernelRequest::new()
            .guest_memory(MIB, 2 * MIB)
            .guest_below(MIB),
        |_| {},
    );
    assert!(
        e.ends_with(
            "bytes of guest memory (0x200000-aligned, ending at or below 0x100000): \
        no free block of 0x100000 bytes below 0x100000"
        ),
        "{e}"
    );
    let e = unmet(
        KernelRequest::new().flags(RequestFlags::AP_TRAMPOLINE),
        |p| p.low_pages = false,
    );
    assert_eq!(
        e,
        "/hvboot/kernel.elf: .hvboot_request: flags: AP_TRAMPOLINE: no free page \
        below 1 MiB: no usable page between 0x1000 and the EBDA at 0xa0000"
    );
    let e = unmet(
        KernelRequest::new().direct_map_offset(0xffff_ffff_4000_0000),
        |_| {},
    );
    assert_eq!(
        e,
        "/hvboot/kernel.elf: .hvboot_request: direct_map_offset: 0xffffffff40000000: \
        the 0x100000000-byte direct map does not fit above it"
    );
    let e = unmet(
        KernelRequest::new().direct_map_offset(0xffff_fffe_c000_0000),
        |_| {},
    );
    assert_eq!(
        e,
        "/hvboot/kernel.elf: .hvboot_request: direct_map_offset: the direct map \
        0xfffffffec0000000..0xffffffffc0000000 would overlap the kernel at \
        0xffffffff80000000..0xffffffff8000b000"
    );
    let e = unmet(
        KernelRequest::new().direct_map_offset(STACK_REGION_BASE - 2 * GIB),
        |_| {},
    );
    assert_eq!(
        e,
        "/hvboot/kernel.elf: .hvboot_request: direct_map_offset: the direct map \
        0xfffffdff80000000..0xfffffe0080000000 would overlap the stack region at \
        0xfffffe0000000000..0xfffffe0000011000"
    );
}

#[test]
fn refusals_of_allocations() {
    let cfg = config("", &[("/hvboot/modules/m", "m", "")]);
    let refused = |kind: MemoryKind, r: Option<KernelRequest>| {
        with(&cfg, kernel_at(KBASE, r), |p| {
            p.file("/hvboot/modules/m", "module");
            p.refuse.push(kind.0);
        })
    };
    assert_eq!(
        refused(MemoryKind::KERNEL, None),
        "/hvboot/kernel.elf: cannot place 0xb000 bytes of kernel: OUT_OF_RESOURCES"
    );
    assert_eq!(
        refused(MemoryKind::MODULES, None),
        "/hvboot/modules/m: no memory for 6 bytes: OUT_OF_RESOURCES"
    );
    assert_eq!(
        refused(
            MemoryKind::MODULES,
            Some(KernelRequest::new().modules_2mib_aligned())
        ),
        "/hvboot/modules/m: no 2 MiB aligned memory for it: OUT_OF_RESOURCES"
    );
    let e = refused(MemoryKind::PAGE_TABLES, None);
    assert!(
        e.starts_with("no memory for ") && e.ends_with(" page-table pages: OUT_OF_RESOURCES"),
        "{e}"
    );
    assert_eq!(
        refused(MemoryKind::KERNEL_STACK, None),
        "no memory for the 0x10000-byte kernel stack: OUT_OF_RESOURCES"
    );
    // Sizes the request chose: the kernel and the field are named (issue 10, item 7).
    let big = Some(KernelRequest::new().stack_size(1 << 30));
    assert_eq!(
        refused(MemoryKind::KERNEL_STACK, big),
        "/hvboot/kernel.elf: .hvboot_request: stack_size: no memory for the 0x40000000-byte \
         kernel stack: OUT_OF_RESOURCES"
    );
    let e = refused(MemoryKind::PAGE_TABLES, big);
    assert!(
        e.starts_with("/hvboot/kernel.elf: .hvboot_request: stack_size: no memory for ")
            && e.ends_with(" page-table pages: OUT_OF_RESOURCES"),
        "{e}"
    );
    assert_eq!(
        refused(MemoryKind::BOOT_INFO, None),
        "no memory for the boot information: OUT_OF_RESOURCES"
    );
    assert_eq!(
        refused(MemoryKind::LOADER_RECLAIMABLE, None),
        "/hvboot/hvboot.cfg: no memory for 106 bytes: OUT_OF_RESOURCES"
    );
}

#[test]
fn a_final_map_beyond_the_room_made_for_it_is_refused() {
    // Room: the firmware's 7 entries + 96 (the fake's estimate) + 64; with the allocations, the
    // framebuffer and 170 entries the firmware adds at exit, the map exceeds it.
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.exit_extra = 170;
    let e = boot(&mut p).unwrap_err().to_string();
    assert!(p.exited);
    let n = 7 + p.allocations.len() + 1 + 170;
    assert_eq!(
        e,
        format!("the firmware's memory map has {n} entries, room was made for 167")
    );
}

/// tests/test_hypervisor.py's CPU list for -smp 4: the MADT's processors, the BSP marked.
#[test]
fn cpu_list_from_the_madt() {
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.with_madt(4);
    let h = boot(&mut p).unwrap();
    let b = info(&p, &h);
    let cpus: Vec<(u32, u32, u32)> = b
        .cpus()
        .iter()
        .map(|c| (c.apic_id, c.acpi_uid, c.flags.0))
        .collect();
    let (enabled, bsp) = (CpuFlags::ENABLED.0, CpuFlags::BSP.0);
    let want = std::vec![
        (0, 0, enabled | bsp),
        (1, 1, enabled),
        (2, 2, enabled),
        (3, 3, enabled)
    ];
    assert_eq!(cpus, want);
    assert_eq!(b.local_apic_phys(), Some(0xFEE0_0000));
}

/// The boot information carries where the MADT, FADT, MCFG, SRAT, DMAR and IVRS are: the first
/// of each signature the RSDT lists (a duplicate SRAT is not taken), 0 for those that are absent,
/// all 0 without ACPI tables; a table with a bad checksum is not reported.
#[test]
fn acpi_table_addresses_are_reported() {
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.with_acpi_tables(
        &[(0, 1)],
        &[*b"FACP", *b"SRAT", *b"MCFG", *b"SRAT", *b"HPET"],
    );
    let h = boot(&mut p).unwrap();
    let t = *info(&p, &h).acpi_tables().unwrap();
    let at = FakePlatform::acpi_table_at;
    assert_eq!(
        t,
        AcpiTables {
            madt: at(0),
            fadt: at(1),
            srat: at(2),
            mcfg: at(3),
            dmar: 0,
            ivrs: 0,
        }
    );

    // DMAR and IVRS too; the FACP's checksum broken: not reported.
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.with_acpi_tables(&[(0, 1)], &[*b"DMAR", *b"IVRS", *b"FACP"]);
    // SAFETY: the fake's arena; the FACP is table 3.
    unsafe { super::phys_slice(&mut p, at(3) + 9, 1)[0] ^= 0xff };
    let h = boot(&mut p).unwrap();
    let t = *info(&p, &h).acpi_tables().unwrap();
    assert_eq!((t.madt, t.dmar, t.ivrs, t.fadt), (at(0), at(1), at(2), 0));

    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    let h = boot(&mut p).unwrap();
    assert_eq!(*info(&p, &h).acpi_tables().unwrap(), AcpiTables::default());
}

/// Without CPUID 15h/16h the TSC is measured against the FADT's PM timer (the fake's runs off
/// the same counter at FAKE_TSC_HZ): within 0.1 %, reported as PM_TIMER; without a FADT
/// against the PIT's channel 2 (the fake's also off that counter), within 0.1 %; without
/// either the frequency is unknown.
#[test]
fn tsc_frequency_is_measured_against_the_pm_timer() {
    use super::fake::FAKE_TSC_HZ;
    use hvboot_api::TscSource;

    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.with_acpi_tables(&[(0, 1)], &[*b"FACP"]);
    let h = boot(&mut p).unwrap();
    let (hz, source) = info(&p, &h).tsc_frequency().unwrap();
    assert_eq!(source, TscSource::PM_TIMER);
    assert!(hz.abs_diff(FAKE_TSC_HZ) < FAKE_TSC_HZ / 1000, "{hz}");

    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.with_madt(1);
    let h = boot(&mut p).unwrap();
    let (hz, source) = info(&p, &h).tsc_frequency().unwrap();
    assert_eq!(source, TscSource::PIT);
    assert!(hz.abs_diff(FAKE_TSC_HZ) < FAKE_TSC_HZ / 1000, "{hz}");

    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.with_madt(1);
    let cpu = FakeCpu::new(true);
    *cpu.pit.borrow_mut() = None;
    let h = run(&mut p, &cpu, &mut Hvboot::default(), 42).unwrap();
    assert_eq!(info(&p, &h).tsc_frequency(), None);
}

/// x2APIC processors (MADT type 9, APIC IDs of 255 and above, which QEMU 7.2's TCG cannot
/// boot: docs/testing.md): listed with their 32-bit IDs and UIDs, sent INIT and SIPI at those
/// IDs, found in the trampoline's slot table by them, and recorded as parked.
#[test]
fn x2apic_processors_are_listed_started_and_recorded() {
    use super::cpu::Ipi;
    use super::fake::ApSim;
    use hvboot_api::CpuState;

    let req = KernelRequest::new().start_aps(32 * 1024);
    let mut p = machine(kernel_at(KBASE, Some(req)), &config("", &[]));
    p.with_x2apic_madt(&[(0, 1), (300, 1), (0x1_0000, 1), (301, 0)]);
    let cpu = FakeCpu::new(true);
    *cpu.aps.borrow_mut() = ApSim::on(&p, &[300, 0x1_0000]);
    let h = run(&mut p, &cpu, &mut Hvboot::default(), 42).unwrap();
    let b = info(&p, &h);
    let listed: Vec<(u32, u32)> = b.cpus().iter().map(|c| (c.apic_id, c.acpi_uid)).collect();
    assert_eq!(
        listed,
        std::vec![(0, 0), (300, 300), (0x1_0000, 0x1_0000), (301, 301)]
    );
    let sim = cpu.aps.borrow();
    let inits: Vec<u32> = sim
        .ipis
        .iter()
        .filter(|i| i.1 == Ipi::Init)
        .map(|i| i.0)
        .collect();
    assert_eq!(inits, std::vec![300, 0x1_0000]);
    let states: Vec<CpuState> = b.cpu_starts().iter().map(|s| s.state).collect();
    let want = [
        CpuState::BSP,
        CpuState::PARKED,
        CpuState::PARKED,
        CpuState::DISABLED,
    ];
    assert_eq!(states, want);
}

/// START_APS: every enabled AP but the BSP gets INIT, then SIPI (all back to back), a second
/// SIPI only where nobody arrived; the records say BSP / parked / no answer / online capable /
/// disabled; each started AP has its own stack above a guard page, its mailbox points at its
/// record, and a differing microcode revision is flagged.
#[test]
fn aps_are_started_all_at_once_and_reported() {
    use super::cpu::Ipi;
    use super::fake::ApSim;
    use hvboot_api::{CpuStartFlags, CpuState};

    let req = KernelRequest::new().start_aps(32 * 1024);
    let mut p = machine(kernel_at(KBASE, Some(req)), &config("", &[]));
    // APIC 0 is the BSP; 1..=3 enabled (3 never answers); 4 online capable; 5 disabled.
    p.with_madt_cpus(&[(0, 1), (1, 1), (2, 1), (3, 1), (4, 2), (5, 0)]);
    let cpu = FakeCpu::new(true);
    *cpu.aps.borrow_mut() = ApSim::on(&p, &[1, 2]);
    cpu.aps.borrow_mut().microcode.push((2, 0x42));
    let h = run(&mut p, &cpu, &mut Hvboot::default(), 42).unwrap();
    let b = info(&p, &h);
    let sim = cpu.aps.borrow();
    let params = sim.params.expect("the APs were sent SIPIs");
    let page = extents_of(b, ExtentKind::AP_TRAMPOLINE)[0].phys;
    assert!(page < 0x10_0000 && page != 0);
    let v = Ipi::Startup((page >> 12) as u8);
    let want = std::vec![
        (1, Ipi::Init),
        (2, Ipi::Init),
        (3, Ipi::Init),
        (1, Ipi::InitDeassert),
        (2, Ipi::InitDeassert),
        (3, Ipi::InitDeassert),
        (1, v),
        (2, v),
        (3, v),
        (3, v),
    ];
    assert_eq!(sim.ipis, want);
    assert_eq!(u64::from(params.cr3), h.cr3);
    assert_eq!(params.count, 3);
    let long = walk(&p, &h, u64::from(params.long_entry)).expect("trampoline identity-mapped");
    assert_eq!(long.phys, u64::from(params.long_entry));
    assert!(long.executable);

    let starts = b.cpu_starts();
    let states: Vec<CpuState> = starts.iter().map(|s| s.state).collect();
    use CpuState as S;
    let want = [
        S::BSP,
        S::PARKED,
        S::PARKED,
        S::NO_ANSWER,
        S::ONLINE_CAPABLE,
        S::DISABLED,
    ];
    assert_eq!(states, want);
    let uids: Vec<u32> = starts.iter().map(|s| s.acpi_uid).collect();
    assert_eq!(uids, [0, 1, 2, 3, 4, 5]);
    let info_virt = h.boot_info;
    let records = info_virt + u64::from(b.cpu_starts.offset);
    for (i, s) in starts.iter().enumerate().take(4).skip(1) {
        assert_eq!(s.stack_size, 32 * 1024);
        let top = walk(&p, &h, s.stack_bottom).expect("stack mapped");
        assert!(top.writable && !top.executable);
        assert!(walk(&p, &h, s.stack_bottom - PAGE).is_none(), "guard page");
        let mb = s.mailbox - DEFAULT_DIRECT_MAP_OFFSET;
        let at = core::mem::offset_of!(hvboot_api::CpuMailbox, cpu_start) as u64;
        let rdi = u64::from_le_bytes(p.bytes(mb + at, 8).try_into().unwrap());
        assert_eq!(
            rdi,
            records + (i * core::mem::size_of::<hvboot_api::CpuStart>()) as u64
        );
    }
    assert!(starts[1].tsc_arrived > b.tsc_stamp(TscStage::FIRMWARE_EXITED).unwrap());
    assert_eq!(starts[3].tsc_arrived, 0);
    // The BSP's stamp is the first INIT's: after leaving the firmware, before any AP arrived.
    assert!(starts[0].tsc_arrived > b.tsc_stamp(TscStage::FIRMWARE_EXITED).unwrap());
    assert!(starts[0].tsc_arrived < starts[1].tsc_arrived);
    let differs = |s: &hvboot_api::CpuStart| s.flags.contains(CpuStartFlags::DIFFERS_FROM_BSP);
    assert!(!differs(&starts[1]) && differs(&starts[2]));
    assert_eq!(starts[2].microcode, 0x42);
    assert!(starts[1].flags.contains(CpuStartFlags::SVM));
    let stacks = extents_of(b, ExtentKind::STACK);
    assert_eq!(stacks.len(), 4, "the BSP's and three AP stacks");
    assert_eq!(extents_of(b, ExtentKind::CPU_DATA).len(), 1);
}

/// Without START_APS nothing is sent and there are no records (the trampoline page stays the
/// kernel's); with it but a single CPU, only the BSP's record.
#[test]
fn no_aps_started_unless_asked() {
    use super::fake::ApSim;
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    p.with_madt(4);
    let cpu = FakeCpu::new(true);
    *cpu.aps.borrow_mut() = ApSim::on(&p, &[1, 2, 3]);
    let h = run(&mut p, &cpu, &mut Hvboot::default(), 42).unwrap();
    assert!(cpu.aps.borrow().ipis.is_empty());
    assert!(info(&p, &h).cpu_starts().is_empty());

    let req = KernelRequest::new().start_aps(0);
    let mut p = machine(kernel_at(KBASE, Some(req)), &config("", &[]));
    p.with_madt(1);
    let cpu = FakeCpu::new(true);
    let h = run(&mut p, &cpu, &mut Hvboot::default(), 42).unwrap();
    assert!(cpu.aps.borrow().ipis.is_empty());
    let starts = info(&p, &h).cpu_starts();
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].state, hvboot_api::CpuState::BSP);
}

/// The Multiboot2 information's tags as (type, body), from the block at `phys`.
fn mb2_tags(p: &FakePlatform, phys: u64) -> Vec<(u32, Vec<u8>)> {
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let total = u32_at(p.bytes(phys, 8), 0) as usize;
    let block = p.bytes(phys, total as u64);
    let (mut at, mut tags) = (8, Vec::new());
    while at < total {
        let (kind, size) = (u32_at(block, at), u32_at(block, at + 4) as usize);
        tags.push((kind, block[at + 8..at + size].to_vec()));
        at += size.next_multiple_of(8);
    }
    tags
}

/// A Multiboot2 ELF32 through the whole flow: the image at its physical address, the 32-bit
/// hand-off (EAX magic and EBX information are set by `handoff::jump`), the information's tags
/// as the config, the modules and the fake firmware give them.
#[test]
fn multiboot2_kernel_hand_off() {
    use crate::handoff::EntryMode;
    use crate::testing::multiboot2::{elf32, header, tag};
    let hdr = header(&[tag(1, 0, &[1, 2, 3, 4, 6, 14, 21]), tag(6, 0, &[])]);
    let kernel = elf32(&hdr, 0x20_0000, b"\xfa\xf4kernel");
    let cfg = config("x=1 y", &[("/hvboot/modules/a", "a", "arg")]);
    let mut p = machine(kernel, &cfg);
    p.file("/hvboot/modules/a", &b"module bytes"[..])
        .with_madt(1);
    let h = super::boot(&mut p, &FakeCpu::new(true), 42).unwrap();
    assert!(p.exited);
    assert_eq!(
        (h.mode, h.entry, h.cr3),
        (EntryMode::Multiboot2, 0x20_0000, 0)
    );
    assert!(h.boot_info + 4096 <= 1 << 32);
    assert_eq!(p.bytes(0x20_0000, 8), b"\xfa\xf4kernel");
    let tags = mb2_tags(&p, h.boot_info);
    let kinds: Vec<u32> = tags.iter().map(|t| t.0).collect();
    assert_eq!(kinds, [1, 2, 3, 4, 6, 14, 21, 0]);
    let body = |k: u32| &tags.iter().find(|t| t.0 == k).unwrap().1;
    assert_eq!(body(1).as_slice(), b"/hvboot/kernel.elf x=1 y\0");
    assert!(body(2).starts_with(b"hvboot "));
    let m = body(3);
    let (start, end) = (
        u32::from_le_bytes(m[..4].try_into().unwrap()),
        u32::from_le_bytes(m[4..8].try_into().unwrap()),
    );
    assert_eq!(
        p.bytes(u64::from(start), u64::from(end - start)),
        b"module bytes"
    );
    assert_eq!(&m[8..], b"a arg\0");
    // The map: 24-byte entries, sorted, the RAM up to the fake's end available.
    let map = body(6);
    assert_eq!(&map[..8], &[24, 0, 0, 0, 0, 0, 0, 0]);
    let entries: Vec<(u64, u64, u32)> = map[8..]
        .chunks(24)
        .map(|e| {
            let q = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap());
            (
                q(0),
                q(8),
                u32::from_le_bytes(e[16..20].try_into().unwrap()),
            )
        })
        .collect();
    assert!(entries.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
    let top = entries.iter().filter(|e| e.2 == 1).map(|e| e.0 + e.1).max();
    assert_eq!(top, Some(RAM_END), "{entries:x?}");
    // The RSDP copied (ACPI 1.0: the old tag only), the load base the ELF's address.
    assert_eq!(&body(14)[..8], b"RSD PTR ");
    assert_eq!(body(21).as_slice(), 0x20_0000u32.to_le_bytes());
}

/// A Multiboot2 kernel whose information request needs what hvboot does not give is refused
/// before the firmware is left, with the field and the tag's number.
#[test]
fn multiboot2_refusal_names_the_tag() {
    use crate::testing::multiboot2::{elf32, header, tag};
    let kernel = elf32(&header(&[tag(1, 0, &[5])]), 0x20_0000, b"k");
    let e = super::boot(
        &mut machine(kernel, &config("", &[])),
        &FakeCpu::new(true),
        1,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "/hvboot/kernel.elf: multiboot2 tag 0 (information request, type 1): requires \
         information tag type 5 (BIOS boot device), which hvboot does not give; hvboot gives \
         types [1, 2, 3, 4, 6, 8, 9, 13, 14, 15, 21]"
    );
}

/// A relocatable Multiboot2 kernel linked where there is no RAM moves within its tag's bounds,
/// at its alignment; entry and load base follow it.
#[test]
fn multiboot2_relocatable_kernel_moves() {
    use crate::testing::multiboot2::{elf32, header, tag};
    let linked = 0x8000_0000u32;
    let reloc = tag(10, 0, &[0x10_0000, 0xffff_ffff, 0x20_0000, 2]);
    let kernel = elf32(&header(&[reloc]), linked, b"\xfa\xf4moved");
    let mut p = machine(kernel, &config("", &[]));
    let h = super::boot(&mut p, &FakeCpu::new(true), 1).unwrap();
    let base = h.entry;
    assert!(
        base < RAM_END && base.is_multiple_of(0x20_0000),
        "{base:#x}"
    );
    assert_eq!(p.bytes(base, 7), b"\xfa\xf4moved");
    let tags = mb2_tags(&p, h.boot_info);
    let load_base = &tags.iter().find(|t| t.0 == 21).unwrap().1;
    assert_eq!(load_base.as_slice(), (base as u32).to_le_bytes());
}

/// Under UEFI (a system table) a relocatable Multiboot2 kernel with the EFI boot services and
/// EFI amd64 entry tags keeps the firmware: entered at the EFI entry plus the slide in 64-bit
/// mode, placed at its alignment, with tags 18, 20 (the image handle), 12 and 17. Under BIOS
/// the same kernel is entered at its 32-bit entry after the firmware is left, with no EFI tag.
#[test]
fn multiboot2_efi_boot_services_path() {
    use crate::handoff::EntryMode;
    use crate::testing::multiboot2::{elf32, header, tag};
    let linked = 0x8000_0000u32;
    let hdr = header(&[
        tag(7, 0, &[]),
        tag(9, 0, &[linked + 0x40]),
        tag(10, 0, &[0x10_0000, 0xffff_ffff, 0x20_0000, 2]),
    ]);
    let kernel = elf32(&hdr, linked, b"\xfa\xf4efi");
    for uefi in [true, false] {
        let mut p = machine(kernel.clone(), &config("", &[]));
        p.system_table = if uefi { 0x7_0000 } else { 0 };
        let h = super::boot(&mut p, &FakeCpu::new(true), 1).unwrap();
        let base = u64::from(u32::from_le_bytes(
            mb2_tags(&p, h.boot_info)
                .iter()
                .find(|t| t.0 == 21)
                .unwrap()
                .1[..4]
                .try_into()
                .unwrap(),
        ));
        assert!(
            base.is_multiple_of(0x20_0000) && base < RAM_END,
            "{base:#x}"
        );
        assert_eq!(p.bytes(base, 5), b"\xfa\xf4efi");
        let tags = mb2_tags(&p, h.boot_info);
        let kinds: Vec<u32> = tags.iter().map(|t| t.0).collect();
        let body = |k: u32| tags.iter().find(|t| t.0 == k).map(|t| t.1.clone());
        if uefi {
            assert_eq!((h.mode, h.entry), (EntryMode::Multiboot2Efi64, base + 0x40));
            assert!(p.kept && !p.exited);
            assert_eq!(body(18), Some(Vec::new()));
            assert_eq!(
                body(20),
                Some(super::fake::IMAGE_HANDLE.to_le_bytes().to_vec())
            );
            assert_eq!(body(12), Some(0x7_0000u64.to_le_bytes().to_vec()));
            assert!(kinds.contains(&17), "{kinds:?}");
        } else {
            assert_eq!((h.mode, h.entry), (EntryMode::Multiboot2, base));
            assert!(p.exited && !p.kept);
            assert!(
                !kinds.iter().any(|k| [12, 17, 18, 20].contains(k)),
                "{kinds:?}"
            );
        }
    }
}

/// The relocatable tag's preference (§3.1.12): 1 takes the lowest aligned block from min_addr
/// up, 2 the highest below max_addr even when the link address is free, 0 the link address.
#[test]
fn multiboot2_relocatable_preference() {
    use crate::testing::multiboot2::{elf32, header, tag};
    for (preference, linked, expect) in [
        (1, 0x8000_0000u32, Some(0x30_0000u64)),
        (2, 0x20_0000, None),
        (0, 0x20_0000, Some(0x20_0000)),
    ] {
        let reloc = tag(10, 0, &[0x30_0000, 0xffff_ffff, 0x10_0000, preference]);
        let kernel = elf32(&header(&[reloc]), linked, b"\xfa\xf4pref");
        let mut p = machine(kernel, &config("", &[]));
        let base = super::boot(&mut p, &FakeCpu::new(true), 1).unwrap().entry;
        assert_eq!(p.bytes(base, 6), b"\xfa\xf4pref");
        match expect {
            Some(at) => assert_eq!(base, at, "preference {preference}"),
            // High: the top of the fake's RAM, less the loader's own top-down allocations.
            None => assert!(base > RAM_END / 2, "preference 2: {base:#x}"),
        }
    }
}

/// The VBE info tag (7) follows the information request: given with the platform's blocks
/// when the kernel names it, absent when it does not.
#[test]
fn multiboot2_vbe_info_where_asked() {
    use crate::testing::multiboot2::{elf32, header, tag};
    let vbe = super::VbeInfo {
        mode: 0x118,
        control_info: [b'V'; 512],
        mode_info: [7; 256],
    };
    for asked in [true, false] {
        let request = tag(1, 1, if asked { &[7, 8] } else { &[8] });
        let kernel = elf32(&header(&[request, tag(5, 1, &[0, 0, 32])]), 0x20_0000, b"k");
        let mut p = machine(kernel, &config("", &[]));
        p.vbe = Some(vbe);
        let h = super::boot(&mut p, &FakeCpu::new(true), 1).unwrap();
        let tags = mb2_tags(&p, h.boot_info);
        let body = tags.iter().find(|t| t.0 == 7).map(|t| t.1.clone());
        if asked {
            let body = body.expect("a VBE info tag");
            assert_eq!(&body[..8], &[0x18, 0x01, 0, 0, 0, 0, 0, 0]);
            assert_eq!(
                (&body[8..520], &body[520..]),
                (&[b'V'; 512][..], &[7; 256][..])
            );
        } else {
            assert_eq!(body, None);
        }
        assert!(tags.iter().any(|t| t.0 == 8), "the framebuffer tag");
    }
}

/// A Limine kernel through the whole flow (docs/limine.md): the responses written into its
/// requests in the loaded image, the tag answered, its Entry Point request's entry, the
/// protocol's GDT, and the MP request over the SMP engine (each AP's info laid over its
/// mailbox).
#[test]
fn limine_kernel_hand_off() {
    use super::fake::ApSim;
    use crate::handoff::EntryMode;
    use crate::limine::KNOWN;
    use crate::protocols::limine::{GDT, MP_INFO_GOTO};
    use crate::testing::limine::{end, kernel, request, start, tag, DATA};

    let id = |name: &str| KNOWN.iter().find(|k| k.0 == name).unwrap().1;
    let names = [
        "HHDM",
        "memory map",
        "module",
        "executable address",
        "MP",
        "device tree blob",
        "date at boot",
    ];
    let mut words = [start(), tag(2)].concat();
    for n in names {
        words.extend(request(id(n), 0, 1));
    }
    let entry_at = words.len();
    words.extend(request(id("entry point"), 0, 1));
    words[entry_at + 6] = KBASE + 0x40;
    words.extend(end());
    let cfg = config("c=1", &[("/hvboot/modules/a", "a", "arg")]);
    let mut p = machine(kernel(&words), &cfg);
    p.file("/hvboot/modules/a", &b"module bytes"[..])
        .with_madt(3);
    p.clock = Some(1_796_149_859);
    let cpu = FakeCpu::new(true);
    *cpu.aps.borrow_mut() = ApSim::on(&p, &[1, 2]);
    let h = super::boot(&mut p, &cpu, 42).unwrap();
    assert_eq!(
        (h.mode, h.entry),
        (
            EntryMode::Limine {
                strict: false,
                hhdm: DEFAULT_DIRECT_MAP_OFFSET,
                la57_switch: 0
            },
            KBASE + 0x40
        )
    );

    let dm = DEFAULT_DIRECT_MAP_OFFSET;
    let kernel_phys = |virt: u64| walk(&p, &h, virt).expect("mapped").phys;
    let word = |phys: u64| u64::from_le_bytes(p.bytes(phys, 8).try_into().unwrap());
    let gdt: Vec<u64> = (0..GDT.len() as u64)
        .map(|i| word(h.gdt_virt - dm + i * 8))
        .collect();
    assert_eq!(gdt, GDT);
    // The tag: supported (third word 0), booted with revision 2 (second word).
    let tag_phys = kernel_phys(DATA + 32);
    assert_eq!((word(tag_phys + 8), word(tag_phys + 16)), (2, 0));
    let response = |n: usize| {
        let r = word(kernel_phys(DATA + 56 + n as u64 * 56) + 40);
        (r != 0).then(|| r - dm)
    };
    assert_eq!(word(response(0).unwrap() + 8), dm, "HHDM offset");
    // The memory map: sorted, the first page never usable, the kernel typed 6.
    let map = response(1).unwrap();
    let (count, array) = (word(map + 8), word(map + 16) - dm);
    let entries: Vec<[u64; 3]> = (0..count)
        .map(|i| {
            let e = word(array + i * 8) - dm;
            [word(e), word(e + 8), word(e + 16)]
        })
        .collect();
    assert!(entries.windows(2).all(|w| w[0][0] <= w[1][0]));
    assert!(entries.iter().all(|e| e[2] != 0 || e[0] >= PAGE));
    let kernel_base = kernel_phys(KBASE);
    assert!(
        entries.iter().any(|e| e[0] == kernel_base && e[2] == 6),
        "{entries:x?}"
    );
    // The module: its bytes, path and command line.
    let modules = response(2).unwrap();
    assert_eq!(word(modules + 8), 1);
    let file = word(word(modules + 16) - dm) - dm;
    let (addr, size) = (word(file + 8) - dm, word(file + 16));
    assert_eq!(p.bytes(addr, size), b"module bytes");
    let cstr = |v: u64| {
        let b = p.bytes(v - dm, 64);
        b[..b.iter().position(|&c| c == 0).unwrap()].to_vec()
    };
    assert_eq!(cstr(word(file + 24)), b"/hvboot/modules/a");
    assert_eq!(cstr(word(file + 32)), b"arg");
    let address = response(3).unwrap();
    assert_eq!(
        (word(address + 8), word(address + 16)),
        (kernel_base, KBASE)
    );
    // MP: the BSP and both APs; each AP's goto_address is its mailbox's entry word and its
    // mailbox's cpu_start (RDI) the info.
    let mp = response(4).unwrap();
    assert_eq!(word(mp + 16), 3);
    let infos: Vec<u64> = (0..3).map(|i| word(word(mp + 24) - dm + i * 8)).collect();
    for (i, &info) in infos.iter().enumerate() {
        assert_eq!(word(info - dm) >> 32, i as u64, "lapic_id");
    }
    let b_starts = (1..3).map(|i| infos[i] - dm + MP_INFO_GOTO);
    for mailbox in b_starts {
        let cpu_start = core::mem::offset_of!(hvboot_api::CpuMailbox, cpu_start) as u64;
        assert_eq!(word(mailbox + cpu_start) + MP_INFO_GOTO, mailbox + dm);
        let hook = crate::trampoline::MAILBOX_RELEASE_HOOK as u64;
        assert_eq!(
            word(mailbox + hook),
            0,
            "before revision 5: straight to goto_address"
        );
    }
    assert_eq!(
        response(5),
        None,
        "a device tree blob on x86-64 is left unanswered"
    );
    // Date at boot: the clock's reading, as the platform gave it before the firmware was left.
    assert_eq!(word(response(6).unwrap() + 8), 1_796_149_859);
}

/// Base revision 5+ on the APs (docs/limine.md, "Entry state"): each AP's mailbox sends its
/// release through `handoff::limine_ap_release` (mapped at its identity address in the kernel's
/// tables, where the parked AP runs), with its own copy of the protocol's GDT (a TSS
/// descriptor turns busy at LTR, so none is shared) and the HHDM offset the strict state
/// reaches the xAPIC through; the BSP's entry mode is strict with the same offset.
#[test]
fn limine_strict_state_on_the_aps() {
    use super::fake::ApSim;
    use crate::handoff::EntryMode;
    use crate::limine::KNOWN;
    use crate::protocols::limine::{GDT, MAILBOX_AP_GDT, MAILBOX_AP_HHDM, MP_INFO_GOTO};
    use crate::testing::limine::{end, kernel, request, start, tag, DATA};

    let id = |name: &str| KNOWN.iter().find(|k| k.0 == name).unwrap().1;
    let mut words = [start(), tag(6)].concat();
    words.extend(request(id("MP"), 0, 1));
    words.extend(end());
    let cfg = config("", &[]);
    let mut p = machine(kernel(&words), &cfg);
    p.with_madt(3);
    let cpu = FakeCpu::new(true);
    *cpu.aps.borrow_mut() = ApSim::on(&p, &[1, 2]);
    let h = super::boot(&mut p, &cpu, 42).unwrap();
    let dm = DEFAULT_DIRECT_MAP_OFFSET;
    assert_eq!(
        h.mode,
        EntryMode::Limine {
            strict: true,
            hhdm: dm,
            la57_switch: 0
        }
    );
    let word = |phys: u64| u64::from_le_bytes(p.bytes(phys, 8).try_into().unwrap());
    let release = crate::handoff::limine_ap_release();
    assert_eq!(walk(&p, &h, release).expect("mapped").phys, release);
    // The MP request follows the start marker and the tag; its response is its sixth word.
    let mp = word(walk(&p, &h, DATA + 56 + 40).expect("mapped").phys);
    assert_eq!(word(mp - dm + 16), 3);
    let mut gdts = alloc::vec![h.gdt_virt];
    for i in 1..3 {
        let info = word(word(mp - dm + 24) - dm + i * 8);
        let mailbox = info - dm + MP_INFO_GOTO;
        let hook = crate::trampoline::MAILBOX_RELEASE_HOOK as u64;
        assert_eq!(word(mailbox + hook), release);
        assert_eq!(word(mailbox + MAILBOX_AP_HHDM as u64), dm);
        let gdt = word(mailbox + MAILBOX_AP_GDT as u64);
        let copy: Vec<u64> = (0..GDT.len() as u64)
            .map(|j| word(gdt - dm + j * 8))
            .collect();
        assert_eq!(copy, GDT, "AP {i}'s GDT");
        assert!(!gdts.contains(&gdt), "AP {i}'s GDT its own");
        gdts.push(gdt);
    }
}

/// A Limine kernel whose Paging Mode request asks for 5-level paging, on a CPU with LA57: CR3
/// is a PML5 whose entry 0 is the PML4's lower half and entry 511 a copy of its upper half
/// (so a 48-bit address translates as before and no 57-bit one aliases the other half), the
/// switch page carries the protocol's GDT, the APs' trampoline sets LA57, and the response
/// says 5-level; the same kernel on a CPU without LA57 gets 4-level tables and answer.
#[test]
fn limine_five_level_paging() {
    use super::fake::ApSim;
    use super::five_level::SWITCH_GDT_OFFSET;
    use crate::handoff::EntryMode;
    use crate::limine::KNOWN;
    use crate::protocols::limine::GDT;
    use crate::testing::limine::{end, kernel, request, start, tag, DATA};

    let id = |name: &str| KNOWN.iter().find(|k| k.0 == name).unwrap().1;
    let mut words = [start(), tag(4)].concat();
    // Paging mode, revision 1: mode 5-level, max_mode 5-level, min_mode 4-level.
    words.extend(request(id("paging mode"), 1, 0));
    words.extend([1, 1, 0]);
    words.extend(request(id("MP"), 0, 1));
    words.extend(end());
    for la57 in [true, false] {
        let cfg = config("", &[]);
        let mut p = machine(kernel(&words), &cfg);
        p.with_madt(2);
        let mut cpu = FakeCpu::new(true);
        cpu.la57 = la57;
        *cpu.aps.borrow_mut() = ApSim::on(&p, &[1]);
        let h = super::boot(&mut p, &cpu, 42).unwrap();
        let EntryMode::Limine { la57_switch, .. } = h.mode else {
            panic!("{:?}", h.mode)
        };
        let dm = DEFAULT_DIRECT_MAP_OFFSET;
        let word = |phys: u64| u64::from_le_bytes(p.bytes(phys, 8).try_into().unwrap());
        let kernel_phys = |cr3: u64, virt: u64| {
            // SAFETY: the tables live in the arena.
            unsafe { paging::translate(p.phys_offset_for_tests(), cr3, virt) }.map(|t| t.phys)
        };
        let trampoline_cr4 = cpu.aps.borrow().params.unwrap().cr4_extra;
        if !la57 {
            assert_eq!((la57_switch, trampoline_cr4), (0, 0));
            let r = word(kernel_phys(h.cr3, DATA + 56).unwrap() + 40);
            assert_eq!(word(r - DEFAULT_DIRECT_MAP_OFFSET + 8), 0, "4-level");
            continue;
        }
        assert_ne!(la57_switch, 0);
        assert_eq!(trampoline_cr4, crate::trampoline::CR4_LA57);
        let (low, high) = (word(h.cr3) & !0xfff, word(h.cr3 + 511 * 8) & !0xfff);
        assert_eq!((word(h.cr3) & 3, word(h.cr3 + 511 * 8) & 3), (3, 3));
        assert!((1..511).all(|i| word(h.cr3 + i * 8) == 0));
        assert!(
            (256..512).all(|i| word(low + i * 8) == 0),
            "the low PML4 keeps its lower half"
        );
        assert!(
            (0..256).all(|i| word(high + i * 8) == 0),
            "the high copy its upper half"
        );
        // The kernel and the direct map through the upper half, the hand-off code through the
        // lower one.
        assert!(kernel_phys(high, KBASE).is_some() && kernel_phys(low, KBASE).is_none());
        assert_eq!(kernel_phys(high, dm + 0x1000), Some(0x1000));
        let (code, _) = crate::handoff::code_pages();
        assert_eq!(kernel_phys(low, code), Some(code));
        let gdt: Vec<u64> = (0..GDT.len() as u64)
            .map(|i| word(la57_switch + SWITCH_GDT_OFFSET + i * 8))
            .collect();
        assert_eq!(gdt, GDT);
        // The response: LIMINE_PAGING_MODE_X86_64_5LVL.
        let r = word(kernel_phys(high, DATA + 56).unwrap() + 40);
        assert_eq!(word(r - dm + 8), 1);
    }
}

#[test]
fn digests_pin_the_kernel_and_each_module_before_use() {
    use crate::digest::Digest;
    let module = b"module bytes".to_vec();
    let m = "/hvboot/modules/m.bin";
    for request in [None, Some(KernelRequest::new().modules_2mib_aligned())] {
        let kernel = kernel_at(KBASE, request);
        let pinned = |k: &[u8], md: &[u8]| {
            format!(
                "{}kernel-blake3 {}\nmodule-blake3 {}\n",
                config("", &[(m, "m.bin", "")]),
                Digest::of(k),
                Digest::of(md)
            )
        };
        // Pins that match boot.
        let mut p = machine(kernel.clone(), &pinned(&kernel, &module));
        p.file(m, module.clone());
        boot(&mut p).expect("matching digests boot");
        // A replaced kernel: refused before it is parsed, naming both digests.
        let mut other = kernel.clone();
        *other.last_mut().unwrap() ^= 1;
        let cfg = pinned(&kernel, &module);
        let e = with(&cfg, other.clone(), |p| {
            p.file(m, module.clone());
        });
        assert_eq!(
            e,
            format!(
                "/hvboot/kernel.elf: blake3 mismatch: expected {}, got {}",
                Digest::of(&kernel),
                Digest::of(&other)
            )
        );
        // A replaced module.
        let e = with(&cfg, kernel.clone(), |p| {
            p.file(m, &b"other bytes"[..]);
        });
        assert_eq!(
            e,
            format!(
                "{m}: blake3 mismatch: expected {}, got {}",
                Digest::of(&module),
                Digest::of(b"other bytes")
            )
        );
    }
}

/// Issue 10, "memory maps of thousands of entries": a firmware map of 4,000 entries (usable
/// and reserved pages alternating, which no merge can join) boots; every reserved page stays
/// reserved in the kernel's map, every allocation has its kind, and the room made for the final
/// map grew with the firmware's.
#[test]
fn a_firmware_map_of_thousands_of_entries() {
    const PAIRS: u64 = 2000;
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    let (from, to) = (240 * MIB, 240 * MIB + 2 * PAIRS * PAGE);
    let usable_tail = p
        .firmware_map
        .iter()
        .position(|e| e.0 == 201 * MIB)
        .unwrap();
    p.firmware_map[usable_tail] = (201 * MIB, from - 201 * MIB, 1);
    let pieces = (0..2 * PAIRS).map(|i| (from + i * PAGE, PAGE, if i % 2 == 0 { 2 } else { 1 }));
    let at = usable_tail + 1;
    p.firmware_map.splice(at..at, pieces);
    p.firmware_map
        .insert(at + 2 * PAIRS as usize, (to, RAM_END - to, 1));
    assert!(p.firmware_map.len() > 4000);
    let h = boot(&mut p).unwrap();
    let b = info(&p, &h);
    check_map(&p, b);
    let map = b.memory_map();
    assert!(map.len() > 2 * PAIRS as usize, "{} entries", map.len());
    for i in (0..2 * PAIRS).step_by(2) {
        let page = from + i * PAGE;
        let r = map
            .iter()
            .find(|r| r.base <= page && page < r.base + r.length)
            .expect("a reserved page is in the map");
        assert_eq!(r.kind, MemoryKind::RESERVED, "page {page:#x}");
    }
}

/// Measured boot (flow/measure.rs): with a TPM, the config and the command line go into PCR 8,
/// the kernel's and each module's BLAKE3 digest (of the bytes as read) into PCR 9, in order,
/// before the firmware is left; the boot info points to the event log copy. Without one the
/// policy decides: `if-present` boots, `required` refuses by name.
#[test]
fn measured_boot_and_the_tpm_policy() {
    use super::measure::CMDLINE_EVENT;
    use crate::digest::Digest;
    use hvboot_api::{TPM_PCR_CONFIG, TPM_PCR_FILES};
    let (a, b) = ("/hvboot/modules/a", "/hvboot/modules/b");
    let mods = [(a, "a", "x"), (b, "b", "")];
    for request in [None, Some(KernelRequest::new().modules_2mib_aligned())] {
        let kernel = kernel_at(KBASE, request);
        let cfg = config("console=ttyS0 y=2", &mods);
        let mut p = machine(kernel.clone(), &cfg);
        p.file(a, &b"module a"[..]).file(b, &b"module b"[..]);
        p.tpm = Some(Vec::new());
        let h = boot(&mut p).expect("a measured boot");
        let event = |s: &str| s.as_bytes().to_vec();
        let file =
            |bytes: &[u8], path: &str| (TPM_PCR_FILES, Digest::of(bytes).0.to_vec(), event(path));
        let want = alloc::vec![
            (TPM_PCR_CONFIG, cfg.clone().into_bytes(), event(CONFIG_PATH)),
            (
                TPM_PCR_CONFIG,
                event("console=ttyS0 y=2"),
                event(&format!("{CMDLINE_EVENT}console=ttyS0 y=2"))
            ),
            file(&kernel, KERNEL),
            file(b"module a", a),
            file(b"module b", b),
        ];
        assert_eq!(p.tpm.as_ref().unwrap(), &want);
        let i = info(&p, &h);
        assert_eq!(
            i.tpm_event_log_size,
            super::fake::FAKE_EVENT_LOG.len() as u64
        );
        let log = p.bytes(i.tpm_event_log_phys, i.tpm_event_log_size);
        assert_eq!(log, super::fake::FAKE_EVENT_LOG);
    }
    // No TPM: `if-present` (the default) boots unmeasured, the boot info says no log.
    let mut p = machine(kernel_at(KBASE, None), &config("", &[]));
    let h = boot(&mut p).expect("an unmeasured boot");
    assert_eq!(
        (
            info(&p, &h).tpm_event_log_phys,
            info(&p, &h).tpm_event_log_size
        ),
        (0, 0)
    );
    // `required` refuses before the kernel is read.
    let cfg = format!("{}tpm required\n", config("", &[]));
    let e = with(&cfg, kernel_at(KBASE, None), |_| {});
    assert_eq!(
        e,
        "/hvboot/hvboot.cfg: tpm required, but there is no TPM to measure into: the fake has no TPM"
    );
    // A pin still refuses a replaced file when measuring, and nothing of it is measured.
    let kernel = kernel_at(KBASE, None);
    let cfg = format!(
        "{}kernel-blake3 {}\n",
        config("", &[]),
        Digest::of(b"other")
    );
    let e = with(&cfg, kernel.clone(), |p| p.tpm = Some(Vec::new()));
    assert!(e.starts_with("/hvboot/kernel.elf: blake3 mismatch"), "{e}");
}
