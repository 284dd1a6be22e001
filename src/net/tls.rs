//! The one TLS setup of the crate's HTTP clients.

use std::sync::Arc;

/// Why one of the crate's HTTP clients (the [`super::ReqwestFetcher`],
/// [`super::ReqwestUpstreamHttp`], [`super::ReqwestJwksFetcher`] or
/// [`super::IntrospectionVerifier`]) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    /// A development root certificate is not valid PEM or not a usable
    /// certificate.
    #[error("invalid development root certificate")]
    InvalidCertificate,
    /// The TLS configuration could not be built.
    #[error("TLS configuration failed: {0}")]
    Tls(String),
    /// The HTTP client could not be built.
    #[error("HTTP client construction failed: {0}")]
    Client(String),
}

/// The rustls configuration of the crate's HTTP clients: the ring provider
/// (reqwest is built without a default one), the webpki roots plus any
/// development roots, HTTP/1.1.
pub(super) fn rustls_client_config(extra_roots_pem: &[Vec<u8>]) -> Result<rustls::ClientConfig, ClientBuildError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_roots_pem {
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| ClientBuildError::InvalidCertificate)?;
            roots.add(cert).map_err(|_| ClientBuildError::InvalidCertificate)?;
            any = true;
        }
        if !any {
            return Err(ClientBuildError::InvalidCertificate);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientBuildError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}
