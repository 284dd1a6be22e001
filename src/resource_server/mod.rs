//! The MCP server (resource server) side: [RFC 9728] protected resource
//! metadata, [RFC 6750] bearer extraction and `WWW-Authenticate`
//! challenges, and audience-checked token validation.
//!
//! An MCP client starts at the MCP server, not at the authorization
//! server. Without a token it gets a 401 whose challenge names the
//! protected resource metadata:
//!
//! ```text
//! WWW-Authenticate: Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
//! ```
//!
//! It reads that document ([`ProtectedResourceMetadata`]), finds the
//! authorization server, signs the user in with `resource` set to this
//! server, and comes back with a token whose `aud` must contain this
//! server's canonical resource URI ([`ResourceUri::canonical`]). A token
//! meant for another resource is refused (no token passthrough).
//!
//! The rules are pure and take `now` as an argument:
//! [`extract_bearer`] reads the token from the `Authorization` header only,
//! [`ProtectedResource::check`] applies expiry, audience and scope rules to
//! a [`VerifiedToken`], and [`ResourceServerError`] maps every refusal to a
//! status and a challenge in one place. A [`TokenVerifier`] turns a token
//! string into a [`VerifiedToken`]: [`crate::server::LocalTokenVerifier`] asks
//! an in-process authorization server; `net::IntrospectionVerifier` (feature
//! `reqwest`) asks an [RFC 7662] introspection endpoint. The `axum` feature
//! adds a middleware (module `resource_server::axum`).
//!
//! ## Example
//!
//! ```
//! use authio_mcp::issuer::Issuer;
//! use authio_mcp::resource::ResourceUri;
//! use authio_mcp::resource_server::{ProtectedResource, ProtectedResourceMetadata, ResourceServerError};
//! use authio_mcp::scope::ScopeSet;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let resource = ResourceUri::parse("https://mcp.example.com/mcp")?;
//! let metadata = ProtectedResourceMetadata::builder(&resource)
//!     .authorization_server(&Issuer::new("https://auth.example.com")?)
//!     .scopes(&ScopeSet::parse("mcp:read mcp:write")?)
//!     .resource_name("Example MCP server")
//!     .build();
//! assert_eq!(metadata.resource, "https://mcp.example.com/mcp");
//!
//! let guard = ProtectedResource::new(resource).require_scopes(ScopeSet::parse("mcp:read")?);
//! assert_eq!(guard.metadata_url(), "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
//! let refusal = guard.refusal(&ResourceServerError::MissingToken);
//! assert_eq!(refusal.status(), 401);
//! assert_eq!(
//!     refusal.headers()["www-authenticate"],
//!     "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
//! );
//! # Ok(()) }
//! ```
//!
//! [RFC 9728]: https://www.rfc-editor.org/rfc/rfc9728
//! [RFC 6750]: https://www.rfc-editor.org/rfc/rfc6750
//! [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bearer::BearerError;
pub use crate::error::BearerChallenge;
use crate::error::{ErrorCode, OAuthError};
use crate::issuer::{Issuer, well_known_url};
use crate::resource::ResourceUri;
use crate::scope::ScopeSet;
use crate::token::IntrospectionResponse;

#[cfg(feature = "axum")]
pub mod axum;
mod jwt;

pub use jwt::{JwksFetcher, JwtVerifier, JwtVerifierConfig, JwtVerifierError};

/// `oauth-protected-resource` ([RFC 9728 section 3]).
///
/// [RFC 9728 section 3]: https://www.rfc-editor.org/rfc/rfc9728#section-3
pub const WELL_KNOWN_OAUTH_PROTECTED_RESOURCE: &str = "oauth-protected-resource";

/// The longest bearer token accepted, in bytes. Longer values are refused
/// as malformed before any lookup.
pub const MAX_TOKEN_LEN: usize = crate::bearer::MAX_TOKEN_LEN;

/// The scope that asks for a refresh token: it belongs in the
/// authorization server's `scopes_supported`, never in a resource's.
const OFFLINE_ACCESS: &str = "offline_access";

/// The [RFC 9728] metadata URL of a resource: `/.well-known/oauth-protected-resource`
/// inserted between the host and the path (section 3.1), e.g.
/// `https://mcp.example.com/mcp` gives
/// `https://mcp.example.com/.well-known/oauth-protected-resource/mcp`.
///
/// Built from the resource as configured ([`ResourceUri::as_str`]), the
/// same string published as `resource`, as section 3.3 requires.
///
/// [RFC 9728]: https://www.rfc-editor.org/rfc/rfc9728
pub fn metadata_url(resource: &ResourceUri) -> String {
    well_known_url(resource.as_str(), WELL_KNOWN_OAUTH_PROTECTED_RESOURCE)
}

/// The path part of [`metadata_url`], for mounting the document on a
/// router: `/.well-known/oauth-protected-resource/mcp`.
pub fn metadata_path(resource: &ResourceUri) -> String {
    path_of_metadata_url(&metadata_url(resource))
}

fn path_of_metadata_url(url: &str) -> String {
    match url.find("/.well-known/") {
        Some(i) => url.get(i..).unwrap_or_default().to_owned(),
        None => format!("/.well-known/{WELL_KNOWN_OAUTH_PROTECTED_RESOURCE}"),
    }
}

/// [RFC 9728] protected resource metadata (section 2), as published at
/// [`metadata_url`]. Optional members that are empty are omitted.
///
/// [RFC 9728]: https://www.rfc-editor.org/rfc/rfc9728
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// `resource` (REQUIRED): the resource identifier, identical to the
    /// one the metadata URL was built from.
    pub resource: String,
    /// `authorization_servers`: issuer identifiers of the authorization
    /// servers that issue tokens for this resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// `scopes_supported`: scopes this resource understands. Never
    /// `offline_access`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// `bearer_methods_supported`: `["header"]` ([RFC 6750 section 2.1]
    /// only; query and body tokens are refused).
    ///
    /// [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    /// `resource_name`: a human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// `resource_documentation`: a page for developers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// `resource_policy_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy_uri: Option<String>,
    /// `resource_tos_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_tos_uri: Option<String>,
}

impl ProtectedResourceMetadata {
    /// A builder for the metadata of `resource`.
    pub fn builder(resource: &ResourceUri) -> ProtectedResourceMetadataBuilder {
        ProtectedResourceMetadataBuilder {
            metadata: Self {
                resource: resource.as_str().to_owned(),
                authorization_servers: Vec::new(),
                scopes_supported: Vec::new(),
                bearer_methods_supported: vec!["header".to_owned()],
                resource_name: None,
                resource_documentation: None,
                resource_policy_uri: None,
                resource_tos_uri: None,
            },
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The URL this document is served at ([`metadata_url`] of `resource`).
    pub fn url(&self) -> String {
        well_known_url(&self.resource, WELL_KNOWN_OAUTH_PROTECTED_RESOURCE)
    }

    /// The path part of [`ProtectedResourceMetadata::url`], for routing.
    pub fn path(&self) -> String {
        path_of_metadata_url(&self.url())
    }
}

/// Builds a [`ProtectedResourceMetadata`].
#[derive(Clone, Debug)]
pub struct ProtectedResourceMetadataBuilder {
    metadata: ProtectedResourceMetadata,
}

impl ProtectedResourceMetadataBuilder {
    /// Adds an authorization server (its issuer identifier).
    #[must_use]
    pub fn authorization_server(mut self, issuer: &Issuer) -> Self {
        let issuer = issuer.as_str().to_owned();
        if !self.metadata.authorization_servers.contains(&issuer) {
            self.metadata.authorization_servers.push(issuer);
        }
        self
    }

    /// Sets `scopes_supported`. `offline_access` is dropped: it is the
    /// authorization server's business, not the resource's.
    #[must_use]
    pub fn scopes(mut self, scopes: &ScopeSet) -> Self {
        self.metadata.scopes_supported = scopes
            .iter()
            .map(|s| s.as_str())
            .filter(|s| *s != OFFLINE_ACCESS)
            .map(str::to_owned)
            .collect();
        self
    }

    /// Sets `resource_name`.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.metadata.resource_name = Some(name.into());
        self
    }

    /// Sets `resource_documentation`.
    #[must_use]
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.metadata.resource_documentation = Some(url.into());
        self
    }

    /// Sets `resource_policy_uri`.
    #[must_use]
    pub fn resource_policy_uri(mut self, url: impl Into<String>) -> Self {
        self.metadata.resource_policy_uri = Some(url.into());
        self
    }

    /// Sets `resource_tos_uri`.
    #[must_use]
    pub fn resource_tos_uri(mut self, url: impl Into<String>) -> Self {
        self.metadata.resource_tos_uri = Some(url.into());
        self
    }

    /// The metadata.
    pub fn build(self) -> ProtectedResourceMetadata {
        self.metadata
    }
}

/// Why a request to a protected resource was refused. Each variant maps
/// to one status and one challenge ([`ResourceServerError::status`],
/// [`ResourceServerError::challenge`]); variants are in [RFC 6750 section
/// 3.1] order.
///
/// [RFC 6750 section 3.1]: https://www.rfc-editor.org/rfc/rfc6750#section-3.1
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceServerError {
    /// No credentials, or credentials of another scheme: 401 with a
    /// challenge carrying no error code ([RFC 6750 section 3.1]).
    ///
    /// [RFC 6750 section 3.1]: https://www.rfc-editor.org/rfc/rfc6750#section-3.1
    #[error("the request carries no bearer token")]
    MissingToken,
    /// An `Authorization: Bearer` header that is malformed, or several
    /// `Authorization` headers: 400 `invalid_request`.
    #[error("the Authorization header is malformed")]
    MalformedAuthorization,
    /// An `access_token` query parameter ([RFC 6750 section 2.3]; the MCP
    /// specification forbids it): 400 `invalid_request`.
    ///
    /// [RFC 6750 section 2.3]: https://www.rfc-editor.org/rfc/rfc6750#section-2.3
    #[error("access tokens are not accepted in the query string")]
    TokenInQuery,
    /// An `access_token` form-body parameter ([RFC 6750 section 2.2]): 400
    /// `invalid_request`.
    ///
    /// [RFC 6750 section 2.2]: https://www.rfc-editor.org/rfc/rfc6750#section-2.2
    #[error("access tokens are not accepted in the request body")]
    TokenInBody,
    /// Unknown, revoked, or otherwise not active: 401 `invalid_token`.
    #[error("the access token is not active")]
    Inactive,
    /// A refresh token presented as an access token: 401 `invalid_token`.
    #[error("the token is not an access token")]
    NotAnAccessToken,
    /// Active but without the claims a resource needs (`sub`,
    /// `client_id`), or with a malformed `scope`: 401 `invalid_token`.
    #[error("the access token lacks required claims")]
    IncompleteClaims,
    /// Past its `exp`: 401 `invalid_token`.
    #[error("the access token has expired")]
    Expired,
    /// The audience does not contain this resource (no token
    /// passthrough): 401 `invalid_token`.
    #[error("the access token was not issued for this resource")]
    WrongAudience,
    /// The introspection response names another issuer than the one this
    /// resource trusts: 401 `invalid_token`.
    #[error("the access token was issued by another authorization server")]
    WrongIssuer,
    /// Valid, but without every required scope: 403 `insufficient_scope`
    /// naming the scopes needed.
    #[error("the access token lacks the required scope")]
    InsufficientScope {
        /// Every scope the operation needs, in one challenge (the ones the
        /// token carries among them too, not only the missing ones).
        required: ScopeSet,
    },
    /// The verifier could not find out (storage or introspection
    /// failure): 500 `server_error`. Never treated as an active token.
    #[error("the access token could not be verified")]
    Unavailable,
}

impl ResourceServerError {
    /// The [RFC 6750] error code; `None` when the token is absent.
    ///
    /// [RFC 6750]: https://www.rfc-editor.org/rfc/rfc6750
    pub const fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::MissingToken => None,
            Self::MalformedAuthorization | Self::TokenInQuery | Self::TokenInBody => Some(ErrorCode::InvalidRequest),
            Self::Inactive
            | Self::NotAnAccessToken
            | Self::IncompleteClaims
            | Self::Expired
            | Self::WrongAudience
            | Self::WrongIssuer => Some(ErrorCode::InvalidToken),
            Self::InsufficientScope { .. } => Some(ErrorCode::InsufficientScope),
            Self::Unavailable => Some(ErrorCode::ServerError),
        }
    }

    /// The HTTP status: 400, 401, 403 or 500.
    pub const fn status(&self) -> StatusCode {
        match self.code() {
            None => StatusCode::UNAUTHORIZED,
            Some(code) => code.status(),
        }
    }

    /// The `error_description` sent to the client, if any.
    pub const fn description(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken | Self::Unavailable | Self::InsufficientScope { .. } => None,
            Self::MalformedAuthorization => Some("the Authorization header is malformed"),
            Self::TokenInQuery => Some("access tokens are accepted only in the Authorization header"),
            Self::TokenInBody => Some("access tokens are accepted only in the Authorization header"),
            Self::Inactive | Self::NotAnAccessToken | Self::IncompleteClaims | Self::WrongIssuer => {
                Some("the access token is invalid or has been revoked")
            }
            Self::Expired => Some("the access token has expired"),
            Self::WrongAudience => Some("the access token was not issued for this resource"),
        }
    }

    /// The `WWW-Authenticate` challenge, pointing at `resource_metadata`;
    /// `None` for [`ResourceServerError::Unavailable`] (not an
    /// authentication failure).
    pub fn challenge(&self, resource_metadata: &str) -> Option<BearerChallenge> {
        if matches!(self, Self::Unavailable) {
            return None;
        }
        let mut c = BearerChallenge::new().resource_metadata(resource_metadata);
        if let Some(code) = self.code() {
            c = c.error(code);
        }
        if let Some(d) = self.description() {
            c = c.description(d);
        }
        if let Self::InsufficientScope { required } = self {
            c = c.scope(required);
        }
        Some(c)
    }

    /// The complete response: status, JSON error body (empty when the
    /// token is absent), `Cache-Control: no-store` and the challenge.
    pub fn to_response(&self, resource_metadata: &str) -> http::Response<Vec<u8>> {
        let body = match self.code() {
            None => Vec::new(),
            Some(ErrorCode::ServerError) => OAuthError::new(ErrorCode::ServerError).to_json(),
            Some(code) => match self.description() {
                Some(d) => OAuthError::with_description(code, d).to_json(),
                None => OAuthError::new(code).to_json(),
            },
        };
        let mut r = http::Response::new(body);
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        if self.code().is_some() {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.challenge(resource_metadata)
            && let Ok(v) = HeaderValue::from_str(&c.to_string())
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

impl BearerChallenge {
    /// Sets `scope` (space-delimited). `offline_access` is left out: it
    /// is the authorization server's, never a resource's.
    #[must_use]
    pub fn scope(self, scopes: &ScopeSet) -> Self {
        let mut kept = ScopeSet::new();
        for s in scopes.iter().filter(|s| s.as_str() != OFFLINE_ACCESS) {
            kept.insert(s.clone());
        }
        self.with_scope_string(kept.to_string())
    }
}

/// Reads the bearer token of a request: from the `Authorization` header
/// only ([RFC 6750 section 2.1]).
///
/// - an `access_token` query parameter is refused
///   ([`ResourceServerError::TokenInQuery`]), with or without a header;
/// - no `Authorization` header, or one with another scheme, is
///   [`ResourceServerError::MissingToken`];
/// - several `Authorization` headers, a `Bearer` header without a token,
///   a token that is not `b64token` syntax or longer than
///   [`MAX_TOKEN_LEN`] is [`ResourceServerError::MalformedAuthorization`].
///
/// A token in a form body cannot be seen here: see
/// [`form_body_has_access_token`].
///
/// # Errors
/// The refusal, as above.
///
/// [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
pub fn extract_bearer<'a>(headers: &'a HeaderMap, uri: &Uri) -> Result<&'a str, ResourceServerError> {
    if let Some(query) = uri.query()
        && url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "access_token")
    {
        return Err(ResourceServerError::TokenInQuery);
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ResourceServerError::MissingToken);
    };
    if values.next().is_some() {
        return Err(ResourceServerError::MalformedAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| ResourceServerError::MalformedAuthorization)?;
    crate::bearer::parse(value).map_err(|e| match e {
        // Another scheme: the client did not know a bearer token was
        // needed (RFC 6750 section 3.1: no error code).
        BearerError::OtherScheme => ResourceServerError::MissingToken,
        BearerError::Malformed => ResourceServerError::MalformedAuthorization,
    })
}

/// Whether a request body carries an `access_token` form parameter ([RFC
/// 6750 section 2.2]), which a resource server accepting only the header
/// method must refuse with [`ResourceServerError::TokenInBody`]. Only an
/// `application/x-www-form-urlencoded` body can carry one.
///
/// [RFC 6750 section 2.2]: https://www.rfc-editor.org/rfc/rfc6750#section-2.2
pub fn form_body_has_access_token(content_type: Option<&str>, body: &[u8]) -> bool {
    is_form(content_type) && url::form_urlencoded::parse(body).any(|(k, _)| k == "access_token")
}

/// Whether a `Content-Type` is `application/x-www-form-urlencoded`.
pub fn is_form(content_type: Option<&str>) -> bool {
    crate::media_type::MediaType::Form.matches(content_type)
}

/// What a verified access token says: who, which client, which scopes,
/// for which resources, until when. Handlers receive this; it never holds
/// the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// `sub`: the user.
    pub subject: String,
    /// `client_id`: the MCP client.
    pub client_id: String,
    /// `scope`.
    pub scopes: ScopeSet,
    /// `aud`, as issued.
    pub audiences: Vec<String>,
    /// `exp`, if the authorization server gave one.
    pub expires_at: Option<OffsetDateTime>,
}

impl VerifiedToken {
    /// A verified token from its parts.
    pub const fn new(
        subject: String,
        client_id: String,
        scopes: ScopeSet,
        audiences: Vec<String>,
        expires_at: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            subject,
            client_id,
            scopes,
            audiences,
            expires_at,
        }
    }

    /// Reads an [RFC 7662] introspection response: it must be active, not a
    /// refresh token, and carry `sub`, `client_id` and a well-formed
    /// `scope` (absent means none). Expiry, audience and scopes are checked
    /// later, by [`ProtectedResource::check`].
    ///
    /// # Errors
    /// [`ResourceServerError::Inactive`],
    /// [`ResourceServerError::NotAnAccessToken`] or
    /// [`ResourceServerError::IncompleteClaims`].
    ///
    /// [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
    pub fn from_introspection(r: &IntrospectionResponse) -> Result<Self, ResourceServerError> {
        Self::from_introspection_by(r, None)
    }

    /// Like [`VerifiedToken::from_introspection`], and when `issuer` is
    /// given, the response's `iss` must equal it exactly (a missing `iss`
    /// is refused too).
    ///
    /// # Errors
    /// [`ResourceServerError::WrongIssuer`], or the errors of
    /// [`VerifiedToken::from_introspection`].
    pub fn from_introspection_by(r: &IntrospectionResponse, issuer: Option<&str>) -> Result<Self, ResourceServerError> {
        if !r.active {
            return Err(ResourceServerError::Inactive);
        }
        if let Some(expected) = issuer
            && r.iss.as_deref() != Some(expected)
        {
            return Err(ResourceServerError::WrongIssuer);
        }
        if r.token_type.as_deref() == Some("refresh_token") {
            return Err(ResourceServerError::NotAnAccessToken);
        }
        let (Some(subject), Some(client_id)) = (&r.sub, &r.client_id) else {
            return Err(ResourceServerError::IncompleteClaims);
        };
        let scopes = match &r.scope {
            Some(s) => ScopeSet::parse(s).map_err(|_| ResourceServerError::IncompleteClaims)?,
            None => ScopeSet::new(),
        };
        let expires_at = match r.exp {
            Some(exp) => {
                Some(OffsetDateTime::from_unix_timestamp(exp).map_err(|_| ResourceServerError::IncompleteClaims)?)
            }
            None => None,
        };
        Ok(Self {
            subject: subject.clone(),
            client_id: client_id.clone(),
            scopes,
            audiences: r.aud.clone().unwrap_or_default(),
            expires_at,
        })
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|exp| now >= exp)
    }

    /// Whether `aud` contains `resource`, compared by canonical form.
    pub fn is_for(&self, resource: &ResourceUri) -> bool {
        self.audiences
            .iter()
            .any(|a| ResourceUri::parse(a.as_str()).is_ok_and(|r| r.canonical() == resource.canonical()))
    }

    /// Checks that the token carries every scope in `required` (for a
    /// per-tool or per-route requirement).
    ///
    /// # Errors
    /// [`ResourceServerError::InsufficientScope`] naming, in one challenge,
    /// every scope the operation needs (MCP 2026-07-28, scope challenge
    /// handling: all required scopes at once, not only the missing ones;
    /// accumulating previously granted scopes is the client's job), never
    /// `offline_access`, which is not a resource's scope.
    pub fn require_scopes(&self, required: &ScopeSet) -> Result<(), ResourceServerError> {
        if required.is_subset_of(&self.scopes) {
            return Ok(());
        }
        let mut all = ScopeSet::new();
        for s in required.iter().filter(|s| s.as_str() != OFFLINE_ACCESS) {
            all.insert(s.clone());
        }
        Err(ResourceServerError::InsufficientScope { required: all })
    }
}

/// Turns a bearer token into a [`VerifiedToken`].
///
/// # Security
/// An implementation returns `Ok` only for a token it has confirmed as
/// active; a lookup that fails (storage error, unreachable or
/// misbehaving introspection endpoint) is
/// [`ResourceServerError::Unavailable`], never a success. It must not log
/// or store the raw token (a cache keys on its hash). The caller applies
/// expiry, audience and scope rules afterwards
/// ([`ProtectedResource::check`]), whatever the verifier did.
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Verifies `token` at `now`.
    ///
    /// # Errors
    /// A [`ResourceServerError`]: an `invalid_token` variant, or
    /// [`ResourceServerError::Unavailable`].
    async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedToken, ResourceServerError>;
}

/// One protected resource (an MCP server endpoint): its identifier, its
/// metadata URL and the scopes every request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedResource {
    resource: ResourceUri,
    metadata_url: String,
    required_scopes: ScopeSet,
}

impl ProtectedResource {
    /// The resource `resource`, requiring no scope.
    pub fn new(resource: ResourceUri) -> Self {
        Self {
            metadata_url: metadata_url(&resource),
            resource,
            required_scopes: ScopeSet::new(),
        }
    }

    /// Requires `scopes` on every request.
    #[must_use]
    pub fn require_scopes(mut self, scopes: ScopeSet) -> Self {
        self.required_scopes = scopes;
        self
    }

    /// The resource identifier.
    pub const fn resource(&self) -> &ResourceUri {
        &self.resource
    }

    /// The [RFC 9728] metadata URL named in every challenge.
    ///
    /// [RFC 9728]: https://www.rfc-editor.org/rfc/rfc9728
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The scopes every request needs.
    pub const fn required_scopes(&self) -> &ScopeSet {
        &self.required_scopes
    }

    /// Applies the resource's rules to a verified token at `now`: not
    /// expired, audience containing this resource's canonical URI, every
    /// required scope present, in that order.
    ///
    /// # Errors
    /// [`ResourceServerError::Expired`],
    /// [`ResourceServerError::WrongAudience`] or
    /// [`ResourceServerError::InsufficientScope`].
    pub fn check(&self, token: VerifiedToken, now: OffsetDateTime) -> Result<VerifiedToken, ResourceServerError> {
        if token.is_expired(now) {
            return Err(ResourceServerError::Expired);
        }
        if !token.is_for(&self.resource) {
            return Err(ResourceServerError::WrongAudience);
        }
        token.require_scopes(&self.required_scopes)?;
        Ok(token)
    }

    /// The whole decision for one request: extract the bearer token
    /// ([`extract_bearer`]), verify it, [`check`](Self::check) it.
    ///
    /// # Errors
    /// The refusal; render it with [`ProtectedResource::refusal`].
    pub async fn authorize(
        &self,
        verifier: &dyn TokenVerifier,
        headers: &HeaderMap,
        uri: &Uri,
        now: OffsetDateTime,
    ) -> Result<VerifiedToken, ResourceServerError> {
        let token = extract_bearer(headers, uri)?;
        let verified = verifier.verify(token, now).await?;
        self.check(verified, now)
    }

    /// The response for a refusal, with this resource's challenge.
    pub fn refusal(&self, e: &ResourceServerError) -> http::Response<Vec<u8>> {
        e.to_response(&self.metadata_url)
    }
}

#[cfg(test)]
mod tests;
