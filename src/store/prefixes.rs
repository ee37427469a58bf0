//! The `prefixes` tree: the prefixes this node is home for (normalized prefix → u64 unix
//! seconds when it was homed). Homing and unhoming are written like a record change: one
//! transaction with a `HomePrefix` / `UnhomePrefix` change-log entry and `last_seq`, durable
//! when the call returns. Records under a prefix are untouched by either.

use sled::transaction::{ConflictableTransactionError, Transactional};

use super::META_LAST_SEQ;
use super::{lock, now_unix_millis, record, transacted, Action, Change, Registry, StoreError};
use crate::model::codec::DecodeError;
use crate::model::Prefix;

impl Registry {
    /// Home a prefix: this node answers for identifiers under it. Logged and durable.
    pub fn home_prefix(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        self.set_prefix(prefix, true)
    }

    /// Stop homing a prefix. Its records stay. Logged and durable.
    pub fn unhome_prefix(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        self.set_prefix(prefix, false)
    }

    fn set_prefix(&self, prefix: &Prefix, home: bool) -> Result<bool, StoreError> {
        let last_seq = lock(&self.writer);
        let key = prefix.as_str().as_bytes();
        if self.prefixes.contains_key(key)? == home {
            return Ok(false);
        }
        let seq = *last_seq + 1;
        let now = now_unix_millis();
        let change = record::encode_change(&Change {
            seq,
            unix_millis: now,
            action: if home {
                Action::HomePrefix
            } else {
                Action::UnhomePrefix
            },
            key: prefix.to_string(),
            record: None,
        });
        let result = (&self.prefixes, &self.log, &self.meta).transaction(|(p, log, meta)| {
            if home {
                p.insert(key, &(now / 1000).to_be_bytes())?;
            } else {
                p.remove(key)?;
            }
            log.insert(&seq.to_be_bytes(), change.as_slice())?;
            meta.insert(META_LAST_SEQ, &seq.to_be_bytes())?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        transacted(result)?;
        {
            let mut homed = crate::lock::write(&self.homed);
            if home {
                homed.insert(prefix.as_str().into());
            } else {
                homed.remove(prefix.as_str());
            }
        }
        // Homing changes answers (301, referrals) for every handle under the prefix.
        self.stamps.structure_changed();
        self.committed(last_seq, seq);
        self.make_durable(seq)?;
        Ok(true)
    }

    /// The homed prefixes, sorted.
    pub fn homed_prefixes(&self) -> Result<Vec<Prefix>, StoreError> {
        let mut out = Vec::new();
        for item in self.prefixes.iter() {
            let (k, _) = item?;
            let text = String::from_utf8_lossy(&k);
            let prefix = Prefix::parse(&text).map_err(|e| StoreError::Corrupt {
                key: text.to_string(),
                source: DecodeError::Invalid {
                    what: "homed prefix",
                    reason: e.to_string(),
                },
            })?;
            out.push(prefix);
        }
        Ok(out)
    }

    /// Whether `prefix` is homed (from memory: no sled read).
    pub fn is_homed(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        Ok(crate::lock::read(&self.homed).contains(prefix.as_str()))
    }
}
