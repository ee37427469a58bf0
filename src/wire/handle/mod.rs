//! The native Handle protocol's binary encodings (handle-protocol.md §1–§5). Pure: no sockets,
//! no tokio.
//!
//! - [`value`]: the HandleValue layout (also the registry's stored record format);
//! - [`message`]: envelope, header, bodies, credential section;
//! - [`fragment`]: UDP fragmentation: a message split into datagrams and collected back;
//! - [`digest`]: the RD request digests answers carry and challenges name;
//! - [`peek`]: header fields read off raw bytes without decoding (the hot paths' one reader);
//! - [`request`]: a request decoded once into a typed [`Request`] ([`OpCode`], [`RequestMessage`]);
//! - [`respond`]: the [`Responder`] that builds every answer to one request;
//! - [`reassembly`]: the serving side's multi-datagram reassembly, bounded, time passed in;
//! - [`exchange`]: the asking side of one exchange (request building, UDP reassembly of the
//!   response, TCP framing, response checks, [`ExchangeError`]), driven by the blocking
//!   client and the recursor's network edge.

pub mod digest;
pub mod exchange;
pub mod fragment;
pub mod message;
pub mod peek;
pub mod reassembly;
pub mod request;
pub mod respond;
pub mod value;
#[cfg(test)]
pub(crate) mod vectors;
#[cfg(test)]
pub(crate) mod vectors2;

pub use exchange::ExchangeError;
pub use message::{Body, Envelope, Header, Message, WireError};
pub use request::{
    Admin, ChallengeAnswer, KeyLogin, OpCode, PasswordLogin, Request, RequestError, RequestMessage,
    Resolve, SessionSetup, VerifyChallenge,
};
pub use respond::Responder;
pub use value::{decode_value, decode_values, encode_value, encode_values};
