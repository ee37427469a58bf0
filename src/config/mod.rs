//! Node configuration (TOML). Every field is validated by [`Config::load`] /
//! [`Config::from_toml`] before any port is bound or any data is touched; unknown fields are
//! errors, so a typo never silently falls back to a default.
//!
//! `idnode serve` without `--config` runs [`EMBEDDED_DEFAULT`]: a standalone node on 127.0.0.1
//! homing the example prefix `88.100.1`, with its data in `./idnode-data`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::challenge::PrivateKey;
use crate::auth::pending::{FailureLimits, PendingLimits};
use crate::auth::session::SessionLimits;
use crate::auth::{AnonymousReads, Identity};
use crate::model::{Prefix, SuffixCase};
use crate::net::CidrList;
use crate::resolve::Partition;
use crate::sync::follower::{FollowCredential, FollowSettings};
use crate::tls::TlsFiles;

/// The configuration `idnode serve` uses when none is given (also `config/default.toml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// When HTTP Basic credentials are accepted over plain (non-TLS) HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PlainHttpAuth {
    /// Never: like Handle.Net, credentials count only over HTTPS.
    Never,
    /// Only from loopback clients (credentials never cross a network in clear).
    #[default]
    Loopback,
    /// Always (only for closed test networks).
    Always,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub handle: HandleConfig,
    #[serde(default)]
    pub recursion: RecursionConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[log]`: where the audit log goes besides the operational log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Append the audit log (every write and failed authentication) to this file as JSON
    /// Lines; relative paths are relative to the working directory.
    pub audit_file: Option<PathBuf>,
}

/// `[rate_limit]`: response-rate limiting on native UDP and DNS UDP, per source network
/// (see `server::rrl`). Answers over a network's budget are dropped, or every `slip`-th one
/// replaced by a short "ask over TCP" answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Answers per second per source network (shared out among the UDP workers).
    pub responses_per_second: u32,
    /// Answer bytes per second per source network (shared out among the UDP workers).
    pub bytes_per_second: u64,
    /// Bursts of up to this many seconds of the rates pass.
    pub burst_secs: u32,
    /// Every `slip`-th withheld answer is slipped (a DNS TC answer, a native RC 2) instead
    /// of dropped; 0 drops them all, 1 slips them all.
    pub slip: u32,
    /// Source networks: IPv4 addresses grouped by this prefix length ...
    pub ipv4_prefix: u8,
    /// ... and IPv6 addresses by this one.
    pub ipv6_prefix: u8,
    /// Clients never limited (CIDR networks or addresses).
    pub exempt: CidrList,
    /// Source networks tracked per UDP worker.
    pub max_networks: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            responses_per_second: 200,
            bytes_per_second: 64 * 1024,
            burst_secs: 2,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: CidrList::parse(&["127.0.0.1/32", "::1/128"]).unwrap_or_default(),
            max_networks: 100_000,
        }
    }
}

/// Replication: which followers this node serves (`[[sync.allow]]`) and which upstreams it
/// follows (`[[sync.follow]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Serve and follow change feeds over plain HTTP (closed test networks only); otherwise
    /// the feed answers only on the node's HTTPS listener.
    pub allow_plain: bool,
    /// Change-log entries kept (older ones are dropped at start and every 30 s; followers
    /// further behind re-bootstrap). 0 keeps everything.
    pub log_retention: u64,
    /// How many full-prefix scans (`/sync/digest`, `/sync/snapshot`) run at once; further
    /// requests get 503 with `Retry-After` instead of queueing (each scan reads a whole
    /// prefix, and a snapshot holds it in memory). 1 to 64.
    pub max_concurrent_scans: usize,
    /// Followers this node serves, and the prefixes each may receive.
    pub allow: Vec<SyncAllow>,
    /// Upstreams this node follows.
    pub follow: Vec<SyncFollow>,
}

/// Change-log entries kept by default: every entry holds a whole record, so an unbounded log
/// grows with every write; a million entries (about 0.5 GB with records of a few hundred
/// bytes) leave followers days of catch-up on a busy node before they must re-bootstrap.
pub const DEFAULT_LOG_RETENTION: u64 = 1_000_000;

/// Full-prefix scans served at once by default: a follower bootstrap and an operator's
/// digest check can run together; more would only compete for the disk and memory.
pub const DEFAULT_MAX_CONCURRENT_SCANS: usize = 2;

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            allow_plain: false,
            log_retention: DEFAULT_LOG_RETENTION,
            max_concurrent_scans: DEFAULT_MAX_CONCURRENT_SCANS,
            allow: Vec::new(),
            follow: Vec::new(),
        }
    }
}

/// `[[sync.allow]] identity = "300:0.NA/88.100", prefixes = ["88.100"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncAllow {
    pub identity: String,
    pub prefixes: Vec<String>,
}

/// `[[sync.follow]] upstream = "https://host:port", identity = "300:0.NA/88.100",
/// secret_file = "...", prefixes = ["88.100"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncFollow {
    pub upstream: String,
    pub identity: String,
    /// The identity's HS_SECKEY secret (sent as HTTP Basic over HTTPS) ...
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// ... or the PEM private key of its HS_PUBKEY: every request is then signed (see
    /// `sync::request_signature`), and no secret crosses the link.
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    /// With `private_key`, over HTTPS: a PEM certificate for that key naming the identity
    /// (subject UID or CN `index:handle`), presented as a TLS client certificate; requests
    /// then carry `Authorization: Handle clientCert="true"` instead of a signature.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    pub prefixes: Vec<String>,
    /// PEM certificates trusted for an `https://` upstream (its CA, or its self-signed
    /// certificate). There are no built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any upstream certificate (tests with self-signed certificates only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The DNS front end: identifiers as names under `zone` (see `wire::dns` for the mapping).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// UDP and TCP address (5300 so it runs without root; 53 in production).
    pub listen: SocketAddr,
    pub udp: bool,
    pub tcp: bool,
    /// The zone identifiers live under, e.g. "id.example." (a trailing dot is optional).
    pub zone: String,
    /// SOA MNAME (primary name server); default "ns1.<zone>".
    pub soa_mname: Option<String>,
    /// SOA RNAME (responsible mailbox as a name); default "hostmaster.<zone>".
    pub soa_rname: Option<String>,
    /// NS names of the zone; default ["ns1.<zone>"].
    pub ns: Vec<String>,
    /// TTL of SOA/NS and of negative answers (SOA MINIMUM).
    pub negative_ttl_secs: u32,
    /// Largest UDP answer offered to EDNS clients (512..=4096).
    pub max_udp_payload: u16,
    /// Most simultaneous TCP connections; when all are taken, the one idle longest between
    /// queries is closed to make room.
    pub max_connections: usize,
    /// Most simultaneous TCP connections from one IP address (more are closed at once).
    pub max_connections_per_client: usize,
    /// Seconds a TCP connection may idle between queries.
    pub idle_timeout_secs: u64,
    /// Seconds a TCP query may take to arrive in full once its first byte has.
    pub request_timeout_secs: u64,
    /// Seconds writing a TCP answer may take before a client that does not read is
    /// disconnected.
    pub write_timeout_secs: u64,
    /// UDP worker threads, each with its own `SO_REUSEPORT` socket; 0 = one per core (at most 4).
    pub udp_threads: usize,
    /// Encoded answers kept for replay, shared out among the UDP workers; 0 disables the
    /// answer cache (see `server::udp`).
    pub answer_cache_entries: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5300)),
            udp: true,
            tcp: true,
            zone: "id.example.".into(),
            soa_mname: None,
            soa_rname: None,
            ns: Vec::new(),
            negative_ttl_secs: 60,
            max_udp_payload: 1232,
            max_connections: 256,
            max_connections_per_client: 16,
            idle_timeout_secs: 10,
            request_timeout_secs: 10,
            write_timeout_secs: 10,
            udp_threads: 0,
            answer_cache_entries: 200_000,
        }
    }
}

/// Recursive resolution: answering for identifiers this node does not home by walking the
/// hierarchy from the root sites, with a cache shared by every front end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecursionConfig {
    /// Recurse for clients (native requests with the REC flag, which Handle clients set by
    /// default; HTTP GETs) when the identifier is not homed here.
    pub enabled: bool,
    /// Servers of the root (top-level) site, `host:port`, each answering UDP and TCP.
    pub roots: Vec<SocketAddr>,
    /// Per-exchange timeout with one upstream server.
    pub timeout_ms: u64,
    /// Tries per server (with backoff) before moving on.
    pub attempts: u32,
    /// Referrals and service-handle hops followed per lookup.
    pub max_referrals: usize,
    /// Requests whose recursion count exceeds this get RC 6.
    pub max_recursion_count: u8,
    /// Whole-lookup deadline.
    pub deadline_ms: u64,
    /// Cached answers (and, separately, prefix sites) kept at most.
    pub cache_max_entries: usize,
    /// Bytes the cache may hold (estimated heap size of keys and values, answers and prefix
    /// sites together); the least recently used entries are evicted beyond it.
    pub cache_max_bytes: usize,
    /// Recursive lookups in flight at once, all front ends and clients together (each
    /// request counts while it waits, also when it waits on another's identical fetch).
    /// Beyond it requests fail at once: native RC 3, DNS SERVFAIL, HTTP 503.
    pub max_concurrent: usize,
    /// Client networks that may use recursion (CIDR, e.g. "10.0.0.0/8", or a bare address).
    /// Others get the node's non-recursive answer (native: 301 / referral; DNS: REFUSED;
    /// HTTP: the engine's answer). Default: loopback and private ranges only; list
    /// "0.0.0.0/0" and "::/0" to run an open resolver.
    pub allow: CidrList,
    /// Value TTLs are clamped to this.
    pub cache_max_ttl_secs: u32,
    /// How long "not found" (100) and "no values" (200) answers are cached (0: not at all).
    pub negative_ttl_secs: u32,
    /// How long an expired answer may still be served when upstream is unreachable.
    pub serve_stale_secs: u32,
}

impl Default for RecursionConfig {
    fn default() -> Self {
        RecursionConfig {
            enabled: false,
            roots: Vec::new(),
            timeout_ms: 2000,
            attempts: 3,
            max_referrals: 20,
            max_recursion_count: 10,
            deadline_ms: 10_000,
            cache_max_entries: 100_000,
            cache_max_bytes: crate::resolve::cache::DEFAULT_MAX_BYTES,
            max_concurrent: crate::resolve::recursion::DEFAULT_MAX_CONCURRENT_RECURSIONS,
            allow: CidrList::private(),
            cache_max_ttl_secs: 86_400,
            negative_ttl_secs: 60,
            serve_stale_secs: 300,
        }
    }
}

/// Largest native answer over UDP by default (`handle.max_udp_answer_bytes`): ordinary
/// records fit, and a 70-byte query cannot draw more than this toward a spoofable address.
pub const DEFAULT_MAX_UDP_ANSWER: usize = 16 * 1024;

/// The native Handle protocol listeners (UDP and TCP on the same address).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandleConfig {
    /// Address for both UDP and TCP (IANA port 2641).
    pub listen: SocketAddr,
    pub udp: bool,
    pub tcp: bool,
    /// Most simultaneous TCP connections; when all are taken, the one idle longest between
    /// requests is closed to make room.
    pub max_connections: usize,
    /// Most simultaneous TCP connections from one IP address (more are closed at once).
    pub max_connections_per_client: usize,
    /// Seconds a TCP connection may sit idle between requests (a connection that keeps
    /// sending requests, like the national SDK's, stays open indefinitely).
    pub idle_timeout_secs: u64,
    /// Seconds a TCP request may take to arrive in full once its first byte has.
    pub request_timeout_secs: u64,
    /// Seconds writing one answer message may take before a client that does not read is
    /// disconnected.
    pub write_timeout_secs: u64,
    /// Serial number of the node's HS_SITE (bump it when the site changes).
    pub site_serial: u16,
    /// PEM private key (RSA or DSA, PKCS#8 or PKCS#1) that signs certified answers; its
    /// public half is published in the node's HS_SITE. Unset: `<data_dir>/server-key.pem`,
    /// created (2048-bit RSA, mode 0600) on first start. `site_key` is the old name.
    #[serde(alias = "site_key")]
    pub server_key: Option<PathBuf>,
    /// Certified (signed) answers per second for all clients together; past it answers go
    /// out unsigned over UDP and as RC 3 over TCP (an RSA-2048 signature costs ~2 ms of CPU).
    pub signatures_per_second: u32,
    /// Certified answers per second for one client address (burst: two seconds' worth).
    pub signatures_per_second_per_client: u32,
    /// UDP worker threads, each with its own `SO_REUSEPORT` socket; 0 = one per core (at most 4).
    pub udp_threads: usize,
    /// Encoded answers kept for replay, shared out among the UDP workers; 0 disables the
    /// answer cache (see `server::udp`).
    pub answer_cache_entries: usize,
    /// Largest answer sent over UDP (512..=262144); a larger one is replaced by a short
    /// RC 2 error with the TC flag, on which Handle.Net clients retry over TCP at once.
    pub max_udp_answer_bytes: usize,
    /// Addresses of the servers allowed to ask this node to verify challenge answers
    /// (VERIFY_CHALLENGE, opCode 201, over TCP only). Empty: nobody.
    pub verify_peers: Vec<IpAddr>,
    /// 402 challenges one client address may have waiting at once (the whole table holds
    /// 10 000 and 16 MiB; see `auth::pending`).
    pub max_pending_challenges_per_client: usize,
    /// Longest idle timeout of a native Handle session (clients ask for one at setup;
    /// Handle.Net's ask for 86 400 s). Sessions nobody authenticated last `unauthenticated_session_secs` (20 s).
    pub session_timeout_secs: u64,
    /// Native Handle sessions one client address may hold at once (10 000 in all).
    pub max_sessions_per_client: usize,
    /// Seconds a native Handle session may wait to be authenticated (1..=60): until then it
    /// is state an unauthenticated sender created.
    pub unauthenticated_session_secs: u64,
    /// Failed challenge answers one address may make in a burst, then
    /// `auth_failures_per_minute`; past that its answers are refused unchecked.
    pub auth_failure_burst: u32,
    pub auth_failures_per_minute: u32,
    /// What an anonymous resolution without the public-only flag gets when the record has
    /// restricted values: `"public"` (default: the values anyone may read, RC 1, which is
    /// what the national ID-SDK can use) or `"challenge"` (Handle.Net's 402).
    pub anonymous_restricted_reads: AnonymousReads,
    /// Accept the ID-SDK's password login (opCode 2000), whose password travels in clear:
    /// off by default; turn it on only where the native port is reachable from a private
    /// network alone.
    pub password_login: bool,
}

impl Default for HandleConfig {
    fn default() -> Self {
        HandleConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2641)),
            udp: true,
            tcp: true,
            max_connections: 1024,
            max_connections_per_client: 64,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            write_timeout_secs: 30,
            site_serial: 1,
            server_key: None,
            signatures_per_second: 200,
            signatures_per_second_per_client: 20,
            udp_threads: 0,
            answer_cache_entries: 200_000,
            max_udp_answer_bytes: DEFAULT_MAX_UDP_ANSWER,
            verify_peers: Vec::new(),
            max_pending_challenges_per_client: 32,
            session_timeout_secs: crate::auth::session::DEFAULT_SESSION_TIMEOUT_SECS,
            max_sessions_per_client: crate::auth::session::DEFAULT_MAX_SESSIONS_PER_CLIENT,
            unauthenticated_session_secs: crate::auth::session::UNAUTHENTICATED_TTL.as_secs(),
            auth_failure_burst: 10,
            auth_failures_per_minute: 10,
            anonymous_restricted_reads: AnonymousReads::default(),
            password_login: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where the registry lives.
    pub data_dir: PathBuf,
    /// Prefixes this node is the authority for.
    pub homed_prefixes: Vec<String>,
    /// `sensitive` (IDIS SDK rule, default) or `insensitive` (Handle.Net rule).
    pub suffix_case: SuffixCase,
    /// Admins of `0.NA/P` may change every handle under `P` (Handle.Net `allow_na_admins`).
    pub allow_prefix_admins: bool,
    /// Identities (`index:handle`) with every right on this node.
    pub server_admins: Vec<String>,
    /// At start, give each homed prefix that has no `0.NA/<prefix>` handle an administrator
    /// `300:0.NA/<prefix>` whose secret is generated into `<data_dir>/<prefix>.admin-secret`.
    pub bootstrap_admins: bool,
    /// When this node is one server of a multi-server site: which hash partition it holds.
    pub partition: Option<PartitionConfig>,
}

/// `node.partition = { index = 0, count = 2, hash_option = 2 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// This server's position in the site's server list, from 0.
    pub index: u32,
    /// Servers in the site.
    pub count: u32,
    /// The site's hash option: 0 by prefix, 1 by suffix, 2 by whole handle (default).
    #[serde(default = "default_hash_option")]
    pub hash_option: u8,
    /// The native addresses (`host:port`, UDP and TCP) of all the site's servers in order,
    /// this one at `index`; published in the node's HS_SITE so clients route by hash.
    #[serde(default)]
    pub servers: Vec<SocketAddr>,
}

fn default_hash_option() -> u8 {
    2
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./idnode-data"),
            homed_prefixes: Vec::new(),
            suffix_case: SuffixCase::Sensitive,
            allow_prefix_admins: true,
            server_admins: Vec::new(),
            bootstrap_admins: true,
            partition: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the listener speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// When Basic credentials count over plain HTTP.
    pub plain_http_auth: PlainHttpAuth,
    /// Most simultaneous connections; when all are taken, the one idle longest between
    /// requests is closed to make room (with every one mid-request, more wait in the accept
    /// queue).
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (more are closed at once).
    pub max_connections_per_client: usize,
    /// Seconds a request head may take, counted from when the node starts waiting for it
    /// (so it also bounds idle keep-alive connections), and, separately, seconds its body may
    /// take once the head has arrived.
    pub request_timeout_secs: u64,
    /// Seconds a response write may stall (the client not reading) before the connection is
    /// closed.
    pub write_timeout_secs: u64,
    /// With HTTPS: ask clients for a certificate (optional for them), so that requests with
    /// `Authorization: Handle clientCert="true"` authenticate by it (HS_PUBKEY).
    pub client_cert_auth: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 1 << 20,
            plain_http_auth: PlainHttpAuth::Loopback,
            max_connections: 1024,
            max_connections_per_client: 64,
            request_timeout_secs: 30,
            write_timeout_secs: 30,
            client_cert_auth: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// sled page-cache size.
    pub cache_capacity_mb: u64,
    /// sled's background flush interval. Acknowledged writes never wait for it: they are
    /// flushed and fsynced before the answer.
    pub flush_every_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity_mb: 256,
            flush_every_ms: 500,
        }
    }
}

/// A configuration that passed validation: each section as the typed settings its subsystem
/// consumes, with text parsed (prefixes, identities, the partition, follow links) and files
/// loaded or checked (the server key, the TLS pair). The TOML structs above are only the
/// input: nothing keeps them, so no consumer can read a field validation did not see.
///
/// Sections whose TOML form is already made of typed values (`[recursion]`, `[dns]`,
/// `[store]`, `[rate_limit]`, `[log]`) are kept as they are, checked.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub node: NodeSettings,
    pub http: HttpSettings,
    pub handle: HandleSettings,
    pub recursion: RecursionConfig,
    pub dns: DnsConfig,
    pub store: StoreConfig,
    pub sync: SyncSettings,
    pub rate_limit: RateLimitConfig,
    pub log: LogConfig,
}

/// `[node]`, validated.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Where the registry lives (not empty).
    pub data_dir: PathBuf,
    /// Prefixes this node is the authority for (parsed, without duplicates, never `0.NA`).
    pub homed_prefixes: Vec<Prefix>,
    pub suffix_case: SuffixCase,
    /// Admins of `0.NA/P` may change every handle under `P`.
    pub allow_prefix_admins: bool,
    /// Identities with every right on this node.
    pub server_admins: Vec<Identity>,
    /// Give homed prefixes without a prefix handle a generated administrator at start.
    pub bootstrap_admins: bool,
    /// The hash partition this node holds, if it is one server of a multi-server site.
    pub partition: Option<Partition>,
    /// With a partition: the native addresses of all the site's servers in order (this one
    /// at the partition's index), published in the node's HS_SITE; empty when not listed.
    pub site_servers: Vec<SocketAddr>,
}

/// `[http]`, validated.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Set when the listener speaks HTTPS (the pair loaded once at validation).
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted (1 KiB to 64 MiB).
    pub max_body_bytes: usize,
    pub plain_http_auth: PlainHttpAuth,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Request head (and keep-alive idle) bound, and separately the body's.
    pub request_timeout: Duration,
    /// How long a response write may stall.
    pub write_timeout: Duration,
}

/// `[handle]`, validated: the native front end's listeners and bounds, the auth-layer limits
/// built from them.
#[derive(Debug, Clone)]
pub struct HandleSettings {
    pub listen: SocketAddr,
    pub udp: bool,
    pub tcp: bool,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    /// Serial number of the node's HS_SITE.
    pub site_serial: u16,
    /// The configured `handle.server_key` file ...
    pub server_key_file: Option<PathBuf>,
    /// ... and the key read from it at validation. Unset: the node uses (or creates)
    /// `<data_dir>/server-key.pem` when it starts.
    pub server_key: Option<Arc<PrivateKey>>,
    /// Certified answers per second in all, and for one client address.
    pub signatures_per_second: u32,
    pub signatures_per_second_per_client: u32,
    /// UDP worker threads (0: one per core, at most 4).
    pub udp_threads: usize,
    /// Encoded answers kept for replay (0: no answer cache).
    pub answer_cache_entries: usize,
    /// Largest answer sent over UDP (512 to 256 KiB).
    pub max_udp_answer_bytes: usize,
    /// Servers VERIFY_CHALLENGE is answered for.
    pub verify_peers: Vec<IpAddr>,
    /// Pending 402 challenges (`max_pending_challenges_per_client`; the totals are fixed).
    pub challenges: PendingLimits,
    /// Failed challenge answers per address (`auth_failure_burst`, `auth_failures_per_minute`).
    pub failures: FailureLimits,
    /// Native sessions (`max_sessions_per_client`, `session_timeout_secs`,
    /// `unauthenticated_session_secs`).
    pub sessions: SessionLimits,
    /// `anonymous_restricted_reads`.
    pub anonymous_reads: AnonymousReads,
    /// Accept the ID-SDK's password login.
    pub password_login: bool,
}

/// `[sync]`, validated.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Serve and follow change feeds over plain HTTP (tests).
    pub allow_plain: bool,
    /// Change-log entries kept (0: all).
    pub log_retention: u64,
    /// Full-prefix scans served at once (1 to 64).
    pub max_concurrent_scans: usize,
    /// `[[sync.allow]]`: a follower identity and the prefixes it may receive.
    pub allow: Vec<(Identity, Vec<Prefix>)>,
    /// `[[sync.follow]]`: the links this node follows, as the follower takes them.
    pub follow: Vec<FollowSettings>,
}

/// A `[[sync.follow]]` link needs exactly one credential.
const ONE_FOLLOW_CREDENTIAL: &str =
    "give the follower identity's secret_file or its private_key (one of them)";

/// Parse `index:handle` (index required, positive): [`Identity::parse`] with
/// [`IndexRule::Required`](crate::auth::IndexRule::Required).
pub fn parse_identity(text: &str, case: SuffixCase) -> Result<Identity, String> {
    Identity::parse(text, case, crate::auth::IndexRule::Required).map_err(|e| e.to_string())
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Parse and validate TOML text.
    pub fn from_toml(text: &str) -> Result<ValidConfig, ConfigError> {
        toml::from_str::<Config>(text)?.validate()
    }

    /// The connection bounds of the three TCP front ends (see `server::accept`).
    fn validate_connections(&self) -> Result<(), ConfigError> {
        let (h, n, d) = (&self.http, &self.handle, &self.dns);
        for (field, value) in [
            (
                "http.max_connections_per_client",
                h.max_connections_per_client,
            ),
            (
                "handle.max_connections_per_client",
                n.max_connections_per_client,
            ),
            (
                "dns.max_connections_per_client",
                d.max_connections_per_client,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        for (field, value) in [
            ("http.request_timeout_secs", h.request_timeout_secs),
            ("http.write_timeout_secs", h.write_timeout_secs),
            ("handle.request_timeout_secs", n.request_timeout_secs),
            ("handle.write_timeout_secs", n.write_timeout_secs),
            ("dns.request_timeout_secs", d.request_timeout_secs),
            ("dns.write_timeout_secs", d.write_timeout_secs),
        ] {
            if value == 0 || value > 3600 {
                return Err(invalid(field, "must be between 1 and 3600"));
            }
        }
        Ok(())
    }

    fn validate(self) -> Result<ValidConfig, ConfigError> {
        let mut homed_prefixes = Vec::new();
        for p in &self.node.homed_prefixes {
            let prefix =
                Prefix::parse(p).map_err(|e| invalid("node.homed_prefixes", e.to_string()))?;
            if prefix.as_str() == crate::model::PREFIX_NA {
                return Err(invalid(
                    "node.homed_prefixes",
                    "0.NA is not a prefix a node can home",
                ));
            }
            if !homed_prefixes.contains(&prefix) {
                homed_prefixes.push(prefix);
            }
        }
        let server_admins = self
            .node
            .server_admins
            .iter()
            .map(|a| {
                parse_identity(a, self.node.suffix_case)
                    .map_err(|e| invalid("node.server_admins", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let partition = match &self.node.partition {
            None => None,
            Some(p) => {
                if p.count == 0 || p.index >= p.count {
                    return Err(invalid("node.partition", "needs 0 <= index < count"));
                }
                if p.hash_option > 2 {
                    return Err(invalid("node.partition", "hash_option is 0, 1 or 2"));
                }
                if !p.servers.is_empty() && p.servers.len() != p.count as usize {
                    return Err(invalid(
                        "node.partition",
                        "servers must list all count servers",
                    ));
                }
                Some(Partition {
                    index: p.index,
                    count: p.count,
                    hash_option: p.hash_option,
                })
            }
        };
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "must not be empty"));
        }
        let h = &self.http;
        if !(1024..=64 << 20).contains(&h.max_body_bytes) {
            return Err(invalid(
                "http.max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if h.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        let tls = match (&h.tls_cert, &h.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_certs: h.client_cert_auth,
                };
                // Load now so a bad certificate stops the node before it binds anything.
                crate::tls::load_server_config(&files)
                    .map_err(|e| invalid("http.tls_cert/tls_key", e.to_string()))?;
                Some(files)
            }
            _ => {
                return Err(invalid(
                    "http.tls_cert/tls_key",
                    "set both (HTTPS) or neither (plain HTTP)",
                ))
            }
        };
        let hc = &self.handle;
        if hc.max_connections == 0 {
            return Err(invalid("handle.max_connections", "must be at least 1"));
        }
        if hc.idle_timeout_secs == 0 || hc.idle_timeout_secs > 86_400 {
            return Err(invalid(
                "handle.idle_timeout_secs",
                "must be between 1 and 86400",
            ));
        }
        if hc.tcp && hc.listen == h.listen && hc.listen.port() != 0 {
            return Err(invalid("handle.listen", "must differ from http.listen"));
        }
        if !(512..=crate::wire::handle::message::MAX_MESSAGE_LEN)
            .contains(&self.handle.max_udp_answer_bytes)
        {
            return Err(invalid(
                "handle.max_udp_answer_bytes",
                "must be between 512 and 262144",
            ));
        }
        if self.handle.max_sessions_per_client == 0 || self.handle.session_timeout_secs == 0 {
            return Err(invalid(
                "handle.max_sessions_per_client",
                "handle.max_sessions_per_client and handle.session_timeout_secs must be at least 1",
            ));
        }
        if !(1..=crate::auth::session::MAX_UNAUTHENTICATED_SECS)
            .contains(&self.handle.unauthenticated_session_secs)
        {
            return Err(invalid(
                "handle.unauthenticated_session_secs",
                "must be between 1 and 60",
            ));
        }
        if self.handle.max_pending_challenges_per_client == 0 {
            return Err(invalid(
                "handle.max_pending_challenges_per_client",
                "must be at least 1",
            ));
        }
        let rl = &self.rate_limit;
        if rl.enabled {
            if rl.responses_per_second == 0 || rl.burst_secs == 0 || rl.max_networks == 0 {
                return Err(invalid(
                    "rate_limit",
                    "responses_per_second, burst_secs and max_networks must be at least 1",
                ));
            }
            let largest = self
                .handle
                .max_udp_answer_bytes
                .max(usize::from(self.dns.max_udp_payload)) as u64;
            if rl.bytes_per_second.saturating_mul(u64::from(rl.burst_secs)) < largest {
                return Err(invalid(
                    "rate_limit.bytes_per_second",
                    format!(
                        "bytes_per_second x burst_secs must hold the largest UDP answer \
                         ({largest} bytes: handle.max_udp_answer_bytes, dns.max_udp_payload)"
                    ),
                ));
            }
            if !(8..=32).contains(&rl.ipv4_prefix) || !(16..=128).contains(&rl.ipv6_prefix) {
                return Err(invalid(
                    "rate_limit",
                    "ipv4_prefix must be 8..=32 and ipv6_prefix 16..=128",
                ));
            }
        }
        if self.handle.auth_failure_burst == 0 {
            return Err(invalid("handle.auth_failure_burst", "must be at least 1"));
        }
        let server_key = match &hc.server_key {
            None => None,
            Some(path) => {
                let bad =
                    |e: String| invalid("handle.server_key", format!("{}: {e}", path.display()));
                let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
                let key = PrivateKey::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
                Some(Arc::new(key))
            }
        };
        if hc.signatures_per_second == 0 || hc.signatures_per_second_per_client == 0 {
            return Err(invalid(
                "handle.signatures_per_second",
                "must be at least 1 (and signatures_per_second_per_client too)",
            ));
        }
        self.validate_connections()?;
        let dc = &self.dns;
        if (dc.udp || dc.tcp)
            && (dc.listen == h.listen || (hc.listen == dc.listen && (hc.udp || hc.tcp)))
            && dc.listen.port() != 0
        {
            return Err(invalid(
                "dns.listen",
                "must differ from http.listen and handle.listen",
            ));
        }
        if !(512..=4096).contains(&dc.max_udp_payload) {
            return Err(invalid(
                "dns.max_udp_payload",
                "must be between 512 and 4096",
            ));
        }
        if dc.max_connections == 0 || dc.idle_timeout_secs == 0 {
            return Err(invalid(
                "dns",
                "max_connections and idle_timeout_secs must be positive",
            ));
        }
        for (field, name) in std::iter::once(("dns.zone", &dc.zone))
            .chain(dc.soa_mname.iter().map(|n| ("dns.soa_mname", n)))
            .chain(dc.soa_rname.iter().map(|n| ("dns.soa_rname", n)))
            .chain(dc.ns.iter().map(|n| ("dns.ns", n)))
        {
            hickory_proto::rr::Name::from_ascii(name)
                .map_err(|e| invalid(field, format!("{name:?}: {e}")))?;
        }
        let rc = &self.recursion;
        if rc.enabled && rc.roots.is_empty() {
            return Err(invalid(
                "recursion.roots",
                "recursion needs at least one root server",
            ));
        }
        if rc.timeout_ms == 0
            || rc.deadline_ms < rc.timeout_ms
            || rc.attempts == 0
            || rc.max_referrals == 0
        {
            return Err(invalid(
                "recursion",
                "timeout_ms, attempts and max_referrals must be positive and deadline_ms >= timeout_ms",
            ));
        }
        if rc.cache_max_entries == 0 {
            return Err(invalid("recursion.cache_max_entries", "must be at least 1"));
        }
        if !(1 << 16..=1 << 40).contains(&rc.cache_max_bytes) {
            return Err(invalid(
                "recursion.cache_max_bytes",
                "must be between 65536 (64 KiB) and 1099511627776 (1 TiB)",
            ));
        }
        if !(1..=65_536).contains(&rc.max_concurrent) {
            return Err(invalid(
                "recursion.max_concurrent",
                "must be between 1 and 65536",
            ));
        }
        if rc.enabled && rc.allow.is_empty() {
            return Err(invalid(
                "recursion.allow",
                "no client could use recursion: list client networks, or disable recursion",
            ));
        }
        for (key, threads, entries) in [
            (
                "handle",
                self.handle.udp_threads,
                self.handle.answer_cache_entries,
            ),
            ("dns", self.dns.udp_threads, self.dns.answer_cache_entries),
        ] {
            if threads > 256 {
                return Err(invalid(
                    if key == "dns" {
                        "dns.udp_threads"
                    } else {
                        "handle.udp_threads"
                    },
                    "must be between 0 (one per core) and 256",
                ));
            }
            if entries > 100_000_000 {
                return Err(invalid(
                    if key == "dns" {
                        "dns.answer_cache_entries"
                    } else {
                        "handle.answer_cache_entries"
                    },
                    "must be at most 100000000",
                ));
            }
        }
        if self.store.cache_capacity_mb == 0 || self.store.cache_capacity_mb > 1 << 20 {
            return Err(invalid(
                "store.cache_capacity_mb",
                "must be between 1 and 1048576",
            ));
        }
        if self.store.flush_every_ms == 0 || self.store.flush_every_ms > 60_000 {
            return Err(invalid(
                "store.flush_every_ms",
                "must be between 1 and 60000",
            ));
        }
        if !(1..=64).contains(&self.sync.max_concurrent_scans) {
            return Err(invalid(
                "sync.max_concurrent_scans",
                "must be between 1 and 64",
            ));
        }
        let case = self.node.suffix_case;
        let mut sync_allow = Vec::new();
        for a in &self.sync.allow {
            let identity =
                parse_identity(&a.identity, case).map_err(|e| invalid("sync.allow.identity", e))?;
            let prefixes = a
                .prefixes
                .iter()
                .map(|p| {
                    Prefix::parse(p).map_err(|e| invalid("sync.allow.prefixes", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            sync_allow.push((identity, prefixes));
        }
        let mut follow = Vec::new();
        for f in &self.sync.follow {
            let identity = parse_identity(&f.identity, case)
                .map_err(|e| invalid("sync.follow.identity", e))?;
            let credential = match (&f.secret_file, &f.private_key, &f.client_cert) {
                (Some(secret), None, _) => FollowCredential::Secret(secret.clone()),
                (None, Some(key), None) => FollowCredential::Key(key.clone()),
                (None, Some(key), Some(cert)) => FollowCredential::ClientCert {
                    key: key.clone(),
                    cert: cert.clone(),
                },
                _ => return Err(invalid("sync.follow", ONE_FOLLOW_CREDENTIAL)),
            };
            let prefixes = f
                .prefixes
                .iter()
                .map(|p| {
                    Prefix::parse(p).map_err(|e| invalid("sync.follow.prefixes", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if f.prefixes.is_empty() {
                return Err(invalid("sync.follow.prefixes", "at least one prefix"));
            }
            let (host, plain) = match (
                f.upstream.strip_prefix("http://"),
                f.upstream.strip_prefix("https://"),
            ) {
                (Some(host), _) => (host, true),
                (None, Some(host)) => (host, false),
                (None, None) => {
                    return Err(invalid(
                        "sync.follow.upstream",
                        "must be http(s)://host:port",
                    ))
                }
            };
            if !plain && f.ca_file.is_none() && !f.insecure_skip_verify {
                return Err(invalid(
                    "sync.follow.ca_file",
                    "an https:// upstream needs ca_file (or insecure_skip_verify for tests)",
                ));
            }
            if f.client_cert.is_some() && (plain || f.private_key.is_none()) {
                return Err(invalid(
                    "sync.follow.client_cert",
                    "a client certificate goes with private_key (its key) and an https:// upstream",
                ));
            }
            if plain && !self.sync.allow_plain {
                return Err(invalid(
                    "sync.follow.upstream",
                    "plain http:// needs sync.allow_plain = true (tests only)",
                ));
            }
            follow.push(FollowSettings {
                upstream: f.upstream.trim_end_matches('/').to_string(),
                host: host.trim_end_matches('/').to_string(),
                https: !plain,
                identity,
                credential,
                prefixes,
                ca_file: f.ca_file.clone(),
                insecure_skip_verify: f.insecure_skip_verify,
            });
        }
        let Config {
            node,
            http,
            handle,
            recursion,
            dns,
            store,
            sync,
            rate_limit,
            log,
        } = self;
        let site_servers = node.partition.map(|p| p.servers).unwrap_or_default();
        Ok(ValidConfig {
            node: NodeSettings {
                data_dir: node.data_dir,
                homed_prefixes,
                suffix_case: node.suffix_case,
                allow_prefix_admins: node.allow_prefix_admins,
                server_admins,
                bootstrap_admins: node.bootstrap_admins,
                partition,
                site_servers,
            },
            http: HttpSettings {
                listen: http.listen,
                tls,
                max_body_bytes: http.max_body_bytes,
                plain_http_auth: http.plain_http_auth,
                max_connections: http.max_connections,
                max_connections_per_client: http.max_connections_per_client,
                request_timeout: Duration::from_secs(http.request_timeout_secs),
                write_timeout: Duration::from_secs(http.write_timeout_secs),
            },
            handle: HandleSettings {
                listen: handle.listen,
                udp: handle.udp,
                tcp: handle.tcp,
                max_connections: handle.max_connections,
                max_connections_per_client: handle.max_connections_per_client,
                idle_timeout: Duration::from_secs(handle.idle_timeout_secs),
                request_timeout: Duration::from_secs(handle.request_timeout_secs),
                write_timeout: Duration::from_secs(handle.write_timeout_secs),
                site_serial: handle.site_serial,
                server_key_file: handle.server_key,
                server_key,
                signatures_per_second: handle.signatures_per_second,
                signatures_per_second_per_client: handle.signatures_per_second_per_client,
                udp_threads: handle.udp_threads,
                answer_cache_entries: handle.answer_cache_entries,
                max_udp_answer_bytes: handle.max_udp_answer_bytes,
                verify_peers: handle.verify_peers,
                challenges: PendingLimits {
                    max_per_source: handle.max_pending_challenges_per_client,
                    ..PendingLimits::default()
                },
                failures: FailureLimits {
                    burst: handle.auth_failure_burst,
                    per_minute: handle.auth_failures_per_minute,
                    ..FailureLimits::default()
                },
                sessions: SessionLimits {
                    max_per_source: handle.max_sessions_per_client,
                    max_timeout: Duration::from_secs(handle.session_timeout_secs),
                    unauthenticated_ttl: Duration::from_secs(handle.unauthenticated_session_secs),
                    ..SessionLimits::default()
                },
                anonymous_reads: handle.anonymous_restricted_reads,
                password_login: handle.password_login,
            },
            recursion,
            dns,
            store,
            sync: SyncSettings {
                allow_plain: sync.allow_plain,
                log_retention: sync.log_retention,
                max_concurrent_scans: sync.max_concurrent_scans,
                allow: sync_allow,
                follow,
            },
            rate_limit,
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_and_examples_parse() {
        let c = Config::from_toml(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.node.homed_prefixes[0].as_str(), "88.100.1");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn hole7_recursion_allow_defaults_to_private_ranges() {
        let c = Config::from_toml("").unwrap();
        let allow = &c.recursion.allow;
        assert!(allow.contains("127.0.0.1".parse().unwrap()));
        assert!(allow.contains("192.168.1.1".parse().unwrap()));
        assert!(!allow.contains("8.8.8.8".parse().unwrap()));
        assert_eq!(c.recursion.max_concurrent, 256);
        assert_eq!(c.recursion.cache_max_bytes, 64 << 20);
        let c = Config::from_toml("[recursion]\nallow = [\"203.0.113.0/24\", \"2001:db8::1\"]\n")
            .unwrap();
        let allow = &c.recursion.allow;
        assert!(allow.contains("203.0.113.9".parse().unwrap()));
        assert!(allow.contains("2001:db8::1".parse().unwrap()));
        assert!(!allow.contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn sdk_settings_default_and_parse() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.handle.anonymous_reads, AnonymousReads::Public);
        assert!(!c.handle.password_login);
        let c = Config::from_toml(
            "[handle]\nanonymous_restricted_reads = \"challenge\"\npassword_login = true\n",
        )
        .unwrap();
        assert_eq!(c.handle.anonymous_reads, AnonymousReads::Challenge);
        assert!(c.handle.password_login);
        assert!(Config::from_toml("[handle]\nanonymous_restricted_reads = \"open\"\n").is_err());
    }

    #[test]
    fn validated_settings_carry_the_parsed_values() {
        let c = Config::from_toml(
            "[node]\nhomed_prefixes = [\"88.100\", \"88.100\"]\nserver_admins = [\"300:0.NA/88.100\"]\n\
             partition = { index = 1, count = 2, servers = [\"10.0.0.1:2641\", \"10.0.0.2:2641\"] }\n\
             [http]\nrequest_timeout_secs = 7\n\
             [handle]\nmax_pending_challenges_per_client = 5\nauth_failure_burst = 3\n\
             session_timeout_secs = 99\nidle_timeout_secs = 11\n\
             [sync]\nallow_plain = true\n\
             [[sync.allow]]\nidentity = \"301:0.NA/88.100\"\nprefixes = [\"88.100\"]\n\
             [[sync.follow]]\nupstream = \"http://up.example:8000/\"\nidentity = \"300:0.NA/88\"\n\
             secret_file = \"/s\"\nprefixes = [\"88.200\"]\n\
             [[sync.follow]]\nupstream = \"https://up.example:8443\"\nidentity = \"300:0.NA/88\"\n\
             private_key = \"/k\"\nclient_cert = \"/c\"\nprefixes = [\"88.300\"]\ninsecure_skip_verify = true\n",
        )
        .unwrap();
        assert_eq!(c.node.homed_prefixes.len(), 1);
        assert_eq!(c.node.server_admins[0].to_string(), "300:0.NA/88.100");
        let partition = c.node.partition.unwrap();
        assert_eq!(
            (partition.index, partition.count, partition.hash_option),
            (1, 2, 2)
        );
        assert_eq!(c.node.site_servers.len(), 2);
        assert_eq!(c.http.request_timeout, Duration::from_secs(7));
        assert!(c.http.tls.is_none());
        assert_eq!(c.handle.challenges.max_per_source, 5);
        assert_eq!(c.handle.failures.burst, 3);
        assert_eq!(c.handle.sessions.max_timeout, Duration::from_secs(99));
        assert_eq!(c.handle.idle_timeout, Duration::from_secs(11));
        assert_eq!(c.sync.allow[0].0.index, 301);
        let [plain, tls] = &c.sync.follow[..] else {
            panic!("two follow links");
        };
        assert_eq!(plain.upstream, "http://up.example:8000");
        assert_eq!(plain.host, "up.example:8000");
        assert!(!plain.https);
        assert!(matches!(&plain.credential, FollowCredential::Secret(p) if p == Path::new("/s")));
        assert_eq!(plain.prefixes[0].as_str(), "88.200");
        assert!(tls.https && tls.insecure_skip_verify);
        assert!(matches!(
            &tls.credential,
            FollowCredential::ClientCert { key, cert } if key == Path::new("/k") && cert == Path::new("/c")
        ));
        // No partition: no site servers, whatever else is set.
        assert!(Config::from_toml("").unwrap().node.site_servers.is_empty());
    }

    #[test]
    fn server_key_is_loaded_under_both_names() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::auth::challenge::PrivateKey::generate_rsa(1024).unwrap();
        let path = dir.path().join("server.pem");
        std::fs::write(&path, key.to_pem()).unwrap();
        for name in ["server_key", "site_key"] {
            let c = Config::from_toml(&format!("[handle]\n{name} = {path:?}\n")).unwrap();
            let loaded = c.handle.server_key.as_ref().unwrap();
            assert_eq!(loaded.public_key(), key.public_key());
        }
        std::fs::write(&path, "not a key").unwrap();
        let err = Config::from_toml(&format!("[handle]\nserver_key = {path:?}\n")).unwrap_err();
        assert!(err.to_string().contains("server_key"));
    }

    #[test]
    fn rejects_bad_configs() {
        for (text, needle) in [
            ("[node]\nhomed_prefix = []", "unknown field"),
            ("[node]\nhomed_prefixes = [\"88..1\"]", "homed_prefixes"),
            ("[node]\nhomed_prefixes = [\"0.na\"]", "0.NA"),
            ("[node]\nserver_admins = [\"0.NA/88\"]", "index:handle"),
            ("[node]\nserver_admins = [\"0:0.NA/88\"]", "positive"),
            ("[node]\nsuffix_case = \"maybe\"", "unknown variant"),
            ("[http]\nlisten = \"localhost\"", "socket address"),
            ("[http]\ntls_cert = \"/nonexistent.pem\"", "both"),
            (
                "[http]\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"",
                "nonexistent",
            ),
            ("[http]\nmax_body_bytes = 10", "max_body_bytes"),
            ("[store]\nflush_every_ms = 0", "flush_every_ms"),
            ("[sync]\nmax_concurrent_scans = 0", "max_concurrent_scans"),
            ("[handle]\nidle_timeout_secs = 0", "idle_timeout_secs"),
            (
                "[handle]\nmax_connections_per_client = 0",
                "handle.max_connections_per_client",
            ),
            ("[http]\nwrite_timeout_secs = 0", "http.write_timeout_secs"),
            (
                "[dns]\nrequest_timeout_secs = 4000",
                "dns.request_timeout_secs",
            ),
            ("[node]\npartition = { index = 2, count = 2 }", "partition"),
            ("[recursion]\nenabled = true", "roots"),
            ("[dns]\nzone = \"bad..zone\"", "dns.zone"),
            ("[dns]\nmax_udp_payload = 100", "max_udp_payload"),
            ("[dns]\nudp_threads = 1000", "dns.udp_threads"),
            (
                "[handle]\nanswer_cache_entries = 1000000000",
                "handle.answer_cache_entries",
            ),
            ("[dns]\nlisten = \"127.0.0.1:8000\"", "dns.listen"),
            ("[recursion]\nroots = [\"nowhere\"]", "socket address"),
            ("[recursion]\nallow = [\"10.0.0.1/8\"]", "10.0.0.0/8"),
            ("[recursion]\nallow = [\"10.0.0.0/40\"]", "0 to 32"),
            (
                "[recursion]\nallow = [\"intranet\"]",
                "\"intranet\" is not a network",
            ),
            (
                "[recursion]\nmax_concurrent = 0",
                "recursion.max_concurrent",
            ),
            (
                "[recursion]\ncache_max_bytes = 10",
                "recursion.cache_max_bytes",
            ),
            (
                "[recursion]\nenabled = true\nroots = [\"127.0.0.1:2641\"]\nallow = []",
                "recursion.allow",
            ),
            (
                "[node]\npartition = { index = 0, count = 2, hash_option = 7 }",
                "hash_option",
            ),
            ("[handle]\nlisten = \"127.0.0.1:8000\"", "differ"),
            ("[handle]\nserver_key = \"/nonexistent.pem\"", "server_key"),
            (
                "[handle]\nsignatures_per_second = 0",
                "signatures_per_second",
            ),
            ("[bogus]\n", "unknown field"),
        ] {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{text:?} gave {err:?}, wanted {needle:?}"
            );
        }
    }
}
