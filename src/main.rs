//! The `idnode` binary: every role of a resolution node is configuration of this program.

#![forbid(unsafe_code)]

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use idnode::auth::challenge::PrivateKey;
use idnode::auth::IndexRule;

/// jemalloc instead of the system allocator: sled allocates per key and per value, and with
/// glibc's malloc a 10M-identifier node grew past 1 GiB under load (fragmentation) and spent
/// ~20% of its CPU in malloc/free; jemalloc held it near 770 MiB and answered 15–45% more
/// queries (BENCHMARKS.md, Scale).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use idnode::client::{self, AdminRequest, Authenticator, Client, Response, Transport};
use idnode::config::{Config, ValidConfig, EMBEDDED_DEFAULT};
use idnode::model::{types, validate_values, HandleValue, Prefix};
use idnode::resolve::{init_prefix, repair_prefix, Engine, Policy};
use idnode::server;
use idnode::store::Registry;
use idnode::wire::json as hjson;

#[derive(Parser)]
#[command(
    name = "idnode",
    version,
    about = "Identifier resolution node for the industrial internet (Handle-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum SyncOp {
    /// Ask the running node (its HTTP listener, from the configuration) for its follow links,
    /// authenticated by the node's operator token (`<data_dir>/sync-operator.token`).
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// handle-udp, handle-tcp, dns-udp, http or https (GET /api/handles/<id>).
    #[arg(long, default_value = "handle-udp")]
    proto: idnode::bench::Proto,
    /// Target HOST[:PORT] (default port: 2641 native, 5300 DNS, 8000 HTTP/HTTPS; http and
    /// https also take a URL base such as https://node.example:8000/).
    #[arg(long)]
    server: String,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Requests outstanding (UDP: spread over the sockets); handle-tcp, http, https: the
    /// number of connections, each with one request in flight.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Source UDP sockets (handle-udp, dns-udp).
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Fixed offered rate in queries per second (open loop; latency counts from each query's
    /// scheduled send time); default: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Identifiers, one per line.
    #[arg(long, conflicts_with = "generate")]
    ids: Option<PathBuf>,
    /// Generate N identifiers PREFIX/<suffix-format>.
    #[arg(long)]
    generate: Option<usize>,
    #[arg(long, default_value = "88.100.1")]
    prefix: String,
    #[arg(long, default_value = "SN-{:07}")]
    suffix_format: String,
    /// Zipf popularity exponent (default: uniform).
    #[arg(long)]
    zipf: Option<f64>,
    /// Share of queries for identifiers that do not exist.
    #[arg(long, default_value_t = 0.0)]
    miss_share: f64,
    /// DNS zone the identifiers are under (dns-udp).
    #[arg(long, default_value = "id.example.")]
    zone: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Set the REC flag on Handle requests (handle-udp, handle-tcp), so a recursive node
    /// resolves through the hierarchy instead of answering 301 (dns-udp always sets RD).
    #[arg(long)]
    recursive: bool,
    /// https: PEM certificates to trust (default: the system's CA bundle).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// https: accept any server certificate (self-signed test certificates only).
    #[arg(long)]
    insecure: bool,
    /// Worker threads of the generator (UDP: the sockets are spread over them, and --rate adds
    /// one that sends) [default: one per core this process may run on, as `taskset` leaves
    /// them].
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (without --config: the embedded default, a standalone node on 127.0.0.1).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print what it sets up.
    CheckConfig { config: PathBuf },
    /// Home PREFIX and create 0.NA/PREFIX with an administrator (node stopped).
    InitPrefix {
        prefix: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The secret: read from this file if it exists, else generated and written there.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Index of the administrator's HS_SECKEY value.
        #[arg(long, default_value_t = 300)]
        index: u32,
        /// Repair an existing 0.NA/PREFIX: restore the administrator (HS_ADMIN at 100, the
        /// group at 200 holding only INDEX, the HS_SECKEY at INDEX) and keep every other value.
        #[arg(long)]
        force: bool,
    },
    /// Load records from JSON Lines ({"handle":..,"values":[..]} per line; node stopped).
    ///
    /// Each batch is written atomically with its change-log entries; everything is flushed
    /// and fsynced once at the end, before "imported N records" is printed.
    Import {
        file: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Records per atomic batch (one sled transaction).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Write no change-log entries: faster, but the change log is emptied first and every
        /// sync follower re-bootstraps from a full snapshot. For loading a fresh node.
        #[arg(long)]
        no_change_log: bool,
    },
    /// Write every record as JSON Lines (includes secrets: keep the file safe; node stopped),
    /// or with --format zone the DNS zone file of what the DNS front end answers.
    Export {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// jsonl: every record, the format `import` reads (a full backup). zone: an RFC 1035
        /// zone file of the public DNS answers (SOA and NS at the apex; TXT, URI and NAPTR per
        /// identifier, as the DNS front end answers them), for NSD, Knot or BIND.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// The zone with --format zone (default: the configuration's [dns] zone).
        #[arg(long)]
        zone: Option<String>,
    },
    /// Resolve an identifier over the native Handle protocol (UDP unless --tcp).
    ///
    /// Exit status: 0 when found (RC 1), 1 for any other response code, 2 for usage or
    /// network errors.
    Resolve {
        handle: String,
        #[command(flatten)]
        conn: ConnArgs,
        /// Only values of this type (repeatable; `HS_SITE.` matches the family).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Only the value with this index (repeatable; with --type: the union).
        #[arg(long = "index", value_name = "INDEX")]
        indexes: Vec<u32>,
        /// Use TCP instead of UDP.
        #[arg(long)]
        tcp: bool,
        /// Print the answer in the REST API's JSON shape.
        #[arg(long)]
        json: bool,
        /// Ask for values only administrators may read too (clears the PO flag). With
        /// --auth-handle and a secret or key, the server's challenge is answered (over TCP).
        #[arg(long)]
        admin_read: bool,
        /// Ask for a certified (signed) answer and verify its signature with the key the
        /// server publishes in its HS_SITE (GET_SITE_INFO); exit status 1 if it does not verify.
        #[arg(long, conflicts_with = "auth_handle")]
        certified: bool,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Replication: `idnode sync status` shows the running node's follow links.
    Sync {
        #[command(subcommand)]
        op: SyncOp,
    },
    /// Administer identifiers over the native Handle protocol (TCP, challenge-response).
    Admin {
        #[command(subcommand)]
        op: AdminOp,
    },
    /// Load-test a node: Handle over UDP or TCP, DNS over UDP, or the HTTP(S) API; dnsperf-style
    /// summary with latency percentiles.
    Bench(BenchArgs),
    /// Generate an RSA key for HS_PUBKEY authentication; prints its HS_PUBKEY value (REST JSON).
    Keygen {
        /// Where to write the private key (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Index of the HS_PUBKEY value printed.
        #[arg(long, default_value_t = 300)]
        index: u32,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
}

/// What `idnode export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Jsonl,
    Zone,
}

/// Where the native protocol server is.
#[derive(clap::Args)]
struct ConnArgs {
    /// HOST:PORT of the server's native interface.
    #[arg(long, default_value = "127.0.0.1:2641", value_name = "HOST:PORT")]
    server: String,
    /// How long to wait (UDP: in all, retries included; TCP: per read or write).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

/// Who answers the server's challenge.
#[derive(clap::Args)]
struct AuthArgs {
    /// Identity handle, e.g. 0.NA/88.100.1 (or INDEX:HANDLE, e.g. 300:0.NA/88.100.1).
    #[arg(long, value_name = "HANDLE")]
    auth_handle: Option<String>,
    /// Index of the identity's HS_SECKEY / HS_PUBKEY value [default: 300].
    #[arg(long, value_name = "INDEX")]
    auth_index: Option<u32>,
    /// File holding the HS_SECKEY secret (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["secret", "private_key"])]
    secret_file: Option<PathBuf>,
    /// The HS_SECKEY secret itself (visible to other local users: prefer --secret-file).
    #[arg(long, value_name = "SECRET", conflicts_with = "private_key")]
    secret: Option<String>,
    /// PEM private key (PKCS#8 or PKCS#1) whose public half is an HS_PUBKEY value.
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,
}

/// Values of create / add / modify.
#[derive(clap::Args)]
struct ValueArgs {
    /// A value as INDEX:TYPE:DATA, DATA being text (repeatable), e.g. 1:URL:https://example.com.
    #[arg(long = "value", value_name = "INDEX:TYPE:DATA")]
    values: Vec<String>,
    /// A JSON file ("-": standard input) with values in the REST shape: an array, an object
    /// {"values": [...]}, or a single value.
    #[arg(long, value_name = "FILE")]
    values_json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AdminOp {
    /// Create HANDLE with the given values.
    Create {
        handle: String,
        #[command(flatten)]
        values: ValueArgs,
        /// Replace the record if HANDLE exists.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Add values to HANDLE.
    Add {
        handle: String,
        #[command(flatten)]
        values: ValueArgs,
        /// Replace values whose index exists.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Replace values of HANDLE (matched by index).
    Modify {
        handle: String,
        #[command(flatten)]
        values: ValueArgs,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Remove values of HANDLE by index.
    Remove {
        handle: String,
        /// Index of a value to remove (repeatable).
        #[arg(long = "index", value_name = "INDEX", required = true)]
        indexes: Vec<u32>,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Delete HANDLE.
    Delete {
        handle: String,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// List the handles under PREFIX (88.100.1 or 0.NA/88.100.1), one per line.
    List {
        prefix: String,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Run the operations of FILE ("-": standard input), one JSON object per line, e.g.
    /// {"op":"create","handle":"88.100.1/X","values":[...]}, {"op":"remove","handle":"...",
    /// "indexes":[2]}, {"op":"delete","handle":"..."}; ops create, add, modify, remove, delete
    /// (values in the REST shape; "overwrite": true for create/add). One Handle session for
    /// all of them when the server supports it (one challenge), else one challenge each.
    Batch {
        file: PathBuf,
        /// Stop at the first operation that fails.
        #[arg(long)]
        stop_on_error: bool,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        auth: AuthArgs,
    },
}

fn load_config(path: Option<&Path>) -> anyhow::Result<ValidConfig> {
    match path {
        Some(p) => Config::load(p).with_context(|| format!("configuration {}", p.display())),
        None => Config::from_toml(EMBEDDED_DEFAULT).context("embedded default configuration"),
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(load_config(config.as_deref())?),
        Command::CheckConfig { config } => {
            let c = load_config(Some(&config))?;
            println!("configuration OK: {}", config.display());
            println!("  data_dir        {}", c.node.data_dir.display());
            let homed: Vec<String> = c
                .node
                .homed_prefixes
                .iter()
                .map(|p| p.to_string())
                .collect();
            println!("  homed prefixes  {}", homed.join(", "));
            println!("  suffix case     {:?}", c.node.suffix_case);
            let scheme = if c.http.tls.is_some() {
                "https"
            } else {
                "http"
            };
            println!("  HTTP            {scheme}://{}", c.http.listen);
            match &c.handle.server_key_file {
                Some(path) => println!("  server key      {} (loaded)", path.display()),
                None => {
                    let path = server::server_key_path(&c.node.data_dir);
                    let state = if path.exists() {
                        "exists"
                    } else {
                        "created at first start"
                    };
                    println!("  server key      {} ({state})", path.display());
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::InitPrefix {
            prefix,
            config,
            secret_file,
            index,
            force,
        } => {
            let c = load_config(config.as_deref())?;
            let prefix = Prefix::parse(&prefix)?;
            let registry = server::open_registry(&c)?;
            let path =
                secret_file.unwrap_or_else(|| server::secret_path(&c.node.data_dir, &prefix));
            let (secret, generated) = server::read_or_create_secret(&path)?;
            if force {
                let repair = repair_prefix(&registry, &prefix, index, secret.as_bytes())
                    .map_err(|f| anyhow::anyhow!("{f}"))?;
                if repair.created {
                    println!("created 0.NA/{prefix}; administrator {index}:0.NA/{prefix}");
                } else {
                    println!(
                        "repaired 0.NA/{prefix}: administrator {index}:0.NA/{prefix} restored \
                         (HS_ADMIN 100 -> group 200 -> HS_SECKEY {index}); other values kept"
                    );
                }
                for v in &repair.replaced {
                    println!("  replaced value {} ({})", v.index, v.type_name);
                }
                for v in &repair.other_admins {
                    let who = idnode::model::AdminRef::decode(&v.data)
                        .map(|a| format!("{} with {}", a.admin, a.permissions.to_bit_string()))
                        .unwrap_or_else(|_| "undecodable".into());
                    println!("  kept HS_ADMIN {}: {who} (review it)", v.index);
                }
            } else {
                let created = init_prefix(&registry, &prefix, index, secret.as_bytes())
                    .map_err(|f| anyhow::anyhow!("{f}"))?;
                if created {
                    println!("created 0.NA/{prefix}; administrator {index}:0.NA/{prefix}");
                } else {
                    println!(
                        "0.NA/{prefix} already exists; left unchanged (prefix homed; --force \
                         restores its administrator)"
                    );
                }
            }
            let how = if generated {
                "generated into"
            } else {
                "read from"
            };
            println!("secret {how} {}", path.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Import {
            file,
            config,
            batch,
            no_change_log,
        } => import(
            &load_config(config.as_deref())?,
            &file,
            batch.max(1),
            no_change_log,
        ),
        Command::Export {
            config,
            output,
            format,
            zone,
        } => export(
            &load_config(config.as_deref())?,
            output.as_deref(),
            format,
            zone.as_deref(),
        ),
        Command::Resolve {
            handle,
            conn,
            types,
            indexes,
            tcp,
            json,
            admin_read,
            certified,
            auth,
        } => native_resolve(
            &handle, &conn, &types, &indexes, tcp, json, admin_read, certified, &auth,
        ),
        Command::Admin { op } => native_admin(op),
        Command::Bench(args) => bench(args),
        Command::Sync {
            op: SyncOp::Status { config },
        } => sync_status(&load_config(config.as_deref())?),
        Command::Keygen {
            out,
            bits,
            index,
            force,
        } => keygen(&out, bits, index, force),
    }
}

/// `idnode sync status`: GET /sync/status from the node's HTTP listener (with the operator
/// token from the node's data directory) and print each link.
fn sync_status(config: &ValidConfig) -> anyhow::Result<std::process::ExitCode> {
    use std::io::{Read, Write};
    anyhow::ensure!(
        config.http.tls.is_none(),
        "the node's listener speaks HTTPS: use `curl -H \"Authorization: Bearer $(cat {})\" \
         https://{}/sync/status`",
        idnode::sync::operator_token_path(&config.node.data_dir).display(),
        config.http.listen
    );
    let mut addr = config.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let token_path = idnode::sync::operator_token_path(&config.node.data_dir);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| {
            format!(
                "reading the node's operator token {} (written at the node's first start; \
                 run this as the node's user)",
                token_path.display()
            )
        })?
        .trim()
        .to_string();
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        .with_context(|| format!("connecting to the node at {addr}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "GET /sync/status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(body).context("the node's /sync/status answer")?;
    anyhow::ensure!(
        text.starts_with("HTTP/1.1 200"),
        "the node refused /sync/status: {}",
        v["message"].as_str().unwrap_or(body)
    );
    println!("node {addr}: last sequence {}", v["last_seq"]);
    let links = v["links"].as_array().cloned().unwrap_or_default();
    if links.is_empty() {
        println!("no follow links");
    }
    for l in links {
        println!(
            "{}  prefixes {}  state {}  cursor {}  upstream last {}  lag {}  applied {}  \
             bootstraps {}  errors {}{}",
            l["upstream"].as_str().unwrap_or("?"),
            l["prefixes"],
            l["state"].as_str().unwrap_or("?"),
            l["cursor"],
            l["upstream_last_seq"],
            l["lag_sequences"],
            l["applied"],
            l["bootstraps"],
            l["errors"],
            l["last_error"]
                .as_str()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default(),
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let ids = match (&args.ids, args.generate) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        (None, Some(n)) => idnode::bench::generate_ids(&args.prefix, &args.suffix_format, n)?,
        (None, None) => anyhow::bail!("give --ids FILE or --generate N"),
    };
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.miss_share),
        "--miss-share must be between 0 and 1"
    );
    let https = args.proto == idnode::bench::Proto::Https;
    anyhow::ensure!(
        https || (args.ca_file.is_none() && !args.insecure),
        "--ca-file and --insecure apply to --proto https only"
    );
    let tls = if https {
        let ca_file = match (&args.ca_file, args.insecure) {
            (Some(file), _) => Some(file.clone()),
            (None, true) => None,
            (None, false) => Some(idnode::bench::system_ca_bundle().ok_or_else(|| {
                anyhow::anyhow!("no system CA bundle found: give --ca-file FILE or --insecure")
            })?),
        };
        Some(idnode::tls::client_config(
            ca_file.as_deref(),
            args.insecure,
        )?)
    } else {
        None
    };
    let threads = match args.threads {
        Some(n @ 1..=1024) => n,
        Some(_) => anyhow::bail!("--threads must be between 1 and 1024"),
        // One worker thread per core this process may run on (`taskset` narrows it).
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let target = idnode::bench::parse_server(&args.server, args.proto)?;
    let cfg = idnode::bench::BenchConfig {
        proto: args.proto,
        server: target.addr,
        host: Some(target.host),
        tls,
        duration: args.duration,
        concurrency: args.concurrency,
        sockets: args.sockets,
        rate: args.rate,
        timeout: args.timeout,
        ids,
        zipf: args.zipf,
        miss_share: args.miss_share,
        zone: args.zone,
        seed: args.seed,
        threads: Some(threads),
        recursive: args.recursive,
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let summary = rt.block_on(idnode::bench::run(&cfg))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn serve(config: ValidConfig) -> anyhow::Result<std::process::ExitCode> {
    if let Some(path) = &config.log.audit_file {
        idnode::audit::open_file(path)
            .with_context(|| format!("log.audit_file {}", path.display()))?;
    }
    let registry = Arc::new(server::open_registry(&config)?);
    let bootstrapped = server::prepare_registry(&config, &registry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(server::blocking_threads(&config))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let metrics = idnode::metrics::Metrics::new().context("creating metrics")?;
        let node = server::start(config.clone(), registry, metrics).await?;
        let scheme = if config.http.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base = format!("{scheme}://{}", node.http_addr);
        tracing::info!(%base, "idnode serving");
        print_welcome(&config, &base, &bootstrapped);
        if let Some(dns) = node.dns_addr {
            tracing::info!(%dns, zone = %config.dns.zone, "DNS serving");
        }
        if let (Some(dns), Some(p)) = (node.dns_addr, config.node.homed_prefixes.first()) {
            let case = config.node.suffix_case;
            let zone = server::dns::zone_from_config(&config.dns, case);
            let handle = idnode::model::Handle::parse(&format!("{p}/SN-0001"), case);
            if let (Ok(zone), Ok(handle)) = (zone, handle) {
                if let Ok(name) = zone.name_of(&handle) {
                    println!("  dig @{} -p {} {name} TXT", dns.ip(), dns.port());
                }
            }
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_welcome(config: &ValidConfig, base: &str, bootstrapped: &[(Prefix, PathBuf)]) {
    let k = if config.http.tls.is_some() { " -k" } else { "" };
    println!(
        "idnode is serving {base}  (data in {})",
        config.node.data_dir.display()
    );
    for (p, path) in bootstrapped {
        println!(
            "created administrator 300:0.NA/{p}; its secret is in {}",
            path.display()
        );
    }
    if let Some(p) = config.node.homed_prefixes.first() {
        let secret = server::secret_path(&config.node.data_dir, p);
        println!("register a first identifier:");
        println!(
            "  curl{k} -u \"300%3A0.NA/{p}:$(cat {})\" -X PUT -H 'Content-Type: application/json' \\\n    -d '{{\"values\":[{{\"index\":1,\"type\":\"URL\",\"data\":\"https://example.com/sn/0001\"}}]}}' \\\n    {base}/api/handles/{p}/SN-0001",
            secret.display()
        );
        println!("  curl{k} {base}/api/handles/{p}/SN-0001");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn progress(len: Option<u64>) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn import(
    config: &ValidConfig,
    file: &Path,
    batch_size: usize,
    no_change_log: bool,
) -> anyhow::Result<std::process::ExitCode> {
    use idnode::resolve::import::{ImportError, ImportEvent, Importer};
    let started = std::time::Instant::now();
    if let Some(path) = &config.log.audit_file {
        idnode::audit::open_file(path)
            .with_context(|| format!("log.audit_file {}", path.display()))?;
    }
    let source_name = file.display().to_string();
    let registry = Arc::new(server::open_registry(config)?);
    server::prepare_registry(config, &registry)?;
    let engine = Engine::new(
        registry,
        Policy {
            suffix_case: config.node.suffix_case,
            partition: config.node.partition,
            ..Policy::default()
        },
    );
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let bar = progress(f.metadata().ok().map(|m| m.len()));
    let summary = Importer::new(&engine)
        .run(f, batch_size, !no_change_log, |event| match event {
            ImportEvent::Read { bytes } => bar.inc(bytes),
            ImportEvent::Rejected { line, reason } => {
                bar.suspend(|| eprintln!("line {line}: rejected: {reason}"))
            }
        })
        .map_err(|e| match e {
            ImportError::Read(e) => {
                anyhow::Error::new(e).context(format!("reading {}", file.display()))
            }
            e => e.into(),
        })?;
    bar.finish_and_clear();
    let (written, rejected) = (summary.written, summary.rejected);
    let secs = started.elapsed().as_secs_f64();
    idnode::audit::write(
        idnode::audit::Origin::Local("import"),
        "local operator",
        "import_batch",
        &source_name,
        &format!("{written} records, {rejected} lines rejected"),
        "ok",
    );
    println!("imported {written} records, rejected {rejected} lines");
    println!(
        "{secs:.1} s, {:.0} records/s, durable",
        written as f64 / secs.max(1e-9)
    );
    if summary.other_partitions > 0 {
        println!(
            "skipped {} records that hash to other servers of the site",
            summary.other_partitions
        );
    }
    if no_change_log {
        println!("change log reset: followers re-bootstrap from a snapshot");
    }
    Ok(if rejected == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

fn export(
    config: &ValidConfig,
    output: Option<&Path>,
    format: ExportFormat,
    zone: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    use idnode::resolve::resolver::Found;
    use idnode::resolve::Resolver;
    use idnode::wire::dns::{zonefile::ZoneFileWriter, NameMeaning};

    anyhow::ensure!(
        zone.is_none() || format == ExportFormat::Zone,
        "--zone only applies to --format zone"
    );
    let registry = Registry::open(
        &config.node.data_dir,
        &idnode::store::StoreOptions::default(),
    )
    .with_context(|| format!("opening the registry in {}", config.node.data_dir.display()))?;
    let out: Box<dyn Write> = match output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    if format == ExportFormat::Jsonl {
        let mut n = 0usize;
        for item in registry.iter_records() {
            let (_, record) = item?;
            let values: Vec<serde_json::Value> =
                record.values.iter().map(hjson::value_to_json).collect();
            let line = serde_json::json!({"handle": record.handle, "values": values});
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            n += 1;
        }
        out.flush()?;
        eprintln!("exported {n} records");
        return Ok(std::process::ExitCode::SUCCESS);
    }

    // The zone file: what the DNS front end (server::dns) answers, name by name. The zone and
    // the engine are set up as `serve` sets them up, and each record is looked up the way a
    // query for its name is: the name's identifier candidates in order, public values only,
    // the first that exists answers (so a record another candidate shadows is left out).
    let registry = Arc::new(registry);
    let mut dns_config = config.dns.clone();
    if let Some(z) = zone {
        dns_config.zone = z.to_string();
    }
    let suffix_case = config.node.suffix_case;
    let mut dns_zone =
        server::dns::zone_from_config(&dns_config, suffix_case).context("the DNS zone")?;
    let resolver = Resolver::new(
        Engine::new(registry.clone(), server::engine_policy(config)),
        None,
    );
    let engine = resolver.engine();
    dns_zone.homed = engine
        .homed_prefixes()
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0);
    // The front end's SOA serial: the change-log sequence, truncated to 32 bits.
    let mut writer = ZoneFileWriter::new(out, &dns_zone, registry.last_seq() as u32)?;
    let (mut written, mut unnamed, mut shadowed, mut no_public, mut not_served) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    for item in registry.iter_records() {
        let (key, record) = item?;
        let handle = match idnode::model::Handle::parse(&record.handle, suffix_case) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("{}: skipped: {e}", record.handle);
                not_served += 1;
                continue;
            }
        };
        let name = match dns_zone.name_of(&handle) {
            Ok(n) => n,
            Err(e) => {
                unnamed += 1;
                eprintln!("{}: no DNS name: {e}", record.handle);
                continue;
            }
        };
        let NameMeaning::Identifier(candidates) = dns_zone.classify(&name) else {
            not_served += 1;
            continue;
        };
        // The name's identifier candidates in order, as a DNS query for it is answered.
        match resolver.local_candidates(&candidates).found {
            Found::Values(c, values) if c.key() == key => {
                writer.identifier(&name, &values, now)?;
                written += 1;
            }
            Found::NoValues(c) if c.key() == key => no_public += 1,
            // Another candidate answers for the name (or is routed elsewhere).
            Found::Values(..) | Found::NoValues(_) => shadowed += 1,
            Found::NotResponsible(c) if c.key() != key => shadowed += 1,
            _ => not_served += 1,
        }
    }
    let records = writer.records();
    writer.finish()?;
    eprintln!(
        "exported {written} identifiers as zone {} ({records} records)",
        dns_zone.origin()
    );
    for (n, why) in [
        (unnamed, "have no DNS name (not reachable over DNS)"),
        (
            shadowed,
            "share their DNS name with another identifier that DNS answers for",
        ),
        (
            no_public,
            "have no public value (NODATA at idnode; absent from the zone file)",
        ),
        (
            not_served,
            "are not answered from this node's data over DNS",
        ),
    ] {
        if n > 0 {
            eprintln!("{n} identifiers {why}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Native protocol client: resolve, admin, keygen

/// `HOST:PORT`, or a bare host on the default port 2641.
fn server_addr(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let found: Vec<std::net::SocketAddr> = match text.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(_) if !text.contains(':') => (text, client::DEFAULT_PORT)
            .to_socket_addrs()
            .with_context(|| format!("server address {text:?}"))?
            .collect(),
        Err(e) => return Err(anyhow::anyhow!("server address {text:?}: {e}")),
    };
    found
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("server address {text:?} resolves to no address"))
}

fn client_for(conn: &ConnArgs) -> anyhow::Result<Client> {
    Ok(Client::new(server_addr(&conn.server)?).with_timeout(conn.timeout))
}

/// The identity the options describe (`None` when no --auth-handle is given).
fn authenticator(a: &AuthArgs) -> anyhow::Result<Option<Authenticator>> {
    let Some(text) = a.auth_handle.as_deref() else {
        anyhow::ensure!(
            a.secret_file.is_none()
                && a.secret.is_none()
                && a.private_key.is_none()
                && a.auth_index.is_none(),
            "--secret-file, --secret, --private-key and --auth-index need --auth-handle"
        );
        return Ok(None);
    };
    // `300:0.NA/88.100.1` or a bare handle; the server parses the handle.
    let (index_in_text, identity_handle) =
        IndexRule::Optional.split(text).context("--auth-handle")?;
    let index = match (index_in_text, a.auth_index) {
        (Some(i), Some(j)) if i != j => {
            anyhow::bail!("--auth-handle names index {i} but --auth-index says {j}")
        }
        (Some(i), _) | (None, Some(i)) => i,
        (None, None) => 300,
    };
    anyhow::ensure!(!identity_handle.is_empty(), "--auth-handle is empty");
    let identity_handle = identity_handle.to_string();
    if let Some(path) = &a.private_key {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading private key {}", path.display()))?;
        let key = PrivateKey::from_pem(&text)
            .with_context(|| format!("private key {}", path.display()))?;
        return Ok(Some(Authenticator::PrivateKey {
            identity_handle,
            index,
            key: Box::new(key),
        }));
    }
    let secret = if let Some(path) = &a.secret_file {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading secret file {}", path.display()))?
            .trim()
            .to_string()
    } else if let Some(s) = &a.secret {
        s.clone()
    } else {
        anyhow::bail!("--auth-handle needs --secret-file, --secret or --private-key");
    };
    anyhow::ensure!(!secret.is_empty(), "the secret is empty");
    Ok(Some(Authenticator::SecretKey {
        identity_handle,
        index,
        secret: secret.into_bytes(),
    }))
}

/// One `--value INDEX:TYPE:DATA` (DATA is text and may contain ':').
fn parse_value_arg(text: &str) -> anyhow::Result<HandleValue> {
    let mut parts = text.splitn(3, ':');
    let (Some(index), Some(type_name), Some(data)) = (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("--value {text:?}: expected INDEX:TYPE:DATA");
    };
    let index: u32 = index
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("--value {text:?}: index {index:?} is not a number"))?;
    anyhow::ensure!(!type_name.is_empty(), "--value {text:?}: empty type");
    Ok(HandleValue::new(index, type_name, data.as_bytes().to_vec()))
}

/// The values of --value and --values-json, checked like the server checks them.
fn collect_values(a: &ValueArgs, required: bool) -> anyhow::Result<Vec<HandleValue>> {
    let mut values = a
        .values
        .iter()
        .map(|t| parse_value_arg(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(path) = &a.values_json {
        let text = if path == Path::new("-") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("reading values from standard input")?;
            s
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: malformed JSON", path.display()))?;
        let (_, more) = hjson::values_from_request_body(&json)
            .with_context(|| format!("{}: bad values", path.display()))?;
        values.extend(more);
    }
    if required {
        anyhow::ensure!(
            !values.is_empty(),
            "no values: give --value INDEX:TYPE:DATA and/or --values-json FILE"
        );
    }
    validate_values(&values)?;
    Ok(values)
}

/// Print lines to standard output; a closed pipe (`| head`) just ends the output.
fn print_lines<I: IntoIterator<Item = String>>(lines: I) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in lines {
        match writeln!(out, "{line}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A value's data for the table: text as is (control characters escaped), other formats as
/// `format:value` the way the REST API shows them.
fn data_text(value_json: &serde_json::Value) -> String {
    let data = &value_json["data"];
    let format = data["format"].as_str().unwrap_or("");
    match (format, data["value"].as_str()) {
        ("string", Some(s)) => s
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t"),
        (_, Some(s)) => format!("{format}:{s}"),
        _ => format!("{format}:{}", data["value"]),
    }
}

fn values_table(handle: &str, values: &[HandleValue]) -> Vec<String> {
    let header = ["INDEX", "TYPE", "TTL", "PERMS"].map(String::from);
    let rows: Vec<([String; 4], String)> = values
        .iter()
        .map(|v| {
            let j = hjson::value_to_json(v);
            let ttl = match &j["ttl"] {
                serde_json::Value::String(s) => format!("until {s}"),
                other => other.to_string(),
            };
            (
                [
                    v.index.to_string(),
                    v.type_name.clone(),
                    ttl,
                    v.permissions.to_bit_string(),
                ],
                data_text(&j),
            )
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for (cells, _) in &rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 4], data: &str| {
        format!(
            "{:>w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {data}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
        .trim_end()
        .to_string()
    };
    let mut out = vec![handle.to_string(), line(&header, "DATA")];
    out.extend(rows.iter().map(|(cells, data)| line(cells, data)));
    out
}

/// The one-line description of a negative answer.
fn describe_failure(r: &Response) -> String {
    let mut text = format!("{}: RC {} {}", r.handle, r.code, r.code_name());
    if !r.message.is_empty() {
        text.push_str(": ");
        text.push_str(&r.message);
    }
    text
}

#[allow(clippy::too_many_arguments)]
fn native_resolve(
    handle: &str,
    conn: &ConnArgs,
    types: &[String],
    indexes: &[u32],
    tcp: bool,
    json: bool,
    admin_read: bool,
    certified: bool,
    auth: &AuthArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let client = client_for(conn)?;
    let auth = authenticator(auth)?;
    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
    if certified {
        return certified_resolve(&client, handle, types, indexes, transport, json, admin_read);
    }
    let ask = |client: &Client| match &auth {
        Some(a) => client.resolve_authenticated(handle, indexes, types, a),
        None => client.resolve(handle, indexes, types, transport, !admin_read),
    };
    let mut response = ask(&client).with_context(|| format!("resolving {handle}"))?;
    // A server of a multi-server site holds only its hash partition: on 301, route by the
    // site's hash rule to the server that holds the handle, as Handle clients do.
    if response.code == 301 {
        if let Ok(site) = client.site_info(transport) {
            if site.servers.len() > 1 {
                if let Some(routed) = client.routed(&site, handle, transport) {
                    if routed.server() != client.server() {
                        eprintln!("(routed by the site's hash to {})", routed.server());
                        response = ask(&routed).with_context(|| format!("resolving {handle}"))?;
                    }
                }
            }
        }
    }
    if print_answer(&response, json)? {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if response.code == 402 && auth.is_none() {
        eprintln!("(restricted values: add --auth-handle with --secret-file or --private-key)");
    }
    Ok(std::process::ExitCode::from(1))
}

/// `idnode resolve --certified`: the server's key from its HS_SITE, a CT resolution, and the
/// signature check; the values are printed only when the signature verifies.
fn certified_resolve(
    client: &Client,
    handle: &str,
    types: &[String],
    indexes: &[u32],
    transport: Transport,
    json: bool,
    admin_read: bool,
) -> anyhow::Result<std::process::ExitCode> {
    use idnode::auth::credential::Certification;
    let site = client
        .site_info(transport)
        .with_context(|| format!("asking {} for its HS_SITE", client.server()))?;
    let ip = client.server().ip();
    let server = site
        .servers
        .iter()
        .find(|s| s.ip() == ip)
        .or_else(|| site.servers.first())
        .context("the server's HS_SITE lists no servers")?;
    anyhow::ensure!(
        !server.public_key.is_empty(),
        "the server publishes no key in its HS_SITE: its answers cannot be certified"
    );
    let key = idnode::model::PublicKey::decode(&server.public_key)
        .context("the key in the server's HS_SITE")?;
    let (response, certification) = client
        .resolve_certified(handle, indexes, types, transport, !admin_read, &key)
        .with_context(|| format!("resolving {handle}"))?;
    match certification {
        Certification::Verified => {
            eprintln!("certified: the answer's signature verifies with the server's HS_SITE key")
        }
        Certification::Missing => {
            eprintln!("NOT certified: the answer carries no signature");
            return Ok(std::process::ExitCode::from(1));
        }
        Certification::Invalid(why) => {
            eprintln!("NOT certified: {why}");
            return Ok(std::process::ExitCode::from(1));
        }
    }
    Ok(if print_answer(&response, json)? {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// Print a resolution's answer as `idnode resolve` does (a values table, or with `json` the
/// REST API's shape; a referral shows its values), and the failure on stderr: whether it
/// was found (RC 1).
fn print_answer(response: &Response, json: bool) -> anyhow::Result<bool> {
    let found = response.is_success();
    if json {
        let j = if found || response.is_referral() {
            hjson::handle_response(response.code, &response.handle, &response.values)
        } else {
            hjson::error_response(response.code, Some(&response.handle), &response.message)
        };
        print_lines([serde_json::to_string_pretty(&j)?])?;
    } else if found || !response.values.is_empty() {
        print_lines(values_table(&response.handle, &response.values))?;
    }
    if !found {
        eprintln!("{}", describe_failure(response));
    }
    Ok(found)
}

/// `idnode admin batch`: every operation of the file through one session.
fn native_admin_batch(
    file: &Path,
    stop_on_error: bool,
    conn: &ConnArgs,
    auth: &AuthArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading operations from standard input")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    // Every line is checked before anything is sent.
    let requests = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            AdminRequest::from_batch_line(l)
                .with_context(|| format!("{}:{}", file.display(), n + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = client_for(conn)?;
    let auth = authenticator(auth)?.ok_or_else(|| {
        anyhow::anyhow!(
            "administration needs an identity: --auth-handle with --secret-file, --secret or --private-key"
        )
    })?;
    let mut session = client.admin_session(&auth);
    if let Some(why) = &session.fallback_reason {
        eprintln!("(no session: {why}; one challenge per operation)");
    }
    let mut failed = 0usize;
    for request in requests {
        let handle = request.handle();
        let r = session
            .admin(request)
            .with_context(|| format!("{handle} (as {})", auth.identity()))?;
        if r.is_success() {
            print_lines([format!("ok {handle}")])?;
        } else {
            failed += 1;
            eprintln!("{}", describe_failure(&r));
            if stop_on_error {
                break;
            }
        }
    }
    session.close();
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

fn native_admin(op: AdminOp) -> anyhow::Result<std::process::ExitCode> {
    let (request, conn, auth, done) = match op {
        AdminOp::Batch {
            file,
            stop_on_error,
            conn,
            auth,
        } => return native_admin_batch(&file, stop_on_error, &conn, &auth),
        AdminOp::Create {
            handle,
            values,
            overwrite,
            conn,
            auth,
        } => (
            AdminRequest::Create {
                handle,
                values: collect_values(&values, false)?,
                overwrite,
            },
            conn,
            auth,
            "created",
        ),
        AdminOp::Add {
            handle,
            values,
            overwrite,
            conn,
            auth,
        } => (
            AdminRequest::AddValues {
                handle,
                values: collect_values(&values, true)?,
                overwrite,
            },
            conn,
            auth,
            "added values to",
        ),
        AdminOp::Modify {
            handle,
            values,
            conn,
            auth,
        } => (
            AdminRequest::ModifyValues {
                handle,
                values: collect_values(&values, true)?,
            },
            conn,
            auth,
            "modified values of",
        ),
        AdminOp::Remove {
            handle,
            indexes,
            conn,
            auth,
        } => (
            AdminRequest::RemoveValues { handle, indexes },
            conn,
            auth,
            "removed values from",
        ),
        AdminOp::Delete { handle, conn, auth } => {
            (AdminRequest::Delete { handle }, conn, auth, "deleted")
        }
        AdminOp::List { prefix, conn, auth } => {
            (AdminRequest::ListHandles { prefix }, conn, auth, "listed")
        }
    };
    let client = client_for(&conn)?;
    let auth = authenticator(&auth)?.ok_or_else(|| {
        anyhow::anyhow!(
            "administration needs an identity: --auth-handle with --secret-file, --secret or --private-key"
        )
    })?;
    let handle = request.handle();
    let is_list = matches!(request, AdminRequest::ListHandles { .. });
    let r = client
        .admin(request, &auth)
        .with_context(|| format!("{handle} (as {})", auth.identity()))?;
    if !r.is_success() {
        eprintln!("{}", describe_failure(&r));
        match r.code {
            400 | 401 => eprintln!("(authenticated as {})", auth.identity()),
            403 | 404 => eprintln!(
                "(identity {}: check the secret or key and the index)",
                auth.identity()
            ),
            _ => {}
        }
        return Ok(std::process::ExitCode::from(1));
    }
    if is_list {
        let n = r.handles.len();
        print_lines(r.handles)?;
        eprintln!("{n} handles under {handle}");
    } else {
        let target = r.minted_handle.as_deref().unwrap_or(&handle);
        print_lines([format!("{done} {target}")])?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn keygen(
    out: &Path,
    bits: usize,
    index: u32,
    force: bool,
) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        (1..=idnode::model::value::MAX_INDEX).contains(&index),
        "--index must be between 1 and {}",
        idnode::model::value::MAX_INDEX
    );
    anyhow::ensure!(
        force || !out.exists(),
        "{} exists (--force replaces it)",
        out.display()
    );
    eprintln!("generating a {bits}-bit RSA key ...");
    let key = PrivateKey::generate_rsa(bits)?;
    let pem = key.try_to_pem()?;
    server::write_private_file(out, pem.as_bytes(), force)?;
    let value = HandleValue::new(index, types::HS_PUBKEY, key.public_key().encode());
    print_lines([serde_json::to_string_pretty(&hjson::value_to_json(&value))?])?;
    eprintln!(
        "private key written to {} (mode 0600); add the HS_PUBKEY value above to the identity \
         handle (REST API, or `idnode admin add HANDLE --values-json FILE ...`) and authenticate \
         with --auth-handle {index}:HANDLE --private-key {}",
        out.display(),
        out.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}
