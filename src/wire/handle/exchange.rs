//! One request/response exchange of the native protocol with one server, as the asking side
//! sees it, without the I/O (quinn-proto's split): building the request, putting it into UDP
//! datagrams, taking the response off the wire (UDP reassembly by request id, TCP framing),
//! and the checks every response passes. Two drivers do the I/O and call this: the blocking
//! [`client`](crate::client) behind `idnode resolve` / `idnode admin`, and the recursor's
//! tokio `server::upstream::NetworkUpstream`. Both report a failed exchange as one
//! [`ExchangeError`].
//!
//! ```text
//! new_request / build_request ─► encode_request (TCP) | udp_datagrams (UDP) ─► driver sends
//! driver receives ─► UdpResponse::feed (datagrams) | TcpFrame (a byte stream) ─► Message
//!   ─► check_response: our request id, a response, not expired
//!      check_resolution_answer: also the operation asked, the body its code calls for
//! ```
//!
//! Requests look like the Handle.Net Java client's: protocol 2.11 suggesting 2.11, site
//! serial `0xFFFF`, an expiration [`REQUEST_LIFETIME_SECS`] ahead, an empty credential
//! section, and a random positive request id. Time is passed in (`now`, unix seconds); the
//! only state is a reassembly buffer. Every byte from the network is hostile: lengths are
//! capped by the codec before anything is allocated, and nothing here panics.

use rand::Rng;

use super::fragment::{udp_fragments, FragmentError, Fragments};
use super::message::{
    envelope_flag, Body, Envelope, Message, WireError, ENVELOPE_LEN, MAX_MESSAGE_LEN, OUR_VERSION,
    UDP_CHUNK,
};
use crate::model::ResponseCode;

/// How long a request claims to stay valid (Handle.Net: 12 hours).
pub const REQUEST_LIFETIME_SECS: u32 = 43_200;

/// Why one exchange with one server failed. A server's *negative* answer (handle not found,
/// not authorized, ...) is not an error: it is a response with that code.
///
/// The checks and the codecs here produce every variant but [`Timeout`](Self::Timeout) and
/// [`Io`](Self::Io), which the drivers report for their sockets (the blocking client has
/// its own, richer `ClientError::Io` / `ClientError::Timeout` for those).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error("timed out")]
    Timeout,
    #[error("I/O error: {0}")]
    Io(String),
    /// Bytes that are not a native message (or not one we can decode).
    #[error("malformed response: {0}")]
    Malformed(String),
    /// A UDP datagram that does not fit the response being reassembled.
    #[error("{0}")]
    Fragment(FragmentError),
    #[error("the response carries request id {got}, not {expected}")]
    WrongRequestId { expected: u32, got: u32 },
    #[error("a request (opCode {0}) instead of a response")]
    NotAResponse(u32),
    #[error("a response to opCode {got} instead of {expected}")]
    WrongOperation { expected: u32, got: u32 },
    #[error(
        "the response expired at unix time {expiration} (now {now}); \
         is the client's or the server's clock wrong?"
    )]
    Expired { expiration: u32, now: u64 },
    #[error("response code {0} with a body that does not belong to it")]
    BodyMismatch(u32),
    #[error("continued message with response code {then} after {first}")]
    ContinuedCode { first: u32, then: u32 },
    #[error("request of {0} bytes exceeds the protocol's {MAX_MESSAGE_LEN}-byte limit")]
    RequestTooLarge(usize),
}

impl From<WireError> for ExchangeError {
    fn from(e: WireError) -> ExchangeError {
        ExchangeError::Malformed(e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// A random request id in 1..=2³¹−1 (Java's `abs(random)`: positive as a signed int, and
/// never 0).
pub fn new_request_id() -> u32 {
    rand::thread_rng().gen_range(1..=i32::MAX as u32)
}

/// The expiration a request sent at `now` (unix seconds) carries.
pub fn expiration(now: u64) -> u32 {
    now.saturating_add(u64::from(REQUEST_LIFETIME_SECS))
        .min(u64::from(u32::MAX)) as u32
}

/// A request message with everything explicit (the client's tests pin it against the
/// reference bytes).
pub fn build_request(
    version: (u8, u8),
    session_id: u32,
    request_id: u32,
    expiration: u32,
    op_code: u32,
    op_flag: u32,
    body: Body,
) -> Message {
    let mut m = Message::request(op_code, op_flag, body);
    (m.envelope.major, m.envelope.minor) = version;
    m.envelope.session_id = session_id;
    m.envelope.request_id = request_id;
    m.header.expiration = expiration;
    m
}

/// A request outside any session, sent at `now`: version 2.11, a fresh request id.
pub fn new_request(op_code: u32, op_flag: u32, body: Body, now: u64) -> Message {
    build_request(
        OUR_VERSION,
        0,
        new_request_id(),
        expiration(now),
        op_code,
        op_flag,
        body,
    )
}

/// Encode a request (envelope included), refusing what no server would accept.
pub fn encode_request(m: &Message) -> Result<Vec<u8>, ExchangeError> {
    let encoded = m.encode();
    let len = encoded.len() - ENVELOPE_LEN;
    if len > MAX_MESSAGE_LEN {
        return Err(ExchangeError::RequestTooLarge(len));
    }
    Ok(encoded)
}

/// The datagrams of a request sent over UDP: 492-byte fragments, the envelope marked
/// truncated when there are several (as Handle.Net marks multi-datagram requests).
pub fn udp_datagrams(request: &Message) -> Result<Vec<Vec<u8>>, ExchangeError> {
    let mut request = request.clone();
    if encode_request(&request)?.len() - ENVELOPE_LEN > UDP_CHUNK {
        request.envelope.flags |= envelope_flag::TRUNCATED;
    }
    Ok(udp_fragments(&encode_request(&request)?))
}

// ---------------------------------------------------------------------------------------------
// Responses off the wire

/// What [`UdpResponse::feed`] made of one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    /// Not part of this response: why (no valid envelope, another request id, a fragment
    /// that does not fit or came twice). The driver goes on waiting; the reason explains a
    /// timeout.
    Ignored(ExchangeError),
    /// Stored; more datagrams are missing.
    Pending,
    /// All datagrams are in: the envelope (sequence 0) and the message bytes.
    Complete(Envelope, Vec<u8>),
}

/// Collects the datagrams of the response to one request: those of other requests or with
/// bad envelopes are ignored (with the reason), the rest go to a [`Fragments`] assembler,
/// which checks each size against the declared length before copying anything.
#[derive(Debug)]
pub struct UdpResponse {
    request_id: u32,
    fragments: Fragments,
}

impl UdpResponse {
    pub fn new(request_id: u32) -> UdpResponse {
        UdpResponse {
            request_id,
            fragments: Fragments::new(),
        }
    }

    pub fn feed(&mut self, datagram: &[u8]) -> Feed {
        let Some(head) = datagram.get(..ENVELOPE_LEN) else {
            return Feed::Ignored(ExchangeError::Malformed(format!(
                "{}-byte datagram is shorter than an envelope",
                datagram.len()
            )));
        };
        let envelope = match Envelope::decode(head) {
            Ok(e) => e,
            Err(e) => return Feed::Ignored(ExchangeError::Malformed(format!("bad envelope: {e}"))),
        };
        if envelope.request_id != self.request_id {
            return Feed::Ignored(ExchangeError::WrongRequestId {
                expected: self.request_id,
                got: envelope.request_id,
            });
        }
        match self.fragments.offer(&envelope, &datagram[ENVELOPE_LEN..]) {
            Ok(Some((envelope, message))) => Feed::Complete(envelope, message),
            Ok(None) => Feed::Pending,
            Err(e) => Feed::Ignored(ExchangeError::Fragment(e)),
        }
    }
}

/// Reads one message off a TCP byte stream (mini-redis framing: "need more bytes" apart from
/// "invalid"): first the 20-byte envelope, then exactly the bytes it declares, at most
/// [`MAX_MESSAGE_LEN`] (checked before the buffer is allocated). The driver reads exactly
/// `unfilled().len()` bytes into [`unfilled`](Self::unfilled) (a `read_exact`, blocking or
/// async) and calls [`filled`](Self::filled) until it returns the message; the frame is then
/// ready for the next one (CN continuations).
#[derive(Debug, Default)]
pub struct TcpFrame {
    head: [u8; ENVELOPE_LEN],
    envelope: Option<Envelope>,
    message: Vec<u8>,
}

impl TcpFrame {
    pub fn new() -> TcpFrame {
        TcpFrame::default()
    }

    /// Where the next bytes go: the envelope's 20, then the message's (possibly none).
    pub fn unfilled(&mut self) -> &mut [u8] {
        match self.envelope {
            None => &mut self.head,
            Some(_) => &mut self.message,
        }
    }

    /// After [`unfilled`](Self::unfilled) was filled completely: `Ok(None)` wants the next
    /// part, `Ok(Some(m))` is the message; an error means the stream cannot be read on.
    pub fn filled(&mut self) -> Result<Option<Message>, ExchangeError> {
        match self.envelope.take() {
            None => {
                let envelope = Envelope::decode(&self.head)
                    .map_err(|e| ExchangeError::Malformed(format!("envelope: {e}")))?;
                self.message = vec![0u8; envelope.message_length as usize];
                self.envelope = Some(envelope);
                Ok(None)
            }
            Some(envelope) => {
                let message = std::mem::take(&mut self.message);
                Ok(Some(Message::decode(envelope, &message)?))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

/// The checks every response passes (Handle.Net's client makes them too): a response (not a
/// request), to our request id, not expired at `now` (unix seconds; an expired answer usually
/// means a clock is wrong).
pub fn check_response(m: &Message, request_id: u32, now: u64) -> Result<(), ExchangeError> {
    check_addressed(m, request_id)?;
    check_fresh(m, now)
}

/// What a response to a resolution `request` must be to be relayed (the recursor's rule):
/// [`check_response`], and an answer to the same operation with the body its code calls for
/// (values for 1, a referral for 302/303, a challenge for 402, an error message for any).
pub fn check_resolution_answer(
    request: &Message,
    m: &Message,
    now: u64,
) -> Result<(), ExchangeError> {
    check_addressed(m, request.envelope.request_id)?;
    if m.header.op_code != request.header.op_code {
        return Err(ExchangeError::WrongOperation {
            expected: request.header.op_code,
            got: m.header.op_code,
        });
    }
    check_fresh(m, now)?;
    use ResponseCode as R;
    let body_fits = match (ResponseCode::from_u32(m.header.response_code), &m.body) {
        (Some(R::Success), Body::Values { .. }) => true,
        (Some(R::Success), _) => false,
        (Some(R::ServiceReferral | R::PrefixReferral), Body::Referral { .. }) => true,
        (Some(R::ServiceReferral | R::PrefixReferral), _) => false,
        (Some(R::AuthenticationNeeded), Body::Challenge { .. }) => true,
        (_, Body::Error { .. }) => true,
        _ => false,
    };
    if !body_fits {
        return Err(ExchangeError::BodyMismatch(m.header.response_code));
    }
    Ok(())
}

/// A CN-continued message must keep the first message's response code.
pub fn check_continuation(first_code: u32, next: &Message) -> Result<(), ExchangeError> {
    if next.header.response_code != first_code {
        return Err(ExchangeError::ContinuedCode {
            first: first_code,
            then: next.header.response_code,
        });
    }
    Ok(())
}

/// The message carries our request id.
pub fn check_request_id(m: &Message, request_id: u32) -> Result<(), ExchangeError> {
    if m.envelope.request_id != request_id {
        return Err(ExchangeError::WrongRequestId {
            expected: request_id,
            got: m.envelope.request_id,
        });
    }
    Ok(())
}

/// Our request id, and a response.
fn check_addressed(m: &Message, request_id: u32) -> Result<(), ExchangeError> {
    check_request_id(m, request_id)?;
    if m.header.is_request() {
        return Err(ExchangeError::NotAResponse(m.header.op_code));
    }
    Ok(())
}

fn check_fresh(m: &Message, now: u64) -> Result<(), ExchangeError> {
    if u64::from(m.header.expiration) < now {
        return Err(ExchangeError::Expired {
            expiration: m.header.expiration,
            now,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
