//! The HTTP front end: the Handle.Net-compatible REST API (`/api/...`), the proxy
//! (`GET /{handle}` → 302 to the URL value), `/metrics` and `/healthz`; the sync feed's
//! endpoints (`/sync/*`) are [`feed`].
//!
//! The handlers are thin: they parse the request, authenticate its credentials, call the
//! [`Resolver`] (reads) or its [`Engine`] (writes, on the blocking pool: they fsync before
//! answering), and map response codes to HTTP statuses in one place ([`http_status`]). The
//! JSON bodies they answer with are built by [`crate::wire::json`]; this layer only picks the
//! HTTP status and headers.
//!
//! # Files
//!
//! This file holds what every endpoint shares: [`HttpState`], the [`router`], CORS,
//! [`http_status`], the JSON and failure answers, request bodies (size and deadline) and
//! metrics. The endpoints and their parts sit beside it:
//! - `params.rs`: query parameters (`Params`) and the handle text of a path;
//! - `auth.rs`: the three credential schemes (HTTP Basic, REST sessions, TLS client
//!   certificates), the per-address failure budget, and the `/api/sessions` endpoints;
//! - `handles.rs`: `/api/handles` (GET, POST, PUT, DELETE of one handle; listings),
//!   `/api/prefixes` and `/api/site`;
//! - `proxy.rs`: the proxy (`GET /{handle}`: redirects and the HTML values page) and the home
//!   page;
//! - [`sessions`]: the REST session table; [`feed`]: the `/sync/*` endpoints.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::Value;

use crate::auth::Identity;
use crate::config::PlainHttpAuth;
use crate::metrics::Metrics;
use crate::model::{HandleValue, ResponseCode, SiteInfo};
use crate::resolve::{Engine, Query, ResolveError, Resolver};
use crate::wire::json as hjson;

use auth::{session_challenge, sessions_api, this_session};
use handles::{handle_api, list_handles, prefixes, site};
use params::Params;
use proxy::{home, proxy};

pub(crate) use auth::{authenticate, Credentials};
pub use proxy::REDIRECT_SCHEMES;

mod auth;
mod backup;
pub mod feed;
mod handles;
mod params;
mod proxy;
pub mod sessions;

/// What the accept loop knows about a connection, attached to every request on it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The TLS client's certificate (DER), when it presented one.
    pub client_cert: Option<Arc<[u8]>>,
}

/// Shared state of the HTTP front end.
pub struct HttpState {
    /// REST API sessions (`Authorization: Handle sessionId=...`).
    pub sessions: sessions::Sessions,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub plain_http_auth: PlainHttpAuth,
    /// The node's own HS_SITE, for `/api/site`.
    pub site: SiteInfo,
    /// Every read goes through it, and writes through its engine (with the recursor on
    /// recursive nodes: public GETs for identifiers not homed here go through the hierarchy).
    pub resolver: Resolver,
    /// Failed authentications per client address (as on the native front end): a spent
    /// budget refuses credentials unchecked until it refills.
    pub auth_failures: std::sync::Mutex<crate::auth::pending::FailureLimiter>,
}

impl HttpState {
    /// The registry's engine: writes, listings and authentication.
    pub fn engine(&self) -> &Engine {
        self.resolver.engine()
    }
}

/// The router. Connection info must be inserted into each request's extensions by the caller
/// (see [`crate::server::serve_http`]); without it a request counts as plain HTTP from an
/// unknown peer.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/handles", any(list_handles))
        .route("/api/handles/", any(list_handles))
        .route("/api/handles/{*handle}", any(handle_api))
        .route("/api/prefixes", any(prefixes))
        .route("/api/site", any(site))
        .route("/api/sessions", any(sessions_api))
        .route("/api/sessions/this", any(this_session))
        .route("/api/{*rest}", any(unknown_api))
        .route("/", get(home))
        .route("/{*handle}", get(proxy))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            session_challenge,
        ))
        .layer(axum::middleware::map_response(cors))
        .with_state(state)
}

/// CORS for browser clients: any origin, no credentials (cookies); scripts may read the
/// session challenge and redirect targets.
async fn cors(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate, Location"),
    );
    resp
}

/// HTTP status for a Handle response code (Handle.Net's `statusCodeFromResponse`).
pub fn http_status(code: ResponseCode, is_resolution: bool) -> StatusCode {
    use ResponseCode as R;
    match code {
        R::Success => StatusCode::OK,
        R::ValuesNotFound if is_resolution => StatusCode::OK,
        R::ValuesNotFound => StatusCode::BAD_REQUEST,
        R::ServiceReferral | R::PrefixReferral => StatusCode::MULTIPLE_CHOICES,
        R::HandleNotFound => StatusCode::NOT_FOUND,
        R::HandleAlreadyExists | R::ValueAlreadyExists => StatusCode::CONFLICT,
        R::ProtocolError | R::InvalidHandle | R::InvalidValue | R::ServerNotResponsible => {
            StatusCode::BAD_REQUEST
        }
        R::OperationNotSupported => StatusCode::NOT_IMPLEMENTED,
        R::ServerTooBusy | R::ServerBackup => StatusCode::SERVICE_UNAVAILABLE,
        R::AuthenticationNeeded => StatusCode::UNAUTHORIZED,
        R::InvalidAdmin
        | R::InsufficientPermissions
        | R::AuthenticationFailed
        | R::InvalidCredential => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON answer, honouring `pretty` and `callback` (JSONP).
fn json_response(status: StatusCode, body: &Value, params: &Params) -> Response {
    let text = if params.flag("pretty").unwrap_or(false) {
        serde_json::to_string_pretty(body)
    } else {
        serde_json::to_string(body)
    }
    .unwrap_or_else(|_| "{}".into());
    if let Some(cb) = params.get("callback").filter(|cb| {
        !cb.is_empty()
            && cb.len() <= 128
            && cb
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.$".contains(c))
    }) {
        return (
            status,
            [(header::CONTENT_TYPE, "application/javascript")],
            format!("{cb}({text});"),
        )
            .into_response();
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        text,
    )
        .into_response()
}

/// The answer to a failure of the resolver or the engine: the envelope its code calls for
/// (an empty `values` for a resolution without the values asked for, the referral's values),
/// the status [`http_status`] gives, and a `Basic` challenge when credentials are needed.
fn failure_response(
    f: &ResolveError,
    handle: Option<&str>,
    resolution: bool,
    params: &Params,
) -> Response {
    let code = f.code();
    let (rc, message) = (code.code(), f.to_string());
    let message = message.as_str();
    let body = match code {
        ResponseCode::ValuesNotFound if resolution => {
            hjson::no_values_response(rc, handle, message)
        }
        ResponseCode::PrefixReferral | ResponseCode::ServiceReferral => {
            hjson::referral_response(rc, handle, message, f.referral())
        }
        _ => hjson::error_response(rc, handle, message),
    };
    let mut resp = json_response(http_status(code, resolution), &body, params);
    if code == ResponseCode::AuthenticationNeeded {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"handle\""),
        );
    }
    resp
}

fn observe(state: &HttpState, op: &str, code: ResponseCode, started: Instant) {
    state
        .metrics
        .requests
        .with_label_values(&["http", op, code.label()])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&["http", op])
        .observe(started.elapsed().as_secs_f64());
}

/// A request this front end refuses for its shape, before the engine sees it: its body,
/// method, path, parameters or JSON. The one place where `server::http` itself picks a
/// response code ([`RequestError::code`]) and, for the conditions HTTP has statuses of its
/// own for, the status ([`RequestError::status`]); the message is the `Display`.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A method `/api/handles/{handle}` has no meaning for.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A method another endpoint (`/api/sessions`) has no meaning for.
    #[error("method {0} is not supported here")]
    MethodNotSupported(Method),
    #[error("Unknown HTTP API endpoint {0}")]
    UnknownEndpoint(String),
    #[error("the prefix parameter is required")]
    PrefixRequired,
    /// The `prefix` parameter of a listing is not a prefix.
    #[error("{0}")]
    InvalidPrefix(crate::model::HandleError),
    /// A numeric parameter (`page`, `pageSize`) that is not a number.
    #[error("{0} must be a number")]
    NotANumber(&'static str),
    #[error("index {0:?} is not a number")]
    IndexNotNumber(String),
    #[error("the index parameters must name exactly the indexes of the values sent")]
    IndexesDoNotMatchValues,
    #[error("Content-Type must be application/json")]
    NotJson,
    #[error("malformed JSON: {0}")]
    MalformedJson(serde_json::Error),
    #[error("body names handle {named:?}, the URL names {url:?}")]
    BodyNamesOtherHandle { named: String, url: String },
    /// The values of a PUT body do not read as values.
    #[error("{0}")]
    InvalidValues(hjson::JsonError),
}

impl RequestError {
    /// The response code of the answer (and of the metrics).
    fn code(&self) -> ResponseCode {
        use RequestError as E;
        match self {
            E::BodyTimeout
            | E::BodyTooLarge(_)
            | E::MethodNotAllowed
            | E::MethodNotSupported(_)
            | E::UnknownEndpoint(_)
            | E::PrefixRequired
            | E::NotANumber(_)
            | E::NotJson
            | E::MalformedJson(_)
            | E::BodyNamesOtherHandle { .. } => ResponseCode::ProtocolError,
            E::InvalidPrefix(_) => ResponseCode::InvalidHandle,
            E::IndexNotNumber(_) | E::IndexesDoNotMatchValues | E::InvalidValues(_) => {
                ResponseCode::InvalidValue
            }
        }
    }

    /// The HTTP status: [`http_status`] of the code, except where HTTP names the condition.
    fn status(&self) -> StatusCode {
        use RequestError as E;
        match self {
            E::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            E::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            E::MethodNotAllowed | E::MethodNotSupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            E::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
            _ => http_status(self.code(), false),
        }
    }
}

/// The answer to a refused request (see [`RequestError`]), with its code for the metrics.
fn rejected(e: &RequestError, handle: Option<&str>, params: &Params) -> (ResponseCode, Response) {
    let code = e.code();
    let body = hjson::error_response(code.code(), handle, &e.to_string());
    (code, json_response(e.status(), &body, params))
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ResolveError> + Send + 'static,
) -> Result<T, ResolveError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "engine task failed");
        Err(ResolveError::Internal)
    })
}

/// The largest body read before the client is authenticated: an anonymous POST resolution's
/// parameters, a REST session's answer, the dropped body of a refused write (see
/// `refused_before_body`). Everything else waits for valid credentials, then gets
/// `http.max_body_bytes`.
pub const UNAUTHENTICATED_BODY_BYTES: usize = 16 * 1024;

async fn read_body(state: &HttpState, body: Body) -> Result<Bytes, RequestError> {
    read_body_at_most(body, state.max_body_bytes).await
}

/// The whole body, refused when larger than `limit` or when it does not arrive in time (the
/// listener gives every body the deadline of `http.request_timeout_secs`, see
/// [`crate::server::DeadlineBody`], so a client trickling a body cannot hold its connection).
async fn read_body_at_most(body: Body, limit: usize) -> Result<Bytes, RequestError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if crate::server::BodyDeadlinePassed::caused(&e) => Err(RequestError::BodyTimeout),
        Err(_) => Err(RequestError::BodyTooLarge(limit)),
    }
}

/// The answer to a request refused before its body is read (a write whose credentials are
/// missing or refused, or sent to a read-only mirror): the body is never parsed. A small
/// declared body (`Content-Length` ≤ [`UNAUTHENTICATED_BODY_BYTES`]) is read and dropped so a
/// keep-alive client (pyhandle reuses its connection) can go on; anything larger, or of
/// unknown length, is not read at all and the answer says `Connection: close` (hyper then
/// closes the connection rather than take the unread body for the next request).
async fn refused_before_body(
    (code, mut resp): (ResponseCode, Response),
    headers: &HeaderMap,
    body: Body,
) -> (ResponseCode, Response) {
    let small = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n <= UNAUTHENTICATED_BODY_BYTES);
    let drained = small
        && read_body_at_most(body, UNAUTHENTICATED_BODY_BYTES)
            .await
            .is_ok();
    if !drained {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    (code, resp)
}

fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, PUT, DELETE, POST, OPTIONS",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type",
            ),
        ],
    )
        .into_response()
}

/// Resolution for GET and the proxy, through the [`Resolver`]: a recursive node answers
/// public queries for identifiers it does not home through the hierarchy (and its cache) to
/// clients `recursion.allow` lists (503 when `recursion.max_concurrent` lookups are in
/// flight); everything else, and every other client (also one whose address is unknown),
/// gets the registry's answer.
async fn resolve_for_client(
    state: &HttpState,
    query: &Query,
    identity: Option<&Identity>,
    client: Option<IpAddr>,
) -> Result<Vec<HandleValue>, ResolveError> {
    let now = crate::model::unix_now();
    state
        .resolver
        .resolve(query, identity, client, now)
        .await
        .outcome
}

async fn unknown_api(req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    let e = RequestError::UnknownEndpoint(req.uri().path().to_string());
    rejected(&e, None, &params).1
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let reg = state.engine().registry();
    state.metrics.records.set(reg.record_count() as i64);
    state.metrics.last_seq.set(reg.last_seq() as i64);
    state.metrics.store_bytes.set(reg.size_on_disk() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
