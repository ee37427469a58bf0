//! A follow link's bootstrap: the followed prefixes copied from the upstream before the link
//! follows its change feed (ARCHITECTURE.md, Sync).
//!
//! Paged (issue 14), with memory bounded by one page on both ends:
//!
//! 1. **Pages.** `GET /sync/snapshot?limit=N&after=K&seq=S`: the records after the key `K`
//!    in key order. The first page names the upstream sequence `S` the bootstrap starts
//!    at; every later page must carry it. Each page is verified ([`verify_page`]) and
//!    applied in one transaction with the bootstrap's state (`S`, the page's last key):
//!    [`crate::store::Registry::apply_snapshot_page`], which also deletes local records
//!    between the keys that the upstream no longer has. A cut connection, a 503 or a restart
//!    resumes after the last applied key.
//! 2. **Catch-up and digest.** Pages are read while the upstream takes writes, so together
//!    they are the upstream at no single sequence; the last page sets the link's cursor to
//!    `S`, and the changes after `S` (which the feed still holds: the upstream answers 410
//!    otherwise, and the bootstrap starts over) bring every record up to date (a change
//!    carries the whole record, so applying one again is harmless). For each prefix the
//!    link asks `/sync/digest`, which names the sequence it is exact at, follows the feed to
//!    exactly that sequence and compares its own digest. Equal: the bootstrap is done and
//!    its state dropped. Different: it starts over. When the upstream's digest never holds
//!    still (writes under the prefix during every scan, [`VERIFY_ATTEMPTS`] times), the
//!    link goes on unverified with a warning.
//! 3. **Streaming** from the cursor, as after any bootstrap.
//!
//! An upstream without pages answers the first request with its whole snapshot (no `more`
//! field): that is loaded as before, in one transaction, without the digest step.

use std::time::Duration;

use super::{invalid, verify_snapshot, Answer, Runner, SyncError};
use crate::model::{Prefix, SuffixCase};
use crate::store::bootstrap::BootstrapState;
use crate::store::record::Record;
use crate::sync::key_under;
use crate::wire::sync::{Digest, Snapshot, SnapshotPage};

/// Largest page answer read (bytes): the upstream ends a page at about 4 MiB of stored
/// records (plus one record), which base64 and JSON make at most about twice as large.
pub const MAX_PAGE_BODY: usize = 32 << 20;

/// Digests asked of the upstream per prefix before the link goes on unverified.
pub const VERIFY_ATTEMPTS: u32 = 5;

/// Verify one page of a paged snapshot against the bootstrap's state (`after`, the last key
/// applied; `seq`, the bootstrap's sequence once known) and the page size asked (`limit`):
/// the page's sequence is the bootstrap's, it holds at most `limit` records (at least one
/// when more follow), keys strictly increase after `after` and lie under the followed
/// prefixes, and every record decodes strictly and belongs under its key.
pub fn verify_page(
    page: &SnapshotPage,
    after: Option<&str>,
    seq: Option<u64>,
    limit: usize,
    prefixes: &[Prefix],
    case: SuffixCase,
) -> Result<Vec<(String, Record)>, SyncError> {
    if let Some(seq) = seq.filter(|s| *s != page.seq) {
        return Err(invalid(format!(
            "page of sequence {} in a bootstrap from sequence {seq}",
            page.seq
        )));
    }
    if page.records.len() > limit {
        return Err(invalid(format!(
            "page of {} records, {limit} asked for",
            page.records.len()
        )));
    }
    if page.more == Some(true) && page.records.is_empty() {
        return Err(invalid("empty page with more to come"));
    }
    let mut prev = after;
    let mut out = Vec::with_capacity(page.records.len());
    for item in &page.records {
        let key = item.key.as_str();
        if prev.is_some_and(|p| key <= p) {
            return Err(invalid(format!(
                "page key {key} not after {}",
                prev.unwrap_or("")
            )));
        }
        if !key_under(key, prefixes) {
            return Err(invalid(format!(
                "page key {key} is outside the followed prefixes"
            )));
        }
        out.push((
            key.to_string(),
            super::decode_record(Some(&item.data), key, case)?,
        ));
        prev = Some(key);
    }
    Ok(out)
}

impl Runner {
    /// Bootstrap the link, or resume the bootstrap under way (`resume`): pages, then the
    /// digest check. Returns the cursor to follow from.
    pub(super) async fn bootstrap(&self, resume: Option<BootstrapState>) -> Result<u64, SyncError> {
        let mut state = resume;
        if !state.as_ref().is_some_and(|s| s.pages_done) {
            self.update(|s| s.state = "bootstrapping".into());
        }
        while !state.as_ref().is_some_and(|s| s.pages_done) {
            let after = state.as_ref().and_then(|s| s.after.clone());
            let seq = state.as_ref().map(|s| s.seq);
            let answer = self
                .link
                .get_limited::<SnapshotPage>(
                    &self.page_path(after.as_deref(), seq),
                    Some(MAX_PAGE_BODY),
                )
                .await?;
            let page = match answer {
                Answer::Ok(page) => page,
                Answer::Refused(410, _) if state.is_some() => {
                    tracing::info!(link = %self.link.name, "bootstrap starts over: the upstream's log moved past its start");
                    let name = self.link.name.clone();
                    self.blocking("restarting the bootstrap", move |reg| {
                        reg.restart_bootstrap(&name)
                    })
                    .await?;
                    state = None;
                    continue;
                }
                Answer::Refused(status, message) => {
                    return Err(SyncError::Refused {
                        what: "snapshot",
                        status,
                        message,
                    })
                }
            };
            let Some(more) = page.more else {
                if state.is_some() {
                    return Err(invalid(
                        "the upstream answered a whole snapshot in the middle of a paged bootstrap",
                    ));
                }
                return self.load_whole(page).await;
            };
            let link = &self.link;
            let records = verify_page(
                &page,
                after.as_deref(),
                seq,
                link.page,
                &link.prefixes,
                link.case,
            )?;
            let next = BootstrapState {
                seq: page.seq,
                after: records.last().map(|(k, _)| k.clone()).or(after.clone()),
                pages_done: !more,
            };
            let (prefixes, name, seq) = (link.prefixes.clone(), link.name.clone(), page.seq);
            let n = records.len() as u64;
            self.blocking("applying a snapshot page", move |reg| {
                reg.apply_snapshot_page(&prefixes, &name, seq, after.as_deref(), &records, more)
            })
            .await?;
            self.update(|s| {
                s.upstream_last_seq = s.upstream_last_seq.max(seq);
                s.applied += n;
            });
            state = Some(next);
        }
        let cursor = self.verify().await?;
        let name = self.link.name.clone();
        self.blocking("finishing the bootstrap", move |reg| {
            reg.finish_bootstrap(&name)
        })
        .await?;
        self.counted_bootstrap(cursor);
        tracing::info!(link = %self.link.name, cursor, "bootstrapped from a paged snapshot");
        Ok(cursor)
    }

    /// `/sync/snapshot?limit=N[&after=K][&seq=S]&prefix=...` (the key percent-encoded).
    fn page_path(&self, after: Option<&str>, seq: Option<u64>) -> String {
        let mut path = format!("/sync/snapshot?limit={}", self.link.page);
        if let Some(after) = after {
            let key =
                percent_encoding::utf8_percent_encode(after, percent_encoding::NON_ALPHANUMERIC);
            path.push_str(&format!("&after={key}"));
        }
        if let Some(seq) = seq {
            path.push_str(&format!("&seq={seq}"));
        }
        path + &self.link.prefix_query()
    }

    /// An upstream without pages sent its whole snapshot: load it in one transaction.
    async fn load_whole(&self, page: SnapshotPage) -> Result<u64, SyncError> {
        let snapshot = Snapshot {
            seq: page.seq,
            records: page.records,
        };
        let (seq, records) = verify_snapshot(&snapshot, &self.link.prefixes, self.link.case)?;
        let (prefixes, name) = (self.link.prefixes.clone(), self.link.name.clone());
        self.blocking("loading the snapshot", move |reg| {
            reg.load_snapshot(&prefixes, &records, &name, seq)
        })
        .await?;
        self.counted_bootstrap(seq);
        tracing::info!(link = %self.link.name, seq, "bootstrapped from snapshot");
        Ok(seq)
    }

    fn counted_bootstrap(&self, cursor: u64) {
        self.metrics
            .sync_bootstraps
            .with_label_values(&[&self.link.name])
            .inc();
        self.update(|s| {
            s.bootstraps += 1;
            s.cursor = cursor;
            s.upstream_last_seq = s.upstream_last_seq.max(cursor);
        });
    }

    /// The digest step: for each followed prefix, the upstream's digest at the sequence it
    /// names, the feed followed to exactly that sequence, and this node's digest compared.
    /// Returns the cursor reached. A mismatch starts the bootstrap over (and is an error).
    async fn verify(&self) -> Result<u64, SyncError> {
        self.update(|s| s.state = "verifying".into());
        let mut cursor = self.registry.cursor(&self.link.name)?;
        for prefix in &self.link.prefixes {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let path = format!("/sync/digest?prefix={}", prefix.as_str());
                let theirs = match self.link.get::<Digest>(&path).await? {
                    Answer::Ok(d) => d,
                    Answer::Refused(status, message) => {
                        return Err(SyncError::Refused {
                            what: "digest",
                            status,
                            message,
                        })
                    }
                };
                if let Some(at) = theirs.seq.filter(|at| *at >= cursor) {
                    cursor = self.catch_up(cursor, at).await?;
                    if cursor == at {
                        let (reg, p) = (self.registry.clone(), prefix.clone());
                        let ours =
                            tokio::task::spawn_blocking(move || crate::sync::digest(&reg, &p))
                                .await
                                .map_err(|e| SyncError::Setup(format!("digest: {e}")))??;
                        if ours.records == theirs.records && ours.sha256 == theirs.sha256 {
                            tracing::info!(link = %self.link.name, %prefix, at, records = ours.records, "bootstrap verified by digest");
                            break;
                        }
                        let name = self.link.name.clone();
                        self.blocking("restarting the bootstrap", move |reg| {
                            reg.restart_bootstrap(&name)
                        })
                        .await?;
                        return Err(invalid(format!(
                            "bootstrap of {prefix} does not match the upstream's digest at \
                             sequence {at} ({} records here, {} there): starting over",
                            ours.records, theirs.records
                        )));
                    }
                }
                if attempt >= VERIFY_ATTEMPTS {
                    tracing::warn!(link = %self.link.name, %prefix, "bootstrap not verified: the upstream's digest never held still (writes under the prefix during every scan); following the feed unverified");
                    break;
                }
                // Keep up with the feed meanwhile, then ask again.
                match self.follow_step(cursor, 500, 0).await? {
                    Some(next) => cursor = next,
                    None => return self.feed_moved_on().await,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(cursor)
    }

    /// Follow the feed from `cursor` to `target`, asking for no more entries than lead
    /// there (the upstream scans exactly as many as asked, so the cursor lands on it).
    async fn catch_up(&self, mut cursor: u64, target: u64) -> Result<u64, SyncError> {
        while cursor < target {
            match self
                .follow_step(cursor, (target - cursor).min(500), 0)
                .await?
            {
                Some(next) => cursor = next,
                None => return self.feed_moved_on().await,
            }
        }
        Ok(cursor)
    }

    /// The upstream no longer holds the changes the bootstrap needs (410): start over.
    async fn feed_moved_on(&self) -> Result<u64, SyncError> {
        let name = self.link.name.clone();
        self.blocking("restarting the bootstrap", move |reg| {
            reg.restart_bootstrap(&name)
        })
        .await?;
        Err(invalid(
            "the upstream's log moved past the bootstrap's start (raise its sync.log_retention): starting over",
        ))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    fn data(key: &str) -> String {
        let rec = Record {
            handle: key.into(),
            values: vec![],
        };
        let bytes = crate::store::record::encode_record(&rec);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn page(seq: u64, keys: &[&str], more: bool) -> SnapshotPage {
        let records: Vec<_> = keys
            .iter()
            .map(|k| json!({"key": k, "data": data(k)}))
            .collect();
        serde_json::from_value(json!({"seq": seq, "records": records, "more": more})).unwrap()
    }

    #[test]
    fn pages_are_verified_before_they_are_applied() {
        let p = vec![Prefix::parse("88.100").unwrap()];
        let c = SuffixCase::Sensitive;
        let ok = page(5, &["88.100/B", "88.100/C"], true);
        assert_eq!(
            verify_page(&ok, Some("88.100/A"), Some(5), 2, &p, c)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(verify_page(&ok, None, None, 2, &p, c).unwrap().len(), 2);
        // Another bootstrap's sequence, more than asked, keys at or before the cursor.
        assert!(verify_page(&ok, None, Some(4), 2, &p, c).is_err());
        assert!(verify_page(&ok, None, None, 1, &p, c).is_err());
        assert!(verify_page(&ok, Some("88.100/B"), None, 2, &p, c).is_err());
        for bad in [
            page(5, &["88.100/C", "88.100/B"], false),
            page(5, &["88.100/B", "88.100/B"], false),
            page(5, &["88.200/B"], false),
            page(5, &[], true),
        ] {
            assert!(verify_page(&bad, None, None, 10, &p, c).is_err(), "{bad:?}");
        }
        // A record that does not belong under its key.
        let mut forged = page(5, &["88.100/B"], false);
        forged.records[0].data = data("88.100/Z");
        assert!(verify_page(&forged, None, None, 10, &p, c).is_err());
        // The last page may be empty.
        assert!(verify_page(&page(5, &[], false), None, Some(5), 10, &p, c)
            .unwrap()
            .is_empty());
    }
}
