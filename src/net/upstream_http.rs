//! The upstream relying party's HTTP calls on reqwest.

use async_trait::async_trait;

use super::resolver::{FilteringResolver, check_peer, is_blocked};
use super::tls::{ClientBuildError, rustls_client_config};
use crate::secret::SecretString;
use crate::upstream::{HttpResponse, UpstreamHttp, UpstreamHttpError};

/// An [`UpstreamHttp`] on reqwest and rustls: no
/// redirects, no proxy, no cookies, a 10 second timeout, a 64 KiB body
/// cap, `https` only, and never a special-use address: IP-literal and
/// `localhost` URLs are refused before any connection, DNS answers are
/// filtered like the CIMD fetcher's ([`super::ReqwestFetcher`]), and
/// the peer address of the connection is checked again. Loopback (and
/// `http` on it) only when built with
/// [`ReqwestUpstreamHttpBuilder::allow_http_loopback_for_development`].
#[derive(Clone, Debug)]
pub struct ReqwestUpstreamHttp {
    client: reqwest::Client,
    allow_loopback_http: bool,
}

/// Builds a [`ReqwestUpstreamHttp`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ReqwestUpstreamHttpBuilder {
    allow_loopback_http: bool,
    extra_roots_pem: Vec<Vec<u8>>,
}

impl ReqwestUpstreamHttpBuilder {
    /// Development only: allow loopback addresses (`localhost`,
    /// `127.0.0.0/8`, `[::1]`), over `https` or `http` (a provider running
    /// on this machine). Every other special-use address stays refused.
    /// Never in production: it opens the server's own loopback services
    /// to whoever chooses an upstream issuer.
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
    /// [`ClientBuildError`] when TLS or the client cannot be
    /// set up.
    pub fn build(self) -> Result<ReqwestUpstreamHttp, ClientBuildError> {
        let tls = rustls_client_config(&self.extra_roots_pem)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .referer(false)
            .dns_resolver(std::sync::Arc::new(FilteringResolver {
                allow_loopback: self.allow_loopback_http,
            }))
            .user_agent(concat!(
                "authio-mcp/",
                env!("CARGO_PKG_VERSION"),
                " (openid-relying-party)"
            ))
            .build()
            .map_err(|e| ClientBuildError::Client(e.to_string()))?;
        Ok(ReqwestUpstreamHttp {
            client,
            allow_loopback_http: self.allow_loopback_http,
        })
    }
}

impl ReqwestUpstreamHttp {
    /// The largest body read.
    pub const MAX_BODY: usize = 64 * 1024;

    /// A builder with the secure defaults.
    pub fn builder() -> ReqwestUpstreamHttpBuilder {
        ReqwestUpstreamHttpBuilder::default()
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<HttpResponse, UpstreamHttpError> {
        // Special-use IP literals and `localhost` are refused here, before
        // any connection (they skip the resolver).
        if !crate::upstream::endpoint_url_ok(url, self.allow_loopback_http) {
            return Err(UpstreamHttpError::UrlRefused);
        }
        let mut response = req.send().await.map_err(|e| {
            if is_blocked(&e) {
                UpstreamHttpError::UrlRefused
            } else {
                UpstreamHttpError::Transport(e.without_url().to_string())
            }
        })?;
        // The address actually connected to (defence in depth: the
        // resolver already dropped special-use answers); unknown: refused.
        check_peer(response.remote_addr(), self.allow_loopback_http).map_err(|_| UpstreamHttpError::UrlRefused)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the TCP connections accepted on a loopback port.
    async fn counting_listener() -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        (port, accepted, task)
    }

    /// The client's resolver drops special-use answers: a NAME that
    /// resolves to loopback (here `localhost`, sent past the literal
    /// checks of `send` straight to the client) is never connected to,
    /// and the refusal is recognized as such. With the development
    /// switch, the same request connects.
    #[tokio::test]
    async fn names_resolving_to_special_use_addresses_are_never_connected_to() {
        let (port, accepted, task) = counting_listener().await;
        let url = format!("https://localhost:{port}/.well-known/openid-configuration");
        let http = ReqwestUpstreamHttp::builder().build().unwrap();
        let e = http.client.get(&url).send().await.unwrap_err();
        assert!(is_blocked(&e), "{e:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        assert_eq!(http.get(&url).await, Err(UpstreamHttpError::UrlRefused));
        assert_eq!(accepted.load(Ordering::SeqCst), 0);

        let dev = ReqwestUpstreamHttp::builder()
            .allow_http_loopback_for_development(true)
            .build()
            .unwrap();
        let e = dev.client.get(&url).send().await.unwrap_err();
        assert!(!is_blocked(&e), "{e:?}");
        assert!(matches!(dev.get(&url).await, Err(UpstreamHttpError::Transport(_))));
        assert!(accepted.load(Ordering::SeqCst) >= 1, "the development switch connects");
        task.abort();
    }
}
