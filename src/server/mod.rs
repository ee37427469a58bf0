//! tokio front ends and node start-up: opening the registry, homing prefixes, bootstrapping
//! administrators, and serving HTTP/HTTPS, the native Handle protocol (UDP, TCP) and DNS
//! (UDP, TCP; see [`dns`]) until shutdown (Ctrl-C or SIGTERM).
//!
//! Here: [`start`] in its steps (bind every socket, load the server key and build the site,
//! the resolver, then spawn each front end's tasks) and the [`RunningNode`] it returns, with
//! the node's background tasks. What start-up is built from (registry, secrets, keys, sites,
//! policy, bounds, sockets) is in `node`, the HTTP connection under the router in
//! `http_serve`; their public items are re-exported here.

pub mod accept;
pub mod dns;
pub mod http;
mod http_serve;
pub mod native;
mod node;
pub mod rrl;
pub mod signal;
pub mod udp;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::challenge::PrivateKey;
use crate::config::ValidConfig;
use crate::metrics::Metrics;
use crate::model::SiteInfo;
use crate::resolve::recursion::Recursor;
use crate::resolve::{Engine, Resolver};
use crate::store::Registry;
use crate::sync::follower::{Link, Links};
use crate::wire::dns::Zone;

pub use http_serve::{serve_http, BodyDeadlinePassed, DeadlineBody};
pub use node::{
    blocking_threads, engine_policy, load_server_key, native_limits, open_registry, own_site,
    prepare_registry, read_or_create_secret, root_sites, secret_path, server_key_path,
    write_private_file, StartError, BLOCKING_THREADS_BESIDES_UDP,
};
use node::{build_recursor, Sockets};

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
        // A read index still loading lets go of the registry.
        self.engine.registry().stop_loading_read_index();
        for task in self.tasks {
            let _ = task.await;
        }
        // No task writes any more: the next start reads this copy instead of sled.
        let registry = self.engine.registry().clone();
        match tokio::task::spawn_blocking(move || registry.save_read_index()).await {
            Ok(Ok(true)) => tracing::info!("read index saved for the next start"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "read index: saving it failed"),
            Err(e) => tracing::warn!(error = %e, "read index: saving it failed"),
        }
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
) -> Result<RunningNode, StartError> {
    // Every step that can fail comes before the first task is spawned, in this order: the
    // sockets, the server key (created on first start), the follow links, then the operator
    // token (created, or only warned about); spawning cannot fail.
    let engine = Engine::new(registry, engine_policy(&config));
    let sockets = Sockets::bind(&config, &engine).await?;
    let server_key = load_server_key(&config)?;
    let site = own_site(
        &config,
        sockets.http_addr,
        sockets.native_addr,
        server_key.public_key().encode(),
    );
    let recursor = config
        .recursion
        .enabled
        .then(|| Arc::new(build_recursor(&config, &metrics)));
    let resolver = Resolver::new(engine.clone(), recursor.clone());
    let follow_links = node::follow_links(&config)?;
    let operator_token = node::operator_token(&config);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut launch = Launch {
        config: &config,
        metrics: &metrics,
        engine: &engine,
        resolver: &resolver,
        recursor: recursor.as_ref(),
        site: &site,
        shutdown: shutdown_rx,
        tasks: Vec::new(),
    };
    if config.store.read_index {
        // Serving starts now; resolutions read sled until the index is complete.
        let registry = engine.registry().clone();
        let loader = std::thread::Builder::new()
            .name("read-index".into())
            .spawn(move || registry.load_read_index());
        if let Err(e) = loader {
            tracing::warn!(error = %e, "read index: no loader thread; resolutions read sled");
        }
    }
    let links = Links::default();
    launch.spawn_sync(follow_links, &links);
    launch.spawn_http(sockets.http, sockets.tls, links, operator_token.clone());
    launch.spawn_dns(sockets.dns_tcp, sockets.dns_udp, sockets.dns_zone);
    launch.spawn_native(sockets.native_tcp, sockets.native_udp, server_key);
    let tasks = launch.tasks;
    Ok(RunningNode {
        http_addr: sockets.http_addr,
        native_addr: sockets.native_addr,
        dns_addr: sockets.dns_addr,
        engine,
        metrics,
        operator_token,
        shutdown,
        tasks,
    })
}

/// A node being started: what its tasks are built from, and the tasks spawned so far (each
/// selects on `shutdown`; [`RunningNode::shutdown`] waits for them all).
struct Launch<'a> {
    config: &'a ValidConfig,
    metrics: &'a Metrics,
    engine: &'a Engine,
    resolver: &'a Resolver,
    recursor: Option<&'a Arc<Recursor>>,
    site: &'a SiteInfo,
    shutdown: watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Launch<'_> {
    /// Replication: change-log retention (when `sync.log_retention` is set) and one task per
    /// follow link, reporting into `links` (what `/sync/status` shows).
    fn spawn_sync(&mut self, follow_links: Vec<Link>, links: &Links) {
        let retention = self.config.sync.log_retention;
        if retention > 0 {
            self.tasks.push(tokio::spawn(retain_log(
                self.engine.registry().clone(),
                retention,
                self.shutdown.clone(),
            )));
        }
        for link in follow_links {
            self.tasks
                .push(tokio::spawn(crate::sync::follower::run_link(
                    link,
                    self.engine.registry().clone(),
                    self.metrics.clone(),
                    links.clone(),
                    self.shutdown.clone(),
                )));
        }
    }

    /// The HTTP(S) front end: the REST router and the `/sync/*` feed on one listener.
    fn spawn_http(
        &mut self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        links: Links,
        operator_token: Option<String>,
    ) {
        let config = self.config;
        let state = Arc::new(http::HttpState {
            sessions: Default::default(),
            metrics: self.metrics.clone(),
            max_body_bytes: config.http.max_body_bytes,
            plain_http_auth: config.http.plain_http_auth,
            site: self.site.clone(),
            resolver: self.resolver.clone(),
            auth_failures: std::sync::Mutex::new(crate::auth::pending::FailureLimiter::new(
                Default::default(),
            )),
        });
        let feed = Arc::new(http::feed::FeedState {
            http: state.clone(),
            allow: config.sync.allow.clone(),
            allow_plain: config.sync.allow_plain,
            links,
            shutdown: self.shutdown.clone(),
            scans: Arc::new(tokio::sync::Semaphore::new(
                config.sync.max_concurrent_scans,
            )),
            operator_token,
        });
        self.tasks.push(tokio::spawn(serve_http(
            listener,
            http::router(state).merge(http::feed::router(feed)),
            tls,
            accept::ConnectionTable::new("http", http_serve::http_limits(config), self.metrics),
            self.shutdown.clone(),
        )));
    }

    /// The DNS front end, when it has a socket: TCP connections and the UDP workers.
    fn spawn_dns(
        &mut self,
        tcp: Option<TcpListener>,
        udp_sockets: Vec<std::net::UdpSocket>,
        zone: Zone,
    ) {
        if tcp.is_none() && udp_sockets.is_empty() {
            return;
        }
        let (config, metrics) = (self.config, self.metrics);
        let service = Arc::new(dns::DnsService::new(self.resolver.clone(), metrics, zone));
        if let Some(tcp) = tcp {
            self.tasks.push(tokio::spawn(dns::serve_tcp(
                tcp,
                service.clone(),
                accept::ConnectionTable::new("dns", node::dns_limits(&config.dns), metrics),
                self.shutdown.clone(),
            )));
        }
        self.tasks.extend(udp::spawn_workers(
            udp_sockets,
            service,
            config.dns.answer_cache_entries,
            udp::RateLimit::new(config.rate_limit.clone(), metrics, "dns"),
            &self.shutdown,
            "dns",
        ));
    }

    /// The native Handle front end: its service (signing with `server_key`, recursing when
    /// the node does), the challenge sweeper, TCP connections and the UDP workers.
    fn spawn_native(
        &mut self,
        tcp: Option<TcpListener>,
        udp_sockets: Vec<std::net::UdpSocket>,
        server_key: Arc<PrivateKey>,
    ) {
        let (config, metrics) = (self.config, self.metrics);
        let hc = &config.handle;
        let table =
            accept::ConnectionTable::new("native", node::native_connection_limits(hc), metrics);
        let rate_limit = udp::RateLimit::new(config.rate_limit.clone(), metrics, "udp");
        let mut native =
            native::NativeService::new(self.engine.clone(), metrics.clone(), self.site)
                .with_limits(native_limits(hc))
                .with_server_key(server_key);
        if let Some(r) = self.recursor {
            native = native.with_recursor(r.clone());
        }
        let native = Arc::new(native);
        self.tasks.push(tokio::spawn(sweep_challenges(
            native.clone(),
            self.shutdown.clone(),
        )));
        if let Some(tcp) = tcp {
            self.tasks.push(tokio::spawn(native::tcp::serve_tcp(
                tcp,
                native.clone(),
                table,
                self.shutdown.clone(),
            )));
        }
        self.tasks.extend(udp::spawn_workers(
            udp_sockets,
            native,
            hc.answer_cache_entries,
            rate_limit,
            &self.shutdown,
            "native",
        ));
    }
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
