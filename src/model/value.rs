//! The Handle value model: a record is an ordered list of typed values.
//!
//! Every field maps one to one onto the native protocol's HandleValue (handle-protocol.md §4),
//! the REST JSON shape (§9) and, later, DNS answers, so a record converts losslessly between them.

use std::fmt;

/// Well-known value types.
pub mod types {
    pub const URL: &str = "URL";
    pub const EMAIL: &str = "EMAIL";
    pub const DESC: &str = "DESC";
    pub const HS_ADMIN: &str = "HS_ADMIN";
    pub const HS_VLIST: &str = "HS_VLIST";
    pub const HS_SITE: &str = "HS_SITE";
    pub const HS_SITE_6: &str = "HS_SITE.6";
    pub const HS_SITE_PREFIX: &str = "HS_SITE.PREFIX";
    pub const HS_SERV: &str = "HS_SERV";
    pub const HS_SERV_PREFIX: &str = "HS_SERV.PREFIX";
    pub const HS_ALIAS: &str = "HS_ALIAS";
    pub const HS_PUBKEY: &str = "HS_PUBKEY";
    pub const HS_SECKEY: &str = "HS_SECKEY";
    pub const HS_CERT: &str = "HS_CERT";
    pub const HS_SIGNATURE: &str = "HS_SIGNATURE";
    /// A private key kept in a record (not a Handle.Net type, but stored by some tools).
    pub const HS_PRIVKEY: &str = "HS_PRIVKEY";

    /// Types whose data is a secret (a shared secret, a private key). Written without explicit
    /// permissions they are admin-only, and they are never given to an anonymous reader,
    /// whatever their stored permissions say ([`super::HandleValue::is_public`]).
    pub fn is_secret(t: &str) -> bool {
        [HS_SECKEY, HS_PRIVKEY]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(t))
    }

    /// Types that make up a handle's administration: HS_ADMIN, HS_VLIST (admin groups) and the
    /// keys identities authenticate with. Changing one needs the *_ADMIN permission bits.
    pub fn is_administrative(t: &str) -> bool {
        [HS_ADMIN, HS_VLIST, HS_SECKEY, HS_PUBKEY, HS_PRIVKEY]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(t))
    }

    /// True for the site types whose data is an HS_SITE record.
    pub fn is_site(t: &str) -> bool {
        [HS_SITE, HS_SITE_6, HS_SITE_PREFIX, "HS_NA_DELEGATE"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(t))
    }
}

/// Per-value access bits (the native `int1 permissions`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValuePermissions(pub u8);

impl ValuePermissions {
    pub const ADMIN_READ: u8 = 0x08;
    pub const ADMIN_WRITE: u8 = 0x04;
    pub const PUBLIC_READ: u8 = 0x02;
    pub const PUBLIC_WRITE: u8 = 0x01;
    /// Admin read+write, public read: the Handle default ("1110").
    pub const DEFAULT: ValuePermissions = ValuePermissions(0x0E);
    /// Admin read+write only: what secrets get ("1100").
    pub const ADMIN_ONLY: ValuePermissions = ValuePermissions(0x0C);

    /// What a value of `type_name` gets when written without explicit permissions: admin-only
    /// for secrets ([`types::is_secret`]), the Handle default otherwise.
    pub fn default_for(type_name: &str) -> ValuePermissions {
        if types::is_secret(type_name) {
            Self::ADMIN_ONLY
        } else {
            Self::DEFAULT
        }
    }

    pub fn public_read(self) -> bool {
        self.0 & Self::PUBLIC_READ != 0
    }
    pub fn admin_read(self) -> bool {
        self.0 & Self::ADMIN_READ != 0
    }
    pub fn admin_write(self) -> bool {
        self.0 & Self::ADMIN_WRITE != 0
    }

    /// The REST form: four characters adminRead, adminWrite, publicRead, publicWrite.
    pub fn to_bit_string(self) -> String {
        [
            Self::ADMIN_READ,
            Self::ADMIN_WRITE,
            Self::PUBLIC_READ,
            Self::PUBLIC_WRITE,
        ]
        .iter()
        .map(|bit| if self.0 & bit != 0 { '1' } else { '0' })
        .collect()
    }

    /// Parse the four-character REST form.
    pub fn from_bit_string(s: &str) -> Option<ValuePermissions> {
        if s.len() != 4 {
            return None;
        }
        let mut bits = 0u8;
        for (c, bit) in s.chars().zip([8u8, 4, 2, 1]) {
            match c {
                '1' => bits |= bit,
                '0' => {}
                _ => return None,
            }
        }
        Some(ValuePermissions(bits))
    }
}

impl Default for ValuePermissions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for ValuePermissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValuePermissions({})", self.to_bit_string())
    }
}

/// How long a value may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// Seconds after retrieval (wire ttlType 0).
    Relative(u32),
    /// Unix time after which the value is stale (wire ttlType 1).
    Absolute(u32),
}

impl Ttl {
    /// The Handle default: one day, relative.
    pub const DEFAULT: Ttl = Ttl::Relative(86400);

    /// Seconds a value fetched at `now` may be kept, at most `max`.
    pub fn seconds_from(self, now: u32, max: u32) -> u32 {
        match self {
            Ttl::Relative(s) => s.min(max),
            Ttl::Absolute(t) => t.saturating_sub(now).min(max),
        }
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A reference from a value to another value: `index:handle`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueReference {
    pub handle: String,
    pub index: u32,
}

impl fmt::Display for ValueReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.index, self.handle)
    }
}

/// Largest index a value may have (the wire field is a signed 32-bit integer; indexes are > 0).
pub const MAX_INDEX: u32 = i32::MAX as u32;

/// One typed value of a record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandleValue {
    pub index: u32,
    pub type_name: String,
    pub data: Vec<u8>,
    pub ttl: Ttl,
    /// Unix seconds of the last change; the server stamps it on every write.
    pub timestamp: u32,
    pub permissions: ValuePermissions,
    pub references: Vec<ValueReference>,
}

impl HandleValue {
    /// A value with the Handle defaults: TTL one day relative, permissions "1110", or "1100"
    /// (admin-only) for secret types ([`ValuePermissions::default_for`]).
    pub fn new(index: u32, type_name: impl Into<String>, data: impl Into<Vec<u8>>) -> HandleValue {
        let type_name = type_name.into();
        HandleValue {
            index,
            permissions: ValuePermissions::default_for(&type_name),
            type_name,
            data: data.into(),
            ttl: Ttl::DEFAULT,
            timestamp: 0,
            references: Vec::new(),
        }
    }

    /// May this value go to anyone (an anonymous reader, a DNS answer, a zone file)? It must
    /// have PUBLIC_READ and not be a secret: a secret stored with public read (older records,
    /// a careless write) is still withheld.
    pub fn is_public(&self) -> bool {
        self.permissions.public_read() && !types::is_secret(&self.type_name)
    }

    pub fn with_permissions(mut self, permissions: ValuePermissions) -> HandleValue {
        self.permissions = permissions;
        self
    }

    /// Type comparison as the protocol does it: ASCII-case-insensitive.
    pub fn is_type(&self, type_name: &str) -> bool {
        self.type_name.eq_ignore_ascii_case(type_name)
    }

    /// Query type matching: exact (ASCII-case-insensitive), or a family when the query type ends
    /// with "." (`HS_SITE.` matches `HS_SITE.PREFIX`, and `HS_SITE` itself).
    pub fn matches_type_query(&self, query: &str) -> bool {
        if self.is_type(query) {
            return true;
        }
        if let Some(family) = query.strip_suffix('.') {
            let t = self.type_name.as_bytes();
            let f = family.as_bytes();
            return t.len() >= f.len()
                && t[..f.len()].eq_ignore_ascii_case(f)
                && (t.len() == f.len() || t[f.len()] == b'.');
        }
        false
    }

    /// The data as UTF-8 text, if it is.
    pub fn data_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }

    /// The data as text fit to show, if it is: UTF-8 holding no control character other than
    /// tab, CR, LF, and no DEL. Otherwise it "looks binary": the one rule behind the REST API's
    /// `string` vs `base64` data and the DNS TXT text's plain vs `base64:` data.
    pub fn data_text(&self) -> Option<&str> {
        self.data_str().filter(|text| {
            !text
                .bytes()
                .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f)
        })
    }
}

/// Why a set of values is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("value indexes must be positive and at most {MAX_INDEX} (got {0})")]
    BadIndex(u64),
    #[error("duplicate value index {0}")]
    DuplicateIndex(u32),
    #[error("a record holds at most {MAX_VALUES} values")]
    TooManyValues,
    #[error("value {index} has an empty type")]
    EmptyType { index: u32 },
    #[error("value {index} of type {type_name}: {reason}")]
    BadData {
        index: u32,
        type_name: String,
        reason: String,
    },
}

/// Most values one record may hold (Handle.Net and the IDIS SDKs: 2048).
pub const MAX_VALUES: usize = 2048;

/// Check the record-level rules: positive unique indexes, non-empty types, the value count,
/// and that structured types decode.
pub fn validate_values(values: &[HandleValue]) -> Result<(), ValueError> {
    if values.len() > MAX_VALUES {
        return Err(ValueError::TooManyValues);
    }
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    for v in values {
        if v.index == 0 || v.index > MAX_INDEX {
            return Err(ValueError::BadIndex(v.index.into()));
        }
        if !seen.insert(v.index) {
            return Err(ValueError::DuplicateIndex(v.index));
        }
        if v.type_name.is_empty() {
            return Err(ValueError::EmptyType { index: v.index });
        }
        if v.permissions.0 & !0x0F != 0 {
            // Only four permission bits exist; others could not survive the REST form.
            return Err(ValueError::BadData {
                index: v.index,
                type_name: v.type_name.clone(),
                reason: format!("permissions 0x{:02x} use undefined bits", v.permissions.0),
            });
        }
        super::structured::check_value_data(v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_bit_strings() {
        assert_eq!(ValuePermissions::DEFAULT.to_bit_string(), "1110");
        assert_eq!(ValuePermissions::ADMIN_ONLY.to_bit_string(), "1100");
        assert_eq!(
            ValuePermissions::from_bit_string("0011"),
            Some(ValuePermissions(3))
        );
        assert_eq!(ValuePermissions::from_bit_string("10"), None);
        assert_eq!(ValuePermissions::from_bit_string("11x0"), None);
    }

    #[test]
    fn hole5_secrets_default_to_admin_only_and_are_never_public() {
        for t in ["HS_SECKEY", "hs_seckey", "HS_PRIVKEY"] {
            let v = HandleValue::new(300, t, "s");
            assert_eq!(v.permissions, ValuePermissions::ADMIN_ONLY, "{t}");
            assert!(!v.is_public());
            // Stored with public read, still not public.
            assert!(!v.with_permissions(ValuePermissions::DEFAULT).is_public());
        }
        let url = HandleValue::new(1, "URL", "u");
        assert_eq!(url.permissions, ValuePermissions::DEFAULT);
        assert!(url.is_public());
        assert!(!url
            .with_permissions(ValuePermissions::ADMIN_ONLY)
            .is_public());
        assert!(types::is_administrative("hs_vlist"));
        assert!(!types::is_administrative("URL"));
    }

    #[test]
    fn type_families() {
        let v = HandleValue::new(1, "HS_SITE.PREFIX", vec![]);
        assert!(v.matches_type_query("hs_site."));
        assert!(v.matches_type_query("HS_SITE.PREFIX"));
        assert!(!v.matches_type_query("HS_SITE"));
        assert!(!v.matches_type_query("HS_SIT."));
        let base = HandleValue::new(1, "HS_SITE", vec![]);
        assert!(base.matches_type_query("HS_SITE."));
    }

    #[test]
    fn ttl_clamps() {
        assert_eq!(Ttl::Relative(500).seconds_from(0, 100), 100);
        assert_eq!(Ttl::Absolute(1000).seconds_from(900, 1000), 100);
        assert_eq!(Ttl::Absolute(1000).seconds_from(2000, 1000), 0);
    }

    #[test]
    fn record_rules() {
        let ok = vec![
            HandleValue::new(1, "URL", "x"),
            HandleValue::new(2, "EMAIL", "a@b"),
        ];
        assert!(validate_values(&ok).is_ok());
        let dup = vec![
            HandleValue::new(1, "URL", "x"),
            HandleValue::new(1, "EMAIL", "a@b"),
        ];
        assert_eq!(validate_values(&dup), Err(ValueError::DuplicateIndex(1)));
        assert_eq!(
            validate_values(&[HandleValue::new(0, "URL", "x")]),
            Err(ValueError::BadIndex(0))
        );
        assert!(matches!(
            validate_values(&[HandleValue::new(100, "HS_ADMIN", vec![1, 2])]),
            Err(ValueError::BadData { .. })
        ));
        let odd_perms = HandleValue::new(1, "URL", "x").with_permissions(ValuePermissions(0x51));
        assert!(matches!(
            validate_values(&[odd_perms]),
            Err(ValueError::BadData { .. })
        ));
    }
}
