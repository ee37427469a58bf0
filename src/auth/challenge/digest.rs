//! Request digests for the challenge checks: the computation is the wire's
//! ([`crate::wire::handle::digest`], since every answer may carry one); this file gives it the
//! challenge layer's error.

pub(super) use crate::wire::handle::digest::version_at_least;
pub use crate::wire::handle::digest::{hash_type, request_digest};

use super::ChallengeError;

/// The digest of `data` under an RD hash type (0/1 MD5, 2 SHA-1, 3 SHA-256); a client uses
/// this to check that a challenge names the request it sent.
pub fn digest_of_type(kind: u8, data: &[u8]) -> Result<Vec<u8>, ChallengeError> {
    crate::wire::handle::digest::digest_of_type(kind, data)
        .ok_or(ChallengeError::UnsupportedDigestType(kind))
}
