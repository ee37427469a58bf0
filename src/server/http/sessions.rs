//! REST API sessions (Handle.Net's `Authorization: Handle sessionId=...` scheme and
//! `/api/sessions`): a client gets a session id and a server nonce (from any 401 answer's
//! `WWW-Authenticate: Handle sessionId="…", nonce="…"`, or from `POST /api/sessions`), proves
//! an identity once by signing `nonce ‖ cnonce` with the private key of an HS_PUBKEY value or
//! hashing it with an HS_SECKEY secret, and then authenticates later requests with the session
//! id alone.
//!
//! Sessions live in memory only (a restart ends them), in two bounded tables, so that floods
//! of unauthenticated requests (each 401 opens a session) cannot push out sessions that
//! clients have answered:
//! - **offered** sessions (not answered yet): at most [`MAX_SESSIONS`], the oldest dropped
//!   first when full (constant time), each expiring [`UNAUTHENTICATED_TTL`] after it was
//!   opened;
//! - **answered** sessions: at most [`MAX_SESSIONS`], expiring [`AUTHENTICATED_TTL`] after
//!   their last use; when full, expired ones go first, then the least recently used. Only a
//!   valid answer (real credentials) adds one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore;

use crate::auth::Identity;

/// Sessions kept at once, in each of the two tables.
pub const MAX_SESSIONS: usize = 10_000;
/// Lifetime of a session nobody has answered yet.
pub const UNAUTHENTICATED_TTL: Duration = Duration::from_secs(60);
/// Idle lifetime of an answered session.
pub const AUTHENTICATED_TTL: Duration = Duration::from_secs(30 * 60);

struct Offered {
    nonce: [u8; 16],
    opened: Instant,
}

struct Answered {
    nonce: [u8; 16],
    identity: Identity,
    last_used: Instant,
}

#[derive(Default)]
struct Tables {
    offered: HashMap<String, Offered>,
    /// Offered ids, oldest first (ids already answered or dropped are skipped).
    order: VecDeque<String>,
    answered: HashMap<String, Answered>,
}

/// What a client may know of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    /// The server nonce, base64.
    pub nonce: String,
    pub identity: Option<Identity>,
}

#[derive(Default)]
pub struct Sessions {
    tables: Mutex<Tables>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        crate::lock::lock(&self.tables)
    }

    /// Open a session: a fresh random id and nonce.
    pub fn open(&self) -> SessionView {
        let mut rng = rand::thread_rng();
        let mut id = [0u8; 16];
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut nonce);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut t = self.lock();
        while t.offered.len() >= MAX_SESSIONS {
            match t.order.pop_front() {
                Some(old) => {
                    t.offered.remove(&old);
                }
                None => break,
            }
        }
        // From the front (oldest): ids answered or closed since, and offers past their
        // lifetime (`order` is by opening time, so expired offers are all at the front).
        let now = Instant::now();
        while let Some(front) = t.order.front() {
            let stale = match t.offered.get(front) {
                None => true,
                Some(s) => now.saturating_duration_since(s.opened) >= UNAUTHENTICATED_TTL,
            };
            if !stale {
                break;
            }
            if let Some(old) = t.order.pop_front() {
                t.offered.remove(&old);
            }
        }
        t.offered.insert(id.clone(), Offered { nonce, opened: now });
        t.order.push_back(id.clone());
        SessionView {
            id,
            nonce: b64(&nonce),
            identity: None,
        }
    }

    /// The live session `id` (an answered one's idle clock restarts), with its raw nonce.
    pub fn touch(&self, id: &str) -> Option<(SessionView, [u8; 16])> {
        let now = Instant::now();
        let mut t = self.lock();
        if let Some(s) = t.answered.get_mut(id) {
            if now.saturating_duration_since(s.last_used) < AUTHENTICATED_TTL {
                s.last_used = now;
                let view = SessionView {
                    id: id.to_string(),
                    nonce: b64(&s.nonce),
                    identity: Some(s.identity.clone()),
                };
                return Some((view, s.nonce));
            }
            t.answered.remove(id);
            return None;
        }
        match t.offered.get(id) {
            Some(s) if now.saturating_duration_since(s.opened) < UNAUTHENTICATED_TTL => {
                let view = SessionView {
                    id: id.to_string(),
                    nonce: b64(&s.nonce),
                    identity: None,
                };
                Some((view, s.nonce))
            }
            Some(_) => {
                t.offered.remove(id);
                None
            }
            None => None,
        }
    }

    /// Bind `identity` to session `id` (after its answer verified). False if it is gone.
    pub fn authenticate(&self, id: &str, identity: Identity) -> bool {
        let now = Instant::now();
        let mut t = self.lock();
        let nonce = match (t.offered.remove(id), t.answered.get_mut(id)) {
            (Some(offered), _) => offered.nonce,
            (None, Some(answered)) => {
                answered.identity = identity;
                answered.last_used = now;
                return true;
            }
            (None, None) => return false,
        };
        if t.answered.len() >= MAX_SESSIONS {
            t.answered
                .retain(|_, s| now.saturating_duration_since(s.last_used) < AUTHENTICATED_TTL);
        }
        if t.answered.len() >= MAX_SESSIONS {
            let lru = t
                .answered
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = lru {
                t.answered.remove(&k);
            }
        }
        t.answered.insert(
            id.to_string(),
            Answered {
                nonce,
                identity,
                last_used: now,
            },
        );
        true
    }

    /// End session `id`; false if there was none.
    pub fn close(&self, id: &str) -> bool {
        let mut t = self.lock();
        t.answered.remove(id).is_some() | t.offered.remove(id).is_some()
    }

    /// Sessions held (offered and answered).
    pub fn len(&self) -> usize {
        let t = self.lock();
        t.offered.len() + t.answered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Handle, SuffixCase};

    #[test]
    fn sessions_open_authenticate_close_and_stay_bounded() {
        let sessions = Sessions::default();
        let s = sessions.open();
        assert_eq!(s.id.len(), 32);
        let (view, nonce) = sessions.touch(&s.id).unwrap();
        assert_eq!(view.nonce, b64(&nonce));
        assert!(view.identity.is_none());
        let who = Identity {
            handle: Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap(),
            index: 300,
        };
        assert!(sessions.authenticate(&s.id, who.clone()));
        assert_eq!(sessions.touch(&s.id).unwrap().0.identity, Some(who.clone()));
        assert!(sessions.close(&s.id));
        assert!(sessions.touch(&s.id).is_none());
        assert!(!sessions.authenticate(&s.id, who));
    }

    #[test]
    fn floods_of_offers_never_push_out_answered_sessions() {
        let sessions = Sessions::default();
        let who = Identity {
            handle: Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap(),
            index: 300,
        };
        let kept = sessions.open();
        assert!(sessions.authenticate(&kept.id, who));
        let first_offer = sessions.open();
        for _ in 0..MAX_SESSIONS * 2 {
            sessions.open();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS + 1);
        assert!(
            sessions.touch(&first_offer.id).is_none(),
            "the oldest offer went first"
        );
        assert!(sessions.touch(&kept.id).unwrap().0.identity.is_some());
        assert!(sessions.lock().order.len() <= MAX_SESSIONS);
    }
}
