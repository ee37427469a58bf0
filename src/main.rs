//! The `idnode` binary: every role of a resolution node is configuration of this program.

#![forbid(unsafe_code)]
// Printing what a command did is the binary's job (the library returns it).
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use idnode::auth::challenge::PrivateKey;

/// jemalloc instead of the system allocator: sled allocates per key and per value, and with
/// glibc's malloc a 10M-identifier node grew past 1 GiB under load (fragmentation) and spent
/// ~20% of its CPU in malloc/free; jemalloc held it near 770 MiB and answered 15–45% more
/// queries (BENCHMARKS.md, Scale).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use idnode::cli::{
    report, show, AdminOp, AuthArgs, BenchArgs, Cli, Command, ConnArgs, ExportFormat, ResolveArgs,
    SyncOp,
};
use idnode::client::{AdminRequest, Client, Lookup, Response, Transport};
use idnode::config::{Config, ValidConfig, EMBEDDED_DEFAULT};
use idnode::model::{types, HandleValue, Prefix};
use idnode::resolve::{Engine, Policy};
use idnode::server;
use idnode::wire::json as hjson;

fn load_config(path: Option<&Path>) -> anyhow::Result<ValidConfig> {
    match path {
        Some(p) => Config::load(p).with_context(|| format!("configuration {}", p.display())),
        None => Config::from_toml(EMBEDDED_DEFAULT).context("embedded default configuration"),
    }
}

/// Open the audit log file the configuration names, if any (appending).
fn open_audit(config: &ValidConfig) -> anyhow::Result<()> {
    if let Some(path) = &config.log.audit_file {
        idnode::audit::open_file(path)
            .with_context(|| format!("log.audit_file {}", path.display()))?;
    }
    Ok(())
}

/// Exit status 0 when `ok`, else 1 (2 is for errors).
fn exit_status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
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
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(load_config(config.as_deref())?),
        Command::CheckConfig { config } => {
            let c = load_config(Some(&config))?;
            print_lines(report::check_config(&config, &c))?;
            Ok(ExitCode::SUCCESS)
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
            let secret = secret.as_bytes();
            let lines = report::init_prefix_lines(&registry, &prefix, index, secret, force)
                .map_err(|f| anyhow::anyhow!("{f} ({})", f.code().code()))?;
            print_lines(
                lines
                    .into_iter()
                    .chain([report::secret_source(&path, generated)]),
            )?;
            Ok(ExitCode::SUCCESS)
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
            online,
            output,
            format,
            zone,
        } => export(
            &load_config(config.as_deref())?,
            online,
            output.as_deref(),
            format,
            zone.as_deref(),
        ),
        Command::Resolve(args) => native_resolve(&args),
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
fn sync_status(config: &ValidConfig) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        config.http.tls.is_none(),
        "the node's listener speaks HTTPS: use `curl -H \"Authorization: Bearer $(cat {})\" \
         https://{}/sync/status`",
        idnode::sync::operator_token_path(&config.node.data_dir).display(),
        config.http.listen
    );
    let (addr, status) = idnode::sync::status::fetch(config.http.listen, &config.node.data_dir)?;
    print_lines(report::sync_status(addr, &status))?;
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let threads = cfg.threads.unwrap_or(2);
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
    Ok(ExitCode::SUCCESS)
}

fn serve(config: ValidConfig) -> anyhow::Result<ExitCode> {
    open_audit(&config)?;
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
        let base = report::base_url(&config, node.http_addr);
        tracing::info!(%base, "idnode serving");
        print_lines(report::welcome(
            &config,
            &base,
            &bootstrapped,
            node.dns_addr,
        ))?;
        if let Some(dns) = node.dns_addr {
            tracing::info!(%dns, zone = %config.dns.zone, "DNS serving");
        }
        server::signal::shutdown_requested().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn import(
    config: &ValidConfig,
    file: &Path,
    batch_size: usize,
    no_change_log: bool,
) -> anyhow::Result<ExitCode> {
    use idnode::resolve::import::{ImportError, ImportEvent, Importer};
    let started = std::time::Instant::now();
    open_audit(config)?;
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
    let bar = report::progress(f.metadata().ok().map(|m| m.len()));
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
    let secs = started.elapsed().as_secs_f64();
    idnode::audit::write(
        idnode::audit::Origin::Local("import"),
        "local operator",
        "import_batch",
        &source_name,
        &format!(
            "{} records, {} lines rejected",
            summary.written, summary.rejected
        ),
        "ok",
    );
    print_lines(report::import_summary(&summary, secs, no_change_log))?;
    Ok(exit_status(summary.rejected == 0))
}

/// `idnode export`, offline or (`--online`) from the running node.
fn export(
    config: &ValidConfig,
    online: bool,
    output: Option<&Path>,
    format: ExportFormat,
    zone: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let request = idnode::cli::export::ExportRequest {
        config,
        output,
        format,
        zone,
    };
    let mut note = |line: String| eprintln!("{line}");
    if online {
        request.online(&mut note)?;
    } else {
        request.offline(&mut note)?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Native protocol client: resolve, admin, keygen

use report::print_lines;

fn native_resolve(args: &ResolveArgs) -> anyhow::Result<ExitCode> {
    let (handle, types, indexes) = (&args.handle, &args.types, &args.indexes);
    let client = args.conn.client()?;
    let auth = args.auth.authenticator()?;
    let transport = if args.tcp {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    if args.certified {
        return certified_resolve(&client, args, transport);
    }
    let (response, routed) = client
        .resolve_routed(
            Lookup::new(handle, indexes, types),
            transport,
            !args.admin_read,
            auth.as_ref(),
        )
        .with_context(|| format!("resolving {handle}"))?;
    if let Some(server) = routed {
        eprintln!("(routed by the site's hash to {server})");
    }
    if print_answer(&response, args.json)? {
        return Ok(ExitCode::SUCCESS);
    }
    if response.code == 402 && auth.is_none() {
        eprintln!("(restricted values: add --auth-handle with --secret-file or --private-key)");
    }
    Ok(ExitCode::from(1))
}

/// `idnode resolve --certified`: the server's key from its HS_SITE, a CT resolution, and the
/// signature check; the values are printed only when the signature verifies.
fn certified_resolve(
    client: &Client,
    args: &ResolveArgs,
    transport: Transport,
) -> anyhow::Result<ExitCode> {
    let (handle, types, indexes) = (&args.handle, &args.types, &args.indexes);
    let key = client.site_key(transport)?;
    let (response, certification) = client
        .resolve_certified(
            Lookup::new(handle, indexes, types),
            transport,
            !args.admin_read,
            &key,
        )
        .with_context(|| format!("resolving {handle}"))?;
    let (verified, line) = report::certification(&certification);
    eprintln!("{line}");
    Ok(exit_status(verified && print_answer(&response, args.json)?))
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
        print_lines(show::values_table(&response.handle, &response.values))?;
    }
    if !found {
        eprintln!("{}", show::describe_failure(response));
    }
    Ok(found)
}

/// `idnode admin batch`: every operation of the file through one session.
fn native_admin_batch(
    file: &Path,
    stop_on_error: bool,
    conn: &ConnArgs,
    auth: &AuthArgs,
) -> anyhow::Result<ExitCode> {
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
    let client = conn.client()?;
    let auth = auth.admin_identity()?;
    let mut session = client.admin_session(&auth);
    if let Some(why) = &session.fallback_reason {
        eprintln!("(no session: {why}; one challenge per operation)");
    }
    let mut failed = 0usize;
    for request in requests {
        let handle = request.handle().to_string();
        let r = session
            .admin(request)
            .with_context(|| format!("{handle} (as {})", auth.identity()))?;
        if r.is_success() {
            print_lines([format!("ok {handle}")])?;
        } else {
            failed += 1;
            eprintln!("{}", show::describe_failure(&r));
            if stop_on_error {
                break;
            }
        }
    }
    session.close();
    Ok(exit_status(failed == 0))
}

fn native_admin(op: AdminOp) -> anyhow::Result<ExitCode> {
    let (request, conn, auth, done) = match op {
        AdminOp::Batch {
            file,
            stop_on_error,
            conn,
            auth,
        } => return native_admin_batch(&file, stop_on_error, &conn, &auth),
        op => op.into_request()?,
    };
    let client = conn.client()?;
    let auth = auth.admin_identity()?;
    let handle = request.handle().to_string();
    let is_list = matches!(request, AdminRequest::List { .. });
    let r = client
        .admin(request, &auth)
        .with_context(|| format!("{handle} (as {})", auth.identity()))?;
    if !r.is_success() {
        eprintln!("{}", show::describe_failure(&r));
        if let Some(hint) = report::admin_refusal_hint(r.code, &auth.identity()) {
            eprintln!("{hint}");
        }
        return Ok(ExitCode::from(1));
    }
    if is_list {
        let n = r.handles.len();
        print_lines(r.handles)?;
        eprintln!("{n} handles under {handle}");
    } else {
        let target = r.minted_handle.as_deref().unwrap_or(&handle);
        print_lines([format!("{done} {target}")])?;
    }
    Ok(ExitCode::SUCCESS)
}

fn keygen(out: &Path, bits: usize, index: u32, force: bool) -> anyhow::Result<ExitCode> {
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
    eprintln!("{}", report::keygen_done(out, index));
    Ok(ExitCode::SUCCESS)
}
