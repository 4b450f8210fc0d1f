//! Why a boot stops: [`PlatformError`] for what a firmware layer refuses, [`Error`] for the flow.
//! `Display` gives the words the loader prints after `hvboot: error: ` (tests/ match them).

use alloc::string::String;
use core::fmt;

use crate::{config, digest, elf, paging, request};

use super::CONFIG_PATH;

/// What a [`super::Platform`] call could not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// A firmware service failed with this status (UEFI: the EFI_STATUS name).
    Status(String),
    /// No free block of `size` bytes ending at or below `limit` (exclusive).
    NoFreeBlock {
        /// Bytes asked for (page-rounded).
        size: u64,
        /// The end the block had to stay under.
        limit: u64,
    },
    /// `start..end` cannot be had at exactly that address.
    NotFree {
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
        /// Where the platform can allocate at all, in words.
        allowed: &'static str,
    },
    /// No free 4 KiB page between `from` and `to` (below 1 MiB).
    NoLowPage {
        /// Lowest address tried.
        from: u64,
        /// Where the search stopped (the EBDA).
        to: u64,
    },
    /// The platform cannot do this at all.
    Unsupported(&'static str),
    /// A file could not be read; the text names the file (`<path>: <why>`).
    File(String),
    /// Anything else, in the firmware layer's own words.
    Other(String),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) | Self::File(s) | Self::Other(s) => f.write_str(s),
            Self::NoFreeBlock { size, limit } => {
                write!(f, "no free block of {size:#x} bytes below {limit:#x}")
            }
            Self::NotFree {
                start,
                end,
                allowed,
            } => write!(
                f,
                "{start:#x}..{end:#x} is not free usable memory {allowed}"
            ),
            Self::NoLowPage { from, to } => {
                write!(
                    f,
                    "no usable page between {from:#x} and the EBDA at {to:#x}"
                )
            }
            Self::Unsupported(what) => f.write_str(what),
        }
    }
}

impl From<String> for PlatformError {
    fn from(s: String) -> Self {
        Self::Other(s)
    }
}

/// Why the boot flow stopped. `kernel` / `path` fields name the file as the config does.
#[derive(Debug)]
pub enum Error {
    /// A platform call failed (reading a file names it).
    Platform(PlatformError),
    /// The config file does not parse.
    Config(config::ConfigError),
    /// A file's bytes are not the ones its digest pins (docs/trust.md).
    Digest {
        /// The file's path.
        path: String,
        /// Both digests.
        why: digest::Mismatch,
    },
    /// The config says `tpm required` and there is no TPM to measure into.
    NoTpm(PlatformError),
    /// The TPM refused a measurement of `what` (a path, or `cmdline`).
    Measure {
        /// What was being measured.
        what: String,
        /// The firmware's reason.
        why: PlatformError,
    },
    /// The kernel is not an ELF file hvboot loads.
    Elf {
        /// The kernel's path.
        kernel: String,
        /// What is wrong with it.
        why: elf::ElfError,
    },
    /// The Multiboot2 kernel is refused (`crate::multiboot2`).
    Multiboot2 {
        /// The kernel's path.
        kernel: String,
        /// The field and why.
        why: crate::multiboot2::Problem,
    },
    /// The Linux bzImage is refused (`crate::linux`).
    Linux {
        /// The kernel's path.
        kernel: String,
        /// The field and why.
        why: crate::linux::Problem,
    },
    /// The Limine kernel is refused (`crate::limine`).
    Limine {
        /// The kernel's path.
        kernel: String,
        /// The field and why.
        why: crate::limine::Problem,
    },
    /// The `bootloader_api` kernel's config is refused (`crate::bootloader_api`).
    BootloaderApi {
        /// The kernel's path.
        kernel: String,
        /// The field and why.
        why: crate::bootloader_api::Problem,
    },
    /// The kernel's `.hvboot_request` is malformed.
    Request {
        /// The kernel's path.
        kernel: String,
        /// The field and why.
        why: request::RequestProblem,
    },
    /// A well-formed request this machine cannot meet.
    Unmet {
        /// The kernel's path.
        kernel: String,
        /// The request's field.
        field: &'static str,
        /// Why not.
        why: String,
    },
    /// A lower-half kernel whose segments are not one physical block.
    NotOneBlock {
        /// The kernel's path.
        kernel: String,
    },
    /// No memory where the kernel must go.
    KernelPlacement {
        /// The kernel's path.
        kernel: String,
        /// Bytes of its image.
        size: u64,
        /// The platform's refusal.
        why: PlatformError,
    },
    /// No 2 MiB-aligned memory for a module the kernel wants aligned.
    ModuleAlignment {
        /// The module's path.
        path: String,
        /// The platform's refusal.
        why: PlatformError,
    },
    /// No memory for one of the loader's own allocations (`what` says which).
    NoMemory {
        /// "the kernel stack", "the boot information", ...
        what: String,
        /// The platform's refusal.
        why: PlatformError,
    },
    /// A mapping failed; `what` says which ("direct map", "mapping the stack", ...).
    Paging {
        /// The mapping, in words.
        what: String,
        /// The builder's refusal.
        why: paging::PagingError,
    },
    /// The final memory map outgrew the room made for it before leaving the firmware.
    MapTooLarge {
        /// "the firmware's memory map" or "the memory map".
        what: &'static str,
        /// Entries it has.
        entries: usize,
        /// Entries there was room for.
        room: usize,
    },
    /// The protocol's information did not fit its block (the builder's words).
    BootInfo(String),
}

impl Error {
    /// `path`'s bytes checked against its pin, before anything reads them: `<path>: blake3
    /// mismatch: expected ..., got ...`.
    pub fn check_digest(path: &str, bytes: &[u8], pin: Option<digest::Digest>) -> Result<(), Self> {
        digest::check(bytes, pin).map_err(|why| Self::Digest {
            path: path.into(),
            why,
        })
    }

    /// For `map_err` on an allocation of the loader's own: `no memory for <what>: <why>`.
    pub fn no_memory(what: impl Into<String>) -> impl FnOnce(PlatformError) -> Self {
        let what = what.into();
        move |why| Self::NoMemory { what, why }
    }
}

impl From<PlatformError> for Error {
    fn from(e: PlatformError) -> Self {
        Self::Platform(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Platform(e) => write!(f, "{e}"),
            Self::Config(e) => write!(f, "{CONFIG_PATH}: {e}"),
            Self::Digest { path, why } => write!(f, "{path}: {why}"),
            Self::NoTpm(why) => write!(
                f,
                "{CONFIG_PATH}: tpm required, but there is no TPM to measure into: {why}"
            ),
            Self::Measure { what, why } => write!(f, "{what}: cannot measure into the TPM: {why}"),
            Self::Elf { kernel, why } => write!(f, "{kernel}: {why}"),
            Self::Multiboot2 { kernel, why } => write!(f, "{kernel}: {why}"),
            Self::Linux { kernel, why } => write!(f, "{kernel}: {why}"),
            Self::Limine { kernel, why } => write!(f, "{kernel}: {why}"),
            Self::Request { kernel, why } => write!(f, "{kernel}: {why}"),
            Self::BootloaderApi { kernel, why } => write!(f, "{kernel}: {why}"),
            Self::Unmet { kernel, field, why } => {
                write!(f, "{kernel}: .hvboot_request: {field}: {why}")
            }
            Self::NotOneBlock { kernel } => write!(
                f,
                "{kernel}: the segments' physical addresses are not at one offset from their \
                 virtual addresses; hvboot places a lower-half kernel as one block"
            ),
            Self::KernelPlacement { kernel, size, why } => {
                write!(f, "{kernel}: cannot place {size:#x} bytes of kernel: {why}")
            }
            Self::ModuleAlignment { path, why } => {
                write!(f, "{path}: no 2 MiB aligned memory for it: {why}")
            }
            Self::NoMemory { what, why } => write!(f, "no memory for {what}: {why}"),
            Self::Paging { what, why } => write!(f, "{what}: {why}"),
            Self::MapTooLarge {
                what,
                entries,
                room,
            } => write!(f, "{what} has {entries} entries, room was made for {room}"),
            Self::BootInfo(e) => write!(f, "writing the boot information: {e}"),
        }
    }
}
