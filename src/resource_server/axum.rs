//! axum glue for protected resources (feature `axum`): a middleware that
//! refuses requests without a valid token and hands the handler the
//! [`VerifiedToken`], and a router serving the [RFC 9728] metadata.
//!
//! ```no_run
//! # use std::sync::Arc;
//! use authio_mcp::resource_server::axum::{BearerAuth, metadata_router, require_bearer};
//! use authio_mcp::resource_server::{ProtectedResource, ProtectedResourceMetadata, TokenVerifier, VerifiedToken};
//! use authio_mcp::resource::ResourceUri;
//! use axum::Router;
//! use axum::routing::post;
//!
//! async fn mcp(token: VerifiedToken) -> String {
//!     format!("hello {}", token.subject)
//! }
//!
//! # fn app(verifier: Arc<dyn TokenVerifier>) -> Result<Router, Box<dyn std::error::Error>> {
//! let resource = ResourceUri::parse("https://mcp.example.com/mcp")?;
//! let metadata = ProtectedResourceMetadata::builder(&resource).build();
//! let auth = BearerAuth::new(ProtectedResource::new(resource), verifier);
//! let app = Router::new()
//!     .route("/mcp", post(mcp))
//!     .layer(axum::middleware::from_fn_with_state(auth, require_bearer))
//!     .merge(metadata_router(&metadata));
//! # Ok(app) }
//! ```
//!
//! [RFC 9728]: https://www.rfc-editor.org/rfc/rfc9728

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::any;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};

use super::{ProtectedResource, ProtectedResourceMetadata, ResourceServerError, TokenVerifier, VerifiedToken};
use crate::axum::{buffer, into_axum};
use crate::error::{ErrorCode, OAuthError};
use crate::http::{add_cors, cors_preflight, error_response, json};
use crate::server::{Clock, SystemClock};

/// The largest form body inspected for an `access_token` parameter.
const MAX_FORM_BODY: usize = 64 * 1024;

/// What [`require_bearer`] needs: the resource, a verifier and a clock.
#[derive(Clone)]
pub struct BearerAuth {
    resource: Arc<ProtectedResource>,
    verifier: Arc<dyn TokenVerifier>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl BearerAuth {
    /// Protects `resource`, verifying tokens with `verifier`, on the
    /// system clock.
    pub fn new(resource: ProtectedResource, verifier: Arc<dyn TokenVerifier>) -> Self {
        Self {
            resource: Arc::new(resource),
            verifier,
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The protected resource.
    pub fn resource(&self) -> &ProtectedResource {
        &self.resource
    }
}

/// Middleware for `axum::middleware::from_fn_with_state(auth, require_bearer)`:
/// runs [`ProtectedResource::authorize`] and either answers with the
/// refusal (400, 401 or 403 with its `WWW-Authenticate` challenge, 500
/// when the verifier fails) or passes the request on with the
/// [`VerifiedToken`] in its extensions.
///
/// A form-encoded body is read (up to 64 KiB) to refuse an
/// `access_token` parameter in it; other bodies are passed on untouched.
pub async fn require_bearer(State(auth): State<BearerAuth>, req: Request, next: Next) -> Response {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let req = if super::is_form(content_type) {
        let req = match buffer(req, MAX_FORM_BODY).await {
            Ok(req) => req,
            Err(r) => return r,
        };
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if super::form_body_has_access_token(content_type, req.body()) {
            return into_axum(auth.resource.refusal(&ResourceServerError::TokenInBody));
        }
        req.map(Body::from)
    } else {
        req
    };
    let now = auth.clock.now();
    let verified = auth
        .resource
        .authorize(auth.verifier.as_ref(), req.headers(), req.uri(), now)
        .await;
    match verified {
        Ok(token) => {
            let mut req = req;
            req.extensions_mut().insert(token);
            next.run(req).await
        }
        Err(e) => into_axum(auth.resource.refusal(&e)),
    }
}

/// The [`VerifiedToken`] that [`require_bearer`] put in the request. A
/// route without the middleware answers 500: a misconfiguration, never an
/// anonymous pass.
impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| into_axum(error_response(&OAuthError::server_error())))
    }
}

/// A router serving `metadata` at its well-known path
/// ([`ProtectedResourceMetadata::path`]) for `GET`/`HEAD`, with CORS for
/// browser-based MCP clients.
pub fn metadata_router(metadata: &ProtectedResourceMetadata) -> Router {
    let body = Arc::new(metadata.to_json());
    Router::new().route(
        &metadata.path(),
        any(move |req: Request| {
            let body = body.clone();
            async move { into_axum(serve_metadata(&req, &body)) }
        }),
    )
}

fn serve_metadata(req: &Request, body: &[u8]) -> http::Response<Vec<u8>> {
    if let Some(r) = cors_preflight(req) {
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = OAuthError::with_description(ErrorCode::InvalidRequest, "method not allowed")
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .to_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        return r;
    }
    let mut r = json(StatusCode::OK, body.to_vec());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    add_cors(&mut r);
    r
}
