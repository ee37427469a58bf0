//! [`Config`] → [`ValidConfig`]: every check, before any port is bound or file written.
//!
//! One function per section, called in a fixed order (see [`Config::validate`]); each one
//! that has settings to build returns them, the rest only check. Cross-section rules (two
//! listeners on one address, the rate limit against the largest UDP answer, the TCP front
//! ends' connection bounds) sit with the section they are reported under.

use std::sync::Arc;
use std::time::Duration;

use super::{invalid, parse_identity, Config, ConfigError, PartitionConfig, SyncFollow};
use super::{HandleSettings, HttpSettings, NodeSettings, SyncSettings, ValidConfig};
use crate::auth::challenge::PrivateKey;
use crate::auth::pending::{FailureLimits, PendingLimits};
use crate::auth::session::SessionLimits;
use crate::model::{Prefix, SuffixCase};
use crate::resolve::Partition;
use crate::sync::follower::{FollowCredential, FollowSettings};
use crate::tls::TlsFiles;

/// A `[[sync.follow]]` link needs exactly one credential.
const ONE_FOLLOW_CREDENTIAL: &str =
    "give the follower identity's secret_file or its private_key (one of them)";

impl Config {
    /// Check every section and build the settings. The order is the one the checks have
    /// always run in, so a config with several faults reports the same one first (which is
    /// why `[handle]` is checked in two steps around `[rate_limit]`).
    pub(super) fn validate(self) -> Result<ValidConfig, ConfigError> {
        let node = self.validate_node()?;
        let http = self.validate_http()?;
        self.validate_handle_bounds()?;
        self.validate_rate_limit()?;
        let handle = self.validate_handle_keys()?;
        self.validate_connections()?;
        self.validate_dns()?;
        self.validate_recursion()?;
        self.validate_udp_workers()?;
        self.validate_store()?;
        let sync = self.validate_sync()?;
        let Config {
            recursion,
            dns,
            store,
            rate_limit,
            log,
            ..
        } = self;
        Ok(ValidConfig {
            node,
            http,
            handle,
            recursion,
            dns,
            store,
            sync,
            rate_limit,
            log,
        })
    }

    /// `[node]`: the homed prefixes (deduplicated, never `0.NA`), the server admins, the
    /// partition, the data directory.
    fn validate_node(&self) -> Result<NodeSettings, ConfigError> {
        let node = &self.node;
        let mut homed_prefixes = Vec::new();
        for p in &node.homed_prefixes {
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
        let server_admins = node
            .server_admins
            .iter()
            .map(|a| {
                parse_identity(a, node.suffix_case).map_err(|e| invalid("node.server_admins", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let partition = node.partition.as_ref().map(partition).transpose()?;
        if node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "must not be empty"));
        }
        Ok(NodeSettings {
            data_dir: node.data_dir.clone(),
            homed_prefixes,
            suffix_case: node.suffix_case,
            allow_prefix_admins: node.allow_prefix_admins,
            server_admins,
            bootstrap_admins: node.bootstrap_admins,
            partition,
            site_servers: node
                .partition
                .as_ref()
                .map(|p| p.servers.clone())
                .unwrap_or_default(),
        })
    }

    /// `[http]`: the body bound, the connection cap, the TLS pair (loaded here, so a bad
    /// certificate stops the node before it binds anything).
    fn validate_http(&self) -> Result<HttpSettings, ConfigError> {
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
        Ok(HttpSettings {
            listen: h.listen,
            tls,
            max_body_bytes: h.max_body_bytes,
            plain_http_auth: h.plain_http_auth,
            max_connections: h.max_connections,
            max_connections_per_client: h.max_connections_per_client,
            request_timeout: Duration::from_secs(h.request_timeout_secs),
            write_timeout: Duration::from_secs(h.write_timeout_secs),
        })
    }

    /// `[handle]`, first step: the TCP listener's bounds and address, the UDP answer size,
    /// native sessions and pending challenges.
    fn validate_handle_bounds(&self) -> Result<(), ConfigError> {
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
        if hc.tcp && hc.listen == self.http.listen && hc.listen.port() != 0 {
            return Err(invalid("handle.listen", "must differ from http.listen"));
        }
        if !(512..=crate::wire::handle::message::MAX_MESSAGE_LEN).contains(&hc.max_udp_answer_bytes)
        {
            return Err(invalid(
                "handle.max_udp_answer_bytes",
                "must be between 512 and 262144",
            ));
        }
        if hc.max_sessions_per_client == 0 || hc.session_timeout_secs == 0 {
            return Err(invalid(
                "handle.max_sessions_per_client",
                "handle.max_sessions_per_client and handle.session_timeout_secs must be at least 1",
            ));
        }
        if !(1..=crate::auth::session::MAX_UNAUTHENTICATED_SECS)
            .contains(&hc.unauthenticated_session_secs)
        {
            return Err(invalid(
                "handle.unauthenticated_session_secs",
                "must be between 1 and 60",
            ));
        }
        if hc.max_pending_challenges_per_client == 0 {
            return Err(invalid(
                "handle.max_pending_challenges_per_client",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// `[rate_limit]` (when enabled): positive rates, a byte budget that holds the largest UDP
    /// answer either front end may send, sane network prefix lengths.
    fn validate_rate_limit(&self) -> Result<(), ConfigError> {
        let rl = &self.rate_limit;
        if !rl.enabled {
            return Ok(());
        }
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
        Ok(())
    }

    /// `[handle]`, second step: authentication failure limits, the server key (read and
    /// parsed here), signature rates; then the settings.
    fn validate_handle_keys(&self) -> Result<HandleSettings, ConfigError> {
        let hc = &self.handle;
        if hc.auth_failure_burst == 0 {
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
        Ok(HandleSettings {
            listen: hc.listen,
            udp: hc.udp,
            tcp: hc.tcp,
            max_connections: hc.max_connections,
            max_connections_per_client: hc.max_connections_per_client,
            idle_timeout: Duration::from_secs(hc.idle_timeout_secs),
            request_timeout: Duration::from_secs(hc.request_timeout_secs),
            write_timeout: Duration::from_secs(hc.write_timeout_secs),
            site_serial: hc.site_serial,
            server_key_file: hc.server_key.clone(),
            server_key,
            signatures_per_second: hc.signatures_per_second,
            signatures_per_second_per_client: hc.signatures_per_second_per_client,
            udp_threads: hc.udp_threads,
            answer_cache_entries: hc.answer_cache_entries,
            max_udp_answer_bytes: hc.max_udp_answer_bytes,
            verify_peers: hc.verify_peers.clone(),
            challenges: PendingLimits {
                max_per_source: hc.max_pending_challenges_per_client,
                ..PendingLimits::default()
            },
            failures: FailureLimits {
                burst: hc.auth_failure_burst,
                per_minute: hc.auth_failures_per_minute,
                ..FailureLimits::default()
            },
            sessions: SessionLimits {
                max_per_source: hc.max_sessions_per_client,
                max_timeout: Duration::from_secs(hc.session_timeout_secs),
                unauthenticated_ttl: Duration::from_secs(hc.unauthenticated_session_secs),
                ..SessionLimits::default()
            },
            anonymous_reads: hc.anonymous_restricted_reads,
            password_login: hc.password_login,
        })
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

    /// `[dns]`: its address apart from the other listeners, the EDNS payload, the TCP
    /// bounds, and the zone, SOA and NS names.
    fn validate_dns(&self) -> Result<(), ConfigError> {
        let (dc, h, hc) = (&self.dns, &self.http, &self.handle);
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
        Ok(())
    }

    /// `[recursion]`: roots when enabled, timeouts and hop counts, the cache bounds, the
    /// concurrency cap, a client allow-list that lets someone in.
    fn validate_recursion(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The UDP engines of `[handle]` and `[dns]` (see `server::udp`): worker threads and
    /// answer-cache entries.
    fn validate_udp_workers(&self) -> Result<(), ConfigError> {
        for (threads_field, threads, entries_field, entries) in [
            (
                "handle.udp_threads",
                self.handle.udp_threads,
                "handle.answer_cache_entries",
                self.handle.answer_cache_entries,
            ),
            (
                "dns.udp_threads",
                self.dns.udp_threads,
                "dns.answer_cache_entries",
                self.dns.answer_cache_entries,
            ),
        ] {
            if threads > 256 {
                return Err(invalid(
                    threads_field,
                    "must be between 0 (one per core) and 256",
                ));
            }
            if entries > 100_000_000 {
                return Err(invalid(entries_field, "must be at most 100000000"));
            }
        }
        Ok(())
    }

    /// `[store]`: the sled cache size, flush interval and read-index budget.
    fn validate_store(&self) -> Result<(), ConfigError> {
        if self.store.cache_capacity_mb == 0 || self.store.cache_capacity_mb > 1 << 20 {
            return Err(invalid(
                "store.cache_capacity_mb",
                "must be between 1 and 1048576",
            ));
        }
        if self.store.commit_window_us > 100_000 {
            return Err(invalid(
                "store.commit_window_us",
                "must be at most 100000 (0: flush every write at once)",
            ));
        }
        if self.store.read_index_max_mb > 1 << 24 {
            return Err(invalid(
                "store.read_index_max_mb",
                "must be at most 16777216 (0: no limit)",
            ));
        }
        if self.store.flush_every_ms == 0 || self.store.flush_every_ms > 60_000 {
            return Err(invalid(
                "store.flush_every_ms",
                "must be between 1 and 60000",
            ));
        }
        Ok(())
    }

    /// `[sync]`: the scan cap, the followers served (`[[sync.allow]]`) and the links
    /// followed (`[[sync.follow]]`).
    fn validate_sync(&self) -> Result<SyncSettings, ConfigError> {
        let sync = &self.sync;
        if !(1..=64).contains(&sync.max_concurrent_scans) {
            return Err(invalid(
                "sync.max_concurrent_scans",
                "must be between 1 and 64",
            ));
        }
        let case = self.node.suffix_case;
        let mut allow = Vec::new();
        for a in &sync.allow {
            let identity =
                parse_identity(&a.identity, case).map_err(|e| invalid("sync.allow.identity", e))?;
            let prefixes = a
                .prefixes
                .iter()
                .map(|p| {
                    Prefix::parse(p).map_err(|e| invalid("sync.allow.prefixes", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            allow.push((identity, prefixes));
        }
        let follow = sync
            .follow
            .iter()
            .map(|f| follow_settings(f, case, sync.allow_plain))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SyncSettings {
            allow_plain: sync.allow_plain,
            log_retention: sync.log_retention,
            max_concurrent_scans: sync.max_concurrent_scans,
            allow,
            follow,
        })
    }
}

/// `node.partition`: a position inside the site, a known hash option, all servers or none.
fn partition(p: &PartitionConfig) -> Result<Partition, ConfigError> {
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
    Ok(Partition {
        index: p.index,
        count: p.count,
        hash_option: p.hash_option,
    })
}

/// One `[[sync.follow]]` link: its identity, exactly one credential, at least one prefix, an
/// `http(s)://` upstream with what its scheme needs.
fn follow_settings(
    f: &SyncFollow,
    case: SuffixCase,
    allow_plain: bool,
) -> Result<FollowSettings, ConfigError> {
    let identity =
        parse_identity(&f.identity, case).map_err(|e| invalid("sync.follow.identity", e))?;
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
        .map(|p| Prefix::parse(p).map_err(|e| invalid("sync.follow.prefixes", e.to_string())))
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
    if !(1..=crate::store::bootstrap::MAX_PAGE_RECORDS).contains(&f.bootstrap_page) {
        return Err(invalid(
            "sync.follow.bootstrap_page",
            format!(
                "records per bootstrap page: 1 to {}",
                crate::store::bootstrap::MAX_PAGE_RECORDS
            ),
        ));
    }
    if plain && !allow_plain {
        return Err(invalid(
            "sync.follow.upstream",
            "plain http:// needs sync.allow_plain = true (tests only)",
        ));
    }
    Ok(FollowSettings {
        upstream: f.upstream.trim_end_matches('/').to_string(),
        host: host.trim_end_matches('/').to_string(),
        https: !plain,
        identity,
        credential,
        prefixes,
        ca_file: f.ca_file.clone(),
        insecure_skip_verify: f.insecure_skip_verify,
        bootstrap_page: f.bootstrap_page,
    })
}
