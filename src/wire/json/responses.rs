//! The JSON envelopes of REST answers, in Handle.Net's key order: a resolution (`responseCode`,
//! `handle`, `values`), an error (`responseCode`, `message`, `handle`, and for resolutions the
//! values of a referral or an empty `values`), a write, a listing, the prefixes, the site, and
//! the REST sessions. Apart from the codec of values, so a front end finds every answer shape in
//! one place: `server::http` picks the HTTP status and headers and sends what these build.
//! (The replication messages of `/sync/*` are typed in [`crate::wire::sync`].)

use serde_json::{json, Map, Value};

use super::encode::value_to_json;
use super::site::site_to_json;
use crate::model::{HandleValue, Prefix, SiteInfo};

/// `{"responseCode":rc,"handle":…,"values":[…]}` (a resolution answer).
pub fn handle_response(rc: u32, handle: &str, values: &[HandleValue]) -> Value {
    let mut o = Map::new();
    o.insert("responseCode".into(), rc.into());
    o.insert("handle".into(), handle.into());
    o.insert(
        "values".into(),
        Value::Array(values.iter().map(value_to_json).collect()),
    );
    Value::Object(o)
}

/// `{"responseCode":rc,"message":…,"handle":…}` in Handle.Net's key order (the handle is added
/// last, from the request); `message` is left out when empty and `handle` when `None`.
pub fn error_response(rc: u32, handle: Option<&str>, message: &str) -> Value {
    let mut o = Map::new();
    o.insert("responseCode".into(), rc.into());
    if !message.is_empty() {
        o.insert("message".into(), message.into());
    }
    if let Some(h) = handle {
        o.insert("handle".into(), h.into());
    }
    Value::Object(o)
}

/// A resolution that found the handle but none of the values asked for (RC 200): the
/// [`error_response`] followed by `"values":[]`.
pub fn no_values_response(rc: u32, handle: Option<&str>, message: &str) -> Value {
    with(error_response(rc, handle, message), [("values", json!([]))])
}

/// A referral (RC 301, 303): the [`error_response`] followed by `"referralHandle":""` and the
/// `values` to follow (the delegating HS_SITE.PREFIX / HS_SERV.PREFIX values).
pub fn referral_response(
    rc: u32,
    handle: Option<&str>,
    message: &str,
    referral: &[HandleValue],
) -> Value {
    let values: Vec<Value> = referral.iter().map(value_to_json).collect();
    with(
        error_response(rc, handle, message),
        [("referralHandle", json!("")), ("values", json!(values))],
    )
}

/// `{"responseCode":1,"handle":…}`: a write done.
pub fn write_response(handle: &str) -> Value {
    json!({"responseCode": 1, "handle": handle})
}

/// `{"responseCode":1,"prefix":…,"totalCount":N[,"page":P,"pageSize":S],"handles":[…]}`: a
/// listing of the handles under `prefix`, `page` and `pageSize` when the request paged it.
pub fn handle_list_response(
    prefix: &str,
    total: usize,
    paging: Option<(usize, usize)>,
    handles: &[String],
) -> Value {
    let mut body = json!({
        "responseCode": 1,
        "prefix": prefix,
        "totalCount": total,
    });
    if let Some((page, size)) = paging {
        body = with(body, [("page", json!(page)), ("pageSize", json!(size))]);
    }
    with(body, [("handles", json!(handles))])
}

/// `{"responseCode":1,"prefixes":["88.100.1",…]}`: the prefixes homed here.
pub fn prefixes_response(prefixes: &[Prefix]) -> Value {
    let names: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
    json!({"responseCode": 1, "prefixes": names})
}

/// `{"responseCode":1,"site":{…}}`: the node's own HS_SITE.
pub fn site_response(site: &SiteInfo) -> Value {
    json!({"responseCode": 1, "site": site_to_json(site)})
}

/// `{"sessionId":…,"nonce":…,"authenticated":bool[,"id":"index:handle"]}`: a REST session, `id`
/// the identity it was answered for (when it was).
pub fn session_response(session_id: &str, nonce: &str, identity: Option<&str>) -> Value {
    let body = json!({
        "sessionId": session_id,
        "nonce": nonce,
        "authenticated": identity.is_some(),
    });
    match identity {
        Some(id) => with(body, [("id", json!(id))]),
        None => body,
    }
}

/// `{"sessionId":…}`: a REST session ended.
pub fn session_closed_response(session_id: &str) -> Value {
    json!({"sessionId": session_id})
}

/// `body` (an object) with `members` appended, in order.
fn with<const N: usize>(mut body: Value, members: [(&str, Value); N]) -> Value {
    if let Some(obj) = body.as_object_mut() {
        for (key, value) in members {
            obj.insert(key.into(), value);
        }
    }
    body
}
