//! Paged snapshots, the registry's side of a streaming follower bootstrap (ARCHITECTURE.md,
//! Sync). On the upstream, [`Registry::snapshot_page`] reads the records under some prefixes
//! in key order after a key cursor, a bounded page at a time, without the writer lock. On a
//! follower, [`Registry::apply_snapshot_page`] applies one page in one sled transaction
//! together with the bootstrap's state (`meta/bootstrap/<link>`: the sequence the bootstrap
//! started at and the last key applied), so a cut connection or a restart resumes after the
//! last applied key instead of from the start.
//!
//! Pages are not a point-in-time view: each reflects the upstream at some sequence at or
//! after the one the bootstrap started at. The follower then follows the change feed from
//! that starting sequence, which brings every change made during the bootstrap (applying a
//! change again is idempotent: it carries the whole record), and verifies the prefix by
//! digest (`sync::follower`). Memory on both ends is one page.
//!
//! It sits in `store` because a page and its state are one sled transaction; deciding
//! whether a page may be applied (its keys, its sequence, its records) is
//! `sync::follower`'s job.

use std::ops::Bound;

use super::replicate::{cursor_write, MetaWrite, ReplicatedEntry};
use super::{be_u64, decode_stored, encode_bounded, lock, Action, Record, Registry, StoreError};
use crate::model::codec::DecodeError;
use crate::model::Prefix;

/// Most records one page holds, whatever a follower asks for.
pub const MAX_PAGE_RECORDS: usize = 10_000;

/// Bytes (keys and stored records) after which a page ends; a page holds at least one
/// record, so it is at most this plus one record ([`super::MAX_RECORD_BYTES`]).
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// Local records deleted per transaction when the range of one page holds many that the
/// upstream no longer has (bounds the memory of a page's deletions).
const DELETE_CHUNK: usize = 10_000;

/// A paged bootstrap in progress on a follower (`meta/bootstrap/<link>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapState {
    /// The upstream sequence the bootstrap started at: every page is tagged with it, and
    /// the change feed is followed from it once the pages are in.
    pub seq: u64,
    /// The last key applied: the next page starts after it (`None`: no record yet).
    pub after: Option<String>,
    /// Every page is applied (the link's cursor is `seq`); the digest check remains.
    pub pages_done: bool,
}

impl BootstrapState {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.seq.to_be_bytes().to_vec();
        out.push(u8::from(self.pages_done));
        out.extend_from_slice(self.after.as_deref().unwrap_or("").as_bytes());
        out
    }

    fn decode(bytes: &[u8], key: &str) -> Result<BootstrapState, StoreError> {
        let bad = |reason: &str| StoreError::Corrupt {
            key: key.to_string(),
            source: DecodeError::Invalid {
                what: "bootstrap state",
                reason: reason.to_string(),
            },
        };
        if bytes.len() < 9 {
            return Err(bad("shorter than 9 bytes"));
        }
        let seq = be_u64(&bytes[..8], key)?;
        let pages_done = match bytes[8] {
            0 => false,
            1 => true,
            _ => return Err(bad("unknown flags")),
        };
        let after = std::str::from_utf8(&bytes[9..]).map_err(|_| bad("key is not UTF-8"))?;
        Ok(BootstrapState {
            seq,
            after: (!after.is_empty()).then(|| after.to_string()),
            pages_done,
        })
    }
}

fn state_key(link: &str) -> String {
    format!("bootstrap/{link}")
}

fn out_of_order(key: &str) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        source: DecodeError::Invalid {
            what: "snapshot page",
            reason: "keys not in increasing order after the cursor".into(),
        },
    }
}

impl Registry {
    /// The newest committed sequence, read under the writer lock: no write is half-way
    /// (committed to sled but not yet counted), so every record a scan saw before this call
    /// reflects a sequence up to the one returned. A consistent scan's end mark.
    pub fn settled_seq(&self) -> u64 {
        *lock(&self.writer)
    }

    /// The records under `prefixes` (`P/...`) after the key `after` (all of them when
    /// `None`), in key order, read lazily from sled's ranges; not a point-in-time view.
    fn records_after<'a>(
        &'a self,
        prefixes: &[Prefix],
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> + 'a {
        let mut scans: Vec<String> = prefixes.iter().map(|p| format!("{p}/")).collect();
        scans.sort();
        scans.dedup();
        let after = after.map(|a| a.as_bytes().to_vec());
        scans.into_iter().flat_map(move |scan| {
            let start = match &after {
                Some(a) if a.as_slice() >= scan.as_bytes() => Bound::Excluded(a.clone()),
                _ => Bound::Included(scan.as_bytes().to_vec()),
            };
            self.records
                .range::<Vec<u8>, _>((start, Bound::Unbounded))
                .take_while(move |item| match item {
                    Ok((k, _)) => k.starts_with(scan.as_bytes()),
                    Err(_) => true,
                })
                .map(|item| item.map_err(StoreError::from))
        })
    }

    /// One page of a paged snapshot: the records under `prefixes` after the key `after`, in
    /// key order, each checked to decode (corruption is reported here, not sent on), as
    /// (key, stored bytes); at most `max_records` ([`MAX_PAGE_RECORDS`] at most) and ending
    /// once `max_bytes` ([`MAX_PAGE_BYTES`] at most) are reached. `true` when more records
    /// follow. Reads no lock: writers are not held up.
    #[allow(clippy::type_complexity)]
    pub fn snapshot_page(
        &self,
        prefixes: &[Prefix],
        after: Option<&str>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(String, Vec<u8>)>, bool), StoreError> {
        let max_records = max_records.clamp(1, MAX_PAGE_RECORDS);
        let max_bytes = max_bytes.clamp(1, MAX_PAGE_BYTES);
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut scan = self.records_after(prefixes, after);
        for item in scan.by_ref() {
            let (k, v) = item?;
            let (key, _) = decode_stored(&k, &v)?;
            bytes += key.len() + v.len();
            records.push((key, v.to_vec()));
            if records.len() >= max_records || bytes >= max_bytes {
                break;
            }
        }
        let more = match scan.next() {
            Some(item) => item.map(|_| true)?,
            None => false,
        };
        Ok((records, more))
    }

    /// The paged bootstrap the follow link `link` has under way, if any.
    pub fn bootstrap_state(&self, link: &str) -> Result<Option<BootstrapState>, StoreError> {
        let key = state_key(link);
        match self.meta.get(key.as_bytes())? {
            Some(v) => BootstrapState::decode(&v, &key).map(Some),
            None => Ok(None),
        }
    }

    /// Apply one page of a paged snapshot (the upstream at sequence `seq` or later) for the
    /// follow link `link`: the followed `prefixes`' records in the page's key range (after
    /// `after`, up to the page's last key, or to the end with the last page, `more` false)
    /// become the page's: its records are written (unchanged ones are neither rewritten nor
    /// logged) and local records in that range that the page does not hold are deleted.
    /// The records and the bootstrap's state (`seq`, the page's last key, and with the last
    /// page "pages done" and the link's cursor set to `seq`) are one transaction, durable
    /// on return; deletions beyond [`DELETE_CHUNK`] go first in their own transactions
    /// (deleting what the upstream no longer has is safe to do early and to do again).
    ///
    /// `records` must be in increasing key order after `after` (checked) and under the
    /// prefixes (the caller's check). Every change goes to this node's own log.
    pub fn apply_snapshot_page(
        &self,
        prefixes: &[Prefix],
        link: &str,
        seq: u64,
        after: Option<&str>,
        records: &[(String, Record)],
        more: bool,
    ) -> Result<Option<u64>, StoreError> {
        let mut prev = after;
        for (key, _) in records {
            if prev.is_some_and(|p| key.as_str() <= p) {
                return Err(out_of_order(key));
            }
            prev = Some(key);
        }
        let last = records.last().map(|(k, _)| k.as_str());
        let upper = match (more, last) {
            (true, Some(last)) => Some(last),
            (true, None) => return Err(out_of_order("(an empty page that is not the last)")),
            (false, _) => None,
        };
        // Local keys in the page's range that the page does not hold: a merge of two sorted
        // sequences, so nothing but the page is held in memory.
        let mut page_keys = records.iter().map(|(k, _)| k.as_bytes()).peekable();
        let mut entries: Vec<ReplicatedEntry> = Vec::new();
        for item in self.records_after(prefixes, after) {
            let (k, _) = item?;
            if upper.is_some_and(|u| k.as_ref() > u.as_bytes()) {
                break;
            }
            while page_keys.peek().is_some_and(|p| *p < k.as_ref()) {
                page_keys.next();
            }
            if page_keys.peek().is_some_and(|p| *p == k.as_ref()) {
                continue;
            }
            let key = String::from_utf8_lossy(&k).into_owned();
            entries.push((key, Action::Delete, None));
            if entries.len() >= DELETE_CHUNK {
                self.replicate_commit(&entries, true, &[])?;
                entries.clear();
            }
        }
        for (key, rec) in records {
            let bytes = encode_bounded(rec)?;
            entries.push((key.clone(), Action::Update, Some((bytes, rec.clone()))));
        }
        let state = BootstrapState {
            seq,
            after: last.or(after).map(str::to_string),
            pages_done: !more,
        };
        let mut meta: Vec<MetaWrite> = vec![(state_key(link), Some(state.encode()))];
        if !more {
            meta.push(cursor_write(link, seq));
        }
        self.replicate_commit(&entries, true, &meta)
    }

    /// The link's bootstrap is verified: drop its state (the link follows from its cursor).
    pub fn finish_bootstrap(&self, link: &str) -> Result<(), StoreError> {
        self.replicate_commit(&[], false, &[(state_key(link), None)])
            .map(|_| ())
    }

    /// Start the link's bootstrap over (the upstream can no longer serve the changes since
    /// its starting sequence, or the digest did not match): no state and cursor 0, which
    /// makes the link bootstrap from the first key. Records stay until pages replace them.
    pub fn restart_bootstrap(&self, link: &str) -> Result<(), StoreError> {
        self.replicate_commit(
            &[],
            false,
            &[(state_key(link), None), cursor_write(link, 0)],
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Handle, HandleValue, SuffixCase};
    use crate::store::StoreOptions;

    fn rec(h: &str, v: &str) -> Record {
        Record {
            handle: h.into(),
            values: vec![HandleValue::new(1, "URL", v)],
        }
    }

    fn put(reg: &Registry, handles: &[&str], v: &str) {
        let batch: Vec<_> = handles
            .iter()
            .map(|h| (Handle::parse(h, SuffixCase::Sensitive).unwrap(), rec(h, v)))
            .collect();
        reg.put_batch(&batch).unwrap();
    }

    fn keys_under(reg: &Registry, p: &Prefix) -> Vec<String> {
        reg.records_under(p).map(|r| r.unwrap().0).collect()
    }

    #[test]
    fn pages_walk_every_prefix_in_key_order_within_their_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        put(
            &reg,
            &[
                "0.NA/88.100",
                "88.1000/x",
                "88.100/b",
                "88.100/a",
                "88.200/c",
                "88.300/not-asked",
            ],
            "v",
        );
        let prefixes = [
            Prefix::parse("88.200").unwrap(),
            Prefix::parse("88.100").unwrap(),
        ];
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let (page, more) = reg
                .snapshot_page(&prefixes, after.as_deref(), 2, 1 << 20)
                .unwrap();
            assert!(page.len() <= 2);
            seen.extend(page.iter().map(|(k, _)| k.clone()));
            after = page.last().map(|(k, _)| k.clone());
            if !more {
                break;
            }
        }
        assert_eq!(seen, ["88.100/a", "88.100/b", "88.200/c"]);
        // The byte bound ends a page early, but never before its first record.
        let (page, more) = reg.snapshot_page(&prefixes, None, 100, 1).unwrap();
        assert_eq!((page.len(), more), (1, true));
        // Counts above the cap are cut to it.
        let (page, _) = reg
            .snapshot_page(&prefixes, None, usize::MAX, usize::MAX)
            .unwrap();
        assert_eq!(page.len(), 3);
    }

    #[test]
    fn applied_pages_replace_their_range_and_keep_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        let p = Prefix::parse("88.100").unwrap();
        // Local leftovers: A (kept, changed), B (gone upstream), D (kept), Z (gone, past the end).
        put(
            &reg,
            &["88.100/A", "88.100/B", "88.100/D", "88.100/Z", "88.200/X"],
            "old",
        );
        let link = "http://up";
        let page1 = [
            ("88.100/A".to_string(), rec("88.100/A", "new")),
            ("88.100/C".to_string(), rec("88.100/C", "new")),
        ];
        reg.apply_snapshot_page(std::slice::from_ref(&p), link, 7, None, &page1, true)
            .unwrap();
        assert_eq!(
            keys_under(&reg, &p),
            ["88.100/A", "88.100/C", "88.100/D", "88.100/Z"]
        );
        let state = reg.bootstrap_state(link).unwrap().unwrap();
        assert_eq!(state.seq, 7);
        assert_eq!(state.after.as_deref(), Some("88.100/C"));
        assert!(!state.pages_done);
        assert_eq!(reg.cursor(link).unwrap(), 0);
        // Applying the same page again (a resume) changes nothing and logs nothing.
        let seq = reg.last_seq();
        let again = reg
            .apply_snapshot_page(std::slice::from_ref(&p), link, 7, None, &page1, true)
            .unwrap();
        assert_eq!((again, reg.last_seq()), (None, seq));
        // Out of order or not after the cursor: refused, nothing written.
        let bad = [("88.100/B".to_string(), rec("88.100/B", "x"))];
        assert!(reg
            .apply_snapshot_page(
                std::slice::from_ref(&p),
                link,
                7,
                Some("88.100/C"),
                &bad,
                true
            )
            .is_err());
        // The last page: D kept, Z deleted, the cursor set to the bootstrap's sequence.
        let page2 = [("88.100/D".to_string(), rec("88.100/D", "old"))];
        reg.apply_snapshot_page(
            std::slice::from_ref(&p),
            link,
            7,
            Some("88.100/C"),
            &page2,
            false,
        )
        .unwrap();
        assert_eq!(keys_under(&reg, &p), ["88.100/A", "88.100/C", "88.100/D"]);
        assert!(
            reg.get_key("88.200/X").unwrap().is_some(),
            "other prefixes untouched"
        );
        let state = reg.bootstrap_state(link).unwrap().unwrap();
        assert!(state.pages_done);
        assert_eq!(reg.cursor(link).unwrap(), 7);
        // Survives a restart; finishing drops it; restarting zeroes the cursor.
        drop(reg);
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(reg.bootstrap_state(link).unwrap(), Some(state));
        reg.finish_bootstrap(link).unwrap();
        assert_eq!(reg.bootstrap_state(link).unwrap(), None);
        assert_eq!(reg.cursor(link).unwrap(), 7);
        reg.restart_bootstrap(link).unwrap();
        assert_eq!(reg.cursor(link).unwrap(), 0);
    }

    #[test]
    fn many_deletions_in_one_range_go_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
        let p = Prefix::parse("88.100").unwrap();
        let names: Vec<String> = (0..DELETE_CHUNK + 5)
            .map(|i| format!("88.100/N{i:06}"))
            .collect();
        let handles: Vec<&str> = names.iter().map(String::as_str).collect();
        put(&reg, &handles, "gone");
        reg.apply_snapshot_page(std::slice::from_ref(&p), "l", 3, None, &[], false)
            .unwrap();
        assert!(keys_under(&reg, &p).is_empty());
        assert_eq!(reg.cursor("l").unwrap(), 3);
    }

    #[test]
    fn state_decoding_is_strict() {
        let s = BootstrapState {
            seq: 9,
            after: Some("88.100/A".into()),
            pages_done: false,
        };
        assert_eq!(BootstrapState::decode(&s.encode(), "k").unwrap(), s);
        let none = BootstrapState {
            after: None,
            pages_done: true,
            ..s
        };
        assert_eq!(BootstrapState::decode(&none.encode(), "k").unwrap(), none);
        assert!(BootstrapState::decode(&[0; 8], "k").is_err());
        let mut bad = none.encode();
        bad[8] = 2;
        assert!(BootstrapState::decode(&bad, "k").is_err());
    }
}
