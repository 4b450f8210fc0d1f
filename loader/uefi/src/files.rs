//! Reading the loader's files from the volume it was loaded from, through the firmware's Simple
//! File System protocol (UEFI 2.10 §13.4, §13.5).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use uefi::boot;
use uefi::proto::media::file::{Directory, File, FileAttribute, FileInfo, FileMode, RegularFile};
use uefi::CString16;

use crate::memory;

pub struct Volume {
    root: Directory,
}

impl Volume {
    /// The file system on the partition this application was loaded from.
    pub fn boot_volume() -> Result<Self, String> {
        let mut fs = boot::get_image_file_system(boot::image_handle()).map_err(|e| {
            format!(
                "cannot open the boot volume's file system: {:?}",
                e.status()
            )
        })?;
        let root = fs.open_volume().map_err(|e| {
            format!(
                "cannot open the boot volume's root directory: {:?}",
                e.status()
            )
        })?;
        Ok(Self { root })
    }

    fn open(&mut self, path: &str) -> Result<RegularFile, String> {
        // The config uses '/' separators; UEFI paths use '\' (UEFI 2.10 §13.5.1).
        let native: String = path
            .chars()
            .map(|c| if c == '/' { '\\' } else { c })
            .collect();
        let name = CString16::try_from(native.as_str())
            .map_err(|_| format!("{path}: the path cannot be expressed in UCS-2"))?;
        let handle = self
            .root
            .open(&name, FileMode::Read, FileAttribute::empty())
            .map_err(|e| format!("{path}: cannot open the file: {:?}", e.status()))?;
        handle
            .into_regular_file()
            .ok_or_else(|| format!("{path}: is a directory, not a file"))
    }

    fn size(path: &str, file: &mut RegularFile) -> Result<u64, String> {
        let info: Box<FileInfo> = file
            .get_boxed_info()
            .map_err(|e| format!("{path}: cannot read the file's size: {:?}", e.status()))?;
        Ok(info.file_size())
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

    /// A file into fresh pages of the given kind, read with one large transfer.
    /// Returns (physical address, size in bytes).
    pub fn read_to_pages(
        &mut self,
        path: &str,
        kind: u32,
        limit: u64,
    ) -> Result<(u64, u64), String> {
        let mut file = self.open(path)?;
        let size = Self::size(path, &mut file)?;
        if size > limit {
            return Err(format!(
                "{path}: {size} bytes, more than the {limit} allowed"
            ));
        }
        let phys = memory::allocate(kind, size.max(1), None)
            .map_err(|e| format!("{path}: no memory for {size} bytes: {e}"))?;
        // SAFETY: the pages were just allocated for us and are identity-mapped by the firmware.
        let dest = unsafe { core::slice::from_raw_parts_mut(phys as *mut u8, size as usize) };
        Self::read_all(path, &mut file, dest)?;
        Ok((phys, size))
    }
}
