//! [`BootInfoBuilder`]: lays a boot-information block out in a caller-given
//! buffer. The loader uses it; kernels only read blocks (see [`crate::info`]).
//!
//! Layout: the fixed [`BootInfo`] header at offset 0, then the pushed data in
//! push order. Strings are written with a NUL after them; arrays start at an
//! offset that is a multiple of 8 (the gap is zero-filled). The header is
//! written last, by [`BootInfoBuilder::finish`], which fills in `magic`,
//! `version`, `size` and `header_size`.
//!
//! ```
//! use hvboot_api::{BootInfo, BootInfoBuilder, MemoryKind, MemoryRegion};
//!
//! let mut storage = [0u64; 64]; // 8-byte aligned, 512 bytes
//! // SAFETY: a u64 array may be viewed as bytes.
//! let buf: &mut [u8] =
//!     unsafe { core::slice::from_raw_parts_mut(storage.as_mut_ptr().cast(), 512) };
//! let mut b = BootInfoBuilder::new(buf);
//! let cmdline = b.push_str("console=ttyS0").unwrap();
//! let map = [MemoryRegion { base: 0, length: 0x9f000, kind: MemoryKind::USABLE, reserved: 0 }];
//! let memory_map = b.push_array(&map).unwrap();
//! let size = b.finish(BootInfo { cmdline, memory_map, ..Default::default() }).unwrap();
//!
//! let bytes: &[u8] = unsafe { core::slice::from_raw_parts(storage.as_ptr().cast(), size) };
//! let info = BootInfo::from_bytes(bytes).unwrap();
//! assert_eq!(info.cmdline(), "console=ttyS0");
//! assert_eq!(info.memory_map(), &map);
//! ```

use core::fmt;
use core::mem::size_of;

use crate::info::HEADER_SIZE;
use crate::protocol::{
    ArrayRef, BootInfo, CpuEntry, CpuMailbox, CpuStart, FirmwareMemoryEntry, Framebuffer,
    GuestRequest, KernelRequest, MemoryRegion, Module, PlacedExtent, StrRef, VirtReport,
    BOOT_INFO_MAGIC, PROTOCOL_VERSION,
};

/// Plain data: a type with no padding bytes for which every bit pattern is a
/// valid value, so it can be copied to and from raw bytes.
///
/// # Safety
/// Implement only for `Copy` types that have no padding (not even at the end)
/// and no invalid bit patterns (no `bool`, `char`, enums, references, ...).
pub unsafe trait Plain: Copy {}

// SAFETY: integers have no padding and no invalid values.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: the generated layouts have no implicit padding (layout.py rejects it;
// protocol.rs asserts every offset and size) and consist of integers and
// integer newtypes only.
unsafe impl Plain for MemoryRegion {}
// SAFETY: as above.
unsafe impl Plain for Module {}
// SAFETY: as above.
unsafe impl Plain for Framebuffer {}
// SAFETY: as above.
unsafe impl Plain for StrRef {}
// SAFETY: as above.
unsafe impl Plain for ArrayRef {}
// SAFETY: as above.
unsafe impl Plain for BootInfo {}
// SAFETY: as above.
unsafe impl Plain for VirtReport {}
// SAFETY: as above.
unsafe impl Plain for CpuEntry {}
// SAFETY: as above.
unsafe impl Plain for CpuStart {}
// SAFETY: as above.
unsafe impl Plain for CpuMailbox {}
// SAFETY: as above.
unsafe impl Plain for FirmwareMemoryEntry {}
// SAFETY: as above.
unsafe impl Plain for PlacedExtent {}
// SAFETY: as above.
unsafe impl Plain for GuestRequest {}
// SAFETY: as above.
unsafe impl Plain for KernelRequest {}

/// Why a block cannot be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The buffer is too small.
    OutOfSpace {
        /// Bytes the block needs so far.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// An offset, length or count does not fit the protocol's `u32` fields.
    TooLarge,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfSpace { needed, available } => {
                write!(f, "boot info needs {needed} bytes, buffer has {available}")
            }
            Self::TooLarge => f.write_str("boot info larger than 4 GiB"),
        }
    }
}

/// Lays a boot-information block out in a byte buffer (see the module
/// documentation). The buffer need not be aligned for the builder, but a
/// kernel reads the arrays in place, so the loader should hand over a block
/// that starts 8-byte aligned (a page, in practice).
#[derive(Debug)]
pub struct BootInfoBuilder<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> BootInfoBuilder<'a> {
    /// A builder that writes into `buf`; data goes after the header's bytes.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            pos: HEADER_SIZE,
        }
    }

    /// Bytes used so far, header included (the block's `size` if finished now).
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Always false: the header is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reserves `len` bytes at the current position, aligned to `align`
    /// (zero-filling the gap), and returns their offset.
    fn reserve(&mut self, align: usize, len: usize) -> Result<usize, BuildError> {
        let start = self
            .pos
            .checked_next_multiple_of(align)
            .ok_or(BuildError::TooLarge)?;
        let end = start.checked_add(len).ok_or(BuildError::TooLarge)?;
        if end > u32::MAX as usize {
            return Err(BuildError::TooLarge);
        }
        if end > self.buf.len() {
            return Err(BuildError::OutOfSpace {
                needed: end,
                available: self.buf.len(),
            });
        }
        self.buf[self.pos..start].fill(0);
        self.pos = end;
        Ok(start)
    }

    /// Appends `s` and a NUL; returns its reference (`len` without the NUL).
    pub fn push_str(&mut self, s: &str) -> Result<StrRef, BuildError> {
        let len = u32::try_from(s.len()).map_err(|_| BuildError::TooLarge)?;
        let total = s.len().checked_add(1).ok_or(BuildError::TooLarge)?;
        let offset = self.reserve(1, total)?;
        self.buf[offset..offset + s.len()].copy_from_slice(s.as_bytes());
        self.buf[offset + s.len()] = 0;
        Ok(StrRef {
            offset: offset as u32,
            len,
        })
    }

    /// Appends `items` at the next multiple of 8; returns its reference.
    pub fn push_array<T: Plain>(&mut self, items: &[T]) -> Result<ArrayRef, BuildError> {
        let count = u32::try_from(items.len()).map_err(|_| BuildError::TooLarge)?;
        let bytes = core::mem::size_of_val(items);
        let offset = self.reserve(8, bytes)?;
        // SAFETY: T: Plain has no padding, so all `bytes` bytes of the slice are
        // initialised and may be viewed as u8.
        let src = unsafe { core::slice::from_raw_parts(items.as_ptr().cast::<u8>(), bytes) };
        self.buf[offset..offset + bytes].copy_from_slice(src);
        Ok(ArrayRef {
            offset: offset as u32,
            count,
        })
    }

    /// Writes the header: `header` with `magic`, `version`, `size` and
    /// `header_size` filled in. Returns the block's size in bytes.
    pub fn finish(self, mut header: BootInfo) -> Result<usize, BuildError> {
        if self.buf.len() < HEADER_SIZE {
            return Err(BuildError::OutOfSpace {
                needed: HEADER_SIZE,
                available: self.buf.len(),
            });
        }
        header.magic = BOOT_INFO_MAGIC;
        header.version = PROTOCOL_VERSION;
        header.size = self.pos as u32; // reserve() keeps pos <= u32::MAX
        header.header_size = HEADER_SIZE as u32;
        // SAFETY: BootInfo: Plain, so its bytes are initialised.
        let src = unsafe {
            core::slice::from_raw_parts(
                (&header as *const BootInfo).cast::<u8>(),
                size_of::<BootInfo>(),
            )
        };
        self.buf[..HEADER_SIZE].copy_from_slice(src);
        Ok(self.pos)
    }
}
