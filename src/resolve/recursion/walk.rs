//! The hierarchy walk of one fetch: find the sites of a handle's prefix (cached, or `0.NA/P`
//! at the roots, following HS_SERV chains), ask the handle there (primary sites first, the
//! server by the site's hash, UDP then TCP with backoff) and follow 302/303 referrals, all
//! bounded and loop-checked through the fetch's [`Ctx`].
//!
//! It sits beside the [`Recursor`] it extends (another `impl Recursor` block): the walk
//! reads its settings, cache, counters and [`Upstream`](super::Upstream), and
//! [`check`](super::check) decides what each answer means.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::check::{error, public_answer, resolution_request, try_next_site, upstream_failure};
use super::{BoxFuture, Recursor, MAX_EXCHANGES, MAX_SERVICE_DEPTH, PREFIX_RECORD_TYPES};
use crate::auth::credential::{certification, Certification};
use crate::model::{
    types, Handle, HandleValue, PublicKey, ResponseCode, SiteInfo, Transport, PREFIX_NA,
};
use crate::resolve::cache::{CacheKey, CachedAnswer, Lookup};
use crate::resolve::site::{query_port, server_for};
use crate::resolve::ResolveError;
use crate::wire::handle::exchange::{check_resolution_answer, ExchangeError};
use crate::wire::handle::message::{flag, Body, Message};

/// Types asked for when resolving a service handle named by HS_SERV or a 302 referral.
pub(super) const SERVICE_TYPES: [&str; 3] = [types::HS_SITE, types::HS_SITE_6, types::HS_SERV];
/// Types asked for when resolving a service handle named by HS_SERV.PREFIX or a 303 referral.
const PREFIX_SERVICE_TYPES: [&str; 2] = [types::HS_SITE_PREFIX, types::HS_SERV_PREFIX];
/// The legacy name of HS_SITE.PREFIX.
const HS_NA_DELEGATE: &str = "HS_NA_DELEGATE";
/// `HS_SERV 0.NA/0.NA` means "the global service": the roots.
const GLOBAL_SERVICE: &str = "0.NA/0.NA";
/// Sites tried for one query (a referral may name many).
const MAX_SITES_PER_QUERY: usize = 8;
/// Sites kept from one set of values, and service handles followed from it.
const MAX_SITES_PER_VALUES: usize = 32;
const MAX_SERVICES_PER_VALUES: usize = 8;
/// Handle.Net keeps relative TTLs for at most two days (`HandleValue.MAX_RECOGNIZED_TTL`).
const MAX_RECOGNIZED_TTL: u32 = 172_800;
/// Backoff between attempts after a timeout: 100 ms, doubling, at most this.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// How 303 referral values are read: prefix sites, else plain service sites.
const PREFIX_THEN_SERVICE: &[SiteKind] = &[SiteKind::Prefix, SiteKind::Service];

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
pub(super) struct Ctx {
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
    prefixes: HashMap<String, Result<Option<Vec<SiteInfo>>, ResolveError>>,
    /// Ask every upstream for certified (CT) answers and check their signatures.
    pub(super) certify: bool,
    /// The check of the last answer kept from a server (the final answer, once the fetch
    /// ends): its `HS_SIGNED` credential against the key in that server's HS_SITE entry.
    pub(super) certification: Option<Certification>,
}

impl Ctx {
    pub(super) fn new(now: u64, recursion_count: u8) -> Ctx {
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

pub(super) fn owned(types: &[&str]) -> Vec<String> {
    types.iter().map(|t| t.to_string()).collect()
}

/// What `values` name as `kind` at `now` (unix seconds): the sites given directly (HS_SITE /
/// HS_SITE.6, or HS_SITE.PREFIX / HS_NA_DELEGATE), and the service handles named (HS_SERV or
/// HS_SERV.PREFIX) with their TTLs, at most [`MAX_SERVICES_PER_VALUES`].
fn named_sites(values: &[HandleValue], kind: SiteKind, now: u32) -> (Sites, Vec<(String, u32)>) {
    let (site_types, serv_type): (&[&str], &str) = match kind {
        SiteKind::Service => (&[types::HS_SITE, types::HS_SITE_6], types::HS_SERV),
        SiteKind::Prefix => (
            &[types::HS_SITE_PREFIX, HS_NA_DELEGATE],
            types::HS_SERV_PREFIX,
        ),
    };
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
    let services = values
        .iter()
        .filter(|v| v.is_type(serv_type))
        .filter_map(|v| {
            let text = v.data_str()?.trim().to_string();
            (!text.is_empty()).then(|| (text, v.ttl.seconds_from(now, MAX_RECOGNIZED_TTL)))
        })
        .take(MAX_SERVICES_PER_VALUES)
        .collect();
    (sites, services)
}

impl Recursor {
    /// Resolve a handle text: find its prefix's sites (or the roots) and ask them.
    pub(super) fn lookup<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        handle: &'a str,
        indexes: &'a [u32],
        types: &'a [String],
        depth: usize,
    ) -> BoxFuture<'a, Result<CachedAnswer, ResolveError>> {
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
    ) -> Result<CachedAnswer, ResolveError> {
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
                    tracing::debug!(handle = %full, error = %f, code = f.code().code(), "serving a stale service record");
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
    ) -> Result<Option<Vec<SiteInfo>>, ResolveError> {
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
                tracing::debug!(%prefix, error = %f, code = f.code().code(), "serving stale prefix sites");
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
    ) -> Result<Option<Vec<SiteInfo>>, ResolveError> {
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
            .sites_from_values(ctx, &values, &[SiteKind::Service], depth + 1)
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

    /// The sites a set of values describes, read as the first of `kinds` that names any:
    /// direct site values, plus the sites of the service handles they name (resolved
    /// recursively). [`PREFIX_THEN_SERVICE`] makes plain HS_SITE / HS_SERV values the
    /// fallback when there are no prefix ones (as Handle.Net does for 303 referrals). A kind
    /// whose service handles all failed, with no sites, fails the whole (no fallback).
    async fn sites_from_values(
        &self,
        ctx: &mut Ctx,
        values: &[HandleValue],
        kinds: &[SiteKind],
        depth: usize,
    ) -> Result<Sites, ResolveError> {
        let mut sites = Sites::default();
        for &kind in kinds {
            let (mut named, services) = named_sites(values, kind, ctx.now32());
            let mut first_error = None;
            for (service, ttl) in services {
                match self.service_sites(ctx, &service, kind, depth + 1).await {
                    Ok(found) => {
                        if !found.list.is_empty() {
                            named.note_ttl(ttl);
                        }
                        named.absorb(found);
                    }
                    Err(f) => {
                        tracing::debug!(%service, error = %f, code = f.code().code(), "service handle failed");
                        first_error.get_or_insert(f);
                    }
                }
            }
            match first_error {
                Some(f) if named.list.is_empty() => return Err(f),
                _ => sites = named,
            }
            if !sites.list.is_empty() {
                break;
            }
        }
        Ok(sites)
    }

    /// The sites of a service handle (HS_SERV / HS_SERV.PREFIX data, or a referral handle).
    fn service_sites<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        service: &'a str,
        kind: SiteKind,
        depth: usize,
    ) -> BoxFuture<'a, Result<Sites, ResolveError>> {
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
                    self.sites_from_values(ctx, &values, &[kind], depth).await
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
    ) -> Result<CachedAnswer, ResolveError> {
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
            match (ResponseCode::from_u32(code), response.body) {
                (Some(ResponseCode::Success), Body::Values { values, .. }) => {
                    return Ok(public_answer(values))
                }
                (Some(ResponseCode::HandleNotFound), _) => return Ok(CachedAnswer::HandleNotFound),
                (Some(ResponseCode::ValuesNotFound), _) => return Ok(CachedAnswer::ValuesNotFound),
                (
                    Some(rc @ (ResponseCode::ServiceReferral | ResponseCode::PrefixReferral)),
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
                    let (kind, kinds) = if rc == ResponseCode::PrefixReferral {
                        (SiteKind::Prefix, PREFIX_THEN_SERVICE)
                    } else {
                        (SiteKind::Service, &[SiteKind::Service][..])
                    };
                    let mut next = self
                        .sites_from_values(ctx, &values, kinds, depth)
                        .await
                        .unwrap_or_else(|f| {
                            tracing::debug!(error = %f, code = f.code().code(), "referral values led nowhere");
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
                (_, body) => return Err(upstream_failure(server, code, body)),
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
    ) -> Result<(SocketAddr, Message), ResolveError> {
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
