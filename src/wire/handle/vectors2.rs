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

/// (model::structured against these vectors; the test lives here, in `wire`, so `model`
/// imports nothing above it.) Handle.Net's RSA HS_PUBKEY (289 bytes: the key's 285, then 4 zero bytes) decodes to the
/// key's integers; the DSA form has no tail; a key cut short is still an error.
#[test]
fn handle_net_key_forms_decode() {
    use crate::model::{PublicKey, SiteInfo};
    let rsa = v2("RSA_PUBKEY_DATA_HEX");
    assert_eq!(rsa.len(), 289);
    assert_eq!(&rsa[285..], &[0, 0, 0, 0]);
    let PublicKey::Rsa { exponent, modulus } = PublicKey::decode(&rsa).unwrap() else {
        panic!("not RSA")
    };
    assert_eq!(exponent, vec![1, 0, 1]);
    let n = v2_hex("/inputs/keys/ADMIN_RSA/modulus_hex");
    assert_eq!(modulus[0], 0);
    assert_eq!(&modulus[1..], &n[..]);
    // Our own encoding is the 285 bytes without the tail.
    assert_eq!(PublicKey::decode(&rsa).unwrap().encode(), &rsa[..285]);
    assert!(PublicKey::decode(&rsa[..284]).is_err());
    let server = v2("SERVER_RSA_PUBKEY_DATA_HEX");
    assert!(matches!(
        PublicKey::decode(&server),
        Ok(PublicKey::Rsa { .. })
    ));
    let dsa = v2("DSA_PUBKEY_DATA_HEX");
    let PublicKey::Dsa { q, y, .. } = PublicKey::decode(&dsa).unwrap() else {
        panic!("not DSA")
    };
    assert_eq!(&q[1..], &v2_hex("/inputs/keys/ADMIN_DSA/q_hex")[..]);
    assert_eq!(y, v2_hex("/inputs/keys/ADMIN_DSA/y_hex"));
    assert_eq!(PublicKey::decode(&dsa).unwrap().encode(), dsa);
    // The site carrying a 289-byte server key decodes and re-encodes byte for byte.
    let site = v2("SITE_WITH_KEY_HEX");
    let decoded = SiteInfo::decode(&site).unwrap();
    assert_eq!(decoded.servers[0].public_key, server);
    assert_eq!(decoded.encode(), site);
}
