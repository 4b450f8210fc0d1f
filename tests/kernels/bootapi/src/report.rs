//! The bootapi test kernel's report: every `BootInfo` field, as read through the crates.io
//! `bootloader_api` types, printed on COM1 as `BAPI <item> key=value ...` lines (numbers in
//! decimal, addresses 0x-hex, bytes as lowercase hex in `*_hex` keys) for
//! tests/test_bootloader_api.py to compare with what the host knows; then QEMU is exited
//! with EXIT_SUCCESS. The checks only the kernel can make (bytes read through the
//! physical-memory mapping, RSP, a framebuffer pixel written and read back) are printed as
//! `*_ok=0|1`.
//!
//! ```text
//! BAPI begin api=0.11.17 pre=0 boot_info=0x..
//! BAPI region start=0x.. end=0x.. kind=usable|bootloader|uefi:N|bios:N
//! BAPI regions count=N sorted=1 overlapping=0
//! BAPI physical_memory_offset value=0x..            | none
//! BAPI recursive_index none                         | value=N
//! BAPI rsdp addr=0x.. signature_ok=1 checksum_ok=1   | none
//! BAPI framebuffer addr=0x.. byte_len=N width=N height=N stride=N bytes_per_pixel=N format=rgb|bgr|u8|unknown pixel_ok=1 | none
//! BAPI tls start=0x.. file_size=N mem_size=N linked_start=0x.. linked_file_size=N linked_mem_size=N bytes_ok=1 | none
//! BAPI ramdisk addr=0x.. len=N crc32=0x........ head_hex=..   | none
//! BAPI kernel addr=0x.. len=N image_offset=0x.. elf_magic_ok=1
//! BAPI stack bottom=0x.. len=N rsp=0x.. rsp_in_stack=1
//! BAPI end
//! ```

use core::arch::asm;

use bootloader_api::info::{FrameBuffer, MemoryRegionKind, Optional, PixelFormat};
use bootloader_api::BootInfo;
use hvboot_api::{exit_qemu, serial_println, EXIT_FAILURE, EXIT_SUCCESS};

// Thread-local data for BootInfo.tls_template: `#[thread_local]` is nightly-only, so the
// bytes are put into `.tdata`/`.tbss` directly (build.rs gives them their PT_TLS).
core::arch::global_asm!(
    ".section .tdata.bootapi, \"awT\", @progbits",
    ".balign 8",
    "bootapi_tls_data: .ascii \"hvboot-tls-bytes\"",
    ".section .tbss.bootapi, \"awT\", @nobits",
    ".balign 8",
    "bootapi_tls_bss: .skip 48",
    ".text",
);

extern "C" {
    static __tdata_start: u8;
    static __tdata_end: u8;
    static __tbss_end: u8;
}

/// What the TLS data section holds.
const TLS_BYTES: &[u8] = b"hvboot-tls-bytes";

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// Prints the report and exits QEMU.
pub fn run(info: &'static mut BootInfo) -> ! {
    hvboot_api::serial::init();
    let rsp: u64;
    // SAFETY: reads RSP only.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    let v = info.api_version;
    serial_println!(
        "BAPI begin api={}.{}.{} pre={} boot_info={:#x}",
        v.version_major(),
        v.version_minor(),
        v.version_patch(),
        flag(v.pre_release()),
        info as *const BootInfo as u64
    );
    regions(info);
    let offset = info.physical_memory_offset.into_option();
    match offset {
        Some(o) => serial_println!("BAPI physical_memory_offset value={o:#x}"),
        None => serial_println!("BAPI physical_memory_offset none"),
    }
    match info.recursive_index.into_option() {
        Some(i) => serial_println!("BAPI recursive_index value={i}"),
        None => serial_println!("BAPI recursive_index none"),
    }
    rsdp(info.rsdp_addr.into_option(), offset);
    match info.framebuffer.as_mut() {
        Some(fb) => framebuffer(fb),
        None => serial_println!("BAPI framebuffer none"),
    }
    tls(info);
    ramdisk(info);
    let magic_ok = offset.is_some_and(|o| {
        // SAFETY: kernel_addr is the ELF file in memory, reached through the physical mapping.
        let head = unsafe { core::slice::from_raw_parts((o + info.kernel_addr) as *const u8, 4) };
        head == b"\x7fELF"
    });
    serial_println!(
        "BAPI kernel addr={:#x} len={} image_offset={:#x} elf_magic_ok={}",
        info.kernel_addr,
        info.kernel_len,
        info.kernel_image_offset,
        flag(magic_ok)
    );
    let (bottom, len) = (info.kernel_stack_bottom, info.kernel_stack_len);
    serial_println!(
        "BAPI stack bottom={bottom:#x} len={len} rsp={rsp:#x} rsp_in_stack={}",
        flag(bottom < rsp && rsp <= bottom + len)
    );
    serial_println!("BAPI end");
    exit_qemu(EXIT_SUCCESS)
}

fn regions(info: &BootInfo) {
    let (mut sorted, mut overlapping) = (true, false);
    for (i, r) in info.memory_regions.iter().enumerate() {
        let (name, t) = match r.kind {
            MemoryRegionKind::Usable => ("usable", None),
            MemoryRegionKind::Bootloader => ("bootloader", None),
            MemoryRegionKind::UnknownUefi(t) => ("uefi:", Some(t)),
            MemoryRegionKind::UnknownBios(t) => ("bios:", Some(t)),
            _ => ("other", None),
        };
        let (start, end) = (r.start, r.end);
        match t {
            Some(t) => serial_println!("BAPI region start={start:#x} end={end:#x} kind={name}{t}"),
            None => serial_println!("BAPI region start={start:#x} end={end:#x} kind={name}"),
        }
        if let Some(prev) = i.checked_sub(1).map(|p| &info.memory_regions[p]) {
            sorted &= prev.start < start;
            overlapping |= start < prev.end;
        }
    }
    serial_println!(
        "BAPI regions count={} sorted={} overlapping={}",
        info.memory_regions.len(),
        flag(sorted),
        flag(overlapping)
    );
}

/// The RSDP read through the physical-memory mapping: signature and the ACPI 1.0 checksum
/// (ACPI 6.5 §5.2.5.3).
fn rsdp(addr: Option<u64>, offset: Option<u64>) {
    let (Some(addr), Some(offset)) = (addr, offset) else {
        serial_println!("BAPI rsdp none");
        return;
    };
    // SAFETY: the loader maps all physical memory at `offset`; the RSDP is 20+ bytes.
    let b = unsafe { core::slice::from_raw_parts((offset + addr) as *const u8, 20) };
    let sum = b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
    serial_println!(
        "BAPI rsdp addr={addr:#x} signature_ok={} checksum_ok={}",
        flag(&b[..8] == b"RSD PTR "),
        flag(sum == 0)
    );
}

/// The framebuffer's geometry; its first pixel written and read back through its mapping.
fn framebuffer(fb: &mut FrameBuffer) {
    let i = fb.info();
    let format = match i.pixel_format {
        PixelFormat::Rgb => "rgb",
        PixelFormat::Bgr => "bgr",
        PixelFormat::U8 => "u8",
        _ => "unknown",
    };
    let addr = fb.buffer().as_ptr() as u64;
    let buf = fb.buffer_mut();
    let old = buf[0];
    buf[0] = 0x5a;
    // SAFETY: reads back the byte just written (volatile: it is video memory).
    let ok = unsafe { core::ptr::read_volatile(&buf[0]) } == 0x5a;
    buf[0] = old;
    serial_println!(
        "BAPI framebuffer addr={addr:#x} byte_len={} width={} height={} stride={} \
         bytes_per_pixel={} format={format} pixel_ok={}",
        i.byte_len,
        i.width,
        i.height,
        i.stride,
        i.bytes_per_pixel,
        flag(ok)
    );
}

/// The TLS template against the linker's symbols, and the template's bytes.
fn tls(info: &BootInfo) {
    let Optional::Some(t) = info.tls_template else {
        serial_println!("BAPI tls none");
        return;
    };
    // SAFETY: linker symbols; only their addresses are taken.
    let (start, end, bss_end) = unsafe {
        (
            &__tdata_start as *const u8 as u64,
            &__tdata_end as *const u8 as u64,
            &__tbss_end as *const u8 as u64,
        )
    };
    // SAFETY: the template lies in the kernel's loaded data segment.
    let bytes = unsafe { core::slice::from_raw_parts(t.start_addr as *const u8, TLS_BYTES.len()) };
    serial_println!(
        "BAPI tls start={:#x} file_size={} mem_size={} linked_start={start:#x} \
         linked_file_size={} linked_mem_size={} bytes_ok={}",
        t.start_addr,
        t.file_size,
        t.mem_size,
        end - start,
        bss_end - start,
        flag(bytes == TLS_BYTES)
    );
}

/// The ramdisk's bytes: length, CRC-32 and first 16 bytes.
fn ramdisk(info: &BootInfo) {
    let Some(addr) = info.ramdisk_addr.into_option() else {
        serial_println!("BAPI ramdisk none");
        return;
    };
    let len = info.ramdisk_len;
    // SAFETY: the loader maps the ramdisk at `addr`, `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) };
    serial_println!(
        "BAPI ramdisk addr={addr:#x} len={len} crc32={:#010x} head_hex={}",
        hvboot_api::crc32::crc32(bytes),
        Hex(&bytes[..bytes.len().min(16)])
    );
}

/// Bytes as lowercase hex.
struct Hex<'a>(&'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hvboot_api::report_panic(info)
}

/// Unused: a kernel that fails a check it cannot print exits with EXIT_FAILURE.
#[allow(dead_code)]
pub fn fail() -> ! {
    exit_qemu(EXIT_FAILURE)
}
