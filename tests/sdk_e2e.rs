//! The CAICT ID-SDK's channel over a real TCP socket on 127.0.0.1, replaying the SDK's own
//! request bytes (`handle-vectors-2.json`, `live_replay.ID_SDK`): ONE connection for
//! GET_SITE_INFO, the 2001 key login and a create without credential; a second connection
//! without login; the 2000 password login; anonymous PO-clear reads; the trusted-query bits.

use std::io::Write;
use std::net::TcpStream;
use std::sync::OnceLock;

use idnode::auth::challenge::PrivateKey;
use idnode::model::{
    types, AdminPermissions, AdminRef, Handle, HandleValue, SuffixCase, ValueReference,
};
use idnode::resolve::Overwrite;
use idnode::server::RunningNode;
use idnode::wire::handle::message::{flag, op, Body, Message, ENVELOPE_LEN};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

/// The prefix administrator's secret: the password of SDK_LOGIN_2000_REQ_HEX.
mod common;

const SECRET: &str = "password";

fn vectors() -> &'static serde_json::Value {
    static V: OnceLock<serde_json::Value> = OnceLock::new();
    V.get_or_init(|| serde_json::from_str(include_str!("data/handle-vectors-2.json")).unwrap())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn v2(name: &str) -> Vec<u8> {
    unhex(vectors()["vectors"][name].as_str().unwrap())
}

fn key(name: &str) -> PrivateKey {
    let der = unhex(
        vectors()
            .pointer(&format!("/inputs/keys/{name}/pkcs8_der_hex"))
            .and_then(serde_json::Value::as_str)
            .unwrap(),
    );
    let pem = rsa::RsaPrivateKey::from_pkcs8_der(&der)
        .unwrap()
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
    PrivateKey::from_pem(&pem).unwrap()
}

fn h(text: &str) -> Handle {
    Handle::parse(text, SuffixCase::Sensitive).unwrap()
}

/// A node homing 88.100.1 (administrator 300:0.NA/88.100.1, HS_SECKEY "password"), with
/// `handle_extra` added to its `[handle]` section, and the SDK identity 300:88.100.1/admin
/// (HS_PUBKEY = the 289-byte ADMIN_RSA key) allowed to administer the prefix.
async fn node(dir: &std::path::Path, handle_extra: &str) -> RunningNode {
    let node = common::native_node(dir, &["88.100.1"], SECRET, handle_extra).await;
    let engine = &node.engine;
    let owner = engine
        .authenticate_secret(&h("0.NA/88.100.1"), 300, SECRET.as_bytes())
        .unwrap();
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
            &h("0.NA/88.100.1"),
            vec![HandleValue::new(101, types::HS_ADMIN, grant.encode())],
            false,
        )
        .unwrap();
    engine
        .create(
            &owner,
            &h("88.100.1/admin"),
            vec![HandleValue::new(
                300,
                types::HS_PUBKEY,
                v2("RSA_PUBKEY_DATA_HEX"),
            )],
            Overwrite::No,
        )
        .unwrap();
    engine
        .create(
            &owner,
            &h("88.100.1/SN-0001"),
            vec![
                HandleValue::new(1, "URL", "https://example.com/sn/0001"),
                HandleValue::new(2, "EMAIL", "sn0001@example.com"),
            ],
            Overwrite::No,
        )
        .unwrap();
    node
}

use common::{connect, read_message as read};

fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Message {
    stream.write_all(bytes).unwrap();
    read(stream)
}

/// The SDK's answer to challenge `c`: SDK_LOGIN_2001_ANSWER_REQ_HEX with the challenge's
/// session id and `signer`'s SHA256withRSA signature over its nonce || digest.
fn answer(c: &Message, signer: &PrivateKey) -> Vec<u8> {
    let Body::Challenge { nonce } = &c.body else {
        panic!("{:?}", c.body)
    };
    let digest = &c.digest.as_ref().expect("RD digest").digest;
    let mut a = Message::decode_full(&v2("SDK_LOGIN_2001_ANSWER_REQ_HEX")).unwrap();
    a.envelope.session_id = c.envelope.session_id;
    let Body::ChallengeAnswer {
        signed_response, ..
    } = &mut a.body
    else {
        panic!()
    };
    *signed_response = signer.sign_answer(nonce, digest);
    a.encode()
}

fn expect_login_challenge(c: &Message) {
    assert_eq!(
        (c.header.op_code, c.header.response_code),
        (op::LOGIN_ID_SYSTEM, 402),
        "{:?}",
        c.body
    );
    assert_ne!(c.envelope.session_id, 0);
    // The SDK recomputes this digest over its request and refuses a mismatch.
    let login = v2("SDK_LOGIN_2001_REQ_HEX");
    let (_, digest) = idnode::auth::challenge::request_digest(
        2,
        10,
        idnode::wire::handle::message::header_and_body(&login[ENVELOPE_LEN..]).unwrap(),
    );
    assert_eq!(c.digest.as_ref().unwrap().digest, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_channel_over_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), "password_login = true").await;
    let addr = node.native_addr.unwrap();
    let engine = node.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut ch = connect(addr);
        // generateChannel: GET_SITE_INFO first.
        let site = exchange(&mut ch, &v2("SDK_GET_SITE_INFO_REQ_HEX"));
        assert_eq!(site.header.response_code, 1);
        assert!(matches!(site.body, Body::SiteInfo { .. }));
        // login(88.100.1/admin, 300, key): 2001, challenge, answer on the same connection.
        let c = exchange(&mut ch, &v2("SDK_LOGIN_2001_REQ_HEX"));
        expect_login_challenge(&c);
        let ok = exchange(&mut ch, &answer(&c, &key("ADMIN_RSA")));
        assert_eq!(
            (ok.header.op_code, ok.header.response_code),
            (op::LOGIN_ID_SYSTEM, 1),
            "{:?}",
            ok.body
        );
        assert_eq!(ok.envelope.request_id, 0x0c0d_0e06);
        // createIdentifier: session 0, no credential, runs as the login.
        let created = exchange(&mut ch, &v2("SDK_CREATE_REQ_HEX"));
        assert_eq!(
            (created.header.op_code, created.header.response_code),
            (op::CREATE_HANDLE, 1),
            "{:?}",
            created.body
        );
        let rec = engine
            .registry()
            .get(&h("88.100.1/SN-0003"))
            .unwrap()
            .expect("SN-0003 created");
        assert_eq!(
            rec.values[0].data_str(),
            Some("https://example.com/sn/0003")
        );
        // Trusted lookup on the same channel: 0x2 echoed, 0x1 (own data).
        let t = exchange(&mut ch, &v2("SDK_TRUSTED_RESOLUTION_REQ_HEX"));
        assert_eq!(t.header.response_code, 1);
        assert_eq!(t.header.op_flag & 0x3, 0x3);
        // A plain lookup: no trust bits.
        let r = exchange(&mut ch, &v2("SDK_RESOLUTION_REQ_HEX"));
        assert_eq!((r.header.response_code, r.header.op_flag & 0x3), (1, 0));

        // A second connection, without login: the create is challenged (which the SDK
        // cannot answer), nothing is written.
        let mut other = connect(addr);
        let mut create4 = Message::decode_full(&v2("SDK_CREATE_REQ_HEX")).unwrap();
        let Body::HandleValues { handle, .. } = &mut create4.body else {
            panic!()
        };
        *handle = "88.100.1/SN-0004".into();
        let r = exchange(&mut other, &create4.encode());
        assert_eq!(r.header.response_code, 402);
        assert!(engine
            .registry()
            .get(&h("88.100.1/SN-0004"))
            .unwrap()
            .is_none());
        // The first connection is still logged in.
        let r = exchange(&mut ch, &create4.encode());
        assert_eq!(r.header.response_code, 1, "{:?}", r.body);
    })
    .await
    .unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_anonymous_reads_and_foreign_answers() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), "password_login = true").await;
    let addr = node.native_addr.unwrap();
    tokio::task::spawn_blocking(move || {
        // login("0.NA/88.100.1", "password"): RC 1 with opCode 2000, the handle, no values.
        let mut ch = connect(addr);
        let ok = exchange(&mut ch, &v2("SDK_LOGIN_2000_REQ_HEX"));
        assert_eq!(
            (ok.header.op_code, ok.header.response_code),
            (op::LOGIN, 1),
            "{:?}",
            ok.body
        );
        assert_eq!(
            ok.body,
            Body::Values {
                handle: "0.NA/88.100.1".into(),
                values: vec![]
            }
        );
        // Logged in by password: the create runs.
        let created = exchange(&mut ch, &v2("SDK_CREATE_REQ_HEX"));
        assert_eq!(created.header.response_code, 1, "{:?}", created.body);
        // As the prefix administrator, a PO-clear read of the prefix handle: RC 1.
        let mut prefix_read = Message::decode_full(&v2("SDK_RESOLUTION_REQ_HEX")).unwrap();
        prefix_read.body = Body::Resolution {
            handle: "0.NA/88.100.1".into(),
            indexes: vec![],
            types: vec![],
        };
        let r = exchange(&mut ch, &prefix_read.encode());
        assert_eq!(r.header.response_code, 1, "{:?}", r.body);
        // A wrong password: RC 403 with opCode 2000, and the connection is logged out.
        let mut wrong = Message::decode_full(&v2("SDK_LOGIN_2000_REQ_HEX")).unwrap();
        wrong.body = Body::PasswordLogin {
            user: "0.NA/88.100.1".into(),
            indexes: vec![],
            passwords: vec![b"not-the-password".to_vec()],
        };
        let r = exchange(&mut ch, &wrong.encode());
        assert_eq!((r.header.op_code, r.header.response_code), (op::LOGIN, 403));
        let mut create5 = Message::decode_full(&v2("SDK_CREATE_REQ_HEX")).unwrap();
        if let Body::HandleValues { handle, .. } = &mut create5.body {
            *handle = "88.100.1/SN-0005".into();
        }
        assert_eq!(
            exchange(&mut ch, &create5.encode()).header.response_code,
            402
        );

        // Anonymous PO-clear read of the prefix handle (restricted values inside): RC 1,
        // the public values, no secret, no challenge.
        let mut anon = connect(addr);
        let r = exchange(&mut anon, &prefix_read.encode());
        assert_eq!(r.header.response_code, 1, "{:?}", r.body);
        assert!(!r.header.has(flag::PUBLIC_ONLY));
        let Body::Values { values, .. } = &r.body else {
            panic!()
        };
        assert!(!values.is_empty());
        assert!(values.iter().all(|v| v.type_name != "HS_SECKEY"));
        assert!(values.iter().any(|v| v.type_name == "HS_ADMIN"));

        // A login challenge answered from another connection of the same address: refused;
        // the right connection then logs in with the same answer.
        let mut a = connect(addr);
        let mut b = connect(addr);
        let c = exchange(&mut a, &v2("SDK_LOGIN_2001_REQ_HEX"));
        expect_login_challenge(&c);
        let signed = answer(&c, &key("ADMIN_RSA"));
        let r = exchange(&mut b, &signed);
        assert_eq!(r.header.response_code, 403, "{:?}", r.body);
        assert_eq!(
            exchange(&mut b, &create5.encode()).header.response_code,
            402
        );
        let r = exchange(&mut a, &signed);
        assert_eq!(
            (r.header.op_code, r.header.response_code),
            (op::LOGIN_ID_SYSTEM, 1)
        );
        assert_eq!(exchange(&mut a, &create5.encode()).header.response_code, 1);
    })
    .await
    .unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_is_off_by_default_and_challenge_mode_challenges() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), "anonymous_restricted_reads = \"challenge\"").await;
    let addr = node.native_addr.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut ch = connect(addr);
        let r = exchange(&mut ch, &v2("SDK_LOGIN_2000_REQ_HEX"));
        assert_eq!((r.header.op_code, r.header.response_code), (op::LOGIN, 5));
        let mut prefix_read = Message::decode_full(&v2("SDK_RESOLUTION_REQ_HEX")).unwrap();
        prefix_read.body = Body::Resolution {
            handle: "0.NA/88.100.1".into(),
            indexes: vec![],
            types: vec![],
        };
        // Handle.Net's behaviour, as configured: a 402 for the PO-clear read.
        assert_eq!(
            exchange(&mut ch, &prefix_read.encode())
                .header
                .response_code,
            402
        );
        // The key login still works.
        let c = exchange(&mut ch, &v2("SDK_LOGIN_2001_REQ_HEX"));
        expect_login_challenge(&c);
        let ok = exchange(&mut ch, &answer(&c, &key("ADMIN_RSA")));
        assert_eq!(ok.header.response_code, 1);
    })
    .await
    .unwrap();
    node.shutdown().await;
}
