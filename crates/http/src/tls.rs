//! TLS for wsring's own listeners (`--tls-cert`, `--tls-key`) and for the
//! connections one wsring process opens to another: the gateway's tunnels
//! to `wss://` nodes and the HTTP calls (API relays, presence fan-out) to
//! `https://` ones, trusting the system roots plus `--tls-ca`.
//!
//! rustls with the `ring` provider, passed explicitly to every config and
//! HTTP client rather than installed process-wide, so nothing depends on
//! which crate happened to install a default first.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why a certificate, key or CA file could not be used. Start-up fails with
/// it.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file could not be read or holds no PEM item of the expected kind.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Only one of `--tls-cert` and `--tls-key` was given.
    #[error("--tls-cert and --tls-key go together: give both or neither")]
    Incomplete,
    /// rustls refused the combination (e.g. a key that does not match the
    /// certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The HTTP client for calls to other processes could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in PEM form"));
    }
    Ok(certs)
}

/// The TLS files of one process: its listener's certificate chain and key,
/// and the extra CA it trusts for connections to other processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-cert`.
    pub cert: Option<PathBuf>,
    /// `--tls-key`.
    pub key: Option<PathBuf>,
    /// `--tls-ca`.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether the listener speaks TLS.
    pub fn listener_on(&self) -> bool {
        self.cert.is_some()
    }

    /// The listener's acceptor, if TLS is on.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        acceptor(self.cert.as_deref(), self.key.as_deref())
    }

    /// How to connect to other processes.
    pub fn client(&self) -> Result<ClientTls, TlsError> {
        ClientTls::new(self.ca.as_deref())
    }
}

/// The acceptor for a listener with this certificate chain and key (PEM
/// files), or `None` when neither is given.
pub fn acceptor(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsAcceptor>, TlsError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(TlsError::Incomplete),
    };
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// How this process connects to other wsring processes over TLS: the
/// system's roots plus the certificates in `ca` (PEM), if given.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the system roots and the certificates in `ca`.
    pub fn new(ca: Option<&Path>) -> Result<ClientTls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        // A missing or partly unreadable system store is not fatal: a private
        // CA given with --tls-ca may be all that is needed.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(ca) = ca {
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// A connector for `wss://` tunnels.
    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(Arc::clone(&self.config))
    }

    /// An HTTP client for calls to other processes (`http://` or
    /// `https://`), every request bounded by `timeout`.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, TlsError> {
        Ok(reqwest::Client::builder()
            .timeout(timeout)
            .tls_backend_preconfigured((*self.config).clone())
            .build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_and_key_go_together_and_bad_files_are_named() {
        assert!(acceptor(None, None).expect("none").is_none());
        let p = Path::new("/nonexistent/cert.pem");
        assert!(matches!(acceptor(Some(p), None), Err(TlsError::Incomplete)));
        let e = acceptor(Some(p), Some(p)).err().expect("missing file");
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("wsring-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem").expect("write");
        assert!(acceptor(Some(&junk), Some(&junk)).is_err());
        assert!(ClientTls::new(Some(&junk)).is_err());
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        assert!(acceptor(Some(&c), Some(&k)).expect("loads").is_some());
        let client = ClientTls::new(Some(&c)).expect("CA loads");
        client
            .http_client(Duration::from_secs(1))
            .expect("client builds");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
