//! The protocol-neutral engine: every front end turns its request into a call here and its
//! answer back into bytes. It owns the semantics (handle-protocol.md §4, §7):
//!
//! - **responsibility**: a node answers for `P/S` when it homes `P`, and for prefix handles
//!   `0.NA/X` when it homes `X` or an ancestor of `X` (the delegating node stores them);
//!   otherwise 301;
//! - **resolution**: index/type filters (union; type families ending in "."), 100 vs 200,
//!   public-only reads, admin reads for authenticated administrators;
//! - **administration**: create (optionally replacing), add/modify/remove values, delete,
//!   list. Every change is authorized against HS_ADMIN values (see [`crate::auth`]),
//!   re-checked inside the registry's writer lock against the record being changed, stamped with
//!   the current time, validated as a whole record, and acknowledged only once durable.
//!
//! Which admin values count:
//! - creating `P/S`: HS_ADMIN of `0.NA/P` with ADD_HANDLE;
//! - creating `0.NA/X`: HS_ADMIN of `0.NA/<ancestor of X>` with ADD_DERIVED_PREFIX;
//! - changing a handle: its own HS_ADMIN values, plus those of `0.NA/P` when
//!   `allow_prefix_admins` is on (Handle.Net's `allow_na_admins`, default on), plus for `0.NA/X`
//!   the ancestors' prefix handles;
//! - configured server administrators may do everything on this node.
//!
//! What a change needs and may do:
//! - bits by the value diff; admin values ([`crate::auth::admin_value_indexes`]) need the
//!   *_ADMIN bits;
//! - values with ADMIN_WRITE clear stay as they are (server admins excepted, RC 401);
//! - no change leaves a homed prefix, or a handle, without an administrator (RC 202; see
//!   `check_keeps_administrator`); [`repair_prefix`] is the operator's repair.
//!
//! Reads for anyone give only [`HandleValue::is_public`] values: never a secret.
//!
//! Calls are blocking (sled reads, fsync on writes): async front ends run writes on the
//! blocking pool.
//!
//! Files: `engine` (the [`Engine`], responsibility, referrals, partitions, resolution),
//! `write` (the writes), `authorize` (who may change what, and the invariants a change keeps),
//! `setup` ([`init_prefix`], [`repair_prefix`]); here the request and answer types every front
//! end shares. Beside the engine: `resolver` (the one entry point of every front end, with
//! recursion), `import`, `export`, `site`, `cache`, `recursion`.

mod authorize;
pub mod cache;
mod engine;
pub mod error;
pub mod export;
pub mod import;
pub mod recursion;
pub mod resolver;
mod setup;
pub mod site;
mod write;

pub use engine::Engine;
pub use error::ResolveError;
pub use resolver::{Answer, Origin, Resolver, Route};
pub use setup::{init_prefix, repair_prefix, Repair};
pub use write::{Overwrite, WriteOutcome};

use crate::auth::Identity;
use crate::model::{Handle, HandleValue, Prefix, SuffixCase};

/// Engine settings (from the node configuration).
#[derive(Debug, Clone)]
pub struct Policy {
    pub suffix_case: SuffixCase,
    /// This node is one server of a multi-server site and holds only its hash partition.
    pub partition: Option<Partition>,
    /// Admins of `0.NA/P` may change every handle under `P`.
    pub allow_prefix_admins: bool,
    /// Identities with every right on this node.
    pub server_admins: Vec<Identity>,
    /// Prefixes this node mirrors read-only from an upstream (`[[sync.follow]]`), with the
    /// upstream's address: resolutions are answered, writes refused with RC 7 naming it.
    pub mirrored: Vec<(Prefix, String)>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            suffix_case: SuffixCase::Sensitive,
            partition: None,
            allow_prefix_admins: true,
            server_admins: Vec::new(),
            mirrored: Vec::new(),
        }
    }
}

/// The slice of a multi-server site this node holds (handle-protocol.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// This server's position in the site's server list (0-based).
    pub index: u32,
    /// Servers in the site.
    pub count: u32,
    /// The site's hash option: 0 prefix, 1 suffix, 2 whole handle.
    pub hash_option: u8,
}

impl Partition {
    /// Which server of the site holds `handle`.
    pub fn server_of(&self, handle: &Handle) -> u32 {
        site::handle_hash(handle.as_str(), self.hash_option) % self.count.max(1)
    }
}

/// A resolution request.
#[derive(Debug, Clone)]
pub struct Query {
    pub handle: Handle,
    pub indexes: Vec<u32>,
    pub types: Vec<String>,
    /// Only values with PUBLIC_READ; admin-read values are never returned when set.
    pub public_only: bool,
    /// Answer 303 with the delegating ancestor's values for a prefix handle this node does
    /// not store (cleared by the native DNRF flag).
    pub refer: bool,
}

/// A successful resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub values: Vec<HandleValue>,
}

/// Which values [`stamp`] sets the time of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// Every value: a change through the engine happens now.
    All,
    /// Values without a time (timestamp 0): a bulk load keeps the times its records carry
    /// (an export re-imported is the same data).
    Unset,
}

/// The one place values get their timestamp: engine writes, the administrator
/// [`init_prefix`] lays out, and imported records ([`import`]).
fn stamp(values: &mut [HandleValue], now: u32, which: Stamp) {
    for v in values {
        if which == Stamp::All || v.timestamp == 0 {
            v.timestamp = now;
        }
    }
}

fn sorted(mut values: Vec<HandleValue>) -> Vec<HandleValue> {
    values.sort_by_key(|v| v.index);
    values
}

#[cfg(test)]
mod tests;
