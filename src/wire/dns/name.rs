//! The zone and the name mapping of the DNS face (the "Names" part of the [`super`] docs):
//! identifiers to DNS names and back (`Zone::name_of`, `Zone::classify`), the empty
//! non-terminals above homed prefixes, the apex records (SOA, NS) and the base32 of encoded
//! suffix labels. Pure: hickory-proto names and records, the model's handles, nothing else.

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record};

use crate::model::{Handle, Prefix, SuffixCase};

/// The mark of an encoded suffix label.
pub const ENCODED_MARK: &[u8] = b"x--";
/// Base32 characters per encoded label (3 + 60 = 63 bytes, the label limit).
pub const ENCODED_CHUNK: usize = 60;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS name in wire form.
pub const MAX_NAME_LEN: usize = 255;
/// SOA timers.
pub const SOA_REFRESH: i32 = 3600;
pub const SOA_RETRY: i32 = 600;
pub const SOA_EXPIRE: i32 = 604_800;

/// Why an identifier has no DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "prefix segment {0:?} is not a plain DNS label (ASCII letters, digits and '-', 1-63 \
         bytes, not starting with \"x--\")"
    )]
    PrefixSegment(String),
    #[error("the DNS name would be {0} bytes; names hold at most 255")]
    NameTooLong(usize),
}

/// A configured name that is not a domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a domain name: {reason}")]
pub struct BadName {
    pub name: String,
    pub reason: String,
}

/// Parse a configured domain name; it is absolute whether or not it ends with a dot.
pub fn absolute_name(text: &str) -> Result<Name, BadName> {
    let mut name = Name::from_ascii(text).map_err(|e| BadName {
        name: text.to_string(),
        reason: e.to_string(),
    })?;
    name.set_fqdn(true);
    Ok(name)
}

/// What a query name means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameMeaning {
    /// Not under the zone (REFUSED).
    OutsideZone,
    /// The zone apex (SOA, NS).
    Apex,
    /// Under the zone but no identifier (NXDOMAIN).
    NotAnIdentifier,
    /// Identifier candidates, in the order to try them (one or two).
    Identifier(Vec<Handle>),
}

/// The zone identifiers live under, with its apex data and answer limits.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    origin_labels: usize,
    /// SOA MNAME (default `ns1.<zone>`).
    pub mname: Name,
    /// SOA RNAME (default `hostmaster.<zone>`).
    pub rname: Name,
    /// NS names (default `ns1.<zone>`).
    pub ns: Vec<Name>,
    /// TTL of SOA and NS records and SOA MINIMUM (negative caching).
    pub negative_ttl: u32,
    /// Largest UDP payload offered to EDNS clients.
    pub max_udp_payload: u16,
    /// How the node's suffixes compare.
    pub suffix_case: SuffixCase,
    /// The prefixes this node homes. Names on the path down to them (`88.<zone>`,
    /// `100.88.<zone>`, `1.100.88.<zone>`) are empty non-terminals: NODATA, never NXDOMAIN,
    /// so resolvers that minimise query names (RFC 9156) or stop below an NXDOMAIN
    /// (RFC 8020) still reach the identifiers.
    pub homed: Vec<Prefix>,
}

impl Zone {
    /// Is `name` on the path from the apex down to one of the homed prefixes, or to the
    /// prefix handles `0.NA/<prefix>` (`0.<zone>`, `na.0.<zone>`) that a node homing
    /// prefixes holds?
    pub fn is_empty_non_terminal(&self, name: &Name) -> bool {
        if self.homed.is_empty() || !self.origin.zone_of(name) {
            return false;
        }
        let below = name.iter().count().saturating_sub(self.origin_labels);
        if below == 0 {
            return false;
        }
        let mut segments: Vec<String> = Vec::with_capacity(below);
        for label in name.iter().take(below) {
            if !is_ldh(label) {
                return false;
            }
            segments.push(String::from_utf8_lossy(label).into_owned());
        }
        segments.reverse();
        let path = segments.join(".");
        if path == "0" || path.eq_ignore_ascii_case("0.na") {
            return true;
        }
        match Prefix::parse(&path) {
            Ok(path) => self.homed.iter().any(|h| path.is_ancestor_or_self_of(h)),
            Err(_) => false,
        }
    }

    /// A zone with the default apex data (`ns1.<zone>`, `hostmaster.<zone>`, negative TTL 60,
    /// UDP payload 1232).
    pub fn new(origin: &str, suffix_case: SuffixCase) -> Result<Zone, BadName> {
        let origin = absolute_name(origin)?;
        let below = |label: &str| {
            origin.prepend_label(label).map_err(|e| BadName {
                name: format!("{label}.{origin}"),
                reason: e.to_string(),
            })
        };
        let ns1 = below("ns1")?;
        Ok(Zone {
            origin_labels: origin.iter().count(),
            mname: ns1.clone(),
            rname: below("hostmaster")?,
            ns: vec![ns1],
            origin,
            negative_ttl: 60,
            max_udp_payload: 1232,
            suffix_case,
            homed: Vec::new(),
        })
    }

    /// The zone's name.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA record of the zone with this serial.
    pub fn soa(&self, serial: u32) -> Record {
        Record::from_rdata(
            self.origin.clone(),
            self.negative_ttl,
            RData::SOA(SOA::new(
                self.mname.clone(),
                self.rname.clone(),
                serial,
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                self.negative_ttl,
            )),
        )
    }

    /// The NS records of the zone.
    pub fn ns_records(&self) -> impl Iterator<Item = Record> + '_ {
        self.ns.iter().map(|n| {
            Record::from_rdata(
                self.origin.clone(),
                self.negative_ttl,
                RData::NS(NS(n.clone())),
            )
        })
    }

    /// The DNS name of an identifier.
    pub fn name_of(&self, handle: &Handle) -> Result<Name, MappingError> {
        let prefix = handle.prefix();
        let mut segments: Vec<Vec<u8>> = Vec::new();
        for segment in prefix.as_str().split('.') {
            let bytes = segment.as_bytes();
            if !is_ldh(bytes) || has_mark(bytes) {
                return Err(MappingError::PrefixSegment(segment.to_string()));
            }
            segments.push(bytes.to_ascii_lowercase());
        }
        let suffix = suffix_labels(handle.suffix(), self.suffix_case);
        let origin_len: usize = self.origin.iter().map(|l| l.len() + 1).sum();
        let len = suffix
            .iter()
            .chain(segments.iter())
            .map(|l| l.len() + 1)
            .sum::<usize>()
            + origin_len
            + 1;
        if len > MAX_NAME_LEN {
            return Err(MappingError::NameTooLong(len));
        }
        let labels: Vec<&[u8]> = suffix
            .iter()
            .map(Vec::as_slice)
            .chain(segments.iter().rev().map(Vec::as_slice))
            .chain(self.origin.iter())
            .collect();
        Name::from_labels(labels).map_err(|_| MappingError::NameTooLong(len))
    }

    /// What a query name means under this zone.
    pub fn classify(&self, name: &Name) -> NameMeaning {
        if !self.origin.zone_of(name) {
            return NameMeaning::OutsideZone;
        }
        let below = name.iter().count().saturating_sub(self.origin_labels);
        if below == 0 {
            return NameMeaning::Apex;
        }
        match identifier_candidates(name.iter().take(below), self.suffix_case) {
            Some(candidates) => NameMeaning::Identifier(candidates),
            None => NameMeaning::NotAnIdentifier,
        }
    }
}

fn is_ldh(label: &[u8]) -> bool {
    (1..=MAX_LABEL_LEN).contains(&label.len())
        && label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

pub(super) fn has_mark(label: &[u8]) -> bool {
    label.len() >= ENCODED_MARK.len()
        && label[..ENCODED_MARK.len()].eq_ignore_ascii_case(ENCODED_MARK)
}

/// Can this suffix be a plain label under the case rule?
pub fn is_plain_suffix(suffix: &str, case: SuffixCase) -> bool {
    let b = suffix.as_bytes();
    if !is_ldh(b) || has_mark(b) {
        return false;
    }
    case == SuffixCase::Insensitive
        || !b.iter().any(u8::is_ascii_lowercase)
        || !b.iter().any(u8::is_ascii_uppercase)
}

/// The label(s) a suffix is written as.
pub fn suffix_labels(suffix: &str, case: SuffixCase) -> Vec<Vec<u8>> {
    if is_plain_suffix(suffix, case) {
        return vec![suffix.as_bytes().to_ascii_lowercase()];
    }
    base32_encode(suffix.as_bytes())
        .as_bytes()
        .chunks(ENCODED_CHUNK)
        .map(|chunk| [ENCODED_MARK, chunk].concat())
        .collect()
}

/// Decode the labels below the zone (first label first) into identifier candidates.
fn identifier_candidates<'a>(
    labels: impl Iterator<Item = &'a [u8]>,
    case: SuffixCase,
) -> Option<Vec<Handle>> {
    let mut labels = labels.peekable();
    let first = labels.next()?;
    let (suffix, plain) = if has_mark(first) {
        let mut encoded = Vec::with_capacity(first.len());
        let mut chunk = first;
        loop {
            let data = &chunk[ENCODED_MARK.len()..];
            if data.is_empty() {
                return None;
            }
            encoded.extend_from_slice(data);
            match labels.peek() {
                Some(next) if has_mark(next) => chunk = labels.next()?,
                _ => break,
            }
        }
        (String::from_utf8(base32_decode(&encoded)?).ok()?, false)
    } else if is_ldh(first) {
        (String::from_utf8(first.to_ascii_lowercase()).ok()?, true)
    } else {
        return None;
    };
    // The prefix segments, last first.
    let mut segments: Vec<&[u8]> = Vec::new();
    for label in labels {
        if !is_ldh(label) || has_mark(label) {
            return None;
        }
        segments.push(label);
    }
    if segments.is_empty() {
        return None;
    }
    let mut prefix = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for (i, s) in segments.iter().rev().enumerate() {
        if i > 0 {
            prefix.push('.');
        }
        for &b in *s {
            prefix.push(char::from(b.to_ascii_lowercase()));
        }
    }
    let first = Handle::parse(&format!("{prefix}/{suffix}"), case).ok()?;
    let mut candidates = vec![first];
    if plain && case == SuffixCase::Sensitive {
        let upper = suffix.to_ascii_uppercase();
        if upper != suffix {
            if let Ok(h) = Handle::parse(&format!("{prefix}/{upper}"), case) {
                if !candidates.contains(&h) {
                    candidates.push(h);
                }
            }
        }
    }
    Some(candidates)
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lower-case, no padding.
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity((data.len() * 8).div_ceil(5));
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decode unpadded base32 (either case); `None` for bad characters, impossible lengths or
/// non-zero trailing bits.
pub fn base32_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in text {
        let v = match c.to_ascii_lowercase() {
            l @ b'a'..=b'z' => l - b'a',
            d @ b'2'..=b'7' => d - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 5 && acc == 0).then_some(out)
}
