//! What the parsed options mean: the client they address, the identity they authenticate
//! as, the values they give. Checked here (with the messages the CLI prints), so `main.rs`
//! only runs commands and prints.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use std::io::IsTerminal;

use super::{AdminOp, AuthArgs, BenchArgs, ConnArgs, ValueArgs};
use crate::auth::challenge::PrivateKey;
use crate::auth::IndexRule;
use crate::client::{self, AdminRequest, Authenticator, Client};
use crate::model::{validate_values, HandleValue};
use crate::wire::json as hjson;

/// An option that does not make sense, with the message to print.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

fn bad(text: impl Into<String>) -> ArgError {
    ArgError(text.into())
}

/// `HOST:PORT`, or a bare host on the default port 2641.
pub fn server_addr(text: &str) -> Result<SocketAddr, ArgError> {
    let found: Vec<SocketAddr> = match text.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(_) if !text.contains(':') => (text, client::DEFAULT_PORT)
            .to_socket_addrs()
            .map_err(|e| bad(format!("server address {text:?}: {e}")))?
            .collect(),
        Err(e) => return Err(bad(format!("server address {text:?}: {e}"))),
    };
    found
        .first()
        .copied()
        .ok_or_else(|| bad(format!("server address {text:?} resolves to no address")))
}

impl ConnArgs {
    /// The client for `--server` and `--timeout`.
    pub fn client(&self) -> Result<Client, ArgError> {
        Ok(Client::new(server_addr(&self.server)?).with_timeout(self.timeout))
    }
}

impl AuthArgs {
    /// The identity the options describe (`None` when no --auth-handle is given).
    pub fn authenticator(&self) -> Result<Option<Authenticator>, ArgError> {
        let Some(text) = self.auth_handle.as_deref() else {
            if self.secret_file.is_some()
                || self.secret.is_some()
                || self.private_key.is_some()
                || self.auth_index.is_some()
            {
                return Err(bad(
                    "--secret-file, --secret, --private-key and --auth-index need --auth-handle",
                ));
            }
            return Ok(None);
        };
        // `300:0.NA/88.100.1` or a bare handle; the server parses the handle.
        let (index_in_text, identity_handle) = IndexRule::Optional
            .split(text)
            .map_err(|e| bad(format!("--auth-handle: {e}")))?;
        let index = match (index_in_text, self.auth_index) {
            (Some(i), Some(j)) if i != j => {
                return Err(bad(format!(
                    "--auth-handle names index {i} but --auth-index says {j}"
                )))
            }
            (Some(i), _) | (None, Some(i)) => i,
            (None, None) => 300,
        };
        if identity_handle.is_empty() {
            return Err(bad("--auth-handle is empty"));
        }
        let identity_handle = identity_handle.to_string();
        if let Some(path) = &self.private_key {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("reading private key {}: {e}", path.display())))?;
            let key = PrivateKey::from_pem(&text)
                .map_err(|e| bad(format!("private key {}: {e}", path.display())))?;
            return Ok(Some(Authenticator::PrivateKey {
                identity_handle,
                index,
                key: Box::new(key),
            }));
        }
        let secret = if let Some(path) = &self.secret_file {
            std::fs::read_to_string(path)
                .map_err(|e| bad(format!("reading secret file {}: {e}", path.display())))?
                .trim()
                .to_string()
        } else if let Some(s) = &self.secret {
            s.clone()
        } else {
            return Err(bad(
                "--auth-handle needs --secret-file, --secret or --private-key",
            ));
        };
        if secret.is_empty() {
            return Err(bad("the secret is empty"));
        }
        Ok(Some(Authenticator::SecretKey {
            identity_handle,
            index,
            secret: secret.into_bytes(),
        }))
    }
}

impl AuthArgs {
    /// [`AuthArgs::authenticator`] for administration, which needs one.
    pub fn admin_identity(&self) -> Result<Authenticator, ArgError> {
        self.authenticator()?.ok_or_else(|| {
            bad(
                "administration needs an identity: --auth-handle with --secret-file, --secret \
                 or --private-key",
            )
        })
    }
}

impl AdminOp {
    /// The request one `idnode admin` operation sends, with its connection and identity
    /// options and the verb its success is reported with. `Batch` is a file of requests,
    /// not one: refused here.
    pub fn into_request(
        self,
    ) -> Result<(AdminRequest, ConnArgs, AuthArgs, &'static str), ArgError> {
        Ok(match self {
            AdminOp::Batch { .. } => return Err(bad("a batch is a file of requests, not one")),
            AdminOp::Create {
                handle,
                values,
                overwrite,
                conn,
                auth,
            } => (
                AdminRequest::Create {
                    handle,
                    values: values.values(false)?,
                    overwrite,
                    mint: false,
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
                    values: values.values(true)?,
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
                    values: values.values(true)?,
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
                (client::list_handles(&prefix), conn, auth, "listed")
            }
        })
    }
}

impl BenchArgs {
    /// The load test the options describe, checked (`threads` is always set: one worker
    /// per core this process may run on unless --threads says otherwise).
    pub fn config(&self) -> Result<crate::bench::BenchConfig, ArgError> {
        let ids = match (&self.ids, self.generate) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| bad(format!("reading {}: {e}", file.display())))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            (None, Some(n)) => crate::bench::generate_ids(&self.prefix, &self.suffix_format, n)
                .map_err(|e| bad(e.to_string()))?,
            (None, None) => return Err(bad("give --ids FILE or --generate N")),
        };
        if !(0.0..=1.0).contains(&self.miss_share) {
            return Err(bad("--miss-share must be between 0 and 1"));
        }
        let https = self.proto == crate::bench::Proto::Https;
        if !https && (self.ca_file.is_some() || self.insecure) {
            return Err(bad("--ca-file and --insecure apply to --proto https only"));
        }
        let tls = if https {
            let ca_file = match (&self.ca_file, self.insecure) {
                (Some(file), _) => Some(file.clone()),
                (None, true) => None,
                (None, false) => Some(crate::bench::system_ca_bundle().ok_or_else(|| {
                    bad("no system CA bundle found: give --ca-file FILE or --insecure")
                })?),
            };
            Some(
                crate::tls::client_config(ca_file.as_deref(), self.insecure)
                    .map_err(|e| bad(e.to_string()))?,
            )
        } else {
            None
        };
        let put = match (&self.auth_user, &self.secret_file) {
            _ if !self.put => None,
            _ if !self.proto.is_http() => {
                return Err(bad("--put applies to --proto http and https only"))
            }
            (Some(user), Some(file)) => {
                let secret = std::fs::read_to_string(file)
                    .map_err(|e| bad(format!("reading {}: {e}", file.display())))?;
                Some(crate::bench::basic_authorization(user, secret.trim()).map_err(bad)?)
            }
            _ => return Err(bad("--put needs --auth-user and --secret-file")),
        };
        let threads = match self.threads {
            Some(n @ 1..=1024) => n,
            Some(_) => return Err(bad("--threads must be between 1 and 1024")),
            // One worker thread per core this process may run on (`taskset` narrows it).
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let target =
            crate::bench::parse_server(&self.server, self.proto).map_err(|e| bad(e.to_string()))?;
        Ok(crate::bench::BenchConfig {
            proto: self.proto,
            server: target.addr,
            host: Some(target.host),
            tls,
            duration: self.duration,
            concurrency: self.concurrency,
            sockets: self.sockets,
            rate: self.rate,
            timeout: self.timeout,
            ids,
            zipf: self.zipf,
            miss_share: self.miss_share,
            zone: self.zone.clone(),
            seed: self.seed,
            threads: Some(threads),
            recursive: self.recursive,
            put,
            progress: !self.json && std::io::stderr().is_terminal(),
        })
    }
}

/// One `--value INDEX:TYPE:DATA` (DATA is text and may contain ':').
pub fn parse_value_arg(text: &str) -> Result<HandleValue, ArgError> {
    let mut parts = text.splitn(3, ':');
    let (Some(index), Some(type_name), Some(data)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("--value {text:?}: expected INDEX:TYPE:DATA")));
    };
    let index: u32 = index
        .trim()
        .parse()
        .map_err(|_| bad(format!("--value {text:?}: index {index:?} is not a number")))?;
    if type_name.is_empty() {
        return Err(bad(format!("--value {text:?}: empty type")));
    }
    Ok(HandleValue::new(index, type_name, data.as_bytes().to_vec()))
}

impl ValueArgs {
    /// The values of --value and --values-json (`-`: standard input), checked like the
    /// server checks them; `required`: at least one.
    pub fn values(&self, required: bool) -> Result<Vec<HandleValue>, ArgError> {
        let mut values = self
            .values
            .iter()
            .map(|t| parse_value_arg(t))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(path) = &self.values_json {
            let text = if path == Path::new("-") {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| bad(format!("reading values from standard input: {e}")))?;
                s
            } else {
                std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("reading {}: {e}", path.display())))?
            };
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| bad(format!("{}: malformed JSON: {e}", path.display())))?;
            let (_, more) = hjson::values_from_request_body(&json)
                .map_err(|e| bad(format!("{}: bad values: {e}", path.display())))?;
            values.extend(more);
        }
        if required && values.is_empty() {
            return Err(bad(
                "no values: give --value INDEX:TYPE:DATA and/or --values-json FILE",
            ));
        }
        validate_values(&values).map_err(|e| bad(e.to_string()))?;
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_arguments_split_at_the_first_two_colons() {
        let v = parse_value_arg("1:URL:https://example.com/a:b").unwrap();
        assert_eq!((v.index, v.type_name.as_str()), (1, "URL"));
        assert_eq!(v.data_str(), Some("https://example.com/a:b"));
        assert!(parse_value_arg("1:URL").is_err());
        assert!(parse_value_arg("x:URL:data")
            .unwrap_err()
            .0
            .contains("not a number"));
        assert!(parse_value_arg("1::data")
            .unwrap_err()
            .0
            .contains("empty type"));
    }

    #[test]
    fn server_addresses_default_to_the_native_port() {
        assert_eq!(
            server_addr("127.0.0.1").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], client::DEFAULT_PORT))
        );
        assert_eq!(
            server_addr("127.0.0.1:9").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 9))
        );
    }
}
