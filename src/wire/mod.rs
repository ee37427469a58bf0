//! Pure codecs between bytes/text and the model: the native Handle encodings (`handle`), the
//! Handle.Net REST JSON shapes (`json`) and the DNS mapping and messages (`dns`). Never imports
//! tokio, sled, prometheus or sockets.

pub mod dns;
pub mod handle;
pub mod json;
