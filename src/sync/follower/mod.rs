//! Follow links: one tokio task per `[[sync.follow]]`.
//!
//! A link bootstraps when its cursor is 0 or when the upstream answers 410 (cursor older than
//! the retained log): page by page from a paged snapshot, resumable after a cut, verified by
//! digest ([`bootstrap`]), or from one whole snapshot when the upstream has no pages. Then it
//! long-polls `/sync/changes`. Each
//! batch is verified — sequences strictly increasing and above the cursor, `next` not below
//! the last sequence, keys under the followed prefixes, records decoding strictly (CRC) with
//! a handle whose key is the change's key — and applied with the cursor in one sled
//! transaction; a refused batch changes nothing and counts as a link error. Errors reconnect
//! with exponential backoff (100 ms doubling, capped at 5 s).
//!
//! Links speak HTTPS (rustls through [`crate::tls`]; the upstream's certificate checked
//! against `ca_file`) or, with `sync.allow_plain = true`, plain HTTP. The upstream's answers
//! are read as the typed [`crate::wire::sync`] messages its feed writes.
//!
//! A link is made from its [`FollowSettings`], which `config` builds from `[[sync.follow]]`
//! (this module does not know the TOML).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::auth::Identity;
use crate::metrics::Metrics;
use crate::model::{Handle, Prefix, SuffixCase};
use crate::store::{record, Action, Change, Registry, StoreError};
use crate::sync::key_under;
use crate::wire::sync::{ChangeAction, ChangeBatch, FeedError, Snapshot};

mod bootstrap;

/// Why a follow link stopped (it backs off and starts again; the message is its
/// `last_error` in `/sync/status`).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Setting the link up: its TLS client or its credential files.
    #[error("{0}")]
    Setup(String),
    /// Reaching the upstream: connecting, TLS, HTTP, timeouts.
    #[error("{0}")]
    Transport(String),
    /// The upstream refused a request.
    #[error("{what} refused: {status} {message:?}")]
    Refused {
        what: &'static str,
        status: u16,
        message: String,
    },
    /// An answer that fails verification: out of order, outside the followed prefixes,
    /// records that do not decode or do not belong under their keys.
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

fn invalid(text: impl Into<String>) -> SyncError {
    SyncError::Invalid(text.into())
}

fn transport(text: impl Into<String>) -> SyncError {
    SyncError::Transport(text.into())
}

/// What `/sync/status` shows for one link (the wire type, kept by the link's task).
pub use crate::wire::sync::LinkStatus;

/// One `[[sync.follow]]` link, validated: what [`Link::new`] needs.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    /// The upstream's base URL (`http(s)://host:port`, no trailing `/`): the link's name.
    pub upstream: String,
    /// `host:port` to connect to.
    pub host: String,
    /// Whether the link speaks HTTPS.
    pub https: bool,
    /// The follower identity the upstream lists in its `[[sync.allow]]`.
    pub identity: Identity,
    /// How the identity proves itself.
    pub credential: FollowCredential,
    /// The prefixes followed (at least one).
    pub prefixes: Vec<Prefix>,
    /// PEM certificates trusted for an `https://` upstream.
    pub ca_file: Option<PathBuf>,
    /// Accept any upstream certificate (tests only).
    pub insecure_skip_verify: bool,
    /// Records asked for per page of a paged bootstrap (the upstream caps it at
    /// [`crate::store::bootstrap::MAX_PAGE_RECORDS`]).
    pub bootstrap_page: usize,
}

/// Records per bootstrap page by default (`bootstrap_page`).
pub const DEFAULT_BOOTSTRAP_PAGE: usize = 1000;

/// A follower identity's credential (`secret_file`, `private_key`, `client_cert`).
#[derive(Debug, Clone)]
pub enum FollowCredential {
    /// Its HS_SECKEY secret, read from this file and sent as HTTP Basic.
    Secret(PathBuf),
    /// The PEM private key of its HS_PUBKEY: every request is signed with it.
    Key(PathBuf),
    /// That key with a certificate naming the identity, presented as the TLS client
    /// certificate (HTTPS only).
    ClientCert { key: PathBuf, cert: PathBuf },
}

pub type Links = Arc<Mutex<BTreeMap<String, LinkStatus>>>;

/// Long-poll wait asked of the upstream.
const WAIT_MS: u64 = 10_000;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Link {
    pub name: String,
    pub host: String,
    /// For `https://` upstreams: the connector and the name the certificate must carry.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    pub prefixes: Vec<Prefix>,
    authorization: LinkAuth,
    pub case: SuffixCase,
    /// Records asked for per bootstrap page.
    pub page: usize,
}

/// How a link authenticates its requests to the upstream.
enum LinkAuth {
    /// `Authorization: Basic` with the identity's HS_SECKEY secret (HTTPS keeps it private).
    Basic(String),
    /// Every request signed with the identity's HS_PUBKEY private key:
    /// `Authorization: HS_PUBKEY id="<index:handle>", t="<unix>", sig="<base64>"`.
    Key {
        identity: String,
        key: Box<crate::auth::challenge::PrivateKey>,
    },
    /// The identity proven by the TLS client certificate the connection presents.
    ClientCert,
}

impl LinkAuth {
    fn header(&self, path_and_query: &str) -> String {
        match self {
            LinkAuth::Basic(h) => h.clone(),
            LinkAuth::Key { identity, key } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let (nonce, digest) = crate::sync::request_signature_input(now, path_and_query);
                let sig = base64::engine::general_purpose::STANDARD
                    .encode(key.sign_answer(&nonce, &digest));
                format!("HS_PUBKEY id=\"{identity}\", t=\"{now}\", sig=\"{sig}\"")
            }
            LinkAuth::ClientCert => "Handle clientCert=\"true\"".to_string(),
        }
    }
}

impl Link {
    /// Set a link up: read its credential files and build its TLS client (nothing connects
    /// yet).
    pub fn new(f: &FollowSettings, case: SuffixCase) -> Result<Link, SyncError> {
        let host = f.host.clone();
        let tls = if f.https {
            let client_cert = match &f.credential {
                FollowCredential::ClientCert { key, cert } => Some((cert.as_path(), key.as_path())),
                _ => None,
            };
            let config = crate::tls::client_config_with_cert(
                f.ca_file.as_deref(),
                f.insecure_skip_verify,
                client_cert,
            )
            .map_err(|e| SyncError::Setup(format!("{}: {e}", f.upstream)))?;
            let name = host
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(&host)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| SyncError::Setup(format!("{}: {e}", f.upstream)))?;
            Some((tokio_rustls::TlsConnector::from(config), name))
        } else {
            None
        };
        // The identity as `index:handle` (the handle as configured), as the upstream parses it.
        let identity = f.identity.to_string();
        let authorization = match &f.credential {
            FollowCredential::ClientCert { .. } => LinkAuth::ClientCert,
            FollowCredential::Key(key_file) => {
                let pem = std::fs::read_to_string(key_file).map_err(|e| {
                    SyncError::Setup(format!("reading {}: {e}", key_file.display()))
                })?;
                let key = crate::auth::challenge::PrivateKey::from_pem(&pem)
                    .map_err(|e| SyncError::Setup(format!("{}: {e}", key_file.display())))?;
                LinkAuth::Key {
                    identity,
                    key: Box::new(key),
                }
            }
            FollowCredential::Secret(secret_file) => {
                let secret = std::fs::read_to_string(secret_file).map_err(|e| {
                    SyncError::Setup(format!("reading {}: {e}", secret_file.display()))
                })?;
                let user: String = percent_encoding::utf8_percent_encode(
                    &identity,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .to_string();
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", secret.trim()));
                LinkAuth::Basic(format!("Basic {token}"))
            }
        };
        Ok(Link {
            name: f.upstream.clone(),
            host,
            tls,
            prefixes: f.prefixes.clone(),
            authorization,
            case,
            page: f
                .bootstrap_page
                .clamp(1, crate::store::bootstrap::MAX_PAGE_RECORDS),
        })
    }

    fn prefix_query(&self) -> String {
        self.prefixes
            .iter()
            .map(|p| format!("&prefix={}", p.as_str()))
            .collect()
    }

    /// GET `path` from the upstream and read the answer: a 200 as the message `T`, anything
    /// else as the upstream's refusal.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>, SyncError> {
        self.get_limited(path, None).await
    }

    /// [`Link::get`], reading at most `max_body` bytes of the answer (a longer one is an
    /// error before it is all in memory).
    async fn get_limited<T: DeserializeOwned>(
        &self,
        path: &str,
        max_body: Option<usize>,
    ) -> Result<Answer<T>, SyncError> {
        let (status, body) = self.fetch(path, max_body).await?;
        if status == 200 {
            let message = serde_json::from_slice(&body).map_err(|e| {
                invalid(format!(
                    "upstream answered {status} with unreadable JSON: {e}"
                ))
            })?;
            return Ok(Answer::Ok(message));
        }
        let message = match serde_json::from_slice::<FeedError>(&body) {
            Ok(refusal) => refusal.message,
            Err(_) => String::from_utf8_lossy(&body).chars().take(200).collect(),
        };
        Ok(Answer::Refused(status, message))
    }

    /// GET `path` from the upstream (one connection per request): (status, body).
    async fn fetch(&self, path: &str, max_body: Option<usize>) -> Result<(u16, Bytes), SyncError> {
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(&self.host),
        )
        .await
        .map_err(|_| transport(format!("connecting to {} timed out", self.host)))?
        .map_err(|e| transport(format!("connecting to {}: {e}", self.host)))?;
        match &self.tls {
            None => self.exchange(stream, path, max_body).await,
            Some((connector, name)) => {
                let stream = tokio::time::timeout(
                    Duration::from_secs(10),
                    connector.connect(name.clone(), stream),
                )
                .await
                .map_err(|_| transport(format!("TLS handshake with {} timed out", self.host)))?
                .map_err(|e| transport(format!("TLS handshake with {}: {e}", self.host)))?;
                self.exchange(stream, path, max_body).await
            }
        }
    }

    async fn exchange<I>(
        &self,
        io: I,
        path: &str,
        max_body: Option<usize>,
    ) -> Result<(u16, Bytes), SyncError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| transport(format!("HTTP with {}: {e}", self.host)))?;
        let driver = tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .header(
                hyper::header::AUTHORIZATION,
                self.authorization.header(path),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| transport(format!("request {path}: {e}")))?;
        let fut = async {
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = match max_body {
                None => resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?,
                Some(max) => http_body_util::Limited::new(resp.into_body(), max)
                    .collect()
                    .await
                    .map_err(|e| format!("answer past {max} bytes or cut: {e}"))?,
            };
            Ok::<_, String>((status, body.to_bytes()))
        };
        let result = tokio::time::timeout(Duration::from_millis(WAIT_MS + 10_000), fut).await;
        driver.abort();
        result
            .map_err(|_| transport("upstream timed out"))?
            .map_err(|e| transport(format!("HTTP with {}: {e}", self.host)))
    }
}

/// What the upstream answered a feed request.
enum Answer<T> {
    /// 200, with its message.
    Ok(T),
    /// Any other status, with the refusal's message.
    Refused(u16, String),
}

/// A record as the feed sent it (`data`, base64 of the stored encoding), decoded strictly
/// (CRC and layout) and checked to belong under `key`.
fn decode_record(
    data: Option<&str>,
    key: &str,
    case: SuffixCase,
) -> Result<record::Record, SyncError> {
    let data = data.ok_or_else(|| invalid(format!("{key}: no record data")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| invalid(format!("{key}: {e}")))?;
    let rec = record::decode_record(&bytes).map_err(|e| invalid(format!("{key}: {e}")))?;
    let handle = Handle::parse(&rec.handle, case).map_err(|e| invalid(format!("{key}: {e}")))?;
    if handle.key() != key {
        return Err(invalid(format!(
            "record {} does not belong under key {key}",
            rec.handle
        )));
    }
    Ok(rec)
}

/// Verify a `/sync/changes` answer against the cursor: returns the changes, the new cursor
/// and the upstream's newest sequence.
pub fn verify_batch(
    batch: &ChangeBatch,
    cursor: u64,
    prefixes: &[Prefix],
    case: SuffixCase,
) -> Result<(Vec<Change>, u64, u64), SyncError> {
    let (next, last_seq) = (batch.next, batch.last_seq);
    if next < cursor {
        return Err(invalid(format!(
            "batch goes back: next {next} < cursor {cursor}"
        )));
    }
    let mut prev = cursor;
    let mut out = Vec::with_capacity(batch.changes.len());
    for item in &batch.changes {
        let seq = item.seq;
        if seq <= prev {
            return Err(invalid(format!(
                "sequence {seq} not above {prev} (replayed or out of order)"
            )));
        }
        if seq > next {
            return Err(invalid(format!(
                "sequence {seq} beyond the batch end {next}"
            )));
        }
        prev = seq;
        let key = item.key.as_str();
        if !key_under(key, prefixes) {
            return Err(invalid(format!(
                "key {key} is outside the followed prefixes"
            )));
        }
        let action = match item.action {
            ChangeAction::Create => Action::Create,
            ChangeAction::Update => Action::Update,
            ChangeAction::Delete => Action::Delete,
        };
        let record = match action {
            Action::Delete => None,
            _ => Some(decode_record(item.data.as_deref(), key, case)?),
        };
        out.push(Change {
            seq,
            unix_millis: item.unix_millis,
            action,
            key: key.to_string(),
            record,
        });
    }
    Ok((out, next, last_seq))
}

/// Verify a `/sync/snapshot` answer: returns its sequence and the records by key (every key
/// under the followed prefixes, every record decoding strictly and belonging under its key).
pub fn verify_snapshot(
    snapshot: &Snapshot,
    prefixes: &[Prefix],
    case: SuffixCase,
) -> Result<(u64, Vec<(String, record::Record)>), SyncError> {
    let mut records = Vec::with_capacity(snapshot.records.len());
    for item in &snapshot.records {
        let key = item.key.as_str();
        if !key_under(key, prefixes) {
            return Err(invalid(format!(
                "snapshot key {key} is outside the followed prefixes"
            )));
        }
        records.push((key.to_string(), decode_record(Some(&item.data), key, case)?));
    }
    Ok((snapshot.seq, records))
}

struct Runner {
    link: Link,
    registry: Arc<Registry>,
    metrics: Metrics,
    links: Links,
}

impl Runner {
    fn update(&self, f: impl FnOnce(&mut LinkStatus)) {
        let mut links = crate::lock::lock(&self.links);
        if let Some(s) = links.get_mut(&self.link.name) {
            f(s);
        }
    }

    /// Run `f` on the registry on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Registry) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let reg = self.registry.clone();
        tokio::task::spawn_blocking(move || f(&reg))
            .await
            .map_err(|e| SyncError::Setup(format!("{what}: {e}")))?
            .map_err(SyncError::from)
    }

    /// Follow until an error.
    async fn run(&self) -> Result<(), SyncError> {
        let name = &self.link.name;
        let mut cursor = match self.registry.bootstrap_state(name)? {
            Some(state) => self.bootstrap(Some(state)).await?,
            None => match self.registry.cursor(name)? {
                0 => self.bootstrap(None).await?,
                cursor => cursor,
            },
        };
        loop {
            self.update(|s| s.state = "streaming".into());
            match self.follow_step(cursor, 500, WAIT_MS).await? {
                Some(next) => cursor = next,
                None => cursor = self.bootstrap(None).await?,
            }
        }
    }

    /// One `/sync/changes` request after `cursor` (at most `limit` log entries, waiting up
    /// to `wait_ms` for something new): the batch verified and applied with its cursor.
    /// The new cursor, or `None` when the upstream says to re-bootstrap (410).
    async fn follow_step(
        &self,
        cursor: u64,
        limit: u64,
        wait_ms: u64,
    ) -> Result<Option<u64>, SyncError> {
        let answer = self
            .link
            .get::<ChangeBatch>(&format!(
                "/sync/changes?after={cursor}&limit={limit}&wait_ms={wait_ms}{}",
                self.link.prefix_query()
            ))
            .await?;
        let batch = match answer {
            Answer::Ok(batch) => batch,
            Answer::Refused(410, _) => return Ok(None),
            Answer::Refused(status, message) => {
                return Err(SyncError::Refused {
                    what: "changes",
                    status,
                    message,
                })
            }
        };
        let (changes, next, last_seq) =
            verify_batch(&batch, cursor, &self.link.prefixes, self.link.case)?;
        let newest_millis = changes.last().map(|c| c.unix_millis);
        let n = changes.len() as u64;
        let mut cursor = cursor;
        if next > cursor {
            let name = self.link.name.clone();
            self.blocking("applying a batch", move |reg| {
                reg.apply_replicated(&changes, &name, next)
            })
            .await?;
            crate::audit::write(
                crate::audit::Origin::Replica,
                &self.link.name,
                "replicated_batch",
                &self
                    .link
                    .prefixes
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                &format!("{n} changes to sequence {next}"),
                "ok",
            );
            cursor = next;
        }
        let lag = last_seq.saturating_sub(cursor);
        let label = [self.link.name.as_str()];
        self.metrics
            .sync_applied
            .with_label_values(&label)
            .inc_by(n);
        self.metrics
            .sync_lag_sequences
            .with_label_values(&label)
            .set(lag as i64);
        let lag_secs = match newest_millis {
            Some(ms) if lag > 0 || n > 0 => (now_millis().saturating_sub(ms)) as f64 / 1000.0,
            _ => 0.0,
        };
        self.metrics
            .sync_lag_seconds
            .with_label_values(&label)
            .set(lag_secs);
        self.update(|s| {
            s.cursor = cursor;
            s.upstream_last_seq = last_seq;
            s.lag_sequences = lag;
            s.applied += n;
        });
        Ok(Some(cursor))
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Run one link until shutdown: follow, and on error back off and follow again.
pub async fn run_link(
    link: Link,
    registry: Arc<Registry>,
    metrics: Metrics,
    links: Links,
    mut shutdown: watch::Receiver<bool>,
) {
    {
        let mut l = crate::lock::lock(&links);
        l.insert(
            link.name.clone(),
            LinkStatus {
                link: link.name.clone(),
                upstream: link.name.clone(),
                prefixes: link.prefixes.iter().map(|p| p.to_string()).collect(),
                state: "starting".into(),
                cursor: registry.cursor(&link.name).unwrap_or(0),
                ..LinkStatus::default()
            },
        );
    }
    let runner = Runner {
        link,
        registry,
        metrics,
        links,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = runner.run() => r,
            _ = shutdown.changed() => return,
        };
        if let Err(e) = result {
            tracing::warn!(link = %runner.link.name, error = %e, "sync link error");
            runner
                .metrics
                .sync_errors
                .with_label_values(&[&runner.link.name])
                .inc();
            runner.update(|s| {
                s.errors += 1;
                s.state = "backoff".into();
                s.last_error = Some(e.to_string());
            });
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(key: &str) -> String {
        let rec = record::Record {
            handle: key.into(),
            values: vec![],
        };
        base64::engine::general_purpose::STANDARD.encode(record::encode_record(&rec))
    }

    #[test]
    fn forged_batches_are_refused() {
        let p = vec![Prefix::parse("88.100").unwrap()];
        let c = SuffixCase::Sensitive;
        // The batches as JSON, read as the follower reads an answer.
        let verify_batch = |body: &serde_json::Value, cursor, p: &[Prefix], c| {
            let batch: ChangeBatch = serde_json::from_value(body.clone()).unwrap();
            verify_batch(&batch, cursor, p, c)
        };
        let ok = json!({"next": 7, "last_seq": 7, "changes": [
            {"seq": 6, "action": "create", "key": "88.100/A", "data": data("88.100/A")},
            {"seq": 7, "action": "delete", "key": "88.100/B"}]});
        assert_eq!(verify_batch(&ok, 5, &p, c).unwrap().0.len(), 2);
        // Replay (not above the cursor), out of order, outside the prefixes, forged record.
        assert!(verify_batch(&ok, 6, &p, c).is_err());
        let bad = [
            json!({"next": 7, "last_seq": 7, "changes": [
                {"seq": 7, "action": "delete", "key": "88.100/B"},
                {"seq": 6, "action": "delete", "key": "88.100/A"}]}),
            json!({"next": 6, "last_seq": 6, "changes": [
                {"seq": 6, "action": "delete", "key": "88.200/A"}]}),
            json!({"next": 6, "last_seq": 6, "changes": [
                {"seq": 6, "action": "create", "key": "88.100/A", "data": data("88.100/Z")}]}),
            json!({"next": 6, "last_seq": 6, "changes": [
                {"seq": 6, "action": "create", "key": "88.100/A", "data": "AAAA"}]}),
            json!({"next": 4, "last_seq": 6, "changes": []}),
        ];
        for b in bad {
            assert!(verify_batch(&b, 5, &p, c).is_err(), "{b}");
        }
    }
}
