//! Header fields read straight off the bytes of a native message, without decoding it: the
//! hot paths that look at a field or two before (or instead of) a full decode use it — the
//! UDP engine's replay cache and rate-limit slip, the dispatcher's "is this a response?", the
//! TCP front end's choice of thread, the load generator matching answers to queries. One set
//! of offsets (handle-protocol.md §2.1 envelope, §2.2 header), so no caller counts bytes.
//!
//! ```text
//! framed:   envelope(20) ─┬─ message: header(24) body(bodyLength) [credential]
//!           0  major minor flags|sugMajor sugMinor   4 sessionId   8 requestId
//!           12 sequence   16 messageLength
//!           20 opCode  24 responseCode  28 opFlag  32 siteSerial  34 recursionCount
//!           36 expiration  40 bodyLength  44 body
//! ```
//!
//! [`Framed`] reads a message with its envelope in front (a UDP datagram, a TCP frame);
//! [`Message`] reads the message after the envelope (what `message::Message::decode` takes).
//! Every reader returns `None` when the bytes are too short; nothing here panics. Pure: it
//! sits in `wire` beside the codec whose layout it mirrors.

use std::ops::Range;

use super::message::{envelope_flag, ENVELOPE_LEN};

/// Byte ranges of the fields in a framed message (envelope first), for the readers here and
/// for callers that patch a field in place (a replayed answer's request id and expiration).
pub mod at {
    use std::ops::Range;

    /// The envelope's flags byte (CP/EC/TC above the suggested major version).
    pub const ENVELOPE_FLAGS: usize = 2;
    pub const SESSION_ID: Range<usize> = 4..8;
    pub const REQUEST_ID: Range<usize> = 8..12;
    pub const SEQUENCE: Range<usize> = 12..16;
    pub const MESSAGE_LENGTH: Range<usize> = 16..20;
    pub const OP_CODE: Range<usize> = 20..24;
    pub const RESPONSE_CODE: Range<usize> = 24..28;
    pub const OP_FLAG: Range<usize> = 28..32;
    pub const SITE_SERIAL: Range<usize> = 32..34;
    pub const RECURSION_COUNT: usize = 34;
    pub const EXPIRATION: Range<usize> = 36..40;
    pub const BODY_LENGTH: Range<usize> = 40..44;
    /// Where the body starts.
    pub const BODY: usize = 44;
}

/// The big-endian `u32` at `range` (4 bytes), if `bytes` reach that far.
pub fn u32_at(bytes: &[u8], range: Range<usize>) -> Option<u32> {
    let b: [u8; 4] = bytes.get(range)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// A field's range within the message, after the envelope.
const fn unframed(r: Range<usize>) -> Range<usize> {
    r.start - ENVELOPE_LEN..r.end - ENVELOPE_LEN
}

/// A message with its envelope in front, as it travels.
#[derive(Debug, Clone, Copy)]
pub struct Framed<'a>(pub &'a [u8]);

impl<'a> Framed<'a> {
    /// The envelope's CP/EC/TC bits ([`envelope_flag`]).
    pub fn envelope_flags(self) -> Option<u8> {
        self.0.get(at::ENVELOPE_FLAGS).map(|b| b & 0xFC)
    }

    /// Whether the envelope marks the message encrypted (a session's).
    pub fn is_encrypted(self) -> Option<bool> {
        self.envelope_flags()
            .map(|f| f & envelope_flag::ENCRYPTED != 0)
    }

    pub fn session_id(self) -> Option<u32> {
        u32_at(self.0, at::SESSION_ID)
    }

    pub fn request_id(self) -> Option<u32> {
        u32_at(self.0, at::REQUEST_ID)
    }

    /// The UDP fragment number (0: the first, or the only one).
    pub fn sequence(self) -> Option<u32> {
        u32_at(self.0, at::SEQUENCE)
    }

    /// The length of the whole message after the envelope, as declared.
    pub fn message_length(self) -> Option<u32> {
        u32_at(self.0, at::MESSAGE_LENGTH)
    }

    /// Whether this holds one whole message: fragment 0, declaring exactly the bytes after
    /// its envelope.
    pub fn is_single(self) -> bool {
        self.sequence() == Some(0)
            && self
                .message_length()
                .is_some_and(|l| l as usize == self.0.len().saturating_sub(ENVELOPE_LEN))
    }

    /// The message after the envelope (empty when there is none).
    pub fn message(self) -> Message<'a> {
        Message(self.0.get(ENVELOPE_LEN..).unwrap_or(&[]))
    }

    pub fn op_code(self) -> Option<u32> {
        self.message().op_code()
    }

    pub fn response_code(self) -> Option<u32> {
        self.message().response_code()
    }

    pub fn op_flag(self) -> Option<u32> {
        self.message().op_flag()
    }

    pub fn expiration(self) -> Option<u32> {
        self.message().expiration()
    }

    pub fn body_length(self) -> Option<u32> {
        self.message().body_length()
    }
}

/// The message after its envelope: header, body, credential.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a>(pub &'a [u8]);

impl Message<'_> {
    pub fn op_code(self) -> Option<u32> {
        u32_at(self.0, unframed(at::OP_CODE))
    }

    /// 0 in requests.
    pub fn response_code(self) -> Option<u32> {
        u32_at(self.0, unframed(at::RESPONSE_CODE))
    }

    pub fn op_flag(self) -> Option<u32> {
        u32_at(self.0, unframed(at::OP_FLAG))
    }

    pub fn recursion_count(self) -> Option<u8> {
        self.0.get(at::RECURSION_COUNT - ENVELOPE_LEN).copied()
    }

    pub fn expiration(self) -> Option<u32> {
        u32_at(self.0, unframed(at::EXPIRATION))
    }

    pub fn body_length(self) -> Option<u32> {
        u32_at(self.0, unframed(at::BODY_LENGTH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handle::message::{flag, op, Body, Message as Decoded};

    fn request() -> Decoded {
        let mut m = Decoded::request(
            op::RESOLUTION,
            flag::PUBLIC_ONLY | flag::RECURSIVE,
            Body::Resolution {
                handle: "88.100.1/SN-1".into(),
                indexes: vec![1],
                types: vec!["URL".into()],
            },
        );
        m.envelope.session_id = 0x0102_0304;
        m.envelope.request_id = 0x0A0B_0C0D;
        m.envelope.flags = envelope_flag::ENCRYPTED;
        m.header.response_code = 100;
        m.header.recursion_count = 3;
        m.header.expiration = 0x6500_0000;
        m
    }

    #[test]
    fn fields_agree_with_the_codec() {
        let m = request();
        let bytes = m.encode();
        let f = Framed(&bytes);
        assert_eq!(f.session_id(), Some(m.envelope.session_id));
        assert_eq!(f.request_id(), Some(m.envelope.request_id));
        assert_eq!(f.sequence(), Some(0));
        assert_eq!(
            f.message_length(),
            Some((bytes.len() - ENVELOPE_LEN) as u32)
        );
        assert!(f.is_single());
        assert_eq!(f.is_encrypted(), Some(true));
        assert_eq!(f.envelope_flags(), Some(envelope_flag::ENCRYPTED));
        assert_eq!(f.op_code(), Some(op::RESOLUTION));
        assert_eq!(f.response_code(), Some(100));
        assert_eq!(f.op_flag(), Some(m.header.op_flag));
        assert_eq!(f.expiration(), Some(0x6500_0000));
        assert_eq!(f.message().recursion_count(), Some(3));
        let body_len = f.body_length().unwrap() as usize;
        // The credential section (an empty one: its 4-byte length) follows the body.
        assert_eq!(bytes.len(), at::BODY + body_len + 4);
        let message = Message(&bytes[ENVELOPE_LEN..]);
        assert_eq!(message.op_code(), f.op_code());
        assert_eq!(message.expiration(), f.expiration());
    }

    #[test]
    fn short_bytes_read_as_none() {
        let bytes = request().encode();
        for n in 0..at::BODY {
            let f = Framed(&bytes[..n]);
            assert_eq!(f.request_id().is_some(), n >= at::REQUEST_ID.end);
            assert_eq!(f.response_code().is_some(), n >= at::RESPONSE_CODE.end);
            assert_eq!(f.body_length().is_some(), n >= at::BODY_LENGTH.end);
            assert!(!f.is_single());
        }
        assert_eq!(Message(&[]).op_code(), None);
        assert_eq!(Message(&[]).recursion_count(), None);
    }
}
