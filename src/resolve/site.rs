//! Choosing a server inside a multi-server site (handle-protocol.md §5): every server of a
//! site holds one hash partition of the site's handles, and clients route by the same hash.
//!
//! 1. The hashed part is the whole handle (hash option 2), the prefix before the first "/"
//!    (option 0; "0.NA" for a handle without "/"), or the suffix after it (option 1; the whole
//!    handle without "/").
//! 2. ASCII letters are upper-cased (other bytes unchanged).
//! 3. `h = |int32(MD5(part)[12..16])|`, server = `h mod n` in record order. Java's
//!    `abs(i32::MIN)` stays negative (Handle.Net would fail); we map it to 0 deterministically.

use md5::{Digest, Md5};

use crate::model::structured::{interface, ServerInfo};
use crate::model::SiteInfo;

pub const HASH_BY_PREFIX: u8 = 0;
pub const HASH_BY_SUFFIX: u8 = 1;
pub const HASH_BY_HANDLE: u8 = 2;

/// The hash of `handle` under `option` (0 prefix, 1 suffix, anything else whole handle).
pub fn handle_hash(handle: &str, option: u8) -> u32 {
    let part = match (option, handle.find('/')) {
        (HASH_BY_PREFIX, Some(at)) => &handle[..at],
        (HASH_BY_PREFIX, None) => "0.NA",
        (HASH_BY_SUFFIX, Some(at)) => &handle[at + 1..],
        _ => handle,
    };
    let upper = part.to_ascii_uppercase();
    let digest = Md5::digest(upper.as_bytes());
    let tail = i32::from_be_bytes([digest[12], digest[13], digest[14], digest[15]]);
    // i32::MIN has no positive counterpart; Java's abs() leaves it negative.
    tail.checked_abs().map(|v| v as u32).unwrap_or(0)
}

/// Index of the server (in record order) that holds `handle`, or `None` for an empty site.
pub fn server_index(site: &SiteInfo, handle: &str) -> Option<usize> {
    let n = site.servers.len();
    (n > 0).then(|| handle_hash(handle, site.hash_option) as usize % n)
}

/// The server that holds `handle`.
pub fn server_for<'a>(site: &'a SiteInfo, handle: &str) -> Option<&'a ServerInfo> {
    server_index(site, handle).and_then(|i| site.servers.get(i))
}

/// Ports a server offers for queries, per protocol (UDP, TCP).
pub fn query_port(server: &ServerInfo, protocol: u8) -> Option<u16> {
    server
        .interfaces
        .iter()
        .find(|i| {
            i.protocol == protocol
                && (i.kind == interface::QUERY || i.kind == interface::ADMIN_AND_QUERY)
        })
        .and_then(|i| u16::try_from(i.port).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The §11 examples from the reference implementation.
    #[test]
    fn reference_hashes() {
        for (handle, by_prefix, by_suffix, by_all) in [
            ("88.100.1/SN-0001", 626_612_451, 986_926_208, 419_026_994),
            ("0.NA/88.100.1", 36_223_079, 626_612_451, 252_776_214),
            ("10.1000/1", 2_091_615_925, 1_869_972_635, 1_515_935_840),
        ] {
            assert_eq!(
                handle_hash(handle, HASH_BY_PREFIX),
                by_prefix,
                "{handle} by prefix"
            );
            assert_eq!(
                handle_hash(handle, HASH_BY_SUFFIX),
                by_suffix,
                "{handle} by suffix"
            );
            assert_eq!(
                handle_hash(handle, HASH_BY_HANDLE),
                by_all,
                "{handle} by handle"
            );
        }
        // Case folds: the hash is over the upper-cased text.
        assert_eq!(handle_hash("88.100.1/sn-0001", HASH_BY_HANDLE), 419_026_994);
        // Without "/": prefix hashing uses "0.NA", suffix hashing the whole text.
        assert_eq!(
            handle_hash("88.100", HASH_BY_PREFIX),
            handle_hash("0.NA/x", HASH_BY_PREFIX)
        );
        assert_eq!(
            handle_hash("88.100", HASH_BY_SUFFIX),
            handle_hash("88.100", HASH_BY_HANDLE)
        );
    }

    #[test]
    fn server_selection_of_three() {
        let server = |id| ServerInfo {
            server_id: id,
            address: [0; 16],
            public_key: vec![],
            interfaces: vec![],
        };
        let site = SiteInfo {
            data_format_version: 1,
            protocol_major: 2,
            protocol_minor: 11,
            serial: 1,
            primary_mask: 0x80,
            hash_option: HASH_BY_HANDLE,
            hash_filter: vec![],
            attributes: vec![],
            servers: vec![server(1), server(2), server(3)],
        };
        assert_eq!(server_index(&site, "88.100.1/SN-0001"), Some(2));
        assert_eq!(server_index(&site, "0.NA/88.100.1"), Some(0));
        assert_eq!(server_index(&site, "10.1000/1"), Some(2));
        assert_eq!(
            server_for(&site, "88.100.1/SN-0001").map(|s| s.server_id),
            Some(3)
        );
        let empty = SiteInfo {
            servers: vec![],
            ..site
        };
        assert_eq!(server_index(&empty, "x/y"), None);
    }
}
