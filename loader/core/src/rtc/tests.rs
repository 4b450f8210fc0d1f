use super::*;

fn at(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
    DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    }
}

#[test]
fn unix_seconds_of_known_dates() {
    assert_eq!(at(1970, 1, 1, 0, 0, 0).unix_seconds(), 0);
    assert_eq!(at(2000, 3, 1, 0, 0, 0).unix_seconds(), 951_868_800);
    assert_eq!(at(2026, 12, 1, 18, 30, 59).unix_seconds(), 1_796_149_859);
    assert_eq!(at(2099, 12, 31, 23, 59, 59).unix_seconds(), 4_102_444_799);
}

#[test]
fn every_day_from_1970_to_2400_follows_the_one_before() {
    let mut expected = 0i64;
    for year in 1970..2400u16 {
        for month in 1..=12 {
            for day in 1..=month_days(year, month) {
                let t = at(year, month, day, 0, 0, 0);
                assert!(t.is_valid());
                assert_eq!(t.unix_seconds(), expected, "{t:?}");
                expected += 86_400;
            }
            assert!(!at(year, month, month_days(year, month) + 1, 0, 0, 0).is_valid());
        }
    }
}

/// 2026-12-01 18:30:59 in each register format.
#[test]
fn bcd_binary_12_and_24_hour_registers() {
    let want = Some(at(2026, 12, 1, 18, 30, 59));
    let bcd24 = Cmos {
        time: [0x59, 0x30, 0x18, 0x01, 0x12, 0x26, 0x20],
        status_b: 0x02,
    };
    assert_eq!(decode(&bcd24), want);
    let bin24 = Cmos {
        time: [59, 30, 18, 1, 12, 26, 20],
        status_b: 0x06,
    };
    assert_eq!(decode(&bin24), want);
    // 12-hour: 6 PM.
    let bcd12 = Cmos {
        time: [0x59, 0x30, 0x86, 0x01, 0x12, 0x26, 0x20],
        status_b: 0x00,
    };
    assert_eq!(decode(&bcd12), want);
    let bin12 = Cmos {
        time: [59, 30, 0x80 | 6, 1, 12, 26, 20],
        status_b: 0x04,
    };
    assert_eq!(decode(&bin12), want);
    // 12 AM is hour 0, 12 PM hour 12; 0 and 13 are no 12-hour hours.
    let hour = |h: u8, b: u8| {
        decode(&Cmos {
            time: [0, 0, h, 1, 1, 0x26, 0x20],
            status_b: b,
        })
        .map(|t| t.hour)
    };
    assert_eq!((hour(0x12, 0), hour(0x92, 0)), (Some(0), Some(12)));
    assert_eq!((hour(0x00, 0), hour(0x13, 0)), (None, None));
    // No century register (0, or garbage): the 2000s.
    let no_century = Cmos {
        time: [0x59, 0x30, 0x18, 0x01, 0x12, 0x26, 0x00],
        status_b: 0x02,
    };
    assert_eq!(decode(&no_century), want);
}

#[test]
fn garbage_registers_give_no_time() {
    let bad = [
        [0x5a, 0, 0, 1, 1, 0x26, 0x20], // not BCD
        [0x60, 0, 0, 1, 1, 0x26, 0x20], // second 60 is kept; 0x61 is not
        [0, 0, 0x24, 1, 1, 0x26, 0x20], // hour 24
        [0, 0, 0, 0x30, 2, 0x26, 0x20], // 30 February
        [0, 0, 0, 0x29, 2, 0x26, 0x20], // 29 February 2026
        [0, 0, 0, 1, 0x13, 0x26, 0x20], // month 13
        [0, 0, 0, 0, 1, 0x26, 0x20],    // day 0
    ];
    for (i, time) in bad.iter().enumerate() {
        let got = decode(&Cmos {
            time: *time,
            status_b: 0x02,
        });
        assert_eq!(got.is_some(), i == 1, "{time:x?}");
    }
    let leap_day = Cmos {
        time: [0, 0, 0, 0x29, 2, 0x24, 0x20],
        status_b: 0x02,
    };
    assert!(decode(&leap_day).is_some());
}

/// A CMOS clock that ticks from 23:59:59 on 31 December 2025 to the new year while being read,
/// raising the update-in-progress flag for a few reads before the change.
#[test]
fn the_reading_waits_out_updates_and_needs_two_equal_readings() {
    let before: [u8; 7] = [0x59, 0x59, 0x23, 0x31, 0x12, 0x25, 0x20];
    let after: [u8; 7] = [0x00, 0x00, 0x00, 0x01, 0x01, 0x26, 0x20];
    let index = |r: u8| {
        [SECONDS, MINUTES, HOURS, DAY, MONTH, YEAR, CENTURY]
            .iter()
            .position(|&x| x == r)
    };
    let mut reads = 0u32;
    let cmos = read_cmos(
        |r| {
            reads += 1;
            let regs = if reads < 12 { before } else { after };
            match r {
                STATUS_A if (8..14).contains(&reads) => UPDATE_IN_PROGRESS,
                STATUS_A => 0,
                STATUS_B => 0x02,
                _ => regs[index(r).unwrap()],
            }
        },
        5,
    )
    .unwrap();
    assert_eq!(decode(&cmos), Some(at(2026, 1, 1, 0, 0, 0)));
    // A clock whose registers change on every reading is given up on.
    let mut n = 0u8;
    let never = read_cmos(
        |r| {
            n = n.wrapping_add(1);
            if r == STATUS_A {
                0
            } else {
                n
            }
        },
        5,
    );
    assert_eq!(never, None);
    // Nor does a clock stuck in an update hang the loader.
    assert_eq!(read_cmos(|_| UPDATE_IN_PROGRESS, 5), None);
}

#[test]
fn efi_time_zones() {
    let t = at(2026, 12, 1, 18, 30, 59);
    let utc = t.unix_seconds();
    assert_eq!(efi_unix_seconds(&t, EFI_UNSPECIFIED_TIMEZONE), Some(utc));
    assert_eq!(efi_unix_seconds(&t, 0), Some(utc));
    // 18:30 at UTC+1 is 17:30 UTC.
    assert_eq!(efi_unix_seconds(&t, 60), Some(utc - 3600));
    assert_eq!(efi_unix_seconds(&t, -330), Some(utc + 330 * 60));
    assert_eq!(efi_unix_seconds(&t, 1441), None);
    assert_eq!(efi_unix_seconds(&at(2026, 2, 29, 0, 0, 0), 0), None);
}

/// The fuzz target's invariants (fuzz/fuzz_targets/rtc.rs) on stable: any register bytes decode
/// without panicking, and a time decoded is valid and its Unix time in range.
#[test]
fn any_registers_decode_to_a_valid_time_or_none() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let c = Cmos {
            time: [b[0], b[1], b[2], b[3], b[4], b[5], b[6]],
            status_b: b[7],
        };
        if let Some(t) = decode(&c) {
            assert!(t.is_valid());
            assert!((0..253_402_300_800).contains(&t.unix_seconds()));
        }
    }
}
