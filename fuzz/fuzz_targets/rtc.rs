//! Any bytes as CMOS clock registers: `rtc::decode` (seconds, minutes, hours, day, month, year,
//! century, status register B) never panics and gives only valid times; `rtc::read_cmos` over
//! a clock whose every register read is the input's next byte always returns (the update-in-
//! progress wait and the retries are bounded), and what it returns decodes like any registers.
#![no_main]

use hvboot_loader_core::rtc::{decode, read_cmos, Cmos};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 8 {
        let c = Cmos {
            time: [
                data[0], data[1], data[2], data[3], data[4], data[5], data[6],
            ],
            status_b: data[7],
        };
        if let Some(t) = decode(&c) {
            assert!(t.is_valid());
            assert!((0..253_402_300_800).contains(&t.unix_seconds()));
        }
    }
    if data.is_empty() {
        return;
    }
    let mut i = 0usize;
    let got = read_cmos(
        |_| {
            i += 1;
            data[i % data.len()]
        },
        4,
    );
    if let Some(c) = got {
        let _ = decode(&c);
    }
});
