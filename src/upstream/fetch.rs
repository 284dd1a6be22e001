//! The HTTP calls of the relying party, behind a host trait.

use async_trait::async_trait;

use crate::secret::SecretString;

/// A response: status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body (at most the implementation's cap).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response.
    pub const fn new(status: u16, body: Vec<u8>) -> Self {
        Self { status, body }
    }
}

/// Why a request to the provider failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamHttpError {
    /// The URL is not `https` (or loopback `http` when allowed).
    #[error("the URL is not allowed")]
    UrlRefused,
    /// Connecting, TLS, a timeout, or reading failed.
    #[error("the request failed: {0}")]
    Transport(String),
    /// The body is larger than the cap.
    #[error("the response is too large")]
    TooLarge,
}

/// The HTTP calls of an OpenID Connect relying party: the discovery
/// document, the JWKS (both `GET`, JSON), the code exchange (a form
/// `POST` to the token endpoint) and the optional userinfo request (a
/// `GET` with the provider's access token, OpenID Connect Core section
/// 5.3.1).
///
/// # Security
/// Implementations MUST NOT follow redirects (a 3xx is returned as is),
/// MUST cap the body (64 KiB is plenty), MUST time out, MUST refuse URLs
/// that are not `https` unless a development switch allows `http` on a
/// loopback host, and MUST NOT send cookies or use an environment proxy.
/// The URLs are the operator's configured issuer and the endpoints its
/// discovery document names; the `authorization` value is a client secret
/// and the bearer token an access token: neither may ever be logged.
#[async_trait]
pub trait UpstreamHttp: Send + Sync {
    /// `GET url` with `Accept: application/json`.
    ///
    /// # Errors
    /// An [`UpstreamHttpError`].
    async fn get(&self, url: &str) -> Result<HttpResponse, UpstreamHttpError>;

    /// `POST url` with an `application/x-www-form-urlencoded` `form` and
    /// an optional `Authorization` header value.
    ///
    /// # Errors
    /// An [`UpstreamHttpError`].
    async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<&SecretString>,
    ) -> Result<HttpResponse, UpstreamHttpError>;

    /// `GET url` with `Accept: application/json` and `Authorization:
    /// Bearer <token>` (RFC 6750 section 2.1): the userinfo request.
    ///
    /// # Errors
    /// An [`UpstreamHttpError`].
    async fn get_with_bearer(&self, url: &str, token: &SecretString) -> Result<HttpResponse, UpstreamHttpError>;
}

/// An [`UpstreamHttp`] on reqwest and rustls (feature `reqwest`): no
/// redirects, no proxy, no cookies, a 10 second timeout, a 64 KiB body
/// cap, `https` only unless built with
/// [`ReqwestUpstreamHttpBuilder::allow_http_loopback_for_development`].
#[cfg(feature = "reqwest")]
#[derive(Clone, Debug)]
pub struct ReqwestUpstreamHttp {
    client: reqwest::Client,
    allow_loopback_http: bool,
}

/// Builds a [`ReqwestUpstreamHttp`].
#[cfg(feature = "reqwest")]
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ReqwestUpstreamHttpBuilder {
    allow_loopback_http: bool,
    extra_roots_pem: Vec<Vec<u8>>,
}

#[cfg(feature = "reqwest")]
impl ReqwestUpstreamHttpBuilder {
    /// Development only: also allow `http` URLs on `localhost`,
    /// `127.0.0.0/8` and `[::1]` (a provider running on this machine).
    pub const fn allow_http_loopback_for_development(mut self, allow: bool) -> Self {
        self.allow_loopback_http = allow;
        self
    }

    /// Development only: trust an extra root certificate (PEM).
    pub fn add_root_certificate_for_development(mut self, pem: &[u8]) -> Self {
        self.extra_roots_pem.push(pem.to_vec());
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`crate::cimd::ReqwestFetcherError`] when TLS or the client cannot be
    /// set up.
    pub fn build(self) -> Result<ReqwestUpstreamHttp, crate::cimd::ReqwestFetcherError> {
        let tls = crate::cimd::reqwest_fetcher::rustls_client_config(&self.extra_roots_pem)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!(
                "authio-mcp/",
                env!("CARGO_PKG_VERSION"),
                " (openid-relying-party)"
            ))
            .build()
            .map_err(|e| crate::cimd::ReqwestFetcherError::Client(e.to_string()))?;
        Ok(ReqwestUpstreamHttp {
            client,
            allow_loopback_http: self.allow_loopback_http,
        })
    }
}

#[cfg(feature = "reqwest")]
impl ReqwestUpstreamHttp {
    /// The largest body read.
    pub const MAX_BODY: usize = 64 * 1024;

    /// A builder with the secure defaults.
    pub fn builder() -> ReqwestUpstreamHttpBuilder {
        ReqwestUpstreamHttpBuilder::default()
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<HttpResponse, UpstreamHttpError> {
        if !super::endpoint_url_ok(url, self.allow_loopback_http) {
            return Err(UpstreamHttpError::UrlRefused);
        }
        let mut response = req
            .send()
            .await
            .map_err(|e| UpstreamHttpError::Transport(e.without_url().to_string()))?;
        if response.content_length().is_some_and(|l| l > Self::MAX_BODY as u64) {
            return Err(UpstreamHttpError::TooLarge);
        }
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| UpstreamHttpError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > Self::MAX_BODY {
                return Err(UpstreamHttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, body })
    }
}

#[cfg(feature = "reqwest")]
#[async_trait]
impl UpstreamHttp for ReqwestUpstreamHttp {
    async fn get(&self, url: &str) -> Result<HttpResponse, UpstreamHttpError> {
        let req = self.client.get(url).header(http::header::ACCEPT, "application/json");
        self.send(url, req).await
    }

    async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<&SecretString>,
    ) -> Result<HttpResponse, UpstreamHttpError> {
        let mut req = self
            .client
            .post(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        if let Some(a) = authorization {
            let mut v = http::HeaderValue::from_str(a.expose_secret()).map_err(|_| UpstreamHttpError::UrlRefused)?;
            v.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, v);
        }
        self.send(url, req).await
    }

    async fn get_with_bearer(&self, url: &str, token: &SecretString) -> Result<HttpResponse, UpstreamHttpError> {
        let mut v = http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| UpstreamHttpError::Transport("the access token is not a valid header value".to_owned()))?;
        v.set_sensitive(true);
        let req = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, v);
        self.send(url, req).await
    }
}
