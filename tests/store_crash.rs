//! Crash durability: a child process writes records and reports each acknowledgement; the
//! parent kills it with SIGKILL at an arbitrary point, reopens the store, and checks that
//! every acknowledged write is there, intact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use idnode::model::{Handle, HandleValue, SuffixCase};
use idnode::store::{Mutation, Record, Registry, StoreError, StoreOptions};

const CHILD_ENV: &str = "IDNODE_CRASH_CHILD_DIR";

fn handle(i: u32) -> Handle {
    Handle::parse(&format!("88.100.1/CRASH-{i}"), SuffixCase::Sensitive).unwrap()
}

/// The child: writes until killed, printing `ACK n` after each acknowledged write.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when spawned by `acknowledged_writes_survive_sigkill`.
    };
    let opts = StoreOptions {
        // A long background interval: only our own flush-before-ack can save the data.
        flush_every_ms: 60_000,
        ..StoreOptions::default()
    };
    let reg = Registry::open(std::path::Path::new(&dir), &opts).unwrap();
    for i in 0..100_000u32 {
        let h = handle(i);
        let rec = Record {
            handle: h.as_str().to_string(),
            values: vec![HandleValue::new(
                1,
                "URL",
                format!("https://example.com/{i}"),
            )],
        };
        reg.mutate::<StoreError, _>(&h, |_| Ok(Mutation::Put(rec)))
            .unwrap();
        println!("ACK {i}");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last_ack = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            let n: u32 = n.trim().parse().unwrap();
            last_ack = Some(n);
            if n >= 150 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flush on drop.
    child.wait().unwrap();
    let last_ack = last_ack.expect("child acknowledged nothing");
    let reg = Registry::open(dir.path(), &StoreOptions::default()).unwrap();
    for i in 0..=last_ack {
        let rec = reg
            .get(&handle(i))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {i} lost"));
        assert_eq!(
            rec.values[0].data_str(),
            Some(format!("https://example.com/{i}").as_str())
        );
    }
    assert!(reg.last_seq() > u64::from(last_ack));
}
