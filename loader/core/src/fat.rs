//! A read-only FAT16/FAT32 reader with long file names and subdirectories (Microsoft "FAT: General
//! Overview of On-Disk Format" 1.03: §3 BPB, §3.5 FAT type, §4 FAT, §6 directory entries,
//! §7 long names): how both loaders read the ESP, the BIOS loader through INT 13h, the UEFI
//! loader through the firmware's Block I/O protocol (docs/loader.md, "Reading files").
//!
//! The volume reads 512-byte sectors through a [`BlockDevice`]; file data goes straight into the
//! caller's buffer in runs of contiguous clusters, so one large file takes few large transfers.
//! Every inconsistency (bad BPB, cluster out of range, free or bad cluster inside a chain, a chain
//! shorter than the file, a loop) is an error naming what and where: the loader never boots a
//! kernel it read from a damaged file system.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Bytes per sector this reader supports (the only size BIOS disks and our images use).
pub const SECTOR: usize = 512;

/// A disk of 512-byte sectors.
pub trait BlockDevice {
    /// Reads `buf.len() / 512` sectors starting at `lba` into `buf` (a multiple of 512 bytes).
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String>;
}

/// FAT16 or FAT32 (FAT12 is refused: an ESP is never that small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    /// 4085 ..= 65524 clusters.
    Fat16,
    /// 65525 clusters or more.
    Fat32,
}

/// A file or directory found by [`Volume::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// First cluster (0 for an empty file, or the FAT16 root directory).
    pub first_cluster: u32,
    /// Size in bytes (0 for directories).
    pub size: u32,
    /// Whether this is a directory.
    pub is_dir: bool,
}

/// How many FAT sectors the reader keeps cached (one read fills them all).
const FAT_WINDOW: u64 = 32;

/// A mounted FAT volume on a partition of `dev`.
pub struct Volume<D: BlockDevice> {
    dev: D,
    start: u64,
    /// The FAT type.
    pub fat_type: FatType,
    sec_per_clus: u64,
    fat_start: u64,
    fat_sectors: u64,
    root_dir_start: u64,
    root_dir_sectors: u64,
    data_start: u64,
    clusters: u32,
    root_cluster: u32,
    fat_cache: Vec<u8>,
    fat_cache_lba: Option<u64>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The checksum of an 8.3 name that its long-name entries carry (FAT spec §7).
pub fn short_name_checksum(name: &[u8; 11]) -> u8 {
    name.iter()
        .fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c))
}

fn names_equal(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_uppercase)
        .eq(b.chars().flat_map(char::to_uppercase))
}

/// "NAME    EXT" -> "NAME.EXT" (FAT spec §6.1).
fn short_name_text(raw: &[u8; 11]) -> String {
    let mut name: String = raw[..8]
        .iter()
        .map(|&c| c as char)
        .collect::<String>()
        .trim_end()
        .into();
    if name.starts_with('\u{5}') {
        name.replace_range(..1, "\u{e5}"); // 0x05 stands for a leading 0xE5 (§6.1)
    }
    let ext: String = raw[8..].iter().map(|&c| c as char).collect();
    let ext = ext.trim_end();
    if !ext.is_empty() {
        name.push('.');
        name.push_str(ext);
    }
    name
}

impl<D: BlockDevice> Volume<D> {
    /// Mounts the FAT volume whose boot sector is at `start` (an LBA of `dev`).
    pub fn mount(mut dev: D, start: u64) -> Result<Self, String> {
        let mut bs = [0u8; SECTOR];
        dev.read(start, &mut bs)
            .map_err(|e| format!("FAT boot sector: {e}"))?;
        let bad = |what: &str| format!("FAT boot sector at LBA {start}: {what}");
        if bs[510] != 0x55 || bs[511] != 0xAA {
            return Err(bad("no 0x55AA signature"));
        }
        let bps = le16(&bs, 11) as usize;
        if bps != SECTOR {
            return Err(bad(&format!(
                "{bps} bytes per sector, only {SECTOR} is supported"
            )));
        }
        let spc = bs[13] as u64;
        if spc == 0 || !spc.is_power_of_two() {
            return Err(bad(&format!("{spc} sectors per cluster")));
        }
        let reserved = le16(&bs, 14) as u64;
        let nfats = bs[16] as u64;
        let root_entries = le16(&bs, 17) as u64;
        let total = match le16(&bs, 19) {
            0 => le32(&bs, 32) as u64,
            n => n as u64,
        };
        let fat_size = match le16(&bs, 22) {
            0 => le32(&bs, 36) as u64,
            n => n as u64,
        };
        if reserved == 0 || nfats == 0 || fat_size == 0 {
            return Err(bad("zero reserved sectors, FATs or FAT size"));
        }
        let root_dir_sectors = (root_entries * 32).div_ceil(SECTOR as u64);
        let data_start = reserved + nfats * fat_size + root_dir_sectors;
        if data_start >= total {
            return Err(bad("the FATs fill the whole volume"));
        }
        let clusters = (total - data_start) / spc;
        let fat_type = if clusters < 4085 {
            return Err(bad("FAT12 volume (fewer than 4085 clusters)"));
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        let entry_bytes = if fat_type == FatType::Fat32 { 4 } else { 2 };
        if (clusters + 2) * entry_bytes > fat_size * SECTOR as u64 {
            return Err(bad("the FAT is too small for the volume's clusters"));
        }
        let root_cluster = if fat_type == FatType::Fat32 {
            le32(&bs, 44) & 0x0FFF_FFFF
        } else {
            0
        };
        let v = Self {
            dev,
            start,
            fat_type,
            sec_per_clus: spc,
            fat_start: reserved,
            fat_sectors: fat_size,
            root_dir_start: reserved + nfats * fat_size,
            root_dir_sectors,
            data_start,
            clusters: clusters as u32,
            root_cluster,
            fat_cache: vec![0; FAT_WINDOW as usize * SECTOR],
            fat_cache_lba: None,
        };
        if fat_type == FatType::Fat32 && !v.valid_cluster(root_cluster) {
            return Err(bad(&format!(
                "root directory cluster {root_cluster} out of range"
            )));
        }
        Ok(v)
    }

    /// The block device, back.
    pub fn into_device(self) -> D {
        self.dev
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        self.sec_per_clus * SECTOR as u64
    }

    fn valid_cluster(&self, c: u32) -> bool {
        (2..self.clusters + 2).contains(&c)
    }

    fn cluster_lba(&self, c: u32) -> u64 {
        self.start + self.data_start + (c as u64 - 2) * self.sec_per_clus
    }

    /// The FAT entry of cluster `c`: Ok(Some(next)), Ok(None) at end of chain, Err otherwise.
    fn next_cluster(&mut self, c: u32) -> Result<Option<u32>, String> {
        let width = if self.fat_type == FatType::Fat32 {
            4
        } else {
            2
        };
        let byte = c as u64 * width;
        let sector = byte / SECTOR as u64;
        let window = sector / FAT_WINDOW * FAT_WINDOW;
        if self.fat_cache_lba != Some(window) {
            let n = FAT_WINDOW.min(self.fat_sectors - window);
            let lba = self.start + self.fat_start + window;
            self.dev
                .read(lba, &mut self.fat_cache[..n as usize * SECTOR])
                .map_err(|e| format!("reading the FAT: {e}"))?;
            self.fat_cache_lba = Some(window);
        }
        let at = (byte - window * SECTOR as u64) as usize;
        let (value, eoc, badc) = if width == 4 {
            (
                le32(&self.fat_cache, at) & 0x0FFF_FFFF,
                0x0FFF_FFF8,
                0x0FFF_FFF7,
            )
        } else {
            (le16(&self.fat_cache, at) as u32, 0xFFF8, 0xFFF7)
        };
        if value >= eoc {
            Ok(None)
        } else if value == badc {
            Err(format!("the FAT marks cluster {c}'s successor as bad"))
        } else if value == 0 {
            Err(format!(
                "corrupt FAT: cluster {c} is in a chain but marked free"
            ))
        } else if !self.valid_cluster(value) {
            Err(format!(
                "corrupt FAT: cluster {c} links to cluster {value}, outside 2..{}",
                self.clusters + 2
            ))
        } else {
            Ok(Some(value))
        }
    }

    /// The clusters of a chain, as (first cluster, count) runs of contiguous clusters.
    /// `limit`: stop after this many clusters (a file needs no more); None: to the end (a
    /// directory), refusing chains longer than the volume.
    fn runs(&mut self, first: u32, limit: Option<u64>) -> Result<Vec<(u32, u64)>, String> {
        let mut runs: Vec<(u32, u64)> = Vec::new();
        if !self.valid_cluster(first) {
            return Err(format!(
                "corrupt directory entry: first cluster {first} outside 2..{}",
                self.clusters + 2
            ));
        }
        let mut c = first;
        let mut count = 0u64;
        loop {
            match runs.last_mut() {
                Some((start, n)) if *start as u64 + *n == c as u64 => *n += 1,
                _ => runs.push((c, 1)),
            }
            count += 1;
            if limit == Some(count) {
                return Ok(runs);
            }
            if count > self.clusters as u64 {
                return Err(format!("corrupt FAT: the chain from cluster {first} loops"));
            }
            match self.next_cluster(c)? {
                Some(n) => c = n,
                None if limit.is_none() => return Ok(runs),
                None => {
                    return Err(format!(
                        "corrupt FAT: the chain from cluster {first} ends after {count} \
                         clusters, the file needs {}",
                        limit.unwrap_or(0)
                    ))
                }
            }
        }
    }

    fn read_dir(&mut self, dir: &Entry) -> Result<Vec<u8>, String> {
        if dir.first_cluster == 0 && self.fat_type == FatType::Fat16 {
            let mut buf = vec![0u8; self.root_dir_sectors as usize * SECTOR];
            self.dev
                .read(self.start + self.root_dir_start, &mut buf)
                .map_err(|e| format!("reading the root directory: {e}"))?;
            return Ok(buf);
        }
        let runs = self.runs(dir.first_cluster, None)?;
        let total: u64 = runs.iter().map(|r| r.1).sum();
        let mut buf = vec![0u8; (total * self.cluster_bytes()) as usize];
        let mut at = 0usize;
        for (c, n) in runs {
            let len = (n * self.cluster_bytes()) as usize;
            self.dev
                .read(self.cluster_lba(c), &mut buf[at..at + len])
                .map_err(|e| format!("reading a directory: {e}"))?;
            at += len;
        }
        Ok(buf)
    }

    /// The root directory.
    pub fn root(&self) -> Entry {
        Entry {
            first_cluster: self.root_cluster,
            size: 0,
            is_dir: true,
        }
    }

    /// The entries of a directory: (name, entry), long names where present, `.`/`..`, volume
    /// labels and deleted entries left out.
    pub fn list(&mut self, dir: &Entry) -> Result<Vec<(String, Entry)>, String> {
        let raw = self.read_dir(dir)?;
        let mut out = Vec::new();
        let mut lfn: Vec<u16> = Vec::new();
        let mut lfn_sum: Option<u8> = None;
        let mut lfn_next: u8 = 0;
        for e in raw.chunks_exact(32) {
            if e[0] == 0 {
                break;
            }
            if e[0] == 0xE5 {
                lfn_sum = None;
                continue;
            }
            let attr = e[11];
            if attr & 0x3F == 0x0F {
                // A long-name entry; they come last-part first (§7).
                let ord = e[0] & 0x3F;
                if e[0] & 0x40 != 0 {
                    lfn = vec![0xFFFF; ord as usize * 13];
                    lfn_sum = Some(e[13]);
                } else if lfn_sum != Some(e[13]) || ord != lfn_next {
                    lfn_sum = None;
                }
                if lfn_sum.is_some() && ord >= 1 && (ord as usize) * 13 <= lfn.len() {
                    let base = (ord as usize - 1) * 13;
                    let offs = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
                    for (i, &o) in offs.iter().enumerate() {
                        lfn[base + i] = le16(e, o);
                    }
                    lfn_next = ord - 1;
                } else {
                    lfn_sum = None;
                }
                continue;
            }
            let raw_name: [u8; 11] = e[..11].try_into().unwrap_or([0; 11]);
            let long = match lfn_sum.take() {
                Some(sum) if lfn_next == 0 && sum == short_name_checksum(&raw_name) => {
                    let end = lfn.iter().position(|&u| u == 0 || u == 0xFFFF);
                    Some(String::from_utf16_lossy(&lfn[..end.unwrap_or(lfn.len())]))
                }
                _ => None,
            };
            if attr & 0x08 != 0 {
                continue; // volume label
            }
            let name = long.unwrap_or_else(|| short_name_text(&raw_name));
            if name == "." || name == ".." {
                continue;
            }
            let cluster = (le16(e, 20) as u32) << 16 | le16(e, 26) as u32;
            out.push((
                name,
                Entry {
                    first_cluster: cluster,
                    size: le32(e, 28),
                    is_dir: attr & 0x10 != 0,
                },
            ));
        }
        Ok(out)
    }

    /// Finds a file or directory by its `/`-separated path (case-insensitive, long or 8.3
    /// names).
    pub fn find(&mut self, path: &str) -> Result<Entry, String> {
        let mut cur = self.root();
        let mut walked = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_dir {
                return Err(format!("{path}: {walked} is a file, not a directory"));
            }
            let entries = self
                .list(&cur)
                .map_err(|e| format!("{path}: in directory /{walked}: {e}"))?;
            walked.push_str(part);
            cur = match entries.into_iter().find(|(n, _)| names_equal(n, part)) {
                Some((_, e)) => e,
                None => return Err(format!("{path}: not found (no /{walked})")),
            };
            walked.push('/');
        }
        Ok(cur)
    }

    /// Reads a whole file into `dest` (at least `file.size` bytes; if it is at least the size
    /// rounded up to 512 bytes, the tail sector is read in place, else through a small buffer).
    pub fn read(&mut self, file: &Entry, dest: &mut [u8]) -> Result<(), String> {
        let size = file.size as u64;
        if (dest.len() as u64) < size {
            return Err(format!(
                "buffer of {} bytes for a {size}-byte file",
                dest.len()
            ));
        }
        if size == 0 {
            return Ok(());
        }
        let cb = self.cluster_bytes();
        let runs = self.runs(file.first_cluster, Some(size.div_ceil(cb)))?;
        let mut at = 0u64;
        for (c, n) in runs {
            let run_bytes = (n * cb).min(size - at);
            let whole = if (dest.len() as u64) >= (at + run_bytes).next_multiple_of(512) {
                run_bytes.next_multiple_of(512)
            } else {
                run_bytes / 512 * 512
            };
            let lba = self.cluster_lba(c);
            if whole > 0 {
                self.dev
                    .read(lba, &mut dest[at as usize..(at + whole) as usize])?;
            }
            if whole < run_bytes {
                let mut tail = [0u8; SECTOR];
                self.dev.read(lba + whole / 512, &mut tail)?;
                let rest = (run_bytes - whole) as usize;
                dest[(at + whole) as usize..(at + whole) as usize + rest]
                    .copy_from_slice(&tail[..rest]);
            }
            at += run_bytes;
        }
        Ok(())
    }

    /// Finds the file at `path` and reads it into pages from `allocate(bytes)` (a physical,
    /// identity-mapped address of at least `bytes`, contents undefined): the read overwrites all
    /// but the tail after the file's end, which is zeroed, so the pages are not zeroed twice.
    /// Refuses directories and files larger than `limit`. Returns (address, size in bytes).
    /// Both loaders read their files this way.
    pub fn read_file_to_pages<E: core::fmt::Display>(
        &mut self,
        path: &str,
        limit: u64,
        allocate: impl FnOnce(u64) -> Result<u64, E>,
    ) -> Result<(u64, u64), String> {
        let entry = self.find(path)?;
        if entry.is_dir {
            return Err(format!("{path}: is a directory, not a file"));
        }
        let size = u64::from(entry.size);
        if size > limit {
            return Err(format!(
                "{path}: {size} bytes, more than the {limit} allowed"
            ));
        }
        let room = size.max(1).next_multiple_of(crate::PAGE_SIZE);
        let phys =
            allocate(room).map_err(|e| format!("{path}: no memory for {size} bytes: {e}"))?;
        // SAFETY: `allocate` returned `room` bytes of identity-mapped memory for us alone.
        let dest = unsafe { core::slice::from_raw_parts_mut(phys as *mut u8, room as usize) };
        self.read(&entry, dest)
            .map_err(|e| format!("{path}: {e}"))?;
        dest[size as usize..].fill(0);
        Ok((phys, size))
    }
}

/// The GPT partition type of an EFI system partition, as stored on disk (mixed-endian
/// C12A7328-F81F-11D2-BA4B-00A0C93EC93B; UEFI 2.10 §5.3.3).
pub const ESP_TYPE_GUID: [u8; 16] = [
    0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
];

/// Finds the first EFI system partition in the GPT of `dev` (UEFI 2.10 §5.3.2): its first LBA.
pub fn find_esp<D: BlockDevice>(dev: &mut D) -> Result<u64, String> {
    let mut hdr = [0u8; SECTOR];
    dev.read(1, &mut hdr)
        .map_err(|e| format!("GPT header: {e}"))?;
    if &hdr[..8] != b"EFI PART" {
        return Err("no GPT header at LBA 1 (signature \"EFI PART\" missing)".into());
    }
    let entries_lba = u64::from_le_bytes(hdr[72..80].try_into().unwrap_or_default());
    let count = le32(&hdr, 80) as u64;
    let size = le32(&hdr, 84) as u64;
    if !(128..=4096).contains(&size) || count > 1024 {
        return Err(format!(
            "GPT header: {count} entries of {size} bytes is not plausible"
        ));
    }
    let sectors = (count * size).div_ceil(SECTOR as u64);
    let mut table = vec![0u8; (sectors as usize) * SECTOR];
    dev.read(entries_lba, &mut table)
        .map_err(|e| format!("GPT entries: {e}"))?;
    for i in 0..count as usize {
        let e = &table[i * size as usize..(i + 1) * size as usize];
        if e[..16] == ESP_TYPE_GUID {
            return Ok(u64::from_le_bytes(e[32..40].try_into().unwrap_or_default()));
        }
    }
    Err("no EFI system partition in the GPT".into())
}

#[cfg(test)]
mod tests;
