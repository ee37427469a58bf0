//! What `check-config`, `init-prefix` and `serve` print: the lines, built from what the
//! library did, so `main.rs` only prints them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::ValidConfig;
use crate::model::{AdminRef, Handle, Prefix};
use crate::resolve::{init_prefix, repair_prefix, ResolveError};
use crate::store::Registry;

/// `idnode check-config`: what the configuration at `path` sets up.
pub fn check_config(path: &Path, c: &ValidConfig) -> Vec<String> {
    let homed: Vec<String> = c
        .node
        .homed_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    let key = match &c.handle.server_key_file {
        Some(path) => format!("{} (loaded)", path.display()),
        None => {
            let path = crate::server::server_key_path(&c.node.data_dir);
            let state = if path.exists() {
                "exists"
            } else {
                "created at first start"
            };
            format!("{} ({state})", path.display())
        }
    };
    vec![
        format!("configuration OK: {}", path.display()),
        format!("  data_dir        {}", c.node.data_dir.display()),
        format!("  homed prefixes  {}", homed.join(", ")),
        format!("  suffix case     {:?}", c.node.suffix_case),
        format!("  HTTP            {}", base_url(c, c.http.listen)),
        format!("  server key      {key}"),
    ]
}

/// `idnode init-prefix`: create `0.NA/prefix` with administrator `index` holding `secret`
/// (or with `force` repair it), and say what was done.
pub fn init_prefix_lines(
    registry: &Registry,
    prefix: &Prefix,
    index: u32,
    secret: &[u8],
    force: bool,
) -> Result<Vec<String>, ResolveError> {
    let mut lines = Vec::new();
    if force {
        let repair = repair_prefix(registry, prefix, index, secret)?;
        lines.push(if repair.created {
            format!("created 0.NA/{prefix}; administrator {index}:0.NA/{prefix}")
        } else {
            format!(
                "repaired 0.NA/{prefix}: administrator {index}:0.NA/{prefix} restored \
                 (HS_ADMIN 100 -> group 200 -> HS_SECKEY {index}); other values kept"
            )
        });
        for v in &repair.replaced {
            lines.push(format!("  replaced value {} ({})", v.index, v.type_name));
        }
        for v in &repair.other_admins {
            let who = AdminRef::decode(&v.data)
                .map(|a| format!("{} with {}", a.admin, a.permissions.to_bit_string()))
                .unwrap_or_else(|_| "undecodable".into());
            lines.push(format!("  kept HS_ADMIN {}: {who} (review it)", v.index));
        }
    } else if init_prefix(registry, prefix, index, secret)? {
        lines.push(format!(
            "created 0.NA/{prefix}; administrator {index}:0.NA/{prefix}"
        ));
    } else {
        lines.push(format!(
            "0.NA/{prefix} already exists; left unchanged (prefix homed; --force restores its \
             administrator)"
        ));
    }
    Ok(lines)
}

/// The base URL of the node's HTTP listener at `addr` (https with TLS configured).
pub fn base_url(config: &ValidConfig, addr: SocketAddr) -> String {
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// `idnode init-prefix`: where the administrator's secret came from.
pub fn secret_source(path: &Path, generated: bool) -> String {
    let how = if generated {
        "generated into"
    } else {
        "read from"
    };
    format!("secret {how} {}", path.display())
}

/// What `idnode serve` prints once it listens: where, the administrators it created, how to
/// register and read a first identifier, and (with DNS) how to ask for it with dig.
pub fn welcome(
    config: &ValidConfig,
    base: &str,
    bootstrapped: &[(Prefix, PathBuf)],
    dns: Option<SocketAddr>,
) -> Vec<String> {
    let k = if config.http.tls.is_some() { " -k" } else { "" };
    let mut lines = vec![format!(
        "idnode is serving {base}  (data in {})",
        config.node.data_dir.display()
    )];
    for (p, path) in bootstrapped {
        lines.push(format!(
            "created administrator 300:0.NA/{p}; its secret is in {}",
            path.display()
        ));
    }
    let Some(p) = config.node.homed_prefixes.first() else {
        return lines;
    };
    let secret = crate::server::secret_path(&config.node.data_dir, p);
    lines.push("register a first identifier:".into());
    lines.push(format!(
        "  curl{k} -u \"300%3A0.NA/{p}:$(cat {})\" -X PUT -H 'Content-Type: application/json' \\\n    -d '{{\"values\":[{{\"index\":1,\"type\":\"URL\",\"data\":\"https://example.com/sn/0001\"}}]}}' \\\n    {base}/api/handles/{p}/SN-0001",
        secret.display()
    ));
    lines.push(format!("  curl{k} {base}/api/handles/{p}/SN-0001"));
    if let Some(dns) = dns {
        let case = config.node.suffix_case;
        let zone = crate::server::dns::zone_from_config(&config.dns, case);
        let handle = Handle::parse(&format!("{p}/SN-0001"), case);
        if let (Ok(zone), Ok(handle)) = (zone, handle) {
            if let Ok(name) = zone.name_of(&handle) {
                lines.push(format!("  dig @{} -p {} {name} TXT", dns.ip(), dns.port()));
            }
        }
    }
    lines
}

/// `idnode import`: what was written, how fast, and what was skipped.
pub fn import_summary(
    summary: &crate::resolve::import::ImportSummary,
    secs: f64,
    no_change_log: bool,
) -> Vec<String> {
    let mut lines = vec![
        format!(
            "imported {} records, rejected {} lines",
            summary.written, summary.rejected
        ),
        format!(
            "{secs:.1} s, {:.0} records/s, durable",
            summary.written as f64 / secs.max(1e-9)
        ),
    ];
    if summary.other_partitions > 0 {
        lines.push(format!(
            "skipped {} records that hash to other servers of the site",
            summary.other_partitions
        ));
    }
    if summary.deleted > 0 {
        lines.push(format!(
            "applied {} delete lines (changes during the online export)",
            summary.deleted
        ));
    }
    if let Some(seq) = summary.consistent_at_seq {
        lines.push(format!(
            "the export was consistent at sequence {seq} of the node it came from"
        ));
    }
    if no_change_log {
        lines.push("change log reset: followers re-bootstrap from a snapshot".into());
    }
    lines
}

/// `idnode export --format zone`: how many identifiers went into zone `origin`, and how many
/// were left out and why.
pub fn zone_export_summary(done: &crate::resolve::export::ZoneExport, origin: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "exported {} identifiers as zone {origin} ({} records)",
        done.written, done.records
    )];
    for (n, why) in [
        (done.unnamed, "have no DNS name (not reachable over DNS)"),
        (
            done.shadowed,
            "share their DNS name with another identifier that DNS answers for",
        ),
        (
            done.no_public,
            "have no public value (NODATA at idnode; absent from the zone file)",
        ),
        (
            done.not_served,
            "are not answered from this node's data over DNS",
        ),
    ] {
        if n > 0 {
            lines.push(format!("{n} identifiers {why}"));
        }
    }
    lines
}

/// `idnode sync status`: one line per follow link of the node at `addr`.
pub fn sync_status(addr: SocketAddr, status: &crate::wire::sync::SyncStatus) -> Vec<String> {
    let mut lines = vec![format!("node {addr}: last sequence {}", status.last_seq)];
    if status.links.is_empty() {
        lines.push("no follow links".into());
    }
    for l in &status.links {
        lines.push(format!(
            "{}  prefixes {}  state {}  cursor {}  upstream last {}  lag {}  applied {}  \
             bootstraps {}  errors {}{}",
            l.upstream,
            serde_json::to_string(&l.prefixes).unwrap_or_default(),
            l.state,
            l.cursor,
            l.upstream_last_seq,
            l.lag_sequences,
            l.applied,
            l.bootstraps,
            l.errors,
            l.last_error
                .as_ref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default(),
        ));
    }
    lines
}

/// `idnode resolve --certified`: whether the answer's signature verified, and the line saying
/// so (on stderr).
pub fn certification(c: &crate::auth::credential::Certification) -> (bool, String) {
    use crate::auth::credential::Certification;
    match c {
        Certification::Verified => (
            true,
            "certified: the answer's signature verifies with the server's HS_SITE key".into(),
        ),
        Certification::Missing => (
            false,
            "NOT certified: the answer carries no signature".into(),
        ),
        Certification::Invalid(why) => (false, format!("NOT certified: {why}")),
    }
}

/// A hint after a refused `idnode admin` operation, from its response code.
pub fn admin_refusal_hint(code: u32, identity: &str) -> Option<String> {
    match code {
        400 | 401 => Some(format!("(authenticated as {identity})")),
        403 | 404 => Some(format!(
            "(identity {identity}: check the secret or key and the index)"
        )),
        _ => None,
    }
}

/// What `idnode keygen` says after writing the private key to `out`.
pub fn keygen_done(out: &Path, index: u32) -> String {
    format!(
        "private key written to {} (mode 0600); add the HS_PUBKEY value above to the identity \
         handle (REST API, or `idnode admin add HANDLE --values-json FILE ...`) and authenticate \
         with --auth-handle {index}:HANDLE --private-key {}",
        out.display(),
        out.display()
    )
}

/// Print lines to standard output; a closed pipe (`| head`) just ends the output.
pub fn print_lines<I: IntoIterator<Item = String>>(lines: I) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in lines {
        match writeln!(out, "{line}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A progress bar on stderr for reading `len` bytes (a spinner when unknown); hidden when
/// stderr is not a terminal, so logs and pipes get no control codes.
pub fn progress(len: Option<u64>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}
