//! The `idnode` command line: every subcommand and option, as clap parses them. It lives in
//! the library (not in `main.rs`) so that what is generated from the CLI (shell completions,
//! the man page) and the tests that check the docs against it see the same definitions the
//! binary parses; `main.rs` runs what is parsed here and prints the results.

// The doc comments below are clap's help texts (HOST[:PORT], <id>, [dns]), not rustdoc.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod args;
pub mod export;
pub mod report;
pub mod show;

pub use args::ArgError;

#[derive(Parser)]
#[command(
    name = "idnode",
    version,
    about = "Identifier resolution node for the industrial internet (Handle-compatible)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum SyncOp {
    /// Ask the running node (its HTTP listener, from the configuration) for its follow links,
    /// authenticated by the node's operator token (`<data_dir>/sync-operator.token`).
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// handle-udp, handle-tcp, dns-udp, http or https (GET /api/handles/<id>).
    #[arg(long, default_value = "handle-udp")]
    pub proto: crate::bench::Proto,
    /// Target HOST[:PORT] (default port: 2641 native, 5300 DNS, 8000 HTTP/HTTPS; http and
    /// https also take a URL base such as https://node.example:8000/).
    #[arg(long)]
    pub server: String,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Requests outstanding (UDP: spread over the sockets); handle-tcp, http, https: the
    /// number of connections, each with one request in flight.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Source UDP sockets (handle-udp, dns-udp).
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// Fixed offered rate in queries per second (open loop; latency counts from each query's
    /// scheduled send time); default: as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Identifiers, one per line.
    #[arg(long, conflicts_with = "generate")]
    pub ids: Option<PathBuf>,
    /// Generate N identifiers PREFIX/<suffix-format>.
    #[arg(long)]
    pub generate: Option<usize>,
    #[arg(long, default_value = "88.100.1")]
    pub prefix: String,
    #[arg(long, default_value = "SN-{:07}")]
    pub suffix_format: String,
    /// Zipf popularity exponent (default: uniform).
    #[arg(long)]
    pub zipf: Option<f64>,
    /// Share of queries for identifiers that do not exist.
    #[arg(long, default_value_t = 0.0)]
    pub miss_share: f64,
    /// DNS zone the identifiers are under (dns-udp).
    #[arg(long, default_value = "id.example.")]
    pub zone: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Set the REC flag on Handle requests (handle-udp, handle-tcp), so a recursive node
    /// resolves through the hierarchy instead of answering 301 (dns-udp always sets RD).
    #[arg(long)]
    pub recursive: bool,
    /// https: PEM certificates to trust (default: the system's CA bundle).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca_file: Option<PathBuf>,
    /// https: accept any server certificate (self-signed test certificates only).
    #[arg(long)]
    pub insecure: bool,
    /// http, https: write instead of read: `PUT /api/handles/<id>` replacing each drawn
    /// identifier's record with a URL and a DESC value naming the write (every answer is
    /// durable first, so this measures acknowledged writes). Needs --auth-user and
    /// --secret-file.
    #[arg(long, requires_all = ["auth_user", "secret_file"])]
    pub put: bool,
    /// --put: the administrator to write as, `INDEX:HANDLE` (HTTP Basic user).
    #[arg(long, value_name = "INDEX:HANDLE")]
    pub auth_user: Option<String>,
    /// --put: the file holding that administrator's secret.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Worker threads of the generator (UDP: the sockets are spread over them, and --rate adds
    /// one that sends) [default: one per core this process may run on, as `taskset` leaves
    /// them].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Write every record as JSON Lines (includes secrets: keep the file safe; node stopped,
    /// or running with --online), or with --format zone the DNS zone file of what the DNS
    /// front end answers.
    Export {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Export from the running node instead of its data directory: asked of its HTTP
        /// listener (from the configuration, plain HTTP) with the operator token in its data
        /// directory, consistent at one sequence number (the file's last line names it),
        /// while the node keeps serving and taking writes.
        #[arg(long)]
        online: bool,
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
    Resolve(ResolveArgs),
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
pub enum ExportFormat {
    Jsonl,
    Zone,
}

/// Where the native protocol server is.
#[derive(clap::Args)]
pub struct ConnArgs {
    /// HOST:PORT of the server's native interface.
    #[arg(long, default_value = "127.0.0.1:2641", value_name = "HOST:PORT")]
    pub server: String,
    /// How long to wait (UDP: in all, retries included; TCP: per read or write).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// Who answers the server's challenge.
#[derive(clap::Args)]
pub struct AuthArgs {
    /// Identity handle, e.g. 0.NA/88.100.1 (or INDEX:HANDLE, e.g. 300:0.NA/88.100.1).
    #[arg(long, value_name = "HANDLE")]
    pub auth_handle: Option<String>,
    /// Index of the identity's HS_SECKEY / HS_PUBKEY value [default: 300].
    #[arg(long, value_name = "INDEX")]
    pub auth_index: Option<u32>,
    /// File holding the HS_SECKEY secret (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["secret", "private_key"])]
    pub secret_file: Option<PathBuf>,
    /// The HS_SECKEY secret itself (visible to other local users: prefer --secret-file).
    #[arg(long, value_name = "SECRET", conflicts_with = "private_key")]
    pub secret: Option<String>,
    /// PEM private key (PKCS#8 or PKCS#1) whose public half is an HS_PUBKEY value.
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
}

/// Values of create / add / modify.
#[derive(clap::Args)]
pub struct ValueArgs {
    /// A value as INDEX:TYPE:DATA, DATA being text (repeatable), e.g. 1:URL:https://example.com.
    #[arg(long = "value", value_name = "INDEX:TYPE:DATA")]
    pub values: Vec<String>,
    /// A JSON file ("-": standard input) with values in the REST shape: an array, an object
    /// {"values": [...]}, or a single value.
    #[arg(long, value_name = "FILE")]
    pub values_json: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum AdminOp {
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

/// `idnode resolve`: what to ask for, from which node, how.
#[derive(clap::Args)]
pub struct ResolveArgs {
    pub handle: String,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Only values of this type (repeatable; `HS_SITE.` matches the family).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only the value with this index (repeatable; with --type: the union).
    #[arg(long = "index", value_name = "INDEX")]
    pub indexes: Vec<u32>,
    /// Use TCP instead of UDP.
    #[arg(long)]
    pub tcp: bool,
    /// Print the answer in the REST API's JSON shape.
    #[arg(long)]
    pub json: bool,
    /// Ask for values only administrators may read too (clears the PO flag). With
    /// --auth-handle and a secret or key, the server's challenge is answered (over TCP).
    #[arg(long)]
    pub admin_read: bool,
    /// Ask for a certified (signed) answer and verify its signature with the key the
    /// server publishes in its HS_SITE (GET_SITE_INFO); exit status 1 if it does not verify.
    #[arg(long, conflicts_with = "auth_handle")]
    pub certified: bool,
    #[command(flatten)]
    pub auth: AuthArgs,
}
