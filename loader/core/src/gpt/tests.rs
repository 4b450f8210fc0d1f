//! GPT tests against tables written by an independent tool (sgdisk from gdisk), created at test
//! time, then damaged.

extern crate std;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;
use std::{fs, vec};

use super::*;
use crate::fat::tests::{run, tmpdir, MemDisk};

const SECTORS: usize = 8192;
const ESP_LBA: u64 = 2048;

/// A 4 MiB disk whose GPT (by sgdisk) has a BIOS boot partition, then the ESP at LBA 2048.
fn disk() -> MemDisk {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = tmpdir(&format!("gpt{}", N.fetch_add(1, Ordering::Relaxed)));
    let img = dir.join("disk.img");
    fs::write(&img, vec![0u8; SECTORS * SECTOR]).unwrap();
    run(Command::new("sgdisk")
        .args([
            "-o",
            "-a",
            "1",
            "-n",
            "1:1024:2047",
            "-t",
            "1:ef02",
            "-n",
            "2:2048:4095",
            "-t",
            "2:ef00",
        ])
        .arg(&img));
    let data = fs::read(&img).unwrap();
    let _ = fs::remove_dir_all(&dir);
    MemDisk { data, reads: 0 }
}

fn entries_lba(d: &MemDisk, header_lba: usize) -> usize {
    let h = &d.data[header_lba * SECTOR..];
    u64::from_le_bytes(h[72..80].try_into().unwrap()) as usize
}

#[test]
fn finds_the_esp_in_the_primary_gpt() {
    let mut d = disk();
    let esp = find_esp(&mut d).unwrap();
    assert_eq!(
        esp,
        Esp {
            first_lba: ESP_LBA,
            primary_bad: None
        }
    );
}

/// A way to damage a disk.
type Damage = fn(&mut MemDisk);

#[test]
fn a_damaged_primary_gpt_falls_back_to_the_backup() {
    let last = SECTORS - 1;
    // Each damage to the primary, and the words that name it.
    let cases: Vec<(&str, Damage)> = vec![
        ("EFI PART", |d| d.data[SECTOR] = b'X'),
        ("header CRC32", |d| d.data[SECTOR + 40] ^= 1), // FirstUsableLBA
        ("header CRC32", |d| d.data[SECTOR + 72] ^= 1), // PartitionEntryLBA
        ("array CRC32", |d| {
            let at = entries_lba(d, 1) * SECTOR + 128 + 32; // the ESP's first LBA
            d.data[at] ^= 0xFF;
        }),
        ("array CRC32", |d| {
            let at = entries_lba(d, 1) * SECTOR + 127 * 128; // the last, unused entry
            d.data[at] = 1;
        }),
        ("header", |d| d.data[SECTOR..2 * SECTOR].fill(0)),
    ];
    for (words, damage) in cases {
        let mut d = disk();
        damage(&mut d);
        let esp = find_esp(&mut d).unwrap();
        assert_eq!(esp.first_lba, ESP_LBA);
        let why = esp.primary_bad.unwrap();
        assert!(why.contains(words), "{words}: {why}");
    }
    // A primary header with a right CRC that claims to be elsewhere (a copy of the backup).
    let mut d = disk();
    let backup = d.data[last * SECTOR..(last + 1) * SECTOR].to_vec();
    d.data[SECTOR..2 * SECTOR].copy_from_slice(&backup);
    let why = find_esp(&mut d).unwrap().primary_bad.unwrap();
    assert!(why.contains(&format!("at LBA {last}")), "{why}");
}

#[test]
fn both_gpts_damaged_is_an_error_naming_both() {
    let last = SECTORS - 1;
    let mut d = disk();
    d.data[SECTOR + 40] ^= 1;
    d.data[last * SECTOR + 40] ^= 1;
    let err = find_esp(&mut d).unwrap_err();
    assert!(err.contains("no valid GPT"), "{err}");
    assert!(err.contains("primary (LBA 1): header CRC32"), "{err}");
    assert!(
        err.contains(&format!("backup (LBA {last}): header CRC32")),
        "{err}"
    );
    // The backup's entry array damaged instead.
    let mut d = disk();
    d.data[SECTOR + 40] ^= 1;
    let at = entries_lba(&d, last) * SECTOR + 128;
    d.data[at] ^= 1;
    let err = find_esp(&mut d).unwrap_err();
    assert!(
        err.contains(&format!("backup (LBA {last}): partition-entry array CRC32")),
        "{err}"
    );
}

/// A device that cannot tell its size: no backup to fall back to, and the error says so.
struct NoSize(MemDisk);

impl BlockDevice for NoSize {
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0.read(lba, buf)
    }
}

#[test]
fn no_backup_without_the_disk_size() {
    let mut d = disk();
    d.data[SECTOR + 40] ^= 1;
    let err = find_esp(&mut NoSize(d)).unwrap_err();
    assert!(err.contains("size is unknown"), "{err}");
}

#[test]
fn a_valid_gpt_without_an_esp_is_not_a_reason_for_the_backup() {
    let mut d = disk();
    // Retype the ESP in both arrays, fixing up the CRCs, with sgdisk itself.
    let dir = tmpdir("gpt-noesp");
    let img = dir.join("disk.img");
    fs::write(&img, &d.data).unwrap();
    run(Command::new("sgdisk").args(["-t", "2:8300"]).arg(&img));
    d.data = fs::read(&img).unwrap();
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(
        find_esp(&mut d).unwrap_err(),
        "no EFI system partition in the GPT"
    );
}

#[test]
fn implausible_entry_arrays_are_refused_without_reading_them() {
    for (count, size) in [(128u32, 100u32), (1 << 20, 128), (u32::MAX, u32::MAX)] {
        let mut d = disk();
        let h = SECTOR;
        d.data[h + 80..h + 84].copy_from_slice(&count.to_le_bytes());
        d.data[h + 84..h + 88].copy_from_slice(&size.to_le_bytes());
        d.data[h + 16..h + 20].fill(0);
        let crc = crc32(0, &d.data[h..h + 92]);
        d.data[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
        let why = find_esp(&mut d).unwrap().primary_bad.unwrap();
        assert!(why.contains("not plausible"), "{why}");
    }
}
