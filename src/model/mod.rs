//! The identifier data model: identifiers and prefixes, typed values, and the structured value
//! types with their binary layouts. Depends on std only (plus serde/thiserror derives).

pub mod code;
pub mod codec;
pub mod handle;
pub mod structured;
pub mod transport;
pub mod value;

pub use code::ResponseCode;
pub use handle::{Handle, HandleError, Prefix, SuffixCase, MAX_HANDLE_BYTES, PREFIX_NA};
pub use structured::{AdminPermissions, AdminRef, PublicKey, ServerInfo, SiteInfo, ValueList};
pub use transport::Transport;
pub use value::{
    types, validate_values, HandleValue, Ttl, ValueError, ValuePermissions, ValueReference,
};

/// Seconds since the Unix epoch by the system clock (0 if the clock is before it). The one
/// place front ends read wall-clock time for value timestamps, TTL expiry and the resolver's
/// `now`; the state machines below them take `now` as an argument.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// [`unix_now`] as the 32-bit timestamps Handle values carry (saturating in 2106).
pub fn unix_now_u32() -> u32 {
    u32::try_from(unix_now()).unwrap_or(u32::MAX)
}
