//! The registry's REST endpoints: `/api/handles/{handle}` (GET and POST resolve, PUT creates
//! or adds values, DELETE deletes or removes them), `GET /api/handles?prefix=P` (a listing),
//! `/api/prefixes` and `/api/site`. Each handler reads the request ([`Params`], the body),
//! authenticates it ([`super::auth`]), calls the resolver or the engine, and answers with the
//! shared helpers of [`super`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::auth::{authenticate, refusal_response, refused_response, require_identity};
use super::params::{handle_from_path, Params};
use super::{
    failure_response, json_response, observe, preflight, read_body, read_body_at_most,
    refused_before_body, rejected, resolve_for_client, run_blocking, ConnInfo, Credentials,
    HttpState, RequestError, UNAUTHENTICATED_BODY_BYTES,
};
use crate::auth::Identity;
use crate::model::{Handle, HandleValue, Prefix, ResponseCode};
use crate::resolve::{Overwrite, Query, ResolveError, WriteOutcome};
use crate::wire::json as hjson;

/// `/api/handles/{handle}`: GET resolves; PUT creates/adds; DELETE deletes/removes; POST with
/// a JSON body is a GET with its parameters in the body.
pub(super) async fn handle_api(State(state): State<Arc<HttpState>>, req: Request) -> Response {
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
            observe(&state, "put", f.code(), started);
            let resp = failure_response(&f, Some(&text), false, &params);
            return refused_before_body((f.code(), resp), &parts.headers, body)
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
                    Err(e) => ("resolve", rejected(&e, Some(&text), &params)),
                    Ok(bytes) => {
                        params.extend_from_json_body(&bytes);
                        (
                            "resolve",
                            get_handle(&state, credentials, client, &text, &params).await,
                        )
                    }
                }
            }
        },
        Method::PUT | Method::DELETE => {
            let put = parts.method == Method::PUT;
            let r = match admit_write(&state, &parts.headers, conn, &text, &params, body).await {
                Err(refused) => refused,
                Ok(write) if put => put_handle(&state, &parts.headers, write, text, &params).await,
                Ok(write) => delete_handle(&state, write, text, &params).await,
            };
            (if put { "put" } else { "delete" }, r)
        }
        Method::OPTIONS => ("options", (ResponseCode::Success, preflight())),
        _ => (
            "other",
            rejected(&RequestError::MethodNotAllowed, Some(&text), &params),
        ),
    };
    observe(&state, op, resp.0, started);
    resp.1
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
        Err(f) => return (f.code(), failure_response(&f, Some(text), true, params)),
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
    let indexes = match params.indexes() {
        Ok(indexes) => indexes,
        Err(e) => return rejected(&e, Some(text), params),
    };
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
        Err(f) => (f.code(), failure_response(&f, Some(text), true, params)),
    }
}

fn write_response(
    result: Result<WriteOutcome, ResolveError>,
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
            let body = hjson::write_response(text);
            (ResponseCode::Success, json_response(status, &body, params))
        }
        Err(f) => (f.code(), failure_response(&f, Some(text), false, params)),
    }
}

/// A PUT or DELETE past its credentials, with its body read.
struct AdmittedWrite {
    identity: Identity,
    /// The client's address, for the audit line.
    peer: Option<IpAddr>,
    body: Bytes,
}

/// The prologue of a REST write. Credentials first: the body of a request that is not
/// authenticated is never read nor parsed (see `refused_before_body`). Then the whole body,
/// before any other answer: answering before it is drained would break keep-alive
/// connections (pyhandle reuses its connection).
async fn admit_write(
    state: &HttpState,
    headers: &HeaderMap,
    conn: Option<ConnInfo>,
    text: &str,
    params: &Params,
    body: Body,
) -> Result<AdmittedWrite, (ResponseCode, Response)> {
    let peer = conn.as_ref().map(|c| c.peer.ip());
    let identity = match require_identity(state, headers, conn) {
        Ok(id) => id,
        Err(r) => {
            return Err(refused_before_body(refusal_response(r, text, params), headers, body).await)
        }
    };
    match read_body(state, body).await {
        Ok(body) => Ok(AdmittedWrite {
            identity,
            peer,
            body,
        }),
        Err(e) => Err(rejected(&e, Some(text), params)),
    }
}

async fn put_handle(
    state: &Arc<HttpState>,
    headers: &HeaderMap,
    write: AdmittedWrite,
    text: String,
    params: &Params,
) -> (ResponseCode, Response) {
    let AdmittedWrite {
        identity,
        peer,
        body: bytes,
    } = write;
    let fail =
        |f: ResolveError, text: &str| (f.code(), failure_response(&f, Some(text), false, params));
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
    let values = match values_to_put(state, &handle, headers, &bytes) {
        Ok(values) => values,
        Err(e) => return rejected(&e, Some(&text), params),
    };
    let overwrite = params.flag("overwrite").unwrap_or(true);
    // With `index` parameters the values are added to the handle, else it is created.
    let adding = params.has("index");
    let engine = state.engine().clone();
    let who = identity.to_string();
    let written = crate::audit::indexes(values.iter().map(|v| v.index));
    let op = if adding { "add" } else { "create" };
    let result = if adding {
        if let Err(e) = check_added_indexes(params, &values) {
            return rejected(&e, Some(&text), params);
        }
        run_blocking(move || engine.add_values(&identity, &handle, values, overwrite)).await
    } else {
        let mode = if overwrite {
            Overwrite::Yes
        } else {
            Overwrite::No
        };
        run_blocking(move || engine.create(&identity, &handle, values, mode)).await
    };
    audit_write(peer, &who, op, &text, &written, &result);
    write_response(result, &text, params)
}

/// The values a PUT body holds: a JSON body (by its `Content-Type`), of values (see
/// [`hjson::values_from_request_body`]), naming no other handle than the URL's (`handle`).
fn values_to_put(
    state: &HttpState,
    handle: &Handle,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<HandleValue>, RequestError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(RequestError::NotJson);
    }
    let json: Value = serde_json::from_slice(body).map_err(RequestError::MalformedJson)?;
    match hjson::values_from_request_body(&json) {
        Ok((Some(named), _))
            if state.engine().parse_handle(&named).ok().as_ref() != Some(handle) =>
        {
            Err(RequestError::BodyNamesOtherHandle {
                named,
                url: handle.as_str().to_string(),
            })
        }
        Ok((_, values)) => Ok(values),
        Err(e) => Err(RequestError::InvalidValues(e)),
    }
}

/// The `index` parameters of a PUT that adds values name exactly the indexes of the values
/// sent, unless one of them is `various`.
fn check_added_indexes(params: &Params, values: &[HandleValue]) -> Result<(), RequestError> {
    if params
        .all("index")
        .any(|i| i.eq_ignore_ascii_case("various"))
    {
        return Ok(());
    }
    let mut wanted = params.indexes()?;
    let mut given: Vec<u32> = values.iter().map(|v| v.index).collect();
    wanted.sort_unstable();
    wanted.dedup();
    given.sort_unstable();
    if wanted == given {
        Ok(())
    } else {
        Err(RequestError::IndexesDoNotMatchValues)
    }
}

/// One audit line for a REST write.
fn audit_write(
    peer: Option<IpAddr>,
    who: &str,
    op: &str,
    handle: &str,
    indexes: &str,
    result: &Result<WriteOutcome, ResolveError>,
) {
    let origin = match peer {
        Some(ip) => crate::audit::Origin::Client("rest", ip),
        None => crate::audit::Origin::Local("rest"),
    };
    let result = match result {
        Ok(_) => "ok".to_string(),
        Err(f) => format!("RC {}: {}", f.code().code(), f),
    };
    crate::audit::write(origin, who, op, handle, indexes, &result);
}

async fn delete_handle(
    state: &Arc<HttpState>,
    write: AdmittedWrite,
    text: String,
    params: &Params,
) -> (ResponseCode, Response) {
    let AdmittedWrite { identity, peer, .. } = write;
    let fail = |f: ResolveError| (f.code(), failure_response(&f, Some(&text), false, params));
    let handle = match state.engine().parse_handle(&text) {
        Ok(h) => h,
        Err(f) => return fail(f),
    };
    let indexes = match params.indexes() {
        Ok(indexes) => indexes,
        Err(e) => return rejected(&e, Some(&text), params),
    };
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
pub(super) async fn list_handles(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let params = Params::parse(req.uri().query());
    let reject = |e: RequestError| {
        let (code, resp) = rejected(&e, None, &params);
        observe(&state, "list", code, started);
        resp
    };
    let Some(prefix_text) = params.get("prefix").map(str::to_string) else {
        return reject(RequestError::PrefixRequired);
    };
    let bare = prefix_text
        .strip_prefix("0.NA/")
        .or_else(|| prefix_text.strip_prefix("0.na/"))
        .unwrap_or(&prefix_text);
    let fail = |f: ResolveError| {
        observe(&state, "list", f.code(), started);
        failure_response(&f, None, false, &params)
    };
    let prefix = match Prefix::parse(bare) {
        Ok(p) => p,
        Err(e) => return reject(RequestError::InvalidPrefix(e)),
    };
    let (page, page_size) = match (params.number("page"), params.number("pageSize")) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => return reject(e),
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
            let body = hjson::handle_list_response(&prefix_text, total, paging, &handles);
            json_response(StatusCode::OK, &body, &params)
        }
        Err(f) => fail(f),
    }
}

pub(super) async fn prefixes(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let params = Params::parse(req.uri().query());
    match state.engine().homed_prefixes() {
        Ok(list) => {
            observe(&state, "prefixes", ResponseCode::Success, started);
            json_response(StatusCode::OK, &hjson::prefixes_response(&list), &params)
        }
        Err(f) => {
            observe(&state, "prefixes", f.code(), started);
            failure_response(&f, None, false, &params)
        }
    }
}

pub(super) async fn site(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let started = Instant::now();
    let params = Params::parse(req.uri().query());
    observe(&state, "site", ResponseCode::Success, started);
    let body = hjson::site_response(&state.site);
    json_response(StatusCode::OK, &body, &params)
}
