//! The envelope decoder and the UDP fragmenter on arbitrary bytes.
//!
//! - `Envelope::decode` on the first (up to) 20 bytes never panics, and what it accepts
//!   re-encodes to the same 20 bytes;
//! - `udp_fragments(data)` splits `data` (envelope + message) into datagrams of the envelope
//!   plus at most `UDP_CHUNK` bytes: a message of up to `UDP_CHUNK` bytes travels as the input
//!   itself; longer ones as ceil(len / UDP_CHUNK) datagrams, each a copy of the envelope with its
//!   chunk number in the sequence field. Reassembling them (in reverse arrival order, by
//!   sequence number, as a receiver would) gives back the message part of the input.
#![no_main]

use idnode::wire::handle::fragment::udp_fragments;
use idnode::wire::handle::message::{ENVELOPE_LEN, UDP_CHUNK};
use idnode::wire::handle::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let head = &data[..data.len().min(ENVELOPE_LEN)];
    if let Ok(env) = Envelope::decode(head) {
        assert!(head.len() >= ENVELOPE_LEN);
        let mut out = Vec::new();
        env.encode(&mut out);
        assert_eq!(out, head, "envelope does not re-encode to its bytes");
        assert_eq!(Envelope::decode(&out), Ok(env));
    }

    let frags = udp_fragments(data);
    if data.len() < ENVELOPE_LEN {
        assert!(
            frags.is_empty(),
            "fragments of a datagram shorter than an envelope"
        );
        return;
    }
    let (env, message) = data.split_at(ENVELOPE_LEN);
    if message.len() <= UDP_CHUNK {
        assert_eq!(
            frags,
            vec![data.to_vec()],
            "a single-datagram message must be sent as is"
        );
        return;
    }
    assert_eq!(
        frags.len(),
        message.len().div_ceil(UDP_CHUNK),
        "fragment count"
    );

    // Reassemble as a receiver would: datagrams arrive in any order (here: reversed), each
    // placed by the sequence number in its own envelope.
    let mut slots: Vec<Option<&[u8]>> = vec![None; frags.len()];
    for d in frags.iter().rev() {
        assert!(
            d.len() > ENVELOPE_LEN && d.len() <= ENVELOPE_LEN + UDP_CHUNK,
            "datagram size {}",
            d.len()
        );
        let (e, chunk) = d.split_at(ENVELOPE_LEN);
        // Everything but the sequence number is the original envelope.
        assert_eq!(e[..12], env[..12]);
        assert_eq!(e[16..], env[16..]);
        let seq = u32::from_be_bytes(e[12..16].try_into().unwrap()) as usize;
        assert!(seq < slots.len(), "sequence {seq} out of range");
        assert!(slots[seq].is_none(), "sequence {seq} sent twice");
        if seq + 1 < slots.len() {
            assert_eq!(
                chunk.len(),
                UDP_CHUNK,
                "only the last datagram may be short"
            );
        }
        // A fragment's envelope decodes exactly when the original one does, with its sequence.
        match (Envelope::decode(e), Envelope::decode(env)) {
            (Ok(fe), Ok(oe)) => assert_eq!(
                fe,
                Envelope {
                    sequence: seq as u32,
                    ..oe
                }
            ),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("fragment envelope {a:?} vs original {b:?}"),
        }
        slots[seq] = Some(chunk);
    }
    let reassembled: Vec<u8> = slots
        .into_iter()
        .flat_map(|s| s.unwrap().iter().copied())
        .collect();
    assert_eq!(reassembled, message, "reassembled message differs");
});
