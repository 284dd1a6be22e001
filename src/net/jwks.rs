//! The resource server's JWKS fetcher on reqwest.

use async_trait::async_trait;

use super::tls::{ClientBuildError, rustls_client_config};
use crate::resource_server::JwksFetcher;

/// A [`JwksFetcher`] over reqwest: no redirects, no
/// proxy, a 5 second timeout, a 64 KiB body cap, status 200 only.
#[derive(Clone, Debug)]
pub struct ReqwestJwksFetcher {
    client: reqwest::Client,
}

impl ReqwestJwksFetcher {
    /// The largest body read.
    pub const MAX_BODY: usize = 64 * 1024;

    /// A fetcher with the crate's TLS configuration (rustls, ring, webpki
    /// roots) plus `extra_roots_pem` (for development certificates).
    ///
    /// # Errors
    /// The client could not be built.
    pub fn new(extra_roots_pem: &[Vec<u8>]) -> Result<Self, ClientBuildError> {
        let tls = rustls_client_config(extra_roots_pem)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| ClientBuildError::Client(e.to_string()))?;
        Ok(Self { client })
    }

    /// A fetcher over the host's client (it should follow no redirects).
    pub const fn with_client(client: reqwest::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl JwksFetcher for ReqwestJwksFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        if response.content_length().is_some_and(|l| l > Self::MAX_BODY as u64) {
            return Err("too large".to_owned());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > Self::MAX_BODY {
                return Err("too large".to_owned());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
