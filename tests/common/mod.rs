//! Set-up shared by the native protocol's end-to-end tests: a node on 127.0.0.1 (every
//! listener on port 0) and one-message exchanges over TCP. Each test file uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::server::{open_registry, prepare_registry, start, RunningNode};
use idnode::wire::handle::message::{Envelope, Message, ENVELOPE_LEN};

/// A node in `dir` homing `homed`, the first prefix's bootstrap administrator
/// (300:0.NA/<prefix>) holding `secret`, with `handle_extra` added to its `[handle]` section.
pub async fn native_node(
    dir: &std::path::Path,
    homed: &[&str],
    secret: &str,
    handle_extra: &str,
) -> RunningNode {
    if let Some(first) = homed.first() {
        std::fs::write(dir.join(format!("{first}.admin-secret")), secret).unwrap();
    }
    let homed: Vec<String> = homed.iter().map(|p| format!("{p:?}")).collect();
    let toml = format!(
        "[node]\ndata_dir = {dir:?}\nhomed_prefixes = [{}]\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[handle]\nlisten = \"127.0.0.1:0\"\n{handle_extra}\n\
         [dns]\nlisten = \"127.0.0.1:0\"\n",
        homed.join(", ")
    );
    let config = Config::from_toml(&toml).unwrap();
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    start(config, Arc::new(registry), Metrics::new().unwrap())
        .await
        .unwrap()
}

/// Read one envelope and its message from `stream`, as they arrived (still encrypted if the
/// envelope says so): the envelope and the message bytes.
pub fn read_raw(stream: &mut TcpStream) -> (Envelope, Vec<u8>) {
    let mut head = [0u8; ENVELOPE_LEN];
    stream.read_exact(&mut head).unwrap();
    let env = Envelope::decode(&head).unwrap();
    let mut body = vec![0u8; env.message_length as usize];
    stream.read_exact(&mut body).unwrap();
    (env, body)
}

/// Read and decode one message from `stream`.
pub fn read_message(stream: &mut TcpStream) -> Message {
    let (env, body) = read_raw(stream);
    Message::decode(env, &body).unwrap()
}

/// A new TCP connection to `addr` (10 s read timeout).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One request on a new TCP connection (as HandleResolver sends each request), one answer.
pub fn exchange_new(addr: SocketAddr, bytes: &[u8]) -> Message {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    read_message(&mut s)
}

/// A fake HTTP upstream on 127.0.0.1: every connection's request head goes to `answer`,
/// whose JSON body is sent back (200, `Connection: close`). For the follower's tests, which
/// script what an upstream says.
pub async fn fake_json_upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let body = answer(head).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}
