//! Request digests (handle-protocol.md §2): the hash of a request's header and body that a
//! response carries (RD) and a challenge names, by protocol version (SHA-256 from 2.7, SHA-1
//! from 2.1, MD5 before), and the version rule the answers share.
//!
//! They sit in `wire` because every answer may carry one (the RD flag, forced on RC 402):
//! [`super::respond::Responder`] computes them, and `auth::challenge` re-exports them for the
//! challenge-answer checks and the clients.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Request-digest hash types (`Common.HASH_CODE_*`), the first byte of an RD field.
pub mod hash_type {
    /// Pre-2.1 MD5: on the wire the RD field is `int4 length + digest` with no type byte (the
    /// length's first byte, always 0, doubles as this type code).
    pub const MD5_OLD_FORMAT: u8 = 0;
    /// `01` + 16 bytes of MD5.
    pub const MD5: u8 = 1;
    /// `02` + 20 bytes of SHA-1 (protocol 2.1–2.6).
    pub const SHA1: u8 = 2;
    /// `03` + 32 bytes of SHA-256 (protocol ≥ 2.7).
    pub const SHA256: u8 = 3;
}

/// `major.minor >= want_major.want_minor`, with Handle.Net's rule that major 5 is legacy 2.0.
pub fn version_at_least(major: u8, minor: u8, want_major: u8, want_minor: u8) -> bool {
    let (major, minor) = if major == 5 { (2, 0) } else { (major, minor) };
    (major, minor) >= (want_major, want_minor)
}

/// The digest a response carries of its request (RD flag, RC 402 challenges): SHA-256
/// ([`hash_type::SHA256`]) for protocol ≥ 2.7, SHA-1 ([`hash_type::SHA1`]) for 2.1–2.6, and
/// MD5 below, over the request's encoded header + body (not the envelope, not the credential).
///
/// Below 2.1 the type is [`hash_type::MD5_OLD_FORMAT`] (0), not [`hash_type::MD5`] (1), as
/// Handle.Net's `AbstractResponse.takeDigestOfRequest` does: such peers expect the RD field as
/// `int4 length + digest` without a type byte, and the answer's MAC input uses the same digest.
pub fn request_digest(major: u8, minor: u8, header_and_body: &[u8]) -> (u8, Vec<u8>) {
    let kind = if version_at_least(major, minor, 2, 7) {
        hash_type::SHA256
    } else if version_at_least(major, minor, 2, 1) {
        hash_type::SHA1
    } else {
        hash_type::MD5_OLD_FORMAT
    };
    // Every type chosen above is supported, so the fallback is never taken.
    let digest = digest_of_type(kind, header_and_body).unwrap_or_default();
    (kind, digest)
}

/// The digest of `data` under an RD hash type (0/1 MD5, 2 SHA-1, 3 SHA-256); `None` for
/// another type.
pub fn digest_of_type(kind: u8, data: &[u8]) -> Option<Vec<u8>> {
    Some(match kind {
        hash_type::MD5_OLD_FORMAT | hash_type::MD5 => Md5::digest(data).to_vec(),
        hash_type::SHA1 => Sha1::digest(data).to_vec(),
        hash_type::SHA256 => Sha256::digest(data).to_vec(),
        _ => return None,
    })
}
