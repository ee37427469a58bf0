//! The DNS face of the identifier namespace, in the style of the OID Resolution System and GS1
//! ONS (idis-system.md §9): pure functions between identifiers and DNS names, and between
//! resolutions and DNS messages (hickory-proto types). No sockets and no tokio here;
//! `server::dns` runs these on UDP and TCP.
//!
//! # Names
//!
//! An identifier `<prefix>/<suffix>` is the name `<suffix label(s)>.<seg n>…<seg 1>.<zone>`:
//! the prefix segments last first (like ORS arcs), so `88.100.1/SN-0001` under `id.example.` is
//! `sn-0001.1.100.88.id.example.`.
//!
//! - **Prefix segments** must each be a plain LDH label (ASCII letters, digits, `-`; 1–63
//!   bytes) that does not start with `x--`; they are written lower-case (prefixes are
//!   case-insensitive). An identifier whose prefix has another segment cannot be named
//!   ([`MappingError::PrefixSegment`]).
//! - **Plain suffix**: a suffix of 1–63 bytes of `[A-Za-z0-9-]` that does not start with
//!   `x--` (any case), and whose letters are all lower-case or all upper-case (any mix when
//!   the node's suffixes are case-insensitive), is one label: the suffix lower-cased. Such a
//!   label `l` maps back to the candidates `prefix/l` then `prefix/L` (upper-cased) when
//!   suffixes are case-sensitive, to `prefix/l` alone otherwise; the server answers for the
//!   first candidate that exists (so `sn-0001.1.100.88.id.example` finds `88.100.1/SN-0001`).
//! - **Encoded suffix**: any other suffix (dots, slashes, non-ASCII, longer than 63 bytes, or
//!   mixed case that matters) is the base32 (RFC 4648 alphabet, lower-case, no padding) of its
//!   UTF-8, cut into chunks of at most 60 characters, each label `x--<chunk>`. Reading a name,
//!   the suffix is all the leading `x--` labels concatenated (base32 is read
//!   case-insensitively, so resolvers that randomize the case of query names still work).
//!   Bad base32 or UTF-8 means "not an identifier".
//! - The label right below the prefix labels is always the suffix. A name with one label
//!   under the zone (e.g. `88.id.example.`) has no prefix; it and every other name that does
//!   not decode to an identifier passing `Handle::parse` under the node's suffix case rule is
//!   [`NameMeaning::NotAnIdentifier`] (NXDOMAIN), except the names on the path down to a
//!   homed prefix (`88.`, `100.88.`, `1.100.88.<zone>` when 88.100.1 is homed): those are
//!   empty non-terminals and get NODATA ([`Zone::is_empty_non_terminal`]), so resolvers that
//!   minimise query names still reach the records. The apex has the SOA and NS records.
//! - DNS names hold at most 255 bytes: identifiers whose name would be longer (roughly, a
//!   suffix beyond ~130 bytes once encoded, less with long prefixes or zones) are **not
//!   reachable through DNS** ([`MappingError::NameTooLong`]); the native protocol and HTTP
//!   still serve them.
//!
//! # Answers
//!
//! Only public values are ever published: PUBLIC_READ set, and never a secret (HS_SECKEY,
//! HS_PRIVKEY), whatever its permissions ([`HandleValue::is_public`]).
//! - **TXT**: one record per value, text `"<index> <type> <data>"`; the data as it is when it
//!   is printable UTF-8 (the REST API's rule: no control characters other than tab, CR, LF),
//!   else `base64:<standard base64>`; cut into character-strings of at most 255 bytes.
//! - **URI** (RFC 7553, type 256; hickory has no URI type, so it is emitted as unknown RDATA):
//!   one per `URL` / `URL.*` value with non-empty UTF-8 data: priority = min(index, 65535),
//!   weight 1, target = the URL.
//! - **NAPTR** (ONS style): one per such URL value: order = min(index, 65535), preference
//!   10, flags `u`, services `E2U+web:https` / `E2U+web:http` by the URL's scheme (`E2U+web`
//!   for other schemes), regexp `!^.*$!<url>!` (with `\` and `!` in the URL escaped by a
//!   backslash), replacement `.`. URLs too long for the 255-byte regexp get no NAPTR.
//! - **ANY** gets all three; other types at an identifier that exists get NODATA.
//! - TTLs come from the values ([`Ttl::seconds_from`](crate::model::Ttl::seconds_from), at
//!   most [`MAX_VALUE_TTL`]); the records of one RRset (an identifier's TXT, URI or NAPTR
//!   records) all get the smallest of their values' TTLs (RFC 2181 §5.2). SOA and NS use the
//!   zone's negative TTL.
//! - The apex has SOA (serial supplied by the caller: the registry's change-log sequence,
//!   refresh 3600, retry 600, expire 604800, minimum = negative TTL) and NS records.
//! - NXDOMAIN (no such identifier) and NODATA (no record of that type) carry the SOA in the
//!   authority section, for negative caching.
//!
//! # Requests and response codes
//!
//! [`decide`] turns a packet into a [`Decision`]:
//! - too short for a header, or a response (QR=1): no answer at all;
//! - opcode other than QUERY: NOTIMP; not exactly one question: FORMERR; undecodable
//!   (truncated, compression loop, name over 255 bytes, ...): FORMERR echoing the id;
//! - EDNS version other than 0: BADVERS;
//! - class other than IN or ANY: REFUSED; AXFR and IXFR: REFUSED; names outside the zone:
//!   REFUSED;
//! - otherwise an answer from the zone (apex, NXDOMAIN) or identifier candidates to look up,
//!   answered with [`answer`].
//!
//! A query with an OPT record gets one back advertising the zone's `max_udp_payload`; its UDP
//! answers may be min(client's payload, zone's) bytes (at least 512); without OPT, 512.
//! [`encode`] writes a response into a reused buffer and, when it does not fit, sends the header
//! and question only with TC set (the client retries over TCP, where 65535 bytes fit).

use base64::Engine as _;
use hickory_proto::op::{emit_message_parts, Edns, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{NAPTR, NS, NULL, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

use crate::model::{Handle, HandleValue, Prefix, SuffixCase};

pub mod zonefile;

/// The mark of an encoded suffix label.
pub const ENCODED_MARK: &[u8] = b"x--";
/// Base32 characters per encoded label (3 + 60 = 63 bytes, the label limit).
pub const ENCODED_CHUNK: usize = 60;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS name in wire form.
pub const MAX_NAME_LEN: usize = 255;
/// The URI record type (RFC 7553).
pub const URI: RecordType = RecordType::Unknown(256);
/// Ceiling of a value's TTL in DNS answers (two days).
pub const MAX_VALUE_TTL: u32 = 2 * 86_400;
/// UDP payload every DNS client takes.
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// Largest message over TCP (2-byte length prefix).
pub const MAX_TCP_MESSAGE: u16 = u16::MAX;
/// SOA timers.
pub const SOA_REFRESH: i32 = 3600;
pub const SOA_RETRY: i32 = 600;
pub const SOA_EXPIRE: i32 = 604_800;
/// NAPTR preference of URL records.
pub const NAPTR_PREFERENCE: u16 = 10;

const HEADER_LEN: usize = 12;

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

fn has_mark(label: &[u8]) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Records

/// Text "looks binary" when it holds a control character other than tab, CR, LF (or DEL): the
/// rule of the REST API's `string` vs `base64` data.
fn looks_binary(text: &str) -> bool {
    text.bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f)
}

/// The TXT text of a value: `"<index> <type> <data>"`, binary data as `base64:<base64>`.
pub fn txt_text(value: &HandleValue) -> Vec<u8> {
    let mut text = format!("{} {} ", value.index, value.type_name).into_bytes();
    match std::str::from_utf8(&value.data) {
        Ok(s) if !looks_binary(s) => text.extend_from_slice(s.as_bytes()),
        _ => {
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

// ---------------------------------------------------------------------------------------------
// Messages

/// A decoded query: opcode QUERY, exactly one question of class IN or ANY, for a name in the
/// zone.
#[derive(Debug, Clone)]
pub struct Request {
    message: Message,
    /// Largest UDP response the client takes.
    pub udp_limit: u16,
}

impl Request {
    /// The message as received.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The query name as the client wrote it.
    pub fn name(&self) -> Option<&Name> {
        self.message.queries.first().map(|q| q.name())
    }

    /// The query type.
    pub fn query_type(&self) -> Option<RecordType> {
        self.message.queries.first().map(|q| q.query_type())
    }
}

/// A response and the UDP size limit of its client.
#[derive(Debug, Clone)]
pub struct Response {
    pub message: Message,
    pub udp_limit: u16,
}

/// What to do with a packet.
#[derive(Debug)]
pub enum Decision {
    /// Send nothing (a response, or not even a header).
    Drop,
    /// Send this.
    Reply(Response),
    /// Look up these identifier candidates in order, then [`answer`].
    Lookup {
        request: Request,
        candidates: Vec<Handle>,
    },
}

/// What the lookup of an identifier found.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// The identifier's values (filtered to public ones when answering).
    Values(&'a [HandleValue]),
    /// No such identifier: NXDOMAIN.
    NoHandle,
    /// The identifier has no (public) values: NODATA.
    NoValues,
    /// Not answerable here: REFUSED.
    Refused,
    /// The lookup failed: SERVFAIL.
    ServFail,
}

/// The rcode mnemonic used as the metrics label.
pub fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

/// An error response to a packet whose header is readable but whose rest is not used: id,
/// opcode, RD and CD echoed, no question.
fn header_error(packet: &[u8], code: ResponseCode) -> Response {
    let (id, flags) = match packet {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), [*c, *d]),
        _ => (0, [0, 0]),
    };
    let mut message = Message::error_msg(id, OpCode::from_u8((flags[0] >> 3) & 0x0f), code);
    message.metadata.recursion_desired = flags[0] & 0x01 != 0;
    message.metadata.checking_disabled = flags[1] & 0x10 != 0;
    Response {
        message,
        udp_limit: MIN_UDP_PAYLOAD,
    }
}

/// Turn a received query into the skeleton of its response: header from the request (id,
/// opcode, RD, CD), the question echoed, no records, an OPT record when the query had one.
fn response_to(mut message: Message, zone: &Zone, code: ResponseCode, aa: bool) -> Message {
    message.metadata = Metadata::response_from_request(&message.metadata);
    message.metadata.response_code = code;
    message.metadata.authoritative = aa;
    message.answers.clear();
    message.authorities.clear();
    message.additionals.clear();
    message.signature = None;
    if message.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(zone.max_udp_payload.max(MIN_UDP_PAYLOAD));
        message.edns = Some(edns);
    }
    message
}

/// Decide what a packet gets. `serial` is the SOA serial for answers from the zone itself.
pub fn decide(packet: &[u8], zone: &Zone, serial: u32) -> Decision {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return Decision::Drop;
    }
    if (packet[2] >> 3) & 0x0f != 0 {
        return Decision::Reply(header_error(packet, ResponseCode::NotImp));
    }
    // Checked before decoding: hickory reserves room for every announced question.
    if u16::from_be_bytes([packet[4], packet[5]]) != 1 {
        return Decision::Reply(header_error(packet, ResponseCode::FormErr));
    }
    let message = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return Decision::Reply(header_error(packet, ResponseCode::FormErr)),
    };
    let udp_limit = match &message.edns {
        Some(edns) => edns
            .max_payload()
            .min(zone.max_udp_payload)
            .max(MIN_UDP_PAYLOAD),
        None => MIN_UDP_PAYLOAD,
    };
    let reply = |message: Message, code: ResponseCode, aa: bool| {
        Decision::Reply(Response {
            message: response_to(message, zone, code, aa),
            udp_limit,
        })
    };
    if message.edns.as_ref().is_some_and(|e| e.version() != 0) {
        return reply(message, ResponseCode::BADVERS, false);
    }
    let Some(query) = message.queries.first() else {
        return Decision::Reply(header_error(packet, ResponseCode::FormErr));
    };
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
        || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
    {
        return reply(message, ResponseCode::Refused, false);
    }
    match zone.classify(query.name()) {
        NameMeaning::OutsideZone => reply(message, ResponseCode::Refused, false),
        NameMeaning::NotAnIdentifier => {
            let code = if zone.is_empty_non_terminal(query.name()) {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            let mut m = response_to(message, zone, code, true);
            m.authorities.push(zone.soa(serial));
            Decision::Reply(Response {
                message: m,
                udp_limit,
            })
        }
        NameMeaning::Apex => {
            let qtype = query.query_type();
            let mut m = response_to(message, zone, ResponseCode::NoError, true);
            let any = qtype == RecordType::ANY;
            if any || qtype == RecordType::SOA {
                m.answers.push(zone.soa(serial));
            }
            if any || qtype == RecordType::NS {
                m.answers.extend(zone.ns_records());
            }
            if m.answers.is_empty() {
                m.authorities.push(zone.soa(serial));
            }
            Decision::Reply(Response {
                message: m,
                udp_limit,
            })
        }
        NameMeaning::Identifier(candidates) => Decision::Lookup {
            request: Request { message, udp_limit },
            candidates,
        },
    }
}

/// The response to an identifier query once its lookup found `found`. `authoritative` is
/// false for answers that came through recursion. `now` (unix seconds) turns absolute value
/// TTLs into relative ones.
pub fn answer(
    request: Request,
    found: Found<'_>,
    zone: &Zone,
    serial: u32,
    now: u32,
    authoritative: bool,
) -> Response {
    let udp_limit = request.udp_limit;
    let question = request
        .message
        .queries
        .first()
        .map(|q| (q.name().clone(), q.query_type()));
    let (code, aa) = match found {
        Found::Values(_) | Found::NoValues => (ResponseCode::NoError, authoritative),
        Found::NoHandle => (ResponseCode::NXDomain, authoritative),
        Found::Refused => (ResponseCode::Refused, false),
        Found::ServFail => (ResponseCode::ServFail, false),
    };
    let mut message = response_to(request.message, zone, code, aa);
    if let (Found::Values(values), Some((name, qtype))) = (found, &question) {
        value_records(name, values, *qtype, now, &mut message.answers);
    }
    if matches!(found, Found::Values(_) | Found::NoValues | Found::NoHandle)
        && message.answers.is_empty()
    {
        message.authorities.push(zone.soa(serial));
    }
    Response { message, udp_limit }
}

/// Encode `message` into `out` (cleared first) in at most `limit` bytes (at least 512). A
/// message that does not fit is sent as its header and question (and OPT) with TC set; one
/// that cannot be encoded at all becomes a bare SERVFAIL header. Returns true when truncated.
pub fn encode(message: &Message, limit: u16, out: &mut Vec<u8>) -> bool {
    let limit = limit.max(MIN_UDP_PAYLOAD);
    out.clear();
    let full = {
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(limit);
        emit_message_parts(
            &message.metadata,
            &mut message.queries.iter(),
            &mut message.answers.iter(),
            &mut message.authorities.iter(),
            &mut message.additionals.iter(),
            message.edns.as_ref(),
            None,
            &mut encoder,
        )
    };
    match full {
        Ok(header) if !header.metadata.truncation || message.metadata.truncation => return false,
        Ok(_) => {}
        Err(_) => {
            servfail_header(&message.metadata, out);
            return false;
        }
    }
    out.clear();
    let mut metadata = message.metadata;
    metadata.truncation = true;
    let short = {
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(limit);
        emit_message_parts(
            &metadata,
            &mut message.queries.iter(),
            &mut std::iter::empty::<&Record>(),
            &mut std::iter::empty::<&Record>(),
            &mut std::iter::empty::<&Record>(),
            message.edns.as_ref(),
            None,
            &mut encoder,
        )
    };
    if short.is_err() {
        servfail_header(&message.metadata, out);
    }
    true
}

/// Rewrite, in place, the TTL of every resource record of an encoded DNS message (answer,
/// authority and additional sections; the OPT pseudo-record's TTL field holds EDNS flags and
/// is left alone) to `f(ttl)`. Used to count the TTLs of recursive answers down, both when
/// an answer is built from a cache entry and when a prepared answer is replayed. Returns false,
/// having maybe rewritten a part, when the message is malformed.
pub fn rewrite_ttls(message: &mut [u8], f: impl Fn(u32) -> u32) -> bool {
    fn count(message: &[u8], at: usize) -> Option<usize> {
        let b = message.get(at..at + 2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    /// The offset just past the (possibly compressed) name starting at `at`.
    fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
        loop {
            let len = *message.get(at)?;
            match len & 0xC0 {
                0x00 if len == 0 => return Some(at + 1),
                0x00 => at += 1 + usize::from(len),
                0xC0 => return Some(at + 2),
                _ => return None,
            }
        }
    }
    fn walk(message: &mut [u8], f: impl Fn(u32) -> u32) -> Option<()> {
        let questions = count(message, 4)?;
        let records = count(message, 6)? + count(message, 8)? + count(message, 10)?;
        let mut at = 12;
        for _ in 0..questions {
            at = skip_name(message, at)? + 4;
        }
        for _ in 0..records {
            at = skip_name(message, at)?;
            let fixed = message.get_mut(at..at + 10)?;
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            if rtype != u16::from(RecordType::OPT) {
                let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
                fixed[4..8].copy_from_slice(&f(ttl).to_be_bytes());
            }
            let rdlength = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
            at += 10 + rdlength;
        }
        (at <= message.len()).then_some(())
    }
    walk(message, f).is_some()
}

/// A 12-byte SERVFAIL header with no sections (the last resort; cannot fail).
fn servfail_header(metadata: &Metadata, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&metadata.id.to_be_bytes());
    let opcode: u8 = metadata.op_code.into();
    out.push(0x80 | ((opcode & 0x0f) << 3) | u8::from(metadata.recursion_desired));
    out.push((u8::from(metadata.recursion_available) << 7) | ResponseCode::ServFail.low());
    out.extend_from_slice(&[0; 8]);
}

/// The answer a rate-limited query is "slipped" (RFC-style RRL): the query's header and
/// question with QR and TC set and no records, so a real resolver retries over TCP and a
/// spoofed victim receives no more bytes than the query had. `None` for a datagram that is
/// not a one-question query.
pub fn truncated_answer(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    // QR must be clear (a query), QDCOUNT exactly 1.
    if header[2] & 0x80 != 0 || header[4..6] != [0, 1] {
        return None;
    }
    // Walk the question's name: plain labels only (no compression in a question), ≤ 255.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 || at - 12 + len + 1 > 255 {
            return None;
        }
        at += len + 1;
    }
    let end = at + 4; // QTYPE, QCLASS
    let mut out = query.get(..end)?.to_vec();
    out[2] = (header[2] & 0x79) | 0x80 | 0x02; // keep opcode and RD; set QR and TC
    out[3] = 0; // RA 0, RCODE NOERROR
    out[6..12].fill(0); // no answer, authority or additional records
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Ttl, ValuePermissions};
    use hickory_proto::op::{MessageType, Query};
    use proptest::prelude::*;

    const S: SuffixCase = SuffixCase::Sensitive;
    const I: SuffixCase = SuffixCase::Insensitive;

    fn zone(case: SuffixCase) -> Zone {
        Zone::new("id.example", case).unwrap()
    }

    fn h(text: &str, case: SuffixCase) -> Handle {
        Handle::parse(text, case).unwrap()
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn keys(meaning: &NameMeaning) -> Vec<String> {
        match meaning {
            NameMeaning::Identifier(c) => c.iter().map(|h| h.key().to_string()).collect(),
            other => panic!("not an identifier: {other:?}"),
        }
    }

    #[test]
    fn plain_names_both_ways() {
        let z = zone(S);
        let n = z.name_of(&h("88.100.1/SN-0001", S)).unwrap();
        assert_eq!(n.to_ascii(), "sn-0001.1.100.88.id.example.");
        // Sensitive: lower-case first, then upper-case.
        let m = z.classify(&name("sn-0001.1.100.88.id.example."));
        assert_eq!(keys(&m), ["88.100.1/sn-0001", "88.100.1/SN-0001"]);
        // Resolvers that randomize case get the same candidates.
        let m = z.classify(&name("Sn-0001.1.100.88.ID.example."));
        assert_eq!(keys(&m), ["88.100.1/sn-0001", "88.100.1/SN-0001"]);
        // Lower-case suffixes are plain too; digits-only suffixes have a single candidate.
        let n = z.name_of(&h("88.100.1/abc-1", S)).unwrap();
        assert_eq!(n.to_ascii(), "abc-1.1.100.88.id.example.");
        assert_eq!(
            keys(&z.classify(&name("0001.1.100.88.id.example"))),
            ["88.100.1/0001"]
        );
        // Prefixes are written lower-case and fold.
        let n = z.name_of(&h("88.ABC/X", S)).unwrap();
        assert_eq!(n.to_ascii(), "x.abc.88.id.example.");
        assert_eq!(keys(&z.classify(&n)), ["88.ABC/x", "88.ABC/X"]);
        // Insensitive: one candidate, mixed case is plain.
        let zi = zone(I);
        let n = zi.name_of(&h("88.100.1/Sn-0001", I)).unwrap();
        assert_eq!(n.to_ascii(), "sn-0001.1.100.88.id.example.");
        assert_eq!(keys(&zi.classify(&n)), ["88.100.1/SN-0001"]);
    }

    #[test]
    fn encoded_suffixes_round_trip() {
        let z = zone(S);
        for suffix in [
            "a.b",
            "SN/0001",
            "产品-0001",
            "Sn-0001",
            "x--plain",
            "X--UP",
            "with space",
            "a:b?c=d&e#f",
        ] {
            let handle = h(&format!("88.100.1/{suffix}"), S);
            let n = z.name_of(&handle).unwrap();
            let first = n.iter().next().unwrap();
            assert!(first.starts_with(b"x--"), "{suffix} -> {n}");
            assert_eq!(keys(&z.classify(&n)), [handle.key()], "{suffix} -> {n}");
            assert_eq!(n.iter().count(), 6, "{suffix}: one label");
        }
        // 120 bytes: several labels, each at most 63 bytes.
        let long = "s".repeat(60) + &"S".repeat(60);
        let handle = h(&format!("88.100.1/{long}"), S);
        let n = z.name_of(&handle).unwrap();
        let labels: Vec<&[u8]> = n.iter().take_while(|l| l.starts_with(b"x--")).collect();
        assert_eq!(labels.len(), 4); // 192 base32 characters in chunks of 60
        assert!(labels.iter().all(|l| l.len() <= 63));
        assert!(n.len() <= 255);
        assert_eq!(keys(&z.classify(&n)), [handle.key()]);
        // 200 bytes need 320 base32 characters: more than a DNS name holds.
        let long = "s".repeat(100) + &"S".repeat(100);
        assert!(matches!(
            z.name_of(&h(&format!("88.100.1/{long}"), S)),
            Err(MappingError::NameTooLong(_))
        ));
        // Mixed case only matters when suffixes are case-sensitive.
        assert_eq!(
            zone(I).name_of(&h("88.1/Sn-1", I)).unwrap().to_ascii(),
            "sn-1.1.88.id.example."
        );
        // Prefix handles (0.NA/<prefix>) have names too.
        let na = h("0.NA/88.100.1", S);
        let n = z.name_of(&na).unwrap();
        assert!(n.to_ascii().ends_with(".na.0.id.example."), "{n}");
        assert_eq!(keys(&z.classify(&n)), ["0.NA/88.100.1"]);
    }

    #[test]
    fn unmappable_identifiers() {
        let z = zone(S);
        assert!(matches!(
            z.name_of(&h("88.1_0/A", S)),
            Err(MappingError::PrefixSegment(s)) if s == "1_0"
        ));
        assert!(matches!(
            z.name_of(&h("88.x--1/A", S)),
            Err(MappingError::PrefixSegment(_))
        ));
        let long = "y".repeat(64);
        assert!(matches!(
            z.name_of(&h(&format!("88.{long}/A"), S)),
            Err(MappingError::PrefixSegment(_))
        ));
        let too_long = format!("88.100.1/{}", "é".repeat(150));
        assert!(matches!(
            z.name_of(&h(&too_long, S)),
            Err(MappingError::NameTooLong(n)) if n > 255
        ));
    }

    #[test]
    fn garbage_names_are_not_identifiers() {
        let z = zone(S);
        for text in [
            "88.id.example.",           // no prefix
            "x--mfrgg.id.example.",     // encoded suffix, no prefix
            "a_b.1.88.id.example.",     // not LDH
            "x--0.1.88.id.example.",    // bad base32
            "x--a.1.88.id.example.",    // impossible length
            "x--mb.1.88.id.example.",   // non-zero trailing bits
            "x--.1.88.id.example.",     // empty chunk
            "x--7777.1.88.id.example.", // not UTF-8 (0xff..)
            "sn.x--a.88.id.example.",   // marked prefix label
            "sn.a_b.88.id.example.",    // bad prefix label
        ] {
            assert_eq!(
                z.classify(&name(text)),
                NameMeaning::NotAnIdentifier,
                "{text}"
            );
        }
        // A control character decoded from base32 fails Handle::parse.
        let n = format!("x--{}.88.id.example.", base32_encode(b"a\nb"));
        assert_eq!(z.classify(&name(&n)), NameMeaning::NotAnIdentifier);
        assert_eq!(z.classify(&name("id.example.")), NameMeaning::Apex);
        assert_eq!(z.classify(&name("ID.Example")), NameMeaning::Apex);
        assert_eq!(
            z.classify(&name("sn.1.88.other.example.")),
            NameMeaning::OutsideZone
        );
        assert_eq!(z.classify(&name("example.")), NameMeaning::OutsideZone);
        assert_eq!(z.classify(&Name::root()), NameMeaning::OutsideZone);
    }

    #[test]
    fn base32_vectors() {
        // RFC 4648 §10, lower-case and unpadded.
        for (plain, enc) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), enc);
            assert_eq!(base32_decode(enc.as_bytes()).unwrap(), plain.as_bytes());
            assert_eq!(
                base32_decode(enc.to_ascii_uppercase().as_bytes()).unwrap(),
                plain.as_bytes()
            );
        }
        assert!(base32_decode(b"m").is_none());
        assert!(base32_decode(b"mzx").is_none());
        assert!(base32_decode(b"mz").is_none()); // trailing bits set
        assert!(base32_decode(b"my=").is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Identifier → name → candidates include the identifier.
        #[test]
        fn names_round_trip(
            segments in proptest::collection::vec("[a-zA-Z0-9-]{1,12}", 1..4),
            suffix in "\\PC{1,40}",
            sensitive in any::<bool>(),
        ) {
            let case = if sensitive { S } else { I };
            prop_assume!(segments.iter().all(|s| !has_mark(s.as_bytes())));
            let handle = Handle::parse(&format!("{}/{suffix}", segments.join(".")), case).unwrap();
            let z = zone(case);
            match z.name_of(&handle) {
                Ok(n) => {
                    prop_assert!(n.len() <= 255);
                    match z.classify(&n) {
                        NameMeaning::Identifier(c) => prop_assert!(c.contains(&handle), "{n}: {c:?}"),
                        other => prop_assert!(false, "{n}: {other:?}"),
                    }
                }
                Err(e) => prop_assert!(matches!(e, MappingError::NameTooLong(_))),
            }
        }

        /// Arbitrary bytes never panic and never answer responses.
        #[test]
        fn any_packet_is_safe(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
            let z = zone(S);
            match decide(&packet, &z, 1) {
                Decision::Drop => prop_assert!(packet.len() < 12 || packet[2] & 0x80 != 0),
                Decision::Reply(r) => {
                    let mut out = Vec::new();
                    encode(&r.message, r.udp_limit, &mut out);
                    prop_assert!(out.len() >= 12 && out.len() <= 512.max(r.udp_limit as usize));
                    prop_assert_eq!(&out[..2], &packet[..2]);
                }
                Decision::Lookup { request, .. } => {
                    let r = answer(request, Found::NoHandle, &z, 1, 0, true);
                    let mut out = Vec::new();
                    encode(&r.message, r.udp_limit, &mut out);
                    prop_assert_eq!(&out[..2], &packet[..2]);
                }
            }
        }

        /// TTL rewriting walks arbitrary bytes without panicking and keeps their length.
        #[test]
        fn rewriting_ttls_of_any_bytes_is_safe(mut packet in proptest::collection::vec(any::<u8>(), 0..600)) {
            let len = packet.len();
            let _ = rewrite_ttls(&mut packet, |t| t / 2);
            prop_assert_eq!(packet.len(), len);
        }
    }

    fn value(index: u32, t: &str, data: &[u8]) -> HandleValue {
        HandleValue::new(index, t, data.to_vec())
    }

    #[test]
    fn txt_text_and_splitting() {
        assert_eq!(
            txt_text(&value(1, "URL", b"https://example.com/a")),
            b"1 URL https://example.com/a"
        );
        assert_eq!(
            txt_text(&value(2, "DESC", b"line\tone\r\n")),
            b"2 DESC line\tone\r\n"
        );
        assert_eq!(
            txt_text(&value(3, "BIN", &[0, 1, 0xff])),
            b"3 BIN base64:AAH/"
        );
        assert_eq!(txt_text(&value(4, "X", b"del\x7f")), b"4 X base64:ZGVsfw==");
        let long = value(5, "DESC", "é".repeat(300).as_bytes());
        let txt = txt_rdata(&long);
        let parts: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(parts, [255, 255, 97]);
        assert_eq!(txt.txt_data.concat(), txt_text(&long));
    }

    #[test]
    fn uri_and_naptr() {
        let (p, w, t) = parse_uri_rdata(&uri_rdata(7, 1, "https://e.com/x")).unwrap();
        assert_eq!((p, w, t.as_str()), (7, 1, "https://e.com/x"));
        let n = naptr_rdata(1, "https://e.com/x").unwrap();
        assert_eq!(&*n.flags, b"u");
        assert_eq!(&*n.services, b"E2U+web:https");
        assert_eq!(&*n.regexp, b"!^.*$!https://e.com/x!");
        assert_eq!(n.preference, 10);
        assert!(n.replacement.is_root());
        assert_eq!(
            &*naptr_rdata(1, "HTTP://e.com").unwrap().services,
            b"E2U+web:http"
        );
        assert_eq!(
            &*naptr_rdata(1, "ftp://e.com").unwrap().services,
            b"E2U+web"
        );
        assert_eq!(
            &*naptr_rdata(1, "http://e.com/a!b\\c").unwrap().regexp,
            b"!^.*$!http://e.com/a\\!b\\\\c!"
        );
        assert!(naptr_rdata(1, &format!("http://e.com/{}", "a".repeat(250))).is_none());
    }

    #[test]
    fn records_by_type_ttl_and_permission() {
        let owner = name("sn.1.88.id.example.");
        let mut url = value(70000, "URL", b"https://e.com/");
        url.ttl = Ttl::Absolute(1_000_100);
        let values = vec![
            value(1, "URL.mobile", b"http://m.e.com/"),
            value(2, "DESC", b"a product"),
            value(3, "URL", b"https://secret/").with_permissions(ValuePermissions::ADMIN_ONLY),
            url,
            value(5, "URL", b""),
        ];
        let of = |qtype| {
            let mut out = Vec::new();
            value_records(&owner, &values, qtype, 1_000_000, &mut out);
            out
        };
        let txt = of(RecordType::TXT);
        assert_eq!(txt.len(), 4);
        assert!(txt.iter().all(|r| r.name == owner));
        // One TTL per RRset: the smallest (value 70000's absolute expiry, 100 s away).
        assert!(txt.iter().all(|r| r.ttl == 100), "{txt:?}");
        let uri = of(URI);
        let uris: Vec<(u16, u16, String)> = uri
            .iter()
            .map(|r| parse_uri_rdata(&r.data).unwrap())
            .collect();
        assert_eq!(
            uris,
            [
                (1, 1, "http://m.e.com/".to_string()),
                (65535, 1, "https://e.com/".to_string())
            ]
        );
        assert!(uri.iter().all(|r| r.ttl == 100), "{uri:?}");
        assert_eq!(of(RecordType::NAPTR).len(), 2);
        // Without the short-lived value, every TTL is the default day.
        let mut long = Vec::new();
        value_records(&owner, &values[..2], RecordType::ANY, 1_000_000, &mut long);
        assert!(long.iter().all(|r| r.ttl == 86_400), "{long:?}");
        assert_eq!(of(RecordType::ANY).len(), 8);
        assert!(of(RecordType::A).is_empty());
    }

    #[test]
    fn ttls_are_rewritten_in_place_except_the_opt_flags() {
        let z = zone(S);
        let lookup = |qname: &str| match decide(&query(qname, RecordType::TXT, Some(1232)), &z, 1) {
            Decision::Lookup { request, .. } => request,
            other => panic!("{other:?}"),
        };
        let mut short = value(2, "DESC", b"a product");
        short.ttl = Ttl::Relative(300);
        let values = vec![value(1, "URL", b"https://e.com/"), short];
        let r = answer(
            lookup("sn.1.88.id.example."),
            Found::Values(&values),
            &z,
            7,
            0,
            false,
        );
        let mut out = Vec::new();
        encode(&r.message, r.udp_limit, &mut out);
        let before = out.clone();
        assert!(rewrite_ttls(&mut out, |t| t.min(100)));
        assert_eq!(out.len(), before.len());
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(
            m.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(),
            [100, 100]
        );
        assert_eq!(
            txt_strings(&m),
            txt_strings(&Message::from_vec(&before).unwrap())
        );
        // The OPT record's TTL field (extended rcode, version, DO) is not a TTL.
        assert!(rewrite_ttls(&mut out, |_| u32::MAX));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers[0].ttl, u32::MAX);
        let edns = m.edns.as_ref().unwrap();
        assert_eq!((edns.version(), edns.max_payload()), (0, 1232));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        // Negative answers: the SOA in the authority section counts down too.
        let r = answer(
            lookup("nope.1.88.id.example."),
            Found::NoHandle,
            &z,
            7,
            0,
            false,
        );
        encode(&r.message, r.udp_limit, &mut out);
        assert!(rewrite_ttls(&mut out, |t| t.saturating_sub(45)));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.authorities[0].ttl, 15);
        // Malformed: cut short, or a reserved label type.
        let mut cut = before[..before.len() - 3].to_vec();
        assert!(!rewrite_ttls(&mut cut, |t| t));
        let mut bad = before.clone();
        bad[12] = 0x80;
        assert!(!rewrite_ttls(&mut bad, |t| t));
    }

    fn txt_strings(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name(qname), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn reply(d: Decision) -> Response {
        match d {
            Decision::Reply(r) => r,
            other => panic!("not a reply: {other:?}"),
        }
    }

    fn round_trip(r: &Response) -> Message {
        let mut out = Vec::new();
        encode(&r.message, r.udp_limit, &mut out);
        Message::from_vec(&out).unwrap()
    }

    #[test]
    fn paths_to_homed_prefixes_are_empty_non_terminals() {
        let mut z = zone(S);
        z.homed = vec![Prefix::parse("88.100.1").unwrap()];
        let name = |n: &str| Name::from_ascii(n).unwrap();
        for ent in [
            "88.id.example.",
            "100.88.id.example.",
            "1.100.88.id.example.",
            "0.id.example.",
            "na.0.id.example.",
            "NA.0.id.example.",
        ] {
            assert!(z.is_empty_non_terminal(&name(ent)), "{ent}");
        }
        for not in [
            "sn-0001.1.100.88.id.example.",
            "200.88.id.example.",
            "99.id.example.",
            "x.0.id.example.",
            "id.example.",
            "88.example.com.",
        ] {
            assert!(!z.is_empty_non_terminal(&name(not)), "{not}");
        }
        // A one-label name on the path: NODATA (NOERROR, no answer, SOA), not NXDOMAIN.
        let m = round_trip(&reply(decide(
            &query("88.id.example.", RecordType::TXT, None),
            &z,
            1,
        )));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        let m = round_trip(&reply(decide(
            &query("99.id.example.", RecordType::TXT, None),
            &z,
            1,
        )));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let z = zone(S);
        // NXDOMAIN for a name that is no identifier.
        let r = reply(decide(
            &query("88.id.example.", RecordType::TXT, None),
            &z,
            42,
        ));
        let m = round_trip(&r);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!()
        };
        assert_eq!(soa.serial, 42);
        assert_eq!(soa.minimum, 60);
        assert_eq!(soa.mname.to_ascii(), "ns1.id.example.");
        assert_eq!(soa.rname.to_ascii(), "hostmaster.id.example.");
        assert_eq!(m.authorities[0].ttl, 60);
        // NXDOMAIN / NODATA for identifiers after lookup.
        let lookup = |qtype| match decide(&query("sn.1.88.id.example.", qtype, None), &z, 1) {
            Decision::Lookup {
                request,
                candidates,
            } => {
                assert_eq!(candidates.len(), 2);
                request
            }
            other => panic!("{other:?}"),
        };
        let m = round_trip(&answer(
            lookup(RecordType::TXT),
            Found::NoHandle,
            &z,
            1,
            0,
            true,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        let values = [value(1, "DESC", b"x")];
        let m = round_trip(&answer(
            lookup(RecordType::A),
            Found::Values(&values),
            &z,
            1,
            0,
            true,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let m = round_trip(&answer(
            lookup(RecordType::TXT),
            Found::Values(&values),
            &z,
            1,
            0,
            false,
        ));
        assert_eq!(m.answers.len(), 1);
        assert!(m.authorities.is_empty());
        assert!(!m.metadata.authoritative);
        let m = round_trip(&answer(
            lookup(RecordType::TXT),
            Found::ServFail,
            &z,
            1,
            0,
            true,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(m.authorities.is_empty());
    }

    #[test]
    fn apex_and_refusals() {
        let z = zone(S);
        let m = round_trip(&reply(decide(
            &query("id.example.", RecordType::SOA, None),
            &z,
            7,
        )));
        assert_eq!(m.answers.len(), 1);
        assert!(m.metadata.authoritative);
        let m = round_trip(&reply(decide(
            &query("id.example.", RecordType::NS, None),
            &z,
            7,
        )));
        let RData::NS(ns) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(ns.0.to_ascii(), "ns1.id.example.");
        let m = round_trip(&reply(decide(
            &query("id.example.", RecordType::ANY, None),
            &z,
            7,
        )));
        assert_eq!(m.answers.len(), 2);
        let m = round_trip(&reply(decide(
            &query("id.example.", RecordType::TXT, None),
            &z,
            7,
        )));
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        for (q, code) in [
            (
                query("example.com.", RecordType::TXT, None),
                ResponseCode::Refused,
            ),
            (
                query("id.example.", RecordType::AXFR, None),
                ResponseCode::Refused,
            ),
            (
                query("id.example.", RecordType::IXFR, None),
                ResponseCode::Refused,
            ),
        ] {
            let m = round_trip(&reply(decide(&q, &z, 7)));
            assert_eq!(m.metadata.response_code, code);
            assert!(!m.metadata.authoritative);
            assert_eq!(m.queries.len(), 1);
        }
        // Class CH is refused; class ANY is served like IN.
        let mut q = query("id.example.", RecordType::SOA, None);
        let n = q.len();
        q[n - 2..].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            round_trip(&reply(decide(&q, &z, 7))).metadata.response_code,
            ResponseCode::Refused
        );
        q[n - 2..].copy_from_slice(&255u16.to_be_bytes());
        assert_eq!(round_trip(&reply(decide(&q, &z, 7))).answers.len(), 1);
    }

    #[test]
    fn header_level_errors() {
        let z = zone(S);
        let q = query("id.example.", RecordType::SOA, None);
        // Responses and scraps are dropped.
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(matches!(decide(&resp, &z, 1), Decision::Drop));
        assert!(matches!(decide(&q[..11], &z, 1), Decision::Drop));
        // Other opcodes: NOTIMP.
        let mut notify = q.clone();
        notify[2] |= 4 << 3;
        let m = round_trip(&reply(decide(&notify, &z, 1)));
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(m.metadata.op_code, OpCode::Notify);
        // Two questions, or none: FORMERR.
        for count in [0u16, 2, 65535] {
            let mut two = q.clone();
            two[4..6].copy_from_slice(&count.to_be_bytes());
            let m = round_trip(&reply(decide(&two, &z, 1)));
            assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
            assert_eq!(m.metadata.id, 0x1234);
        }
        // Truncated: FORMERR.
        let m = round_trip(&reply(decide(&q[..q.len() - 1], &z, 1)));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // A compression loop: FORMERR.
        let mut looped = q[..12].to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]);
        let m = round_trip(&reply(decide(&looped, &z, 1)));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // A name over 255 bytes: FORMERR.
        let mut long = q[..12].to_vec();
        for _ in 0..5 {
            long.push(60);
            long.extend_from_slice(&[b'a'; 60]);
        }
        long.extend_from_slice(&[0, 0, 16, 0, 1]);
        let m = round_trip(&reply(decide(&long, &z, 1)));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // EDNS version 1: BADVERS, with an OPT record.
        let mut m = Message::from_vec(&query("id.example.", RecordType::SOA, Some(1232))).unwrap();
        m.edns.as_mut().unwrap().set_version(1);
        let m = round_trip(&reply(decide(&m.to_vec().unwrap(), &z, 1)));
        // BADVERS and BADSIG share the value 16; hickory decodes it as BADSIG.
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert!(m.edns.is_some());
    }

    #[test]
    fn truncation_and_edns() {
        let mut z = zone(S);
        z.max_udp_payload = 4096;
        let big = [
            value(1, "DESC", "d".repeat(700).as_bytes()),
            value(2, "URL", b"https://example.com/"),
        ];
        let ask_in = |z: &Zone, edns| match decide(
            &query("sn.1.88.id.example.", RecordType::TXT, edns),
            z,
            1,
        ) {
            Decision::Lookup { request, .. } => request,
            other => panic!("{other:?}"),
        };
        let ask = |edns| ask_in(&z, edns);
        // No EDNS: 512 bytes, so TC with the question only.
        let r = answer(ask(None), Found::Values(&big), &z, 1, 0, true);
        assert_eq!(r.udp_limit, 512);
        let mut out = Vec::new();
        assert!(encode(&r.message, r.udp_limit, &mut out));
        assert!(out.len() <= 512);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.metadata.authoritative);
        assert_eq!(m.queries.len(), 1);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
        // Over TCP it all fits.
        assert!(!encode(&r.message, MAX_TCP_MESSAGE, &mut out));
        assert_eq!(Message::from_vec(&out).unwrap().answers.len(), 2);
        // EDNS 4096: fits, and the answer carries OPT with our payload.
        let r = answer(ask(Some(4096)), Found::Values(&big), &z, 1, 0, true);
        assert_eq!(r.udp_limit, 4096);
        assert!(!encode(&r.message, r.udp_limit, &mut out));
        let m = Message::from_vec(&out).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.edns.unwrap().max_payload(), 4096);
        // The client's smaller payload wins; below 512 counts as 512.
        assert_eq!(ask(Some(1000)).udp_limit, 1000);
        assert_eq!(ask(Some(100)).udp_limit, 512);
        let mut small = z.clone();
        small.max_udp_payload = 1232;
        assert_eq!(ask_in(&small, Some(4096)).udp_limit, 1232);
        // EDNS but still too big: TC, with OPT kept.
        let huge = [value(1, "DESC", "d".repeat(2000).as_bytes())];
        let r = answer(
            ask_in(&small, Some(4096)),
            Found::Values(&huge),
            &z,
            1,
            0,
            true,
        );
        assert!(encode(&r.message, r.udp_limit, &mut out));
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation && m.edns.is_some());
    }

    #[test]
    fn rcode_labels() {
        assert_eq!(rcode_label(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_label(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_label(ResponseCode::YXDomain), "OTHER");
    }
}
