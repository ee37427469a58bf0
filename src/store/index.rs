//! The read index: every record's stored bytes held in memory, in front of sled, so that a
//! resolution costs a hash probe whatever the number of identifiers.
//!
//! sled stays the durable registry; this is a copy of its records tree that is only ever
//! read by resolutions and written by the registry's own write paths, under the registry's
//! writer lock, after the sled transaction committed (so a reader sees a write no earlier
//! than sled does, and never after its answer went out). Why it exists: at 1M and 10M
//! identifiers with uniform random queries, sled's page cache was over 60 % of the node's
//! CPU (BENCHMARKS.md, Scale) — each miss paged a ~2.5 KB leaf in and deserialized ~30
//! objects — while the records themselves are ~270 bytes each.
//!
//! Layout, chosen for bytes per identifier: 256 shards, each an append-only arena of entries
//! `[key length u16][value length u32][key][value]` and a `hashbrown::HashTable<u32>` of
//! entry offsets (about 5–9 bytes per identifier with its control byte and load factor). An
//! entry costs its key and value plus 6 bytes, against ~100 bytes of per-object overhead for
//! a map of boxed keys and values. An update appends and leaves the old bytes as garbage; a
//! shard whose garbage passes half its arena is compacted under its write lock (a shard is
//! 1/256 of the records, so at 10M the pause is a copy of ~10 MB).
//!
//! States: `Off` (nothing held: every lookup is [`Lookup::Unknown`] and writes are ignored;
//! command-line tools that open the registry use it so), `Loading` (writes are recorded,
//! deletions as tombstones, while a loader fills what it reads from sled with
//! [`ReadIndex::fill`], which never overwrites: a record the loader read before a write
//! cannot replace the write), `Complete` (an absent key is known absent: a miss never reaches
//! sled) and `Disabled` (the memory budget was exceeded: everything dropped, lookups go to
//! sled). Keys are hashed with the standard library's randomly keyed SipHash: the keys come
//! from writers, but lookups come from anyone.

use std::hash::{BuildHasher, RandomState};
use std::io::Read;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::RwLock;

use hashbrown::HashTable;

// A panic while a shard is locked leaves it whole or with an entry appended but not yet
// indexed (unreachable bytes): readers may go on.
use crate::lock::{read, write};

/// Shards (a power of two): writers to different shards never wait on each other, and
/// compaction pauses one shard's readers only.
const SHARDS: usize = 256;
/// Entry header: key length (u16) and value length (u32).
const HEADER: usize = 6;
/// Value length marking a deleted key while loading (never a real length: records are
/// capped far below).
const TOMBSTONE: u32 = u32::MAX;
/// Shards with less garbage than this are not compacted (not worth the copy).
const MIN_COMPACT_GARBAGE: usize = 16 << 10;

const OFF: u8 = 0;
const LOADING: u8 = 1;
const COMPLETE: u8 = 2;
const DISABLED: u8 = 3;

/// What the index knows about a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<R> {
    /// The key is held: the closure's result on its stored bytes.
    Found(R),
    /// The key is known not to exist (complete index, or deleted while loading).
    Absent,
    /// The index cannot say: ask sled.
    Unknown,
}

/// The state of the index, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    Off,
    Loading,
    Complete,
    Disabled,
}

#[derive(Default)]
struct Shard {
    table: HashTable<u32>,
    arena: Vec<u8>,
    garbage: usize,
}

/// See the module docs.
pub struct ReadIndex {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    state: AtomicU8,
    /// Arena bytes held (live and garbage) plus table slots, all shards.
    /// Signed: each change is applied as a delta measured under its shard's lock, and the
    /// deltas of different shards may land in any order (the sum is right once they all have).
    bytes: AtomicI64,
    /// Most bytes the index may hold before it disables itself (0: no limit).
    budget: usize,
}

fn key_of(arena: &[u8], offset: u32) -> &[u8] {
    let o = offset as usize;
    let key_len = u16::from_le_bytes([arena[o], arena[o + 1]]) as usize;
    &arena[o + HEADER..o + HEADER + key_len]
}

/// The stored value at `offset` (`None` for a tombstone) and the entry's length.
fn value_of(arena: &[u8], offset: u32) -> (Option<&[u8]>, usize) {
    let o = offset as usize;
    let key_len = u16::from_le_bytes([arena[o], arena[o + 1]]) as usize;
    let len = u32::from_le_bytes([arena[o + 2], arena[o + 3], arena[o + 4], arena[o + 5]]);
    let start = o + HEADER + key_len;
    if len == TOMBSTONE {
        return (None, HEADER + key_len);
    }
    let end = start + len as usize;
    (Some(&arena[start..end]), end - o)
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let arena = &self.arena;
        self.table.find(hash, |&o| key_of(arena, o) == key).copied()
    }

    /// Append an entry; `None` if the arena would pass the u32 offsets' reach.
    fn append(&mut self, key: &[u8], value: Option<&[u8]>) -> Option<(u32, usize)> {
        let value_len = value.map_or(0, <[u8]>::len);
        let len = HEADER + key.len() + value_len;
        let offset = u32::try_from(self.arena.len()).ok()?;
        u32::try_from(self.arena.len() + len).ok()?;
        let key_len = u16::try_from(key.len()).ok()?;
        let stored_len = match value {
            Some(v) => u32::try_from(v.len()).ok().filter(|&l| l != TOMBSTONE)?,
            None => TOMBSTONE,
        };
        if self.arena.capacity() - self.arena.len() < len {
            // Grow by an eighth, not by doubling: the arenas are most of the index's memory.
            let extra = (self.arena.len() / 8).max(len).max(4096);
            self.arena.reserve_exact(extra);
        }
        self.arena.extend_from_slice(&key_len.to_le_bytes());
        self.arena.extend_from_slice(&stored_len.to_le_bytes());
        self.arena.extend_from_slice(key);
        if let Some(v) = value {
            self.arena.extend_from_slice(v);
        }
        Some((offset, len))
    }

    fn capacity_bytes(&self) -> usize {
        self.arena.capacity() + self.table.capacity() * (size_of::<u32>() + 1)
    }

    /// Rewrite the arena with only the live entries (tombstones too unless `drop_tombstones`).
    fn compact(&mut self, hasher: &RandomState, drop_tombstones: bool) {
        let old = std::mem::take(&mut self.arena);
        let live = old.len() - self.garbage;
        let mut arena = Vec::with_capacity(live + live / 8);
        let mut moved = Vec::with_capacity(self.table.len());
        for &o in self.table.iter() {
            let (value, len) = value_of(&old, o);
            if value.is_none() && drop_tombstones {
                continue;
            }
            let start = o as usize;
            // The new arena is no longer than the old one, whose offsets fit a u32.
            moved.push((hasher.hash_one(key_of(&old, o)), arena.len() as u32));
            arena.extend_from_slice(&old[start..start + len]);
        }
        let mut table = HashTable::with_capacity(moved.len());
        for (hash, offset) in moved {
            table.insert_unique(hash, offset, |&o| hasher.hash_one(key_of(&arena, o)));
        }
        self.arena = arena;
        self.table = table;
        self.garbage = 0;
    }
}

impl ReadIndex {
    /// An index in the `Off` state that may hold up to `budget` bytes (0: no limit).
    pub fn new(budget: usize) -> ReadIndex {
        ReadIndex {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            state: AtomicU8::new(OFF),
            bytes: AtomicI64::new(0),
            budget,
        }
    }

    pub fn state(&self) -> IndexState {
        match self.state.load(Ordering::Acquire) {
            OFF => IndexState::Off,
            LOADING => IndexState::Loading,
            COMPLETE => IndexState::Complete,
            _ => IndexState::Disabled,
        }
    }

    /// Bytes held (arenas with their garbage, and the tables).
    pub fn bytes(&self) -> usize {
        usize::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Keys held (tombstones included while loading).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start recording writes (`Off` → `Loading`); false if it was not off. The loader must
    /// start reading sled after this returned.
    pub fn start_loading(&self) -> bool {
        self.state
            .compare_exchange(OFF, LOADING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The loader read everything: absent keys are now known absent, and the tombstones
    /// that guarded deletions against the loader are dropped.
    pub fn finish_loading(&self) {
        if self
            .state
            .compare_exchange(LOADING, COMPLETE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        for shard in self.shards.iter() {
            let mut s = write(shard);
            let before = s.capacity_bytes();
            s.compact(&self.hasher, true);
            self.account(before, s.capacity_bytes());
        }
    }

    /// Drop everything and send every lookup to sled from now on.
    pub fn disable(&self) {
        self.state.store(DISABLED, Ordering::Release);
        for shard in self.shards.iter() {
            let mut s = write(shard);
            let held = s.capacity_bytes();
            *s = Shard::default();
            drop(s);
            self.bytes.fetch_sub(held as i64, Ordering::Relaxed);
        }
    }

    fn recording(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), LOADING | COMPLETE)
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 56) as usize % SHARDS]
    }

    /// Run `f` on the stored bytes of `key`, under the shard's read lock.
    pub fn lookup<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Lookup<R> {
        let state = self.state.load(Ordering::Acquire);
        if !matches!(state, LOADING | COMPLETE) {
            return Lookup::Unknown;
        }
        let hash = self.hasher.hash_one(key);
        let shard = read(self.shard(hash));
        match shard.find(hash, key) {
            Some(o) => match value_of(&shard.arena, o).0 {
                Some(v) => Lookup::Found(f(v)),
                None => Lookup::Absent,
            },
            None if state == COMPLETE => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }

    /// A write committed `key` = `value` (`None`: deleted). Call under the registry's writer
    /// lock, after the commit.
    pub fn record(&self, key: &[u8], value: Option<&[u8]>) {
        let state = self.state.load(Ordering::Acquire);
        if !matches!(state, LOADING | COMPLETE) {
            return;
        }
        if value.is_none() && state == COMPLETE {
            self.remove(key);
        } else {
            self.upsert(key, value, true);
        }
    }

    /// The loader read `key` = `value` from sled: held unless a write got there first.
    pub fn fill(&self, key: &[u8], value: &[u8]) {
        if self.state.load(Ordering::Acquire) == LOADING {
            self.upsert(key, Some(value), false);
        }
    }

    /// Change the shard of `key` under its write lock, then compact it if due and account
    /// the size change. Skipped once the index stops recording: checked under the lock,
    /// because `disable` sets the state before it clears each shard under that lock, so
    /// nothing lands in a shard it already cleared. `change` returns false when the shard
    /// cannot take the change (it outgrew its u32 offsets): the index is then dropped.
    fn change_shard(&self, key: &[u8], change: impl FnOnce(&mut Shard, u64) -> bool) {
        let hash = self.hasher.hash_one(key);
        let mut guard = write(self.shard(hash));
        if !self.recording() {
            return;
        }
        let s = &mut *guard;
        let before = s.capacity_bytes();
        if !change(s, hash) {
            drop(guard);
            tracing::warn!("read index: a shard outgrew 4 GiB; resolutions read sled");
            self.disable();
            return;
        }
        self.maybe_compact(s);
        let after = s.capacity_bytes();
        drop(guard);
        self.account(before, after);
    }

    fn upsert(&self, key: &[u8], value: Option<&[u8]>, overwrite: bool) {
        self.change_shard(key, |s, hash| {
            let existing = s.find(hash, key);
            if existing.is_some() && !overwrite {
                return true;
            }
            let Some((offset, _)) = s.append(key, value) else {
                return false;
            };
            match existing {
                Some(old) => {
                    s.garbage += value_of(&s.arena, old).1;
                    if let Ok(mut e) = s.table.find_entry(hash, |&o| o == old) {
                        *e.get_mut() = offset;
                    }
                }
                None => {
                    let (arena, hasher) = (&s.arena, &self.hasher);
                    s.table
                        .insert_unique(hash, offset, |&o| hasher.hash_one(key_of(arena, o)));
                }
            }
            true
        });
    }

    fn remove(&self, key: &[u8]) {
        self.change_shard(key, |s, hash| {
            let arena = &s.arena;
            if let Ok(e) = s.table.find_entry(hash, |&o| key_of(arena, o) == key) {
                let (offset, _) = e.remove();
                s.garbage += value_of(&s.arena, offset).1;
            }
            true
        });
    }

    fn maybe_compact(&self, s: &mut Shard) {
        if s.garbage >= MIN_COMPACT_GARBAGE && s.garbage * 2 >= s.arena.len() {
            s.compact(&self.hasher, false);
        }
    }

    fn account(&self, before: usize, after: usize) {
        let delta = after as i64 - before as i64;
        let total = self.bytes.fetch_add(delta, Ordering::Relaxed) + delta;
        if self.budget > 0 && total > self.budget as i64 && self.recording() {
            tracing::warn!(
                held = total,
                budget = self.budget,
                "read index: over its memory budget ([store] read_index_max_mb); dropped, \
                 resolutions read sled"
            );
            self.disable();
        }
    }
}

/// First bytes of a saved index (`ReadIndex::save`), with the format's version.
const SNAPSHOT_MAGIC: &[u8; 8] = b"IDXSNAP1";

/// Why a saved index was not used (the index is then filled from sled).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the saved index: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a saved read index (wrong magic or version)")]
    Format,
    #[error("saved at sequence {saved}, the registry is at {now}")]
    Stale { saved: u64, now: u64 },
    #[error("shard {0} fails its checksum")]
    Checksum(usize),
    #[error("shard {0} is malformed")]
    Malformed(usize),
    #[error("the index is not loading")]
    NotLoading,
}

impl ReadIndex {
    /// Write every live entry, shard by shard, after a header naming `seq` (the registry's
    /// sequence: the caller holds the writer lock, so nothing changes meanwhile). Layout:
    /// magic, u64 seq, u32 shard count, then per shard u64 byte length, the entries as in
    /// the arena (tombstones and garbage left out), u32 CRC-32 of those bytes.
    pub fn save(&self, out: &mut impl std::io::Write, seq: u64) -> std::io::Result<()> {
        out.write_all(SNAPSHOT_MAGIC)?;
        out.write_all(&seq.to_le_bytes())?;
        out.write_all(&(SHARDS as u32).to_le_bytes())?;
        let mut live = Vec::new();
        for shard in self.shards.iter() {
            live.clear();
            let s = read(shard);
            for &o in s.table.iter() {
                let (value, len) = value_of(&s.arena, o);
                if value.is_some() {
                    live.extend_from_slice(&s.arena[o as usize..o as usize + len]);
                }
            }
            drop(s);
            out.write_all(&(live.len() as u64).to_le_bytes())?;
            out.write_all(&live)?;
            out.write_all(&crc32fast::hash(&live).to_le_bytes())?;
        }
        Ok(())
    }

    /// Fill a loading index from what [`ReadIndex::save`] wrote at sequence `seq`; on
    /// success the index is complete. On error it is left as it was found empty (the caller
    /// fills it from sled instead). Each shard is checked (length bound, CRC-32, every entry
    /// inside it) before any of it is used.
    pub fn load_saved(&self, input: &mut impl Read, seq: u64) -> Result<(), SnapshotError> {
        if self.state.load(Ordering::Acquire) != LOADING {
            return Err(SnapshotError::NotLoading);
        }
        let mut header = [0u8; 20];
        input.read_exact(&mut header)?;
        if &header[..8] != SNAPSHOT_MAGIC
            || u32::from_le_bytes([header[16], header[17], header[18], header[19]]) as usize
                != SHARDS
        {
            return Err(SnapshotError::Format);
        }
        let saved = u64::from_le_bytes(
            header[8..16]
                .try_into()
                .map_err(|_| SnapshotError::Format)?,
        );
        if saved != seq {
            return Err(SnapshotError::Stale { saved, now: seq });
        }
        // Keys are re-sharded: this index's hasher is not the one that saved them.
        let mut fresh: Vec<Shard> = (0..SHARDS).map(|_| Shard::default()).collect();
        let mut seen = 0usize;
        for i in 0..SHARDS {
            let mut len = [0u8; 8];
            input.read_exact(&mut len)?;
            let len = usize::try_from(u64::from_le_bytes(len))
                .ok()
                .filter(|&l| u32::try_from(l).is_ok())
                .ok_or(SnapshotError::Malformed(i))?;
            let mut bytes = Vec::new();
            // The length is checked against what is really there, not trusted for a
            // reservation larger than a shard normally is.
            bytes
                .try_reserve_exact(len.min(64 << 20))
                .map_err(|_| SnapshotError::Malformed(i))?;
            (&mut *input).take(len as u64).read_to_end(&mut bytes)?;
            let mut crc = [0u8; 4];
            input.read_exact(&mut crc)?;
            if bytes.len() != len {
                return Err(SnapshotError::Malformed(i));
            }
            if crc32fast::hash(&bytes) != u32::from_le_bytes(crc) {
                return Err(SnapshotError::Checksum(i));
            }
            for (key, value) in entries(&bytes).ok_or(SnapshotError::Malformed(i))? {
                let hash = self.hasher.hash_one(key);
                let shard = &mut fresh[(hash >> 56) as usize % SHARDS];
                if shard.find(hash, key).is_some() {
                    return Err(SnapshotError::Malformed(i));
                }
                let (offset, _) = shard
                    .append(key, Some(value))
                    .ok_or(SnapshotError::Malformed(i))?;
                let (arena, hasher) = (&shard.arena, &self.hasher);
                shard
                    .table
                    .insert_unique(hash, offset, |&o| hasher.hash_one(key_of(arena, o)));
                seen += 1;
            }
        }
        for (shard, mut loaded) in self.shards.iter().zip(fresh) {
            let mut s = write(shard);
            // Writes recorded since loading began would be lost under the saved copy (there
            // are none when the caller holds the writer lock, as `Registry` does); an index
            // dropped meanwhile (budget, shutdown) takes nothing more.
            if !s.table.is_empty() || self.state.load(Ordering::Acquire) != LOADING {
                return Err(SnapshotError::NotLoading);
            }
            let before = s.capacity_bytes();
            std::mem::swap(&mut *s, &mut loaded);
            let after = s.capacity_bytes();
            drop(s);
            self.account(before, after);
        }
        self.finish_loading();
        tracing::debug!(records = seen, "read index loaded from its saved copy");
        Ok(())
    }
}

/// The `(key, value)` pairs of back-to-back entries; `None` if one runs past the end or is a
/// tombstone.
fn entries(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut o = 0usize;
    while o < bytes.len() {
        let header = bytes.get(o..o + HEADER)?;
        let key_len = u16::from_le_bytes([header[0], header[1]]) as usize;
        let value_len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
        if value_len == TOMBSTONE {
            return None;
        }
        let key_end = o + HEADER + key_len;
        let end = key_end.checked_add(value_len as usize)?;
        if end > bytes.len() {
            return None;
        }
        out.push((&bytes[o + HEADER..key_end], &bytes[key_end..end]));
        o = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn get(index: &ReadIndex, key: &str) -> Lookup<Vec<u8>> {
        index.lookup(key.as_bytes(), <[u8]>::to_vec)
    }

    #[test]
    fn off_knows_nothing_and_records_nothing() {
        let index = ReadIndex::new(0);
        index.record(b"a", Some(b"1"));
        index.fill(b"a", b"1");
        assert_eq!(get(&index, "a"), Lookup::Unknown);
        assert!(index.is_empty());
    }

    #[test]
    fn loading_a_write_wins_over_the_loader_and_a_deletion_stays_deleted() {
        let index = ReadIndex::new(0);
        assert!(index.start_loading());
        assert!(!index.start_loading());
        index.record(b"88.100/A", Some(b"new"));
        index.fill(b"88.100/A", b"old, read before the write");
        index.record(b"88.100/B", None);
        index.fill(b"88.100/B", b"read before the deletion");
        index.fill(b"88.100/C", b"c");
        assert_eq!(get(&index, "88.100/A"), Lookup::Found(b"new".to_vec()));
        assert_eq!(get(&index, "88.100/B"), Lookup::Absent);
        assert_eq!(get(&index, "88.100/C"), Lookup::Found(b"c".to_vec()));
        // Not loaded yet: the index cannot say.
        assert_eq!(get(&index, "88.100/D"), Lookup::Unknown);
        index.finish_loading();
        assert_eq!(index.state(), IndexState::Complete);
        assert_eq!(get(&index, "88.100/D"), Lookup::Absent);
        assert_eq!(get(&index, "88.100/B"), Lookup::Absent);
        assert_eq!(index.len(), 2, "the tombstone is dropped");
        // The loader is done: late fills change nothing.
        index.fill(b"88.100/D", b"late");
        assert_eq!(get(&index, "88.100/D"), Lookup::Absent);
    }

    #[test]
    fn updates_compact_and_keep_every_value() {
        let index = ReadIndex::new(0);
        index.start_loading();
        index.finish_loading();
        let value = vec![7u8; 300];
        for round in 0..30u8 {
            for k in 0..2000 {
                let mut v = value.clone();
                v[0] = round;
                index.record(format!("88.100/K{k}").as_bytes(), Some(&v));
            }
        }
        for k in 0..2000 {
            match get(&index, &format!("88.100/K{k}")) {
                Lookup::Found(v) => assert_eq!((v[0], v.len()), (29, 300)),
                other => panic!("K{k}: {other:?}"),
            }
        }
        // 30 rounds of 2000 × ~315 bytes were written; compaction keeps at most half a
        // shard's arena as garbage (plus the small shards' allowance).
        let written = 30 * 2000 * 315;
        assert!(index.bytes() < written / 4, "{} bytes held", index.bytes());
        for k in 0..2000 {
            index.record(format!("88.100/K{k}").as_bytes(), None);
        }
        assert!(index.is_empty());
        assert_eq!(get(&index, "88.100/K1"), Lookup::Absent);
    }

    fn loaded(pairs: &[(&str, &str)]) -> ReadIndex {
        let index = ReadIndex::new(0);
        index.start_loading();
        for (k, v) in pairs {
            index.fill(k.as_bytes(), v.as_bytes());
        }
        index.finish_loading();
        index
    }

    #[test]
    fn a_saved_index_loads_back_and_a_damaged_one_is_refused() {
        let index = loaded(&[("88.100/A", "a"), ("88.100/B", "b"), ("88.100/C", "c")]);
        index.record(b"88.100/A", Some(b"a2"));
        index.record(b"88.100/C", None);
        let mut saved = Vec::new();
        index.save(&mut saved, 42).unwrap();

        let back = ReadIndex::new(0);
        back.start_loading();
        back.load_saved(&mut saved.as_slice(), 42).unwrap();
        assert_eq!(back.state(), IndexState::Complete);
        assert_eq!(get(&back, "88.100/A"), Lookup::Found(b"a2".to_vec()));
        assert_eq!(get(&back, "88.100/B"), Lookup::Found(b"b".to_vec()));
        assert_eq!(get(&back, "88.100/C"), Lookup::Absent);
        assert_eq!(back.len(), 2);

        let refused = |bytes: &[u8], seq: u64| {
            let fresh = ReadIndex::new(0);
            fresh.start_loading();
            let e = fresh.load_saved(&mut &bytes[..], seq).unwrap_err();
            assert_eq!(fresh.state(), IndexState::Loading, "{e}");
            assert!(fresh.is_empty());
            e
        };
        assert!(matches!(
            refused(&saved, 43),
            SnapshotError::Stale { saved: 42, now: 43 }
        ));
        assert!(matches!(
            refused(&saved[..saved.len() - 3], 42),
            SnapshotError::Io(_)
        ));
        assert!(matches!(
            refused(b"not a saved index, not at all", 42),
            SnapshotError::Format
        ));
        // Flip one byte of some entry: its shard's checksum fails.
        let at = saved.windows(2).position(|w| w == b"a2").unwrap();
        let mut damaged = saved.clone();
        damaged[at] ^= 1;
        assert!(matches!(refused(&damaged, 42), SnapshotError::Checksum(_)));
    }

    /// Shutdown drops an index while its loader and writers are still at work: the byte
    /// count never goes wrong (it once underflowed) and the index ends empty.
    #[test]
    fn dropped_while_filling_it_ends_empty() {
        for _ in 0..20 {
            let index = std::sync::Arc::new(ReadIndex::new(0));
            index.start_loading();
            let filler = {
                let index = index.clone();
                std::thread::spawn(move || {
                    for k in 0..5000 {
                        index.fill(format!("88.100/K{k}").as_bytes(), &[7u8; 100]);
                        index.record(format!("88.100/W{k}").as_bytes(), Some(&[1u8; 50]));
                        index.record(format!("88.100/K{}", k / 2).as_bytes(), None);
                    }
                })
            };
            std::thread::sleep(std::time::Duration::from_micros(200));
            index.disable();
            filler.join().unwrap();
            assert_eq!(index.state(), IndexState::Disabled);
            assert!(index.is_empty());
            assert_eq!(index.bytes(), 0);
        }
    }

    #[test]
    fn over_its_budget_it_disables_itself() {
        let index = ReadIndex::new(64 << 10);
        index.start_loading();
        for k in 0..1000 {
            index.fill(format!("88.100/K{k}").as_bytes(), &[1u8; 200]);
        }
        assert_eq!(index.state(), IndexState::Disabled);
        assert_eq!(get(&index, "88.100/K1"), Lookup::Unknown);
        assert_eq!(index.bytes(), 0);
        index.record(b"88.100/K1", Some(b"x"));
        assert!(index.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, Vec<u8>),
        Delete(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..600))
                .prop_map(|(k, v)| Op::Put(k, v)),
            any::<u8>().prop_map(Op::Delete),
        ]
    }

    proptest! {
        /// After any writes, with a loader filling a stale copy half-way, the index answers
        /// as a plain map of the writes would.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec(op(), 0..400), stale in any::<bool>()) {
            let index = ReadIndex::new(0);
            index.start_loading();
            let mut model: HashMap<u8, Vec<u8>> = HashMap::new();
            for i in 0..=ops.len() {
                if stale && i == ops.len() / 2 {
                    for k in 0..=255u8 {
                        index.fill(&[k], b"stale");
                    }
                }
                match ops.get(i) {
                    Some(Op::Put(k, v)) => {
                        index.record(&[*k], Some(v));
                        model.insert(*k, v.clone());
                    }
                    Some(Op::Delete(k)) => {
                        index.record(&[*k], None);
                        model.remove(k);
                    }
                    None => {}
                }
            }
            index.finish_loading();
            for k in 0..=255u8 {
                let got = index.lookup(&[k], <[u8]>::to_vec);
                let want = match model.get(&k) {
                    Some(v) => Lookup::Found(v.clone()),
                    // Never written nor deleted: the loader's stale copy.
                    None if stale && !ops.iter().any(|o| matches!(o, Op::Put(x, _) | Op::Delete(x) if *x == k)) => {
                        Lookup::Found(b"stale".to_vec())
                    }
                    None => Lookup::Absent,
                };
                prop_assert_eq!(got, want, "key {}", k);
            }
        }
    }
}
