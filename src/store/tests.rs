//! Registry tests: operations, reopen durability, and a model-based property test against a
//! BTreeMap with simulated restarts.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::{HandleValue, SuffixCase};

fn handle(s: &str) -> Handle {
    Handle::parse(s, SuffixCase::Sensitive).unwrap()
}

fn rec(h: &str, values: Vec<HandleValue>) -> Record {
    Record {
        handle: h.to_string(),
        values,
    }
}

fn put(reg: &Registry, h: &str, values: Vec<HandleValue>) -> Committed {
    let r = rec(h, values);
    reg.mutate::<StoreError, _>(&handle(h), |_| Ok(Mutation::Put(r)))
        .unwrap()
}

#[test]
fn create_read_delete_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    let c = put(&reg, "88.100.1/A", vec![HandleValue::new(1, "URL", "u")]);
    assert_eq!(
        c,
        Committed {
            seq: Some(1),
            existed: false
        }
    );
    let c = put(&reg, "88.100.1/A", vec![HandleValue::new(2, "URL", "v")]);
    assert_eq!(
        c,
        Committed {
            seq: Some(2),
            existed: true
        }
    );
    assert_eq!(
        reg.get(&handle("88.100.1/A")).unwrap().unwrap().values[0].index,
        2
    );
    let c = reg
        .mutate::<StoreError, _>(&handle("88.100.1/A"), |_| Ok(Mutation::Delete))
        .unwrap();
    assert_eq!(c.seq, Some(3));
    assert!(reg.get(&handle("88.100.1/A")).unwrap().is_none());
    // Deleting what is not there writes nothing.
    let c = reg
        .mutate::<StoreError, _>(&handle("88.100.1/A"), |_| Ok(Mutation::Delete))
        .unwrap();
    assert_eq!(c.seq, None);
    let log = reg.changes_after(0, 100).unwrap();
    let actions: Vec<Action> = log.iter().map(|c| c.action).collect();
    assert_eq!(actions, [Action::Create, Action::Update, Action::Delete]);
    assert_eq!(log[1].record.as_ref().unwrap().values[0].index, 2);
    assert_eq!(reg.changes_after(2, 100).unwrap().len(), 1);
}

#[test]
fn a_refusing_closure_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    #[derive(Debug)]
    enum E {
        Refused,
        Store,
    }
    impl From<StoreError> for E {
        fn from(_: StoreError) -> E {
            E::Store
        }
    }
    let r = reg.mutate(&handle("88.1/x"), |_| Err::<Mutation, E>(E::Refused));
    assert!(matches!(r, Err(E::Refused)));
    assert!(!matches!(r, Err(E::Store)));
    assert_eq!(reg.last_seq(), 0);
    assert!(reg.get(&handle("88.1/x")).unwrap().is_none());
}

#[test]
fn list_by_prefix_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    for i in 0..7 {
        put(&reg, &format!("88.1/{i}"), vec![]);
    }
    put(&reg, "88.10/z", vec![]);
    put(&reg, "88/z", vec![]);
    let p = Prefix::parse("88.1").unwrap();
    let (total, all) = reg.list_handles(&p, None).unwrap();
    assert_eq!(total, 7);
    assert_eq!(all.first().map(String::as_str), Some("88.1/0"));
    let (total, page) = reg.list_handles(&p, Some((1, 3))).unwrap();
    assert_eq!(
        (total, page),
        (7, vec!["88.1/3".into(), "88.1/4".into(), "88.1/5".into()])
    );
    assert_eq!(reg.list_handles(&p, Some((0, 0))).unwrap(), (7, vec![]));
    assert_eq!(reg.list_handles(&p, Some((9, 3))).unwrap(), (7, vec![]));
}

#[test]
fn survives_reopen_with_prefixes_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        reg.home_prefix(&Prefix::parse("88.100.1").unwrap())
            .unwrap();
        assert!(!reg
            .home_prefix(&Prefix::parse("88.100.1").unwrap())
            .unwrap());
        put(&reg, "88.100.1/A", vec![HandleValue::new(1, "URL", "u")]);
    }
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(
        reg.homed_prefixes().unwrap(),
        vec![Prefix::parse("88.100.1").unwrap()]
    );
    assert_eq!(reg.last_seq(), 2);
    assert!(reg.get(&handle("88.100.1/A")).unwrap().is_some());
    let c = put(&reg, "88.100.1/B", vec![]);
    assert_eq!(c.seq, Some(3));
}

#[test]
fn batch_import_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    put(&reg, "88.1/a", vec![]);
    let batch: Vec<(Handle, Record)> = ["88.1/a", "88.1/b"]
        .iter()
        .map(|h| (handle(h), rec(h, vec![HandleValue::new(1, "URL", "x")])))
        .collect();
    assert_eq!(reg.put_batch(&batch).unwrap(), Some(3));
    let log = reg.changes_after(1, 10).unwrap();
    assert_eq!(
        log.iter().map(|c| c.action).collect::<Vec<_>>(),
        [Action::Update, Action::Create]
    );
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        reg.meta.insert(META_SCHEMA, &99u32.to_be_bytes()).unwrap();
        reg.db.flush().unwrap();
    }
    assert!(matches!(
        Registry::open(dir.path(), &StoreOptions::default()),
        Err(StoreError::Schema { found: 99, .. })
    ));
}

#[test]
fn corrupt_record_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        put(&reg, "88.1/a", vec![HandleValue::new(1, "URL", "x")]);
        reg.records.insert(b"88.1/b", &b"\x01garbage"[..]).unwrap();
    }
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    assert!(reg.get(&handle("88.1/a")).unwrap().is_some());
    assert!(matches!(
        reg.get(&handle("88.1/b")),
        Err(StoreError::Corrupt { .. })
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<(u32, u8)>),
    Delete(u8),
    AddValue(u8, u32),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, prop::collection::vec((1u32..5, any::<u8>()), 0..4)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..6).prop_map(Op::Delete),
        2 => (0u8..6, 1u32..8).prop_map(|(k, i)| Op::AddValue(k, i)),
        1 => Just(Op::Restart),
    ]
}

fn key_name(k: u8) -> String {
    format!("88.{}/item-{k}", k % 2)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The registry behaves like a BTreeMap of records, across restarts, and its change log
    /// replays to the same content.
    #[test]
    fn registry_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { cache_capacity_bytes: 8 << 20, flush_every_ms: 1000 };
        let mut reg = Registry::open(dir.path(), &opts).unwrap();
        let mut model: BTreeMap<String, Record> = BTreeMap::new();
        let mut expected_seq = 0u64;
        for op in ops {
            match op {
                Op::Put(k, vals) => {
                    let name = key_name(k);
                    let mut values: Vec<HandleValue> = Vec::new();
                    for (i, b) in vals {
                        if values.iter().all(|v| v.index != i) {
                            values.push(HandleValue::new(i, "DESC", vec![b]));
                        }
                    }
                    let r = rec(&name, values);
                    let c = reg.mutate::<StoreError, _>(&handle(&name), |_| Ok(Mutation::Put(r.clone()))).unwrap();
                    expected_seq += 1;
                    prop_assert_eq!(c.seq, Some(expected_seq));
                    prop_assert_eq!(c.existed, model.contains_key(&name));
                    model.insert(name, r);
                }
                Op::Delete(k) => {
                    let name = key_name(k);
                    let c = reg.mutate::<StoreError, _>(&handle(&name), |_| Ok(Mutation::Delete)).unwrap();
                    if model.remove(&name).is_some() {
                        expected_seq += 1;
                        prop_assert_eq!(c.seq, Some(expected_seq));
                    } else {
                        prop_assert_eq!(c.seq, None);
                    }
                }
                Op::AddValue(k, i) => {
                    let name = key_name(k);
                    let c = reg.mutate::<StoreError, _>(&handle(&name), |cur| Ok(match cur {
                        Some(r) if r.value(i).is_none() => {
                            let mut r = r.clone();
                            r.values.push(HandleValue::new(i, "EMAIL", "a@b"));
                            Mutation::Put(r)
                        }
                        _ => Mutation::Unchanged,
                    })).unwrap();
                    if let Some(r) = model.get_mut(&name) {
                        if r.value(i).is_none() {
                            r.values.push(HandleValue::new(i, "EMAIL", "a@b"));
                            expected_seq += 1;
                        }
                    }
                    prop_assert_eq!(c.seq.unwrap_or(expected_seq), expected_seq);
                }
                Op::Restart => {
                    drop(reg);
                    reg = Registry::open(dir.path(), &opts).unwrap();
                    prop_assert_eq!(reg.last_seq(), expected_seq);
                }
            }
            let stored: BTreeMap<String, Record> =
                reg.iter_records().map(|r| r.unwrap()).collect();
            prop_assert_eq!(&stored, &model);
        }
        // Replaying the change log from the start rebuilds the same content.
        let mut replay: BTreeMap<String, Record> = BTreeMap::new();
        for c in reg.changes_after(0, usize::MAX).unwrap() {
            match c.action {
                Action::Create | Action::Update => { replay.insert(c.key, c.record.unwrap()); }
                Action::Delete => { replay.remove(&c.key); }
                _ => {}
            }
        }
        prop_assert_eq!(replay, model);
    }
}

fn change(seq: u64, action: Action, key: &str, values: Option<Vec<HandleValue>>) -> Change {
    Change {
        seq,
        unix_millis: 0,
        action,
        key: key.to_string(),
        record: values.map(|v| rec(key, v)),
    }
}

#[test]
fn replicated_batches_and_cursor_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let v = |s: &str| Some(vec![HandleValue::new(1, "URL", s)]);
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(reg.cursor("up").unwrap(), 0);
        let batch = [
            change(5, Action::Create, "88.100/A", v("a")),
            change(6, Action::Create, "88.100/B", v("b")),
        ];
        assert_eq!(reg.apply_replicated(&batch, "up", 6).unwrap(), Some(2));
        // Simulated crash: dropped between batches.
    }
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(reg.cursor("up").unwrap(), 6);
    assert_eq!(reg.record_count(), 2);
    // The follower's own log holds the applied changes, re-sequenced.
    let log = reg.changes_after(0, 10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].seq, 2);
    let batch = [
        change(7, Action::Delete, "88.100/A", None),
        change(8, Action::Update, "88.100/B", v("b2")),
    ];
    reg.apply_replicated(&batch, "up", 8).unwrap();
    drop(reg);
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(reg.cursor("up").unwrap(), 8);
    assert!(reg.get_key("88.100/A").unwrap().is_none());
    assert_eq!(
        reg.get_key("88.100/B").unwrap().unwrap().values[0].data,
        b"b2".to_vec()
    );
    assert_eq!(reg.last_seq(), 4);
    // Prefix changes are never replicated.
    let bad = [change(9, Action::HomePrefix, "88.100", None)];
    assert!(reg.apply_replicated(&bad, "up", 9).is_err());
    assert_eq!(reg.cursor("up").unwrap(), 8);
}

#[test]
fn snapshot_load_replaces_followed_prefixes_only() {
    let up_dir = tempfile::tempdir().unwrap();
    let up = Registry::open(up_dir.path(), &StoreOptions::default()).unwrap();
    put(&up, "88.100/A", vec![HandleValue::new(1, "URL", "a")]);
    put(&up, "88.100/B", vec![HandleValue::new(1, "URL", "b")]);
    put(&up, "88.200/X", vec![HandleValue::new(1, "URL", "x")]);
    let p = Prefix::parse("88.100").unwrap();
    let (seq, records) = up.snapshot(std::slice::from_ref(&p)).unwrap();
    assert_eq!(seq, 3);
    assert_eq!(records.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    put(&reg, "88.100/STALE", vec![HandleValue::new(1, "URL", "s")]);
    put(&reg, "88.300/OTHER", vec![HandleValue::new(1, "URL", "o")]);
    reg.load_snapshot(std::slice::from_ref(&p), &records, "up", seq)
        .unwrap();
    assert_eq!(reg.cursor("up").unwrap(), 3);
    assert!(reg.get_key("88.100/STALE").unwrap().is_none());
    assert!(reg.get_key("88.300/OTHER").unwrap().is_some());
    assert_eq!(reg.snapshot(std::slice::from_ref(&p)).unwrap().1, records);
    // Loading the same snapshot again changes nothing but the cursor.
    let before = reg.last_seq();
    assert_eq!(
        reg.load_snapshot(std::slice::from_ref(&p), &records, "up", 4)
            .unwrap(),
        None
    );
    assert_eq!(reg.last_seq(), before);
    assert_eq!(reg.cursor("up").unwrap(), 4);
}

#[test]
fn log_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(reg.first_retained_seq().unwrap(), 1);
    for i in 0..5 {
        put(&reg, &format!("88.100/{i}"), vec![]);
    }
    assert_eq!(reg.truncate_log_before(4).unwrap(), 3);
    assert_eq!(reg.first_retained_seq().unwrap(), 4);
    assert_eq!(reg.changes_after(0, 10).unwrap()[0].seq, 4);
    reg.truncate_log_before(100).unwrap();
    assert_eq!(reg.first_retained_seq().unwrap(), 6);
    assert_eq!(reg.last_seq(), 5);
}
