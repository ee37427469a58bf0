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

use std::collections::HashSet;
use std::sync::Arc;

pub mod cache;
pub mod import;
pub mod recursion;
pub mod resolver;
pub mod site;

pub use resolver::{Answer, Origin, Resolver, Route};

use crate::auth::{admin_value_indexes, AuthError, Authorizer, Identity, IdentityError, IndexRule};
use crate::model::{
    types, validate_values, AdminPermissions, Handle, HandleValue, Prefix, ResponseCode,
    SuffixCase, ValueError,
};
use crate::store::{Mutation, Record, Registry, StoreError};

/// A failed request: the response code every front end maps to its own status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ResponseCode,
    pub message: String,
    /// For 303 prefix referrals: the delegating ancestor's HS_SITE.PREFIX / HS_SERV.PREFIX
    /// values (empty otherwise).
    pub referral: Vec<HandleValue>,
}

impl Failure {
    pub fn new(code: ResponseCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            referral: Vec::new(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.code())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        tracing::error!(error = %e, "storage failure");
        Failure::new(ResponseCode::Error, format!("storage failure: {e}"))
    }
}

impl From<ValueError> for Failure {
    fn from(e: ValueError) -> Failure {
        Failure::new(ResponseCode::InvalidValue, e.to_string())
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Failure {
        match e {
            AuthError::Store(s) => s.into(),
            other => Failure::new(ResponseCode::AuthenticationFailed, other.to_string()),
        }
    }
}

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

/// How a create treats an existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with 101 if the handle exists.
    No,
    /// Replace the whole record.
    Yes,
}

/// What a successful write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Something new was created (a record, or for add: no value was replaced). The REST API
    /// answers 201 when set, 200 otherwise.
    pub created: bool,
    /// Change-log sequence, if anything changed.
    pub seq: Option<u64>,
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    registry: Arc<Registry>,
    policy: Arc<Policy>,
}

/// Admin-permission bits needed to turn `old` values into `new` values. `admin` holds the
/// indexes that are admin values in the old or the new state ([`admin_value_indexes`] of
/// both): adding, modifying or removing one needs ADD_ADMIN / MODIFY_ADMIN / REMOVE_ADMIN.
fn bits_for_change(old: &[HandleValue], new: &[HandleValue], admin: &HashSet<u32>) -> u16 {
    let mut bits = 0u16;
    let is_admin = |v: &HandleValue| admin.contains(&v.index);
    for n in new {
        match old.iter().find(|o| o.index == n.index) {
            None => {
                bits |= if is_admin(n) {
                    AdminPermissions::ADD_ADMIN
                } else {
                    AdminPermissions::ADD_VALUE
                }
            }
            Some(o) if !same_content(o, n) => {
                bits |= if is_admin(o) || is_admin(n) {
                    AdminPermissions::MODIFY_ADMIN
                } else {
                    AdminPermissions::MODIFY_VALUE
                }
            }
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.index == o.index) {
            bits |= if is_admin(o) {
                AdminPermissions::REMOVE_ADMIN
            } else {
                AdminPermissions::REMOVE_VALUE
            };
        }
    }
    bits
}

/// The HS_ADMIN bits an administrator must hold for a prefix handle to count as administered:
/// enough to add and repair admin values.
const KEEPER_BITS: u16 = AdminPermissions::ADD_ADMIN | AdminPermissions::MODIFY_ADMIN;

/// Equal apart from the server-stamped timestamp.
fn same_content(a: &HandleValue, b: &HandleValue) -> bool {
    a.type_name == b.type_name
        && a.data == b.data
        && a.ttl == b.ttl
        && a.permissions == b.permissions
        && a.references == b.references
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
    pub fn parse_handle(&self, text: &str) -> Result<Handle, Failure> {
        Handle::parse(text, self.policy.suffix_case)
            .map_err(|e| Failure::new(ResponseCode::InvalidHandle, e.to_string()))
    }

    /// Authenticate an HS_SECKEY identity.
    pub fn authenticate_secret(
        &self,
        handle: &Handle,
        index: u32,
        secret: &[u8],
    ) -> Result<Identity, Failure> {
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
    ) -> Result<Identity, Failure> {
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
    ) -> Result<Identity, Failure> {
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
    ) -> Result<Option<Identity>, Failure> {
        use crate::auth::challenges::{authenticate_answer, AnswerError};
        let handle = Handle::parse_lenient(proof.identity_handle, self.policy.suffix_case)
            .map_err(|e| Failure::new(ResponseCode::AuthenticationFailed, e.to_string()))?;
        authenticate_answer(&self.registry, &handle, proof).map_err(|e| match e {
            AnswerError::Store(s) => s.into(),
            other => Failure::new(ResponseCode::AuthenticationError, other.to_string()),
        })
    }

    /// `index:handle` named by a client (percent-encoding allowed, a positive index required).
    fn claimed_identity(&self, text: &str, what: &str) -> Result<(Handle, u32), Failure> {
        let text = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
        let refused = |why: String| Failure::new(ResponseCode::AuthenticationFailed, why);
        match Identity::parse(&text, self.policy.suffix_case, IndexRule::Required) {
            Ok(identity) => Ok((identity.handle, identity.index)),
            Err(IdentityError::Handle { source, .. }) => Err(refused(source.to_string())),
            Err(_) => Err(refused(format!("{what} names {text:?}, not index:handle"))),
        }
    }

    fn authorizer(&self) -> Authorizer<'_> {
        Authorizer {
            registry: &self.registry,
            case: self.policy.suffix_case,
        }
    }

    /// Is this node responsible for `handle` (homed, or mirrored read-only)?
    pub fn is_responsible(&self, handle: &Handle) -> Result<bool, Failure> {
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
    pub fn check_write_target(&self, handle: &Handle) -> Result<(), Failure> {
        self.require_responsible(handle)?;
        self.require_writable(handle)
    }

    /// Refuse writes to mirrored prefixes: RC 7 (server backup), naming the primary.
    fn require_writable(&self, handle: &Handle) -> Result<(), Failure> {
        match self.mirror_of(handle) {
            Some(up) => Err(Failure::new(
                ResponseCode::ServerBackup,
                format!("read-only mirror of {up}"),
            )),
            None => Ok(()),
        }
    }

    fn require_responsible(&self, handle: &Handle) -> Result<(), Failure> {
        if !self.is_responsible(handle)? {
            return Err(Failure::new(
                ResponseCode::ServerNotResponsible,
                "That prefix doesn't live here",
            ));
        }
        if let Some(p) = &self.policy.partition {
            if p.server_of(handle) != p.index {
                return Err(Failure::new(
                    ResponseCode::ServerNotResponsible,
                    "Request was hashed incorrectly",
                ));
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
    pub fn prefix_referral(&self, handle: &Handle) -> Result<Option<Vec<HandleValue>>, Failure> {
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

    fn is_server_admin(&self, identity: &Identity) -> bool {
        self.policy.server_admins.iter().any(|a| a == identity)
    }

    /// HS_ADMIN values of the prefix handles that govern changes to `handle` (besides its own).
    fn governing_admin_values(&self, handle: &Handle) -> Result<Vec<HandleValue>, Failure> {
        let mut out = Vec::new();
        if !self.policy.allow_prefix_admins {
            return Ok(out);
        }
        let prefixes: Vec<Prefix> = match handle.described_prefix() {
            // 0.NA/X: the admins of the prefixes above X manage its delegation.
            Some(described) => described.ancestry().skip(1).collect(),
            None => vec![handle.prefix()],
        };
        for p in prefixes {
            if let Some(rec) = self.registry.get(&p.na_handle())? {
                out.extend(
                    rec.values
                        .into_iter()
                        .filter(|v| v.is_type(types::HS_ADMIN)),
                );
            }
        }
        Ok(out)
    }

    fn check_grants(
        &self,
        identity: &Identity,
        admin_values: &[HandleValue],
        bits: u16,
        what: &str,
    ) -> Result<(), Failure> {
        if bits == 0 || self.is_server_admin(identity) {
            return Ok(());
        }
        if self.authorizer().grants(admin_values, bits, identity)? {
            Ok(())
        } else {
            Err(Failure::new(
                ResponseCode::InvalidAdmin,
                format!("{identity} is not an administrator allowed to {what}"),
            ))
        }
    }

    /// Check that `identity` may create `handle`.
    fn authorize_create(&self, identity: &Identity, handle: &Handle) -> Result<(), Failure> {
        if self.is_server_admin(identity) {
            return Ok(());
        }
        let (admins, bits) = match handle.described_prefix() {
            Some(described) => {
                let mut admins = Vec::new();
                for p in described.ancestry().skip(1) {
                    if let Some(rec) = self.registry.get(&p.na_handle())? {
                        admins.extend(rec.values);
                    }
                }
                (admins, AdminPermissions::ADD_DERIVED_PREFIX)
            }
            None => {
                let admins = self
                    .registry
                    .get(&handle.prefix().na_handle())?
                    .map(|r| r.values)
                    .unwrap_or_default();
                (admins, AdminPermissions::ADD_HANDLE)
            }
        };
        self.check_grants(identity, &admins, bits, &format!("create {handle}"))
    }

    /// Check that `identity` may turn `current` into `new_values` (`None` = delete), and that
    /// the change leaves the handle administered.
    fn authorize_change(
        &self,
        identity: &Identity,
        handle: &Handle,
        current: &Record,
        new_values: Option<&[HandleValue]>,
    ) -> Result<(), Failure> {
        let mut admins: Vec<HandleValue> = current
            .values
            .iter()
            .filter(|v| v.is_type(types::HS_ADMIN))
            .cloned()
            .collect();
        admins.extend(self.governing_admin_values(handle)?);
        let (bits, what) = match new_values {
            None => {
                let bits = if handle.described_prefix().is_some() {
                    AdminPermissions::DELETE_DERIVED_PREFIX
                } else {
                    AdminPermissions::DELETE_HANDLE
                };
                (bits, format!("delete {handle}"))
            }
            Some(new) => {
                let case = self.policy.suffix_case;
                let mut admin = admin_value_indexes(handle, &current.values, case);
                admin.extend(admin_value_indexes(handle, new, case));
                (
                    bits_for_change(&current.values, new, &admin),
                    format!("change {handle}"),
                )
            }
        };
        self.check_grants(identity, &admins, bits, &what)?;
        if let Some(new) = new_values {
            self.check_admin_write(identity, &current.values, new)?;
        }
        self.check_keeps_administrator(handle, current, new_values)
    }

    /// Values whose ADMIN_WRITE bit is clear cannot be modified or removed by administrators
    /// (Handle.Net's per-value `adminCanWrite`); configured server administrators, who have
    /// every right on this node, are the exception. Deleting the whole handle is governed by
    /// DELETE_HANDLE alone.
    fn check_admin_write(
        &self,
        identity: &Identity,
        old: &[HandleValue],
        new: &[HandleValue],
    ) -> Result<(), Failure> {
        if self.is_server_admin(identity) {
            return Ok(());
        }
        for o in old.iter().filter(|o| !o.permissions.admin_write()) {
            let kept = new.iter().any(|n| n.index == o.index && same_content(o, n));
            if !kept {
                return Err(Failure::new(
                    ResponseCode::InsufficientPermissions,
                    format!(
                        "value {} is not writable by administrators (its ADMIN_WRITE permission \
                         bit is clear)",
                        o.index
                    ),
                ));
            }
        }
        Ok(())
    }

    /// No change may leave a handle without an administrator (RC 202, invalid value):
    /// - the prefix handle `0.NA/X` of a prefix homed here cannot be deleted, and after a
    ///   change at least one of its HS_ADMIN values with ADD_ADMIN and MODIFY_ADMIN must lead,
    ///   directly or through HS_VLIST groups (read with this change applied), to an HS_SECKEY
    ///   or HS_PUBKEY value in this registry, i.e. to someone who can log in and repair it;
    /// - any other handle may lose its last HS_ADMIN value only while the prefix's
    ///   administrators (`allow_prefix_admins`) still administer it.
    fn check_keeps_administrator(
        &self,
        handle: &Handle,
        current: &Record,
        new_values: Option<&[HandleValue]>,
    ) -> Result<(), Failure> {
        let refused = |why: String| Failure::new(ResponseCode::InvalidValue, why);
        let homed_prefix = match handle.described_prefix() {
            Some(p) if self.registry.is_homed(&p)? => Some(p),
            _ => None,
        };
        if let Some(prefix) = homed_prefix {
            let Some(new) = new_values else {
                return Err(refused(format!(
                    "{handle} is the prefix handle of {prefix}, homed on this node: it cannot be \
                     deleted"
                )));
            };
            if !self
                .authorizer()
                .administrator_remains(new, KEEPER_BITS, (handle, new))?
            {
                return Err(refused(format!(
                    "the change would leave prefix {prefix} without an administrator: no \
                     HS_ADMIN value with ADD_ADMIN and MODIFY_ADMIN would lead to an HS_SECKEY or \
                     HS_PUBKEY value on this node (`idnode init-prefix --force {prefix}` repairs \
                     a prefix handle)"
                )));
            }
            return Ok(());
        }
        let Some(new) = new_values else {
            return Ok(());
        };
        let had_admin = current.values.iter().any(|v| v.is_type(types::HS_ADMIN));
        let has_admin = new.iter().any(|v| v.is_type(types::HS_ADMIN));
        if had_admin && !has_admin {
            let governing = self.governing_admin_values(handle)?;
            let prefix_admins =
                self.authorizer()
                    .administrator_remains(&governing, 0, (handle, new))?;
            if !prefix_admins {
                return Err(refused(format!(
                    "the change would remove the last HS_ADMIN value of {handle}, and no prefix \
                     administrator would administer it (node.allow_prefix_admins is {})",
                    if self.policy.allow_prefix_admins {
                        "on, but the prefix handle has no usable administrator"
                    } else {
                        "off"
                    }
                )));
            }
        }
        Ok(())
    }

    /// Resolve a handle.
    pub fn resolve(&self, q: &Query, identity: Option<&Identity>) -> Result<Resolution, Failure> {
        self.require_responsible(&q.handle)?;
        let Some(record) = self.registry.get(&q.handle)? else {
            if q.refer {
                if let Some(values) = self.prefix_referral(&q.handle)? {
                    return Err(Failure {
                        code: ResponseCode::PrefixReferral,
                        message: "Prefix referral".into(),
                        referral: values,
                    });
                }
            }
            return Err(Failure::new(
                ResponseCode::HandleNotFound,
                "Handle Not Found",
            ));
        };
        let selected: Vec<HandleValue> = record
            .values
            .iter()
            .filter(|v| {
                (q.indexes.is_empty() && q.types.is_empty())
                    || q.indexes.contains(&v.index)
                    || q.types.iter().any(|t| v.matches_type_query(t))
            })
            .cloned()
            .collect();
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
                return Err(Failure::new(
                    ResponseCode::AuthenticationNeeded,
                    "authentication needed to read non-public values",
                ));
            };
            let mut admins: Vec<HandleValue> = record
                .values
                .iter()
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
            .map_err(|f| Failure::new(ResponseCode::InsufficientPermissions, f.message))?;
            // ADMIN_READ clear: not even administrators read it (server admins included).
            selected
                .into_iter()
                .filter(|v| v.is_public() || v.permissions.admin_read())
                .collect()
        };
        if values.is_empty() {
            return Err(Failure::new(
                ResponseCode::ValuesNotFound,
                "Values Not Found",
            ));
        }
        Ok(Resolution { values })
    }

    /// Create a handle, or replace its whole record when `overwrite` is `Yes`.
    pub fn create(
        &self,
        identity: &Identity,
        handle: &Handle,
        mut values: Vec<HandleValue>,
        overwrite: Overwrite,
    ) -> Result<WriteOutcome, Failure> {
        self.check_write_target(handle)?;
        validate_values(&values)?;
        stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
        let values = sorted(values);
        let committed = self.registry.mutate::<Failure, _>(handle, |current| {
            match (current, overwrite) {
                (Some(_), Overwrite::No) => {
                    return Err(Failure::new(
                        ResponseCode::HandleAlreadyExists,
                        "Handle already exists",
                    ))
                }
                (Some(cur), Overwrite::Yes) => {
                    self.authorize_change(identity, handle, cur, Some(&values))?
                }
                (None, _) => {
                    self.authorize_create(identity, handle)?;
                    // A homed prefix's new prefix handle must come with an administrator.
                    let nothing = Record {
                        handle: handle.as_str().to_string(),
                        values: Vec::new(),
                    };
                    self.check_keeps_administrator(handle, &nothing, Some(&values))?
                }
            }
            Ok(Mutation::Put(Record {
                handle: handle.as_str().to_string(),
                values: values.clone(),
            }))
        })?;
        Ok(WriteOutcome {
            created: !committed.existed,
            seq: committed.seq,
        })
    }

    /// Add values; with `overwrite`, values at existing indexes are replaced (REST PUT with
    /// `index=`), otherwise an existing index fails with 201.
    pub fn add_values(
        &self,
        identity: &Identity,
        handle: &Handle,
        mut values: Vec<HandleValue>,
        overwrite: bool,
    ) -> Result<WriteOutcome, Failure> {
        self.check_write_target(handle)?;
        validate_values(&values)?;
        stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
        let mut replaced_any = false;
        let committed = self.registry.mutate::<Failure, _>(handle, |current| {
            let cur = current
                .ok_or_else(|| Failure::new(ResponseCode::HandleNotFound, "Handle Not Found"))?;
            let mut merged = cur.values.clone();
            for v in &values {
                match merged.iter_mut().find(|m| m.index == v.index) {
                    Some(_) if !overwrite => {
                        return Err(Failure::new(
                            ResponseCode::ValueAlreadyExists,
                            format!("value {} already exists", v.index),
                        ))
                    }
                    Some(m) => {
                        replaced_any = true;
                        *m = v.clone();
                    }
                    None => merged.push(v.clone()),
                }
            }
            validate_values(&merged)?;
            self.authorize_change(identity, handle, cur, Some(&merged))?;
            Ok(Mutation::Put(Record {
                handle: cur.handle.clone(),
                values: sorted(merged),
            }))
        })?;
        Ok(WriteOutcome {
            created: !replaced_any,
            seq: committed.seq,
        })
    }

    /// Replace existing values; every index must exist (else 200).
    pub fn modify_values(
        &self,
        identity: &Identity,
        handle: &Handle,
        mut values: Vec<HandleValue>,
    ) -> Result<WriteOutcome, Failure> {
        self.check_write_target(handle)?;
        validate_values(&values)?;
        stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
        let committed = self.registry.mutate::<Failure, _>(handle, |current| {
            let cur = current
                .ok_or_else(|| Failure::new(ResponseCode::HandleNotFound, "Handle Not Found"))?;
            let mut merged = cur.values.clone();
            for v in &values {
                let slot = merged
                    .iter_mut()
                    .find(|m| m.index == v.index)
                    .ok_or_else(|| {
                        Failure::new(
                            ResponseCode::ValuesNotFound,
                            format!("no value at index {}", v.index),
                        )
                    })?;
                *slot = v.clone();
            }
            validate_values(&merged)?;
            self.authorize_change(identity, handle, cur, Some(&merged))?;
            Ok(Mutation::Put(Record {
                handle: cur.handle.clone(),
                values: merged,
            }))
        })?;
        Ok(WriteOutcome {
            created: false,
            seq: committed.seq,
        })
    }

    /// Remove values by index; every index must exist (else 200).
    pub fn remove_values(
        &self,
        identity: &Identity,
        handle: &Handle,
        indexes: &[u32],
    ) -> Result<WriteOutcome, Failure> {
        self.check_write_target(handle)?;
        let committed = self.registry.mutate::<Failure, _>(handle, |current| {
            let cur = current
                .ok_or_else(|| Failure::new(ResponseCode::HandleNotFound, "Handle Not Found"))?;
            if let Some(missing) = indexes.iter().find(|i| cur.value(**i).is_none()) {
                return Err(Failure::new(
                    ResponseCode::ValuesNotFound,
                    format!("no value at index {missing}"),
                ));
            }
            let kept: Vec<HandleValue> = cur
                .values
                .iter()
                .filter(|v| !indexes.contains(&v.index))
                .cloned()
                .collect();
            self.authorize_change(identity, handle, cur, Some(&kept))?;
            Ok(Mutation::Put(Record {
                handle: cur.handle.clone(),
                values: kept,
            }))
        })?;
        Ok(WriteOutcome {
            created: false,
            seq: committed.seq,
        })
    }

    /// Delete a handle.
    pub fn delete(&self, identity: &Identity, handle: &Handle) -> Result<WriteOutcome, Failure> {
        self.check_write_target(handle)?;
        let committed = self.registry.mutate::<Failure, _>(handle, |current| {
            let cur = current
                .ok_or_else(|| Failure::new(ResponseCode::HandleNotFound, "Handle Not Found"))?;
            self.authorize_change(identity, handle, cur, None)?;
            Ok(Mutation::Delete)
        })?;
        Ok(WriteOutcome {
            created: false,
            seq: committed.seq,
        })
    }

    /// List the handles under a homed prefix; needs LIST_HANDLES on `0.NA/<prefix>`.
    pub fn list_handles(
        &self,
        identity: &Identity,
        prefix: &Prefix,
        page: Option<(usize, usize)>,
    ) -> Result<(usize, Vec<String>), Failure> {
        if !self.registry.is_homed(prefix)? {
            return Err(Failure::new(
                ResponseCode::ServerNotResponsible,
                "That prefix doesn't live here",
            ));
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

    /// Home (`home`) or stop homing `prefix` at run time (Handle.Net's OC_HOME_NA and
    /// OC_UNHOME_NA): only the node's server administrators (`node.server_admins`) may, as
    /// Handle.Net's server authorises these against its `server_admins`, not HS_ADMIN values.
    /// Durable when this returns (logged, fsynced). Whether anything changed. Unhoming keeps
    /// the prefix's records; a prefix listed in `node.homed_prefixes` is homed again at the
    /// next start.
    pub fn set_homed(
        &self,
        identity: &Identity,
        prefix: &Prefix,
        home: bool,
    ) -> Result<bool, Failure> {
        if !self.is_server_admin(identity) {
            return Err(Failure::new(
                ResponseCode::InsufficientPermissions,
                format!(
                    "{identity} is not a server administrator of this node (node.server_admins):                      only they may home or unhome prefixes"
                ),
            ));
        }
        Ok(if home {
            self.registry.home_prefix(prefix)?
        } else {
            self.registry.unhome_prefix(prefix)?
        })
    }

    /// The prefixes this node homes.
    pub fn homed_prefixes(&self) -> Result<Vec<Prefix>, Failure> {
        Ok(self.registry.homed_prefixes()?)
    }

    /// A fresh handle under `base` (`"88.100.1/"` or `"88.100.1/batch-"`): `base` + 32 random
    /// hex digits (128 bits, so collisions are not a practical concern; a collision still fails
    /// safely with 101 on create).
    pub fn mint_handle(&self, base: &str) -> Result<Handle, Failure> {
        use rand::RngCore;
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let base = if base.contains('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        self.parse_handle(&format!("{base}{suffix}"))
    }
}

#[cfg(test)]
mod tests;

/// Operator set-up, outside the authenticated path (run locally by whoever owns the data
/// directory): home `prefix` and give it an administrator.
///
/// Creates `0.NA/<prefix>` (unless it exists) with
/// - index 100 HS_ADMIN: every permission for the group `200:0.NA/<prefix>`;
/// - index 200 HS_VLIST: the group, holding `<admin_index>:0.NA/<prefix>`;
/// - index `admin_index` HS_SECKEY: `secret`, readable and writable by admins only.
///
/// This is the layout Handle.Net and pyhandle expect (pyhandle writes HS_ADMIN values naming
/// `200:0.NA/<prefix>` into every handle it creates). Returns whether the prefix handle was
/// created (false: it existed and was left as it was; [`repair_prefix`] restores one).
pub fn init_prefix(
    registry: &Registry,
    prefix: &Prefix,
    admin_index: u32,
    secret: &[u8],
) -> Result<bool, Failure> {
    let values = admin_layout(prefix, admin_index, secret)?;
    registry.home_prefix(prefix)?;
    let na = prefix.na_handle();
    let committed = registry.mutate(&na, |current| {
        Ok::<_, Failure>(match current {
            Some(_) => Mutation::Unchanged,
            None => Mutation::Put(Record {
                handle: na.as_str().to_string(),
                values: sorted(values.clone()),
            }),
        })
    })?;
    Ok(!committed.existed)
}

/// What [`repair_prefix`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The prefix handle did not exist and was created.
    pub created: bool,
    /// Values that stood at the administrator's indexes (100, 200, the key's) and were
    /// replaced.
    pub replaced: Vec<HandleValue>,
    /// HS_ADMIN values at other indexes, kept as they were: the operator should review them.
    pub other_admins: Vec<HandleValue>,
}

/// `idnode init-prefix --force`: home `prefix` and restore its administrator in an existing
/// `0.NA/<prefix>` (or create it). Indexes 100, 200 and `admin_index` get the
/// [`init_prefix`] layout (the group holds only the restored administrator), every other value
/// is kept. The write goes through the change log, so followers receive it.
pub fn repair_prefix(
    registry: &Registry,
    prefix: &Prefix,
    admin_index: u32,
    secret: &[u8],
) -> Result<Repair, Failure> {
    let layout = admin_layout(prefix, admin_index, secret)?;
    registry.home_prefix(prefix)?;
    let na = prefix.na_handle();
    let mut repair = Repair {
        created: false,
        replaced: Vec::new(),
        other_admins: Vec::new(),
    };
    registry.mutate(&na, |current| {
        let mut values = Vec::new();
        repair = Repair {
            created: current.is_none(),
            replaced: Vec::new(),
            other_admins: Vec::new(),
        };
        for v in current.map(|r| r.values.clone()).unwrap_or_default() {
            if layout.iter().any(|l| l.index == v.index) {
                repair.replaced.push(v);
            } else {
                if v.is_type(types::HS_ADMIN) {
                    repair.other_admins.push(v.clone());
                }
                values.push(v);
            }
        }
        values.extend(layout.iter().cloned());
        validate_values(&values)?;
        Ok::<_, Failure>(Mutation::Put(Record {
            handle: current.map_or_else(|| na.as_str().to_string(), |r| r.handle.clone()),
            values: sorted(values),
        }))
    })?;
    Ok(repair)
}

/// The administrator [`init_prefix`] gives a prefix, stamped now.
fn admin_layout(
    prefix: &Prefix,
    admin_index: u32,
    secret: &[u8],
) -> Result<Vec<HandleValue>, Failure> {
    use crate::model::{AdminRef, ValueList, ValuePermissions, ValueReference};
    if admin_index == 0
        || admin_index == 100
        || admin_index == 200
        || admin_index > crate::model::value::MAX_INDEX
    {
        return Err(Failure::new(
            ResponseCode::InvalidValue,
            "the admin index must be positive and not 100 or 200",
        ));
    }
    if secret.is_empty() {
        return Err(Failure::new(
            ResponseCode::InvalidValue,
            "the admin secret is empty",
        ));
    }
    let na = prefix.na_handle();
    let mut values = vec![
        HandleValue::new(
            100,
            types::HS_ADMIN,
            AdminRef {
                permissions: AdminPermissions::ALL,
                admin: ValueReference {
                    handle: na.as_str().to_string(),
                    index: 200,
                },
            }
            .encode(),
        ),
        HandleValue::new(
            200,
            types::HS_VLIST,
            ValueList(vec![ValueReference {
                handle: na.as_str().to_string(),
                index: admin_index,
            }])
            .encode(),
        ),
        HandleValue::new(admin_index, types::HS_SECKEY, secret.to_vec())
            .with_permissions(ValuePermissions::ADMIN_ONLY),
    ];
    stamp(&mut values, crate::model::unix_now_u32(), Stamp::All);
    Ok(values)
}
