//! The DNS records of an identifier's values (the "Answers" part of the [`super`] docs):
//! TXT text per public value, URI (RFC 7553, as unknown RDATA) and ONS-style NAPTR for URL
//! values, one TTL per RRset. Used by the answers here and by the zone-file export.

use base64::Engine as _;
use hickory_proto::rr::rdata::{NAPTR, NULL, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::model::HandleValue;

/// The URI record type (RFC 7553).
pub const URI: RecordType = RecordType::Unknown(256);
/// Ceiling of a value's TTL in DNS answers (two days).
pub const MAX_VALUE_TTL: u32 = 2 * 86_400;
/// NAPTR preference of URL records.
pub const NAPTR_PREFERENCE: u16 = 10;

/// The TXT text of a value: `"<index> <type> <data>"`, binary data as `base64:<base64>`.
pub fn txt_text(value: &HandleValue) -> Vec<u8> {
    let mut text = format!("{} {} ", value.index, value.type_name).into_bytes();
    match value.data_text() {
        Some(s) => text.extend_from_slice(s.as_bytes()),
        None => {
            text.extend_from_slice(b"base64:");
            text.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&value.data)
                    .as_bytes(),
            );
        }
    }
    text
}

/// TXT RDATA of a value, cut into character-strings of at most 255 bytes.
pub fn txt_rdata(value: &HandleValue) -> TXT {
    let text = txt_text(value);
    TXT::from_bytes(text.chunks(255).collect())
}

/// The URL of a `URL` / `URL.*` value with non-empty UTF-8 data.
pub fn url_of(value: &HandleValue) -> Option<&str> {
    if !value.matches_type_query("URL.") {
        return None;
    }
    value.data_str().filter(|u| !u.is_empty())
}

/// URI RDATA (RFC 7553): priority, weight, target.
pub fn uri_rdata(priority: u16, weight: u16, target: &str) -> RData {
    let mut bytes = Vec::with_capacity(4 + target.len());
    bytes.extend_from_slice(&priority.to_be_bytes());
    bytes.extend_from_slice(&weight.to_be_bytes());
    bytes.extend_from_slice(target.as_bytes());
    RData::Unknown {
        code: URI,
        rdata: NULL::with(bytes),
    }
}

/// Parse URI RDATA back: (priority, weight, target).
pub fn parse_uri_rdata(rdata: &RData) -> Option<(u16, u16, String)> {
    let RData::Unknown { code, rdata } = rdata else {
        return None;
    };
    if *code != URI {
        return None;
    }
    let b = &rdata.anything;
    let priority = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    let weight = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    let target = String::from_utf8(b.get(4..)?.to_vec()).ok()?;
    Some((priority, weight, target))
}

/// NAPTR RDATA (ONS style) for a URL value; `None` when the regexp would exceed 255 bytes.
pub fn naptr_rdata(order: u16, url: &str) -> Option<NAPTR> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let services: &[u8] = if lower.starts_with("https:") {
        b"E2U+web:https"
    } else if lower.starts_with("http:") {
        b"E2U+web:http"
    } else {
        b"E2U+web"
    };
    let mut regexp = Vec::with_capacity(url.len() + 8);
    regexp.extend_from_slice(b"!^.*$!");
    for &b in url.as_bytes() {
        if b == b'\\' || b == b'!' {
            regexp.push(b'\\');
        }
        regexp.push(b);
    }
    regexp.push(b'!');
    if regexp.len() > 255 {
        return None;
    }
    Some(NAPTR::new(
        order,
        NAPTR_PREFERENCE,
        Box::from(&b"u"[..]),
        Box::from(services),
        regexp.into_boxed_slice(),
        Name::root(),
    ))
}

fn clamp_u16(index: u32) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

/// The records of `qtype` (TXT, URI, NAPTR or ANY) for an identifier's values, owned by
/// `owner`, appended to `out`. Values that are not public ([`HandleValue::is_public`]) are
/// skipped.
pub fn value_records(
    owner: &Name,
    values: &[HandleValue],
    qtype: RecordType,
    now: u32,
    out: &mut Vec<Record>,
) {
    let any = qtype == RecordType::ANY;
    let public = || values.iter().filter(|v| v.is_public());
    let ttl = |v: &HandleValue| v.ttl.seconds_from(now, MAX_VALUE_TTL);
    if any || qtype == RecordType::TXT {
        let start = out.len();
        for v in public() {
            out.push(Record::from_rdata(
                owner.clone(),
                ttl(v),
                RData::TXT(txt_rdata(v)),
            ));
        }
        one_ttl(&mut out[start..]);
    }
    if any || qtype == URI {
        let start = out.len();
        for v in public() {
            if let Some(url) = url_of(v) {
                let rdata = uri_rdata(clamp_u16(v.index), 1, url);
                out.push(Record::from_rdata(owner.clone(), ttl(v), rdata));
            }
        }
        one_ttl(&mut out[start..]);
    }
    if any || qtype == RecordType::NAPTR {
        let start = out.len();
        for v in public() {
            if let Some(naptr) = url_of(v).and_then(|u| naptr_rdata(clamp_u16(v.index), u)) {
                out.push(Record::from_rdata(
                    owner.clone(),
                    ttl(v),
                    RData::NAPTR(naptr),
                ));
            }
        }
        one_ttl(&mut out[start..]);
    }
}

/// Give the records of one RRset the smallest of their TTLs: RFC 2181 §5.2 wants one TTL per
/// RRset, and a cache must not keep any of them longer than the shortest-lived value allows.
fn one_ttl(rrset: &mut [Record]) {
    if let Some(min) = rrset.iter().map(|r| r.ttl).min() {
        for r in rrset {
            r.ttl = min;
        }
    }
}
