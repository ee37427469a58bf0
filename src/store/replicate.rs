//! The registry's side of replication. On the upstream, [`Registry::snapshot`]: the records
//! under some prefixes as of one sequence, for a follower to bootstrap from. On a follower,
//! a follow link's cursor (the upstream sequence applied up to, `meta/cursor/<link>`) and the
//! writes that move it, [`Registry::apply_replicated`] and [`Registry::load_snapshot`]: each is
//! one sled transaction over the records, this node's own change log and the cursor, then
//! durable, so after a crash a batch is either applied with its cursor or not at all.
//!
//! It sits in `store` because that atomicity is a sled transaction; deciding whether what an
//! upstream sent may be applied (sequences, followed prefixes) is `sync::follower`'s job.

use std::collections::HashSet;

use sled::transaction::{ConflictableTransactionError, Transactional};

use super::{be_u64, decode_stored, encode_bounded, lock, now_unix_millis, record, transacted};
use super::{Action, Change, Record, Registry, StoreError, META_LAST_SEQ};
use crate::model::codec::DecodeError;
use crate::model::Prefix;

/// A replicated write: the key, what happens to it, and the record (stored bytes and decoded)
/// for a create or update.
pub(super) type ReplicatedEntry = (String, Action, Option<(Vec<u8>, Record)>);

/// A `meta` write committed with replicated entries: key and value (`None` removes it).
pub(super) type MetaWrite = (String, Option<Vec<u8>>);

/// The `meta` write that sets the follow link `cursor_key`'s cursor.
pub(super) fn cursor_write(cursor_key: &str, cursor: u64) -> MetaWrite {
    (
        format!("cursor/{cursor_key}"),
        Some(cursor.to_be_bytes().to_vec()),
    )
}

fn bad_change(c: &Change, reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: c.key.clone(),
        source: DecodeError::Invalid {
            what: "replicated change",
            reason: reason.to_string(),
        },
    }
}

impl Registry {
    /// A consistent snapshot of the records under `prefixes` (keys `P/...`; the prefix handle
    /// `0.NA/P` belongs to the delegating parent and is not included), in key order, with the
    /// sequence it reflects: every change up to that sequence and none after.
    ///
    /// Consistency comes from holding the writer lock while scanning, so **writers wait for
    /// the whole scan** (cost: proportional to the number of records under the prefixes;
    /// snapshots are only taken to bootstrap a follower, which is rare).
    pub fn snapshot(
        &self,
        prefixes: &[Prefix],
    ) -> Result<(u64, Vec<(String, Record)>), StoreError> {
        let last_seq = lock(&self.writer);
        let mut out = Vec::new();
        for prefix in prefixes {
            let scan = format!("{}/", prefix.as_str());
            for item in self.records.scan_prefix(scan.as_bytes()) {
                let (k, v) = item?;
                out.push(decode_stored(&k, &v)?);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok((*last_seq, out))
    }

    /// The cursor (upstream sequence applied up to) of the follow link `cursor_key`; 0 when
    /// the link has never applied anything.
    pub fn cursor(&self, cursor_key: &str) -> Result<u64, StoreError> {
        let key = format!("cursor/{cursor_key}");
        match self.meta.get(key.as_bytes())? {
            Some(v) => be_u64(&v, &key),
            None => Ok(0),
        }
    }

    /// Apply changes received from an upstream together with the link's cursor, in **one**
    /// sled transaction over `records`, `log` and `meta`, then make them durable: after a
    /// crash either the batch and its cursor are both there or neither is, so a batch is
    /// never applied twice nor skipped.
    ///
    /// Each change is also appended to this node's own change log, re-sequenced with this
    /// node's sequence numbers (the upstream's sequence lives only in the cursor), so a mirror
    /// can itself be followed. Only record changes (create, update, delete) are accepted;
    /// the caller verifies keys and sequences before calling.
    pub fn apply_replicated(
        &self,
        changes: &[Change],
        cursor_key: &str,
        cursor: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut entries = Vec::with_capacity(changes.len());
        for c in changes {
            let record = match c.action {
                Action::Create | Action::Update => match &c.record {
                    Some(r) => Some((encode_bounded(r)?, r.clone())),
                    None => return Err(bad_change(c, "create/update without a record")),
                },
                Action::Delete => None,
                _ => return Err(bad_change(c, "only record changes are replicated")),
            };
            entries.push((c.key.clone(), c.action, record));
        }
        self.replicate_commit(&entries, false, &[cursor_write(cursor_key, cursor)])
    }

    /// Replace the content of the followed `prefixes` (as [`Registry::snapshot`] defines it) by
    /// a snapshot (`records`, as of the
    /// upstream's sequence `seq`) and set the link's cursor to `seq`, atomically and durably.
    /// Records under the prefixes that are not in the snapshot are deleted; every change
    /// is appended to this node's own log.
    pub fn load_snapshot(
        &self,
        prefixes: &[Prefix],
        records: &[(String, Record)],
        cursor_key: &str,
        seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut keep = HashSet::new();
        let mut entries = Vec::with_capacity(records.len());
        for (key, rec) in records {
            let bytes = encode_bounded(rec)?;
            keep.insert(key.clone());
            entries.push((key.clone(), Action::Update, Some((bytes, rec.clone()))));
        }
        let mut deletes = Vec::new();
        for prefix in prefixes {
            let scan = format!("{}/", prefix.as_str());
            for k in self.records.scan_prefix(scan.as_bytes()).keys() {
                let key = String::from_utf8_lossy(&k?).into_owned();
                if !keep.contains(&key) {
                    deletes.push((key, Action::Delete, None));
                }
            }
        }
        deletes.extend(entries);
        self.replicate_commit(&deletes, true, &[cursor_write(cursor_key, seq)])
    }

    /// Commit replicated entries (key, action, encoded record) and the `meta` writes (the
    /// link's cursor, a bootstrap's state; `None` removes) in one transaction, then make it
    /// durable. With `snapshot`, unchanged records are not rewritten nor logged.
    pub(super) fn replicate_commit(
        &self,
        entries: &[ReplicatedEntry],
        snapshot: bool,
        meta_writes: &[MetaWrite],
    ) -> Result<Option<u64>, StoreError> {
        let last_seq = lock(&self.writer);
        let now = now_unix_millis();
        let mut writes: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        let mut changes = Vec::new();
        let mut seq = *last_seq;
        for (key, action, rec) in entries {
            let existing = self.records.get(key.as_bytes())?;
            let action = match (action, &existing, rec) {
                (Action::Delete, None, _) => continue,
                (_, Some(old), Some((bytes, _)))
                    if snapshot && old.as_ref() == bytes.as_slice() =>
                {
                    continue
                }
                (Action::Delete, Some(_), _) => Action::Delete,
                (_, Some(_), _) => Action::Update,
                (_, None, _) => Action::Create,
            };
            seq += 1;
            changes.push((
                seq,
                record::encode_change(&Change {
                    seq,
                    unix_millis: now,
                    action,
                    key: key.clone(),
                    record: rec.as_ref().map(|(_, r)| r.clone()),
                }),
            ));
            writes.push((key.as_bytes(), rec.as_ref().map(|(b, _)| b.as_slice())));
        }
        let result = (&self.records, &self.log, &self.meta).transaction(|(records, log, meta)| {
            for (key, value) in &writes {
                match value {
                    Some(v) => records.insert(*key, *v)?,
                    None => records.remove(*key)?,
                };
            }
            for (s, bytes) in &changes {
                log.insert(&s.to_be_bytes(), bytes.as_slice())?;
            }
            if seq != *last_seq {
                meta.insert(META_LAST_SEQ, &seq.to_be_bytes())?;
            }
            for (key, value) in meta_writes {
                match value {
                    Some(v) => meta.insert(key.as_bytes(), v.as_slice())?,
                    None => meta.remove(key.as_bytes())?,
                };
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        transacted(result)?;
        self.indexed(writes.iter().copied());
        let changed = seq != *last_seq;
        self.committed(last_seq, seq);
        // The cursor (or a bootstrap's state) moved even when no record did: always make it
        // durable.
        self.make_durable_force(seq)?;
        Ok(changed.then_some(seq))
    }
}
