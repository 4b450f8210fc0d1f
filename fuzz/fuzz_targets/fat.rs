//! The FAT reader (loader/core/src/fat.rs) on a volume made of the input: mount, find and read
//! the files the loader reads, list the directories on the way. Any result is fine; a panic, a
//! hang or unbounded memory is a bug.
#![no_main]

use hvboot_fuzz::InputDisk;
use hvboot_loader_core::fat::Volume;
use libfuzzer_sys::fuzz_target;

/// The volume is this many sectors (8 MiB), the input its first bytes.
const SECTORS: u64 = 16384;
/// Files larger than this are not read (their bytes would be zeros past the input anyway).
const MAX_READ: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let disk = InputDisk { data, sectors: SECTORS };
    let Ok(mut v) = Volume::mount(disk, 0) else {
        return;
    };
    let _ = v.list(&v.root());
    for path in ["/hvboot/hvboot.cfg", "/hvboot/kernel.elf", "/hvboot/modules/x.bin", "/EFI/BOOT"] {
        let Ok(e) = v.find(path) else { continue };
        if e.is_dir {
            let _ = v.list(&e);
        } else if e.size <= MAX_READ {
            let mut buf = vec![0u8; e.size as usize];
            let _ = v.read(&e, &mut buf);
        }
    }
});
