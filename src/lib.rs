//! # authio-mcp
//!
//! The authorization-server core that lets MCP clients (Claude, ChatGPT,
//! VS Code, Cursor, custom agents) sign users in to a Rust service with
//! OAuth 2.1: Client ID Metadata Documents as the primary client identity,
//! Dynamic Client Registration gated by initial access tokens as the
//! fallback, mandatory S256 PKCE, exact redirect URIs and [RFC 8707]
//! resource indicators, per project.
//!
//! ## Architecture
//!
//! ```text
//!  host (axum / hyper / actix / lambda ...)
//!    |  http::Request<Bytes>          http::Response<Vec<u8>>
//!  [ server ]  AuthorizationServer: async driver, one method per endpoint,
//!    |         sequences the traits below, decides nothing itself
//!    |-- store traits: ProjectStore, ClientStore, AuditSink, KeyStore,
//!    |                 ReplayStore, ...
//!    |-- store::memory: in-memory implementations (the default)
//!  [ core ]    pure, synchronous, deterministic protocol rules:
//!              error, project, discovery, pkce, resource, redirect_uri,
//!              scope, client, cimd, audit, secret, keys (rotation),
//!              jwt (RFC 9068 / OIDC / RFC 7523 claim rules)
//!  [ jose ]    the one module that touches the JOSE crate: keys, JWKs,
//!              signing and verification
//!  [ resource_server ]  the MCP server side: RFC 9728 metadata,
//!              bearer challenges, audience-checked token validation
//!  [ pages ]   consent and error pages through a `PageRenderer`
//!              (built-in `DefaultPages`), showing the `presentation`
//!              a pending authorization carries: verified facts first
//! ```
//!
//! The core does no I/O, reads no clock and draws no randomness: every
//! function that needs the time or random bytes takes them as arguments.
//! The driver gets them from an injected [`server::Clock`] and
//! [`server::RandomSource`], so tests run whole flows with a fixed clock
//! and a seeded generator.
//!
//! ## MCP authorization 2026-07-28: the server side
//!
//! What the authorization, client-registration and security-considerations
//! pages of the MCP 2026-07-28 revision ask of an authorization server (and
//! of the resource-server half), and where this crate holds it:
//!
//! | rule | where |
//! |---|---|
//! | OAuth 2.1 for public and confidential clients; S256 PKCE, `code_challenge_methods_supported` in both discovery documents (MUST) | [`pkce`], [`discovery`] |
//! | CIMD supported (SHOULD): `client_id` equals the fetched URL, redirect URIs validated against the document, structure validated, cache headers respected, SSRF defences (MUST / SHOULD) | [`cimd`] |
//! | DCR kept for backwards compatibility (deprecated, MAY) | [`dcr`], [`tokenless`] |
//! | `iss` in every authorization response, errors included, and `authorization_response_iss_parameter_supported: true` (SHOULD, MUST when sent) | [`authorize::RedirectError::location`], [`discovery`] |
//! | exact redirect-URI matching (MUST); only the loopback port may vary | [`redirect_uri`] |
//! | redirect URIs are `localhost` or `https` (MUST): held in [`project::ProjectSettings::strict_mode`]; by default private-use schemes are also accepted for native clients ([RFC 8252 section 7.1]), named and warned about on the consent page | [`redirect_uri::RedirectUriPolicy`] |
//! | the redirect URI's host shown at consent (MUST), extra warning for localhost-only clients (SHOULD) | [`authorize::PendingAuthorization`], [`presentation`], [`pages`] |
//! | refresh tokens rotated for public clients (MUST); short-lived access tokens (SHOULD) | [`token`], [`project::SettingsLint`] |
//! | `offline_access` may be in the server's `scopes_supported`, never in a resource's metadata or challenges (SHOULD NOT) | [`authorize::resolve_scopes`], [`resource_server`] |
//! | `resource` bound to the grant and the token's audience; resources compared in canonical form | [`resource`], [`token`] |
//! | resource servers: audience-checked validation, 401 with `resource_metadata`, 403 `insufficient_scope` naming every scope the operation needs in one challenge, no token passthrough (MUST / SHOULD) | [`resource_server`] |
//! | client credentials extension (`io.modelcontextprotocol/oauth-client-credentials`) | [`token::check_client_credentials`] |
//!
//! Not applicable or not held: scope hierarchies (a broader scope implying
//! narrower ones; this crate's scopes are flat, so a resource server with a
//! hierarchy checks it itself). `private_key_jwt` client assertions are
//! verified ([`client::VERIFIES_PRIVATE_KEY_JWT`]).
//!
//! ## Example
//!
//! ```
//! use authio_mcp::issuer::Issuer;
//! use authio_mcp::project::{ProjectId, ProjectSettings};
//! use authio_mcp::scope::ScopeSet;
//! use authio_mcp::server::AuthorizationServer;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = AuthorizationServer::builder(Issuer::new("https://auth.example.com")?).build();
//! let project = ProjectId::new("proj_acme_prod")?;
//! let mut settings = ProjectSettings::default();
//! settings.scopes_supported = ScopeSet::parse("openid email mcp:read mcp:write")?;
//! server.put_project(&project, settings).await?;
//!
//! // The dashboard's "MCP enabled" checkbox, with its cascade.
//! let (_settings, changes) = server.set_mcp_enabled(&project, true).await?;
//! assert_eq!(changes.len(), 3);
//!
//! let metadata = server.metadata(&project).await?;
//! // CIMD is advertised only when a metadata fetcher is configured: feature
//! // `reqwest` provides one by default; otherwise see `metadata_fetcher`.
//! assert_eq!(metadata.client_id_metadata_document_supported, cfg!(feature = "reqwest"));
//! assert_eq!(metadata.registration_endpoint.as_deref(), Some("https://auth.example.com/oauth2/register"));
//! # Ok(()) }
//! # futures_executor::block_on(demo()).unwrap();
//! ```
//!
//! [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707
//! [RFC 8252 section 7.1]: https://www.rfc-editor.org/rfc/rfc8252#section-7.1

pub mod audit;
pub mod authorize;
#[cfg(feature = "axum")]
pub mod axum;
mod bearer;
pub mod cimd;
mod claims;
pub mod client;
pub mod client_auth;
mod client_id_url;
pub mod dcr;
pub mod discovery;
mod display_text;
pub mod error;
pub mod grant;
pub mod http;
pub mod issuer;
pub mod jose;
pub mod jwt;
pub mod keys;
mod media_type;
pub mod metrics;
#[cfg(feature = "reqwest")]
pub mod net;
mod newtype;
pub mod pages;
pub mod pkce;
pub mod presentation;
pub mod project;
mod project_id;
pub mod redirect_uri;
pub mod resource;
pub mod resource_server;
pub mod scope;
pub mod secret;
pub mod server;
pub mod store;
pub mod token;
pub mod tokenless;
pub mod trace;
pub mod upstream;
mod weburl;

pub use error::{ErrorCode, OAuthError};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
