//! The way out of every request: the answers are encoded, bounded in size for the transport
//! (RC 2 with TC instead of what no client could take), MAC'd in a session or signed when
//! certified (see `certify`), encrypted for a session that asked, and the request is counted.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

use prometheus::{Histogram, IntCounter};

use super::{op_label, NativeService, Source, Transport};
use crate::metrics::Metrics;
use crate::model::ResponseCode;
use crate::wire::handle::message::{envelope_flag, flag, Body, Message, MAX_MESSAGE_LEN};

impl NativeService {
    /// Encode the responses, bounded in size for the transport and signed when the request
    /// asked for certification (CT, echoed in every answer), and count the request under
    /// `op_code`.
    pub(super) fn finish(
        &self,
        op_code: u32,
        source: Source,
        started: Instant,
        mut responses: Vec<Message>,
    ) -> Vec<Vec<u8>> {
        let transport = source.transport;
        // Encoded once; again only if bounding, a session MAC or a signature changed them.
        let mut encoded: Vec<Vec<u8>> = responses.iter().map(Message::encode).collect();
        let sizes: Vec<usize> = encoded.iter().map(Vec::len).collect();
        let resized = self.bound_answer_size(transport, &mut responses, &sizes);
        // Certified answers inside a session carry the session's MAC (after resizing, which
        // changes what it covers); the others get the server key's signature.
        let maced = self.mac_session_answers(&mut responses);
        let signed = self.certify(source, &mut responses);
        let code = responses
            .first()
            .map(|m| m.header.response_code)
            .unwrap_or(0);
        self.counters
            .count(&self.metrics, transport, op_label(op_code), code, started);
        if resized || maced || signed {
            encoded = responses.iter().map(Message::encode).collect();
        }
        self.encrypt_session_answers(&responses, &mut encoded);
        encoded
    }

    /// No answer over the message limit on any transport (no client could reassemble it),
    /// and over UDP none larger than `max_udp_answer`: such answers become one short RC 2
    /// error with the envelope's TC flag, which Handle.Net clients answer by retrying over
    /// TCP at once. Lists are several messages of [`super::LIST_PER_MESSAGE`] handles each.
    fn bound_answer_size(
        &self,
        transport: Transport,
        responses: &mut [Message],
        sizes: &[usize],
    ) -> bool {
        let limit = match transport {
            Transport::Udp => self.limits.max_udp_answer.min(MAX_MESSAGE_LEN),
            Transport::Tcp => MAX_MESSAGE_LEN,
        };
        let total: usize = sizes.iter().sum();
        let too_big = match transport {
            Transport::Udp => total > limit,
            Transport::Tcp => sizes.iter().any(|s| *s > limit),
        };
        if !too_big {
            return false;
        }
        let reason = match transport {
            Transport::Udp => "udp_too_large",
            Transport::Tcp => "message_too_large",
        };
        self.refuse(transport, reason);
        for (m, size) in responses.iter_mut().zip(sizes) {
            if transport == Transport::Tcp && *size <= limit {
                continue;
            }
            m.header.response_code = ResponseCode::Error.code();
            m.header.op_flag &= !flag::CONTINUOUS;
            m.envelope.flags |= envelope_flag::TRUNCATED;
            m.body = Body::Error {
                message: match transport {
                    Transport::Udp => format!(
                        "the answer ({total} bytes) is larger than this server sends over UDP \
                         ({limit} bytes): ask over TCP"
                    ),
                    Transport::Tcp => format!(
                        "the answer is larger than the {MAX_MESSAGE_LEN}-byte message limit: \
                         ask for fewer values"
                    ),
                },
            };
        }
        true
    }
}

/// The request metrics' children (`idnode_requests_total{proto, op, code}`,
/// `idnode_request_duration_seconds{proto, op}`), looked up once per label set and kept, so
/// counting a request formats no response code and hashes no label strings. Bounded: two
/// transports, the operations' labels and the response codes the node sends.
#[derive(Default)]
pub(super) struct RequestCounters {
    requests: RwLock<HashMap<(Transport, &'static str, u32), IntCounter>>,
    latency: RwLock<HashMap<(Transport, &'static str), Histogram>>,
}

impl RequestCounters {
    /// Count one request of `op` on `transport` answered with `code` (0: no answer).
    fn count(
        &self,
        metrics: &Metrics,
        transport: Transport,
        op: &'static str,
        code: u32,
        started: Instant,
    ) {
        let make = || {
            metrics
                .requests
                .with_label_values(&[transport.label(), op, &code.to_string()])
        };
        with_cached(&self.requests, (transport, op, code), make, IntCounter::inc);
        let make = || metrics.latency.with_label_values(&[transport.label(), op]);
        let elapsed = started.elapsed().as_secs_f64();
        with_cached(&self.latency, (transport, op), make, |h| h.observe(elapsed));
    }
}

/// Run `use_` on the child under `key`, made by `make` the first time.
fn with_cached<K: std::hash::Hash + Eq, V>(
    map: &RwLock<HashMap<K, V>>,
    key: K,
    make: impl FnOnce() -> V,
    use_: impl FnOnce(&V),
) {
    if let Some(v) = crate::lock::read(map).get(&key) {
        return use_(v);
    }
    let mut map = crate::lock::write(map);
    use_(map.entry(key).or_insert_with(make));
}
