//! The TSC frequency: CPUID leaf 15h/16h where the processor gives it (hvboot-api's virt report),
//! else measured against the ACPI PM timer. The start-up delays (`cpus.rs`) and the kernel
//! (`BootInfo.tsc_frequency_hz`) use it.
//!
//! The PM timer (ACPI 6.5 §4.8.3.3) counts at 3.579545 MHz, 24 bits wide, or 32 when FADT
//! flag TMR_VAL_EXT (bit 8 of Flags at offset 112) is set. Its I/O port is X_PM_TMR_BLK (a
//! Generic Address Structure at offset 208: address space ID at +0, 1 = system I/O; address at
//! +4) when the FADT is long enough and that is an I/O address, else PM_TMR_BLK (u32 at 76,
//! with PM_TMR_LEN at 91 equal to 4) (ACPI 6.5 §5.2.9, Table 5.9).

use hvboot_api::acpi::{read_table, PhysMemory};
use hvboot_api::TscSource;

use super::Cpu;

/// The PM timer's rate (ACPI 6.5 §4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// One measurement window: 10 ms of PM timer ticks.
const WINDOW_TICKS: u64 = PM_TIMER_HZ / 100;
/// Measurements; the median is taken (a window that the host preempted is an outlier).
const WINDOWS: usize = 3;
/// Reads of the PM timer in one window before it is given up as stuck.
const STUCK_READS: u32 = 10_000_000;

/// The PM timer: its I/O port and width mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    /// The I/O port of the 32-bit PM1 timer register.
    pub port: u16,
    /// 0xFF_FFFF or 0xFFFF_FFFF.
    pub mask: u32,
}

/// The PM timer the FADT at `fadt_phys` describes, if it has one in I/O space.
pub fn pm_timer(mem: &impl PhysMemory, fadt_phys: u64) -> Option<PmTimer> {
    let fadt = read_table(mem, fadt_phys, Some(b"FACP")).ok()?;
    let u32_at = |at: usize| {
        fadt.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mask = match u32_at(112) {
        Some(flags) if flags & (1 << 8) != 0 => u32::MAX,
        _ => 0xFF_FFFF,
    };
    let x_port = fadt
        .get(208..220)
        .filter(|gas| gas[0] == 1)
        .map(|gas| u64::from_le_bytes(gas[4..12].try_into().unwrap_or([0; 8])))
        .filter(|&a| a != 0 && a <= 0xFFFF);
    let port = match x_port {
        Some(a) => a,
        None if fadt.get(91) == Some(&4) => u64::from(u32_at(76)?),
        None => return None,
    };
    (port != 0 && port <= 0xFFFF).then_some(PmTimer {
        port: port as u16,
        mask,
    })
}

/// Tries for one [`sample`].
const SAMPLE_TRIES: usize = 8;

/// The PM timer's value and the TSC at the moment it was read: the midpoint of the RDTSCs
/// around the read, over the tightest of [`SAMPLE_TRIES`] brackets (an interrupt or an emulator
/// stall inside a bracket widens it and is thrown away; under UEFI interrupts are on).
fn sample(cpu: &impl Cpu, t: PmTimer) -> (u32, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..SAMPLE_TRIES {
        let before = cpu.rdtsc();
        let pm = cpu.inl(t.port) & t.mask;
        let after = cpu.rdtsc();
        let width = after.wrapping_sub(before);
        if width < best.2 {
            best = (pm, before + width / 2, width);
        }
    }
    (best.0, best.1)
}

/// TSC ticks per second over one window of the PM timer, or None if it does not move.
fn one_window(cpu: &impl Cpu, t: PmTimer) -> Option<u64> {
    let (start, tsc0) = sample(cpu, t);
    for _ in 0..STUCK_READS {
        let elapsed = u64::from((cpu.inl(t.port) & t.mask).wrapping_sub(start) & t.mask);
        if elapsed >= WINDOW_TICKS {
            let (end, tsc1) = sample(cpu, t);
            let elapsed = u64::from(end.wrapping_sub(start) & t.mask);
            return Some(tsc1.wrapping_sub(tsc0) * PM_TIMER_HZ / elapsed);
        }
    }
    None
}

/// The median of [`WINDOWS`] measurements against the PM timer, or None if it does not move.
pub fn measure(cpu: &impl Cpu, t: PmTimer) -> Option<u64> {
    let mut hz = [0u64; WINDOWS];
    for h in &mut hz {
        *h = one_window(cpu, t)?;
    }
    hz.sort_unstable();
    Some(hz[WINDOWS / 2])
}

/// The TSC frequency and its source: `cpuid_hz` when CPUID gave it, else the PM timer of the
/// FADT at `fadt_phys`, else unknown (0).
pub fn frequency(
    cpu: &impl Cpu,
    mem: &impl PhysMemory,
    fadt_phys: u64,
    cpuid_hz: u64,
) -> (u64, TscSource) {
    if cpuid_hz != 0 {
        return (cpuid_hz, TscSource::CPUID);
    }
    match pm_timer(mem, fadt_phys).and_then(|t| measure(cpu, t)) {
        Some(hz) if hz != 0 => (hz, TscSource::PM_TIMER),
        _ => (0, TscSource::UNKNOWN),
    }
}
