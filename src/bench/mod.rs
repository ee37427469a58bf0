//! `idnode bench`: a load generator for idnode's native Handle front end (UDP and TCP), DNS
//! over UDP and the Handle.Net-compatible HTTP(S) API, with dnsperf-style output plus
//! HDR-histogram latency percentiles.
//!
//! UDP (handle-udp, dns-udp) is built to cost less per query than the server it loads. The
//! source sockets (connected `UdpSocket`s) are spread over `threads` OS threads, each running
//! a task per socket on its own single-threaded tokio runtime, so one wake-up (epoll) serves
//! the answers of all its sockets. The system calls are batched on Linux: up to
//! [`UDP_BATCH`] queries leave with one `sendmmsg` (runs of equal-length queries as one UDP
//! GSO packet, which the kernel splits into the same datagrams) and up to [`UDP_BATCH`]
//! answers are taken with one `recvmmsg`, through nix's safe wrappers; elsewhere one
//! `send`/`recv` per datagram (the connected half of `server::udp::batch`, which the node's
//! datagram engine uses too). Answers are matched to queries by the Handle request id or
//! the DNS id, through a slot table indexed by the id's low bits (`Pending`). Closed loop
//! (default): each socket keeps its share of `concurrency` queries outstanding, sending the
//! replacements for a batch of answers at once. Open loop (`rate`): one more thread sends
//! every query at its scheduled time (the sockets taking turns) and the sockets' tasks only
//! receive; latency is measured from the scheduled time, so a slow server is not hidden by
//! coordinated omission. Queries unanswered after `timeout` count as lost.
//!
//! Handle over TCP: `concurrency` connections (tokio tasks), each with one request
//! outstanding (closed loop only). `recursive` sets the REC flag on Handle requests, so a
//! recursive node resolves through the hierarchy instead of answering 301; DNS queries
//! always have RD set.
//!
//! HTTP and HTTPS: `GET /api/handles/<id>` over `concurrency` persistent HTTP/1.1 connections
//! (hyper's client connection API), each with one request in flight. Closed loop by default;
//! with `rate`, the connections take turns at a shared schedule of send times and latency is
//! again measured from the scheduled time. Responses are bucketed by status (`HTTP200`,
//! `HTTP404`, …); connection errors and timeouts count as lost and the connection is replaced.
//!
//! The summary also reports the generator's own CPU time per query (from `/proc/self/stat`),
//! to check that the generator is not the bottleneck, and [`BenchConfig::progress`] prints a
//! live progress line on standard error once a second.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hickory_proto::op::{
    Message as DnsMessage, MessageType, OpCode, Query, ResponseCode as DnsResponseCode,
};
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpStream, UdpSocket};

use crate::model::{Handle, SuffixCase, Transport};
use crate::server::udp::batch;
use crate::wire::dns::{rcode_label, Zone};
use crate::wire::handle::message::{flag, op, Body, Message, ENVELOPE_LEN, MAX_MESSAGE_LEN};
use crate::wire::handle::peek::{self, at};

/// Which front end to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Native Handle resolution requests over UDP.
    HandleUdp,
    /// Native Handle resolution requests over TCP.
    HandleTcp,
    /// DNS TXT queries over UDP.
    DnsUdp,
    /// `GET /api/handles/<id>` over HTTP/1.1.
    Http,
    /// `GET /api/handles/<id>` over HTTP/1.1 in TLS.
    Https,
}

impl Proto {
    /// The name on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Proto::HandleUdp => "handle-udp",
            Proto::HandleTcp => "handle-tcp",
            Proto::DnsUdp => "dns-udp",
            Proto::Http => "http",
            Proto::Https => "https",
        }
    }

    /// The transport its requests travel on.
    pub fn transport(self) -> Transport {
        match self {
            Proto::HandleUdp | Proto::DnsUdp => Transport::Udp,
            Proto::HandleTcp | Proto::Http | Proto::Https => Transport::Tcp,
        }
    }

    /// Whether this loads the HTTP API.
    pub fn is_http(self) -> bool {
        matches!(self, Proto::Http | Proto::Https)
    }

    /// The port a server address without one defaults to: the node's defaults for the native
    /// protocol (2641), DNS (5300) and the HTTP(S) API (8000).
    pub fn default_port(self) -> u16 {
        match self {
            Proto::HandleUdp | Proto::HandleTcp => 2641,
            Proto::DnsUdp => 5300,
            Proto::Http | Proto::Https => 8000,
        }
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "handle-udp" => Ok(Proto::HandleUdp),
            "handle-tcp" => Ok(Proto::HandleTcp),
            "dns-udp" => Ok(Proto::DnsUdp),
            "http" => Ok(Proto::Http),
            "https" => Ok(Proto::Https),
            other => Err(format!(
                "unsupported protocol {other:?} \
                 (supported: handle-udp, handle-tcp, dns-udp, http, https)"
            )),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub proto: Proto,
    pub server: SocketAddr,
    /// The server's name as given (no port): HTTP `Host` header and TLS server name for
    /// http/https; `None`: the server's IP address.
    pub host: Option<String>,
    /// TLS client configuration; required for https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub duration: Duration,
    /// Requests outstanding in total (closed loop); the in-flight cap in open loop. TCP and
    /// HTTP: the number of connections, each with one request in flight.
    pub concurrency: usize,
    /// Source sockets (UDP protocols).
    pub sockets: usize,
    /// Offered queries per second (open loop); `None`: as fast as possible.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Identifiers that exist.
    pub ids: Vec<String>,
    /// Zipf exponent; `None`: uniform.
    pub zipf: Option<f64>,
    /// Share of queries for identifiers that do not exist.
    pub miss_share: f64,
    /// DNS zone the identifiers live under.
    pub zone: String,
    pub seed: u64,
    /// UDP: threads the sockets are spread over (each thread waits for the answers of all its
    /// sockets at once); `None`: one per core this process may run on (as `taskset` leaves
    /// them). Open loop adds one thread that sends.
    pub threads: Option<usize>,
    /// Set the REC (recursive) flag on Handle resolution requests (handle-udp, handle-tcp),
    /// so a recursive node resolves identifiers it is not responsible for through the
    /// hierarchy instead of answering 301. DNS queries always have RD set; refused for
    /// http/https.
    pub recursive: bool,
    /// Print a live progress line on standard error once a second (meant for a terminal).
    pub progress: bool,
}

/// Where `--server` points: the address to connect to and the name it was given by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTarget {
    pub addr: SocketAddr,
    /// Host name or IP address as given, without port or brackets.
    pub host: String,
}

/// Parse `--server`: `HOST:PORT`, `HOST` (the protocol's default port), `[V6]:PORT`, a bare
/// IPv6 address, or for http/https a URL base such as `https://node.example:8000/`.
pub fn parse_server(text: &str, proto: Proto) -> anyhow::Result<ServerTarget> {
    use std::net::ToSocketAddrs;
    let mut rest = text.trim();
    if proto.is_http() {
        for scheme in ["http://", "https://"] {
            if let Some(r) = rest.strip_prefix(scheme) {
                rest = r;
            }
        }
        rest = rest.trim_end_matches('/');
    }
    anyhow::ensure!(!rest.is_empty(), "empty server address {text:?}");
    let (host, port) = if let Ok(addr) = rest.parse::<SocketAddr>() {
        (addr.ip().to_string(), addr.port())
    } else if let Ok(ip) = rest.parse::<IpAddr>() {
        (ip.to_string(), proto.default_port())
    } else if let Some(v6) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        (v6.to_string(), proto.default_port())
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| anyhow::anyhow!("server address {text:?}: bad port {p:?}"))?;
                (h.trim_matches(|c| c == '[' || c == ']').to_string(), port)
            }
            None => (rest.to_string(), proto.default_port()),
        }
    };
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("server address {text:?}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("server address {text:?} resolves to no address"))?;
    Ok(ServerTarget { addr, host })
}

/// The first system CA bundle found (`SSL_CERT_FILE`, then the Debian, Red Hat, Alpine/macOS
/// locations), for https without `--ca-file` or `--insecure`.
pub fn system_ca_bundle() -> Option<std::path::PathBuf> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    from_env
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(std::path::PathBuf::from),
        )
        .find(|p| p.is_file())
}

/// Identifiers `prefix/<format with n>` for n in 0..count; `format` holds one `{}` or
/// `{:0W}` (zero-padded to W digits), e.g. `SN-{:07}`.
pub fn generate_ids(prefix: &str, format: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let open = format
        .find('{')
        .ok_or_else(|| anyhow::anyhow!("suffix format needs a {{}} placeholder"))?;
    let close = open
        + format[open..]
            .find('}')
            .ok_or_else(|| anyhow::anyhow!("unclosed {{ in suffix format"))?;
    let spec = &format[open + 1..close];
    let width = match spec {
        "" => 0,
        s => s
            .strip_prefix(":0")
            .and_then(|w| w.parse::<usize>().ok())
            .ok_or_else(|| anyhow::anyhow!("placeholder must be {{}} or {{:0W}}, not {{{s}}}"))?,
    };
    let (before, after) = (&format[..open], &format[close + 1..]);
    Ok((0..count)
        .map(|n| format!("{prefix}/{before}{n:0width$}{after}"))
        .collect())
}

/// Samples indexes 0..n, uniformly or with Zipf popularity (index 0 most popular).
#[derive(Debug, Clone)]
pub struct Sampler {
    n: usize,
    /// Cumulative weights for Zipf; empty for uniform.
    cdf: Vec<f64>,
}

impl Sampler {
    pub fn new(n: usize, zipf: Option<f64>) -> Sampler {
        let cdf = match zipf {
            Some(s) if n > 0 => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (0..n)
                    .map(|k| {
                        acc += 1.0 / ((k + 1) as f64).powf(s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                cdf
            }
            _ => Vec::new(),
        };
        Sampler { n, cdf }
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> usize {
        if self.cdf.is_empty() {
            return rng.gen_range(0..self.n);
        }
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.n - 1)
    }
}

/// Accumulated results of one socket, merged at the end.
#[derive(Debug, Clone)]
pub struct Stats {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub rcodes: BTreeMap<String, u64>,
    /// Latency in µs.
    pub hist: Histogram<u64>,
    sum_s: f64,
    sum_sq_s: f64,
    /// Why queries were lost: the first connection or exchange error (TCP, HTTP), socket
    /// error (UDP), or for UDP that answers did not come within the timeout.
    pub first_error: Option<String>,
    /// What is pushed to the progress line, if there is one.
    feed: Option<Box<LiveFeed>>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            sent: 0,
            completed: 0,
            lost: 0,
            rcodes: BTreeMap::new(),
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            sum_s: 0.0,
            sum_sq_s: 0.0,
            first_error: None,
            feed: None,
        }
    }
}

impl Stats {
    pub fn record(&mut self, latency: Duration, rcode: String) {
        *self.rcodes.entry(rcode).or_default() += 1;
        self.record_latency(latency);
    }

    /// Count a completed query by its latency only (the caller counts its response code).
    fn record_latency(&mut self, latency: Duration) {
        self.completed += 1;
        let s = latency.as_secs_f64();
        self.sum_s += s;
        self.sum_sq_s += s * s;
        let us = (latency.as_micros() as u64).max(1);
        self.hist.saturating_record(us);
        if let Some(feed) = &mut self.feed {
            feed.hist.saturating_record(us);
        }
    }

    /// Stats that also feed `live` (the progress line), if given.
    fn with_live(live: Option<&Arc<Live>>) -> Stats {
        Stats {
            feed: live.map(|live| {
                Box::new(LiveFeed {
                    live: live.clone(),
                    hist: Live::histogram(),
                    pushed: (0, 0, 0),
                    next_push: Instant::now() + LIVE_PUSH_EVERY,
                })
            }),
            ..Stats::default()
        }
    }

    /// Push what is new to the progress line if it is time (`force`: now).
    fn push_live(&mut self, now: Instant, force: bool) {
        let Some(feed) = &mut self.feed else { return };
        if !force && now < feed.next_push {
            return;
        }
        feed.next_push = now + LIVE_PUSH_EVERY;
        let mut totals = feed.live.lock();
        totals.sent += self.sent - feed.pushed.0;
        totals.completed += self.completed - feed.pushed.1;
        totals.lost += self.lost - feed.pushed.2;
        // Same bounds on both sides: adding cannot fail.
        let _ = totals.hist.add(&feed.hist);
        drop(totals);
        feed.pushed = (self.sent, self.completed, self.lost);
        feed.hist.reset();
    }

    pub fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.completed += other.completed;
        self.lost += other.lost;
        for (k, v) in &other.rcodes {
            *self.rcodes.entry(k.clone()).or_default() += v;
        }
        self.hist.add(&other.hist).expect("same bounds");
        self.sum_s += other.sum_s;
        self.sum_sq_s += other.sum_sq_s;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Count the outcome of one exchange over a connection: its response label, an error or
    /// a timeout, with latency from `since`. False when the connection must be replaced.
    fn settle(
        &mut self,
        outcome: Result<anyhow::Result<String>, tokio::time::error::Elapsed>,
        since: Instant,
        timeout: Duration,
    ) -> bool {
        match outcome {
            Ok(Ok(label)) => {
                self.record(Instant::now().saturating_duration_since(since), label);
                true
            }
            Ok(Err(e)) => {
                self.lose(|| format!("{e:#}"));
                false
            }
            Err(_) => {
                self.lose(|| format!("no response within {timeout:?}"));
                false
            }
        }
    }

    /// Count a lost query, keeping the first error seen.
    fn lose(&mut self, error: impl FnOnce() -> String) {
        self.lost += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error());
        }
    }

    pub fn summary(&self, proto: Proto, run_time: Duration) -> Summary {
        let n = self.completed as f64;
        let (avg, std) = if self.completed == 0 {
            (0.0, 0.0)
        } else {
            let avg = self.sum_s / n;
            (avg, (self.sum_sq_s / n - avg * avg).max(0.0).sqrt())
        };
        let q = |p: f64| {
            if self.completed == 0 {
                0
            } else {
                self.hist.value_at_quantile(p)
            }
        };
        let secs = run_time.as_secs_f64();
        Summary {
            protocol: proto.name(),
            queries_sent: self.sent,
            queries_completed: self.completed,
            queries_lost: self.lost,
            response_codes: self.rcodes.clone(),
            run_time_s: secs,
            queries_per_second: if secs > 0.0 { n / secs } else { 0.0 },
            average_latency_s: avg,
            min_latency_s: if self.completed == 0 {
                0.0
            } else {
                self.hist.min() as f64 / 1e6
            },
            max_latency_s: if self.completed == 0 {
                0.0
            } else {
                self.hist.max() as f64 / 1e6
            },
            latency_stddev_s: std,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if self.completed == 0 {
                0
            } else {
                self.hist.max()
            },
            generator_cpu_us_per_query: None,
            generator_cpu_share: None,
            first_error: self.first_error.clone(),
        }
    }
}

/// How often workers push their counts to the progress line.
const LIVE_PUSH_EVERY: Duration = Duration::from_millis(200);

/// Running totals for the progress line, pushed by the workers every [`LIVE_PUSH_EVERY`].
#[derive(Debug)]
struct Live(Mutex<LiveTotals>);

#[derive(Debug)]
struct LiveTotals {
    sent: u64,
    completed: u64,
    lost: u64,
    /// Latency in µs, 2 significant digits (small, so pushing is cheap).
    hist: Histogram<u64>,
}

impl Live {
    fn new() -> Live {
        Live(Mutex::new(LiveTotals {
            sent: 0,
            completed: 0,
            lost: 0,
            hist: Live::histogram(),
        }))
    }

    fn histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveTotals> {
        // Counters only: a worker that panicked holding the lock leaves nothing inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A worker's side of [`Live`]: latencies since the last push and the counts pushed so far.
#[derive(Debug, Clone)]
struct LiveFeed {
    live: Arc<Live>,
    hist: Histogram<u64>,
    /// (sent, completed, lost) already pushed.
    pushed: (u64, u64, u64),
    next_push: Instant,
}

/// Once a second, rewrite one line on standard error: elapsed time, counts, the last second's
/// completion rate and the p99 latency so far. Runs until aborted.
async fn progress_line(live: Arc<Live>, start: Instant, duration: Duration) {
    let tick = Duration::from_secs(1);
    let mut ticker = tokio::time::interval_at((start + tick).into(), tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_completed, mut last_at) = (0u64, start);
    loop {
        ticker.tick().await;
        let (sent, completed, lost, p99) = {
            let t = live.lock();
            let p99 = if t.hist.is_empty() {
                0
            } else {
                t.hist.value_at_quantile(0.99)
            };
            (t.sent, t.completed, t.lost, p99)
        };
        let now = Instant::now();
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-6);
        let qps = completed.saturating_sub(last_completed) as f64 / secs;
        (last_completed, last_at) = (completed, now);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{:.0}/{:.0}s  sent {sent}  completed {completed}  lost {lost}  \
             {qps:.0} q/s  p99 {p99} µs",
            now.duration_since(start).as_secs_f64(),
            duration.as_secs_f64(),
        );
        let _ = err.flush();
    }
}

/// CPU time (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (Linux, 10 ms resolution); `None` where that cannot be read.
pub fn process_cpu_time() -> Option<Duration> {
    /// Clock ticks per second of `/proc` times (USER_HZ: 100 on every Linux architecture
    /// this builds for).
    const USER_HZ: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces: count after it.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_micros(
        (utime + stime).saturating_mul(1_000_000 / USER_HZ),
    ))
}

/// The run's summary (dnsperf's labels plus percentiles).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub protocol: &'static str,
    pub queries_sent: u64,
    pub queries_completed: u64,
    pub queries_lost: u64,
    pub response_codes: BTreeMap<String, u64>,
    pub run_time_s: f64,
    pub queries_per_second: f64,
    pub average_latency_s: f64,
    pub min_latency_s: f64,
    pub max_latency_s: f64,
    pub latency_stddev_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The load generator's own CPU time (user + system, whole process) per query sent, in
    /// µs; `None` if it could not be measured.
    pub generator_cpu_us_per_query: Option<f64>,
    /// The load generator's CPU time over the run's wall time: 1.0 is one core fully busy.
    pub generator_cpu_share: Option<f64>,
    /// Why queries were lost, if any were: the first connection, exchange or socket error,
    /// or that UDP answers did not come within the timeout.
    pub first_error: Option<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: u64| {
            if self.queries_sent == 0 {
                0.0
            } else {
                v as f64 * 100.0 / self.queries_sent as f64
            }
        };
        writeln!(f, "Statistics ({}):", self.protocol)?;
        writeln!(f)?;
        writeln!(f, "  Queries sent:         {}", self.queries_sent)?;
        writeln!(
            f,
            "  Queries completed:    {} ({:.2}%)",
            self.queries_completed,
            pct(self.queries_completed)
        )?;
        writeln!(
            f,
            "  Queries lost:         {} ({:.2}%)",
            self.queries_lost,
            pct(self.queries_lost)
        )?;
        writeln!(f)?;
        let codes: Vec<String> = self
            .response_codes
            .iter()
            .map(|(k, v)| {
                let share = if self.queries_completed == 0 {
                    0.0
                } else {
                    *v as f64 * 100.0 / self.queries_completed as f64
                };
                format!("{k} {v} ({share:.2}%)")
            })
            .collect();
        writeln!(f, "  Response codes:       {}", codes.join(", "))?;
        writeln!(f, "  Run time (s):         {:.6}", self.run_time_s)?;
        writeln!(f, "  Queries per second:   {:.6}", self.queries_per_second)?;
        writeln!(f)?;
        writeln!(
            f,
            "  Average Latency (s):  {:.6} (min {:.6}, max {:.6})",
            self.average_latency_s, self.min_latency_s, self.max_latency_s
        )?;
        writeln!(f, "  Latency StdDev (s):   {:.6}", self.latency_stddev_s)?;
        writeln!(
            f,
            "  Latency (us):         p50 {} p90 {} p99 {} p99.9 {} max {}",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        )?;
        writeln!(f)?;
        match (self.generator_cpu_us_per_query, self.generator_cpu_share) {
            (Some(per_query), Some(share)) => write!(
                f,
                "  Load generator CPU:   {per_query:.2} µs/query ({:.0}% of one core)",
                share * 100.0
            ),
            _ => write!(f, "  Load generator CPU:   not measured"),
        }?;
        if let Some(e) = &self.first_error {
            write!(f, "\n  First error:          {e}")?;
        }
        Ok(())
    }
}

/// Encoded request datagrams.
type Datagrams = Vec<Vec<u8>>;

/// The operation flags of the Handle resolution requests sent: PO (public values only), plus
/// REC with `recursive`.
pub fn handle_request_flags(recursive: bool) -> u32 {
    if recursive {
        flag::PUBLIC_ONLY | flag::RECURSIVE
    } else {
        flag::PUBLIC_ONLY
    }
}

/// Encoded requests (id field zero) for the identifiers that exist and for misses.
fn templates(cfg: &BenchConfig) -> anyhow::Result<(Datagrams, Datagrams)> {
    let zone = match cfg.proto {
        Proto::DnsUdp => Some(
            Zone::new(&cfg.zone, SuffixCase::Sensitive)
                .map_err(|e| anyhow::anyhow!("zone {}: {e}", cfg.zone))?,
        ),
        Proto::HandleUdp | Proto::HandleTcp | Proto::Http | Proto::Https => None,
    };
    let encode = |id: &str| -> anyhow::Result<Vec<u8>> {
        match &zone {
            None => Ok(Message::request(
                op::RESOLUTION,
                handle_request_flags(cfg.recursive),
                Body::Resolution {
                    handle: id.to_string(),
                    indexes: Vec::new(),
                    types: Vec::new(),
                },
            )
            .encode()),
            Some(zone) => {
                let handle = Handle::parse(id, SuffixCase::Sensitive)
                    .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
                let name = zone
                    .name_of(&handle)
                    .map_err(|e| anyhow::anyhow!("{id}: no DNS name: {e}"))?;
                let mut m = DnsMessage::new(0, MessageType::Query, OpCode::Query);
                m.metadata.recursion_desired = true;
                m.add_query(Query::query(name, RecordType::TXT));
                Ok(m.to_vec()?)
            }
        }
    };
    hits_and_misses(cfg, encode)
}

/// `make` applied to every identifier (the hits) and, when misses are asked for, to up to
/// 10 000 names derived from them that do not exist (`<id>-nx<i>`).
fn hits_and_misses<T>(
    cfg: &BenchConfig,
    make: impl Fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<T>, Vec<T>)> {
    let hits = cfg
        .ids
        .iter()
        .map(|id| make(id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let misses = if cfg.miss_share > 0.0 {
        (0..cfg.ids.len().min(10_000))
            .map(|i| make(&format!("{}-nx{i}", cfg.ids[i])))
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    Ok((hits, misses))
}

/// Run the load and return the summary.
pub async fn run(cfg: &BenchConfig) -> anyhow::Result<Summary> {
    anyhow::ensure!(!cfg.ids.is_empty(), "no identifiers to query");
    anyhow::ensure!(
        cfg.sockets > 0 && cfg.concurrency > 0,
        "sockets and concurrency must be > 0"
    );
    anyhow::ensure!(
        cfg.sockets <= 65_536 && cfg.concurrency <= 1_000_000,
        "at most 65536 sockets and a concurrency of 1000000"
    );
    if let Some(rate) = cfg.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0 && rate <= MAX_RATE,
            "--rate must be a positive number of queries per second, at most {MAX_RATE}"
        );
    }
    anyhow::ensure!(
        !(cfg.recursive && cfg.proto.is_http()),
        "--recursive applies to handle-udp and handle-tcp (dns-udp always sets RD), \
         not to {}",
        cfg.proto.name()
    );

    let sampler = Arc::new(Sampler::new(cfg.ids.len(), cfg.zipf));
    let live = cfg.progress.then(|| Arc::new(Live::new()));
    // Requests are encoded (and TLS set up) before the clock and the CPU meter start.
    enum Prepared {
        Datagrams(Arc<Datagrams>, Arc<Datagrams>),
        Http(Arc<HttpTarget>, Arc<Vec<Uri>>, Arc<Vec<Uri>>),
    }
    let prepared = if cfg.proto.is_http() {
        let (hits, misses) = http_uris(cfg)?;
        Prepared::Http(
            Arc::new(HttpTarget::new(cfg)?),
            Arc::new(hits),
            Arc::new(misses),
        )
    } else {
        let (hits, misses) = templates(cfg)?;
        Prepared::Datagrams(Arc::new(hits), Arc::new(misses))
    };
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    let printer = live
        .clone()
        .map(|live| tokio::spawn(progress_line(live, start, cfg.duration)));
    let result = match prepared {
        Prepared::Http(target, hits, misses) => {
            run_http(cfg, target, hits, misses, sampler, start, live.as_ref()).await
        }
        // Native Handle requests over TCP (DNS is UDP only here).
        Prepared::Datagrams(hits, misses) if cfg.proto.transport() == Transport::Tcp => {
            run_tcp(cfg, hits, misses, sampler, start, live.as_ref()).await
        }
        Prepared::Datagrams(hits, misses) => {
            run_udp(cfg, hits, misses, sampler, start, live.as_ref()).await
        }
    };
    if let Some(printer) = printer {
        printer.abort();
        let _ = printer.await;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
    let (total, run_time) = result?;
    let wall = start.elapsed();
    let mut summary = total.summary(cfg.proto, run_time);
    if let (Some(before), Some(after)) = (cpu_before, process_cpu_time()) {
        let cpu = after.saturating_sub(before).as_secs_f64();
        if total.sent > 0 {
            summary.generator_cpu_us_per_query = Some(cpu * 1e6 / total.sent as f64);
        }
        summary.generator_cpu_share = Some(cpu / wall.as_secs_f64().max(1e-6));
    }
    Ok(summary)
}

/// Handle over TCP: `concurrency` connections, closed loop or (with `rate`) a shared
/// schedule of send times, like HTTP.
async fn run_tcp(
    cfg: &BenchConfig,
    hits: Arc<Datagrams>,
    misses: Arc<Datagrams>,
    sampler: Arc<Sampler>,
    start: Instant,
    live: Option<&Arc<Live>>,
) -> anyhow::Result<(Stats, Duration)> {
    let end = start + cfg.duration;
    let schedule = Schedule::for_rate(cfg.rate, start);
    let mut tasks = Vec::new();
    for i in 0..cfg.concurrency {
        let worker = TcpWorker {
            server: cfg.server,
            hits: hits.clone(),
            misses: misses.clone(),
            sampler: sampler.clone(),
            miss_share: cfg.miss_share,
            rng: StdRng::seed_from_u64(cfg.seed.wrapping_add(i as u64)),
            end,
            timeout: cfg.timeout,
            schedule: schedule.clone(),
        };
        tasks.push(tokio::spawn(worker.run(Stats::with_live(live))));
    }
    let mut total = Stats::default();
    for t in tasks {
        total.merge(&t.await?);
    }
    Schedule::count_unsent(schedule.as_deref(), cfg.duration, &mut total);
    Ok((total, cfg.duration))
}

/// Handle or DNS over UDP: `sockets` source sockets sharing `concurrency`, spread over
/// `threads` threads, each running a task per socket on a single-threaded runtime (one
/// wake-up serves the answers of all its sockets). Closed loop: the tasks send and receive
/// ([`UdpWorker`]). Open loop: they only receive ([`UdpReceiver`]), and one more thread sends
/// the whole schedule ([`UdpSender`]).
async fn run_udp(
    cfg: &BenchConfig,
    hits: Arc<Datagrams>,
    misses: Arc<Datagrams>,
    sampler: Arc<Sampler>,
    start: Instant,
    live: Option<&Arc<Live>>,
) -> anyhow::Result<(Stats, Duration)> {
    let end = start + cfg.duration;
    let sockets = cfg.sockets.min(cfg.concurrency);
    let threads = cfg
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, sockets);
    let dns = cfg.proto == Proto::DnsUdp;
    let queries = |seed: u64| Queries {
        dns,
        hits: hits.clone(),
        misses: misses.clone(),
        sampler: sampler.clone(),
        miss_share: cfg.miss_share,
        rng: StdRng::seed_from_u64(seed),
    };
    let window_of = |i: usize| {
        let window = cfg.concurrency / sockets + usize::from(i < cfg.concurrency % sockets);
        // DNS ids are 16 bits: leave room so an id is not reused while an answer to it may
        // still come.
        if dns {
            window.min(60_000)
        } else {
            window
        }
    };
    let mut groups: Vec<Vec<UdpTask>> = (0..threads).map(|_| Vec::new()).collect();
    let mut handles = Vec::new();
    match cfg.rate {
        None => {
            for i in 0..sockets {
                let worker = UdpWorker {
                    sock: udp_socket(cfg.server)?,
                    queries: queries(cfg.seed.wrapping_add(i as u64)),
                    window: window_of(i),
                    end,
                    timeout: cfg.timeout,
                };
                groups[i % threads].push(UdpTask::Closed(Box::new(worker), Stats::with_live(live)));
            }
        }
        Some(rate) => {
            let done = Arc::new(AtomicBool::new(false));
            let mut lanes = Vec::new();
            for i in 0..sockets {
                let track = window_of(i)
                    .saturating_mul(OPEN_LOOP_TRACK_PER_WINDOW)
                    .clamp(1, OPEN_LOOP_TRACK_MAX);
                let pending = Arc::new(Mutex::new(Pending::new(track, dns)));
                let sock = udp_socket(cfg.server)?;
                lanes.push(Lane {
                    sock: sock.try_clone()?,
                    pending: pending.clone(),
                });
                let receiver = UdpReceiver {
                    sock,
                    pending,
                    done: done.clone(),
                    dns,
                    end,
                    timeout: cfg.timeout,
                };
                groups[i % threads].push(UdpTask::Receive(receiver, Stats::with_live(live)));
            }
            let sender = UdpSender {
                lanes,
                queries: queries(cfg.seed),
                schedule: UdpSchedule { start, rate },
                end,
                done,
            };
            let stats = Stats::with_live(live);
            // If it cannot start, the receivers give up once everything has timed out.
            handles.push(
                std::thread::Builder::new()
                    .name("bench-udp-send".into())
                    .spawn(move || Ok(vec![sender.run(stats)]))?,
            );
        }
    }
    for (i, tasks) in groups.into_iter().enumerate() {
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-udp-{i}"))
                .spawn(move || run_group(tasks))?,
        );
    }
    let all = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        for h in handles {
            let stats: anyhow::Result<Vec<Stats>> = h
                .join()
                .map_err(|_| anyhow::anyhow!("a UDP load thread panicked"))?;
            all.extend(stats?);
        }
        Ok::<_, anyhow::Error>(all)
    })
    .await??;
    let mut total = Stats::default();
    for stats in &all {
        total.merge(stats);
    }
    Ok((total, cfg.duration))
}

/// What one UDP socket does on its group's thread.
enum UdpTask {
    Closed(Box<UdpWorker>, Stats),
    Receive(UdpReceiver, Stats),
}

/// Run a thread's UDP tasks to the end on a single-threaded runtime.
fn run_group(tasks: Vec<UdpTask>) -> anyhow::Result<Vec<Stats>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|task| match task {
            UdpTask::Closed(worker, stats) => local.spawn_local(worker.run_closed(stats)),
            UdpTask::Receive(receiver, stats) => local.spawn_local(receiver.run(stats)),
        })
        .collect();
    local.block_on(&runtime, async move {
        let mut all = Vec::new();
        for h in handles {
            all.push(h.await?);
        }
        Ok(all)
    })
}

/// HTTP(S): `concurrency` keep-alive connections, closed loop or (with `rate`) a shared
/// schedule of send times.
async fn run_http(
    cfg: &BenchConfig,
    target: Arc<HttpTarget>,
    hits: Arc<Vec<Uri>>,
    misses: Arc<Vec<Uri>>,
    sampler: Arc<Sampler>,
    start: Instant,
    live: Option<&Arc<Live>>,
) -> anyhow::Result<(Stats, Duration)> {
    let end = start + cfg.duration;
    let schedule = Schedule::for_rate(cfg.rate, start);
    let mut tasks = Vec::new();
    for i in 0..cfg.concurrency {
        let worker = HttpWorker {
            target: target.clone(),
            hits: hits.clone(),
            misses: misses.clone(),
            sampler: sampler.clone(),
            miss_share: cfg.miss_share,
            rng: StdRng::seed_from_u64(cfg.seed.wrapping_add(i as u64)),
            end,
            schedule: schedule.clone(),
        };
        tasks.push(tokio::spawn(worker.run(Stats::with_live(live))));
    }
    let mut total = Stats::default();
    for t in tasks {
        total.merge(&t.await?);
    }
    Schedule::count_unsent(schedule.as_deref(), cfg.duration, &mut total);
    Ok((total, cfg.duration))
}

/// Bytes escaped in an identifier put in a request path: everything but RFC 3986 `pchar`s and
/// `/` (the server's `/api/handles/{*handle}` route percent-decodes the rest of the path, so
/// the prefix/suffix slash may stay literal, as pyhandle sends it).
const HANDLE_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/');

/// The request path (`/api/handles/<id>`, percent-encoded) of one identifier.
pub fn http_path(id: &str) -> String {
    format!("/api/handles/{}", utf8_percent_encode(id, HANDLE_PATH))
}

/// Request URIs for the identifiers that exist and for misses.
fn http_uris(cfg: &BenchConfig) -> anyhow::Result<(Vec<Uri>, Vec<Uri>)> {
    let uri = |id: &str| -> anyhow::Result<Uri> {
        Uri::try_from(http_path(id)).map_err(|e| anyhow::anyhow!("{id}: not usable in a URL: {e}"))
    };
    hits_and_misses(cfg, uri)
}

/// Where and how HTTP workers connect.
struct HttpTarget {
    server: SocketAddr,
    /// `Host` header value.
    host: HeaderValue,
    /// Connector and server name for https.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl HttpTarget {
    fn new(cfg: &BenchConfig) -> anyhow::Result<HttpTarget> {
        let name = cfg
            .host
            .clone()
            .unwrap_or_else(|| cfg.server.ip().to_string());
        let authority = match name.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", cfg.server.port()),
            _ => format!("{name}:{}", cfg.server.port()),
        };
        let host = HeaderValue::from_str(&authority)
            .map_err(|_| anyhow::anyhow!("{name:?} is not usable as an HTTP Host"))?;
        let tls = match cfg.proto {
            Proto::Https => {
                let config = cfg
                    .tls
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("https needs a TLS client configuration"))?;
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|e| anyhow::anyhow!("{name:?} is not a TLS server name: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(config), server_name))
            }
            _ => None,
        };
        Ok(HttpTarget {
            server: cfg.server,
            host,
            tls,
            timeout: cfg.timeout,
        })
    }

    /// A new keep-alive HTTP/1.1 connection; its driver runs as its own task until the
    /// returned sender is dropped or the connection fails.
    async fn connect(&self) -> anyhow::Result<HttpSender> {
        use hyper::client::conn::http1::handshake;
        let tcp = TcpStream::connect(self.server).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => {
                let (sender, conn) = handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await?;
                let (sender, conn) = handshake(TokioIo::new(tls)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }
        }
    }
}

type HttpSender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// The highest `rate` taken, in queries per second.
pub const MAX_RATE: f64 = 1e9;

/// Open-loop send times shared by the HTTP connections: slot `k` is due at `start + k / rate`.
struct Schedule {
    start: Instant,
    rate: f64,
    next: AtomicU64,
}

impl Schedule {
    /// When slot `slot` is due after the start (`Duration::MAX`: beyond any run).
    fn offset(&self, slot: u64) -> Duration {
        Duration::try_from_secs_f64(slot as f64 / self.rate).unwrap_or(Duration::MAX)
    }

    /// Take the next slot: its due time (`None`: beyond any run).
    fn take(&self) -> Option<Instant> {
        self.start
            .checked_add(self.offset(self.next.fetch_add(1, Ordering::Relaxed)))
    }

    /// For a rate, a schedule starting at `start`.
    fn for_rate(rate: Option<f64>, start: Instant) -> Option<Arc<Schedule>> {
        rate.map(|rate| {
            Arc::new(Schedule {
                start,
                rate,
                next: AtomicU64::new(0),
            })
        })
    }

    /// Wait for this worker's next turn and return the time its latency counts from: `now` in
    /// closed loop (no schedule); in open loop the next slot's due time when the worker is
    /// already late for it (busy with earlier requests: that wait is the server's), else the
    /// moment it woke up for it (the runtime's timer wakes up to a millisecond late, which is
    /// the generator's delay, not the server's). `None` when the run is over.
    async fn turn(schedule: Option<&Schedule>, now: Instant, end: Instant) -> Option<Instant> {
        let Some(schedule) = schedule else {
            return Some(now);
        };
        let due = schedule.take().filter(|due| *due < end)?;
        if due > now {
            tokio::time::sleep_until(due.into()).await;
            return Some(Instant::now());
        }
        Some(due)
    }

    /// Count slots that were due before the end but never sent (every worker busy) as sent
    /// and lost: offered load the server did not get to answer.
    fn count_unsent(schedule: Option<&Schedule>, duration: Duration, total: &mut Stats) {
        if let Some(schedule) = schedule {
            let unsent = schedule.slots_before(duration).saturating_sub(total.sent);
            total.sent = total.sent.saturating_add(unsent);
            total.lost = total.lost.saturating_add(unsent);
        }
    }

    /// How many slots are due before `duration` has passed.
    fn slots_before(&self, duration: Duration) -> u64 {
        let mut n = (duration.as_secs_f64() * self.rate).ceil().max(0.0) as u64;
        while n > 0 && self.offset(n - 1) >= duration {
            n -= 1;
        }
        while self.offset(n) < duration {
            n += 1;
        }
        n
    }
}

/// One HTTP connection with one request in flight; reconnects after errors.
struct HttpWorker {
    target: Arc<HttpTarget>,
    hits: Arc<Vec<Uri>>,
    misses: Arc<Vec<Uri>>,
    sampler: Arc<Sampler>,
    miss_share: f64,
    rng: StdRng,
    end: Instant,
    schedule: Option<Arc<Schedule>>,
}

impl HttpWorker {
    async fn run(mut self, mut stats: Stats) -> Stats {
        let mut conn: Option<HttpSender> = None;
        loop {
            let now = Instant::now();
            stats.push_live(now, false);
            if now >= self.end {
                break;
            }
            let Some(due) = Schedule::turn(self.schedule.as_deref(), now, self.end).await else {
                break;
            };
            // A connection the server closed between requests (idle timeout, `Connection:
            // close`) is replaced without counting a loss.
            if let Some(sender) = &mut conn {
                if sender.ready().await.is_err() {
                    conn = None;
                }
            }
            let uri = if !self.misses.is_empty() && self.rng.gen::<f64>() < self.miss_share {
                self.misses[self.rng.gen_range(0..self.misses.len())].clone()
            } else {
                self.hits[self.sampler.sample(&mut self.rng)].clone()
            };
            stats.sent += 1;
            let target = &self.target;
            let exchange = async {
                let sender = match &mut conn {
                    Some(sender) => sender,
                    None => conn.insert(target.connect().await?),
                };
                let request = Request::get(uri)
                    .header(HOST, target.host.clone())
                    .body(Empty::<Bytes>::new())?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                // Read the body to the end so the connection can carry the next request.
                response.into_body().collect().await?;
                Ok::<String, anyhow::Error>(format!("HTTP{}", status.as_u16()))
            };
            let outcome = tokio::time::timeout(target.timeout, exchange).await;
            if !stats.settle(outcome, due, target.timeout) {
                conn = None;
            }
        }
        stats.push_live(Instant::now(), true);
        stats
    }
}

/// One Handle TCP connection with one request outstanding; reconnects after errors.
struct TcpWorker {
    server: SocketAddr,
    hits: Arc<Datagrams>,
    misses: Arc<Datagrams>,
    sampler: Arc<Sampler>,
    miss_share: f64,
    rng: StdRng,
    end: Instant,
    timeout: Duration,
    schedule: Option<Arc<Schedule>>,
}

impl TcpWorker {
    async fn run(mut self, mut stats: Stats) -> Stats {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn: Option<tokio::net::TcpStream> = None;
        let mut next_id: u32 = self.rng.gen();
        let mut scratch = Vec::with_capacity(512);
        let mut body = Vec::with_capacity(4096);
        loop {
            let now = Instant::now();
            stats.push_live(now, false);
            if now >= self.end {
                break;
            }
            let Some(due) = Schedule::turn(self.schedule.as_deref(), now, self.end).await else {
                break;
            };
            let template = if !self.misses.is_empty() && self.rng.gen::<f64>() < self.miss_share {
                &self.misses[self.rng.gen_range(0..self.misses.len())]
            } else {
                &self.hits[self.sampler.sample(&mut self.rng)]
            };
            next_id = next_id.wrapping_add(1);
            scratch.clear();
            scratch.extend_from_slice(template);
            scratch[at::REQUEST_ID].copy_from_slice(&next_id.to_be_bytes());
            stats.sent += 1;
            let server = self.server;
            let exchange = async {
                if conn.is_none() {
                    let s = tokio::net::TcpStream::connect(server).await?;
                    s.set_nodelay(true)?;
                    conn = Some(s);
                }
                let s = conn.as_mut().expect("connected");
                s.write_all(&scratch).await?;
                loop {
                    let mut env = [0u8; ENVELOPE_LEN];
                    s.read_exact(&mut env).await?;
                    let head = peek::Framed(&env);
                    // The envelope is all there: its fields are too.
                    let len = head.message_length().unwrap_or(0) as usize;
                    anyhow::ensure!(len <= MAX_MESSAGE_LEN, "response too long");
                    body.resize(len, 0);
                    s.read_exact(&mut body).await?;
                    if head.request_id() == Some(next_id) {
                        if let Some(rc) = peek::Message(&body).response_code() {
                            return Ok::<String, anyhow::Error>(format!("RC{rc}"));
                        }
                    }
                }
            };
            // Latency from the due time: in open loop a late send counts against the server.
            let outcome = tokio::time::timeout(self.timeout, exchange).await;
            if !stats.settle(outcome, due, self.timeout) {
                conn = None;
            }
        }
        stats.push_live(Instant::now(), true);
        stats
    }
}

/// Datagrams sent or received per system call (UDP protocols, Linux).
pub const UDP_BATCH: usize = batch::BATCH;
/// Bytes kept of each UDP answer: its Handle envelope and header (28 bytes) or DNS header
/// are all that is read; the kernel drops the rest.
const ANSWER_HEAD: usize = 64;
/// How often outstanding UDP queries are checked for timeouts.
const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// In open loop, queries one UDP socket tracks at once, per query of its `concurrency` share
/// (scheduled queries beyond that are counted as sent and lost), and at most.
const OPEN_LOOP_TRACK_PER_WINDOW: usize = 64;
const OPEN_LOOP_TRACK_MAX: usize = 65_536;
/// Kernel receive buffer asked for each UDP socket (Linux caps it at `rmem_max`).
const UDP_RECV_BUFFER: usize = 4 << 20;

/// A connected UDP socket to `server`. It stays blocking (a send waits for room in the
/// socket buffer); receives do not wait (`MSG_DONTWAIT`), readiness comes from the runtime.
fn udp_socket(server: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    let sock = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a larger buffer only keeps bursts of answers from being dropped.
    let _ = sock.set_recv_buffer_size(UDP_RECV_BUFFER);
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    sock.bind(&any.into())?;
    sock.connect(&server.into())?;
    Ok(sock.into())
}

/// Queries in flight on one UDP socket: a table of `2^k` slots indexed by the low `k` bits
/// of the request id. The bits above count the slot's uses, so a late answer to an earlier
/// use of a slot (one counted lost) does not match the query now in it. DNS ids have 16 bits
/// (at most 65 536 slots), Handle request ids 32.
struct Pending {
    slots: Vec<PendingSlot>,
    /// Free slot indexes (a stack).
    free: Vec<u32>,
    /// `k`: the request id's low bits that index a slot.
    shift: u32,
    id_mask: u32,
}

#[derive(Debug, Clone, Copy)]
struct PendingSlot {
    /// Request id of the slot's current (or last) query.
    id: u32,
    /// When it was sent (open loop: scheduled); `None`: free.
    sent: Option<Instant>,
}

impl Pending {
    /// Room for at least `capacity` queries (rounded up to a power of two; at most 2^20, and
    /// 2^16 for DNS).
    fn new(capacity: usize, dns: bool) -> Pending {
        let max = if dns { 1 << 16 } else { 1 << 20 };
        let slots = capacity.clamp(1, max).next_power_of_two();
        Pending {
            slots: (0..slots)
                .map(|s| PendingSlot {
                    id: s as u32,
                    sent: None,
                })
                .collect(),
            free: (0..slots as u32).rev().collect(),
            shift: slots.trailing_zeros(),
            id_mask: if dns { 0xFFFF } else { u32::MAX },
        }
    }

    /// Queries in flight.
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Take a free slot for a query sent at `at`; returns its request id (`None`: full).
    fn insert(&mut self, at: Instant) -> Option<u32> {
        let s = self.free.pop()?;
        let slot = &mut self.slots[s as usize];
        // shift <= 20: the step is nonzero (for 2^16 DNS slots it vanishes under the mask,
        // and the id is the slot index).
        let step = 1u32 << self.shift;
        let mut id = slot.id.wrapping_add(step) & self.id_mask;
        if id == 0 {
            // Request id 0 is left out (a Handle server may treat it as "none").
            id = id.wrapping_add(step) & self.id_mask;
        }
        *slot = PendingSlot { id, sent: Some(at) };
        Some(id)
    }

    /// The send time of the query with request id `id`, which is no longer in flight;
    /// `None` if no such query is (a duplicate or late answer).
    fn take(&mut self, id: u32) -> Option<Instant> {
        let s = id as usize & (self.slots.len() - 1);
        let slot = &mut self.slots[s];
        if slot.id != id {
            return None;
        }
        let sent = slot.sent.take()?;
        self.free.push(s as u32);
        Some(sent)
    }

    /// Give up on the queries sent `timeout` or longer before `now`; returns how many.
    fn expire(&mut self, now: Instant, timeout: Duration) -> u64 {
        let mut expired = 0;
        for (s, slot) in self.slots.iter_mut().enumerate() {
            if let Some(sent) = slot.sent {
                if now.saturating_duration_since(sent) >= timeout {
                    slot.sent = None;
                    self.free.push(s as u32);
                    expired += 1;
                }
            }
        }
        expired
    }
}

/// What one UDP socket sends: the encoded requests and how to draw them.
struct Queries {
    /// DNS queries (else native Handle requests).
    dns: bool,
    hits: Arc<Datagrams>,
    misses: Arc<Datagrams>,
    sampler: Arc<Sampler>,
    miss_share: f64,
    rng: StdRng,
}

impl Queries {
    /// Write the next query, with request id `id`, into `out`.
    fn next_into(&mut self, id: u32, out: &mut Vec<u8>) {
        let template = if !self.misses.is_empty() && self.rng.gen::<f64>() < self.miss_share {
            &self.misses[self.rng.gen_range(0..self.misses.len())]
        } else {
            &self.hits[self.sampler.sample(&mut self.rng)]
        };
        out.clear();
        out.extend_from_slice(template);
        if self.dns {
            out[0..2].copy_from_slice(&(id as u16).to_be_bytes());
        } else {
            out[at::REQUEST_ID].copy_from_slice(&id.to_be_bytes());
        }
    }
}

/// Request id and response code of an answer datagram (`None`: not an answer to count, such
/// as a later datagram of a multi-datagram Handle answer).
fn parse_answer(dns: bool, d: &[u8]) -> Option<(u32, u32)> {
    if dns {
        let id = u16::from_be_bytes(d.get(0..2)?.try_into().ok()?);
        Some((u32::from(id), u32::from(d.get(3)? & 0x0F)))
    } else {
        let d = peek::Framed(d);
        let id = d.request_id()?;
        if d.sequence()? != 0 {
            return None;
        }
        Some((id, d.response_code()?))
    }
}

/// The name a response code is counted under: `RC<n>` (Handle) or the DNS mnemonic the
/// node's metrics use ([`rcode_label`]; `RCODE<n>` for the codes it does not name).
fn code_name(dns: bool, code: u32) -> String {
    if !dns {
        return format!("RC{code}");
    }
    // A DNS header's rcode has 4 bits.
    let label = match u8::try_from(code) {
        Ok(low @ 0..=15) => rcode_label(DnsResponseCode::from_low(low)),
        _ => "OTHER",
    };
    match label {
        "OTHER" => format!("RCODE{code}"),
        known => known.to_string(),
    }
}

/// Response codes counted by number (named once, at the end).
#[derive(Debug, Default)]
struct Codes(Vec<(u32, u64)>);

impl Codes {
    fn add(&mut self, code: u32) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.0.push((code, 1)),
        }
    }

    fn add_to(&self, dns: bool, stats: &mut Stats) {
        for &(code, n) in &self.0 {
            *stats.rcodes.entry(code_name(dns, code)).or_default() += n;
        }
    }
}

/// Queries waiting to leave, sent together with [`batch::ConnectedSender`]. Buffers are reused.
struct Outbox {
    bufs: Vec<Vec<u8>>,
    len: usize,
    /// `bufs[..sent]` are gone (a flush stopped by a full socket buffer goes on from here).
    sent: usize,
    io: batch::ConnectedSender,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            bufs: (0..UDP_BATCH).map(|_| Vec::new()).collect(),
            len: 0,
            sent: 0,
            io: batch::ConnectedSender::new(),
        }
    }

    /// The buffer for the next query (the caller flushes when [`Outbox::is_full`]).
    fn next_buf(&mut self) -> &mut Vec<u8> {
        let i = self.len;
        self.len += 1;
        &mut self.bufs[i]
    }

    fn is_full(&self) -> bool {
        self.len == self.bufs.len()
    }

    /// Send what is queued; false if the socket buffer is full with some still queued (try
    /// again once the socket is writable). A query the kernel refuses stays in flight and
    /// times out (lost); the first error is kept in `error`.
    fn try_flush(&mut self, sock: &impl AsRawFd, error: &mut Option<String>) -> bool {
        if self.sent < self.len {
            self.sent += self
                .io
                .send(sock, &mut self.bufs[self.sent..self.len], error);
        }
        if self.sent < self.len {
            return false;
        }
        (self.len, self.sent) = (0, 0);
        true
    }

    /// Send what is queued, waiting for room in the socket buffer if need be.
    async fn flush(&mut self, sock: &UdpSocket, error: &mut Option<String>) {
        while !self.try_flush(sock, error) {
            // Forget the runtime's (stale) write readiness, so that the wait is for room
            // made after this failed send.
            let _ = sock.try_io(tokio::io::Interest::WRITABLE, || {
                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
            });
            if sock.writable().await.is_err() {
                return;
            }
        }
    }

    /// [`Outbox::flush`] for a thread without a runtime: polls for room every 50 µs.
    fn flush_blocking(&mut self, sock: &impl AsRawFd, error: &mut Option<String>) {
        while !self.try_flush(sock, error) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Match a batch of received answers (received at `now`) to the queries in `pending`.
fn absorb(
    rx: &batch::ConnectedReceiver,
    n: usize,
    dns: bool,
    pending: &mut Pending,
    now: Instant,
    stats: &mut Stats,
    codes: &mut Codes,
) {
    for i in 0..n {
        let Some((id, code)) = rx.get(i).and_then(|d| parse_answer(dns, d)) else {
            continue;
        };
        if let Some(sent) = pending.take(id) {
            stats.record_latency(now.saturating_duration_since(sent));
            codes.add(code);
        }
    }
}

/// A failed receive: note the error (such as the ICMP port unreachable of an earlier query,
/// reported on a connected socket). Returns whether to pause before the next, for errors
/// that do not say something about one datagram (so they cannot spin the loop).
fn receive_failed(e: &std::io::Error, error: &mut Option<String>) -> bool {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::Interrupted => false,
        ErrorKind::ConnectionRefused => {
            error.get_or_insert_with(|| format!("receive: {e}"));
            false
        }
        _ => {
            error.get_or_insert_with(|| format!("receive: {e}"));
            true
        }
    }
}

/// Wait until `sock` may have answers to read or `deadline` passes, then take what has
/// arrived.
async fn receive(
    sock: &UdpSocket,
    rx: &mut batch::ConnectedReceiver,
    deadline: Instant,
) -> std::io::Result<usize> {
    match tokio::time::timeout_at(deadline.into(), sock.readable()).await {
        // `WouldBlock` (read dry) clears the readiness, so the next wait is for new answers.
        Ok(_) => sock.try_io(tokio::io::Interest::READABLE, || rx.receive(sock)),
        // At the deadline, a plain receive: it also reports socket errors (the ICMP port
        // unreachable of an earlier query), which do not make the socket readable.
        Err(_) => rx.receive(sock),
    }
}

/// Finish a UDP thread's stats: response codes, and if queries were lost, the first error
/// seen or else `lost_because`.
fn finish(
    mut stats: Stats,
    codes: &Codes,
    dns: bool,
    error: Option<String>,
    lost_because: impl FnOnce() -> String,
) -> Stats {
    codes.add_to(dns, &mut stats);
    if stats.lost > 0 && stats.first_error.is_none() {
        stats.first_error = Some(error.unwrap_or_else(lost_because));
    }
    stats.push_live(Instant::now(), true);
    stats
}

/// Open-loop send times (UDP): query `n` is due `n / rate` after the start, and goes out on
/// socket `n % sockets`.
#[derive(Debug, Clone, Copy)]
struct UdpSchedule {
    start: Instant,
    rate: f64,
}

impl UdpSchedule {
    /// When query `n` is due (`None`: beyond any clock).
    fn due(&self, n: u64) -> Option<Instant> {
        self.start
            .checked_add(Duration::try_from_secs_f64(n as f64 / self.rate).ok()?)
    }
}

/// One source UDP socket with its share of the queries outstanding.
struct UdpWorker {
    sock: std::net::UdpSocket,
    queries: Queries,
    /// Queries outstanding (closed loop); sets how many are tracked in open loop.
    window: usize,
    end: Instant,
    timeout: Duration,
}

impl UdpWorker {
    /// Closed loop: keep `window` queries outstanding, sending the replacements for each
    /// batch of answers (or timeouts) at once.
    async fn run_closed(self, mut stats: Stats) -> Stats {
        let UdpWorker {
            sock,
            mut queries,
            window,
            end,
            timeout,
        } = self;
        let dns = queries.dns;
        let sock = match sock
            .set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(sock))
        {
            Ok(sock) => sock,
            Err(e) => {
                stats.first_error = Some(format!("registering a UDP socket: {e}"));
                return stats;
            }
        };
        let mut pending = Pending::new(window, dns);
        let mut out = Outbox::new();
        let mut rx = batch::ConnectedReceiver::new(ANSWER_HEAD);
        let mut codes = Codes::default();
        let mut error = None;
        let mut now = Instant::now();
        let mut next_sweep = now + SWEEP_EVERY;
        loop {
            stats.push_live(now, false);
            if now < end {
                while pending.len() < window {
                    let Some(id) = pending.insert(now) else { break };
                    queries.next_into(id, out.next_buf());
                    stats.sent += 1;
                    if out.is_full() {
                        out.flush(&sock, &mut error).await;
                    }
                }
                out.flush(&sock, &mut error).await;
            } else if pending.len() == 0 {
                break;
            }
            if now >= next_sweep {
                stats.lost += pending.expire(now, timeout);
                next_sweep = now + SWEEP_EVERY;
            }
            let deadline = if now < end {
                next_sweep.min(end)
            } else {
                next_sweep
            };
            let received = receive(&sock, &mut rx, deadline).await;
            now = Instant::now();
            match received {
                Ok(n) => absorb(&rx, n, dns, &mut pending, now, &mut stats, &mut codes),
                Err(e) => {
                    if receive_failed(&e, &mut error) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
        finish(stats, &codes, dns, error, || {
            format!("no answer within {timeout:?}")
        })
    }
}

/// One socket's side of the open-loop sender.
struct Lane {
    sock: std::net::UdpSocket,
    pending: Arc<Mutex<Pending>>,
}

/// Open loop: sends every query at its scheduled time; latency is measured from the
/// scheduled time. The queries due at one wake-up go out together on one socket (up to a
/// batch each), the sockets taking turns. When it is behind, all queries due go out at once.
struct UdpSender {
    lanes: Vec<Lane>,
    queries: Queries,
    schedule: UdpSchedule,
    end: Instant,
    /// Set when the last query is sent.
    done: Arc<AtomicBool>,
}

impl UdpSender {
    fn run(mut self, mut stats: Stats) -> Stats {
        let mut error = None;
        // Per socket (built here: batch headers stay on the thread that uses them).
        let mut outs: Vec<Outbox> = self.lanes.iter().map(|_| Outbox::new()).collect();
        // The socket whose turn it is.
        let mut turn = 0;
        let mut n = 0u64;
        while let Some(next) = self.schedule.due(n).filter(|d| *d < self.end) {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
                continue;
            }
            stats.push_live(now, false);
            // Everything due by now (at most a batch per socket before the clock is read
            // again), a batch per socket and system call.
            let most = n + (self.lanes.len() * UDP_BATCH) as u64;
            while let Some(at) = self
                .schedule
                .due(n)
                .filter(|d| *d < self.end && *d <= now && n < most)
            {
                let (lane, out) = (&self.lanes[turn], &mut outs[turn]);
                n += 1;
                stats.sent += 1;
                let id = lock(&lane.pending).insert(at);
                match id {
                    Some(id) => {
                        self.queries.next_into(id, out.next_buf());
                        if out.is_full() {
                            out.flush_blocking(&lane.sock, &mut error);
                            turn = (turn + 1) % self.lanes.len();
                        }
                    }
                    // Cannot track more: offered but not sent, counted lost.
                    None => stats.lost += 1,
                }
            }
            if outs[turn].len > 0 {
                outs[turn].flush_blocking(&self.lanes[turn].sock, &mut error);
                turn = (turn + 1) % self.lanes.len();
            }
        }
        self.done.store(true, Ordering::Release);
        let track = self
            .lanes
            .first()
            .map_or(0, |l| lock(&l.pending).slots.len());
        finish(stats, &Codes::default(), self.queries.dns, error, || {
            format!("more than {track} queries in flight on a socket: the excess was not sent")
        })
    }
}

/// Open loop: receives the answers on one socket.
struct UdpReceiver {
    sock: std::net::UdpSocket,
    pending: Arc<Mutex<Pending>>,
    /// The sender is done: stop once nothing is in flight.
    done: Arc<AtomicBool>,
    dns: bool,
    end: Instant,
    timeout: Duration,
}

impl UdpReceiver {
    async fn run(self, mut stats: Stats) -> Stats {
        let UdpReceiver {
            sock,
            pending,
            done,
            dns,
            end,
            timeout,
        } = self;
        let sock = match sock
            .set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(sock))
        {
            Ok(sock) => sock,
            Err(e) => {
                stats.first_error = Some(format!("registering a UDP socket: {e}"));
                return stats;
            }
        };
        let mut rx = batch::ConnectedReceiver::new(ANSWER_HEAD);
        let mut codes = Codes::default();
        let mut error = None;
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        // Whatever happens to the sender, everything has timed out by then.
        let give_up = end + timeout + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            stats.push_live(now, false);
            let finished = done.load(Ordering::Acquire);
            {
                let mut pending = lock(&pending);
                if finished && pending.len() == 0 {
                    break;
                }
                if now >= give_up {
                    stats.lost += pending.expire(now, Duration::ZERO);
                    break;
                }
                if now >= next_sweep {
                    stats.lost += pending.expire(now, timeout);
                    next_sweep = now + SWEEP_EVERY;
                }
            }
            let received = receive(&sock, &mut rx, next_sweep).await;
            let now = Instant::now();
            match received {
                Ok(n) => absorb(
                    &rx,
                    n,
                    dns,
                    &mut lock(&pending),
                    now,
                    &mut stats,
                    &mut codes,
                ),
                Err(e) => {
                    if receive_failed(&e, &mut error) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
        finish(stats, &codes, dns, error, || {
            format!("no answer within {timeout:?}")
        })
    }
}

/// Lock the table of queries in flight (a thread that panicked holding it leaves slots at
/// worst).
fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids() {
        let ids = generate_ids("88.100.1", "SN-{:07}", 3).unwrap();
        assert_eq!(
            ids,
            [
                "88.100.1/SN-0000000",
                "88.100.1/SN-0000001",
                "88.100.1/SN-0000002"
            ]
        );
        assert_eq!(generate_ids("p", "x{}y", 2).unwrap(), ["p/x0y", "p/x1y"]);
        assert!(generate_ids("p", "nope", 1).is_err());
        assert!(generate_ids("p", "{:x}", 1).is_err());
    }

    #[test]
    fn uniform_sampler_covers_all() {
        let s = Sampler::new(10, None);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[s.sample(&mut rng)] += 1;
        }
        for c in counts {
            assert!((8_000..12_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn zipf_sampler_follows_power_law() {
        let n = 1000;
        let s = Sampler::new(n, Some(1.0));
        let mut rng = StdRng::seed_from_u64(2);
        let mut counts = vec![0u32; n];
        let draws = 200_000;
        for _ in 0..draws {
            counts[s.sample(&mut rng)] += 1;
        }
        // Rank 1 has twice the weight of rank 2 and ten times that of rank 10.
        let r12 = counts[0] as f64 / counts[1] as f64;
        let r110 = counts[0] as f64 / counts[9] as f64;
        assert!((1.7..2.3).contains(&r12), "{r12}");
        assert!((8.0..12.5).contains(&r110), "{r110}");
        // H(1000) ≈ 7.485: the top item takes about 13.4%.
        let top = counts[0] as f64 / draws as f64;
        assert!((0.12..0.15).contains(&top), "{top}");
    }

    #[test]
    fn summary_statistics() {
        let mut a = Stats {
            sent: 3,
            ..Default::default()
        };
        a.record(Duration::from_millis(1), "RC1".into());
        a.record(Duration::from_millis(3), "RC1".into());
        let mut b = Stats {
            sent: 2,
            lost: 1,
            ..Default::default()
        };
        b.record(Duration::from_millis(2), "RC100".into());
        a.merge(&b);
        let s = a.summary(Proto::HandleUdp, Duration::from_secs(2));
        assert_eq!(
            (s.queries_sent, s.queries_completed, s.queries_lost),
            (5, 3, 1)
        );
        assert_eq!(s.response_codes["RC1"], 2);
        assert_eq!(s.response_codes["RC100"], 1);
        assert!((s.queries_per_second - 1.5).abs() < 1e-9);
        assert!((s.average_latency_s - 0.002).abs() < 1e-9);
        let expected_std = (2.0f64 / 3.0).sqrt() / 1000.0;
        assert!((s.latency_stddev_s - expected_std).abs() < 1e-7);
        assert!((995..=1001).contains(&s.p50_us) || (1995..=2001).contains(&s.p50_us));
        assert!((2995..=3002).contains(&s.max_us));
        let text = s.to_string();
        assert!(text.contains("Queries per second:"));
        assert!(text.contains("Average Latency (s):"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["queries_completed"], 3);
    }

    #[test]
    fn server_addresses() {
        let t = parse_server("127.0.0.1:8001", Proto::Http).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8001".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1");
        let t = parse_server("127.0.0.1", Proto::HandleUdp).unwrap();
        assert_eq!(t.addr.port(), 2641);
        assert_eq!(
            parse_server("127.0.0.1", Proto::DnsUdp)
                .unwrap()
                .addr
                .port(),
            5300
        );
        let t = parse_server("https://localhost:9443/", Proto::Https).unwrap();
        assert_eq!((t.host.as_str(), t.addr.port()), ("localhost", 9443));
        assert!(t.addr.ip().is_loopback());
        let t = parse_server("http://localhost", Proto::Http).unwrap();
        assert_eq!(t.addr.port(), 8000);
        let t = parse_server("[::1]:53", Proto::DnsUdp).unwrap();
        assert_eq!((t.host.as_str(), t.addr.port()), ("::1", 53));
        assert_eq!(parse_server("::1", Proto::Http).unwrap().addr.port(), 8000);
        assert_eq!(
            parse_server("[::1]", Proto::HandleTcp).unwrap().addr.port(),
            2641
        );
        assert!(parse_server("", Proto::Http).is_err());
        assert!(parse_server("localhost:notaport", Proto::Http).is_err());
        assert!(parse_server("localhost:99999", Proto::Http).is_err());
        // A URL is only taken for the HTTP protocols.
        assert!(parse_server("http://127.0.0.1:2641", Proto::HandleUdp).is_err());
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in [
            Proto::HandleUdp,
            Proto::HandleTcp,
            Proto::DnsUdp,
            Proto::Http,
            Proto::Https,
        ] {
            assert_eq!(p.name().parse::<Proto>().unwrap(), p);
        }
        let err = "gopher".parse::<Proto>().unwrap_err();
        assert!(err.contains("http, https"), "{err}");
        assert_eq!(Proto::HandleUdp.transport(), Transport::Udp);
        assert_eq!(Proto::DnsUdp.transport(), Transport::Udp);
        assert_eq!(Proto::HandleTcp.transport(), Transport::Tcp);
        assert_eq!(Proto::Https.transport(), Transport::Tcp);
    }

    #[test]
    fn handle_paths_are_percent_encoded() {
        assert_eq!(
            http_path("88.100.1/SN-0001"),
            "/api/handles/88.100.1/SN-0001"
        );
        assert_eq!(
            http_path("88.100.1/a b?c#d%e/f"),
            "/api/handles/88.100.1/a%20b%3Fc%23d%25e/f"
        );
        assert_eq!(
            http_path("88.100.1/产品"),
            "/api/handles/88.100.1/%E4%BA%A7%E5%93%81"
        );
        // What the server's decoding gives back is the identifier.
        let id = "88.100.1/x y?&=+:@~!%";
        let path = http_path(id);
        assert!(path.parse::<Uri>().is_ok(), "{path}");
        let raw = path.strip_prefix("/api/handles/").unwrap();
        assert_eq!(
            percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .unwrap(),
            id
        );
    }

    #[test]
    fn open_loop_slots() {
        let s = Schedule {
            start: Instant::now(),
            rate: 200.0,
            next: AtomicU64::new(0),
        };
        assert_eq!(s.slots_before(Duration::from_secs(1)), 200);
        assert_eq!(s.slots_before(Duration::from_millis(1)), 1);
        assert_eq!(s.slots_before(Duration::ZERO), 0);
        let s = Schedule { rate: 3.0, ..s };
        assert_eq!(s.slots_before(Duration::from_secs(1)), 3);
        let first = s.take().unwrap();
        assert_eq!(
            s.take().unwrap() - first,
            Duration::from_secs_f64(1.0 / 3.0)
        );
        // A rate so low that the next slot is beyond any clock: never due, no panic.
        let s = Schedule { rate: 1e-300, ..s };
        assert_eq!(s.offset(1), Duration::MAX);
        assert!(s.take().is_none());
        assert_eq!(s.slots_before(Duration::from_secs(1)), 1);
    }

    #[test]
    fn cpu_time_is_read() {
        if cfg!(target_os = "linux") {
            let before = process_cpu_time().expect("/proc/self/stat is readable");
            let spin = Instant::now();
            let mut x = 0u64;
            while spin.elapsed() < Duration::from_millis(50) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            assert!(process_cpu_time().unwrap() >= before);
        }
    }

    #[test]
    fn pending_ids_match_only_the_query_in_flight() {
        let t0 = Instant::now();
        for dns in [false, true] {
            let mut p = Pending::new(3, dns);
            assert_eq!(p.slots.len(), 4);
            let ids: Vec<u32> = (0..4).map(|_| p.insert(t0).unwrap()).collect();
            assert_eq!(p.insert(t0), None, "full");
            assert_eq!(p.len(), 4);
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 4, "{ids:?}");
            assert!(ids.iter().all(|&id| id != 0 && (!dns || id <= 0xFFFF)));
            // An answer takes its query out once; a duplicate or unknown id matches nothing.
            assert_eq!(p.take(ids[1]), Some(t0));
            assert_eq!(p.take(ids[1]), None);
            assert_eq!(p.take(ids[1] ^ 0x100), None);
            // The slot is reused under a new id: a late answer to the old one does not match.
            let again = p.insert(t0).unwrap();
            assert_ne!(again, ids[1]);
            assert_eq!(again & 3, ids[1] & 3);
            assert_eq!(p.take(ids[1]), None);
            assert_eq!(p.take(again), Some(t0));
            // Timeouts free their slots.
            let later = t0 + Duration::from_secs(3);
            assert_eq!(p.expire(later, Duration::from_secs(5)), 0);
            assert_eq!(p.expire(later, Duration::from_secs(2)), 3);
            assert_eq!(p.len(), 0);
            assert_eq!(p.take(ids[0]), None);
        }
        // 16-bit DNS ids: a table of 65 536 slots hands out every id, each once.
        let mut p = Pending::new(1 << 20, true);
        let mut seen = vec![false; 1 << 16];
        while let Some(id) = p.insert(t0) {
            assert!(
                !std::mem::replace(&mut seen[id as usize], true),
                "{id} twice"
            );
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn answers_are_parsed() {
        // DNS: id 0x1234, NXDOMAIN.
        let dns = [0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_answer(true, &dns), Some((0x1234, 3)));
        assert_eq!(code_name(true, 3), "NXDOMAIN");
        assert_eq!(code_name(true, 9), "RCODE9");
        for (code, name) in [
            (0, "NOERROR"),
            (1, "FORMERR"),
            (2, "SERVFAIL"),
            (4, "NOTIMP"),
            (5, "REFUSED"),
        ] {
            assert_eq!(code_name(true, code), name);
        }
        assert_eq!(code_name(true, 15), "RCODE15");
        assert_eq!(code_name(true, 16), "RCODE16");
        assert_eq!(parse_answer(true, &dns[..3]), None);
        // Handle: envelope (request id 7, sequence 0) and header with response code 100.
        let mut handle = vec![0u8; 28];
        handle[8..12].copy_from_slice(&7u32.to_be_bytes());
        handle[24..28].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(parse_answer(false, &handle), Some((7, 100)));
        assert_eq!(code_name(false, 100), "RC100");
        // A later datagram of a multi-datagram answer is not counted again.
        handle[12..16].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(parse_answer(false, &handle), None);
        assert_eq!(parse_answer(false, &handle[..20]), None);
    }

    #[test]
    fn udp_schedule() {
        let start = Instant::now();
        let s = UdpSchedule {
            start,
            rate: 1000.0,
        };
        assert_eq!(s.due(0), Some(start));
        assert_eq!(s.due(10).unwrap() - start, Duration::from_millis(10));
        let s = UdpSchedule {
            start,
            rate: 1e-300,
        };
        assert!(s.due(1).is_none());
    }

    #[test]
    fn recursive_sets_rec_on_handle_requests() {
        let cfg = |recursive| BenchConfig {
            proto: Proto::HandleUdp,
            server: "127.0.0.1:2641".parse().unwrap(),
            host: None,
            tls: None,
            duration: Duration::from_secs(1),
            concurrency: 1,
            sockets: 1,
            rate: None,
            timeout: Duration::from_secs(1),
            ids: vec!["88.100.1/SN-1".into()],
            zipf: None,
            miss_share: 0.0,
            zone: "id.example.".into(),
            seed: 1,
            threads: None,
            recursive,
            progress: false,
        };
        for recursive in [false, true] {
            let (hits, _) = templates(&cfg(recursive)).unwrap();
            let m = Message::decode_full(&hits[0]).unwrap();
            assert_eq!(m.header.has(flag::RECURSIVE), recursive);
            assert!(m.header.has(flag::PUBLIC_ONLY));
            assert_eq!(m.header.op_code, op::RESOLUTION);
        }
        // DNS queries always have RD set.
        let mut dns = cfg(true);
        dns.proto = Proto::DnsUdp;
        let (hits, _) = templates(&dns).unwrap();
        assert_ne!(hits[0][2] & 0x01, 0, "RD");
    }

    #[test]
    fn empty_summary() {
        let s = Stats::default().summary(Proto::DnsUdp, Duration::from_secs(1));
        assert_eq!(s.queries_completed, 0);
        assert_eq!(s.p99_us, 0);
    }
}
