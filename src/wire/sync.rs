//! The replication protocol's JSON messages (the `/sync/*` answers), as serde types used by
//! both ends: the feed (`server::http::feed`, with the answers built by `sync::feed`)
//! serializes them, the follower (`sync::follower`) deserializes them. A field renamed here
//! is renamed at both ends, or the build breaks; never only one end.
//!
//! The field names and shapes are the protocol (ARCHITECTURE.md, Sync) and must not change:
//! fields are declared in the order the feed has always written them (serde_json keeps
//! insertion order in this crate), so the bytes on the wire stay what they were; the tests
//! below pin each shape. Reading is as lenient as it was: unknown fields are ignored, and the
//! fields a follower never needed (`from`, `unix_millis`, `record`) may be missing.
//!
//! Pure data, like the rest of `wire`: the record bytes travel as base64 text here; encoding
//! and checking them (`store::record`, CRC-sealed) is the job of `sync`, above `store`.

use serde::{Deserialize, Serialize};

/// `GET /sync/changes` (200): the record changes after `from`, under the asked prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// The `after` the request asked for.
    #[serde(default)]
    pub from: u64,
    /// The last sequence scanned: the follower's next cursor, even when every scanned entry
    /// was filtered out.
    pub next: u64,
    /// The upstream's newest sequence (at least `next`).
    pub last_seq: u64,
    pub changes: Vec<ChangeEntry>,
}

/// One record change of a [`ChangeBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub seq: u64,
    /// When the upstream logged it (unix milliseconds; 0 when missing).
    #[serde(default)]
    pub unix_millis: u64,
    pub action: ChangeAction,
    /// The normalized handle key.
    pub key: String,
    /// The record after the change, as REST JSON (for people reading the feed); absent for a
    /// delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordJson>,
    /// The record's canonical stored encoding (base64, CRC-sealed): what followers apply.
    /// Absent for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// What a change did to its record. Prefix homing is not replicated, so only these three
/// travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
}

/// A record in REST JSON: `{"handle": ..., "values": [...]}`, each value as `wire::json`
/// writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordJson {
    pub handle: String,
    pub values: Vec<serde_json::Value>,
}

/// `GET /sync/snapshot` (200): every record under the asked prefixes, at sequence `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub records: Vec<SnapshotRecord>,
}

/// One record of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub key: String,
    /// REST JSON of the record (not read by followers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordJson>,
    /// The canonical stored encoding (base64): what followers load.
    pub data: String,
}

/// `GET /sync/snapshot?limit=N[&after=K][&seq=S]` (200): one page of a paged snapshot, the
/// records under the asked prefixes after the key `K`, in key order (issue 14). `seq` is
/// the sequence the bootstrap started at (the first page's, echoed on every later page).
/// `more` says whether another page follows (its `after` is this page's last key); an
/// upstream that answers the whole snapshot at once (no `limit` support) sends no `more`,
/// which is how a follower tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPage {
    pub seq: u64,
    pub records: Vec<SnapshotRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

/// `GET /sync/digest?prefix=P` (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub prefix: String,
    /// Records under the prefix.
    pub records: usize,
    /// SHA-256 over them, hex (`sync::digest`).
    pub sha256: String,
    /// The sequence the digest is exact at (no record under the prefix changed while it was
    /// computed); absent when writes under the prefix kept landing, and from older nodes.
    /// Added by issue 14 (readers ignore unknown fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// `GET /sync/status` (200): the node's newest sequence and its follow links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub last_seq: u64,
    pub links: Vec<LinkStatus>,
}

/// One follow link in [`SyncStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub link: String,
    pub upstream: String,
    pub prefixes: Vec<String>,
    /// `starting`, `bootstrapping` (pages of a paged snapshot), `verifying` (catching up to
    /// and comparing the upstream's digest), `streaming` or `backoff`.
    pub state: String,
    pub cursor: u64,
    pub upstream_last_seq: u64,
    pub lag_sequences: u64,
    pub applied: u64,
    pub bootstraps: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// The last line of an online export (`GET /sync/export`, `idnode export --online`):
/// `{"export": {...}}`. Importing every line before it, in order, gives the node's records
/// as they were at `consistent_at_seq`. A file that does not end with this line is
/// incomplete. `idnode import` reads it (and prints the sequence); older builds reject it
/// as a line that is no record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportTrailer {
    /// The registry sequence the export is consistent at.
    pub consistent_at_seq: u64,
    /// Record lines from the scan of the registry.
    pub records: usize,
    /// Lines from the change log after the scan (records and `{"delete": key}` lines).
    pub changes: usize,
    /// The prefixes the node homed when the export ended (a zone made from the file needs
    /// them; the records alone do not say).
    pub homed_prefixes: Vec<String>,
}

/// The trailer line as it is written: `{"export": ExportTrailer}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportTrailerLine {
    pub export: ExportTrailer,
}

/// Every refusal of a `/sync/*` endpoint (401, 403, 410 "re-bootstrap", 503, ...): the
/// Handle response code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedError {
    #[serde(rename = "responseCode")]
    pub response_code: u32,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `typed` serializes to exactly the bytes of `was` (the `json!` the feed wrote before
    /// these types existed), and reads back to itself.
    fn same_bytes<T>(typed: &T, was: serde_json::Value)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = serde_json::to_string(typed).unwrap();
        assert_eq!(bytes, serde_json::to_string(&was).unwrap());
        let back: T = serde_json::from_str(&bytes).unwrap();
        assert_eq!(&back, typed);
    }

    fn record() -> RecordJson {
        RecordJson {
            handle: "88.100/A".into(),
            values: vec![
                json!({"index": 1, "type": "URL", "data": {"format": "string", "value": "x"}}),
            ],
        }
    }

    #[test]
    fn change_batch_keeps_its_shape() {
        let batch = ChangeBatch {
            from: 5,
            next: 7,
            last_seq: 9,
            changes: vec![
                ChangeEntry {
                    seq: 6,
                    unix_millis: 1_700_000_000_000,
                    action: ChangeAction::Update,
                    key: "88.100/A".into(),
                    record: Some(record()),
                    data: Some("AAAA".into()),
                },
                ChangeEntry {
                    seq: 7,
                    unix_millis: 1_700_000_000_001,
                    action: ChangeAction::Delete,
                    key: "88.100/B".into(),
                    record: None,
                    data: None,
                },
            ],
        };
        let mut update = json!({
            "seq": 6,
            "unix_millis": 1_700_000_000_000u64,
            "action": "update",
            "key": "88.100/A",
        });
        update["record"] = json!({"handle": "88.100/A", "values": record().values});
        update["data"] = json!("AAAA");
        let delete = json!({
            "seq": 7,
            "unix_millis": 1_700_000_000_001u64,
            "action": "delete",
            "key": "88.100/B",
        });
        same_bytes(
            &batch,
            json!({"from": 5, "next": 7, "last_seq": 9, "changes": [update, delete]}),
        );
        for (action, name) in [
            (ChangeAction::Create, "create"),
            (ChangeAction::Update, "update"),
            (ChangeAction::Delete, "delete"),
        ] {
            assert_eq!(serde_json::to_value(action).unwrap(), json!(name));
        }
    }

    #[test]
    fn change_batch_reads_what_followers_always_accepted() {
        // No `from`, `unix_millis` or `record`; unknown fields ignored.
        let batch: ChangeBatch = serde_json::from_value(json!({
            "next": 7, "last_seq": 7, "extra": true,
            "changes": [{"seq": 7, "action": "delete", "key": "88.100/B"}],
        }))
        .unwrap();
        assert_eq!(batch.from, 0);
        assert_eq!(batch.changes[0].unix_millis, 0);
        assert_eq!(batch.changes[0].data, None);
        // What a follower always refused: no `next`, an unknown action.
        assert!(
            serde_json::from_value::<ChangeBatch>(json!({"last_seq": 1, "changes": []})).is_err()
        );
        assert!(serde_json::from_value::<ChangeBatch>(json!({
            "next": 1, "last_seq": 1,
            "changes": [{"seq": 1, "action": "home", "key": "88.100/B"}],
        }))
        .is_err());
    }

    #[test]
    fn snapshot_keeps_its_shape() {
        let snapshot = Snapshot {
            seq: 3,
            records: vec![SnapshotRecord {
                key: "88.100/A".into(),
                record: Some(record()),
                data: "AAAA".into(),
            }],
        };
        same_bytes(
            &snapshot,
            json!({"seq": 3, "records": [
                {"key": "88.100/A", "record": {"handle": "88.100/A", "values": record().values},
                 "data": "AAAA"}
            ]}),
        );
    }

    #[test]
    fn snapshot_pages_and_whole_snapshots_tell_apart() {
        let page = SnapshotPage {
            seq: 3,
            records: vec![SnapshotRecord {
                key: "88.100/A".into(),
                record: None,
                data: "AAAA".into(),
            }],
            more: Some(true),
        };
        same_bytes(
            &page,
            json!({"seq": 3, "records": [{"key": "88.100/A", "data": "AAAA"}], "more": true}),
        );
        // What an upstream without pages answers reads as a page without `more`.
        let whole: SnapshotPage = serde_json::from_value(json!({"seq": 3, "records": [
            {"key": "88.100/A", "record": {"handle": "88.100/A", "values": []}, "data": "AAAA"}
        ]}))
        .unwrap();
        assert_eq!(whole.more, None);
        assert_eq!(whole.records[0].data, "AAAA");
    }

    #[test]
    fn digest_status_and_errors_keep_their_shapes() {
        same_bytes(
            &Digest {
                prefix: "88.100".into(),
                records: 2,
                sha256: "ab".into(),
                seq: None,
            },
            json!({"prefix": "88.100", "records": 2, "sha256": "ab"}),
        );
        same_bytes(
            &Digest {
                prefix: "88.100".into(),
                records: 2,
                sha256: "ab".into(),
                seq: Some(9),
            },
            json!({"prefix": "88.100", "records": 2, "sha256": "ab", "seq": 9}),
        );
        let link = LinkStatus {
            link: "https://up:8443".into(),
            upstream: "https://up:8443".into(),
            prefixes: vec!["88.100".into()],
            state: "streaming".into(),
            cursor: 4,
            upstream_last_seq: 5,
            lag_sequences: 1,
            applied: 4,
            bootstraps: 1,
            errors: 0,
            last_error: None,
        };
        same_bytes(
            &SyncStatus {
                last_seq: 8,
                links: vec![link],
            },
            json!({"last_seq": 8, "links": [{
                "link": "https://up:8443", "upstream": "https://up:8443",
                "prefixes": ["88.100"], "state": "streaming", "cursor": 4,
                "upstream_last_seq": 5, "lag_sequences": 1, "applied": 4, "bootstraps": 1,
                "errors": 0, "last_error": null,
            }]}),
        );
        same_bytes(
            &FeedError {
                response_code: 10,
                message: "re-bootstrap".into(),
            },
            json!({"responseCode": 10, "message": "re-bootstrap"}),
        );
    }
}
