use super::*;
use crate::model::{AdminPermissions, ValuePermissions};
use crate::store::{Mutation, Record, StoreOptions};

fn h(s: &str) -> Handle {
    Handle::parse(s, SuffixCase::Sensitive).unwrap()
}

fn admin(idx: u32, handle: &str, index: u32, perms: u16) -> HandleValue {
    HandleValue::new(
        idx,
        types::HS_ADMIN,
        AdminRef {
            permissions: AdminPermissions(perms),
            admin: ValueReference {
                handle: handle.into(),
                index,
            },
        }
        .encode(),
    )
}

fn vlist(idx: u32, members: &[(&str, u32)]) -> HandleValue {
    let list = ValueList(
        members
            .iter()
            .map(|(h, i)| ValueReference {
                handle: h.to_string(),
                index: *i,
            })
            .collect(),
    );
    HandleValue::new(idx, types::HS_VLIST, list.encode())
}

fn seckey(idx: u32, secret: &str) -> HandleValue {
    HandleValue::new(idx, types::HS_SECKEY, secret).with_permissions(ValuePermissions::ADMIN_ONLY)
}

fn put(reg: &Registry, handle: &str, values: Vec<HandleValue>) {
    let rec = Record {
        handle: handle.into(),
        values,
    };
    reg.mutate::<StoreError, _>(&h(handle), |_| Ok(Mutation::Put(rec)))
        .unwrap();
}

fn setup() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    put(
        &reg,
        "0.NA/88.100.1",
        vec![
            admin(100, "0.NA/88.100.1", 200, 0x0FFF),
            vlist(200, &[("0.NA/88.100.1", 300), ("88.100.1/ops", 0)]),
            seckey(300, "s3cret"),
        ],
    );
    put(
        &reg,
        "88.100.1/ops",
        vec![
            seckey(301, "ops-key"),
            vlist(400, &[("88.100.1/group2", 5)]),
        ],
    );
    put(
        &reg,
        "0.NA/88.200.2",
        vec![
            admin(100, "0.NA/88.200.2", 300, 0x0FFF),
            seckey(300, "other"),
        ],
    );
    // A cycle of groups that never reaches anyone.
    put(
        &reg,
        "88.100.1/loop",
        vec![
            vlist(1, &[("88.100.1/loop", 2)]),
            vlist(2, &[("88.100.1/loop", 1)]),
        ],
    );
    (dir, reg)
}

#[test]
fn secret_authentication() {
    let (_d, reg) = setup();
    let id = authenticate_secret(&reg, &h("0.NA/88.100.1"), 300, b"s3cret").unwrap();
    assert_eq!(id.index, 300);
    assert!(matches!(
        authenticate_secret(&reg, &h("0.NA/88.100.1"), 300, b"wrong"),
        Err(AuthError::WrongSecret(_))
    ));
    assert!(matches!(
        authenticate_secret(&reg, &h("0.NA/88.100.1"), 200, b"s3cret"),
        Err(AuthError::NoSecretKey(_))
    ));
    assert!(matches!(
        authenticate_secret(&reg, &h("0.NA/88.999"), 300, b"s3cret"),
        Err(AuthError::UnknownIdentity(_))
    ));
    // Index 0 tries every HS_SECKEY and reports the one that matched.
    let id = authenticate_secret(&reg, &h("88.100.1/ops"), 0, b"ops-key").unwrap();
    assert_eq!(id.index, 301);
}

#[test]
fn admin_through_groups() {
    let (_d, reg) = setup();
    let auth = Authorizer {
        registry: &reg,
        case: SuffixCase::Sensitive,
    };
    let prefix_admins = reg.get(&h("0.NA/88.100.1")).unwrap().unwrap().values;
    let owner = Identity {
        handle: h("0.NA/88.100.1"),
        index: 300,
    };
    let ops = Identity {
        handle: h("88.100.1/ops"),
        index: 301,
    };
    let other = Identity {
        handle: h("0.NA/88.200.2"),
        index: 300,
    };
    let stranger = Identity {
        handle: h("0.NA/88.100.1"),
        index: 301,
    };
    let add = AdminPermissions::ADD_HANDLE;
    assert!(auth.grants(&prefix_admins, add, &owner).unwrap());
    // Group member by "any index" reference.
    assert!(auth.grants(&prefix_admins, add, &ops).unwrap());
    // Another prefix's admin, and an index not in the group, get nothing.
    assert!(!auth.grants(&prefix_admins, add, &other).unwrap());
    assert!(!auth.grants(&prefix_admins, add, &stranger).unwrap());
    // Permission bits must all be present.
    let limited = vec![admin(
        100,
        "0.NA/88.100.1",
        300,
        AdminPermissions::ADD_VALUE,
    )];
    assert!(auth
        .grants(&limited, AdminPermissions::ADD_VALUE, &owner)
        .unwrap());
    assert!(!auth
        .grants(&limited, AdminPermissions::ADD_VALUE | add, &owner)
        .unwrap());
    // Cycles terminate.
    let looping = vec![admin(100, "88.100.1/loop", 1, 0x0FFF)];
    assert!(!auth.grants(&looping, add, &owner).unwrap());
    // Garbage admin data grants nothing.
    let garbage = vec![HandleValue::new(100, types::HS_ADMIN, vec![1, 2, 3])];
    assert!(!auth.grants(&garbage, add, &owner).unwrap());
}

#[test]
fn nested_groups_are_followed() {
    let (_d, reg) = setup();
    put(
        &reg,
        "88.100.1/group2",
        vec![vlist(5, &[("88.100.1/deep", 7)])],
    );
    let auth = Authorizer {
        registry: &reg,
        case: SuffixCase::Sensitive,
    };
    let values = vec![admin(100, "88.100.1/ops", 400, 0x0FFF)];
    let deep = Identity {
        handle: h("88.100.1/deep"),
        index: 7,
    };
    assert!(auth
        .grants(&values, AdminPermissions::ADD_VALUE, &deep)
        .unwrap());
}
