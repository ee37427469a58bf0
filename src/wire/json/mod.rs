//! The Handle.Net REST API JSON shapes (handle-protocol.md §9), as a pure codec between
//! [`HandleValue`] and [`serde_json::Value`].
//!
//! Output follows Handle.Net's `GsonUtility` key for key and in the same key order (the crate
//! enables serde_json's `preserve_order`), so responses compare byte for byte with the reference
//! server's:
//!
//! ```text
//! {"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{…}},"ttl":86400}
//! ```
//!
//! - `permissions` only when not "1110"; `ttl` a number (relative) or an ISO-8601 UTC time
//!   (absolute); `timestamp` only when not 0; `references` only when non-empty;
//! - `data` by type: HS_ADMIN → `admin`, HS_VLIST → `vlist`, HS_SITE / HS_SITE.6 /
//!   HS_SITE.PREFIX / HS_NA_DELEGATE → `site`, HS_PUBKEY (RSA, DSA) → `key` (a JWK); any other
//!   data is `string` when it is UTF-8 text that does not look binary, else `base64`. Structured
//!   data that fails to decode falls back to `base64`.
//!
//! Input is what Handle.Net accepts, plus the looser forms real clients send (pyhandle sends
//! admin indexes as strings, bare strings as `data`, …), and nothing else: every wrong shape is a
//! [`JsonError`] naming the field, never a panic. Absent optional members take Handle.Net's
//! defaults; `null` counts as absent.
//!
//! Also here: the response envelopes (`handle_response`, `error_response`), the PUT body forms
//! (`values_from_request_body`), the site record on its own (`site_to_json`, `site_from_json`,
//! for `/api/site`) and the ISO-8601 time helpers.

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, Engine as _};
use serde_json::{Map, Value};

use crate::model::codec::MAX_ARRAY;
use crate::model::structured::{interface, Interface, SITE_MULTI_PRIMARY, SITE_PRIMARY};
use crate::model::value::MAX_INDEX;
use crate::model::{
    types, AdminPermissions, AdminRef, HandleValue, PublicKey, ServerInfo, SiteInfo, Ttl,
    ValueList, ValuePermissions, ValueReference, MAX_HANDLE_BYTES,
};

/// Why a JSON document is not a valid value (or request body).
///
/// `field` is a path inside the value, such as `data.value.servers[0].port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("missing field `{field}`")]
    Missing { field: String },
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error(
        "field `{field}`: unknown data format {format:?} \
         (expected string, base64, hex, admin, vlist, site or key)"
    )]
    UnknownFormat { field: String, format: String },
    /// An error inside the value with this `index`.
    #[error("value {index}: {error}")]
    InValue { index: u32, error: Box<JsonError> },
    /// An error in the `position`-th value of a request body (0-based).
    #[error("values[{position}]: {error}")]
    InBody {
        position: usize,
        error: Box<JsonError>,
    },
    #[error("request body must be a JSON array of values, an object with \"values\", or one value object (found {found})")]
    BadBody { found: &'static str },
}

impl JsonError {
    /// The same error, seen from the enclosing object: `parent` is prepended to the field path
    /// (`"[2]"` for an array element, a key otherwise).
    fn at(self, parent: &str) -> JsonError {
        let join = |field: String| {
            if field.is_empty() {
                parent.to_string()
            } else if field.starts_with('[') {
                format!("{parent}{field}")
            } else {
                format!("{parent}.{field}")
            }
        };
        match self {
            JsonError::Missing { field } => JsonError::Missing { field: join(field) },
            JsonError::WrongType {
                field,
                expected,
                found,
            } => JsonError::WrongType {
                field: join(field),
                expected,
                found,
            },
            JsonError::Invalid { field, reason } => JsonError::Invalid {
                field: join(field),
                reason,
            },
            JsonError::UnknownFormat { field, format } => JsonError::UnknownFormat {
                field: join(field),
                format,
            },
            other => other,
        }
    }

    fn invalid(field: &str, reason: impl Into<String>) -> JsonError {
        JsonError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

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

/// `{"responseCode":rc,"handle":…,"values":[…]}` (a resolution answer).
pub fn handle_response(rc: u32, handle: &str, values: &[HandleValue]) -> Value {
    let mut o = Map::new();
    o.insert("responseCode".into(), rc.into());
    o.insert("handle".into(), handle.into());
    o.insert(
        "values".into(),
        Value::Array(values.iter().map(value_to_json).collect()),
    );
    Value::Object(o)
}

/// `{"responseCode":rc,"message":…,"handle":…}` in Handle.Net's key order (the handle is added
/// last, from the request); `message` is left out when empty and `handle` when `None`.
pub fn error_response(rc: u32, handle: Option<&str>, message: &str) -> Value {
    let mut o = Map::new();
    o.insert("responseCode".into(), rc.into());
    if !message.is_empty() {
        o.insert("message".into(), message.into());
    }
    if let Some(h) = handle {
        o.insert("handle".into(), h.into());
    }
    Value::Object(o)
}

/// The `site` shape of an HS_SITE record (also the body of `/api/site`).
pub fn site_to_json(site: &SiteInfo) -> Value {
    let mut o = Map::new();
    o.insert("version".into(), site.data_format_version.into());
    o.insert(
        "protocolVersion".into(),
        format!("{}.{}", site.protocol_major, site.protocol_minor).into(),
    );
    o.insert("serialNumber".into(), site.serial.into());
    o.insert("primarySite".into(), site.is_primary().into());
    o.insert("multiPrimary".into(), site.is_multi_primary().into());
    if site.hash_option != 2 {
        o.insert("hashOption".into(), site.hash_option.into());
    }
    if !site.hash_filter.is_empty() {
        o.insert(
            "hashFilter".into(),
            String::from_utf8_lossy(&site.hash_filter)
                .into_owned()
                .into(),
        );
    }
    let attributes = site
        .attributes
        .iter()
        .map(|(name, value)| {
            let mut a = Map::new();
            a.insert("name".into(), name.clone().into());
            a.insert("value".into(), value.clone().into());
            Value::Object(a)
        })
        .collect();
    o.insert("attributes".into(), Value::Array(attributes));
    o.insert(
        "servers".into(),
        Value::Array(site.servers.iter().map(server_to_json).collect()),
    );
    Value::Object(o)
}

fn server_to_json(s: &ServerInfo) -> Value {
    let mut o = Map::new();
    o.insert("serverId".into(), s.server_id.into());
    o.insert("address".into(), address_to_string(&s.address).into());
    let key = match key_to_jwk(&s.public_key) {
        Some(jwk) => typed("key", jwk),
        None => base64_data(&s.public_key),
    };
    o.insert("publicKey".into(), key);
    let interfaces = s
        .interfaces
        .iter()
        .map(|i| {
            let mut j = Map::new();
            j.insert("query".into(), (i.kind & interface::QUERY != 0).into());
            j.insert("admin".into(), (i.kind & interface::ADMIN != 0).into());
            let protocol = match protocol_name(i.protocol) {
                Some(name) => Value::from(name),
                None => Value::from(i.protocol),
            };
            j.insert("protocol".into(), protocol);
            j.insert("port".into(), i.port.into());
            Value::Object(j)
        })
        .collect();
    o.insert("interfaces".into(), Value::Array(interfaces));
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
        None => match std::str::from_utf8(&v.data) {
            Ok(text) if !looks_binary(text) => typed("string", text.into()),
            _ => base64_data(&v.data),
        },
    }
}

/// Text "looks binary" when it holds a control character other than tab, CR, LF (or DEL).
fn looks_binary(text: &str) -> bool {
    text.bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f)
}

fn typed(format: &str, value: Value) -> Value {
    let mut o = Map::new();
    o.insert("format".into(), format.into());
    o.insert("value".into(), value);
    Value::Object(o)
}

fn base64_data(bytes: &[u8]) -> Value {
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
fn key_to_jwk(data: &[u8]) -> Option<Value> {
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

fn protocol_name(p: u8) -> Option<&'static str> {
    match p {
        interface::UDP => Some("UDP"),
        interface::TCP => Some("TCP"),
        interface::HTTP => Some("HTTP"),
        interface::HTTPS => Some("HTTPS"),
        _ => None,
    }
}

/// IPv4 (12 zero bytes + 4) as dotted quad, anything else as RFC 5952 IPv6 text, as Handle.Net
/// prints it (an IPv4-mapped address stays hexadecimal: `::ffff:a00:1`).
fn address_to_string(a: &[u8; 16]) -> String {
    if a[..12].iter().all(|&b| b == 0) {
        return format!("{}.{}.{}.{}", a[12], a[13], a[14], a[15]);
    }
    let groups: Vec<u16> = a
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    // Longest run of at least two zero groups, the first one on a tie.
    let (mut best_start, mut best_len) = (0, 0);
    let mut i = 0;
    while i < groups.len() {
        if groups[i] == 0 {
            let start = i;
            while i < groups.len() && groups[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_start, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let hex = |gs: &[u16]| {
        gs.iter()
            .map(|g| format!("{g:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len < 2 {
        return hex(&groups);
    }
    format!(
        "{}::{}",
        hex(&groups[..best_start]),
        hex(&groups[best_start + best_len..])
    )
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

type Object = Map<String, Value>;

/// Parse one value of a request body.
///
/// `index` (number or numeric string, 1..=2147483647), `type` (non-empty string) and `data`
/// (bare string or `{format, value}`) are required; `permissions` (4-char bit string or "*"),
/// `ttl` (seconds, or an ISO-8601 time for an absolute TTL), `timestamp` and `references` are
/// optional (`null` counts as absent).
pub fn value_from_json(j: &Value) -> Result<HandleValue, JsonError> {
    let o = object(j, "")?;
    let index = integer(required(o, "index")?, "index", 1, MAX_INDEX.into())
        .map_err(|e| e.at("index"))? as u32;
    value_fields(o, index).map_err(|error| JsonError::InValue {
        index,
        error: Box::new(error),
    })
}

fn value_fields(o: &Object, index: u32) -> Result<HandleValue, JsonError> {
    let type_name = string(required(o, "type")?).map_err(|e| e.at("type"))?;
    if type_name.is_empty() {
        return Err(JsonError::invalid("type", "must not be empty"));
    }
    if type_name.len() > MAX_ARRAY {
        return Err(JsonError::invalid("type", "too long"));
    }
    let data = data_from_json(required(o, "data")?).map_err(|e| e.at("data"))?;
    if data.len() > MAX_ARRAY {
        return Err(JsonError::invalid(
            "data",
            format!("{} bytes, more than the {MAX_ARRAY}-byte limit", data.len()),
        ));
    }
    let permissions = match optional(o, "permissions") {
        // Secrets written without permissions are admin-only, never public.
        None => ValuePermissions::default_for(type_name),
        Some(p) => value_permissions(p).map_err(|e| e.at("permissions"))?,
    };
    let ttl = match optional(o, "ttl") {
        None => Ttl::DEFAULT,
        Some(t) => ttl_from_json(t).map_err(|e| e.at("ttl"))?,
    };
    let timestamp = match optional(o, "timestamp") {
        None => 0,
        Some(t) => time_from_json(t).map_err(|e| e.at("timestamp"))?,
    };
    let references = match optional(o, "references") {
        None => Vec::new(),
        Some(r) => references_from_json(r).map_err(|e| e.at("references"))?,
    };
    Ok(HandleValue {
        index,
        type_name: type_name.to_string(),
        data,
        ttl,
        timestamp,
        permissions,
        references,
    })
}

/// The values of a PUT body: a JSON array of values, an object `{"values":[…], "handle":…}`
/// (`handle` optional), or a single value object. Returns the body's `handle` if it has one.
pub fn values_from_request_body(
    body: &Value,
) -> Result<(Option<String>, Vec<HandleValue>), JsonError> {
    let list = |items: &[Value]| {
        items
            .iter()
            .enumerate()
            .map(|(position, v)| {
                value_from_json(v).map_err(|error| JsonError::InBody {
                    position,
                    error: Box::new(error),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    match body {
        Value::Array(items) => Ok((None, list(items)?)),
        Value::Object(o) => {
            if let Some(values) = optional(o, "values") {
                let handle = match optional(o, "handle") {
                    None => None,
                    Some(h) => Some(string(h).map_err(|e| e.at("handle"))?.to_string()),
                };
                let items = array(values).map_err(|e| e.at("values"))?;
                Ok((handle, list(items)?))
            } else if o.contains_key("type") {
                Ok((None, vec![value_from_json(body)?]))
            } else {
                Err(JsonError::BadBody { found: "object" })
            }
        }
        other => Err(JsonError::BadBody { found: kind(other) }),
    }
}

/// The `site` shape back into an HS_SITE record. Absent fields take Handle.Net's defaults
/// (format 1, protocol 2.11, serial 1, hash by whole handle); `servers` is required.
pub fn site_from_json(j: &Value) -> Result<SiteInfo, JsonError> {
    let o = object(j, "")?;
    let int = |key: &str, max: u32, default: u32| -> Result<u32, JsonError> {
        match optional(o, key) {
            None => Ok(default),
            Some(v) => Ok(integer(v, key, 0, max.into()).map_err(|e| e.at(key))? as u32),
        }
    };
    let flag = |key: &str| -> Result<bool, JsonError> {
        match optional(o, key) {
            None => Ok(false),
            Some(v) => boolean(v).map_err(|e| e.at(key)),
        }
    };
    let data_format_version = int("version", u16::MAX.into(), 1)? as u16;
    let (protocol_major, protocol_minor) = match optional(o, "protocolVersion") {
        None => (2, 11),
        Some(v) => protocol_version(v).map_err(|e| e.at("protocolVersion"))?,
    };
    let serial = int("serialNumber", u16::MAX.into(), 1)? as u16;
    let mut primary_mask = 0;
    if flag("primarySite")? {
        primary_mask |= SITE_PRIMARY;
    }
    if flag("multiPrimary")? {
        primary_mask |= SITE_MULTI_PRIMARY;
    }
    let hash_option = int("hashOption", u8::MAX.into(), 2)? as u8;
    let hash_filter = match optional(o, "hashFilter") {
        None => Vec::new(),
        Some(v) => string(v)
            .map_err(|e| e.at("hashFilter"))?
            .as_bytes()
            .to_vec(),
    };
    let attributes = match optional(o, "attributes") {
        None => Vec::new(),
        Some(v) => attributes_from_json(v).map_err(|e| e.at("attributes"))?,
    };
    let servers = array(required(o, "servers")?)
        .map_err(|e| e.at("servers"))?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            server_from_json(s)
                .map_err(|e| e.at(&format!("[{i}]")))
                .map_err(|e| e.at("servers"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SiteInfo {
        data_format_version,
        protocol_major,
        protocol_minor,
        serial,
        primary_mask,
        hash_option,
        hash_filter,
        attributes,
        servers,
    })
}

fn protocol_version(v: &Value) -> Result<(u8, u8), JsonError> {
    let s = string(v)?;
    let parsed = s
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    parsed.ok_or_else(|| {
        JsonError::invalid("", format!("{s:?} is not MAJOR.MINOR (such as \"2.11\")"))
    })
}

/// `[{name, value}]`, or Handle.Net's alternative `{name: value | [values]}`.
fn attributes_from_json(v: &Value) -> Result<Vec<(String, String)>, JsonError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let pair = || -> Result<(String, String), JsonError> {
                    let o = object(a, "")?;
                    let name = string(required(o, "name")?).map_err(|e| e.at("name"))?;
                    let value = string(required(o, "value")?).map_err(|e| e.at("value"))?;
                    Ok((name.to_string(), value.to_string()))
                };
                pair().map_err(|e| e.at(&format!("[{i}]")))
            })
            .collect(),
        Value::Object(o) => {
            let mut out = Vec::new();
            for (name, value) in o {
                match value {
                    Value::Array(values) => {
                        for (i, one) in values.iter().enumerate() {
                            let text = string(one)
                                .map_err(|e| e.at(&format!("[{i}]")))
                                .map_err(|e| e.at(name))?;
                            out.push((name.clone(), text.to_string()));
                        }
                    }
                    one => {
                        let text = string(one).map_err(|e| e.at(name))?;
                        out.push((name.clone(), text.to_string()));
                    }
                }
            }
            Ok(out)
        }
        other => Err(wrong_type("", "array or object", other)),
    }
}

fn server_from_json(v: &Value) -> Result<ServerInfo, JsonError> {
    let o = object(v, "")?;
    let server_id = integer(required(o, "serverId")?, "serverId", 0, u32::MAX.into())
        .map_err(|e| e.at("serverId"))? as u32;
    let address_text = string(required(o, "address")?).map_err(|e| e.at("address"))?;
    let ip: IpAddr = address_text.parse().map_err(|_| {
        JsonError::invalid(
            "address",
            format!("{address_text:?} is not an IPv4 or IPv6 address"),
        )
    })?;
    let public_key = match optional(o, "publicKey") {
        None => Vec::new(),
        Some(k) => data_from_json(k).map_err(|e| e.at("publicKey"))?,
    };
    let interfaces = array(required(o, "interfaces")?)
        .map_err(|e| e.at("interfaces"))?
        .iter()
        .enumerate()
        .map(|(i, j)| {
            interface_from_json(j)
                .map_err(|e| e.at(&format!("[{i}]")))
                .map_err(|e| e.at("interfaces"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServerInfo {
        server_id,
        address: ServerInfo::address_from_ip(ip),
        public_key,
        interfaces,
    })
}

fn interface_from_json(v: &Value) -> Result<Interface, JsonError> {
    let o = object(v, "")?;
    let query = boolean(required(o, "query")?).map_err(|e| e.at("query"))?;
    let admin = boolean(required(o, "admin")?).map_err(|e| e.at("admin"))?;
    let kind = match (query, admin) {
        (true, true) => interface::ADMIN_AND_QUERY,
        (true, false) => interface::QUERY,
        (false, true) => interface::ADMIN,
        (false, false) => interface::OUT_OF_SERVICE,
    };
    let protocol = match required(o, "protocol")? {
        Value::String(name) => match name.to_ascii_uppercase().as_str() {
            "UDP" => interface::UDP,
            "TCP" => interface::TCP,
            "HTTP" => interface::HTTP,
            "HTTPS" => interface::HTTPS,
            _ => {
                return Err(JsonError::invalid(
                    "protocol",
                    format!("unknown protocol {name:?} (expected UDP, TCP, HTTP or HTTPS)"),
                ))
            }
        },
        number @ Value::Number(_) => {
            integer(number, "protocol", 0, u8::MAX.into()).map_err(|e| e.at("protocol"))? as u8
        }
        other => return Err(wrong_type("protocol", "string or number", other)),
    };
    let port =
        integer(required(o, "port")?, "port", 0, u32::MAX.into()).map_err(|e| e.at("port"))?;
    Ok(Interface {
        kind,
        protocol,
        port: port as u32,
    })
}

/// `data`: a bare string (its UTF-8 bytes) or `{format, value}`. Errors are relative to `data`.
fn data_from_json(v: &Value) -> Result<Vec<u8>, JsonError> {
    let o = match v {
        Value::String(s) => return Ok(s.as_bytes().to_vec()),
        Value::Object(o) => o,
        other => return Err(wrong_type("", "string or {format, value} object", other)),
    };
    let format = string(required(o, "format")?).map_err(|e| e.at("format"))?;
    let value = required(o, "value")?;
    let text = || string(value).map_err(|e| e.at("value"));
    match format.to_ascii_lowercase().as_str() {
        "string" => Ok(text()?.as_bytes().to_vec()),
        "base64" => decode_base64(text()?).map_err(|reason| JsonError::invalid("value", reason)),
        "hex" => decode_hex(text()?).map_err(|reason| JsonError::invalid("value", reason)),
        "admin" => admin_from_json(value).map_err(|e| e.at("value")),
        "vlist" => {
            let refs = references_from_json(value).map_err(|e| e.at("value"))?;
            Ok(ValueList(refs).encode())
        }
        "site" => Ok(site_from_json(value).map_err(|e| e.at("value"))?.encode()),
        "key" => Ok(key_from_jwk(value).map_err(|e| e.at("value"))?.encode()),
        _ => Err(JsonError::UnknownFormat {
            field: "format".into(),
            format: format.to_string(),
        }),
    }
}

/// `{handle, index, permissions[, legacyByteLength]}` → HS_ADMIN bytes.
fn admin_from_json(v: &Value) -> Result<Vec<u8>, JsonError> {
    let o = object(v, "")?;
    let handle = handle_string(required(o, "handle")?).map_err(|e| e.at("handle"))?;
    let index = integer(required(o, "index")?, "index", 0, u32::MAX.into())
        .map_err(|e| e.at("index"))? as u32;
    let permissions = match optional(o, "permissions") {
        None => AdminPermissions(0),
        Some(p) => admin_permissions(p).map_err(|e| e.at("permissions"))?,
    };
    let legacy = match optional(o, "legacyByteLength") {
        None => false,
        Some(b) => boolean(b).map_err(|e| e.at("legacyByteLength"))?,
    };
    let mut out = AdminRef {
        permissions,
        admin: ValueReference {
            handle: handle.to_string(),
            index,
        },
    }
    .encode();
    if legacy {
        out.extend_from_slice(&[0, 0]);
    }
    Ok(out)
}

/// Permission names accepted in an admin `permissions` array, compared after lower-casing and
/// dropping `_`, `-` and spaces.
const ADMIN_PERMISSION_NAMES: &[(&str, u16)] = &[
    ("addhandle", AdminPermissions::ADD_HANDLE),
    ("deletehandle", AdminPermissions::DELETE_HANDLE),
    ("addderivedprefix", AdminPermissions::ADD_DERIVED_PREFIX),
    ("addnamingauthority", AdminPermissions::ADD_DERIVED_PREFIX),
    ("addna", AdminPermissions::ADD_DERIVED_PREFIX),
    (
        "deletederivedprefix",
        AdminPermissions::DELETE_DERIVED_PREFIX,
    ),
    (
        "deletenamingauthority",
        AdminPermissions::DELETE_DERIVED_PREFIX,
    ),
    ("deletena", AdminPermissions::DELETE_DERIVED_PREFIX),
    ("modifyvalue", AdminPermissions::MODIFY_VALUE),
    ("removevalue", AdminPermissions::REMOVE_VALUE),
    ("addvalue", AdminPermissions::ADD_VALUE),
    ("modifyadmin", AdminPermissions::MODIFY_ADMIN),
    ("removeadmin", AdminPermissions::REMOVE_ADMIN),
    ("addadmin", AdminPermissions::ADD_ADMIN),
    ("readvalue", AdminPermissions::READ_VALUE),
    ("authorizedread", AdminPermissions::READ_VALUE),
    ("listhandles", AdminPermissions::LIST_HANDLES),
];

/// Admin permissions: a bit string of up to 12 chars (right-aligned, leftmost = LIST_HANDLES),
/// `"*"` or `true` (all), `false` (none), a number (the bits), an array of permission names, or
/// Handle.Net's positional array of 12 booleans/numbers (element 0 = ADD_HANDLE).
fn admin_permissions(v: &Value) -> Result<AdminPermissions, JsonError> {
    match v {
        Value::Bool(true) => Ok(AdminPermissions::ALL),
        Value::Bool(false) => Ok(AdminPermissions(0)),
        Value::String(s) if s == "*" => Ok(AdminPermissions::ALL),
        Value::String(s) => AdminPermissions::from_bit_string(s).ok_or_else(|| {
            JsonError::invalid(
                "",
                format!("{s:?} is not a bit string of at most 12 '0'/'1' characters"),
            )
        }),
        Value::Number(_) => Ok(AdminPermissions(
            integer(v, "permissions", 0, 0x0FFF)? as u16
        )),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let mut bits = 0u16;
            for (i, item) in items.iter().enumerate() {
                let name = item.as_str().unwrap_or_default();
                let key: String = name
                    .chars()
                    .filter(|c| !matches!(c, '_' | '-' | ' '))
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                let bit = ADMIN_PERMISSION_NAMES
                    .iter()
                    .find(|(known, _)| *known == key)
                    .map(|&(_, bit)| bit)
                    .ok_or_else(|| {
                        JsonError::invalid(
                            &format!("[{i}]"),
                            format!("unknown admin permission {name:?}"),
                        )
                    })?;
                bits |= bit;
            }
            Ok(AdminPermissions(bits))
        }
        Value::Array(items) => {
            if items.len() > 12 {
                return Err(JsonError::invalid(
                    "",
                    format!("{} flags, at most 12 allowed", items.len()),
                ));
            }
            let mut bits = 0u16;
            for (i, item) in items.iter().enumerate() {
                let set = match item {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                    other => {
                        return Err(wrong_type(
                            &format!("[{i}]"),
                            "boolean or number (or an array of permission names)",
                            other,
                        ))
                    }
                };
                if set {
                    bits |= 1 << i;
                }
            }
            Ok(AdminPermissions(bits))
        }
        other => Err(wrong_type(
            "",
            "bit string, \"*\", boolean, number or array",
            other,
        )),
    }
}

/// A JWK (`{kty:"RSA",n,e}` or `{kty:"DSA",y,p,q,g}`) as an HS_PUBKEY.
fn key_from_jwk(v: &Value) -> Result<PublicKey, JsonError> {
    let o = object(v, "")?;
    let kty = string(required(o, "kty")?).map_err(|e| e.at("kty"))?;
    let int = |name: &str| -> Result<Vec<u8>, JsonError> {
        let text = string(required(o, name)?).map_err(|e| e.at(name))?;
        let magnitude = decode_base64(text).map_err(|reason| JsonError::invalid(name, reason))?;
        if magnitude.is_empty() {
            return Err(JsonError::invalid(name, "empty integer"));
        }
        Ok(twos_complement(&magnitude))
    };
    if kty.eq_ignore_ascii_case("RSA") {
        Ok(PublicKey::Rsa {
            modulus: int("n")?,
            exponent: int("e")?,
        })
    } else if kty.eq_ignore_ascii_case("DSA") {
        Ok(PublicKey::Dsa {
            y: int("y")?,
            p: int("p")?,
            q: int("q")?,
            g: int("g")?,
        })
    } else {
        Err(JsonError::invalid(
            "kty",
            format!("unsupported key type {kty:?} (expected RSA or DSA)"),
        ))
    }
}

/// Unsigned magnitude → minimal positive two's complement, as Java's
/// `new BigInteger(1, m).toByteArray()`: leading zeros dropped, one 0x00 added when the high
/// bit is set (zero is a single 0x00).
fn twos_complement(magnitude: &[u8]) -> Vec<u8> {
    let digits: &[u8] = match magnitude.iter().position(|&b| b != 0) {
        Some(first) => &magnitude[first..],
        None => return vec![0],
    };
    let mut out = Vec::with_capacity(digits.len() + 1);
    if digits[0] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

fn references_from_json(v: &Value) -> Result<Vec<ValueReference>, JsonError> {
    array(v)?
        .iter()
        .enumerate()
        .map(|(i, r)| reference_from_json(r).map_err(|e| e.at(&format!("[{i}]"))))
        .collect()
}

fn reference_from_json(v: &Value) -> Result<ValueReference, JsonError> {
    let o = object(v, "")?;
    let handle = handle_string(required(o, "handle")?).map_err(|e| e.at("handle"))?;
    let index = integer(required(o, "index")?, "index", 0, u32::MAX.into())
        .map_err(|e| e.at("index"))? as u32;
    Ok(ValueReference {
        handle: handle.to_string(),
        index,
    })
}

/// A handle inside a value (admin, group member, reference): a string of at most
/// [`MAX_HANDLE_BYTES`] bytes.
fn handle_string(v: &Value) -> Result<&str, JsonError> {
    let h = string(v)?;
    if h.len() > MAX_HANDLE_BYTES {
        return Err(JsonError::invalid(
            "",
            format!("handle of {} bytes exceeds {MAX_HANDLE_BYTES}", h.len()),
        ));
    }
    Ok(h)
}

/// The four-character `permissions` of a value, or `"*"` (all four).
fn value_permissions(v: &Value) -> Result<ValuePermissions, JsonError> {
    let s = string(v)?;
    if s == "*" {
        return Ok(ValuePermissions(0x0F));
    }
    ValuePermissions::from_bit_string(s).ok_or_else(|| {
        JsonError::invalid(
            "",
            format!("{s:?} is not 4 '0'/'1' characters (adminRead, adminWrite, publicRead, publicWrite)"),
        )
    })
}

/// `ttl`: a number of seconds (also as a numeric string) is relative, an ISO-8601 time absolute.
fn ttl_from_json(v: &Value) -> Result<Ttl, JsonError> {
    match v {
        Value::String(s) if !is_digits(s) => parse_time(s).map(Ttl::Absolute).ok_or_else(|| {
            JsonError::invalid(
                "",
                format!("{s:?} is neither a number of seconds nor an ISO-8601 UTC time"),
            )
        }),
        _ => Ok(Ttl::Relative(integer(v, "ttl", 0, u32::MAX.into())? as u32)),
    }
}

/// `timestamp`: an ISO-8601 time or unix seconds (number or numeric string).
fn time_from_json(v: &Value) -> Result<u32, JsonError> {
    match v {
        Value::String(s) if !is_digits(s) => parse_time(s).ok_or_else(|| {
            JsonError::invalid(
                "",
                format!("{s:?} is not an ISO-8601 time between 1970 and 2106"),
            )
        }),
        _ => Ok(integer(v, "timestamp", 0, u32::MAX.into())? as u32),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

// --- JSON primitives -------------------------------------------------------------------------

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &Value) -> JsonError {
    JsonError::WrongType {
        field: field.to_string(),
        expected,
        found: kind(found),
    }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Object, JsonError> {
    v.as_object().ok_or_else(|| wrong_type(field, "object", v))
}

/// A present, non-null member.
fn optional<'a>(o: &'a Object, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

fn required<'a>(o: &'a Object, key: &str) -> Result<&'a Value, JsonError> {
    optional(o, key).ok_or_else(|| JsonError::Missing { field: key.into() })
}

fn string(v: &Value) -> Result<&str, JsonError> {
    v.as_str().ok_or_else(|| wrong_type("", "string", v))
}

fn boolean(v: &Value) -> Result<bool, JsonError> {
    v.as_bool().ok_or_else(|| wrong_type("", "boolean", v))
}

fn array(v: &Value) -> Result<&[Value], JsonError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| wrong_type("", "array", v))
}

/// An integer in `min..=max`, given as a JSON number or a numeric string (pyhandle sends
/// `"index":"200"`). Errors are relative to the integer itself; `what` names it in messages.
fn integer(v: &Value, what: &str, min: i64, max: i64) -> Result<i64, JsonError> {
    let n = match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Some(i),
            (None, Some(_)) => None, // beyond i64: out of range
            (None, None) => {
                return Err(JsonError::invalid("", format!("{n} is not an integer")));
            }
        },
        Value::String(s) => Some(
            s.parse::<i64>()
                .map_err(|_| JsonError::invalid("", format!("{s:?} is not an integer")))?,
        ),
        other => return Err(wrong_type("", "integer or numeric string", other)),
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(JsonError::invalid(
            "",
            format!("{what} must be from {min} to {max}, got {v}"),
        )),
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = if cleaned.contains(['-', '_']) {
        &URL_LENIENT
    } else {
        &STANDARD_LENIENT
    };
    engine
        .decode(cleaned.as_bytes())
        .map_err(|e| format!("invalid base64: {e}"))
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(format!("invalid hex: unexpected character {:?}", b as char)),
        })
        .collect::<Result<_, _>>()?;
    if digits.len() % 2 != 0 {
        return Err("invalid hex: odd number of digits".into());
    }
    Ok(digits.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect())
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const URL_NO_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false),
);

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Unix seconds as ISO-8601 UTC without fractions: `2024-01-01T00:00:00Z`.
pub fn format_time(unix: u32) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.into())).to_string()
}

/// Parse an ISO-8601 / RFC 3339 time (`2024-01-01T00:00:00Z`, with or without fractional
/// seconds, which are truncated; `Z`, a `±hh:mm` offset, or no zone = UTC) into unix seconds.
/// `None` when malformed or outside 1970-01-01 ..= 2106-02-07T06:28:15Z.
pub fn parse_time(s: &str) -> Option<u32> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    let upper = s.to_ascii_uppercase();
    let b = upper.as_bytes();
    let n = b.len();
    let (body, offset) = if let Some(body) = upper.strip_suffix('Z') {
        (body, 0i64)
    } else if n >= 25 && matches!(b[n - 6], b'+' | b'-') && b[n - 3] == b':' {
        let two = |i: usize| -> Option<i64> {
            let (h, l) = (b[i], b[i + 1]);
            (h.is_ascii_digit() && l.is_ascii_digit())
                .then(|| i64::from((h - b'0') * 10 + l - b'0'))
        };
        let (hours, minutes) = (two(n - 5)?, two(n - 2)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        let sign = if b[n - 6] == b'-' { -1 } else { 1 };
        (&upper[..n - 6], sign * (hours * 3600 + minutes * 60))
    } else {
        (upper.as_str(), 0)
    };
    // humantime checks the layout; make sure nothing else (a second zone, …) rides along.
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'.' | b'T' | b' '))
    {
        return None;
    }
    let local = humantime::parse_rfc3339_weak(body).ok()?;
    let secs = i64::try_from(local.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    u32::try_from(secs - offset).ok()
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let v =
            value_from_json(&json!({"index": 1, "type": "URL", "data": "x", "permissions": "*"}))
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
            values_from_request_body(&json!({"handle": "88.100.1/x", "values": [one, two]}))
                .unwrap(),
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
}
