//! Online backup (issue 14): `idnode export --online` against a running node while a writer
//! thread writes and deletes, imported into a fresh node with `idnode import`, compared with
//! the source's state at the sequence the export names; the zone made online against the
//! offline one; who may ask for an export.

// The test prints the figures it sees (cargo test shows them with --nocapture).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idnode::config::Config;
use idnode::metrics::Metrics;
use idnode::model::{Handle, HandleValue, Prefix, SuffixCase};
use idnode::server::{open_registry, prepare_registry, start, RunningNode};
use idnode::store::{Mutation, Record, Registry, StoreError, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "backup-secret";
const SEED: usize = 4000;

fn idnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idnode"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run idnode")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// A free port on 127.0.0.1 (the CLI finds the node by its configured listener).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node configuration file in `dir/name.toml` homing 88.100, its HTTP listener on `port`.
fn config_file(dir: &Path, name: &str, port: u16) -> String {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("88.100.admin-secret"), SECRET).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[node]\ndata_dir = {data:?}\nhomed_prefixes = [\"88.100\"]\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[handle]\nudp = false\ntcp = false\n\
             [dns]\nudp = false\ntcp = false\nzone = \"id.example.\"\n\
             [sync]\nallow_plain = true\n[[sync.allow]]\nidentity = \"300:0.NA/88.100\"\n\
             prefixes = [\"88.100\"]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn start_node(config: &str) -> RunningNode {
    let config = Config::load(Path::new(config)).unwrap();
    let registry = open_registry(&config).unwrap();
    prepare_registry(&config, &registry).unwrap();
    start(config, Arc::new(registry), Metrics::new().unwrap())
        .await
        .unwrap()
}

fn record(h: &str, v: &str) -> Record {
    Record {
        handle: h.into(),
        values: vec![HandleValue {
            timestamp: 1_700_000_000,
            ..HandleValue::new(1, "URL", v)
        }],
    }
}

/// Put (`Some`) or delete a record; the sequence of the change, if anything changed.
fn write(reg: &Registry, h: &str, v: Option<&str>) -> Option<u64> {
    let handle = Handle::parse(h, SuffixCase::Sensitive).unwrap();
    reg.mutate::<StoreError, _>(&handle, |_| {
        Ok(match v {
            Some(v) => Mutation::Put(record(h, v)),
            None => Mutation::Delete,
        })
    })
    .unwrap()
    .seq
}

/// Key → URL value of every record under 88.100.
fn contents(reg: &Registry) -> BTreeMap<String, String> {
    reg.records_under(&Prefix::parse("88.100").unwrap())
        .map(|r| {
            let (key, rec) = r.unwrap();
            (
                key,
                String::from_utf8_lossy(&rec.values[0].data).into_owned(),
            )
        })
        .collect()
}

/// A write as the writer made it: its sequence, the key and the value (`None`: deleted).
type Written = (u64, String, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_export_under_writes_imports_as_the_state_at_its_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let source = config_file(dir.path(), "source", free_port());
    let node = start_node(&source).await;
    let reg = node.engine.registry().clone();
    let batch: Vec<_> = (0..SEED)
        .map(|i| {
            let h = format!("88.100/N{i:05}");
            (
                Handle::parse(&h, SuffixCase::Sensitive).unwrap(),
                record(&h, "seed"),
            )
        })
        .collect();
    reg.put_batch(&batch).unwrap();
    let mut expected = contents(&reg);

    // A writer: updates, creates and deletes over keys spread through the key range, each
    // noted with its sequence.
    let stop = Arc::new(AtomicBool::new(false));
    let done: Arc<Mutex<Vec<Written>>> = Arc::default();
    let writer = {
        let (reg, stop, done) = (reg.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("88.100/N{:05}", (i * 7919) % (SEED + 500));
                let value = (i % 3 != 0).then(|| format!("w{i}"));
                if let Some(seq) = write(&reg, &key, value.as_deref()) {
                    done.lock().unwrap().push((seq, key, value));
                }
                i += 1;
            }
        })
    };
    while done.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let backup = dir.path().join("backup.jsonl");
    let args = [
        "export".to_string(),
        "--online".into(),
        "--config".into(),
        source.clone(),
        "--output".into(),
        backup.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        idnode(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    // A few more writes after the export, which it must not show.
    let after = done.lock().unwrap().len();
    while done.lock().unwrap().len() < after + 20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("consistent at sequence"),
        "{}",
        text(&out.stderr)
    );

    // The sequence the export is consistent at, from its last line.
    let file = std::fs::read_to_string(&backup).unwrap();
    let last: serde_json::Value = serde_json::from_str(file.lines().last().unwrap()).unwrap();
    let seq = last["export"]["consistent_at_seq"].as_u64().unwrap();
    let writes = done.lock().unwrap().clone();
    assert!(
        writes.iter().any(|(s, ..)| *s > seq),
        "writes after the export"
    );
    for (s, key, value) in writes.iter().filter(|(s, ..)| *s <= seq) {
        assert!(*s > 0);
        match value {
            Some(v) => expected.insert(key.clone(), v.clone()),
            None => expected.remove(key),
        };
    }
    println!(
        "online export: {} lines, consistent at {seq}, {} changes during it",
        file.lines().count(),
        last["export"]["changes"]
    );

    // Imported into a fresh node: exactly the source at that sequence.
    let fresh = config_file(dir.path(), "fresh", free_port());
    let out = idnode(&["import", backup.to_str().unwrap(), "--config", &fresh]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains(&format!("consistent at sequence {seq}")),
        "{}",
        text(&out.stdout)
    );
    let imported = Registry::open(&dir.path().join("fresh"), &StoreOptions::default()).unwrap();
    assert_eq!(contents(&imported), expected);
    drop(imported);

    // With nothing writing, the zone made online is the zone made offline.
    let online_zone = dir.path().join("online.zone");
    let out = tokio::task::spawn_blocking({
        let (source, zone) = (source.clone(), online_zone.display().to_string());
        move || {
            idnode(&[
                "export", "--online", "--format", "zone", "--config", &source, "--output", &zone,
            ])
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    node.shutdown().await;
    drop(reg);
    let offline_zone = dir.path().join("offline.zone");
    let out = idnode(&[
        "export",
        "--format",
        "zone",
        "--config",
        &source,
        "--output",
        offline_zone.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (online, offline) = (
        std::fs::read_to_string(&online_zone).unwrap(),
        std::fs::read_to_string(&offline_zone).unwrap(),
    );
    assert!(online.lines().count() > SEED / 2, "{online}");
    assert_eq!(online, offline);
}

/// GET `path` with `auth` (a whole Authorization header value): the status.
async fn status_of(addr: std::net::SocketAddr, path: &str, auth: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out)[9..12].parse().unwrap()
}

#[tokio::test]
async fn only_the_operator_may_export() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config_file(dir.path(), "n", 0)).await;
    let a = node.http_addr;
    let follower =
        base64::engine::general_purpose::STANDARD.encode(format!("300%3A0.NA%2F88.100:{SECRET}"));
    // A follower of the node's feed is not its operator.
    assert_eq!(
        status_of(a, "/sync/export", &format!("Basic {follower}")).await,
        403
    );
    assert_eq!(status_of(a, "/sync/export", "Bearer wrong").await, 401);
    let token = node.operator_token.clone().unwrap();
    assert_eq!(
        status_of(a, "/sync/export", &format!("Bearer {token}")).await,
        200
    );
    node.shutdown().await;
}
