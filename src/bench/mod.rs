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
//!
//! The files: `config` (what to run: [`Proto`], [`BenchConfig`], `--server` parsing,
//! identifiers and their popularity), `stats` (counting, the live progress line, the
//! [`Summary`]), `udp` (closed and open loop over UDP, the pending-slot table), `tcp`
//! (Handle over TCP), `http` (the HTTP API); here the entry point [`run`], the requests every
//! datagram loader sends, what every loader starts from (`Run`: the configuration, the
//! requests and each worker's seeded `Draw` of them), `run_connections` and the open-loop
//! schedule (`Pace`, `Schedule`) the connection loaders share, and [`BenchError`]. `anyhow`
//! stays in `main.rs`: the library's errors are typed.

use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message as DnsMessage, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use hyper::Uri;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::{Handle, HandleError, SuffixCase, Transport};
use crate::wire::dns::{BadName, MappingError, Zone};
use crate::wire::handle::message::{flag, op, Body, Message};

mod config;
mod http;
mod stats;
mod tcp;
mod udp;

pub use config::{
    generate_ids, parse_server, system_ca_bundle, BenchConfig, Proto, Sampler, ServerTarget,
    MAX_RATE,
};
pub use http::{basic_authorization, http_path};
pub use stats::{process_cpu_time, Stats, Summary};
pub use udp::UDP_BATCH;

use http::{http_uris, run_http, HttpTarget};
use stats::{progress_line, Live};
use tcp::run_tcp;
use udp::run_udp;

/// Why a run could not start, or why one exchange failed (those are counted as lost, and the
/// first one is the summary's `first_error`).
///
/// Messages name what was wrong in the user's terms (the `--server` text, the identifier, the
/// option); errors of the libraries below are shown through (`transparent`) so an error
/// chain prints each cause once.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    // `--server`
    #[error("empty server address {0:?}")]
    EmptyServer(String),
    #[error("server address {text:?}: bad port {port:?}")]
    BadPort { text: String, port: String },
    /// Looking the host name up failed (the error is part of the message).
    #[error("server address {text:?}: {error}")]
    Lookup { text: String, error: std::io::Error },
    #[error("server address {0:?} resolves to no address")]
    NoAddress(String),

    // `--suffix-format`
    #[error("suffix format needs a {{}} placeholder")]
    NoPlaceholder,
    #[error("unclosed {{ in suffix format")]
    UnclosedPlaceholder,
    #[error("placeholder must be {{}} or {{:0W}}, not {{{0}}}")]
    BadPlaceholder(String),

    // Settings `run` refuses
    #[error("no identifiers to query")]
    NoIds,
    #[error("sockets and concurrency must be > 0")]
    ZeroWorkers,
    #[error("at most 65536 sockets and a concurrency of 1000000")]
    TooManyWorkers,
    #[error("--rate must be a positive number of queries per second, at most {max}", max = MAX_RATE)]
    BadRate,
    /// `--recursive` with a protocol it does not apply to (its name).
    #[error(
        "--recursive applies to handle-udp and handle-tcp (dns-udp always sets RD), not to {0}"
    )]
    RecursiveNotApplicable(&'static str),

    // Requests that cannot be built
    #[error("zone {zone}: {error}")]
    Zone { zone: String, error: BadName },
    #[error("{id}: {error}")]
    Identifier { id: String, error: HandleError },
    #[error("{id}: no DNS name: {error}")]
    NoDnsName { id: String, error: MappingError },
    /// Encoding a DNS query failed.
    #[error(transparent)]
    Dns(#[from] hickory_proto::ProtoError),
    #[error("{id}: not usable in a URL: {error}")]
    NotInUrl {
        id: String,
        error: hyper::http::uri::InvalidUri,
    },
    #[error("{0:?} is not usable as an HTTP Host")]
    BadHost(String),
    #[error("https needs a TLS client configuration")]
    NoTlsConfig,
    #[error("{name:?} is not a TLS server name: {error}")]
    BadTlsName {
        name: String,
        error: rustls::pki_types::InvalidDnsNameError,
    },

    // Running
    /// Sockets, threads, runtimes, connections.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    HttpRequest(#[from] hyper::http::Error),
    /// A Handle TCP response whose envelope announces more than the protocol allows.
    #[error("response too long")]
    ResponseTooLong,
    #[error("a UDP load thread panicked")]
    ThreadPanicked,
    /// A load task panicked or was cancelled.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
}

impl BenchError {
    /// The message with its causes, `outer: inner: …` (as an error chain prints with `{:#}`),
    /// for [`Summary::first_error`].
    fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
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
fn templates(cfg: &BenchConfig) -> Result<(Datagrams, Datagrams), BenchError> {
    let zone = match cfg.proto {
        Proto::DnsUdp => Some(
            Zone::new(&cfg.zone, SuffixCase::Sensitive).map_err(|error| BenchError::Zone {
                zone: cfg.zone.clone(),
                error,
            })?,
        ),
        Proto::HandleUdp | Proto::HandleTcp | Proto::Http | Proto::Https => None,
    };
    let encode = |id: &str| -> Result<Vec<u8>, BenchError> {
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
                let handle = Handle::parse(id, SuffixCase::Sensitive).map_err(|error| {
                    BenchError::Identifier {
                        id: id.to_string(),
                        error,
                    }
                })?;
                let name = zone
                    .name_of(&handle)
                    .map_err(|error| BenchError::NoDnsName {
                        id: id.to_string(),
                        error,
                    })?;
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
    make: impl Fn(&str) -> Result<T, BenchError>,
) -> Result<(Vec<T>, Vec<T>), BenchError> {
    let hits = cfg
        .ids
        .iter()
        .map(|id| make(id))
        .collect::<Result<Vec<_>, _>>()?;
    let misses = if cfg.miss_share > 0.0 {
        (0..cfg.ids.len().min(10_000))
            .map(|i| make(&format!("{}-nx{i}", cfg.ids[i])))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    Ok((hits, misses))
}

/// Run the load and return the summary.
pub async fn run(cfg: &BenchConfig) -> Result<Summary, BenchError> {
    if cfg.ids.is_empty() {
        return Err(BenchError::NoIds);
    }
    if cfg.sockets == 0 || cfg.concurrency == 0 {
        return Err(BenchError::ZeroWorkers);
    }
    if cfg.sockets > 65_536 || cfg.concurrency > 1_000_000 {
        return Err(BenchError::TooManyWorkers);
    }
    if let Some(rate) = cfg.rate {
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
            return Err(BenchError::BadRate);
        }
    }
    if cfg.recursive && cfg.proto.is_http() {
        return Err(BenchError::RecursiveNotApplicable(cfg.proto.name()));
    }

    let sampler = Arc::new(Sampler::new(cfg.ids.len(), cfg.zipf));
    let live = cfg.progress.then(|| Arc::new(Live::new()));
    // Requests are encoded (and TLS set up) before the clock and the CPU meter start.
    enum Prepared {
        Datagrams(Requests<Vec<u8>>),
        Http(Arc<HttpTarget>, Requests<Uri>),
    }
    let prepared = if cfg.proto.is_http() {
        let requests = Requests::new(http_uris(cfg)?, sampler);
        Prepared::Http(Arc::new(HttpTarget::new(cfg)?), requests)
    } else {
        Prepared::Datagrams(Requests::new(templates(cfg)?, sampler))
    };
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    let printer = live
        .clone()
        .map(|live| tokio::spawn(progress_line(live, start, cfg.duration)));
    let live = live.as_ref();
    let result = match prepared {
        Prepared::Http(target, requests) => {
            run_http(&Run::new(cfg, requests, start, live), target).await
        }
        // Native Handle requests over TCP (DNS is UDP only here).
        Prepared::Datagrams(requests) if cfg.proto.transport() == Transport::Tcp => {
            run_tcp(&Run::new(cfg, requests, start, live)).await
        }
        Prepared::Datagrams(requests) => run_udp(&Run::new(cfg, requests, start, live)).await,
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

/// What a run sends: the requests for the identifiers that exist, drawn with the sampler's
/// popularity, and those for misses, drawn uniformly for a `miss_share` of the draws.
struct Requests<T> {
    hits: Arc<Vec<T>>,
    misses: Arc<Vec<T>>,
    sampler: Arc<Sampler>,
}

impl<T> Requests<T> {
    fn new((hits, misses): (Vec<T>, Vec<T>), sampler: Arc<Sampler>) -> Requests<T> {
        Requests {
            hits: Arc::new(hits),
            misses: Arc::new(misses),
            sampler,
        }
    }
}

/// One worker's draws from a run's [`Requests`], with its own seeded generator.
struct Draw<T> {
    hits: Arc<Vec<T>>,
    misses: Arc<Vec<T>>,
    sampler: Arc<Sampler>,
    miss_share: f64,
    rng: StdRng,
}

impl<T> Draw<T> {
    /// The next request to send.
    fn next(&mut self) -> &T {
        if !self.misses.is_empty() && self.rng.gen::<f64>() < self.miss_share {
            &self.misses[self.rng.gen_range(0..self.misses.len())]
        } else {
            &self.hits[self.sampler.sample(&mut self.rng)]
        }
    }
}

/// A run as every loader (UDP, TCP, HTTP) sets out: its configuration, what it sends, when
/// the clock started and the live progress counters, if shown.
struct Run<'a, T> {
    cfg: &'a BenchConfig,
    requests: Requests<T>,
    start: Instant,
    live: Option<&'a Arc<Live>>,
}

impl<'a, T> Run<'a, T> {
    fn new(
        cfg: &'a BenchConfig,
        requests: Requests<T>,
        start: Instant,
        live: Option<&'a Arc<Live>>,
    ) -> Run<'a, T> {
        Run {
            cfg,
            requests,
            start,
            live,
        }
    }

    /// When sending stops.
    fn end(&self) -> Instant {
        self.start + self.cfg.duration
    }

    /// The draws of worker `i` (seeded with the run's seed plus `i`).
    fn draw(&self, i: usize) -> Draw<T> {
        Draw {
            hits: self.requests.hits.clone(),
            misses: self.requests.misses.clone(),
            sampler: self.requests.sampler.clone(),
            miss_share: self.cfg.miss_share,
            rng: StdRng::seed_from_u64(self.cfg.seed.wrapping_add(i as u64)),
        }
    }

    /// A worker's counters (feeding the live progress line when there is one).
    fn stats(&self) -> Stats {
        Stats::with_live(self.live)
    }
}

/// The connection loaders' run (TCP, HTTP): `concurrency` tasks, worker `i` made by `worker`
/// from its draws and the run's [`Pace`], and what they counted added up (the schedule's
/// slots they never got to counted as lost).
async fn run_connections<T, F>(
    run: &Run<'_, T>,
    worker: impl Fn(Draw<T>, Pace, Stats) -> F,
) -> Result<(Stats, Duration), BenchError>
where
    F: Future<Output = Stats> + Send + 'static,
{
    let schedule = Schedule::for_rate(run.cfg.rate, run.start);
    let tasks = (0..run.cfg.concurrency)
        .map(|i| {
            let pace = Pace {
                end: run.end(),
                schedule: schedule.clone(),
            };
            tokio::spawn(worker(run.draw(i), pace, run.stats()))
        })
        .collect();
    Schedule::total_of(tasks, schedule.as_deref(), run.cfg.duration).await
}

/// When a connection worker sends: until the end of the run, at once (closed loop) or at
/// the next slot of the schedule the connections share (open loop).
struct Pace {
    end: Instant,
    schedule: Option<Arc<Schedule>>,
}

impl Pace {
    /// Update the live counters and wait for the worker's next turn: the time its latency
    /// counts from ([`Schedule::turn`]), `None` when the run is over.
    async fn turn(&self, stats: &mut Stats) -> Option<Instant> {
        let now = Instant::now();
        stats.push_live(now, false);
        if now >= self.end {
            return None;
        }
        Schedule::turn(self.schedule.as_deref(), now, self.end).await
    }
}

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

    /// Wait for the connection workers of one run and add up what they counted, with the
    /// slots they never got to as lost (the TCP and HTTP runs end this way).
    async fn total_of(
        tasks: Vec<tokio::task::JoinHandle<Stats>>,
        schedule: Option<&Schedule>,
        duration: Duration,
    ) -> Result<(Stats, Duration), BenchError> {
        let mut total = Stats::default();
        for t in tasks {
            total.merge(&t.await?);
        }
        Schedule::count_unsent(schedule, duration, &mut total);
        Ok((total, duration))
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

#[cfg(test)]
mod tests;
