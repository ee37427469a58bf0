use super::*;
use crate::model::{AdminRef, ValuePermissions, ValueReference};
use crate::store::StoreOptions;

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
        e.resolve(&query, None).unwrap_err().code,
        ResponseCode::ValuesNotFound
    );
    assert_eq!(
        e.resolve(&q(e, "88.100.1/none"), None).unwrap_err().code,
        ResponseCode::HandleNotFound
    );
    assert_eq!(
        e.resolve(&q(e, "99.1/x"), None).unwrap_err().code,
        ResponseCode::ServerNotResponsible
    );
    // Non-public values: anonymous → 402, a stranger → 401, the owner → the values.
    let mut admin_read = q(e, "88.100.1/SN-1");
    admin_read.public_only = false;
    admin_read.indexes = vec![3];
    assert_eq!(
        e.resolve(&admin_read, None).unwrap_err().code,
        ResponseCode::AuthenticationNeeded
    );
    assert_eq!(
        e.resolve(&admin_read, Some(&n.other)).unwrap_err().code,
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
    assert_eq!(err.code, ResponseCode::InvalidAdmin);
    assert!(e.registry().get(&h).unwrap().is_none());
    e.create(&n.owner, &h, vec![url(1, "u")], Overwrite::No)
        .unwrap();
    let err = e
        .create(&n.owner, &h, vec![url(1, "v")], Overwrite::No)
        .unwrap_err();
    assert_eq!(err.code, ResponseCode::HandleAlreadyExists);
    // Replace: allowed for the owner (prefix admin), answers "not created".
    let out = e
        .create(&n.owner, &h, vec![url(1, "v")], Overwrite::Yes)
        .unwrap();
    assert!(!out.created);
    // Another prefix's admin can neither replace nor delete nor change it.
    assert_eq!(
        e.create(&n.other, &h, vec![], Overwrite::Yes)
            .unwrap_err()
            .code,
        ResponseCode::InvalidAdmin
    );
    assert_eq!(
        e.delete(&n.other, &h).unwrap_err().code,
        ResponseCode::InvalidAdmin
    );
    assert_eq!(
        e.add_values(&n.other, &h, vec![url(2, "x")], true)
            .unwrap_err()
            .code,
        ResponseCode::InvalidAdmin
    );
    assert_eq!(e.registry().get(&h).unwrap().unwrap().values.len(), 1);
    // Writes to prefixes this node does not home: 301.
    let elsewhere = e.parse_handle("88.300.3/X").unwrap();
    assert_eq!(
        e.create(&n.owner, &elsewhere, vec![], Overwrite::No)
            .unwrap_err()
            .code,
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
            .code,
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
            .code,
        ResponseCode::ValuesNotFound
    );
    e.modify_values(&n.owner, &h, vec![url(1, "u2")]).unwrap();
    // remove needs existing indexes, and is all-or-nothing
    assert_eq!(
        e.remove_values(&n.owner, &h, &[2, 9]).unwrap_err().code,
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
    assert_eq!(bad.code, ResponseCode::InvalidValue);
    e.delete(&n.owner, &h).unwrap();
    assert_eq!(
        e.delete(&n.owner, &h).unwrap_err().code,
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
        e.remove_values(&editor, &h, &[2]).unwrap_err().code,
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
        .code,
        ResponseCode::InvalidAdmin
    );
    assert_eq!(
        e.delete(&editor, &h).unwrap_err().code,
        ResponseCode::InvalidAdmin
    );
    // The editor cannot create handles under the prefix either.
    let new = e.parse_handle("88.100.1/new").unwrap();
    assert_eq!(
        e.create(&editor, &new, vec![], Overwrite::No)
            .unwrap_err()
            .code,
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
            .code,
        ResponseCode::InvalidAdmin
    );
    for i in 0..3 {
        let h = e.parse_handle(&format!("88.100.1/L{i}")).unwrap();
        e.create(&n.owner, &h, vec![], Overwrite::No).unwrap();
    }
    let p = Prefix::parse("88.100.1").unwrap();
    assert_eq!(e.list_handles(&n.owner, &p, None).unwrap().0, 3);
    assert_eq!(
        e.list_handles(&n.other, &p, None).unwrap_err().code,
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
        e.delete(&stranger, &na).unwrap_err().code,
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
    assert_eq!(f.code, ResponseCode::PrefixReferral);
    assert_eq!(f.referral.len(), 1);
    assert!(f.referral[0].is_type("HS_SITE.PREFIX"));
    // Deeper descendants find the same ancestor; DNRF (refer = false) gives 100.
    assert_eq!(
        e.resolve(&q(&e, "0.NA/88.100.1.5"), None).unwrap_err().code,
        ResponseCode::PrefixReferral
    );
    let mut no_refer = q(&e, "0.NA/88.100.1");
    no_refer.refer = false;
    assert_eq!(
        e.resolve(&no_refer, None).unwrap_err().code,
        ResponseCode::HandleNotFound
    );
    // Without a delegation: 100; outside what the node homes: 301.
    assert_eq!(
        e.resolve(&q(&e, "0.NA/88.200"), None).unwrap_err().code,
        ResponseCode::HandleNotFound
    );
    assert_eq!(
        e.resolve(&q(&e, "0.NA/99.1"), None).unwrap_err().code,
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
            (f.code, f.message.as_str()),
            (
                ResponseCode::ServerNotResponsible,
                "Request was hashed incorrectly"
            )
        );
        assert_eq!(
            e.resolve(&q(&e, h.as_str()), None).unwrap_err().code,
            ResponseCode::ServerNotResponsible
        );
    }
}
