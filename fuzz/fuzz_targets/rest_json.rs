//! The REST request-body parser on arbitrary JSON text: `values_from_request_body` never
//! panics, and every value it accepts survives `value_to_json` → text → `value_from_json`:
//!
//! - the JSON the server prints for it is accepted back;
//! - index, type, ttl, permissions and references are unchanged;
//! - `timestamp` is unchanged: `value_to_json` leaves it out only when it is 0, and an absent
//!   timestamp parses as 0 (so it is never lost);
//! - `data` is unchanged byte for byte for plain types; for structured types (HS_ADMIN,
//!   HS_VLIST, HS_SITE*, HS_PUBKEY) the REST view canonicalizes (JWK integers, legacy bytes,
//!   bits the JSON shape has no field for), so there the printed JSON must be a fixed point
//!   instead: printing the re-parsed value gives the same JSON.
#![no_main]

use idnode::model::{types, HandleValue};
use idnode::wire::json::{value_from_json, value_to_json, values_from_request_body};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn is_structured(t: &str) -> bool {
    t.eq_ignore_ascii_case(types::HS_ADMIN)
        || t.eq_ignore_ascii_case(types::HS_VLIST)
        || t.eq_ignore_ascii_case(types::HS_PUBKEY)
        || types::is_site(t)
}

/// `value_to_json`, through text as a client sees it, and back.
fn through_json(v: &HandleValue) -> (Value, HandleValue) {
    let j = value_to_json(v);
    let text = serde_json::to_string(&j).expect("serialize value JSON");
    let reparsed: Value = serde_json::from_str(&text).expect("reparse value JSON");
    assert_eq!(reparsed, j, "JSON text round trip");
    let back = value_from_json(&reparsed).unwrap_or_else(|e| {
        panic!("value_from_json rejects what value_to_json printed: {e}\n  value: {v:?}\n  json: {text}")
    });
    (j, back)
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok((_handle, values)) = values_from_request_body(&body) else {
        return;
    };
    for v in &values {
        let (j, back) = through_json(v);
        assert_eq!(
            j.get("timestamp").is_none(),
            v.timestamp == 0,
            "timestamp omitted from the JSON although not 0 (or printed although 0)"
        );
        assert_eq!(back.index, v.index, "index");
        assert_eq!(back.type_name, v.type_name, "type");
        assert_eq!(back.ttl, v.ttl, "ttl");
        assert_eq!(back.timestamp, v.timestamp, "timestamp");
        assert_eq!(back.permissions, v.permissions, "permissions");
        assert_eq!(back.references, v.references, "references");
        if is_structured(&v.type_name) {
            let (j2, back2) = through_json(&back);
            assert_eq!(
                j2, j,
                "REST JSON of a structured value is not a fixed point"
            );
            assert_eq!(
                back2, back,
                "structured value not stable after one REST round trip"
            );
        } else {
            assert_eq!(back.data, v.data, "data of a plain value changed");
            assert_eq!(back, *v);
        }
    }
});
