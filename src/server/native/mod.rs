//! The native Handle protocol's request handling, shared by the UDP and TCP front ends and
//! free of sockets: one decoded request in, the encoded response messages out.
//!
//! - resolution and site information for everyone (slash-less queries mean `0.NA/X`);
//! - administration (create/add/modify/remove/delete/list) only over TCP and only after the
//!   402 challenge: a fresh 16-byte nonce, the request's digest (SHA-256 for ≥ 2.7), the
//!   pending request kept under a random session id for [`CHALLENGE_TTL`], answered with
//!   opCode 200 by HS_SECKEY (PBKDF2-HMAC-SHA1 or SHA-1 form) or HS_PUBKEY (RSA/DSA);
//! - Handle.Net 9 sessions (OC_SESSION_SETUP / OC_SESSION_TERMINATE, HS_MAC-authenticated
//!   requests, no challenge once a session is authenticated): see the `session` submodule;
//! - authorization is the engine's, the same as for the REST API;
//! - the CAICT ID-SDK's logins (opCodes 2000 and 2001) make a TCP connection run as an
//!   identity, anonymous resolutions without PO get the values anyone may read (by default),
//!   and answers carry the SDK's trusted-query bits: see [`sdk`].
//!
//! Responses are sent at the negotiated version, copy the request's echoed flags, carry the
//! node's site serial and an expiration 12 hours ahead (Java clients reject expired answers),
//! and only use response codes every Handle client knows.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::auth::challenge::PrivateKey;
use crate::auth::challenge::{
    request_digest, seckey_form_allowed, verify_pubkey_answer, verify_seckey_answer,
};
use crate::auth::pending::{
    FailureLimiter, FailureLimits, PendingFull, PendingLimits, PendingTable,
};
use crate::auth::session::{SessionLimits, SessionTable};
use crate::auth::Identity;
use crate::metrics::Metrics;
use crate::model::{types, Handle, PublicKey, ResponseCode};
use crate::resolve::recursion::{RecursionPermit, Recursor};
use crate::resolve::resolver::{Certify, Fetch};
use crate::resolve::{Engine, Failure, Overwrite, Query, Resolver, Route};
use crate::server::udp::{Reuse, RELAYED_REUSE_SECS};
use crate::wire::handle::message::{
    envelope_flag, flag, header_and_body, op, Body, Envelope, Header, Message, RequestDigest,
    WireError, MAX_MESSAGE_LEN, OUR_VERSION,
};
use crate::wire::handle::peek;

/// How long a challenge may wait for its answer (Handle.Net `max_auth_time`).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(20);
/// Most challenges pending at once; beyond this the oldest challenge of the address holding
/// the most goes (see [`PendingTable`]).
pub const MAX_PENDING_CHALLENGES: usize = 10_000;
/// Keys tried for one answer naming index 0 ("any of the handle's keys"): a handle with
/// hundreds of secrets must not turn one answer into hundreds of key derivations.
pub const MAX_KEYS_PER_ANSWER: usize = 4;
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
/// Handles per LIST_HANDLES message (Handle.Net sends 50 per message, CN on all but the last).
pub const LIST_PER_MESSAGE: usize = 50;
/// Expiration put in responses: now + 12 h.
pub const RESPONSE_LIFETIME_SECS: u64 = 43_200;

/// The transport a request arrived on.
pub use crate::model::Transport;

/// What [`NativeService::process`] decided.
pub enum Outcome {
    /// The encoded responses.
    Done(Vec<Vec<u8>>),
    /// A resolution to answer through recursion ([`NativeService::recurse`]).
    Recurse(Box<RecursionJob>),
}

/// A resolution waiting for recursion.
pub struct RecursionJob {
    request: Message,
    hb: Option<Vec<u8>>,
    handle: Handle,
    indexes: Vec<u32>,
    types: Vec<String>,
    source: Source,
    started: Instant,
    /// The job's slot of `recursion.max_concurrent`, held until it is answered.
    permit: RecursionPermit,
}

/// A 402 challenge waiting for its answer.
struct Pending {
    request: Message,
    /// The request's header+body as received (the RD digest of its final answer covers them).
    hb: Vec<u8>,
    digest: RequestDigest,
    nonce: [u8; 16],
    /// The TCP connection it was issued on (a key login must be answered there).
    connection: Option<ConnectionId>,
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

/// Native protocol handler. Shared by every connection and socket.
pub struct NativeService {
    /// Resolutions go through it, writes through its engine (on nodes with recursion
    /// enabled, resolutions with REC for identifiers this node is not responsible for are
    /// resolved through the hierarchy).
    resolver: Resolver,
    metrics: Metrics,
    site: Vec<u8>,
    site_serial: u16,
    limits: NativeLimits,
    pending: Mutex<PendingTable<Pending>>,
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
    /// Live sessions (see [`session`]). Lock order: `pending` before `sessions`.
    sessions: Mutex<SessionTable>,
}

pub(crate) fn op_label(op_code: u32) -> &'static str {
    match op_code {
        op::RESOLUTION => "resolve",
        op::GET_SITE_INFO => "site",
        op::CREATE_HANDLE => "create",
        op::ADD_VALUE => "add",
        op::MODIFY_VALUE => "modify",
        op::REMOVE_VALUE => "remove",
        op::DELETE_HANDLE => "delete",
        op::LIST_HANDLES | op::LIST_HOMED_NAS => "list",
        op::CHALLENGE_RESPONSE => "challenge_answer",
        op::VERIFY_CHALLENGE => "verify",
        op::HOME_NA => "home",
        op::UNHOME_NA => "unhome",
        op::LOGIN | op::LOGIN_ID_SYSTEM => "login",
        _ => "other",
    }
}

impl NativeService {
    /// `site` is the node's encoded HS_SITE record (answered to GET_SITE_INFO).
    pub fn new(engine: Engine, metrics: Metrics, site: &crate::model::SiteInfo) -> NativeService {
        NativeService {
            resolver: Resolver::new(engine, None),
            metrics,
            site: site.encode(),
            site_serial: site.serial,
            pending: Mutex::new(PendingTable::new(NativeLimits::default().challenges)),
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
        self.pending = Mutex::new(PendingTable::new(limits.challenges));
        self.failures = Mutex::new(FailureLimiter::new(limits.failures));
        self.sign_budget = SignBudget::new(limits.signatures);
        self.sessions = Mutex::new(SessionTable::new(limits.sessions));
        self.limits = limits;
        self
    }

    /// Drop expired challenges and sessions (the server calls this every second).
    pub fn sweep(&self, now: Instant) -> usize {
        let mut pending = self.lock_pending();
        let removed = pending.sweep(now);
        self.metrics.pending_challenges.set(pending.len() as i64);
        drop(pending);
        removed + self.sweep_sessions(now)
    }

    /// Challenges waiting for an answer.
    pub fn pending_challenges(&self) -> usize {
        self.lock_pending().len()
    }

    /// Resolve identifiers this node does not home through `recursor` (REC requests).
    pub fn with_recursor(mut self, recursor: Arc<Recursor>) -> NativeService {
        self.resolver = Resolver::new(self.engine().clone(), Some(recursor));
        self
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

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, PendingTable<Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, FailureLimiter> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
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
        match self.recursion_job(envelope, message, source, started) {
            None => {}
            Some(Ok(job)) => return Outcome::Recurse(Box::new(job)),
            Some(Err(refusal)) => {
                return Outcome::Done(self.finish(op::RESOLUTION, source, started, vec![refusal]))
            }
        }
        let (op_code, responses) = self.dispatch(envelope, message, source);
        Outcome::Done(self.finish(op_code, source, started, responses))
    }

    /// No answer over the message limit on any transport (no client could reassemble it),
    /// and over UDP none larger than `max_udp_answer`: such answers become one short RC 2
    /// error with the envelope's TC flag, which Handle.Net clients answer by retrying over
    /// TCP at once. Lists are several messages of [`LIST_PER_MESSAGE`] handles each.
    fn bound_answer_size(
        &self,
        transport: Transport,
        responses: &mut [Message],
        sizes: &[usize],
    ) -> bool {
        let limit = match transport {
            Transport::Udp => self.limits.max_udp_answer.min(MAX_MESSAGE_LEN),
            Transport::Tcp => MAX_MESSAGE_LEN,
        };
        let total: usize = sizes.iter().sum();
        let too_big = match transport {
            Transport::Udp => total > limit,
            Transport::Tcp => sizes.iter().any(|s| *s > limit),
        };
        if !too_big {
            return false;
        }
        let reason = match transport {
            Transport::Udp => "udp_too_large",
            Transport::Tcp => "message_too_large",
        };
        self.refuse(transport, reason);
        for (m, size) in responses.iter_mut().zip(sizes) {
            if transport == Transport::Tcp && *size <= limit {
                continue;
            }
            m.header.response_code = ResponseCode::Error.code();
            m.header.op_flag &= !flag::CONTINUOUS;
            m.envelope.flags |= envelope_flag::TRUNCATED;
            m.body = Body::Error {
                message: match transport {
                    Transport::Udp => format!(
                        "the answer ({total} bytes) is larger than this server sends over UDP \
                         ({limit} bytes): ask over TCP"
                    ),
                    Transport::Tcp => format!(
                        "the answer is larger than the {MAX_MESSAGE_LEN}-byte message limit: \
                         ask for fewer values"
                    ),
                },
            };
        }
        true
    }

    /// Count a request refused to protect the node.
    fn refuse(&self, transport: Transport, reason: &str) {
        self.metrics
            .refused
            .with_label_values(&[transport.label(), reason])
            .inc();
    }

    /// Encode the responses, bounded in size for the transport and signed when the request
    /// asked for certification (CT, echoed in every answer), and count the request.
    fn finish(
        &self,
        op_code: u32,
        source: Source,
        started: Instant,
        mut responses: Vec<Message>,
    ) -> Vec<Vec<u8>> {
        let transport = source.transport;
        // Encoded once; again only if bounding, a session MAC or a signature changed them.
        let mut encoded: Vec<Vec<u8>> = responses.iter().map(Message::encode).collect();
        let sizes: Vec<usize> = encoded.iter().map(Vec::len).collect();
        let resized = self.bound_answer_size(transport, &mut responses, &sizes);
        // Certified answers inside a session carry the session's MAC (after resizing, which
        // changes what it covers); the others get the server key's signature.
        let maced = self.mac_session_answers(&mut responses);
        let signed = self.certify(source, &mut responses);
        self.count(op_code, transport, started, &responses);
        if resized || maced || signed {
            encoded = responses.iter().map(Message::encode).collect();
        }
        self.encrypt_session_answers(&responses, &mut encoded);
        encoded
    }

    /// Sign the answers to a certified request with the server key, within the signature
    /// budget; whether any answer changed. Without a server key (tests) they stay unsigned.
    fn certify(&self, source: Source, responses: &mut Vec<Message>) -> bool {
        let wanted = certify::unsigned(responses);
        let Some(key) = self.server_key.as_deref() else {
            return false;
        };
        if wanted == 0 {
            return false;
        }
        if !self.sign_budget.take(source.addr, wanted, Instant::now()) {
            self.refuse(source.transport, "sign_budget");
            if source.transport == Transport::Tcp {
                certify::too_busy_to_sign(responses);
                return true;
            }
            return false;
        }
        if let Err(e) = certify::sign_all(responses, key) {
            tracing::warn!(error = %e, "answer left unsigned");
        }
        true
    }

    /// Count the request in the request and latency metrics.
    fn count(&self, op_code: u32, transport: Transport, started: Instant, responses: &[Message]) {
        let code = responses
            .first()
            .map(|m| m.header.response_code)
            .unwrap_or(0);
        self.metrics
            .requests
            .with_label_values(&[transport.label(), op_label(op_code), &code.to_string()])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[transport.label(), op_label(op_code)])
            .observe(started.elapsed().as_secs_f64());
    }

    /// A resolution with REC for an identifier this node is not responsible for, on a node
    /// that recurses for this client: the job, holding its slot of `recursion.max_concurrent`,
    /// or the answer refusing it (RC 3 when every slot is taken). Clients outside `recursion.allow` get the node's ordinary
    /// answer (`None`).
    fn recursion_job(
        &self,
        envelope: Envelope,
        message: &[u8],
        source: Source,
        started: Instant,
    ) -> Option<Result<RecursionJob, Message>> {
        if !self.resolver.recurses() {
            return None;
        }
        let head = peek::Message(message);
        if head.op_code()? != op::RESOLUTION || head.response_code()? != 0 {
            return None;
        }
        let request = Message::decode(envelope, message).ok()?;
        if !request.header.has(flag::RECURSIVE) {
            return None;
        }
        let Body::Resolution {
            handle,
            indexes,
            types,
        } = &request.body
        else {
            return None;
        };
        let parsed = Handle::parse_lenient(handle, self.engine().policy().suffix_case).ok()?;
        let hb = header_and_body(message).map(<[u8]>::to_vec);
        let refuse = |code, text: &str| {
            Some(Err(self.error(
                &request.envelope,
                &request.header,
                hb.as_deref(),
                code,
                text,
            )))
        };
        // Requests naming too many types or indexes are refused (RC 4) inside the recursor,
        // before anything is fetched or cached.
        let permit = match self.resolver.route(&parsed, source.addr) {
            Route::Upstream(permit) => permit,
            Route::Local => return None,
            Route::Busy => {
                self.refuse(source.transport, "recursion_busy");
                return refuse(
                    ResponseCode::ServerTooBusy,
                    "too many recursive lookups in flight; try again",
                );
            }
        };
        Some(Ok(RecursionJob {
            hb,
            handle: parsed,
            indexes: indexes.clone(),
            types: types.clone(),
            request,
            source,
            started,
            permit,
        }))
    }

    /// The short answer a rate-limited UDP request is "slipped": RC 2 with the TC flag, on
    /// which Handle.Net clients retry over TCP at once. `None` for what is not a request.
    pub(crate) fn slip_answer(&self, envelope: Envelope, message: &[u8]) -> Option<Vec<u8>> {
        let request = Message::decode(envelope, message).ok()?;
        if request.header.response_code != 0 {
            return None;
        }
        let mut m = self.error(
            &request.envelope,
            &request.header,
            header_and_body(message),
            ResponseCode::Error,
            "rate limited: ask over TCP",
        );
        m.envelope.flags |= envelope_flag::TRUNCATED;
        Some(m.encode())
    }

    /// Whether answers relayed from upstream may be replayed to `addr` (it may recurse).
    pub(crate) fn recurses_for(&self, addr: IpAddr) -> bool {
        self.resolver.relays_to(addr)
    }

    /// Resolve a [`RecursionJob`] through the hierarchy and build its answer.
    pub async fn recurse(&self, job: RecursionJob) -> Vec<Vec<u8>> {
        self.recurse_for_reuse(job).await.0
    }

    /// [`NativeService::recurse`], also saying how long the answer may be replayed for the
    /// same request bytes: what is left of its cache lifetime, at most
    /// [`crate::server::udp::RELAYED_REUSE_SECS`].
    pub async fn recurse_for_reuse(&self, job: RecursionJob) -> (Vec<Vec<u8>>, Reuse) {
        let req = &job.request;
        let hb = job.hb.as_deref();
        // A certified request (CT, or the ID-SDK's trusted query) is fetched with CT and its
        // upstream signature checked; it bypasses the cache and is never replayed.
        let certify = if req.header.has(flag::CERTIFY) {
            Certify::Require
        } else if req.header.has(flag::TRUSTED_QUERY) {
            Certify::Check
        } else {
            Certify::No
        };
        let query = Query {
            handle: job.handle.clone(),
            indexes: job.indexes.clone(),
            types: job.types.clone(),
            public_only: true,
            refer: true,
        };
        let fetch = Fetch {
            recursion_count: req.header.recursion_count,
            certify,
        };
        let now = crate::model::unix_now();
        let answer = self
            .resolver
            .upstream(&job.permit, &query, fetch, now)
            .await;
        // Replayed no longer than the cache entry stays fresh (what is left of it); answers
        // that failed to arrive, and certified ones, never.
        let reuse = match (&answer.outcome, answer.origin.fresh_for()) {
            (Err(f), _)
                if !matches!(
                    f.code,
                    ResponseCode::HandleNotFound | ResponseCode::ValuesNotFound
                ) =>
            {
                Reuse::Never
            }
            (_, None | Some(0)) => Reuse::Never,
            (_, Some(left)) => Reuse::Until(now + u64::from(left).min(RELAYED_REUSE_SECS)),
        };
        let text = match &req.body {
            Body::Resolution { handle, .. } => handle.clone(),
            _ => job.handle.as_str().to_string(),
        };
        let response = match answer.outcome {
            Ok(values) => self.respond(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::Success,
                Body::Values {
                    handle: text,
                    values,
                },
            ),
            Err(f) => self.failure(&req.envelope, &req.header, hb, &f),
        };
        let upstream_verified = answer.origin.verified();
        let mut response = response;
        // The answer did not come from this node's own data: trusted for the ID-SDK's trusted
        // query only when the upstream's signature over it verified.
        sdk::mark_relayed(&mut response.header, upstream_verified);
        (
            self.finish(op::RESOLUTION, job.source, job.started, vec![response]),
            reuse,
        )
    }

    fn dispatch(&self, envelope: Envelope, message: &[u8], source: Source) -> (u32, Vec<Message>) {
        let transport = source.transport;
        // What we can answer even when the body does not decode.
        let head = peek::Message(message);
        let raw_header = Header {
            op_code: head.op_code().unwrap_or(0),
            response_code: head.response_code().unwrap_or(0),
            op_flag: head.op_flag().unwrap_or(0),
            site_serial: 0xFFFF,
            recursion_count: head.recursion_count().unwrap_or(0),
            expiration: 0,
        };
        if raw_header.response_code != 0 {
            return (raw_header.op_code, Vec::new()); // A response sent to us: never answer.
        }
        let request = match Message::decode(envelope, message) {
            Ok(m) => m,
            Err(e) => {
                // The RD digest covers the request's header+body whenever those can be found,
                // even if the body does not decode.
                let hb = header_and_body(message);
                let (code, text) = match e {
                    WireError::UnknownOpCode(_) => (
                        ResponseCode::OperationNotSupported,
                        "Operation not supported".to_string(),
                    ),
                    other => (ResponseCode::ProtocolError, other.to_string()),
                };
                if message.len() < 24 || raw_header.op_code == 0 {
                    // Handle.Net answers these with a protocol error too; there is a request
                    // id to answer to.
                    let resp = self.error(
                        &envelope,
                        &raw_header,
                        hb,
                        ResponseCode::ProtocolError,
                        &text,
                    );
                    return (0, vec![resp]);
                }
                let resp = self.error(&envelope, &raw_header, hb, code, &text);
                return (raw_header.op_code, vec![resp]);
            }
        };
        let op_code = request.header.op_code;
        let hb = header_and_body(message).map(<[u8]>::to_vec);
        // Session setup and end, and requests naming a session (see `session`).
        if let Some(responses) = self.session_gate(&request, hb.as_deref(), source) {
            return (op_code, responses);
        }
        let responses = match op_code {
            op::RESOLUTION => vec![self.resolution_as_login(&request, hb.as_deref(), source)],
            op::GET_SITE_INFO => vec![self.respond(
                &request.envelope,
                &request.header,
                hb.as_deref(),
                ResponseCode::Success,
                Body::SiteInfo {
                    site: self.site.clone(),
                },
            )],
            // Over UDP no challenge is ever issued (anonymous datagrams create no state), so
            // there is nothing to answer; key derivation never runs on a UDP worker.
            op::CHALLENGE_RESPONSE | op::VERIFY_CHALLENGE if transport == Transport::Udp => {
                self.refuse(transport, "auth_over_udp");
                vec![self.error(
                    &request.envelope,
                    &request.header,
                    hb.as_deref(),
                    ResponseCode::OperationNotSupported,
                    "authentication is accepted over TCP only",
                )]
            }
            op::CHALLENGE_RESPONSE => self.challenge_answer(&request, hb.as_deref(), source),
            op::LOGIN_ID_SYSTEM => vec![self.key_login(request, hb.as_deref(), source)],
            op::LOGIN => vec![self.password_login(&request, hb.as_deref(), source)],
            op::VERIFY_CHALLENGE => vec![self.verify_challenge(&request, hb.as_deref(), source)],
            op::LIST_HOMED_NAS if transport == Transport::Tcp => {
                self.list_homed(&request, hb.as_deref())
            }
            o if op::is_admin(o) && transport == Transport::Udp => vec![self.error(
                &request.envelope,
                &request.header,
                hb.as_deref(),
                ResponseCode::OperationNotSupported,
                "administrative requests are accepted over TCP only",
            )],
            o if op::runs_as_identity(o) => match self.write_target_refusal(&request) {
                // A write to an identifier this node does not home, or holds as a read-only
                // mirror, is refused before any challenge: it may not hold the
                // administrators' keys, and the client should go elsewhere.
                Some(f) => {
                    vec![self.failure(&request.envelope, &request.header, hb.as_deref(), &f)]
                }
                // A logged-in ID-SDK connection runs as its login; anyone else is challenged.
                _ => match self.admin_as_login(&request, hb.as_deref(), source) {
                    Some(responses) => responses,
                    None => vec![self.challenge(request, hb.as_deref(), source)],
                },
            },
            _ => vec![self.error(
                &request.envelope,
                &request.header,
                hb.as_deref(),
                ResponseCode::OperationNotSupported,
                "Operation not supported",
            )],
        };
        (op_code, responses)
    }

    /// Why a write's target cannot be written here ([`Engine::check_write_target`]), if it
    /// cannot; a name that does not parse is left to the operation to report.
    pub(super) fn write_target_refusal(&self, request: &Message) -> Option<Failure> {
        // Handle writes only: HOME_NA / UNHOME_NA name prefixes this node may not home yet.
        if !matches!(
            request.header.op_code,
            op::CREATE_HANDLE
                | op::ADD_VALUE
                | op::MODIFY_VALUE
                | op::REMOVE_VALUE
                | op::DELETE_HANDLE
        ) {
            return None;
        }
        let text = match &request.body {
            Body::HandleValues { handle, .. }
            | Body::RemoveValues { handle, .. }
            | Body::Handle { handle } => handle,
            _ => return None,
        };
        let handle = Handle::parse_lenient(text, self.engine().policy().suffix_case).ok()?;
        self.engine().check_write_target(&handle).err()
    }

    /// Build a response to `req_env`/`req_header`.
    fn respond(
        &self,
        req_env: &Envelope,
        req_header: &Header,
        req_header_and_body: Option<&[u8]>,
        code: ResponseCode,
        body: Body,
    ) -> Message {
        let version = req_env.negotiated_version();
        let mut rc = code.code();
        // Before 2.5, 202 did not exist on the wire: Handle.Net writes it as 201.
        if version < (2, 5) && code == ResponseCode::InvalidValue {
            rc = ResponseCode::ValueAlreadyExists.code();
        }
        let forced_digest = code == ResponseCode::AuthenticationNeeded;
        let wants_digest = forced_digest || req_header.has(flag::RETURN_DIGEST);
        let digest = match (wants_digest, req_header_and_body) {
            (true, Some(hb)) => {
                let (hash_type, digest) = request_digest(version.0, version.1, hb);
                Some(RequestDigest { hash_type, digest })
            }
            _ => None,
        };
        // REC is an answer's own default in Handle.Net (not copied from the request).
        let mut op_flag =
            (req_header.op_flag & flag::ECHOED) | flag::AUTHORITATIVE | flag::RECURSIVE;
        if digest.is_some() {
            op_flag |= flag::RETURN_DIGEST;
        } else {
            op_flag &= !flag::RETURN_DIGEST;
        }
        flag::set_trusted_result(&mut op_flag, sdk::own_data(req_header.op_code, code));
        Message {
            envelope: Envelope {
                major: version.0,
                minor: version.1,
                flags: 0,
                suggested_major: OUR_VERSION.0,
                suggested_minor: OUR_VERSION.1,
                session_id: req_env.session_id,
                request_id: req_env.request_id,
                sequence: 0,
                message_length: 0,
            },
            header: Header {
                op_code: req_header.op_code,
                response_code: rc,
                op_flag,
                site_serial: self.site_serial,
                recursion_count: req_header.recursion_count,
                expiration: self.fixed_expiration.unwrap_or_else(|| {
                    (crate::model::unix_now() + RESPONSE_LIFETIME_SECS).min(u64::from(u32::MAX))
                        as u32
                }),
            },
            digest,
            body,
            credential: Some(Vec::new()),
        }
    }

    fn error(
        &self,
        env: &Envelope,
        header: &Header,
        hb: Option<&[u8]>,
        code: ResponseCode,
        message: &str,
    ) -> Message {
        // Handle.Net answers "not found" with an empty message; clients print the code.
        let message = if code == ResponseCode::HandleNotFound {
            ""
        } else {
            message
        };
        self.respond(
            env,
            header,
            hb,
            code,
            Body::Error {
                message: message.to_string(),
            },
        )
    }

    pub(super) fn failure(
        &self,
        env: &Envelope,
        header: &Header,
        hb: Option<&[u8]>,
        f: &Failure,
    ) -> Message {
        if matches!(
            f.code,
            ResponseCode::PrefixReferral | ResponseCode::ServiceReferral
        ) {
            return self.respond(
                env,
                header,
                hb,
                f.code,
                Body::Referral {
                    handle: String::new(),
                    values: f.referral.clone(),
                },
            );
        }
        self.error(env, header, hb, f.code, &f.message)
    }

    fn resolution(
        &self,
        req: &Message,
        hb: Option<&[u8]>,
        identity: Option<&Identity>,
        source: Source,
    ) -> Message {
        self.resolution_with(req, hb, identity, source, self.limits.anonymous_reads, None)
    }

    /// [`Self::resolution`] with the anonymous-read rule given (a reader who named an
    /// identity in a session is challenged, whatever the node's setting) and, for a
    /// challenge, the id to issue it under (a session's own).
    fn resolution_with(
        &self,
        req: &Message,
        hb: Option<&[u8]>,
        identity: Option<&Identity>,
        source: Source,
        anonymous_reads: AnonymousReads,
        challenge_id: Option<u32>,
    ) -> Message {
        let Body::Resolution {
            handle,
            indexes,
            types,
        } = &req.body
        else {
            return self.error(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::ProtocolError,
                "bad body",
            );
        };
        let parsed = match Handle::parse_lenient(handle, self.engine().policy().suffix_case) {
            Ok(h) => h,
            Err(e) => {
                return self.error(
                    &req.envelope,
                    &req.header,
                    hb,
                    ResponseCode::InvalidHandle,
                    &e.to_string(),
                )
            }
        };
        // An anonymous reader gets what anyone may read unless `anonymous_reads` says to
        // challenge it (see `sdk::AnonymousReads`).
        let anonymous_public = identity.is_none() && anonymous_reads == AnonymousReads::Public;
        let query = Query {
            handle: parsed,
            indexes: indexes.clone(),
            types: types.clone(),
            public_only: req.header.has(flag::PUBLIC_ONLY) || anonymous_public,
            refer: !req.header.has(flag::DO_NOT_REFER),
        };
        match self.engine().resolve(&query, identity) {
            Ok(r) => self.respond(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::Success,
                Body::Values {
                    handle: handle.clone(),
                    values: r.values,
                },
            ),
            // Over UDP an anonymous datagram must not create state: RC 2 sends Handle.Net
            // clients on to TCP at once, where the challenge is issued.
            Err(f)
                if f.code == ResponseCode::AuthenticationNeeded
                    && identity.is_none()
                    && source.transport == Transport::Udp =>
            {
                self.error(
                    &req.envelope,
                    &req.header,
                    hb,
                    ResponseCode::Error,
                    "restricted values: authenticate over TCP, or set the public-only flag",
                )
            }
            Err(f) if f.code == ResponseCode::AuthenticationNeeded && identity.is_none() => {
                if let Some(id) = challenge_id {
                    // An older challenge under the same id goes.
                    let _ = self.lock_pending().take(id, source.addr, Instant::now());
                }
                self.challenge_as(req.clone(), hb, source, challenge_id)
            }
            Err(f) => self.failure(&req.envelope, &req.header, hb, &f),
        }
    }

    /// Answer with a 402 challenge and remember the request under a new session id.
    fn challenge(&self, request: Message, hb: Option<&[u8]>, source: Source) -> Message {
        self.challenge_as(request, hb, source, None)
    }

    /// [`NativeService::challenge`], under `session_id` when given (a challenge inside a
    /// session reuses the session's id, as Handle.Net does) instead of a fresh id that no
    /// session holds.
    fn challenge_as(
        &self,
        request: Message,
        hb: Option<&[u8]>,
        source: Source,
        session_id: Option<u32>,
    ) -> Message {
        let Some(hb) = hb else {
            return self.error(
                &request.envelope,
                &request.header,
                None,
                ResponseCode::ProtocolError,
                "bad message",
            );
        };
        let version = request.envelope.negotiated_version();
        let (hash_type, digest) = request_digest(version.0, version.1, hb);
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let now = Instant::now();
        // What the entry holds: the request (its encoded size stands for its decoded form)
        // plus the digest and nonce.
        let size = hb.len() + digest.len() + 128;
        let inserted = {
            let mut pending = self.lock_pending();
            let inserted = pending.insert(
                source.addr,
                Pending {
                    request: request.clone(),
                    hb: hb.to_vec(),
                    digest: RequestDigest {
                        hash_type,
                        digest: digest.clone(),
                    },
                    nonce,
                    connection: source.connection,
                },
                size,
                now,
                || match session_id {
                    Some(id) => id,
                    None => self.unused_session_id(),
                },
            );
            self.metrics.pending_challenges.set(pending.len() as i64);
            inserted
        };
        let session_id = match inserted {
            Ok(id) => id,
            Err(full) => {
                self.refuse(
                    source.transport,
                    match full {
                        PendingFull::Source => "challenge_source_full",
                        PendingFull::Total => "challenge_table_full",
                    },
                );
                return self.error(
                    &request.envelope,
                    &request.header,
                    Some(hb),
                    ResponseCode::ServerTooBusy,
                    &full.to_string(),
                );
            }
        };
        let mut env = request.envelope;
        env.session_id = session_id;
        let mut resp = self.respond(
            &env,
            &request.header,
            Some(hb),
            ResponseCode::AuthenticationNeeded,
            Body::Challenge {
                nonce: nonce.to_vec(),
            },
        );
        resp.digest = Some(RequestDigest { hash_type, digest });
        resp
    }

    /// Verify a challenge answer against the identity's keys in this node's registry: at
    /// most [`MAX_KEYS_PER_ANSWER`] values are tried (an index names one; index 0 the first
    /// few of the wanted type), MD5 forms only for pre-2.7 challenges (`version`).
    #[allow(clippy::too_many_arguments)]
    fn verify_identity(
        &self,
        auth_type: &str,
        identity_handle: &str,
        index: u32,
        nonce: &[u8],
        digest: &[u8],
        signed: &[u8],
        version: (u8, u8),
    ) -> Result<Option<Identity>, Failure> {
        let handle = Handle::parse_lenient(identity_handle, self.engine().policy().suffix_case)
            .map_err(|e| Failure::new(ResponseCode::AuthenticationFailed, e.to_string()))?;
        let wanted = if auth_type.eq_ignore_ascii_case(types::HS_SECKEY) {
            types::HS_SECKEY
        } else if auth_type.eq_ignore_ascii_case(types::HS_PUBKEY) {
            types::HS_PUBKEY
        } else {
            return Err(Failure::new(
                ResponseCode::AuthenticationError,
                format!("unsupported authentication type {auth_type:?}"),
            ));
        };
        if wanted == types::HS_SECKEY && !seckey_form_allowed(version.0, version.1, signed) {
            return Ok(None);
        }
        let Some(record) = self.engine().registry().get(&handle)? else {
            return Ok(None);
        };
        for v in record
            .values
            .iter()
            .filter(|v| v.is_type(wanted) && (index == 0 || v.index == index))
            .take(MAX_KEYS_PER_ANSWER)
        {
            let ok = if wanted == types::HS_SECKEY {
                verify_seckey_answer(&v.data, nonce, digest, signed).unwrap_or(false)
            } else {
                match PublicKey::decode(&v.data) {
                    Ok(key) => verify_pubkey_answer(&key, nonce, digest, signed).unwrap_or(false),
                    Err(_) => false,
                }
            };
            if ok {
                return Ok(Some(Identity {
                    handle: handle.clone(),
                    index: v.index,
                }));
            }
        }
        Ok(None)
    }

    /// Admission for one key derivation or signature check from `source`: its failure budget
    /// must not be spent, and fewer than [`MAX_CONCURRENT_VERIFICATIONS`] may run at once.
    /// The returned guard frees the slot when dropped.
    fn admit_verification(&self, source: Source) -> Result<VerifySlot<'_>, (ResponseCode, &str)> {
        self.admit_work(source, &self.verifying, MAX_CONCURRENT_VERIFICATIONS)
    }

    /// [`Self::admit_verification`] for any bounded kind of authentication work: `running`
    /// counts it, at most `max` at once.
    fn admit_work<'a>(
        &'a self,
        source: Source,
        running: &'a AtomicUsize,
        max: usize,
    ) -> Result<VerifySlot<'a>, (ResponseCode, &'static str)> {
        if !self.lock_failures().allows(source.addr, Instant::now()) {
            self.refuse(source.transport, "auth_rate_limited");
            crate::audit::auth_failure(
                "native",
                source.addr,
                None,
                "refused: too many failed authentications from this address",
            );
            return Err((
                ResponseCode::AuthenticationFailed,
                "too many failed authentications from this address; try again later",
            ));
        }
        if running.fetch_add(1, Ordering::AcqRel) >= max {
            running.fetch_sub(1, Ordering::AcqRel);
            self.refuse(source.transport, "verify_busy");
            return Err((
                ResponseCode::ServerTooBusy,
                "too many authentications in progress; try again",
            ));
        }
        Ok(VerifySlot(running))
    }

    /// Count a failed answer against `source`'s budget, and log it in the audit log.
    fn authentication_failed(&self, source: Source, identity: &str, why: &str) {
        self.lock_failures().failed(source.addr, Instant::now());
        crate::audit::auth_failure("native", source.addr, Some(identity), why);
    }

    /// An opCode 200 answer: errors before its challenge is found answer the answer itself
    /// (RD digest of `answer_hb`); from then on the original request is answered (its digest).
    fn challenge_answer(
        &self,
        answer: &Message,
        answer_hb: Option<&[u8]>,
        source: Source,
    ) -> Vec<Message> {
        let Body::ChallengeAnswer {
            auth_type,
            identity_handle,
            identity_index,
            signed_response,
        } = &answer.body
        else {
            return vec![self.error(
                &answer.envelope,
                &answer.header,
                answer_hb,
                ResponseCode::ProtocolError,
                "bad body",
            )];
        };
        let slot = match self.admit_verification(source) {
            Ok(slot) => slot,
            Err((code, text)) => {
                return vec![self.error(&answer.envelope, &answer.header, answer_hb, code, text)]
            }
        };
        let pending = {
            let mut table = self.lock_pending();
            let (id, now) = (answer.envelope.session_id, Instant::now());
            match table.get(id, source.addr, now) {
                Some(p) if !Self::may_answer(p, source) => None,
                _ => Some(table.take(id, source.addr, now)),
            }
        };
        let Some(pending) = pending else {
            drop(slot);
            return vec![self.login_answer_from_elsewhere(answer, source)];
        };
        let Some(pending) = pending else {
            return vec![self.error(
                &answer.envelope,
                &answer.header,
                answer_hb,
                ResponseCode::AuthenticationTimeout,
                "no pending challenge for this session (expired or unknown)",
            )];
        };
        // The original request is answered with the answer's request id.
        let original_hb = pending.hb;
        let original_request_id = pending.request.envelope.request_id;
        // Its session id stays the original request's (0 outside a session, the session's
        // inside one), as Handle.Net's server answers (LIST_HANDLES_RESP_1_HEX).
        let mut original = pending.request;
        original.envelope.request_id = answer.envelope.request_id;
        let who = format!("{identity_index}:{identity_handle}");
        let verified = self.verify_identity(
            auth_type,
            identity_handle,
            *identity_index,
            &pending.nonce,
            &pending.digest.digest,
            signed_response,
            original.envelope.negotiated_version(),
        );
        drop(slot);
        let identity = match verified {
            Ok(Some(id)) => id,
            Ok(None) => {
                if original.header.op_code == op::LOGIN_ID_SYSTEM {
                    self.key_login_failed(source);
                }
                self.authentication_failed(source, &who, "challenge answer did not verify");
                return vec![self.error(
                    &original.envelope,
                    &original.header,
                    Some(&original_hb),
                    ResponseCode::AuthenticationFailed,
                    "Authentication failed",
                )];
            }
            Err(f) => {
                if original.header.op_code == op::LOGIN_ID_SYSTEM {
                    self.key_login_failed(source);
                }
                self.authentication_failed(source, &who, &f.message);
                return vec![self.failure(
                    &original.envelope,
                    &original.header,
                    Some(&original_hb),
                    &f,
                )];
            }
        };
        // Inside a session, the answer may authenticate it (see `session`).
        self.session_answered(
            answer.envelope.session_id,
            original_request_id,
            &identity,
            source,
        );
        let hb = Some(original_hb.as_slice());
        match original.header.op_code {
            op::RESOLUTION => {
                vec![self.resolution(&original, hb, Some(&identity), source)]
            }
            op::LOGIN_ID_SYSTEM => {
                vec![self.key_login_verified(&original, hb, identity, source)]
            }
            _ => {
                let responses = self.admin(&original, hb, &identity);
                self.audit_write(&original, &identity, source, &responses);
                responses
            }
        }
    }

    /// One audit line for an administrative request and its answer (lists are reads).
    fn audit_write(&self, req: &Message, identity: &Identity, source: Source, out: &[Message]) {
        let (op_name, handle, indexes) = match (&req.body, req.header.op_code) {
            (Body::HandleValues { handle, values }, code) => (
                op_label(code),
                handle.as_str(),
                crate::audit::indexes(values.iter().map(|v| v.index)),
            ),
            (Body::RemoveValues { handle, indexes }, code) => (
                op_label(code),
                handle.as_str(),
                crate::audit::indexes(indexes.iter().copied()),
            ),
            (Body::Handle { handle }, code @ (op::DELETE_HANDLE | op::HOME_NA | op::UNHOME_NA)) => {
                (op_label(code), handle.as_str(), String::new())
            }
            _ => return,
        };
        let result = match out.first() {
            Some(m) if m.header.response_code == ResponseCode::Success.code() => "ok".to_string(),
            Some(m) => match &m.body {
                Body::Error { message } => format!("RC {}: {message}", m.header.response_code),
                _ => format!("RC {}", m.header.response_code),
            },
            None => "no answer".to_string(),
        };
        crate::audit::write(
            crate::audit::Origin::Client("native", source.addr),
            &identity.to_string(),
            op_name,
            handle,
            &indexes,
            &result,
        );
    }

    fn admin(&self, req: &Message, hb: Option<&[u8]>, identity: &Identity) -> Vec<Message> {
        let env = &req.envelope;
        let header = &req.header;
        let engine = &self.engine();
        let parse = |text: &str| engine.parse_handle(text);
        let done = |r: Result<Body, Failure>| match r {
            Ok(body) => vec![self.respond(env, header, hb, ResponseCode::Success, body)],
            Err(f) => vec![self.failure(env, header, hb, &f)],
        };
        match (&req.body, header.op_code) {
            (Body::HandleValues { handle, values }, op::CREATE_HANDLE) => done((|| {
                let overwrite = if header.has(flag::OVERWRITE) {
                    Overwrite::Yes
                } else {
                    Overwrite::No
                };
                if header.has(flag::MINT) {
                    let h = engine.mint_handle(handle)?;
                    engine.create(identity, &h, values.clone(), overwrite)?;
                    Ok(Body::MintedHandle {
                        handle: h.as_str().to_string(),
                    })
                } else {
                    engine.create(identity, &parse(handle)?, values.clone(), overwrite)?;
                    Ok(Body::Empty)
                }
            })()),
            (Body::HandleValues { handle, values }, op::ADD_VALUE) => done(
                parse(handle)
                    .and_then(|h| {
                        engine.add_values(identity, &h, values.clone(), header.has(flag::OVERWRITE))
                    })
                    .map(|_| Body::Empty),
            ),
            (Body::HandleValues { handle, values }, op::MODIFY_VALUE) => done(
                parse(handle)
                    .and_then(|h| engine.modify_values(identity, &h, values.clone()))
                    .map(|_| Body::Empty),
            ),
            (Body::RemoveValues { handle, indexes }, op::REMOVE_VALUE) => done(
                parse(handle)
                    .and_then(|h| engine.remove_values(identity, &h, indexes))
                    .map(|_| Body::Empty),
            ),
            (Body::Handle { handle }, op::DELETE_HANDLE) => done(
                parse(handle)
                    .and_then(|h| engine.delete(identity, &h))
                    .map(|_| Body::Empty),
            ),
            (Body::Handle { handle }, op::HOME_NA | op::UNHOME_NA) => done(
                Handle::parse_lenient(handle, engine.policy().suffix_case)
                    .ok()
                    .and_then(|h| h.described_prefix())
                    .ok_or_else(|| {
                        Failure::new(
                            ResponseCode::InvalidHandle,
                            "home and unhome name a prefix handle 0.NA/<prefix>",
                        )
                    })
                    .and_then(|p| engine.set_homed(identity, &p, header.op_code == op::HOME_NA))
                    .map(|_| Body::Empty),
            ),
            (Body::Handle { handle }, op::LIST_HANDLES) => {
                let listed = Handle::parse_lenient(handle, engine.policy().suffix_case)
                    .ok()
                    .and_then(|h| h.described_prefix())
                    .ok_or_else(|| {
                        Failure::new(
                            ResponseCode::InvalidHandle,
                            "list needs a prefix handle 0.NA/<prefix>",
                        )
                    })
                    .and_then(|p| engine.list_handles(identity, &p, None));
                match listed {
                    Ok((_, handles)) => self.list_messages(env, header, hb, handles),
                    Err(f) => vec![self.failure(env, header, hb, &f)],
                }
            }
            _ => vec![self.error(
                env,
                header,
                hb,
                ResponseCode::OperationNotSupported,
                "Operation not supported",
            )],
        }
    }

    fn list_homed(&self, req: &Message, hb: Option<&[u8]>) -> Vec<Message> {
        match self.engine().homed_prefixes() {
            Ok(list) => {
                let handles = list
                    .iter()
                    .map(|p| p.na_handle().as_str().to_string())
                    .collect();
                self.list_messages(&req.envelope, &req.header, hb, handles)
            }
            Err(f) => vec![self.failure(&req.envelope, &req.header, hb, &f)],
        }
    }

    /// Split a list into messages of at most [`LIST_PER_MESSAGE`], CN on all but the last.
    fn list_messages(
        &self,
        env: &Envelope,
        header: &Header,
        hb: Option<&[u8]>,
        handles: Vec<String>,
    ) -> Vec<Message> {
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
                let mut m = self.respond(
                    env,
                    header,
                    hb,
                    ResponseCode::Success,
                    Body::HandleList { handles },
                );
                if i < last {
                    m.header.op_flag |= flag::CONTINUOUS;
                }
                m
            })
            .collect()
    }

    /// OpCode 201: another server asks whether a challenge answer is valid for an identity
    /// held here. Answered over TCP to the configured `verify_peers` only, through the same
    /// failure budget and concurrency bound as challenge answers, with bounded work.
    fn verify_challenge(&self, req: &Message, hb: Option<&[u8]>, source: Source) -> Message {
        let Body::VerifyChallenge {
            handle,
            index,
            nonce,
            digest,
            signed_response,
        } = &req.body
        else {
            return self.error(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::ProtocolError,
                "bad body",
            );
        };
        if !self.limits.verify_peers.contains(&source.addr) {
            self.refuse(source.transport, "verify_refused");
            return self.error(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::OperationNotSupported,
                "VERIFY_CHALLENGE is answered only to this node's configured peers",
            );
        }
        let slot = match self.admit_verification(source) {
            Ok(slot) => slot,
            Err((code, text)) => return self.error(&req.envelope, &req.header, hb, code, text),
        };
        // Which key kind: HS_SECKEY answers start with an algorithm byte, HS_PUBKEY answers
        // with a length-prefixed algorithm name; try both against the handle's keys.
        let version = req.envelope.negotiated_version();
        let valid = [types::HS_SECKEY, types::HS_PUBKEY].iter().any(|kind| {
            matches!(
                self.verify_identity(
                    kind,
                    handle,
                    *index,
                    nonce,
                    digest,
                    signed_response,
                    version
                ),
                Ok(Some(_))
            )
        });
        drop(slot);
        if !valid {
            self.authentication_failed(
                source,
                &format!("{index}:{handle}"),
                "VERIFY_CHALLENGE answer did not verify",
            );
        }
        self.respond(
            &req.envelope,
            &req.header,
            hb,
            ResponseCode::Success,
            Body::VerifyResult { valid },
        )
    }
}

/// A running verification; frees its slot when dropped.
struct VerifySlot<'a>(&'a AtomicUsize);

impl Drop for VerifySlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

mod certify;
pub mod sdk;
pub mod tcp;
pub mod udp;
pub use sdk::{AnonymousReads, ConnectionId, ConnectionLogin};

mod session;
#[cfg(test)]
mod tests;

use certify::SignBudget;
pub use certify::SignLimits;
