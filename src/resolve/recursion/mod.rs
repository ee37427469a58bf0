//! Hierarchical (recursive) resolution: a recursive node answers for any identifier by walking
//! the service hierarchy top-level node → secondary node → enterprise node, as the reference
//! client does (handle-protocol.md §1, §4, §5, §6).
//!
//! ```text
//! resolve(P/S) ─► cache (fresh → answer)
//!      │ miss / stale
//!      ▼ single flight per key, whole fetch bounded by `deadline`
//! sites of P ─► cached sites of P, or resolve 0.NA/P at the roots asking for
//!      │        HS_SITE, HS_SITE.6, HS_SERV, HS_NAMESPACE (PO), following
//!      │        303 prefix referrals (HS_SITE.PREFIX / HS_SERV.PREFIX / referral handle)
//!      │        and 302 service referrals (HS_SITE / HS_SERV / referral handle);
//!      │        sites = HS_SITE + HS_SITE.6 + sites of every HS_SERV (chains to depth 20)
//!      ▼
//! query P/S at those sites: primary sites first, the server picked by the site's hash,
//! UDP then TCP, `attempts` tries with backoff on timeouts, 301 → next site,
//! 302/303 → follow (bounded)
//!      ─► 1 Values · 100 HandleNotFound · 200 ValuesNotFound · anything else a Failure
//! ```
//!
//! Handles under the global prefix (`0.NA/X`, `0.X/...`) are asked at the roots directly.
//!
//! Everything is bounded: each exchange by `timeout`, each resolve by `deadline`, referrals by
//! `max_referrals` plus a loop detector on (handle, sites), service-handle chains by depth 20,
//! and the upstream exchanges of one resolve by [`MAX_EXCHANGES`]. Upstreams that lie (another
//! request id, undecodable bytes, an answer to another operation, an expired answer) fail the
//! exchange with a clear message, and the next transport or site is tried.
//!
//! Every hop is logged at debug level: `RUST_LOG=idnode::resolve::recursion=debug`.
//!
//! # Who may recurse, and how much
//!
//! - [`Recursor::admit`] is every front end's door: a client outside
//!   [`RecursorConfig::allow`] is [`Refused::NotAllowed`] (the front end gives its ordinary
//!   non-recursive answer), and beyond [`RecursorConfig::max_concurrent`] requests in flight
//!   it is [`Refused::Busy`] at once (native RC 3, DNS SERVFAIL, HTTP 503). The
//!   [`RecursionPermit`] it hands out is held for the whole of
//!   [`Recursor::resolve_admitted`]; every request counts once, also one that waits on another
//!   request's identical fetch (so waiters are bounded too). Refusals are counted
//!   (`idnode_recursion_refused_total{reason}`).
//! - [`Recursor::resolve`] / [`Recursor::resolve_aged`], for callers that do not know the
//!   client, take a permit themselves on a cache miss: the cap holds for every caller.
//! - [`check_request_shape`] bounds what one request may ask (types, their length, indexes);
//!   every resolve checks it before a cache key exists, so no caller can make the cache hold
//!   client-chosen lists of any size.
//!
//! The network is behind the [`Upstream`] trait: this module holds no sockets. The real one is
//! `server::upstream::NetworkUpstream` (tokio UDP with reassembly, TCP with CN continuation,
//! over the sans-IO `wire::handle::exchange`, whose request builder and answer checks this
//! walk uses too); tests use a scripted fake.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::cache::{Cache, CacheKey, CachedAnswer, Lookup};
use super::site::{query_port, server_for};
use super::Failure;
use crate::auth::credential::{certification, Certification};
use crate::model::{
    types, Handle, HandleValue, PublicKey, ResponseCode, SiteInfo, Transport, PREFIX_NA,
};
use crate::net::CidrList;
use crate::wire::handle::exchange::{check_resolution_answer, new_request, ExchangeError};
use crate::wire::handle::message::{flag, op, Body, Message};

/// A boxed, sendable future (the [`Upstream`] trait is object safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Types asked for when resolving a prefix handle `0.NA/P` (the reference client's
/// `SITE_INFO_AND_SERVICE_HANDLE_AND_NAMESPACE_TYPES`).
pub const PREFIX_RECORD_TYPES: [&str; 4] = [
    types::HS_SITE,
    types::HS_SITE_6,
    types::HS_SERV,
    "HS_NAMESPACE",
];
/// Types asked for when resolving a service handle named by HS_SERV or a 302 referral.
const SERVICE_TYPES: [&str; 3] = [types::HS_SITE, types::HS_SITE_6, types::HS_SERV];
/// Types asked for when resolving a service handle named by HS_SERV.PREFIX or a 303 referral.
const PREFIX_SERVICE_TYPES: [&str; 2] = [types::HS_SITE_PREFIX, types::HS_SERV_PREFIX];
/// The legacy name of HS_SITE.PREFIX.
const HS_NA_DELEGATE: &str = "HS_NA_DELEGATE";
/// `HS_SERV 0.NA/0.NA` means "the global service": the roots.
const GLOBAL_SERVICE: &str = "0.NA/0.NA";

/// The TTL, in seconds, of a stale answer served because the upstream failed (RFC 8767 §4
/// recommends 30): short, so downstream caches ask again soon.
pub const STALE_ANSWER_TTL: u32 = 30;

/// Service-handle chains are followed this deep (Handle.Net `BootstrapHandles.MAX_DEPTH`).
pub const MAX_SERVICE_DEPTH: usize = 20;
/// Upstream exchanges one resolve may make, retries included.
pub const MAX_EXCHANGES: usize = 64;
/// Sites tried for one query (a referral may name many).
const MAX_SITES_PER_QUERY: usize = 8;
/// Sites kept from one set of values, and service handles followed from it.
const MAX_SITES_PER_VALUES: usize = 32;
const MAX_SERVICES_PER_VALUES: usize = 8;
/// Handle.Net keeps relative TTLs for at most two days (`HandleValue.MAX_RECOGNIZED_TTL`).
const MAX_RECOGNIZED_TTL: u32 = 172_800;
/// Site serial sent when the site's serial is not known to matter.
/// Backoff between attempts after a timeout: 100 ms, doubling, at most this.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// Most types one recursive request may name.
pub const MAX_REQUEST_TYPES: usize = 32;
/// Longest type name (bytes) in a recursive request.
pub const MAX_REQUEST_TYPE_LEN: usize = 64;
/// Most indexes one recursive request may name.
pub const MAX_REQUEST_INDEXES: usize = 64;

/// Whether a recursive request's index and type lists are within bounds: at most
/// [`MAX_REQUEST_INDEXES`] indexes and [`MAX_REQUEST_TYPES`] types of at most
/// [`MAX_REQUEST_TYPE_LEN`] bytes each (duplicates count). The error says which bound, for
/// the front end's answer (native: RC 4 protocol error). Every resolve checks it too.
pub fn check_request_shape(indexes: &[u32], types: &[String]) -> Result<(), String> {
    if indexes.len() > MAX_REQUEST_INDEXES {
        return Err(format!(
            "{} indexes requested; a recursive request may name at most {MAX_REQUEST_INDEXES}",
            indexes.len()
        ));
    }
    if types.len() > MAX_REQUEST_TYPES {
        return Err(format!(
            "{} types requested; a recursive request may name at most {MAX_REQUEST_TYPES}",
            types.len()
        ));
    }
    if let Some(t) = types.iter().find(|t| t.len() > MAX_REQUEST_TYPE_LEN) {
        return Err(format!(
            "a requested type is {} bytes long; at most {MAX_REQUEST_TYPE_LEN} in a recursive request",
            t.len()
        ));
    }
    Ok(())
}

/// Why [`Recursor::admit`] refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The client is outside `recursion.allow`: give it the non-recursive answer.
    #[error("recursion is not offered to this client")]
    NotAllowed,
    /// `recursion.max_concurrent` lookups are in flight: fail at once.
    #[error("too many recursive lookups in flight")]
    Busy,
}

impl Refused {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::NotAllowed => "not_allowed",
            Refused::Busy => "busy",
        }
    }

    /// The failure a front end answers: RC 3 (server too busy) for [`Refused::Busy`], RC 301
    /// (not responsible) for [`Refused::NotAllowed`].
    pub fn failure(self) -> Failure {
        match self {
            Refused::Busy => Failure::new(
                ResponseCode::ServerTooBusy,
                "too many recursive lookups in flight; try again later",
            ),
            Refused::NotAllowed => Failure::new(
                ResponseCode::ServerNotResponsible,
                "That prefix doesn't live here",
            ),
        }
    }
}

/// A client's admission to one recursive lookup ([`Recursor::admit`]): one slot of
/// `recursion.max_concurrent`, given back when dropped. Hold it until the answer is built.
#[derive(Debug)]
pub struct RecursionPermit {
    _slot: OwnedSemaphorePermit,
}

// ---------------------------------------------------------------------------------------------
// The upstream

/// One request/response exchange with one upstream server.
pub trait Upstream: Send + Sync {
    /// Send `request` (fully built, with its request id) to `server` and return the
    /// (reassembled / CN-joined) response. Implementations stop after `timeout`.
    fn exchange<'a>(
        &'a self,
        server: SocketAddr,
        transport: Transport,
        request: &'a Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ExchangeError>>;
}

// ---------------------------------------------------------------------------------------------
// The recursor

/// Recursive lookups in flight at once by default (`recursion.max_concurrent`).
pub const DEFAULT_MAX_CONCURRENT_RECURSIONS: usize = 256;

/// Recursion settings.
#[derive(Debug, Clone)]
pub struct RecursorConfig {
    /// The global (root) sites: where `0.NA/<prefix>` lookups start.
    pub roots: Vec<SiteInfo>,
    /// Referrals (302/303) followed in one resolve.
    pub max_referrals: usize,
    /// Highest recursion count this node sends upstream (incoming count + 1).
    pub max_recursion_count: u8,
    /// Tries per server and transport when an exchange times out.
    pub attempts: u32,
    /// Bound of one exchange.
    pub timeout: Duration,
    /// Bound of one whole resolve (all hops).
    pub deadline: Duration,
    /// Requests resolving at once (all front ends); see [`Recursor::admit`].
    pub max_concurrent: usize,
    /// Clients that may recurse.
    pub allow: CidrList,
}

impl Default for RecursorConfig {
    fn default() -> Self {
        RecursorConfig {
            roots: Vec::new(),
            max_referrals: 20,
            max_recursion_count: 10,
            attempts: 3,
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(10),
            max_concurrent: DEFAULT_MAX_CONCURRENT_RECURSIONS,
            allow: CidrList::private(),
        }
    }
}

/// Counters of what the recursor did (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursorStats {
    /// Answers served from the cache while fresh.
    pub cache_hits: u64,
    /// Fetches through the hierarchy (one per cache miss that led a single flight).
    pub fetches: u64,
    /// Upstream exchanges (retries included).
    pub exchanges: u64,
    /// Stale answers served because the upstream fetch failed.
    pub stale_served: u64,
    /// Requests refused because `max_concurrent` were in flight.
    pub refused_busy: u64,
    /// Clients refused because they are outside the allow-list.
    pub refused_not_allowed: u64,
    /// Requests refused because their type or index lists are too long.
    pub refused_shape: u64,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    fetches: AtomicU64,
    exchanges: AtomicU64,
    stale_served: AtomicU64,
    refused_busy: AtomicU64,
    refused_not_allowed: AtomicU64,
    refused_shape: AtomicU64,
}

/// Resolves any identifier through the hierarchy, with a shared cache.
pub struct Recursor {
    config: RecursorConfig,
    upstream: Arc<dyn Upstream>,
    cache: Arc<Cache>,
    counters: Counters,
    /// One permit per request resolving.
    slots: Arc<Semaphore>,
    /// `idnode_recursion_refused_total{reason}`.
    refused: Option<prometheus::IntCounterVec>,
}

/// What a set of site-describing values leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SiteKind {
    /// HS_SITE / HS_SITE.6 / HS_SERV (prefix records, 302 referrals).
    Service,
    /// HS_SITE.PREFIX / HS_SERV.PREFIX (303 prefix referrals).
    Prefix,
}

/// Sites and how long they may be cached.
#[derive(Debug, Clone, Default)]
struct Sites {
    list: Vec<SiteInfo>,
    /// Smallest TTL (seconds) of the values they came from.
    ttl: Option<u32>,
}

impl Sites {
    fn add_site(&mut self, site: SiteInfo) {
        if !self.list.contains(&site) && self.list.len() < MAX_SITES_PER_VALUES {
            self.list.push(site);
        }
    }

    fn note_ttl(&mut self, ttl: u32) {
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }

    fn absorb(&mut self, other: Sites) {
        for s in other.list {
            self.add_site(s);
        }
        if let Some(t) = other.ttl {
            self.note_ttl(t);
        }
    }
}

/// A site as the loop detector sees it: serial and server addresses.
/// A site's identity for loop detection: serial and each server's address and interfaces
/// (servers on one host differ only by port).
type SiteId = (u16, Vec<([u8; 16], Vec<(u8, u8, u32)>)>);
/// A question put to a set of sites: handle (upper-cased), indexes, types (upper-cased), sites.
type Question = (String, Vec<u32>, Vec<String>, Vec<SiteId>);

/// State of one fetch (shared by all its nested lookups).
struct Ctx {
    now: u64,
    /// Recursion count sent upstream.
    recursion_count: u8,
    referrals: usize,
    exchanges: usize,
    /// Questions (handle, filters) already put to a set of sites: asking again is a loop.
    asked: HashSet<Question>,
    /// Service handles: `None` while being resolved (a cycle), then their sites.
    services: HashMap<(String, SiteKind), Option<Sites>>,
    /// Prefix sites found (or not) during this fetch.
    prefixes: HashMap<String, Result<Option<Vec<SiteInfo>>, Failure>>,
    /// Ask every upstream for certified (CT) answers and check their signatures.
    certify: bool,
    /// The check of the last answer kept from a server (the final answer, once the fetch
    /// ends): its `HS_SIGNED` credential against the key in that server's HS_SITE entry.
    certification: Option<Certification>,
}

impl Ctx {
    fn new(now: u64, recursion_count: u8) -> Ctx {
        Ctx {
            now,
            recursion_count,
            referrals: 0,
            exchanges: 0,
            asked: HashSet::new(),
            services: HashMap::new(),
            prefixes: HashMap::new(),
            certify: false,
            certification: None,
        }
    }

    fn now32(&self) -> u32 {
        self.now.min(u64::from(u32::MAX)) as u32
    }
}

fn site_id(site: &SiteInfo) -> SiteId {
    (
        site.serial,
        site.servers
            .iter()
            .map(|s| {
                let interfaces = s
                    .interfaces
                    .iter()
                    .map(|i| (i.kind, i.protocol, i.port))
                    .collect();
                (s.address, interfaces)
            })
            .collect::<Vec<_>>(),
    )
}

fn error(message: impl Into<String>) -> Failure {
    Failure::new(ResponseCode::Error, message)
}

/// The response code enum for a wire code, if idnode knows it.
fn known_code(code: u32) -> Option<ResponseCode> {
    use ResponseCode as R;
    Some(match code {
        1 => R::Success,
        2 => R::Error,
        3 => R::ServerTooBusy,
        4 => R::ProtocolError,
        5 => R::OperationNotSupported,
        6 => R::RecursionCountTooHigh,
        7 => R::ServerBackup,
        100 => R::HandleNotFound,
        101 => R::HandleAlreadyExists,
        102 => R::InvalidHandle,
        200 => R::ValuesNotFound,
        201 => R::ValueAlreadyExists,
        202 => R::InvalidValue,
        301 => R::ServerNotResponsible,
        302 => R::ServiceReferral,
        303 => R::PrefixReferral,
        400 => R::InvalidAdmin,
        401 => R::InsufficientPermissions,
        402 => R::AuthenticationNeeded,
        403 => R::AuthenticationFailed,
        404 => R::InvalidCredential,
        405 => R::AuthenticationTimeout,
        406 => R::AuthenticationError,
        _ => return None,
    })
}

/// Codes after which another site may do better.
/// A UDP answer that sends the client to TCP: RC 2, or the envelope's TC flag.
fn try_next_site(code: u32) -> bool {
    matches!(code, 3 | 7 | 300 | 301)
}

/// The prefix of a handle text (`X` without "/" is `0.NA/X`), upper-cased.
fn prefix_of(handle: &str) -> String {
    match handle.find('/') {
        Some(at) => handle[..at].to_ascii_uppercase(),
        None => PREFIX_NA.to_string(),
    }
}

/// Handles under the global prefix ("0", "0.NA", "0.X") are resolved at the roots.
fn is_global(prefix: &str) -> bool {
    prefix == "0" || prefix.starts_with("0.")
}

/// A handle text as the protocol sends it: `X` without "/" is `0.NA/X`.
fn full_handle(handle: &str) -> String {
    if handle.contains('/') {
        handle.to_string()
    } else {
        format!("{PREFIX_NA}/{handle}")
    }
}

fn owned(types: &[&str]) -> Vec<String> {
    types.iter().map(|t| t.to_string()).collect()
}

impl Recursor {
    pub fn new(config: RecursorConfig, upstream: Arc<dyn Upstream>, cache: Arc<Cache>) -> Recursor {
        let slots = Arc::new(Semaphore::new(
            config.max_concurrent.clamp(1, Semaphore::MAX_PERMITS),
        ));
        Recursor {
            config,
            upstream,
            cache,
            counters: Counters::default(),
            slots,
            refused: None,
        }
    }

    /// Count refusals into `counter` (labelled `reason`: `not_allowed`, `busy`, `shape`).
    pub fn with_refusal_metric(mut self, counter: prometheus::IntCounterVec) -> Recursor {
        for reason in ["not_allowed", "busy", "shape"] {
            let _ = counter.with_label_values(&[reason]);
        }
        self.refused = Some(counter);
        self
    }

    fn count_refusal(&self, reason: &str) {
        let c = &self.counters;
        match reason {
            "busy" => c.refused_busy.fetch_add(1, Ordering::Relaxed),
            "not_allowed" => c.refused_not_allowed.fetch_add(1, Ordering::Relaxed),
            _ => c.refused_shape.fetch_add(1, Ordering::Relaxed),
        };
        if let Some(counter) = &self.refused {
            counter.with_label_values(&[reason]).inc();
        }
    }

    /// Whether `client` is in `recursion.allow` (IPv4-mapped IPv6 counts as IPv4).
    pub fn allows(&self, client: IpAddr) -> bool {
        self.config.allow.contains(client)
    }

    /// Admit `client` to one recursive lookup, without waiting: [`Refused::NotAllowed`] when it
    /// is outside the allow-list, [`Refused::Busy`] when `max_concurrent` requests are in
    /// flight. Hold the permit for the whole [`Recursor::resolve_admitted`] call.
    pub fn admit(&self, client: IpAddr) -> Result<RecursionPermit, Refused> {
        if !self.allows(client) {
            self.count_refusal(Refused::NotAllowed.label());
            return Err(Refused::NotAllowed);
        }
        self.slot()
    }

    fn slot(&self) -> Result<RecursionPermit, Refused> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(RecursionPermit { _slot: slot }),
            Err(_) => {
                self.count_refusal(Refused::Busy.label());
                Err(Refused::Busy)
            }
        }
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.config
            .max_concurrent
            .clamp(1, Semaphore::MAX_PERMITS)
            .saturating_sub(self.slots.available_permits())
    }

    /// [`check_request_shape`], counted as the `shape` refusal.
    fn check_shape(&self, indexes: &[u32], types: &[String]) -> Result<(), Failure> {
        check_request_shape(indexes, types).map_err(|why| {
            self.count_refusal("shape");
            Failure::new(ResponseCode::ProtocolError, why)
        })
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    pub fn config(&self) -> &RecursorConfig {
        &self.config
    }

    pub fn stats(&self) -> RecursorStats {
        let c = &self.counters;
        RecursorStats {
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            exchanges: c.exchanges.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            refused_busy: c.refused_busy.load(Ordering::Relaxed),
            refused_not_allowed: c.refused_not_allowed.load(Ordering::Relaxed),
            refused_shape: c.refused_shape.load(Ordering::Relaxed),
        }
    }

    /// Resolve `handle` with the index/type filters, public values only.
    ///
    /// `recursion_count` is the incoming request's; upstream requests carry one more, and a
    /// fetch that would exceed `max_recursion_count` fails with RC 6 (a fresh cached answer is
    /// still served). `now` is unix seconds (the cache's clock and the request expiration).
    /// Front ends turn a slash-less `X` into `0.NA/X` ([`Handle::parse_lenient`]).
    pub async fn resolve(
        &self,
        handle: &Handle,
        indexes: &[u32],
        types: &[String],
        recursion_count: u8,
        now: u64,
    ) -> Result<CachedAnswer, Failure> {
        self.resolve_aged(handle, indexes, types, recursion_count, now)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`Recursor::resolve`], with how many more seconds the answer stays fresh: the rest of
    /// its cache lifetime when it came from the cache, its whole lifetime when it was just
    /// fetched (0 when not cacheable), and [`STALE_ANSWER_TTL`] for a stale answer served
    /// because the upstream failed (RFC 8767 §4). DNS answers count their TTLs down to it.
    ///
    /// For callers that do not know the client: no allow-list, but a cache miss takes a
    /// permit itself (RC 3 when none is free; a stale answer is served instead if there is
    /// one). Front ends use [`Recursor::admit`] and [`Recursor::resolve_admitted`].
    pub async fn resolve_aged(
        &self,
        handle: &Handle,
        indexes: &[u32],
        types: &[String],
        recursion_count: u8,
        now: u64,
    ) -> Result<(CachedAnswer, u32), Failure> {
        self.resolve_with(None, handle, indexes, types, recursion_count, now)
            .await
    }

    /// [`Recursor::resolve_aged`] for a client admitted by [`Recursor::admit`]; `permit` is
    /// held (borrowed) until the answer is returned.
    pub async fn resolve_admitted(
        &self,
        permit: &RecursionPermit,
        handle: &Handle,
        indexes: &[u32],
        types: &[String],
        recursion_count: u8,
        now: u64,
    ) -> Result<(CachedAnswer, u32), Failure> {
        self.resolve_with(Some(permit), handle, indexes, types, recursion_count, now)
            .await
    }

    /// A certified resolution for an admitted client (its request had CT, or the ID-SDK's
    /// trusted-query bit): fetched through the hierarchy with CT on every hop, never from or
    /// into the cache, and the final answer's signature checked with the key of the HS_SITE
    /// entry of the server that gave it. Returns the answer and whether it verified.
    ///
    /// Only the last hop is checked: the sites on the way (from the configured roots, which
    /// carry no keys) are taken as the referrals give them.
    pub async fn resolve_certified(
        &self,
        _permit: &RecursionPermit,
        handle: &Handle,
        indexes: &[u32],
        types: &[String],
        recursion_count: u8,
        now: u64,
    ) -> Result<(CachedAnswer, Certification), Failure> {
        self.check_shape(indexes, types)?;
        let (answer, certification) = self
            .fetch(handle.as_str(), indexes, types, recursion_count, now, true)
            .await?;
        let certification = certification
            .unwrap_or_else(|| Certification::Invalid("no upstream server was asked".into()));
        Ok((answer, certification))
    }

    async fn resolve_with(
        &self,
        permit: Option<&RecursionPermit>,
        handle: &Handle,
        indexes: &[u32],
        types: &[String],
        recursion_count: u8,
        now: u64,
    ) -> Result<(CachedAnswer, u32), Failure> {
        // Before any cache key exists: oversized lists never reach the cache.
        self.check_shape(indexes, types)?;
        let key = CacheKey::new(handle.key(), indexes, types, true);
        let stale = match self.cache.get_expiring(&key, now) {
            Lookup::Fresh((answer, expires)) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(handle = handle.as_str(), "answered from the cache");
                let left = u32::try_from(expires.saturating_sub(now)).unwrap_or(u32::MAX);
                return Ok((answer, left));
            }
            Lookup::Stale((answer, _)) => Some(answer),
            Lookup::Miss => None,
        };
        // A caller without a permit takes one for the fetch (and the wait on one).
        let _own = match permit {
            Some(_) => None,
            None => match self.slot() {
                Ok(slot) => Some(slot),
                Err(refused) => {
                    return match stale {
                        Some(answer) => {
                            self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                            Ok((answer, STALE_ANSWER_TTL))
                        }
                        None => Err(refused.failure()),
                    }
                }
            },
        };
        // The leader stores the answer before the flight ends, so callers arriving later find
        // it in the cache; callers that waited on the flight get the same answer.
        let fetched = self
            .cache
            .coalesce(&key, || async {
                let (answer, _) = self
                    .fetch(handle.as_str(), indexes, types, recursion_count, now, false)
                    .await?;
                self.cache.put(key.clone(), answer.clone(), now);
                Ok(answer)
            })
            .await;
        match fetched {
            Ok(answer) => {
                let left = self.cache.lifetime(&answer, now);
                Ok((answer, left))
            }
            Err(failure) => match stale {
                Some(answer) => {
                    self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        handle = handle.as_str(),
                        error = %failure,
                        "upstream failed; serving a stale answer"
                    );
                    Ok((answer, STALE_ANSWER_TTL))
                }
                None => Err(failure),
            },
        }
    }

    /// One fetch through the hierarchy, bounded by the deadline. With `certify`, every
    /// upstream is asked for a signed answer and the final one's check is returned too.
    async fn fetch(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        recursion_count: u8,
        now: u64,
        certify: bool,
    ) -> Result<(CachedAnswer, Option<Certification>), Failure> {
        let outgoing = match recursion_count.checked_add(1) {
            Some(n) if n <= self.config.max_recursion_count => n,
            _ => {
                return Err(Failure::new(
                    ResponseCode::RecursionCountTooHigh,
                    format!(
                    "recursion count {recursion_count} is too high (this node sends at most {})",
                    self.config.max_recursion_count
                ),
                ))
            }
        };
        if self.config.roots.is_empty() {
            return Err(error("no root sites are configured for recursion"));
        }
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let deadline = self.config.deadline;
        let mut ctx = Ctx::new(now, outgoing);
        ctx.certify = certify;
        let work = self.lookup(&mut ctx, handle, indexes, types, 0);
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r.map(|answer| (answer, ctx.certification.take())),
            Err(_) => Err(error(format!(
                "upstream resolution of {handle} timed out after {} ms",
                deadline.as_millis()
            ))),
        }
    }

    /// Resolve a handle text: find its prefix's sites (or the roots) and ask them.
    fn lookup<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        handle: &'a str,
        indexes: &'a [u32],
        types: &'a [String],
        depth: usize,
    ) -> BoxFuture<'a, Result<CachedAnswer, Failure>> {
        Box::pin(async move {
            if depth > MAX_SERVICE_DEPTH {
                return Err(error(format!(
                    "resolving {handle} needs service lookups deeper than {MAX_SERVICE_DEPTH}"
                )));
            }
            let handle = full_handle(handle);
            let prefix = prefix_of(&handle);
            let sites = if is_global(&prefix) {
                self.config.roots.clone()
            } else {
                match self.prefix_sites(ctx, &prefix, depth).await? {
                    Some(sites) => sites,
                    None => {
                        tracing::debug!(%handle, %prefix, "prefix does not exist");
                        return Ok(CachedAnswer::HandleNotFound);
                    }
                }
            };
            self.query(ctx, &handle, indexes, types, sites, depth).await
        })
    }

    /// [`Recursor::lookup`] through the cache (for the prefix and service handles a fetch
    /// needs on the way).
    async fn lookup_cached(
        &self,
        ctx: &mut Ctx,
        handle: &str,
        types: &[String],
        depth: usize,
    ) -> Result<CachedAnswer, Failure> {
        let full = full_handle(handle);
        let key_text = match Handle::parse(&full, crate::model::SuffixCase::Sensitive) {
            Ok(h) => h.key().to_string(),
            Err(e) => return Err(error(format!("invalid service handle {handle:?}: {e}"))),
        };
        let key = CacheKey::new(&key_text, &[], types, true);
        let stale = match self.cache.get(&key, ctx.now) {
            Lookup::Fresh(answer) => return Ok(answer),
            Lookup::Stale(answer) => Some(answer),
            Lookup::Miss => None,
        };
        match self.lookup(ctx, &full, &[], types, depth).await {
            Ok(answer) => {
                self.cache.put(key, answer.clone(), ctx.now);
                Ok(answer)
            }
            Err(f) => match stale {
                Some(answer) => {
                    self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(handle = %full, error = %f, "serving a stale service record");
                    Ok(answer)
                }
                None => Err(f),
            },
        }
    }

    /// The sites of prefix `prefix` (upper-cased); `None` when the prefix does not exist.
    async fn prefix_sites(
        &self,
        ctx: &mut Ctx,
        prefix: &str,
        depth: usize,
    ) -> Result<Option<Vec<SiteInfo>>, Failure> {
        if let Some(known) = ctx.prefixes.get(prefix) {
            return known.clone();
        }
        let stale = match self.cache.get_sites(prefix, ctx.now) {
            Lookup::Fresh(sites) => {
                tracing::debug!(%prefix, sites = sites.len(), "prefix sites from the cache");
                return Ok(Some(sites));
            }
            Lookup::Stale(sites) => Some(sites),
            Lookup::Miss => None,
        };
        // While this prefix is being looked up, a lookup that needs it again is a cycle.
        ctx.prefixes.insert(
            prefix.to_string(),
            Err(error(format!(
                "the sites of prefix {prefix} depend on themselves"
            ))),
        );
        let result = self.find_prefix_sites(ctx, prefix, depth).await;
        let result = match (result, stale) {
            (Err(f), Some(sites)) => {
                self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%prefix, error = %f, "serving stale prefix sites");
                Ok(Some(sites))
            }
            (r, _) => r,
        };
        ctx.prefixes.insert(prefix.to_string(), result.clone());
        result
    }

    async fn find_prefix_sites(
        &self,
        ctx: &mut Ctx,
        prefix: &str,
        depth: usize,
    ) -> Result<Option<Vec<SiteInfo>>, Failure> {
        let na_handle = format!("{PREFIX_NA}/{prefix}");
        let types = owned(&PREFIX_RECORD_TYPES);
        let values = match self
            .lookup_cached(ctx, &na_handle, &types, depth + 1)
            .await?
        {
            CachedAnswer::Values(values) => values,
            CachedAnswer::HandleNotFound => return Ok(None),
            CachedAnswer::ValuesNotFound => {
                return Err(error(format!(
                    "prefix {prefix} has no HS_SITE or HS_SERV values"
                )))
            }
        };
        let sites = self
            .sites_from_values(ctx, &values, SiteKind::Service, depth + 1)
            .await?;
        if sites.list.is_empty() {
            return Err(error(format!(
                "prefix {prefix} names no usable sites (HS_SITE, HS_SITE.6 or HS_SERV)"
            )));
        }
        let ttl = sites.ttl.unwrap_or(0);
        tracing::debug!(%prefix, sites = sites.list.len(), ttl, "prefix sites found");
        if ttl > 0 {
            self.cache
                .put_sites(prefix, sites.list.clone(), ttl, ctx.now);
        }
        Ok(Some(sites.list))
    }

    /// The sites a set of values describes: direct site values, plus the sites of the
    /// service handles they name (resolved recursively). For [`SiteKind::Prefix`], plain
    /// HS_SITE / HS_SERV values are the fallback when there are no prefix ones (as Handle.Net
    /// does for 303 referrals).
    async fn sites_from_values(
        &self,
        ctx: &mut Ctx,
        values: &[HandleValue],
        kind: SiteKind,
        depth: usize,
    ) -> Result<Sites, Failure> {
        let sites = self.sites_of_kind(ctx, values, kind, depth).await?;
        if kind == SiteKind::Prefix && sites.list.is_empty() {
            return self
                .sites_of_kind(ctx, values, SiteKind::Service, depth)
                .await;
        }
        Ok(sites)
    }

    async fn sites_of_kind(
        &self,
        ctx: &mut Ctx,
        values: &[HandleValue],
        kind: SiteKind,
        depth: usize,
    ) -> Result<Sites, Failure> {
        let (site_types, serv_type): (&[&str], &str) = match kind {
            SiteKind::Service => (&[types::HS_SITE, types::HS_SITE_6], types::HS_SERV),
            SiteKind::Prefix => (
                &[types::HS_SITE_PREFIX, HS_NA_DELEGATE],
                types::HS_SERV_PREFIX,
            ),
        };
        let now = ctx.now32();
        let mut sites = Sites::default();
        for v in values {
            if site_types.iter().any(|t| v.is_type(t)) {
                match SiteInfo::decode(&v.data) {
                    Ok(site) => {
                        sites.add_site(site);
                        sites.note_ttl(v.ttl.seconds_from(now, MAX_RECOGNIZED_TTL));
                    }
                    Err(e) => {
                        let index = v.index;
                        tracing::debug!(index, error = %e, "undecodable site value skipped");
                    }
                }
            }
        }
        let services: Vec<(String, u32)> = values
            .iter()
            .filter(|v| v.is_type(serv_type))
            .filter_map(|v| {
                let text = v.data_str()?.trim().to_string();
                (!text.is_empty()).then(|| (text, v.ttl.seconds_from(now, MAX_RECOGNIZED_TTL)))
            })
            .take(MAX_SERVICES_PER_VALUES)
            .collect();
        let mut first_error = None;
        for (service, ttl) in services {
            match self.service_sites(ctx, &service, kind, depth + 1).await {
                Ok(found) => {
                    if !found.list.is_empty() {
                        sites.note_ttl(ttl);
                    }
                    sites.absorb(found);
                }
                Err(f) => {
                    tracing::debug!(%service, error = %f, "service handle failed");
                    first_error.get_or_insert(f);
                }
            }
        }
        match first_error {
            Some(f) if sites.list.is_empty() => Err(f),
            _ => Ok(sites),
        }
    }

    /// The sites of a service handle (HS_SERV / HS_SERV.PREFIX data, or a referral handle).
    fn service_sites<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        service: &'a str,
        kind: SiteKind,
        depth: usize,
    ) -> BoxFuture<'a, Result<Sites, Failure>> {
        Box::pin(async move {
            let full = full_handle(service);
            if full.eq_ignore_ascii_case(GLOBAL_SERVICE) {
                let mut sites = Sites::default();
                for s in &self.config.roots {
                    sites.add_site(s.clone());
                }
                return Ok(sites);
            }
            if depth > MAX_SERVICE_DEPTH {
                return Err(error(format!(
                    "service handle chain deeper than {MAX_SERVICE_DEPTH} at {full}"
                )));
            }
            let memo_key = (full.to_ascii_uppercase(), kind);
            match ctx.services.get(&memo_key) {
                Some(Some(sites)) => return Ok(sites.clone()),
                Some(None) => {
                    tracing::debug!(service = %full, "service handle cycle skipped");
                    return Ok(Sites::default());
                }
                None => {}
            }
            ctx.services.insert(memo_key.clone(), None);
            let types = match kind {
                SiteKind::Service => owned(&SERVICE_TYPES),
                SiteKind::Prefix => owned(&PREFIX_SERVICE_TYPES),
            };
            tracing::debug!(service = %full, ?kind, depth, "resolving service handle");
            let answer = self.lookup_cached(ctx, &full, &types, depth).await;
            let sites = match answer {
                Ok(CachedAnswer::Values(values)) => {
                    // A service handle's prefix-kind lookup only takes prefix values.
                    self.sites_of_kind(ctx, &values, kind, depth).await
                }
                Ok(_) => Ok(Sites::default()),
                Err(f) => Err(f),
            };
            if let Ok(found) = &sites {
                ctx.services.insert(memo_key, Some(found.clone()));
            }
            sites
        })
    }

    /// Ask `handle` at `sites`, following referrals.
    async fn query(
        &self,
        ctx: &mut Ctx,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        mut sites: Vec<SiteInfo>,
        depth: usize,
    ) -> Result<CachedAnswer, Failure> {
        loop {
            let mut ids: Vec<SiteId> = sites.iter().map(site_id).collect();
            ids.sort();
            let question: Question = (
                handle.to_ascii_uppercase(),
                indexes.to_vec(),
                types.iter().map(|t| t.to_ascii_uppercase()).collect(),
                ids,
            );
            if !ctx.asked.insert(question) {
                return Err(error(format!(
                    "referral loop: {handle} was referred back to sites already asked"
                )));
            }
            let (server, response) = self.ask_sites(ctx, handle, indexes, types, &sites).await?;
            let code = response.header.response_code;
            match (code, response.body) {
                (1, Body::Values { values, .. }) => {
                    let public: Vec<HandleValue> = values
                        .into_iter()
                        // Upstream may be careless; a secret is never relayed.
                        .filter(HandleValue::is_public)
                        .collect();
                    return Ok(if public.is_empty() {
                        CachedAnswer::ValuesNotFound
                    } else {
                        CachedAnswer::Values(public)
                    });
                }
                (100, _) => return Ok(CachedAnswer::HandleNotFound),
                (200, _) => return Ok(CachedAnswer::ValuesNotFound),
                (
                    302 | 303,
                    Body::Referral {
                        handle: referral,
                        values,
                    },
                ) => {
                    ctx.referrals += 1;
                    if ctx.referrals > self.config.max_referrals {
                        return Err(error(format!(
                            "more than {} referrals resolving {handle}",
                            self.config.max_referrals
                        )));
                    }
                    let kind = if code == 303 {
                        SiteKind::Prefix
                    } else {
                        SiteKind::Service
                    };
                    let mut next = self
                        .sites_from_values(ctx, &values, kind, depth)
                        .await
                        .unwrap_or_else(|f| {
                            tracing::debug!(error = %f, "referral values led nowhere");
                            Sites::default()
                        });
                    if next.list.is_empty() && !referral.is_empty() {
                        next = self.service_sites(ctx, &referral, kind, depth + 1).await?;
                    }
                    if next.list.is_empty() {
                        return Err(error(format!(
                            "{server} referred {handle} ({code}) to no usable sites"
                        )));
                    }
                    let sites_named = next.list.len();
                    tracing::debug!(%server, %handle, code, sites_named, "following referral");
                    sites = next.list;
                }
                (code, body) => {
                    let message = match body {
                        Body::Error { message } => message,
                        _ => String::new(),
                    };
                    return Err(match known_code(code) {
                        Some(rc) => Failure::new(
                            rc,
                            if message.is_empty() {
                                format!("upstream {server} answered {code}")
                            } else {
                                message
                            },
                        ),
                        None => error(format!(
                            "upstream {server} answered unknown code {code}: {message}"
                        )),
                    });
                }
            }
        }
    }

    /// Ask the sites in order (primary first) until one gives an answer worth keeping.
    async fn ask_sites(
        &self,
        ctx: &mut Ctx,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        sites: &[SiteInfo],
    ) -> Result<(SocketAddr, Message), Failure> {
        let mut ordered: Vec<&SiteInfo> = sites.iter().collect();
        ordered.sort_by_key(|s| !s.is_primary());
        let mut problems: Vec<String> = Vec::new();
        'sites: for site in ordered.into_iter().take(MAX_SITES_PER_QUERY) {
            let Some(server) = server_for(site, handle) else {
                problems.push(format!("site {} has no servers", site.serial));
                continue;
            };
            let ip = server.ip();
            for transport in [Transport::Udp, Transport::Tcp] {
                let Some(port) = query_port(server, transport.interface_protocol()) else {
                    continue;
                };
                let addr = SocketAddr::new(ip, port);
                if ctx.exchanges >= MAX_EXCHANGES {
                    return Err(error(format!(
                        "gave up on {handle} after {MAX_EXCHANGES} upstream exchanges"
                    )));
                }
                match self
                    .ask_server(ctx, addr, transport, handle, indexes, types)
                    .await
                {
                    // RC 2 or TC over UDP: the answer is too large for UDP (or the server
                    // rate-limits us); ask the same server over TCP, as Handle.Net clients do.
                    Ok(m) if transport == Transport::Udp && m.asks_for_tcp() => {
                        problems.push(format!(
                            "{addr} answered RC {} over UDP",
                            m.header.response_code
                        ));
                        continue;
                    }
                    Ok(m) if try_next_site(m.header.response_code) => {
                        let why = match &m.body {
                            Body::Error { message } => message.clone(),
                            _ => String::new(),
                        };
                        problems.push(format!("{addr} answered {}: {why}", m.header.response_code));
                        continue 'sites;
                    }
                    Ok(m) => {
                        if ctx.certify {
                            ctx.certification = Some(match PublicKey::decode(&server.public_key) {
                                Ok(key) => certification(&key, &m),
                                Err(_) => Certification::Invalid(format!(
                                    "{addr}'s HS_SITE entry publishes no usable key"
                                )),
                            });
                        }
                        return Ok((addr, m));
                    }
                    Err(e) => problems.push(format!("{addr} {transport:?}: {e}")),
                }
            }
        }
        if problems.is_empty() {
            problems.push("no site offers a UDP or TCP query interface".into());
        }
        Err(error(format!(
            "no upstream server answered for {handle}: {}",
            problems.join("; ")
        )))
    }

    /// One server over one transport: `attempts` tries, backing off after timeouts.
    async fn ask_server(
        &self,
        ctx: &mut Ctx,
        addr: SocketAddr,
        transport: Transport,
        handle: &str,
        indexes: &[u32],
        types: &[String],
    ) -> Result<Message, ExchangeError> {
        let attempts = self.config.attempts.max(1);
        let mut attempt = 0u32;
        loop {
            let mut request =
                resolution_request(handle, indexes, types, ctx.recursion_count, ctx.now);
            if ctx.certify {
                request.header.op_flag |= flag::CERTIFY;
            }
            ctx.exchanges += 1;
            self.counters.exchanges.fetch_add(1, Ordering::Relaxed);
            let result = self
                .upstream
                .exchange(addr, transport, &request, self.config.timeout)
                .await
                .and_then(|m| check_resolution_answer(&request, &m, ctx.now).map(|()| m));
            match &result {
                Ok(m) => {
                    let code = m.header.response_code;
                    tracing::debug!(server = %addr, ?transport, handle, code, "upstream hop")
                }
                Err(e) => {
                    tracing::debug!(server = %addr, ?transport, handle, error = %e, "hop failed")
                }
            }
            match result {
                Err(ExchangeError::Timeout)
                    if attempt + 1 < attempts && ctx.exchanges < MAX_EXCHANGES =>
                {
                    let backoff = BACKOFF_BASE
                        .saturating_mul(1u32 << attempt.min(10))
                        .min(BACKOFF_CAP);
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// A resolution request as idnode sends it upstream: 2.11, CA|PO, the given recursion count,
/// a random non-zero request id, expiring 12 hours from `now`.
fn resolution_request(
    handle: &str,
    indexes: &[u32],
    types: &[String],
    recursion_count: u8,
    now: u64,
) -> Message {
    let body = Body::Resolution {
        handle: handle.to_string(),
        indexes: indexes.to_vec(),
        types: types.to_vec(),
    };
    let mut m = new_request(
        op::RESOLUTION,
        flag::CACHE_CERTIFY | flag::PUBLIC_ONLY,
        body,
        now,
    );
    m.header.recursion_count = recursion_count;
    m
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;

    use super::*;
    use crate::model::structured::{interface, Interface, ServerInfo};
    use crate::model::{SuffixCase, Ttl};
    use crate::resolve::cache::CacheConfig;
    use crate::resolve::site::{handle_hash, HASH_BY_HANDLE};
    use crate::wire::handle::message::{Envelope, Header, OUR_VERSION};

    const NOW: u64 = 1_700_000_000;
    const ROOT: [u8; 4] = [10, 0, 0, 1];
    const TOP: [u8; 4] = [10, 0, 0, 2];
    const SECONDARY: [u8; 4] = [10, 0, 0, 3];
    const ENTERPRISE: [u8; 4] = [10, 0, 0, 4];
    const ENTERPRISE_2: [u8; 4] = [10, 0, 0, 5];

    // --- the scripted upstream ---------------------------------------------------------------

    #[derive(Clone)]
    enum Reply {
        Values(Vec<HandleValue>),
        Code(u32, &'static str),
        Referral(u32, &'static str, Vec<HandleValue>),
        Fail(ExchangeError),
        /// Times out over UDP; TCP gets the inner reply.
        UdpTimeout(Box<Reply>),
        WrongRequestId,
        WrongOpCode,
        /// Never answers, ignoring the exchange timeout (a broken upstream implementation).
        Hang,
    }

    #[derive(Debug, Clone)]
    struct Call {
        server: SocketAddr,
        transport: Transport,
        handle: String,
        types: Vec<String>,
        request: Message,
    }

    /// Maps (server IP, handle upper-cased) to a reply and records every exchange. Anything
    /// unscripted answers 301, as a real server that does not hold the handle would.
    #[derive(Default)]
    struct Fake {
        routes: Mutex<HashMap<(IpAddr, String), Reply>>,
        calls: Mutex<Vec<Call>>,
    }

    impl Fake {
        fn route(&self, server: [u8; 4], handle: &str, reply: Reply) {
            self.routes
                .lock()
                .unwrap()
                .insert((ip(server), handle.to_ascii_uppercase()), reply);
        }
        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
        fn hops(&self) -> Vec<(IpAddr, Transport, String)> {
            self.calls()
                .into_iter()
                .map(|c| (c.server.ip(), c.transport, c.handle))
                .collect()
        }
        fn count(&self) -> usize {
            self.calls.lock().unwrap().len()
        }
    }

    fn respond(request: &Message, code: u32, body: Body) -> Message {
        Message {
            envelope: Envelope {
                suggested_major: OUR_VERSION.0,
                suggested_minor: OUR_VERSION.1,
                ..request.envelope
            },
            header: Header {
                response_code: code,
                op_flag: request.header.op_flag & flag::ECHOED,
                site_serial: 1,
                ..request.header
            },
            digest: None,
            body,
            credential: Some(Vec::new()),
        }
    }

    fn answer(
        request: &Message,
        handle: &str,
        reply: Reply,
        transport: Transport,
    ) -> Result<Message, ExchangeError> {
        match reply {
            Reply::Values(values) => Ok(respond(
                request,
                1,
                Body::Values {
                    handle: handle.to_string(),
                    values,
                },
            )),
            Reply::Code(code, message) => Ok(respond(
                request,
                code,
                Body::Error {
                    message: message.to_string(),
                },
            )),
            Reply::Referral(code, referral, values) => Ok(respond(
                request,
                code,
                Body::Referral {
                    handle: referral.to_string(),
                    values,
                },
            )),
            Reply::Fail(e) => Err(e),
            Reply::UdpTimeout(_) if transport == Transport::Udp => Err(ExchangeError::Timeout),
            Reply::UdpTimeout(inner) => answer(request, handle, *inner, transport),
            Reply::WrongRequestId => {
                let mut m = respond(
                    request,
                    1,
                    Body::Values {
                        handle: handle.to_string(),
                        values: vec![url(1, "http://wrong")],
                    },
                );
                m.envelope.request_id = m.envelope.request_id.wrapping_add(1);
                Ok(m)
            }
            Reply::WrongOpCode => {
                let mut m = respond(request, 1, Body::Empty);
                m.header.op_code = op::DELETE_HANDLE;
                Ok(m)
            }
            Reply::Hang => unreachable!("handled by the caller"),
        }
    }

    impl Upstream for Fake {
        fn exchange<'a>(
            &'a self,
            server: SocketAddr,
            transport: Transport,
            request: &'a Message,
            _timeout: Duration,
        ) -> BoxFuture<'a, Result<Message, ExchangeError>> {
            Box::pin(async move {
                let Body::Resolution { handle, types, .. } = &request.body else {
                    return Err(ExchangeError::Malformed("not a resolution".into()));
                };
                self.calls.lock().unwrap().push(Call {
                    server,
                    transport,
                    handle: handle.clone(),
                    types: types.clone(),
                    request: request.clone(),
                });
                let reply = self
                    .routes
                    .lock()
                    .unwrap()
                    .get(&(server.ip(), handle.to_ascii_uppercase()))
                    .cloned()
                    .unwrap_or(Reply::Code(301, "That handle doesn't live here"));
                if let Reply::Hang = reply {
                    std::future::pending::<()>().await;
                }
                answer(request, handle, reply, transport)
            })
        }
    }

    // --- fixtures ----------------------------------------------------------------------------

    fn ip(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn server(id: u32, address: [u8; 4]) -> ServerInfo {
        ServerInfo {
            server_id: id,
            address: ServerInfo::address_from_ip(ip(address)),
            public_key: Vec::new(),
            interfaces: vec![
                Interface {
                    kind: interface::QUERY,
                    protocol: interface::UDP,
                    port: 2641,
                },
                Interface {
                    kind: interface::ADMIN_AND_QUERY,
                    protocol: interface::TCP,
                    port: 2641,
                },
            ],
        }
    }

    fn site(serial: u16, addresses: &[[u8; 4]]) -> SiteInfo {
        SiteInfo {
            data_format_version: 1,
            protocol_major: 2,
            protocol_minor: 11,
            serial,
            primary_mask: 0x80,
            hash_option: HASH_BY_HANDLE,
            hash_filter: Vec::new(),
            attributes: Vec::new(),
            servers: addresses
                .iter()
                .enumerate()
                .map(|(i, a)| server(i as u32 + 1, *a))
                .collect(),
        }
    }

    fn site_value(index: u32, type_name: &str, site: &SiteInfo) -> HandleValue {
        HandleValue::new(index, type_name, site.encode())
    }

    fn text_value(index: u32, type_name: &str, text: &str) -> HandleValue {
        HandleValue::new(index, type_name, text.as_bytes().to_vec())
    }

    fn url(index: u32, text: &str) -> HandleValue {
        text_value(index, "URL", text)
    }

    fn handle(text: &str) -> Handle {
        Handle::parse_lenient(text, SuffixCase::Sensitive).unwrap()
    }

    fn cache() -> Arc<Cache> {
        Arc::new(Cache::new(
            CacheConfig {
                max_entries: 1000,
                max_bytes: 64 << 20,
                max_ttl_secs: 86_400,
                negative_ttl_secs: 60,
                serve_stale_secs: 300,
            },
            None,
        ))
    }

    fn recursor_with(fake: &Arc<Fake>, tweak: impl FnOnce(&mut RecursorConfig)) -> Recursor {
        let mut config = RecursorConfig {
            roots: vec![site(1, &[ROOT])],
            attempts: 1,
            timeout: Duration::from_millis(500),
            deadline: Duration::from_secs(5),
            ..RecursorConfig::default()
        };
        tweak(&mut config);
        Recursor::new(config, fake.clone(), cache())
    }

    fn recursor(fake: &Arc<Fake>) -> Recursor {
        recursor_with(fake, |_| {})
    }

    async fn resolve(r: &Recursor, text: &str) -> Result<CachedAnswer, Failure> {
        r.resolve(&handle(text), &[], &[], 0, NOW).await
    }

    /// Root → 303 (HS_SITE.PREFIX of the secondary) → secondary holds 0.NA/88.100.1 with the
    /// enterprise's HS_SITE → the enterprise holds the records.
    fn three_levels(fake: &Fake) {
        fake.route(
            ROOT,
            "0.NA/88.100.1",
            Reply::Referral(
                303,
                "",
                vec![site_value(1, "HS_SITE.PREFIX", &site(7, &[SECONDARY]))],
            ),
        );
        fake.route(
            SECONDARY,
            "0.NA/88.100.1",
            Reply::Values(vec![site_value(1, "HS_SITE", &site(3, &[ENTERPRISE]))]),
        );
        fake.route(
            ENTERPRISE,
            "88.100.1/SN-0001",
            Reply::Values(vec![url(1, "https://example.com/sn-0001")]),
        );
        fake.route(
            ENTERPRISE,
            "88.100.1/SN-0002",
            Reply::Values(vec![url(1, "https://example.com/sn-0002")]),
        );
    }

    // --- hole 7: who may recurse, and how much ------------------------------------------------

    /// The scripted upstream behind a gate: every exchange waits until the test lets it pass.
    struct Gated {
        inner: Arc<Fake>,
        gate: Arc<Semaphore>,
        entered: AtomicU64,
    }

    impl Gated {
        fn new(inner: Arc<Fake>) -> Arc<Gated> {
            Arc::new(Gated {
                inner,
                gate: Arc::new(Semaphore::new(0)),
                entered: AtomicU64::new(0),
            })
        }

        fn entered(&self) -> u64 {
            self.entered.load(Ordering::SeqCst)
        }
    }

    impl Upstream for Gated {
        fn exchange<'a>(
            &'a self,
            server: SocketAddr,
            transport: Transport,
            request: &'a Message,
            timeout: Duration,
        ) -> BoxFuture<'a, Result<Message, ExchangeError>> {
            Box::pin(async move {
                self.entered.fetch_add(1, Ordering::SeqCst);
                match self.gate.acquire().await {
                    Ok(pass) => pass.forget(),
                    Err(_) => return Err(ExchangeError::Timeout),
                }
                self.inner
                    .exchange(server, transport, request, timeout)
                    .await
            })
        }
    }

    /// Wait (bounded in iterations, not in time asserted on) until `cond` holds.
    async fn until(cond: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("condition never became true");
    }

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn gated_recursor(gated: &Arc<Gated>, max_concurrent: usize) -> Arc<Recursor> {
        let config = RecursorConfig {
            roots: vec![site(1, &[ROOT])],
            attempts: 1,
            timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(120),
            max_concurrent,
            ..RecursorConfig::default()
        };
        Arc::new(Recursor::new(config, gated.clone(), cache()))
    }

    #[tokio::test]
    async fn hole7_concurrency_cap_refuses_fast_beyond_max_concurrent() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let gated = Gated::new(fake.clone());
        let r = gated_recursor(&gated, 4);
        // Four slow lookups of different handles fill the cap.
        let mut tasks = Vec::new();
        for i in 0..4 {
            let permit = r.admit(LOOPBACK).expect("a free slot");
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let h = handle(&format!("88.100.1/SN-000{}", i % 2 + 1));
                let h = if i < 2 {
                    h
                } else {
                    handle(&format!("88.100.1/OTHER-{i}"))
                };
                r.resolve_admitted(&permit, &h, &[], &[], 0, NOW).await
            }));
        }
        until(|| gated.entered() == 4).await;
        assert_eq!(r.in_flight(), 4);
        // Beyond the cap: refused at once, with no upstream work at all.
        for _ in 0..100 {
            assert_eq!(r.admit(LOOPBACK).unwrap_err(), Refused::Busy);
        }
        let unadmitted = r.resolve(&handle("88.100.1/SN-9"), &[], &[], 0, NOW).await;
        assert_eq!(unadmitted.unwrap_err().code, ResponseCode::ServerTooBusy);
        assert_eq!(gated.entered(), 4);
        assert_eq!(r.stats().refused_busy, 101);
        assert_eq!(Refused::Busy.failure().code, ResponseCode::ServerTooBusy);

        // Let them finish: the slots come back.
        gated.gate.add_permits(1000);
        for task in tasks {
            let _ = task.await.unwrap();
        }
        assert_eq!(r.in_flight(), 0);
        let permit = r.admit(LOOPBACK).expect("slots are given back");
        let got = r
            .resolve_admitted(&permit, &handle("88.100.1/SN-0001"), &[], &[], 0, NOW)
            .await
            .unwrap();
        assert_eq!(
            got.0,
            CachedAnswer::Values(vec![url(1, "https://example.com/sn-0001")])
        );
    }

    #[tokio::test]
    async fn hole7_coalesced_waiters_each_hold_a_slot() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let gated = Gated::new(fake.clone());
        let r = gated_recursor(&gated, 3);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let permit = r.admit(LOOPBACK).unwrap();
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let h = handle("88.100.1/SN-0001");
                r.resolve_admitted(&permit, &h, &[], &[], 0, NOW).await
            }));
        }
        until(|| gated.entered() == 1 && r.cache().in_flight() == 1).await;
        // One fetch upstream, but every waiting request counts against the cap.
        assert_eq!(r.in_flight(), 3);
        assert_eq!(r.admit(LOOPBACK).unwrap_err(), Refused::Busy);
        gated.gate.add_permits(1000);
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(r.stats().fetches, 1);
        assert_eq!(r.in_flight(), 0);
    }

    #[tokio::test]
    async fn hole7_allow_list_decides_who_may_recurse() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let r = recursor(&fake);
        for yes in [
            "127.0.0.1",
            "::1",
            "10.9.8.7",
            "192.168.0.1",
            "::ffff:172.16.0.1",
        ] {
            assert!(r.admit(yes.parse().unwrap()).is_ok(), "{yes}");
        }
        for no in ["8.8.8.8", "2001:db8::1", "::ffff:203.0.113.1"] {
            assert_eq!(
                r.admit(no.parse().unwrap()).unwrap_err(),
                Refused::NotAllowed
            );
        }
        assert_eq!(r.stats().refused_not_allowed, 3);
        assert_eq!(
            fake.count(),
            0,
            "a refused client causes no upstream traffic"
        );
        assert_eq!(
            Refused::NotAllowed.failure().code,
            ResponseCode::ServerNotResponsible
        );
        let open = recursor_with(&fake, |c| c.allow = CidrList::everyone());
        assert!(open.admit("8.8.8.8".parse().unwrap()).is_ok());
        let closed = recursor_with(&fake, |c| c.allow = CidrList::default());
        assert_eq!(closed.admit(LOOPBACK).unwrap_err(), Refused::NotAllowed);
    }

    #[tokio::test]
    async fn hole7_type_and_index_lists_are_capped_before_the_cache() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let r = recursor(&fake);
        let h = handle("88.100.1/SN-0001");
        let at_limit: Vec<String> = (0..MAX_REQUEST_TYPES)
            .map(|i| format!("{i:0>width$}", width = MAX_REQUEST_TYPE_LEN))
            .collect();
        let indexes: Vec<u32> = (0..MAX_REQUEST_INDEXES as u32).collect();
        assert_eq!(check_request_shape(&indexes, &at_limit), Ok(()));
        let too_many_types: Vec<String> =
            (0..=MAX_REQUEST_TYPES).map(|i| format!("T{i}")).collect();
        let too_long = ["X".repeat(MAX_REQUEST_TYPE_LEN + 1)];
        let huge = ["X".repeat(66_000)];
        let too_many_indexes: Vec<u32> = (0..=MAX_REQUEST_INDEXES as u32).collect();
        let permit = r.admit(LOOPBACK).unwrap();
        for (indexes, types) in [
            (&[][..], &too_many_types[..]),
            (&[][..], &too_long[..]),
            (&[][..], &huge[..]),
            (&too_many_indexes[..], &[][..]),
        ] {
            assert!(check_request_shape(indexes, types).is_err());
            let err = r.resolve(&h, indexes, types, 0, NOW).await.unwrap_err();
            assert_eq!(err.code, ResponseCode::ProtocolError, "{err}");
            let err = r
                .resolve_admitted(&permit, &h, indexes, types, 0, NOW)
                .await
                .unwrap_err();
            assert_eq!(err.code, ResponseCode::ProtocolError);
        }
        assert_eq!(fake.count(), 0);
        assert!(r.cache().is_empty());
        assert_eq!(r.cache().bytes(), 0);
        assert_eq!(r.stats().refused_shape, 8);
        // Within the bounds: answered as usual.
        assert!(r
            .resolve_admitted(&permit, &h, &[1], &["URL".to_string()], 0, NOW)
            .await
            .is_ok());
    }

    // --- hierarchy walking -------------------------------------------------------------------

    #[tokio::test]
    async fn three_level_chain_then_cache_hit() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let r = recursor(&fake);
        let got = resolve(&r, "88.100.1/SN-0001").await.unwrap();
        assert_eq!(
            got,
            CachedAnswer::Values(vec![url(1, "https://example.com/sn-0001")])
        );
        let udp = Transport::Udp;
        assert_eq!(
            fake.hops(),
            vec![
                (ip(ROOT), udp, "0.NA/88.100.1".to_string()),
                (ip(SECONDARY), udp, "0.NA/88.100.1".to_string()),
                (ip(ENTERPRISE), udp, "88.100.1/SN-0001".to_string()),
            ]
        );
        let calls = fake.calls();
        assert_eq!(calls[0].types, owned(&PREFIX_RECORD_TYPES));
        assert!(calls[2].types.is_empty());
        assert_eq!(calls[0].server.port(), 2641);
        // The request as specified: 2.11 suggesting 2.11, CA|PO, recursion 0 + 1, serial
        // unknown, expiring in 12 hours, an empty credential, a non-zero request id.
        for c in &calls {
            let m = &c.request;
            assert_eq!((m.envelope.major, m.envelope.minor), (2, 11));
            assert_eq!(m.envelope.suggested_version(), (2, 11));
            assert_ne!(m.envelope.request_id, 0);
            assert_eq!(m.header.op_code, op::RESOLUTION);
            assert_eq!(m.header.op_flag, 0x0900_0000);
            assert_eq!(m.header.recursion_count, 1);
            assert_eq!(m.header.site_serial, 0xFFFF);
            assert_eq!(u64::from(m.header.expiration), NOW + 43_200);
            assert_eq!(m.credential, Some(Vec::new()));
        }

        // Second time: from the cache, no upstream traffic at all.
        let again = resolve(&r, "88.100.1/SN-0001").await.unwrap();
        assert_eq!(again, got);
        assert_eq!(fake.count(), 3);
        let stats = r.stats();
        assert_eq!(
            (stats.cache_hits, stats.fetches, stats.exchanges),
            (1, 1, 3)
        );
    }

    #[tokio::test]
    async fn prefix_sites_are_cached() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let r = recursor(&fake);
        resolve(&r, "88.100.1/SN-0001").await.unwrap();
        assert_eq!(fake.count(), 3);
        // Another identifier under the same prefix goes straight to the enterprise.
        let got = r
            .resolve(&handle("88.100.1/SN-0002"), &[], &[], 0, NOW + 10)
            .await
            .unwrap();
        assert_eq!(
            got,
            CachedAnswer::Values(vec![url(1, "https://example.com/sn-0002")])
        );
        assert_eq!(fake.count(), 4);
        assert_eq!(fake.hops()[3].0, ip(ENTERPRISE));
        assert!(matches!(
            r.cache().get_sites("88.100.1", NOW),
            Lookup::Fresh(sites) if sites == vec![site(3, &[ENTERPRISE])]
        ));
    }

    #[tokio::test]
    async fn hs_serv_chain_is_followed() {
        let fake = Arc::new(Fake::default());
        // 0.NA/20.500 → HS_SERV 0.SERV/A → HS_SERV 0.SERV/B (+ a cycle back to A) → HS_SITE.
        fake.route(
            ROOT,
            "0.NA/20.500",
            Reply::Values(vec![text_value(1, "HS_SERV", "0.SERV/A")]),
        );
        fake.route(
            ROOT,
            "0.SERV/A",
            Reply::Values(vec![
                text_value(1, "HS_SERV", "0.SERV/B"),
                text_value(2, "HS_SERV", "0.SERV/A"),
            ]),
        );
        fake.route(
            ROOT,
            "0.SERV/B",
            Reply::Values(vec![site_value(1, "HS_SITE", &site(3, &[ENTERPRISE]))]),
        );
        fake.route(ENTERPRISE, "20.500/x", Reply::Values(vec![url(1, "u")]));
        let r = recursor(&fake);
        assert_eq!(
            resolve(&r, "20.500/x").await.unwrap(),
            CachedAnswer::Values(vec![url(1, "u")])
        );
        let hops: Vec<String> = fake.hops().into_iter().map(|h| h.2).collect();
        assert_eq!(hops, ["0.NA/20.500", "0.SERV/A", "0.SERV/B", "20.500/x"]);
        assert_eq!(fake.calls()[1].types, owned(&SERVICE_TYPES));

        // HS_SERV 0.NA/0.NA is the global service: the roots themselves.
        fake.route(
            ROOT,
            "0.NA/20.600",
            Reply::Values(vec![text_value(1, "HS_SERV", "0.NA/0.NA")]),
        );
        fake.route(ROOT, "20.600/y", Reply::Values(vec![url(1, "v")]));
        assert_eq!(
            resolve(&r, "20.600/y").await.unwrap(),
            CachedAnswer::Values(vec![url(1, "v")])
        );
        assert_eq!(fake.count(), 6);
    }

    #[tokio::test]
    async fn hs_serv_chain_is_depth_bounded() {
        let fake = Arc::new(Fake::default());
        fake.route(
            ROOT,
            "0.NA/20.700",
            Reply::Values(vec![text_value(1, "HS_SERV", "0.SERV/0")]),
        );
        for n in 0..40 {
            fake.route(
                ROOT,
                &format!("0.SERV/{n}"),
                Reply::Values(vec![text_value(1, "HS_SERV", &format!("0.SERV/{}", n + 1))]),
            );
        }
        let r = recursor(&fake);
        let err = resolve(&r, "20.700/z").await.unwrap_err();
        assert_eq!(err.code, ResponseCode::Error);
        assert!(err.message.contains("deeper"), "{err}");
        assert!(
            fake.count() <= MAX_SERVICE_DEPTH + 2,
            "{} calls",
            fake.count()
        );
    }

    #[tokio::test]
    async fn prefix_served_by_its_own_handles_is_a_cycle() {
        let fake = Arc::new(Fake::default());
        // 0.NA/30.1 says: ask the service described by 30.1/svc, which lives under 30.1.
        fake.route(
            ROOT,
            "0.NA/30.1",
            Reply::Values(vec![text_value(1, "HS_SERV", "30.1/svc")]),
        );
        let r = recursor(&fake);
        let err = resolve(&r, "30.1/x").await.unwrap_err();
        assert!(err.message.contains("depend on themselves"), "{err}");
        assert_eq!(fake.count(), 1);
    }

    #[test]
    fn resolve_futures_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let fake = Arc::new(Fake::default());
        let r = recursor(&fake);
        let h = handle("88.100.1/SN-0001");
        let future = r.resolve(&h, &[], &[], 0, NOW);
        assert_send(&future);
    }

    #[tokio::test]
    async fn service_referral_with_a_referral_handle() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        // 302 with no values, only a handle whose HS_SITE describes where to go.
        fake.route(
            ENTERPRISE,
            "88.100.1/moved",
            Reply::Referral(302, "0.SERV/E2", Vec::new()),
        );
        fake.route(
            ROOT,
            "0.SERV/E2",
            Reply::Values(vec![site_value(1, "HS_SITE", &site(9, &[ENTERPRISE_2]))]),
        );
        fake.route(
            ENTERPRISE_2,
            "88.100.1/moved",
            Reply::Values(vec![url(1, "here")]),
        );
        let r = recursor(&fake);
        assert_eq!(
            resolve(&r, "88.100.1/moved").await.unwrap(),
            CachedAnswer::Values(vec![url(1, "here")])
        );
        let hops: Vec<(IpAddr, String)> = fake.hops().into_iter().map(|h| (h.0, h.2)).collect();
        assert_eq!(
            hops[2..],
            [
                (ip(ENTERPRISE), "88.100.1/moved".to_string()),
                (ip(ROOT), "0.SERV/E2".to_string()),
                (ip(ENTERPRISE_2), "88.100.1/moved".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn prefix_handles_go_to_the_roots() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let r = recursor(&fake);
        // "0.NA/88.100.1" (and slash-less "88.100.1") resolve at the roots, following the 303.
        let got = resolve(&r, "88.100.1").await.unwrap();
        assert_eq!(
            got,
            CachedAnswer::Values(vec![site_value(1, "HS_SITE", &site(3, &[ENTERPRISE]))])
        );
        let hops: Vec<IpAddr> = fake.hops().into_iter().map(|h| h.0).collect();
        assert_eq!(hops, [ip(ROOT), ip(SECONDARY)]);
    }

    // --- server selection and transports -----------------------------------------------------

    /// A handle under `prefix` whose whole-handle hash picks server `want` of two.
    fn handle_for_server(prefix: &str, want: u32) -> String {
        (0..)
            .map(|n| format!("{prefix}/item-{n}"))
            .find(|h| handle_hash(h, HASH_BY_HANDLE) % 2 == want)
            .unwrap()
    }

    #[tokio::test]
    async fn two_server_site_routes_by_hash() {
        let fake = Arc::new(Fake::default());
        let two = site(4, &[ENTERPRISE, ENTERPRISE_2]);
        fake.route(
            ROOT,
            "0.NA/77.1",
            Reply::Values(vec![site_value(1, "HS_SITE", &two)]),
        );
        let first = handle_for_server("77.1", 0);
        let second = handle_for_server("77.1", 1);
        // Each server holds only its partition; the other would answer 301.
        fake.route(ENTERPRISE, &first, Reply::Values(vec![url(1, "first")]));
        fake.route(ENTERPRISE_2, &second, Reply::Values(vec![url(1, "second")]));
        let r = recursor(&fake);
        assert_eq!(
            resolve(&r, &first).await.unwrap(),
            CachedAnswer::Values(vec![url(1, "first")])
        );
        assert_eq!(
            resolve(&r, &second).await.unwrap(),
            CachedAnswer::Values(vec![url(1, "second")])
        );
        let hops = fake.hops();
        assert_eq!(hops.len(), 3);
        assert_eq!(
            (hops[1].0, hops[1].2.as_str()),
            (ip(ENTERPRISE), first.as_str())
        );
        assert_eq!(
            (hops[2].0, hops[2].2.as_str()),
            (ip(ENTERPRISE_2), second.as_str())
        );

        // The server the hash picks answers 301 and the site has no other copy: a failure
        // that says so (not a wrong answer from the other server).
        let third = handle_for_server("77.1", 0);
        fake.route(
            ENTERPRISE,
            &third,
            Reply::Code(301, "Request was hashed incorrectly"),
        );
        fake.route(
            ENTERPRISE_2,
            &third,
            Reply::Values(vec![url(1, "wrong server")]),
        );
        let r = recursor(&fake);
        let err = resolve(&r, &third).await.unwrap_err();
        assert!(err.message.contains("301"), "{err}");
    }

    #[tokio::test]
    async fn not_responsible_tries_the_next_site_primary_first() {
        let fake = Arc::new(Fake::default());
        let primary = site(5, &[TOP]);
        let mirror = SiteInfo {
            primary_mask: 0,
            ..site(6, &[SECONDARY])
        };
        // The mirror is listed first; the primary is still asked first.
        fake.route(
            ROOT,
            "0.NA/77.2",
            Reply::Values(vec![
                site_value(1, "HS_SITE", &mirror),
                site_value(2, "HS_SITE", &primary),
            ]),
        );
        fake.route(
            TOP,
            "77.2/a",
            Reply::Code(301, "That prefix doesn't live here"),
        );
        fake.route(SECONDARY, "77.2/a", Reply::Values(vec![url(1, "mirror")]));
        let r = recursor(&fake);
        assert_eq!(
            resolve(&r, "77.2/a").await.unwrap(),
            CachedAnswer::Values(vec![url(1, "mirror")])
        );
        let hops: Vec<IpAddr> = fake.hops().into_iter().map(|h| h.0).collect();
        assert_eq!(hops, [ip(ROOT), ip(TOP), ip(SECONDARY)]);
    }

    #[tokio::test]
    async fn udp_timeout_then_tcp() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        fake.route(
            ENTERPRISE,
            "88.100.1/SN-0001",
            Reply::UdpTimeout(Box::new(Reply::Values(vec![url(1, "over tcp")]))),
        );
        let r = recursor_with(&fake, |c| c.attempts = 2);
        let started = std::time::Instant::now();
        assert_eq!(
            resolve(&r, "88.100.1/SN-0001").await.unwrap(),
            CachedAnswer::Values(vec![url(1, "over tcp")])
        );
        // One backoff (100 ms) between the two UDP attempts.
        assert!(started.elapsed() >= Duration::from_millis(100));
        let (udp, tcp) = (Transport::Udp, Transport::Tcp);
        let to_enterprise: Vec<Transport> = fake
            .hops()
            .into_iter()
            .filter(|h| h.0 == ip(ENTERPRISE))
            .map(|h| h.1)
            .collect();
        assert_eq!(to_enterprise, [udp, udp, tcp]);
        // Each attempt is a new request id.
        let ids: HashSet<u32> = fake
            .calls()
            .iter()
            .map(|c| c.request.envelope.request_id)
            .collect();
        assert_eq!(ids.len(), 5);
    }

    // --- bounds and liars --------------------------------------------------------------------

    #[tokio::test]
    async fn referral_loop_fails_fast() {
        let fake = Arc::new(Fake::default());
        let root = site(1, &[ROOT]);
        fake.route(
            ROOT,
            "0.NA/66",
            Reply::Referral(
                303,
                "",
                vec![site_value(1, "HS_SITE.PREFIX", &site(2, &[TOP]))],
            ),
        );
        fake.route(
            TOP,
            "0.NA/66",
            Reply::Referral(303, "", vec![site_value(1, "HS_SITE.PREFIX", &root)]),
        );
        let r = recursor(&fake);
        let err = resolve(&r, "66/x").await.unwrap_err();
        assert_eq!(err.code, ResponseCode::Error);
        assert!(err.message.contains("loop"), "{err}");
        assert_eq!(fake.count(), 2);
    }

    #[tokio::test]
    async fn referral_chain_is_bounded() {
        let fake = Arc::new(Fake::default());
        // Root → S1 → S2 → … every hop a new site: no loop, just too long.
        let hosts: Vec<[u8; 4]> = (0..10).map(|n| [10, 1, 0, n]).collect();
        fake.route(
            ROOT,
            "0.NA/55",
            Reply::Referral(
                303,
                "",
                vec![site_value(1, "HS_SITE.PREFIX", &site(1, &[hosts[0]]))],
            ),
        );
        for pair in hosts.windows(2) {
            fake.route(
                pair[0],
                "0.NA/55",
                Reply::Referral(
                    303,
                    "",
                    vec![site_value(1, "HS_SITE.PREFIX", &site(1, &[pair[1]]))],
                ),
            );
        }
        let r = recursor_with(&fake, |c| c.max_referrals = 3);
        let err = resolve(&r, "55/x").await.unwrap_err();
        assert!(err.message.contains("more than 3 referrals"), "{err}");
        assert_eq!(fake.count(), 4);
    }

    #[tokio::test]
    async fn lying_upstreams_fail_clearly() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        fake.route(ENTERPRISE, "88.100.1/wrong-id", Reply::WrongRequestId);
        fake.route(
            ENTERPRISE,
            "88.100.1/garbage",
            Reply::Fail(ExchangeError::Malformed("envelope: truncated".into())),
        );
        fake.route(ENTERPRISE, "88.100.1/wrong-op", Reply::WrongOpCode);
        let r = recursor(&fake);
        for (h, expect) in [
            ("88.100.1/wrong-id", "request id"),
            ("88.100.1/garbage", "malformed response"),
            ("88.100.1/wrong-op", "opCode 101"),
        ] {
            let before = fake.count();
            let err = resolve(&r, h).await.unwrap_err();
            assert_eq!(err.code, ResponseCode::Error, "{h}");
            assert!(err.message.contains(expect), "{h}: {err}");
            // UDP then TCP, no retries of a liar, and nothing cached.
            let after: Vec<Transport> = fake.hops()[before..].iter().map(|h| h.1).collect();
            assert!(after.len() <= 4, "{h}: {after:?}");
            assert!(after.ends_with(&[Transport::Udp, Transport::Tcp]));
        }
        let key = CacheKey::new("88.100.1/wrong-id", &[], &[], true);
        assert_eq!(r.cache().get(&key, NOW), Lookup::Miss);
    }

    #[tokio::test]
    async fn deadline_bounds_a_hanging_upstream() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        fake.route(ENTERPRISE, "88.100.1/slow", Reply::Hang);
        let r = recursor_with(&fake, |c| c.deadline = Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = resolve(&r, "88.100.1/slow").await.unwrap_err();
        assert_eq!(err.code, ResponseCode::Error);
        assert!(err.message.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn recursion_count_limit() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let r = recursor_with(&fake, |c| c.max_recursion_count = 10);
        let h = handle("88.100.1/SN-0001");
        let err = r.resolve(&h, &[], &[], 10, NOW).await.unwrap_err();
        assert_eq!(err.code, ResponseCode::RecursionCountTooHigh);
        assert_eq!(fake.count(), 0);
        let err = r.resolve(&h, &[], &[], 255, NOW).await.unwrap_err();
        assert_eq!(err.code, ResponseCode::RecursionCountTooHigh);
        // 9 + 1 = 10 is allowed, and that is what goes upstream.
        r.resolve(&h, &[], &[], 9, NOW).await.unwrap();
        assert!(fake
            .calls()
            .iter()
            .all(|c| c.request.header.recursion_count == 10));
    }

    // --- answers and the cache ---------------------------------------------------------------

    #[tokio::test]
    async fn not_found_is_cached_as_negative() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        fake.route(
            ENTERPRISE,
            "88.100.1/none",
            Reply::Code(100, "Handle Not Found"),
        );
        let r = recursor(&fake);
        assert_eq!(
            resolve(&r, "88.100.1/none").await.unwrap(),
            CachedAnswer::HandleNotFound
        );
        let calls = fake.count();
        assert_eq!(
            resolve(&r, "88.100.1/none").await.unwrap(),
            CachedAnswer::HandleNotFound
        );
        assert_eq!(fake.count(), calls);

        // A prefix the roots do not know: the identifier does not exist (and that is cached).
        fake.route(ROOT, "0.NA/99", Reply::Code(100, ""));
        assert_eq!(
            resolve(&r, "99/x").await.unwrap(),
            CachedAnswer::HandleNotFound
        );
        let calls = fake.count();
        assert_eq!(
            resolve(&r, "99/y").await.unwrap(),
            CachedAnswer::HandleNotFound
        );
        assert_eq!(fake.count(), calls, "the missing prefix is remembered");
    }

    #[tokio::test]
    async fn other_codes() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        fake.route(ENTERPRISE, "88.100.1/empty", Reply::Code(200, ""));
        fake.route(ENTERPRISE, "88.100.1/secret", Reply::Code(401, "no access"));
        fake.route(ENTERPRISE, "88.100.1/odd", Reply::Code(999, "what"));
        fake.route(
            ENTERPRISE,
            "88.100.1/private",
            Reply::Values(vec![
                url(1, "admin only").with_permissions(crate::model::ValuePermissions::ADMIN_ONLY)
            ]),
        );
        let r = recursor(&fake);
        assert_eq!(
            resolve(&r, "88.100.1/empty").await.unwrap(),
            CachedAnswer::ValuesNotFound
        );
        let err = resolve(&r, "88.100.1/secret").await.unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (ResponseCode::InsufficientPermissions, "no access")
        );
        let err = resolve(&r, "88.100.1/odd").await.unwrap_err();
        assert_eq!(err.code, ResponseCode::Error);
        assert!(err.message.contains("999"), "{err}");
        // Values without public read never come out of a public-only resolve.
        assert_eq!(
            resolve(&r, "88.100.1/private").await.unwrap(),
            CachedAnswer::ValuesNotFound
        );
    }

    #[tokio::test]
    async fn stale_answer_served_when_upstream_fails() {
        let fake = Arc::new(Fake::default());
        three_levels(&fake);
        let mut short = url(1, "cached");
        short.ttl = Ttl::Relative(60);
        fake.route(
            ENTERPRISE,
            "88.100.1/SN-0001",
            Reply::Values(vec![short.clone()]),
        );
        let r = recursor(&fake);
        let h = handle("88.100.1/SN-0001");
        assert_eq!(
            r.resolve(&h, &[], &[], 0, NOW).await.unwrap(),
            CachedAnswer::Values(vec![short.clone()])
        );
        // The enterprise goes away; past the TTL the stale answer is served (after trying).
        fake.route(
            ENTERPRISE,
            "88.100.1/SN-0001",
            Reply::Fail(ExchangeError::Io("connection refused".into())),
        );
        let before = fake.count();
        assert_eq!(
            r.resolve(&h, &[], &[], 0, NOW + 61).await.unwrap(),
            CachedAnswer::Values(vec![short])
        );
        assert!(fake.count() > before, "the upstream was tried first");
        assert_eq!(r.stats().stale_served, 1);
        // Past the stale window it is gone: the failure comes through.
        let err = r
            .resolve(&h, &[], &[], 0, NOW + 61 + 300)
            .await
            .unwrap_err();
        assert_eq!(err.code, ResponseCode::Error);
        assert!(err.message.contains("connection refused"), "{err}");
    }

    #[tokio::test]
    async fn no_roots_no_hang() {
        let fake = Arc::new(Fake::default());
        let r = recursor_with(&fake, |c| c.roots.clear());
        let err = resolve(&r, "88.100.1/x").await.unwrap_err();
        assert!(err.message.contains("no root sites"), "{err}");
    }
}
