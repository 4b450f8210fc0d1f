//! The RSDP line of the report (ACPI 6.5 §5.2.5.3, Root System Description
//! Pointer structure):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | signature "RSD PTR " |
//! | 8 | 1 | checksum of bytes 0..20 |
//! | 15 | 1 | revision (0: ACPI 1.0, 2: ACPI 2.0+) |
//! | 16 | 4 | RSDT address |
//! | 20 | 4 | length of the whole table (revision >= 2) |
//! | 24 | 8 | XSDT address (revision >= 2) |
//! | 32 | 1 | extended checksum of all `length` bytes (revision >= 2) |

use hvboot_api::{serial_println, BootInfo};

use crate::hex::Hex;

/// Bytes of an ACPI 1.0 RSDP (what the first checksum covers).
const V1_LEN: usize = 20;
/// Bytes of an ACPI 2.0+ RSDP.
const V2_LEN: usize = 36;
/// Upper bound on a believable `length`, so a corrupt field cannot make us
/// read far.
const MAX_LEN: usize = 4096;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Prints `HVB rsdp ...` or `HVB rsdp none`.
pub fn report_rsdp(info: &BootInfo) {
    let phys = info.rsdp_phys;
    if phys == 0 {
        serial_println!("HVB rsdp none");
        return;
    }
    assert!(
        info.in_direct_map(phys, V2_LEN as u64),
        "RSDP at {phys:#x} outside the direct map"
    );
    // SAFETY: inside the direct map (checked); firmware memory holding the RSDP.
    let head = unsafe { core::slice::from_raw_parts(info.phys_to_virt(phys) as *const u8, V2_LEN) };
    let revision = head[15];
    let (xsdt, ext_ok) = if revision >= 2 {
        let length = u32::from_le_bytes(head[20..24].try_into().unwrap()) as usize;
        let xsdt = u64::from_le_bytes(head[24..32].try_into().unwrap());
        let ext_ok =
            (V2_LEN..=MAX_LEN).contains(&length) && info.in_direct_map(phys, length as u64) && {
                // SAFETY: inside the direct map (checked).
                let all = unsafe {
                    core::slice::from_raw_parts(info.phys_to_virt(phys) as *const u8, length)
                };
                sum(all) == 0
            };
        (xsdt, ext_ok)
    } else {
        (0, false)
    };
    serial_println!(
        "HVB rsdp phys={:#x} signature_hex={} checksum_ok={} revision={} xsdt={:#x} ext_checksum_ok={}",
        phys,
        Hex(&head[..8]),
        u8::from(sum(&head[..V1_LEN]) == 0),
        revision,
        xsdt,
        u8::from(ext_ok),
    );
}

/// Bytes at physical `phys` through the direct map (checked).
fn phys_bytes(info: &BootInfo, phys: u64, len: usize) -> Option<&'static [u8]> {
    if phys == 0 || !info.in_direct_map(phys, len as u64) {
        return None;
    }
    // SAFETY: inside the direct map (checked); firmware memory holding ACPI tables.
    Some(unsafe { core::slice::from_raw_parts(info.phys_to_virt(phys) as *const u8, len) })
}

/// Walks the root table itself (the XSDT when the RSDP has one, else the RSDT;
/// ACPI 6.5 §5.2.7, §5.2.8: 36-byte header, then u32 or u64 entries) and
/// prints every table it lists with its signature, `HVB acpi_table_here
/// sig_hex=.. phys=..`, then the loader's `HVB acpi_tables madt=.. fadt=..
/// mcfg=.. srat=.. dmar=.. ivrs=..` (or `HVB acpi_tables none`), then the TSC rate
/// (`report_tsc`), with or without ACPI.
pub fn report_tables(info: &BootInfo) {
    let fadt = walk_tables(info);
    report_tsc(info, fadt);
}

/// The tables' lines; the FADT's first 116 bytes when there is one.
fn walk_tables(info: &BootInfo) -> Option<&'static [u8]> {
    match info.acpi_tables() {
        Some(t) => serial_println!(
            "HVB acpi_tables madt={:#x} fadt={:#x} mcfg={:#x} srat={:#x} dmar={:#x} ivrs={:#x}",
            t.madt,
            t.fadt,
            t.mcfg,
            t.srat,
            t.dmar,
            t.ivrs
        ),
        None => serial_println!("HVB acpi_tables none"),
    }
    let rsdp = phys_bytes(info, info.rsdp_phys, V2_LEN)?;
    let xsdt = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
    let (root, entry) = if rsdp[15] >= 2 && xsdt != 0 {
        (xsdt, 8)
    } else {
        (
            u64::from(u32::from_le_bytes(rsdp[16..20].try_into().unwrap())),
            4,
        )
    };
    let head = phys_bytes(info, root, 36)?;
    let len = (u32::from_le_bytes(head[4..8].try_into().unwrap()) as usize).clamp(36, MAX_LEN);
    let table = phys_bytes(info, root, len)?;
    let mut fadt = None;
    for e in table[36..].chunks_exact(entry) {
        let phys = if entry == 8 {
            u64::from_le_bytes(e.try_into().unwrap())
        } else {
            u64::from(u32::from_le_bytes(e.try_into().unwrap()))
        };
        if let Some(sig) = phys_bytes(info, phys, 4) {
            serial_println!("HVB acpi_table_here sig_hex={} phys={:#x}", Hex(sig), phys);
            if sig == b"FACP" && fadt.is_none() {
                fadt = phys_bytes(info, phys, 116);
            }
        }
    }
    fadt
}

/// The PM timer's rate (ACPI 6.5 §4.8.3.3).
const PM_TIMER_HZ: u64 = 3_579_545;

/// The PM timer's value and the TSC when it was read: the midpoint of the tightest of 8 RDTSC
/// brackets around a read (a bracket the host stalled in is thrown away).
fn pm_sample(read: &impl Fn() -> u32) -> (u32, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..8 {
        let before = hvboot_api::cpu::rdtsc();
        let pm = read();
        let width = hvboot_api::cpu::rdtsc() - before;
        if width < best.2 {
            best = (pm, before + width / 2, width);
        }
    }
    (best.0, best.1)
}

/// Prints `HVB tsc_freq loader_hz=.. source=.. here_hz=.. here=..`: the loader's TSC frequency
/// and the one measured here: against the PM timer of the FADT found above (PM_TMR_BLK at 76,
/// TMR_VAL_EXT = bit 8 of the flags at 112; ACPI 6.5 §5.2.9), `here=pm`, or without a FADT
/// against PIT channel 2 (`pit_hz`), `here=pit`.
fn report_tsc(info: &BootInfo, fadt: Option<&[u8]>) {
    let (loader_hz, source) = info.tsc_frequency().map_or((0, 0), |(hz, s)| (hz, s.0));
    let (here, here_hz) = match fadt {
        Some(f) => {
            let port = u32::from_le_bytes(f[76..80].try_into().unwrap()) as u16;
            let ext = u32::from_le_bytes(f[112..116].try_into().unwrap()) & (1 << 8) != 0;
            let mask = if ext { u32::MAX } else { 0xFF_FFFF };
            let read = || {
                let v: u32;
                // SAFETY: ring 0; the PM timer register has no side effects.
                unsafe {
                    core::arch::asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack))
                };
                v
            };
            ("pm", tsc_hz(&read, mask, PM_TIMER_HZ, || {}))
        }
        None => ("pit", pit_hz()),
    };
    serial_println!(
        "HVB tsc_freq loader_hz={loader_hz} source={source} here_hz={here_hz} here={here}"
    );
}

/// TSC ticks per second against a counter counting up at `hz` (`read`, `mask` wide): the
/// median of 3 windows of 30 ms, each after `restart`.
fn tsc_hz(read: &impl Fn() -> u32, mask: u32, hz: u64, restart: impl Fn()) -> u64 {
    let read = || read() & mask;
    let window = hz * 3 / 100;
    let mut out = [0u64; 3];
    for h in &mut out {
        restart();
        let (start, tsc0) = pm_sample(&read);
        while u64::from(read().wrapping_sub(start) & mask) < window {}
        let (end, tsc1) = pm_sample(&read);
        *h = (tsc1 - tsc0) * hz / u64::from(end.wrapping_sub(start) & mask);
    }
    out.sort_unstable();
    out[1]
}

/// TSC ticks per second against PIT channel 2 (Intel 8254): mode 0 from 0xFFFF (55 ms before
/// it wraps), read through the latch command (port 0x43 = 0x80, then the count's low and high
/// byte at 0x42), counting up as 0xFFFF minus the count.
fn pit_hz() -> u64 {
    use hvboot_api::cpu::{inb, outb};
    // SAFETY (both closures): ring 0; PIT channel 2 and its gate (port 0x61 bit 0) drive only
    // the speaker, kept off (bit 1).
    let restart = || unsafe {
        outb(0x61, inb(0x61) & !0x03);
        outb(0x43, 0xB0);
        outb(0x42, 0xFF);
        outb(0x42, 0xFF);
        outb(0x61, inb(0x61) | 0x01);
    };
    let read = || unsafe {
        outb(0x43, 0x80);
        let lo = u32::from(inb(0x42));
        0xFFFF - (u32::from(inb(0x42)) << 8 | lo)
    };
    tsc_hz(&read, 0xFFFF, 1_193_182, restart)
}
