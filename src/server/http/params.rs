//! Query parameters of a request (`Params`: in order, repeated keys kept, Handle.Net's
//! booleans) and the handle text of a request path. Plain text handling with no state, so every
//! endpoint file of the HTTP front end can use it.

use percent_encoding::percent_decode_str;

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
