//! The registry: identifier records, homed prefixes and the change log, in sled.
//!
//! Trees (one per keyspace, keys big-endian where numeric):
//! - `records`: normalized handle key → [`Record`] (checksummed, strictly decoded);
//! - `prefixes`: normalized prefix → u64 unix seconds when it was homed;
//! - `log`: u64 sequence → [`Change`], the record as it is after the change;
//! - `meta`: `schema_version` (u32), `last_seq` (u64), `cursor/<link>` (u64: the upstream
//!   sequence a follow link has applied up to; see [`Registry::apply_replicated`]),
//!   `bootstrap/<link>` (a paged bootstrap under way; see [`bootstrap`]).
//!
//! Beside this file: [`record`] (the stored formats), [`import`] (the bulk loader's writer),
//! `prefixes` (homing and unhoming), `replicate` (snapshots, follow-link cursors and the writes
//! that apply an upstream's changes), [`bootstrap`] (paged snapshots: the pages an upstream
//! serves and a follower applies) and `durability` (flush + `fsync`, group commit).
//!
//! Every mutation is one sled transaction over `records`, `log` and `meta`, so a record and the
//! log entry describing it are written together or not at all. Writers are serialized by a
//! mutex, so sequence numbers are dense and ordered.
//!
//! # Durability
//!
//! sled on its own only guarantees what its background flusher has synced (every 500 ms by
//! default), and its explicit flush path on Linux uses `sync_file_range`, which neither flushes
//! file metadata nor the device cache, and sled never syncs its blob files. An acknowledgement
//! needs more, so [`Registry::mutate`] and [`Registry::put_batch`] return only after
//! [`Registry::make_durable`] has run: `Db::flush()`, then `fsync` of sled's data file and of
//! any new blob files. Concurrent writers share one flush (group commit): a writer whose change
//! was covered by another writer's flush returns without flushing again. When a mutation
//! returns `Ok`, the change is on disk.
//!
//! # Bulk loads
//!
//! `idnode import` writes through [`Registry::import_batch`]: each batch is one transaction
//! (records, their change-log entries and `last_seq`, all or nothing after a crash) but is
//! not flushed on its own; sled's background flusher writes it out within `flush_every_ms`,
//! and the loader calls [`Registry::make_all_durable`] (flush + `fsync`) once at the end,
//! before it reports anything as imported. So an interrupted load leaves some whole batches
//! behind (re-running it is safe: a record imported twice is replaced, its entry says
//! "update"), and a finished one is on disk. An unlogged load
//! ([`Registry::reset_change_feed`] + [`ImportLog::Unlogged`]) skips the per-record
//! entries and makes followers re-bootstrap instead.

pub mod bootstrap;
mod durability;
pub mod import;
pub mod index;
mod indexing;
mod prefixes;
pub mod record;
mod replicate;
pub mod stamps;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

// A panic while holding one of the store's locks leaves no partial state behind (sled
// transactions are atomic), so a poisoned lock is safe to take over.
use crate::lock::lock;
use crate::model::codec::DecodeError;
use crate::model::{Handle, Prefix};
use durability::Durability;
pub use record::{Action, Change, Record};

/// The on-disk schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Change-log entries removed per sled batch when truncating.
const TRUNCATE_CHUNK: usize = 100_000;

/// Largest encoded record accepted (values of one identifier together).
pub const MAX_RECORD_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt stored data under {key:?}: {source}")]
    Corrupt { key: String, source: DecodeError },
    #[error("data directory has schema version {found}; this build needs {expected}")]
    Schema { found: u32, expected: u32 },
    #[error("record is {0} bytes encoded, more than the {MAX_RECORD_BYTES}-byte limit")]
    RecordTooLarge(usize),
    #[error(
        "the change log moved on (sequence {now}) since it was reset at {reset}: \
         an unlogged bulk load needs the registry to itself"
    )]
    FeedMoved { reset: u64, now: u64 },
}

/// What a mutation closure decided to do with the record.
#[derive(Debug)]
pub enum Mutation {
    /// Write this record (creating it if it did not exist).
    Put(Record),
    /// Remove the record.
    Delete,
    /// Nothing to write.
    Unchanged,
}

/// A record encoded for a bulk write: its normalized key and stored bytes, checked against
/// [`MAX_RECORD_BYTES`]. Preparing is pure CPU work, so a loader can do it on another thread
/// than the one writing to sled.
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    key: String,
    bytes: Vec<u8>,
}

impl PreparedRecord {
    pub fn new(handle: &Handle, record: &Record) -> Result<PreparedRecord, StoreError> {
        let bytes = encode_bounded(record)?;
        Ok(PreparedRecord {
            key: handle.key().to_string(),
            bytes,
        })
    }

    /// The normalized key the record is stored under.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Proof that [`Registry::reset_change_feed`] ran: the sequence the feed was reset to.
#[derive(Debug)]
pub struct FeedReset {
    seq: u64,
}

/// What a bulk load ([`Registry::import_batch`]) writes to the change log.
#[derive(Debug)]
pub enum ImportLog {
    /// A create/update entry per record, in the batch's transaction: followers receive the
    /// records through the change feed like any other change.
    Entries,
    /// No entries, after the feed was reset (followers re-bootstrap from a snapshot). The
    /// sequence does not move for these batches, so whatever is keyed on
    /// [`Registry::last_seq`] in a running node (answer caches, the DNS SOA serial) would
    /// not notice them: for offline loads only (`idnode import`, node stopped).
    Unlogged(FeedReset),
}

impl ImportLog {
    /// Whether a batch starting at sequence `start` writes log entries; an unlogged load
    /// fails once anything was logged since its reset ([`StoreError::FeedMoved`]).
    fn logged_at(&self, start: u64) -> Result<bool, StoreError> {
        match self {
            ImportLog::Entries => Ok(true),
            ImportLog::Unlogged(reset) if reset.seq == start => Ok(false),
            ImportLog::Unlogged(reset) => Err(StoreError::FeedMoved {
                reset: reset.seq,
                now: start,
            }),
        }
    }
}

/// Result of a committed (and durable) mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Sequence number of the change-log entry, or `None` if nothing changed.
    pub seq: Option<u64>,
    /// Whether a record existed before.
    pub existed: bool,
}

/// Options for opening a registry.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_capacity_bytes: u64,
    /// sled's background flush interval (it is also what `fsync`s between our own flushes).
    pub flush_every_ms: u64,
    /// Most bytes the read index ([`index`]) may hold before it gives up (0: no limit). The
    /// index holds nothing until [`Registry::load_read_index`] is called.
    pub read_index_budget_bytes: u64,
    /// Group commit window: a write arriving within this long of the previous flush waits
    /// out the rest of it, so one flush covers the writes of the window
    /// ([`Registry::make_durable`]). Zero: every write flushes at once unless another
    /// writer's flush covers it.
    pub commit_window: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: 256 << 20,
            flush_every_ms: 500,
            read_index_budget_bytes: 0,
            commit_window: std::time::Duration::ZERO,
        }
    }
}

/// The identifier registry. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Registry {
    path: PathBuf,
    db: sled::Db,
    records: sled::Tree,
    prefixes: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
    data_file: File,
    writer: Mutex<u64>,
    committed_seq: AtomicU64,
    durability: Mutex<Durability>,
    durable_seq: durability::DurableSeq,
    /// See [`StoreOptions::commit_window`].
    commit_window: std::time::Duration,
    /// Every record's bytes in memory once loaded (`index`): resolutions read it first.
    index: index::ReadIndex,
    /// Which prepared answers a write retires (`stamps`).
    stamps: stamps::ChangeStamps,
    /// The `prefixes` tree's keys in memory: every resolution asks whether its prefix is
    /// homed, and this answers without a sled read. Changed only by `set_prefix`, under the
    /// writer lock, after its transaction.
    homed: std::sync::RwLock<std::collections::HashSet<Box<str>>>,
    /// The saved read index this open took aside for `load_read_index` (`indexing`).
    saved_index: Mutex<Option<PathBuf>>,
    /// Set once the read index was saved: a later write removes the saved copy.
    index_saved: std::sync::atomic::AtomicBool,
}

const META_SCHEMA: &[u8] = b"schema_version";
const META_LAST_SEQ: &[u8] = b"last_seq";

/// A sled transaction's outcome as ours. The registry's transaction closures never abort, so
/// an abort can only mean a sled fault and is reported as an I/O error.
fn transacted<T>(
    result: Result<T, sled::transaction::TransactionError<()>>,
) -> Result<T, StoreError> {
    use sled::transaction::TransactionError;
    match result {
        Ok(value) => Ok(value),
        Err(TransactionError::Storage(e)) => Err(e.into()),
        Err(TransactionError::Abort(())) => {
            Err(StoreError::Io(std::io::Error::other("transaction aborted")))
        }
    }
}

/// A record's stored bytes, refused past [`MAX_RECORD_BYTES`].
fn encode_bounded(record: &Record) -> Result<Vec<u8>, StoreError> {
    let bytes = record::encode_record(record);
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(StoreError::RecordTooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// A record read back from the `records` tree with its key (which corrupt bytes are reported
/// under).
fn decode_stored(key: &[u8], bytes: &[u8]) -> Result<(String, Record), StoreError> {
    let key = String::from_utf8_lossy(key).into_owned();
    match record::decode_record(bytes) {
        Ok(rec) => Ok((key, rec)),
        Err(source) => Err(StoreError::Corrupt { key, source }),
    }
}

fn now_unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn be_u64(bytes: &[u8], key: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: key.to_string(),
        source: DecodeError::Invalid {
            what: "u64",
            reason: format!("{} bytes", bytes.len()),
        },
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// Open sled, waiting up to two seconds for its file lock: a registry closed a moment ago in
/// this process (a restart, a test) releases the lock only when sled's background flusher
/// thread has wound down. Another process holding the lock still fails after the wait.
fn open_with_lock_wait(config: &sled::Config) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

impl Registry {
    /// Open (or create) the registry in `path`.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Registry, StoreError> {
        std::fs::create_dir_all(path)?;
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(Some(options.flush_every_ms.max(1)))
            // Large segments keep records inline in the log file instead of in blob files.
            .segment_size(8 << 20);
        let db = open_with_lock_wait(&config)?;
        let records = db.open_tree("records")?;
        let prefixes = db.open_tree("prefixes")?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        match meta.get(META_SCHEMA)? {
            None => {
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        let last_seq = match meta.get(META_LAST_SEQ)? {
            Some(v) => be_u64(&v, "meta/last_seq")?,
            None => 0,
        };
        let data_file = File::open(path.join("db"))?;
        let saved_index = indexing::take_saved(path);
        let mut homed = std::collections::HashSet::new();
        for key in prefixes.iter().keys() {
            homed.insert(String::from_utf8_lossy(&key?).into());
        }
        let registry = Registry {
            path: path.to_path_buf(),
            db,
            records,
            prefixes,
            log,
            meta,
            data_file,
            writer: Mutex::new(last_seq),
            committed_seq: AtomicU64::new(last_seq),
            durability: Mutex::new(Durability::new()),
            durable_seq: durability::DurableSeq::default(),
            commit_window: options.commit_window,
            stamps: stamps::ChangeStamps::default(),
            homed: std::sync::RwLock::new(homed),
            saved_index: Mutex::new(saved_index),
            index_saved: std::sync::atomic::AtomicBool::new(false),
            index: index::ReadIndex::new(
                usize::try_from(options.read_index_budget_bytes).unwrap_or(usize::MAX),
            ),
        };
        // Make the schema marker (and anything recovered) durable before serving.
        registry.make_durable_force(last_seq)?;
        Ok(registry)
    }

    /// Read one record.
    pub fn get(&self, handle: &Handle) -> Result<Option<Record>, StoreError> {
        self.get_key(handle.key())
    }

    /// Read one record by its normalized key.
    /// The read index answers when it can (a hash probe); sled otherwise.
    pub fn get_key(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let decode = |bytes: &[u8]| {
            record::decode_record(bytes).map_err(|source| StoreError::Corrupt {
                key: key.to_string(),
                source,
            })
        };
        match self.index.lookup(key.as_bytes(), decode) {
            index::Lookup::Found(record) => return record.map(Some),
            index::Lookup::Absent => return Ok(None),
            index::Lookup::Unknown => {}
        }
        match self.records.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some),
        }
    }

    /// Publish what a committed write did to the records tree: the read index takes the new
    /// bytes, then the written keys' change stamps move (call with the writer lock held,
    /// after the transaction succeeded, before the write is acknowledged).
    fn indexed<'a>(&self, writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) {
        self.forget_saved_index();
        for (key, value) in writes {
            self.index.record(key, value);
            self.stamps.written(key);
        }
    }

    /// The change stamp answers for `handle` (as a request spells it) depend on: equal to
    /// an earlier reading only if neither the handle's record nor anything structural
    /// (prefix handles, homing) was written since ([`stamps`]). Read it before the record.
    pub fn answer_stamp(&self, handle: &[u8]) -> u64 {
        self.stamps.of(handle)
    }

    /// Retire every prepared answer (something outside the registry that answers depend
    /// on changed).
    pub fn retire_answers(&self) {
        self.stamps.structure_changed();
    }

    /// Read-modify-write one record under the writer lock.
    ///
    /// `decide` sees the current record (if any) and returns what to do, or an error that is
    /// passed through without writing anything. The record and its change-log entry are
    /// written in one transaction; the call returns after the change is durable (see the
    /// module docs).
    pub fn mutate<E, F>(&self, handle: &Handle, decide: F) -> Result<Committed, E>
    where
        E: From<StoreError>,
        F: FnOnce(Option<&Record>) -> Result<Mutation, E>,
    {
        let last_seq = lock(&self.writer);
        let current = self.get(handle)?;
        let existed = current.is_some();
        let mutation = decide(current.as_ref())?;
        let key = handle.key();
        let (action, record_bytes, record) = match mutation {
            Mutation::Unchanged => return Ok(Committed { seq: None, existed }),
            Mutation::Delete if !existed => return Ok(Committed { seq: None, existed }),
            Mutation::Delete => (Action::Delete, None, None),
            Mutation::Put(rec) => {
                let bytes = encode_bounded(&rec)?;
                let action = if existed {
                    Action::Update
                } else {
                    Action::Create
                };
                (action, Some(bytes), Some(rec))
            }
        };
        let seq = *last_seq + 1;
        let change = record::encode_change(&Change {
            seq,
            unix_millis: now_unix_millis(),
            action,
            key: key.to_string(),
            record,
        });
        self.commit(
            &[(key.as_bytes(), record_bytes.as_deref())],
            &[(seq, change)],
        )?;
        self.committed(last_seq, seq);
        self.make_durable(seq)?;
        Ok(Committed {
            seq: Some(seq),
            existed,
        })
    }

    /// Write many records at once: one transaction, one log entry per record, one flush.
    /// Existing records are replaced. Returns the last sequence number once the batch is
    /// durable. (Bulk loads use [`Registry::import_batch`], which defers the flush.)
    pub fn put_batch(&self, records: &[(Handle, Record)]) -> Result<Option<u64>, StoreError> {
        if records.is_empty() {
            return Ok(None);
        }
        let prepared = records
            .iter()
            .map(|(h, r)| PreparedRecord::new(h, r))
            .collect::<Result<Vec<_>, _>>()?;
        let seq = self.import_batch(&prepared, &ImportLog::Entries)?;
        self.make_durable(seq)?;
        Ok(Some(seq))
    }

    /// Bulk load: write `batch` (existing records are replaced) atomically: under
    /// [`ImportLog::Entries`] in **one** sled transaction with a create or update entry per
    /// record in the change log and the new `last_seq` (after a crash the whole batch, entries
    /// included, is there or none of it is); under [`ImportLog::Unlogged`] as one atomic sled
    /// batch on the records tree alone. Returns the last sequence number.
    ///
    /// The batch is **committed, not yet durable**: it reaches the disk with sled's
    /// background flush (every `flush_every_ms`, without our `fsync`) or with the next
    /// [`Registry::make_durable`] / [`Registry::make_all_durable`] / acknowledged write. A bulk
    /// load calls [`Registry::make_all_durable`] once at the end and reports success only
    /// after it returned.
    ///
    /// Cost: logged, one read (the transaction's insert returns the old value, which decides
    /// create or update) and two sled inserts per record; unlogged, one insert per record and
    /// no read. No decoding, no second encoding.
    pub fn import_batch(
        &self,
        batch: &[PreparedRecord],
        log: &ImportLog,
    ) -> Result<u64, StoreError> {
        use sled::transaction::{ConflictableTransactionError, Transactional};
        let last_seq = lock(&self.writer);
        let start = *last_seq;
        let logged = log.logged_at(start)?;
        if batch.is_empty() {
            return Ok(start);
        }
        if !logged {
            // Only the records tree changes: one atomic sled batch, no transaction (which
            // would read every old value and take sled's transaction lock for nothing).
            let mut writes = sled::Batch::default();
            for p in batch {
                writes.insert(p.key.as_bytes(), p.bytes.as_slice());
            }
            self.records.apply_batch(writes)?;
            self.indexed(
                batch
                    .iter()
                    .map(|p| (p.key.as_bytes(), Some(p.bytes.as_slice()))),
            );
            return Ok(start);
        }
        let now = now_unix_millis();
        // The closure may run again on a conflict: it only reads `batch` and writes through
        // the transaction.
        let result = (&self.records, &self.log, &self.meta).transaction(|(records, log, meta)| {
            let mut seq = start;
            for p in batch {
                let old = records.insert(p.key.as_bytes(), p.bytes.as_slice())?;
                if logged {
                    seq += 1;
                    let action = if old.is_some() {
                        Action::Update
                    } else {
                        Action::Create
                    };
                    let change = record::encode_change_for_record(now, action, &p.key, &p.bytes);
                    log.insert(&seq.to_be_bytes(), change)?;
                }
            }
            if logged {
                meta.insert(META_LAST_SEQ, &seq.to_be_bytes())?;
            }
            Ok::<u64, ConflictableTransactionError<()>>(seq)
        });
        let seq = transacted(result)?;
        self.indexed(
            batch
                .iter()
                .map(|p| (p.key.as_bytes(), Some(p.bytes.as_slice()))),
        );
        self.committed(last_seq, seq);
        Ok(seq)
    }

    /// Prepare a bulk load that writes **no** change-log entries: drop the whole change log
    /// and move `last_seq` on by one with no entry, durably, before any record is written.
    /// Every follower then finds its cursor below the first retained sequence, is told to
    /// re-bootstrap (410) and takes a snapshot, which includes whatever the load wrote. The
    /// returned token lets [`Registry::import_batch`] skip the log as long as nothing else
    /// was logged since (otherwise it fails with [`StoreError::FeedMoved`]).
    ///
    /// Order matters for crashes: the log is emptied first (a partial truncation is plain
    /// log retention), then the sequence moves and is made durable; records follow only
    /// after that, so no record is ever written unlogged while a follower could still
    /// catch up from the log.
    pub fn reset_change_feed(&self) -> Result<FeedReset, StoreError> {
        let last_seq = lock(&self.writer);
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in self.log.iter().keys().take(TRUNCATE_CHUNK) {
                batch.remove(k?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.log.apply_batch(batch)?;
        }
        let seq = *last_seq + 1;
        self.meta.insert(META_LAST_SEQ, &seq.to_be_bytes())?;
        self.committed(last_seq, seq);
        self.make_durable(seq)?;
        Ok(FeedReset { seq })
    }

    /// Publish `seq` as the newest committed sequence (the writer's count and
    /// [`Registry::last_seq`]) and release the writer lock, after the transaction that wrote
    /// it succeeded. Durability is the caller's next step: a flush started from here on covers
    /// `seq`.
    fn committed(&self, mut writer: MutexGuard<'_, u64>, seq: u64) {
        *writer = seq;
        self.committed_seq.store(seq, Ordering::Release);
    }

    fn commit(
        &self,
        writes: &[(&[u8], Option<&[u8]>)],
        changes: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        use sled::transaction::{ConflictableTransactionError, Transactional};
        let last = changes.last().map(|(s, _)| *s).unwrap_or(0);
        let result = (&self.records, &self.log, &self.meta).transaction(|(records, log, meta)| {
            for (key, value) in writes {
                match value {
                    Some(v) => records.insert(*key, *v)?,
                    None => records.remove(*key)?,
                };
            }
            for (seq, bytes) in changes {
                log.insert(&seq.to_be_bytes(), bytes.as_slice())?;
            }
            meta.insert(META_LAST_SEQ, &last.to_be_bytes())?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        transacted(result)?;
        self.indexed(writes.iter().copied());
        Ok(())
    }

    /// Normalized keys of the records under `prefix`, in key order: the total count and the
    /// requested page (`page` is 0-based; `page_size` 0 means count only; `None` = all).
    pub fn list_handles(
        &self,
        prefix: &Prefix,
        page: Option<(usize, usize)>,
    ) -> Result<(usize, Vec<String>), StoreError> {
        let scan = format!("{}/", prefix.as_str());
        let (skip, take) = match page {
            Some((page, size)) => (page.saturating_mul(size), size),
            None => (0, usize::MAX),
        };
        let mut total = 0usize;
        let mut out = Vec::new();
        for item in self.records.scan_prefix(scan.as_bytes()).keys() {
            let key = item?;
            if total >= skip && out.len() < take {
                out.push(String::from_utf8_lossy(&key).into_owned());
            }
            total += 1;
        }
        Ok((total, out))
    }

    /// Every record, in key order (export, snapshots).
    pub fn iter_records(&self) -> impl Iterator<Item = Result<(String, Record), StoreError>> + '_ {
        self.records.iter().map(|item| {
            let (k, v) = item?;
            decode_stored(&k, &v)
        })
    }

    /// The records under `prefix` (`P/...`, not `0.NA/P`), in key order, read lazily from
    /// sled's range: memory stays bounded by one record whatever the prefix holds (digests).
    /// Not a point-in-time view: writes committed during the scan may or may not be seen.
    pub fn records_under(
        &self,
        prefix: &Prefix,
    ) -> impl Iterator<Item = Result<(String, Record), StoreError>> + '_ {
        let scan = format!("{}/", prefix.as_str());
        self.records.scan_prefix(scan.as_bytes()).map(|item| {
            let (k, v) = item?;
            decode_stored(&k, &v)
        })
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// The sequence of the newest change-log entry (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    /// Change-log entries with sequence > `after`, at most `limit`.
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let mut out = Vec::new();
        let start = after.saturating_add(1).to_be_bytes();
        for item in self.log.range(start..).take(limit) {
            let (k, v) = item?;
            let seq = be_u64(&k, "log key")?;
            out.push(
                record::decode_change(seq, &v).map_err(|source| StoreError::Corrupt {
                    key: format!("log/{seq}"),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    /// Drop change-log entries with a sequence below `seq` (log retention). Followers whose
    /// cursor is below `seq - 1` must then re-bootstrap from a snapshot. Returns how many
    /// entries were removed.
    ///
    /// Removes in batches of 100,000 entries (oldest first), so the memory this takes
    /// stays bounded however long the log is (a first retention pass after a bulk import may
    /// drop millions of entries); a crash in between leaves a shorter prefix removed, which
    /// is the same as a smaller truncation. Writers wait for one batch at a time, not for the
    /// whole truncation.
    pub fn truncate_log_before(&self, seq: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let _writer = lock(&self.writer);
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in self
                .log
                .range(..seq.to_be_bytes())
                .keys()
                .take(TRUNCATE_CHUNK)
            {
                batch.remove(k?);
                n += 1;
            }
            if n == 0 {
                return Ok(removed);
            }
            self.log.apply_batch(batch)?;
            removed += n;
        }
    }

    /// The oldest sequence still in the change log (`last_seq + 1` when the log is empty):
    /// "changes after N" can be served exactly when `N + 1 >= first_retained_seq()`.
    pub fn first_retained_seq(&self) -> Result<u64, StoreError> {
        let _writer = lock(&self.writer);
        match self.log.first()? {
            Some((k, _)) => be_u64(&k, "log key"),
            None => Ok(self.last_seq() + 1),
        }
    }

    /// Approximate bytes on disk (metrics).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
