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
    /// The URL is not `https` (or loopback `http` when allowed), or its
    /// host is or resolves to a special-use address.
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
/// They MUST refuse to connect to [RFC 6890] special-use addresses
/// ([`crate::cimd::is_special_use`]: loopback, private, link-local and
/// cloud metadata, ...), judged on the address actually connected to
/// (IP literals, and every address a name resolves to, against DNS
/// rebinding), answering [`UpstreamHttpError::UrlRefused`]: the issuer is
/// a project setting and the endpoints are whatever its discovery
/// document names, so without this any project administrator (or
/// provider) could make the server probe its internal network, or POST a
/// client credential there. Only a development switch may let loopback
/// through.
/// The URLs are the operator's configured issuer and the endpoints its
/// discovery document names; the `authorization` value is a client secret
/// and the bearer token an access token: neither may ever be logged.
///
/// [RFC 6890]: https://www.rfc-editor.org/rfc/rfc6890
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
    /// Bearer <token>` ([RFC 6750 section 2.1]): the userinfo request.
    ///
    /// # Errors
    /// An [`UpstreamHttpError`].
    ///
    /// [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
    async fn get_with_bearer(&self, url: &str, token: &SecretString) -> Result<HttpResponse, UpstreamHttpError>;
}
