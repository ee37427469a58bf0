//! The writing half of a bulk load (`idnode import`): prepared records go to a writer thread in
//! batches, and each batch is committed with [`Registry::import_batch`] (one transaction,
//! committed but not yet durable; see the module docs of [`crate::store`], "Bulk loads").
//!
//! The caller's thread keeps reading, checking and encoding while the writer commits, and a
//! few batches in flight keep both busy without holding the input in memory.
//!
//! Only the mechanics of writing live here, because they need nothing but the registry. What
//! a line must be to be imported (its handle under the node's case rule, the node's
//! responsibility and partition, value checks, timestamps) is the engine's rule and lives in
//! [`crate::resolve::import`], above the store, which drives this.

use std::sync::mpsc::{sync_channel, SyncSender};

use super::{lock, now_unix_millis, record, Action, Change};
use super::{ImportLog, PreparedRecord, Registry, StoreError};

/// Full batches waiting for the writer before the producer blocks.
const BATCHES_IN_FLIGHT: usize = 4;

/// Why the writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the import writer thread panicked")]
    Panicked,
}

/// What the writer thread is handed, in the order of the input.
enum Job {
    Records(Vec<PreparedRecord>),
    /// A `{"delete": key}` line of an online export.
    Delete(String),
}

/// Gathers prepared records into batches and hands each full one to the writer.
pub struct Batcher {
    batch: Vec<PreparedRecord>,
    batch_size: usize,
    tx: SyncSender<Job>,
}

impl Batcher {
    /// Add a record. `false` when the writer has stopped on an error (which
    /// [`write_batches`] returns): the producer should stop.
    pub fn push(&mut self, record: PreparedRecord) -> bool {
        self.batch.push(record);
        if self.batch.len() < self.batch_size {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        self.tx.send(Job::Records(full)).is_ok()
    }

    /// Delete the record under the normalized `key`, after every record pushed before it
    /// (the partial batch is handed over first, so the input's order holds). `false` when
    /// the writer has stopped on an error.
    pub fn delete(&mut self, key: &str) -> bool {
        if !self.batch.is_empty() {
            let partial = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
            if self.tx.send(Job::Records(partial)).is_err() {
                return false;
            }
        }
        self.tx.send(Job::Delete(key.to_string())).is_ok()
    }
}

impl Registry {
    /// Bulk load: remove the record under `key` (a delete line of an online export), with a
    /// delete entry in the change log under [`ImportLog::Entries`], committed like
    /// [`Registry::import_batch`] (not yet durable). `false` when there was no record.
    pub fn import_delete(&self, key: &str, log: &ImportLog) -> Result<bool, StoreError> {
        let last_seq = lock(&self.writer);
        let start = *last_seq;
        let logged = log.logged_at(start)?;
        if !self.records.contains_key(key.as_bytes())? {
            return Ok(false);
        }
        if !logged {
            self.records.remove(key.as_bytes())?;
            self.indexed([(key.as_bytes(), None)]);
            return Ok(true);
        }
        let seq = start + 1;
        let change = record::encode_change(&Change {
            seq,
            unix_millis: now_unix_millis(),
            action: Action::Delete,
            key: key.to_string(),
            record: None,
        });
        self.commit(&[(key.as_bytes(), None)], &[(seq, change)])?;
        self.committed(last_seq, seq);
        Ok(true)
    }
}

/// Run `produce` on this thread, feeding the records it pushes to a writer thread in batches
/// of `batch_size` (at least 1), each committed with [`Registry::import_batch`] under `log`.
///
/// When `produce` returns `Ok`, its last, partial batch is written too; when it returns an
/// error, the batches already handed over are written and the rest is dropped. The writer's
/// error comes first (it is why production stopped), then the producer's. Returns the
/// records written and what `produce` returned. Nothing is made durable here: the caller
/// runs [`Registry::make_all_durable`] once at the end.
pub fn write_batches<T, E>(
    registry: &Registry,
    log: &ImportLog,
    batch_size: usize,
    produce: impl FnOnce(&mut Batcher) -> Result<T, E>,
) -> Result<(usize, T), E>
where
    E: From<WriteError>,
{
    let batch_size = batch_size.max(1);
    let (tx, rx) = sync_channel::<Job>(BATCHES_IN_FLIGHT);
    let (written, produced) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> Result<usize, StoreError> {
            let mut written = 0usize;
            for job in rx {
                match job {
                    Job::Records(batch) => {
                        registry.import_batch(&batch, log)?;
                        written += batch.len();
                    }
                    Job::Delete(key) => {
                        registry.import_delete(&key, log)?;
                    }
                }
            }
            Ok(written)
        });
        let mut batcher = Batcher {
            batch: Vec::with_capacity(batch_size),
            batch_size,
            tx,
        };
        let produced = produce(&mut batcher);
        if produced.is_ok() && !batcher.batch.is_empty() {
            // An error here means the writer stopped; it is reported below.
            let _ = batcher
                .tx
                .send(Job::Records(std::mem::take(&mut batcher.batch)));
        }
        // Closing the channel ends the writer's loop.
        drop(batcher);
        let written = match writer.join() {
            Ok(written) => written.map_err(WriteError::from),
            Err(_) => Err(WriteError::Panicked),
        };
        (written, produced)
    });
    let written = written?;
    Ok((written, produced?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Handle, HandleValue, SuffixCase};
    use crate::store::{Record, StoreOptions};

    fn prepared(n: usize) -> PreparedRecord {
        let handle = Handle::parse(&format!("88.100/{n}"), SuffixCase::Sensitive).unwrap();
        let record = Record {
            handle: handle.as_str().to_string(),
            values: vec![HandleValue::new(1, "URL", format!("https://x/{n}"))],
        };
        PreparedRecord::new(&handle, &record).unwrap()
    }

    #[test]
    fn writes_every_batch_and_the_partial_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        let (written, out) = write_batches::<_, WriteError>(&reg, &ImportLog::Entries, 3, |b| {
            for n in 0..10 {
                assert!(b.push(prepared(n)));
            }
            Ok("done")
        })
        .unwrap();
        assert_eq!((written, out), (10, "done"));
        assert_eq!(reg.last_seq(), 10, "one change-log entry per record");
        let h = Handle::parse("88.100/9", SuffixCase::Sensitive).unwrap();
        assert!(reg.get(&h).unwrap().is_some());
    }

    #[test]
    fn a_producer_error_drops_its_partial_batch() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        #[derive(Debug)]
        enum E {
            Write,
            Read,
        }
        impl From<WriteError> for E {
            fn from(_: WriteError) -> E {
                E::Write
            }
        }
        let r = write_batches::<(), E>(&reg, &ImportLog::Entries, 2, |b| {
            for n in 0..5 {
                b.push(prepared(n));
            }
            Err(E::Read)
        });
        assert!(matches!(r, Err(E::Read)));
        // The two full batches were handed over and written; the fifth record was not.
        assert_eq!(reg.last_seq(), 4);
    }

    #[test]
    fn a_writer_error_stops_the_producer_and_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        let reset = reg.reset_change_feed().unwrap();
        // The feed moves on after the reset: an unlogged load must refuse to write.
        reg.import_batch(&[prepared(100)], &ImportLog::Entries)
            .unwrap();
        let log = ImportLog::Unlogged(reset);
        let mut pushed = 0usize;
        let r = write_batches::<usize, WriteError>(&reg, &log, 1, |b| {
            while pushed < 1000 && b.push(prepared(pushed)) {
                pushed += 1;
            }
            Ok(pushed)
        });
        assert!(matches!(
            r,
            Err(WriteError::Store(StoreError::FeedMoved { .. }))
        ));
        assert!(pushed < 1000, "the producer stopped once the writer had");
    }

    #[test]
    fn deletes_keep_their_place_among_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        let (written, _) = write_batches::<_, WriteError>(&reg, &ImportLog::Entries, 3, |b| {
            assert!(b.push(prepared(1)));
            assert!(b.push(prepared(2)));
            // Deleted after its put (still in the partial batch), put again after.
            assert!(b.delete("88.100/1"));
            assert!(b.delete("88.100/2"));
            assert!(b.push(prepared(2)));
            // A key that never was: nothing to delete, nothing logged.
            assert!(b.delete("88.100/none"));
            Ok(())
        })
        .unwrap();
        assert_eq!(written, 3);
        assert!(reg.get_key("88.100/1").unwrap().is_none());
        assert!(reg.get_key("88.100/2").unwrap().is_some());
        assert_eq!(reg.last_seq(), 5, "three puts and two deletes logged");
        let log = reg.changes_after(0, 10).unwrap();
        assert_eq!(log[2].action, Action::Delete);
        // Unlogged: removed, the sequence unmoved.
        let reset = reg.reset_change_feed().unwrap();
        let seq = reg.last_seq();
        assert!(reg
            .import_delete("88.100/2", &ImportLog::Unlogged(reset))
            .unwrap());
        assert!(reg.get_key("88.100/2").unwrap().is_none());
        assert_eq!(reg.last_seq(), seq);
    }
}
