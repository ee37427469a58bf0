//! The native protocol's 402 challenges (handle-protocol.md §7) as a sans-IO state machine:
//! time, nonces and ids are passed in, nothing here reads a clock, a socket or a lock.
//!
//! - [`Challenges::issue`] keeps a request that needs an identity under a fresh session id,
//!   with a nonce and the request's digest (SHA-256 from 2.7), bounded per address and in
//!   total ([`PendingTable`]), for [`PendingLimits::ttl`] (Handle.Net's 20 s `max_auth_time`);
//! - [`Challenges::answer`] takes the challenge an opCode 200 answer names: only from the
//!   address it was issued to and, when it was bound to a connection (the ID-SDK's key login),
//!   only from that connection;
//! - the answer is then checked against the identity's keys ([`authenticate_answer`], what
//!   `Engine::authenticate_challenge_answer` runs; [`verify_answer`] is its pure part): at
//!   most [`MAX_KEYS_PER_ANSWER`] HS_SECKEY (PBKDF2 bounded by
//!   [`super::challenge::MAX_PBKDF2_WORK`]) or HS_PUBKEY values, MD5 forms only for pre-2.7
//!   challenges.
//!
//! Taking and checking are two steps on purpose: the server holds the table's lock to take a
//! challenge and releases it before the key derivation, so answers are checked side by side.
//! The request kept (`R`) and the connection it may be bound to (`C`) are the front end's
//! types.

use std::net::IpAddr;
use std::time::Instant;

use super::challenge::{seckey_form_allowed, verify_pubkey_answer, verify_seckey_answer};
use super::pending::{PendingFull, PendingLimits, PendingTable};
use super::{Identity, KeyKind};
use crate::model::{types, Handle, HandleValue, PublicKey};
use crate::store::{Registry, StoreError};
use crate::wire::handle::digest::request_digest;
use crate::wire::handle::message::RequestDigest;

/// Keys tried for one answer naming index 0 ("any of the handle's keys"): a handle with
/// hundreds of secrets must not turn one answer into hundreds of key derivations.
pub const MAX_KEYS_PER_ANSWER: usize = 4;

/// A challenge issued: what the RC 402 answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The id the answer must name (its envelope's session id).
    pub session_id: u32,
    pub nonce: [u8; 16],
    /// The digest of the challenged request, which the answer signs with the nonce.
    pub digest: RequestDigest,
}

/// A challenge waiting for its answer.
pub struct Pending<R, C> {
    /// The challenged request, answered once the challenge is.
    pub request: R,
    /// The request's header+body as received (the RD digest of its final answer covers them).
    pub request_bytes: Vec<u8>,
    pub digest: RequestDigest,
    pub nonce: [u8; 16],
    /// The challenge's protocol version (the MD5 answer forms are refused from 2.7).
    pub version: (u8, u8),
    /// The connection it must be answered on, if any.
    bound_to: Option<C>,
}

impl<R, C> Pending<R, C> {
    /// What an answer to this challenge proves, to check against the identity's keys.
    pub fn proof<'a>(
        &'a self,
        auth_type: &'a str,
        identity_handle: &'a str,
        identity_index: u32,
        signed_response: &'a [u8],
    ) -> Proof<'a> {
        Proof {
            auth_type,
            identity_handle,
            identity_index,
            nonce: &self.nonce,
            digest: &self.digest.digest,
            signed_response,
            version: self.version,
        }
    }
}

/// Why an answer finds no challenge to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unanswerable {
    /// None under that id for this address (expired, unknown, or issued to another one).
    #[error("no pending challenge for this session (expired or unknown)")]
    NotPending,
    /// A challenge bound to a connection, answered from another: it stays for its own.
    #[error("this login challenge was issued on another connection")]
    OtherConnection,
}

/// The pending 402 challenges.
pub struct Challenges<R, C> {
    table: PendingTable<Pending<R, C>>,
}

impl<R, C: Copy + PartialEq> Challenges<R, C> {
    pub fn new(limits: PendingLimits) -> Challenges<R, C> {
        Challenges {
            table: PendingTable::new(limits),
        }
    }

    /// Challenges waiting for an answer (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Whether a challenge is held under `id` (challenge ids share the sessions' id space).
    pub fn contains(&self, id: u32) -> bool {
        self.table.contains(id)
    }

    /// Drop the expired challenges; how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        self.table.sweep(now)
    }

    /// Drop the challenge `from` holds under `id`, if any (a newer one takes its id).
    pub fn withdraw(&mut self, id: u32, from: IpAddr, now: Instant) {
        let _ = self.table.take(id, from, now);
    }

    /// Challenge `request` (its header+body `request_bytes`, answered at `version`) for the
    /// client at `to`, answerable only from connection `bound_to` when given. `new_id` draws
    /// candidate ids (a session's own id, for a challenge inside it).
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &mut self,
        request: R,
        request_bytes: &[u8],
        version: (u8, u8),
        to: IpAddr,
        bound_to: Option<C>,
        nonce: [u8; 16],
        now: Instant,
        new_id: impl FnMut() -> u32,
    ) -> Result<Challenge, PendingFull> {
        let (hash_type, digest) = request_digest(version.0, version.1, request_bytes);
        let digest = RequestDigest { hash_type, digest };
        // What the entry holds: the request (its encoded size stands for its decoded form)
        // plus the digest and nonce.
        let size = request_bytes.len() + digest.digest.len() + 128;
        let pending = Pending {
            request,
            request_bytes: request_bytes.to_vec(),
            digest: digest.clone(),
            nonce,
            version,
            bound_to,
        };
        let session_id = self.table.insert(to, pending, size, now, new_id)?;
        Ok(Challenge {
            session_id,
            nonce,
            digest,
        })
    }

    /// Take the challenge an answer from `from` (on `connection`) names by `session_id`.
    pub fn answer(
        &mut self,
        session_id: u32,
        from: IpAddr,
        connection: Option<C>,
        now: Instant,
    ) -> Result<Pending<R, C>, Unanswerable> {
        if let Some(p) = self.table.get(session_id, from, now) {
            if p.bound_to.is_some() && p.bound_to != connection {
                return Err(Unanswerable::OtherConnection);
            }
        }
        self.table
            .take(session_id, from, now)
            .ok_or(Unanswerable::NotPending)
    }
}

/// What a challenge answer proves, to check against an identity's keys: what the answer
/// claims, and the challenge it answers.
#[derive(Debug, Clone, Copy)]
pub struct Proof<'a> {
    /// "HS_SECKEY" or "HS_PUBKEY", in any case.
    pub auth_type: &'a str,
    pub identity_handle: &'a str,
    /// 0: any of the handle's keys of that type (the first [`MAX_KEYS_PER_ANSWER`]).
    pub identity_index: u32,
    pub nonce: &'a [u8],
    pub digest: &'a [u8],
    pub signed_response: &'a [u8],
    /// The challenge's protocol version.
    pub version: (u8, u8),
}

/// Why an answer could not be checked at all (a wrong answer is no error: `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("unsupported authentication type {0:?}")]
    UnsupportedAuthType(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Proof<'_> {
    /// The key type the answer names.
    pub fn key_kind(&self) -> Result<KeyKind, AnswerError> {
        if self.auth_type.eq_ignore_ascii_case(types::HS_SECKEY) {
            Ok(KeyKind::Secret)
        } else if self.auth_type.eq_ignore_ascii_case(types::HS_PUBKEY) {
            Ok(KeyKind::Public)
        } else {
            Err(AnswerError::UnsupportedAuthType(self.auth_type.to_string()))
        }
    }
}

/// Check `answer` against the keys of `handle` (its identity handle, parsed under the node's
/// case rule) in `registry`. `Ok(None)`: it proves no identity (no such handle or key, a
/// refused form, or no key verifies).
pub fn authenticate_answer(
    registry: &Registry,
    handle: &Handle,
    answer: &Proof<'_>,
) -> Result<Option<Identity>, AnswerError> {
    let kind = answer.key_kind()?;
    let (major, minor) = answer.version;
    if kind == KeyKind::Secret && !seckey_form_allowed(major, minor, answer.signed_response) {
        return Ok(None);
    }
    let Some(record) = registry.get(handle)? else {
        return Ok(None);
    };
    Ok(verify_answer(answer, kind, handle, &record.values))
}

/// The identity `answer` proves among `values` (the record of `handle`): at most
/// [`MAX_KEYS_PER_ANSWER`] values of `kind` are tried (an index names one; index 0 the first
/// few). Malformed keys and answers verify nothing.
pub fn verify_answer(
    answer: &Proof<'_>,
    kind: KeyKind,
    handle: &Handle,
    values: &[HandleValue],
) -> Option<Identity> {
    let wanted = match kind {
        KeyKind::Secret => types::HS_SECKEY,
        KeyKind::Public => types::HS_PUBKEY,
    };
    let index = answer.identity_index;
    let (nonce, digest, signed) = (answer.nonce, answer.digest, answer.signed_response);
    values
        .iter()
        .filter(|v| v.is_type(wanted) && (index == 0 || v.index == index))
        .take(MAX_KEYS_PER_ANSWER)
        .find(|v| match kind {
            KeyKind::Secret => {
                verify_seckey_answer(&v.data, nonce, digest, signed).unwrap_or(false)
            }
            KeyKind::Public => PublicKey::decode(&v.data)
                .ok()
                .and_then(|key| verify_pubkey_answer(&key, nonce, digest, signed).ok())
                .unwrap_or(false),
        })
        .map(|v| Identity {
            handle: handle.clone(),
            index: v.index,
        })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::auth::challenge::seckey_answer_sha1;
    use crate::model::SuffixCase;

    const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const THERE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn table() -> Challenges<&'static str, u8> {
        Challenges::new(PendingLimits::default())
    }

    #[test]
    fn an_answer_takes_its_challenge_once_from_its_address() {
        let mut c = table();
        let now = Instant::now();
        let issued = c
            .issue("req", b"hb", (2, 11), HERE, None, [7; 16], now, || 42)
            .unwrap();
        assert_eq!(issued.session_id, 42);
        assert_eq!(issued.digest.digest, request_digest(2, 11, b"hb").1);
        assert_eq!(
            c.answer(42, THERE, None, now).err(),
            Some(Unanswerable::NotPending)
        );
        let p = c.answer(42, HERE, None, now).ok().unwrap();
        assert_eq!((p.request, p.nonce, p.version), ("req", [7; 16], (2, 11)));
        assert_eq!(
            c.answer(42, HERE, None, now).err(),
            Some(Unanswerable::NotPending)
        );
    }

    #[test]
    fn a_bound_challenge_is_answered_only_on_its_connection_and_expires() {
        let mut c = table();
        let now = Instant::now();
        c.issue("login", b"hb", (2, 11), HERE, Some(1), [0; 16], now, || 9)
            .unwrap();
        for other in [None, Some(2)] {
            assert_eq!(
                c.answer(9, HERE, other, now).err(),
                Some(Unanswerable::OtherConnection)
            );
        }
        assert!(c.answer(9, HERE, Some(1), now).is_ok());
        c.issue("late", b"hb", (2, 11), HERE, None, [0; 16], now, || 10)
            .unwrap();
        let later = now + PendingLimits::default().ttl + Duration::from_secs(1);
        assert_eq!(
            c.answer(10, HERE, None, later).err(),
            Some(Unanswerable::NotPending)
        );
        c.issue("swept", b"hb", (2, 11), HERE, None, [0; 16], now, || 11)
            .unwrap();
        assert_eq!(c.sweep(later), 1);
        assert!(c.is_empty());
    }

    #[test]
    fn answers_verify_against_at_most_four_keys_of_their_type() {
        let handle = Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap();
        let (nonce, digest) = ([1u8; 16], [2u8; 32]);
        let signed = seckey_answer_sha1(b"fifth", &nonce, &digest);
        let values: Vec<HandleValue> = (1..=5)
            .map(|i| HandleValue::new(i, types::HS_SECKEY, format!("key{i}")))
            .chain([HandleValue::new(9, types::HS_SECKEY, "fifth")])
            .collect();
        let answer = |index| Proof {
            auth_type: "hs_seckey",
            identity_handle: "0.NA/88.100.1",
            identity_index: index,
            nonce: &nonce,
            digest: &digest,
            signed_response: &signed,
            version: (2, 11),
        };
        let kind = answer(0).key_kind().unwrap();
        assert_eq!(kind, KeyKind::Secret);
        assert_eq!(verify_answer(&answer(0), kind, &handle, &values), None);
        let found = verify_answer(&answer(9), kind, &handle, &values).unwrap();
        assert_eq!(found.index, 9);
        let other = Proof {
            auth_type: "HS_VLIST",
            ..answer(9)
        };
        assert!(matches!(
            other.key_kind(),
            Err(AnswerError::UnsupportedAuthType(_))
        ));
    }
}
