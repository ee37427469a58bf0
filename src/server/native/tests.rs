//! The native handler without sockets: requests built with the codec go in, responses are
//! decoded and checked.

use std::sync::Arc;

use super::*;
use crate::auth::challenge::{seckey_answer_pbkdf2, seckey_answer_sha1, PrivateKey};
use crate::model::{HandleValue, Prefix, SiteInfo, ValuePermissions};
use crate::resolve::{init_prefix, Policy};
use crate::store::{Registry, StoreOptions};
use crate::wire::handle::message::ENVELOPE_LEN;
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
    let svc = NativeService::new(engine.clone(), Metrics::new().unwrap(), &site());
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

fn send(f: &Fixture, bytes: &[u8], transport: Transport) -> Vec<Message> {
    let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
    let Outcome::Done(responses) = f.svc.process(env, &bytes[ENVELOPE_LEN..], transport) else {
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
    assert!(u64::from(r.header.expiration) > now_unix());
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
    unknown[ENVELOPE_LEN..ENVELOPE_LEN + 4].copy_from_slice(&2001u32.to_be_bytes());
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
    let f = fixture();
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
    let Outcome::Done(out) = svc.process(env, &bytes[ENVELOPE_LEN..], Transport::Tcp) else {
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
