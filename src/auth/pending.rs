//! Sans-IO tables of pending authentications and of authentication failures, with the time
//! passed in. The native front end keeps its 402 challenges in a [`PendingTable`] and rates
//! failed answers with a [`FailureLimiter`]; both are bounded per source and in total, so a
//! flood from many addresses costs the node a fixed amount of memory and never takes the last
//! slot from a source that holds none.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Bounds of a [`PendingTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// Entries at once, all sources together.
    pub max_entries: usize,
    /// Entries at once for one source address.
    pub max_per_source: usize,
    /// Bytes held (as the caller sizes its entries), all sources together.
    pub max_bytes: usize,
    /// Bytes held for one source address.
    pub max_bytes_per_source: usize,
    /// How long an entry waits for its answer.
    pub ttl: Duration,
}

impl Default for PendingLimits {
    /// Handle.Net's 20 s `max_auth_time`; 10 000 challenges and 16 MiB in all, 32 challenges
    /// and 1 MiB for one address (an administrator's tool has one or two in flight; a
    /// request is at most 256 KiB).
    fn default() -> Self {
        PendingLimits {
            max_entries: 10_000,
            max_per_source: 32,
            max_bytes: 16 << 20,
            max_bytes_per_source: 1 << 20,
            ttl: Duration::from_secs(20),
        }
    }
}

/// Why [`PendingTable::insert`] refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PendingFull {
    #[error("too many pending authentications from this address")]
    Source,
    #[error("too many pending authentications")]
    Total,
}

struct Entry<T> {
    value: T,
    source: IpAddr,
    size: usize,
    expires: Instant,
}

#[derive(Default)]
struct SourceUse {
    /// Ids in insertion order (some may be gone already: skipped when met).
    ids: VecDeque<u32>,
    count: usize,
    bytes: usize,
}

/// Entries waiting for an answer under a random 31-bit id, each bound to the address it was
/// created for.
///
/// - A source over its count or byte share is refused ([`PendingFull::Source`]).
/// - When the whole table is full, expired entries are swept; if it is still full, the
///   oldest entry of the source holding the most is dropped to make room, so a flood from
///   many addresses degrades to a fair share per address instead of locking everyone out.
/// - [`PendingTable::sweep`] drops expired entries; the server calls it on a timer.
pub struct PendingTable<T> {
    limits: PendingLimits,
    entries: HashMap<u32, Entry<T>>,
    sources: HashMap<IpAddr, SourceUse>,
    bytes: usize,
}

impl<T> PendingTable<T> {
    pub fn new(limits: PendingLimits) -> PendingTable<T> {
        PendingTable {
            limits,
            entries: HashMap::new(),
            sources: HashMap::new(),
            bytes: 0,
        }
    }

    pub fn limits(&self) -> PendingLimits {
        self.limits
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held, as sized by the callers of [`PendingTable::insert`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether an entry (expired or not) is held under `id`.
    pub fn contains(&self, id: u32) -> bool {
        self.entries.contains_key(&id)
    }

    /// Entries held for `source`.
    pub fn count_for(&self, source: IpAddr) -> usize {
        self.sources.get(&source).map_or(0, |s| s.count)
    }

    /// Keep `value` (about `size` bytes) for `source` until `now` + the TTL; `new_id` draws
    /// random candidate ids (31 bits, never 0). Returns the id the answer must name.
    pub fn insert(
        &mut self,
        source: IpAddr,
        value: T,
        size: usize,
        now: Instant,
        mut new_id: impl FnMut() -> u32,
    ) -> Result<u32, PendingFull> {
        let size = size.max(1);
        let over_source = |s: &Self| {
            s.sources.get(&source).is_some_and(|u| {
                u.count >= s.limits.max_per_source || u.bytes + size > s.limits.max_bytes_per_source
            })
        };
        if over_source(self) {
            self.sweep_source(source, now);
            if over_source(self) {
                return Err(PendingFull::Source);
            }
        }
        if size > self.limits.max_bytes_per_source || size > self.limits.max_bytes {
            return Err(PendingFull::Source);
        }
        let over_total = |s: &Self| {
            s.entries.len() >= s.limits.max_entries || s.bytes + size > s.limits.max_bytes
        };
        if over_total(self) {
            self.sweep(now);
        }
        while over_total(self) {
            if !self.evict_from_largest(source) {
                return Err(PendingFull::Total);
            }
        }
        let mut id = new_id() & 0x7fff_ffff;
        let mut tries = 0;
        while id == 0 || self.entries.contains_key(&id) {
            tries += 1;
            if tries > 64 {
                return Err(PendingFull::Total);
            }
            id = new_id() & 0x7fff_ffff;
        }
        self.entries.insert(
            id,
            Entry {
                value,
                source,
                size,
                expires: now + self.limits.ttl,
            },
        );
        let use_ = self.sources.entry(source).or_default();
        use_.ids.push_back(id);
        use_.count += 1;
        use_.bytes += size;
        self.bytes += size;
        Ok(id)
    }

    /// Take the entry `id` if it exists, has not expired and was created for `source`. An
    /// entry named from another address stays (so guessing ids from elsewhere takes nothing).
    pub fn take(&mut self, id: u32, source: IpAddr, now: Instant) -> Option<T> {
        let entry = self.entries.get(&id)?;
        if entry.source != source {
            return None;
        }
        let entry = self.remove(id)?;
        (entry.expires > now).then_some(entry.value)
    }

    /// The entry `id` if it exists, has not expired and was created for `source`, left in
    /// place (so a caller can check more than the address before [`PendingTable::take`]).
    pub fn get(&self, id: u32, source: IpAddr, now: Instant) -> Option<&T> {
        self.entries
            .get(&id)
            .filter(|e| e.source == source && e.expires > now)
            .map(|e| &e.value)
    }

    /// Drop every expired entry; returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let expired: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove(*id);
        }
        self.sources.retain(|_, u| u.count > 0);
        expired.len()
    }

    fn sweep_source(&mut self, source: IpAddr, now: Instant) {
        let Some(use_) = self.sources.get(&source) else {
            return;
        };
        let expired: Vec<u32> = use_
            .ids
            .iter()
            .copied()
            .filter(|id| self.entries.get(id).is_some_and(|e| e.expires <= now))
            .collect();
        for id in expired {
            self.remove(id);
        }
    }

    /// Drop the oldest entry of the source holding the most entries (never `newcomer`'s last
    /// chance: a source holding nothing is not the largest). False if nothing could go.
    fn evict_from_largest(&mut self, newcomer: IpAddr) -> bool {
        let Some((&largest, _)) = self
            .sources
            .iter()
            .filter(|(_, u)| u.count > 0)
            .max_by_key(|(ip, u)| (u.count, **ip != newcomer))
        else {
            return false;
        };
        while let Some(id) = self
            .sources
            .get_mut(&largest)
            .and_then(|u| u.ids.pop_front())
        {
            if self.entries.contains_key(&id) {
                // Put it back so remove() finds the bookkeeping consistent.
                if let Some(u) = self.sources.get_mut(&largest) {
                    u.ids.push_front(id);
                }
                self.remove(id);
                return true;
            }
        }
        false
    }

    fn remove(&mut self, id: u32) -> Option<Entry<T>> {
        let entry = self.entries.remove(&id)?;
        self.bytes -= entry.size;
        if let Some(u) = self.sources.get_mut(&entry.source) {
            u.count -= 1;
            u.bytes -= entry.size;
            if let Some(pos) = u.ids.iter().position(|i| *i == id) {
                u.ids.remove(pos);
            }
            if u.count == 0 {
                self.sources.remove(&entry.source);
            }
        }
        Some(entry)
    }
}

/// Bounds of a [`FailureLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures one source may make in a burst.
    pub burst: u32,
    /// Failures per minute one source earns back.
    pub per_minute: u32,
    /// Sources tracked at once (beyond it the fullest buckets are forgotten first).
    pub max_sources: usize,
}

impl Default for FailureLimits {
    /// 10 failures at once, then one every 6 s: enough for a mistyped secret, far too few
    /// for guessing one.
    fn default() -> Self {
        FailureLimits {
            burst: 10,
            per_minute: 10,
            max_sources: 65_536,
        }
    }
}

/// Per-source budget of failed authentications (a token bucket per address). A source whose
/// budget is spent is refused before any key derivation or signature check, until it earns
/// a token back; a success does not refill it.
pub struct FailureLimiter {
    limits: FailureLimits,
    /// Tokens (in 1/60 000 of a failure, so refill is exact per millisecond) and when they
    /// were last brought up to date.
    buckets: HashMap<IpAddr, (u64, Instant)>,
}

const TOKEN: u64 = 60_000;

impl FailureLimiter {
    pub fn new(limits: FailureLimits) -> FailureLimiter {
        FailureLimiter {
            limits,
            buckets: HashMap::new(),
        }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.limits.burst.max(1)) * TOKEN
    }

    fn refilled(&self, source: IpAddr, now: Instant) -> u64 {
        let capacity = self.capacity();
        match self.buckets.get(&source) {
            None => capacity,
            Some(&(tokens, at)) => {
                let ms = now.saturating_duration_since(at).as_millis() as u64;
                // per_minute failures per 60 000 ms: per_minute tokens-of-1/60 000 per ms.
                let earned = ms.saturating_mul(u64::from(self.limits.per_minute));
                tokens.saturating_add(earned).min(capacity)
            }
        }
    }

    /// May `source` try to authenticate now (has it a failure left to spend)?
    pub fn allows(&self, source: IpAddr, now: Instant) -> bool {
        self.refilled(source, now) >= TOKEN
    }

    /// Count a failed authentication from `source`.
    pub fn failed(&mut self, source: IpAddr, now: Instant) {
        let tokens = self.refilled(source, now).saturating_sub(TOKEN);
        if self.buckets.len() >= self.limits.max_sources && !self.buckets.contains_key(&source) {
            self.forget_full(now);
        }
        self.buckets.insert(source, (tokens, now));
    }

    /// Drop the buckets that are full again (they carry no information); if none are, drop
    /// half of them.
    fn forget_full(&mut self, now: Instant) {
        let capacity = self.capacity();
        let before = self.buckets.len();
        let per_minute = u64::from(self.limits.per_minute);
        self.buckets.retain(|_, (tokens, at)| {
            let ms = now.saturating_duration_since(*at).as_millis() as u64;
            tokens.saturating_add(ms.saturating_mul(per_minute)) < capacity
        });
        if self.buckets.len() == before {
            let drop: Vec<IpAddr> = self.buckets.keys().take(before / 2 + 1).copied().collect();
            for ip in drop {
                self.buckets.remove(&ip);
            }
        }
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 1, last])
    }

    fn ids() -> impl FnMut() -> u32 {
        let mut n = 0u32;
        move || {
            n += 1;
            n
        }
    }

    fn small() -> PendingLimits {
        PendingLimits {
            max_entries: 8,
            max_per_source: 3,
            max_bytes: 1000,
            max_bytes_per_source: 300,
            ttl: Duration::from_secs(20),
        }
    }

    #[test]
    fn hole3_one_source_cannot_take_more_than_its_share() {
        let mut t = PendingTable::new(small());
        let now = Instant::now();
        let mut next = ids();
        for _ in 0..3 {
            t.insert(ip(1), (), 10, now, &mut next).unwrap();
        }
        assert_eq!(
            t.insert(ip(1), (), 10, now, &mut next),
            Err(PendingFull::Source)
        );
        // Bytes count too.
        assert_eq!(
            t.insert(ip(2), (), 301, now, &mut next),
            Err(PendingFull::Source)
        );
        assert!(t.insert(ip(2), (), 150, now, &mut next).is_ok());
        assert_eq!(
            t.insert(ip(2), (), 151, now, &mut next),
            Err(PendingFull::Source)
        );
        assert_eq!(t.count_for(ip(1)), 3);
    }

    #[test]
    fn hole3_a_full_table_still_admits_a_new_source() {
        let mut t = PendingTable::new(small());
        let now = Instant::now();
        let mut next = ids();
        // Many attackers fill the table.
        for a in 1..=3 {
            for _ in 0..3 {
                let _ = t.insert(ip(a), "attacker", 10, now, &mut next);
            }
        }
        assert_eq!(t.len(), 8);
        // The administrator, holding nothing, always gets a slot.
        let admin = IpAddr::from([127, 0, 0, 1]);
        let id = t.insert(admin, "admin", 10, now, &mut next).unwrap();
        assert!(t.len() <= 8);
        assert_eq!(t.take(id, admin, now), Some("admin"));
    }

    #[test]
    fn hole3_entries_expire_and_are_swept() {
        let mut t = PendingTable::new(small());
        let now = Instant::now();
        let mut next = ids();
        let id = t.insert(ip(1), 7, 100, now, &mut next).unwrap();
        assert_eq!(t.bytes(), 100);
        let later = now + Duration::from_secs(21);
        assert_eq!(t.sweep(later), 1);
        assert_eq!((t.len(), t.bytes()), (0, 0));
        assert_eq!(t.take(id, ip(1), later), None);
        // An expired entry is not handed out even before a sweep.
        let id = t.insert(ip(1), 8, 10, now, &mut next).unwrap();
        assert_eq!(t.take(id, ip(1), later), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn hole3_answers_only_count_from_the_challenged_address() {
        let mut t = PendingTable::new(small());
        let now = Instant::now();
        let mut next = ids();
        let id = t.insert(ip(1), 1, 10, now, &mut next).unwrap();
        assert_eq!(t.take(id, ip(2), now), None);
        assert_eq!(t.take(id, ip(1), now), Some(1));
        assert_eq!(t.take(id, ip(1), now), None);
    }

    #[test]
    fn hole3_byte_budget_is_global_too() {
        let mut t = PendingTable::new(PendingLimits {
            max_bytes: 500,
            ..small()
        });
        let now = Instant::now();
        let mut next = ids();
        for a in 1..=10 {
            let _ = t.insert(ip(a), (), 200, now, &mut next);
            assert!(t.bytes() <= 500);
        }
    }

    #[test]
    fn hole1_failures_are_limited_per_source_and_earned_back() {
        let mut l = FailureLimiter::new(FailureLimits {
            burst: 3,
            per_minute: 60,
            max_sources: 4,
        });
        let now = Instant::now();
        for _ in 0..3 {
            assert!(l.allows(ip(1), now));
            l.failed(ip(1), now);
        }
        assert!(!l.allows(ip(1), now));
        assert!(l.allows(ip(2), now));
        // One per second comes back.
        assert!(l.allows(ip(1), now + Duration::from_millis(1000)));
        assert!(!l.allows(ip(1), now + Duration::from_millis(500)));
        // The table stays bounded.
        for a in 10..100 {
            l.failed(ip(a), now);
            assert!(l.tracked() <= 4);
        }
    }
}
