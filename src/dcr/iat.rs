//! Initial access tokens: ids, records, options, the metadata they pin,
//! and the registration endpoint's bearer parser.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::client::{ClientMetadata, ClientMetadataError, TokenEndpointAuthMethod};
use crate::error::{ErrorCode, OAuthError};
use crate::newtype::string_newtype;
use crate::secret::{SecretHash, SecretString};

/// The prefix of every initial access token.
pub const IAT_PREFIX: &str = "iatk_";

/// Random bytes in an initial access token (256 bits).
pub const IAT_RANDOM_BYTES: usize = 32;

/// The longest IAT label accepted, in bytes.
pub const MAX_IAT_LABEL: usize = 200;

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
/// pinned value (instead of [RFC 7591]'s default `client_secret_basic`).
///
/// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
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
    /// error="invalid_token"` ([RFC 7591 section 3], [RFC 6750 section 3.1])
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
    ///
    /// [RFC 7591 section 3]: https://www.rfc-editor.org/rfc/rfc7591#section-3
    /// [RFC 6750 section 3.1]: https://www.rfc-editor.org/rfc/rfc6750#section-3.1
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
    /// When it was issued ([RFC 3339] in JSON).
    ///
    /// [RFC 3339]: https://www.rfc-editor.org/rfc/rfc3339
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
/// ([RFC 6750 section 2.1]): the scheme is case-insensitive, spaces separate
/// it from the token, and the token is a `b64token` of at most 4,096
/// bytes (the crate's one bearer parser). The
/// `iatk_` prefix is not required: an unknown token simply fails lookup.
///
/// # Errors
/// [`IatError::Malformed`].
///
/// [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
pub fn parse_bearer(authorization: &str) -> Result<SecretString, IatError> {
    crate::bearer::parse(authorization)
        .map(SecretString::from)
        .map_err(|_| IatError::Malformed)
}
