//! Authentication of identities and authorization of operations, shared by every front end.
//!
//! An identity is a value of a handle: `300:0.NA/88.100.1` is index 300 of `0.NA/88.100.1`.
//! - **Authentication** here proves possession of the HS_SECKEY secret stored at that value
//!   (HTTP Basic sends it directly; the native protocol's challenge-response builds on the same
//!   lookup). Comparison is constant-time.
//! - **Authorization** follows Handle.Net: an identity may do an operation on a handle if an
//!   HS_ADMIN value with the needed permission bits names it, directly or through HS_VLIST
//!   groups (nested groups are followed to a bounded depth, cycles are ignored). An HS_ADMIN
//!   reference with index 0 matches any index of the named handle.
//!
//! Which HS_ADMIN values count is decided by the engine (the target's own, the prefix
//! handle's); this module only answers "does this set of admin values grant these bits to
//! this identity".

pub mod challenge;

use std::collections::HashSet;

use subtle::ConstantTimeEq;

use crate::model::{types, AdminRef, Handle, HandleValue, SuffixCase, ValueList, ValueReference};
use crate::store::{Registry, StoreError};

/// How deep HS_VLIST groups may nest.
pub const MAX_GROUP_DEPTH: usize = 10;

/// An authenticated administrator: one value (`index`) of a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub handle: Handle,
    pub index: u32,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.index, self.handle)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("identity handle {0} does not exist")]
    UnknownIdentity(String),
    #[error("identity {0} has no HS_SECKEY value")]
    NoSecretKey(String),
    #[error("wrong secret for {0}")]
    WrongSecret(String),
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
    let record = registry
        .get(handle)?
        .ok_or_else(|| AuthError::UnknownIdentity(handle.to_string()))?;
    let who = format!("{index}:{handle}");
    let candidates: Vec<&HandleValue> = record
        .values
        .iter()
        .filter(|v| v.is_type(types::HS_SECKEY) && (index == 0 || v.index == index))
        .collect();
    if candidates.is_empty() {
        return Err(AuthError::NoSecretKey(who));
    }
    for v in candidates {
        if bool::from(v.data.as_slice().ct_eq(secret)) {
            return Ok(Identity {
                handle: handle.clone(),
                index: v.index,
            });
        }
    }
    Err(AuthError::WrongSecret(who))
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

#[cfg(test)]
mod tests;
