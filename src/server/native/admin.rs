//! Administration on the native front end (TCP only; the dispatch refuses it over UDP):
//! create (with MINT and OVERWRITE), add/modify/remove values, delete, home/unhome a prefix,
//! and the lists (LIST_HANDLES as an identity, LIST_HOMED_NAS for anyone), CN on all but the
//! last message.
//!
//! An [`Admin`] request runs as an identity: a logged-in ID-SDK connection's, an
//! authenticated session's, or the one a 402 challenge answer proves. A write to an
//! identifier this node cannot take is refused before any challenge. Authorization,
//! durability and the change log are the engine's; each write leaves one audit line.

use super::{AnswerFailure, NativeService, Source};
use crate::auth::Identity;
use crate::model::{Handle, ResponseCode};
use crate::resolve::{Overwrite, ResolveError};
use crate::wire::handle::message::{Body, Message};
use crate::wire::handle::{Admin, RequestMessage, Responder};

impl NativeService {
    /// An administrative request over TCP: refused if its target cannot be written here,
    /// run as the connection's login if it has one, challenged otherwise.
    pub(super) fn admin_request(
        &self,
        req: &RequestMessage,
        admin: &Admin,
        r: &Responder<'_>,
        source: Source,
    ) -> Vec<Message> {
        // A write to an identifier this node does not home, or holds as a read-only mirror,
        // is refused before any challenge: it may not hold the administrators' keys, and the
        // client should go elsewhere.
        if let Some(f) = self.write_target_refusal(admin) {
            return vec![r.failure(&f)];
        }
        // A logged-in ID-SDK connection runs as its login; anyone else is challenged.
        match self.admin_as_login(req, admin, r, source) {
            Some(responses) => responses,
            None => vec![self.challenge(req, r, source)],
        }
    }

    /// Why a write's target cannot be written here ([`crate::resolve::Engine::check_write_target`]),
    /// if it cannot; a name that does not parse is left to the operation to report. Handle
    /// writes only: HOME_NA / UNHOME_NA name prefixes this node may not home yet.
    pub(super) fn write_target_refusal(&self, admin: &Admin) -> Option<ResolveError> {
        let text = admin.write_target()?;
        let handle = Handle::parse_lenient(text, self.engine().policy().suffix_case).ok()?;
        self.engine().check_write_target(&handle).err()
    }

    /// Run `admin` as `identity` and log it in the audit log (lists are reads).
    pub(super) fn admin_as(
        &self,
        admin: &Admin,
        r: &Responder<'_>,
        identity: &Identity,
        source: Source,
    ) -> Vec<Message> {
        let responses = self.admin(admin, r, identity);
        self.audit_write(admin, identity, source, &responses);
        responses
    }

    fn admin(&self, admin: &Admin, r: &Responder<'_>, identity: &Identity) -> Vec<Message> {
        let engine = self.engine();
        let parse = |text: &str| engine.parse_handle(text);
        let prefix_of = |text: &str, what: &str| {
            Handle::parse_lenient(text, engine.policy().suffix_case)
                .ok()
                .and_then(|h| h.described_prefix())
                .ok_or_else(|| ResolveError::InvalidHandle(what.to_string()))
        };
        let done = |result: Result<Body, ResolveError>| match result {
            Ok(body) => vec![r.ok(body)],
            Err(f) => vec![r.failure(&f)],
        };
        match admin {
            Admin::Create {
                handle,
                values,
                overwrite,
                mint,
            } => done((|| {
                let overwrite = if *overwrite {
                    Overwrite::Yes
                } else {
                    Overwrite::No
                };
                if *mint {
                    let h = engine.mint_handle(handle)?;
                    engine.create(identity, &h, values.clone(), overwrite)?;
                    Ok(Body::MintedHandle {
                        handle: h.as_str().to_string(),
                    })
                } else {
                    engine.create(identity, &parse(handle)?, values.clone(), overwrite)?;
                    Ok(Body::Empty)
                }
            })()),
            Admin::AddValues {
                handle,
                values,
                overwrite,
            } => done(empty(parse(handle).and_then(|h| {
                engine.add_values(identity, &h, values.clone(), *overwrite)
            }))),
            Admin::ModifyValues { handle, values } => {
                done(empty(parse(handle).and_then(|h| {
                    engine.modify_values(identity, &h, values.clone())
                })))
            }
            Admin::RemoveValues { handle, indexes } => done(empty(
                parse(handle).and_then(|h| engine.remove_values(identity, &h, indexes)),
            )),
            Admin::Delete { handle } => done(empty(
                parse(handle).and_then(|h| engine.delete(identity, &h)),
            )),
            Admin::Home { handle } | Admin::Unhome { handle } => {
                let home = matches!(admin, Admin::Home { .. });
                done(empty(
                    prefix_of(handle, "home and unhome name a prefix handle 0.NA/<prefix>")
                        .and_then(|p| engine.set_homed(identity, &p, home)),
                ))
            }
            Admin::List { handle } => {
                let listed = prefix_of(handle, "list needs a prefix handle 0.NA/<prefix>")
                    .and_then(|p| engine.list_handles(identity, &p, None));
                match listed {
                    Ok((_, handles)) => r.handle_list(handles),
                    Err(f) => vec![r.failure(&f)],
                }
            }
        }
    }

    /// LIST_HOMED_NAS: the prefixes this node homes, as prefix handles.
    pub(super) fn list_homed(&self, r: &Responder<'_>) -> Vec<Message> {
        match self.engine().homed_prefixes() {
            Ok(list) => r.handle_list(
                list.iter()
                    .map(|p| p.na_handle().as_str().to_string())
                    .collect(),
            ),
            Err(f) => vec![r.failure(&f)],
        }
    }

    /// One audit line for an administrative request and its answer (lists are reads).
    fn audit_write(&self, admin: &Admin, identity: &Identity, source: Source, out: &[Message]) {
        let indexes = match admin {
            Admin::Create { values, .. }
            | Admin::AddValues { values, .. }
            | Admin::ModifyValues { values, .. } => {
                crate::audit::indexes(values.iter().map(|v| v.index))
            }
            Admin::RemoveValues { indexes, .. } => crate::audit::indexes(indexes.iter().copied()),
            Admin::Delete { .. } | Admin::Home { .. } | Admin::Unhome { .. } => String::new(),
            Admin::List { .. } => return,
        };
        let result = match out.first() {
            Some(m) if m.header.response_code == ResponseCode::Success.code() => "ok".to_string(),
            Some(m) => match &m.body {
                Body::Error { message } => format!("RC {}: {message}", m.header.response_code),
                _ => format!("RC {}", m.header.response_code),
            },
            None => "no answer".to_string(),
        };
        crate::audit::write(
            crate::audit::Origin::Client("native", source.addr),
            &identity.to_string(),
            admin.op_code().label(),
            admin.handle(),
            &indexes,
            &result,
        );
    }
}

/// A write's answer: no body, whatever the engine reports.
fn empty<T>(result: Result<T, ResolveError>) -> Result<Body, ResolveError> {
    result.map(|_| Body::Empty)
}
