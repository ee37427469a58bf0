//! Resolution as `idnode resolve` does it, on top of the plain exchanges: following a
//! multi-server site's hash to the server that holds a handle, and finding the key a
//! certified answer must verify with.

use super::{Authenticator, Client, ClientError, Lookup, Response, Transport};
use crate::model::PublicKey;

/// Why a certified resolution cannot even be asked for.
#[derive(Debug, thiserror::Error)]
pub enum SiteKeyError {
    #[error("asking {server} for its HS_SITE: {error}")]
    Site {
        server: std::net::SocketAddr,
        error: ClientError,
    },
    #[error("the server's HS_SITE lists no servers")]
    NoServers,
    #[error("the server publishes no key in its HS_SITE: its answers cannot be certified")]
    NoKey,
    #[error("the key in the server's HS_SITE: {0}")]
    BadKey(String),
}

impl Client {
    /// Resolve `lookup` (authenticated when `auth` is given, else public values only when
    /// `public_only`); on 301 from one server of a multi-server site, ask again at the server
    /// the site's hash rule names, as Handle clients do. Returns the answer and, when it was
    /// re-routed, the server that gave it.
    pub fn resolve_routed(
        &self,
        lookup: Lookup<'_>,
        transport: Transport,
        public_only: bool,
        auth: Option<&Authenticator>,
    ) -> Result<(Response, Option<std::net::SocketAddr>), ClientError> {
        let ask = |client: &Client| match auth {
            Some(a) => client.resolve_authenticated(lookup, a),
            None => client.resolve(lookup, transport, public_only),
        };
        let response = ask(self)?;
        if response.code != 301 {
            return Ok((response, None));
        }
        let Ok(site) = self.site_info(transport) else {
            return Ok((response, None));
        };
        if site.servers.len() <= 1 {
            return Ok((response, None));
        }
        match self.routed(&site, lookup.handle, transport) {
            Some(routed) if routed.server() != self.server() => {
                Ok((ask(&routed)?, Some(routed.server())))
            }
            _ => Ok((response, None)),
        }
    }

    /// The key this server signs with: its entry in its own HS_SITE (by address, else the
    /// first server listed).
    pub fn site_key(&self, transport: Transport) -> Result<PublicKey, SiteKeyError> {
        let site = self
            .site_info(transport)
            .map_err(|error| SiteKeyError::Site {
                server: self.server(),
                error,
            })?;
        let ip = self.server().ip();
        let server = site
            .servers
            .iter()
            .find(|s| s.ip() == ip)
            .or_else(|| site.servers.first())
            .ok_or(SiteKeyError::NoServers)?;
        if server.public_key.is_empty() {
            return Err(SiteKeyError::NoKey);
        }
        PublicKey::decode(&server.public_key).map_err(|e| SiteKeyError::BadKey(e.to_string()))
    }
}
