//! The native UDP reassembler (`wire::handle::reassembly::Reassembler`) on a stream of arbitrary
//! datagrams from a few clients, with the clock moving forward, under small limits so the
//! message and byte budgets and the timeout sweep are all reached.
//!
//! Input: a sequence of `op, len_hi, len_lo, datagram[len]`; `op & 3` picks the client (one of
//! four source ports; messages fed whole use four others), `op >> 2 & 7` moves the clock forward by that many 750 ms steps, and
//! `op & 0x80` marks "now offer every fragment of this datagram as a message", which feeds the
//! datagrams `udp_fragments` makes of it (in reverse order) instead of the bytes themselves.
//!
//! - `offer` never panics (budget arithmetic included: the target is built with overflow
//!   checks) and never keeps more than `max_messages` messages pending;
//! - what it returns is a whole message: sequence 0 and exactly `message_length` bytes, which
//!   `Message::decode` then reads without panicking;
//! - every message fed as its own fragments, whose envelope declares its true length, comes
//!   out exactly once, byte for byte and with its envelope, when its last datagram arrives
//!   (or, over the budget, not at all, leaving nothing pending);
//! - after the timeout, the whole budget is free again: a message of exactly `max_bytes`
//!   bytes from a new client is accepted (a leak in the byte accounting would refuse it).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use idnode::wire::handle::fragment::udp_fragments;
use idnode::wire::handle::message::{ENVELOPE_LEN, UDP_CHUNK};
use idnode::wire::handle::reassembly::{Reassembler, ReassemblyLimits};
use idnode::wire::handle::{Envelope, Message};
use libfuzzer_sys::fuzz_target;

const MAX_MESSAGES: usize = 4;
const MAX_BYTES: usize = 4 * UDP_CHUNK + 100;
const TIMEOUT: Duration = Duration::from_secs(5);

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(n)))
}

fn check_complete(env: &Envelope, message: &[u8]) {
    assert_eq!(env.sequence, 0, "a completed message keeps sequence 0");
    assert_eq!(
        message.len(),
        env.message_length as usize,
        "a completed message has its declared length"
    );
    let _ = Message::decode(*env, message);
}

/// A message made of `bytes` (envelope, then message), with the envelope declaring the real
/// length and sequence 0; `None` when the first 20 bytes are no envelope.
fn as_message(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() <= ENVELOPE_LEN {
        return None;
    }
    let mut m = bytes.to_vec();
    let len = (m.len() - ENVELOPE_LEN) as u32;
    m[12..16].fill(0);
    m[16..20].copy_from_slice(&len.to_be_bytes());
    Envelope::decode(&m[..ENVELOPE_LEN]).ok()?;
    Some(m)
}

fuzz_target!(|data: &[u8]| {
    let limits = ReassemblyLimits {
        max_messages: MAX_MESSAGES,
        max_bytes: MAX_BYTES,
        // Per source below the totals, so both bounds are exercised.
        max_messages_per_source: MAX_MESSAGES - 1,
        max_bytes_per_source: MAX_BYTES,
        timeout: TIMEOUT,
    };
    let mut r = Reassembler::new(limits);
    let start = Instant::now();
    let mut now = start;
    let mut rest = data;
    while let [op, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, after) = tail.split_at(len);
        rest = after;
        now += Duration::from_millis(750) * u32::from((op >> 2) & 7);
        let from = peer(op & 3);
        if op & 0x80 == 0 {
            if let Some((env, message)) = r.offer(from, datagram, now) {
                check_complete(&env, &message);
            }
        } else if let Some(m) = as_message(datagram) {
            // Messages fed whole use their own clients, so no stray datagram shares their
            // (client, request id); and as each is fed whole, none is left pending either.
            let from = peer(4 + (op & 3));
            let frags = udp_fragments(&m);
            let before = r.pending();
            let mut done = Vec::new();
            for (i, f) in frags.iter().enumerate().rev() {
                if let Some((env, message)) = r.offer(from, f, now) {
                    check_complete(&env, &message);
                    done.push((i, env, message));
                }
            }
            match done.as_slice() {
                [(0, env, message)] => {
                    assert_eq!(
                        message[..],
                        m[ENVELOPE_LEN..],
                        "reassembled message differs"
                    );
                    let mut head = Vec::new();
                    env.encode(&mut head);
                    assert_eq!(head[..], m[..ENVELOPE_LEN], "reassembled envelope differs");
                }
                [] => assert!(
                    frags.len() > 1 && m.len() - ENVELOPE_LEN > UDP_CHUNK,
                    "a single-datagram message was not passed through"
                ),
                other => panic!(
                    "{} completions (at fragments {:?})",
                    other.len(),
                    other.iter().map(|d| d.0).collect::<Vec<_>>()
                ),
            }
            // (Fewer when the sweep dropped timed-out ones meanwhile.)
            assert!(
                r.pending() <= before,
                "a message fed whole was left pending"
            );
        }
        assert!(
            r.pending() <= MAX_MESSAGES,
            "{} messages pending",
            r.pending()
        );
    }

    // Once everything has timed out, the whole byte budget is available again.
    let later = now + TIMEOUT + Duration::from_secs(2);
    let mut probe = vec![0u8; ENVELOPE_LEN + MAX_BYTES];
    probe[..4].copy_from_slice(&[2, 11, 2, 11]);
    probe[8..12].copy_from_slice(&0xfeed_f00du32.to_be_bytes());
    probe[16..20].copy_from_slice(&(MAX_BYTES as u32).to_be_bytes());
    let frags = udp_fragments(&probe);
    let mut completed = None;
    for f in &frags {
        assert!(completed.is_none());
        completed = r.offer(peer(9), f, later);
        if completed.is_none() {
            assert!(
                r.pending() >= 1,
                "the budget did not come back after the timeout (bytes leaked)"
            );
        }
    }
    let (env, message) = completed.expect("probe message not reassembled");
    assert_eq!(env.request_id, 0xfeed_f00d);
    assert_eq!(message, probe[ENVELOPE_LEN..]);
    assert_eq!(r.pending(), 0);
});
