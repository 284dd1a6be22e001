//! Dynamic Client Registration (RFC 7591) gated by initial access tokens.
//!
//! The pure half of registration: initial access tokens (IATs) and their
//! lifecycle, the `Authorization: Bearer` parser of the registration
//! endpoint, the pins an IAT imposes on the metadata, and the minting of a
//! client with its RFC 7591 section 3.2.1 response. Nothing here reads a
//! clock, draws randomness or touches a store: `now` and random bytes are
//! arguments. The driver (`AuthorizationServer::register_client`) sequences
//! these functions around the [`crate::store::IatStore`] and
//! [`crate::store::ClientStore`].
//!
//! # Initial access tokens
//!
//! An IAT is `iatk_` followed by the unpadded base64url encoding of 32
//! random bytes (256 bits). It is shown once, when issued
//! ([`IatRecord::issue`]); the [`IatRecord`] keeps only its SHA-256
//! [`SecretHash`]. Because the token has 256 bits of entropy, an unsalted
//! fast hash is a safe lookup key, and looking a record up by hash leaks
//! nothing useful through timing; equality of hashes is constant-time.
//!
//! A record may expire (`expires_at`), may be limited to `max_uses`
//! registrations, may be revoked, and pins registration metadata
//! ([`PinnedMetadata`], by default `token_endpoint_auth_method = none`, the
//! dashboard's "Issue IAT" button, seed guide step 3b).
//!
//! # Client secrets
//!
//! Confidential clients (`client_secret_basic`, `client_secret_post`) get a
//! secret of 32 random bytes, unpadded base64url, no prefix. It is returned
//! once in the registration response and stored only as its hash. Its
//! lifetime is [`RegistrationPolicy::client_secret_ttl`]: `None` (the
//! default) means it never expires and the response says
//! `"client_secret_expires_at": 0` (RFC 7591 section 3.2.1).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::client::{
    Client, ClientId, ClientMetadata, ClientMetadataError, RegisteredClientId, TokenEndpointAuthMethod,
    ValidatedMetadata,
};
use crate::error::{ErrorCode, OAuthError};
use crate::newtype::string_newtype;
use crate::secret::{SecretHash, SecretString};

/// The prefix of every initial access token.
pub const IAT_PREFIX: &str = "iatk_";

/// Random bytes in an initial access token (256 bits).
pub const IAT_RANDOM_BYTES: usize = 32;

/// Random bytes in a client secret (256 bits).
pub const CLIENT_SECRET_RANDOM_BYTES: usize = 32;

/// The longest IAT label accepted, in bytes.
pub const MAX_IAT_LABEL: usize = 200;

/// The largest registration request body parsed, in bytes. Real requests
/// are a few hundred bytes; the cap bounds parsing work and what a client
/// can make the server store (an inline `jwks` is otherwise unbounded).
pub const MAX_REGISTRATION_BODY: usize = 64 * 1024;

/// The identifier of an initial access token: `iat_` and 16 lowercase hex
/// digits. It names the token in listings, audit events and revocation;
/// it is not a secret and cannot be used to register.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IatId(String);

impl IatId {
    /// Validates the form.
    ///
    /// # Errors
    /// [`IatError::MalformedId`].
    pub fn new(id: impl Into<String>) -> Result<Self, IatError> {
        let id = id.into();
        let ok = id
            .strip_prefix("iat_")
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok { Ok(Self(id)) } else { Err(IatError::MalformedId) }
    }

    /// A fresh id from 8 random bytes.
    pub fn from_random(random: &[u8; 8]) -> Self {
        use fmt::Write as _;
        let mut s = String::with_capacity(20);
        s.push_str("iat_");
        for b in random {
            let _ = write!(s, "{b:02x}");
        }
        Self(s)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(IatId, IatError);

/// Registration metadata an initial access token imposes.
///
/// A request that names a different value is refused with
/// `invalid_client_metadata`; a request that omits the member gets the
/// pinned value (instead of RFC 7591's default `client_secret_basic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PinnedMetadata {
    /// The `token_endpoint_auth_method` every client registered with the
    /// token must use (`None`: the request chooses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
}

impl Default for PinnedMetadata {
    /// The dashboard's default: `token_endpoint_auth_method = none`, so
    /// every client registered with the token is a public PKCE client.
    fn default() -> Self {
        Self::auth_method(TokenEndpointAuthMethod::None)
    }
}

impl PinnedMetadata {
    /// No pins: the request chooses its metadata.
    pub const fn unpinned() -> Self {
        Self {
            token_endpoint_auth_method: None,
        }
    }

    /// Pins `token_endpoint_auth_method`.
    pub const fn auth_method(method: TokenEndpointAuthMethod) -> Self {
        Self {
            token_endpoint_auth_method: Some(method),
        }
    }

    /// Applies the pins to a registration request.
    ///
    /// # Errors
    /// [`ClientMetadataError::AuthMethodNotPermitted`] when the request
    /// names another method.
    /// A request offering several methods (`token_endpoint_auth_methods_supported`)
    /// satisfies the pin when it offers the pinned one, which is then the
    /// one registered.
    pub fn apply(&self, mut metadata: ClientMetadata) -> Result<ClientMetadata, ClientMetadataError> {
        if let Some(pinned) = self.token_endpoint_auth_method {
            let offered = metadata.offered_auth_methods();
            if offered.contains(&pinned) {
                metadata.token_endpoint_auth_method = Some(pinned.as_str().to_owned());
            } else if offered.is_empty() {
                match metadata.token_endpoint_auth_method.as_deref() {
                    None => metadata.token_endpoint_auth_method = Some(pinned.as_str().to_owned()),
                    Some(requested) if requested == pinned.as_str() => {}
                    Some(_) => return Err(ClientMetadataError::AuthMethodNotPermitted),
                }
            } else {
                return Err(ClientMetadataError::AuthMethodNotPermitted);
            }
            // The pin decided: nothing is left to negotiate.
            metadata.token_endpoint_auth_methods_supported = None;
        }
        Ok(metadata)
    }
}

/// What an administrator chooses when issuing an initial access token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IatOptions {
    /// A label for the dashboard (at most [`MAX_IAT_LABEL`] bytes, no
    /// control characters).
    pub label: Option<String>,
    /// Lifetime from issuance (`None`: never expires). Must be positive.
    pub ttl: Option<Duration>,
    /// Maximum number of registrations (`None`: unlimited). At least 1.
    pub max_uses: Option<u32>,
    /// Pinned metadata; the default pins `token_endpoint_auth_method = none`.
    pub pinned: PinnedMetadata,
}

impl IatOptions {
    /// The dashboard defaults: no label, no expiry, unlimited uses, pinned
    /// to `none`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the label.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets the lifetime.
    #[must_use]
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the use limit.
    #[must_use]
    pub const fn max_uses(mut self, max_uses: u32) -> Self {
        self.max_uses = Some(max_uses);
        self
    }

    /// Sets the pins.
    #[must_use]
    pub const fn pinned(mut self, pinned: PinnedMetadata) -> Self {
        self.pinned = pinned;
        self
    }
}

/// Why an initial access token cannot be issued or used.
///
/// Every state error ([`IatError::Missing`] to [`IatError::Revoked`]) is
/// answered 401 `invalid_token` with a Bearer challenge and a description
/// naming the state (see [`IatError::to_oauth_error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IatError {
    /// No `Authorization` header where a token is required.
    #[error("no initial access token was presented")]
    Missing,
    /// The `Authorization` header is not `Bearer <token>`.
    #[error("the Authorization header is not a bearer token")]
    Malformed,
    /// No token with this value in this project.
    #[error("the initial access token is unknown")]
    Unknown,
    /// Past `expires_at`.
    #[error("the initial access token has expired")]
    Expired,
    /// `max_uses` reached.
    #[error("the initial access token has no uses left")]
    Exhausted,
    /// Revoked by an administrator.
    #[error("the initial access token was revoked")]
    Revoked,
    /// An id that is not `iat_` and 16 lowercase hex digits.
    #[error("an initial access token id is iat_ followed by 16 lowercase hex digits")]
    MalformedId,
    /// A label that is too long or holds control characters.
    #[error("the label must be at most 200 bytes without control characters")]
    InvalidLabel,
    /// A lifetime of zero or less.
    #[error("the lifetime must be positive")]
    InvalidTtl,
    /// `max_uses` of zero.
    #[error("max_uses must be at least 1")]
    InvalidMaxUses,
    /// A pin no registration could satisfy. Since `private_key_jwt` clients
    /// can register (with `jwks` or `jwks_uri`), every method can be
    /// pinned and this is no longer returned; kept for compatibility.
    #[error("the pinned token_endpoint_auth_method cannot be satisfied")]
    InvalidPin,
}

impl IatError {
    /// A short machine-readable reason for audit events, e.g.
    /// `iat_expired`.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "iat_missing",
            Self::Malformed => "iat_malformed",
            Self::Unknown => "iat_unknown",
            Self::Expired => "iat_expired",
            Self::Exhausted => "iat_exhausted",
            Self::Revoked => "iat_revoked",
            Self::MalformedId => "iat_malformed_id",
            Self::InvalidLabel => "iat_invalid_label",
            Self::InvalidTtl => "iat_invalid_ttl",
            Self::InvalidMaxUses => "iat_invalid_max_uses",
            Self::InvalidPin => "iat_invalid_pin",
        }
    }

    /// The response to a registration request whose token failed:
    /// 401 `invalid_token` with `WWW-Authenticate: Bearer
    /// error="invalid_token"` (RFC 7591 section 3, RFC 6750 section 3.1)
    /// and a description saying what is wrong: missing, not a bearer
    /// token, unknown, expired, used up or revoked, so a developer knows
    /// what to fix.
    ///
    /// # Security
    /// Tokens are looked up in the request's project only, so a token of
    /// another project is "unknown" exactly like one that never existed:
    /// the answer reveals nothing about other projects. Expired, used-up
    /// and revoked are told only to a caller who holds that project's
    /// token (256 random bits).
    pub fn to_oauth_error(self) -> OAuthError {
        OAuthError::with_description(ErrorCode::InvalidToken, self.description())
            .with_challenge(crate::error::Challenge::Bearer)
    }

    /// The `error_description` of [`IatError::to_oauth_error`].
    pub const fn description(self) -> &'static str {
        match self {
            Self::Missing => "an initial access token is required: send it as Authorization: Bearer iatk_...",
            Self::Malformed => "the Authorization header must be Bearer followed by the initial access token",
            Self::Unknown => "the initial access token is not valid for this project",
            Self::Expired => "the initial access token has expired",
            Self::Exhausted => "the initial access token has been used up (max_uses reached)",
            Self::Revoked => "the initial access token was revoked",
            Self::MalformedId => "an initial access token id is iat_ followed by 16 lowercase hex digits",
            Self::InvalidLabel => "the label must be at most 200 bytes without control characters",
            Self::InvalidTtl => "the lifetime must be positive",
            Self::InvalidMaxUses => "max_uses must be at least 1",
            Self::InvalidPin => "the pinned token_endpoint_auth_method cannot be satisfied",
        }
    }
}

/// The state of an initial access token at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IatStatus {
    /// Usable.
    Active,
    /// Past its expiry.
    Expired,
    /// No uses left.
    Exhausted,
    /// Revoked.
    Revoked,
}

/// A stored initial access token: everything but the token itself.
///
/// Stores keep these, keyed by project and [`IatRecord::hash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IatRecord {
    /// The id.
    pub id: IatId,
    /// The SHA-256 hash of the token.
    pub hash: SecretHash,
    /// The label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it was issued.
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// When it expires (`None`: never).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// The use limit (`None`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// Registrations made with it so far.
    pub uses: u32,
    /// When it was revoked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub revoked_at: Option<OffsetDateTime>,
    /// Pinned registration metadata.
    pub pinned: PinnedMetadata,
}

impl IatRecord {
    /// Issues a token: validates the options, and returns the record to
    /// store and the raw token, which exists only in the return value (show
    /// it once, never store it).
    ///
    /// # Errors
    /// [`IatError::InvalidLabel`], [`IatError::InvalidTtl`],
    /// or [`IatError::InvalidMaxUses`].
    pub fn issue(
        options: IatOptions,
        id_random: &[u8; 8],
        token_random: &[u8; IAT_RANDOM_BYTES],
        now: OffsetDateTime,
    ) -> Result<(Self, SecretString), IatError> {
        if let Some(label) = &options.label
            && (label.len() > MAX_IAT_LABEL || label.chars().any(char::is_control))
        {
            return Err(IatError::InvalidLabel);
        }
        let expires_at = match options.ttl {
            None => None,
            Some(ttl) if ttl <= Duration::ZERO => return Err(IatError::InvalidTtl),
            Some(ttl) => Some(now.checked_add(ttl).ok_or(IatError::InvalidTtl)?),
        };
        if options.max_uses == Some(0) {
            return Err(IatError::InvalidMaxUses);
        }
        let token = SecretString::random_with_prefix(IAT_PREFIX, token_random);
        let record = Self {
            id: IatId::from_random(id_random),
            hash: token.hash(),
            label: options.label,
            created_at: now,
            expires_at,
            max_uses: options.max_uses,
            uses: 0,
            revoked_at: None,
            pinned: options.pinned,
        };
        Ok((record, token))
    }

    /// The state at `now`. Revocation wins over expiry, expiry over
    /// exhaustion.
    pub fn status(&self, now: OffsetDateTime) -> IatStatus {
        if self.revoked_at.is_some() {
            IatStatus::Revoked
        } else if self.expires_at.is_some_and(|e| now >= e) {
            IatStatus::Expired
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            IatStatus::Exhausted
        } else {
            IatStatus::Active
        }
    }

    /// Whether a registration may use the token at `now`.
    ///
    /// # Errors
    /// [`IatError::Revoked`], [`IatError::Expired`] or
    /// [`IatError::Exhausted`].
    pub fn check(&self, now: OffsetDateTime) -> Result<(), IatError> {
        match self.status(now) {
            IatStatus::Active => Ok(()),
            IatStatus::Expired => Err(IatError::Expired),
            IatStatus::Exhausted => Err(IatError::Exhausted),
            IatStatus::Revoked => Err(IatError::Revoked),
        }
    }

    /// Counts one use if the token is usable at `now` ([`IatRecord::check`]
    /// then increment). A store calls this under the same lock or
    /// transaction as the read, so that concurrent uses are counted
    /// exactly.
    ///
    /// # Errors
    /// As [`IatRecord::check`].
    pub fn try_use(&mut self, now: OffsetDateTime) -> Result<(), IatError> {
        self.check(now)?;
        self.uses = self.uses.saturating_add(1);
        Ok(())
    }

    /// The listing form at `now`, without the hash.
    pub fn view(&self, now: OffsetDateTime) -> IatView {
        IatView {
            id: self.id.clone(),
            label: self.label.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_uses: self.max_uses,
            uses: self.uses,
            revoked_at: self.revoked_at,
            pinned: self.pinned,
            status: self.status(now),
        }
    }
}

/// An initial access token as the dashboard lists it: no token, no hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IatView {
    /// The id.
    pub id: IatId,
    /// The label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it was issued (RFC 3339 in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it expires.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// The use limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// Uses so far.
    pub uses: u32,
    /// When it was revoked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub revoked_at: Option<OffsetDateTime>,
    /// Pinned metadata.
    pub pinned: PinnedMetadata,
    /// The state when the view was made.
    pub status: IatStatus,
}

/// Extracts the token of an `Authorization: Bearer <token>` header value
/// (RFC 6750 section 2.1): the scheme is case-insensitive, spaces separate
/// it from the token, and the token is a `b64token` of at most 4,096
/// bytes (the crate's one bearer parser). The
/// `iatk_` prefix is not required: an unknown token simply fails lookup.
///
/// # Errors
/// [`IatError::Malformed`].
pub fn parse_bearer(authorization: &str) -> Result<SecretString, IatError> {
    crate::bearer::parse(authorization)
        .map(SecretString::from)
        .map_err(|_| IatError::Malformed)
}

/// Server-wide registration limits and lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistrationPolicy {
    /// Lifetime of issued client secrets (`None`: never expire, reported as
    /// `client_secret_expires_at: 0`). The default is `None`: without RFC
    /// 7592 client management a client has no way to obtain a new secret.
    pub client_secret_ttl: Option<Duration>,
    /// The most registered clients a project may hold (`None`: no limit).
    /// Keeps storage bounded against registration spam (SPEC-CHECKLIST 8.5).
    /// The check counts before inserting, so concurrent registrations can
    /// overshoot by at most their number. Default: 10,000.
    pub max_clients_per_project: Option<usize>,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        Self {
            client_secret_ttl: None,
            max_clients_per_project: Some(10_000),
        }
    }
}

/// Why a registration request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The project's DCR mode is `disabled`.
    #[error("dynamic client registration is disabled for this project")]
    Disabled,
    /// The initial access token is missing or unusable.
    #[error("{0}")]
    Token(IatError),
    /// The metadata broke a rule.
    #[error("{0}")]
    Metadata(ClientMetadataError),
    /// The request names another `token_endpoint_auth_method` than the
    /// initial access token pins.
    #[error("token_endpoint_auth_method must be '{pinned}' or omitted: the initial access token requires it")]
    PinnedAuthMethod {
        /// The pinned method.
        pinned: &'static str,
    },
    /// The project holds [`RegistrationPolicy::max_clients_per_project`]
    /// clients.
    #[error("the project has reached its limit of registered clients")]
    QuotaExceeded,
    /// No initial access token, and the project's tokenless-registration
    /// policy did not admit the request. Answered like a missing token
    /// (401 `invalid_token`), except when rate-limited (403
    /// `access_denied`); the audit event says which.
    #[error("{0}")]
    NotAdmitted(crate::tokenless::NotAdmitted),
    /// A registration without an initial access token (`dcr_mode = open`,
    /// or admitted as tokenless) whose metadata would take more than
    /// [`MAX_ANONYMOUS_METADATA_BYTES`] to store: anonymous clients are
    /// kept compact, so that a flood of them stays small.
    #[error(
        "a registration without an initial access token may store at most {max} bytes of client metadata (this one: {bytes}); register with an initial access token"
    )]
    AnonymousMetadataTooLarge {
        /// The metadata's size, serialized as stored.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// The most bytes of client metadata (serialized as stored) a registration
/// without an initial access token may keep. Real MCP clients' requests
/// take 300 to 600 bytes.
pub const MAX_ANONYMOUS_METADATA_BYTES: usize = 4096;

impl RegistrationError {
    /// The OAuth error code: `access_denied` (403) for [`Self::Disabled`]
    /// and [`Self::QuotaExceeded`], `invalid_token` (401) for token
    /// failures, and the RFC 7591 section 3.2.2 codes for metadata.
    ///
    /// RFC 7591 defines no code for "registration is not offered";
    /// `access_denied` renders as 403 Forbidden, which says "this endpoint
    /// refuses you" without suggesting that a different request could
    /// succeed.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Disabled | Self::QuotaExceeded => ErrorCode::AccessDenied,
            Self::NotAdmitted(crate::tokenless::NotAdmitted::RateLimited) => ErrorCode::AccessDenied,
            Self::Token(_) | Self::NotAdmitted(_) => ErrorCode::InvalidToken,
            Self::Metadata(e) => e.code(),
            Self::PinnedAuthMethod { .. } => ClientMetadataError::AuthMethodNotPermitted.code(),
            Self::AnonymousMetadataTooLarge { .. } => ErrorCode::InvalidClientMetadata,
        }
    }

    /// A machine-readable reason for audit events.
    pub fn reason(&self) -> String {
        match self {
            Self::Disabled => "dcr_disabled".to_owned(),
            Self::Token(e) => e.reason().to_owned(),
            Self::Metadata(e) => e.to_string(),
            Self::PinnedAuthMethod { .. } => "auth_method_not_permitted".to_owned(),
            Self::QuotaExceeded => "client_quota_exceeded".to_owned(),
            Self::NotAdmitted(e @ crate::tokenless::NotAdmitted::Untrusted { .. }) => {
                format!("{}: {e}", e.reason())
            }
            Self::NotAdmitted(e) => e.reason().to_owned(),
            Self::AnonymousMetadataTooLarge { .. } => "anonymous_metadata_too_large".to_owned(),
        }
    }

    /// The error response. Token failures carry no detail (see
    /// [`IatError::to_oauth_error`]); the others a useful description.
    pub fn to_oauth_error(&self) -> OAuthError {
        match self {
            Self::Token(e) => e.to_oauth_error(),
            Self::NotAdmitted(crate::tokenless::NotAdmitted::RateLimited) => OAuthError::with_description(
                ErrorCode::AccessDenied,
                "too many registrations without an initial access token from this source; try again later",
            ),
            Self::NotAdmitted(_) => IatError::Missing.to_oauth_error(),
            other => OAuthError::with_description(other.code(), other.to_string()),
        }
    }
}

impl From<IatError> for RegistrationError {
    fn from(e: IatError) -> Self {
        Self::Token(e)
    }
}

impl From<ClientMetadataError> for RegistrationError {
    fn from(e: ClientMetadataError) -> Self {
        Self::Metadata(e)
    }
}

/// Parses and validates a registration request body under an optional set
/// of pins: the pure check that runs BEFORE an initial access token use is
/// counted, so that a refused request burns no use.
///
/// # Errors
/// [`RegistrationError::Metadata`] (also for a body over
/// [`MAX_REGISTRATION_BODY`]) or [`RegistrationError::PinnedAuthMethod`].
pub fn validate_request(
    body: &[u8],
    pins: Option<&PinnedMetadata>,
    redirect_policy: crate::redirect_uri::RedirectUriPolicy,
) -> Result<ValidatedMetadata, RegistrationError> {
    if body.len() > MAX_REGISTRATION_BODY {
        return Err(ClientMetadataError::TooLong { field: "request body" }.into());
    }
    let mut metadata = ClientMetadata::from_json(body)?;
    if let Some(pins) = pins {
        metadata = pins
            .apply(metadata)
            .map_err(|e| match (e, pins.token_endpoint_auth_method) {
                (ClientMetadataError::AuthMethodNotPermitted, Some(m)) => {
                    RegistrationError::PinnedAuthMethod { pinned: m.as_str() }
                }
                (other, _) => RegistrationError::Metadata(other),
            })?;
    }
    Ok(metadata.validate(crate::client::MetadataProfile::Dcr, redirect_policy)?)
}

/// A newly registered client: what to store, and what to answer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Registration {
    /// The client to store (secret hashed).
    pub client: Client,
    /// The 201 response body (with the raw secret, once).
    pub response: RegistrationResponse,
}

impl Registration {
    /// Mints a client from validated metadata: the id from
    /// `id_random`, and for confidential clients a secret from
    /// `secret_random` (ignored for public clients) expiring after
    /// `policy.client_secret_ttl`.
    pub fn mint(
        metadata: ValidatedMetadata,
        id_random: &[u8; 12],
        secret_random: &[u8; CLIENT_SECRET_RANDOM_BYTES],
        policy: &RegistrationPolicy,
        now: OffsetDateTime,
    ) -> Self {
        let id = RegisteredClientId::from_random(id_random);
        let mut client = Client::new(ClientId::Registered(id.clone()), metadata, now);
        let secret = if client.metadata.token_endpoint_auth_method.uses_shared_secret() {
            let secret = SecretString::random_with_prefix("", secret_random);
            client.secret_hash = Some(secret.hash());
            client.secret_expires_at = policy.client_secret_ttl.and_then(|ttl| now.checked_add(ttl));
            Some(secret)
        } else {
            None
        };
        let response = RegistrationResponse {
            client_id: id,
            client_id_issued_at: now.unix_timestamp(),
            client_secret_expires_at: secret
                .as_ref()
                .map(|_| client.secret_expires_at.map_or(0, OffsetDateTime::unix_timestamp)),
            client_secret: secret,
            metadata: client.metadata.clone(),
        };
        Self { client, response }
    }
}

/// The RFC 7591 section 3.2.1 response (HTTP 201): every registered
/// metadata value plus `client_id` and `client_id_issued_at`, and for
/// confidential clients `client_secret` and `client_secret_expires_at`
/// (0 = never).
///
/// `Debug` redacts the secret; serializing (or [`Self::to_json`]) is the
/// one place it is written out.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegistrationResponse {
    /// The new client id.
    pub client_id: RegisteredClientId,
    /// Issue time, seconds since the epoch.
    pub client_id_issued_at: i64,
    /// The secret, for confidential clients.
    pub client_secret: Option<SecretString>,
    /// Secret expiry, seconds since the epoch, 0 for never; present iff
    /// `client_secret` is.
    pub client_secret_expires_at: Option<i64>,
    /// The registered metadata.
    pub metadata: ValidatedMetadata,
}

#[derive(Serialize)]
struct ResponseBody<'a> {
    client_id: &'a str,
    client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret_expires_at: Option<i64>,
    #[serde(flatten)]
    metadata: &'a ValidatedMetadata,
}

impl Serialize for RegistrationResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ResponseBody {
            client_id: self.client_id.as_str(),
            client_id_issued_at: self.client_id_issued_at,
            client_secret: self.client_secret.as_ref().map(SecretString::expose_secret),
            client_secret_expires_at: self.client_secret_expires_at,
            metadata: &self.metadata,
        }
        .serialize(s)
    }
}

impl RegistrationResponse {
    /// The HTTP status: 201 Created.
    pub const STATUS: http::StatusCode = http::StatusCode::CREATED;

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| br#"{"error":"server_error"}"#.to_vec())
    }

    /// The complete response: 201, JSON, `Cache-Control: no-store` (it may
    /// carry a secret).
    pub fn to_response(&self) -> http::Response<Vec<u8>> {
        use http::{HeaderValue, header};
        let mut response = http::Response::new(self.to_json());
        *response.status_mut() = Self::STATUS;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redirect_uri::RedirectUriPolicy;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn issue(options: IatOptions) -> (IatRecord, SecretString) {
        IatRecord::issue(options, &[0x1f; 8], &[7; 32], NOW).unwrap()
    }

    #[test]
    fn ids() {
        let id = IatId::from_random(&[0xab, 0, 1, 2, 3, 4, 5, 0xff]);
        assert_eq!(id.as_str(), "iat_ab000102030405ff");
        assert_eq!(IatId::new(id.as_str()), Ok(id.clone()));
        for bad in ["iat_", "iat_AB000102030405FF", "iat_ab000102030405f", "client_x", ""] {
            assert_eq!(IatId::new(bad), Err(IatError::MalformedId), "{bad}");
        }
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"iat_ab000102030405ff\"");
        assert!(serde_json::from_str::<IatId>("\"iat_zz\"").is_err());
    }

    #[test]
    fn issuing_stores_only_the_hash() {
        let (record, token) = issue(
            IatOptions::new()
                .label("Claude desktop")
                .max_uses(3)
                .ttl(Duration::days(7)),
        );
        let raw = token.expose_secret();
        assert!(raw.starts_with("iatk_"));
        assert_eq!(raw.len(), 5 + 43, "256 random bits");
        assert!(record.hash.matches(raw));
        assert_eq!(record.expires_at, Some(NOW + Duration::days(7)));
        assert_eq!(record.max_uses, Some(3));
        assert_eq!(record.uses, 0);
        assert_eq!(
            record.pinned.token_endpoint_auth_method,
            Some(TokenEndpointAuthMethod::None),
            "the dashboard default pins none"
        );
        let debug = format!("{record:?} {:?} {token:?}", record.view(NOW));
        let json = serde_json::to_string(&record).unwrap();
        assert!(!debug.contains(raw) && !json.contains(raw));
        assert!(!debug.contains(&raw[5..20]) && !json.contains(&raw[5..20]));
        let back: IatRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn option_refusals() {
        let bad = [
            (IatOptions::new().label("x".repeat(201)), IatError::InvalidLabel),
            (IatOptions::new().label("a\nb"), IatError::InvalidLabel),
            (IatOptions::new().ttl(Duration::ZERO), IatError::InvalidTtl),
            (IatOptions::new().ttl(Duration::seconds(-1)), IatError::InvalidTtl),
            (IatOptions::new().ttl(Duration::MAX), IatError::InvalidTtl),
            (IatOptions::new().max_uses(0), IatError::InvalidMaxUses),
        ];
        for (options, err) in bad {
            assert_eq!(IatRecord::issue(options, &[0; 8], &[0; 32], NOW).unwrap_err(), err);
        }
        assert!(IatRecord::issue(IatOptions::new().label("x".repeat(200)), &[0; 8], &[0; 32], NOW).is_ok());
    }

    #[test]
    fn lifecycle_states() {
        let (mut r, _) = issue(IatOptions::new().max_uses(2).ttl(Duration::hours(1)));
        assert_eq!(r.check(NOW), Ok(()));
        r.try_use(NOW).unwrap();
        r.try_use(NOW).unwrap();
        assert_eq!(r.uses, 2);
        assert_eq!(r.try_use(NOW), Err(IatError::Exhausted));
        assert_eq!(r.uses, 2, "a refused use is not counted");
        assert_eq!(r.status(NOW), IatStatus::Exhausted);
        // expiry is exclusive of the instant itself
        let (r2, _) = issue(IatOptions::new().ttl(Duration::hours(1)));
        assert_eq!(r2.check(NOW + Duration::hours(1) - Duration::SECOND), Ok(()));
        assert_eq!(r2.check(NOW + Duration::hours(1)), Err(IatError::Expired));
        // revocation wins
        r.revoked_at = Some(NOW);
        assert_eq!(r.check(NOW + Duration::hours(2)), Err(IatError::Revoked));
        assert_eq!(r.view(NOW).status, IatStatus::Revoked);
        // unlimited
        let (mut r3, _) = issue(IatOptions::new());
        for _ in 0..1000 {
            r3.try_use(NOW + Duration::days(3650)).unwrap();
        }
    }

    #[test]
    fn every_state_error_is_a_bearer_challenge_naming_the_state() {
        let states = [
            IatError::Missing,
            IatError::Malformed,
            IatError::Unknown,
            IatError::Expired,
            IatError::Exhausted,
            IatError::Revoked,
        ];
        let mut descriptions = Vec::new();
        for e in states {
            let r = RegistrationError::Token(e).to_oauth_error().to_response();
            assert_eq!(r.status(), 401, "{e:?}");
            let challenge = r.headers()[http::header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
            assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{challenge}");
            let body: Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(body["error"], "invalid_token");
            let d = body["error_description"].as_str().unwrap().to_owned();
            assert_eq!(d, e.description());
            assert!(challenge.contains(&d), "{challenge}");
            descriptions.push(d);
        }
        for (word, e) in [
            ("required", 0),
            ("Bearer", 1),
            ("not valid", 2),
            ("expired", 3),
            ("used up", 4),
            ("revoked", 5),
        ] {
            assert!(descriptions[e].contains(word), "{}", descriptions[e]);
        }
        let mut unique = descriptions.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), states.len(), "each state says what is wrong");
    }

    #[test]
    fn bearer_parsing() {
        for ok in [
            "Bearer iatk_abc",
            "bearer iatk_abc",
            "BEARER x",
            "Bearer a+/b==",
            "Bearer a.b~c-d_e",
        ] {
            let token = parse_bearer(ok).unwrap();
            assert_eq!(token.expose_secret(), ok.split_once(' ').unwrap().1);
        }
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer iatk abc",
            "Basic iatk_abc",
            "Bearerx iatk_abc",
            "Bearer\tiatk_abc",
            "Bearer ===",
            "Bearer a=b",
            "Bearer iatk_é",
        ] {
            assert_eq!(parse_bearer(bad).unwrap_err(), IatError::Malformed, "{bad:?}");
        }
        assert!(parse_bearer(&format!("Bearer {}", "a".repeat(5000))).is_err());
        // RFC 6750 section 2.1 is `"Bearer" 1*SP b64token`, and spaces
        // around a field value are not part of it: the crate's one parser
        // takes both, as the resource server always did.
        for spaced in ["Bearer  iatk_abc", "Bearer iatk_abc "] {
            assert_eq!(parse_bearer(spaced).unwrap().expose_secret(), "iatk_abc");
        }
    }

    #[test]
    fn pins_apply_or_refuse() {
        let seed = br#"{"redirect_uris":["https://a.example.com/cb"],"client_name":"A"}"#;
        let pin_none = PinnedMetadata::default();
        let v = validate_request(seed, Some(&pin_none), RedirectUriPolicy::strict()).unwrap();
        assert_eq!(
            v.token_endpoint_auth_method,
            TokenEndpointAuthMethod::None,
            "an omitted method takes the pinned value, not client_secret_basic"
        );
        let unpinned = validate_request(seed, None, RedirectUriPolicy::strict()).unwrap();
        assert_eq!(
            unpinned.token_endpoint_auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        let unpinned = validate_request(seed, Some(&PinnedMetadata::unpinned()), RedirectUriPolicy::strict()).unwrap();
        assert_eq!(
            unpinned.token_endpoint_auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic
        );

        let basic =
            br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#;
        let err = validate_request(basic, Some(&pin_none), RedirectUriPolicy::strict()).unwrap_err();
        assert_eq!(err, RegistrationError::PinnedAuthMethod { pinned: "none" });
        let oauth = err.to_oauth_error();
        assert_eq!(oauth.code(), ErrorCode::InvalidClientMetadata);
        assert_eq!(oauth.status(), 400);
        assert!(oauth.description().unwrap().contains("'none'"), "{oauth}");

        let pin_post = PinnedMetadata::auth_method(TokenEndpointAuthMethod::ClientSecretPost);
        let v = validate_request(seed, Some(&pin_post), RedirectUriPolicy::strict()).unwrap();
        assert_eq!(v.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretPost);
        assert!(validate_request(basic, None, RedirectUriPolicy::strict()).is_ok());
        // unknown methods are refused by the pin first: still invalid_client_metadata
        let magic = br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"magic"}"#;
        assert_eq!(
            validate_request(magic, Some(&pin_none), RedirectUriPolicy::strict())
                .unwrap_err()
                .code(),
            ErrorCode::InvalidClientMetadata
        );
    }

    #[test]
    fn request_refusals_have_rfc7591_codes_and_descriptions() {
        let table: [(&[u8], ErrorCode); 7] = [
            (b"not json", ErrorCode::InvalidClientMetadata),
            (br#"{"client_name":"A"}"#, ErrorCode::InvalidRedirectUri),
            (br#"{"redirect_uris":["http://evil.example.com/cb"]}"#, ErrorCode::InvalidRedirectUri),
            (
                // private_key_jwt needs keys (`jwks` or `jwks_uri`).
                br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#,
                ErrorCode::InvalidClientMetadata,
            ),
            (
                br#"{"redirect_uris":["https://a.example.com/cb"],"jwks_uri":"https://a.example.com/j","jwks":{"keys":[]}}"#,
                ErrorCode::InvalidClientMetadata,
            ),
            (
                br#"{"redirect_uris":["https://a.example.com/cb"],"grant_types":["implicit"]}"#,
                ErrorCode::InvalidClientMetadata,
            ),
            (
                br#"{"redirect_uris":["https://a.example.com/cb"],"software_statement":"e.y.J"}"#,
                ErrorCode::InvalidSoftwareStatement,
            ),
        ];
        let big = format!(
            r#"{{"redirect_uris":["https://a.example.com/cb"],"x":"{}"}}"#,
            "a".repeat(MAX_REGISTRATION_BODY)
        );
        assert_eq!(
            validate_request(big.as_bytes(), None, RedirectUriPolicy::strict()).unwrap_err(),
            RegistrationError::Metadata(ClientMetadataError::TooLong { field: "request body" })
        );
        for (body, code) in table {
            let e = validate_request(body, None, RedirectUriPolicy::strict()).unwrap_err();
            let o = e.to_oauth_error();
            assert_eq!(o.code(), code, "{}", String::from_utf8_lossy(body));
            assert_eq!(o.status(), 400);
            assert!(o.description().is_some_and(|d| !d.is_empty()));
        }
    }

    #[test]
    fn public_client_response_has_no_secret() {
        let body = br#"{
            "redirect_uris":               ["https://my-mcp-server.example.com/oauth/callback"],
            "client_name":                 "My MCP Server",
            "token_endpoint_auth_method":  "none",
            "application_type":            "web"
        }"#;
        let v = validate_request(body, Some(&PinnedMetadata::default()), RedirectUriPolicy::strict()).unwrap();
        let reg = Registration::mint(v, &[0xab; 12], &[9; 32], &RegistrationPolicy::default(), NOW);
        assert!(reg.client.secret_hash.is_none());
        assert!(reg.response.client_secret.is_none());
        let j: Value = serde_json::from_slice(&reg.response.to_json()).unwrap();
        assert_eq!(
            j,
            json!({
                "client_id": "client_abababababababababababab",
                "client_id_issued_at": NOW.unix_timestamp(),
                "redirect_uris": ["https://my-mcp-server.example.com/oauth/callback"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "client_name": "My MCP Server",
                "application_type": "web"
            })
        );
        let r = reg.response.to_response();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()[http::header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn confidential_client_gets_a_hashed_secret_once() {
        let body = br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"client_secret_post","scope":"mcp:read","contacts":["ops@example.com"],"client_uri":"https://a.example.com"}"#;
        let v = validate_request(body, None, RedirectUriPolicy::strict()).unwrap();
        let policy = RegistrationPolicy {
            client_secret_ttl: Some(Duration::days(90)),
            ..Default::default()
        };
        let reg = Registration::mint(v.clone(), &[1; 12], &[2; 32], &policy, NOW);
        let secret = reg.response.client_secret.clone().unwrap();
        assert_eq!(secret.expose_secret().len(), 43);
        assert!(reg.client.secret_hash.unwrap().matches(secret.expose_secret()));
        assert_eq!(reg.client.secret_expires_at, Some(NOW + Duration::days(90)));
        let j: Value = serde_json::from_slice(&reg.response.to_json()).unwrap();
        assert_eq!(j["client_secret"], secret.expose_secret());
        assert_eq!(
            j["client_secret_expires_at"],
            (NOW + Duration::days(90)).unix_timestamp()
        );
        assert_eq!(j["scope"], "mcp:read");
        assert_eq!(j["contacts"], json!(["ops@example.com"]));
        assert_eq!(j["client_uri"], "https://a.example.com");
        // Debug of everything but the serialized body is redacted
        let debug = format!("{reg:?}");
        assert!(!debug.contains(secret.expose_secret()), "{debug}");

        // never-expiring secrets say 0
        let reg = Registration::mint(v, &[1; 12], &[2; 32], &RegistrationPolicy::default(), NOW);
        assert_eq!(reg.client.secret_expires_at, None);
        let j: Value = serde_json::from_slice(&reg.response.to_json()).unwrap();
        assert_eq!(j["client_secret_expires_at"], 0);
    }

    proptest! {
        #[test]
        fn bearer_parser_never_panics(s in ".{0,300}") {
            if let Ok(token) = parse_bearer(&s) {
                prop_assert!(s.ends_with(token.expose_secret()));
            }
        }

        #[test]
        fn registration_validation_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = validate_request(&body, Some(&PinnedMetadata::default()), RedirectUriPolicy::strict());
        }
    }
}
