//! Clients: identifiers, RFC 7591 metadata, and the validation shared by
//! Dynamic Client Registration and Client ID Metadata Documents.
//!
//! Every path that yields a client goes through [`ClientMetadata::validate`]
//! with a [`MetadataProfile`]; the profiles differ only where the
//! specifications do (defaults, secrets, required fields).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::client_id_url::{ClientIdUrl, ClientIdUrlError, ClientIdUrlPolicy};
use crate::display_text;
use crate::error::ErrorCode;
use crate::newtype::string_newtype;
use crate::redirect_uri::{RedirectUri, RedirectUriError, RedirectUriPolicy};
use crate::scope::ScopeSet;
use crate::secret::SecretHash;
use crate::weburl;

/// A client id issued by registration: `client_` and 24 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegisteredClientId(String);

impl RegisteredClientId {
    /// Validates the form.
    ///
    /// # Errors
    /// [`ClientIdError::Malformed`].
    pub fn new(id: impl Into<String>) -> Result<Self, ClientIdError> {
        let id = id.into();
        let ok = id
            .strip_prefix("client_")
            .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok {
            Ok(Self(id))
        } else {
            Err(ClientIdError::Malformed)
        }
    }

    /// A fresh id from 12 random bytes.
    pub fn from_random(random: &[u8; 12]) -> Self {
        use fmt::Write as _;
        let mut s = String::with_capacity(31);
        s.push_str("client_");
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

string_newtype!(RegisteredClientId, ClientIdError);

/// Why a `client_id` parameter was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIdError {
    /// Neither a registered id nor an `https://` URL.
    #[error("client_id is neither a registered client id nor an https URL")]
    Malformed,
    /// An `https://` id that is not an acceptable CIMD URL.
    #[error("client_id URL is not acceptable: {0}")]
    Url(#[from] ClientIdUrlError),
}

/// A client identifier as sent in requests.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClientId {
    /// Issued by this server's registration endpoint.
    Registered(RegisteredClientId),
    /// A Client ID Metadata Document URL.
    Metadata(ClientIdUrl),
}

impl ClientId {
    /// Parses a `client_id`, with a CIMD URL policy for the URL form.
    ///
    /// # Errors
    /// A [`ClientIdError`].
    pub fn parse_with(s: &str, policy: ClientIdUrlPolicy) -> Result<Self, ClientIdError> {
        if s.starts_with("client_") {
            return RegisteredClientId::new(s).map(Self::Registered);
        }
        if s.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://")) {
            return Ok(Self::Metadata(ClientIdUrl::parse_with(s, policy)?));
        }
        Err(ClientIdError::Malformed)
    }

    /// The id string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Registered(r) => r.as_str(),
            Self::Metadata(u) => u.as_str(),
        }
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for ClientId {
    type Error = ClientIdError;
    fn try_from(s: String) -> Result<Self, ClientIdError> {
        Self::parse_with(
            &s,
            ClientIdUrlPolicy {
                allow_root_path: true,
                allow_query: true,
            },
        )
    }
}

impl From<ClientId> for String {
    fn from(c: ClientId) -> Self {
        c.as_str().to_owned()
    }
}

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
    /// A signed JWT assertion (RFC 7523); CIMD confidential clients only.
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    /// The RFC 7591 string.
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

    fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }
}

/// Whether this server verifies `private_key_jwt` client assertions (RFC
/// 7523) at its token endpoint: it does (see [`crate::client_auth`]), so a
/// client that offers several methods (OpenID Connect RP Metadata Choices)
/// and publishes keys is given `private_key_jwt` by negotiation where the
/// profile allows it (CIMD: only when the project's CIMD policy allows
/// confidential clients).
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
    /// `client_credentials` (RFC 6749 section 4.4; the MCP extension
    /// `io.modelcontextprotocol/oauth-client-credentials`): confidential
    /// registered clients only.
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

    fn parse(s: &str) -> Option<Self> {
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

/// Client metadata as sent by a client (RFC 7591 section 2) or published in
/// a CIMD document: unvalidated. Unknown members are kept in `extra` and
/// otherwise ignored.
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
    /// RFC 7591 registration: the auth method defaults to
    /// `client_secret_basic`; `client_secret` members in the request are
    /// ignored (the server issues secrets).
    Dcr,
    /// A Client ID Metadata Document: `client_name` is required (MCP); the
    /// auth method defaults to `none` (RFC 7591's default
    /// `client_secret_basic` is forbidden for CIMD); shared-secret methods
    /// and `client_secret` members are refused; `private_key_jwt` only when
    /// allowed.
    Cimd {
        /// Accept `private_key_jwt` clients (with `jwks` or `jwks_uri`).
        allow_private_key_jwt: bool,
    },
}

/// Why client metadata was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientMetadataError {
    /// The body is not a JSON object of the RFC 7591 shape.
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
    /// for everything else (RFC 7591 section 3.2.2).
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::MissingRedirectUris | Self::RedirectUri { .. } => ErrorCode::InvalidRedirectUri,
            Self::SoftwareStatement => ErrorCode::InvalidSoftwareStatement,
            _ => ErrorCode::InvalidClientMetadata,
        }
    }
}

/// Client metadata after validation: every value checked, defaults filled,
/// unknown grant and response types dropped. Serializes with the RFC 7591
/// member names.
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

const MAX_REDIRECT_URIS: usize = 20;
const MAX_STRING: usize = 1024;
const MAX_CONTACTS: usize = 10;
/// Inline key sets beyond this size are refused (bounded storage for
/// self-asserted metadata).
const MAX_JWKS_BYTES: usize = 8 * 1024;
const JWK_PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

impl ClientMetadata {
    /// Parses a JSON object.
    ///
    /// # Errors
    /// [`ClientMetadataError::Json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ClientMetadataError> {
        serde_json::from_slice(bytes).map_err(|e| ClientMetadataError::Json(e.to_string()))
    }

    /// The known methods of `token_endpoint_auth_methods_supported`.
    pub fn offered_auth_methods(&self) -> Vec<TokenEndpointAuthMethod> {
        let mut out = Vec::new();
        if let Some(Value::Array(list)) = &self.token_endpoint_auth_methods_supported {
            for m in list
                .iter()
                .filter_map(Value::as_str)
                .filter_map(TokenEndpointAuthMethod::parse)
            {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Validates under a profile; see [`MetadataProfile`] for the differences.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(
        &self,
        profile: MetadataProfile,
        redirect_policy: RedirectUriPolicy,
    ) -> Result<ValidatedMetadata, ClientMetadataError> {
        let cimd = matches!(profile, MetadataProfile::Cimd { .. });
        if cimd {
            if self.client_secret.is_some() {
                return Err(ClientMetadataError::ForbiddenField { field: "client_secret" });
            }
            if self.client_secret_expires_at.is_some() {
                return Err(ClientMetadataError::ForbiddenField {
                    field: "client_secret_expires_at",
                });
            }
        }
        if self.software_statement.is_some() {
            return Err(ClientMetadataError::SoftwareStatement);
        }

        // Unknown grant and response types are filtered (real clients list
        // device_code, jwt-bearer, ...); refuse only when nothing usable is
        // left. A metadata document is a public client: client_credentials
        // is filtered out of it too.
        let grant_types: Vec<GrantType> = match &self.grant_types {
            None => vec![GrantType::AuthorizationCode],
            Some(list) => {
                let mut out = Vec::new();
                for g in list.iter().filter_map(|g| GrantType::parse(g)) {
                    let public_only = cimd && g == GrantType::ClientCredentials;
                    if !public_only && !out.contains(&g) {
                        out.push(g);
                    }
                }
                out
            }
        };
        // A machine-to-machine client (client_credentials only) needs no
        // redirect URI.
        let redirects_needed = grant_types.contains(&GrantType::AuthorizationCode);

        let raw_uris = self.redirect_uris.as_deref().unwrap_or_default();
        if raw_uris.is_empty() && redirects_needed {
            return Err(ClientMetadataError::MissingRedirectUris);
        }
        if raw_uris.len() > MAX_REDIRECT_URIS {
            return Err(ClientMetadataError::TooLong { field: "redirect_uris" });
        }
        let mut redirect_uris: Vec<RedirectUri> = Vec::with_capacity(raw_uris.len());
        for (index, raw) in raw_uris.iter().enumerate() {
            let uri = RedirectUri::parse_with(raw.as_str(), redirect_policy)
                .map_err(|error| ClientMetadataError::RedirectUri { index, error })?;
            if !redirect_uris.contains(&uri) {
                redirect_uris.push(uri);
            }
        }

        let has_keys = self.jwks.is_some() || self.jwks_uri.is_some();
        let negotiated = negotiate_auth_method(&self.offered_auth_methods(), profile, has_keys);
        let method = match (negotiated, self.token_endpoint_auth_method.as_deref()) {
            (Some(chosen), _) => chosen,
            (None, None) if cimd => TokenEndpointAuthMethod::None,
            (None, None) => TokenEndpointAuthMethod::ClientSecretBasic,
            (None, Some("client_secret_jwt" | "tls_client_auth" | "self_signed_tls_client_auth")) if cimd => {
                return Err(ClientMetadataError::SharedSecretAuthMethod);
            }
            (None, Some(declared)) => {
                TokenEndpointAuthMethod::parse(declared).ok_or(ClientMetadataError::UnsupportedAuthMethod)?
            }
        };
        if cimd && method.uses_shared_secret() {
            return Err(ClientMetadataError::SharedSecretAuthMethod);
        }
        if self.jwks.is_some() && self.jwks_uri.is_some() {
            return Err(ClientMetadataError::JwksAndJwksUri);
        }
        if let Some(jwks) = &self.jwks {
            check_public_jwks(jwks)?;
            if serde_json::to_vec(jwks).map_or(true, |b| b.len() > MAX_JWKS_BYTES) {
                return Err(ClientMetadataError::TooLong { field: "jwks" });
            }
        }
        if method == TokenEndpointAuthMethod::PrivateKeyJwt {
            // RFC 7523 client authentication: registered clients may use
            // it; metadata documents when the project's policy allows.
            let allowed = match profile {
                MetadataProfile::Dcr => true,
                MetadataProfile::Cimd { allow_private_key_jwt } => allow_private_key_jwt,
            };
            if !allowed || (self.jwks.is_none() && self.jwks_uri.is_none()) {
                return Err(ClientMetadataError::PrivateKeyJwt);
            }
        }

        let machine_client = grant_types.contains(&GrantType::ClientCredentials) && method.uses_shared_secret();
        if !redirects_needed && !machine_client {
            return Err(ClientMetadataError::NoUsableGrantType);
        }
        if let Some(list) = &self.response_types
            && redirects_needed
            && !list.iter().any(|r| r == "code")
        {
            return Err(ClientMetadataError::NoUsableResponseType);
        }

        let application_type = match self.application_type.as_deref() {
            None | Some("web") => ApplicationType::Web,
            Some("native") => ApplicationType::Native,
            Some(_) => return Err(ClientMetadataError::InvalidApplicationType),
        };

        let client_name = bounded(self.client_name.as_deref(), "client_name")?;
        if cimd && client_name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(ClientMetadataError::MissingClientName);
        }
        let scope = match self.scope.as_deref() {
            None => None,
            Some(s) => Some(ScopeSet::parse(s).map_err(|_| ClientMetadataError::InvalidScope)?),
        };
        let contacts = match &self.contacts {
            None => Vec::new(),
            Some(c) if c.len() > MAX_CONTACTS => return Err(ClientMetadataError::TooLong { field: "contacts" }),
            Some(c) => {
                for one in c {
                    bounded(Some(one), "contacts")?;
                }
                c.clone()
            }
        };

        let validated = ValidatedMetadata {
            redirect_uris,
            token_endpoint_auth_method: method,
            grant_types,
            response_types: if redirects_needed {
                vec!["code".to_owned()]
            } else {
                Vec::new()
            },
            client_name,
            client_uri: https_uri(self.client_uri.as_deref(), "client_uri")?,
            logo_uri: https_uri(self.logo_uri.as_deref(), "logo_uri")?,
            scope,
            contacts,
            tos_uri: https_uri(self.tos_uri.as_deref(), "tos_uri")?,
            policy_uri: https_uri(self.policy_uri.as_deref(), "policy_uri")?,
            jwks_uri: https_uri(self.jwks_uri.as_deref(), "jwks_uri")?,
            jwks: self.jwks.clone(),
            software_id: bounded(self.software_id.as_deref(), "software_id")?,
            software_version: bounded(self.software_version.as_deref(), "software_version")?,
            application_type,
        };
        if cimd {
            // The client_id host is a reference too: applied by
            // `cimd::validate_document`, which knows it.
            Ok(validated)
        } else {
            Ok(validated.with_related_informational_uris(None))
        }
    }
}

impl ValidatedMetadata {
    /// Applies the related-host rule to `client_uri`, `logo_uri`, `tos_uri`
    /// and `policy_uri` (SPEC-CHECKLIST section 3: self-asserted metadata).
    ///
    /// The reference hosts are the hosts of the redirect URIs that are not
    /// loopback, plus `client_id_host` (a CIMD document's URL host). A URI
    /// whose host is not [`related_host`] to one of them is dropped: never
    /// stored, echoed in a registration response, or shown on a consent
    /// screen. Dropped rather than refused, because real documents put
    /// these links on sibling domains (ChatGPT's `tos_uri` is on
    /// openai.com, VS Code's `client_uri` on code.visualstudio.com for a
    /// vscode.dev `client_id`) and refusing them would lock those clients
    /// out (SPEC-CHECKLIST section 8, lesson 2). A native client with
    /// loopback redirect URIs only and no `client_id` host (DCR) keeps none.
    #[must_use]
    pub fn with_related_informational_uris(mut self, client_id_host: Option<&str>) -> Self {
        let mut references: Vec<String> = self
            .redirect_uris
            .iter()
            .filter(|r| !r.is_loopback())
            .filter_map(|r| url_host(r.as_str()))
            .collect();
        references.extend(client_id_host.map(|h| h.to_ascii_lowercase()));
        let fields = [
            &mut self.client_uri,
            &mut self.logo_uri,
            &mut self.tos_uri,
            &mut self.policy_uri,
        ];
        for value in fields {
            let related = value
                .as_deref()
                .and_then(url_host)
                .is_some_and(|h| references.iter().any(|r| related_host(&h, r)));
            if !related {
                *value = None;
            }
        }
        self
    }
}

/// The parsed (WHATWG) host of a URL, lowercased.
fn url_host(raw: &str) -> Option<String> {
    url::Url::parse(raw)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}

/// Whether `host` is related to `reference`: the same host, a subdomain of
/// it (`docs.app.example` for `app.example`), or a parent of it with at
/// least two labels (`example.com` for `app.example.com`, never `com`).
/// IP literals are related only to themselves.
///
/// Without a public-suffix list this cannot tell registrable domains:
/// a parent such as `co.uk` of `app.example.co.uk` is accepted. The URIs
/// this rule applies to are only displayed as links, and the consent
/// screen shows the `client_id` and redirect hosts, which are exact.
pub fn related_host(host: &str, reference: &str) -> bool {
    let host = host.trim_end_matches('.');
    let reference = reference.trim_end_matches('.');
    if host.eq_ignore_ascii_case(reference) {
        return true;
    }
    let is_ip = |h: &str| h.starts_with('[') || h.parse::<std::net::Ipv4Addr>().is_ok();
    if host.is_empty() || reference.is_empty() || is_ip(host) || is_ip(reference) {
        return false;
    }
    let sub_of = |child: &str, parent: &str| {
        child.len() > parent.len() + 1
            && child.get(child.len() - parent.len() - 1..).is_some_and(|tail| {
                tail.starts_with('.') && tail.get(1..).is_some_and(|t| t.eq_ignore_ascii_case(parent))
            })
    };
    sub_of(host, reference) || (host.contains('.') && sub_of(reference, host))
}

/// A string a user may read: bounded, and free of characters that would
/// make it render as something else ([`crate::display_text`]).
fn bounded(value: Option<&str>, field: &'static str) -> Result<Option<String>, ClientMetadataError> {
    match value {
        Some(v) if v.len() > MAX_STRING => Err(ClientMetadataError::TooLong { field }),
        Some(v) if display_text::has_hidden_characters(v) => Err(ClientMetadataError::HiddenCharacters { field }),
        other => Ok(other.map(str::to_owned)),
    }
}

/// An `https` URL, written as a browser reads it (no userinfo, quotes,
/// angle brackets, whitespace or anything else the WHATWG parser would
/// rewrite), with a host.
fn https_uri(value: Option<&str>, field: &'static str) -> Result<Option<String>, ClientMetadataError> {
    let Some(v) = value else { return Ok(None) };
    if v.len() > 2048 || !v.starts_with("https://") || weburl::check(v, true).is_err() {
        return Err(ClientMetadataError::InvalidUri { field });
    }
    Ok(Some(v.to_owned()))
}

/// A JWK Set (`{"keys": [...]}`) whose keys carry no private members.
fn check_public_jwks(jwks: &Value) -> Result<(), ClientMetadataError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(ClientMetadataError::InvalidJwks)?;
    for key in keys {
        let obj = key.as_object().ok_or(ClientMetadataError::InvalidJwks)?;
        if JWK_PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err(ClientMetadataError::InvalidJwks);
        }
    }
    Ok(())
}

/// A client the server can act for: registered through DCR, or resolved
/// from a metadata document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Client {
    /// The id.
    pub client_id: ClientId,
    /// The validated metadata.
    pub metadata: ValidatedMetadata,
    /// The hash of the client secret, for confidential registered clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<SecretHash>,
    /// When the secret expires (`None`: never).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub secret_expires_at: Option<OffsetDateTime>,
    /// When the client was registered or resolved.
    #[serde(with = "time::serde::timestamp")]
    pub issued_at: OffsetDateTime,
    /// When an administrator disabled this registered client
    /// ([`crate::store::ClientStore::set_disabled`]); `None`: enabled. A
    /// disabled client cannot authorize, exchange codes, refresh or revoke,
    /// and its tokens introspect as inactive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub disabled_at: Option<OffsetDateTime>,
}

impl Client {
    /// A client from its parts.
    pub const fn new(client_id: ClientId, metadata: ValidatedMetadata, issued_at: OffsetDateTime) -> Self {
        Self {
            client_id,
            metadata,
            secret_hash: None,
            secret_expires_at: None,
            issued_at,
            disabled_at: None,
        }
    }

    /// Whether an administrator disabled the client.
    pub const fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }

    /// Whether the client authenticates at the token endpoint (has a secret
    /// or keys).
    pub fn is_confidential(&self) -> bool {
        self.metadata.token_endpoint_auth_method != TokenEndpointAuthMethod::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn related_hosts() {
        for (host, reference, related) in [
            ("app.example.com", "app.example.com", true),
            ("APP.example.com", "app.example.com", true),
            ("docs.app.example.com", "app.example.com", true),
            ("example.com", "app.example.com", true),
            ("com", "app.example.com", false),
            ("evil.example", "app.example.com", false),
            ("xapp.example.com", "app.example.com", false),
            ("app.example.com.evil.example", "app.example.com", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("0.0.1", "127.0.0.1", false),
            ("1.127.0.0.1", "127.0.0.1", false),
        ] {
            assert_eq!(related_host(host, reference), related, "{host} vs {reference}");
        }
    }

    #[test]
    fn informational_uris_on_unrelated_hosts_are_dropped() {
        let m: ClientMetadata = serde_json::from_value(json!({
            "redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:9/cb"],
            "client_name": "App",
            "client_uri": "https://app.example.com",
            "logo_uri": "https://cdn.app.example.com/l.png",
            "tos_uri": "https://evil.example/tos",
            "policy_uri": "https://127.0.0.1/p"
        }))
        .unwrap();
        let v = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
        assert_eq!(v.client_uri.as_deref(), Some("https://app.example.com"));
        assert_eq!(v.logo_uri.as_deref(), Some("https://cdn.app.example.com/l.png"));
        assert_eq!(v.tos_uri, None, "unrelated host");
        assert_eq!(v.policy_uri, None, "loopback redirect hosts are no reference");
        // CIMD: the client_id host is a reference too (applied by the
        // document check); the profile's validate leaves them alone
        let v = m.validate(CIMD_PROFILE, RedirectUriPolicy::strict()).unwrap();
        let v = v.with_related_informational_uris(Some("evil.example"));
        assert_eq!(v.tos_uri.as_deref(), Some("https://evil.example/tos"));
        // loopback-only native client: nothing to relate to
        let native: ClientMetadata = serde_json::from_value(json!({
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "client_uri": "https://anything.example"
        }))
        .unwrap();
        let v = native
            .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
            .unwrap();
        assert_eq!(v.client_uri, None);
        // out-of-range ports never pass the WHATWG check
        for bad in ["https://app.example.com:99999/", "https://app.example.com:0/"] {
            let m: ClientMetadata =
                serde_json::from_value(json!({"redirect_uris": ["https://app.example.com/cb"], "client_uri": bad}))
                    .unwrap();
            assert_eq!(
                m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
                    .unwrap_err(),
                ClientMetadataError::InvalidUri { field: "client_uri" },
                "{bad}"
            );
        }
    }

    const CIMD_PROFILE: MetadataProfile = MetadataProfile::Cimd {
        allow_private_key_jwt: false,
    };

    fn meta(v: Value) -> ClientMetadata {
        serde_json::from_value(v).unwrap()
    }

    const CIMD: MetadataProfile = MetadataProfile::Cimd {
        allow_private_key_jwt: false,
    };

    #[test]
    fn registered_ids() {
        let id = RegisteredClientId::from_random(&[0xab; 12]);
        assert_eq!(id.as_str(), "client_abababababababababababab");
        assert!(RegisteredClientId::new(id.as_str()).is_ok());
        for bad in [
            "client_",
            "client_ABABABABABABABABABABABAB",
            "client_abababababababababababa",
            "client_ababababababababababababab",
            "https://x",
        ] {
            assert!(RegisteredClientId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_id_forms() {
        let p = ClientIdUrlPolicy::default();
        assert!(matches!(
            ClientId::parse_with("client_0123456789abcdef01234567", p),
            Ok(ClientId::Registered(_))
        ));
        assert!(matches!(
            ClientId::parse_with("https://claude.ai/oauth/mcp-oauth-client-metadata", p),
            Ok(ClientId::Metadata(_))
        ));
        assert_eq!(ClientId::parse_with("client_xyz", p), Err(ClientIdError::Malformed));
        assert_eq!(ClientId::parse_with("my-app", p), Err(ClientIdError::Malformed));
        assert_eq!(ClientId::parse_with("", p), Err(ClientIdError::Malformed));
        assert_eq!(
            ClientId::parse_with("HTTPS://example.com/c", p),
            Err(ClientIdError::Url(ClientIdUrlError::NotHttps))
        );
        assert_eq!(
            ClientId::parse_with("http://example.com/c", p),
            Err(ClientIdError::Malformed)
        );
        // AS-generated ids can never collide with CIMD URLs.
        assert!(
            !RegisteredClientId::from_random(&[0; 12])
                .as_str()
                .starts_with("https://")
        );
    }

    #[test]
    fn seed_dcr_request_is_a_public_web_client() {
        let m = meta(json!({
            "redirect_uris": ["https://my-mcp-server.example.com/oauth/callback"],
            "client_name": "My MCP Server",
            "token_endpoint_auth_method": "none",
            "application_type": "web"
        }));
        let v = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
        assert_eq!(v.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
        assert_eq!(v.grant_types, vec![GrantType::AuthorizationCode]);
        assert_eq!(v.application_type, ApplicationType::Web);
    }

    #[test]
    fn defaults_differ_by_profile() {
        let m = meta(json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A"}));
        assert_eq!(
            m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
                .unwrap()
                .token_endpoint_auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        assert_eq!(
            m.validate(CIMD, RedirectUriPolicy::strict())
                .unwrap()
                .token_endpoint_auth_method,
            TokenEndpointAuthMethod::None
        );
    }

    #[test]
    fn unknown_members_are_filtered_not_fatal() {
        let m = meta(json!({
            "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
            "client_name": "Visual Studio Code",
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "response_types": ["code", "id_token"],
            "application_type": "native",
            "token_endpoint_auth_methods_supported": ["none"],
            "something_new": {"x": 1}
        }));
        let v = m.validate(CIMD, RedirectUriPolicy::strict()).unwrap();
        assert_eq!(
            v.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(v.response_types, vec!["code"]);
        assert_eq!(v.application_type, ApplicationType::Native);
        assert!(m.extra.contains_key("something_new"));
    }

    #[test]
    fn refusals() {
        use ClientMetadataError as E;
        let base = json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A", "token_endpoint_auth_method": "none"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            meta(b)
        };
        let dcr = MetadataProfile::Dcr;
        let table: Vec<(ClientMetadata, MetadataProfile, E)> = vec![
            (with("redirect_uris", json!([])), dcr, E::MissingRedirectUris),
            (meta(json!({"client_name": "A"})), dcr, E::MissingRedirectUris),
            (
                with("redirect_uris", json!(["http://evil.example.com/cb"])),
                dcr,
                E::RedirectUri {
                    index: 0,
                    error: RedirectUriError::InsecureHttp,
                },
            ),
            (
                with(
                    "redirect_uris",
                    json!(["https://a.example.com/cb", "javascript:alert(1)"]),
                ),
                dcr,
                E::RedirectUri {
                    index: 1,
                    error: RedirectUriError::DangerousScheme,
                },
            ),
            (
                with("token_endpoint_auth_method", json!("client_secret_basic")),
                CIMD,
                E::SharedSecretAuthMethod,
            ),
            (
                with("token_endpoint_auth_method", json!("client_secret_post")),
                CIMD,
                E::SharedSecretAuthMethod,
            ),
            (
                with("token_endpoint_auth_method", json!("client_secret_jwt")),
                CIMD,
                E::SharedSecretAuthMethod,
            ),
            (
                with("token_endpoint_auth_method", json!("magic")),
                dcr,
                E::UnsupportedAuthMethod,
            ),
            (
                with("token_endpoint_auth_method", json!("private_key_jwt")),
                dcr,
                E::PrivateKeyJwt,
            ),
            (
                with("token_endpoint_auth_method", json!("private_key_jwt")),
                CIMD,
                E::PrivateKeyJwt,
            ),
            (
                with("token_endpoint_auth_method", json!("private_key_jwt")),
                MetadataProfile::Cimd {
                    allow_private_key_jwt: true,
                },
                E::PrivateKeyJwt,
            ),
            (
                with("client_secret", json!("s3cret")),
                CIMD,
                E::ForbiddenField { field: "client_secret" },
            ),
            (
                with("client_secret_expires_at", json!(0)),
                CIMD,
                E::ForbiddenField {
                    field: "client_secret_expires_at",
                },
            ),
            (
                with("jwks", json!({"keys": [{"kty": "EC", "d": "private"}]})),
                dcr,
                E::InvalidJwks,
            ),
            (
                with("jwks", json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
                CIMD,
                E::InvalidJwks,
            ),
            (with("jwks", json!([1])), CIMD, E::InvalidJwks),
            (
                {
                    let mut b = base.clone();
                    b["jwks"] = json!({"keys": []});
                    b["jwks_uri"] = json!("https://a.example.com/jwks");
                    meta(b)
                },
                dcr,
                E::JwksAndJwksUri,
            ),
            (
                with("grant_types", json!(["client_credentials"])),
                dcr,
                E::NoUsableGrantType,
            ),
            (with("grant_types", json!(["refresh_token"])), dcr, E::NoUsableGrantType),
            (with("response_types", json!(["token"])), dcr, E::NoUsableResponseType),
            (
                with("client_uri", json!("javascript:alert(1)")),
                dcr,
                E::InvalidUri { field: "client_uri" },
            ),
            (
                with("logo_uri", json!("data:image/png;base64,AAAA")),
                CIMD,
                E::InvalidUri { field: "logo_uri" },
            ),
            (
                with("tos_uri", json!("http://a.example.com/tos")),
                dcr,
                E::InvalidUri { field: "tos_uri" },
            ),
            (
                with("policy_uri", json!("file:///etc/passwd")),
                dcr,
                E::InvalidUri { field: "policy_uri" },
            ),
            (
                with("jwks_uri", json!("https://u:p@a.example.com/jwks")),
                dcr,
                E::InvalidUri { field: "jwks_uri" },
            ),
            (
                with(
                    "client_uri",
                    json!("https://a.example.com/\"><script>alert(1)</script>"),
                ),
                dcr,
                E::InvalidUri { field: "client_uri" },
            ),
            (
                with("logo_uri", json!("https://a.example.com/logo.png?x=<b>")),
                CIMD,
                E::InvalidUri { field: "logo_uri" },
            ),
            (
                with("tos_uri", json!("https://a.example.com@evil.example/tos")),
                dcr,
                E::InvalidUri { field: "tos_uri" },
            ),
            (
                with("policy_uri", json!("https://a%2eexample.com/p")),
                dcr,
                E::InvalidUri { field: "policy_uri" },
            ),
            (
                with("client_name", json!("Claude\u{202e}lacigol")),
                CIMD,
                E::HiddenCharacters { field: "client_name" },
            ),
            (
                with("client_name", json!("Cla\u{200b}ude")),
                dcr,
                E::HiddenCharacters { field: "client_name" },
            ),
            (
                with("client_name", json!("Claude\nOfficial")),
                dcr,
                E::HiddenCharacters { field: "client_name" },
            ),
            (
                with("software_id", json!("\u{2066}x\u{2069}")),
                dcr,
                E::HiddenCharacters { field: "software_id" },
            ),
            (
                with("contacts", json!(["ops@example.com\u{feff}"])),
                dcr,
                E::HiddenCharacters { field: "contacts" },
            ),
            (with("client_name", json!(null)), CIMD, E::MissingClientName),
            (with("client_name", json!("  ")), CIMD, E::MissingClientName),
            (
                with("client_name", json!("x".repeat(2000))),
                dcr,
                E::TooLong { field: "client_name" },
            ),
            (with("scope", json!("a  b")), dcr, E::InvalidScope),
            (
                with("application_type", json!("desktop")),
                dcr,
                E::InvalidApplicationType,
            ),
            (with("software_statement", json!("eyJ...")), dcr, E::SoftwareStatement),
            (
                with("contacts", json!(vec!["a@b"; 11])),
                dcr,
                E::TooLong { field: "contacts" },
            ),
            (
                with(
                    "jwks",
                    json!({"keys": vec![json!({"kty": "RSA", "n": "x".repeat(600), "e": "AQAB"}); 20]}),
                ),
                dcr,
                E::TooLong { field: "jwks" },
            ),
        ];
        for (m, profile, err) in table {
            assert_eq!(m.validate(profile, RedirectUriPolicy::strict()).unwrap_err(), err);
        }
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            ClientMetadataError::MissingRedirectUris.code(),
            ErrorCode::InvalidRedirectUri
        );
        assert_eq!(
            ClientMetadataError::RedirectUri {
                index: 0,
                error: RedirectUriError::Fragment
            }
            .code(),
            ErrorCode::InvalidRedirectUri
        );
        assert_eq!(
            ClientMetadataError::SoftwareStatement.code(),
            ErrorCode::InvalidSoftwareStatement
        );
        assert_eq!(
            ClientMetadataError::InvalidJwks.code(),
            ErrorCode::InvalidClientMetadata
        );
    }

    #[test]
    fn private_key_jwt_with_keys_when_allowed() {
        let m = meta(json!({
            "redirect_uris": ["https://a.example.com/cb"], "client_name": "A",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}
        }));
        let v = m
            .validate(
                MetadataProfile::Cimd {
                    allow_private_key_jwt: true,
                },
                RedirectUriPolicy::strict(),
            )
            .unwrap();
        assert_eq!(v.token_endpoint_auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
    }

    /// ChatGPT's documents declare `private_key_jwt` with a `jwks_uri` and
    /// offer `["none", "private_key_jwt"]`: until assertions are verified,
    /// negotiation makes it a public client.
    #[test]
    fn auth_method_negotiation() {
        let chatgpt = meta(json!({
            "client_id": "https://chatgpt.com/oauth/mcp-client.json",
            "client_name": "ChatGPT",
            "redirect_uris": ["https://chatgpt.com/connector_platform_oauth_redirect"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "jwks_uri": "https://chatgpt.com/oauth/jwks.json"
        }));
        for allow in [false, true] {
            let v = chatgpt
                .validate(
                    MetadataProfile::Cimd {
                        allow_private_key_jwt: allow,
                    },
                    RedirectUriPolicy::strict(),
                )
                .unwrap();
            // Keys are preferred where the project allows confidential
            // CIMD clients; otherwise ChatGPT signs in as a public client.
            let expected = if allow {
                TokenEndpointAuthMethod::PrivateKeyJwt
            } else {
                TokenEndpointAuthMethod::None
            };
            assert_eq!(v.token_endpoint_auth_method, expected, "{allow}");
            assert_eq!(v.jwks_uri.as_deref(), Some("https://chatgpt.com/oauth/jwks.json"));
        }
        // The choice itself: keys first only when verified and allowed.
        use TokenEndpointAuthMethod as M;
        let cimd = MetadataProfile::Cimd {
            allow_private_key_jwt: true,
        };
        let both = [M::None, M::PrivateKeyJwt];
        assert_eq!(
            negotiate_auth_method(&both, cimd, true),
            Some(if VERIFIES_PRIVATE_KEY_JWT {
                M::PrivateKeyJwt
            } else {
                M::None
            })
        );
        assert_eq!(negotiate_auth_method(&both, cimd, false), Some(M::None));
        assert_eq!(negotiate_auth_method(&[M::ClientSecretBasic], cimd, false), None);
        assert_eq!(
            negotiate_auth_method(&[M::ClientSecretPost, M::None], MetadataProfile::Dcr, false),
            Some(M::None)
        );
        assert_eq!(
            negotiate_auth_method(
                &[M::ClientSecretPost, M::ClientSecretBasic],
                MetadataProfile::Dcr,
                false
            ),
            Some(M::ClientSecretBasic)
        );
        assert_eq!(
            negotiate_auth_method(&[M::PrivateKeyJwt], MetadataProfile::Dcr, true),
            None
        );
        // DCR: an offer decides over the declared method; unknown and
        // non-string members are ignored; nothing usable falls back to the
        // declared method's rules.
        let dcr = |v: Value| meta(v).validate(MetadataProfile::Dcr, RedirectUriPolicy::strict());
        let base = |extra: Value| {
            let mut v = json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A"});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let v = dcr(base(json!({
            "token_endpoint_auth_method": "client_secret_basic",
            "token_endpoint_auth_methods_supported": [7, "tls_client_auth", "none", "client_secret_basic"]
        })))
        .unwrap();
        assert_eq!(v.token_endpoint_auth_method, M::None);
        let v = dcr(base(json!({
            "token_endpoint_auth_method": "client_secret_post",
            "token_endpoint_auth_methods_supported": ["tls_client_auth"]
        })))
        .unwrap();
        assert_eq!(v.token_endpoint_auth_method, M::ClientSecretPost);
        let v = dcr(base(json!({"token_endpoint_auth_methods_supported": "none"}))).unwrap();
        assert_eq!(
            v.token_endpoint_auth_method,
            M::ClientSecretBasic,
            "not an array: ignored"
        );
        // CIMD: a document offering only shared secrets is still refused.
        let err = meta(json!({
            "client_name": "X",
            "redirect_uris": ["https://a.example.com/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]
        }))
        .validate(CIMD, RedirectUriPolicy::strict())
        .unwrap_err();
        assert_eq!(err, ClientMetadataError::SharedSecretAuthMethod);
    }

    #[test]
    fn wrong_json_types_are_errors_not_panics() {
        assert!(matches!(
            ClientMetadata::from_json(br#"{"redirect_uris": "https://a/cb"}"#),
            Err(ClientMetadataError::Json(_))
        ));
        assert!(matches!(
            ClientMetadata::from_json(b"[]"),
            Err(ClientMetadataError::Json(_))
        ));
        assert!(matches!(
            ClientMetadata::from_json(b"\xff"),
            Err(ClientMetadataError::Json(_))
        ));
    }

    #[test]
    fn redirect_matching_and_loopback_flag() {
        let m = meta(json!({"redirect_uris": ["http://127.0.0.1:33418/", "http://localhost/cb"], "client_name": "A"}));
        let v = m.validate(CIMD, RedirectUriPolicy::strict()).unwrap();
        assert!(v.all_redirects_loopback());
        assert_eq!(
            v.match_redirect_uri(Some("http://127.0.0.1:5555/")).unwrap().as_str(),
            "http://127.0.0.1:33418/"
        );
        assert!(
            v.match_redirect_uri(None).is_none(),
            "two registered: redirect_uri required"
        );
        let one = meta(json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A"}))
            .validate(CIMD, RedirectUriPolicy::strict())
            .unwrap();
        assert_eq!(
            one.match_redirect_uri(None).unwrap().as_str(),
            "https://a.example.com/cb"
        );
        assert!(one.match_redirect_uri(Some("https://a.example.com/cb/")).is_none());
        assert!(!one.all_redirects_loopback());
    }

    proptest! {
        #[test]
        fn client_id_parser_never_panics(s in ".{0,200}") {
            if let Ok(id) = ClientId::parse_with(&s, ClientIdUrlPolicy::default()) {
                prop_assert_eq!(id.as_str(), s.as_str());
            }
        }

        #[test]
        fn metadata_validation_never_panics(uris in proptest::collection::vec(".{0,60}", 0..4), method in proptest::option::of(".{0,20}"), name in proptest::option::of(".{0,20}")) {
            let m = ClientMetadata { redirect_uris: Some(uris), token_endpoint_auth_method: method, client_name: name, ..Default::default() };
            let _ = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict());
            let _ = m.validate(CIMD, RedirectUriPolicy::with_private_use_schemes());
        }
    }
}
