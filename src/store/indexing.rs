//! The registry's read index over its life: filled at start (from the copy the last
//! shutdown saved, or from sled's records tree), kept current by the write paths
//! (`Registry::indexed`), saved at shutdown so the next start does not have to read sled.
//!
//! The saved copy (`read-index.saved` in the data directory) is only ever valid for the open
//! right after the save: every `Registry::open` — `serve`, `import`, `export` alike — takes it
//! aside (renames it to `read-index.saved.taken`), and only `load_read_index` of that same
//! open reads it, if its sequence is the registry's; a write after a save removes it. So an
//! `import` (whose unlogged batches do not move the sequence) can never leave a stale copy
//! for the next `serve`.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::index::{IndexState, SnapshotError};
use super::{lock, Registry};

const SAVED: &str = "read-index.saved";
const TAKEN: &str = "read-index.saved.taken";

/// Take the saved read index in `dir` aside for this open (see the module docs); what an
/// earlier open left taken is removed.
pub(super) fn take_saved(dir: &Path) -> Option<PathBuf> {
    let taken = dir.join(TAKEN);
    let _ = std::fs::remove_file(&taken);
    std::fs::rename(dir.join(SAVED), &taken).ok()?;
    Some(taken)
}

impl Registry {
    /// Fill the read index from the records tree (blocking: run it on its own thread). Reads
    /// are answered from sled until it is complete, and writes made meanwhile are kept in
    /// it; at 10M records it takes seconds and holds about the records' bytes plus 15 bytes
    /// each. Without this call the index stays off (command-line tools). A second call does
    /// nothing. When the last shutdown saved the index ([`Registry::save_read_index`]) and
    /// nothing was written since, that copy is read instead (a sequential read, checked
    /// shard by shard).
    pub fn load_read_index(&self) {
        let saved = lock(&self.saved_index).take();
        if !self.index.start_loading() {
            return;
        }
        let started = std::time::Instant::now();
        if let Some(path) = saved {
            let result = self.load_saved_index(&path);
            // Used or not, a saved copy serves one start only.
            let _ = std::fs::remove_file(&path);
            match result {
                Ok(()) => {
                    tracing::info!(
                        records = self.index.len(),
                        mib = self.index.bytes() >> 20,
                        secs = started.elapsed().as_secs_f64(),
                        "read index loaded (from its copy saved at the last shutdown)"
                    );
                    return;
                }
                Err(e) => {
                    tracing::info!(reason = %e, "read index: the saved copy is not used; reading sled")
                }
            }
        }
        for item in self.records.iter() {
            match item {
                Ok((key, value)) => self.index.fill(&key, &value),
                Err(e) => {
                    tracing::warn!(error = %e, "read index: reading the records failed; resolutions read sled");
                    self.index.disable();
                    return;
                }
            }
            if self.index.state() != IndexState::Loading {
                return;
            }
        }
        self.index.finish_loading();
        tracing::info!(
            records = self.index.len(),
            mib = self.index.bytes() >> 20,
            secs = started.elapsed().as_secs_f64(),
            "read index loaded"
        );
    }

    /// Stop a [`Registry::load_read_index`] under way (shutdown): the index is dropped.
    pub fn stop_loading_read_index(&self) {
        if self.index.state() == IndexState::Loading {
            self.index.disable();
        }
    }

    /// The read index's state, records held and bytes held.
    pub fn read_index_status(&self) -> (IndexState, usize, usize) {
        (self.index.state(), self.index.len(), self.index.bytes())
    }

    /// Save the read index next to the registry for the next start (`serve` calls it at
    /// shutdown, after its tasks ended). Holds the writer lock while writing, so the copy is
    /// the registry at one sequence; written to a temporary file and renamed. Returns false
    /// (and saves nothing) when the index is not complete.
    pub fn save_read_index(&self) -> std::io::Result<bool> {
        if self.index.state() != IndexState::Complete {
            return Ok(false);
        }
        let writer = lock(&self.writer);
        let seq = *writer;
        let tmp = self.path.join(format!("{SAVED}.tmp"));
        let mut out = BufWriter::new(std::fs::File::create(&tmp)?);
        self.index.save(&mut out, seq)?;
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, self.path.join(SAVED))?;
        self.index_saved.store(true, Ordering::Release);
        drop(writer);
        Ok(true)
    }

    /// A write is about to change the records: a saved copy no longer matches them.
    pub(super) fn forget_saved_index(&self) {
        if self.index_saved.swap(false, Ordering::AcqRel) {
            let _ = std::fs::remove_file(self.path.join(SAVED));
        }
    }

    fn load_saved_index(&self, path: &Path) -> Result<(), SnapshotError> {
        // Under the writer lock: every write either happened before (and moved the sequence,
        // so the copy is stale) or comes after and is recorded by the loading index.
        let seq = *lock(&self.writer);
        let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        self.index.load_saved(&mut input, seq)
    }
}
