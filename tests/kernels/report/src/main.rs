//! hvboot's report kernel: checks the boot information and prints what it
//! finds on COM1 in a line-oriented, machine-readable format that the Python
//! tests parse, then exits QEMU with `EXIT_SUCCESS` (status 33).
//!
//! Every line starts with `HVB <item>` followed by `key=value` fields. Values
//! never contain spaces: strings are lowercase hex of their UTF-8 bytes (keys
//! ending in `_hex`), numbers are decimal, addresses `0x`-prefixed hex. The
//! lines, in this order (one `module` line per module, one `region` line per
//! memory-map entry):
//!
//! ```text
//! HVB begin version=1 firmware=UEFI loader_hex=.. loader_version_hex=..
//! HVB cmdline text_hex=..
//! HVB module index=0 name_hex=.. cmdline_hex=.. phys=0x.. size=N crc32=0x........ head_hex=..
//! HVB region base=0x.. length=0x.. kind=N
//! HVB memory regions=N usable_bytes=N sorted=1 overlapping=0
//! HVB framebuffer phys=0x.. width=N height=N pitch=N bpp=N format=N   | HVB framebuffer none
//! HVB rsdp phys=0x.. signature_hex=.. checksum_ok=1 revision=N xsdt=0x.. ext_checksum_ok=1 | HVB rsdp none
//! HVB smbios entry=0x.. entry3=0x..
//! HVB efi system_table=0x..
//! HVB tpm ... / tpm_event ...   (see tpm.rs)
//! HVB kernel phys_base=0x.. virt_base=0x.. size=0x.. main=0x.. stack_top=0x.. stack_size=N entry_rsp=0x..
//! HVB direct_map offset=0x.. size=0x..
//! HVB tsc loader_start=N handoff=N now=N
//! HVB paging cr3=0x.. cr0=0x.. cr4=0x.. efer=0x.. nx_ok=1
//! HVB entry cr0=0x.. cr4=0x.. efer=0x.. rflags=0x.. cs=0x.. ss=0x.. tr=0x.. gdt_base=0x.. gdt_limit=N tss_base=0x.. tss_limit=N tss_type=N tss_present=N
//! HVB header ... / virt ... / virt_here ... / cpu ... / cpus ... / madt_here ...
//! HVB fw_region ... / extent ... / reservation ... / tsc_stamps ...   (see hv.rs)
//! HVB end
//! ```
//!
//! Definitions:
//! - `firmware`: the FirmwareKind name, or its number if unknown.
//! - module `crc32`: zlib's CRC-32 of the whole module, `head_hex`: its first
//!   (up to) 16 bytes; both read through the direct map.
//! - `sorted=1`: region bases strictly increase; `overlapping=1`: some two
//!   regions (of non-zero length) intersect.
//! - rsdp: read through the direct map. `checksum_ok`: the first 20 bytes sum
//!   to 0 (ACPI 6.5 §5.2.5.3). For revision >= 2, `xsdt` is the XSDT address and
//!   `ext_checksum_ok` says all `length` bytes sum to 0; for revision < 2 both
//!   are 0.
//! - `main`: the run-time address of [`kernel_main`] (RIP-relative `lea`), to
//!   compare with the ELF symbol `kernel_main`.
//! - `entry_rsp`: RSP at the first instruction of `_start`.
//! - `entry`: CR0/CR4/EFER and RFLAGS as the loader left them (this kernel changes none of
//!   them first), CS/SS, the task register (`str`), the GDTR (`sgdt`) and the TSS descriptor TR
//!   selects, decoded from the GDT (Intel SDM Vol. 3A §8.2.3): its base, limit, type (11 = busy
//!   64-bit TSS after `ltr`) and P bit; all 0 when TR is 0 or outside the GDT.
//! - `nx_ok=1`: EFER.NXE is set *and* a walk of the page tables in CR3 finds
//!   every page of the kernel's text R-X, of its rodata R-- NX, of its
//!   data/bss RW- NX, and of the entry stack RW- NX.
//!
//! A panic prints `HVB panic <message> at <file>:<line>` and exits with
//! `EXIT_FAILURE` (status 35).
#![no_std]
#![no_main]

mod acpi;
mod hex;
mod hv;
mod paging;
#[cfg(feature = "smp")]
mod smp;
mod tpm;

use core::arch::asm;

use hvboot_api::cpu::{rdmsr, rdtsc, read_cr0, read_cr3, read_cr4, EFER_NXE, MSR_EFER};
use hvboot_api::{entry_point, serial_println, BootInfo};
use hvboot_rt as _;

use crate::hex::Hex;

entry_point!(kernel_main);

// The request kernel (tests/kernels/request) is these sources with a request; the tests patch
// its fields in the ELF (tests/test_request.py), so these values are only the defaults.
#[cfg(feature = "request")]
hvboot_api::request!(hvboot_api::KernelRequest::new()
    .stack_size(128 * 1024)
    .modules_2mib_aligned()
    .direct_map_offset(0xffff_c000_0000_0000)
    .guest_memory(16 << 20, 2 << 20)
    .flags(hvboot_api::RequestFlags::AP_TRAMPOLINE));

#[cfg(feature = "smp")]
hvboot_api::request!(hvboot_api::KernelRequest::new().start_aps(32 * 1024));

/// The kernel's main function (unmangled, so `nm` finds `kernel_main`).
#[no_mangle]
fn kernel_main(info: &'static BootInfo) -> ! {
    hvboot_api::serial::init();
    let firmware = info.firmware;
    serial_println!(
        "HVB begin version={} firmware={} loader_hex={} loader_version_hex={}",
        info.version,
        Named(firmware.name(), firmware.0),
        Hex(info.loader_name().as_bytes()),
        Hex(info.loader_version().as_bytes()),
    );
    serial_println!("HVB cmdline text_hex={}", Hex(info.cmdline().as_bytes()));
    report_modules(info);
    report_memory(info);
    report_framebuffer(info);
    acpi::report_rsdp(info);
    acpi::report_tables(info);
    serial_println!(
        "HVB smbios entry={:#x} entry3={:#x}",
        info.smbios_entry_phys,
        info.smbios3_entry_phys
    );
    serial_println!("HVB efi system_table={:#x}", info.efi_system_table);
    tpm::report(info);
    report_kernel(info);
    serial_println!(
        "HVB direct_map offset={:#x} size={:#x}",
        info.direct_map_offset,
        info.direct_map_size
    );
    serial_println!(
        "HVB tsc loader_start={} handoff={} now={}",
        info.tsc_loader_start,
        info.tsc_handoff,
        rdtsc()
    );
    report_paging(info);
    report_entry();
    hv::report(info);
    #[cfg(feature = "smp")]
    smp::run(info);
    serial_println!("HVB end");
    hvboot_api::exit_qemu(hvboot_api::EXIT_SUCCESS)
}

/// An enum value's name, or its number if this version does not know it.
struct Named<T>(Option<&'static str>, T);

impl<T: core::fmt::Display> core::fmt::Display for Named<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.1),
        }
    }
}

fn report_modules(info: &BootInfo) {
    for (index, m) in info.modules().iter().enumerate() {
        // SAFETY: the loader's direct map is in place and nothing reuses module memory.
        let data = unsafe { info.module_data(m) }.expect("module outside the direct map");
        serial_println!(
            "HVB module index={} name_hex={} cmdline_hex={} phys={:#x} size={} crc32={:#010x} head_hex={}",
            index,
            Hex(info.module_name(m).as_bytes()),
            Hex(info.module_cmdline(m).as_bytes()),
            m.phys_addr,
            m.size,
            hvboot_api::crc32::crc32(data),
            Hex(&data[..data.len().min(16)]),
        );
    }
}

fn report_memory(info: &BootInfo) {
    let map = info.memory_map();
    for r in map {
        serial_println!(
            "HVB region base={:#x} length={:#x} kind={}",
            r.base,
            r.length,
            r.kind.0
        );
    }
    let sorted = map.windows(2).all(|w| w[0].base < w[1].base);
    let mut overlapping = false;
    for (i, a) in map.iter().enumerate() {
        for b in &map[i + 1..] {
            if a.length != 0 && b.length != 0 && a.base < b.end() && b.base < a.end() {
                overlapping = true;
            }
        }
    }
    serial_println!(
        "HVB memory regions={} usable_bytes={} sorted={} overlapping={}",
        map.len(),
        info.usable_bytes(),
        u8::from(sorted),
        u8::from(overlapping),
    );
}

fn report_framebuffer(info: &BootInfo) {
    match info.framebuffer() {
        Some(fb) => serial_println!(
            "HVB framebuffer phys={:#x} width={} height={} pitch={} bpp={} format={}",
            fb.phys_addr,
            fb.width,
            fb.height,
            fb.pitch,
            fb.bpp,
            fb.format.0,
        ),
        None => serial_println!("HVB framebuffer none"),
    }
}

fn report_kernel(info: &BootInfo) {
    let main: u64;
    // SAFETY: only computes an address.
    unsafe {
        asm!("lea {}, [rip + {f}]", out(reg) main, f = sym kernel_main, options(nomem, nostack))
    };
    serial_println!(
        "HVB kernel phys_base={:#x} virt_base={:#x} size={:#x} main={:#x} stack_top={:#x} stack_size={} entry_rsp={:#x}",
        info.kernel_phys_base,
        info.kernel_virt_base,
        info.kernel_size,
        main,
        info.stack_top,
        info.stack_size,
        hvboot_api::entry::entry_rsp(),
    );
}

fn report_paging(info: &BootInfo) {
    let cr3 = read_cr3();
    // SAFETY: EFER exists on every x86_64 CPU; we run in ring 0.
    let efer = unsafe { rdmsr(MSR_EFER) };
    let nx_ok = efer & EFER_NXE != 0 && paging::kernel_permissions_ok(info, cr3);
    serial_println!(
        "HVB paging cr3={:#x} cr0={:#x} cr4={:#x} efer={:#x} nx_ok={}",
        cr3,
        read_cr0(),
        read_cr4(),
        efer,
        u8::from(nx_ok),
    );
}

fn report_entry() {
    // SAFETY: ring 0; EFER exists on every x86_64 CPU.
    let efer = unsafe { rdmsr(MSR_EFER) };
    let (rflags, cs, ss, tr): (u64, u16, u16, u16);
    let mut gdtr = [0u8; 10];
    // SAFETY: reads of processor state only; sgdt writes the 10 bytes given.
    unsafe {
        asm!("pushfq", "pop {}", out(reg) rflags);
        asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags));
        asm!("mov {0:x}, ss", out(reg) ss, options(nomem, nostack, preserves_flags));
        asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags));
        asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack, preserves_flags));
    }
    let limit = u16::from_le_bytes([gdtr[0], gdtr[1]]);
    let base = u64::from_le_bytes(gdtr[2..10].try_into().unwrap());
    let index = u64::from(tr & !7);
    let (mut tss_base, mut tss_limit, mut tss_type, mut tss_present) = (0u64, 0u64, 0u64, 0u64);
    if tr != 0 && index + 15 <= u64::from(limit) {
        // SAFETY: inside the GDT the CPU is using (checked against its limit), mapped.
        let (low, high) = unsafe {
            (
                core::ptr::read_volatile((base + index) as *const u64),
                core::ptr::read_volatile((base + index + 8) as *const u64),
            )
        };
        tss_base =
            (low >> 16) & 0xff_ffff | ((low >> 56) & 0xff) << 24 | (high & 0xffff_ffff) << 32;
        tss_limit = low & 0xffff | ((low >> 48) & 0xf) << 16;
        tss_type = (low >> 40) & 0xf;
        tss_present = (low >> 47) & 1;
    }
    serial_println!(
        "HVB entry cr0={:#x} cr4={:#x} efer={:#x} rflags={:#x} cs={:#x} ss={:#x} tr={:#x} gdt_base={:#x} gdt_limit={} tss_base={:#x} tss_limit={} tss_type={} tss_present={}",
        read_cr0(),
        read_cr4(),
        efer,
        rflags,
        cs,
        ss,
        tr,
        base,
        limit,
        tss_base,
        tss_limit,
        tss_type,
        tss_present,
    );
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    // Not the locked global port: the panic may have happened while it was held.
    let mut port = hvboot_api::serial::emergency_port();
    let _ = write!(port, "\nHVB panic {}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(port, " at {}:{}", loc.file(), loc.line());
    }
    let _ = port.write_str("\n");
    hvboot_api::exit_qemu(hvboot_api::EXIT_FAILURE)
}
