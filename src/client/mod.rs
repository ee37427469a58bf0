//! A small blocking client of the native Handle protocol (handle-protocol.md §1–§4, §7): what
//! `idnode resolve` and `idnode admin` use, and what tests and tools can use to talk to any
//! Handle-compatible server (idnode, Handle.Net, the national IDIS nodes).
//!
//! ```text
//! resolve over UDP:  request ─► datagram(s) ─► wait 500 / 1000 / 1500 ms, resending ─► reassemble
//! resolve over TCP:  connect ─► request ─► envelope + message (repeated while CN is set)
//! admin (TCP only):  request ─► 402 challenge {session, nonce, digest of our request}
//!                    check the digest ─► opCode 200 answer (HS_SECKEY / HS_PUBKEY), same session
//!                    ─► the server's answer to the original request (repeated while CN is set)
//! admin batch:       400 session setup (DH) ─► MAC'ed requests; only the first is challenged
//!                    ─► 401 at the end (AdminSession; plain challenge/response as fallback)
//! ```
//!
//! Requests look like the Handle.Net Java client's: protocol 2.11 suggesting 2.11, flags
//! REC|CA|PO (`0x19000000`; PO dropped for authenticated reads), site serial `0xFFFF`, an
//! expiration 12 hours ahead, an empty credential section, and a random positive request id.
//! Responses are checked the way that client checks them: the request id must match, and an
//! expired response is refused (it usually means a clock is wrong).
//!
//! This is a thin blocking driver of [`exchange`](crate::wire::handle::exchange) (sans-IO,
//! shared with the recursor's network edge), which builds requests, reassembles UDP
//! responses, frames TCP messages and checks responses; here are the sockets, the retry
//! schedule, CN continuation, the challenge answer and sessions.
//!
//! Everything the network sends is untrusted: lengths are bounded by the codec's limits,
//! malformed UDP datagrams are ignored (and reported if nothing valid arrives), and nothing
//! panics on bad input.
//!
//! The files: here the client's vocabulary ([`Client`], [`Lookup`], [`AdminRequest`] (the
//! server's own typed request), [`Authenticator`], [`Response`], [`ClientError`]) and the one
//! way a request is made (`request_now`); `resolve` the resolution calls and routing inside a
//! multi-server site; `session` administrative requests, one by challenge/response or many
//! through a Handle.Net session; `io` the blocking UDP and TCP driver of the exchange (retry
//! schedule, CN continuation, answering a challenge); `admin` the `idnode admin batch` line
//! format.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::challenge::{
    seckey_answer_pbkdf2, ChallengeError, PrivateKey, SignatureHash, DEFAULT_PBKDF2_ITERATIONS,
    DEFAULT_PBKDF2_KEY_BITS,
};
use crate::model::{code, types, HandleValue, PREFIX_NA};
use crate::wire::handle::exchange::{new_request, ExchangeError};
use crate::wire::handle::message::{flag, Body, Message, WireError};

pub mod admin;
mod io;
pub mod lookup;
mod resolve;
mod session;

pub use session::{AdminSession, ADMIN_SESSION_TIMEOUT_SECS};

pub use crate::model::Transport;
/// How long a request claims to stay valid (Handle.Net: 12 hours).
pub use crate::wire::handle::exchange::REQUEST_LIFETIME_SECS;

/// Flags of a Handle.Net resolution request: REC | CA | PO.
pub const DEFAULT_FLAGS: u32 = flag::RECURSIVE | flag::CACHE_CERTIFY | flag::PUBLIC_ONLY;
/// Site serial sent when the client knows no HS_SITE (Handle.Net sends -1).
pub use crate::wire::handle::message::UNKNOWN_SITE_SERIAL;
/// Handle.Net's UDP retry scheme: how long to wait after each (re)transmission.
pub const UDP_RETRY_SCHEDULE: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1500),
];
/// Default for [`Client::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most CN-continued messages accepted for one request (50 handles each: 50 million handles).
pub const MAX_CONTINUATION_MESSAGES: usize = 1_000_000;
/// The IANA port of the native protocol (UDP and TCP).
pub const DEFAULT_PORT: u16 = 2641;

/// Response codes this client treats specially.
mod rc {
    pub const SUCCESS: u32 = 1;
    pub const SERVICE_REFERRAL: u32 = 302;
    pub const PREFIX_REFERRAL: u32 = 303;
    pub const AUTHENTICATION_NEEDED: u32 = 402;
}

/// Why a request got no usable answer. A server's *negative* answer (handle not found, not
/// authorized, ...) is not an error: it is a [`Response`] with that response code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, sending or receiving failed (the I/O error is part of the message rather
    /// than a `source()`, so error chains print it once).
    #[error("{server}: {error}")]
    Io {
        server: SocketAddr,
        error: std::io::Error,
    },
    #[error(
        "no answer from {server} within {:.1} s{}",
        .waited.as_secs_f64(),
        note_suffix(.note)
    )]
    Timeout {
        server: SocketAddr,
        waited: Duration,
        /// What was wrong with datagrams that were received but ignored, if any.
        note: Option<String>,
    },
    /// The exchange failed its checks: a malformed or mismatched response, or a request too
    /// large to send ([`ExchangeError`], shared with the recursor).
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("unexpected response: {0}")]
    Unexpected(String),
    #[error(
        "the challenge names a different request (digest mismatch): \
         not answering it (a forged or misrouted challenge?)"
    )]
    DigestMismatch,
    #[error("cannot answer the challenge: {0}")]
    Auth(ChallengeError),
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> ClientError {
        ClientError::Exchange(e.into())
    }
}

impl From<ChallengeError> for ClientError {
    fn from(e: ChallengeError) -> ClientError {
        ClientError::Auth(e)
    }
}

fn note_suffix(note: &Option<String>) -> String {
    match note {
        Some(n) => format!(" ({n})"),
        None => String::new(),
    }
}

/// Which values a resolution asks for: every value of `handle` (no indexes and no types), or
/// the union of those at `indexes` and those of `types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup<'a> {
    pub handle: &'a str,
    pub indexes: &'a [u32],
    pub types: &'a [String],
}

impl<'a> Lookup<'a> {
    /// Every value of `handle`.
    pub fn all(handle: &'a str) -> Lookup<'a> {
        Lookup::new(handle, &[], &[])
    }

    /// The values of `handle` at `indexes` or of `types`.
    pub fn new(handle: &'a str, indexes: &'a [u32], types: &'a [String]) -> Lookup<'a> {
        Lookup {
            handle,
            indexes,
            types,
        }
    }
}

/// An administrative request (always over TCP, always authenticated): the typed request the
/// server decodes ([`wire::handle::request::Admin`](crate::wire::handle::request::Admin)),
/// which also says its body and flags; the client adds Handle.Net's [`DEFAULT_FLAGS`].
pub use crate::wire::handle::request::Admin as AdminRequest;

/// OC_LIST_HANDLES under a prefix: `88.100.1` or its prefix handle `0.NA/88.100.1`.
pub fn list_handles(prefix: &str) -> AdminRequest {
    AdminRequest::List {
        handle: prefix_handle(prefix),
    }
}

/// `88.100.1` → `0.NA/88.100.1`; a prefix handle is kept as written.
fn prefix_handle(prefix: &str) -> String {
    let is_na = prefix
        .get(..PREFIX_NA.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case("0.NA/"));
    if is_na {
        prefix.to_string()
    } else {
        format!("{PREFIX_NA}/{prefix}")
    }
}

/// Who answers challenges, and with what.
#[derive(Clone)]
pub enum Authenticator {
    /// HS_SECKEY: a secret shared with the server (a value of `identity_handle`).
    SecretKey {
        identity_handle: String,
        index: u32,
        secret: Vec<u8>,
    },
    /// HS_PUBKEY: the private half of an HS_PUBKEY value of `identity_handle`.
    PrivateKey {
        identity_handle: String,
        index: u32,
        key: Box<PrivateKey>,
    },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret or the key.
        match self {
            Authenticator::SecretKey {
                identity_handle,
                index,
                ..
            } => write!(f, "SecretKey({index}:{identity_handle})"),
            Authenticator::PrivateKey {
                identity_handle,
                index,
                key,
            } => write!(f, "PrivateKey({index}:{identity_handle}, {key:?})"),
        }
    }
}

impl Authenticator {
    /// `index:handle` of the identity.
    pub fn identity(&self) -> String {
        let (handle, index) = self.parts();
        format!("{index}:{handle}")
    }

    /// The identity's handle and index.
    fn parts(&self) -> (&str, u32) {
        match self {
            Authenticator::SecretKey {
                identity_handle,
                index,
                ..
            }
            | Authenticator::PrivateKey {
                identity_handle,
                index,
                ..
            } => (identity_handle, *index),
        }
    }

    /// The opCode 200 body answering `nonce` for a request whose digest is `digest`.
    /// HS_SECKEY uses the PBKDF2-HMAC-SHA1 form (≥ 2.7) with `salt`.
    fn answer(&self, nonce: &[u8], digest: &[u8], salt: &[u8]) -> Result<Body, ClientError> {
        let (auth_type, signed_response) = match self {
            Authenticator::SecretKey { secret, .. } => (
                types::HS_SECKEY,
                seckey_answer_pbkdf2(
                    secret,
                    nonce,
                    digest,
                    salt,
                    DEFAULT_PBKDF2_ITERATIONS,
                    DEFAULT_PBKDF2_KEY_BITS,
                ),
            ),
            Authenticator::PrivateKey { key, .. } => (
                types::HS_PUBKEY,
                key.try_sign_answer(SignatureHash::Sha256, nonce, digest)?,
            ),
        };
        let (identity_handle, identity_index) = self.parts();
        Ok(Body::ChallengeAnswer {
            auth_type: auth_type.to_string(),
            identity_handle: identity_handle.to_string(),
            identity_index,
            signed_response,
        })
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The Handle response code (1 success, 100 handle not found, 402 authentication needed...).
    pub code: u32,
    /// The handle the answer is about: the one in the body when it has one, else the one asked.
    pub handle: String,
    /// Resolution values (RC 1), or the referral's values (RC 302/303).
    pub values: Vec<HandleValue>,
    /// LIST_HANDLES: the handles of every CN-continued message, in order.
    pub handles: Vec<String>,
    /// The error message of a negative answer (often empty).
    pub message: String,
    /// Create with MINT: the handle the server made.
    pub minted_handle: Option<String>,
    /// The session id of the last message (set by a challenge).
    pub session_id: u32,
    /// Protocol version of the last message.
    pub version: (u8, u8),
    /// opFlag of the last message.
    pub op_flag: u32,
}

impl Response {
    pub fn is_success(&self) -> bool {
        self.code == rc::SUCCESS
    }

    pub fn is_referral(&self) -> bool {
        matches!(self.code, rc::SERVICE_REFERRAL | rc::PREFIX_REFERRAL)
    }

    /// The response code's name, e.g. `HANDLE_NOT_FOUND`.
    pub fn code_name(&self) -> &'static str {
        code::name(self.code)
    }

    fn from_message(m: &Message, asked: &str) -> Response {
        let mut r = Response {
            code: m.header.response_code,
            handle: asked.to_string(),
            values: Vec::new(),
            handles: Vec::new(),
            message: String::new(),
            minted_handle: None,
            session_id: m.envelope.session_id,
            version: (m.envelope.major, m.envelope.minor),
            op_flag: m.header.op_flag,
        };
        r.absorb(m);
        r
    }

    /// Add one (possibly CN-continued) message's body.
    fn absorb(&mut self, m: &Message) {
        self.session_id = m.envelope.session_id;
        self.version = (m.envelope.major, m.envelope.minor);
        self.op_flag = m.header.op_flag;
        match &m.body {
            Body::Values { handle, values } | Body::Referral { handle, values } => {
                if !handle.is_empty() {
                    self.handle.clone_from(handle);
                }
                self.values.extend(values.iter().cloned());
            }
            Body::HandleList { handles } => self.handles.extend(handles.iter().cloned()),
            Body::Error { message } => self.message.clone_from(message),
            Body::MintedHandle { handle } => {
                self.minted_handle = Some(handle.clone());
                self.handle.clone_from(handle);
            }
            Body::Challenge { .. } if self.message.is_empty() => {
                self.message = "authentication needed".to_string();
            }
            _ => {}
        }
    }
}

fn now_unix() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

/// The one way this client makes a request: sent now (a fresh request id, an expiration
/// [`REQUEST_LIFETIME_SECS`] ahead) in session `session_id` (0: none).
fn request_now(session_id: u32, op_code: u32, op_flag: u32, body: Body) -> Message {
    let mut m = new_request(op_code, op_flag, body, u64::from(now_unix()));
    m.envelope.session_id = session_id;
    m
}

/// An administrative request as this client sends it: the wire request's op code, body and
/// flags, on top of [`DEFAULT_FLAGS`].
fn admin_request(request: &AdminRequest, session_id: u32) -> Message {
    request_now(
        session_id,
        request.op_code().code(),
        DEFAULT_FLAGS | request.op_flag(),
        request.body(),
    )
}

/// A blocking client of one server (one request at a time; cheap to clone).
#[derive(Debug, Clone)]
pub struct Client {
    server: SocketAddr,
    timeout: Duration,
}

impl Client {
    /// A client of `server` with [`DEFAULT_TIMEOUT`].
    pub fn new(server: SocketAddr) -> Client {
        Client {
            server,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// UDP: the whole exchange, retries included, ends after at most `timeout` (and after
    /// the 3 s retry schedule anyway). TCP: connecting and each read or write wait at most
    /// `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests;
