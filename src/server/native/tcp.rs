//! The native protocol over TCP (port 2641): many requests per connection (the national SDK
//! keeps one connection open), each an envelope plus `messageLength` bytes, answered in order
//! on the same connection; list operations answer with several messages (CN set on all but
//! the last). Connections are bounded as [`crate::server::accept`] describes: per client address and
//! in total, closed after an idle timeout, a request deadline or a stalled write; a
//! connection that keeps sending requests stays open indefinitely.
//!
//! Each connection has its own login state (the ID-SDK's opCodes 2000/2001, see
//! [`super::sdk`]), created with the connection and gone when it closes.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{NativeService, Outcome};
use crate::server::accept::{next_request, read_by, write_answer, Connection, ConnectionTable};
use crate::wire::handle::message::{op, Envelope, ENVELOPE_LEN, MAX_MESSAGE_LEN};
use crate::wire::handle::peek;

/// Serve the native protocol on `listener` until shutdown; see [`crate::server::accept`] for the
/// connection bounds and draining.
pub async fn serve_tcp(
    listener: TcpListener,
    service: Arc<NativeService>,
    table: Arc<ConnectionTable>,
    shutdown: watch::Receiver<bool>,
) {
    crate::server::accept::serve_connections(
        listener,
        service,
        table,
        shutdown,
        "native TCP",
        connection,
    )
    .await;
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    service: Arc<NativeService>,
    conn: Connection,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut head = [0u8; ENVELOPE_LEN];
    // Dropped (and the login forgotten) however this function returns.
    let login = service.open_connection();
    let source = login.source(peer.ip());
    loop {
        // Wait for the next request: idle timeout, eviction, client close or shutdown end the
        // connection; once its first byte is in, all of it must arrive by the deadline.
        let Some(started) = next_request(&mut stream, &mut head, &conn, &mut shutdown).await?
        else {
            return Ok(());
        };
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
        if !read_by(&mut stream, &mut message, started.deadline, &conn).await? {
            return Ok(());
        }
        // Resolutions are a registry read, answered here like the UDP and HTTP front ends do.
        // Everything else may block: writes fsync before answering, challenge answers run key
        // derivation; those go to the blocking pool, off the async workers.
        let outcome = if peek::Message(&message).op_code() == Some(op::RESOLUTION) {
            service.process(envelope, &message, source)
        } else {
            let svc = service.clone();
            tokio::task::spawn_blocking(move || svc.process(envelope, &message, source))
                .await
                .map_err(std::io::Error::other)?
        };
        let responses = match outcome {
            Outcome::Done(responses) => responses,
            Outcome::Recurse(job) => service.recurse(*job).await,
        };
        // Each message must be taken by the client within the write timeout.
        for r in responses {
            if !write_answer(&mut stream, &r, &conn).await? {
                return Ok(());
            }
        }
        drop(started);
    }
}
