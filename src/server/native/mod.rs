//! The native Handle protocol's request handling, shared by the UDP and TCP front ends and
//! free of sockets: one request in, the encoded response messages out.
//!
//! - resolution and site information for everyone (slash-less queries mean `0.NA/X`), and
//!   recursion through the hierarchy for REC requests: `resolve`;
//! - administration (create/add/modify/remove/delete/home/unhome/list) only over TCP and only
//!   as an identity: `admin`;
//! - the 402 challenge: a fresh 16-byte nonce, the request's digest (SHA-256 for ≥ 2.7), the
//!   pending request kept under a random session id for [`CHALLENGE_TTL`], answered with
//!   opCode 200 by HS_SECKEY (PBKDF2-HMAC-SHA1 or SHA-1 form) or HS_PUBKEY (RSA/DSA); the
//!   table and the check are [`crate::auth::challenges`], the front end's part (admission,
//!   failure budget, audit) is `challenge`;
//! - Handle.Net 9 sessions (OC_SESSION_SETUP / OC_SESSION_TERMINATE, HS_MAC-authenticated
//!   requests, no challenge once a session is authenticated): see the `session` submodule;
//! - authorization is the engine's, the same as for the REST API;
//! - the CAICT ID-SDK's logins (opCodes 2000 and 2001) make a TCP connection run as an
//!   identity, anonymous resolutions without PO get the values anyone may read (by default),
//!   and answers carry the SDK's trusted-query bits: see [`sdk`];
//! - every answer leaves through `finish` (size bounds for the transport, session MACs,
//!   signatures of certified answers (`certify`), metrics); the sockets are [`udp`] and
//!   [`tcp`].
//!
//! A request is decoded once into a typed [`Request`] ([`NativeService::process`]) and
//! dispatched by matching on it; every answer to it is built by one [`Responder`], which
//! sends it at the negotiated version, copies the request's echoed flags, carries the node's
//! site serial and an expiration 12 hours ahead (Java clients reject expired answers), and
//! only uses response codes every Handle client knows.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::challenge::PrivateKey;
use crate::auth::challenges::Challenges;
use crate::auth::pending::{FailureLimiter, FailureLimits, PendingLimits};
use crate::auth::session::{SessionLimits, SessionTable};
use crate::metrics::Metrics;
use crate::model::ResponseCode;
use crate::resolve::recursion::Recursor;
use crate::resolve::{Engine, ResolveError, Resolver};
use crate::wire::handle::message::{
    envelope_flag, header_and_body, Body, Envelope, Header, Message, WireError, UNKNOWN_SITE_SERIAL,
};
use crate::wire::handle::{peek, OpCode, Request, RequestMessage, Responder};

/// How long a challenge may wait for its answer (Handle.Net `max_auth_time`).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(20);
/// Most challenges pending at once; beyond this the oldest challenge of the address holding
/// the most goes (see [`crate::auth::pending::PendingTable`]).
pub const MAX_PENDING_CHALLENGES: usize = 10_000;
/// Keys tried for one answer naming index 0: defined with the challenge check.
pub use crate::auth::challenges::MAX_KEYS_PER_ANSWER;
/// Key derivations and signature checks running at once, all connections together; more
/// answers wait for none of them but get RC 3 (server too busy).
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 4;
/// Session setups (Diffie-Hellman key agreements) running at once; more get RC 3. Separate
/// from [`MAX_CONCURRENT_VERIFICATIONS`], so a flood of setups never crowds out challenge
/// answers.
pub const MAX_CONCURRENT_SESSION_SETUPS: usize = 2;
/// Largest native answer over UDP by default: the default of a `[handle]` setting, defined
/// with it in `config`.
pub use crate::config::DEFAULT_MAX_UDP_ANSWER;
/// Handles per LIST_HANDLES message: defined with the answers in `wire`.
pub use crate::wire::handle::respond::LIST_PER_MESSAGE;
/// Expiration put in responses: now + 12 h.
pub const RESPONSE_LIFETIME_SECS: u64 = 43_200;

/// The transport a request arrived on.
pub use crate::model::Transport;

pub use certify::SignLimits;
pub use resolve::RecursionJob;
pub use sdk::{AnonymousReads, ConnectionId, ConnectionLogin};

/// What [`NativeService::process`] decided.
pub enum Outcome {
    /// The encoded responses.
    Done(Vec<Vec<u8>>),
    /// A resolution to answer through recursion ([`NativeService::recurse`]).
    Recurse(Box<RecursionJob>),
}

/// Abuse bounds of the native front end (`[handle]` settings).
#[derive(Debug, Clone)]
pub struct NativeLimits {
    /// Pending 402 challenges, per address and in total.
    pub challenges: PendingLimits,
    /// Failed challenge answers per address.
    pub failures: FailureLimits,
    /// Largest answer sent over UDP; larger ones are replaced by RC 2 ("use TCP"), which
    /// makes Handle.Net clients retry over TCP at once.
    pub max_udp_answer: usize,
    /// Addresses VERIFY_CHALLENGE (opCode 201) is answered for, over TCP only: the servers
    /// that forward their clients' challenge answers here. Empty: nobody.
    pub verify_peers: Vec<IpAddr>,
    /// Certified (signed) answers per second, per address and in total.
    pub signatures: SignLimits,
    /// What an anonymous resolution without PO gets for a record with restricted values
    /// (`handle.anonymous_restricted_reads`, see [`sdk::AnonymousReads`]).
    pub anonymous_reads: AnonymousReads,
    /// Whether the ID-SDK's password login (opCode 2000, the password in clear) is accepted
    /// (`handle.password_login`, off by default).
    pub password_login: bool,
    /// Handle.Net sessions (OC_SESSION_SETUP), per address and in total.
    pub sessions: SessionLimits,
}

impl Default for NativeLimits {
    fn default() -> Self {
        NativeLimits {
            challenges: PendingLimits::default(),
            failures: FailureLimits::default(),
            max_udp_answer: DEFAULT_MAX_UDP_ANSWER,
            verify_peers: Vec::new(),
            signatures: SignLimits::default(),
            anonymous_reads: AnonymousReads::default(),
            password_login: false,
            sessions: SessionLimits::default(),
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub transport: Transport,
    pub addr: IpAddr,
    /// The TCP connection, when the front end keeps logins for it
    /// ([`NativeService::open_connection`]); `None` never logs in.
    pub connection: Option<ConnectionId>,
}

impl Source {
    pub fn udp(addr: IpAddr) -> Source {
        Source {
            transport: Transport::Udp,
            addr,
            connection: None,
        }
    }

    pub fn tcp(addr: IpAddr) -> Source {
        Source {
            transport: Transport::Tcp,
            addr,
            connection: None,
        }
    }

    /// A request on the TCP connection `connection` (which may log in).
    pub fn tcp_connection(addr: IpAddr, connection: ConnectionId) -> Source {
        Source {
            transport: Transport::Tcp,
            addr,
            connection: Some(connection),
        }
    }
}

/// The pending 402 challenges: requests by message, a key login bound to its connection.
type ChallengeTable = Challenges<RequestMessage, ConnectionId>;

/// Native protocol handler. Shared by every connection and socket.
pub struct NativeService {
    /// Resolutions go through it, writes through its engine (on nodes with recursion
    /// enabled, resolutions with REC for identifiers this node is not responsible for are
    /// resolved through the hierarchy).
    resolver: Resolver,
    metrics: Metrics,
    counters: RequestCounters,
    site: Vec<u8>,
    site_serial: u16,
    limits: NativeLimits,
    challenges: Mutex<ChallengeTable>,
    failures: Mutex<FailureLimiter>,
    /// Key derivations / signature checks in progress.
    verifying: AtomicUsize,
    /// Session key agreements in progress (their own bound, so setups never take the
    /// challenge answers' slots).
    setting_up: AtomicUsize,
    /// Signs certified answers (`HS_SIGNED`); its public half is in the HS_SITE served.
    server_key: Option<Arc<PrivateKey>>,
    sign_budget: SignBudget,
    /// Tests only: a fixed answer expiration, so answers (and their signatures) can be
    /// compared byte for byte with the reference vectors.
    fixed_expiration: Option<u32>,
    /// The ID-SDK logins of open TCP connections.
    logins: sdk::Logins,
    /// Live sessions (see [`session`]). Lock order: `challenges` before `sessions`.
    sessions: Mutex<SessionTable>,
}

/// The `op` label of the request metrics for a wire op code ([`OpCode::label`]; "other" for
/// a code no request carries).
pub(crate) fn op_label(op_code: u32) -> &'static str {
    OpCode::from_code(op_code).map_or("other", OpCode::label)
}

/// Engine failures on the native wire ([`Responder::refusal`]: referrals carry their values).
/// A trait here because `wire` sits below `resolve`, whose [`ResolveError`] it answers.
trait AnswerFailure {
    fn failure(&self, f: &ResolveError) -> Message;
}

impl AnswerFailure for Responder<'_> {
    fn failure(&self, f: &ResolveError) -> Message {
        self.refusal(f.code(), &f.to_string(), f.referral())
    }
}

/// What [`NativeService::decode`] made of a message.
enum Decoded {
    /// A request to dispatch.
    Request(RequestMessage),
    /// No request: no answer (a response sent to us) or the error answer to what does not
    /// decode; counted under `op_code`.
    Unhandled {
        op_code: u32,
        answer: Option<Message>,
    },
}

impl NativeService {
    /// `site` is the node's encoded HS_SITE record (answered to GET_SITE_INFO).
    pub fn new(engine: Engine, metrics: Metrics, site: &crate::model::SiteInfo) -> NativeService {
        NativeService {
            resolver: Resolver::new(engine, None),
            counters: RequestCounters::default(),
            metrics,
            site: site.encode(),
            site_serial: site.serial,
            challenges: Mutex::new(Challenges::new(NativeLimits::default().challenges)),
            failures: Mutex::new(FailureLimiter::new(NativeLimits::default().failures)),
            limits: NativeLimits::default(),
            verifying: AtomicUsize::new(0),
            setting_up: AtomicUsize::new(0),
            server_key: None,
            sign_budget: SignBudget::new(SignLimits::default()),
            fixed_expiration: None,
            logins: sdk::Logins::default(),
            sessions: Mutex::new(SessionTable::new(SessionLimits::default())),
        }
    }

    /// Tests: answer with this expiration instead of now + 12 h.
    #[cfg(test)]
    pub(crate) fn with_fixed_expiration(mut self, expiration: u32) -> NativeService {
        self.fixed_expiration = Some(expiration);
        self
    }

    /// Sign certified answers with `key` (the node's server key, published in its HS_SITE).
    pub fn with_server_key(mut self, key: Arc<PrivateKey>) -> NativeService {
        self.server_key = Some(key);
        self
    }

    /// Use `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: NativeLimits) -> NativeService {
        self.challenges = Mutex::new(Challenges::new(limits.challenges));
        self.failures = Mutex::new(FailureLimiter::new(limits.failures));
        self.sign_budget = SignBudget::new(limits.signatures);
        self.sessions = Mutex::new(SessionTable::new(limits.sessions));
        self.limits = limits;
        self
    }

    /// Resolve identifiers this node does not home through `recursor` (REC requests).
    pub fn with_recursor(mut self, recursor: Arc<Recursor>) -> NativeService {
        self.resolver = Resolver::new(self.engine().clone(), Some(recursor));
        self
    }

    /// Drop expired challenges and sessions (the server calls this every second).
    pub fn sweep(&self, now: Instant) -> usize {
        let mut challenges = self.lock_challenges();
        let removed = challenges.sweep(now);
        self.metrics.pending_challenges.set(challenges.len() as i64);
        drop(challenges);
        removed + self.sweep_sessions(now)
    }

    /// Challenges waiting for an answer.
    pub fn pending_challenges(&self) -> usize {
        self.lock_challenges().len()
    }

    /// The registry's engine: writes, listings, authentication.
    fn engine(&self) -> &Engine {
        self.resolver.engine()
    }

    /// The registry's change-log sequence (answers from this node's data change with it).
    pub(crate) fn registry_seq(&self) -> u64 {
        self.engine().registry().last_seq()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn lock_challenges(&self) -> MutexGuard<'_, ChallengeTable> {
        crate::lock::lock(&self.challenges)
    }

    fn lock_failures(&self) -> MutexGuard<'_, FailureLimiter> {
        crate::lock::lock(&self.failures)
    }

    /// The answers to the request of `envelope` and `header` (header+body `hb`).
    fn responder<'a>(
        &self,
        envelope: &Envelope,
        header: &Header,
        hb: Option<&'a [u8]>,
    ) -> Responder<'a> {
        let expiration = self.fixed_expiration.unwrap_or_else(|| {
            (crate::model::unix_now() + RESPONSE_LIFETIME_SECS).min(u64::from(u32::MAX)) as u32
        });
        Responder::new(envelope, header, hb, self.site_serial, expiration)
    }

    /// Handle one complete request: `envelope` and the `message` bytes after it (reassembled
    /// for UDP). Returns the encoded responses, in order (several for list operations); none
    /// when the input deserves no answer (it is a response, or too broken to answer).
    /// Requests that need recursion are answered by awaiting it.
    pub async fn handle(&self, envelope: Envelope, message: &[u8], source: Source) -> Vec<Vec<u8>> {
        match self.process(envelope, message, source) {
            Outcome::Done(responses) => responses,
            Outcome::Recurse(job) => self.recurse(*job).await,
        }
    }

    /// The synchronous part: everything but recursion, which comes back as a job for
    /// [`NativeService::recurse`] (so a UDP loop can spawn it instead of waiting).
    pub fn process(&self, envelope: Envelope, message: &[u8], source: Source) -> Outcome {
        let started = Instant::now();
        // A session's encrypted message is decrypted before anything reads it.
        let decrypted;
        let (envelope, message) = if envelope.flags & envelope_flag::ENCRYPTED != 0 {
            match self.decrypt_request(envelope, message, source) {
                Ok((env, plain)) => {
                    decrypted = plain;
                    (env, decrypted.as_slice())
                }
                Err(answer) => {
                    return Outcome::Done(self.finish(0, source, started, vec![*answer]))
                }
            }
        } else {
            (envelope, message)
        };
        let req = match self.decode(envelope, message) {
            Decoded::Request(req) => req,
            Decoded::Unhandled { op_code, answer } => {
                let answers = answer.into_iter().collect();
                return Outcome::Done(self.finish(op_code, source, started, answers));
            }
        };
        let hb = header_and_body(message);
        if let Some(outcome) = self.recursion(&req, hb, source, started) {
            return outcome;
        }
        let op_code = req.header.op_code;
        let responses = self.dispatch(&req, hb, source);
        Outcome::Done(self.finish(op_code, source, started, responses))
    }

    /// Decode `message` once into the request it carries.
    fn decode(&self, envelope: Envelope, message: &[u8]) -> Decoded {
        // What we can answer even when the body does not decode.
        let head = peek::Message(message);
        let raw_header = Header {
            op_code: head.op_code().unwrap_or(0),
            response_code: head.response_code().unwrap_or(0),
            op_flag: head.op_flag().unwrap_or(0),
            site_serial: UNKNOWN_SITE_SERIAL,
            recursion_count: head.recursion_count().unwrap_or(0),
            expiration: 0,
        };
        if raw_header.response_code != 0 {
            // A response sent to us: never answer.
            return Decoded::Unhandled {
                op_code: raw_header.op_code,
                answer: None,
            };
        }
        // The RD digest covers the request's header+body whenever those can be found, even
        // if the body does not decode.
        let hb = header_and_body(message);
        let decoded = Message::decode(envelope, message).map_err(|e| match e {
            WireError::UnknownOpCode(_) => (
                ResponseCode::OperationNotSupported,
                "Operation not supported".to_string(),
            ),
            other => (ResponseCode::ProtocolError, other.to_string()),
        });
        let refused = |op_code, code, text: &str| Decoded::Unhandled {
            op_code,
            answer: Some(self.responder(&envelope, &raw_header, hb).error(code, text)),
        };
        match decoded.map(RequestMessage::from_message) {
            Ok(Ok(req)) => Decoded::Request(req),
            // Handle.Net answers these with a protocol error too; there is a request id to
            // answer to.
            Err((_, text)) if message.len() < 24 || raw_header.op_code == 0 => {
                refused(0, ResponseCode::ProtocolError, &text)
            }
            Err((code, text)) => refused(raw_header.op_code, code, &text),
            // A body of another operation's shape (the decoder never makes one).
            Ok(Err(e)) => refused(
                raw_header.op_code,
                ResponseCode::ProtocolError,
                &e.to_string(),
            ),
        }
    }

    /// Answer a decoded request (recursion was ruled out).
    fn dispatch(&self, req: &RequestMessage, hb: Option<&[u8]>, source: Source) -> Vec<Message> {
        let r = self.responder(&req.envelope, &req.header, hb);
        // Requests naming a session (see `session`).
        if let Some(responses) = self.session_gate(req, &r, source) {
            return responses;
        }
        let transport = source.transport;
        match &req.request {
            Request::Resolve(q) => vec![self.resolution_as_login(req, q, &r, source)],
            Request::SiteInfo => vec![r.ok(Body::SiteInfo {
                site: self.site.clone(),
            })],
            Request::SessionSetup(setup) => vec![self.session_setup(setup, &r, source)],
            Request::SessionTerminate => vec![self.session_terminate(req, &r, source)],
            // Over UDP no challenge is ever issued (anonymous datagrams create no state), so
            // there is nothing to answer; key derivation never runs on a UDP worker.
            Request::ChallengeAnswer(_) | Request::VerifyChallenge(_)
                if transport == Transport::Udp =>
            {
                self.refuse(transport, "auth_over_udp");
                vec![r.error(
                    ResponseCode::OperationNotSupported,
                    "authentication is accepted over TCP only",
                )]
            }
            Request::ChallengeAnswer(answer) => self.challenge_answer(answer, &r, source),
            Request::VerifyChallenge(v) => vec![self.verify_challenge(v, &r, source)],
            Request::KeyLogin(_) => vec![self.key_login(req, &r, source)],
            Request::PasswordLogin(login) => vec![self.password_login(login, &r, source)],
            // What is left is administration.
            _ if transport == Transport::Udp => vec![r.error(
                ResponseCode::OperationNotSupported,
                "administrative requests are accepted over TCP only",
            )],
            Request::ListHomed => self.list_homed(&r),
            Request::Admin(admin) => self.admin_request(req, admin, &r, source),
        }
    }

    /// The short answer a rate-limited UDP request is "slipped": RC 2 with the TC flag, on
    /// which Handle.Net clients retry over TCP at once. `None` for what is not a request.
    pub(crate) fn slip_answer(&self, envelope: Envelope, message: &[u8]) -> Option<Vec<u8>> {
        let request = Message::decode(envelope, message).ok()?;
        if request.header.response_code != 0 {
            return None;
        }
        let r = self.responder(&request.envelope, &request.header, header_and_body(message));
        let mut m = r.error(ResponseCode::Error, "rate limited: ask over TCP");
        m.envelope.flags |= envelope_flag::TRUNCATED;
        Some(m.encode())
    }

    /// Count a request refused to protect the node.
    fn refuse(&self, transport: Transport, reason: &str) {
        self.metrics
            .refused
            .with_label_values(&[transport.label(), reason])
            .inc();
    }
}

mod admin;
mod certify;
mod challenge;
mod finish;
mod resolve;
pub mod sdk;
mod session;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod tests;

use certify::SignBudget;
use finish::RequestCounters;
