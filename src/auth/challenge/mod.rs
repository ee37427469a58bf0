//! Challenge/response cryptography of the native Handle protocol (handle-protocol.md §2, §7):
//! request digests, HS_SECKEY answers (PBKDF2-HMAC-SHA1 and the older digest forms) and
//! HS_PUBKEY answers (RSA and DSA signatures), plus a client-side [`PrivateKey`].
//!
//! Everything here is pure: no I/O, no clock, no store. The server computes the request digest
//! when it sends a challenge (RC 402) and later checks the client's answer (opCode 200) with
//! [`verify_seckey_answer`] or [`verify_pubkey_answer`]; a client builds its answer with
//! [`seckey_answer_pbkdf2`] / [`seckey_answer_sha1`] or [`PrivateKey::sign_answer`].
//!
//! Verifiers treat `signed_response` as hostile: a malformed or unsupported answer is an
//! `Err`, a well-formed answer that does not match is `Ok(false)`, nothing panics, MACs are
//! compared in constant time and PBKDF2 parameters that would burn CPU are refused before any
//! work is done.
//!
//! Byte layouts follow the Handle.Net 9.2 reference (`SecretKeyAuthenticationInfo`,
//! `Util.doMac`, `HandleServer.verifyChallenge`, `PublicKeyAuthenticationInfo`) and are pinned
//! by the vectors of `handle-vectors.json`.
//!
//! # Files
//!
//! `digest.rs` has the request digests, `seckey.rs` the HS_SECKEY answers (made and checked,
//! also the REST session's hash form), `pubkey.rs` the checks of HS_PUBKEY signatures and
//! `private_key.rs` the client's [`PrivateKey`] (PEM, generation, signing). [`ChallengeError`]
//! is theirs in common. Everything is re-exported here, so callers name `auth::challenge::X`
//! whichever file `X` lives in.

mod digest;
mod private_key;
mod pubkey;
mod seckey;

pub use digest::{digest_of_type, hash_type, request_digest};
pub use private_key::{PrivateKey, MAX_RSA_GENERATE_BITS, MIN_RSA_GENERATE_BITS};
pub use pubkey::{
    verify_parts_signature, verify_pubkey_answer, verify_session_signature, SignatureHash,
    MAX_DSA_P_BITS, MAX_DSA_Q_BITS, MAX_RSA_BITS,
};
pub use seckey::{
    mac_alg, seckey_answer_for_version, seckey_answer_pbkdf2, seckey_answer_sha1,
    seckey_form_allowed, verify_seckey_answer, verify_seckey_answer_with_limit,
    verify_session_secret, DEFAULT_PBKDF2_ITERATIONS, DEFAULT_PBKDF2_KEY_BITS,
    DEFAULT_PBKDF2_SALT_LEN, MAX_PBKDF2_KEY_BITS, MAX_PBKDF2_SALT, MAX_PBKDF2_WORK,
};

use crate::model::codec::DecodeError;

/// Why an answer could not be checked or a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("malformed answer: {0}")]
    Malformed(#[from] DecodeError),
    #[error("empty secret-key answer")]
    Empty,
    #[error("unsupported secret-key MAC algorithm {0:#04x}")]
    UnsupportedMac(u8),
    #[error("refused PBKDF2 parameters: {0}")]
    Pbkdf2Parameters(String),
    #[error("unsupported signature hash algorithm {0:?}")]
    UnsupportedHash(String),
    #[error("unsupported request digest type {0}")]
    UnsupportedDigestType(u8),
    #[error("unsupported key: {0}")]
    UnsupportedKey(&'static str),
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    #[error("private key: {0}")]
    PrivateKey(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

#[cfg(test)]
mod tests;
