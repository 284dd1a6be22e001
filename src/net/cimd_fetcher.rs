//! A ready [`MetadataFetcher`] on reqwest and rustls.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use url::Host;

use super::resolver::{Blocked, FilteringResolver, check_peer, next_cause};
use super::tls::{ClientBuildError, rustls_client_config};
use crate::cimd::{FetchError, FetchPlan, FetchResponse, MetadataFetcher, address_refused, truncate};

/// The `User-Agent` of every fetch.
const USER_AGENT: &str = concat!(
    "authio-mcp/",
    env!("CARGO_PKG_VERSION"),
    " (client-id-metadata-fetcher)"
);

/// A [`MetadataFetcher`] on reqwest with rustls (ring provider, Mozilla
/// roots from `webpki-roots`) that keeps the trait's security contract:
///
/// - DNS answers are filtered through [`crate::cimd::is_special_use`]: special-use
///   addresses are dropped, and a host with only special-use addresses is
///   refused before any connection; IP-literal hosts are checked before
///   connecting; the peer address of the connection is checked again;
/// - redirects are never followed (a 3xx is [`FetchError::Redirect`]);
/// - a `Content-Length` above the cap is refused before reading, and a
///   streamed body is cut at the cap;
/// - one overall timeout from connecting to the last byte (the plan's),
///   and a much shorter connect timeout (TCP and TLS handshake, default
///   [`DEFAULT_CONNECT_TIMEOUT`]) so that tarpit hosts that accept
///   connections and never answer give their in-flight slot back early;
/// - no cookies, no credentials, no `Referer`, no proxy (environment
///   proxies are ignored), HTTPS only, HTTP/1.1, a fixed `User-Agent`.
///
/// Development-only switches, off by default:
/// [`ReqwestFetcherBuilder::danger_allow_loopback_for_development`] and
/// [`ReqwestFetcherBuilder::add_root_certificate_for_development`].
#[derive(Clone)]
pub struct ReqwestFetcher {
    client: reqwest::Client,
    allow_loopback: bool,
}

impl fmt::Debug for ReqwestFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestFetcher")
            .field("allow_loopback", &self.allow_loopback)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ReqwestFetcher`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ReqwestFetcherBuilder {
    allow_loopback: bool,
    extra_roots_pem: Vec<Vec<u8>>,
    connect_timeout: std::time::Duration,
}

impl Default for ReqwestFetcherBuilder {
    fn default() -> Self {
        Self {
            allow_loopback: false,
            extra_roots_pem: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The default connect timeout (TCP and TLS): 1.5 s, against 5 s for the
/// whole fetch by default.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1_500);

impl ReqwestFetcher {
    /// A builder with the secure defaults.
    pub fn builder() -> ReqwestFetcherBuilder {
        ReqwestFetcherBuilder::default()
    }
}

impl ReqwestFetcherBuilder {
    /// DEVELOPMENT ONLY: lets loopback addresses (`127.0.0.0/8`, `::1`)
    /// through, for an authorization server on a developer machine fetching
    /// documents served from the same machine. Every other special-use
    /// address stays refused. Never enable in production: it opens the
    /// server's own loopback services to anyone who can pick a
    /// `client_id`.
    pub fn danger_allow_loopback_for_development(mut self, allow: bool) -> Self {
        self.allow_loopback = allow;
        self
    }

    /// DEVELOPMENT ONLY: trusts one more root certificate (PEM, one or
    /// more certificates), e.g. a private CA or a self-signed certificate
    /// of a local test server, in addition to the public roots.
    pub fn add_root_certificate_for_development(mut self, pem: &[u8]) -> Self {
        self.extra_roots_pem.push(pem.to_vec());
        self
    }

    /// The connect timeout (TCP connection and TLS handshake; default
    /// [`DEFAULT_CONNECT_TIMEOUT`]). Keep it well below the fetch timeout.
    pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Builds the fetcher.
    ///
    /// # Errors
    /// A [`ClientBuildError`].
    pub fn build(self) -> Result<ReqwestFetcher, ClientBuildError> {
        let tls = rustls_client_config(&self.extra_roots_pem)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            .http1_only()
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(0)
            .connect_timeout(self.connect_timeout)
            .dns_resolver(Arc::new(FilteringResolver {
                allow_loopback: self.allow_loopback,
            }))
            .build()
            .map_err(|e| ClientBuildError::Client(e.to_string()))?;
        Ok(ReqwestFetcher {
            client,
            allow_loopback: self.allow_loopback,
        })
    }
}

#[async_trait]
impl MetadataFetcher for ReqwestFetcher {
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        let deadline = plan.timeout();
        match tokio::time::timeout(deadline, self.fetch_within(plan)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    fn allows_loopback_for_development(&self) -> bool {
        self.allow_loopback
    }
}

impl ReqwestFetcher {
    async fn fetch_within(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        let url = plan.url().url().clone();
        // IP-literal hosts skip DNS: check them here, before connecting.
        let literal = match url.host() {
            Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(ip) = literal
            && address_refused(ip, self.allow_loopback)
        {
            return Err(FetchError::BlockedAddress { address: Some(ip) });
        }

        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, plan.accept())
            .timeout(plan.timeout())
            .send()
            .await
            .map_err(map_error)?;

        // The address actually connected to (DNS rebinding defence in
        // depth: the resolver already filtered what could be connected to).
        check_peer(response.remote_addr(), self.allow_loopback)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect {
                status: status.as_u16(),
            });
        }
        let limit = plan.max_body_bytes();
        if response
            .content_length()
            .is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(FetchError::TooLarge { limit });
        }
        let headers = response.headers().clone();
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(map_error)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchResponse::from_parts(status.as_u16(), &headers, body))
    }
}

fn map_error(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(Blocked(address)) = err.downcast_ref::<Blocked>() {
            return FetchError::BlockedAddress { address: *address };
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return FetchError::Tls {
                detail: truncate(&tls.to_string(), 300),
            };
        }
        source = next_cause(err);
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else if e.is_redirect() {
        FetchError::Redirect { status: 300 }
    } else if e.is_connect() {
        FetchError::Connect {
            detail: error_chain(&e),
        }
    } else {
        FetchError::Other {
            detail: error_chain(&e),
        }
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    truncate(&out, 300)
}
