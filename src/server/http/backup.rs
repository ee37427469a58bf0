//! `GET /sync/export`: an online backup of the running node (issue 14), the whole registry
//! as JSON Lines consistent at one sequence number ([`write_json_lines_at_one_seq`]: the
//! method and why it is consistent are in `resolve::export`), streamed with bounded memory.
//! `idnode export --online` is its client (`sync::backup`).
//!
//! Only the node's operator may ask (the operator token, `<data_dir>/sync-operator.token`,
//! over HTTPS, from loopback or with `allow_plain`, as for `/sync/status`): the export holds
//! every secret. It takes a `sync.max_concurrent_scans` permit like any full scan (503 +
//! `Retry-After` when none is free), for as long as it runs.
//!
//! Streaming: the scan runs on the blocking pool and writes into 64 KiB chunks that go
//! through a channel of [`CHUNKS_IN_FLIGHT`] to the response body, so a slow client slows
//! the scan instead of piling the registry up in memory, and a client that goes away stops
//! it, as does the node's shutdown. A failure half-way ends the body with an error (the connection is cut before the
//! end of the chunked body), and the file then lacks its trailer line: the client can tell.
//! It sits beside `feed` because it shares its authentication and scan permits.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper::body::{Bytes, Frame};
use tokio::sync::mpsc;

use super::feed::{authenticate_caller, error, scan_permit, Caller, FeedState};
use crate::resolve::export::write_json_lines_at_one_seq;

/// Bytes gathered before a chunk goes to the client (a record longer than that goes alone).
const CHUNK_BYTES: usize = 64 << 10;

/// Chunks between the scan and the client before the scan waits.
pub const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// The response body: the chunks the scan sends, in order.
struct ChannelBody(mpsc::Receiver<Chunk>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}

/// What the scan writes into: chunks of [`CHUNK_BYTES`] handed to the body, blocking while
/// [`CHUNKS_IN_FLIGHT`] are waiting (run it on a blocking thread).
struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Chunk>,
    /// Node shutdown: an export under way stops (the client sees it cut) rather than hold
    /// the graceful shutdown up for as long as the scan takes.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if *self.shutdown.borrow() {
            return Err(std::io::Error::other("the node is shutting down"));
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

pub async fn export(State(state): State<Arc<FeedState>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<super::ConnInfo>()
        .map(|c| c.peer.ip());
    match authenticate_caller(&state, &req, true) {
        Ok(Caller::Operator) => {}
        Ok(Caller::Follower(identity, _)) => {
            return error(
                StatusCode::FORBIDDEN,
                402,
                &format!("{identity} may not export this node: the export is its operator's"),
            )
        }
        Err(resp) => return *resp,
    }
    let permit = match scan_permit(&state) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let registry = state.http.engine().registry().clone();
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let shutdown = state.shutdown.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = ChunkWriter {
            buf: Vec::with_capacity(CHUNK_BYTES),
            tx: tx.clone(),
            shutdown,
        };
        let origin = match peer {
            Some(ip) => crate::audit::Origin::Client("rest", ip),
            None => crate::audit::Origin::Local("export"),
        };
        match write_json_lines_at_one_seq(&registry, &mut out) {
            Ok(t) => {
                tracing::info!(
                    seq = t.consistent_at_seq,
                    records = t.records,
                    changes = t.changes,
                    "online export served"
                );
                let summary = format!(
                    "{} records and {} changes, consistent at sequence {}",
                    t.records, t.changes, t.consistent_at_seq
                );
                crate::audit::write(origin, "operator", "export", "*", &summary, "ok");
            }
            Err(e) => {
                tracing::warn!(error = %e, "online export stopped");
                crate::audit::write(origin, "operator", "export", "*", &e.to_string(), "error");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/x-ndjson"),
        )],
        axum::body::Body::new(ChannelBody(rx)),
    )
        .into_response()
}
