//! The resolution cache of recursive (resolving) nodes, with single-flight coalescing of fetches.
//!
//! # What it holds
//!
//! Two separate keyspaces, each bounded to [`CacheConfig::max_entries`] entries and together
//! to [`CacheConfig::max_bytes`] bytes (answers 7/8 of it, prefix sites 1/8):
//!
//! - **answers**, keyed by [`CacheKey`] (handle text + requested indexes + requested types +
//!   public-only flag): the values of a resolution ([`CachedAnswer::Values`]) or a negative
//!   answer ([`CachedAnswer::HandleNotFound`], [`CachedAnswer::ValuesNotFound`]);
//! - **prefix sites**, keyed by the prefix text ASCII-uppercased (as [`crate::model::Prefix`]
//!   normalizes it): the [`SiteInfo`] list that serves a prefix, found by walking referrals.
//!
//! The handle text of a [`CacheKey`] is used as given: the caller passes the normalized handle
//! (prefix uppercased, suffix case per the node's policy). Indexes and types are normalized
//! (sorted, deduplicated; types ASCII-uppercased) so equivalent queries share an entry.
//!
//! # TTL rules (handle-protocol.md §6.7)
//!
//! Time is passed in as unix seconds (`now`), so the cache never reads the clock.
//!
//! - A values answer lives for the smallest TTL of its values, each computed with
//!   [`crate::model::Ttl::seconds_from`]: relative TTLs count from `now`, absolute TTLs are the
//!   unix expiry time; both are clamped to [`CacheConfig::max_ttl_secs`].
//! - A TTL of 0 (a value with TTL 0, an absolute TTL already past, an empty value list, a zero
//!   `max_ttl_secs`) means "do not cache": nothing is stored, and an older entry for the same key
//!   is dropped, since the newer answer supersedes it.
//! - Negative answers live [`CacheConfig::negative_ttl_secs`] (also clamped to `max_ttl_secs`);
//!   0 disables negative caching.
//! - Site entries live the TTL given to [`Cache::put_sites`], clamped to `max_ttl_secs`; 0 or
//!   an empty site list stores nothing.
//!
//! # Stale serving
//!
//! An entry stored at `t` with TTL `ttl` is [`Lookup::Fresh`] while `now < t + ttl`, then
//! [`Lookup::Stale`] for [`CacheConfig::serve_stale_secs`] more seconds (the caller may serve
//! it when the authoritative servers cannot be reached, and should refresh it), then dead: the
//! next lookup drops it and reports [`Lookup::Miss`]. Returned values are the stored values
//! unchanged (TTL fields are not rewritten); [`Cache::get_expiring`] also gives the end of
//! freshness, for front ends that count TTLs down (DNS).
//!
//! # Eviction
//!
//! Every entry is weighed when stored ([`Weigh`]: an estimate of the heap bytes of its key
//! and value, plus a fixed overhead for the map and index slots), and a keyspace keeps the sum.
//! An entry heavier than its keyspace's whole byte budget is not stored (an older entry for
//! the key is dropped). Inserting into a keyspace that is full (in entries or in bytes) first
//! evicts an entry that is dead (past its stale window),
//! otherwise the least recently used one (a lookup that finds an entry, fresh or stale, counts
//! as a use). Each keyspace keeps a hash map plus two ordered indexes (by last use, by end of
//! stale window), so lookups, inserts and evictions cost O(log n), never a scan. Evictions are
//! counted as the `evicted` event. `max_entries == 0` disables a keyspace.
//!
//! # Coalescing
//!
//! [`Cache::coalesce`] is single-flight: the first caller for a key (the leader) runs its
//! fetch; callers arriving while it runs wait for the leader's result (`Ok` or `Err`) instead of
//! fetching (the `coalesced` event). If the leader's future is dropped before finishing
//! (cancelled, or its fetch panicked), the waiters wake up and one of them leads a new fetch, so
//! nobody hangs. Coalescing neither reads nor writes the cache: the caller does `get` before
//! and `put` after. A caller arriving just after a flight finished starts a new one; callers
//! that care can re-check the cache inside their fetch.
//!
//! # Metrics
//!
//! With an `event`-labelled counter vector (`idnode_cache_events_total`, see
//! [`crate::metrics::Metrics::cache_events`]): `hit` (fresh values or sites), `negative_hit`
//! (fresh negative answer), `stale`, `miss`, `coalesced`, `evicted`.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntCounterVec;
use tokio::sync::watch;

use super::ResolveError;
// Std mutexes, locked tolerating poisoning (no code path panics while holding one).
use crate::lock::lock;
use crate::model::{HandleValue, SiteInfo};

/// Cache limits and lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most answer entries kept; the same bound applies separately to prefix-site entries.
    pub max_entries: usize,
    /// Most bytes (estimated heap size of keys and values) kept by both keyspaces together:
    /// answers get 7/8 of it, prefix sites 1/8.
    pub max_bytes: usize,
    /// Upper bound of every TTL, in seconds.
    pub max_ttl_secs: u32,
    /// Lifetime of negative answers (handle or values not found); 0 disables them.
    pub negative_ttl_secs: u32,
    /// How long past its TTL an entry may still be served as stale.
    pub serve_stale_secs: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            max_bytes: DEFAULT_MAX_BYTES,
            max_ttl_secs: 86_400,
            negative_ttl_secs: 60,
            serve_stale_secs: 300,
        }
    }
}

/// Default of [`CacheConfig::max_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// Bytes counted for every entry on top of its key and value: the map slot, the `Arc`s of the
/// key and value, two index nodes.
pub const ENTRY_OVERHEAD: usize = 160;

/// An estimate of the heap bytes a key or value holds (its own size included).
pub trait Weigh {
    fn weigh(&self) -> usize;
}

fn string_bytes(s: &str) -> usize {
    size_of::<String>() + s.len()
}

impl Weigh for String {
    fn weigh(&self) -> usize {
        string_bytes(self)
    }
}

impl Weigh for CacheKey {
    fn weigh(&self) -> usize {
        size_of::<CacheKey>()
            + self.handle_key.len()
            + self.indexes.len() * size_of::<u32>()
            + self.types.iter().map(|t| string_bytes(t)).sum::<usize>()
    }
}

impl Weigh for HandleValue {
    fn weigh(&self) -> usize {
        size_of::<HandleValue>()
            + self.type_name.len()
            + self.data.len()
            + self
                .references
                .iter()
                .map(|r| size_of_val(r) + r.handle.len())
                .sum::<usize>()
    }
}

impl Weigh for CachedAnswer {
    fn weigh(&self) -> usize {
        size_of::<CachedAnswer>()
            + match self {
                CachedAnswer::Values(values) => values.iter().map(Weigh::weigh).sum(),
                CachedAnswer::HandleNotFound | CachedAnswer::ValuesNotFound => 0,
            }
    }
}

impl Weigh for SiteInfo {
    fn weigh(&self) -> usize {
        size_of::<SiteInfo>()
            + self.hash_filter.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| string_bytes(k) + string_bytes(v))
                .sum::<usize>()
            + self
                .servers
                .iter()
                .map(|s| size_of_val(s) + s.public_key.len() + size_of_val(s.interfaces.as_slice()))
                .sum::<usize>()
    }
}

impl<T: Weigh> Weigh for Vec<T> {
    fn weigh(&self) -> usize {
        size_of::<Vec<T>>() + self.iter().map(Weigh::weigh).sum::<usize>()
    }
}

impl<T: Weigh> Weigh for Arc<T> {
    fn weigh(&self) -> usize {
        T::weigh(self)
    }
}

/// What a resolution answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedAnswer {
    Values(Vec<HandleValue>),
    HandleNotFound,
    ValuesNotFound,
}

impl CachedAnswer {
    /// True for the "not found" answers.
    pub fn is_negative(&self) -> bool {
        !matches!(self, CachedAnswer::Values(_))
    }
}

/// The identity of a resolution: handle, requested indexes and types, public-only flag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    handle_key: String,
    indexes: Vec<u32>,
    types: Vec<String>,
    public_only: bool,
}

impl CacheKey {
    /// A key for `handle_key` (used as given: pass the normalized handle). Indexes are sorted and
    /// deduplicated; types are ASCII-uppercased, sorted and deduplicated.
    pub fn new(handle_key: &str, indexes: &[u32], types: &[String], public_only: bool) -> CacheKey {
        let mut indexes = indexes.to_vec();
        indexes.sort_unstable();
        indexes.dedup();
        let mut types: Vec<String> = types.iter().map(|t| t.to_ascii_uppercase()).collect();
        types.sort_unstable();
        types.dedup();
        CacheKey {
            handle_key: handle_key.to_string(),
            indexes,
            types,
            public_only,
        }
    }

    pub fn handle_key(&self) -> &str {
        &self.handle_key
    }

    pub fn indexes(&self) -> &[u32] {
        &self.indexes
    }

    pub fn types(&self) -> &[String] {
        &self.types
    }

    pub fn public_only(&self) -> bool {
        self.public_only
    }
}

/// The result of a cache lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Within its TTL.
    Fresh(T),
    /// Past its TTL but within the serve-stale window.
    Stale(T),
    Miss,
}

impl<T> Lookup<T> {
    /// The same freshness, with `f` applied to what was found.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Fresh(t) => Lookup::Fresh(f(t)),
            Lookup::Stale(t) => Lookup::Stale(f(t)),
            Lookup::Miss => Lookup::Miss,
        }
    }
}

/// The counted events.
#[derive(Debug, Clone, Copy)]
enum Event {
    Hit,
    NegativeHit,
    Stale,
    Miss,
    Coalesced,
    Evicted,
}

impl Event {
    const ALL: [Event; 6] = [
        Event::Hit,
        Event::NegativeHit,
        Event::Stale,
        Event::Miss,
        Event::Coalesced,
        Event::Evicted,
    ];

    fn label(self) -> &'static str {
        match self {
            Event::Hit => "hit",
            Event::NegativeHit => "negative_hit",
            Event::Stale => "stale",
            Event::Miss => "miss",
            Event::Coalesced => "coalesced",
            Event::Evicted => "evicted",
        }
    }
}

struct Entry<V> {
    value: V,
    /// Fresh while `now < expires`.
    expires: u64,
    /// Stale while `expires <= now < stale_until`, dead after.
    stale_until: u64,
    /// Insertion serial (unique): the tie-breaker of the expiry index.
    id: u64,
    /// Tick of the last use: the key of the LRU index.
    used: u64,
    /// Bytes counted for the entry (key, value and [`ENTRY_OVERHEAD`]).
    bytes: usize,
}

/// One bounded keyspace: a map plus an LRU index and an expiry index, kept in step.
struct Store<K, V> {
    map: HashMap<Arc<K>, Entry<V>>,
    /// Last-use tick → key; the first entry is the least recently used.
    lru: BTreeMap<u64, Arc<K>>,
    /// (end of stale window, insertion serial) → key; the first entry dies first.
    expiry: BTreeMap<(u64, u64), Arc<K>>,
    tick: u64,
    /// Sum of the entries' `bytes`.
    bytes: usize,
}

impl<K: Hash + Eq + Weigh, V: Clone + Weigh> Store<K, V> {
    fn new() -> Self {
        Store {
            map: HashMap::new(),
            lru: BTreeMap::new(),
            expiry: BTreeMap::new(),
            tick: 0,
            bytes: 0,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn clear(&mut self) {
        self.map.clear();
        self.lru.clear();
        self.expiry.clear();
        self.bytes = 0;
    }

    fn next_tick(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }

    fn get(&mut self, key: &K, now: u64) -> Lookup<V> {
        self.get_expiring(key, now).map(|(v, _)| v)
    }

    /// [`Keyspace::get`], with the entry's end of freshness (unix seconds).
    fn get_expiring(&mut self, key: &K, now: u64) -> Lookup<(V, u64)> {
        let tick = self.next_tick();
        let Some(entry) = self.map.get_mut(key) else {
            return Lookup::Miss;
        };
        if now >= entry.stale_until {
            self.remove(key);
            return Lookup::Miss;
        }
        if let Some(k) = self.lru.remove(&entry.used) {
            self.lru.insert(tick, k);
        }
        entry.used = tick;
        let found = (entry.value.clone(), entry.expires);
        if now < entry.expires {
            Lookup::Fresh(found)
        } else {
            Lookup::Stale(found)
        }
    }

    fn remove(&mut self, key: &K) -> bool {
        match self.map.remove(key) {
            Some(entry) => {
                self.lru.remove(&entry.used);
                self.expiry.remove(&(entry.stale_until, entry.id));
                self.bytes = self.bytes.saturating_sub(entry.bytes);
                true
            }
            None => false,
        }
    }

    /// Store an entry, evicting as needed to keep at most `limits.0` entries of together at
    /// most `limits.1` bytes; returns how many were evicted. An entry heavier than the whole
    /// byte budget is not stored.
    fn insert(
        &mut self,
        key: K,
        value: V,
        times: (u64, u64),
        now: u64,
        limits: (usize, usize),
    ) -> u64 {
        let (max, max_bytes) = limits;
        let (expires, stale_until) = times;
        self.remove(&key);
        let bytes = ENTRY_OVERHEAD
            .saturating_add(key.weigh())
            .saturating_add(value.weigh());
        if max == 0 || bytes > max_bytes {
            return 0;
        }
        let mut evicted = 0;
        while self.map.len() >= max || self.bytes.saturating_add(bytes) > max_bytes {
            if !self.evict_one(now) {
                break;
            }
            evicted += 1;
        }
        self.bytes = self.bytes.saturating_add(bytes);
        let id = self.next_tick();
        let key = Arc::new(key);
        self.lru.insert(id, Arc::clone(&key));
        self.expiry.insert((stale_until, id), Arc::clone(&key));
        self.map.insert(
            key,
            Entry {
                value,
                expires,
                stale_until,
                id,
                used: id,
                bytes,
            },
        );
        evicted
    }

    /// Evict the first dead entry if there is one, else the least recently used.
    fn evict_one(&mut self, now: u64) -> bool {
        let victim = match self.expiry.first_key_value() {
            Some((&(stale_until, _), key)) if stale_until <= now => Arc::clone(key),
            _ => match self.lru.first_key_value() {
                Some((_, key)) => Arc::clone(key),
                None => return false,
            },
        };
        self.remove(&victim)
    }
}

type FlightResult = Option<Result<CachedAnswer, ResolveError>>;

/// A fetch in progress: waiters subscribe to its channel.
struct Flight {
    id: u64,
    tx: watch::Sender<FlightResult>,
}

type Flights = Mutex<HashMap<CacheKey, Flight>>;

/// The leader's claim on a flight. Finishing publishes the result; dropping it unfinished
/// (cancellation, panic) removes the flight and closes its channel, which wakes the waiters.
struct Leader<'a> {
    flights: &'a Flights,
    key: &'a CacheKey,
    id: u64,
}

impl Leader<'_> {
    fn take(&self) -> Option<Flight> {
        let mut flights = lock(self.flights);
        if flights.get(self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(self.key)
        } else {
            None
        }
    }

    fn finish(self, result: &Result<CachedAnswer, ResolveError>) {
        if let Some(flight) = self.take() {
            if flight.tx.receiver_count() > 0 {
                flight.tx.send_replace(Some(result.clone()));
            }
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Removes the flight only if `finish` did not; the sender is dropped after the lock.
        drop(self.take());
    }
}

enum Role {
    Lead(u64),
    Wait(watch::Receiver<FlightResult>),
}

/// The resolution cache (see the module documentation). `Send + Sync`; share it in an `Arc`.
pub struct Cache {
    config: CacheConfig,
    events: Option<IntCounterVec>,
    answers: Mutex<Store<CacheKey, Arc<CachedAnswer>>>,
    sites: Mutex<Store<String, Arc<Vec<SiteInfo>>>>,
    flights: Flights,
    next_flight: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("config", &self.config)
            .field("answers", &lock(&self.answers).len())
            .field("sites", &lock(&self.sites).len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Cache {
    /// An empty cache; `events` is the `event`-labelled counter vector to count into.
    pub fn new(config: CacheConfig, events: Option<IntCounterVec>) -> Cache {
        if let Some(events) = &events {
            // Export every series from the start, at zero.
            for event in Event::ALL {
                let _ = events.with_label_values(&[event.label()]);
            }
        }
        Cache {
            config,
            events,
            answers: Mutex::new(Store::new()),
            sites: Mutex::new(Store::new()),
            flights: Mutex::new(HashMap::new()),
            next_flight: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The byte budget of the site keyspace: 1/8 of `max_bytes`.
    fn site_bytes(&self) -> usize {
        self.config.max_bytes / 8
    }

    /// The byte budget of the answer keyspace: the rest of `max_bytes`.
    fn answer_bytes(&self) -> usize {
        self.config.max_bytes - self.site_bytes()
    }

    /// Bytes counted for the entries currently stored (both keyspaces; see [`Weigh`]).
    pub fn bytes(&self) -> usize {
        lock(&self.answers).bytes + lock(&self.sites).bytes
    }

    fn count(&self, event: Event) {
        self.count_n(event, 1);
    }

    fn count_n(&self, event: Event, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(events) = &self.events {
            events.with_label_values(&[event.label()]).inc_by(n);
        }
    }

    /// Fresh/stale/dead boundaries of an entry stored at `now` with `ttl`.
    fn times(&self, now: u64, ttl: u32) -> (u64, u64) {
        let expires = now.saturating_add(u64::from(ttl));
        (
            expires,
            expires.saturating_add(u64::from(self.config.serve_stale_secs)),
        )
    }

    /// Look up an answer: fresh, stale (within the serve-stale window) or a miss; a dead entry
    /// is dropped.
    pub fn get(&self, key: &CacheKey, now: u64) -> Lookup<CachedAnswer> {
        self.get_expiring(key, now).map(|(answer, _)| answer)
    }

    /// [`Cache::get`], with the unix second at which the entry stops being fresh (what a DNS
    /// front end counts its TTLs down to).
    pub fn get_expiring(&self, key: &CacheKey, now: u64) -> Lookup<(CachedAnswer, u64)> {
        let found = lock(&self.answers).get_expiring(key, now);
        match found {
            Lookup::Fresh((answer, expires)) => {
                self.count(if answer.is_negative() {
                    Event::NegativeHit
                } else {
                    Event::Hit
                });
                Lookup::Fresh((Arc::unwrap_or_clone(answer), expires))
            }
            Lookup::Stale((answer, expires)) => {
                self.count(Event::Stale);
                Lookup::Stale((Arc::unwrap_or_clone(answer), expires))
            }
            Lookup::Miss => {
                self.count(Event::Miss);
                Lookup::Miss
            }
        }
    }

    /// How long `answer`, fetched at `now`, stays fresh in this cache: the smallest TTL of
    /// its values or the negative TTL, clamped to `max_ttl_secs` (0: not cached).
    pub fn lifetime(&self, answer: &CachedAnswer, now: u64) -> u32 {
        let max = self.config.max_ttl_secs;
        match answer {
            CachedAnswer::Values(values) => {
                let now32 = u32::try_from(now).unwrap_or(u32::MAX);
                values
                    .iter()
                    .map(|v| v.ttl.seconds_from(now32, max))
                    .min()
                    .unwrap_or(0)
            }
            CachedAnswer::HandleNotFound | CachedAnswer::ValuesNotFound => {
                self.config.negative_ttl_secs.min(max)
            }
        }
    }

    /// Store an answer fetched at `now`. Values live for their smallest TTL (clamped), negative
    /// answers for `negative_ttl_secs`; a TTL of 0 stores nothing and drops an older entry.
    pub fn put(&self, key: CacheKey, answer: CachedAnswer, now: u64) {
        let ttl = self.lifetime(&answer, now);
        let mut answers = lock(&self.answers);
        if ttl == 0 {
            answers.remove(&key);
            return;
        }
        let times = self.times(now, ttl);
        let limits = (self.config.max_entries, self.answer_bytes());
        let evicted = answers.insert(key, Arc::new(answer), times, now, limits);
        drop(answers);
        self.count_n(Event::Evicted, evicted);
    }

    /// Look up the sites of `prefix` (ASCII-case-insensitive).
    pub fn get_sites(&self, prefix: &str, now: u64) -> Lookup<Vec<SiteInfo>> {
        let found = lock(&self.sites).get(&prefix.to_ascii_uppercase(), now);
        match found {
            Lookup::Fresh(sites) => {
                self.count(Event::Hit);
                Lookup::Fresh(Arc::unwrap_or_clone(sites))
            }
            Lookup::Stale(sites) => {
                self.count(Event::Stale);
                Lookup::Stale(Arc::unwrap_or_clone(sites))
            }
            Lookup::Miss => {
                self.count(Event::Miss);
                Lookup::Miss
            }
        }
    }

    /// Store the sites of `prefix` for `ttl_secs` (clamped to `max_ttl_secs`); a TTL of 0 or no
    /// sites stores nothing and drops an older entry.
    pub fn put_sites(&self, prefix: &str, sites: Vec<SiteInfo>, ttl_secs: u32, now: u64) {
        let key = prefix.to_ascii_uppercase();
        let ttl = ttl_secs.min(self.config.max_ttl_secs);
        let mut store = lock(&self.sites);
        if ttl == 0 || sites.is_empty() {
            store.remove(&key);
            return;
        }
        let times = self.times(now, ttl);
        let limits = (self.config.max_entries, self.site_bytes());
        let evicted = store.insert(key, Arc::new(sites), times, now, limits);
        drop(store);
        self.count_n(Event::Evicted, evicted);
    }

    /// Run `fetch` for `key` unless a fetch for it is already in flight, in which case wait for
    /// that one's result. See the module documentation.
    pub async fn coalesce<F, Fut>(
        &self,
        key: &CacheKey,
        fetch: F,
    ) -> Result<CachedAnswer, ResolveError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedAnswer, ResolveError>>,
    {
        let mut counted = false;
        loop {
            let role = {
                let mut flights = lock(&self.flights);
                match flights.get(key) {
                    Some(flight) => Role::Wait(flight.tx.subscribe()),
                    None => {
                        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                        let (tx, _) = watch::channel(None);
                        flights.insert(key.clone(), Flight { id, tx });
                        Role::Lead(id)
                    }
                }
            };
            match role {
                Role::Lead(id) => {
                    let leader = Leader {
                        flights: &self.flights,
                        key,
                        id,
                    };
                    let result = fetch().await;
                    leader.finish(&result);
                    return result;
                }
                Role::Wait(mut rx) => {
                    if !counted {
                        self.count(Event::Coalesced);
                        counted = true;
                    }
                    let outcome = match rx.wait_for(Option::is_some).await {
                        Ok(result) => result.clone(),
                        // The leader went away without a result: try again (perhaps leading).
                        Err(_) => None,
                    };
                    if let Some(result) = outcome {
                        return result;
                    }
                }
            }
        }
    }

    /// Keys with a fetch in flight.
    pub fn in_flight(&self) -> usize {
        lock(&self.flights).len()
    }

    /// Answer entries plus site entries currently stored (dead entries not yet dropped
    /// included).
    pub fn len(&self) -> usize {
        lock(&self.answers).len() + lock(&self.sites).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every answer and site entry (fetches in flight are not affected).
    pub fn clear(&self) {
        lock(&self.answers).clear();
        lock(&self.sites).clear();
    }

    /// Waiters subscribed to the flight of `key`, if one is in flight.
    #[cfg(test)]
    fn waiters(&self, key: &CacheKey) -> Option<usize> {
        lock(&self.flights)
            .get(key)
            .map(|flight| flight.tx.receiver_count())
    }
}

#[cfg(test)]
mod tests;
