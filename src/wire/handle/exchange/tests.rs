use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::model::HandleValue;
use crate::wire::handle::message::{flag, op};
use crate::wire::handle::vectors::*;

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn value(index: u32, t: &str, data: &str) -> HandleValue {
    HandleValue::new(index, t, data.as_bytes().to_vec())
}

fn resolution(handle: &str) -> Body {
    Body::Resolution {
        handle: handle.to_string(),
        indexes: Vec::new(),
        types: Vec::new(),
    }
}

use crate::wire::handle::vectors::response_for_an_hour as respond_to;

/// A resolution response of `n` values (about 70 bytes each).
fn big_response(request_id: u32, n: u32) -> Message {
    let req = build_request(
        OUR_VERSION,
        0,
        request_id,
        expiration(now_unix()),
        op::RESOLUTION,
        flag::PUBLIC_ONLY,
        resolution("88.100.1/BIG"),
    );
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

// --- requests --------------------------------------------------------------------------------

#[test]
fn requests_expire_twelve_hours_ahead_and_ids_are_positive() {
    assert_eq!(expiration(1_700_000_000), 1_700_043_200);
    assert_eq!(expiration(u64::from(u32::MAX) - 5), u32::MAX);
    assert_eq!(expiration(u64::MAX), u32::MAX);
    for _ in 0..1000 {
        let id = new_request_id();
        assert!((1..=i32::MAX as u32).contains(&id), "{id}");
    }
    let m = new_request(op::RESOLUTION, flag::PUBLIC_ONLY, resolution("x/y"), 100);
    assert_eq!((m.envelope.major, m.envelope.minor), OUR_VERSION);
    assert_eq!(m.envelope.session_id, 0);
    assert_ne!(m.envelope.request_id, 0);
    assert_eq!(m.header.expiration, 100 + REQUEST_LIFETIME_SECS);
    assert_eq!(m.header.op_flag, flag::PUBLIC_ONLY);
}

#[test]
fn built_requests_match_reference_bytes() {
    let m = build_request(
        (2, 3),
        0,
        0x0102_0304,
        0x6500_0000,
        op::RESOLUTION,
        flag::RECURSIVE | flag::CACHE_CERTIFY | flag::PUBLIC_ONLY,
        resolution("88.100.1/SN-0001"),
    );
    assert_eq!(encode_request(&m).unwrap(), hex(REQ_HEX));
}

#[test]
fn oversized_requests_are_refused_before_sending() {
    let values = vec![HandleValue::new(1, "DATA", vec![0u8; MAX_MESSAGE_LEN])];
    let m = new_request(
        op::CREATE_HANDLE,
        0,
        Body::HandleValues {
            handle: "88.100.1/BIG".into(),
            values,
        },
        0,
    );
    assert!(matches!(
        encode_request(&m),
        Err(ExchangeError::RequestTooLarge(n)) if n > MAX_MESSAGE_LEN
    ));
    assert!(matches!(
        udp_datagrams(&m),
        Err(ExchangeError::RequestTooLarge(_))
    ));
}

#[test]
fn udp_requests_of_several_datagrams_are_marked_truncated() {
    let small = new_request(op::RESOLUTION, 0, resolution("88.100.1/x"), 0);
    let d = udp_datagrams(&small).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0], small.encode());
    assert_eq!(d[0][2] & envelope_flag::TRUNCATED, 0);

    let types = (0..60).map(|i| format!("TYPE-{i:04}")).collect();
    let large = new_request(
        op::RESOLUTION,
        0,
        Body::Resolution {
            handle: "88.100.1/x".into(),
            indexes: Vec::new(),
            types,
        },
        0,
    );
    let d = udp_datagrams(&large).unwrap();
    assert!(d.len() > 1);
    let mut again = UdpResponse::new(large.envelope.request_id);
    let mut whole = None;
    for datagram in &d {
        assert_ne!(datagram[2] & envelope_flag::TRUNCATED, 0);
        if let Feed::Complete(e, bytes) = again.feed(datagram) {
            whole = Some(Message::decode(e, &bytes).unwrap());
        }
    }
    assert_eq!(whole.unwrap().body, large.body);
}

// --- checks ----------------------------------------------------------------------------------

#[test]
fn expired_and_foreign_responses_are_refused() {
    let now = now_unix();
    // The reference vectors expire in 2023.
    let m = Message::decode_full(&hex(RESP_HEX)).unwrap();
    assert!(matches!(
        check_response(&m, 0x0102_0304, now),
        Err(ExchangeError::Expired {
            expiration: 0x6500_0000,
            ..
        })
    ));
    let mut fresh = m.clone();
    fresh.header.expiration = (now + 60) as u32;
    assert!(check_response(&fresh, 0x0102_0304, now).is_ok());
    assert!(matches!(
        check_response(&fresh, 99, now),
        Err(ExchangeError::WrongRequestId {
            expected: 99,
            got: 0x0102_0304
        })
    ));
    let request = Message::decode_full(&hex(REQ_HEX)).unwrap();
    assert!(matches!(
        check_response(&request, 0x0102_0304, now),
        Err(ExchangeError::NotAResponse(op::RESOLUTION))
    ));
    // Expired means before now, not at it.
    assert!(check_response(&m, 0x0102_0304, 0x6500_0000).is_ok());
    assert!(check_response(&m, 0x0102_0304, 0x6500_0001).is_err());
}

#[test]
fn resolution_answers_must_fit_their_request() {
    let request = new_request(op::RESOLUTION, 0, resolution("88.100.1/x"), now_unix());
    let now = now_unix();
    let values = Body::Values {
        handle: "88.100.1/x".into(),
        values: vec![value(1, "URL", "https://example.com")],
    };
    let ok = respond_to(&request, 1, values.clone());
    assert!(check_resolution_answer(&request, &ok, now).is_ok());
    let error = Body::Error {
        message: String::new(),
    };
    for code in [2, 100, 200, 301, 402] {
        let m = respond_to(&request, code, error.clone());
        assert!(check_resolution_answer(&request, &m, now).is_ok(), "{code}");
    }
    let referral = Body::Referral {
        handle: String::new(),
        values: Vec::new(),
    };
    let m = respond_to(&request, 303, referral.clone());
    assert!(check_resolution_answer(&request, &m, now).is_ok());
    let m = respond_to(&request, 402, Body::Challenge { nonce: vec![1; 16] });
    assert!(check_resolution_answer(&request, &m, now).is_ok());

    // A referral code needs the referral body, even to carry an error message.
    for (code, body) in [
        (1, error.clone()),
        (1, referral),
        (302, error.clone()),
        (303, values),
        (100, Body::Empty),
    ] {
        let m = respond_to(&request, code, body);
        assert_eq!(
            check_resolution_answer(&request, &m, now),
            Err(ExchangeError::BodyMismatch(code))
        );
    }
    let mut other_op = respond_to(&request, 1, Body::Empty);
    other_op.header.op_code = op::DELETE_HANDLE;
    let e = check_resolution_answer(&request, &other_op, now).unwrap_err();
    assert_eq!(
        e,
        ExchangeError::WrongOperation {
            expected: op::RESOLUTION,
            got: op::DELETE_HANDLE
        }
    );
    assert!(e.to_string().contains("opCode 101"), "{e}");
    let mut other_id = ok.clone();
    other_id.envelope.request_id ^= 1;
    assert!(matches!(
        check_resolution_answer(&request, &other_id, now),
        Err(ExchangeError::WrongRequestId { .. })
    ));
    let mut stale = ok;
    stale.header.expiration = (now - 10) as u32;
    let e = check_resolution_answer(&request, &stale, now).unwrap_err();
    assert!(matches!(e, ExchangeError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("clock"), "{e}");
}

#[test]
fn continued_messages_keep_the_first_code() {
    let request = new_request(op::LIST_HANDLES, 0, resolution("0.NA/88"), now_unix());
    let next = respond_to(&request, 1, Body::HandleList { handles: vec![] });
    assert!(check_continuation(1, &next).is_ok());
    assert_eq!(
        check_continuation(402, &next),
        Err(ExchangeError::ContinuedCode {
            first: 402,
            then: 1
        })
    );
}

// --- TCP framing -----------------------------------------------------------------------------

/// Run a frame over `stream` as a driver's `read_exact` loop would: `None` when the stream
/// ends first.
fn read_one(frame: &mut TcpFrame, stream: &mut &[u8]) -> Option<Result<Message, ExchangeError>> {
    loop {
        let want = frame.unfilled();
        let n = want.len();
        if stream.len() < n {
            return None;
        }
        want.copy_from_slice(&stream[..n]);
        *stream = &stream[n..];
        match frame.filled() {
            Ok(None) => continue,
            Ok(Some(m)) => return Some(Ok(m)),
            Err(e) => return Some(Err(e)),
        }
    }
}

#[test]
fn tcp_frames_read_messages_in_order() {
    let first = Message::decode_full(&hex(RESP_HEX)).unwrap();
    let second = Message::decode_full(&hex(NOTFOUND_HEX)).unwrap();
    let mut bytes = first.encode();
    bytes.extend_from_slice(&second.encode());
    let mut stream = &bytes[..];
    let mut frame = TcpFrame::new();
    assert_eq!(frame.unfilled().len(), ENVELOPE_LEN);
    assert_eq!(read_one(&mut frame, &mut stream).unwrap().unwrap(), first);
    assert_eq!(read_one(&mut frame, &mut stream).unwrap().unwrap(), second);
    assert!(stream.is_empty());
    // A stream that ends early needs more bytes, which never come.
    let cut = first.encode();
    let mut short = &cut[..cut.len() - 1];
    assert!(read_one(&mut TcpFrame::new(), &mut short).is_none());
}

#[test]
fn tcp_frames_refuse_garbage_before_allocating() {
    // An envelope claiming more than the protocol allows: refused on the envelope.
    let mut head = hex(RESP_HEX)[..ENVELOPE_LEN].to_vec();
    head[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut frame = TcpFrame::new();
    frame.unfilled().copy_from_slice(&head);
    let e = frame.filled().unwrap_err();
    assert!(
        matches!(&e, ExchangeError::Malformed(w) if w.starts_with("envelope")),
        "{e}"
    );
    // An envelope claiming 30 bytes, then 30 bytes of nonsense.
    let mut junk = vec![
        2, 11, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30,
    ];
    junk.extend_from_slice(&[0xff; 30]);
    let mut stream = &junk[..];
    let e = read_one(&mut TcpFrame::new(), &mut stream)
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, ExchangeError::Malformed(_)), "{e}");
    // An HTTP error page is not an envelope either.
    let mut http = &b"HTTP/1.1 400 Bad Request\r\n\r\n"[..];
    assert!(read_one(&mut TcpFrame::new(), &mut http).unwrap().is_err());
}

// --- UDP reassembly --------------------------------------------------------------------------

#[test]
fn reassembles_out_of_order_with_duplicates_and_junk() {
    let response = big_response(42, 30);
    let encoded = response.encode();
    let frags = udp_fragments(&encoded);
    assert!(frags.len() >= 4, "{} fragments", frags.len());
    let last = frags.len() - 1;

    let mut r = UdpResponse::new(42);
    // Junk first: short, another request id, bogus sequence, wrong chunk length.
    assert!(matches!(r.feed(&frags[0][..10]), Feed::Ignored(_)));
    let mut foreign = frags[0].clone();
    foreign[8..12].copy_from_slice(&43u32.to_be_bytes());
    assert_eq!(
        r.feed(&foreign),
        Feed::Ignored(ExchangeError::WrongRequestId {
            expected: 42,
            got: 43
        })
    );
    let mut bogus = frags[1].clone();
    bogus[12..16].copy_from_slice(&(frags.len() as u32).to_be_bytes());
    assert!(matches!(r.feed(&bogus), Feed::Ignored(_)));
    let mut bogus = frags[1].clone();
    bogus[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(r.feed(&bogus), Feed::Ignored(_)));
    let mut short_chunk = frags[1].clone();
    short_chunk.pop();
    assert!(matches!(r.feed(&short_chunk), Feed::Ignored(_)));
    let mut long_last = frags[last].clone();
    long_last.push(0);
    assert!(matches!(r.feed(&long_last), Feed::Ignored(_)));
    let mut too_long = frags[0].clone();
    too_long[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(r.feed(&too_long), Feed::Ignored(_)));

    // Then the real ones, last first, with duplicates.
    let mut got = None;
    for (i, f) in frags.iter().enumerate().rev() {
        match r.feed(f) {
            Feed::Pending => assert!(i > 0),
            Feed::Complete(env, bytes) => {
                assert_eq!(i, 0);
                got = Some(Message::decode(env, &bytes).unwrap());
            }
            Feed::Ignored(why) => panic!("fragment {i} ignored: {why}"),
        }
        if i == last {
            assert!(matches!(
                r.feed(f),
                Feed::Ignored(ExchangeError::Fragment(FragmentError::Duplicate(_)))
            ));
            assert!(matches!(r.feed(f), Feed::Ignored(w) if w.to_string().contains("duplicate")));
        }
    }
    let got = got.expect("complete");
    assert_eq!(got.body, response.body);
    assert_eq!(got.envelope.sequence, 0);
    assert_eq!(got.encode(), encoded);
}

#[test]
fn reassembly_rejects_inconsistent_lengths() {
    let a = udp_fragments(&big_response(1, 30).encode());
    let b = udp_fragments(&big_response(1, 31).encode());
    let mut r = UdpResponse::new(1);
    assert_eq!(r.feed(&a[0]), Feed::Pending);
    assert!(matches!(r.feed(&b[1]), Feed::Ignored(w) if w.to_string().contains("declares")));
}

#[test]
fn reassembly_rejects_inconsistent_datagrams() {
    let real = big_response(5, 30);
    let frags = udp_fragments(&real.encode());
    let mut r = UdpResponse::new(5);
    // Wrong size for its position.
    let short = &frags[0][..frags[0].len() - 1];
    assert!(matches!(
        r.feed(short),
        Feed::Ignored(ExchangeError::Fragment(_))
    ));
    // Out-of-range sequence number.
    let mut far = frags[1].clone();
    far[12..16].copy_from_slice(&99u32.to_be_bytes());
    assert!(matches!(
        r.feed(&far),
        Feed::Ignored(ExchangeError::Fragment(_))
    ));
    let mut done = None;
    for f in &frags {
        if let Feed::Complete(e, bytes) = r.feed(f) {
            done = Some((e, bytes));
        }
    }
    let (e, bytes) = done.unwrap();
    assert_eq!(Message::decode(e, &bytes).unwrap().body, real.body);
}

#[test]
fn single_datagram_message() {
    let small = big_response(9, 1);
    let encoded = small.encode();
    let frags = udp_fragments(&encoded);
    assert_eq!(frags.len(), 1);
    let mut r = UdpResponse::new(9);
    match r.feed(&frags[0]) {
        Feed::Complete(env, bytes) => {
            assert_eq!(Message::decode(env, &bytes).unwrap().body, small.body)
        }
        other => panic!("{other:?}"),
    }
    // A datagram whose declared length disagrees with its size is ignored.
    let mut r = UdpResponse::new(9);
    assert!(matches!(
        r.feed(&encoded[..encoded.len() - 1]),
        Feed::Ignored(_)
    ));
}
