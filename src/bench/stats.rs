//! What a run counts and reports: per-worker [`Stats`] (merged at the end), the live
//! progress line fed by the workers, the generator's own CPU time, and the [`Summary`]
//! (dnsperf's labels plus HDR-histogram percentiles).
//!
//! Shared by every loader (`udp`, `tcp`, `http`); it knows nothing of sockets or protocols
//! beyond the label a response is counted under.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{BenchError, Proto};

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
    pub(super) fn record_latency(&mut self, latency: Duration) {
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
    pub(super) fn with_live(live: Option<&Arc<Live>>) -> Stats {
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
    pub(super) fn push_live(&mut self, now: Instant, force: bool) {
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
    pub(super) fn settle(
        &mut self,
        outcome: Result<Result<String, BenchError>, tokio::time::error::Elapsed>,
        since: Instant,
        timeout: Duration,
    ) -> bool {
        match outcome {
            Ok(Ok(label)) => {
                self.record(Instant::now().saturating_duration_since(since), label);
                true
            }
            Ok(Err(e)) => {
                self.lose(|| e.with_causes());
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
pub(super) struct Live(Mutex<LiveTotals>);

#[derive(Debug)]
struct LiveTotals {
    sent: u64,
    completed: u64,
    lost: u64,
    /// Latency in µs, 2 significant digits (small, so pushing is cheap).
    hist: Histogram<u64>,
}

impl Live {
    pub(super) fn new() -> Live {
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
        crate::lock::lock(&self.0)
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
pub(super) async fn progress_line(live: Arc<Live>, start: Instant, duration: Duration) {
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
