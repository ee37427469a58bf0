//! Abuse bounds over real sockets on 127.0.0.1: response-rate limiting on native UDP and DNS
//! UDP (drops and slips, counted), and anonymous datagrams creating no challenges.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::server::{open_registry, prepare_registry, start, RunningNode};
use idnode::wire::handle::message::{envelope_flag, flag, op, Body, Message};

const SECRET: &str = "abuse-secret";

/// A node whose rate limit also covers loopback (nothing exempt): 5 answers a second per
/// network, slipping every second withheld answer.
async fn node(dir: &std::path::Path) -> RunningNode {
    std::fs::write(dir.join("88.100.1.admin-secret"), SECRET).unwrap();
    let toml = format!(
        "[node]\ndata_dir = {:?}\nhomed_prefixes = [\"88.100.1\"]\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [handle]\nlisten = \"127.0.0.1:0\"\nudp_threads = 1\nanswer_cache_entries = 0\n\
         [dns]\nlisten = \"127.0.0.1:0\"\nzone = \"id.test.\"\nudp_threads = 1\n\
         [rate_limit]\nresponses_per_second = 5\nburst_secs = 1\nbytes_per_second = 65536\n\
         slip = 2\nexempt = []\n",
        dir
    );
    let config = Config::from_toml(&toml).unwrap();
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    start(config, Arc::new(registry), Metrics::new().unwrap())
        .await
        .unwrap()
}

fn resolution(handle: &str, op_flag: u32, request_id: u32) -> Vec<u8> {
    let mut m = Message::request(
        op::RESOLUTION,
        op_flag,
        Body::Resolution {
            handle: handle.into(),
            indexes: vec![],
            types: vec![],
        },
    );
    m.envelope.request_id = request_id;
    m.encode()
}

/// Send every request from one socket, then collect what comes back until it goes quiet.
fn flood(server: SocketAddr, requests: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for r in requests {
        socket.send_to(r, server).unwrap();
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf) {
        answers.push(buf[..n].to_vec());
        if answers.len() > requests.len() * 2 {
            break;
        }
    }
    answers
}

async fn metrics(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn metric(body: &str, name_and_labels: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn hole2_native_udp_answers_are_rate_limited_with_slip() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.native_addr.unwrap();
    let requests: Vec<Vec<u8>> = (1..=200)
        .map(|i| resolution("0.NA/88.100.1", flag::PUBLIC_ONLY, i))
        .collect();
    let answers = tokio::task::spawn_blocking(move || flood(addr, &requests))
        .await
        .unwrap();
    let decoded: Vec<Message> = answers
        .iter()
        .map(|a| Message::decode_full(a).unwrap())
        .collect();
    let full = decoded
        .iter()
        .filter(|m| m.header.response_code == 1)
        .count();
    let slipped = decoded
        .iter()
        .filter(|m| m.header.response_code == 2 && m.envelope.flags & envelope_flag::TRUNCATED != 0)
        .count();
    assert!(full >= 1, "the first answers pass");
    assert!(full < 100, "{full} full answers out of 200: not limited");
    assert!(slipped >= 1, "some withheld answers are slipped");
    assert!(answers.len() < 200, "some are dropped");
    // Slips are about a request's size.
    for (a, m) in answers.iter().zip(&decoded) {
        if m.header.response_code == 2 {
            assert!(a.len() <= 120, "{} bytes", a.len());
        }
    }
    let m = metrics(node.http_addr).await;
    assert!(
        metric(
            &m,
            "idnode_rate_limited_total{action=\"drop\",proto=\"udp\"}"
        ) >= 1
    );
    assert!(
        metric(
            &m,
            "idnode_rate_limited_total{action=\"slip\",proto=\"udp\"}"
        ) >= 1
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hole2_dns_udp_answers_are_rate_limited_with_tc_slips() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let addr = node.dns_addr.unwrap();
    // SOA queries for the apex: header, one question.
    let query = |id: u16| {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in ["id", "test"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 6, 0, 1]);
        q
    };
    let requests: Vec<Vec<u8>> = (1..=200).map(query).collect();
    let answers = tokio::task::spawn_blocking(move || flood(addr, &requests))
        .await
        .unwrap();
    let tc = answers.iter().filter(|a| a[2] & 0x02 != 0).count();
    let full = answers.len() - tc;
    assert!((1..100).contains(&full), "{full} full answers");
    assert!(tc >= 1, "slips carry TC");
    for a in answers.iter().filter(|a| a[2] & 0x02 != 0) {
        assert_eq!(a.len(), query(0).len(), "a slip is the query's size");
        assert_eq!(&a[6..12], &[0; 6], "and carries no records");
    }
    let m = metrics(node.http_addr).await;
    assert!(
        metric(
            &m,
            "idnode_rate_limited_total{action=\"slip\",proto=\"dns\"}"
        ) >= 1
    );
    node.shutdown().await;
}
