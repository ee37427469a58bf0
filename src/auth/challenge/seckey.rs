//! HS_SECKEY answers (handle-protocol.md §7): the client's answer in each protocol version's
//! form (PBKDF2-HMAC-SHA1 from 2.7, the SHA-1 sandwich from 2.1, bare MD5 before), the
//! server's check of every form Handle.Net's server accepts (PBKDF2 parameters bounded before
//! any work, MACs compared in constant time), and the hash form of a REST session answer.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::digest::version_at_least;
use super::pubkey::SignatureHash;
use super::ChallengeError;
use crate::model::codec::{Reader, Writer};

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
/// bits of key). Handle.Net clients use 10,000 × 1; this is 20 times that, so one answer
/// cannot pin a core for seconds (the native server's challenge answers and VERIFY_CHALLENGE
/// are checked with it). A caller may lower it ([`verify_seckey_answer_with_limit`]).
pub const MAX_PBKDF2_WORK: u32 = 200_000;
/// Largest PBKDF2 key length (bits) accepted in an answer.
pub const MAX_PBKDF2_KEY_BITS: u32 = 4096;
/// Largest PBKDF2 salt (bytes) accepted in an answer.
pub const MAX_PBKDF2_SALT: usize = 1024;
/// What Handle.Net clients use and what [`seckey_answer_for_version`] sends.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 10_000;
pub const DEFAULT_PBKDF2_KEY_BITS: u32 = 160;
pub const DEFAULT_PBKDF2_SALT_LEN: usize = 16;

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
pub(super) fn pbkdf2_key(secret: &[u8], salt: &[u8], iterations: u32, key_bits: u32) -> Vec<u8> {
    let mut key = vec![0u8; (key_bits / 8) as usize];
    pbkdf2::pbkdf2_hmac::<Sha1>(&java_pbkdf2_password(secret), salt, iterations, &mut key);
    key
}

/// `UTF8String salt, int4 iterations, int4 keyBits, UTF8String mac` (`constructPbkdf2Encoding`).
pub(super) fn pbkdf2_encoding(salt: &[u8], iterations: u32, key_bits: u32, mac: &[u8]) -> Vec<u8> {
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
