//! Bulk loading of JSON Lines records (`idnode import`): which lines become records, and the
//! pipeline that writes them.
//!
//! A line is `{"handle": "...", "values": [...]}` in the REST value shape, and in the output
//! of an online export (`idnode export --online`) also `{"delete": "<key>"}` (the record is
//! removed, in the file's order) and the trailer `{"export": {"consistent_at_seq": S, ...}}`
//! (reported, see [`crate::wire::sync::ExportTrailer`]). A record line is imported when
//! the handle parses under the node's case rule, the node is responsible for it, and its
//! values pass the checks every write passes; values without a timestamp get the load's time
//! (the engine's one stamping rule, keeping times a record already carries, so an export
//! imported again is the same data). On a server of a multi-server site, records that hash to
//! another server are skipped: the same file feeds every server of the site.
//!
//! Why here and not in `store`: these decisions are the [`Engine`]'s (responsibility,
//! partition, case rule, stamping), and `store` sits below `resolve`. The writing half (a
//! writer thread committing batches) needs only the registry and is
//! [`crate::store::import`]; [`Importer::run`] drives it.
//!
//! The loader reports what happens through [`ImportEvent`]s (progress, rejected lines) and
//! prints nothing itself.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use super::{sorted, stamp, Engine, Stamp};
use crate::model::{validate_values, Handle};
use crate::store::import::{write_batches, WriteError};
use crate::store::{ImportLog, PreparedRecord, Record, StoreError};
use crate::wire::json as hjson;

/// Size of the input buffer (lines are read through it).
const READ_BUFFER: usize = 1 << 20;

/// What an import tells its caller while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportEvent<'a> {
    /// A line of `bytes` bytes (its newline included) was read.
    Read { bytes: u64 },
    /// Line `line` (from 1) was not imported, for `reason`.
    Rejected { line: usize, reason: &'a str },
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Records written (durable when [`Importer::run`] returns).
    pub written: usize,
    /// Lines rejected (each reported as [`ImportEvent::Rejected`]).
    pub rejected: usize,
    /// Records skipped because they hash to another server of the site.
    pub other_partitions: usize,
    /// Delete lines applied (an online export's changes after its scan).
    pub deleted: usize,
    /// The sequence an online export's trailer says the file is consistent at.
    pub consistent_at_seq: Option<u64>,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input failed.
    #[error("reading the input")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Emptying the change log before an unlogged load.
    #[error(transparent)]
    ResetFeed(StoreError),
    #[error("making the imported records durable")]
    Durable(#[source] StoreError),
}

/// Where a parsed line goes.
#[derive(Debug)]
pub enum ImportLine {
    /// A record for this server.
    Record(Handle, Record),
    /// A record that hashes to another server of the site.
    OtherPartition(Handle),
    /// `{"delete": key}`: remove the record (this server's).
    Delete(Handle),
    /// An online export's trailer.
    Trailer(crate::wire::sync::ExportTrailer),
}

/// A bulk load into the engine's registry (the node stopped: nothing else writes).
pub struct Importer<'a> {
    engine: &'a Engine,
    /// The load's time: the timestamp of values that carry none.
    now: u32,
    /// The node's responsibility per prefix. Homing does not change during an import; prefix
    /// handles `0.NA/X` are always asked afresh (their answer depends on `X`).
    responsible: HashMap<String, bool>,
}

impl<'a> Importer<'a> {
    /// A load stamped with the current time.
    pub fn new(engine: &'a Engine) -> Importer<'a> {
        Importer::at(engine, crate::model::unix_now_u32())
    }

    /// A load stamped with `now` (unix seconds).
    pub fn at(engine: &'a Engine, now: u32) -> Importer<'a> {
        Importer {
            engine,
            now,
            responsible: HashMap::new(),
        }
    }

    /// One JSON Lines line (trimmed, not empty), checked; the error is the reason the line
    /// is rejected.
    pub fn parse_line(&mut self, text: &str) -> Result<ImportLine, String> {
        let engine = self.engine;
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        if json.get("export").is_some() {
            let line: crate::wire::sync::ExportTrailerLine = serde_json::from_value(json)
                .map_err(|e| format!("malformed export trailer: {e}"))?;
            return Ok(ImportLine::Trailer(line.export));
        }
        if let Some(key) = json.get("delete") {
            let key = key.as_str().ok_or("\"delete\" is not a string")?;
            let handle = engine.parse_handle(key).map_err(|f| f.to_string())?;
            self.check_responsible(&handle)?;
            if !engine.in_partition(&handle) {
                return Ok(ImportLine::OtherPartition(handle));
            }
            return Ok(ImportLine::Delete(handle));
        }
        let (handle_text, mut values) =
            hjson::values_from_request_body(&json).map_err(|e| e.to_string())?;
        let handle_text = handle_text.ok_or("no \"handle\" field")?;
        let handle = engine
            .parse_handle(&handle_text)
            .map_err(|f| f.to_string())?;
        self.check_responsible(&handle)?;
        validate_values(&values).map_err(|e| e.to_string())?;
        if !engine.in_partition(&handle) {
            return Ok(ImportLine::OtherPartition(handle));
        }
        stamp(&mut values, self.now, Stamp::Unset);
        let record = Record {
            handle: handle.as_str().to_string(),
            values: sorted(values),
        };
        Ok(ImportLine::Record(handle, record))
    }

    /// Is the node responsible for `handle` (cached per prefix)? The reason if not.
    fn check_responsible(&mut self, handle: &Handle) -> Result<(), String> {
        let prefix = handle.prefix();
        let cached = match handle.described_prefix() {
            None => self.responsible.get(prefix.as_str()).copied(),
            Some(_) => None,
        };
        let is_responsible = match cached {
            Some(known) => known,
            None => {
                let known = self
                    .engine
                    .is_responsible(handle)
                    .map_err(|f| f.to_string())?;
                if handle.described_prefix().is_none() {
                    self.responsible.insert(prefix.as_str().to_string(), known);
                }
                known
            }
        };
        if !is_responsible {
            return Err(format!(
                "prefix {prefix} is not homed by this node (add it to node.homed_prefixes)"
            ));
        }
        Ok(())
    }

    /// Load every line of `input` in atomic batches of `batch_size` records, then make it all
    /// durable (nothing counts as imported before it is on disk). With `change_log` false the
    /// change log is emptied first and no entries are written: followers re-bootstrap from a
    /// snapshot.
    ///
    /// Lines that are not UTF-8, not a record, or not for this node are rejected (reported
    /// through `events`) and the load goes on; blank lines are skipped. A read or storage error
    /// stops it, leaving the whole batches written so far (re-running is safe).
    pub fn run(
        &mut self,
        input: impl Read,
        batch_size: usize,
        change_log: bool,
        mut events: impl FnMut(ImportEvent<'_>),
    ) -> Result<ImportSummary, ImportError> {
        let registry = self.engine.registry().clone();
        let log = if change_log {
            ImportLog::Entries
        } else {
            // Before any record is written: followers re-bootstrap from a snapshot.
            ImportLog::Unlogged(
                registry
                    .reset_change_feed()
                    .map_err(ImportError::ResetFeed)?,
            )
        };
        let (written, (rejected, other_partitions, deleted, trailer)) =
            write_batches(&registry, &log, batch_size, |batcher| {
                let (mut rejected, mut other_partitions, mut deleted) = (0usize, 0usize, 0usize);
                let mut trailer = None;
                let reader = std::io::BufReader::with_capacity(READ_BUFFER, input);
                for (i, line) in reader.split(b'\n').enumerate() {
                    let line = line.map_err(ImportError::Read)?;
                    events(ImportEvent::Read {
                        bytes: line.len() as u64 + 1,
                    });
                    let parsed = match std::str::from_utf8(&line) {
                        Err(_) => Err("not UTF-8".to_string()),
                        Ok(text) if text.trim().is_empty() => continue,
                        Ok(text) => self.parse_line(text.trim()),
                    };
                    let prepared = match parsed {
                        Ok(ImportLine::OtherPartition(_)) => {
                            other_partitions += 1;
                            continue;
                        }
                        Ok(ImportLine::Trailer(t)) => {
                            trailer = Some(t.consistent_at_seq);
                            continue;
                        }
                        Ok(ImportLine::Delete(handle)) => {
                            if !batcher.delete(handle.key()) {
                                break;
                            }
                            deleted += 1;
                            continue;
                        }
                        Ok(ImportLine::Record(handle, record)) => {
                            PreparedRecord::new(&handle, &record).map_err(|e| e.to_string())
                        }
                        Err(reason) => Err(reason),
                    };
                    match prepared {
                        Ok(prepared) => {
                            if !batcher.push(prepared) {
                                // The writer stopped on an error; write_batches returns it.
                                break;
                            }
                        }
                        Err(reason) => {
                            rejected += 1;
                            events(ImportEvent::Rejected {
                                line: i + 1,
                                reason: &reason,
                            });
                        }
                    }
                }
                Ok::<_, ImportError>((rejected, other_partitions, deleted, trailer))
            })?;
        registry.make_all_durable().map_err(ImportError::Durable)?;
        Ok(ImportSummary {
            written,
            rejected,
            other_partitions,
            deleted,
            consistent_at_seq: trailer,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{HandleValue, Prefix};
    use crate::resolve::{init_prefix, Partition, Policy};
    use crate::store::{Registry, StoreOptions};

    const NOW: u32 = 1_700_000_000;

    fn engine(policy: Policy) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
        init_prefix(&reg, &Prefix::parse("88.100.1").unwrap(), 300, b"s").unwrap();
        (dir, Engine::new(reg, policy))
    }

    fn reason(importer: &mut Importer<'_>, line: &str) -> String {
        match importer.parse_line(line) {
            Err(why) => why,
            Ok(parsed) => panic!("{line}: accepted as {parsed:?}"),
        }
    }

    fn record(importer: &mut Importer<'_>, line: &str) -> Record {
        match importer.parse_line(line) {
            Ok(ImportLine::Record(_, record)) => record,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn rejects_what_is_not_a_record_for_this_node() {
        let (_dir, engine) = engine(Policy::default());
        let mut importer = Importer::at(&engine, NOW);
        let url = r#"[{"index":1,"type":"URL","data":"https://x"}]"#;
        assert!(reason(&mut importer, "{not json").starts_with("malformed JSON: "));
        assert_eq!(
            reason(&mut importer, &format!(r#"{{"values":{url}}}"#)),
            "no \"handle\" field"
        );
        assert_eq!(
            reason(
                &mut importer,
                &format!(r#"{{"handle":"88.999/a","values":{url}}}"#)
            ),
            "prefix 88.999 is not homed by this node (add it to node.homed_prefixes)"
        );
        // Asked again: the cached answer gives the same reason.
        assert_eq!(
            reason(
                &mut importer,
                &format!(r#"{{"handle":"88.999/b","values":{url}}}"#)
            ),
            "prefix 88.999 is not homed by this node (add it to node.homed_prefixes)"
        );
        assert_eq!(
            reason(
                &mut importer,
                &format!(r#"{{"handle":"no-slash","values":{url}}}"#)
            ),
            "identifier has no '/' between prefix and suffix"
        );
        // Two values with one index: the check every write passes.
        let dup = r#"[{"index":1,"type":"URL","data":"a"},{"index":1,"type":"EMAIL","data":"b"}]"#;
        assert_eq!(
            reason(
                &mut importer,
                &format!(r#"{{"handle":"88.100.1/d","values":{dup}}}"#)
            ),
            "duplicate value index 1"
        );
        // A byte-order mark is not skipped: the line is not JSON.
        let bom = format!("\u{feff}{{\"handle\":\"88.100.1/a\",\"values\":{url}}}");
        assert!(reason(&mut importer, &bom).starts_with("malformed JSON: "));
    }

    #[test]
    fn keeps_timestamps_stamps_the_rest_and_sorts() {
        let (_dir, engine) = engine(Policy::default());
        let mut importer = Importer::at(&engine, NOW);
        let line = r#"{"handle":"88.100.1/x","values":[
            {"index":2,"type":"EMAIL","data":"a@b.c","timestamp":"2020-01-01T00:00:00Z"},
            {"index":1,"type":"URL","data":"https://x"}]}"#
            .replace('\n', " ");
        let r = record(&mut importer, &line);
        assert_eq!(r.handle, "88.100.1/x");
        let got: Vec<(u32, u32)> = r.values.iter().map(|v| (v.index, v.timestamp)).collect();
        assert_eq!(got, [(1, NOW), (2, 1_577_836_800)]);
    }

    #[test]
    fn prefix_handles_follow_the_homed_ancestry() {
        let (_dir, engine) = engine(Policy::default());
        let mut importer = Importer::at(&engine, NOW);
        let url = r#"[{"index":1,"type":"URL","data":"https://x"}]"#;
        for ok in ["0.NA/88.100.1", "0.NA/88.100.1.7"] {
            record(
                &mut importer,
                &format!(r#"{{"handle":"{ok}","values":{url}}}"#),
            );
        }
        assert!(reason(
            &mut importer,
            &format!(r#"{{"handle":"0.NA/88.200","values":{url}}}"#)
        )
        .contains("not homed"));
    }

    #[test]
    fn other_partitions_are_skipped_not_rejected() {
        let partition = Partition {
            index: 0,
            count: 2,
            hash_option: 2,
        };
        let (_dir, engine) = engine(Policy {
            partition: Some(partition),
            ..Policy::default()
        });
        let mut input = String::new();
        for n in 0..20 {
            input.push_str(&format!(
                "{{\"handle\":\"88.100.1/{n}\",\"values\":[{{\"index\":1,\"type\":\"URL\",\"data\":\"u\"}}]}}\n"
            ));
        }
        let summary = Importer::at(&engine, NOW)
            .run(input.as_bytes(), 7, true, |_| {})
            .unwrap();
        let ours = (0..20)
            .filter(|n| {
                let h = engine.parse_handle(&format!("88.100.1/{n}")).unwrap();
                partition.server_of(&h) == 0
            })
            .count();
        assert!(ours > 0 && ours < 20, "the test needs both kinds");
        assert_eq!(
            summary,
            ImportSummary {
                written: ours,
                rejected: 0,
                other_partitions: 20 - ours,
                ..ImportSummary::default()
            }
        );
    }

    #[test]
    fn run_reports_rejected_lines_and_writes_the_rest() {
        let (_dir, engine) = engine(Policy::default());
        let registry = engine.registry().clone();
        let before = registry.last_seq();
        let mut input = Vec::new();
        input.extend_from_slice(
            b"{\"handle\":\"88.100.1/a\",\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"one\"}]}\n",
        );
        input.extend_from_slice(b"\n   \n");
        input.extend_from_slice(b"\xff\xfe not utf-8\n");
        input.extend_from_slice(b"{\"handle\":\"88.999/a\",\"values\":[]}\n");
        // The same handle again: the later line wins.
        input.extend_from_slice(
            b"{\"handle\":\"88.100.1/a\",\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"two\"}]}",
        );
        let mut rejected = Vec::new();
        let mut read = 0u64;
        let summary = Importer::at(&engine, NOW)
            .run(&input[..], 1000, true, |e| match e {
                ImportEvent::Read { bytes } => read += bytes,
                ImportEvent::Rejected { line, reason } => rejected.push((line, reason.to_string())),
            })
            .unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                written: 2,
                rejected: 2,
                other_partitions: 0,
                ..ImportSummary::default()
            }
        );
        // Every byte counted once, a newline assumed after the last line too.
        assert_eq!(read, input.len() as u64 + 1);
        assert_eq!(rejected[0], (4, "not UTF-8".to_string()));
        assert_eq!(rejected[1].0, 5);
        let h = engine.parse_handle("88.100.1/a").unwrap();
        let stored = registry.get(&h).unwrap().unwrap();
        assert_eq!(
            stored.values,
            vec![HandleValue {
                timestamp: NOW,
                ..HandleValue::new(1, "URL", "two")
            }]
        );
        assert_eq!(
            registry.last_seq(),
            before + 2,
            "an entry per record written"
        );
    }

    #[test]
    fn an_unlogged_run_resets_the_change_log() {
        let (_dir, engine) = engine(Policy::default());
        let registry = engine.registry().clone();
        let before = registry.last_seq();
        let input = b"{\"handle\":\"88.100.1/a\",\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"u\"}]}\n";
        let summary = Importer::at(&engine, NOW)
            .run(&input[..], 10, false, |_| {})
            .unwrap();
        assert_eq!(summary.written, 1);
        assert_eq!(
            registry.last_seq(),
            before + 1,
            "moved on once, no entry per record"
        );
        assert!(registry
            .get(&engine.parse_handle("88.100.1/a").unwrap())
            .unwrap()
            .is_some());
    }

    #[test]
    fn online_export_lines_delete_in_order_and_name_their_sequence() {
        let (_dir, engine) = engine(Policy::default());
        let registry = engine.registry().clone();
        let url = |v: &str| format!(r#"[{{"index":1,"type":"URL","data":"{v}"}}]"#);
        let input = [
            format!(r#"{{"handle":"88.100.1/a","values":{}}}"#, url("one")),
            format!(r#"{{"handle":"88.100.1/b","values":{}}}"#, url("two")),
            r#"{"delete":"88.100.1/a"}"#.to_string(),
            r#"{"delete":"88.999/x"}"#.to_string(),
            r#"{"delete":7}"#.to_string(),
            r#"{"export":{"consistent_at_seq":"soon"}}"#.to_string(),
            r#"{"export":{"consistent_at_seq":42,"records":2,"changes":1,"homed_prefixes":["88.100.1"]}}"#
                .to_string(),
        ]
        .join("\n");
        let mut rejected = Vec::new();
        let summary = Importer::at(&engine, NOW)
            .run(input.as_bytes(), 1000, true, |e| {
                if let ImportEvent::Rejected { line, .. } = e {
                    rejected.push(line)
                }
            })
            .unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                written: 2,
                rejected: 3,
                deleted: 1,
                consistent_at_seq: Some(42),
                ..ImportSummary::default()
            }
        );
        assert_eq!(rejected, [4, 5, 6]);
        assert!(registry.get_key("88.100.1/a").unwrap().is_none());
        assert!(registry.get_key("88.100.1/b").unwrap().is_some());
    }
}
