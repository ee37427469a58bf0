//! Handle.Net REST JSON to values: the value object, its `data` in every format Handle.Net
//! and real clients send (bare strings, `string`, `base64`, `hex`, `admin`, `vlist`, `site`,
//! `key`), permissions, TTLs and references, and the PUT body forms. Hostile input: every
//! wrong shape is a [`JsonError`] with the path of the field, never a panic.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};
use serde_json::{Map, Value};

use super::site::site_from_json;
use super::time::parse_time;
use crate::model::codec::MAX_ARRAY;
use crate::model::value::MAX_INDEX;
use crate::model::{
    AdminPermissions, AdminRef, HandleValue, PublicKey, Ttl, ValueList, ValuePermissions,
    ValueReference, MAX_HANDLE_BYTES,
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
    pub(super) fn at(self, parent: &str) -> JsonError {
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

    pub(super) fn invalid(field: &str, reason: impl Into<String>) -> JsonError {
        JsonError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

pub(super) type Object = Map<String, Value>;

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

/// `data`: a bare string (its UTF-8 bytes) or `{format, value}`. Errors are relative to `data`.
pub(super) fn data_from_json(v: &Value) -> Result<Vec<u8>, JsonError> {
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
pub(super) fn twos_complement(magnitude: &[u8]) -> Vec<u8> {
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

pub(super) fn wrong_type(field: &str, expected: &'static str, found: &Value) -> JsonError {
    JsonError::WrongType {
        field: field.to_string(),
        expected,
        found: kind(found),
    }
}

pub(super) fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Object, JsonError> {
    v.as_object().ok_or_else(|| wrong_type(field, "object", v))
}

/// A present, non-null member.
pub(super) fn optional<'a>(o: &'a Object, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

pub(super) fn required<'a>(o: &'a Object, key: &str) -> Result<&'a Value, JsonError> {
    optional(o, key).ok_or_else(|| JsonError::Missing { field: key.into() })
}

pub(super) fn string(v: &Value) -> Result<&str, JsonError> {
    v.as_str().ok_or_else(|| wrong_type("", "string", v))
}

pub(super) fn boolean(v: &Value) -> Result<bool, JsonError> {
    v.as_bool().ok_or_else(|| wrong_type("", "boolean", v))
}

pub(super) fn array(v: &Value) -> Result<&[Value], JsonError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| wrong_type("", "array", v))
}

/// An integer in `min..=max`, given as a JSON number or a numeric string (pyhandle sends
/// `"index":"200"`). Errors are relative to the integer itself; `what` names it in messages.
pub(super) fn integer(v: &Value, what: &str, min: i64, max: i64) -> Result<i64, JsonError> {
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

pub(super) fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
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
