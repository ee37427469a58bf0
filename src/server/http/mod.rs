//! The HTTP front end: the Handle.Net-compatible REST API (`/api/...`), the proxy
//! (`GET /{handle}` → 302 to the URL value), `/metrics` and `/healthz`; the sync feed's
//! endpoints (`/sync/*`) are [`feed`].
//!
//! The handlers are thin: they parse the request, authenticate HTTP Basic credentials, call
//! the [`Engine`] (writes on the blocking pool: they fsync before answering), and map response
//! codes to HTTP statuses in one place ([`http_status`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::config::PlainHttpAuth;
use crate::metrics::Metrics;
use crate::model::{types, HandleValue, Prefix, ResponseCode, SiteInfo};
use crate::resolve::{Engine, Failure, Overwrite, Query, Resolver, WriteOutcome};
use crate::wire::json as hjson;

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

/// Query parameters in order, `+` decoded as space, repeated keys kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Params {
        let mut out = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            out.push((decode(k), decode(v)));
        }
        Params(out)
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Handle.Net booleans: `true`, `yes` or empty mean true.
    fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| {
            v.is_empty() || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
        })
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

fn failure_response(
    f: &Failure,
    handle: Option<&str>,
    resolution: bool,
    params: &Params,
) -> Response {
    let mut body = hjson::error_response(f.code.code(), handle, &f.message);
    if f.code == ResponseCode::ValuesNotFound && resolution {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("values".into(), json!([]));
        }
    }
    if matches!(
        f.code,
        ResponseCode::PrefixReferral | ResponseCode::ServiceReferral
    ) {
        if let Some(obj) = body.as_object_mut() {
            let values: Vec<Value> = f.referral.iter().map(hjson::value_to_json).collect();
            obj.insert("referralHandle".into(), json!(""));
            obj.insert("values".into(), json!(values));
        }
    }
    let mut resp = json_response(http_status(f.code, resolution), &body, params);
    if f.code == ResponseCode::AuthenticationNeeded {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"handle\""),
        );
    }
    resp
}

/// Credentials presented with a request.
pub(crate) enum Credentials {
    None,
    Valid(Identity),
    /// Present but refused; answered with 401 so clients (pyhandle) see an authentication
    /// error, never with the protected data.
    Refused(String),
}

/// Authenticate `Authorization: Basic base64(pct(index:handle) ":" secret)`.
pub(crate) fn authenticate(
    state: &HttpState,
    headers: &HeaderMap,
    conn: Option<ConnInfo>,
) -> Credentials {
    let peer = conn.as_ref().map(|c| c.peer.ip());
    let presented = headers.contains_key(header::AUTHORIZATION);
    let now = Instant::now();
    let lock = || {
        state
            .auth_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    };
    if let (true, Some(ip)) = (presented, peer) {
        if !lock().allows(ip, now) {
            let reason = "too many failed authentications from this address; try again later";
            crate::audit::auth_failure("http", ip, None, reason);
            return Credentials::Refused(reason.into());
        }
    }
    let credentials = check_credentials(state, headers, conn);
    if let (Credentials::Refused(reason), Some(ip)) = (&credentials, peer) {
        lock().failed(ip, now);
        crate::audit::auth_failure("http", ip, None, reason);
    }
    credentials
}

/// The credentials of a request, checked (see [`authenticate`], which rates failures).
fn check_credentials(
    state: &HttpState,
    headers: &HeaderMap,
    conn: Option<ConnInfo>,
) -> Credentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Refused("unreadable Authorization header".into());
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return match handle_scheme(value) {
            Some(params) if params.client_cert => by_client_cert(state, conn.as_ref()),
            Some(_) if !credentials_allowed(state, conn.as_ref()) => {
                Credentials::Refused("credentials are accepted over HTTPS only".into())
            }
            Some(params) => by_session(state, &params),
            None => Credentials::Refused(
                "only the Basic and Handle authentication schemes are supported".into(),
            ),
        };
    };
    if !credentials_allowed(state, conn.as_ref()) {
        return Credentials::Refused("credentials are accepted over HTTPS only".into());
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return Credentials::Refused("Basic credentials are not valid base64".into());
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return Credentials::Refused("Basic credentials have no ':'".into());
    };
    let (user, secret) = (&decoded[..colon], &decoded[colon + 1..]);
    let user = percent_decode_str(&String::from_utf8_lossy(user))
        .decode_utf8_lossy()
        .into_owned();
    let case = state.engine().policy().suffix_case;
    let Ok(id) = crate::auth::Identity::parse(&user, case, crate::auth::IndexRule::Optional) else {
        return Credentials::Refused(format!("{user:?} is not index:handle"));
    };
    match state
        .engine()
        .authenticate_secret(&id.handle, id.index, secret)
    {
        Ok(identity) => Credentials::Valid(identity),
        Err(f) => {
            tracing::info!(user = %user, reason = %f.message, "HTTP authentication refused");
            Credentials::Refused(f.message)
        }
    }
}

/// Do credentials count on this connection: over TLS always, over plain HTTP as
/// `http.plain_http_auth` says.
fn credentials_allowed(state: &HttpState, conn: Option<&ConnInfo>) -> bool {
    conn.is_some_and(|c| c.tls)
        || match state.plain_http_auth {
            PlainHttpAuth::Always => true,
            PlainHttpAuth::Loopback => conn.is_some_and(|c| c.peer.ip().is_loopback()),
            PlainHttpAuth::Never => false,
        }
}

/// The parameters of an `Authorization: Handle k="v", ...` header (Handle.Net's scheme).
#[derive(Debug, Default, PartialEq, Eq)]
struct HandleScheme {
    client_cert: bool,
    session_id: Option<String>,
    /// The identity a session answer is for, `index:handle`.
    id: Option<String>,
    /// `HS_PUBKEY` or `HS_SECKEY`.
    kind: Option<String>,
    /// Base64.
    cnonce: Option<String>,
    alg: Option<String>,
    /// Base64.
    signature: Option<String>,
}

/// Parse the `Handle` authorization scheme (case-insensitive name and keys, values quoted or
/// not, separated by commas); `None` for other schemes.
fn handle_scheme(value: &str) -> Option<HandleScheme> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Handle") {
        return None;
    }
    let mut params = HandleScheme::default();
    for param in rest.split(',') {
        let Some((key, val)) = param.split_once('=') else {
            continue;
        };
        let val = val.trim().trim_matches('"').to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "clientcert" => params.client_cert = val.eq_ignore_ascii_case("true"),
            "sessionid" => params.session_id = Some(val),
            "id" => params.id = Some(val),
            "type" => params.kind = Some(val),
            "cnonce" => params.cnonce = Some(val),
            "alg" => params.alg = Some(val),
            "signature" => params.signature = Some(val),
            _ => {}
        }
    }
    Some(params)
}

/// Authenticate by a REST session: the answer in `params` (identity, key type, cnonce,
/// signature) proves an identity and binds it to the session; the session id alone then
/// stands for it.
fn by_session(state: &HttpState, params: &HandleScheme) -> Credentials {
    let Some(session_id) = &params.session_id else {
        return Credentials::Refused(
            "Handle authentication needs sessionId (or clientCert=\"true\")".into(),
        );
    };
    let Some((session, nonce)) = state.sessions.touch(session_id) else {
        return Credentials::Refused(format!("no session {session_id:?} (unknown or expired)"));
    };
    let Some(id) = &params.id else {
        return match session.identity {
            Some(identity) => Credentials::Valid(identity),
            None => Credentials::Refused(format!("session {session_id:?} is not authenticated")),
        };
    };
    match session_answer(state, id, params, &nonce) {
        Ok(identity) => {
            state.sessions.authenticate(session_id, identity.clone());
            Credentials::Valid(identity)
        }
        Err(reason) => {
            tracing::info!(user = %id, %reason, "session authentication refused");
            Credentials::Refused(reason)
        }
    }
}

/// Verify a session answer for `id` against the session's `nonce`.
fn session_answer(
    state: &HttpState,
    id: &str,
    params: &HandleScheme,
    nonce: &[u8],
) -> Result<Identity, String> {
    use crate::auth::{KeyKind, SessionAnswer};
    let b64 = |what: &str, v: &Option<String>| -> Result<Vec<u8>, String> {
        let v = v
            .as_deref()
            .ok_or_else(|| format!("the session answer has no {what}"))?;
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| format!("the session answer's {what} is not base64"))
    };
    let kind = match params.kind.as_deref() {
        Some(t) if t.eq_ignore_ascii_case(types::HS_PUBKEY) => KeyKind::Public,
        Some(t) if t.eq_ignore_ascii_case(types::HS_SECKEY) => KeyKind::Secret,
        other => {
            return Err(format!(
                "session answer type {other:?} is not HS_PUBKEY or HS_SECKEY"
            ))
        }
    };
    let cnonce = b64("cnonce", &params.cnonce)?;
    let signature = b64("signature", &params.signature)?;
    let answer = SessionAnswer {
        kind,
        alg: params.alg.as_deref().unwrap_or("SHA1"),
        nonce,
        cnonce: &cnonce,
        signature: &signature,
    };
    state
        .engine()
        .authenticate_session_answer(id, &answer)
        .map_err(|f| f.message)
}

/// Authenticate by the TLS client certificate of the connection (Handle.Net's
/// `Authorization: Handle clientCert="true"`): the identity its subject names, when its key is
/// an HS_PUBKEY value there.
fn by_client_cert(state: &HttpState, conn: Option<&ConnInfo>) -> Credentials {
    let Some(der) = conn.filter(|c| c.tls).and_then(|c| c.client_cert.as_ref()) else {
        return Credentials::Refused(
            "clientCert=\"true\" but no client certificate was presented over HTTPS".into(),
        );
    };
    let claim = match crate::auth::read_client_cert(der) {
        Ok(claim) => claim,
        Err(e) => return Credentials::Refused(e.to_string()),
    };
    match state.engine().authenticate_public_key(&claim) {
        Ok(identity) => Credentials::Valid(identity),
        Err(f) => {
            tracing::info!(user = %claim.identity, reason = %f.message, "client certificate refused");
            Credentials::Refused(f.message)
        }
    }
}

fn refused_response(handle: Option<&str>, reason: &str, params: &Params) -> Response {
    let body = hjson::error_response(
        ResponseCode::AuthenticationFailed.code(),
        handle,
        &format!("Authentication failed: {reason}"),
    );
    let mut resp = json_response(StatusCode::UNAUTHORIZED, &body, params);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"handle\""),
    );
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

/// The handle text of `/api/handles/{handle}`, percent-decoded from the raw path (so `%2F`
/// and `/` both work and `+` stays `+`).
fn handle_from_path(path: &str, strip: &str) -> String {
    let raw = path.strip_prefix(strip).unwrap_or(path);
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "engine task failed");
        Err(Failure::new(ResponseCode::Error, "internal error"))
    })
}

/// A request body that could not be read: too large (413) or too slow (408: the listener
/// gives every body the deadline of `http.request_timeout_secs`, see
/// [`crate::server::DeadlineBody`], so a client trickling a body cannot hold its connection).
struct BodyError {
    status: StatusCode,
    failure: Failure,
}

/// The largest body read before the client is authenticated: an anonymous POST resolution's
/// parameters, a REST session's answer, the dropped body of a refused write (see
/// `refused_before_body`). Everything else waits for valid credentials, then gets
/// `http.max_body_bytes`.
pub const UNAUTHENTICATED_BODY_BYTES: usize = 16 * 1024;

async fn read_body(state: &HttpState, body: Body) -> Result<Bytes, BodyError> {
    read_body_at_most(body, state.max_body_bytes).await
}

async fn read_body_at_most(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if crate::server::BodyDeadlinePassed::caused(&e) => Err(BodyError {
            status: StatusCode::REQUEST_TIMEOUT,
            failure: Failure::new(
                ResponseCode::ProtocolError,
                "request body not received in time",
            ),
        }),
        Err(_) => Err(BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            failure: Failure::new(
                ResponseCode::ProtocolError,
                format!("request body is larger than {limit} bytes"),
            ),
        }),
    }
}

fn body_error(e: BodyError, handle: Option<&str>, params: &Params) -> (ResponseCode, Response) {
    let body = hjson::error_response(e.failure.code.code(), handle, &e.failure.message);
    (e.failure.code, json_response(e.status, &body, params))
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

/// `/api/handles/{handle}`: GET resolves; PUT creates/adds; DELETE deletes/removes; POST with
/// a JSON body is a GET with its parameters in the body.
async fn handle_api(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let (parts, body) = req.into_parts();
    let mut params = Params::parse(parts.uri.query());
    let text = handle_from_path(parts.uri.path(), "/api/handles/");
    // A write to an identifier this node does not home, or holds as a read-only mirror, is
    // refused up front (before credentials, which it may not hold), naming the primary.
    if matches!(parts.method, Method::PUT | Method::DELETE) {
        if let Some(f) = state
            .engine()
            .parse_handle(&text)
            .ok()
            .and_then(|h| state.engine().check_write_target(&h).err())
        {
            observe(&state, "put", f.code, started);
            let resp = failure_response(&f, Some(&text), false, &params);
            return refused_before_body((f.code, resp), &parts.headers, body)
                .await
                .1;
        }
    }
    let client = conn.as_ref().map(|c| c.peer.ip());
    let (op, resp) = match parts.method {
        Method::GET | Method::HEAD => {
            let credentials = authenticate(&state, &parts.headers, conn);
            (
                "resolve",
                get_handle(&state, credentials, client, &text, &params).await,
            )
        }
        // A resolution with its parameters in the body: the credentials are checked before
        // the body is read, and an anonymous one gets a small body only.
        Method::POST => match authenticate(&state, &parts.headers, conn) {
            Credentials::Refused(reason) => {
                let refused = (
                    ResponseCode::AuthenticationFailed,
                    refused_response(Some(&text), &reason, &params),
                );
                (
                    "resolve",
                    refused_before_body(refused, &parts.headers, body).await,
                )
            }
            credentials => {
                let limit = match credentials {
                    Credentials::Valid(_) => state.max_body_bytes,
                    _ => UNAUTHENTICATED_BODY_BYTES.min(state.max_body_bytes),
                };
                match read_body_at_most(body, limit).await {
                    Err(e) => ("resolve", body_error(e, Some(&text), &params)),
                    Ok(bytes) => {
                        if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&bytes) {
                            for (k, v) in obj {
                                let vals: Vec<Value> = match v {
                                    Value::Array(a) => a,
                                    other => vec![other],
                                };
                                for v in vals {
                                    let s = match v {
                                        Value::String(s) => s,
                                        other => other.to_string(),
                                    };
                                    params.0.push((k.clone(), s));
                                }
                            }
                        }
                        (
                            "resolve",
                            get_handle(&state, credentials, client, &text, &params).await,
                        )
                    }
                }
            }
        },
        Method::PUT => {
            let r = put_handle(&state, &parts.headers, conn, text, &params, body).await;
            ("put", r)
        }
        Method::DELETE => {
            let r = delete_handle(&state, &parts.headers, conn, text, &params, body).await;
            ("delete", r)
        }
        Method::OPTIONS => ("options", (ResponseCode::Success, preflight())),
        _ => {
            let f = Failure::new(ResponseCode::ProtocolError, "method not allowed");
            let body = hjson::error_response(4, Some(&text), &f.message);
            (
                "other",
                (
                    f.code,
                    json_response(StatusCode::METHOD_NOT_ALLOWED, &body, &params),
                ),
            )
        }
    };
    observe(&state, op, resp.0, started);
    resp.1
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

async fn get_handle(
    state: &HttpState,
    credentials: Credentials,
    client: Option<IpAddr>,
    text: &str,
    params: &Params,
) -> (ResponseCode, Response) {
    let handle = match state.engine().parse_handle(text) {
        Ok(h) => h,
        Err(f) => return (f.code, failure_response(&f, Some(text), true, params)),
    };
    let identity = match credentials {
        Credentials::Refused(reason) => {
            return (
                ResponseCode::AuthenticationFailed,
                refused_response(Some(text), &reason, params),
            )
        }
        Credentials::Valid(id) => Some(id),
        Credentials::None => None,
    };
    let mut indexes = Vec::new();
    for i in params.all("index") {
        match i.parse::<u32>() {
            Ok(i) => indexes.push(i),
            Err(_) => {
                let f = Failure::new(
                    ResponseCode::InvalidValue,
                    format!("index {i:?} is not a number"),
                );
                return (f.code, failure_response(&f, Some(text), true, params));
            }
        }
    }
    let query = Query {
        handle,
        indexes,
        types: params
            .all("type")
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        public_only: params.flag("publicOnly").unwrap_or(identity.is_none()),
        refer: !params.flag("doNotRefer").unwrap_or(false),
    };
    match resolve_for_client(state, &query, identity.as_ref(), client).await {
        Ok(values) => {
            let body = hjson::handle_response(1, text, &values);
            (
                ResponseCode::Success,
                json_response(StatusCode::OK, &body, params),
            )
        }
        Err(f) => (f.code, failure_response(&f, Some(text), true, params)),
    }
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
) -> Result<Vec<HandleValue>, Failure> {
    let now = crate::model::unix_now();
    state
        .resolver
        .resolve(query, identity, client, now)
        .await
        .outcome
}

/// Why a write was not authenticated.
enum Refusal {
    Missing,
    Refused(String),
}

/// Authenticate a write: missing or refused credentials are both answered with 401.
fn require_identity(
    state: &HttpState,
    headers: &HeaderMap,
    conn: Option<ConnInfo>,
) -> Result<Identity, Refusal> {
    match authenticate(state, headers, conn) {
        Credentials::Valid(id) => Ok(id),
        Credentials::Refused(reason) => Err(Refusal::Refused(reason)),
        Credentials::None => Err(Refusal::Missing),
    }
}

fn refusal_response(refusal: Refusal, text: &str, params: &Params) -> (ResponseCode, Response) {
    match refusal {
        Refusal::Refused(reason) => (
            ResponseCode::AuthenticationFailed,
            refused_response(Some(text), &reason, params),
        ),
        Refusal::Missing => {
            let f = Failure::new(ResponseCode::AuthenticationNeeded, "Authentication needed");
            (f.code, failure_response(&f, Some(text), false, params))
        }
    }
}

fn write_response(
    result: Result<WriteOutcome, Failure>,
    text: &str,
    params: &Params,
) -> (ResponseCode, Response) {
    match result {
        Ok(outcome) => {
            let status = if outcome.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let body = json!({"responseCode": 1, "handle": text});
            (ResponseCode::Success, json_response(status, &body, params))
        }
        Err(f) => (f.code, failure_response(&f, Some(text), false, params)),
    }
}

async fn put_handle(
    state: &Arc<HttpState>,
    headers: &HeaderMap,
    conn: Option<ConnInfo>,
    text: String,
    params: &Params,
    body: Body,
) -> (ResponseCode, Response) {
    // Credentials first: the body of a request that is not authenticated is never read nor
    // parsed (see `refused_before_body`).
    let peer = conn.as_ref().map(|c| c.peer.ip());
    let identity = match require_identity(state, headers, conn) {
        Ok(id) => id,
        Err(r) => {
            return refused_before_body(refusal_response(r, &text, params), headers, body).await
        }
    };
    // Then the whole body, before any other answer: answering before it is drained would
    // break keep-alive connections (pyhandle reuses its connection).
    let bytes = match read_body(state, body).await {
        Ok(b) => b,
        Err(e) => return body_error(e, Some(&text), params),
    };
    let fail = |f: Failure, text: &str| (f.code, failure_response(&f, Some(text), false, params));
    let handle = if params.flag("mintNewSuffix").unwrap_or(false) {
        match state.engine().mint_handle(&text) {
            Ok(h) => h,
            Err(f) => return fail(f, &text),
        }
    } else {
        match state.engine().parse_handle(&text) {
            Ok(h) => h,
            Err(f) => return fail(f, &text),
        }
    };
    let text = handle.as_str().to_string();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return fail(
            Failure::new(
                ResponseCode::ProtocolError,
                "Content-Type must be application/json",
            ),
            &text,
        );
    }
    let json: Value = match serde_json::from_slice(&bytes) {
        Ok(j) => j,
        Err(e) => {
            return fail(
                Failure::new(ResponseCode::ProtocolError, format!("malformed JSON: {e}")),
                &text,
            )
        }
    };
    let values = match hjson::values_from_request_body(&json) {
        Ok((Some(named), _))
            if state.engine().parse_handle(&named).ok().as_ref() != Some(&handle) =>
        {
            return fail(
                Failure::new(
                    ResponseCode::ProtocolError,
                    format!("body names handle {named:?}, the URL names {text:?}"),
                ),
                &text,
            )
        }
        Ok((_, values)) => values,
        Err(e) => {
            return fail(
                Failure::new(ResponseCode::InvalidValue, e.to_string()),
                &text,
            )
        }
    };
    let overwrite = params.flag("overwrite").unwrap_or(true);
    let index_params: Vec<&str> = params.all("index").collect();
    let engine = state.engine().clone();
    let who = identity.to_string();
    let written = crate::audit::indexes(values.iter().map(|v| v.index));
    let op = if index_params.is_empty() {
        "create"
    } else {
        "add"
    };
    let result = if index_params.is_empty() {
        let mode = if overwrite {
            Overwrite::Yes
        } else {
            Overwrite::No
        };
        run_blocking(move || engine.create(&identity, &handle, values, mode)).await
    } else {
        if !index_params
            .iter()
            .any(|i| i.eq_ignore_ascii_case("various"))
        {
            let mut wanted: Vec<u32> = Vec::new();
            for i in &index_params {
                match i.parse() {
                    Ok(i) => wanted.push(i),
                    Err(_) => {
                        return fail(
                            Failure::new(
                                ResponseCode::InvalidValue,
                                format!("index {i:?} is not a number"),
                            ),
                            &text,
                        )
                    }
                }
            }
            let mut given: Vec<u32> = values.iter().map(|v: &HandleValue| v.index).collect();
            wanted.sort_unstable();
            wanted.dedup();
            given.sort_unstable();
            if wanted != given {
                return fail(
                    Failure::new(
                        ResponseCode::InvalidValue,
                        "the index parameters must name exactly the indexes of the values sent",
                    ),
                    &text,
                );
            }
        }
        run_blocking(move || engine.add_values(&identity, &handle, values, overwrite)).await
    };
    audit_write(peer, &who, op, &text, &written, &result);
    write_response(result, &text, params)
}

/// One audit line for a REST write.
fn audit_write(
    peer: Option<IpAddr>,
    who: &str,
    op: &str,
    handle: &str,
    indexes: &str,
    result: &Result<WriteOutcome, Failure>,
) {
    let origin = match peer {
        Some(ip) => crate::audit::Origin::Client("rest", ip),
        None => crate::audit::Origin::Local("rest"),
    };
    let result = match result {
        Ok(_) => "ok".to_string(),
        Err(f) => format!("RC {}: {}", f.code.code(), f.message),
    };
    crate::audit::write(origin, who, op, handle, indexes, &result);
}

async fn delete_handle(
    state: &Arc<HttpState>,
    headers: &HeaderMap,
    conn: Option<ConnInfo>,
    text: String,
    params: &Params,
    body: Body,
) -> (ResponseCode, Response) {
    let peer = conn.as_ref().map(|c| c.peer.ip());
    let identity = match require_identity(state, headers, conn) {
        Ok(id) => id,
        Err(r) => {
            return refused_before_body(refusal_response(r, &text, params), headers, body).await
        }
    };
    if let Err(e) = read_body(state, body).await {
        return body_error(e, Some(&text), params);
    }
    let fail = |f: Failure| (f.code, failure_response(&f, Some(&text), false, params));
    let handle = match state.engine().parse_handle(&text) {
        Ok(h) => h,
        Err(f) => return fail(f),
    };
    let mut indexes = Vec::new();
    for i in params.all("index") {
        match i.parse::<u32>() {
            Ok(i) => indexes.push(i),
            Err(_) => {
                return fail(Failure::new(
                    ResponseCode::InvalidValue,
                    format!("index {i:?} is not a number"),
                ))
            }
        }
    }
    let engine = state.engine().clone();
    let who = identity.to_string();
    let (op, removed) = if indexes.is_empty() {
        ("delete", String::new())
    } else {
        ("remove", crate::audit::indexes(indexes.iter().copied()))
    };
    let result = if indexes.is_empty() {
        run_blocking(move || engine.delete(&identity, &handle)).await
    } else {
        run_blocking(move || engine.remove_values(&identity, &handle, &indexes)).await
    };
    audit_write(peer, &who, op, &text, &removed, &result);
    write_response(
        result.map(|o| WriteOutcome {
            created: false,
            ..o
        }),
        &text,
        params,
    )
}

/// `GET /api/handles?prefix=P[&page=N&pageSize=M]`: needs LIST_HANDLES on `0.NA/P`.
async fn list_handles(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let params = Params::parse(req.uri().query());
    let Some(prefix_text) = params.get("prefix").map(str::to_string) else {
        let f = Failure::new(
            ResponseCode::ProtocolError,
            "the prefix parameter is required",
        );
        observe(&state, "list", f.code, started);
        return failure_response(&f, None, false, &params);
    };
    let bare = prefix_text
        .strip_prefix("0.NA/")
        .or_else(|| prefix_text.strip_prefix("0.na/"))
        .unwrap_or(&prefix_text);
    let fail = |f: Failure| {
        observe(&state, "list", f.code, started);
        failure_response(&f, None, false, &params)
    };
    let prefix = match Prefix::parse(bare) {
        Ok(p) => p,
        Err(e) => return fail(Failure::new(ResponseCode::InvalidHandle, e.to_string())),
    };
    let number = |key: &str| -> Result<Option<usize>, Failure> {
        params
            .get(key)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    Failure::new(
                        ResponseCode::ProtocolError,
                        format!("{key} must be a number"),
                    )
                })
            })
            .transpose()
    };
    let (page, page_size) = match (number("page"), number("pageSize")) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(f), _) | (_, Err(f)) => return fail(f),
    };
    let identity = match require_identity(&state, req.headers(), conn) {
        Ok(id) => id,
        Err(r) => {
            let (code, resp) = refusal_response(r, &prefix_text, &params);
            observe(&state, "list", code, started);
            return resp;
        }
    };
    let paging = match (page, page_size) {
        (None, None) => None,
        (p, s) => Some((p.unwrap_or(0), s.unwrap_or(10_000))),
    };
    // A scan of every key under the prefix: on the blocking pool, not a runtime worker.
    let engine = state.engine().clone();
    match run_blocking(move || engine.list_handles(&identity, &prefix, paging)).await {
        Ok((total, handles)) => {
            observe(&state, "list", ResponseCode::Success, started);
            let mut body = json!({
                "responseCode": 1,
                "prefix": prefix_text,
                "totalCount": total,
            });
            if let (Some(obj), Some((p, s))) = (body.as_object_mut(), paging) {
                obj.insert("page".into(), json!(p));
                obj.insert("pageSize".into(), json!(s));
            }
            if let Some(obj) = body.as_object_mut() {
                obj.insert("handles".into(), json!(handles));
            }
            json_response(StatusCode::OK, &body, &params)
        }
        Err(f) => fail(f),
    }
}

async fn prefixes(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let params = Params::parse(req.uri().query());
    match state.engine().homed_prefixes() {
        Ok(list) => {
            observe(&state, "prefixes", ResponseCode::Success, started);
            let names: Vec<String> = list.iter().map(|p| p.to_string()).collect();
            json_response(
                StatusCode::OK,
                &json!({"responseCode": 1, "prefixes": names}),
                &params,
            )
        }
        Err(f) => {
            observe(&state, "prefixes", f.code, started);
            failure_response(&f, None, false, &params)
        }
    }
}

async fn site(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let params = Params::parse(req.uri().query());
    observe(&state, "site", ResponseCode::Success, started);
    let body = json!({"responseCode": 1, "site": hjson::site_to_json(&state.site)});
    json_response(StatusCode::OK, &body, &params)
}

/// Every 401 also offers a REST session: `WWW-Authenticate: Handle sessionId="…",
/// nonce="…"` (besides `Basic realm="handle"`), as Handle.Net does.
async fn session_challenge(State(state): State<Arc<HttpState>>, mut resp: Response) -> Response {
    if resp.status() == StatusCode::UNAUTHORIZED {
        let s = state.sessions.open();
        let challenge = format!("Handle sessionId=\"{}\", nonce=\"{}\"", s.id, s.nonce);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().append(header::WWW_AUTHENTICATE, value);
        }
    }
    resp
}

/// A session as `/api/sessions` shows it.
fn session_json(view: &sessions::SessionView) -> Value {
    let mut body = json!({
        "sessionId": view.id,
        "nonce": view.nonce,
        "authenticated": view.identity.is_some(),
    });
    if let (Some(identity), Some(obj)) = (&view.identity, body.as_object_mut()) {
        obj.insert("id".into(), json!(identity.to_string()));
    }
    body
}

/// `POST /api/sessions`: open a session (id and nonce to answer).
async fn sessions_api(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    if req.method() == Method::OPTIONS {
        return preflight();
    }
    if req.method() != Method::POST {
        return method_not_allowed(req.method(), &params);
    }
    let view = state.sessions.open();
    json_response(StatusCode::CREATED, &session_json(&view), &params)
}

fn method_not_allowed(method: &Method, params: &Params) -> Response {
    let body = hjson::error_response(
        ResponseCode::ProtocolError.code(),
        None,
        &format!("method {method} is not supported here"),
    );
    json_response(StatusCode::METHOD_NOT_ALLOWED, &body, params)
}

/// `/api/sessions/this`, the session named by `Authorization: Handle sessionId="…"`: GET
/// shows it, PUT or POST authenticate it (the answer in the header, or as a JSON body
/// `{"id","type","cnonce","alg","signature"}`), DELETE ends it.
async fn this_session(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    let method = req.method().clone();
    if method == Method::OPTIONS {
        return preflight();
    }
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let mut scheme = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(handle_scheme)
        .unwrap_or_default();
    let refused = |reason: &str| refused_response(None, reason, &params);
    let Some(session_id) = scheme.session_id.clone() else {
        return refused("name the session: Authorization: Handle sessionId=\"…\"");
    };
    if method == Method::DELETE {
        return if state.sessions.close(&session_id) {
            json_response(StatusCode::OK, &json!({"sessionId": session_id}), &params)
        } else {
            refused(&format!("no session {session_id:?} (unknown or expired)"))
        };
    }
    if method == Method::PUT || method == Method::POST {
        // The answer is the authentication: a small body only.
        let limit = UNAUTHENTICATED_BODY_BYTES.min(state.max_body_bytes);
        let body = match read_body_at_most(req.into_body(), limit).await {
            Ok(body) => body,
            Err(e) => return body_error(e, None, &params).1,
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let Ok(answer) = serde_json::from_slice::<Value>(&body) else {
                return refused("the session answer is not JSON");
            };
            let text = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_string);
            scheme.id = text("id").or(scheme.id);
            scheme.kind = text("type").or(scheme.kind);
            scheme.cnonce = text("cnonce").or(scheme.cnonce);
            scheme.alg = text("alg").or(scheme.alg);
            scheme.signature = text("signature").or(scheme.signature);
        }
    } else if method != Method::GET {
        return method_not_allowed(&method, &params);
    }
    if scheme.id.is_some() {
        if !credentials_allowed(&state, conn.as_ref()) {
            return refused("credentials are accepted over HTTPS only");
        }
        if let Credentials::Refused(reason) = by_session(&state, &scheme) {
            return refused(&reason);
        }
    }
    match state.sessions.touch(&session_id) {
        Some((view, _)) => json_response(StatusCode::OK, &session_json(&view), &params),
        None => refused(&format!("no session {session_id:?} (unknown or expired)")),
    }
}

async fn unknown_api(req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    let body = hjson::error_response(
        ResponseCode::ProtocolError.code(),
        None,
        &format!("Unknown HTTP API endpoint {}", req.uri().path()),
    );
    json_response(StatusCode::NOT_FOUND, &body, &params)
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

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}\
         <form action=\"/\" method=\"get\"><input name=\"handle\" placeholder=\"88.100.1/SN-0001\" size=\"40\">\
         <input type=\"hidden\" name=\"noredirect\"><button>Look up</button></form></body></html>",
        t = escape_html(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

async fn home(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    if let Some(h) = params.get("handle").filter(|h| !h.is_empty()) {
        return proxy_answer(&state, h, &params, client_ip(&req)).await;
    }
    html_page(
        StatusCode::OK,
        "idnode identifier lookup",
        "<p>Enter an identifier.</p>",
    )
}

/// `GET /{handle}`: 302 to the first URL value, 301 to an HS_ALIAS target, the values page
/// with `?noredirect`, 404 page when missing.
async fn proxy(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let params = Params::parse(req.uri().query());
    let text = handle_from_path(req.uri().path(), "/");
    let resp = proxy_answer(&state, &text, &params, client_ip(&req)).await;
    let code = match resp.status() {
        StatusCode::NOT_FOUND => ResponseCode::HandleNotFound,
        StatusCode::BAD_REQUEST => ResponseCode::InvalidHandle,
        StatusCode::SERVICE_UNAVAILABLE => ResponseCode::ServerTooBusy,
        _ => ResponseCode::Success,
    };
    observe(&state, "proxy", code, started);
    resp
}

/// The client's address, when the accept loop attached it.
fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnInfo>().map(|c| c.peer.ip())
}

async fn proxy_answer(
    state: &HttpState,
    text: &str,
    params: &Params,
    client: Option<IpAddr>,
) -> Response {
    let text = ["hdl:", "doi:", "info:hdl/"]
        .iter()
        .find_map(|p| text.strip_prefix(p))
        .unwrap_or(text);
    let handle = match state.engine().parse_handle(text) {
        Ok(h) => h,
        Err(f) => {
            return html_page(
                StatusCode::BAD_REQUEST,
                "Invalid identifier",
                &format!("<p>{}: {}</p>", escape_html(text), escape_html(&f.message)),
            )
        }
    };
    let query = Query {
        handle,
        indexes: vec![],
        types: vec![],
        public_only: true,
        refer: true,
    };
    let values = match resolve_for_client(state, &query, None, client).await {
        Ok(values) => values,
        Err(f) if f.code == ResponseCode::ValuesNotFound => Vec::new(),
        Err(f) => {
            let status = if matches!(
                f.code,
                ResponseCode::HandleNotFound | ResponseCode::ServerNotResponsible
            ) {
                StatusCode::NOT_FOUND
            } else {
                http_status(f.code, true)
            };
            return html_page(
                status,
                "Identifier not found",
                &format!("<p>{} ({})</p>", escape_html(text), escape_html(&f.message)),
            );
        }
    };
    if !params.has("noredirect") && params.get("action") != Some("showvalues") {
        // Only to an alias that is a handle: an arbitrary value such as "/evil.example"
        // would make "//evil.example", a redirect off this node.
        if let Some(alias) = values
            .iter()
            .find(|v| v.is_type(types::HS_ALIAS))
            .and_then(HandleValue::data_str)
            .filter(|a| state.engine().parse_handle(a).is_ok())
        {
            let target = format!(
                "/{}",
                percent_encoding::utf8_percent_encode(alias, PATH_SET)
            );
            if let Ok(loc) = HeaderValue::from_str(&target) {
                return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, loc)]).into_response();
            }
        }
        let url = values
            .iter()
            .find(|v| v.is_type(types::URL))
            .or_else(|| values.iter().find(|v| v.matches_type_query("URL.")))
            .and_then(HandleValue::data_str);
        if let Some(url) = url {
            match redirect_target(url, params.get("urlappend").unwrap_or("")) {
                Ok(target) => {
                    if let Ok(loc) = HeaderValue::from_str(&target) {
                        return (StatusCode::FOUND, [(header::LOCATION, loc)]).into_response();
                    }
                }
                // Not a URL a browser should be sent to (javascript:, data:, relative...):
                // the values page below, where it is only text.
                Err(RedirectRefusal::NotRedirectable) => {}
                Err(RedirectRefusal::AppendChangesOrigin) => {
                    return html_page(
                        StatusCode::BAD_REQUEST,
                        "urlappend refused",
                        "<p>urlappend may add a path, a query or a fragment to the \
                         identifier's URL, not change its scheme, host, port or user.</p>",
                    )
                }
            }
        }
    }
    let mut rows = String::new();
    for v in &values {
        let data = hjson::value_to_json(v);
        let shown = match data.get("data").and_then(|d| d.get("value")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.index,
            escape_html(&v.type_name),
            escape_html(&shown)
        ));
    }
    html_page(
        StatusCode::OK,
        &format!("Values of {text}"),
        &format!(
            "<table border=\"1\"><tr><th>Index</th><th>Type</th><th>Data</th></tr>{rows}</table>"
        ),
    )
}

/// URL schemes the proxy redirects to. Any other URL value (`javascript:`, `data:`,
/// `file:`, relative references...) is shown on the values page instead, as text.
pub const REDIRECT_SCHEMES: &[&str] = &["http", "https", "ftp"];

/// Why the proxy does not redirect to a URL value.
#[derive(Debug, PartialEq, Eq)]
enum RedirectRefusal {
    /// Not an absolute URL with one of [`REDIRECT_SCHEMES`].
    NotRedirectable,
    /// `urlappend` would change the scheme, user, host or port.
    AppendChangesOrigin,
}

/// The Location for the URL value `url` followed by `urlappend`: the text escaped for the
/// header, checked by parsing it the way browsers do (WHATWG URL, the `url` crate): the
/// URL's scheme must be in [`REDIRECT_SCHEMES`], and the appended text may only extend the
/// path, query or fragment, so `http://a.example` + `@evil.example/` (which a browser reads
/// as host `evil.example`) is refused.
fn redirect_target(url: &str, append: &str) -> Result<String, RedirectRefusal> {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, LOCATION_SET).to_string();
    let base_text = encode(url);
    let base = url::Url::parse(&base_text).map_err(|_| RedirectRefusal::NotRedirectable)?;
    if !REDIRECT_SCHEMES.contains(&base.scheme()) || !base.has_host() {
        return Err(RedirectRefusal::NotRedirectable);
    }
    if append.is_empty() {
        return Ok(base_text);
    }
    let text = encode(&format!("{url}{append}"));
    let full = url::Url::parse(&text).map_err(|_| RedirectRefusal::AppendChangesOrigin)?;
    let same_origin = full.scheme() == base.scheme()
        && full.username() == base.username()
        && full.password() == base.password()
        && full.host() == base.host()
        && full.port() == base.port();
    if same_origin {
        Ok(text)
    } else {
        Err(RedirectRefusal::AppendChangesOrigin)
    }
}

/// Bytes to escape in a Location header built from a stored URL: controls, space, and
/// non-ASCII (IRI → URI); the URL's own reserved characters stay as they are.
const LOCATION_SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`');

/// Bytes to escape in a handle used as a path.
const PATH_SET: &percent_encoding::AsciiSet =
    &LOCATION_SET.add(b'?').add(b'#').add(b'%').add(b'\\');

pub mod feed;
pub mod sessions;

#[cfg(test)]
mod tests;
