//! OAuth error codes and the one place protocol errors are rendered.
//!
//! Every module has its own error type that knows its [`ErrorCode`]; the
//! driver turns it into an [`OAuthError`], and [`OAuthError::to_response`]
//! renders the JSON body, the status and, where the RFCs require it, the
//! `WWW-Authenticate` header. Failures of the host (storage, fetcher
//! plumbing) are [`OAuthError::server_error`]: the client learns nothing
//! about their cause.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The description of [`OAuthError::server_error`].
pub(crate) const SERVER_ERROR_DESCRIPTION: &str = "the authorization server could not complete the request";

/// A protocol error code, serialized as its RFC string.
///
/// Variants are grouped by the RFC that defines them, in RFC order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request` ([RFC 6749 section 4.1.2.1] and [section 5.2]).
    ///
    /// [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    /// [section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    InvalidRequest,
    /// `unauthorized_client` ([RFC 6749 section 4.1.2.1] and [section 5.2]).
    ///
    /// [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    /// [section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    UnauthorizedClient,
    /// `access_denied` ([RFC 6749 section 4.1.2.1]).
    ///
    /// [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    AccessDenied,
    /// `unsupported_response_type` ([RFC 6749 section 4.1.2.1]).
    ///
    /// [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    UnsupportedResponseType,
    /// `invalid_scope` ([RFC 6749 section 4.1.2.1] and [section 5.2]).
    ///
    /// [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    /// [section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    InvalidScope,
    /// `server_error` ([RFC 6749 section 4.1.2.1]).
    ///
    /// [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    ServerError,
    /// `temporarily_unavailable` ([RFC 6749 section 4.1.2.1]).
    ///
    /// [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    TemporarilyUnavailable,
    /// `invalid_client` ([RFC 6749 section 5.2]).
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    InvalidClient,
    /// `invalid_grant` ([RFC 6749 section 5.2]).
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    InvalidGrant,
    /// `unsupported_grant_type` ([RFC 6749 section 5.2]).
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    UnsupportedGrantType,
    /// `invalid_token` ([RFC 6750 section 3.1]).
    ///
    /// [RFC 6750 section 3.1]: https://www.rfc-editor.org/rfc/rfc6750#section-3.1
    InvalidToken,
    /// `insufficient_scope` ([RFC 6750 section 3.1]).
    ///
    /// [RFC 6750 section 3.1]: https://www.rfc-editor.org/rfc/rfc6750#section-3.1
    InsufficientScope,
    /// `unsupported_token_type` ([RFC 7009 section 2.2.1]).
    ///
    /// [RFC 7009 section 2.2.1]: https://www.rfc-editor.org/rfc/rfc7009#section-2.2.1
    UnsupportedTokenType,
    /// `invalid_redirect_uri` ([RFC 7591 section 3.2.2]).
    ///
    /// [RFC 7591 section 3.2.2]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.2
    InvalidRedirectUri,
    /// `invalid_client_metadata` ([RFC 7591 section 3.2.2]).
    ///
    /// [RFC 7591 section 3.2.2]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.2
    InvalidClientMetadata,
    /// `invalid_software_statement` ([RFC 7591 section 3.2.2]).
    ///
    /// [RFC 7591 section 3.2.2]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.2
    InvalidSoftwareStatement,
    /// `unapproved_software_statement` ([RFC 7591 section 3.2.2]).
    ///
    /// [RFC 7591 section 3.2.2]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.2
    UnapprovedSoftwareStatement,
    /// `invalid_target` ([RFC 8707 section 2]).
    ///
    /// [RFC 8707 section 2]: https://www.rfc-editor.org/rfc/rfc8707#section-2
    InvalidTarget,
    /// `login_required` (OpenID Connect Core 1.0 section 3.1.2.6): `prompt=none`
    /// but the user must log in.
    LoginRequired,
    /// `consent_required` (OpenID Connect Core 1.0 section 3.1.2.6):
    /// `prompt=none` but the user must consent.
    ConsentRequired,
    /// `interaction_required` (OpenID Connect Core 1.0 section 3.1.2.6):
    /// `prompt=none` but a page would have to be shown (e.g. the upstream
    /// provider said so).
    InteractionRequired,
    /// `account_selection_required` (OpenID Connect Core 1.0 section
    /// 3.1.2.6): `prompt=none` but the user must choose an account.
    AccountSelectionRequired,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 22] = [
        Self::InvalidRequest,
        Self::UnauthorizedClient,
        Self::AccessDenied,
        Self::UnsupportedResponseType,
        Self::InvalidScope,
        Self::ServerError,
        Self::TemporarilyUnavailable,
        Self::InvalidClient,
        Self::InvalidGrant,
        Self::UnsupportedGrantType,
        Self::InvalidToken,
        Self::InsufficientScope,
        Self::UnsupportedTokenType,
        Self::InvalidRedirectUri,
        Self::InvalidClientMetadata,
        Self::InvalidSoftwareStatement,
        Self::UnapprovedSoftwareStatement,
        Self::InvalidTarget,
        Self::LoginRequired,
        Self::ConsentRequired,
        Self::InteractionRequired,
        Self::AccountSelectionRequired,
    ];

    /// The RFC string, e.g. `"invalid_grant"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidSoftwareStatement => "invalid_software_statement",
            Self::UnapprovedSoftwareStatement => "unapproved_software_statement",
            Self::InvalidTarget => "invalid_target",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::AccountSelectionRequired => "account_selection_required",
        }
    }

    /// The HTTP status a direct (non-redirect) response with this code uses.
    ///
    /// 401 for client and token authentication failures ([RFC 6749 section
    /// 5.2], [RFC 6750 section 3.1]), 403 for `insufficient_scope`, 500 and 503
    /// for server conditions, 400 for everything else.
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    /// [RFC 6750 section 3.1]: https://www.rfc-editor.org/rfc/rfc6750#section-3.1
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not a known error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown OAuth error code")]
pub struct UnknownErrorCode;

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or(UnknownErrorCode)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a 401 response names the authentication scheme it wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// `WWW-Authenticate: Basic` ([RFC 6749 section 5.2], failed client auth
    /// through the `Authorization` header).
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    Basic,
    /// `WWW-Authenticate: Bearer error="..."` ([RFC 6750 section 3]).
    ///
    /// [RFC 6750 section 3]: https://www.rfc-editor.org/rfc/rfc6750#section-3
    Bearer,
}

/// An OAuth error as sent to a client: a code, an optional human-readable
/// description and an optional URI.
///
/// The description is restricted to the characters [RFC 6749 section 5.2]
/// allows (`%x20-21 / %x23-5B / %x5D-7E`); anything else is replaced, so a
/// description can never break the JSON or the `WWW-Authenticate` header.
///
/// Besides what is sent, an error may carry a machine-readable
/// [`OAuthError::reason`] for logs and audit events; it is never rendered
/// and does not take part in equality.
///
/// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
#[derive(Clone, Debug)]
pub struct OAuthError {
    code: ErrorCode,
    description: Option<Cow<'static, str>>,
    /// `error_uri` and `Allow`, rarely set: boxed, so the error (carried
    /// in many `Result`s) stays small.
    rare: Option<Box<Rare>>,
    challenge: Option<Challenge>,
    status: Option<StatusCode>,
    reason: Option<&'static str>,
    /// Already recorded as a specific audit event: the endpoint records no
    /// generic rejection for it.
    audited: bool,
}

#[derive(Clone, Debug, Default)]
struct Rare {
    uri: Option<Box<str>>,
    allow: Option<Box<str>>,
}

impl PartialEq for OAuthError {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
            && self.description == other.description
            && self.uri() == other.uri()
            && self.challenge == other.challenge
            && self.status == other.status
            && self.allow() == other.allow()
    }
}

impl Eq for OAuthError {}

impl OAuthError {
    /// An error with a code and no description.
    pub const fn new(code: ErrorCode) -> Self {
        Self {
            code,
            description: None,
            rare: None,
            challenge: None,
            status: None,
            reason: None,
            audited: false,
        }
    }

    /// The error for a request naming a project that does not exist:
    /// `invalid_request`, rendered with status 404.
    pub fn unknown_project() -> Self {
        Self::with_description(ErrorCode::InvalidRequest, "unknown project").with_status(StatusCode::NOT_FOUND)
    }

    /// An error with a code and a description.
    pub fn with_description(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(code).describe(description)
    }

    /// The error for a failure of the host or of storage: `server_error`
    /// with a fixed description. The cause is deliberately not carried.
    pub const fn server_error() -> Self {
        Self {
            code: ErrorCode::ServerError,
            description: Some(Cow::Borrowed(SERVER_ERROR_DESCRIPTION)),
            rare: None,
            challenge: None,
            status: None,
            reason: None,
            audited: false,
        }
    }

    /// Sets the description (sanitized, see the type docs).
    #[must_use]
    pub fn describe(mut self, description: impl Into<Cow<'static, str>>) -> Self {
        self.description = Some(sanitize_description(description.into()));
        self
    }

    /// Sets `error_uri`. A URI with characters outside the [RFC 6749] set is
    /// dropped.
    ///
    /// [RFC 6749]: https://www.rfc-editor.org/rfc/rfc6749
    #[must_use]
    pub fn with_uri(mut self, uri: impl Into<String>) -> Self {
        let uri = uri.into();
        if uri.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)) {
            self.rare.get_or_insert_default().uri = Some(uri.into_boxed_str());
        }
        self
    }

    /// Asks for a `WWW-Authenticate` header on the rendered response.
    #[must_use]
    pub const fn with_challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// Overrides the HTTP status of the direct response (e.g. 404 for an
    /// unknown project, 403 for a disabled endpoint).
    #[must_use]
    pub const fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Names the methods the endpoint accepts, sent as the `Allow` header
    /// of the rendered response ([RFC 9110 section 15.5.6]: a 405 must carry
    /// it). `methods` is the header value, e.g. `"POST, OPTIONS"`.
    ///
    /// [RFC 9110 section 15.5.6]: https://www.rfc-editor.org/rfc/rfc9110#section-15.5.6
    #[must_use]
    pub fn with_allow(mut self, methods: impl Into<String>) -> Self {
        self.rare.get_or_insert_default().allow = Some(methods.into().into_boxed_str());
        self
    }

    /// Sets the machine-readable reason ([`OAuthError::reason`]).
    #[must_use]
    pub const fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Why, for logs and audit events (`pkce_mismatch`, `unknown_client`,
    /// `redirect_uri_mismatch`, ...): more specific than the code, and
    /// never sent to the client (an `invalid_client` answer, for one, does
    /// not tell which check failed).
    pub const fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// Marks the error as already recorded as a specific audit event.
    #[must_use]
    pub(crate) const fn audited(mut self) -> Self {
        self.audited = true;
        self
    }

    /// Whether [`OAuthError::audited`] marked it.
    pub(crate) const fn is_audited(&self) -> bool {
        self.audited
    }

    /// The `Allow` header value set by [`OAuthError::with_allow`].
    pub fn allow(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.allow.as_deref())
    }

    /// The code.
    pub const fn code(&self) -> ErrorCode {
        self.code
    }

    /// The description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The error URI, if any.
    pub fn uri(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.uri.as_deref())
    }

    /// The HTTP status of a direct response carrying this error.
    pub const fn status(&self) -> StatusCode {
        match self.status {
            Some(s) => s,
            None => self.code.status(),
        }
    }

    /// The JSON body: `{"error": ..., "error_description": ..., "error_uri": ...}`.
    pub fn to_json(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: self.code,
            error_description: self.description.as_deref(),
            error_uri: self.uri(),
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":"server_error"}"#.to_vec())
    }

    /// The `WWW-Authenticate` value, when a challenge was requested or the
    /// code requires one (`invalid_token` and `insufficient_scope` always
    /// carry a Bearer challenge, RFC 6750 section 3:
    /// <https://www.rfc-editor.org/rfc/rfc6750#section-3>). A Bearer
    /// challenge is rendered by [`BearerChallenge`], the one renderer the
    /// resource-server refusals use too.
    pub fn www_authenticate(&self) -> Option<String> {
        let challenge = match (self.challenge, self.code) {
            (Some(c), _) => c,
            (None, ErrorCode::InvalidToken | ErrorCode::InsufficientScope) => Challenge::Bearer,
            (None, _) => return None,
        };
        Some(match challenge {
            Challenge::Basic => "Basic realm=\"oauth\"".to_owned(),
            Challenge::Bearer => {
                let mut c = BearerChallenge::new().error(self.code);
                if let Some(d) = &self.description {
                    c = c.description(d.as_ref());
                }
                c.to_string()
            }
        })
    }

    /// Renders the error as a complete response: status, JSON body,
    /// `Content-Type`, `Cache-Control: no-store` and, where applicable,
    /// `WWW-Authenticate`.
    pub fn to_response(&self) -> http::Response<Vec<u8>> {
        let mut response = http::Response::new(self.to_json());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(value) = self.www_authenticate()
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(allow) = self.allow()
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            headers.insert(header::ALLOW, value);
        }
        response
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {d}", self.code),
            None => write!(f, "{}", self.code),
        }
    }
}

impl std::error::Error for OAuthError {}

impl From<ErrorCode> for OAuthError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

/// A `WWW-Authenticate: Bearer` challenge ([RFC 6750 section 3], [RFC 9728
/// section 5.1]). Parameters appear in the order `error`,
/// `error_description`, `scope`, `resource_metadata`; every value is a
/// quoted string with `"` and `\` escaped and any byte outside visible
/// ASCII percent-encoded, so no value can break the header.
///
/// [RFC 6750 section 3]: https://www.rfc-editor.org/rfc/rfc6750#section-3
/// [RFC 9728 section 5.1]: https://www.rfc-editor.org/rfc/rfc9728#section-5.1
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    error: Option<ErrorCode>,
    description: Option<String>,
    scope: Option<String>,
    resource_metadata: Option<String>,
}

impl BearerChallenge {
    /// A bare `Bearer` challenge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `error`.
    #[must_use]
    pub const fn error(mut self, code: ErrorCode) -> Self {
        self.error = Some(code);
        self
    }

    /// Sets `error_description`.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets `scope` from its already space-delimited form (the
    /// `ScopeSet` setter lives beside the resource-server rules).
    #[must_use]
    pub(crate) fn with_scope_string(mut self, scope: String) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Sets `resource_metadata` ([RFC 9728 section 5.1]).
    ///
    /// [RFC 9728 section 5.1]: https://www.rfc-editor.org/rfc/rfc9728#section-5.1
    #[must_use]
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }
}

impl fmt::Display for BearerChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer")?;
        let params = [
            ("error", self.error.map(ErrorCode::as_str)),
            ("error_description", self.description.as_deref()),
            ("scope", self.scope.as_deref()),
            ("resource_metadata", self.resource_metadata.as_deref()),
        ];
        let mut first = true;
        for (name, value) in params {
            let Some(value) = value else { continue };
            f.write_str(if first { " " } else { ", " })?;
            first = false;
            write!(f, "{name}=\"")?;
            write_quoted(f, value)?;
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// Writes the inside of an [RFC 9110] quoted-string.
///
/// [RFC 9110]: https://www.rfc-editor.org/rfc/rfc9110
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    for b in value.bytes() {
        match b {
            b'"' | b'\\' => write!(f, "\\{}", char::from(b))?,
            0x20..=0x7E => write!(f, "{}", char::from(b))?,
            _ => write!(f, "%{b:02X}")?,
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_uri: Option<&'a str>,
}

/// Keeps the characters [RFC 6749 section 5.2] allows in `error_description`
/// (printable ASCII but `"` and `\`); caps the length at 512 bytes.
///
/// Quotes, which messages from serde and from this crate's validators use
/// to name a value (`invalid type: string "x"`), become `'` (also the
/// typographic ones), so the message still reads as written; a backslash
/// becomes `/`, whitespace controls a space, and any other character `?`.
///
/// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
fn sanitize_description(d: Cow<'static, str>) -> Cow<'static, str> {
    const MAX: usize = 512;
    let allowed = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
    if d.len() <= MAX && d.chars().all(allowed) {
        return d;
    }
    let mut out = String::with_capacity(d.len().min(MAX));
    for c in d.chars() {
        if out.len() >= MAX {
            break;
        }
        out.push(match c {
            c if allowed(c) => c,
            '"' | '\u{2018}' | '\u{2019}' | '\u{201C}' | '\u{201D}' => '\'',
            '\\' => '/',
            '\t' | '\n' | '\r' => ' ',
            _ => '?',
        });
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_rfc_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        assert!("nope".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn status_mapping() {
        use ErrorCode::*;
        let table = [
            (InvalidRequest, 400),
            (InvalidGrant, 400),
            (InvalidTarget, 400),
            (InvalidRedirectUri, 400),
            (InvalidClientMetadata, 400),
            (UnsupportedGrantType, 400),
            (InvalidClient, 401),
            (InvalidToken, 401),
            (InsufficientScope, 403),
            (ServerError, 500),
            (TemporarilyUnavailable, 503),
        ];
        for (code, status) in table {
            assert_eq!(code.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn json_body_has_only_present_members() {
        let e = OAuthError::new(ErrorCode::InvalidGrant);
        assert_eq!(e.to_json(), br#"{"error":"invalid_grant"}"#);
        let e = OAuthError::with_description(ErrorCode::InvalidTarget, "bad resource")
            .with_uri("https://docs.example/errors");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"], "invalid_target");
        assert_eq!(v["error_description"], "bad resource");
        assert_eq!(v["error_uri"], "https://docs.example/errors");
    }

    #[test]
    fn descriptions_cannot_break_headers() {
        let e = OAuthError::with_description(ErrorCode::InvalidToken, "a \"quoted\"\r\nInjected: x\\ é\u{7}");
        let d = e.description().unwrap();
        assert_eq!(d, "a 'quoted'  Injected: x/ ??");
        let r = e.to_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"a 'quoted'  Injected: x/ ??\""
        );
        let long = "x".repeat(2000);
        assert!(
            OAuthError::with_description(ErrorCode::InvalidRequest, long)
                .description()
                .unwrap()
                .len()
                <= 512
        );
    }

    #[test]
    fn quotes_in_descriptions_read_as_quotes() {
        // What serde says about a wrong JSON type, as the admin API and
        // registration pass it on.
        let serde_msg = serde_json::from_str::<Vec<String>>("\"abc\"").unwrap_err().to_string();
        assert!(serde_msg.contains('"'), "{serde_msg}");
        let e = OAuthError::with_description(ErrorCode::InvalidRequest, serde_msg);
        let d = e.description().unwrap();
        assert!(d.contains("string 'abc'"), "{d}");
        assert!(!d.contains('?'), "{d}");
        let body: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(body["error_description"], d);
        let typographic =
            OAuthError::with_description(ErrorCode::InvalidRequest, "\u{201C}x\u{201D} \u{2018}y\u{2019}");
        assert_eq!(typographic.description(), Some("'x' 'y'"));
    }

    #[test]
    fn allow_header_names_the_endpoint_methods() {
        let r = OAuthError::new(ErrorCode::InvalidRequest)
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .with_allow("POST, OPTIONS")
            .to_response();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[header::ALLOW], "POST, OPTIONS");
        assert!(
            OAuthError::new(ErrorCode::InvalidRequest)
                .to_response()
                .headers()
                .get(header::ALLOW)
                .is_none()
        );
    }

    #[test]
    fn bad_error_uri_is_dropped() {
        let e = OAuthError::new(ErrorCode::InvalidRequest).with_uri("https://x/\"y");
        assert_eq!(e.uri(), None);
    }

    #[test]
    fn responses_are_json_no_store_with_challenges() {
        let r = OAuthError::new(ErrorCode::InvalidClient)
            .with_challenge(Challenge::Basic)
            .to_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"oauth\"");

        let r = OAuthError::new(ErrorCode::InsufficientScope).to_response();
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\""
        );

        let r = OAuthError::new(ErrorCode::InvalidRequest).to_response();
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn unknown_project_is_404() {
        let e = OAuthError::unknown_project();
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
        assert_eq!(e.to_response().status(), 404);
    }

    #[test]
    fn server_error_has_no_detail() {
        let e = OAuthError::server_error();
        assert_eq!(e.code(), ErrorCode::ServerError);
        assert_eq!(e.status(), 500);
        let body = String::from_utf8(e.to_json()).unwrap();
        assert_eq!(
            body,
            r#"{"error":"server_error","error_description":"the authorization server could not complete the request"}"#
        );
    }
}
