//! The streaming follower bootstrap (issue 14) over real HTTP on 127.0.0.1: a primary with a
//! few thousand records under 88.100, a mirror bootstrapping through a proxy that cuts
//! connections mid-page, a follower restarted mid-bootstrap, writes during it, the log moving
//! past the bootstrap's start. Each ends with the same digest on both sides and the mirror
//! following new writes.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::model::{Handle, HandleValue, SuffixCase};
use idnode::server::{open_registry, prepare_registry, start, RunningNode};
use idnode::store::{Mutation, Record, StoreError};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "sync-secret";
const WAIT: Duration = Duration::from_secs(30);
const RECORDS: usize = 3000;
const PAGE: usize = 50;

async fn node(dir: &Path, name: &str, node_extra: &str, extra: &str) -> RunningNode {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("88.100.admin-secret"), SECRET).unwrap();
    let toml = format!(
        "[node]\ndata_dir = {data:?}\n{node_extra}\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [handle]\nudp = false\ntcp = false\n[dns]\nudp = false\ntcp = false\n{extra}"
    );
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{name}: {e}\n{toml}"));
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    start(config, Arc::new(registry), Metrics::new().unwrap())
        .await
        .unwrap()
}

async fn primary(dir: &Path) -> RunningNode {
    let p = node(
        dir,
        "primary",
        "homed_prefixes = [\"88.100\", \"88.200\"]",
        "[sync]\nallow_plain = true\n[[sync.allow]]\nidentity = \"300:0.NA/88.100\"\n\
         prefixes = [\"88.100\"]\n",
    )
    .await;
    let mut batch = Vec::new();
    for i in 0..RECORDS {
        let h = format!("88.100/N{i:05}");
        batch.push((
            Handle::parse(&h, SuffixCase::Sensitive).unwrap(),
            record(&h, "seed"),
        ));
    }
    batch.push((
        Handle::parse("88.200/OTHER", SuffixCase::Sensitive).unwrap(),
        record("88.200/OTHER", "x"),
    ));
    p.engine.registry().put_batch(&batch).unwrap();
    p
}

async fn mirror(dir: &Path, upstream: SocketAddr) -> RunningNode {
    let secret = dir.join("follow-secret");
    std::fs::write(&secret, SECRET).unwrap();
    node(
        dir,
        "mirror",
        "homed_prefixes = []",
        &format!(
            "[sync]\nallow_plain = true\n[[sync.follow]]\nupstream = \"http://{upstream}\"\n\
             identity = \"300:0.NA/88.100\"\nsecret_file = {secret:?}\nprefixes = [\"88.100\"]\n\
             bootstrap_page = {PAGE}\n"
        ),
    )
    .await
}

fn record(h: &str, v: &str) -> Record {
    Record {
        handle: h.into(),
        values: vec![HandleValue::new(1, "URL", v)],
    }
}

fn write(node: &RunningNode, h: &str, v: Option<&str>) {
    let handle = Handle::parse(h, SuffixCase::Sensitive).unwrap();
    node.engine
        .registry()
        .mutate::<StoreError, _>(&handle, |_| {
            Ok(match v {
                Some(v) => Mutation::Put(record(h, v)),
                None => Mutation::Delete,
            })
        })
        .unwrap();
}

/// GET `path` with the node's operator token: (status, JSON).
async fn operator_get(node: &RunningNode, path: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(node.http_addr)
        .await
        .unwrap();
    let token = node.operator_token.as_deref().unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn digest(node: &RunningNode) -> (String, Value) {
    let (s, v) = operator_get(node, "/sync/digest?prefix=88.100").await;
    assert_eq!(s, 200, "{v}");
    (format!("{}:{}", v["records"], v["sha256"]), v)
}

/// Wait until both digests agree (bounded); the digest.
async fn converge(a: &RunningNode, b: &RunningNode) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (da, db) = (digest(a).await.0, digest(b).await.0);
        if da == db {
            return da;
        }
        assert!(Instant::now() < deadline, "no convergence: {da} vs {db}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn converge_key(node: &RunningNode, key: &str) {
    let deadline = Instant::now() + WAIT;
    while node.engine.registry().get_key(key).unwrap().is_none() {
        assert!(Instant::now() < deadline, "{key} never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn link_status(node: &RunningNode) -> Value {
    operator_get(node, "/sync/status").await.1["links"][0].clone()
}

/// A proxy in front of the primary that logs every snapshot page request, slows each page
/// by 10 ms, and cuts the answers to the page requests whose number (from 1) is in `cut`
/// half-way through their bytes.
struct CuttingProxy {
    addr: SocketAddr,
    pages: Arc<Mutex<Vec<String>>>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr, cut: &'static [usize]) -> CuttingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pages = Arc::new(Mutex::new(Vec::new()));
        let log = pages.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, log.clone(), cut));
            }
        });
        CuttingProxy { addr, pages }
    }

    fn pages(&self) -> Vec<String> {
        self.pages.lock().unwrap().clone()
    }
}

/// One request (the follower makes one per connection), asked of the upstream with
/// `Connection: close` so its answer ends with the connection.
async fn relay(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    cut: &'static [usize],
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split(' ').nth(1).unwrap_or("").to_string();
    let page_number = path.starts_with("/sync/snapshot?limit=").then(|| {
        let mut pages = log.lock().unwrap();
        pages.push(path.clone());
        pages.len()
    });
    let (line, rest) = text.split_once("\r\n").unwrap();
    let request = format!("{line}\r\nConnection: close\r\n{rest}");
    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    if up.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut answer = Vec::new();
    if up.read_to_end(&mut answer).await.is_err() {
        return;
    }
    if page_number.is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if page_number.is_some_and(|n| cut.contains(&n)) {
        let _ = client.write_all(&answer[..answer.len() / 2]).await;
        return;
    }
    let _ = client.write_all(&answer).await;
}

fn without_cursor(pages: &[String]) -> usize {
    pages.iter().filter(|p| !p.contains("&after=")).count()
}

async fn wait_pages(proxy: &CuttingProxy, n: usize) {
    let deadline = Instant::now() + WAIT;
    while proxy.pages().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} pages",
            proxy.pages().len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_resumes_after_cuts_and_a_restart_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let p = primary(dir.path()).await;
    let proxy = CuttingProxy::start(p.http_addr, &[5, 17]).await;
    let m = mirror(dir.path(), proxy.addr).await;

    // Writes during the bootstrap, before and after the pages reach their keys.
    wait_pages(&proxy, 8).await;
    write(&p, "88.100/N00003", Some("changed after its page"));
    write(&p, "88.100/N00004", None);
    write(&p, "88.100/N02990", None);
    write(&p, "88.100/N02991", Some("changed before its page"));
    write(&p, "88.100/A-NEW", Some("created before the first key"));
    write(&p, "88.100/Z-NEW", Some("created after the last key"));

    // The follower stops mid-bootstrap and starts again: it resumes after its last key.
    wait_pages(&proxy, 25).await;
    let st = link_status(&m).await;
    assert_eq!(st["state"], "bootstrapping", "{st}");
    assert!(st["errors"].as_u64().unwrap() >= 2, "the cut pages: {st}");
    m.shutdown().await;
    let seen = proxy.pages().len();
    let m = mirror(dir.path(), proxy.addr).await;
    wait_pages(&proxy, seen + 1).await;
    let pages = proxy.pages();
    assert!(
        pages[seen].contains("&after=88%2E100%2FN") && pages[seen].contains("&seq="),
        "resumed from zero: {}",
        pages[seen]
    );

    let d = converge(&p, &m).await;
    assert!(d.starts_with(&format!("{RECORDS}:")), "{d}");
    let reg = m.engine.registry();
    assert!(reg.get_key("88.100/N00004").unwrap().is_none());
    assert!(reg.get_key("88.100/N02990").unwrap().is_none());
    assert!(
        reg.get_key("88.200/OTHER").unwrap().is_none(),
        "not followed"
    );
    // The bootstrap counts once verified, then the link streams.
    let deadline = Instant::now() + WAIT;
    loop {
        let st = link_status(&m).await;
        if st["bootstraps"] == 1 && st["state"] == "streaming" {
            break;
        }
        assert!(Instant::now() < deadline, "not streaming: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reg
        .bootstrap_state(&format!("http://{}", proxy.addr))
        .unwrap()
        .is_none());
    // Pages: one fresh start, every other one after a cursor, about RECORDS / PAGE of them
    // (plus the two cut and the one the restart interrupted), each asking for PAGE records.
    let pages = proxy.pages();
    assert_eq!(without_cursor(&pages), 1, "{pages:?}");
    assert!(pages.iter().all(|p| p.contains(&format!("limit={PAGE}&"))));
    assert!(pages.len() <= RECORDS / PAGE + 5, "{} pages", pages.len());

    // And it follows new writes.
    write(&p, "88.100/AFTER", Some("streamed"));
    converge_key(&m, "88.100/AFTER").await;
    converge(&p, &m).await;
    m.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_starts_over_when_the_log_moves_past_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = primary(dir.path()).await;
    let proxy = CuttingProxy::start(p.http_addr, &[]).await;
    let m = mirror(dir.path(), proxy.addr).await;
    wait_pages(&proxy, 5).await;
    // Entries after the bootstrap's start are gone: pages after it get 410.
    write(&p, "88.100/N00001", None);
    let last = p.engine.registry().last_seq();
    p.engine.registry().truncate_log_before(last + 1).unwrap();
    converge(&p, &m).await;
    let pages = proxy.pages();
    assert_eq!(without_cursor(&pages), 2, "one start over: {pages:?}");
    assert!(m
        .engine
        .registry()
        .get_key("88.100/N00001")
        .unwrap()
        .is_none());
    write(&p, "88.100/AFTER", Some("streamed"));
    converge_key(&m, "88.100/AFTER").await;
    m.shutdown().await;
    p.shutdown().await;
}

#[tokio::test]
async fn pages_are_bounded_and_refused_to_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let p = primary(dir.path()).await;
    let user = "300%3A0.NA%2F88.100:sync-secret";
    let addr = p.http_addr;
    let get = |path: String, auth: Option<&'static str>| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|a| {
                use base64::Engine as _;
                let t = base64::engine::general_purpose::STANDARD.encode(a);
                format!("Authorization: Basic {t}\r\n")
            })
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status: u16 = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (
            status,
            serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
        )
    };
    // No credentials, the operator token, a prefix not allowed: nothing.
    assert_eq!(get("/sync/snapshot?limit=5".into(), None).await.0, 401);
    let (s, _) = get("/sync/snapshot?limit=5&prefix=88.200".into(), Some(user)).await;
    assert_eq!(s, 403);
    // A follower asking for more than the cap gets the cap (10 000; all 3000 fit).
    let (s, v) = get("/sync/snapshot?limit=1000000".into(), Some(user)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["records"].as_array().unwrap().len(), RECORDS);
    assert_eq!(v["more"], false);
    assert!(
        v["records"][0].get("record").is_none(),
        "pages carry the encoding only"
    );
    // Pages walk the prefix after their cursor; a later page names the bootstrap's sequence.
    let (_, first) = get("/sync/snapshot?limit=2".into(), Some(user)).await;
    let seq = first["seq"].as_u64().unwrap();
    assert_eq!(first["records"][1]["key"], "88.100/N00001");
    let path = format!("/sync/snapshot?limit=2&after=88.100%2FN00001&seq={seq}");
    let (_, second) = get(path, Some(user)).await;
    assert_eq!(second["records"][0]["key"], "88.100/N00002");
    assert_eq!(
        (second["seq"].as_u64(), &second["more"]),
        (Some(seq), &Value::from(true))
    );
    // A sequence the node never had: start over.
    let path = format!("/sync/snapshot?limit=2&seq={}", seq + 100);
    assert_eq!(get(path, Some(user)).await.0, 410);
    // Without `limit`, the whole snapshot as before.
    let (s, whole) = get("/sync/snapshot".into(), Some(user)).await;
    assert_eq!(s, 200);
    assert_eq!(whole["records"].as_array().unwrap().len(), RECORDS);
    assert!(whole.get("more").is_none());
    // The digest names the sequence it is exact at.
    let (_, d) = digest(&p).await;
    assert_eq!(d["seq"].as_u64(), Some(p.engine.registry().last_seq()));
    p.shutdown().await;
}

/// A fake upstream with an empty prefix at sequence 5 whose digest says `sha256`, exact at
/// sequence 5 when `exact` (otherwise as under writes that never stop).
async fn fake_upstream(sha256: &'static str, exact: bool) -> SocketAddr {
    common::fake_json_upstream(move |head| async move {
        if head.starts_with("GET /sync/snapshot?limit=") {
            serde_json::json!({"seq": 5, "records": [], "more": false})
        } else if head.starts_with("GET /sync/digest") {
            let mut d = serde_json::json!({"prefix": "88.100", "records": 0, "sha256": sha256});
            if exact {
                d["seq"] = 5.into();
            }
            d
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            serde_json::json!({"next": 5, "last_seq": 5, "changes": []})
        }
        .to_string()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_counts_once_its_digest_matches_or_cannot_be_checked() {
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    // A digest that never holds still cannot be checked: the link goes on unverified
    // rather than never following.
    for (sha256, exact, matches) in [
        ("00", true, false),
        (EMPTY, true, true),
        ("00", false, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let up = fake_upstream(sha256, exact).await;
        let m = mirror(dir.path(), up).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let st = link_status(&m).await;
            let done = if matches {
                st["bootstraps"] == 1 && st["state"] == "streaming"
            } else {
                st["errors"].as_u64().unwrap_or(0) >= 2
            };
            if done {
                if !matches {
                    assert_eq!(st["bootstraps"], 0, "{st}");
                    let why = st["last_error"].as_str().unwrap_or("");
                    assert!(why.contains("does not match the upstream's digest"), "{st}");
                }
                break;
            }
            assert!(Instant::now() < deadline, "{sha256}: {st}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if matches {
            let reg = m.engine.registry();
            let link = format!("http://{up}");
            assert_eq!(reg.cursor(&link).unwrap(), 5);
            assert!(reg.bootstrap_state(&link).unwrap().is_none());
        }
        m.shutdown().await;
    }
}
