//! Handle.Net 9 sessions over real sockets on 127.0.0.1: the exact message sequence of a
//! default HandleResolver (setup, MAC'ed add → 402 on the session → answer → RC 1, modify
//! without a challenge, ...), the per-address bound and expiry of unauthenticated sessions,
//! and `idnode admin batch` doing a batch in one session.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use idnode::auth::challenge::seckey_answer_pbkdf2;
use idnode::auth::credential;
use idnode::auth::session::{
    decrypt_message, encrypt_message, public_value, random_private, session_key, DhKey,
    OAKLEY_GROUP2_P_HEX,
};
use idnode::model::{HandleValue, ValuePermissions};
use idnode::server::RunningNode;
use idnode::wire::handle::message::{
    envelope_flag, header_and_body, key_exchange, op, Body, KeyExchange, Message, ENVELOPE_LEN,
};
use rsa::BigUint;

mod common;

const SECRET: &str = "e2e-secret";
const ADMIN: (&str, u32) = ("0.NA/88.100.1", 300);

async fn node(dir: &std::path::Path, handle_extra: &str) -> RunningNode {
    common::native_node(dir, &["88.100.1"], SECRET, handle_extra).await
}

/// One request on a new TCP connection (as HandleResolver does), one answer.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Message {
    common::exchange_new(addr, bytes)
}

/// [`exchange`] for answers a session may encrypt: decrypted with `key` when the envelope
/// says so (flag 0x40); and whether it was.
fn exchange_sealed(addr: SocketAddr, bytes: &[u8], key: &[u8; 32]) -> (Message, bool) {
    let mut s = common::connect(addr);
    s.write_all(bytes).unwrap();
    let (mut env, body) = common::read_raw(&mut s);
    if env.flags & envelope_flag::ENCRYPTED == 0 {
        return (Message::decode(env, &body).unwrap(), false);
    }
    let plain = decrypt_message(key, &body).unwrap();
    env.flags &= !envelope_flag::ENCRYPTED;
    env.message_length = plain.len() as u32;
    (Message::decode(env, &plain).unwrap(), true)
}

struct Session {
    id: u32,
    key: [u8; 32],
    counter: u32,
}

fn group() -> DhKey {
    let p = BigUint::parse_bytes(OAKLEY_GROUP2_P_HEX.as_bytes(), 16).unwrap();
    DhKey {
        y: BigUint::from(2u32),
        p,
        g: BigUint::from(2u32),
    }
}

/// OC_SESSION_SETUP as HandleResolver sends it (CT|REC|CA|PO|RD, 86 400 s), with a random key.
fn setup_bytes(x: &BigUint, request_id: u32) -> Vec<u8> {
    let mut m = Message::request(
        op::SESSION_SETUP,
        0x5980_0000,
        Body::SessionSetup {
            mode: key_exchange::DH,
            timeout: 86_400,
            identity_handle: ADMIN.0.into(),
            identity_index: ADMIN.1,
            exchange: KeyExchange::PublicKey(public_value(&group(), x).public_key().encode()),
        },
    );
    m.envelope.request_id = request_id;
    m.header.expiration = 0x7f00_0000;
    m.encode()
}

fn setup(addr: SocketAddr) -> Result<Session, Box<Message>> {
    let x = random_private(&group().p);
    let r = exchange(addr, &setup_bytes(&x, 0x0a0b_0c30));
    if r.header.response_code != 1 {
        return Err(Box::new(r));
    }
    let Body::SessionSetupAnswer { data, .. } = &r.body else {
        panic!("{r:?}")
    };
    // CT was set: the answer is HS_SIGNED with the key the node's HS_SITE publishes.
    let site = idnode::client::Client::new(addr)
        .site_info(idnode::client::Transport::Tcp)
        .unwrap();
    let key = idnode::model::PublicKey::decode(&site.servers[0].public_key).unwrap();
    assert_eq!(
        credential::certification(&key, &r),
        credential::Certification::Verified
    );
    let server = DhKey::decode(&data[4..]).unwrap();
    Ok(Session {
        id: r.envelope.session_id,
        key: session_key(&server, &x).unwrap(),
        counter: 0,
    })
}

impl Session {
    /// `bytes` with everything after the envelope encrypted under the session key.
    fn seal(&self, bytes: &[u8]) -> Vec<u8> {
        let sealed = encrypt_message(&self.key, &bytes[ENVELOPE_LEN..]);
        let mut out = bytes[..ENVELOPE_LEN].to_vec();
        out[2] |= envelope_flag::ENCRYPTED;
        out[16..20].copy_from_slice(&(sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&sealed);
        out
    }

    fn signed(&mut self, op_code: u32, body: Body, request_id: u32) -> Vec<u8> {
        let mut m = Message::request(op_code, 0x1900_0000, body);
        m.envelope.session_id = self.id;
        m.envelope.request_id = request_id;
        m.header.expiration = 0x7f00_0000;
        self.counter += 1;
        let bytes = m.encode_message();
        let c = credential::mac(
            &self.key,
            &m.envelope,
            self.counter,
            header_and_body(&bytes).unwrap(),
        )
        .unwrap();
        m.credential = Some(c.encode());
        m.encode()
    }

    fn add(&mut self, index: u32, data: &str, request_id: u32) -> Vec<u8> {
        self.signed(
            op::ADD_VALUE,
            Body::HandleValues {
                handle: "88.100.1/SN-0001".into(),
                values: vec![HandleValue::new(index, "EMAIL", data)],
            },
            request_id,
        )
    }
}

fn answer(challenge: &Message, request_id: u32) -> Vec<u8> {
    let Body::Challenge { nonce } = &challenge.body else {
        panic!("{challenge:?}")
    };
    let digest = &challenge.digest.as_ref().unwrap().digest;
    let mut m = Message::request(
        op::CHALLENGE_RESPONSE,
        0x1900_0000,
        Body::ChallengeAnswer {
            auth_type: "HS_SECKEY".into(),
            identity_handle: ADMIN.0.into(),
            identity_index: ADMIN.1,
            signed_response: seckey_answer_pbkdf2(
                SECRET.as_bytes(),
                nonce,
                digest,
                &[5; 16],
                10_000,
                160,
            ),
        },
    );
    m.envelope.session_id = challenge.envelope.session_id;
    m.envelope.request_id = request_id;
    m.header.expiration = 0x7f00_0000;
    m.encode()
}

fn challenge_answers(node: &RunningNode) -> u64 {
    node.metrics
        .requests
        .with_label_values(&["tcp", "challenge_answer", "1"])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_net_session_sequence_over_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), "").await;
    let addr = node.native_addr.unwrap();
    let engine = node.engine.clone();
    let metrics = node.metrics.clone();
    tokio::task::spawn_blocking(move || {
        // The record the session writes to.
        let owner = engine
            .authenticate_secret(
                &engine.parse_handle(ADMIN.0).unwrap(),
                300,
                SECRET.as_bytes(),
            )
            .unwrap();
        engine
            .create(
                &owner,
                &engine.parse_handle("88.100.1/SN-0001").unwrap(),
                vec![HandleValue::new(1, "URL", "https://example.com/sn/0001")],
                idnode::resolve::Overwrite::No,
            )
            .unwrap();
        // Over UDP the setup creates nothing: RC 2 (HandleResolver goes on to TCP).
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let x = random_private(&group().p);
        udp.send_to(&setup_bytes(&x, 1), addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(
            Message::decode_full(&buf[..n])
                .unwrap()
                .header
                .response_code,
            2
        );
        assert_eq!(metrics.sessions.get(), 0);

        let mut s = setup(addr).unwrap();
        assert_eq!(metrics.sessions.get(), 1);
        let ch = exchange(addr, &s.add(3, "session@example.com", 0x0a0b_0c31));
        assert_eq!(
            (ch.header.response_code, ch.envelope.session_id),
            (402, s.id)
        );
        let r = exchange(addr, &answer(&ch, 0x0a0b_0c32));
        assert_eq!(
            (
                r.header.op_code,
                r.header.response_code,
                r.envelope.request_id,
                r.envelope.session_id
            ),
            (op::ADD_VALUE, 1, 0x0a0b_0c32, s.id)
        );
        // Authenticated: a modify without challenge.
        let modify = s.signed(
            op::MODIFY_VALUE,
            Body::HandleValues {
                handle: "88.100.1/SN-0001".into(),
                values: vec![HandleValue::new(1, "URL", "https://example.com/sn/0001/v2")],
            },
            0x0a0b_0c33,
        );
        let r = exchange(addr, &modify);
        assert_eq!(r.header.response_code, 1);
        let rec = engine
            .registry()
            .get(&engine.parse_handle("88.100.1/SN-0001").unwrap())
            .unwrap()
            .unwrap();
        assert!(rec
            .values
            .iter()
            .any(|v| v.data == b"https://example.com/sn/0001/v2"));
        assert!(rec.values.iter().any(|v| v.data == b"session@example.com"));
        // A write of a value anyone may not read, encrypted as Handle.Net ≥ 2.8 sends it; then
        // a PO-clear read in the session, whose answer comes back encrypted.
        let secret = HandleValue::new(9, "HS_SECKEY", "sealed-secret")
            .with_permissions(ValuePermissions::ADMIN_ONLY);
        let add = s.signed(
            op::ADD_VALUE,
            Body::HandleValues {
                handle: "88.100.1/SN-0001".into(),
                values: vec![secret],
            },
            0x0a0b_0c3a,
        );
        let (r, encrypted) = exchange_sealed(addr, &s.seal(&add), &s.key);
        assert_eq!(r.header.response_code, 1, "{:?}", r.body);
        assert!(!encrypted);
        let mut read = Message::request(
            op::RESOLUTION,
            0x1800_0000,
            Body::Resolution {
                handle: "88.100.1/SN-0001".into(),
                indexes: vec![9],
                types: vec![],
            },
        );
        read.envelope.session_id = s.id;
        read.envelope.request_id = 0x0a0b_0c3b;
        read.header.expiration = 0x7f00_0000;
        s.counter += 1;
        let bytes = read.encode_message();
        let mac = credential::mac(
            &s.key,
            &read.envelope,
            s.counter,
            header_and_body(&bytes).unwrap(),
        );
        read.credential = Some(mac.unwrap().encode());
        let (r, encrypted) = exchange_sealed(addr, &read.encode(), &s.key);
        assert!(
            encrypted,
            "an answer holding an admin-only value is encrypted"
        );
        let Body::Values { values, .. } = &r.body else {
            panic!("{:?}", r.body)
        };
        assert_eq!(values[0].data, b"sealed-secret");
        // Replayed counter, then a bad MAC.
        assert_eq!(exchange(addr, &modify).header.response_code, 505);
        let mut bad = s.add(4, "forged@example.com", 0x0a0b_0c34);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(exchange(addr, &bad).header.response_code, 502);
        // Terminate, then the session id is unknown: RC 500 with Handle.Net's text.
        let bye = s.signed(
            op::SESSION_TERMINATE,
            Body::Handle { handle: "/".into() },
            0x0a0b_0c35,
        );
        assert_eq!(exchange(addr, &bye).header.response_code, 1);
        assert_eq!(metrics.sessions.get(), 0);
        let r = exchange(addr, &s.add(5, "late@example.com", 0x0a0b_0c36));
        assert_eq!(r.header.response_code, 500);
        assert_eq!(
            r.body,
            Body::Error {
                message: "Invalid session id or session time out. Please try again.".into()
            }
        );
    })
    .await
    .unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded_per_address_and_unauthenticated_ones_expire() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(
        dir.path(),
        "max_sessions_per_client = 2\nunauthenticated_session_secs = 1",
    )
    .await;
    let addr = node.native_addr.unwrap();
    let metrics = node.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let mut first = setup(addr).unwrap();
        setup(addr).unwrap();
        let refused = setup(addr).err().expect("a third session is refused");
        assert_eq!(refused.header.response_code, 3);
        // Nobody authenticates them: after a second they are gone (the sweep runs every
        // second; bounded wait), and the address may set up sessions again.
        let mut gone = false;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if metrics.sessions.get() == 0 {
                gone = true;
                break;
            }
        }
        assert!(gone, "unauthenticated sessions were not swept");
        let r = exchange(addr, &first.add(3, "x@example.com", 7));
        assert_eq!(r.header.response_code, 500);
        setup(addr).unwrap();
    })
    .await
    .unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idnode_admin_batch_uses_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), "").await;
    let addr = node.native_addr.unwrap();
    let batch = dir.path().join("ops.jsonl");
    std::fs::write(
        &batch,
        [
            r#"{"op":"create","handle":"88.100.1/B-1","values":[{"index":1,"type":"URL","data":"https://example.com/b1"}]}"#,
            r#"{"op":"create","handle":"88.100.1/B-2","values":[{"index":1,"type":"URL","data":"https://example.com/b2"}]}"#,
            r#"{"op":"add","handle":"88.100.1/B-1","values":[{"index":2,"type":"EMAIL","data":"b1@example.com"}]}"#,
            r#"{"op":"remove","handle":"88.100.1/B-1","indexes":[1]}"#,
            r#"{"op":"delete","handle":"88.100.1/B-2"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let secret = dir.path().join("88.100.1.admin-secret");
    let before = challenge_answers(&node);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_idnode"))
            .args(["admin", "batch"])
            .arg(&batch)
            .args([
                "--server",
                &addr.to_string(),
                "--auth-handle",
                "300:0.NA/88.100.1",
            ])
            .arg("--secret-file")
            .arg(&secret)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("no session"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
    // Five operations, one challenge answered, and the session ended at the close.
    assert_eq!(challenge_answers(&node) - before, 1);
    assert_eq!(node.metrics.sessions.get(), 0);
    let reg = node.engine.registry();
    let b1 = reg
        .get(&node.engine.parse_handle("88.100.1/B-1").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(b1.values.iter().map(|v| v.index).collect::<Vec<_>>(), [2]);
    assert!(reg
        .get(&node.engine.parse_handle("88.100.1/B-2").unwrap())
        .unwrap()
        .is_none());
    node.shutdown().await;
}
