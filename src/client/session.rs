//! Administrative requests (always TCP, always authenticated): one by plain
//! challenge/response ([`Client::admin`]), or many of one identity through a Handle.Net
//! session ([`AdminSession`]: one DH setup, one challenge, then MAC'ed requests), falling back
//! to challenge/response when the server has no sessions.

use super::io::check_challenge_digest;
use super::{
    admin_request, rc, request_now, AdminRequest, Authenticator, Client, ClientError, Response,
    DEFAULT_FLAGS,
};
use crate::model::{code, Transport};
use crate::wire::handle::exchange::encode_request;
use crate::wire::handle::message::{
    flag, header_and_body, key_exchange, op, Body, KeyExchange, Message, ENVELOPE_LEN,
};

impl Client {
    /// Send an administrative request over TCP and answer the server's challenge as `auth`.
    /// A server that answers without challenging gets its answer returned as is.
    pub fn admin(
        &self,
        request: AdminRequest,
        auth: &Authenticator,
    ) -> Result<Response, ClientError> {
        let message = admin_request(&request, 0);
        self.tcp_exchange(&message, request.handle(), Some(auth))
    }
}

/// How long an admin session may sit idle (the server caps it; 10 minutes covers a batch).
pub const ADMIN_SESSION_TIMEOUT_SECS: u32 = 600;

/// An open session: its id, key and our message counter.
struct OpenSession {
    id: u32,
    key: [u8; crate::auth::session::SESSION_KEY_LEN],
    counter: u32,
}

/// Administrative requests of one identity to one server through one Handle.Net session
/// when the server supports it ([`Client::admin_session`]):
///
/// ```text
/// setup (TCP): 400 {mode 4, DH key in Oakley group 2} ─► RC 1 {session id, server DH key}
/// each request: session id + HS_MAC (HMAC-SHA256 with the session key, counter 1, 2, ...)
/// first one: 402 on the session ─► answer as the identity ─► the session is authenticated
/// the rest: answered at once, no challenge;  close(): 401 (MAC'ed) ends the session
/// ```
///
/// When the setup fails (an older server, RC 5, a bad answer) or the session breaks (RC ≥
/// 500), requests go by plain challenge/response, one challenge each.
pub struct AdminSession<'a> {
    client: &'a Client,
    auth: &'a Authenticator,
    session: Option<OpenSession>,
    /// Why the session could not be set up or was dropped, if it was.
    pub fallback_reason: Option<String>,
}

impl Client {
    /// Open an [`AdminSession`] as `auth` (falls back to plain challenge/response).
    pub fn admin_session<'a>(&'a self, auth: &'a Authenticator) -> AdminSession<'a> {
        let (session, fallback_reason) = match self.setup_session(auth) {
            Ok(s) => (Some(s), None),
            Err(e) => {
                tracing::debug!(error = %e, "no session: plain challenge/response");
                (None, Some(e.to_string()))
            }
        };
        AdminSession {
            client: self,
            auth,
            session,
            fallback_reason,
        }
    }

    /// OC_SESSION_SETUP over TCP with a fresh DH key. The answer must carry the digest of our
    /// request, and a valid HS_SIGNED credential when the server's HS_SITE publishes a key.
    fn setup_session(&self, auth: &Authenticator) -> Result<OpenSession, ClientError> {
        use crate::auth::session::{self as hs, DhKey};
        let (identity_handle, identity_index) = auth.parts();
        let p = rsa::BigUint::parse_bytes(hs::OAKLEY_GROUP2_P_HEX.as_bytes(), 16)
            .ok_or_else(|| ClientError::Unexpected("DH group".into()))?;
        let group = DhKey {
            y: rsa::BigUint::from(2u32),
            p: p.clone(),
            g: rsa::BigUint::from(2u32),
        };
        let x = hs::random_private(&p);
        let ours = hs::public_value(&group, &x);
        let request = request_now(
            0,
            op::SESSION_SETUP,
            DEFAULT_FLAGS | flag::CERTIFY | flag::RETURN_DIGEST,
            Body::SessionSetup {
                mode: key_exchange::DH,
                timeout: ADMIN_SESSION_TIMEOUT_SECS,
                identity_handle: identity_handle.to_string(),
                identity_index,
                exchange: KeyExchange::PublicKey(ours.public_key().encode()),
            },
        );
        let encoded = encode_request(&request)?;
        let mut stream = self.connect()?;
        let answer = self.send_and_read(&mut stream, &encoded, request.envelope.request_id)?;
        drop(stream);
        if answer.header.response_code != rc::SUCCESS {
            return Err(ClientError::Unexpected(format!(
                "session setup answered RC {} {}",
                answer.header.response_code,
                code::name(answer.header.response_code)
            )));
        }
        let hb = header_and_body(&encoded[ENVELOPE_LEN..])
            .ok_or_else(|| ClientError::Unexpected("our own request has no body".into()))?;
        check_challenge_digest(&answer, hb)?;
        self.check_setup_signature(&answer)?;
        let Body::SessionSetupAnswer { mode, data } = &answer.body else {
            return Err(ClientError::Unexpected(
                "a setup answer without its body".into(),
            ));
        };
        let server = match (mode, data.get(..4), data.get(4..)) {
            (&key_exchange::DH, Some(alg), Some(key)) if alg == [0, 0, 0, 3] => DhKey::decode(key)
                .map_err(|e| ClientError::Unexpected(format!("server DH key: {e}")))?,
            _ => {
                return Err(ClientError::Unexpected(
                    "the setup answer is not a mode-4 (DH, AES) answer".into(),
                ))
            }
        };
        if server.p != p || server.g != group.g || answer.envelope.session_id == 0 {
            return Err(ClientError::Unexpected(
                "the server's DH key is not in our group, or no session id".into(),
            ));
        }
        let key = hs::session_key(&server, &x)
            .map_err(|e| ClientError::Unexpected(format!("session key: {e}")))?;
        Ok(OpenSession {
            id: answer.envelope.session_id,
            key,
            counter: 0,
        })
    }

    /// If this server publishes a key in its HS_SITE, the setup answer must be signed by it
    /// (otherwise a man in the middle could hold the session key).
    fn check_setup_signature(&self, answer: &Message) -> Result<(), ClientError> {
        use crate::auth::credential::{self, Credential};
        let site = self.site_info(Transport::Tcp)?;
        let ip = self.server.ip();
        let server = site
            .servers
            .iter()
            .find(|s| s.ip() == ip)
            .or_else(|| (site.servers.len() == 1).then(|| &site.servers[0]));
        let Some(key) = server
            .filter(|s| !s.public_key.is_empty())
            .and_then(|s| crate::model::PublicKey::decode(&s.public_key).ok())
        else {
            return Ok(()); // nothing to check against
        };
        let bad = |why: &str| ClientError::Unexpected(format!("session setup answer: {why}"));
        let section = answer
            .credential
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("not signed, though the server's HS_SITE has a key"))?;
        let cred = Credential::decode(section).map_err(|e| bad(&e.to_string()))?;
        let bytes = answer.encode_message();
        let hb = header_and_body(&bytes).ok_or_else(|| bad("no body"))?;
        match credential::verify_signed(&key, &answer.envelope, hb, &cred) {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad("the signature does not verify with the HS_SITE key")),
            Err(e) => Err(bad(&e.to_string())),
        }
    }
}

impl AdminSession<'_> {
    /// Whether requests go through a session (else plain challenge/response).
    pub fn in_session(&self) -> bool {
        self.session.is_some()
    }

    /// Send one administrative request: MAC'ed in the session (challenged only until the
    /// session is authenticated), or by plain challenge/response.
    pub fn admin(&mut self, request: AdminRequest) -> Result<Response, ClientError> {
        let Some(s) = self.session.as_mut() else {
            return self.client.admin(request, self.auth);
        };
        let mut message = admin_request(&request, s.id);
        s.counter += 1;
        sign_in_session(&mut message, s)?;
        let r = self
            .client
            .tcp_exchange(&message, request.handle(), Some(self.auth))?;
        if r.code >= 500 && r.code < 600 {
            // The session is gone or refused us (expired, restarted server, bad key): drop
            // it and send the request again without (the server did not perform it).
            self.fallback_reason = Some(format!(
                "session dropped after RC {} {}",
                r.code,
                code::name(r.code)
            ));
            self.session = None;
            return self.client.admin(request, self.auth);
        }
        Ok(r)
    }

    /// End the session (OC_SESSION_TERMINATE, MAC'ed); best effort.
    pub fn close(mut self) {
        let Some(mut s) = self.session.take() else {
            return;
        };
        let mut message = request_now(
            s.id,
            op::SESSION_TERMINATE,
            DEFAULT_FLAGS,
            Body::Handle {
                handle: "/".to_string(),
            },
        );
        s.counter += 1;
        if sign_in_session(&mut message, &s).is_ok() {
            if let Err(e) = self.client.tcp_exchange(&message, "/", None) {
                tracing::debug!(error = %e, "session terminate");
            }
        }
    }
}

/// Put the session's HS_MAC (with its current counter) on `m`.
fn sign_in_session(m: &mut Message, s: &OpenSession) -> Result<(), ClientError> {
    m.credential = Some(Vec::new());
    let bytes = m.encode_message();
    let hb = header_and_body(&bytes)
        .ok_or_else(|| ClientError::Unexpected("our own request has no body".into()))?;
    let c = crate::auth::credential::mac(&s.key, &m.envelope, s.counter, hb)
        .map_err(|e| ClientError::Unexpected(e.to_string()))?;
    m.credential = Some(c.encode());
    Ok(())
}
