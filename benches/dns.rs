//! DNS benchmarks through idnode's own DNS path (`wire::dns` on hickory-proto 0.26, and
//! `server::dns::DnsService`), for identifiers as names under the zone `id.example.`
//! (`sn-0000042.1.100.88.id.example.` for `88.100.1/SN-0000042`).
//!
//! `cargo bench --bench dns` (criterion). Under `cargo test --all-targets` (or
//! `cargo bench -- --test`) each benchmark runs once as a smoke test.
//!
//! Queries are real packets as `dig` sends them (RD set, EDNS with a 1232-byte payload), for
//! identifiers drawn at random (SplitMix64) from a registry of 10,000 product identifiers
//! (4 values each), or fewer when `IDNODE_BENCH_RECORDS` is smaller; the registry at scale is
//! `benches/store.rs`'s subject. The zone homes `88.100.1`, as a node's does.

// Each bench binary uses only part of the shared set-up.
#[allow(dead_code)]
mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;

use idnode::metrics::Metrics;
use idnode::model::{Handle, Prefix, SuffixCase};
use idnode::resolve::{Engine, Policy};
use idnode::server::dns::{DnsService, Outcome, Transport};
use idnode::wire::dns::{answer, decide, encode, Decision, Found, Request, Zone};

use common::{handle, missing_handle, product_values, record_count, SplitMix64, Store, NOW};

/// The client the queries come from.
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Records in the registry behind `DnsService` (at most).
const RECORDS: u32 = 10_000;
/// Query packets in each pool.
const POOL: usize = 1024;
/// The zone identifiers live under.
const ZONE: &str = "id.example.";

/// A query for `qname`/`qtype` as `dig` sends it.
fn query_packet(id: u16, zone: &Zone, h: &Handle, qtype: RecordType) -> Vec<u8> {
    let name = zone.name_of(h).expect("name of identifier");
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    m.to_vec().expect("encode query")
}

/// The decoded request of a query packet (what `decide` hands to the lookup).
fn request_of(packet: &[u8], zone: &Zone, serial: u32) -> Request {
    match decide(packet, zone, serial) {
        Decision::Lookup { request, .. } => request,
        other => panic!("expected a lookup, got {other:?}"),
    }
}

/// `dns`: one query's way through the DNS front end.
///
/// - `decide_txt_query`: `wire::dns::decide` of a TXT query packet: hickory decode, checks,
///   name classification, identifier candidates.
/// - `answer_txt` / `answer_any`: `wire::dns::answer` building the response (question, AA,
///   OPT) with the records of a 4-value product identifier: 4 TXT (TXT) or 4 TXT + URI +
///   NAPTR (ANY).
/// - `encode_txt` / `encode_any`: `wire::dns::encode` of those responses into a reused buffer
///   (hickory encode with the UDP size limit; 291 and 426 bytes).
/// - `process_txt_hit` / `process_any_hit`: the whole `DnsService::process(packet,
///   Transport::Udp, &mut out)` of a query for a random existing identifier: decide, engine
///   resolve over the registry, answer, encode, metrics: what the UDP loop does per datagram.
/// - `process_nxdomain`: the same for an absent identifier (NXDOMAIN with the SOA).
fn dns(c: &mut Criterion) {
    let records = record_count().min(RECORDS);
    let store = Store::build(records);
    let prefix = Prefix::parse(common::PREFIX).expect("prefix");
    let mut zone = Zone::new(ZONE, SuffixCase::Sensitive).expect("zone");
    zone.homed = vec![prefix];
    let metrics = Metrics::new().expect("metrics");
    let engine = Engine::new(store.registry.clone(), Policy::default());
    let service = DnsService::new(
        idnode::resolve::Resolver::new(engine, None),
        &metrics,
        zone.clone(),
    );
    let serial = store.registry.last_seq() as u32;

    let mut rng = SplitMix64::new(0xD45);
    let mut packets = |qtype: RecordType, make: fn(u32) -> Handle| -> Vec<Vec<u8>> {
        (0..POOL)
            .map(|i| query_packet(i as u16, &zone, &make(rng.below(records)), qtype))
            .collect()
    };
    let txt = packets(RecordType::TXT, handle);
    let any = packets(RecordType::ANY, handle);
    let absent = packets(RecordType::TXT, missing_handle);

    // Check once that the service answers as expected, so the figures mean what they say.
    let mut out = Vec::with_capacity(4096);
    for (packet, code, answers) in [
        (&txt[0], ResponseCode::NoError, 4),
        (&any[0], ResponseCode::NoError, 6),
        (&absent[0], ResponseCode::NXDomain, 0),
    ] {
        assert!(matches!(
            service.process(packet, LOOPBACK, Transport::Udp, &mut out),
            Outcome::Reply(_)
        ));
        let reply = Message::from_vec(&out).expect("reply parses");
        assert_eq!(reply.metadata.response_code, code);
        assert_eq!(reply.answers.len(), answers);
        assert!(!reply.metadata.truncation);
    }

    let values = product_values(42);
    let txt_request = request_of(&txt[0], &zone, serial);
    let any_request = request_of(&any[0], &zone, serial);
    let responses = [("txt", &txt_request), ("any", &any_request)].map(|(name, request)| {
        let response = answer(
            request.clone(),
            Found::Values(&values),
            &zone,
            serial,
            NOW,
            true,
        );
        (name, request, response)
    });

    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(1));
    let mut k = 0usize;
    g.bench_function("decide_txt_query", |b| {
        b.iter(|| {
            k = (k + 1) % POOL;
            decide(&txt[k], &zone, serial)
        })
    });
    for (name, request, _) in &responses {
        g.bench_function(format!("answer_{name}"), |b| {
            b.iter_batched(
                || (*request).clone(),
                |request| answer(request, Found::Values(&values), &zone, serial, NOW, true),
                BatchSize::SmallInput,
            )
        });
    }
    for (name, _, response) in &responses {
        let mut out = Vec::with_capacity(4096);
        assert!(!encode(&response.message, response.udp_limit, &mut out));
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| encode(&response.message, response.udp_limit, &mut out))
        });
    }
    for (name, pool) in [
        ("process_txt_hit", &txt),
        ("process_any_hit", &any),
        ("process_nxdomain", &absent),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                k = (k + 1) % POOL;
                match service.process(&pool[k], LOOPBACK, Transport::Udp, &mut out) {
                    Outcome::Reply(_) => out.len(),
                    _ => panic!("no reply"),
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, dns);
criterion_main!(benches);
