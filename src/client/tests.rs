use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Instant;

use super::io::check_challenge_digest;
use super::resolve::resolution_flags;
use super::*;
use crate::auth::challenge::{request_digest, verify_pubkey_answer, verify_seckey_answer};
use crate::wire::handle::exchange::{build_request, encode_request, Feed, UdpResponse};
use crate::wire::handle::fragment::udp_fragments;
use crate::wire::handle::message::{envelope_flag, Envelope, RequestDigest};
use crate::wire::handle::message::{header_and_body, op, ENVELOPE_LEN};
use crate::wire::handle::vectors::*;

const REF_VERSION: (u8, u8) = (2, 3);
const REF_EXPIRATION: u32 = 0x6500_0000;

fn value(index: u32, t: &str, data: &str) -> HandleValue {
    HandleValue::new(index, t, data.as_bytes().to_vec())
}

use crate::wire::handle::vectors::response_for_an_hour as respond_to;

// --- request encoding ------------------------------------------------------------------------

/// `m` with `request_id` and the reference vectors' expiration (what `request_now` leaves to
/// chance and the clock).
fn fixed(mut m: Message, request_id: u32) -> Message {
    m.envelope.request_id = request_id;
    m.header.expiration = REF_EXPIRATION;
    m
}

/// [`fixed`], at the reference vectors' version too.
fn as_reference(m: Message, request_id: u32) -> Message {
    let mut m = fixed(m, request_id);
    (m.envelope.major, m.envelope.minor) = REF_VERSION;
    m
}

#[test]
fn resolution_request_matches_reference_bytes() {
    let sn = Lookup::all("88.100.1/SN-0001");
    let m = as_reference(sn.request(resolution_flags(true)), 0x0102_0304);
    assert_eq!(m.encode(), hex(REQ_HEX));

    let types = ["HS_SITE".to_string(), "HS_SERV".to_string()];
    let site = Lookup::new("0.NA/88.100.1", &[1], &types);
    let m = as_reference(site.request(resolution_flags(true)), 7);
    assert_eq!(m.encode(), hex(REQ2_HEX));

    // What the client really sends: 2.11 in bytes 0-1, the rest identical.
    let ours = fixed(sn.request(resolution_flags(true)), 0x0102_0304).encode();
    let reference = hex(REQ_HEX);
    assert_eq!(&ours[..4], &[2, 11, 2, 11]);
    assert_eq!(&ours[4..], &reference[4..]);
}

#[test]
fn admin_read_drops_only_po() {
    assert_eq!(resolution_flags(true), 0x1900_0000);
    assert_eq!(resolution_flags(false), 0x1800_0000);
}

/// The administrative requests of the reference vectors, with their request ids.
fn reference_admin_requests() -> [(&'static str, u32, AdminRequest); 6] {
    let values_of = |hexed: &str| match Message::decode_full(&hex(hexed)).unwrap().body {
        Body::HandleValues { values, .. } => values,
        other => panic!("{other:?}"),
    };
    let h = "88.100.1/SN-0002".to_string();
    [
        (
            CREATE_HANDLE_REQ_HEX,
            0x0a0b_0c0d,
            AdminRequest::Create {
                handle: h.clone(),
                values: values_of(CREATE_HANDLE_REQ_HEX),
                overwrite: false,
                mint: false,
            },
        ),
        (
            DELETE_HANDLE_REQ_HEX,
            0x0a0b_0c0e,
            AdminRequest::Delete { handle: h.clone() },
        ),
        (
            ADD_VALUE_REQ_HEX,
            0x0a0b_0c0f,
            AdminRequest::AddValues {
                handle: h.clone(),
                values: values_of(ADD_VALUE_REQ_HEX),
                overwrite: false,
            },
        ),
        (
            MODIFY_VALUE_REQ_HEX,
            0x0a0b_0c10,
            AdminRequest::ModifyValues {
                handle: h.clone(),
                values: values_of(MODIFY_VALUE_REQ_HEX),
            },
        ),
        (
            REMOVE_VALUE_REQ_HEX,
            0x0a0b_0c11,
            AdminRequest::RemoveValues {
                handle: h,
                indexes: vec![2],
            },
        ),
        (LIST_HANDLES_REQ_HEX, 0x0a0b_0c12, list_handles("88.100.1")),
    ]
}

#[test]
fn admin_requests_match_reference_bytes() {
    for (expected, id, req) in reference_admin_requests() {
        let m = as_reference(admin_request(&req, 0), id);
        assert_eq!(m.encode(), hex(expected), "{req:?}");
    }
}

/// What the client sends is what the server decodes: the bytes of every kind of
/// administrative request (flags set and not) become the same typed request again through
/// `wire::handle::request`.
#[test]
fn admin_requests_decode_back_to_themselves() {
    use crate::wire::handle::request::{Request, RequestMessage};
    let url = value(1, "URL", "https://example.com/x");
    let h = "88.100.1/x".to_string();
    let mut requests: Vec<AdminRequest> = reference_admin_requests()
        .into_iter()
        .map(|(_, _, r)| r)
        .collect();
    for (overwrite, mint) in [(true, false), (false, true), (true, true)] {
        requests.push(AdminRequest::Create {
            handle: h.clone(),
            values: vec![url.clone()],
            overwrite,
            mint,
        });
    }
    requests.extend([
        AdminRequest::AddValues {
            handle: h.clone(),
            values: vec![url],
            overwrite: true,
        },
        AdminRequest::Home {
            handle: "0.NA/88.100.1".into(),
        },
        AdminRequest::Unhome {
            handle: "0.NA/88.100.1".into(),
        },
    ]);
    for session in [0, 7] {
        for request in &requests {
            let bytes = encode_request(&admin_request(request, session)).unwrap();
            let m = Message::decode_full(&bytes).unwrap();
            let decoded = RequestMessage::from_message(m).unwrap();
            assert_eq!(decoded.request, Request::Admin(request.clone()));
            assert_eq!(decoded.envelope.session_id, session);
            // The flags every request of this client carries, whatever the operation adds.
            assert_eq!(decoded.header.op_flag & DEFAULT_FLAGS, DEFAULT_FLAGS);
        }
    }
}

#[test]
fn overwrite_sets_ovrw() {
    let create = AdminRequest::Create {
        handle: "88.100.1/x".into(),
        values: vec![],
        overwrite: true,
        mint: false,
    };
    assert_eq!(
        admin_request(&create, 0).header.op_flag,
        DEFAULT_FLAGS | flag::OVERWRITE
    );
    let add = AdminRequest::AddValues {
        handle: "88.100.1/x".into(),
        values: vec![],
        overwrite: false,
    };
    assert_eq!(admin_request(&add, 0).header.op_flag, DEFAULT_FLAGS);
}

#[test]
fn prefix_handles() {
    assert_eq!(prefix_handle("88.100.1"), "0.NA/88.100.1");
    assert_eq!(prefix_handle("0.NA/88.100.1"), "0.NA/88.100.1");
    assert_eq!(prefix_handle("0.na/88.100.1"), "0.na/88.100.1");
    assert_eq!(prefix_handle("0.NA"), "0.NA/0.NA");
}

#[test]
fn seckey_answer_matches_reference_bytes() {
    let create = hex(CREATE_HANDLE_REQ_HEX);
    let hb = header_and_body(&create[ENVELOPE_LEN..]).unwrap();
    // The challenge the reference server would send (sessionId 5, nonce 00..0f).
    let req = Message::decode_full(&create).unwrap();
    let (hash_type, digest) = request_digest(2, 11, hb);
    let mut challenge = respond_to(
        &req,
        402,
        Body::Challenge {
            nonce: (0u8..16).collect(),
        },
    );
    challenge.header.op_flag |= flag::RETURN_DIGEST;
    challenge.digest = Some(RequestDigest { hash_type, digest });
    let checked = check_challenge_digest(&challenge, hb).unwrap();
    assert_eq!(
        checked,
        hex("be8ad567d1d98b8c03cb449321e0340ce2174c17c871b61e56b3a1c4a0f3fea3")
    );

    let auth = Authenticator::SecretKey {
        identity_handle: "0.NA/88.100.1".into(),
        index: 300,
        secret: b"password".to_vec(),
    };
    let salt: Vec<u8> = (0xa0u8..=0xaf).collect();
    let nonce: Vec<u8> = (0u8..16).collect();
    let body = auth.answer(&nonce, &checked, &salt).unwrap();
    let answer = build_request(
        REF_VERSION,
        5,
        0x0a0b_0c14,
        REF_EXPIRATION,
        op::CHALLENGE_RESPONSE,
        DEFAULT_FLAGS,
        body,
    );
    assert_eq!(answer.encode(), hex(SECKEY_CHALLENGE_ANSWER_REQ_HEX));
}

#[test]
fn challenge_digest_is_checked() {
    let challenge = Message::decode_full(&hex(CHALLENGE_HEX)).unwrap();
    let request = hex(REQ_HEX);
    let hb = header_and_body(&request[ENVELOPE_LEN..]).unwrap();
    assert!(check_challenge_digest(&challenge, hb).is_ok());

    let mut other = request.clone();
    other[ENVELOPE_LEN + 8] ^= 0x01; // another opFlag
    let hb = header_and_body(&other[ENVELOPE_LEN..]).unwrap();
    assert!(matches!(
        check_challenge_digest(&challenge, hb),
        Err(ClientError::DigestMismatch)
    ));

    let mut no_digest = challenge.clone();
    no_digest.digest = None;
    assert!(matches!(
        check_challenge_digest(&no_digest, hb),
        Err(ClientError::Unexpected(_))
    ));
}

// --- responses -------------------------------------------------------------------------------

#[test]
fn responses_from_reference_messages() {
    let m = Message::decode_full(&hex(RESP_HEX)).unwrap();
    let r = Response::from_message(&m, "88.100.1/sn-0001");
    assert!(r.is_success());
    assert_eq!(r.handle, "88.100.1/SN-0001");
    assert_eq!(r.values.len(), 1);
    assert_eq!(r.values[0].data_str(), Some("https://example.com/sn/0001"));
    assert_eq!(r.version, (2, 11));

    let m = Message::decode_full(&hex(NOTFOUND_HEX)).unwrap();
    let r = Response::from_message(&m, "88.100.1/SN-0001");
    assert_eq!(r.code, 100);
    assert_eq!(r.code_name(), "HANDLE_NOT_FOUND");
    assert_eq!(r.handle, "88.100.1/SN-0001");
    assert!(r.values.is_empty());

    let m = Message::decode_full(&hex(NOT_RESPONSIBLE_301_RESP_HEX)).unwrap();
    let r = Response::from_message(&m, "99.1/x");
    assert_eq!(r.code, 301);
    assert_eq!(r.message, "That prefix doesn't live here");
}

// --- loopback: UDP ---------------------------------------------------------------------------

/// A resolution response of `n` values (about 70 bytes each).
fn big_response(request_id: u32, n: u32) -> Message {
    let mut req = Lookup::all("88.100.1/BIG").request(DEFAULT_FLAGS);
    req.envelope.request_id = request_id;
    let values = (1..=n)
        .map(|i| {
            value(
                i,
                "URL",
                &format!("https://example.com/big/{i:04}/some/longer/path"),
            )
        })
        .collect();
    respond_to(
        &req,
        1,
        Body::Values {
            handle: "88.100.1/BIG".into(),
            values,
        },
    )
}

fn udp_server() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}

/// Receive one whole request (reassembling it), with the client's address.
fn udp_receive(s: &UdpSocket) -> (Message, SocketAddr, usize) {
    let mut buf = vec![0u8; 65536];
    let mut r: Option<UdpResponse> = None;
    let mut datagrams = 0;
    loop {
        let (n, from) = s.recv_from(&mut buf).unwrap();
        datagrams += 1;
        let id = u32::from_be_bytes(buf[8..12].try_into().unwrap());
        let r = r.get_or_insert_with(|| UdpResponse::new(id));
        if let Feed::Complete(env, bytes) = r.feed(&buf[..n]) {
            return (Message::decode(env, &bytes).unwrap(), from, datagrams);
        }
    }
}

#[test]
fn udp_loopback_multi_datagram_response_after_a_retry() {
    let (server, addr) = udp_server();
    let t = thread::spawn(move || {
        // Drop the first transmission: the client must resend after 500 ms.
        let (first, _, _) = udp_receive(&server);
        let (req, from, _) = udp_receive(&server);
        assert_eq!(first.envelope.request_id, req.envelope.request_id);
        assert_eq!(req.header.op_flag, DEFAULT_FLAGS);
        assert_eq!(req.header.site_serial, 0xFFFF);
        assert_eq!((req.envelope.major, req.envelope.minor), (2, 11));
        assert!(req.header.expiration > now_unix() + 43_000);
        assert_ne!(req.envelope.request_id, 0);
        assert!(req.envelope.request_id <= i32::MAX as u32);
        let mut resp = big_response(req.envelope.request_id, 25);
        resp.header.op_flag = req.header.op_flag;
        let frags = udp_fragments(&resp.encode());
        // A stray answer to someone else, then the fragments backwards with a duplicate.
        let mut stray = frags[0].clone();
        stray[8..12].copy_from_slice(&(req.envelope.request_id ^ 1).to_be_bytes());
        server.send_to(&stray, from).unwrap();
        server.send_to(&frags[1], from).unwrap();
        for f in frags.iter().rev() {
            server.send_to(f, from).unwrap();
        }
        resp
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let started = Instant::now();
    let r = client
        .resolve(Lookup::all("88.100.1/BIG"), Transport::Udp, true)
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(450));
    let sent = t.join().unwrap();
    assert_eq!(r.code, 1);
    assert_eq!(r.handle, "88.100.1/BIG");
    match sent.body {
        Body::Values { values, .. } => assert_eq!(r.values, values),
        other => panic!("{other:?}"),
    }
}

#[test]
fn udp_multi_datagram_request_is_fragmented_and_flagged() {
    let (server, addr) = udp_server();
    let t = thread::spawn(move || {
        let (req, from, datagrams) = udp_receive(&server);
        let resp = respond_to(
            &req,
            200,
            Body::Error {
                message: String::new(),
            },
        );
        server.send_to(&resp.encode(), from).unwrap();
        (req, datagrams)
    });
    let types: Vec<String> = (0..40).map(|i| format!("TYPE_NUMBER_{i:03}")).collect();
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let r = client
        .resolve(
            Lookup::new("88.100.1/X", &[1, 2], &types),
            Transport::Udp,
            false,
        )
        .unwrap();
    assert_eq!(r.code, 200);
    let (req, datagrams) = t.join().unwrap();
    assert!(datagrams >= 2);
    assert_eq!(
        req.envelope.flags & envelope_flag::TRUNCATED,
        envelope_flag::TRUNCATED
    );
    assert_eq!(req.header.op_flag, 0x1800_0000);
    assert_eq!(
        req.body,
        Body::Resolution {
            handle: "88.100.1/X".into(),
            indexes: vec![1, 2],
            types
        }
    );
}

#[test]
fn udp_times_out_within_the_timeout() {
    let (server, addr) = udp_server();
    let client = Client::new(addr).with_timeout(Duration::from_millis(700));
    let started = Instant::now();
    let e = client
        .resolve(Lookup::all("88.100.1/X"), Transport::Udp, true)
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    assert!(took >= Duration::from_millis(650), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // Two transmissions: at 0 and at 500 ms.
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 600];
    let mut n = 0;
    while server.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn udp_timeout_reports_ignored_datagrams() {
    let (server, addr) = udp_server();
    let t = thread::spawn(move || {
        let (req, from, _) = udp_receive(&server);
        let mut resp = respond_to(
            &req,
            100,
            Body::Error {
                message: String::new(),
            },
        );
        resp.envelope.request_id ^= 0x10;
        server.send_to(&resp.encode(), from).unwrap();
        server // kept open: a closed port would make the retry fail with ICMP
    });
    let client = Client::new(addr).with_timeout(Duration::from_millis(600));
    let e = client
        .resolve(Lookup::all("88.100.1/X"), Transport::Udp, true)
        .unwrap_err();
    drop(t.join().unwrap());
    let text = e.to_string();
    assert!(text.contains("request id"), "{text}");
}

// --- loopback: TCP ---------------------------------------------------------------------------

/// Read one message from a fake server's connection, with its header+body bytes.
fn tcp_read(s: &mut TcpStream) -> Option<(Message, Vec<u8>)> {
    let mut head = [0u8; ENVELOPE_LEN];
    s.read_exact(&mut head).ok()?;
    let env = Envelope::decode(&head).unwrap();
    let mut body = vec![0u8; env.message_length as usize];
    s.read_exact(&mut body).unwrap();
    let hb = header_and_body(&body).unwrap().to_vec();
    Some((Message::decode(env, &body).unwrap(), hb))
}

fn tcp_server<T: Send + 'static>(
    f: impl FnOnce(TcpListener) -> T + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (addr, thread::spawn(move || f(l)))
}

fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn challenge_for(req: &Message, hb: &[u8], session: u32, nonce: &[u8]) -> Message {
    let (hash_type, digest) = request_digest(2, 11, hb);
    let mut c = respond_to(
        req,
        402,
        Body::Challenge {
            nonce: nonce.to_vec(),
        },
    );
    c.envelope.session_id = session;
    c.header.op_flag |= flag::RETURN_DIGEST;
    c.digest = Some(RequestDigest { hash_type, digest });
    c
}

/// Challenge the request, check the answer with `verify`, answer with `body`s (CN on all but
/// the last) under the answer's request id. Returns the answer.
fn serve_admin(
    s: &mut TcpStream,
    verify: impl Fn(&Message, &[u8], &[u8]) -> bool,
    bodies: Vec<Body>,
) -> (Message, Message) {
    let (req, hb) = tcp_read(s).unwrap();
    let nonce: Vec<u8> = (100u8..116).collect();
    s.write_all(&challenge_for(&req, &hb, 77, &nonce).encode())
        .unwrap();
    let (answer, _) = tcp_read(s).unwrap();
    let (_, digest) = request_digest(2, 11, &hb);
    let ok = verify(&answer, &nonce, &digest);
    let mut reply_to = req.clone();
    reply_to.envelope.request_id = answer.envelope.request_id;
    reply_to.envelope.session_id = answer.envelope.session_id;
    if !ok {
        let r = respond_to(
            &reply_to,
            403,
            Body::Error {
                message: "Authentication failed".into(),
            },
        );
        s.write_all(&r.encode()).unwrap();
        return (req, answer);
    }
    let n = bodies.len();
    for (i, body) in bodies.into_iter().enumerate() {
        let mut r = respond_to(&reply_to, 1, body);
        if i + 1 < n {
            r.header.op_flag |= flag::CONTINUOUS;
        }
        s.write_all(&r.encode()).unwrap();
    }
    (req, answer)
}

fn seckey_auth() -> Authenticator {
    Authenticator::SecretKey {
        identity_handle: "0.NA/88.100.1".into(),
        index: 300,
        secret: b"s3cret".to_vec(),
    }
}

fn check_seckey(answer: &Message, nonce: &[u8], digest: &[u8]) -> bool {
    match &answer.body {
        Body::ChallengeAnswer {
            auth_type,
            identity_handle,
            identity_index,
            signed_response,
        } => {
            auth_type == "HS_SECKEY"
                && identity_handle == "0.NA/88.100.1"
                && *identity_index == 300
                && signed_response.first() == Some(&0x22)
                && verify_seckey_answer(b"s3cret", nonce, digest, signed_response).unwrap()
        }
        _ => false,
    }
}

#[test]
fn tcp_resolve_loopback() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let (req, _) = tcp_read(&mut s).unwrap();
        let resp = respond_to(
            &req,
            1,
            Body::Values {
                handle: "88.100.1/SN-0001".into(),
                values: vec![value(1, "URL", "https://example.com/sn/0001")],
            },
        );
        s.write_all(&resp.encode()).unwrap();
        req
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let r = client
        .resolve(
            Lookup::new("88.100.1/SN-0001", &[1], &["URL".into()]),
            Transport::Tcp,
            true,
        )
        .unwrap();
    let req = t.join().unwrap();
    assert_eq!(
        req.body,
        Body::Resolution {
            handle: "88.100.1/SN-0001".into(),
            indexes: vec![1],
            types: vec!["URL".into()]
        }
    );
    assert_eq!(req.credential, Some(vec![]));
    assert!(r.is_success());
    assert_eq!(r.values[0].data_str(), Some("https://example.com/sn/0001"));
}

#[test]
fn tcp_request_id_mismatch() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let (mut req, _) = tcp_read(&mut s).unwrap();
        req.envelope.request_id = req.envelope.request_id.wrapping_add(1);
        let resp = respond_to(
            &req,
            100,
            Body::Error {
                message: String::new(),
            },
        );
        s.write_all(&resp.encode()).unwrap();
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let e = client
        .resolve(Lookup::all("88.100.1/X"), Transport::Tcp, true)
        .unwrap_err();
    t.join().unwrap();
    assert!(
        matches!(
            e,
            ClientError::Exchange(ExchangeError::WrongRequestId { .. })
        ),
        "{e}"
    );
}

#[test]
fn tcp_expired_response() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let (req, _) = tcp_read(&mut s).unwrap();
        let mut resp = respond_to(
            &req,
            100,
            Body::Error {
                message: String::new(),
            },
        );
        resp.header.expiration = now_unix() - 10;
        s.write_all(&resp.encode()).unwrap();
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let e = client
        .resolve(Lookup::all("88.100.1/X"), Transport::Tcp, true)
        .unwrap_err();
    t.join().unwrap();
    assert!(
        matches!(e, ClientError::Exchange(ExchangeError::Expired { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("clock"));
}

#[test]
fn tcp_garbage_is_a_decode_error_and_silence_a_timeout() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let _ = tcp_read(&mut s).unwrap();
        // An envelope claiming 30 bytes, then 30 bytes of nonsense.
        let mut junk = vec![
            2, 11, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30,
        ];
        junk.extend_from_slice(&[0xff; 30]);
        s.write_all(&junk).unwrap();
        let mut s = accept(&l);
        let _ = tcp_read(&mut s).unwrap();
        thread::sleep(Duration::from_millis(800));
    });
    let client = Client::new(addr).with_timeout(Duration::from_millis(400));
    let e = client
        .resolve(Lookup::all("88.100.1/X"), Transport::Tcp, true)
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Exchange(ExchangeError::Malformed(_))),
        "{e}"
    );
    let e = client
        .resolve(Lookup::all("88.100.1/X"), Transport::Tcp, true)
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    t.join().unwrap();
}

#[test]
fn admin_create_with_secret_key() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        serve_admin(&mut s, check_seckey, vec![Body::Empty])
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let values = vec![value(1, "URL", "https://example.com/a")];
    let r = client
        .admin(
            AdminRequest::Create {
                handle: "88.100.1/A".into(),
                values: values.clone(),
                overwrite: true,
                mint: false,
            },
            &seckey_auth(),
        )
        .unwrap();
    let (req, answer) = t.join().unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.handle, "88.100.1/A");
    assert_eq!(req.header.op_code, op::CREATE_HANDLE);
    assert_eq!(req.header.op_flag, DEFAULT_FLAGS | flag::OVERWRITE);
    assert_eq!(
        req.body,
        Body::HandleValues {
            handle: "88.100.1/A".into(),
            values
        }
    );
    assert_eq!(answer.header.op_code, op::CHALLENGE_RESPONSE);
    assert_eq!(answer.envelope.session_id, 77);
    assert_ne!(answer.envelope.request_id, req.envelope.request_id);
}

#[test]
fn admin_wrong_secret_gets_403() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        serve_admin(&mut s, check_seckey, vec![Body::Empty])
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let auth = Authenticator::SecretKey {
        identity_handle: "0.NA/88.100.1".into(),
        index: 300,
        secret: b"wrong".to_vec(),
    };
    let r = client
        .admin(
            AdminRequest::Delete {
                handle: "88.100.1/A".into(),
            },
            &auth,
        )
        .unwrap();
    t.join().unwrap();
    assert_eq!(r.code, 403);
    assert_eq!(r.message, "Authentication failed");
}

#[test]
fn admin_with_private_key() {
    let key = PrivateKey::generate_rsa(1024).unwrap();
    let public = key.public_key();
    let (addr, t) = tcp_server(move |l| {
        let mut s = accept(&l);
        serve_admin(
            &mut s,
            |answer, nonce, digest| match &answer.body {
                Body::ChallengeAnswer {
                    auth_type,
                    identity_index,
                    signed_response,
                    ..
                } => {
                    auth_type == "HS_PUBKEY"
                        && *identity_index == 301
                        && verify_pubkey_answer(&public, nonce, digest, signed_response).unwrap()
                }
                _ => false,
            },
            vec![Body::Empty],
        )
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let auth = Authenticator::PrivateKey {
        identity_handle: "0.NA/88.100.1".into(),
        index: 301,
        key: Box::new(key),
    };
    assert!(!format!("{auth:?}").contains("BEGIN"));
    let r = client
        .admin(
            AdminRequest::RemoveValues {
                handle: "88.100.1/A".into(),
                indexes: vec![2, 3],
            },
            &auth,
        )
        .unwrap();
    let (req, _) = t.join().unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        req.body,
        Body::RemoveValues {
            handle: "88.100.1/A".into(),
            indexes: vec![2, 3]
        }
    );
}

#[test]
fn admin_list_follows_continuations() {
    let pages: Vec<Vec<String>> = (0..3)
        .map(|p| (0..50).map(|i| format!("88.100.1/H{p}-{i}")).collect())
        .collect();
    let bodies = pages
        .iter()
        .map(|h| Body::HandleList { handles: h.clone() })
        .collect();
    let (addr, t) = tcp_server(move |l| {
        let mut s = accept(&l);
        serve_admin(&mut s, check_seckey, bodies)
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let r = client
        .admin(list_handles("88.100.1"), &seckey_auth())
        .unwrap();
    let (req, _) = t.join().unwrap();
    assert_eq!(
        req.body,
        Body::Handle {
            handle: "0.NA/88.100.1".into()
        }
    );
    assert!(r.is_success());
    assert_eq!(r.handles, pages.concat());
}

#[test]
fn admin_refuses_a_challenge_for_another_request() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let (req, mut hb) = tcp_read(&mut s).unwrap();
        hb[0] ^= 1;
        s.write_all(&challenge_for(&req, &hb, 5, &[1; 16]).encode())
            .unwrap();
        // The client must hang up without answering.
        tcp_read(&mut s).is_none()
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let e = client
        .admin(
            AdminRequest::Delete {
                handle: "88.100.1/A".into(),
            },
            &seckey_auth(),
        )
        .unwrap_err();
    assert!(matches!(e, ClientError::DigestMismatch), "{e}");
    assert!(t.join().unwrap(), "the client answered a forged challenge");
}

#[test]
fn admin_answers_on_a_new_connection_when_the_server_hangs_up() {
    // Handle.Net: one request per connection, the challenge answer on a new one.
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let (req, hb) = tcp_read(&mut s).unwrap();
        let nonce = [9u8; 16];
        s.write_all(&challenge_for(&req, &hb, 12, &nonce).encode())
            .unwrap();
        drop(s);
        let mut s = accept(&l);
        let (answer, _) = tcp_read(&mut s).unwrap();
        let (_, digest) = request_digest(2, 11, &hb);
        assert!(check_seckey(&answer, &nonce, &digest));
        assert_eq!(answer.envelope.session_id, 12);
        let mut reply_to = req.clone();
        reply_to.envelope.request_id = answer.envelope.request_id;
        s.write_all(&respond_to(&reply_to, 1, Body::Empty).encode())
            .unwrap();
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let r = client
        .admin(
            AdminRequest::Delete {
                handle: "88.100.1/A".into(),
            },
            &seckey_auth(),
        )
        .unwrap();
    t.join().unwrap();
    assert!(r.is_success(), "{r:?}");
}

#[test]
fn admin_answered_without_challenge() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let (req, _) = tcp_read(&mut s).unwrap();
        let r = respond_to(
            &req,
            5,
            Body::Error {
                message: "no".into(),
            },
        );
        s.write_all(&r.encode()).unwrap();
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let r = client
        .admin(
            AdminRequest::Delete {
                handle: "88.100.1/A".into(),
            },
            &seckey_auth(),
        )
        .unwrap();
    t.join().unwrap();
    assert_eq!(r.code, 5);
    assert_eq!(r.message, "no");
}

#[test]
fn resolve_authenticated_answers_the_challenge() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        serve_admin(
            &mut s,
            check_seckey,
            vec![Body::Values {
                handle: "88.100.1/A".into(),
                values: vec![value(5, "SECRET_NOTE", "hidden")],
            }],
        )
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let r = client
        .resolve_authenticated(Lookup::all("88.100.1/A"), &seckey_auth())
        .unwrap();
    let (req, _) = t.join().unwrap();
    assert_eq!(req.header.op_flag & flag::PUBLIC_ONLY, 0);
    assert!(r.is_success());
    assert_eq!(r.values[0].data_str(), Some("hidden"));
}

#[test]
fn unauthenticated_tcp_resolve_returns_the_402() {
    let (addr, t) = tcp_server(|l| {
        let mut s = accept(&l);
        let (req, hb) = tcp_read(&mut s).unwrap();
        s.write_all(&challenge_for(&req, &hb, 3, &[0; 16]).encode())
            .unwrap();
    });
    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
    let r = client
        .resolve(Lookup::all("88.100.1/A"), Transport::Tcp, false)
        .unwrap();
    t.join().unwrap();
    assert_eq!(r.code, 402);
    assert_eq!(r.code_name(), "AUTHENTICATION_NEEDED");
}

#[test]
fn tcp_connection_refused_is_io() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let e = Client::new(addr)
        .with_timeout(Duration::from_secs(2))
        .resolve(Lookup::all("88.100.1/A"), Transport::Tcp, true)
        .unwrap_err();
    assert!(matches!(e, ClientError::Io { .. }), "{e}");
}
