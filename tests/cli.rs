//! The command line: check-config, init-prefix, import (with a rejected-lines report) and
//! export, run as a user would run them.

use std::path::Path;
use std::process::{Command, Output};

fn idnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idnode"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run idnode")
}

fn write_config(dir: &Path, data: &str) -> String {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\ndata_dir = {:?}\nhomed_prefixes = [\"88.100.1\"]\nbootstrap_admins = false\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.join(data)
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn check_config_accepts_good_and_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "data");
    let out = idnode(&["check-config", &good]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("88.100.1"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\nlisten = \"127.0.0.1:0\"\nmax_body = 5\n").unwrap();
    let out = idnode(&["check-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("max_body"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn init_prefix_import_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "data");
    let secret = dir.path().join("admin.secret");
    std::fs::write(&secret, "correct horse\n").unwrap();
    let out = idnode(&[
        "init-prefix",
        "88.100.1",
        "--config",
        &config,
        "--secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("300:0.NA/88.100.1"));

    let lines = [
        r#"{"handle":"88.100.1/SN-1","values":[{"index":1,"type":"URL","data":"https://example.com/1"}]}"#,
        r#"{"handle":"88.100.1/SN-2","values":[{"index":1,"type":"URL","data":{"format":"string","value":"https://example.com/2"}},{"index":2,"type":"EMAIL","data":"qa@example.com","ttl":3600}]}"#,
        r#"{"handle":"88.100.1/bad","values":[{"index":0,"type":"URL","data":"x"}]}"#,
        r#"not json"#,
        r#"{"handle":"99.9/elsewhere","values":[]}"#,
        r#"{"values":[]}"#,
        "",
        r#"{"handle":"88.100.1/SN-3","values":[]}"#,
    ];
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = idnode(&[
        "import",
        input.to_str().unwrap(),
        "--config",
        &config,
        "--batch",
        "2",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejections give exit code 1: {stderr}"
    );
    for n in [3, 4, 5, 6] {
        assert!(
            stderr.contains(&format!("line {n}: rejected")),
            "line {n} not reported: {stderr}"
        );
    }
    assert!(!stderr.contains("line 1:") && !stderr.contains("line 8:"));
    assert!(text(&out.stdout).contains("imported 3 records, rejected 4 lines"));

    let out = idnode(&["export", "--config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported = text(&out.stdout);
    let handles: Vec<String> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["handle"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        handles,
        [
            "0.NA/88.100.1",
            "88.100.1/SN-1",
            "88.100.1/SN-2",
            "88.100.1/SN-3"
        ]
    );
    assert!(
        exported.contains("HS_SECKEY"),
        "export is a full backup, secrets included"
    );

    // Importing the export into a fresh node reproduces it exactly.
    let dir2 = tempfile::tempdir().unwrap();
    let config2 = write_config(dir2.path(), "data");
    let dump = dir2.path().join("dump.jsonl");
    std::fs::write(&dump, &exported).unwrap();
    let out = idnode(&["import", dump.to_str().unwrap(), "--config", &config2]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = idnode(&["export", "--config", &config2]);
    assert_eq!(text(&out.stdout), exported);
}

#[test]
fn missing_files_are_clear_errors() {
    let out = idnode(&["check-config", "/nonexistent/idnode.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/idnode.toml"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "data");
    let out = idnode(&["import", "/nonexistent/in.jsonl", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("in.jsonl"));
    let out = idnode(&["init-prefix", "88..1", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn export_zone_writes_what_dns_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "data");
    let lines = [
        r#"{"handle":"88.100.1/SN-1","values":[{"index":1,"type":"URL","data":"https://example.com/1"},{"index":2,"type":"EMAIL","data":"qa@example.com"},{"index":3,"type":"HS_SECKEY","data":"hidden","permissions":"1100"}]}"#,
        r#"{"handle":"88.100.1/Lot.7","values":[{"index":1,"type":"DESC","data":"Pump \"A\""}]}"#,
    ];
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = idnode(&["import", input.to_str().unwrap(), "--config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let zone_file = dir.path().join("id.test.zone");
    let out = idnode(&[
        "export",
        "--config",
        &config,
        "--format",
        "zone",
        "--zone",
        "id.test",
        "--output",
        zone_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exported 2 identifiers as zone id.test."),
        "{}",
        text(&out.stderr)
    );
    let zone = std::fs::read_to_string(&zone_file).unwrap();
    let records: Vec<&str> = zone
        .lines()
        .filter(|l| !l.starts_with(';') && !l.starts_with('$'))
        .collect();
    assert!(records[0].starts_with("id.test. 60 IN SOA ns1.id.test. hostmaster.id.test. "));
    assert_eq!(records[1], "id.test. 60 IN NS ns1.id.test.");
    let sn1 = "sn-1.1.100.88.id.test. 86400 IN";
    for want in [
        format!("{sn1} TXT \"1 URL https://example.com/1\""),
        format!("{sn1} TXT \"2 EMAIL qa@example.com\""),
        format!("{sn1} URI 1 1 \"https://example.com/1\""),
        format!("{sn1} NAPTR 1 10 \"u\" \"E2U+web:https\" \"!^.*$!https://example.com/1!\" ."),
        // A suffix with a dot and mixed case is an encoded label (base32 of "Lot.7").
        "x--jrxxilrx.1.100.88.id.test. 86400 IN TXT \"1 DESC Pump \\\"A\\\"\"".to_string(),
    ] {
        assert!(records.contains(&want.as_str()), "{want} not in\n{zone}");
    }
    assert_eq!(records.len(), 7, "{zone}");
    assert!(!zone.contains("hidden"), "non-public values stay out");

    // --zone needs --format zone; unknown formats are refused.
    let out = idnode(&["export", "--config", &config, "--zone", "id.test"]);
    assert!(!out.status.success());
    let out = idnode(&["export", "--config", &config, "--format", "csv"]);
    assert!(!out.status.success());
}

/// Issue 11, holes 4 and 5 on the command line: an imported HS_SECKEY without permissions is
/// admin-only, and `init-prefix --force` restores the administrator of a broken prefix handle
/// while keeping its other values.
#[test]
fn hole4_init_prefix_force_repairs_and_hole5_import_defaults_secrets_to_admin_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "data");
    let secret = dir.path().join("admin.secret");
    std::fs::write(&secret, "correct horse\n").unwrap();
    let init = |force: bool| {
        let mut args = vec![
            "init-prefix",
            "88.100.1",
            "--config",
            &config,
            "--secret-file",
            secret.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        idnode(&args)
    };
    assert!(init(false).status.success());
    // The prefix handle is replaced by one without an administrator, and a device secret is
    // imported without permissions.
    let lines = [
        r#"{"handle":"0.NA/88.100.1","values":[{"index":2,"type":"DESC","data":"keep me"},{"index":300,"type":"HS_SECKEY","data":"lost"}]}"#,
        r#"{"handle":"88.100.1/dev","values":[{"index":300,"type":"HS_SECKEY","data":"device"}]}"#,
    ];
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = idnode(&["import", input.to_str().unwrap(), "--config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = init(false);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("--force"),
        "{}",
        text(&out.stdout)
    );
    let out = init(true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("repaired 0.NA/88.100.1"), "{stdout}");
    assert!(stdout.contains("replaced value 300"), "{stdout}");
    assert!(
        stdout.contains("admin.secret"),
        "says where the secret is: {stdout}"
    );

    let out = idnode(&["export", "--config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let values = |handle: &str| {
        records
            .iter()
            .find(|r| r["handle"] == handle)
            .unwrap_or_else(|| panic!("{handle} exported"))["values"]
            .as_array()
            .unwrap()
            .clone()
    };
    let na = values("0.NA/88.100.1");
    let at = |vals: &[serde_json::Value], i: u64| {
        vals.iter()
            .find(|v| v["index"] == i)
            .cloned()
            .unwrap_or_else(|| panic!("index {i} in {vals:?}"))
    };
    assert_eq!(at(&na, 2)["data"]["value"], "keep me");
    assert_eq!(at(&na, 100)["type"], "HS_ADMIN");
    assert_eq!(at(&na, 200)["type"], "HS_VLIST");
    assert_eq!(at(&na, 300)["data"]["value"], "correct horse");
    assert_eq!(at(&na, 300)["permissions"], "1100");
    assert_eq!(at(&values("88.100.1/dev"), 300)["permissions"], "1100");
}
