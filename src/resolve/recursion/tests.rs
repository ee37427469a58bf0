//! The recursor against a scripted upstream (`Fake`): the three-level walk, referrals and
//! their bounds, site and server choice, admission, lying and hanging upstreams, the cache.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use super::walk::{owned, SERVICE_TYPES};
use super::*;
use crate::model::structured::{interface, Interface, ServerInfo};
use crate::model::HandleValue;
use crate::model::ResponseCode;
use crate::model::{SuffixCase, Ttl};
use crate::resolve::cache::CacheConfig;
use crate::resolve::site::{handle_hash, HASH_BY_HANDLE};
use crate::wire::handle::message::{op, Body};

const NOW: u64 = 1_700_000_000;
const ROOT: [u8; 4] = [10, 0, 0, 1];
const TOP: [u8; 4] = [10, 0, 0, 2];
const SECONDARY: [u8; 4] = [10, 0, 0, 3];
const ENTERPRISE: [u8; 4] = [10, 0, 0, 4];
const ENTERPRISE_2: [u8; 4] = [10, 0, 0, 5];

// --- the scripted upstream ---------------------------------------------------------------

#[derive(Clone)]
enum Reply {
    Values(Vec<HandleValue>),
    Code(u32, &'static str),
    Referral(u32, &'static str, Vec<HandleValue>),
    Fail(ExchangeError),
    /// Times out over UDP; TCP gets the inner reply.
    UdpTimeout(Box<Reply>),
    WrongRequestId,
    WrongOpCode,
    /// Never answers, ignoring the exchange timeout (a broken upstream implementation).
    Hang,
}

#[derive(Debug, Clone)]
struct Call {
    server: SocketAddr,
    transport: Transport,
    handle: String,
    types: Vec<String>,
    request: Message,
}

/// Maps (server IP, handle upper-cased) to a reply and records every exchange. Anything
/// unscripted answers 301, as a real server that does not hold the handle would.
#[derive(Default)]
struct Fake {
    routes: Mutex<HashMap<(IpAddr, String), Reply>>,
    calls: Mutex<Vec<Call>>,
}

impl Fake {
    fn route(&self, server: [u8; 4], handle: &str, reply: Reply) {
        self.routes
            .lock()
            .unwrap()
            .insert((ip(server), handle.to_ascii_uppercase()), reply);
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn hops(&self) -> Vec<(IpAddr, Transport, String)> {
        self.calls()
            .into_iter()
            .map(|c| (c.server.ip(), c.transport, c.handle))
            .collect()
    }
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

use crate::wire::handle::vectors::server_response as respond;

fn answer(
    request: &Message,
    handle: &str,
    reply: Reply,
    transport: Transport,
) -> Result<Message, ExchangeError> {
    match reply {
        Reply::Values(values) => Ok(respond(
            request,
            1,
            Body::Values {
                handle: handle.to_string(),
                values,
            },
        )),
        Reply::Code(code, message) => Ok(respond(
            request,
            code,
            Body::Error {
                message: message.to_string(),
            },
        )),
        Reply::Referral(code, referral, values) => Ok(respond(
            request,
            code,
            Body::Referral {
                handle: referral.to_string(),
                values,
            },
        )),
        Reply::Fail(e) => Err(e),
        Reply::UdpTimeout(_) if transport == Transport::Udp => Err(ExchangeError::Timeout),
        Reply::UdpTimeout(inner) => answer(request, handle, *inner, transport),
        Reply::WrongRequestId => {
            let mut m = respond(
                request,
                1,
                Body::Values {
                    handle: handle.to_string(),
                    values: vec![url(1, "http://wrong")],
                },
            );
            m.envelope.request_id = m.envelope.request_id.wrapping_add(1);
            Ok(m)
        }
        Reply::WrongOpCode => {
            let mut m = respond(request, 1, Body::Empty);
            m.header.op_code = op::DELETE_HANDLE;
            Ok(m)
        }
        Reply::Hang => unreachable!("handled by the caller"),
    }
}

impl Upstream for Fake {
    fn exchange<'a>(
        &'a self,
        server: SocketAddr,
        transport: Transport,
        request: &'a Message,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ExchangeError>> {
        Box::pin(async move {
            let Body::Resolution { handle, types, .. } = &request.body else {
                return Err(ExchangeError::Malformed("not a resolution".into()));
            };
            self.calls.lock().unwrap().push(Call {
                server,
                transport,
                handle: handle.clone(),
                types: types.clone(),
                request: request.clone(),
            });
            let reply = self
                .routes
                .lock()
                .unwrap()
                .get(&(server.ip(), handle.to_ascii_uppercase()))
                .cloned()
                .unwrap_or(Reply::Code(301, "That handle doesn't live here"));
            if let Reply::Hang = reply {
                std::future::pending::<()>().await;
            }
            answer(request, handle, reply, transport)
        })
    }
}

// --- fixtures ----------------------------------------------------------------------------

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn server(id: u32, address: [u8; 4]) -> ServerInfo {
    ServerInfo {
        server_id: id,
        address: ServerInfo::address_from_ip(ip(address)),
        public_key: Vec::new(),
        interfaces: vec![
            Interface {
                kind: interface::QUERY,
                protocol: interface::UDP,
                port: 2641,
            },
            Interface {
                kind: interface::ADMIN_AND_QUERY,
                protocol: interface::TCP,
                port: 2641,
            },
        ],
    }
}

fn site(serial: u16, addresses: &[[u8; 4]]) -> SiteInfo {
    SiteInfo {
        data_format_version: 1,
        protocol_major: 2,
        protocol_minor: 11,
        serial,
        primary_mask: 0x80,
        hash_option: HASH_BY_HANDLE,
        hash_filter: Vec::new(),
        attributes: Vec::new(),
        servers: addresses
            .iter()
            .enumerate()
            .map(|(i, a)| server(i as u32 + 1, *a))
            .collect(),
    }
}

fn site_value(index: u32, type_name: &str, site: &SiteInfo) -> HandleValue {
    HandleValue::new(index, type_name, site.encode())
}

fn text_value(index: u32, type_name: &str, text: &str) -> HandleValue {
    HandleValue::new(index, type_name, text.as_bytes().to_vec())
}

fn url(index: u32, text: &str) -> HandleValue {
    text_value(index, "URL", text)
}

fn handle(text: &str) -> Handle {
    Handle::parse_lenient(text, SuffixCase::Sensitive).unwrap()
}

fn cache() -> Arc<Cache> {
    Arc::new(Cache::new(
        CacheConfig {
            max_entries: 1000,
            max_bytes: 64 << 20,
            max_ttl_secs: 86_400,
            negative_ttl_secs: 60,
            serve_stale_secs: 300,
        },
        None,
    ))
}

fn recursor_with(fake: &Arc<Fake>, tweak: impl FnOnce(&mut RecursorConfig)) -> Arc<Recursor> {
    let mut config = RecursorConfig {
        roots: vec![site(1, &[ROOT])],
        attempts: 1,
        timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(5),
        ..RecursorConfig::default()
    };
    tweak(&mut config);
    Arc::new(Recursor::new(config, fake.clone(), cache()))
}

fn recursor(fake: &Arc<Fake>) -> Arc<Recursor> {
    recursor_with(fake, |_| {})
}

/// `ask` from a caller that does not know the client: the answer alone.
async fn unadmitted(r: &Recursor, ask: Ask<'_>) -> Result<CachedAnswer, ResolveError> {
    r.resolve(Caller::Unadmitted, ask)
        .await
        .map(|found| found.answer)
}

async fn resolve(r: &Recursor, text: &str) -> Result<CachedAnswer, ResolveError> {
    unadmitted(r, Ask::new(&handle(text), NOW)).await
}

/// Root → 303 (HS_SITE.PREFIX of the secondary) → secondary holds 0.NA/88.100.1 with the
/// enterprise's HS_SITE → the enterprise holds the records.
fn three_levels(fake: &Fake) {
    fake.route(
        ROOT,
        "0.NA/88.100.1",
        Reply::Referral(
            303,
            "",
            vec![site_value(1, "HS_SITE.PREFIX", &site(7, &[SECONDARY]))],
        ),
    );
    fake.route(
        SECONDARY,
        "0.NA/88.100.1",
        Reply::Values(vec![site_value(1, "HS_SITE", &site(3, &[ENTERPRISE]))]),
    );
    fake.route(
        ENTERPRISE,
        "88.100.1/SN-0001",
        Reply::Values(vec![url(1, "https://example.com/sn-0001")]),
    );
    fake.route(
        ENTERPRISE,
        "88.100.1/SN-0002",
        Reply::Values(vec![url(1, "https://example.com/sn-0002")]),
    );
}

// --- hole 7: who may recurse, and how much ------------------------------------------------

/// The scripted upstream behind a gate: every exchange waits until the test lets it pass.
struct Gated {
    inner: Arc<Fake>,
    gate: Arc<Semaphore>,
    entered: AtomicU64,
}

impl Gated {
    fn new(inner: Arc<Fake>) -> Arc<Gated> {
        Arc::new(Gated {
            inner,
            gate: Arc::new(Semaphore::new(0)),
            entered: AtomicU64::new(0),
        })
    }

    fn entered(&self) -> u64 {
        self.entered.load(Ordering::SeqCst)
    }
}

impl Upstream for Gated {
    fn exchange<'a>(
        &'a self,
        server: SocketAddr,
        transport: Transport,
        request: &'a Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ExchangeError>> {
        Box::pin(async move {
            self.entered.fetch_add(1, Ordering::SeqCst);
            match self.gate.acquire().await {
                Ok(pass) => pass.forget(),
                Err(_) => return Err(ExchangeError::Timeout),
            }
            self.inner
                .exchange(server, transport, request, timeout)
                .await
        })
    }
}

/// Wait (bounded in iterations, not in time asserted on) until `cond` holds.
async fn until(cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("condition never became true");
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn gated_recursor(gated: &Arc<Gated>, max_concurrent: usize) -> Arc<Recursor> {
    let config = RecursorConfig {
        roots: vec![site(1, &[ROOT])],
        attempts: 1,
        timeout: Duration::from_secs(60),
        deadline: Duration::from_secs(120),
        max_concurrent,
        ..RecursorConfig::default()
    };
    Arc::new(Recursor::new(config, gated.clone(), cache()))
}

#[tokio::test]
async fn hole7_concurrency_cap_refuses_fast_beyond_max_concurrent() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let gated = Gated::new(fake.clone());
    let r = gated_recursor(&gated, 4);
    // Four slow lookups of different handles fill the cap.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let permit = r.admit(LOOPBACK).expect("a free slot");
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let h = handle(&format!("88.100.1/SN-000{}", i % 2 + 1));
            let h = if i < 2 {
                h
            } else {
                handle(&format!("88.100.1/OTHER-{i}"))
            };
            r.resolve(Caller::Admitted(&permit), Ask::new(&h, NOW))
                .await
        }));
    }
    until(|| gated.entered() == 4).await;
    assert_eq!(r.in_flight(), 4);
    // Beyond the cap: refused at once, with no upstream work at all.
    for _ in 0..100 {
        assert_eq!(r.admit(LOOPBACK).unwrap_err(), Refused::Busy);
    }
    let unadmitted = unadmitted(&r, Ask::new(&handle("88.100.1/SN-9"), NOW)).await;
    assert_eq!(unadmitted.unwrap_err().code(), ResponseCode::ServerTooBusy);
    assert_eq!(gated.entered(), 4);
    assert_eq!(r.stats().refused_busy, 101);
    assert_eq!(Refused::Busy.failure().code(), ResponseCode::ServerTooBusy);

    // Let them finish: the slots come back.
    gated.gate.add_permits(1000);
    for task in tasks {
        let _ = task.await.unwrap();
    }
    assert_eq!(r.in_flight(), 0);
    let permit = r.admit(LOOPBACK).expect("slots are given back");
    let got = r
        .resolve(
            Caller::Admitted(&permit),
            Ask::new(&handle("88.100.1/SN-0001"), NOW),
        )
        .await
        .unwrap();
    assert_eq!(
        got.answer,
        CachedAnswer::Values(vec![url(1, "https://example.com/sn-0001")])
    );
}

#[tokio::test]
async fn hole7_coalesced_waiters_each_hold_a_slot() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let gated = Gated::new(fake.clone());
    let r = gated_recursor(&gated, 3);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let permit = r.admit(LOOPBACK).unwrap();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let h = handle("88.100.1/SN-0001");
            r.resolve(Caller::Admitted(&permit), Ask::new(&h, NOW))
                .await
        }));
    }
    until(|| gated.entered() == 1 && r.cache().in_flight() == 1).await;
    // One fetch upstream, but every waiting request counts against the cap.
    assert_eq!(r.in_flight(), 3);
    assert_eq!(r.admit(LOOPBACK).unwrap_err(), Refused::Busy);
    gated.gate.add_permits(1000);
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(r.stats().fetches, 1);
    assert_eq!(r.in_flight(), 0);
}

#[tokio::test]
async fn hole7_allow_list_decides_who_may_recurse() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let r = recursor(&fake);
    for yes in [
        "127.0.0.1",
        "::1",
        "10.9.8.7",
        "192.168.0.1",
        "::ffff:172.16.0.1",
    ] {
        assert!(r.admit(yes.parse().unwrap()).is_ok(), "{yes}");
    }
    for no in ["8.8.8.8", "2001:db8::1", "::ffff:203.0.113.1"] {
        assert_eq!(
            r.admit(no.parse().unwrap()).unwrap_err(),
            Refused::NotAllowed
        );
    }
    assert_eq!(r.stats().refused_not_allowed, 3);
    assert_eq!(
        fake.count(),
        0,
        "a refused client causes no upstream traffic"
    );
    assert_eq!(
        Refused::NotAllowed.failure().code(),
        ResponseCode::ServerNotResponsible
    );
    let open = recursor_with(&fake, |c| c.allow = CidrList::everyone());
    assert!(open.admit("8.8.8.8".parse().unwrap()).is_ok());
    let closed = recursor_with(&fake, |c| c.allow = CidrList::default());
    assert_eq!(closed.admit(LOOPBACK).unwrap_err(), Refused::NotAllowed);
}

#[tokio::test]
async fn hole7_type_and_index_lists_are_capped_before_the_cache() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let r = recursor(&fake);
    let h = handle("88.100.1/SN-0001");
    let at_limit: Vec<String> = (0..MAX_REQUEST_TYPES)
        .map(|i| format!("{i:0>width$}", width = MAX_REQUEST_TYPE_LEN))
        .collect();
    let indexes: Vec<u32> = (0..MAX_REQUEST_INDEXES as u32).collect();
    assert_eq!(check_request_shape(&indexes, &at_limit), Ok(()));
    let too_many_types: Vec<String> = (0..=MAX_REQUEST_TYPES).map(|i| format!("T{i}")).collect();
    let too_long = ["X".repeat(MAX_REQUEST_TYPE_LEN + 1)];
    let huge = ["X".repeat(66_000)];
    let too_many_indexes: Vec<u32> = (0..=MAX_REQUEST_INDEXES as u32).collect();
    let permit = r.admit(LOOPBACK).unwrap();
    for (indexes, types) in [
        (&[][..], &too_many_types[..]),
        (&[][..], &too_long[..]),
        (&[][..], &huge[..]),
        (&too_many_indexes[..], &[][..]),
    ] {
        assert!(check_request_shape(indexes, types).is_err());
        let ask = Ask {
            indexes,
            types,
            ..Ask::new(&h, NOW)
        };
        let err = unadmitted(&r, ask).await.unwrap_err();
        assert_eq!(err.code(), ResponseCode::ProtocolError, "{err}");
        let err = r.resolve(Caller::Admitted(&permit), ask).await.unwrap_err();
        assert_eq!(err.code(), ResponseCode::ProtocolError);
    }
    assert_eq!(fake.count(), 0);
    assert!(r.cache().is_empty());
    assert_eq!(r.cache().bytes(), 0);
    assert_eq!(r.stats().refused_shape, 8);
    // Within the bounds: answered as usual.
    assert!(r
        .resolve(
            Caller::Admitted(&permit),
            Ask {
                indexes: &[1],
                types: &["URL".to_string()],
                ..Ask::new(&h, NOW)
            }
        )
        .await
        .is_ok());
}

// --- hierarchy walking -------------------------------------------------------------------

#[tokio::test]
async fn three_level_chain_then_cache_hit() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let r = recursor(&fake);
    let got = resolve(&r, "88.100.1/SN-0001").await.unwrap();
    assert_eq!(
        got,
        CachedAnswer::Values(vec![url(1, "https://example.com/sn-0001")])
    );
    let udp = Transport::Udp;
    assert_eq!(
        fake.hops(),
        vec![
            (ip(ROOT), udp, "0.NA/88.100.1".to_string()),
            (ip(SECONDARY), udp, "0.NA/88.100.1".to_string()),
            (ip(ENTERPRISE), udp, "88.100.1/SN-0001".to_string()),
        ]
    );
    let calls = fake.calls();
    assert_eq!(calls[0].types, owned(&PREFIX_RECORD_TYPES));
    assert!(calls[2].types.is_empty());
    assert_eq!(calls[0].server.port(), 2641);
    // The request as specified: 2.11 suggesting 2.11, CA|PO, recursion 0 + 1, serial
    // unknown, expiring in 12 hours, an empty credential, a non-zero request id.
    for c in &calls {
        let m = &c.request;
        assert_eq!((m.envelope.major, m.envelope.minor), (2, 11));
        assert_eq!(m.envelope.suggested_version(), (2, 11));
        assert_ne!(m.envelope.request_id, 0);
        assert_eq!(m.header.op_code, op::RESOLUTION);
        assert_eq!(m.header.op_flag, 0x0900_0000);
        assert_eq!(m.header.recursion_count, 1);
        assert_eq!(m.header.site_serial, 0xFFFF);
        assert_eq!(u64::from(m.header.expiration), NOW + 43_200);
        assert_eq!(m.credential, Some(Vec::new()));
    }

    // Second time: from the cache, no upstream traffic at all.
    let again = resolve(&r, "88.100.1/SN-0001").await.unwrap();
    assert_eq!(again, got);
    assert_eq!(fake.count(), 3);
    let stats = r.stats();
    assert_eq!(
        (stats.cache_hits, stats.fetches, stats.exchanges),
        (1, 1, 3)
    );
}

#[tokio::test]
async fn prefix_sites_are_cached() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let r = recursor(&fake);
    resolve(&r, "88.100.1/SN-0001").await.unwrap();
    assert_eq!(fake.count(), 3);
    // Another identifier under the same prefix goes straight to the enterprise.
    let got = unadmitted(&r, Ask::new(&handle("88.100.1/SN-0002"), NOW + 10))
        .await
        .unwrap();
    assert_eq!(
        got,
        CachedAnswer::Values(vec![url(1, "https://example.com/sn-0002")])
    );
    assert_eq!(fake.count(), 4);
    assert_eq!(fake.hops()[3].0, ip(ENTERPRISE));
    assert!(matches!(
        r.cache().get_sites("88.100.1", NOW),
        Lookup::Fresh(sites) if sites == vec![site(3, &[ENTERPRISE])]
    ));
}

#[tokio::test]
async fn hs_serv_chain_is_followed() {
    let fake = Arc::new(Fake::default());
    // 0.NA/20.500 → HS_SERV 0.SERV/A → HS_SERV 0.SERV/B (+ a cycle back to A) → HS_SITE.
    fake.route(
        ROOT,
        "0.NA/20.500",
        Reply::Values(vec![text_value(1, "HS_SERV", "0.SERV/A")]),
    );
    fake.route(
        ROOT,
        "0.SERV/A",
        Reply::Values(vec![
            text_value(1, "HS_SERV", "0.SERV/B"),
            text_value(2, "HS_SERV", "0.SERV/A"),
        ]),
    );
    fake.route(
        ROOT,
        "0.SERV/B",
        Reply::Values(vec![site_value(1, "HS_SITE", &site(3, &[ENTERPRISE]))]),
    );
    fake.route(ENTERPRISE, "20.500/x", Reply::Values(vec![url(1, "u")]));
    let r = recursor(&fake);
    assert_eq!(
        resolve(&r, "20.500/x").await.unwrap(),
        CachedAnswer::Values(vec![url(1, "u")])
    );
    let hops: Vec<String> = fake.hops().into_iter().map(|h| h.2).collect();
    assert_eq!(hops, ["0.NA/20.500", "0.SERV/A", "0.SERV/B", "20.500/x"]);
    assert_eq!(fake.calls()[1].types, owned(&SERVICE_TYPES));

    // HS_SERV 0.NA/0.NA is the global service: the roots themselves.
    fake.route(
        ROOT,
        "0.NA/20.600",
        Reply::Values(vec![text_value(1, "HS_SERV", "0.NA/0.NA")]),
    );
    fake.route(ROOT, "20.600/y", Reply::Values(vec![url(1, "v")]));
    assert_eq!(
        resolve(&r, "20.600/y").await.unwrap(),
        CachedAnswer::Values(vec![url(1, "v")])
    );
    assert_eq!(fake.count(), 6);
}

#[tokio::test]
async fn hs_serv_chain_is_depth_bounded() {
    let fake = Arc::new(Fake::default());
    fake.route(
        ROOT,
        "0.NA/20.700",
        Reply::Values(vec![text_value(1, "HS_SERV", "0.SERV/0")]),
    );
    for n in 0..40 {
        fake.route(
            ROOT,
            &format!("0.SERV/{n}"),
            Reply::Values(vec![text_value(1, "HS_SERV", &format!("0.SERV/{}", n + 1))]),
        );
    }
    let r = recursor(&fake);
    let err = resolve(&r, "20.700/z").await.unwrap_err();
    assert_eq!(err.code(), ResponseCode::Error);
    assert!(err.to_string().contains("deeper"), "{err}");
    assert!(
        fake.count() <= MAX_SERVICE_DEPTH + 2,
        "{} calls",
        fake.count()
    );
}

#[tokio::test]
async fn prefix_served_by_its_own_handles_is_a_cycle() {
    let fake = Arc::new(Fake::default());
    // 0.NA/30.1 says: ask the service described by 30.1/svc, which lives under 30.1.
    fake.route(
        ROOT,
        "0.NA/30.1",
        Reply::Values(vec![text_value(1, "HS_SERV", "30.1/svc")]),
    );
    let r = recursor(&fake);
    let err = resolve(&r, "30.1/x").await.unwrap_err();
    assert!(err.to_string().contains("depend on themselves"), "{err}");
    assert_eq!(fake.count(), 1);
}

#[test]
fn resolve_futures_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let fake = Arc::new(Fake::default());
    let r = recursor(&fake);
    let h = handle("88.100.1/SN-0001");
    let future = r.resolve(Caller::Unadmitted, Ask::new(&h, NOW));
    assert_send(&future);
}

#[tokio::test]
async fn service_referral_with_a_referral_handle() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    // 302 with no values, only a handle whose HS_SITE describes where to go.
    fake.route(
        ENTERPRISE,
        "88.100.1/moved",
        Reply::Referral(302, "0.SERV/E2", Vec::new()),
    );
    fake.route(
        ROOT,
        "0.SERV/E2",
        Reply::Values(vec![site_value(1, "HS_SITE", &site(9, &[ENTERPRISE_2]))]),
    );
    fake.route(
        ENTERPRISE_2,
        "88.100.1/moved",
        Reply::Values(vec![url(1, "here")]),
    );
    let r = recursor(&fake);
    assert_eq!(
        resolve(&r, "88.100.1/moved").await.unwrap(),
        CachedAnswer::Values(vec![url(1, "here")])
    );
    let hops: Vec<(IpAddr, String)> = fake.hops().into_iter().map(|h| (h.0, h.2)).collect();
    assert_eq!(
        hops[2..],
        [
            (ip(ENTERPRISE), "88.100.1/moved".to_string()),
            (ip(ROOT), "0.SERV/E2".to_string()),
            (ip(ENTERPRISE_2), "88.100.1/moved".to_string()),
        ]
    );
}

#[tokio::test]
async fn prefix_handles_go_to_the_roots() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let r = recursor(&fake);
    // "0.NA/88.100.1" (and slash-less "88.100.1") resolve at the roots, following the 303.
    let got = resolve(&r, "88.100.1").await.unwrap();
    assert_eq!(
        got,
        CachedAnswer::Values(vec![site_value(1, "HS_SITE", &site(3, &[ENTERPRISE]))])
    );
    let hops: Vec<IpAddr> = fake.hops().into_iter().map(|h| h.0).collect();
    assert_eq!(hops, [ip(ROOT), ip(SECONDARY)]);
}

// --- server selection and transports -----------------------------------------------------

/// A handle under `prefix` whose whole-handle hash picks server `want` of two.
fn handle_for_server(prefix: &str, want: u32) -> String {
    (0..)
        .map(|n| format!("{prefix}/item-{n}"))
        .find(|h| handle_hash(h, HASH_BY_HANDLE) % 2 == want)
        .unwrap()
}

#[tokio::test]
async fn two_server_site_routes_by_hash() {
    let fake = Arc::new(Fake::default());
    let two = site(4, &[ENTERPRISE, ENTERPRISE_2]);
    fake.route(
        ROOT,
        "0.NA/77.1",
        Reply::Values(vec![site_value(1, "HS_SITE", &two)]),
    );
    let first = handle_for_server("77.1", 0);
    let second = handle_for_server("77.1", 1);
    // Each server holds only its partition; the other would answer 301.
    fake.route(ENTERPRISE, &first, Reply::Values(vec![url(1, "first")]));
    fake.route(ENTERPRISE_2, &second, Reply::Values(vec![url(1, "second")]));
    let r = recursor(&fake);
    assert_eq!(
        resolve(&r, &first).await.unwrap(),
        CachedAnswer::Values(vec![url(1, "first")])
    );
    assert_eq!(
        resolve(&r, &second).await.unwrap(),
        CachedAnswer::Values(vec![url(1, "second")])
    );
    let hops = fake.hops();
    assert_eq!(hops.len(), 3);
    assert_eq!(
        (hops[1].0, hops[1].2.as_str()),
        (ip(ENTERPRISE), first.as_str())
    );
    assert_eq!(
        (hops[2].0, hops[2].2.as_str()),
        (ip(ENTERPRISE_2), second.as_str())
    );

    // The server the hash picks answers 301 and the site has no other copy: a failure
    // that says so (not a wrong answer from the other server).
    let third = handle_for_server("77.1", 0);
    fake.route(
        ENTERPRISE,
        &third,
        Reply::Code(301, "Request was hashed incorrectly"),
    );
    fake.route(
        ENTERPRISE_2,
        &third,
        Reply::Values(vec![url(1, "wrong server")]),
    );
    let r = recursor(&fake);
    let err = resolve(&r, &third).await.unwrap_err();
    assert!(err.to_string().contains("301"), "{err}");
}

#[tokio::test]
async fn not_responsible_tries_the_next_site_primary_first() {
    let fake = Arc::new(Fake::default());
    let primary = site(5, &[TOP]);
    let mirror = SiteInfo {
        primary_mask: 0,
        ..site(6, &[SECONDARY])
    };
    // The mirror is listed first; the primary is still asked first.
    fake.route(
        ROOT,
        "0.NA/77.2",
        Reply::Values(vec![
            site_value(1, "HS_SITE", &mirror),
            site_value(2, "HS_SITE", &primary),
        ]),
    );
    fake.route(
        TOP,
        "77.2/a",
        Reply::Code(301, "That prefix doesn't live here"),
    );
    fake.route(SECONDARY, "77.2/a", Reply::Values(vec![url(1, "mirror")]));
    let r = recursor(&fake);
    assert_eq!(
        resolve(&r, "77.2/a").await.unwrap(),
        CachedAnswer::Values(vec![url(1, "mirror")])
    );
    let hops: Vec<IpAddr> = fake.hops().into_iter().map(|h| h.0).collect();
    assert_eq!(hops, [ip(ROOT), ip(TOP), ip(SECONDARY)]);
}

#[tokio::test]
async fn udp_timeout_then_tcp() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    fake.route(
        ENTERPRISE,
        "88.100.1/SN-0001",
        Reply::UdpTimeout(Box::new(Reply::Values(vec![url(1, "over tcp")]))),
    );
    let r = recursor_with(&fake, |c| c.attempts = 2);
    let started = std::time::Instant::now();
    assert_eq!(
        resolve(&r, "88.100.1/SN-0001").await.unwrap(),
        CachedAnswer::Values(vec![url(1, "over tcp")])
    );
    // One backoff (100 ms) between the two UDP attempts.
    assert!(started.elapsed() >= Duration::from_millis(100));
    let (udp, tcp) = (Transport::Udp, Transport::Tcp);
    let to_enterprise: Vec<Transport> = fake
        .hops()
        .into_iter()
        .filter(|h| h.0 == ip(ENTERPRISE))
        .map(|h| h.1)
        .collect();
    assert_eq!(to_enterprise, [udp, udp, tcp]);
    // Each attempt is a new request id.
    let ids: HashSet<u32> = fake
        .calls()
        .iter()
        .map(|c| c.request.envelope.request_id)
        .collect();
    assert_eq!(ids.len(), 5);
}

// --- bounds and liars --------------------------------------------------------------------

#[tokio::test]
async fn referral_loop_fails_fast() {
    let fake = Arc::new(Fake::default());
    let root = site(1, &[ROOT]);
    fake.route(
        ROOT,
        "0.NA/66",
        Reply::Referral(
            303,
            "",
            vec![site_value(1, "HS_SITE.PREFIX", &site(2, &[TOP]))],
        ),
    );
    fake.route(
        TOP,
        "0.NA/66",
        Reply::Referral(303, "", vec![site_value(1, "HS_SITE.PREFIX", &root)]),
    );
    let r = recursor(&fake);
    let err = resolve(&r, "66/x").await.unwrap_err();
    assert_eq!(err.code(), ResponseCode::Error);
    assert!(err.to_string().contains("loop"), "{err}");
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn referral_chain_is_bounded() {
    let fake = Arc::new(Fake::default());
    // Root → S1 → S2 → … every hop a new site: no loop, just too long.
    let hosts: Vec<[u8; 4]> = (0..10).map(|n| [10, 1, 0, n]).collect();
    fake.route(
        ROOT,
        "0.NA/55",
        Reply::Referral(
            303,
            "",
            vec![site_value(1, "HS_SITE.PREFIX", &site(1, &[hosts[0]]))],
        ),
    );
    for pair in hosts.windows(2) {
        fake.route(
            pair[0],
            "0.NA/55",
            Reply::Referral(
                303,
                "",
                vec![site_value(1, "HS_SITE.PREFIX", &site(1, &[pair[1]]))],
            ),
        );
    }
    let r = recursor_with(&fake, |c| c.max_referrals = 3);
    let err = resolve(&r, "55/x").await.unwrap_err();
    assert!(err.to_string().contains("more than 3 referrals"), "{err}");
    assert_eq!(fake.count(), 4);
}

#[tokio::test]
async fn lying_upstreams_fail_clearly() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    fake.route(ENTERPRISE, "88.100.1/wrong-id", Reply::WrongRequestId);
    fake.route(
        ENTERPRISE,
        "88.100.1/garbage",
        Reply::Fail(ExchangeError::Malformed("envelope: truncated".into())),
    );
    fake.route(ENTERPRISE, "88.100.1/wrong-op", Reply::WrongOpCode);
    let r = recursor(&fake);
    for (h, expect) in [
        ("88.100.1/wrong-id", "request id"),
        ("88.100.1/garbage", "malformed response"),
        ("88.100.1/wrong-op", "opCode 101"),
    ] {
        let before = fake.count();
        let err = resolve(&r, h).await.unwrap_err();
        assert_eq!(err.code(), ResponseCode::Error, "{h}");
        assert!(err.to_string().contains(expect), "{h}: {err}");
        // UDP then TCP, no retries of a liar, and nothing cached.
        let after: Vec<Transport> = fake.hops()[before..].iter().map(|h| h.1).collect();
        assert!(after.len() <= 4, "{h}: {after:?}");
        assert!(after.ends_with(&[Transport::Udp, Transport::Tcp]));
    }
    let key = CacheKey::new("88.100.1/wrong-id", &[], &[], true);
    assert_eq!(r.cache().get(&key, NOW), Lookup::Miss);
}

#[tokio::test]
async fn deadline_bounds_a_hanging_upstream() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    fake.route(ENTERPRISE, "88.100.1/slow", Reply::Hang);
    let r = recursor_with(&fake, |c| c.deadline = Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = resolve(&r, "88.100.1/slow").await.unwrap_err();
    assert_eq!(err.code(), ResponseCode::Error);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn recursion_count_limit() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let r = recursor_with(&fake, |c| c.max_recursion_count = 10);
    let h = handle("88.100.1/SN-0001");
    let err = unadmitted(
        &r,
        Ask {
            recursion_count: 10,
            ..Ask::new(&h, NOW)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ResponseCode::RecursionCountTooHigh);
    assert_eq!(fake.count(), 0);
    let err = unadmitted(
        &r,
        Ask {
            recursion_count: 255,
            ..Ask::new(&h, NOW)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ResponseCode::RecursionCountTooHigh);
    // 9 + 1 = 10 is allowed, and that is what goes upstream.
    unadmitted(
        &r,
        Ask {
            recursion_count: 9,
            ..Ask::new(&h, NOW)
        },
    )
    .await
    .unwrap();
    assert!(fake
        .calls()
        .iter()
        .all(|c| c.request.header.recursion_count == 10));
}

// --- answers and the cache ---------------------------------------------------------------

#[tokio::test]
async fn not_found_is_cached_as_negative() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    fake.route(
        ENTERPRISE,
        "88.100.1/none",
        Reply::Code(100, "Handle Not Found"),
    );
    let r = recursor(&fake);
    assert_eq!(
        resolve(&r, "88.100.1/none").await.unwrap(),
        CachedAnswer::HandleNotFound
    );
    let calls = fake.count();
    assert_eq!(
        resolve(&r, "88.100.1/none").await.unwrap(),
        CachedAnswer::HandleNotFound
    );
    assert_eq!(fake.count(), calls);

    // A prefix the roots do not know: the identifier does not exist (and that is cached).
    fake.route(ROOT, "0.NA/99", Reply::Code(100, ""));
    assert_eq!(
        resolve(&r, "99/x").await.unwrap(),
        CachedAnswer::HandleNotFound
    );
    let calls = fake.count();
    assert_eq!(
        resolve(&r, "99/y").await.unwrap(),
        CachedAnswer::HandleNotFound
    );
    assert_eq!(fake.count(), calls, "the missing prefix is remembered");
}

#[tokio::test]
async fn other_codes() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    fake.route(ENTERPRISE, "88.100.1/empty", Reply::Code(200, ""));
    fake.route(ENTERPRISE, "88.100.1/secret", Reply::Code(401, "no access"));
    fake.route(ENTERPRISE, "88.100.1/odd", Reply::Code(999, "what"));
    fake.route(
        ENTERPRISE,
        "88.100.1/private",
        Reply::Values(vec![
            url(1, "admin only").with_permissions(crate::model::ValuePermissions::ADMIN_ONLY)
        ]),
    );
    let r = recursor(&fake);
    assert_eq!(
        resolve(&r, "88.100.1/empty").await.unwrap(),
        CachedAnswer::ValuesNotFound
    );
    let err = resolve(&r, "88.100.1/secret").await.unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().as_str()),
        (ResponseCode::InsufficientPermissions, "no access")
    );
    let err = resolve(&r, "88.100.1/odd").await.unwrap_err();
    assert_eq!(err.code(), ResponseCode::Error);
    assert!(err.to_string().contains("999"), "{err}");
    // Values without public read never come out of a public-only resolve.
    assert_eq!(
        resolve(&r, "88.100.1/private").await.unwrap(),
        CachedAnswer::ValuesNotFound
    );
}

#[tokio::test]
async fn stale_answer_served_when_upstream_fails() {
    let fake = Arc::new(Fake::default());
    three_levels(&fake);
    let mut short = url(1, "cached");
    short.ttl = Ttl::Relative(60);
    fake.route(
        ENTERPRISE,
        "88.100.1/SN-0001",
        Reply::Values(vec![short.clone()]),
    );
    let r = recursor(&fake);
    let h = handle("88.100.1/SN-0001");
    assert_eq!(
        unadmitted(&r, Ask::new(&h, NOW)).await.unwrap(),
        CachedAnswer::Values(vec![short.clone()])
    );
    // The enterprise goes away; past the TTL the stale answer is served (after trying).
    fake.route(
        ENTERPRISE,
        "88.100.1/SN-0001",
        Reply::Fail(ExchangeError::Io("connection refused".into())),
    );
    let before = fake.count();
    assert_eq!(
        unadmitted(&r, Ask::new(&h, NOW + 61)).await.unwrap(),
        CachedAnswer::Values(vec![short])
    );
    assert!(fake.count() > before, "the upstream was tried first");
    assert_eq!(r.stats().stale_served, 1);
    // Past the stale window it is gone: the failure comes through.
    let err = unadmitted(&r, Ask::new(&h, NOW + 61 + 300))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ResponseCode::Error);
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn no_roots_no_hang() {
    let fake = Arc::new(Fake::default());
    let r = recursor_with(&fake, |c| c.roots.clear());
    let err = resolve(&r, "88.100.1/x").await.unwrap_err();
    assert!(err.to_string().contains("no root sites"), "{err}");
}
