//! The example MCP server's application: an rmcp Streamable HTTP server
//! with one tool, `whoami`, behind `authio_mcp`'s bearer middleware
//! (tokens checked locally as JWTs, or by introspection), plus its RFC
//! 9728 protected resource metadata. Shared with the end-to-end tests.

#![allow(unreachable_pub)]

use std::sync::Arc;

use authio_mcp::discovery::Issuer;
use authio_mcp::net::{IntrospectionVerifier, ReqwestJwksFetcher};
use authio_mcp::resource::ResourceUri;
use authio_mcp::resource_server::axum::{BearerAuth, metadata_router, require_bearer};
use authio_mcp::resource_server::{
    JwtVerifier, JwtVerifierError, ProtectedResource, ProtectedResourceMetadata, TokenVerifier, VerifiedToken,
};
use authio_mcp::scope::ScopeSet;
use authio_mcp::secret::SecretString;
use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};

/// The scopes the MCP server publishes.
pub const SCOPES_SUPPORTED: &str = "mcp:read mcp:write";
/// The scope every request needs.
pub const REQUIRED_SCOPE: &str = "mcp:read";

/// How the MCP server checks access tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Locally, as RFC 9068 JWTs against the authorization server's JWKS
    /// at this URL: no call to the authorization server per request, but a
    /// revoked token stays valid until it expires.
    Jwt {
        /// The authorization server's `jwks_uri`.
        jwks_uri: String,
    },
    /// By RFC 7662 introspection (cached 30 s at most).
    Introspection,
}

/// What the MCP server is configured with.
#[derive(Clone)]
pub struct Config {
    /// This server's resource identifier, `http://<listen>/mcp`.
    pub resource: ResourceUri,
    /// The authorization server's issuer.
    pub issuer: Issuer,
    /// The authorization server's RFC 7662 endpoint.
    pub introspection_endpoint: String,
    /// The credential the authorization server accepts there.
    pub introspection_token: String,
    /// How tokens are checked.
    pub verify: Verify,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("resource", &self.resource)
            .field("issuer", &self.issuer)
            .field("introspection_endpoint", &self.introspection_endpoint)
            .field("introspection_token", &"[redacted]")
            .field("verify", &self.verify)
            .finish()
    }
}

impl Config {
    /// `resource` on `issuer`, introspecting at `<issuer>/oauth2/introspect`.
    pub fn new(resource: ResourceUri, issuer: Issuer, introspection_token: String) -> Self {
        Self {
            introspection_endpoint: issuer.endpoint("/oauth2/introspect"),
            resource,
            issuer,
            introspection_token,
            verify: Verify::Introspection,
        }
    }

    /// Checks tokens as `verify` says.
    #[must_use]
    pub fn verify(mut self, verify: Verify) -> Self {
        self.verify = verify;
        self
    }
}

/// The `jwks_uri` the authorization server publishes in its RFC 8414
/// metadata, if any (its `issuer` must be `issuer`).
///
/// # Errors
/// The metadata could not be fetched or names another issuer.
pub async fn discover_jwks_uri(issuer: &Issuer) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
    let fetcher = Arc::new(ReqwestJwksFetcher::new(&[])?);
    let probe = ResourceUri::parse("https://probe.invalid/")?;
    match JwtVerifier::discover(issuer, probe, fetcher).await {
        Ok(v) => Ok(Some(v.jwks_uri().to_owned())),
        Err(JwtVerifierError::NoJwksUri) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The router: the protected MCP endpoint at the resource's path and the
/// metadata at `/.well-known/oauth-protected-resource<path>`.
pub fn router(config: &Config) -> Result<Router, Box<dyn std::error::Error + Send + Sync>> {
    let url = url::Url::parse(config.resource.as_str())?;
    let verifier: Arc<dyn TokenVerifier> = match &config.verify {
        Verify::Jwt { jwks_uri } => Arc::new(JwtVerifier::new(
            &config.issuer,
            config.resource.clone(),
            jwks_uri.clone(),
            Arc::new(ReqwestJwksFetcher::new(&[])?),
        )),
        Verify::Introspection => Arc::new(
            IntrospectionVerifier::new(
                config.introspection_endpoint.clone(),
                SecretString::from(config.introspection_token.as_str()),
            )?
            .issuer(&config.issuer),
        ),
    };
    let metadata = ProtectedResourceMetadata::builder(&config.resource)
        .authorization_server(&config.issuer)
        .scopes(&ScopeSet::parse(SCOPES_SUPPORTED)?)
        .resource_name("authio-mcp example MCP server")
        .build();
    let protected = ProtectedResource::new(config.resource.clone()).require_scopes(ScopeSet::parse(REQUIRED_SCOPE)?);
    let auth = BearerAuth::new(protected, verifier);

    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(host) = url.host_str() {
        hosts.push(host.to_owned());
    }
    let mcp = StreamableHttpService::new(
        || Ok(Whoami::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts),
    );
    Ok(Router::new()
        .route_service(url.path(), mcp)
        .layer(axum::middleware::from_fn_with_state(auth, require_bearer))
        .merge(metadata_router(&metadata)))
}

/// The MCP server: one tool.
#[derive(Debug, Clone)]
pub struct Whoami {
    tool_router: ToolRouter<Self>,
}

impl Whoami {
    /// A server instance (one per session).
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

impl Default for Whoami {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl Whoami {
    /// The caller, as the access token says.
    #[tool(description = "Who is calling: the signed-in user, the MCP client and the granted scopes")]
    fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> Result<String, ErrorData> {
        // The bearer middleware put the verified token in the request.
        let token = parts
            .extensions
            .get::<VerifiedToken>()
            .ok_or_else(|| ErrorData::internal_error("no verified token on the request", None))?;
        let scopes: Vec<&str> = token.scopes.iter().map(|s| s.as_str()).collect();
        Ok(serde_json::json!({
            "subject": token.subject,
            "client_id": token.client_id,
            "scopes": scopes,
        })
        .to_string())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Whoami {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Call whoami to see who the access token belongs to.")
    }
}
