//! `idnode export --online`: the client of a running node's online export
//! (`GET /sync/export`, served by `server::http::backup`), asked of its own HTTP listener
//! with the operator token from its data directory, as `idnode sync status` asks.
//!
//! A blocking HTTP/1.1 exchange on loopback (the CLI needs no HTTP client stack for one
//! request) that copies the streamed body to the output as it arrives: memory is one line
//! (the last, kept to read the trailer), whatever the registry holds. The body comes
//! chunked; a body cut before its last chunk, or one that does not end with the
//! `{"export": ...}` trailer line ([`crate::wire::sync::ExportTrailer`]), is an error: the
//! output is then incomplete and must not be used.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::wire::sync::{ExportTrailer, ExportTrailerLine, FeedError};

/// Why the export could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Ask(#[from] super::status::AskError),
    #[error("the export stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("the node refused /sync/export ({0}): {1}")]
    Refused(u16, String),
    #[error("the node's answer is not HTTP: {0:?}")]
    NotHttp(String),
    #[error("the export ended without its trailer line: it is incomplete")]
    Incomplete,
}

/// Longest line of the HTTP head, or of a chunk size, read.
const MAX_HEAD_LINE: u64 = 8 << 10;

/// Ask the node listening (plain HTTP) on `listen` for its online export and copy it to
/// `out`; an unspecified listen address is asked on 127.0.0.1. Returns the trailer (the
/// sequence the export is consistent at) once the whole export is in `out`.
pub fn fetch(
    listen: SocketAddr,
    data_dir: &Path,
    out: &mut impl Write,
) -> Result<ExportTrailer, BackupError> {
    // Between two chunks the node may be replaying its change log: give it time.
    let s = super::status::ask_node(listen, data_dir, "/sync/export", Duration::from_secs(120))?;
    let mut reader = BufReader::with_capacity(64 << 10, s);
    let status_line = head_line(&mut reader)?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| BackupError::NotHttp(status_line.clone()))?;
    let (mut chunked, mut length) = (false, None);
    loop {
        let line = head_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name == "content-length" {
            length = value.parse::<u64>().ok();
        }
    }
    let mut body: Box<dyn Read> = match (chunked, length) {
        (true, _) => Box::new(Chunked::new(reader)),
        (false, Some(n)) => Box::new(reader.take(n)),
        (false, None) => Box::new(reader),
    };
    if status != 200 {
        let mut text = Vec::new();
        body.take(64 << 10).read_to_end(&mut text)?;
        let why = serde_json::from_slice::<FeedError>(&text)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&text).into_owned());
        return Err(BackupError::Refused(status, why));
    }
    let mut lines = LastLine::new(out);
    std::io::copy(&mut body, &mut lines)?;
    lines.flush()?;
    let last = lines.last_line();
    serde_json::from_slice::<ExportTrailerLine>(last)
        .map(|l| l.export)
        .map_err(|_| BackupError::Incomplete)
}

/// One line of the HTTP head, without its CRLF.
fn head_line(reader: &mut impl BufRead) -> Result<String, BackupError> {
    let mut line = String::new();
    reader.take(MAX_HEAD_LINE).read_line(&mut line)?;
    if !line.ends_with('\n') {
        return Err(BackupError::NotHttp(line));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// A `Transfer-Encoding: chunked` body; ending before the last (empty) chunk is an error.
struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Chunked<R> {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        (&mut self.inner).take(MAX_HEAD_LINE).read_line(&mut line)?;
        if !line.ends_with('\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the export was cut off",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if size == 0 {
                // Trailer fields, then the empty line that ends the body.
                while !self.line()?.is_empty() {}
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the export was cut off",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 && !self.line()?.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a chunk longer than its size",
            ));
        }
        Ok(n)
    }
}

/// Passes everything on and keeps the last complete line (the trailer, at the end).
struct LastLine<W> {
    out: W,
    current: Vec<u8>,
    last: Vec<u8>,
}

impl<W: Write> LastLine<W> {
    fn new(out: W) -> LastLine<W> {
        LastLine {
            out,
            current: Vec::new(),
            last: Vec::new(),
        }
    }

    fn last_line(&self) -> &[u8] {
        if self.current.iter().all(u8::is_ascii_whitespace) {
            &self.last
        } else {
            // Bytes after the last newline: the output did not end with a whole line.
            &[]
        }
    }
}

impl<W: Write> Write for LastLine<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.out.write_all(data)?;
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.current.extend_from_slice(&rest[..i]);
            self.last = std::mem::take(&mut self.current);
            rest = &rest[i + 1..];
        }
        self.current.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unchunk(wire: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Chunked::new(wire).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn chunked_bodies_must_reach_their_last_chunk() {
        assert_eq!(
            unchunk(b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n").unwrap(),
            b"hello!"
        );
        // Cut in a chunk, cut before the last chunk, a bad size, a chunk overrunning.
        for bad in [
            &b"5\r\nhel"[..],
            b"5\r\nhello\r\n",
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"2\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(unchunk(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_last_whole_line_is_kept() {
        let mut out = Vec::new();
        let mut l = LastLine::new(&mut out);
        l.write_all(b"{\"a\":1}\n{\"ex").unwrap();
        l.write_all(b"port\":2}\n").unwrap();
        assert_eq!(l.last_line(), b"{\"export\":2}");
        l.write_all(b"{\"cut").unwrap();
        assert_eq!(l.last_line(), b"");
        drop(l);
        assert_eq!(out, b"{\"a\":1}\n{\"export\":2}\n{\"cut");
    }
}
