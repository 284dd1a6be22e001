//! The token endpoint (OAuth 2.1 section 3.2), revocation ([RFC 7009]) and
//! introspection ([RFC 7662]): request parsing, the checks that must pass
//! before any state changes, and the response shapes.
//!
//! The checks here are pure: the driver looks records up, calls these,
//! and only then consumes a code or rotates a refresh token, in one atomic
//! store call (SPEC-CHECKLIST: validate `resource` and `scope` before any
//! state change).
//!
//! [RFC 7009]: https://www.rfc-editor.org/rfc/rfc7009
//! [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::client::ClientId;
use crate::error::{ErrorCode, OAuthError};
use crate::grant::{
    AccessTokenClaims, AccessTokenRecord, CodeRecord, Grant, RefreshTokenRecord, RotationMark, RotationNonce,
};
use crate::pkce::{CodeVerifier, PkceError};
use crate::project::ProjectSettings;
use crate::resource::{ResourceError, ResourceSet};
use crate::scope::{ScopeError, ScopeSet};
use crate::secret::{SecretHash, SecretString, hmac_sha256};

/// The parameters of a token request (`application/x-www-form-urlencoded`,
/// RFC 6749 section 4.1.3,
/// <https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3>, and section 6,
/// <https://www.rfc-editor.org/rfc/rfc6749#section-6>).
///
/// Codes, verifiers, refresh tokens, client secrets and assertions are
/// [`SecretString`]s: `Debug` redacts them and they compare only in
/// constant time.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `code`.
    pub code: Option<SecretString>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `code_verifier` (RFC 7636 section 4.5,
    /// <https://www.rfc-editor.org/rfc/rfc7636#section-4.5>).
    pub code_verifier: Option<SecretString>,
    /// `refresh_token`.
    pub refresh_token: Option<SecretString>,
    /// `scope`.
    pub scope: Option<String>,
    /// `resource`, every occurrence (RFC 8707 section 2,
    /// <https://www.rfc-editor.org/rfc/rfc8707#section-2>).
    pub resource: Vec<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `client_secret` (RFC 6749 section 2.3.1,
    /// <https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1>).
    pub client_secret: Option<SecretString>,
    /// `client_assertion_type` (RFC 7521 section 4.2,
    /// <https://www.rfc-editor.org/rfc/rfc7521#section-4.2>).
    pub client_assertion_type: Option<String>,
    /// `client_assertion` (RFC 7521 section 4.2,
    /// <https://www.rfc-editor.org/rfc/rfc7521#section-4.2>).
    pub client_assertion: Option<SecretString>,
}

impl TokenRequest {
    /// Parses a form body. Every parameter but `resource` may appear once
    /// (RFC 6749 section 3.2,
    /// <https://www.rfc-editor.org/rfc/rfc6749#section-3.2>).
    ///
    /// # Errors
    /// [`TokenError::DuplicateParameter`].
    pub fn from_form(body: &[u8]) -> Result<Self, TokenError> {
        let mut req = Self::default();
        for (name, value) in url::form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "grant_type" => Slot::Plain(&mut req.grant_type),
                "code" => Slot::Secret(&mut req.code),
                "redirect_uri" => Slot::Plain(&mut req.redirect_uri),
                "code_verifier" => Slot::Secret(&mut req.code_verifier),
                "refresh_token" => Slot::Secret(&mut req.refresh_token),
                "scope" => Slot::Plain(&mut req.scope),
                "client_id" => Slot::Plain(&mut req.client_id),
                "client_secret" => Slot::Secret(&mut req.client_secret),
                "client_assertion_type" => Slot::Plain(&mut req.client_assertion_type),
                "client_assertion" => Slot::Secret(&mut req.client_assertion),
                "resource" => {
                    req.resource.push(value.into_owned());
                    continue;
                }
                _ => continue,
            };
            let filled = match slot {
                Slot::Plain(s) => s.replace(value.into_owned()).is_some(),
                Slot::Secret(s) => s.replace(SecretString::new(value.into_owned())).is_some(),
            };
            if filled {
                return Err(TokenError::DuplicateParameter(name.into_owned()));
            }
        }
        Ok(req)
    }
}

/// Where one form parameter goes.
enum Slot<'a> {
    Plain(&'a mut Option<String>),
    Secret(&'a mut Option<SecretString>),
}

/// Why a token request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// A parameter appeared twice.
    #[error("the {0} parameter appears more than once")]
    DuplicateParameter(String),
    /// A required parameter is missing.
    #[error("the {0} parameter is required")]
    MissingParameter(&'static str),
    /// An unknown or unsupported `grant_type`.
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    /// The client may not use this grant type.
    #[error("the client is not allowed to use this grant type")]
    UnauthorizedClient,
    /// The code or refresh token is unknown, expired, revoked, or was
    /// issued to another client. Deliberately one undifferentiated answer.
    #[error("the {0} is invalid, expired, revoked, or was issued to another client")]
    InvalidGrant(&'static str),
    /// `redirect_uri` differs from the authorization request's.
    #[error("redirect_uri does not match the authorization request")]
    RedirectUriMismatch,
    /// PKCE failed.
    #[error(transparent)]
    Pkce(#[from] PkceError),
    /// A scope outside the grant.
    #[error("the requested scope exceeds the granted scope")]
    ScopeWidening,
    /// A malformed scope.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A resource outside the grant.
    #[error("the requested resource was not granted")]
    ResourceWidening,
    /// A malformed resource.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A scope or resource the project refuses (client credentials).
    #[error(transparent)]
    Parameter(#[from] crate::authorize::ParameterError),
}

impl TokenError {
    /// The [RFC 6749 section 5.2] code.
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::DuplicateParameter(_) | Self::MissingParameter(_) => ErrorCode::InvalidRequest,
            Self::UnsupportedGrantType => ErrorCode::UnsupportedGrantType,
            Self::UnauthorizedClient => ErrorCode::UnauthorizedClient,
            Self::InvalidGrant(_) | Self::RedirectUriMismatch => ErrorCode::InvalidGrant,
            Self::Pkce(e) => match e {
                PkceError::Mismatch => ErrorCode::InvalidGrant,
                _ => ErrorCode::InvalidRequest,
            },
            Self::ScopeWidening | Self::Scope(_) => ErrorCode::InvalidScope,
            Self::ResourceWidening | Self::Resource(_) => ErrorCode::InvalidTarget,
            Self::Parameter(e) => e.code(),
        }
    }
}

impl TokenError {
    /// A short machine-readable reason for logs and audit events, e.g.
    /// `invalid_code` or `pkce_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DuplicateParameter(_) => "duplicate_parameter",
            Self::MissingParameter(_) => "missing_parameter",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnauthorizedClient => "grant_type_not_allowed",
            Self::InvalidGrant(what) if what.starts_with("refresh") => "invalid_refresh_token",
            Self::InvalidGrant(_) => "invalid_code",
            Self::RedirectUriMismatch => "redirect_uri_mismatch",
            Self::Pkce(e) => e.reason(),
            Self::ScopeWidening => "scope_widening",
            Self::Scope(_) => "invalid_scope",
            Self::ResourceWidening => "resource_widening",
            Self::Resource(_) => "invalid_resource",
            Self::Parameter(_) => "parameter_refused",
        }
    }
}

impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> Self {
        Self::with_description(e.code(), e.to_string()).with_reason(e.reason())
    }
}

/// The supported grant types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantTypeParam {
    /// `authorization_code`.
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials` ([RFC 6749 section 4.4]).
    ///
    /// [RFC 6749 section 4.4]: https://www.rfc-editor.org/rfc/rfc6749#section-4.4
    ClientCredentials,
}

impl GrantTypeParam {
    /// The `grant_type` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

impl TokenRequest {
    /// The grant type.
    ///
    /// # Errors
    /// `invalid_request` when missing, `unsupported_grant_type` otherwise.
    pub fn grant_type(&self) -> Result<GrantTypeParam, TokenError> {
        match self.grant_type.as_deref() {
            None => Err(TokenError::MissingParameter("grant_type")),
            Some("authorization_code") => Ok(GrantTypeParam::AuthorizationCode),
            Some("refresh_token") => Ok(GrantTypeParam::RefreshToken),
            Some("client_credentials") => Ok(GrantTypeParam::ClientCredentials),
            Some(_) => Err(TokenError::UnsupportedGrantType),
        }
    }
}

/// What a successful check allows: the scopes and resources of the tokens
/// to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Issuance {
    /// Scopes of the new tokens.
    pub scopes: ScopeSet,
    /// Resources (audiences) of the new tokens.
    pub resources: ResourceSet,
}

/// SHA-256 of an issuance (scopes, then each audience, NUL-separated): what
/// a rotation's [`crate::grant::RotationMark`] records so that a
/// presentation within the reuse grace is answered only when it asks for
/// the same.
pub fn issuance_digest(issuance: &Issuance) -> SecretHash {
    let mut s = issuance.scopes.to_string();
    for a in issuance.resources.audiences() {
        s.push('\0');
        s.push_str(&a);
    }
    SecretHash::of(&s)
}

/// Everything about an authorization-code redemption that can be checked
/// without changing state: client, expiry, `redirect_uri`, PKCE, and that
/// `scope` / `resource` only narrow the grant. Whether the code was
/// already consumed is the caller's next question (replay handling).
///
/// # Errors
/// A [`TokenError`].
pub fn check_code_redemption(
    record: &CodeRecord,
    client_id: &ClientId,
    req: &TokenRequest,
    now: OffsetDateTime,
) -> Result<Issuance, TokenError> {
    if &record.grant.client_id != client_id || now >= record.expires_at {
        return Err(TokenError::InvalidGrant("authorization code"));
    }
    if let Some(r) = &req.redirect_uri
        && r != &record.redirect_uri
    {
        return Err(TokenError::RedirectUriMismatch);
    }
    let verifier = req
        .code_verifier
        .as_ref()
        .map(SecretString::expose_secret)
        .ok_or(PkceError::VerifierMissing)?;
    let verifier = CodeVerifier::new(verifier)?;
    record.code_challenge.verify(&verifier)?;
    narrow(&record.grant.scopes, &record.grant.resources, req)
}

/// Everything about a refresh that can be checked without changing state:
/// client, expiry, and narrowing. Whether the token was already rotated is
/// the caller's next question (reuse detection).
///
/// # Errors
/// A [`TokenError`].
pub fn check_refresh(
    record: &RefreshTokenRecord,
    client_id: &ClientId,
    req: &TokenRequest,
    now: OffsetDateTime,
) -> Result<Issuance, TokenError> {
    if &record.grant.client_id != client_id || now >= record.expires_at {
        return Err(TokenError::InvalidGrant("refresh token"));
    }
    narrow(&record.scopes, &record.resources, req)
}

fn narrow(scopes: &ScopeSet, resources: &ResourceSet, req: &TokenRequest) -> Result<Issuance, TokenError> {
    let scopes = match req.scope.as_deref().filter(|s| !s.is_empty()) {
        None => scopes.clone(),
        Some(s) => {
            let requested = ScopeSet::parse(s)?;
            if !requested.is_subset_of(scopes) {
                return Err(TokenError::ScopeWidening);
            }
            requested
        }
    };
    let resources = if req.resource.is_empty() {
        resources.clone()
    } else {
        let requested = ResourceSet::parse_all(req.resource.iter().map(String::as_str))?;
        if !requested.is_subset_of(resources) {
            return Err(TokenError::ResourceWidening);
        }
        requested
    };
    Ok(Issuance { scopes, resources })
}

/// What a code exchange ([`decide_code_exchange`]) does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeExchange {
    /// Consume the code and issue tokens for this.
    Redeem(Issuance),
    /// The code was already consumed: a replay. Revoke the whole grant
    /// and answer `invalid_grant` (RFC 6749 section 4.1.2,
    /// <https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2>).
    Replay,
}

/// The decision on an authorization-code exchange (RFC 6749 section
/// 4.1.3, <https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3>), made
/// before any state changes: every check of [`check_code_redemption`],
/// then that the project still accepts the resources
/// ([`check_resources_accepted`]), then whether the code was consumed
/// already. An invalid replay (wrong client, PKCE, ...) is refused
/// without revoking anything.
///
/// # Errors
/// The refusal as an [`OAuthError`].
pub fn decide_code_exchange(
    record: &CodeRecord,
    client_id: &ClientId,
    req: &TokenRequest,
    settings: &ProjectSettings,
    now: OffsetDateTime,
) -> Result<CodeExchange, OAuthError> {
    let issuance = check_code_redemption(record, client_id, req, now)?;
    check_resources_accepted(settings, &issuance)?;
    Ok(if record.consumed {
        CodeExchange::Replay
    } else {
        CodeExchange::Redeem(issuance)
    })
}

/// The decision on a refresh (RFC 6749 section 6,
/// <https://www.rfc-editor.org/rfc/rfc6749#section-6>), made before any
/// state changes: every check of [`check_refresh`], that the project
/// still accepts the resources ([`check_resources_accepted`]) and that
/// the client may still refresh. Whether the token was rotated already is
/// decided by the store's atomic rotation, against the committed state.
///
/// # Errors
/// The refusal as an [`OAuthError`].
pub fn decide_refresh(
    record: &RefreshTokenRecord,
    client: &crate::client::Client,
    req: &TokenRequest,
    settings: &ProjectSettings,
    now: OffsetDateTime,
) -> Result<Issuance, OAuthError> {
    let issuance = check_refresh(record, &client.client_id, req, now)?;
    check_resources_accepted(settings, &issuance)?;
    if !client.metadata.allows_refresh() {
        return Err(TokenError::UnauthorizedClient.into());
    }
    Ok(issuance)
}

/// The resources of a code exchange or refresh must still be accepted by
/// the project ([`ProjectSettings::accepts_resource`]): a resource the
/// operator removed from the known list gets no more tokens, also for
/// grants made before (RFC 8707 section 2,
/// <https://www.rfc-editor.org/rfc/rfc8707#section-2>).
///
/// # Errors
/// `invalid_target` naming the resource.
pub fn check_resources_accepted(settings: &ProjectSettings, issuance: &Issuance) -> Result<(), OAuthError> {
    match settings.unaccepted_resource(&issuance.resources) {
        Some(r) => Err(OAuthError::with_description(
            ErrorCode::InvalidTarget,
            format!("the resource {r} is no longer known to this project"),
        )),
        None => Ok(()),
    }
}

/// A new refresh-token record: issued at `now`, expiring `ttl` later,
/// allowed at most `scopes` and `resources` of `grant`.
pub fn refresh_token_record(
    hash: SecretHash,
    grant: Grant,
    scopes: ScopeSet,
    resources: ResourceSet,
    now: OffsetDateTime,
    ttl: Duration,
) -> RefreshTokenRecord {
    RefreshTokenRecord {
        hash,
        grant,
        scopes,
        resources,
        issued_at: now,
        expires_at: now + ttl,
        rotated: false,
        rotation: None,
    }
}

/// The record of the refresh token that replaces `old` at a rotation at
/// `now` (RFC 9700 section 4.14.2,
/// <https://www.rfc-editor.org/rfc/rfc9700#section-4.14.2>): the same
/// grant and limits, a fresh lifetime of `ttl`.
pub fn successor_record(
    old: &RefreshTokenRecord,
    successor: SecretHash,
    now: OffsetDateTime,
    ttl: Duration,
) -> RefreshTokenRecord {
    refresh_token_record(
        successor,
        old.grant.clone(),
        old.scopes.clone(),
        old.resources.clone(),
        now,
        ttl,
    )
}

/// A presentation of an already rotated refresh token within the reuse
/// grace: the successor to answer with again, when the request is the
/// identical replay of the first rotation (same scopes and audiences, and
/// the recorded successor derives from the presented token). `None`:
/// treat it as reuse (revoke the grant).
pub fn replayed_successor(mark: Option<&RotationMark>, presented: &str, issuance: &Issuance) -> Option<SecretString> {
    let mark = mark?;
    // Only an identical request gets the first rotation's pair: a replay
    // asking for other scopes or audiences would otherwise mint access
    // tokens the first rotation never issued.
    if mark.issuance.as_ref() != Some(&issuance_digest(issuance)) {
        return None;
    }
    let successor = successor_refresh_token(presented, &mark.nonce);
    // A mismatch cannot happen for a token whose hash matched, unless the
    // record was altered: reuse (the safe side).
    (successor.hash() == mark.successor).then_some(successor)
}

/// Whether the access token a replayed rotation re-derives may be
/// answered: it is not stored yet (the first rotation is about to store
/// it), or it is stored unrevoked with the same claims. A revoked one stays
/// revoked.
pub fn replayed_access_token_usable(existing: Option<&AccessTokenRecord>, claims: &AccessTokenClaims) -> bool {
    existing.is_none_or(|e| !e.revoked && &e.claims == claims)
}

/// Whether an access token is active at `now` (RFC 7662 section 2.2,
/// <https://www.rfc-editor.org/rfc/rfc7662#section-2.2>): neither revoked
/// nor expired. Whether its client may still use it is the caller's
/// second question ([`client_tokens_usable`]).
pub fn access_token_active(record: &AccessTokenRecord, now: OffsetDateTime) -> bool {
    !record.revoked && !record.is_expired(now)
}

/// Whether a refresh token is active at `now` (RFC 7662 section 2.2,
/// <https://www.rfc-editor.org/rfc/rfc7662#section-2.2>): not rotated
/// and not expired.
pub fn refresh_token_active(record: &RefreshTokenRecord, now: OffsetDateTime) -> bool {
    !record.rotated && now < record.expires_at
}

/// Whether the tokens of a client may still be used, given what the
/// client store holds for it: a registered client must exist and not be
/// disabled; a metadata-document client (never stored) always may.
pub fn client_tokens_usable(client_id: &str, stored: Option<&crate::client::Client>) -> bool {
    match crate::client::RegisteredClientId::new(client_id) {
        Ok(_) => stored.is_some_and(|c| !c.is_disabled()),
        Err(_) => true,
    }
}

/// A token a revocation request (RFC 7009 section 2.1,
/// <https://www.rfc-editor.org/rfc/rfc7009#section-2.1>) found.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum FoundToken<'a> {
    /// An access token.
    Access(&'a AccessTokenRecord),
    /// A refresh token.
    Refresh(&'a RefreshTokenRecord),
}

/// What a revocation request revokes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationTarget {
    /// Nothing: the token belongs to another client. The request still
    /// succeeds (no token probing, [RFC 7009 section 2.2]).
    ///
    /// [RFC 7009 section 2.2]: https://www.rfc-editor.org/rfc/rfc7009#section-2.2
    Nothing,
    /// The access token itself.
    AccessToken,
    /// The whole grant of a refresh token ([RFC 7009 section 2.1]: the
    /// server should also invalidate the access tokens of the grant).
    ///
    /// [RFC 7009 section 2.1]: https://www.rfc-editor.org/rfc/rfc7009#section-2.1
    Grant(crate::grant::GrantId),
}

/// The revocation target rule: a client may revoke only its own tokens;
/// revoking an access token revokes that token, revoking a refresh token
/// revokes its whole grant.
pub fn revocation_target(found: FoundToken<'_>, client_id: &ClientId) -> RevocationTarget {
    match found {
        FoundToken::Access(a) if a.claims.client_id == client_id.as_str() => RevocationTarget::AccessToken,
        FoundToken::Refresh(r) if &r.grant.client_id == client_id => RevocationTarget::Grant(r.grant.id.clone()),
        _ => RevocationTarget::Nothing,
    }
}

const SUCCESSOR_LABEL: &[u8] = b"authio-mcp/refresh-successor/v1\0";
const ACCESS_LABEL: &[u8] = b"authio-mcp/refreshed-access-token/v1\0";
const JTI_LABEL: &[u8] = b"authio-mcp/refreshed-jti/v1\0";

/// The refresh token that replaces `old` at a rotation drawn with `nonce`:
/// `rt_` and base64url(HMAC-SHA256(key = `old`, label || nonce)).
///
/// # Security
/// Deterministic so that a concurrent presentation of `old` within the
/// project's reuse grace gets the same successor without the server ever
/// storing a token in plaintext. Deriving it needs both the old token (the
/// client's, stored only as a hash) and the nonce (random, stored only on
/// the server): a thief of one old token cannot compute its successors, so
/// rotation keeps its meaning. 256 bits of HMAC output, as much entropy as
/// a freshly drawn token.
pub fn successor_refresh_token(old: &str, nonce: &RotationNonce) -> SecretString {
    SecretString::random_with_prefix(
        "rt_",
        &hmac_sha256(old.as_bytes(), &[SUCCESSOR_LABEL, nonce.as_bytes()]),
    )
}

/// The random inputs of an access token: its string's and its `jti`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessTokenRandomness {
    /// For [`crate::store::TokenIssuer::issue`].
    pub token: [u8; 32],
    /// For the `jti`.
    pub jti: [u8; 16],
}

impl AccessTokenRandomness {
    /// From fresh random bytes.
    pub const fn new(token: [u8; 32], jti: [u8; 16]) -> Self {
        Self { token, jti }
    }

    /// The randomness of the access token issued with a refresh rotation,
    /// derived like [`successor_refresh_token`] (and bound to the scopes
    /// and audiences of `issuance`), so that a concurrent refresh within
    /// the grace that asks for the same gets the same access token.
    pub fn for_rotation(old: &str, nonce: &RotationNonce, issuance: &Issuance) -> Self {
        let scope = issuance.scopes.to_string();
        let mut parts: Vec<&[u8]> = vec![nonce.as_bytes(), scope.as_bytes(), b"\0"];
        let audiences = issuance.resources.audiences();
        for a in &audiences {
            parts.push(a.as_bytes());
            parts.push(b"\0");
        }
        let with_label = |label: &'static [u8]| {
            let mut all = vec![label];
            all.extend_from_slice(&parts);
            hmac_sha256(old.as_bytes(), &all)
        };
        let token = with_label(ACCESS_LABEL);
        let jti_full = with_label(JTI_LABEL);
        let mut jti = [0u8; 16];
        for (slot, b) in jti.iter_mut().zip(jti_full) {
            *slot = b;
        }
        Self { token, jti }
    }
}

/// The client credentials grant ([RFC 6749 section 4.4]; MCP extension
/// `io.modelcontextprotocol/oauth-client-credentials`): what an
/// authenticated client may have. Only a confidential client registered
/// with the `client_credentials` grant type may use it. Scopes follow the
/// authorization endpoint's rules ([`crate::authorize::resolve_scopes`]:
/// unsupported ones dropped, or refused in strict mode; `offline_access`
/// never granted, no refresh token is issued), and `resource` the same
/// rules as there ([`crate::authorize::resolve_resources`]: allowed
/// resources, default, required).
///
/// # Errors
/// `unauthorized_client`, `invalid_scope` or `invalid_target`.
///
/// [RFC 6749 section 4.4]: https://www.rfc-editor.org/rfc/rfc6749#section-4.4
pub fn check_client_credentials(
    client: &crate::client::Client,
    req: &TokenRequest,
    settings: &crate::project::ProjectSettings,
) -> Result<Issuance, TokenError> {
    if !settings.client_credentials_enabled {
        return Err(TokenError::UnsupportedGrantType);
    }
    if !client.is_confidential()
        || !client
            .metadata
            .grant_types
            .contains(&crate::client::GrantType::ClientCredentials)
    {
        return Err(TokenError::UnauthorizedClient);
    }
    // A machine client acts with no user and no consent: it gets only
    // scopes someone listed (the project's, or the client's registered
    // ones), never "any scope" from an empty list.
    if settings.scopes_supported.is_empty() && client.metadata.scope.as_ref().is_none_or(ScopeSet::is_empty) {
        return Err(TokenError::UnauthorizedClient);
    }
    let resolved = crate::authorize::resolve_scopes(req.scope.as_deref(), settings, client)?;
    let mut scopes = ScopeSet::new();
    for s in resolved
        .granted
        .iter()
        .filter(|s| s.as_str() != crate::authorize::OFFLINE_ACCESS)
    {
        scopes.insert(s.clone());
    }
    let resources = crate::authorize::resolve_resources(&req.resource, settings)?;
    Ok(Issuance { scopes, resources })
}

/// The claims of a new access token.
pub fn access_token_claims(
    issuer: &str,
    grant: &Grant,
    issuance: &Issuance,
    ttl: Duration,
    jti: String,
    now: OffsetDateTime,
) -> AccessTokenClaims {
    let iat = now.unix_timestamp();
    AccessTokenClaims {
        iss: issuer.to_owned(),
        sub: grant.subject.as_str().to_owned(),
        aud: issuance.resources.audiences(),
        client_id: grant.client_id.as_str().to_owned(),
        scope: issuance.scopes.to_string(),
        iat,
        exp: iat + ttl.whole_seconds(),
        jti,
        auth_time: Some(grant.granted_at.unix_timestamp()),
    }
}

/// A successful token response (RFC 6749 section 5.1,
/// <https://www.rfc-editor.org/rfc/rfc6749#section-5.1>). The access and
/// refresh tokens are held as [`SecretString`]s: `Debug` redacts them,
/// and they are read through [`TokenResponse::access_token`] and
/// [`TokenResponse::refresh_token`]. The JSON body ([`TokenResponse::to_json`],
/// `Serialize`) is the wire format.
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "TokenResponseWire", from = "TokenResponseWire")]
#[non_exhaustive]
pub struct TokenResponse {
    /// The access token.
    access_token: SecretString,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The new refresh token, if any.
    refresh_token: Option<SecretString>,
    /// The granted scope.
    pub scope: String,
    /// The OpenID Connect ID token, when `openid` was granted.
    pub id_token: Option<String>,
}

/// The wire form of a [`TokenResponse`] (the order and names of its
/// members, what is left out when empty).
#[derive(Serialize, Deserialize)]
struct TokenResponseWire {
    access_token: String,
    token_type: String,
    expires_in: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl From<TokenResponse> for TokenResponseWire {
    fn from(r: TokenResponse) -> Self {
        Self {
            access_token: r.access_token.expose_secret().to_owned(),
            token_type: r.token_type,
            expires_in: r.expires_in,
            refresh_token: r.refresh_token.map(|t| t.expose_secret().to_owned()),
            scope: r.scope,
            id_token: r.id_token,
        }
    }
}

impl From<TokenResponseWire> for TokenResponse {
    fn from(w: TokenResponseWire) -> Self {
        Self {
            access_token: SecretString::from(w.access_token),
            token_type: w.token_type,
            expires_in: w.expires_in,
            refresh_token: w.refresh_token.map(SecretString::from),
            scope: w.scope,
            id_token: w.id_token,
        }
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("scope", &self.scope)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl TokenResponse {
    /// The response for an access token minted with `claims` at `now`
    /// (RFC 6749 section 5.1,
    /// <https://www.rfc-editor.org/rfc/rfc6749#section-5.1>): type
    /// `Bearer`, `expires_in` from the claims' `exp` (never negative),
    /// the granted scope, and the refresh and ID tokens, if any.
    pub fn bearer(
        access_token: &SecretString,
        claims: &AccessTokenClaims,
        now: OffsetDateTime,
        refresh_token: Option<&SecretString>,
        id_token: Option<String>,
    ) -> Self {
        Self {
            access_token: access_token.clone(),
            token_type: "Bearer".to_owned(),
            expires_in: (claims.exp - now.unix_timestamp()).max(0),
            refresh_token: refresh_token.cloned(),
            scope: claims.scope.clone(),
            id_token,
        }
    }

    /// The access token.
    ///
    /// # Security
    /// A bearer credential: send it to the client only, never log it.
    pub fn access_token(&self) -> &str {
        self.access_token.expose_secret()
    }

    /// The refresh token, if one was issued.
    ///
    /// # Security
    /// A long-lived credential: send it to the client only, never log it.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(SecretString::expose_secret)
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&TokenResponseWire::from(self.clone())).unwrap_or_default()
    }
}

/// An introspection response ([RFC 7662 section 2.2]).
///
/// [RFC 7662 section 2.2]: https://www.rfc-editor.org/rfc/rfc7662#section-2.2
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IntrospectionResponse {
    /// Whether the token is active.
    pub active: bool,
    /// Scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `access_token` or `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audiences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl IntrospectionResponse {
    /// `{"active": false}`: for unknown, expired and revoked tokens alike.
    pub fn inactive() -> Self {
        Self::default()
    }

    /// The response for an active access token.
    pub fn from_access_token(record: &AccessTokenRecord) -> Self {
        let c = &record.claims;
        Self {
            active: true,
            scope: Some(c.scope.clone()),
            client_id: Some(c.client_id.clone()),
            token_type: Some("access_token".to_owned()),
            exp: Some(c.exp),
            iat: Some(c.iat),
            sub: Some(c.sub.clone()),
            aud: Some(c.aud.clone()),
            iss: Some(c.iss.clone()),
            jti: Some(c.jti.clone()),
        }
    }

    /// The response for an active refresh token.
    pub fn from_refresh_token(record: &RefreshTokenRecord, issuer: &str) -> Self {
        Self {
            active: true,
            scope: Some(record.scopes.to_string()),
            client_id: Some(record.grant.client_id.as_str().to_owned()),
            token_type: Some("refresh_token".to_owned()),
            exp: Some(record.expires_at.unix_timestamp()),
            iat: Some(record.issued_at.unix_timestamp()),
            sub: Some(record.grant.subject.as_str().to_owned()),
            aud: Some(record.resources.audiences()),
            iss: Some(issuer.to_owned()),
            jti: None,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The parameters of a revocation (RFC 7009 section 2.1,
/// <https://www.rfc-editor.org/rfc/rfc7009#section-2.1>) or introspection
/// (RFC 7662 section 2.1,
/// <https://www.rfc-editor.org/rfc/rfc7662#section-2.1>) request. The
/// token, client secret and assertion are [`SecretString`]s.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenReference {
    /// `token`.
    pub token: SecretString,
    /// `token_type_hint`.
    pub token_type_hint: Option<String>,
    /// `client_id` (form-based client authentication).
    pub client_id: Option<String>,
    /// `client_secret`.
    pub client_secret: Option<SecretString>,
    /// `client_assertion_type` (RFC 7521 section 4.2,
    /// <https://www.rfc-editor.org/rfc/rfc7521#section-4.2>).
    pub client_assertion_type: Option<String>,
    /// `client_assertion` (RFC 7521 section 4.2,
    /// <https://www.rfc-editor.org/rfc/rfc7521#section-4.2>).
    pub client_assertion: Option<SecretString>,
}

impl TokenReference {
    /// Parses a form body.
    ///
    /// # Errors
    /// [`TokenError::MissingParameter`] without `token`,
    /// [`TokenError::DuplicateParameter`].
    pub fn from_form(body: &[u8]) -> Result<Self, TokenError> {
        let mut token = None;
        let mut hint = None;
        let mut client_id = None;
        let mut client_secret = None;
        let mut client_assertion_type = None;
        let mut client_assertion = None;
        for (name, value) in url::form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "token" => Slot::Secret(&mut token),
                "token_type_hint" => Slot::Plain(&mut hint),
                "client_id" => Slot::Plain(&mut client_id),
                "client_secret" => Slot::Secret(&mut client_secret),
                "client_assertion_type" => Slot::Plain(&mut client_assertion_type),
                "client_assertion" => Slot::Secret(&mut client_assertion),
                _ => continue,
            };
            let filled = match slot {
                Slot::Plain(s) => s.replace(value.into_owned()).is_some(),
                Slot::Secret(s) => s.replace(SecretString::new(value.into_owned())).is_some(),
            };
            if filled {
                return Err(TokenError::DuplicateParameter(name.into_owned()));
            }
        }
        Ok(Self {
            token: token
                .filter(|t| !t.expose_secret().is_empty())
                .ok_or(TokenError::MissingParameter("token"))?,
            token_type_hint: hint,
            client_id,
            client_secret,
            client_assertion_type,
            client_assertion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceSet;

    fn issuance(scope: &str) -> Issuance {
        Issuance {
            scopes: ScopeSet::parse(scope).unwrap(),
            resources: ResourceSet::parse_all(["https://mcp.example.com/mcp"]).unwrap(),
        }
    }

    #[test]
    fn request_secrets_are_redacted_and_duplicates_refused() {
        let req = TokenRequest::from_form(
            b"grant_type=authorization_code&code=c0de-s3cret&code_verifier=v3rifier&client_secret=cl1ent&refresh_token=r3fresh&client_assertion=a55ertion",
        )
        .unwrap();
        let debug = format!("{req:?}");
        for secret in ["c0de-s3cret", "v3rifier", "cl1ent", "r3fresh", "a55ertion"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(req.code.as_ref().unwrap().ct_eq("c0de-s3cret"));
        assert_eq!(
            TokenRequest::from_form(b"code=a&code=b").unwrap_err(),
            TokenError::DuplicateParameter("code".into())
        );
        let r = TokenReference::from_form(b"token=t0ken&client_secret=cl1ent&client_assertion=a55").unwrap();
        let debug = format!("{r:?}");
        for secret in ["t0ken", "cl1ent", "a55"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(r.token.ct_eq("t0ken"));
        assert_eq!(
            TokenReference::from_form(b"token=").unwrap_err(),
            TokenError::MissingParameter("token")
        );
        assert_eq!(
            TokenReference::from_form(b"token=a&token=b").unwrap_err(),
            TokenError::DuplicateParameter("token".into())
        );
    }

    /// The successor depends on both the old token and the stored nonce:
    /// the same pair re-derives it, changing either changes it.
    #[test]
    fn successor_derivation() {
        let n1 = RotationNonce::from_random([1; 32]);
        let n2 = RotationNonce::from_random([2; 32]);
        let a = successor_refresh_token("rt_old", &n1);
        assert!(a.ct_eq(successor_refresh_token("rt_old", &n1).expose_secret()));
        assert!(!a.ct_eq(successor_refresh_token("rt_old", &n2).expose_secret()));
        assert!(!a.ct_eq(successor_refresh_token("rt_other", &n1).expose_secret()));
        assert!(a.expose_secret().starts_with("rt_"));
        assert_eq!(a.expose_secret().len(), 3 + 43, "256 bits, base64url");
        // Never the old token itself, and a chain does not repeat.
        let b = successor_refresh_token(a.expose_secret(), &n1);
        assert!(!b.ct_eq(a.expose_secret()));
        assert!(!b.ct_eq("rt_old"));
    }

    #[test]
    fn access_randomness_is_bound_to_the_issuance() {
        let n = RotationNonce::from_random([7; 32]);
        let one = AccessTokenRandomness::for_rotation("rt_old", &n, &issuance("mcp:read mcp:write"));
        assert_eq!(
            one,
            AccessTokenRandomness::for_rotation("rt_old", &n, &issuance("mcp:read mcp:write"))
        );
        assert_ne!(
            one,
            AccessTokenRandomness::for_rotation("rt_old", &n, &issuance("mcp:read"))
        );
        assert_ne!(
            one,
            AccessTokenRandomness::for_rotation("rt_other", &n, &issuance("mcp:read mcp:write"))
        );
        assert_ne!(one.token[..16], one.jti[..], "independent labels");
    }

    mod decisions {
        use time::macros::datetime;

        use super::super::*;
        use super::issuance;
        use crate::client::{Client, RegisteredClientId};
        use crate::grant::{GrantId, Subject};
        use crate::pkce::{CodeChallenge, CodeVerifier};
        use crate::resource::ResourceSet;

        const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);
        const MCP: &str = "https://mcp.example.com/mcp";

        fn client_id(n: u8) -> ClientId {
            ClientId::Registered(RegisteredClientId::from_random(&[n; 12]))
        }

        fn grant(client: &ClientId) -> Grant {
            Grant {
                id: GrantId::from_random(&[9; 16]),
                project: crate::project::ProjectId::new("proj_a").unwrap(),
                client_id: client.clone(),
                subject: Subject::new("user_1").unwrap(),
                scopes: ScopeSet::parse("mcp:read mcp:write").unwrap(),
                resources: ResourceSet::parse_all([MCP]).unwrap(),
                granted_at: NOW,
            }
        }

        fn verifier() -> CodeVerifier {
            CodeVerifier::from_random(&[5; 32])
        }

        fn code(client: &ClientId, consumed: bool) -> CodeRecord {
            CodeRecord {
                hash: SecretHash::of("c"),
                grant: grant(client),
                redirect_uri: "https://client.example/cb".to_owned(),
                code_challenge: CodeChallenge::s256(&verifier()),
                nonce: None,
                expires_at: NOW + Duration::minutes(1),
                consumed,
            }
        }

        fn form(pairs: &[(&str, &str)]) -> TokenRequest {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            TokenRequest::from_form(body.as_bytes()).unwrap()
        }

        fn settings() -> ProjectSettings {
            ProjectSettings {
                default_resource: Some(crate::resource::ResourceUri::parse(MCP).unwrap()),
                ..ProjectSettings::default()
            }
        }

        fn refresh_record(client: &ClientId, rotated: bool, expires_at: OffsetDateTime) -> RefreshTokenRecord {
            let g = grant(client);
            let mut r = refresh_token_record(
                SecretHash::of("rt"),
                g.clone(),
                g.scopes.clone(),
                g.resources.clone(),
                NOW - Duration::hours(1),
                Duration::hours(1),
            );
            r.expires_at = expires_at;
            r.rotated = rotated;
            r
        }

        fn access_record(client: &ClientId, revoked: bool, exp: OffsetDateTime) -> AccessTokenRecord {
            let g = grant(client);
            let issuance = Issuance {
                scopes: g.scopes.clone(),
                resources: g.resources.clone(),
            };
            let mut claims =
                access_token_claims("https://as.example", &g, &issuance, Duration::hours(1), "j".into(), NOW);
            claims.exp = exp.unix_timestamp();
            AccessTokenRecord {
                hash: SecretHash::of("at"),
                project: g.project.clone(),
                grant_id: g.id.clone(),
                claims,
                revoked,
            }
        }

        #[test]
        fn code_exchange_table() {
            let me = client_id(1);
            let other = client_id(2);
            let v = verifier();
            let good = [("grant_type", "authorization_code"), ("code_verifier", v.as_str())];
            let bad_pkce = [
                ("grant_type", "authorization_code"),
                ("code_verifier", "x".repeat(43).leak() as &str),
            ];
            type Row<'a> = (
                &'a CodeRecord,
                &'a ClientId,
                &'a [(&'a str, &'a str)],
                Result<bool, ErrorCode>,
            );
            let table: [Row<'_>; 5] = [
                (&code(&me, false), &me, &good, Ok(true)),
                // A consumed code presented correctly: the replay rule.
                (&code(&me, true), &me, &good, Ok(false)),
                // An invalid replay is refused without being called one.
                (&code(&me, true), &other, &good, Err(ErrorCode::InvalidGrant)),
                (&code(&me, true), &me, &bad_pkce, Err(ErrorCode::InvalidGrant)),
                (&code(&other, false), &me, &good, Err(ErrorCode::InvalidGrant)),
            ];
            for (i, (record, client, pairs, want)) in table.into_iter().enumerate() {
                let got = decide_code_exchange(record, client, &form(pairs), &settings(), NOW);
                match (got, want) {
                    (Ok(CodeExchange::Redeem(_)), Ok(true)) | (Ok(CodeExchange::Replay), Ok(false)) => {}
                    (Err(e), Err(code)) => assert_eq!(e.code(), code, "row {i}"),
                    (got, want) => panic!("row {i}: {got:?} != {want:?}"),
                }
            }
            // An expired code.
            let late = decide_code_exchange(
                &code(&me, false),
                &me,
                &form(&good),
                &settings(),
                NOW + Duration::hours(1),
            );
            assert_eq!(late.unwrap_err().code(), ErrorCode::InvalidGrant);
            // A resource the project no longer knows.
            let forgot = ProjectSettings {
                default_resource: Some(crate::resource::ResourceUri::parse("https://other.example/mcp").unwrap()),
                ..ProjectSettings::default()
            };
            let e = decide_code_exchange(&code(&me, false), &me, &form(&good), &forgot, NOW).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidTarget);
        }

        #[test]
        fn refresh_records_expire_one_ttl_after_issue() {
            let me = client_id(1);
            let g = grant(&me);
            let r = refresh_token_record(
                SecretHash::of("a"),
                g.clone(),
                g.scopes.clone(),
                g.resources.clone(),
                NOW,
                Duration::days(30),
            );
            assert_eq!(r.issued_at, NOW);
            assert_eq!(r.expires_at, NOW + Duration::days(30));
            assert!(!r.rotated && r.rotation.is_none());
            let mut narrowed = r.clone();
            narrowed.scopes = ScopeSet::parse("mcp:read").unwrap();
            let later = NOW + Duration::days(3);
            let s = successor_record(&narrowed, SecretHash::of("b"), later, Duration::days(30));
            assert_eq!(s.hash, SecretHash::of("b"));
            assert_eq!(s.scopes, narrowed.scopes, "a successor keeps the narrowed limits");
            assert_eq!(s.grant, narrowed.grant);
            assert_eq!((s.issued_at, s.expires_at), (later, later + Duration::days(30)));
            assert!(!s.rotated && s.rotation.is_none());
        }

        #[test]
        fn rotation_replays_only_the_identical_request() {
            let nonce = RotationNonce::from_random([3; 32]);
            let asked = issuance("mcp:read mcp:write");
            let successor = successor_refresh_token("rt_old", &nonce);
            let mark = RotationMark::new(NOW, nonce, successor.hash()).with_issuance(issuance_digest(&asked));
            let got = replayed_successor(Some(&mark), "rt_old", &asked).unwrap();
            assert!(got.ct_eq(successor.expose_secret()));
            assert!(replayed_successor(None, "rt_old", &asked).is_none(), "no mark: reuse");
            assert!(
                replayed_successor(Some(&mark), "rt_old", &issuance("mcp:read")).is_none(),
                "other scopes"
            );
            assert!(
                replayed_successor(Some(&mark), "rt_forged", &asked).is_none(),
                "successor mismatch"
            );
            let unbound = RotationMark::new(NOW, nonce, successor.hash());
            assert!(
                replayed_successor(Some(&unbound), "rt_old", &asked).is_none(),
                "old mark without digest"
            );
        }

        #[test]
        fn replayed_access_tokens_never_revive_a_revoked_one() {
            let me = client_id(1);
            let stored = access_record(&me, false, NOW + Duration::hours(1));
            assert!(replayed_access_token_usable(None, &stored.claims));
            assert!(replayed_access_token_usable(Some(&stored), &stored.claims));
            let revoked = access_record(&me, true, NOW + Duration::hours(1));
            assert!(!replayed_access_token_usable(Some(&revoked), &stored.claims));
            let mut other = stored.claims.clone();
            other.scope = "mcp:read".into();
            assert!(!replayed_access_token_usable(Some(&stored), &other));
        }

        #[test]
        fn active_at_now_table() {
            let me = client_id(1);
            let table = [
                (access_record(&me, false, NOW + Duration::seconds(1)), true),
                (access_record(&me, true, NOW + Duration::hours(1)), false),
                (access_record(&me, false, NOW), false),
                (access_record(&me, false, NOW - Duration::seconds(1)), false),
            ];
            for (i, (record, active)) in table.iter().enumerate() {
                assert_eq!(access_token_active(record, NOW), *active, "access row {i}");
            }
            let table = [
                (refresh_record(&me, false, NOW + Duration::seconds(1)), true),
                (refresh_record(&me, true, NOW + Duration::hours(1)), false),
                (refresh_record(&me, false, NOW), false),
            ];
            for (i, (record, active)) in table.iter().enumerate() {
                assert_eq!(refresh_token_active(record, NOW), *active, "refresh row {i}");
            }
        }

        #[test]
        fn only_the_owner_revokes_and_a_refresh_token_takes_its_grant() {
            let me = client_id(1);
            let other = client_id(2);
            let access = access_record(&me, false, NOW + Duration::hours(1));
            let refresh = refresh_record(&me, false, NOW + Duration::hours(1));
            assert_eq!(
                revocation_target(FoundToken::Access(&access), &me),
                RevocationTarget::AccessToken
            );
            assert_eq!(
                revocation_target(FoundToken::Access(&access), &other),
                RevocationTarget::Nothing
            );
            assert_eq!(
                revocation_target(FoundToken::Refresh(&refresh), &me),
                RevocationTarget::Grant(refresh.grant.id.clone())
            );
            assert_eq!(
                revocation_target(FoundToken::Refresh(&refresh), &other),
                RevocationTarget::Nothing
            );
        }

        #[test]
        fn client_standing_table() {
            let id = client_id(1);
            let client = Client::new(
                id.clone(),
                serde_json::from_value::<crate::client::ClientMetadata>(serde_json::json!({
                    "redirect_uris": ["https://client.example/cb"],
                    "token_endpoint_auth_method": "none"
                }))
                .unwrap()
                .validate(crate::client::MetadataProfile::Dcr, Default::default())
                .unwrap(),
                NOW,
            );
            assert!(client_tokens_usable(id.as_str(), Some(&client)));
            assert!(!client_tokens_usable(id.as_str(), None), "deleted");
            let mut disabled = client.clone();
            disabled.disabled_at = Some(NOW);
            assert!(!client_tokens_usable(id.as_str(), Some(&disabled)), "disabled");
            assert!(
                client_tokens_usable("https://app.example.com/client.json", None),
                "document clients"
            );
        }

        #[test]
        fn bearer_response_shape() {
            let me = client_id(1);
            let record = access_record(&me, false, NOW + Duration::seconds(90));
            let at = SecretString::random_with_prefix("at_", &[1; 32]);
            let rt = SecretString::random_with_prefix("rt_", &[2; 32]);
            let r = TokenResponse::bearer(&at, &record.claims, NOW, Some(&rt), None);
            assert_eq!(r.token_type, "Bearer");
            assert_eq!(r.expires_in, 90);
            assert_eq!(r.scope, "mcp:read mcp:write");
            assert_eq!(r.refresh_token(), Some(rt.expose_secret()));
            assert_eq!(r.access_token(), at.expose_secret());
            let late = TokenResponse::bearer(&at, &record.claims, NOW + Duration::hours(1), None, None);
            assert_eq!(late.expires_in, 0, "never negative");
            assert!(late.refresh_token().is_none());
        }

        #[test]
        fn token_response_wire_format_and_redacted_debug() {
            let me = client_id(1);
            let record = access_record(&me, false, NOW + Duration::seconds(90));
            let at = SecretString::from("at_wire");
            let rt = SecretString::from("rt_wire");
            let r = TokenResponse::bearer(&at, &record.claims, NOW, Some(&rt), Some("id.token.jwt".into()));
            let wire = r#"{"access_token":"at_wire","token_type":"Bearer","expires_in":90,"refresh_token":"rt_wire","scope":"mcp:read mcp:write","id_token":"id.token.jwt"}"#;
            assert_eq!(String::from_utf8(r.to_json()).unwrap(), wire);
            assert_eq!(serde_json::to_string(&r).unwrap(), wire, "Serialize is the wire format");
            let back: TokenResponse = serde_json::from_str(wire).unwrap();
            assert_eq!(back.to_json(), r.to_json(), "and reads back");
            let mut bare = TokenResponse::bearer(&at, &record.claims, NOW, None, None);
            bare.scope = String::new();
            assert_eq!(
                String::from_utf8(bare.to_json()).unwrap(),
                r#"{"access_token":"at_wire","token_type":"Bearer","expires_in":90}"#,
                "absent members are left out"
            );
            let debug = format!("{r:?}");
            assert!(
                !debug.contains("at_wire") && !debug.contains("rt_wire") && !debug.contains("id.token"),
                "{debug}"
            );
        }
    }
}
