//! Replication between nodes (ARCHITECTURE.md, Sync).
//!
//! - [`feed`]: what every node's feed answers, built from its registry: the changes after a
//!   cursor (`/sync/changes`, long-poll), a consistent snapshot and the pages of a paged one
//!   (`/sync/snapshot`); with
//!   [`digest`] (`/sync/digest`) and the follow links' state (`/sync/status`). The HTTP
//!   endpoints themselves are `server::http::feed`.
//! - [`follower`]: a task per `[[sync.follow]]` link bootstraps page by page from a paged
//!   snapshot (resumable, verified by digest), then long-polls changes, verifies each batch
//!   and applies it together with its cursor in one sled transaction
//!   ([`crate::store::Registry::apply_replicated`]).
//!
//! The messages both ends exchange are the serde types of [`crate::wire::sync`]. This module
//! sits below `config` and `server` and imports neither: the follower takes its typed
//! [`follower::FollowSettings`] (which `config` builds), TLS comes from [`crate::tls`].
//!
//! Authentication: every endpoint needs a follower identity (`index:handle`, HTTP Basic with
//! its HS_SECKEY, an HS_PUBKEY-signed request or a TLS client certificate) and the upstream
//! serves only the prefixes `[[sync.allow]]` lists for it; the feed answers only over HTTPS
//! unless `sync.allow_plain = true` (tests). Status and digests also answer the node's
//! operator token ([`operator_token_path`]).
//!
//! Both ends must use the same `suffix_case` (keys are compared as normalized). A bootstrap
//! holds one page at a time on both ends (issue 14); the whole snapshot in one answer is
//! still served to followers that ask for it (older builds).

pub mod backup;
pub mod feed;
pub mod follower;
pub mod status;

use sha2::{Digest, Sha256};

use crate::auth::Identity;
use crate::model::Prefix;
use crate::store::{record, Registry, StoreError};

/// A prefix's digest ([`digest`]): its record count, the SHA-256 (hex) and, when the scan
/// is known to match one sequence, that sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixDigest {
    pub records: usize,
    pub sha256: String,
    /// The registry's sequence the digest is exact at: no record under the prefix changed
    /// while it was computed. `None` when writes under the prefix kept landing.
    pub seq: Option<u64>,
}

/// SHA-256 over every record under `prefix` in key order: for each, the key's length (u32
/// big-endian), the key, the canonical stored encoding's length and the encoding. Equal on
/// a primary and its mirror when they are in sync. Hex.
///
/// Computed by streaming over sled's key range with an incremental hasher: memory is one
/// record, whatever the prefix holds, and writers are not held up. The scan is not a
/// point-in-time view, so it notes the sequence before and after (the latter settled, under
/// the writer lock) and reads the change log in between: when no entry touched the prefix
/// (and none is missing), every record it read is the prefix's state at the later
/// sequence, which is returned as `seq`. Otherwise it scans again (at most
/// [`DIGEST_ATTEMPTS`] times; the last scan is returned without `seq`). Writes to other
/// prefixes do not disturb it.
pub fn digest(registry: &Registry, prefix: &Prefix) -> Result<PrefixDigest, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = registry.last_seq();
        let mut h = Sha256::new();
        let mut n = 0usize;
        for item in registry.records_under(prefix) {
            let (key, rec) = item?;
            let bytes = record::encode_record(&rec);
            h.update((key.len() as u32).to_be_bytes());
            h.update(key.as_bytes());
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
            n += 1;
        }
        let after = registry.settled_seq();
        let exact = untouched(registry, prefix, before, after)?;
        if exact || attempt >= DIGEST_ATTEMPTS {
            let out = h.finalize();
            return Ok(PrefixDigest {
                records: n,
                sha256: out.iter().map(|b| format!("{b:02x}")).collect(),
                seq: exact.then_some(after),
            });
        }
    }
}

/// Did no change-log entry in (`before`, `after`] touch a record under `prefix`, with every
/// entry of that range still in the log? Reads the entries a chunk at a time.
fn untouched(
    registry: &Registry,
    prefix: &Prefix,
    before: u64,
    after: u64,
) -> Result<bool, StoreError> {
    let mut at = before;
    let prefixes = std::slice::from_ref(prefix);
    while at < after {
        let chunk = registry.changes_after(at, (after - at).min(1000) as usize)?;
        if chunk.is_empty() {
            return Ok(false);
        }
        for c in chunk {
            if c.seq != at + 1 {
                return Ok(false);
            }
            at = c.seq;
            if key_under(&c.key, prefixes) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// How many times [`digest`] scans when writes keep landing during its scan.
pub const DIGEST_ATTEMPTS: u32 = 3;

/// Where a node keeps its operator token (`<data_dir>/sync-operator.token`, mode 0600,
/// generated at first start): `Authorization: Bearer <token>` on `/sync/status` and
/// `/sync/digest` (any prefix) for the node's operator, e.g. `idnode sync status`, and on a
/// mirror, which stores no identity of its upstream's prefixes to authenticate anyone with.
pub fn operator_token_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("sync-operator.token")
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

/// The upstream's check of a signed feed request (`Authorization: HS_PUBKEY id=…, t=…,
/// sig=…`, taken apart by `server::http::feed`): the timestamp `unix` within
/// [`SIGNATURE_WINDOW_SECS`] of `now`, and `signature` (base64) made over
/// [`request_signature_input`] by one of `identity`'s HS_PUBKEY values in `registry`.
pub fn verify_request_signature(
    registry: &Registry,
    identity: &Identity,
    unix: u64,
    signature: &str,
    path_and_query: &str,
    now: u64,
) -> Result<(), String> {
    use base64::Engine as _;
    if now.abs_diff(unix) > SIGNATURE_WINDOW_SECS {
        return Err("signed request outside the time window (check the clocks)".into());
    }
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "signature is not base64".to_string())?;
    let record = registry
        .get(&identity.handle)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("identity {identity} is not known here"))?;
    let (nonce, digest) = request_signature_input(unix, path_and_query);
    let valid = record
        .values
        .iter()
        .filter(|v| v.is_type(crate::model::types::HS_PUBKEY) && v.index == identity.index)
        .filter_map(|v| crate::model::PublicKey::decode(&v.data).ok())
        .any(|key| {
            crate::auth::challenge::verify_pubkey_answer(&key, &nonce, &digest, &sig)
                .unwrap_or(false)
        });
    if valid {
        Ok(())
    } else {
        Err(format!("signature of {identity} does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Handle, HandleValue, SuffixCase};
    use crate::store::{Record, StoreOptions};

    /// The digest as it was defined before it streamed: over a full snapshot of the prefix.
    fn digest_by_snapshot(registry: &Registry, prefix: &Prefix) -> (usize, String) {
        let (_, records) = registry.snapshot(std::slice::from_ref(prefix)).unwrap();
        let mut h = Sha256::new();
        for (key, rec) in &records {
            let bytes = record::encode_record(rec);
            h.update((key.len() as u32).to_be_bytes());
            h.update(key.as_bytes());
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
        }
        let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        (records.len(), hex)
    }

    #[test]
    fn streamed_digest_is_the_same_function_of_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = Vec::new();
        // Neighbours that a prefix scan must not take in: the prefix handle, a longer prefix.
        for h in [
            "0.NA/88.100",
            "88.1000/x",
            "88.10/y",
            "88.100/b",
            "88.100/a",
            "88.100/A",
        ] {
            let handle = Handle::parse(h, SuffixCase::Sensitive).unwrap();
            let values = vec![HandleValue::new(1, "URL", format!("https://e.example/{h}"))];
            let rec = Record {
                handle: h.into(),
                values,
            };
            batch.push((handle, rec));
        }
        for i in 0..300 {
            let h = format!("88.100/N{i:04}");
            let handle = Handle::parse(&h, SuffixCase::Sensitive).unwrap();
            let rec = Record {
                handle: h,
                values: vec![HandleValue::new(2, "DESC", "x".repeat(i))],
            };
            batch.push((handle, rec));
        }
        registry.put_batch(&batch).unwrap();
        let prefix = Prefix::parse("88.100").unwrap();
        let streamed = digest(&registry, &prefix).unwrap();
        assert_eq!(streamed.records, 303);
        assert_eq!(
            (streamed.records, streamed.sha256.clone()),
            digest_by_snapshot(&registry, &prefix)
        );
        // Nothing was writing: exact at the registry's sequence.
        assert_eq!(streamed.seq, Some(registry.last_seq()));
        // An empty prefix: the hash of nothing.
        let empty = digest(&registry, &Prefix::parse("88.7").unwrap()).unwrap();
        assert_eq!(empty.records, 0);
        assert_eq!(
            empty.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_digest_is_exact_when_no_entry_in_between_touched_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        for h in ["88.100/A", "88.200/B", "88.100/C"] {
            let handle = Handle::parse(h, SuffixCase::Sensitive).unwrap();
            let rec = Record {
                handle: h.into(),
                values: vec![HandleValue::new(1, "URL", "x")],
            };
            registry.put_batch(&[(handle, rec)]).unwrap();
        }
        let (p100, p200) = (
            Prefix::parse("88.100").unwrap(),
            Prefix::parse("88.200").unwrap(),
        );
        assert!(
            untouched(&registry, &p100, 1, 2).unwrap(),
            "another prefix's write"
        );
        assert!(
            untouched(&registry, &p100, 3, 3).unwrap(),
            "nothing in between"
        );
        assert!(!untouched(&registry, &p100, 0, 1).unwrap());
        assert!(!untouched(&registry, &p100, 2, 3).unwrap());
        // Entries missing from the log (retention): not known to be untouched.
        registry.truncate_log_before(3).unwrap();
        assert!(!untouched(&registry, &p200, 0, 2).unwrap());
        assert!(untouched(&registry, &p200, 2, 3).unwrap());
    }
}
