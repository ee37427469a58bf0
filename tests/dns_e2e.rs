//! The DNS front end over real sockets on 127.0.0.1, with packets built and parsed by
//! hickory-proto: TXT / URI / NAPTR / ANY answers, negative answers with the SOA, refusals and
//! protocol errors, EDNS and truncation with the TCP fallback, hostile packets, and an
//! identifier resolved through the hierarchy by a recursive node (the second time from its
//! cache).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::model::{Handle, HandleValue, SuffixCase, Ttl, ValuePermissions};
use idnode::resolve::Overwrite;
use idnode::server::{open_registry, prepare_registry, root_sites, start, RunningNode};
use idnode::wire::dns::{parse_uri_rdata, Zone, URI};

const SECRET: &str = "dns-e2e-secret";
const WAIT: Duration = Duration::from_secs(5);

/// A node homing `homed` (administrator 300:0.NA/<prefix> with [`SECRET`]), every listener on
/// a free port; `extra` is appended to the configuration.
async fn node(dir: &Path, name: &str, homed: &[&str], extra: &str) -> RunningNode {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    for p in homed {
        std::fs::write(data.join(format!("{p}.admin-secret")), SECRET).unwrap();
    }
    let homed: Vec<String> = homed.iter().map(|p| format!("{p:?}")).collect();
    let toml = format!(
        "[node]\ndata_dir = {data:?}\nhomed_prefixes = [{}]\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[handle]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nlisten = \"127.0.0.1:0\"\n{extra}\n",
        homed.join(", ")
    );
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{name}: {e}\n{toml}"));
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    start(config, Arc::new(registry), Metrics::new().unwrap())
        .await
        .unwrap()
}

/// Create `handle` on `node` as the administrator of `prefix`.
fn create(node: &RunningNode, prefix: &str, handle: &str, values: Vec<HandleValue>) {
    let engine = &node.engine;
    let admin = Handle::parse(&format!("0.NA/{prefix}"), SuffixCase::Sensitive).unwrap();
    let identity = engine
        .authenticate_secret(&admin, 300, SECRET.as_bytes())
        .unwrap();
    let handle = Handle::parse(handle, SuffixCase::Sensitive).unwrap();
    engine
        .create(&identity, &handle, values, Overwrite::No)
        .unwrap();
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn query_message(qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    query_message(qname, qtype, edns).to_vec().unwrap()
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(7, Ordering::Relaxed)
}

/// Send one datagram; the answer, or `None` when nothing comes back within `wait`.
async fn udp_raw(addr: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

/// A query over UDP, its answer parsed (and its size).
async fn udp(addr: SocketAddr, packet: &[u8]) -> (Message, usize) {
    let bytes = udp_raw(addr, packet, WAIT).await.expect("no UDP answer");
    (Message::from_vec(&bytes).unwrap(), bytes.len())
}

async fn tcp_send(stream: &mut TcpStream, packet: &[u8]) {
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await.unwrap();
}

async fn tcp_recv(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut len))
        .await
        .expect("no TCP answer")
        .unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

async fn tcp(addr: SocketAddr, packet: &[u8]) -> Message {
    let mut s = TcpStream::connect(addr).await.unwrap();
    tcp_send(&mut s, packet).await;
    tcp_recv(&mut s).await
}

fn txts(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(String::from_utf8(t.txt_data.concat()).unwrap()),
            _ => None,
        })
        .collect()
}

fn has_soa_authority(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA && r.name == name("id.example."))
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

fn metric(body: &str, name_and_labels: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

const SN: &str = "sn-0001.1.100.88.id.example.";
const URL: &str = "https://example.com/sn/0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), "node", &["88.100.1"], "max_udp_payload = 4096").await;
    let mut short_ttl = HandleValue::new(2, "DESC", "Pump housing");
    short_ttl.ttl = Ttl::Relative(300);
    create(
        &n,
        "88.100.1",
        "88.100.1/SN-0001",
        vec![
            HandleValue::new(1, "URL", URL),
            short_ttl,
            HandleValue::new(3, "NOTE", "internal").with_permissions(ValuePermissions::ADMIN_ONLY),
            HandleValue::new(4, "BLOB", vec![0u8, 1, 2, 0xff]),
        ],
    );
    create(
        &n,
        "88.100.1",
        "88.100.1/Lot.2026/A",
        vec![HandleValue::new(7, "URL", "http://example.com/lot")],
    );
    create(&n, "88.100.1", "88.100.1/EMPTY", vec![]);
    let addr = n.dns_addr.unwrap();

    // TXT: one record per public value, TTL from the values, authoritative, no recursion.
    let (m, _) = udp(addr, &query(SN, RecordType::TXT, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && !m.metadata.recursion_available);
    assert_eq!(
        txts(&m),
        [
            format!("1 URL {URL}"),
            "2 DESC Pump housing".into(),
            "4 BLOB base64:AAEC/w==".into()
        ]
    );
    // One TTL per RRset (RFC 2181 §5.2): the smaller of the two values' (86400 and 300).
    assert_eq!(m.answers[0].ttl, 300);
    assert_eq!(m.answers[1].ttl, 300);
    assert!(m.edns.is_none());

    // URI (type 256) and NAPTR for the URL value.
    let (m, _) = udp(addr, &query(SN, URI, None)).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        parse_uri_rdata(&m.answers[0].data).unwrap(),
        (1, 1, URL.to_string())
    );
    let (m, _) = udp(addr, &query(SN, RecordType::NAPTR, None)).await;
    let RData::NAPTR(naptr) = &m.answers[0].data else {
        panic!("{m}")
    };
    assert_eq!((naptr.order, naptr.preference), (1, 10));
    assert_eq!(&*naptr.flags, b"u");
    assert_eq!(&*naptr.services, b"E2U+web:https");
    assert_eq!(&*naptr.regexp, format!("!^.*$!{URL}!").as_bytes());
    assert!(naptr.replacement.is_root());
    // ANY: all of them.
    let (m, _) = udp(addr, &query(SN, RecordType::ANY, None)).await;
    assert_eq!(m.answers.len(), 5);
    // The name in any case; the upper-case identifier is found after the lower-case miss.
    let (m, _) = udp(
        addr,
        &query("SN-0001.1.100.88.ID.EXAMPLE.", RecordType::TXT, None),
    )
    .await;
    assert_eq!(txts(&m).len(), 3);
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "SN-0001.1.100.88.ID.EXAMPLE."
    );
    // An encoded suffix.
    let zone = Zone::new("id.example.", SuffixCase::Sensitive).unwrap();
    let lot = zone
        .name_of(&Handle::parse("88.100.1/Lot.2026/A", SuffixCase::Sensitive).unwrap())
        .unwrap();
    assert!(lot.to_ascii().starts_with("x--"));
    let (m, _) = udp(addr, &query(&lot.to_ascii(), RecordType::NAPTR, None)).await;
    let RData::NAPTR(naptr) = &m.answers[0].data else {
        panic!("{m}")
    };
    assert_eq!(&*naptr.services, b"E2U+web:http");
    assert_eq!(naptr.order, 7);

    // NXDOMAIN with the SOA: no such identifier, a name with no prefix, a bad encoding.
    for q in [
        "nope.1.100.88.id.example.",
        "99.id.example.",
        "x--0.1.100.88.id.example.",
    ] {
        let (m, _) = udp(addr, &query(q, RecordType::TXT, None)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{q}");
        assert!(m.metadata.authoritative && m.answers.is_empty());
        assert!(has_soa_authority(&m), "{m}");
    }
    // NODATA with the SOA: another type, no values at all, or a name on the path down to a
    // homed prefix (an empty non-terminal, so query-name-minimising resolvers carry on).
    for (q, t) in [
        (SN, RecordType::A),
        ("88.id.example.", RecordType::TXT),
        ("100.88.id.example.", RecordType::TXT),
        ("1.100.88.id.example.", RecordType::TXT),
        ("empty.1.100.88.id.example.", RecordType::TXT),
    ] {
        let (m, _) = udp(addr, &query(q, t, None)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{q}");
        assert!(m.answers.is_empty() && has_soa_authority(&m), "{m}");
    }
    // The apex.
    let (m, _) = udp(addr, &query("id.example.", RecordType::SOA, None)).await;
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let (m, _) = udp(addr, &query("id.example.", RecordType::NS, None)).await;
    assert_eq!(m.answers[0].record_type(), RecordType::NS);
    // Refused: outside the zone, and a prefix this node does not hold (no recursion).
    for q in ["example.com.", "x.1.200.88.id.example."] {
        let (m, _) = udp(addr, &query(q, RecordType::TXT, None)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{q}");
        assert!(!m.metadata.authoritative);
    }

    // A response gets no answer.
    let mut response = query_message(SN, RecordType::TXT, None);
    response.metadata.message_type = MessageType::Response;
    let packet = response.to_vec().unwrap();
    assert!(udp_raw(addr, &packet, Duration::from_millis(300))
        .await
        .is_none());
    // Two questions: FORMERR.
    let mut two = query_message(SN, RecordType::TXT, None);
    two.add_query(Query::query(name(SN), URI));
    let (m, _) = udp(addr, &two.to_vec().unwrap()).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, two.metadata.id);
    // Another opcode: NOTIMP.
    let mut notify = Message::new(9, MessageType::Query, OpCode::Notify);
    notify.add_query(Query::query(name("id.example."), RecordType::SOA));
    let (m, _) = udp(addr, &notify.to_vec().unwrap()).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // AXFR over TCP: refused, nothing transferred.
    let m = tcp(addr, &query("id.example.", RecordType::AXFR, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());

    // Truncation and EDNS. A record of ~1.5 kB: TC over UDP without EDNS (512) and with a
    // 1232-byte EDNS buffer, whole with 4096, and whole over TCP.
    let big: Vec<HandleValue> = (1..=20)
        .map(|i| HandleValue::new(i, "DESC", format!("part {i:02} ").repeat(8)))
        .collect();
    create(&n, "88.100.1", "88.100.1/BIG", big);
    let bigq = "big.1.100.88.id.example.";
    let (m, size) = udp(addr, &query(bigq, RecordType::TXT, None)).await;
    assert!(m.metadata.truncation && m.answers.is_empty() && size <= 512);
    assert!(m.edns.is_none());
    let (m, size) = udp(addr, &query(bigq, RecordType::TXT, Some(1232))).await;
    assert!(m.metadata.truncation && size <= 1232);
    assert!(m.edns.is_some());
    let (m, size) = udp(addr, &query(bigq, RecordType::TXT, Some(4096))).await;
    assert!(!m.metadata.truncation && size > 1232);
    assert_eq!(m.answers.len(), 20);
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), 4096);
    let m = tcp(addr, &query(bigq, RecordType::TXT, None)).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 20);

    // Several queries on one TCP connection, answered in order.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let q1 = query_message(SN, RecordType::TXT, None);
    let q2 = query_message("nope.1.100.88.id.example.", RecordType::TXT, None);
    tcp_send(&mut s, &q1.to_vec().unwrap()).await;
    tcp_send(&mut s, &q2.to_vec().unwrap()).await;
    let (a1, a2) = (tcp_recv(&mut s).await, tcp_recv(&mut s).await);
    assert_eq!(a1.metadata.id, q1.metadata.id);
    assert_eq!(a1.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a2.metadata.id, q2.metadata.id);
    assert_eq!(a2.metadata.response_code, ResponseCode::NXDomain);

    // Hostile packets: a FORMERR or nothing, and the server keeps answering.
    let good = query(SN, RecordType::TXT, None);
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]);
    let mut long = good[..12].to_vec();
    for _ in 0..5 {
        long.push(60);
        long.extend_from_slice(&[b'a'; 60]);
    }
    long.extend_from_slice(&[0, 0, 16, 0, 1]);
    let mut random = vec![0u8; 300];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(17);
    }
    random[2] &= 0x7f; // a "query"
    let hostile: Vec<Vec<u8>> = vec![
        random.clone(),
        good[..good.len() - 3].to_vec(),
        good[..5].to_vec(),
        looped,
        long,
        vec![],
    ];
    for packet in &hostile {
        if let Some(answer) = udp_raw(addr, packet, Duration::from_millis(300)).await {
            let m = Message::from_vec(&answer).unwrap();
            assert!(
                matches!(
                    m.metadata.response_code,
                    ResponseCode::FormErr | ResponseCode::NotImp | ResponseCode::Refused
                ),
                "{m}"
            );
        }
        let (m, _) = udp(addr, &good).await;
        assert_eq!(txts(&m).len(), 3);
    }
    // Over TCP, on one connection.
    let mut s = TcpStream::connect(addr).await.unwrap();
    for packet in hostile.iter().filter(|p| p.len() >= 12) {
        tcp_send(&mut s, packet).await;
        let m = tcp_recv(&mut s).await;
        assert!(
            matches!(
                m.metadata.response_code,
                ResponseCode::FormErr | ResponseCode::NotImp
            ),
            "{m}"
        );
    }
    tcp_send(&mut s, &good).await;
    assert_eq!(txts(&tcp_recv(&mut s).await).len(), 3);

    // Metrics by rcode.
    let body = http_get(n.http_addr, "/metrics").await;
    let count = |code: &str| {
        metric(
            &body,
            &format!("idnode_requests_total{{code=\"{code}\",op=\"query\",proto=\"dns\"}}"),
        )
    };
    assert!(count("NOERROR") >= 10, "{body}");
    assert!(count("NXDOMAIN") >= 3);
    assert!(count("REFUSED") >= 3);
    assert!(count("FORMERR") >= 3);
    assert!(count("NOTIMP") >= 1);
    assert!(count("DROP") >= 1);

    n.shutdown().await;
}

/// The HS_SITE value data of a one-server site.
fn site_data(server: SocketAddr) -> Vec<u8> {
    root_sites(&[server]).remove(0).encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursion_through_dns() {
    let dir = tempfile::tempdir().unwrap();
    let top = node(dir.path(), "top", &["88"], "").await;
    let enterprise = node(dir.path(), "enterprise", &["88.100.1"], "").await;
    // The top level holds 0.NA/88.100.1 directly, pointing at the enterprise node.
    create(
        &top,
        "88",
        "0.NA/88.100.1",
        vec![HandleValue::new(
            1,
            "HS_SITE",
            site_data(enterprise.native_addr.unwrap()),
        )],
    );
    create(
        &enterprise,
        "88.100.1",
        "88.100.1/SN-0001",
        vec![HandleValue::new(1, "URL", URL)],
    );
    let mut short = HandleValue::new(1, "URL", URL);
    short.ttl = Ttl::Relative(40);
    create(&enterprise, "88.100.1", "88.100.1/SHORT", vec![short]);
    let recursive = node(
        dir.path(),
        "recursive",
        &[],
        &format!(
            "[recursion]\nenabled = true\nroots = [\"{}\"]\ntimeout_ms = 1000\n",
            top.native_addr.unwrap()
        ),
    )
    .await;
    let addr = recursive.dns_addr.unwrap();
    let hits = |body: &str| metric(body, "idnode_cache_events_total{event=\"hit\"}");

    // Resolved through the hierarchy: not authoritative, recursion available.
    let (m, _) = udp(addr, &query(SN, RecordType::TXT, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert!(!m.metadata.authoritative && m.metadata.recursion_available);
    assert_eq!(txts(&m), [format!("1 URL {URL}")]);
    // The second time from the cache, over TCP this time.
    let before = hits(&http_get(recursive.http_addr, "/metrics").await);
    let m = tcp(addr, &query(SN, URI, None)).await;
    assert_eq!(parse_uri_rdata(&m.answers[0].data).unwrap().2, URL);
    let after = hits(&http_get(recursive.http_addr, "/metrics").await);
    assert!(after > before, "cache hits {before} -> {after}");
    // Unknown identifiers: NXDOMAIN with the SOA, not authoritative.
    let (m, _) = udp(
        addr,
        &query("nope.1.100.88.id.example.", RecordType::TXT, None),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(!m.metadata.authoritative && has_soa_authority(&m));
    // Recursion does not depend on RD: the zone is one namespace.
    let mut no_rd = query_message(SN, RecordType::TXT, None);
    no_rd.metadata.recursion_desired = false;
    let (m, _) = udp(addr, &no_rd.to_vec().unwrap()).await;
    assert_eq!(txts(&m).len(), 1);
    // The apex is this node's own.
    let (m, _) = udp(addr, &query("id.example.", RecordType::SOA, None)).await;
    assert!(m.metadata.authoritative && m.metadata.recursion_available);

    // TTLs count down as the cache entry ages, on answers built from the cache (TCP) and on
    // replayed ones (UDP): no record outlives the entry it came from. (The value's TTL, 40,
    // is under the negative TTL, 60, of the candidate `88.100.1/short` tried first.)
    let short = "short.1.100.88.id.example.";
    let packet = query(short, RecordType::TXT, None);
    let (m, _) = udp(addr, &packet).await;
    let first = m.answers[0].ttl;
    assert!((39..=40).contains(&first), "{m}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (m, _) = udp(addr, &packet).await;
    assert!(m.answers[0].ttl <= first - 2, "replayed: {m}");
    assert!(m.answers[0].ttl >= 30, "{m}");
    let m = tcp(addr, &packet).await;
    assert!(m.answers[0].ttl <= first - 2, "from the cache: {m}");
    assert!(m.answers[0].ttl >= 30, "{m}");

    for n in [recursive, enterprise, top] {
        n.shutdown().await;
    }
}

/// The UDP workers replay encoded answers for repeated queries: each copy carries its own
/// query's ID, and a write to the registry retires them (the next answer shows the write and
/// the new SOA serial).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_answers_follow_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), "replay", &["88.100.1"], "").await;
    let addr = n.dns_addr.unwrap();
    create(
        &n,
        "88.100.1",
        "88.100.1/SN-R1",
        vec![HandleValue::new(1, "DESC", "first")],
    );
    let mut q = query_message("sn-r1.1.100.88.id.example.", RecordType::TXT, Some(1232));
    let mut first = Vec::new();
    for id in [100u16, 200, 300, 400] {
        q.metadata.id = id;
        let bytes = udp_raw(addr, &q.to_vec().unwrap(), WAIT).await.unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, id);
        assert_eq!(txts(&m), vec!["1 DESC first".to_string()]);
        if first.is_empty() {
            first = bytes;
        } else {
            // Byte for byte the same answer, but for the ID.
            assert_eq!(bytes[2..], first[2..]);
        }
    }
    // A miss is replayed too, until the name is created.
    let mut miss = query_message("sn-r2.1.100.88.id.example.", RecordType::TXT, Some(1232));
    for id in [1u16, 2] {
        miss.metadata.id = id;
        let (m, _) = udp(addr, &miss.to_vec().unwrap()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    let engine = &n.engine;
    let admin = Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap();
    let identity = engine
        .authenticate_secret(&admin, 300, SECRET.as_bytes())
        .unwrap();
    let handle = Handle::parse("88.100.1/SN-R1", SuffixCase::Sensitive).unwrap();
    engine
        .create(
            &identity,
            &handle,
            vec![HandleValue::new(1, "DESC", "second")],
            Overwrite::Yes,
        )
        .unwrap();
    create(
        &n,
        "88.100.1",
        "88.100.1/SN-R2",
        vec![HandleValue::new(1, "DESC", "new")],
    );
    q.metadata.id = 500;
    let (m, _) = udp(addr, &q.to_vec().unwrap()).await;
    assert_eq!(m.metadata.id, 500);
    assert_eq!(txts(&m), vec!["1 DESC second".to_string()]);
    miss.metadata.id = 3;
    let (m, _) = udp(addr, &miss.to_vec().unwrap()).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(txts(&m), vec!["1 DESC new".to_string()]);
    // Every replay is counted like any other answer.
    let metrics = http_get(n.http_addr, "/metrics").await;
    assert!(
        metric(
            &metrics,
            "idnode_requests_total{code=\"NOERROR\",op=\"query\",proto=\"dns\"}"
        ) >= 6
    );
    n.shutdown().await;
}

/// A query over UDP from a socket bound to `from` (another loopback address is another
/// client); `None` when nothing comes back within `wait`.
async fn udp_from(from: &str, addr: SocketAddr, packet: &[u8], wait: Duration) -> Option<Message> {
    let sock = UdpSocket::bind(format!("{from}:0")).await.unwrap();
    sock.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

/// A query over TCP from `from`.
async fn tcp_from(from: &str, addr: SocketAddr, packet: &[u8]) -> Message {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    tcp_send(&mut s, packet).await;
    tcp_recv(&mut s).await
}

/// Hole 7: only clients in `recursion.allow` get recursion. Another client gets REFUSED (as
/// from a node that does not recurse), over UDP and TCP; the UDP workers neither replay the
/// allowed client's recursive answer to it nor its REFUSED to the allowed client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole7_dns_recursion_only_for_allowed_clients() {
    let dir = tempfile::tempdir().unwrap();
    let top = node(dir.path(), "top", &["88"], "").await;
    let enterprise = node(dir.path(), "enterprise", &["88.100.1"], "").await;
    create(
        &top,
        "88",
        "0.NA/88.100.1",
        vec![HandleValue::new(
            1,
            "HS_SITE",
            site_data(enterprise.native_addr.unwrap()),
        )],
    );
    for h in ["88.100.1/SN-0001", "88.100.1/SN-0002"] {
        create(
            &enterprise,
            "88.100.1",
            h,
            vec![HandleValue::new(1, "URL", URL)],
        );
    }
    let recursive = node(
        dir.path(),
        "recursive",
        &[],
        &format!(
            "[recursion]\nenabled = true\nroots = [\"{}\"]\ntimeout_ms = 1000\nallow = [\"127.0.0.1/32\"]\n",
            top.native_addr.unwrap()
        ),
    )
    .await;
    let addr = recursive.dns_addr.unwrap();
    let (allowed, other) = ("127.0.0.1", "127.0.0.2");

    // The allowed client's answer is not replayed to another client (same query bytes).
    let packet = query(SN, RecordType::TXT, None);
    let m = udp_from(allowed, addr, &packet, WAIT)
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert_eq!(txts(&m), [format!("1 URL {URL}")]);
    let m = udp_from(other, addr, &packet, WAIT).await.expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{m}");
    assert!(m.answers.is_empty());
    // ... nor the other client's REFUSED to the allowed one.
    let packet = query("sn-0002.1.100.88.id.example.", RecordType::TXT, None);
    for _ in 0..2 {
        let m = udp_from(other, addr, &packet, WAIT).await.expect("answer");
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{m}");
    }
    let m = udp_from(allowed, addr, &packet, WAIT)
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    // TCP: the same.
    let m = tcp_from(other, addr, &packet).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{m}");
    let m = tcp_from(allowed, addr, &packet).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");

    let body = http_get(recursive.http_addr, "/metrics").await;
    let refused = metric(
        &body,
        "idnode_recursion_refused_total{reason=\"not_allowed\"}",
    );
    assert!(refused >= 4, "{refused}");
    for n in [recursive, enterprise, top] {
        n.shutdown().await;
    }
}

/// Hole 7: `recursion.max_concurrent` caps lookups in flight on every front end together:
/// with one lookup stuck on a root that never answers, DNS gets SERVFAIL at once and HTTP 503,
/// counted as `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole7_recursion_cap_is_shared_by_dns_and_http() {
    let dir = tempfile::tempdir().unwrap();
    // A root that reads requests and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let root = silent.local_addr().unwrap();
    let recursive = node(
        dir.path(),
        "recursive",
        &[],
        &format!(
            "[recursion]\nenabled = true\nroots = [\"{root}\"]\ntimeout_ms = 3000\nattempts = 1\n\
             deadline_ms = 3000\nmax_concurrent = 1\n"
        ),
    )
    .await;
    let addr = recursive.dns_addr.unwrap();
    // The first lookup holds the only slot while the root stays silent.
    let stuck = tokio::spawn(async move {
        udp_from(
            "127.0.0.1",
            addr,
            &query("a.1.100.88.id.example.", RecordType::TXT, None),
            Duration::from_secs(30),
        )
        .await
    });
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), silent.recv_from(&mut buf))
        .await
        .expect("the recursor asks the root")
        .unwrap();
    // Beyond the cap: refused without waiting for the upstream.
    let m = udp_from(
        "127.0.0.1",
        addr,
        &query("b.1.100.88.id.example.", RecordType::TXT, None),
        Duration::from_secs(2),
    )
    .await
    .expect("an answer while the first lookup is stuck");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m}");
    let status = http_get(recursive.http_addr, "/api/handles/88.100.1/B").await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    let status = http_get(recursive.http_addr, "/88.100.1/B").await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    let body = http_get(recursive.http_addr, "/metrics").await;
    assert!(metric(&body, "idnode_recursion_refused_total{reason=\"busy\"}") >= 3);
    // The stuck lookup ends with its deadline, and gives its slot back.
    let m = stuck.await.unwrap().expect("an answer after the deadline");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    recursive.shutdown().await;
}

/// Issue 11, hole 5: an HS_SECKEY stored with public read (an explicit "1110", or a record
/// from before secrets defaulted to admin-only) is never published as TXT, over UDP or TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole5_dns_never_publishes_a_stored_public_seckey() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), "node", &["88.100.1"], "").await;
    create(
        &n,
        "88.100.1",
        "88.100.1/SN-0001",
        vec![
            HandleValue::new(1, "URL", URL),
            HandleValue::new(300, "HS_SECKEY", "dns-device-secret")
                .with_permissions(ValuePermissions::DEFAULT),
        ],
    );
    let addr = n.dns_addr.unwrap();
    for qtype in [RecordType::TXT, RecordType::ANY] {
        let (m, _) = udp(addr, &query(SN, qtype, Some(4096))).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let texts = txts(&m);
        assert_eq!(texts, [format!("1 URL {URL}")], "{qtype}");
        let m = tcp(addr, &query(SN, qtype, None)).await;
        assert!(
            txts(&m).iter().all(|t| !t.contains("dns-device-secret")),
            "{qtype}: {:?}",
            txts(&m)
        );
    }
    n.shutdown().await;
}
