//! Certified answers against the reference vectors (signatures byte for byte), the request
//! digest on every error path, and the signature budget.

use super::*;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::model::{Handle, HandleValue, Prefix, SiteInfo, Ttl, ValuePermissions};
use crate::resolve::{init_prefix, Engine, Policy};
use crate::server::native::{NativeLimits, NativeService, Outcome, Source, Transport};
use crate::store::{Record, Registry, StoreOptions};
use crate::wire::handle::message::{Envelope, ENVELOPE_LEN};
use crate::wire::handle::vectors2::{v2, v2_key};

/// A node like the one the vectors were made with: site SITE_WITH_KEY_HEX (serial 1,
/// SERVER_RSA), 88.100.1/SN-0001 with URL 1 and EMAIL 2 stamped 0x64000000, answers
/// expiring at 0x7f000000.
fn vector_node(limits: NativeLimits) -> (tempfile::TempDir, NativeService) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    init_prefix(&reg, &Prefix::parse("88.100.1").unwrap(), 300, b"pw").unwrap();
    let value = |index, type_name: &str, data: &str| HandleValue {
        timestamp: 0x6400_0000,
        ttl: Ttl::Relative(86_400),
        permissions: ValuePermissions::DEFAULT,
        ..HandleValue::new(index, type_name, data)
    };
    let record = Record {
        handle: "88.100.1/SN-0001".into(),
        values: vec![
            value(1, "URL", "https://example.com/sn/0001"),
            value(2, "EMAIL", "sn0001@example.com"),
        ],
    };
    reg.put_batch(&[(
        Handle::parse("88.100.1/SN-0001", crate::model::SuffixCase::Sensitive).unwrap(),
        record,
    )])
    .unwrap();
    let engine = Engine::new(reg, Policy::default());
    let site = SiteInfo::decode(&v2("SITE_WITH_KEY_HEX")).unwrap();
    let key = PrivateKey::from_pkcs8_der(&v2_key("SERVER_RSA")).unwrap();
    let svc = NativeService::new(engine, Metrics::new().unwrap(), &site)
        .with_limits(limits)
        .with_server_key(Arc::new(key))
        .with_fixed_expiration(0x7f00_0000);
    (dir, svc)
}

fn answer(svc: &NativeService, request: &[u8], transport: Transport) -> Vec<Vec<u8>> {
    let env = Envelope::decode(&request[..ENVELOPE_LEN]).unwrap();
    let source = Source {
        transport,
        addr: "127.0.0.1".parse().unwrap(),
        connection: None,
    };
    match svc.process(env, &request[ENVELOPE_LEN..], source) {
        Outcome::Done(r) => r,
        Outcome::Recurse(_) => panic!("no recursion here"),
    }
}

/// Certified resolutions (Handle.Net's and the ID-SDK's), a certified not-found and the
/// site with its key come out byte for byte as the reference server sends them: the same
/// header, body, credential and RSA signature.
#[test]
fn certified_answers_are_byte_exact() {
    let (_dir, svc) = vector_node(NativeLimits::default());
    for (req, resp) in [
        ("CERT_RESOLUTION_REQ_HEX", "CERT_RESOLUTION_RESP_HEX"),
        ("CERT_NOTFOUND_REQ_HEX", "CERT_NOTFOUND_RESP_HEX"),
        (
            "SDK_CERT_RESOLUTION_REQ_HEX",
            "SDK_CERT_RESOLUTION_RESP_HEX",
        ),
    ] {
        for transport in [Transport::Tcp, Transport::Udp] {
            let out = answer(&svc, &v2(req), transport);
            assert_eq!(out, vec![v2(resp)], "{req} over {transport:?}");
        }
    }
    let get_site = crate::wire::handle::vectors::GET_SITE_INFO_REQ_HEX;
    let get_site: Vec<u8> = (0..get_site.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&get_site[i..i + 2], 16).unwrap())
        .collect();
    let site = answer(&svc, &get_site, Transport::Udp);
    assert_eq!(site, vec![v2("GET_SITE_INFO_RESP_WITH_KEY_HEX")]);
}

/// The RD digest is in every answer to a request that asked for it, errors included.
#[test]
fn error_answers_carry_the_request_digest() {
    let (_dir, svc) = vector_node(NativeLimits::default());
    let out = answer(&svc, &v2("RD_RESOLUTION_REQ_HEX"), Transport::Udp);
    assert_eq!(out, vec![v2("RD_NOTFOUND_RESP_HEX")]);
}

/// Unknown op codes, bodies that do not decode, refused and challenge errors: each answer
/// to an RD request starts with the digest of that request's header+body (what
/// HandleResolver checks before anything else), and CT requests get them signed.
#[test]
fn every_error_path_carries_the_digest() {
    use crate::auth::challenge::request_digest;
    use crate::wire::handle::message::{flag, header_and_body, Message};
    let (_dir, svc) = vector_node(NativeLimits::default());
    let check = |request: Vec<u8>, transport: Transport, code: ResponseCode| {
        let out = answer(&svc, &request, transport);
        let m = Message::decode_full(&out[0]).unwrap();
        assert_eq!(m.header.response_code, code.code(), "{:?}", m.body);
        assert!(m.header.has(flag::RETURN_DIGEST));
        let hb = header_and_body(&request[ENVELOPE_LEN..]).unwrap();
        let (_, want) = request_digest(2, 11, hb);
        assert_eq!(m.digest.as_ref().unwrap().digest, want);
        m
    };
    let rd = |mut bytes: Vec<u8>, extra: u32| {
        let f = u32::from_be_bytes(bytes[28..32].try_into().unwrap()) | extra;
        bytes[28..32].copy_from_slice(&f.to_be_bytes());
        bytes
    };
    // Unknown op code; with CT as well, the refusal is signed.
    let mut unknown = rd(v2("RD_RESOLUTION_REQ_HEX"), 0);
    unknown[20..24].copy_from_slice(&999u32.to_be_bytes());
    let plain = check(
        unknown.clone(),
        Transport::Tcp,
        ResponseCode::OperationNotSupported,
    );
    assert_eq!(plain.credential, Some(Vec::new()));
    let certified = check(
        rd(unknown, flag::CERTIFY),
        Transport::Udp,
        ResponseCode::OperationNotSupported,
    );
    assert!(!certified.credential.unwrap().is_empty(), "CT: signed");
    // A body that does not decode (its handle length runs past the body).
    let mut broken = v2("RD_RESOLUTION_REQ_HEX");
    broken[44..48].copy_from_slice(&200u32.to_be_bytes());
    check(broken, Transport::Tcp, ResponseCode::ProtocolError);
    // A challenge answer for no pending challenge, with RD.
    let stale = rd(
        v2("LIST_HANDLES_CHALLENGE_ANSWER_REQ_HEX"),
        flag::RETURN_DIGEST,
    );
    check(stale, Transport::Tcp, ResponseCode::AuthenticationTimeout);
    // Administration over UDP.
    let add = rd(v2("SESSION_ADD_VALUE_REQ_HEX"), flag::RETURN_DIGEST);
    let mut add = add;
    add[4..8].copy_from_slice(&0u32.to_be_bytes());
    check(add, Transport::Udp, ResponseCode::OperationNotSupported);
}

/// Past the budget, UDP answers go out unsigned and TCP ones become an unsigned RC 3.
#[test]
fn signatures_are_budgeted() {
    let limits = NativeLimits {
        signatures: SignLimits {
            per_second: 1000,
            per_second_per_client: 1,
        },
        ..NativeLimits::default()
    };
    let (_dir, svc) = vector_node(limits);
    let req = v2("CERT_RESOLUTION_REQ_HEX");
    // Two seconds' worth of burst: 2 signed answers.
    for _ in 0..2 {
        assert_eq!(
            answer(&svc, &req, Transport::Udp),
            vec![v2("CERT_RESOLUTION_RESP_HEX")]
        );
    }
    let unsigned = Message::decode_full(&answer(&svc, &req, Transport::Udp)[0]).unwrap();
    assert_eq!(unsigned.header.response_code, 1);
    assert_eq!(unsigned.credential, Some(Vec::new()));
    let busy = Message::decode_full(&answer(&svc, &req, Transport::Tcp)[0]).unwrap();
    assert_eq!(
        busy.header.response_code,
        ResponseCode::ServerTooBusy.code()
    );
    assert_eq!(busy.credential, Some(Vec::new()));
}

#[test]
fn budget_is_per_client_and_in_total() {
    let b = SignBudget::new(SignLimits {
        per_second: 10,
        per_second_per_client: 2,
    });
    let now = Instant::now();
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let c: IpAddr = "192.0.2.2".parse().unwrap();
    // Burst of two seconds' worth for one client.
    assert!(b.take(a, 4, now));
    assert!(!b.take(a, 1, now));
    // Others still have theirs, until the total (10) is spent.
    assert!(b.take(c, 4, now));
    let others: Vec<IpAddr> = (3..10)
        .map(|i| format!("192.0.2.{i}").parse().unwrap())
        .collect();
    assert!(b.take(others[0], 2, now));
    assert!(!b.take(others[1], 1, now));
    // A second later the total refills.
    let later = now + Duration::from_secs(1);
    assert!(b.take(others[1], 1, later));
}

/// LIST_HANDLES as Handle.Net's client sends it to a 2.11 site: challenged, answered, then
/// 52 handles in two messages (50 with CN, then 2), byte for byte the reference server's
/// (the challenge's nonce and id are random, so the answer is re-signed for them).
#[test]
fn list_handles_exchange_is_byte_exact() {
    use std::sync::Arc;

    use crate::auth::challenge::PrivateKey;
    use crate::metrics::Metrics;
    use crate::model::{Handle, HandleValue, Prefix, SiteInfo, SuffixCase};
    use crate::resolve::{init_prefix, Engine, Policy};
    use crate::server::native::{NativeService, Outcome, Source, Transport};
    use crate::store::{Record, Registry, StoreOptions};
    use crate::wire::handle::message::{op, Envelope, Message, ENVELOPE_LEN};
    use crate::wire::handle::vectors2::{v2, v2_key};

    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    init_prefix(&reg, &Prefix::parse("88.100.1").unwrap(), 300, b"pw").unwrap();
    let records: Vec<(Handle, Record)> = (0..52)
        .map(|i| {
            let h = format!("88.100.1/L{i:02}");
            let values = vec![HandleValue::new(1, "URL", "https://example.com/")];
            let handle = Handle::parse(&h, SuffixCase::Sensitive).unwrap();
            (handle, Record { handle: h, values })
        })
        .collect();
    reg.put_batch(&records).unwrap();
    let engine = Engine::new(reg, Policy::default());
    // The prefix handle also holds ADMIN_RSA as Handle.Net writes it (289 bytes) at index
    // 301, and its admin group names it.
    let na = engine.parse_handle("0.NA/88.100.1").unwrap();
    let mut prefix = engine.registry().get(&na).unwrap().unwrap();
    let group = crate::model::ValueList(
        [300, 301]
            .map(|index| crate::model::ValueReference {
                handle: "0.NA/88.100.1".into(),
                index,
            })
            .to_vec(),
    );
    for v in prefix.values.iter_mut().filter(|v| v.index == 200) {
        v.data = group.encode();
    }
    prefix.values.push(HandleValue::new(
        301,
        "HS_PUBKEY",
        v2("RSA_PUBKEY_DATA_HEX"),
    ));
    engine.registry().put_batch(&[(na, prefix)]).unwrap();
    let site = SiteInfo::decode(&v2("SITE_WITH_KEY_HEX")).unwrap();
    let svc = NativeService::new(engine, Metrics::new().unwrap(), &site)
        .with_server_key(Arc::new(
            PrivateKey::from_pkcs8_der(&v2_key("SERVER_RSA")).unwrap(),
        ))
        .with_fixed_expiration(0x7f00_0000);
    let source = Source {
        transport: Transport::Tcp,
        addr: "127.0.0.1".parse().unwrap(),
        connection: None,
    };
    let send = |bytes: &[u8]| {
        let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
        match svc.process(env, &bytes[ENVELOPE_LEN..], source) {
            Outcome::Done(r) => r,
            Outcome::Recurse(_) => panic!("no recursion"),
        }
    };
    let challenge = send(&v2("LIST_HANDLES_REQ_2_HEX"));
    let challenge = Message::decode_full(&challenge[0]).unwrap();
    let want = Message::decode_full(&v2("LIST_HANDLES_CHALLENGE_HEX")).unwrap();
    assert_eq!(challenge.header, want.header);
    assert_eq!(challenge.digest, want.digest);
    // The client's answer, re-signed for this challenge's nonce, on its session id.
    let Body::Challenge { nonce } = &challenge.body else {
        panic!("{challenge:?}")
    };
    let key = PrivateKey::from_pkcs8_der(&v2_key("ADMIN_RSA")).unwrap();
    let mut answer = Message::decode_full(&v2("LIST_HANDLES_CHALLENGE_ANSWER_REQ_HEX")).unwrap();
    answer.envelope.session_id = challenge.envelope.session_id;
    if let Body::ChallengeAnswer {
        identity_handle,
        identity_index,
        signed_response,
        ..
    } = &mut answer.body
    {
        (*identity_handle, *identity_index) = ("0.NA/88.100.1".into(), 301);
        *signed_response = key.sign_answer(nonce, &challenge.digest.as_ref().unwrap().digest);
    }
    assert_eq!(answer.header.op_code, op::CHALLENGE_RESPONSE);
    let lists = send(&answer.encode());
    assert_eq!(
        lists,
        vec![v2("LIST_HANDLES_RESP_1_HEX"), v2("LIST_HANDLES_RESP_2_HEX")]
    );
}
