//! Prometheus instruments, created once and passed to the front ends (no globals).
//!
//! Latency histograms start at 10 µs: the defaults start at 5 ms, far too coarse for a node
//! that answers from memory.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Histogram buckets: 10 µs doubling to ~5 s.
pub fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_01, 2.0, 20).unwrap_or_else(|_| vec![0.000_01, 0.001, 0.1, 1.0])
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests by front end, operation and Handle response code.
    pub requests: IntCounterVec,
    /// Request latency by front end and operation.
    pub latency: HistogramVec,
    pub records: IntGauge,
    pub last_seq: IntGauge,
    pub store_bytes: IntGauge,
    /// Resolution cache events: hit, miss, stale, coalesced, evicted, negative_hit.
    pub cache_events: IntCounterVec,
    /// Recursive requests refused, by reason: `not_allowed` (outside `recursion.allow`),
    /// `busy` (`recursion.max_concurrent` in flight), `shape` (too many types or indexes).
    pub recursion_refused: IntCounterVec,
    /// Follow links (label `link`): lag in upstream sequences and in seconds, changes
    /// applied, snapshot bootstraps, link errors (including refused batches).
    pub sync_lag_sequences: IntGaugeVec,
    pub sync_lag_seconds: prometheus::GaugeVec,
    pub sync_applied: IntCounterVec,
    pub sync_bootstraps: IntCounterVec,
    pub sync_errors: IntCounterVec,
    /// Native 402 challenges waiting for an answer.
    pub pending_challenges: IntGauge,
    /// Live Handle.Net sessions (OC_SESSION_SETUP), authenticated or not.
    pub sessions: IntGauge,
    /// Requests refused to protect the node, by front end and reason (`udp_too_large`,
    /// `challenge_source_full`, `auth_rate_limited`, `verify_refused`, `verify_busy`, ...).
    pub refused: IntCounterVec,
    /// Response-rate limiting on UDP front ends: answers dropped or slipped (replaced by a
    /// short "retry over TCP" answer), by front end.
    pub rate_limited: IntCounterVec,
    /// TCP connections closed at once on arrival, by front end and reason (`per_client`).
    pub connections_refused: IntCounterVec,
    /// TCP connections the node closed, by front end and reason (`evicted` to make room,
    /// `idle_timeout`, `request_timeout`, `write_timeout`).
    pub connections_closed: IntCounterVec,
    /// TCP connections open, by front end.
    pub connections_open: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "idnode_requests_total",
                "Requests by front end, operation and response code",
            ),
            &["proto", "op", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("idnode_request_duration_seconds", "Request latency")
                .buckets(latency_buckets()),
            &["proto", "op"],
        )?;
        let records = IntGauge::new("idnode_store_records", "Records in the registry")?;
        let last_seq = IntGauge::new("idnode_store_last_sequence", "Newest change-log sequence")?;
        let store_bytes = IntGauge::new("idnode_store_disk_bytes", "Registry size on disk")?;
        let cache_events = IntCounterVec::new(
            Opts::new(
                "idnode_cache_events_total",
                "Resolution cache events (hit, miss, stale, coalesced, evicted, negative_hit)",
            ),
            &["event"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(last_seq.clone()))?;
        registry.register(Box::new(store_bytes.clone()))?;
        registry.register(Box::new(cache_events.clone()))?;
        let recursion_refused = IntCounterVec::new(
            Opts::new(
                "idnode_recursion_refused_total",
                "Recursive requests refused (not_allowed, busy, shape)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(recursion_refused.clone()))?;
        let sync_lag_sequences = IntGaugeVec::new(
            Opts::new(
                "idnode_sync_lag_sequences",
                "Upstream sequences not yet applied",
            ),
            &["link"],
        )?;
        let sync_lag_seconds = prometheus::GaugeVec::new(
            Opts::new(
                "idnode_sync_lag_seconds",
                "Age of the newest applied upstream change when applied (0 when caught up)",
            ),
            &["link"],
        )?;
        let sync_applied = IntCounterVec::new(
            Opts::new("idnode_sync_applied_total", "Replicated changes applied"),
            &["link"],
        )?;
        let sync_bootstraps = IntCounterVec::new(
            Opts::new("idnode_sync_bootstraps_total", "Snapshot bootstraps"),
            &["link"],
        )?;
        let sync_errors = IntCounterVec::new(
            Opts::new(
                "idnode_sync_errors_total",
                "Link errors and refused batches",
            ),
            &["link"],
        )?;
        registry.register(Box::new(sync_lag_sequences.clone()))?;
        registry.register(Box::new(sync_lag_seconds.clone()))?;
        registry.register(Box::new(sync_applied.clone()))?;
        registry.register(Box::new(sync_bootstraps.clone()))?;
        registry.register(Box::new(sync_errors.clone()))?;
        let pending_challenges = IntGauge::new(
            "idnode_pending_challenges",
            "Native 402 challenges waiting for an answer",
        )?;
        let sessions = IntGauge::new(
            "idnode_native_sessions",
            "Live native Handle sessions (OC_SESSION_SETUP), authenticated or not",
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "idnode_refused_total",
                "Requests refused to protect the node, by front end and reason",
            ),
            &["proto", "reason"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "idnode_rate_limited_total",
                "UDP answers withheld by response-rate limiting (action drop or slip)",
            ),
            &["proto", "action"],
        )?;
        registry.register(Box::new(pending_challenges.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "idnode_connections_refused_total",
                "TCP connections closed on arrival (reason: per_client)",
            ),
            &["proto", "reason"],
        )?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "idnode_connections_closed_total",
                "TCP connections closed by the node (evicted, idle_timeout, request_timeout, \
                 write_timeout)",
            ),
            &["proto", "reason"],
        )?;
        let connections_open = IntGaugeVec::new(
            Opts::new("idnode_connections_open", "TCP connections open"),
            &["proto"],
        )?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_closed.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        Ok(Metrics {
            pending_challenges,
            sessions,
            refused,
            rate_limited,
            connections_refused,
            connections_closed,
            connections_open,
            sync_lag_sequences,
            sync_lag_seconds,
            sync_applied,
            sync_bootstraps,
            sync_errors,
            registry,
            requests,
            latency,
            records,
            last_seq,
            store_bytes,
            cache_events,
            recursion_refused,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
