//! The wall-clock time at boot, as seconds since the Unix epoch (UTC): from the CMOS real-time
//! clock's registers under BIOS, or from UEFI's GetTime (UEFI 2.10 §8.3.1, EFI_TIME). Limine's
//! "date at boot" answers with it (docs/limine.md).
//!
//! The CMOS clock (the MC146818 register layout every PC RTC keeps; ACPI 6.5 §5.2.9 FADT
//! "CENTURY" names the century register, 0x32 on PCs and QEMU): seconds 0x00, minutes 0x02,
//! hours 0x04, day of month 0x07, month 0x08, year 0x09; status register A bit 7 "update in
//! progress", status register B bit 2 "binary (not BCD)" and bit 1 "24-hour". The registers are
//! read by the platform ([`read_cmos`] with its port access); decoding them is here, platform
//! free, so it is unit-tested and fuzzed (fuzz target `rtc`).

/// CMOS register indexes.
pub const SECONDS: u8 = 0x00;
/// See [`SECONDS`].
pub const MINUTES: u8 = 0x02;
/// See [`SECONDS`].
pub const HOURS: u8 = 0x04;
/// See [`SECONDS`].
pub const DAY: u8 = 0x07;
/// See [`SECONDS`].
pub const MONTH: u8 = 0x08;
/// See [`SECONDS`].
pub const YEAR: u8 = 0x09;
/// Status register A: bit 7 set while the clock updates its registers.
pub const STATUS_A: u8 = 0x0A;
/// Status register B: the registers' format.
pub const STATUS_B: u8 = 0x0B;
/// The century register on PCs (the FADT's CENTURY field; QEMU and SeaBIOS use 0x32).
pub const CENTURY: u8 = 0x32;

/// Status register A's update-in-progress bit.
pub const UPDATE_IN_PROGRESS: u8 = 0x80;
const BINARY: u8 = 0x04;
const HOURS_24: u8 = 0x02;
/// In 12-hour mode, the hour register's PM bit.
const PM: u8 = 0x80;

/// The time registers as read, in the clock's format: seconds, minutes, hours, day, month,
/// year, century (0 when the machine has no century register), status register B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cmos {
    /// Registers 0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32 in that order.
    pub time: [u8; 7],
    /// Status register B.
    pub status_b: u8,
}

/// A calendar date and time of day (UTC unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// The full year, e.g. 2026.
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
    /// 1 to the month's length.
    pub day: u8,
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 59 (a leap second's 60 is taken as 59).
    pub second: u8,
}

fn leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn month_days(year: u16, month: u8) -> u8 {
    match month {
        2 if leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    /// Whether every field is in its range (a clock never set, or a battery gone flat, reads
    /// as garbage; such a time is not given to the kernel).
    pub fn is_valid(&self) -> bool {
        (1970..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=month_days(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 61
    }

    /// Seconds since 1970-01-01 00:00:00 UTC (proleptic Gregorian calendar, no leap seconds).
    pub fn unix_seconds(&self) -> i64 {
        // Days before this year since 1970, then before this month, then before this day.
        const BEFORE: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let y = i64::from(self.year);
        let leaps = |y: i64| y / 4 - y / 100 + y / 400;
        let mut days = (y - 1970) * 365 + leaps(y - 1) - leaps(1969);
        days += i64::from(BEFORE[usize::from(self.month.clamp(1, 12)) - 1]);
        if self.month > 2 && leap(self.year) {
            days += 1;
        }
        days += i64::from(self.day) - 1;
        let second = i64::from(self.second.min(59));
        ((days * 24 + i64::from(self.hour)) * 60 + i64::from(self.minute)) * 60 + second
    }
}

/// A BCD byte's value, `None` when a nibble is not a decimal digit.
fn bcd(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0xf);
    (hi < 10 && lo < 10).then_some(hi * 10 + lo)
}

/// The time the registers `c` hold, decoded by status register B's format: BCD or binary, 12-
/// or 24-hour (in 12-hour mode bit 7 of the hours is PM and 12 is the first hour of the half
/// day). Years 00-99 are in the century register's century, or the 2000s without one (0 or out
/// of range). `None` when a register is not a valid value.
pub fn decode(c: &Cmos) -> Option<DateTime> {
    let binary = c.status_b & BINARY != 0;
    let value = |b: u8| if binary { Some(b) } else { bcd(b) };
    let [s, m, h, d, mo, y, cent] = c.time;
    let twelve = c.status_b & HOURS_24 == 0;
    let pm = twelve && h & PM != 0;
    let mut hour = value(if twelve { h & !PM } else { h })?;
    if twelve {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = hour % 12 + if pm { 12 } else { 0 };
    }
    let century = match value(cent) {
        Some(c @ 19..=99) => u16::from(c),
        _ => 20,
    };
    let year = value(y).filter(|&y| y < 100)?;
    let t = DateTime {
        year: century * 100 + u16::from(year),
        month: value(mo)?,
        day: value(d)?,
        hour,
        minute: value(m)?,
        second: value(s)?,
    };
    t.is_valid().then_some(t)
}

/// Reads the CMOS clock through `read` (a register index to its value; the platform's port
/// access, index port 0x70 and data port 0x71) by the update-in-progress rule: wait until no
/// update is in progress, read every register, and accept the reading only when a second
/// reading made the same way agrees (an update may start right after the flag was seen clear).
/// Gives up after `tries` readings (a clock that never settles) with `None`.
pub fn read_cmos(mut read: impl FnMut(u8) -> u8, tries: u32) -> Option<Cmos> {
    let mut once = || {
        let mut spins = 0u32;
        while read(STATUS_A) & UPDATE_IN_PROGRESS != 0 {
            spins += 1;
            // An update takes at most 2 ms (the MC146818's 1984 µs); far more reads than that.
            if spins > 1_000_000 {
                return None;
            }
        }
        let mut c = Cmos::default();
        for (v, r) in c
            .time
            .iter_mut()
            .zip([SECONDS, MINUTES, HOURS, DAY, MONTH, YEAR, CENTURY])
        {
            *v = read(r);
        }
        c.status_b = read(STATUS_B);
        Some(c)
    };
    let mut last = once()?;
    for _ in 0..tries {
        let now = once()?;
        if now == last {
            return Some(now);
        }
        last = now;
    }
    None
}

/// UEFI's EFI_TIME.TimeZone for "local time, zone unknown" (UEFI 2.10 §8.3.1).
pub const EFI_UNSPECIFIED_TIMEZONE: i16 = 0x07FF;

/// The Unix time of a UEFI GetTime reading: `t` as the firmware gave it and its TimeZone, the
/// offset of its local time from UTC in minutes (local = UTC + offset, as the `uefi` crate
/// reads it). An unspecified zone is taken as UTC, which is what QEMU's and most PCs' clocks
/// keep. `None` for an invalid time or zone.
pub fn efi_unix_seconds(t: &DateTime, time_zone: i16) -> Option<i64> {
    if !t.is_valid() {
        return None;
    }
    let offset = match time_zone {
        EFI_UNSPECIFIED_TIMEZONE => 0,
        z @ -1440..=1440 => i64::from(z) * 60,
        _ => return None,
    };
    Some(t.unix_seconds() - offset)
}

#[cfg(test)]
mod tests;
