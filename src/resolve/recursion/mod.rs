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
//!   [`RecursionPermit`] it hands out is held for the whole of [`Recursor::resolve`]
//!   ([`Caller::Admitted`], [`Caller::Certified`]); every request counts once, also one that
//!   waits on another request's identical fetch (so waiters are bounded too). Refusals are
//!   counted (`idnode_recursion_refused_total{reason}`).
//! - [`Caller::Unadmitted`], for callers that do not know the client, takes a permit on a
//!   cache miss: the cap holds for every caller.
//! - [`check_request_shape`] bounds what one request may ask (types, their length, indexes);
//!   every resolve checks it before a cache key exists, so no caller can make the cache hold
//!   client-chosen lists of any size.
//!
//! The network is behind the [`Upstream`] trait: this module holds no sockets. The real one is
//! `server::upstream::NetworkUpstream` (tokio UDP with reassembly, TCP with CN continuation,
//! over the sans-IO `wire::handle::exchange`, whose request builder and answer checks this
//! walk uses too); tests use a scripted fake.
//!
//! The files: here the [`Recursor`] (settings, admission, counters, the one
//! [`Recursor::resolve`], the cache and single flight around a fetch) and the [`Upstream`] trait; `walk`
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
/// `recursion.max_concurrent`, given back when dropped, and the recursor that gave it (so
/// whoever holds a permit has a recursor to resolve with). Hold it until the answer is built.
pub struct RecursionPermit {
    recursor: Arc<Recursor>,
    _slot: OwnedSemaphorePermit,
}

impl RecursionPermit {
    /// The recursor that admitted the client.
    pub fn recursor(&self) -> &Arc<Recursor> {
        &self.recursor
    }
}

impl std::fmt::Debug for RecursionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecursionPermit").finish_non_exhaustive()
    }
}

/// Who asks [`Recursor::resolve`], which decides the admission and the path of the answer.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A caller that does not know the client: no allow-list, but a cache miss takes a
    /// permit itself (RC 3 when none is free; a stale answer is served instead if there is
    /// one), so the cap holds for every caller. Front ends use [`Recursor::admit`].
    Unadmitted,
    /// A client admitted by [`Recursor::admit`]; the permit is held (borrowed) until the
    /// answer is returned.
    Admitted(&'a RecursionPermit),
    /// An admitted client asking for a certified answer (its request had CT, or the ID-SDK's
    /// trusted-query bit): fetched through the hierarchy with CT on every hop, never from or
    /// into the cache, and the final answer's signature checked with the key of the HS_SITE
    /// entry of the server that gave it. Only the last hop is checked: the sites on the way
    /// (from the configured roots, which carry no keys) are taken as the referrals give them.
    Certified(&'a RecursionPermit),
}

/// One recursive question ([`Recursor::resolve`]).
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub handle: &'a Handle,
    /// Index filter (empty: all).
    pub indexes: &'a [u32],
    /// Type filter (empty: all).
    pub types: &'a [String],
    /// The incoming request's recursion count; upstream requests carry one more.
    pub recursion_count: u8,
    /// Unix seconds: the cache's clock and the upstream request's expiration.
    pub now: u64,
}

impl<'a> Ask<'a> {
    /// All values of `handle`, asked at `now` by a request that was not itself relayed.
    pub fn new(handle: &'a Handle, now: u64) -> Ask<'a> {
        Ask {
            handle,
            indexes: &[],
            types: &[],
            recursion_count: 0,
            now,
        }
    }
}

/// What [`Recursor::resolve`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub answer: CachedAnswer,
    /// How many more seconds the answer stays fresh: the rest of its cache lifetime when it
    /// came from the cache, its whole lifetime when it was just fetched (0 when not
    /// cacheable), [`STALE_ANSWER_TTL`] for a stale answer served because the upstream failed
    /// (RFC 8767 §4), and 0 for a certified answer (never cached). DNS answers count their
    /// TTLs down to it.
    pub fresh_for: u32,
    /// For [`Caller::Certified`], the check of the answer's signature; `None` otherwise.
    pub certification: Option<Certification>,
}

impl Resolved {
    fn cached(answer: CachedAnswer, fresh_for: u32) -> Resolved {
        Resolved {
            answer,
            fresh_for,
            certification: None,
        }
    }
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
    /// flight. Hold the permit for the whole [`Recursor::resolve`] call
    /// ([`Caller::Admitted`] or [`Caller::Certified`]).
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<RecursionPermit, Refused> {
        if !self.allows(client) {
            self.count_refusal(Refused::NotAllowed.label());
            return Err(Refused::NotAllowed);
        }
        let slot = self.slot()?;
        Ok(RecursionPermit {
            recursor: self.clone(),
            _slot: slot,
        })
    }

    /// One of `max_concurrent` slots, or [`Refused::Busy`] (counted).
    fn slot(&self) -> Result<OwnedSemaphorePermit, Refused> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(slot),
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

    /// Resolve `ask.handle` with its index/type filters, public values only, the way
    /// `caller` says ([`Caller`]: who admitted the client, whether the answer is certified).
    ///
    /// A fetch that would send more than `max_recursion_count` upstream fails with RC 6 (a
    /// fresh cached answer is still served). Front ends turn a slash-less `X` into `0.NA/X`
    /// ([`Handle::parse_lenient`]).
    pub async fn resolve(
        &self,
        caller: Caller<'_>,
        ask: Ask<'_>,
    ) -> Result<Resolved, ResolveError> {
        // Before any cache key exists: oversized lists never reach the cache.
        self.check_shape(ask.indexes, ask.types)?;
        let permit = match caller {
            Caller::Certified(_) => {
                let (answer, certification) = self.fetch(&ask, true).await?;
                let certification = certification.unwrap_or_else(|| {
                    Certification::Invalid("no upstream server was asked".into())
                });
                return Ok(Resolved {
                    answer,
                    fresh_for: 0,
                    certification: Some(certification),
                });
            }
            Caller::Admitted(permit) => Some(permit),
            Caller::Unadmitted => None,
        };
        let (handle, now) = (ask.handle, ask.now);
        let key = CacheKey::new(handle.key(), ask.indexes, ask.types, true);
        let stale = match self.cache.get_expiring(&key, now) {
            Lookup::Fresh((answer, expires)) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(handle = handle.as_str(), "answered from the cache");
                let left = u32::try_from(expires.saturating_sub(now)).unwrap_or(u32::MAX);
                return Ok(Resolved::cached(answer, left));
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
                            Ok(Resolved::cached(answer, STALE_ANSWER_TTL))
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
                let (answer, _) = self.fetch(&ask, false).await?;
                self.cache.put(key.clone(), answer.clone(), now);
                Ok(answer)
            })
            .await;
        match fetched {
            Ok(answer) => {
                let left = self.cache.lifetime(&answer, now);
                Ok(Resolved::cached(answer, left))
            }
            Err(failure) => match stale {
                Some(answer) => {
                    self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        handle = handle.as_str(),
                        error = %failure,
                        "upstream failed; serving a stale answer"
                    );
                    Ok(Resolved::cached(answer, STALE_ANSWER_TTL))
                }
                None => Err(failure),
            },
        }
    }

    /// One fetch through the hierarchy, bounded by the deadline. With `certify`, every
    /// upstream is asked for a signed answer and the final one's check is returned too.
    async fn fetch(
        &self,
        ask: &Ask<'_>,
        certify: bool,
    ) -> Result<(CachedAnswer, Option<Certification>), ResolveError> {
        let (handle, recursion_count) = (ask.handle.as_str(), ask.recursion_count);
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
        let mut ctx = Ctx::new(ask.now, outgoing);
        ctx.certify = certify;
        let work = self.lookup(&mut ctx, handle, ask.indexes, ask.types, 0);
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
