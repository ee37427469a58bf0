//! What a node is built from its configuration, before anything is spawned: the registry
//! (opened, its prefixes homed, bootstrap administrators created), secrets and the server key
//! (read, or created mode 0600 and fsynced), the node's own HS_SITE and the root sites, the
//! engine's policy, the front ends' bounds, the recursor, the follow links, and every socket
//! (`Sockets`, bound before the node reports ready). [`start`](super::start) puts these
//! together; the CLI uses some of them on their own (`init-prefix`, `keygen`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{accept, native, udp, upstream};
use crate::auth::challenge::{ChallengeError, PrivateKey};
use crate::config::{DnsConfig, HandleSettings, ValidConfig};
use crate::metrics::Metrics;
use crate::model::structured::{interface, Interface, ServerInfo, SITE_PRIMARY};
use crate::model::{Prefix, SiteInfo};
use crate::resolve::cache::{Cache, CacheConfig};
use crate::resolve::recursion::{Recursor, RecursorConfig};
use crate::resolve::{init_prefix, Engine, Policy, ResolveError};
use crate::store::{Registry, StoreError, StoreOptions};
use crate::sync::follower::Link;
use crate::sync::follower::SyncError;
use crate::tls::TlsError;
use crate::wire::dns::{BadName, Zone};

/// Why a node could not be built or started: every step before the first task is spawned.
/// `Display` says what was being done; the cause is the [`std::error::Error::source`] (so
/// `{:#}` in the CLI reads "binding HTTP listener 0.0.0.0:8000: Address in use").
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the registry in {}", dir.display())]
    Registry { dir: PathBuf, source: StoreError },
    /// A file or socket operation: `what` names it (reading a secret file, binding a port).
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("secret file {} is empty", path.display())]
    EmptySecret { path: PathBuf },
    /// Reading, generating or encoding the server key.
    #[error("{what}")]
    ServerKey {
        what: String,
        source: ChallengeError,
    },
    /// Every retry of a kernel-chosen port found it taken on UDP.
    #[error("binding {what} UDP: {last:?}")]
    UdpPortTaken {
        what: String,
        last: Option<std::io::Error>,
    },
    #[error("the [dns] zone")]
    Zone(#[source] BadName),
    /// Creating a bootstrap administrator.
    #[error("creating 0.NA/{prefix}: {source} ({code})", code = source.code().code())]
    Bootstrap {
        prefix: Prefix,
        source: ResolveError,
    },
    #[error("{0} ({code})", code = .0.code().code())]
    Engine(ResolveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Follow(#[from] SyncError),
}

/// `map_err` for an I/O step named by `what`.
fn io(what: impl FnOnce() -> String) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Io {
        what: what(),
        source,
    }
}

/// `map_err` for a server key step named by `what`.
fn key_step(what: impl FnOnce() -> String) -> impl FnOnce(ChallengeError) -> StartError {
    move |source| StartError::ServerKey {
        what: what(),
        source,
    }
}

/// Open the registry a configuration names.
pub fn open_registry(config: &ValidConfig) -> Result<Registry, StartError> {
    let dir = &config.node.data_dir;
    Registry::open(
        dir,
        &StoreOptions {
            cache_capacity_bytes: config.store.cache_capacity_mb << 20,
            flush_every_ms: config.store.flush_every_ms,
            read_index_budget_bytes: config.store.read_index_max_mb << 20,
            commit_window: Duration::from_micros(config.store.commit_window_us),
        },
    )
    .map_err(|source| StartError::Registry {
        dir: dir.clone(),
        source,
    })
}

/// Where the generated secret of a bootstrapped prefix administrator is kept.
pub fn secret_path(data_dir: &Path, prefix: &Prefix) -> PathBuf {
    data_dir.join(format!("{prefix}.admin-secret"))
}

/// Read a secret file (trimmed), or generate a random secret and write it there (mode 0600).
pub fn read_or_create_secret(path: &Path) -> Result<(String, bool), StartError> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .map_err(io(|| format!("reading secret file {}", path.display())))?;
        let secret = text.trim().to_string();
        if secret.is_empty() {
            return Err(StartError::EmptySecret {
                path: path.to_path_buf(),
            });
        }
        return Ok((secret, false));
    }
    use rand::RngCore;
    let mut bytes = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    write_private_file(path, format!("{secret}\n").as_bytes(), false)?;
    Ok((secret, true))
}

/// Blocking-pool threads a node may use besides its UDP workers (which each hold one for
/// good): writes (fsync), key derivations, signatures and sync scans run there, each kind
/// bounded on its own. Capping the pool (tokio's default is 512) caps how many thread stacks
/// a burst of TCP work leaves behind in memory after it ends (attack suite 7b: the node kept
/// +7 MB with the default, +4 MB with this).
pub const BLOCKING_THREADS_BESIDES_UDP: usize = 24;

/// The blocking-pool size for `config`: its UDP workers plus [`BLOCKING_THREADS_BESIDES_UDP`].
pub fn blocking_threads(config: &ValidConfig) -> usize {
    let (hc, dc) = (&config.handle, &config.dns);
    let native = if hc.udp {
        udp::thread_count(hc.udp_threads)
    } else {
        0
    };
    let dns = if dc.udp {
        udp::thread_count(dc.udp_threads)
    } else {
        0
    };
    native + dns + BLOCKING_THREADS_BESIDES_UDP
}

/// Where a node keeps the server key it created, when `handle.server_key` is not set.
pub fn server_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server-key.pem")
}

/// The node's server key: the configured `handle.server_key`, or `<data_dir>/server-key.pem`,
/// created on first start (2048-bit RSA, PKCS#8 PEM, mode 0600, fsynced before use) the way the
/// bootstrap administrator's secret is.
pub fn load_server_key(config: &ValidConfig) -> Result<Arc<PrivateKey>, StartError> {
    if let Some(key) = &config.handle.server_key {
        return Ok(key.clone());
    }
    let path = server_key_path(&config.node.data_dir);
    if path.exists() {
        let pem = std::fs::read_to_string(&path)
            .map_err(io(|| format!("reading server key {}", path.display())))?;
        let key = PrivateKey::from_pem(&pem)
            .map_err(key_step(|| format!("server key {}", path.display())))?;
        return Ok(Arc::new(key));
    }
    let key =
        PrivateKey::generate_rsa(2048).map_err(key_step(|| "generating the server key".into()))?;
    let pem = key
        .try_to_pem()
        .map_err(key_step(|| "encoding the server key".into()))?;
    write_private_file(&path, pem.as_bytes(), false)?;
    tracing::info!(path = %path.display(), "created the node's server key (signs certified answers)");
    Ok(Arc::new(key))
}

/// Create `path` readable by its owner only (mode 0600; replacing it when `replace`, else it
/// must not exist) holding `bytes`, fsynced before this returns.
pub fn write_private_file(path: &Path, bytes: &[u8], replace: bool) -> Result<(), StartError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(io(|| format!("creating {}", path.display())))?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode through open(): tighten it before writing.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(|| format!("restricting {}", path.display())))?;
    }
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(|| format!("writing {}", path.display())))
}

/// Home the configured prefixes; give those without a prefix handle an administrator when
/// `bootstrap_admins` is on. Returns (prefix, secret file) for each administrator created.
pub fn prepare_registry(
    config: &ValidConfig,
    registry: &Registry,
) -> Result<Vec<(Prefix, PathBuf)>, StartError> {
    let mut created = Vec::new();
    for prefix in &config.node.homed_prefixes {
        registry.home_prefix(prefix)?;
        if config.node.bootstrap_admins && registry.get(&prefix.na_handle())?.is_none() {
            if config.node.partition.is_some() {
                tracing::warn!(
                    %prefix,
                    "bootstrapping an administrator on one server of a multi-server site: each \
                     server generates its own secret; run `idnode init-prefix --secret-file` \
                     with one shared secret on every server instead"
                );
            }
            let path = secret_path(&config.node.data_dir, prefix);
            let (secret, _) = read_or_create_secret(&path)?;
            init_prefix(registry, prefix, 300, secret.as_bytes()).map_err(|source| {
                StartError::Bootstrap {
                    prefix: prefix.clone(),
                    source,
                }
            })?;
            created.push((prefix.clone(), path));
        }
    }
    Ok(created)
}

/// The node's own HS_SITE: one server, with its native interfaces (TCP admin+query first — the
/// national SDK uses the first interface only — then UDP query) when they run, its HTTP(S)
/// interface, and `public_key` (the server key's HS_PUBKEY, which certifying clients verify
/// answers with). The
/// address is the native listener's (or the HTTP listener's when the native protocol is off).
pub fn own_site(
    config: &ValidConfig,
    http: SocketAddr,
    native: Option<SocketAddr>,
    public_key: Vec<u8>,
) -> SiteInfo {
    let web = if config.http.tls.is_some() {
        interface::HTTPS
    } else {
        interface::HTTP
    };
    let mut interfaces = Vec::new();
    if let Some(addr) = native {
        let port = u32::from(addr.port());
        if config.handle.tcp {
            interfaces.push(Interface {
                kind: interface::ADMIN_AND_QUERY,
                protocol: interface::TCP,
                port,
            });
        }
        if config.handle.udp {
            interfaces.push(Interface {
                kind: interface::QUERY,
                protocol: interface::UDP,
                port,
            });
        }
    }
    interfaces.push(Interface {
        kind: interface::ADMIN_AND_QUERY,
        protocol: web,
        port: u32::from(http.port()),
    });
    let ip = native.unwrap_or(http).ip();
    let this = ServerInfo {
        server_id: 1,
        address: ServerInfo::address_from_ip(ip),
        public_key,
        interfaces,
    };
    // One server of a multi-server site publishes the whole site, so clients route by hash.
    let (servers, hash_option) = match config.node.partition {
        Some(part) if !config.node.site_servers.is_empty() => {
            let servers = config
                .node
                .site_servers
                .iter()
                .enumerate()
                .map(|(i, addr)| {
                    if i == part.index as usize {
                        ServerInfo {
                            server_id: i as u32 + 1,
                            ..this.clone()
                        }
                    } else {
                        let mut s = root_sites(&[*addr]).remove(0).servers.remove(0);
                        s.server_id = i as u32 + 1;
                        s
                    }
                })
                .collect();
            (servers, part.hash_option)
        }
        _ => (vec![this], 2),
    };
    SiteInfo {
        data_format_version: 1,
        protocol_major: 2,
        protocol_minor: 11,
        serial: config.handle.site_serial,
        primary_mask: SITE_PRIMARY,
        hash_option,
        hash_filter: Vec::new(),
        attributes: vec![("desc".into(), "idnode".into())],
        servers,
    }
}

/// A single-server root site for each configured root address (UDP and TCP query on its port).
pub fn root_sites(roots: &[SocketAddr]) -> Vec<SiteInfo> {
    roots
        .iter()
        .map(|addr| SiteInfo {
            data_format_version: 1,
            protocol_major: 2,
            protocol_minor: 11,
            serial: 1,
            primary_mask: SITE_PRIMARY,
            hash_option: 2,
            hash_filter: Vec::new(),
            attributes: vec![("desc".into(), "configured root".into())],
            servers: vec![ServerInfo {
                server_id: 1,
                address: ServerInfo::address_from_ip(addr.ip()),
                public_key: Vec::new(),
                interfaces: vec![
                    Interface {
                        kind: interface::QUERY,
                        protocol: interface::UDP,
                        port: u32::from(addr.port()),
                    },
                    Interface {
                        kind: interface::QUERY,
                        protocol: interface::TCP,
                        port: u32::from(addr.port()),
                    },
                ],
            }],
        })
        .collect()
}

pub(super) fn build_recursor(config: &ValidConfig, metrics: &Metrics) -> Recursor {
    let rc = &config.recursion;
    let cache = Arc::new(Cache::new(
        CacheConfig {
            max_entries: rc.cache_max_entries,
            max_bytes: rc.cache_max_bytes,
            max_ttl_secs: rc.cache_max_ttl_secs,
            negative_ttl_secs: rc.negative_ttl_secs,
            serve_stale_secs: rc.serve_stale_secs,
        },
        Some(metrics.cache_events.clone()),
    ));
    Recursor::new(
        RecursorConfig {
            roots: root_sites(&rc.roots),
            max_referrals: rc.max_referrals,
            max_recursion_count: rc.max_recursion_count,
            attempts: rc.attempts,
            timeout: Duration::from_millis(rc.timeout_ms),
            deadline: Duration::from_millis(rc.deadline_ms),
            max_concurrent: rc.max_concurrent,
            allow: rc.allow.clone(),
        },
        Arc::new(upstream::NetworkUpstream),
        cache,
    )
    .with_refusal_metric(metrics.recursion_refused.clone())
}

/// The engine's policy for a node configured by `config`: suffix case, partition, admin
/// rules, and the prefixes it mirrors read-only (with their upstreams).
pub fn engine_policy(config: &ValidConfig) -> Policy {
    Policy {
        suffix_case: config.node.suffix_case,
        partition: config.node.partition,
        allow_prefix_admins: config.node.allow_prefix_admins,
        server_admins: config.node.server_admins.clone(),
        mirrored: config
            .sync
            .follow
            .iter()
            .flat_map(|f| f.prefixes.iter().map(|p| (p.clone(), f.upstream.clone())))
            .collect(),
    }
}

/// The native front end's abuse bounds from the `[handle]` settings.
pub fn native_limits(handle: &HandleSettings) -> native::NativeLimits {
    native::NativeLimits {
        challenges: handle.challenges,
        failures: handle.failures,
        max_udp_answer: handle.max_udp_answer_bytes,
        verify_peers: handle.verify_peers.clone(),
        signatures: native::SignLimits {
            per_second: handle.signatures_per_second,
            per_second_per_client: handle.signatures_per_second_per_client,
        },
        anonymous_reads: handle.anonymous_reads,
        password_login: handle.password_login,
        sessions: handle.sessions,
    }
}

/// Bind the native protocol's TCP listener and UDP sockets on one address. With port 0 the
/// kernel picks the TCP port and UDP binds the same number (retried if it is taken).
async fn bind_native(config: &ValidConfig) -> Result<BoundPair, StartError> {
    let hc = &config.handle;
    let threads = hc.udp.then(|| udp::thread_count(hc.udp_threads));
    bind_pair(hc.listen, hc.tcp, threads, "native").await
}

/// A TCP listener and a group of `SO_REUSEPORT` UDP sockets on one address (each optional),
/// and that address.
type BoundPair = (
    Option<TcpListener>,
    Vec<std::net::UdpSocket>,
    Option<SocketAddr>,
);

/// Bind TCP and/or `udp_sockets` UDP sockets on `listen`. With port 0 the kernel picks the
/// TCP port and UDP binds the same number (retried if it is taken).
async fn bind_pair(
    listen: SocketAddr,
    tcp: bool,
    udp_sockets: Option<usize>,
    what: &str,
) -> Result<BoundPair, StartError> {
    if !tcp && udp_sockets.is_none() {
        return Ok((None, Vec::new(), None));
    }
    let mut last_err = None;
    for _ in 0..8 {
        let listener = if tcp {
            Some(
                TcpListener::bind(listen)
                    .await
                    .map_err(io(|| format!("binding {what} TCP {listen}")))?,
            )
        } else {
            None
        };
        let addr = match &listener {
            Some(t) => t
                .local_addr()
                .map_err(io(|| format!("binding {what} TCP {listen}")))?,
            None => listen,
        };
        let Some(count) = udp_sockets else {
            return Ok((listener, Vec::new(), Some(addr)));
        };
        match udp::bind_group(addr, count) {
            Ok(sockets) => {
                let addr = match sockets.first() {
                    Some(s) => s
                        .local_addr()
                        .map_err(io(|| format!("binding {what} UDP {addr}")))?,
                    None => addr,
                };
                return Ok((listener, sockets, Some(addr)));
            }
            // A kernel-chosen TCP port may be taken on UDP: try another.
            Err(e) if listen.port() == 0 && tcp => last_err = Some(e),
            Err(e) => return Err(io(|| format!("binding {what} UDP {addr}"))(e)),
        }
    }
    Err(StartError::UdpPortTaken {
        what: what.to_string(),
        last: last_err,
    })
}

/// The DNS front end's TCP connection bounds from `[dns]`.
pub(super) fn dns_limits(dc: &DnsConfig) -> accept::Limits {
    accept::Limits {
        max_connections: dc.max_connections,
        per_client: dc.max_connections_per_client,
        idle_timeout: Duration::from_secs(dc.idle_timeout_secs),
        request_timeout: Duration::from_secs(dc.request_timeout_secs),
        write_timeout: Duration::from_secs(dc.write_timeout_secs),
    }
}

/// The native front end's TCP connection bounds from the `[handle]` settings.
pub(super) fn native_connection_limits(hc: &HandleSettings) -> accept::Limits {
    accept::Limits {
        max_connections: hc.max_connections,
        per_client: hc.max_connections_per_client,
        idle_timeout: hc.idle_timeout,
        request_timeout: hc.request_timeout,
        write_timeout: hc.write_timeout,
    }
}

/// The `[[sync.follow]]` links, made but not yet running.
pub(super) fn follow_links(config: &ValidConfig) -> Result<Vec<Link>, StartError> {
    let mut links = Vec::new();
    for f in &config.sync.follow {
        links.push(Link::new(f, config.node.suffix_case)?);
    }
    Ok(links)
}

/// The operator token `/sync/status` and `/sync/digest` accept, read or created
/// ([`crate::sync::operator_token_path`]); without it those answer `[[sync.allow]]`
/// identities only.
pub(super) fn operator_token(config: &ValidConfig) -> Option<String> {
    let token_path = crate::sync::operator_token_path(&config.node.data_dir);
    match read_or_create_secret(&token_path) {
        Ok((token, _)) => Some(token),
        Err(e) => {
            tracing::warn!(error = %e, "no sync operator token: /sync/status and /sync/digest \
                                       answer [[sync.allow]] identities only");
            None
        }
    }
}

/// Every socket a node serves on, bound, with what the listeners need beside them: the TLS
/// acceptor (its files loaded again, as at validation) and the DNS zone with the homed
/// prefixes. Binding is the step that fails most often (a port in use), so it comes before
/// anything is spawned or created.
pub(super) struct Sockets {
    pub(super) http: TcpListener,
    pub(super) http_addr: SocketAddr,
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) native_tcp: Option<TcpListener>,
    pub(super) native_udp: Vec<std::net::UdpSocket>,
    pub(super) native_addr: Option<SocketAddr>,
    pub(super) dns_tcp: Option<TcpListener>,
    pub(super) dns_udp: Vec<std::net::UdpSocket>,
    pub(super) dns_addr: Option<SocketAddr>,
    pub(super) dns_zone: Zone,
}

impl Sockets {
    /// The TLS acceptor, the HTTP listener, the DNS zone, the native pair, the DNS pair (in
    /// that order: the first that fails is reported).
    pub(super) async fn bind(config: &ValidConfig, engine: &Engine) -> Result<Sockets, StartError> {
        let tls = match &config.http.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::load_server_config(files)?,
            )),
            None => None,
        };
        let http = TcpListener::bind(config.http.listen).await.map_err(io(|| {
            format!("binding HTTP listener {}", config.http.listen)
        }))?;
        let http_addr = http.local_addr().map_err(io(|| {
            format!("binding HTTP listener {}", config.http.listen)
        }))?;
        let dc = &config.dns;
        let mut dns_zone =
            super::dns::zone_from_config(dc, config.node.suffix_case).map_err(StartError::Zone)?;
        dns_zone.homed = engine.homed_prefixes().map_err(StartError::Engine)?;
        let (native_tcp, native_udp, native_addr) = bind_native(config).await?;
        let dns_threads = dc.udp.then(|| udp::thread_count(dc.udp_threads));
        let (dns_tcp, dns_udp, dns_addr) = bind_pair(dc.listen, dc.tcp, dns_threads, "DNS").await?;
        Ok(Sockets {
            http,
            http_addr,
            tls,
            native_tcp,
            native_udp,
            native_addr,
            dns_tcp,
            dns_udp,
            dns_addr,
            dns_zone,
        })
    }
}
