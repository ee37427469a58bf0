//! Native Handle requests over TCP: `concurrency` connections, each with one request
//! outstanding, closed loop or (with `rate`) on the shared open-loop
//! [`Schedule`](super::Schedule).
//!
//! Responses are framed by their envelope and matched by request id with
//! `wire::handle::peek`, without decoding the body.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::stats::Stats;
use super::{run_connections, BenchError, Draw, Pace, Run};
use crate::wire::handle::message::{ENVELOPE_LEN, MAX_MESSAGE_LEN};
use crate::wire::handle::peek::{self, at};

/// Handle over TCP: `concurrency` connections, closed loop or (with `rate`) a shared
/// schedule of send times, like HTTP.
pub(super) async fn run_tcp(run: &Run<'_, Vec<u8>>) -> Result<(Stats, Duration), BenchError> {
    let (server, timeout) = (run.cfg.server, run.cfg.timeout);
    run_connections(run, |draw, pace, stats| {
        TcpWorker {
            server,
            draw,
            pace,
            timeout,
        }
        .run(stats)
    })
    .await
}

/// One Handle TCP connection with one request outstanding; reconnects after errors.
struct TcpWorker {
    server: SocketAddr,
    draw: Draw<Vec<u8>>,
    pace: Pace,
    timeout: Duration,
}

impl TcpWorker {
    async fn run(mut self, mut stats: Stats) -> Stats {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn: Option<tokio::net::TcpStream> = None;
        let mut next_id: u32 = self.draw.rng.gen();
        let mut scratch = Vec::with_capacity(512);
        let mut body = Vec::with_capacity(4096);
        while let Some(due) = self.pace.turn(&mut stats).await {
            let template = self.draw.next();
            next_id = next_id.wrapping_add(1);
            scratch.clear();
            scratch.extend_from_slice(template);
            scratch[at::REQUEST_ID].copy_from_slice(&next_id.to_be_bytes());
            stats.sent += 1;
            let server = self.server;
            let exchange = async {
                if conn.is_none() {
                    let s = tokio::net::TcpStream::connect(server).await?;
                    s.set_nodelay(true)?;
                    conn = Some(s);
                }
                let s = conn.as_mut().expect("connected");
                s.write_all(&scratch).await?;
                loop {
                    let mut env = [0u8; ENVELOPE_LEN];
                    s.read_exact(&mut env).await?;
                    let head = peek::Framed(&env);
                    // The envelope is all there: its fields are too.
                    let len = head.message_length().unwrap_or(0) as usize;
                    if len > MAX_MESSAGE_LEN {
                        return Err(BenchError::ResponseTooLong);
                    }
                    body.resize(len, 0);
                    s.read_exact(&mut body).await?;
                    if head.request_id() == Some(next_id) {
                        if let Some(rc) = peek::Message(&body).response_code() {
                            return Ok::<String, BenchError>(format!("RC{rc}"));
                        }
                    }
                }
            };
            // Latency from the due time: in open loop a late send counts against the server.
            let outcome = tokio::time::timeout(self.timeout, exchange).await;
            if !stats.settle(outcome, due, self.timeout) {
                conn = None;
            }
        }
        stats.push_live(Instant::now(), true);
        stats
    }
}
