//! Handle.Net 9 sessions on the native front end (the vectors' `HN_SESSION` state machine;
//! the sans-IO parts are [`crate::auth::session`] and [`crate::auth::credential`]).
//!
//! - **OC_SESSION_SETUP (400)**, TCP only (over UDP it creates no state: RC 2, on which
//!   Handle.Net clients go on to TCP at once). Key exchange mode 4 (Diffie-Hellman in the
//!   client's group) at protocol ≥ 2.7; an address holding `max_sessions_per_client` sessions
//!   is refused before any key agreement, the others need the address's failure budget and
//!   one of [`super::MAX_CONCURRENT_SESSION_SETUPS`] slots (not the challenge answers'). The
//!   answer: RC 1,
//!   the new session id in the envelope, mode 4 and `int4 3 || DH_PUB_KEY`.
//! - **Requests naming a session**: an unknown id (neither a live session nor a pending
//!   challenge) gets RC 500. An HS_MAC credential is checked (wrong → 502, counter seen → 505).
//!   Administration and PO-clear resolutions in an *authenticated* session run as its
//!   identity without a challenge (no MAC → 404); in an unauthenticated one they are
//!   challenged under the session's own id, and an answer by the setup's identity to the
//!   challenge of a MAC-verified request authenticates the session.
//! - **OC_SESSION_TERMINATE (401)**, MAC'ed: drops the session.
//! - Certified (CT) answers inside a session are HS_MAC-signed with the session key and the
//!   server's counter ([`NativeService::mac_session_answers`]); the setup answer never is.
//!
//! - **Encrypted messages** (envelope flag 0x40: `IV ‖ AES-128-CBC` of everything after the
//!   envelope under the session key's first 16 bytes, what Handle.Net ≥ 2.8 clients send for
//!   writes of values anyone may not read) are decrypted before anything else
//!   ([`NativeService::decrypt_request`]); answers are encrypted as Handle.Net's server
//!   encrypts them ([`NativeService::encrypt_session_answers`]).
//!
//! Sessions are memory only: a restart ends them all (clients get RC 500 and set up a new one).

use std::time::{Duration, Instant};

use rand::RngCore;

use super::resolve::Reader;
use super::{AnswerFailure, NativeService, Source, Transport};
use crate::auth::credential::{self, Credential};
use crate::auth::session::{self as hs, Session, SessionFull, SessionTable};
use crate::auth::Identity;
use crate::model::ResponseCode;
use crate::wire::handle::message::{
    envelope_flag, flag, header_and_body, key_exchange, op, Body, Envelope, Header, KeyExchange,
    Message, ENVELOPE_LEN, UNKNOWN_SITE_SERIAL,
};
use crate::wire::handle::{Admin, Request, RequestMessage, Resolve, Responder, SessionSetup};

/// Handle.Net's answer text for an unknown or expired session id (RC 500).
pub const MSG_INVALID_SESSION: &str = "Invalid session id or session time out. Please try again.";

/// What a request inside a session needs an identity for.
enum AsIdentity<'a> {
    /// A PO-clear resolution.
    Read(&'a Resolve),
    /// Administration.
    Write(&'a Admin),
}

/// What a request's credential said about it inside a session.
enum Mac {
    /// No credential.
    Missing,
    /// A valid HS_MAC with a fresh counter (now recorded).
    Verified,
}

impl NativeService {
    pub(super) fn lock_sessions(&self) -> std::sync::MutexGuard<'_, SessionTable> {
        crate::lock::lock(&self.sessions)
    }

    /// Live sessions (expired ones not yet swept included).
    pub fn live_sessions(&self) -> usize {
        self.lock_sessions().len()
    }

    pub(super) fn sweep_sessions(&self, now: Instant) -> usize {
        let mut sessions = self.lock_sessions();
        let removed = sessions.sweep(now);
        self.metrics.sessions.set(sessions.len() as i64);
        removed
    }

    /// A random 31-bit id no session holds (challenge ids share the sessions' id space).
    /// Called with the challenge table locked (lock order: challenges, then sessions).
    pub(super) fn unused_session_id(&self) -> u32 {
        let sessions = self.lock_sessions();
        loop {
            let id = rand::thread_rng().next_u32() & 0x7fff_ffff;
            if !sessions.contains(id) {
                return id;
            }
        }
    }

    /// Requests that name a session (`r` answers them); `None`: the ordinary path answers
    /// the request (session setup and end included).
    pub(super) fn session_gate(
        &self,
        req: &RequestMessage,
        r: &Responder<'_>,
        source: Source,
    ) -> Option<Vec<Message>> {
        match req.request {
            Request::SessionSetup(_) | Request::SessionTerminate => return None,
            // Answers to challenges go to the challenge table (which knows session ids).
            Request::ChallengeAnswer(_) | Request::VerifyChallenge(_) => return None,
            _ => {}
        }
        let sid = req.envelope.session_id;
        if sid == 0 {
            return None;
        }
        let err = |code, text: &str| Some(vec![r.error(code, text)]);
        let now = Instant::now();
        let mut sessions = self.lock_sessions();
        let Some(session) = sessions.get_mut(sid, now) else {
            drop(sessions);
            if self.lock_challenges().contains(sid) {
                return None; // the id of a pending challenge: an ordinary request
            }
            self.refuse(source.transport, "session_unknown");
            return err(ResponseCode::SessionTimeout, MSG_INVALID_SESSION);
        };
        let mac = match self.check_mac(session, req, r.request_bytes()) {
            Ok(mac) => mac,
            Err((code, text)) => {
                drop(sessions);
                crate::audit::auth_failure("native", source.addr, None, text);
                return err(code, text);
            }
        };
        let wanted = match &req.request {
            Request::Admin(admin) => AsIdentity::Write(admin),
            Request::Resolve(q) if !q.public_only => AsIdentity::Read(q),
            _ => return None,
        };
        // Over UDP the ordinary path refuses administration and never challenges.
        if source.transport == Transport::Udp {
            return None;
        }
        let identity = session.authenticated.clone();
        let named_identity = session.requested.is_some();
        if identity.is_none() && matches!(mac, Mac::Verified) {
            session.challenged_request = Some(req.envelope.request_id);
        }
        drop(sessions);
        // A write this node cannot take is refused before any challenge (as the ordinary
        // path does).
        if let AsIdentity::Write(admin) = wanted {
            if let Some(f) = self.write_target_refusal(admin) {
                return Some(vec![r.failure(&f)]);
            }
        }
        let Some(identity) = identity else {
            if let AsIdentity::Read(q) = wanted {
                if !named_identity {
                    return None; // an anonymous session reads as anyone does
                }
                // A client that named an identity at setup can answer a challenge: restricted
                // values are challenged as Handle.Net does (whatever
                // `anonymous_restricted_reads` says), under the session's id, so the answer
                // authenticates the session.
                let reader = Reader::SessionChallenge(sid);
                return Some(vec![self.resolution(req, q, r, reader, source)]);
            }
            // Challenge under the session's id; an older challenge of the session goes.
            self.lock_challenges().withdraw(sid, source.addr, now);
            return Some(vec![self.challenge_as(req, r, source, Some(sid))]);
        };
        if matches!(mac, Mac::Missing) {
            crate::audit::auth_failure(
                "native",
                source.addr,
                Some(&identity.to_string()),
                "session request without MAC",
            );
            return err(
                ResponseCode::InvalidCredential,
                "Session request missing MAC code.",
            );
        }
        Some(match wanted {
            AsIdentity::Read(q) => vec![self.resolution(req, q, r, Reader::As(&identity), source)],
            AsIdentity::Write(admin) => self.admin_as(admin, r, &identity, source),
        })
    }

    /// Check a session request's credential: none, or an HS_MAC that verifies with a counter
    /// not seen before (recorded now).
    fn check_mac(
        &self,
        session: &mut Session,
        req: &RequestMessage,
        hb: Option<&[u8]>,
    ) -> Result<Mac, (ResponseCode, &'static str)> {
        const BAD: (ResponseCode, &str) = (
            ResponseCode::InvalidSessionKey,
            "Session authentication failed.",
        );
        let Some(section) = req.credential.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(Mac::Missing);
        };
        let (Ok(cred), Some(hb)) = (Credential::decode(section), hb) else {
            return Err(BAD);
        };
        if !cred.is_mac() {
            return Err(BAD);
        }
        match credential::verify_mac(&session.key, &req.envelope, hb, &cred) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(BAD),
        }
        session.accept_counter(cred.signer_index).map_err(|_| {
            (
                ResponseCode::SessionMessageRejected,
                "Duplicate session counter (a replayed message).",
            )
        })?;
        Ok(Mac::Verified)
    }

    /// A challenge answer verified as `identity` on `session_id`: if that is a session, the
    /// challenged request was its MAC-verified `original_request_id` and `identity` is the
    /// one named at setup, the session is authenticated from now on.
    pub(super) fn session_answered(
        &self,
        session_id: u32,
        original_request_id: u32,
        identity: &Identity,
        source: Source,
    ) {
        let authenticated = {
            let mut sessions = self.lock_sessions();
            match sessions.get_mut(session_id, Instant::now()) {
                Some(s) if s.challenged_request == Some(original_request_id) => {
                    s.challenged_request = None;
                    s.authenticate(identity)
                }
                _ => false,
            }
        };
        if authenticated {
            crate::audit::login("native", source.addr, &identity.to_string(), "session");
        }
    }

    /// OC_SESSION_SETUP: a new session keyed by Diffie-Hellman in the client's group.
    pub(super) fn session_setup(
        &self,
        setup: &SessionSetup,
        r: &Responder<'_>,
        source: Source,
    ) -> Message {
        let err = |code, text: &str| r.error(code, text);
        if source.transport == Transport::Udp {
            // An anonymous datagram creates no state (and costs no DH): go to TCP.
            self.refuse(source.transport, "session_over_udp");
            return err(ResponseCode::Error, "sessions are set up over TCP only");
        }
        let SessionSetup {
            mode,
            timeout,
            identity_handle,
            identity_index,
            exchange,
        } = setup;
        if *mode != key_exchange::DH {
            return err(
                ResponseCode::SessionFailed,
                &format!("key exchange mode {mode} is not supported: use 4 (Diffie-Hellman)"),
            );
        }
        let version = r.version();
        if version < (2, 7) {
            return err(
                ResponseCode::SessionFailed,
                "sessions need protocol 2.7 or later",
            );
        }
        let KeyExchange::PublicKey(client_key) = exchange else {
            return err(ResponseCode::InvalidSessionSetupRequest, "no DH key");
        };
        // Anonymous: an empty handle or index -1. A session for an identity this node cannot
        // parse could never be authenticated: refused.
        let requested = if identity_handle.is_empty() || *identity_index == u32::MAX {
            None
        } else {
            match crate::model::Handle::parse_lenient(
                identity_handle,
                self.engine().policy().suffix_case,
            ) {
                Ok(handle) => Some(Identity {
                    handle,
                    index: *identity_index,
                }),
                Err(e) => {
                    return err(
                        ResponseCode::InvalidSessionSetupRequest,
                        &format!("identity handle: {e}"),
                    )
                }
            }
        };
        let who = format!("{identity_index}:{identity_handle}");
        // An address holding its whole share is refused before any key agreement.
        {
            let sessions = self.lock_sessions();
            if sessions.count_for(source.addr) >= sessions.limits().max_per_source {
                drop(sessions);
                self.refuse(source.transport, "session_source_full");
                return err(
                    ResponseCode::ServerTooBusy,
                    "too many sessions from this address; try again later",
                );
            }
        }
        let slot = match self.admit_work(
            source,
            &self.setting_up,
            super::MAX_CONCURRENT_SESSION_SETUPS,
        ) {
            Ok(slot) => slot,
            Err((code, text)) => return err(code, text),
        };
        let answer = hs::dh_answer(client_key);
        drop(slot);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.authentication_failed(source, &who, &format!("session setup: {e}"));
                return err(ResponseCode::InvalidSessionSetupRequest, &e.to_string());
            }
        };
        let now = Instant::now();
        let session = Session::new(
            answer.key,
            requested,
            version,
            Duration::from_secs(u64::from(*timeout)),
            now,
        );
        let inserted = {
            let challenges = self.lock_challenges();
            let mut sessions = self.lock_sessions();
            let r = sessions.insert(
                source.addr,
                session,
                now,
                || rand::thread_rng().next_u32(),
                |id| challenges.contains(id),
            );
            self.metrics.sessions.set(sessions.len() as i64);
            r
        };
        let id = match inserted {
            Ok(id) => id,
            Err(full) => {
                self.refuse(
                    source.transport,
                    match full {
                        SessionFull::Source => "session_source_full",
                        SessionFull::Total => "session_table_full",
                    },
                );
                return err(ResponseCode::ServerTooBusy, &full.to_string());
            }
        };
        r.in_session(id).ok(Body::SessionSetupAnswer {
            mode: key_exchange::DH,
            data: answer.data,
        })
    }

    /// OC_SESSION_TERMINATE: drop the session named by a MAC'ed request.
    pub(super) fn session_terminate(
        &self,
        req: &RequestMessage,
        r: &Responder<'_>,
        source: Source,
    ) -> Message {
        let err = |code, text: &str| r.error(code, text);
        let sid = req.envelope.session_id;
        let mut sessions = self.lock_sessions();
        let Some(session) = sessions.get_mut(sid, Instant::now()) else {
            return err(ResponseCode::SessionTimeout, MSG_INVALID_SESSION);
        };
        match self.check_mac(session, req, r.request_bytes()) {
            Ok(Mac::Verified) => {}
            Ok(Mac::Missing) => {
                return err(ResponseCode::InvalidSessionKey, "Invalid session key.");
            }
            Err((code, text)) => {
                drop(sessions);
                crate::audit::auth_failure("native", source.addr, None, text);
                return err(code, text);
            }
        }
        sessions.remove(sid);
        self.metrics.sessions.set(sessions.len() as i64);
        drop(sessions);
        r.ok(Body::Empty)
    }

    /// HS_MAC-sign the certified answers that name a live session (not setup answers), each
    /// with the session's next server counter. True if any was signed.
    pub(super) fn mac_session_answers(&self, responses: &mut [Message]) -> bool {
        let mut signed = false;
        for m in responses.iter_mut() {
            let sid = m.envelope.session_id;
            if sid == 0 || !m.header.has(flag::CERTIFY) || m.header.op_code == op::SESSION_SETUP {
                continue;
            }
            let (key, counter) = {
                let mut sessions = self.lock_sessions();
                let Some(s) = sessions.get_mut(sid, Instant::now()) else {
                    continue;
                };
                (s.key, s.next_server_counter())
            };
            m.credential = Some(Vec::new());
            let bytes = m.encode_message();
            let Some(hb) = header_and_body(&bytes) else {
                continue;
            };
            if let Ok(c) = credential::mac(&key, &m.envelope, counter, hb) {
                m.credential = Some(c.encode());
                signed = true;
            }
        }
        signed
    }
}

#[cfg(test)]
mod tests;

impl NativeService {
    /// An encrypted request (envelope flag 0x40) of a live session, decrypted with its key:
    /// the envelope with the flag cleared and the plain message's length, and the plain
    /// message. `Err`: the error answer (no session: RC 500; undecryptable: RC 501, as
    /// Handle.Net answers).
    pub(super) fn decrypt_request(
        &self,
        envelope: Envelope,
        message: &[u8],
        source: Source,
    ) -> Result<(Envelope, Vec<u8>), Box<Message>> {
        // Nothing of the header can be read before decryption: answer as Handle.Net does,
        // to opCode 0.
        let header = Header {
            op_code: 0,
            response_code: 0,
            op_flag: 0,
            site_serial: UNKNOWN_SITE_SERIAL,
            recursion_count: 0,
            expiration: 0,
        };
        let r = self.responder(&envelope, &header, None);
        let key = {
            let mut sessions = self.lock_sessions();
            sessions
                .get_mut(envelope.session_id, Instant::now())
                .map(|s| s.key)
        };
        let Some(key) = key.filter(|_| envelope.session_id != 0) else {
            self.refuse(source.transport, "session_unknown");
            return Err(Box::new(
                r.error(ResponseCode::SessionTimeout, MSG_INVALID_SESSION),
            ));
        };
        match hs::decrypt_message(&key, message) {
            Ok(plain) => {
                let mut env = envelope;
                env.flags &= !envelope_flag::ENCRYPTED;
                env.message_length = plain.len() as u32;
                Ok((env, plain))
            }
            Err(e) => {
                crate::audit::auth_failure("native", source.addr, None, &e.to_string());
                Err(Box::new(r.error(
                    ResponseCode::SessionFailed,
                    "Exception decrypting request with session key",
                )))
            }
        }
    }

    /// Encrypt, with the session's key, the encoded answers that Handle.Net's server encrypts:
    /// in a live session, answers to a request that asked for it (the ENCRYPT flag, echoed)
    /// and, from protocol 2.8, resolution answers holding a value anyone may not read
    /// (`ResolutionResponse.shouldEncrypt`).
    pub(super) fn encrypt_session_answers(&self, responses: &[Message], encoded: &mut [Vec<u8>]) {
        for (m, bytes) in responses.iter().zip(encoded.iter_mut()) {
            let sid = m.envelope.session_id;
            if sid == 0 || !should_encrypt(m) || bytes.len() < ENVELOPE_LEN {
                continue;
            }
            let key = {
                let mut sessions = self.lock_sessions();
                sessions.get_mut(sid, Instant::now()).map(|s| s.key)
            };
            let Some(key) = key else {
                continue;
            };
            let sealed = hs::encrypt_message(&key, &bytes[ENVELOPE_LEN..]);
            bytes.truncate(ENVELOPE_LEN);
            bytes[2] |= envelope_flag::ENCRYPTED;
            bytes[16..20].copy_from_slice(&(sealed.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&sealed);
        }
    }
}

fn should_encrypt(m: &Message) -> bool {
    if m.header.has(flag::ENCRYPT) {
        return true;
    }
    if (m.envelope.major, m.envelope.minor) < (2, 8) {
        return false;
    }
    match &m.body {
        Body::Values { values, .. } => values.iter().any(|v| !v.permissions.public_read()),
        _ => false,
    }
}
