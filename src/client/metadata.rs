//! [RFC 7591] client metadata: the fields, the profiles (DCR, CIMD) and
//! the validated form.
//!
//! [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ErrorCode;
use crate::redirect_uri::{RedirectUri, RedirectUriError};
use crate::scope::ScopeSet;

/// `token_endpoint_auth_method` values this server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client (PKCE only).
    None,
    /// HTTP Basic with a client secret.
    ClientSecretBasic,
    /// Client secret in the form body.
    ClientSecretPost,
    /// A signed JWT assertion ([RFC 7523]); CIMD confidential clients only.
    ///
    /// [RFC 7523]: https://www.rfc-editor.org/rfc/rfc7523
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    /// The [RFC 7591] string.
    ///
    /// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the method uses a shared secret.
    pub const fn uses_shared_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }
}

/// Whether this server verifies `private_key_jwt` client assertions ([RFC
/// 7523]) at its token endpoint: it does (see [`crate::client_auth`]), so a
/// client that offers several methods (OpenID Connect RP Metadata Choices)
/// and publishes keys is given `private_key_jwt` by negotiation where the
/// profile allows it (CIMD: only when the project's CIMD policy allows
/// confidential clients).
///
/// [RFC 7523]: https://www.rfc-editor.org/rfc/rfc7523
pub const VERIFIES_PRIVATE_KEY_JWT: bool = true;

/// The server's preference among the methods a client offers: keys over
/// nothing over shared secrets (a public client with PKCE holds no secret
/// that can leak; a shared secret is the weakest credential).
const AUTH_METHOD_PREFERENCE: [TokenEndpointAuthMethod; 4] = [
    TokenEndpointAuthMethod::PrivateKeyJwt,
    TokenEndpointAuthMethod::None,
    TokenEndpointAuthMethod::ClientSecretBasic,
    TokenEndpointAuthMethod::ClientSecretPost,
];

/// Picks one `token_endpoint_auth_method` from the methods a client offers
/// in `token_endpoint_auth_methods_supported` (OpenID Connect RP Metadata
/// Choices 1.0): the most preferred one the server supports under
/// `profile` (`private_key_jwt` only with keys, only for metadata-document
/// clients whose policy allows it, and only once
/// [`VERIFIES_PRIVATE_KEY_JWT`]; shared secrets only through DCR). `None`
/// when the client offers nothing the server supports.
pub fn negotiate_auth_method(
    offered: &[TokenEndpointAuthMethod],
    profile: MetadataProfile,
    has_keys: bool,
) -> Option<TokenEndpointAuthMethod> {
    let supported = |m: TokenEndpointAuthMethod| match (m, profile) {
        (TokenEndpointAuthMethod::None, _) => true,
        (TokenEndpointAuthMethod::PrivateKeyJwt, MetadataProfile::Cimd { allow_private_key_jwt }) => {
            allow_private_key_jwt && has_keys && VERIFIES_PRIVATE_KEY_JWT
        }
        (TokenEndpointAuthMethod::PrivateKeyJwt, MetadataProfile::Dcr) => false,
        (_, MetadataProfile::Cimd { .. }) => false,
        (_, MetadataProfile::Dcr) => true,
    };
    AUTH_METHOD_PREFERENCE
        .into_iter()
        .find(|m| offered.contains(m) && supported(*m))
}

/// Grant types this server supports; others are filtered out of metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `authorization_code`.
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials` ([RFC 6749 section 4.4]; the MCP extension
    /// `io.modelcontextprotocol/oauth-client-credentials`): confidential
    /// registered clients only.
    ///
    /// [RFC 6749 section 4.4]: https://www.rfc-editor.org/rfc/rfc6749#section-4.4
    ClientCredentials,
}

impl GrantType {
    /// The RFC string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

/// `application_type` (OpenID Connect Dynamic Registration, used by MCP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    /// A web application (the default).
    #[default]
    Web,
    /// A native application.
    Native,
}

/// Client metadata as sent by a client ([RFC 7591 section 2]) or published in
/// a CIMD document: unvalidated. Unknown members are kept in `extra` and
/// otherwise ignored.
///
/// [RFC 7591 section 2]: https://www.rfc-editor.org/rfc/rfc7591#section-2
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientMetadata {
    /// `client_id` (CIMD documents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `redirect_uris`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    /// `token_endpoint_auth_method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// `token_endpoint_auth_methods_supported` (OpenID Connect RP Metadata
    /// Choices 1.0): every method the client can use; when it names one
    /// the server supports, the server picks ([`negotiate_auth_method`])
    /// and `token_endpoint_auth_method` is not binding. Members that are
    /// not strings or not known methods are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Value>,
    /// `grant_types`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    /// `response_types`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    /// `client_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// `client_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// `logo_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// `scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `contacts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<String>>,
    /// `tos_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// `policy_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    /// `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `jwks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// `software_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// `software_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// `software_statement` (not supported: a request carrying one is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_statement: Option<String>,
    /// `application_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// `client_secret`: forbidden in CIMD documents; ignored in DCR requests.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<Value>,
    /// `client_secret_expires_at`: forbidden in CIMD documents.
    #[serde(default, skip_serializing)]
    pub client_secret_expires_at: Option<Value>,
    /// Every other member, ignored.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Which rules [`ClientMetadata::validate`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataProfile {
    /// [RFC 7591] registration: the auth method defaults to
    /// `client_secret_basic`; `client_secret` members in the request are
    /// ignored (the server issues secrets).
    ///
    /// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
    Dcr,
    /// A Client ID Metadata Document: `client_name` is required (MCP); the
    /// auth method defaults to `none` ([RFC 7591]'s default
    /// `client_secret_basic` is forbidden for CIMD); shared-secret methods
    /// and `client_secret` members are refused; `private_key_jwt` only when
    /// allowed.
    ///
    /// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
    Cimd {
        /// Accept `private_key_jwt` clients (with `jwks` or `jwks_uri`).
        allow_private_key_jwt: bool,
    },
}

/// Why client metadata was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientMetadataError {
    /// The body is not a JSON object of the [RFC 7591] shape.
    ///
    /// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
    #[error("client metadata is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// `redirect_uris` is missing or empty.
    #[error("redirect_uris is required and must not be empty")]
    MissingRedirectUris,
    /// A redirect URI is not acceptable.
    #[error("redirect_uris[{index}] is not acceptable: {error}")]
    RedirectUri {
        /// Position in the array.
        index: usize,
        /// The broken rule.
        error: RedirectUriError,
    },
    /// An unknown `token_endpoint_auth_method`.
    #[error("token_endpoint_auth_method is not supported")]
    UnsupportedAuthMethod,
    /// A shared-secret method in a CIMD document.
    #[error("token_endpoint_auth_method must not use a shared secret for a metadata-document client")]
    SharedSecretAuthMethod,
    /// `private_key_jwt` where it is not allowed, or without keys.
    #[error("private_key_jwt is not allowed here, or neither jwks nor jwks_uri is present")]
    PrivateKeyJwt,
    /// A method other than the one an initial access token pinned.
    #[error("token_endpoint_auth_method differs from the one the initial access token requires")]
    AuthMethodNotPermitted,
    /// Both `jwks` and `jwks_uri`.
    #[error("jwks and jwks_uri must not both be present")]
    JwksAndJwksUri,
    /// `jwks` is not a JWK Set, or holds private key members.
    #[error("jwks must be a JWK Set of public keys")]
    InvalidJwks,
    /// No supported grant type remains after filtering unknown ones
    /// (`client_credentials` alone counts only for a confidential
    /// registered client).
    #[error("grant_types must include authorization_code, or client_credentials for a confidential client")]
    NoUsableGrantType,
    /// No supported response type remains after filtering unknown ones.
    #[error("response_types must include code")]
    NoUsableResponseType,
    /// A URI-valued field is not an `https` URL.
    #[error("{field} must be an https URL")]
    InvalidUri {
        /// The field.
        field: &'static str,
    },
    /// `client_name` missing in a CIMD document.
    #[error("client_name is required")]
    MissingClientName,
    /// `scope` is malformed.
    #[error("scope is malformed")]
    InvalidScope,
    /// An unknown `application_type`.
    #[error("application_type must be web or native")]
    InvalidApplicationType,
    /// A string member is too long, or an array has too many members.
    #[error("{field} is too long")]
    TooLong {
        /// The field.
        field: &'static str,
    },
    /// A string shown to users (`client_name`, `software_id`, contacts, ...)
    /// holds control, bidirectional-override or invisible characters, so it
    /// could render as another app's name.
    #[error("{field} contains control, bidirectional or invisible characters")]
    HiddenCharacters {
        /// The field.
        field: &'static str,
    },
    /// `client_secret` or `client_secret_expires_at` in a CIMD document.
    #[error("{field} must not be present in a client metadata document")]
    ForbiddenField {
        /// The field.
        field: &'static str,
    },
    /// A `software_statement`, which this server does not accept.
    #[error("software statements are not supported")]
    SoftwareStatement,
}

impl ClientMetadataError {
    /// `invalid_redirect_uri` for redirect-URI problems,
    /// `invalid_software_statement` for statements, `invalid_client_metadata`
    /// for everything else ([RFC 7591 section 3.2.2]).
    ///
    /// [RFC 7591 section 3.2.2]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.2
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::MissingRedirectUris | Self::RedirectUri { .. } => ErrorCode::InvalidRedirectUri,
            Self::SoftwareStatement => ErrorCode::InvalidSoftwareStatement,
            _ => ErrorCode::InvalidClientMetadata,
        }
    }
}

/// Client metadata after validation: every value checked, defaults filled,
/// unknown grant and response types dropped. Serializes with the [RFC 7591]
/// member names.
///
/// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ValidatedMetadata {
    /// `redirect_uris`: non-empty, except for a machine-to-machine client
    /// (`grant_types` without `authorization_code`).
    pub redirect_uris: Vec<RedirectUri>,
    /// `token_endpoint_auth_method`.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// `grant_types`, always containing `authorization_code`.
    pub grant_types: Vec<GrantType>,
    /// `response_types`: `["code"]` (empty for a machine-to-machine client).
    pub response_types: Vec<String>,
    /// `client_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// `client_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// `logo_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// `scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSet>,
    /// `contacts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// `tos_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// `policy_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    /// `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `jwks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// `software_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// `software_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// `application_type`.
    pub application_type: ApplicationType,
}

impl ValidatedMetadata {
    /// Whether `grant_types` includes `refresh_token`.
    pub fn allows_refresh(&self) -> bool {
        self.grant_types.contains(&GrantType::RefreshToken)
    }

    /// The registered redirect URI a request's `redirect_uri` matches.
    /// Without one in the request, the single registered URI (OAuth 2.1
    /// section 4.1.1: required when more than one is registered).
    pub fn match_redirect_uri(&self, requested: Option<&str>) -> Option<&RedirectUri> {
        match requested {
            Some(r) => self.redirect_uris.iter().find(|u| u.matches(r)),
            None => match self.redirect_uris.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    /// Whether every redirect URI is a loopback one: anyone can publish or
    /// register such a client, so a consent screen should warn.
    pub fn all_redirects_loopback(&self) -> bool {
        self.redirect_uris.iter().all(RedirectUri::is_loopback)
    }
}
