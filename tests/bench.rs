//! `idnode bench` against an in-process node: Handle over UDP and DNS over UDP, about a
//! second each. Only counts are asserted, never timings.

use std::sync::Arc;
use std::time::Duration;

use idnode::bench::{generate_ids, run, BenchConfig, Proto};
use idnode::config::Config;
use idnode::model::{Handle, HandleValue, SuffixCase};
use idnode::resolve::Overwrite;
use idnode::server::{open_registry, prepare_registry, start};

const SECRET: &str = "bench-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_handle_udp_and_dns_udp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("88.100.1.admin-secret"), SECRET).unwrap();
    let toml = format!(
        "[node]\ndata_dir = {data:?}\nhomed_prefixes = [\"88.100.1\"]\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[handle]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nlisten = \"127.0.0.1:0\"\n"
    );
    let config = Config::from_toml(&toml).unwrap();
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    let node = start(config, Arc::new(registry)).await.unwrap();

    let ids = generate_ids("88.100.1", "SN-{:07}", 20).unwrap();
    let admin = Handle::parse("0.NA/88.100.1", SuffixCase::Sensitive).unwrap();
    let identity = node
        .engine
        .authenticate_secret(&admin, 300, SECRET.as_bytes())
        .unwrap();
    for id in &ids {
        let handle = Handle::parse(id, SuffixCase::Sensitive).unwrap();
        let values = vec![HandleValue::new(1, "URL", "http://example.com/x")];
        node.engine
            .create(&identity, &handle, values, Overwrite::No)
            .unwrap();
    }

    for (proto, addr) in [
        (Proto::HandleUdp, node.native_addr.unwrap()),
        (Proto::HandleTcp, node.native_addr.unwrap()),
        (Proto::DnsUdp, node.dns_addr.unwrap()),
    ] {
        let cfg = BenchConfig {
            proto,
            server: addr,
            duration: Duration::from_secs(1),
            concurrency: 8,
            sockets: 2,
            rate: None,
            timeout: Duration::from_secs(5),
            ids: ids.clone(),
            zipf: Some(1.0),
            miss_share: 0.1,
            zone: "id.example.".into(),
            seed: 7,
        };
        let s = run(&cfg).await.unwrap();
        assert!(s.queries_completed > 0, "{proto:?}: {s}");
        assert_eq!(s.queries_lost, 0, "{proto:?}: {s}");
        assert_eq!(s.queries_sent, s.queries_completed, "{proto:?}: {s}");
        let (found, missing) = match proto {
            Proto::HandleUdp | Proto::HandleTcp => ("RC1", "RC100"),
            Proto::DnsUdp => ("NOERROR", "NXDOMAIN"),
        };
        assert!(s.response_codes.get(found).copied().unwrap_or(0) > 0, "{s}");
        assert!(
            s.response_codes.get(missing).copied().unwrap_or(0) > 0,
            "{s}"
        );
    }
    node.shutdown().await;
}
