//! What went wrong in the engine, named by what happened rather than by a wire code:
//! [`ResolveError`] is the one error type of [`crate::resolve`] (the engine, the resolver and
//! recursion), and `impl From<&ResolveError> for ResponseCode` below is the only place an
//! error becomes a Handle response code. Front ends ask [`ResolveError::code`] and map the code
//! to their own status (the HTTP front end's `http_status`, the native refusal message, DNS
//! RCODEs); the message every front end shows is the error's `Display`.
//!
//! It sits beside the engine (not in `model`) because its variants name engine situations
//! (responsibility, partitions, mirrors, referrals, recursion); `model::ResponseCode` stays the
//! wire vocabulary.

use std::sync::Arc;

use crate::auth::AuthError;
use crate::model::{HandleValue, ResponseCode, ValueError};
use crate::store::StoreError;

/// A failed request. `Display` is the message front ends send (e.g. "Handle Not Found");
/// [`ResolveError::code`] the response code it is answered with.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The handle is not stored here (RC 100).
    #[error("Handle Not Found")]
    NotFound,
    /// The handle exists but no value matches the query, or none may be shown (RC 200).
    #[error("Values Not Found")]
    NoValues,
    /// A change names a value index the handle does not have (RC 200).
    #[error("no value at index {index}")]
    NoValueAt { index: u32 },
    /// A prefix handle this node does not store, delegated by an ancestor it homes (RC 303):
    /// the ancestor's HS_SITE.PREFIX / HS_SERV.PREFIX values.
    #[error("Prefix referral")]
    Referral { values: Vec<HandleValue> },
    /// The handle's prefix is not homed here, or recursion is not offered (RC 301).
    #[error("That prefix doesn't live here")]
    NotResponsible,
    /// The handle hashes to another server of this multi-server site (RC 301).
    #[error("Request was hashed incorrectly")]
    WrongPartition,
    /// A write to a prefix this node mirrors read-only (RC 7).
    #[error("read-only mirror of {upstream}")]
    Mirror { upstream: String },
    /// Creating a handle that exists (RC 101).
    #[error("Handle already exists")]
    AlreadyExists,
    /// Adding a value at an index in use (RC 201).
    #[error("value {index} already exists")]
    ValueExists { index: u32 },
    /// A request that needs an identity came without one (RC 402).
    #[error("Authentication needed")]
    AuthenticationNeeded,
    /// Non-public values were asked for without an identity (RC 402).
    #[error("authentication needed to read non-public values")]
    NonPublicNeedsAuthentication,
    /// The claimed identity could not be authenticated (RC 403).
    #[error("{0}")]
    AuthenticationFailed(String),
    /// A challenge answer that cannot be checked, e.g. an unknown authentication type (RC 406).
    #[error("{0}")]
    BadChallengeAnswer(String),
    /// The identity is not an administrator with the rights the operation needs (RC 400).
    #[error("{identity} is not an administrator allowed to {what}")]
    NotAdministrator { identity: String, what: String },
    /// An administrator may not do this (RC 401): the reason.
    #[error("{0}")]
    Denied(String),
    /// A change touches a value whose ADMIN_WRITE bit is clear (RC 401).
    #[error(
        "value {index} is not writable by administrators (its ADMIN_WRITE permission bit is \
         clear)"
    )]
    AdminWriteProtected { index: u32 },
    /// Homing or unhoming a prefix by someone not in `node.server_admins` (RC 401).
    #[error("{identity} is not a server administrator of this node (node.server_admins):                      only they may home or unhome prefixes")]
    NotServerAdmin { identity: String },
    /// A name that is not a handle (RC 102).
    #[error("{0}")]
    InvalidHandle(String),
    /// A change the engine refuses as a whole, e.g. one that leaves no administrator (RC 202).
    #[error("{0}")]
    InvalidValue(String),
    /// Values that are not a valid record (RC 202).
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Too many recursive lookups in flight (RC 3).
    #[error("too many recursive lookups in flight; try again later")]
    Busy,
    /// A request this node will not send upstream as asked (RC 4).
    #[error("{0}")]
    Malformed(String),
    /// The request's recursion count leaves no room for another hop (RC 6).
    #[error("recursion count {count} is too high (this node sends at most {max})")]
    RecursionTooDeep { count: u8, max: u8 },
    /// The recursive walk failed: no roots, an unreachable or misbehaving upstream (RC 2).
    #[error("{0}")]
    Recursion(String),
    /// A certified answer was required and the upstream's could not be verified (RC 2).
    #[error("the upstream answer could not be verified: {0}")]
    Unverified(String),
    /// An upstream's final answer, relayed with the upstream's own (known) code.
    #[error("{message}")]
    Upstream { code: ResponseCode, message: String },
    /// The registry failed (RC 2).
    #[error("storage failure: {0}")]
    Store(SharedStoreError),
    /// The engine task did not finish (RC 2).
    #[error("internal error")]
    Internal,
}

/// A registry failure, shared: an error is cloned to every waiter of a coalesced upstream
/// fetch ([`crate::resolve::cache`]). Two are equal when their messages are.
#[derive(Debug, Clone)]
pub struct SharedStoreError(pub Arc<StoreError>);

impl PartialEq for SharedStoreError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SharedStoreError {}

impl std::fmt::Display for SharedStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The only place a [`ResolveError`] becomes a response code.
impl From<&ResolveError> for ResponseCode {
    fn from(e: &ResolveError) -> ResponseCode {
        use ResolveError as E;
        match e {
            E::NotFound => ResponseCode::HandleNotFound,
            E::NoValues | E::NoValueAt { .. } => ResponseCode::ValuesNotFound,
            E::Referral { .. } => ResponseCode::PrefixReferral,
            E::NotResponsible | E::WrongPartition => ResponseCode::ServerNotResponsible,
            E::Mirror { .. } => ResponseCode::ServerBackup,
            E::AlreadyExists => ResponseCode::HandleAlreadyExists,
            E::ValueExists { .. } => ResponseCode::ValueAlreadyExists,
            E::AuthenticationNeeded | E::NonPublicNeedsAuthentication => {
                ResponseCode::AuthenticationNeeded
            }
            E::AuthenticationFailed(_) => ResponseCode::AuthenticationFailed,
            E::BadChallengeAnswer(_) => ResponseCode::AuthenticationError,
            E::NotAdministrator { .. } => ResponseCode::InvalidAdmin,
            E::Denied(_) | E::AdminWriteProtected { .. } | E::NotServerAdmin { .. } => {
                ResponseCode::InsufficientPermissions
            }
            E::InvalidHandle(_) => ResponseCode::InvalidHandle,
            E::InvalidValue(_) | E::Value(_) => ResponseCode::InvalidValue,
            E::Busy => ResponseCode::ServerTooBusy,
            E::Malformed(_) => ResponseCode::ProtocolError,
            E::RecursionTooDeep { .. } => ResponseCode::RecursionCountTooHigh,
            E::Upstream { code, .. } => *code,
            E::Recursion(_) | E::Unverified(_) | E::Store(_) | E::Internal => ResponseCode::Error,
        }
    }
}

impl ResolveError {
    /// The response code this error is answered with.
    pub fn code(&self) -> ResponseCode {
        self.into()
    }

    /// For a prefix referral (RC 303), the delegating ancestor's values; empty otherwise.
    pub fn referral(&self) -> &[HandleValue] {
        match self {
            ResolveError::Referral { values } => values,
            _ => &[],
        }
    }
}

impl From<StoreError> for ResolveError {
    fn from(e: StoreError) -> ResolveError {
        tracing::error!(error = %e, "storage failure");
        ResolveError::Store(SharedStoreError(Arc::new(e)))
    }
}

impl From<AuthError> for ResolveError {
    fn from(e: AuthError) -> ResolveError {
        match e {
            AuthError::Store(s) => s.into(),
            other => ResolveError::AuthenticationFailed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant's code: the wire codes front ends answer with.
    #[test]
    fn every_variant_has_its_code() {
        use ResolveError as E;
        let s = || String::from("x");
        let cases: Vec<(ResolveError, u32)> = vec![
            (E::NotFound, 100),
            (E::NoValues, 200),
            (E::NoValueAt { index: 3 }, 200),
            (E::Referral { values: Vec::new() }, 303),
            (E::NotResponsible, 301),
            (E::WrongPartition, 301),
            (E::Mirror { upstream: s() }, 7),
            (E::AlreadyExists, 101),
            (E::ValueExists { index: 3 }, 201),
            (E::AuthenticationNeeded, 402),
            (E::NonPublicNeedsAuthentication, 402),
            (E::AuthenticationFailed(s()), 403),
            (E::BadChallengeAnswer(s()), 406),
            (
                E::NotAdministrator {
                    identity: s(),
                    what: s(),
                },
                400,
            ),
            (E::Denied(s()), 401),
            (E::AdminWriteProtected { index: 3 }, 401),
            (E::NotServerAdmin { identity: s() }, 401),
            (E::InvalidHandle(s()), 102),
            (E::InvalidValue(s()), 202),
            (E::Value(ValueError::DuplicateIndex(1)), 202),
            (E::Busy, 3),
            (E::Malformed(s()), 4),
            (E::RecursionTooDeep { count: 9, max: 10 }, 6),
            (E::Recursion(s()), 2),
            (E::Unverified(s()), 2),
            (
                E::Upstream {
                    code: ResponseCode::ServerBackup,
                    message: s(),
                },
                7,
            ),
            (
                E::Store(SharedStoreError(Arc::new(StoreError::RecordTooLarge(
                    5 << 20,
                )))),
                2,
            ),
            (E::Internal, 2),
        ];
        for (e, code) in cases {
            assert_eq!(e.code().code(), code, "{e:?}");
        }
    }

    #[test]
    fn messages_are_the_wire_texts() {
        assert_eq!(ResolveError::NotFound.to_string(), "Handle Not Found");
        assert_eq!(ResolveError::NoValues.to_string(), "Values Not Found");
        assert_eq!(
            ResolveError::NotResponsible.to_string(),
            "That prefix doesn't live here"
        );
        assert_eq!(
            ResolveError::RecursionTooDeep { count: 10, max: 10 }.to_string(),
            "recursion count 10 is too high (this node sends at most 10)"
        );
        let nsa = ResolveError::NotServerAdmin {
            identity: "300:0.NA/88".into(),
        };
        assert!(nsa
            .to_string()
            .starts_with("300:0.NA/88 is not a server administrator"));
        assert!(ResolveError::referral(&ResolveError::NotFound).is_empty());
    }
}
