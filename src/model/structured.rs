//! Structured value types and their binary data layouts (handle-protocol.md §5):
//! HS_ADMIN ([`AdminRef`]), HS_VLIST ([`ValueList`]), HS_SITE ([`SiteInfo`]), HS_PUBKEY
//! ([`PublicKey`]). Text types (URL, EMAIL, HS_ALIAS, HS_SERV) are UTF-8 data; HS_SECKEY is
//! raw secret bytes.
//!
//! These layouts define what the types mean, so they live in the model (std only); the message
//! codecs in `wire` carry them as opaque value data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{DecodeError, Reader, Writer};
use super::handle::MAX_HANDLE_BYTES;
use super::value::{types, HandleValue, ValueError, ValueReference};

/// A handle named inside value data: at most [`MAX_HANDLE_BYTES`], like every identifier.
fn bounded_handle(text: &str, what: &'static str) -> Result<String, DecodeError> {
    if text.len() > MAX_HANDLE_BYTES {
        return Err(DecodeError::TooLong {
            what,
            len: text.len(),
            max: MAX_HANDLE_BYTES,
        });
    }
    Ok(text.to_string())
}

/// HS_ADMIN permission bits (12 of them; REST shows them as a 12-char string, bit 11 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdminPermissions(pub u16);

impl AdminPermissions {
    pub const ADD_HANDLE: u16 = 0x0001;
    pub const DELETE_HANDLE: u16 = 0x0002;
    pub const ADD_DERIVED_PREFIX: u16 = 0x0004;
    pub const DELETE_DERIVED_PREFIX: u16 = 0x0008;
    pub const MODIFY_VALUE: u16 = 0x0010;
    pub const REMOVE_VALUE: u16 = 0x0020;
    pub const ADD_VALUE: u16 = 0x0040;
    pub const MODIFY_ADMIN: u16 = 0x0080;
    pub const REMOVE_ADMIN: u16 = 0x0100;
    pub const ADD_ADMIN: u16 = 0x0200;
    pub const READ_VALUE: u16 = 0x0400;
    pub const LIST_HANDLES: u16 = 0x0800;
    pub const ALL: AdminPermissions = AdminPermissions(0x0FFF);

    pub fn has(self, bits: u16) -> bool {
        self.0 & bits == bits
    }

    /// Twelve characters, leftmost = bit 11 (LIST_HANDLES), rightmost = bit 0 (ADD_HANDLE).
    pub fn to_bit_string(self) -> String {
        (0..12)
            .rev()
            .map(|bit| if self.0 & (1 << bit) != 0 { '1' } else { '0' })
            .collect()
    }

    /// Parse the REST bit string (up to 12 chars, right-aligned as Handle.Net does).
    pub fn from_bit_string(s: &str) -> Option<AdminPermissions> {
        if s.is_empty() || s.len() > 12 {
            return None;
        }
        let mut bits = 0u16;
        for c in s.chars() {
            bits <<= 1;
            match c {
                '1' => bits |= 1,
                '0' => {}
                _ => return None,
            }
        }
        Some(AdminPermissions(bits))
    }
}

/// HS_ADMIN data: who (`index:handle`) holds which permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRef {
    pub permissions: AdminPermissions,
    pub admin: ValueReference,
}

impl AdminRef {
    /// `int2 permissions, UTF8String adminHandle, int4 adminIndex` (+ 2 legacy bytes tolerated).
    pub fn decode(data: &[u8]) -> Result<AdminRef, DecodeError> {
        let mut r = Reader::new(data);
        let permissions = AdminPermissions(r.u16("HS_ADMIN permissions")?);
        let handle = bounded_handle(r.string("HS_ADMIN handle")?, "HS_ADMIN handle")?;
        let index = r.u32("HS_ADMIN index")?;
        // Old records carry two extra bytes after the index ("legacyByteLength").
        if r.remaining() == 2 {
            r.take(2, "HS_ADMIN legacy bytes")?;
        }
        r.finish()?;
        Ok(AdminRef {
            permissions,
            admin: ValueReference { handle, index },
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.admin.handle.len());
        out.put_u16(self.permissions.0);
        out.put_bytes(self.admin.handle.as_bytes());
        out.put_u32(self.admin.index);
        out
    }
}

/// HS_VLIST data: a group of `index:handle` references.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValueList(pub Vec<ValueReference>);

impl ValueList {
    pub fn decode(data: &[u8]) -> Result<ValueList, DecodeError> {
        let mut r = Reader::new(data);
        let n = r.count("HS_VLIST count", 8)?;
        let mut refs = Vec::with_capacity(n);
        for _ in 0..n {
            let handle = bounded_handle(r.string("HS_VLIST handle")?, "HS_VLIST handle")?;
            let index = r.u32("HS_VLIST index")?;
            refs.push(ValueReference { handle, index });
        }
        r.finish()?;
        Ok(ValueList(refs))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u32(self.0.len() as u32);
        for r in &self.0 {
            out.put_bytes(r.handle.as_bytes());
            out.put_u32(r.index);
        }
        out
    }
}

/// Interface kinds and protocols of an HS_SITE server.
pub mod interface {
    pub const OUT_OF_SERVICE: u8 = 0;
    pub const ADMIN: u8 = 1;
    pub const QUERY: u8 = 2;
    pub const ADMIN_AND_QUERY: u8 = 3;
    pub const UDP: u8 = 0;
    pub const TCP: u8 = 1;
    pub const HTTP: u8 = 2;
    pub const HTTPS: u8 = 3;
}

/// One way to reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// 0 out of service, 1 admin, 2 query, 3 admin and query.
    pub kind: u8,
    /// 0 UDP, 1 TCP, 2 HTTP, 3 HTTPS.
    pub protocol: u8,
    pub port: u32,
}

/// One server of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub server_id: u32,
    /// IPv4 is 12 zero bytes + 4 address bytes.
    pub address: [u8; 16],
    /// HS_PUBKEY encoding, or empty.
    pub public_key: Vec<u8>,
    pub interfaces: Vec<Interface>,
}

impl ServerInfo {
    pub fn ip(&self) -> IpAddr {
        if self.address[..12].iter().all(|&b| b == 0) {
            let a = &self.address[12..];
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.address))
        }
    }

    pub fn address_from_ip(ip: IpAddr) -> [u8; 16] {
        match ip {
            IpAddr::V4(v4) => {
                let mut a = [0u8; 16];
                a[12..].copy_from_slice(&v4.octets());
                a
            }
            IpAddr::V6(v6) => v6.octets(),
        }
    }
}

/// HS_SITE primary-mask bits, as Handle.Net clients use them.
pub const SITE_PRIMARY: u8 = 0x80;
pub const SITE_MULTI_PRIMARY: u8 = 0x40;

/// HS_SITE data: a site of one or more servers answering for some prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// Handle.Net writes 1.
    pub data_format_version: u16,
    pub protocol_major: u8,
    pub protocol_minor: u8,
    pub serial: u16,
    /// 0x80 primary, 0x40 multi-primary.
    pub primary_mask: u8,
    /// 0 by prefix, 1 by suffix, 2 by whole handle.
    pub hash_option: u8,
    pub hash_filter: Vec<u8>,
    pub attributes: Vec<(String, String)>,
    pub servers: Vec<ServerInfo>,
}

impl SiteInfo {
    pub fn is_primary(&self) -> bool {
        self.primary_mask & SITE_PRIMARY != 0
    }
    pub fn is_multi_primary(&self) -> bool {
        self.primary_mask & SITE_MULTI_PRIMARY != 0
    }

    pub fn decode(data: &[u8]) -> Result<SiteInfo, DecodeError> {
        let mut r = Reader::new(data);
        let data_format_version = r.u16("site format version")?;
        let protocol_major = r.u8("site protocol major")?;
        let protocol_minor = r.u8("site protocol minor")?;
        let serial = r.u16("site serial")?;
        let primary_mask = r.u8("site primary mask")?;
        let hash_option = r.u8("site hash option")?;
        let hash_filter = r.bytes("site hash filter")?.to_vec();
        let n_attr = r.count("site attribute count", 8)?;
        let mut attributes = Vec::with_capacity(n_attr);
        for _ in 0..n_attr {
            let name = r.string("site attribute name")?.to_string();
            let value = r.string("site attribute value")?.to_string();
            attributes.push((name, value));
        }
        let n_servers = r.count("site server count", 28)?;
        let mut servers = Vec::with_capacity(n_servers);
        for _ in 0..n_servers {
            let server_id = r.u32("server id")?;
            let mut address = [0u8; 16];
            address.copy_from_slice(r.take(16, "server address")?);
            let public_key = r.bytes("server public key")?.to_vec();
            let n_if = r.count("interface count", 6)?;
            let mut interfaces = Vec::with_capacity(n_if);
            for _ in 0..n_if {
                let kind = r.u8("interface type")?;
                let protocol = r.u8("interface protocol")?;
                let port = r.u32("interface port")?;
                interfaces.push(Interface {
                    kind,
                    protocol,
                    port,
                });
            }
            servers.push(ServerInfo {
                server_id,
                address,
                public_key,
                interfaces,
            });
        }
        r.finish()?;
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

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.put_u16(self.data_format_version);
        out.put_u8(self.protocol_major);
        out.put_u8(self.protocol_minor);
        out.put_u16(self.serial);
        out.put_u8(self.primary_mask);
        out.put_u8(self.hash_option);
        out.put_bytes(&self.hash_filter);
        out.put_u32(self.attributes.len() as u32);
        for (name, value) in &self.attributes {
            out.put_bytes(name.as_bytes());
            out.put_bytes(value.as_bytes());
        }
        out.put_u32(self.servers.len() as u32);
        for s in &self.servers {
            out.put_u32(s.server_id);
            out.extend_from_slice(&s.address);
            out.put_bytes(&s.public_key);
            out.put_u32(s.interfaces.len() as u32);
            for i in &s.interfaces {
                out.put_u8(i.kind);
                out.put_u8(i.protocol);
                out.put_u32(i.port);
            }
        }
        out
    }
}

/// HS_PUBKEY data: `UTF8String keyType, int2 flags`, then the key's big integers, each an
/// `int4`-length two's-complement big-endian byte string.
///
/// Bytes after the last integer are ignored, as Handle.Net's and the ID-SDK's readers ignore
/// them: Handle.Net's encoder sizes an RSA key for four length fields but writes three, so
/// every RSA HS_PUBKEY (and every RSA key in an HS_SITE) it writes ends in 4 zero bytes (289
/// bytes for a 2048-bit key). Values are stored as written; only decoding skips the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        exponent: Vec<u8>,
        modulus: Vec<u8>,
    },
    Dsa {
        q: Vec<u8>,
        p: Vec<u8>,
        g: Vec<u8>,
        y: Vec<u8>,
    },
    Dh {
        y: Vec<u8>,
        p: Vec<u8>,
        g: Vec<u8>,
    },
}

pub const RSA_PUB_KEY: &str = "RSA_PUB_KEY";
pub const DSA_PUB_KEY: &str = "DSA_PUB_KEY";
pub const DH_PUB_KEY: &str = "DH_PUB_KEY";

impl PublicKey {
    pub fn decode(data: &[u8]) -> Result<PublicKey, DecodeError> {
        let mut r = Reader::new(data);
        let key_type = r.string("public key type")?;
        let _flags = r.u16("public key flags")?;
        let mut int = |what| r.bytes(what).map(<[u8]>::to_vec);
        let key = match key_type {
            RSA_PUB_KEY => PublicKey::Rsa {
                exponent: int("RSA exponent")?,
                modulus: int("RSA modulus")?,
            },
            DSA_PUB_KEY => PublicKey::Dsa {
                q: int("DSA q")?,
                p: int("DSA p")?,
                g: int("DSA g")?,
                y: int("DSA y")?,
            },
            DH_PUB_KEY => PublicKey::Dh {
                y: int("DH y")?,
                p: int("DH p")?,
                g: int("DH g")?,
            },
            other => {
                return Err(DecodeError::Invalid {
                    what: "public key type",
                    reason: format!("unknown key type {other:?}"),
                })
            }
        };
        // Trailing bytes (Handle.Net's 4 zero bytes after an RSA modulus) are not part of the key.
        let _tail = r.rest();
        Ok(key)
    }

    pub fn encode(&self) -> Vec<u8> {
        let (name, parts): (&str, Vec<&Vec<u8>>) = match self {
            PublicKey::Rsa { exponent, modulus } => (RSA_PUB_KEY, vec![exponent, modulus]),
            PublicKey::Dsa { q, p, g, y } => (DSA_PUB_KEY, vec![q, p, g, y]),
            PublicKey::Dh { y, p, g } => (DH_PUB_KEY, vec![y, p, g]),
        };
        let mut out = Vec::new();
        out.put_bytes(name.as_bytes());
        out.put_u16(0);
        for p in parts {
            out.put_bytes(p);
        }
        out
    }
}

/// Check that a value's data fits its type, so a record never stores what no reader can decode.
pub fn check_value_data(v: &HandleValue) -> Result<(), ValueError> {
    let bad = |reason: String| ValueError::BadData {
        index: v.index,
        type_name: v.type_name.clone(),
        reason,
    };
    let t = v.type_name.as_str();
    if t.eq_ignore_ascii_case(types::HS_ADMIN) {
        AdminRef::decode(&v.data).map_err(|e| bad(e.to_string()))?;
    } else if t.eq_ignore_ascii_case(types::HS_VLIST) {
        ValueList::decode(&v.data).map_err(|e| bad(e.to_string()))?;
    } else if types::is_site(t) {
        SiteInfo::decode(&v.data).map_err(|e| bad(e.to_string()))?;
    } else if t.eq_ignore_ascii_case(types::HS_PUBKEY) {
        PublicKey::decode(&v.data).map_err(|e| bad(e.to_string()))?;
    } else if [
        types::URL,
        types::EMAIL,
        types::HS_ALIAS,
        types::HS_SERV,
        types::HS_SERV_PREFIX,
    ]
    .iter()
    .any(|k| t.eq_ignore_ascii_case(k))
        && std::str::from_utf8(&v.data).is_err()
    {
        return Err(bad("data must be UTF-8 text".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handle::vectors::hex;

    #[test]
    fn admin_vector() {
        let bytes = hex("0fff0000000d302e4e412f38382e3130302e31000000c8");
        let a = AdminRef::decode(&bytes).unwrap();
        assert_eq!(a.permissions, AdminPermissions::ALL);
        assert_eq!(a.admin.handle, "0.NA/88.100.1");
        assert_eq!(a.admin.index, 200);
        assert_eq!(a.encode(), bytes);
        assert_eq!(a.permissions.to_bit_string(), "111111111111");
        let mut legacy = bytes.clone();
        legacy.extend_from_slice(&[0, 0]);
        assert_eq!(AdminRef::decode(&legacy).unwrap(), a);
        legacy.push(0);
        assert!(AdminRef::decode(&legacy).is_err());
    }

    #[test]
    fn admin_bit_strings() {
        let p = AdminPermissions::from_bit_string("011111111111").unwrap();
        assert_eq!(p.0, 0x07FF);
        assert!(!p.has(AdminPermissions::LIST_HANDLES));
        assert!(p.has(AdminPermissions::ADD_HANDLE));
        assert_eq!(p.to_bit_string(), "011111111111");
        assert_eq!(
            AdminPermissions::from_bit_string("011111110011").unwrap().0,
            0x07F3
        );
        assert_eq!(AdminPermissions::from_bit_string("0111111111112"), None);
    }

    #[test]
    fn handles_in_value_data_are_bounded() {
        let long = format!("0.NA/{}", "a".repeat(2044));
        let admin = AdminRef {
            permissions: AdminPermissions::ALL,
            admin: ValueReference {
                handle: long.clone(),
                index: 200,
            },
        };
        assert!(AdminRef::decode(&admin.encode()).is_err());
        let list = ValueList(vec![ValueReference {
            handle: long,
            index: 1,
        }]);
        assert!(ValueList::decode(&list.encode()).is_err());
    }

    #[test]
    fn vlist_vector() {
        let bytes = hex("000000010000000e38382e3130302e312f61646d696e0000012c");
        let l = ValueList::decode(&bytes).unwrap();
        assert_eq!(
            l.0,
            vec![ValueReference {
                handle: "88.100.1/admin".into(),
                index: 300
            }]
        );
        assert_eq!(l.encode(), bytes);
    }

    #[test]
    fn site_vector() {
        let bytes = hex(
            "0001020b0001800200000000000000010000000464657363000000047465737400000001000000010000000000000000000000007f0000010000000000000003030100000a51020000000a51030200001f40",
        );
        let s = SiteInfo::decode(&bytes).unwrap();
        assert_eq!(s.data_format_version, 1);
        assert_eq!((s.protocol_major, s.protocol_minor), (2, 11));
        assert_eq!(s.serial, 1);
        assert!(s.is_primary() && !s.is_multi_primary());
        assert_eq!(s.hash_option, 2);
        assert_eq!(s.attributes, vec![("desc".to_string(), "test".to_string())]);
        assert_eq!(s.servers.len(), 1);
        assert_eq!(s.servers[0].ip().to_string(), "127.0.0.1");
        assert_eq!(
            s.servers[0].interfaces,
            vec![
                Interface {
                    kind: 3,
                    protocol: 1,
                    port: 2641
                },
                Interface {
                    kind: 2,
                    protocol: 0,
                    port: 2641
                },
                Interface {
                    kind: 3,
                    protocol: 2,
                    port: 8000
                },
            ]
        );
        assert_eq!(s.encode(), bytes);
        assert!(SiteInfo::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn pubkey_round_trip() {
        let k = PublicKey::Rsa {
            exponent: vec![1, 0, 1],
            modulus: vec![0, 0xc3, 0x11],
        };
        assert_eq!(PublicKey::decode(&k.encode()).unwrap(), k);
        assert!(PublicKey::decode(b"\0\0\0\x03XYZ\0\0").is_err());
    }
}
