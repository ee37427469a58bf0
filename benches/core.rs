//! Micro-benchmarks of the hot paths: value codec, REST JSON encoding, registry reads and
//! durable writes, and the engine's resolve path.
//!
//! `cargo bench --bench core` (criterion). Under `cargo test --all-targets` each benchmark runs
//! once as a smoke test.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use idnode::model::codec::Reader;
use idnode::model::{Handle, HandleValue, Prefix, SuffixCase};
use idnode::resolve::{init_prefix, Engine, Policy, Query};
use idnode::store::{Record, Registry, StoreOptions};
use idnode::wire::handle::{decode_values, encode_values};
use idnode::wire::json::value_to_json;

/// Records in the registry benchmarks.
const RECORDS: u32 = 20_000;

fn sample_values() -> Vec<HandleValue> {
    vec![
        HandleValue::new(1, "URL", "https://example.com/sn/0001"),
        HandleValue::new(2, "EMAIL", "quality@example.com"),
        HandleValue::new(3, "DESC", "Pump housing, lot 2026-11, line 3"),
    ]
}

fn codec(c: &mut Criterion) {
    let values = sample_values();
    let mut encoded = Vec::new();
    encode_values(&values, &mut encoded);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_3_values", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_values(std::hint::black_box(&values), &mut out);
        })
    });
    g.bench_function("decode_3_values", |b| {
        b.iter(|| decode_values(&mut Reader::new(std::hint::black_box(&encoded))))
    });
    g.bench_function("json_3_values", |b| {
        b.iter(|| {
            let v: Vec<_> = values.iter().map(value_to_json).collect();
            serde_json::to_vec(&v)
        })
    });
    g.finish();
}

fn handle(i: u32) -> Handle {
    Handle::parse(&format!("88.100.1/SN-{i:07}"), SuffixCase::Sensitive)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn store_and_engine(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).expect("open"));
    let prefix = Prefix::parse("88.100.1").expect("prefix");
    init_prefix(&registry, &prefix, 300, b"bench").expect("init");
    let batch: Vec<(Handle, Record)> = (0..RECORDS)
        .map(|i| {
            let h = handle(i);
            let rec = Record {
                handle: h.as_str().to_string(),
                values: sample_values(),
            };
            (h, rec)
        })
        .collect();
    for chunk in batch.chunks(5_000) {
        registry.put_batch(chunk).expect("load");
    }
    let mut g = c.benchmark_group("store");
    let mut i = 0u32;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % RECORDS;
            registry.get(&handle(i))
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| registry.get(&handle(RECORDS + 1)))
    });
    g.sample_size(20);
    g.bench_function("durable_put", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % RECORDS;
                let h = handle(i);
                let rec = Record {
                    handle: h.as_str().to_string(),
                    values: sample_values(),
                };
                (h, rec)
            },
            |entry| registry.put_batch(&[entry]),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let engine = Engine::new(registry.clone(), Policy::default());
    let mut g = c.benchmark_group("engine");
    g.bench_function("resolve_public", |b| {
        b.iter(|| {
            i = (i + 7919) % RECORDS;
            let q = Query {
                handle: handle(i),
                indexes: vec![],
                types: vec![],
                public_only: true,
                refer: true,
            };
            engine.resolve(&q, None)
        })
    });
    g.finish();
}

criterion_group!(benches, codec, store_and_engine);
criterion_main!(benches);
