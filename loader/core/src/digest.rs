//! File digests: `hvboot build` pins every file the loader reads (the kernel, each module) by
//! its BLAKE3 digest (the BLAKE3 specification, 256-bit output) in hvboot.cfg, and the loader
//! checks each file right after reading it, before anything parses or places it
//! (docs/trust.md, "File digests"). BLAKE3 rather than SHA-256 because the loader hashes every
//! byte it loads and QEMU's TCG runs SHA-256's 64 scalar rounds per block about ten times
//! slower than BLAKE3's 4-way SSE2 rounds (bench/digest_cost.py, bench/README.md).

use core::fmt;

/// The name the loader prints and the config's keys carry.
pub const NAME: &str = "blake3";

/// A BLAKE3 digest (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Parses 64 hexadecimal digits (either case); None for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *byte = (hi << 4 | lo) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Digest {
    /// Lower-case hex, as `b3sum` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A file whose bytes are not the ones pinned for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What the config (or the loader binary, for the config) pins.
    pub expected: Digest,
    /// What was read.
    pub got: Digest,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{NAME} mismatch: expected {}, got {}",
            self.expected, self.got
        )
    }
}

/// Checks `bytes` against `expected` (nothing to check without a pin).
pub fn check(bytes: &[u8], expected: Option<Digest>) -> Result<(), Mismatch> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let got = Digest::of(bytes);
    if got == expected {
        Ok(())
    } else {
        Err(Mismatch { expected, got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    // BLAKE3 of "abc" (b3sum; the reference implementation's test vectors use longer inputs).
    const ABC: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";

    #[test]
    fn known_answer_and_hex_round_trip() {
        assert_eq!(Digest::of(b"abc").to_string(), ABC);
        assert_eq!(Digest::from_hex(ABC), Some(Digest::of(b"abc")));
        assert_eq!(
            Digest::from_hex(&ABC.to_uppercase()),
            Some(Digest::of(b"abc"))
        );
    }

    #[test]
    fn bad_hex_is_refused() {
        assert_eq!(Digest::from_hex(&ABC[1..]), None);
        assert_eq!(Digest::from_hex(&alloc::format!("{ABC}0")), None);
        assert_eq!(Digest::from_hex(&ABC.replace('b', "g")), None);
        assert_eq!(Digest::from_hex(&alloc::format!("+{}", &ABC[1..])), None);
        assert_eq!(Digest::from_hex(""), None);
    }

    #[test]
    fn check_names_both_digests() {
        assert_eq!(check(b"abc", None), Ok(()));
        assert_eq!(check(b"abc", Digest::from_hex(ABC)), Ok(()));
        let e = check(b"abd", Digest::from_hex(ABC)).unwrap_err();
        assert_eq!(
            e.to_string(),
            alloc::format!(
                "blake3 mismatch: expected {ABC}, got {}",
                Digest::of(b"abd")
            )
        );
    }
}
