//! Replication between nodes (ARCHITECTURE.md, Sync).
//!
//! - [`feed`]: every node serves its change log (`/sync/changes`, long-poll), a consistent
//!   snapshot (`/sync/snapshot`), a content digest (`/sync/digest`) and the state of its own
//!   follow links (`/sync/status`).
//! - [`follower`]: a task per `[[sync.follow]]` link bootstraps from a snapshot, then
//!   long-polls changes, verifies each batch and applies it together with its cursor in one
//!   sled transaction ([`crate::store::Registry::apply_replicated`]).
//!
//! Authentication in this slice: a follower presents an identity (`index:handle`) with HTTP
//! Basic (HS_SECKEY) and the upstream serves only the prefixes `[[sync.allow]]` lists for it;
//! the feed answers only over HTTPS unless `sync.allow_plain = true` (tests). Mutual TLS with
//! certificates tied to node identities is the next step.
//!
//! Both ends must use the same `suffix_case` (keys are compared as normalized). A snapshot is
//! one JSON answer, so very large prefixes want a paged snapshot (not built yet).

pub mod feed;
pub mod follower;

use sha2::{Digest, Sha256};

use crate::model::Prefix;
use crate::store::{record, Registry, StoreError};

/// SHA-256 over every record under `prefix` in key order: for each, the key's length (u32
/// big-endian), the key, the canonical stored encoding's length and the encoding. Equal on
/// a primary and its mirror when they are in sync. Hex.
pub fn digest(registry: &Registry, prefix: &Prefix) -> Result<(usize, String), StoreError> {
    let (_, records) = registry.snapshot(std::slice::from_ref(prefix))?;
    let mut h = Sha256::new();
    for (key, rec) in &records {
        let bytes = record::encode_record(rec);
        h.update((key.len() as u32).to_be_bytes());
        h.update(key.as_bytes());
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(&bytes);
    }
    let out = h.finalize();
    Ok((
        records.len(),
        out.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// Is `key` (a normalized handle key) under one of `prefixes` (`P/...`)? The prefix handle
/// `0.NA/P` is not: it is the delegating parent's record (a top-level node hosting a
/// secondary's data keeps its own delegation record for the prefix).
pub fn key_under(key: &str, prefixes: &[Prefix]) -> bool {
    prefixes.iter().any(|p| {
        key.strip_prefix(p.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The bytes a follower signs with its HS_PUBKEY private key for one feed request, and the
/// upstream verifies: the signature covers `nonce = "<unix seconds>"` and
/// `digest = SHA-256("GET <path and query>")` (the same `nonce ‖ digest` form as the native
/// protocol's challenge answers). The upstream accepts timestamps within
/// [`SIGNATURE_WINDOW_SECS`] of its clock.
pub fn request_signature_input(unix: u64, path_and_query: &str) -> (Vec<u8>, Vec<u8>) {
    use sha2::{Digest, Sha256};
    let nonce = unix.to_string().into_bytes();
    let digest = Sha256::digest(format!("GET {path_and_query}").as_bytes()).to_vec();
    (nonce, digest)
}

/// How far a signed request's timestamp may be from the upstream's clock.
pub const SIGNATURE_WINDOW_SECS: u64 = 300;
