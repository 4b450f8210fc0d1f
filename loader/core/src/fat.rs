//! A read-only FAT16/FAT32 reader with long file names and subdirectories (Microsoft "FAT: General
//! Overview of On-Disk Format" 1.03: §3 BPB, §3.5 FAT type, §4 FAT, §6 directory entries,
//! §7 long names): how both loaders read the ESP, the BIOS loader through INT 13h, the UEFI
//! loader through the firmware's Block I/O protocol (docs/loader.md, "Reading files").
//!
//! The volume reads 512-byte sectors through a [`BlockDevice`]; file data goes straight into the
//! caller's buffer in runs of contiguous clusters, so one large file takes few large transfers.
//! Every inconsistency (bad BPB, cluster out of range, free or bad cluster inside a chain, a chain
//! shorter or longer than the file, a loop of any length, a directory longer than the spec allows)
//! is an error naming what and where: the loader never boots a kernel it read from a damaged file
//! system. Chains are walked in constant memory (Brent's cycle detection) and directories are read
//! a few sectors at a time, so a damaged volume cannot exhaust the loader's heap.

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

    /// The number of sectors on the device, if it can tell (where the backup GPT is).
    fn sectors(&mut self) -> Option<u64> {
        None
    }
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

/// Sectors of a directory the reader reads at once (into a buffer on the stack).
const DIR_CHUNK: usize = 8;

/// The most entries a directory may have (FAT spec §6: 65,536 32-byte entries, 2 MiB).
const MAX_DIR_ENTRIES: u64 = 65_536;

/// A walk along a cluster chain (see [`Volume::next_run`]).
struct Chain {
    /// The chain's first cluster (for messages).
    first: u32,
    /// The next cluster to visit; None past the end of the chain.
    next: Option<u32>,
    /// Brent's cycle detection: the cluster the walk compares against,
    tortoise: u32,
    /// the steps until it moves on,
    power: u64,
    /// and the steps since it last did.
    lam: u64,
}

/// Turns a directory's 32-byte entries into (name, entry), long names joined across entries
/// (FAT spec §7), in fixed memory.
struct DirNames {
    lfn: [u16; 63 * 13],
    lfn_len: usize,
    lfn_sum: Option<u8>,
    lfn_next: u8,
}

impl DirNames {
    fn new() -> Self {
        Self {
            lfn: [0xFFFF; 63 * 13],
            lfn_len: 0,
            lfn_sum: None,
            lfn_next: 0,
        }
    }

    /// One 32-byte entry: None at the end of the directory; Some(None) for an entry that names
    /// nothing by itself (long-name part, deleted, volume label, `.`, `..`); Some(Some(entry))
    /// for a file or directory, whose name is then in `name`.
    fn entry(&mut self, e: &[u8], name: &mut String) -> Option<Option<Entry>> {
        if e[0] == 0 {
            return None;
        }
        if e[0] == 0xE5 {
            self.lfn_sum = None;
            return Some(None);
        }
        let attr = e[11];
        if attr & 0x3F == 0x0F {
            // A long-name entry; they come last-part first (§7).
            let ord = e[0] & 0x3F;
            if e[0] & 0x40 != 0 {
                self.lfn_len = ord as usize * 13;
                self.lfn[..self.lfn_len].fill(0xFFFF);
                self.lfn_sum = Some(e[13]);
            } else if self.lfn_sum != Some(e[13]) || ord != self.lfn_next {
                self.lfn_sum = None;
            }
            if self.lfn_sum.is_some() && ord >= 1 && (ord as usize) * 13 <= self.lfn_len {
                let base = (ord as usize - 1) * 13;
                let offs = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
                for (i, &o) in offs.iter().enumerate() {
                    self.lfn[base + i] = le16(e, o);
                }
                self.lfn_next = ord - 1;
            } else {
                self.lfn_sum = None;
            }
            return Some(None);
        }
        let raw_name: [u8; 11] = e[..11].try_into().unwrap_or([0; 11]);
        let long = match self.lfn_sum.take() {
            Some(sum) if self.lfn_next == 0 && sum == short_name_checksum(&raw_name) => {
                let lfn = &self.lfn[..self.lfn_len];
                let end = lfn.iter().position(|&u| u == 0 || u == 0xFFFF);
                Some(&lfn[..end.unwrap_or(lfn.len())])
            }
            _ => None,
        };
        if attr & 0x08 != 0 {
            return Some(None); // volume label
        }
        name.clear();
        match long {
            Some(units) => name.extend(
                char::decode_utf16(units.iter().copied())
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
            ),
            None => short_name_text(&raw_name, name),
        }
        if name == "." || name == ".." {
            return Some(None);
        }
        let cluster = (le16(e, 20) as u32) << 16 | le16(e, 26) as u32;
        Some(Some(Entry {
            first_cluster: cluster,
            size: le32(e, 28),
            is_dir: attr & 0x10 != 0,
        }))
    }
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

/// "NAME    EXT" -> "NAME.EXT" (FAT spec §6.1), appended to `out` (no allocation of its own:
/// the loader's heap never frees).
fn short_name_text(raw: &[u8; 11], out: &mut String) {
    let trimmed = |part: &[u8]| part.len() - part.iter().rev().take_while(|&&c| c == b' ').count();
    let base = &raw[..trimmed(&raw[..8])];
    let ext = &raw[8..8 + trimmed(&raw[8..])];
    for (i, &c) in base.iter().enumerate() {
        // 0x05 stands for a leading 0xE5 (§6.1).
        out.push(if i == 0 && c == 0x05 {
            '\u{e5}'
        } else {
            c as char
        });
    }
    if !ext.is_empty() {
        out.push('.');
        out.extend(ext.iter().map(|&c| c as char));
    }
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

    /// Starts a walk along the chain from `first` (a directory entry's first cluster).
    fn chain(&self, first: u32) -> Result<Chain, String> {
        if !self.valid_cluster(first) {
            return Err(format!(
                "corrupt directory entry: first cluster {first} outside 2..{}",
                self.clusters + 2
            ));
        }
        Ok(Chain {
            first,
            next: Some(first),
            tortoise: first,
            power: 1,
            lam: 0,
        })
    }

    /// The next run of contiguous clusters of `chain`, at most `max` clusters long (None at
    /// the end of the chain). Walks in constant memory; a loop of any length is an error within
    /// about twice the chain's length (Brent's cycle detection: the "tortoise" is the cluster
    /// met at each power of two, and the loop is found when a later cluster equals it).
    fn next_run(&mut self, chain: &mut Chain, max: u64) -> Result<Option<(u32, u64)>, String> {
        let Some(start) = chain.next else {
            return Ok(None);
        };
        let mut n = 0u64;
        loop {
            let c = start + n as u32;
            chain.next = self.next_cluster(c)?;
            n += 1;
            if let Some(next) = chain.next {
                if next == chain.tortoise {
                    return Err(format!(
                        "corrupt FAT: the chain from cluster {} loops (cluster {next} comes again)",
                        chain.first
                    ));
                }
                chain.lam += 1;
                if chain.lam == chain.power {
                    chain.tortoise = next;
                    chain.power *= 2;
                    chain.lam = 0;
                }
            }
            if n == max || chain.next != Some(c.wrapping_add(1)) {
                return Ok(Some((start, n)));
            }
        }
    }

    /// Calls `visit` with each 32-byte entry of a directory, in order, until it returns false.
    /// Reads the directory DIR_CHUNK sectors at a time into one buffer, so memory stays bounded
    /// however long the directory (or its looping chain) is; a directory longer than the FAT
    /// spec's 65,536 entries (§6) is corrupt.
    fn scan_dir(
        &mut self,
        dir: &Entry,
        mut visit: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), String> {
        if dir.first_cluster == 0 && self.fat_type == FatType::Fat16 {
            let lba = self.start + self.root_dir_start;
            self.scan_sectors(lba, self.root_dir_sectors, &mut visit)
                .map_err(|e| format!("reading the root directory: {e}"))?;
            return Ok(());
        }
        // The whole chain first (FAT reads only): a loop or an overlong chain is corrupt even
        // where the entries end before it.
        let max_clusters = (MAX_DIR_ENTRIES * 32).div_ceil(self.cluster_bytes());
        let mut chain = self.chain(dir.first_cluster)?;
        let mut clusters = 0u64;
        while let Some((_, n)) = self.next_run(&mut chain, u64::MAX)? {
            clusters += n;
            if clusters > max_clusters {
                return Err(format!(
                    "corrupt FAT: the directory at cluster {} is longer than {MAX_DIR_ENTRIES} \
                     entries",
                    dir.first_cluster
                ));
            }
        }
        let mut chain = self.chain(dir.first_cluster)?;
        while let Some((c, n)) = self.next_run(&mut chain, u64::MAX)? {
            let more = self
                .scan_sectors(self.cluster_lba(c), n * self.sec_per_clus, &mut visit)
                .map_err(|e| format!("reading a directory: {e}"))?;
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// Reads `count` sectors from `lba`, DIR_CHUNK at a time into a stack buffer, and calls
    /// `visit` with each 32-byte entry; false as soon as it does.
    fn scan_sectors(
        &mut self,
        mut lba: u64,
        count: u64,
        visit: &mut impl FnMut(&[u8]) -> bool,
    ) -> Result<bool, String> {
        let mut buf = [0u8; DIR_CHUNK * SECTOR];
        let end = lba + count;
        while lba < end {
            let n = (end - lba).min(DIR_CHUNK as u64);
            let part = &mut buf[..n as usize * SECTOR];
            self.dev.read(lba, part)?;
            if !part.chunks_exact(32).all(&mut *visit) {
                return Ok(false);
            }
            lba += n;
        }
        Ok(true)
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
        let mut out = Vec::new();
        self.each_entry(dir, |name, e| {
            out.push((String::from(name), e));
            true
        })?;
        Ok(out)
    }

    /// Calls `visit` with each entry of a directory (as [`Volume::list`] names them) until it
    /// returns false; nothing is kept, so a directory of any length costs no heap.
    fn each_entry(
        &mut self,
        dir: &Entry,
        mut visit: impl FnMut(&str, Entry) -> bool,
    ) -> Result<(), String> {
        let mut names = DirNames::new();
        let mut name = String::new();
        self.scan_dir(dir, |e| match names.entry(e, &mut name) {
            Some(Some(entry)) => visit(&name, entry),
            Some(None) => true,
            None => false,
        })
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
            let mut found = None;
            self.each_entry(&cur, |name, e| {
                if names_equal(name, part) {
                    found = Some(e);
                }
                found.is_none()
            })
            .map_err(|e| format!("{path}: in directory /{walked}: {e}"))?;
            walked.push_str(part);
            cur = found.ok_or_else(|| format!("{path}: not found (no /{walked})"))?;
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
        let need = size.div_ceil(cb);
        let first = file.first_cluster;
        let mut chain = self.chain(first)?;
        let (mut at, mut got) = (0u64, 0u64);
        while got < need {
            let Some((c, n)) = self.next_run(&mut chain, need - got)? else {
                return Err(format!(
                    "corrupt FAT: the chain from cluster {first} ends after {got} clusters, the \
                     file needs {need}"
                ));
            };
            got += n;
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
        if let Some(next) = chain.next {
            // Walk on (the FAT only) to tell a loop from a chain that is merely too long.
            let mut total = got;
            while let Some((_, n)) = self.next_run(&mut chain, u64::MAX)? {
                total += n;
            }
            return Err(format!(
                "corrupt FAT: the chain from cluster {first} goes on (to cluster {next}) after \
                 the {need} clusters the file needs, {total} in all"
            ));
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

#[cfg(test)]
pub(crate) mod tests;
