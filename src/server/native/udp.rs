//! The native protocol over UDP (port 2641): datagrams of a 20-byte envelope plus at most 492
//! message bytes. Multi-datagram requests are reassembled by (client, requestId) with bounded
//! memory and a timeout ([`Reassembler`], sans-IO in `wire::handle::reassembly`); responses
//! are fragmented the same way. Administrative operations are
//! refused here (UDP interfaces of Handle sites are query-only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use prometheus::{Histogram, IntCounter};

use super::{
    op_label, NativeService, Outcome, RecursionJob, Source, Transport, RESPONSE_LIFETIME_SECS,
};
use crate::model::ResponseCode;
use crate::server::udp::{DatagramService, Handled, Replies, Reuse};
use crate::wire::handle::fragment::udp_fragments;
use crate::wire::handle::message::{flag, op, Envelope, ENVELOPE_LEN};
use crate::wire::handle::peek::{at, u32_at, Framed};
use crate::wire::handle::reassembly::{Reassembler, ReassemblyLimits};

/// Response codes whose answers to a resolution depend only on the request bytes and the
/// registry (so they may be replayed): success, handle/values not found, referral.
const REPLAYABLE_CODES: [ResponseCode; 4] = [
    ResponseCode::Success,
    ResponseCode::HandleNotFound,
    ResponseCode::ValuesNotFound,
    ResponseCode::PrefixReferral,
];

/// Whether one encoded answer may be replayed for the same request bytes under another request
/// id: its code is one of [`REPLAYABLE_CODES`], it carries no signature (a certified answer's
/// signature covers the request id, so a replay would not verify) and belongs to no session
/// (session answers are MAC'd or encrypted for one client).
fn replayable(answer: &[u8]) -> bool {
    let answer = Framed(answer);
    answer
        .response_code()
        .and_then(ResponseCode::from_u32)
        .is_some_and(|rc| REPLAYABLE_CODES.contains(&rc))
        && answer.op_flag().is_some_and(|f| f & flag::CERTIFY == 0)
        && answer.session_id() == Some(0)
        && answer.is_encrypted() == Some(false)
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
        let fields = Framed(request);
        if !fields.is_single() || fields.op_code() != Some(op::RESOLUTION) {
            return false;
        }
        let (Some(op_flag), Some(body_len)) = (fields.op_flag(), fields.body_length()) else {
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
        let code = Framed(answer).response_code().unwrap_or(0);
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

    /// The change stamp of the handle the resolution asks for (the body starts with it): a
    /// prepared answer outlives writes to other handles. A key whose handle cannot be read
    /// falls back to the epoch (any write retires it).
    fn answer_stamp(&self, key: &[u8]) -> u64 {
        let handle = u32_at(key, at::BODY..at::BODY + 4).and_then(|len| {
            let start = at::BODY + 4;
            key.get(start..start.checked_add(len as usize)?)
        });
        match handle {
            Some(handle) => self.engine().registry().answer_stamp(handle),
            None => self.registry_seq(),
        }
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
            [one] if replayable(one) => Handled::Answered(Reuse::UntilWritten),
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
