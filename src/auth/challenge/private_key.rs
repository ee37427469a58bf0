//! The client side of HS_PUBKEY challenges: [`PrivateKey`] (RSA or DSA) read from PEM or
//! PKCS#8 DER, generated, written back as PKCS#8 PEM, and signing answers the way Handle.Net
//! clients do. Used by `idnode admin`, `keygen` and the server's own key.

use std::fmt;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::pubkey::{hash_message, java_int, pkcs1v15, SignatureHash};
use super::ChallengeError;
use crate::model::codec::Writer;
use crate::model::PublicKey;

/// Smallest and largest RSA key [`PrivateKey::generate_rsa`] makes.
pub const MIN_RSA_GENERATE_BITS: usize = 1024;
pub const MAX_RSA_GENERATE_BITS: usize = 8192;

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
    /// with `cnonce` as the second part; see
    /// [`verify_session_signature`](super::verify_session_signature)).
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
