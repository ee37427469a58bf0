//! When a committed change is on disk: the flush + `fsync` behind [`Registry::make_durable`]
//! and the group-commit state that lets one flush cover every writer waiting for it (the
//! walk through what sled does and does not sync is in the `store` module docs).

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{lock, Registry, StoreError};

/// What is on disk so far (behind `Registry::durability`, whose lock is held for a flush).
pub(super) struct Durability {
    /// Blob files already synced.
    synced_blobs: HashSet<std::ffi::OsString>,
    /// When the last flush started.
    last_flush: Option<Instant>,
}

impl Durability {
    /// Nothing known to be on disk yet.
    pub(super) fn new() -> Durability {
        Durability {
            synced_blobs: HashSet::new(),
            last_flush: None,
        }
    }
}

/// Highest sequence known to be on disk, readable without the durability lock (writers
/// whose change a flush already covered return without queueing for it).
#[derive(Default)]
pub(super) struct DurableSeq(AtomicU64);

impl DurableSeq {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn raise(&self, seq: u64) {
        self.0.fetch_max(seq, Ordering::AcqRel);
    }
}

impl Registry {
    /// Return once every change up to `seq` is on disk, flushing if no one else has.
    ///
    /// Group commit: one flush covers every change committed before it started, and a writer
    /// it covered returns without taking the lock. With a commit window
    /// (`StoreOptions::commit_window`), a writer arriving less than the window after the last
    /// flush started first waits out the rest of it — without holding the lock, so that
    /// others join — and then one of them flushes for all: a flush costs sled a thread-pool
    /// hand-off that wakes all its I/O threads and an `fsync` (BENCHMARKS.md: ~400 µs of CPU
    /// per write at 1000 REST writes/s when every write flushes), so at high write rates
    /// fewer flushes are most of the saving. A lone write never waits.
    pub fn make_durable(&self, seq: u64) -> Result<(), StoreError> {
        if self.durable_seq.get() >= seq {
            return Ok(());
        }
        if !self.commit_window.is_zero() {
            // Taking the lock waits out a flush under way, which may have covered `seq`.
            let last = lock(&self.durability).last_flush;
            if self.durable_seq.get() >= seq {
                return Ok(());
            }
            let wait = last.map_or(Duration::ZERO, |t| {
                self.commit_window.saturating_sub(t.elapsed())
            });
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let mut state = lock(&self.durability);
        if self.durable_seq.get() >= seq {
            return Ok(());
        }
        // Everything committed so far is covered by this flush.
        let target = self.committed_seq.load(Ordering::Acquire);
        self.sync_to_disk(&mut state)?;
        self.durable_seq.raise(target);
        Ok(())
    }

    /// Make everything committed so far durable (flush + `fsync`), even writes that moved no
    /// sequence number (an unlogged bulk load).
    pub fn make_all_durable(&self) -> Result<(), StoreError> {
        self.make_durable_force(self.last_seq())
    }

    /// Flush and `fsync` now, even when `seq` is already durable (a write that moved no
    /// sequence, such as a cursor or an unlogged batch, needs it too); afterwards everything
    /// up to `seq` counts as on disk.
    pub(super) fn make_durable_force(&self, seq: u64) -> Result<(), StoreError> {
        let mut state = lock(&self.durability);
        let target = self.committed_seq.load(Ordering::Acquire);
        self.sync_to_disk(&mut state)?;
        self.durable_seq.raise(target.max(seq));
        Ok(())
    }

    fn sync_to_disk(&self, state: &mut Durability) -> Result<(), StoreError> {
        state.last_flush = Some(Instant::now());
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
}
