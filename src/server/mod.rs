//! tokio front ends and node start-up: opening the registry, homing prefixes, bootstrapping
//! administrators, and serving HTTP/HTTPS, the native Handle protocol (UDP, TCP) and DNS
//! (UDP, TCP; see [`dns`]) until shutdown (Ctrl-C or SIGTERM).

pub mod accept;
pub mod dns;
pub mod http;
pub mod native;
pub mod rrl;
pub mod udp;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::challenge::PrivateKey;
use crate::config::{HandleSettings, ValidConfig};
use crate::metrics::Metrics;
use crate::model::structured::{interface, Interface, ServerInfo, SITE_PRIMARY};
use crate::model::{Prefix, SiteInfo};
use crate::resolve::cache::{Cache, CacheConfig};
use crate::resolve::recursion::{Recursor, RecursorConfig};
use crate::resolve::{init_prefix, Engine, Policy, Resolver};
use crate::store::{Registry, StoreOptions};

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Open the registry a configuration names.
pub fn open_registry(config: &ValidConfig) -> anyhow::Result<Registry> {
    let dir = &config.node.data_dir;
    Registry::open(
        dir,
        &StoreOptions {
            cache_capacity_bytes: config.store.cache_capacity_mb << 20,
            flush_every_ms: config.store.flush_every_ms,
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
pub fn load_server_key(config: &ValidConfig) -> anyhow::Result<Arc<PrivateKey>> {
    if let Some(key) = &config.handle.server_key {
        return Ok(key.clone());
    }
    let path = server_key_path(&config.node.data_dir);
    if path.exists() {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading server key {}", path.display()))?;
        let key =
            PrivateKey::from_pem(&pem).with_context(|| format!("server key {}", path.display()))?;
        return Ok(Arc::new(key));
    }
    let key = PrivateKey::generate_rsa(2048).context("generating the server key")?;
    let pem = key.try_to_pem().context("encoding the server key")?;
    write_private_file(&path, pem.as_bytes(), false)?;
    tracing::info!(path = %path.display(), "created the node's server key (signs certified answers)");
    Ok(Arc::new(key))
}

/// Create `path` readable by its owner only (mode 0600; replacing it when `replace`, else it
/// must not exist) holding `bytes`, fsynced before this returns.
pub fn write_private_file(path: &Path, bytes: &[u8], replace: bool) -> anyhow::Result<()> {
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
        .with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode through open(): tighten it before writing.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Home the configured prefixes; give those without a prefix handle an administrator when
/// `bootstrap_admins` is on. Returns (prefix, secret file) for each administrator created.
pub fn prepare_registry(
    config: &ValidConfig,
    registry: &Registry,
) -> anyhow::Result<Vec<(Prefix, PathBuf)>> {
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
            init_prefix(registry, prefix, 300, secret.as_bytes())
                .map_err(|f| anyhow::anyhow!("creating 0.NA/{prefix}: {f}"))?;
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

fn build_recursor(config: &ValidConfig, metrics: &Metrics) -> Recursor {
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

/// Bind the native protocol's TCP listener and UDP sockets on one address. With port 0 the
/// kernel picks the TCP port and UDP binds the same number (retried if it is taken).
async fn bind_native(config: &ValidConfig) -> anyhow::Result<BoundPair> {
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
    /// The node's instruments (what `/metrics` shows).
    pub metrics: Metrics,
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

/// Start a node from a validated configuration, on `registry`, recording into `metrics` (the
/// caller makes the registry of instruments and keeps a handle on it, as on the registry:
/// nothing global). Everything that can fail (store, ports, TLS files) fails here, before
/// the node reports ready.
pub async fn start(
    config: ValidConfig,
    registry: Arc<Registry>,
    metrics: Metrics,
) -> anyhow::Result<RunningNode> {
    let policy = engine_policy(&config);
    let engine = Engine::new(registry, policy);
    let tls = match &config.http.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::load_server_config(files)?,
        )),
        None => None,
    };
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP listener {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let dc = &config.dns;
    let mut dns_zone =
        dns::zone_from_config(dc, config.node.suffix_case).context("the [dns] zone")?;
    dns_zone.homed = engine
        .homed_prefixes()
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let (native_tcp, native_udp, native_addr) = bind_native(&config).await?;
    let dns_threads = dc.udp.then(|| udp::thread_count(dc.udp_threads));
    let (dns_tcp, dns_udp, dns_addr) = bind_pair(dc.listen, dc.tcp, dns_threads, "DNS").await?;
    let server_key = load_server_key(&config)?;
    let site = own_site(
        &config,
        http_addr,
        native_addr,
        server_key.public_key().encode(),
    );
    let recursor = config
        .recursion
        .enabled
        .then(|| Arc::new(build_recursor(&config, &metrics)));
    let resolver = Resolver::new(engine.clone(), recursor.clone());
    let state = Arc::new(http::HttpState {
        sessions: Default::default(),
        metrics: metrics.clone(),
        max_body_bytes: config.http.max_body_bytes,
        plain_http_auth: config.http.plain_http_auth,
        site: site.clone(),
        resolver: resolver.clone(),
        auth_failures: std::sync::Mutex::new(crate::auth::pending::FailureLimiter::new(
            Default::default(),
        )),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let links: crate::sync::follower::Links = Default::default();
    let mut follow_links = Vec::new();
    for f in &config.sync.follow {
        follow_links.push(crate::sync::follower::Link::new(
            f,
            config.node.suffix_case,
        )?);
    }
    let token_path = crate::sync::operator_token_path(&config.node.data_dir);
    let operator_token = match read_or_create_secret(&token_path) {
        Ok((token, _)) => Some(token),
        Err(e) => {
            tracing::warn!(error = %e, "no sync operator token: /sync/status and /sync/digest \
                                       answer [[sync.allow]] identities only");
            None
        }
    };
    let feed = Arc::new(http::feed::FeedState {
        http: state.clone(),
        allow: config.sync.allow.clone(),
        allow_plain: config.sync.allow_plain,
        links: links.clone(),
        shutdown: shutdown_rx.clone(),
        scans: Arc::new(tokio::sync::Semaphore::new(
            config.sync.max_concurrent_scans,
        )),
        operator_token: operator_token.clone(),
    });
    let mut tasks = Vec::new();
    let retention = config.sync.log_retention;
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
        http::router(state).merge(http::feed::router(feed)),
        tls,
        accept::ConnectionTable::new("http", http_limits(&config), &metrics),
        shutdown_rx.clone(),
    )));
    if dns_tcp.is_some() || !dns_udp.is_empty() {
        let service = Arc::new(dns::DnsService::new(resolver.clone(), &metrics, dns_zone));
        if let Some(tcp) = dns_tcp {
            tasks.push(tokio::spawn(dns::serve_tcp(
                tcp,
                service.clone(),
                accept::ConnectionTable::new(
                    "dns",
                    accept::Limits {
                        max_connections: dc.max_connections,
                        per_client: dc.max_connections_per_client,
                        idle_timeout: Duration::from_secs(dc.idle_timeout_secs),
                        request_timeout: Duration::from_secs(dc.request_timeout_secs),
                        write_timeout: Duration::from_secs(dc.write_timeout_secs),
                    },
                    &metrics,
                ),
                shutdown_rx.clone(),
            )));
        }
        tasks.extend(udp::spawn_workers(
            dns_udp,
            service,
            dc.answer_cache_entries,
            udp::RateLimit::new(config.rate_limit.clone(), &metrics, "dns"),
            &shutdown_rx,
            "dns",
        ));
    }
    let hc = &config.handle;
    let native_table = accept::ConnectionTable::new(
        "native",
        accept::Limits {
            max_connections: hc.max_connections,
            per_client: hc.max_connections_per_client,
            idle_timeout: hc.idle_timeout,
            request_timeout: hc.request_timeout,
            write_timeout: hc.write_timeout,
        },
        &metrics,
    );
    let native_rate_limit = udp::RateLimit::new(config.rate_limit.clone(), &metrics, "udp");
    let mut native = native::NativeService::new(engine.clone(), metrics.clone(), &site)
        .with_limits(native_limits(hc))
        .with_server_key(server_key);
    if let Some(r) = &recursor {
        native = native.with_recursor(r.clone());
    }
    let native = Arc::new(native);
    tasks.push(tokio::spawn(sweep_challenges(
        native.clone(),
        shutdown_rx.clone(),
    )));
    if let Some(tcp) = native_tcp {
        tasks.push(tokio::spawn(native::tcp::serve_tcp(
            tcp,
            native.clone(),
            native_table,
            shutdown_rx.clone(),
        )));
    }
    tasks.extend(udp::spawn_workers(
        native_udp,
        native,
        config.handle.answer_cache_entries,
        native_rate_limit,
        &shutdown_rx,
        "native",
    ));
    Ok(RunningNode {
        http_addr,
        native_addr,
        dns_addr,
        engine,
        metrics,
        operator_token,
        shutdown,
        tasks,
    })
}

/// Drop expired native challenges every second until shutdown (the table is bounded anyway;
/// this returns the memory of abandoned ones promptly).
async fn sweep_challenges(native: Arc<native::NativeService>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        native.sweep(std::time::Instant::now());
    }
}

/// The HTTP listener's connection bounds. Hyper's header-read timeout runs from when the node
/// starts waiting for a request, so the request timeout is also the keep-alive idle timeout.
fn http_limits(config: &ValidConfig) -> accept::Limits {
    let h = &config.http;
    accept::Limits {
        max_connections: h.max_connections,
        per_client: h.max_connections_per_client,
        idle_timeout: h.request_timeout,
        request_timeout: h.request_timeout,
        write_timeout: h.write_timeout,
    }
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
/// see [`accept`] for the connection bounds and draining. On each connection: the request
/// head must arrive within the request timeout of the node starting to wait for it (hyper's
/// header-read timeout, which also bounds idle keep-alive), the body within the request
/// timeout of the head ([`DeadlineBody`]), and a response write may stall at most the write
/// timeout.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    table: Arc<accept::ConnectionTable>,
    shutdown: watch::Receiver<bool>,
) {
    let on_shutdown = shutdown.clone();
    accept::accept_loop(listener, table, on_shutdown, move |stream, peer, conn| {
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        async move {
            let limits = *conn.limits();
            // A client that stops reading its responses stalls the writes: close it then.
            let mut io = tokio_io_timeout::TimeoutStream::new(stream);
            io.set_write_timeout(Some(limits.write_timeout));
            let io = Box::pin(io);
            // Every request on the connection carries what is known about it, its body gets
            // its deadline, and while it is in progress the connection is busy (not evicted).
            let service = |info: http::ConnInfo| {
                let body_timeout = limits.request_timeout;
                let mapped = tower::ServiceExt::map_request(
                    router,
                    move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        req.map(|body| DeadlineBody::new(body, body_timeout))
                    },
                );
                let inner = hyper_util::service::TowerToHyperService::new(mapped);
                let conn = conn.clone();
                hyper::service::service_fn(move |req| {
                    // Busy until the response body has been sent.
                    let busy = conn.busy();
                    let answer = hyper::service::Service::call(&inner, req);
                    async move {
                        let response = answer.await?;
                        Ok::<_, std::convert::Infallible>(
                            response.map(|inner| BusyBody { inner, _busy: busy }),
                        )
                    }
                })
            };
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io));
                    let accepted = tokio::select! {
                        r = handshake => r,
                        _ = conn.evicted() => return,
                    };
                    match accepted {
                        Ok(Ok(stream)) => {
                            let client_cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|cert| Arc::<[u8]>::from(cert.as_ref()));
                            let info = http::ConnInfo {
                                peer,
                                tls: true,
                                client_cert,
                            };
                            let service = service(info);
                            serve_http_connection(stream, service, peer, &conn, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    let info = http::ConnInfo {
                        peer,
                        tls: false,
                        client_cert: None,
                    };
                    let service = service(info);
                    serve_http_connection(io, service, peer, &conn, shutdown).await
                }
            }
        }
    })
    .await;
}

/// One HTTP/1.1 connection, with a header-read timeout, ended gracefully on shutdown or when
/// the connection table asks it to make room (hyper closes an idle connection at once and
/// one mid-request after its response).
async fn serve_http_connection<I, S, B>(
    io: I,
    service: S,
    peer: SocketAddr,
    conn: &accept::Connection,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Without a timer hyper silently applies no header-read timeout at all.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(conn.limits().request_timeout);
    let http = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(http);
    let result = tokio::select! {
        r = http.as_mut() => r,
        _ = shutdown.changed() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
        _ = conn.evicted() => {
            // Hyper closes a connection that has read nothing at once, finishes a request in
            // progress, but would wait out the header timeout for a partly sent head: with no
            // request in progress after a short grace, drop the connection.
            http.as_mut().graceful_shutdown();
            loop {
                tokio::select! {
                    r = http.as_mut() => break r,
                    _ = tokio::time::sleep(EVICTION_GRACE) => {
                        if !conn.is_busy() {
                            break Ok(());
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            conn.table().count_closed(accept::Closed::RequestTimeout);
        } else if is_write_timeout(&e) {
            conn.table().count_closed(accept::Closed::WriteTimeout);
        }
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// How long an HTTP connection asked to make room may take to close when no request is in
/// progress on it (it may still be flushing the end of its last response).
const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// A response body that keeps its connection busy (not evicted) until it has been sent.
struct BusyBody {
    inner: axum::body::Body,
    _busy: accept::Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a connection error is the stalled-write timeout of its stream.
fn is_write_timeout(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A request body that did not arrive in full within the request timeout of its head.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyDeadlinePassed;

impl BodyDeadlinePassed {
    /// Whether `e` (or an error it wraps) is a passed body deadline.
    pub fn caused(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if err.is::<BodyDeadlinePassed>() {
                return true;
            }
            cur = err.source();
        }
        false
    }
}

/// A request body with an absolute deadline: reading it past the deadline fails with
/// [`BodyDeadlinePassed`], so a client trickling a body cannot hold its connection.
pub struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: hyper::body::Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match std::future::Future::poll(this.deadline.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyDeadlinePassed)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
