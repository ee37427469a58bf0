//! The registry: identifier records, homed prefixes and the change log, in sled.
//!
//! Trees (one per keyspace, keys big-endian where numeric):
//! - `records`: normalized handle key → [`Record`] (checksummed, strictly decoded);
//! - `prefixes`: normalized prefix → u64 unix seconds when it was homed;
//! - `log`: u64 sequence → [`Change`], the record as it is after the change;
//! - `meta`: `schema_version` (u32), `last_seq` (u64), `cursor/<link>` (u64: the upstream
//!   sequence a follow link has applied up to; see [`Registry::apply_replicated`]).
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

pub mod import;
pub mod index;
pub mod record;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

// A panic while holding one of the store's locks leaves no partial state behind (sled
// transactions are atomic), so a poisoned lock is safe to take over.
use crate::lock::lock;
use crate::model::codec::DecodeError;
use crate::model::{Handle, Prefix};
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
        let bytes = record::encode_record(record);
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(StoreError::RecordTooLarge(bytes.len()));
        }
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: 256 << 20,
            flush_every_ms: 500,
        }
    }
}

struct Durability {
    /// Highest sequence known to be on disk.
    durable_seq: u64,
    /// Blob files already synced.
    synced_blobs: HashSet<std::ffi::OsString>,
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
}

const META_SCHEMA: &[u8] = b"schema_version";
const META_LAST_SEQ: &[u8] = b"last_seq";

fn now_unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
            durability: Mutex::new(Durability {
                durable_seq: 0,
                synced_blobs: HashSet::new(),
            }),
        };
        // Make the schema marker (and anything recovered) durable before serving.
        registry.sync_to_disk(&mut lock(&registry.durability))?;
        lock(&registry.durability).durable_seq = last_seq;
        Ok(registry)
    }

    /// Read one record.
    pub fn get(&self, handle: &Handle) -> Result<Option<Record>, StoreError> {
        self.get_key(handle.key())
    }

    /// Read one record by its normalized key.
    pub fn get_key(&self, key: &str) -> Result<Option<Record>, StoreError> {
        match self.records.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                record::decode_record(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Corrupt {
                        key: key.to_string(),
                        source,
                    })
            }
        }
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
        let mut last_seq = lock(&self.writer);
        let current = self.get(handle)?;
        let existed = current.is_some();
        let mutation = decide(current.as_ref())?;
        let key = handle.key();
        let (action, record_bytes, record) = match mutation {
            Mutation::Unchanged => return Ok(Committed { seq: None, existed }),
            Mutation::Delete if !existed => return Ok(Committed { seq: None, existed }),
            Mutation::Delete => (Action::Delete, None, None),
            Mutation::Put(rec) => {
                let bytes = record::encode_record(&rec);
                if bytes.len() > MAX_RECORD_BYTES {
                    return Err(StoreError::RecordTooLarge(bytes.len()).into());
                }
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
        *last_seq = seq;
        self.committed_seq.store(seq, Ordering::Release);
        drop(last_seq);
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
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        let mut last_seq = lock(&self.writer);
        let start = *last_seq;
        let logged = match log {
            ImportLog::Entries => true,
            ImportLog::Unlogged(reset) if reset.seq == start => false,
            ImportLog::Unlogged(reset) => {
                return Err(StoreError::FeedMoved {
                    reset: reset.seq,
                    now: start,
                })
            }
        };
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
        let seq = match result {
            Ok(seq) => seq,
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            // The closure never aborts.
            Err(TransactionError::Abort(())) => {
                return Err(StoreError::Io(std::io::Error::other("transaction aborted")))
            }
        };
        *last_seq = seq;
        self.committed_seq.store(seq, Ordering::Release);
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
        let mut last_seq = lock(&self.writer);
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
        *last_seq = seq;
        self.committed_seq.store(seq, Ordering::Release);
        drop(last_seq);
        self.make_durable(seq)?;
        Ok(FeedReset { seq })
    }

    /// Make everything committed so far durable (flush + `fsync`), even writes that moved no
    /// sequence number (an unlogged bulk load).
    pub fn make_all_durable(&self) -> Result<(), StoreError> {
        self.make_durable_force(self.last_seq())
    }

    fn commit(
        &self,
        writes: &[(&[u8], Option<&[u8]>)],
        changes: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
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
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            // The closure never aborts.
            Err(TransactionError::Abort(())) => {
                Err(StoreError::Io(std::io::Error::other("transaction aborted")))
            }
        }
    }

    /// Return once every change up to `seq` is on disk, flushing if no one else has.
    pub fn make_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut state = lock(&self.durability);
        if state.durable_seq >= seq {
            return Ok(());
        }
        // Everything committed so far is covered by this flush.
        let target = self.committed_seq.load(Ordering::Acquire);
        self.sync_to_disk(&mut state)?;
        state.durable_seq = state.durable_seq.max(target);
        Ok(())
    }

    fn sync_to_disk(&self, state: &mut Durability) -> Result<(), StoreError> {
        self.db.flush()?;
        self.data_file.sync_all()?;
        let blobs = self.path.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            let mut any = false;
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !state.synced_blobs.contains(&name) {
                    // A blob may be removed by sled's GC between listing and opening.
                    if let Ok(f) = File::open(entry.path()) {
                        f.sync_all()?;
                    }
                    state.synced_blobs.insert(name);
                    any = true;
                }
            }
            if any {
                File::open(&blobs)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// Home a prefix: this node answers for identifiers under it. Logged and durable.
    pub fn home_prefix(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        self.set_prefix(prefix, true)
    }

    /// Stop homing a prefix. Its records stay. Logged and durable.
    pub fn unhome_prefix(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        self.set_prefix(prefix, false)
    }

    fn set_prefix(&self, prefix: &Prefix, home: bool) -> Result<bool, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        let mut last_seq = lock(&self.writer);
        let key = prefix.as_str().as_bytes();
        if self.prefixes.contains_key(key)? == home {
            return Ok(false);
        }
        let seq = *last_seq + 1;
        let now = now_unix_millis();
        let change = record::encode_change(&Change {
            seq,
            unix_millis: now,
            action: if home {
                Action::HomePrefix
            } else {
                Action::UnhomePrefix
            },
            key: prefix.to_string(),
            record: None,
        });
        let result = (&self.prefixes, &self.log, &self.meta).transaction(|(p, log, meta)| {
            if home {
                p.insert(key, &(now / 1000).to_be_bytes())?;
            } else {
                p.remove(key)?;
            }
            log.insert(&seq.to_be_bytes(), change.as_slice())?;
            meta.insert(META_LAST_SEQ, &seq.to_be_bytes())?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => {
                return Err(std::io::Error::other("transaction aborted").into())
            }
        }
        *last_seq = seq;
        self.committed_seq.store(seq, Ordering::Release);
        drop(last_seq);
        self.make_durable(seq)?;
        Ok(true)
    }

    /// The homed prefixes, sorted.
    pub fn homed_prefixes(&self) -> Result<Vec<Prefix>, StoreError> {
        let mut out = Vec::new();
        for item in self.prefixes.iter() {
            let (k, _) = item?;
            let text = String::from_utf8_lossy(&k);
            let prefix = Prefix::parse(&text).map_err(|e| StoreError::Corrupt {
                key: text.to_string(),
                source: DecodeError::Invalid {
                    what: "homed prefix",
                    reason: e.to_string(),
                },
            })?;
            out.push(prefix);
        }
        Ok(out)
    }

    pub fn is_homed(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        Ok(self.prefixes.contains_key(prefix.as_str().as_bytes())?)
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
            let key = String::from_utf8_lossy(&k).into_owned();
            match record::decode_record(&v) {
                Ok(rec) => Ok((key, rec)),
                Err(source) => Err(StoreError::Corrupt { key, source }),
            }
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
            let key = String::from_utf8_lossy(&k).into_owned();
            match record::decode_record(&v) {
                Ok(rec) => Ok((key, rec)),
                Err(source) => Err(StoreError::Corrupt { key, source }),
            }
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
                let key = String::from_utf8_lossy(&k).into_owned();
                let rec = record::decode_record(&v).map_err(|source| StoreError::Corrupt {
                    key: key.clone(),
                    source,
                })?;
                out.push((key, rec));
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
                    Some(r) => {
                        let bytes = record::encode_record(r);
                        if bytes.len() > MAX_RECORD_BYTES {
                            return Err(StoreError::RecordTooLarge(bytes.len()));
                        }
                        Some((bytes, r.clone()))
                    }
                    None => return Err(bad_change(c, "create/update without a record")),
                },
                Action::Delete => None,
                _ => return Err(bad_change(c, "only record changes are replicated")),
            };
            entries.push((c.key.clone(), c.action, record));
        }
        self.replicate_commit(&entries, false, cursor_key, cursor)
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
            let bytes = record::encode_record(rec);
            if bytes.len() > MAX_RECORD_BYTES {
                return Err(StoreError::RecordTooLarge(bytes.len()));
            }
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
        self.replicate_commit(&deletes, true, cursor_key, seq)
    }

    /// Commit replicated entries (key, action, encoded record) and the cursor in one
    /// transaction. With `snapshot`, unchanged records are not rewritten nor logged.
    #[allow(clippy::type_complexity)]
    fn replicate_commit(
        &self,
        entries: &[(String, Action, Option<(Vec<u8>, Record)>)],
        snapshot: bool,
        cursor_key: &str,
        cursor: u64,
    ) -> Result<Option<u64>, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        let mut last_seq = lock(&self.writer);
        let now = now_unix_millis();
        let cursor_meta = format!("cursor/{cursor_key}");
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
            meta.insert(cursor_meta.as_bytes(), &cursor.to_be_bytes())?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => {
                return Err(std::io::Error::other("transaction aborted").into())
            }
        }
        let changed = seq != *last_seq;
        *last_seq = seq;
        self.committed_seq.store(seq, Ordering::Release);
        drop(last_seq);
        // The cursor moved even when no record did: always make it durable.
        self.make_durable_force(seq)?;
        Ok(changed.then_some(seq))
    }

    fn make_durable_force(&self, seq: u64) -> Result<(), StoreError> {
        let mut state = lock(&self.durability);
        let target = self.committed_seq.load(Ordering::Acquire);
        self.sync_to_disk(&mut state)?;
        state.durable_seq = state.durable_seq.max(target).max(seq);
        Ok(())
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
