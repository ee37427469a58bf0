//! The DNS front end's request path on arbitrary packets: `decide` under a zone that homes a
//! prefix, then `answer` for every kind of lookup result, then `encode`.
//!
//! The first input byte picks the suffix case rule (bit 0) and whether the zone homes
//! prefixes (bit 1); the rest is the packet.
//!
//! - nothing panics, and a packet is dropped only when it is shorter than a header or is a
//!   response (QR set);
//! - every response encodes into at most max(512, the client's UDP limit) bytes (and over TCP
//!   into at most 65535), with the request's id, QR set, and decodes back with hickory;
//! - every encoded response walks cleanly through `rewrite_ttls` (the cache's TTL rewriter),
//!   which keeps its length and leaves it decodable;
//! - a lookup carries one or two identifier candidates, each of which maps back to a DNS name
//!   (`Zone::name_of`) whose meaning (`Zone::classify`) includes that candidate;
//! - `rewrite_ttls` on the raw packet never panics and keeps its length.
#![no_main]

use hickory_proto::op::{Message, MessageType};
use idnode::model::{HandleValue, Prefix, SuffixCase};
use idnode::wire::dns::{
    answer, decide, encode, rewrite_ttls, Decision, Found, NameMeaning, Response, Zone,
    MAX_TCP_MESSAGE, MIN_UDP_PAYLOAD,
};
use libfuzzer_sys::fuzz_target;

fn values() -> Vec<HandleValue> {
    vec![
        HandleValue::new(1, "URL", b"https://example.org/a!b\\c".to_vec()),
        HandleValue::new(2, "EMAIL", b"x@example.org".to_vec()),
        HandleValue::new(3, "URL.alt", vec![b'u'; 300]),
        HandleValue::new(70_000, "BIN", vec![0, 1, 2, 0xff]),
        HandleValue::new(5, "TEXT", vec![b't'; 700]),
    ]
}

fn check_encoded(r: &Response, id: &[u8]) {
    for limit in [r.udp_limit, MAX_TCP_MESSAGE] {
        let mut out = Vec::new();
        encode(&r.message, limit, &mut out);
        assert!(out.len() >= 12, "response shorter than a header");
        assert!(
            out.len() <= usize::from(limit.max(MIN_UDP_PAYLOAD)),
            "{} bytes for a limit of {limit}",
            out.len()
        );
        assert_eq!(&out[..2], id, "response id");
        let m = Message::from_vec(&out).unwrap_or_else(|e| {
            panic!(
                "our own response does not decode: {e}\n  message: {:?}",
                r.message
            )
        });
        assert_eq!(m.metadata.message_type, MessageType::Response);
        let len = out.len();
        assert!(
            rewrite_ttls(&mut out, |t| t / 2),
            "rewrite_ttls refuses our own response"
        );
        assert_eq!(out.len(), len);
        Message::from_vec(&out).expect("response after rewrite_ttls");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, packet)) = data.split_first() else {
        return;
    };
    let case = if mode & 1 == 0 {
        SuffixCase::Sensitive
    } else {
        SuffixCase::Insensitive
    };
    let mut zone = Zone::new("id.example", case).expect("zone");
    if mode & 2 != 0 {
        zone.homed = ["88.100.1", "20.500"]
            .iter()
            .map(|p| Prefix::parse(p).expect("prefix"))
            .collect();
    }

    let mut raw = packet.to_vec();
    let _ = rewrite_ttls(&mut raw, |t| t.wrapping_add(1));
    assert_eq!(raw.len(), packet.len());

    match decide(packet, &zone, 7) {
        Decision::Drop => assert!(
            packet.len() < 12 || packet[2] & 0x80 != 0,
            "a query was dropped without an answer"
        ),
        Decision::Reply(r) => check_encoded(&r, &packet[..2]),
        Decision::Lookup {
            request,
            candidates,
        } => {
            assert!(
                (1..=2).contains(&candidates.len()),
                "{} candidates",
                candidates.len()
            );
            for c in &candidates {
                let name = zone
                    .name_of(c)
                    .unwrap_or_else(|e| panic!("candidate {c:?} has no name: {e}"));
                match zone.classify(&name) {
                    NameMeaning::Identifier(back) => {
                        assert!(back.contains(c), "{name} means {back:?}, not {c:?}")
                    }
                    other => panic!("{name} (name of candidate {c:?}) means {other:?}"),
                }
            }
            let values = values();
            for found in [
                Found::Values(&values),
                Found::NoHandle,
                Found::NoValues,
                Found::Refused,
                Found::ServFail,
            ] {
                let r = answer(request.clone(), found, &zone, 7, 1_000, true);
                check_encoded(&r, &packet[..2]);
            }
        }
    }
});
