//! REST API sessions (Handle.Net's `Authorization: Handle sessionId=...` scheme and
//! `/api/sessions`): a client gets a session id and a server nonce (from any 401 answer's
//! `WWW-Authenticate: Handle sessionId="…", nonce="…"`, or from `POST /api/sessions`), proves
//! an identity once by signing `nonce ‖ cnonce` with the private key of an HS_PUBKEY value or
//! hashing it with an HS_SECKEY secret, and then authenticates later requests with the session
//! id alone.
//!
//! Sessions live in memory only (a restart ends them). They are bounded ([`MAX_SESSIONS`]):
//! a full table first drops expired sessions, then the least recently used one, so 401 floods
//! cannot grow it. A session expires [`UNAUTHENTICATED_TTL`] after its last use until it is
//! authenticated, [`AUTHENTICATED_TTL`] after its last use afterwards.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore;

use crate::auth::Identity;

/// Sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;
/// Idle lifetime of a session nobody has authenticated yet.
pub const UNAUTHENTICATED_TTL: Duration = Duration::from_secs(60);
/// Idle lifetime of an authenticated session.
pub const AUTHENTICATED_TTL: Duration = Duration::from_secs(30 * 60);

struct Session {
    nonce: [u8; 16],
    identity: Option<Identity>,
    last_used: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        let ttl = if self.identity.is_some() {
            AUTHENTICATED_TTL
        } else {
            UNAUTHENTICATED_TTL
        };
        now.saturating_duration_since(self.last_used) >= ttl
    }
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
    map: Mutex<HashMap<String, Session>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open a session: a fresh random id and nonce.
    pub fn open(&self) -> SessionView {
        let mut rng = rand::thread_rng();
        let mut id = [0u8; 16];
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut nonce);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| !s.expired(now));
        }
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(
            id.clone(),
            Session {
                nonce,
                identity: None,
                last_used: now,
            },
        );
        SessionView {
            id,
            nonce: b64(&nonce),
            identity: None,
        }
    }

    /// The live session `id` (its use counts: the idle clock restarts), with its raw nonce.
    pub fn touch(&self, id: &str) -> Option<(SessionView, [u8; 16])> {
        let now = Instant::now();
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(s) if !s.expired(now) => {
                s.last_used = now;
                Some((
                    SessionView {
                        id: id.to_string(),
                        nonce: b64(&s.nonce),
                        identity: s.identity.clone(),
                    },
                    s.nonce,
                ))
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Bind `identity` to session `id` (after its answer verified). False if it is gone.
    pub fn authenticate(&self, id: &str, identity: Identity) -> bool {
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(s) => {
                s.identity = Some(identity);
                s.last_used = Instant::now();
                true
            }
            None => false,
        }
    }

    /// End session `id`; false if there was none.
    pub fn close(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
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
    fn a_full_table_drops_the_least_recently_used() {
        let sessions = Sessions::default();
        let first = sessions.open();
        for _ in 0..MAX_SESSIONS {
            sessions.open();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.touch(&first.id).is_none(), "the oldest went first");
    }
}
