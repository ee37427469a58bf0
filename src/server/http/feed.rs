//! The HTTP endpoints of the change feed every node serves to its followers, under `/sync/`
//! (merged into the node's router): query parameters, follower authentication, the long-poll
//! wait and the scan permits. The answers are built by [`crate::sync::feed`] and
//! [`crate::sync::digest`] and written as the [`crate::wire::sync`] types the follower
//! reads back; this half is HTTP, so it lives in `server`, above `sync`.
//!
//! - `GET /sync/changes?after=N&limit=M&wait_ms=W[&prefix=P...]` →
//!   `{"from":N,"next":X,"last_seq":S,"changes":[{"seq","action","key","record","data"}]}`:
//!   record changes with sequence > N under the requested prefixes (default: all the
//!   follower may receive), at most M (≤ 1000) log entries scanned; `next` is the last
//!   sequence scanned (the follower's next cursor even when nothing matched). `record` is
//!   the REST JSON of the record, `data` its canonical stored encoding (base64, CRC-sealed),
//!   which is what followers apply. When nothing is new, the request waits up to W ms
//!   (≤ 30 s) — by polling the registry's last sequence every 50 ms, which is simple and
//!   bounds the added latency at 50 ms. When N is older than the retained log:
//!   `410 Gone` `{"responseCode":10,"message":"re-bootstrap"}`.
//! - `GET /sync/snapshot?prefix=P...` → `{"seq":S,"records":[{"key","record","data"}]}`: the
//!   whole snapshot in one answer (followers before issue 14; a scan permit, memory as
//!   large as the prefixes).
//! - `GET /sync/snapshot?limit=N[&after=K][&seq=S][&prefix=P...]` → `{"seq":S,"records":
//!   [{"key","data"}],"more":B}`: one page of a paged snapshot, at most N (≤ 10 000) records
//!   and about 4 MiB after the key K, in key order ([`crate::sync::feed::snapshot_page`]).
//!   The first page (no `seq`) names the sequence the bootstrap starts at; later pages
//!   echo it, and get `410 Gone` "re-bootstrap" once the log no longer holds every change
//!   after it. No permit: a page is bounded work.
//! - `GET /sync/digest?prefix=P` → `{"prefix","records","sha256"[,"seq"]}`, computed by
//!   streaming over the prefix's key range ([`crate::sync::digest`]; bounded memory);
//!   `seq` when it is exact at that sequence.
//! - `GET /sync/status` → this node's follow links.
//! - `GET /sync/export` → the whole registry as JSON Lines, consistent at one sequence
//!   (`server::http::backup`; the operator token only).
//!
//! Every endpoint needs an identity listed in `[[sync.allow]]` (401 without valid
//! credentials, 403 for prefixes it may not receive), and HTTPS unless
//! `sync.allow_plain = true`. The identity proves itself with HTTP Basic (its HS_SECKEY
//! secret) or, better, by signing each request with its HS_PUBKEY private key
//! (`Authorization: HS_PUBKEY id=…, t=…, sig=…`; no secret crosses the link). The follower
//! authenticates the upstream by its TLS certificate (`ca_file`). `status` and `digest` (of
//! any prefix) also accept the node's own operator token (`Authorization: Bearer …`, from
//! [`crate::sync::operator_token_path`]), over HTTPS, from loopback, or with `allow_plain`.
//!
//! `snapshot` and `digest` read a whole prefix: at most `sync.max_concurrent_scans` run at
//! once (after authentication), others get 503 with `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::auth::Identity;
use crate::model::Prefix;
use crate::server::http::{authenticate, ConnInfo, Credentials, HttpState};
use crate::store::bootstrap::MAX_PAGE_RECORDS;
use crate::sync::feed::{MAX_LIMIT, MAX_WAIT_MS};
use crate::sync::follower::Links;
use crate::wire::sync::{Digest, FeedError, SyncStatus};

pub struct FeedState {
    pub http: Arc<HttpState>,
    pub allow: Vec<(Identity, Vec<Prefix>)>,
    pub allow_plain: bool,
    pub links: Links,
    /// Node shutdown: ends long-polls at once, so a graceful shutdown does not wait for them.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Full-prefix scans (`digest`, `snapshot`) running at once: `sync.max_concurrent_scans`
    /// permits, taken without waiting.
    pub scans: Arc<tokio::sync::Semaphore>,
    /// The node operator's token ([`crate::sync::operator_token_path`]) for `status` and
    /// `digest`; `None` accepts no token.
    pub operator_token: Option<String>,
}

/// Seconds a client refused for lack of a scan permit is asked to wait.
pub const SCAN_RETRY_AFTER_SECS: u64 = 2;

pub fn router(state: Arc<FeedState>) -> Router {
    Router::new()
        .route("/sync/changes", get(changes))
        .route("/sync/snapshot", get(snapshot))
        .route("/sync/digest", get(digest))
        .route("/sync/status", get(status))
        .route("/sync/export", get(super::backup::export))
        .with_state(state)
}

pub(super) fn error(status: StatusCode, rc: u32, message: &str) -> Response {
    let body = FeedError {
        response_code: rc,
        message: message.to_string(),
    };
    (status, Json(body)).into_response()
}

fn params(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (d(k), d(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Check `Authorization: HS_PUBKEY id="<index:handle>", t="<unix>", sig="<base64>"`: taken
/// apart here, verified by [`crate::sync::verify_request_signature`] (the timestamp within
/// [`crate::sync::SIGNATURE_WINDOW_SECS`], the signature by one of the identity's HS_PUBKEY
/// values in this node's registry).
fn verify_signed_request(state: &FeedState, params: &str, path: &str) -> Result<Identity, String> {
    let field = |name: &str| {
        params.split(',').find_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let (Some(id), Some(t), Some(sig)) = (field("id"), field("t"), field("sig")) else {
        return Err("HS_PUBKEY authorization needs id, t and sig".into());
    };
    let engine = state.http.engine();
    let identity = crate::config::parse_identity(&id, engine.policy().suffix_case)?;
    let t: u64 = t.parse().map_err(|_| format!("bad timestamp {t:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::sync::verify_request_signature(engine.registry(), &identity, t, &sig, path, now)?;
    Ok(identity)
}

/// Who is calling a feed endpoint.
pub(super) enum Caller {
    /// An identity of `[[sync.allow]]`, with the prefixes it may receive.
    Follower(Identity, Vec<Prefix>),
    /// The holder of the node's operator token.
    Operator,
}

/// Authenticate the caller: a follower identity listed in `[[sync.allow]]` (every
/// endpoint), or the operator token when `operator_ok` (status, digests, the export).
pub(super) fn authenticate_caller(
    state: &FeedState,
    req: &Request,
    operator_ok: bool,
) -> Result<Caller, Box<Response>> {
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let tls = conn.as_ref().is_some_and(|c| c.tls);
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(token) = header.and_then(|v| v.strip_prefix("Bearer ")) {
        let loopback = conn.as_ref().is_some_and(|c| c.peer.ip().is_loopback());
        if !(tls || state.allow_plain || loopback) {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                402,
                "the operator token is accepted over HTTPS or from loopback only",
            )));
        }
        use subtle::ConstantTimeEq;
        let valid = operator_ok
            && state
                .operator_token
                .as_deref()
                .is_some_and(|t| bool::from(t.as_bytes().ct_eq(token.trim().as_bytes())));
        if valid {
            return Ok(Caller::Operator);
        }
        tracing::info!(
            peer = ?conn.map(|c| c.peer),
            "sync request with a wrong (or here unaccepted) operator token refused"
        );
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            403,
            "operator token refused",
        )));
    }
    if !state.allow_plain && !tls {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            402,
            "the change feed is served over HTTPS only",
        )));
    }
    let signed = header
        .and_then(|v| v.strip_prefix("HS_PUBKEY "))
        .map(|params| {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            verify_signed_request(state, params, path)
        });
    let credentials = match signed {
        Some(Ok(id)) => Credentials::Valid(id),
        Some(Err(reason)) => Credentials::Refused(reason),
        None => authenticate(&state.http, req.headers(), conn),
    };
    let identity = match credentials {
        Credentials::Valid(id) => id,
        Credentials::None => {
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                402,
                "credentials of a follower identity are needed",
            )))
        }
        Credentials::Refused(reason) => {
            tracing::info!(%reason, "sync follower refused");
            return Err(Box::new(error(StatusCode::UNAUTHORIZED, 403, &reason)));
        }
    };
    let Some((_, allowed)) = state.allow.iter().find(|(id, _)| *id == identity) else {
        tracing::info!(%identity, "sync follower not in [[sync.allow]]");
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            402,
            &format!("{identity} may not follow this node"),
        )));
    };
    Ok(Caller::Follower(identity, allowed.clone()))
}

/// The prefixes asked for (`prefix=` parameters) that the caller may receive; a follower
/// asking for none gets all of its own.
fn wanted_prefixes(
    caller: &Caller,
    params: &[(String, String)],
) -> Result<Vec<Prefix>, Box<Response>> {
    let mut wanted = Vec::new();
    for (_, p) in params.iter().filter(|(k, _)| k == "prefix") {
        let prefix = Prefix::parse(p).map_err(|e| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                2,
                &format!("prefix {p:?}: {e}"),
            ))
        })?;
        if let Caller::Follower(identity, allowed) = caller {
            if !allowed.contains(&prefix) {
                tracing::info!(%identity, %prefix, "sync follower asked for a prefix it may not receive");
                return Err(Box::new(error(
                    StatusCode::FORBIDDEN,
                    402,
                    &format!("{identity} may not receive prefix {prefix}"),
                )));
            }
        }
        wanted.push(prefix);
    }
    if wanted.is_empty() {
        if let Caller::Follower(_, allowed) = caller {
            wanted = allowed.clone();
        }
    }
    Ok(wanted)
}

/// Authenticate a follower and work out the prefixes it asked for and may receive.
fn authorize(
    state: &FeedState,
    req: &Request,
    params: &[(String, String)],
) -> Result<Vec<Prefix>, Box<Response>> {
    let caller = authenticate_caller(state, req, false)?;
    wanted_prefixes(&caller, params)
}

/// A permit for one full-prefix scan, or the 503 that tells the client to come back.
pub(super) fn scan_permit(
    state: &FeedState,
) -> Result<tokio::sync::OwnedSemaphorePermit, Box<Response>> {
    state.scans.clone().try_acquire_owned().map_err(|_| {
        tracing::info!("sync scan refused: sync.max_concurrent_scans already running");
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            7,
            "too many snapshot and digest scans at once; retry later",
        );
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(SCAN_RETRY_AFTER_SECS),
        );
        Box::new(resp)
    })
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, 1, &e.to_string())
}

async fn changes(State(state): State<Arc<FeedState>>, req: Request) -> Response {
    let params = params(&req);
    let prefixes = match authorize(&state, &req, &params) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let num = |k: &str| param(&params, k).and_then(|v| v.parse::<u64>().ok());
    let after = num("after").unwrap_or(0);
    let limit = num("limit").unwrap_or(500).clamp(1, MAX_LIMIT as u64) as usize;
    let wait = Duration::from_millis(num("wait_ms").unwrap_or(0).min(MAX_WAIT_MS));
    let registry = state.http.engine().registry().clone();
    let deadline = Instant::now() + wait;
    // Long-poll: wait (polling every 50 ms) until there is something after `after`.
    let mut shutdown = state.shutdown.clone();
    while registry.last_seq() <= after && Instant::now() < deadline && !*shutdown.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            r = shutdown.changed() => if r.is_err() { break },
        }
    }
    let result = tokio::task::spawn_blocking(move || {
        crate::sync::feed::changes_after(&registry, after, limit, &prefixes)
    })
    .await;
    match result {
        Ok(Ok(Some(batch))) => Json(batch).into_response(),
        Ok(Ok(None)) => error(StatusCode::GONE, 10, "re-bootstrap"),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn snapshot(State(state): State<Arc<FeedState>>, req: Request) -> Response {
    let params = params(&req);
    let prefixes = match authorize(&state, &req, &params) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    if param(&params, "limit").is_some() {
        return snapshot_page(&state, &params, prefixes).await;
    }
    let permit = match scan_permit(&state) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let reg = state.http.engine().registry().clone();
    // The permit lives in the blocking task: a client that goes away does not free it while
    // the scan and the answer's encoding still run.
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let snapshot = crate::sync::feed::snapshot(&reg, &prefixes)?;
        Ok::<_, crate::store::StoreError>(serde_json::to_vec(&snapshot).unwrap_or_default())
    })
    .await;
    match result {
        Ok(Ok(body)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// `GET /sync/snapshot?limit=N[&after=K][&seq=S]`: one page (bounded work and memory, so no
/// scan permit); 410 "re-bootstrap" when the log no longer covers the changes after `S`.
async fn snapshot_page(
    state: &FeedState,
    params: &[(String, String)],
    prefixes: Vec<Prefix>,
) -> Response {
    let Some(limit) = param(params, "limit").and_then(|v| v.parse::<usize>().ok()) else {
        return error(StatusCode::BAD_REQUEST, 2, "limit must be a number");
    };
    let seq = match param(params, "seq").map(str::parse::<u64>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, 2, "seq must be a number"),
    };
    let after = param(params, "after")
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    let limit = limit.clamp(1, MAX_PAGE_RECORDS);
    let reg = state.http.engine().registry().clone();
    let result = tokio::task::spawn_blocking(move || {
        let page = crate::sync::feed::snapshot_page(&reg, &prefixes, after.as_deref(), seq, limit)?;
        Ok::<_, crate::store::StoreError>(page.map(|p| serde_json::to_vec(&p).unwrap_or_default()))
    })
    .await;
    match result {
        Ok(Ok(Some(body))) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Ok(Ok(None)) => error(StatusCode::GONE, 10, "re-bootstrap"),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn digest(State(state): State<Arc<FeedState>>, req: Request) -> Response {
    let params = params(&req);
    let caller = match authenticate_caller(&state, &req, true) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    if params.iter().filter(|(k, _)| k == "prefix").count() != 1 {
        return error(StatusCode::BAD_REQUEST, 2, "one prefix=P is required");
    }
    let prefix = match wanted_prefixes(&caller, &params) {
        Ok(mut p) if p.len() == 1 => p.remove(0),
        Ok(_) => return error(StatusCode::BAD_REQUEST, 2, "one prefix=P is required"),
        Err(resp) => return *resp,
    };
    let permit = match scan_permit(&state) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let reg = state.http.engine().registry().clone();
    let p = prefix.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        crate::sync::digest(&reg, &p)
    })
    .await;
    match result {
        Ok(Ok(d)) => Json(Digest {
            prefix: prefix.as_str().to_string(),
            records: d.records,
            sha256: d.sha256,
            seq: d.seq,
        })
        .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn status(State(state): State<Arc<FeedState>>, req: Request) -> Response {
    if let Err(resp) = authenticate_caller(&state, &req, true) {
        return *resp;
    }
    let links = crate::lock::lock(&state.links).clone();
    Json(SyncStatus {
        last_seq: state.http.engine().registry().last_seq(),
        links: links.into_values().collect(),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use base64::Engine as _;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::metrics::Metrics;
    use crate::model::SiteInfo;
    use crate::resolve::{init_prefix, Engine, Policy};
    use crate::store::{Registry, StoreOptions};

    const TOKEN: &str = "operator-token";
    const SECRET: &[u8] = b"follower secret";

    fn feed(dir: &std::path::Path, scans: usize, allow_plain: bool) -> Arc<FeedState> {
        let registry = Arc::new(Registry::open(dir, &StoreOptions::default()).unwrap());
        init_prefix(&registry, &Prefix::parse("88.100").unwrap(), 300, SECRET).unwrap();
        let http = Arc::new(HttpState {
            sessions: Default::default(),
            resolver: crate::resolve::Resolver::new(Engine::new(registry, Policy::default()), None),
            metrics: Metrics::new().unwrap(),
            max_body_bytes: 1 << 20,
            plain_http_auth: Default::default(),
            site: SiteInfo {
                data_format_version: 1,
                protocol_major: 2,
                protocol_minor: 11,
                serial: 1,
                primary_mask: 0,
                hash_option: 0,
                hash_filter: Vec::new(),
                attributes: Vec::new(),
                servers: Vec::new(),
            },
            auth_failures: std::sync::Mutex::new(crate::auth::pending::FailureLimiter::new(
                Default::default(),
            )),
        });
        let identity = crate::config::parse_identity("300:0.NA/88.100", Default::default());
        Arc::new(FeedState {
            http,
            allow: vec![(identity.unwrap(), vec![Prefix::parse("88.100").unwrap()])],
            allow_plain,
            links: Default::default(),
            shutdown: tokio::sync::watch::channel(false).1,
            scans: Arc::new(tokio::sync::Semaphore::new(scans)),
            operator_token: Some(TOKEN.into()),
        })
    }

    async fn get(state: &Arc<FeedState>, path: &str, auth: &str, peer: [u8; 4]) -> Response {
        let mut req = axum::http::Request::get(path)
            .header(axum::http::header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnInfo {
            peer: SocketAddr::from((peer, 40_000)),
            tls: false,
            client_cert: None,
        });
        router(state.clone()).oneshot(req).await.unwrap()
    }

    async fn json_of(resp: Response) -> Value {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    fn basic() -> String {
        let t =
            base64::engine::general_purpose::STANDARD.encode(b"300%3A0.NA/88.100:follower secret");
        format!("Basic {t}")
    }

    #[tokio::test]
    async fn hole8_scans_beyond_the_cap_get_503_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let state = feed(dir.path(), 1, true);
        let bearer = format!("Bearer {TOKEN}");
        // The one scan permit is busy (as if a bootstrap were running).
        let busy = state.scans.clone().try_acquire_owned().unwrap();
        for path in ["/sync/digest?prefix=88.100", "/sync/snapshot"] {
            let auth = if path.contains("digest") {
                bearer.clone()
            } else {
                basic()
            };
            let resp = get(&state, path, &auth, [127, 0, 0, 1]).await;
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(
                resp.headers().get(axum::http::header::RETRY_AFTER).unwrap(),
                &SCAN_RETRY_AFTER_SECS.to_string()
            );
        }
        // Strangers are refused before they could take a permit.
        let resp = get(
            &state,
            "/sync/digest?prefix=88.100",
            "Bearer nope",
            [127, 0, 0, 1],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        drop(busy);
        let resp = get(
            &state,
            "/sync/digest?prefix=88.100",
            &bearer,
            [127, 0, 0, 1],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = get(&state, "/sync/snapshot", &basic(), [127, 0, 0, 1]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        // Every permit is back once the scans are done.
        assert_eq!(state.scans.available_permits(), 1);
    }

    #[tokio::test]
    async fn hole8_operator_token_only_for_status_and_digest_and_not_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let state = feed(dir.path(), 2, false);
        let bearer = format!("Bearer {TOKEN}");
        // From loopback over plain HTTP: status and digests of any prefix.
        for path in ["/sync/status", "/sync/digest?prefix=88.200"] {
            let resp = get(&state, path, &bearer, [127, 0, 0, 1]).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
        }
        // Not for the feed itself, whose data only [[sync.allow]] identities receive.
        for path in ["/sync/changes?after=0", "/sync/snapshot"] {
            let resp = get(&state, path, &bearer, [127, 0, 0, 1]).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        // Never in clear across a network (without allow_plain).
        let resp = get(&state, "/sync/status", &bearer, [10, 0, 0, 5]).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let resp = get(&state, "/sync/status", "Bearer wrong", [127, 0, 0, 1]).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        // Without allow_plain and TLS, anything else is refused as before.
        let resp = get(&state, "/sync/status", &basic(), [127, 0, 0, 1]).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(json_of(resp).await["responseCode"], 402);
    }
}
