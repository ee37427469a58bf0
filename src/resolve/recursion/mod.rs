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
//!      ─► 1 Values · 100 HandleNotFound · 200 ValuesNotFound · anything else a ResolveError
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
//!
//! The files: here the [`Recursor`] (settings, admission, counters, the public resolve
//! calls, the cache and single flight around a fetch) and the [`Upstream`] trait; `walk`
//! the hierarchy walk of one fetch (prefix and service sites, referrals, the sites and
//! servers asked, its `Ctx`); `check` what an upstream answer means (codes, the request
//! sent).

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::cache::{Cache, CacheKey, CachedAnswer, Lookup};
use super::ResolveError;
use crate::auth::credential::Certification;
use crate::model::{types, Handle, SiteInfo, Transport};
use crate::net::CidrList;
use crate::wire::handle::exchange::ExchangeError;
use crate::wire::handle::message::Message;

mod check;
mod walk;

use check::error;
use walk::Ctx;

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

/// The TTL, in seconds, of a stale answer served because the upstream failed (RFC 8767 §4
/// recommends 30): short, so downstream caches ask again soon.
pub const STALE_ANSWER_TTL: u32 = 30;

/// Service-handle chains are followed this deep (Handle.Net `BootstrapHandles.MAX_DEPTH`).
pub const MAX_SERVICE_DEPTH: usize = 20;
/// Upstream exchanges one resolve may make, retries included.
pub const MAX_EXCHANGES: usize = 64;

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
    pub fn failure(self) -> ResolveError {
        match self {
            Refused::Busy => ResolveError::Busy,
            Refused::NotAllowed => ResolveError::NotResponsible,
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
    fn check_shape(&self, indexes: &[u32], types: &[String]) -> Result<(), ResolveError> {
        check_request_shape(indexes, types).map_err(|why| {
            self.count_refusal("shape");
            ResolveError::Malformed(why)
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
    ) -> Result<CachedAnswer, ResolveError> {
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
    ) -> Result<(CachedAnswer, u32), ResolveError> {
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
    ) -> Result<(CachedAnswer, u32), ResolveError> {
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
    ) -> Result<(CachedAnswer, Certification), ResolveError> {
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
    ) -> Result<(CachedAnswer, u32), ResolveError> {
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
    ) -> Result<(CachedAnswer, Option<Certification>), ResolveError> {
        let outgoing = match recursion_count.checked_add(1) {
            Some(n) if n <= self.config.max_recursion_count => n,
            _ => {
                return Err(ResolveError::RecursionTooDeep {
                    count: recursion_count,
                    max: self.config.max_recursion_count,
                })
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
}

#[cfg(test)]
mod tests;
