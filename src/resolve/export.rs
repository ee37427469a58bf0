//! `idnode export`: the registry as JSON Lines (every record, the format `idnode import`
//! reads) or as a DNS zone file of what the DNS front end answers.
//!
//! An online export ([`write_json_lines_at_one_seq`], served as `GET /sync/export` by a
//! running node) is consistent at one sequence number although sled has no snapshots: a
//! key-ordered scan that notes the sequence `S0` before and `S1` after (settled under the
//! writer lock), then the change log's entries in (`S0`, `S1`] in order as record and
//! `{"delete": key}` lines, and a trailer line naming `S1`. Every record the scan read
//! reflects a sequence in [`S0`, `S1`]; a key that changed after `S0` is set by its last
//! change up to `S1` when the lines are imported in order, and a key that did not is what the
//! scan read. So importing the file gives the records as they were at `S1`, with memory of
//! one record on the node whatever the registry holds and however many writes land.
//!
//! The zone is written name by name through the [`Resolver`], the way the DNS front end
//! answers a query for the name: the name's identifier candidates in order, public values
//! only, the first that has a record answers. A record another candidate shadows is left out
//! (and counted), so NSD or Knot loading the file answer exactly what idnode answers.

use std::io::Write;

use super::resolver::Found;
use super::{ResolveError, Resolver};
use crate::model::Handle;
use crate::store::{Action, Record, Registry, StoreError};
use crate::wire::dns::zonefile::ZoneFileWriter;
use crate::wire::dns::{NameMeaning, Zone};
use crate::wire::json as hjson;
use crate::wire::sync::{ExportTrailer, ExportTrailerLine};

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading the registry: {0}")]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} ({code})", code = .0.code().code())]
    Engine(ResolveError),
    #[error(
        "the change log no longer holds entry {0}, which the export needs (truncated by \
         sync.log_retention while it ran, or an unlogged import): export again, or keep more \
         entries"
    )]
    LogGap(u64),
}

/// Write every record as one JSON line (`{"handle": ..., "values": [...]}`, the REST API's
/// value shape). Returns how many were written.
pub fn write_json_lines(registry: &Registry, out: &mut impl Write) -> Result<usize, ExportError> {
    let mut n = 0usize;
    for item in registry.iter_records() {
        let (_, record) = item?;
        record_line(&record, out)?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// One record line.
fn record_line(record: &Record, out: &mut impl Write) -> Result<(), ExportError> {
    let values: Vec<serde_json::Value> = record.values.iter().map(hjson::value_to_json).collect();
    let line = serde_json::json!({"handle": record.handle, "values": values});
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Change-log entries read at a time by an online export.
const LOG_CHUNK: u64 = 1000;

/// Write the registry as JSON Lines consistent at one sequence while it takes writes (the
/// method is in the module docs): the scan's record lines, the change log's lines after it,
/// then the [`ExportTrailer`] line, which is also returned. Fails with
/// [`ExportError::LogGap`] when the log lost entries the export needs.
pub fn write_json_lines_at_one_seq(
    registry: &Registry,
    out: &mut impl Write,
) -> Result<ExportTrailer, ExportError> {
    let from = registry.last_seq();
    let mut records = 0usize;
    for item in registry.iter_records() {
        let (_, record) = item?;
        record_line(&record, out)?;
        records += 1;
    }
    let to = registry.settled_seq();
    let homed_prefixes = registry
        .homed_prefixes()?
        .iter()
        .map(|p| p.to_string())
        .collect();
    let (mut at, mut changes) = (from, 0usize);
    while at < to {
        let chunk = registry.changes_after(at, (to - at).min(LOG_CHUNK) as usize)?;
        if chunk.is_empty() {
            return Err(ExportError::LogGap(at + 1));
        }
        for c in chunk {
            if c.seq != at + 1 {
                return Err(ExportError::LogGap(at + 1));
            }
            at = c.seq;
            match (c.action, &c.record) {
                (Action::Create | Action::Update, Some(record)) => record_line(record, out)?,
                (Action::Delete, _) => {
                    serde_json::to_writer(&mut *out, &serde_json::json!({"delete": c.key}))?;
                    out.write_all(b"\n")?;
                }
                // Homing is not part of the records (the trailer names the homed prefixes).
                _ => continue,
            }
            changes += 1;
        }
    }
    let trailer = ExportTrailer {
        consistent_at_seq: to,
        records,
        changes,
        homed_prefixes,
    };
    let line = ExportTrailerLine {
        export: trailer.clone(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(trailer)
}

/// What a zone export wrote and what it left out, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneExport {
    /// Identifiers written.
    pub written: usize,
    /// Resource records written (the SOA and NS included).
    pub records: usize,
    /// Identifiers with no DNS name (not reachable over DNS).
    pub unnamed: usize,
    /// Identifiers whose name another identifier answers for.
    pub shadowed: usize,
    /// Identifiers without a public value (NODATA at idnode; absent from the file).
    pub no_public: usize,
    /// Identifiers the DNS front end does not answer from this node's data.
    pub not_served: usize,
}

/// Write `zone` (its `homed` prefixes are set from the engine here) with the records DNS
/// answers from this node's data; the SOA serial is the change-log sequence, truncated to
/// 32 bits, as the front end's. `now` is unix seconds (TTLs counting down to an absolute
/// expiry). `skipped` hears each record left out for a reason worth naming.
pub fn write_zone<W: Write>(
    resolver: &Resolver,
    zone: Zone,
    out: W,
    now: u32,
    skipped: impl FnMut(&str, String),
) -> Result<ZoneExport, ExportError> {
    let serial = resolver.engine().registry().last_seq() as u32;
    write_zone_with_serial(resolver, zone, out, now, serial, skipped)
}

/// [`write_zone`] with the SOA serial given: an online export's zone, made from a scratch
/// registry, carries the sequence of the node it came from.
pub fn write_zone_with_serial<W: Write>(
    resolver: &Resolver,
    mut zone: Zone,
    out: W,
    now: u32,
    serial: u32,
    mut skipped: impl FnMut(&str, String),
) -> Result<ZoneExport, ExportError> {
    let engine = resolver.engine();
    let registry = engine.registry();
    zone.homed = engine.homed_prefixes().map_err(ExportError::Engine)?;
    let mut writer = ZoneFileWriter::new(out, &zone, serial)?;
    let mut summary = ZoneExport::default();
    let case = engine.policy().suffix_case;
    for item in registry.iter_records() {
        let (key, record) = item?;
        let handle = match Handle::parse(&record.handle, case) {
            Ok(h) => h,
            Err(e) => {
                skipped(&record.handle, format!("skipped: {e}"));
                summary.not_served += 1;
                continue;
            }
        };
        let name = match zone.name_of(&handle) {
            Ok(n) => n,
            Err(e) => {
                summary.unnamed += 1;
                skipped(&record.handle, format!("no DNS name: {e}"));
                continue;
            }
        };
        let NameMeaning::Identifier(candidates) = zone.classify(&name) else {
            summary.not_served += 1;
            continue;
        };
        // The name's identifier candidates in order, as a DNS query for it is answered.
        match resolver.local_candidates(&candidates).found {
            Found::Values(c, values) if c.key() == key => {
                writer.identifier(&name, &values, now)?;
                summary.written += 1;
            }
            Found::NoValues(c) if c.key() == key => summary.no_public += 1,
            // Another candidate answers for the name (or is routed elsewhere).
            Found::Values(..) | Found::NoValues(_) => summary.shadowed += 1,
            Found::NotResponsible(c) if c.key() != key => summary.shadowed += 1,
            _ => summary.not_served += 1,
        }
    }
    summary.records = writer.records();
    writer.finish()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Handle, HandleValue, SuffixCase};
    use crate::store::{Mutation, StoreOptions};

    fn set(reg: &Registry, h: &str, v: Option<&str>) {
        let handle = Handle::parse(h, SuffixCase::Sensitive).unwrap();
        reg.mutate::<StoreError, _>(&handle, |_| {
            Ok(match v {
                Some(v) => Mutation::Put(Record {
                    handle: h.into(),
                    values: vec![HandleValue {
                        timestamp: 1_700_000_000,
                        ..HandleValue::new(1, "URL", v)
                    }],
                }),
                None => Mutation::Delete,
            })
        })
        .unwrap();
    }

    /// An output that writes to the registry while the export runs: `at(line)` runs once
    /// the export has written that many lines.
    struct Meddler<'a, F: FnMut(&Registry, usize)> {
        reg: &'a Registry,
        out: Vec<u8>,
        lines: usize,
        at: F,
    }

    impl<F: FnMut(&Registry, usize)> Write for Meddler<'_, F> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.out.extend_from_slice(buf);
            for _ in buf.iter().filter(|b| **b == b'\n') {
                self.lines += 1;
                (self.at)(self.reg, self.lines);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines applied in order to a map, as `idnode import` applies them.
    fn replay(out: &[u8]) -> (BTreeMap<String, Record>, Option<ExportTrailer>) {
        let mut map = BTreeMap::new();
        let mut trailer = None;
        for line in std::str::from_utf8(out).unwrap().lines() {
            assert!(trailer.is_none(), "a line after the trailer");
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            if json.get("export").is_some() {
                let t: ExportTrailerLine = serde_json::from_value(json).unwrap();
                trailer = Some(t.export);
            } else if let Some(key) = json.get("delete") {
                map.remove(key.as_str().unwrap());
            } else {
                let (handle, values) = hjson::values_from_request_body(&json).unwrap();
                let handle = handle.unwrap();
                let key = Handle::parse(&handle, SuffixCase::Sensitive).unwrap();
                map.insert(key.key().to_string(), Record { handle, values });
            }
        }
        (map, trailer)
    }

    fn state(reg: &Registry) -> BTreeMap<String, Record> {
        reg.iter_records().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn an_export_under_writes_imports_as_the_state_at_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        for i in 0..100 {
            set(&reg, &format!("88.100/K{i:03}"), Some("seed"));
        }
        let mut out = Meddler {
            reg: &reg,
            out: Vec::new(),
            lines: 0,
            at: |reg: &Registry, line: usize| match line {
                // The scan is at K010: before and after it, updates, deletes and creates.
                10 => {
                    set(reg, "88.100/K005", Some("updated behind the scan"));
                    set(reg, "88.100/K003", None);
                    set(reg, "88.100/K090", None);
                    set(reg, "88.100/K080", Some("updated ahead of the scan"));
                    set(reg, "88.100/A-NEW", Some("created behind the scan"));
                    set(reg, "88.100/Z-NEW", Some("created ahead of the scan"));
                    set(reg, "88.100/TEMP", Some("created and deleted"));
                    set(reg, "88.100/TEMP", None);
                }
                50 => set(reg, "88.100/K005", Some("updated twice")),
                _ => {}
            },
        };
        let trailer = write_json_lines_at_one_seq(&reg, &mut out).unwrap();
        // No write after the export: its sequence is the registry's, and so is its state.
        assert_eq!(trailer.consistent_at_seq, reg.last_seq());
        assert_eq!(trailer.changes, 9);
        let (imported, read) = replay(&out.out);
        assert_eq!(read, Some(trailer));
        assert_eq!(imported, state(&reg));
        assert!(!imported.contains_key("88.100/K003"));
        assert!(imported.contains_key("88.100/A-NEW"));
        // Exported again with nothing writing: the scan alone, the same state.
        let mut quiet = Vec::new();
        let t = write_json_lines_at_one_seq(&reg, &mut quiet).unwrap();
        assert_eq!((t.changes, t.records), (0, imported.len()));
        assert_eq!(replay(&quiet).0, imported);
    }

    #[test]
    fn an_export_whose_log_entries_are_gone_fails() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        for i in 0..20 {
            set(&reg, &format!("88.100/K{i:03}"), Some("seed"));
        }
        let mut out = Meddler {
            reg: &reg,
            out: Vec::new(),
            lines: 0,
            at: |reg: &Registry, line: usize| {
                if line == 5 {
                    set(reg, "88.100/K001", None);
                    set(reg, "88.100/K002", None);
                    let last = reg.last_seq();
                    reg.truncate_log_before(last).unwrap();
                }
            },
        };
        let err = write_json_lines_at_one_seq(&reg, &mut out).unwrap_err();
        assert!(matches!(err, ExportError::LogGap(_)), "{err}");
    }
}
