//! The credential section of a Handle message: how an answer is signed with the server's key
//! (`HS_SIGNED`, certified answers) or with a session key (`HS_MAC`), and exactly which bytes
//! the signature covers. Pure: no sockets, no state.
//!
//! Layout (after the message's `int4` credential length; handle-protocol.md and the vectors
//! file's `state_machines.SIGNED_RESPONSE`):
//!
//! ```text
//! int1 version 0 | int1 reserved 0 | int2 flags 0 | UTF8String signer handle (empty)
//! int4 signer index (carries the session counter; 0 outside sessions)
//! UTF8String type ("HS_SIGNED" | "HS_MAC") | int4 length of the rest
//! UTF8String digest algorithm ("SHA-256", "SHA1", "HMAC-SHA256") | UTF8String signature
//! ```
//!
//! Covered bytes ([`covered_bytes`]), from protocol 2.7 on: `major minor [sugMajor sugMinor]`
//! (the suggested pair from 2.8) `‖ int4 sessionId ‖ int4 requestId ‖ int4 counter ‖
//! header+body`, all as in the message's own envelope. The credential itself is not covered.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::challenge::{verify_parts_signature, ChallengeError, PrivateKey, SignatureHash};
use crate::model::codec::{DecodeError, Reader, Writer};
use crate::model::PublicKey;
use crate::wire::handle::message::Envelope;

/// The credential type of a signature by a server (or identity) key.
pub const HS_SIGNED: &str = "HS_SIGNED";
/// The pre-2.x name Handle.Net still accepts for [`HS_SIGNED`].
pub const HS_SIGNED_OLD: &str = "HS_SIGNED_PSS";
/// The credential type of a session MAC.
pub const HS_MAC: &str = "HS_MAC";
/// The MAC algorithm of sessions at protocol 2.7 and later.
pub const HMAC_SHA256: &str = "HMAC-SHA256";

/// A decoded credential section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub version: u8,
    /// Written 0; kept as read so a credential re-encodes byte for byte.
    pub reserved: u8,
    pub flags: u16,
    /// Unused by Handle.Net (always empty).
    pub signer_handle: String,
    /// The session counter of the message (0 outside sessions).
    pub signer_index: u32,
    /// [`HS_SIGNED`] or [`HS_MAC`].
    pub kind: String,
    /// "SHA-256", "SHA1" (signatures) or "HMAC-SHA256" (MACs).
    pub digest_alg: String,
    pub signature: Vec<u8>,
}

/// Why a credential does not check.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("malformed credential: {0}")]
    Malformed(#[from] DecodeError),
    #[error("credential type {0:?} is not {1}")]
    WrongType(String, &'static str),
    #[error("digest algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("sessions need protocol 2.7 or later (message is {0}.{1})")]
    OldVersion(u8, u8),
    #[error(transparent)]
    Key(#[from] ChallengeError),
}

impl Credential {
    /// Decode the bytes of a credential section (without its `int4` length).
    pub fn decode(bytes: &[u8]) -> Result<Credential, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("credential version")?;
        let reserved = r.u8("credential reserved byte")?;
        let flags = r.u16("credential flags")?;
        let signer_handle = r.string("credential signer handle")?.to_string();
        let signer_index = r.u32("credential signer index")?;
        let kind = r.string("credential type")?.to_string();
        let section = r.bytes("credential signature section")?;
        r.finish()?;
        let mut s = Reader::new(section);
        let digest_alg = s.string("credential digest algorithm")?.to_string();
        let signature = s.bytes("credential signature")?.to_vec();
        s.finish()?;
        Ok(Credential {
            version,
            reserved,
            flags,
            signer_handle,
            signer_index,
            kind,
            digest_alg,
            signature,
        })
    }

    /// The section's bytes, as [`crate::wire::handle::Message::credential`] holds them.
    pub fn encode(&self) -> Vec<u8> {
        let mut section = Vec::with_capacity(8 + self.digest_alg.len() + self.signature.len());
        section.put_bytes(self.digest_alg.as_bytes());
        section.put_bytes(&self.signature);
        let mut out = Vec::with_capacity(24 + self.kind.len() + section.len());
        out.push(self.version);
        out.push(self.reserved);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.put_bytes(self.signer_handle.as_bytes());
        out.extend_from_slice(&self.signer_index.to_be_bytes());
        out.put_bytes(self.kind.as_bytes());
        out.put_bytes(&section);
        out
    }

    fn new(kind: &str, counter: u32, digest_alg: &str, signature: Vec<u8>) -> Credential {
        Credential {
            version: 0,
            reserved: 0,
            flags: 0,
            signer_handle: String::new(),
            signer_index: counter,
            kind: kind.to_string(),
            digest_alg: digest_alg.to_string(),
            signature,
        }
    }

    pub fn is_mac(&self) -> bool {
        self.kind == HS_MAC
    }
}

fn at_least(env: &Envelope, major: u8, minor: u8) -> bool {
    (env.major, env.minor) >= (major, minor)
}

/// The bytes a signature or MAC of a message with envelope `env`, session counter `counter`
/// and header+body `header_and_body` covers (Handle.Net's `AbstractMessage.signMessage`):
///
/// - from 2.7: the version bytes (4 from 2.8: major, minor, suggested major, suggested minor;
///   2 before), then session id, request id and counter, then header+body;
/// - 2.6: Handle.Net's buffer of 2 version bytes + 12 bytes written at overlapping offsets
///   (its "painful bug": the session id's first two bytes, then the counter, then zeros),
///   reproduced so 2.6 peers verify;
/// - before 2.6: header+body alone.
pub fn covered_bytes(env: &Envelope, counter: u32, header_and_body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + header_and_body.len());
    if at_least(env, 2, 7) {
        out.push(env.major);
        out.push(env.minor);
        if at_least(env, 2, 8) {
            out.push(env.suggested_major);
            out.push(env.suggested_minor);
        }
        out.extend_from_slice(&env.session_id.to_be_bytes());
        out.extend_from_slice(&env.request_id.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
    } else if at_least(env, 2, 6) {
        let mut prefix = [0u8; 14];
        prefix[0] = env.major;
        prefix[1] = env.minor;
        prefix[2..6].copy_from_slice(&env.session_id.to_be_bytes());
        prefix[4..8].copy_from_slice(&env.request_id.to_be_bytes());
        prefix[4..8].copy_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&prefix);
    }
    out.extend_from_slice(header_and_body);
    out
}

/// The signature hash for a message at `env`'s version (Handle.Net `Util.getDefaultSigId`):
/// SHA-256 from 2.7 (for DSA keys only from 2.11), SHA-1 before.
pub fn signature_hash(env: &Envelope, key: &PrivateKey) -> SignatureHash {
    let sha256_from = match key {
        PrivateKey::Rsa(_) => (2, 7),
        PrivateKey::Dsa(_) => (2, 11),
    };
    if at_least(env, sha256_from.0, sha256_from.1) {
        SignatureHash::Sha256
    } else {
        SignatureHash::Sha1
    }
}

/// Sign a message (`HS_SIGNED`) with `key`: what a server puts in a certified answer.
pub fn sign(
    key: &PrivateKey,
    env: &Envelope,
    counter: u32,
    header_and_body: &[u8],
) -> Result<Credential, CredentialError> {
    let hash = signature_hash(env, key);
    let covered = covered_bytes(env, counter, header_and_body);
    let signature = key.try_sign(hash, &covered, &[])?;
    Ok(Credential::new(
        HS_SIGNED,
        counter,
        hash.wire_name(),
        signature,
    ))
}

/// Check an `HS_SIGNED` credential of a message against `key`. `Ok(false)`: it does not
/// verify; `Err`: it is not a signature this node can check.
pub fn verify_signed(
    key: &PublicKey,
    env: &Envelope,
    header_and_body: &[u8],
    credential: &Credential,
) -> Result<bool, CredentialError> {
    if credential.kind != HS_SIGNED && credential.kind != HS_SIGNED_OLD {
        return Err(CredentialError::WrongType(
            credential.kind.clone(),
            HS_SIGNED,
        ));
    }
    let hash = SignatureHash::from_wire(credential.digest_alg.as_bytes())
        .map_err(|_| CredentialError::UnsupportedAlgorithm(credential.digest_alg.clone()))?;
    let covered = covered_bytes(env, credential.signer_index, header_and_body);
    Ok(verify_parts_signature(
        key,
        hash,
        &covered,
        &[],
        &credential.signature,
    )?)
}

/// What checking a certified answer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certification {
    /// An `HS_SIGNED` credential that verifies with the expected key.
    Verified,
    /// No credential at all.
    Missing,
    /// A credential that does not verify (or cannot be checked), and why.
    Invalid(String),
}

impl Certification {
    /// A short account of the check, for error messages and logs.
    pub fn describe(&self) -> String {
        match self {
            Certification::Verified => "signature verified".into(),
            Certification::Missing => "the answer carries no signature".into(),
            Certification::Invalid(why) => why.clone(),
        }
    }
}

/// Check the `HS_SIGNED` credential of a decoded answer against `key` (the public key of the
/// HS_SITE server entry the request went to). The covered header+body is re-encoded from the
/// decoded message: the codec writes Handle.Net's encoding byte for byte (see the vector
/// tests), so a faithful server's signature checks.
pub fn certification(key: &PublicKey, m: &crate::wire::handle::Message) -> Certification {
    let cred = match m.credential.as_deref() {
        None | Some([]) => return Certification::Missing,
        Some(bytes) => match Credential::decode(bytes) {
            Ok(c) => c,
            Err(e) => return Certification::Invalid(e.to_string()),
        },
    };
    let encoded = m.encode_message();
    let Some(hb) = crate::wire::handle::message::header_and_body(&encoded) else {
        return Certification::Invalid("no header".into());
    };
    match verify_signed(key, &m.envelope, hb, &cred) {
        Ok(true) => Certification::Verified,
        Ok(false) => Certification::Invalid("the signature does not verify".into()),
        Err(e) => Certification::Invalid(e.to_string()),
    }
}

fn hmac(session_key: &[u8], covered: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(session_key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(covered);
    mac
}

/// MAC a message with a session key (`HS_MAC`, HMAC-SHA256; protocol 2.7 and later).
pub fn mac(
    session_key: &[u8],
    env: &Envelope,
    counter: u32,
    header_and_body: &[u8],
) -> Result<Credential, CredentialError> {
    if !at_least(env, 2, 7) {
        return Err(CredentialError::OldVersion(env.major, env.minor));
    }
    let covered = covered_bytes(env, counter, header_and_body);
    let tag = hmac(session_key, &covered).finalize().into_bytes().to_vec();
    Ok(Credential::new(HS_MAC, counter, HMAC_SHA256, tag))
}

/// Check an `HS_MAC` credential with a session key, in constant time. `Ok(false)`: wrong MAC.
pub fn verify_mac(
    session_key: &[u8],
    env: &Envelope,
    header_and_body: &[u8],
    credential: &Credential,
) -> Result<bool, CredentialError> {
    if credential.kind != HS_MAC {
        return Err(CredentialError::WrongType(credential.kind.clone(), HS_MAC));
    }
    if !credential.digest_alg.eq_ignore_ascii_case(HMAC_SHA256) {
        return Err(CredentialError::UnsupportedAlgorithm(
            credential.digest_alg.clone(),
        ));
    }
    if !at_least(env, 2, 7) {
        return Err(CredentialError::OldVersion(env.major, env.minor));
    }
    let covered = covered_bytes(env, credential.signer_index, header_and_body);
    Ok(hmac(session_key, &covered)
        .verify_slice(&credential.signature)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handle::message::{header_and_body, ENVELOPE_LEN};
    use crate::wire::handle::vectors2::{v2, v2_hex, v2_key};

    /// Envelope, header+body and credential of a vector, read by offsets (so bodies this
    /// module knows nothing about need not decode).
    fn parts(name: &str) -> (Envelope, Vec<u8>, Credential) {
        let bytes = v2(name);
        let env = Envelope::decode(&bytes[..ENVELOPE_LEN]).unwrap();
        let hb = header_and_body(&bytes[ENVELOPE_LEN..]).unwrap().to_vec();
        let cred = &bytes[ENVELOPE_LEN + hb.len() + 4..];
        (env, hb, Credential::decode(cred).unwrap())
    }

    fn server_key() -> PrivateKey {
        PrivateKey::from_pkcs8_der(&v2_key("SERVER_RSA")).unwrap()
    }

    fn server_public() -> PublicKey {
        PublicKey::decode(&v2("SERVER_RSA_PUBKEY_DATA_HEX")).unwrap()
    }

    /// The certified answers of the vectors: the credential round-trips byte for byte, the
    /// covered bytes are the recorded signed input, re-signing gives the recorded signature
    /// (PKCS#1 v1.5 is deterministic), and the signature verifies with the HS_SITE key.
    #[test]
    fn certified_answers_match_the_reference_signer() {
        for name in [
            "CERT_RESOLUTION_RESP_HEX",
            "CERT_NOTFOUND_RESP_HEX",
            "SDK_CERT_RESOLUTION_RESP_HEX",
            "SESSION_SETUP_RESP_HEX",
            "RD_SESSION_SETUP_ERROR_RESP_HEX",
        ] {
            let bytes = v2(name);
            let (env, hb, cred) = parts(name);
            assert_eq!(
                cred.encode(),
                bytes[ENVELOPE_LEN + hb.len() + 4..],
                "{name}"
            );
            assert_eq!(cred.kind, HS_SIGNED);
            assert_eq!(cred.digest_alg, "SHA-256");
            assert!(
                verify_signed(&server_public(), &env, &hb, &cred).unwrap(),
                "{name}"
            );
            let again = sign(&server_key(), &env, 0, &hb).unwrap();
            assert_eq!(again, cred, "{name}");
            let mut bent = hb.clone();
            let last = bent.len() - 1;
            bent[last] ^= 1;
            assert!(!verify_signed(&server_public(), &env, &bent, &cred).unwrap());
        }
        let (env, hb, _) = parts("CERT_RESOLUTION_RESP_HEX");
        assert_eq!(
            covered_bytes(&env, 0, &hb),
            v2("CERT_RESOLUTION_RESP_SIGNED_INPUT_HEX")
        );
    }

    /// Every session MAC of the vectors checks with the session key, the server's recomputes
    /// byte for byte, and a flipped byte or another counter fails.
    #[test]
    fn session_macs_match_the_reference() {
        let key = v2_hex("/intermediate/SESSION_DH/session_key_hex");
        for name in [
            "SESSION_ADD_VALUE_REQ_HEX",
            "SESSION_MODIFY_VALUE_REQ_HEX",
            "SESSION_CERT_RESOLUTION_REQ_HEX",
            "SESSION_CERT_RESOLUTION_RESP_HEX",
            "SESSION_TERMINATE_REQ_HEX",
        ] {
            let (env, hb, cred) = parts(name);
            let want = v2_hex(&format!(
                "/intermediate/SESSION_MACS/{name}/hmac_sha256_hex"
            ));
            assert_eq!(cred.signature, want, "{name}");
            assert_eq!(
                covered_bytes(&env, cred.signer_index, &hb)[..16],
                v2_hex(&format!("/intermediate/SESSION_MACS/{name}/mac_prefix_hex"))[..]
            );
            assert!(verify_mac(&key, &env, &hb, &cred).unwrap(), "{name}");
            assert_eq!(mac(&key, &env, cred.signer_index, &hb).unwrap(), cred);
            let mut other = cred.clone();
            other.signer_index += 1;
            assert!(!verify_mac(&key, &env, &hb, &other).unwrap());
            let mut bent = hb.clone();
            bent[0] ^= 0x80;
            assert!(!verify_mac(&key, &env, &bent, &cred).unwrap());
        }
    }

    /// Decoded answers re-encode to the signed bytes: the signature checks after decoding.
    #[test]
    fn decoded_answers_verify() {
        use crate::wire::handle::Message;
        for name in [
            "CERT_RESOLUTION_RESP_HEX",
            "CERT_NOTFOUND_RESP_HEX",
            "SDK_CERT_RESOLUTION_RESP_HEX",
        ] {
            let m = Message::decode_full(&v2(name)).unwrap();
            assert_eq!(
                certification(&server_public(), &m),
                Certification::Verified,
                "{name}"
            );
            let mut bent = m.clone();
            bent.envelope.request_id ^= 1;
            assert!(matches!(
                certification(&server_public(), &bent),
                Certification::Invalid(_)
            ));
            let admin = PublicKey::decode(&v2("RSA_PUBKEY_DATA_HEX")).unwrap();
            assert!(matches!(
                certification(&admin, &m),
                Certification::Invalid(_)
            ));
            let mut bare = m;
            bare.credential = Some(Vec::new());
            assert_eq!(
                certification(&server_public(), &bare),
                Certification::Missing
            );
        }
    }

    #[test]
    fn malformed_and_foreign_credentials_are_errors() {
        let (env, hb, cred) = parts("CERT_RESOLUTION_RESP_HEX");
        let bytes = cred.encode();
        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(Credential::decode(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Credential::decode(&long).is_err());
        assert!(matches!(
            verify_mac(b"k", &env, &hb, &cred),
            Err(CredentialError::WrongType(..))
        ));
        let mut md5 = cred.clone();
        md5.digest_alg = "MD5".into();
        assert!(matches!(
            verify_signed(&server_public(), &env, &hb, &md5),
            Err(CredentialError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn old_versions_cover_what_handle_net_covers() {
        let mut env = Envelope {
            major: 2,
            minor: 5,
            flags: 0,
            suggested_major: 2,
            suggested_minor: 11,
            session_id: 0x0102_0304,
            request_id: 0x0a0b_0c0d,
            sequence: 0,
            message_length: 0,
        };
        assert_eq!(covered_bytes(&env, 7, b"hb"), b"hb");
        env.minor = 6;
        assert_eq!(
            covered_bytes(&env, 7, b"hb"),
            [2, 6, 1, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, b'h', b'b']
        );
        env.minor = 7;
        assert_eq!(covered_bytes(&env, 7, b"").len(), 14);
        assert!(mac(b"k", &Envelope { minor: 6, ..env }, 1, b"").is_err());
        let key = server_key();
        assert_eq!(
            signature_hash(&Envelope { minor: 6, ..env }, &key),
            SignatureHash::Sha1
        );
    }
}
