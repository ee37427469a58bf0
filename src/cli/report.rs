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
    let scheme = if c.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
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
        format!("  HTTP            {scheme}://{}", c.http.listen),
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
