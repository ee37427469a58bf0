//! Batched datagram system calls, written once (quinn-udp's idea: the platform's fast path
//! behind one small API, a plain fallback elsewhere). On Linux `recvmmsg` / `sendmmsg` (and
//! UDP GSO for connected sends) through nix's safe wrappers, so the crate keeps
//! `#![forbid(unsafe_code)]`; elsewhere one system call per datagram.
//!
//! - **Addressed**, for the node's unconnected sockets (the datagram engine,
//!   [`run_worker`](super::run_worker)): [`AddressedReceiver`] blocks until a datagram
//!   arrives and takes up to [`BATCH`] with their sources; [`send_addressed`] sends queued
//!   `(peer, datagram)` pairs, [`BATCH`] per call.
//! - **Connected**, for `idnode bench`'s sockets (each connected to the server it loads):
//!   [`ConnectedSender`] sends runs of equal-length datagrams as one GSO packet when the
//!   kernel allows it; [`ConnectedReceiver`] takes what has arrived without waiting.
//!
//! It sits under `server::udp`, beside the engine that is its main user; `bench`, a tool that
//! loads a node from outside every library layer, borrows it rather than keeping a second
//! copy of the system-call code.

/// Datagrams received or sent per system call.
pub const BATCH: usize = 32;

#[cfg(target_os = "linux")]
pub use linux::{send_addressed, AddressedReceiver, ConnectedReceiver, ConnectedSender};

#[cfg(not(target_os = "linux"))]
pub use fallback::{send_addressed, AddressedReceiver, ConnectedReceiver, ConnectedSender};

#[cfg(target_os = "linux")]
mod linux {
    //! `recvmmsg` / `sendmmsg` / `sendmsg` with `UDP_SEGMENT`, through nix's safe wrappers.
    use std::io::{IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{
        recvmmsg, sendmmsg, sendmsg, ControlMessage, MsgFlags, MultiHeaders, RecvMsg, SockaddrLike,
        SockaddrStorage,
    };

    use super::BATCH;

    /// Payload bytes sent as one UDP GSO packet at most.
    const GSO_BYTES: usize = 60_000;

    // --- shared by both ----------------------------------------------------------------------

    /// One `recvmmsg` into `buffers` (one datagram each), `got` refilled with what `each`
    /// makes of every message; returns how many arrived. `S` is the source address kept:
    /// `SockaddrStorage` on an unconnected socket, `()` on a connected one.
    fn receive_batch<S: SockaddrLike + Copy, T>(
        sock: &impl AsRawFd,
        buffers: &mut [Vec<u8>],
        headers: &mut MultiHeaders<S>,
        flags: MsgFlags,
        got: &mut Vec<T>,
        each: impl FnMut(RecvMsg<'_, '_, S>) -> T,
    ) -> std::io::Result<usize> {
        got.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
            .iter_mut()
            .map(|b| [IoSliceMut::new(b.as_mut_slice())])
            .collect();
        let results = recvmmsg(sock.as_raw_fd(), headers, slices.iter_mut(), flags, None)
            .map_err(std::io::Error::from)?;
        got.extend(results.map(each));
        Ok(got.len())
    }

    /// One `sendmmsg` of `datagrams`, datagram `i` to `addrs[i]` (`None` on a connected
    /// socket); returns how many the kernel took. It stops at the first one it cannot send.
    fn send_batch<'d, S: SockaddrLike + Copy>(
        sock: &impl AsRawFd,
        headers: &mut MultiHeaders<S>,
        datagrams: impl Iterator<Item = &'d [u8]>,
        addrs: &[Option<S>],
    ) -> nix::Result<usize> {
        let slices: Vec<[IoSlice<'_>; 1]> = datagrams.map(|d| [IoSlice::new(d)]).collect();
        sendmmsg(
            sock.as_raw_fd(),
            headers,
            slices.iter(),
            addrs,
            [],
            MsgFlags::empty(),
        )
        .map(|results| results.count())
    }

    // --- addressed ---------------------------------------------------------------------------

    /// Receives batches of datagrams with their sources, into buffers allocated once.
    pub struct AddressedReceiver {
        /// Longest datagram kept; longer ones are dropped.
        max_len: usize,
        buffers: Vec<Vec<u8>>,
        headers: MultiHeaders<SockaddrStorage>,
        got: Vec<(usize, Option<SocketAddr>)>,
    }

    fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
        }
        a.as_sockaddr_in6().map(|v6| {
            SocketAddr::V6(SocketAddrV6::new(
                v6.ip(),
                v6.port(),
                v6.flowinfo(),
                v6.scope_id(),
            ))
        })
    }

    impl AddressedReceiver {
        /// Room for [`BATCH`] datagrams of up to `max_len` bytes.
        pub fn new(max_len: usize) -> AddressedReceiver {
            AddressedReceiver {
                max_len,
                buffers: (0..BATCH).map(|_| vec![0u8; max_len + 1]).collect(),
                headers: MultiHeaders::preallocate(BATCH, None),
                got: Vec::with_capacity(BATCH),
            }
        }

        /// Block until at least one datagram arrives (or the socket's timeout passes), then
        /// take up to [`BATCH`] at once.
        pub fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
            let max_len = self.max_len;
            receive_batch(
                socket,
                &mut self.buffers,
                &mut self.headers,
                MsgFlags::MSG_WAITFORONE,
                &mut self.got,
                |msg| {
                    let addr = msg.address.as_ref().and_then(to_std);
                    // A datagram that filled the buffer was longer than `max_len`: dropped.
                    let len = if msg.bytes > max_len { 0 } else { msg.bytes };
                    (len, addr)
                },
            )
        }

        /// Datagram `i` of the last receive and its source (`None`: dropped).
        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
            let (len, addr) = *self.got.get(i)?;
            let addr = addr?;
            if len == 0 {
                return None;
            }
            Some((self.buffers.get(i)?.get(..len)?, addr))
        }
    }

    /// Send every queued datagram, [`BATCH`] per system call. A datagram the kernel refuses
    /// (an unreachable address, say) is skipped; the rest still go.
    pub fn send_addressed(socket: &UdpSocket, queued: &[(SocketAddr, Vec<u8>)]) {
        let mut headers: Option<MultiHeaders<SockaddrStorage>> = None;
        let mut rest = queued;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(BATCH)];
            let headers = headers.get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
            let addrs: Vec<Option<SockaddrStorage>> = chunk
                .iter()
                .map(|(a, _)| Some(SockaddrStorage::from(*a)))
                .collect();
            let datagrams = chunk.iter().map(|(_, d)| d.as_slice());
            let sent = match send_batch(socket, headers, datagrams, &addrs) {
                Ok(sent) => sent,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP sendmmsg failed");
                    0
                }
            };
            // sendmmsg stops at the first datagram it cannot send: skip that one.
            rest = &rest[(sent.max(1)).min(rest.len())..];
        }
    }

    // --- connected ---------------------------------------------------------------------------

    /// Sends batches of datagrams on a connected socket.
    pub struct ConnectedSender {
        headers: MultiHeaders<()>,
        addrs: Vec<Option<()>>,
        /// Send runs of equal-length datagrams as one UDP GSO packet (`UDP_SEGMENT`): the
        /// kernel splits it into the same datagrams, for a fraction of the cost of sending
        /// each. Turned off for good when the kernel or route refuses it.
        gso: bool,
    }

    impl Default for ConnectedSender {
        fn default() -> ConnectedSender {
            ConnectedSender::new()
        }
    }

    impl ConnectedSender {
        pub fn new() -> ConnectedSender {
            ConnectedSender {
                headers: MultiHeaders::preallocate(BATCH, None),
                addrs: vec![None; BATCH],
                gso: true,
            }
        }

        /// Send datagrams from the front of `datagrams` (which may be reordered). Returns
        /// how many were dealt with: sent, or refused by the kernel and skipped (the first
        /// error kept in `error`). Fewer than all only when the socket buffer is full.
        pub fn send(
            &mut self,
            sock: &impl AsRawFd,
            datagrams: &mut [Vec<u8>],
            error: &mut Option<String>,
        ) -> usize {
            if !self.gso {
                return self.send_each(sock, datagrams, error);
            }
            // Longest first: each GSO packet is a run of datagrams of one length plus at most
            // one shorter one at its end.
            datagrams.sort_unstable_by_key(|d| std::cmp::Reverse(d.len()));
            // `datagrams[single..i]`: single datagrams not sent yet.
            let (mut single, mut i) = (0, 0);
            while i < datagrams.len() {
                let len = datagrams[i].len();
                // A GSO packet is one IP datagram before it is split: at most 64 KiB.
                let most = (GSO_BYTES / len.max(1)).max(1);
                let mut j = i + 1;
                while j < datagrams.len() && j - i < most && datagrams[j].len() == len {
                    j += 1;
                }
                if j < datagrams.len() && j - i < most {
                    j += 1; // the shorter tail
                }
                if j - i == 1 {
                    i = j;
                    continue;
                }
                let done = self.send_each(sock, &mut datagrams[single..i], error);
                if single + done < i {
                    return single + done;
                }
                match send_gso(sock, &datagrams[i..j], len as u16) {
                    Ok(_) => {}
                    Err(Errno::EAGAIN) => return i,
                    Err(
                        Errno::EIO
                        | Errno::EINVAL
                        | Errno::EMSGSIZE
                        | Errno::ENOPROTOOPT
                        | Errno::EOPNOTSUPP,
                    ) => {
                        // No UDP GSO here: send these (and from now on all) one by one.
                        self.gso = false;
                        return i + self.send_each(sock, &mut datagrams[i..], error);
                    }
                    Err(e) => {
                        error.get_or_insert_with(|| format!("send: {e}"));
                    }
                }
                (single, i) = (j, j);
            }
            single + self.send_each(sock, &mut datagrams[single..], error)
        }

        /// Send datagrams one by one, [`BATCH`] per `sendmmsg`; returns as
        /// [`ConnectedSender::send`].
        fn send_each(
            &mut self,
            sock: &impl AsRawFd,
            datagrams: &mut [Vec<u8>],
            error: &mut Option<String>,
        ) -> usize {
            let mut done = 0;
            while done < datagrams.len() {
                let chunk = &datagrams[done..datagrams.len().min(done + BATCH)];
                let datagrams = chunk.iter().map(Vec::as_slice);
                match send_batch(
                    sock,
                    &mut self.headers,
                    datagrams,
                    &self.addrs[..chunk.len()],
                ) {
                    Ok(sent) => done += sent,
                    Err(Errno::EAGAIN) => break,
                    Err(e) => {
                        // sendmmsg fails on the first datagram it cannot send: skip it.
                        error.get_or_insert_with(|| format!("send: {e}"));
                        done += 1;
                    }
                }
            }
            done
        }
    }

    /// Send `datagrams` (all `segment` bytes long but the last, which may be shorter) as one
    /// UDP GSO packet.
    fn send_gso(sock: &impl AsRawFd, datagrams: &[Vec<u8>], segment: u16) -> nix::Result<usize> {
        let iov: Vec<IoSlice<'_>> = datagrams.iter().map(|d| IoSlice::new(d)).collect();
        sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            &[ControlMessage::UdpGsoSegments(&segment)],
            MsgFlags::empty(),
            None,
        )
    }

    /// Receives batches of datagrams on a connected socket, keeping the start of each.
    pub struct ConnectedReceiver {
        buffers: Vec<Vec<u8>>,
        headers: MultiHeaders<()>,
        lens: Vec<usize>,
    }

    impl ConnectedReceiver {
        /// Keeps the first `keep` bytes of each datagram (the kernel drops the rest).
        pub fn new(keep: usize) -> ConnectedReceiver {
            ConnectedReceiver {
                buffers: (0..BATCH).map(|_| vec![0u8; keep]).collect(),
                headers: MultiHeaders::preallocate(BATCH, None),
                lens: Vec::with_capacity(BATCH),
            }
        }

        /// Take up to [`BATCH`] datagrams that have arrived, without waiting; returns how
        /// many (none: `WouldBlock`).
        pub fn receive(&mut self, sock: &impl AsRawFd) -> std::io::Result<usize> {
            receive_batch(
                sock,
                &mut self.buffers,
                &mut self.headers,
                MsgFlags::MSG_DONTWAIT,
                &mut self.lens,
                |m| m.bytes,
            )
        }

        /// The start (up to `keep` bytes) of datagram `i` of the last receive.
        pub fn get(&self, i: usize) -> Option<&[u8]> {
            let len = *self.lens.get(i)?;
            let buf = self.buffers.get(i)?;
            buf.get(..len.min(buf.len()))
        }
    }
}

// Also built for tests on Linux, so the fallback is exercised where the tests run.
#[cfg(any(not(target_os = "linux"), test))]
mod fallback {
    //! One datagram per system call where `recvmmsg` / `sendmmsg` are not available.
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{recv, send, MsgFlags};

    // --- addressed ---------------------------------------------------------------------------

    pub struct AddressedReceiver {
        max_len: usize,
        buffer: Vec<u8>,
        got: Option<(usize, SocketAddr)>,
    }

    impl AddressedReceiver {
        pub fn new(max_len: usize) -> AddressedReceiver {
            AddressedReceiver {
                max_len,
                buffer: vec![0u8; max_len + 1],
                got: None,
            }
        }

        pub fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
            let (len, addr) = socket.recv_from(&mut self.buffer)?;
            self.got = (len <= self.max_len).then_some((len, addr));
            Ok(1)
        }

        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
            let (len, addr) = self.got.filter(|_| i == 0)?;
            Some((self.buffer.get(..len)?, addr))
        }
    }

    pub fn send_addressed(socket: &UdpSocket, queued: &[(SocketAddr, Vec<u8>)]) {
        for (addr, d) in queued {
            if let Err(e) = socket.send_to(d, addr) {
                tracing::debug!(peer = %addr, error = %e, "UDP send failed");
            }
        }
    }

    // --- connected ---------------------------------------------------------------------------

    #[derive(Default)]
    pub struct ConnectedSender;

    impl ConnectedSender {
        pub fn new() -> ConnectedSender {
            ConnectedSender
        }

        /// Send datagrams from the front of `datagrams`. Returns how many were dealt with:
        /// sent, or refused by the kernel and skipped (the first error kept in `error`).
        /// Fewer than all only when the socket buffer is full.
        pub fn send(
            &mut self,
            sock: &impl AsRawFd,
            datagrams: &mut [Vec<u8>],
            error: &mut Option<String>,
        ) -> usize {
            for (i, d) in datagrams.iter().enumerate() {
                match send(sock.as_raw_fd(), d, MsgFlags::empty()) {
                    Ok(_) => {}
                    Err(Errno::EAGAIN) => return i,
                    Err(e) => {
                        error.get_or_insert_with(|| format!("send: {e}"));
                    }
                }
            }
            datagrams.len()
        }
    }

    pub struct ConnectedReceiver {
        /// Whole datagrams: some systems fail a receive into a buffer that is too short.
        buffer: Vec<u8>,
        len: Option<usize>,
    }

    impl ConnectedReceiver {
        /// `keep` is not used here: whole datagrams are received.
        pub fn new(_keep: usize) -> ConnectedReceiver {
            ConnectedReceiver {
                buffer: vec![0u8; 65_536],
                len: None,
            }
        }

        /// Take one datagram that has arrived, without waiting.
        pub fn receive(&mut self, sock: &impl AsRawFd) -> std::io::Result<usize> {
            self.len = None;
            let len = recv(sock.as_raw_fd(), &mut self.buffer, MsgFlags::MSG_DONTWAIT)?;
            self.len = Some(len);
            Ok(1)
        }

        pub fn get(&self, i: usize) -> Option<&[u8]> {
            self.buffer.get(..self.len.filter(|_| i == 0)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        (server, client)
    }

    /// Wait (bounded in tries, not asserted in time) until `receive` takes something.
    fn until_some(mut receive: impl FnMut() -> std::io::Result<usize>) -> usize {
        for _ in 0..5_000 {
            match receive() {
                Ok(n) if n > 0 => return n,
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        panic!("nothing arrived");
    }

    /// Connected sends to an addressed receiver, addressed answers back to a connected
    /// receiver, with one platform's types.
    macro_rules! round_trip {
        ($p:path) => {{
            use $p as p;
            let (server, client) = pair();
            let from = client.local_addr().unwrap();
            // Equal lengths (one GSO run where the kernel allows it), then a shorter tail.
            let mut queries: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 40]).collect();
            queries.push(vec![9; 7]);
            let mut error = None;
            let mut sender = p::ConnectedSender::new();
            let mut sent = 0;
            while sent < queries.len() {
                sent += sender.send(&client, &mut queries[sent..], &mut error);
            }
            assert_eq!(error, None);

            let mut rx = p::AddressedReceiver::new(64);
            let mut got: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
            while got.len() < 6 {
                let n = rx.receive(&server).unwrap();
                for i in 0..n {
                    let (d, peer) = rx.get(i).unwrap();
                    got.push((d.to_vec(), peer));
                }
            }
            assert!(got.iter().all(|(_, peer)| *peer == from));
            let mut lens: Vec<usize> = got.iter().map(|(d, _)| d.len()).collect();
            lens.sort();
            assert_eq!(lens, [7, 40, 40, 40, 40, 40]);

            let answers: Vec<(SocketAddr, Vec<u8>)> =
                got.iter().map(|(d, peer)| (*peer, d.clone())).collect();
            p::send_addressed(&server, &answers);
            let mut crx = p::ConnectedReceiver::new(16);
            let mut heads = Vec::new();
            while heads.len() < 6 {
                let n = until_some(|| crx.receive(&client));
                for i in 0..n {
                    heads.push(crx.get(i).unwrap().to_vec());
                }
            }
            // The batched receiver keeps only the first `keep` bytes; the fallback all.
            assert!(heads.iter().all(|h| !h.is_empty() && h.len() <= 40));
            heads
        }};
    }

    #[test]
    fn connected_datagrams_reach_an_addressed_receiver_and_back() {
        let heads = round_trip!(super);
        if cfg!(target_os = "linux") {
            assert!(heads.iter().all(|h| h.len() <= 16));
        }
    }

    #[test]
    fn the_fallback_does_the_same_one_datagram_at_a_time() {
        let heads = round_trip!(super::fallback);
        assert!(heads.iter().any(|h| h.len() == 40));
    }

    #[test]
    fn oversized_datagrams_are_dropped_by_the_addressed_receiver() {
        let (server, client) = pair();
        client.send(&[1u8; 65]).unwrap();
        client.send(&[2u8; 64]).unwrap();
        let mut rx = AddressedReceiver::new(64);
        let mut kept = Vec::new();
        let mut seen = 0;
        while seen < 2 {
            let n = rx.receive(&server).unwrap();
            seen += n;
            kept.extend((0..n).filter_map(|i| rx.get(i).map(|(d, _)| d.to_vec())));
        }
        assert_eq!(kept, [vec![2u8; 64]]);
    }
}
