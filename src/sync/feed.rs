//! What the change feed answers, built from the registry: the batch of changes after a
//! cursor, the snapshot of prefixes and the pages of a paged snapshot, as the
//! [`crate::wire::sync`] messages. The HTTP side
//! (routes, authentication of followers, the long-poll wait, scan permits) is
//! `server::http::feed`; this half knows no HTTP, so it sits in `sync`, below `server`, next
//! to the follower that reads these messages back.

use base64::Engine as _;

use crate::model::Prefix;
use crate::store::{record, Action, Change, Record, Registry, StoreError};
use crate::sync::key_under;
use crate::wire::json as hjson;
use crate::wire::sync::{
    ChangeAction, ChangeBatch, ChangeEntry, RecordJson, Snapshot, SnapshotPage, SnapshotRecord,
};

/// Longest long-poll wait a follower may ask for (`wait_ms`).
pub const MAX_WAIT_MS: u64 = 30_000;
/// Most log entries scanned per request (`limit`).
pub const MAX_LIMIT: usize = 1000;

/// The record changes after sequence `after` under `prefixes`, scanning at most `limit` log
/// entries: `None` when the follower must re-bootstrap (entries after `after` were
/// truncated). `next` is the last sequence scanned, also when every entry scanned was
/// filtered out (another prefix, or prefix homing, which is not replicated).
pub fn changes_after(
    registry: &Registry,
    after: u64,
    limit: usize,
    prefixes: &[Prefix],
) -> Result<Option<ChangeBatch>, StoreError> {
    // Sequences are dense, so the answer must start right after `after`: a gap means the
    // entries were truncated (also when retention runs between the checks).
    let last = registry.last_seq();
    if after.saturating_add(1) < registry.first_retained_seq()? {
        return Ok(None);
    }
    let log = registry.changes_after(after, limit)?;
    match log.first() {
        Some(c) if c.seq != after + 1 => return Ok(None),
        None if last > after => return Ok(None),
        _ => {}
    }
    let next = log.last().map(|c| c.seq).unwrap_or(after);
    let changes = log
        .iter()
        .filter(|c| key_under(&c.key, prefixes))
        .filter_map(change_entry)
        .collect();
    Ok(Some(ChangeBatch {
        from: after,
        next,
        last_seq: last.max(next),
        changes,
    }))
}

/// A logged change as the feed sends it: the record as REST JSON (for people reading the
/// feed) and its stored encoding (what followers apply); `None` for prefix homing, which is
/// not replicated.
pub fn change_entry(c: &Change) -> Option<ChangeEntry> {
    let action = match c.action {
        Action::Create => ChangeAction::Create,
        Action::Update => ChangeAction::Update,
        Action::Delete => ChangeAction::Delete,
        Action::HomePrefix | Action::UnhomePrefix => return None,
    };
    let (record, data) = match &c.record {
        Some(rec) => {
            let (json, data) = record_json(rec);
            (Some(json), Some(data))
        }
        None => (None, None),
    };
    Some(ChangeEntry {
        seq: c.seq,
        unix_millis: c.unix_millis,
        action,
        key: c.key.clone(),
        record,
        data,
    })
}

/// Every record under `prefixes`, with the sequence it reflects ([`Registry::snapshot`]).
pub fn snapshot(registry: &Registry, prefixes: &[Prefix]) -> Result<Snapshot, StoreError> {
    let (seq, records) = registry.snapshot(prefixes)?;
    let records = records
        .iter()
        .map(|(key, rec)| {
            let (json, data) = record_json(rec);
            SnapshotRecord {
                key: key.clone(),
                record: Some(json),
                data,
            }
        })
        .collect();
    Ok(Snapshot { seq, records })
}

/// One page of a paged snapshot (`/sync/snapshot?limit=N&after=K&seq=S`): the records
/// under `prefixes` after the key `after`, at most `limit` of them and
/// [`crate::store::bootstrap::MAX_PAGE_BYTES`], each as its stored encoding only (followers
/// do not read the REST JSON, and it would double the page). `seq` is the sequence the
/// bootstrap started at: absent on the first page, which takes the newest (read before the
/// scan, so every record read reflects it or later). `None` tells the follower to start
/// over (410): the log no longer holds every change after `seq` (the feed could not bring
/// what the pages missed), or `seq` is beyond this node's newest.
pub fn snapshot_page(
    registry: &Registry,
    prefixes: &[Prefix],
    after: Option<&str>,
    seq: Option<u64>,
    limit: usize,
) -> Result<Option<SnapshotPage>, StoreError> {
    let seq = match seq {
        None => registry.last_seq(),
        Some(s) if s > registry.last_seq() => return Ok(None),
        Some(s) if s.saturating_add(1) < registry.first_retained_seq()? => return Ok(None),
        Some(s) => s,
    };
    let max_bytes = crate::store::bootstrap::MAX_PAGE_BYTES;
    let (records, more) = registry.snapshot_page(prefixes, after, limit, max_bytes)?;
    let engine = base64::engine::general_purpose::STANDARD;
    let records = records
        .into_iter()
        .map(|(key, bytes)| SnapshotRecord {
            key,
            record: None,
            data: engine.encode(bytes),
        })
        .collect();
    Ok(Some(SnapshotPage {
        seq,
        records,
        more: Some(more),
    }))
}

/// A record as the feed sends it: its REST JSON and its canonical stored encoding (base64).
fn record_json(rec: &Record) -> (RecordJson, String) {
    let values = rec.values.iter().map(hjson::value_to_json).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(record::encode_record(rec));
    (
        RecordJson {
            handle: rec.handle.clone(),
            values,
        },
        data,
    )
}
