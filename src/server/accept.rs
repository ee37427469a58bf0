//! The TCP accept loop shared by the HTTP, native TCP and DNS TCP front ends, and the
//! [`ConnectionTable`] that bounds who may hold their connection slots:
//!
//! - **per client address**: at most `per_client` connections from one IP address; one more
//!   is closed at once (never queued), counted in
//!   `idnode_connections_refused_total{proto, reason="per_client"}` and logged at debug;
//! - **in total**: at most `max_connections` open. When a new connection arrives with the
//!   table full, the connection that has waited longest *between* requests is asked to close
//!   (`idnode_connections_closed_total{reason="evicted"}`) and the new one is served as soon
//!   as it is gone; a connection in the middle of a request is never chosen, and one that has
//!   never sent a request goes before one that has. With every slot
//!   mid-request the new connection waits: each of those is bounded by the request and write
//!   deadlines below, so it does not wait long. Many idle sockets therefore cannot lock a
//!   client out, and a long-lived connection that keeps sending requests (the national SDK's)
//!   is the last to go;
//! - **per connection**: an idle timeout between requests, a deadline for a whole request
//!   once its first byte arrived (a client dripping a byte every few seconds is cut off), and
//!   a write timeout (a client that stops reading its answers is disconnected and its slot
//!   freed). The framed protocols use [`next_request`], [`read_by`] and [`write_answer`];
//!   HTTP gets the same bounds from hyper and a stalled-write timeout on its stream.
//!
//! On shutdown the loop stops accepting, then gives open connections a bounded time to finish.
//! A back-off applies when accepting fails (out of file descriptors).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// How long open connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds of one front end's connections (from its configuration section).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub per_client: usize,
    /// How long a connection may wait for the next request.
    pub idle_timeout: Duration,
    /// How long a request may take to arrive once its first byte has.
    pub request_timeout: Duration,
    /// How long writing an answer may stall (the client not reading) before the connection
    /// is closed.
    pub write_timeout: Duration,
}

/// Why a connection was closed by the node (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No request within the idle timeout.
    IdleTimeout,
    /// A started request did not arrive in full within the request timeout.
    RequestTimeout,
    /// The client did not take its answer within the write timeout.
    WriteTimeout,
}

/// The connections of one front end: who holds them and what they are doing.
pub struct ConnectionTable {
    proto: &'static str,
    limits: Limits,
    state: Mutex<TableState>,
    /// Signalled when a connection ends or starts waiting between requests, so the accept
    /// loop can re-check whether there is room.
    changed: Notify,
    refused_per_client: IntCounter,
    evicted: IntCounter,
    idle_timeouts: IntCounter,
    request_timeouts: IntCounter,
    write_timeouts: IntCounter,
    open: IntGauge,
}

#[derive(Default)]
struct TableState {
    clients: HashMap<IpAddr, usize>,
    entries: HashMap<u64, Entry>,
    next_id: u64,
}

struct Entry {
    /// Requests in progress; 0 = waiting between requests since `idle_since`.
    in_flight: usize,
    /// `None` until the connection is served (it cannot be evicted before).
    idle_since: Option<Instant>,
    /// Whether a request has ever started on it.
    served: bool,
    /// Already asked to close.
    evicting: bool,
    evict: Arc<Notify>,
}

/// One open connection's place in its [`ConnectionTable`]; freed when the last clone drops.
#[derive(Clone)]
pub struct Connection(Arc<Slot>);

struct Slot {
    table: Arc<ConnectionTable>,
    id: u64,
    ip: IpAddr,
    evict: Arc<Notify>,
}

/// A request in progress on a [`Connection`]: while one is alive the connection is not
/// idle (never evicted); dropping it makes the connection idle again.
pub struct Busy(Connection);

/// Whether the table has room for a connection it just admitted.
enum Room {
    Yes,
    Wait,
}

impl ConnectionTable {
    pub fn new(proto: &'static str, limits: Limits, metrics: &Metrics) -> Arc<ConnectionTable> {
        let closed = |reason| {
            metrics
                .connections_closed
                .with_label_values(&[proto, reason])
        };
        Arc::new(ConnectionTable {
            proto,
            limits: Limits {
                max_connections: limits.max_connections.max(1),
                per_client: limits.per_client.max(1),
                ..limits
            },
            state: Mutex::new(TableState::default()),
            changed: Notify::new(),
            refused_per_client: metrics
                .connections_refused
                .with_label_values(&[proto, "per_client"]),
            evicted: closed("evicted"),
            idle_timeouts: closed("idle_timeout"),
            request_timeouts: closed("request_timeout"),
            write_timeouts: closed("write_timeout"),
            open: metrics.connections_open.with_label_values(&[proto]),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, TableState> {
        // A panic while holding the lock leaves counts that are still consistent enough to
        // go on with; never take the node down for it.
        crate::lock::lock(&self.state)
    }

    /// Take a place for a connection from `ip`, or `None` when that address already holds
    /// `per_client` connections.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Connection> {
        let mut state = self.lock();
        let count = state.clients.entry(ip).or_default();
        if *count >= self.limits.per_client {
            return None;
        }
        *count += 1;
        let id = state.next_id;
        state.next_id += 1;
        let evict = Arc::new(Notify::new());
        state.entries.insert(
            id,
            Entry {
                in_flight: 0,
                idle_since: None,
                served: false,
                evicting: false,
                evict: evict.clone(),
            },
        );
        drop(state);
        self.open.inc();
        Some(Connection(Arc::new(Slot {
            table: self.clone(),
            id,
            ip,
            evict,
        })))
    }

    /// Whether the connections admitted fit in `max_connections`; if not, ask one waiting
    /// between requests to close (unless one is already closing): one that never sent a
    /// request first, else the one idle the longest.
    fn room(&self) -> Room {
        let mut state = self.lock();
        if state.entries.len() <= self.limits.max_connections {
            return Room::Yes;
        }
        if state.entries.values().any(|e| e.evicting) {
            return Room::Wait;
        }
        let oldest = state
            .entries
            .values_mut()
            .filter(|e| e.in_flight == 0)
            .filter_map(|e| e.idle_since.map(|since| ((e.served, since), e)))
            .min_by_key(|(key, _)| *key);
        if let Some((_, entry)) = oldest {
            entry.evicting = true;
            entry.evict.notify_one();
            self.evicted.inc();
            tracing::debug!(
                proto = self.proto,
                limit = self.limits.max_connections,
                "connections full: closing an idle one to make room"
            );
        }
        Room::Wait
    }

    /// Count a connection the node closed.
    pub fn count_closed(&self, why: Closed) {
        match why {
            Closed::IdleTimeout => self.idle_timeouts.inc(),
            Closed::RequestTimeout => self.request_timeouts.inc(),
            Closed::WriteTimeout => self.write_timeouts.inc(),
        }
    }
}

impl Connection {
    pub fn limits(&self) -> &Limits {
        &self.0.table.limits
    }

    pub fn table(&self) -> &ConnectionTable {
        &self.0.table
    }

    /// Mark a request as started; the connection is idle again when the guard drops.
    pub fn busy(&self) -> Busy {
        let table = &self.0.table;
        if let Some(e) = table.lock().entries.get_mut(&self.0.id) {
            e.in_flight += 1;
            e.served = true;
        }
        Busy(self.clone())
    }

    /// Whether a request is in progress.
    pub fn is_busy(&self) -> bool {
        let table = &self.0.table;
        let state = table.lock();
        state
            .entries
            .get(&self.0.id)
            .is_some_and(|e| e.in_flight > 0)
    }

    /// The connection is served from now on (it is idle until its first request).
    fn start(&self) {
        let table = &self.0.table;
        if let Some(e) = table.lock().entries.get_mut(&self.0.id) {
            e.idle_since = Some(Instant::now());
        }
    }

    /// Resolves when the table asks this connection to close (to make room for another).
    /// A request caught in progress is finished first: the request loops only watch this
    /// while waiting for the next request.
    pub async fn evicted(&self) {
        self.0.evict.notified().await
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let table = &self.0 .0.table;
        let mut state = table.lock();
        if let Some(e) = state.entries.get_mut(&self.0 .0.id) {
            e.in_flight = e.in_flight.saturating_sub(1);
            if e.in_flight == 0 {
                e.idle_since = Some(Instant::now());
                drop(state);
                table.changed.notify_one();
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.table.lock();
        state.entries.remove(&self.id);
        if let Some(n) = state.clients.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.clients.remove(&self.ip);
            }
        }
        drop(state);
        self.table.open.dec();
        self.table.changed.notify_one();
    }
}

/// [`accept_loop`] for a front end whose connections are served by `connection(stream, peer,
/// service, its table slot, shutdown)`: a connection that ends with an error is logged at
/// debug level under `what` ("native TCP", "DNS TCP"), nothing more.
pub async fn serve_connections<S, F, Fut>(
    listener: TcpListener,
    service: Arc<S>,
    table: Arc<ConnectionTable>,
    shutdown: watch::Receiver<bool>,
    what: &'static str,
    connection: F,
) where
    S: Send + Sync + 'static,
    F: Fn(TcpStream, SocketAddr, Arc<S>, Connection, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let on_shutdown = shutdown.clone();
    accept_loop(listener, table, on_shutdown, move |stream, peer, conn| {
        let served = connection(stream, peer, service.clone(), conn, shutdown.clone());
        async move {
            if let Err(e) = served.await {
                tracing::debug!(%peer, error = %e, "{what} connection ended");
            }
        }
    })
    .await;
}

/// Accept until `shutdown` changes, serving each connection with `serve` in its own task,
/// within the bounds of `table` (see the module docs).
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    table: Arc<ConnectionTable>,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Connection) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    'accept: loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // An IPv4 client on a dual-stack socket counts as its IPv4 address.
        let Some(conn) = table.admit(peer.ip().to_canonical()) else {
            table.refused_per_client.inc();
            tracing::debug!(
                proto = table.proto,
                %peer,
                limit = table.limits.per_client,
                "connection refused: too many from this address"
            );
            // Dropping the stream closes it at once.
            continue;
        };
        // Wait until the table has room: the longest-idle connection is asked to go, or one
        // mid-request finishes.
        loop {
            if let Room::Yes = table.room() {
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => break 'accept,
                _ = table.changed.notified() => {}
                // Re-check now and then in case a notification raced with the check.
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        conn.start();
        let _ = stream.set_nodelay(true);
        let task = serve(stream, peer, conn);
        connections.spawn(task);
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// The start of a request on a framed long-lived connection.
pub struct Started {
    /// The request is now in progress.
    pub busy: Busy,
    /// When all of it must have arrived.
    pub deadline: Instant,
}

/// Wait for the next request on a framed connection and read its fixed-size `head`:
/// `Ok(None)` when the connection should end quietly (idle for the idle timeout, asked to
/// make room, closed by the client between requests, shutdown, or the head not complete
/// within the request timeout of its first byte).
pub async fn next_request(
    stream: &mut TcpStream,
    head: &mut [u8],
    conn: &Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Option<Started>> {
    let limits = *conn.limits();
    let first = tokio::select! {
        _ = shutdown.changed() => return Ok(None),
        _ = conn.evicted() => return Ok(None),
        r = tokio::time::timeout(limits.idle_timeout, stream.read(head)) => match r {
            Err(_) => {
                conn.table().count_closed(Closed::IdleTimeout);
                return Ok(None);
            }
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Ok(Err(e)) => return Err(e),
        },
    };
    let started = Started {
        busy: conn.busy(),
        deadline: Instant::now() + limits.request_timeout,
    };
    let rest = head.get_mut(first..).unwrap_or_default();
    if rest.is_empty() || read_by(stream, rest, started.deadline, conn).await? {
        Ok(Some(started))
    } else {
        Ok(None)
    }
}

/// Read the rest of a started request by its deadline: `Ok(false)` if it did not arrive (or
/// the client closed mid-request).
pub async fn read_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    conn: &Connection,
) -> std::io::Result<bool> {
    match tokio::time::timeout_at(deadline, stream.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            conn.table().count_closed(Closed::RequestTimeout);
            Ok(false)
        }
    }
}

/// Write an answer within the write timeout: `Ok(false)` if the client did not take it (the
/// connection should close).
pub async fn write_answer(
    stream: &mut TcpStream,
    bytes: &[u8],
    conn: &Connection,
) -> std::io::Result<bool> {
    match tokio::time::timeout(conn.limits().write_timeout, stream.write_all(bytes)).await {
        Ok(r) => r.map(|_| true),
        Err(_) => {
            conn.table().count_closed(Closed::WriteTimeout);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, per_client: usize) -> Arc<ConnectionTable> {
        let metrics = Metrics::new().unwrap();
        let secs = Duration::from_secs(1);
        ConnectionTable::new(
            "test",
            Limits {
                max_connections: max,
                per_client,
                idle_timeout: secs,
                request_timeout: secs,
                write_timeout: secs,
            },
            &metrics,
        )
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn hole6_per_client_count_is_by_address_and_freed_on_close() {
        let t = table(100, 2);
        let a = t.admit(ip(1)).unwrap();
        let b = t.admit(ip(1)).unwrap();
        assert!(t.admit(ip(1)).is_none());
        let other = t.admit(ip(2));
        assert!(other.is_some());
        drop(a);
        let c = t.admit(ip(1));
        assert!(c.is_some());
        drop((b, c, other));
        assert!(t.lock().clients.is_empty());
        assert!(t.lock().entries.is_empty());
    }

    #[tokio::test]
    async fn hole6_connections_that_never_sent_a_request_go_first() {
        let t = table(2, 10);
        let client = t.admit(ip(1)).unwrap();
        client.start();
        drop(client.busy());
        std::thread::sleep(Duration::from_millis(2));
        // Opened after the client's last request, never used: still evicted first.
        let socket = t.admit(ip(2)).unwrap();
        socket.start();
        let _newcomer = t.admit(ip(3)).unwrap();
        assert!(matches!(t.room(), Room::Wait));
        tokio::time::timeout(Duration::from_millis(10), socket.evicted())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(10), client.evicted())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn hole6_full_table_evicts_the_longest_idle_never_a_busy_one() {
        let t = table(2, 10);
        let busy_conn = t.admit(ip(1)).unwrap();
        busy_conn.start();
        std::thread::sleep(Duration::from_millis(2));
        let idle_old = t.admit(ip(2)).unwrap();
        idle_old.start();
        std::thread::sleep(Duration::from_millis(2));
        // The oldest connection is mid-request: it must not be chosen.
        let busy = busy_conn.busy();
        assert!(matches!(t.room(), Room::Yes));
        let newcomer = t.admit(ip(3)).unwrap();
        assert!(matches!(t.room(), Room::Wait));
        // The idle one was asked to go (its notification is stored), the busy one not.
        tokio::time::timeout(Duration::from_millis(10), idle_old.evicted())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(10), busy_conn.evicted())
                .await
                .is_err()
        );
        // While it closes, nobody else is asked.
        assert!(matches!(t.room(), Room::Wait));
        drop(idle_old);
        assert!(matches!(t.room(), Room::Yes));
        newcomer.start();
        drop(busy);
        drop((busy_conn, newcomer));
        assert_eq!(t.open.get(), 0);
    }
}
