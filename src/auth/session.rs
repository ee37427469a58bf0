//! Handle.Net 9 sessions, sans IO (handle-protocol.md §2; the vectors' `HN_SESSION` state
//! machine): the Diffie-Hellman key agreement of OC_SESSION_SETUP (key exchange mode 4), the
//! session key, the HMAC-SHA256 message codes of session messages, and a bounded table of
//! live sessions with the time passed in.
//!
//! ```text
//! C→S 400 {mode 4, timeout, identity, DH_PUB_KEY y_c in group (p, g)}
//! S→C RC 1, new session id {mode 4, int4 3 (AES) || DH_PUB_KEY y_s}     y_s = g^x_s mod p
//! both: secret = y^x mod p (modulus-length big-endian), key = strip 0x00 bytes, first 32
//! C→S requests with the session id and an HS_MAC credential (counter = signerIndex):
//!     HMAC-SHA256(key, maj min sugMaj sugMin || sessionId || requestId || counter || header+body)
//! ```
//!
//! The MACs themselves (the bytes covered, HS_MAC credentials) are [`crate::auth::credential`]'s.
//! The table keeps nothing on disk. A session that has not been authenticated is state
//! created by an unauthenticated sender, so it lives at most [`UNAUTHENTICATED_TTL`]; an
//! authenticated one lives until idle for its timeout (the client's, capped by
//! `handle.session_timeout_secs`). Sessions are bounded per creating address and in total;
//! when the table is full the oldest session of the address holding the most goes (never the
//! newcomer's last chance), as in [`crate::auth::pending::PendingTable`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use rsa::BigUint;

use crate::auth::Identity;
use crate::model::PublicKey;

/// Default life of a session nobody has authenticated yet (set up, challenge not answered):
/// as long as a 402 challenge may wait for its answer (Handle.Net's `max_auth_time`);
/// `handle.unauthenticated_session_secs` sets it, up to [`MAX_UNAUTHENTICATED_SECS`].
pub const UNAUTHENTICATED_TTL: Duration = Duration::from_secs(20);
/// The longest `handle.unauthenticated_session_secs` accepted.
pub const MAX_UNAUTHENTICATED_SECS: u64 = 60;
/// Sessions at once, all addresses together.
pub const MAX_SESSIONS: usize = 10_000;
/// Default of `handle.max_sessions_per_client`.
pub const DEFAULT_MAX_SESSIONS_PER_CLIENT: usize = 32;
/// Default of `handle.session_timeout_secs` (Handle.Net's `DEFAULT_SESSION_TIMEOUT`).
pub const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 86_400;
/// Client counters remembered per session (Handle.Net keeps about 200).
pub const REPLAY_WINDOW: usize = 200;
/// Encryption algorithm code announced in the setup answer (Handle.Net `ENCRYPT_ALG_AES`).
pub const ENCRYPT_ALG_AES: u32 = 3;
/// Session key length (HMAC-SHA256 key; AES-128 would use its first 16 bytes).
pub const SESSION_KEY_LEN: usize = 32;
/// Accepted DH modulus sizes (bits); Handle.Net clients use 1024 (RFC 2409 Oakley group 2).
pub const DH_MIN_BITS: usize = 1024;
pub const DH_MAX_BITS: usize = 2048;
/// Bits of the server's random private exponent.
pub const DH_PRIVATE_BITS: usize = 256;

/// RFC 2409 §6.2, the second Oakley group (1024-bit MODP), generator 2: what the JDK's
/// `KeyPairGenerator("DH").initialize(1024)` uses, so what Handle.Net clients send.
pub const OAKLEY_GROUP2_P_HEX: &str = "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd1\
29024e088a67cc74020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c\
245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ec\
e65381ffffffffffffffff";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session key is not a DH_PUB_KEY")]
    NotDh,
    #[error("DH modulus of {0} bits (accepted: {DH_MIN_BITS}..={DH_MAX_BITS})")]
    ModulusSize(usize),
    #[error("DH parameter {0} out of range")]
    OutOfRange(&'static str),
    #[error("the DH shared secret is too short for a {SESSION_KEY_LEN}-byte key")]
    ShortSecret,
    #[error("the encrypted message does not decrypt with the session key")]
    Decrypt,
}

/// AES block and IV size.
pub const AES_IV_LEN: usize = 16;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Encrypt a message (everything after the envelope) as Handle.Net does inside a session
/// (protocol ≥ 2.4, `SessionInfo.encryptBuffer`): a fresh random 16-byte IV, then AES-128-CBC
/// with PKCS#5 padding under the first 16 bytes of the session key.
pub fn encrypt_message(key: &[u8; SESSION_KEY_LEN], plain: &[u8]) -> Vec<u8> {
    use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    let mut iv = [0u8; AES_IV_LEN];
    rand::thread_rng().fill_bytes(&mut iv);
    let cipher = Aes128CbcEnc::new(key[..16].into(), (&iv).into());
    let mut out = iv.to_vec();
    out.extend_from_slice(&cipher.encrypt_padded_vec_mut::<Pkcs7>(plain));
    out
}

/// Decrypt what [`encrypt_message`] produced (IV first). Wrong key, length or padding:
/// [`SessionError::Decrypt`].
pub fn decrypt_message(key: &[u8; SESSION_KEY_LEN], data: &[u8]) -> Result<Vec<u8>, SessionError> {
    use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    if data.len() < 2 * AES_IV_LEN || data.len() % AES_IV_LEN != 0 {
        return Err(SessionError::Decrypt);
    }
    let (iv, body) = data.split_at(AES_IV_LEN);
    let cipher = Aes128CbcDec::new(key[..16].into(), iv.into());
    cipher
        .decrypt_padded_vec_mut::<Pkcs7>(body)
        .map_err(|_| SessionError::Decrypt)
}

/// An unsigned integer as Java's `BigInteger.toByteArray` writes a positive one: big-endian,
/// with a leading 0x00 when the top bit is set.
pub fn java_unsigned(n: &BigUint) -> Vec<u8> {
    let mut b = n.to_bytes_be();
    if b.first().is_some_and(|x| x & 0x80 != 0) {
        b.insert(0, 0);
    }
    b
}

/// A two's-complement integer from the wire that must be positive.
fn positive(bytes: &[u8], what: &'static str) -> Result<BigUint, SessionError> {
    if bytes.is_empty() || bytes[0] & 0x80 != 0 {
        return Err(SessionError::OutOfRange(what));
    }
    Ok(BigUint::from_bytes_be(bytes))
}

/// A checked DH public key: modulus of [`DH_MIN_BITS`]..=[`DH_MAX_BITS`] bits, 1 < g < p−1,
/// 1 < y < p−1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhKey {
    pub p: BigUint,
    pub g: BigUint,
    pub y: BigUint,
}

impl DhKey {
    pub fn from_public_key(key: &PublicKey) -> Result<DhKey, SessionError> {
        let PublicKey::Dh { y, p, g } = key else {
            return Err(SessionError::NotDh);
        };
        let p = positive(p, "p")?;
        let bits = p.bits();
        if !(DH_MIN_BITS..=DH_MAX_BITS).contains(&bits) || (&p % 2u32) == BigUint::from(0u32) {
            return Err(SessionError::ModulusSize(bits));
        }
        let one = BigUint::from(1u32);
        let p_minus_1 = &p - &one;
        let g = positive(g, "g")?;
        if g <= one || g >= p_minus_1 {
            return Err(SessionError::OutOfRange("g"));
        }
        let y = positive(y, "y")?;
        if y <= one || y >= p_minus_1 {
            return Err(SessionError::OutOfRange("y"));
        }
        Ok(DhKey { p, g, y })
    }

    /// Decode an encoded `DH_PUB_KEY` and check it.
    pub fn decode(bytes: &[u8]) -> Result<DhKey, SessionError> {
        let key = PublicKey::decode(bytes).map_err(|_| SessionError::NotDh)?;
        DhKey::from_public_key(&key)
    }

    /// The key as a `DH_PUB_KEY` (integers as Java writes them).
    pub fn public_key(&self) -> PublicKey {
        PublicKey::Dh {
            y: java_unsigned(&self.y),
            p: java_unsigned(&self.p),
            g: java_unsigned(&self.g),
        }
    }
}

/// A random private exponent for group `p`: [`DH_PRIVATE_BITS`] random bits, kept in 2..p−2.
pub fn random_private(p: &BigUint) -> BigUint {
    let mut bytes = [0u8; DH_PRIVATE_BITS / 8];
    loop {
        rand::thread_rng().fill_bytes(&mut bytes);
        let x = BigUint::from_bytes_be(&bytes);
        if x > BigUint::from(1u32) && &x < p {
            return x;
        }
    }
}

/// Our public value in the peer's group: `g^x mod p`.
pub fn public_value(group: &DhKey, x: &BigUint) -> DhKey {
    DhKey {
        p: group.p.clone(),
        g: group.g.clone(),
        y: group.g.modpow(x, &group.p),
    }
}

/// The session key both sides derive: `peer.y^x mod p` as big-endian bytes padded to the
/// modulus length, leading 0x00 bytes stripped, the first [`SESSION_KEY_LEN`] bytes.
pub fn session_key(peer: &DhKey, x: &BigUint) -> Result<[u8; SESSION_KEY_LEN], SessionError> {
    let shared = peer.y.modpow(x, &peer.p).to_bytes_be();
    let start = shared
        .iter()
        .position(|b| *b != 0)
        .ok_or(SessionError::ShortSecret)?;
    let rest = &shared[start..];
    let key = rest
        .get(..SESSION_KEY_LEN)
        .ok_or(SessionError::ShortSecret)?;
    let mut out = [0u8; SESSION_KEY_LEN];
    out.copy_from_slice(key);
    Ok(out)
}

/// What the server answers a mode-4 setup with, and keeps.
pub struct DhAnswer {
    /// `int4 3 (AES) || DH_PUB_KEY` of the server: the setup answer's data.
    pub data: Vec<u8>,
    pub key: [u8; SESSION_KEY_LEN],
}

/// Server side of the key agreement for the client's encoded `DH_PUB_KEY`, with a fresh
/// random private value.
pub fn dh_answer(client_key: &[u8]) -> Result<DhAnswer, SessionError> {
    let client = DhKey::decode(client_key)?;
    let x = random_private(&client.p);
    dh_answer_with(&client, &x)
}

/// [`dh_answer`] with a given private value (the tests use the vectors' fixed one).
pub fn dh_answer_with(client: &DhKey, x: &BigUint) -> Result<DhAnswer, SessionError> {
    let key = session_key(client, x)?;
    let ours = public_value(client, x).public_key().encode();
    let mut data = Vec::with_capacity(4 + ours.len());
    data.extend_from_slice(&ENCRYPT_ALG_AES.to_be_bytes());
    data.extend_from_slice(&ours);
    Ok(DhAnswer { data, key })
}

// ---------------------------------------------------------------------------------------------
// The table

/// Bounds of a [`SessionTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions at once, all addresses together.
    pub max_entries: usize,
    /// Sessions at once created from one address.
    pub max_per_source: usize,
    /// Life of a session until it is authenticated.
    pub unauthenticated_ttl: Duration,
    /// Longest idle timeout granted (the client asks for one in its setup).
    pub max_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_entries: MAX_SESSIONS,
            max_per_source: DEFAULT_MAX_SESSIONS_PER_CLIENT,
            unauthenticated_ttl: UNAUTHENTICATED_TTL,
            max_timeout: Duration::from_secs(DEFAULT_SESSION_TIMEOUT_SECS),
        }
    }
}

/// Why [`SessionTable::insert`] refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionFull {
    #[error("too many sessions from this address")]
    Source,
    #[error("too many sessions")]
    Total,
}

/// Why a client counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("duplicate session counter {0}")]
pub struct Replayed(pub u32);

/// One live session.
#[derive(Debug)]
pub struct Session {
    pub key: [u8; SESSION_KEY_LEN],
    /// The identity named in the setup (`None`: anonymous, never authenticated).
    pub requested: Option<Identity>,
    /// Set once a challenge answer for `requested` verified.
    pub authenticated: Option<Identity>,
    /// The protocol version negotiated at setup.
    pub version: (u8, u8),
    /// The request id of the last request whose MAC verified and that was challenged: the
    /// answer to that challenge may authenticate the session.
    pub challenged_request: Option<u32>,
    source: IpAddr,
    timeout: Duration,
    last_used: Instant,
    created: Instant,
    seen: VecDeque<u32>,
    server_counter: u32,
}

impl Session {
    /// A new, unauthenticated session; `timeout` is what the client asked for (capped by the
    /// table).
    pub fn new(
        key: [u8; SESSION_KEY_LEN],
        requested: Option<Identity>,
        version: (u8, u8),
        timeout: Duration,
        now: Instant,
    ) -> Session {
        Session {
            key,
            requested,
            authenticated: None,
            version,
            challenged_request: None,
            source: IpAddr::from([0, 0, 0, 0]),
            timeout,
            last_used: now,
            created: now,
            seen: VecDeque::new(),
            server_counter: 0,
        }
    }

    /// Record a client counter: refused if it was seen (among the last [`REPLAY_WINDOW`]).
    pub fn accept_counter(&mut self, counter: u32) -> Result<(), Replayed> {
        if self.seen.contains(&counter) {
            return Err(Replayed(counter));
        }
        if self.seen.len() >= REPLAY_WINDOW {
            self.seen.pop_front();
        }
        self.seen.push_back(counter);
        Ok(())
    }

    /// The counter for the next MAC-signed answer (1, 2, ...).
    pub fn next_server_counter(&mut self) -> u32 {
        self.server_counter = self.server_counter.wrapping_add(1);
        self.server_counter
    }

    /// Mark the session authenticated for `who` if that is the identity of the setup.
    pub fn authenticate(&mut self, who: &Identity) -> bool {
        if self.requested.as_ref() == Some(who) {
            self.authenticated = Some(who.clone());
            true
        } else {
            false
        }
    }

    fn expires(&self, limits: &SessionLimits) -> Instant {
        let idle = self.timeout.min(limits.max_timeout);
        match self.authenticated {
            Some(_) => self.last_used + idle,
            // Unauthenticated: a hard limit from creation, whatever the use.
            None => (self.created + limits.unauthenticated_ttl).min(self.last_used + idle),
        }
    }
}

/// Live sessions under random 31-bit ids (never 0).
pub struct SessionTable {
    limits: SessionLimits,
    entries: HashMap<u32, Session>,
    per_source: HashMap<IpAddr, usize>,
}

impl SessionTable {
    pub fn new(limits: SessionLimits) -> SessionTable {
        SessionTable {
            limits,
            entries: HashMap::new(),
            per_source: HashMap::new(),
        }
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sessions created from `source`.
    pub fn count_for(&self, source: IpAddr) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// Whether `id` names a session (live or not yet swept).
    pub fn contains(&self, id: u32) -> bool {
        self.entries.contains_key(&id)
    }

    /// Keep `session` for `source`; `new_id` draws candidate ids and `taken` says which are
    /// in use elsewhere (the challenge table shares the id space). Returns the session id.
    pub fn insert(
        &mut self,
        source: IpAddr,
        mut session: Session,
        now: Instant,
        mut new_id: impl FnMut() -> u32,
        taken: impl Fn(u32) -> bool,
    ) -> Result<u32, SessionFull> {
        if self.count_for(source) >= self.limits.max_per_source {
            self.sweep(now);
            if self.count_for(source) >= self.limits.max_per_source {
                return Err(SessionFull::Source);
            }
        }
        if self.entries.len() >= self.limits.max_entries {
            self.sweep(now);
        }
        while self.entries.len() >= self.limits.max_entries {
            if !self.evict_from_largest(source) {
                return Err(SessionFull::Total);
            }
        }
        let mut tries = 0;
        let id = loop {
            let id = new_id() & 0x7fff_ffff;
            if id != 0 && !self.entries.contains_key(&id) && !taken(id) {
                break id;
            }
            tries += 1;
            if tries > 64 {
                return Err(SessionFull::Total);
            }
        };
        session.source = source;
        session.last_used = now;
        session.created = now;
        self.entries.insert(id, session);
        *self.per_source.entry(source).or_default() += 1;
        Ok(id)
    }

    /// The live session `id`, its idle time restarted; an expired one is dropped.
    pub fn get_mut(&mut self, id: u32, now: Instant) -> Option<&mut Session> {
        let expired = self.entries.get(&id)?.expires(&self.limits) <= now;
        if expired {
            self.remove(id);
            return None;
        }
        let s = self.entries.get_mut(&id)?;
        s.last_used = now;
        Some(s)
    }

    /// Drop session `id`.
    pub fn remove(&mut self, id: u32) -> Option<Session> {
        let s = self.entries.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&s.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&s.source);
            }
        }
        Some(s)
    }

    /// Drop every expired session; returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let limits = self.limits;
        let expired: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, s)| s.expires(&limits) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove(*id);
        }
        expired.len()
    }

    /// Drop the least recently used session of the address holding the most (not
    /// `newcomer`'s when it holds none). False if nothing could go.
    fn evict_from_largest(&mut self, newcomer: IpAddr) -> bool {
        let Some((&largest, _)) = self
            .per_source
            .iter()
            .max_by_key(|(ip, n)| (**n, **ip != newcomer))
        else {
            return false;
        };
        let oldest = self
            .entries
            .iter()
            .filter(|(_, s)| s.source == largest)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => self.remove(id).is_some(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
