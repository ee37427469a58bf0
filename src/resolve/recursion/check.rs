//! What an upstream answer means to the walk, and the request it is an answer to: the
//! resolution request idnode sends, the response codes it knows, which codes send the walk
//! to the next site, and how a final answer becomes a [`CachedAnswer`] or a [`ResolveError`].
//!
//! Pure functions (no I/O, no state); the exchange's own checks (request id, operation,
//! expiry) are `wire::handle::exchange::check_resolution_answer`.

use std::net::SocketAddr;

use crate::model::code::OUT_OF_DATE_SITE_INFO;
use crate::model::{HandleValue, ResponseCode};
use crate::resolve::cache::CachedAnswer;
use crate::resolve::ResolveError;
use crate::wire::handle::exchange::new_request;
use crate::wire::handle::message::{flag, op, Body, Message};

pub(super) fn error(message: impl Into<String>) -> ResolveError {
    ResolveError::Recursion(message.into())
}

/// The response code enum for a wire code, if idnode knows it (any but the session codes,
/// which no resolution answer carries).
fn known_code(code: u32) -> Option<ResponseCode> {
    ResponseCode::from_u32(code).filter(|rc| !rc.is_session())
}

/// The answer to keep from an upstream's values (RC 1): the public ones, or
/// [`CachedAnswer::ValuesNotFound`] if none is.
pub(super) fn public_answer(values: Vec<HandleValue>) -> CachedAnswer {
    let public: Vec<HandleValue> = values
        .into_iter()
        // Upstream may be careless; a secret is never relayed.
        .filter(HandleValue::is_public)
        .collect();
    if public.is_empty() {
        CachedAnswer::ValuesNotFound
    } else {
        CachedAnswer::Values(public)
    }
}

/// The failure an upstream's final answer other than values, not found or a referral
/// becomes: its own code when idnode knows it (with the upstream's message, or which server
/// answered), else RC 2 naming the unknown code.
pub(super) fn upstream_failure(server: SocketAddr, code: u32, body: Body) -> ResolveError {
    let message = match body {
        Body::Error { message } => message,
        _ => String::new(),
    };
    match known_code(code) {
        Some(rc) => ResolveError::Upstream {
            code: rc,
            message: if message.is_empty() {
                format!("upstream {server} answered {code}")
            } else {
                message
            },
        },
        None => error(format!(
            "upstream {server} answered unknown code {code}: {message}"
        )),
    }
}

/// Codes after which another site may do better.
pub(super) fn try_next_site(code: u32) -> bool {
    use ResponseCode as R;
    match ResponseCode::from_u32(code) {
        Some(rc) => matches!(
            rc,
            R::ServerTooBusy | R::ServerBackup | R::ServerNotResponsible
        ),
        None => code == OUT_OF_DATE_SITE_INFO,
    }
}

/// A resolution request as idnode sends it upstream: 2.11, CA|PO, the given recursion count,
/// a random non-zero request id, expiring 12 hours from `now`.
pub(super) fn resolution_request(
    handle: &str,
    indexes: &[u32],
    types: &[String],
    recursion_count: u8,
    now: u64,
) -> Message {
    let body = Body::Resolution {
        handle: handle.to_string(),
        indexes: indexes.to_vec(),
        types: types.to_vec(),
    };
    let mut m = new_request(
        op::RESOLUTION,
        flag::CACHE_CERTIFY | flag::PUBLIC_ONLY,
        body,
        now,
    );
    m.header.recursion_count = recursion_count;
    m
}
