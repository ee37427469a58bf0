//! Shared set-up of the benchmarks: realistic records, a deterministic PRNG, the record count
//! rule and a registry filled through the bulk path.
//!
//! # How many records
//!
//! [`record_count`]: `IDNODE_BENCH_RECORDS` when set (CI smoke-tests with `10000`); otherwise
//! [`BENCH_RECORDS`] (1M) when the binary really benchmarks, i.e. criterion's own rule: the
//! arguments contain `--bench` (what `cargo bench` passes) and not `--test`; otherwise
//! [`TEST_RECORDS`] (10k). So `cargo test --all-targets` (no `--bench`: criterion's test mode,
//! each benchmark run once) and `cargo bench -- --test` never build a 1M-record store.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use idnode::model::ValueReference;
use idnode::model::{types, AdminPermissions, AdminRef, Handle, HandleValue, Prefix, SuffixCase};
use idnode::resolve::init_prefix;
use idnode::store::{Record, Registry, StoreOptions};

/// The enterprise prefix every benchmark identifier lives under.
pub const PREFIX: &str = "88.100.1";
/// Records when benchmarking (`cargo bench`).
pub const BENCH_RECORDS: u32 = 1_000_000;
/// Records in test mode (`cargo test --all-targets`, `cargo bench -- --test`).
pub const TEST_RECORDS: u32 = 10_000;
/// Records per `put_batch` when filling a store.
pub const FILL_BATCH: u32 = 10_000;
/// Random reads after a fill, before any benchmark (at most; one per record below that).
pub const WARM_READS: u32 = 200_000;
/// A fixed "now" (unix seconds, 2027-01-15) so TTL arithmetic is the same on every run.
pub const NOW: u32 = 1_800_000_000;

/// The record count of the registry benchmarks (see the module documentation).
pub fn record_count() -> u32 {
    if let Ok(text) = std::env::var("IDNODE_BENCH_RECORDS") {
        match text.trim().parse::<u32>() {
            Ok(n) if n > 0 => return n,
            _ => panic!("IDNODE_BENCH_RECORDS must be a positive integer, got {text:?}"),
        }
    }
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    if benchmarking {
        BENCH_RECORDS
    } else {
        TEST_RECORDS
    }
}

/// SplitMix64: a tiny deterministic PRNG, so every run visits the same keys in the same order
/// and a benchmark does not keep hitting one hot key.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for picking keys (`n` far below 2^32).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// The text of the `i`-th identifier: `88.100.1/SN-0000042`.
pub fn handle_text(i: u32) -> String {
    format!("{PREFIX}/SN-{i:07}")
}

/// The `i`-th identifier.
pub fn handle(i: u32) -> Handle {
    Handle::parse(&handle_text(i), SuffixCase::Sensitive).unwrap_or_else(|e| panic!("{e}"))
}

/// An identifier that is not stored but sorts right after the `i`-th one, so lookups of
/// misses walk the same parts of the tree as hits.
pub fn missing_handle(i: u32) -> Handle {
    Handle::parse(&format!("{}X", handle_text(i)), SuffixCase::Sensitive)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The values of a product identifier as an enterprise registers them: a product page URL, a
/// quality contact, a description, and the HS_ADMIN value pyhandle writes into every handle.
pub fn product_values(i: u32) -> Vec<HandleValue> {
    let stamp = |mut v: HandleValue| {
        v.timestamp = NOW - 86_400;
        v
    };
    let admin = AdminRef {
        permissions: AdminPermissions::ALL,
        admin: ValueReference {
            handle: format!("0.NA/{PREFIX}"),
            index: 200,
        },
    };
    vec![
        stamp(HandleValue::new(
            1,
            types::URL,
            format!("https://example.com/products/sn/{i:07}"),
        )),
        stamp(HandleValue::new(2, types::EMAIL, "quality@example.com")),
        stamp(HandleValue::new(
            3,
            types::DESC,
            format!("Pump housing, lot 2026-11, line 3, serial {i:07}"),
        )),
        stamp(HandleValue::new(100, types::HS_ADMIN, admin.encode())),
    ]
}

/// The `i`-th identifier with its record, ready for `Registry::put_batch`.
pub fn entry(i: u32) -> (Handle, Record) {
    let h = handle(i);
    let record = Record {
        handle: h.as_str().to_string(),
        values: product_values(i),
    };
    (h, record)
}

/// A registry in a temporary directory homing [`PREFIX`] with `records` product identifiers.
/// Drop order matters: the registry closes before its directory is removed.
pub struct Store {
    pub registry: Arc<Registry>,
    pub records: u32,
    _dir: tempfile::TempDir,
}

impl Store {
    /// Create and fill the registry through the bulk path (`put_batch` of [`FILL_BATCH`]
    /// records, each batch one transaction and one flush), printing the fill time, then warm
    /// it up with [`WARM_READS`] random reads.
    pub fn build(records: u32) -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = open(dir.path());
        let prefix = Prefix::parse(PREFIX).expect("prefix");
        init_prefix(&registry, &prefix, 300, b"bench-secret").expect("init prefix");
        let started = Instant::now();
        let mut start = 0;
        while start < records {
            let end = records.min(start + FILL_BATCH);
            let batch: Vec<(Handle, Record)> = (start..end).map(entry).collect();
            registry.put_batch(&batch).expect("fill");
            start = end;
        }
        let fill_time = started.elapsed();
        eprintln!(
            "filled {records} records in {:.2} s through put_batch({FILL_BATCH}) \
             ({:.1} µs/record, {} MiB on disk)",
            fill_time.as_secs_f64(),
            fill_time.as_secs_f64() * 1e6 / f64::from(records.max(1)),
            registry.size_on_disk() >> 20
        );
        // Bring sled's cache from the fill's state (the last pages written) to the steady state
        // of random reads, so the first benchmark does not pay for it.
        let reads = records.min(WARM_READS);
        let mut rng = SplitMix64::new(0x5EED);
        let started = Instant::now();
        for _ in 0..reads {
            let found = registry.get(&handle(rng.below(records))).expect("read");
            assert!(found.is_some(), "a filled record is missing");
        }
        let warm_time = started.elapsed();
        eprintln!(
            "warmed up with {reads} random reads in {:.2} s ({:.1} µs/read)",
            warm_time.as_secs_f64(),
            warm_time.as_secs_f64() * 1e6 / f64::from(reads.max(1)),
        );
        Store {
            registry: Arc::new(registry),
            records,
            _dir: dir,
        }
    }
}

fn open(path: &Path) -> Registry {
    Registry::open(path, &StoreOptions::default()).expect("open registry")
}
