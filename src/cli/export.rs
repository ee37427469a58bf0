//! `idnode export`: the registry as JSON Lines or as a DNS zone file, from the data directory
//! of a stopped node, or (`--online`) from a running node's `/sync/export`, consistent at one
//! sequence. In the library, beside the CLI's definitions, so `main.rs` only dispatches; what
//! is said along the way goes to the caller's `note` (the binary prints it on stderr).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ExportFormat;
use crate::config::ValidConfig;
use crate::model::Prefix;
use crate::resolve::export::{write_json_lines, write_zone_with_serial, ExportError};
use crate::resolve::import::{ImportError, ImportEvent, Importer};
use crate::resolve::{Engine, Resolver};
use crate::store::{Registry, StoreError, StoreOptions};
use crate::sync::backup::BackupError;

/// Why an export did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ExportCommandError {
    #[error("--zone only applies to --format zone")]
    ZoneWithoutZoneFormat,
    #[error(
        "the node's listener speaks HTTPS: use `curl -H \"Authorization: Bearer $(cat {token})\" \
         https://{listen}/sync/export`"
    )]
    Https { token: String, listen: String },
    #[error("opening the registry in {dir}: {source}")]
    Open { dir: String, source: StoreError },
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the DNS zone: {0}")]
    Zone(String),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("loading the export for the zone: {0}")]
    Load(#[from] ImportError),
    #[error("the export's homed prefixes: {0}")]
    Prefix(String),
    #[error("the scratch registry: {0}")]
    Scratch(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn file_error(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ExportCommandError {
    let path = path.display().to_string();
    move |source| ExportCommandError::File { what, path, source }
}

/// Standard output, or a new file at `path`.
fn output_to(path: Option<&Path>) -> Result<BufWriter<Box<dyn Write>>, ExportCommandError> {
    let out: Box<dyn Write> = match path {
        Some(p) => Box::new(std::fs::File::create(p).map_err(file_error("creating", p))?),
        None => Box::new(std::io::stdout().lock()),
    };
    Ok(BufWriter::new(out))
}

/// What `idnode export` was asked for.
pub struct ExportRequest<'a> {
    pub config: &'a ValidConfig,
    pub output: Option<&'a Path>,
    pub format: ExportFormat,
    /// `--zone`: the zone's origin instead of `dns.zone`.
    pub zone: Option<&'a str>,
}

impl ExportRequest<'_> {
    /// Export from the stopped node's data directory.
    pub fn offline(&self, note: &mut dyn FnMut(String)) -> Result<(), ExportCommandError> {
        self.check()?;
        let dir = &self.config.node.data_dir;
        let registry = Registry::open(dir, &StoreOptions::default()).map_err(|source| {
            ExportCommandError::Open {
                dir: dir.display().to_string(),
                source,
            }
        })?;
        let mut out = output_to(self.output)?;
        if self.format == ExportFormat::Jsonl {
            let n = write_json_lines(&registry, &mut out)?;
            note(format!("exported {n} records"));
            return Ok(());
        }
        let serial = registry.last_seq() as u32;
        self.zone_of(Arc::new(registry), serial, out, note)
    }

    /// `--online`: the running node's `/sync/export` (consistent at one sequence). A file
    /// output is written beside its name and renamed once complete. The zone is made from
    /// the export through a scratch registry in the temporary directory (the export's
    /// records imported with the prefixes the node homed), so it is consistent at the same
    /// sequence, which is its SOA serial.
    pub fn online(&self, note: &mut dyn FnMut(String)) -> Result<(), ExportCommandError> {
        self.check()?;
        let config = self.config;
        if config.http.tls.is_some() {
            return Err(ExportCommandError::Https {
                token: crate::sync::operator_token_path(&config.node.data_dir)
                    .display()
                    .to_string(),
                listen: config.http.listen.to_string(),
            });
        }
        let mut fetch = |out: &mut dyn Write| {
            let mut out = BufWriter::new(out);
            let trailer =
                crate::sync::backup::fetch(config.http.listen, &config.node.data_dir, &mut out)?;
            out.flush()?;
            note(format!(
                "exported {} records and {} changes made meanwhile, consistent at sequence {}",
                trailer.records, trailer.changes, trailer.consistent_at_seq
            ));
            Ok::<_, ExportCommandError>(trailer)
        };
        if self.format == ExportFormat::Jsonl {
            match self.output {
                None => {
                    fetch(&mut std::io::stdout().lock())?;
                }
                Some(p) => {
                    let mut partial = p.as_os_str().to_owned();
                    partial.push(".partial");
                    let partial = PathBuf::from(partial);
                    let mut file = std::fs::File::create(&partial)
                        .map_err(file_error("creating", &partial))?;
                    fetch(&mut file)?;
                    file.sync_all()?;
                    std::fs::rename(&partial, p).map_err(file_error("renaming to", p))?;
                }
            }
            return Ok(());
        }
        let scratch = Scratch::new()?;
        let jsonl = scratch.0.join("export.jsonl");
        let trailer =
            fetch(&mut std::fs::File::create(&jsonl).map_err(file_error("creating", &jsonl))?)?;
        let registry = Arc::new(Registry::open(
            &scratch.0.join("registry"),
            &StoreOptions::default(),
        )?);
        for p in &trailer.homed_prefixes {
            let prefix = Prefix::parse(p).map_err(|e| ExportCommandError::Prefix(e.to_string()))?;
            registry.home_prefix(&prefix)?;
        }
        let engine = Engine::new(registry.clone(), crate::server::engine_policy(config));
        let input = std::fs::File::open(&jsonl).map_err(file_error("reading", &jsonl))?;
        let mut rejected = Vec::new();
        Importer::new(&engine).run(input, 1000, false, |e| {
            if let ImportEvent::Rejected { line, reason } = e {
                rejected.push(format!(
                    "export line {line} not loaded for the zone: {reason}"
                ));
            }
        })?;
        drop(engine);
        rejected.into_iter().for_each(&mut *note);
        let out = output_to(self.output)?;
        self.zone_of(registry, trailer.consistent_at_seq as u32, out, note)
    }

    fn check(&self) -> Result<(), ExportCommandError> {
        if self.zone.is_some() && self.format != ExportFormat::Zone {
            return Err(ExportCommandError::ZoneWithoutZoneFormat);
        }
        Ok(())
    }

    /// The zone of `registry`'s records through the engine and the zone `serve` sets up,
    /// with the SOA serial `serial`; what was left out goes to `note`.
    fn zone_of(
        &self,
        registry: Arc<Registry>,
        serial: u32,
        out: impl Write,
        note: &mut dyn FnMut(String),
    ) -> Result<(), ExportCommandError> {
        let config = self.config;
        let mut dns_config = config.dns.clone();
        if let Some(z) = self.zone {
            dns_config.zone = z.to_string();
        }
        let dns_zone = crate::server::dns::zone_from_config(&dns_config, config.node.suffix_case)
            .map_err(|e| ExportCommandError::Zone(e.to_string()))?;
        let origin = dns_zone.origin().to_string();
        let engine = Engine::new(registry, crate::server::engine_policy(config));
        let resolver = Resolver::new(engine, None);
        let now = crate::model::unix_now_u32();
        let done = write_zone_with_serial(&resolver, dns_zone, out, now, serial, |handle, why| {
            note(format!("{handle}: {why}"))
        })?;
        for line in super::report::zone_export_summary(&done, &origin) {
            note(line);
        }
        Ok(())
    }
}

/// A scratch directory under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, ExportCommandError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("idnode-export-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(file_error("creating", &dir))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
