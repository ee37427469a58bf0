use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

use super::*;
use crate::model::HandleValue;
use crate::wire::handle::exchange::new_request;
use crate::wire::handle::fragment::udp_fragments;
use crate::wire::handle::message::{op, ENVELOPE_LEN};

fn url(index: u32, text: &str) -> HandleValue {
    HandleValue::new(index, "URL", text.as_bytes().to_vec())
}

use crate::wire::handle::vectors::server_response as respond;

fn request_for(handle: &str) -> Message {
    let body = Body::Resolution {
        handle: handle.to_string(),
        indexes: Vec::new(),
        types: Vec::new(),
    };
    let mut m = new_request(
        op::RESOLUTION,
        flag::CACHE_CERTIFY | flag::PUBLIC_ONLY,
        body,
        now_unix(),
    );
    m.header.recursion_count = 1;
    m
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn big_values() -> Vec<HandleValue> {
    (1..=4)
        .map(|i| url(i, &"x".repeat(400 + i as usize)))
        .collect()
}

async fn udp_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let spoofer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Message::decode_full(&buf[..n]) else {
                continue;
            };
            let Body::Resolution { handle, .. } = &request.body else {
                continue;
            };
            match handle.as_str() {
                "big/one" => {
                    // Noise first: another request id, and the right id from another
                    // address (a connected socket never sees it).
                    let mut other = respond(
                        &request,
                        1,
                        Body::Values {
                            handle: handle.clone(),
                            values: vec![url(1, "other")],
                        },
                    );
                    other.envelope.request_id ^= 1;
                    socket.send_to(&other.encode(), peer).await.unwrap();
                    let spoof = respond(
                        &request,
                        1,
                        Body::Values {
                            handle: handle.clone(),
                            values: vec![url(1, "spoofed")],
                        },
                    );
                    spoofer.send_to(&spoof.encode(), peer).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let real = respond(
                        &request,
                        1,
                        Body::Values {
                            handle: handle.clone(),
                            values: big_values(),
                        },
                    );
                    let mut frags = udp_fragments(&real.encode());
                    assert!(frags.len() >= 3);
                    frags.reverse();
                    frags.push(frags[0].clone()); // a duplicate
                    for f in frags {
                        socket.send_to(&f, peer).await.unwrap();
                    }
                }
                "junk/one" => {
                    socket.send_to(b"hello", peer).await.unwrap();
                    // The right request id, a plausible length, undecodable contents.
                    let mut d = buf[..ENVELOPE_LEN].to_vec();
                    d[16..20].copy_from_slice(&30u32.to_be_bytes());
                    d.extend_from_slice(&[0xEE; 30]);
                    socket.send_to(&d, peer).await.unwrap();
                }
                "wrongid/one" => {
                    let mut m = respond(
                        &request,
                        100,
                        Body::Error {
                            message: String::new(),
                        },
                    );
                    m.envelope.request_id = m.envelope.request_id.wrapping_add(7);
                    socket.send_to(&m.encode(), peer).await.unwrap();
                }
                _ => {} // silent
            }
        }
    });
    addr
}

async fn tcp_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(request) = read_message(&mut stream).await else {
                    return;
                };
                let Body::Resolution { handle, .. } = &request.body else {
                    return;
                };
                match handle.as_str() {
                    "big/one" => {
                        let values = big_values();
                        let mut first = respond(
                            &request,
                            1,
                            Body::Values {
                                handle: handle.clone(),
                                values: values[..3].to_vec(),
                            },
                        );
                        first.header.op_flag |= flag::CONTINUOUS;
                        let last = respond(
                            &request,
                            1,
                            Body::Values {
                                handle: handle.clone(),
                                values: values[3..].to_vec(),
                            },
                        );
                        stream.write_all(&first.encode()).await.unwrap();
                        stream.write_all(&last.encode()).await.unwrap();
                    }
                    "junk/one" => {
                        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    }
                    "wrongid/one" => {
                        let mut m = respond(
                            &request,
                            1,
                            Body::Values {
                                handle: handle.clone(),
                                values: vec![],
                            },
                        );
                        m.envelope.request_id = m.envelope.request_id.wrapping_add(7);
                        let _ = stream.write_all(&m.encode()).await;
                    }
                    _ => {
                        // Silent: hold the connection open.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn network_upstream_udp_and_tcp() {
    let (udp, tcp) = (udp_server().await, tcp_server().await);
    let net = NetworkUpstream;
    let t = Duration::from_millis(1500);
    let (u, c) = (Transport::Udp, Transport::Tcp);

    // A multi-datagram response, reassembled despite noise, reordering and a duplicate.
    let request = request_for("big/one");
    let m = net.exchange(udp, u, &request, t).await.unwrap();
    assert_eq!(m.envelope.request_id, request.envelope.request_id);
    assert_eq!(
        m.body,
        Body::Values {
            handle: "big/one".into(),
            values: big_values()
        }
    );
    // Over TCP, two CN-continued messages joined.
    let m = net.exchange(tcp, c, &request, t).await.unwrap();
    assert!(!m.header.has(flag::CONTINUOUS));
    assert_eq!(
        m.body,
        Body::Values {
            handle: "big/one".into(),
            values: big_values()
        }
    );

    // Garbage is an error at once, not a hang.
    let started = std::time::Instant::now();
    let request = request_for("junk/one");
    let err = net.exchange(udp, u, &request, t).await.unwrap_err();
    assert!(matches!(err, ExchangeError::Malformed(_)), "{err:?}");
    assert!(started.elapsed() < t);
    let err = net.exchange(tcp, c, &request, t).await.unwrap_err();
    assert!(matches!(err, ExchangeError::Malformed(_)), "{err:?}");

    // Another request id: ignored over UDP (reported when nothing else came), refused
    // over TCP.
    let request = request_for("wrongid/one");
    let short = Duration::from_millis(300);
    let err = net.exchange(udp, u, &request, short).await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::WrongRequestId { .. }),
        "{err:?}"
    );
    let err = net.exchange(tcp, c, &request, t).await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::WrongRequestId { .. }),
        "{err:?}"
    );

    // Silence: a timeout within the bound, on both transports.
    let request = request_for("silent/one");
    let started = std::time::Instant::now();
    assert_eq!(
        net.exchange(udp, u, &request, short).await.unwrap_err(),
        ExchangeError::Timeout
    );
    assert_eq!(
        net.exchange(tcp, c, &request, short).await.unwrap_err(),
        ExchangeError::Timeout
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Nobody listening on TCP: an I/O error, quickly.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = net.exchange(closed, c, &request, t).await.unwrap_err();
    assert!(matches!(err, ExchangeError::Io(_)), "{err:?}");
}
