//! The config pin: reserved bytes in each loader binary (the UEFI PE, the BIOS stage 2) where
//! `hvboot build --sign` writes the BLAKE3 of the hvboot.cfg it wrote, so the firmware's
//! check of the signed loader extends to the config and, through the config's file digests, to
//! every file (docs/trust.md, "The chain"). This is the one definition of the layout: the
//! toolkit finds the bytes by [`MAGIC`] and learns the offsets from `hvboot-check pin`.

use crate::digest::Digest;

/// Marks the reserved bytes; it occurs once in a loader binary.
pub const MAGIC: [u8; 16] = *b"hvboot cfg pin\x00\x01";

/// The reserved bytes, as the binary carries them.
#[repr(C)]
pub struct ConfigPin {
    /// [`MAGIC`].
    pub magic: [u8; 16],
    /// [`PINNED`] when `digest` is the config's; 0 in an unpatched loader.
    pub state: u32,
    /// Zero.
    pub reserved: u32,
    /// The BLAKE3 of /hvboot/hvboot.cfg.
    pub digest: [u8; 32],
}

/// `state` of a patched loader.
pub const PINNED: u32 = 1;
/// Offset of `state` in [`ConfigPin`].
pub const STATE_OFFSET: usize = core::mem::offset_of!(ConfigPin, state);
/// Offset of `digest` in [`ConfigPin`].
pub const DIGEST_OFFSET: usize = core::mem::offset_of!(ConfigPin, digest);

// In the binary's initialised data, found and patched by the toolkit after linking.
#[used]
static CONFIG_PIN: ConfigPin = ConfigPin {
    magic: MAGIC,
    state: 0,
    reserved: 0,
    digest: [0; 32],
};

/// The config's pinned digest, if the build patched one in.
pub fn config() -> Option<Digest> {
    // SAFETY: a valid static; volatile, because the bytes change after compilation and the
    // compiler would otherwise fold the initialiser's zeros into the code.
    let state = unsafe { core::ptr::read_volatile(&CONFIG_PIN.state) };
    let digest = unsafe { core::ptr::read_volatile(&CONFIG_PIN.digest) };
    (state == PINNED).then_some(Digest(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpatched_loader_pins_nothing() {
        assert_eq!(config(), None);
        assert_eq!((STATE_OFFSET, DIGEST_OFFSET), (16, 24));
        assert_eq!(core::mem::size_of::<ConfigPin>(), 56);
    }
}
