//! Registry and engine benchmarks at scale: reads, durable writes and the engine's resolve
//! path over a sled registry holding 1M product identifiers (4 values each).
//!
//! `cargo bench --bench store` (criterion).
//!
//! # Record count
//!
//! `IDNODE_BENCH_RECORDS=<n>` sets it. Without it: **1,000,000** when benchmarking (`cargo
//! bench`, which passes `--bench`), **10,000** in criterion's test mode (`cargo test
//! --all-targets`, which passes no `--bench`, or `cargo bench -- --test`), where each benchmark
//! runs once as a smoke test. The store is built on first use, so a filter that selects none of
//! these benchmarks (`cargo bench --bench store -- nothing`) builds nothing. The fill goes
//! through the bulk path (`Registry::put_batch` of 10,000 records, one transaction and one
//! flush each); its time is printed (`filled … records in … s`), then 200,000 random reads
//! (at most one per record) bring sled's cache to its steady state (`warmed up with …`).
//! Benchmark ids end in the record count (`store/get_hit/1000000`).
//!
//! # Keys
//!
//! Every read draws its key uniformly over the whole set with a deterministic PRNG
//! (SplitMix64), in criterion's untimed set-up (`iter_batched`), so reads see sled's steady
//! state for random access (its 256 MiB cache holds a part of a 1M store) and never a hot key.
//! Misses are handles that sort right after a random stored one (`…/SN-0123456X`), so they
//! walk the same tree paths as hits. Writes replace random existing records, so the store
//! stays at its size.

// Each bench binary uses only part of the shared set-up.
#[allow(dead_code)]
mod common;

use std::cell::OnceCell;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use idnode::model::Handle;
use idnode::resolve::{Engine, Policy, Query};
use idnode::store::Record;

use common::{entry, handle, missing_handle, record_count, SplitMix64, Store};

/// Records per write in `put_batch_1000`.
const BATCH: u32 = 1_000;

/// `store`: `Registry` (sled) at the full record count.
///
/// - `get_hit` / `get_miss`: `Registry::get` of a random stored / absent identifier (a hit
///   decodes and checks the record: CRC-32 and 4 values).
/// - `durable_put`: one record replaced through `put_batch(&[entry])`: transaction, change-log
///   entry, then `make_durable` (`Db::flush` + `fsync`), what an acknowledged single write costs.
/// - `put_batch_1000`: 1,000 random records replaced in one `put_batch` (one transaction with
///   1,000 change-log entries, then `make_durable`: one flush + fsync); the time is per batch,
///   criterion's throughput line gives the per-record rate (elements/s).
///
/// `engine`: `Engine::resolve` of a public-only query (what the native, HTTP and DNS front
/// ends call) over the same registry: responsibility check, `Registry::get`, filtering.
///
/// - `resolve_public`: a random stored identifier (RC 1 with 4 values).
/// - `resolve_not_found`: a random absent one (RC 100).
fn store_and_engine(c: &mut Criterion) {
    let records = record_count();
    // Built on first use; the engine cell drops first, then the registry, then its directory.
    let store_cell: OnceCell<Store> = OnceCell::new();
    let store = || store_cell.get_or_init(|| Store::build(records));
    let engine_cell: OnceCell<Engine> = OnceCell::new();
    let engine =
        || engine_cell.get_or_init(|| Engine::new(store().registry.clone(), Policy::default()));
    let mut rng = SplitMix64::new(1);

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("get_hit", records), |b| {
        let registry = &store().registry;
        b.iter_batched(
            || handle(rng.below(records)),
            |h| registry.get(&h),
            BatchSize::SmallInput,
        )
    });
    g.bench_function(BenchmarkId::new("get_miss", records), |b| {
        let registry = &store().registry;
        b.iter_batched(
            || missing_handle(rng.below(records)),
            |h| registry.get(&h),
            BatchSize::SmallInput,
        )
    });
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("durable_put", records), |b| {
        let registry = &store().registry;
        b.iter_batched(
            || entry(rng.below(records)),
            |entry| registry.put_batch(&[entry]).expect("put"),
            BatchSize::SmallInput,
        )
    });
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    g.bench_function(BenchmarkId::new("put_batch_1000", records), |b| {
        let registry = &store().registry;
        b.iter_batched(
            || -> Vec<(Handle, Record)> { (0..BATCH).map(|_| entry(rng.below(records))).collect() },
            |batch| {
                // put_batch makes the batch durable itself (make_durable: flush + fsync) before
                // returning; the explicit call documents that and costs nothing.
                let seq = registry.put_batch(&batch).expect("put").expect("non-empty");
                registry.make_durable(seq).expect("durable");
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let query = |handle: Handle| Query {
        handle,
        indexes: vec![],
        types: vec![],
        public_only: true,
        refer: true,
    };
    g.bench_function(BenchmarkId::new("resolve_public", records), |b| {
        let engine = engine();
        b.iter_batched(
            || query(handle(rng.below(records))),
            |q| engine.resolve(&q, None),
            BatchSize::SmallInput,
        )
    });
    g.bench_function(BenchmarkId::new("resolve_not_found", records), |b| {
        let engine = engine();
        b.iter_batched(
            || query(missing_handle(rng.below(records))),
            |q| engine.resolve(&q, None),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, store_and_engine);
criterion_main!(benches);
