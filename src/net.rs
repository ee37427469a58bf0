//! Client address ranges: [`Cidr`] (`10.0.0.0/8`, `::1/128`, or a bare address meaning the
//! one host) and [`CidrList`], the allow-lists of the configuration (`recursion.allow`, and
//! any other list of client networks).
//!
//! Parsing is strict so a typo never widens a list: the address and prefix length must be
//! valid for the family, and an address with bits set past the prefix length
//! (`10.0.0.1/8`) is refused with the network it probably meant. IPv4-mapped IPv6 clients
//! (`::ffff:10.0.0.1`, what a dual-stack socket reports for an IPv4 peer) match the IPv4
//! ranges.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// One network: an address and a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

/// Why a CIDR text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a network: {reason}")]
pub struct CidrError {
    pub text: String,
    pub reason: String,
}

impl Cidr {
    /// Parse `address/length`, or a bare address (a /32 or /128 network).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let fail = |reason: String| CidrError {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail("empty".into()));
        }
        let Some((address, length)) = trimmed.split_once('/') else {
            let address = IpAddr::from_str(trimmed)
                .map_err(|_| fail("expected an IP address or address/prefix-length".into()))?;
            return Ok(Cidr(IpNet::from(address)));
        };
        let address = IpAddr::from_str(address)
            .map_err(|_| fail(format!("{address:?} is not an IPv4 or IPv6 address")))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let length: u8 = length.parse().ok().filter(|l| *l <= max).ok_or_else(|| {
            fail(format!(
                "the prefix length must be a number from 0 to {max}"
            ))
        })?;
        let net = IpNet::new(address, length).map_err(|e| fail(e.to_string()))?;
        if net.trunc() != net {
            return Err(fail(format!(
                "bits are set past the prefix length (the network is {})",
                net.trunc()
            )));
        }
        Ok(Cidr(net))
    }

    /// Whether `address` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(&address.to_canonical())
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(d)?;
        Cidr::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A list of networks; an address is in the list when one of them contains it. An empty list
/// contains nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(Vec<Cidr>);

/// Loopback and private ranges: 127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12,
/// 192.168.0.0/16, fc00::/7 (unique local), fe80::/10 (link local).
pub const PRIVATE_RANGES: [&str; 7] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

impl CidrList {
    pub fn new(networks: Vec<Cidr>) -> CidrList {
        CidrList(networks)
    }

    /// Parse every text; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<CidrList, CidrError> {
        texts
            .iter()
            .map(|t| Cidr::parse(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(CidrList)
    }

    /// [`PRIVATE_RANGES`].
    pub fn private() -> CidrList {
        CidrList(
            PRIVATE_RANGES
                .iter()
                .filter_map(|t| Cidr::parse(t).ok())
                .collect(),
        )
    }

    /// Every address (0.0.0.0/0 and ::/0).
    pub fn everyone() -> CidrList {
        CidrList(
            ["0.0.0.0/0", "::/0"]
                .iter()
                .filter_map(|t| Cidr::parse(t).ok())
                .collect(),
        )
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|c| c.0.contains(&address))
    }

    pub fn networks(&self) -> &[Cidr] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for CidrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CidrList, D::Error> {
        Vec::<Cidr>::deserialize(d).map(CidrList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_hosts() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert_eq!(host.prefix_len(), 32);
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("10.0.0.1")));
        assert_eq!(" ::1/128 ".parse::<Cidr>().unwrap().prefix_len(), 128);
    }

    #[test]
    fn refuses_bad_text_clearly() {
        for (text, needle) in [
            ("", "empty"),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/x", "prefix length"),
            ("10.0.0.1/8", "the network is 10.0.0.0/8"),
            ("example.com/8", "not an IPv4 or IPv6"),
            ("localhost", "IP address"),
        ] {
            let err = Cidr::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn lists_and_mapped_addresses() {
        let private = CidrList::private();
        for yes in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.9.9",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(private.contains(ip(yes)), "{yes}");
        }
        for no in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!private.contains(ip(no)), "{no}");
        }
        assert!(!CidrList::default().contains(ip("127.0.0.1")));
        assert!(CidrList::everyone().contains(ip("8.8.8.8")));
        assert!(CidrList::everyone().contains(ip("2001:db8::1")));
        assert!(CidrList::parse(&["10.0.0.0/8", "bad"]).is_err());
    }
}
