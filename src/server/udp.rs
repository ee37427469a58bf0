//! The datagram engine shared by the DNS and native Handle UDP front ends: the techniques of
//! the fastest C DNS servers, in safe Rust.
//!
//! - **One socket per worker thread** ([`bind_group`]): `SO_REUSEPORT` sockets on the same
//!   address, so the kernel spreads clients across workers by their address and port, with no
//!   shared socket lock. Each worker is a plain thread blocked in the kernel; tokio only runs
//!   the rare queries that wait on other servers (recursion).
//! - **Batched system calls** ([`batch`]): on Linux a worker receives up to [`BATCH`]
//!   datagrams with one `recvmmsg` and sends all their answers with one `sendmmsg` (through
//!   `nix`, so this crate keeps `#![forbid(unsafe_code)]`). Elsewhere it falls back to one
//!   `recv_from`/`send_to` per datagram.
//! - **Prepared answers** ([`HotAnswers`]): each worker keeps the encoded answers it sent,
//!   keyed by the request's bytes (minus the request id and, for Handle, the expiration the
//!   client stamps on it). A repeated request is answered by copying the bytes and patching
//!   the id (and the Handle expiration): no decoding, no lookup, no allocation and no lock.
//!   Answers from the node's own registry are replayed until the registry changes (its
//!   change-log sequence moves); answers relayed from upstream for their TTL, at most
//!   [`RELAYED_REUSE_SECS`]; answers that depend on the clock (absolute Handle TTLs in DNS)
//!   are never replayed.
//! - Buffers are allocated once per worker and reused.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use socket2::{Domain, Protocol, Socket, Type};

use super::rrl::{RateLimitSettings, RateLimiter, Verdict};
use tokio::sync::watch;

pub mod batch;

/// Datagrams received (and answers sent) per system call.
pub use batch::BATCH;
/// Largest request datagram handled; longer ones are dropped. DNS queries and Handle UDP
/// fragments (20 + 492 bytes) are far smaller.
pub const MAX_REQUEST: usize = 4096;
/// Longest time an answer relayed from another server is replayed from [`HotAnswers`] (it is
/// also never replayed past its cache entry's freshness; DNS TTLs count down as it ages). The
/// bound keeps a worker's copy from outliving a fresher answer the recursor fetched after
/// evicting its entry by more than this.
pub const RELAYED_REUSE_SECS: u64 = 300;
/// How often a blocked worker wakes up to check for shutdown.
const WAKE_EVERY: Duration = Duration::from_millis(200);
/// Kernel receive and send buffers asked for each socket (Linux caps them at `rmem_max` /
/// `wmem_max` unless raised).
const SOCKET_BUFFER: usize = 4 << 20;

/// How long an encoded answer may be replayed for the same request bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Not at all.
    Never,
    /// Until the registry changes (its newest change-log sequence moves).
    UntilChange,
    /// Until what the request's answer depends on is written: its key's
    /// [`DatagramService::answer_stamp`] moves (a write of that handle, or a structural one).
    UntilWritten,
    /// Until this unix time (seconds).
    Until(u64),
}

/// What a service did with one datagram.
pub enum Handled<J> {
    /// Zero or more datagrams were queued on the [`Replies`]; when exactly one was queued
    /// for a request that has a cache key, `Reuse` says whether it may be replayed.
    Answered(Reuse),
    /// The request waits on other servers: the job runs on the tokio runtime.
    Recurse(J),
}

/// A protocol served by [`run_worker`].
pub trait DatagramService: Send + Sync + 'static {
    /// Per-worker state (reassembly buffers, metric handles).
    type State: Send;
    /// A request waiting for recursion.
    type Job: Send + 'static;

    fn new_state(&self) -> Self::State;

    /// Write into `key` the bytes identifying requests whose answers are interchangeable
    /// (after [`DatagramService::patch`]), or return false when `request` is not cacheable.
    fn cache_key(&self, request: &[u8], key: &mut Vec<u8>) -> bool;

    /// Copy a cached `answer` into `out`, made into the answer to `request`. `age_secs` is
    /// how long ago a relayed answer ([`Reuse::Until`]) was prepared (0 for answers from the
    /// node's own data); `now_unix` is the current unix time.
    fn patch(&self, request: &[u8], answer: &[u8], age_secs: u64, now_unix: u64, out: &mut Vec<u8>);

    /// Count an answer replayed from the cache.
    fn count_replay(&self, state: &mut Self::State, answer: &[u8], started: Instant);

    /// The registry's change-log sequence: cached answers marked [`Reuse::UntilChange`]
    /// are valid while it stays the same.
    fn epoch(&self) -> u64;

    /// The stamp of what answers to requests with cache key `key` depend on: answers marked
    /// [`Reuse::UntilWritten`] are valid while it stays the same. Read before the answer is
    /// computed. By default the registry's sequence (any write retires them).
    fn answer_stamp(&self, _key: &[u8]) -> u64 {
        self.epoch()
    }

    /// Whether answers relayed from other servers (recursion jobs, [`Reuse::Until`]) may be
    /// replayed to `peer`; a peer refused recursion gets its request handled afresh.
    fn replays_relayed_to(&self, _peer: SocketAddr) -> bool {
        true
    }

    /// Write into `out` a short answer telling the sender of `request` to ask again over
    /// TCP (response-rate limiting's "slip": a real client recovers, a spoofed victim gets
    /// no more bytes than the request had); false when `request` deserves none.
    fn slip(&self, _request: &[u8], _out: &mut Vec<u8>) -> bool {
        false
    }

    /// Handle one datagram from `peer`, queueing answers on `replies`.
    fn handle(
        &self,
        state: &mut Self::State,
        request: &[u8],
        peer: SocketAddr,
        now: Instant,
        replies: &mut Replies,
    ) -> Handled<Self::Job>;

    /// Answer a recursion job: the datagrams to send and whether the (single) answer may be
    /// replayed.
    fn run_job(
        self: Arc<Self>,
        job: Self::Job,
    ) -> impl std::future::Future<Output = (Vec<Vec<u8>>, Reuse)> + Send;
}

/// Answers queued during one batch, sent together. Buffers are reused across batches.
#[derive(Default)]
pub struct Replies {
    items: Vec<(SocketAddr, Vec<u8>)>,
    len: usize,
}

impl Replies {
    /// A cleared buffer for the next datagram to `peer`.
    pub fn next(&mut self, peer: SocketAddr) -> &mut Vec<u8> {
        if self.len == self.items.len() {
            self.items.push((peer, Vec::with_capacity(512)));
        }
        let i = self.len;
        self.len += 1;
        let (p, buf) = &mut self.items[i];
        *p = peer;
        buf.clear();
        buf
    }

    /// Drop the datagram most recently added (when it turned out there is nothing to send).
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// Drop every datagram queued after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes of the datagrams queued after the first `from`.
    pub fn bytes_since(&self, from: usize) -> usize {
        self.items[from.min(self.len)..self.len]
            .iter()
            .map(|(_, d)| d.len())
            .sum()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn last(&self) -> Option<&[u8]> {
        self.len.checked_sub(1).map(|i| self.items[i].1.as_slice())
    }

    fn queued(&self) -> &[(SocketAddr, Vec<u8>)] {
        &self.items[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

struct HotEntry {
    answer: Box<[u8]>,
    reuse: Reuse,
    /// The epoch ([`Reuse::UntilChange`]) or the answer stamp ([`Reuse::UntilWritten`]) it
    /// was computed at.
    epoch: u64,
    /// Unix seconds when the answer was prepared.
    prepared: u64,
}

/// What a prepared answer is checked against: the registry's epoch, the time, and (read
/// only when needed) the request key's answer stamp.
pub struct Validity<F> {
    pub epoch: u64,
    pub now_unix: u64,
    pub stamp: F,
}

/// A worker's prepared answers: a bounded map from request bytes to encoded answers.
///
/// Eviction is by generations: new entries go into the young map; when it holds half the
/// capacity, the old map is dropped and the young one becomes old. Entries found in the old
/// map move back to the young one, so what is asked often stays (an LRU approximation with
/// no per-entry bookkeeping).
pub struct HotAnswers {
    young: HashMap<Box<[u8]>, HotEntry>,
    old: HashMap<Box<[u8]>, HotEntry>,
    half: usize,
}

impl HotAnswers {
    /// A cache of at most `capacity` answers (0 disables it).
    pub fn new(capacity: usize) -> HotAnswers {
        HotAnswers {
            young: HashMap::new(),
            old: HashMap::new(),
            half: capacity / 2,
        }
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fresh(entry: &HotEntry, at: &mut Validity<impl FnMut() -> u64>) -> bool {
        match entry.reuse {
            Reuse::Never => false,
            Reuse::UntilChange => entry.epoch == at.epoch,
            Reuse::UntilWritten => entry.epoch == (at.stamp)(),
            Reuse::Until(t) => at.now_unix < t,
        }
    }

    /// The answer stored under `key`, if still valid at `epoch`, `stamp` (the key's answer
    /// stamp) and `now_unix`, with its age in seconds for [`Reuse::Until`] answers (0 for the
    /// others, which do not age).
    pub fn get(
        &mut self,
        key: &[u8],
        epoch: u64,
        stamp: u64,
        now_unix: u64,
    ) -> Option<(&[u8], u64)> {
        let at = Validity {
            epoch,
            now_unix,
            stamp: || stamp,
        };
        self.get_for(key, at, || true)
    }

    /// [`HotAnswers::get`], where a relayed answer ([`Reuse::Until`]) is found only if
    /// `relayed_ok()` says so (asked only for such an answer), and the key's answer stamp is
    /// read only for an answer that depends on it.
    pub fn get_for(
        &mut self,
        key: &[u8],
        mut at: Validity<impl FnMut() -> u64>,
        relayed_ok: impl FnOnce() -> bool,
    ) -> Option<(&[u8], u64)> {
        if self.half == 0 {
            return None;
        }
        if !self.young.contains_key(key) {
            let (k, entry) = self.old.remove_entry(key)?;
            if !Self::fresh(&entry, &mut at) {
                return None;
            }
            self.make_room();
            self.young.insert(k, entry);
        }
        // A stale entry stays until the fresh answer replaces it.
        let entry = self.young.get(key)?;
        if matches!(entry.reuse, Reuse::Until(_)) && !relayed_ok() {
            return None;
        }
        let age = match entry.reuse {
            Reuse::Until(_) => at.now_unix.saturating_sub(entry.prepared),
            _ => 0,
        };
        Self::fresh(entry, &mut at).then_some((&*entry.answer, age))
    }

    /// Keep `answer`, prepared at unix second `prepared`, for requests with `key`; `epoch` is
    /// the epoch or the answer stamp (as `reuse` says) read before it was computed.
    pub fn insert(&mut self, key: &[u8], answer: &[u8], reuse: Reuse, epoch: u64, prepared: u64) {
        if self.half == 0 || reuse == Reuse::Never {
            return;
        }
        self.make_room();
        self.young.insert(
            key.into(),
            HotEntry {
                answer: answer.into(),
                reuse,
                epoch,
                prepared,
            },
        );
    }

    fn make_room(&mut self) {
        if self.young.len() >= self.half {
            self.old = std::mem::take(&mut self.young);
        }
    }
}

/// Bind `count` UDP sockets to `addr` with `SO_REUSEPORT` (port 0 picks one port for all).
/// The sockets are blocking, with a receive timeout so workers notice shutdown.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let mut sockets = Vec::with_capacity(count.max(1));
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        socket.set_reuse_port(true)?;
        // Best effort: the kernel may cap the sizes.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        socket.set_read_timeout(Some(WAKE_EVERY))?;
        let std_socket: std::net::UdpSocket = socket.into();
        if addr.port() == 0 {
            addr = std_socket.local_addr()?;
        }
        sockets.push(std_socket);
    }
    Ok(sockets)
}

/// Threads to run for a front end: `configured`, or one per core (at most 4) when 0.
pub fn thread_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Response-rate limiting of one front end: the settings each worker's [`RateLimiter`] starts
/// from, and the counters of withheld answers.
#[derive(Clone)]
pub struct RateLimit {
    pub settings: RateLimitSettings,
    pub dropped: IntCounter,
    pub slipped: IntCounter,
}

impl RateLimit {
    /// Limits with `settings`, counted in `idnode_rate_limited_total{proto}`.
    pub fn new(
        settings: RateLimitSettings,
        metrics: &crate::metrics::Metrics,
        proto: &str,
    ) -> Self {
        RateLimit {
            settings,
            dropped: metrics.rate_limited.with_label_values(&[proto, "drop"]),
            slipped: metrics.rate_limited.with_label_values(&[proto, "slip"]),
        }
    }

    /// Each of `workers` workers' share: the refill rates divided among them (a network's
    /// datagrams spread over the sockets by port), the bucket depth kept, so together they
    /// refill at the configured rate and one worker can still pass the largest answer.
    pub fn shared_by(&self, workers: usize) -> RateLimit {
        let n = workers.max(1) as u64;
        let mut settings = self.settings.clone();
        let capacity_answers =
            u64::from(settings.responses_per_second) * u64::from(settings.burst_secs.max(1));
        settings.responses_per_second =
            (u64::from(settings.responses_per_second) / n).max(1) as u32;
        settings.bytes_per_second = (settings.bytes_per_second / n).max(1);
        // burst_secs × the share's rate = the configured bucket depth.
        settings.burst_secs = (capacity_answers / u64::from(settings.responses_per_second))
            .clamp(1, u64::from(u32::MAX)) as u32;
        RateLimit {
            settings,
            dropped: self.dropped.clone(),
            slipped: self.slipped.clone(),
        }
    }
}

/// Apply the rate limit to what was queued for `peer` after the first `before` datagrams:
/// keep it, drop it, or replace it with the service's slip answer.
#[allow(clippy::too_many_arguments)]
fn police<S: DatagramService>(
    service: &S,
    limiter: &mut RateLimiter,
    limit: &RateLimit,
    replies: &mut Replies,
    before: usize,
    request: &[u8],
    peer: SocketAddr,
    now: Instant,
) -> Verdict {
    let bytes = replies.bytes_since(before);
    let verdict = limiter.check(peer.ip(), bytes, now);
    match verdict {
        Verdict::Send => {}
        Verdict::Drop => {
            replies.truncate(before);
            limit.dropped.inc();
        }
        Verdict::Slip => {
            replies.truncate(before);
            limit.slipped.inc();
            let out = replies.next(peer);
            if !service.slip(request, out) {
                replies.pop();
            }
        }
    }
    verdict
}

/// An answer from recursion, sent back to its worker for the hot cache.
struct Relayed {
    key: Vec<u8>,
    answer: Vec<u8>,
    reuse: Reuse,
    prepared: u64,
}

/// Serve `socket` on the calling thread until `shutdown` turns true. `runtime` runs
/// recursion jobs; `cache_entries` bounds this worker's [`HotAnswers`].
pub fn run_worker<S: DatagramService>(
    socket: std::net::UdpSocket,
    service: Arc<S>,
    cache_entries: usize,
    limit: RateLimit,
    shutdown: watch::Receiver<bool>,
    runtime: tokio::runtime::Handle,
) {
    let socket = Arc::new(socket);
    let mut limiter = RateLimiter::new(limit.settings.clone());
    let mut state = service.new_state();
    let mut hot = HotAnswers::new(cache_entries);
    let (relayed_tx, relayed_rx) = mpsc::channel::<Relayed>();
    let mut batch = batch::AddressedReceiver::new(MAX_REQUEST);
    let mut replies = Replies::default();
    let mut key = Vec::with_capacity(256);
    loop {
        // Stop on shutdown, and when the node went away without one (its sender dropped).
        if *shutdown.borrow() || shutdown.has_changed().is_err() {
            break;
        }
        while let Ok(r) = relayed_rx.try_recv() {
            hot.insert(&r.key, &r.answer, r.reuse, 0, r.prepared);
        }
        let received = match batch.receive(&socket) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive failed");
                // Errors such as ICMP reports from earlier sends must not spin the loop.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let epoch = service.epoch();
        let now = Instant::now();
        let unix = now_unix();
        let mut police = |replies: &mut Replies, before: usize, request: &[u8], peer| {
            police(
                &*service,
                &mut limiter,
                &limit,
                replies,
                before,
                request,
                peer,
                now,
            )
        };
        for i in 0..received {
            let Some((request, peer)) = batch.get(i) else {
                continue;
            };
            let started = Instant::now();
            let keyed = service.cache_key(request, &mut key);
            if keyed {
                let relayed_ok = || service.replays_relayed_to(peer);
                let at = Validity {
                    epoch,
                    now_unix: unix,
                    stamp: || service.answer_stamp(&key),
                };
                if let Some((answer, age)) = hot.get_for(&key, at, relayed_ok) {
                    let before = replies.len();
                    let out = replies.next(peer);
                    service.patch(request, answer, age, unix, out);
                    service.count_replay(&mut state, out, started);
                    police(&mut replies, before, request, peer);
                    continue;
                }
            }
            let before = replies.len();
            // Taken before the answer is computed: a write landing meanwhile retires it.
            let stamp = if keyed { service.answer_stamp(&key) } else { 0 };
            match service.handle(&mut state, request, peer, now, &mut replies) {
                Handled::Answered(reuse) => {
                    if keyed && replies.len() == before + 1 {
                        if let Some(answer) = replies.last() {
                            let mark = if reuse == Reuse::UntilWritten {
                                stamp
                            } else {
                                epoch
                            };
                            hot.insert(&key, answer, reuse, mark, unix);
                        }
                    }
                    if replies.len() > before {
                        police(&mut replies, before, request, peer);
                    }
                }
                // A recursion job is charged one answer before it starts (its size is not
                // known yet; recursion is only for `recursion.allow` clients anyway).
                Handled::Recurse(_)
                    if police(&mut replies, before, request, peer) != Verdict::Send => {}
                Handled::Recurse(job) => {
                    let socket = socket.clone();
                    let service = service.clone();
                    let tx = relayed_tx.clone();
                    let key = keyed.then(|| key.clone());
                    // The answer's TTLs are computed after this moment (when the job starts):
                    // ageing it from here never understates its age.
                    let prepared = unix;
                    runtime.spawn(async move {
                        let (datagrams, reuse) = service.run_job(job).await;
                        // A blocking send from a runtime thread: UDP sends do not wait for
                        // the peer, only (rarely, briefly) for room in the 4 MiB buffer.
                        for d in &datagrams {
                            if let Err(e) = socket.send_to(d, peer) {
                                tracing::debug!(%peer, error = %e, "UDP send failed");
                            }
                        }
                        if let (Some(key), [answer]) = (key, datagrams.as_slice()) {
                            if reuse != Reuse::Never {
                                let _ = tx.send(Relayed {
                                    key,
                                    answer: answer.clone(),
                                    reuse,
                                    prepared,
                                });
                            }
                        }
                    });
                }
            }
        }
        batch::send_addressed(&socket, replies.queued());
        replies.clear();
    }
}

/// Start one worker per socket of a [`bind_group`], as tokio blocking tasks so the server's
/// shutdown waits for them; `cache_entries` is shared out among them.
pub fn spawn_workers<S: DatagramService>(
    sockets: Vec<std::net::UdpSocket>,
    service: Arc<S>,
    cache_entries: usize,
    limit: RateLimit,
    shutdown: &watch::Receiver<bool>,
    name: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let per_worker = cache_entries / sockets.len().max(1);
    let limit = limit.shared_by(sockets.len());
    let runtime = tokio::runtime::Handle::current();
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let service = service.clone();
            let shutdown = shutdown.clone();
            let runtime = runtime.clone();
            let limit = limit.clone();
            let name = format!("{name}-udp-{i}");
            tokio::task::spawn_blocking(move || {
                tracing::debug!(worker = name, "UDP worker started");
                run_worker(socket, service, per_worker, limit, shutdown, runtime);
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked at `epoch` and `now_unix`; the answer stamp is never needed.
    fn at(epoch: u64, now_unix: u64) -> Validity<impl FnMut() -> u64> {
        Validity {
            epoch,
            now_unix,
            stamp: || unreachable!("no UntilWritten answer here"),
        }
    }

    #[test]
    fn written_answers_follow_their_stamp_not_the_epoch() {
        let mut hot = HotAnswers::new(100);
        hot.insert(b"h", b"H", Reuse::UntilWritten, 41, 0);
        // Other writes moved the epoch: still valid while the handle's stamp stays.
        assert_eq!(hot.get(b"h", 9, 41, 0), Some((&b"H"[..], 0)));
        assert_eq!(hot.get(b"h", 10, 41, 0), Some((&b"H"[..], 0)));
        // Its own stamp moved: retired, whatever the epoch.
        assert_eq!(hot.get(b"h", 9, 42, 0), None);
    }

    #[test]
    fn hole7_relayed_answers_are_replayed_only_where_allowed() {
        let mut hot = HotAnswers::new(100);
        hot.insert(b"own", b"O", Reuse::UntilChange, 7, 0);
        hot.insert(b"relayed", b"R", Reuse::Until(1000), 7, 990);
        // Answers from the node's own data go to anyone; the question is not even asked.
        assert_eq!(
            hot.get_for(b"own", at(7, 995), || unreachable!()),
            Some((&b"O"[..], 0))
        );
        assert_eq!(hot.get_for(b"relayed", at(7, 995), || false), None);
        assert_eq!(
            hot.get_for(b"relayed", at(7, 995), || true),
            Some((&b"R"[..], 5)),
            "a refused client leaves the entry for the others"
        );
    }

    #[test]
    fn hot_answers_expire_by_epoch_and_time() {
        let mut hot = HotAnswers::new(100);
        hot.insert(b"a", b"A", Reuse::UntilChange, 7, 0);
        hot.insert(b"b", b"B", Reuse::Until(1000), 7, 990);
        hot.insert(b"c", b"C", Reuse::Never, 7, 0);
        assert_eq!(
            hot.get(b"a", 7, 0, 500),
            Some((&b"A"[..], 0)),
            "own data does not age"
        );
        assert_eq!(hot.get(b"a", 8, 0, 0), None);
        hot.insert(b"a", b"A2", Reuse::UntilChange, 8, 0);
        assert_eq!(hot.get(b"a", 8, 0, 0), Some((&b"A2"[..], 0)));
        assert_eq!(hot.get(b"b", 99, 0, 990), Some((&b"B"[..], 0)));
        assert_eq!(
            hot.get(b"b", 99, 0, 999),
            Some((&b"B"[..], 9)),
            "relayed answers age"
        );
        assert_eq!(hot.get(b"b", 99, 0, 1000), None);
        assert_eq!(hot.get(b"c", 7, 0, 0), None);
    }

    #[test]
    fn hot_answers_stay_bounded_and_keep_what_is_used() {
        let mut hot = HotAnswers::new(10);
        hot.insert(b"keep", b"K", Reuse::UntilChange, 0, 0);
        for i in 0..100u32 {
            hot.insert(&i.to_be_bytes(), b"x", Reuse::UntilChange, 0, 0);
            assert!(hot.len() <= 10);
            // Asked all the time: survives the turnover.
            assert_eq!(hot.get(b"keep", 0, 0, 0), Some((&b"K"[..], 0)));
        }
        assert!(hot.get(&0u32.to_be_bytes(), 0, 0, 0).is_none());
        assert!(HotAnswers::new(0).get(b"keep", 0, 0, 0).is_none());
    }

    #[test]
    fn group_shares_one_port() {
        let sockets = bind_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0));
    }

    #[test]
    fn replies_reuse_buffers() {
        let mut r = Replies::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        r.next(peer).extend_from_slice(b"one");
        r.next(peer).extend_from_slice(b"two");
        r.pop();
        assert_eq!(r.len(), 1);
        assert_eq!(r.last(), Some(&b"one"[..]));
        r.clear();
        assert!(r.is_empty());
        assert!(r.next(peer).is_empty());
    }
}
