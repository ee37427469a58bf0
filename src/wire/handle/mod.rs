//! The native Handle protocol's binary encodings (handle-protocol.md §1–§5). Pure: no sockets,
//! no tokio.
//!
//! - [`value`]: the HandleValue layout (also the registry's stored record format);
//! - [`message`]: envelope, header, bodies, credential section, UDP fragmentation.

pub mod message;
pub mod value;
#[cfg(test)]
pub(crate) mod vectors;
#[cfg(test)]
pub(crate) mod vectors2;

pub use message::{Body, Envelope, Header, Message, WireError};
pub use value::{decode_value, decode_values, encode_value, encode_values};
