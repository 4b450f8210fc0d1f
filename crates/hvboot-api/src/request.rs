//! The kernel's request to the loader: a [`KernelRequest`] in the ELF section
//! [`REQUEST_SECTION`], placed there with [`request!`](crate::request).
//!
//! The loader looks the section up by name in the kernel's section headers
//! (before it plans anything), checks `magic`, `version` and `size`, and
//! honours the fields it knows; a kernel without the section gets the
//! defaults. What the loader promises for each field: docs/hypervisor.md.
//!
//! ```
//! use hvboot_api::{KernelRequest, RequestFlags};
//!
//! // In the kernel crate: `hvboot_api::request!(REQUEST);`
//! const REQUEST: KernelRequest = KernelRequest::new()
//!     .stack_size(256 * 1024)
//!     .no_framebuffer()
//!     .guest_memory(64 << 20, 2 << 20)
//!     .flags(RequestFlags::AP_TRAMPOLINE);
//! assert_eq!(REQUEST.guest.size, 64 << 20);
//! assert!(REQUEST.check().is_ok());
//! ```

use core::fmt;
use core::mem::size_of;

use crate::protocol::{
    GuestRequest, KernelRequest, RequestFlags, FRAMEBUFFER_NONE, REQUEST_MAGIC, REQUEST_V1_SIZE,
    REQUEST_VERSION,
};

/// The name of the ELF section that holds the request.
pub const REQUEST_SECTION: &str = ".hvboot_request";

/// 4 KiB.
const PAGE: u64 = 4096;
/// 2 MiB.
const LARGE_PAGE: u32 = 2 * 1024 * 1024;

/// Why a request is not acceptable (what the loader would refuse, with the
/// field named).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// `magic` is not [`REQUEST_MAGIC`].
    BadMagic,
    /// `version` is 0.
    BadVersion,
    /// `size` is smaller than the first version's structure.
    BadSize,
    /// `stack_size` is not a multiple of 4 KiB.
    StackSize,
    /// `module_alignment` is neither 0, 4 KiB nor 2 MiB.
    ModuleAlignment,
    /// `direct_map_offset` is not a 1 GiB aligned higher-half address.
    DirectMapOffset,
    /// The guest request is inconsistent (size, alignment, base or limit).
    Guest,
    /// `ap_stack_size` is not a multiple of 4 KiB.
    ApStackSize,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadMagic => "magic is not \"HVBOOTRQ\"",
            Self::BadVersion => "version 0",
            Self::BadSize => "size smaller than the version-1 request",
            Self::StackSize => "stack_size is not a multiple of 4 KiB",
            Self::ModuleAlignment => "module_alignment must be 0, 4096 or 2 MiB",
            Self::DirectMapOffset => {
                "direct_map_offset must be 0 or a 1 GiB aligned higher-half address"
            }
            Self::Guest => {
                "guest: size must be a multiple of 4 KiB, alignment a power of two >= 4 KiB, \
                 fixed_base aligned, and the range below max_address"
            }
            Self::ApStackSize => "ap_stack_size is not a multiple of 4 KiB",
        })
    }
}

impl KernelRequest {
    /// A request that asks for nothing but the defaults. (Not `default()`,
    /// which is all zeros, without the magic.)
    pub const fn new() -> Self {
        Self {
            magic: REQUEST_MAGIC,
            version: REQUEST_VERSION,
            size: size_of::<KernelRequest>() as u32,
            flags: RequestFlags(0),
            framebuffer_width: 0,
            framebuffer_height: 0,
            module_alignment: 0,
            stack_size: 0,
            direct_map_offset: 0,
            guest: GuestRequest {
                size: 0,
                alignment: 0,
                max_address: 0,
                fixed_base: 0,
            },
            ap_stack_size: 0,
        }
    }

    /// Asks for every enabled application processor to be started and parked, each with
    /// `stack_bytes` of stack (a multiple of 4 KiB; 0 = `DEFAULT_AP_STACK_SIZE`). Adds
    /// `START_APS` to the flags set so far.
    pub const fn start_aps(mut self, stack_bytes: u64) -> Self {
        self.flags = RequestFlags(self.flags.0 | RequestFlags::START_APS.0);
        self.ap_stack_size = stack_bytes;
        self
    }

    /// Sets `flags` (replacing earlier ones).
    pub const fn flags(mut self, flags: RequestFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Asks for an entry stack of `bytes` (a multiple of 4 KiB).
    pub const fn stack_size(mut self, bytes: u64) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Asks for a framebuffer mode of `width` x `height` pixels.
    pub const fn framebuffer(mut self, width: u32, height: u32) -> Self {
        self.framebuffer_width = width;
        self.framebuffer_height = height;
        self
    }

    /// Asks for no framebuffer at all.
    pub const fn no_framebuffer(self) -> Self {
        self.framebuffer(FRAMEBUFFER_NONE, FRAMEBUFFER_NONE)
    }

    /// Asks for every module to start on a 2 MiB boundary.
    pub const fn modules_2mib_aligned(mut self) -> Self {
        self.module_alignment = LARGE_PAGE;
        self
    }

    /// Asks for the direct map at `offset` instead of the default.
    pub const fn direct_map_offset(mut self, offset: u64) -> Self {
        self.direct_map_offset = offset;
        self
    }

    /// Asks for `size` bytes of guest memory aligned to `alignment`, anywhere.
    pub const fn guest_memory(mut self, size: u64, alignment: u64) -> Self {
        self.guest.size = size;
        self.guest.alignment = alignment;
        self
    }

    /// Asks for the guest memory to end at or below `max_address`.
    pub const fn guest_below(mut self, max_address: u64) -> Self {
        self.guest.max_address = max_address;
        self
    }

    /// Asks for the guest memory at exactly `base`.
    pub const fn guest_at(mut self, base: u64) -> Self {
        self.guest.fixed_base = base;
        self
    }

    /// The checks the loader applies (usable in a `const` to fail the build).
    pub const fn check(&self) -> Result<(), RequestError> {
        if self.magic != REQUEST_MAGIC {
            return Err(RequestError::BadMagic);
        }
        if self.version == 0 {
            return Err(RequestError::BadVersion);
        }
        if self.size < REQUEST_V1_SIZE {
            return Err(RequestError::BadSize);
        }
        if !self.stack_size.is_multiple_of(PAGE) {
            return Err(RequestError::StackSize);
        }
        if !self.ap_stack_size.is_multiple_of(PAGE) {
            return Err(RequestError::ApStackSize);
        }
        if !matches!(self.module_alignment, 0 | 4096 | LARGE_PAGE) {
            return Err(RequestError::ModuleAlignment);
        }
        let dm = self.direct_map_offset;
        if dm != 0 && (dm < 0xffff_8000_0000_0000 || !dm.is_multiple_of(1 << 30)) {
            return Err(RequestError::DirectMapOffset);
        }
        let g = &self.guest;
        if g.size == 0 {
            return Ok(());
        }
        let align = if g.alignment == 0 { PAGE } else { g.alignment };
        if !g.size.is_multiple_of(PAGE) || !align.is_power_of_two() || align < PAGE {
            return Err(RequestError::Guest);
        }
        if !g.fixed_base.is_multiple_of(align) {
            return Err(RequestError::Guest);
        }
        if g.max_address != 0 {
            let lowest_end = match g.fixed_base.checked_add(g.size) {
                Some(end) => end,
                None => return Err(RequestError::Guest),
            };
            if lowest_end > g.max_address {
                return Err(RequestError::Guest);
            }
        }
        Ok(())
    }
}

/// Places a [`KernelRequest`] in the kernel's `.hvboot_request` section.
///
/// Use it once, in the kernel's binary crate, with a constant expression;
/// the request is checked at compile time ([`KernelRequest::check`]):
///
/// ```ignore
/// hvboot_api::request!(hvboot_api::KernelRequest::new()
///     .guest_memory(64 << 20, 2 << 20)
///     .flags(hvboot_api::RequestFlags::AP_TRAMPOLINE));
/// ```
///
/// The static is `#[used]` and `#[no_mangle]` (symbol `HVBOOT_REQUEST`), so
/// neither the compiler nor the linker drops it although nothing reads it.
#[macro_export]
macro_rules! request {
    ($request:expr) => {
        #[used]
        #[no_mangle]
        #[link_section = ".hvboot_request"]
        static HVBOOT_REQUEST: $crate::KernelRequest = {
            const REQUEST: $crate::KernelRequest = $request;
            assert!(REQUEST.check().is_ok(), "invalid hvboot KernelRequest");
            REQUEST
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_empty() {
        let r = KernelRequest::new();
        assert_eq!(r.magic.to_le_bytes(), *b"HVBOOTRQ");
        assert_eq!(r.version, REQUEST_VERSION);
        assert_eq!(r.size as usize, size_of::<KernelRequest>());
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.guest.size, 0);
        // The derived Default is all zeros, which no loader accepts: use new().
        assert_eq!(
            KernelRequest::default().check(),
            Err(RequestError::BadMagic)
        );
    }

    #[test]
    fn builder_and_checks() {
        let r = KernelRequest::new()
            .stack_size(128 * 1024)
            .framebuffer(1024, 768)
            .modules_2mib_aligned()
            .direct_map_offset(0xffff_c000_0000_0000)
            .guest_memory(64 << 20, 2 << 20)
            .guest_below(4 << 30)
            .flags(RequestFlags::AP_TRAMPOLINE | RequestFlags::ENABLE_VMX);
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.module_alignment, 2 << 20);
        assert!(r.flags.contains(RequestFlags::ENABLE_VMX));
        assert_eq!(
            KernelRequest::new().no_framebuffer().framebuffer_width,
            u32::MAX
        );

        let bad = |r: KernelRequest| r.check().unwrap_err();
        assert_eq!(
            bad(KernelRequest::new().stack_size(100)),
            RequestError::StackSize
        );
        let mut m = KernelRequest::new();
        m.module_alignment = 8192;
        assert_eq!(bad(m), RequestError::ModuleAlignment);
        assert_eq!(
            bad(KernelRequest::new().direct_map_offset(0x1000)),
            RequestError::DirectMapOffset
        );
        assert_eq!(
            bad(KernelRequest::new().guest_memory(4097, 0)),
            RequestError::Guest
        );
        assert_eq!(
            bad(KernelRequest::new().guest_memory(4096, 3)),
            RequestError::Guest
        );
        assert_eq!(
            bad(KernelRequest::new().guest_memory(8192, 8192).guest_at(4096)),
            RequestError::Guest
        );
        assert_eq!(
            bad(KernelRequest::new()
                .guest_memory(1 << 20, 0)
                .guest_at(1 << 30)
                .guest_below(1 << 30)),
            RequestError::Guest
        );
        let mut v = KernelRequest::new();
        v.magic = 0;
        assert_eq!(bad(v), RequestError::BadMagic);
        v = KernelRequest::new();
        v.size = 16;
        assert_eq!(bad(v), RequestError::BadSize);
    }
}
