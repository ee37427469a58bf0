//! Serving HTTP/1.1 (hyper, keep-alive, TLS when configured) on the node's listener: the
//! accept loop of [`accept`], the TLS handshake with its timeout and the client certificate
//! it carries, each request's body deadline ([`DeadlineBody`]), stalled-write and header-read
//! timeouts, graceful shutdown and eviction. The router it serves is [`http`]'s; this file
//! is the connection under it, which is why it sits beside, not inside, `http`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{accept, http};
use crate::config::ValidConfig;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP listener's connection bounds. Hyper's header-read timeout runs from when the node
/// starts waiting for a request, so the request timeout is also the keep-alive idle timeout.
pub(super) fn http_limits(config: &ValidConfig) -> accept::Limits {
    let h = &config.http;
    accept::Limits {
        max_connections: h.max_connections,
        per_client: h.max_connections_per_client,
        idle_timeout: h.request_timeout,
        request_timeout: h.request_timeout,
        write_timeout: h.write_timeout,
    }
}

/// Serve HTTP/1.1 (keep-alive; TLS when an acceptor is given) on `listener` until shutdown;
/// see [`accept`] for the connection bounds and draining. On each connection: the request
/// head must arrive within the request timeout of the node starting to wait for it (hyper's
/// header-read timeout, which also bounds idle keep-alive), the body within the request
/// timeout of the head ([`DeadlineBody`]), and a response write may stall at most the write
/// timeout.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    table: Arc<accept::ConnectionTable>,
    shutdown: watch::Receiver<bool>,
) {
    let on_shutdown = shutdown.clone();
    accept::accept_loop(listener, table, on_shutdown, move |stream, peer, conn| {
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        async move {
            let limits = *conn.limits();
            // A client that stops reading its responses stalls the writes: close it then.
            let mut io = tokio_io_timeout::TimeoutStream::new(stream);
            io.set_write_timeout(Some(limits.write_timeout));
            let io = Box::pin(io);
            // Every request on the connection carries what is known about it, its body gets
            // its deadline, and while it is in progress the connection is busy (not evicted).
            let service = |info: http::ConnInfo| {
                let body_timeout = limits.request_timeout;
                let mapped = tower::ServiceExt::map_request(
                    router,
                    move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        req.map(|body| DeadlineBody::new(body, body_timeout))
                    },
                );
                let inner = hyper_util::service::TowerToHyperService::new(mapped);
                let conn = conn.clone();
                hyper::service::service_fn(move |req| {
                    // Busy until the response body has been sent.
                    let busy = conn.busy();
                    let answer = hyper::service::Service::call(&inner, req);
                    async move {
                        let response = answer.await?;
                        Ok::<_, std::convert::Infallible>(
                            response.map(|inner| BusyBody { inner, _busy: busy }),
                        )
                    }
                })
            };
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io));
                    let accepted = tokio::select! {
                        r = handshake => r,
                        _ = conn.evicted() => return,
                    };
                    match accepted {
                        Ok(Ok(stream)) => {
                            let client_cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|cert| Arc::<[u8]>::from(cert.as_ref()));
                            let info = http::ConnInfo {
                                peer,
                                tls: true,
                                client_cert,
                            };
                            let service = service(info);
                            serve_http_connection(stream, service, peer, &conn, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    let info = http::ConnInfo {
                        peer,
                        tls: false,
                        client_cert: None,
                    };
                    let service = service(info);
                    serve_http_connection(io, service, peer, &conn, shutdown).await
                }
            }
        }
    })
    .await;
}

/// One HTTP/1.1 connection, with a header-read timeout, ended gracefully on shutdown or when
/// the connection table asks it to make room (hyper closes an idle connection at once and
/// one mid-request after its response).
async fn serve_http_connection<I, S, B>(
    io: I,
    service: S,
    peer: SocketAddr,
    conn: &accept::Connection,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Without a timer hyper silently applies no header-read timeout at all.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(conn.limits().request_timeout);
    let http = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(http);
    let result = tokio::select! {
        r = http.as_mut() => r,
        _ = shutdown.changed() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
        _ = conn.evicted() => {
            // Hyper closes a connection that has read nothing at once, finishes a request in
            // progress, but would wait out the header timeout for a partly sent head: with no
            // request in progress after a short grace, drop the connection.
            http.as_mut().graceful_shutdown();
            loop {
                tokio::select! {
                    r = http.as_mut() => break r,
                    _ = tokio::time::sleep(EVICTION_GRACE) => {
                        if !conn.is_busy() {
                            break Ok(());
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            conn.table().count_closed(accept::Closed::RequestTimeout);
        } else if is_write_timeout(&e) {
            conn.table().count_closed(accept::Closed::WriteTimeout);
        }
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// How long an HTTP connection asked to make room may take to close when no request is in
/// progress on it (it may still be flushing the end of its last response).
const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// A response body that keeps its connection busy (not evicted) until it has been sent.
struct BusyBody {
    inner: axum::body::Body,
    _busy: accept::Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a connection error is the stalled-write timeout of its stream.
fn is_write_timeout(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A request body that did not arrive in full within the request timeout of its head.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyDeadlinePassed;

impl BodyDeadlinePassed {
    /// Whether `e` (or an error it wraps) is a passed body deadline.
    pub fn caused(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if err.is::<BodyDeadlinePassed>() {
                return true;
            }
            cur = err.source();
        }
        false
    }
}

/// A request body with an absolute deadline: reading it past the deadline fails with
/// [`BodyDeadlinePassed`], so a client trickling a body cannot hold its connection.
pub struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: hyper::body::Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match std::future::Future::poll(this.deadline.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyDeadlinePassed)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
