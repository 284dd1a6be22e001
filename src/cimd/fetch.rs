//! What to fetch ([`FetchPlan`]), how a fetcher answers ([`FetchResponse`],
//! [`FetchError`]), and the [`MetadataFetcher`] trait with its security
//! contract.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

use crate::client_id_url::ClientIdUrl;

/// The largest metadata document accepted, in bytes (the CIMD draft's
/// RECOMMENDED 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5120;

/// The `Accept` header of a metadata fetch.
pub const ACCEPT: &str = "application/json";

/// One metadata fetch, fully decided by the core: the URL, the `Accept`
/// header, the body cap, the timeout, and no redirects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPlan {
    url: ClientIdUrl,
    timeout: Duration,
    max_body_bytes: usize,
}

impl FetchPlan {
    /// A plan for `url` with the given overall timeout and the 5120-byte
    /// cap.
    pub const fn new(url: ClientIdUrl, timeout: Duration) -> Self {
        Self {
            url,
            timeout,
            max_body_bytes: MAX_DOCUMENT_BYTES,
        }
    }

    /// The URL to `GET`, exactly as the client sent it.
    pub const fn url(&self) -> &ClientIdUrl {
        &self.url
    }

    /// The `Accept` header value: `application/json`.
    pub const fn accept(&self) -> &'static str {
        ACCEPT
    }

    /// The most body bytes to read; more is [`FetchError::TooLarge`].
    pub const fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The overall deadline, from connecting to the last body byte.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Always `false`: a metadata fetch never follows redirects (CIMD -01).
    pub const fn follow_redirects(&self) -> bool {
        false
    }
}

/// An HTTP response to a [`FetchPlan`], as far as the core needs it: the
/// status, the headers that matter, and the body (at most
/// [`FetchPlan::max_body_bytes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchResponse {
    /// The status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control` (several header lines joined with `, `).
    pub cache_control: Option<String>,
    /// `Expires`.
    pub expires: Option<String>,
    /// `Date`.
    pub date: Option<String>,
    /// `Age`.
    pub age: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// A response with a status and a body and no headers.
    pub const fn new(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type: None,
            cache_control: None,
            expires: None,
            date: None,
            age: None,
            body,
        }
    }

    /// A response from a status, an `http` header map and a body; keeps the
    /// headers the core reads. Header values that are not visible ASCII are
    /// dropped.
    pub fn from_parts(status: u16, headers: &http::HeaderMap, body: Vec<u8>) -> Self {
        let one = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cache_control: Vec<&str> = headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Self {
            status,
            content_type: one(http::header::CONTENT_TYPE),
            cache_control: (!cache_control.is_empty()).then(|| cache_control.join(", ")),
            expires: one(http::header::EXPIRES),
            date: one(http::header::DATE),
            age: one(http::header::AGE),
            body,
        }
    }

    /// Sets `Content-Type`.
    #[must_use]
    pub fn with_content_type(mut self, value: impl Into<String>) -> Self {
        self.content_type = Some(value.into());
        self
    }

    /// Sets `Cache-Control`.
    #[must_use]
    pub fn with_cache_control(mut self, value: impl Into<String>) -> Self {
        self.cache_control = Some(value.into());
        self
    }

    /// Sets `Expires`.
    #[must_use]
    pub fn with_expires(mut self, value: impl Into<String>) -> Self {
        self.expires = Some(value.into());
        self
    }

    /// Sets `Date`.
    #[must_use]
    pub fn with_date(mut self, value: impl Into<String>) -> Self {
        self.date = Some(value.into());
        self
    }

    /// Sets `Age`.
    #[must_use]
    pub fn with_age(mut self, value: impl Into<String>) -> Self {
        self.age = Some(value.into());
        self
    }
}

/// Why a fetcher produced no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The deadline passed (connecting, waiting, or reading the body).
    #[error("the metadata fetch timed out")]
    Timeout,
    /// The server answered with a redirect, which is never followed.
    #[error("the metadata URL redirected (HTTP {status}); redirects are not followed")]
    Redirect {
        /// The 3xx status.
        status: u16,
    },
    /// The body (or its announced `Content-Length`) exceeds the cap.
    #[error("the metadata document exceeds {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The host resolves only to special-use addresses, or the connected
    /// peer is one.
    #[error("the metadata URL resolves to a special-use address")]
    BlockedAddress {
        /// The refused address, when known.
        address: Option<IpAddr>,
    },
    /// DNS resolution or the TCP connection failed.
    #[error("could not connect to the metadata host: {detail}")]
    Connect {
        /// What failed (no secrets: there are none in a fetch).
        detail: String,
    },
    /// The TLS handshake failed (e.g. an untrusted certificate).
    #[error("TLS failure fetching the metadata document: {detail}")]
    Tls {
        /// What failed.
        detail: String,
    },
    /// Any other failure of the fetcher.
    #[error("the metadata fetch failed: {detail}")]
    Other {
        /// What failed.
        detail: String,
    },
}

/// Fetches Client ID Metadata Documents. The crate ships one on reqwest
/// (feature `reqwest`); a host may supply its own.
///
/// # Security
///
/// The URL is chosen by a stranger, so an implementation MUST:
///
/// - refuse to connect to special-use addresses ([`super::is_special_use`]),
///   checked on the address actually connected to (or on every address DNS
///   returned, used for the connection itself), never on a separate
///   pre-flight lookup, which DNS rebinding defeats; IP-literal hosts too;
/// - never follow redirects: report a 3xx as [`FetchError::Redirect`] (or
///   return it as a response; the core refuses it);
/// - read at most [`FetchPlan::max_body_bytes`], refusing early on a larger
///   `Content-Length` and cutting a longer streamed body
///   ([`FetchError::TooLarge`]);
/// - finish within [`FetchPlan::timeout`] ([`FetchError::Timeout`]); the
///   driver has no timer of its own;
/// - send no cookies, credentials, client certificates or proxy
///   authorization, and use no proxy taken from the environment;
/// - speak `https` only, verifying the server certificate;
/// - send `Accept: application/json` ([`FetchPlan::accept`]).
///
/// Returning a response never makes a document acceptable: the core checks
/// the status, content type, size and content itself.
#[async_trait]
pub trait MetadataFetcher: Send + Sync {
    /// Performs one `GET` according to the plan.
    ///
    /// # Errors
    /// A [`FetchError`] when no complete response within the limits was
    /// received.
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError>;

    /// Whether this fetcher lets loopback targets through for local
    /// development (never in production). The driver's pre-flight check of
    /// IP-literal and `localhost` hosts follows it. Default: `false`.
    fn allows_loopback_for_development(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_defaults() {
        let plan = FetchPlan::new(
            ClientIdUrl::parse("https://claude.ai/oauth/mcp-oauth-client-metadata").unwrap(),
            Duration::from_secs(5),
        );
        assert_eq!(plan.accept(), "application/json");
        assert_eq!(plan.max_body_bytes(), 5120);
        assert!(!plan.follow_redirects());
        assert_eq!(plan.timeout(), Duration::from_secs(5));
    }

    #[test]
    fn response_from_http_parts() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
        h.append(http::header::CACHE_CONTROL, "public".parse().unwrap());
        h.append(http::header::CACHE_CONTROL, "max-age=60".parse().unwrap());
        h.insert(http::header::AGE, "5".parse().unwrap());
        let r = FetchResponse::from_parts(200, &h, b"{}".to_vec());
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.cache_control.as_deref(), Some("public, max-age=60"));
        assert_eq!(r.age.as_deref(), Some("5"));
        assert_eq!(r.expires, None);
    }
}
