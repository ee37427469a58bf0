//! The engine's writes: create (optionally replacing), add, modify and remove values,
//! delete, home and unhome prefixes, mint fresh handles. Each write checks its target
//! ([`Engine::check_write_target`]), validates and stamps the values, and is authorized
//! (`authorize`) inside [`Registry::mutate`](crate::store::Registry::mutate) against the record
//! it is about to change; it returns once the change is durable.

use super::{sorted, stamp, Engine, ResolveError, Stamp};
use crate::auth::Identity;
use crate::model::{validate_values, Handle, HandleValue, Prefix};
use crate::store::{Mutation, Record};

/// How a create treats an existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with 101 if the handle exists.
    No,
    /// Replace the whole record.
    Yes,
}

/// What a successful write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Something new was created (a record, or for add: no value was replaced). The REST API
    /// answers 201 when set, 200 otherwise.
    pub created: bool,
    /// Change-log sequence, if anything changed.
    pub seq: Option<u64>,
}

impl Engine {
    /// Create a handle, or replace its whole record when `overwrite` is `Yes`.
    pub fn create(
        &self,
        identity: &Identity,
        handle: &Handle,
        mut values: Vec<HandleValue>,
        overwrite: Overwrite,
    ) -> Result<WriteOutcome, ResolveError> {
        self.check_write_target(handle)?;
        validate_values(&values)?;
        stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
        let values = sorted(values);
        let committed = self.registry.mutate::<ResolveError, _>(handle, |current| {
            match (current, overwrite) {
                (Some(_), Overwrite::No) => return Err(ResolveError::AlreadyExists),
                (Some(cur), Overwrite::Yes) => {
                    self.authorize_change(identity, handle, cur, Some(&values))?
                }
                (None, _) => {
                    self.authorize_create(identity, handle)?;
                    // A homed prefix's new prefix handle must come with an administrator.
                    let nothing = Record {
                        handle: handle.as_str().to_string(),
                        values: Vec::new(),
                    };
                    self.check_keeps_administrator(handle, &nothing, Some(&values))?
                }
            }
            Ok(Mutation::Put(Record {
                handle: handle.as_str().to_string(),
                values: values.clone(),
            }))
        })?;
        Ok(WriteOutcome {
            created: !committed.existed,
            seq: committed.seq,
        })
    }

    /// Add values; with `overwrite`, values at existing indexes are replaced (REST PUT with
    /// `index=`), otherwise an existing index fails with 201.
    pub fn add_values(
        &self,
        identity: &Identity,
        handle: &Handle,
        mut values: Vec<HandleValue>,
        overwrite: bool,
    ) -> Result<WriteOutcome, ResolveError> {
        self.check_write_target(handle)?;
        validate_values(&values)?;
        stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
        let mut replaced_any = false;
        let committed = self.registry.mutate::<ResolveError, _>(handle, |current| {
            let cur = current.ok_or(ResolveError::NotFound)?;
            let mut merged = cur.values.clone();
            for v in &values {
                match merged.iter_mut().find(|m| m.index == v.index) {
                    Some(_) if !overwrite => {
                        return Err(ResolveError::ValueExists { index: v.index })
                    }
                    Some(m) => {
                        replaced_any = true;
                        *m = v.clone();
                    }
                    None => merged.push(v.clone()),
                }
            }
            validate_values(&merged)?;
            self.authorize_change(identity, handle, cur, Some(&merged))?;
            Ok(Mutation::Put(Record {
                handle: cur.handle.clone(),
                values: sorted(merged),
            }))
        })?;
        Ok(WriteOutcome {
            created: !replaced_any,
            seq: committed.seq,
        })
    }

    /// Replace existing values; every index must exist (else 200).
    pub fn modify_values(
        &self,
        identity: &Identity,
        handle: &Handle,
        mut values: Vec<HandleValue>,
    ) -> Result<WriteOutcome, ResolveError> {
        self.check_write_target(handle)?;
        validate_values(&values)?;
        stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
        let committed = self.registry.mutate::<ResolveError, _>(handle, |current| {
            let cur = current.ok_or(ResolveError::NotFound)?;
            let mut merged = cur.values.clone();
            for v in &values {
                let slot = merged
                    .iter_mut()
                    .find(|m| m.index == v.index)
                    .ok_or_else(|| ResolveError::NoValueAt { index: v.index })?;
                *slot = v.clone();
            }
            validate_values(&merged)?;
            self.authorize_change(identity, handle, cur, Some(&merged))?;
            Ok(Mutation::Put(Record {
                handle: cur.handle.clone(),
                values: merged,
            }))
        })?;
        Ok(WriteOutcome {
            created: false,
            seq: committed.seq,
        })
    }

    /// Remove values by index; every index must exist (else 200).
    pub fn remove_values(
        &self,
        identity: &Identity,
        handle: &Handle,
        indexes: &[u32],
    ) -> Result<WriteOutcome, ResolveError> {
        self.check_write_target(handle)?;
        let committed = self.registry.mutate::<ResolveError, _>(handle, |current| {
            let cur = current.ok_or(ResolveError::NotFound)?;
            if let Some(missing) = indexes.iter().find(|i| cur.value(**i).is_none()) {
                return Err(ResolveError::NoValueAt { index: *missing });
            }
            let kept: Vec<HandleValue> = cur
                .values
                .iter()
                .filter(|v| !indexes.contains(&v.index))
                .cloned()
                .collect();
            self.authorize_change(identity, handle, cur, Some(&kept))?;
            Ok(Mutation::Put(Record {
                handle: cur.handle.clone(),
                values: kept,
            }))
        })?;
        Ok(WriteOutcome {
            created: false,
            seq: committed.seq,
        })
    }

    /// Delete a handle.
    pub fn delete(
        &self,
        identity: &Identity,
        handle: &Handle,
    ) -> Result<WriteOutcome, ResolveError> {
        self.check_write_target(handle)?;
        let committed = self.registry.mutate::<ResolveError, _>(handle, |current| {
            let cur = current.ok_or(ResolveError::NotFound)?;
            self.authorize_change(identity, handle, cur, None)?;
            Ok(Mutation::Delete)
        })?;
        Ok(WriteOutcome {
            created: false,
            seq: committed.seq,
        })
    }

    /// Home (`home`) or stop homing `prefix` at run time (Handle.Net's OC_HOME_NA and
    /// OC_UNHOME_NA): only the node's server administrators (`node.server_admins`) may, as
    /// Handle.Net's server authorises these against its `server_admins`, not HS_ADMIN values.
    /// Durable when this returns (logged, fsynced). Whether anything changed. Unhoming keeps
    /// the prefix's records; a prefix listed in `node.homed_prefixes` is homed again at the
    /// next start.
    pub fn set_homed(
        &self,
        identity: &Identity,
        prefix: &Prefix,
        home: bool,
    ) -> Result<bool, ResolveError> {
        if !self.is_server_admin(identity) {
            return Err(ResolveError::NotServerAdmin {
                identity: identity.to_string(),
            });
        }
        Ok(if home {
            self.registry.home_prefix(prefix)?
        } else {
            self.registry.unhome_prefix(prefix)?
        })
    }

    /// The prefixes this node homes.
    pub fn homed_prefixes(&self) -> Result<Vec<Prefix>, ResolveError> {
        Ok(self.registry.homed_prefixes()?)
    }

    /// A fresh handle under `base` (`"88.100.1/"` or `"88.100.1/batch-"`): `base` + 32 random
    /// hex digits (128 bits, so collisions are not a practical concern; a collision still fails
    /// safely with 101 on create).
    pub fn mint_handle(&self, base: &str) -> Result<Handle, ResolveError> {
        use rand::RngCore;
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let base = if base.contains('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        self.parse_handle(&format!("{base}{suffix}"))
    }
}
