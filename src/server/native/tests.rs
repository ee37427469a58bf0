//! The native handler without sockets: requests built with the codec go in, responses are
//! decoded and checked.

use std::sync::Arc;

use super::*;
use crate::auth::challenge::{
    request_digest, seckey_answer_pbkdf2, seckey_answer_sha1, PrivateKey,
};
use crate::model::{Handle, HandleValue, Prefix, SiteInfo, ValuePermissions};
use crate::resolve::{init_prefix, Policy};
use crate::store::{Registry, StoreOptions};
use crate::wire::handle::message::{flag, op, ENVELOPE_LEN};
use crate::wire::handle::vectors::*;

struct Fixture {
    _dir: tempfile::TempDir,
    svc: NativeService,
    engine: Engine,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    for p in ["88.100.1", "88.200.2"] {
        init_prefix(&reg, &Prefix::parse(p).unwrap(), 300, b"password").unwrap();
    }
    let engine = Engine::new(reg, Policy::default());
    let owner = engine
        .authenticate_secret(
            &engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            b"password",
        )
        .unwrap();
    let h = engine.parse_handle("88.100.1/SN-0001").unwrap();
    engine
        .create(
            &owner,
            &h,
            vec![
                HandleValue::new(1, "URL", "https://example.com/sn/0001"),
                HandleValue::new(2, "HS_SITE.PREFIX", site().encode()),
                HandleValue::new(3, "EMAIL", "secret@example.com")
                    .with_permissions(ValuePermissions::ADMIN_ONLY),
            ],
            crate::resolve::Overwrite::No,
        )
        .unwrap();
    // These tests exercise Handle.Net's flows, where an anonymous PO-clear read of a record
    // with restricted values is challenged; the ID-SDK's default ("public") is tested in
    // `sdk_tests`.
    let svc = NativeService::new(engine.clone(), Metrics::new().unwrap(), &site()).with_limits(
        NativeLimits {
            anonymous_reads: AnonymousReads::Challenge,
            ..NativeLimits::default()
        },
    );
    Fixture {
        _dir: dir,
        svc,
        engine,
    }
}

fn site() -> SiteInfo {
    SiteInfo::decode(&hex("0001020b0001800200000000000000010000000464657363000000047465737400000001000000010000000000000000000000007f0000010000000000000003030100000a51020000000a51030200001f40")).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A request as the Java client sends it on first contact: 2.3 suggesting 2.11.
fn request(op_code: u32, op_flag: u32, body: Body, request_id: u32, session_id: u32) -> Vec<u8> {
    let mut m = Message::request(op_code, op_flag, body);
    (m.envelope.major, m.envelope.minor) = (2, 3);
    m.envelope.request_id = request_id;
    m.envelope.session_id = session_id;
    m.header.expiration = 0x6500_0000;
    m.encode()
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn source(transport: Transport) -> Source {
    Source {
        transport,
        addr: CLIENT,
        connection: None,
    }
}

fn send(f: &Fixture, bytes: &[u8], transport: Transport) -> Vec<Message> {
    send_from(&f.svc, bytes, source(transport))
}

fn send_from(svc: &NativeService, bytes: &[u8], from: Source) -> Vec<Message> {
    let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
    let Outcome::Done(responses) = svc.process(env, &bytes[ENVELOPE_LEN..], from) else {
        panic!("no recursion on this node");
    };
    responses
        .iter()
        .map(|r| Message::decode_full(r).unwrap())
        .collect()
}

fn one(f: &Fixture, bytes: &[u8], transport: Transport) -> Message {
    let mut r = send(f, bytes, transport);
    assert_eq!(r.len(), 1);
    r.remove(0)
}

fn resolve(handle: &str, indexes: Vec<u32>, types: Vec<&str>, flags: u32) -> Vec<u8> {
    let body = Body::Resolution {
        handle: handle.into(),
        indexes,
        types: types.into_iter().map(String::from).collect(),
    };
    request(op::RESOLUTION, flags, body, 42, 0)
}

#[test]
fn answers_the_reference_request() {
    let f = fixture();
    let r = one(&f, &hex(REQ_HEX), Transport::Udp);
    assert_eq!((r.envelope.major, r.envelope.minor), (2, 11));
    assert_eq!(r.envelope.request_id, 0x01020304);
    assert_eq!(r.header.response_code, 1);
    assert!(r.header.has(flag::PUBLIC_ONLY) && r.header.has(flag::AUTHORITATIVE));
    assert_eq!(r.header.site_serial, 1);
    assert!(u64::from(r.header.expiration) > crate::model::unix_now());
    let Body::Values { handle, values } = r.body else {
        panic!()
    };
    assert_eq!(handle, "88.100.1/SN-0001");
    // PO: the admin-only EMAIL is not returned.
    assert_eq!(values.iter().map(|v| v.index).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn filters_codes_and_slashless_queries() {
    let f = fixture();
    let po = 0x1900_0000;
    let r = one(
        &f,
        &resolve("88.100.1/SN-0001", vec![], vec!["hs_site."], po),
        Transport::Tcp,
    );
    let Body::Values { values, .. } = r.body else {
        panic!()
    };
    assert_eq!(values.len(), 1);
    let r = one(
        &f,
        &resolve("88.100.1/SN-0001", vec![], vec!["DESC"], po),
        Transport::Udp,
    );
    assert_eq!(r.header.response_code, 200);
    let r = one(
        &f,
        &resolve("88.100.1/NONE", vec![], vec![], po),
        Transport::Udp,
    );
    assert_eq!(r.header.response_code, 100);
    let r = one(&f, &resolve("99.1/X", vec![], vec![], po), Transport::Udp);
    assert_eq!(r.header.response_code, 301);
    // "88.100.1" alone means 0.NA/88.100.1.
    let r = one(
        &f,
        &resolve("88.100.1", vec![100], vec![], po),
        Transport::Udp,
    );
    let Body::Values { handle, values } = r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(
        (handle.as_str(), values[0].type_name.as_str()),
        ("88.100.1", "HS_ADMIN")
    );
    let r = one(&f, &resolve("", vec![], vec![], po), Transport::Udp);
    assert_eq!(r.header.response_code, 102);
}

#[test]
fn digest_is_returned_when_asked() {
    let f = fixture();
    let bytes = resolve(
        "88.100.1/SN-0001",
        vec![1],
        vec![],
        0x1900_0000 | flag::RETURN_DIGEST,
    );
    let r = one(&f, &bytes, Transport::Udp);
    let d = r.digest.unwrap();
    assert_eq!(d.hash_type, 3);
    let (_, expected) = request_digest(2, 11, header_and_body(&bytes[ENVELOPE_LEN..]).unwrap());
    assert_eq!(d.digest, expected);
}

#[test]
fn site_info_and_garbage() {
    let f = fixture();
    let r = one(&f, &hex(GET_SITE_INFO_REQ_HEX), Transport::Udp);
    let Body::SiteInfo { site: bytes } = r.body else {
        panic!()
    };
    assert_eq!(SiteInfo::decode(&bytes).unwrap(), site());
    // Responses sent to us get no answer.
    assert!(send(&f, &hex(RESP_HEX), Transport::Udp).is_empty());
    // Unknown opcodes: RC 5. Broken bodies: RC 4.
    let mut unknown = hex(REQ_HEX);
    unknown[ENVELOPE_LEN..ENVELOPE_LEN + 4].copy_from_slice(&2002u32.to_be_bytes());
    assert_eq!(one(&f, &unknown, Transport::Udp).header.response_code, 5);
    let mut broken = hex(REQ_HEX);
    let n = broken.len();
    broken[n - 9] = 9;
    assert_eq!(one(&f, &broken, Transport::Udp).header.response_code, 4);
}

#[test]
fn admin_is_refused_over_udp() {
    let f = fixture();
    let r = one(&f, &hex(CREATE_HANDLE_REQ_HEX), Transport::Udp);
    assert_eq!(r.header.response_code, 5);
    assert!(f
        .engine
        .registry()
        .get(&f.engine.parse_handle("88.100.1/SN-0002").unwrap())
        .unwrap()
        .is_none());
}

/// Send an admin request over "TCP", answer the challenge with `answer(nonce, digest)`.
fn admin(
    f: &Fixture,
    req: &[u8],
    auth_type: &str,
    who: (&str, u32),
    answer: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> Vec<Message> {
    let c = one(f, req, Transport::Tcp);
    assert_eq!(c.header.response_code, 402);
    assert!(c.header.has(flag::RETURN_DIGEST));
    let Body::Challenge { nonce } = &c.body else {
        panic!()
    };
    assert_eq!(nonce.len(), 16);
    let digest = c.digest.as_ref().unwrap().digest.clone();
    let (_, expected) = request_digest(2, 11, header_and_body(&req[ENVELOPE_LEN..]).unwrap());
    assert_eq!(digest, expected, "challenge carries the request digest");
    let body = Body::ChallengeAnswer {
        auth_type: auth_type.into(),
        identity_handle: who.0.into(),
        identity_index: who.1,
        signed_response: answer(nonce, &digest),
    };
    let ans = request(
        op::CHALLENGE_RESPONSE,
        0x1900_0000,
        body,
        777,
        c.envelope.session_id,
    );
    let out = send(f, &ans, Transport::Tcp);
    assert!(out.iter().all(|m| m.envelope.request_id == 777));
    out
}

#[test]
fn create_with_secret_key_pbkdf2_and_sha1() {
    let f = fixture();
    let out = admin(
        &f,
        &hex(CREATE_HANDLE_REQ_HEX),
        "HS_SECKEY",
        ("0.NA/88.100.1", 300),
        |n, d| seckey_answer_pbkdf2(b"password", n, d, &[7; 16], 10_000, 160),
    );
    assert_eq!(out[0].header.response_code, 1, "{:?}", out[0].body);
    let h = f.engine.parse_handle("88.100.1/SN-0002").unwrap();
    let rec = f.engine.registry().get(&h).unwrap().unwrap();
    assert_eq!(rec.values.len(), 2);
    // The older SHA-1 form works too (delete it again).
    let out = admin(
        &f,
        &hex(DELETE_HANDLE_REQ_HEX),
        "HS_SECKEY",
        ("0.NA/88.100.1", 300),
        |n, d| seckey_answer_sha1(b"password", n, d),
    );
    assert_eq!(out[0].header.response_code, 1, "{:?}", out[0].body);
    assert!(f.engine.registry().get(&h).unwrap().is_none());
}

#[test]
fn wrong_secret_and_wrong_prefix_change_nothing() {
    let f = fixture();
    let h = f.engine.parse_handle("88.100.1/SN-0002").unwrap();
    let out = admin(
        &f,
        &hex(CREATE_HANDLE_REQ_HEX),
        "HS_SECKEY",
        ("0.NA/88.100.1", 300),
        |n, d| seckey_answer_pbkdf2(b"wrong", n, d, &[7; 16], 10_000, 160),
    );
    assert_eq!(out[0].header.response_code, 403);
    // A valid admin of another prefix: authenticated, not authorized.
    let out = admin(
        &f,
        &hex(CREATE_HANDLE_REQ_HEX),
        "HS_SECKEY",
        ("0.NA/88.200.2", 300),
        |n, d| seckey_answer_pbkdf2(b"password", n, d, &[7; 16], 10_000, 160),
    );
    assert_eq!(out[0].header.response_code, 400);
    assert!(f.engine.registry().get(&h).unwrap().is_none());
    // Answering an unknown or used session: 405.
    let body = Body::ChallengeAnswer {
        auth_type: "HS_SECKEY".into(),
        identity_handle: "0.NA/88.100.1".into(),
        identity_index: 300,
        signed_response: vec![0x22],
    };
    let r = one(
        &f,
        &request(op::CHALLENGE_RESPONSE, 0, body, 1, 12345),
        Transport::Tcp,
    );
    assert_eq!(r.header.response_code, 405);
}

#[test]
fn public_key_authentication_and_list() {
    let f = fixture();
    let key = PrivateKey::generate_rsa(1024).unwrap();
    // Give the prefix admin group a key holder: 301:0.NA/88.100.1 with an HS_PUBKEY.
    let owner = f
        .engine
        .authenticate_secret(
            &f.engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            b"password",
        )
        .unwrap();
    let na = f.engine.parse_handle("0.NA/88.100.1").unwrap();
    let vlist = crate::model::ValueList(vec![
        crate::model::ValueReference {
            handle: "0.NA/88.100.1".into(),
            index: 300,
        },
        crate::model::ValueReference {
            handle: "0.NA/88.100.1".into(),
            index: 301,
        },
    ]);
    f.engine
        .add_values(
            &owner,
            &na,
            vec![
                HandleValue::new(301, "HS_PUBKEY", key.public_key().encode()),
                HandleValue::new(200, "HS_VLIST", vlist.encode()),
            ],
            true,
        )
        .unwrap();
    let out = admin(
        &f,
        &hex(CREATE_HANDLE_REQ_HEX),
        "HS_PUBKEY",
        ("0.NA/88.100.1", 301),
        |n, d| key.sign_answer(n, d),
    );
    assert_eq!(out[0].header.response_code, 1, "{:?}", out[0].body);
    // Another key is refused.
    let other = PrivateKey::generate_rsa(1024).unwrap();
    let out = admin(
        &f,
        &hex(DELETE_HANDLE_REQ_HEX),
        "HS_PUBKEY",
        ("0.NA/88.100.1", 301),
        |n, d| other.sign_answer(n, d),
    );
    assert_eq!(out[0].header.response_code, 403);
    // List handles: 120 handles come back in messages of 50, CN on all but the last.
    for i in 0..118 {
        let h = f.engine.parse_handle(&format!("88.100.1/L{i:03}")).unwrap();
        f.engine
            .create(&owner, &h, vec![], crate::resolve::Overwrite::No)
            .unwrap();
    }
    let out = admin(
        &f,
        &hex(LIST_HANDLES_REQ_HEX),
        "HS_PUBKEY",
        ("0.NA/88.100.1", 301),
        |n, d| key.sign_answer(n, d),
    );
    assert_eq!(out.len(), 3);
    assert!(out[0].header.has(flag::CONTINUOUS) && out[1].header.has(flag::CONTINUOUS));
    assert!(!out[2].header.has(flag::CONTINUOUS));
    let total: usize = out
        .iter()
        .map(|m| match &m.body {
            Body::HandleList { handles } => handles.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(total, 120);
}

#[test]
fn admin_read_values_need_a_challenge() {
    let f = fixture();
    // PO clear asking for the admin-only EMAIL: challenge, then the value for the admin.
    let req = resolve("88.100.1/SN-0001", vec![3], vec![], 0x1800_0000);
    let out = admin(&f, &req, "HS_SECKEY", ("0.NA/88.100.1", 300), |n, d| {
        seckey_answer_pbkdf2(b"password", n, d, &[1; 16], 10_000, 160)
    });
    let Body::Values { values, .. } = &out[0].body else {
        panic!("{:?}", out[0].body)
    };
    assert_eq!(values[0].data_str(), Some("secret@example.com"));
}

#[test]
fn verify_challenge_for_other_servers() {
    let mut f = fixture();
    f.svc = NativeService::new(f.engine.clone(), Metrics::new().unwrap(), &site()).with_limits(
        NativeLimits {
            verify_peers: vec![CLIENT],
            ..NativeLimits::default()
        },
    );
    let nonce = [3u8; 16];
    let digest = [4u8; 32];
    let good = seckey_answer_pbkdf2(b"password", &nonce, &digest, &[9; 16], 10_000, 160);
    let mk = |signed: Vec<u8>| {
        request(
            op::VERIFY_CHALLENGE,
            0,
            Body::VerifyChallenge {
                handle: "0.NA/88.100.1".into(),
                index: 300,
                nonce: nonce.to_vec(),
                digest: digest.to_vec(),
                signed_response: signed,
            },
            5,
            0,
        )
    };
    assert_eq!(
        one(&f, &mk(good), Transport::Tcp).body,
        Body::VerifyResult { valid: true }
    );
    let bad = seckey_answer_pbkdf2(b"nope", &nonce, &digest, &[9; 16], 10_000, 160);
    assert_eq!(
        one(&f, &mk(bad), Transport::Tcp).body,
        Body::VerifyResult { valid: false }
    );
}

#[test]
fn prefix_referral_over_the_wire() {
    let f = fixture();
    let owner = f
        .engine
        .authenticate_secret(
            &f.engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            b"password",
        )
        .unwrap();
    // 88.100.1 delegates 88.100.1.7 to another node.
    let na = f.engine.parse_handle("0.NA/88.100.1").unwrap();
    f.engine
        .add_values(
            &owner,
            &na,
            vec![HandleValue::new(1, "HS_SITE.PREFIX", site().encode())],
            false,
        )
        .unwrap();
    let r = one(
        &f,
        &resolve("0.NA/88.100.1.7", vec![], vec!["HS_SITE"], 0x1900_0000),
        Transport::Udp,
    );
    assert_eq!(r.header.response_code, 303);
    let Body::Referral { handle, values } = &r.body else {
        panic!("{:?}", r.body)
    };
    assert!(handle.is_empty());
    assert_eq!(SiteInfo::decode(&values[0].data).unwrap(), site());
    // DNRF: no referral, just not found.
    let r = one(
        &f,
        &resolve(
            "0.NA/88.100.1.7",
            vec![],
            vec![],
            0x1900_0000 | flag::DO_NOT_REFER,
        ),
        Transport::Udp,
    );
    assert_eq!(r.header.response_code, 100);
}

#[test]
fn mirrors_refuse_native_writes_naming_the_primary() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    let policy = Policy {
        mirrored: vec![(
            Prefix::parse("88.100.1").unwrap(),
            "https://primary.example:8000".into(),
        )],
        ..Policy::default()
    };
    let engine = Engine::new(reg, policy);
    let svc = NativeService::new(engine, Metrics::new().unwrap(), &site());
    let bytes = hex(CREATE_HANDLE_REQ_HEX);
    let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
    let Outcome::Done(out) = svc.process(env, &bytes[ENVELOPE_LEN..], source(Transport::Tcp))
    else {
        panic!("no recursion here");
    };
    let r = Message::decode_full(&out[0]).unwrap();
    assert_eq!(r.header.response_code, 7);
    assert_eq!(
        r.body,
        Body::Error {
            message: "read-only mirror of https://primary.example:8000".into()
        }
    );
}

/// A write to a prefix this node does not home is sent on (RC 301) before any challenge:
/// no pending challenge is created for it (`Engine::check_write_target`).
#[test]
fn writes_to_prefixes_not_homed_here_are_refused_before_a_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    init_prefix(&reg, &Prefix::parse("88.200.2").unwrap(), 300, b"password").unwrap();
    let engine = Engine::new(reg, Policy::default());
    let svc = NativeService::new(engine, Metrics::new().unwrap(), &site());
    // CREATE_HANDLE_REQ_HEX creates under 88.100.1, which this node does not home.
    let bytes = hex(CREATE_HANDLE_REQ_HEX);
    let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
    let Outcome::Done(out) = svc.process(env, &bytes[ENVELOPE_LEN..], source(Transport::Tcp))
    else {
        panic!("no recursion here");
    };
    let r = Message::decode_full(&out[0]).unwrap();
    assert_eq!(r.header.response_code, 301, "{:?}", r.body);
    assert_eq!(svc.pending_challenges(), 0);
}

fn verify_request(handle: &str, index: u32, signed: Vec<u8>) -> Vec<u8> {
    request(
        op::VERIFY_CHALLENGE,
        0,
        Body::VerifyChallenge {
            handle: handle.into(),
            index,
            nonce: vec![3; 16],
            digest: vec![4; 32],
            signed_response: signed,
        },
        5,
        0,
    )
}

#[test]
fn hole1_verify_challenge_is_refused_over_udp_and_to_strangers() {
    let f = fixture();
    // The 200 000-iteration answer of the report: never derived on a UDP worker.
    let costly = seckey_answer_pbkdf2(b"guess", &[3; 16], &[4; 32], &[9; 16], 200_000, 160);
    let r = one(
        &f,
        &verify_request("0.NA/88.100.1", 0, costly.clone()),
        Transport::Udp,
    );
    assert_eq!(r.header.response_code, 5);
    // Over TCP only the configured peers are answered; by default there are none.
    let r = one(
        &f,
        &verify_request("0.NA/88.100.1", 0, costly),
        Transport::Tcp,
    );
    assert_eq!(r.header.response_code, 5);
    let refused = f
        .svc
        .metrics()
        .refused
        .with_label_values(&["tcp", "verify_refused"]);
    assert_eq!(refused.get(), 1);
}

#[test]
fn hole1_challenge_answers_are_refused_over_udp() {
    let f = fixture();
    let body = Body::ChallengeAnswer {
        auth_type: "HS_SECKEY".into(),
        identity_handle: "0.NA/88.100.1".into(),
        identity_index: 300,
        signed_response: seckey_answer_pbkdf2(b"x", &[1; 16], &[2; 32], &[9; 16], 200_000, 160),
    };
    let r = one(
        &f,
        &request(op::CHALLENGE_RESPONSE, 0, body, 9, 1234),
        Transport::Udp,
    );
    assert_eq!(r.header.response_code, 5);
}

/// One challenge for the admin-only EMAIL, answered with `secret`.
fn answer_once(f: &Fixture, from: Source, secret: &[u8]) -> Message {
    let req = resolve("88.100.1/SN-0001", vec![3], vec![], 0x1800_0000);
    let c = send_from(&f.svc, &req, from).remove(0);
    assert_eq!(c.header.response_code, 402, "{:?}", c.body);
    let Body::Challenge { nonce } = &c.body else {
        panic!()
    };
    let digest = c.digest.as_ref().unwrap().digest.clone();
    let body = Body::ChallengeAnswer {
        auth_type: "HS_SECKEY".into(),
        identity_handle: "0.NA/88.100.1".into(),
        identity_index: 300,
        signed_response: seckey_answer_sha1(secret, nonce, &digest),
    };
    let ans = request(op::CHALLENGE_RESPONSE, 0, body, 778, c.envelope.session_id);
    send_from(&f.svc, &ans, from).remove(0)
}

#[test]
fn hole1_failed_answers_are_rate_limited_per_source() {
    let f = fixture();
    let attacker = Source::tcp(IpAddr::from([127, 0, 9, 9]));
    let limits = FailureLimits::default();
    for _ in 0..limits.burst {
        assert_eq!(
            answer_once(&f, attacker, b"guess").header.response_code,
            403
        );
    }
    // The budget is spent: even the right secret is refused from there, without a check.
    let r = answer_once(&f, attacker, b"password");
    assert_eq!(r.header.response_code, 403);
    assert_eq!(
        f.svc
            .metrics()
            .refused
            .with_label_values(&["tcp", "auth_rate_limited"])
            .get(),
        1
    );
    // Another address is not affected.
    let r = answer_once(&f, source(Transport::Tcp), b"password");
    assert_eq!(r.header.response_code, 1, "{:?}", r.body);
}

#[test]
fn hole1_index_zero_tries_a_bounded_number_of_keys() {
    let f = fixture();
    let owner = f
        .engine
        .authenticate_secret(
            &f.engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            b"password",
        )
        .unwrap();
    // 20 more secrets; the right one last.
    let h = f.engine.parse_handle("88.100.1/MANY").unwrap();
    let mut values: Vec<HandleValue> = (1..=20)
        .map(|i| {
            HandleValue::new(i, "HS_SECKEY", format!("wrong-{i}"))
                .with_permissions(ValuePermissions::ADMIN_ONLY)
        })
        .collect();
    values.push(
        HandleValue::new(21, "HS_SECKEY", "right").with_permissions(ValuePermissions::ADMIN_ONLY),
    );
    f.engine
        .create(&owner, &h, values, crate::resolve::Overwrite::No)
        .unwrap();
    let mut svc = NativeService::new(f.engine.clone(), Metrics::new().unwrap(), &site());
    svc = svc.with_limits(NativeLimits {
        verify_peers: vec![CLIENT],
        ..NativeLimits::default()
    });
    let signed = seckey_answer_sha1(b"right", &[3; 16], &[4; 32]);
    let mk = |index| verify_request("88.100.1/MANY", index, signed.clone());
    // Index 0 stops after MAX_KEYS_PER_ANSWER keys: the 21st is never reached.
    let r = send_from(&svc, &mk(0), source(Transport::Tcp)).remove(0);
    assert_eq!(r.body, Body::VerifyResult { valid: false });
    let r = send_from(&svc, &mk(21), source(Transport::Tcp)).remove(0);
    assert_eq!(r.body, Body::VerifyResult { valid: true });
}

#[test]
fn hole9_md5_answers_do_not_count_on_current_challenges() {
    let f = fixture();
    let req = resolve("88.100.1/SN-0001", vec![3], vec![], 0x1800_0000);
    let mut m = Message::decode_full(&req).unwrap();
    // A 2.11 request (the fixture's default is 2.3 suggesting 2.11: negotiated 2.11).
    m.envelope.major = 2;
    m.envelope.minor = 11;
    let out = admin(
        &f,
        &m.encode(),
        "HS_SECKEY",
        ("0.NA/88.100.1", 300),
        |n, d| {
            use md5::Digest;
            let mut answer = vec![crate::auth::challenge::mac_alg::MD5];
            let mut h = md5::Md5::new();
            h.update(b"password");
            h.update(n);
            h.update(d);
            h.update(b"password");
            answer.extend_from_slice(&h.finalize());
            answer
        },
    );
    assert_eq!(out[0].header.response_code, 403);
}

#[test]
fn hole2_udp_answers_are_bounded_and_send_clients_to_tcp() {
    let f = fixture();
    let owner = f
        .engine
        .authenticate_secret(
            &f.engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            b"password",
        )
        .unwrap();
    // A record whose values total ~40 KB.
    let h = f.engine.parse_handle("88.100.1/BIG").unwrap();
    let values = (1..=10)
        .map(|i| HandleValue::new(i, "DESC", "x".repeat(4000)))
        .collect();
    f.engine
        .create(&owner, &h, values, crate::resolve::Overwrite::No)
        .unwrap();
    let req = resolve("88.100.1/BIG", vec![], vec![], flag::PUBLIC_ONLY);
    let Outcome::Done(out) = f.svc.process(
        Envelope::decode(&req[..ENVELOPE_LEN]).unwrap(),
        &req[ENVELOPE_LEN..],
        source(Transport::Udp),
    ) else {
        panic!()
    };
    assert_eq!(out.len(), 1);
    assert!(
        out[0].len() < 512,
        "one short datagram, not {} bytes",
        out[0].len()
    );
    let r = Message::decode_full(&out[0]).unwrap();
    assert_eq!(
        r.header.response_code, 2,
        "RC_ERROR makes Java clients try TCP"
    );
    assert_ne!(r.envelope.flags & envelope_flag::TRUNCATED, 0);
    // Over TCP the whole record comes back.
    let r = one(&f, &req, Transport::Tcp);
    let Body::Values { values, .. } = r.body else {
        panic!()
    };
    assert_eq!(values.len(), 10);
    // An ordinary record still goes over UDP.
    let r = one(
        &f,
        &resolve("88.100.1/SN-0001", vec![], vec![], flag::PUBLIC_ONLY),
        Transport::Udp,
    );
    assert_eq!(r.header.response_code, 1);
}

#[test]
fn hole3_anonymous_udp_reads_create_no_challenge() {
    let f = fixture();
    // PO clear for a record with a non-public value, the way a flood of spoofed datagrams
    // would ask: RC 2 (go to TCP), nothing remembered.
    for i in 0..100u8 {
        let from = Source::udp(IpAddr::from([10, 0, 0, i]));
        let r = send_from(
            &f.svc,
            &resolve("88.100.1/SN-0001", vec![], vec![], 0),
            from,
        )
        .remove(0);
        assert_eq!(r.header.response_code, 2);
    }
    assert_eq!(f.svc.pending_challenges(), 0);
    // Over TCP the challenge is issued.
    let r = one(
        &f,
        &resolve("88.100.1/SN-0001", vec![], vec![], 0),
        Transport::Tcp,
    );
    assert_eq!(r.header.response_code, 402);
    assert_eq!(f.svc.pending_challenges(), 1);
}

#[test]
fn hole3_a_challenge_flood_from_one_address_leaves_room_for_the_administrator() {
    let f = fixture();
    let attacker = Source::tcp(IpAddr::from([127, 0, 7, 7]));
    let create = hex(CREATE_HANDLE_REQ_HEX);
    let mut busy = 0;
    for _ in 0..200 {
        let r = send_from(&f.svc, &create, attacker).remove(0);
        if r.header.response_code == 3 {
            busy += 1;
        }
    }
    let per_source = PendingLimits::default().max_per_source;
    assert_eq!(f.svc.pending_challenges(), per_source);
    assert_eq!(busy, 200 - per_source);
    // The administrator, elsewhere, still authenticates and writes.
    let r = answer_once(&f, source(Transport::Tcp), b"password");
    assert_eq!(r.header.response_code, 1, "{:?}", r.body);
    // The timer's sweep empties the table once the challenges expire.
    let later = Instant::now() + CHALLENGE_TTL + Duration::from_secs(1);
    assert_eq!(f.svc.sweep(later), per_source);
    assert_eq!(f.svc.pending_challenges(), 0);
}

/// OC_HOME_NA / OC_UNHOME_NA as hdl-admintool sends them (HOME_NA_REQ_HEX, UNHOME_NA_REQ_HEX):
/// challenged like any administration, allowed only to the node's server administrators,
/// durable; the answer is the reference server's (HOME_NA_SUCCESS_RESP_HEX); a prefix
/// administrator who is not a server administrator gets RC 401.
#[test]
fn home_and_unhome_over_the_wire_for_server_admins() {
    use crate::wire::handle::vectors2::v2;
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    for p in ["88.100.1", "88.200.2"] {
        init_prefix(&reg, &Prefix::parse(p).unwrap(), 300, b"password").unwrap();
    }
    let policy = Policy {
        server_admins: vec![crate::auth::Identity {
            handle: Handle::parse("0.NA/88.100.1", crate::model::SuffixCase::Sensitive).unwrap(),
            index: 300,
        }],
        ..Policy::default()
    };
    let engine = Engine::new(reg, policy);
    let svc = NativeService::new(engine.clone(), Metrics::new().unwrap(), &site())
        .with_fixed_expiration(0x7f00_0000);
    let target = Prefix::parse("88.100.2").unwrap();
    let run = |req: &[u8], who: &str, request_id: u32| -> Vec<u8> {
        let c = send_from(&svc, req, source(Transport::Tcp)).remove(0);
        assert_eq!(c.header.response_code, 402);
        let Body::Challenge { nonce } = &c.body else {
            panic!("{c:?}")
        };
        let digest = &c.digest.as_ref().unwrap().digest;
        let body = Body::ChallengeAnswer {
            auth_type: "HS_SECKEY".into(),
            identity_handle: who.into(),
            identity_index: 300,
            signed_response: seckey_answer_pbkdf2(
                b"password",
                nonce,
                digest,
                &[1; 16],
                10_000,
                160,
            ),
        };
        let mut m = Message::request(op::CHALLENGE_RESPONSE, 0x1900_0000, body);
        m.envelope.session_id = c.envelope.session_id;
        m.envelope.request_id = request_id;
        let env = Envelope::decode(&m.encode()[..ENVELOPE_LEN]).unwrap();
        let Outcome::Done(mut out) =
            svc.process(env, &m.encode()[ENVELOPE_LEN..], source(Transport::Tcp))
        else {
            panic!("no recursion")
        };
        out.remove(0)
    };
    assert!(!engine.registry().is_homed(&target).unwrap());
    let home = run(&v2("HOME_NA_REQ_HEX"), "0.NA/88.100.1", 0x0a0b_0c53);
    assert_eq!(home, v2("HOME_NA_SUCCESS_RESP_HEX"));
    assert!(engine.registry().is_homed(&target).unwrap());
    // The 88.200.2 administrator is no server administrator.
    let refused = run(&v2("UNHOME_NA_REQ_HEX"), "0.NA/88.200.2", 0x0a0b_0c54);
    let refused = Message::decode_full(&refused).unwrap();
    assert_eq!(refused.header.response_code, 401, "{:?}", refused.body);
    assert!(engine.registry().is_homed(&target).unwrap());
    let unhome = run(&v2("UNHOME_NA_REQ_HEX"), "0.NA/88.100.1", 0x0a0b_0c55);
    let unhome = Message::decode_full(&unhome).unwrap();
    assert_eq!(
        (unhome.header.op_code, unhome.header.response_code),
        (op::UNHOME_NA, 1)
    );
    assert!(!engine.registry().is_homed(&target).unwrap());
}
