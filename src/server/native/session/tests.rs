//! The HN_SESSION exchange against the native handler, without sockets.

use std::net::IpAddr;
use std::sync::Arc;

use rsa::BigUint;

use super::*;
use crate::auth::challenge::{request_digest, seckey_answer_pbkdf2};
use crate::auth::session::{self as hs, session_key, DhKey, SessionLimits};
use crate::metrics::Metrics;
use crate::model::{HandleValue, Prefix, SiteInfo, ValuePermissions};
use crate::resolve::{init_prefix, Engine, Policy};
use crate::server::native::{NativeLimits, Outcome};
use crate::store::{Registry, StoreOptions};
use crate::wire::handle::message::envelope_flag;
use crate::wire::handle::message::{Envelope, ENVELOPE_LEN};
use crate::wire::handle::vectors2::{v2, v2_hex};

struct Fixture {
    _dir: tempfile::TempDir,
    svc: NativeService,
    engine: Engine,
}

fn fixture_with(limits: NativeLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    init_prefix(&reg, &Prefix::parse("88.100.1").unwrap(), 300, b"password").unwrap();
    let engine = Engine::new(reg, Policy::default());
    let owner = engine
        .authenticate_secret(
            &engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            b"password",
        )
        .unwrap();
    engine
        .create(
            &owner,
            &engine.parse_handle("88.100.1/SN-0001").unwrap(),
            vec![
                HandleValue::new(1, "URL", "https://example.com/sn/0001"),
                HandleValue::new(3, "EMAIL", "secret@example.com")
                    .with_permissions(ValuePermissions::ADMIN_ONLY),
            ],
            crate::resolve::Overwrite::No,
        )
        .unwrap();
    let site = test_site();
    let svc =
        NativeService::new(engine.clone(), Metrics::new().unwrap(), &site).with_limits(limits);
    Fixture {
        _dir: dir,
        svc,
        engine,
    }
}

fn test_site() -> SiteInfo {
    let hex = "0001020b0001800200000000000000010000000464657363000000047465737400000001000000010000000000000000000000007f0000010000000000000003030100000a51020000000a51030200001f40";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    SiteInfo::decode(&bytes).unwrap()
}

fn fixture() -> Fixture {
    fixture_with(NativeLimits::default())
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn tcp() -> Source {
    Source::tcp(CLIENT)
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

fn one(svc: &NativeService, bytes: &[u8], from: Source) -> Message {
    let mut r = send_from(svc, bytes, from);
    assert_eq!(r.len(), 1, "{r:?}");
    r.remove(0)
}

/// A client of one session, as Handle.Net's HandleResolver drives it.
struct Client {
    sid: u32,
    key: [u8; 32],
    counter: u32,
}

fn client_x() -> BigUint {
    BigUint::from_bytes_be(&v2_hex("/intermediate/SESSION_DH/client_private_x_hex"))
}

/// A setup request with the vectors' client key, for `identity` (empty: anonymous).
fn setup_request(identity: (&str, u32), request_id: u32) -> Vec<u8> {
    let mut m = Message::request(
        op::SESSION_SETUP,
        0x5980_0000,
        Body::SessionSetup {
            mode: key_exchange::DH,
            timeout: 86_400,
            identity_handle: identity.0.into(),
            identity_index: identity.1,
            exchange: KeyExchange::PublicKey(v2_hex(
                "/intermediate/SESSION_DH/client_DH_PUB_KEY_hex",
            )),
        },
    );
    m.envelope.request_id = request_id;
    m.header.expiration = 0x7f00_0000;
    m.encode()
}

/// The session a setup answer opens (the key derived from the server's DH value).
fn opened(answer: &Message) -> Client {
    assert_eq!(answer.header.response_code, 1, "{answer:?}");
    let Body::SessionSetupAnswer { mode, data } = &answer.body else {
        panic!("{:?}", answer.body)
    };
    assert_eq!(*mode, key_exchange::DH);
    assert_eq!(&data[..4], &[0, 0, 0, 3], "AES");
    let server = DhKey::decode(&data[4..]).unwrap();
    assert_ne!(answer.envelope.session_id, 0);
    Client {
        sid: answer.envelope.session_id,
        key: session_key(&server, &client_x()).unwrap(),
        counter: 0,
    }
}

fn setup(svc: &NativeService, identity: (&str, u32)) -> Client {
    opened(&one(svc, &setup_request(identity, 0x0a0b_0c30), tcp()))
}

impl Client {
    /// A request on the session; MAC'ed with the next counter when `mac`.
    fn request(
        &mut self,
        op_code: u32,
        flags: u32,
        body: Body,
        request_id: u32,
        mac: bool,
    ) -> Vec<u8> {
        let mut m = Message::request(op_code, flags, body);
        m.envelope.session_id = self.sid;
        m.envelope.request_id = request_id;
        m.header.expiration = 0x7f00_0000;
        if mac {
            self.counter += 1;
            let bytes = m.encode_message();
            let hb = header_and_body(&bytes).unwrap();
            let c = credential::mac(&self.key, &m.envelope, self.counter, hb).unwrap();
            m.credential = Some(c.encode());
        }
        m.encode()
    }

    /// Send `bytes` and read the one answer, decrypting it with the session key when the
    /// server encrypted it (envelope flag 0x40), as Handle.Net's client does; and whether it
    /// was encrypted.
    fn exchange(&self, svc: &NativeService, bytes: &[u8]) -> (Message, bool) {
        let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
        let Outcome::Done(out) = svc.process(env, &bytes[ENVELOPE_LEN..], tcp()) else {
            panic!("no recursion here")
        };
        assert_eq!(out.len(), 1);
        let answer = &out[0];
        let mut env = Envelope::decode(&answer[..ENVELOPE_LEN]).unwrap();
        if env.flags & envelope_flag::ENCRYPTED == 0 {
            return (Message::decode_full(answer).unwrap(), false);
        }
        assert_eq!(env.message_length as usize, answer.len() - ENVELOPE_LEN);
        let plain = hs::decrypt_message(&self.key, &answer[ENVELOPE_LEN..]).unwrap();
        env.flags &= !envelope_flag::ENCRYPTED;
        env.message_length = plain.len() as u32;
        (Message::decode(env, &plain).unwrap(), true)
    }

    /// `bytes` (a whole message) with everything after the envelope encrypted, as Handle.Net
    /// sends writes of values anyone may not read inside a session.
    fn encrypted(&self, bytes: &[u8]) -> Vec<u8> {
        let sealed = hs::encrypt_message(&self.key, &bytes[ENVELOPE_LEN..]);
        let mut out = bytes[..ENVELOPE_LEN].to_vec();
        out[2] |= envelope_flag::ENCRYPTED;
        out[16..20].copy_from_slice(&(sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&sealed);
        out
    }

    fn add(&mut self, index: u32, email: &str, request_id: u32) -> Vec<u8> {
        self.request(
            op::ADD_VALUE,
            0x1900_0000,
            Body::HandleValues {
                handle: "88.100.1/SN-0001".into(),
                values: vec![HandleValue::new(index, "EMAIL", email)],
            },
            request_id,
            true,
        )
    }
}

fn answer_challenge(
    challenge: &Message,
    request_id: u32,
    who: (&str, u32),
    secret: &[u8],
) -> Vec<u8> {
    let Body::Challenge { nonce } = &challenge.body else {
        panic!("{challenge:?}")
    };
    let digest = &challenge.digest.as_ref().unwrap().digest;
    let mut m = Message::request(
        op::CHALLENGE_RESPONSE,
        0x1900_0000,
        Body::ChallengeAnswer {
            auth_type: "HS_SECKEY".into(),
            identity_handle: who.0.into(),
            identity_index: who.1,
            signed_response: seckey_answer_pbkdf2(secret, nonce, digest, &[5; 16], 10_000, 160),
        },
    );
    m.envelope.session_id = challenge.envelope.session_id;
    m.envelope.request_id = request_id;
    m.header.expiration = 0x7f00_0000;
    m.encode()
}

const ADMIN: (&str, u32) = ("0.NA/88.100.1", 300);

fn value(f: &Fixture, index: u32) -> Option<HandleValue> {
    let rec = f
        .engine
        .registry()
        .get(&f.engine.parse_handle("88.100.1/SN-0001").unwrap())
        .unwrap()
        .unwrap();
    rec.values.into_iter().find(|v| v.index == index)
}

#[test]
fn the_handle_net_setup_request_gets_a_session() {
    let f = fixture();
    let req = v2("SESSION_SETUP_REQ_HEX");
    let r = one(&f.svc, &req, tcp());
    let reference = Message::decode_full(&v2("SESSION_SETUP_RESP_HEX")).unwrap();
    // RC 1 with the RD digest of the reference answer (same request), the request id, and
    // the flags Handle.Net echoes.
    assert_eq!(r.envelope.request_id, reference.envelope.request_id);
    assert_eq!(r.digest, reference.digest);
    // (idnode does not echo REC, which Handle.Net's answers carry: compared without it.)
    let rec = flag::RECURSIVE;
    assert_eq!(r.header.op_flag | rec, reference.header.op_flag | rec);
    let c = opened(&r);
    assert_eq!(f.svc.live_sessions(), 1);
    assert_eq!(f.svc.metrics.sessions.get(), 1);
    // A fresh private value each time: another setup gets another key and id.
    let c2 = opened(&one(&f.svc, &req, tcp()));
    assert_ne!((c.sid, c.key), (c2.sid, c2.key));
    // Without the 2 trailing bytes the body is accepted too (bodyLength, messageLength fixed).
    let mut short = req.clone();
    short.drain(req.len() - 6..req.len() - 4);
    let len = u32::from_be_bytes(short[16..20].try_into().unwrap()) - 2;
    short[16..20].copy_from_slice(&len.to_be_bytes());
    let body = u32::from_be_bytes(short[40..44].try_into().unwrap()) - 2;
    short[40..44].copy_from_slice(&body.to_be_bytes());
    opened(&one(&f.svc, &short, tcp()));
}

#[test]
fn the_whole_hn_session_exchange() {
    let f = fixture();
    let mut c = setup(&f.svc, ADMIN);
    // First admin request: challenged on the session's own id, digest of the request.
    let add = c.add(5, "session@example.com", 0x0a0b_0c31);
    let ch = one(&f.svc, &add, tcp());
    assert_eq!(ch.header.response_code, 402);
    assert_eq!(ch.envelope.session_id, c.sid);
    let (_, digest) = request_digest(2, 11, header_and_body(&add[ENVELOPE_LEN..]).unwrap());
    assert_eq!(ch.digest.as_ref().unwrap().digest, digest);
    // The answer (no MAC): RC 1 for opCode 102 with the answer's request id and the session.
    let ans = answer_challenge(&ch, 0x0a0b_0c32, ADMIN, b"password");
    let r = one(&f.svc, &ans, tcp());
    assert_eq!(
        (
            r.header.op_code,
            r.header.response_code,
            r.envelope.request_id,
            r.envelope.session_id
        ),
        (op::ADD_VALUE, 1, 0x0a0b_0c32, c.sid)
    );
    assert_eq!(r.credential, Some(vec![]), "unsigned without CT");
    assert_eq!(value(&f, 5).unwrap().data, b"session@example.com");
    // Authenticated now: a modify goes through on its MAC alone.
    let modify = c.request(
        op::MODIFY_VALUE,
        0x1900_0000,
        Body::HandleValues {
            handle: "88.100.1/SN-0001".into(),
            values: vec![HandleValue::new(1, "URL", "https://example.com/sn/0001/v2")],
        },
        0x0a0b_0c33,
        true,
    );
    let r = one(&f.svc, &modify, tcp());
    assert_eq!((r.header.response_code, r.envelope.session_id), (1, c.sid));
    assert_eq!(f.svc.pending_challenges(), 0);
    assert_eq!(
        value(&f, 1).unwrap().data,
        b"https://example.com/sn/0001/v2"
    );
    // The same message again: its counter was seen.
    let r = one(&f.svc, &modify, tcp());
    assert_eq!(r.header.response_code, 505);
    // A wrong MAC.
    let mut bad = c.add(6, "forged@example.com", 0x0a0b_0c40);
    let n = bad.len();
    bad[n - 1] ^= 1;
    let r = one(&f.svc, &bad, tcp());
    assert_eq!(r.header.response_code, 502);
    assert_eq!(
        r.body,
        Body::Error {
            message: "Session authentication failed.".into()
        }
    );
    assert!(value(&f, 6).is_none());
    // No MAC at all on an admin request of an authenticated session.
    let plain = c.request(
        op::DELETE_HANDLE,
        0x1900_0000,
        Body::Handle {
            handle: "88.100.1/SN-0001".into(),
        },
        0x0a0b_0c41,
        false,
    );
    let r = one(&f.svc, &plain, tcp());
    assert_eq!(r.header.response_code, 404);
    assert!(value(&f, 1).is_some());
    // A certified PO-clear resolution: the admin-only value, HS_MAC-signed with the session
    // key and the server's counter 1.
    let res = c.request(
        op::RESOLUTION,
        0x5800_0000,
        Body::Resolution {
            handle: "88.100.1/SN-0001".into(),
            indexes: vec![],
            types: vec![],
        },
        0x0a0b_0c34,
        true,
    );
    // It holds a value anyone may not read: the server encrypts it (protocol ≥ 2.8).
    let (r, encrypted) = c.exchange(&f.svc, &res);
    assert!(encrypted);
    assert_eq!(r.header.response_code, 1);
    let Body::Values { values, .. } = &r.body else {
        panic!()
    };
    assert!(values.iter().any(|v| v.index == 3));
    let cred = Credential::decode(r.credential.as_deref().unwrap()).unwrap();
    assert_eq!((cred.kind.as_str(), cred.signer_index), ("HS_MAC", 1));
    let bytes = r.encode();
    let hb = header_and_body(&bytes[ENVELOPE_LEN..]).unwrap();
    assert!(credential::verify_mac(&c.key, &r.envelope, hb, &cred).unwrap());
    // The next certified answer uses counter 2.
    let res = c.request(
        op::RESOLUTION,
        0x5900_0000,
        Body::Resolution {
            handle: "88.100.1/SN-0001".into(),
            indexes: vec![1],
            types: vec![],
        },
        0x0a0b_0c35,
        true,
    );
    let (r, encrypted) = c.exchange(&f.svc, &res);
    assert!(!encrypted, "only public values: sent in clear");
    let cred = Credential::decode(r.credential.as_deref().unwrap()).unwrap();
    assert_eq!(cred.signer_index, 2);
    // Handle.Net ≥ 2.8 encrypts a write of a value anyone may not read: decrypted, its MAC
    // checked, performed as the session's identity.
    let secret = HandleValue::new(9, "HS_SECKEY", "sealed-secret")
        .with_permissions(ValuePermissions::ADMIN_ONLY);
    let add = c.request(
        op::ADD_VALUE,
        0x1900_0000,
        Body::HandleValues {
            handle: "88.100.1/SN-0001".into(),
            values: vec![secret],
        },
        0x0a0b_0c38,
        true,
    );
    let (r, _) = c.exchange(&f.svc, &c.encrypted(&add));
    assert_eq!(r.header.response_code, 1, "{:?}", r.body);
    assert_eq!(value(&f, 9).unwrap().data, b"sealed-secret");
    // A ciphertext that does not decrypt (cut short): RC 501, nothing written.
    let add = c.add(10, "x@example.com", 0x0a0b_0c39);
    let mut forged = c.encrypted(&add);
    forged.pop();
    let len = (forged.len() - ENVELOPE_LEN) as u32;
    forged[16..20].copy_from_slice(&len.to_be_bytes());
    let (r, _) = c.exchange(&f.svc, &forged);
    assert_eq!(r.header.response_code, 501);
    assert!(value(&f, 10).is_none());
    // Encrypted for a session that does not exist: RC 500.
    let mut unknown = c.encrypted(&add);
    unknown[4..8].copy_from_slice(&0x0bad_0badu32.to_be_bytes());
    let (r, _) = c.exchange(&f.svc, &unknown);
    assert_eq!(r.header.response_code, 500);
    // Terminate (MAC'ed): RC 1, the session is gone.
    let bye = c.request(
        op::SESSION_TERMINATE,
        0x1900_0000,
        Body::Handle { handle: "/".into() },
        0x0a0b_0c36,
        true,
    );
    let r = one(&f.svc, &bye, tcp());
    assert_eq!((r.header.response_code, r.envelope.session_id), (1, c.sid));
    assert_eq!(f.svc.live_sessions(), 0);
    // Later requests on it: RC 500 with Handle.Net's text (SESSION_TIMEOUT_RESP_HEX).
    let late = c.add(7, "late@example.com", 0x0a0b_0c37);
    let r = one(&f.svc, &late, tcp());
    let reference = Message::decode_full(&v2("SESSION_TIMEOUT_RESP_HEX")).unwrap();
    assert_eq!(r.header.response_code, 500);
    assert_eq!(r.body, reference.body);
    assert_eq!(r.envelope.session_id, c.sid);
    assert!(value(&f, 7).is_none());
}

#[test]
fn the_vectors_expired_request_gets_the_vectors_timeout_answer() {
    let f = fixture();
    let r = one(&f.svc, &v2("SESSION_EXPIRED_ADD_VALUE_REQ_HEX"), tcp());
    let mut want = Message::decode_full(&v2("SESSION_TIMEOUT_RESP_HEX")).unwrap();
    // Everything but the expiration (now + 12 h) and the site serial of this fixture.
    want.header.expiration = r.header.expiration;
    want.header.site_serial = r.header.site_serial;
    assert_eq!(r, want);
    // Terminating an unknown session: 500 too.
    let r = one(&f.svc, &v2("SESSION_TERMINATE_REQ_HEX"), tcp());
    assert_eq!(r.header.response_code, 500);
}

#[test]
fn a_bad_mac_on_terminate_keeps_the_session() {
    let f = fixture();
    let mut c = setup(&f.svc, ADMIN);
    let mut bye = c.request(
        op::SESSION_TERMINATE,
        0x1900_0000,
        Body::Handle { handle: "/".into() },
        9,
        true,
    );
    let n = bye.len();
    bye[n - 3] ^= 0x10;
    assert_eq!(one(&f.svc, &bye, tcp()).header.response_code, 502);
    let unsigned = c.request(
        op::SESSION_TERMINATE,
        0x1900_0000,
        Body::Handle { handle: "/".into() },
        10,
        false,
    );
    assert_eq!(one(&f.svc, &unsigned, tcp()).header.response_code, 502);
    assert_eq!(f.svc.live_sessions(), 1);
}

#[test]
fn setup_over_udp_creates_nothing() {
    let f = fixture();
    let r = one(&f.svc, &v2("SESSION_SETUP_REQ_HEX"), Source::udp(CLIENT));
    assert_eq!(r.header.response_code, 2);
    assert_eq!(f.svc.live_sessions(), 0);
}

#[test]
fn only_the_setup_identity_authenticates_a_session() {
    let f = fixture();
    // The session was set up for 301, the challenge is answered by 300: the request is
    // done (the answer authenticates it), the session stays unauthenticated.
    let mut c = setup(&f.svc, ("0.NA/88.100.1", 301));
    let ch = one(&f.svc, &c.add(5, "a@example.com", 1), tcp());
    assert_eq!(ch.header.response_code, 402);
    let r = one(&f.svc, &answer_challenge(&ch, 2, ADMIN, b"password"), tcp());
    assert_eq!(r.header.response_code, 1);
    let ch = one(&f.svc, &c.add(6, "b@example.com", 3), tcp());
    assert_eq!(ch.header.response_code, 402, "still challenged");
    // An anonymous session never becomes authenticated either.
    let mut anon = setup(&f.svc, ("", u32::MAX));
    let ch = one(&f.svc, &anon.add(7, "c@example.com", 4), tcp());
    let r = one(&f.svc, &answer_challenge(&ch, 5, ADMIN, b"password"), tcp());
    assert_eq!(r.header.response_code, 1);
    let ch = one(&f.svc, &anon.add(8, "d@example.com", 6), tcp());
    assert_eq!(ch.header.response_code, 402);
    // A wrong secret: 403, nothing authenticated.
    let mut c = setup(&f.svc, ADMIN);
    let ch = one(&f.svc, &c.add(9, "e@example.com", 7), tcp());
    let r = one(&f.svc, &answer_challenge(&ch, 8, ADMIN, b"wrong"), tcp());
    assert_eq!(r.header.response_code, 403);
    let ch = one(&f.svc, &c.add(9, "e@example.com", 9), tcp());
    assert_eq!(ch.header.response_code, 402);
    assert!(value(&f, 9).is_none());
}

#[test]
fn sessions_are_bounded_per_address() {
    let f = fixture_with(NativeLimits {
        sessions: SessionLimits {
            max_per_source: 2,
            ..SessionLimits::default()
        },
        ..NativeLimits::default()
    });
    setup(&f.svc, ADMIN);
    setup(&f.svc, ADMIN);
    let r = one(&f.svc, &setup_request(ADMIN, 3), tcp());
    assert_eq!(r.header.response_code, 3);
    assert_eq!(f.svc.live_sessions(), 2);
    // Another address is not affected.
    let other = Source::tcp(IpAddr::from([127, 0, 0, 9]));
    assert_eq!(
        one(&f.svc, &setup_request(ADMIN, 4), other)
            .header
            .response_code,
        1
    );
    // Unauthenticated sessions are swept after a minute.
    assert_eq!(f.svc.sweep(Instant::now() + Duration::from_secs(61)), 3);
    assert_eq!(
        (f.svc.live_sessions(), f.svc.metrics.sessions.get()),
        (0, 0)
    );
}

#[test]
fn malformed_setups_are_refused() {
    let f = fixture();
    let mut bytes = setup_request(ADMIN, 1);
    let mut m = Message::decode_full(&bytes).unwrap();
    // A DH key in a 32-bit group: 504, and it counts as a failed authentication.
    m.body = Body::SessionSetup {
        mode: key_exchange::DH,
        timeout: 60,
        identity_handle: ADMIN.0.into(),
        identity_index: ADMIN.1,
        exchange: KeyExchange::PublicKey(
            crate::model::PublicKey::Dh {
                y: vec![5],
                p: vec![0x7f, 0xff, 0xff, 0xfb],
                g: vec![2],
            }
            .encode(),
        ),
    };
    bytes = m.encode();
    assert_eq!(one(&f.svc, &bytes, tcp()).header.response_code, 504);
    // Other key exchange modes: 501.
    m.body = Body::SessionSetup {
        mode: key_exchange::CIPHER_SERVER,
        timeout: 60,
        identity_handle: ADMIN.0.into(),
        identity_index: ADMIN.1,
        exchange: KeyExchange::None,
    };
    assert_eq!(one(&f.svc, &m.encode(), tcp()).header.response_code, 501);
    // Before 2.7 (no HMAC-SHA256 sessions): 501.
    let mut old = Message::decode_full(&setup_request(ADMIN, 2)).unwrap();
    (old.envelope.major, old.envelope.minor) = (2, 5);
    (old.envelope.suggested_major, old.envelope.suggested_minor) = (2, 5);
    assert_eq!(one(&f.svc, &old.encode(), tcp()).header.response_code, 501);
    assert_eq!(f.svc.live_sessions(), 0);
    // Ten failed setups spend the address's budget: the next is refused before any DH.
    for _ in 0..10 {
        one(&f.svc, &bytes, tcp());
    }
    let r = one(&f.svc, &setup_request(ADMIN, 3), tcp());
    assert_eq!(r.header.response_code, 403);
}

#[test]
fn challenge_ids_and_session_ids_do_not_collide() {
    let f = fixture();
    let c = setup(&f.svc, ADMIN);
    // A session-less challenge draws an id no session holds; its answer is not taken for
    // the session and the session id is not taken for a challenge.
    let plain = Message::request(
        op::DELETE_HANDLE,
        0x1900_0000,
        Body::Handle {
            handle: "88.100.1/SN-0001".into(),
        },
    )
    .encode();
    let ch = one(&f.svc, &plain, tcp());
    assert_eq!(ch.header.response_code, 402);
    assert_ne!(ch.envelope.session_id, c.sid);
    assert!(!f.svc.lock_sessions().contains(ch.envelope.session_id));
}

/// A PO-clear read in a session whose setup named an identity, before any admin request: the
/// client can answer a challenge, so restricted values are challenged (as Handle.Net does,
/// even though anonymous reads get the public values on this node), on the session's own id;
/// the answer authenticates the session, and the next admin request needs no challenge. An
/// anonymous session reads as anyone does.
#[test]
fn a_po_clear_read_in_a_named_session_is_challenged_on_the_session() {
    let f = fixture();
    assert_eq!(
        f.svc.limits.anonymous_reads,
        super::super::AnonymousReads::Public
    );
    let mut c = setup(&f.svc, ADMIN);
    let read = |c: &mut Client, request_id| {
        c.request(
            op::RESOLUTION,
            0x1800_0000,
            Body::Resolution {
                handle: "88.100.1/SN-0001".into(),
                indexes: vec![],
                types: vec![],
            },
            request_id,
            true,
        )
    };
    let res = read(&mut c, 0x0a0b_0c60);
    let ch = one(&f.svc, &res, tcp());
    assert_eq!(
        (ch.header.response_code, ch.envelope.session_id),
        (402, c.sid)
    );
    let ans = answer_challenge(&ch, 0x0a0b_0c61, ADMIN, b"password");
    let (r, encrypted) = c.exchange(&f.svc, &ans);
    assert_eq!(r.header.response_code, 1, "{:?}", r.body);
    assert!(encrypted, "it holds the admin-only value");
    let Body::Values { values, .. } = &r.body else {
        panic!("{:?}", r.body)
    };
    assert!(values.iter().any(|v| v.index == 3));
    // Authenticated by that answer: an admin request goes through on its MAC.
    let add = c.add(8, "after-read@example.com", 0x0a0b_0c62);
    assert_eq!(one(&f.svc, &add, tcp()).header.response_code, 1);
    assert_eq!(value(&f, 8).unwrap().data, b"after-read@example.com");
    // An anonymous session: the public values, no challenge.
    let mut anon = setup(&f.svc, ("", u32::MAX));
    let res = read(&mut anon, 0x0a0b_0c63);
    let (r, encrypted) = anon.exchange(&f.svc, &res);
    assert_eq!(r.header.response_code, 1);
    assert!(!encrypted);
    let Body::Values { values, .. } = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(values.iter().map(|v| v.index).collect::<Vec<_>>(), [1, 8]);
}
