//! Unit tests of `idnode bench`'s parts: identifiers, sampling, statistics, addresses, paths,
//! schedules, the pending-slot table and answer parsing (no sockets; `tests/bench.rs` runs
//! the loaders against a node).

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use hyper::Uri;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::udp::{code_name, parse_answer, Pending, UdpSchedule};
use super::*;
use crate::model::Transport;
use crate::wire::handle::message::{flag, op, Message};

#[test]
fn generated_ids() {
    let ids = generate_ids("88.100.1", "SN-{:07}", 3).unwrap();
    assert_eq!(
        ids,
        [
            "88.100.1/SN-0000000",
            "88.100.1/SN-0000001",
            "88.100.1/SN-0000002"
        ]
    );
    assert_eq!(generate_ids("p", "x{}y", 2).unwrap(), ["p/x0y", "p/x1y"]);
    assert!(generate_ids("p", "nope", 1).is_err());
    assert!(generate_ids("p", "{:x}", 1).is_err());
}

#[test]
fn uniform_sampler_covers_all() {
    let s = Sampler::new(10, None);
    let mut rng = StdRng::seed_from_u64(1);
    let mut counts = [0u32; 10];
    for _ in 0..100_000 {
        counts[s.sample(&mut rng)] += 1;
    }
    for c in counts {
        assert!((8_000..12_000).contains(&c), "{counts:?}");
    }
}

#[test]
fn zipf_sampler_follows_power_law() {
    let n = 1000;
    let s = Sampler::new(n, Some(1.0));
    let mut rng = StdRng::seed_from_u64(2);
    let mut counts = vec![0u32; n];
    let draws = 200_000;
    for _ in 0..draws {
        counts[s.sample(&mut rng)] += 1;
    }
    // Rank 1 has twice the weight of rank 2 and ten times that of rank 10.
    let r12 = counts[0] as f64 / counts[1] as f64;
    let r110 = counts[0] as f64 / counts[9] as f64;
    assert!((1.7..2.3).contains(&r12), "{r12}");
    assert!((8.0..12.5).contains(&r110), "{r110}");
    // H(1000) ≈ 7.485: the top item takes about 13.4%.
    let top = counts[0] as f64 / draws as f64;
    assert!((0.12..0.15).contains(&top), "{top}");
}

#[test]
fn summary_statistics() {
    // Stats' running sums are private to `stats`: set the public counters one by one.
    let mut a = Stats::default();
    a.sent = 3;
    a.record(Duration::from_millis(1), "RC1".into());
    a.record(Duration::from_millis(3), "RC1".into());
    let mut b = Stats::default();
    (b.sent, b.lost) = (2, 1);
    b.record(Duration::from_millis(2), "RC100".into());
    a.merge(&b);
    let s = a.summary(Proto::HandleUdp, Duration::from_secs(2));
    assert_eq!(
        (s.queries_sent, s.queries_completed, s.queries_lost),
        (5, 3, 1)
    );
    assert_eq!(s.response_codes["RC1"], 2);
    assert_eq!(s.response_codes["RC100"], 1);
    assert!((s.queries_per_second - 1.5).abs() < 1e-9);
    assert!((s.average_latency_s - 0.002).abs() < 1e-9);
    let expected_std = (2.0f64 / 3.0).sqrt() / 1000.0;
    assert!((s.latency_stddev_s - expected_std).abs() < 1e-7);
    assert!((995..=1001).contains(&s.p50_us) || (1995..=2001).contains(&s.p50_us));
    assert!((2995..=3002).contains(&s.max_us));
    let text = s.to_string();
    assert!(text.contains("Queries per second:"));
    assert!(text.contains("Average Latency (s):"));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["queries_completed"], 3);
}

#[test]
fn server_addresses() {
    let t = parse_server("127.0.0.1:8001", Proto::Http).unwrap();
    assert_eq!(t.addr, "127.0.0.1:8001".parse().unwrap());
    assert_eq!(t.host, "127.0.0.1");
    let t = parse_server("127.0.0.1", Proto::HandleUdp).unwrap();
    assert_eq!(t.addr.port(), 2641);
    assert_eq!(
        parse_server("127.0.0.1", Proto::DnsUdp)
            .unwrap()
            .addr
            .port(),
        5300
    );
    let t = parse_server("https://localhost:9443/", Proto::Https).unwrap();
    assert_eq!((t.host.as_str(), t.addr.port()), ("localhost", 9443));
    assert!(t.addr.ip().is_loopback());
    let t = parse_server("http://localhost", Proto::Http).unwrap();
    assert_eq!(t.addr.port(), 8000);
    let t = parse_server("[::1]:53", Proto::DnsUdp).unwrap();
    assert_eq!((t.host.as_str(), t.addr.port()), ("::1", 53));
    assert_eq!(parse_server("::1", Proto::Http).unwrap().addr.port(), 8000);
    assert_eq!(
        parse_server("[::1]", Proto::HandleTcp).unwrap().addr.port(),
        2641
    );
    assert!(parse_server("", Proto::Http).is_err());
    assert!(parse_server("localhost:notaport", Proto::Http).is_err());
    assert!(parse_server("localhost:99999", Proto::Http).is_err());
    // A URL is only taken for the HTTP protocols.
    assert!(parse_server("http://127.0.0.1:2641", Proto::HandleUdp).is_err());
}

#[test]
fn protocol_names_round_trip() {
    for p in [
        Proto::HandleUdp,
        Proto::HandleTcp,
        Proto::DnsUdp,
        Proto::Http,
        Proto::Https,
    ] {
        assert_eq!(p.name().parse::<Proto>().unwrap(), p);
    }
    let err = "gopher".parse::<Proto>().unwrap_err();
    assert!(err.contains("http, https"), "{err}");
    assert_eq!(Proto::HandleUdp.transport(), Transport::Udp);
    assert_eq!(Proto::DnsUdp.transport(), Transport::Udp);
    assert_eq!(Proto::HandleTcp.transport(), Transport::Tcp);
    assert_eq!(Proto::Https.transport(), Transport::Tcp);
}

#[test]
fn handle_paths_are_percent_encoded() {
    assert_eq!(
        http_path("88.100.1/SN-0001"),
        "/api/handles/88.100.1/SN-0001"
    );
    assert_eq!(
        http_path("88.100.1/a b?c#d%e/f"),
        "/api/handles/88.100.1/a%20b%3Fc%23d%25e/f"
    );
    assert_eq!(
        http_path("88.100.1/产品"),
        "/api/handles/88.100.1/%E4%BA%A7%E5%93%81"
    );
    // What the server's decoding gives back is the identifier.
    let id = "88.100.1/x y?&=+:@~!%";
    let path = http_path(id);
    assert!(path.parse::<Uri>().is_ok(), "{path}");
    let raw = path.strip_prefix("/api/handles/").unwrap();
    assert_eq!(
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .unwrap(),
        id
    );
}

#[test]
fn open_loop_slots() {
    let s = Schedule {
        start: Instant::now(),
        rate: 200.0,
        next: AtomicU64::new(0),
    };
    assert_eq!(s.slots_before(Duration::from_secs(1)), 200);
    assert_eq!(s.slots_before(Duration::from_millis(1)), 1);
    assert_eq!(s.slots_before(Duration::ZERO), 0);
    let s = Schedule { rate: 3.0, ..s };
    assert_eq!(s.slots_before(Duration::from_secs(1)), 3);
    let first = s.take().unwrap();
    assert_eq!(
        s.take().unwrap() - first,
        Duration::from_secs_f64(1.0 / 3.0)
    );
    // A rate so low that the next slot is beyond any clock: never due, no panic.
    let s = Schedule { rate: 1e-300, ..s };
    assert_eq!(s.offset(1), Duration::MAX);
    assert!(s.take().is_none());
    assert_eq!(s.slots_before(Duration::from_secs(1)), 1);
}

#[test]
fn cpu_time_is_read() {
    if cfg!(target_os = "linux") {
        let before = process_cpu_time().expect("/proc/self/stat is readable");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_cpu_time().unwrap() >= before);
    }
}

#[test]
fn pending_ids_match_only_the_query_in_flight() {
    let t0 = Instant::now();
    for dns in [false, true] {
        let mut p = Pending::new(3, dns);
        assert_eq!(p.slots.len(), 4);
        let ids: Vec<u32> = (0..4).map(|_| p.insert(t0).unwrap()).collect();
        assert_eq!(p.insert(t0), None, "full");
        assert_eq!(p.len(), 4);
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{ids:?}");
        assert!(ids.iter().all(|&id| id != 0 && (!dns || id <= 0xFFFF)));
        // An answer takes its query out once; a duplicate or unknown id matches nothing.
        assert_eq!(p.take(ids[1]), Some(t0));
        assert_eq!(p.take(ids[1]), None);
        assert_eq!(p.take(ids[1] ^ 0x100), None);
        // The slot is reused under a new id: a late answer to the old one does not match.
        let again = p.insert(t0).unwrap();
        assert_ne!(again, ids[1]);
        assert_eq!(again & 3, ids[1] & 3);
        assert_eq!(p.take(ids[1]), None);
        assert_eq!(p.take(again), Some(t0));
        // Timeouts free their slots.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(p.expire(later, Duration::from_secs(5)), 0);
        assert_eq!(p.expire(later, Duration::from_secs(2)), 3);
        assert_eq!(p.len(), 0);
        assert_eq!(p.take(ids[0]), None);
    }
    // 16-bit DNS ids: a table of 65 536 slots hands out every id, each once.
    let mut p = Pending::new(1 << 20, true);
    let mut seen = vec![false; 1 << 16];
    while let Some(id) = p.insert(t0) {
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "{id} twice"
        );
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn answers_are_parsed() {
    // DNS: id 0x1234, NXDOMAIN.
    let dns = [0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
    assert_eq!(parse_answer(true, &dns), Some((0x1234, 3)));
    assert_eq!(code_name(true, 3), "NXDOMAIN");
    assert_eq!(code_name(true, 9), "RCODE9");
    for (code, name) in [
        (0, "NOERROR"),
        (1, "FORMERR"),
        (2, "SERVFAIL"),
        (4, "NOTIMP"),
        (5, "REFUSED"),
    ] {
        assert_eq!(code_name(true, code), name);
    }
    assert_eq!(code_name(true, 15), "RCODE15");
    assert_eq!(code_name(true, 16), "RCODE16");
    assert_eq!(parse_answer(true, &dns[..3]), None);
    // Handle: envelope (request id 7, sequence 0) and header with response code 100.
    let mut handle = vec![0u8; 28];
    handle[8..12].copy_from_slice(&7u32.to_be_bytes());
    handle[24..28].copy_from_slice(&100u32.to_be_bytes());
    assert_eq!(parse_answer(false, &handle), Some((7, 100)));
    assert_eq!(code_name(false, 100), "RC100");
    // A later datagram of a multi-datagram answer is not counted again.
    handle[12..16].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(parse_answer(false, &handle), None);
    assert_eq!(parse_answer(false, &handle[..20]), None);
}

#[test]
fn udp_schedule() {
    let start = Instant::now();
    let s = UdpSchedule {
        start,
        rate: 1000.0,
    };
    assert_eq!(s.due(0), Some(start));
    assert_eq!(s.due(10).unwrap() - start, Duration::from_millis(10));
    let s = UdpSchedule {
        start,
        rate: 1e-300,
    };
    assert!(s.due(1).is_none());
}

#[test]
fn recursive_sets_rec_on_handle_requests() {
    let cfg = |recursive| BenchConfig {
        proto: Proto::HandleUdp,
        server: "127.0.0.1:2641".parse().unwrap(),
        host: None,
        tls: None,
        duration: Duration::from_secs(1),
        concurrency: 1,
        sockets: 1,
        rate: None,
        timeout: Duration::from_secs(1),
        ids: vec!["88.100.1/SN-1".into()],
        zipf: None,
        miss_share: 0.0,
        zone: "id.example.".into(),
        seed: 1,
        threads: None,
        recursive,
        put: None,
        progress: false,
    };
    for recursive in [false, true] {
        let (hits, _) = templates(&cfg(recursive)).unwrap();
        let m = Message::decode_full(&hits[0]).unwrap();
        assert_eq!(m.header.has(flag::RECURSIVE), recursive);
        assert!(m.header.has(flag::PUBLIC_ONLY));
        assert_eq!(m.header.op_code, op::RESOLUTION);
    }
    // DNS queries always have RD set.
    let mut dns = cfg(true);
    dns.proto = Proto::DnsUdp;
    let (hits, _) = templates(&dns).unwrap();
    assert_ne!(hits[0][2] & 0x01, 0, "RD");
}

#[test]
fn empty_summary() {
    let s = Stats::default().summary(Proto::DnsUdp, Duration::from_secs(1));
    assert_eq!(s.queries_completed, 0);
    assert_eq!(s.p99_us, 0);
}
