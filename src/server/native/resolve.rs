//! Resolutions on the native front end: from this node's data through the engine (as the
//! asker's identity, if any, with the anonymous-read rule of [`AnonymousReads`]), or, for a
//! REC request on a node that recurses for the client, through the hierarchy as a
//! [`RecursionJob`] the front end awaits (TCP) or spawns (UDP).
//!
//! Site information is answered in the dispatch (it is the HS_SITE the node was given).

use std::net::IpAddr;
use std::time::Instant;

use super::{AnonymousReads, AnswerFailure, NativeService, Outcome, Source, Transport};
use crate::auth::Identity;
use crate::model::{Handle, ResponseCode};
use crate::resolve::recursion::RecursionPermit;
use crate::resolve::resolver::{Certify, Fetch};
use crate::resolve::{Query, Route};
use crate::server::udp::{Reuse, RELAYED_REUSE_SECS};
use crate::wire::handle::message::{flag, op, Body, Envelope, Header, Message};
use crate::wire::handle::{Request, RequestMessage, Resolve, Responder};

/// A resolution waiting for recursion.
pub struct RecursionJob {
    envelope: Envelope,
    header: Header,
    hb: Option<Vec<u8>>,
    /// The identifier as the request named it (the answer echoes it).
    named: String,
    query: Query,
    source: Source,
    started: Instant,
    /// The job's slot of `recursion.max_concurrent`, held until it is answered.
    permit: RecursionPermit,
}

/// Who a resolution from this node's data reads as.
#[derive(Clone, Copy)]
pub(super) enum Reader<'a> {
    /// An authenticated identity: the values it may read.
    As(&'a Identity),
    /// An anonymous reader, under the node's anonymous-read rule ([`AnonymousReads`]).
    Anonymous,
    /// An anonymous reader in a session that named an identity at setup: restricted values
    /// are challenged (whatever the node's setting), under the session's id, so that the
    /// answer authenticates the session.
    SessionChallenge(u32),
}

impl NativeService {
    /// A resolution with REC for an identifier this node is not responsible for, on a node
    /// that recurses for this client: the job, holding its slot of
    /// `recursion.max_concurrent`, or the answer refusing it (RC 3 when every slot is
    /// taken). Everything else, and clients outside `recursion.allow`, get the node's
    /// ordinary answer (`None`).
    pub(super) fn recursion(
        &self,
        req: &RequestMessage,
        hb: Option<&[u8]>,
        source: Source,
        started: Instant,
    ) -> Option<Outcome> {
        if !self.resolver.recurses() {
            return None;
        }
        let Request::Resolve(Resolve {
            handle,
            indexes,
            types,
            recursive: true,
            ..
        }) = &req.request
        else {
            return None;
        };
        let parsed = Handle::parse_lenient(handle, self.engine().policy().suffix_case).ok()?;
        // Requests naming too many types or indexes are refused (RC 4) inside the recursor,
        // before anything is fetched or cached.
        let permit = match self.resolver.route(&parsed, source.addr) {
            Route::Upstream(permit) => permit,
            Route::Local => return None,
            Route::Busy => {
                self.refuse(source.transport, "recursion_busy");
                let refusal = self.responder(&req.envelope, &req.header, hb).error(
                    ResponseCode::ServerTooBusy,
                    "too many recursive lookups in flight; try again",
                );
                let answers = self.finish(op::RESOLUTION, source, started, vec![refusal]);
                return Some(Outcome::Done(answers));
            }
        };
        Some(Outcome::Recurse(Box::new(RecursionJob {
            envelope: req.envelope,
            header: req.header,
            hb: hb.map(<[u8]>::to_vec),
            named: handle.clone(),
            query: Query {
                handle: parsed,
                indexes: indexes.clone(),
                types: types.clone(),
                public_only: true,
                refer: true,
            },
            source,
            started,
            permit,
        })))
    }

    /// Whether answers relayed from upstream may be replayed to `addr` (it may recurse).
    pub(crate) fn recurses_for(&self, addr: IpAddr) -> bool {
        self.resolver.relays_to(addr)
    }

    /// Resolve a [`RecursionJob`] through the hierarchy and build its answer.
    pub async fn recurse(&self, job: RecursionJob) -> Vec<Vec<u8>> {
        self.recurse_for_reuse(job).await.0
    }

    /// [`NativeService::recurse`], also saying how long the answer may be replayed for the
    /// same request bytes: what is left of its cache lifetime, at most
    /// [`RELAYED_REUSE_SECS`].
    pub async fn recurse_for_reuse(&self, job: RecursionJob) -> (Vec<Vec<u8>>, Reuse) {
        // A certified request (CT, or the ID-SDK's trusted query) is fetched with CT and its
        // upstream signature checked; it bypasses the cache and is never replayed.
        let certify = if job.header.has(flag::CERTIFY) {
            Certify::Require
        } else if job.header.has(flag::TRUSTED_QUERY) {
            Certify::Check
        } else {
            Certify::No
        };
        let fetch = Fetch {
            recursion_count: job.header.recursion_count,
            certify,
        };
        let now = crate::model::unix_now();
        let answer = self
            .resolver
            .upstream(&job.permit, &job.query, fetch, now)
            .await;
        // Replayed no longer than the cache entry stays fresh (what is left of it); answers
        // that failed to arrive, and certified ones, never.
        let reuse = match (&answer.outcome, answer.origin.fresh_for()) {
            (Err(f), _)
                if !matches!(
                    f.code(),
                    ResponseCode::HandleNotFound | ResponseCode::ValuesNotFound
                ) =>
            {
                Reuse::Never
            }
            (_, None | Some(0)) => Reuse::Never,
            (_, Some(left)) => Reuse::Until(now + u64::from(left).min(RELAYED_REUSE_SECS)),
        };
        let r = self.responder(&job.envelope, &job.header, job.hb.as_deref());
        let mut response = match answer.outcome {
            Ok(values) => r.ok(Body::Values {
                handle: job.named,
                values,
            }),
            Err(f) => r.failure(&f),
        };
        // The answer did not come from this node's own data: trusted for the ID-SDK's trusted
        // query only when the upstream's signature over it verified.
        super::sdk::mark_relayed(&mut response.header, answer.origin.verified());
        (
            self.finish(op::RESOLUTION, job.source, job.started, vec![response]),
            reuse,
        )
    }

    /// Resolve `q` from this node's data as `reader` sees it.
    pub(super) fn resolution(
        &self,
        req: &RequestMessage,
        q: &Resolve,
        r: &Responder<'_>,
        reader: Reader<'_>,
        source: Source,
    ) -> Message {
        let (identity, anonymous_reads, challenge_id) = match reader {
            Reader::As(identity) => (Some(identity), self.limits.anonymous_reads, None),
            Reader::Anonymous => (None, self.limits.anonymous_reads, None),
            Reader::SessionChallenge(id) => (None, AnonymousReads::Challenge, Some(id)),
        };
        let parsed = match Handle::parse_lenient(&q.handle, self.engine().policy().suffix_case) {
            Ok(h) => h,
            Err(e) => return r.error(ResponseCode::InvalidHandle, &e.to_string()),
        };
        // An anonymous reader gets what anyone may read unless `anonymous_reads` says to
        // challenge it (see `sdk::AnonymousReads`).
        let anonymous_public = identity.is_none() && anonymous_reads == AnonymousReads::Public;
        let query = Query {
            handle: parsed,
            indexes: q.indexes.clone(),
            types: q.types.clone(),
            public_only: q.public_only || anonymous_public,
            refer: q.refer,
        };
        match self.engine().resolve(&query, identity) {
            Ok(found) => r.ok(Body::Values {
                handle: q.handle.clone(),
                values: found.values,
            }),
            // Over UDP an anonymous datagram must not create state: RC 2 sends Handle.Net
            // clients on to TCP at once, where the challenge is issued.
            Err(f)
                if f.code() == ResponseCode::AuthenticationNeeded
                    && identity.is_none()
                    && source.transport == Transport::Udp =>
            {
                r.error(
                    ResponseCode::Error,
                    "restricted values: authenticate over TCP, or set the public-only flag",
                )
            }
            Err(f) if f.code() == ResponseCode::AuthenticationNeeded && identity.is_none() => {
                if let Some(id) = challenge_id {
                    // An older challenge under the same id goes.
                    self.lock_challenges()
                        .withdraw(id, source.addr, Instant::now());
                }
                self.challenge_as(req, r, source, challenge_id)
            }
            Err(f) => r.failure(&f),
        }
    }
}
