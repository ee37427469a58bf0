//! Micro-benchmarks of the CPU-only hot paths: the value codec and REST JSON, whole native
//! Handle messages (a resolution request and its response), the resolver cache, and what a
//! certified answer or a session costs (signature, MAC, DH key agreement, AES).
//!
//! The registry, the engine's resolve path and DNS have their own files (`benches/store.rs`,
//! `benches/dns.rs`).
//!
//! `cargo bench --bench core` (criterion). Under `cargo test --all-targets` (or
//! `cargo bench -- --test`) each benchmark runs once as a smoke test.

// Each bench binary uses only part of the shared set-up.
#[allow(dead_code)]
mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use idnode::metrics::Metrics;
use idnode::model::codec::Reader;
use idnode::model::HandleValue;
use idnode::resolve::cache::{Cache, CacheConfig, CacheKey, CachedAnswer};
use idnode::wire::handle::message::{flag, op, Envelope, ENVELOPE_LEN};
use idnode::wire::handle::{decode_values, encode_values, Body, Message};
use idnode::wire::json::value_to_json;

use common::{handle, product_values, SplitMix64, NOW};

/// The resolution request of handle-protocol.md §11 (`88.100.1/SN-0001`, public only,
/// recursive), as the reference encoder wrote it (`src/wire/handle/vectors.rs`, `REQ_HEX`).
const REQ_HEX: &str = "0203020b00000000010203040000000000000038000000010000000019000000ffff0000650000000000001c0000001038382e3130302e312f534e2d30303031000000000000000000000000";
/// Its response with one URL value (`RESP_HEX` of the same file).
const RESP_HEX: &str = "020b020b0000000001020304000000000000006c000000010000000119000000ffff000065000000000000500000001038382e3130302e312f534e2d3030303100000001000000016400000000000151800e0000000355524c0000001b68747470733a2f2f6578616d706c652e636f6d2f736e2f303030310000000000000000";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn sample_values() -> Vec<HandleValue> {
    vec![
        HandleValue::new(1, "URL", "https://example.com/sn/0001"),
        HandleValue::new(2, "EMAIL", "quality@example.com"),
        HandleValue::new(3, "DESC", "Pump housing, lot 2026-11, line 3"),
    ]
}

/// `codec`: the HandleValue wire layout (also the stored record format) of three values,
/// encoded and decoded, and the same values as Handle.Net REST JSON.
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

/// Decode a whole datagram as the native UDP server does: envelope, then the message.
fn decode_datagram(bytes: &[u8]) -> Message {
    let envelope = Envelope::decode(&bytes[..ENVELOPE_LEN]).expect("envelope");
    Message::decode(envelope, &bytes[ENVELOPE_LEN..]).expect("message")
}

/// `handle_message`: a whole native resolution exchange through
/// `idnode::wire::handle::message`.
///
/// - `decode_request` / `encode_request`: the reference resolution request (`REQ_HEX`, 76
///   bytes): `Envelope::decode` + `Message::decode`, and `Message::encode` of the result.
/// - `encode_request_new`: `Message::request(RESOLUTION, PUBLIC_ONLY, …)` built and encoded,
///   as `idnode resolve` and `idnode bench` do for each request.
/// - `decode_response_4_values` / `encode_response_4_values`: the reference response's
///   envelope and header with a realistic product record (URL, EMAIL, DESC, HS_ADMIN: 4
///   values; 326 bytes).
fn handle_message(c: &mut Criterion) {
    let request_bytes = hex(REQ_HEX);
    let request = decode_datagram(&request_bytes);
    assert_eq!(request.encode(), request_bytes, "request vector round trip");

    let mut response = decode_datagram(&hex(RESP_HEX));
    let Body::Values { handle: name, .. } = &response.body else {
        panic!("RESP_HEX is not a values response: {:?}", response.body);
    };
    response.body = Body::Values {
        handle: name.clone(),
        values: product_values(1),
    };
    let response_bytes = response.encode();
    response.envelope.message_length = (response_bytes.len() - ENVELOPE_LEN) as u32;
    assert_eq!(decode_datagram(&response_bytes), response);

    let mut g = c.benchmark_group("handle_message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_request", |b| {
        b.iter(|| decode_datagram(std::hint::black_box(&request_bytes)))
    });
    g.bench_function("encode_request", |b| {
        b.iter(|| std::hint::black_box(&request).encode())
    });
    g.bench_function("encode_request_new", |b| {
        let text = handle(1).as_str().to_string();
        b.iter(|| {
            Message::request(
                op::RESOLUTION,
                flag::PUBLIC_ONLY,
                Body::Resolution {
                    handle: std::hint::black_box(&text).clone(),
                    indexes: Vec::new(),
                    types: Vec::new(),
                },
            )
            .encode()
        })
    });
    g.bench_function("decode_response_4_values", |b| {
        b.iter(|| decode_datagram(std::hint::black_box(&response_bytes)))
    });
    g.bench_function("encode_response_4_values", |b| {
        b.iter(|| std::hint::black_box(&response).encode())
    });
    g.finish();
}

/// Entries in the cache benchmarks: `CacheConfig::default().max_entries`, a full cache.
const CACHE_ENTRIES: u32 = 100_000;

/// `cache`: the recursive node's resolution cache (`resolve::cache::Cache`, default config but
/// for a byte bound high enough to hold them, counting events into the Prometheus counter as
/// a node does), full with 100k answers of 4 values each (about 70 MB by its estimate). Keys are drawn uniformly at random (SplitMix64) in the untimed set-up.
///
/// - `get_hit`: `CacheKey::new` + `Cache::get` of a cached handle, as the recursor does per
///   lookup (the values are cloned out of the cache).
/// - `get_miss`: the same for a handle that is not cached.
/// - `put_evict`: `Cache::put` of a new answer into the full cache, evicting the least
///   recently used entry.
fn cache(c: &mut Criterion) {
    let metrics = Metrics::new().expect("metrics");
    let config = CacheConfig {
        max_bytes: 1 << 30,
        ..CacheConfig::default()
    };
    assert_eq!(config.max_entries, CACHE_ENTRIES as usize);
    let cache = Cache::new(config, Some(metrics.cache_events.clone()));
    let now = u64::from(NOW);
    for i in 0..CACHE_ENTRIES {
        let key = CacheKey::new(handle(i).key(), &[], &[], true);
        cache.put(key, CachedAnswer::Values(product_values(i)), now);
    }
    assert_eq!(cache.len(), CACHE_ENTRIES as usize);

    let mut rng = SplitMix64::new(0xCAC4E);
    let answer = CachedAnswer::Values(product_values(7));

    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_hit", |b| {
        b.iter_batched(
            || handle(rng.below(CACHE_ENTRIES)),
            |h| cache.get(&CacheKey::new(h.key(), &[], &[], true), now),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("get_miss", |b| {
        b.iter_batched(
            || handle(CACHE_ENTRIES + rng.below(CACHE_ENTRIES)),
            |h| cache.get(&CacheKey::new(h.key(), &[], &[], true), now),
            BatchSize::SmallInput,
        )
    });
    let mut next = 2 * CACHE_ENTRIES;
    g.bench_function("put_evict", |b| {
        b.iter_batched(
            || {
                next += 1;
                (
                    CacheKey::new(handle(next).key(), &[], &[], true),
                    answer.clone(),
                )
            },
            |(key, answer)| cache.put(key, answer, now),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// `certify`: the cryptography behind certified answers and sessions, per message.
///
/// - `sign_answer_rsa2048` / `verify_answer_rsa2048`: an HS_SIGNED credential over the
///   4-value response (SHA256withRSA), what `handle.signatures_per_second` budgets;
/// - `mac_answer`: its HS_MAC in a session (HMAC-SHA256);
/// - `session_setup_dh1024`: the server side of OC_SESSION_SETUP in Oakley group 2 (a fresh
///   private value, its public value, the shared secret);
/// - `encrypt_answer_aes128`: a session answer encrypted (AES-128-CBC).
fn certify(c: &mut Criterion) {
    use idnode::auth::challenge::PrivateKey;
    use idnode::auth::credential;
    use idnode::auth::session;
    use idnode::wire::handle::message::header_and_body;

    let mut response = decode_datagram(&hex(RESP_HEX));
    response.body = Body::Values {
        handle: "88.100.1/SN-0001".into(),
        values: product_values(1),
    };
    let bytes = response.encode_message();
    let hb = header_and_body(&bytes).expect("header and body").to_vec();
    let key = PrivateKey::generate_rsa(2048).expect("RSA key");
    let public = key.public_key();
    let signed = credential::sign(&key, &response.envelope, 0, &hb).expect("sign");
    let mac_key = [7u8; session::SESSION_KEY_LEN];
    let client = session::DhKey::decode(
        &session::public_value(
            &session::DhKey {
                y: 2u32.into(),
                p: rsa::BigUint::parse_bytes(session::OAKLEY_GROUP2_P_HEX.as_bytes(), 16)
                    .expect("group"),
                g: 2u32.into(),
            },
            &rsa::BigUint::from(0x1234_5678_9abc_def0u64),
        )
        .public_key()
        .encode(),
    )
    .expect("client key");
    let client_bytes = client.public_key().encode();

    let mut g = c.benchmark_group("certify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_answer_rsa2048", |b| {
        b.iter(|| credential::sign(&key, &response.envelope, 0, std::hint::black_box(&hb)))
    });
    g.bench_function("verify_answer_rsa2048", |b| {
        b.iter(|| credential::verify_signed(&public, &response.envelope, &hb, &signed))
    });
    g.bench_function("mac_answer", |b| {
        b.iter(|| credential::mac(&mac_key, &response.envelope, 1, std::hint::black_box(&hb)))
    });
    g.bench_function("session_setup_dh1024", |b| {
        b.iter(|| session::dh_answer(std::hint::black_box(&client_bytes)))
    });
    g.bench_function("encrypt_answer_aes128", |b| {
        b.iter(|| session::encrypt_message(&mac_key, std::hint::black_box(&bytes)))
    });
    g.finish();
}

criterion_group!(benches, codec, handle_message, cache, certify);
criterion_main!(benches);
