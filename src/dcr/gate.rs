//! The gate: why a registration request is refused, and how each refusal
//! is answered.

use crate::client::ClientMetadataError;
use crate::error::{ErrorCode, OAuthError};

use super::iat::IatError;

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
    /// The project holds [`RegistrationPolicy::max_clients_per_project`](super::RegistrationPolicy::max_clients_per_project)
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
    /// failures, and the [RFC 7591 section 3.2.2] codes for metadata.
    ///
    /// [RFC 7591] defines no code for "registration is not offered";
    /// `access_denied` renders as 403 Forbidden, which says "this endpoint
    /// refuses you" without suggesting that a different request could
    /// succeed.
    ///
    /// [RFC 7591 section 3.2.2]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.2
    /// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
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
