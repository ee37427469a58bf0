//! The resolver's routing and answer shapes over a real engine and a scripted upstream.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::model::structured::{interface, Interface, ServerInfo};
use crate::model::{Prefix, SiteInfo};
use crate::resolve::cache::{Cache, CacheConfig};
use crate::resolve::recursion::{BoxFuture, RecursorConfig, Upstream};
use crate::resolve::site::HASH_BY_HANDLE;
use crate::resolve::{init_prefix, Policy};
use crate::store::{Registry, StoreOptions};
use crate::wire::handle::message::{Body, Message};

const NOW: u64 = 1_700_000_000;
const UPSTREAM: [u8; 4] = [10, 0, 0, 1];
const ALLOWED: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));

fn site() -> SiteInfo {
    SiteInfo {
        data_format_version: 1,
        protocol_major: 2,
        protocol_minor: 11,
        serial: 1,
        primary_mask: 0x80,
        hash_option: HASH_BY_HANDLE,
        hash_filter: Vec::new(),
        attributes: Vec::new(),
        servers: vec![ServerInfo {
            server_id: 1,
            address: ServerInfo::address_from_ip(IpAddr::V4(Ipv4Addr::from(UPSTREAM))),
            public_key: Vec::new(),
            interfaces: vec![Interface {
                kind: interface::ADMIN_AND_QUERY,
                protocol: interface::UDP,
                port: 2641,
            }],
        }],
    }
}

/// One upstream server that holds 88.200.9: `88.200.9/HAS` has a URL, anything else under
/// it is not found. Counts the exchanges.
#[derive(Default)]
struct Upstream1 {
    calls: std::sync::atomic::AtomicUsize,
}

impl Upstream for Upstream1 {
    fn exchange<'a>(
        &'a self,
        _server: SocketAddr,
        _transport: crate::model::Transport,
        request: &'a Message,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ExchangeError>> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            let Body::Resolution { handle, .. } = &request.body else {
                return Err(ExchangeError::Malformed("not a resolution".into()));
            };
            let (code, body) = match handle.to_ascii_uppercase().as_str() {
                "0.NA/88.200.9" => (
                    1,
                    Body::Values {
                        handle: handle.clone(),
                        values: vec![HandleValue::new(1, "HS_SITE", site().encode())],
                    },
                ),
                "88.200.9/HAS" => (
                    1,
                    Body::Values {
                        handle: handle.clone(),
                        values: vec![HandleValue::new(1, "URL", "https://example.com/has")],
                    },
                ),
                _ => (
                    100,
                    Body::Error {
                        message: "Handle Not Found".into(),
                    },
                ),
            };
            Ok(crate::wire::handle::vectors::server_response(
                request, code, body,
            ))
        })
    }
}

use crate::wire::handle::exchange::ExchangeError;

struct Node {
    _dir: tempfile::TempDir,
    resolver: Resolver,
    upstream: Arc<Upstream1>,
}

fn node(max_concurrent: usize) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::open(dir.path(), &StoreOptions::default()).unwrap());
    init_prefix(&reg, &Prefix::parse("88.100.1").unwrap(), 300, b"pw").unwrap();
    let engine = Engine::new(reg, Policy::default());
    let owner = engine
        .authenticate_secret(&handle("0.NA/88.100.1"), 300, b"pw")
        .unwrap();
    engine
        .create(
            &owner,
            &handle("88.100.1/HOME"),
            vec![HandleValue::new(1, "URL", "https://example.com/home")],
            crate::resolve::Overwrite::No,
        )
        .unwrap();
    let upstream = Arc::new(Upstream1::default());
    let cache = Arc::new(Cache::new(
        CacheConfig {
            max_entries: 100,
            max_bytes: 1 << 20,
            max_ttl_secs: 3600,
            negative_ttl_secs: 60,
            serve_stale_secs: 0,
        },
        None,
    ));
    let config = RecursorConfig {
        roots: vec![site()],
        attempts: 1,
        max_concurrent,
        ..RecursorConfig::default()
    };
    let recursor = Recursor::new(config, upstream.clone(), cache);
    Node {
        _dir: dir,
        resolver: Resolver::new(engine, Some(Arc::new(recursor))),
        upstream,
    }
}

fn handle(text: &str) -> Handle {
    Handle::parse_lenient(text, Default::default()).unwrap()
}

fn query(text: &str, public_only: bool) -> Query {
    Query {
        handle: handle(text),
        indexes: Vec::new(),
        types: Vec::new(),
        public_only,
        refer: true,
    }
}

fn calls(n: &Node) -> usize {
    n.upstream.calls.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn routes_homed_identifiers_and_strangers_locally_and_the_rest_upstream() {
    let n = node(4);
    let r = &n.resolver;
    assert!(matches!(
        r.route(&handle("88.100.1/HOME"), ALLOWED),
        Route::Local
    ));
    assert!(matches!(
        r.route(&handle("88.200.9/HAS"), STRANGER),
        Route::Local
    ));
    assert!(matches!(
        r.route(&handle("88.200.9/HAS"), ALLOWED),
        Route::Upstream(_)
    ));
    assert!(r.relays_to(ALLOWED) && !r.relays_to(STRANGER));
    let local = Resolver::new(r.engine().clone(), None);
    assert!(matches!(
        local.route(&handle("88.200.9/HAS"), ALLOWED),
        Route::Local
    ));
    assert!(!local.recurses() && local.relays_to(STRANGER));
}

#[test]
fn a_full_recursor_routes_to_busy() {
    let n = node(1);
    let held = n.resolver.route(&handle("88.200.9/HAS"), ALLOWED);
    assert!(matches!(held, Route::Upstream(_)));
    assert!(matches!(
        n.resolver.route(&handle("88.200.9/HAS"), ALLOWED),
        Route::Busy
    ));
    drop(held);
    assert!(matches!(
        n.resolver.route(&handle("88.200.9/HAS"), ALLOWED),
        Route::Upstream(_)
    ));
}

#[tokio::test]
async fn resolve_answers_local_values_as_local_and_foreign_ones_as_relayed() {
    let n = node(4);
    let home = n
        .resolver
        .resolve(&query("88.100.1/HOME", true), None, Some(ALLOWED), NOW)
        .await;
    assert_eq!(home.origin, Origin::Local);
    assert_eq!(
        home.outcome.unwrap()[0].data_str(),
        Some("https://example.com/home")
    );
    assert_eq!(calls(&n), 0);

    let far = n
        .resolver
        .resolve(&query("88.200.9/HAS", true), None, Some(ALLOWED), NOW)
        .await;
    assert!(matches!(far.origin, Origin::Relayed { fresh_for, verified: false } if fresh_for > 0));
    assert_eq!(
        far.outcome.unwrap()[0].data_str(),
        Some("https://example.com/has")
    );

    // The second time from the cache: no exchange, still relayed.
    let before = calls(&n);
    let again = n
        .resolver
        .resolve(&query("88.200.9/HAS", true), None, Some(ALLOWED), NOW)
        .await;
    assert!(again.outcome.is_ok() && matches!(again.origin, Origin::Relayed { .. }));
    assert_eq!(calls(&n), before);
}

#[tokio::test]
async fn non_public_queries_and_unknown_clients_are_answered_here() {
    let n = node(4);
    for (public_only, client) in [(false, Some(ALLOWED)), (true, None), (true, Some(STRANGER))] {
        let a = n
            .resolver
            .resolve(&query("88.200.9/HAS", public_only), None, client, NOW)
            .await;
        assert_eq!(a.origin, Origin::Local);
        assert_eq!(
            a.outcome.unwrap_err().code(),
            ResponseCode::ServerNotResponsible
        );
    }
    assert_eq!(calls(&n), 0);
}

#[tokio::test]
async fn a_relayed_not_found_is_an_answer_with_a_lifetime() {
    let n = node(4);
    let a = n
        .resolver
        .resolve(&query("88.200.9/NOPE", true), None, Some(ALLOWED), NOW)
        .await;
    assert_eq!(a.outcome.unwrap_err().code(), ResponseCode::HandleNotFound);
    assert!(matches!(a.origin.fresh_for(), Some(f) if f > 0));
}

#[tokio::test]
async fn a_required_certificate_the_upstream_did_not_give_is_an_error_and_a_checked_one_relays() {
    let n = node(4);
    let q = query("88.200.9/HAS", true);
    let Route::Upstream(permit) = n.resolver.route(&q.handle, ALLOWED) else {
        panic!("not routed upstream");
    };
    let fetch = |certify| Fetch {
        recursion_count: 0,
        certify,
    };
    let required = n
        .resolver
        .upstream(&permit, &q, fetch(Certify::Require), NOW)
        .await;
    assert_eq!(required.outcome.unwrap_err().code(), ResponseCode::Error);
    assert!(!required.origin.verified());
    let checked = n
        .resolver
        .upstream(&permit, &q, fetch(Certify::Check), NOW)
        .await;
    assert!(checked.outcome.is_ok());
    // Certified answers are never kept or replayed.
    assert_eq!(checked.origin.fresh_for(), Some(0));
    assert!(!checked.origin.verified());
}

#[tokio::test]
async fn candidates_take_the_first_identifier_with_a_record() {
    let n = node(4);
    let r = &n.resolver;
    let local = r.local_candidates(&[handle("88.100.1/NOPE"), handle("88.100.1/HOME")]);
    assert!(matches!(&local.found, Found::Values(h, _) if h.as_str() == "88.100.1/HOME"));
    assert_eq!(
        r.local_candidates(&[handle("88.100.1/NOPE")]).found,
        Found::NoHandle
    );
    assert_eq!(
        r.local_candidates(&[handle("88.200.9/HAS")]).found,
        Found::NotResponsible(handle("88.200.9/HAS"))
    );

    let Route::Upstream(permit) = r.route(&handle("88.200.9/HAS"), ALLOWED) else {
        panic!("not routed upstream");
    };
    let far = r
        .upstream_candidates(
            &permit,
            &[handle("88.200.9/NOPE"), handle("88.200.9/HAS")],
            NOW,
        )
        .await;
    assert!(matches!(&far.found, Found::Values(h, _) if h.as_str() == "88.200.9/HAS"));
    assert!(matches!(far.origin.fresh_for(), Some(f) if f > 0 && f <= 60));
}
