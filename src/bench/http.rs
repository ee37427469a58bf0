//! The HTTP API over HTTP/1.1 and HTTPS: `GET /api/handles/<id>` over `concurrency`
//! keep-alive connections (hyper's client connection API, rustls for https), each with one
//! request in flight, closed loop or (with `rate`) on the shared open-loop
//! [`Schedule`](super::Schedule).
//! Responses are counted by status (`HTTP200`, `HTTP404`, …).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::stats::Stats;
use super::{hits_and_misses, run_connections, BenchConfig, BenchError, Draw, Pace, Proto, Run};

/// HTTP(S): `concurrency` keep-alive connections, closed loop or (with `rate`) a shared
/// schedule of send times.
pub(super) async fn run_http(
    run: &Run<'_, Uri>,
    target: Arc<HttpTarget>,
) -> Result<(Stats, Duration), BenchError> {
    run_connections(run, |draw, pace, stats| {
        HttpWorker {
            target: target.clone(),
            draw,
            pace,
        }
        .run(stats)
    })
    .await
}

/// Bytes escaped in an identifier put in a request path: everything but RFC 3986 `pchar`s and
/// `/` (the server's `/api/handles/{*handle}` route percent-decodes the rest of the path, so
/// the prefix/suffix slash may stay literal, as pyhandle sends it).
const HANDLE_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/');

/// The `Authorization` header of an administrator `user` (`INDEX:HANDLE`) with `secret`, as
/// the REST API takes it: HTTP Basic with the user's `:` percent-encoded.
pub fn basic_authorization(user: &str, secret: &str) -> Result<HeaderValue, String> {
    crate::auth::Identity::parse(
        user,
        crate::model::SuffixCase::Sensitive,
        crate::auth::IndexRule::Required,
    )
    .map_err(|e| format!("--auth-user {user:?}: {e}"))?;
    let user = user.replacen(':', "%3A", 1);
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{secret}"),
    );
    HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|_| "the secret is not valid in an HTTP header".to_string())
}

/// The body of the `n`th write (`--put`): a URL and a DESC value that differ per write.
fn put_body(n: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"values":[{{"index":1,"type":"URL","data":"https://bench.example/w/{n}"}},{{"index":2,"type":"DESC","data":"idnode bench write {n}"}}]}}"#
    ))
}

/// The request path (`/api/handles/<id>`, percent-encoded) of one identifier.
pub fn http_path(id: &str) -> String {
    format!("/api/handles/{}", utf8_percent_encode(id, HANDLE_PATH))
}

/// Request URIs for the identifiers that exist and for misses.
pub(super) fn http_uris(cfg: &BenchConfig) -> Result<(Vec<Uri>, Vec<Uri>), BenchError> {
    let uri = |id: &str| -> Result<Uri, BenchError> {
        Uri::try_from(http_path(id)).map_err(|error| BenchError::NotInUrl {
            id: id.to_string(),
            error,
        })
    };
    hits_and_misses(cfg, uri)
}

/// Where and how HTTP workers connect.
pub(super) struct HttpTarget {
    server: SocketAddr,
    /// `Host` header value.
    host: HeaderValue,
    /// Connector and server name for https.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    /// `--put`: the `Authorization` header writes are sent with.
    put: Option<HeaderValue>,
}

impl HttpTarget {
    pub(super) fn new(cfg: &BenchConfig) -> Result<HttpTarget, BenchError> {
        let name = cfg
            .host
            .clone()
            .unwrap_or_else(|| cfg.server.ip().to_string());
        let authority = match name.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", cfg.server.port()),
            _ => format!("{name}:{}", cfg.server.port()),
        };
        let host =
            HeaderValue::from_str(&authority).map_err(|_| BenchError::BadHost(name.clone()))?;
        let tls = match cfg.proto {
            Proto::Https => {
                let config = cfg.tls.clone().ok_or(BenchError::NoTlsConfig)?;
                let server_name =
                    ServerName::try_from(name.clone()).map_err(|error| BenchError::BadTlsName {
                        name: name.clone(),
                        error,
                    })?;
                Some((tokio_rustls::TlsConnector::from(config), server_name))
            }
            _ => None,
        };
        Ok(HttpTarget {
            server: cfg.server,
            host,
            tls,
            timeout: cfg.timeout,
            put: cfg.put.clone(),
        })
    }

    /// A new keep-alive HTTP/1.1 connection; its driver runs as its own task until the
    /// returned sender is dropped or the connection fails.
    async fn connect(&self) -> Result<HttpSender, BenchError> {
        use hyper::client::conn::http1::handshake;
        let tcp = TcpStream::connect(self.server).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => {
                let (sender, conn) = handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await?;
                let (sender, conn) = handshake(TokioIo::new(tls)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }
        }
    }
}

type HttpSender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One HTTP connection with one request in flight; reconnects after errors.
struct HttpWorker {
    target: Arc<HttpTarget>,
    draw: Draw<Uri>,
    pace: Pace,
}

impl HttpWorker {
    async fn run(mut self, mut stats: Stats) -> Stats {
        let mut conn: Option<HttpSender> = None;
        while let Some(due) = self.pace.turn(&mut stats).await {
            // A connection the server closed between requests (idle timeout, `Connection:
            // close`) is replaced without counting a loss.
            if let Some(sender) = &mut conn {
                if sender.ready().await.is_err() {
                    conn = None;
                }
            }
            let uri = self.draw.next().clone();
            stats.sent += 1;
            let target = &self.target;
            let exchange = async {
                let sender = match &mut conn {
                    Some(sender) => sender,
                    None => conn.insert(target.connect().await?),
                };
                let request = match &target.put {
                    None => Request::get(uri)
                        .header(HOST, target.host.clone())
                        .body(Full::new(Bytes::new()))?,
                    Some(authorization) => Request::put(uri)
                        .header(HOST, target.host.clone())
                        .header(AUTHORIZATION, authorization.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .body(Full::new(put_body(stats.sent)))?,
                };
                let response = sender.send_request(request).await?;
                let status = response.status();
                // Read the body to the end so the connection can carry the next request.
                response.into_body().collect().await?;
                Ok::<String, BenchError>(format!("HTTP{}", status.as_u16()))
            };
            let outcome = tokio::time::timeout(target.timeout, exchange).await;
            if !stats.settle(outcome, due, target.timeout) {
                conn = None;
            }
        }
        stats.push_live(Instant::now(), true);
        stats
    }
}
