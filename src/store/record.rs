//! Stored byte formats: records and change-log entries.
//!
//! Every stored value starts with a format byte and a CRC-32 of the rest, and is decoded
//! strictly: stored bytes are treated as untrusted (a torn or corrupted entry is reported as
//! corruption, never half-read).
//!
//! ```text
//! record:  u8 format(1) | u32 crc | UTF8String handle-as-registered | int4 n | n × HandleValue
//! change:  u8 format(1) | u32 crc | u64 unix-millis | u8 action | UTF8String key
//!          | [create/update: record body as above, without format and crc]
//! ```

use crate::model::codec::{DecodeError, Reader, Writer};
use crate::model::HandleValue;
use crate::wire::handle::{decode_values, encode_values};

const FORMAT: u8 = 1;

/// A stored identifier record: its values in index order, and the spelling it was registered
/// with (the key folds case; this keeps what the owner wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub handle: String,
    pub values: Vec<HandleValue>,
}

impl Record {
    pub fn value(&self, index: u32) -> Option<&HandleValue> {
        self.values.iter().find(|v| v.index == index)
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.handle.as_bytes());
        encode_values(&self.values, out);
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Record, DecodeError> {
        let handle = r.string("record handle")?.to_string();
        let values = decode_values(r)?;
        Ok(Record { handle, values })
    }
}

/// Bytes before the body of every stored value: format byte and CRC-32.
const HEADER_LEN: usize = 5;

fn seal(body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    seal_with_capacity(64, body)
}

fn seal_with_capacity(capacity: usize, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity.max(HEADER_LEN));
    out.extend_from_slice(&[FORMAT, 0, 0, 0, 0]);
    body(&mut out);
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[1..HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
    out
}

fn open(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(bytes);
    let format = r.u8("stored format")?;
    if format != FORMAT {
        return Err(DecodeError::Invalid {
            what: "stored format",
            reason: format!("unknown format {format}"),
        });
    }
    let crc = r.u32("stored checksum")?;
    let body = r.rest();
    if crc32fast::hash(body) != crc {
        return Err(DecodeError::Invalid {
            what: "stored checksum",
            reason: "CRC-32 mismatch".into(),
        });
    }
    Ok(body)
}

pub fn encode_record(record: &Record) -> Vec<u8> {
    seal(|out| record.encode_body(out))
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader::new(open(bytes)?);
    let record = Record::decode_body(&mut r)?;
    r.finish()?;
    Ok(record)
}

/// What a change-log entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create = 1,
    Delete = 2,
    Update = 3,
    HomePrefix = 4,
    UnhomePrefix = 5,
}

impl Action {
    fn from_u8(v: u8) -> Option<Action> {
        Some(match v {
            1 => Action::Create,
            2 => Action::Delete,
            3 => Action::Update,
            4 => Action::HomePrefix,
            5 => Action::UnhomePrefix,
            _ => return None,
        })
    }
}

/// One change-log entry. Like Handle.Net's transaction log, it carries the record as it is
/// after the change (not a delta), so replaying the newest entry of a key gives its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub unix_millis: u64,
    pub action: Action,
    /// Normalized handle key, or the prefix for home/unhome.
    pub key: String,
    /// The record after a create or update.
    pub record: Option<Record>,
}

pub fn encode_change(c: &Change) -> Vec<u8> {
    seal(|out| {
        out.put_u64(c.unix_millis);
        out.put_u8(c.action as u8);
        out.put_bytes(c.key.as_bytes());
        if let Some(rec) = &c.record {
            rec.encode_body(out);
        }
    })
}

/// The change-log entry of a create or update whose record is already encoded: the same bytes
/// [`encode_change`] gives for a [`Change`] carrying that record, built from the record's
/// encoded body (bulk import encodes each record once and copies it into its log entry).
///
/// `record_bytes` must come from [`encode_record`] (the store keeps them in
/// [`super::PreparedRecord`], which only that function fills).
pub(crate) fn encode_change_for_record(
    unix_millis: u64,
    action: Action,
    key: &str,
    record_bytes: &[u8],
) -> Vec<u8> {
    let body = record_bytes.get(HEADER_LEN..).unwrap_or_default();
    seal_with_capacity(HEADER_LEN + 13 + key.len() + body.len(), |out| {
        out.put_u64(unix_millis);
        out.put_u8(action as u8);
        out.put_bytes(key.as_bytes());
        out.extend_from_slice(body);
    })
}

pub fn decode_change(seq: u64, bytes: &[u8]) -> Result<Change, DecodeError> {
    let mut r = Reader::new(open(bytes)?);
    let unix_millis = r.u64("change time")?;
    let action_byte = r.u8("change action")?;
    let action = Action::from_u8(action_byte).ok_or_else(|| DecodeError::Invalid {
        what: "change action",
        reason: format!("unknown action {action_byte}"),
    })?;
    let key = r.string("change key")?.to_string();
    let record = match action {
        Action::Create | Action::Update => Some(Record::decode_body(&mut r)?),
        _ => None,
    };
    r.finish()?;
    Ok(Change {
        seq,
        unix_millis,
        action,
        key,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_corruption() {
        let rec = Record {
            handle: "88.100.1/SN-1".into(),
            values: vec![HandleValue::new(1, "URL", "https://e.example/1")],
        };
        let bytes = encode_record(&rec);
        assert_eq!(decode_record(&bytes).unwrap(), rec);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_record(&bad).is_err(), "flip at {i} undetected");
        }
        assert!(decode_record(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn change_round_trip() {
        let c = Change {
            seq: 9,
            unix_millis: 1_700_000_000_000,
            action: Action::Update,
            key: "88.100.1/SN-1".into(),
            record: Some(Record {
                handle: "88.100.1/SN-1".into(),
                values: vec![],
            }),
        };
        assert_eq!(decode_change(9, &encode_change(&c)).unwrap(), c);
        let d = Change {
            action: Action::Delete,
            record: None,
            ..c
        };
        assert_eq!(decode_change(9, &encode_change(&d)).unwrap(), d);
    }

    #[test]
    fn change_from_encoded_record_is_the_same_entry() {
        let rec = Record {
            handle: "88.100.1/Sn-1".into(),
            values: vec![
                HandleValue::new(1, "URL", "https://e.example/1"),
                HandleValue::new(2, "EMAIL", "qa@e.example"),
            ],
        };
        for action in [Action::Create, Action::Update] {
            let c = Change {
                seq: 4,
                unix_millis: 1_700_000_000_123,
                action,
                key: "88.100.1/SN-1".into(),
                record: Some(rec.clone()),
            };
            let fast =
                encode_change_for_record(c.unix_millis, action, &c.key, &encode_record(&rec));
            assert_eq!(fast, encode_change(&c));
            assert_eq!(decode_change(4, &fast).unwrap(), c);
        }
    }
}
