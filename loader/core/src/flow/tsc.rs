//! The TSC frequency: CPUID leaf 15h/16h where the processor gives it (hvboot-api's virt report),
//! else measured against the ACPI PM timer, else (no FADT, or no PM timer in it) against the
//! 8254 PIT's channel 2. The start-up delays (`cpus.rs`) and the kernel
//! (`BootInfo.tsc_frequency_hz`) use it.
//!
//! The PIT (Intel 8254 datasheet; its ports as every PC has them): channel 2 counts down at
//! 1.193182 MHz while its gate (port 0x61 bit 0) is high; port 0x43 takes the mode (0xB0:
//! channel 2, low then high byte, mode 0, binary) and the latch command (0x80), port 0x42 the
//! count and the latched value. Channel 2 drives only the speaker (port 0x61 bit 1 kept off).
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

/// The PIT's input clock (Intel 8254; the PC's 14.31818 MHz / 12).
pub const PIT_HZ: u64 = 1_193_182;
/// Reads of the PIT in one window before it is given up as absent (a port with nothing behind
/// it reads 0xFF and never moves): a window takes about 12,000 reads on real hardware.
const PIT_STUCK_READS: u32 = 1_000_000;

/// A counter the TSC is measured against: a read of it counting up, its width mask, its rate.
struct Counter<R: Fn() -> u32> {
    read: R,
    mask: u32,
    hz: u64,
}

impl<R: Fn() -> u32> Counter<R> {
    /// The counter's value and the TSC at the moment it was read: the midpoint of the RDTSCs
    /// around the read, over the tightest of [`SAMPLE_TRIES`] brackets (an interrupt or an
    /// emulator stall inside a bracket widens it and is thrown away; under UEFI interrupts are
    /// on).
    fn sample(&self, cpu: &impl Cpu) -> (u32, u64) {
        let mut best = (0, 0, u64::MAX);
        for _ in 0..SAMPLE_TRIES {
            let before = cpu.rdtsc();
            let value = (self.read)() & self.mask;
            let after = cpu.rdtsc();
            let width = after.wrapping_sub(before);
            if width < best.2 {
                best = (value, before + width / 2, width);
            }
        }
        (best.0, best.1)
    }

    /// TSC ticks per second over 10 ms of the counter, or None if it does not move within
    /// `stuck` reads.
    fn one_window(&self, cpu: &impl Cpu, stuck: u32) -> Option<u64> {
        let window = self.hz / 100;
        let (start, tsc0) = self.sample(cpu);
        for _ in 0..stuck {
            let elapsed = u64::from(((self.read)() & self.mask).wrapping_sub(start) & self.mask);
            if elapsed >= window {
                let (end, tsc1) = self.sample(cpu);
                let elapsed = u64::from(end.wrapping_sub(start) & self.mask);
                return Some(tsc1.wrapping_sub(tsc0) * self.hz / elapsed);
            }
        }
        None
    }
}

/// The median of [`WINDOWS`] windows, each after `restart`, or None if one does not move.
fn median_of_windows<R: Fn() -> u32>(
    cpu: &impl Cpu,
    counter: &Counter<R>,
    restart: impl Fn(),
    stuck: u32,
) -> Option<u64> {
    let mut hz = [0u64; WINDOWS];
    for h in &mut hz {
        restart();
        *h = counter.one_window(cpu, stuck)?;
    }
    hz.sort_unstable();
    Some(hz[WINDOWS / 2])
}

/// The median of [`WINDOWS`] measurements against the PM timer, or None if it does not move.
pub fn measure(cpu: &impl Cpu, t: PmTimer) -> Option<u64> {
    let counter = Counter {
        read: || cpu.inl(t.port),
        mask: t.mask,
        hz: PM_TIMER_HZ,
    };
    median_of_windows(cpu, &counter, || {}, STUCK_READS)
}

/// The median of [`WINDOWS`] measurements against PIT channel 2, or None if it does not move
/// (no PIT). Each window reloads the count 0xFFFF in mode 0 (55 ms before it wraps, so a 10 ms
/// window never sees the wrap) and reads it through the latch command, counting up as
/// 0xFFFF minus the count.
pub fn measure_pit(cpu: &impl Cpu) -> Option<u64> {
    let restart = || {
        // Gate low (mode 0 holds the count), speaker off; mode, count; gate high: counting.
        cpu.outb(0x61, cpu.inb(0x61) & !0x03);
        cpu.outb(0x43, 0xB0);
        cpu.outb(0x42, 0xFF);
        cpu.outb(0x42, 0xFF);
        cpu.outb(0x61, cpu.inb(0x61) | 0x01);
    };
    let read = || {
        cpu.outb(0x43, 0x80);
        let lo = u32::from(cpu.inb(0x42));
        let hi = u32::from(cpu.inb(0x42));
        0xFFFF - (hi << 8 | lo)
    };
    let counter = Counter {
        read,
        mask: 0xFFFF,
        hz: PIT_HZ,
    };
    let hz = median_of_windows(cpu, &counter, restart, PIT_STUCK_READS);
    cpu.outb(0x61, cpu.inb(0x61) & !0x03);
    hz
}

/// The TSC frequency and its source: `cpuid_hz` when CPUID gave it, else the PM timer of the
/// FADT at `fadt_phys`, else the PIT, else unknown (0).
pub fn frequency(
    cpu: &impl Cpu,
    mem: &impl PhysMemory,
    fadt_phys: u64,
    cpuid_hz: u64,
) -> (u64, TscSource) {
    if cpuid_hz != 0 {
        return (cpuid_hz, TscSource::CPUID);
    }
    if let Some(hz) = pm_timer(mem, fadt_phys).and_then(|t| measure(cpu, t)) {
        if hz != 0 {
            return (hz, TscSource::PM_TIMER);
        }
    }
    match measure_pit(cpu) {
        Some(hz) if hz != 0 => (hz, TscSource::PIT),
        _ => (0, TscSource::UNKNOWN),
    }
}
