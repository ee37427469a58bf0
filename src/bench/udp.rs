//! Handle and DNS over UDP, built to cost less per query than the server it loads: connected
//! source sockets spread over OS threads (a single-threaded runtime each, one wake-up for the
//! answers of all its sockets), batched system calls through the connected half of
//! `server::udp::batch` (`sendmmsg` with GSO and `recvmmsg` on Linux), and answers matched to
//! queries by request id through a slot table ([`Pending`]).
//!
//! Closed loop: each socket keeps its share of `concurrency` queries outstanding
//! ([`UdpWorker`]). Open loop: one thread sends the whole schedule ([`UdpSender`]) and the
//! sockets' tasks only receive ([`UdpReceiver`]).

use std::net::SocketAddr;
use std::ops::DerefMut;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode as DnsResponseCode;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::stats::Stats;
use super::{BenchError, Draw, Proto, Run};
use crate::server::udp::batch;
use crate::wire::dns::rcode_label;
use crate::wire::handle::peek::{self, at};

/// Handle or DNS over UDP: `sockets` source sockets sharing `concurrency`, spread over
/// `threads` threads, each running a task per socket on a single-threaded runtime (one
/// wake-up serves the answers of all its sockets). Closed loop: the tasks send and receive
/// ([`UdpWorker`]). Open loop: they only receive ([`UdpReceiver`]), and one more thread sends
/// the whole schedule ([`UdpSender`]).
pub(super) async fn run_udp(run: &Run<'_, Vec<u8>>) -> Result<(Stats, Duration), BenchError> {
    let (cfg, end) = (run.cfg, run.end());
    let sockets = cfg.sockets.min(cfg.concurrency);
    let threads = cfg
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, sockets);
    let dns = cfg.proto == Proto::DnsUdp;
    let queries = |i: usize| Queries {
        dns,
        draw: run.draw(i),
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
                    queries: queries(i),
                    window: window_of(i),
                    end,
                    timeout: cfg.timeout,
                };
                groups[i % threads].push(UdpTask::Closed(Box::new(worker), run.stats()));
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
                groups[i % threads].push(UdpTask::Receive(receiver, run.stats()));
            }
            let sender = UdpSender {
                lanes,
                queries: queries(0),
                schedule: UdpSchedule {
                    start: run.start,
                    rate,
                },
                end,
                done,
            };
            let stats = run.stats();
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
            let stats: Result<Vec<Stats>, BenchError> =
                h.join().map_err(|_| BenchError::ThreadPanicked)?;
            all.extend(stats?);
        }
        Ok::<_, BenchError>(all)
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
fn run_group(tasks: Vec<UdpTask>) -> Result<Vec<Stats>, BenchError> {
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
fn udp_socket(server: SocketAddr) -> Result<std::net::UdpSocket, BenchError> {
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
pub(super) struct Pending {
    pub(super) slots: Vec<PendingSlot>,
    /// Free slot indexes (a stack).
    free: Vec<u32>,
    /// `k`: the request id's low bits that index a slot.
    shift: u32,
    id_mask: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingSlot {
    /// Request id of the slot's current (or last) query.
    id: u32,
    /// When it was sent (open loop: scheduled); `None`: free.
    sent: Option<Instant>,
}

impl Pending {
    /// Room for at least `capacity` queries (rounded up to a power of two; at most 2^20, and
    /// 2^16 for DNS).
    pub(super) fn new(capacity: usize, dns: bool) -> Pending {
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
    pub(super) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Take a free slot for a query sent at `at`; returns its request id (`None`: full).
    pub(super) fn insert(&mut self, at: Instant) -> Option<u32> {
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
    pub(super) fn take(&mut self, id: u32) -> Option<Instant> {
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
    pub(super) fn expire(&mut self, now: Instant, timeout: Duration) -> u64 {
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
    draw: Draw<Vec<u8>>,
}

impl Queries {
    /// Write the next query, with request id `id`, into `out`.
    fn next_into(&mut self, id: u32, out: &mut Vec<u8>) {
        let template = self.draw.next();
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
pub(super) fn parse_answer(dns: bool, d: &[u8]) -> Option<(u32, u32)> {
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
pub(super) fn code_name(dns: bool, code: u32) -> String {
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

/// One source socket as a task on its thread's runtime uses it ([`UdpWorker`] sends and
/// receives on it, [`UdpReceiver`] only receives): the registered socket, its batch
/// receiver, the response codes of its answers and the first error seen.
struct Endpoint {
    sock: UdpSocket,
    rx: batch::ConnectedReceiver,
    codes: Codes,
    error: Option<String>,
    dns: bool,
    /// How long an answer may take.
    timeout: Duration,
}

impl Endpoint {
    /// Register `sock` with this thread's runtime; `None` (the error noted in `stats`) if
    /// it cannot be.
    fn register(
        sock: std::net::UdpSocket,
        dns: bool,
        timeout: Duration,
        stats: &mut Stats,
    ) -> Option<Endpoint> {
        match sock
            .set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(sock))
        {
            Ok(sock) => Some(Endpoint {
                sock,
                rx: batch::ConnectedReceiver::new(ANSWER_HEAD),
                codes: Codes::default(),
                error: None,
                dns,
                timeout,
            }),
            Err(e) => {
                stats.first_error = Some(format!("registering a UDP socket: {e}"));
                None
            }
        }
    }

    /// Wait until answers may have arrived or `deadline` passes, and match what came to the
    /// queries in flight (the table `pending` returns, asked for only then); returns when
    /// the wait ended. A failed receive is noted, with a short pause for the errors that
    /// would spin the loop.
    async fn receive_into<P: DerefMut<Target = Pending>>(
        &mut self,
        deadline: Instant,
        pending: impl FnOnce() -> P,
        stats: &mut Stats,
    ) -> Instant {
        let received = receive(&self.sock, &mut self.rx, deadline).await;
        let now = Instant::now();
        match received {
            Ok(n) => absorb(
                &self.rx,
                n,
                self.dns,
                &mut pending(),
                now,
                stats,
                &mut self.codes,
            ),
            Err(e) => {
                if receive_failed(&e, &mut self.error) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        now
    }

    /// The socket's stats at the end ([`finish`]; lost queries are put down to the timeout
    /// unless an error was seen).
    fn finish(self, stats: Stats) -> Stats {
        let timeout = self.timeout;
        finish(stats, &self.codes, self.dns, self.error, || {
            format!("no answer within {timeout:?}")
        })
    }
}

/// Open-loop send times (UDP): query `n` is due `n / rate` after the start, and goes out on
/// socket `n % sockets`.
#[derive(Debug, Clone, Copy)]
pub(super) struct UdpSchedule {
    pub(super) start: Instant,
    pub(super) rate: f64,
}

impl UdpSchedule {
    /// When query `n` is due (`None`: beyond any clock).
    pub(super) fn due(&self, n: u64) -> Option<Instant> {
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
    async fn run_closed(mut self, mut stats: Stats) -> Stats {
        let (window, end) = (self.window, self.end);
        let Some(mut ep) =
            Endpoint::register(self.sock, self.queries.dns, self.timeout, &mut stats)
        else {
            return stats;
        };
        let mut pending = Pending::new(window, ep.dns);
        let mut out = Outbox::new();
        let mut now = Instant::now();
        let mut next_sweep = now + SWEEP_EVERY;
        loop {
            stats.push_live(now, false);
            if now < end {
                while pending.len() < window {
                    let Some(id) = pending.insert(now) else { break };
                    self.queries.next_into(id, out.next_buf());
                    stats.sent += 1;
                    if out.is_full() {
                        out.flush(&ep.sock, &mut ep.error).await;
                    }
                }
                out.flush(&ep.sock, &mut ep.error).await;
            } else if pending.len() == 0 {
                break;
            }
            if now >= next_sweep {
                stats.lost += pending.expire(now, ep.timeout);
                next_sweep = now + SWEEP_EVERY;
            }
            let deadline = if now < end {
                next_sweep.min(end)
            } else {
                next_sweep
            };
            now = ep.receive_into(deadline, || &mut pending, &mut stats).await;
        }
        ep.finish(stats)
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
        let Some(mut ep) = Endpoint::register(self.sock, self.dns, self.timeout, &mut stats) else {
            return stats;
        };
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        // Whatever happens to the sender, everything has timed out by then.
        let give_up = self.end + ep.timeout + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            stats.push_live(now, false);
            let finished = self.done.load(Ordering::Acquire);
            {
                let mut pending = lock(&self.pending);
                if finished && pending.len() == 0 {
                    break;
                }
                if now >= give_up {
                    stats.lost += pending.expire(now, Duration::ZERO);
                    break;
                }
                if now >= next_sweep {
                    stats.lost += pending.expire(now, ep.timeout);
                    next_sweep = now + SWEEP_EVERY;
                }
            }
            ep.receive_into(next_sweep, || lock(&self.pending), &mut stats)
                .await;
        }
        ep.finish(stats)
    }
}

/// Lock the table of queries in flight (a thread that panicked holding it leaves slots at
/// worst).
fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    crate::lock::lock(pending)
}
