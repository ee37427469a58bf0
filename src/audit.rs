//! The audit log: one structured event per write and per failed authentication, on its own
//! tracing target ([`TARGET`], in the operational log unless `RUST_LOG` filters it), and, when
//! `[log] audit_file` names a file, also as one JSON object per line appended to that file
//! ([`open_file`]; each line is written whole with one `write` call).
//!
//! Every event names who (the authenticated identity, or what was claimed for a failure),
//! what (the operation), which handle and value indexes, from which address, and the result;
//! the subscriber adds when. Values themselves are never logged, so no secret reaches the
//! log: an HS_SECKEY appears as its index only.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// The audit file, once opened by `idnode serve`.
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Append audit events to `path` (created if missing, mode 0600 on Unix) from now on. A
/// second call keeps the first file.
pub fn open_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    let _ = FILE.set(Mutex::new(file));
    Ok(())
}

/// Write one event as a JSON line to the audit file, if there is one.
fn append(mut event: serde_json::Map<String, serde_json::Value>) {
    let Some(file) = FILE.get() else {
        return;
    };
    let when = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    event.insert("time".into(), when.into());
    let mut line = serde_json::Value::Object(event).to_string();
    line.push('\n');
    let mut file = crate::lock::lock(file);
    if let Err(e) = file.write_all(line.as_bytes()) {
        tracing::warn!(error = %e, "cannot write the audit file");
    }
}

fn fields(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
        .collect()
}

/// The tracing target of audit events.
pub const TARGET: &str = "idnode::audit";

/// Where a write came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client of a front end (`rest`, `native`, ...), at an address.
    Client(&'static str, IpAddr),
    /// The command line on this machine (`idnode import`, `init-prefix`).
    Local(&'static str),
    /// A replicated batch from an upstream (its URL or name).
    Replica,
}

impl Origin {
    fn front(&self) -> &'static str {
        match self {
            Origin::Client(front, _) | Origin::Local(front) => front,
            Origin::Replica => "sync",
        }
    }

    fn addr(&self) -> String {
        match self {
            Origin::Client(_, addr) => addr.to_string(),
            Origin::Local(_) => "local".to_string(),
            Origin::Replica => "upstream".to_string(),
        }
    }
}

/// Format value indexes as `1,2,100` (empty for whole-handle operations).
pub fn indexes(list: impl IntoIterator<Item = u32>) -> String {
    let mut out = String::new();
    for (i, index) in list.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&index.to_string());
    }
    out
}

/// Log a write: `op` is create, add, modify, remove, delete, home, unhome, import_batch or
/// replicated_batch; `result` is `ok` or the error's text.
pub fn write(origin: Origin, who: &str, op: &str, handle: &str, indexes: &str, result: &str) {
    let front = origin.front();
    let from = origin.addr();
    append(fields(&[
        ("event", "write"),
        ("front", front),
        ("from", &from),
        ("who", who),
        ("op", op),
        ("handle", handle),
        ("indexes", indexes),
        ("result", result),
    ]));
    tracing::info!(
        target: TARGET,
        event = "write",
        front,
        from,
        who,
        op,
        handle,
        indexes,
        result,
    );
}

/// A login or an authentication failure, to the audit file and to tracing at `$level`,
/// its detail (`$detail`, a `&str` variable) under the field of the same name. A macro, not
/// a function: tracing wants the level and the field names fixed where the event is written.
macro_rules! authentication_event {
    ($level:ident, $event:literal, $front:expr, $from:expr, $who:expr, $detail:ident) => {{
        let (front, from, who): (&str, IpAddr, &str) = ($front, $from, $who);
        append(fields(&[
            ("event", $event),
            ("front", front),
            ("from", &from.to_string()),
            ("who", who),
            (stringify!($detail), $detail),
        ]));
        tracing::$level!(
            target: TARGET,
            event = $event,
            front,
            from = %from,
            who,
            $detail,
        );
    }};
}

/// Log a successful login or session authentication: `how` says which (for example
/// `login_key`, `login_password`, `session`).
pub fn login(front: &str, from: IpAddr, identity: &str, how: &str) {
    authentication_event!(info, "login", front, from, identity, how);
}

/// Log a failed (or refused) authentication from `from` at front end `front`, claiming
/// `identity` when one was named.
pub fn auth_failure(front: &str, from: IpAddr, identity: Option<&str>, reason: &str) {
    let who = identity.unwrap_or("-");
    authentication_event!(warn, "auth_failure", front, from, who, reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_comma_separated() {
        assert_eq!(indexes([1, 2, 300]), "1,2,300");
        assert_eq!(indexes(Vec::<u32>::new()), "");
    }

    /// Logins and authentication failures reach the audit file with their fields (the only
    /// test here that opens one: other tests' events in this process go to it as well, so
    /// it looks for its own lines only).
    #[test]
    fn authentication_events_are_written_to_the_audit_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        open_file(&path).unwrap();
        let from: IpAddr = "192.0.2.7".parse().unwrap();
        login("native", from, "300:0.NA/audit-test-login", "login_key");
        auth_failure(
            "rest",
            from,
            Some("300:0.NA/audit-test-failure"),
            "bad secret",
        );
        auth_failure("rest", from, None, "audit-test-anonymous");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let find = |field: &str, value: &str| {
            lines
                .iter()
                .find(|l| l[field] == value)
                .unwrap_or_else(|| panic!("no line with {field} = {value}: {text}"))
                .clone()
        };
        let login = find("who", "300:0.NA/audit-test-login");
        assert_eq!(login["event"], "login");
        assert_eq!(login["front"], "native");
        assert_eq!(login["from"], "192.0.2.7");
        assert_eq!(login["how"], "login_key");
        assert!(login["time"].is_string());
        let failure = find("who", "300:0.NA/audit-test-failure");
        assert_eq!(failure["event"], "auth_failure");
        assert_eq!(failure["front"], "rest");
        assert_eq!(failure["reason"], "bad secret");
        assert_eq!(find("reason", "audit-test-anonymous")["who"], "-");
    }
}
