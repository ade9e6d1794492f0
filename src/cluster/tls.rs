//! TLS on the cluster transport. It is optional, and off unless a certificate and key are
//! configured.
//!
//! When TLS is on:
//! - The cluster listener speaks HTTPS only, with this node's certificate and key. A
//!   plain-HTTP request gets no HTTP answer, because the handshake fails.
//! - The node calls its peers at `https://<peer address>`. It trusts only the roots of
//!   `--cluster-tls-ca`, or the system's roots without that flag.
//!
//! A cluster has TLS on every node or on none: a node calls its peers with the scheme of
//! its own listener.
//!
//! What TLS adds: raft RPCs, forwarded proposals and follower reports are encrypted. They
//! carry the control state, source names and the shared secret itself. Also, a node knows
//! that the peer it calls holds a certificate for the peer's address.
//!
//! What TLS does not add: the listener asks for no client certificate. So the shared
//! secret alone still authenticates a caller. Without it, the answer is 401, over TLS as
//! over plain HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where a node's TLS material is (`--cluster-tls-cert`, `--cluster-tls-key`,
/// `--cluster-tls-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// PEM certificate chain the listener presents, leaf first. It must be valid for the
    /// address that the peers know this node by (an IP or DNS subject alternative name).
    pub cert: PathBuf,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM certificates of the roots trusted when calling peers. `None`: the system's.
    pub ca: Option<PathBuf>,
}

/// Why the TLS material is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate and the key do not make a server identity rustls accepts.
    #[error("certificate {cert} with key {key}: {reason}")]
    Identity {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said.
        reason: String,
    },
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl ClusterTls {
    /// The listener's TLS configuration: this node's certificate and key. No client
    /// certificates; callers authenticate with the shared secret.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        self.identity(self.certs()?, self.key()?)
    }

    /// The roots trusted when calling peers. `None`: the system's.
    pub fn client_roots(&self) -> Result<Option<Vec<reqwest::Certificate>>, TlsError> {
        let Some(path) = &self.ca else {
            return Ok(None);
        };
        crate::shipper::client::read_ca_bundle(path)
            .map(Some)
            .map_err(|e| file_error(path, e))
    }

    /// Every problem with the files, one line each. Configuration validation calls it, so
    /// a bad file is reported with the other configuration problems, before anything
    /// starts.
    pub fn problems(&self) -> Vec<String> {
        let identity = match (self.certs(), self.key()) {
            (Ok(certs), Ok(key)) => vec![self.identity(certs, key).err()],
            (certs, key) => vec![certs.err(), key.err()],
        };
        identity
            .into_iter()
            .chain([self.client_roots().err()])
            .flatten()
            .map(|e| e.to_string())
            .collect()
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_error(&self.cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(&self.cert, e))?;
        if certs.is_empty() {
            return Err(file_error(&self.cert, "no certificate in the file"));
        }
        Ok(certs)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))
    }

    fn identity(
        &self,
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let identity = |e: rustls::Error| TlsError::Identity {
            cert: self.cert.display().to_string(),
            key: self.key.display().to_string(),
            reason: e.to_string(),
        };
        // The provider is named here, not taken from the process default. So the
        // configuration can be checked before anything installed a default.
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(identity)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(identity)
    }
}

/// Certificates for tests, made on the spot.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::ClusterTls;

    /// A new CA: its certificate and key.
    pub(crate) fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        (params.self_signed(&key).expect("self-signed"), key)
    }

    /// PEM files in `dir`, shared by every test node: a CA (`ca.pem`), and a certificate
    /// for `localhost` and `127.0.0.1` that the CA signed (`node.pem`, key
    /// `node-key.pem`).
    pub(crate) fn files(dir: &Path) -> ClusterTls {
        let (ca, ca_key) = ca("highlander test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("signed");
        let tls = ClusterTls {
            cert: dir.join("node.pem"),
            key: dir.join("node-key.pem"),
            ca: Some(dir.join("ca.pem")),
        };
        let write = |path: &Path, pem: String| std::fs::write(path, pem).expect("write pem");
        write(&tls.cert, cert.pem());
        write(&tls.key, key.serialize_pem());
        write(tls.ca.as_deref().expect("ca"), ca.pem());
        tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_files_make_a_server_identity_and_client_roots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = testing::files(dir.path());
        assert!(tls.problems().is_empty(), "{:?}", tls.problems());
        assert_eq!(tls.client_roots().expect("roots").map(|r| r.len()), Some(1));
        let system = ClusterTls { ca: None, ..tls };
        assert!(system.client_roots().expect("no roots").is_none());
    }

    #[test]
    fn every_bad_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = testing::files(dir.path());
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let problems = ClusterTls {
            cert: missing.clone(),
            key: good.key.clone(),
            ca: Some(empty.clone()),
        }
        .problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("missing.pem"), "{problems:?}");
        assert!(
            problems[1].contains("empty.pem") && problems[1].contains("no certificate"),
            "{problems:?}"
        );
        // A certificate file without a certificate, and a key file without a key. The
        // error names both.
        let problems = ClusterTls {
            cert: good.key.clone(),
            key: good.cert.clone(),
            ca: None,
        }
        .problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("node-key.pem") && problems[0].contains("no certificate"),
            "{problems:?}"
        );
        assert!(problems[1].contains("node.pem"), "{problems:?}");
        let problems = ClusterTls {
            cert: good.cert.clone(),
            key: good.cert.clone(),
            ca: None,
        }
        .problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("node.pem"), "{problems:?}");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = testing::files(dir.path());
        let other = dir.path().join("other-key.pem");
        std::fs::write(
            &other,
            rcgen::KeyPair::generate().expect("key").serialize_pem(),
        )
        .expect("write");
        let err = ClusterTls { key: other, ..good }
            .server_config()
            .expect_err("mismatched key");
        assert!(matches!(err, TlsError::Identity { .. }), "{err}");
    }
}
