//! Registry tests: operations, reopen durability, and a model-based property test against a
//! BTreeMap with simulated restarts.
// The helper-process tests print what the parent reads (DURABLE n, rates).
#![allow(clippy::print_stdout)]

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
        let opts = StoreOptions { cache_capacity_bytes: 8 << 20, flush_every_ms: 1000, ..StoreOptions::default() };
        let mut reg = Registry::open(dir.path(), &opts).unwrap();
        // Reads go through the read index, loaded at every (re)start as `serve` does.
        reg.load_read_index();
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
                    reg.load_read_index();
                    prop_assert_eq!(reg.last_seq(), expected_seq);
                }
            }
            let stored: BTreeMap<String, Record> =
                reg.iter_records().map(|r| r.unwrap()).collect();
            prop_assert_eq!(&stored, &model);
            for k in 0..6 {
                let name = key_name(k);
                prop_assert_eq!(reg.get(&handle(&name)).unwrap(), model.get(&name).cloned());
            }
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

fn prepared(h: &str, data: &str) -> PreparedRecord {
    PreparedRecord::new(&handle(h), &rec(h, vec![HandleValue::new(1, "URL", data)])).unwrap()
}

#[test]
fn import_batches_are_logged_and_durable_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        put(&reg, "88.1/a", vec![]);
        let first = [prepared("88.1/a", "x"), prepared("88.1/b", "y")];
        assert_eq!(reg.import_batch(&first, &ImportLog::Entries).unwrap(), 3);
        // The same key twice in one batch: created, then updated.
        let second = [prepared("88.1/c", "1"), prepared("88.1/c", "2")];
        assert_eq!(reg.import_batch(&second, &ImportLog::Entries).unwrap(), 5);
        assert_eq!(reg.import_batch(&[], &ImportLog::Entries).unwrap(), 5);
        reg.make_all_durable().unwrap();
        let log = reg.changes_after(1, 10).unwrap();
        assert_eq!(
            log.iter().map(|c| (c.seq, c.action)).collect::<Vec<_>>(),
            [
                (2, Action::Update),
                (3, Action::Create),
                (4, Action::Create),
                (5, Action::Update)
            ]
        );
        // Each entry carries the record as written, exactly as `mutate` would log it.
        assert_eq!(log[3].record, reg.get(&handle("88.1/c")).unwrap());
    }
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(reg.last_seq(), 5);
    assert_eq!(
        reg.get(&handle("88.1/c")).unwrap().unwrap().values[0].data,
        b"2".to_vec()
    );
    assert_eq!(put(&reg, "88.1/d", vec![]).seq, Some(6));
}

#[test]
fn unlogged_import_resets_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        for i in 0..3 {
            put(&reg, &format!("88.1/{i}"), vec![]);
        }
        // A follower that had caught up (cursor 3) must be sent back to a snapshot.
        let reset = reg.reset_change_feed().unwrap();
        assert_eq!(reg.last_seq(), 4);
        assert!(reg.changes_after(0, 10).unwrap().is_empty());
        assert!(3 + 1 < reg.first_retained_seq().unwrap());
        let log = ImportLog::Unlogged(reset);
        reg.import_batch(&[prepared("88.1/x", "x")], &log).unwrap();
        assert_eq!(reg.last_seq(), 4);
        reg.make_all_durable().unwrap();
        // Anything logged since the reset ends the unlogged load.
        put(&reg, "88.1/y", vec![]);
        assert!(matches!(
            reg.import_batch(&[prepared("88.1/z", "z")], &log),
            Err(StoreError::FeedMoved { reset: 4, now: 5 })
        ));
        assert!(reg.get(&handle("88.1/z")).unwrap().is_none());
    }
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    assert!(reg.get(&handle("88.1/x")).unwrap().is_some());
    assert_eq!(reg.last_seq(), 5);
    assert_eq!(reg.first_retained_seq().unwrap(), 5);
}

#[test]
fn oversized_records_are_refused_before_writing() {
    let big = "x".repeat(MAX_RECORD_BYTES);
    let h = handle("88.1/big");
    assert!(matches!(
        PreparedRecord::new(&h, &rec("88.1/big", vec![HandleValue::new(1, "URL", big)])),
        Err(StoreError::RecordTooLarge(_))
    ));
}

/// Random point reads against an existing data directory (the node stopped), the path a
/// resolution takes below any answer cache: `Registry::get_key` with decoding and CRC check.
/// Run by `scripts/bench-scale.sh`:
///
/// ```sh
/// IDNODE_GET_BENCH_DIR=data IDNODE_GET_BENCH_IDS=ids.txt IDNODE_GET_BENCH_SECS=20 \
///   cargo test --release --lib store::tests::random_get_rate -- --ignored --nocapture
/// ```
///
/// Prints one line per phase: `get-rate <phase> <gets/s> <µs/get> rss_kb=<VmRSS>`.
#[test]
#[ignore = "needs IDNODE_GET_BENCH_DIR and IDNODE_GET_BENCH_IDS (a loaded data directory)"]
fn random_get_rate() {
    use rand::{Rng, SeedableRng};
    let (Ok(dir), Ok(ids)) = (
        std::env::var("IDNODE_GET_BENCH_DIR"),
        std::env::var("IDNODE_GET_BENCH_IDS"),
    ) else {
        eprintln!("set IDNODE_GET_BENCH_DIR and IDNODE_GET_BENCH_IDS");
        return;
    };
    let secs: u64 = std::env::var("IDNODE_GET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let cache_mb: u64 = std::env::var("IDNODE_GET_BENCH_CACHE_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let keys: Vec<String> = std::fs::read_to_string(&ids)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| handle(l.trim()).key().to_string())
        .collect();
    assert!(!keys.is_empty(), "no identifiers in {ids}");
    let reg = Registry::open(
        Path::new(&dir),
        &StoreOptions {
            cache_capacity_bytes: cache_mb << 20,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
            })
            .unwrap_or_default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Two halves: the first warms sled's cache from disk, the second is the steady state.
    for phase in ["first-half", "second-half"] {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs.div_ceil(2));
        let started = std::time::Instant::now();
        let mut n = 0u64;
        while std::time::Instant::now() < until {
            for _ in 0..1000 {
                let key = &keys[rng.gen_range(0..keys.len())];
                assert!(reg.get_key(key).unwrap().is_some(), "{key} missing");
            }
            n += 1000;
        }
        let el = started.elapsed().as_secs_f64();
        println!(
            "get-rate {phase} {:.0} {:.2} rss_kb={}",
            n as f64 / el,
            el * 1e6 / n as f64,
            rss()
        );
    }
}

const IMPORT_CRASH_ENV: &str = "IDNODE_IMPORT_CRASH_DIR";
const IMPORT_CRASH_BATCH: usize = 50;

/// The child of `import_killed_midway_keeps_whole_batches`: imports batches of 50 new records
/// until killed, making everything durable every 4th batch and printing `DURABLE <records>`.
#[test]
fn import_crash_child() {
    let Ok(dir) = std::env::var(IMPORT_CRASH_ENV) else {
        return; // Only meaningful when spawned by the test below.
    };
    let reg = Registry::open(
        Path::new(&dir),
        &StoreOptions {
            flush_every_ms: 20, // sled's own flusher writes at random points between ours
            ..StoreOptions::default()
        },
    )
    .unwrap();
    for b in 0.. {
        let batch: Vec<PreparedRecord> = (0..IMPORT_CRASH_BATCH)
            .map(|i| prepared(&format!("88.1/k{:08}", b * IMPORT_CRASH_BATCH + i), "v"))
            .collect();
        reg.import_batch(&batch, &ImportLog::Entries).unwrap();
        if b % 4 == 3 {
            reg.make_all_durable().unwrap();
            println!("DURABLE {}", (b + 1) * IMPORT_CRASH_BATCH);
        }
    }
}

/// SIGKILL during a bulk import: what `make_all_durable` covered is there, batches are whole,
/// and every record has exactly its change-log entry (dense sequences, `last_seq` matching).
#[test]
fn import_killed_midway_keeps_whole_batches() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::import_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IMPORT_CRASH_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut durable = 0usize;
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(n) = line.unwrap().strip_prefix("DURABLE ") {
            durable = n.trim().parse().unwrap();
            if durable >= 40 * IMPORT_CRASH_BATCH {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(durable > 0, "the child made nothing durable");
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    let n = reg.record_count();
    assert!(n >= durable, "{n} records, {durable} were durable");
    assert_eq!(n % IMPORT_CRASH_BATCH, 0, "a batch was split: {n} records");
    assert_eq!(reg.last_seq(), n as u64);
    let log = reg.changes_after(0, usize::MAX).unwrap();
    assert_eq!(log.len(), n);
    for (i, c) in log.iter().enumerate() {
        assert_eq!(c.seq, i as u64 + 1);
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.key, format!("88.1/k{i:08}"));
        assert_eq!(c.record, reg.get_key(&c.key).unwrap());
    }
}

/// Every key's answer through the read index against sled's own records tree.
fn assert_index_agrees(reg: &Registry, keys: &[&str]) {
    assert_eq!(reg.read_index_status().0, index::IndexState::Complete);
    for key in keys {
        let from_sled = reg
            .records
            .get(key.as_bytes())
            .unwrap()
            .map(|b| record::decode_record(&b).unwrap());
        assert_eq!(reg.get_key(key).unwrap(), from_sled, "{key}");
    }
}

#[test]
fn the_read_index_follows_every_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    put(&reg, "88.100/A", vec![HandleValue::new(1, "URL", "a")]);
    put(&reg, "88.100/B", vec![HandleValue::new(1, "URL", "b")]);
    reg.load_read_index();
    let keys = [
        "88.100/A", "88.100/B", "88.100/C", "88.100/D", "88.100/E", "88.200/X",
    ];
    assert_index_agrees(&reg, &keys);
    // mutate: update, delete
    put(&reg, "88.100/A", vec![HandleValue::new(2, "URL", "a2")]);
    reg.mutate::<StoreError, _>(&handle("88.100/B"), |_| Ok(Mutation::Delete))
        .unwrap();
    assert_index_agrees(&reg, &keys);
    // import, logged
    reg.import_batch(&[prepared("88.100/C", "c")], &ImportLog::Entries)
        .unwrap();
    assert_index_agrees(&reg, &keys);
    // replication: a create, an update and a delete in one batch
    let v = |s: &str| Some(vec![HandleValue::new(1, "URL", s)]);
    let seq = reg.last_seq();
    reg.apply_replicated(
        &[
            change(seq + 1, Action::Create, "88.200/X", v("x")),
            change(seq + 2, Action::Update, "88.100/C", v("c2")),
            change(seq + 3, Action::Delete, "88.100/A", None),
        ],
        "up",
        9,
    )
    .unwrap();
    assert_index_agrees(&reg, &keys);
    assert!(reg.get_key("88.100/A").unwrap().is_none());
    // a snapshot of 88.100 replaces what was under it
    let p = Prefix::parse("88.100").unwrap();
    let snapshot = vec![("88.100/D".to_string(), rec("88.100/D", v("d").unwrap()))];
    reg.load_snapshot(std::slice::from_ref(&p), &snapshot, "up", 20)
        .unwrap();
    assert_index_agrees(&reg, &keys);
    assert!(reg.get_key("88.100/C").unwrap().is_none());
    // an unlogged import
    let reset = reg.reset_change_feed().unwrap();
    reg.import_batch(&[prepared("88.100/E", "e")], &ImportLog::Unlogged(reset))
        .unwrap();
    assert_index_agrees(&reg, &keys);
    assert!(reg.get_key("88.100/E").unwrap().is_some());
}

/// Writes made while the index loads are never lost to the loader's older copy.
#[test]
fn writes_during_the_load_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let reg = std::sync::Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    let batch: Vec<PreparedRecord> = (0..3000)
        .map(|i| prepared(&format!("88.100/K{i}"), "old"))
        .collect();
    reg.import_batch(&batch, &ImportLog::Entries).unwrap();
    let writer = {
        let reg = reg.clone();
        std::thread::spawn(move || {
            for round in 0..3 {
                for i in (0..3000).step_by(7) {
                    let key = format!("88.100/K{i}");
                    if (i + round) % 3 == 0 {
                        reg.mutate::<StoreError, _>(&handle(&key), |_| Ok(Mutation::Delete))
                            .unwrap();
                    } else {
                        put(
                            &reg,
                            &key,
                            vec![HandleValue::new(1, "URL", format!("new{round}"))],
                        );
                    }
                }
            }
        })
    };
    reg.load_read_index();
    writer.join().unwrap();
    let keys: Vec<String> = (0..3000).map(|i| format!("88.100/K{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_index_agrees(&reg, &keys);
}

/// A saved read index serves the next open only, and only if nothing was written since.
#[test]
fn a_saved_read_index_serves_the_next_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("read-index.saved");
    let keys = ["88.100/A", "88.100/B", "88.100/C"];
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        put(&reg, "88.100/A", vec![HandleValue::new(1, "URL", "a")]);
        put(&reg, "88.100/B", vec![HandleValue::new(1, "URL", "b")]);
        assert!(
            !reg.save_read_index().unwrap(),
            "not loaded: nothing to save"
        );
        reg.load_read_index();
        assert!(reg.save_read_index().unwrap());
        assert!(saved.exists());
        // A write after the save makes the copy wrong: it goes.
        put(&reg, "88.100/C", vec![HandleValue::new(1, "URL", "c")]);
        assert!(!saved.exists());
        assert!(reg.save_read_index().unwrap());
    }
    {
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        assert!(!saved.exists(), "taken aside by the open");
        reg.load_read_index();
        assert_index_agrees(&reg, &keys);
        assert!(!dir.path().join("read-index.saved.taken").exists());
        assert!(reg.save_read_index().unwrap());
    }
    {
        // An open that never loads the index (an import) still takes the copy: its
        // unlogged writes, which do not move the sequence, cannot meet a stale copy.
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        let reset = reg.reset_change_feed().unwrap();
        reg.import_batch(
            &[prepared("88.100/A", "changed")],
            &ImportLog::Unlogged(reset),
        )
        .unwrap();
        reg.make_all_durable().unwrap();
    }
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    reg.load_read_index();
    assert_index_agrees(&reg, &keys);
    assert_eq!(
        reg.get_key("88.100/A").unwrap().unwrap().values[0].data,
        b"changed".to_vec()
    );
}
