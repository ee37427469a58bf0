//! The Handle.Net REST API JSON shapes (handle-protocol.md §9), as a pure codec between
//! [`HandleValue`](crate::model::HandleValue) and [`serde_json::Value`].
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
//! # Files
//!
//! `encode.rs` writes values (and their `admin`, `vlist`, `key` data) as JSON; `decode.rs`
//! reads them back, with [`JsonError`] and its field paths, and the PUT body forms
//! ([`values_from_request_body`]); `site.rs` has the HS_SITE shape both ways (inside a value's
//! `data`, and on its own for `/api/site`); `time.rs` the ISO-8601 times of `ttl` and
//! `timestamp`; `responses.rs` the envelopes of REST answers ([`handle_response`],
//! [`error_response`], [`referral_response`], listings, sessions, …). Everything is re-exported here, so callers name `wire::json::X`
//! whichever file `X` lives in.

mod decode;
mod encode;
mod responses;
mod site;
mod time;

pub use decode::{value_from_json, values_from_request_body, JsonError};
pub use encode::value_to_json;
pub use responses::{
    error_response, handle_list_response, handle_response, no_values_response, prefixes_response,
    referral_response, session_closed_response, session_response, site_response, write_response,
};
pub use site::{site_from_json, site_to_json};
pub use time::{format_time, parse_time};

#[cfg(test)]
mod tests;
