//! Lowercase hex of a byte string, as the report format writes strings.

use core::fmt;

/// Formats the bytes as lowercase hex, two digits each, nothing in between.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
