//! idnode: an identifier resolution node for the industrial internet.
//!
//! ```text
//!  bytes in ─► front end ─► wire decode ─► Request ─► engine ─► Answer ─► wire encode ─► bytes out
//!  (http; native Handle and DNS later)        │        authority (store)
//!                                              └─ admin ops ─► auth ─► store (record + change log, one batch)
//! ```
//!
//! Layers, each depending only on those above it:
//! - [`model`]: identifiers, prefixes, values, structured value types (std only);
//! - [`wire`]: pure codecs (native Handle binary layouts, REST JSON);
//! - [`store`]: the sled registry (records, homed prefixes, change log, schema version);
//! - [`auth`]: authentication of identities and authorization through HS_ADMIN / HS_VLIST;
//! - [`resolve`]: the protocol-neutral engine every front end calls;
//! - [`server`]: tokio front ends (HTTP/HTTPS today);
//! - [`config`], [`metrics`]: configuration and the prometheus registry, passed in.

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod config;
pub mod metrics;
pub mod model;
pub mod resolve;
pub mod server;
pub mod store;
pub mod sync;
pub mod wire;
