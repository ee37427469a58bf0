//! Values to Handle.Net REST JSON, key for key and in `GsonUtility`'s key order: the value
//! object and its `data` by type (`admin`, `vlist`, `site`, `key` as a JWK, else `string` or
//! `base64`). Structured data that does not decode, and keys a JWK would not give back byte
//! for byte, are written as `base64`.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::Engine as _;
use serde_json::{Map, Value};

use super::site::site_to_json;
use super::time::format_time;
use crate::model::{
    types, AdminRef, HandleValue, PublicKey, SiteInfo, Ttl, ValueList, ValuePermissions,
    ValueReference,
};

/// One value in the REST shape, exactly as Handle.Net's `GsonUtility` writes it.
pub fn value_to_json(v: &HandleValue) -> Value {
    let mut o = Map::new();
    o.insert("index".into(), v.index.into());
    o.insert("type".into(), v.type_name.clone().into());
    o.insert("data".into(), data_to_json(v));
    // Omitted when it is the Handle default "1110", as Handle.Net writes it; always written
    // for secrets, whose default here is admin-only, so no reader has to guess.
    if v.permissions != ValuePermissions::DEFAULT || types::is_secret(&v.type_name) {
        o.insert("permissions".into(), v.permissions.to_bit_string().into());
    }
    let ttl = match v.ttl {
        Ttl::Relative(s) => Value::from(s),
        Ttl::Absolute(t) => Value::from(format_time(t)),
    };
    o.insert("ttl".into(), ttl);
    if v.timestamp != 0 {
        o.insert("timestamp".into(), format_time(v.timestamp).into());
    }
    if !v.references.is_empty() {
        o.insert(
            "references".into(),
            Value::Array(v.references.iter().map(reference_to_json).collect()),
        );
    }
    Value::Object(o)
}

fn data_to_json(v: &HandleValue) -> Value {
    let t = v.type_name.as_str();
    // `Some(None)`: a structured type whose data does not decode.
    let structured = if t.eq_ignore_ascii_case(types::HS_ADMIN) {
        Some(AdminRef::decode(&v.data).ok().map(|a| {
            // Handle.Net flags records carrying the two legacy trailing bytes.
            let legacy = v.data.len() == 12 + a.admin.handle.len();
            typed("admin", admin_to_json(&a, legacy))
        }))
    } else if t.eq_ignore_ascii_case(types::HS_VLIST) {
        Some(ValueList::decode(&v.data).ok().map(|l| {
            typed(
                "vlist",
                Value::Array(l.0.iter().map(reference_to_json).collect()),
            )
        }))
    } else if types::is_site(t) {
        Some(
            SiteInfo::decode(&v.data)
                .ok()
                .map(|s| typed("site", site_to_json(&s))),
        )
    } else if t.eq_ignore_ascii_case(types::HS_PUBKEY) {
        Some(key_to_jwk(&v.data).map(|jwk| typed("key", jwk)))
    } else {
        None
    };
    match structured {
        Some(Some(json)) => json,
        Some(None) => base64_data(&v.data),
        None => match v.data_text() {
            Some(text) => typed("string", text.into()),
            None => base64_data(&v.data),
        },
    }
}

pub(super) fn typed(format: &str, value: Value) -> Value {
    let mut o = Map::new();
    o.insert("format".into(), format.into());
    o.insert("value".into(), value);
    Value::Object(o)
}

pub(super) fn base64_data(bytes: &[u8]) -> Value {
    typed("base64", STANDARD.encode(bytes).into())
}

fn reference_to_json(r: &ValueReference) -> Value {
    let mut o = Map::new();
    o.insert("handle".into(), r.handle.clone().into());
    o.insert("index".into(), r.index.into());
    Value::Object(o)
}

fn admin_to_json(a: &AdminRef, legacy: bool) -> Value {
    let mut o = Map::new();
    o.insert("handle".into(), a.admin.handle.clone().into());
    o.insert("index".into(), a.admin.index.into());
    o.insert("permissions".into(), a.permissions.to_bit_string().into());
    if legacy {
        o.insert("legacyByteLength".into(), true.into());
    }
    Value::Object(o)
}

/// The JWK of an RSA or DSA HS_PUBKEY (unsigned big-endian integers, base64url without
/// padding). `None` for DH keys, for anything that does not decode to a positive key, and
/// for keys whose bytes a JWK would not give back (Handle.Net's RSA form ends in 4 bytes
/// after the modulus): those are shown as base64, so a read-modify-write through the REST
/// API keeps every stored byte.
pub(super) fn key_to_jwk(data: &[u8]) -> Option<Value> {
    let key = PublicKey::decode(data).ok()?;
    if key.encode() != data {
        return None;
    }
    match key {
        PublicKey::Rsa { exponent, modulus } => jwk("RSA", &[("n", &modulus), ("e", &exponent)]),
        PublicKey::Dsa { q, p, g, y } => jwk("DSA", &[("y", &y), ("p", &p), ("q", &q), ("g", &g)]),
        PublicKey::Dh { .. } => None,
    }
}

fn jwk(kty: &str, parts: &[(&str, &Vec<u8>)]) -> Option<Value> {
    let mut o = Map::new();
    o.insert("kty".into(), kty.into());
    for (name, bytes) in parts {
        o.insert((*name).into(), URL_NO_PAD.encode(unsigned(bytes)?).into());
    }
    Some(Value::Object(o))
}

/// A two's-complement integer as unsigned magnitude bytes, like Handle.Net's `unsigned()`:
/// leading zeros stripped (zero stays one byte). `None` when empty or negative.
fn unsigned(bytes: &[u8]) -> Option<&[u8]> {
    let first = *bytes.first()?;
    if first & 0x80 != 0 {
        return None;
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    Some(&bytes[zeros.min(bytes.len() - 1)..])
}

const URL_NO_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false),
);
