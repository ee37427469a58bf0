//! Tests of parsing and validation: every example config, defaults, the typed settings, and
//! one bad config per rule.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::auth::AnonymousReads;
use crate::sync::follower::FollowCredential;

#[test]
fn embedded_default_and_examples_parse() {
    let c = Config::from_toml(EMBEDDED_DEFAULT).unwrap();
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(c.node.homed_prefixes[0].as_str(), "88.100.1");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn hole7_recursion_allow_defaults_to_private_ranges() {
    let c = Config::from_toml("").unwrap();
    let allow = &c.recursion.allow;
    assert!(allow.contains("127.0.0.1".parse().unwrap()));
    assert!(allow.contains("192.168.1.1".parse().unwrap()));
    assert!(!allow.contains("8.8.8.8".parse().unwrap()));
    assert_eq!(c.recursion.max_concurrent, 256);
    assert_eq!(c.recursion.cache_max_bytes, 64 << 20);
    let c =
        Config::from_toml("[recursion]\nallow = [\"203.0.113.0/24\", \"2001:db8::1\"]\n").unwrap();
    let allow = &c.recursion.allow;
    assert!(allow.contains("203.0.113.9".parse().unwrap()));
    assert!(allow.contains("2001:db8::1".parse().unwrap()));
    assert!(!allow.contains("127.0.0.1".parse().unwrap()));
}

#[test]
fn sdk_settings_default_and_parse() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.handle.anonymous_reads, AnonymousReads::Public);
    assert!(!c.handle.password_login);
    let c = Config::from_toml(
        "[handle]\nanonymous_restricted_reads = \"challenge\"\npassword_login = true\n",
    )
    .unwrap();
    assert_eq!(c.handle.anonymous_reads, AnonymousReads::Challenge);
    assert!(c.handle.password_login);
    assert!(Config::from_toml("[handle]\nanonymous_restricted_reads = \"open\"\n").is_err());
}

#[test]
fn validated_settings_carry_the_parsed_values() {
    let c = Config::from_toml(
        "[node]\nhomed_prefixes = [\"88.100\", \"88.100\"]\nserver_admins = [\"300:0.NA/88.100\"]\n\
         partition = { index = 1, count = 2, servers = [\"10.0.0.1:2641\", \"10.0.0.2:2641\"] }\n\
         [http]\nrequest_timeout_secs = 7\n\
         [handle]\nmax_pending_challenges_per_client = 5\nauth_failure_burst = 3\n\
         session_timeout_secs = 99\nidle_timeout_secs = 11\n\
         [sync]\nallow_plain = true\n\
         [[sync.allow]]\nidentity = \"301:0.NA/88.100\"\nprefixes = [\"88.100\"]\n\
         [[sync.follow]]\nupstream = \"http://up.example:8000/\"\nidentity = \"300:0.NA/88\"\n\
         secret_file = \"/s\"\nprefixes = [\"88.200\"]\n\
         [[sync.follow]]\nupstream = \"https://up.example:8443\"\nidentity = \"300:0.NA/88\"\n\
         private_key = \"/k\"\nclient_cert = \"/c\"\nprefixes = [\"88.300\"]\ninsecure_skip_verify = true\n",
    )
    .unwrap();
    assert_eq!(c.node.homed_prefixes.len(), 1);
    assert_eq!(c.node.server_admins[0].to_string(), "300:0.NA/88.100");
    let partition = c.node.partition.unwrap();
    assert_eq!(
        (partition.index, partition.count, partition.hash_option),
        (1, 2, 2)
    );
    assert_eq!(c.node.site_servers.len(), 2);
    assert_eq!(c.http.request_timeout, Duration::from_secs(7));
    assert!(c.http.tls.is_none());
    assert_eq!(c.handle.challenges.max_per_source, 5);
    assert_eq!(c.handle.failures.burst, 3);
    assert_eq!(c.handle.sessions.max_timeout, Duration::from_secs(99));
    assert_eq!(c.handle.idle_timeout, Duration::from_secs(11));
    assert_eq!(c.sync.allow[0].0.index, 301);
    let [plain, tls] = &c.sync.follow[..] else {
        panic!("two follow links");
    };
    assert_eq!(plain.upstream, "http://up.example:8000");
    assert_eq!(plain.host, "up.example:8000");
    assert!(!plain.https);
    assert!(matches!(&plain.credential, FollowCredential::Secret(p) if p == Path::new("/s")));
    assert_eq!(plain.prefixes[0].as_str(), "88.200");
    assert!(tls.https && tls.insecure_skip_verify);
    assert!(matches!(
        &tls.credential,
        FollowCredential::ClientCert { key, cert } if key == Path::new("/k") && cert == Path::new("/c")
    ));
    // No partition: no site servers, whatever else is set.
    assert!(Config::from_toml("").unwrap().node.site_servers.is_empty());
}

#[test]
fn server_key_is_loaded_under_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::auth::challenge::PrivateKey::generate_rsa(1024).unwrap();
    let path = dir.path().join("server.pem");
    std::fs::write(&path, key.to_pem()).unwrap();
    for name in ["server_key", "site_key"] {
        let c = Config::from_toml(&format!("[handle]\n{name} = {path:?}\n")).unwrap();
        let loaded = c.handle.server_key.as_ref().unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
    }
    std::fs::write(&path, "not a key").unwrap();
    let err = Config::from_toml(&format!("[handle]\nserver_key = {path:?}\n")).unwrap_err();
    assert!(err.to_string().contains("server_key"));
}

#[test]
fn rejects_bad_configs() {
    for (text, needle) in [
        ("[node]\nhomed_prefix = []", "unknown field"),
        ("[node]\nhomed_prefixes = [\"88..1\"]", "homed_prefixes"),
        ("[node]\nhomed_prefixes = [\"0.na\"]", "0.NA"),
        ("[node]\nserver_admins = [\"0.NA/88\"]", "index:handle"),
        ("[node]\nserver_admins = [\"0:0.NA/88\"]", "positive"),
        ("[node]\nsuffix_case = \"maybe\"", "unknown variant"),
        ("[http]\nlisten = \"localhost\"", "socket address"),
        ("[http]\ntls_cert = \"/nonexistent.pem\"", "both"),
        (
            "[http]\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"",
            "nonexistent",
        ),
        ("[http]\nmax_body_bytes = 10", "max_body_bytes"),
        ("[store]\nflush_every_ms = 0", "flush_every_ms"),
        ("[sync]\nmax_concurrent_scans = 0", "max_concurrent_scans"),
        ("[handle]\nidle_timeout_secs = 0", "idle_timeout_secs"),
        (
            "[handle]\nmax_connections_per_client = 0",
            "handle.max_connections_per_client",
        ),
        ("[http]\nwrite_timeout_secs = 0", "http.write_timeout_secs"),
        (
            "[dns]\nrequest_timeout_secs = 4000",
            "dns.request_timeout_secs",
        ),
        ("[node]\npartition = { index = 2, count = 2 }", "partition"),
        ("[recursion]\nenabled = true", "roots"),
        ("[dns]\nzone = \"bad..zone\"", "dns.zone"),
        ("[dns]\nmax_udp_payload = 100", "max_udp_payload"),
        ("[dns]\nudp_threads = 1000", "dns.udp_threads"),
        (
            "[handle]\nanswer_cache_entries = 1000000000",
            "handle.answer_cache_entries",
        ),
        ("[dns]\nlisten = \"127.0.0.1:8000\"", "dns.listen"),
        ("[recursion]\nroots = [\"nowhere\"]", "socket address"),
        ("[recursion]\nallow = [\"10.0.0.1/8\"]", "10.0.0.0/8"),
        ("[recursion]\nallow = [\"10.0.0.0/40\"]", "0 to 32"),
        (
            "[recursion]\nallow = [\"intranet\"]",
            "\"intranet\" is not a network",
        ),
        (
            "[recursion]\nmax_concurrent = 0",
            "recursion.max_concurrent",
        ),
        (
            "[recursion]\ncache_max_bytes = 10",
            "recursion.cache_max_bytes",
        ),
        (
            "[recursion]\nenabled = true\nroots = [\"127.0.0.1:2641\"]\nallow = []",
            "recursion.allow",
        ),
        (
            "[node]\npartition = { index = 0, count = 2, hash_option = 7 }",
            "hash_option",
        ),
        ("[handle]\nlisten = \"127.0.0.1:8000\"", "differ"),
        ("[handle]\nserver_key = \"/nonexistent.pem\"", "server_key"),
        (
            "[handle]\nsignatures_per_second = 0",
            "signatures_per_second",
        ),
        ("[bogus]\n", "unknown field"),
    ] {
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(
            err.contains(needle),
            "{text:?} gave {err:?}, wanted {needle:?}"
        );
    }
}

#[test]
fn several_faults_report_the_first_in_check_order() {
    // The checks run in a fixed order (`[rate_limit]` between the two steps of `[handle]`):
    // a config with several faults names the same one every time.
    for (text, first) in [
        (
            "[handle]\nmax_connections = 0\n[rate_limit]\nburst_secs = 0\n",
            "handle.max_connections",
        ),
        (
            "[handle]\nsignatures_per_second = 0\n[rate_limit]\nburst_secs = 0\n",
            "rate_limit",
        ),
        (
            "[node]\ndata_dir = \"\"\n[http]\nmax_body_bytes = 10\n",
            "node.data_dir",
        ),
        (
            "[dns]\nudp_threads = 1000\n[recursion]\ncache_max_entries = 0\n",
            "recursion.cache_max_entries",
        ),
        (
            "[store]\nflush_every_ms = 0\n[dns]\nwrite_timeout_secs = 0\n",
            "dns.write_timeout_secs",
        ),
    ] {
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{first}: ")),
            "{text:?} gave {err:?}, wanted {first:?} first"
        );
    }
}
