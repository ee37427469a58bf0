//! The native Handle protocol over real sockets on 127.0.0.1: UDP resolution with filters,
//! multi-datagram requests and responses, many requests on one TCP connection, and
//! challenge–response administration over TCP.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use idnode::auth::challenge::{request_digest, seckey_answer_pbkdf2};
use idnode::model::{Handle, HandleValue, SuffixCase};
use idnode::resolve::Overwrite;
use idnode::server::RunningNode;
use idnode::wire::handle::fragment::udp_fragments;
use idnode::wire::handle::message::{
    flag, header_and_body, op, Body, Envelope, Message, ENVELOPE_LEN, UDP_CHUNK,
};

mod common;

const SECRET: &str = "e2e-secret";

async fn node(dir: &std::path::Path) -> RunningNode {
    node_with(dir, "").await
}

/// The bootstrap administrator of 88.100.1, authenticated on `node`'s engine.
fn prefix_admin(node: &RunningNode) -> idnode::auth::Identity {
    let admin = Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap();
    node.engine
        .authenticate_secret(&admin, 300, SECRET.as_bytes())
        .unwrap()
}

/// The text of an answer's first value.
fn desc(m: &Message) -> String {
    match &m.body {
        Body::Values { values, .. } => values[0].data_str().unwrap_or_default().to_string(),
        other => panic!("unexpected body {other:?}"),
    }
}

/// [`node`] with `handle_extra` added to the `[handle]` section.
async fn node_with(dir: &std::path::Path, handle_extra: &str) -> RunningNode {
    common::native_node(dir, &["88.100.1", "88.200.2"], SECRET, handle_extra).await
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

fn resolution(handle: &str, types: Vec<String>, request_id: u32) -> Vec<u8> {
    request(
        op::RESOLUTION,
        0x1900_0000,
        Body::Resolution {
            handle: handle.into(),
            indexes: vec![],
            types,
        },
        request_id,
        0,
    )
}

/// Send over UDP (fragmenting) and reassemble the answer.
fn udp(addr: SocketAddr, bytes: &[u8]) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for d in udp_fragments(bytes) {
        sock.send_to(&d, addr).unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut chunks: Vec<Option<Vec<u8>>> = Vec::new();
    let env;
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("UDP answer");
        let e = Envelope::decode(&buf[..ENVELOPE_LEN]).unwrap();
        let total = (e.message_length as usize).div_ceil(UDP_CHUNK).max(1);
        chunks.resize(total, None);
        chunks[e.sequence as usize] = Some(buf[ENVELOPE_LEN..n].to_vec());
        if chunks.iter().all(Option::is_some) {
            env = e;
            break;
        }
    }
    let message: Vec<u8> = chunks.into_iter().flatten().flatten().collect();
    let mut e = env;
    e.sequence = 0;
    Message::decode(e, &message).unwrap()
}

fn tcp_read(stream: &mut TcpStream) -> Message {
    common::read_message(stream)
}

/// An admin request over one TCP connection, answering the challenge with the secret.
fn admin(stream: &mut TcpStream, req: &[u8], request_id: u32) -> Vec<Message> {
    stream.write_all(req).unwrap();
    let challenge = tcp_read(stream);
    assert_eq!(challenge.header.response_code, 402);
    let Body::Challenge { nonce } = &challenge.body else {
        panic!()
    };
    let (_, digest) = request_digest(2, 11, header_and_body(&req[ENVELOPE_LEN..]).unwrap());
    assert_eq!(challenge.digest.as_ref().unwrap().digest, digest);
    let answer = Body::ChallengeAnswer {
        auth_type: "HS_SECKEY".into(),
        identity_handle: "0.NA/88.100.1".into(),
        identity_index: 300,
        signed_response: seckey_answer_pbkdf2(
            SECRET.as_bytes(),
            nonce,
            &digest,
            &[5; 16],
            10_000,
            160,
        ),
    };
    stream
        .write_all(&request(
            op::CHALLENGE_RESPONSE,
            0,
            answer,
            request_id,
            challenge.envelope.session_id,
        ))
        .unwrap();
    let mut out = vec![tcp_read(stream)];
    while out.last().unwrap().header.has(flag::CONTINUOUS) {
        out.push(tcp_read(stream));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_protocol_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.native_addr.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Create a record with many values over TCP (admin, challenge-response).
        let values: Vec<HandleValue> =
            std::iter::once(HandleValue::new(1, "URL", "https://example.com/sn/0001"))
                .chain((2..40).map(|i| {
                    HandleValue::new(i, "DESC", format!("part {i} of a long bill of materials"))
                }))
                .collect();
        let create = request(
            op::CREATE_HANDLE,
            0,
            Body::HandleValues {
                handle: "88.100.1/SN-0001".into(),
                values,
            },
            10,
            0,
        );
        let out = admin(&mut tcp, &create, 11);
        assert_eq!(out[0].header.response_code, 1, "{:?}", out[0].body);
        assert_eq!(out[0].envelope.request_id, 11);

        // UDP resolution with a type filter.
        let r = udp(
            addr,
            &resolution("88.100.1/SN-0001", vec!["URL".into()], 20),
        );
        assert_eq!(r.envelope.request_id, 20);
        let Body::Values { values, .. } = &r.body else {
            panic!("{:?}", r.body)
        };
        assert_eq!(values.len(), 1);
        // The whole record does not fit one datagram: a multi-datagram response.
        let whole = resolution("88.100.1/SN-0001", vec![], 21);
        let r = udp(addr, &whole);
        let Body::Values { values, .. } = &r.body else {
            panic!()
        };
        assert_eq!(values.len(), 39);
        // A request longer than one datagram (many type filters) is reassembled.
        let many: Vec<String> = (0..60)
            .map(|i| format!("TYPE.{i:03}"))
            .chain(["URL".to_string()])
            .collect();
        let big = resolution("88.100.1/SN-0001", many, 22);
        assert!(big.len() > ENVELOPE_LEN + UDP_CHUNK);
        let r = udp(addr, &big);
        assert_eq!(r.header.response_code, 1);
        // Not found and admin over UDP.
        assert_eq!(
            udp(addr, &resolution("88.100.1/NOPE", vec![], 23))
                .header
                .response_code,
            100
        );
        let del = request(
            op::DELETE_HANDLE,
            0,
            Body::Handle {
                handle: "88.100.1/SN-0001".into(),
            },
            24,
            0,
        );
        assert_eq!(udp(addr, &del).header.response_code, 5);

        // Many requests on the same TCP connection.
        for i in 0..5 {
            tcp.write_all(&resolution("88.100.1/SN-0001", vec!["URL".into()], 100 + i))
                .unwrap();
            let r = tcp_read(&mut tcp);
            assert_eq!(
                (r.envelope.request_id, r.header.response_code),
                (100 + i, 1)
            );
        }
        // List handles with continuation messages.
        let list = request(
            op::LIST_HANDLES,
            0,
            Body::Handle {
                handle: "0.NA/88.100.1".into(),
            },
            30,
            0,
        );
        let out = admin(&mut tcp, &list, 31);
        let listed: Vec<String> = out
            .iter()
            .flat_map(|m| match &m.body {
                Body::HandleList { handles } => handles.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(listed, ["88.100.1/SN-0001"]);
        // Delete over TCP, then it is gone.
        let out = admin(&mut tcp, &del, 32);
        assert_eq!(out[0].header.response_code, 1);
        assert_eq!(
            udp(addr, &resolution("88.100.1/SN-0001", vec![], 33))
                .header
                .response_code,
            100
        );
        // Garbage over TCP closes that connection, and the node keeps serving.
        let mut junk = TcpStream::connect(addr).unwrap();
        junk.write_all(&[0xff; 64]).unwrap();
        drop(junk);
        assert_eq!(
            udp(addr, &resolution("88.100.1/SN-0001", vec![], 34))
                .header
                .response_code,
            100
        );
    })
    .await
    .unwrap();
    node.shutdown().await;
}

/// The native client (`idnode::client`, what `idnode resolve` / `idnode admin` use) against a
/// running node: UDP and TCP resolution, admin with a secret and with an RSA key, refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_against_a_running_node() {
    use idnode::auth::challenge::PrivateKey;
    use idnode::client::{list_handles, AdminRequest, Authenticator, Client, Lookup, Transport};
    use idnode::model::{ValueList, ValueReference};

    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.native_addr.unwrap();
    let other_secret_file = dir.path().join("88.200.2.admin-secret");
    tokio::task::spawn_blocking(move || {
        let client = Client::new(addr).with_timeout(Duration::from_secs(10));
        let secret = Authenticator::SecretKey {
            identity_handle: "0.NA/88.100.1".into(),
            index: 300,
            secret: SECRET.as_bytes().to_vec(),
        };
        // Register an RSA key as 301:0.NA/88.100.1 and add it to the admin group.
        let key = PrivateKey::generate_rsa(1024).unwrap();
        let group = ValueList(vec![
            ValueReference {
                handle: "0.NA/88.100.1".into(),
                index: 300,
            },
            ValueReference {
                handle: "0.NA/88.100.1".into(),
                index: 301,
            },
        ]);
        let r = client
            .admin(
                AdminRequest::AddValues {
                    handle: "0.NA/88.100.1".into(),
                    values: vec![
                        HandleValue::new(301, "HS_PUBKEY", key.public_key().encode()),
                        HandleValue::new(200, "HS_VLIST", group.encode()),
                    ],
                    overwrite: true,
                },
                &secret,
            )
            .unwrap();
        assert!(r.is_success(), "{r:?}");
        let by_key = Authenticator::PrivateKey {
            identity_handle: "0.NA/88.100.1".into(),
            index: 301,
            key: Box::new(key),
        };
        let create = AdminRequest::Create {
            handle: "88.100.1/KEYED".into(),
            values: vec![
                HandleValue::new(1, "URL", "https://example.com/keyed"),
                HandleValue::new(2, "DESC", "x"),
            ],
            overwrite: false,
            mint: false,
        };
        assert!(client.admin(create.clone(), &by_key).unwrap().is_success());
        // Resolution over UDP and TCP, with filters.
        for t in [Transport::Udp, Transport::Tcp] {
            let r = client
                .resolve(
                    Lookup::new("88.100.1/KEYED", &[], &["URL".to_string()]),
                    t,
                    true,
                )
                .unwrap();
            assert_eq!((r.code, r.values.len()), (1, 1), "{t:?}");
            assert_eq!(r.values[0].data_str(), Some("https://example.com/keyed"));
            let r = client
                .resolve(Lookup::new("88.100.1/KEYED", &[2], &[]), t, true)
                .unwrap();
            assert_eq!(r.values[0].index, 2);
        }
        // Unauthorized writes are refused and change nothing: another prefix's admin, a wrong
        // secret, a wrong key.
        let other_secret = std::fs::read_to_string(&other_secret_file).unwrap();
        let other = Authenticator::SecretKey {
            identity_handle: "0.NA/88.200.2".into(),
            index: 300,
            secret: other_secret.trim().as_bytes().to_vec(),
        };
        assert_eq!(
            client
                .admin(
                    AdminRequest::Delete {
                        handle: "88.100.1/KEYED".into()
                    },
                    &other
                )
                .unwrap()
                .code,
            400
        );
        assert_eq!(
            client.admin(create.clone(), &other).unwrap().code,
            101,
            "exists: checked before rights"
        );
        let wrong = Authenticator::SecretKey {
            identity_handle: "0.NA/88.100.1".into(),
            index: 300,
            secret: b"nope".to_vec(),
        };
        assert_eq!(
            client
                .admin(
                    AdminRequest::Delete {
                        handle: "88.100.1/KEYED".into()
                    },
                    &wrong
                )
                .unwrap()
                .code,
            403
        );
        let stranger = Authenticator::PrivateKey {
            identity_handle: "0.NA/88.100.1".into(),
            index: 301,
            key: Box::new(PrivateKey::generate_rsa(1024).unwrap()),
        };
        assert_eq!(
            client
                .admin(
                    AdminRequest::Delete {
                        handle: "88.100.1/KEYED".into()
                    },
                    &stranger
                )
                .unwrap()
                .code,
            403
        );
        let r = client
            .resolve(Lookup::all("88.100.1/KEYED"), Transport::Udp, true)
            .unwrap();
        assert_eq!(r.values.len(), 2, "still there");
        // List and delete with the secret.
        let r = client.admin(list_handles("88.100.1"), &secret).unwrap();
        assert_eq!(r.handles, ["88.100.1/KEYED"]);
        assert!(client
            .admin(
                AdminRequest::Delete {
                    handle: "88.100.1/KEYED".into()
                },
                &by_key
            )
            .unwrap()
            .is_success());
        assert_eq!(
            client
                .resolve(Lookup::all("88.100.1/KEYED"), Transport::Tcp, true)
                .unwrap()
                .code,
            100
        );
    })
    .await
    .unwrap();
    node.shutdown().await;
}

/// The UDP workers replay encoded answers to repeated resolutions: each copy carries its own
/// request id and a fresh expiration; a request digest (RD) is the digest of that request;
/// and a write retires the replayed answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_resolutions_follow_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.native_addr.unwrap();
    let engine = node.engine.clone();
    let identity = prefix_admin(&node);
    let handle = Handle::parse("88.100.1/SN-R1", SuffixCase::Sensitive).unwrap();
    let put = |text: &str, overwrite| {
        engine
            .create(
                &identity,
                &handle,
                vec![HandleValue::new(1, "DESC", text)],
                overwrite,
            )
            .unwrap();
    };
    put("first", Overwrite::No);
    let result = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for id in 1..=4u32 {
            let mut req = resolution("88.100.1/SN-R1", vec![], id);
            // Clients stamp their own expiration on each request.
            req[36..40].copy_from_slice(&(0x6500_0000u32 + id).to_be_bytes());
            let m = udp(addr, &req);
            assert_eq!(m.envelope.request_id, id);
            assert_eq!(m.header.response_code, 1);
            assert!(m.header.expiration > 0x6500_0000);
            seen.push(desc(&m));
        }
        // With RD the digest must be of this very request.
        for id in [10u32, 11] {
            let mut m = Message::request(
                op::RESOLUTION,
                0x1900_0000 | flag::RETURN_DIGEST,
                Body::Resolution {
                    handle: "88.100.1/SN-R1".into(),
                    indexes: vec![],
                    types: vec![],
                },
            );
            m.envelope.request_id = id;
            m.header.expiration = 0x6600_0000 + id;
            let hb = m.encode_message();
            let answer = udp(addr, &m.encode());
            let digest = answer.digest.expect("RD answered with a digest");
            let (hash_type, expected) = request_digest(
                answer.envelope.major,
                answer.envelope.minor,
                header_and_body(&hb).unwrap(),
            );
            assert_eq!((digest.hash_type, digest.digest), (hash_type, expected));
        }
        seen
    })
    .await
    .unwrap();
    assert_eq!(result, vec!["first"; 4]);
    put("second", Overwrite::Yes);
    let after =
        tokio::task::spawn_blocking(move || udp(addr, &resolution("88.100.1/SN-R1", vec![], 9)))
            .await
            .unwrap();
    assert_eq!(desc(&after), "second");
    node.shutdown().await;
}

/// Issue 14: a write retires only the replayed answers it changes, and never leaves one
/// stale. Each round writes SN-W (acknowledged), writes another identifier (which moves the
/// registry's sequence but not SN-W's stamp), then reads both over UDP: the answer is always
/// the last acknowledged write, and an untouched identifier keeps its (replayed) answer.
/// Unhoming the prefix (structural) retires every answer under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_answers_never_outlive_an_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.native_addr.unwrap();
    let engine = node.engine.clone();
    let identity = prefix_admin(&node);
    let write = {
        let engine = engine.clone();
        move |h: &str, text: &str| {
            let handle = Handle::parse(h, SuffixCase::Sensitive).unwrap();
            engine
                .create(
                    &identity,
                    &handle,
                    vec![HandleValue::new(1, "DESC", text)],
                    Overwrite::Yes,
                )
                .unwrap();
        }
    };
    write("88.100.1/SN-STILL", "still");
    let rounds = tokio::task::spawn_blocking(move || {
        let mut id = 0u32;
        let mut ask = |h: &str| {
            id += 1;
            udp(addr, &resolution(h, vec![], id))
        };
        for round in 0..40 {
            let text = format!("v{round}");
            write("88.100.1/SN-W", &text);
            write(&format!("88.100.1/OTHER-{round}"), "x");
            for _ in 0..3 {
                assert_eq!(desc(&ask("88.100.1/SN-W")), text, "round {round}");
                assert_eq!(desc(&ask("88.100.1/SN-STILL")), "still");
            }
        }
        id
    })
    .await
    .unwrap();
    assert_eq!(rounds, 240);
    let registry = engine.registry().clone();
    let after = tokio::task::spawn_blocking(move || {
        assert_eq!(
            udp(addr, &resolution("88.100.1/SN-STILL", vec![], 1))
                .header
                .response_code,
            1
        );
        registry
            .unhome_prefix(&idnode::model::Prefix::parse("88.100.1").unwrap())
            .unwrap();
        udp(addr, &resolution("88.100.1/SN-STILL", vec![], 2))
    })
    .await
    .unwrap();
    assert_ne!(after.header.response_code, 1, "{after:?}");
    node.shutdown().await;
}

/// Issue 11, hole 5: an HS_SECKEY stored with public read is not served to an anonymous
/// native reader: with PO it is left out (asked for by type: 200), without PO the reader is
/// challenged (402) rather than given it, in Handle.Net's `anonymous_restricted_reads =
/// "challenge"` mode tested here (the default "public" mode answers as if PO were set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole5_native_never_serves_a_stored_public_seckey() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with(dir.path(), "anonymous_restricted_reads = \"challenge\"").await;
    let addr = node.native_addr.unwrap();
    let engine = node.engine.clone();
    let identity = prefix_admin(&node);
    let handle = Handle::parse("88.100.1/DEV-1", SuffixCase::Sensitive).unwrap();
    engine
        .create(
            &identity,
            &handle,
            vec![
                HandleValue::new(1, "DESC", "device"),
                HandleValue::new(300, "HS_SECKEY", "native-device-secret")
                    .with_permissions(idnode::model::ValuePermissions::DEFAULT),
            ],
            Overwrite::No,
        )
        .unwrap();
    let result = tokio::task::spawn_blocking(move || {
        let ask = |types: Vec<String>, op_flag: u32, id: u32| {
            let req = request(
                op::RESOLUTION,
                op_flag,
                Body::Resolution {
                    handle: "88.100.1/DEV-1".into(),
                    indexes: vec![],
                    types,
                },
                id,
                0,
            );
            udp(addr, &req)
        };
        let po = 0x1900_0000 | flag::PUBLIC_ONLY;
        let whole = ask(vec![], po, 1);
        let by_type = ask(vec!["HS_SECKEY".into()], po, 2);
        let no_po = ask(vec!["HS_SECKEY".into()], 0x1800_0000, 3);
        (whole, by_type, no_po)
    })
    .await
    .unwrap();
    let (whole, by_type, no_po) = result;
    assert_eq!(whole.header.response_code, 1);
    let Body::Values { values, .. } = &whole.body else {
        panic!("{:?}", whole.body)
    };
    assert_eq!(values.iter().map(|v| v.index).collect::<Vec<_>>(), [1]);
    assert_eq!(by_type.header.response_code, 200);
    // Without PO over UDP: RC 2 (authenticate over TCP), never the secret, and no state.
    assert_eq!(no_po.header.response_code, 2);
    for m in [&whole, &by_type, &no_po] {
        assert!(!format!("{:?}", m.body).contains("native-device-secret"));
    }
    node.shutdown().await;
}

/// Certified resolution against a running node: the node created its server key on first
/// start (mode 0600), publishes it in the HS_SITE it serves, signs CT answers (found and not
/// found, UDP and TCP) so they verify with that key, keeps the key across restarts, and
/// `idnode resolve --certified` says so (exit 0). Signatures that do not verify are the unit
/// tests' (`auth::credential`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_answers_verify_with_the_published_server_key() {
    use idnode::auth::credential::Certification;
    use idnode::client::{Client, Lookup, Transport};
    use idnode::model::PublicKey;

    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let key_file = idnode::server::server_key_path(dir.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let owner = node
        .engine
        .authenticate_secret(
            &node.engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            SECRET.as_bytes(),
        )
        .unwrap();
    node.engine
        .create(
            &owner,
            &node.engine.parse_handle("88.100.1/CERT-1").unwrap(),
            vec![HandleValue::new(1, "URL", "https://example.com/cert-1")],
            Overwrite::No,
        )
        .unwrap();
    let addr = node.native_addr.unwrap();
    let published = tokio::task::spawn_blocking(move || {
        let client = Client::new(addr).with_timeout(Duration::from_secs(10));
        let site = client.site_info(Transport::Udp).unwrap();
        let key = PublicKey::decode(&site.servers[0].public_key).unwrap();
        for transport in [Transport::Udp, Transport::Tcp] {
            for (handle, code) in [("88.100.1/CERT-1", 1), ("88.100.1/NOPE", 100)] {
                let (r, cert) = client
                    .resolve_certified(Lookup::all(handle), transport, true, &key)
                    .unwrap();
                assert_eq!(r.code, code, "{handle} over {transport:?}");
                assert_eq!(cert, Certification::Verified, "{handle} over {transport:?}");
            }
        }
        site.servers[0].public_key.clone()
    })
    .await
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_idnode");
    let target = addr.to_string();
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let ok = run(&[
        "resolve",
        "88.100.1/CERT-1",
        "--server",
        &target,
        "--certified",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("certified"));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("https://example.com/cert-1"));
    node.shutdown().await;

    // Restarted on the same data directory: the same key.
    let node = self::node(dir.path()).await;
    let addr = node.native_addr.unwrap();
    let again = tokio::task::spawn_blocking(move || {
        let client = Client::new(addr).with_timeout(Duration::from_secs(10));
        client.site_info(Transport::Tcp).unwrap().servers[0]
            .public_key
            .clone()
    })
    .await
    .unwrap();
    assert_eq!(again, published);
    node.shutdown().await;
}
