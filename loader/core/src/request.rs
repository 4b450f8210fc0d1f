//! The kernel's request (`.hvboot_request`, docs/hypervisor.md "The kernel request"): found by
//! name in the kernel ELF's section headers and checked with `KernelRequest::check`. These are
//! the only rules for it: `hvboot build` and `hvboot inspect` ask them through `hvboot-check`
//! (loader/check), so the builder refuses exactly what the loader refuses.
//!
//! Every refusal names the field: the boot flow prints it as
//! `<kernel>: .hvboot_request: <field>: <why>`.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::mem::size_of;

use hvboot_api::request::{RequestError, REQUEST_SECTION};
use hvboot_api::{KernelRequest, REQUEST_V1_SIZE, REQUEST_VERSION};

/// The part of the request every version shares: magic, version, size.
pub const REQUEST_HEADER_SIZE: usize = 16;

/// A request the loader refuses: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestProblem {
    /// The field (`magic`, `guest.size`, ...) or `section` for the section itself.
    pub field: &'static str,
    /// Why, in words.
    pub why: String,
}

impl fmt::Display for RequestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REQUEST_SECTION}: {}: {}", self.field, self.why)
    }
}

impl RequestProblem {
    /// A problem with `field`.
    pub fn new(field: &'static str, why: impl Into<String>) -> Self {
        Self {
            field,
            why: why.into(),
        }
    }
}

/// The field a [`RequestError`] is about.
pub fn error_field(e: RequestError) -> &'static str {
    match e {
        RequestError::BadMagic => "magic",
        RequestError::BadVersion => "version",
        RequestError::BadSize => "size",
        RequestError::StackSize => "stack_size",
        RequestError::ModuleAlignment => "module_alignment",
        RequestError::DirectMapOffset => "direct_map_offset",
        RequestError::Guest => "guest",
        RequestError::ApStackSize => "ap_stack_size",
    }
}

/// The kernel's request, `None` when it has no `.hvboot_request` section. The returned request
/// is the [`REQUEST_VERSION`] prefix of a newer one (with `version` set to what the loader
/// honours); a version-1 request (80 bytes) reads with the later fields zero.
///
/// The loader needs only the program headers: a kernel whose section header table (or its
/// string table) cannot be read has no request, as `hvboot build` sees it too.
pub fn find(image: &[u8]) -> Result<Option<KernelRequest>, RequestProblem> {
    match crate::elf::section_bytes(image, REQUEST_SECTION) {
        None => Ok(None),
        Some(bytes) => parse(bytes.map_err(|why| RequestProblem::new("section", why))?).map(Some),
    }
}

/// Checks the section's bytes and returns the request (see [`find`]).
pub fn parse(bytes: &[u8]) -> Result<KernelRequest, RequestProblem> {
    if bytes.len() < REQUEST_HEADER_SIZE {
        return Err(RequestProblem::new(
            "section",
            format!(
                "{} bytes, shorter than the {REQUEST_HEADER_SIZE}-byte request header",
                bytes.len()
            ),
        ));
    }
    let mut raw = [0u8; size_of::<KernelRequest>()];
    let n = bytes.len().min(raw.len());
    raw[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: KernelRequest is plain old data (integers only), any bit pattern is valid.
    let mut req: KernelRequest = unsafe { core::ptr::read_unaligned(raw.as_ptr().cast()) };
    // What the kernel was built with: a version-1 request ends before `ap_stack_size`.
    let known = if req.version >= 2 && req.size as usize >= size_of::<KernelRequest>() {
        size_of::<KernelRequest>()
    } else {
        REQUEST_V1_SIZE as usize
    };
    if known < size_of::<KernelRequest>() {
        req.ap_stack_size = 0;
    }
    req.check()
        .map_err(|e| RequestProblem::new(error_field(e), format!("{e}")))?;
    if bytes.len() < known {
        return Err(RequestProblem::new(
            "size",
            format!(
                "says {} bytes but the section holds only {}",
                req.size,
                bytes.len()
            ),
        ));
    }
    req.version = req.version.min(if known < size_of::<KernelRequest>() {
        1
    } else {
        REQUEST_VERSION
    });
    req.size = known as u32;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn bytes(r: &KernelRequest) -> Vec<u8> {
        // SAFETY: plain old data.
        unsafe {
            core::slice::from_raw_parts(
                (r as *const KernelRequest).cast::<u8>(),
                size_of::<KernelRequest>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn parses_and_refuses_with_the_field() {
        let good = KernelRequest::new().guest_memory(16 << 20, 2 << 20);
        assert_eq!(parse(&bytes(&good)).unwrap().guest.size, 16 << 20);
        assert_eq!(parse(&[0; 8]).unwrap_err().field, "section");
        let mut b = bytes(&good);
        b[0] = b'X';
        assert_eq!(parse(&b).unwrap_err().field, "magic");
        assert_eq!(
            parse(&bytes(&good)[..40]).unwrap_err().field,
            "size",
            "a truncated section"
        );
        let bad = KernelRequest::new().stack_size(100);
        let e = parse(&bytes(&bad)).unwrap_err();
        assert_eq!(e.field, "stack_size");
        assert!(e.to_string().starts_with(".hvboot_request: stack_size: "));
        assert_eq!(
            parse(&bytes(&KernelRequest::new().guest_memory(4097, 0)))
                .unwrap_err()
                .field,
            "guest"
        );
    }

    #[test]
    fn newer_request_is_read_as_the_current_version() {
        let mut r = KernelRequest::new().stack_size(8192).start_aps(1 << 20);
        r.version = 3;
        r.size = 96;
        let mut b = bytes(&r);
        b.extend_from_slice(&[0xAA; 8]);
        let got = parse(&b).unwrap();
        assert_eq!((got.version, got.size, got.stack_size), (2, 88, 8192));
        assert_eq!(got.ap_stack_size, 1 << 20);
    }

    #[test]
    fn version_1_request_still_reads() {
        let mut r = KernelRequest::new().stack_size(8192);
        (r.version, r.size) = (1, 80);
        // Bytes behind a version-1 request are not its own: never read as ap_stack_size.
        r.ap_stack_size = 123;
        let got = parse(&bytes(&r)[..80]).unwrap();
        assert_eq!((got.version, got.size, got.ap_stack_size), (1, 80, 0));
        let got = parse(&bytes(&r)).unwrap();
        assert_eq!((got.version, got.size, got.ap_stack_size), (1, 80, 0));
        let bad = KernelRequest::new().start_aps(100);
        assert_eq!(parse(&bytes(&bad)).unwrap_err().field, "ap_stack_size");
    }
}
