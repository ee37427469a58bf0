//! Connection exhaustion (issue 11, hole 6) on the three TCP front ends, over real sockets on
//! loopback: per-client caps, a total cap that idle sockets from many addresses (127.0.0.x)
//! cannot use to lock a client out, deadlines on slowly dripped requests, write timeouts on
//! clients that never read, and the national SDK's one long-lived connection that keeps
//! sending requests. Every wait is bounded; nothing asserts on how long something took.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::model::{Handle, HandleValue, SuffixCase};
use idnode::resolve::Overwrite;
use idnode::server::{open_registry, prepare_registry, start, RunningNode};
use idnode::wire::handle::message::{op, Body, Envelope, Message, ENVELOPE_LEN};

const SECRET: &str = "connections-secret";
/// Bound on one network wait.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Front {
    Native,
    Http,
    Dns,
}

impl Front {
    fn label(self) -> &'static str {
        match self {
            Front::Native => "native",
            Front::Http => "http",
            Front::Dns => "dns",
        }
    }

    fn addr(self, node: &RunningNode) -> SocketAddr {
        match self {
            Front::Native => node.native_addr.unwrap(),
            Front::Http => node.http_addr,
            Front::Dns => node.dns_addr.unwrap(),
        }
    }

    /// The configuration section of this front end.
    fn section(self) -> &'static str {
        match self {
            Front::Native => "handle",
            Front::Http => "http",
            Front::Dns => "dns",
        }
    }
}

/// A node homing 88.100.1 with every listener on a free port; `extra` is added to the section
/// of `front`. It holds `88.100.1/small` (one URL) and `88.100.1/big` (about 96 KB of text).
async fn node(dir: &Path, front: Front, extra: &str) -> RunningNode {
    std::fs::write(dir.join("88.100.1.admin-secret"), SECRET).unwrap();
    let mut sections = [
        ("http", String::from("listen = \"127.0.0.1:0\"\n")),
        ("handle", String::from("listen = \"127.0.0.1:0\"\n")),
        ("dns", String::from("listen = \"127.0.0.1:0\"\n")),
    ];
    for (name, text) in &mut sections {
        if *name == front.section() {
            text.push_str(extra);
            text.push('\n');
        }
    }
    let mut toml = format!("[node]\ndata_dir = {dir:?}\nhomed_prefixes = [\"88.100.1\"]\n");
    for (name, text) in sections {
        toml.push_str(&format!("[{name}]\n{text}"));
    }
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    let node = start(config, Arc::new(registry), Metrics::new().unwrap())
        .await
        .unwrap();
    create(
        &node,
        "small",
        vec![HandleValue::new(1, "URL", "https://example.com/a")],
    );
    let filler = "x".repeat(8000);
    create(
        &node,
        "big",
        (1..=12)
            .map(|i| HandleValue::new(i, "DESC", filler.as_str()))
            .collect(),
    );
    // Answers of about 48 KB for DNS (whose TCP answers stop at 64 KB).
    create(
        &node,
        "dnsbig",
        (1..=6)
            .map(|i| HandleValue::new(i, "DESC", filler.as_str()))
            .collect(),
    );
    node
}

fn create(node: &RunningNode, suffix: &str, values: Vec<HandleValue>) {
    let engine = &node.engine;
    let admin = Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap();
    let identity = engine
        .authenticate_secret(&admin, 300, SECRET.as_bytes())
        .unwrap();
    let handle = Handle::parse(&format!("88.100.1/{suffix}"), SuffixCase::Sensitive).unwrap();
    engine
        .create(&identity, &handle, values, Overwrite::No)
        .unwrap();
}

/// A connection to `addr` from `127.0.0.<from>`.
async fn connect_from(from: u8, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from([127, 0, 0, from]), 0))
        .unwrap();
    timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap()
}

/// The value of one sample of the node's metrics (0 when absent).
fn metric(node: &RunningNode, sample: &str) -> i64 {
    node.metrics
        .render()
        .lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as i64)
}

/// Wait (bounded) until `sample` is at least `at_least`.
async fn until_metric(node: &RunningNode, sample: &str, at_least: i64) {
    for _ in 0..300 {
        if metric(node, sample) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{sample} stayed at {} (wanted {at_least})",
        metric(node, sample)
    );
}

/// Wait until the node has accepted `n` connections on `front`.
async fn until_open(node: &RunningNode, front: Front, n: i64) {
    until_metric(
        node,
        &format!("idnode_connections_open{{proto=\"{}\"}}", front.label()),
        n,
    )
    .await;
}

/// Whether the node closed `stream` (EOF or reset) within the bounded wait; bytes that
/// arrive before are discarded.
async fn closed_by_node(stream: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn resolution(handle: &str, request_id: u32) -> Vec<u8> {
    let mut m = Message::request(
        op::RESOLUTION,
        0,
        Body::Resolution {
            handle: handle.into(),
            indexes: vec![],
            types: vec![],
        },
    );
    m.envelope.request_id = request_id;
    m.header.expiration = 0x6500_0000;
    m.encode()
}

/// One native answer, or `None` when the connection closed or nothing came.
async fn native_answer(stream: &mut TcpStream) -> Option<Message> {
    let mut head = [0u8; ENVELOPE_LEN];
    timeout(WAIT, stream.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    let env = Envelope::decode(&head).ok()?;
    let mut body = vec![0u8; env.message_length as usize];
    timeout(WAIT, stream.read_exact(&mut body))
        .await
        .ok()?
        .ok()?;
    Message::decode(env, &body).ok()
}

/// A DNS TXT query for `88.100.1/<suffix>`, TCP-framed.
fn dns_query(suffix: &str, id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in [suffix, "1", "100", "88", "id", "example"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 16, 0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

/// One DNS answer's ID, or `None` when the connection closed or nothing came.
async fn dns_answer(stream: &mut TcpStream) -> Option<u16> {
    let mut len = [0u8; 2];
    timeout(WAIT, stream.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
    timeout(WAIT, stream.read_exact(&mut m)).await.ok()?.ok()?;
    let id = m.get(..2)?;
    Some(u16::from_be_bytes([id[0], id[1]]))
}

/// One HTTP GET on `stream`; the response head's status.
async fn http_get(stream: &mut TcpStream, path: &str) -> Option<u16> {
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut out = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1)?.parse().ok()
}

/// Whether a fresh connection from `127.0.0.<from>` is answered on `front`.
async fn served_from(from: u8, front: Front, node: &RunningNode) -> bool {
    let mut s = connect_from(from, front.addr(node)).await;
    served(&mut s, front).await
}

/// Whether `stream` gets an answer to a small request on `front`.
async fn served(stream: &mut TcpStream, front: Front) -> bool {
    match front {
        Front::Native => {
            if stream
                .write_all(&resolution("88.100.1/small", 7))
                .await
                .is_err()
            {
                return false;
            }
            native_answer(stream)
                .await
                .is_some_and(|m| m.header.response_code == 1)
        }
        Front::Http => http_get(stream, "/healthz").await == Some(200),
        Front::Dns => {
            if stream.write_all(&dns_query("small", 77)).await.is_err() {
                return false;
            }
            dns_answer(stream).await == Some(77)
        }
    }
}

async fn per_client_cap(front: Front) {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), front, "max_connections_per_client = 3").await;
    let addr = front.addr(&node);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(1, addr).await);
    }
    until_open(&node, front, 3).await;
    // One more from the same address is closed at once.
    let mut over = connect_from(1, addr).await;
    assert!(
        closed_by_node(&mut over).await,
        "{front:?}: a 4th connection from one address was kept"
    );
    let refused = format!(
        "idnode_connections_refused_total{{proto=\"{}\",reason=\"per_client\"}}",
        front.label()
    );
    until_metric(&node, &refused, 1).await;
    // Another address is served, and so are the held ones.
    assert!(served_from(2, front, &node).await, "{front:?}: 127.0.0.2");
    assert!(served(&mut held[0], front).await, "{front:?}: held");
    drop(held);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_per_client_cap_native() {
    per_client_cap(Front::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_per_client_cap_http() {
    per_client_cap(Front::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_per_client_cap_dns() {
    per_client_cap(Front::Dns).await;
}

/// Eight idle connections from four other addresses hold the whole total cap (with idle and
/// request timeouts far beyond the test's waits; on HTTP half of them with a half-sent request
/// head): the next client is still served, because an idle connection is closed to make room.
async fn idle_sockets_do_not_lock_out(front: Front) {
    let dir = tempfile::tempdir().unwrap();
    let extra = match front {
        Front::Http => {
            "max_connections = 8\nmax_connections_per_client = 2\nrequest_timeout_secs = 600"
        }
        _ => "max_connections = 8\nmax_connections_per_client = 2\nidle_timeout_secs = 600",
    };
    let node = node(dir.path(), front, extra).await;
    let addr = front.addr(&node);
    let mut attacker = Vec::new();
    for from in 2..=5 {
        for _ in 0..2 {
            attacker.push(connect_from(from, addr).await);
        }
    }
    if let Front::Http = front {
        // Half of them also start a request head and never finish it: hyper would wait out
        // its header timeout for those, the node must not.
        for s in attacker.iter_mut().step_by(2) {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
    }
    until_open(&node, front, 8).await;
    for _ in 0..3 {
        assert!(
            served_from(1, front, &node).await,
            "{front:?}: a client was locked out by idle connections"
        );
    }
    let evicted = format!(
        "idnode_connections_closed_total{{proto=\"{}\",reason=\"evicted\"}}",
        front.label()
    );
    until_metric(&node, &evicted, 1).await;
    drop(attacker);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_idle_sockets_do_not_lock_out_native() {
    idle_sockets_do_not_lock_out(Front::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_idle_sockets_do_not_lock_out_http() {
    idle_sockets_do_not_lock_out(Front::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_idle_sockets_do_not_lock_out_dns() {
    idle_sockets_do_not_lock_out(Front::Dns).await;
}

/// A request dripped one byte every 100 ms must not keep the connection past the request
/// timeout (1 s): the node closes it before the request is complete (or, for an HTTP body,
/// answers 408), where it used to wait for the whole request and answer it.
async fn slow_drip(front: Front, request: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), front, "request_timeout_secs = 1").await;
    let mut s = connect_from(1, front.addr(&node)).await;
    for b in request {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Whatever comes back is at most a 408; then the connection must be closed.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    assert!(closed, "{front:?}: the dripping connection was kept open");
    match front {
        Front::Http => {
            let text = String::from_utf8_lossy(&out);
            assert!(
                out.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{front:?}: {text}"
            );
        }
        _ => assert!(
            out.is_empty(),
            "{front:?}: the dripped request was answered"
        ),
    }
    until_metric(
        &node,
        &format!(
            "idnode_connections_closed_total{{proto=\"{}\",reason=\"request_timeout\"}}",
            front.label()
        ),
        1,
    )
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_slow_drip_native() {
    slow_drip(Front::Native, &resolution("88.100.1/small", 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_slow_drip_dns() {
    slow_drip(Front::Dns, &dns_query("small", 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_slow_drip_http_head() {
    slow_drip(
        Front::Http,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: 0123456789\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_slow_drip_http_body() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Front::Http, "request_timeout_secs = 1").await;
    let mut s = connect_from(1, node.http_addr).await;
    let body = br#"{"values":[{"index":1,"type":"URL","data":{"format":"string","value":"x"}}]}"#;
    // Authenticated, so the body is read whatever the order of checks.
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("300%3A0.NA%2F88.100.1:{SECRET}"),
    );
    let head = format!(
        "PUT /api/handles/88.100.1/drip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Basic {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for b in body {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    node.shutdown().await;
}

/// A client that sends requests for a large answer and never reads is disconnected by the
/// write timeout (1 s), and its slot (the only one its address may hold) is freed.
async fn non_reader(front: Front) {
    let dir = tempfile::tempdir().unwrap();
    let node = node(
        dir.path(),
        front,
        "write_timeout_secs = 1\nmax_connections_per_client = 1",
    )
    .await;
    let mut s = connect_from(1, front.addr(&node)).await;
    // About 30 MB of answers, far beyond what the socket buffers hold.
    let mut requests = Vec::new();
    for i in 0..300u32 {
        match front {
            Front::Native => requests.extend(resolution("88.100.1/big", i)),
            Front::Http => requests
                .extend_from_slice(b"GET /api/handles/88.100.1/big HTTP/1.1\r\nHost: x\r\n\r\n"),
            Front::Dns => requests.extend(dns_query("dnsbig", i as u16)),
        }
    }
    // The node may stop reading once its writes stall: never wait on this write for long.
    let _ = timeout(WAIT, s.write_all(&requests)).await;
    until_metric(
        &node,
        &format!(
            "idnode_connections_closed_total{{proto=\"{}\",reason=\"write_timeout\"}}",
            front.label()
        ),
        1,
    )
    .await;
    // The slot is free again: a new connection from the same address is served.
    let mut served_again = false;
    for _ in 0..50 {
        if served_from(1, front, &node).await {
            served_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served_again,
        "{front:?}: the non-reading client kept its slot"
    );
    drop(s);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_non_reading_client_native() {
    non_reader(Front::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_non_reading_client_http() {
    non_reader(Front::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_non_reading_client_dns() {
    non_reader(Front::Dns).await;
}

/// The national SDK keeps one native connection and sends requests on it: a request every
/// 100 ms for three times the (shortened, 1 s) idle timeout is all answered on that one
/// connection, while idle sockets from other addresses keep the total cap (4) under pressure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole6_sdk_long_connection_kept() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(
        dir.path(),
        Front::Native,
        "idle_timeout_secs = 1\nrequest_timeout_secs = 1\nmax_connections = 4",
    )
    .await;
    let addr = node.native_addr.unwrap();
    let mut sdk = connect_from(1, addr).await;
    let mut pressure = Vec::new();
    for i in 0..30u32 {
        sdk.write_all(&resolution("88.100.1/small", i))
            .await
            .unwrap();
        let answer = native_answer(&mut sdk)
            .await
            .unwrap_or_else(|| panic!("request {i}: the SDK connection was closed"));
        assert_eq!(answer.header.response_code, 1);
        assert_eq!(answer.envelope.request_id, i);
        // Idle sockets from other addresses arrive all the time.
        pressure.push(connect_from(2 + (i % 50) as u8, addr).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_metric(
        &node,
        "idnode_connections_closed_total{proto=\"native\",reason=\"evicted\"}",
        1,
    )
    .await;
    drop(pressure);
    node.shutdown().await;
}
