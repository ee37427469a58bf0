//! The blocking driver of `wire::handle::exchange`: the sockets, Handle.Net's UDP retry
//! schedule, TCP framing with CN continuation, and the answer to a server's challenge
//! (checking first that the challenge names the request sent).
//!
//! Every request of [`Client`] goes through here; what to send and what the answer means
//! are the callers' (`resolve`, `session`) and the sans-IO exchange's.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Instant;

use rand::Rng;

use super::{
    now_unix, rc, request_now, Authenticator, Client, ClientError, Response, DEFAULT_FLAGS,
    MAX_CONTINUATION_MESSAGES, UDP_RETRY_SCHEDULE,
};
use crate::auth::challenge::{digest_of_type, DEFAULT_PBKDF2_SALT_LEN};
use crate::wire::handle::exchange::{
    check_continuation, check_response, encode_request, new_request_id, udp_datagrams, Feed,
    TcpFrame, UdpResponse,
};
use crate::wire::handle::message::{flag, header_and_body, op, Body, Message, ENVELOPE_LEN};

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer went away: Handle.Net servers close the connection after every response, the
/// challenge included, and expect the answer on a new connection.
fn is_closed(e: &ClientError) -> bool {
    matches!(e, ClientError::Io { error, .. } if matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ))
}

impl Client {
    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            server: self.server,
            error: source,
        }
    }

    fn timed_out(&self, note: Option<String>) -> ClientError {
        ClientError::Timeout {
            server: self.server,
            waited: self.timeout,
            note,
        }
    }

    fn io_or_timeout(&self, e: io::Error) -> ClientError {
        if is_timeout(&e) {
            self.timed_out(None)
        } else {
            self.io(e)
        }
    }

    // --- UDP ---------------------------------------------------------------------------------

    pub(super) fn udp_exchange(&self, request: &Message) -> Result<Message, ClientError> {
        let datagrams = udp_datagrams(request)?;
        let request_id = request.envelope.request_id;

        let bind: SocketAddr = if self.server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(bind).map_err(|e| self.io(e))?;
        // A connected socket only receives datagrams from the server's address.
        socket.connect(self.server).map_err(|e| self.io(e))?;

        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut reassembly = UdpResponse::new(request_id);
        let mut note: Option<String> = None;
        let mut buf = vec![0u8; 65_536];
        for wait in UDP_RETRY_SCHEDULE {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            for d in &datagrams {
                socket.send(d).map_err(|e| self.io(e))?;
            }
            let attempt_end = (now + wait).min(deadline);
            loop {
                let remaining = attempt_end.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                socket
                    .set_read_timeout(Some(remaining))
                    .map_err(|e| self.io(e))?;
                let n = match socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if is_timeout(&e) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.io(e)),
                };
                match reassembly.feed(&buf[..n]) {
                    Feed::Ignored(why) => {
                        tracing::debug!(%why, "ignored UDP datagram");
                        note = Some(why.to_string());
                    }
                    Feed::Pending => {}
                    Feed::Complete(envelope, message) => {
                        let m = Message::decode(envelope, &message)?;
                        check_response(&m, request_id, u64::from(now_unix()))?;
                        return Ok(m);
                    }
                }
            }
        }
        Err(ClientError::Timeout {
            server: self.server,
            waited: started.elapsed(),
            note: note.map(|n| format!("last ignored datagram: {n}")),
        })
    }

    // --- TCP ---------------------------------------------------------------------------------

    pub(super) fn connect(&self) -> Result<TcpStream, ClientError> {
        let stream = TcpStream::connect_timeout(&self.server, self.timeout)
            .map_err(|e| self.io_or_timeout(e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.io(e))?;
        // Requests are written in one piece; do not wait for more.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn read_message(&self, stream: &mut TcpStream) -> Result<Message, ClientError> {
        let mut frame = TcpFrame::new();
        loop {
            stream
                .read_exact(frame.unfilled())
                .map_err(|e| self.io_or_timeout(e))?;
            if let Some(m) = frame.filled()? {
                return Ok(m);
            }
        }
    }

    /// Write `encoded` and read one checked response.
    pub(super) fn send_and_read(
        &self,
        stream: &mut TcpStream,
        encoded: &[u8],
        request_id: u32,
    ) -> Result<Message, ClientError> {
        stream
            .write_all(encoded)
            .and_then(|()| stream.flush())
            .map_err(|e| self.io_or_timeout(e))?;
        let m = self.read_message(stream)?;
        check_response(&m, request_id, u64::from(now_unix()))?;
        Ok(m)
    }

    /// One request over TCP: the challenge answered when `auth` is given, CN followed.
    pub(super) fn tcp_exchange(
        &self,
        request: &Message,
        asked: &str,
        auth: Option<&Authenticator>,
    ) -> Result<Response, ClientError> {
        let encoded = encode_request(request)?;
        let request_id = request.envelope.request_id;
        let mut stream = self.connect()?;
        let first = self.send_and_read(&mut stream, &encoded, request_id)?;
        let auth = match auth {
            Some(a) if first.header.response_code == rc::AUTHENTICATION_NEEDED => a,
            _ => return self.collect(&mut stream, first, asked, request_id),
        };
        let Body::Challenge { nonce } = &first.body else {
            return Err(ClientError::Unexpected(
                "a 402 response without a challenge body".into(),
            ));
        };
        let hb = header_and_body(&encoded[ENVELOPE_LEN..]).ok_or_else(|| {
            ClientError::Unexpected("our own request has no header and body".into())
        })?;
        let digest = check_challenge_digest(&first, hb)?;
        let mut salt = [0u8; DEFAULT_PBKDF2_SALT_LEN];
        rand::thread_rng().fill(&mut salt[..]);
        let body = auth.answer(nonce, &digest, &salt)?;
        let mut answer = request_now(
            first.envelope.session_id,
            op::CHALLENGE_RESPONSE,
            DEFAULT_FLAGS,
            body,
        );
        // Its own request id, not the challenged request's.
        while answer.envelope.request_id == request_id {
            answer.envelope.request_id = new_request_id();
        }
        let answer_id = answer.envelope.request_id;
        let answer_bytes = encode_request(&answer)?;
        let last = match self.send_and_read(&mut stream, &answer_bytes, answer_id) {
            Err(e) if is_closed(&e) => {
                // Handle.Net: one request per connection; answer on a new one.
                stream = self.connect()?;
                self.send_and_read(&mut stream, &answer_bytes, answer_id)?
            }
            other => other?,
        };
        if last.header.response_code == rc::AUTHENTICATION_NEEDED {
            return Err(ClientError::Unexpected(
                "the server challenged the challenge answer".into(),
            ));
        }
        self.collect(&mut stream, last, asked, answer_id)
    }

    /// Follow CN continuations after `first`.
    fn collect(
        &self,
        stream: &mut TcpStream,
        first: Message,
        asked: &str,
        request_id: u32,
    ) -> Result<Response, ClientError> {
        let mut response = Response::from_message(&first, asked);
        let mut more = first.header.has(flag::CONTINUOUS);
        let mut count = 1usize;
        while more {
            count += 1;
            if count > MAX_CONTINUATION_MESSAGES {
                return Err(ClientError::Unexpected(format!(
                    "more than {MAX_CONTINUATION_MESSAGES} continued messages"
                )));
            }
            let m = self.read_message(stream)?;
            check_response(&m, request_id, u64::from(now_unix()))?;
            check_continuation(response.code, &m)?;
            more = m.header.has(flag::CONTINUOUS);
            response.absorb(&m);
        }
        Ok(response)
    }
}

/// The digest a challenge carries must be the digest of the request we sent; returns it.
pub(super) fn check_challenge_digest(
    challenge: &Message,
    header_and_body: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let Some(d) = &challenge.digest else {
        return Err(ClientError::Unexpected(
            "a challenge without the request digest".into(),
        ));
    };
    let ours = digest_of_type(d.hash_type, header_and_body)?;
    if ours != d.digest {
        return Err(ClientError::DigestMismatch);
    }
    Ok(ours)
}
