//! Pure codecs between bytes/text and the model: the native Handle encodings (`handle`), the
//! Handle.Net REST JSON shapes (`json`), the DNS mapping and messages (`dns`) and the
//! replication protocol's messages (`sync`). Never imports tokio, sled, prometheus or sockets.

pub mod dns;
pub mod handle;
pub mod json;
pub mod sync;
