//! HS_PUBKEY answers (handle-protocol.md §7): checking an RSA (PKCS#1 v1.5) or DSA (DER)
//! signature over `nonce ‖ digest` by an HS_PUBKEY, as challenge answers, REST session
//! answers and signed messages carry them. Keys are bounded in size before any work; a
//! signature that does not verify is `Ok(false)`, never a panic.

use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::digest::hash_type;
use super::ChallengeError;
use crate::model::codec::Reader;
use crate::model::PublicKey;

/// Largest RSA modulus (bits) accepted for verification.
pub const MAX_RSA_BITS: usize = 8192;
/// Largest DSA p and q (bits) accepted for verification (FIPS 186-4 stops at 3072/256).
pub const MAX_DSA_P_BITS: usize = 4096;
pub const MAX_DSA_Q_BITS: usize = 512;

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
pub(super) fn java_int(n: &BigUint) -> Vec<u8> {
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

pub(super) fn hash_message(hash: SignatureHash, nonce: &[u8], digest: &[u8]) -> Vec<u8> {
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

pub(super) fn pkcs1v15(hash: SignatureHash) -> Pkcs1v15Sign {
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
