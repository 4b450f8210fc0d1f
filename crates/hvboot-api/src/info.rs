//! Safe, bounds-checked access to a boot-information block.
//!
//! A block is a [`BootInfo`] header followed, inside `size` bytes, by the
//! strings and arrays that its [`StrRef`]s and [`ArrayRef`]s point to (byte
//! offsets from the start of the header). Every accessor here checks each
//! reference against `size` (and alignment, and UTF-8) before it touches a
//! byte, so a malformed block yields errors or empty values, never a panic or
//! an out-of-bounds read.
//!
//! # Which `&BootInfo` the accessors may be called on
//!
//! The accessors read the bytes that follow `self` in memory, up to
//! `self.size` bytes from its start. So they must be called on the header
//! *where it sits at the start of its block*: the reference that
//! [`entry_point!`](crate::entry_point) hands the kernel, or one returned by
//! [`BootInfo::from_bytes`]. `BootInfo` is `Copy` (the layout is generated),
//! but a copy of the header elsewhere (`let copy = *info;`) has no block
//! behind it: do not call the accessors on a copy. `BootInfo::default()` is
//! harmless (its `size` is 0, so every accessor returns an empty value).
//!
//! # What a zero-length reference means
//!
//! A [`StrRef`] with `len == 0` is the empty string and an [`ArrayRef`] with
//! `count == 0` the empty array, whatever their `offset` (a loader may leave
//! them all zero). Non-empty ones must lie inside `header_size..size`; a
//! non-empty string must be valid UTF-8 and followed by a NUL byte inside the
//! block; an array must start at an offset that is a multiple of 8 and be
//! aligned for its element type in memory.

use core::fmt;
use core::mem::size_of;

use crate::builder::Plain;
use crate::protocol::{
    AcpiTables, ArrayRef, BootInfo, CpuEntry, CpuStart, FirmwareMemoryEntry, Framebuffer,
    MemoryKind, MemoryRegion, Module, PlacedExtent, StrRef, TscSource, TscStage, VirtFlags,
    VirtReport, BOOT_INFO_MAGIC, BOOT_INFO_V1_HEADER_SIZE, PROTOCOL_VERSION,
};

/// Bytes of the fixed header as this crate knows it (what [`BootInfoBuilder`]
/// writes).
///
/// [`BootInfoBuilder`]: crate::BootInfoBuilder
pub const HEADER_SIZE: usize = size_of::<BootInfo>();

/// The smallest `header_size` a block may have: the first version-1 header,
/// up to `tsc_handoff`. Fields that were appended later lie beyond it; in a
/// block whose `header_size` does not cover them they are *absent*, and the
/// accessors below ([`BootInfo::virt_report`], [`BootInfo::cpus`], ...) say so
/// (None or empty) instead of reading them.
pub const MIN_HEADER_SIZE: usize = BOOT_INFO_V1_HEADER_SIZE as usize;

/// A range of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub phys: u64,
    /// Bytes.
    pub len: u64,
}

impl PhysRange {
    /// The first byte after the range (saturating).
    pub const fn end(&self) -> u64 {
        self.phys.saturating_add(self.len)
    }
}

/// Which reference of a block an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `BootInfo.loader_name`.
    LoaderName,
    /// `BootInfo.loader_version`.
    LoaderVersion,
    /// `BootInfo.cmdline`.
    Cmdline,
    /// `BootInfo.memory_map`.
    MemoryMap,
    /// `BootInfo.modules`.
    Modules,
    /// `name` of the module with this index.
    ModuleName(u32),
    /// `cmdline` of the module with this index.
    ModuleCmdline(u32),
    /// `BootInfo.cpus`.
    Cpus,
    /// `BootInfo.cpu_starts`.
    CpuStarts,
    /// `BootInfo.firmware_memory_map`.
    FirmwareMemoryMap,
    /// `BootInfo.placed_extents`.
    PlacedExtents,
    /// `BootInfo.tsc_stamps`.
    TscStamps,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LoaderName => f.write_str("loader_name"),
            Self::LoaderVersion => f.write_str("loader_version"),
            Self::Cmdline => f.write_str("cmdline"),
            Self::MemoryMap => f.write_str("memory_map"),
            Self::Modules => f.write_str("modules"),
            Self::ModuleName(i) => write!(f, "modules[{i}].name"),
            Self::ModuleCmdline(i) => write!(f, "modules[{i}].cmdline"),
            Self::Cpus => f.write_str("cpus"),
            Self::CpuStarts => f.write_str("cpu_starts"),
            Self::FirmwareMemoryMap => f.write_str("firmware_memory_map"),
            Self::PlacedExtents => f.write_str("placed_extents"),
            Self::TscStamps => f.write_str("tsc_stamps"),
        }
    }
}

/// Why a [`StrRef`] or [`ArrayRef`] cannot be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefError {
    /// The header is not intact (`size` or `header_size` too small), so no
    /// reference can be trusted.
    NoBlock,
    /// The data starts inside the fixed header.
    InHeader,
    /// The data (or a string's NUL terminator) extends past `size`.
    OutOfBounds,
    /// An array's offset is not a multiple of 8, or its address is not aligned
    /// for the element type.
    Misaligned,
    /// A string is not valid UTF-8.
    NotUtf8,
    /// A string is not followed by a NUL byte.
    NotTerminated,
}

impl fmt::Display for RefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoBlock => "header not intact",
            Self::InHeader => "points into the fixed header",
            Self::OutOfBounds => "extends past the end of the block",
            Self::Misaligned => "misaligned",
            Self::NotUtf8 => "not valid UTF-8",
            Self::NotTerminated => "not NUL-terminated",
        })
    }
}

/// Why a boot-information block is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoError {
    /// `magic` is not [`BOOT_INFO_MAGIC`].
    BadMagic(u64),
    /// `version` is not [`PROTOCOL_VERSION`].
    UnsupportedVersion(u32),
    /// `header_size` is smaller than [`MIN_HEADER_SIZE`] or larger than `size`.
    BadHeaderSize {
        /// `BootInfo.header_size`.
        header_size: u32,
        /// `BootInfo.size`.
        size: u32,
    },
    /// ([`BootInfo::from_bytes`]) The buffer is shorter than the header or than `size`.
    Truncated {
        /// Bytes the block needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// ([`BootInfo::from_bytes`]) The buffer is not 8-byte aligned.
    Misaligned,
    /// A string or array reference is malformed.
    BadRef {
        /// Which reference.
        field: Field,
        /// What is wrong with it.
        error: RefError,
    },
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic(m) => {
                write!(f, "bad magic {m:#018x} (expected {BOOT_INFO_MAGIC:#018x})")
            }
            Self::UnsupportedVersion(v) => {
                write!(
                    f,
                    "protocol version {v}, this kernel understands {PROTOCOL_VERSION}"
                )
            }
            Self::BadHeaderSize { header_size, size } => write!(
                f,
                "bad header_size {header_size} (size {size}, minimum header {MIN_HEADER_SIZE})"
            ),
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "block truncated: needs {needed} bytes, {available} available"
                )
            }
            Self::Misaligned => f.write_str("block not 8-byte aligned"),
            Self::BadRef { field, error } => write!(f, "{field}: {error}"),
        }
    }
}

impl BootInfo {
    /// The block in `buf` (which must start with the header), after checking that
    /// `buf` is 8-byte aligned, holds the header and `size` bytes, and that the
    /// block is [valid](Self::validate).
    ///
    /// `buf` must be at least [`HEADER_SIZE`] bytes long even when the block's
    /// `header_size` is smaller (a block from an older loader): the returned
    /// reference covers a whole [`BootInfo`]. Pad such a buffer with anything;
    /// the accessors do not read past `header_size` for header fields.
    pub fn from_bytes(buf: &[u8]) -> Result<&BootInfo, InfoError> {
        if buf.len() < HEADER_SIZE {
            return Err(InfoError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        if !buf.as_ptr().cast::<BootInfo>().is_aligned() {
            return Err(InfoError::Misaligned);
        }
        // SAFETY: the buffer holds at least a header and is aligned for it; every
        // bit pattern is a valid BootInfo (integers and integer newtypes only).
        let info = unsafe { &*buf.as_ptr().cast::<BootInfo>() };
        if info.size as usize > buf.len() {
            return Err(InfoError::Truncated {
                needed: info.size as usize,
                available: buf.len(),
            });
        }
        info.validate()?;
        Ok(info)
    }

    /// Checks the whole block: magic, version, `header_size`, and every string and
    /// array reference (the memory map, the module table, each module's strings,
    /// and the later arrays where `header_size` covers them) against `size`,
    /// alignment and UTF-8. Reads nothing outside `size`.
    ///
    /// A `header_size` between [`MIN_HEADER_SIZE`] and [`HEADER_SIZE`] is
    /// accepted: the block comes from a loader built against an earlier v1
    /// layout, and the fields it does not cover are absent.
    ///
    /// It checks structure, not meaning: an unsorted memory map or a module
    /// outside RAM is the kernel's business.
    pub fn validate(&self) -> Result<(), InfoError> {
        if self.magic != BOOT_INFO_MAGIC {
            return Err(InfoError::BadMagic(self.magic));
        }
        if self.version != PROTOCOL_VERSION {
            return Err(InfoError::UnsupportedVersion(self.version));
        }
        if (self.header_size as usize) < MIN_HEADER_SIZE || self.header_size > self.size {
            return Err(InfoError::BadHeaderSize {
                header_size: self.header_size,
                size: self.size,
            });
        }
        let bad = |field| move |error| InfoError::BadRef { field, error };
        self.try_str(self.loader_name)
            .map_err(bad(Field::LoaderName))?;
        self.try_str(self.loader_version)
            .map_err(bad(Field::LoaderVersion))?;
        self.try_str(self.cmdline).map_err(bad(Field::Cmdline))?;
        self.try_array::<MemoryRegion>(self.memory_map)
            .map_err(bad(Field::MemoryMap))?;
        let modules = self
            .try_array::<Module>(self.modules)
            .map_err(bad(Field::Modules))?;
        for (i, m) in (0u32..).zip(modules) {
            self.try_str(m.name).map_err(bad(Field::ModuleName(i)))?;
            self.try_str(m.cmdline)
                .map_err(bad(Field::ModuleCmdline(i)))?;
        }
        if let Some(r) = self.later(self.cpus, HEADER_CPUS_END) {
            self.try_array::<CpuEntry>(r).map_err(bad(Field::Cpus))?;
        }
        if let Some(r) = self.later(self.firmware_memory_map, HEADER_FIRMWARE_MAP_END) {
            self.try_array::<FirmwareMemoryEntry>(r)
                .map_err(bad(Field::FirmwareMemoryMap))?;
        }
        if let Some(r) = self.later(self.placed_extents, HEADER_EXTENTS_END) {
            self.try_array::<PlacedExtent>(r)
                .map_err(bad(Field::PlacedExtents))?;
        }
        if let Some(r) = self.later(self.tsc_stamps, HEADER_TSC_STAMPS_END) {
            self.try_array::<u64>(r).map_err(bad(Field::TscStamps))?;
        }
        if let Some(r) = self.later(self.cpu_starts, HEADER_CPU_STARTS_END) {
            self.try_array::<CpuStart>(r)
                .map_err(bad(Field::CpuStarts))?;
        }
        Ok(())
    }

    /// Whether the header as the loader wrote it (`header_size`) covers the
    /// bytes up to `end`, i.e. whether a field ending there is present.
    pub fn has_field(&self, end: usize) -> bool {
        self.header_size as usize >= end
    }

    /// `value` if the header covers a field ending at `end`.
    fn later<T>(&self, value: T, end: usize) -> Option<T> {
        self.has_field(end).then_some(value)
    }

    /// The block's bytes, `size` long, or None if the header is not intact.
    fn block(&self) -> Option<&[u8]> {
        let size = self.size as usize;
        if size < MIN_HEADER_SIZE
            || (self.header_size as usize) < MIN_HEADER_SIZE
            || self.header_size > self.size
        {
            return None;
        }
        // SAFETY: by the contract in the module documentation, `self` is the start
        // of a block of `size` readable bytes.
        Some(unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size) })
    }

    /// Checks that `offset..offset + len` lies in `header_size..size`.
    fn range(&self, offset: u32, len: u64) -> Result<(&[u8], usize, usize), RefError> {
        let block = self.block().ok_or(RefError::NoBlock)?;
        let start = offset as usize;
        if start < self.header_size as usize {
            return Err(RefError::InHeader);
        }
        let end = u64::from(offset)
            .checked_add(len)
            .ok_or(RefError::OutOfBounds)?;
        if end > block.len() as u64 {
            return Err(RefError::OutOfBounds);
        }
        Ok((block, start, end as usize))
    }

    /// Resolves a string reference (see the module documentation for the rules).
    pub fn try_str(&self, r: StrRef) -> Result<&str, RefError> {
        if r.len == 0 {
            return Ok("");
        }
        // One more byte for the NUL terminator.
        let (block, start, end) = self.range(r.offset, u64::from(r.len) + 1)?;
        if block[end - 1] != 0 {
            return Err(RefError::NotTerminated);
        }
        core::str::from_utf8(&block[start..end - 1]).map_err(|_| RefError::NotUtf8)
    }

    /// Resolves an array reference (see the module documentation for the rules).
    pub fn try_array<T: Plain>(&self, r: ArrayRef) -> Result<&[T], RefError> {
        if r.count == 0 {
            return Ok(&[]);
        }
        let bytes = u64::from(r.count) * size_of::<T>() as u64;
        let (block, start, _) = self.range(r.offset, bytes)?;
        let ptr = block[start..].as_ptr();
        if !r.offset.is_multiple_of(8) || !ptr.cast::<T>().is_aligned() {
            return Err(RefError::Misaligned);
        }
        // SAFETY: `count` elements lie inside the block (checked above), the
        // pointer is aligned for T, and T: Plain accepts every bit pattern.
        Ok(unsafe { core::slice::from_raw_parts(ptr.cast::<T>(), r.count as usize) })
    }

    /// A string of the block, or "" if the reference is malformed.
    pub fn str(&self, r: StrRef) -> &str {
        self.try_str(r).unwrap_or("")
    }

    /// The kernel command line ("" if none or malformed).
    pub fn cmdline(&self) -> &str {
        self.str(self.cmdline)
    }

    /// The loader's name, e.g. "hvboot" ("" if malformed).
    pub fn loader_name(&self) -> &str {
        self.str(self.loader_name)
    }

    /// The loader's version ("" if malformed).
    pub fn loader_version(&self) -> &str {
        self.str(self.loader_version)
    }

    /// The physical memory map: sorted, non-overlapping, merged (as the loader
    /// promises; empty if the reference is malformed).
    pub fn memory_map(&self) -> &[MemoryRegion] {
        self.try_array(self.memory_map).unwrap_or(&[])
    }

    /// The modules in configuration order (empty if none or malformed).
    pub fn modules(&self) -> &[Module] {
        self.try_array(self.modules).unwrap_or(&[])
    }

    /// A module's name ("" if malformed). `m` should come from [`Self::modules`].
    pub fn module_name(&self, m: &Module) -> &str {
        self.str(m.name)
    }

    /// A module's own command line ("" if none or malformed).
    pub fn module_cmdline(&self, m: &Module) -> &str {
        self.str(m.cmdline)
    }

    /// The framebuffer, or None if there is none (`phys_addr == 0`).
    pub fn framebuffer(&self) -> Option<&Framebuffer> {
        (self.framebuffer.phys_addr != 0).then_some(&self.framebuffer)
    }

    /// The virtual address of physical address `phys` in the direct map.
    pub fn phys_to_virt(&self, phys: u64) -> u64 {
        phys.wrapping_add(self.direct_map_offset)
    }

    /// Whether `phys..phys + len` is inside the direct map.
    pub fn in_direct_map(&self, phys: u64, len: u64) -> bool {
        phys.checked_add(len)
            .is_some_and(|end| end <= self.direct_map_size)
    }

    /// A module's contents, read through the direct map; None if the module lies
    /// outside it.
    ///
    /// # Safety
    /// Only in the kernel, with the loader's direct map still in place, and while
    /// the module's memory is not reused for anything else.
    pub unsafe fn module_data(&self, m: &Module) -> Option<&'static [u8]> {
        let len = usize::try_from(m.size).ok()?;
        if !self.in_direct_map(m.phys_addr, m.size) {
            return None;
        }
        // SAFETY: forwarded to the caller; the range is inside the direct map.
        Some(unsafe {
            core::slice::from_raw_parts(self.phys_to_virt(m.phys_addr) as *const u8, len)
        })
    }

    /// Sum of the lengths of the [`MemoryKind::USABLE`] regions.
    pub fn usable_bytes(&self) -> u64 {
        self.memory_map()
            .iter()
            .filter(|r| r.kind == MemoryKind::USABLE)
            .fold(0u64, |acc, r| acc.saturating_add(r.length))
    }
}

// Where the fields appended after the first v1 layout end: a field is present
// when `header_size` reaches its end.
const fn end_of(offset: usize, size: usize) -> usize {
    offset + size
}
const HEADER_VIRT_END: usize = end_of(
    core::mem::offset_of!(BootInfo, virt),
    size_of::<VirtReport>(),
);
const HEADER_CPUS_END: usize = end_of(core::mem::offset_of!(BootInfo, cpus), size_of::<ArrayRef>());
const HEADER_FIRMWARE_MAP_END: usize = end_of(
    core::mem::offset_of!(BootInfo, firmware_memory_map),
    size_of::<ArrayRef>(),
);
const HEADER_EXTENTS_END: usize = end_of(
    core::mem::offset_of!(BootInfo, placed_extents),
    size_of::<ArrayRef>(),
);
const HEADER_TSC_STAMPS_END: usize = end_of(
    core::mem::offset_of!(BootInfo, tsc_stamps),
    size_of::<ArrayRef>(),
);
const HEADER_LAPIC_END: usize = end_of(core::mem::offset_of!(BootInfo, local_apic_phys), 8);
const HEADER_GUEST_END: usize = end_of(core::mem::offset_of!(BootInfo, guest_reservation_size), 8);
const HEADER_TRAMPOLINE_END: usize = end_of(core::mem::offset_of!(BootInfo, ap_trampoline_phys), 8);
const HEADER_REQUEST_END: usize = end_of(core::mem::offset_of!(BootInfo, request_version), 4);
const HEADER_CPU_STARTS_END: usize = end_of(
    core::mem::offset_of!(BootInfo, cpu_starts),
    size_of::<ArrayRef>(),
);
const HEADER_TSC_SOURCE_END: usize = end_of(core::mem::offset_of!(BootInfo, tsc_source), 4);
const HEADER_TPM_END: usize = end_of(core::mem::offset_of!(BootInfo, tpm_final_events_phys), 8);
const HEADER_ACPI_TABLES_END: usize = end_of(
    core::mem::offset_of!(BootInfo, acpi_tables),
    size_of::<AcpiTables>(),
);

/// Accessors of the fields appended to version 1 after its first layout.
/// Each returns None (or an empty slice) when the block's `header_size` does
/// not cover the field, when the loader left it zero, or when a reference is
/// malformed; none of them reads a byte past `header_size` for header fields.
impl BootInfo {
    /// The virtualization report, if the loader filled it in
    /// ([`VirtFlags::VALID`]).
    pub fn virt_report(&self) -> Option<&VirtReport> {
        self.later(&self.virt, HEADER_VIRT_END)
            .filter(|v| v.flags.contains(VirtFlags::VALID))
    }

    /// The processors from the ACPI MADT, in MADT order (empty if absent).
    pub fn cpus(&self) -> &[CpuEntry] {
        self.later(self.cpus, HEADER_CPUS_END)
            .and_then(|r| self.try_array(r).ok())
            .unwrap_or(&[])
    }

    /// What the loader did with each processor when the kernel asked for `START_APS`: one
    /// [`CpuStart`] per [`BootInfo::cpus`] entry, in the same order (empty if not asked, or
    /// from an older loader). Release a parked one with [`CpuStart::start`].
    pub fn cpu_starts(&self) -> &[CpuStart] {
        self.later(self.cpu_starts, HEADER_CPU_STARTS_END)
            .and_then(|r| self.try_array(r).ok())
            .unwrap_or(&[])
    }

    /// The firmware's own memory map, untranslated: EFI memory descriptors
    /// when `firmware` is UEFI, E820 entries when it is BIOS (empty if absent).
    pub fn firmware_memory_map(&self) -> &[FirmwareMemoryEntry] {
        self.later(self.firmware_memory_map, HEADER_FIRMWARE_MAP_END)
            .and_then(|r| self.try_array(r).ok())
            .unwrap_or(&[])
    }

    /// Everything the loader placed in memory (empty if absent).
    pub fn placed_extents(&self) -> &[PlacedExtent] {
        self.later(self.placed_extents, HEADER_EXTENTS_END)
            .and_then(|r| self.try_array(r).ok())
            .unwrap_or(&[])
    }

    /// The TSC stamps, indexed by [`TscStage`] (empty if absent).
    pub fn tsc_stamps(&self) -> &[u64] {
        self.later(self.tsc_stamps, HEADER_TSC_STAMPS_END)
            .and_then(|r| self.try_array(r).ok())
            .unwrap_or(&[])
    }

    /// The TSC when the loader passed `stage`, if it recorded it.
    pub fn tsc_stamp(&self, stage: TscStage) -> Option<u64> {
        self.tsc_stamps()
            .get(stage.0 as usize)
            .copied()
            .filter(|&t| t != 0)
    }

    /// The local APIC's MMIO base, if the loader reported it.
    pub fn local_apic_phys(&self) -> Option<u64> {
        self.later(self.local_apic_phys, HEADER_LAPIC_END)
            .filter(|&a| a != 0)
    }

    /// The guest-memory reservation the kernel requested, if the loader made one.
    pub fn guest_reservation(&self) -> Option<PhysRange> {
        self.later(
            PhysRange {
                phys: self.guest_reservation_phys,
                len: self.guest_reservation_size,
            },
            HEADER_GUEST_END,
        )
        .filter(|r| r.len != 0)
    }

    /// The AP trampoline page (below 1 MiB), if the loader reserved one.
    pub fn ap_trampoline_phys(&self) -> Option<u64> {
        self.later(self.ap_trampoline_phys, HEADER_TRAMPOLINE_END)
            .filter(|&a| a != 0)
    }

    /// The physical addresses of the ACPI tables the loader found (MADT, FADT, MCFG, SRAT,
    /// DMAR, IVRS; 0 for one that is not there), or None from a loader that predates them.
    pub fn acpi_tables(&self) -> Option<&AcpiTables> {
        self.later(&self.acpi_tables, HEADER_ACPI_TABLES_END)
    }

    /// The BSP's TSC frequency in Hz and where it comes from (CPUID or measured against the
    /// ACPI PM timer), or None when the loader did not know it (or predates the field).
    pub fn tsc_frequency(&self) -> Option<(u64, TscSource)> {
        self.later(
            (self.tsc_frequency_hz, self.tsc_source),
            HEADER_TSC_SOURCE_END,
        )
        .filter(|&(hz, _)| hz != 0)
    }

    /// The TPM event log (TCG2 crypto-agile format) as it stood after the loader's last
    /// measurement, copied into BOOT_INFO memory: (physical address, bytes). None when the
    /// loader measured nothing (no TPM, BIOS) or predates the field (docs/trust.md).
    pub fn tpm_event_log(&self) -> Option<(u64, u64)> {
        self.later(
            (self.tpm_event_log_phys, self.tpm_event_log_size),
            HEADER_TPM_END,
        )
        .filter(|&(phys, size)| phys != 0 && size != 0)
    }

    /// EFI_TCG2_FINAL_EVENTS_TABLE's physical address (the events logged after the copy
    /// [`BootInfo::tpm_event_log`] was taken), or None.
    pub fn tpm_final_events(&self) -> Option<u64> {
        self.later(self.tpm_final_events_phys, HEADER_TPM_END)
            .filter(|&a| a != 0)
    }

    /// The version of the kernel's `.hvboot_request` that the loader found and
    /// honoured, or None if it found none (or predates requests).
    pub fn request_version(&self) -> Option<u32> {
        self.later(self.request_version, HEADER_REQUEST_END)
            .filter(|&v| v != 0)
    }
}

impl MemoryRegion {
    /// The first byte after the region (saturating).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

#[cfg(test)]
mod tests;
