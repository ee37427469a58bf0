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
