//! The DNS front end on UDP and TCP: identifiers as names under the configured zone
//! (`sn-0001.1.100.88.id.example.` for `88.100.1/SN-0001`), answered with TXT, URI and NAPTR
//! records from this node's registry or, on nodes that recurse, through the hierarchy. The
//! name mapping and the message rules live in [`crate::wire::dns`]; this module adds the
//! sockets, the lookups and the metrics.
//!
//! - **Lookups**: each identifier candidate of the name, in order, goes to
//!   `Engine::resolve` with public values only and no referral: RC 1 answers, 100 moves to the
//!   next candidate (none left: NXDOMAIN), 200 is NODATA, 301 (not responsible) goes to the
//!   recursor when the node has one, else REFUSED; anything else is SERVFAIL. Answers from the
//!   node's own data are authoritative (AA).
//! - **Recursion**: the recursor resolves the candidates the same way (its cache shared with
//!   the native and HTTP front ends; answers are not AA). TTLs count down: no record of a
//!   recursive answer outlives the cache entry it came from (a stale answer served while the
//!   upstream is down gets 30 s, RFC 8767). Every response of a node that
//!   recurses has RA set. The whole `88.` namespace is one DNS zone, whatever node holds each
//!   prefix, so recursion does not depend on RD: a DNS resolver asking this node as the
//!   zone's authority (RD clear) gets the same answer as a stub (RD set). Clients outside
//!   `recursion.allow` get REFUSED (never replayed to others, and relayed answers are never
//!   replayed to them); beyond `recursion.max_concurrent` lookups in flight (shared with the
//!   other front ends, [`crate::resolve::recursion::Recursor::admit`]) queries get SERVFAIL.
//! - **UDP**: served by [`super::udp`]: one `SO_REUSEPORT` socket and thread per worker,
//!   batched receive and send, and the worker's cache of encoded answers, replayed for a
//!   repeated query with only the ID patched. Answers from the node's own data are replayed
//!   until the registry changes (the SOA serial moves with it), recursive answers for their
//!   TTL (at most [`super::udp::RELAYED_REUSE_SECS`], their TTLs lowered by the seconds since
//!   they were prepared), answers whose TTLs count down to an
//!   absolute expiry never. Queries that need recursion run in their own task (a worker never
//!   waits on other servers). Answers bigger than the client's limit (512 without EDNS) go out
//!   truncated (TC, question only) so the client retries over TCP.
//! - **TCP**: 2-byte length framing, several queries per connection answered in order, answers
//!   up to 65535 bytes; the connection bounds of [`super::accept`] (per client address and in
//!   total, an idle timeout between queries, a deadline per query, a write timeout).
//! - **Metrics**: `idnode_requests_total{proto="dns", op="query", code}` with the DNS rcode
//!   mnemonic as the code (`NOERROR` for answers and NODATA, `NXDOMAIN`, `REFUSED`,
//!   `SERVFAIL`, `FORMERR`, `NOTIMP`, `BADVERS`), and `DROP` for packets that get no answer
//!   (responses, scraps shorter than a header); latency in
//!   `idnode_request_duration_seconds{proto="dns", op="query"}` (answered queries only).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode as Rcode;
use prometheus::{Histogram, IntCounter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::accept::{next_request, read_by, write_answer, Connection, ConnectionTable};
use super::udp::{DatagramService, Handled, Replies, Reuse, RELAYED_REUSE_SECS};
use crate::config::DnsConfig;
use crate::metrics::Metrics;
use crate::model::{Handle, HandleValue, SuffixCase, Ttl};
use crate::resolve::recursion::RecursionPermit;
use crate::resolve::resolver::{CandidateAnswer, Found as Lookup};
use crate::resolve::{Resolver, Route};
use crate::wire::dns::{
    absolute_name, answer, decide, encode, rcode_label, rewrite_ttls, BadName, Decision, Found,
    Request, Response, Zone, MAX_TCP_MESSAGE,
};

/// The transport a query arrived on.
pub use crate::model::Transport;

/// What [`DnsService::process`] did.
pub enum Outcome {
    /// The response is in the output buffer; it may be replayed for the same query bytes as
    /// `Reuse` says.
    Reply(Reuse),
    /// Nothing to send.
    Drop,
    /// The query needs recursion: [`DnsService::recurse`] answers it.
    Recurse(Box<RecursionJob>),
}

/// A query waiting for recursion.
pub struct RecursionJob {
    request: Request,
    candidates: Vec<Handle>,
    transport: Transport,
    started: Instant,
    /// The client's admission, held until the answer is built.
    permit: RecursionPermit,
}

/// What a lookup found, owning the values.
enum Looked {
    Values(Vec<HandleValue>),
    NoHandle,
    NoValues,
    NotResponsible,
    ServFail,
}

impl Looked {
    /// What the resolver found, and the identifier to route upstream when this node is not
    /// responsible for it.
    fn from(answer: CandidateAnswer) -> (Looked, Option<Handle>) {
        match answer.found {
            Lookup::Values(_, values) => (Looked::Values(values), None),
            Lookup::NoValues(_) => (Looked::NoValues, None),
            Lookup::NoHandle => (Looked::NoHandle, None),
            Lookup::NotResponsible(handle) => (Looked::NotResponsible, Some(handle)),
            Lookup::Failed(f) => {
                tracing::debug!(error = %f, code = f.code().code(), "DNS lookup failed");
                (Looked::ServFail, None)
            }
        }
    }

    fn found(&self) -> Found<'_> {
        match self {
            Looked::Values(v) => Found::Values(v),
            Looked::NoHandle => Found::NoHandle,
            Looked::NoValues => Found::NoValues,
            Looked::NotResponsible => Found::Refused,
            Looked::ServFail => Found::ServFail,
        }
    }
}

/// The labels counted, created up front so the hot path does not look them up.
const CODES: [&str; 9] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "SERVFAIL", "FORMERR", "NOTIMP", "BADVERS", "OTHER", "DROP",
];

/// The zone a configuration describes.
pub fn zone_from_config(config: &DnsConfig, suffix_case: SuffixCase) -> Result<Zone, BadName> {
    let mut zone = Zone::new(&config.zone, suffix_case)?;
    if let Some(m) = &config.soa_mname {
        zone.mname = absolute_name(m)?;
    }
    if let Some(r) = &config.soa_rname {
        zone.rname = absolute_name(r)?;
    }
    if !config.ns.is_empty() {
        zone.ns = config
            .ns
            .iter()
            .map(|n| absolute_name(n))
            .collect::<Result<_, _>>()?;
    }
    zone.negative_ttl = config.negative_ttl_secs;
    zone.max_udp_payload = config.max_udp_payload;
    Ok(zone)
}

/// DNS query handling, shared by every socket and connection.
pub struct DnsService {
    /// Every lookup goes through it (the registry, and the recursor on recursive nodes).
    resolver: Resolver,
    zone: Zone,
    requests: [IntCounter; CODES.len()],
    latency: Histogram,
}

impl DnsService {
    pub fn new(resolver: Resolver, metrics: &Metrics, zone: Zone) -> DnsService {
        let requests =
            CODES.map(|code| metrics.requests.with_label_values(&["dns", "query", code]));
        DnsService {
            resolver,
            zone,
            requests,
            latency: metrics.latency.with_label_values(&["dns", "query"]),
        }
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    fn count(&self, label: &str) {
        if let Some(i) = CODES.iter().position(|c| *c == label) {
            self.requests[i].inc();
        }
    }

    /// The SOA serial: the registry's newest change-log sequence (truncated to 32 bits).
    fn serial(&self) -> u32 {
        self.resolver.engine().registry().last_seq() as u32
    }

    /// Handle one query packet from `client`; a response, if any, is written to `out`. Lookups
    /// in the node's own data happen here; recursion (for an admitted client) comes back as a
    /// job for [`DnsService::recurse`].
    pub fn process(
        &self,
        packet: &[u8],
        client: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let started = Instant::now();
        match decide(packet, &self.zone, self.serial()) {
            Decision::Drop => {
                self.count("DROP");
                Outcome::Drop
            }
            Decision::Reply(response) => {
                self.finish(response, transport, started, out);
                Outcome::Reply(Reuse::UntilChange)
            }
            Decision::Lookup {
                request,
                candidates,
            } => self.lookup(request, candidates, client, transport, started, out),
        }
    }

    fn lookup(
        &self,
        request: Request,
        candidates: Vec<Handle>,
        client: IpAddr,
        transport: Transport,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> Outcome {
        // Set when the answer depends on who asked (recursion refused): never replayed.
        let mut personal = false;
        let (mut looked, foreign) = Looked::from(self.resolver.local_candidates(&candidates));
        if matches!(looked, Looked::NoHandle | Looked::NotResponsible)
            && request
                .name()
                .is_some_and(|n| self.zone.is_empty_non_terminal(n))
        {
            // `1.100.88.<zone>` may read as 88.100/1, but it is also the path to homed
            // 88.100.1: an empty non-terminal, answered NODATA (never NXDOMAIN or REFUSED).
            looked = Looked::NoValues;
        }
        if let (Looked::NotResponsible, Some(foreign)) = (&looked, foreign) {
            match self.resolver.route(&foreign, client) {
                Route::Upstream(permit) => {
                    return Outcome::Recurse(Box::new(RecursionJob {
                        request,
                        candidates,
                        transport,
                        started,
                        permit,
                    }))
                }
                // REFUSED, as on a node that does not recurse.
                Route::Local => personal = self.resolver.recurses(),
                Route::Busy => looked = Looked::ServFail,
            }
        }
        let reuse = match &looked {
            _ if personal => Reuse::Never,
            // TTLs counting down to an absolute expiry change every second.
            Looked::Values(values) if values.iter().any(|v| matches!(v.ttl, Ttl::Absolute(_))) => {
                Reuse::Never
            }
            Looked::ServFail => Reuse::Never,
            _ => Reuse::UntilChange,
        };
        let now = crate::model::unix_now().min(u64::from(u32::MAX)) as u32;
        let response = answer(
            request,
            looked.found(),
            &self.zone,
            self.serial(),
            now,
            true,
        );
        self.finish(response, transport, started, out);
        Outcome::Reply(reuse)
    }

    /// Resolve a [`RecursionJob`] through the hierarchy; the response is written to `out`.
    /// Returns how long the answer may be replayed: its cache lifetime, at most
    /// [`RELAYED_REUSE_SECS`].
    pub async fn recurse(&self, job: RecursionJob, out: &mut Vec<u8>) -> Reuse {
        let now = crate::model::unix_now();
        let relayed = self
            .resolver
            .upstream_candidates(&job.permit, &job.candidates, now)
            .await;
        // Seconds the answer stays fresh: the least over the candidates asked.
        let left = relayed.origin.fresh_for();
        let (looked, _) = Looked::from(relayed);
        let reuse = match &looked {
            Looked::ServFail => Reuse::Never,
            Looked::Values(values) if values.iter().any(|v| matches!(v.ttl, Ttl::Absolute(_))) => {
                Reuse::Never
            }
            _ => match left {
                None | Some(0) => Reuse::Never,
                Some(left) => Reuse::Until(now + u64::from(left).min(RELAYED_REUSE_SECS)),
            },
        };
        let now = now.min(u64::from(u32::MAX)) as u32;
        let response = answer(
            job.request,
            looked.found(),
            &self.zone,
            self.serial(),
            now,
            false,
        );
        self.finish(response, job.transport, job.started, out);
        // A cached answer is as old as its entry: no TTL outlives the entry's freshness.
        if let Some(left) = left {
            rewrite_ttls(out, |ttl| ttl.min(left));
        }
        reuse
    }

    fn finish(
        &self,
        response: Response,
        transport: Transport,
        started: Instant,
        out: &mut Vec<u8>,
    ) {
        let mut message = response.message;
        message.metadata.recursion_available = self.resolver.recurses();
        let limit = match transport {
            Transport::Udp => response.udp_limit,
            Transport::Tcp => MAX_TCP_MESSAGE,
        };
        encode(&message, limit, out);
        let code: Rcode = message.metadata.response_code;
        self.count(rcode_label(code));
        self.latency.observe(started.elapsed().as_secs_f64());
    }
}

impl DatagramService for DnsService {
    type State = ();
    type Job = Box<RecursionJob>;

    fn new_state(&self) {}

    /// Everything after the 2-byte ID: queries equal in it get the same answer.
    fn cache_key(&self, request: &[u8], key: &mut Vec<u8>) -> bool {
        key.clear();
        match request.get(2..) {
            Some(rest) if request.len() >= 12 => {
                key.extend_from_slice(rest);
                true
            }
            _ => false,
        }
    }

    /// The request's ID, and for relayed answers TTLs counted down by the answer's age.
    fn patch(&self, request: &[u8], answer: &[u8], age_secs: u64, _now: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(answer);
        if let (Some(id), Some(slot)) = (request.get(..2), out.get_mut(..2)) {
            slot.copy_from_slice(id);
        }
        if age_secs > 0 {
            let age = u32::try_from(age_secs).unwrap_or(u32::MAX);
            rewrite_ttls(out, |ttl| ttl.saturating_sub(age));
        }
    }

    fn count_replay(&self, _state: &mut (), answer: &[u8], started: Instant) {
        let code = answer.get(3).map_or(0, |b| u16::from(b & 0x0F));
        self.count(rcode_label(Rcode::from_low(code as u8)));
        self.latency.observe(started.elapsed().as_secs_f64());
    }

    fn epoch(&self) -> u64 {
        self.resolver.engine().registry().last_seq()
    }

    /// Recursive answers are replayed only to clients that may recurse.
    fn slip(&self, request: &[u8], out: &mut Vec<u8>) -> bool {
        match crate::wire::dns::truncated_answer(request) {
            Some(answer) => {
                out.extend_from_slice(&answer);
                true
            }
            None => false,
        }
    }

    fn replays_relayed_to(&self, peer: SocketAddr) -> bool {
        self.resolver.relays_to(peer.ip())
    }

    fn handle(
        &self,
        _state: &mut (),
        request: &[u8],
        peer: SocketAddr,
        _now: Instant,
        replies: &mut Replies,
    ) -> Handled<Box<RecursionJob>> {
        let out = replies.next(peer);
        match self.process(request, peer.ip(), Transport::Udp, out) {
            Outcome::Reply(reuse) => Handled::Answered(reuse),
            Outcome::Drop => {
                replies.pop();
                Handled::Answered(Reuse::Never)
            }
            Outcome::Recurse(job) => {
                replies.pop();
                Handled::Recurse(job)
            }
        }
    }

    async fn run_job(self: Arc<Self>, job: Box<RecursionJob>) -> (Vec<Vec<u8>>, Reuse) {
        let mut out = Vec::new();
        let reuse = self.recurse(*job, &mut out).await;
        (vec![out], reuse)
    }
}

/// Serve DNS over TCP on `listener` until shutdown; see [`super::accept`] for the
/// connection bounds and draining.
pub async fn serve_tcp(
    listener: TcpListener,
    service: Arc<DnsService>,
    table: Arc<ConnectionTable>,
    shutdown: watch::Receiver<bool>,
) {
    super::accept::serve_connections(
        listener,
        service,
        table,
        shutdown,
        "DNS TCP",
        |stream, peer, service, conn, shutdown| {
            connection(stream, peer.ip(), service, conn, shutdown)
        },
    )
    .await;
}

async fn connection(
    mut stream: TcpStream,
    client: IpAddr,
    service: Arc<DnsService>,
    conn: Connection,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    let mut message = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(4096);
    let mut frame = Vec::with_capacity(4098);
    loop {
        // Wait for the next query: idle timeout, eviction, client close or shutdown end the
        // connection; once its first byte is in, all of it must arrive by the deadline.
        let Some(started) = next_request(&mut stream, &mut head, &conn, &mut shutdown).await?
        else {
            return Ok(());
        };
        let len = usize::from(u16::from_be_bytes(head));
        message.resize(len, 0);
        if !read_by(&mut stream, &mut message, started.deadline, &conn).await? {
            return Ok(());
        }
        match service.process(&message, client, Transport::Tcp, &mut out) {
            Outcome::Reply(_) => {}
            Outcome::Drop => continue,
            Outcome::Recurse(job) => {
                service.recurse(*job, &mut out).await;
            }
        }
        let Ok(n) = u16::try_from(out.len()) else {
            continue;
        };
        frame.clear();
        frame.extend_from_slice(&n.to_be_bytes());
        frame.extend_from_slice(&out);
        if !write_answer(&mut stream, &frame, &conn).await? {
            return Ok(());
        }
        drop(started);
    }
}
