//! The HTTP front end end to end, over real sockets on 127.0.0.1: a node started the way
//! `idnode serve` starts it (config → registry → prepare → start), spoken to with raw
//! HTTP/1.1 over HTTPS (tokio-rustls) and over plain TCP.
//!
//! - keep-alive: several requests, including a refused PUT with a body, on one TLS connection;
//! - a body over the limit gets 413 and the node keeps serving; garbage is survived;
//! - an acknowledged PUT is there after shutdown and reopening the data directory;
//! - client-certificate authentication (`Authorization: Handle clientCert="true"`) through a
//!   real TLS handshake with a self-signed client certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use idnode::config::{Config, ValidConfig};
use idnode::metrics::Metrics;
use idnode::server::{open_registry, prepare_registry, start, RunningNode};

/// Bound on every network wait.
const WAIT: Duration = Duration::from_secs(10);

fn config(data_dir: &Path, tls: bool) -> ValidConfig {
    config_with(data_dir, tls, "")
}

/// `extra_http` is added to the `[http]` table.
fn config_with(data_dir: &Path, tls: bool, extra_http: &str) -> ValidConfig {
    let tls = if tls {
        "tls_cert = \"config/examples/cert.pem\"\ntls_key = \"config/examples/key.pem\"\n"
    } else {
        ""
    };
    let text = format!(
        "[node]\ndata_dir = {dir:?}\nhomed_prefixes = [\"88.100.1\"]\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{tls}{extra_http}\n\
         [handle]\ntcp = false\nudp = false\n[dns]\nlisten = \"127.0.0.1:0\"\n",
        dir = data_dir.display().to_string()
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

type Started = (RunningNode, String, Weak<idnode::store::Registry>);

/// Start a node on `data_dir`; returns it, the bootstrapped admin's secret and a weak handle
/// on the registry (to wait until everything let go of it after shutdown).
async fn start_node(data_dir: &Path, tls: bool) -> Started {
    start_with(config(data_dir, tls)).await
}

async fn start_with(config: ValidConfig) -> Started {
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    let secret_file =
        idnode::server::secret_path(&config.node.data_dir, &config.node.homed_prefixes[0]);
    let secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim()
        .to_string();
    let registry = Arc::new(registry);
    let weak = Arc::downgrade(&registry);
    let node = timeout(WAIT, start(config, registry, Metrics::new().unwrap()))
        .await
        .expect("start timed out")
        .unwrap();
    (node, secret, weak)
}

/// Shut a node down and wait until the registry is released (so the directory can be reopened).
async fn stop_node(node: RunningNode, weak: Weak<idnode::store::Registry>) {
    timeout(Duration::from_secs(30), node.shutdown())
        .await
        .expect("shutdown timed out");
    timeout(WAIT, async {
        while weak.strong_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the registry is still held after shutdown");
}

fn basic(secret: &str) -> String {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("300%3A0.NA%2F88.100.1:{secret}"));
    format!("Basic {token}")
}

// A TLS client that accepts any certificate (the example certificate is self-signed with
// CA:TRUE, which webpki refuses as an end-entity certificate): the library's own insecure
// client configuration, as `insecure_skip_verify` follow links use it.

async fn tls_connect(addr: SocketAddr) -> Conn<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_connect_as(addr, None).await
}

/// [`tls_connect`], presenting the client certificate `tests/data/<cert>` with the key
/// `tests/data/<key>` when the server asks for one.
async fn tls_connect_as(
    addr: SocketAddr,
    client_cert: Option<(&str, &str)>,
) -> Conn<tokio_rustls::client::TlsStream<TcpStream>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let files = client_cert.map(|(cert, key)| (data.join(cert), data.join(key)));
    let config = idnode::tls::client_config_with_cert(
        None,
        true,
        files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .unwrap();
    Conn::new(stream)
}

async fn tcp_connect(addr: SocketAddr) -> Conn<TcpStream> {
    let tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    Conn::new(tcp)
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client over any stream, keeping what it read past a response.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn rc(&self) -> u64 {
        self.json()["responseCode"].as_u64().unwrap()
    }
}

struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

impl<S: AsyncRead + Unpin> Conn<S> {
    fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Read more bytes; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("read timed out")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return String::from_utf8_lossy(&line[..at]).into_owned();
            }
            assert!(self.fill().await, "connection closed inside a head");
        }
    }

    /// Read one response (Content-Length or chunked body).
    async fn response(&mut self, head_request: bool) -> Response {
        let status_line = self.line().await;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').expect("header line");
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 {
            return resp;
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            resp.body = self.take(len).await;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = self.line().await;
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await.is_empty() {}
                    break;
                }
                let chunk = self.take(size).await;
                resp.body.extend_from_slice(&chunk);
                assert!(self.take(2).await == b"\r\n");
            }
        } else {
            // Delimited by close.
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Everything the peer sends until it closes the connection (EOF or reset); `None` if it
    /// is still open after the wait.
    async fn until_closed(&mut self) -> Option<Vec<u8>> {
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 4096];
        let done = timeout(WAIT, async {
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        done.ok().map(|_| out)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn write(&mut self, bytes: &[u8]) {
        timeout(WAIT, async {
            self.stream.write_all(bytes).await.unwrap();
            self.stream.flush().await.unwrap();
        })
        .await
        .expect("write timed out");
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.write(&request_bytes(method, path, headers, body))
            .await;
        self.response(method == "HEAD").await
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn url_body(url: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"values": [
        {"index": 100, "type": "HS_ADMIN", "data": {"value": {
            "index": "200", "handle": "0.NA/88.100.1", "permissions": "011111110011"},
            "format": "admin"}},
        {"index": 1, "type": "URL", "data": url}
    ]}))
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_keep_alive_session() {
    let dir = tempfile::tempdir().unwrap();
    let (node, secret, weak) = start_node(dir.path(), true).await;
    let auth = basic(&secret);
    let mut c = tls_connect(node.http_addr).await;
    let path = "/api/handles/88.100.1/e2e-1";

    let r = c.request("GET", path, &[], b"").await;
    assert_eq!((r.status, r.rc()), (404, 100), "{}", r.text());

    let body = url_body("https://example.com/e2e-1");
    let r = c
        .request(
            "PUT",
            &format!("{path}?overwrite=false"),
            &[JSON, ("Authorization", &auth)],
            &body,
        )
        .await;
    assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/e2e-1");

    let r = c
        .request("GET", path, &[("Accept", "application/json")], b"")
        .await;
    assert_eq!((r.status, r.rc()), (200, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/e2e-1");
    assert_eq!(
        r.json()["values"][0]["data"]["value"],
        "https://example.com/e2e-1"
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // A refused PUT with a small body: the body is dropped unparsed, the connection stays
    // usable.
    let wrong = basic("not the secret");
    let r = c
        .request("PUT", path, &[JSON, ("Authorization", &wrong)], &body)
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"handle\""));
    assert!(r
        .header("connection")
        .is_none_or(|v| !v.eq_ignore_ascii_case("close")));
    // Unauthenticated, same.
    let r = c.request("PUT", path, &[JSON], &body).await;
    assert_eq!((r.status, r.rc()), (401, 402));
    assert!(r
        .header("connection")
        .is_none_or(|v| !v.eq_ignore_ascii_case("close")));

    // Pipelined: two requests in one write, two answers in order.
    let mut two = request_bytes("GET", "/healthz", &[], b"");
    two.extend(request_bytes("GET", &format!("{path}?index=1"), &[], b""));
    c.write(&two).await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let r = c.response(false).await;
    assert_eq!((r.status, r.rc()), (200, 1));
    assert_eq!(r.json()["values"].as_array().unwrap().len(), 1);

    // The proxy on the same connection.
    let r = c.request("GET", "/88.100.1/e2e-1", &[], b"").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://example.com/e2e-1"));

    let r = c
        .request("DELETE", path, &[("Authorization", &auth)], b"")
        .await;
    assert_eq!((r.status, r.rc()), (200, 1), "{}", r.text());
    let r = c.request("GET", path, &[], b"").await;
    assert_eq!((r.status, r.rc()), (404, 100));

    // Plain HTTP on the TLS port is not served; the node carries on.
    let mut plain = tcp_connect(node.http_addr).await;
    plain
        .write(&request_bytes("GET", "/healthz", &[], b""))
        .await;
    let answer = plain
        .until_closed()
        .await
        .expect("the TLS port kept a plain connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP served on the TLS port"
    );
    let r = c.request("GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);

    drop(c);
    stop_node(node, weak).await;
}

/// Handle.Net client-certificate authentication over a real handshake: the listener asks for
/// a certificate (optional: Basic clients without one are served as before), and a request with
/// `Authorization: Handle clientCert="true"` acts as the identity the certificate names when
/// its key is that identity's HS_PUBKEY. With `client_cert_auth = false` no certificate is
/// asked for, so none arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_over_tls() {
    use idnode::model::{types, HandleValue, ValueList, ValueReference};
    let dir = tempfile::tempdir().unwrap();
    let (node, secret, weak) = start_node(dir.path(), true).await;
    // 301:0.NA/88.100.1 holds the key of client-a.key and joins the admin group.
    let engine = &node.engine;
    let na = engine.parse_handle("0.NA/88.100.1").unwrap();
    let owner = engine
        .authenticate_secret(&na, 300, secret.as_bytes())
        .unwrap();
    let pem = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client-a.key"),
    )
    .unwrap();
    let key = idnode::auth::challenge::PrivateKey::from_pem(&pem).unwrap();
    let member = |index| ValueReference {
        handle: "0.NA/88.100.1".into(),
        index,
    };
    let values = vec![
        HandleValue::new(301, types::HS_PUBKEY, key.public_key().encode()),
        HandleValue::new(
            200,
            types::HS_VLIST,
            ValueList(vec![member(300), member(301)]).encode(),
        ),
    ];
    engine.add_values(&owner, &na, values, true).unwrap();

    let cert_auth = ("Authorization", "Handle clientCert=\"true\"");
    let path = "/api/handles/88.100.1/by-cert";
    let body = url_body("https://example.com/by-cert");
    let mut c = tls_connect_as(node.http_addr, Some(("client-a-cn.pem", "client-a.key"))).await;
    let r = c.request("PUT", path, &[JSON, cert_auth], &body).await;
    assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    // Another key under the same name: refused, nothing written.
    let mut c = tls_connect_as(node.http_addr, Some(("client-b-cn.pem", "client-b.key"))).await;
    let other = "/api/handles/88.100.1/by-other-cert";
    let r = c.request("PUT", other, &[JSON, cert_auth], &body).await;
    assert_eq!((r.status, r.rc()), (401, 403), "{}", r.text());
    let r = c.request("GET", other, &[], b"").await;
    assert_eq!(r.status, 404, "{}", r.text());
    // No certificate on the connection: the header alone proves nothing.
    let mut c = tls_connect(node.http_addr).await;
    let r = c.request("DELETE", path, &[cert_auth], b"").await;
    assert_eq!(r.status, 401, "{}", r.text());
    stop_node(node, weak).await;

    // Turned off: the listener asks for no certificate, so the client sends none.
    let dir = tempfile::tempdir().unwrap();
    let (node, _, weak) =
        start_with(config_with(dir.path(), true, "client_cert_auth = false\n")).await;
    let mut c = tls_connect_as(node.http_addr, Some(("client-a-cn.pem", "client-a.key"))).await;
    let r = c.request("PUT", path, &[JSON, cert_auth], &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("no client certificate"), "{}", r.text());
    stop_node(node, weak).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_limits_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let (node, secret, weak) = start_node(dir.path(), false).await;
    let addr = node.http_addr;
    let auth = basic(&secret);

    // Loopback credentials count over plain HTTP under the default policy.
    let mut c = tcp_connect(addr).await;
    let r = c
        .request(
            "PUT",
            "/api/handles/88.100.1/plain-1",
            &[JSON, ("Authorization", &auth)],
            &url_body("https://example.com/plain-1"),
        )
        .await;
    assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    drop(c);

    // 2 MiB body against the 1 MiB default limit: 413 with a JSON error, nothing written.
    let big = vec![b'x'; 2 << 20];
    let head = format!(
        "PUT /api/handles/88.100.1/big HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nAuthorization: {auth}\r\n\
         Content-Length: {}\r\n\r\n",
        big.len()
    );
    let tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let (read_half, mut write_half) = tcp.into_split();
    // Write the body concurrently: the server stops reading at the limit and answers.
    let writer = tokio::spawn(async move {
        let _ = write_half.write_all(head.as_bytes()).await;
        let _ = write_half.write_all(&big).await;
        let _ = write_half.flush().await;
        write_half
    });
    let mut reader = Conn::new(read_half);
    let r = timeout(WAIT, reader.response(false))
        .await
        .expect("no answer to an oversized body");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.json()["responseCode"], 4);
    let _ = timeout(WAIT, writer).await;
    drop(reader);

    // Garbage instead of HTTP: answered or closed, never a crash.
    for garbage in [
        &b"\x16\x03\x01\x00\x05hello\r\n\r\n"[..],
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
        &[0u8; 4096][..],
    ] {
        let mut g = tcp_connect(addr).await;
        g.write(garbage).await;
        let answer = g
            .until_closed()
            .await
            .expect("garbage connection left open");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
    }
    // A connection that sends half a request and hangs up.
    let mut g = tcp_connect(addr).await;
    g.write(b"PUT /api/handles/88.100.1/half HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"va")
        .await;
    drop(g);

    // The node is still up and nothing was written by any of it.
    let mut c = tcp_connect(addr).await;
    let r = c.request("GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    for h in ["big", "half"] {
        let r = c
            .request("GET", &format!("/api/handles/88.100.1/{h}"), &[], b"")
            .await;
        assert_eq!((r.status, r.rc()), (404, 100), "{h}");
    }
    let r = c
        .request("GET", "/api/handles/88.100.1/plain-1", &[], b"")
        .await;
    assert_eq!((r.status, r.rc()), (200, 1));
    // HEAD gets the head only.
    let r = c
        .request("HEAD", "/api/handles/88.100.1/plain-1", &[], b"")
        .await;
    assert_eq!(r.status, 200);
    // A GET with a (pointless) body: the next request on the connection is still understood.
    let r = c
        .request("GET", "/api/handles/88.100.1/plain-1", &[], b"{\"x\":1}")
        .await;
    assert_eq!(r.status, 200);
    let r = c.request("GET", "/metrics", &[], b"").await;
    assert!(r.text().contains("idnode_requests_total"));
    drop(c);
    stop_node(node, weak).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_put_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, secret, weak) = start_node(dir.path(), true).await;
    let auth = basic(&secret);
    let mut c = tls_connect(node.http_addr).await;
    for i in 0..3 {
        let r = c
            .request(
                "PUT",
                &format!("/api/handles/88.100.1/durable-{i}"),
                &[JSON, ("Authorization", &auth)],
                &url_body(&format!("https://example.com/durable-{i}")),
            )
            .await;
        assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    }
    let r = c
        .request(
            "DELETE",
            "/api/handles/88.100.1/durable-2",
            &[("Authorization", &auth)],
            b"",
        )
        .await;
    assert_eq!((r.status, r.rc()), (200, 1));
    drop(c);
    stop_node(node, weak).await;

    // The registry as the next start sees it.
    let config = config(dir.path(), true);
    {
        let registry = open_registry(&config).unwrap();
        for (i, present) in [(0, true), (1, true), (2, false)] {
            let h = idnode::model::Handle::parse(
                &format!("88.100.1/durable-{i}"),
                idnode::model::SuffixCase::Sensitive,
            )
            .unwrap();
            let rec = registry.get(&h).unwrap();
            assert_eq!(rec.is_some(), present, "durable-{i}");
        }
    }

    // And through a restarted node: same secret (the prefix handle is kept), same records.
    let (node, secret2, weak) = start_node(dir.path(), true).await;
    assert_eq!(secret2, secret);
    let mut c = tls_connect(node.http_addr).await;
    let r = c
        .request("GET", "/api/handles/88.100.1/durable-1", &[], b"")
        .await;
    assert_eq!((r.status, r.rc()), (200, 1), "{}", r.text());
    assert_eq!(
        r.json()["values"][0]["data"]["value"],
        "https://example.com/durable-1"
    );
    let r = c
        .request("GET", "/api/handles/88.100.1/durable-2", &[], b"")
        .await;
    assert_eq!((r.status, r.rc()), (404, 100));
    let r = c
        .request(
            "GET",
            "/api/handles?prefix=88.100.1",
            &[("Authorization", &basic(&secret))],
            b"",
        )
        .await;
    assert_eq!((r.status, r.rc()), (200, 1), "{}", r.text());
    assert_eq!(r.json()["totalCount"], 2);
    drop(c);
    stop_node(node, weak).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_an_idle_keep_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _secret, weak) = start_node(dir.path(), false).await;
    let mut c = tcp_connect(node.http_addr).await;
    let r = c.request("GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    // The connection stays open and idle: shutdown must not wait for the client.
    let started = std::time::Instant::now();
    stop_node(node, weak).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(c.until_closed().await.is_some());
}

/// Clients that connect and then stall must not hold connection slots for ever: one sends
/// half a request head (hyper's header-read timeout, which also bounds idle keep-alive
/// connections), one a head and part of its body (the body-read timeout, answered 408). With
/// both slots taken, the next client is served: the half head, not a request in progress, is
/// closed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        false,
        "max_connections = 2\nrequest_timeout_secs = 2\n",
    );
    let (node, secret, weak) = start_with(config).await;
    let addr = node.http_addr;
    let mut stalled_head = tcp_connect(addr).await;
    stalled_head
        .write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await;
    let mut stalled_body = tcp_connect(addr).await;
    let head = format!(
        "PUT /api/handles/88.100.1/slow HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nAuthorization: {}\r\n\
         Content-Length: 1000\r\n\r\n{{\"values\":",
        basic(&secret)
    );
    stalled_body.write(head.as_bytes()).await;
    // Let the node accept both (and take both slots).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut next = tcp_connect(addr).await;
    next.write(&request_bytes("GET", "/healthz", &[], b""))
        .await;
    let limit = Duration::from_secs(30);
    let r = timeout(limit, async {
        loop {
            // `response` gives up after WAIT without data; keep waiting up to `limit`.
            if timeout(WAIT, next.stream.peek(&mut [0u8; 1])).await.is_ok() {
                break next.response(false).await;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stalled clients blocked the node for {limit:?}"));
    assert_eq!(r.status, 200);
    // The stalled body got a JSON 408; the stalled head was just closed.
    let r = stalled_body.response(false).await;
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.rc(), 4);
    assert!(stalled_head.until_closed().await.is_some());
    let mut c = tcp_connect(addr).await;
    let r = c
        .request("GET", "/api/handles/88.100.1/slow", &[], b"")
        .await;
    assert_eq!((r.status, r.rc()), (404, 100));
    drop(c);
    stop_node(node, weak).await;
}

// ---------------------------------------------------------------------------------------------
// Issue 11, holes 4 and 5 over REST
// ---------------------------------------------------------------------------------------------

fn basic_as(identity: &str, secret: &str) -> String {
    let id = identity.replace('%', "%25").replace(':', "%3A");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {token}")
}

fn values_body(values: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "values": values })).unwrap()
}

/// A secret written over REST without permissions is admin-only; a secret stored with public
/// read (a record from before that default) is still never given to an anonymous reader, by
/// the API nor by the proxy page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole5_rest_never_serves_secrets_to_anonymous_readers() {
    let dir = tempfile::tempdir().unwrap();
    let (node, secret, weak) = start_node(dir.path(), false).await;
    let auth = basic(&secret);
    let mut c = tcp_connect(node.http_addr).await;

    let body = values_body(serde_json::json!([
        {"index": 1, "type": "DESC", "data": "device 7"},
        {"index": 300, "type": "HS_SECKEY", "data": "device-secret"}
    ]));
    let path = "/api/handles/88.100.1/dev-7";
    let r = c
        .request("PUT", path, &[JSON, ("Authorization", &auth)], &body)
        .await;
    assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    let r = c.request("GET", path, &[], b"").await;
    assert_eq!((r.status, r.rc()), (200, 1), "{}", r.text());
    assert!(!r.text().contains("device-secret"), "{}", r.text());
    assert_eq!(r.json()["values"].as_array().unwrap().len(), 1);
    // The administrator reads it, admin-only.
    let r = c
        .request("GET", path, &[("Authorization", &auth)], b"")
        .await;
    assert_eq!((r.status, r.rc()), (200, 1), "{}", r.text());
    let values = r.json()["values"].as_array().unwrap().clone();
    let seckey = values
        .iter()
        .find(|v| v["index"] == 300)
        .expect("HS_SECKEY");
    assert_eq!(seckey["permissions"], "1100");

    // A record stored with a public HS_SECKEY.
    let registry = weak.upgrade().unwrap();
    let handle =
        idnode::model::Handle::parse("88.100.1/legacy", idnode::model::SuffixCase::Sensitive)
            .unwrap();
    registry
        .mutate::<idnode::store::StoreError, _>(&handle, |_| {
            Ok(idnode::store::Mutation::Put(idnode::store::Record {
                handle: "88.100.1/legacy".into(),
                values: vec![
                    idnode::model::HandleValue::new(1, "DESC", "legacy device"),
                    idnode::model::HandleValue::new(300, "HS_SECKEY", "legacy-secret")
                        .with_permissions(idnode::model::ValuePermissions::DEFAULT),
                ],
            }))
        })
        .unwrap();
    drop(registry);
    for path in [
        "/api/handles/88.100.1/legacy",
        "/api/handles/88.100.1/legacy?type=HS_SECKEY",
        "/api/handles/88.100.1/legacy?index=300",
        "/88.100.1/legacy",
        "/88.100.1/legacy?noredirect",
    ] {
        let r = c.request("GET", path, &[], b"").await;
        assert!(r.status < 500, "{path}: {}", r.status);
        assert!(!r.text().contains("legacy-secret"), "{path}: {}", r.text());
    }
    let r = c
        .request("GET", "/api/handles/88.100.1/legacy", &[], b"")
        .await;
    assert!(r.text().contains("legacy device"), "{}", r.text());

    drop(c);
    stop_node(node, weak).await;
}

/// The escalation over REST: an identity with only MODIFY_VALUE | ADD_VALUE on the
/// prefix handle may not join the admin group HS_ADMIN points to, nor replace the owner's
/// secret; and nobody may leave the prefix without an administrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole4_rest_limited_admin_cannot_take_over_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (node, secret, weak) = start_node(dir.path(), false).await;
    let owner = basic(&secret);
    let editor = basic_as("300:88.100.1/editor", "ed");
    let mut c = tcp_connect(node.http_addr).await;
    let put = |path: &str, values: serde_json::Value| (path.to_string(), values_body(values));

    let (p, b) = put(
        "/api/handles/88.100.1/editor",
        serde_json::json!([{"index": 300, "type": "HS_SECKEY", "data": "ed"}]),
    );
    let r = c
        .request("PUT", &p, &[JSON, ("Authorization", &owner)], &b)
        .await;
    assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    let (p, b) = put(
        "/api/handles/0.NA/88.100.1?index=101",
        serde_json::json!([{"index": 101, "type": "HS_ADMIN", "data": {"format": "admin",
            "value": {"handle": "88.100.1/editor", "index": 300,
                      "permissions": "000001010000"}}}]),
    );
    let r = c
        .request("PUT", &p, &[JSON, ("Authorization", &owner)], &b)
        .await;
    assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    let r = c
        .request(
            "PUT",
            "/api/handles/88.100.1/victim",
            &[JSON, ("Authorization", &owner)],
            &url_body("https://example.com/victim"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());

    // The editor's own rights work...
    let (p, b) = put(
        "/api/handles/0.NA/88.100.1?index=2",
        serde_json::json!([{"index": 2, "type": "DESC", "data": "pump works"}]),
    );
    let r = c
        .request("PUT", &p, &[JSON, ("Authorization", &editor)], &b)
        .await;
    assert_eq!((r.status, r.rc()), (201, 1), "{}", r.text());
    // ...but joining the group, or replacing the owner's secret, is refused.
    for (p, b) in [
        put(
            "/api/handles/0.NA/88.100.1?index=200",
            serde_json::json!([{"index": 200, "type": "HS_VLIST", "data": {"format": "vlist",
                "value": [{"handle": "0.NA/88.100.1", "index": 300},
                          {"handle": "88.100.1/editor", "index": 300}]}}]),
        ),
        put(
            "/api/handles/0.NA/88.100.1?index=300",
            serde_json::json!([{"index": 300, "type": "HS_SECKEY", "data": "owned"}]),
        ),
    ] {
        let r = c
            .request("PUT", &p, &[JSON, ("Authorization", &editor)], &b)
            .await;
        assert_eq!((r.status, r.rc()), (403, 400), "{p}: {}", r.text());
    }
    let r = c
        .request(
            "DELETE",
            "/api/handles/88.100.1/victim",
            &[("Authorization", &editor)],
            b"",
        )
        .await;
    assert_eq!((r.status, r.rc()), (403, 400), "{}", r.text());
    // The owner is still the owner, and cannot delete or orphan the prefix either.
    let r = c
        .request(
            "DELETE",
            "/api/handles/0.NA/88.100.1",
            &[("Authorization", &owner)],
            b"",
        )
        .await;
    assert_eq!((r.status, r.rc()), (400, 202), "{}", r.text());
    let r = c
        .request(
            "DELETE",
            "/api/handles/0.NA/88.100.1?index=300",
            &[("Authorization", &owner)],
            b"",
        )
        .await;
    assert_eq!((r.status, r.rc()), (400, 202), "{}", r.text());
    assert!(
        r.text().contains("without an administrator"),
        "{}",
        r.text()
    );
    let r = c
        .request(
            "DELETE",
            "/api/handles/88.100.1/victim",
            &[("Authorization", &owner)],
            b"",
        )
        .await;
    assert_eq!((r.status, r.rc()), (200, 1), "{}", r.text());

    drop(c);
    stop_node(node, weak).await;
}

/// Hole 9: a write without valid credentials is answered before its body is read: a client
/// that declares 10 MB and sends none of it gets its 401 (and the connection is closed, so
/// the unread body is never taken for a request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole9_unauthenticated_put_answered_before_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let (node, secret, weak) = start_node(dir.path(), false).await;
    for auth in [None, Some(basic("not the secret"))] {
        let mut c = tcp_connect(node.http_addr).await;
        let mut head = String::from(
            "PUT /api/handles/88.100.1/big HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: 10000000\r\n",
        );
        if let Some(a) = &auth {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n{\"values\":[");
        c.write(head.as_bytes()).await;
        let r = c.response(false).await;
        assert_eq!(
            (r.status, r.rc()),
            (401, if auth.is_some() { 403 } else { 402 })
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.until_closed().await.is_some(), "connection left open");
    }
    // With credentials the body is read, and refused for what it is.
    let mut c = tcp_connect(node.http_addr).await;
    let auth = basic(&secret);
    let r = c
        .request(
            "PUT",
            "/api/handles/88.100.1/big",
            &[JSON, ("Authorization", &auth)],
            b"{\"values\":[",
        )
        .await;
    assert_eq!((r.status, r.rc()), (400, 4), "{}", r.text());
    drop(c);
    stop_node(node, weak).await;
}
