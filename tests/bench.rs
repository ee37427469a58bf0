//! `idnode bench` against an in-process node on 127.0.0.1 (ports chosen by the OS): Handle
//! over UDP and TCP, DNS over UDP (closed and open loop), the HTTP API over HTTP and HTTPS,
//! and Handle requests with REC through a recursive node, about a second each. Only counts
//! are asserted, never timings.

use std::sync::Arc;
use std::time::Duration;

use idnode::bench::{basic_authorization, generate_ids, run, BenchConfig, Proto};
use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::model::{Handle, HandleValue, SuffixCase};
use idnode::resolve::Overwrite;
use idnode::server::{open_registry, prepare_registry, root_sites, start, RunningNode};

const SECRET: &str = "bench-secret";

/// Start a node homing 88.100.1 in `dir` (HTTPS with the example certificate if `tls`) and
/// register 20 identifiers; returns the node and the identifiers.
async fn node_with_ids(dir: &std::path::Path, tls: bool) -> (RunningNode, Vec<String>) {
    let data = dir.join("node");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("88.100.1.admin-secret"), SECRET).unwrap();
    let tls = if tls {
        "tls_cert = \"config/examples/cert.pem\"\ntls_key = \"config/examples/key.pem\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[node]\ndata_dir = {data:?}\nhomed_prefixes = [\"88.100.1\"]\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{tls}[handle]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nlisten = \"127.0.0.1:0\"\n"
    );
    let config = Config::from_toml(&toml).unwrap();
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    let node = tokio::time::timeout(
        Duration::from_secs(30),
        start(config, Arc::new(registry), Metrics::new().unwrap()),
    )
    .await
    .expect("start timed out")
    .unwrap();

    let ids = generate_ids("88.100.1", "SN-{:07}", 20).unwrap();
    let admin = Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap();
    let identity = node
        .engine
        .authenticate_secret(&admin, 300, SECRET.as_bytes())
        .unwrap();
    for id in &ids {
        let handle = Handle::parse(id, SuffixCase::Sensitive).unwrap();
        let values = vec![HandleValue::new(1, "URL", "http://example.com/x")];
        node.engine
            .create(&identity, &handle, values, Overwrite::No)
            .unwrap();
    }
    // The prefix's site is this node, so a recursive node with this node as its root finds
    // the identifiers here.
    let site = root_sites(&[node.native_addr.unwrap()]).remove(0);
    node.engine
        .add_values(
            &identity,
            &admin,
            vec![HandleValue::new(1, "HS_SITE", site.encode())],
            false,
        )
        .unwrap();
    (node, ids)
}

/// A node that homes nothing and recurses from `root`.
async fn recursive_node(dir: &std::path::Path, root: std::net::SocketAddr) -> RunningNode {
    let data = dir.join("recursive");
    std::fs::create_dir_all(&data).unwrap();
    let toml = format!(
        "[node]\ndata_dir = {data:?}\nhomed_prefixes = []\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[handle]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nlisten = \"127.0.0.1:0\"\n\
         [recursion]\nenabled = true\nroots = [\"{root}\"]\ntimeout_ms = 1000\n"
    );
    let config = Config::from_toml(&toml).unwrap();
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        start(config, Arc::new(registry), Metrics::new().unwrap()),
    )
    .await
    .expect("start timed out")
    .unwrap()
}

/// A one-second closed-loop run with 10% misses.
fn config(proto: Proto, server: std::net::SocketAddr, ids: &[String]) -> BenchConfig {
    BenchConfig {
        proto,
        server,
        host: None,
        tls: None,
        duration: Duration::from_secs(1),
        concurrency: 8,
        sockets: 2,
        rate: None,
        timeout: Duration::from_secs(5),
        ids: ids.to_vec(),
        zipf: Some(1.0),
        miss_share: 0.1,
        zone: "id.example.".into(),
        seed: 7,
        threads: None,
        recursive: false,
        put: None,
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_handle_udp_and_dns_udp() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ids) = node_with_ids(dir.path(), false).await;
    for (proto, addr) in [
        (Proto::HandleUdp, node.native_addr.unwrap()),
        (Proto::HandleTcp, node.native_addr.unwrap()),
        (Proto::DnsUdp, node.dns_addr.unwrap()),
    ] {
        let s = run(&config(proto, addr, &ids)).await.unwrap();
        assert!(s.queries_completed > 0, "{proto:?}: {s}");
        assert_eq!(s.queries_lost, 0, "{proto:?}: {s}");
        assert_eq!(s.queries_sent, s.queries_completed, "{proto:?}: {s}");
        let (found, missing) = match proto {
            Proto::DnsUdp => ("NOERROR", "NXDOMAIN"),
            _ => ("RC1", "RC100"),
        };
        assert!(s.response_codes.get(found).copied().unwrap_or(0) > 0, "{s}");
        assert!(
            s.response_codes.get(missing).copied().unwrap_or(0) > 0,
            "{s}"
        );
    }
    node.shutdown().await;
}

/// UDP open loop: 300 q/s for a second over 3 sockets (one sending thread, one receiving
/// thread per socket): exactly the scheduled queries are sent, and all are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_udp_open_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ids) = node_with_ids(dir.path(), false).await;
    for (proto, addr) in [
        (Proto::HandleUdp, node.native_addr.unwrap()),
        (Proto::DnsUdp, node.dns_addr.unwrap()),
    ] {
        let mut cfg = config(proto, addr, &ids);
        cfg.rate = Some(300.0);
        cfg.sockets = 3;
        let s = run(&cfg).await.unwrap();
        assert_eq!(s.queries_sent, 300, "{proto:?}: {s}");
        assert_eq!(s.queries_completed, 300, "{proto:?}: {s}");
        assert_eq!(s.queries_lost, 0, "{proto:?}: {s}");
        assert_eq!(s.first_error, None, "{proto:?}: {s}");
    }
    node.shutdown().await;
}

/// Handle TCP open loop: 200 q/s for a second over 4 connections; every scheduled query
/// counts as sent, and on loopback they are all answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_tcp_open_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ids) = node_with_ids(dir.path(), false).await;
    let mut cfg = config(Proto::HandleTcp, node.native_addr.unwrap(), &ids);
    cfg.rate = Some(200.0);
    cfg.concurrency = 4;
    let s = run(&cfg).await.unwrap();
    assert_eq!(s.queries_sent, 200, "{s}");
    assert_eq!(s.queries_completed + s.queries_lost, 200, "{s}");
    assert!(s.queries_completed > 0, "{s}");
    assert!(s.response_codes.get("RC1").copied().unwrap_or(0) > 0, "{s}");
    node.shutdown().await;
}

/// Nothing listens: every UDP query is lost (after the timeout), and the run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_udp_no_server_counts_lost() {
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ids = generate_ids("88.100.1", "SN-{:07}", 5).unwrap();
    let mut cfg = config(Proto::HandleUdp, addr, &ids);
    cfg.duration = Duration::from_millis(200);
    cfg.timeout = Duration::from_millis(200);
    let s = run(&cfg).await.unwrap();
    assert_eq!(s.queries_completed, 0, "{s}");
    assert!(s.queries_lost > 0, "{s}");
    assert_eq!(s.queries_sent, s.queries_lost, "{s}");
    assert!(s.first_error.is_some(), "{s}");
}

/// A recursive node answers 301 (not responsible) to Handle requests without REC; with
/// `recursive` it resolves them from the node homing the prefix: found and not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_recursive() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, ids) = node_with_ids(dir.path(), false).await;
    let rec = recursive_node(dir.path(), auth.native_addr.unwrap()).await;
    let addr = rec.native_addr.unwrap();
    for proto in [Proto::HandleUdp, Proto::HandleTcp] {
        let mut cfg = config(proto, addr, &ids);
        cfg.duration = Duration::from_millis(500);
        let s = run(&cfg).await.unwrap();
        assert!(s.queries_completed > 0, "{proto:?}: {s}");
        assert_eq!(
            s.response_codes.keys().collect::<Vec<_>>(),
            ["RC301"],
            "{proto:?}: {s}"
        );

        cfg.recursive = true;
        let s = run(&cfg).await.unwrap();
        assert!(s.queries_completed > 0, "{proto:?}: {s}");
        assert_eq!(s.queries_lost, 0, "{proto:?}: {s}");
        assert_eq!(
            s.response_codes.keys().collect::<Vec<_>>(),
            ["RC1", "RC100"],
            "{proto:?}: {s}"
        );
    }
    // DNS queries always ask for recursion (RD); the HTTP API has no such flag.
    let mut cfg = config(Proto::DnsUdp, rec.dns_addr.unwrap(), &ids);
    cfg.duration = Duration::from_millis(500);
    cfg.recursive = true;
    let s = run(&cfg).await.unwrap();
    assert!(
        s.response_codes.get("NOERROR").copied().unwrap_or(0) > 0,
        "{s}"
    );
    let mut cfg = config(Proto::Http, rec.http_addr, &ids);
    cfg.recursive = true;
    let err = run(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("--recursive"), "{err}");
    rec.shutdown().await;
    auth.shutdown().await;
}

/// The HTTP API, closed loop then open loop, with the JSON summary's keys checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_http() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ids) = node_with_ids(dir.path(), false).await;

    let s = run(&config(Proto::Http, node.http_addr, &ids))
        .await
        .unwrap();
    assert!(s.queries_completed > 0, "{s}");
    assert_eq!(s.queries_lost, 0, "{s}");
    assert_eq!(s.queries_sent, s.queries_completed, "{s}");
    assert!(
        s.response_codes.get("HTTP200").copied().unwrap_or(0) > 0,
        "{s}"
    );
    assert!(
        s.response_codes.get("HTTP404").copied().unwrap_or(0) > 0,
        "{s}"
    );
    assert_eq!(
        s.response_codes.keys().collect::<Vec<_>>(),
        ["HTTP200", "HTTP404"],
        "{s}"
    );
    assert!(s.to_string().contains("Load generator CPU:"), "{s}");
    assert_eq!(s.first_error, None, "{s}");

    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&s).unwrap()).expect("the JSON summary parses");
    for key in [
        "protocol",
        "queries_sent",
        "queries_completed",
        "queries_lost",
        "response_codes",
        "run_time_s",
        "queries_per_second",
        "average_latency_s",
        "min_latency_s",
        "max_latency_s",
        "latency_stddev_s",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "generator_cpu_us_per_query",
        "generator_cpu_share",
        "first_error",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    assert_eq!(json["protocol"], "http");
    assert_eq!(json["queries_completed"], s.queries_completed);
    assert!(json["response_codes"]["HTTP404"].as_u64().unwrap() > 0);

    // Open loop: 200 q/s for a second over 4 connections. Every scheduled query counts as
    // sent (those never sent because all connections were busy, as sent and lost).
    let mut open = config(Proto::Http, node.http_addr, &ids);
    open.rate = Some(200.0);
    open.concurrency = 4;
    let s = run(&open).await.unwrap();
    assert_eq!(s.queries_sent, 200, "{s}");
    assert_eq!(s.queries_completed + s.queries_lost, 200, "{s}");
    assert!(s.queries_completed > 0, "{s}");
    assert!(
        s.response_codes.get("HTTP404").copied().unwrap_or(0) > 0,
        "{s}"
    );

    node.shutdown().await;
}

/// HTTPS with the self-signed example certificate and the insecure client configuration.
/// `--put`: acknowledged REST writes, each replacing a drawn identifier's record; a wrong
/// secret is counted as the 401s it gets, not as losses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_http_put() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ids) = node_with_ids(dir.path(), false).await;
    let mut cfg = config(Proto::Http, node.http_addr, &ids);
    cfg.miss_share = 0.0;
    cfg.concurrency = 4;
    cfg.put = Some(basic_authorization("300:0.NA/88.100.1", SECRET).unwrap());
    let s = run(&cfg).await.unwrap();
    assert!(s.queries_completed > 0, "{s}");
    assert_eq!(s.queries_lost, 0, "{s}");
    assert_eq!(
        s.response_codes.keys().collect::<Vec<_>>(),
        ["HTTP200"],
        "{s}"
    );
    // The writes are there (each acknowledged only once durable).
    let written = ids
        .iter()
        .filter(|id| {
            let handle = Handle::parse(id, SuffixCase::Sensitive).unwrap();
            node.engine
                .registry()
                .get(&handle)
                .unwrap()
                .is_some_and(|r| {
                    r.values
                        .iter()
                        .any(|v| v.data.starts_with(b"idnode bench write"))
                })
        })
        .count();
    assert!(written > 0);

    cfg.put = Some(basic_authorization("300:0.NA/88.100.1", "not the secret").unwrap());
    cfg.rate = Some(20.0);
    let s = run(&cfg).await.unwrap();
    assert_eq!(s.queries_lost, 0, "{s}");
    assert_eq!(
        s.response_codes.keys().collect::<Vec<_>>(),
        ["HTTP401"],
        "{s}"
    );
    assert!(basic_authorization("not an identity", "x").is_err());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_https() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ids) = node_with_ids(dir.path(), true).await;
    let mut cfg = config(Proto::Https, node.http_addr, &ids);
    cfg.host = Some("localhost".into());
    cfg.tls = Some(idnode::tls::client_config(None, true).unwrap());
    cfg.concurrency = 4;
    let s = run(&cfg).await.unwrap();
    assert!(s.queries_completed > 0, "{s}");
    assert_eq!(s.queries_lost, 0, "{s}");
    assert!(
        s.response_codes.get("HTTP200").copied().unwrap_or(0) > 0,
        "{s}"
    );
    assert!(
        s.response_codes.get("HTTP404").copied().unwrap_or(0) > 0,
        "{s}"
    );

    // Without a TLS configuration, https is refused up front.
    cfg.tls = None;
    let err = run(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("TLS"), "{err}");
    node.shutdown().await;
}

/// A server that is not there: every request is lost, none is completed, and the run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_http_connection_refused_counts_lost() {
    // A port that was just free: bind, note it, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ids = generate_ids("88.100.1", "SN-{:07}", 5).unwrap();
    let mut cfg = config(Proto::Http, addr, &ids);
    cfg.duration = Duration::from_millis(200);
    cfg.concurrency = 2;
    let s = run(&cfg).await.unwrap();
    assert_eq!(s.queries_completed, 0, "{s}");
    assert!(s.queries_lost > 0, "{s}");
    assert_eq!(s.queries_sent, s.queries_lost, "{s}");
    assert!(s.first_error.is_some(), "{s}");
}
