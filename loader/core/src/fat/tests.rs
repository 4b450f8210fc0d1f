//! FAT reader tests against volumes made by independent tools (mkfs.fat from dosfstools and
//! mtools' mcopy/mmd/mdel), created at test time: no binary images are checked in.

extern crate std;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::ToString;
use std::vec::Vec;
use std::{format, fs};

use super::*;

/// A disk in memory; counts the reads.
pub(crate) struct MemDisk {
    pub(crate) data: Vec<u8>,
    pub(crate) reads: usize,
}

impl BlockDevice for MemDisk {
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        assert_eq!(buf.len() % SECTOR, 0);
        let at = lba as usize * SECTOR;
        if at + buf.len() > self.data.len() {
            return Err(format!("read past the end at LBA {lba}"));
        }
        buf.copy_from_slice(&self.data[at..at + buf.len()]);
        self.reads += 1;
        Ok(())
    }

    fn sectors(&mut self) -> Option<u64> {
        Some((self.data.len() / SECTOR) as u64)
    }
}

pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        std::string::String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hvboot-fat-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic pseudo-random bytes.
fn bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// mkfs.fat an image of `kib` KiB (FAT `bits`), then put `files` (path, contents) on it.
fn make_image(dir: &Path, bits: u32, kib: u32, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let img = dir.join("fat.img");
    let _ = fs::remove_file(&img);
    run(Command::new("mkfs.fat")
        .args(["-F", &bits.to_string(), "-C", "-n", "HVBTEST"])
        .arg(&img)
        .arg(kib.to_string()));
    for (i, (path, data)) in files.iter().enumerate() {
        let mut parent = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for p in &parts[..parts.len() - 1] {
            parent.push('/');
            parent.push_str(p);
            let _ = Command::new("mmd")
                .arg("-i")
                .arg(&img)
                .arg(format!("::{parent}"))
                .env("MTOOLS_SKIP_CHECK", "1")
                .output();
        }
        let src = dir.join(format!("src{i}"));
        fs::write(&src, data).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&img)
            .arg(&src)
            .arg(format!("::{path}"))
            .env("MTOOLS_SKIP_CHECK", "1"));
    }
    fs::read(&img).unwrap()
}

fn mount(data: Vec<u8>) -> Volume<MemDisk> {
    Volume::mount(MemDisk { data, reads: 0 }, 0).unwrap()
}

fn read_all(v: &mut Volume<MemDisk>, path: &str) -> Result<Vec<u8>, String> {
    let e = v.find(path)?;
    assert!(!e.is_dir);
    let mut buf = vec![0u8; (e.size as usize).next_multiple_of(4096)];
    v.read(&e, &mut buf)?;
    buf.truncate(e.size as usize);
    Ok(buf)
}

/// The runs of a whole chain.
fn runs(v: &mut Volume<MemDisk>, first: u32) -> Vec<(u32, u64)> {
    let mut chain = v.chain(first).unwrap();
    let mut out = Vec::new();
    while let Some(run) = v.next_run(&mut chain, u64::MAX).unwrap() {
        out.push(run);
    }
    out
}

fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    std::vec![
        (
            "/hvboot/hvboot.cfg",
            b"hvboot-config 1\nkernel /hvboot/kernel.elf\n".to_vec()
        ),
        ("/hvboot/kernel.elf", bytes(1, 700_001)),
        (
            "/hvboot/modules/A Long Module Name.with.dots",
            bytes(2, 70_000)
        ),
        ("/hvboot/modules/x", bytes(3, 1)),
        ("/hvboot/modules/empty", Vec::new()),
        ("/EFI/BOOT/BOOTX64.EFI", bytes(4, 4096)),
        ("/hvboot/modules/\u{e9}t\u{e9}-unicode.bin", bytes(5, 513)),
    ]
}

fn check_volume(bits: u32, kib: u32, expect: FatType) {
    let dir = tmpdir(&format!("fat{bits}"));
    let files = sample_files();
    let mut v = mount(make_image(&dir, bits, kib, &files));
    assert_eq!(v.fat_type, expect);
    for (path, data) in &files {
        assert_eq!(&read_all(&mut v, path).unwrap(), data, "{path}");
    }
    // Case-insensitive, long and 8.3 names.
    assert_eq!(read_all(&mut v, "/HVBOOT/KERNEL.ELF").unwrap(), files[1].1);
    let mods = v.find("/hvboot/modules").unwrap();
    let listing = v.list(&mods).unwrap();
    let names: Vec<&str> = listing.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"A Long Module Name.with.dots"), "{names:?}");
    assert!(v.find("/hvboot/modules").unwrap().is_dir);
    let err = v.find("/hvboot/nothere.elf").unwrap_err();
    assert!(err.contains("not found"), "{err}");
    let err = v.find("/hvboot/kernel.elf/x").unwrap_err();
    assert!(err.contains("is a file"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn fat32_volume_made_by_mkfs_and_mtools() {
    check_volume(32, 40 * 1024, FatType::Fat32);
}

#[test]
fn fat16_volume_made_by_mkfs_and_mtools() {
    check_volume(16, 16 * 1024, FatType::Fat16);
}

#[test]
fn large_contiguous_file_takes_few_reads() {
    let dir = tmpdir("large");
    let big = bytes(9, 8 << 20);
    let mut v = mount(make_image(
        &dir,
        32,
        40 * 1024,
        &[("/big.bin", big.clone())],
    ));
    let e = v.find("/big.bin").unwrap();
    let before = v.dev.reads;
    let mut buf = vec![0u8; big.len()];
    v.read(&e, &mut buf).unwrap();
    assert_eq!(buf, big);
    // 8 MiB of data: one data read per contiguous run, plus FAT windows.
    let reads = v.dev.reads - before;
    assert!(reads < 40, "{reads} reads for a contiguous 8 MiB file");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn fragmented_file() {
    let dir = tmpdir("frag");
    // FAT16: no FSInfo next-free hint, so mtools fills the first free clusters.
    let img = make_image(
        &dir,
        16,
        16 * 1024,
        &[
            ("/a", bytes(1, 20_000)),
            ("/b", bytes(2, 20_000)),
            ("/c", bytes(3, 20_000)),
        ],
    );
    let path = dir.join("fat.img");
    fs::write(&path, &img).unwrap();
    // Free the holes a and c leave, then write a file that must be split across them.
    for f in ["::/a", "::/c"] {
        run(Command::new("mdel")
            .arg("-i")
            .arg(&path)
            .arg(f)
            .env("MTOOLS_SKIP_CHECK", "1"));
    }
    let frag = bytes(7, 100_000);
    let src = dir.join("frag.src");
    fs::write(&src, &frag).unwrap();
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&path)
        .arg(&src)
        .arg("::/frag")
        .env("MTOOLS_SKIP_CHECK", "1"));
    let mut v = mount(fs::read(&path).unwrap());
    let e = v.find("/frag").unwrap();
    assert!(runs(&mut v, e.first_cluster).len() > 1, "not fragmented");
    assert_eq!(read_all(&mut v, "/frag").unwrap(), frag);
    assert_eq!(read_all(&mut v, "/b").unwrap(), bytes(2, 20_000));
    // A destination of exactly the file's size (not a sector multiple) works too.
    let mut exact = vec![0u8; frag.len()];
    v.read(&e, &mut exact).unwrap();
    assert_eq!(exact, frag);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_fat_is_an_error() {
    let dir = tmpdir("corrupt");
    let mut img = make_image(
        &dir,
        32,
        40 * 1024,
        &[("/hvboot/kernel.elf", bytes(1, 300_000))],
    );
    let v = mount(img.clone());
    let (fat_start, fat_sectors) = (v.fat_start as usize, v.fat_sectors as usize);
    let e = {
        let mut v = v;
        v.find("/hvboot/kernel.elf").unwrap()
    };
    // Zero the FAT entries from the kernel's second cluster on (both FAT copies).
    let from = fat_start * SECTOR + (e.first_cluster as usize + 1) * 4;
    img[from..from + 64].fill(0);
    let mut v = mount(img.clone());
    let err = read_all(&mut v, "/hvboot/kernel.elf").unwrap_err();
    assert!(err.contains("corrupt FAT"), "{err}");
    // A link out of range.
    let at = fat_start * SECTOR + e.first_cluster as usize * 4;
    img[at..at + 4].copy_from_slice(&0x0FFF_FF00u32.to_le_bytes());
    let mut v = mount(img.clone());
    let err = read_all(&mut v, "/hvboot/kernel.elf").unwrap_err();
    assert!(err.contains("outside"), "{err}");
    // A chain that ends too early.
    img[at..at + 4].copy_from_slice(&0x0FFF_FFFFu32.to_le_bytes());
    let mut v = mount(img.clone());
    let err = read_all(&mut v, "/hvboot/kernel.elf").unwrap_err();
    assert!(err.contains("ends after 1 clusters"), "{err}");
    // The whole FAT overwritten: even the root directory cannot be read.
    img[fat_start * SECTOR..(fat_start + fat_sectors) * SECTOR].fill(0);
    let mut v = mount(img.clone());
    let err = v.find("/hvboot/kernel.elf").unwrap_err();
    assert!(err.contains("corrupt FAT"), "{err}");
    // A damaged boot sector.
    img[510] = 0;
    let err = Volume::mount(
        MemDisk {
            data: img,
            reads: 0,
        },
        0,
    )
    .err()
    .unwrap();
    assert!(err.contains("0x55AA"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

/// A FAT32 image with a 300,000-byte kernel and a directory of three clusters' worth of long
/// names; returns (image, byte offset of the first FAT, kernel entry, directory entry).
fn loop_image(name: &str) -> (Vec<u8>, usize, Entry, Entry) {
    let dir = tmpdir(name);
    let mut files = std::vec![("/hvboot/kernel.elf", bytes(1, 300_000))];
    let names: Vec<std::string::String> = (0..40)
        .map(|i| format!("/hvboot/modules/a long module name number {i}.bin"))
        .collect();
    for n in &names {
        files.push((n.as_str(), bytes(2, 10)));
    }
    let img = make_image(&dir, 32, 40 * 1024, &files);
    let _ = fs::remove_dir_all(&dir);
    let mut v = mount(img.clone());
    let fat = v.fat_start as usize * SECTOR;
    let kernel = v.find("/hvboot/kernel.elf").unwrap();
    let modules = v.find("/hvboot/modules").unwrap();
    assert!(
        runs(&mut v, modules.first_cluster)
            .iter()
            .map(|r| r.1)
            .sum::<u64>()
            >= 3
    );
    (img, fat, kernel, modules)
}

fn set_fat(img: &mut [u8], fat: usize, cluster: u32, value: u32) {
    let at = fat + cluster as usize * 4;
    img[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn file_chain_loops_of_any_length_are_corrupt() {
    let (img, fat, kernel, _) = loop_image("file-loops");
    let first = kernel.first_cluster;
    let need = 300_000u32.div_ceil(512);
    // From cluster k back to cluster j: every loop length from 1 (k links to itself) to the
    // whole file, at the start, middle and end of the chain.
    for (k, j) in [
        (0, 0),
        (1, 0),
        (5, 3),
        (100, 2),
        (need - 2, 0),
        (need - 1, need - 1),
        (need - 1, 0),
    ] {
        let mut img = img.clone();
        set_fat(&mut img, fat, first + k, first + j);
        let mut v = mount(img);
        let err = read_all(&mut v, "/hvboot/kernel.elf").unwrap_err();
        assert!(err.contains("corrupt FAT"), "{k}->{j}: {err}");
        assert!(
            err.contains("loops") || err.contains("goes on"),
            "{k}->{j}: {err}"
        );
    }
    // A chain that goes on past the file's end (to a cluster that ends it) is corrupt too.
    let mut img = img.clone();
    let spare = first + need + 100;
    set_fat(&mut img, fat, first + need - 1, spare);
    set_fat(&mut img, fat, spare, 0x0FFF_FFFF);
    let mut v = mount(img);
    let err = read_all(&mut v, "/hvboot/kernel.elf").unwrap_err();
    assert!(
        err.contains("corrupt FAT") && err.contains("goes on"),
        "{err}"
    );
}

#[test]
fn directory_chain_loops_are_corrupt() {
    let (img, fat, _, modules) = loop_image("dir-loops");
    let mut v = mount(img.clone());
    let chain = runs(&mut v, modules.first_cluster);
    let clusters: Vec<u32> = chain.iter().flat_map(|&(c, n)| c..c + n as u32).collect();
    let last = *clusters.last().unwrap();
    // The last cluster back to the first, to itself, and the first to itself: every lookup
    // and listing through the directory is refused, even one that would stop before the loop.
    for (from, to) in [
        (last, clusters[0]),
        (last, last),
        (clusters[0], clusters[0]),
    ] {
        let mut img = img.clone();
        set_fat(&mut img, fat, from, to);
        let mut v = mount(img);
        let err = v
            .find("/hvboot/modules/a long module name number 0.bin")
            .unwrap_err();
        assert!(
            err.contains("corrupt FAT") && err.contains("loops"),
            "{err}"
        );
        assert!(err.contains("/hvboot/modules"), "{err}");
        assert!(v.list(&modules).unwrap_err().contains("loops"));
    }
    // A chain that goes on far past what a directory may hold (65,536 entries), without a loop.
    let mut img = img.clone();
    let mut prev = last;
    for c in 20_000..30_000u32 {
        set_fat(&mut img, fat, prev, c);
        prev = c;
    }
    set_fat(&mut img, fat, prev, 0x0FFF_FFFF);
    let mut v = mount(img);
    let err = v.list(&modules).unwrap_err();
    assert!(
        err.contains("corrupt FAT") && err.contains("65536 entries"),
        "{err}"
    );
}

#[test]
fn short_name_checksum_matches_the_spec_example() {
    // Computed by hand with the spec's algorithm for "README  TXT".
    let mut sum = 0u8;
    for &c in b"README  TXT" {
        sum = (if sum & 1 != 0 { 0x80u8 } else { 0 })
            .wrapping_add(sum >> 1)
            .wrapping_add(c);
    }
    assert_eq!(short_name_checksum(b"README  TXT"), sum);
}
