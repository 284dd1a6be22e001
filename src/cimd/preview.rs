//! The CIMD preview (`POST /oauth2/cimd/resolve`): its request and its
//! serializable answer.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::consent::ConsentDisplay;
use super::error::{CimdError, truncate};
use crate::client::{ApplicationType, Client, GrantType, TokenEndpointAuthMethod};
use crate::error::{ErrorCode, OAuthError};

/// The answer of a preview: the client the URL resolves to, or the exact
/// reason it does not.
///
/// A failed resolution is a normal answer (`Ok(CimdPreview::Failed)` from
/// [`crate::server::AuthorizationServer::preview_cimd`]), not an error: the
/// request itself was fine. An HTTP layer renders both variants as JSON with
/// status 200 and the `status` member telling them apart:
///
/// ```json
/// {"status": "resolved", "client_id": "...", "client_name": "...", ...}
/// {"status": "failed", "client_id": "...", "reason": "http_status", "http_status": 404, ...}
/// ```
///
/// The anonymous answer ([`Self::to_json`]) carries only the validation
/// result: whether the document came from the cache, and until when, would
/// tell anyone whether someone signed in with that client recently. Only an
/// administrator gets those ([`Self::to_json_with_cache_details`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CimdPreview {
    /// The document resolved.
    Resolved(Box<ResolvedPreview>),
    /// It did not; nothing was cached.
    Failed(FailedPreview),
}

impl CimdPreview {
    /// Whether the document resolved.
    pub const fn is_resolved(&self) -> bool {
        matches!(self, Self::Resolved(_))
    }

    /// The JSON body for anyone: the validation result, no cache state.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The JSON body for an administrator: [`Self::to_json`] plus
    /// `from_cache` and `cache_expires_at` for a resolved document.
    pub fn to_json_with_cache_details(&self) -> Vec<u8> {
        let Ok(mut value) = serde_json::to_value(self) else {
            return Vec::new();
        };
        if let (Self::Resolved(r), Value::Object(map)) = (self, &mut value) {
            map.insert("from_cache".to_owned(), Value::Bool(r.from_cache));
            let expires = r
                .cache_expires_at
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .map_or(Value::Null, Value::String);
            map.insert("cache_expires_at".to_owned(), expires);
        }
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// A resolved client, normalized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResolvedPreview {
    /// The `client_id` URL.
    pub client_id: String,
    /// `client_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The redirect URIs, deduplicated.
    pub redirect_uris: Vec<String>,
    /// The effective auth method (`none` when the document omits it).
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// The grant types kept after filtering unknown ones.
    pub grant_types: Vec<GrantType>,
    /// `application_type`.
    pub application_type: ApplicationType,
    /// `scope`, if the document states one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Whether the answer came from the cache (serialized only by
    /// [`CimdPreview::to_json_with_cache_details`]).
    #[serde(skip)]
    pub from_cache: bool,
    /// Until when the document is reused (`None`: not cached, e.g.
    /// `Cache-Control: no-store`); serialized only by
    /// [`CimdPreview::to_json_with_cache_details`].
    #[serde(skip)]
    pub cache_expires_at: Option<OffsetDateTime>,
    /// What a consent screen would show.
    pub consent: ConsentDisplay,
}

impl ResolvedPreview {
    /// The preview of a resolved client.
    pub fn new(client: &Client, from_cache: bool, cache_expires_at: Option<OffsetDateTime>) -> Self {
        let m = &client.metadata;
        Self {
            client_id: client.client_id.as_str().to_owned(),
            client_name: m.client_name.clone(),
            redirect_uris: m.redirect_uris.iter().map(|r| r.as_str().to_owned()).collect(),
            token_endpoint_auth_method: m.token_endpoint_auth_method,
            grant_types: m.grant_types.clone(),
            application_type: m.application_type,
            scope: m.scope.as_ref().map(ToString::to_string),
            from_cache,
            cache_expires_at,
            consent: ConsentDisplay::for_client(client),
        }
    }
}

/// A failed resolution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FailedPreview {
    /// The `client_id` as sent (truncated to 2048 bytes).
    pub client_id: String,
    /// The machine-readable reason ([`CimdError::reason`]).
    pub reason: &'static str,
    /// The HTTP status received, for `http_status` and `redirect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The OAuth error an authorization request would get.
    pub error: ErrorCode,
    /// A human-readable description.
    pub error_description: String,
}

impl FailedPreview {
    /// The preview of a failure.
    pub fn new(client_id: &str, error: &CimdError) -> Self {
        Self {
            client_id: truncate(client_id, 2048),
            reason: error.reason(),
            http_status: error.http_status(),
            error: error.code(),
            error_description: error.public_description(),
        }
    }
}

/// Reads the preview request body `{"client_id": "<url>"}` (other members
/// are ignored) and returns the `client_id` string, not yet validated.
///
/// # Errors
/// `invalid_request` when the body is not a JSON object with a string
/// `client_id`.
pub fn parse_preview_request(body: &[u8]) -> Result<String, OAuthError> {
    let invalid = |d: &'static str| OAuthError::with_description(ErrorCode::InvalidRequest, d);
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid("the body must be a JSON object"))?;
    match value.get("client_id") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid("client_id must be a string")),
        None if value.is_object() => Err(invalid("client_id is required")),
        None => Err(invalid("the body must be a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_parsing() {
        assert_eq!(
            parse_preview_request(br#"{"client_id":"https://a.example/c","x":1}"#).unwrap(),
            "https://a.example/c"
        );
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"client_id":1}"#,
            b"null",
            b"\"https://a/b\"",
            b"{",
        ] {
            assert_eq!(
                parse_preview_request(bad).unwrap_err().code(),
                ErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn failure_serialization() {
        let p = CimdPreview::Failed(FailedPreview::new(
            "https://a.example/c",
            &CimdError::HttpStatus { status: 404 },
        ));
        let v: Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["reason"], "http_status");
        assert_eq!(v["http_status"], 404);
        assert_eq!(v["error"], "invalid_client");
        assert!(!p.is_resolved());
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_preview_request(&body);
        }
    }
}
