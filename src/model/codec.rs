//! Big-endian primitives shared by every binary layout (value data here, messages in `wire`).
//!
//! [`Reader`] treats its input as hostile: every length is checked against what remains before
//! anything is allocated, and [`Reader::finish`] rejects trailing bytes.

/// A decoding failure: what was being read and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes for {what}")]
    Truncated { what: &'static str, needed: usize },
    #[error("{what}: length {len} exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0}: not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("{0} trailing bytes after the end of the structure")]
    Trailing(usize),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// Largest byte array accepted anywhere (Handle.Net `MAX_ARRAY_SIZE`).
pub const MAX_ARRAY: usize = 1 << 20;

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A count that must be non-negative as a Java int and plausible for the bytes left, given
    /// that each element takes at least `min_element` bytes.
    pub fn count(&mut self, what: &'static str, min_element: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)?;
        if n > i32::MAX as u32 {
            return Err(DecodeError::Invalid {
                what,
                reason: format!("negative count {}", n as i32),
            });
        }
        let n = n as usize;
        if n.saturating_mul(min_element.max(1)) > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed: n.saturating_mul(min_element.max(1)) - self.remaining(),
            });
        }
        Ok(n)
    }

    /// `int4 length` + bytes.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > MAX_ARRAY {
            return Err(DecodeError::TooLong {
                what,
                len,
                max: MAX_ARRAY,
            });
        }
        self.take(len, what)
    }

    /// `int4 length` + UTF-8 bytes.
    pub fn string(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| DecodeError::NotUtf8(what))
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Appends big-endian primitives to a `Vec<u8>`.
pub trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    /// `int4 length` + bytes.
    fn put_bytes(&mut self, v: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v)
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes())
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes())
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes())
    }
    fn put_bytes(&mut self, v: &[u8]) {
        // Lengths are bounded by validation (MAX_ARRAY) long before they reach an encoder.
        self.put_u32(v.len() as u32);
        self.extend_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_reader() {
        let mut r = Reader::new(&[0, 0, 0, 2, b'h', b'i', 9]);
        assert_eq!(r.string("s").unwrap(), "hi");
        assert_eq!(r.finish(), Err(DecodeError::Trailing(1)));
        let mut r = Reader::new(&[0, 0, 0, 9, b'h']);
        assert!(matches!(r.bytes("b"), Err(DecodeError::Truncated { .. })));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(r.bytes("b"), Err(DecodeError::TooLong { .. })));
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.count("n", 4),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
