//! What a follower reads from its upstream: `/sync/changes` batches (`verify_batch`) and
//! `/sync/snapshot` answers (`verify_snapshot`), as arbitrary JSON text.
//!
//! The first input byte picks the suffix case rule (bit 0) and the follower's cursor (bits
//! 1–4, 0..15); the followed prefixes are `88.100.1` and `20.500`. The rest is the JSON body.
//!
//! - nothing panics;
//! - an accepted batch: `next` is not below the cursor; sequences strictly increase, are above
//!   the cursor and at most `next`; every key is under a followed prefix; creates and updates
//!   carry a record whose handle's key is the change's key, deletes carry none;
//! - an accepted batch, written back the way the feed writes one (`sync::feed::change_entry`,
//!   through JSON), is accepted again, unchanged;
//! - an accepted snapshot: every key under a followed prefix, every record under its key.
#![no_main]

use idnode::model::{Handle, Prefix, SuffixCase};
use idnode::store::Action;
use idnode::sync::feed::change_entry;
use idnode::sync::follower::{verify_batch, verify_snapshot};
use idnode::sync::key_under;
use idnode::wire::sync::{ChangeBatch, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let case = if mode & 1 == 0 {
        SuffixCase::Sensitive
    } else {
        SuffixCase::Insensitive
    };
    let cursor = u64::from((mode >> 1) & 15);
    let batch = serde_json::from_slice::<ChangeBatch>(text).ok();
    let snapshot = serde_json::from_slice::<Snapshot>(text).ok();
    let prefixes: Vec<Prefix> = ["88.100.1", "20.500"]
        .iter()
        .map(|p| Prefix::parse(p).expect("prefix"))
        .collect();

    if let Some(Ok((changes, next, last_seq))) = batch
        .as_ref()
        .map(|b| verify_batch(b, cursor, &prefixes, case))
    {
        assert!(next >= cursor, "next {next} below the cursor {cursor}");
        let mut prev = cursor;
        for c in &changes {
            assert!(
                c.seq > prev && c.seq <= next,
                "seq {} after {prev}, next {next}",
                c.seq
            );
            prev = c.seq;
            assert!(key_under(&c.key, &prefixes), "key {} outside", c.key);
            match (c.action, &c.record) {
                (Action::Delete, None) => {}
                (Action::Create | Action::Update, Some(rec)) => {
                    let h = Handle::parse(&rec.handle, case).expect("record handle");
                    assert_eq!(h.key(), c.key, "record under another key");
                }
                (a, r) => panic!("{a:?} with record {r:?}"),
            }
        }
        let written = ChangeBatch {
            from: cursor,
            next,
            last_seq,
            changes: changes.iter().filter_map(change_entry).collect(),
        };
        let text = serde_json::to_string(&written).expect("a batch encodes");
        let again: ChangeBatch = serde_json::from_str(&text).expect("a written batch decodes");
        let (changes2, next2, last2) = verify_batch(&again, cursor, &prefixes, case)
            .unwrap_or_else(|e| panic!("a batch written back is refused: {e}\n  {text}"));
        assert_eq!((next2, last2), (next, last_seq));
        assert_eq!(changes2, changes, "batch changed when written back");
    }

    if let Some(Ok((_seq, records))) = snapshot
        .as_ref()
        .map(|s| verify_snapshot(s, &prefixes, case))
    {
        for (key, rec) in &records {
            assert!(key_under(key, &prefixes), "snapshot key {key} outside");
            let h = Handle::parse(&rec.handle, case).expect("record handle");
            assert_eq!(h.key(), key, "snapshot record under another key");
        }
    }
});
