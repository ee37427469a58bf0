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
//! - an accepted batch, written back the way the feed writes one (`seq`, `unix_millis`,
//!   `action`, `key`, base64 `data` of the stored encoding), is accepted again, unchanged;
//! - an accepted snapshot: every key under a followed prefix, every record under its key.
#![no_main]

use base64::Engine as _;
use idnode::model::{Handle, Prefix, SuffixCase};
use idnode::store::record::encode_record;
use idnode::store::{Action, Change};
use idnode::sync::follower::{verify_batch, verify_snapshot};
use idnode::sync::key_under;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
        other => panic!("a batch yielded a {other:?} change"),
    }
}

fn feed_json(changes: &[Change], next: u64, last_seq: u64) -> Value {
    let items: Vec<Value> = changes
        .iter()
        .map(|c| {
            let mut v = json!({
                "seq": c.seq,
                "unix_millis": c.unix_millis,
                "action": action_name(c.action),
                "key": c.key,
            });
            if let Some(rec) = &c.record {
                v["data"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(encode_record(rec)));
            }
            v
        })
        .collect();
    json!({"next": next, "last_seq": last_seq, "changes": items})
}

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
    let Ok(body) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    let prefixes: Vec<Prefix> = ["88.100.1", "20.500"]
        .iter()
        .map(|p| Prefix::parse(p).expect("prefix"))
        .collect();

    if let Ok((changes, next, last_seq)) = verify_batch(&body, cursor, &prefixes, case) {
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
        let again = feed_json(&changes, next, last_seq);
        let (changes2, next2, last2) = verify_batch(&again, cursor, &prefixes, case)
            .unwrap_or_else(|e| panic!("a batch written back is refused: {e:#}\n  {again}"));
        assert_eq!((next2, last2), (next, last_seq));
        assert_eq!(changes2, changes, "batch changed when written back");
    }

    if let Ok((_seq, records)) = verify_snapshot(&body, &prefixes, case) {
        for (key, rec) in &records {
            assert!(key_under(key, &prefixes), "snapshot key {key} outside");
            let h = Handle::parse(&rec.handle, case).expect("record handle");
            assert_eq!(h.key(), key, "snapshot record under another key");
        }
    }
});
