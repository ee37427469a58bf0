//! What `idnode bench` runs: the protocol ([`Proto`]), the run's settings ([`BenchConfig`]),
//! where `--server` points ([`parse_server`]), the identifiers (`generate_ids`) and how they
//! are drawn ([`Sampler`]).
//!
//! Plain data and parsing, no sockets: `main.rs` builds a [`BenchConfig`] from the command
//! line with these, and the loaders (`udp`, `tcp`, `http`) read it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::BenchError;
use crate::model::Transport;

/// Which front end to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Native Handle resolution requests over UDP.
    HandleUdp,
    /// Native Handle resolution requests over TCP.
    HandleTcp,
    /// DNS TXT queries over UDP.
    DnsUdp,
    /// `GET /api/handles/<id>` over HTTP/1.1.
    Http,
    /// `GET /api/handles/<id>` over HTTP/1.1 in TLS.
    Https,
}

impl Proto {
    /// The name on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Proto::HandleUdp => "handle-udp",
            Proto::HandleTcp => "handle-tcp",
            Proto::DnsUdp => "dns-udp",
            Proto::Http => "http",
            Proto::Https => "https",
        }
    }

    /// The transport its requests travel on.
    pub fn transport(self) -> Transport {
        match self {
            Proto::HandleUdp | Proto::DnsUdp => Transport::Udp,
            Proto::HandleTcp | Proto::Http | Proto::Https => Transport::Tcp,
        }
    }

    /// Whether this loads the HTTP API.
    pub fn is_http(self) -> bool {
        matches!(self, Proto::Http | Proto::Https)
    }

    /// The port a server address without one defaults to: the node's defaults for the native
    /// protocol (2641), DNS (5300) and the HTTP(S) API (8000).
    pub fn default_port(self) -> u16 {
        match self {
            Proto::HandleUdp | Proto::HandleTcp => 2641,
            Proto::DnsUdp => 5300,
            Proto::Http | Proto::Https => 8000,
        }
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "handle-udp" => Ok(Proto::HandleUdp),
            "handle-tcp" => Ok(Proto::HandleTcp),
            "dns-udp" => Ok(Proto::DnsUdp),
            "http" => Ok(Proto::Http),
            "https" => Ok(Proto::Https),
            other => Err(format!(
                "unsupported protocol {other:?} \
                 (supported: handle-udp, handle-tcp, dns-udp, http, https)"
            )),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub proto: Proto,
    pub server: SocketAddr,
    /// The server's name as given (no port): HTTP `Host` header and TLS server name for
    /// http/https; `None`: the server's IP address.
    pub host: Option<String>,
    /// TLS client configuration; required for https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub duration: Duration,
    /// Requests outstanding in total (closed loop); the in-flight cap in open loop. TCP and
    /// HTTP: the number of connections, each with one request in flight.
    pub concurrency: usize,
    /// Source sockets (UDP protocols).
    pub sockets: usize,
    /// Offered queries per second (open loop); `None`: as fast as possible.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Identifiers that exist.
    pub ids: Vec<String>,
    /// Zipf exponent; `None`: uniform.
    pub zipf: Option<f64>,
    /// Share of queries for identifiers that do not exist.
    pub miss_share: f64,
    /// DNS zone the identifiers live under.
    pub zone: String,
    pub seed: u64,
    /// UDP: threads the sockets are spread over (each thread waits for the answers of all its
    /// sockets at once); `None`: one per core this process may run on (as `taskset` leaves
    /// them). Open loop adds one thread that sends.
    pub threads: Option<usize>,
    /// Set the REC (recursive) flag on Handle resolution requests (handle-udp, handle-tcp),
    /// so a recursive node resolves identifiers it is not responsible for through the
    /// hierarchy instead of answering 301. DNS queries always have RD set; refused for
    /// http/https.
    pub recursive: bool,
    /// http/https: write (`PUT`) with this `Authorization` header instead of reading.
    pub put: Option<hyper::header::HeaderValue>,
    /// Print a live progress line on standard error once a second (meant for a terminal).
    pub progress: bool,
}

/// Where `--server` points: the address to connect to and the name it was given by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTarget {
    pub addr: SocketAddr,
    /// Host name or IP address as given, without port or brackets.
    pub host: String,
}

/// Parse `--server`: `HOST:PORT`, `HOST` (the protocol's default port), `[V6]:PORT`, a bare
/// IPv6 address, or for http/https a URL base such as `https://node.example:8000/`.
pub fn parse_server(text: &str, proto: Proto) -> Result<ServerTarget, BenchError> {
    use std::net::ToSocketAddrs;
    let mut rest = text.trim();
    if proto.is_http() {
        for scheme in ["http://", "https://"] {
            if let Some(r) = rest.strip_prefix(scheme) {
                rest = r;
            }
        }
        rest = rest.trim_end_matches('/');
    }
    if rest.is_empty() {
        return Err(BenchError::EmptyServer(text.to_string()));
    }
    let (host, port) = if let Ok(addr) = rest.parse::<SocketAddr>() {
        (addr.ip().to_string(), addr.port())
    } else if let Ok(ip) = rest.parse::<IpAddr>() {
        (ip.to_string(), proto.default_port())
    } else if let Some(v6) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        (v6.to_string(), proto.default_port())
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse::<u16>().map_err(|_| BenchError::BadPort {
                    text: text.to_string(),
                    port: p.to_string(),
                })?;
                (h.trim_matches(|c| c == '[' || c == ']').to_string(), port)
            }
            None => (rest.to_string(), proto.default_port()),
        }
    };
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|error| BenchError::Lookup {
            text: text.to_string(),
            error,
        })?
        .next()
        .ok_or_else(|| BenchError::NoAddress(text.to_string()))?;
    Ok(ServerTarget { addr, host })
}

/// The first system CA bundle found (`SSL_CERT_FILE`, then the Debian, Red Hat, Alpine/macOS
/// locations), for https without `--ca-file` or `--insecure`.
pub fn system_ca_bundle() -> Option<std::path::PathBuf> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    from_env
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(std::path::PathBuf::from),
        )
        .find(|p| p.is_file())
}

/// Identifiers `prefix/<format with n>` for n in 0..count; `format` holds one `{}` or
/// `{:0W}` (zero-padded to W digits), e.g. `SN-{:07}`.
pub fn generate_ids(prefix: &str, format: &str, count: usize) -> Result<Vec<String>, BenchError> {
    let open = format.find('{').ok_or(BenchError::NoPlaceholder)?;
    let close = open
        + format[open..]
            .find('}')
            .ok_or(BenchError::UnclosedPlaceholder)?;
    let spec = &format[open + 1..close];
    let width = match spec {
        "" => 0,
        s => s
            .strip_prefix(":0")
            .and_then(|w| w.parse::<usize>().ok())
            .ok_or_else(|| BenchError::BadPlaceholder(s.to_string()))?,
    };
    let (before, after) = (&format[..open], &format[close + 1..]);
    Ok((0..count)
        .map(|n| format!("{prefix}/{before}{n:0width$}{after}"))
        .collect())
}

/// Samples indexes 0..n, uniformly or with Zipf popularity (index 0 most popular).
#[derive(Debug, Clone)]
pub struct Sampler {
    n: usize,
    /// Cumulative weights for Zipf; empty for uniform.
    cdf: Vec<f64>,
}

impl Sampler {
    pub fn new(n: usize, zipf: Option<f64>) -> Sampler {
        let cdf = match zipf {
            Some(s) if n > 0 => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (0..n)
                    .map(|k| {
                        acc += 1.0 / ((k + 1) as f64).powf(s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                cdf
            }
            _ => Vec::new(),
        };
        Sampler { n, cdf }
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> usize {
        if self.cdf.is_empty() {
            return rng.gen_range(0..self.n);
        }
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.n - 1)
    }
}

/// The highest `rate` taken, in queries per second.
pub const MAX_RATE: f64 = 1e9;
