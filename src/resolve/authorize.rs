//! Who may change what: the HS_ADMIN values that govern a handle, the permission bits a
//! change needs (from the value diff), the ADMIN_WRITE rule, and the invariant that no change
//! leaves a handle or a homed prefix without an administrator. Called by the writes (`write`)
//! inside the registry's writer lock, against the record being changed, and by reads of
//! non-public values and listings (`engine`).

use std::collections::HashSet;

use super::{Engine, ResolveError};
use crate::auth::{admin_value_indexes, Identity};
use crate::model::{types, AdminPermissions, Handle, HandleValue, Prefix};
use crate::store::Record;

/// Admin-permission bits needed to turn `old` values into `new` values. `admin` holds the
/// indexes that are admin values in the old or the new state ([`admin_value_indexes`] of
/// both): adding, modifying or removing one needs ADD_ADMIN / MODIFY_ADMIN / REMOVE_ADMIN.
fn bits_for_change(old: &[HandleValue], new: &[HandleValue], admin: &HashSet<u32>) -> u16 {
    let mut bits = 0u16;
    let is_admin = |v: &HandleValue| admin.contains(&v.index);
    for n in new {
        match old.iter().find(|o| o.index == n.index) {
            None => {
                bits |= if is_admin(n) {
                    AdminPermissions::ADD_ADMIN
                } else {
                    AdminPermissions::ADD_VALUE
                }
            }
            Some(o) if !same_content(o, n) => {
                bits |= if is_admin(o) || is_admin(n) {
                    AdminPermissions::MODIFY_ADMIN
                } else {
                    AdminPermissions::MODIFY_VALUE
                }
            }
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.index == o.index) {
            bits |= if is_admin(o) {
                AdminPermissions::REMOVE_ADMIN
            } else {
                AdminPermissions::REMOVE_VALUE
            };
        }
    }
    bits
}

/// The HS_ADMIN bits an administrator must hold for a prefix handle to count as administered:
/// enough to add and repair admin values.
const KEEPER_BITS: u16 = AdminPermissions::ADD_ADMIN | AdminPermissions::MODIFY_ADMIN;

/// Equal apart from the server-stamped timestamp.
fn same_content(a: &HandleValue, b: &HandleValue) -> bool {
    a.type_name == b.type_name
        && a.data == b.data
        && a.ttl == b.ttl
        && a.permissions == b.permissions
        && a.references == b.references
}

impl Engine {
    pub(super) fn is_server_admin(&self, identity: &Identity) -> bool {
        self.policy.server_admins.iter().any(|a| a == identity)
    }

    /// HS_ADMIN values of the prefix handles that govern changes to `handle` (besides its own).
    pub(super) fn governing_admin_values(
        &self,
        handle: &Handle,
    ) -> Result<Vec<HandleValue>, ResolveError> {
        let mut out = Vec::new();
        if !self.policy.allow_prefix_admins {
            return Ok(out);
        }
        let prefixes: Vec<Prefix> = match handle.described_prefix() {
            // 0.NA/X: the admins of the prefixes above X manage its delegation.
            Some(described) => described.ancestry().skip(1).collect(),
            None => vec![handle.prefix()],
        };
        for p in prefixes {
            if let Some(rec) = self.registry.get(&p.na_handle())? {
                out.extend(
                    rec.values
                        .into_iter()
                        .filter(|v| v.is_type(types::HS_ADMIN)),
                );
            }
        }
        Ok(out)
    }

    pub(super) fn check_grants(
        &self,
        identity: &Identity,
        admin_values: &[HandleValue],
        bits: u16,
        what: &str,
    ) -> Result<(), ResolveError> {
        if bits == 0 || self.is_server_admin(identity) {
            return Ok(());
        }
        if self.authorizer().grants(admin_values, bits, identity)? {
            Ok(())
        } else {
            Err(ResolveError::NotAdministrator {
                identity: identity.to_string(),
                what: what.to_string(),
            })
        }
    }

    /// Check that `identity` may create `handle`.
    pub(super) fn authorize_create(
        &self,
        identity: &Identity,
        handle: &Handle,
    ) -> Result<(), ResolveError> {
        if self.is_server_admin(identity) {
            return Ok(());
        }
        let (admins, bits) = match handle.described_prefix() {
            Some(described) => {
                let mut admins = Vec::new();
                for p in described.ancestry().skip(1) {
                    if let Some(rec) = self.registry.get(&p.na_handle())? {
                        admins.extend(rec.values);
                    }
                }
                (admins, AdminPermissions::ADD_DERIVED_PREFIX)
            }
            None => {
                let admins = self
                    .registry
                    .get(&handle.prefix().na_handle())?
                    .map(|r| r.values)
                    .unwrap_or_default();
                (admins, AdminPermissions::ADD_HANDLE)
            }
        };
        self.check_grants(identity, &admins, bits, &format!("create {handle}"))
    }

    /// Check that `identity` may turn `current` into `new_values` (`None` = delete), and that
    /// the change leaves the handle administered.
    pub(super) fn authorize_change(
        &self,
        identity: &Identity,
        handle: &Handle,
        current: &Record,
        new_values: Option<&[HandleValue]>,
    ) -> Result<(), ResolveError> {
        let mut admins: Vec<HandleValue> = current
            .values
            .iter()
            .filter(|v| v.is_type(types::HS_ADMIN))
            .cloned()
            .collect();
        admins.extend(self.governing_admin_values(handle)?);
        let (bits, what) = match new_values {
            None => {
                let bits = if handle.described_prefix().is_some() {
                    AdminPermissions::DELETE_DERIVED_PREFIX
                } else {
                    AdminPermissions::DELETE_HANDLE
                };
                (bits, format!("delete {handle}"))
            }
            Some(new) => {
                let case = self.policy.suffix_case;
                let mut admin = admin_value_indexes(handle, &current.values, case);
                admin.extend(admin_value_indexes(handle, new, case));
                (
                    bits_for_change(&current.values, new, &admin),
                    format!("change {handle}"),
                )
            }
        };
        self.check_grants(identity, &admins, bits, &what)?;
        if let Some(new) = new_values {
            self.check_admin_write(identity, &current.values, new)?;
        }
        self.check_keeps_administrator(handle, current, new_values)
    }

    /// Values whose ADMIN_WRITE bit is clear cannot be modified or removed by administrators
    /// (Handle.Net's per-value `adminCanWrite`); configured server administrators, who have
    /// every right on this node, are the exception. Deleting the whole handle is governed by
    /// DELETE_HANDLE alone.
    fn check_admin_write(
        &self,
        identity: &Identity,
        old: &[HandleValue],
        new: &[HandleValue],
    ) -> Result<(), ResolveError> {
        if self.is_server_admin(identity) {
            return Ok(());
        }
        for o in old.iter().filter(|o| !o.permissions.admin_write()) {
            let kept = new.iter().any(|n| n.index == o.index && same_content(o, n));
            if !kept {
                return Err(ResolveError::AdminWriteProtected { index: o.index });
            }
        }
        Ok(())
    }

    /// No change may leave a handle without an administrator (RC 202, invalid value):
    /// - the prefix handle `0.NA/X` of a prefix homed here cannot be deleted, and after a
    ///   change at least one of its HS_ADMIN values with ADD_ADMIN and MODIFY_ADMIN must lead,
    ///   directly or through HS_VLIST groups (read with this change applied), to an HS_SECKEY
    ///   or HS_PUBKEY value in this registry, i.e. to someone who can log in and repair it;
    /// - any other handle may lose its last HS_ADMIN value only while the prefix's
    ///   administrators (`allow_prefix_admins`) still administer it.
    pub(super) fn check_keeps_administrator(
        &self,
        handle: &Handle,
        current: &Record,
        new_values: Option<&[HandleValue]>,
    ) -> Result<(), ResolveError> {
        let refused = ResolveError::InvalidValue;
        let homed_prefix = match handle.described_prefix() {
            Some(p) if self.registry.is_homed(&p)? => Some(p),
            _ => None,
        };
        if let Some(prefix) = homed_prefix {
            let Some(new) = new_values else {
                return Err(refused(format!(
                    "{handle} is the prefix handle of {prefix}, homed on this node: it cannot be \
                     deleted"
                )));
            };
            if !self
                .authorizer()
                .administrator_remains(new, KEEPER_BITS, (handle, new))?
            {
                return Err(refused(format!(
                    "the change would leave prefix {prefix} without an administrator: no \
                     HS_ADMIN value with ADD_ADMIN and MODIFY_ADMIN would lead to an HS_SECKEY or \
                     HS_PUBKEY value on this node (`idnode init-prefix --force {prefix}` repairs \
                     a prefix handle)"
                )));
            }
            return Ok(());
        }
        let Some(new) = new_values else {
            return Ok(());
        };
        let had_admin = current.values.iter().any(|v| v.is_type(types::HS_ADMIN));
        let has_admin = new.iter().any(|v| v.is_type(types::HS_ADMIN));
        if had_admin && !has_admin {
            let governing = self.governing_admin_values(handle)?;
            let prefix_admins =
                self.authorizer()
                    .administrator_remains(&governing, 0, (handle, new))?;
            if !prefix_admins {
                return Err(refused(format!(
                    "the change would remove the last HS_ADMIN value of {handle}, and no prefix \
                     administrator would administer it (node.allow_prefix_admins is {})",
                    if self.policy.allow_prefix_admins {
                        "on, but the prefix handle has no usable administrator"
                    } else {
                        "off"
                    }
                )));
            }
        }
        Ok(())
    }
}
