//! TLS configurations (rustls with the ring provider): the HTTP listener's server side, with
//! the optional client-certificate verifier, and the client side of sync follow links.
//!
//! It sits at the top level, below `config` and above `sync` and `server`: `config` loads the
//! listener's files once at validation (so a bad certificate stops the node before it binds
//! anything), the follower connects with [`client_config_with_cert`], and the server serves
//! with [`load_server_config`]. It uses only rustls and the files it is given.
//!
//! For trying HTTPS out, make a self-signed pair with:
//! `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost
//!  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 30 -keyout key.pem -out cert.pem`

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The HTTP listener's certificate and key (`http.tls_cert`, `http.tls_key`): set when it
/// speaks HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Ask clients for a certificate (`http.client_cert_auth`).
    pub client_certs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A PEM certificate chain and its private key.
fn load_pair(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = read_certs(cert)?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            reason: "no PEM certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((certs, key))
}

/// Every PEM certificate in `path`.
fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |e: rustls::pki_types::pem::Error| TlsError::Cert {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    CertificateDer::pem_file_iter(path)
        .map_err(failed)?
        .collect::<Result<_, _>>()
        .map_err(failed)
}

/// Load the certificate chain and key and build a server configuration (HTTP/1.1 ALPN).
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (certs, key) = load_pair(&files.cert, &files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if files.client_certs {
        builder.with_client_cert_verifier(Arc::new(OptionalClientCert(provider)))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client certificates for Handle.Net's client-certificate authentication: asked for but
/// optional, and accepted whoever issued them (they are usually self-signed). What they prove
/// is checked later, per request, against the HS_PUBKEY values of the identity the subject
/// names (`crate::auth::authenticate_public_key`); here rustls checks only that the client
/// holds the certificate's private key (the handshake signature, verified for real).
#[derive(Debug)]
struct OptionalClientCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.0, Tls::V12, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.0, Tls::V13, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration for follow links: trusting the PEM certificates in `ca_file`, or
/// (`insecure`, tests only) any certificate.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    insecure: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with_cert(ca_file, insecure, None)
}

/// [`client_config`], presenting the client certificate `(cert, key)` (PEM files) when the
/// server asks for one.
pub fn client_config_with_cert(
    ca_file: Option<&std::path::Path>,
    insecure: bool,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = ca_file {
            let (added, _) = roots.add_parsable_certificates(read_certs(path)?);
            if added == 0 {
                return Err(TlsError::Cert {
                    path: path.display().to_string(),
                    reason: "no usable PEM certificate".into(),
                });
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match client_cert {
        Some((cert, key)) => {
            let (chain, key) = load_pair(cert, key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Certificate "verification" for `insecure_skip_verify` (tests): signatures are still
/// checked, the chain and name are not.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.0, Tls::V12, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.0, Tls::V13, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

enum Tls {
    V12,
    V13,
}

/// Check the peer's handshake signature with the provider's algorithms: both verifiers above
/// skip the certificate chain, never this.
fn handshake_signature(
    provider: &rustls::crypto::CryptoProvider,
    version: Tls,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    let algorithms = &provider.signature_verification_algorithms;
    match version {
        Tls::V12 => rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms),
        Tls::V13 => rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms),
    }
}
