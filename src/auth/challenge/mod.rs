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

use std::fmt;

use hmac::{Hmac, Mac};
use md5::Md5;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::codec::{DecodeError, Reader, Writer};
use crate::model::PublicKey;

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

/// The algorithm byte that starts an HS_SECKEY answer (`Common.HASH_CODE_*`).
pub mod mac_alg {
    /// `MD5(secret ‖ nonce ‖ digest ‖ secret)`.
    pub const MD5: u8 = 0x01;
    /// `SHA1(secret ‖ nonce ‖ digest ‖ secret)`, what 2.1–2.6 clients send.
    pub const SHA1: u8 = 0x02;
    /// `SHA256(secret ‖ nonce ‖ digest ‖ secret)`.
    pub const SHA256: u8 = 0x03;
    /// `HMAC-SHA1(secret, nonce ‖ digest)`.
    pub const HMAC_SHA1: u8 = 0x12;
    /// `HMAC-SHA256(secret, nonce ‖ digest)`.
    pub const HMAC_SHA256: u8 = 0x13;
    /// PBKDF2-HMAC-SHA1 key, then HMAC-SHA1, what ≥ 2.7 clients send.
    pub const PBKDF2_HMAC_SHA1: u8 = 0x22;
}

/// Largest PBKDF2 work accepted in an answer: iterations × output blocks (one block per 160
/// bits of key). Handle.Net clients use 10,000 × 1.
pub const MAX_PBKDF2_WORK: u32 = 10_000_000;
/// Largest PBKDF2 key length (bits) accepted in an answer.
pub const MAX_PBKDF2_KEY_BITS: u32 = 4096;
/// Largest PBKDF2 salt (bytes) accepted in an answer.
pub const MAX_PBKDF2_SALT: usize = 1024;
/// What Handle.Net clients use and what [`seckey_answer_for_version`] sends.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 10_000;
pub const DEFAULT_PBKDF2_KEY_BITS: u32 = 160;
pub const DEFAULT_PBKDF2_SALT_LEN: usize = 16;

/// Largest RSA modulus (bits) accepted for verification.
pub const MAX_RSA_BITS: usize = 8192;
/// Smallest and largest RSA key [`PrivateKey::generate_rsa`] makes.
pub const MIN_RSA_GENERATE_BITS: usize = 1024;
pub const MAX_RSA_GENERATE_BITS: usize = 8192;
/// Largest DSA p and q (bits) accepted for verification (FIPS 186-4 stops at 3072/256).
pub const MAX_DSA_P_BITS: usize = 4096;
pub const MAX_DSA_Q_BITS: usize = 512;

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

// ---------------------------------------------------------------------------------------------
// Request digest (§2)

/// `major.minor >= want_major.want_minor`, with Handle.Net's rule that major 5 is legacy 2.0.
fn version_at_least(major: u8, minor: u8, want_major: u8, want_minor: u8) -> bool {
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

/// The digest of `data` under an RD hash type (0/1 MD5, 2 SHA-1, 3 SHA-256); a client uses
/// this to check that a challenge names the request it sent.
pub fn digest_of_type(kind: u8, data: &[u8]) -> Result<Vec<u8>, ChallengeError> {
    Ok(match kind {
        hash_type::MD5_OLD_FORMAT | hash_type::MD5 => Md5::digest(data).to_vec(),
        hash_type::SHA1 => Sha1::digest(data).to_vec(),
        hash_type::SHA256 => Sha256::digest(data).to_vec(),
        other => return Err(ChallengeError::UnsupportedDigestType(other)),
    })
}

// ---------------------------------------------------------------------------------------------
// HS_SECKEY answers (§7)

/// `H(secret ‖ nonce ‖ digest ‖ secret)` (`Util.doMac` for the plain digest codes).
fn sandwich<D: Digest>(secret: &[u8], nonce: &[u8], digest: &[u8]) -> Vec<u8> {
    let mut h = D::new();
    h.update(secret);
    h.update(nonce);
    h.update(digest);
    h.update(secret);
    h.finalize().to_vec()
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The password bytes Java's `PBKDF2WithHmacSHA1` really uses: Handle.Net turns each secret
/// byte into the char U+0000–U+00FF (Latin-1) and the JCE encodes those chars as UTF-8. ASCII
/// secrets are unchanged; bytes ≥ 0x80 become two bytes.
fn java_pbkdf2_password(secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len() * 2);
    for &b in secret {
        if b < 0x80 {
            out.push(b);
        } else {
            out.push(0xC0 | (b >> 6));
            out.push(0x80 | (b & 0x3F));
        }
    }
    out
}

/// PBKDF2-HMAC-SHA1 as Handle.Net computes it: `key_bits / 8` bytes (rounded down, as the JCE
/// does) from the Java-transformed secret.
fn pbkdf2_key(secret: &[u8], salt: &[u8], iterations: u32, key_bits: u32) -> Vec<u8> {
    let mut key = vec![0u8; (key_bits / 8) as usize];
    pbkdf2::pbkdf2_hmac::<Sha1>(&java_pbkdf2_password(secret), salt, iterations, &mut key);
    key
}

/// `UTF8String salt, int4 iterations, int4 keyBits, UTF8String mac` (`constructPbkdf2Encoding`).
fn pbkdf2_encoding(salt: &[u8], iterations: u32, key_bits: u32, mac: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + salt.len() + mac.len());
    out.put_bytes(salt);
    out.put_u32(iterations);
    out.put_u32(key_bits);
    out.put_bytes(mac);
    out
}

/// The HS_SECKEY answer of protocol ≥ 2.7: `0x22, UTF8String salt, int4 iterations,
/// int4 keyBits, UTF8String mac` with
/// `mac = HMAC-SHA1(PBKDF2-HMAC-SHA1(secret, salt, iterations, key_bits / 8), nonce ‖ digest)`.
///
/// The parameters are the caller's own (use the `DEFAULT_PBKDF2_*` constants and 16 random
/// salt bytes, or [`seckey_answer_for_version`]); they are not checked here, so keep them
/// within what [`verify_seckey_answer`] accepts.
pub fn seckey_answer_pbkdf2(
    secret: &[u8],
    nonce: &[u8],
    digest: &[u8],
    salt: &[u8],
    iterations: u32,
    key_bits: u32,
) -> Vec<u8> {
    let key = pbkdf2_key(secret, salt, iterations, key_bits);
    let mac = hmac_sha1(&key, &[nonce, digest]);
    let mut out = vec![mac_alg::PBKDF2_HMAC_SHA1];
    out.extend_from_slice(&pbkdf2_encoding(salt, iterations, key_bits, &mac));
    out
}

/// The HS_SECKEY answer of protocol 2.1–2.6: `0x02` followed directly by the 20 raw bytes of
/// `SHA1(secret ‖ nonce ‖ digest ‖ secret)` — 21 bytes, **no length prefix**. Handle.Net's
/// `SecretKeyAuthenticationInfo.authenticate` copies the digest right after the algorithm byte
/// and `HandleServer.verifyChallenge` compares everything after that byte with the digest; only
/// the PBKDF2 form (0x22) carries inner length-prefixed fields.
pub fn seckey_answer_sha1(secret: &[u8], nonce: &[u8], digest: &[u8]) -> Vec<u8> {
    let mut out = vec![mac_alg::SHA1];
    out.extend_from_slice(&sandwich::<Sha1>(secret, nonce, digest));
    out
}

/// The answer a Handle.Net client would send to a challenge of protocol `major.minor`: PBKDF2
/// with a fresh random 16-byte salt, 10,000 iterations and a 160-bit key for ≥ 2.7, the SHA-1
/// form for 2.1–2.6, and the bare 16-byte MD5 digest (no algorithm byte) below 2.1.
pub fn seckey_answer_for_version(
    major: u8,
    minor: u8,
    secret: &[u8],
    nonce: &[u8],
    digest: &[u8],
) -> Vec<u8> {
    if version_at_least(major, minor, 2, 7) {
        let mut salt = [0u8; DEFAULT_PBKDF2_SALT_LEN];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut salt[..]);
        seckey_answer_pbkdf2(
            secret,
            nonce,
            digest,
            &salt,
            DEFAULT_PBKDF2_ITERATIONS,
            DEFAULT_PBKDF2_KEY_BITS,
        )
    } else if version_at_least(major, minor, 2, 1) {
        seckey_answer_sha1(secret, nonce, digest)
    } else {
        sandwich::<Md5>(secret, nonce, digest)
    }
}

/// Whether an HS_SECKEY answer's form may answer a challenge of protocol `major.minor`: the
/// MD5 forms (the bare pre-2.1 digest and algorithm byte `0x01`) only below 2.7, where no
/// client of a current version would send them; a 2.7+ challenge answered with MD5 is a
/// downgrade, not a client.
pub fn seckey_form_allowed(major: u8, minor: u8, signed_response: &[u8]) -> bool {
    let md5 = signed_response.len() == 16 || signed_response.first() == Some(&mac_alg::MD5);
    !md5 || !version_at_least(major, minor, 2, 7)
}

/// Check an HS_SECKEY answer against the stored secret, with the default PBKDF2 work limit
/// ([`MAX_PBKDF2_WORK`]). See [`verify_seckey_answer_with_limit`].
pub fn verify_seckey_answer(
    secret: &[u8],
    nonce: &[u8],
    digest: &[u8],
    signed_response: &[u8],
) -> Result<bool, ChallengeError> {
    verify_seckey_answer_with_limit(secret, nonce, digest, signed_response, MAX_PBKDF2_WORK)
}

/// Check an HS_SECKEY answer against the stored secret.
///
/// Accepted forms (the algorithm byte first, as Handle.Net's `verifyChallenge` reads it):
/// - `0x22` PBKDF2-HMAC-SHA1 (≥ 2.7). Refused with an error before any hashing: iterations 0,
///   key bits 0 / not a multiple of 8 / over [`MAX_PBKDF2_KEY_BITS`], an empty salt or one over
///   [`MAX_PBKDF2_SALT`] bytes, and iterations × ⌈key bits / 160⌉ over `max_work`.
/// - `0x02` SHA-1 sandwich (2.1–2.6), and the other codes Handle.Net's server also verifies:
///   `0x01` MD5 and `0x03` SHA-256 sandwiches, `0x12` HMAC-SHA1 and `0x13` HMAC-SHA256 keyed
///   with the secret.
/// - The pre-2.1 answer, a bare 16-byte MD5 sandwich without algorithm byte. Handle.Net picks
///   this by the message's protocol version; here it is picked by length, which is unambiguous:
///   every form with an algorithm byte is at least 17 bytes long.
///
/// Any other algorithm byte is `Err(UnsupportedMac)`; a well-formed answer whose MAC differs is
/// `Ok(false)`. Comparison is constant-time.
pub fn verify_seckey_answer_with_limit(
    secret: &[u8],
    nonce: &[u8],
    digest: &[u8],
    signed_response: &[u8],
    max_work: u32,
) -> Result<bool, ChallengeError> {
    if signed_response.len() == 16 {
        let expected = sandwich::<Md5>(secret, nonce, digest);
        return Ok(bool::from(expected.ct_eq(signed_response)));
    }
    let (&alg, rest) = signed_response.split_first().ok_or(ChallengeError::Empty)?;
    let expected = match alg {
        mac_alg::MD5 => sandwich::<Md5>(secret, nonce, digest),
        mac_alg::SHA1 => sandwich::<Sha1>(secret, nonce, digest),
        mac_alg::SHA256 => sandwich::<Sha256>(secret, nonce, digest),
        mac_alg::HMAC_SHA1 => hmac_sha1(secret, &[nonce, digest]),
        mac_alg::HMAC_SHA256 => hmac_sha256(secret, &[nonce, digest]),
        mac_alg::PBKDF2_HMAC_SHA1 => {
            let mut r = Reader::new(rest);
            let salt = r.bytes("PBKDF2 salt")?;
            let iterations = r.u32("PBKDF2 iterations")?;
            let key_bits = r.u32("PBKDF2 key length")?;
            check_pbkdf2_parameters(salt, iterations, key_bits, max_work)?;
            let key = pbkdf2_key(secret, salt, iterations, key_bits);
            let mac = hmac_sha1(&key, &[nonce, digest]);
            // Like Handle.Net, compare the whole re-encoded parameter block, so a differing
            // MAC length or trailing bytes simply do not match.
            pbkdf2_encoding(salt, iterations, key_bits, &mac)
        }
        other => return Err(ChallengeError::UnsupportedMac(other)),
    };
    Ok(bool::from(expected.as_slice().ct_eq(rest)))
}

fn check_pbkdf2_parameters(
    salt: &[u8],
    iterations: u32,
    key_bits: u32,
    max_work: u32,
) -> Result<(), ChallengeError> {
    let refuse = |why: String| Err(ChallengeError::Pbkdf2Parameters(why));
    if salt.is_empty() {
        return refuse("empty salt".into());
    }
    if salt.len() > MAX_PBKDF2_SALT {
        return refuse(format!(
            "salt of {} bytes (limit {MAX_PBKDF2_SALT})",
            salt.len()
        ));
    }
    if key_bits == 0 || key_bits % 8 != 0 || key_bits > MAX_PBKDF2_KEY_BITS {
        return refuse(format!(
            "key length {key_bits} bits (must be a positive multiple of 8 up to {MAX_PBKDF2_KEY_BITS})"
        ));
    }
    if iterations == 0 {
        return refuse("zero iterations".into());
    }
    let blocks = key_bits.div_ceil(160);
    if u64::from(iterations) * u64::from(blocks) > u64::from(max_work) {
        return refuse(format!(
            "{iterations} iterations × {blocks} blocks exceeds the work limit {max_work}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HS_PUBKEY answers (§7)

/// The hash of a signature algorithm (`SHA256withRSA`, `SHA1withDSA`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureHash {
    Sha1,
    Sha256,
}

impl SignatureHash {
    /// The `hashAlgId` an answer names: "SHA-256" (what ≥ 2.7 clients send) or "SHA1".
    pub fn wire_name(self) -> &'static str {
        match self {
            SignatureHash::Sha1 => "SHA1",
            SignatureHash::Sha256 => "SHA-256",
        }
    }

    /// Parse a `hashAlgId` as `Util.getSigIdFromHashAlgId` does: "SHA1"/"SHA-1",
    /// "SHA-256"/"SHA256" (ASCII case ignored) or the one-byte codes 2 and 3. MD5 (named or
    /// code 1) is refused.
    pub fn from_wire(id: &[u8]) -> Result<SignatureHash, ChallengeError> {
        let is = |name: &str| id.eq_ignore_ascii_case(name.as_bytes());
        if is("SHA1") || is("SHA-1") || id == [hash_type::SHA1] {
            Ok(SignatureHash::Sha1)
        } else if is("SHA-256") || is("SHA256") || id == [hash_type::SHA256] {
            Ok(SignatureHash::Sha256)
        } else {
            Err(ChallengeError::UnsupportedHash(
                String::from_utf8_lossy(id).into_owned(),
            ))
        }
    }
}

/// A big-endian two's-complement integer from an HS_PUBKEY field, read as unsigned magnitude
/// (leading 0x00 bytes are dropped; a missing sign byte is tolerated).
fn key_int(bytes: &[u8]) -> BigUint {
    BigUint::from_bytes_be(bytes)
}

/// Java `BigInteger.toByteArray()` of a non-negative integer: minimal big-endian bytes with a
/// leading 0x00 when the top bit would otherwise be set.
fn java_int(n: &BigUint) -> Vec<u8> {
    let mut bytes = n.to_bytes_be();
    while bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
        bytes.remove(0);
    }
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    if bytes.is_empty() {
        bytes.push(0);
    }
    bytes
}

fn rsa_public_key(exponent: &[u8], modulus: &[u8]) -> Result<RsaPublicKey, ChallengeError> {
    RsaPublicKey::new_with_max_size(key_int(modulus), key_int(exponent), MAX_RSA_BITS)
        .map_err(|e| ChallengeError::InvalidKey(format!("RSA: {e}")))
}

fn dsa_public_key(
    q: &[u8],
    p: &[u8],
    g: &[u8],
    y: &[u8],
) -> Result<dsa::VerifyingKey, ChallengeError> {
    let (q, p, g, y) = (key_int(q), key_int(p), key_int(g), key_int(y));
    if p.bits() > MAX_DSA_P_BITS || q.bits() > MAX_DSA_Q_BITS {
        return Err(ChallengeError::InvalidKey(format!(
            "DSA: p of {} bits / q of {} bits exceeds {MAX_DSA_P_BITS}/{MAX_DSA_Q_BITS}",
            p.bits(),
            q.bits()
        )));
    }
    if q.bits() < 2 || q >= p {
        return Err(ChallengeError::InvalidKey("DSA: q out of range".into()));
    }
    let bad = |_| ChallengeError::InvalidKey("DSA: inconsistent p, q, g, y".into());
    let components = dsa::Components::from_components(p, q, g).map_err(bad)?;
    dsa::VerifyingKey::from_components(components, y).map_err(bad)
}

fn hash_message(hash: SignatureHash, nonce: &[u8], digest: &[u8]) -> Vec<u8> {
    match hash {
        SignatureHash::Sha1 => Sha1::new()
            .chain_update(nonce)
            .chain_update(digest)
            .finalize()
            .to_vec(),
        SignatureHash::Sha256 => Sha256::new()
            .chain_update(nonce)
            .chain_update(digest)
            .finalize()
            .to_vec(),
    }
}

fn pkcs1v15(hash: SignatureHash) -> Pkcs1v15Sign {
    match hash {
        SignatureHash::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
        SignatureHash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
    }
}

fn dsa_verify(
    key: &dsa::VerifyingKey,
    hash: SignatureHash,
    nonce: &[u8],
    digest: &[u8],
    signature: &[u8],
) -> bool {
    use dsa::signature::DigestVerifier;
    let Ok(sig) = dsa::Signature::try_from(signature) else {
        return false;
    };
    match hash {
        SignatureHash::Sha1 => key
            .verify_digest(Sha1::new().chain_update(nonce).chain_update(digest), &sig)
            .is_ok(),
        SignatureHash::Sha256 => key
            .verify_digest(Sha256::new().chain_update(nonce).chain_update(digest), &sig)
            .is_ok(),
    }
}

/// Check an HS_PUBKEY answer: `signed_response` = `UTF8String hashAlgId, UTF8String signature`
/// (nothing after), the signature over `nonce ‖ digest`.
///
/// RSA keys verify PKCS#1 v1.5 (Java `SHA256withRSA` / `SHA1withRSA`, moduli up to
/// [`MAX_RSA_BITS`]); DSA keys verify a DER `SEQUENCE { r, s }` (`SHA256withDSA` /
/// `SHA1withDSA`, the digest truncated to q's length as FIPS 186 and Java do). DH keys cannot
/// sign and are an error. Malformed framing, an unknown or MD5 hash, or an unusable key is an
/// `Err`; a signature that does not verify (including one of the wrong size or bad DER) is
/// `Ok(false)`.
pub fn verify_pubkey_answer(
    key: &PublicKey,
    nonce: &[u8],
    digest: &[u8],
    signed_response: &[u8],
) -> Result<bool, ChallengeError> {
    let mut r = Reader::new(signed_response);
    let hash_id = r.bytes("signature hash algorithm")?;
    let signature = r.bytes("signature")?;
    r.finish()?;
    let hash = SignatureHash::from_wire(hash_id)?;
    verify_signature(key, hash, nonce, digest, signature)
}

/// Verify `signature` by `key` over `first ‖ second` hashed with `hash` (a challenge answer's
/// `nonce ‖ digest`, or a signed message's covered bytes and nothing): RSA PKCS#1 v1.5 or DSA
/// DER, with the errors of [`verify_pubkey_answer`].
pub fn verify_parts_signature(
    key: &PublicKey,
    hash: SignatureHash,
    first: &[u8],
    second: &[u8],
    signature: &[u8],
) -> Result<bool, ChallengeError> {
    verify_signature(key, hash, first, second, signature)
}

/// Verify `signature` by `key` over `nonce ‖ digest` hashed with `hash`.
fn verify_signature(
    key: &PublicKey,
    hash: SignatureHash,
    nonce: &[u8],
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, ChallengeError> {
    match key {
        PublicKey::Rsa { exponent, modulus } => {
            let key = rsa_public_key(exponent, modulus)?;
            let hashed = hash_message(hash, nonce, digest);
            Ok(key.verify(pkcs1v15(hash), &hashed, signature).is_ok())
        }
        PublicKey::Dsa { q, p, g, y } => {
            let key = dsa_public_key(q, p, g, y)?;
            Ok(dsa_verify(&key, hash, nonce, digest, signature))
        }
        PublicKey::Dh { .. } => Err(ChallengeError::UnsupportedKey(
            "DH keys cannot sign challenge answers",
        )),
    }
}

/// Check the signature of a REST session authentication (Handle.Net's `Authorization:
/// Handle sessionId=..., type="HS_PUBKEY", alg=..., cnonce=..., signature=...`): `signature`
/// over `nonce ‖ cnonce` with `key`, `alg` "SHA1" or "SHA256" (also "SHA-1" / "SHA-256").
/// Same rules and errors as [`verify_pubkey_answer`].
pub fn verify_session_signature(
    key: &PublicKey,
    alg: &str,
    nonce: &[u8],
    cnonce: &[u8],
    signature: &[u8],
) -> Result<bool, ChallengeError> {
    let hash = SignatureHash::from_wire(alg.as_bytes())?;
    verify_signature(key, hash, nonce, cnonce, signature)
}

/// Check the HS_SECKEY form of a REST session authentication: `signature` =
/// `H(secret ‖ nonce ‖ cnonce ‖ secret)` with H = SHA-1 (`alg` "SHA1") or SHA-256 ("SHA256"),
/// compared in constant time.
pub fn verify_session_secret(
    secret: &[u8],
    alg: &str,
    nonce: &[u8],
    cnonce: &[u8],
    signature: &[u8],
) -> Result<bool, ChallengeError> {
    use subtle::ConstantTimeEq;
    fn digest<D: Digest>(parts: [&[u8]; 4]) -> Vec<u8> {
        parts
            .iter()
            .fold(D::new(), |d, part| d.chain_update(part))
            .finalize()
            .to_vec()
    }
    let parts = [secret, nonce, cnonce, secret];
    let expected = match SignatureHash::from_wire(alg.as_bytes())? {
        SignatureHash::Sha1 => digest::<Sha1>(parts),
        SignatureHash::Sha256 => digest::<Sha256>(parts),
    };
    Ok(bool::from(expected.as_slice().ct_eq(signature)))
}

// ---------------------------------------------------------------------------------------------
// Client side: private keys

/// A private key for answering HS_PUBKEY challenges (and for the admin tools' key files).
#[derive(Clone)]
pub enum PrivateKey {
    Rsa(RsaPrivateKey),
    Dsa(dsa::SigningKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private material.
        match self {
            PrivateKey::Rsa(k) => write!(f, "PrivateKey::Rsa({} bits)", k.n().bits()),
            PrivateKey::Dsa(k) => write!(
                f,
                "PrivateKey::Dsa({} bits)",
                k.verifying_key().components().p().bits()
            ),
        }
    }
}

/// The base64 body of the first PEM block labelled `label`, re-wrapped as a clean PEM document.
fn pem_block(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let after = start + begin.len();
    let stop = after + text[after..].find(&end)?;
    let body: String = text[after..stop]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("");
    let mut out = String::with_capacity(body.len() + begin.len() + end.len() + body.len() / 64 + 4);
    out.push_str(&begin);
    out.push('\n');
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&end);
    out.push('\n');
    Some(out)
}

/// RSA keys below [`MIN_RSA_GENERATE_BITS`] are refused: too weak, and too small to carry a
/// SHA-256 PKCS#1 signature at the low end.
fn checked_rsa(key: RsaPrivateKey) -> Result<PrivateKey, ChallengeError> {
    let bits = key.n().bits();
    if bits < MIN_RSA_GENERATE_BITS {
        return Err(ChallengeError::PrivateKey(format!(
            "RSA key of {bits} bits is below the minimum {MIN_RSA_GENERATE_BITS}"
        )));
    }
    Ok(PrivateKey::Rsa(key))
}

impl PrivateKey {
    /// Read a PEM private key: PKCS#8 `BEGIN PRIVATE KEY` (RSA or DSA) or PKCS#1
    /// `BEGIN RSA PRIVATE KEY`; text around the block is ignored. RSA keys must have at least
    /// [`MIN_RSA_GENERATE_BITS`] bits. Encrypted keys and OpenSSL's traditional
    /// `BEGIN DSA PRIVATE KEY` are refused (convert with `openssl pkcs8 -topk8 -nocrypt`).
    pub fn from_pem(text: &str) -> Result<PrivateKey, ChallengeError> {
        let err = |what: String| ChallengeError::PrivateKey(what);
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(err("encrypted PEM keys are not supported".into()));
        }
        if text.contains("-----BEGIN DSA PRIVATE KEY-----") {
            return Err(err(
                "traditional DSA PEM is not supported; use PKCS#8 (BEGIN PRIVATE KEY)".into(),
            ));
        }
        if let Some(pem) = pem_block(text, "RSA PRIVATE KEY") {
            return RsaPrivateKey::from_pkcs1_pem(&pem)
                .map_err(|e| err(format!("PKCS#1 RSA key: {e}")))
                .and_then(checked_rsa);
        }
        if let Some(pem) = pem_block(text, "PRIVATE KEY") {
            let rsa_err = match RsaPrivateKey::from_pkcs8_pem(&pem) {
                Ok(k) => return checked_rsa(k),
                Err(e) => e,
            };
            return match dsa::SigningKey::from_pkcs8_pem(&pem) {
                Ok(k) => Ok(PrivateKey::Dsa(k)),
                Err(dsa_err) => Err(err(format!(
                    "PKCS#8 key is neither RSA ({rsa_err}) nor DSA ({dsa_err})"
                ))),
            };
        }
        Err(err(
            "no 'BEGIN PRIVATE KEY' or 'BEGIN RSA PRIVATE KEY' PEM block".into(),
        ))
    }

    /// A PKCS#8 DER private key (RSA or DSA), as Java's `PrivateKey.getEncoded()` gives it.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, ChallengeError> {
        use rsa::pkcs8::DecodePrivateKey;
        let rsa_err = match RsaPrivateKey::from_pkcs8_der(der) {
            Ok(k) => return checked_rsa(k),
            Err(e) => e,
        };
        dsa::SigningKey::from_pkcs8_der(der)
            .map(PrivateKey::Dsa)
            .map_err(|dsa_err| {
                ChallengeError::PrivateKey(format!(
                    "PKCS#8 key is neither RSA ({rsa_err}) nor DSA ({dsa_err})"
                ))
            })
    }

    /// A new RSA key (exponent 65537) of `bits` bits,
    /// [`MIN_RSA_GENERATE_BITS`]..=[`MAX_RSA_GENERATE_BITS`].
    pub fn generate_rsa(bits: usize) -> Result<PrivateKey, ChallengeError> {
        if !(MIN_RSA_GENERATE_BITS..=MAX_RSA_GENERATE_BITS).contains(&bits) {
            return Err(ChallengeError::PrivateKey(format!(
                "RSA key size {bits} outside {MIN_RSA_GENERATE_BITS}..={MAX_RSA_GENERATE_BITS}"
            )));
        }
        RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
            .map(PrivateKey::Rsa)
            .map_err(|e| ChallengeError::PrivateKey(format!("RSA key generation: {e}")))
    }

    /// The HS_PUBKEY form of the public half, integers as Java writes them (positive
    /// big-endian, a leading 0x00 when the top bit is set).
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa {
                exponent: java_int(k.e()),
                modulus: java_int(k.n()),
            },
            PrivateKey::Dsa(k) => {
                let vk = k.verifying_key();
                let c = vk.components();
                PublicKey::Dsa {
                    q: java_int(c.q()),
                    p: java_int(c.p()),
                    g: java_int(c.g()),
                    y: java_int(vk.y()),
                }
            }
        }
    }

    /// Unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`, LF line endings). Encoding a key this
    /// type holds does not fail; should it ever, the result is empty (see
    /// [`try_to_pem`](Self::try_to_pem)).
    pub fn to_pem(&self) -> String {
        self.try_to_pem().unwrap_or_default()
    }

    /// [`to_pem`](Self::to_pem) with the encoder's error.
    pub fn try_to_pem(&self) -> Result<String, ChallengeError> {
        let pem = match self {
            PrivateKey::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::Dsa(k) => k.to_pkcs8_pem(LineEnding::LF),
        };
        pem.map(|p| p.as_str().to_owned())
            .map_err(|e| ChallengeError::PrivateKey(format!("PKCS#8 encoding: {e}")))
    }

    /// The HS_PUBKEY answer of protocol ≥ 2.7: `UTF8String "SHA-256", UTF8String signature`
    /// over `nonce ‖ digest` (SHA256withRSA, or SHA256withDSA with a DER signature).
    ///
    /// Keys this type accepts (RSA ≥ 1024 bits, valid DSA) always sign; if signing ever failed
    /// the answer would be empty, which every server rejects (see
    /// [`try_sign_answer`](Self::try_sign_answer) for the error).
    pub fn sign_answer(&self, nonce: &[u8], digest: &[u8]) -> Vec<u8> {
        self.try_sign_answer(SignatureHash::Sha256, nonce, digest)
            .unwrap_or_default()
    }

    /// [`sign_answer`](Self::sign_answer) with a chosen hash and the signer's error; servers
    /// before 2.7 expect [`SignatureHash::Sha1`] ("SHA1").
    pub fn try_sign_answer(
        &self,
        hash: SignatureHash,
        nonce: &[u8],
        digest: &[u8],
    ) -> Result<Vec<u8>, ChallengeError> {
        let signature = self.try_sign(hash, nonce, digest)?;
        let mut out = Vec::with_capacity(16 + signature.len());
        out.put_bytes(hash.wire_name().as_bytes());
        out.put_bytes(&signature);
        Ok(out)
    }

    /// The bare signature over `nonce ‖ digest` (what a REST session answer carries, base64,
    /// with `cnonce` as the second part; see [`verify_session_signature`]).
    pub fn try_sign(
        &self,
        hash: SignatureHash,
        nonce: &[u8],
        digest: &[u8],
    ) -> Result<Vec<u8>, ChallengeError> {
        Ok(match self {
            PrivateKey::Rsa(k) => {
                let hashed = hash_message(hash, nonce, digest);
                // Randomised blinding hides the private exponent from timing.
                k.sign_with_rng(&mut rand::rngs::OsRng, pkcs1v15(hash), &hashed)
                    .map_err(|e| ChallengeError::Signing(format!("RSA: {e}")))?
            }
            PrivateKey::Dsa(k) => {
                use dsa::signature::{DigestSigner, SignatureEncoding};
                // RFC 6979 deterministic nonces: no RNG needed, no nonce reuse possible.
                let sig: dsa::Signature = match hash {
                    SignatureHash::Sha1 => {
                        k.try_sign_digest(Sha1::new().chain_update(nonce).chain_update(digest))
                    }
                    SignatureHash::Sha256 => {
                        k.try_sign_digest(Sha256::new().chain_update(nonce).chain_update(digest))
                    }
                }
                .map_err(|e| ChallengeError::Signing(format!("DSA: {e}")))?;
                sig.to_vec()
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// The ID-SDK's login answer (opCode 200, SHA256withRSA over nonce || digest by ADMIN_RSA)
    /// verifies against ADMIN_RSA's HS_PUBKEY as Handle.Net writes it (289 bytes, 4 trailing
    /// zero bytes), and fails for a changed nonce.
    #[test]
    fn handle_net_rsa_key_verifies_a_real_answer() {
        use crate::wire::handle::message::{Body, Message};
        use crate::wire::handle::vectors2::v2;
        let key = PublicKey::decode(&v2("RSA_PUBKEY_DATA_HEX")).unwrap();
        let challenge = Message::decode_full(&v2("SDK_LOGIN_2001_CHALLENGE_HEX")).unwrap();
        let Body::Challenge { nonce } = &challenge.body else {
            panic!("not a challenge")
        };
        let digest = &challenge.digest.as_ref().unwrap().digest;
        let answer = Message::decode_full(&v2("SDK_LOGIN_2001_ANSWER_REQ_HEX")).unwrap();
        let Body::ChallengeAnswer {
            signed_response, ..
        } = &answer.body
        else {
            panic!("not an answer")
        };
        assert!(verify_pubkey_answer(&key, nonce, digest, signed_response).unwrap());
        let mut other = nonce.clone();
        other[0] ^= 1;
        assert!(!verify_pubkey_answer(&key, &other, digest, signed_response).unwrap());
    }
    use proptest::prelude::*;

    fn vector(name: &str) -> Vec<u8> {
        // Copied from shared/testdata/handle-vectors.json (Handle.Net 9.2 reference encoder).
        let hex = match name {
            "REQ_HEX" => "0203020b00000000010203040000000000000038000000010000000019000000ffff0000650000000000001c0000001038382e3130302e312f534e2d30303031000000000000000000000000",
            "CHALLENGE_HEX" => "020b020b00000005010203040000000000000051000000010000019219800000ffff00006500000000000035031f8a3e5b4d99e19a4ac3dd040c66bcd55420aab6d990fbca004d80702f91648500000010000102030405060708090a0b0c0d0e0f00000000",
            "CHALLENGE_REQUEST_DIGEST_SHA256" => "1f8a3e5b4d99e19a4ac3dd040c66bcd55420aab6d990fbca004d80702f916485",
            "CREATE_HANDLE_REQ_HEX" => "0203020b000000000a0b0c0d00000000000000a5000000640000000019000000ffff000065000000000000890000001038382e3130302e312f534e2d3030303200000002000000016400000000000151800e0000000355524c0000001b68747470733a2f2f6578616d706c652e636f6d2f736e2f3030303200000000000000646400000000000151800e0000000848535f41444d494e000000170fff0000000d302e4e412f38382e3130302e31000000c80000000000000000",
            "SECKEY_CREATE_REQUEST_DIGEST_SHA256" => "be8ad567d1d98b8c03cb449321e0340ce2174c17c871b61e56b3a1c4a0f3fea3",
            "SECKEY_PBKDF2_DERIVED_KEY_HEX" => "7007069b3f77ad8340d2536eabc67b7d5567f7ed",
            "SECKEY_ANSWER_HEX" => "2200000010a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00002710000000a000000014c664332028438524066b80f40782ad90fe8f2578",
            "SECKEY_CHALLENGE_ANSWER_REQ_HEX" => "0203020b000000050a0b0c140000000000000077000000c80000000019000000ffff0000650000000000005b0000000948535f5345434b45590000000d302e4e412f38382e3130302e310000012c000000352200000010a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00002710000000a000000014c664332028438524066b80f40782ad90fe8f257800000000",
            other => panic!("no vector {other}"),
        };
        unhex(hex)
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Header + body of an encoded message (envelope 20 bytes, header 24 with bodyLength at
    /// header offset 20).
    fn header_and_body(msg: &[u8]) -> &[u8] {
        let body_len = u32::from_be_bytes([msg[40], msg[41], msg[42], msg[43]]) as usize;
        &msg[20..44 + body_len]
    }

    fn nonce() -> Vec<u8> {
        (0u8..16).collect()
    }

    fn create_digest() -> Vec<u8> {
        vector("SECKEY_CREATE_REQUEST_DIGEST_SHA256")
    }

    fn salt() -> Vec<u8> {
        (0xa0u8..=0xaf).collect()
    }

    // TEST ONLY keys, made with OpenSSL 3.0 for these tests; never use them for anything else.
    const RSA_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIICeAIBADANBgkqhkiG9w0BAQEFAASCAmIwggJeAgEAAoGBAOQfUNaBSEz9T/jK
cQ4M/w2Ah+J2amsYvNvT9gtRavkHDTRU586+5n2lQQABuab0CjXmF7mrdLdtdVxV
QUizpeD/IS/B0dTTTRO/vxiWaqcNB9YQfEHx0v0XIUw6e+LhlblhuV9vQqUbXSsD
G8Fe0cImplHsHI/xnK75X+75CeYtAgMBAAECgYB4wMbmtQqTjmc9t9N+b4y3FflX
+/y68h5OcvXD6fYpGf14XRVTkCOsEMTGfyNJ59Zbz49xffvLeMpt9McY99dusP8M
Plv3ElLRe6Vn2c6G1H89/oW0Irxt3PDwJ4pWT+oEHpTaRpaKvL1j9OJz75kdc50E
S1N8/5cWf83OrG10oQJBAP+pftZkKWDtr3v8GndwXcOVY4+A1FSSNYDkuabKuvdR
YjU6BK5BaNJwsT11sqQaXOjb7mtYkUgFTgm6VoUgOZkCQQDkbICJfKs+0hlaRRD5
UVCMT8SHKxgvyiphSIMEfY14EzzNfMmaxBRngM/byLDICTBTUByzwHFgDfrz/5s5
yLW1AkEAyP80nND6Rx4WzN8S37wTu2SDdZrPU/3u2nr4Ck1wWGg/UaFfdLAv/OJk
NfGGlMW1Lc1a0EI9VeX1yGgbBWakYQJBAKTXxH7zsCU6u78QPqqdyvInEp21NNQw
Ihtol9xiuvgfce6dEmSVAmCbbeWfVCxXrT9CfiQeSfNWw3bYTG4L8U0CQQDa/V4i
q3eARmhX1oC46fj6T53aoIl2Oxy9eApKi49AHGNQcxKcTPGbP1M5o6a0Nm77TimV
Q+NdYs1g9t6SMVOD
-----END PRIVATE KEY-----
";

    /// The same RSA key in PKCS#1 form.
    const RSA_PKCS1_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXgIBAAKBgQDkH1DWgUhM/U/4ynEODP8NgIfidmprGLzb0/YLUWr5Bw00VOfO
vuZ9pUEAAbmm9Ao15he5q3S3bXVcVUFIs6Xg/yEvwdHU000Tv78YlmqnDQfWEHxB
8dL9FyFMOnvi4ZW5Yblfb0KlG10rAxvBXtHCJqZR7ByP8Zyu+V/u+QnmLQIDAQAB
AoGAeMDG5rUKk45nPbfTfm+MtxX5V/v8uvIeTnL1w+n2KRn9eF0VU5AjrBDExn8j
SefWW8+PcX37y3jKbfTHGPfXbrD/DD5b9xJS0XulZ9nOhtR/Pf6FtCK8bdzw8CeK
Vk/qBB6U2kaWiry9Y/Tic++ZHXOdBEtTfP+XFn/NzqxtdKECQQD/qX7WZClg7a97
/Bp3cF3DlWOPgNRUkjWA5Lmmyrr3UWI1OgSuQWjScLE9dbKkGlzo2+5rWJFIBU4J
ulaFIDmZAkEA5GyAiXyrPtIZWkUQ+VFQjE/EhysYL8oqYUiDBH2NeBM8zXzJmsQU
Z4DP28iwyAkwU1Acs8BxYA368/+bOci1tQJBAMj/NJzQ+kceFszfEt+8E7tkg3Wa
z1P97tp6+ApNcFhoP1GhX3SwL/ziZDXxhpTFtS3NWtBCPVXl9choGwVmpGECQQCk
18R+87AlOru/ED6qncryJxKdtTTUMCIbaJfcYrr4H3HunRJklQJgm23ln1QsV60/
Qn4kHknzVsN22ExuC/FNAkEA2v1eIqt3gEZoV9aAuOn4+k+d2qCJdjscvXgKSouP
QBxjUHMSnEzxmz9TOaOmtDZu+04plUPjXWLNYPbekjFTgw==
-----END RSA PRIVATE KEY-----
";

    /// `openssl rsa -modulus` of that key.
    const RSA_MODULUS_HEX: &str = "E41F50D681484CFD4FF8CA710E0CFF0D8087E2766A6B18BCDBD3F60B516AF9070D3454E7CEBEE67DA5410001B9A6F40A35E617B9AB74B76D755C554148B3A5E0FF212FC1D1D4D34D13BFBF18966AA70D07D6107C41F1D2FD17214C3A7BE2E195B961B95F6F42A51B5D2B031BC15ED1C226A651EC1C8FF19CAEF95FEEF909E62D";

    /// 1024-bit DSA (q 160 bits), PKCS#8.
    const DSA_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIBSgIBADCCASsGByqGSM44BAEwggEeAoGBAIbErWNOc2GeCA9Wap8xsIl5GSuO
XwfZOsSP9nIFnusinuNnuNejCLvZe/YeROsEuUs8NoToKWpBO8xKyIUNpuZ2Bs13
BTUaj4086HtJC9XCWKR+HkchcxmlyxrkUM5KBjVUbJA2WIUJ3tgFfty9CpTrqjx7
nnn6vvP/aVjK1aDnAhUAw+0cg0bHeqmq0QV5MeINg+vpblUCgYBqouf6IIcS3w5s
OFOjxKUf6pFg3wMqWxxBadAFiXNaNih+LJtEP2bHV/1az0ZNK1pqNfUYaLgsr+i0
cwiLAsbGlBr2ualBCANPbmrSr3T/VKkDeVxsGiWMSg9b/5WhzGpPrJGrPvI7ed2Z
SZnRG/ECM70cfhf4/7aPPJgbWeweuQQWAhQVsKjilSrbEGO7DRmmFNYkBgKxFw==
-----END PRIVATE KEY-----
";

    /// `openssl dgst -<hash> -sign` over nonce 00..0f ‖ SECKEY_CREATE_REQUEST_DIGEST_SHA256.
    const OPENSSL_RSA_SHA256_SIG: &str = "3efa7d29871df18fcee046a290dfb3c5833aef41f4b28ffacc97838972155cda63559148608c0d47d304cc32966d638b5e1d40168f8cabe09563fc40557c657c4a190e622c3f3f041436faa13069a22a186935f22f169540446941c751a367f083b5fc652004028679fd9e442597bdec5021a31ff356a8a96fabca8c22ca7e63";
    const OPENSSL_RSA_SHA1_SIG: &str = "404319f83b12d8064778db44e66c1ae04bc27c85a14189600c0747acc4330159086534b24c3b3fd7dea1c4aa98de6770746982ea2cee808a83ac60da3ffe02ddca7829b094ba3995b89937e66c480be69be6e90ad8fd3d5e1cf663ac62abd5df24fbef6eec4b29a0625ae7473f2bf2e21ce0b62ffbe1e5242bb654e6c13f1389";
    const OPENSSL_DSA_SHA256_SIG: &str = "302c0214491f2134e52bf6506b0b565199337e359604539d021443d84d347e59345af2ffd1af0553858042747472";
    const OPENSSL_DSA_SHA1_SIG: &str = "302d02142fdbf7e9b3105931d321537ccc260c8e37483a64021500b961358bc3450181837409c3592fd32ad38360e3";

    fn answer(hash_id: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_bytes(hash_id);
        out.put_bytes(signature);
        out
    }

    fn rsa_key() -> PrivateKey {
        PrivateKey::from_pem(RSA_PKCS8_PEM).expect("RSA test key")
    }

    fn dsa_key() -> PrivateKey {
        PrivateKey::from_pem(DSA_PKCS8_PEM).expect("DSA test key")
    }

    // --- request digest

    #[test]
    fn challenge_digest_is_sha256_of_resolution_request() {
        let req = vector("REQ_HEX");
        let hb = &req[20..20 + 24 + 28];
        assert_eq!(header_and_body(&req), hb);
        let (kind, digest) = request_digest(2, 11, hb);
        assert_eq!(kind, hash_type::SHA256);
        assert_eq!(digest, vector("CHALLENGE_REQUEST_DIGEST_SHA256"));
        // ... and it is what the recorded 402 carries after its type byte.
        let challenge = vector("CHALLENGE_HEX");
        assert_eq!(challenge[44], hash_type::SHA256);
        assert_eq!(&challenge[45..77], digest.as_slice());
    }

    #[test]
    fn create_request_digest_vector() {
        let req = vector("CREATE_HANDLE_REQ_HEX");
        let (kind, digest) = request_digest(2, 7, header_and_body(&req));
        assert_eq!(kind, hash_type::SHA256);
        assert_eq!(digest, create_digest());
    }

    #[test]
    fn digest_type_follows_version() {
        let data = b"header and body";
        let (k, d) = request_digest(2, 6, data);
        assert_eq!((k, d.len()), (hash_type::SHA1, 20));
        assert_eq!(request_digest(2, 1, data).0, hash_type::SHA1);
        assert_eq!(request_digest(2, 3, data).0, hash_type::SHA1);
        let (k, d) = request_digest(2, 0, data);
        assert_eq!((k, d.len()), (hash_type::MD5_OLD_FORMAT, 16));
        assert_eq!(request_digest(1, 9, data).0, hash_type::MD5_OLD_FORMAT);
        assert_eq!(request_digest(5, 0, data).0, hash_type::MD5_OLD_FORMAT);
        assert_eq!(request_digest(3, 0, data).0, hash_type::SHA256);
        for kind in 0..=3 {
            let d = digest_of_type(kind, data).expect("known type");
            assert_eq!(d.len(), [16, 16, 20, 32][kind as usize]);
        }
        assert!(digest_of_type(4, data).is_err());
    }

    // --- HS_SECKEY

    #[test]
    fn pbkdf2_derived_key_vector() {
        let key = pbkdf2_key(b"password", &salt(), 10_000, 160);
        assert_eq!(key, vector("SECKEY_PBKDF2_DERIVED_KEY_HEX"));
    }

    #[test]
    fn pbkdf2_answer_vector() {
        let answer = seckey_answer_pbkdf2(
            b"password",
            &nonce(),
            &create_digest(),
            &salt(),
            10_000,
            160,
        );
        assert_eq!(answer, vector("SECKEY_ANSWER_HEX"));
        assert!(verify_seckey_answer(b"password", &nonce(), &create_digest(), &answer).unwrap());
    }

    #[test]
    fn recorded_challenge_answer_request_verifies() {
        let msg = vector("SECKEY_CHALLENGE_ANSWER_REQ_HEX");
        let mut r = Reader::new(&header_and_body(&msg)[24..]);
        assert_eq!(r.string("auth type").unwrap(), "HS_SECKEY");
        assert_eq!(r.string("identity").unwrap(), "0.NA/88.100.1");
        assert_eq!(r.u32("index").unwrap(), 300);
        let signed = r.bytes("signed response").unwrap();
        r.finish().unwrap();
        assert_eq!(signed, vector("SECKEY_ANSWER_HEX").as_slice());
        assert!(verify_seckey_answer(b"password", &nonce(), &create_digest(), signed).unwrap());
    }

    #[test]
    fn pbkdf2_answer_rejects_wrong_inputs() {
        let answer = vector("SECKEY_ANSWER_HEX");
        let (n, d) = (nonce(), create_digest());
        assert!(!verify_seckey_answer(b"Password", &n, &d, &answer).unwrap());
        let mut n2 = n.clone();
        n2[0] ^= 1;
        assert!(!verify_seckey_answer(b"password", &n2, &d, &answer).unwrap());
        let mut d2 = d.clone();
        d2[31] ^= 1;
        assert!(!verify_seckey_answer(b"password", &n, &d2, &answer).unwrap());
        // Tampered MAC, trailing byte, truncated MAC: no match, no error.
        let mut t = answer.clone();
        let last = t.len() - 1;
        t[last] ^= 0x80;
        assert!(!verify_seckey_answer(b"password", &n, &d, &t).unwrap());
        let mut t = answer.clone();
        t.push(0);
        assert!(!verify_seckey_answer(b"password", &n, &d, &t).unwrap());
        // Truncated inside the parameter block: malformed.
        assert!(verify_seckey_answer(b"password", &n, &d, &answer[..10]).is_err());
    }

    #[test]
    fn sha1_form_is_raw_after_alg_byte() {
        let (n, d) = (nonce(), create_digest());
        let answer = seckey_answer_sha1(b"password", &n, &d);
        // Python: hashlib.sha1(b"password" + nonce + digest + b"password")
        let mut expected = vec![0x02];
        expected.extend(unhex("6ec13ed0f481ef8201692d05e29310ae73a0ae24"));
        assert_eq!(answer, expected);
        assert_eq!(answer.len(), 21);
        assert!(verify_seckey_answer(b"password", &n, &d, &answer).unwrap());
        assert!(!verify_seckey_answer(b"passwore", &n, &d, &answer).unwrap());
        assert!(!verify_seckey_answer(b"password", &d, &n, &answer).unwrap());
        assert!(!verify_seckey_answer(b"password", &n, &d, &answer[..20]).unwrap());
    }

    #[test]
    fn other_handle_net_mac_forms() {
        let (n, d) = (nonce(), create_digest());
        let cases: [(u8, &str); 4] = [
            (mac_alg::MD5, "2484c03a85ec1227addaa6e0136dc017"),
            (
                mac_alg::SHA256,
                "a49993fd098a2cb952cbc5284c49eb4a88734247f2280dbd78c1c2c18a4d2000",
            ),
            (
                mac_alg::HMAC_SHA1,
                "48f2b7200cd6ccf7dfcff459e79a3ded8682e01c",
            ),
            (
                mac_alg::HMAC_SHA256,
                "328518791a10a4fbeb4e03dca7b0714128bc3e2f82c04f3885006fb9c485132a",
            ),
        ];
        for (alg, mac) in cases {
            let mut answer = vec![alg];
            answer.extend(unhex(mac));
            assert!(verify_seckey_answer(b"password", &n, &d, &answer).unwrap());
            assert!(!verify_seckey_answer(b"secret", &n, &d, &answer).unwrap());
        }
    }

    #[test]
    fn legacy_md5_answer_without_alg_byte() {
        let (n, d) = (nonce(), create_digest());
        let answer = seckey_answer_for_version(2, 0, b"password", &n, &d);
        assert_eq!(answer, unhex("2484c03a85ec1227addaa6e0136dc017"));
        assert!(verify_seckey_answer(b"password", &n, &d, &answer).unwrap());
        assert!(!verify_seckey_answer(b"passw0rd", &n, &d, &answer).unwrap());
    }

    #[test]
    fn answers_for_each_version_verify() {
        let (n, d) = (nonce(), create_digest());
        for (major, minor) in [(2, 0), (2, 1), (2, 6), (2, 7), (2, 11)] {
            let answer = seckey_answer_for_version(major, minor, b"s3cret", &n, &d);
            assert!(verify_seckey_answer(b"s3cret", &n, &d, &answer).unwrap());
            assert!(!verify_seckey_answer(b"s3cre", &n, &d, &answer).unwrap());
        }
        assert_eq!(seckey_answer_for_version(2, 11, b"s", &n, &d)[0], 0x22);
        assert_eq!(seckey_answer_for_version(2, 5, b"s", &n, &d)[0], 0x02);
    }

    #[test]
    fn non_ascii_secret_uses_java_password_bytes() {
        // Python: hashlib.pbkdf2_hmac('sha1', bytes([0x70,0xe9,0xff]).decode('latin-1')
        //   .encode('utf-8'), salt, 1000, 20)
        let key = pbkdf2_key(&[0x70, 0xe9, 0xff], &salt(), 1000, 160);
        assert_eq!(key, unhex("b67093be87cc6139fd79990014541299d1ce0b73"));
    }

    fn pbkdf2_answer_with(salt: &[u8], iterations: u32, key_bits: u32) -> Vec<u8> {
        let mut out = vec![0x22];
        out.extend(pbkdf2_encoding(salt, iterations, key_bits, &[0u8; 20]));
        out
    }

    #[test]
    fn absurd_pbkdf2_parameters_are_refused() {
        let (n, d) = (nonce(), create_digest());
        let s = salt();
        let refused = |answer: Vec<u8>| {
            matches!(
                verify_seckey_answer(b"password", &n, &d, &answer),
                Err(ChallengeError::Pbkdf2Parameters(_))
            )
        };
        assert!(refused(pbkdf2_answer_with(&s, 0, 160)));
        assert!(refused(pbkdf2_answer_with(&s, 10_000_001, 160)));
        assert!(refused(pbkdf2_answer_with(&s, u32::MAX, 160)));
        assert!(refused(pbkdf2_answer_with(&s, 10_000, 0)));
        assert!(refused(pbkdf2_answer_with(&s, 10_000, 7)));
        assert!(refused(pbkdf2_answer_with(&s, 10_000, 4104)));
        assert!(refused(pbkdf2_answer_with(&s, 10_000, u32::MAX)));
        assert!(refused(pbkdf2_answer_with(&[], 10_000, 160)));
        assert!(refused(pbkdf2_answer_with(&[0u8; 1025], 10_000, 160)));
        // 4096-bit keys need 26 blocks: 10M iterations of that is 26× the work limit.
        assert!(refused(pbkdf2_answer_with(&s, 10_000_000, 4096)));
        // A caller may lower the limit.
        assert!(matches!(
            verify_seckey_answer_with_limit(
                b"password",
                &n,
                &d,
                &vector("SECKEY_ANSWER_HEX"),
                9_999
            ),
            Err(ChallengeError::Pbkdf2Parameters(_))
        ));
        // In-range parameters with a wrong MAC are simply false.
        assert!(
            !verify_seckey_answer(b"password", &n, &d, &pbkdf2_answer_with(&s, 3, 256)).unwrap()
        );
    }

    #[test]
    fn garbage_seckey_answers_are_errors() {
        let (n, d) = (nonce(), create_digest());
        assert!(matches!(
            verify_seckey_answer(b"p", &n, &d, &[]),
            Err(ChallengeError::Empty)
        ));
        assert!(matches!(
            verify_seckey_answer(b"p", &n, &d, &[0x07; 21]),
            Err(ChallengeError::UnsupportedMac(0x07))
        ));
        assert!(verify_seckey_answer(b"p", &n, &d, &[0x22]).is_err());
        assert!(verify_seckey_answer(b"p", &n, &d, &[0x22, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    // --- HS_PUBKEY

    #[test]
    fn pem_forms_parse_to_the_same_java_style_public_key() {
        let k8 = rsa_key();
        let k1 = PrivateKey::from_pem(RSA_PKCS1_PEM).expect("PKCS#1");
        assert_eq!(k8.public_key(), k1.public_key());
        let PublicKey::Rsa { exponent, modulus } = k8.public_key() else {
            panic!("RSA expected");
        };
        assert_eq!(exponent, vec![0x01, 0x00, 0x01]);
        let mut expected = vec![0x00];
        expected.extend(unhex(RSA_MODULUS_HEX));
        assert_eq!(modulus, expected);
        // PEM with surrounding text and CRLF still parses.
        let noisy = format!(
            "key for 300:0.NA/88.100.1\r\n{}\r\n",
            RSA_PKCS1_PEM.replace('\n', "\r\n")
        );
        assert_eq!(
            PrivateKey::from_pem(&noisy).unwrap().public_key(),
            k8.public_key()
        );
        // The HS_PUBKEY encoding round-trips through the model codec.
        let encoded = k8.public_key().encode();
        assert_eq!(PublicKey::decode(&encoded).unwrap(), k8.public_key());
        assert!(format!("{k8:?}").contains("1024 bits"));
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(PrivateKey::from_pem("").is_err());
        assert!(PrivateKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
        .is_err());
        assert!(PrivateKey::from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\n!!\n-----END RSA PRIVATE KEY-----"
        )
        .is_err());
        assert!(PrivateKey::from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\n").is_err());
        assert!(PrivateKey::from_pem("-----BEGIN DSA PRIVATE KEY-----\n").is_err());
        assert!(PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nno end").is_err());
    }

    #[test]
    fn openssl_rsa_signatures_verify() {
        let public = rsa_key().public_key();
        let (n, d) = (nonce(), create_digest());
        let sha256 = unhex(OPENSSL_RSA_SHA256_SIG);
        let sha1 = unhex(OPENSSL_RSA_SHA1_SIG);
        for id in ["SHA-256", "SHA256", "sha-256"] {
            assert!(
                verify_pubkey_answer(&public, &n, &d, &answer(id.as_bytes(), &sha256)).unwrap()
            );
        }
        assert!(verify_pubkey_answer(&public, &n, &d, &answer(&[3], &sha256)).unwrap());
        for id in ["SHA1", "SHA-1"] {
            assert!(verify_pubkey_answer(&public, &n, &d, &answer(id.as_bytes(), &sha1)).unwrap());
        }
        // Hash named differently from the one signed: false.
        assert!(!verify_pubkey_answer(&public, &n, &d, &answer(b"SHA1", &sha256)).unwrap());
        // Wrong nonce / digest: false.
        assert!(!verify_pubkey_answer(&public, &d, &n, &answer(b"SHA-256", &sha256)).unwrap());
        // A key whose modulus lacks the 0x00 sign byte is read as unsigned.
        let PublicKey::Rsa { exponent, modulus } = &public else {
            panic!("RSA expected");
        };
        let unsigned = PublicKey::Rsa {
            exponent: exponent.clone(),
            modulus: modulus[1..].to_vec(),
        };
        assert!(verify_pubkey_answer(&unsigned, &n, &d, &answer(b"SHA-256", &sha256)).unwrap());
    }

    #[test]
    fn rsa_sign_verify_round_trip() {
        let key = rsa_key();
        let public = key.public_key();
        let (n, d) = (nonce(), create_digest());
        let signed = key.sign_answer(&n, &d);
        let mut r = Reader::new(&signed);
        assert_eq!(r.string("alg").unwrap(), "SHA-256");
        assert_eq!(r.bytes("sig").unwrap().len(), 128);
        assert!(verify_pubkey_answer(&public, &n, &d, &signed).unwrap());
        // PKCS#1 v1.5 is deterministic: same bytes as OpenSSL's signature.
        assert_eq!(signed, answer(b"SHA-256", &unhex(OPENSSL_RSA_SHA256_SIG)));
        let sha1 = key.try_sign_answer(SignatureHash::Sha1, &n, &d).unwrap();
        assert_eq!(sha1, answer(b"SHA1", &unhex(OPENSSL_RSA_SHA1_SIG)));
        assert!(verify_pubkey_answer(&public, &n, &d, &sha1).unwrap());

        let mut wrong_nonce = n.clone();
        wrong_nonce[3] ^= 0x10;
        assert!(!verify_pubkey_answer(&public, &wrong_nonce, &d, &signed).unwrap());
        let mut wrong_digest = d.clone();
        wrong_digest[0] ^= 1;
        assert!(!verify_pubkey_answer(&public, &n, &wrong_digest, &signed).unwrap());
        // Flip one signature bit.
        let mut tampered = signed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(!verify_pubkey_answer(&public, &n, &d, &tampered).unwrap());
        // A signature of the wrong length is false, not an error.
        let short = answer(b"SHA-256", &unhex(OPENSSL_RSA_SHA256_SIG)[1..]);
        assert!(!verify_pubkey_answer(&public, &n, &d, &short).unwrap());
        // Another key: false.
        let dsa_public = dsa_key().public_key();
        assert!(!verify_pubkey_answer(&dsa_public, &n, &d, &signed).unwrap());
    }

    #[test]
    fn generated_rsa_key_round_trips() {
        let key = PrivateKey::generate_rsa(1024).unwrap();
        let public = key.public_key();
        let PublicKey::Rsa { modulus, .. } = &public else {
            panic!("RSA expected");
        };
        assert_eq!(modulus.len(), 129);
        assert_eq!(modulus[0], 0);
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = PrivateKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), public);
        let (n, d) = (b"nonce-nonce-16b!".to_vec(), vec![7u8; 32]);
        let signed = back.sign_answer(&n, &d);
        assert!(verify_pubkey_answer(&public, &n, &d, &signed).unwrap());
        assert!(!verify_pubkey_answer(&rsa_key().public_key(), &n, &d, &signed).unwrap());
        assert!(PrivateKey::generate_rsa(512).is_err());
        assert!(PrivateKey::generate_rsa(100_000).is_err());
    }

    #[test]
    fn openssl_dsa_signatures_verify() {
        let key = dsa_key();
        let public = key.public_key();
        let PublicKey::Dsa { q, p, .. } = &public else {
            panic!("DSA expected");
        };
        assert_eq!((p.len(), q.len()), (129, 21));
        let (n, d) = (nonce(), create_digest());
        let sha256 = answer(b"SHA-256", &unhex(OPENSSL_DSA_SHA256_SIG));
        let sha1 = answer(b"SHA1", &unhex(OPENSSL_DSA_SHA1_SIG));
        assert!(verify_pubkey_answer(&public, &n, &d, &sha256).unwrap());
        assert!(verify_pubkey_answer(&public, &n, &d, &sha1).unwrap());
        assert!(!verify_pubkey_answer(&public, &d, &n, &sha256).unwrap());
        assert!(!verify_pubkey_answer(
            &public,
            &n,
            &d,
            &answer(b"SHA1", &unhex(OPENSSL_DSA_SHA256_SIG))
        )
        .unwrap());
        // Bad DER: false.
        assert!(
            !verify_pubkey_answer(&public, &n, &d, &answer(b"SHA-256", &[0x30, 0x00])).unwrap()
        );
    }

    #[test]
    fn dsa_sign_verify_round_trip() {
        let key = dsa_key();
        let public = key.public_key();
        let (n, d) = (nonce(), create_digest());
        for hash in [SignatureHash::Sha256, SignatureHash::Sha1] {
            let signed = key.try_sign_answer(hash, &n, &d).unwrap();
            assert!(verify_pubkey_answer(&public, &n, &d, &signed).unwrap());
            let mut other = d.clone();
            other[5] ^= 0x40;
            assert!(!verify_pubkey_answer(&public, &n, &other, &signed).unwrap());
        }
        let pem = key.to_pem();
        assert_eq!(PrivateKey::from_pem(&pem).unwrap().public_key(), public);
    }

    #[test]
    fn unusable_pubkey_answers_are_errors() {
        let public = rsa_key().public_key();
        let (n, d) = (nonce(), create_digest());
        let sig = unhex(OPENSSL_RSA_SHA256_SIG);
        assert!(matches!(
            verify_pubkey_answer(&public, &n, &d, &answer(b"MD5", &sig)),
            Err(ChallengeError::UnsupportedHash(_))
        ));
        assert!(verify_pubkey_answer(&public, &n, &d, &answer(&[1], &sig)).is_err());
        assert!(verify_pubkey_answer(&public, &n, &d, &[]).is_err());
        assert!(verify_pubkey_answer(&public, &n, &d, &[0, 0, 0, 9, b'S']).is_err());
        let mut trailing = answer(b"SHA-256", &sig);
        trailing.push(0);
        assert!(verify_pubkey_answer(&public, &n, &d, &trailing).is_err());
        let dh = PublicKey::Dh {
            y: vec![5],
            p: vec![23],
            g: vec![2],
        };
        assert!(matches!(
            verify_pubkey_answer(&dh, &n, &d, &answer(b"SHA-256", &sig)),
            Err(ChallengeError::UnsupportedKey(_))
        ));
        let bad_rsa = PublicKey::Rsa {
            exponent: vec![],
            modulus: vec![],
        };
        assert!(matches!(
            verify_pubkey_answer(&bad_rsa, &n, &d, &answer(b"SHA-256", &sig)),
            Err(ChallengeError::InvalidKey(_))
        ));
        let huge_rsa = PublicKey::Rsa {
            exponent: vec![1, 0, 1],
            modulus: vec![0xff; MAX_RSA_BITS / 8 + 1],
        };
        assert!(verify_pubkey_answer(&huge_rsa, &n, &d, &answer(b"SHA-256", &sig)).is_err());
        let bad_dsa = PublicKey::Dsa {
            q: vec![],
            p: vec![7],
            g: vec![0],
            y: vec![1],
        };
        assert!(matches!(
            verify_pubkey_answer(&bad_dsa, &n, &d, &answer(b"SHA-256", &sig)),
            Err(ChallengeError::InvalidKey(_))
        ));
    }

    #[test]
    fn java_int_encoding() {
        assert_eq!(java_int(&BigUint::from(0u32)), vec![0]);
        assert_eq!(java_int(&BigUint::from(0x7fu32)), vec![0x7f]);
        assert_eq!(java_int(&BigUint::from(0x80u32)), vec![0x00, 0x80]);
        assert_eq!(java_int(&BigUint::from(65537u32)), vec![1, 0, 1]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_seckey_answers_never_panic(
            secret in proptest::collection::vec(any::<u8>(), 0..40),
            signed in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let _ = verify_seckey_answer(&secret, &nonce(), &create_digest(), &signed);
        }

        #[test]
        fn random_pbkdf2_blocks_never_panic(
            salt in proptest::collection::vec(any::<u8>(), 0..40),
            iterations in any::<u32>(),
            key_bits in any::<u32>(),
            mac in proptest::collection::vec(any::<u8>(), 0..40),
            tail in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut signed = vec![0x22];
            signed.extend(pbkdf2_encoding(&salt, iterations, key_bits, &mac));
            signed.extend(tail);
            // A low limit keeps the run fast; what passes the limit is actually computed.
            let _ = verify_seckey_answer_with_limit(b"pw", &nonce(), &create_digest(), &signed, 64);
        }

        #[test]
        fn random_pubkey_answers_never_panic(
            signed in proptest::collection::vec(any::<u8>(), 0..300),
            framed_sig in proptest::collection::vec(any::<u8>(), 0..140),
            id in 0usize..4,
        ) {
            let (n, d) = (nonce(), create_digest());
            let ids: [&[u8]; 4] = [b"SHA-256", b"SHA1", &[3], b"junk"];
            for key in [rsa_key().public_key(), dsa_key().public_key()] {
                let _ = verify_pubkey_answer(&key, &n, &d, &signed);
                let _ = verify_pubkey_answer(&key, &n, &d, &answer(ids[id], &framed_sig));
            }
        }

        #[test]
        fn random_public_keys_never_panic(
            a in proptest::collection::vec(any::<u8>(), 0..24),
            b in proptest::collection::vec(any::<u8>(), 0..24),
            c in proptest::collection::vec(any::<u8>(), 0..24),
            e in proptest::collection::vec(any::<u8>(), 0..24),
            sig in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let (n, d) = (nonce(), create_digest());
            let signed = answer(b"SHA-256", &sig);
            let rsa = PublicKey::Rsa { exponent: a.clone(), modulus: b.clone() };
            let _ = verify_pubkey_answer(&rsa, &n, &d, &signed);
            let dsa = PublicKey::Dsa { q: a, p: b, g: c, y: e };
            let _ = verify_pubkey_answer(&dsa, &n, &d, &signed);
        }
    }
}
