//! Pure codecs between bytes/text and the model: the native Handle encodings (`handle`) and the
//! Handle.Net REST JSON shapes (`json`). Never imports tokio, sled, prometheus or sockets.

pub mod handle;
pub mod json;
