//! Tests of the resolution cache: TTL rules, stale serving, eviction in entries and bytes,
//! and single-flight coalescing (leaders cancelled or failing).

use super::*;
use crate::model::{ResponseCode, Ttl};
use prometheus::Opts;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::Notify;

const NOW: u64 = 1_700_000_000;

fn value(index: u32, ttl: Ttl) -> HandleValue {
    let mut v = HandleValue::new(index, "URL", "https://example.org/");
    v.ttl = ttl;
    v
}

fn key(handle: &str) -> CacheKey {
    CacheKey::new(handle, &[], &[], true)
}

fn config(max_entries: usize, serve_stale_secs: u32) -> CacheConfig {
    CacheConfig {
        max_entries,
        serve_stale_secs,
        ..CacheConfig::default()
    }
}

fn no_stale() -> Cache {
    Cache::new(config(100, 0), None)
}

fn events() -> IntCounterVec {
    IntCounterVec::new(Opts::new("test_cache_events", "test"), &["event"]).unwrap()
}

fn count(events: &IntCounterVec, event: &str) -> u64 {
    events.with_label_values(&[event]).get()
}

fn site(serial: u16) -> SiteInfo {
    SiteInfo {
        data_format_version: 1,
        protocol_major: 2,
        protocol_minor: 10,
        serial,
        primary_mask: 0x80,
        hash_option: 0,
        hash_filter: Vec::new(),
        attributes: vec![("desc".into(), "test".into())],
        servers: Vec::new(),
    }
}

fn answer(n: u32) -> CachedAnswer {
    CachedAnswer::Values(vec![value(n, Ttl::Relative(60))])
}

#[test]
fn cache_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Cache>();
}

#[test]
fn relative_ttl_hit_then_expiry() {
    let cache = no_stale();
    let values = CachedAnswer::Values(vec![value(1, Ttl::Relative(60))]);
    cache.put(key("88.100.1/a"), values.clone(), NOW);
    assert_eq!(
        cache.get(&key("88.100.1/a"), NOW),
        Lookup::Fresh(values.clone())
    );
    assert_eq!(
        cache.get(&key("88.100.1/a"), NOW + 59),
        Lookup::Fresh(values)
    );
    assert_eq!(cache.get(&key("88.100.1/a"), NOW + 60), Lookup::Miss);
    assert_eq!(cache.len(), 0, "a dead entry is dropped on lookup");
    assert_eq!(cache.get(&key("88.100.1/other"), NOW), Lookup::Miss);
}

#[test]
fn absolute_ttl_is_the_unix_expiry() {
    let cache = no_stale();
    let expiry = u32::try_from(NOW + 100).unwrap();
    let values = CachedAnswer::Values(vec![value(1, Ttl::Absolute(expiry))]);
    cache.put(key("a/b"), values.clone(), NOW);
    assert_eq!(cache.get(&key("a/b"), NOW + 99), Lookup::Fresh(values));
    assert_eq!(cache.get(&key("a/b"), NOW + 100), Lookup::Miss);

    // Already past at retrieval: not cached.
    let past = u32::try_from(NOW - 1).unwrap();
    let values = CachedAnswer::Values(vec![value(1, Ttl::Absolute(past))]);
    cache.put(key("a/c"), values, NOW);
    assert_eq!(cache.get(&key("a/c"), NOW), Lookup::Miss);
    assert!(cache.is_empty());
}

#[test]
fn ttl_is_clamped_to_max() {
    let cache = Cache::new(
        CacheConfig {
            max_ttl_secs: 100,
            ..config(100, 0)
        },
        None,
    );
    let relative = CachedAnswer::Values(vec![value(1, Ttl::Relative(1_000_000))]);
    cache.put(key("a/rel"), relative.clone(), NOW);
    let far = u32::try_from(NOW + 1_000_000).unwrap();
    let absolute = CachedAnswer::Values(vec![value(1, Ttl::Absolute(far))]);
    cache.put(key("a/abs"), absolute.clone(), NOW);
    assert_eq!(cache.get(&key("a/rel"), NOW + 99), Lookup::Fresh(relative));
    assert_eq!(cache.get(&key("a/abs"), NOW + 99), Lookup::Fresh(absolute));
    assert_eq!(cache.get(&key("a/rel"), NOW + 100), Lookup::Miss);
    assert_eq!(cache.get(&key("a/abs"), NOW + 100), Lookup::Miss);
}

#[test]
fn ttl_zero_and_empty_answers_are_not_cached() {
    let cache = no_stale();
    cache.put(
        key("a/zero"),
        CachedAnswer::Values(vec![value(1, Ttl::Relative(0))]),
        NOW,
    );
    cache.put(key("a/empty"), CachedAnswer::Values(Vec::new()), NOW);
    assert_eq!(cache.get(&key("a/zero"), NOW), Lookup::Miss);
    assert_eq!(cache.get(&key("a/empty"), NOW), Lookup::Miss);
    assert!(cache.is_empty());

    // A non-cacheable newer answer drops the older entry.
    cache.put(key("a/x"), answer(1), NOW);
    assert_eq!(cache.len(), 1);
    cache.put(
        key("a/x"),
        CachedAnswer::Values(vec![value(2, Ttl::Relative(0))]),
        NOW + 1,
    );
    assert_eq!(cache.get(&key("a/x"), NOW + 1), Lookup::Miss);
    assert!(cache.is_empty());
}

#[test]
fn ttl_is_the_minimum_over_values() {
    let cache = no_stale();
    let expiry = u32::try_from(NOW + 100).unwrap();
    let values = CachedAnswer::Values(vec![
        value(1, Ttl::Relative(300)),
        value(2, Ttl::Relative(30)),
        value(3, Ttl::Absolute(expiry)),
    ]);
    cache.put(key("a/b"), values.clone(), NOW);
    assert_eq!(cache.get(&key("a/b"), NOW + 29), Lookup::Fresh(values));
    assert_eq!(cache.get(&key("a/b"), NOW + 30), Lookup::Miss);
}

#[test]
fn negative_answers_use_negative_ttl() {
    let cache = Cache::new(
        CacheConfig {
            negative_ttl_secs: 60,
            ..config(100, 0)
        },
        None,
    );
    cache.put(key("a/gone"), CachedAnswer::HandleNotFound, NOW);
    cache.put(key("a/novals"), CachedAnswer::ValuesNotFound, NOW);
    assert_eq!(
        cache.get(&key("a/gone"), NOW + 59),
        Lookup::Fresh(CachedAnswer::HandleNotFound)
    );
    assert_eq!(
        cache.get(&key("a/novals"), NOW + 59),
        Lookup::Fresh(CachedAnswer::ValuesNotFound)
    );
    assert_eq!(cache.get(&key("a/gone"), NOW + 60), Lookup::Miss);
    assert_eq!(cache.get(&key("a/novals"), NOW + 60), Lookup::Miss);

    let disabled = Cache::new(
        CacheConfig {
            negative_ttl_secs: 0,
            ..config(100, 300)
        },
        None,
    );
    disabled.put(key("a/gone"), CachedAnswer::HandleNotFound, NOW);
    disabled.put(key("a/novals"), CachedAnswer::ValuesNotFound, NOW);
    assert_eq!(disabled.get(&key("a/gone"), NOW), Lookup::Miss);
    assert_eq!(disabled.get(&key("a/novals"), NOW), Lookup::Miss);
    assert!(disabled.is_empty());
}

#[test]
fn stale_window_fresh_then_stale_then_miss() {
    let cache = Cache::new(config(100, 300), None);
    let values = answer(1);
    cache.put(key("a/b"), values.clone(), NOW);
    assert_eq!(
        cache.get(&key("a/b"), NOW + 59),
        Lookup::Fresh(values.clone())
    );
    assert_eq!(
        cache.get(&key("a/b"), NOW + 60),
        Lookup::Stale(values.clone())
    );
    assert_eq!(cache.get(&key("a/b"), NOW + 359), Lookup::Stale(values));
    assert_eq!(cache.get(&key("a/b"), NOW + 360), Lookup::Miss);
    assert!(cache.is_empty());

    cache.put(key("a/neg"), CachedAnswer::HandleNotFound, NOW);
    assert_eq!(
        cache.get(&key("a/neg"), NOW + 60),
        Lookup::Stale(CachedAnswer::HandleNotFound)
    );
}

#[test]
fn site_entries() {
    let cache = Cache::new(
        CacheConfig {
            max_ttl_secs: 1000,
            ..config(100, 100)
        },
        None,
    );
    let sites = vec![site(1), site(2)];
    cache.put_sites("88.100.a", sites.clone(), 120, NOW);
    assert_eq!(
        cache.get_sites("88.100.A", NOW + 119),
        Lookup::Fresh(sites.clone())
    );
    assert_eq!(
        cache.get_sites("88.100.a", NOW + 120),
        Lookup::Stale(sites.clone())
    );
    assert_eq!(cache.get_sites("88.100.a", NOW + 220), Lookup::Miss);
    assert_eq!(cache.get_sites("88.100", NOW), Lookup::Miss);

    // A separate keyspace from answers.
    cache.put_sites("88.100", sites.clone(), 120, NOW);
    assert_eq!(cache.get(&key("88.100"), NOW), Lookup::Miss);
    cache.put(key("88.200"), answer(1), NOW);
    assert_eq!(cache.get_sites("88.200", NOW), Lookup::Miss);

    // Clamped to max_ttl_secs.
    cache.put_sites("88.300", sites.clone(), 1_000_000, NOW);
    assert_eq!(
        cache.get_sites("88.300", NOW + 999),
        Lookup::Fresh(sites.clone())
    );
    assert_eq!(
        cache.get_sites("88.300", NOW + 1000),
        Lookup::Stale(sites.clone())
    );

    // TTL 0 or no sites: not stored, and an older entry is dropped.
    cache.put_sites("88.400", sites.clone(), 0, NOW);
    cache.put_sites("88.500", Vec::new(), 60, NOW);
    assert_eq!(cache.get_sites("88.400", NOW), Lookup::Miss);
    assert_eq!(cache.get_sites("88.500", NOW), Lookup::Miss);
    cache.put_sites("88.100", sites, 0, NOW);
    assert_eq!(cache.get_sites("88.100", NOW), Lookup::Miss);

    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn eviction_keeps_the_bound_and_prefers_recently_used() {
    let events = events();
    let cache = Cache::new(config(3, 0), Some(events.clone()));
    cache.put(key("a/1"), answer(1), NOW);
    cache.put(key("a/2"), answer(2), NOW);
    cache.put(key("a/3"), answer(3), NOW);
    // Use 1, so 2 is the least recently used.
    assert_eq!(cache.get(&key("a/1"), NOW), Lookup::Fresh(answer(1)));
    cache.put(key("a/4"), answer(4), NOW);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get(&key("a/2"), NOW), Lookup::Miss);
    for n in [1, 3, 4] {
        assert_eq!(
            cache.get(&key(&format!("a/{n}")), NOW),
            Lookup::Fresh(answer(n))
        );
    }
    assert_eq!(count(&events, "evicted"), 1);

    // Replacing an existing key evicts nothing.
    cache.put(key("a/4"), answer(44), NOW);
    assert_eq!(cache.len(), 3);
    assert_eq!(count(&events, "evicted"), 1);

    // Many inserts: never above the bound; the newest survive.
    for n in 100..1100 {
        cache.put(key(&format!("b/{n}")), answer(n), NOW);
        assert!(cache.len() <= 3);
    }
    assert_eq!(count(&events, "evicted"), 1001);
    assert_eq!(cache.get(&key("b/1099"), NOW), Lookup::Fresh(answer(1099)));
    assert_eq!(cache.get(&key("b/1000"), NOW), Lookup::Miss);
}

#[test]
fn eviction_prefers_dead_entries() {
    let cache = Cache::new(config(3, 10), None);
    let short = CachedAnswer::Values(vec![value(1, Ttl::Relative(5))]);
    cache.put(key("a/short"), short.clone(), NOW);
    cache.put(key("a/old"), answer(2), NOW);
    cache.put(key("a/new"), answer(3), NOW);
    // The short-lived entry is the most recently used, "old" the least.
    assert_eq!(
        cache.get(&key("a/short"), NOW + 1),
        Lookup::Fresh(short.clone())
    );
    // Within its stale window it still counts as live: the LRU entry goes.
    cache.put(key("a/4"), answer(4), NOW + 10);
    assert_eq!(cache.get(&key("a/old"), NOW + 10), Lookup::Miss);
    assert_eq!(cache.get(&key("a/short"), NOW + 10), Lookup::Stale(short));
    // Past its stale window it is dead, and goes first although recently used.
    cache.put(key("a/5"), answer(5), NOW + 15);
    assert_eq!(cache.len(), 3);
    for (k, n) in [("a/new", 3), ("a/4", 4), ("a/5", 5)] {
        assert_eq!(cache.get(&key(k), NOW + 15), Lookup::Fresh(answer(n)));
    }
}

#[test]
fn site_entries_have_their_own_bound() {
    let cache = Cache::new(config(2, 0), None);
    for n in 0..5u16 {
        cache.put_sites(&format!("p{n}"), vec![site(n)], 60, NOW);
        cache.put(key(&format!("p{n}/x")), answer(u32::from(n)), NOW);
    }
    assert_eq!(cache.len(), 4);
    assert_eq!(cache.get_sites("P4", NOW), Lookup::Fresh(vec![site(4)]));
    assert_eq!(cache.get_sites("p2", NOW), Lookup::Miss);

    let disabled = Cache::new(config(0, 0), None);
    disabled.put(key("a/b"), answer(1), NOW);
    disabled.put_sites("a", vec![site(1)], 60, NOW);
    assert!(disabled.is_empty());
}

#[test]
fn key_normalization() {
    let types = |ts: &[&str]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let a = CacheKey::new(
        "88.100.1/x",
        &[3, 1, 3, 2],
        &types(&["url", "HS_SITE", "URL"]),
        true,
    );
    let b = CacheKey::new("88.100.1/x", &[1, 2, 3], &types(&["HS_SITE", "Url"]), true);
    assert_eq!(a, b);
    assert_eq!(a.indexes(), &[1, 2, 3]);
    assert_eq!(a.types(), &types(&["HS_SITE", "URL"])[..]);
    assert_ne!(
        a,
        CacheKey::new("88.100.1/x", &[1, 2, 3], &types(&["HS_SITE", "URL"]), false)
    );
    assert_ne!(
        a,
        CacheKey::new("88.100.1/x", &[1, 2], &types(&["HS_SITE", "URL"]), true)
    );
    // The handle text is the caller's to normalize (suffix case is a node policy).
    assert_ne!(key("88.100.1/x"), key("88.100.1/X"));

    let cache = no_stale();
    cache.put(a, answer(1), NOW);
    assert_eq!(cache.get(&b, NOW), Lookup::Fresh(answer(1)));
}

#[test]
fn lookups_are_counted() {
    let events = events();
    let cache = Cache::new(config(100, 300), Some(events.clone()));
    for label in [
        "hit",
        "miss",
        "stale",
        "coalesced",
        "evicted",
        "negative_hit",
    ] {
        assert_eq!(count(&events, label), 0);
    }
    cache.put(key("a/b"), answer(1), NOW);
    cache.put(key("a/none"), CachedAnswer::ValuesNotFound, NOW);
    cache.put_sites("a", vec![site(1)], 60, NOW);
    let _ = cache.get(&key("a/b"), NOW);
    let _ = cache.get_sites("a", NOW);
    let _ = cache.get(&key("a/none"), NOW);
    let _ = cache.get(&key("a/b"), NOW + 60);
    let _ = cache.get(&key("a/missing"), NOW);
    let _ = cache.get_sites("b", NOW);
    assert_eq!(count(&events, "hit"), 2);
    assert_eq!(count(&events, "negative_hit"), 1);
    assert_eq!(count(&events, "stale"), 1);
    assert_eq!(count(&events, "miss"), 2);
}

/// Wait (yielding, not sleeping) until `cond` holds; callers bound this with a timeout.
async fn until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::task::yield_now().await;
    }
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_runs_one_fetch_for_concurrent_callers() {
    let events = events();
    let cache = Arc::new(Cache::new(CacheConfig::default(), Some(events.clone())));
    let fetches = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let k = key("88.100.1/hot");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, fetches, gate, k) = (cache.clone(), fetches.clone(), gate.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .coalesce(&k, || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(answer(7))
                })
                .await
        }));
    }
    tokio::time::timeout(LIMIT, until(|| cache.waiters(&k) == Some(49)))
        .await
        .unwrap();
    gate.notify_one();
    for task in tasks {
        let result = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        assert_eq!(result, Ok(answer(7)));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(count(&events, "coalesced"), 49);
    assert_eq!(cache.in_flight(), 0);
    assert!(cache.is_empty(), "coalescing does not write the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_error_reaches_every_waiter() {
    let cache = Arc::new(Cache::new(CacheConfig::default(), None));
    let fetches = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let k = key("88.100.1/down");
    let failure = ResolveError::Upstream {
        code: ResponseCode::ServerTooBusy,
        message: "upstream busy".into(),
    };
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, fetches, gate, k) = (cache.clone(), fetches.clone(), gate.clone(), k.clone());
        let failure = failure.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .coalesce(&k, || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Err(failure)
                })
                .await
        }));
    }
    tokio::time::timeout(LIMIT, until(|| cache.waiters(&k) == Some(9)))
        .await
        .unwrap();
    gate.notify_one();
    for task in tasks {
        let result = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        assert_eq!(result, Err(failure.clone()));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_leader_does_not_hang_waiters() {
    let cache = Arc::new(Cache::new(CacheConfig::default(), None));
    let k = key("88.100.1/slow");

    // A leader whose fetch never finishes.
    let leader = {
        let (cache, k) = (cache.clone(), k.clone());
        tokio::spawn(async move {
            cache
                .coalesce(&k, || {
                    std::future::pending::<Result<CachedAnswer, ResolveError>>()
                })
                .await
        })
    };
    tokio::time::timeout(LIMIT, until(|| cache.waiters(&k) == Some(0)))
        .await
        .unwrap();

    let fetches = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let (cache, fetches, gate, k) = (cache.clone(), fetches.clone(), gate.clone(), k.clone());
        waiters.push(tokio::spawn(async move {
            cache
                .coalesce(&k, || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(answer(9))
                })
                .await
        }));
    }
    tokio::time::timeout(LIMIT, until(|| cache.waiters(&k) == Some(5)))
        .await
        .unwrap();

    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    // One waiter takes over; the other four wait on it.
    tokio::time::timeout(LIMIT, until(|| cache.waiters(&k) == Some(4)))
        .await
        .unwrap();
    gate.notify_one();
    for waiter in waiters {
        let result = tokio::time::timeout(LIMIT, waiter).await.unwrap().unwrap();
        assert_eq!(result, Ok(answer(9)));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_keys_do_not_coalesce() {
    let cache = Arc::new(Cache::new(CacheConfig::default(), None));
    let fetches = Arc::new(AtomicUsize::new(0));
    let gates = [Arc::new(Notify::new()), Arc::new(Notify::new())];
    let mut tasks = Vec::new();
    for (n, k) in [(1, key("a/one")), (2, key("a/two"))] {
        let (cache, fetches) = (cache.clone(), fetches.clone());
        let gate = gates[n as usize - 1].clone();
        tasks.push(tokio::spawn(async move {
            cache
                .coalesce(&k, || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(answer(n))
                })
                .await
        }));
    }
    tokio::time::timeout(LIMIT, until(|| cache.in_flight() == 2))
        .await
        .unwrap();
    for gate in &gates {
        gate.notify_one();
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(tokio::time::timeout(LIMIT, task).await.unwrap().unwrap());
    }
    assert_eq!(results, vec![Ok(answer(1)), Ok(answer(2))]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn sequential_calls_each_fetch() {
    let cache = Cache::new(CacheConfig::default(), None);
    let k = key("a/b");
    for n in 0..3 {
        let result = cache.coalesce(&k, || async move { Ok(answer(n)) }).await;
        assert_eq!(result, Ok(answer(n)));
    }
    assert_eq!(cache.in_flight(), 0);
}

#[test]
fn hole7_cache_is_bounded_in_bytes() {
    let events = events();
    let max_bytes = 1 << 20;
    let cache = Cache::new(
        CacheConfig {
            max_bytes,
            ..config(100_000, 0)
        },
        Some(events.clone()),
    );
    let big = |n: u32| {
        let mut v = value(n, Ttl::Relative(3600));
        v.data = vec![b'x'; 60_000];
        CachedAnswer::Values(vec![v])
    };
    // 200 answers of ~60 kB: far more than the entry bound allows in bytes.
    for n in 0..200 {
        cache.put(key(&format!("a/{n}")), big(n), NOW);
        assert!(cache.bytes() <= max_bytes, "{} bytes", cache.bytes());
    }
    assert!(cache.len() < 20, "{} entries", cache.len());
    assert!(count(&events, "evicted") > 180);
    // The newest survive (least recently used go first).
    assert_eq!(cache.get(&key("a/199"), NOW), Lookup::Fresh(big(199)));
    assert_eq!(cache.get(&key("a/0"), NOW), Lookup::Miss);

    // Keys count too: a key with huge type lists weighs what it holds.
    let types: Vec<String> = (0..1000).map(|i| format!("TYPE.{i:060}")).collect();
    let heavy = CacheKey::new("a/heavy", &[], &types, true);
    assert!(heavy.weigh() > 64_000);
    cache.put(heavy.clone(), answer(1), NOW);
    assert!(cache.bytes() <= max_bytes);

    // An entry heavier than the whole budget is never stored, and drops an older one.
    cache.put(
        key("a/199"),
        CachedAnswer::Values(vec![{
            let mut v = value(1, Ttl::Relative(3600));
            v.data = vec![0; max_bytes];
            v
        }]),
        NOW,
    );
    assert_eq!(cache.get(&key("a/199"), NOW), Lookup::Miss);
    assert!(cache.bytes() <= max_bytes);

    // Sites have their own eighth of the budget.
    let mut heavy_site = site(1);
    heavy_site.hash_filter = vec![0; 40_000];
    for n in 0..100 {
        cache.put_sites(&format!("88.{n}"), vec![heavy_site.clone()], 3600, NOW);
        assert!(lock(&cache.sites).bytes <= max_bytes / 8);
    }
    assert!(cache.bytes() <= max_bytes);

    // Removing and clearing give the bytes back.
    cache.clear();
    assert_eq!(cache.bytes(), 0);
    cache.put(key("a/1"), answer(1), NOW);
    let one = cache.bytes();
    assert!(one > ENTRY_OVERHEAD);
    cache.put(key("a/1"), answer(1), NOW);
    assert_eq!(
        cache.bytes(),
        one,
        "replacing an entry does not count it twice"
    );
}
