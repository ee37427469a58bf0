//! Resolution: [`Client::resolve`] (UDP, or TCP when the server asks for it), certified and
//! authenticated resolution, the server's own HS_SITE, and [`Client::routed`], the client
//! for the server of a multi-server site that holds a handle by the site's hash.

use std::net::SocketAddr;

use super::{request_expiration, Authenticator, Client, ClientError, Response, DEFAULT_FLAGS};
use crate::model::{code, SiteInfo, Transport};
use crate::wire::handle::exchange::{build_request, encode_request, new_request_id};
use crate::wire::handle::message::{flag, op, Body, Message, OUR_VERSION};

pub(super) fn resolution_body(handle: &str, indexes: &[u32], types: &[String]) -> Body {
    Body::Resolution {
        handle: handle.to_string(),
        indexes: indexes.to_vec(),
        types: types.to_vec(),
    }
}

pub(super) fn resolution_flags(public_only: bool) -> u32 {
    if public_only {
        DEFAULT_FLAGS
    } else {
        DEFAULT_FLAGS & !flag::PUBLIC_ONLY
    }
}

impl Client {
    /// Resolve `handle` (all values when `indexes` and `types` are both empty, else their
    /// union). `public_only` sets the PO flag; without it a server may answer 402 for
    /// restricted values, which this method returns as is (see
    /// [`resolve_authenticated`](Self::resolve_authenticated)).
    pub fn resolve(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        transport: Transport,
        public_only: bool,
    ) -> Result<Response, ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::RESOLUTION,
            resolution_flags(public_only),
            resolution_body(handle, indexes, types),
        );
        match transport {
            Transport::Udp => {
                let m = self.udp_exchange(&request)?;
                // RC 2 (and a truncated answer) sends Handle.Net clients to TCP: the server
                // says the answer is too large for UDP, or needs authentication.
                if m.asks_for_tcp() {
                    return self.tcp_exchange(&request, handle, None);
                }
                Ok(Response::from_message(&m, handle))
            }
            Transport::Tcp => self.tcp_exchange(&request, handle, None),
        }
    }

    /// Resolve with the CT flag set and check the answer's `HS_SIGNED` credential with `key`
    /// (the public key of the server's HS_SITE entry): the answer, and what the check found.
    /// Over UDP an RC 2 or truncated answer is asked again over TCP, as for [`Self::resolve`].
    pub fn resolve_certified(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        transport: Transport,
        public_only: bool,
        key: &crate::model::PublicKey,
    ) -> Result<(Response, crate::auth::credential::Certification), ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::RESOLUTION,
            resolution_flags(public_only) | flag::CERTIFY,
            resolution_body(handle, indexes, types),
        );
        let over_tcp = |client: &Client| -> Result<Message, ClientError> {
            let mut stream = client.connect()?;
            let encoded = encode_request(&request)?;
            client.send_and_read(&mut stream, &encoded, request.envelope.request_id)
        };
        let m = match transport {
            Transport::Udp => {
                let m = self.udp_exchange(&request)?;
                if m.asks_for_tcp() {
                    over_tcp(self)?
                } else {
                    m
                }
            }
            Transport::Tcp => over_tcp(self)?,
        };
        let certification = crate::auth::credential::certification(key, &m);
        Ok((Response::from_message(&m, handle), certification))
    }

    /// The server's own HS_SITE (GET_SITE_INFO).
    pub fn site_info(&self, transport: Transport) -> Result<SiteInfo, ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::GET_SITE_INFO,
            0,
            Body::Handle {
                handle: "/".to_string(),
            },
        );
        let m = match transport {
            Transport::Udp => self.udp_exchange(&request)?,
            Transport::Tcp => {
                let mut stream = self.connect()?;
                self.send_and_read(&mut stream, &request.encode(), request.envelope.request_id)?
            }
        };
        match (m.header.response_code, m.body) {
            (1, Body::SiteInfo { site }) => SiteInfo::decode(&site)
                .map_err(|e| ClientError::Unexpected(format!("undecodable HS_SITE: {e}"))),
            (code, _) => Err(ClientError::Unexpected(format!(
                "GET_SITE_INFO answered RC {code} {}",
                code::name(code)
            ))),
        }
    }

    /// The client for the server of `site` that holds `handle` by the site's hash rule
    /// (handle-protocol.md §5), reached over `transport`; `None` if that server offers no
    /// query interface for it.
    pub fn routed(&self, site: &SiteInfo, handle: &str, transport: Transport) -> Option<Client> {
        let server = crate::resolve::site::server_for(site, handle)?;
        let port = crate::resolve::site::query_port(server, transport.interface_protocol())?;
        Some(Client {
            server: SocketAddr::new(server.ip(), port),
            timeout: self.timeout,
        })
    }

    /// Resolve over TCP without the PO flag, answering the server's challenge as `auth`
    /// (values readable only by administrators).
    pub fn resolve_authenticated(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
        auth: &Authenticator,
    ) -> Result<Response, ClientError> {
        let request = build_request(
            OUR_VERSION,
            0,
            new_request_id(),
            request_expiration(),
            op::RESOLUTION,
            resolution_flags(false),
            resolution_body(handle, indexes, types),
        );
        self.tcp_exchange(&request, handle, Some(auth))
    }
}
