//! `idnode sync status`: the running node's follow links, asked of its own HTTP listener
//! (`GET /sync/status`) with the operator token from its data directory. A plain blocking
//! HTTP/1.1 exchange on loopback: the CLI needs no HTTP client stack for one request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::wire::sync::{FeedError, SyncStatus};

/// Why the node could not be asked (`idnode sync status`, `idnode export --online`).
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(
        "reading the node's operator token {path} (written at the node's first start; run \
         this as the node's user): {source}"
    )]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("connecting to the node at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to the node: {0}")]
    Io(#[from] std::io::Error),
}

/// Send `GET <path>` with the operator token (from `data_dir`) to the node listening (plain
/// HTTP) on `listen`, asked on 127.0.0.1 when that is unspecified; the connection to read
/// the answer from, with `read_timeout` between bytes.
pub fn ask_node(
    listen: SocketAddr,
    data_dir: &Path,
    path: &str,
    read_timeout: Duration,
) -> Result<TcpStream, AskError> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let token_path = super::operator_token_path(data_dir);
    let token = std::fs::read_to_string(&token_path)
        .map_err(|source| AskError::Token {
            path: token_path.display().to_string(),
            source,
        })?
        .trim()
        .to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|source| AskError::Connect { addr, source })?;
    s.set_read_timeout(Some(read_timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )?;
    Ok(s)
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Ask(#[from] AskError),
    #[error("talking to the node: {0}")]
    Io(#[from] std::io::Error),
    #[error("the node's /sync/status answer: {0}")]
    Answer(serde_json::Error),
    #[error("the node refused /sync/status: {0}")]
    Refused(String),
}

/// Ask the node listening (plain HTTP) on `listen` for its sync status; an unspecified
/// listen address is asked on 127.0.0.1.
pub fn fetch(listen: SocketAddr, data_dir: &Path) -> Result<(SocketAddr, SyncStatus), StatusError> {
    let mut s = ask_node(listen, data_dir, "/sync/status", Duration::from_secs(10))?;
    let addr = s.peer_addr()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    if !text.starts_with("HTTP/1.1 200") {
        let why = serde_json::from_str::<FeedError>(body)
            .map(|e| e.message)
            .unwrap_or_else(|_| body.to_string());
        return Err(StatusError::Refused(why));
    }
    let status = serde_json::from_str(body).map_err(StatusError::Answer)?;
    Ok((addr, status))
}
