//! The proxy for browsers: `GET /{handle}` redirects to the identifier's URL value (302) or
//! HS_ALIAS target (301), or shows its values as an HTML page (`?noredirect`), and `GET /` is
//! the lookup form. Every URL taken from a stored value is checked before it becomes a
//! `Location` ([`REDIRECT_SCHEMES`], `urlappend` may not change the origin) and every text is
//! escaped in the page, since the values are whatever a registrant stored.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::params::{handle_from_path, Params};
use super::{http_status, observe, resolve_for_client, ConnInfo, HttpState};
use crate::model::{types, HandleValue, ResponseCode};
use crate::resolve::Query;
use crate::wire::json as hjson;

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

pub(super) async fn home(State(state): State<Arc<HttpState>>, req: Request) -> Response {
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
pub(super) async fn proxy(State(state): State<Arc<HttpState>>, req: Request) -> Response {
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
                &format!(
                    "<p>{}: {}</p>",
                    escape_html(text),
                    escape_html(&f.to_string())
                ),
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
        Err(f) if f.code() == ResponseCode::ValuesNotFound => Vec::new(),
        Err(f) => {
            let status = if matches!(
                f.code(),
                ResponseCode::HandleNotFound | ResponseCode::ServerNotResponsible
            ) {
                StatusCode::NOT_FOUND
            } else {
                http_status(f.code(), true)
            };
            return html_page(
                status,
                "Identifier not found",
                &format!(
                    "<p>{} ({})</p>",
                    escape_html(text),
                    escape_html(&f.to_string())
                ),
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
