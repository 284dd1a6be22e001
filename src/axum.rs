//! An axum [`Router`] mounting every endpoint of [`OAuthEndpoints`]
//! (feature `axum`).
//!
//! The host keeps login and consent: a valid authorization request is
//! handed to its [`ConsentHandler`], which shows a page, authenticates the
//! user and later calls [`OAuthEndpoints::approve`] or
//! [`OAuthEndpoints::deny`].
//!
//! Pages are themeable: the router renders every error page with the
//! endpoints' [`crate::pages::PageRenderer`] (set it with
//! [`OAuthEndpoints::with_pages`]; [`crate::pages::DefaultPages`] by
//! default), and a consent handler renders its page with the same
//! renderer through [`OAuthEndpoints::consent_page`] and a
//! [`crate::pages::ConsentView`] of the pending authorization.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::request::Parts;

use crate::authorize::PendingAuthorization;
use crate::http::{AuthorizeResponse, OAuthEndpoints, UpstreamCallbackResponse};
use crate::server::SignedIn;

/// The host's login and consent step.
#[async_trait]
pub trait ConsentHandler: Send + Sync {
    /// Called with a validated authorization request; returns the page (or
    /// redirect) to show. Keep `pending` server-side. Show at least what
    /// [`PendingAuthorization::presentation`] holds, verified facts first;
    /// [`OAuthEndpoints::consent_page`] renders it with the endpoints'
    /// page renderer.
    async fn consent(
        &self,
        endpoints: &OAuthEndpoints,
        pending: PendingAuthorization,
        parts: &Parts,
    ) -> http::Response<Vec<u8>>;

    /// Called when a user signed in at an upstream provider and their
    /// consent is needed (no remembered consent covers the request).
    /// Show a consent page naming the client and the signed-in user (do
    /// not ask who they are), then call
    /// [`OAuthEndpoints::approve_signed_in`] or [`OAuthEndpoints::deny`].
    ///
    /// The default fails closed: the user is sent back to the client with
    /// `access_denied` (a host that configures upstream providers
    /// implements this).
    async fn consent_signed_in(
        &self,
        endpoints: &OAuthEndpoints,
        signed_in: SignedIn,
        _parts: &Parts,
    ) -> http::Response<Vec<u8>> {
        endpoints.deny(&signed_in.pending).await
    }
}

/// Paths the router mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterPaths {
    /// The authorization endpoint (the project's configured path).
    pub authorize: String,
    /// Token endpoint.
    pub token: String,
    /// Registration endpoint.
    pub registration: String,
    /// The CIMD preview endpoint (default `/oauth2/cimd/resolve`).
    pub cimd_resolve: String,
    /// Revocation endpoint.
    pub revocation: String,
    /// Introspection endpoint.
    pub introspection: String,
    /// The JWK Set (`/.well-known/jwks.json`).
    pub jwks: String,
    /// The OpenID Connect userinfo endpoint.
    pub userinfo: String,
    /// The prefix of the upstream-login endpoints
    /// (`<prefix>/{provider}/authorize` and `<prefix>/{provider}/callback`),
    /// default `/v1/auth/oauth`; `None` mounts none.
    pub upstream: Option<String>,
}

impl RouterPaths {
    /// The server's endpoint paths ([`crate::server::AuthorizationServer::paths`],
    /// where every path is defined), with `authorize` as the authorization
    /// endpoint.
    pub fn new(endpoints: &OAuthEndpoints, authorize: impl Into<String>) -> Self {
        let p = endpoints.server().paths();
        Self {
            authorize: authorize.into(),
            token: p.token.clone(),
            registration: p.registration.clone(),
            cimd_resolve: p.cimd_resolve.clone(),
            revocation: p.revocation.clone(),
            introspection: p.introspection.clone(),
            jwks: p.jwks.clone(),
            userinfo: p.userinfo.clone(),
            upstream: Some(p.upstream.clone()),
        }
    }
}

/// What every handler shares, behind one `Arc`: axum clones a handler's
/// state for each request, and cloning [`OAuthEndpoints`] itself would
/// take a reference on each of its many shared parts.
struct Shared {
    endpoints: OAuthEndpoints,
    consent: Arc<dyn ConsentHandler>,
    max_body: usize,
}

type AppState = Arc<Shared>;

/// A router with the discovery documents, the authorization endpoint and
/// the registration, CIMD preview, token, revocation, introspection, JWKS
/// and userinfo endpoints.
pub fn router(endpoints: OAuthEndpoints, consent: Arc<dyn ConsentHandler>, paths: &RouterPaths) -> Router {
    // An issuer with a path (`https://as.example.com/t1`) has its
    // endpoints under that path and its metadata at the RFC 8414 location
    // `/.well-known/oauth-authorization-server/t1`, plus the two OpenID
    // locations MCP clients also try.
    let prefix = issuer_path(endpoints.server().issuer().as_str());
    mount(&prefix, endpoints, consent, paths)
}

/// A router for projects that each have their own issuer
/// `<server issuer><prefix>/<project>` (set
/// [`crate::project::ProjectSettings::issuer`] accordingly), so that MCP
/// clients, which send no project header, reach every project through its
/// issuer's URLs: metadata at
/// `/.well-known/oauth-authorization-server<prefix>/<project>` (and the two
/// OpenID locations), endpoints under `<prefix>/<project>`. `endpoints`
/// should select projects with [`crate::http::IssuerPathProjectResolver`]
/// for the same prefix; when the server issuer itself has a path, the
/// resolver's prefix is that path followed by `prefix`.
pub fn project_path_router(
    endpoints: OAuthEndpoints,
    consent: Arc<dyn ConsentHandler>,
    paths: &RouterPaths,
    prefix: &str,
) -> Router {
    let base = issuer_path(endpoints.server().issuer().as_str());
    let prefix = format!("{base}{}/{{project}}", prefix.trim_end_matches('/'));
    mount(&prefix, endpoints, consent, paths)
}

fn mount(prefix: &str, endpoints: OAuthEndpoints, consent: Arc<dyn ConsentHandler>, paths: &RouterPaths) -> Router {
    let at = |path: &str| format!("{prefix}{path}");
    let state: AppState = Arc::new(Shared {
        max_body: endpoints.max_body(),
        endpoints,
        consent,
    });
    let mut router = Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{prefix}"),
            any(discovery),
        )
        .route(&format!("/.well-known/openid-configuration{prefix}"), any(discovery));
    if !prefix.is_empty() {
        router = router.route(&format!("{prefix}/.well-known/openid-configuration"), any(discovery));
    }
    if let Some(upstream) = &paths.upstream {
        let upstream = upstream.trim_end_matches('/');
        router = router
            .route(
                &at(&format!("{upstream}/{{provider}}/authorize")),
                get(authorize_upstream),
            )
            .route(
                &at(&format!("{upstream}/{{provider}}/callback")),
                get(upstream_callback),
            );
    }
    router
        .route(&at(&paths.authorize), get(authorize))
        .route(&at(&paths.token), any(buffered::<Token>))
        .route(&at(&paths.registration), any(buffered::<Register>))
        .route(&at(&paths.cimd_resolve), any(buffered::<CimdResolve>))
        .route(&at(&paths.revocation), any(buffered::<Revoke>))
        .route(&at(&paths.introspection), any(buffered::<Introspect>))
        .route(&at(&paths.jwks), any(jwks))
        .route(&at(&paths.userinfo), any(userinfo))
        .with_state(state)
}

/// The path of an issuer URL without a trailing `/` (empty for an issuer
/// without a path).
fn issuer_path(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// Reads a whole request body up to `limit` bytes (413 beyond).
///
/// # Errors
/// A 413 response.
pub async fn buffer(req: Request, limit: usize) -> Result<http::Request<Bytes>, Response> {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(http::Request::from_parts(parts, bytes)),
        Err(_) => Err(into_axum(crate::http::error_response(
            &crate::OAuthError::with_description(crate::ErrorCode::InvalidRequest, "the request body is too large")
                .with_status(http::StatusCode::PAYLOAD_TOO_LARGE),
        ))),
    }
}

/// Converts a crate response into an axum one.
pub fn into_axum(r: http::Response<Vec<u8>>) -> Response {
    r.map(Body::from).into_response()
}

async fn discovery(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let head = http::Request::from_parts(parts, ());
    into_axum(s.endpoints.discovery(&head).await)
}

/// Inserts a [`crate::http::RequestSource`] from the connection's peer
/// address (`ConnectInfo<SocketAddr>`, present when the router is served
/// with `into_make_service_with_connect_info::<SocketAddr>()`), unless the
/// host already inserted one (e.g. from a trusted `X-Forwarded-For`). The
/// router does it for every endpoint that reads the source: authorization
/// (also through an upstream provider), the token endpoint (client
/// authentication may fetch a metadata document or a `jwks_uri`) and the
/// CIMD preview (CIMD fetch budgets), registration (tokenless registration), and the upstream
/// callback (for the consent handler).
pub fn with_request_source(mut req: Request) -> Request {
    if req.extensions().get::<crate::http::RequestSource>().is_none()
        && let Some(axum::extract::ConnectInfo(peer)) = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .copied()
    {
        req.extensions_mut()
            .insert(crate::http::RequestSource::from_ip(peer.ip()));
    }
    req
}

async fn jwks(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let head = http::Request::from_parts(parts, ());
    into_axum(s.endpoints.jwks(&head).await)
}

async fn userinfo(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let head = http::Request::from_parts(parts, ());
    into_axum(s.endpoints.userinfo(&head).await)
}

async fn authorize(State(s): State<AppState>, req: Request) -> Response {
    let req = with_request_source(req);
    let (parts, _) = req.into_parts();
    let head = http::Request::from_parts(parts.clone(), ());
    match s.endpoints.authorize(&head).await {
        AuthorizeResponse::Response(r) => into_axum(r),
        AuthorizeResponse::Pending(p) => into_axum(s.consent.consent(&s.endpoints, *p, &parts).await),
    }
}

/// The last path segment before `/authorize` or `/callback`: the
/// provider (the route's `{provider}`; read from the path so that the
/// project prefix's own parameter does not interfere).
fn provider_segment(path: &str) -> &str {
    path.rsplit('/').nth(1).unwrap_or_default()
}

async fn authorize_upstream(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = with_request_source(req).into_parts();
    let head = http::Request::from_parts(parts, ());
    let provider = provider_segment(head.uri().path()).to_owned();
    into_axum(s.endpoints.authorize_with_provider(&head, &provider).await)
}

async fn upstream_callback(State(s): State<AppState>, req: Request) -> Response {
    // The source reaches the consent handler (e.g. per-source caps).
    let (parts, _) = with_request_source(req).into_parts();
    let head = http::Request::from_parts(parts.clone(), ());
    let provider = provider_segment(head.uri().path()).to_owned();
    match s.endpoints.upstream_callback(&head, &provider).await {
        UpstreamCallbackResponse::SignedIn(signed_in) => {
            let secure = signed_in.secure_cookie;
            let mut r = s.consent.consent_signed_in(&s.endpoints, *signed_in, &parts).await;
            crate::http::clear_upstream_cookie(&head, &mut r, secure);
            into_axum(r)
        }
        UpstreamCallbackResponse::Response(r) => into_axum(r),
    }
}

/// An endpoint that reads a body, for the one generic handler
/// [`buffered`] (monomorphized per endpoint, so each route's future holds
/// only its own endpoint's future).
trait BodyEndpoint {
    /// Whether the endpoint reads the request's source.
    const READS_SOURCE: bool;

    /// Calls the endpoint.
    fn call<'a>(
        endpoints: &'a OAuthEndpoints,
        req: &'a http::Request<Bytes>,
    ) -> impl Future<Output = http::Response<Vec<u8>>> + Send + 'a;
}

/// Declares a [`BodyEndpoint`] calling one method of [`OAuthEndpoints`].
macro_rules! body_endpoint {
    ($name:ident, $method:ident, reads_source: $source:literal) => {
        struct $name;

        impl BodyEndpoint for $name {
            const READS_SOURCE: bool = $source;

            fn call<'a>(
                endpoints: &'a OAuthEndpoints,
                req: &'a http::Request<Bytes>,
            ) -> impl Future<Output = http::Response<Vec<u8>>> + Send + 'a {
                endpoints.$method(req)
            }
        }
    };
}

body_endpoint!(Token, token, reads_source: true);
body_endpoint!(Register, register, reads_source: true);
body_endpoint!(CimdResolve, cimd_resolve, reads_source: true);
body_endpoint!(Revoke, revoke, reads_source: false);
body_endpoint!(Introspect, introspect, reads_source: false);

/// The handler of every endpoint that reads a body: the body up to the
/// endpoints' limit (413 beyond; one byte more is read so that the
/// endpoint itself refuses a body just over it), then the endpoint. The
/// request's source is inserted for the endpoints that read it.
async fn buffered<E: BodyEndpoint>(State(s): State<AppState>, req: Request) -> Response {
    let req = if E::READS_SOURCE { with_request_source(req) } else { req };
    match buffer(req, s.max_body.saturating_add(1)).await {
        Ok(req) => into_axum(E::call(&s.endpoints, &req).await),
        Err(r) => r,
    }
}
