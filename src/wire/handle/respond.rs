//! Building the answers to one native request: a [`Responder`] is made once per request from
//! what every answer takes from it (envelope, header, the header+body bytes its RD digest
//! covers, the negotiated version) and from the node (site serial, expiration), so an answer
//! reads `r.error(code, text)` or `r.ok(body)`.
//!
//! The rules every answer follows live here, in one place: it is sent at the negotiated
//! version with ours suggested, copies the request's echoed flags and sets AUTHORITATIVE and
//! REC, carries the request digest when RD asks for it (always on RC 402), writes 202 as 201
//! before 2.5, answers "not found" with an empty message (as Handle.Net does), sets the ID-SDK's
//! trusted-result bit for this node's own data, and lists go out [`LIST_PER_MESSAGE`] handles
//! a message with CN on all but the last. Pure: the caller passes the expiration in.

use super::digest::request_digest;
use super::message::{flag, op, Body, Envelope, Header, Message, RequestDigest, OUR_VERSION};
use crate::model::{HandleValue, ResponseCode};

/// Handles per LIST_HANDLES message (Handle.Net sends 50 per message, CN on all but the last).
pub const LIST_PER_MESSAGE: usize = 50;

/// The answers to one request.
#[derive(Debug, Clone, Copy)]
pub struct Responder<'a> {
    envelope: Envelope,
    header: Header,
    request_bytes: Option<&'a [u8]>,
    version: (u8, u8),
    site_serial: u16,
    expiration: u32,
}

impl<'a> Responder<'a> {
    /// Answers to the request of `envelope` and `header`, whose encoded header+body are
    /// `header_and_body` (`None` when they cannot be found: no RD digest then), from a node
    /// with HS_SITE serial `site_serial`, expiring at `expiration` (unix seconds).
    pub fn new(
        envelope: &Envelope,
        header: &Header,
        header_and_body: Option<&'a [u8]>,
        site_serial: u16,
        expiration: u32,
    ) -> Responder<'a> {
        Responder {
            envelope: *envelope,
            header: *header,
            request_bytes: header_and_body,
            version: envelope.negotiated_version(),
            site_serial,
            expiration,
        }
    }

    /// The request's envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The request's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The request's header+body as received.
    pub fn request_bytes(&self) -> Option<&'a [u8]> {
        self.request_bytes
    }

    /// The version answers are sent at.
    pub fn version(&self) -> (u8, u8) {
        self.version
    }

    /// The same answers under another session id (a session setup's new session, a
    /// challenge's id).
    pub fn in_session(&self, session_id: u32) -> Responder<'a> {
        let mut r = *self;
        r.envelope.session_id = session_id;
        r
    }

    /// An answer with `code` and `body`.
    pub fn respond(&self, code: ResponseCode, body: Body) -> Message {
        let version = self.version;
        let mut rc = code.code();
        // Before 2.5, 202 did not exist on the wire: Handle.Net writes it as 201.
        if version < (2, 5) && code == ResponseCode::InvalidValue {
            rc = ResponseCode::ValueAlreadyExists.code();
        }
        let forced_digest = code == ResponseCode::AuthenticationNeeded;
        let wants_digest = forced_digest || self.header.has(flag::RETURN_DIGEST);
        let digest = match (wants_digest, self.request_bytes) {
            (true, Some(hb)) => {
                let (hash_type, digest) = request_digest(version.0, version.1, hb);
                Some(RequestDigest { hash_type, digest })
            }
            _ => None,
        };
        // REC is an answer's own default in Handle.Net (not copied from the request).
        let mut op_flag =
            (self.header.op_flag & flag::ECHOED) | flag::AUTHORITATIVE | flag::RECURSIVE;
        if digest.is_some() {
            op_flag |= flag::RETURN_DIGEST;
        } else {
            op_flag &= !flag::RETURN_DIGEST;
        }
        flag::set_trusted_result(&mut op_flag, own_data(self.header.op_code, code));
        Message {
            envelope: Envelope {
                major: version.0,
                minor: version.1,
                flags: 0,
                suggested_major: OUR_VERSION.0,
                suggested_minor: OUR_VERSION.1,
                session_id: self.envelope.session_id,
                request_id: self.envelope.request_id,
                sequence: 0,
                message_length: 0,
            },
            header: Header {
                op_code: self.header.op_code,
                response_code: rc,
                op_flag,
                site_serial: self.site_serial,
                recursion_count: self.header.recursion_count,
                expiration: self.expiration,
            },
            digest,
            body,
            credential: Some(Vec::new()),
        }
    }

    /// RC 1 with `body`.
    pub fn ok(&self, body: Body) -> Message {
        self.respond(ResponseCode::Success, body)
    }

    /// An error answer: `code` and `message` (none for "not found": Handle.Net answers it
    /// with an empty message, and clients print the code).
    pub fn error(&self, code: ResponseCode, message: &str) -> Message {
        let message = if code == ResponseCode::HandleNotFound {
            ""
        } else {
            message
        };
        self.respond(
            code,
            Body::Error {
                message: message.to_string(),
            },
        )
    }

    /// A refused request: a referral (302, 303) carries its `referral` values, any other
    /// code is an [`Responder::error`] with `message`.
    pub fn refusal(&self, code: ResponseCode, message: &str, referral: &[HandleValue]) -> Message {
        if matches!(
            code,
            ResponseCode::PrefixReferral | ResponseCode::ServiceReferral
        ) {
            return self.respond(
                code,
                Body::Referral {
                    handle: String::new(),
                    values: referral.to_vec(),
                },
            );
        }
        self.error(code, message)
    }

    /// RC 402: the challenge's `nonce` under `session_id`, with the request `digest` the
    /// answer must sign.
    pub fn challenge(&self, session_id: u32, nonce: &[u8], digest: RequestDigest) -> Message {
        let mut m = self.in_session(session_id).respond(
            ResponseCode::AuthenticationNeeded,
            Body::Challenge {
                nonce: nonce.to_vec(),
            },
        );
        m.digest = Some(digest);
        m
    }

    /// A list of handles as messages of at most [`LIST_PER_MESSAGE`], CN on all but the last
    /// (one empty message for an empty list).
    pub fn handle_list(&self, handles: Vec<String>) -> Vec<Message> {
        let chunks: Vec<Vec<String>> = if handles.is_empty() {
            vec![Vec::new()]
        } else {
            handles
                .chunks(LIST_PER_MESSAGE)
                .map(<[String]>::to_vec)
                .collect()
        };
        let last = chunks.len() - 1;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, handles)| {
                let mut m = self.ok(Body::HandleList { handles });
                if i < last {
                    m.header.op_flag |= flag::CONTINUOUS;
                }
                m
            })
            .collect()
    }
}

/// Whether an answer is this node's own data for the ID-SDK's trusted query: resolutions and
/// site information answered from the registry (values, or their authoritative absence).
/// Answers relayed from upstream clear the bit again (`server::native::sdk::mark_relayed`).
fn own_data(op_code: u32, code: ResponseCode) -> bool {
    matches!(op_code, op::RESOLUTION | op::GET_SITE_INFO)
        && matches!(
            code,
            ResponseCode::Success | ResponseCode::HandleNotFound | ResponseCode::ValuesNotFound
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handle::message::header_and_body;

    fn request(op_code: u32, op_flag: u32, version: (u8, u8)) -> (Message, Vec<u8>) {
        let mut m = Message::request(
            op_code,
            op_flag,
            Body::Resolution {
                handle: "88.100.1/x".into(),
                indexes: Vec::new(),
                types: Vec::new(),
            },
        );
        (m.envelope.major, m.envelope.minor) = version;
        (m.envelope.suggested_major, m.envelope.suggested_minor) = version;
        m.envelope.request_id = 7;
        let bytes = m.encode_message();
        (m, header_and_body(&bytes).unwrap().to_vec())
    }

    #[test]
    fn answers_echo_the_request_and_stamp_the_node() {
        let (m, hb) = request(
            op::RESOLUTION,
            flag::PUBLIC_ONLY | flag::KEEP_ALIVE,
            (2, 11),
        );
        let r = Responder::new(&m.envelope, &m.header, Some(&hb), 9, 1234);
        let a = r.error(ResponseCode::HandleNotFound, "ignored");
        assert_eq!(a.envelope.request_id, 7);
        assert_eq!((a.header.site_serial, a.header.expiration), (9, 1234));
        assert!(a.header.has(flag::PUBLIC_ONLY) && !a.header.has(flag::KEEP_ALIVE));
        assert!(a.header.has(flag::AUTHORITATIVE) && a.header.has(flag::RECURSIVE));
        assert_eq!(a.body, Body::Error { message: "".into() });
        assert_eq!(a.digest, None);
    }

    #[test]
    fn the_digest_comes_with_rd_and_always_with_a_challenge() {
        let (m, hb) = request(op::RESOLUTION, flag::RETURN_DIGEST, (2, 11));
        let r = Responder::new(&m.envelope, &m.header, Some(&hb), 1, 0);
        let expected = request_digest(2, 11, &hb);
        let d = r.ok(Body::Empty).digest.unwrap();
        assert_eq!((d.hash_type, d.digest), expected);
        let (m, hb) = request(op::RESOLUTION, 0, (2, 11));
        let r = Responder::new(&m.envelope, &m.header, Some(&hb), 1, 0);
        assert_eq!(r.ok(Body::Empty).digest, None);
        let c = r.respond(ResponseCode::AuthenticationNeeded, Body::Empty);
        assert!(c.header.has(flag::RETURN_DIGEST));
        assert_eq!(
            c.digest.map(|d| d.digest),
            Some(request_digest(2, 11, &hb).1)
        );
        // Without the request's bytes there is nothing to digest.
        let r = Responder::new(&m.envelope, &m.header, None, 1, 0);
        assert!(!r
            .respond(ResponseCode::AuthenticationNeeded, Body::Empty)
            .header
            .has(flag::RETURN_DIGEST));
    }

    #[test]
    fn before_2_5_invalid_value_is_written_as_201() {
        let (m, hb) = request(op::ADD_VALUE, 0, (2, 4));
        let r = Responder::new(&m.envelope, &m.header, Some(&hb), 1, 0);
        let a = r.error(ResponseCode::InvalidValue, "bad");
        assert_eq!(
            a.header.response_code,
            ResponseCode::ValueAlreadyExists.code()
        );
        let (m, hb) = request(op::ADD_VALUE, 0, (2, 5));
        let r = Responder::new(&m.envelope, &m.header, Some(&hb), 1, 0);
        let a = r.error(ResponseCode::InvalidValue, "bad");
        assert_eq!(a.header.response_code, ResponseCode::InvalidValue.code());
    }

    #[test]
    fn referrals_carry_values_and_other_refusals_a_message() {
        let (m, hb) = request(op::RESOLUTION, 0, (2, 11));
        let r = Responder::new(&m.envelope, &m.header, Some(&hb), 1, 0);
        let v = vec![HandleValue::new(1, "HS_SITE.PREFIX", "x")];
        let a = r.refusal(ResponseCode::PrefixReferral, "unused", &v);
        assert_eq!(
            a.body,
            Body::Referral {
                handle: String::new(),
                values: v.clone()
            }
        );
        let a = r.refusal(ResponseCode::ServerNotResponsible, "elsewhere", &v);
        assert_eq!(
            a.body,
            Body::Error {
                message: "elsewhere".into()
            }
        );
    }

    #[test]
    fn lists_go_out_fifty_a_message_with_cn_on_all_but_the_last() {
        let (m, hb) = request(op::LIST_HANDLES, 0, (2, 11));
        let r = Responder::new(&m.envelope, &m.header, Some(&hb), 1, 0);
        let handles: Vec<String> = (0..101).map(|i| format!("88.100.1/{i}")).collect();
        let out = r.handle_list(handles);
        let cn: Vec<bool> = out.iter().map(|m| m.header.has(flag::CONTINUOUS)).collect();
        assert_eq!(cn, [true, true, false]);
        assert_eq!(r.handle_list(Vec::new()).len(), 1);
    }
}
