//! Tests of the DNS face: the name mapping both ways (vectors and properties), the records
//! of values, and whole queries through `decide`, `answer` and `encode`.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use proptest::prelude::*;

use super::name::has_mark;
use super::*;
use crate::model::{Handle, HandleValue, Prefix, SuffixCase, Ttl, ValuePermissions};

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
    let ask_in =
        |z: &Zone, edns| match decide(&query("sn.1.88.id.example.", RecordType::TXT, edns), z, 1) {
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
