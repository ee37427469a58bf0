//! UDP fragmentation of native messages (handle-protocol.md §1): a message longer than one
//! datagram travels as chunks of [`UDP_CHUNK`] bytes, each behind a copy of the envelope with
//! its own sequence number. [`udp_fragments`] splits (both ends' sending side); [`Fragments`]
//! collects the chunks of one message, checking every size against the declared length
//! before copying. [`super::reassembly`] keeps one per partial request on the serving side,
//! [`super::exchange`] one per awaited response on the asking side.

use super::message::{Envelope, ENVELOPE_LEN, UDP_CHUNK};

/// Split an encoded message (envelope included) into UDP datagrams: each carries the full
/// envelope with its chunk number and at most [`UDP_CHUNK`] message bytes.
pub fn udp_fragments(encoded: &[u8]) -> Vec<Vec<u8>> {
    if encoded.len() < ENVELOPE_LEN {
        return Vec::new();
    }
    let (env, body) = encoded.split_at(ENVELOPE_LEN);
    if body.len() <= UDP_CHUNK {
        return vec![encoded.to_vec()];
    }
    body.chunks(UDP_CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let mut d = Vec::with_capacity(ENVELOPE_LEN + chunk.len());
            d.extend_from_slice(env);
            d[12..16].copy_from_slice(&(i as u32).to_be_bytes());
            d.extend_from_slice(chunk);
            d
        })
        .collect()
}

/// Why a datagram does not fit the message being reassembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("the datagram declares an empty message")]
    Empty,
    #[error("sequence number {seq} out of range for a {total}-byte message ({chunks} datagrams)")]
    OutOfRange {
        seq: usize,
        total: usize,
        chunks: usize,
    },
    #[error("datagram {seq} carries {got} bytes, expected {expected}")]
    WrongSize {
        seq: usize,
        got: usize,
        expected: usize,
    },
    #[error("datagram {seq} declares {declared} bytes, earlier ones {earlier}")]
    LengthChanged {
        seq: usize,
        declared: usize,
        earlier: usize,
    },
    #[error("duplicate datagram {0}")]
    Duplicate(usize),
}

/// Collects the datagrams of one message: chunk k lands at offset k × [`UDP_CHUNK`]; every
/// datagram carries the full envelope with the total length and its own sequence number.
/// Sizes are checked against the declared length before anything is copied.
#[derive(Debug, Default)]
pub struct Fragments {
    envelope: Option<Envelope>,
    buf: Vec<u8>,
    have: Vec<bool>,
    missing: usize,
}

impl Fragments {
    pub fn new() -> Fragments {
        Fragments::default()
    }

    /// The total length the first accepted datagram declared.
    pub fn declared_len(&self) -> Option<usize> {
        self.envelope.map(|e| e.message_length as usize)
    }

    /// Check one datagram against its own envelope (sequence number in range, payload of the
    /// right size) without buffering anything.
    pub fn check(envelope: &Envelope, payload: &[u8]) -> Result<(), FragmentError> {
        let total = envelope.message_length as usize;
        if total == 0 {
            return Err(FragmentError::Empty);
        }
        let chunks = total.div_ceil(UDP_CHUNK);
        let seq = envelope.sequence as usize;
        if seq >= chunks {
            return Err(FragmentError::OutOfRange { seq, total, chunks });
        }
        let expected = UDP_CHUNK.min(total - seq * UDP_CHUNK);
        if payload.len() != expected {
            return Err(FragmentError::WrongSize {
                seq,
                got: payload.len(),
                expected,
            });
        }
        Ok(())
    }

    /// Offer one datagram's envelope and payload. `Ok(Some(..))` completes the message (its
    /// envelope with sequence 0, and the message bytes); `Ok(None)` waits for more.
    pub fn offer(
        &mut self,
        envelope: &Envelope,
        payload: &[u8],
    ) -> Result<Option<(Envelope, Vec<u8>)>, FragmentError> {
        Fragments::check(envelope, payload)?;
        let total = envelope.message_length as usize;
        let chunks = total.div_ceil(UDP_CHUNK);
        let seq = envelope.sequence as usize;
        let start = seq * UDP_CHUNK;
        let expected = payload.len();
        match self.declared_len() {
            Some(earlier) if earlier != total => {
                return Err(FragmentError::LengthChanged {
                    seq,
                    declared: total,
                    earlier,
                })
            }
            Some(_) => {}
            None => {
                self.envelope = Some(Envelope {
                    sequence: 0,
                    ..*envelope
                });
                self.buf = vec![0; total];
                self.have = vec![false; chunks];
                self.missing = chunks;
            }
        }
        if self.have[seq] {
            return Err(FragmentError::Duplicate(seq));
        }
        self.buf[start..start + expected].copy_from_slice(payload);
        self.have[seq] = true;
        self.missing -= 1;
        if self.missing > 0 {
            return Ok(None);
        }
        Ok(self
            .envelope
            .take()
            .map(|e| (e, std::mem::take(&mut self.buf))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HandleValue;
    use crate::wire::handle::message::{Body, Header, Message};
    use crate::wire::handle::vectors::*;

    #[test]
    fn udp_fragmentation_uses_492_byte_chunks() {
        let m = Message {
            envelope: Envelope::decode(&hex(RESP_HEX)[..20]).unwrap(),
            header: Header {
                op_code: 1,
                response_code: 1,
                op_flag: 0,
                site_serial: 1,
                recursion_count: 0,
                expiration: 0,
            },
            digest: None,
            body: Body::Values {
                handle: "88.100.1/BIG".into(),
                values: (1..40)
                    .map(|i| HandleValue::new(i, "DESC", vec![b'x'; 40]))
                    .collect(),
            },
            credential: Some(vec![]),
        };
        let encoded = m.encode();
        let frags = udp_fragments(&encoded);
        let body_len = encoded.len() - ENVELOPE_LEN;
        assert_eq!(frags.len(), body_len.div_ceil(UDP_CHUNK));
        let mut joined = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let env = Envelope::decode(&f[..20]).unwrap();
            assert_eq!(env.sequence as usize, i);
            assert_eq!(env.message_length as usize, body_len);
            assert!(f.len() - 20 <= UDP_CHUNK);
            joined.extend_from_slice(&f[20..]);
        }
        assert_eq!(
            Message::decode(Envelope::decode(&frags[0][..20]).unwrap(), &joined)
                .unwrap()
                .body,
            m.body
        );
    }

    #[test]
    fn fragments_reassemble_and_refuse_what_does_not_fit() {
        let mut msg = hex(RESP_HEX);
        // Grow the message past two datagrams by appending to a copy of the body (the assembler
        // only cares about lengths and positions).
        msg.extend(std::iter::repeat_n(7u8, 1000));
        let total = (msg.len() - ENVELOPE_LEN) as u32;
        msg[16..20].copy_from_slice(&total.to_be_bytes());
        let frags = udp_fragments(&msg);
        assert_eq!(frags.len(), 3);
        let parts: Vec<(Envelope, &[u8])> = frags
            .iter()
            .map(|f| {
                (
                    Envelope::decode(&f[..ENVELOPE_LEN]).unwrap(),
                    &f[ENVELOPE_LEN..],
                )
            })
            .collect();
        let mut a = Fragments::new();
        assert_eq!(a.offer(&parts[2].0, parts[2].1), Ok(None));
        assert_eq!(
            a.offer(&parts[2].0, parts[2].1),
            Err(FragmentError::Duplicate(2))
        );
        assert!(matches!(
            a.offer(&parts[0].0, &parts[0].1[1..]),
            Err(FragmentError::WrongSize { .. })
        ));
        let mut longer = parts[0].0;
        longer.message_length += 1;
        assert!(matches!(
            a.offer(&longer, parts[0].1),
            Err(FragmentError::LengthChanged { .. })
        ));
        let mut beyond = parts[0].0;
        beyond.sequence = 3;
        assert!(matches!(
            Fragments::check(&beyond, parts[0].1),
            Err(FragmentError::OutOfRange { .. })
        ));
        assert_eq!(a.offer(&parts[0].0, parts[0].1), Ok(None));
        let (env, data) = a.offer(&parts[1].0, parts[1].1).unwrap().unwrap();
        assert_eq!(env.sequence, 0);
        assert_eq!(data, msg[ENVELOPE_LEN..]);
    }
}
