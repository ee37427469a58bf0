//! The [`Engine`]: the node's state (registry and policy) and the read side of its
//! semantics: authentication of the identities clients claim, responsibility (homed, mirrored,
//! the partition), the write-target check every write starts with, prefix referrals,
//! resolution and listing. The writes are in `write`, who may do what in `authorize`.

use std::sync::Arc;

use super::{Policy, Query, Resolution, ResolveError};
use crate::auth::{Authorizer, Identity, IdentityError, IndexRule};
use crate::model::{types, AdminPermissions, Handle, HandleValue, Prefix};
use crate::store::Registry;

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(super) registry: Arc<Registry>,
    pub(super) policy: Arc<Policy>,
}

impl Engine {
    pub fn new(registry: Arc<Registry>, policy: Policy) -> Engine {
        Engine {
            registry,
            policy: Arc::new(policy),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Parse an identifier under this node's case rule.
    pub fn parse_handle(&self, text: &str) -> Result<Handle, ResolveError> {
        Handle::parse(text, self.policy.suffix_case)
            .map_err(|e| ResolveError::InvalidHandle(e.to_string()))
    }

    /// Authenticate an HS_SECKEY identity.
    pub fn authenticate_secret(
        &self,
        handle: &Handle,
        index: u32,
        secret: &[u8],
    ) -> Result<Identity, ResolveError> {
        Ok(crate::auth::authenticate_secret(
            &self.registry,
            handle,
            index,
            secret,
        )?)
    }

    /// Authenticate by the identity `claim` names (`index:handle`, the index required, `:` and
    /// `%` possibly percent-encoded) and the HS_PUBKEY value there that its key matches.
    pub fn authenticate_public_key(
        &self,
        claim: &crate::auth::CertClaim,
    ) -> Result<Identity, ResolveError> {
        let (handle, index) = self.claimed_identity(&claim.identity, "certificate subject")?;
        Ok(crate::auth::authenticate_public_key(
            &self.registry,
            &handle,
            index,
            claim,
        )?)
    }

    /// Authenticate a REST session answer for the identity `id` (`index:handle`).
    pub fn authenticate_session_answer(
        &self,
        id: &str,
        answer: &crate::auth::SessionAnswer<'_>,
    ) -> Result<Identity, ResolveError> {
        let (handle, index) = self.claimed_identity(id, "session id")?;
        Ok(crate::auth::authenticate_session_answer(
            &self.registry,
            &handle,
            index,
            answer,
        )?)
    }

    /// Check a native challenge answer (opCode 200, or a peer's VERIFY_CHALLENGE) against the
    /// keys of the identity it names ([`crate::auth::challenges::authenticate_answer`]).
    /// `Ok(None)`: it proves no identity; an identity handle that does not parse is RC 403,
    /// an authentication type other than HS_SECKEY / HS_PUBKEY RC 406.
    pub fn authenticate_challenge_answer(
        &self,
        proof: &crate::auth::challenges::Proof<'_>,
    ) -> Result<Option<Identity>, ResolveError> {
        use crate::auth::challenges::{authenticate_answer, AnswerError};
        let handle = Handle::parse_lenient(proof.identity_handle, self.policy.suffix_case)
            .map_err(|e| ResolveError::AuthenticationFailed(e.to_string()))?;
        authenticate_answer(&self.registry, &handle, proof).map_err(|e| match e {
            AnswerError::Store(s) => s.into(),
            other => ResolveError::BadChallengeAnswer(other.to_string()),
        })
    }

    /// `index:handle` named by a client (percent-encoding allowed, a positive index required).
    fn claimed_identity(&self, text: &str, what: &str) -> Result<(Handle, u32), ResolveError> {
        let text = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
        let refused = ResolveError::AuthenticationFailed;
        match Identity::parse(&text, self.policy.suffix_case, IndexRule::Required) {
            Ok(identity) => Ok((identity.handle, identity.index)),
            Err(IdentityError::Handle { source, .. }) => Err(refused(source.to_string())),
            Err(_) => Err(refused(format!("{what} names {text:?}, not index:handle"))),
        }
    }

    pub(super) fn authorizer(&self) -> Authorizer<'_> {
        Authorizer {
            registry: &self.registry,
            case: self.policy.suffix_case,
        }
    }

    /// Is this node responsible for `handle` (homed, or mirrored read-only)?
    pub fn is_responsible(&self, handle: &Handle) -> Result<bool, ResolveError> {
        if self.mirror_of(handle).is_some() {
            return Ok(true);
        }
        if let Some(described) = handle.described_prefix() {
            for p in described.ancestry() {
                if self.registry.is_homed(&p)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        Ok(self.registry.is_homed(&handle.prefix())?)
    }

    /// The upstream `handle` is mirrored from, when this node holds it as a read-only mirror.
    pub fn mirror_of(&self, handle: &Handle) -> Option<&str> {
        let prefix = handle.prefix();
        self.policy
            .mirrored
            .iter()
            .find(|(p, _)| *p == prefix)
            .map(|(_, up)| up.as_str())
    }

    /// Whether `handle` may be written here at all, before any credential is checked: this
    /// node must be responsible for it (RC 301) and not hold it as a read-only mirror (RC 7,
    /// naming the primary). Every write runs it; front ends run it first so a client is
    /// sent on before being challenged for credentials this node may not even hold.
    pub fn check_write_target(&self, handle: &Handle) -> Result<(), ResolveError> {
        self.require_responsible(handle)?;
        self.require_writable(handle)
    }

    /// Refuse writes to mirrored prefixes: RC 7 (server backup), naming the primary.
    fn require_writable(&self, handle: &Handle) -> Result<(), ResolveError> {
        match self.mirror_of(handle) {
            Some(up) => Err(ResolveError::Mirror {
                upstream: up.to_string(),
            }),
            None => Ok(()),
        }
    }

    fn require_responsible(&self, handle: &Handle) -> Result<(), ResolveError> {
        if !self.is_responsible(handle)? {
            return Err(ResolveError::NotResponsible);
        }
        if let Some(p) = &self.policy.partition {
            if p.server_of(handle) != p.index {
                return Err(ResolveError::WrongPartition);
            }
        }
        Ok(())
    }

    /// Does `handle` belong to this server's partition (always, without a partition)?
    pub fn in_partition(&self, handle: &Handle) -> bool {
        self.policy
            .partition
            .is_none_or(|p| p.server_of(handle) == p.index)
    }

    /// The 303 referral for a prefix handle `0.NA/X` this node does not store: the public
    /// HS_SITE.PREFIX / HS_SERV.PREFIX values of the nearest ancestor prefix handle that has
    /// any (handle-protocol.md §6, server side).
    pub fn prefix_referral(
        &self,
        handle: &Handle,
    ) -> Result<Option<Vec<HandleValue>>, ResolveError> {
        let Some(described) = handle.described_prefix() else {
            return Ok(None);
        };
        for ancestor in described.ancestry().skip(1) {
            let Some(rec) = self.registry.get(&ancestor.na_handle())? else {
                continue;
            };
            let values: Vec<HandleValue> = rec
                .values
                .into_iter()
                .filter(|v| {
                    v.is_public()
                        && (v.is_type(types::HS_SITE_PREFIX) || v.is_type(types::HS_SERV_PREFIX))
                })
                .collect();
            if !values.is_empty() {
                return Ok(Some(values));
            }
        }
        Ok(None)
    }

    /// Resolve a handle.
    pub fn resolve(
        &self,
        q: &Query,
        identity: Option<&Identity>,
    ) -> Result<Resolution, ResolveError> {
        self.require_responsible(&q.handle)?;
        let Some(record) = self.registry.get(&q.handle)? else {
            if q.refer {
                if let Some(values) = self.prefix_referral(&q.handle)? {
                    return Err(ResolveError::Referral { values });
                }
            }
            return Err(ResolveError::NotFound);
        };
        // Moved out of the record, not cloned: the common answer is all of its values.
        let (selected, others): (Vec<HandleValue>, Vec<HandleValue>) =
            record.values.into_iter().partition(|v| {
                (q.indexes.is_empty() && q.types.is_empty())
                    || q.indexes.contains(&v.index)
                    || q.types.iter().any(|t| v.matches_type_query(t))
            });
        // `is_public`: PUBLIC_READ and not a secret. A secret is never answered to an
        // anonymous reader, whatever its stored permissions (records written before secrets
        // defaulted to admin-only are covered too).
        let values = if q.public_only {
            selected
                .into_iter()
                .filter(HandleValue::is_public)
                .collect()
        } else if selected.iter().all(HandleValue::is_public) {
            selected
        } else {
            // Non-public values were asked for: only an administrator with READ_VALUE, and only
            // values that allow admin reads.
            let Some(identity) = identity else {
                return Err(ResolveError::NonPublicNeedsAuthentication);
            };
            let mut admins: Vec<HandleValue> = selected
                .iter()
                .chain(&others)
                .filter(|v| v.is_type(types::HS_ADMIN))
                .cloned()
                .collect();
            admins.extend(self.governing_admin_values(&q.handle)?);
            self.check_grants(
                identity,
                &admins,
                AdminPermissions::READ_VALUE,
                &format!("read {}", q.handle),
            )
            .map_err(|f| ResolveError::Denied(f.to_string()))?;
            // ADMIN_READ clear: not even administrators read it (server admins included).
            selected
                .into_iter()
                .filter(|v| v.is_public() || v.permissions.admin_read())
                .collect()
        };
        if values.is_empty() {
            return Err(ResolveError::NoValues);
        }
        Ok(Resolution { values })
    }

    /// List the handles under a homed prefix; needs LIST_HANDLES on `0.NA/<prefix>`.
    pub fn list_handles(
        &self,
        identity: &Identity,
        prefix: &Prefix,
        page: Option<(usize, usize)>,
    ) -> Result<(usize, Vec<String>), ResolveError> {
        if !self.registry.is_homed(prefix)? {
            return Err(ResolveError::NotResponsible);
        }
        let admins = self
            .registry
            .get(&prefix.na_handle())?
            .map(|r| r.values)
            .unwrap_or_default();
        self.check_grants(
            identity,
            &admins,
            AdminPermissions::LIST_HANDLES,
            &format!("list handles under {prefix}"),
        )?;
        Ok(self.registry.list_handles(prefix, page)?)
    }
}
