//! The recursor's network edge: [`NetworkUpstream`], the real [`Upstream`], a fresh tokio
//! UDP socket or TCP connection per exchange. It is a thin async driver of
//! [`wire::handle::exchange`](crate::wire::handle::exchange), which builds the datagrams,
//! reassembles and frames the response and names every failure ([`ExchangeError`], the same
//! type the blocking client reports). It sits in `server` because it owns sockets: `resolve`
//! keeps the trait and the hierarchy walk, and no I/O (its tests drive a scripted fake).
//! `server::start` builds one for the [`Recursor`](crate::resolve::recursion::Recursor).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::model::Transport;
use crate::resolve::recursion::{BoxFuture, Upstream};
use crate::wire::handle::exchange::{
    check_continuation, check_request_id, encode_request, udp_datagrams, ExchangeError, Feed,
    TcpFrame, UdpResponse,
};
use crate::wire::handle::fragment::FragmentError;
use crate::wire::handle::message::{flag, Body, Message, MAX_MESSAGE_LEN};

/// Bytes accepted for all CN-continued TCP messages of one response together (each message is
/// also capped at [`MAX_MESSAGE_LEN`]).
const MAX_CONTINUED_BYTES: usize = 16 * MAX_MESSAGE_LEN;

/// The real network: a fresh tokio UDP socket or TCP connection per exchange.
///
/// - UDP: the socket is bound to the wildcard address of the server's family and connected
///   to the server, so the kernel drops datagrams from anyone else; the request goes out in
///   492-byte fragments; datagrams with another request id or no valid envelope are ignored
///   (and reported if nothing valid arrives before the timeout); a reassembled message that
///   does not decode fails the exchange at once.
/// - TCP: connect, write the request, read envelope + message, repeated while the response
///   sets CN (list bodies and value lists are concatenated); at most [`MAX_MESSAGE_LEN`] bytes
///   per message.
///
/// Both are bounded by the exchange timeout as a whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkUpstream;

impl Upstream for NetworkUpstream {
    fn exchange<'a>(
        &'a self,
        server: SocketAddr,
        transport: Transport,
        request: &'a Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ExchangeError>> {
        Box::pin(async move {
            match transport {
                Transport::Udp => udp_exchange(server, request, timeout).await,
                Transport::Tcp => tokio::time::timeout(timeout, tcp_exchange(server, request))
                    .await
                    .unwrap_or(Err(ExchangeError::Timeout)),
            }
        })
    }
}

fn io_error(e: std::io::Error) -> ExchangeError {
    ExchangeError::Io(e.to_string())
}

async fn udp_exchange(
    server: SocketAddr,
    request: &Message,
    timeout: Duration,
) -> Result<Message, ExchangeError> {
    let datagrams = udp_datagrams(request)?;
    let request_id = request.envelope.request_id;
    // What was wrong with the last datagram ignored, to explain a timeout.
    let mut noise = None;
    let result = tokio::time::timeout(
        timeout,
        udp_send_and_receive(server, &datagrams, request_id, &mut noise),
    )
    .await;
    match result {
        Ok(r) => r,
        Err(_) => Err(noise.unwrap_or(ExchangeError::Timeout)),
    }
}

async fn udp_send_and_receive(
    server: SocketAddr,
    datagrams: &[Vec<u8>],
    request_id: u32,
    noise: &mut Option<ExchangeError>,
) -> Result<Message, ExchangeError> {
    let bind = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind).await.map_err(io_error)?;
    // A connected socket only receives datagrams from the server's address.
    socket.connect(server).await.map_err(io_error)?;
    for datagram in datagrams {
        socket.send(datagram).await.map_err(io_error)?;
    }
    let mut response = UdpResponse::new(request_id);
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io_error)?;
        match response.feed(&buf[..n]) {
            Feed::Pending => {}
            // A datagram seen before (the server resent it) is harmless.
            Feed::Ignored(ExchangeError::Fragment(FragmentError::Duplicate(_))) => {}
            Feed::Ignored(why) => {
                tracing::debug!(%server, %why, "ignored UDP datagram");
                *noise = Some(why);
            }
            Feed::Complete(envelope, message) => return Ok(Message::decode(envelope, &message)?),
        }
    }
}

/// One message off the stream ([`TcpFrame`]: the envelope, then the bytes it declares).
async fn read_message(stream: &mut TcpStream) -> Result<Message, ExchangeError> {
    let mut frame = TcpFrame::new();
    loop {
        stream
            .read_exact(frame.unfilled())
            .await
            .map_err(io_error)?;
        if let Some(m) = frame.filled()? {
            return Ok(m);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, request: &Message) -> Result<Message, ExchangeError> {
    let encoded = encode_request(request)?;
    let request_id = request.envelope.request_id;
    let mut stream = TcpStream::connect(server).await.map_err(io_error)?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&encoded).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    let mut response = read_message(&mut stream).await?;
    check_request_id(&response, request_id)?;
    let mut total = response.envelope.message_length as usize;
    while response.header.has(flag::CONTINUOUS) {
        let next = read_message(&mut stream).await?;
        check_request_id(&next, request_id)?;
        total = total.saturating_add(next.envelope.message_length as usize);
        if total > MAX_CONTINUED_BYTES {
            return Err(ExchangeError::Malformed(format!(
                "continued response longer than {MAX_CONTINUED_BYTES} bytes"
            )));
        }
        check_continuation(response.header.response_code, &next)?;
        match (&mut response.body, next.body) {
            (Body::HandleList { handles }, Body::HandleList { handles: more }) => {
                handles.extend(more)
            }
            (Body::Values { values, .. }, Body::Values { values: more, .. }) => values.extend(more),
            _ => {
                return Err(ExchangeError::Malformed(
                    "continued message with a body that cannot be joined".into(),
                ))
            }
        }
        response.header.op_flag = (response.header.op_flag & !flag::CONTINUOUS)
            | (next.header.op_flag & flag::CONTINUOUS);
    }
    Ok(response)
}

#[cfg(test)]
mod tests;
