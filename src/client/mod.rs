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

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::auth::challenge::{
    digest_of_type, seckey_answer_pbkdf2, ChallengeError, PrivateKey, SignatureHash,
    DEFAULT_PBKDF2_ITERATIONS, DEFAULT_PBKDF2_KEY_BITS, DEFAULT_PBKDF2_SALT_LEN,
};
use crate::model::SiteInfo;
use crate::model::{code, types, HandleValue, PREFIX_NA};
use crate::wire::handle::exchange::{
    build_request, check_continuation, check_response, encode_request, expiration, new_request_id,
    udp_datagrams, ExchangeError, Feed, TcpFrame, UdpResponse,
};
use crate::wire::handle::message::{
    flag, header_and_body, key_exchange, op, Body, KeyExchange, Message, WireError, ENVELOPE_LEN,
    OUR_VERSION,
};

pub use crate::model::Transport;
/// How long a request claims to stay valid (Handle.Net: 12 hours).
pub use crate::wire::handle::exchange::REQUEST_LIFETIME_SECS;

pub mod admin;

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
        error: io::Error,
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

/// An administrative request (always over TCP, always authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    /// OC_CREATE_HANDLE; `overwrite` sets the OVRW flag (replace an existing record).
    Create {
        handle: String,
        values: Vec<HandleValue>,
        overwrite: bool,
    },
    /// OC_ADD_VALUE; `overwrite` replaces values whose index exists.
    AddValues {
        handle: String,
        values: Vec<HandleValue>,
        overwrite: bool,
    },
    /// OC_MODIFY_VALUE.
    ModifyValues {
        handle: String,
        values: Vec<HandleValue>,
    },
    /// OC_REMOVE_VALUE.
    RemoveValues { handle: String, indexes: Vec<u32> },
    /// OC_DELETE_HANDLE.
    Delete { handle: String },
    /// OC_LIST_HANDLES under a prefix: `88.100.1` or its prefix handle `0.NA/88.100.1`.
    ListHandles { prefix: String },
}

impl AdminRequest {
    fn op_code(&self) -> u32 {
        match self {
            AdminRequest::Create { .. } => op::CREATE_HANDLE,
            AdminRequest::AddValues { .. } => op::ADD_VALUE,
            AdminRequest::ModifyValues { .. } => op::MODIFY_VALUE,
            AdminRequest::RemoveValues { .. } => op::REMOVE_VALUE,
            AdminRequest::Delete { .. } => op::DELETE_HANDLE,
            AdminRequest::ListHandles { .. } => op::LIST_HANDLES,
        }
    }

    fn op_flag(&self) -> u32 {
        match self {
            AdminRequest::Create {
                overwrite: true, ..
            }
            | AdminRequest::AddValues {
                overwrite: true, ..
            } => DEFAULT_FLAGS | flag::OVERWRITE,
            _ => DEFAULT_FLAGS,
        }
    }

    fn body(&self) -> Body {
        match self {
            AdminRequest::Create { handle, values, .. }
            | AdminRequest::AddValues { handle, values, .. }
            | AdminRequest::ModifyValues { handle, values } => Body::HandleValues {
                handle: handle.clone(),
                values: values.clone(),
            },
            AdminRequest::RemoveValues { handle, indexes } => Body::RemoveValues {
                handle: handle.clone(),
                indexes: indexes.clone(),
            },
            AdminRequest::Delete { handle } => Body::Handle {
                handle: handle.clone(),
            },
            AdminRequest::ListHandles { prefix } => Body::Handle {
                handle: prefix_handle(prefix),
            },
        }
    }

    /// The handle the request is about (for messages and the response's `handle`).
    pub fn handle(&self) -> String {
        match self {
            AdminRequest::Create { handle, .. }
            | AdminRequest::AddValues { handle, .. }
            | AdminRequest::ModifyValues { handle, .. }
            | AdminRequest::RemoveValues { handle, .. }
            | AdminRequest::Delete { handle } => handle.clone(),
            AdminRequest::ListHandles { prefix } => prefix_handle(prefix),
        }
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
        Ok(match self {
            Authenticator::SecretKey {
                identity_handle,
                index,
                secret,
            } => Body::ChallengeAnswer {
                auth_type: types::HS_SECKEY.to_string(),
                identity_handle: identity_handle.clone(),
                identity_index: *index,
                signed_response: seckey_answer_pbkdf2(
                    secret,
                    nonce,
                    digest,
                    salt,
                    DEFAULT_PBKDF2_ITERATIONS,
                    DEFAULT_PBKDF2_KEY_BITS,
                ),
            },
            Authenticator::PrivateKey {
                identity_handle,
                index,
                key,
            } => Body::ChallengeAnswer {
                auth_type: types::HS_PUBKEY.to_string(),
                identity_handle: identity_handle.clone(),
                identity_index: *index,
                signed_response: key.try_sign_answer(SignatureHash::Sha256, nonce, digest)?,
            },
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

// ---------------------------------------------------------------------------------------------
// Requests

fn now_unix() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

/// The expiration of a request sent now.
fn request_expiration() -> u32 {
    expiration(u64::from(now_unix()))
}

fn resolution_body(handle: &str, indexes: &[u32], types: &[String]) -> Body {
    Body::Resolution {
        handle: handle.to_string(),
        indexes: indexes.to_vec(),
        types: types.to_vec(),
    }
}

fn resolution_flags(public_only: bool) -> u32 {
    if public_only {
        DEFAULT_FLAGS
    } else {
        DEFAULT_FLAGS & !flag::PUBLIC_ONLY
    }
}

// ---------------------------------------------------------------------------------------------
// The client

/// A blocking client of one server (one request at a time; cheap to clone).
#[derive(Debug, Clone)]
pub struct Client {
    server: SocketAddr,
    timeout: Duration,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer went away: Handle.Net servers close the connection after every response, the
/// challenge included, and expect the answer on a new connection.
fn is_closed(e: &ClientError) -> bool {
    matches!(e, ClientError::Io { error, .. } if matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ))
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

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            server: self.server,
            error: source,
        }
    }

    fn timed_out(&self, note: Option<String>) -> ClientError {
        ClientError::Timeout {
            server: self.server,
            waited: self.timeout,
            note,
        }
    }

    fn io_or_timeout(&self, e: io::Error) -> ClientError {
        if is_timeout(&e) {
            self.timed_out(None)
        } else {
            self.io(e)
        }
    }

    /// Resolve `handle` (all values when `indexes` and `types` are both empty, else their
    /// union). `public_only` sets the PO flag; without it a server may answer 402 for
    /// restricted values, which this method returns as is (see
    /// [`resolve_authenticated`](Self::resolve_authenticated)).
    pub fn resolve(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        transport: Transport,
        public_only: bool,
    ) -> Result<Response, ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::RESOLUTION,
            resolution_flags(public_only),
            resolution_body(handle, indexes, types),
        );
        match transport {
            Transport::Udp => {
                let m = self.udp_exchange(&request)?;
                // RC 2 (and a truncated answer) sends Handle.Net clients to TCP: the server
                // says the answer is too large for UDP, or needs authentication.
                if m.asks_for_tcp() {
                    return self.tcp_exchange(&request, handle, None);
                }
                Ok(Response::from_message(&m, handle))
            }
            Transport::Tcp => self.tcp_exchange(&request, handle, None),
        }
    }

    /// Resolve with the CT flag set and check the answer's `HS_SIGNED` credential with `key`
    /// (the public key of the server's HS_SITE entry): the answer, and what the check found.
    /// Over UDP an RC 2 or truncated answer is asked again over TCP, as for [`Self::resolve`].
    pub fn resolve_certified(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        transport: Transport,
        public_only: bool,
        key: &crate::model::PublicKey,
    ) -> Result<(Response, crate::auth::credential::Certification), ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::RESOLUTION,
            resolution_flags(public_only) | flag::CERTIFY,
            resolution_body(handle, indexes, types),
        );
        let over_tcp = |client: &Client| -> Result<Message, ClientError> {
            let mut stream = client.connect()?;
            let encoded = encode_request(&request)?;
            client.send_and_read(&mut stream, &encoded, request.envelope.request_id)
        };
        let m = match transport {
            Transport::Udp => {
                let m = self.udp_exchange(&request)?;
                if m.asks_for_tcp() {
                    over_tcp(self)?
                } else {
                    m
                }
            }
            Transport::Tcp => over_tcp(self)?,
        };
        let certification = crate::auth::credential::certification(key, &m);
        Ok((Response::from_message(&m, handle), certification))
    }

    /// The server's own HS_SITE (GET_SITE_INFO).
    pub fn site_info(&self, transport: Transport) -> Result<SiteInfo, ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::GET_SITE_INFO,
            0,
            Body::Handle {
                handle: "/".to_string(),
            },
        );
        let m = match transport {
            Transport::Udp => self.udp_exchange(&request)?,
            Transport::Tcp => {
                let mut stream = self.connect()?;
                self.send_and_read(&mut stream, &request.encode(), request.envelope.request_id)?
            }
        };
        match (m.header.response_code, m.body) {
            (1, Body::SiteInfo { site }) => SiteInfo::decode(&site)
                .map_err(|e| ClientError::Unexpected(format!("undecodable HS_SITE: {e}"))),
            (code, _) => Err(ClientError::Unexpected(format!(
                "GET_SITE_INFO answered RC {code} {}",
                code::name(code)
            ))),
        }
    }

    /// The client for the server of `site` that holds `handle` by the site's hash rule
    /// (handle-protocol.md §5), reached over `transport`; `None` if that server offers no
    /// query interface for it.
    pub fn routed(&self, site: &SiteInfo, handle: &str, transport: Transport) -> Option<Client> {
        let server = crate::resolve::site::server_for(site, handle)?;
        let port = crate::resolve::site::query_port(server, transport.interface_protocol())?;
        Some(Client {
            server: SocketAddr::new(server.ip(), port),
            timeout: self.timeout,
        })
    }

    /// Resolve over TCP without the PO flag, answering the server's challenge as `auth`
    /// (values readable only by administrators).
    pub fn resolve_authenticated(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        auth: &Authenticator,
    ) -> Result<Response, ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::RESOLUTION,
            resolution_flags(false),
            resolution_body(handle, indexes, types),
        );
        self.tcp_exchange(&request, handle, Some(auth))
    }

    /// Send an administrative request over TCP and answer the server's challenge as `auth`.
    /// A server that answers without challenging gets its answer returned as is.
    pub fn admin(
        &self,
        request: AdminRequest,
        auth: &Authenticator,
    ) -> Result<Response, ClientError> {
        let message = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            request.op_code(),
            request.op_flag(),
            request.body(),
        );
        self.tcp_exchange(&message, &request.handle(), Some(auth))
    }

    // --- UDP ---------------------------------------------------------------------------------

    fn udp_exchange(&self, request: &Message) -> Result<Message, ClientError> {
        let datagrams = udp_datagrams(request)?;
        let request_id = request.envelope.request_id;

        let bind: SocketAddr = if self.server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(bind).map_err(|e| self.io(e))?;
        // A connected socket only receives datagrams from the server's address.
        socket.connect(self.server).map_err(|e| self.io(e))?;

        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut reassembly = UdpResponse::new(request_id);
        let mut note: Option<String> = None;
        let mut buf = vec![0u8; 65_536];
        for wait in UDP_RETRY_SCHEDULE {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            for d in &datagrams {
                socket.send(d).map_err(|e| self.io(e))?;
            }
            let attempt_end = (now + wait).min(deadline);
            loop {
                let remaining = attempt_end.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                socket
                    .set_read_timeout(Some(remaining))
                    .map_err(|e| self.io(e))?;
                let n = match socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if is_timeout(&e) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.io(e)),
                };
                match reassembly.feed(&buf[..n]) {
                    Feed::Ignored(why) => {
                        tracing::debug!(%why, "ignored UDP datagram");
                        note = Some(why.to_string());
                    }
                    Feed::Pending => {}
                    Feed::Complete(envelope, message) => {
                        let m = Message::decode(envelope, &message)?;
                        check_response(&m, request_id, u64::from(now_unix()))?;
                        return Ok(m);
                    }
                }
            }
        }
        Err(ClientError::Timeout {
            server: self.server,
            waited: started.elapsed(),
            note: note.map(|n| format!("last ignored datagram: {n}")),
        })
    }

    // --- TCP ---------------------------------------------------------------------------------

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let stream = TcpStream::connect_timeout(&self.server, self.timeout)
            .map_err(|e| self.io_or_timeout(e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.io(e))?;
        // Requests are written in one piece; do not wait for more.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn read_message(&self, stream: &mut TcpStream) -> Result<Message, ClientError> {
        let mut frame = TcpFrame::new();
        loop {
            stream
                .read_exact(frame.unfilled())
                .map_err(|e| self.io_or_timeout(e))?;
            if let Some(m) = frame.filled()? {
                return Ok(m);
            }
        }
    }

    /// Write `encoded` and read one checked response.
    fn send_and_read(
        &self,
        stream: &mut TcpStream,
        encoded: &[u8],
        request_id: u32,
    ) -> Result<Message, ClientError> {
        stream
            .write_all(encoded)
            .and_then(|()| stream.flush())
            .map_err(|e| self.io_or_timeout(e))?;
        let m = self.read_message(stream)?;
        check_response(&m, request_id, u64::from(now_unix()))?;
        Ok(m)
    }

    /// One request over TCP: the challenge answered when `auth` is given, CN followed.
    fn tcp_exchange(
        &self,
        request: &Message,
        asked: &str,
        auth: Option<&Authenticator>,
    ) -> Result<Response, ClientError> {
        let encoded = encode_request(request)?;
        let request_id = request.envelope.request_id;
        let mut stream = self.connect()?;
        let first = self.send_and_read(&mut stream, &encoded, request_id)?;
        let auth = match auth {
            Some(a) if first.header.response_code == rc::AUTHENTICATION_NEEDED => a,
            _ => return self.collect(&mut stream, first, asked, request_id),
        };
        let Body::Challenge { nonce } = &first.body else {
            return Err(ClientError::Unexpected(
                "a 402 response without a challenge body".into(),
            ));
        };
        let hb = header_and_body(&encoded[ENVELOPE_LEN..]).ok_or_else(|| {
            ClientError::Unexpected("our own request has no header and body".into())
        })?;
        let digest = check_challenge_digest(&first, hb)?;
        let mut salt = [0u8; DEFAULT_PBKDF2_SALT_LEN];
        rand::thread_rng().fill(&mut salt[..]);
        let body = auth.answer(nonce, &digest, &salt)?;
        let mut answer_id = new_request_id();
        while answer_id == request_id {
            answer_id = new_request_id();
        }
        let answer = build_request(
            OUR_VERSION,
            first.envelope.session_id,
            answer_id,
            request_expiration(),
            op::CHALLENGE_RESPONSE,
            DEFAULT_FLAGS,
            body,
        );
        let answer_bytes = encode_request(&answer)?;
        let last = match self.send_and_read(&mut stream, &answer_bytes, answer_id) {
            Err(e) if is_closed(&e) => {
                // Handle.Net: one request per connection; answer on a new one.
                stream = self.connect()?;
                self.send_and_read(&mut stream, &answer_bytes, answer_id)?
            }
            other => other?,
        };
        if last.header.response_code == rc::AUTHENTICATION_NEEDED {
            return Err(ClientError::Unexpected(
                "the server challenged the challenge answer".into(),
            ));
        }
        self.collect(&mut stream, last, asked, answer_id)
    }

    /// Follow CN continuations after `first`.
    fn collect(
        &self,
        stream: &mut TcpStream,
        first: Message,
        asked: &str,
        request_id: u32,
    ) -> Result<Response, ClientError> {
        let mut response = Response::from_message(&first, asked);
        let mut more = first.header.has(flag::CONTINUOUS);
        let mut count = 1usize;
        while more {
            count += 1;
            if count > MAX_CONTINUATION_MESSAGES {
                return Err(ClientError::Unexpected(format!(
                    "more than {MAX_CONTINUATION_MESSAGES} continued messages"
                )));
            }
            let m = self.read_message(stream)?;
            check_response(&m, request_id, u64::from(now_unix()))?;
            check_continuation(response.code, &m)?;
            more = m.header.has(flag::CONTINUOUS);
            response.absorb(&m);
        }
        Ok(response)
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions (Handle.Net 9): one setup, one challenge, then MAC'ed requests

/// How long an admin session may sit idle (the server caps it; 10 minutes covers a batch).
pub const ADMIN_SESSION_TIMEOUT_SECS: u32 = 600;

/// An open session: its id, key and our message counter.
struct OpenSession {
    id: u32,
    key: [u8; crate::auth::session::SESSION_KEY_LEN],
    counter: u32,
}

/// Administrative requests of one identity to one server through one Handle.Net session
/// when the server supports it ([`Client::admin_session`]):
///
/// ```text
/// setup (TCP): 400 {mode 4, DH key in Oakley group 2} ─► RC 1 {session id, server DH key}
/// each request: session id + HS_MAC (HMAC-SHA256 with the session key, counter 1, 2, ...)
/// first one: 402 on the session ─► answer as the identity ─► the session is authenticated
/// the rest: answered at once, no challenge;  close(): 401 (MAC'ed) ends the session
/// ```
///
/// When the setup fails (an older server, RC 5, a bad answer) or the session breaks (RC ≥
/// 500), requests go by plain challenge/response, one challenge each.
pub struct AdminSession<'a> {
    client: &'a Client,
    auth: &'a Authenticator,
    session: Option<OpenSession>,
    /// Why the session could not be set up or was dropped, if it was.
    pub fallback_reason: Option<String>,
}

impl Client {
    /// Open an [`AdminSession`] as `auth` (falls back to plain challenge/response).
    pub fn admin_session<'a>(&'a self, auth: &'a Authenticator) -> AdminSession<'a> {
        let (session, fallback_reason) = match self.setup_session(auth) {
            Ok(s) => (Some(s), None),
            Err(e) => {
                tracing::debug!(error = %e, "no session: plain challenge/response");
                (None, Some(e.to_string()))
            }
        };
        AdminSession {
            client: self,
            auth,
            session,
            fallback_reason,
        }
    }

    /// OC_SESSION_SETUP over TCP with a fresh DH key. The answer must carry the digest of our
    /// request, and a valid HS_SIGNED credential when the server's HS_SITE publishes a key.
    fn setup_session(&self, auth: &Authenticator) -> Result<OpenSession, ClientError> {
        use crate::auth::session::{self as hs, DhKey};
        let (identity_handle, identity_index) = auth.parts();
        let p = rsa::BigUint::parse_bytes(hs::OAKLEY_GROUP2_P_HEX.as_bytes(), 16)
            .ok_or_else(|| ClientError::Unexpected("DH group".into()))?;
        let group = DhKey {
            y: rsa::BigUint::from(2u32),
            p: p.clone(),
            g: rsa::BigUint::from(2u32),
        };
        let x = hs::random_private(&p);
        let ours = hs::public_value(&group, &x);
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::SESSION_SETUP,
            DEFAULT_FLAGS | flag::CERTIFY | flag::RETURN_DIGEST,
            Body::SessionSetup {
                mode: key_exchange::DH,
                timeout: ADMIN_SESSION_TIMEOUT_SECS,
                identity_handle: identity_handle.to_string(),
                identity_index,
                exchange: KeyExchange::PublicKey(ours.public_key().encode()),
            },
        );
        let encoded = encode_request(&request)?;
        let mut stream = self.connect()?;
        let answer = self.send_and_read(&mut stream, &encoded, request.envelope.request_id)?;
        drop(stream);
        if answer.header.response_code != rc::SUCCESS {
            return Err(ClientError::Unexpected(format!(
                "session setup answered RC {} {}",
                answer.header.response_code,
                code::name(answer.header.response_code)
            )));
        }
        let hb = header_and_body(&encoded[ENVELOPE_LEN..])
            .ok_or_else(|| ClientError::Unexpected("our own request has no body".into()))?;
        check_challenge_digest(&answer, hb)?;
        self.check_setup_signature(&answer)?;
        let Body::SessionSetupAnswer { mode, data } = &answer.body else {
            return Err(ClientError::Unexpected(
                "a setup answer without its body".into(),
            ));
        };
        let server = match (mode, data.get(..4), data.get(4..)) {
            (&key_exchange::DH, Some(alg), Some(key)) if alg == [0, 0, 0, 3] => DhKey::decode(key)
                .map_err(|e| ClientError::Unexpected(format!("server DH key: {e}")))?,
            _ => {
                return Err(ClientError::Unexpected(
                    "the setup answer is not a mode-4 (DH, AES) answer".into(),
                ))
            }
        };
        if server.p != p || server.g != group.g || answer.envelope.session_id == 0 {
            return Err(ClientError::Unexpected(
                "the server's DH key is not in our group, or no session id".into(),
            ));
        }
        let key = hs::session_key(&server, &x)
            .map_err(|e| ClientError::Unexpected(format!("session key: {e}")))?;
        Ok(OpenSession {
            id: answer.envelope.session_id,
            key,
            counter: 0,
        })
    }

    /// If this server publishes a key in its HS_SITE, the setup answer must be signed by it
    /// (otherwise a man in the middle could hold the session key).
    fn check_setup_signature(&self, answer: &Message) -> Result<(), ClientError> {
        use crate::auth::credential::{self, Credential};
        let site = self.site_info(Transport::Tcp)?;
        let ip = self.server.ip();
        let server = site
            .servers
            .iter()
            .find(|s| s.ip() == ip)
            .or_else(|| (site.servers.len() == 1).then(|| &site.servers[0]));
        let Some(key) = server
            .filter(|s| !s.public_key.is_empty())
            .and_then(|s| crate::model::PublicKey::decode(&s.public_key).ok())
        else {
            return Ok(()); // nothing to check against
        };
        let bad = |why: &str| ClientError::Unexpected(format!("session setup answer: {why}"));
        let section = answer
            .credential
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("not signed, though the server's HS_SITE has a key"))?;
        let cred = Credential::decode(section).map_err(|e| bad(&e.to_string()))?;
        let bytes = answer.encode_message();
        let hb = header_and_body(&bytes).ok_or_else(|| bad("no body"))?;
        match credential::verify_signed(&key, &answer.envelope, hb, &cred) {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad("the signature does not verify with the HS_SITE key")),
            Err(e) => Err(bad(&e.to_string())),
        }
    }
}

impl AdminSession<'_> {
    /// Whether requests go through a session (else plain challenge/response).
    pub fn in_session(&self) -> bool {
        self.session.is_some()
    }

    /// Send one administrative request: MAC'ed in the session (challenged only until the
    /// session is authenticated), or by plain challenge/response.
    pub fn admin(&mut self, request: AdminRequest) -> Result<Response, ClientError> {
        let Some(s) = self.session.as_mut() else {
            return self.client.admin(request, self.auth);
        };
        let mut message = build_request(
            OUR_VERSION,
            s.id,
            new_request_id(),
            request_expiration(),
            request.op_code(),
            request.op_flag(),
            request.body(),
        );
        s.counter += 1;
        sign_in_session(&mut message, s)?;
        let r = self
            .client
            .tcp_exchange(&message, &request.handle(), Some(self.auth))?;
        if r.code >= 500 && r.code < 600 {
            // The session is gone or refused us (expired, restarted server, bad key): drop
            // it and send the request again without (the server did not perform it).
            self.fallback_reason = Some(format!(
                "session dropped after RC {} {}",
                r.code,
                code::name(r.code)
            ));
            self.session = None;
            return self.client.admin(request, self.auth);
        }
        Ok(r)
    }

    /// End the session (OC_SESSION_TERMINATE, MAC'ed); best effort.
    pub fn close(mut self) {
        let Some(mut s) = self.session.take() else {
            return;
        };
        let mut message = build_request(
            OUR_VERSION,
            s.id,
            new_request_id(),
            request_expiration(),
            op::SESSION_TERMINATE,
            DEFAULT_FLAGS,
            Body::Handle {
                handle: "/".to_string(),
            },
        );
        s.counter += 1;
        if sign_in_session(&mut message, &s).is_ok() {
            if let Err(e) = self.client.tcp_exchange(&message, "/", None) {
                tracing::debug!(error = %e, "session terminate");
            }
        }
    }
}

/// Put the session's HS_MAC (with its current counter) on `m`.
fn sign_in_session(m: &mut Message, s: &OpenSession) -> Result<(), ClientError> {
    m.credential = Some(Vec::new());
    let bytes = m.encode_message();
    let hb = header_and_body(&bytes)
        .ok_or_else(|| ClientError::Unexpected("our own request has no body".into()))?;
    let c = crate::auth::credential::mac(&s.key, &m.envelope, s.counter, hb)
        .map_err(|e| ClientError::Unexpected(e.to_string()))?;
    m.credential = Some(c.encode());
    Ok(())
}

/// The digest a challenge carries must be the digest of the request we sent; returns it.
fn check_challenge_digest(
    challenge: &Message,
    header_and_body: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let Some(d) = &challenge.digest else {
        return Err(ClientError::Unexpected(
            "a challenge without the request digest".into(),
        ));
    };
    let ours = digest_of_type(d.hash_type, header_and_body)?;
    if ours != d.digest {
        return Err(ClientError::DigestMismatch);
    }
    Ok(ours)
}

#[cfg(test)]
mod tests;
