//! `idnode export`: the registry as JSON Lines (every record, the format `idnode import`
//! reads) or as a DNS zone file of what the DNS front end answers.
//!
//! The zone is written name by name through the [`Resolver`], the way the DNS front end
//! answers a query for the name: the name's identifier candidates in order, public values
//! only, the first that has a record answers. A record another candidate shadows is left out
//! (and counted), so NSD or Knot loading the file answer exactly what idnode answers.

use std::io::Write;

use super::resolver::Found;
use super::{ResolveError, Resolver};
use crate::model::Handle;
use crate::store::{Registry, StoreError};
use crate::wire::dns::zonefile::ZoneFileWriter;
use crate::wire::dns::{NameMeaning, Zone};
use crate::wire::json as hjson;

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
}

/// Write every record as one JSON line (`{"handle": ..., "values": [...]}`, the REST API's
/// value shape). Returns how many were written.
pub fn write_json_lines(registry: &Registry, out: &mut impl Write) -> Result<usize, ExportError> {
    let mut n = 0usize;
    for item in registry.iter_records() {
        let (_, record) = item?;
        let values: Vec<serde_json::Value> =
            record.values.iter().map(hjson::value_to_json).collect();
        let line = serde_json::json!({"handle": record.handle, "values": values});
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
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
    mut zone: Zone,
    out: W,
    now: u32,
    mut skipped: impl FnMut(&str, String),
) -> Result<ZoneExport, ExportError> {
    let engine = resolver.engine();
    let registry = engine.registry();
    zone.homed = engine.homed_prefixes().map_err(ExportError::Engine)?;
    let mut writer = ZoneFileWriter::new(out, &zone, registry.last_seq() as u32)?;
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
