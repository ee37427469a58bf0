//! Certified answers: a request with the CT flag gets every answer signed — results, errors and
//! 402 challenges alike, as Handle.Net's server does — with the node's server key (`HS_SIGNED`,
//! verified by clients with the public key of the HS_SITE the node serves) or, inside a
//! session, with the session key (`HS_MAC`). See [`crate::auth::credential`] for the layout.
//!
//! An RSA-2048 signature costs about 2 ms of CPU, and anyone may ask for one, so signing
//! is budgeted ([`SignBudget`]): per client address and in total, per second. Past the budget
//! a UDP answer goes out unsigned (Handle.Net's client ignores it and retries, then falls back
//! to TCP) and a TCP answer becomes an unsigned RC 3 (server too busy).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::{NativeService, Source, Transport};
use crate::auth::challenge::PrivateKey;
use crate::auth::credential;
use crate::auth::pending::{FailureLimiter, FailureLimits};
use crate::model::ResponseCode;
use crate::wire::handle::message::{flag, header_and_body, Body, Message};

/// Signature budget settings (`[handle] signatures_per_second`, `..._per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignLimits {
    /// Signatures per second for all clients together (burst: one second's worth).
    pub per_second: u32,
    /// Signatures per second for one client address (burst: two seconds' worth).
    pub per_second_per_client: u32,
}

impl Default for SignLimits {
    /// 200 signatures a second in all (2048-bit RSA signs in about 2.1 ms: under half a
    /// core, `cargo bench --bench core -- certify`), 20 for one
    /// address: far more than any client verifying answers needs.
    fn default() -> Self {
        SignLimits {
            per_second: 200,
            per_second_per_client: 20,
        }
    }
}

/// Token buckets of signatures: one per client address and one for the node.
pub struct SignBudget {
    per_client: Mutex<FailureLimiter>,
    total: Mutex<(f64, Instant)>,
    limits: SignLimits,
}

impl SignBudget {
    pub fn new(limits: SignLimits) -> SignBudget {
        SignBudget {
            per_client: Mutex::new(FailureLimiter::new(FailureLimits {
                burst: limits.per_second_per_client.saturating_mul(2).max(1),
                per_minute: limits.per_second_per_client.saturating_mul(60),
                ..FailureLimits::default()
            })),
            total: Mutex::new((f64::from(limits.per_second), Instant::now())),
            limits,
        }
    }

    /// Take `n` signatures for `addr`, or refuse without taking any.
    pub fn take(&self, addr: IpAddr, n: usize, now: Instant) -> bool {
        let n_f = n as f64;
        {
            let mut total = crate::lock::lock(&self.total);
            let rate = f64::from(self.limits.per_second);
            let elapsed = now.saturating_duration_since(total.1).as_secs_f64();
            total.0 = (total.0 + elapsed * rate).min(rate.max(1.0));
            total.1 = now;
            if total.0 < n_f {
                return false;
            }
            total.0 -= n_f;
        }
        let mut per_client = crate::lock::lock(&self.per_client);
        for _ in 0..n {
            if !per_client.allows(addr, now) {
                drop(per_client);
                // Refused for this client: the node-wide tokens go back.
                let mut total = crate::lock::lock(&self.total);
                total.0 += n_f;
                return false;
            }
            per_client.failed(addr, now);
        }
        true
    }
}

impl NativeService {
    /// Sign the answers to a certified request with the server key, within the signature
    /// budget; whether any answer changed. Without a server key (tests) they stay unsigned.
    pub(super) fn certify(&self, source: Source, responses: &mut Vec<Message>) -> bool {
        let wanted = unsigned(responses);
        let Some(key) = self.server_key.as_deref() else {
            return false;
        };
        if wanted == 0 {
            return false;
        }
        if !self.sign_budget.take(source.addr, wanted, Instant::now()) {
            self.refuse(source.transport, "sign_budget");
            if source.transport == Transport::Tcp {
                too_busy_to_sign(responses);
                return true;
            }
            return false;
        }
        if let Err(e) = sign_all(responses, key) {
            tracing::warn!(error = %e, "answer left unsigned");
        }
        true
    }
}

/// Sign, with the server key, the answers that ask for it (CT) and carry no credential yet
/// (session answers were MAC'd before); the budget has been taken for [`unsigned`] of them.
fn sign_all(
    responses: &mut [Message],
    server_key: &PrivateKey,
) -> Result<(), credential::CredentialError> {
    for m in responses.iter_mut().filter(|m| needs_signature(m)) {
        m.credential = Some(Vec::new());
        let bytes = m.encode_message();
        let Some(hb) = header_and_body(&bytes) else {
            continue;
        };
        let cred = credential::sign(server_key, &m.envelope, 0, hb)?;
        m.credential = Some(cred.encode());
    }
    Ok(())
}

fn needs_signature(m: &Message) -> bool {
    m.header.has(flag::CERTIFY) && m.credential.as_ref().is_none_or(Vec::is_empty)
}

/// How many of `responses` still need the server key's signature.
fn unsigned(responses: &[Message]) -> usize {
    responses.iter().filter(|m| needs_signature(m)).count()
}

/// The unsigned answer a TCP client gets when the signature budget is spent.
fn too_busy_to_sign(responses: &mut Vec<Message>) {
    responses.truncate(1);
    if let Some(m) = responses.first_mut() {
        m.header.response_code = ResponseCode::ServerTooBusy.code();
        m.header.op_flag &= !flag::CONTINUOUS;
        m.body = Body::Error {
            message: "too many signed answers requested; try again later".into(),
        };
        m.credential = Some(Vec::new());
    }
}

#[cfg(test)]
mod tests;
