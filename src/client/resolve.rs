//! Resolution: [`Client::resolve`] (UDP, or TCP when the server asks for it), certified and
//! authenticated resolution, the server's own HS_SITE, and [`Client::routed`], the client
//! for the server of a multi-server site that holds a handle by the site's hash.

use std::net::SocketAddr;

use super::{request_now, Authenticator, Client, ClientError, Lookup, Response, DEFAULT_FLAGS};
use crate::model::{code, SiteInfo, Transport};
use crate::wire::handle::exchange::encode_request;
use crate::wire::handle::message::{flag, op, Body, Message};

/// The flags of a resolution request: [`DEFAULT_FLAGS`], PO dropped unless `public_only`.
pub(super) fn resolution_flags(public_only: bool) -> u32 {
    if public_only {
        DEFAULT_FLAGS
    } else {
        DEFAULT_FLAGS & !flag::PUBLIC_ONLY
    }
}

impl Lookup<'_> {
    /// The resolution request asking for it, sent now with `op_flag`.
    pub(super) fn request(&self, op_flag: u32) -> Message {
        request_now(
            0,
            op::RESOLUTION,
            op_flag,
            Body::Resolution {
                handle: self.handle.to_string(),
                indexes: self.indexes.to_vec(),
                types: self.types.to_vec(),
            },
        )
    }
}

impl Client {
    /// Resolve `lookup`. `public_only` sets the PO flag; without it a server may answer 402
    /// for restricted values, which this method returns as is (see
    /// [`resolve_authenticated`](Self::resolve_authenticated)).
    pub fn resolve(
        &self,
        lookup: Lookup<'_>,
        transport: Transport,
        public_only: bool,
    ) -> Result<Response, ClientError> {
        let request = lookup.request(resolution_flags(public_only));
        self.udp_first(
            &request,
            transport,
            |m| Response::from_message(&m, lookup.handle),
            || self.tcp_exchange(&request, lookup.handle, None),
        )
    }

    /// Resolve with the CT flag set and check the answer's `HS_SIGNED` credential with `key`
    /// (the public key of the server's HS_SITE entry): the answer, and what the check found.
    /// Over UDP an RC 2 or truncated answer is asked again over TCP, as for [`Self::resolve`].
    pub fn resolve_certified(
        &self,
        lookup: Lookup<'_>,
        transport: Transport,
        public_only: bool,
        key: &crate::model::PublicKey,
    ) -> Result<(Response, crate::auth::credential::Certification), ClientError> {
        let request = lookup.request(resolution_flags(public_only) | flag::CERTIFY);
        // One message: the signature covers it alone.
        let m = self.udp_first(
            &request,
            transport,
            |m| m,
            || {
                let mut stream = self.connect()?;
                let encoded = encode_request(&request)?;
                self.send_and_read(&mut stream, &encoded, request.envelope.request_id)
            },
        )?;
        let certification = crate::auth::credential::certification(key, &m);
        Ok((Response::from_message(&m, lookup.handle), certification))
    }

    /// Resolve over TCP without the PO flag, answering the server's challenge as `auth`
    /// (values readable only by administrators).
    pub fn resolve_authenticated(
        &self,
        lookup: Lookup<'_>,
        auth: &Authenticator,
    ) -> Result<Response, ClientError> {
        let request = lookup.request(resolution_flags(false));
        self.tcp_exchange(&request, lookup.handle, Some(auth))
    }

    /// Over UDP, the answer to `request` (through `from_udp`) unless it sends the client to
    /// TCP: RC 2 or a truncated answer, which Handle.Net clients take as "too large for UDP,
    /// or authentication needed"; then, and over TCP at once, `over_tcp`.
    fn udp_first<T>(
        &self,
        request: &Message,
        transport: Transport,
        from_udp: impl FnOnce(Message) -> T,
        over_tcp: impl FnOnce() -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        match transport {
            Transport::Udp => {
                let m = self.udp_exchange(request)?;
                if m.asks_for_tcp() {
                    return over_tcp();
                }
                Ok(from_udp(m))
            }
            Transport::Tcp => over_tcp(),
        }
    }

    /// The server's own HS_SITE (GET_SITE_INFO).
    pub fn site_info(&self, transport: Transport) -> Result<SiteInfo, ClientError> {
        let request = request_now(
            0,
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
}
