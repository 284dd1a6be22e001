//! Framework-agnostic HTTP handlers: `http::Request` in,
//! `http::Response<Vec<u8>>` out.
//!
//! [`OAuthEndpoints`] wraps an [`AuthorizationServer`] with what HTTP adds:
//! project selection ([`ProjectResolver`]), method and content-type checks
//! (405, 415 as OAuth errors), body limits, `Cache-Control: no-store` on
//! token and registration responses, `WWW-Authenticate` where required,
//! CORS for the endpoints browser-based MCP clients call, and rendering of
//! every OAuth error. Mount its methods on any framework; the `axum`
//! feature does it for axum.
//!
//! Error pages (and the consent page, when the host asks for it) are
//! rendered through a [`PageRenderer`] ([`OAuthEndpoints::with_pages`];
//! [`DefaultPages`] by default) and show the request id of the request's
//! `X-Request-Id` header ([`crate::pages::request_id`]).

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use tracing::Instrument as _;

use crate::authorize::PendingAuthorization;
pub use crate::bearer::is_bearer_token;
/// Who caused a request (the same type as [`crate::cimd::RequestSource`]):
/// one request extension, set once by the edge, read by the CIMD fetch
/// budgets and by tokenless registration.
pub use crate::cimd::RequestSource;
use crate::error::{ErrorCode, OAuthError};
use crate::grant::Subject;
use crate::media_type::MediaType;
use crate::metrics;
/// Escapes text for HTML (moved to [`crate::pages`]; kept here for hosts
/// that used it from this module).
pub use crate::pages::escape_html;
use crate::pages::{ConsentView, DefaultPages, ErrorKind, ErrorView, PageRenderer, request_id};
use crate::project::ProjectId;
use crate::scope::ScopeSet;
use crate::secret::SecretString;
use crate::server::{ApproveError, AuthorizationServer, AuthorizeOutcome, CallbackOutcome, SignedIn};
use crate::trace;

/// The header that selects a project: `X-Authio-Project`.
pub const PROJECT_HEADER: &str = "x-authio-project";

/// The default cap on request bodies: 64 KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Picks the project a request is for.
pub trait ProjectResolver: Send + Sync {
    /// The project, or the error to answer with.
    ///
    /// # Errors
    /// An [`OAuthError`] rendered as is (e.g. 400 for a missing header).
    fn resolve(&self, headers: &HeaderMap, uri: &Uri) -> Result<ProjectId, OAuthError>;
}

/// Only the `X-Authio-Project` header.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderProjectResolver;

impl ProjectResolver for HeaderProjectResolver {
    fn resolve(&self, headers: &HeaderMap, _uri: &Uri) -> Result<ProjectId, OAuthError> {
        project_from_header(headers)?.ok_or_else(|| {
            OAuthError::with_description(ErrorCode::InvalidRequest, "the X-Authio-Project header is required")
        })
    }
}

/// The `X-Authio-Project` header, else a default project. Real MCP clients
/// send no custom header, so a server facing them needs a default.
#[derive(Clone, Debug)]
pub struct HeaderOrDefaultProjectResolver {
    default: ProjectId,
}

impl HeaderOrDefaultProjectResolver {
    /// Falls back to `default`.
    pub const fn new(default: ProjectId) -> Self {
        Self { default }
    }
}

impl ProjectResolver for HeaderOrDefaultProjectResolver {
    fn resolve(&self, headers: &HeaderMap, _uri: &Uri) -> Result<ProjectId, OAuthError> {
        Ok(project_from_header(headers)?.unwrap_or_else(|| self.default.clone()))
    }
}

/// The project named in the request path, for hosts that give each
/// project its own issuer `<base><prefix>/<project>` (for example
/// `https://auth.example.com/p/proj_acme`): real MCP clients send no custom
/// header, but they do follow the issuer's URLs. Recognizes
/// `<prefix>/<project>/...` and the [RFC 8414] well-known forms
/// `/.well-known/<name><prefix>/<project>`. Each project's
/// [`crate::project::ProjectSettings::issuer`] must be set to its URL; see
/// `axum::project_path_router`.
///
/// [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414
#[derive(Clone, Debug)]
pub struct IssuerPathProjectResolver {
    prefix: String,
}

impl IssuerPathProjectResolver {
    /// Projects under `prefix` (e.g. `/p`; a trailing `/` is ignored).
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn project_in(&self, path: &str) -> Option<ProjectId> {
        let rest = match path.strip_prefix("/.well-known/") {
            Some(well_known) => well_known.split_once('/').map(|(_, after_name)| after_name)?,
            None => path.strip_prefix('/')?,
        };
        let rest = rest.strip_prefix(self.prefix.trim_start_matches('/'))?;
        let rest = if self.prefix.is_empty() {
            rest
        } else {
            rest.strip_prefix('/')?
        };
        let id = rest.split('/').next()?;
        ProjectId::new(id).ok()
    }
}

impl ProjectResolver for IssuerPathProjectResolver {
    fn resolve(&self, _headers: &HeaderMap, uri: &Uri) -> Result<ProjectId, OAuthError> {
        self.project_in(uri.path()).ok_or_else(OAuthError::unknown_project)
    }
}

fn project_from_header(headers: &HeaderMap) -> Result<Option<ProjectId>, OAuthError> {
    let mut values = headers.get_all(PROJECT_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    let bad = || OAuthError::with_description(ErrorCode::InvalidRequest, "the X-Authio-Project header is malformed");
    if values.next().is_some() {
        return Err(bad());
    }
    let s = value.to_str().map_err(|_| bad())?;
    ProjectId::new(s).map(Some).map_err(|_| bad())
}

/// Decides whether a caller may use the introspection endpoint ([RFC 7662
/// section 2.1] requires the caller to be authorized).
///
/// [RFC 7662 section 2.1]: https://www.rfc-editor.org/rfc/rfc7662#section-2.1
pub trait IntrospectionAuthenticator: Send + Sync {
    /// Whether the `Authorization` header value authorizes introspection
    /// for `project`.
    fn authenticate(&self, project: &ProjectId, authorization: Option<&str>) -> bool;
}

/// One shared bearer credential for resource servers, compared in
/// constant time.
#[derive(Debug, Clone)]
pub struct BearerCredential(SecretString);

impl BearerCredential {
    /// A credential.
    pub const fn new(secret: SecretString) -> Self {
        Self(secret)
    }
}

impl IntrospectionAuthenticator for BearerCredential {
    fn authenticate(&self, _project: &ProjectId, authorization: Option<&str>) -> bool {
        bearer_token(authorization).is_some_and(|t| self.0.ct_eq(t))
    }
}

/// Introspection credentials scoped to projects: a resource server holding
/// project A's credential can introspect only A's tokens (token lookups
/// are per project, and B's credential is not accepted for A). Each
/// project may have several credentials (one per resource server, or
/// during a rotation); compared in constant time.
#[derive(Debug, Clone, Default)]
pub struct ProjectBearerCredentials(std::collections::HashMap<ProjectId, Vec<SecretString>>);

impl ProjectBearerCredentials {
    /// No credential: every introspection is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a credential for `project`.
    #[must_use]
    pub fn with(mut self, project: ProjectId, secret: SecretString) -> Self {
        self.0.entry(project).or_default().push(secret);
        self
    }
}

impl IntrospectionAuthenticator for ProjectBearerCredentials {
    fn authenticate(&self, project: &ProjectId, authorization: Option<&str>) -> bool {
        let Some(token) = bearer_token(authorization) else {
            return false;
        };
        // Compare with every credential of the project (no early exit).
        self.0
            .get(project)
            .is_some_and(|list| list.iter().fold(false, |ok, c| c.ct_eq(token) | ok))
    }
}

/// The token of an `Authorization: Bearer <token>` header value ([RFC 6750
/// section 2.1]: scheme case-insensitive, the token a `b64token` of at most
/// 4,096 bytes); the crate's one bearer parser.
///
/// [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    crate::bearer::parse(authorization?).ok()
}

/// What the authorization endpoint answers.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthorizeResponse {
    /// Send this response (an error page or a redirect).
    Response(Response<Vec<u8>>),
    /// Run login and consent for this request, then call
    /// [`OAuthEndpoints::approve`] or [`OAuthEndpoints::deny`].
    Pending(Box<PendingAuthorization>),
}

/// The OAuth endpoints over HTTP types.
#[derive(Clone)]
pub struct OAuthEndpoints {
    server: AuthorizationServer,
    resolver: Arc<dyn ProjectResolver>,
    introspection: Option<Arc<dyn IntrospectionAuthenticator>>,
    max_body: usize,
    pages: Arc<dyn PageRenderer>,
}

impl std::fmt::Debug for OAuthEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthEndpoints")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl OAuthEndpoints {
    /// Endpoints over `server`, selecting projects with `resolver`. The
    /// introspection endpoint refuses every caller until an authenticator
    /// is set.
    pub fn new(server: AuthorizationServer, resolver: Arc<dyn ProjectResolver>) -> Self {
        Self {
            server,
            resolver,
            introspection: None,
            max_body: DEFAULT_MAX_BODY,
            pages: Arc::new(DefaultPages),
        }
    }

    /// Renders the consent and error pages with `pages` instead of
    /// [`DefaultPages`] (a themed look, another language).
    #[must_use]
    pub fn with_pages(mut self, pages: Arc<dyn PageRenderer>) -> Self {
        self.pages = pages;
        self
    }

    /// The page renderer.
    pub fn pages(&self) -> &dyn PageRenderer {
        self.pages.as_ref()
    }

    /// The consent page for `view`, rendered with [`Self::pages`], with
    /// the headers of [`crate::pages::consent_response`] (its CSP lets the
    /// form post only to this server and the verified redirect origin).
    pub fn consent_page(&self, view: &ConsentView<'_>) -> Response<Vec<u8>> {
        crate::pages::render_consent(self.pages.as_ref(), view)
    }

    /// The error page for `e` in answer to a request with `headers` (its
    /// request id is shown), rendered with [`Self::pages`]. The kind
    /// (whose fault) is [`ErrorKind::of`] unless `kind` says otherwise.
    /// A 405 carries the error's `Allow` header.
    pub fn error_page_for(&self, headers: &HeaderMap, e: &OAuthError, kind: Option<ErrorKind>) -> Response<Vec<u8>> {
        let mut view = ErrorView::new(e).with_request_id(request_id(headers));
        if let Some(kind) = kind {
            view = view.with_kind(kind);
        }
        let mut r = crate::pages::render_error(self.pages.as_ref(), &view);
        add_allow(&mut r, e);
        r
    }

    /// Who may introspect.
    #[must_use]
    pub fn with_introspection_authenticator(mut self, auth: Arc<dyn IntrospectionAuthenticator>) -> Self {
        self.introspection = Some(auth);
        self
    }

    /// The cap on request bodies (default 64 KiB).
    #[must_use]
    pub const fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The cap on request bodies set by [`OAuthEndpoints::with_max_body`].
    pub const fn max_body(&self) -> usize {
        self.max_body
    }

    /// The server.
    pub fn server(&self) -> &AuthorizationServer {
        &self.server
    }

    /// The project of a request.
    ///
    /// # Errors
    /// The resolver's error.
    pub fn project<B>(&self, req: &Request<B>) -> Result<ProjectId, OAuthError> {
        let project = self.resolver.resolve(req.headers(), req.uri())?;
        trace::record_project(&project);
        Ok(project)
    }

    /// `GET /.well-known/oauth-authorization-server` (and
    /// `openid-configuration`): the project's [RFC 8414] metadata.
    ///
    /// [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414
    pub async fn discovery<B>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        let call = |project: ProjectId, _: &[u8]| async move {
            let m = self.server.metadata(&project).await?;
            Ok::<_, crate::server::EndpointError>(m.to_json())
        };
        self.endpoint(req, None, &DISCOVERY, call, |body| {
            let mut r = json(StatusCode::OK, body);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
            // The document depends on the project, which the header may select.
            r.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("x-authio-project"));
            r
        })
        .await
    }

    /// `GET <issuer>/.well-known/jwks.json`: the project's public signing
    /// keys ([RFC 7517 section 5]). Cacheable for
    /// [`crate::keys::JWKS_MAX_AGE_SECS`] (shorter than any
    /// pre-publication window, so caches see a next key before it signs);
    /// verifiers refetch on an unknown `kid` anyway.
    ///
    /// [RFC 7517 section 5]: https://www.rfc-editor.org/rfc/rfc7517#section-5
    pub async fn jwks<B>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        let call = |project: ProjectId, _: &[u8]| async move {
            Ok::<_, crate::server::EndpointError>(self.server.jwks(&project).await?.to_json())
        };
        self.endpoint(req, None, &JWKS, call, |body| {
            let mut r = json(StatusCode::OK, body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            let cache = format!("public, max-age={}", crate::keys::JWKS_MAX_AGE_SECS);
            if let Ok(v) = HeaderValue::from_str(&cache) {
                r.headers_mut().insert(header::CACHE_CONTROL, v);
            }
            r.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("x-authio-project"));
            r
        })
        .await
    }

    /// `GET` or `POST /oauth2/userinfo` (OpenID Connect Core section 5.3)
    /// with `Authorization: Bearer <access token>`.
    pub async fn userinfo<B>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        let call =
            |project: ProjectId, _: &[u8]| async move { self.server.userinfo(&project, authorization(req)).await };
        self.endpoint(req, None, &USERINFO, call, |body| {
            no_store(json(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default()))
        })
        .await
    }

    /// `GET /oauth2/authorize`.
    pub async fn authorize<B>(&self, req: &Request<B>) -> AuthorizeResponse {
        let span = trace::request_span("authorize");
        let started = Instant::now();
        let outcome = async {
            allow(req, &[Method::GET])?;
            let project = self.project(req)?;
            let query = req.uri().query().unwrap_or_default();
            Ok::<_, OAuthError>(self.server.authorize_from(&project, query, request_source(req)).await)
        }
        .instrument(span.clone())
        .await
        .unwrap_or_else(|e| AuthorizeOutcome::ShowError(e.into()));
        let end = |outcome: &'static str, e: Option<&OAuthError>| ended("authorize", &span, started, outcome, e);
        match outcome {
            AuthorizeOutcome::ShowError(e) => {
                let e = e.into_oauth();
                end(e.code().as_str(), Some(&e));
                AuthorizeResponse::Response(self.error_page_for(req.headers(), &e, None))
            }
            AuthorizeOutcome::Redirect(location) => {
                end("redirect", None);
                AuthorizeResponse::Response(redirect(&location))
            }
            AuthorizeOutcome::Pending(p) => {
                end("pending", None);
                AuthorizeResponse::Pending(p)
            }
            other => {
                end("upstream_login", None);
                AuthorizeResponse::Response(self.outcome_response(req.headers(), other))
            }
        }
    }

    /// `GET /v1/auth/oauth/{provider}/authorize`: the authorization
    /// endpoint that signs the user in at the upstream `provider`. Always
    /// a response (an error page, an error redirect to the client, or the
    /// redirect to the provider with the browser-binding cookie).
    pub async fn authorize_with_provider<B>(&self, req: &Request<B>, provider: &str) -> Response<Vec<u8>> {
        let span = trace::request_span("upstream_authorize");
        let started = Instant::now();
        let outcome = async {
            allow(req, &[Method::GET])?;
            let project = self.project(req)?;
            let query = req.uri().query().unwrap_or_default();
            Ok::<_, OAuthError>(
                self.server
                    .authorize_with_provider_from(&project, provider, query, request_source(req))
                    .await,
            )
        }
        .instrument(span.clone())
        .await
        .unwrap_or_else(|e| AuthorizeOutcome::ShowError(e.into()));
        let end =
            |outcome: &'static str, e: Option<&OAuthError>| ended("upstream_authorize", &span, started, outcome, e);
        match outcome {
            AuthorizeOutcome::ShowError(e) => {
                let e = e.into_oauth();
                end(e.code().as_str(), Some(&e));
                self.error_page_for(req.headers(), &e, None)
            }
            other => {
                end(
                    if matches!(other, AuthorizeOutcome::Redirect(_)) {
                        "redirect"
                    } else {
                        "upstream_login"
                    },
                    None,
                );
                self.outcome_response(req.headers(), other)
            }
        }
    }

    /// `GET /v1/auth/oauth/{provider}/callback`: where the provider sends
    /// the user back. A response (error page, or a redirect to the MCP
    /// client with an error or, when the user's remembered consent covers
    /// the request, the code), or a signed-in user to ask for consent
    /// (then call [`OAuthEndpoints::approve_signed_in`] or
    /// [`OAuthEndpoints::deny`]).
    pub async fn upstream_callback<B>(&self, req: &Request<B>, provider: &str) -> UpstreamCallbackResponse {
        let span = trace::request_span("upstream_callback");
        let started = Instant::now();
        let outcome = async {
            allow(req, &[Method::GET])?;
            let project = self.project(req)?;
            let query = req.uri().query().unwrap_or_default();
            // On an https issuer only the `__Host-` cookie counts: a plain
            // cookie of the same login's name (planted by a sibling
            // subdomain or over plain http) is no binding.
            let secure = self.server.upstream_cookie_secure(&project).await;
            let binding = crate::upstream::CallbackParams::from_query(query)
                .state
                .and_then(|state| cookie(req.headers(), &upstream_cookie_name(&state, secure)));
            Ok::<_, OAuthError>((
                self.server
                    .finish_upstream_login(&project, provider, query, binding.as_deref())
                    .await,
                secure,
            ))
        }
        .instrument(span.clone())
        .await;
        let end =
            |outcome: &'static str, e: Option<&OAuthError>| ended("upstream_callback", &span, started, outcome, e);
        let (outcome, secure) = match outcome {
            Ok(o) => o,
            Err(e) => {
                end(e.code().as_str(), Some(&e));
                return UpstreamCallbackResponse::Response(self.error_page_for(req.headers(), &e, None));
            }
        };
        let mut response = match outcome {
            CallbackOutcome::SignedIn(s) => {
                end("signed_in", None);
                return UpstreamCallbackResponse::SignedIn(s);
            }
            CallbackOutcome::ShowError(e) => {
                let e = e.into_oauth();
                end(e.code().as_str(), Some(&e));
                self.error_page_for(req.headers(), &e, None)
            }
            CallbackOutcome::Redirect(location) => {
                end("redirect", None);
                redirect(&location)
            }
        };
        clear_upstream_cookie(req, &mut response, secure);
        UpstreamCallbackResponse::Response(response)
    }

    /// Completes the authorization of a user signed in upstream with their
    /// approval (remembering it): a 302 to the client with the code.
    pub async fn approve_signed_in(&self, signed_in: SignedIn, granted: Option<ScopeSet>) -> Response<Vec<u8>> {
        let span = trace::request_span("approve");
        let started = Instant::now();
        let result = self
            .server
            .approve_signed_in(signed_in, granted)
            .instrument(span.clone())
            .await;
        self.approved(&span, started, result)
    }

    /// Completes a pending authorization with the user's approval: a 302 to
    /// the client with the code.
    pub async fn approve(
        &self,
        pending: PendingAuthorization,
        subject: Subject,
        granted: Option<ScopeSet>,
    ) -> Response<Vec<u8>> {
        let span = trace::request_span("approve");
        let started = Instant::now();
        let result = self
            .server
            .approve(pending, subject, granted)
            .instrument(span.clone())
            .await;
        self.approved(&span, started, result)
    }

    fn approved(
        &self,
        span: &tracing::Span,
        started: Instant,
        result: Result<String, ApproveError>,
    ) -> Response<Vec<u8>> {
        match result {
            Ok(location) => {
                ended("approve", span, started, "redirect", None);
                redirect(&location)
            }
            Err(e) => {
                let (page, error) = self.approve_error_page(&e);
                ended("approve", span, started, error.code().as_str(), Some(&error));
                page
            }
        }
    }

    /// An authorization outcome that is not `Pending`, as a response: the
    /// upstream login's redirect carries the browser-binding cookie
    /// (`HttpOnly`, `SameSite=Lax` so the provider's top-level redirect back
    /// brings it, 10 minutes; on an https issuer a `__Host-` cookie with
    /// `Secure` and `Path=/`, on plain http scoped to the callback path:
    /// see [`upstream_cookie_name`]).
    fn outcome_response(&self, headers: &HeaderMap, outcome: AuthorizeOutcome) -> Response<Vec<u8>> {
        match outcome {
            AuthorizeOutcome::ShowError(e) => self.error_page_for(headers, &e.into_oauth(), None),
            AuthorizeOutcome::Redirect(location) => redirect(&location),
            AuthorizeOutcome::UpstreamLogin {
                location,
                browser_binding,
                callback_uri,
            } => {
                let Some(state) = url::Url::parse(&location)
                    .ok()
                    .and_then(|u| u.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()))
                else {
                    return self.error_page_for(headers, &OAuthError::server_error(), None);
                };
                let Ok(callback) = url::Url::parse(&callback_uri) else {
                    return self.error_page_for(headers, &OAuthError::server_error(), None);
                };
                let secure = callback.scheme() == "https";
                let value = upstream_cookie(&state, Some(browser_binding.expose_secret()), secure, callback.path());
                let mut r = redirect(&location);
                match HeaderValue::from_str(&value) {
                    Ok(v) => {
                        r.headers_mut().append(header::SET_COOKIE, v);
                        r
                    }
                    Err(_) => self.error_page_for(headers, &OAuthError::server_error(), None),
                }
            }
            _ => self.error_page_for(headers, &OAuthError::server_error(), None),
        }
    }

    /// The page for a failed approval: an expired request is the user's
    /// to start again, a scope widening is the host's bug and a storage
    /// failure the server's (both "server trouble").
    fn approve_error_page(&self, e: &ApproveError) -> (Response<Vec<u8>>, OAuthError) {
        let (error, kind) = match e {
            ApproveError::Approval(crate::authorize::ApprovalError::Expired) => (
                OAuthError::with_description(ErrorCode::AccessDenied, e.to_string()),
                ErrorKind::StartAgain,
            ),
            ApproveError::Approval(_) => (
                OAuthError::with_description(ErrorCode::ServerError, e.to_string()),
                ErrorKind::ServerTrouble,
            ),
            _ => (OAuthError::server_error(), ErrorKind::ServerTrouble),
        };
        (self.error_page_for(&HeaderMap::new(), &error, Some(kind)), error)
    }

    /// Completes a pending authorization with a denial: a 302 to the client
    /// with `error=access_denied`.
    pub async fn deny(&self, pending: PendingAuthorization) -> Response<Vec<u8>> {
        redirect(&self.server.deny(pending).await)
    }

    /// `POST /oauth2/token`.
    pub async fn token<B: AsRef<[u8]>>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        let call = |project: ProjectId, body| {
            // Boxed: the driver's token future is several kilobytes, and
            // every future that holds it inline is moved (copied) as a
            // whole by each layer above (the router, the framework).
            Box::pin(async move {
                self.server
                    .token_from(&project, authorization(req), body, request_source(req))
                    .await
            })
        };
        self.endpoint(req, Some(req.body().as_ref()), &TOKEN, call, |t| {
            no_store(json(StatusCode::OK, t.to_json()))
        })
        .await
    }

    /// `POST /oauth2/register` ([RFC 7591]): 201 with the registered client,
    /// or 400 / 401 / 403 as OAuth errors.
    ///
    /// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
    pub async fn register<B: AsRef<[u8]>>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        let call = |project: ProjectId, body| {
            let source = request_source(req).and_then(RequestSource::ip);
            // Boxed, as in `token`.
            Box::pin(async move {
                self.server
                    .register_client_from(&project, authorization(req), body, source)
                    .await
            })
        };
        self.endpoint(req, Some(req.body().as_ref()), &REGISTER, call, |r| r.to_response())
            .await
    }

    /// `POST /oauth2/cimd/resolve` with `{"client_id": url}`: the CIMD
    /// preview. Both outcomes are 200 JSON told apart by `status`
    /// (`resolved` with the normalized client, or `failed` with the exact
    /// reason); a malformed request is a 400 OAuth error.
    ///
    /// The answer carries no cache state (see [`crate::cimd::CimdPreview`]);
    /// [`Self::cimd_resolve_with_cache_details`] is the administrator's
    /// variant.
    pub async fn cimd_resolve<B: AsRef<[u8]>>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        self.cimd_resolve_as(req, false).await
    }

    /// [`Self::cimd_resolve`] with `from_cache` and `cache_expires_at`:
    /// only for callers the host has authenticated as administrators.
    pub async fn cimd_resolve_with_cache_details<B: AsRef<[u8]>>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        self.cimd_resolve_as(req, true).await
    }

    async fn cimd_resolve_as<B: AsRef<[u8]>>(&self, req: &Request<B>, details: bool) -> Response<Vec<u8>> {
        let call = |project: ProjectId, body| async move {
            self.server.preview_cimd_from(&project, body, request_source(req)).await
        };
        self.endpoint(req, Some(req.body().as_ref()), &CIMD_RESOLVE, call, |preview| {
            if details {
                no_store(json(StatusCode::OK, preview.to_json_with_cache_details()))
            } else {
                no_store(json(StatusCode::OK, preview.to_json()))
            }
        })
        .await
    }

    /// `POST /oauth2/revoke` ([RFC 7009]): 200 with an empty body on success;
    /// 503 `server_error` with `Retry-After` when storage fails.
    ///
    /// [RFC 7009]: https://www.rfc-editor.org/rfc/rfc7009
    pub async fn revoke<B: AsRef<[u8]>>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        let call =
            |project: ProjectId, body| async move { self.server.revoke(&project, authorization(req), body).await };
        self.endpoint(req, Some(req.body().as_ref()), &REVOKE, call, |()| {
            no_store(Response::new(Vec::new()))
        })
        .await
    }

    /// `POST /oauth2/introspect` ([RFC 7662]), for callers the introspection
    /// authenticator accepts.
    ///
    /// [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
    pub async fn introspect<B: AsRef<[u8]>>(&self, req: &Request<B>) -> Response<Vec<u8>> {
        let call = |project: ProjectId, body| async move {
            let allowed = self
                .introspection
                .as_ref()
                .is_some_and(|a| a.authenticate(&project, authorization(req)));
            if !allowed {
                return Err(OAuthError::with_description(
                    ErrorCode::InvalidToken,
                    "introspection requires a valid credential",
                ));
            }
            self.server.introspect(&project, body).await.map_err(OAuthError::from)
        };
        self.endpoint(req, Some(req.body().as_ref()), &INTROSPECT, call, |r| {
            no_store(json(StatusCode::OK, r.to_json()))
        })
        .await
    }

    /// Every endpoint's skeleton: the CORS preflight and headers (for
    /// endpoints browsers call), the method check (405 with `Allow`), for
    /// an endpoint with a body a POST of its media type within the body
    /// limit (405, 415, 413), the project, then `call` in the endpoint's
    /// span; `ok` renders its value, every error is rendered as an OAuth
    /// error (`no-store`). `body` is the request's body (`None`: the
    /// endpoint reads none).
    async fn endpoint<'r, B, T, E, Fut>(
        &self,
        req: &'r Request<B>,
        body: Option<&'r [u8]>,
        endpoint: &Endpoint,
        call: impl FnOnce(ProjectId, &'r [u8]) -> Fut,
        ok: impl FnOnce(T) -> Response<Vec<u8>>,
    ) -> Response<Vec<u8>>
    where
        Fut: std::future::Future<Output = Result<T, E>>,
        E: Into<OAuthError>,
    {
        if endpoint.cors
            && let Some(r) = cors_preflight(req)
        {
            return r;
        }
        let result = traced(endpoint.name, async {
            allow(req, endpoint.methods)?;
            let body = match endpoint.body {
                Some(media) => self.checked_body(req, body.unwrap_or_default(), endpoint.methods, media)?,
                None => &[],
            };
            let project = self.project(req)?;
            call(project, body).await.map_err(Into::into)
        })
        .await;
        let mut response = match result {
            Ok(value) => ok(value),
            Err(e) => endpoint.error_response(e),
        };
        if endpoint.cors {
            add_cors(&mut response);
        }
        response
    }

    /// The body of an endpoint that reads one: a POST (405 naming
    /// `methods` otherwise) of `media` (415) within the body limit (413).
    fn checked_body<'r, B>(
        &self,
        req: &Request<B>,
        body: &'r [u8],
        methods: &[Method],
        media: MediaType,
    ) -> Result<&'r [u8], OAuthError> {
        if req.method() != Method::POST {
            return Err(method_not_allowed(methods));
        }
        content_type_is(req, media)?;
        if body.len() > self.max_body {
            return Err(too_large());
        }
        Ok(body)
    }
}

/// What sets one endpoint apart; [`OAuthEndpoints::endpoint`] does the
/// rest.
#[derive(Debug)]
struct Endpoint {
    /// Its name in spans and metrics.
    name: &'static str,
    /// The methods it answers (the 405's `Allow`).
    methods: &'static [Method],
    /// The media type of its body (it must be a POST); `None`: no body.
    body: Option<MediaType>,
    /// Browser-based MCP clients call it: CORS preflight and headers.
    cors: bool,
    /// A storage failure is a 503 with `Retry-After`.
    unavailable_on_server_error: bool,
}

impl Endpoint {
    /// An endpoint that reads no body and answers no browser.
    const fn new(name: &'static str, methods: &'static [Method]) -> Self {
        Self {
            name,
            methods,
            body: None,
            cors: false,
            unavailable_on_server_error: false,
        }
    }

    const fn body(mut self, media: MediaType) -> Self {
        self.body = Some(media);
        self
    }

    const fn cors(mut self) -> Self {
        self.cors = true;
        self
    }

    /// The endpoint's error as a response.
    fn error_response(&self, e: OAuthError) -> Response<Vec<u8>> {
        if self.unavailable_on_server_error && e.code() == ErrorCode::ServerError {
            // RFC 7009 section 2.2.1: a 503 tells the client the token may
            // still exist and to retry (storage is unavailable).
            let mut r = error_response(&e.with_status(StatusCode::SERVICE_UNAVAILABLE));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        error_response(&e)
    }
}

const READ: &[Method] = &[Method::GET, Method::HEAD, Method::OPTIONS];
const POST: &[Method] = &[Method::POST];
const POST_OR_PREFLIGHT: &[Method] = &[Method::POST, Method::OPTIONS];

const DISCOVERY: Endpoint = Endpoint::new("discovery", READ).cors();
const JWKS: Endpoint = Endpoint::new("jwks", READ).cors();
const USERINFO: Endpoint = Endpoint::new("userinfo", &[Method::GET, Method::POST, Method::OPTIONS]).cors();
const TOKEN: Endpoint = Endpoint::new("token", POST_OR_PREFLIGHT).body(MediaType::Form).cors();
const REGISTER: Endpoint = Endpoint::new("register", POST_OR_PREFLIGHT)
    .body(MediaType::Json)
    .cors();
const CIMD_RESOLVE: Endpoint = Endpoint::new("cimd_resolve", POST).body(MediaType::Json);
const REVOKE: Endpoint = Endpoint {
    unavailable_on_server_error: true,
    ..Endpoint::new("revoke", POST_OR_PREFLIGHT).body(MediaType::Form).cors()
};
const INTROSPECT: Endpoint = Endpoint::new("introspect", POST).body(MediaType::Form);

/// What the upstream callback answers.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpstreamCallbackResponse {
    /// Send this response.
    Response(Response<Vec<u8>>),
    /// The user signed in upstream; ask for consent (the user is known),
    /// then call [`OAuthEndpoints::approve_signed_in`] or
    /// [`OAuthEndpoints::deny`].
    SignedIn(Box<SignedIn>),
}

/// The name of the cookie binding an upstream login to the browser that
/// started it: `authio_ul_` and 16 hex digits of the hash of its `state`
/// (so parallel logins in one browser do not collide).
///
/// `secure` (the project's issuer is `https`): the name carries the
/// `__Host-` prefix, so a browser accepts it only when set over https with
/// `Secure`, `Path=/` and no `Domain` ([RFC 6265bis section 4.1.3.2]): a
/// sibling subdomain or a plain-http response cannot plant or overwrite
/// it. Without `secure` (a loopback development issuer on plain http,
/// where a `Secure` cookie would not come back) the plain name is used.
///
/// [RFC 6265bis section 4.1.3.2]: https://datatracker.ietf.org/doc/html/draft-ietf-httpbis-rfc6265bis#section-4.1.3.2
pub fn upstream_cookie_name(state: &str, secure: bool) -> String {
    let hash = crate::secret::SecretHash::of(state);
    let hex: String = hash.as_bytes().iter().take(8).map(|b| format!("{b:02x}")).collect();
    if secure {
        format!("__Host-authio_ul_{hex}")
    } else {
        format!("authio_ul_{hex}")
    }
}

/// The `Set-Cookie` value of the browser-binding cookie of the login whose
/// upstream `state` is `state`: `HttpOnly`, `SameSite=Lax` (so the
/// provider's top-level redirect back brings it), for the login's lifetime;
/// with `secure`, the `__Host-` name with `Secure` and `Path=/`, else
/// scoped to `callback_path`. `value` `None` expires it.
fn upstream_cookie(state: &str, value: Option<&str>, secure: bool, callback_path: &str) -> String {
    let max_age = match value {
        Some(_) => crate::upstream::UPSTREAM_LOGIN_TTL.whole_seconds(),
        None => 0,
    };
    let (path, flags) = if secure { ("/", "; Secure") } else { (callback_path, "") };
    format!(
        "{}={}; Max-Age={max_age}; Path={path}; HttpOnly; SameSite=Lax{flags}",
        upstream_cookie_name(state, secure),
        value.unwrap_or_default(),
    )
}

/// Expires the browser-binding cookie of the upstream callback `req` on
/// `response`: the login is over, whatever happened. `secure` as for
/// [`upstream_cookie_name`] (the project's issuer is `https`;
/// [`crate::server::SignedIn::secure_cookie`] says it for a signed-in
/// user). Call it on the response to [`UpstreamCallbackResponse::SignedIn`]
/// too (the axum router does).
pub fn clear_upstream_cookie<B>(req: &Request<B>, response: &mut Response<Vec<u8>>, secure: bool) {
    let state = crate::upstream::CallbackParams::from_query(req.uri().query().unwrap_or_default()).state;
    if let Some(state) = state
        && let Ok(v) = HeaderValue::from_str(&upstream_cookie(&state, None, secure, req.uri().path()))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The value of cookie `name` in the `Cookie` headers, if exactly one.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(name).and_then(|r| r.strip_prefix('=')));
    let first = found.next()?;
    found.next().is_none().then(|| first.to_owned())
}

/// Runs one endpoint call in its `authio.request` span ([`crate::trace`]),
/// then records its outcome (`ok` or its OAuth error code) and duration
/// with [`crate::metrics`] and the span's closing event.
async fn traced<T>(
    endpoint: &'static str,
    call: impl std::future::Future<Output = Result<T, OAuthError>>,
) -> Result<T, OAuthError> {
    let span = trace::request_span(endpoint);
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    match &result {
        Ok(_) => ended(endpoint, &span, started, "ok", None),
        Err(e) => ended(endpoint, &span, started, e.code().as_str(), Some(e)),
    }
    result
}

/// The end of an endpoint call: metrics and the span's closing event.
fn ended(
    endpoint: &'static str,
    span: &tracing::Span,
    started: Instant,
    outcome: &'static str,
    error: Option<&OAuthError>,
) {
    metrics::request(endpoint, outcome, started.elapsed());
    trace::finish(span, outcome, error);
}

/// The request's source, which the host inserts in its extensions
/// (`req.extensions_mut().insert(RequestSource::from_ip(ip))`), or which
/// the `axum` router inserts from the connection's peer address when
/// served with `into_make_service_with_connect_info::<SocketAddr>()`. One
/// value serves every feature that reads it: CIMD first fetches are
/// limited per source, and a registration without an initial access token
/// is rate-limited by its address and not admitted without one.
pub(crate) fn request_source<B>(req: &Request<B>) -> Option<&RequestSource> {
    req.extensions().get::<RequestSource>()
}

/// The `Authorization` header as a string, if present and ASCII.
pub(crate) fn authorization<B>(req: &Request<B>) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// Refuses other methods with 405 and an `Allow` header.
///
/// # Errors
/// `invalid_request` with status 405.
pub(crate) fn allow<B>(req: &Request<B>, methods: &[Method]) -> Result<(), OAuthError> {
    if methods.contains(req.method()) {
        Ok(())
    } else {
        Err(method_not_allowed(methods))
    }
}

/// 405 `invalid_request` whose `Allow` header lists `methods`.
fn method_not_allowed(methods: &[Method]) -> OAuthError {
    let list: Vec<&str> = methods.iter().map(Method::as_str).collect();
    OAuthError::with_description(
        ErrorCode::InvalidRequest,
        format!("method not allowed; this endpoint accepts {}", list.join(", ")),
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .with_allow(list.join(", "))
}

/// Copies the error's `Allow` methods onto a page.
fn add_allow(r: &mut Response<Vec<u8>>, e: &OAuthError) {
    if let Some(v) = e.allow().and_then(|a| HeaderValue::from_str(a).ok()) {
        r.headers_mut().insert(header::ALLOW, v);
    }
}

/// Checks the media type of the body (parameters such as `charset` are
/// ignored).
///
/// # Errors
/// `invalid_request` with status 415.
fn content_type_is<B>(req: &Request<B>, expected: MediaType) -> Result<(), OAuthError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if expected.matches(content_type) {
        Ok(())
    } else {
        Err(OAuthError::with_description(
            ErrorCode::InvalidRequest,
            format!("the body must be {}", expected.as_str()),
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE))
    }
}

fn too_large() -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidRequest, "the request body is too large")
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// A JSON response.
pub fn json(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache`.
pub(crate) fn no_store(mut r: Response<Vec<u8>>) -> Response<Vec<u8>> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// An OAuth error as a JSON response (with its `Allow` header on a 405).
pub fn error_response(e: &OAuthError) -> Response<Vec<u8>> {
    e.to_response()
}

/// A 302 redirect that is never cached.
pub(crate) fn redirect(location: &str) -> Response<Vec<u8>> {
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    } else {
        return error_page(&OAuthError::server_error());
    }
    no_store(r)
}

/// The page shown for an authorization error that must not be redirected,
/// rendered by [`DefaultPages`] without a request id. Inside a request,
/// prefer [`OAuthEndpoints::error_page_for`] (the host's renderer, the
/// request id).
pub fn error_page(e: &OAuthError) -> Response<Vec<u8>> {
    let mut r = crate::pages::render_error(&DefaultPages, &ErrorView::new(e));
    add_allow(&mut r, e);
    r
}

/// CORS for endpoints that browser-based MCP clients call directly
/// (discovery, registration, token, revocation): any origin, no
/// credentials.
pub(crate) fn add_cors(r: &mut Response<Vec<u8>>) {
    r.headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    // Browser clients must be able to read the challenge of a 401.
    r.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("www-authenticate"),
    );
}

/// Answers a CORS preflight (`OPTIONS`) with 204.
pub(crate) fn cors_preflight<B>(req: &Request<B>) -> Option<Response<Vec<u8>>> {
    if req.method() != Method::OPTIONS {
        return None;
    }
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, x-authio-project, mcp-protocol-version"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection_credentials_are_per_project() {
        let a = ProjectId::new("proj_a").unwrap();
        let b = ProjectId::new("proj_b").unwrap();
        let creds = ProjectBearerCredentials::new()
            .with(a.clone(), SecretString::from("secret-a"))
            .with(a.clone(), SecretString::from("secret-a2"))
            .with(b.clone(), SecretString::from("secret-b"));
        assert!(creds.authenticate(&a, Some("Bearer secret-a")));
        assert!(creds.authenticate(&a, Some("Bearer secret-a2")));
        assert!(!creds.authenticate(&a, Some("Bearer secret-b")), "B's credential for A");
        assert!(!creds.authenticate(&b, Some("Bearer secret-a")));
        assert!(!creds.authenticate(&ProjectId::new("proj_c").unwrap(), Some("Bearer secret-a")));
        assert!(!creds.authenticate(&a, None));
        assert!(!ProjectBearerCredentials::new().authenticate(&a, Some("Bearer secret-a")));
    }

    #[test]
    fn project_resolution() {
        let mut h = HeaderMap::new();
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(
            HeaderProjectResolver.resolve(&h, &uri).unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
        let d = HeaderOrDefaultProjectResolver::new(ProjectId::new("proj_demo").unwrap());
        assert_eq!(d.resolve(&h, &uri).unwrap().as_str(), "proj_demo");
        h.insert(PROJECT_HEADER, HeaderValue::from_static("proj_acme_prod"));
        assert_eq!(
            HeaderProjectResolver.resolve(&h, &uri).unwrap().as_str(),
            "proj_acme_prod"
        );
        assert_eq!(d.resolve(&h, &uri).unwrap().as_str(), "proj_acme_prod");
        h.insert(PROJECT_HEADER, HeaderValue::from_static("bad/id"));
        assert!(d.resolve(&h, &uri).is_err());
        h.insert(PROJECT_HEADER, HeaderValue::from_static("a"));
        h.append(PROJECT_HEADER, HeaderValue::from_static("b"));
        assert!(d.resolve(&h, &uri).is_err(), "two project headers are ambiguous");
    }

    #[test]
    fn issuer_path_resolution() {
        let r = IssuerPathProjectResolver::new("/p/");
        let h = HeaderMap::new();
        let at = |path: &str| {
            r.resolve(&h, &path.parse::<Uri>().unwrap())
                .map(|p| p.as_str().to_owned())
        };
        assert_eq!(
            at("/.well-known/oauth-authorization-server/p/proj_a").unwrap(),
            "proj_a"
        );
        assert_eq!(at("/.well-known/openid-configuration/p/proj_a").unwrap(), "proj_a");
        assert_eq!(at("/p/proj_a/.well-known/openid-configuration").unwrap(), "proj_a");
        assert_eq!(at("/p/proj_b/oauth2/token").unwrap(), "proj_b");
        assert_eq!(at("/p/proj_b/oauth2/authorize?client_id=x").unwrap(), "proj_b");
        for bad in [
            "/oauth2/token",
            "/q/proj_a/oauth2/token",
            "/p/bad%20id/x",
            "/p/",
            "/.well-known/oauth-authorization-server",
            "/px/proj_a",
        ] {
            let e = at(bad).unwrap_err();
            assert_eq!(e.status(), 404, "{bad}");
        }
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer")), None);
        assert_eq!(bearer_token(Some("Bearer a b")), None);
        assert_eq!(bearer_token(None), None);
        let c = BearerCredential::new(SecretString::from("s3cret"));
        let p = ProjectId::new("p").unwrap();
        assert!(c.authenticate(&p, Some("Bearer s3cret")));
        assert!(!c.authenticate(&p, Some("Bearer s3cre")));
        assert!(!c.authenticate(&p, None));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let page = error_page(&OAuthError::with_description(ErrorCode::InvalidRequest, "<script>"));
        let body = String::from_utf8(page.into_body()).unwrap();
        assert!(!body.contains("<script>"));
    }

    #[test]
    fn method_and_media_type_checks() {
        let req = Request::builder().method("GET").body(Vec::<u8>::new()).unwrap();
        let e = allow(&req, &[Method::POST]).unwrap_err();
        let r = error_response(&e);
        assert_eq!(r.status(), 405);
        assert!(r.headers().contains_key(header::ALLOW));
        let req = Request::builder()
            .method("POST")
            .header("content-type", "application/x-www-form-urlencoded; charset=UTF-8")
            .body(Vec::<u8>::new())
            .unwrap();
        assert!(content_type_is(&req, MediaType::Form).is_ok());
        assert_eq!(content_type_is(&req, MediaType::Json).unwrap_err().status(), 415);
    }
}
