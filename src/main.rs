//! The `idnode` binary: every role of a resolution node is configuration of this program.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use idnode::config::{Config, ValidConfig, EMBEDDED_DEFAULT};
use idnode::model::{validate_values, Prefix};
use idnode::resolve::{init_prefix, Engine, Policy};
use idnode::server;
use idnode::store::{Record, Registry};
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
    },
    /// Load records from JSON Lines ({"handle":..,"values":[..]} per line; node stopped).
    Import {
        file: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Records per durable batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Write every record as JSON Lines (includes secrets: keep the file safe; node stopped).
    Export {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
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
            println!("  data_dir        {}", c.raw.node.data_dir.display());
            let homed: Vec<String> = c.homed_prefixes.iter().map(|p| p.to_string()).collect();
            println!("  homed prefixes  {}", homed.join(", "));
            println!("  suffix case     {:?}", c.raw.node.suffix_case);
            let scheme = if c.tls.is_some() { "https" } else { "http" };
            println!("  HTTP            {scheme}://{}", c.raw.http.listen);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::InitPrefix {
            prefix,
            config,
            secret_file,
            index,
        } => {
            let c = load_config(config.as_deref())?;
            let prefix = Prefix::parse(&prefix)?;
            let registry = server::open_registry(&c)?;
            let path =
                secret_file.unwrap_or_else(|| server::secret_path(&c.raw.node.data_dir, &prefix));
            let (secret, generated) = server::read_or_create_secret(&path)?;
            let created = init_prefix(&registry, &prefix, index, secret.as_bytes())
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            if created {
                println!("created 0.NA/{prefix}; administrator {index}:0.NA/{prefix}");
            } else {
                println!("0.NA/{prefix} already exists; left unchanged (prefix homed)");
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
        } => import(&load_config(config.as_deref())?, &file, batch.max(1)),
        Command::Export { config, output } => {
            export(&load_config(config.as_deref())?, output.as_deref())
        }
    }
}

fn serve(config: ValidConfig) -> anyhow::Result<std::process::ExitCode> {
    let registry = Arc::new(server::open_registry(&config)?);
    let bootstrapped = server::prepare_registry(&config, &registry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let node = server::start(config.clone(), registry).await?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base = format!("{scheme}://{}", node.http_addr);
        tracing::info!(%base, "idnode serving");
        print_welcome(&config, &base, &bootstrapped);
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_welcome(config: &ValidConfig, base: &str, bootstrapped: &[(Prefix, PathBuf)]) {
    let k = if config.tls.is_some() { " -k" } else { "" };
    println!(
        "idnode is serving {base}  (data in {})",
        config.raw.node.data_dir.display()
    );
    for (p, path) in bootstrapped {
        println!(
            "created administrator 300:0.NA/{p}; its secret is in {}",
            path.display()
        );
    }
    if let Some(p) = config.homed_prefixes.first() {
        let secret = server::secret_path(&config.raw.node.data_dir, p);
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
) -> anyhow::Result<std::process::ExitCode> {
    let registry = Arc::new(server::open_registry(config)?);
    server::prepare_registry(config, &registry)?;
    let engine = Engine::new(
        registry.clone(),
        Policy {
            suffix_case: config.raw.node.suffix_case,
            ..Policy::default()
        },
    );
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let bar = progress(f.metadata().ok().map(|m| m.len()));
    let reader = std::io::BufReader::new(f);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let (mut imported, mut rejected) = (0usize, 0usize);
    let mut batch = Vec::with_capacity(batch_size);
    let mut reject = |line_no: usize, reason: String| {
        rejected += 1;
        bar.suspend(|| eprintln!("line {line_no}: rejected: {reason}"));
    };
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i + 1;
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        bar.inc(line.len() as u64 + 1);
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t.trim(),
            Err(_) => {
                reject(line_no, "not UTF-8".into());
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match parse_import_line(&engine, text, now) {
            Ok(entry) => batch.push(entry),
            Err(reason) => {
                reject(line_no, reason);
                continue;
            }
        }
        if batch.len() >= batch_size {
            registry.put_batch(&batch)?;
            imported += batch.len();
            batch.clear();
        }
    }
    registry.put_batch(&batch)?;
    imported += batch.len();
    bar.finish_and_clear();
    println!("imported {imported} records, rejected {rejected} lines");
    Ok(if rejected == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// One JSON Lines record: `{"handle": "...", "values": [...]}` in the REST value shape.
fn parse_import_line(
    engine: &Engine,
    text: &str,
    now: u32,
) -> Result<(idnode::model::Handle, Record), String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let (handle_text, mut values) =
        hjson::values_from_request_body(&json).map_err(|e| e.to_string())?;
    let handle_text = handle_text.ok_or("no \"handle\" field")?;
    let handle = engine.parse_handle(&handle_text).map_err(|f| f.message)?;
    match engine.is_responsible(&handle) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "prefix {} is not homed by this node (add it to node.homed_prefixes)",
                handle.prefix()
            ))
        }
        Err(f) => return Err(f.message),
    }
    validate_values(&values).map_err(|e| e.to_string())?;
    for v in &mut values {
        if v.timestamp == 0 {
            v.timestamp = now;
        }
    }
    values.sort_by_key(|v| v.index);
    let record = Record {
        handle: handle.as_str().to_string(),
        values,
    };
    Ok((handle, record))
}

fn export(config: &ValidConfig, output: Option<&Path>) -> anyhow::Result<std::process::ExitCode> {
    let registry = Registry::open(
        &config.raw.node.data_dir,
        &idnode::store::StoreOptions::default(),
    )
    .with_context(|| {
        format!(
            "opening the registry in {}",
            config.raw.node.data_dir.display()
        )
    })?;
    let out: Box<dyn Write> = match output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
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
    Ok(std::process::ExitCode::SUCCESS)
}
