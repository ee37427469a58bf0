//! The JSON envelopes of REST answers: a resolution (`responseCode`, `handle`, `values`) and
//! an error (`responseCode`, `message`, `handle`), in Handle.Net's key order. Apart from the
//! codec of values, so a front end finds every answer shape in one place; the shapes that
//! `server/http.rs` and `sync/feed.rs` still spell with `json!` belong here too.

use serde_json::{Map, Value};

use super::encode::value_to_json;
use crate::model::HandleValue;

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
