//! Authentication of identities and authorization of operations, shared by every front end.
//!
//! An identity is a value of a handle: `300:0.NA/88.100.1` is index 300 of `0.NA/88.100.1`.
//! - **Authentication** here proves possession of the HS_SECKEY secret stored at that value
//!   (HTTP Basic sends it directly; the native protocol's challenge-response builds on the same
//!   lookup; comparison is constant-time), or of the private key of an HS_PUBKEY value (a TLS
//!   client certificate whose key is that value, [`authenticate_public_key`]).
//! - **Authorization** follows Handle.Net: an identity may do an operation on a handle if an
//!   HS_ADMIN value with the needed permission bits names it, directly or through HS_VLIST
//!   groups (nested groups are followed to a bounded depth, cycles are ignored). An HS_ADMIN
//!   reference with index 0 matches any index of the named handle.
//!
//! Which HS_ADMIN values count is decided by the engine (the target's own, the prefix
//! handle's); this module only answers "does this set of admin values grant these bits to
//! this identity".

pub mod challenge;
pub mod challenges;
pub mod credential;
pub mod identity;
pub mod pending;
pub mod session;

use std::collections::HashSet;

use subtle::ConstantTimeEq;

use crate::model::{
    types, AdminRef, Handle, HandleValue, PublicKey, SuffixCase, ValueList, ValueReference,
};
use crate::store::{Registry, StoreError};
pub use identity::{Identity, IdentityError, IndexRule};

/// How deep HS_VLIST groups may nest.
pub const MAX_GROUP_DEPTH: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("identity handle {0} does not exist")]
    UnknownIdentity(String),
    #[error("identity {0} has no HS_SECKEY value")]
    NoSecretKey(String),
    #[error("wrong secret for {0}")]
    WrongSecret(String),
    #[error("the session answer does not verify against the keys of {0}")]
    BadSignature(String),
    #[error("identity {0} has no HS_PUBKEY value")]
    NoPublicKey(String),
    #[error("the client certificate's key is not an HS_PUBKEY of {0}")]
    KeyMismatch(String),
    #[error("client certificate: {0}")]
    BadCertificate(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Check `secret` against the HS_SECKEY at `index` of `handle` (index 0: any HS_SECKEY value
/// of the handle; the identity then carries the index that matched).
pub fn authenticate_secret(
    registry: &Registry,
    handle: &Handle,
    index: u32,
    secret: &[u8],
) -> Result<Identity, AuthError> {
    authenticate_by_value(
        registry,
        handle,
        index,
        KeyKind::Secret,
        AuthError::WrongSecret,
        |v| bool::from(v.data.as_slice().ct_eq(secret)),
    )
}

/// The value type an identity proves possession of (also the `type=` of a REST session
/// answer: HS_SECKEY or HS_PUBKEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Public,
}

/// The shared shape of every authentication: the identity's record, its values of `kind` at
/// `index` (0: any index), and the first that `proves` accepts gives the identity (with that
/// value's index). No record, no such value, or none accepted are the three errors; `refused`
/// builds the last.
fn authenticate_by_value(
    registry: &Registry,
    handle: &Handle,
    index: u32,
    kind: KeyKind,
    refused: fn(String) -> AuthError,
    proves: impl Fn(&HandleValue) -> bool,
) -> Result<Identity, AuthError> {
    let record = registry
        .get(handle)?
        .ok_or_else(|| AuthError::UnknownIdentity(handle.to_string()))?;
    let who = format!("{index}:{handle}");
    let wanted = match kind {
        KeyKind::Secret => types::HS_SECKEY,
        KeyKind::Public => types::HS_PUBKEY,
    };
    let mut candidates = record
        .values
        .iter()
        .filter(|v| v.is_type(wanted) && (index == 0 || v.index == index))
        .peekable();
    if candidates.peek().is_none() {
        return Err(match kind {
            KeyKind::Secret => AuthError::NoSecretKey(who),
            KeyKind::Public => AuthError::NoPublicKey(who),
        });
    }
    match candidates.find(|v| proves(v)) {
        Some(v) => Ok(Identity {
            handle: handle.clone(),
            index: v.index,
        }),
        None => Err(refused(who)),
    }
}

/// What a TLS client certificate claims (Handle.Net client-certificate authentication): the
/// identity its subject names, `index:handle` in the UID attribute or else the CN, and its RSA
/// public key. The TLS handshake has already proven that the client holds the private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertClaim {
    pub identity: String,
    /// Big-endian magnitudes, leading zero bytes removed.
    pub modulus: Vec<u8>,
    pub exponent: Vec<u8>,
}

/// The UID attribute (RFC 4519, `0.9.2342.19200300.100.1.1`).
const UID_OID: &[u64] = &[0, 9, 2342, 19_200_300, 100, 1, 1];

fn magnitude(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    &bytes[zeros..]
}

/// Read a DER client certificate: its identity claim and RSA key (HS_PUBKEY has no other key
/// kind that TLS clients still sign with).
pub fn read_client_cert(der: &[u8]) -> Result<CertClaim, AuthError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey as CertKey;
    let bad = |m: String| AuthError::BadCertificate(m);
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| bad(format!("not a certificate: {e}")))?;
    let subject = cert.subject();
    let uid = subject.iter_attributes().find(|a| {
        a.attr_type()
            .iter()
            .is_some_and(|arcs| arcs.eq(UID_OID.iter().copied()))
    });
    let named = match uid {
        Some(attr) => attr.as_str(),
        None => subject
            .iter_common_name()
            .next()
            .ok_or_else(|| bad(format!("subject {subject} has neither UID nor CN")))?
            .as_str(),
    };
    let identity = named
        .map_err(|e| bad(format!("subject {subject}: identity is not text: {e}")))?
        .to_string();
    let key = cert
        .public_key()
        .parsed()
        .map_err(|e| bad(format!("unreadable public key: {e}")))?;
    let CertKey::RSA(rsa) = key else {
        return Err(bad(format!(
            "{} key; only RSA keys can match an HS_PUBKEY",
            cert.public_key().algorithm.algorithm
        )));
    };
    Ok(CertClaim {
        identity,
        modulus: magnitude(rsa.modulus).to_vec(),
        exponent: magnitude(rsa.exponent).to_vec(),
    })
}

/// Check that `claim`'s key is an HS_PUBKEY value at `index` of `handle` (index 0: any
/// HS_PUBKEY value of the handle; the identity then carries the index that matched).
pub fn authenticate_public_key(
    registry: &Registry,
    handle: &Handle,
    index: u32,
    claim: &CertClaim,
) -> Result<Identity, AuthError> {
    authenticate_by_value(
        registry,
        handle,
        index,
        KeyKind::Public,
        AuthError::KeyMismatch,
        |v| match PublicKey::decode(&v.data) {
            Ok(PublicKey::Rsa { exponent, modulus }) => {
                magnitude(&modulus) == claim.modulus && magnitude(&exponent) == claim.exponent
            }
            _ => false,
        },
    )
}

/// What a REST session answer carries besides the identity.
#[derive(Debug, Clone, Copy)]
pub struct SessionAnswer<'a> {
    pub kind: KeyKind,
    /// "SHA1" or "SHA256".
    pub alg: &'a str,
    /// The server's nonce, then the client's.
    pub nonce: &'a [u8],
    pub cnonce: &'a [u8],
    pub signature: &'a [u8],
}

/// Check a REST session answer against the HS_PUBKEY or HS_SECKEY values at `index` of
/// `handle` (index 0: any value of that type; the identity carries the index that matched).
pub fn authenticate_session_answer(
    registry: &Registry,
    handle: &Handle,
    index: u32,
    answer: &SessionAnswer<'_>,
) -> Result<Identity, AuthError> {
    let a = answer;
    authenticate_by_value(
        registry,
        handle,
        index,
        a.kind,
        AuthError::BadSignature,
        |v| {
            let valid = match a.kind {
                KeyKind::Public => PublicKey::decode(&v.data).ok().and_then(|key| {
                    challenge::verify_session_signature(&key, a.alg, a.nonce, a.cnonce, a.signature)
                        .ok()
                }),
                KeyKind::Secret => {
                    challenge::verify_session_secret(&v.data, a.alg, a.nonce, a.cnonce, a.signature)
                        .ok()
                }
            };
            valid == Some(true)
        },
    )
}

/// The indexes of `values` (the record of `handle`) that are **admin values**: changing them
/// changes who administers something, so adding, modifying or removing them needs the
/// ADD_ADMIN / MODIFY_ADMIN / REMOVE_ADMIN bits rather than the *_VALUE ones.
///
/// - every value of an administrative type ([`types::is_administrative`]: HS_ADMIN, HS_VLIST,
///   and the key types identities authenticate with, HS_SECKEY, HS_PUBKEY, HS_PRIVKEY);
/// - every value of the same handle that its HS_ADMIN values reference, directly or through
///   its HS_VLIST values (followed within the record, to [`MAX_GROUP_DEPTH`]). An index-0
///   reference names any value of that handle, but only keys and groups can ever match, and
///   those are already counted by type.
///
/// Groups and keys of *other* handles are admin values of those handles by the same rule, so
/// an HS_ADMIN that points elsewhere is protected where it points.
pub fn admin_value_indexes(
    handle: &Handle,
    values: &[HandleValue],
    case: SuffixCase,
) -> HashSet<u32> {
    let mut out: HashSet<u32> = values
        .iter()
        .filter(|v| types::is_administrative(&v.type_name))
        .map(|v| v.index)
        .collect();
    let same_handle = |r: &ValueReference| {
        r.index != 0
            && Handle::parse_lenient(&r.handle, case).is_ok_and(|h| h.key() == handle.key())
    };
    let mut frontier: Vec<u32> = values
        .iter()
        .filter(|v| v.is_type(types::HS_ADMIN))
        .filter_map(|v| AdminRef::decode(&v.data).ok())
        .filter(|a| same_handle(&a.admin))
        .map(|a| a.admin.index)
        .collect();
    let mut followed = HashSet::new();
    for _ in 0..=MAX_GROUP_DEPTH {
        let mut next = Vec::new();
        for index in frontier {
            out.insert(index);
            if !followed.insert(index) {
                continue;
            }
            for v in values
                .iter()
                .filter(|v| v.index == index && v.is_type(types::HS_VLIST))
            {
                if let Ok(list) = ValueList::decode(&v.data) {
                    next.extend(list.0.iter().filter(|r| same_handle(r)).map(|r| r.index));
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    out
}

/// Answers authorization questions against the registry.
pub struct Authorizer<'a> {
    pub registry: &'a Registry,
    pub case: SuffixCase,
}

impl Authorizer<'_> {
    /// Does any of `admin_values` (HS_ADMIN values; others are ignored) grant all of `bits` to
    /// `identity`?
    pub fn grants(
        &self,
        admin_values: &[HandleValue],
        bits: u16,
        identity: &Identity,
    ) -> Result<bool, StoreError> {
        for v in admin_values.iter().filter(|v| v.is_type(types::HS_ADMIN)) {
            let Ok(admin) = AdminRef::decode(&v.data) else {
                continue; // Undecodable admin values grant nothing.
            };
            if !admin.permissions.has(bits) {
                continue;
            }
            let mut visited = HashSet::new();
            if self.names(&admin.admin, identity, 0, &mut visited)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Does any of `admin_values` (HS_ADMIN values with all of `bits`) lead to an identity that
    /// could authenticate on this node: a reference, directly or through (nested) HS_VLIST
    /// groups, to an HS_SECKEY or HS_PUBKEY value of a handle in the registry? `pending` is a
    /// record about to be written (its handle and new values): lookups of that handle see the
    /// new state, so a change is judged by what it leaves behind.
    pub fn administrator_remains(
        &self,
        admin_values: &[HandleValue],
        bits: u16,
        pending: (&Handle, &[HandleValue]),
    ) -> Result<bool, StoreError> {
        for v in admin_values.iter().filter(|v| v.is_type(types::HS_ADMIN)) {
            let Ok(admin) = AdminRef::decode(&v.data) else {
                continue;
            };
            if !admin.permissions.has(bits) {
                continue;
            }
            let mut visited = HashSet::new();
            if self.leads_to_key(&admin.admin, pending, 0, &mut visited)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Does `reference` name a key value (HS_SECKEY / HS_PUBKEY; index 0: any of the handle's),
    /// directly or through HS_VLIST groups?
    fn leads_to_key(
        &self,
        reference: &ValueReference,
        pending: (&Handle, &[HandleValue]),
        depth: usize,
        visited: &mut HashSet<(String, u32)>,
    ) -> Result<bool, StoreError> {
        let Ok(ref_handle) = Handle::parse_lenient(&reference.handle, self.case) else {
            return Ok(false);
        };
        if depth >= MAX_GROUP_DEPTH
            || !visited.insert((ref_handle.key().to_string(), reference.index))
        {
            return Ok(false);
        }
        let stored;
        let values: &[HandleValue] = if ref_handle.key() == pending.0.key() {
            pending.1
        } else {
            match self.registry.get(&ref_handle)? {
                Some(record) => {
                    stored = record.values;
                    &stored
                }
                None => return Ok(false),
            }
        };
        let selected = values
            .iter()
            .filter(|v| reference.index == 0 || v.index == reference.index);
        let mut groups = Vec::new();
        for v in selected {
            if v.is_type(types::HS_SECKEY) || v.is_type(types::HS_PUBKEY) {
                return Ok(true);
            }
            if v.is_type(types::HS_VLIST) {
                if let Ok(list) = ValueList::decode(&v.data) {
                    groups.extend(list.0);
                }
            }
        }
        for member in &groups {
            if self.leads_to_key(member, pending, depth + 1, visited)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Does `reference` name `identity`, directly or through (nested) HS_VLIST groups?
    fn names(
        &self,
        reference: &ValueReference,
        identity: &Identity,
        depth: usize,
        visited: &mut HashSet<(String, u32)>,
    ) -> Result<bool, StoreError> {
        let Ok(ref_handle) = Handle::parse_lenient(&reference.handle, self.case) else {
            return Ok(false);
        };
        if ref_handle == identity.handle
            && (reference.index == 0 || reference.index == identity.index)
        {
            return Ok(true);
        }
        if depth >= MAX_GROUP_DEPTH
            || !visited.insert((ref_handle.key().to_string(), reference.index))
        {
            return Ok(false);
        }
        let Some(record) = self.registry.get(&ref_handle)? else {
            return Ok(false);
        };
        for v in record.values.iter().filter(|v| {
            v.is_type(types::HS_VLIST) && (reference.index == 0 || v.index == reference.index)
        }) {
            let Ok(list) = ValueList::decode(&v.data) else {
                continue;
            };
            for member in &list.0 {
                if self.names(member, identity, depth + 1, visited)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// What an anonymous resolution without the public-only flag (PO) gets when the record has
/// values only administrators may read (`[handle] anonymous_restricted_reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousReads {
    /// The values anyone may read, RC 1, as if PO were set. The ID-SDK never sets PO and
    /// cannot answer a 402 outside its login, and the national system's resolution needs no
    /// login; a Handle.Net client that wants restricted values authenticates through a
    /// login, a session or a challenge answer it starts itself.
    #[default]
    Public,
    /// Handle.Net's behaviour: a 402 challenge over TCP (RC 2, "ask over TCP", over UDP).
    Challenge,
}

#[cfg(test)]
mod tests;
