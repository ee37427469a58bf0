//! When a committed change is on disk: the flush + `fsync` behind [`Registry::make_durable`]
//! and the group-commit state that lets one flush cover every writer waiting for it (the
//! walk through what sled does and does not sync is in the `store` module docs).

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::Ordering;

use super::{lock, Registry, StoreError};

/// What is on disk so far (behind `Registry::durability`, whose lock is held for a flush).
pub(super) struct Durability {
    /// Highest sequence known to be on disk.
    durable_seq: u64,
    /// Blob files already synced.
    synced_blobs: HashSet<std::ffi::OsString>,
}

impl Durability {
    /// Nothing known to be on disk yet.
    pub(super) fn new() -> Durability {
        Durability {
            durable_seq: 0,
            synced_blobs: HashSet::new(),
        }
    }
}

impl Registry {
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
        state.durable_seq = state.durable_seq.max(target).max(seq);
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
}
