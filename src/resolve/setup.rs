//! Operator set-up of a prefix's administrator, outside the authenticated path (run locally
//! by whoever owns the data directory): [`init_prefix`] lays it out, [`repair_prefix`]
//! restores it (`idnode init-prefix [--force]`, and the node's `bootstrap_admins` at start).

use super::{sorted, stamp, ResolveError, Stamp};
use crate::model::{types, validate_values, AdminPermissions, HandleValue, Prefix};
use crate::store::{Mutation, Record, Registry};

/// Operator set-up, outside the authenticated path (run locally by whoever owns the data
/// directory): home `prefix` and give it an administrator.
///
/// Creates `0.NA/<prefix>` (unless it exists) with
/// - index 100 HS_ADMIN: every permission for the group `200:0.NA/<prefix>`;
/// - index 200 HS_VLIST: the group, holding `<admin_index>:0.NA/<prefix>`;
/// - index `admin_index` HS_SECKEY: `secret`, readable and writable by admins only.
///
/// This is the layout Handle.Net and pyhandle expect (pyhandle writes HS_ADMIN values naming
/// `200:0.NA/<prefix>` into every handle it creates). Returns whether the prefix handle was
/// created (false: it existed and was left as it was; [`repair_prefix`] restores one).
pub fn init_prefix(
    registry: &Registry,
    prefix: &Prefix,
    admin_index: u32,
    secret: &[u8],
) -> Result<bool, ResolveError> {
    let values = admin_layout(prefix, admin_index, secret)?;
    registry.home_prefix(prefix)?;
    let na = prefix.na_handle();
    let committed = registry.mutate(&na, |current| {
        Ok::<_, ResolveError>(match current {
            Some(_) => Mutation::Unchanged,
            None => Mutation::Put(Record {
                handle: na.as_str().to_string(),
                values: sorted(values.clone()),
            }),
        })
    })?;
    Ok(!committed.existed)
}

/// What [`repair_prefix`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The prefix handle did not exist and was created.
    pub created: bool,
    /// Values that stood at the administrator's indexes (100, 200, the key's) and were
    /// replaced.
    pub replaced: Vec<HandleValue>,
    /// HS_ADMIN values at other indexes, kept as they were: the operator should review them.
    pub other_admins: Vec<HandleValue>,
}

/// `idnode init-prefix --force`: home `prefix` and restore its administrator in an existing
/// `0.NA/<prefix>` (or create it). Indexes 100, 200 and `admin_index` get the
/// [`init_prefix`] layout (the group holds only the restored administrator), every other value
/// is kept. The write goes through the change log, so followers receive it.
pub fn repair_prefix(
    registry: &Registry,
    prefix: &Prefix,
    admin_index: u32,
    secret: &[u8],
) -> Result<Repair, ResolveError> {
    let layout = admin_layout(prefix, admin_index, secret)?;
    registry.home_prefix(prefix)?;
    let na = prefix.na_handle();
    let mut repair = Repair {
        created: false,
        replaced: Vec::new(),
        other_admins: Vec::new(),
    };
    registry.mutate(&na, |current| {
        let mut values = Vec::new();
        repair = Repair {
            created: current.is_none(),
            replaced: Vec::new(),
            other_admins: Vec::new(),
        };
        for v in current.map(|r| r.values.clone()).unwrap_or_default() {
            if layout.iter().any(|l| l.index == v.index) {
                repair.replaced.push(v);
            } else {
                if v.is_type(types::HS_ADMIN) {
                    repair.other_admins.push(v.clone());
                }
                values.push(v);
            }
        }
        values.extend(layout.iter().cloned());
        validate_values(&values)?;
        Ok::<_, ResolveError>(Mutation::Put(Record {
            handle: current.map_or_else(|| na.as_str().to_string(), |r| r.handle.clone()),
            values: sorted(values),
        }))
    })?;
    Ok(repair)
}

/// The administrator [`init_prefix`] gives a prefix, stamped now.
fn admin_layout(
    prefix: &Prefix,
    admin_index: u32,
    secret: &[u8],
) -> Result<Vec<HandleValue>, ResolveError> {
    use crate::model::{AdminRef, ValueList, ValuePermissions, ValueReference};
    if admin_index == 0
        || admin_index == 100
        || admin_index == 200
        || admin_index > crate::model::value::MAX_INDEX
    {
        return Err(ResolveError::InvalidValue(
            "the admin index must be positive and not 100 or 200".into(),
        ));
    }
    if secret.is_empty() {
        return Err(ResolveError::InvalidValue(
            "the admin secret is empty".into(),
        ));
    }
    let na = prefix.na_handle();
    let mut values = vec![
        HandleValue::new(
            100,
            types::HS_ADMIN,
            AdminRef {
                permissions: AdminPermissions::ALL,
                admin: ValueReference {
                    handle: na.as_str().to_string(),
                    index: 200,
                },
            }
            .encode(),
        ),
        HandleValue::new(
            200,
            types::HS_VLIST,
            ValueList(vec![ValueReference {
                handle: na.as_str().to_string(),
                index: admin_index,
            }])
            .encode(),
        ),
        HandleValue::new(admin_index, types::HS_SECKEY, secret.to_vec())
            .with_permissions(ValuePermissions::ADMIN_ONLY),
    ];
    stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
    Ok(values)
}
