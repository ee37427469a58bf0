//! The native Handle protocol's binary encodings (handle-protocol.md §1–§5). This module is pure:
//! no sockets, no tokio. So far it holds the HandleValue layout, which the registry also uses as
//! its stored record format; the message codec (envelope, header, bodies) builds on it.

pub mod value;

pub use value::{decode_value, decode_values, encode_value, encode_values};
