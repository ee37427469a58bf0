//! The validated configuration: each section as the typed settings its subsystem consumes.
//! Only validation (`validate.rs`) builds these; consumers (`server::start`, the CLI)
//! read nothing else.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{DnsConfig, LogConfig, PlainHttpAuth, RateLimitConfig, RecursionConfig, StoreConfig};
use crate::auth::challenge::PrivateKey;
use crate::auth::pending::{FailureLimits, PendingLimits};
use crate::auth::session::SessionLimits;
use crate::auth::{AnonymousReads, Identity};
use crate::model::{Prefix, SuffixCase};
use crate::resolve::Partition;
use crate::sync::follower::FollowSettings;
use crate::tls::TlsFiles;

/// A configuration that passed validation: each section as the typed settings its subsystem
/// consumes, with text parsed (prefixes, identities, the partition, follow links) and files
/// loaded or checked (the server key, the TLS pair). The TOML structs ([`super::Config`]) are
/// only the input: nothing keeps them, so no consumer can read a field validation did not see.
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
