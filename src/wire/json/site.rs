//! The `site` JSON shape of an HS_SITE record (HS_SITE, HS_SITE.6, HS_SITE.PREFIX,
//! HS_NA_DELEGATE data, and the body of `/api/site`), both ways: servers with their addresses
//! (dotted quad or RFC 5952 text, as Handle.Net prints them), public keys and interfaces.
//! Reading takes Handle.Net's defaults for absent fields and its alternative attribute form.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::decode::{
    array, boolean, data_from_json, integer, object, optional, required, string, wrong_type,
    JsonError,
};
use super::encode::{base64_data, key_to_jwk, typed};
use crate::model::structured::{interface, Interface, SITE_MULTI_PRIMARY, SITE_PRIMARY};
use crate::model::{ServerInfo, SiteInfo};

// ---------------------------------------------------------------------------------------------
// To JSON

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
pub(super) fn address_to_string(a: &[u8; 16]) -> String {
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
// From JSON

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
