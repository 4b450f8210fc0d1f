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

/// Formats `args` into `buf` (truncating); returns the bytes written.
pub fn format_into(buf: &mut [u8], args: fmt::Arguments<'_>) -> usize {
    struct W<'a> {
        buf: &'a mut [u8],
        len: usize,
    }
    impl fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = self.buf.len() - self.len;
            let n = s.len().min(room);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut w = W { buf, len: 0 };
    let _ = fmt::write(&mut w, args);
    w.len
}
