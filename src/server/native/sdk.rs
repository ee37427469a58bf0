//! The CAICT ID-SDK's flows on the native front end (ID-SDK 2.0.3; the byte layouts and the
//! rules are `state_machines.SDK_LOGIN` and `SDK_TRUSTED_QUERY` of
//! `tests/data/handle-vectors-2.json`).
//!
//! The SDK keeps ONE TCP connection per channel and never answers a 402 except to its own
//! login, so the node remembers a login per connection:
//!
//! - **Key login**, opCode 2001 (`OC_LOGIN_ID_SYSTEM`): answered with a 402 challenge whose
//!   header carries opCode 2001 (the SDK answers no other). The pending login lives in the
//!   ordinary challenge table (bounded per address and in total, 20 s) and may be answered
//!   only from the connection it was issued on. The opCode 200 answer goes through the same
//!   verification as every challenge answer (failure budget, concurrency bound, audit log);
//!   on success the connection is logged in as that identity and the answer is RC 1 with
//!   opCode 2001 and the digest of the login request.
//! - **Password login**, opCode 2000 (`OC_LOGIN`): the password arrives in clear, so it is
//!   refused unless `[handle] password_login` is on (off by default: the SDK's own API
//!   documentation calls it a compatibility mode for early IDIS versions that identity-based
//!   nodes do not offer). It is checked against the user handle's HS_SECKEY values (at most
//!   [`MAX_KEYS_PER_ANSWER`], stored plain or in Handle.Net's hashed form, the lowercase hex
//!   SHA-1 of the secret) through the same admission and failure budget as a challenge answer.
//!   Failure is RC 403, which the SDK decodes as an error answer.
//! - **After login**, requests of that connection with session id 0 and no credential run as
//!   the login identity without a challenge: administration as after a challenge answer (the
//!   engine's authorization, data on disk before the answer, one audit line), resolutions as
//!   that identity. A second login replaces the first; a failed
//!   one logs the connection out. UDP never logs in.
//!
//! The login is held in a map keyed by a [`ConnectionId`] that the TCP front end takes from
//! [`NativeService::open_connection`] and gives back when the connection ends (the returned
//! [`ConnectionLogin`] does it when dropped); a login for a connection that has ended is
//! dropped, so the map never holds more than the open connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::resolve::Reader;
use super::{NativeService, Source, Transport, MAX_KEYS_PER_ANSWER};
use crate::auth::Identity;
use crate::model::{types, Handle, ResponseCode};
use crate::resolve::ResolveError;
use crate::wire::handle::message::{flag, Body, Header, Message};
use crate::wire::handle::{Admin, KeyLogin, PasswordLogin, RequestMessage, Resolve, Responder};

/// One TCP connection of the native front end, for its login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(u64);

/// `[handle] anonymous_restricted_reads`: a setting of the read policy, so it lives in `auth`
/// (below `config`, which parses it).
pub use crate::auth::AnonymousReads;

/// The logins of open TCP connections.
#[derive(Default)]
pub(super) struct Logins {
    next: AtomicU64,
    /// Every open connection that asked for an id; `Some` once it logged in.
    open: Mutex<HashMap<ConnectionId, Option<Identity>>>,
}

impl Logins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Option<Identity>>> {
        crate::lock::lock(&self.open)
    }
}

/// A TCP connection's place in the login map; the connection's login ends when this is
/// dropped (the connection closed).
pub struct ConnectionLogin {
    service: Arc<NativeService>,
    id: ConnectionId,
}

impl ConnectionLogin {
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Where this connection's requests come from.
    pub fn source(&self, addr: IpAddr) -> Source {
        Source::tcp_connection(addr, self.id)
    }
}

impl Drop for ConnectionLogin {
    fn drop(&mut self) {
        self.service.logins.lock().remove(&self.id);
    }
}

/// Lowercase hex of SHA-1: how Handle.Net stores a "hashed" HS_SECKEY
/// (`Encoder.encodeSecretKey(secret, true)`).
fn hashed_secret(secret: &[u8]) -> Vec<u8> {
    Sha1::digest(secret)
        .iter()
        .flat_map(|b| {
            let hex = b"0123456789abcdef";
            [hex[usize::from(b >> 4)], hex[usize::from(b & 0xF)]]
        })
        .collect()
}

/// Whether a request on a logged-in connection runs as its login: the ID-SDK sends session
/// id 0 and no credential (a request naming a session or carrying a credential is
/// authenticated the way it says).
fn runs_as_login(req: &RequestMessage) -> bool {
    req.envelope.session_id == 0 && req.credential.as_ref().is_none_or(Vec::is_empty)
}

impl NativeService {
    /// A new TCP connection's id for its login; the login ends when the returned value is
    /// dropped.
    pub fn open_connection(self: &Arc<Self>) -> ConnectionLogin {
        let id = ConnectionId(self.logins.next.fetch_add(1, Ordering::Relaxed));
        self.logins.lock().insert(id, None);
        ConnectionLogin {
            service: self.clone(),
            id,
        }
    }

    /// The identity `source`'s connection is logged in as.
    pub fn logged_in(&self, source: Source) -> Option<Identity> {
        let id = source.connection?;
        self.logins.lock().get(&id).cloned().flatten()
    }

    /// Open connections that are logged in.
    pub fn logged_in_connections(&self) -> usize {
        self.logins.lock().values().filter(|l| l.is_some()).count()
    }

    /// Log `source`'s connection in (or out, `None`); nothing for a connection that ended.
    fn set_login(&self, source: Source, identity: Option<Identity>) {
        if let Some(id) = source.connection {
            if let Some(slot) = self.logins.lock().get_mut(&id) {
                *slot = identity;
            }
        }
    }

    /// A login request over UDP, or over TCP without a connection id: refused, no state.
    fn login_needs_a_connection(&self, r: &Responder<'_>, source: Source) -> Message {
        self.refuse(source.transport, "login_without_connection");
        r.error(
            ResponseCode::OperationNotSupported,
            "login is accepted over TCP only",
        )
    }

    /// OpCode 2001: a 402 challenge with opCode 2001 (the request digest forced, as for every
    /// challenge), answerable only on the connection it was issued on.
    pub(super) fn key_login(
        &self,
        req: &RequestMessage,
        r: &Responder<'_>,
        source: Source,
    ) -> Message {
        if source.transport != Transport::Tcp || source.connection.is_none() {
            return self.login_needs_a_connection(r, source);
        }
        self.challenge(req, r, source)
    }

    /// A login challenge answered (`r` answers the answer) from another connection of its
    /// address: refused and counted as a failed authentication; the challenge stays for its
    /// own connection.
    pub(super) fn login_answer_from_elsewhere(&self, r: &Responder<'_>, source: Source) -> Message {
        self.authentication_failed(
            source,
            &format!("session {}", r.envelope().session_id),
            "login challenge answered from another connection",
        );
        // No request digest on this one.
        self.responder(r.envelope(), r.header(), None).error(
            ResponseCode::AuthenticationFailed,
            "this login challenge was issued on another connection",
        )
    }

    /// The answer to a verified key login (`r` answers the login request): the connection is
    /// logged in as `identity` if it is the one the login request named, and the answer is
    /// RC 1 with opCode 2001, the digest of the login request (its RD flag) and the answer's
    /// request id.
    pub(super) fn key_login_verified(
        &self,
        login: &KeyLogin,
        r: &Responder<'_>,
        identity: Identity,
        source: Source,
    ) -> Message {
        let named =
            Handle::parse_lenient(&login.identity_handle, self.engine().policy().suffix_case)
                .ok()
                .filter(|h| *h == identity.handle && login.identity_index == identity.index);
        if named.is_none() {
            self.set_login(source, None);
            self.authentication_failed(
                source,
                &identity.to_string(),
                "the challenge answer names another identity than the login request",
            );
            return r.error(
                ResponseCode::AuthenticationFailed,
                "the answer's identity is not the one logging in",
            );
        }
        crate::audit::login("native", source.addr, &identity.to_string(), "login_key");
        self.set_login(source, Some(identity));
        r.ok(Body::Empty)
    }

    /// A failed key login logs the connection out.
    pub(super) fn key_login_failed(&self, source: Source) {
        self.set_login(source, None);
    }

    /// OpCode 2000: check the clear password against the user's HS_SECKEY values; success
    /// logs the connection in and is RC 1 with the user handle and no values.
    pub(super) fn password_login(
        &self,
        login: &PasswordLogin,
        r: &Responder<'_>,
        source: Source,
    ) -> Message {
        if source.transport != Transport::Tcp || source.connection.is_none() {
            return self.login_needs_a_connection(r, source);
        }
        // Whatever happens next, the connection's previous login is over.
        self.set_login(source, None);
        let fail = |code, text: &str| r.error(code, text);
        if !self.limits.password_login {
            self.refuse(source.transport, "password_login_disabled");
            return fail(
                ResponseCode::OperationNotSupported,
                "password login (opCode 2000) is disabled on this node: log in with a key (2001)",
            );
        }
        let PasswordLogin {
            user,
            indexes,
            passwords,
        } = login;
        let (index, password) = match (indexes.as_slice(), passwords.as_slice()) {
            ([], [p]) => (0, p),
            ([i], [p]) => (*i, p),
            _ => {
                return fail(
                    ResponseCode::ProtocolError,
                    "a password login names at most one index and exactly one password",
                )
            }
        };
        let who = if index == 0 {
            user.clone()
        } else {
            format!("{index}:{user}")
        };
        let slot = match self.admit_verification(source) {
            Ok(slot) => slot,
            Err((code, text)) => return fail(code, text),
        };
        let checked = self.check_password(user, index, password);
        drop(slot);
        match checked {
            Ok(Some(identity)) => {
                crate::audit::login(
                    "native",
                    source.addr,
                    &identity.to_string(),
                    "login_password",
                );
                self.set_login(source, Some(identity));
                r.ok(Body::Values {
                    handle: user.clone(),
                    values: Vec::new(),
                })
            }
            Ok(None) => {
                self.authentication_failed(source, &who, "password login did not verify");
                fail(ResponseCode::AuthenticationFailed, "Authentication failed")
            }
            Err(f) => {
                self.authentication_failed(source, &who, &f.to_string());
                fail(ResponseCode::AuthenticationFailed, "Authentication failed")
            }
        }
    }

    /// The HS_SECKEY of `user` (at `index`, or among the first [`MAX_KEYS_PER_ANSWER`] when
    /// 0) that `password` is: the stored bytes themselves or Handle.Net's hashed form of
    /// them. Constant-time comparisons; an empty password never matches.
    fn check_password(
        &self,
        user: &str,
        index: u32,
        password: &[u8],
    ) -> Result<Option<Identity>, ResolveError> {
        if password.is_empty() {
            return Ok(None);
        }
        let handle = Handle::parse_lenient(user, self.engine().policy().suffix_case)
            .map_err(|e| ResolveError::AuthenticationFailed(e.to_string()))?;
        let Some(record) = self.engine().registry().get(&handle)? else {
            return Ok(None);
        };
        let hashed = hashed_secret(password);
        for v in record
            .values
            .iter()
            .filter(|v| v.is_type(types::HS_SECKEY) && (index == 0 || v.index == index))
            .take(MAX_KEYS_PER_ANSWER)
        {
            let plain = v.data.as_slice().ct_eq(password);
            let hashed = v.data.as_slice().ct_eq(&hashed);
            if bool::from(plain | hashed) {
                return Ok(Some(Identity {
                    handle,
                    index: v.index,
                }));
            }
        }
        Ok(None)
    }

    /// An administrative request on a logged-in connection, if it runs as the login (see
    /// [`runs_as_login`]): the same path as after a challenge answer.
    pub(super) fn admin_as_login(
        &self,
        req: &RequestMessage,
        admin: &Admin,
        r: &Responder<'_>,
        source: Source,
    ) -> Option<Vec<Message>> {
        if !runs_as_login(req) {
            return None;
        }
        let identity = self.logged_in(source)?;
        Some(self.admin_as(admin, r, &identity, source))
    }

    /// A resolution as the connection's login (if any, and the request runs as it): the
    /// values that identity may read. An identity the record's administrators do not grant
    /// reading gets, in the `public` mode, the values anyone may read instead of RC 401.
    pub(super) fn resolution_as_login(
        &self,
        req: &RequestMessage,
        q: &Resolve,
        r: &Responder<'_>,
        source: Source,
    ) -> Message {
        let identity = self.logged_in(source).filter(|_| runs_as_login(req));
        let Some(identity) = identity else {
            return self.resolution(req, q, r, Reader::Anonymous, source);
        };
        let answer = self.resolution(req, q, r, Reader::As(&identity), source);
        if answer.header.response_code == ResponseCode::InsufficientPermissions.code()
            && self.limits.anonymous_reads == AnonymousReads::Public
        {
            return self.resolution(req, q, r, Reader::Anonymous, source);
        }
        answer
    }
}

/// Mark a relayed answer (not this node's data): not authoritative, and reported to the
/// ID-SDK as trusted only if `upstream_verified` (the recursor checked the upstream's
/// signature over it).
pub(super) fn mark_relayed(header: &mut Header, upstream_verified: bool) {
    header.op_flag &= !flag::AUTHORITATIVE;
    flag::set_trusted_result(&mut header.op_flag, upstream_verified);
}

#[cfg(test)]
mod tests;
