//! Who a request comes from: the credentials of `Authorization` in its three schemes — HTTP
//! Basic (an HS_SECKEY secret), Handle.Net's `Handle sessionId=…` REST sessions (answered once
//! with a key or secret, see [`super::sessions`]) and `Handle clientCert="true"` (the TLS client
//! certificate the accept loop put in [`ConnInfo`]) — checked against the engine, with the
//! per-address budget of failed attempts; and the `/api/sessions` endpoints, which open and
//! answer those sessions. HTTP-specific (headers, HTTPS-only rules), so it sits in
//! `server::http`; the checks themselves are the engine's and `crate::auth`'s.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::params::Params;
use super::{
    failure_response, json_response, preflight, read_body_at_most, rejected, sessions, ConnInfo,
    HttpState, RequestError, UNAUTHENTICATED_BODY_BYTES,
};
use crate::auth::Identity;
use crate::config::PlainHttpAuth;
use crate::model::{types, ResponseCode};
use crate::resolve::ResolveError;
use crate::wire::json as hjson;

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
    let lock = || crate::lock::lock(&state.auth_failures);
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
    let Ok(id) = Identity::parse(&user, case, crate::auth::IndexRule::Optional) else {
        return Credentials::Refused(format!("{user:?} is not index:handle"));
    };
    match state
        .engine()
        .authenticate_secret(&id.handle, id.index, secret)
    {
        Ok(identity) => Credentials::Valid(identity),
        Err(f) => {
            tracing::info!(user = %user, reason = %f, "HTTP authentication refused");
            Credentials::Refused(f.to_string())
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
pub(super) struct HandleScheme {
    pub(super) client_cert: bool,
    pub(super) session_id: Option<String>,
    /// The identity a session answer is for, `index:handle`.
    pub(super) id: Option<String>,
    /// `HS_PUBKEY` or `HS_SECKEY`.
    pub(super) kind: Option<String>,
    /// Base64.
    pub(super) cnonce: Option<String>,
    pub(super) alg: Option<String>,
    /// Base64.
    pub(super) signature: Option<String>,
}

/// Parse the `Handle` authorization scheme (case-insensitive name and keys, values quoted or
/// not, separated by commas); `None` for other schemes.
pub(super) fn handle_scheme(value: &str) -> Option<HandleScheme> {
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
        .map_err(|f| f.to_string())
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
            tracing::info!(user = %claim.identity, reason = %f, "client certificate refused");
            Credentials::Refused(f.to_string())
        }
    }
}

/// The answer to refused credentials: RC 403 (authentication failed) with the reason, and 401,
/// not the 403 [`super::http_status`] gives it (so clients such as pyhandle see an
/// authentication error), with a `Basic` challenge.
pub(super) fn refused_response(handle: Option<&str>, reason: &str, params: &Params) -> Response {
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

/// Why a write was not authenticated.
pub(super) enum Refusal {
    Missing,
    Refused(String),
}

/// Authenticate a write: missing or refused credentials are both answered with 401.
pub(super) fn require_identity(
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

/// The answer to a write that is not authenticated: refused credentials as
/// [`refused_response`], missing ones RC 402 (authentication needed, 401).
pub(super) fn refusal_response(
    refusal: Refusal,
    text: &str,
    params: &Params,
) -> (ResponseCode, Response) {
    match refusal {
        Refusal::Refused(reason) => (
            ResponseCode::AuthenticationFailed,
            refused_response(Some(text), &reason, params),
        ),
        Refusal::Missing => {
            let f = ResolveError::AuthenticationNeeded;
            (f.code(), failure_response(&f, Some(text), false, params))
        }
    }
}

/// Every 401 also offers a REST session: `WWW-Authenticate: Handle sessionId="…",
/// nonce="…"` (besides `Basic realm="handle"`), as Handle.Net does.
pub(super) async fn session_challenge(
    State(state): State<Arc<HttpState>>,
    mut resp: Response,
) -> Response {
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
    let identity = view.identity.as_ref().map(Identity::to_string);
    hjson::session_response(&view.id, &view.nonce, identity.as_deref())
}

/// `POST /api/sessions`: open a session (id and nonce to answer).
pub(super) async fn sessions_api(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    if req.method() == Method::OPTIONS {
        return preflight();
    }
    if req.method() != Method::POST {
        let e = RequestError::MethodNotSupported(req.method().clone());
        return rejected(&e, None, &params).1;
    }
    let view = state.sessions.open();
    json_response(StatusCode::CREATED, &session_json(&view), &params)
}

/// `/api/sessions/this`, the session named by `Authorization: Handle sessionId="…"`: GET
/// shows it, PUT or POST authenticate it (the answer in the header, or as a JSON body
/// `{"id","type","cnonce","alg","signature"}`), DELETE ends it.
pub(super) async fn this_session(State(state): State<Arc<HttpState>>, req: Request) -> Response {
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
            let body = hjson::session_closed_response(&session_id);
            json_response(StatusCode::OK, &body, &params)
        } else {
            refused(&format!("no session {session_id:?} (unknown or expired)"))
        };
    }
    if method == Method::PUT || method == Method::POST {
        // The answer is the authentication: a small body only.
        let limit = UNAUTHENTICATED_BODY_BYTES.min(state.max_body_bytes);
        let body = match read_body_at_most(req.into_body(), limit).await {
            Ok(body) => body,
            Err(e) => return rejected(&e, None, &params).1,
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
        return rejected(&RequestError::MethodNotSupported(method), None, &params).1;
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
