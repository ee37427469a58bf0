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
//! HS_PRIVKEY), whatever its permissions ([`HandleValue::is_public`](crate::model::HandleValue::is_public)).
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
//!
//! # Files
//!
//! `name.rs` holds the zone and the name mapping, `records.rs` the records of an identifier's
//! values, `message.rs` the request decisions, answers and their encoding, and [`zonefile`]
//! the same records as an RFC 1035 zone file. Everything but the zone file is re-exported
//! here, so callers name `wire::dns::X` whichever file `X` lives in.

mod message;
mod name;
mod records;
pub mod zonefile;

pub use message::{
    answer, decide, encode, rcode_label, rewrite_ttls, truncated_answer, Decision, Found, Request,
    Response, MAX_TCP_MESSAGE, MIN_UDP_PAYLOAD,
};
pub use name::{
    absolute_name, base32_decode, base32_encode, is_plain_suffix, suffix_labels, BadName,
    MappingError, NameMeaning, Zone, ENCODED_CHUNK, ENCODED_MARK, MAX_LABEL_LEN, MAX_NAME_LEN,
    SOA_EXPIRE, SOA_REFRESH, SOA_RETRY,
};
pub use records::{
    naptr_rdata, parse_uri_rdata, txt_rdata, txt_text, uri_rdata, url_of, value_records,
    MAX_VALUE_TTL, NAPTR_PREFERENCE, URI,
};

#[cfg(test)]
mod tests;
