//! The ID-SDK's flows against the native handler, byte for byte against the SDK vectors of
//! `handle-vectors-2.json` (expiration masked: idnode stamps now + 12 h; the challenge's
//! session id and nonce masked: idnode draws them at random, and the answer is signed anew
//! over the nonce it drew).

use std::sync::Arc;

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

use super::*;
use crate::auth::challenge::{verify_pubkey_answer, PrivateKey};
use crate::metrics::Metrics;
use crate::model::{AdminPermissions, AdminRef, HandleValue, Prefix, SiteInfo, ValuePermissions};
use crate::model::{PublicKey, ValueReference};
use crate::resolve::Engine;
use crate::resolve::{init_prefix, Overwrite, Policy};
use crate::server::native::{NativeLimits, Outcome};
use crate::store::{Record, Registry, StoreOptions};
use crate::wire::handle::message::ENVELOPE_LEN;
use crate::wire::handle::message::{op, Envelope};
use crate::wire::handle::vectors2::{v2, v2_key};

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Header expiration, in an encoded message (envelope included).
const EXPIRATION: std::ops::Range<usize> = 36..40;
const SESSION: std::ops::Range<usize> = 4..8;

struct Sdk {
    _dir: tempfile::TempDir,
    svc: Arc<NativeService>,
    engine: Engine,
}

/// 88.100.1 with its administrator 300:0.NA/88.100.1 (HS_SECKEY "password"), the SDK's
/// identity 300:88.100.1/admin (HS_PUBKEY = ADMIN_RSA, 289-byte form) allowed to administer
/// the prefix, the site SITE_WITH_KEY_HEX, and 88.100.1/SN-0001 holding the two values of
/// SDK_RESOLUTION_RESP_HEX (timestamps as there) plus an admin-only value.
fn sdk(limits: NativeLimits) -> Sdk {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    init_prefix(&reg, &Prefix::parse("88.100.1").unwrap(), 300, b"password").unwrap();
    let engine = Engine::new(reg.clone(), Policy::default());
    let na = engine.parse_handle("0.NA/88.100.1").unwrap();
    let owner = engine.authenticate_secret(&na, 300, b"password").unwrap();
    let grant = AdminRef {
        permissions: AdminPermissions::ALL,
        admin: ValueReference {
            handle: "88.100.1/admin".into(),
            index: 300,
        },
    };
    engine
        .add_values(
            &owner,
            &na,
            vec![HandleValue::new(101, types::HS_ADMIN, grant.encode())],
            false,
        )
        .unwrap();
    engine
        .create(
            &owner,
            &engine.parse_handle("88.100.1/admin").unwrap(),
            vec![HandleValue::new(
                300,
                types::HS_PUBKEY,
                v2("RSA_PUBKEY_DATA_HEX"),
            )],
            Overwrite::No,
        )
        .unwrap();
    let Body::Values { handle, mut values } = decoded("SDK_RESOLUTION_RESP_HEX").body else {
        panic!()
    };
    values.push(
        HandleValue::new(3, "EMAIL", "restricted@example.com")
            .with_permissions(ValuePermissions::ADMIN_ONLY),
    );
    let h = engine.parse_handle(&handle).unwrap();
    reg.put_batch(&[(h, Record { handle, values })]).unwrap();
    let site = SiteInfo::decode(&v2("SITE_WITH_KEY_HEX")).unwrap();
    let svc =
        NativeService::new(engine.clone(), Metrics::new().unwrap(), &site).with_limits(limits);
    Sdk {
        _dir: dir,
        svc: Arc::new(svc),
        engine,
    }
}

fn password_on() -> NativeLimits {
    NativeLimits {
        password_login: true,
        ..NativeLimits::default()
    }
}

fn decoded(name: &str) -> Message {
    Message::decode_full(&v2(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The one encoded answer to `bytes` from `from`.
fn raw(svc: &NativeService, bytes: &[u8], from: Source) -> Vec<u8> {
    let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
    let Outcome::Done(mut out) = svc.process(env, &bytes[ENVELOPE_LEN..], from) else {
        panic!("no recursion here")
    };
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn ask(svc: &NativeService, bytes: &[u8], from: Source) -> Message {
    Message::decode_full(&raw(svc, bytes, from)).unwrap()
}

/// `ours` with the bytes at `ranges` taken from `expected`, after checking the lengths.
fn masked(ours: &[u8], expected: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    assert_eq!(ours.len(), expected.len(), "lengths differ");
    let mut out = ours.to_vec();
    for r in ranges {
        out[r.clone()].copy_from_slice(&expected[r.clone()]);
    }
    out
}

/// The answer is the vector byte for byte, apart from the expiration (which must be in the
/// future) and `more` ranges.
fn assert_vector(ours: &[u8], name: &str, more: &[std::ops::Range<usize>]) {
    let expected = v2(name);
    let exp = u32::from_be_bytes(ours[EXPIRATION].try_into().unwrap());
    assert!(
        u64::from(exp) > crate::model::unix_now(),
        "{name}: expired answer"
    );
    let mut ranges = vec![EXPIRATION];
    ranges.extend_from_slice(more);
    assert_eq!(
        hex(&masked(ours, &expected, &ranges)),
        hex(&expected),
        "{name}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn admin_rsa() -> PrivateKey {
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&v2_key("ADMIN_RSA")).unwrap();
    PrivateKey::from_pem(&key.to_pkcs8_pem(LineEnding::LF).unwrap()).unwrap()
}

/// SDK_LOGIN_2001_ANSWER_REQ_HEX for the challenge `c`: its session id, and the signature
/// over its nonce and digest.
fn answer_for(c: &Message, key: &PrivateKey) -> Vec<u8> {
    let Body::Challenge { nonce } = &c.body else {
        panic!("{:?}", c.body)
    };
    let digest = &c.digest.as_ref().unwrap().digest;
    let mut answer = decoded("SDK_LOGIN_2001_ANSWER_REQ_HEX");
    answer.envelope.session_id = c.envelope.session_id;
    let Body::ChallengeAnswer {
        signed_response, ..
    } = &mut answer.body
    else {
        panic!()
    };
    *signed_response = key.sign_answer(nonce, digest);
    answer.encode()
}

/// Log `source`'s connection in as 300:88.100.1/admin with the 2001 exchange; the final
/// answer's bytes.
fn key_login(svc: &NativeService, source: Source) -> Vec<u8> {
    let c = ask(svc, &v2("SDK_LOGIN_2001_REQ_HEX"), source);
    assert_eq!(c.header.response_code, 402, "{:?}", c.body);
    raw(svc, &answer_for(&c, &admin_rsa()), source)
}

fn identity(handle: &str, index: u32) -> Identity {
    Identity {
        handle: Handle::parse(handle, crate::model::SuffixCase::Sensitive).unwrap(),
        index,
    }
}

#[test]
fn sdk_vectors_decode_and_reencode_byte_for_byte() {
    for name in [
        "SDK_GET_SITE_INFO_REQ_HEX",
        "SDK_GET_SITE_INFO_RESP_HEX",
        "SDK_RESOLUTION_REQ_HEX",
        "SDK_RESOLUTION_RESP_HEX",
        "SDK_TRUSTED_RESOLUTION_REQ_HEX",
        "SDK_TRUSTED_RESOLUTION_RESP_HEX",
        "SDK_LOGIN_2001_REQ_HEX",
        "SDK_LOGIN_2001_CHALLENGE_HEX",
        "SDK_LOGIN_2001_ANSWER_REQ_HEX",
        "SDK_LOGIN_2001_SUCCESS_RESP_HEX",
        "SDK_LOGIN_2000_REQ_HEX",
        "SDK_LOGIN_2000_SUCCESS_RESP_HEX",
        "SDK_CREATE_REQ_HEX",
        "SDK_CREATE_SUCCESS_RESP_HEX",
    ] {
        assert_eq!(decoded(name).encode(), v2(name), "{name}");
    }
    let login = decoded("SDK_LOGIN_2001_REQ_HEX");
    assert_eq!(login.header.op_code, op::LOGIN_ID_SYSTEM);
    assert_eq!(
        login.body,
        Body::LoginIdSystem {
            identity_handle: "88.100.1/admin".into(),
            identity_index: 300
        }
    );
    let password = decoded("SDK_LOGIN_2000_REQ_HEX");
    assert_eq!(password.header.op_code, op::LOGIN);
    assert_eq!(
        password.body,
        Body::PasswordLogin {
            user: "0.NA/88.100.1".into(),
            indexes: vec![],
            passwords: vec![b"password".to_vec()],
        }
    );
    let ok = decoded("SDK_LOGIN_2000_SUCCESS_RESP_HEX");
    assert_eq!(
        ok.body,
        Body::Values {
            handle: "0.NA/88.100.1".into(),
            values: vec![]
        }
    );
    let c = decoded("SDK_LOGIN_2001_CHALLENGE_HEX");
    assert_eq!((c.header.op_code, c.header.response_code), (2001, 402));
    assert_eq!(
        c.body,
        Body::Challenge {
            nonce: (0x30..0x40).collect()
        }
    );
    assert_eq!(decoded("SDK_LOGIN_2001_SUCCESS_RESP_HEX").body, Body::Empty);
    let t = decoded("SDK_TRUSTED_RESOLUTION_REQ_HEX");
    assert!(t.header.has(flag::TRUSTED_QUERY) && !t.header.has(flag::TRUSTED_RESULT));
}

#[test]
fn sdk_site_info_resolution_and_trusted_answers_are_the_vectors() {
    let f = sdk(NativeLimits::default());
    let from = Source::tcp(CLIENT);
    let site = raw(&f.svc, &v2("SDK_GET_SITE_INFO_REQ_HEX"), from);
    assert_vector(&site, "SDK_GET_SITE_INFO_RESP_HEX", &[]);
    // PO clear, anonymous, a record with an admin-only value: the public values, RC 1
    // (the admin-only index 3 is left out, so the answer is exactly the vector's).
    let r = raw(&f.svc, &v2("SDK_RESOLUTION_REQ_HEX"), from);
    assert_vector(&r, "SDK_RESOLUTION_RESP_HEX", &[]);
    // Over UDP the same.
    let r = raw(&f.svc, &v2("SDK_RESOLUTION_REQ_HEX"), Source::udp(CLIENT));
    assert_vector(&r, "SDK_RESOLUTION_RESP_HEX", &[]);
    // Trusted query: 0x2 echoed, 0x1 set (this node's own data).
    let t = raw(&f.svc, &v2("SDK_TRUSTED_RESOLUTION_REQ_HEX"), from);
    assert_vector(&t, "SDK_TRUSTED_RESOLUTION_RESP_HEX", &[]);
    assert_eq!(f.svc.pending_challenges(), 0);
}

#[test]
fn sdk_trusted_bits_on_other_answers() {
    let f = sdk(NativeLimits::default());
    let mut req = decoded("SDK_TRUSTED_RESOLUTION_REQ_HEX");
    // Not found here, authoritatively: trusted.
    req.body = Body::Resolution {
        handle: "88.100.1/NOPE".into(),
        indexes: vec![],
        types: vec![],
    };
    let r = ask(&f.svc, &req.encode(), Source::tcp(CLIENT));
    assert_eq!(r.header.response_code, 100);
    assert_eq!(r.header.op_flag & 0x3, 0x3);
    // A client setting the result bit itself does not get it echoed on a plain query.
    let mut plain = decoded("SDK_RESOLUTION_REQ_HEX");
    plain.header.op_flag |= flag::TRUSTED_RESULT;
    let r = ask(&f.svc, &plain.encode(), Source::tcp(CLIENT));
    assert_eq!(r.header.op_flag & 0x3, 0);
    // A relayed answer: 0x2 without 0x1 unless the upstream was verified.
    let mut h = r.header;
    h.op_flag = flag::AUTHORITATIVE | flag::TRUSTED_QUERY | flag::TRUSTED_RESULT;
    mark_relayed(&mut h, false);
    assert_eq!(h.op_flag, flag::TRUSTED_QUERY);
    mark_relayed(&mut h, true);
    assert_eq!(h.op_flag, flag::TRUSTED_QUERY | flag::TRUSTED_RESULT);
}

#[test]
fn sdk_challenge_mode_keeps_handle_nets_402() {
    let f = sdk(NativeLimits {
        anonymous_reads: AnonymousReads::Challenge,
        ..NativeLimits::default()
    });
    let r = ask(&f.svc, &v2("SDK_RESOLUTION_REQ_HEX"), Source::tcp(CLIENT));
    assert_eq!(r.header.response_code, 402);
    let r = ask(&f.svc, &v2("SDK_RESOLUTION_REQ_HEX"), Source::udp(CLIENT));
    assert_eq!(r.header.response_code, 2);
}

#[test]
fn sdk_key_login_exchange_is_the_vectors() {
    let f = sdk(NativeLimits::default());
    let conn = f.svc.open_connection();
    let from = conn.source(CLIENT);
    // 2001 -> the 402 challenge with opCode 2001, the digest of the login request.
    let c = raw(&f.svc, &v2("SDK_LOGIN_2001_REQ_HEX"), from);
    // Session id (4..8) and nonce (body offset 37: 81..97) are drawn at random.
    assert_vector(&c, "SDK_LOGIN_2001_CHALLENGE_HEX", &[SESSION, 81..97]);
    let c = Message::decode_full(&c).unwrap();
    assert_ne!(c.envelope.session_id, 0);
    assert_eq!(f.svc.pending_challenges(), 1);
    assert_eq!(f.svc.logged_in(from), None);
    // The SDK's own answer (the vector) verifies against the vector's nonce and digest
    // with the stored 289-byte key: the signature form is the one the server checks.
    let Body::ChallengeAnswer {
        signed_response, ..
    } = decoded("SDK_LOGIN_2001_ANSWER_REQ_HEX").body
    else {
        panic!()
    };
    let vector_challenge = decoded("SDK_LOGIN_2001_CHALLENGE_HEX");
    let key = PublicKey::decode(&v2("RSA_PUBKEY_DATA_HEX")).unwrap();
    assert!(verify_pubkey_answer(
        &key,
        &(0x30..0x40).collect::<Vec<u8>>(),
        &vector_challenge.digest.unwrap().digest,
        &signed_response
    )
    .unwrap());
    // opCode 200 -> RC 1 with opCode 2001, the digest of the ORIGINAL login request, the
    // answer's request id, session id 0: the vector.
    let ok = raw(&f.svc, &answer_for(&c, &admin_rsa()), from);
    assert_vector(&ok, "SDK_LOGIN_2001_SUCCESS_RESP_HEX", &[]);
    assert_eq!(f.svc.logged_in(from), Some(identity("88.100.1/admin", 300)));
    assert_eq!(f.svc.pending_challenges(), 0);
    // Create with session 0 and no credential: runs as the login, no challenge.
    let created = raw(&f.svc, &v2("SDK_CREATE_REQ_HEX"), from);
    assert_vector(&created, "SDK_CREATE_SUCCESS_RESP_HEX", &[]);
    let h = f.engine.parse_handle("88.100.1/SN-0003").unwrap();
    let rec = f.engine.registry().get(&h).unwrap().expect("created");
    assert_eq!(
        rec.values[0].data_str(),
        Some("https://example.com/sn/0003")
    );
    // The same create again: the engine's answer (exists), still no challenge.
    let again = ask(&f.svc, &v2("SDK_CREATE_REQ_HEX"), from);
    assert_eq!(again.header.response_code, 101);
    // Another connection from the same address is not logged in: challenged.
    let other = f.svc.open_connection();
    let r = ask(&f.svc, &v2("SDK_CREATE_REQ_HEX"), other.source(CLIENT));
    assert_eq!(r.header.response_code, 402);
    // A request carrying a session id is not run as the login either: an id that names no
    // Handle.Net session (nor a pending challenge) is RC 500, as Handle.Net answers it.
    let mut with_session = decoded("SDK_CREATE_REQ_HEX");
    with_session.envelope.session_id = 77;
    let r = ask(&f.svc, &with_session.encode(), from);
    assert_eq!(r.header.response_code, 500);
    // The connection closes: its login is gone.
    assert_eq!(f.svc.logged_in_connections(), 1);
    drop(conn);
    assert_eq!(f.svc.logged_in_connections(), 0);
    assert_eq!(f.svc.logged_in(from), None);
}

#[test]
fn sdk_login_answer_from_another_connection_is_refused() {
    let f = sdk(NativeLimits::default());
    let a = f.svc.open_connection();
    let b = f.svc.open_connection();
    let c = ask(&f.svc, &v2("SDK_LOGIN_2001_REQ_HEX"), a.source(CLIENT));
    let answer = answer_for(&c, &admin_rsa());
    // The right answer, from another connection of the same address: refused, counted.
    let r = ask(&f.svc, &answer, b.source(CLIENT));
    assert_eq!(r.header.response_code, 403, "{:?}", r.body);
    assert_eq!(f.svc.logged_in(b.source(CLIENT)), None);
    // From no connection at all (a front end without logins): refused too.
    let r = ask(&f.svc, &answer, Source::tcp(CLIENT));
    assert_eq!(r.header.response_code, 403);
    // The challenge stays for its own connection, which logs in.
    assert_eq!(f.svc.pending_challenges(), 1);
    let ok = ask(&f.svc, &answer, a.source(CLIENT));
    assert_eq!((ok.header.op_code, ok.header.response_code), (2001, 1));
    assert_eq!(
        f.svc.logged_in(a.source(CLIENT)),
        Some(identity("88.100.1/admin", 300))
    );
    assert_eq!(f.svc.logged_in(b.source(CLIENT)), None);
}

#[test]
fn sdk_failed_key_login_logs_the_connection_out() {
    let f = sdk(password_on());
    let conn = f.svc.open_connection();
    let from = conn.source(CLIENT);
    let ok = ask(&f.svc, &v2("SDK_LOGIN_2000_REQ_HEX"), from);
    assert_eq!(ok.header.response_code, 1);
    assert!(f.svc.logged_in(from).is_some());
    // A 2001 login answered with another key's signature: 403 with opCode 2001, logged out.
    let c = ask(&f.svc, &v2("SDK_LOGIN_2001_REQ_HEX"), from);
    let wrong = PrivateKey::from_pem(
        &rsa::RsaPrivateKey::from_pkcs8_der(&v2_key("SERVER_RSA"))
            .unwrap()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let r = ask(&f.svc, &answer_for(&c, &wrong), from);
    assert_eq!((r.header.op_code, r.header.response_code), (2001, 403));
    assert_eq!(f.svc.logged_in(from), None);
    // Now the create is challenged again.
    let r = ask(&f.svc, &v2("SDK_CREATE_REQ_HEX"), from);
    assert_eq!(r.header.response_code, 402);
}

#[test]
fn sdk_a_second_login_replaces_the_first() {
    let f = sdk(password_on());
    let conn = f.svc.open_connection();
    let from = conn.source(CLIENT);
    assert_eq!(
        ask(&f.svc, &v2("SDK_LOGIN_2000_REQ_HEX"), from)
            .header
            .response_code,
        1
    );
    assert_eq!(f.svc.logged_in(from), Some(identity("0.NA/88.100.1", 300)));
    let ok = Message::decode_full(&key_login(&f.svc, from)).unwrap();
    assert_eq!(ok.header.response_code, 1);
    assert_eq!(f.svc.logged_in(from), Some(identity("88.100.1/admin", 300)));
}

#[test]
fn sdk_password_login() {
    let f = sdk(password_on());
    let conn = f.svc.open_connection();
    let from = conn.source(CLIENT);
    let ok = raw(&f.svc, &v2("SDK_LOGIN_2000_REQ_HEX"), from);
    assert_vector(&ok, "SDK_LOGIN_2000_SUCCESS_RESP_HEX", &[]);
    assert_eq!(f.svc.logged_in(from), Some(identity("0.NA/88.100.1", 300)));
    // The login reads restricted values it may read (PO clear): index 3 is there.
    let r = ask(&f.svc, &v2("SDK_RESOLUTION_REQ_HEX"), from);
    let Body::Values { values, .. } = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(
        values.iter().map(|v| v.index).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // With PO it still gets the public values only.
    let mut po = decoded("SDK_RESOLUTION_REQ_HEX");
    po.header.op_flag |= flag::PUBLIC_ONLY;
    let Body::Values { values, .. } = ask(&f.svc, &po.encode(), from).body else {
        panic!()
    };
    assert_eq!(values.len(), 2);
    // A wrong password: 403 (opCode 2000), logged out, audited and counted.
    let mut wrong = decoded("SDK_LOGIN_2000_REQ_HEX");
    wrong.body = Body::PasswordLogin {
        user: "0.NA/88.100.1".into(),
        indexes: vec![],
        passwords: vec![b"nope".to_vec()],
    };
    let r = ask(&f.svc, &wrong.encode(), from);
    assert_eq!((r.header.op_code, r.header.response_code), (2000, 403));
    assert_eq!(f.svc.logged_in(from), None);
    let Body::Values { values, .. } = ask(&f.svc, &v2("SDK_RESOLUTION_REQ_HEX"), from).body else {
        panic!()
    };
    assert_eq!(values.len(), 2);
    // An unknown user, an empty password, two passwords: refused.
    for (user, passwords) in [
        ("0.NA/88.999", vec![b"password".to_vec()]),
        ("0.NA/88.100.1", vec![Vec::new()]),
        ("0.NA/88.100.1", vec![b"password".to_vec(), b"x".to_vec()]),
    ] {
        wrong.body = Body::PasswordLogin {
            user: user.into(),
            indexes: vec![],
            passwords,
        };
        let r = ask(&f.svc, &wrong.encode(), from);
        assert!(
            matches!(r.header.response_code, 403 | 4),
            "{user}: {:?}",
            r.body
        );
        assert_eq!(f.svc.logged_in(from), None);
    }
    // The named index must hold the secret.
    wrong.body = Body::PasswordLogin {
        user: "0.NA/88.100.1".into(),
        indexes: vec![301],
        passwords: vec![b"password".to_vec()],
    };
    assert_eq!(ask(&f.svc, &wrong.encode(), from).header.response_code, 403);
}

#[test]
fn sdk_password_login_accepts_handle_nets_hashed_secret() {
    let f = sdk(password_on());
    let na = f.engine.parse_handle("0.NA/88.100.1").unwrap();
    let owner = f.engine.authenticate_secret(&na, 300, b"password").unwrap();
    let user = f.engine.parse_handle("88.100.1/operator").unwrap();
    f.engine
        .create(
            &owner,
            &user,
            vec![HandleValue::new(
                300,
                types::HS_SECKEY,
                hashed_secret(b"op-pass"),
            )],
            Overwrite::No,
        )
        .unwrap();
    assert_eq!(
        hashed_secret(b"abc"),
        b"a9993e364706816aba3e25717850c26c9cd0d89d".to_vec()
    );
    let conn = f.svc.open_connection();
    let mut req = decoded("SDK_LOGIN_2000_REQ_HEX");
    req.body = Body::PasswordLogin {
        user: "88.100.1/operator".into(),
        indexes: vec![],
        passwords: vec![b"op-pass".to_vec()],
    };
    let r = ask(&f.svc, &req.encode(), conn.source(CLIENT));
    assert_eq!(r.header.response_code, 1, "{:?}", r.body);
    assert_eq!(
        f.svc.logged_in(conn.source(CLIENT)),
        Some(identity("88.100.1/operator", 300))
    );
}

#[test]
fn sdk_password_failures_spend_the_address_budget() {
    let f = sdk(password_on());
    let conn = f.svc.open_connection();
    let from = conn.source(CLIENT);
    let mut wrong = decoded("SDK_LOGIN_2000_REQ_HEX");
    wrong.body = Body::PasswordLogin {
        user: "0.NA/88.100.1".into(),
        indexes: vec![],
        passwords: vec![b"guess".to_vec()],
    };
    let burst = crate::auth::pending::FailureLimits::default().burst;
    for _ in 0..burst {
        assert_eq!(ask(&f.svc, &wrong.encode(), from).header.response_code, 403);
    }
    // Budget spent: the right password is refused unchecked.
    let r = ask(&f.svc, &v2("SDK_LOGIN_2000_REQ_HEX"), from);
    assert_eq!(r.header.response_code, 403);
    assert_eq!(f.svc.logged_in(from), None);
    let limited = f
        .svc
        .metrics()
        .refused
        .with_label_values(&["tcp", "auth_rate_limited"]);
    assert_eq!(limited.get(), 1);
}

#[test]
fn sdk_logins_need_tcp_and_the_switch() {
    // Password login off (the default): RC 5, with opCode 2000.
    let f = sdk(NativeLimits::default());
    let conn = f.svc.open_connection();
    let r = ask(&f.svc, &v2("SDK_LOGIN_2000_REQ_HEX"), conn.source(CLIENT));
    assert_eq!((r.header.op_code, r.header.response_code), (2000, 5));
    assert_eq!(f.svc.logged_in(conn.source(CLIENT)), None);
    // Over UDP neither login is accepted, and no challenge is kept.
    let f = sdk(password_on());
    for name in ["SDK_LOGIN_2000_REQ_HEX", "SDK_LOGIN_2001_REQ_HEX"] {
        let r = ask(&f.svc, &v2(name), Source::udp(CLIENT));
        assert_eq!(r.header.response_code, 5, "{name}");
    }
    assert_eq!(f.svc.pending_challenges(), 0);
    assert_eq!(f.svc.logged_in_connections(), 0);
}

#[test]
fn sdk_a_login_for_a_closed_connection_is_dropped() {
    let f = sdk(NativeLimits::default());
    let conn = f.svc.open_connection();
    let from = conn.source(CLIENT);
    let c = ask(&f.svc, &v2("SDK_LOGIN_2001_REQ_HEX"), from);
    drop(conn);
    // The answer arrives after the connection ended (as a blocking task could): no login
    // is kept for it.
    let r = ask(&f.svc, &answer_for(&c, &admin_rsa()), from);
    assert_eq!(r.header.response_code, 1);
    assert_eq!(f.svc.logged_in_connections(), 0);
    assert_eq!(f.svc.logged_in(from), None);
}
