//! Reading the loader's files from the volume it was loaded from.
//!
//! Normally with the loader core's own FAT reader (`loader/core/src/fat.rs`, the BIOS loader's
//! too) over the firmware's Block I/O protocol (UEFI 2.10 §13.9) on the loaded image's device
//! handle: that handle is the ESP partition, whose LBA 0 is the partition's first sector. Each run
//! of contiguous clusters of a file goes straight into the destination pages with one ReadBlocks
//! call, which is as fast as the firmware can read (docs/loader.md, "Reading files").
//!
//! A ReadBlocks call that fails is tried again, after a Reset, up to three times before its error
//! (LBA, block count, status) is reported.
//!
//! Block I/O is opened with GET_PROTOCOL (not exclusively), so the firmware's own FAT driver keeps
//! its hold on the partition; the loader only reads, so there is nothing to keep coherent.
//!
//! The Simple File System protocol (§13.4, §13.5) remains as a fallback for a boot device the FAT
//! reader cannot use: no Block I/O on it, blocks other than 512 bytes (a 4Kn disk, a CD's El
//! Torito image), or a volume the reader refuses to mount (FAT12).
//!
//! A loader booted from the network (its device has the PXE Base Code protocol, checked before
//! the file-system fallback: iPXE also gives it a file system, holding only the boot file)
//! reads its files over TFTP (net.rs).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use hvboot_api::MemoryKind;
use hvboot_loader_core::fat::{self, BlockDevice, FatType, SECTOR};
use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol};
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::block::BlockIO;
use uefi::proto::media::file::{Directory, File, FileAttribute, FileInfo, FileMode, RegularFile};
use uefi::proto::ProtocolPointer;
use uefi::{CString16, Status};

use crate::memory::{self, PAGE};
use crate::net::Tftp;

/// The bounce buffer's size, for reads into buffers that miss the medium's IoAlign (only the FAT
/// reader's own small metadata buffers can: file data goes into page-aligned memory).
const BOUNCE_BYTES: usize = 64 << 10;

/// How many times a failed ReadBlocks is tried again before the error is reported.
const RETRIES: u32 = 3;

/// The loaded image's partition through Block I/O, as the FAT reader's [`BlockDevice`].
pub struct BlockDev {
    io: ScopedProtocol<BlockIO>,
    media_id: u32,
    /// The buffer alignment ReadBlocks needs (IoAlign; 1 when it is 0 or 1).
    align: u64,
    /// BOUNCE_BYTES of loader memory aligned to `align` (and to a page).
    bounce: u64,
}

/// Protocol `P` (`name` in messages) on the device this application was loaded from, opened
/// without exclusivity: the loader only reads through it, and the firmware neither uninstalls
/// nor reinstalls a boot device's protocols while its boot application runs.
pub(crate) fn open_on_boot_device<P: ProtocolPointer + ?Sized>(
    name: &str,
) -> Result<ScopedProtocol<P>, String> {
    let device = boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle())
        .map_err(|e| format!("no loaded-image protocol: {:?}", e.status()))?
        .device()
        .ok_or("the loaded image names no device")?;
    let params = OpenProtocolParams {
        handle: device,
        agent: boot::image_handle(),
        controller: None,
    };
    // SAFETY: see above; nothing else of ours opens the protocol exclusively.
    unsafe { boot::open_protocol::<P>(params, OpenProtocolAttributes::GetProtocol) }
        .map_err(|e| format!("no {name} protocol: {:?}", e.status()))
}

impl BlockDev {
    /// Block I/O on the partition this application was loaded from, or why not.
    fn open() -> Result<Self, String> {
        let io = open_on_boot_device::<BlockIO>("Block I/O")?;
        let media = io.media();
        if !media.is_media_present() {
            return Err("no medium present".into());
        }
        if media.block_size() as usize != SECTOR {
            return Err(format!(
                "{}-byte blocks (the FAT reader needs {SECTOR})",
                media.block_size()
            ));
        }
        let align = u64::from(media.io_align()).max(1);
        if !align.is_power_of_two() {
            return Err(format!("IoAlign {align} is not a power of two"));
        }
        let bounce = memory::allocate_aligned_below(
            MemoryKind::LOADER_RECLAIMABLE.0,
            BOUNCE_BYTES as u64,
            align.max(PAGE),
            None,
        )
        .map_err(|e| format!("no memory for a {BOUNCE_BYTES}-byte bounce buffer: {e}"))?;
        Ok(Self {
            media_id: media.media_id(),
            io,
            align,
            bounce,
        })
    }

    /// One ReadBlocks call, tried again (after a Reset of the device) up to RETRIES times
    /// before its error is reported.
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let mut tries = 0;
        loop {
            let status = match self.io.read_blocks(self.media_id, lba, buf) {
                Ok(()) => return Ok(()),
                Err(e) => e.status(),
            };
            tries += 1;
            if tries > RETRIES || status == Status::MEDIA_CHANGED || status == Status::NO_MEDIA {
                return Err(format!(
                    "disk read error at LBA {lba} of the boot partition ({} blocks into {:#x}): \
                     {status:?}{}",
                    buf.len() / SECTOR,
                    buf.as_ptr() as u64,
                    if tries > 1 {
                        format!(" (tried {tries} times, resetting the device in between)")
                    } else {
                        String::new()
                    }
                ));
            }
            log::warn!(
                "disk read error at LBA {lba}: {status:?}; resetting Block I/O, try {}",
                tries + 1
            );
            // A failed reset leaves the next try to report the error.
            let _ = self.io.reset(false);
        }
    }
}

impl BlockDevice for BlockDev {
    /// One ReadBlocks call straight into `buf` when it meets IoAlign; through the bounce buffer,
    /// BOUNCE_BYTES at a time, when it does not.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        if buf.is_empty() {
            return Ok(());
        }
        if (buf.as_ptr() as u64).is_multiple_of(self.align) {
            return self.read_blocks(lba, buf);
        }
        let mut lba = lba;
        for chunk in buf.chunks_mut(BOUNCE_BYTES) {
            // SAFETY: the bounce buffer is ours, BOUNCE_BYTES long, identity-mapped, and no other
            // reference to it lives across this loop body.
            let bounce =
                unsafe { core::slice::from_raw_parts_mut(self.bounce as *mut u8, chunk.len()) };
            self.read_blocks(lba, bounce)?;
            chunk.copy_from_slice(bounce);
            lba += (chunk.len() / SECTOR) as u64;
        }
        Ok(())
    }
}

/// The boot volume, read by the FAT reader over Block I/O or, failing that, through the Simple
/// File System protocol.
pub enum Volume {
    /// The loader core's FAT reader on the partition's Block I/O.
    Fat(fat::Volume<BlockDev>),
    /// The firmware's file system driver (fallback).
    Firmware(Directory),
    /// TFTP through PXE Base Code, when the loader was booted from the network (net.rs).
    Net(Tftp),
}

impl Volume {
    /// The file system on the partition this application was loaded from, and a line saying how
    /// the loader reads it.
    pub fn boot_volume() -> Result<(Self, String), String> {
        let why = match BlockDev::open() {
            Ok(dev) => match fat::Volume::mount(dev, 0) {
                Ok(v) => {
                    let kind = match v.fat_type {
                        FatType::Fat16 => "FAT16",
                        FatType::Fat32 => "FAT32",
                    };
                    let line = format!(
                        "files: {kind} boot partition through Block I/O ({} bytes a cluster)",
                        v.cluster_bytes()
                    );
                    return Ok((Self::Fat(v), line));
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        // Booted from the network: the device is the interface, with PXE Base Code (and, under
        // iPXE, a file system holding only the boot file itself).
        let net = match Tftp::open() {
            Ok(net) => {
                let line = format!("files: over the network from {}", net.describe());
                return Ok((Self::Net(net), line));
            }
            Err(e) => e,
        };
        let mut fs = boot::get_image_file_system(boot::image_handle()).map_err(|e| {
            format!(
                "cannot open the boot volume: Block I/O: {why}; Simple File System: {:?}; \
                 network: {net}",
                e.status()
            )
        })?;
        let root = fs.open_volume().map_err(|e| {
            format!(
                "cannot open the boot volume's root directory: {:?}",
                e.status()
            )
        })?;
        let line = format!("files: through the firmware's file system (Block I/O: {why})");
        Ok((Self::Firmware(root), line))
    }

    /// A file into fresh pages of the given kind (the rest of its last page zeroed).
    /// Returns (physical address, size in bytes).
    pub fn read_to_pages(
        &mut self,
        path: &str,
        kind: u32,
        limit: u64,
    ) -> Result<(u64, u64), String> {
        match self {
            Self::Fat(v) => read_fat(v, path, kind, limit),
            Self::Firmware(root) => read_firmware(root, path, kind, limit),
            Self::Net(net) => net.read_to_pages(path, kind, limit),
        }
    }
}

pub(crate) fn too_large(path: &str, size: u64, limit: u64) -> Result<(), String> {
    if size > limit {
        return Err(format!(
            "{path}: {size} bytes, more than the {limit} allowed"
        ));
    }
    Ok(())
}

/// As the BIOS loader reads a file: find it, read each run of clusters into the pages in place.
fn read_fat(
    v: &mut fat::Volume<BlockDev>,
    path: &str,
    kind: u32,
    limit: u64,
) -> Result<(u64, u64), String> {
    v.read_file_to_pages(path, limit, |bytes| memory::allocate_untouched(kind, bytes))
}

/// Through the Simple File System protocol: open, size, one large Read.
fn read_firmware(
    root: &mut Directory,
    path: &str,
    kind: u32,
    limit: u64,
) -> Result<(u64, u64), String> {
    // The config uses '/' separators; UEFI paths use '\' (UEFI 2.10 §13.5.1).
    let native: String = path
        .chars()
        .map(|c| if c == '/' { '\\' } else { c })
        .collect();
    let name = CString16::try_from(native.as_str())
        .map_err(|_| format!("{path}: the path cannot be expressed in UCS-2"))?;
    let mut file = root
        .open(&name, FileMode::Read, FileAttribute::empty())
        .map_err(|e| format!("{path}: cannot open the file: {:?}", e.status()))?
        .into_regular_file()
        .ok_or_else(|| format!("{path}: is a directory, not a file"))?;
    let info: Box<FileInfo> = file
        .get_boxed_info()
        .map_err(|e| format!("{path}: cannot read the file's size: {:?}", e.status()))?;
    let size = info.file_size();
    too_large(path, size, limit)?;
    let phys = memory::allocate(kind, size.max(1), None)
        .map_err(|e| format!("{path}: no memory for {size} bytes: {e}"))?;
    // SAFETY: the pages were just allocated for us and are identity-mapped by the firmware.
    let dest = unsafe { core::slice::from_raw_parts_mut(phys as *mut u8, size as usize) };
    read_all(path, &mut file, dest)?;
    Ok((phys, size))
}

fn read_all(path: &str, file: &mut RegularFile, dest: &mut [u8]) -> Result<(), String> {
    let mut done = 0;
    while done < dest.len() {
        let n = file
            .read(&mut dest[done..])
            .map_err(|e| format!("{path}: read error at byte {done}: {:?}", e.status()))?;
        if n == 0 {
            return Err(format!(
                "{path}: the file ended after {done} of {} bytes",
                dest.len()
            ));
        }
        done += n;
    }
    Ok(())
}
