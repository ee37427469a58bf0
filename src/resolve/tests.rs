use std::sync::Arc;

use super::*;
use crate::model::{
    types, AdminPermissions, AdminRef, ResponseCode, ValuePermissions, ValueReference,
};
use crate::store::{Mutation, Record, Registry, StoreOptions};

struct Node {
    _dir: tempfile::TempDir,
    engine: Engine,
    owner: Identity,
    other: Identity,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    for p in ["88.100.1", "88.200.2"] {
        init_prefix(
            &reg,
            &Prefix::parse(p).unwrap(),
            300,
            format!("secret-{p}").as_bytes(),
        )
        .unwrap();
    }
    let engine = Engine::new(reg, Policy::default());
    let owner = engine
        .authenticate_secret(
            &engine.parse_handle("0.NA/88.100.1").unwrap(),
            300,
            b"secret-88.100.1",
        )
        .unwrap();
    let other = engine
        .authenticate_secret(
            &engine.parse_handle("0.NA/88.200.2").unwrap(),
            300,
            b"secret-88.200.2",
        )
        .unwrap();
    Node {
        _dir: dir,
        engine,
        owner,
        other,
    }
}

fn q(engine: &Engine, h: &str) -> Query {
    Query {
        handle: engine.parse_handle(h).unwrap(),
        indexes: vec![],
        types: vec![],
        public_only: true,
        refer: true,
    }
}

fn url(i: u32, u: &str) -> HandleValue {
    HandleValue::new(i, types::URL, u)
}

#[test]
fn init_prefix_is_idempotent_and_validated() {
    let n = node();
    let reg = n.engine.registry();
    let p = Prefix::parse("88.100.1").unwrap();
    assert!(!init_prefix(reg, &p, 300, b"again").unwrap());
    // The original secret still works; the new one was not written.
    assert!(n
        .engine
        .authenticate_secret(&p.na_handle(), 300, b"secret-88.100.1")
        .is_ok());
    assert!(init_prefix(reg, &p, 200, b"x").is_err());
    assert!(init_prefix(reg, &p, 300, b"").is_err());
}

#[test]
fn resolution_codes_and_filters() {
    let n = node();
    let e = &n.engine;
    let h = e.parse_handle("88.100.1/SN-1").unwrap();
    let values = vec![
        url(1, "https://a"),
        HandleValue::new(
            2,
            "HS_SITE.PREFIX",
            crate::model::SiteInfo {
                data_format_version: 1,
                protocol_major: 2,
                protocol_minor: 11,
                serial: 1,
                primary_mask: 0x80,
                hash_option: 2,
                hash_filter: vec![],
                attributes: vec![],
                servers: vec![],
            }
            .encode(),
        ),
        HandleValue::new(3, "EMAIL", "a@b").with_permissions(ValuePermissions::ADMIN_ONLY),
    ];
    let out = e.create(&n.owner, &h, values, Overwrite::No).unwrap();
    assert!(out.created);
    // Whole record, public only.
    let r = e.resolve(&q(e, "88.100.1/SN-1"), None).unwrap();
    assert_eq!(r.values.iter().map(|v| v.index).collect::<Vec<_>>(), [1, 2]);
    assert!(r.values.iter().all(|v| v.timestamp > 0));
    // Type family and index union.
    let mut query = q(e, "88.100.1/SN-1");
    query.types = vec!["hs_site.".into()];
    query.indexes = vec![1];
    assert_eq!(e.resolve(&query, None).unwrap().values.len(), 2);
    // 200: exists but nothing selected; 100: no such handle; 301: not homed here.
    query.types = vec!["DESC".into()];
    query.indexes = vec![];
    assert_eq!(
        e.resolve(&query, None).unwrap_err().code(),
        ResponseCode::ValuesNotFound
    );
    assert_eq!(
        e.resolve(&q(e, "88.100.1/none"), None).unwrap_err().code(),
        ResponseCode::HandleNotFound
    );
    assert_eq!(
        e.resolve(&q(e, "99.1/x"), None).unwrap_err().code(),
        ResponseCode::ServerNotResponsible
    );
    // Non-public values: anonymous → 402, a stranger → 401, the owner → the values.
    let mut admin_read = q(e, "88.100.1/SN-1");
    admin_read.public_only = false;
    admin_read.indexes = vec![3];
    assert_eq!(
        e.resolve(&admin_read, None).unwrap_err().code(),
        ResponseCode::AuthenticationNeeded
    );
    assert_eq!(
        e.resolve(&admin_read, Some(&n.other)).unwrap_err().code(),
        ResponseCode::InsufficientPermissions
    );
    assert_eq!(
        e.resolve(&admin_read, Some(&n.owner)).unwrap().values[0].index,
        3
    );
    // The prefix handle's secret is never public.
    let na = e.resolve(&q(e, "0.NA/88.100.1"), None).unwrap();
    assert!(na.values.iter().all(|v| !v.is_type(types::HS_SECKEY)));
}

#[test]
fn create_authorization_per_prefix() {
    let n = node();
    let e = &n.engine;
    let h = e.parse_handle("88.100.1/X").unwrap();
    let err = e
        .create(&n.other, &h, vec![url(1, "u")], Overwrite::No)
        .unwrap_err();
    assert_eq!(err.code(), ResponseCode::InvalidAdmin);
    assert!(e.registry().get(&h).unwrap().is_none());
    e.create(&n.owner, &h, vec![url(1, "u")], Overwrite::No)
        .unwrap();
    let err = e
        .create(&n.owner, &h, vec![url(1, "v")], Overwrite::No)
        .unwrap_err();
    assert_eq!(err.code(), ResponseCode::HandleAlreadyExists);
    // Replace: allowed for the owner (prefix admin), answers "not created".
    let out = e
        .create(&n.owner, &h, vec![url(1, "v")], Overwrite::Yes)
        .unwrap();
    assert!(!out.created);
    // Another prefix's admin can neither replace nor delete nor change it.
    assert_eq!(
        e.create(&n.other, &h, vec![], Overwrite::Yes)
            .unwrap_err()
            .code(),
        ResponseCode::InvalidAdmin
    );
    assert_eq!(
        e.delete(&n.other, &h).unwrap_err().code(),
        ResponseCode::InvalidAdmin
    );
    assert_eq!(
        e.add_values(&n.other, &h, vec![url(2, "x")], true)
            .unwrap_err()
            .code(),
        ResponseCode::InvalidAdmin
    );
    assert_eq!(e.registry().get(&h).unwrap().unwrap().values.len(), 1);
    // Writes to prefixes this node does not home: 301.
    let elsewhere = e.parse_handle("88.300.3/X").unwrap();
    assert_eq!(
        e.create(&n.owner, &elsewhere, vec![], Overwrite::No)
            .unwrap_err()
            .code(),
        ResponseCode::ServerNotResponsible
    );
}

#[test]
fn value_operations() {
    let n = node();
    let e = &n.engine;
    let h = e.parse_handle("88.100.1/V").unwrap();
    e.create(&n.owner, &h, vec![url(1, "u")], Overwrite::No)
        .unwrap();
    // add without overwrite: new index ok (created), existing index → 201
    assert!(
        e.add_values(&n.owner, &h, vec![url(2, "w")], false)
            .unwrap()
            .created
    );
    assert_eq!(
        e.add_values(&n.owner, &h, vec![url(2, "w")], false)
            .unwrap_err()
            .code(),
        ResponseCode::ValueAlreadyExists
    );
    // add with overwrite replaces → not "created"
    assert!(
        !e.add_values(&n.owner, &h, vec![url(2, "w2")], true)
            .unwrap()
            .created
    );
    // modify needs existing indexes
    assert_eq!(
        e.modify_values(&n.owner, &h, vec![url(9, "z")])
            .unwrap_err()
            .code(),
        ResponseCode::ValuesNotFound
    );
    e.modify_values(&n.owner, &h, vec![url(1, "u2")]).unwrap();
    // remove needs existing indexes, and is all-or-nothing
    assert_eq!(
        e.remove_values(&n.owner, &h, &[2, 9]).unwrap_err().code(),
        ResponseCode::ValuesNotFound
    );
    e.remove_values(&n.owner, &h, &[2]).unwrap();
    let rec = e.registry().get(&h).unwrap().unwrap();
    assert_eq!(rec.values.len(), 1);
    assert_eq!(rec.values[0].data_str(), Some("u2"));
    // invalid values are refused with 202 and change nothing
    let bad = e
        .add_values(
            &n.owner,
            &h,
            vec![HandleValue::new(5, types::HS_ADMIN, vec![0])],
            true,
        )
        .unwrap_err();
    assert_eq!(bad.code(), ResponseCode::InvalidValue);
    e.delete(&n.owner, &h).unwrap();
    assert_eq!(
        e.delete(&n.owner, &h).unwrap_err().code(),
        ResponseCode::HandleNotFound
    );
}

#[test]
fn handle_level_admin_bits_are_enforced() {
    let n = node();
    let e = &n.engine;
    // A handle administered by a limited admin identity.
    let keyholder = e.parse_handle("88.100.1/editor").unwrap();
    e.create(
        &n.owner,
        &keyholder,
        vec![HandleValue::new(300, types::HS_SECKEY, "ed")
            .with_permissions(ValuePermissions::ADMIN_ONLY)],
        Overwrite::No,
    )
    .unwrap();
    let editor = e.authenticate_secret(&keyholder, 300, b"ed").unwrap();
    let h = e.parse_handle("88.100.1/doc").unwrap();
    let limited = AdminRef {
        permissions: AdminPermissions(AdminPermissions::ADD_VALUE | AdminPermissions::MODIFY_VALUE),
        admin: ValueReference {
            handle: "88.100.1/editor".into(),
            index: 300,
        },
    };
    e.create(
        &n.owner,
        &h,
        vec![
            url(1, "u"),
            HandleValue::new(100, types::HS_ADMIN, limited.encode()),
        ],
        Overwrite::No,
    )
    .unwrap();
    // The editor can add and modify values...
    e.add_values(&editor, &h, vec![url(2, "x")], false).unwrap();
    e.modify_values(&editor, &h, vec![url(1, "u2")]).unwrap();
    // ...but not remove them, touch the admin value, or delete the handle.
    assert_eq!(
        e.remove_values(&editor, &h, &[2]).unwrap_err().code(),
        ResponseCode::InvalidAdmin
    );
    let grab = AdminRef {
        permissions: AdminPermissions::ALL,
        admin: limited.admin.clone(),
    };
    assert_eq!(
        e.modify_values(
            &editor,
            &h,
            vec![HandleValue::new(100, types::HS_ADMIN, grab.encode())]
        )
        .unwrap_err()
        .code(),
        ResponseCode::InvalidAdmin
    );
    assert_eq!(
        e.delete(&editor, &h).unwrap_err().code(),
        ResponseCode::InvalidAdmin
    );
    // The editor cannot create handles under the prefix either.
    let new = e.parse_handle("88.100.1/new").unwrap();
    assert_eq!(
        e.create(&editor, &new, vec![], Overwrite::No)
            .unwrap_err()
            .code(),
        ResponseCode::InvalidAdmin
    );
}

#[test]
fn prefix_handles_and_listing() {
    let n = node();
    let e = &n.engine;
    // The 88.100.1 admin may create derived prefix handles below it, not beside it.
    let child = e.parse_handle("0.NA/88.100.1.7").unwrap();
    e.create(
        &n.owner,
        &child,
        vec![HandleValue::new(1, "DESC", "workshop 7")],
        Overwrite::No,
    )
    .unwrap();
    let sibling = e.parse_handle("0.NA/88.200.2.7").unwrap();
    assert_eq!(
        e.create(&n.owner, &sibling, vec![], Overwrite::No)
            .unwrap_err()
            .code(),
        ResponseCode::InvalidAdmin
    );
    for i in 0..3 {
        let h = e.parse_handle(&format!("88.100.1/L{i}")).unwrap();
        e.create(&n.owner, &h, vec![], Overwrite::No).unwrap();
    }
    let p = Prefix::parse("88.100.1").unwrap();
    assert_eq!(e.list_handles(&n.owner, &p, None).unwrap().0, 3);
    assert_eq!(
        e.list_handles(&n.other, &p, None).unwrap_err().code(),
        ResponseCode::InvalidAdmin
    );
    let homed: Vec<String> = e
        .homed_prefixes()
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(homed, ["88.100.1", "88.200.2"]);
}

#[test]
fn server_admins_have_every_right() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    reg.home_prefix(&Prefix::parse("88").unwrap()).unwrap();
    let root = Identity {
        handle: Handle::parse("0.NA/88", SuffixCase::Sensitive).unwrap(),
        index: 300,
    };
    let e = Engine::new(
        reg,
        Policy {
            server_admins: vec![root.clone()],
            ..Policy::default()
        },
    );
    let na = e.parse_handle("0.NA/88.100").unwrap();
    e.create(
        &root,
        &na,
        vec![HandleValue::new(1, "DESC", "secondary")],
        Overwrite::No,
    )
    .unwrap();
    let stranger = Identity {
        handle: e.parse_handle("0.NA/88").unwrap(),
        index: 301,
    };
    assert_eq!(
        e.delete(&stranger, &na).unwrap_err().code(),
        ResponseCode::InvalidAdmin
    );
    e.delete(&root, &na).unwrap();
}

#[test]
fn mint_makes_fresh_suffixes() {
    let n = node();
    let a = n.engine.mint_handle("88.100.1/").unwrap();
    let b = n.engine.mint_handle("88.100.1").unwrap();
    assert_ne!(a, b);
    assert_eq!(a.prefix().as_str(), "88.100.1");
    assert_eq!(a.suffix().len(), 32);
}

fn site_value(index: u32, type_name: &str) -> HandleValue {
    let site = crate::model::SiteInfo {
        data_format_version: 1,
        protocol_major: 2,
        protocol_minor: 11,
        serial: 1,
        primary_mask: 0x80,
        hash_option: 2,
        hash_filter: vec![],
        attributes: vec![],
        servers: vec![],
    };
    HandleValue::new(index, type_name, site.encode())
}

#[test]
fn prefix_referrals_from_the_delegating_ancestor() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    let top = Prefix::parse("88").unwrap();
    init_prefix(&reg, &top, 300, b"root").unwrap();
    let e = Engine::new(reg, Policy::default());
    let root = e
        .authenticate_secret(&top.na_handle(), 300, b"root")
        .unwrap();
    // The top-level operator delegates 88.100 to a secondary node.
    let na = e.parse_handle("0.NA/88.100").unwrap();
    e.create(
        &root,
        &na,
        vec![
            site_value(1, "HS_SITE.PREFIX"),
            HandleValue::new(2, "DESC", "industry"),
        ],
        Overwrite::No,
    )
    .unwrap();
    // 0.NA/88.100 itself is stored: its record.
    assert_eq!(
        e.resolve(&q(&e, "0.NA/88.100"), None).unwrap().values.len(),
        2
    );
    // 0.NA/88.100.1 is not: 303 with the delegation values (public ones only).
    let f = e.resolve(&q(&e, "0.NA/88.100.1"), None).unwrap_err();
    assert_eq!(f.code(), ResponseCode::PrefixReferral);
    assert_eq!(f.referral().len(), 1);
    assert!(f.referral()[0].is_type("HS_SITE.PREFIX"));
    // Deeper descendants find the same ancestor; DNRF (refer = false) gives 100.
    assert_eq!(
        e.resolve(&q(&e, "0.NA/88.100.1.5"), None)
            .unwrap_err()
            .code(),
        ResponseCode::PrefixReferral
    );
    let mut no_refer = q(&e, "0.NA/88.100.1");
    no_refer.refer = false;
    assert_eq!(
        e.resolve(&no_refer, None).unwrap_err().code(),
        ResponseCode::HandleNotFound
    );
    // Without a delegation: 100; outside what the node homes: 301.
    assert_eq!(
        e.resolve(&q(&e, "0.NA/88.200"), None).unwrap_err().code(),
        ResponseCode::HandleNotFound
    );
    assert_eq!(
        e.resolve(&q(&e, "0.NA/99.1"), None).unwrap_err().code(),
        ResponseCode::ServerNotResponsible
    );
}

#[test]
fn partitions_answer_301_for_other_servers_handles() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    let p = Prefix::parse("88.100.1").unwrap();
    init_prefix(&reg, &p, 300, b"pw").unwrap();
    let part = Partition {
        index: 0,
        count: 2,
        hash_option: 2,
    };
    let e = Engine::new(
        reg,
        Policy {
            partition: Some(part),
            ..Policy::default()
        },
    );
    let owner = e.authenticate_secret(&p.na_handle(), 300, b"pw").unwrap();
    let (mine, theirs): (Vec<Handle>, Vec<Handle>) = (0..20)
        .map(|i| e.parse_handle(&format!("88.100.1/P-{i}")).unwrap())
        .partition(|h| part.server_of(h) == 0);
    assert!(!mine.is_empty() && !theirs.is_empty());
    for h in &mine {
        e.create(
            &owner,
            h,
            vec![HandleValue::new(1, "URL", "u")],
            Overwrite::No,
        )
        .unwrap();
        assert!(e.in_partition(h));
    }
    for h in &theirs {
        let f = e.create(&owner, h, vec![], Overwrite::No).unwrap_err();
        assert_eq!(
            (f.code(), f.to_string().as_str()),
            (
                ResponseCode::ServerNotResponsible,
                "Request was hashed incorrectly"
            )
        );
        assert_eq!(
            e.resolve(&q(&e, h.as_str()), None).unwrap_err().code(),
            ResponseCode::ServerNotResponsible
        );
    }
}

fn admin_value(index: u32, perms: u16, handle: &str, admin_index: u32) -> HandleValue {
    HandleValue::new(
        index,
        types::HS_ADMIN,
        AdminRef {
            permissions: AdminPermissions(perms),
            admin: ValueReference {
                handle: handle.into(),
                index: admin_index,
            },
        }
        .encode(),
    )
}

fn group(index: u32, members: &[(&str, u32)]) -> HandleValue {
    HandleValue::new(
        index,
        types::HS_VLIST,
        crate::model::ValueList(
            members
                .iter()
                .map(|(h, i)| ValueReference {
                    handle: h.to_string(),
                    index: *i,
                })
                .collect(),
        )
        .encode(),
    )
}

/// The escalation: the owner gives an editor identity MODIFY_VALUE | ADD_VALUE on the
/// prefix handle (to keep its descriptive values current). The editor then tried to rewrite
/// the HS_VLIST group that HS_ADMIN 100 points to, to join it, to plant a key, to overwrite the
/// owner's secret — and with the group, to delete handles and lock the owner out.
#[test]
fn hole4_limited_admin_cannot_rewrite_the_admin_group() {
    let n = node();
    let e = &n.engine;
    let na = e.parse_handle("0.NA/88.100.1").unwrap();
    let editor_handle = e.parse_handle("88.100.1/editor").unwrap();
    e.create(
        &n.owner,
        &editor_handle,
        vec![HandleValue::new(300, types::HS_SECKEY, "ed")],
        Overwrite::No,
    )
    .unwrap();
    let editor = e.authenticate_secret(&editor_handle, 300, b"ed").unwrap();
    e.add_values(
        &n.owner,
        &na,
        vec![
            admin_value(
                101,
                AdminPermissions::MODIFY_VALUE | AdminPermissions::ADD_VALUE,
                "88.100.1/editor",
                300,
            ),
            HandleValue::new(2, "DESC", "prefix of the pump works"),
        ],
        false,
    )
    .unwrap();
    let victim = e.parse_handle("88.100.1/SN-1").unwrap();
    e.create(&n.owner, &victim, vec![url(1, "u")], Overwrite::No)
        .unwrap();

    // What the editor may do: change ordinary values.
    e.modify_values(&editor, &na, vec![HandleValue::new(2, "DESC", "pumps")])
        .unwrap();
    e.add_values(
        &editor,
        &na,
        vec![HandleValue::new(3, "EMAIL", "a@b")],
        false,
    )
    .unwrap();

    // Join the group HS_ADMIN 100 names.
    let joined = group(200, &[("0.NA/88.100.1", 300), ("88.100.1/editor", 300)]);
    let refused = |r: Result<WriteOutcome, ResolveError>| {
        assert_eq!(r.unwrap_err().code(), ResponseCode::InvalidAdmin);
    };
    refused(e.modify_values(&editor, &na, vec![joined.clone()]));
    refused(e.add_values(&editor, &na, vec![joined], true));
    // Plant a new group, a new key, or turn an ordinary value into a group.
    refused(e.add_values(
        &editor,
        &na,
        vec![group(201, &[("88.100.1/editor", 300)])],
        false,
    ));
    refused(e.add_values(
        &editor,
        &na,
        vec![HandleValue::new(301, types::HS_SECKEY, "mine")],
        false,
    ));
    refused(e.modify_values(&editor, &na, vec![group(3, &[("88.100.1/editor", 300)])]));
    // Overwrite the owner's secret.
    refused(e.modify_values(
        &editor,
        &na,
        vec![HandleValue::new(300, types::HS_SECKEY, "owned")],
    ));
    refused(e.remove_values(&editor, &na, &[200]));

    // Nothing changed: the owner still logs in, the editor still cannot delete handles.
    assert!(e.authenticate_secret(&na, 300, b"secret-88.100.1").is_ok());
    assert_eq!(
        e.delete(&editor, &victim).unwrap_err().code(),
        ResponseCode::InvalidAdmin
    );
    e.delete(&n.owner, &victim).unwrap();
}

#[test]
fn hole4_admin_values_include_what_hs_admin_references() {
    let h = Handle::parse("88.100.1/doc", SuffixCase::Sensitive).unwrap();
    let values = vec![
        url(1, "u"),
        // HS_ADMIN → 5 (a group of this handle) → 6 (whatever it holds now).
        admin_value(100, AdminPermissions::ALL.0, "88.100.1/doc", 5),
        group(5, &[("88.100.1/doc", 6), ("0.NA/88.100.1", 300)]),
        url(6, "not a key yet"),
        HandleValue::new(7, types::HS_PUBKEY, vec![0, 0]),
    ];
    let mut admin: Vec<u32> = crate::auth::admin_value_indexes(&h, &values, SuffixCase::Sensitive)
        .into_iter()
        .collect();
    admin.sort();
    assert_eq!(admin, [5, 6, 7, 100]);
}

#[test]
fn hole4_a_prefix_keeps_an_administrator() {
    let n = node();
    let e = &n.engine;
    let na = e.parse_handle("0.NA/88.100.1").unwrap();
    let invalid = |r: Result<WriteOutcome, ResolveError>| {
        let f = r.unwrap_err();
        assert_eq!(f.code(), ResponseCode::InvalidValue, "{f}");
        assert!(f.to_string().contains("administrator"), "{f}");
    };
    invalid(e.remove_values(&n.owner, &na, &[100]));
    invalid(e.remove_values(&n.owner, &na, &[300]));
    invalid(e.modify_values(&n.owner, &na, vec![group(200, &[])]));
    // A group naming an identity that has no key on this node is no administrator either.
    invalid(e.modify_values(&n.owner, &na, vec![group(200, &[("88.100.1/nobody", 300)])]));
    // Nor is one whose HS_ADMIN cannot repair admin values.
    invalid(e.modify_values(
        &n.owner,
        &na,
        vec![admin_value(
            100,
            AdminPermissions::ADD_HANDLE,
            "0.NA/88.100.1",
            200,
        )],
    ));
    invalid(e.create(&n.owner, &na, vec![url(1, "u")], Overwrite::Yes));
    // Deleting the prefix handle of a homed prefix is refused, even for a server admin.
    let f = e.delete(&n.owner, &na).unwrap_err();
    assert_eq!(f.code(), ResponseCode::InvalidValue);
    let server_admin = Engine::new(
        e.registry().clone(),
        Policy {
            server_admins: vec![n.owner.clone()],
            ..Policy::default()
        },
    );
    assert_eq!(
        server_admin.delete(&n.owner, &na).unwrap_err().code(),
        ResponseCode::InvalidValue
    );
    assert!(e.authenticate_secret(&na, 300, b"secret-88.100.1").is_ok());
    // Handing over works: a second key, the group moved to it, the first key removed.
    e.add_values(
        &n.owner,
        &na,
        vec![HandleValue::new(301, types::HS_SECKEY, "next")],
        false,
    )
    .unwrap();
    e.modify_values(&n.owner, &na, vec![group(200, &[("0.NA/88.100.1", 301)])])
        .unwrap();
    // The old key is no administrator any more; the new one removes it.
    let next = e.authenticate_secret(&na, 301, b"next").unwrap();
    e.remove_values(&next, &na, &[300]).unwrap();
    invalid(e.remove_values(&next, &na, &[301]));
    // Derived prefix handles this node stores for others (not homed here) are administered by
    // the parent's admins and may be bare.
    let child = e.parse_handle("0.NA/88.100.1.7").unwrap();
    e.create(&next, &child, vec![url(1, "u")], Overwrite::No)
        .unwrap();
    e.delete(&next, &child).unwrap();
}

#[test]
fn hole4_last_handle_admin_needs_prefix_admins() {
    let n = node();
    let e = &n.engine;
    let h = e.parse_handle("88.100.1/own").unwrap();
    let own_admin = admin_value(100, AdminPermissions::ALL.0, "0.NA/88.100.1", 200);
    e.create(
        &n.owner,
        &h,
        vec![url(1, "u"), own_admin.clone()],
        Overwrite::No,
    )
    .unwrap();
    // With prefix admins on (the default), the handle stays administered without its own.
    e.remove_values(&n.owner, &h, &[100]).unwrap();
    e.add_values(&n.owner, &h, vec![own_admin], false).unwrap();
    let strict = Engine::new(
        e.registry().clone(),
        Policy {
            allow_prefix_admins: false,
            ..Policy::default()
        },
    );
    let f = strict.remove_values(&n.owner, &h, &[100]).unwrap_err();
    assert_eq!(f.code(), ResponseCode::InvalidValue, "{f}");
    assert!(f.to_string().contains("allow_prefix_admins"), "{f}");
    // Deleting the handle itself is still allowed.
    strict.delete(&n.owner, &h).unwrap();
}

#[test]
fn hole4_init_prefix_force_repairs_a_prefix_handle() {
    let n = node();
    let e = &n.engine;
    let reg = e.registry();
    let p = Prefix::parse("88.100.1").unwrap();
    let na = p.na_handle();
    // A prefix handle taken over the way the issue describes: the group rewritten, the owner's
    // secret replaced, an extra HS_ADMIN planted.
    let broken = vec![
        admin_value(100, AdminPermissions::ALL.0, "0.NA/88.100.1", 200),
        admin_value(101, AdminPermissions::ALL.0, "88.200.2/intruder", 300),
        HandleValue::new(2, "DESC", "keep me"),
        group(200, &[("88.200.2/intruder", 300)]),
        HandleValue::new(300, types::HS_SECKEY, "stolen"),
    ];
    reg.mutate::<ResolveError, _>(&na, |_| {
        Ok(Mutation::Put(Record {
            handle: na.as_str().into(),
            values: broken.clone(),
        }))
    })
    .unwrap();
    assert!(e.authenticate_secret(&na, 300, b"secret-88.100.1").is_err());
    let repair = repair_prefix(reg, &p, 300, b"restored").unwrap();
    assert!(!repair.created);
    let mut replaced: Vec<u32> = repair.replaced.iter().map(|v| v.index).collect();
    replaced.sort();
    assert_eq!(replaced, [100, 200, 300]);
    assert_eq!(repair.other_admins.len(), 1);
    assert_eq!(repair.other_admins[0].index, 101);
    let owner = e.authenticate_secret(&na, 300, b"restored").unwrap();
    let rec = reg.get(&na).unwrap().unwrap();
    assert_eq!(rec.value(2).and_then(|v| v.data_str()), Some("keep me"));
    assert_eq!(
        rec.value(300).map(|v| v.permissions),
        Some(ValuePermissions::ADMIN_ONLY)
    );
    // The restored owner administers the prefix again.
    let h = e.parse_handle("88.100.1/after-repair").unwrap();
    e.create(&owner, &h, vec![url(1, "u")], Overwrite::No)
        .unwrap();
    // A missing prefix handle is created.
    let fresh = Prefix::parse("88.300.3").unwrap();
    assert!(repair_prefix(reg, &fresh, 300, b"x").unwrap().created);
}

#[test]
fn hole9_admin_write_bit_is_enforced() {
    let n = node();
    let e = &n.engine;
    let h = e.parse_handle("88.100.1/frozen").unwrap();
    // "1010": admins may read, nobody may write.
    let frozen = url(2, "fixed").with_permissions(ValuePermissions(0x0A));
    e.create(
        &n.owner,
        &h,
        vec![url(1, "u"), frozen.clone()],
        Overwrite::No,
    )
    .unwrap();
    let denied = |r: Result<WriteOutcome, ResolveError>| {
        let f = r.unwrap_err();
        assert_eq!(f.code(), ResponseCode::InsufficientPermissions, "{f}");
    };
    denied(e.modify_values(&n.owner, &h, vec![url(2, "changed")]));
    denied(e.add_values(&n.owner, &h, vec![url(2, "changed")], true));
    denied(e.remove_values(&n.owner, &h, &[2]));
    denied(e.create(&n.owner, &h, vec![url(1, "u")], Overwrite::Yes));
    // Changing its permissions is a modification too.
    denied(e.modify_values(
        &n.owner,
        &h,
        vec![frozen.clone().with_permissions(ValuePermissions::DEFAULT)],
    ));
    // Other values of the record stay writable; a replace that keeps it as it is passes.
    e.modify_values(&n.owner, &h, vec![url(1, "u2")]).unwrap();
    e.create(
        &n.owner,
        &h,
        vec![url(1, "u3"), frozen.clone()],
        Overwrite::Yes,
    )
    .unwrap();
    assert_eq!(
        e.registry()
            .get(&h)
            .unwrap()
            .unwrap()
            .value(2)
            .and_then(|v| v.data_str()),
        Some("fixed")
    );
    // Server administrators are the exception; deleting the handle is DELETE_HANDLE's matter.
    let server_admin = Engine::new(
        e.registry().clone(),
        Policy {
            server_admins: vec![n.other.clone()],
            ..Policy::default()
        },
    );
    server_admin
        .modify_values(&n.other, &h, vec![url(2, "by the operator")])
        .unwrap();
    e.delete(&n.owner, &h).unwrap();
}

#[test]
fn admin_read_bit_hides_values_from_administrators() {
    let n = node();
    let e = &n.engine;
    let h = e.parse_handle("88.100.1/hidden").unwrap();
    e.create(
        &n.owner,
        &h,
        vec![
            url(1, "u"),
            // "0100": not public, not readable by admins.
            url(2, "write-only").with_permissions(ValuePermissions(0x04)),
            url(3, "admin").with_permissions(ValuePermissions::ADMIN_ONLY),
        ],
        Overwrite::No,
    )
    .unwrap();
    let mut query = q(e, "88.100.1/hidden");
    query.public_only = false;
    let got: Vec<u32> = e
        .resolve(&query, Some(&n.owner))
        .unwrap()
        .values
        .iter()
        .map(|v| v.index)
        .collect();
    assert_eq!(got, [1, 3]);
    query.indexes = vec![2];
    assert_eq!(
        e.resolve(&query, Some(&n.owner)).unwrap_err().code(),
        ResponseCode::ValuesNotFound
    );
}

#[test]
fn hole5_secrets_are_never_served_to_anonymous_readers() {
    let n = node();
    let e = &n.engine;
    let h = e.parse_handle("88.100.1/device").unwrap();
    // Written without explicit permissions: admin-only.
    assert_eq!(
        HandleValue::new(300, types::HS_SECKEY, "s").permissions,
        ValuePermissions::ADMIN_ONLY
    );
    e.create(
        &n.owner,
        &h,
        vec![
            url(1, "u"),
            // Stored with public read (an explicit "1110", or a record from before the
            // admin-only default): still withheld from anonymous readers.
            HandleValue::new(300, types::HS_SECKEY, "device-secret")
                .with_permissions(ValuePermissions::DEFAULT),
            HandleValue::new(301, types::HS_PRIVKEY, "private-key")
                .with_permissions(ValuePermissions::DEFAULT),
        ],
        Overwrite::No,
    )
    .unwrap();
    let public = e.resolve(&q(e, "88.100.1/device"), None).unwrap();
    assert_eq!(
        public.values.iter().map(|v| v.index).collect::<Vec<_>>(),
        [1]
    );
    let mut by_type = q(e, "88.100.1/device");
    by_type.types = vec!["HS_SECKEY".into()];
    assert_eq!(
        e.resolve(&by_type, None).unwrap_err().code(),
        ResponseCode::ValuesNotFound
    );
    // Without PO an anonymous reader is asked to authenticate; an administrator reads them.
    by_type.public_only = false;
    assert_eq!(
        e.resolve(&by_type, None).unwrap_err().code(),
        ResponseCode::AuthenticationNeeded
    );
    assert_eq!(e.resolve(&by_type, Some(&n.owner)).unwrap().values.len(), 1);
    // The secret still authenticates.
    assert!(e.authenticate_secret(&h, 300, b"device-secret").is_ok());
}
