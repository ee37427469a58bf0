//! Reassembly of multi-datagram native requests on the serving side: datagrams from many
//! clients go in, whole messages come out, keyed by (client address and port, request id).
//! Memory is bounded in total and per source address, and partial messages time out.
//! Sans-IO (quinn-proto's rule): the caller passes the time in (`now`), so the UDP front end
//! (`server::native::udp`, one reassembler per worker) and the fuzz target drive it alike. It
//! sits in `wire` beside [`Fragments`], the per-message assembler it keeps one of per
//! partial message.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::fragment::Fragments;
use super::message::{Envelope, ENVELOPE_LEN, UDP_CHUNK};

/// Limits of the reassembly buffer.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Incomplete messages kept at once.
    pub max_messages: usize,
    /// Bytes buffered for incomplete messages, all clients together.
    pub max_bytes: usize,
    /// Incomplete messages one source address may have at once.
    pub max_messages_per_source: usize,
    /// Bytes buffered for one source address.
    pub max_bytes_per_source: usize,
    /// Incomplete messages older than this are dropped.
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_messages: 1024,
            max_bytes: 16 << 20,
            max_messages_per_source: 16,
            max_bytes_per_source: 1 << 20,
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
    /// Messages and bytes held per source address (any port), so one source cannot take
    /// the budget every other client's multi-datagram requests need.
    per_source: HashMap<IpAddr, (usize, usize)>,
    last_sweep: Option<Instant>,
}

impl Reassembler {
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            limits,
            partial: HashMap::new(),
            bytes: 0,
            per_source: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Messages waiting for more datagrams.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    fn sweep(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        let mut gone = Vec::new();
        self.partial.retain(|(peer, _), p| {
            let keep = now.duration_since(p.started) < timeout;
            if !keep {
                gone.push((peer.ip(), p.size));
            }
            keep
        });
        for (ip, size) in gone {
            self.release(ip, size);
        }
        self.last_sweep = Some(now);
    }

    /// Give back what a finished or dropped message held.
    fn release(&mut self, ip: IpAddr, size: usize) {
        self.bytes -= size;
        if let Some((count, bytes)) = self.per_source.get_mut(&ip) {
            *count -= 1;
            *bytes -= size;
            if *count == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    /// Partial messages held for `ip`.
    pub fn pending_for(&self, ip: IpAddr) -> usize {
        self.per_source.get(&ip).map_or(0, |(count, _)| *count)
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
            let ip = peer.ip();
            let over = |r: &Self| {
                let (count, bytes) = r.per_source.get(&ip).copied().unwrap_or((0, 0));
                r.partial.len() >= r.limits.max_messages
                    || r.bytes + total > r.limits.max_bytes
                    || count >= r.limits.max_messages_per_source
                    || bytes + total > r.limits.max_bytes_per_source
            };
            if over(self) {
                self.sweep(now);
                if over(self) {
                    return None;
                }
            }
            self.bytes += total;
            let source = self.per_source.entry(ip).or_insert((0, 0));
            source.0 += 1;
            source.1 += total;
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
            self.release(peer.ip(), done.size);
        }
        Some((envelope, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handle::fragment::udp_fragments;
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
            max_messages_per_source: 4,
            max_bytes_per_source: 1 << 20,
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
    fn hole9_one_source_cannot_take_the_reassembly_budget() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let now = Instant::now();
        let flooder = |port| SocketAddr::from(([127, 0, 5, 5], port));
        // 256 first fragments from one address, over many ports.
        for id in 0..256u32 {
            r.offer(flooder(1000 + id as u16), &fragments(id, 900)[0], now);
        }
        let per_source = ReassemblyLimits::default().max_messages_per_source;
        assert_eq!(r.pending_for(flooder(0).ip()), per_source);
        // Another client's multi-datagram request still goes through.
        let frags = fragments(77, 1200);
        for f in &frags[..2] {
            assert!(r.offer(peer(9), f, now).is_none());
        }
        assert!(r.offer(peer(9), &frags[2], now).is_some());
        // The flooder's messages time out and free its share.
        let later = now + Duration::from_secs(6);
        assert!(r
            .offer(flooder(1), &fragments(999, 900)[0], later)
            .is_none());
        assert_eq!(r.pending_for(flooder(0).ip()), 1);
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
