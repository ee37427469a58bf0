//! The native protocol over UDP (port 2641): datagrams of a 20-byte envelope plus at most 492
//! message bytes. Multi-datagram requests are reassembled by (client, requestId) with bounded
//! memory and a timeout; responses are fragmented the same way. Administrative operations are
//! refused here (UDP interfaces of Handle sites are query-only).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::native::{NativeService, Outcome, Transport};
use crate::wire::handle::message::{udp_fragments, Envelope, Fragments, ENVELOPE_LEN, UDP_CHUNK};

/// Limits of the reassembly buffer.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Incomplete messages kept at once.
    pub max_messages: usize,
    /// Bytes buffered for incomplete messages, all clients together.
    pub max_bytes: usize,
    /// Incomplete messages older than this are dropped.
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_messages: 1024,
            max_bytes: 16 << 20,
            timeout: Duration::from_secs(5),
        }
    }
}

struct Partial {
    fragments: Fragments,
    /// Bytes this message holds against the budget.
    size: usize,
    started: Instant,
}

/// Reassembles multi-datagram messages. Sans-IO: datagrams and the time go in, complete
/// messages come out.
pub struct Reassembler {
    limits: ReassemblyLimits,
    partial: HashMap<(SocketAddr, u32), Partial>,
    bytes: usize,
    last_sweep: Option<Instant>,
}

impl Reassembler {
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            limits,
            partial: HashMap::new(),
            bytes: 0,
            last_sweep: None,
        }
    }

    /// Messages waiting for more datagrams.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    fn sweep(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        let mut freed = 0;
        self.partial.retain(|_, p| {
            let keep = now.duration_since(p.started) < timeout;
            if !keep {
                freed += p.size;
            }
            keep
        });
        self.bytes -= freed;
        self.last_sweep = Some(now);
    }

    /// Offer one datagram. Returns a complete message (its envelope and the message bytes
    /// after the envelope) when this datagram completes one; malformed, inconsistent or
    /// over-limit datagrams are dropped.
    pub fn offer(
        &mut self,
        peer: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Option<(Envelope, Vec<u8>)> {
        if datagram.len() < ENVELOPE_LEN {
            return None;
        }
        let env = Envelope::decode(&datagram[..ENVELOPE_LEN]).ok()?;
        let data = &datagram[ENVELOPE_LEN..];
        let total = env.message_length as usize;
        if total <= UDP_CHUNK {
            // The common case: one datagram, one message.
            return (env.sequence == 0 && data.len() == total).then(|| (env, data.to_vec()));
        }
        // Check the datagram on its own before it may claim buffer space.
        Fragments::check(&env, data).ok()?;
        if self
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.sweep(now);
        }
        let key = (peer, env.request_id);
        if !self.partial.contains_key(&key) {
            let over = |r: &Self| {
                r.partial.len() >= r.limits.max_messages || r.bytes + total > r.limits.max_bytes
            };
            if over(self) {
                self.sweep(now);
                if over(self) {
                    return None;
                }
            }
            self.bytes += total;
            self.partial.insert(
                key,
                Partial {
                    fragments: Fragments::new(),
                    size: total,
                    started: now,
                },
            );
        }
        let p = self.partial.get_mut(&key)?;
        // Stray, duplicate or inconsistent datagrams are dropped; the message stays pending.
        let (envelope, message) = p.fragments.offer(&env, data).ok().flatten()?;
        if let Some(done) = self.partial.remove(&key) {
            self.bytes -= done.size;
        }
        Some((envelope, message))
    }
}

async fn send_all(socket: &UdpSocket, peer: SocketAddr, responses: &[Vec<u8>]) {
    for response in responses {
        for datagram in udp_fragments(response) {
            if let Err(e) = socket.send_to(&datagram, peer).await {
                tracing::debug!(%peer, error = %e, "UDP send failed");
            }
        }
    }
}

/// Serve UDP until shutdown. Requests are handled inline (resolutions are fast and anything
/// that writes is refused on UDP); those that need recursion run in their own task.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    service: Arc<NativeService>,
    limits: ReassemblyLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut reassembler = Reassembler::new(limits);
    loop {
        let (len, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
        };
        let Some((envelope, message)) = reassembler.offer(peer, &buf[..len], Instant::now()) else {
            continue;
        };
        match service.process(envelope, &message, Transport::Udp) {
            Outcome::Done(responses) => send_all(&socket, peer, &responses).await,
            // Recursion waits on other servers: never hold up the receive loop for it.
            Outcome::Recurse(job) => {
                let socket = socket.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    let responses = service.recurse(*job).await;
                    send_all(&socket, peer, &responses).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handle::message::Message;

    fn fragments(request_id: u32, total: usize) -> Vec<Vec<u8>> {
        let mut msg = vec![0x02, 0x0b, 0x02, 0x0b];
        msg.extend_from_slice(&0u32.to_be_bytes());
        msg.extend_from_slice(&request_id.to_be_bytes());
        msg.extend_from_slice(&0u32.to_be_bytes());
        msg.extend_from_slice(&(total as u32).to_be_bytes());
        msg.extend((0..total).map(|i| (i % 251) as u8));
        udp_fragments(&msg)
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn reassembles_out_of_order_with_duplicates() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let frags = fragments(7, 1200);
        assert_eq!(frags.len(), 3);
        let now = Instant::now();
        assert!(r.offer(peer(1), &frags[2], now).is_none());
        assert!(r.offer(peer(1), &frags[0], now).is_none());
        assert!(r.offer(peer(1), &frags[0], now).is_none());
        let (env, data) = r.offer(peer(1), &frags[1], now).unwrap();
        assert_eq!(env.request_id, 7);
        assert_eq!(data, (0..1200).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn keeps_clients_apart_and_drops_bogus_fragments() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let now = Instant::now();
        let frags = fragments(9, 900);
        assert!(r.offer(peer(1), &frags[0], now).is_none());
        // Same request id from another client does not complete the first.
        assert!(r.offer(peer(2), &frags[1], now).is_none());
        assert_eq!(r.pending(), 2);
        // A sequence number past the end, and a chunk of the wrong size, are dropped.
        let mut bogus = frags[1].clone();
        bogus[12..16].copy_from_slice(&99u32.to_be_bytes());
        assert!(r.offer(peer(1), &bogus, now).is_none());
        let mut short = frags[0].clone();
        short.pop();
        assert!(r.offer(peer(3), &short, now).is_none());
        assert!(r.offer(peer(1), &[1, 2, 3], now).is_none());
        assert!(r.offer(peer(1), &frags[1], now).is_some());
    }

    #[test]
    fn bounded_memory_and_timeout() {
        let limits = ReassemblyLimits {
            max_messages: 4,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(5),
        };
        let mut r = Reassembler::new(limits);
        let now = Instant::now();
        // A flood of first fragments: only max_messages are kept.
        for id in 0..100 {
            r.offer(peer(1), &fragments(id, 900)[0], now);
        }
        assert_eq!(r.pending(), 4);
        // After the timeout they are swept and new messages are accepted again.
        let later = now + Duration::from_secs(6);
        let frags = fragments(1000, 900);
        assert!(r.offer(peer(1), &frags[0], later).is_none());
        assert_eq!(r.pending(), 1);
        assert!(r.offer(peer(1), &frags[1], later).is_some());
        // Declared sizes count against the byte budget.
        let mut small = Reassembler::new(ReassemblyLimits {
            max_bytes: 1500,
            ..limits
        });
        assert!(small.offer(peer(1), &fragments(1, 900)[0], now).is_none());
        assert!(small.offer(peer(1), &fragments(2, 900)[0], now).is_none());
        assert_eq!(small.pending(), 1);
    }

    #[test]
    fn single_datagram_messages_pass_through() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let req = crate::wire::handle::vectors::REQ_HEX;
        let bytes: Vec<u8> = (0..req.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&req[i..i + 2], 16).unwrap())
            .collect();
        let (env, data) = r.offer(peer(1), &bytes, Instant::now()).unwrap();
        assert!(Message::decode(env, &data).is_ok());
    }
}
