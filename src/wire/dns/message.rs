//! DNS messages (the "Requests and response codes" part of the [`super`] docs): a packet to a
//! [`Decision`], a lookup result to an answer, answers encoded within the client's UDP payload
//! (TC when they do not fit), TTL rewriting of encoded answers and the slipped answer of
//! rate limiting. No sockets: `server::dns` runs these on UDP and TCP.

use hickory_proto::op::{emit_message_parts, Edns, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

use super::name::{NameMeaning, Zone};
use super::records::value_records;
use crate::model::{Handle, HandleValue};

/// UDP payload every DNS client takes.
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// Largest message over TCP (2-byte length prefix).
pub const MAX_TCP_MESSAGE: u16 = u16::MAX;

const HEADER_LEN: usize = 12;

/// A decoded query: opcode QUERY, exactly one question of class IN or ANY, for a name in the
/// zone.
#[derive(Debug, Clone)]
pub struct Request {
    message: Message,
    /// Largest UDP response the client takes.
    pub udp_limit: u16,
}

impl Request {
    /// The message as received.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The query name as the client wrote it.
    pub fn name(&self) -> Option<&Name> {
        self.message.queries.first().map(|q| q.name())
    }

    /// The query type.
    pub fn query_type(&self) -> Option<RecordType> {
        self.message.queries.first().map(|q| q.query_type())
    }
}

/// A response and the UDP size limit of its client.
#[derive(Debug, Clone)]
pub struct Response {
    pub message: Message,
    pub udp_limit: u16,
}

/// What to do with a packet.
#[derive(Debug)]
pub enum Decision {
    /// Send nothing (a response, or not even a header).
    Drop,
    /// Send this.
    Reply(Response),
    /// Look up these identifier candidates in order, then [`answer`].
    Lookup {
        request: Request,
        candidates: Vec<Handle>,
    },
}

/// What the lookup of an identifier found.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// The identifier's values (filtered to public ones when answering).
    Values(&'a [HandleValue]),
    /// No such identifier: NXDOMAIN.
    NoHandle,
    /// The identifier has no (public) values: NODATA.
    NoValues,
    /// Not answerable here: REFUSED.
    Refused,
    /// The lookup failed: SERVFAIL.
    ServFail,
}

/// The rcode mnemonic used as the metrics label.
pub fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

/// An error response to a packet whose header is readable but whose rest is not used: id,
/// opcode, RD and CD echoed, no question.
fn header_error(packet: &[u8], code: ResponseCode) -> Response {
    let (id, flags) = match packet {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), [*c, *d]),
        _ => (0, [0, 0]),
    };
    let mut message = Message::error_msg(id, OpCode::from_u8((flags[0] >> 3) & 0x0f), code);
    message.metadata.recursion_desired = flags[0] & 0x01 != 0;
    message.metadata.checking_disabled = flags[1] & 0x10 != 0;
    Response {
        message,
        udp_limit: MIN_UDP_PAYLOAD,
    }
}

/// Turn a received query into the skeleton of its response: header from the request (id,
/// opcode, RD, CD), the question echoed, no records, an OPT record when the query had one.
fn response_to(mut message: Message, zone: &Zone, code: ResponseCode, aa: bool) -> Message {
    message.metadata = Metadata::response_from_request(&message.metadata);
    message.metadata.response_code = code;
    message.metadata.authoritative = aa;
    message.answers.clear();
    message.authorities.clear();
    message.additionals.clear();
    message.signature = None;
    if message.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(zone.max_udp_payload.max(MIN_UDP_PAYLOAD));
        message.edns = Some(edns);
    }
    message
}

/// Decide what a packet gets. `serial` is the SOA serial for answers from the zone itself.
pub fn decide(packet: &[u8], zone: &Zone, serial: u32) -> Decision {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return Decision::Drop;
    }
    if (packet[2] >> 3) & 0x0f != 0 {
        return Decision::Reply(header_error(packet, ResponseCode::NotImp));
    }
    // Checked before decoding: hickory reserves room for every announced question.
    if u16::from_be_bytes([packet[4], packet[5]]) != 1 {
        return Decision::Reply(header_error(packet, ResponseCode::FormErr));
    }
    let message = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return Decision::Reply(header_error(packet, ResponseCode::FormErr)),
    };
    let udp_limit = match &message.edns {
        Some(edns) => edns
            .max_payload()
            .min(zone.max_udp_payload)
            .max(MIN_UDP_PAYLOAD),
        None => MIN_UDP_PAYLOAD,
    };
    let reply = |message: Message, code: ResponseCode, aa: bool| {
        Decision::Reply(Response {
            message: response_to(message, zone, code, aa),
            udp_limit,
        })
    };
    if message.edns.as_ref().is_some_and(|e| e.version() != 0) {
        return reply(message, ResponseCode::BADVERS, false);
    }
    let Some(query) = message.queries.first() else {
        return Decision::Reply(header_error(packet, ResponseCode::FormErr));
    };
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
        || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
    {
        return reply(message, ResponseCode::Refused, false);
    }
    match zone.classify(query.name()) {
        NameMeaning::OutsideZone => reply(message, ResponseCode::Refused, false),
        NameMeaning::NotAnIdentifier => {
            let code = if zone.is_empty_non_terminal(query.name()) {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            let mut m = response_to(message, zone, code, true);
            m.authorities.push(zone.soa(serial));
            Decision::Reply(Response {
                message: m,
                udp_limit,
            })
        }
        NameMeaning::Apex => {
            let qtype = query.query_type();
            let mut m = response_to(message, zone, ResponseCode::NoError, true);
            let any = qtype == RecordType::ANY;
            if any || qtype == RecordType::SOA {
                m.answers.push(zone.soa(serial));
            }
            if any || qtype == RecordType::NS {
                m.answers.extend(zone.ns_records());
            }
            if m.answers.is_empty() {
                m.authorities.push(zone.soa(serial));
            }
            Decision::Reply(Response {
                message: m,
                udp_limit,
            })
        }
        NameMeaning::Identifier(candidates) => Decision::Lookup {
            request: Request { message, udp_limit },
            candidates,
        },
    }
}

/// The response to an identifier query once its lookup found `found`. `authoritative` is
/// false for answers that came through recursion. `now` (unix seconds) turns absolute value
/// TTLs into relative ones.
pub fn answer(
    request: Request,
    found: Found<'_>,
    zone: &Zone,
    serial: u32,
    now: u32,
    authoritative: bool,
) -> Response {
    let udp_limit = request.udp_limit;
    let question = request
        .message
        .queries
        .first()
        .map(|q| (q.name().clone(), q.query_type()));
    let (code, aa) = match found {
        Found::Values(_) | Found::NoValues => (ResponseCode::NoError, authoritative),
        Found::NoHandle => (ResponseCode::NXDomain, authoritative),
        Found::Refused => (ResponseCode::Refused, false),
        Found::ServFail => (ResponseCode::ServFail, false),
    };
    let mut message = response_to(request.message, zone, code, aa);
    if let (Found::Values(values), Some((name, qtype))) = (found, &question) {
        value_records(name, values, *qtype, now, &mut message.answers);
    }
    if matches!(found, Found::Values(_) | Found::NoValues | Found::NoHandle)
        && message.answers.is_empty()
    {
        message.authorities.push(zone.soa(serial));
    }
    Response { message, udp_limit }
}

/// Encode `message` into `out` (cleared first) in at most `limit` bytes (at least 512). A
/// message that does not fit is sent as its header and question (and OPT) with TC set; one
/// that cannot be encoded at all becomes a bare SERVFAIL header. Returns true when truncated.
pub fn encode(message: &Message, limit: u16, out: &mut Vec<u8>) -> bool {
    let limit = limit.max(MIN_UDP_PAYLOAD);
    out.clear();
    let full = {
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(limit);
        emit_message_parts(
            &message.metadata,
            &mut message.queries.iter(),
            &mut message.answers.iter(),
            &mut message.authorities.iter(),
            &mut message.additionals.iter(),
            message.edns.as_ref(),
            None,
            &mut encoder,
        )
    };
    match full {
        Ok(header) if !header.metadata.truncation || message.metadata.truncation => return false,
        Ok(_) => {}
        Err(_) => {
            servfail_header(&message.metadata, out);
            return false;
        }
    }
    out.clear();
    let mut metadata = message.metadata;
    metadata.truncation = true;
    let short = {
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(limit);
        emit_message_parts(
            &metadata,
            &mut message.queries.iter(),
            &mut std::iter::empty::<&Record>(),
            &mut std::iter::empty::<&Record>(),
            &mut std::iter::empty::<&Record>(),
            message.edns.as_ref(),
            None,
            &mut encoder,
        )
    };
    if short.is_err() {
        servfail_header(&message.metadata, out);
    }
    true
}

/// Rewrite, in place, the TTL of every resource record of an encoded DNS message (answer,
/// authority and additional sections; the OPT pseudo-record's TTL field holds EDNS flags and
/// is left alone) to `f(ttl)`. Used to count the TTLs of recursive answers down, both when
/// an answer is built from a cache entry and when a prepared answer is replayed. Returns false,
/// having maybe rewritten a part, when the message is malformed.
pub fn rewrite_ttls(message: &mut [u8], f: impl Fn(u32) -> u32) -> bool {
    fn count(message: &[u8], at: usize) -> Option<usize> {
        let b = message.get(at..at + 2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    /// The offset just past the (possibly compressed) name starting at `at`.
    fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
        loop {
            let len = *message.get(at)?;
            match len & 0xC0 {
                0x00 if len == 0 => return Some(at + 1),
                0x00 => at += 1 + usize::from(len),
                0xC0 => return Some(at + 2),
                _ => return None,
            }
        }
    }
    fn walk(message: &mut [u8], f: impl Fn(u32) -> u32) -> Option<()> {
        let questions = count(message, 4)?;
        let records = count(message, 6)? + count(message, 8)? + count(message, 10)?;
        let mut at = 12;
        for _ in 0..questions {
            at = skip_name(message, at)? + 4;
        }
        for _ in 0..records {
            at = skip_name(message, at)?;
            let fixed = message.get_mut(at..at + 10)?;
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            if rtype != u16::from(RecordType::OPT) {
                let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
                fixed[4..8].copy_from_slice(&f(ttl).to_be_bytes());
            }
            let rdlength = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
            at += 10 + rdlength;
        }
        (at <= message.len()).then_some(())
    }
    walk(message, f).is_some()
}

/// A 12-byte SERVFAIL header with no sections (the last resort; cannot fail).
fn servfail_header(metadata: &Metadata, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&metadata.id.to_be_bytes());
    let opcode: u8 = metadata.op_code.into();
    out.push(0x80 | ((opcode & 0x0f) << 3) | u8::from(metadata.recursion_desired));
    out.push((u8::from(metadata.recursion_available) << 7) | ResponseCode::ServFail.low());
    out.extend_from_slice(&[0; 8]);
}

/// The answer a rate-limited query is "slipped" (RFC-style RRL): the query's header and
/// question with QR and TC set and no records, so a real resolver retries over TCP and a
/// spoofed victim receives no more bytes than the query had. `None` for a datagram that is
/// not a one-question query.
pub fn truncated_answer(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    // QR must be clear (a query), QDCOUNT exactly 1.
    if header[2] & 0x80 != 0 || header[4..6] != [0, 1] {
        return None;
    }
    // Walk the question's name: plain labels only (no compression in a question), ≤ 255.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 || at - 12 + len + 1 > 255 {
            return None;
        }
        at += len + 1;
    }
    let end = at + 4; // QTYPE, QCLASS
    let mut out = query.get(..end)?.to_vec();
    out[2] = (header[2] & 0x79) | 0x80 | 0x02; // keep opcode and RD; set QR and TC
    out[3] = 0; // RA 0, RCODE NOERROR
    out[6..12].fill(0); // no answer, authority or additional records
    Some(out)
}
