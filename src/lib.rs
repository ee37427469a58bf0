//! idnode: an identifier resolution node for the industrial internet.
//!
//! ```text
//!  bytes in ─► front end ─► decode once ─► Resolver ─► Answer { outcome, origin } ─► encode ─► bytes out
//!  (HTTP/HTTPS, native Handle             │ route ├─ Local ─► Engine: authority (store), referrals
//!   UDP/TCP, DNS UDP/TCP)                 │       └─ Upstream ─► Recursor ─► cache / upstream sites
//!                                         └─ writes ─► Engine ─► auth ─► store (record + change log)
//!  store change log ─► /sync feed ─► followers (mirrors, upstream hosting)
//! ```
//!
//! Layers, each depending only on those above it (and on the leaf utilities below):
//! - [`model`]: identifiers, prefixes, values, structured value types (std only);
//! - [`wire`]: pure codecs (native Handle messages and values, REST JSON, DNS, the sync
//!   protocol's messages);
//! - [`store`]: the sled registry (records, homed prefixes, change log, schema version);
//! - [`auth`]: authentication of identities (secrets, challenge answers, keys) and
//!   authorization through HS_ADMIN / HS_VLIST;
//! - [`tls`]: rustls configurations (the HTTP listener's, follow links');
//! - [`resolve`]: the [`resolve::Resolver`] every front end calls (authority, then cache and
//!   upstream), the protocol-neutral engine behind it, site hashing, the resolution cache,
//!   the recursor, bulk import and export;
//! - [`sync`]: the change feed's answers and the followers;
//! - [`config`]: the TOML configuration, validated into the typed settings of each subsystem;
//! - [`server`]: tokio front ends (HTTP/HTTPS with the sync feed's endpoints, native UDP/TCP,
//!   DNS UDP/TCP) and node start-up, consuming those settings;
//! - [`client`]: the blocking native client behind `idnode resolve` / `idnode admin`;
//! - [`bench`](mod@bench): `idnode bench`, the load generator;
//! - [`cli`]: the command line as clap parses it, and what its options mean.
//!
//! Leaf utilities any layer may use: [`metrics`] (the prometheus registry, made by the
//! caller of [`server::start`] and passed in), [`audit`] (the audit log), [`net`] (client
//! networks, CIDR allow-lists), [`lock`] (poison-tolerant std locks).

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod lock;
pub mod metrics;
pub mod model;
pub mod net;
pub mod resolve;
pub mod server;
pub mod store;
pub mod sync;
pub mod tls;
pub mod wire;
