//! The native Handle protocol's request handling, shared by the UDP and TCP front ends and
//! free of sockets: one decoded request in, the encoded response messages out.
//!
//! - resolution and site information for everyone (slash-less queries mean `0.NA/X`);
//! - administration (create/add/modify/remove/delete/list) only over TCP and only after the
//!   402 challenge: a fresh 16-byte nonce, the request's digest (SHA-256 for ≥ 2.7), the
//!   pending request kept under a random session id for [`CHALLENGE_TTL`], answered with
//!   opCode 200 by HS_SECKEY (PBKDF2-HMAC-SHA1 or SHA-1 form) or HS_PUBKEY (RSA/DSA);
//! - authorization is the engine's, the same as for the REST API.
//!
//! Responses are sent at the negotiated version, copy the request's echoed flags, carry the
//! node's site serial and an expiration 12 hours ahead (Java clients reject expired answers),
//! and only use response codes every Handle client knows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;

use super::udp::{Reuse, RELAYED_REUSE_SECS};
use crate::auth::challenge::{
    request_digest, verify_pubkey_answer, verify_seckey_answer_with_limit,
};
use crate::auth::Identity;
use crate::metrics::Metrics;
use crate::model::{types, Handle, PublicKey, ResponseCode};
use crate::resolve::cache::CachedAnswer;
use crate::resolve::recursion::Recursor;
use crate::resolve::{Engine, Failure, Overwrite, Query};
use crate::wire::handle::message::{
    flag, header_and_body, op, Body, Envelope, Header, Message, RequestDigest, WireError,
    OUR_VERSION,
};

/// How long a challenge may wait for its answer (Handle.Net `max_auth_time`).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(20);
/// Most challenges pending at once; beyond this new ones get RC 3 (server too busy).
pub const MAX_PENDING_CHALLENGES: usize = 10_000;
/// Handles per LIST_HANDLES message (Handle.Net sends 50 per message, CN on all but the last).
pub const LIST_PER_MESSAGE: usize = 50;
/// PBKDF2 work (iterations × blocks) a server accepts in one HS_SECKEY answer: 20 times what
/// clients use (10 000 iterations, one block), so an answer cannot pin a core for seconds.
pub const MAX_PBKDF2_WORK: u32 = 200_000;
/// Expiration put in responses: now + 12 h.
pub const RESPONSE_LIFETIME_SECS: u64 = 43_200;

/// The transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

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
    transport: Transport,
    started: Instant,
}

struct Pending {
    request: Message,
    digest: RequestDigest,
    nonce: [u8; 16],
    expires: Instant,
}

/// Native protocol handler. Shared by every connection and socket.
pub struct NativeService {
    engine: Engine,
    /// Set on nodes with recursion enabled: resolutions with REC for identifiers this node is
    /// not responsible for are resolved through the hierarchy.
    recursor: Option<Arc<Recursor>>,
    metrics: Metrics,
    site: Vec<u8>,
    site_serial: u16,
    pending: Mutex<HashMap<u32, Pending>>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
        _ => "other",
    }
}

impl NativeService {
    /// `site` is the node's encoded HS_SITE record (answered to GET_SITE_INFO).
    pub fn new(engine: Engine, metrics: Metrics, site: &crate::model::SiteInfo) -> NativeService {
        NativeService {
            engine,
            recursor: None,
            metrics,
            site: site.encode(),
            site_serial: site.serial,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Resolve identifiers this node does not home through `recursor` (REC requests).
    pub fn with_recursor(mut self, recursor: Arc<Recursor>) -> NativeService {
        self.recursor = Some(recursor);
        self
    }

    /// The registry's change-log sequence (answers from this node's data change with it).
    pub(crate) fn registry_seq(&self) -> u64 {
        self.engine.registry().last_seq()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handle one complete request: `envelope` and the `message` bytes after it (reassembled
    /// for UDP). Returns the encoded responses, in order (several for list operations); none
    /// when the input deserves no answer (it is a response, or too broken to answer).
    /// Requests that need recursion are answered by awaiting it.
    pub async fn handle(
        &self,
        envelope: Envelope,
        message: &[u8],
        transport: Transport,
    ) -> Vec<Vec<u8>> {
        match self.process(envelope, message, transport) {
            Outcome::Done(responses) => responses,
            Outcome::Recurse(job) => self.recurse(*job).await,
        }
    }

    /// The synchronous part: everything but recursion, which comes back as a job for
    /// [`NativeService::recurse`] (so a UDP loop can spawn it instead of waiting).
    pub fn process(&self, envelope: Envelope, message: &[u8], transport: Transport) -> Outcome {
        let started = Instant::now();
        if let Some(job) = self.recursion_job(envelope, message, transport, started) {
            return Outcome::Recurse(Box::new(job));
        }
        let (op_code, responses) = self.dispatch(envelope, message, transport);
        Outcome::Done(self.finish(op_code, transport, started, &responses))
    }

    fn finish(
        &self,
        op_code: u32,
        transport: Transport,
        started: Instant,
        responses: &[Message],
    ) -> Vec<Vec<u8>> {
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
        responses.iter().map(Message::encode).collect()
    }

    /// A resolution with REC for an identifier this node is not responsible for, on a node
    /// that recurses.
    fn recursion_job(
        &self,
        envelope: Envelope,
        message: &[u8],
        transport: Transport,
        started: Instant,
    ) -> Option<RecursionJob> {
        self.recursor.as_ref()?;
        if read_u32(message, 0)? != op::RESOLUTION || read_u32(message, 4)? != 0 {
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
        let parsed = Handle::parse_lenient(handle, self.engine.policy().suffix_case).ok()?;
        if self.engine.is_responsible(&parsed).unwrap_or(true) {
            return None;
        }
        Some(RecursionJob {
            hb: header_and_body(message).map(<[u8]>::to_vec),
            handle: parsed,
            indexes: indexes.clone(),
            types: types.clone(),
            request,
            transport,
            started,
        })
    }

    /// Resolve a [`RecursionJob`] through the hierarchy and build its answer.
    pub async fn recurse(&self, job: RecursionJob) -> Vec<Vec<u8>> {
        self.recurse_for_reuse(job).await.0
    }

    /// [`NativeService::recurse`], also saying how long the answer may be replayed for the
    /// same request bytes: what is left of its cache lifetime, at most
    /// [`super::udp::RELAYED_REUSE_SECS`].
    pub async fn recurse_for_reuse(&self, job: RecursionJob) -> (Vec<Vec<u8>>, Reuse) {
        let Some(recursor) = &self.recursor else {
            return (Vec::new(), Reuse::Never);
        };
        let now = now_unix();
        let req = &job.request;
        let hb = job.hb.as_deref();
        let answer = recursor
            .resolve_aged(
                &job.handle,
                &job.indexes,
                &job.types,
                req.header.recursion_count,
                now,
            )
            .await;
        // Replayed no longer than the cache entry stays fresh (what is left of it).
        let reuse = match &answer {
            Ok((_, 0)) | Err(_) => Reuse::Never,
            Ok((_, left)) => Reuse::Until(now + u64::from(*left).min(RELAYED_REUSE_SECS)),
        };
        let answer = answer.map(|(a, _)| a);
        let text = match &req.body {
            Body::Resolution { handle, .. } => handle.clone(),
            _ => job.handle.as_str().to_string(),
        };
        let response = match answer {
            Ok(CachedAnswer::Values(values)) => self.respond(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::Success,
                Body::Values {
                    handle: text,
                    values,
                },
            ),
            Ok(CachedAnswer::HandleNotFound) => self.error(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::HandleNotFound,
                "Handle Not Found",
            ),
            Ok(CachedAnswer::ValuesNotFound) => self.error(
                &req.envelope,
                &req.header,
                hb,
                ResponseCode::ValuesNotFound,
                "Values Not Found",
            ),
            Err(f) => self.failure(&req.envelope, &req.header, hb, &f),
        };
        let mut response = response;
        // The answer did not come from this node's own data.
        response.header.op_flag &= !flag::AUTHORITATIVE;
        (
            self.finish(op::RESOLUTION, job.transport, job.started, &[response]),
            reuse,
        )
    }

    fn dispatch(
        &self,
        envelope: Envelope,
        message: &[u8],
        transport: Transport,
    ) -> (u32, Vec<Message>) {
        // What we can answer even when the body does not decode.
        let raw_header = Header {
            op_code: read_u32(message, 0).unwrap_or(0),
            response_code: read_u32(message, 4).unwrap_or(0),
            op_flag: read_u32(message, 8).unwrap_or(0),
            site_serial: 0xFFFF,
            recursion_count: message.get(14).copied().unwrap_or(0),
            expiration: 0,
        };
        if raw_header.response_code != 0 {
            return (raw_header.op_code, Vec::new()); // A response sent to us: never answer.
        }
        let request = match Message::decode(envelope, message) {
            Ok(m) => m,
            Err(e) => {
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
                        None,
                        ResponseCode::ProtocolError,
                        &text,
                    );
                    return (0, vec![resp]);
                }
                let resp = self.error(&envelope, &raw_header, None, code, &text);
                return (raw_header.op_code, vec![resp]);
            }
        };
        let op_code = request.header.op_code;
        let hb = header_and_body(message).map(<[u8]>::to_vec);
        let responses = match op_code {
            op::RESOLUTION => vec![self.resolution(&request, hb.as_deref(), None)],
            op::GET_SITE_INFO => vec![self.respond(
                &request.envelope,
                &request.header,
                hb.as_deref(),
                ResponseCode::Success,
                Body::SiteInfo {
                    site: self.site.clone(),
                },
            )],
            op::CHALLENGE_RESPONSE => self.challenge_answer(&request, transport),
            op::VERIFY_CHALLENGE => vec![self.verify_challenge(&request, hb.as_deref())],
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
            op::CREATE_HANDLE
            | op::ADD_VALUE
            | op::MODIFY_VALUE
            | op::REMOVE_VALUE
            | op::DELETE_HANDLE
            | op::LIST_HANDLES => match self.mirror_of(&request) {
                // A read-only mirror refuses writes before any challenge: it may not hold the
                // administrators' keys, and the client should go to the primary.
                Some(up) if op_code != op::LIST_HANDLES => vec![self.error(
                    &request.envelope,
                    &request.header,
                    hb.as_deref(),
                    ResponseCode::ServerBackup,
                    &format!("read-only mirror of {up}"),
                )],
                _ => vec![self.challenge(request, hb.as_deref())],
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

    /// The upstream a write's target is mirrored from, if this node is a read-only mirror of it.
    fn mirror_of(&self, request: &Message) -> Option<String> {
        let text = match &request.body {
            Body::HandleValues { handle, .. }
            | Body::RemoveValues { handle, .. }
            | Body::Handle { handle } => handle,
            _ => return None,
        };
        let handle = Handle::parse_lenient(text, self.engine.policy().suffix_case).ok()?;
        self.engine.mirror_of(&handle).map(str::to_string)
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
        let mut op_flag = (req_header.op_flag & flag::ECHOED) | flag::AUTHORITATIVE;
        if digest.is_some() {
            op_flag |= flag::RETURN_DIGEST;
        } else {
            op_flag &= !flag::RETURN_DIGEST;
        }
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
                expiration: (now_unix() + RESPONSE_LIFETIME_SECS).min(u64::from(u32::MAX)) as u32,
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

    fn failure(&self, env: &Envelope, header: &Header, hb: Option<&[u8]>, f: &Failure) -> Message {
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

    fn resolution(&self, req: &Message, hb: Option<&[u8]>, identity: Option<&Identity>) -> Message {
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
        let parsed = match Handle::parse_lenient(handle, self.engine.policy().suffix_case) {
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
        let query = Query {
            handle: parsed,
            indexes: indexes.clone(),
            types: types.clone(),
            public_only: req.header.has(flag::PUBLIC_ONLY),
            refer: !req.header.has(flag::DO_NOT_REFER),
        };
        match self.engine.resolve(&query, identity) {
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
            Err(f) if f.code == ResponseCode::AuthenticationNeeded && identity.is_none() => {
                self.challenge(req.clone(), hb)
            }
            Err(f) => self.failure(&req.envelope, &req.header, hb, &f),
        }
    }

    /// Answer with a 402 challenge and remember the request under a new session id.
    fn challenge(&self, request: Message, hb: Option<&[u8]>) -> Message {
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
        let session_id = {
            let mut pending = self.lock_pending();
            if pending.len() >= MAX_PENDING_CHALLENGES {
                pending.retain(|_, p| p.expires > now);
            }
            if pending.len() >= MAX_PENDING_CHALLENGES {
                drop(pending);
                return self.error(
                    &request.envelope,
                    &request.header,
                    Some(hb),
                    ResponseCode::ServerTooBusy,
                    "too many pending authentications",
                );
            }
            let mut id = 0u32;
            while id == 0 || pending.contains_key(&id) {
                id = rand::thread_rng().next_u32() & 0x7fff_ffff;
            }
            pending.insert(
                id,
                Pending {
                    request: request.clone(),
                    digest: RequestDigest {
                        hash_type,
                        digest: digest.clone(),
                    },
                    nonce,
                    expires: now + CHALLENGE_TTL,
                },
            );
            id
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

    /// Verify a challenge answer against the identity's keys in this node's registry.
    fn verify_identity(
        &self,
        auth_type: &str,
        identity_handle: &str,
        index: u32,
        nonce: &[u8],
        digest: &[u8],
        signed: &[u8],
    ) -> Result<Option<Identity>, Failure> {
        let handle = Handle::parse_lenient(identity_handle, self.engine.policy().suffix_case)
            .map_err(|e| Failure::new(ResponseCode::AuthenticationFailed, e.to_string()))?;
        let Some(record) = self.engine.registry().get(&handle)? else {
            return Ok(None);
        };
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
        for v in record
            .values
            .iter()
            .filter(|v| v.is_type(wanted) && (index == 0 || v.index == index))
        {
            let ok = if wanted == types::HS_SECKEY {
                verify_seckey_answer_with_limit(&v.data, nonce, digest, signed, MAX_PBKDF2_WORK)
                    .unwrap_or(false)
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

    fn challenge_answer(&self, answer: &Message, transport: Transport) -> Vec<Message> {
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
                None,
                ResponseCode::ProtocolError,
                "bad body",
            )];
        };
        let pending = {
            let mut table = self.lock_pending();
            table.remove(&answer.envelope.session_id)
        };
        let Some(pending) = pending.filter(|p| p.expires > Instant::now()) else {
            return vec![self.error(
                &answer.envelope,
                &answer.header,
                None,
                ResponseCode::AuthenticationTimeout,
                "no pending challenge for this session (expired or unknown)",
            )];
        };
        // The original request is answered with the answer's request id.
        let mut original = pending.request;
        original.envelope.request_id = answer.envelope.request_id;
        original.envelope.session_id = answer.envelope.session_id;
        let identity = match self.verify_identity(
            auth_type,
            identity_handle,
            *identity_index,
            &pending.nonce,
            &pending.digest.digest,
            signed_response,
        ) {
            Ok(Some(id)) => id,
            Ok(None) => {
                tracing::info!(identity = %format!("{identity_index}:{identity_handle}"), "native authentication failed");
                return vec![self.error(
                    &original.envelope,
                    &original.header,
                    None,
                    ResponseCode::AuthenticationFailed,
                    "Authentication failed",
                )];
            }
            Err(f) => return vec![self.failure(&original.envelope, &original.header, None, &f)],
        };
        if op::is_admin(original.header.op_code) && transport == Transport::Udp {
            return vec![self.error(
                &original.envelope,
                &original.header,
                None,
                ResponseCode::OperationNotSupported,
                "administrative requests are accepted over TCP only",
            )];
        }
        let hb = {
            let bytes = original.encode_message();
            header_and_body(&bytes).map(<[u8]>::to_vec)
        };
        match original.header.op_code {
            op::RESOLUTION => vec![self.resolution(&original, hb.as_deref(), Some(&identity))],
            _ => self.admin(&original, hb.as_deref(), &identity),
        }
    }

    fn admin(&self, req: &Message, hb: Option<&[u8]>, identity: &Identity) -> Vec<Message> {
        let env = &req.envelope;
        let header = &req.header;
        let engine = &self.engine;
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
        match self.engine.homed_prefixes() {
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

    fn verify_challenge(&self, req: &Message, hb: Option<&[u8]>) -> Message {
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
        // Which key kind: HS_SECKEY answers start with an algorithm byte, HS_PUBKEY answers
        // with a length-prefixed algorithm name; try both against the handle's keys.
        let valid = [types::HS_SECKEY, types::HS_PUBKEY].iter().any(|kind| {
            matches!(
                self.verify_identity(kind, handle, *index, nonce, digest, signed_response),
                Ok(Some(_))
            )
        });
        self.respond(
            &req.envelope,
            &req.header,
            hb,
            ResponseCode::Success,
            Body::VerifyResult { valid },
        )
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests;
