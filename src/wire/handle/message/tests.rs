use proptest::prelude::*;

use super::*;
use crate::wire::handle::vectors::*;

/// Decode, check, re-encode byte for byte.
fn round_trip(hex_text: &str) -> Message {
    let bytes = hex(hex_text);
    let msg = Message::decode_full(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(msg.encode(), bytes, "re-encoding differs");
    msg
}

#[test]
fn resolution_request_vector() {
    let m = round_trip(REQ_HEX);
    assert_eq!((m.envelope.major, m.envelope.minor), (2, 3));
    assert_eq!(m.envelope.suggested_version(), (2, 11));
    assert_eq!(m.envelope.negotiated_version(), (2, 11));
    assert_eq!(m.envelope.request_id, 0x01020304);
    assert_eq!(m.header.op_code, op::RESOLUTION);
    assert_eq!(m.header.op_flag, 0x1900_0000);
    assert!(m.header.has(flag::PUBLIC_ONLY) && m.header.has(flag::RECURSIVE));
    assert_eq!(m.header.site_serial, 0xFFFF);
    assert_eq!(
        m.body,
        Body::Resolution {
            handle: "88.100.1/SN-0001".into(),
            indexes: vec![],
            types: vec![]
        }
    );
    assert_eq!(m.credential, Some(vec![]));
}

#[test]
fn filtered_request_vector() {
    let m = round_trip(REQ2_HEX);
    assert_eq!(
        m.body,
        Body::Resolution {
            handle: "0.NA/88.100.1".into(),
            indexes: vec![1],
            types: vec!["HS_SITE".into(), "HS_SERV".into()],
        }
    );
}

#[test]
fn response_vectors() {
    let m = round_trip(RESP_HEX);
    let Body::Values { handle, values } = &m.body else {
        panic!("{:?}", m.body)
    };
    assert_eq!(handle, "88.100.1/SN-0001");
    assert_eq!(values[0].data_str(), Some("https://example.com/sn/0001"));
    assert_eq!(values[0].timestamp, 0x6400_0000);
    let m = round_trip(NOTFOUND_HEX);
    assert_eq!(m.header.response_code, 100);
    assert_eq!(
        m.body,
        Body::Error {
            message: String::new()
        }
    );
    let m = round_trip(NOT_RESPONSIBLE_301_RESP_HEX);
    assert_eq!(
        m.body,
        Body::Error {
            message: "That prefix doesn't live here".into()
        }
    );
    let m = round_trip(CREATE_SUCCESS_RESP_HEX);
    assert_eq!(
        (m.header.op_code, m.header.response_code, &m.body),
        (100, 1, &Body::Empty)
    );
}

#[test]
fn challenge_vector() {
    let m = round_trip(CHALLENGE_HEX);
    assert_eq!(m.envelope.session_id, 5);
    assert_eq!(m.header.response_code, 402);
    let d = m.digest.as_ref().unwrap();
    assert_eq!(d.hash_type, 3);
    assert_eq!(
        d.digest,
        hex("1f8a3e5b4d99e19a4ac3dd040c66bcd55420aab6d990fbca004d80702f916485")
    );
    assert_eq!(
        m.body,
        Body::Challenge {
            nonce: (0u8..16).collect()
        }
    );
    // The digest covers the request's header+body.
    let req = hex(REQ_HEX);
    let hb = header_and_body(&req[ENVELOPE_LEN..]).unwrap();
    assert_eq!(hb.len(), 24 + 28);
}

#[test]
fn referral_vector_without_envelope() {
    let bytes = hex(PREFIX_REFERRAL_MSG_HEX_NO_ENVELOPE);
    let env = Envelope {
        major: 2,
        minor: 11,
        flags: 0,
        suggested_major: 2,
        suggested_minor: 11,
        session_id: 0,
        request_id: 0,
        sequence: 0,
        message_length: bytes.len() as u32,
    };
    let m = Message::decode(env, &bytes).unwrap();
    assert_eq!(m.header.response_code, 303);
    let Body::Referral { handle, values } = &m.body else {
        panic!()
    };
    assert!(handle.is_empty());
    assert_eq!(values[0].type_name, "HS_SITE.PREFIX");
    assert!(crate::model::SiteInfo::decode(&values[0].data).is_ok());
    assert_eq!(m.encode_message(), bytes);
}

#[test]
fn admin_request_vectors() {
    let m = round_trip(CREATE_HANDLE_REQ_HEX);
    let Body::HandleValues { handle, values } = &m.body else {
        panic!()
    };
    assert_eq!(
        (m.header.op_code, handle.as_str(), values.len()),
        (op::CREATE_HANDLE, "88.100.1/SN-0002", 2)
    );
    let m = round_trip(DELETE_HANDLE_REQ_HEX);
    assert_eq!(
        m.body,
        Body::Handle {
            handle: "88.100.1/SN-0002".into()
        }
    );
    let m = round_trip(ADD_VALUE_REQ_HEX);
    assert_eq!(m.header.op_code, op::ADD_VALUE);
    let m = round_trip(MODIFY_VALUE_REQ_HEX);
    assert_eq!(m.header.op_code, op::MODIFY_VALUE);
    let m = round_trip(REMOVE_VALUE_REQ_HEX);
    assert_eq!(
        m.body,
        Body::RemoveValues {
            handle: "88.100.1/SN-0002".into(),
            indexes: vec![2]
        }
    );
    let m = round_trip(LIST_HANDLES_REQ_HEX);
    assert_eq!(
        (m.header.op_code, &m.body),
        (
            op::LIST_HANDLES,
            &Body::Handle {
                handle: "0.NA/88.100.1".into()
            }
        )
    );
    let m = round_trip(GET_SITE_INFO_REQ_HEX);
    assert_eq!(
        (m.header.op_code, &m.body),
        (op::GET_SITE_INFO, &Body::Handle { handle: "/".into() })
    );
    let m = round_trip(SECKEY_CHALLENGE_ANSWER_REQ_HEX);
    let Body::ChallengeAnswer {
        auth_type,
        identity_handle,
        identity_index,
        signed_response,
    } = &m.body
    else {
        panic!()
    };
    assert_eq!(
        (
            auth_type.as_str(),
            identity_handle.as_str(),
            *identity_index
        ),
        ("HS_SECKEY", "0.NA/88.100.1", 300)
    );
    assert_eq!(signed_response[0], 0x22);
    assert_eq!(m.envelope.session_id, 5);
}

#[test]
fn credential_section_may_be_absent() {
    let mut bytes = hex(REQ_HEX);
    bytes.truncate(bytes.len() - 4);
    let len = (bytes.len() - ENVELOPE_LEN) as u32;
    bytes[16..20].copy_from_slice(&len.to_be_bytes());
    let m = Message::decode_full(&bytes).unwrap();
    assert_eq!(m.credential, None);
    assert_eq!(m.encode(), bytes);
}

#[test]
fn hostile_inputs_are_errors() {
    let good = hex(REQ_HEX);
    // Length over the limit.
    let mut big = good.clone();
    big[16..20].copy_from_slice(&(MAX_MESSAGE_LEN as u32 + 1).to_be_bytes());
    assert!(matches!(
        Message::decode_full(&big),
        Err(WireError::TooLong(_))
    ));
    // Envelope length disagreeing with the bytes.
    let mut short = good.clone();
    short.pop();
    assert!(matches!(
        Message::decode_full(&short),
        Err(WireError::LengthMismatch { .. })
    ));
    // Body length beyond the message.
    let mut overrun = good.clone();
    overrun[ENVELOPE_LEN + 20..ENVELOPE_LEN + 24].copy_from_slice(&1000u32.to_be_bytes());
    assert!(matches!(
        Message::decode_full(&overrun),
        Err(WireError::BodyOverrun { .. })
    ));
    // Unknown request opcode.
    let mut unknown = good.clone();
    unknown[ENVELOPE_LEN..ENVELOPE_LEN + 4].copy_from_slice(&777u32.to_be_bytes());
    assert!(matches!(
        Message::decode_full(&unknown),
        Err(WireError::UnknownOpCode(777))
    ));
    // A huge index count.
    let mut count = good.clone();
    let at = ENVELOPE_LEN + HEADER_LEN + 4 + 16;
    count[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    assert!(Message::decode_full(&count).is_err());
    // Compressed messages are refused.
    let mut cp = good;
    cp[2] |= envelope_flag::COMPRESSED;
    assert!(matches!(
        Message::decode_full(&cp),
        Err(WireError::Unsupported)
    ));
    assert!(Message::decode_full(&[]).is_err());
}

/// Found by `mutated_vectors_never_panic`: the challenge with its response code turned into
/// 302 decodes as a referral without a value list; re-encoding adds the (empty) list.
#[test]
fn lenient_referral_round_trips() {
    let mut bytes = hex(CHALLENGE_HEX);
    bytes[27] = 46;
    let m = Message::decode_full(&bytes).unwrap();
    assert!(matches!(m.body, Body::Referral { .. }), "{m:?}");
    assert!(reencodes_to_itself(&m));
}

/// `m` (decoded from any bytes) encodes to a message that decodes back to `m`, except for the
/// envelope's message length: the decoder accepts shorter forms than the encoder writes (a
/// referral without its value list), so the re-encoded length may differ; encoding is then
/// stable.
fn reencodes_to_itself(m: &Message) -> bool {
    let encoded = m.encode();
    let Ok(mut again) = Message::decode_full(&encoded) else {
        return false;
    };
    let stable = again.encode() == encoded;
    again.envelope.message_length = m.envelope.message_length;
    stable && again == *m
}

proptest! {
    /// Random bytes never panic the decoder; whatever decodes re-encodes to something that
    /// decodes to the same message.
    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = Message::decode_full(&bytes) {
            prop_assert!(reencodes_to_itself(&m));
        }
    }

    /// Mutating one byte of a valid vector never panics, and what decodes round-trips.
    #[test]
    fn mutated_vectors_never_panic(which in 0usize..6, at in 0usize..200, byte in any::<u8>()) {
        let v = [REQ_HEX, RESP_HEX, CHALLENGE_HEX, CREATE_HANDLE_REQ_HEX, REMOVE_VALUE_REQ_HEX, SECKEY_CHALLENGE_ANSWER_REQ_HEX][which];
        let mut bytes = hex(v);
        let at = at % bytes.len();
        bytes[at] = byte;
        if let Ok(m) = Message::decode_full(&bytes) {
            prop_assert!(reencodes_to_itself(&m));
        }
    }

    /// Resolution requests round-trip.
    #[test]
    fn resolution_requests_round_trip(
        handle in "[ -~]{0,60}",
        indexes in prop::collection::vec(any::<u32>(), 0..5),
        types in prop::collection::vec("[A-Z_.]{0,12}", 0..4),
        flags in any::<u32>(),
    ) {
        let m = Message {
            envelope: Envelope { major: 2, minor: 11, flags: 0, suggested_major: 2, suggested_minor: 11, session_id: 1, request_id: 2, sequence: 0, message_length: 0 },
            header: Header { op_code: op::RESOLUTION, response_code: 0, op_flag: flags, site_serial: 7, recursion_count: 1, expiration: 9 },
            digest: None,
            body: Body::Resolution { handle, indexes, types },
            credential: Some(vec![]),
        };
        let bytes = m.encode();
        let mut back = Message::decode_full(&bytes).unwrap();
        back.envelope.message_length = 0;
        prop_assert_eq!(back, m);
    }
}

#[test]
fn legacy_digest_has_no_type_byte() {
    let m = Message {
        envelope: Envelope {
            major: 2,
            minor: 0,
            flags: 0,
            suggested_major: 2,
            suggested_minor: 0,
            session_id: 0,
            request_id: 1,
            sequence: 0,
            message_length: 0,
        },
        header: Header {
            op_code: 1,
            response_code: 100,
            op_flag: flag::RETURN_DIGEST,
            site_serial: 1,
            recursion_count: 0,
            expiration: 0,
        },
        digest: Some(RequestDigest {
            hash_type: 0,
            digest: vec![0xAB; 16],
        }),
        body: Body::Error {
            message: String::new(),
        },
        credential: Some(vec![]),
    };
    let bytes = m.encode();
    let body = &bytes[ENVELOPE_LEN + HEADER_LEN..];
    assert_eq!(&body[..4], &[0, 0, 0, 16]);
    let mut back = Message::decode_full(&bytes).unwrap();
    back.envelope.message_length = 0;
    assert_eq!(back, m);
}

// --- sessions (second vector set) ----------------------------------------------------------

fn round_trip_v2(name: &str) -> Message {
    let bytes = crate::wire::handle::vectors2::v2(name);
    let msg = Message::decode_full(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(msg.encode(), bytes, "{name}: re-encoding differs");
    msg
}

#[test]
fn session_setup_request_vector() {
    use crate::wire::handle::vectors2::v2_hex;
    let m = round_trip_v2("SESSION_SETUP_REQ_HEX");
    assert_eq!(m.header.op_code, op::SESSION_SETUP);
    assert_eq!(m.header.op_flag, 0x5980_0000);
    let Body::SessionSetup {
        mode,
        timeout,
        identity_handle,
        identity_index,
        exchange,
    } = &m.body
    else {
        panic!("{:?}", m.body)
    };
    assert_eq!(
        (*mode, *timeout, identity_handle.as_str(), *identity_index),
        (key_exchange::DH, 86_400, "88.100.1/admin", 300)
    );
    assert_eq!(
        exchange,
        &KeyExchange::PublicKey(v2_hex("/intermediate/SESSION_DH/client_DH_PUB_KEY_hex"))
    );
    let KeyExchange::PublicKey(key) = exchange else {
        unreachable!()
    };
    assert!(matches!(
        crate::model::PublicKey::decode(key),
        Ok(crate::model::PublicKey::Dh { .. })
    ));
}

#[test]
fn session_setup_request_without_the_trailing_bytes() {
    let bytes = crate::wire::handle::vectors2::v2("SESSION_SETUP_REQ_HEX");
    let full = Message::decode_full(&bytes).unwrap();
    // Drop the 2 zero bytes before the credential length: bodyLength and messageLength shrink.
    let mut short = bytes.clone();
    short.drain(bytes.len() - 6..bytes.len() - 4);
    let len = u32::from_be_bytes(short[16..20].try_into().unwrap()) - 2;
    short[16..20].copy_from_slice(&len.to_be_bytes());
    let body = u32::from_be_bytes(short[40..44].try_into().unwrap()) - 2;
    short[40..44].copy_from_slice(&body.to_be_bytes());
    let m = Message::decode_full(&short).unwrap();
    assert_eq!(m.body, full.body);
    // Anything else after the key is refused.
    let mut bad = bytes.clone();
    let at = bytes.len() - 5;
    bad[at] = 1;
    assert!(Message::decode_full(&bad).is_err());
}

#[test]
fn session_setup_answer_vector() {
    use crate::wire::handle::vectors2::v2_hex;
    let m = round_trip_v2("SESSION_SETUP_RESP_HEX");
    assert_eq!(m.envelope.session_id, 0x100);
    assert_eq!(m.header.response_code, 1);
    assert_eq!(m.digest.as_ref().map(|d| d.hash_type), Some(3));
    let Body::SessionSetupAnswer { mode, data } = &m.body else {
        panic!("{:?}", m.body)
    };
    assert_eq!(*mode, key_exchange::DH);
    assert_eq!(&data[..4], &[0, 0, 0, 3]);
    let key = crate::model::PublicKey::decode(&data[4..]).unwrap();
    let crate::model::PublicKey::Dh { y, .. } = key else {
        panic!()
    };
    assert_eq!(y, v2_hex("/intermediate/SESSION_DH/server_public_y_hex"));
    // The HS_SIGNED credential is kept as sent.
    assert_eq!(m.credential.as_ref().map(Vec::len), Some(300));
}

#[test]
fn session_messages_round_trip() {
    for name in [
        "SESSION_ADD_VALUE_REQ_HEX",
        "SESSION_CHALLENGE_HEX",
        "SESSION_CHALLENGE_ANSWER_REQ_HEX",
        "SESSION_ADD_VALUE_RESP_HEX",
        "SESSION_MODIFY_VALUE_REQ_HEX",
        "SESSION_MODIFY_VALUE_RESP_HEX",
        "SESSION_CERT_RESOLUTION_REQ_HEX",
        "SESSION_CERT_RESOLUTION_RESP_HEX",
        "SESSION_TERMINATE_REQ_HEX",
        "SESSION_TERMINATE_RESP_HEX",
        "SESSION_EXPIRED_ADD_VALUE_REQ_HEX",
        "SESSION_TIMEOUT_RESP_HEX",
        "RD_SESSION_SETUP_ERROR_RESP_HEX",
    ] {
        let m = round_trip_v2(name);
        assert_eq!(
            m.envelope.session_id,
            if name.starts_with("RD_") { 0 } else { 0x100 }
        );
    }
}
