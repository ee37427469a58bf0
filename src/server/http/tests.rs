//! The HTTP mapping, driven through the real router with `tower::ServiceExt::oneshot`: paths,
//! parameters, bodies, credentials and connection info in; statuses, headers and JSON out.
//! Every refused or invalid write is also checked to leave the registry exactly as it was.

use std::net::{IpAddr, SocketAddr};

use axum::http::Request as HttpRequest;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use super::auth::handle_scheme;
use super::*;
use crate::model::structured::{interface, Interface, ServerInfo, SITE_PRIMARY};
use crate::model::{
    types, AdminPermissions, AdminRef, Prefix, ValueList, ValuePermissions, ValueReference,
};
use crate::resolve::{init_prefix, Overwrite, Policy};
use crate::store::{Record, Registry, StoreOptions};

const P1: &str = "88.100.1";
const P2: &str = "88.200.2";
const SECRET1: &str = "secret one";
const SECRET2: &str = "secret-two";
const ADMIN1: &str = "300:0.NA/88.100.1";
const ADMIN2: &str = "300:0.NA/88.200.2";
const MAX_BODY: usize = 64 * 1024;

struct Fixture {
    _dir: tempfile::TempDir,
    state: Arc<HttpState>,
}

fn site() -> SiteInfo {
    SiteInfo {
        data_format_version: 1,
        protocol_major: 2,
        protocol_minor: 11,
        serial: 7,
        primary_mask: SITE_PRIMARY,
        hash_option: 2,
        hash_filter: Vec::new(),
        attributes: vec![("desc".into(), "idnode".into())],
        servers: vec![ServerInfo {
            server_id: 1,
            address: ServerInfo::address_from_ip(IpAddr::from([127, 0, 0, 1])),
            public_key: Vec::new(),
            interfaces: vec![Interface {
                kind: interface::ADMIN_AND_QUERY,
                protocol: interface::HTTP,
                port: 8000,
            }],
        }],
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    init_prefix(
        &registry,
        &Prefix::parse(P1).unwrap(),
        300,
        SECRET1.as_bytes(),
    )
    .unwrap();
    init_prefix(
        &registry,
        &Prefix::parse(P2).unwrap(),
        300,
        SECRET2.as_bytes(),
    )
    .unwrap();
    let state = Arc::new(HttpState {
        sessions: Default::default(),
        resolver: Resolver::new(Engine::new(registry, Policy::default()), None),
        metrics: Metrics::new().unwrap(),
        max_body_bytes: MAX_BODY,
        plain_http_auth: PlainHttpAuth::default(),
        site: site(),
        // These tests try many refused credentials from one address on purpose; the
        // budget's own test is hole1_http_failed_credentials_are_budgeted_per_address.
        auth_failures: std::sync::Mutex::new(crate::auth::pending::FailureLimiter::new(
            crate::auth::pending::FailureLimits {
                burst: 1000,
                ..Default::default()
            },
        )),
    });
    let fx = Fixture { _dir: dir, state };
    fx.seed(
        "88.100.1/SN-1",
        vec![
            admin_value(),
            HandleValue::new(1, types::URL, "https://example.com/sn/1"),
            HandleValue::new(2, types::EMAIL, "qa@example.com"),
            HandleValue::new(3, "URL.BACKUP", "https://backup.example.com/sn/1"),
            HandleValue::new(4, types::DESC, "admin eyes only")
                .with_permissions(ValuePermissions::ADMIN_ONLY),
        ],
    );
    fx
}

/// HS_ADMIN at 100 naming the prefix administrators' group, as pyhandle writes it.
fn admin_value() -> HandleValue {
    HandleValue::new(
        100,
        types::HS_ADMIN,
        AdminRef {
            permissions: AdminPermissions::ALL,
            admin: ValueReference {
                handle: "0.NA/88.100.1".into(),
                index: 200,
            },
        }
        .encode(),
    )
}

impl Fixture {
    fn engine(&self) -> &Engine {
        self.state.engine()
    }

    fn owner(&self) -> Identity {
        let h = self.engine().parse_handle("0.NA/88.100.1").unwrap();
        self.engine()
            .authenticate_secret(&h, 300, SECRET1.as_bytes())
            .unwrap()
    }

    fn seed(&self, handle: &str, values: Vec<HandleValue>) {
        let h = self.engine().parse_handle(handle).unwrap();
        self.engine()
            .create(&self.owner(), &h, values, Overwrite::No)
            .unwrap();
    }

    fn record(&self, handle: &str) -> Option<Record> {
        let h = self.engine().parse_handle(handle).unwrap();
        self.engine().registry().get(&h).unwrap()
    }

    /// Every record and the change-log position: equal snapshots mean nothing was written.
    fn snapshot(&self) -> (u64, Vec<(String, Record)>) {
        let reg = self.engine().registry();
        let records = reg.iter_records().map(Result::unwrap).collect();
        (reg.last_seq(), records)
    }

    async fn send(&self, req: Req) -> Reply {
        let resp = router(self.state.clone())
            .oneshot(req.build())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A request under construction. Defaults to plain HTTP from a loopback peer.
struct Req {
    method: Method,
    uri: String,
    headers: Vec<(header::HeaderName, String)>,
    body: Vec<u8>,
    conn: Option<ConnInfo>,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000))
}

fn remote() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 5], 40_000))
}

/// `Authorization: Basic …` as pyhandle builds it: `index:handle` with ':' and '%'
/// percent-encoded, then ':' and the secret.
fn basic(user: &str, secret: &str) -> String {
    let user = user.replace('%', "%25").replace(':', "%3A");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    format!("Basic {token}")
}

impl Req {
    fn new(method: Method, uri: &str) -> Req {
        Req {
            method,
            uri: uri.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            conn: Some(ConnInfo {
                peer: loopback(),
                tls: false,
                client_cert: None,
            }),
        }
    }

    fn get(uri: &str) -> Req {
        Req::new(Method::GET, uri)
    }

    fn put(uri: &str) -> Req {
        Req::new(Method::PUT, uri)
    }

    fn delete(uri: &str) -> Req {
        Req::new(Method::DELETE, uri)
    }

    fn header(mut self, name: header::HeaderName, value: &str) -> Req {
        self.headers.push((name, value.to_string()));
        self
    }

    fn auth(self, user: &str, secret: &str) -> Req {
        self.header(header::AUTHORIZATION, &basic(user, secret))
    }

    /// The administrator of 88.100.1.
    fn admin(self) -> Req {
        self.auth(ADMIN1, SECRET1)
    }

    /// The administrator of 88.200.2 (no rights under 88.100.1).
    fn other_admin(self) -> Req {
        self.auth(ADMIN2, SECRET2)
    }

    fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }

    fn json(self, body: &Value) -> Req {
        self.header(header::CONTENT_TYPE, "application/json")
            .raw_body(serde_json::to_vec(body).unwrap())
    }

    fn conn(mut self, peer: SocketAddr, tls: bool) -> Req {
        self.conn = Some(ConnInfo {
            peer,
            tls,
            client_cert: None,
        });
        self
    }

    /// Over HTTPS with the client certificate in `tests/data/<file>`, asking for
    /// client-certificate authentication.
    fn client_cert(mut self, file: &str) -> Req {
        self.conn = Some(ConnInfo {
            peer: remote(),
            tls: true,
            client_cert: Some(fixture_cert(file).into()),
        });
        self.header(header::AUTHORIZATION, CLIENT_CERT)
    }

    fn build(self) -> HttpRequest<Body> {
        let mut b = HttpRequest::builder().method(self.method).uri(self.uri);
        for (k, v) in self.headers {
            b = b.header(k, v);
        }
        let mut req = b.body(Body::from(self.body)).unwrap();
        if let Some(conn) = self.conn {
            req.extensions_mut().insert(conn);
        }
        req
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Status and Handle response code together, for one-line assertions.
    fn codes(&self) -> (u16, u64) {
        let rc = self.json()["responseCode"].as_u64().unwrap_or(0);
        (self.status.as_u16(), rc)
    }

    fn indexes(&self) -> Vec<u64> {
        self.json()["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["index"].as_u64().unwrap())
            .collect()
    }
}

fn url_body(index: u32, url: &str) -> Value {
    json!({"values": [{"index": index, "type": "URL", "data": url}]})
}

fn pyhandle_body() -> Value {
    json!({"values": [
        {"index": 100, "type": "HS_ADMIN", "data": {"value": {
            "index": "200", "handle": "0.NA/88.100.1", "permissions": "011111110011"},
            "format": "admin"}},
        {"index": 1, "type": "URL", "data": "http://x"}
    ]})
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_found_echoes_handle_and_values() {
    let fx = fixture();
    let r = fx.send(Req::get("/api/handles/88.100.1/SN-1")).await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    assert!(r
        .header(header::CONTENT_TYPE)
        .unwrap()
        .starts_with("application/json"));
    let j = r.json();
    assert_eq!(j["handle"], "88.100.1/SN-1");
    // Public values only, in index order; the admin-only DESC is left out.
    assert_eq!(r.indexes(), vec![1, 2, 3, 100]);
    let url = &j["values"][0];
    assert_eq!(url["type"], "URL");
    assert_eq!(
        url["data"],
        json!({"format": "string", "value": "https://example.com/sn/1"})
    );
    assert_eq!(url["ttl"], 86400);
    assert!(url["timestamp"].as_str().unwrap().ends_with('Z'));
    let admin = &j["values"][3];
    assert_eq!(admin["data"]["format"], "admin");
    assert_eq!(
        admin["data"]["value"],
        json!({"handle": "0.NA/88.100.1", "index": 200, "permissions": "111111111111"})
    );
}

#[tokio::test]
async fn get_echoes_the_requested_spelling() {
    let fx = fixture();
    fx.seed(
        "88.100.1/Sn-Mixed",
        vec![HandleValue::new(1, types::URL, "https://example.com/m")],
    );
    let r = fx.send(Req::get("/api/handles/88.100.1/Sn-Mixed")).await;
    assert_eq!(r.codes(), (200, 1));
    assert_eq!(r.json()["handle"], "88.100.1/Sn-Mixed");
    // Suffixes are case-sensitive by default.
    let r = fx.send(Req::get("/api/handles/88.100.1/sn-mixed")).await;
    assert_eq!(r.codes(), (404, 100));
    // 0.NA folds case; the answer still carries the handle exactly as asked (pyhandle compares).
    let r = fx.send(Req::get("/api/handles/0.na/88.100.1")).await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "0.na/88.100.1");
}

#[tokio::test]
async fn get_not_found_and_not_homed() {
    let fx = fixture();
    let r = fx.send(Req::get("/api/handles/88.100.1/nope")).await;
    assert_eq!(r.codes(), (404, 100));
    assert_eq!(r.json()["handle"], "88.100.1/nope");
    let r = fx.send(Req::get("/api/handles/99.9/x")).await;
    assert_eq!(r.codes(), (400, 301));
    assert_eq!(r.json()["handle"], "99.9/x");
    assert!(r.json()["message"].is_string());
    // Not an identifier at all.
    let r = fx.send(Req::get("/api/handles/no-slash")).await;
    assert_eq!(r.codes(), (400, 102));
}

#[tokio::test]
async fn get_filters() {
    let fx = fixture();
    // Nothing matches: RC 200, HTTP 200, empty values.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?type=NOPE"))
        .await;
    assert_eq!(r.codes(), (200, 200), "{}", r.text());
    assert_eq!(r.json()["values"], json!([]));
    assert_eq!(r.json()["handle"], "88.100.1/SN-1");
    // Repeated parameters.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?index=1&index=2"))
        .await;
    assert_eq!(r.indexes(), vec![1, 2]);
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?type=URL&type=EMAIL"))
        .await;
    assert_eq!(r.indexes(), vec![1, 2]);
    // Union of index and type; types compare case-insensitively.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?type=email&index=100"))
        .await;
    assert_eq!(r.indexes(), vec![2, 100]);
    // A type family.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?type=URL."))
        .await;
    assert_eq!(r.indexes(), vec![1, 3]);
    // A non-numeric index.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?index=one"))
        .await;
    assert_eq!(r.codes(), (400, 202));
}

#[tokio::test]
async fn get_percent_encoded_paths() {
    let fx = fixture();
    let r = fx.send(Req::get("/api/handles/88.100.1%2FSN-1")).await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/SN-1");
    fx.seed(
        "88.100.1/a+b c",
        vec![HandleValue::new(1, types::URL, "https://example.com/plus")],
    );
    // `+` in a path is a plus, `%20` a space.
    let r = fx.send(Req::get("/api/handles/88.100.1/a+b%20c")).await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/a+b c");
    let r = fx.send(Req::get("/api/handles/88.100.1/a%2Bb%20c")).await;
    assert_eq!(r.codes(), (200, 1));
    let r = fx.send(Req::get("/api/handles/88.100.1/a%20b%20c")).await;
    assert_eq!(r.codes(), (404, 100));
}

#[tokio::test]
async fn post_is_get_with_parameters_in_the_body() {
    let fx = fixture();
    let r = fx
        .send(Req::new(Method::POST, "/api/handles/88.100.1/SN-1").json(&json!({"index": [1, 2]})))
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    assert_eq!(r.indexes(), vec![1, 2]);
    let r = fx
        .send(Req::new(Method::POST, "/api/handles/88.100.1/SN-1").json(&json!({"type": "EMAIL"})))
        .await;
    assert_eq!(r.indexes(), vec![2]);
}

#[tokio::test]
async fn non_public_values_need_an_administrator() {
    let fx = fixture();
    // Unauthenticated: public values only, the secret never shows.
    let r = fx.send(Req::get("/api/handles/0.NA/88.100.1")).await;
    assert_eq!(r.codes(), (200, 1));
    assert_eq!(r.indexes(), vec![100, 200]);
    // The prefix administrator sees the admin-only HS_SECKEY (publicOnly defaults to false
    // when authenticated).
    for uri in [
        "/api/handles/0.NA/88.100.1?publicOnly=false",
        "/api/handles/0.NA/88.100.1",
    ] {
        let r = fx.send(Req::get(uri).admin()).await;
        assert_eq!(r.codes(), (200, 1), "{uri}: {}", r.text());
        assert_eq!(r.indexes(), vec![100, 200, 300]);
        let j = r.json();
        assert_eq!(j["values"][2]["type"], "HS_SECKEY");
        assert_eq!(j["values"][2]["permissions"], "1100");
    }
    // An authenticated client may still ask for public values only.
    let r = fx
        .send(Req::get("/api/handles/0.NA/88.100.1?publicOnly=true").admin())
        .await;
    assert_eq!(r.indexes(), vec![100, 200]);
    // Without credentials: 401 with a Basic challenge.
    let r = fx
        .send(Req::get("/api/handles/0.NA/88.100.1?publicOnly=false"))
        .await;
    assert_eq!(r.codes(), (401, 402));
    assert_eq!(
        r.header(header::WWW_AUTHENTICATE),
        Some("Basic realm=\"handle\"")
    );
    assert!(!r.text().contains(SECRET1));
    // Another prefix's administrator: 403.
    let r = fx
        .send(Req::get("/api/handles/0.NA/88.100.1?publicOnly=false").other_admin())
        .await;
    assert_eq!(r.codes(), (403, 401), "{}", r.text());
    assert!(!r.text().contains(SECRET1));
    // Wrong secret: 401, never the data.
    let r = fx
        .send(Req::get("/api/handles/0.NA/88.100.1?publicOnly=false").auth(ADMIN1, "wrong"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.text().contains(SECRET1));
    // Admin-only values of an ordinary handle.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?index=4&publicOnly=false").admin())
        .await;
    assert_eq!(r.codes(), (200, 1));
    assert_eq!(r.json()["values"][0]["data"]["value"], "admin eyes only");
}

// ---------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn put_create_conflict_and_replace() {
    let fx = fixture();
    let uri = "/api/handles/88.100.1/new-1";
    let r = fx
        .send(
            Req::put(uri)
                .admin()
                .json(&url_body(1, "https://a.example")),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/new-1");
    let rec = fx.record("88.100.1/new-1").unwrap();
    assert_eq!(rec.values.len(), 1);
    assert_eq!(rec.values[0].data_str(), Some("https://a.example"));
    assert!(rec.values[0].timestamp > 0, "the server stamps values");

    let before = fx.snapshot();
    let r = fx
        .send(
            Req::put(&format!("{uri}?overwrite=false"))
                .admin()
                .json(&url_body(1, "https://b.example")),
        )
        .await;
    assert_eq!(r.codes(), (409, 101), "{}", r.text());
    assert_eq!(fx.snapshot(), before);

    // overwrite defaults to true for PUT: the whole record is replaced, answered 200.
    let r = fx
        .send(
            Req::put(uri)
                .admin()
                .json(&url_body(2, "https://c.example")),
        )
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    let rec = fx.record("88.100.1/new-1").unwrap();
    assert_eq!(rec.values.len(), 1);
    assert_eq!(rec.values[0].index, 2);
    let r = fx
        .send(
            Req::put(&format!("{uri}?overwrite=true"))
                .admin()
                .json(&url_body(3, "https://d.example")),
        )
        .await;
    assert_eq!(r.codes(), (200, 1));
    assert_eq!(fx.record("88.100.1/new-1").unwrap().values[0].index, 3);
}

#[tokio::test]
async fn put_with_index_adds_or_replaces_values() {
    let fx = fixture();
    let uri = "/api/handles/88.100.1/SN-1";
    let r = fx
        .send(
            Req::put(&format!("{uri}?index=5&overwrite=true"))
                .admin()
                .json(&url_body(5, "https://five.example")),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    let rec = fx.record("88.100.1/SN-1").unwrap();
    assert_eq!(
        rec.value(5).unwrap().data_str(),
        Some("https://five.example")
    );
    assert_eq!(rec.values.len(), 6, "the other values stay");

    let r = fx
        .send(
            Req::put(&format!("{uri}?index=5"))
                .admin()
                .json(&url_body(5, "https://five-again.example")),
        )
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    let rec = fx.record("88.100.1/SN-1").unwrap();
    assert_eq!(
        rec.value(5).unwrap().data_str(),
        Some("https://five-again.example")
    );

    // Several values with repeated index parameters, one new and one replaced: 200.
    let body = json!([
        {"index": 1, "type": "URL", "data": "https://one.example"},
        {"index": 6, "type": "EMAIL", "data": "six@example.com"}
    ]);
    let r = fx
        .send(
            Req::put(&format!("{uri}?index=6&index=1"))
                .admin()
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    let rec = fx.record("88.100.1/SN-1").unwrap();
    assert_eq!(
        rec.value(1).unwrap().data_str(),
        Some("https://one.example")
    );
    assert_eq!(rec.value(6).unwrap().data_str(), Some("six@example.com"));

    // index=various takes whatever the body holds.
    let r = fx
        .send(
            Req::put(&format!("{uri}?index=various"))
                .admin()
                .json(&url_body(7, "https://seven.example")),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());

    // Adding to a missing handle.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/missing?index=1")
                .admin()
                .json(&url_body(1, "https://x.example")),
        )
        .await;
    assert_eq!(r.codes(), (404, 100));
}

#[tokio::test]
async fn put_with_index_mismatch_or_existing_value_writes_nothing() {
    let fx = fixture();
    let before = fx.snapshot();
    for uri in [
        "/api/handles/88.100.1/SN-1?index=8",
        "/api/handles/88.100.1/SN-1?index=9&index=10",
        "/api/handles/88.100.1/SN-1?index=x",
    ] {
        let r = fx
            .send(
                Req::put(uri)
                    .admin()
                    .json(&url_body(9, "https://nine.example")),
            )
            .await;
        assert_eq!(r.codes(), (400, 202), "{uri}: {}", r.text());
    }
    // overwrite=false with one existing index: 409 RC 201 and the new value is not added
    // either.
    let body = json!([
        {"index": 1, "type": "URL", "data": "https://changed.example"},
        {"index": 9, "type": "URL", "data": "https://nine.example"}
    ]);
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/SN-1?index=1&index=9&overwrite=false")
                .admin()
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (409, 201), "{}", r.text());
    assert_eq!(fx.snapshot(), before);
}

#[tokio::test]
async fn put_mint_new_suffix() {
    let fx = fixture();
    for uri in [
        "/api/handles/88.100.1?mintNewSuffix=true",
        "/api/handles/88.100.1/?mintNewSuffix",
        "/api/handles/88.100.1/batch-?mintNewSuffix=yes",
    ] {
        let r = fx
            .send(
                Req::put(uri)
                    .admin()
                    .json(&url_body(1, "https://minted.example")),
            )
            .await;
        assert_eq!(r.codes(), (201, 1), "{uri}: {}", r.text());
        let minted = r.json()["handle"].as_str().unwrap().to_string();
        assert!(minted.starts_with("88.100.1/"), "{uri}: {minted}");
        assert!(!minted.ends_with('/'), "{minted}");
        if uri.contains("batch-") {
            assert!(minted.starts_with("88.100.1/batch-"), "{minted}");
        }
        let rec = fx.record(&minted).unwrap();
        assert_eq!(rec.values[0].data_str(), Some("https://minted.example"));
    }
}

#[tokio::test]
async fn put_body_and_content_type_errors_write_nothing() {
    let fx = fixture();
    let before = fx.snapshot();
    let uri = "/api/handles/88.100.1/bad";
    let valid = serde_json::to_vec(&url_body(1, "https://x.example")).unwrap();

    // No Content-Type, or the wrong one: 400 RC 4.
    let r = fx.send(Req::put(uri).admin().raw_body(valid.clone())).await;
    assert_eq!(r.codes(), (400, 4), "{}", r.text());
    let r = fx
        .send(
            Req::put(uri)
                .admin()
                .header(header::CONTENT_TYPE, "text/plain")
                .raw_body(valid.clone()),
        )
        .await;
    assert_eq!(r.codes(), (400, 4));
    // A charset parameter is fine.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/charset")
                .admin()
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .raw_body(valid.clone()),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    let before_after_charset = fx.snapshot();
    assert_ne!(before_after_charset, before);
    let before = before_after_charset;

    // Malformed JSON.
    let r = fx
        .send(
            Req::put(uri)
                .admin()
                .header(header::CONTENT_TYPE, "application/json")
                .raw_body("{\"values\": ["),
        )
        .await;
    assert_eq!(r.codes(), (400, 4), "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("JSON"));

    // Wrong shapes: RC 202, naming the problem.
    for body in [
        json!({"values": [{"index": 1, "type": "URL"}]}),
        json!({"values": [{"index": "one", "type": "URL", "data": "x"}]}),
        json!({"values": [{"index": 0, "type": "URL", "data": "x"}]}),
        json!({"values": [{"index": 1, "type": "URL", "data": {"format": "nope", "value": 1}}]}),
        json!({"values": "not a list"}),
        json!({"foo": 1}),
        json!(42),
        // The second value is bad: the first must not be written either.
        json!({"values": [
            {"index": 1, "type": "URL", "data": "https://ok.example"},
            {"index": 2, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": 5}}}
        ]}),
        // Duplicate indexes.
        json!([
            {"index": 1, "type": "URL", "data": "https://a.example"},
            {"index": 1, "type": "URL", "data": "https://b.example"}
        ]),
    ] {
        let r = fx.send(Req::put(uri).admin().json(&body)).await;
        assert_eq!(r.codes(), (400, 202), "{body}: {}", r.text());
        assert!(r.json()["message"].is_string());
    }
    // A body naming another handle.
    let r = fx
        .send(
            Req::put(uri)
                .admin()
                .json(&json!({"handle": "88.100.1/other", "values": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(fx.snapshot(), before);
    assert!(fx.record("88.100.1/bad").is_none());
}

#[tokio::test]
async fn put_accepts_every_body_form() {
    let fx = fixture();
    // A bare array, an object with a matching handle, one value object.
    let forms = [
        json!([{"index": 1, "type": "URL", "data": "https://array.example"}]),
        json!({"handle": "88.100.1/forms", "values": [{"index": 1, "type": "URL", "data": "https://object.example"}]}),
        json!({"index": 1, "type": "URL", "data": {"format": "string", "value": "https://single.example"}}),
    ];
    for (i, body) in forms.iter().enumerate() {
        let r = fx
            .send(Req::put("/api/handles/88.100.1/forms").admin().json(body))
            .await;
        let want = if i == 0 { 201 } else { 200 };
        assert_eq!(r.codes(), (want, 1), "{body}: {}", r.text());
    }
    let rec = fx.record("88.100.1/forms").unwrap();
    assert_eq!(rec.values[0].data_str(), Some("https://single.example"));
}

#[tokio::test]
async fn put_body_over_the_limit_is_413_json() {
    let fx = fixture();
    let before = fx.snapshot();
    let big = format!(
        "{{\"values\":[{{\"index\":1,\"type\":\"URL\",\"data\":\"{}\"}}]}}",
        "x".repeat(MAX_BODY)
    );
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/big")
                .admin()
                .header(header::CONTENT_TYPE, "application/json")
                .raw_body(big.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r
        .header(header::CONTENT_TYPE)
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.json()["responseCode"], 4);
    assert_eq!(fx.snapshot(), before);
    // Without credentials the body is not read at all (hole 9): 401. Also on POST and DELETE.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/big")
                .header(header::CONTENT_TYPE, "application/json")
                .raw_body(big.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = fx
        .send(Req::new(Method::POST, "/api/handles/88.100.1/SN-1").raw_body(big.clone()))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = fx
        .send(
            Req::delete("/api/handles/88.100.1/SN-1")
                .admin()
                .raw_body(big),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(fx.snapshot(), before);
    // Exactly at the limit is fine (the body is then just not JSON of the right shape).
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/big")
                .admin()
                .header(header::CONTENT_TYPE, "application/json")
                .raw_body(vec![b' '; MAX_BODY]),
        )
        .await;
    assert_eq!(r.codes(), (400, 4), "{}", r.text());
}

#[tokio::test]
async fn put_authentication_failures_are_401_and_write_nothing() {
    let fx = fixture();
    let before = fx.snapshot();
    let uri = "/api/handles/88.100.1/auth";
    let body = url_body(1, "https://auth.example");

    let r = fx.send(Req::put(uri).json(&body)).await;
    assert_eq!(r.codes(), (401, 402), "{}", r.text());
    assert_eq!(
        r.header(header::WWW_AUTHENTICATE),
        Some("Basic realm=\"handle\"")
    );
    assert_eq!(r.json()["handle"], "88.100.1/auth");

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let refused = [
        basic(ADMIN1, "wrong secret"),
        basic(ADMIN1, ""),
        // The right secret at an index that holds none.
        basic("301:0.NA/88.100.1", SECRET1),
        // A handle that does not exist.
        basic("300:0.NA/88.999", SECRET1),
        // No handle at all / not index:handle.
        basic("admin", SECRET1),
        format!("Basic {}", b64("300")),
        // Unencoded colon: the user is "300" and the rest counts as the secret.
        format!("Basic {}", b64(&format!("{ADMIN1}:{SECRET1}"))),
        "Basic !!!not-base64!!!".to_string(),
        "Basic ".to_string(),
        "Handle clientCert=\"true\"".to_string(),
        "Bearer abc".to_string(),
    ];
    for auth in refused {
        let r = fx
            .send(
                Req::put(uri)
                    .header(header::AUTHORIZATION, &auth)
                    .json(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth}: {}", r.text());
        assert_eq!(r.json()["responseCode"], 403, "{auth}");
        assert_eq!(
            r.header(header::WWW_AUTHENTICATE),
            Some("Basic realm=\"handle\""),
            "{auth}"
        );
    }
    // An administrator of another prefix: authenticated but not allowed, 403 RC 400.
    let r = fx.send(Req::put(uri).other_admin().json(&body)).await;
    assert_eq!(r.codes(), (403, 400), "{}", r.text());
    // ...nor may it change or delete an existing handle there.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/SN-1")
                .other_admin()
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (403, 400), "{}", r.text());
    let r = fx
        .send(Req::delete("/api/handles/88.100.1/SN-1").other_admin())
        .await;
    assert_eq!(r.codes(), (403, 400), "{}", r.text());
    // A PUT on a prefix the node does not home: 400 RC 301, whoever asks.
    let r = fx
        .send(Req::put("/api/handles/99.9/x").admin().json(&body))
        .await;
    assert_eq!(r.codes(), (400, 301), "{}", r.text());
    assert_eq!(fx.snapshot(), before);
}

const CLIENT_CERT: &str = "Handle clientCert=\"true\"";

/// The DER of the PEM certificate `tests/data/<file>`.
fn fixture_cert(file: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    rustls::pki_types::CertificateDer::from_pem_file(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_vec()
}

impl Fixture {
    /// Give `0.NA/88.100.1` an HS_PUBKEY at 301 (the key of `tests/data/client-a.key`) and
    /// make `301:0.NA/88.100.1` a member of the prefix's admin group.
    fn add_certificate_admin(&self) {
        let pem = std::fs::read_to_string(format!(
            "{}/tests/data/client-a.key",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let key = crate::auth::challenge::PrivateKey::from_pem(&pem).unwrap();
        let na = self.engine().parse_handle("0.NA/88.100.1").unwrap();
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
        self.engine()
            .add_values(&self.owner(), &na, values, true)
            .unwrap();
    }
}

#[tokio::test]
async fn client_certificate_authentication() {
    let fx = fixture();
    fx.add_certificate_admin();
    let body = url_body(1, "https://cert.example");
    // The identity in the CN, or in the UID attribute (which wins over the CN).
    for (n, file) in ["client-a-cn.pem", "client-a-uid.pem"].iter().enumerate() {
        let path = format!("/api/handles/88.100.1/cert-{n}");
        let r = fx.send(Req::put(&path).client_cert(file).json(&body)).await;
        assert_eq!(r.codes(), (201, 1), "{file}: {}", r.text());
        let r = fx.send(Req::delete(&path).client_cert(file)).await;
        assert_eq!(r.codes(), (200, 1), "{file}: {}", r.text());
    }
    // Refused, nothing written: a certificate for another key; the header without a
    // certificate; a certificate over plain HTTP; session authentication.
    let before = fx.snapshot();
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/cert-x")
                .client_cert("client-b-cn.pem")
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (401, 403), "{}", r.text());
    assert!(r.text().contains("not an HS_PUBKEY"), "{}", r.text());
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/cert-x")
                .conn(remote(), true)
                .header(header::AUTHORIZATION, CLIENT_CERT)
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.text().contains("no client certificate"), "{}", r.text());
    let mut plain = Req::put("/api/handles/88.100.1/cert-x")
        .client_cert("client-a-cn.pem")
        .json(&body);
    if let Some(conn) = plain.conn.as_mut() {
        conn.tls = false;
    }
    let r = fx.send(plain).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/cert-x")
                .conn(remote(), true)
                .header(header::AUTHORIZATION, "Handle sessionId=\"abc\"")
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.text().contains("session"), "{}", r.text());
    assert_eq!(fx.snapshot(), before);
}

#[tokio::test]
async fn client_certificate_without_an_hs_pubkey_is_refused() {
    // Nobody registered the key: the identity has no HS_PUBKEY at 301.
    let fx = fixture();
    let before = fx.snapshot();
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/cert-y")
                .client_cert("client-a-cn.pem")
                .json(&url_body(1, "https://cert.example")),
        )
        .await;
    assert_eq!(r.codes(), (401, 403), "{}", r.text());
    assert!(r.text().contains("no HS_PUBKEY"), "{}", r.text());
    assert_eq!(fx.snapshot(), before);
}

/// The `Handle` challenge of a 401: (sessionId, nonce bytes).
fn session_challenge(r: &Reply) -> (String, Vec<u8>) {
    let value = r
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("Handle "))
        .unwrap_or_else(|| panic!("no Handle challenge: {:?}", r.headers));
    let session = handle_scheme(value).unwrap().session_id.unwrap();
    let start = value.find("nonce=\"").unwrap() + 7;
    let len = value[start..].find('"').unwrap();
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(&value[start..start + len])
        .unwrap();
    (session, nonce)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn rest_session_with_a_secret_key() {
    use sha2::{Digest, Sha256};
    let fx = fixture();
    let body = url_body(1, "https://session.example");
    // A request without credentials gets 401 with a session to answer.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/s-1")
                .conn(remote(), true)
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (session, nonce) = session_challenge(&r);
    let cnonce = b"client nonce 123";
    let signature = Sha256::new()
        .chain_update(SECRET1)
        .chain_update(&nonce)
        .chain_update(cnonce)
        .chain_update(SECRET1)
        .finalize();
    let answer = format!(
        "Handle sessionId=\"{session}\", id=\"{ADMIN1}\", type=\"HS_SECKEY\", \
         cnonce=\"{}\", alg=\"SHA256\", signature=\"{}\"",
        b64(cnonce),
        b64(&signature)
    );
    let by_session = |path: &str, auth: &str| {
        Req::put(path)
            .conn(remote(), true)
            .header(header::AUTHORIZATION, auth)
            .json(&body)
    };
    let r = fx
        .send(by_session("/api/handles/88.100.1/s-1", &answer))
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    // Later requests name the session only.
    let only = format!("Handle sessionId=\"{session}\"");
    let r = fx
        .send(by_session("/api/handles/88.100.1/s-2", &only))
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    let r = fx
        .send(
            Req::get("/api/sessions/this")
                .conn(remote(), true)
                .header(header::AUTHORIZATION, &only),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["authenticated"], true);
    assert_eq!(r.json()["id"], ADMIN1);
    // Ended: the session id means nothing any more.
    let r = fx
        .send(
            Req::delete("/api/sessions/this")
                .conn(remote(), true)
                .header(header::AUTHORIZATION, &only),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let before = fx.snapshot();
    let r = fx
        .send(by_session("/api/handles/88.100.1/s-3", &only))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // A wrong answer authenticates nothing.
    let (session, _) = session_challenge(&r);
    let wrong = format!(
        "Handle sessionId=\"{session}\", id=\"{ADMIN1}\", type=\"HS_SECKEY\", \
         cnonce=\"{}\", alg=\"SHA256\", signature=\"{}\"",
        b64(cnonce),
        b64(&signature)
    );
    let r = fx
        .send(by_session("/api/handles/88.100.1/s-3", &wrong))
        .await;
    assert_eq!(r.codes(), (401, 403), "{}", r.text());
    let r = fx
        .send(by_session(
            "/api/handles/88.100.1/s-3",
            &format!("Handle sessionId=\"{session}\""),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // Over plain HTTP from the network, credentials do not count.
    let mut plain = by_session("/api/handles/88.100.1/s-3", &answer);
    plain.conn.as_mut().unwrap().tls = false;
    let r = fx.send(plain).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(fx.snapshot(), before);
}

#[tokio::test]
async fn rest_session_with_a_public_key_through_the_sessions_api() {
    use crate::auth::challenge::{PrivateKey, SignatureHash};
    let fx = fixture();
    fx.add_certificate_admin();
    let r = fx
        .send(Req::new(Method::POST, "/api/sessions").conn(remote(), true))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let session = r.json()["sessionId"].as_str().unwrap().to_string();
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(r.json()["nonce"].as_str().unwrap())
        .unwrap();
    assert_eq!(r.json()["authenticated"], false);
    let pem = std::fs::read_to_string(format!(
        "{}/tests/data/client-a.key",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let key = PrivateKey::from_pem(&pem).unwrap();
    let cnonce = b"another client nonce";
    let only = format!("Handle sessionId=\"{session}\"");
    let answer = |hash, id: &str| {
        let signature = key.try_sign(hash, &nonce, cnonce).unwrap();
        json!({"id": id, "type": "HS_PUBKEY", "cnonce": b64(cnonce),
               "alg": if hash == SignatureHash::Sha1 { "SHA1" } else { "SHA256" },
               "signature": b64(&signature)})
    };
    let this = |body: &Value| {
        Req::put("/api/sessions/this")
            .conn(remote(), true)
            .header(header::AUTHORIZATION, &only)
            .json(body)
    };
    // Signed by the key, but for an identity whose HS_PUBKEY it is not.
    let r = fx
        .send(this(&answer(SignatureHash::Sha256, "300:0.NA/88.100.1")))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    for hash in [SignatureHash::Sha1, SignatureHash::Sha256] {
        let r = fx.send(this(&answer(hash, "301:0.NA/88.100.1"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["authenticated"], true);
        assert_eq!(r.json()["id"], "301:0.NA/88.100.1");
    }
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/by-session")
                .conn(remote(), true)
                .header(header::AUTHORIZATION, &only)
                .json(&url_body(1, "https://session.example")),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    // Unknown sessions and other methods.
    let r = fx
        .send(
            Req::get("/api/sessions/this")
                .conn(remote(), true)
                .header(header::AUTHORIZATION, "Handle sessionId=\"nope\""),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = fx
        .send(Req::get("/api/sessions").conn(remote(), true))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
}

#[test]
fn handle_scheme_parameters() {
    let p = |v| handle_scheme(v).map(|s| s.client_cert);
    let full = handle_scheme(
        "Handle sessionId=\"s1\", id=\"300:0.NA/88.100.1\", type=\"HS_PUBKEY\", \
         cnonce=\"Y24=\", alg=\"SHA256\", signature=\"c2ln\"",
    )
    .unwrap();
    assert_eq!(full.session_id.as_deref(), Some("s1"));
    assert_eq!(full.id.as_deref(), Some("300:0.NA/88.100.1"));
    assert_eq!(full.kind.as_deref(), Some("HS_PUBKEY"));
    assert_eq!(full.cnonce.as_deref(), Some("Y24="));
    assert_eq!(full.alg.as_deref(), Some("SHA256"));
    assert_eq!(full.signature.as_deref(), Some("c2ln"));
    assert_eq!(p("Handle clientCert=\"true\""), Some(true));
    assert_eq!(p("handle  clientcert=TRUE"), Some(true));
    assert_eq!(p("Handle sessionId=\"1\", clientCert=\"true\""), Some(true));
    assert_eq!(p("Handle clientCert=\"false\""), Some(false));
    assert_eq!(p("Handle sessionId=\"1\""), Some(false));
    assert_eq!(p("Handle"), Some(false));
    assert_eq!(p("Bearer x"), None);
}

#[tokio::test]
async fn basic_username_forms() {
    let fx = fixture();
    let body = url_body(1, "https://user.example");
    // Encoded '/' as well as ':' (urllib.quote with safe="").
    let user = "300%3A0.NA%2F88.100.1";
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{SECRET1}"));
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/user-1")
                .header(header::AUTHORIZATION, &format!("Basic {token}"))
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    // Without an index the secret is checked against every HS_SECKEY of the handle
    // (index 0, as Handle.Net's authenticateViaBasic does).
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/user-2")
                .auth("0.NA/88.100.1", SECRET1)
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/user-3")
                .auth("0.NA/88.100.1", "wrong")
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(fx.record("88.100.1/user-3").is_none());
    // A lower-case scheme name.
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("300%3A0.NA/88.100.1:{SECRET1}"));
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/user-4")
                .header(header::AUTHORIZATION, &format!("basic {token}"))
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
}

#[tokio::test]
async fn pyhandle_shaped_create() {
    let fx = fixture();
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/py-1?overwrite=false")
                .admin()
                .header(header::ACCEPT, "application/json")
                .json(&pyhandle_body()),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/py-1");
    let r = fx.send(Req::get("/api/handles/88.100.1/py-1")).await;
    assert_eq!(r.codes(), (200, 1));
    let j = r.json();
    assert_eq!(j["handle"], "88.100.1/py-1");
    assert_eq!(
        j["values"][0]["data"],
        json!({"format": "string", "value": "http://x"})
    );
    assert_eq!(
        j["values"][1]["data"],
        json!({"format": "admin", "value": {
            "handle": "0.NA/88.100.1", "index": 200, "permissions": "011111110011"}})
    );
    // pyhandle's modify: PUT ?index=1&overwrite=true.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/py-1?index=1&overwrite=true")
                .admin()
                .json(&url_body(1, "http://y")),
        )
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    // pyhandle's delete.
    let r = fx
        .send(Req::delete("/api/handles/88.100.1/py-1").admin())
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
}

#[tokio::test]
async fn create_through_the_api_with_spaces_and_plus() {
    let fx = fixture();
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/x+y%20z")
                .admin()
                .json(&url_body(1, "https://plus.example")),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/x+y z");
    assert!(fx.record("88.100.1/x+y z").is_some());
    assert!(fx.record("88.100.1/x y z").is_none());
}

#[tokio::test]
async fn delete_handle_and_values() {
    let fx = fixture();
    let before = fx.snapshot();
    let r = fx.send(Req::delete("/api/handles/88.100.1/SN-1")).await;
    assert_eq!(r.codes(), (401, 402));
    let r = fx
        .send(Req::delete("/api/handles/88.100.1/SN-1?index=99").admin())
        .await;
    assert_eq!(r.codes(), (400, 200), "{}", r.text());
    // One missing index among present ones: nothing is removed.
    let r = fx
        .send(Req::delete("/api/handles/88.100.1/SN-1?index=2&index=99").admin())
        .await;
    assert_eq!(r.codes(), (400, 200));
    let r = fx
        .send(Req::delete("/api/handles/88.100.1/SN-1?index=two").admin())
        .await;
    assert_eq!(r.codes(), (400, 202));
    assert_eq!(fx.snapshot(), before);

    let r = fx
        .send(Req::delete("/api/handles/88.100.1/SN-1?index=2&index=3").admin())
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    let rec = fx.record("88.100.1/SN-1").unwrap();
    assert!(rec.value(2).is_none() && rec.value(3).is_none());
    assert!(rec.value(1).is_some());

    let r = fx
        .send(Req::delete("/api/handles/88.100.1/SN-1").admin())
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    assert_eq!(r.json()["handle"], "88.100.1/SN-1");
    assert!(fx.record("88.100.1/SN-1").is_none());
    let r = fx
        .send(Req::delete("/api/handles/88.100.1/SN-1").admin())
        .await;
    assert_eq!(r.codes(), (404, 100));
    let r = fx.send(Req::get("/api/handles/88.100.1/SN-1")).await;
    assert_eq!(r.codes(), (404, 100));
}

#[tokio::test]
async fn credentials_over_plain_http_from_the_network_are_refused() {
    let fx = fixture();
    let before = fx.snapshot();
    let body = url_body(1, "https://remote.example");
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/remote")
                .admin()
                .conn(remote(), false)
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("HTTPS"));
    let r = fx
        .send(
            Req::delete("/api/handles/88.100.1/SN-1")
                .admin()
                .conn(remote(), false),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = fx
        .send(
            Req::get("/api/handles/88.100.1/SN-1?index=4&publicOnly=false")
                .admin()
                .conn(remote(), false),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.text().contains("admin eyes only"));
    let r = fx
        .send(
            Req::get("/api/handles?prefix=88.100.1")
                .admin()
                .conn(remote(), false),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Without connection info a request counts as plain HTTP from an unknown peer.
    let mut req = Req::put("/api/handles/88.100.1/remote").admin().json(&body);
    req.conn = None;
    let r = fx.send(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.snapshot(), before);
    // Public reads from the network need nothing.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1").conn(remote(), false))
        .await;
    assert_eq!(r.codes(), (200, 1));
    // The same credentials over TLS are accepted.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/remote")
                .admin()
                .conn(remote(), true)
                .json(&body),
        )
        .await;
    assert_eq!(r.codes(), (201, 1), "{}", r.text());
}

#[tokio::test]
async fn plain_http_auth_policies() {
    for (policy, loopback_ok, remote_ok) in [
        (PlainHttpAuth::Never, false, false),
        (PlainHttpAuth::Loopback, true, false),
        (PlainHttpAuth::Always, true, true),
    ] {
        let fx = fixture();
        let state = Arc::new(HttpState {
            sessions: Default::default(),
            resolver: fx.state.resolver.clone(),
            metrics: Metrics::new().unwrap(),
            max_body_bytes: MAX_BODY,
            plain_http_auth: policy,
            site: site(),
            auth_failures: std::sync::Mutex::new(crate::auth::pending::FailureLimiter::new(
                Default::default(),
            )),
        });
        let fx = Fixture {
            _dir: fx._dir,
            state,
        };
        for (peer, ok, name) in [
            (loopback(), loopback_ok, "loopback"),
            (remote(), remote_ok, "remote"),
        ] {
            let r = fx
                .send(
                    Req::put(&format!("/api/handles/88.100.1/{name}"))
                        .admin()
                        .conn(peer, false)
                        .json(&url_body(1, "https://p.example")),
                )
                .await;
            let want = if ok { 201 } else { 401 };
            assert_eq!(r.status.as_u16(), want, "{policy:?} {name}: {}", r.text());
            // TLS always counts.
            let r = fx
                .send(
                    Req::put(&format!("/api/handles/88.100.1/{name}-tls"))
                        .admin()
                        .conn(peer, true)
                        .json(&url_body(1, "https://p.example")),
                )
                .await;
            assert_eq!(r.status.as_u16(), 201, "{policy:?} {name} tls");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listing, prefixes, site, unknown endpoints, methods
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_handles_paged() {
    let fx = fixture();
    for i in 2..=4 {
        fx.seed(
            &format!("88.100.1/SN-{i}"),
            vec![HandleValue::new(1, types::URL, "https://example.com")],
        );
    }
    let r = fx
        .send(Req::get("/api/handles?prefix=88.100.1&page=0&pageSize=2").admin())
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    let j = r.json();
    assert_eq!(j["prefix"], "88.100.1");
    assert_eq!(j["totalCount"], 4);
    assert_eq!(j["handles"], json!(["88.100.1/SN-1", "88.100.1/SN-2"]));
    let r = fx
        .send(Req::get("/api/handles?prefix=88.100.1&page=1&pageSize=2").admin())
        .await;
    assert_eq!(
        r.json()["handles"],
        json!(["88.100.1/SN-3", "88.100.1/SN-4"])
    );
    let r = fx
        .send(Req::get("/api/handles/?prefix=0.NA/88.100.1&pageSize=0").admin())
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    assert_eq!(r.json()["totalCount"], 4);
    assert_eq!(r.json()["handles"], json!([]));
    let r = fx
        .send(Req::get("/api/handles?prefix=88.100.1").admin())
        .await;
    assert_eq!(r.json()["handles"].as_array().unwrap().len(), 4);

    let r = fx
        .send(Req::get("/api/handles?prefix=88.100.1&page=0&pageSize=2"))
        .await;
    assert_eq!(r.codes(), (401, 402));
    assert!(r.json().get("handles").is_none());
    let r = fx
        .send(Req::get("/api/handles?prefix=88.100.1").other_admin())
        .await;
    assert_eq!(r.codes(), (403, 400));
    let r = fx.send(Req::get("/api/handles?prefix=99.9").admin()).await;
    assert_eq!(r.codes(), (400, 301));
    let r = fx.send(Req::get("/api/handles").admin()).await;
    assert_eq!(r.codes(), (400, 4));
    let r = fx
        .send(Req::get("/api/handles?prefix=88.100.1&page=x").admin())
        .await;
    assert_eq!(r.codes(), (400, 4));
}

#[tokio::test]
async fn prefixes_site_and_unknown_endpoints() {
    let fx = fixture();
    let r = fx.send(Req::get("/api/prefixes")).await;
    assert_eq!(r.codes(), (200, 1));
    let mut prefixes: Vec<String> = serde_json::from_value(r.json()["prefixes"].clone()).unwrap();
    prefixes.sort();
    assert_eq!(prefixes, vec![P1, P2]);

    let r = fx.send(Req::get("/api/site")).await;
    assert_eq!(r.codes(), (200, 1));
    let s = &r.json()["site"];
    assert_eq!(s["serialNumber"], 7);
    assert_eq!(s["protocolVersion"], "2.11");
    assert_eq!(s["primarySite"], true);
    assert_eq!(s["servers"][0]["interfaces"][0]["protocol"], "HTTP");
    assert_eq!(s["servers"][0]["interfaces"][0]["port"], 8000);

    for uri in ["/api/foo", "/api/sessions/that", "/api/handles-x"] {
        let r = fx.send(Req::get(uri)).await;
        assert_eq!(r.codes(), (404, 4), "{uri}");
        assert!(r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Unknown HTTP API endpoint"));
    }
    let r = fx
        .send(Req::new(Method::PATCH, "/api/handles/88.100.1/SN-1"))
        .await;
    assert_eq!(r.codes(), (405, 4), "{}", r.text());
    let r = fx
        .send(Req::new(Method::OPTIONS, "/api/handles/88.100.1/SN-1"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r
        .header(header::ACCESS_CONTROL_ALLOW_METHODS)
        .unwrap()
        .contains("PUT"));
}

#[tokio::test]
async fn pretty_callback_and_cors() {
    let fx = fixture();
    let plain = fx.send(Req::get("/api/handles/88.100.1/SN-1")).await;
    assert_eq!(plain.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    assert!(plain
        .header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none());
    assert!(!plain.text().contains('\n'));
    // Browser scripts may read the session challenge; the sessions API answers preflights.
    assert_eq!(
        plain.header(header::ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("WWW-Authenticate, Location")
    );
    for uri in ["/api/sessions", "/api/sessions/this"] {
        let r = fx.send(Req::new(Method::OPTIONS, uri)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{uri}");
        assert!(r
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS)
            .is_some_and(|h| h.contains("Authorization")));
    }

    let pretty = fx.send(Req::get("/api/handles/88.100.1/SN-1?pretty")).await;
    assert!(
        pretty.text().contains("\n  \"handle\""),
        "{}",
        pretty.text()
    );
    assert_eq!(pretty.json(), plain.json());
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?pretty=false"))
        .await;
    assert!(!r.text().contains('\n'));

    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?callback=cb_1.x"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header(header::CONTENT_TYPE),
        Some("application/javascript")
    );
    let text = r.text();
    let inner = text
        .strip_prefix("cb_1.x(")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(serde_json::from_str::<Value>(inner).unwrap(), plain.json());
    // Errors are wrapped too, with their status.
    let r = fx
        .send(Req::get("/api/handles/88.100.1/nope?callback=cb"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().starts_with("cb({"));
    // A callback that is not a plain JS name is ignored (no script injection).
    let r = fx
        .send(Req::get("/api/handles/88.100.1/SN-1?callback=alert(1)%3Bx"))
        .await;
    assert!(r
        .header(header::CONTENT_TYPE)
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.json(), plain.json());

    for uri in ["/api/foo", "/88.100.1/SN-1", "/healthz", "/api/prefixes"] {
        let r = fx.send(Req::get(uri)).await;
        assert_eq!(
            r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("*"),
            "{uri}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Proxy, metrics, health
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn proxy_redirects_and_pages() {
    let fx = fixture();
    let r = fx.send(Req::get("/88.100.1/SN-1")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header(header::LOCATION), Some("https://example.com/sn/1"));
    for uri in [
        "/hdl:88.100.1/SN-1",
        "/88.100.1%2FSN-1",
        "/?handle=88.100.1/SN-1",
    ] {
        let r = fx.send(Req::get(uri)).await;
        assert_eq!(r.status, StatusCode::FOUND, "{uri}");
        assert_eq!(
            r.header(header::LOCATION),
            Some("https://example.com/sn/1"),
            "{uri}"
        );
    }
    let r = fx.send(Req::get("/88.100.1/SN-1?urlappend=%3Fa%3D1")).await;
    assert_eq!(
        r.header(header::LOCATION),
        Some("https://example.com/sn/1?a=1")
    );

    let r = fx.send(Req::get("/88.100.1/SN-1?noredirect")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header(header::CONTENT_TYPE)
        .unwrap()
        .starts_with("text/html"));
    let page = r.text();
    assert!(page.contains("https://example.com/sn/1"), "{page}");
    assert!(page.contains("qa@example.com"));
    assert!(
        !page.contains("admin eyes only"),
        "admin-only values stay hidden"
    );
    let r = fx.send(Req::get("/88.100.1/SN-1?action=showvalues")).await;
    assert_eq!(r.status, StatusCode::OK);

    // Only a URL.* subtype: it is used.
    fx.seed(
        "88.100.1/sub",
        vec![HandleValue::new(2, "URL.MIRROR", "https://mirror.example")],
    );
    let r = fx.send(Req::get("/88.100.1/sub")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header(header::LOCATION), Some("https://mirror.example"));
    // No URL at all: the values page.
    fx.seed(
        "88.100.1/nourl",
        vec![HandleValue::new(2, types::EMAIL, "a@example.com")],
    );
    let r = fx.send(Req::get("/88.100.1/nourl")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("a@example.com"));

    let r = fx.send(Req::get("/88.100.1/missing")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r
        .header(header::CONTENT_TYPE)
        .unwrap()
        .starts_with("text/html"));
    let r = fx.send(Req::get("/99.9/elsewhere")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = fx.send(Req::get("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("<form"));
}

#[tokio::test]
async fn proxy_escapes_html_and_location() {
    let fx = fixture();
    let evil = "https://example.com/?q=<script>alert(1)</script>&x=\"y\"";
    fx.seed(
        "88.100.1/evil",
        vec![
            HandleValue::new(1, types::URL, evil),
            HandleValue::new(2, "<b>TYPE</b>", "x"),
        ],
    );
    let r = fx.send(Req::get("/88.100.1/evil?noredirect")).await;
    assert_eq!(r.status, StatusCode::OK);
    let page = r.text();
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<b>TYPE"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("&quot;y&quot;"));
    // The handle in the page title is escaped too.
    fx.seed(
        "88.100.1/<i>",
        vec![HandleValue::new(2, types::EMAIL, "x@example.com")],
    );
    let r = fx.send(Req::get("/88.100.1/%3Ci%3E?noredirect")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text().contains("<i>"), "{}", r.text());
    let r = fx.send(Req::get("/88.100.1/%3Cscript%3Enope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.text().contains("<script>"));

    let r = fx.send(Req::get("/88.100.1/evil")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.header(header::LOCATION).unwrap();
    assert!(!loc.contains('<') && !loc.contains('"'), "{loc}");
    assert!(loc.contains("%3Cscript%3E"), "{loc}");
}

#[tokio::test]
async fn proxy_follows_aliases_with_301() {
    let fx = fixture();
    fx.seed(
        "88.100.1/alias",
        vec![
            HandleValue::new(1, types::HS_ALIAS, "88.100.1/SN-1"),
            HandleValue::new(2, types::URL, "https://not-this.example"),
        ],
    );
    let r = fx.send(Req::get("/88.100.1/alias")).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header(header::LOCATION), Some("/88.100.1/SN-1"));
    // With noredirect the values are shown instead.
    let r = fx.send(Req::get("/88.100.1/alias?noredirect")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("HS_ALIAS"));
}

#[tokio::test]
async fn metrics_and_health() {
    let fx = fixture();
    fx.send(Req::get("/api/handles/88.100.1/SN-1")).await;
    fx.send(Req::get("/api/handles/88.100.1/nope")).await;
    fx.send(Req::get("/88.100.1/SN-1")).await;
    let r = fx.send(Req::get("/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header(header::CONTENT_TYPE)
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text();
    assert!(text.contains("idnode_requests_total"), "{text}");
    assert!(
        text.contains(r#"idnode_requests_total{code="1",op="resolve",proto="http"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"idnode_requests_total{code="100",op="resolve",proto="http"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"op="proxy""#), "{text}");
    // The smallest latency bucket is 10 µs (prometheus-rs prints it as 0.00001; Go clients
    // would print 1e-05).
    assert!(
        text.contains(r#"le="1e-05""#) || text.contains(r#"le="0.00001""#),
        "{text}"
    );
    assert!(text.contains("idnode_store_records"), "{text}");

    let r = fx.send(Req::get("/healthz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "ok\n");
}

#[test]
fn status_mapping_follows_handle_net() {
    use ResponseCode as R;
    let cases = [
        (R::Success, false, 200),
        (R::ValuesNotFound, true, 200),
        (R::ValuesNotFound, false, 400),
        (R::ServiceReferral, true, 300),
        (R::PrefixReferral, true, 300),
        (R::HandleNotFound, true, 404),
        (R::HandleAlreadyExists, false, 409),
        (R::ValueAlreadyExists, false, 409),
        (R::ProtocolError, false, 400),
        (R::InvalidHandle, true, 400),
        (R::InvalidValue, false, 400),
        (R::ServerNotResponsible, true, 400),
        (R::OperationNotSupported, false, 501),
        (R::ServerTooBusy, false, 503),
        (R::ServerBackup, false, 503),
        (R::AuthenticationNeeded, false, 401),
        (R::InvalidAdmin, false, 403),
        (R::InsufficientPermissions, false, 403),
        (R::AuthenticationFailed, false, 403),
        (R::InvalidCredential, false, 403),
        (R::Error, false, 500),
        (R::AuthenticationTimeout, false, 500),
    ];
    for (code, resolution, want) in cases {
        assert_eq!(
            http_status(code, resolution).as_u16(),
            want,
            "{code:?} resolution={resolution}"
        );
    }
}

#[test]
fn params_decode_plus_and_repeat() {
    let p = Params::parse(Some("type=URL&type=A+B&index=1&flag&x=%2Fy&yes=YES&no=0"));
    assert_eq!(p.all("type").collect::<Vec<_>>(), vec!["URL", "A B"]);
    assert_eq!(p.get("x"), Some("/y"));
    assert_eq!(p.flag("flag"), Some(true));
    assert_eq!(p.flag("yes"), Some(true));
    assert_eq!(p.flag("no"), Some(false));
    assert_eq!(p.flag("absent"), None);
    assert!(Params::parse(None).0.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Hole 9: proxy redirects, urlappend, bodies of unauthenticated writes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hole9_proxy_redirects_only_to_safe_schemes() {
    let fx = fixture();
    let unsafe_urls = [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "//evil.example/",
        "/relative/path",
        "mailto:qa@example.com",
    ];
    for (i, url) in unsafe_urls.iter().enumerate() {
        let h = format!("88.100.1/unsafe-{i}");
        fx.seed(&h, vec![HandleValue::new(1, types::URL, *url)]);
        let r = fx.send(Req::get(&format!("/{h}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{url:?}");
        assert_eq!(r.header(header::LOCATION), None, "{url:?}");
        // The values page shows it as text only.
        assert!(!r.text().contains("<script>"), "{}", r.text());
    }
    for (i, url) in [
        "https://example.com/a",
        "HTTP://Example.com/b",
        "ftp://files.example/c.txt",
    ]
    .iter()
    .enumerate()
    {
        let h = format!("88.100.1/safe-{i}");
        fx.seed(&h, vec![HandleValue::new(1, types::URL, *url)]);
        let r = fx.send(Req::get(&format!("/{h}"))).await;
        assert_eq!(r.status, StatusCode::FOUND, "{url:?}");
        assert_eq!(r.header(header::LOCATION), Some(*url));
    }
    // An HS_ALIAS that is not a handle is no way off the node either.
    for (i, alias) in ["/evil.example", "\\evil.example"].iter().enumerate() {
        let h = format!("88.100.1/alias-{i}");
        fx.seed(&h, vec![HandleValue::new(1, types::HS_ALIAS, *alias)]);
        let r = fx.send(Req::get(&format!("/{h}"))).await;
        let loc = r.header(header::LOCATION).unwrap_or("");
        assert!(!loc.starts_with("//") && !loc.starts_with("/\\"), "{loc}");
    }
}

#[tokio::test]
async fn hole9_urlappend_cannot_change_scheme_or_authority() {
    let fx = fixture();
    fx.seed(
        "88.100.1/bare",
        vec![HandleValue::new(1, types::URL, "http://a.example")],
    );
    for append in [
        "@evil.example/",
        ".evil.example/",
        ":8080/",
        "%09@evil.example/",
        ":x@evil.example",
    ] {
        let enc = percent_encoding::utf8_percent_encode(append, percent_encoding::NON_ALPHANUMERIC);
        let r = fx
            .send(Req::get(&format!("/88.100.1/bare?urlappend={enc}")))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{append:?}");
        assert_eq!(r.header(header::LOCATION), None, "{append:?}");
    }
    for (append, want) in [
        ("/path", "http://a.example/path"),
        ("?q=1", "http://a.example?q=1"),
        ("#frag", "http://a.example#frag"),
        ("/p@q", "http://a.example/p@q"),
        ("", "http://a.example"),
    ] {
        let enc = percent_encoding::utf8_percent_encode(append, percent_encoding::NON_ALPHANUMERIC);
        let r = fx
            .send(Req::get(&format!("/88.100.1/bare?urlappend={enc}")))
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "{append:?}");
        assert_eq!(r.header(header::LOCATION), Some(want), "{append:?}");
    }
    // With a path, "@..." stays in the path: allowed, the host is unchanged.
    let r = fx
        .send(Req::get("/88.100.1/SN-1?urlappend=%40evil.example"))
        .await;
    assert_eq!(
        r.header(header::LOCATION),
        Some("https://example.com/sn/1@evil.example")
    );
}

/// A request whose body records whether anything read it.
fn watched(mut req: Req) -> (HttpRequest<Body>, Arc<std::sync::atomic::AtomicBool>) {
    let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bytes = Bytes::from(std::mem::take(&mut req.body));
    let mut built = req.build();
    let flag = polled.clone();
    let body = http_body_util::Full::new(bytes).map_frame(move |f| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        f
    });
    *built.body_mut() = Body::new(body);
    (built, polled)
}

#[tokio::test]
async fn hole9_unauthenticated_write_bodies_are_never_read() {
    let fx = fixture();
    let before = fx.snapshot();
    let huge = vec![b'{'; MAX_BODY * 4];
    let cases = [
        // Anonymous PUT, invalid JSON and far over the body limit.
        Req::put("/api/handles/88.100.1/x")
            .header(header::CONTENT_TYPE, "application/json")
            .raw_body(huge.clone()),
        // Wrong secret.
        Req::put("/api/handles/88.100.1/x")
            .auth(ADMIN1, "wrong")
            .header(header::CONTENT_TYPE, "application/json")
            .raw_body(b"not json".to_vec()),
        Req::delete("/api/handles/88.100.1/SN-1").raw_body(huge.clone()),
        Req::new(Method::POST, "/api/handles/88.100.1/SN-1")
            .auth(ADMIN1, "wrong")
            .raw_body(huge.clone()),
    ];
    for req in cases {
        let what = format!("{} {}", req.method, req.uri);
        let (built, polled) = watched(req);
        let resp = router(fx.state.clone()).oneshot(built).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            resp.headers().get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "{what}"
        );
        assert!(
            !polled.load(std::sync::atomic::Ordering::SeqCst),
            "{what}: body read before authentication"
        );
    }
    // A small declared body is read and dropped, unparsed, so a keep-alive client goes on.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/x")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, "8")
                .raw_body(b"not json".to_vec()),
        )
        .await;
    assert_eq!(r.codes(), (401, 402), "{}", r.text());
    assert_eq!(r.header(header::CONNECTION), None);
    assert_eq!(fx.snapshot(), before);
    // An anonymous POST resolution is still served, with a small body only.
    let r = fx
        .send(Req::new(Method::POST, "/api/handles/88.100.1/SN-1").json(&json!({"type": "URL"})))
        .await;
    assert_eq!(r.codes(), (200, 1), "{}", r.text());
    let r = fx
        .send(
            Req::new(Method::POST, "/api/handles/88.100.1/SN-1").raw_body(vec![
                b' ';
                UNAUTHENTICATED_BODY_BYTES
                    + 1
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Authenticated, the same bad body is read and refused for what it is.
    let r = fx
        .send(
            Req::put("/api/handles/88.100.1/x")
                .admin()
                .header(header::CONTENT_TYPE, "application/json")
                .raw_body(b"not json".to_vec()),
        )
        .await;
    assert_eq!(r.codes(), (400, 4), "{}", r.text());
}

#[tokio::test]
async fn hole1_http_failed_credentials_are_budgeted_per_address() {
    let fx = fixture();
    *fx.state.auth_failures.lock().unwrap() =
        crate::auth::pending::FailureLimiter::new(crate::auth::pending::FailureLimits {
            burst: 3,
            per_minute: 1,
            ..Default::default()
        });
    let uri = "/api/handles/88.100.1/SN-1";
    let guesser: SocketAddr = "10.9.9.9:5000".parse().unwrap();
    for _ in 0..3 {
        let r = fx
            .send(Req::get(uri).conn(guesser, true).auth(ADMIN1, "guess"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // The budget is spent: even the right secret is refused, unchecked.
    let r = fx
        .send(Req::get(uri).conn(guesser, true).auth(ADMIN1, SECRET1))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.text().contains("too many failed"), "{}", r.text());
    // Another address is not affected.
    let other: SocketAddr = "10.9.9.10:5000".parse().unwrap();
    let r = fx
        .send(Req::get(uri).conn(other, true).auth(ADMIN1, SECRET1))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}
