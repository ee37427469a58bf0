//! Crash durability: a child process writes records and reports each acknowledgement; the
//! parent kills it with SIGKILL at an arbitrary point, reopens the store, and checks that
//! every acknowledged write is there, intact.

// These tests print the figures they measure (cargo test shows them with --nocapture).
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use idnode::model::{Handle, HandleValue, SuffixCase};
use idnode::store::{Mutation, Record, Registry, StoreError, StoreOptions};

const CHILD_ENV: &str = "IDNODE_CRASH_CHILD_DIR";

fn handle(i: u32) -> Handle {
    Handle::parse(&format!("88.100.1/CRASH-{i}"), SuffixCase::Sensitive).unwrap()
}

/// The child: writes until killed, printing `ACK n` after each acknowledged write.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when spawned by `acknowledged_writes_survive_sigkill`.
    };
    let opts = StoreOptions {
        // A long background interval: only our own flush-before-ack can save the data.
        flush_every_ms: 60_000,
        ..StoreOptions::default()
    };
    let reg = Registry::open(std::path::Path::new(&dir), &opts).unwrap();
    for i in 0..100_000u32 {
        let h = handle(i);
        let rec = Record {
            handle: h.as_str().to_string(),
            values: vec![HandleValue::new(
                1,
                "URL",
                format!("https://example.com/{i}"),
            )],
        };
        reg.mutate::<StoreError, _>(&h, |_| Ok(Mutation::Put(rec)))
            .unwrap();
        println!("ACK {i}");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last_ack = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            let n: u32 = n.trim().parse().unwrap();
            last_ack = Some(n);
            if n >= 150 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flush on drop.
    child.wait().unwrap();
    let last_ack = last_ack.expect("child acknowledged nothing");
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    for i in 0..=last_ack {
        let rec = reg
            .get(&handle(i))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {i} lost"));
        assert_eq!(
            rec.values[0].data_str(),
            Some(format!("https://example.com/{i}").as_str())
        );
    }
    assert!(reg.last_seq() > u64::from(last_ack));
}

const FOLLOWER_ENV: &str = "IDNODE_CRASH_FOLLOWER_DIR";

/// The follower child: applies replicated batches of 10 changes with the link cursor until
/// killed, printing `CURSOR n` after each acknowledged batch.
#[test]
fn crash_follower_child() {
    use idnode::store::{Action, Change};
    let Ok(dir) = std::env::var(FOLLOWER_ENV) else {
        return; // Only meaningful when spawned by `follower_killed_mid_batch_neither_repeats_nor_skips`.
    };
    let opts = StoreOptions {
        flush_every_ms: 60_000,
        ..StoreOptions::default()
    };
    let reg = Registry::open(std::path::Path::new(&dir), &opts).unwrap();
    let mut seq = reg.cursor("upstream").unwrap();
    loop {
        let batch: Vec<Change> = (1..=10)
            .map(|k| {
                let s = seq + k;
                let h = handle(s as u32);
                Change {
                    seq: s,
                    unix_millis: 0,
                    action: Action::Create,
                    key: h.key().to_string(),
                    record: Some(Record {
                        handle: h.as_str().to_string(),
                        values: vec![HandleValue::new(
                            1,
                            "URL",
                            format!("https://example.com/{s}"),
                        )],
                    }),
                }
            })
            .collect();
        seq += 10;
        reg.apply_replicated(&batch, "upstream", seq).unwrap();
        println!("CURSOR {seq}");
    }
}

/// SIGKILL a follower while it applies batches: after reopening, its cursor and its records
/// agree exactly (every change up to the cursor is there, none after it), and the cursor is
/// at least the last acknowledged one.
#[test]
fn follower_killed_mid_batch_neither_repeats_nor_skips() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_follower_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FOLLOWER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = 0u64;
    for line in BufReader::new(stdout).lines() {
        if let Some(n) = line.unwrap().strip_prefix("CURSOR ") {
            acked = n.trim().parse().unwrap();
            if acked >= 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, most likely in the middle of the next batch.
    child.wait().unwrap();
    assert!(acked >= 300);
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    let cursor = reg.cursor("upstream").unwrap();
    assert!(
        cursor >= acked,
        "acknowledged cursor {acked} lost (now {cursor})"
    );
    assert_eq!(cursor % 10, 0, "a batch was applied in part");
    for s in 1..=cursor {
        assert!(
            reg.get(&handle(s as u32)).unwrap().is_some(),
            "change {s} skipped"
        );
    }
    assert!(
        reg.get(&handle(cursor as u32 + 1)).unwrap().is_none(),
        "a change beyond the cursor"
    );
    assert_eq!(
        reg.record_count() as u64,
        cursor,
        "no change applied twice or lost"
    );
}
