//! The one resolution entry point: every front end (native, DNS, HTTP) and `idnode export`
//! asks the [`Resolver`], which chains this node's authority (the [`Engine`] over the
//! registry) with the [`Recursor`] (its cache, then upstream sites) when the node recurses.
//!
//! ```text
//!  front end ─► Resolver::route(handle, client)
//!                 ├─ Local ───────► Resolver::local ───► Engine (homed / mirrored records)
//!                 ├─ Upstream(p) ─► Resolver::upstream ► Recursor ─► cache ─► upstream sites
//!                 └─ Busy (every recursion slot taken: the front end says so its own way)
//!  every path ─► Answer { outcome: values or ResolveError, origin: Local | Relayed }
//! ```
//!
//! Routing is a separate, synchronous step because the front ends answer local queries on
//! their hot path (a UDP worker thread, no task) and only hand upstream work to a task;
//! [`Resolver::resolve`] does both for callers that are async anyway (HTTP).
//!
//! Rules the front ends no longer spell out themselves:
//! - only identifiers this node is not responsible for are fetched upstream, and only for
//!   clients `recursion.allow` lists (everyone else gets the local answer: 301);
//! - recursion returns public values only: a query for non-public values is answered
//!   locally (HTTP's authenticated reads);
//! - a relayed "not found" is an answer with a lifetime like any other ([`Origin::Relayed`]),
//!   so front ends may replay it until `fresh_for` runs out;
//! - certified fetches ([`Certify`]) bypass the cache; [`Certify::Require`] (the CT flag)
//!   turns an upstream answer whose signature did not verify into RC 2.

use std::net::IpAddr;
use std::sync::Arc;

use super::cache::CachedAnswer;
use super::recursion::{Ask, Caller, RecursionPermit, Recursor, Refused};
use super::{Engine, Query, ResolveError};
use crate::auth::credential::Certification;
use crate::auth::Identity;
use crate::model::{Handle, HandleValue, ResponseCode};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Decided by this node: its registry answered, or it refused.
    Local,
    /// Fetched through the hierarchy or served from the cache of such fetches.
    Relayed {
        /// Seconds the answer stays fresh (0: not to be kept or replayed).
        fresh_for: u32,
        /// The answering server's signature over it was checked ([`Certify`]).
        verified: bool,
    },
}

impl Origin {
    /// Seconds a relayed answer may still be replayed; `None` for local answers.
    pub fn fresh_for(self) -> Option<u32> {
        match self {
            Origin::Local => None,
            Origin::Relayed { fresh_for, .. } => Some(fresh_for),
        }
    }

    /// Whether an upstream signature over the answer verified (never for local answers,
    /// which this node signs itself when asked).
    pub fn verified(self) -> bool {
        matches!(self, Origin::Relayed { verified: true, .. })
    }
}

/// The result of one resolution: the values or why there are none, and where it came from.
/// Not-found answers are failures with RC 100 / 200 and the texts the engine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Result<Vec<HandleValue>, ResolveError>,
    pub origin: Origin,
}

impl Answer {
    fn local(outcome: Result<Vec<HandleValue>, ResolveError>) -> Answer {
        Answer {
            outcome,
            origin: Origin::Local,
        }
    }

    fn relayed(found: CachedAnswer, fresh_for: u32, verified: bool) -> Answer {
        let outcome = match found {
            CachedAnswer::Values(values) => Ok(values),
            CachedAnswer::HandleNotFound => Err(not_found()),
            CachedAnswer::ValuesNotFound => Err(ResolveError::NoValues),
        };
        Answer {
            outcome,
            origin: Origin::Relayed {
                fresh_for,
                verified,
            },
        }
    }

    /// A failure before or instead of an upstream answer (nothing to keep).
    fn failed_upstream(failure: ResolveError) -> Answer {
        Answer {
            outcome: Err(failure),
            origin: Origin::Relayed {
                fresh_for: 0,
                verified: false,
            },
        }
    }
}

fn not_found() -> ResolveError {
    ResolveError::NotFound
}

/// Where a query goes ([`Resolver::route`]).
pub enum Route {
    /// This node answers from its registry.
    Local,
    /// Through the hierarchy, holding one of `recursion.max_concurrent` slots (the permit
    /// carries the recursor, so only a recursing node can route here).
    Upstream(RecursionPermit),
    /// The node would recurse for this client, but every slot is taken.
    Busy,
}

/// Whether an upstream answer's signature is asked for and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Certify {
    /// The cached path: no signature.
    #[default]
    No,
    /// Ask for a signature and say whether it verified, but relay the answer either way
    /// (the ID-SDK's trusted query, which marks the answer trusted only when it verified).
    Check,
    /// The CT flag: an answer whose signature did not verify is not relayed (RC 2).
    Require,
}

/// How an upstream fetch is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fetch {
    /// The incoming request's recursion count (upstream requests carry one more).
    pub recursion_count: u8,
    pub certify: Certify,
}

/// What a lookup over several candidate identifiers found ([`Resolver::local_candidates`]):
/// DNS names and zone export, where one name may read as more than one identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The first candidate with a record, and its values.
    Values(Handle, Vec<HandleValue>),
    /// The first candidate with a record has no (public) values.
    NoValues(Handle),
    /// No candidate has a record.
    NoHandle,
    /// This node is not responsible for this candidate, the first it could not find
    /// (routing it may send it upstream).
    NotResponsible(Handle),
    /// Something else went wrong (storage, upstream failure).
    Failed(ResolveError),
}

/// [`Found`] and where it came from (the least `fresh_for` over the candidates asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateAnswer {
    pub found: Found,
    pub origin: Origin,
}

/// Authority, then cache and upstream. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    engine: Engine,
    recursor: Option<Arc<Recursor>>,
}

impl Resolver {
    /// A resolver over `engine`, recursing through `recursor` when there is one.
    pub fn new(engine: Engine, recursor: Option<Arc<Recursor>>) -> Resolver {
        Resolver { engine, recursor }
    }

    /// The engine behind the local answers (also what front ends write through).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn recursor(&self) -> Option<&Arc<Recursor>> {
        self.recursor.as_ref()
    }

    /// Whether this node recurses at all (DNS's RA bit, the status page).
    pub fn recurses(&self) -> bool {
        self.recursor.is_some()
    }

    /// Whether answers relayed from upstream may be given to `client`: it is on
    /// `recursion.allow`, or the node does not recurse (nothing relayed to withhold).
    /// Replayed answers are checked with this before they leave.
    pub fn relays_to(&self, client: IpAddr) -> bool {
        self.recursor.as_ref().is_none_or(|r| r.allows(client))
    }

    /// Where a query for `handle` from `client` goes. Upstream only for identifiers this
    /// node is not responsible for (a storage error counts as responsible: the local answer
    /// reports it) and for clients the recursor admits.
    pub fn route(&self, handle: &Handle, client: IpAddr) -> Route {
        let Some(recursor) = &self.recursor else {
            return Route::Local;
        };
        if self.engine.is_responsible(handle).unwrap_or(true) {
            return Route::Local;
        }
        match recursor.admit(client) {
            Ok(permit) => Route::Upstream(permit),
            Err(Refused::NotAllowed) => Route::Local,
            Err(Refused::Busy) => Route::Busy,
        }
    }

    /// The registry's answer (homed and mirrored prefixes, referrals, 301 otherwise).
    pub fn local(&self, q: &Query, identity: Option<&Identity>) -> Answer {
        Answer::local(self.engine.resolve(q, identity).map(|r| r.values))
    }

    /// Resolve `q` through the hierarchy for an admitted client (public values only).
    /// `now` is unix seconds: the cache's clock and the upstream request's expiry.
    pub async fn upstream(
        &self,
        permit: &RecursionPermit,
        q: &Query,
        fetch: Fetch,
        now: u64,
    ) -> Answer {
        let ask = Ask {
            handle: &q.handle,
            indexes: &q.indexes,
            types: &q.types,
            recursion_count: fetch.recursion_count,
            now,
        };
        let caller = match fetch.certify {
            Certify::No => Caller::Admitted(permit),
            Certify::Check | Certify::Require => Caller::Certified(permit),
        };
        // The permit's recursor: a permit exists only where the node recurses.
        let resolved = match permit.recursor().resolve(caller, ask).await {
            Ok(resolved) => resolved,
            Err(f) => return Answer::failed_upstream(f),
        };
        match resolved.certification {
            None => Answer::relayed(resolved.answer, resolved.fresh_for, false),
            // Certified answers bypass the cache and are never replayed.
            Some(Certification::Verified) => Answer::relayed(resolved.answer, 0, true),
            Some(check) if fetch.certify == Certify::Require => {
                Answer::failed_upstream(ResolveError::Unverified(check.describe().to_string()))
            }
            Some(_) => Answer::relayed(resolved.answer, 0, false),
        }
    }

    /// Route and resolve in one step, for async callers: public queries from a known client
    /// for identifiers this node does not home go upstream (RC 3 when every recursion slot
    /// is taken); everything else, and every query for non-public values, is answered here.
    pub async fn resolve(
        &self,
        q: &Query,
        identity: Option<&Identity>,
        client: Option<IpAddr>,
        now: u64,
    ) -> Answer {
        let route = match client {
            Some(client) if q.public_only => self.route(&q.handle, client),
            _ => Route::Local,
        };
        match route {
            Route::Local => self.local(q, identity),
            Route::Upstream(permit) => self.upstream(&permit, q, Fetch::default(), now).await,
            Route::Busy => Answer::local(Err(Refused::Busy.failure())),
        }
    }

    /// The registry's public answer for the first of `candidates` that has a record.
    pub fn local_candidates(&self, candidates: &[Handle]) -> CandidateAnswer {
        let mut found = Found::NoHandle;
        for handle in candidates {
            let answer = self.local(&public_query(handle), None);
            found = match answer.outcome {
                Ok(values) => Found::Values(handle.clone(), values),
                Err(f) => match f.code() {
                    ResponseCode::HandleNotFound => continue,
                    ResponseCode::ValuesNotFound => Found::NoValues(handle.clone()),
                    ResponseCode::ServerNotResponsible => Found::NotResponsible(handle.clone()),
                    _ => Found::Failed(f),
                },
            };
            break;
        }
        CandidateAnswer {
            found,
            origin: Origin::Local,
        }
    }

    /// [`Resolver::local_candidates`] through the hierarchy, for an admitted client; the
    /// answer stays fresh for the least lifetime over the candidates asked.
    pub async fn upstream_candidates(
        &self,
        permit: &RecursionPermit,
        candidates: &[Handle],
        now: u64,
    ) -> CandidateAnswer {
        let mut found = Found::NoHandle;
        let mut least: Option<u32> = None;
        for handle in candidates {
            let answer = self
                .upstream(permit, &public_query(handle), Fetch::default(), now)
                .await;
            if let (false, Some(fresh)) = (is_upstream_failure(&answer), answer.origin.fresh_for())
            {
                least = Some(least.map_or(fresh, |l| l.min(fresh)));
            }
            found = match answer.outcome {
                Ok(values) => Found::Values(handle.clone(), values),
                Err(f) => match f.code() {
                    ResponseCode::HandleNotFound => continue,
                    ResponseCode::ValuesNotFound => Found::NoValues(handle.clone()),
                    _ => Found::Failed(f),
                },
            };
            break;
        }
        CandidateAnswer {
            found,
            origin: Origin::Relayed {
                fresh_for: least.unwrap_or(0),
                verified: false,
            },
        }
    }
}

/// Whether a relayed answer is a failure to get one (as opposed to an upstream's "not found").
fn is_upstream_failure(answer: &Answer) -> bool {
    matches!(&answer.outcome, Err(f)
        if !matches!(f.code(), ResponseCode::HandleNotFound | ResponseCode::ValuesNotFound))
}

/// All public values of `handle`, no referral (DNS and export).
fn public_query(handle: &Handle) -> Query {
    Query {
        handle: handle.clone(),
        indexes: Vec::new(),
        types: Vec::new(),
        public_only: true,
        refer: false,
    }
}

#[cfg(test)]
mod tests;
