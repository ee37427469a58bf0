//! The 402 challenge on the native front end: the table and the key checks are sans-IO in
//! [`crate::auth::challenges`] and the key lookup is the engine's
//! ([`crate::resolve::Engine::authenticate_challenge_answer`]); this file is the front end's
//! part around them:
//!
//! - issuing: a fresh nonce, a random id no session holds (or a session's own), RC 3 when
//!   the address or the table is full;
//! - admission of every key derivation or signature check: the address's failure budget must
//!   not be spent and at most [`MAX_CONCURRENT_VERIFICATIONS`] run at once (RC 3 beyond);
//! - answering: errors before the challenge is found answer the answer itself (its digest),
//!   from then on the original request is answered (its digest, the answer's request id),
//!   as the identity the answer proved; failures count against the address and go to the
//!   audit log;
//! - VERIFY_CHALLENGE for the configured peers, through the same admission.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rand::RngCore;

use super::resolve::Reader;
use super::{AnswerFailure, NativeService, Source, MAX_CONCURRENT_VERIFICATIONS};
use crate::auth::challenges::Unanswerable;
use crate::auth::pending::PendingFull;
use crate::model::{types, ResponseCode};
use crate::wire::handle::message::{Body, Message};
use crate::wire::handle::{ChallengeAnswer, Request, RequestMessage, Responder, VerifyChallenge};

/// A running verification; frees its slot when dropped.
pub(super) struct VerifySlot<'a>(&'a AtomicUsize);

impl Drop for VerifySlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl NativeService {
    /// Answer `req` with a 402 challenge and remember it under a new session id.
    pub(super) fn challenge(
        &self,
        req: &RequestMessage,
        r: &Responder<'_>,
        source: Source,
    ) -> Message {
        self.challenge_as(req, r, source, None)
    }

    /// [`NativeService::challenge`], under `session_id` when given (a challenge inside a
    /// session reuses the session's id, as Handle.Net does) instead of a fresh id that no
    /// session holds.
    pub(super) fn challenge_as(
        &self,
        req: &RequestMessage,
        r: &Responder<'_>,
        source: Source,
        session_id: Option<u32>,
    ) -> Message {
        let Some(hb) = r.request_bytes() else {
            return r.error(ResponseCode::ProtocolError, "bad message");
        };
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        // A key login may be answered only on the connection it was issued on.
        let bound_to = match req.request {
            Request::KeyLogin(_) => source.connection,
            _ => None,
        };
        let issued = {
            let mut challenges = self.lock_challenges();
            let issued = challenges.issue(
                req.clone(),
                hb,
                r.version(),
                source.addr,
                bound_to,
                nonce,
                Instant::now(),
                || match session_id {
                    Some(id) => id,
                    None => self.unused_session_id(),
                },
            );
            self.metrics.pending_challenges.set(challenges.len() as i64);
            issued
        };
        match issued {
            Ok(c) => r.challenge(c.session_id, &c.nonce, c.digest),
            Err(full) => {
                self.refuse(
                    source.transport,
                    match full {
                        PendingFull::Source => "challenge_source_full",
                        PendingFull::Total => "challenge_table_full",
                    },
                );
                r.error(ResponseCode::ServerTooBusy, &full.to_string())
            }
        }
    }

    /// Admission for one key derivation or signature check from `source`: its failure budget
    /// must not be spent, and fewer than [`MAX_CONCURRENT_VERIFICATIONS`] may run at once.
    /// The returned guard frees the slot when dropped.
    pub(super) fn admit_verification(
        &self,
        source: Source,
    ) -> Result<VerifySlot<'_>, (ResponseCode, &'static str)> {
        self.admit_work(source, &self.verifying, MAX_CONCURRENT_VERIFICATIONS)
    }

    /// [`Self::admit_verification`] for any bounded kind of authentication work: `running`
    /// counts it, at most `max` at once.
    pub(super) fn admit_work<'a>(
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
    pub(super) fn authentication_failed(&self, source: Source, identity: &str, why: &str) {
        self.lock_failures().failed(source.addr, Instant::now());
        crate::audit::auth_failure("native", source.addr, Some(identity), why);
    }

    /// An opCode 200 answer (`r` answers it): errors before its challenge is found answer the
    /// answer itself (RD digest of its bytes); from then on the original request is answered
    /// (its digest).
    pub(super) fn challenge_answer(
        &self,
        answer: &ChallengeAnswer,
        r: &Responder<'_>,
        source: Source,
    ) -> Vec<Message> {
        let slot = match self.admit_verification(source) {
            Ok(slot) => slot,
            Err((code, text)) => return vec![r.error(code, text)],
        };
        let session_id = r.envelope().session_id;
        let taken = self.lock_challenges().answer(
            session_id,
            source.addr,
            source.connection,
            Instant::now(),
        );
        let pending = match taken {
            Ok(pending) => pending,
            Err(Unanswerable::OtherConnection) => {
                drop(slot);
                return vec![self.login_answer_from_elsewhere(r, source)];
            }
            Err(e @ Unanswerable::NotPending) => {
                return vec![r.error(ResponseCode::AuthenticationTimeout, &e.to_string())]
            }
        };
        // The original request is answered with the answer's request id. Its session id
        // stays the original request's (0 outside a session, the session's inside one), as
        // Handle.Net's server answers (LIST_HANDLES_RESP_1_HEX).
        let original_request_id = pending.request.envelope.request_id;
        let mut envelope = pending.request.envelope;
        envelope.request_id = r.envelope().request_id;
        let who = format!("{}:{}", answer.identity_index, answer.identity_handle);
        let verified = self.engine().authenticate_challenge_answer(&pending.proof(
            &answer.auth_type,
            &answer.identity_handle,
            answer.identity_index,
            &answer.signed_response,
        ));
        drop(slot);
        let original = &pending.request;
        let r = self.responder(&envelope, &original.header, Some(&pending.request_bytes));
        let is_login = matches!(original.request, Request::KeyLogin(_));
        let identity = match verified {
            Ok(Some(id)) => id,
            Ok(None) => {
                if is_login {
                    self.key_login_failed(source);
                }
                self.authentication_failed(source, &who, "challenge answer did not verify");
                return vec![r.error(ResponseCode::AuthenticationFailed, "Authentication failed")];
            }
            Err(f) => {
                if is_login {
                    self.key_login_failed(source);
                }
                self.authentication_failed(source, &who, &f.to_string());
                return vec![r.failure(&f)];
            }
        };
        // Inside a session, the answer may authenticate it (see `session`).
        self.session_answered(session_id, original_request_id, &identity, source);
        match &original.request {
            Request::Resolve(q) => {
                vec![self.resolution(original, q, &r, Reader::As(&identity), source)]
            }
            Request::KeyLogin(login) => vec![self.key_login_verified(login, &r, identity, source)],
            Request::Admin(admin) => self.admin_as(admin, &r, &identity, source),
            // Only resolutions, key logins and administration are ever challenged.
            _ => vec![r.error(
                ResponseCode::OperationNotSupported,
                "Operation not supported",
            )],
        }
    }

    /// OpCode 201: another server asks whether a challenge answer is valid for an identity
    /// held here. Answered over TCP to the configured `verify_peers` only, through the same
    /// failure budget and concurrency bound as challenge answers, with bounded work.
    pub(super) fn verify_challenge(
        &self,
        v: &VerifyChallenge,
        r: &Responder<'_>,
        source: Source,
    ) -> Message {
        if !self.limits.verify_peers.contains(&source.addr) {
            self.refuse(source.transport, "verify_refused");
            return r.error(
                ResponseCode::OperationNotSupported,
                "VERIFY_CHALLENGE is answered only to this node's configured peers",
            );
        }
        let slot = match self.admit_verification(source) {
            Ok(slot) => slot,
            Err((code, text)) => return r.error(code, text),
        };
        // Which key kind: HS_SECKEY answers start with an algorithm byte, HS_PUBKEY answers
        // with a length-prefixed algorithm name; try both against the handle's keys.
        let valid = [types::HS_SECKEY, types::HS_PUBKEY].iter().any(|kind| {
            let proof = crate::auth::challenges::Proof {
                auth_type: kind,
                identity_handle: &v.handle,
                identity_index: v.index,
                nonce: &v.nonce,
                digest: &v.digest,
                signed_response: &v.signed_response,
                version: r.version(),
            };
            matches!(
                self.engine().authenticate_challenge_answer(&proof),
                Ok(Some(_))
            )
        });
        drop(slot);
        if !valid {
            self.authentication_failed(
                source,
                &format!("{}:{}", v.index, v.handle),
                "VERIFY_CHALLENGE answer did not verify",
            );
        }
        r.ok(Body::VerifyResult { valid })
    }
}
