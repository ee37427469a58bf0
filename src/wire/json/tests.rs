//! Tests of the REST JSON codec: Handle.Net's shapes both ways, the looser input forms, field
//! paths of errors, site records and times.

use serde_json::{json, Value};

use super::decode::{decode_hex, twos_complement};
use super::site::address_to_string;
use super::*;
use crate::model::structured::{interface, Interface, SITE_MULTI_PRIMARY, SITE_PRIMARY};
use crate::model::value::MAX_INDEX;
use crate::model::{
    types, AdminPermissions, AdminRef, HandleValue, Prefix, PublicKey, ServerInfo, SiteInfo, Ttl,
    ValuePermissions, ValueReference,
};

/// Handle.Net's RSA HS_PUBKEY (289 bytes) goes through the REST JSON byte for byte (as
/// base64: a JWK would drop its last 4 bytes); the same key without them is a JWK.
#[test]
fn handle_net_keys_survive_a_rest_round_trip() {
    let hn = crate::wire::handle::vectors2::v2("RSA_PUBKEY_DATA_HEX");
    let v = HandleValue::new(300, "HS_PUBKEY", hn.clone());
    let j = value_to_json(&v);
    assert_eq!(j["data"]["format"], "base64");
    assert_eq!(value_from_json(&j).unwrap().data, hn);
    let ours = HandleValue::new(300, "HS_PUBKEY", hn[..285].to_vec());
    let j = value_to_json(&ours);
    assert_eq!(j["data"]["format"], "key");
    assert_eq!(value_from_json(&j).unwrap().data, &hn[..285]);
    // In an HS_SITE too.
    let site = crate::wire::handle::vectors2::v2("SITE_WITH_KEY_HEX");
    let s = SiteInfo::decode(&site).unwrap();
    assert_eq!(site_from_json(&site_to_json(&s)).unwrap().encode(), site);
}

/// handle-vectors.json "json" section, serialized compactly (key order preserved).
const RESP_JSON: &str = r#"{"responseCode":1,"handle":"0.NA/88.100.1","values":[{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/88.100.1","index":200,"permissions":"011111111111"}},"ttl":86400},{"index":2,"type":"HS_SERV","data":{"format":"string","value":"0.NA/88.100"},"ttl":86400}]}"#;
const SITE_JSON: &str = r#"{"version":1,"protocolVersion":"2.11","serialNumber":1,"primarySite":true,"multiPrimary":false,"attributes":[{"name":"desc","value":"test"}],"servers":[{"serverId":1,"address":"127.0.0.1","publicKey":{"format":"base64","value":""},"interfaces":[{"query":true,"admin":true,"protocol":"TCP","port":2641},{"query":true,"admin":false,"protocol":"UDP","port":2641},{"query":true,"admin":true,"protocol":"HTTP","port":8000}]}]}"#;
const SITE_HEX: &str = "0001020b0001800200000000000000010000000464657363000000047465737400000001000000010000000000000000000000007f0000010000000000000003030100000a51020000000a51030200001f40";
const ADMIN_HEX: &str = "0fff0000000d302e4e412f38382e3130302e31000000c8";

fn hex(s: &str) -> Vec<u8> {
    decode_hex(s).expect("test hex")
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("test JSON")
}

fn admin(perms: u16, handle: &str, index: u32) -> Vec<u8> {
    AdminRef {
        permissions: AdminPermissions(perms),
        admin: ValueReference {
            handle: handle.into(),
            index,
        },
    }
    .encode()
}

fn err(j: Value) -> JsonError {
    value_from_json(&j).expect_err("should be rejected")
}

/// The error inside `InValue`, with its field path and display text.
fn inner(e: JsonError) -> JsonError {
    match e {
        JsonError::InValue { error, .. } => *error,
        other => panic!("expected InValue, got {other:?}"),
    }
}

fn field_of(e: &JsonError) -> &str {
    match e {
        JsonError::Missing { field }
        | JsonError::WrongType { field, .. }
        | JsonError::Invalid { field, .. }
        | JsonError::UnknownFormat { field, .. } => field,
        other => panic!("no field in {other:?}"),
    }
}

#[test]
fn resolution_response_matches_vector() {
    let values = vec![
        HandleValue::new(100, "HS_ADMIN", admin(0x07FF, "0.NA/88.100.1", 200)),
        HandleValue::new(2, "HS_SERV", "0.NA/88.100"),
    ];
    let out = serde_json::to_string(&handle_response(1, "0.NA/88.100.1", &values)).unwrap();
    assert_eq!(out, RESP_JSON);
    // The vector text survives a parse/serialize cycle unchanged (key order kept).
    assert_eq!(serde_json::to_string(&parse(RESP_JSON)).unwrap(), RESP_JSON);
    // And parses back into the same values.
    let parsed = parse(RESP_JSON);
    let back: Vec<HandleValue> = parsed["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| value_from_json(v).unwrap())
        .collect();
    assert_eq!(back, values);
}

#[test]
fn site_vector_both_directions() {
    let bytes = hex(SITE_HEX);
    let site = SiteInfo::decode(&bytes).unwrap();
    assert_eq!(
        serde_json::to_string(&site_to_json(&site)).unwrap(),
        SITE_JSON
    );
    let back = site_from_json(&parse(SITE_JSON)).unwrap();
    assert_eq!(back.encode(), bytes);

    // Through a whole value, for every site type.
    for t in ["HS_SITE", "HS_SITE.6", "HS_SITE.PREFIX", "hs_na_delegate"] {
        let v = HandleValue::new(1, t, bytes.clone());
        let j = value_to_json(&v);
        assert_eq!(j["data"]["format"], "site");
        assert_eq!(
            serde_json::to_string(&j["data"]["value"]).unwrap(),
            SITE_JSON
        );
        assert_eq!(value_from_json(&j).unwrap(), v);
    }
}

#[test]
fn site_options_and_keys() {
    let key = PublicKey::Rsa {
        exponent: vec![1, 0, 1],
        modulus: vec![0, 0xc3, 0x11, 0x07],
    };
    let site = SiteInfo {
        data_format_version: 1,
        protocol_major: 2,
        protocol_minor: 10,
        serial: 7,
        primary_mask: SITE_PRIMARY | SITE_MULTI_PRIMARY,
        hash_option: 0,
        hash_filter: b"f".to_vec(),
        attributes: vec![("alt_addr".into(), "2001:db8::1".into())],
        servers: vec![
            ServerInfo {
                server_id: 3,
                address: ServerInfo::address_from_ip("2001:db8::1".parse().unwrap()),
                public_key: key.encode(),
                interfaces: vec![Interface {
                    kind: interface::OUT_OF_SERVICE,
                    protocol: 9,
                    port: 70000,
                }],
            },
            ServerInfo {
                server_id: 4,
                address: ServerInfo::address_from_ip("10.0.0.1".parse().unwrap()),
                public_key: b"not a key".to_vec(),
                interfaces: vec![Interface {
                    kind: interface::ADMIN,
                    protocol: interface::HTTPS,
                    port: 443,
                }],
            },
        ],
    };
    let j = site_to_json(&site);
    assert_eq!(j["protocolVersion"], "2.10");
    assert_eq!(j["multiPrimary"], true);
    assert_eq!(j["hashOption"], 0);
    assert_eq!(j["hashFilter"], "f");
    assert_eq!(j["servers"][0]["address"], "2001:db8::1");
    assert_eq!(
        j["servers"][0]["publicKey"],
        json!({"format":"key","value":{"kty":"RSA","n":"wxEH","e":"AQAB"}})
    );
    assert_eq!(j["servers"][0]["interfaces"][0]["protocol"], 9);
    assert_eq!(j["servers"][0]["interfaces"][0]["query"], false);
    assert_eq!(j["servers"][1]["address"], "10.0.0.1");
    assert_eq!(
        j["servers"][1]["publicKey"],
        json!({"format":"base64","value":"bm90IGEga2V5"})
    );
    assert_eq!(j["servers"][1]["interfaces"][0]["admin"], true);
    assert_eq!(site_from_json(&j).unwrap(), site);

    // Attribute map form and defaults.
    let s = site_from_json(&json!({
        "attributes": {"desc": "x", "alt_addr": ["a", "b"]},
        "servers": []
    }))
    .unwrap();
    assert_eq!(
        s.attributes,
        vec![
            ("desc".to_string(), "x".to_string()),
            ("alt_addr".to_string(), "a".to_string()),
            ("alt_addr".to_string(), "b".to_string())
        ]
    );
    assert_eq!(
        (s.data_format_version, s.protocol_major, s.protocol_minor),
        (1, 2, 11)
    );
    assert_eq!((s.hash_option, s.primary_mask), (2, 0));
}

#[test]
fn ipv6_text_is_rfc5952() {
    let addr = |s: &str| ServerInfo::address_from_ip(s.parse().unwrap());
    for (input, shown) in [
        ("2001:550:100:6::4", "2001:550:100:6::4"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("1::", "1::"),
        ("::ffff:10.0.0.1", "::ffff:a00:1"),
        ("fe80::1:0:0:0", "fe80::1:0:0:0"),
        ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
        ("1:0:2:0:0:0:3:4", "1:0:2::3:4"),
    ] {
        assert_eq!(address_to_string(&addr(input)), shown, "{input}");
    }
    assert_eq!(address_to_string(&addr("0.0.0.0")), "0.0.0.0");
}

#[test]
fn admin_forms() {
    let pyhandle = json!({
        "index": 100, "type": "HS_ADMIN",
        "data": {"format": "admin", "value":
            {"index": "200", "handle": "0.NA/88.100.1", "permissions": "011111110011"}}
    });
    let v = value_from_json(&pyhandle).unwrap();
    assert_eq!(v.data, admin(0x07F3, "0.NA/88.100.1", 200));

    let with = |perms: Value| {
        value_from_json(&json!({
            "index": 100, "type": "HS_ADMIN",
            "data": {"format": "admin", "value":
                {"index": 200, "handle": "0.NA/88.100.1", "permissions": perms}}
        }))
        .map(|v| AdminRef::decode(&v.data).unwrap().permissions.0)
    };
    assert_eq!(with(json!("111111111111")), Ok(0x0FFF));
    assert_eq!(with(json!("*")), Ok(0x0FFF));
    assert_eq!(with(json!(true)), Ok(0x0FFF));
    assert_eq!(with(json!(false)), Ok(0));
    assert_eq!(with(Value::Null), Ok(0));
    assert_eq!(with(json!(0x0F3)), Ok(0x0F3));
    assert_eq!(with(json!("101")), Ok(0b101));
    assert_eq!(
        with(json!([
            "add_handle",
            "DELETE_HANDLE",
            "addNamingAuthority",
            "delete_derived_prefix",
            "list-handles",
            "read_value"
        ])),
        Ok(0x0C0F)
    );
    assert_eq!(with(json!([true, 0, 1, null, false, 2])), Ok(0b100101));
    assert_eq!(with(json!([])), Ok(0));
    for bad in [
        json!("01111111111x"),
        json!("0111111111111"),
        json!(""),
        json!(0x1000),
        json!(-1),
        json!(["add_handle", "fly"]),
        json!(["add_handle", true]),
        Value::Array(vec![Value::Bool(true); 13]),
        json!({"a": 1}),
    ] {
        let e = inner(with(bad.clone()).expect_err("accepted"));
        assert!(
            field_of(&e).starts_with("data.value.permissions"),
            "{bad}: {e}"
        );
    }

    // Output, including the legacy two trailing bytes.
    let v = HandleValue::new(100, "HS_ADMIN", hex(ADMIN_HEX));
    assert_eq!(
        value_to_json(&v)["data"],
        json!({"format":"admin","value":{"handle":"0.NA/88.100.1","index":200,"permissions":"111111111111"}})
    );
    let mut legacy = hex(ADMIN_HEX);
    legacy.extend_from_slice(&[0, 0]);
    let v = HandleValue::new(100, "HS_ADMIN", legacy);
    let j = value_to_json(&v);
    assert_eq!(j["data"]["value"]["legacyByteLength"], true);
    assert_eq!(value_from_json(&j).unwrap(), v);
}

#[test]
fn vlist_both_directions() {
    let bytes = hex("000000010000000e38382e3130302e312f61646d696e0000012c");
    let v = HandleValue::new(200, "HS_VLIST", bytes);
    let j = value_to_json(&v);
    assert_eq!(
        j["data"],
        json!({"format":"vlist","value":[{"handle":"88.100.1/admin","index":300}]})
    );
    assert_eq!(value_from_json(&j).unwrap(), v);
}

#[test]
fn data_input_formats() {
    let data = |d: Value| value_from_json(&json!({"index": 1, "type": "X", "data": d}));
    assert_eq!(data(json!("héllo")).unwrap().data, "héllo".as_bytes());
    assert_eq!(
        data(json!({"format": "string", "value": "a\nb"}))
            .unwrap()
            .data,
        b"a\nb"
    );
    assert_eq!(
        data(json!({"format": "STRING", "value": ""})).unwrap().data,
        b""
    );
    for b64 in ["AP8Q", "AP8QAA==", "AP8QAA", "AP8-", "AP-_", "A P 8 Q\n"] {
        assert!(
            data(json!({"format": "base64", "value": b64})).is_ok(),
            "{b64}"
        );
    }
    assert_eq!(
        data(json!({"format": "base64", "value": "AP8QAA"}))
            .unwrap()
            .data,
        [0, 0xff, 0x10, 0]
    );
    assert_eq!(
        data(json!({"format": "base64", "value": "+/8="}))
            .unwrap()
            .data,
        data(json!({"format": "base64", "value": "-_8"}))
            .unwrap()
            .data
    );
    assert_eq!(
        data(json!({"format": "hex", "value": "00ff10Ab"}))
            .unwrap()
            .data,
        [0, 0xff, 0x10, 0xab]
    );
    let key = PublicKey::Dsa {
        q: vec![0x11],
        p: vec![0x00, 0x80],
        g: vec![0x02],
        y: vec![0x7f, 0x01],
    };
    let dsa = data(json!({"format": "key", "value":
        {"kty": "dsa", "y": "fwE", "p": "gA", "q": "EQ==", "g": "Ag"}}))
    .unwrap();
    assert_eq!(dsa.data, key.encode());
}

#[test]
fn data_output_formats() {
    let out =
        |t: &str, d: &[u8]| value_to_json(&HandleValue::new(1, t, d.to_vec()))["data"].clone();
    assert_eq!(
        out("URL", b"https://x"),
        json!({"format":"string","value":"https://x"})
    );
    assert_eq!(
        out("DESC", b"a\tb\r\nc"),
        json!({"format":"string","value":"a\tb\r\nc"})
    );
    assert_eq!(out("DESC", b""), json!({"format":"string","value":""}));
    assert_eq!(
        out("X", &[0, 1, 2]),
        json!({"format":"base64","value":"AAEC"})
    );
    assert_eq!(
        out("X", b"bell\x07"),
        json!({"format":"base64","value":"YmVsbAc="})
    );
    assert_eq!(
        out("X", b"del\x7f"),
        json!({"format":"base64","value":"ZGVsfw=="})
    );
    assert_eq!(
        out("X", &[0xff, 0xfe]),
        json!({"format":"base64","value":"//4="})
    );
    // Structured types whose data does not decode fall back to base64, even if textual.
    for t in ["HS_ADMIN", "HS_VLIST", "HS_SITE", "HS_PUBKEY"] {
        assert_eq!(
            out(t, b"text"),
            json!({"format":"base64","value":"dGV4dA=="}),
            "{t}"
        );
    }
    // DH keys are not JWKs.
    let dh = PublicKey::Dh {
        y: vec![1],
        p: vec![2],
        g: vec![3],
    }
    .encode();
    assert_eq!(out("HS_PUBKEY", &dh)["format"], "base64");
}

#[test]
fn rsa_jwk_round_trip() {
    let key = PublicKey::Rsa {
        exponent: vec![0x01, 0x00, 0x01],
        modulus: vec![0x00, 0xc3, 0x11, 0x00, 0xfe],
    };
    let v = HandleValue::new(300, "HS_PUBKEY", key.encode());
    let j = value_to_json(&v);
    assert_eq!(
        j["data"],
        json!({"format":"key","value":{"kty":"RSA","n":"wxEA_g","e":"AQAB"}})
    );
    assert_eq!(value_from_json(&j).unwrap(), v);
    // Redundant leading zeros are dropped, as Java's BigInteger does.
    let padded = PublicKey::Rsa {
        exponent: vec![0, 0, 3],
        modulus: vec![0x00, 0x00, 0x45],
    };
    let j = value_to_json(&HandleValue::new(300, "HS_PUBKEY", padded.encode()));
    assert_eq!(j["data"]["value"], json!({"kty":"RSA","n":"RQ","e":"Aw"}));
    // Negative (high bit set, no 0x00) or empty integers are not keys: base64.
    let negative = PublicKey::Rsa {
        exponent: vec![3],
        modulus: vec![0x80],
    };
    let j = value_to_json(&HandleValue::new(300, "HS_PUBKEY", negative.encode()));
    assert_eq!(j["data"]["format"], "base64");
    assert_eq!(twos_complement(&[0, 0]), vec![0]);
    assert_eq!(twos_complement(&[0x80]), vec![0, 0x80]);
}

#[test]
fn hole5_secrets_without_permissions_are_admin_only() {
    for t in ["HS_SECKEY", "HS_PRIVKEY"] {
        let v = value_from_json(&json!({"index": 300, "type": t, "data": "pw"})).unwrap();
        assert_eq!(v.permissions, ValuePermissions::ADMIN_ONLY, "{t}");
        // Written out explicitly, so a reader never assumes the "1110" default.
        assert_eq!(value_to_json(&v)["permissions"], "1100");
        let public = v.with_permissions(ValuePermissions::DEFAULT);
        assert_eq!(value_to_json(&public)["permissions"], "1110");
        assert_eq!(value_from_json(&value_to_json(&public)).unwrap(), public);
    }
    // Explicit permissions are kept as given.
    let v = value_from_json(
        &json!({"index": 300, "type": "HS_SECKEY", "data": "pw", "permissions": "1110"}),
    )
    .unwrap();
    assert_eq!(v.permissions, ValuePermissions::DEFAULT);
}

#[test]
fn value_fields_and_defaults() {
    let v = value_from_json(&json!({"index": "7", "type": "URL", "data": "x"})).unwrap();
    assert_eq!(v, HandleValue::new(7, "URL", "x"));
    let v = value_from_json(&json!({
        "index": 3, "type": "EMAIL", "data": "a@b", "permissions": "1100",
        "ttl": "2030-01-01T00:00:00Z", "timestamp": "2024-01-01T00:00:00.250Z",
        "references": [{"handle": "88.100.1/x", "index": "2"}]
    }))
    .unwrap();
    assert_eq!(v.permissions, ValuePermissions::ADMIN_ONLY);
    assert_eq!(v.ttl, Ttl::Absolute(1_893_456_000));
    assert_eq!(v.timestamp, 1_704_067_200);
    assert_eq!(
        v.references,
        vec![ValueReference {
            handle: "88.100.1/x".into(),
            index: 2
        }]
    );
    let j = value_to_json(&v);
    assert_eq!(
        serde_json::to_string(&j).unwrap(),
        r#"{"index":3,"type":"EMAIL","data":{"format":"string","value":"a@b"},"permissions":"1100","ttl":"2030-01-01T00:00:00Z","timestamp":"2024-01-01T00:00:00Z","references":[{"handle":"88.100.1/x","index":2}]}"#
    );
    // ttl as a numeric string is relative; timestamp as a number; nulls are absent.
    let v = value_from_json(&json!({
        "index": 1, "type": "URL", "data": "x", "ttl": "60", "timestamp": 5,
        "permissions": null, "references": null
    }))
    .unwrap();
    assert_eq!((v.ttl, v.timestamp), (Ttl::Relative(60), 5));
    assert_eq!(v.permissions, ValuePermissions::DEFAULT);
    let v = value_from_json(&json!({"index": 1, "type": "URL", "data": "x", "permissions": "*"}))
        .unwrap();
    assert_eq!(v.permissions, ValuePermissions(0x0F));
}

#[test]
fn value_errors() {
    // index
    for bad in [
        json!(0),
        json!(-1),
        json!(2_147_483_648u64),
        json!("0"),
        json!("x"),
        json!(1.5),
        json!(u64::MAX),
    ] {
        let e = err(json!({"index": bad, "type": "URL", "data": "x"}));
        assert!(
            matches!(&e, JsonError::Invalid { field, .. } if field == "index"),
            "{bad}: {e:?}"
        );
    }
    for bad in [json!(true), json!(null), json!([1]), json!({})] {
        let e = err(json!({"index": bad, "type": "URL", "data": "x"}));
        assert!(
            matches!(&e, JsonError::WrongType { field, .. } | JsonError::Missing { field } if field == "index"),
            "{bad}: {e:?}"
        );
    }
    assert_eq!(
        err(json!({"type": "URL", "data": "x"})),
        JsonError::Missing {
            field: "index".into()
        }
    );
    assert_eq!(
        err(json!("URL")),
        JsonError::WrongType {
            field: String::new(),
            expected: "object",
            found: "string"
        }
    );
    let e = err(json!({"index": 1, "type": "URL", "data": "x", "ttl": -5}));
    assert_eq!(
        e.to_string(),
        "value 1: field `ttl`: ttl must be from 0 to 4294967295, got -5"
    );

    // (offending field, extra members merged into {"index":1,"type":"X","data":"x"})
    let long_handle = "h".repeat(2049);
    let cases: Vec<(&str, Value)> = vec![
        ("type", json!({"type": null})),
        ("type", json!({"type": ""})),
        ("type", json!({"type": 5})),
        ("data", json!({"data": null})),
        ("data", json!({"data": 5})),
        ("permissions", json!({"permissions": "111"})),
        ("permissions", json!({"permissions": 14})),
        ("ttl", json!({"ttl": "tomorrow"})),
        ("ttl", json!({"ttl": true})),
        ("ttl", json!({"ttl": "1969-12-31T23:59:59Z"})),
        ("ttl", json!({"ttl": 4_294_967_296u64})),
        ("timestamp", json!({"timestamp": "2024-13-01T00:00:00Z"})),
        ("timestamp", json!({"timestamp": []})),
        ("references", json!({"references": {}})),
        ("references[0]", json!({"references": ["1:h"]})),
        (
            "references[0].handle",
            json!({"references": [{"handle": 1, "index": 1}]}),
        ),
        (
            "references[0].handle",
            json!({"references": [{"handle": long_handle, "index": 1}]}),
        ),
        (
            "references[0].index",
            json!({"references": [{"handle": "h", "index": -1}]}),
        ),
    ];
    // (offending field below `data`, data)
    let data_cases: Vec<(&str, &str)> = vec![
        ("format", r#"{"value":"x"}"#),
        ("format", r#"{"format":1,"value":"x"}"#),
        ("format", r#"{"format":"yaml","value":"x"}"#),
        ("value", r#"{"format":"string"}"#),
        ("value", r#"{"format":"string","value":1}"#),
        ("value", r#"{"format":"base64","value":"a$=="}"#),
        ("value", r#"{"format":"base64","value":"A"}"#),
        ("value", r#"{"format":"base64","value":"+-=="}"#),
        ("value", r#"{"format":"hex","value":"abc"}"#),
        ("value", r#"{"format":"hex","value":"zz"}"#),
        ("value", r#"{"format":"admin","value":"h"}"#),
        ("value.handle", r#"{"format":"admin","value":{"index":1}}"#),
        (
            "value.index",
            r#"{"format":"admin","value":{"handle":"h"}}"#,
        ),
        (
            "value.index",
            r#"{"format":"admin","value":{"handle":"h","index":true}}"#,
        ),
        ("value", r#"{"format":"vlist","value":{}}"#),
        (
            "value[1].index",
            r#"{"format":"vlist","value":[{"handle":"h","index":1},{"handle":"h"}]}"#,
        ),
        ("value.kty", r#"{"format":"key","value":{"kty":"EC"}}"#),
        (
            "value.e",
            r#"{"format":"key","value":{"kty":"RSA","n":"AQ"}}"#,
        ),
        (
            "value.n",
            r#"{"format":"key","value":{"kty":"RSA","n":"","e":"AQ"}}"#,
        ),
        (
            "value.n",
            r#"{"format":"key","value":{"kty":"RSA","n":"!!","e":"AQ"}}"#,
        ),
    ];
    // (offending field below `data.value`, site)
    let site_cases: Vec<(&str, &str)> = vec![
        ("servers", r#"{}"#),
        ("protocolVersion", r#"{"protocolVersion":"2","servers":[]}"#),
        ("serialNumber", r#"{"serialNumber":65536,"servers":[]}"#),
        ("primarySite", r#"{"primarySite":"yes","servers":[]}"#),
        (
            "attributes[0].value",
            r#"{"attributes":[{"name":"a"}],"servers":[]}"#,
        ),
        (
            "servers[0].serverId",
            r#"{"servers":[{"address":"::1","interfaces":[]}]}"#,
        ),
        (
            "servers[0].address",
            r#"{"servers":[{"serverId":1,"address":"nowhere","interfaces":[]}]}"#,
        ),
        (
            "servers[0].publicKey.value",
            r#"{"servers":[{"serverId":1,"address":"::1","publicKey":{"format":"base64","value":"%"},"interfaces":[]}]}"#,
        ),
        (
            "servers[0].interfaces[0].protocol",
            r#"{"servers":[{"serverId":1,"address":"::1","interfaces":[{"query":true,"admin":true,"protocol":"FTP","port":1}]}]}"#,
        ),
        (
            "servers[0].interfaces[0].admin",
            r#"{"servers":[{"serverId":1,"address":"::1","interfaces":[{"query":true,"protocol":"TCP","port":1}]}]}"#,
        ),
        (
            "servers[0].interfaces[0].query",
            r#"{"servers":[{"serverId":1,"address":"::1","interfaces":[{"query":1,"admin":true,"protocol":"TCP","port":1}]}]}"#,
        ),
        (
            "servers[0].interfaces[0].port",
            r#"{"servers":[{"serverId":1,"address":"::1","interfaces":[{"query":true,"admin":true,"protocol":"TCP","port":-1}]}]}"#,
        ),
    ];
    let all = cases
        .into_iter()
        .map(|(f, extra)| (f.to_string(), extra))
        .chain(
            data_cases
                .into_iter()
                .map(|(f, d)| (format!("data.{f}"), json!({"data": parse(d)}))),
        )
        .chain(site_cases.into_iter().map(|(f, site)| {
            (
                format!("data.value.{f}"),
                json!({"data": {"format": "site", "value": parse(site)}}),
            )
        }));
    for (field, extra) in all {
        let mut j = json!({"index": 1, "type": "X", "data": "x"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                j.as_object_mut().unwrap().remove(k);
            } else {
                j[k] = v.clone();
            }
        }
        let e = inner(err(j.clone()));
        assert_eq!(field_of(&e), field, "{j}: {e}");
        assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
    }
    let e = err(json!({"index": 1, "type": "URL", "data": {"format": "yaml", "value": "x"}}));
    assert!(
        matches!(inner(e.clone()), JsonError::UnknownFormat { ref format, .. } if format == "yaml")
    );
    assert_eq!(
        e.to_string(),
        "value 1: field `data.format`: unknown data format \"yaml\" (expected string, base64, hex, admin, vlist, site or key)"
    );
}

#[test]
fn request_bodies() {
    let one = json!({"index": 1, "type": "URL", "data": "http://x"});
    let two = json!({"index": 2, "type": "EMAIL", "data": "a@b"});
    let expect = vec![
        HandleValue::new(1, "URL", "http://x"),
        HandleValue::new(2, "EMAIL", "a@b"),
    ];
    assert_eq!(
        values_from_request_body(&json!([one, two])).unwrap(),
        (None, expect.clone())
    );
    assert_eq!(
        values_from_request_body(&json!({"values": [one, two]})).unwrap(),
        (None, expect.clone())
    );
    assert_eq!(
        values_from_request_body(&json!({"handle": "88.100.1/x", "values": [one, two]})).unwrap(),
        (Some("88.100.1/x".to_string()), expect.clone())
    );
    assert_eq!(
        values_from_request_body(&one).unwrap(),
        (None, vec![expect[0].clone()])
    );
    assert_eq!(
        values_from_request_body(&json!([])).unwrap(),
        (None, vec![])
    );

    assert_eq!(
        values_from_request_body(&json!("x")),
        Err(JsonError::BadBody { found: "string" })
    );
    assert_eq!(
        values_from_request_body(&json!({"handle": "h"})),
        Err(JsonError::BadBody { found: "object" })
    );
    assert!(matches!(
        values_from_request_body(&json!({"values": {}})),
        Err(JsonError::WrongType { ref field, .. }) if field == "values"
    ));
    assert!(matches!(
        values_from_request_body(&json!({"values": [], "handle": 5})),
        Err(JsonError::WrongType { ref field, .. }) if field == "handle"
    ));
    let e = values_from_request_body(&json!([one, {"index": 9, "type": "URL", "data": 1}]))
        .unwrap_err();
    assert!(matches!(
        &e,
        JsonError::InBody { position: 1, error } if matches!(**error, JsonError::InValue { index: 9, .. })
    ));
    assert_eq!(
        e.to_string(),
        "values[1]: value 9: field `data`: expected string or {format, value} object, found number"
    );
}

#[test]
fn response_envelopes() {
    assert_eq!(
        serde_json::to_string(&error_response(
            301,
            Some("hdl:21.14106/TESTTESTTEST"),
            "That prefix doesn't live here"
        ))
        .unwrap(),
        r#"{"responseCode":301,"message":"That prefix doesn't live here","handle":"hdl:21.14106/TESTTESTTEST"}"#
    );
    assert_eq!(
        serde_json::to_string(&error_response(100, None, "")).unwrap(),
        r#"{"responseCode":100}"#
    );
    assert_eq!(
        serde_json::to_string(&handle_response(1, "88.100.1/x", &[])).unwrap(),
        r#"{"responseCode":1,"handle":"88.100.1/x","values":[]}"#
    );
}

#[test]
fn rest_answer_envelopes_keep_their_key_order() {
    let text = |v: Value| serde_json::to_string(&v).unwrap();
    assert_eq!(
        text(no_values_response(
            200,
            Some("88.100.1/x"),
            "no such values"
        )),
        r#"{"responseCode":200,"message":"no such values","handle":"88.100.1/x","values":[]}"#
    );
    assert_eq!(
        text(referral_response(301, Some("88.100.1/x"), "", &[])),
        r#"{"responseCode":301,"handle":"88.100.1/x","referralHandle":"","values":[]}"#
    );
    assert_eq!(
        text(write_response("88.100.1/x")),
        r#"{"responseCode":1,"handle":"88.100.1/x"}"#
    );
    assert_eq!(
        text(handle_list_response(
            "0.NA/88.100.1",
            2,
            None,
            &["88.100.1/a".into(), "88.100.1/b".into()]
        )),
        r#"{"responseCode":1,"prefix":"0.NA/88.100.1","totalCount":2,"handles":["88.100.1/a","88.100.1/b"]}"#
    );
    assert_eq!(
        text(handle_list_response("88.100.1", 7, Some((1, 2)), &[])),
        r#"{"responseCode":1,"prefix":"88.100.1","totalCount":7,"page":1,"pageSize":2,"handles":[]}"#
    );
    let prefixes = [
        Prefix::parse("88.100.1").unwrap(),
        Prefix::parse("88.200.2").unwrap(),
    ];
    assert_eq!(
        text(prefixes_response(&prefixes)),
        r#"{"responseCode":1,"prefixes":["88.100.1","88.200.2"]}"#
    );
    assert_eq!(
        text(session_response("s1", "bm9uY2U=", None)),
        r#"{"sessionId":"s1","nonce":"bm9uY2U=","authenticated":false}"#
    );
    assert_eq!(
        text(session_response(
            "s1",
            "bm9uY2U=",
            Some("300:0.NA/88.100.1")
        )),
        r#"{"sessionId":"s1","nonce":"bm9uY2U=","authenticated":true,"id":"300:0.NA/88.100.1"}"#
    );
    assert_eq!(text(session_closed_response("s1")), r#"{"sessionId":"s1"}"#);
}

#[test]
fn time_helpers() {
    assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_time(1_704_067_200), "2024-01-01T00:00:00Z");
    assert_eq!(format_time(u32::MAX), "2106-02-07T06:28:15Z");
    assert_eq!(parse_time("2024-01-01T00:00:00Z"), Some(1_704_067_200));
    assert_eq!(parse_time("2024-01-01T00:00:00.999Z"), Some(1_704_067_200));
    assert_eq!(parse_time("2024-01-01t00:00:00z"), Some(1_704_067_200));
    assert_eq!(parse_time("2024-01-01T00:00:00"), Some(1_704_067_200));
    assert_eq!(parse_time("2024-01-01 00:00:00Z"), Some(1_704_067_200));
    assert_eq!(parse_time("2024-01-01T08:00:00+08:00"), Some(1_704_067_200));
    assert_eq!(
        parse_time("2023-12-31T19:00:00.5-05:00"),
        Some(1_704_067_200)
    );
    assert_eq!(parse_time("2024-01-01T00:00:00+00:00"), Some(1_704_067_200));
    assert_eq!(parse_time("2106-02-07T06:28:15Z"), Some(u32::MAX));
    for bad in [
        "",
        "2024",
        "2024-01-01",
        "2106-02-07T06:28:16Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00+00:01",
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:00ZZ",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+0a:00",
        "2024-01-01T00:00:00.5X",
        "2024-01-01T00:00:00é",
        "9999-12-31T23:59:59Z",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn plain_type() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_./]{1,16}".prop_filter("not a structured type", |t| {
            !(t.eq_ignore_ascii_case(types::HS_ADMIN)
                || t.eq_ignore_ascii_case(types::HS_VLIST)
                || t.eq_ignore_ascii_case(types::HS_PUBKEY)
                || types::is_site(t))
        })
    }

    fn data() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..48),
            ".{0,24}".prop_map(String::into_bytes),
        ]
    }

    fn value() -> impl Strategy<Value = HandleValue> {
        (
            1..=MAX_INDEX,
            plain_type(),
            data(),
            0u8..16,
            prop_oneof![
                any::<u32>().prop_map(Ttl::Relative),
                any::<u32>().prop_map(Ttl::Absolute)
            ],
            prop_oneof![Just(0u32), any::<u32>()],
            proptest::collection::vec((".{0,20}", any::<u32>()), 0..3),
        )
            .prop_map(|(index, type_name, data, perms, ttl, timestamp, refs)| {
                HandleValue {
                    index,
                    type_name,
                    data,
                    ttl,
                    timestamp,
                    permissions: ValuePermissions(perms),
                    references: refs
                        .into_iter()
                        .map(|(handle, index)| ValueReference { handle, index })
                        .collect(),
                }
            })
    }

    proptest! {
        #[test]
        fn plain_values_round_trip(v in value()) {
            let j = value_to_json(&v);
            // Through text too, as a client would see it.
            let text = serde_json::to_string(&j).unwrap();
            let reparsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(value_from_json(&reparsed).unwrap(), v.clone());
            prop_assert_eq!(j.get("timestamp").is_none(), v.timestamp == 0);
            prop_assert_eq!(
                j.get("permissions").is_none(),
                v.permissions == ValuePermissions::DEFAULT && !types::is_secret(&v.type_name)
            );
            prop_assert_eq!(j.get("references").is_none(), v.references.is_empty());
        }

        #[test]
        fn arbitrary_json_never_panics(s in ".{0,64}", n in any::<i64>(), f in any::<f64>()) {
            for d in [json!(s), json!(n), json!(f), json!({"format": s, "value": s}),
                      json!({"format": "admin", "value": {"handle": s, "index": n, "permissions": s}}),
                      json!({"format": "key", "value": {"kty": "RSA", "n": s, "e": s}})] {
                let _ = value_from_json(&json!({"index": n, "type": s, "data": d}));
                let _ = value_from_json(&json!({"index": 1, "type": "X", "data": d, "ttl": s, "timestamp": s}));
            }
            let _ = parse_time(&s);
        }
    }
}
