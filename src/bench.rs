//! `idnode bench`: a load generator for idnode's native Handle front end (UDP and TCP) and
//! DNS over UDP, with dnsperf-style output plus HDR-histogram latency percentiles.
//!
//! One tokio task per source socket sends and receives; responses are matched to requests by
//! the Handle request id or the DNS id. Closed loop (default): each socket keeps its share of
//! `concurrency` requests outstanding. Open loop (`rate`): requests leave at fixed scheduled
//! times and latency is measured from the scheduled time, so a slow server is not hidden by
//! coordinated omission. Requests unanswered after `timeout` count as lost. Handle over TCP:
//! `concurrency` connections, each with one request outstanding (closed loop only).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hickory_proto::op::{Message as DnsMessage, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::UdpSocket;

use crate::model::{Handle, SuffixCase};
use crate::wire::dns::Zone;
use crate::wire::handle::message::{flag, op, Body, Message};

/// Which front end to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    HandleUdp,
    HandleTcp,
    DnsUdp,
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "handle-udp" => Ok(Proto::HandleUdp),
            "handle-tcp" => Ok(Proto::HandleTcp),
            "dns-udp" => Ok(Proto::DnsUdp),
            other => Err(format!(
                "unsupported protocol {other:?} (supported: handle-udp, handle-tcp, dns-udp)"
            )),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub proto: Proto,
    pub server: SocketAddr,
    pub duration: Duration,
    /// Requests outstanding in total (closed loop); the in-flight cap in open loop.
    pub concurrency: usize,
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
        }
    }
}

impl Stats {
    pub fn record(&mut self, latency: Duration, rcode: String) {
        self.completed += 1;
        *self.rcodes.entry(rcode).or_default() += 1;
        let s = latency.as_secs_f64();
        self.sum_s += s;
        self.sum_sq_s += s * s;
        self.hist
            .saturating_record((latency.as_micros() as u64).max(1));
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
            protocol: match proto {
                Proto::HandleUdp => "handle-udp",
                Proto::HandleTcp => "handle-tcp",
                Proto::DnsUdp => "dns-udp",
            },
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
        }
    }
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
        write!(
            f,
            "  Latency (us):         p50 {} p90 {} p99 {} p99.9 {} max {}",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}

/// Encoded request datagrams.
type Datagrams = Vec<Vec<u8>>;

/// Encoded requests (id field zero) for the identifiers that exist and for misses.
fn templates(cfg: &BenchConfig) -> anyhow::Result<(Datagrams, Datagrams)> {
    let zone = match cfg.proto {
        Proto::DnsUdp => Some(
            Zone::new(&cfg.zone, SuffixCase::Sensitive)
                .map_err(|e| anyhow::anyhow!("zone {}: {e}", cfg.zone))?,
        ),
        Proto::HandleUdp | Proto::HandleTcp => None,
    };
    let encode = |id: &str| -> anyhow::Result<Vec<u8>> {
        match &zone {
            None => Ok(Message::request(
                op::RESOLUTION,
                flag::PUBLIC_ONLY,
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
    let hits = cfg
        .ids
        .iter()
        .map(|id| encode(id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let misses = if cfg.miss_share > 0.0 {
        (0..cfg.ids.len().min(10_000))
            .map(|i| encode(&format!("{}-nx{i}", cfg.ids[i])))
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
    let (hits, misses) = templates(cfg)?;
    let hits = Arc::new(hits);
    let misses = Arc::new(misses);
    let sampler = Arc::new(Sampler::new(hits.len(), cfg.zipf));
    let start = Instant::now();
    let end = start + cfg.duration;
    if cfg.proto == Proto::HandleTcp {
        anyhow::ensure!(cfg.rate.is_none(), "--rate is not supported for handle-tcp");
        let mut tasks = Vec::new();
        for i in 0..cfg.concurrency {
            let (hits, misses, sampler) = (hits.clone(), misses.clone(), sampler.clone());
            let rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(i as u64));
            let (server, timeout, miss_share) = (cfg.server, cfg.timeout, cfg.miss_share);
            tasks.push(tokio::spawn(async move {
                tcp_worker(server, hits, misses, sampler, miss_share, rng, end, timeout).await
            }));
        }
        let mut total = Stats::default();
        for t in tasks {
            total.merge(&t.await??);
        }
        return Ok(total.summary(cfg.proto, cfg.duration));
    }
    let sockets = cfg.sockets.min(cfg.concurrency);
    let mut tasks = Vec::new();
    for i in 0..sockets {
        let bind: SocketAddr = if cfg.server.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(cfg.server).await?;
        let window = cfg.concurrency / sockets + usize::from(i < cfg.concurrency % sockets);
        let worker = Worker {
            sock,
            proto: cfg.proto,
            hits: hits.clone(),
            misses: misses.clone(),
            sampler: sampler.clone(),
            miss_share: cfg.miss_share,
            window: if cfg.proto == Proto::DnsUdp {
                window.min(60_000)
            } else {
                window
            },
            interval: cfg
                .rate
                .map(|r| Duration::from_secs_f64(sockets as f64 / r.max(1e-3))),
            start,
            end,
            timeout: cfg.timeout,
            rng: StdRng::seed_from_u64(cfg.seed.wrapping_add(i as u64)),
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut total = Stats::default();
    for t in tasks {
        total.merge(&t.await??);
    }
    Ok(total.summary(
        cfg.proto,
        cfg.duration.max(start.elapsed().min(cfg.duration)),
    ))
}

/// One TCP connection with one request outstanding (closed loop); reconnects after errors.
#[allow(clippy::too_many_arguments)]
async fn tcp_worker(
    server: SocketAddr,
    hits: Arc<Datagrams>,
    misses: Arc<Datagrams>,
    sampler: Arc<Sampler>,
    miss_share: f64,
    mut rng: StdRng,
    end: Instant,
    timeout: Duration,
) -> anyhow::Result<Stats> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stats = Stats::default();
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut next_id: u32 = rng.gen();
    let mut scratch = Vec::with_capacity(512);
    let mut body = Vec::with_capacity(4096);
    while Instant::now() < end {
        let template = if !misses.is_empty() && rng.gen::<f64>() < miss_share {
            &misses[rng.gen_range(0..misses.len())]
        } else {
            &hits[sampler.sample(&mut rng)]
        };
        next_id = next_id.wrapping_add(1);
        scratch.clear();
        scratch.extend_from_slice(template);
        scratch[8..12].copy_from_slice(&next_id.to_be_bytes());
        stats.sent += 1;
        let sent = Instant::now();
        let exchange = async {
            if conn.is_none() {
                let s = tokio::net::TcpStream::connect(server).await?;
                s.set_nodelay(true)?;
                conn = Some(s);
            }
            let s = conn.as_mut().expect("connected");
            s.write_all(&scratch).await?;
            loop {
                let mut env = [0u8; 20];
                s.read_exact(&mut env).await?;
                let len = u32::from_be_bytes(env[16..20].try_into().expect("4 bytes")) as usize;
                anyhow::ensure!(len <= 262_144, "response too long");
                body.resize(len, 0);
                s.read_exact(&mut body).await?;
                let id = u32::from_be_bytes(env[8..12].try_into().expect("4 bytes"));
                if id == next_id && body.len() >= 8 {
                    let rc = u32::from_be_bytes(body[4..8].try_into().expect("4 bytes"));
                    return Ok::<u32, anyhow::Error>(rc);
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(rc)) => stats.record(sent.elapsed(), format!("RC{rc}")),
            _ => {
                stats.lost += 1;
                conn = None;
            }
        }
    }
    Ok(stats)
}

struct Worker {
    sock: UdpSocket,
    proto: Proto,
    hits: Arc<Vec<Vec<u8>>>,
    misses: Arc<Vec<Vec<u8>>>,
    sampler: Arc<Sampler>,
    miss_share: f64,
    window: usize,
    interval: Option<Duration>,
    start: Instant,
    end: Instant,
    timeout: Duration,
    rng: StdRng,
}

impl Worker {
    async fn send(
        &mut self,
        inflight: &mut HashMap<u32, Instant>,
        next_id: &mut u32,
        at: Instant,
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) {
        let template = if !self.misses.is_empty() && self.rng.gen::<f64>() < self.miss_share {
            &self.misses[self.rng.gen_range(0..self.misses.len())]
        } else {
            &self.hits[self.sampler.sample(&mut self.rng)]
        };
        scratch.clear();
        scratch.extend_from_slice(template);
        let id = loop {
            *next_id = next_id.wrapping_add(1);
            let id = match self.proto {
                Proto::HandleUdp | Proto::HandleTcp => *next_id,
                Proto::DnsUdp => *next_id & 0xFFFF,
            };
            if !inflight.contains_key(&id) {
                break id;
            }
        };
        match self.proto {
            Proto::HandleUdp | Proto::HandleTcp => {
                scratch[8..12].copy_from_slice(&id.to_be_bytes())
            }
            Proto::DnsUdp => scratch[0..2].copy_from_slice(&(id as u16).to_be_bytes()),
        }
        stats.sent += 1;
        inflight.insert(id, at);
        // A failed send is left to time out and counted as lost.
        let _ = self.sock.send(scratch).await;
    }

    /// Request id and response code name of a response datagram.
    fn parse(&self, d: &[u8]) -> Option<(u32, String)> {
        match self.proto {
            Proto::HandleUdp | Proto::HandleTcp => {
                let id = u32::from_be_bytes(d.get(8..12)?.try_into().ok()?);
                let seq = u32::from_be_bytes(d.get(12..16)?.try_into().ok()?);
                if seq != 0 {
                    return None; // later fragments of a multi-datagram answer
                }
                let rc = u32::from_be_bytes(d.get(24..28)?.try_into().ok()?);
                Some((id, format!("RC{rc}")))
            }
            Proto::DnsUdp => {
                let id = u16::from_be_bytes(d.get(0..2)?.try_into().ok()?) as u32;
                let rcode = d.get(3)? & 0x0F;
                let name = match rcode {
                    0 => "NOERROR".to_string(),
                    1 => "FORMERR".to_string(),
                    2 => "SERVFAIL".to_string(),
                    3 => "NXDOMAIN".to_string(),
                    4 => "NOTIMP".to_string(),
                    5 => "REFUSED".to_string(),
                    n => format!("RCODE{n}"),
                };
                Some((id, name))
            }
        }
    }

    async fn run(mut self) -> anyhow::Result<Stats> {
        let mut stats = Stats::default();
        let mut inflight: HashMap<u32, Instant> = HashMap::with_capacity(self.window * 2);
        let mut next_id: u32 = self.rng.gen();
        let mut next_send = self.start;
        let mut next_sweep = self.start + Duration::from_millis(50);
        let mut scratch = Vec::with_capacity(512);
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if now < self.end {
                match self.interval {
                    None => {
                        while inflight.len() < self.window {
                            self.send(&mut inflight, &mut next_id, now, &mut scratch, &mut stats)
                                .await;
                        }
                    }
                    Some(interval) => {
                        while next_send <= now && next_send < self.end {
                            if inflight.len() < self.window.max(1) * 64 {
                                self.send(
                                    &mut inflight,
                                    &mut next_id,
                                    next_send,
                                    &mut scratch,
                                    &mut stats,
                                )
                                .await;
                            } else {
                                // Cannot track more: offered but not sent, counted lost.
                                stats.sent += 1;
                                stats.lost += 1;
                            }
                            next_send += interval;
                        }
                    }
                }
            } else if inflight.is_empty() {
                break;
            }
            if now >= next_sweep {
                let timeout = self.timeout;
                let before = inflight.len();
                inflight.retain(|_, sent| now.duration_since(*sent) < timeout);
                stats.lost += (before - inflight.len()) as u64;
                next_sweep = now + Duration::from_millis(50);
            }
            let mut wake = next_sweep;
            if now < self.end {
                wake = wake.min(self.end);
                if self.interval.is_some() {
                    wake = wake.min(next_send.max(now));
                }
            }
            tokio::select! {
                r = self.sock.recv(&mut buf) => {
                    if let Ok(n) = r {
                        if let Some((id, rcode)) = self.parse(&buf[..n]) {
                            if let Some(sent) = inflight.remove(&id) {
                                stats.record(Instant::now().saturating_duration_since(sent), rcode);
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        Ok(stats)
    }
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
    fn empty_summary() {
        let s = Stats::default().summary(Proto::DnsUdp, Duration::from_secs(1));
        assert_eq!(s.queries_completed, 0);
        assert_eq!(s.p99_us, 0);
    }
}
