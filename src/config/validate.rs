//! [`Config`] → [`ValidConfig`]: every check, before any port is bound or file written.

use std::sync::Arc;
use std::time::Duration;

use super::{invalid, parse_identity, Config, ConfigError};
use super::{HandleSettings, HttpSettings, NodeSettings, SyncSettings, ValidConfig};
use crate::auth::challenge::PrivateKey;
use crate::auth::pending::{FailureLimits, PendingLimits};
use crate::auth::session::SessionLimits;
use crate::model::Prefix;
use crate::resolve::Partition;
use crate::sync::follower::{FollowCredential, FollowSettings};
use crate::tls::TlsFiles;

/// A `[[sync.follow]]` link needs exactly one credential.
const ONE_FOLLOW_CREDENTIAL: &str =
    "give the follower identity's secret_file or its private_key (one of them)";

impl Config {
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

    pub(super) fn validate(self) -> Result<ValidConfig, ConfigError> {
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
