//! The ISO-8601 / RFC 3339 UTC times of REST JSON (absolute `ttl`, `timestamp`), to and from
//! unix seconds in `u32` (1970 ..= 2106).

use std::time::{Duration, UNIX_EPOCH};

/// Unix seconds as ISO-8601 UTC without fractions: `2024-01-01T00:00:00Z`.
pub fn format_time(unix: u32) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.into())).to_string()
}

/// Parse an ISO-8601 / RFC 3339 time (`2024-01-01T00:00:00Z`, with or without fractional
/// seconds, which are truncated; `Z`, a `±hh:mm` offset, or no zone = UTC) into unix seconds.
/// `None` when malformed or outside 1970-01-01 ..= 2106-02-07T06:28:15Z.
pub fn parse_time(s: &str) -> Option<u32> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    let upper = s.to_ascii_uppercase();
    let b = upper.as_bytes();
    let n = b.len();
    let (body, offset) = if let Some(body) = upper.strip_suffix('Z') {
        (body, 0i64)
    } else if n >= 25 && matches!(b[n - 6], b'+' | b'-') && b[n - 3] == b':' {
        let two = |i: usize| -> Option<i64> {
            let (h, l) = (b[i], b[i + 1]);
            (h.is_ascii_digit() && l.is_ascii_digit())
                .then(|| i64::from((h - b'0') * 10 + l - b'0'))
        };
        let (hours, minutes) = (two(n - 5)?, two(n - 2)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        let sign = if b[n - 6] == b'-' { -1 } else { 1 };
        (&upper[..n - 6], sign * (hours * 3600 + minutes * 60))
    } else {
        (upper.as_str(), 0)
    };
    // humantime checks the layout; make sure nothing else (a second zone, …) rides along.
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'.' | b'T' | b' '))
    {
        return None;
    }
    let local = humantime::parse_rfc3339_weak(body).ok()?;
    let secs = i64::try_from(local.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    u32::try_from(secs - offset).ok()
}
