// A kernel written for the Limine protocol with the crates.io `limine` crate, as a user's
// would be: a base-revision tag (`REVISION`, set by the binary that includes this file: 3 is
// the crate 0.5's default, 6 the crate 0.6's) and every request the crate has for x86-64,
// between the start and end markers. tests/test_limine.py boots it and compares
// what it prints on COM1 with the host's truth.
//
// It checks what only it can (through the HHDM: the RSDP's signature and checksums, the EFI
// system table's signature, each module's and its own file's CRC-32, its image at the
// executable address's physical base; its stack; the memory map's ordering rules) and prints
// one `HVB <item> key=value ...` line per response (strings as hex), `HVB unanswered <name>`
// for a request without one, then `HVB end` and exits through isa-debug-exit (0x10; 0x11 when a
// check failed).
//
// With the command line `mpbench` (under Limine 8.x, which boots revision 3 at base revision
// 0) it only times the MP request for bench/smp_bringup.py, the same way under any loader: the
// TSC at its entry and when the last AP checked in through its `goto_address`, on one
// `HVB mpbench` line.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hvboot_api::crc32::crc32;
use hvboot_api::{exit_qemu, serial_print, serial_println, EXIT_FAILURE, EXIT_SUCCESS};
use hvboot_rt as _;
use limine::request::{
    BootloaderInfoRequest, DateAtBootRequest, DeviceTreeBlobRequest, EfiMemoryMapRequest,
    EfiSystemTableRequest, EntryPointRequest, ExecutableAddressRequest, ExecutableCmdlineRequest,
    ExecutableFileRequest, FirmwareTypeRequest, FramebufferRequest, HhdmRequest,
    MemoryMapRequest, ModuleRequest, MpRequest, PagingModeRequest, RequestsEndMarker,
    RequestsStartMarker, RsdpRequest, SmbiosRequest, StackSizeRequest,
};
use limine::BaseRevision;

/// Bytes of stack asked for (more than the protocol's 64 KiB default).
const STACK_SIZE: u64 = 128 * 1024;

/// The requests, delimited by the markers, in one block so the order is the declaration's.
#[repr(C)]
struct Requests {
    start: RequestsStartMarker,
    base: BaseRevision,
    info: BootloaderInfoRequest,
    firmware: FirmwareTypeRequest,
    cmdline: ExecutableCmdlineRequest,
    stack: StackSizeRequest,
    hhdm: HhdmRequest,
    memmap: MemoryMapRequest,
    rsdp: RsdpRequest,
    framebuffer: FramebufferRequest,
    paging: PagingModeRequest,
    mp: MpRequest,
    entry: EntryPointRequest,
    file: ExecutableFileRequest,
    modules: ModuleRequest,
    smbios: SmbiosRequest,
    efi: EfiSystemTableRequest,
    efi_map: EfiMemoryMapRequest,
    date: DateAtBootRequest,
    address: ExecutableAddressRequest,
    dtb: DeviceTreeBlobRequest,
    end: RequestsEndMarker,
}

#[used]
#[link_section = ".data.limine_requests"]
static REQUESTS: Requests = Requests {
    start: RequestsStartMarker::new(),
    base: BaseRevision::with_revision(REVISION),
    info: BootloaderInfoRequest::new(),
    firmware: FirmwareTypeRequest::new(),
    cmdline: ExecutableCmdlineRequest::new(),
    stack: StackSizeRequest::new().with_size(STACK_SIZE),
    hhdm: HhdmRequest::new(),
    memmap: MemoryMapRequest::new(),
    rsdp: RsdpRequest::new(),
    framebuffer: FramebufferRequest::new(),
    // The revision-4 kernel asks for 5-level paging (4-level accepted), as a kernel that can
    // use 57-bit addresses would.
    paging: if REVISION == 4 {
        PagingModeRequest::new()
            .with_mode(limine::paging::Mode::FIVE_LEVEL)
            .with_max_mode(limine::paging::Mode::FIVE_LEVEL)
    } else {
        PagingModeRequest::new()
    },
    // The revision-6 kernel asks for x2APIC mode "if possible" (QEMU's TCG has no x2APIC; hvboot
    // leaves the flag unset and says why).
    mp: MpRequest::new().with_flags(if REVISION >= 5 {
        limine::mp::RequestFlags::X2APIC
    } else {
        limine::mp::RequestFlags::empty()
    }),
    entry: EntryPointRequest::new().with_entry_point(limine_entry),
    file: ExecutableFileRequest::new(),
    modules: ModuleRequest::new(),
    smbios: SmbiosRequest::new(),
    efi: EfiSystemTableRequest::new(),
    efi_map: EfiMemoryMapRequest::new(),
    date: DateAtBootRequest::new(),
    address: ExecutableAddressRequest::new(),
    dtb: DeviceTreeBlobRequest::new(),
    end: RequestsEndMarker::new(),
};

/// Set when a check fails; the exit code says it.
static FAILED: AtomicBool = AtomicBool::new(false);

fn check(ok: bool, what: &str) -> u8 {
    if !ok {
        serial_println!("HVB failed {what}");
        FAILED.store(true, Ordering::Relaxed);
    }
    u8::from(ok)
}

fn hex(bytes: &[u8]) {
    for b in bytes {
        serial_print!("{b:02x}");
    }
}

fn unanswered(name: &str) {
    serial_println!("HVB unanswered {name}");
}

extern "C" {
    static __kernel_start: u8;
}

/// The ELF's entry: never run, since the Entry Point request names `limine_entry`.
#[no_mangle]
extern "C" fn _start() -> ! {
    hvboot_api::serial::init();
    serial_println!("HVB failed entered at the ELF entry, not the Entry Point request's");
    exit_qemu(EXIT_FAILURE);
}

/// The Entry Point request's target: RSP, RFLAGS, CR0 and CR4 as the loader left them go to
/// `limine_main`, after SSE is turned on (base revision 5 clears CR4.OSFXSR, and code built for
/// the host target uses SSE registers).
#[unsafe(naked)]
extern "C" fn limine_entry() -> ! {
    core::arch::naked_asm!(
        "mov rdi, rsp",
        "pushfq",
        "pop rsi",
        "mov rdx, cr0",
        "mov rcx, cr4",
        "mov rax, rcx",
        "or rax, 0x600",
        "mov cr4, rax",
        "mov rax, rdx",
        "and rax, -5",
        "or rax, 2",
        "mov cr0, rax",
        "call {main}",
        "ud2",
        main = sym limine_main
    )
}

/// The position of `v` in `all` (the crate keeps its enumerations' values private).
fn index<T: PartialEq>(v: T, all: &[T]) -> usize {
    all.iter().position(|a| *a == v).unwrap_or(usize::MAX)
}

/// Bytes `len` at physical `phys` through the HHDM.
unsafe fn phys<'a>(hhdm: u64, phys: u64, len: usize) -> &'a [u8] {
    core::slice::from_raw_parts((hhdm + phys) as *const u8, len)
}

extern "C" fn limine_main(rsp: u64, flags: u64, cr0: u64, cr4: u64) -> ! {
    let entry_tsc = unsafe { core::arch::x86_64::_rdtsc() };
    hvboot_api::serial::init();
    let r = &REQUESTS;
    // The executable file's string, not the command-line request: Limine 8.x answers only
    // base revisions below 3 and so leaves that request (a revision-3 one) unanswered.
    if r.file.get_response().map(|f| f.file().string().to_bytes()) == Some(b"mpbench") {
        mp_bench(r, entry_tsc);
    }
    serial_println!("HVB begin");
    // PROTOCOL.md: a 0 return address pushed on a 16-byte aligned stack; IF clear.
    let ret = unsafe { (rsp as *const u64).read() };
    BSP_CR4.store(cr4, Ordering::SeqCst);
    serial_println!(
        "HVB entry rsp={rsp:#x} return={ret:#x} aligned={} if={}",
        check((rsp + 8) % 16 == 0 && ret == 0, "entry stack"),
        (flags >> 9) & 1
    );
    // The stack asked for is there: touch its far end.
    let far = (rsp + 8 - STACK_SIZE + 64) as *mut u64;
    unsafe { far.write_volatile(0x5a5a) };
    check(unsafe { far.read_volatile() } == 0x5a5a, "stack size");
    serial_println!(
        "HVB revision supported={} loaded={:?}",
        check(r.base.is_supported(), "base revision"),
        r.base.loaded_revision()
    );
    let Some(hhdm) = r.hhdm.get_response().map(|h| h.offset()) else {
        serial_println!("HVB failed no HHDM response");
        exit_qemu(EXIT_FAILURE);
    };
    serial_println!("HVB hhdm offset={hhdm:#x}");
    HHDM.store(hhdm, Ordering::SeqCst);
    if REVISION >= 5 {
        strict_state(hhdm, flags, cr0, cr4);
    }
    match r.info.get_response() {
        Some(i) => {
            serial_print!("HVB info name_hex=");
            hex(i.name().as_bytes());
            serial_print!(" version_hex=");
            hex(i.version().as_bytes());
            serial_println!();
        }
        None => unanswered("bootloader info"),
    }
    match r.firmware.get_response() {
        Some(f) => serial_println!("HVB firmware type={}", {
            use limine::firmware_type::FirmwareType as F;
            index(f.firmware_type(), &[F::X86_BIOS, F::UEFI_32, F::UEFI_64])
        }),
        None => unanswered("firmware type"),
    }
    match r.cmdline.get_response() {
        Some(c) => {
            serial_print!("HVB cmdline cmdline_hex=");
            hex(c.cmdline().to_bytes());
            serial_println!();
        }
        None => unanswered("executable command line"),
    }
    if r.stack.get_response().is_none() {
        unanswered("stack size");
    }
    if r.entry.get_response().is_none() {
        unanswered("entry point");
    }
    memory_map(r, hhdm);
    match r.rsdp.get_response() {
        Some(p) => {
            // Physical in base revision 3 only (PROTOCOL.md), else through the HHDM.
            let at = p.address() as u64 - if REVISION == 3 { 0 } else { hhdm };
            let t = unsafe { phys(hhdm, at, 36) };
            let v1 = t[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0;
            let v2 = t[15] < 2 || t.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0;
            let ok = check(&t[..8] == b"RSD PTR " && v1 && v2, "RSDP through the HHDM");
            serial_println!("HVB rsdp address={at:#x} ok={ok}");
            io_apics(hhdm, at);
            iommus(hhdm, at);
            if REVISION >= 4 {
                let n = acpi_tables_mapped(r, hhdm, at);
                let ok = check(n != u32::MAX, "ACPI tables in ACPI or reserved-mapped entries");
                serial_println!("HVB acpi_mapped tables={n} ok={ok}");
            }
        }
        None => unanswered("RSDP"),
    }
    match r.framebuffer.get_response().and_then(|f| f.framebuffers().next()) {
        Some(fb) => serial_println!(
            "HVB framebuffer address={:#x} width={} height={} pitch={} bpp={} model={} \
             red={}/{} green={}/{} blue={}/{}",
            fb.addr() as u64 - hhdm,
            fb.width(),
            fb.height(),
            fb.pitch(),
            fb.bpp(),
            u8::from(fb.memory_model() == limine::framebuffer::MemoryModel::RGB),
            fb.red_mask_size(),
            fb.red_mask_shift(),
            fb.green_mask_size(),
            fb.green_mask_shift(),
            fb.blue_mask_size(),
            fb.blue_mask_shift()
        ),
        None => unanswered("framebuffer"),
    }
    match r.paging.get_response() {
        Some(p) => {
            use limine::paging::Mode;
            let mode = index(p.mode(), &[Mode::FOUR_LEVEL, Mode::FIVE_LEVEL]);
            // CR4.LA57 as the entry found it agrees with the mode answered.
            let la57 = (cr4 >> 12) & 1;
            check(la57 == mode as u64, "CR4.LA57 and the paging mode");
            serial_println!("HVB paging mode={mode} la57={la57}");
        }
        None => unanswered("paging mode"),
    }
    match r.mp.get_response() {
        Some(m) => mp(m),
        None => unanswered("MP"),
    }
    files(r, hhdm);
    match r.smbios.get_response() {
        Some(s) => {
            // Physical in base revisions 3 and 4 only, else through the HHDM.
            let off = if (3..=4).contains(&REVISION) { 0 } else { hhdm };
            let e32 = s.entry_32().map_or(0, |a| a.get() as u64 - off);
            let e64 = s.entry_64().map_or(0, |a| a.get() as u64 - off);
            let a32 = e32 == 0 || unsafe { phys(hhdm, e32, 4) } == b"_SM_";
            let a64 = e64 == 0 || unsafe { phys(hhdm, e64, 5) } == b"_SM3_";
            let ok = check(e32 | e64 != 0 && a32 && a64, "SMBIOS anchors");
            if REVISION >= 5 {
                let mapped = [e32, e64]
                    .iter()
                    .all(|&e| e == 0 || in_map(r, e, 16, &[RESERVED_MAPPED]));
                check(mapped, "SMBIOS entry points reserved-mapped");
            }
            serial_println!("HVB smbios entry_32={e32:#x} entry_64={e64:#x} ok={ok}");
        }
        None => unanswered("SMBIOS"),
    }
    match r.efi.get_response() {
        Some(e) => {
            let off = if (3..=4).contains(&REVISION) { 0 } else { hhdm };
            let at = e.address() as u64 - off;
            let ok = check(unsafe { phys(hhdm, at, 8) } == b"IBI SYST", "EFI system table");
            if REVISION >= 5 {
                check(in_map(r, at, 8, &[RESERVED_MAPPED]), "EFI system table reserved-mapped");
            }
            serial_println!("HVB efi system_table={at:#x} ok={ok}");
        }
        None => unanswered("EFI system table"),
    }
    match r.efi_map.get_response() {
        Some(m) => serial_println!(
            "HVB efi_memmap size={} desc_size={} version={}",
            m.memmap_size(),
            m.desc_size(),
            m.desc_version()
        ),
        None => unanswered("EFI memory map"),
    }
    match r.date.get_response() {
        Some(d) => serial_println!("HVB date seconds={}", d.timestamp().as_secs()),
        None => unanswered("date at boot"),
    }
    match r.address.get_response() {
        Some(a) => {
            let start = core::ptr::addr_of!(__kernel_start) as u64;
            let own = unsafe { core::slice::from_raw_parts(start as *const u8, 64) };
            let seen = unsafe { phys(hhdm, a.physical_base(), 64) };
            let ok = check(a.virtual_base() == start && own == seen, "executable address");
            serial_println!(
                "HVB address physical={:#x} virtual={:#x} ok={ok}",
                a.physical_base(),
                a.virtual_base()
            );
        }
        None => unanswered("executable address"),
    }
    if r.dtb.get_response().is_some() {
        check(false, "a device tree blob on x86-64");
    } else {
        unanswered("device tree blob");
    }
    serial_println!("HVB end");
    exit_qemu(if FAILED.load(Ordering::Relaxed) {
        EXIT_FAILURE
    } else {
        EXIT_SUCCESS
    })
}

/// APs that jumped to their `goto_address` with RDI = their own info, and what was not as the
/// protocol says on any of them: 1 the APIC ID, 2 the extra argument, 4 the stack's alignment,
/// 8 the return address, 16 CR4.LA57 (the paging mode) not the BSP's; from base revision 5,
/// 32 the BSP's strict state (`Strict`), 64 CS/SS not the protocol's 0x28/0x30.
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// The BSP's CR4 at entry: each AP's paging mode (CR4.LA57) must be the same.
static BSP_CR4: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// The HHDM offset, for the APs' look at their local APIC.
static HHDM: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static WRONG: AtomicU32 = AtomicU32::new(0);

/// Releases every AP through its `goto_address` (extra argument = its index + 1) and waits for
/// each to check in.
fn mp(m: &limine::response::MpResponse) {
    let cpus = m.cpus();
    let mut released = 0;
    for (i, cpu) in cpus.iter().enumerate() {
        serial_println!("HVB mp_cpu index={i} processor_id={} lapic_id={}", cpu.id, cpu.lapic_id);
        if cpu.lapic_id != m.bsp_lapic_id() {
            cpu.extra.store(i as u64 + 1, Ordering::SeqCst);
            cpu.goto_address.write(ap_entry);
            released += 1;
        }
    }
    // TCG on shared cores: allow many spins, each a PAUSE.
    let mut spins = 0u64;
    while ARRIVED.load(Ordering::SeqCst) < released && spins < 2_000_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
    let arrived = ARRIVED.load(Ordering::SeqCst);
    let wrong = WRONG.load(Ordering::SeqCst);
    let ok = check(arrived == released && wrong == 0, "APs through goto_address");
    serial_println!(
        "HVB mp cpus={} bsp={} x2apic={} released={released} arrived={arrived} wrong={wrong:#x} ok={ok}",
        cpus.len(),
        m.bsp_lapic_id(),
        m.flags().bits() & 1
    );
}

/// The largest TSC an AP read when it checked in (bench mode).
static LAST_IN_TSC: AtomicU64 = AtomicU64::new(0);

/// Bench mode: releases every AP, waits for all, prints the TSC stamps, exits.
fn mp_bench(r: &Requests, entry_tsc: u64) -> ! {
    let Some(m) = r.mp.get_response() else {
        serial_println!("HVB failed no MP response");
        exit_qemu(EXIT_FAILURE);
    };
    let mut released = 0;
    for (i, cpu) in m.cpus().iter().enumerate() {
        if cpu.lapic_id != m.bsp_lapic_id() {
            cpu.extra.store(i as u64 + 1, Ordering::SeqCst);
            cpu.goto_address.write(ap_entry);
            released += 1;
        }
    }
    while ARRIVED.load(Ordering::SeqCst) < released {
        core::hint::spin_loop();
    }
    let last = LAST_IN_TSC.load(Ordering::SeqCst);
    serial_println!(
        "HVB mpbench cpus={} entry_tsc={entry_tsc} last_in_tsc={last}",
        m.cpus().len()
    );
    exit_qemu(EXIT_SUCCESS);
}

/// An AP's first instructions after its release: RSP, RFLAGS, CR0 and CR4 as the loader left
/// them go to `ap_main`, after SSE is turned on as on the BSP (`limine_entry`).
#[unsafe(naked)]
unsafe extern "C" fn ap_entry(_cpu: &limine::mp::Cpu) -> ! {
    core::arch::naked_asm!(
        "mov rsi, rsp",
        "pushfq",
        "pop rdx",
        "mov rcx, cr0",
        "mov r8, cr4",
        "mov rax, r8",
        "or rax, 0x600",
        "mov cr4, rax",
        "mov rax, rcx",
        "and rax, -5",
        "or rax, 2",
        "mov cr0, rax",
        "call {main}",
        "ud2",
        main = sym ap_main
    )
}

/// RDI = its own info (the APIC ID it reads from CPUID must be the info's), the extra argument
/// the BSP set, a 0 return address on a 16-byte aligned stack; from base revision 5 the BSP's
/// strict state.
unsafe extern "C" fn ap_main(cpu: &limine::mp::Cpu, rsp: u64, flags: u64, cr0: u64, cr4: u64) -> ! {
    let ret = (rsp as *const u64).read();
    let apic = core::arch::x86_64::__cpuid(1).ebx >> 24;
    let la57 = (cr4 ^ BSP_CR4.load(Ordering::SeqCst)) & (1 << 12) != 0;
    let (strict, segments) = if REVISION >= 5 {
        let (cs, ss): (u16, u16);
        core::arch::asm!("mov {0:x}, cs", "mov {1:x}, ss", out(reg) cs, out(reg) ss);
        let s = Strict::read(HHDM.load(Ordering::SeqCst), flags, cr0, cr4);
        (!s.ok(), cs != 0x28 || ss != 0x30)
    } else {
        (false, false)
    };
    let why = u32::from(cpu.lapic_id != apic)
        | u32::from(cpu.extra.load(Ordering::SeqCst) == 0) << 1
        | u32::from((rsp + 8) % 16 != 0) << 2
        | u32::from(ret != 0) << 3
        | u32::from(la57) << 4
        | u32::from(strict) << 5
        | u32::from(segments) << 6;
    WRONG.fetch_or(why, Ordering::SeqCst);
    LAST_IN_TSC.fetch_max(core::arch::x86_64::_rdtsc(), Ordering::SeqCst);
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    loop {
        core::arch::asm!("cli", "hlt");
    }
}

/// Memory-map types beyond the crate 0.5's names (PROTOCOL.md "Memory Map Feature").
const ACPI_RECLAIMABLE: u64 = 2;
const ACPI_NVS: u64 = 3;
const RESERVED_MAPPED: u64 = 8;

/// An entry's type as its number: the crate 0.5 has no name for base revision 4's
/// RESERVED_MAPPED (8), and keeps the number private (`EntryType` is a transparent `u64`).
fn type_of(e: &limine::memory_map::Entry) -> u64 {
    // SAFETY: `#[repr(transparent)]` over a `u64`.
    unsafe { core::mem::transmute::<limine::memory_map::EntryType, u64>(e.entry_type) }
}

/// Whether `[at, at + len)` lies inside one memory-map entry of one of `types`.
fn in_map(r: &Requests, at: u64, len: u64, types: &[u64]) -> bool {
    r.memmap.get_response().is_some_and(|m| {
        m.entries().iter().any(|e| {
            types.contains(&type_of(e)) && e.base <= at && at + len <= e.base + e.length
        })
    })
}

/// Base revision 4: the RSDP, the RSDT/XSDT and every table they list lie in ACPI reclaimable,
/// ACPI NVS or reserved-mapped entries (so the HHDM reaches them). The number of tables checked,
/// `u32::MAX` when one lies elsewhere.
fn acpi_tables_mapped(r: &Requests, hhdm: u64, rsdp: u64) -> u32 {
    let types = [ACPI_RECLAIMABLE, ACPI_NVS, RESERVED_MAPPED];
    let t = unsafe { phys(hhdm, rsdp, 36) };
    if !in_map(r, rsdp, 20, &types) {
        return u32::MAX;
    }
    let word = |b: &[u8], at: usize, n: usize| {
        b[at..at + n].iter().rev().fold(0u64, |a, &x| a << 8 | u64::from(x))
    };
    // XSDT (8-byte entries) from revision 2 on, else the RSDT (4-byte entries).
    let (sdt, size) = if t[15] >= 2 && word(t, 24, 8) != 0 {
        (word(t, 24, 8), 8)
    } else {
        (word(t, 16, 4), 4)
    };
    let header = unsafe { phys(hhdm, sdt, 36) };
    let len = word(header, 4, 4);
    if !in_map(r, sdt, len, &types) {
        return u32::MAX;
    }
    let all = unsafe { phys(hhdm, sdt, len as usize) };
    let mut n = 1;
    for at in (36..len as usize).step_by(size) {
        let table = word(all, at, size);
        let tlen = word(unsafe { phys(hhdm, table, 8) }, 4, 4);
        if !in_map(r, table, tlen, &types) {
            return u32::MAX;
        }
        n += 1;
    }
    n
}

/// Little-endian `n`-byte word at `at` of `b`.
fn le(b: &[u8], at: usize, n: usize) -> u64 {
    b[at..at + n].iter().rev().fold(0u64, |a, &x| a << 8 | u64::from(x))
}

/// The ACPI table `sig` listed by the RSDT/XSDT of the RSDP at `rsdp` (physical), through the
/// HHDM.
fn acpi_table<'a>(hhdm: u64, rsdp: u64, sig: &[u8; 4]) -> Option<&'a [u8]> {
    let t = unsafe { phys(hhdm, rsdp, 36) };
    let (sdt, size) = if t[15] >= 2 && le(t, 24, 8) != 0 {
        (le(t, 24, 8), 8)
    } else {
        (le(t, 16, 4), 4)
    };
    let len = le(unsafe { phys(hhdm, sdt, 8) }, 4, 4) as usize;
    let all = unsafe { phys(hhdm, sdt, len) };
    (36..len).step_by(size).find_map(|at| {
        let table = le(all, at, size);
        let head = unsafe { phys(hhdm, table, 8) };
        (&head[..4] == sig).then(|| unsafe { phys(hhdm, table, le(head, 4, 4) as usize) })
    })
}

/// Every I/O APIC the MADT lists, each redirection entry read back through the HHDM (IOREGSEL
/// at +0, IOWIN at +0x10): PROTOCOL.md masks those with Fixed or Lowest Priority delivery, and
/// from base revision 5 NMI and ExtINT ones too. One `HVB ioapic` line per I/O APIC, with how
/// many entries it has, how many are masked and how many the rule says should be but are not.
fn io_apics(hhdm: u64, rsdp: u64) {
    let Some(madt) = acpi_table(hhdm, rsdp, b"APIC") else {
        serial_println!("HVB failed no MADT");
        return;
    };
    let mut at = 44;
    while at + 2 <= madt.len() {
        let (kind, len) = (madt[at], usize::from(madt[at + 1]).max(2));
        if kind == 1 && len >= 12 {
            let base = hhdm + le(madt, at + 4, 4);
            let reg = |r: u32| unsafe {
                (base as *mut u32).write_volatile(r);
                ((base + 0x10) as *const u32).read_volatile()
            };
            let entries = (reg(1) >> 16 & 0xff) + 1;
            let (mut masked, mut wrong) = (0, 0);
            for n in 0..entries {
                let low = reg(0x10 + 2 * n);
                let rule = match low >> 8 & 7 {
                    0 | 1 => true,
                    4 | 7 => REVISION >= 5,
                    _ => false,
                };
                masked += u32::from(low & (1 << 16) != 0);
                wrong += u32::from(rule && low & (1 << 16) == 0);
            }
            let ok = check(wrong == 0, "I/O APIC entries masked");
            serial_println!(
                "HVB ioapic id={} entries={entries} masked={masked} wrong={wrong} ok={ok}",
                madt[at + 2]
            );
        }
        at += len;
    }
}

/// Every IOMMU unit the ACPI tables list, read through the HHDM: from base revision 5 off.
/// VT-d (the DMAR's DRHD structures, type u16 0, register base at +8, after the 48-byte
/// header): GSTS (+0x1C) with translation (TES, bit 31) and interrupt remapping (IRES, bit 25)
/// off. AMD-Vi (the IVRS's IVHD blocks, type u8 10h/11h/40h, MMIO base at +8): the control
/// register (+0x18) with IommuEn (bit 0) off. One `HVB iommu` line per unit.
fn iommus(hhdm: u64, rsdp: u64) {
    for (sig, kind) in [(b"DMAR", "vtd"), (b"IVRS", "amdvi")] {
        let Some(t) = acpi_table(hhdm, rsdp, sig) else {
            continue;
        };
        let mut at = 48;
        while at + 4 <= t.len() {
            let len = le(t, at + 2, 2) as usize;
            if len < 4 || at + len > t.len() {
                break;
            }
            let unit = match kind {
                "vtd" => le(t, at, 2) == 0 && len >= 16,
                _ => [0x10, 0x11, 0x40].contains(&t[at]) && len >= 24,
            };
            if unit {
                let base = le(t, at + 8, 8);
                let (reg, on) = if kind == "vtd" {
                    let gsts = unsafe { ((hhdm + base + 0x1C) as *const u32).read_volatile() };
                    (u64::from(gsts), gsts & (1 << 31 | 1 << 25) != 0)
                } else {
                    let control = unsafe { ((hhdm + base + 0x18) as *const u64).read_volatile() };
                    (control, control & 1 != 0)
                };
                let ok = check(REVISION < 5 || !on, "IOMMU off");
                serial_println!("HVB iommu kind={kind} base={base:#x} status={reg:#x} ok={ok}");
            }
            at += len;
        }
    }
}

/// Base revision 5's x86-64 entry state (PROTOCOL.md "Machine State at Entry"), as the entry
/// read it (RFLAGS, CR0, CR4) and as it still is (EFER, TR, LDTR, IDTR, the local APIC): the
/// BSP's and, at their `goto_address`, every AP's.
struct Strict {
    cr0: u64,
    cr4: u64,
    efer: u64,
    flags: u64,
    ldtr: u16,
    tr: u16,
    tss_base: u64,
    tss_limit: u64,
    idt_zero: bool,
    apic_base: u64,
    svr: u32,
    tpr: u32,
    lvts_masked: bool,
}

impl Strict {
    fn read(hhdm: u64, flags: u64, cr0: u64, cr4: u64) -> Self {
        let (efer, ldtr, tr): (u64, u16, u16);
        let mut gdtr = [0u8; 10];
        let mut idtr = [0u8; 10];
        unsafe {
            let (lo, hi): (u32, u32);
            core::arch::asm!("rdmsr", in("ecx") 0xC000_0080u32, out("eax") lo, out("edx") hi);
            efer = u64::from(hi) << 32 | u64::from(lo);
            core::arch::asm!("sldt {0:x}", out(reg) ldtr);
            core::arch::asm!("str {0:x}", out(reg) tr);
            core::arch::asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr());
            core::arch::asm!("sidt [{}]", in(reg) idtr.as_mut_ptr());
        }
        let gdt = u64::from_le_bytes(gdtr[2..10].try_into().unwrap());
        let tss = unsafe { ((gdt + u64::from(tr)) as *const [u64; 2]).read() };
        // The local APIC: xAPIC registers through the HHDM, or x2APIC MSRs.
        let apic_base = unsafe {
            let (lo, hi): (u32, u32);
            core::arch::asm!("rdmsr", in("ecx") 0x1Bu32, out("eax") lo, out("edx") hi);
            u64::from(hi) << 32 | u64::from(lo)
        };
        let reg = |off: u64| -> u32 {
            if apic_base & (1 << 10) != 0 {
                let (lo, _hi): (u32, u32);
                unsafe {
                    core::arch::asm!("rdmsr", in("ecx") 0x800 + (off / 16) as u32, out("eax") lo, out("edx") _hi)
                };
                lo
            } else {
                unsafe { ((hhdm + (apic_base & !0xfff) + off) as *const u32).read_volatile() }
            }
        };
        Strict {
            cr0,
            cr4,
            efer,
            flags,
            ldtr,
            tr,
            // A 64-bit TSS descriptor's base (bits 16..40, 56..64, and the second word) and limit.
            tss_base: (tss[0] >> 16) & 0xff_ffff | (tss[0] >> 56) << 24 | tss[1] << 32,
            tss_limit: tss[0] & 0xffff | (tss[0] >> 48 & 0xf) << 16,
            idt_zero: idtr.iter().all(|&b| b == 0),
            apic_base,
            svr: reg(0xF0),
            tpr: reg(0x80),
            // Timer, LINT0, LINT1, error: Fixed / ExtINT / NMI delivery on QEMU's firmware, so
            // masked.
            lvts_masked: [0x320, 0x350, 0x360, 0x370].iter().all(|&o| reg(o) & (1 << 16) != 0),
        }
    }

    fn ok(&self) -> bool {
        self.cr0 == 0x8001_0011
            && self.cr4 & !0x1000 == 0x20
            && self.efer == 0xd00
            && self.flags == 2
            && self.ldtr == 0
            && self.tr != 0
            && self.tss_base == 0
            && self.tss_limit == 0
            && self.idt_zero
            && self.apic_base & (1 << 11) != 0
            && self.svr == 0x1ff
            && self.tpr == 0
            && self.lvts_masked
    }
}

fn strict_state(hhdm: u64, flags: u64, cr0: u64, cr4: u64) {
    let s = Strict::read(hhdm, flags, cr0, cr4);
    let ok = check(s.ok(), "base revision 5's entry state");
    serial_println!(
        "HVB strict cr0={:#x} cr4={:#x} efer={:#x} rflags={:#x} ldtr={:#x} tr={:#x} \
         tss_base={:#x} tss_limit={:#x} idt_zero={} svr={:#x} tpr={:#x} lvts_masked={} ok={ok}",
        s.cr0,
        s.cr4,
        s.efer,
        s.flags,
        s.ldtr,
        s.tr,
        s.tss_base,
        s.tss_limit,
        u8::from(s.idt_zero),
        s.svr,
        s.tpr,
        u8::from(s.lvts_masked)
    );
}

/// Every entry, and the rules of PROTOCOL.md "Memory Map Feature": sorted by base; usable and
/// bootloader-reclaimable entries 4 KiB aligned and overlapping nothing; nothing usable below
/// 0x1000.
fn memory_map(r: &Requests, _hhdm: u64) {
    let Some(map) = r.memmap.get_response() else {
        unanswered("memory map");
        return;
    };
    let e = map.entries();
    let mut ok = true;
    for (i, x) in e.iter().enumerate() {
        let t = x.entry_type;
        let n = type_of(x);
        serial_println!("HVB memmap base={:#x} length={:#x} type={n}", x.base, x.length);
        let strict = t == limine::memory_map::EntryType::USABLE
            || t == limine::memory_map::EntryType::BOOTLOADER_RECLAIMABLE;
        if i > 0 && e[i - 1].base > x.base {
            ok = false;
        }
        if strict && ((x.base | x.length) % 4096 != 0 || x.base < 0x1000 && x.length > 0) {
            ok = false;
        }
        if strict {
            let end = x.base + x.length;
            ok &= e
                .iter()
                .enumerate()
                .all(|(j, y)| j == i || y.base >= end || y.base + y.length <= x.base);
        }
    }
    serial_println!("HVB memmap_rules ok={}", check(ok, "memory map rules"));
}

/// The executable file and the modules: path, command line, size and CRC-32 of the bytes
/// reached through their addresses (HHDM), 4 KiB alignment.
fn files(r: &Requests, hhdm: u64) {
    let one = |what: &str, f: &limine::file::File| {
        let bytes = unsafe { core::slice::from_raw_parts(f.addr(), f.size() as usize) };
        let aligned = check((f.addr() as u64 - hhdm) % 4096 == 0, "file alignment");
        serial_print!("HVB {what} size={} crc={:#010x} aligned={aligned} path_hex=", f.size(), crc32(bytes));
        hex(f.path().to_bytes());
        serial_print!(" cmdline_hex=");
        hex(f.string().to_bytes());
        serial_println!();
    };
    match r.file.get_response() {
        Some(x) => one("file", x.file()),
        None => unanswered("executable file"),
    }
    match r.modules.get_response() {
        Some(m) => {
            serial_println!("HVB modules count={}", m.modules().len());
            for f in m.modules() {
                one("module", f);
            }
        }
        None => unanswered("module"),
    }
}

/// `CStr::from_ptr` (the crate's `File::path`) calls the C library's `strlen`, which hvboot-rt
/// does not carry: a byte loop, as the kernel has no libc.
#[no_mangle]
unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    while s.add(n).read_volatile() != 0 {
        n += 1;
    }
    n
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial_println!("HVB failed panic: {info}");
    exit_qemu(EXIT_FAILURE);
}
