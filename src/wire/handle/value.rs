//! HandleValue on the wire (handle-protocol.md §4):
//!
//! ```text
//! int4 index, int4 timestamp, int1 ttlType, int4 ttl, int1 permissions,
//! UTF8String type, UTF8String data, int4 nRefs, nRefs × (UTF8String handle, int4 index)
//! ```

use crate::model::codec::{DecodeError, Reader, Writer};
use crate::model::{HandleValue, Ttl, ValuePermissions, ValueReference, MAX_HANDLE_BYTES};

/// Smallest encoded value: fixed fields plus three empty length-prefixed parts.
pub const MIN_VALUE_BYTES: usize = 4 + 4 + 1 + 4 + 1 + 4 + 4 + 4;

pub fn encode_value(v: &HandleValue, out: &mut Vec<u8>) {
    out.put_u32(v.index);
    out.put_u32(v.timestamp);
    let (ttl_type, ttl) = match v.ttl {
        Ttl::Relative(s) => (0, s),
        Ttl::Absolute(t) => (1, t),
    };
    out.put_u8(ttl_type);
    out.put_u32(ttl);
    out.put_u8(v.permissions.0);
    out.put_bytes(v.type_name.as_bytes());
    out.put_bytes(&v.data);
    out.put_u32(v.references.len() as u32);
    for r in &v.references {
        out.put_bytes(r.handle.as_bytes());
        out.put_u32(r.index);
    }
}

pub fn decode_value(r: &mut Reader<'_>) -> Result<HandleValue, DecodeError> {
    let index = r.u32("value index")?;
    let timestamp = r.u32("value timestamp")?;
    let ttl_type = r.u8("value ttl type")?;
    let ttl = r.u32("value ttl")?;
    let ttl = match ttl_type {
        0 => Ttl::Relative(ttl),
        1 => Ttl::Absolute(ttl),
        other => {
            return Err(DecodeError::Invalid {
                what: "value ttl type",
                reason: format!("{other} is neither 0 (relative) nor 1 (absolute)"),
            })
        }
    };
    let permissions = ValuePermissions(r.u8("value permissions")?);
    let type_name = r.string("value type")?.to_string();
    let data = r.bytes("value data")?.to_vec();
    let n_refs = r.count("value reference count", 8)?;
    let mut references = Vec::with_capacity(n_refs);
    for _ in 0..n_refs {
        let handle = r.string("reference handle")?;
        if handle.len() > MAX_HANDLE_BYTES {
            return Err(DecodeError::TooLong {
                what: "reference handle",
                len: handle.len(),
                max: MAX_HANDLE_BYTES,
            });
        }
        let index = r.u32("reference index")?;
        references.push(ValueReference {
            handle: handle.to_string(),
            index,
        });
    }
    Ok(HandleValue {
        index,
        type_name,
        data,
        ttl,
        timestamp,
        permissions,
        references,
    })
}

/// `int4 n` + n values.
pub fn encode_values(values: &[HandleValue], out: &mut Vec<u8>) {
    out.put_u32(values.len() as u32);
    for v in values {
        encode_value(v, out);
    }
}

/// `int4 n` + n values.
pub fn decode_values(r: &mut Reader<'_>) -> Result<Vec<HandleValue>, DecodeError> {
    let n = r.count("value count", MIN_VALUE_BYTES)?;
    (0..n).map(|_| decode_value(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handle::vectors::hex;

    #[test]
    fn root_info_admin_value() {
        let bytes = hex(
            "00000064 566752e5 00 00015180 0e 00000008 48535f41444d494e 0000001b
             0fff 00000011 302e41444d494e2f41444d494e4c495354 000000c8 00000000",
        );
        let mut r = Reader::new(&bytes);
        let v = decode_value(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(v.index, 100);
        assert_eq!(v.timestamp, 1449612005);
        assert_eq!(v.ttl, Ttl::Relative(86400));
        assert_eq!(v.permissions, ValuePermissions(0x0e));
        assert_eq!(v.type_name, "HS_ADMIN");
        let mut out = Vec::new();
        encode_value(&v, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn hs_serv_vector() {
        let bytes = hex("000000020000000000000151800e0000000748535f534552560000000b302e4e412f38382e31303000000000");
        let mut r = Reader::new(&bytes);
        let v = decode_value(&mut r).unwrap();
        assert_eq!(v.data_str(), Some("0.NA/88.100"));
        let mut out = Vec::new();
        encode_value(&v, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn rejects_bad_ttl_type_and_truncation() {
        let mut bytes = hex("000000020000000000000151800e0000000748535f534552560000000b302e4e412f38382e31303000000000");
        bytes[8] = 7;
        assert!(decode_value(&mut Reader::new(&bytes)).is_err());
        bytes[8] = 0;
        assert!(decode_value(&mut Reader::new(&bytes[..bytes.len() - 1])).is_err());
    }
}
