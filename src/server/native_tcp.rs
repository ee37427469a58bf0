//! The native protocol over TCP (port 2641): many requests per connection (the national SDK
//! keeps one connection open), each an envelope plus `messageLength` bytes, answered in order
//! on the same connection; list operations answer with several messages (CN set on all but
//! the last). Connections are capped and closed after an idle timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::accept::{read_next, read_rest};
use super::native::{NativeService, Outcome, Source};
use crate::wire::handle::message::{op, Envelope, ENVELOPE_LEN, MAX_MESSAGE_LEN};

/// How long a started message may take to arrive in full.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve the native protocol on `listener` until shutdown; see [`super::accept::accept_loop`]
/// for the connection cap and draining.
pub async fn serve_tcp(
    listener: TcpListener,
    service: Arc<NativeService>,
    limit: Arc<Semaphore>,
    idle_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let on_shutdown = shutdown.clone();
    super::accept::accept_loop(listener, limit, on_shutdown, move |stream, peer| {
        let service = service.clone();
        let shutdown = shutdown.clone();
        async move {
            if let Err(e) = connection(stream, peer, service, idle_timeout, shutdown).await {
                tracing::debug!(%peer, error = %e, "native TCP connection ended");
            }
        }
    })
    .await;
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    service: Arc<NativeService>,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut head = [0u8; ENVELOPE_LEN];
    loop {
        // Wait for the next request: idle timeout, client close or shutdown end the connection.
        if !read_next(&mut stream, &mut head, idle_timeout, &mut shutdown).await? {
            return Ok(());
        }
        let envelope = match Envelope::decode(&head) {
            Ok(e) => e,
            Err(e) => {
                // Over the 256 KiB limit: the stream cannot be resynchronized; close it.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ));
            }
        };
        let len = envelope.message_length as usize;
        debug_assert!(len <= MAX_MESSAGE_LEN);
        let mut message = vec![0u8; len];
        if !read_rest(&mut stream, &mut message, READ_TIMEOUT).await? {
            return Ok(());
        }
        // Resolutions are a registry read, answered here like the UDP and HTTP front ends do.
        // Everything else may block: writes fsync before answering, challenge answers run key
        // derivation; those go to the blocking pool, off the async workers.
        let op_code = message
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes);
        let outcome = if op_code == Some(op::RESOLUTION) {
            service.process(envelope, &message, Source::tcp(peer.ip()))
        } else {
            let svc = service.clone();
            tokio::task::spawn_blocking(move || {
                svc.process(envelope, &message, Source::tcp(peer.ip()))
            })
            .await
            .map_err(std::io::Error::other)?
        };
        let responses = match outcome {
            Outcome::Done(responses) => responses,
            Outcome::Recurse(job) => service.recurse(*job).await,
        };
        for r in responses {
            stream.write_all(&r).await?;
        }
    }
}
