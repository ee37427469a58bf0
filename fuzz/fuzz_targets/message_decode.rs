//! `Message::decode_full` on arbitrary bytes must never panic, and whatever it accepts must
//! survive encode → decode unchanged:
//!
//! - the re-decoded message equals the first one, except `envelope.message_length`, which
//!   `encode` recomputes;
//! - encoding is a fixed point (`encode(decode(encode(m))) == encode(m)`);
//! - the encoding reproduces the input byte for byte, apart from the canonicalizations the codec
//!   documents or implies: the header's reserved byte is written as 0, a verification result
//!   byte other than 1 is written as 0, and an empty error body or a referral without a value
//!   list gains its 4-byte length/count (so the message grows by exactly 4 bytes);
//! - a credential section that decodes re-encodes byte for byte.
#![no_main]

use idnode::auth::credential::{self, Credential};
use idnode::wire::handle::message::{header_and_body, ENVELOPE_LEN, HEADER_LEN};
use idnode::wire::handle::{Body, Message};
use libfuzzer_sys::fuzz_target;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(m1) = Message::decode_full(data) else {
        return;
    };
    let e1 = m1.encode();
    let m2 = Message::decode_full(&e1).unwrap_or_else(|e| {
        panic!(
            "re-decoding an encoded message failed: {e}\n  input:   {}\n  encoded: {}\n  message: {m1:?}",
            hex(data),
            hex(&e1)
        )
    });
    assert_eq!(
        m2.envelope.message_length as usize,
        e1.len() - ENVELOPE_LEN,
        "message length in the encoded envelope"
    );
    let mut expected = m1.clone();
    expected.envelope.message_length = m2.envelope.message_length;
    assert_eq!(m2, expected, "decode(encode(m)) != m");
    assert_eq!(m2.encode(), e1, "encoding is not a fixed point");

    // The header+body view (what digests and signatures cover) must lie within the message.
    let message = &e1[ENVELOPE_LEN..];
    let hb = header_and_body(message).expect("header_and_body of an encoded message");
    assert!(hb.len() >= HEADER_LEN && hb.len() <= message.len());

    // A credential section that decodes (HS_SIGNED, HS_MAC) re-encodes byte for byte, and
    // checking it as a MAC never panics.
    if let Some(section) = m1.credential.as_deref() {
        if let Ok(cred) = Credential::decode(section) {
            assert_eq!(
                hex(&cred.encode()),
                hex(section),
                "credential re-encoding differs"
            );
            let _ = credential::verify_mac(&[0u8; 32], &m1.envelope, hb, &cred);
        }
    }

    // Byte-for-byte against the input, modulo the known canonicalizations.
    let grows = match &m1.body {
        Body::Error { message } => message.is_empty() && data.len() + 4 == e1.len(),
        Body::Referral { values, .. } => values.is_empty() && data.len() + 4 == e1.len(),
        // Session setup bodies without Handle.Net's 2 unwritten mode bytes get them back.
        Body::SessionSetup { .. } | Body::SessionSetupAnswer { .. } => data.len() + 2 == e1.len(),
        _ => false,
    };
    if grows {
        return;
    }
    assert_eq!(
        e1.len(),
        data.len(),
        "re-encoding changed the length\n  input:   {}\n  encoded: {}",
        hex(data),
        hex(&e1)
    );
    if matches!(m1.body, Body::VerifyResult { .. }) {
        return;
    }
    let mut canonical = data.to_vec();
    canonical[ENVELOPE_LEN + 15] = 0; // reserved header byte
    assert_eq!(
        hex(&e1),
        hex(&canonical),
        "re-encoding differs from the input (reserved byte zeroed)"
    );
});
