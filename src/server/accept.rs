//! The TCP accept loop shared by the HTTP and native TCP front ends: one task per connection,
//! at most `limit` connections at once (more wait in the kernel's accept queue), a back-off
//! when accepting fails (out of file descriptors), and on shutdown: stop accepting, then give
//! open connections a bounded time to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// How long open connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept until `shutdown` changes, serving each connection with `serve` in its own task.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let task = serve(stream, peer);
        connections.spawn(async move {
            let _permit = permit;
            task.await;
        });
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Wait for the start of the next request on a long-lived connection: fill `head`, or
/// return `Ok(false)` when the connection should end quietly (idle for `idle_timeout`, closed
/// by the client between requests, or shutdown).
pub async fn read_next(
    stream: &mut TcpStream,
    head: &mut [u8],
    idle_timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<bool> {
    tokio::select! {
        _ = shutdown.changed() => Ok(false),
        r = tokio::time::timeout(idle_timeout, stream.read_exact(head)) => match r {
            Err(_) => Ok(false),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => Ok(true),
        },
    }
}

/// Read the rest of a started request, at most `timeout`: `Ok(false)` if it did not arrive.
pub async fn read_rest(
    stream: &mut TcpStream,
    buf: &mut [u8],
    timeout: Duration,
) -> std::io::Result<bool> {
    match tokio::time::timeout(timeout, stream.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(false),
    }
}
