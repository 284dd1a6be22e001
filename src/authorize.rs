//! The authorization endpoint (OAuth 2.1 section 4.1.1), in two phases.
//!
//! Phase 1 establishes who the client is and where to send the user back:
//! `client_id` and `redirect_uri`. Until both are known to be good, an
//! error must be shown to the user and never redirected ([RFC 6749 section
//! 4.1.2.1]; the CIMD draft says the same for a failed document). Phase 2
//! checks everything else; its errors go back to the client's redirect
//! URI with `error`, `state` and `iss` ([RFC 9207]).
//!
//! Success yields a [`PendingAuthorization`]: what the host's login and
//! consent step needs. The host approves it for a subject (which issues an
//! authorization code) or denies it.
//!
//! [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
//! [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::cimd::ClientIdUrlPolicy;
use crate::client::{Client, ClientId, ClientIdError};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::{CodeRecord, Grant, GrantId, Subject};
use crate::pkce::CodeChallenge;
use crate::presentation::{
    self, ClientDisplay, ClientIdentity, ConsentPresentation, LinkKind, RedirectDisplay, ResourceDisplay, ScopeDisplay,
    ServiceDisplay,
};
use crate::project::{ProjectId, ProjectSettings};
use crate::redirect_uri::RedirectUri;
use crate::resource::{ResourceSet, ResourceUri};
use crate::scope::{Scope, ScopeSet};
use crate::secret::SecretString;

/// How long a user may take to log in and consent.
pub const PENDING_AUTHORIZATION_TTL: Duration = Duration::minutes(10);

const MAX_STATE: usize = 2048;
const MAX_LOGIN_HINT: usize = 256;

/// The scope that asks for a refresh token (OpenID Connect Core 1.0
/// section 11; MCP authorization). Never advertised by resource servers.
pub const OFFLINE_ACCESS: &str = "offline_access";
const MAX_RESOURCES: usize = 10;

/// The parameters of an authorization request, as sent ([RFC 6749 section
/// 4.1.1], [RFC 7636 section 4.3], [RFC 8707 section 2]).
///
/// [RFC 6749 section 4.1.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1
/// [RFC 7636 section 4.3]: https://www.rfc-editor.org/rfc/rfc7636#section-4.3
/// [RFC 8707 section 2]: https://www.rfc-editor.org/rfc/rfc8707#section-2
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationRequest {
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `response_type`.
    pub response_type: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `resource`, every occurrence.
    pub resource: Vec<String>,
    /// `nonce` (OpenID Connect Core section 3.1.2.1), echoed in the ID
    /// token.
    pub nonce: Option<String>,
    /// `prompt` (OpenID Connect Core 1.0 section 3.1.2.1).
    pub prompt: Option<String>,
    /// `login_hint` (OpenID Connect Core 1.0 section 3.1.2.1).
    pub login_hint: Option<String>,
    /// `request` or `request_uri` was present (not supported).
    pub request_object: bool,
    /// Single-valued parameters that appeared more than once.
    pub duplicated: Vec<String>,
}

impl AuthorizationRequest {
    /// Parses a query string (without the `?`). Never fails: problems are
    /// kept and reported by the phase they belong to.
    pub fn from_query(query: &str) -> Self {
        let mut req = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "client_id" => &mut req.client_id,
                "redirect_uri" => &mut req.redirect_uri,
                "response_type" => &mut req.response_type,
                "scope" => &mut req.scope,
                "state" => &mut req.state,
                "code_challenge" => &mut req.code_challenge,
                "code_challenge_method" => &mut req.code_challenge_method,
                "nonce" => &mut req.nonce,
                "prompt" => &mut req.prompt,
                "login_hint" => &mut req.login_hint,
                "resource" => {
                    req.resource.push(value.into_owned());
                    continue;
                }
                "request" | "request_uri" => {
                    req.request_object = true;
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                req.duplicated.push(name.into_owned());
            } else {
                *slot = Some(value.into_owned());
            }
        }
        req
    }

    fn is_duplicated(&self, name: &str) -> bool {
        self.duplicated.iter().any(|d| d == name)
    }
}

/// A phase-1 failure: shown to the user, never redirected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientRequestError {
    /// No `client_id`.
    #[error("the request has no client_id")]
    MissingClientId,
    /// `client_id` or `redirect_uri` appeared twice.
    #[error("the {0} parameter appears more than once")]
    DuplicateParameter(&'static str),
    /// `client_id` is malformed.
    #[error("client_id is not valid: {0}")]
    MalformedClientId(ClientIdError),
    /// The client is not known to this project.
    #[error("unknown client")]
    UnknownClient,
    /// An administrator disabled the (registered) client.
    #[error("this client has been disabled by the administrator of this service")]
    DisabledClient,
    /// The client's metadata document could not be used.
    #[error("the client's metadata document could not be used ({reason})")]
    ClientMetadataUnavailable {
        /// The machine-readable reason.
        reason: Cow<'static, str>,
    },
    /// Metadata-document clients are not enabled for the project.
    #[error("this project does not accept metadata-document client ids")]
    CimdDisabled,
    /// No `redirect_uri` although the client registered several.
    #[error("redirect_uri is required because the client registered more than one")]
    MissingRedirectUri,
    /// `redirect_uri` matches none of the registered ones.
    #[error("redirect_uri does not match any registered redirect URI")]
    RedirectUriMismatch,
    /// The registered redirect URI uses a private-use scheme, which the
    /// project's redirect-URI policy no longer allows (the client
    /// registered before the policy was narrowed, e.g. strict mode).
    #[error("the redirect_uri's scheme is not allowed by this project's redirect URI policy")]
    RedirectUriNotAllowed,
    /// The client may not use the authorization-code grant.
    #[error("the client is not allowed to use the authorization code grant")]
    GrantNotAllowed,
}

impl ClientRequestError {
    /// The OAuth code for the error page.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownClient | Self::ClientMetadataUnavailable { .. } | Self::CimdDisabled => {
                ErrorCode::InvalidClient
            }
            Self::GrantNotAllowed | Self::DisabledClient => ErrorCode::UnauthorizedClient,
            _ => ErrorCode::InvalidRequest,
        }
    }

    /// A short machine-readable reason for logs and audit events, e.g.
    /// `redirect_uri_mismatch`.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::MissingClientId => "missing_client_id",
            Self::DuplicateParameter(_) => "duplicate_parameter",
            Self::MalformedClientId(_) => "malformed_client_id",
            Self::UnknownClient => "unknown_client",
            Self::DisabledClient => "disabled_client",
            Self::ClientMetadataUnavailable { .. } => "client_metadata_unavailable",
            Self::CimdDisabled => "cimd_disabled",
            Self::MissingRedirectUri => "missing_redirect_uri",
            Self::RedirectUriMismatch => "redirect_uri_mismatch",
            Self::RedirectUriNotAllowed => "redirect_uri_not_allowed",
            Self::GrantNotAllowed => "grant_type_not_allowed",
        }
    }

    /// As an [`OAuthError`] for the error page.
    pub fn to_oauth_error(&self) -> OAuthError {
        OAuthError::with_description(self.code(), self.to_string()).with_reason(self.reason())
    }
}

/// Phase 1, the `client_id` part: the parameter, parsed.
///
/// # Errors
/// [`ClientRequestError`].
pub fn parse_client_id(
    req: &AuthorizationRequest,
    settings: &ProjectSettings,
    url_policy: ClientIdUrlPolicy,
) -> Result<ClientId, ClientRequestError> {
    if req.is_duplicated("client_id") {
        return Err(ClientRequestError::DuplicateParameter("client_id"));
    }
    let raw = req.client_id.as_deref().ok_or(ClientRequestError::MissingClientId)?;
    let id = ClientId::parse_with(raw, url_policy).map_err(ClientRequestError::MalformedClientId)?;
    if matches!(id, ClientId::Metadata(_)) && !settings.cimd_enabled {
        return Err(ClientRequestError::CimdDisabled);
    }
    Ok(id)
}

/// Phase 1, the `redirect_uri` part, once the client is resolved: the exact
/// redirect URI to use.
///
/// `policy` is the project's redirect-URI policy in force now
/// ([`ProjectSettings::effective_redirect_uri_policy`]): a client that
/// registered a private-use scheme while the project allowed them gets no
/// redirect there once the project stops allowing them.
///
/// # Errors
/// [`ClientRequestError`].
pub fn check_redirect_uri(
    req: &AuthorizationRequest,
    client: &Client,
    policy: crate::redirect_uri::RedirectUriPolicy,
) -> Result<String, ClientRequestError> {
    if req.is_duplicated("redirect_uri") {
        return Err(ClientRequestError::DuplicateParameter("redirect_uri"));
    }
    if !client
        .metadata
        .grant_types
        .contains(&crate::client::GrantType::AuthorizationCode)
    {
        return Err(ClientRequestError::GrantNotAllowed);
    }
    let requested = req.redirect_uri.as_deref();
    match client.metadata.match_redirect_uri(requested) {
        Some(registered) if registered.private_use_scheme().is_some() && !policy.allow_private_use_schemes => {
            Err(ClientRequestError::RedirectUriNotAllowed)
        }
        Some(registered) => Ok(requested.unwrap_or(registered.as_str()).to_owned()),
        None if requested.is_none() => Err(ClientRequestError::MissingRedirectUri),
        None => Err(ClientRequestError::RedirectUriMismatch),
    }
}

/// A phase-2 failure: sent back to the client's redirect URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectError {
    /// Where to send the user.
    pub redirect_uri: String,
    /// The error.
    pub error: OAuthError,
    /// The request's `state`, echoed.
    pub state: Option<String>,
}

impl RedirectError {
    /// The `Location` of the error redirect, with `error`,
    /// `error_description`, `state` and `iss`.
    pub fn location(&self, issuer: &str) -> String {
        let mut params: Vec<(&str, &str)> = vec![("error", self.error.code().as_str())];
        if let Some(d) = self.error.description() {
            params.push(("error_description", d));
        }
        if let Some(s) = &self.state {
            params.push(("state", s));
        }
        params.push(("iss", issuer));
        append_query(&self.redirect_uri, &params)
    }
}

/// Everything the host's login and consent step needs, after both phases
/// passed. It is the authority for what will be granted, so it must never
/// round-trip through the browser: it is neither `Clone` nor
/// deserializable, its fields are read through accessors, and
/// [`crate::server::AuthorizationServer::approve`] and
/// [`crate::server::AuthorizationServer::deny`] consume it, so one pending
/// authorization is answered once. A host that keeps it between the
/// consent page's `GET` and `POST` parks it ([`PendingAuthorization::park`])
/// in its server-side session store.
///
/// It serializes (the JSON of its parked form) but cannot be copied, nor
/// read back from JSON:
///
/// ```compile_fail
/// fn copy(p: &authio_mcp::authorize::PendingAuthorization) -> authio_mcp::authorize::PendingAuthorization {
///     Clone::clone(p)
/// }
/// ```
///
/// ```compile_fail
/// let _: authio_mcp::authorize::PendingAuthorization = serde_json::from_str("{}").unwrap();
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// The project.
    pub(crate) project: ProjectId,
    /// The client.
    pub(crate) client_id: ClientId,
    /// The client's name, for display.
    pub(crate) client_name: Option<String>,
    /// The host of the `client_id` URL (CIMD clients): show it, it is the
    /// verified identity.
    pub(crate) client_id_host: Option<String>,
    /// The exact redirect URI the code will be sent to.
    pub(crate) redirect_uri: String,
    /// Its host, for display (MCP: MUST be shown).
    pub(crate) redirect_host: Option<String>,
    /// Every registered redirect URI is a loopback one: anyone can claim
    /// such a client, so warn the user. (A property of the client, for the
    /// consent page; whether THIS request may be approved by a remembered
    /// consent is [`PendingAuthorization::client_identity_assured`].)
    pub(crate) loopback_only: bool,
    /// The client authenticates at the token endpoint (a confidential
    /// client: a registered secret, or `private_key_jwt` keys), so a code
    /// that reaches another process is worthless without the client's
    /// credential. Pending authorizations stored before this field existed
    /// read back as public clients (the stricter answer).
    pub(crate) confidential: bool,
    /// The scopes that will be granted if the user approves: the requested
    /// ones this project and client support (or the defaults), which is
    /// what the consent page shows.
    pub(crate) scopes: ScopeSet,
    /// Requested scopes left out of [`PendingAuthorization::scopes`]
    /// because the project or the client does not support them ([RFC 6749
    /// section 3.3] lets the server grant less than asked).
    ///
    /// [RFC 6749 section 3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3
    pub(crate) dropped_scopes: ScopeSet,
    /// The client asked for `offline_access`, the request for a refresh
    /// token: one is issued when the project issues refresh tokens and the
    /// client may use the `refresh_token` grant.
    pub(crate) offline_access: bool,
    /// `prompt=login`: the host must authenticate the user again even with
    /// a session (OpenID Connect Core 1.0 section 3.1.2.1).
    pub(crate) force_login: bool,
    /// `prompt=consent`: the host must ask for consent again, even when
    /// the user's consent is remembered (the upstream login step then
    /// never skips the consent page).
    pub(crate) force_consent: bool,
    /// `prompt=none`: no page may be shown to the user (OpenID Connect
    /// Core 1.0 section 3.1.2.1). Only ever set for a request that goes
    /// through an upstream login ([`validate_request_with`] with
    /// [`RequestOptions::allow_prompt_none`]): the provider is asked for a
    /// silent sign-in, and the user's remembered consent must cover the
    /// request; otherwise the client gets `login_required` /
    /// `consent_required`. [`validate_request`] refuses `prompt=none`.
    pub(crate) prompt_none: bool,
    /// `login_hint`, for prefilling the login form (at most 256 characters,
    /// no control characters; dropped otherwise). Never trust it as an
    /// identity.
    pub(crate) login_hint: Option<String>,
    /// The redirect URI uses a private-use scheme ([RFC 8252 section 7.1],
    /// e.g. `cursor`): the code goes to whichever app on the user's device
    /// claimed that scheme. Name it on the consent page, with a warning.
    ///
    /// [RFC 8252 section 7.1]: https://www.rfc-editor.org/rfc/rfc8252#section-7.1
    pub(crate) app_scheme: Option<String>,
    /// The requested resources (audiences).
    pub(crate) resources: ResourceSet,
    /// `state`, echoed on the redirect.
    pub(crate) state: Option<String>,
    /// The PKCE challenge.
    pub(crate) code_challenge: CodeChallenge,
    /// The OpenID Connect `nonce`, carried to the ID token.
    pub(crate) nonce: Option<String>,
    /// When the request was validated.
    pub(crate) created_at: OffsetDateTime,
    /// Everything a consent page shows, verified facts first (see
    /// [`crate::presentation`]): the built-in page renders it, and a host's
    /// own page should show the same. Pending authorizations stored before
    /// this field existed read back with an empty one.
    pub(crate) presentation: ConsentPresentation,
}

/// A [`PendingAuthorization`] parked for server-side storage between the
/// consent page's `GET` and its `POST`, or inside an upstream login record
/// ([`crate::upstream::UpstreamLogin`]): an opaque handle, serializable
/// (JSON) so that a session or login store can keep it, and turned back
/// into the pending authorization with [`ParkedAuthorization::resume`].
///
/// # Security
/// Server-side storage only: the serialized form is not authenticated
/// (anyone who can edit it can widen the scopes or change the redirect
/// URI), so never send it to the browser or accept it from one. It is not
/// `Clone`: resume it once.
///
/// ```compile_fail
/// fn copy(p: &authio_mcp::authorize::ParkedAuthorization) -> authio_mcp::authorize::ParkedAuthorization {
///     Clone::clone(p)
/// }
/// ```
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParkedAuthorization(#[serde(with = "PendingAuthorizationForm")] pub(crate) PendingAuthorization);

impl ParkedAuthorization {
    /// The pending authorization, to show its consent page or answer it.
    pub fn resume(self) -> PendingAuthorization {
        self.0
    }

    /// A copy, for a store that must keep the record it returns (the
    /// in-memory upstream login store). Not public: a host gets one
    /// pending authorization per request.
    pub(crate) fn duplicate(&self) -> Self {
        Self(self.0.duplicate())
    }
}

/// The same JSON as its parked form: for measuring or inspecting it
/// server-side. It does not read back: park it to store it.
impl Serialize for PendingAuthorization {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PendingAuthorizationForm::serialize(self, serializer)
    }
}

/// The stored (JSON) form of a [`PendingAuthorization`], used only through
/// [`ParkedAuthorization`]. Its fields and serde attributes are the ones
/// `PendingAuthorization` serialized with before it was parked, so records
/// stored then still read.
#[derive(Serialize, Deserialize)]
#[serde(remote = "PendingAuthorization")]
struct PendingAuthorizationForm {
    project: ProjectId,
    client_id: ClientId,
    client_name: Option<String>,
    client_id_host: Option<String>,
    redirect_uri: String,
    redirect_host: Option<String>,
    loopback_only: bool,
    #[serde(default)]
    confidential: bool,
    scopes: ScopeSet,
    #[serde(default, skip_serializing_if = "ScopeSet::is_empty")]
    dropped_scopes: ScopeSet,
    #[serde(default)]
    offline_access: bool,
    #[serde(default)]
    force_login: bool,
    #[serde(default)]
    force_consent: bool,
    #[serde(default)]
    prompt_none: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    login_hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_scheme: Option<String>,
    resources: ResourceSet,
    state: Option<String>,
    code_challenge: CodeChallenge,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(with = "time::serde::timestamp")]
    created_at: OffsetDateTime,
    #[serde(default)]
    presentation: ConsentPresentation,
}

/// How phase 2 treats what depends on the request's context: the issuer
/// (whose host names the service on the consent page when the project has
/// no display name) and the login step that follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions<'a> {
    /// The project's issuer.
    pub issuer: &'a str,
    /// Accept `prompt=none` (setting [`PendingAuthorization::prompt_none`])
    /// instead of refusing it with `consent_required`. Only for a request
    /// whose login is an upstream login, where a silent sign-in at the
    /// provider and the user's remembered consent can answer it without a
    /// page.
    pub allow_prompt_none: bool,
}

impl<'a> RequestOptions<'a> {
    /// The defaults for `issuer`: `prompt=none` is refused.
    pub const fn new(issuer: &'a str) -> Self {
        Self {
            issuer,
            allow_prompt_none: false,
        }
    }

    /// Sets [`RequestOptions::allow_prompt_none`].
    #[must_use]
    pub const fn allow_prompt_none(mut self, allow: bool) -> Self {
        self.allow_prompt_none = allow;
        self
    }
}

/// Phase 2: everything but the client and redirect URI. `issuer` is the
/// project's issuer, whose host names the service on the consent page when
/// the project has no display name. `prompt=none` is refused with
/// `consent_required` (see [`validate_request_with`]).
///
/// # Errors
/// A [`RedirectError`] to send back to the client.
pub fn validate_request(
    req: &AuthorizationRequest,
    project: &ProjectId,
    settings: &ProjectSettings,
    client: &Client,
    redirect_uri: String,
    issuer: &str,
    now: OffsetDateTime,
) -> Result<PendingAuthorization, RedirectError> {
    validate_request_with(
        req,
        project,
        settings,
        client,
        redirect_uri,
        now,
        RequestOptions::new(issuer),
    )
}

/// Phase 2 with [`RequestOptions`].
///
/// # Errors
/// A [`RedirectError`] to send back to the client.
pub fn validate_request_with(
    req: &AuthorizationRequest,
    project: &ProjectId,
    settings: &ProjectSettings,
    client: &Client,
    redirect_uri: String,
    now: OffsetDateTime,
    options: RequestOptions<'_>,
) -> Result<PendingAuthorization, RedirectError> {
    let issuer = options.issuer;
    let fail = |code: ErrorCode, reason: &'static str, description: Cow<'static, str>| RedirectError {
        redirect_uri: redirect_uri.clone(),
        error: OAuthError::with_description(code, description).with_reason(reason),
        state: req.state.clone().filter(|s| s.len() <= MAX_STATE),
    };
    if let Some(name) = req.duplicated.first() {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "duplicate_parameter",
            format!("the {name} parameter appears more than once").into(),
        ));
    }
    if req.state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "state_too_long",
            "state is too long".into(),
        ));
    }
    if req
        .nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_STATE || n.chars().any(char::is_control))
    {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "malformed_nonce",
            "nonce is too long or malformed".into(),
        ));
    }
    if req.request_object {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "request_object",
            "request objects are not supported".into(),
        ));
    }
    match req.response_type.as_deref() {
        Some("code") => {}
        None => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "missing_response_type",
                "response_type is required".into(),
            ));
        }
        Some(_) => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ));
        }
    }
    let code_challenge =
        CodeChallenge::from_request(req.code_challenge.as_deref(), req.code_challenge_method.as_deref())
            .map_err(|e| fail(e.code(), e.reason(), e.to_string().into()))?;
    let scopes = resolve_scopes(req.scope.as_deref(), settings, client)
        .map_err(|e| fail(e.code(), "scope_refused", e.description))?;
    let resources =
        resolve_resources(&req.resource, settings).map_err(|e| fail(e.code(), "resource_refused", e.description))?;
    let prompt = Prompt::parse(req.prompt.as_deref()).map_err(|e| fail(e.code(), "invalid_prompt", e.description))?;
    if prompt.none && !options.allow_prompt_none {
        // Without an upstream login there is no remembered consent to
        // answer with, so a request that forbids interaction can never be
        // approved silently (OpenID Connect Core 1.0 section 3.1.2.6).
        return Err(fail(
            ErrorCode::ConsentRequired,
            "consent_required",
            "prompt=none, but the user must consent to this request".into(),
        ));
    }
    if prompt.none && !identity_assured(client.is_confidential(), &redirect_uri) {
        // No remembered consent can answer for a client whose identity
        // this request does not assure, so a request that forbids
        // interaction fails at once, before any sign-in.
        return Err(fail(
            ErrorCode::ConsentRequired,
            "client_identity_not_assured",
            "prompt=none, but this client's redirect URI can be claimed by any app on the device, so the user must consent"
                .into(),
        ));
    }
    let client_id_host = match &client.client_id {
        ClientId::Metadata(url) => Some(url.host().to_owned()),
        ClientId::Registered(_) => None,
    };
    let registered = client.metadata.match_redirect_uri(Some(&redirect_uri));
    let redirect_host = registered.and_then(RedirectUri::host);
    let app_scheme = registered.and_then(RedirectUri::private_use_scheme).map(str::to_owned);
    let login_hint = req
        .login_hint
        .clone()
        .filter(|h| !h.is_empty() && h.chars().count() <= MAX_LOGIN_HINT && !h.chars().any(char::is_control));
    let mut pending = PendingAuthorization {
        project: project.clone(),
        client_id: client.client_id.clone(),
        client_name: client.metadata.client_name.clone(),
        client_id_host,
        redirect_host,
        loopback_only: client.metadata.all_redirects_loopback(),
        confidential: client.is_confidential(),
        redirect_uri,
        scopes: scopes.granted,
        dropped_scopes: scopes.dropped,
        offline_access: scopes.offline_access,
        force_login: prompt.login,
        force_consent: prompt.consent,
        prompt_none: prompt.none,
        login_hint,
        app_scheme,
        resources,
        state: req.state.clone(),
        code_challenge,
        nonce: req.nonce.clone().filter(|n| !n.is_empty()),
        created_at: now,
        presentation: ConsentPresentation::default(),
    };
    pending.presentation = ConsentPresentation::new(settings, client, &pending, issuer);
    Ok(pending)
}

impl ConsentPresentation {
    /// What the consent page for `pending` shows, from the project's
    /// settings, the resolved client and the issuer the project uses.
    /// [`validate_request`] calls it. (Defined here, above
    /// [`crate::presentation`], which knows nothing of requests.)
    pub fn new(settings: &ProjectSettings, client: &Client, pending: &PendingAuthorization, issuer: &str) -> Self {
        let display = &settings.display;
        let service = ServiceDisplay {
            name: display
                .name
                .clone()
                .or_else(|| presentation::url_host(issuer))
                .unwrap_or_else(|| issuer.to_owned()),
            logo_uri: display.logo_uri.clone(),
        };
        let (identity, verified_host) = match &client.client_id {
            ClientId::Metadata(url) => {
                let host = url.host().to_owned();
                (ClientIdentity::Verified { host: host.clone() }, Some(host))
            }
            ClientId::Registered(id) => (
                ClientIdentity::Unverified {
                    client_id: id.as_str().to_owned(),
                },
                None,
            ),
        };
        let meta = &client.metadata;
        let link = |kind: LinkKind, uri: &Option<String>| {
            presentation::client_link(kind, uri.as_deref(), verified_host.as_deref())
        };
        let links = [
            link(LinkKind::Homepage, &meta.client_uri),
            link(LinkKind::Terms, &meta.tos_uri),
            link(LinkKind::Privacy, &meta.policy_uri),
        ]
        .into_iter()
        .flatten()
        .collect();
        let client_display = ClientDisplay {
            identity,
            name: meta.client_name.clone(),
            logo: link(LinkKind::Logo, &meta.logo_uri),
            links,
        };
        let describe = |scope: &str| ScopeDisplay {
            scope: scope.to_owned(),
            description: display.scope_description(scope).map(Cow::into_owned),
        };
        let mut scopes: Vec<ScopeDisplay> = pending
            .scopes
            .iter()
            .map(Scope::as_str)
            .filter(|s| *s != OFFLINE_ACCESS)
            .map(describe)
            .collect();
        if pending.offline_access && settings.issues_refresh_tokens() && meta.allows_refresh() {
            scopes.push(describe(OFFLINE_ACCESS));
        }
        let resources = pending
            .resources
            .iter()
            .map(|r| ResourceDisplay {
                uri: r.canonical().to_owned(),
                // Names live in the known-resource list only
                // (`ProjectSettings::resources`).
                name: settings.resource_name(r).map(str::to_owned),
            })
            .collect();
        Self {
            service,
            client: client_display,
            redirect: RedirectDisplay {
                host: pending.redirect_host.clone(),
                app_scheme: pending.app_scheme.clone(),
                loopback_only: pending.loopback_only,
            },
            scopes,
            dropped_scopes: pending.dropped_scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            resources,
        }
    }
}

/// See [`PendingAuthorization::client_identity_assured`]: a redirect URI
/// that does not parse is judged claimable (the stricter answer).
fn identity_assured(confidential: bool, redirect_uri: &str) -> bool {
    confidential
        || RedirectUri::parse_with(
            redirect_uri,
            crate::redirect_uri::RedirectUriPolicy::with_private_use_schemes(),
        )
        .is_ok_and(|r| !r.is_claimable_on_device())
}

/// A scope or resource failure, before it becomes a redirect or a token error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterError {
    code: ErrorCode,
    description: Cow<'static, str>,
}

impl ParameterError {
    fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// The code (`invalid_scope` or `invalid_target`).
    pub const fn code(&self) -> ErrorCode {
        self.code
    }
}

impl std::fmt::Display for ParameterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for ParameterError {}

impl From<ParameterError> for OAuthError {
    fn from(e: ParameterError) -> Self {
        Self::with_description(e.code, e.description)
    }
}

/// The `prompt` values this server acts on (OpenID Connect Core 1.0
/// section 3.1.2.1). Other values (`select_account`, `create`, unknown
/// ones) are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Prompt {
    /// `none`: no user interaction allowed.
    pub none: bool,
    /// `login`: authenticate again.
    pub login: bool,
    /// `consent`: ask for consent again.
    pub consent: bool,
}

impl Prompt {
    /// Parses the space-delimited `prompt` parameter.
    ///
    /// # Errors
    /// `invalid_request` when `none` is combined with another value.
    pub fn parse(prompt: Option<&str>) -> Result<Self, ParameterError> {
        let mut p = Self::default();
        let mut values = 0usize;
        for v in prompt.unwrap_or_default().split(' ').filter(|v| !v.is_empty()) {
            values += 1;
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                _ => {}
            }
        }
        if p.none && values > 1 {
            return Err(ParameterError::new(
                ErrorCode::InvalidRequest,
                "prompt=none must not be combined with other values",
            ));
        }
        Ok(p)
    }
}

/// The scopes an authorization request will grant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeResolution {
    /// What will be granted.
    pub granted: ScopeSet,
    /// Requested scopes the project or the client does not support, left
    /// out (never in strict mode, which refuses them instead).
    pub dropped: ScopeSet,
    /// `offline_access` was requested: the client wants a refresh token.
    pub offline_access: bool,
}

/// The scopes of a request.
///
/// - None requested: the project's default scopes (narrowed to the
///   client's registered `scope`, if any).
/// - `offline_access` is always understood as the request for a refresh
///   token; it stays in the granted set only when the project lists it in
///   `scopes_supported` (and the client's registered `scope`, if any).
/// - Any other scope the project (its non-empty `scopes_supported`) or the
///   client (its registered `scope`) does not support: in strict mode the
///   request fails with `invalid_scope`; otherwise the scope is dropped
///   ([RFC 6749 section 3.3]). When nothing but `offline_access` and dropped
///   scopes was requested, the defaults apply as if none had been.
///
/// # Errors
/// `invalid_scope` for a malformed scope, or an unsupported one in strict
/// mode.
///
/// [RFC 6749 section 3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3
pub fn resolve_scopes(
    requested: Option<&str>,
    settings: &ProjectSettings,
    client: &Client,
) -> Result<ScopeResolution, ParameterError> {
    let client_scopes = client.metadata.scope.as_ref();
    let defaults = || match client_scopes {
        Some(c) => settings.default_scopes.intersection(c),
        None => settings.default_scopes.clone(),
    };
    let Some(s) = requested.filter(|s| !s.is_empty()) else {
        return Ok(ScopeResolution {
            granted: defaults(),
            ..ScopeResolution::default()
        });
    };
    let set = ScopeSet::parse(s).map_err(|e| ParameterError::new(e.code(), e.to_string()))?;
    let mut out = ScopeResolution::default();
    let mut asked_for_something = false;
    for scope in &set {
        let offline = scope.as_str() == OFFLINE_ACCESS;
        out.offline_access |= offline;
        let by_project = settings.scopes_supported.is_empty() || settings.scopes_supported.contains(scope.as_str());
        let by_client = client_scopes.is_none_or(|c| c.contains(scope.as_str()));
        if by_project && by_client {
            out.granted.insert(scope.clone());
            asked_for_something |= !offline;
            continue;
        }
        if offline {
            continue;
        }
        if settings.strict_mode {
            let whose = if by_project {
                "registered for this client"
            } else {
                "supported by this project"
            };
            return Err(ParameterError::new(
                ErrorCode::InvalidScope,
                format!("scope {scope} is not {whose}"),
            ));
        }
        out.dropped.insert(scope.clone());
    }
    if !asked_for_something {
        for d in &defaults() {
            out.granted.insert(d.clone());
        }
    }
    Ok(out)
}

/// The resources of an authorization request: the requested ones if valid
/// and accepted ([`ProjectSettings::accepts_resource`]: by default only the
/// project's known resources), else the project's default resource, else
/// an empty set unless the project requires one.
///
/// # Errors
/// `invalid_target`.
pub fn resolve_resources(requested: &[String], settings: &ProjectSettings) -> Result<ResourceSet, ParameterError> {
    if requested.len() > MAX_RESOURCES {
        return Err(ParameterError::new(
            ErrorCode::InvalidTarget,
            "too many resource parameters",
        ));
    }
    let mut set = ResourceSet::new();
    for raw in requested {
        let r = ResourceUri::parse(raw.as_str()).map_err(|e| ParameterError::new(e.code(), e.to_string()))?;
        if !settings.accepts_resource(&r) {
            return Err(ParameterError::new(
                ErrorCode::InvalidTarget,
                format!("the resource {r} is not known to this project"),
            ));
        }
        set.insert(r);
    }
    if set.is_empty() {
        match &settings.default_resource {
            Some(d) => set.insert(d.clone()),
            None if settings.require_resource => {
                return Err(ParameterError::new(
                    ErrorCode::InvalidTarget,
                    "a resource parameter is required",
                ));
            }
            None => {}
        }
    }
    Ok(set)
}

/// Why an approval was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The host tried to grant scopes that were not requested.
    #[error("granted scopes must be a subset of the requested scopes")]
    ScopeWidening,
    /// The user took longer than [`PENDING_AUTHORIZATION_TTL`].
    #[error("the authorization request has expired")]
    Expired,
}

/// An approved authorization: the code (shown once), its record, and the
/// redirect.
#[derive(Debug)]
#[non_exhaustive]
pub struct Approval {
    /// The authorization code.
    pub code: SecretString,
    /// What to store (hash only).
    pub record: CodeRecord,
    /// The `Location` to redirect the user to (`code`, `state`, `iss`).
    pub location: String,
}

/// Random inputs of an approval, drawn by the driver.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalRandomness {
    /// For the grant id.
    pub grant_id: [u8; 16],
    /// For the code.
    pub code: [u8; 32],
}

impl PendingAuthorization {
    /// Parks it for server-side storage (see [`ParkedAuthorization`]).
    pub fn park(self) -> ParkedAuthorization {
        ParkedAuthorization(self)
    }

    /// The project.
    pub const fn project(&self) -> &ProjectId {
        &self.project
    }

    /// The client.
    pub const fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// The client's name, for display.
    pub fn client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// The host of the `client_id` URL (CIMD clients): show it, it is the
    /// verified identity.
    pub fn client_id_host(&self) -> Option<&str> {
        self.client_id_host.as_deref()
    }

    /// The exact redirect URI the code will be sent to.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Its host, for display (MCP: MUST be shown).
    pub fn redirect_host(&self) -> Option<&str> {
        self.redirect_host.as_deref()
    }

    /// Every registered redirect URI is a loopback one: anyone can claim
    /// such a client, so warn the user. (A property of the client, for the
    /// consent page; whether THIS request may be approved by a remembered
    /// consent is [`PendingAuthorization::client_identity_assured`].)
    pub const fn loopback_only(&self) -> bool {
        self.loopback_only
    }

    /// The client authenticates at the token endpoint (a confidential
    /// client: a registered secret, or `private_key_jwt` keys), so a code
    /// that reaches another process is worthless without the client's
    /// credential.
    pub const fn confidential(&self) -> bool {
        self.confidential
    }

    /// The scopes that will be granted if the user approves: the requested
    /// ones this project and client support (or the defaults), which is
    /// what the consent page shows.
    pub const fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// Requested scopes left out of [`PendingAuthorization::scopes`]
    /// because the project or the client does not support them ([RFC 6749
    /// section 3.3] lets the server grant less than asked).
    ///
    /// [RFC 6749 section 3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3
    pub const fn dropped_scopes(&self) -> &ScopeSet {
        &self.dropped_scopes
    }

    /// The client asked for `offline_access`, the request for a refresh
    /// token: one is issued when the project issues refresh tokens and the
    /// client may use the `refresh_token` grant.
    pub const fn offline_access(&self) -> bool {
        self.offline_access
    }

    /// `prompt=login`: the host must authenticate the user again even with
    /// a session (OpenID Connect Core 1.0 section 3.1.2.1).
    pub const fn force_login(&self) -> bool {
        self.force_login
    }

    /// `prompt=consent`: the host must ask for consent again, even when
    /// the user's consent is remembered.
    pub const fn force_consent(&self) -> bool {
        self.force_consent
    }

    /// `prompt=none`: no page may be shown to the user (OpenID Connect
    /// Core 1.0 section 3.1.2.1); only ever set for a request that goes
    /// through an upstream login ([`RequestOptions::allow_prompt_none`]).
    pub const fn prompt_none(&self) -> bool {
        self.prompt_none
    }

    /// `login_hint`, for prefilling the login form (at most 256
    /// characters, no control characters). Never trust it as an identity.
    pub fn login_hint(&self) -> Option<&str> {
        self.login_hint.as_deref()
    }

    /// The private-use scheme of the redirect URI ([RFC 8252 section 7.1],
    /// e.g. `cursor`), if it uses one: name it on the consent page, with a
    /// warning.
    ///
    /// [RFC 8252 section 7.1]: https://www.rfc-editor.org/rfc/rfc8252#section-7.1
    pub fn app_scheme(&self) -> Option<&str> {
        self.app_scheme.as_deref()
    }

    /// The requested resources (audiences).
    pub const fn resources(&self) -> &ResourceSet {
        &self.resources
    }

    /// `state`, echoed on the redirect.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The PKCE challenge.
    pub const fn code_challenge(&self) -> &CodeChallenge {
        &self.code_challenge
    }

    /// The OpenID Connect `nonce`, carried to the ID token.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// When the request was validated.
    pub const fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// Everything a consent page shows, verified facts first (see
    /// [`crate::presentation`]): the built-in page renders it, and a host's
    /// own page should show the same.
    pub const fn presentation(&self) -> &ConsentPresentation {
        &self.presentation
    }

    /// A copy, for the crate's own flows that keep the authorization to
    /// report a failure after handing it on. Not public: see the type's
    /// docs.
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            project: self.project.clone(),
            client_id: self.client_id.clone(),
            client_name: self.client_name.clone(),
            client_id_host: self.client_id_host.clone(),
            redirect_uri: self.redirect_uri.clone(),
            redirect_host: self.redirect_host.clone(),
            loopback_only: self.loopback_only,
            confidential: self.confidential,
            scopes: self.scopes.clone(),
            dropped_scopes: self.dropped_scopes.clone(),
            offline_access: self.offline_access,
            force_login: self.force_login,
            force_consent: self.force_consent,
            prompt_none: self.prompt_none,
            login_hint: self.login_hint.clone(),
            app_scheme: self.app_scheme.clone(),
            resources: self.resources.clone(),
            state: self.state.clone(),
            code_challenge: self.code_challenge.clone(),
            nonce: self.nonce.clone(),
            created_at: self.created_at,
            presentation: self.presentation.clone(),
        }
    }

    /// Whether the client's identity is assured for THIS request, so that
    /// a consent the user gave the client before may answer it without a
    /// page: the client is confidential, or the code goes to a redirect
    /// URI that no other process on the user's device can claim. A public
    /// client redirecting to a loopback URI or a private-use scheme (any
    /// local process or installed app can claim those, [RFC 8252 section
    /// 8.6]) is not, whatever else it registered: its user is asked every
    /// time, and `prompt=none` gets `consent_required` (OpenID Connect
    /// Core 1.0 section 3.1.2.6).
    ///
    /// [RFC 8252 section 8.6]: https://www.rfc-editor.org/rfc/rfc8252#section-8.6
    pub fn client_identity_assured(&self) -> bool {
        identity_assured(self.confidential, &self.redirect_uri)
    }

    /// Approves for `subject`, granting `granted` scopes (a subset of the
    /// requested ones; `None` grants all requested).
    ///
    /// # Errors
    /// [`ApprovalError`].
    pub fn approve(
        self,
        subject: Subject,
        granted: Option<ScopeSet>,
        issuer: &str,
        code_ttl: Duration,
        random: ApprovalRandomness,
        now: OffsetDateTime,
    ) -> Result<Approval, ApprovalError> {
        if now - self.created_at > PENDING_AUTHORIZATION_TTL {
            return Err(ApprovalError::Expired);
        }
        let scopes = match granted {
            Some(g) if !g.is_subset_of(&self.scopes) => return Err(ApprovalError::ScopeWidening),
            Some(g) => g,
            None => self.scopes,
        };
        let code = SecretString::random_with_prefix("ac_", &random.code);
        let mut params = vec![("code", code.expose_secret())];
        if let Some(s) = &self.state {
            params.push(("state", s));
        }
        params.push(("iss", issuer));
        let location = append_query(&self.redirect_uri, &params);
        let record = CodeRecord {
            hash: code.hash(),
            grant: Grant {
                id: GrantId::from_random(&random.grant_id),
                project: self.project,
                client_id: self.client_id,
                subject,
                scopes,
                resources: self.resources,
                granted_at: now,
            },
            redirect_uri: self.redirect_uri,
            code_challenge: self.code_challenge,
            nonce: self.nonce,
            expires_at: now + code_ttl.min(crate::project::MAX_CODE_TTL),
            consumed: false,
        };
        Ok(Approval { code, record, location })
    }

    /// Denies: the redirect carries `error=access_denied`, `state`, `iss`.
    pub fn deny(self, issuer: &str) -> String {
        RedirectError {
            redirect_uri: self.redirect_uri,
            error: OAuthError::with_description(ErrorCode::AccessDenied, "the user denied the request"),
            state: self.state,
        }
        .location(issuer)
    }
}

/// Appends form-encoded parameters to a URI that may already have a query.
fn append_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let query = ser.finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}
