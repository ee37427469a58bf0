//! The second vector set (`tests/data/handle-vectors-2.json`: Handle.Net 9.2 sessions, RSA
//! key forms, signed answers, the ID-SDK's login), read once for the unit tests.

use std::sync::OnceLock;

use super::vectors::hex;

const FILE: &str = include_str!("../../../tests/data/handle-vectors-2.json");

/// The whole file, parsed.
pub fn v2_json() -> &'static serde_json::Value {
    static PARSED: OnceLock<serde_json::Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(FILE).expect("tests/data/handle-vectors-2.json"))
}

/// The bytes of vector `name` (for example `"SESSION_SETUP_REQ_HEX"`).
pub fn v2(name: &str) -> Vec<u8> {
    let text = v2_json()["vectors"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no vector {name}"));
    hex(text)
}

/// A hex string anywhere in the file, by JSON pointer (for example
/// `"/intermediate/SESSION_DH/session_key_hex"`).
pub fn v2_hex(pointer: &str) -> Vec<u8> {
    let text = v2_json()
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no hex at {pointer}"));
    hex(text)
}

/// The PKCS#8 DER private key of test key `name` (`ADMIN_RSA`, `SERVER_RSA`, `ADMIN_DSA`).
pub fn v2_key(name: &str) -> Vec<u8> {
    v2_hex(&format!("/inputs/keys/{name}/pkcs8_der_hex"))
}

#[test]
fn the_file_holds_every_named_vector() {
    assert_eq!(v2("RSA_PUBKEY_DATA_HEX").len(), 289);
    assert_eq!(v2_key("SERVER_RSA")[0], 0x30);
    assert_eq!(v2_hex("/intermediate/SESSION_DH/session_key_hex").len(), 32);
}
