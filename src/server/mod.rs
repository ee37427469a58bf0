//! tokio front ends and node start-up: opening the registry, homing prefixes, bootstrapping
//! administrators, and serving HTTP/HTTPS, the native Handle protocol (UDP, TCP) and DNS
//! (UDP, TCP; see [`dns`]) until shutdown (Ctrl-C or SIGTERM).

pub mod accept;
pub mod dns;
pub mod http;
pub mod native;
pub mod native_tcp;
pub mod native_udp;
pub mod tls;
pub mod udp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::ValidConfig;
use crate::metrics::Metrics;
use crate::model::structured::{interface, Interface, ServerInfo, SITE_PRIMARY};
use crate::model::{Prefix, SiteInfo};
use crate::resolve::cache::{Cache, CacheConfig};
use crate::resolve::recursion::{NetworkUpstream, Recursor, RecursorConfig};
use crate::resolve::{init_prefix, Engine, Policy};
use crate::store::{Registry, StoreOptions};

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP connection may take to send a request head, counted from when the node
/// starts waiting for it: it bounds slow clients and idle keep-alive connections, which would
/// otherwise hold one of the `max_connections` slots for ever.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Open the registry a configuration names.
pub fn open_registry(config: &ValidConfig) -> anyhow::Result<Registry> {
    let dir = &config.raw.node.data_dir;
    Registry::open(
        dir,
        &StoreOptions {
            cache_capacity_bytes: config.raw.store.cache_capacity_mb << 20,
            flush_every_ms: config.raw.store.flush_every_ms,
        },
    )
    .with_context(|| format!("opening the registry in {}", dir.display()))
}

/// Where the generated secret of a bootstrapped prefix administrator is kept.
pub fn secret_path(data_dir: &Path, prefix: &Prefix) -> PathBuf {
    data_dir.join(format!("{prefix}.admin-secret"))
}

/// Read a secret file (trimmed), or generate a random secret and write it there (mode 0600).
pub fn read_or_create_secret(path: &Path) -> anyhow::Result<(String, bool)> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading secret file {}", path.display()))?;
        let secret = text.trim().to_string();
        anyhow::ensure!(
            !secret.is_empty(),
            "secret file {} is empty",
            path.display()
        );
        return Ok((secret, false));
    }
    use rand::RngCore;
    let mut bytes = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating secret file {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok((secret, true))
}

/// Home the configured prefixes; give those without a prefix handle an administrator when
/// `bootstrap_admins` is on. Returns (prefix, secret file) for each administrator created.
pub fn prepare_registry(
    config: &ValidConfig,
    registry: &Registry,
) -> anyhow::Result<Vec<(Prefix, PathBuf)>> {
    let mut created = Vec::new();
    for prefix in &config.homed_prefixes {
        registry.home_prefix(prefix)?;
        if config.raw.node.bootstrap_admins && registry.get(&prefix.na_handle())?.is_none() {
            if config.partition.is_some() {
                tracing::warn!(
                    %prefix,
                    "bootstrapping an administrator on one server of a multi-server site: each \
                     server generates its own secret; run `idnode init-prefix --secret-file` \
                     with one shared secret on every server instead"
                );
            }
            let path = secret_path(&config.raw.node.data_dir, prefix);
            let (secret, _) = read_or_create_secret(&path)?;
            init_prefix(registry, prefix, 300, secret.as_bytes())
                .map_err(|f| anyhow::anyhow!("creating 0.NA/{prefix}: {f}"))?;
            created.push((prefix.clone(), path));
        }
    }
    Ok(created)
}

/// The node's own HS_SITE: one server, with its native interfaces (TCP admin+query, UDP
/// query) when they run, its HTTP(S) interface, and its public key when configured. The
/// address is the native listener's (or the HTTP listener's when the native protocol is off).
pub fn own_site(config: &ValidConfig, http: SocketAddr, native: Option<SocketAddr>) -> SiteInfo {
    let web = if config.tls.is_some() {
        interface::HTTPS
    } else {
        interface::HTTP
    };
    let mut interfaces = Vec::new();
    if let Some(addr) = native {
        let port = u32::from(addr.port());
        if config.raw.handle.tcp {
            interfaces.push(Interface {
                kind: interface::ADMIN_AND_QUERY,
                protocol: interface::TCP,
                port,
            });
        }
        if config.raw.handle.udp {
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
        public_key: config.site_public_key.clone().unwrap_or_default(),
        interfaces,
    };
    // One server of a multi-server site publishes the whole site, so clients route by hash.
    let (servers, hash_option) = match (&config.raw.node.partition, config.partition) {
        (Some(p), Some(part)) if !p.servers.is_empty() => {
            let servers = p
                .servers
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
        serial: config.raw.handle.site_serial,
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

fn build_recursor(config: &ValidConfig, metrics: &Metrics) -> Recursor {
    let rc = &config.raw.recursion;
    let cache = Arc::new(Cache::new(
        CacheConfig {
            max_entries: rc.cache_max_entries,
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
        },
        Arc::new(NetworkUpstream),
        cache,
    )
}

/// Bind the native protocol's TCP listener and UDP sockets on one address. With port 0 the
/// kernel picks the TCP port and UDP binds the same number (retried if it is taken).
async fn bind_native(config: &ValidConfig) -> anyhow::Result<BoundPair> {
    let hc = &config.raw.handle;
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
) -> anyhow::Result<BoundPair> {
    if !tcp && udp_sockets.is_none() {
        return Ok((None, Vec::new(), None));
    }
    let mut last_err = None;
    for _ in 0..8 {
        let listener = if tcp {
            Some(
                TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {what} TCP {listen}"))?,
            )
        } else {
            None
        };
        let addr = match &listener {
            Some(t) => t.local_addr()?,
            None => listen,
        };
        let Some(count) = udp_sockets else {
            return Ok((listener, Vec::new(), Some(addr)));
        };
        match udp::bind_group(addr, count) {
            Ok(sockets) => {
                let addr = match sockets.first() {
                    Some(s) => s.local_addr()?,
                    None => addr,
                };
                return Ok((listener, sockets, Some(addr)));
            }
            // A kernel-chosen TCP port may be taken on UDP: try another.
            Err(e) if listen.port() == 0 && tcp => last_err = Some(e),
            Err(e) => return Err(e).with_context(|| format!("binding {what} UDP {addr}")),
        }
    }
    Err(anyhow::anyhow!("binding {what} UDP: {:?}", last_err))
}

/// A running node's handles, for tests and the binary.
pub struct RunningNode {
    pub http_addr: SocketAddr,
    /// Where the native protocol listens (UDP and TCP), if it runs.
    pub native_addr: Option<SocketAddr>,
    /// Where the DNS front end listens (UDP and TCP), if it runs.
    pub dns_addr: Option<SocketAddr>,
    pub engine: Engine,
    /// The operator token `/sync/status` and `/sync/digest` accept
    /// ([`crate::sync::operator_token_path`]), when it could be read or created.
    pub operator_token: Option<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Stop accepting, let open requests finish, and wait.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The engine's policy for a node configured by `config`: suffix case, partition, admin
/// rules, and the prefixes it mirrors read-only (with their upstreams).
pub fn engine_policy(config: &ValidConfig) -> Policy {
    Policy {
        suffix_case: config.raw.node.suffix_case,
        partition: config.partition,
        allow_prefix_admins: config.raw.node.allow_prefix_admins,
        server_admins: config.server_admins.clone(),
        mirrored: config
            .raw
            .sync
            .follow
            .iter()
            .flat_map(|f| {
                f.prefixes.iter().filter_map(|p| {
                    Prefix::parse(p)
                        .ok()
                        .map(|p| (p, f.upstream.trim_end_matches('/').to_string()))
                })
            })
            .collect(),
    }
}

/// Start a node from a validated configuration: everything that can fail (store, ports, TLS
/// files) fails here, before the node reports ready.
pub async fn start(config: ValidConfig, registry: Arc<Registry>) -> anyhow::Result<RunningNode> {
    let policy = engine_policy(&config);
    let engine = Engine::new(registry, policy);
    let metrics = Metrics::new().context("creating metrics")?;
    let tls = match &config.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(tls::load_server_config(
            files,
        )?)),
        None => None,
    };
    let listener = TcpListener::bind(config.raw.http.listen)
        .await
        .with_context(|| format!("binding HTTP listener {}", config.raw.http.listen))?;
    let http_addr = listener.local_addr()?;
    let dc = &config.raw.dns;
    let mut dns_zone =
        dns::zone_from_config(dc, config.raw.node.suffix_case).context("the [dns] zone")?;
    dns_zone.homed = engine
        .homed_prefixes()
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let (native_tcp, native_udp, native_addr) = bind_native(&config).await?;
    let dns_threads = dc.udp.then(|| udp::thread_count(dc.udp_threads));
    let (dns_tcp, dns_udp, dns_addr) = bind_pair(dc.listen, dc.tcp, dns_threads, "DNS").await?;
    let site = own_site(&config, http_addr, native_addr);
    let recursor = config
        .raw
        .recursion
        .enabled
        .then(|| Arc::new(build_recursor(&config, &metrics)));
    let state = Arc::new(http::HttpState {
        sessions: Default::default(),
        engine: engine.clone(),
        metrics: metrics.clone(),
        max_body_bytes: config.raw.http.max_body_bytes,
        plain_http_auth: config.raw.http.plain_http_auth,
        site: site.clone(),
        recursor: recursor.clone(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(config.raw.http.max_connections));
    let links: crate::sync::follower::Links = Default::default();
    let mut follow_links = Vec::new();
    for f in &config.raw.sync.follow {
        follow_links.push(crate::sync::follower::Link::from_config(
            f,
            config.raw.node.suffix_case,
        )?);
    }
    let token_path = crate::sync::operator_token_path(&config.raw.node.data_dir);
    let operator_token = match read_or_create_secret(&token_path) {
        Ok((token, _)) => Some(token),
        Err(e) => {
            tracing::warn!(error = %e, "no sync operator token: /sync/status and /sync/digest \
                                       answer [[sync.allow]] identities only");
            None
        }
    };
    let feed = Arc::new(crate::sync::feed::FeedState {
        http: state.clone(),
        allow: config.sync_allow.clone(),
        allow_plain: config.raw.sync.allow_plain,
        links: links.clone(),
        shutdown: shutdown_rx.clone(),
        scans: Arc::new(Semaphore::new(config.raw.sync.max_concurrent_scans)),
        operator_token: operator_token.clone(),
    });
    let mut tasks = Vec::new();
    let retention = config.raw.sync.log_retention;
    if retention > 0 {
        tasks.push(tokio::spawn(retain_log(
            engine.registry().clone(),
            retention,
            shutdown_rx.clone(),
        )));
    }
    for link in follow_links {
        tasks.push(tokio::spawn(crate::sync::follower::run_link(
            link,
            engine.registry().clone(),
            metrics.clone(),
            links.clone(),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(serve_http(
        listener,
        http::router(state).merge(crate::sync::feed::router(feed)),
        tls,
        limit,
        shutdown_rx.clone(),
    )));
    if dns_tcp.is_some() || !dns_udp.is_empty() {
        let service = Arc::new(dns::DnsService::new(
            engine.clone(),
            recursor.clone(),
            &metrics,
            dns_zone,
        ));
        if let Some(tcp) = dns_tcp {
            tasks.push(tokio::spawn(dns::serve_tcp(
                tcp,
                service.clone(),
                Arc::new(Semaphore::new(dc.max_connections)),
                Duration::from_secs(dc.idle_timeout_secs),
                shutdown_rx.clone(),
            )));
        }
        tasks.extend(udp::spawn_workers(
            dns_udp,
            service,
            dc.answer_cache_entries,
            &shutdown_rx,
            "dns",
        ));
    }
    let mut native = native::NativeService::new(engine.clone(), metrics, &site);
    if let Some(r) = &recursor {
        native = native.with_recursor(r.clone());
    }
    let native = Arc::new(native);
    if let Some(tcp) = native_tcp {
        let limit = Arc::new(Semaphore::new(config.raw.handle.max_connections));
        tasks.push(tokio::spawn(native_tcp::serve_tcp(
            tcp,
            native.clone(),
            limit,
            Duration::from_secs(config.raw.handle.idle_timeout_secs),
            shutdown_rx.clone(),
        )));
    }
    tasks.extend(udp::spawn_workers(
        native_udp,
        native,
        config.raw.handle.answer_cache_entries,
        &shutdown_rx,
        "native",
    ));
    Ok(RunningNode {
        http_addr,
        native_addr,
        dns_addr,
        engine,
        operator_token,
        shutdown,
        tasks,
    })
}

/// Keep the newest `keep` change-log entries: truncate now and every 30 s until shutdown.
async fn retain_log(registry: Arc<Registry>, keep: u64, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let reg = registry.clone();
        let floor = reg.last_seq().saturating_sub(keep) + 1;
        match tokio::task::spawn_blocking(move || reg.truncate_log_before(floor)).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(removed = n, floor, "change log truncated"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "change log truncation failed"),
            Err(e) => tracing::warn!(error = %e, "change log truncation task failed"),
        }
    }
}

/// Serve HTTP/1.1 (keep-alive; TLS when an acceptor is given) on `listener` until shutdown;
/// see [`accept::accept_loop`] for the connection cap and draining.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limit: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    let on_shutdown = shutdown.clone();
    accept::accept_loop(listener, limit, on_shutdown, move |stream, peer| {
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        async move {
            // Every request on the connection carries what is known about it.
            let service = |conn: http::ConnInfo| {
                let service = tower::ServiceExt::map_request(
                    router,
                    move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(conn.clone());
                        req
                    },
                );
                hyper_util::service::TowerToHyperService::new(service)
            };
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            let client_cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|cert| Arc::<[u8]>::from(cert.as_ref()));
                            let conn = http::ConnInfo {
                                peer,
                                tls: true,
                                client_cert,
                            };
                            serve_http_connection(stream, service(conn), peer, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    let conn = http::ConnInfo {
                        peer,
                        tls: false,
                        client_cert: None,
                    };
                    serve_http_connection(stream, service(conn), peer, shutdown).await
                }
            }
        }
    })
    .await;
}

/// One HTTP/1.1 connection, with a header-read timeout, ended gracefully on shutdown.
async fn serve_http_connection<I, S>(
    io: I,
    service: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<axum::body::Body>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Without a timer hyper silently applies no header-read timeout at all.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HTTP_HEADER_TIMEOUT);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
