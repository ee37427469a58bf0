//! The native protocol over UDP (port 2641): datagrams of a 20-byte envelope plus at most 492
//! message bytes. Multi-datagram requests are reassembled by (client, requestId) with bounded
//! memory and a timeout; responses are fragmented the same way. Administrative operations are
//! refused here (UDP interfaces of Handle sites are query-only).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};

use super::native::{
    op_label, NativeService, Outcome, RecursionJob, Source, Transport, RESPONSE_LIFETIME_SECS,
};
use super::udp::{DatagramService, Handled, Replies, Reuse};
use crate::wire::handle::message::{
    envelope_flag, flag, op, udp_fragments, Envelope, Fragments, ENVELOPE_LEN, UDP_CHUNK,
};

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

/// Response codes whose answers to a resolution depend only on the request bytes and the
/// registry (so they may be replayed): success, handle/values not found, referral.
const REPLAYABLE_CODES: [u32; 4] = [1, 100, 200, 303];

/// Whether one encoded answer may be replayed for the same request bytes under another request
/// id: its code is one of [`REPLAYABLE_CODES`], it carries no signature (a certified answer's
/// signature covers the request id, so a replay would not verify) and belongs to no session
/// (session answers are MAC'd or encrypted for one client).
fn replayable(answer: &[u8]) -> bool {
    REPLAYABLE_CODES.contains(&u32_at(answer, at::RESPONSE_CODE).unwrap_or(0))
        && u32_at(answer, at::OP_FLAG).is_some_and(|f| f & flag::CERTIFY == 0)
        && u32_at(answer, at::SESSION_ID) == Some(0)
        && answer
            .get(2)
            .is_some_and(|b| b & envelope_flag::ENCRYPTED == 0)
}

/// Offsets in a single-datagram request or response: envelope fields, then the message header.
mod at {
    pub const SESSION_ID: std::ops::Range<usize> = 4..8;
    pub const REQUEST_ID: std::ops::Range<usize> = 8..12;
    pub const SEQUENCE: std::ops::Range<usize> = 12..16;
    pub const MESSAGE_LENGTH: std::ops::Range<usize> = 16..20;
    pub const OP_CODE: std::ops::Range<usize> = 20..24;
    pub const RESPONSE_CODE: std::ops::Range<usize> = 24..28;
    pub const OP_FLAG: std::ops::Range<usize> = 28..32;
    pub const EXPIRATION: std::ops::Range<usize> = 36..40;
    pub const BODY_LENGTH: std::ops::Range<usize> = 40..44;
    pub const BODY: usize = 44;
}

fn u32_at(bytes: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    let b: [u8; 4] = bytes.get(range)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// A UDP worker's own state.
pub struct WorkerState {
    reassembler: Reassembler,
    /// `idnode_requests_total{proto="udp", op="resolve", code}` by response code, looked up
    /// once per code.
    replayed: Vec<(u32, IntCounter)>,
    latency: Histogram,
}

impl DatagramService for NativeService {
    type State = WorkerState;
    type Job = Box<RecursionJob>;

    fn new_state(&self) -> WorkerState {
        WorkerState {
            reassembler: Reassembler::new(ReassemblyLimits::default()),
            replayed: Vec::new(),
            latency: self
                .metrics()
                .latency
                .with_label_values(&[Transport::Udp.label(), op_label(op::RESOLUTION)]),
        }
    }

    /// Single-datagram resolution requests without credentials: the datagram with its
    /// request id zeroed and, unless the client asked for a request digest (which covers
    /// it), the expiration it stamped zeroed too.
    fn cache_key(&self, request: &[u8], key: &mut Vec<u8>) -> bool {
        key.clear();
        let single = u32_at(request, at::SEQUENCE) == Some(0)
            && u32_at(request, at::MESSAGE_LENGTH)
                .is_some_and(|l| l as usize == request.len().saturating_sub(ENVELOPE_LEN));
        if !single || u32_at(request, at::OP_CODE) != Some(op::RESOLUTION) {
            return false;
        }
        let (Some(op_flag), Some(body_len)) = (
            u32_at(request, at::OP_FLAG),
            u32_at(request, at::BODY_LENGTH),
        ) else {
            return false;
        };
        let credential_at = at::BODY.saturating_add(body_len as usize);
        // No credential section, or an empty one.
        let anonymous = request.len() == credential_at
            || (request.len() == credential_at + 4
                && u32_at(request, credential_at..credential_at + 4) == Some(0));
        if !anonymous {
            return false;
        }
        key.extend_from_slice(request);
        key[at::REQUEST_ID].fill(0);
        if op_flag & flag::RETURN_DIGEST == 0 {
            key[at::EXPIRATION].fill(0);
        }
        true
    }

    /// The request's ID and a fresh expiration. Value TTLs are left as cached: Handle caches
    /// hand values on with their own TTLs.
    fn patch(&self, request: &[u8], answer: &[u8], _age: u64, now_unix: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(answer);
        if let (Some(id), Some(slot)) = (request.get(at::REQUEST_ID), out.get_mut(at::REQUEST_ID)) {
            slot.copy_from_slice(id);
        }
        let expiration = (now_unix + RESPONSE_LIFETIME_SECS).min(u64::from(u32::MAX)) as u32;
        if let Some(slot) = out.get_mut(at::EXPIRATION) {
            slot.copy_from_slice(&expiration.to_be_bytes());
        }
    }

    fn count_replay(&self, state: &mut WorkerState, answer: &[u8], started: Instant) {
        let code = u32_at(answer, at::RESPONSE_CODE).unwrap_or(0);
        let counter = match state.replayed.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => counter,
            None => {
                let counter = self.metrics().requests.with_label_values(&[
                    Transport::Udp.label(),
                    op_label(op::RESOLUTION),
                    &code.to_string(),
                ]);
                state.replayed.push((code, counter));
                &state.replayed[state.replayed.len() - 1].1
            }
        };
        counter.inc();
        state.latency.observe(started.elapsed().as_secs_f64());
    }

    fn epoch(&self) -> u64 {
        self.registry_seq()
    }

    /// Single-datagram requests only (a fragment of a larger one has no header to answer).
    fn slip(&self, request: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(envelope) = request
            .get(..ENVELOPE_LEN)
            .and_then(|b| Envelope::decode(b).ok())
        else {
            return false;
        };
        let message = &request[ENVELOPE_LEN..];
        if envelope.sequence != 0 || envelope.message_length as usize != message.len() {
            return false;
        }
        match self.slip_answer(envelope, message) {
            Some(answer) => {
                out.extend_from_slice(&answer);
                true
            }
            None => false,
        }
    }

    fn replays_relayed_to(&self, peer: SocketAddr) -> bool {
        self.recurses_for(peer.ip())
    }

    fn handle(
        &self,
        state: &mut WorkerState,
        request: &[u8],
        peer: SocketAddr,
        now: Instant,
        replies: &mut Replies,
    ) -> Handled<Box<RecursionJob>> {
        let Some((envelope, message)) = state.reassembler.offer(peer, request, now) else {
            return Handled::Answered(Reuse::Never);
        };
        let responses = match self.process(envelope, &message, Source::udp(peer.ip())) {
            Outcome::Done(responses) => responses,
            // Recursion waits on other servers: never hold up the worker for it.
            Outcome::Recurse(job) => return Handled::Recurse(job),
        };
        queue(replies, peer, &responses);
        // A client refused recursion got the node's ordinary answer; an allowed client
        // sending the same bytes must still recurse, so that answer is never replayed.
        if !self.recurses_for(peer.ip()) {
            return Handled::Answered(Reuse::Never);
        }
        match responses.as_slice() {
            [one] if replayable(one) => Handled::Answered(Reuse::UntilChange),
            _ => Handled::Answered(Reuse::Never),
        }
    }

    async fn run_job(self: Arc<Self>, job: Box<RecursionJob>) -> (Vec<Vec<u8>>, Reuse) {
        let (responses, reuse) = self.recurse_for_reuse(*job).await;
        let replayable = matches!(responses.as_slice(),
            [one] if replayable(one));
        let datagrams = responses.iter().flat_map(|r| udp_fragments(r)).collect();
        (datagrams, if replayable { reuse } else { Reuse::Never })
    }
}

/// Queue `responses` (encoded messages, envelope included) as datagrams.
fn queue(replies: &mut Replies, peer: SocketAddr, responses: &[Vec<u8>]) {
    for response in responses {
        for datagram in udp_fragments(response) {
            replies.next(peer).extend_from_slice(&datagram);
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
