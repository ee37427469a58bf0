//! Query parameters of a request (`Params`: in order, repeated keys kept, Handle.Net's
//! booleans) and the handle text of a request path. Plain text handling with no state, so every
//! endpoint file of the HTTP front end can use it.

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::RequestError;

/// Query parameters in order, `+` decoded as space, repeated keys kept.
pub(super) struct Params(pub(super) Vec<(String, String)>);

impl Params {
    pub(super) fn parse(query: Option<&str>) -> Params {
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

    pub(super) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every `index` parameter, as numbers.
    pub(super) fn indexes(&self) -> Result<Vec<u32>, RequestError> {
        self.all("index")
            .map(|i| {
                i.parse::<u32>()
                    .map_err(|_| RequestError::IndexNotNumber(i.to_string()))
            })
            .collect()
    }

    /// The number `key` names (`page`, `pageSize`), when it is given.
    pub(super) fn number(&self, key: &'static str) -> Result<Option<usize>, RequestError> {
        self.get(key)
            .map(|v| v.parse().map_err(|_| RequestError::NotANumber(key)))
            .transpose()
    }

    /// Add the members of a POST resolution's JSON body as parameters, after those of the
    /// query: each array element as one parameter, a string as itself, any other JSON as its
    /// text. A body that is not a JSON object adds nothing.
    pub(super) fn extend_from_json_body(&mut self, body: &[u8]) {
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
            return;
        };
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
                self.0.push((k.clone(), s));
            }
        }
    }

    /// Handle.Net booleans: `true`, `yes` or empty mean true.
    pub(super) fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| {
            v.is_empty() || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
        })
    }
}

/// The handle text of `/api/handles/{handle}`, percent-decoded from the raw path (so `%2F`
/// and `/` both work and `+` stays `+`).
pub(super) fn handle_from_path(path: &str, strip: &str) -> String {
    let raw = path.strip_prefix(strip).unwrap_or(path);
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}
