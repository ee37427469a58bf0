//! The four-role hierarchy in one process on 127.0.0.1: a top-level node (homes 88), a
//! secondary node (homes 88.100), an enterprise node (homes 88.100.1), a two-server site for
//! another enterprise (88.100.2, hash-partitioned), and a recursive node. Delegations and
//! identifiers are registered through the authenticated admin path; a factory-style lookup
//! goes through the recursive node over UDP, TCP and HTTP, and the second lookup is a cache hit.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use idnode::client::{AdminRequest, Authenticator, Client, Lookup, Transport};
use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::model::{AdminPermissions, AdminRef, HandleValue, ValueReference};
use idnode::server::{open_registry, prepare_registry, root_sites, start, RunningNode};

const SECRET: &str = "hierarchy-secret";

async fn node(dir: &Path, name: &str, homed: &[&str], extra: &str) -> RunningNode {
    node_at(dir, name, homed, extra, "127.0.0.1:0").await
}

/// A free port on 127.0.0.1 for both TCP and UDP (bound and released; tests only).
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn node_at(dir: &Path, name: &str, homed: &[&str], extra: &str, native: &str) -> RunningNode {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    for p in homed {
        std::fs::write(data.join(format!("{p}.admin-secret")), SECRET).unwrap();
    }
    let homed: Vec<String> = homed.iter().map(|p| format!("{p:?}")).collect();
    let toml = format!(
        "[node]\ndata_dir = {data:?}\nhomed_prefixes = [{}]\n{extra}\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[handle]\nlisten = \"{native}\"\n\
         [dns]\nlisten = \"127.0.0.1:0\"\n",
        homed.join(", ")
    );
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{name}: {e}\n{toml}"));
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    start(config, Arc::new(registry), Metrics::new().unwrap())
        .await
        .unwrap()
}

fn admin_of(prefix: &str) -> Authenticator {
    Authenticator::SecretKey {
        identity_handle: format!("0.NA/{prefix}"),
        index: 300,
        secret: SECRET.as_bytes().to_vec(),
    }
}

/// The HS_SITE value data of a site made of these servers (UDP+TCP query on each).
fn site_data(servers: &[SocketAddr]) -> Vec<u8> {
    let mut site = root_sites(&servers[..1]).remove(0);
    site.servers = servers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut s = root_sites(&[*a]).remove(0).servers.remove(0);
            s.server_id = i as u32 + 1;
            s
        })
        .collect();
    site.encode()
}

fn admin_value(prefix: &str) -> HandleValue {
    let admin = AdminRef {
        permissions: AdminPermissions::ALL,
        admin: ValueReference {
            handle: format!("0.NA/{prefix}"),
            index: 200,
        },
    };
    HandleValue::new(100, "HS_ADMIN", admin.encode())
}

fn ok(r: Result<idnode::client::Response, idnode::client::ClientError>) {
    let r = r.unwrap();
    assert!(r.is_success(), "{r:?}");
}

fn metric(body: &str, name_and_labels: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_lookup_through_the_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let top = node(dir.path(), "top", &["88"], "").await;
    let secondary = node(dir.path(), "secondary", &["88.100"], "").await;
    let enterprise = node(dir.path(), "enterprise", &["88.100.1"], "").await;
    // A two-server site for 88.100.2: each server holds its hash partition.
    // Its servers publish the whole site (both addresses) so clients can route by hash.
    let (p0, p1) = (free_port(), free_port());
    let servers = format!("servers = [\"127.0.0.1:{p0}\", \"127.0.0.1:{p1}\"]");
    let part0 = node_at(
        dir.path(),
        "part0",
        &["88.100.2"],
        &format!("partition = {{ index = 0, count = 2, {servers} }}"),
        &format!("127.0.0.1:{p0}"),
    )
    .await;
    let part1 = node_at(
        dir.path(),
        "part1",
        &["88.100.2"],
        &format!("partition = {{ index = 1, count = 2, {servers} }}"),
        &format!("127.0.0.1:{p1}"),
    )
    .await;
    let top_addr = top.native_addr.unwrap();
    let recursive = node(
        dir.path(),
        "recursive",
        &[],
        &format!("\n[recursion]\nenabled = true\nroots = [\"{top_addr}\"]\ntimeout_ms = 1000\n"),
    )
    .await;
    let (sec_addr, ent_addr) = (
        secondary.native_addr.unwrap(),
        enterprise.native_addr.unwrap(),
    );
    let parts = [part0.native_addr.unwrap(), part1.native_addr.unwrap()];
    let rec_native = recursive.native_addr.unwrap();
    let rec_http = recursive.http_addr;

    tokio::task::spawn_blocking(move || {
        // The top-level operator grants 88.100 to the secondary node: 0.NA/88.100 with the
        // secondary's admin and its site as HS_SITE.PREFIX.
        ok(Client::new(top_addr).admin(
            AdminRequest::Create {
                handle: "0.NA/88.100".into(),
                values: vec![
                    admin_value("88.100"),
                    HandleValue::new(1, "HS_SITE.PREFIX", site_data(&[sec_addr])),
                ],
                overwrite: false,
                mint: false,
            },
            &admin_of("88"),
        ));
        // The secondary grants 88.100.1 to the enterprise node, and 88.100.2 to the two-server site.
        let sec = Client::new(sec_addr);
        for (prefix, servers) in [("88.100.1", vec![ent_addr]), ("88.100.2", parts.to_vec())] {
            ok(sec.admin(
                AdminRequest::Create {
                    handle: format!("0.NA/{prefix}"),
                    values: vec![
                        admin_value(prefix),
                        HandleValue::new(1, "HS_SITE", site_data(&servers)),
                    ],
                    overwrite: false,
                    mint: false,
                },
                &admin_of("88.100"),
            ));
        }
        // The enterprise registers a product.
        ok(Client::new(ent_addr).admin(
            AdminRequest::Create {
                handle: "88.100.1/SN-0001".into(),
                values: vec![HandleValue::new(1, "URL", "https://example.com/sn/0001")],
                overwrite: false,
                mint: false,
            },
            &admin_of("88.100.1"),
        ));
        // The two-server enterprise: each identifier goes to the server its hash picks; the
        // other server refuses it (301).
        for i in 0..6 {
            let handle = format!("88.100.2/P-{i}");
            let owner = idnode::resolve::site::handle_hash(&handle, 2) as usize % 2;
            let create = AdminRequest::Create {
                handle: handle.clone(),
                values: vec![HandleValue::new(
                    1,
                    "URL",
                    format!("https://example.com/p/{i}"),
                )],
                overwrite: false,
                mint: false,
            };
            let wrong = Client::new(parts[1 - owner])
                .admin(create.clone(), &admin_of("88.100.2"))
                .unwrap();
            assert_eq!(wrong.code, 301, "{handle} on the wrong server");
            ok(Client::new(parts[owner]).admin(create, &admin_of("88.100.2")));
        }

        // The native client asked the wrong server of the site is routed by the site's hash.
        let site = Client::new(parts[0]).site_info(Transport::Udp).unwrap();
        assert_eq!(site.servers.len(), 2);
        for i in 0..6 {
            let handle = format!("88.100.2/P-{i}");
            let routed = Client::new(parts[0])
                .routed(&site, &handle, Transport::Udp)
                .unwrap();
            let owner = idnode::resolve::site::handle_hash(&handle, 2) as usize % 2;
            assert_eq!(routed.server(), parts[owner]);
            assert_eq!(
                routed
                    .resolve(Lookup::all(&handle), Transport::Udp, true)
                    .unwrap()
                    .code,
                1
            );
        }

        // A factory asks the recursive node: over UDP, then TCP.
        let factory = Client::new(rec_native).with_timeout(Duration::from_secs(15));
        let r = factory
            .resolve(Lookup::all("88.100.1/SN-0001"), Transport::Udp, true)
            .unwrap();
        assert_eq!(r.code, 1, "{r:?}");
        assert_eq!(r.values[0].data_str(), Some("https://example.com/sn/0001"));
        let r = factory
            .resolve(
                Lookup::new("88.100.1/SN-0001", &[], &["URL".to_string()]),
                Transport::Tcp,
                true,
            )
            .unwrap();
        assert_eq!(r.code, 1);
        // Both partitions of the two-server site resolve through the recursive node.
        for i in 0..6 {
            let r = factory
                .resolve(
                    Lookup::all(&format!("88.100.2/P-{i}")),
                    Transport::Udp,
                    true,
                )
                .unwrap();
            assert_eq!(
                r.values[0].data_str(),
                Some(format!("https://example.com/p/{i}").as_str())
            );
        }
        // Not found anywhere: 100 (and cached negatively).
        assert_eq!(
            factory
                .resolve(Lookup::all("88.100.1/NOPE"), Transport::Udp, true)
                .unwrap()
                .code,
            100
        );
        // An unknown industry: the top level has no delegation → 100 for the prefix → 100.
        assert_eq!(
            factory
                .resolve(Lookup::all("88.999.1/X"), Transport::Udp, true)
                .unwrap()
                .code,
            100
        );
    })
    .await
    .unwrap();

    // curl-style: HTTP GET at the recursive node.
    let (status, body) = http_get(rec_http, "/api/handles/88.100.1/SN-0001").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("https://example.com/sn/0001"));
    // The proxy on the recursive node redirects to the product page.
    let (status, _) = http_get(rec_http, "/88.100.1/SN-0001").await;
    assert_eq!(status, 302);
    let (_, before) = http_get(rec_http, "/metrics").await;
    let hits_before = metric(&before, "idnode_cache_events_total{event=\"hit\"}");
    // The second identical lookup comes from the cache: more hits, no new upstream traffic at
    // the enterprise node.
    let (_, ent_before) = http_get(enterprise.http_addr, "/metrics").await;
    let (status, _) = http_get(rec_http, "/api/handles/88.100.1/SN-0001").await;
    assert_eq!(status, 200);
    let (_, after) = http_get(rec_http, "/metrics").await;
    assert!(
        metric(&after, "idnode_cache_events_total{event=\"hit\"}") > hits_before,
        "{after}"
    );
    let (_, ent_after) = http_get(enterprise.http_addr, "/metrics").await;
    let served = |m: &str| {
        m.lines()
            .filter(|l| {
                l.starts_with("idnode_requests_total")
                    && l.contains("op=\"resolve\"")
                    && !l.contains("proto=\"http\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(
        served(&ent_before),
        served(&ent_after),
        "the enterprise node was not asked again"
    );

    for n in [recursive, part1, part0, enterprise, secondary, top] {
        n.shutdown().await;
    }
}

/// A recursive node whose root is unreachable, or answers garbage or with the wrong request
/// id, answers a clear error within its deadline instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_lying_upstreams_give_clear_errors() {
    // A root that answers every datagram with garbage, and one that echoes a wrong request id.
    let garbage = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let liar = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (garbage_addr, liar_addr) = (garbage.local_addr().unwrap(), liar.local_addr().unwrap());
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((_, peer)) = garbage.recv_from(&mut buf).await {
            let _ = garbage
                .send_to(b"\xffnot a handle message at all", peer)
                .await;
        }
    });
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = liar.recv_from(&mut buf).await {
            let mut reply = buf[..n].to_vec();
            if reply.len() >= 12 {
                reply[8] ^= 0xff; // another request id
                let _ = liar.send_to(&reply, peer).await;
            }
        }
    });
    // An address nothing listens on (TCP refused; UDP silent).
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, root) in [
        ("garbage", garbage_addr),
        ("liar", liar_addr),
        ("closed", closed),
    ] {
        let extra = format!(
            "\n[recursion]\nenabled = true\nroots = [\"{root}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 3000\n"
        );
        let rec = node(dir.path(), name, &[], &extra).await;
        let addr = rec.native_addr.unwrap();
        let started = std::time::Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            Client::new(addr)
                .with_timeout(Duration::from_secs(10))
                .resolve(Lookup::all("88.100.1/SN-0001"), Transport::Tcp, true)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.code, 2, "{name}: {r:?}");
        assert!(
            !r.message.is_empty(),
            "{name}: the error says what went wrong"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{name}: bounded by the deadline"
        );
        rec.shutdown().await;
    }
}

/// [`http_get`] from a socket bound to `from` (another loopback address is another client).
async fn http_get_from(from: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// Hole 7: HTTP recursion (REST GET and the proxy) only for clients in `recursion.allow`;
/// others get the node's own, non-recursive answer. Type lists longer than the cap are
/// refused on HTTP and native alike, before any upstream work or cache entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole7_http_recursion_allow_list_and_request_caps() {
    let dir = tempfile::tempdir().unwrap();
    let top = node(dir.path(), "top", &["88"], "").await;
    let enterprise = node(dir.path(), "enterprise", &["88.100.1"], "").await;
    let ent_addr = enterprise.native_addr.unwrap();
    create_as_admin(
        &top,
        "88",
        "0.NA/88.100.1",
        vec![HandleValue::new(1, "HS_SITE", site_data(&[ent_addr]))],
    );
    let url = "https://example.com/hole7";
    create_as_admin(
        &enterprise,
        "88.100.1",
        "88.100.1/H7",
        vec![HandleValue::new(1, "URL", url)],
    );
    let recursive = node(
        dir.path(),
        "recursive",
        &[],
        &format!(
            "\n[recursion]\nenabled = true\nroots = [\"{}\"]\ntimeout_ms = 1000\nallow = [\"127.0.0.1\"]\n",
            top.native_addr.unwrap()
        ),
    )
    .await;
    let http = recursive.http_addr;
    let (allowed, other) = ("127.0.0.1", "127.0.0.2");

    let (status, body) = http_get_from(allowed, http, "/api/handles/88.100.1/H7").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(url));
    // Another client: the answer of a node that does not recurse (it homes nothing).
    let (status, body) = http_get_from(other, http, "/api/handles/88.100.1/H7").await;
    assert_ne!(status, 200, "{body}");
    assert!(!body.contains(url), "{body}");
    let (status, page) = http_get_from(other, http, "/88.100.1/H7").await;
    assert_eq!(status, 404, "{page}");
    assert!(!page.contains(url), "{page}");
    let (status, page) = http_get_from(allowed, http, "/88.100.1/H7").await;
    assert_eq!(status, 302, "{page}");

    // Too many types: refused, on HTTP and native.
    let types: Vec<String> = (0..33).map(|i| format!("T{i}")).collect();
    let query: Vec<String> = types.iter().map(|t| format!("type={t}")).collect();
    let path = format!("/api/handles/88.100.1/FRESH?{}", query.join("&"));
    let (status, body) = http_get_from(allowed, http, &path).await;
    assert_eq!(status, 400, "{body}");
    let long = vec!["X".repeat(65)];
    let rec_native = recursive.native_addr.unwrap();
    let codes = tokio::task::spawn_blocking(move || {
        let client = Client::new(rec_native).with_timeout(Duration::from_secs(10));
        [types, long].map(|t| {
            client
                .resolve(Lookup::new("88.100.1/FRESH", &[], &t), Transport::Udp, true)
                .unwrap()
                .code
        })
    })
    .await
    .unwrap();
    assert_eq!(codes, [4, 4]);
    // Native UDP: the allowed client gets the record through the hierarchy, another
    // address the answer of a node that does not recurse for it.
    let answers = tokio::task::spawn_blocking(move || {
        [allowed, other].map(|from| native_rec_query(from, rec_native, "88.100.1/H7"))
    })
    .await
    .unwrap();
    assert_eq!(answers[0].0, 1);
    assert!(answers[0].1.contains(url));
    assert_eq!(answers[1].0, 301, "{}", answers[1].1);
    assert!(!answers[1].1.contains(url));
    let (_, metrics) = http_get(http, "/metrics").await;
    assert_eq!(
        metric(&metrics, "idnode_recursion_refused_total{reason=\"shape\"}"),
        3
    );
    assert!(
        metric(
            &metrics,
            "idnode_recursion_refused_total{reason=\"not_allowed\"}"
        ) >= 3
    );
    for n in [recursive, enterprise, top] {
        n.shutdown().await;
    }
}

/// One REC resolution over UDP from the local address `from`: (response code, the answer's
/// values as text).
fn native_rec_query(from: &str, server: SocketAddr, handle: &str) -> (u32, String) {
    use idnode::wire::handle::message::{flag, op, Body, Message};
    let socket = std::net::UdpSocket::bind((from, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut m = Message::request(
        op::RESOLUTION,
        flag::RECURSIVE | flag::PUBLIC_ONLY,
        Body::Resolution {
            handle: handle.into(),
            indexes: vec![],
            types: vec![],
        },
    );
    m.envelope.request_id = 4242;
    socket.send_to(&m.encode(), server).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).unwrap();
    let r = Message::decode_full(&buf[..n]).unwrap();
    let text = match r.body {
        Body::Values { values, .. } => values
            .iter()
            .map(|v| String::from_utf8_lossy(&v.data).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        other => format!("{other:?}"),
    };
    (r.header.response_code, text)
}

/// Issue 11, hole 2: a record too large for UDP still resolves through the hierarchy. The
/// enterprise answers the recursive node's UDP query with RC 2 (too large for UDP), the
/// recursive node asks it again over TCP; the factory's UDP query gets RC 2 from the
/// recursive node in turn and the client follows it to TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole2_records_too_large_for_udp_resolve_through_recursion_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let top = node(dir.path(), "top", &["88"], "").await;
    let enterprise = node(dir.path(), "enterprise", &["88.100.1"], "").await;
    let ent_addr = enterprise.native_addr.unwrap();
    create_as_admin(
        &top,
        "88",
        "0.NA/88.100.1",
        vec![HandleValue::new(1, "HS_SITE", site_data(&[ent_addr]))],
    );
    let big: Vec<HandleValue> = (1..=10)
        .map(|i| HandleValue::new(i, "DESC", format!("{i:02}{}", "x".repeat(3000))))
        .collect();
    create_as_admin(&enterprise, "88.100.1", "88.100.1/BIG", big);
    let recursive = node(
        dir.path(),
        "recursive",
        &[],
        &format!(
            "\n[recursion]\nenabled = true\nroots = [\"{}\"]\ntimeout_ms = 1000\n",
            top.native_addr.unwrap()
        ),
    )
    .await;
    let rec_native = recursive.native_addr.unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        Client::new(rec_native)
            .with_timeout(Duration::from_secs(10))
            .resolve(Lookup::all("88.100.1/BIG"), Transport::Udp, true)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer.code, 1, "{}", answer.message);
    assert_eq!(answer.values.len(), 10);
    assert!(answer.values.iter().all(|v| v.data.len() == 3002));
    for n in [recursive, enterprise, top] {
        n.shutdown().await;
    }
}

/// Create `handle` on `n` as the administrator of `prefix` (300:0.NA/<prefix>, [`SECRET`]).
fn create_as_admin(n: &RunningNode, prefix: &str, handle: &str, values: Vec<HandleValue>) {
    let engine = &n.engine;
    let admin = engine.parse_handle(&format!("0.NA/{prefix}")).unwrap();
    let identity = engine
        .authenticate_secret(&admin, 300, SECRET.as_bytes())
        .unwrap();
    let handle = engine.parse_handle(handle).unwrap();
    engine
        .create(&identity, &handle, values, idnode::resolve::Overwrite::No)
        .unwrap();
}

/// One REC resolution over UDP with extra request flags; the decoded answer.
fn native_rec_message(
    server: SocketAddr,
    handle: &str,
    flags: u32,
) -> idnode::wire::handle::Message {
    use idnode::wire::handle::message::{flag, op, Body, Message};
    let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut m = Message::request(
        op::RESOLUTION,
        flag::RECURSIVE | flag::PUBLIC_ONLY | flags,
        Body::Resolution {
            handle: handle.into(),
            indexes: vec![],
            types: vec![],
        },
    );
    m.envelope.request_id = 4343;
    socket.send_to(&m.encode(), server).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).unwrap();
    Message::decode_full(&buf[..n]).unwrap()
}

/// Certified resolution through the recursive node: it asks upstream with CT, checks the
/// enterprise's signature with the key in the enterprise's HS_SITE (as the top-level node
/// delegates it), and signs its own answer with its own key; the ID-SDK's trusted query gets
/// both trust bits. When the delegation carries no key, a CT request is refused (RC 2: nothing
/// unverified is certified) and a trusted query is answered as untrusted (0x2 without 0x1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_node_verifies_upstream_signatures() {
    use idnode::auth::credential::Certification;
    use idnode::model::PublicKey;
    use idnode::wire::handle::message::flag;
    let dir = tempfile::tempdir().unwrap();
    let top = node(dir.path(), "top", &["88"], "").await;
    let keyed = node(dir.path(), "keyed", &["88.100.1"], "").await;
    let keyless = node(dir.path(), "keyless", &["88.100.2"], "").await;
    let (keyed_addr, keyless_addr) = (keyed.native_addr.unwrap(), keyless.native_addr.unwrap());
    // 88.100.1 is delegated with the site its node serves (its key included), 88.100.2 with
    // a site built from its address alone.
    let keyed_site = tokio::task::spawn_blocking(move || {
        Client::new(keyed_addr)
            .site_info(Transport::Tcp)
            .unwrap()
            .encode()
    })
    .await
    .unwrap();
    create_as_admin(
        &top,
        "88",
        "0.NA/88.100.1",
        vec![HandleValue::new(1, "HS_SITE", keyed_site)],
    );
    create_as_admin(
        &top,
        "88",
        "0.NA/88.100.2",
        vec![HandleValue::new(1, "HS_SITE", site_data(&[keyless_addr]))],
    );
    for (n, prefix) in [(&keyed, "88.100.1"), (&keyless, "88.100.2")] {
        create_as_admin(
            n,
            prefix,
            &format!("{prefix}/SN-1"),
            vec![HandleValue::new(
                1,
                "URL",
                format!("https://example.com/{prefix}"),
            )],
        );
    }
    let recursive = node(
        dir.path(),
        "recursive",
        &[],
        &format!(
            "\n[recursion]\nenabled = true\nroots = [\"{}\"]\ntimeout_ms = 2000\n",
            top.native_addr.unwrap()
        ),
    )
    .await;
    let rec = recursive.native_addr.unwrap();
    tokio::task::spawn_blocking(move || {
        let client = Client::new(rec).with_timeout(Duration::from_secs(10));
        let own = client.site_info(Transport::Udp).unwrap();
        let own_key = PublicKey::decode(&own.servers[0].public_key).unwrap();
        // Verified upstream, signed by the recursive node.
        let (r, cert) = client
            .resolve_certified(Lookup::all("88.100.1/SN-1"), Transport::Udp, true, &own_key)
            .unwrap();
        assert_eq!(r.code, 1, "{}", r.message);
        assert_eq!(cert, Certification::Verified);
        assert_eq!(r.values[0].data, b"https://example.com/88.100.1");
        let trusted = native_rec_message(rec, "88.100.1/SN-1", flag::TRUSTED_QUERY);
        assert_eq!(trusted.header.response_code, 1);
        assert_eq!(
            trusted.header.op_flag & 0x3,
            0x3,
            "trusted query, trusted result"
        );
        // No key in the delegation: nothing to verify with.
        let (r, cert) = client
            .resolve_certified(Lookup::all("88.100.2/SN-1"), Transport::Udp, true, &own_key)
            .unwrap();
        assert_eq!(r.code, 2, "{}", r.message);
        assert!(r.message.contains("could not be verified"), "{}", r.message);
        assert_eq!(
            cert,
            Certification::Verified,
            "the refusal itself is signed"
        );
        let untrusted = native_rec_message(rec, "88.100.2/SN-1", flag::TRUSTED_QUERY);
        assert_eq!(untrusted.header.response_code, 1);
        assert_eq!(
            untrusted.header.op_flag & 0x3,
            0x2,
            "trusted query, untrusted result"
        );
        // The plain lookup still works (and is cached as before).
        let plain = native_rec_message(rec, "88.100.2/SN-1", 0);
        assert_eq!(plain.header.response_code, 1);
        assert_eq!(plain.header.op_flag & 0x3, 0);
    })
    .await
    .unwrap();
    for n in [recursive, keyless, keyed, top] {
        n.shutdown().await;
    }
}
