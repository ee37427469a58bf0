//! Node configuration (TOML). Every field is validated by [`Config::load`] /
//! [`Config::from_toml`] before any port is bound or any data is touched; unknown fields are
//! errors, so a typo never silently falls back to a default.
//!
//! `idnode serve` without `--config` runs [`EMBEDDED_DEFAULT`]: a standalone node on 127.0.0.1
//! homing the example prefix `88.100.1`, with its data in `./idnode-data`.
//!
//! Here: the TOML input ([`Config`] and one struct per section, with their defaults) and the
//! entry points. `settings` holds what validation produces ([`ValidConfig`] and the typed
//! settings of each subsystem), `validate` the checks, one function per section. Callers get
//! only a [`ValidConfig`] from `load` and `from_toml`, never the input structs unchecked.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{AnonymousReads, Identity};
use crate::model::SuffixCase;
use crate::net::CidrList;

mod settings;
#[cfg(test)]
mod tests;
mod validate;

pub use settings::{HandleSettings, HttpSettings, NodeSettings, SyncSettings, ValidConfig};

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
    /// Records asked for per page when bootstrapping from a paged snapshot (1 to 10 000;
    /// the upstream also ends a page at about 4 MiB).
    #[serde(default = "default_bootstrap_page")]
    pub bootstrap_page: usize,
}

fn default_bootstrap_page() -> usize {
    crate::sync::follower::DEFAULT_BOOTSTRAP_PAGE
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
    /// SOA MNAME (primary name server); default "ns1.`<zone>`".
    pub soa_mname: Option<String>,
    /// SOA RNAME (responsible mailbox as a name); default "hostmaster.`<zone>`".
    pub soa_rname: Option<String>,
    /// NS names of the zone; default `["ns1.<zone>"]`.
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
    /// Hold every record in memory (the read index) so resolutions never wait on sled's
    /// page cache; about the records' bytes plus 15 bytes each.
    pub read_index: bool,
    /// Most memory the read index may take (0: no limit); past it, it is dropped with a
    /// warning and resolutions read sled.
    pub read_index_max_mb: u64,
    /// Group commit window (µs): a write arriving within this long of the previous flush
    /// waits out the rest of it and shares the next flush (0: flush at once).
    pub commit_window_us: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity_mb: 256,
            flush_every_ms: 500,
            read_index: true,
            read_index_max_mb: 0,
            commit_window_us: 1000,
        }
    }
}

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
}
