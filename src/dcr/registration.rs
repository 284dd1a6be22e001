//! The registration itself: request validation under an initial access
//! token's pins, minting a client, and the [RFC 7591] response.
//!
//! [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::client::{Client, ClientId, ClientMetadata, ClientMetadataError, RegisteredClientId, ValidatedMetadata};
use crate::secret::SecretString;

use super::gate::RegistrationError;
use super::iat::PinnedMetadata;

/// Random bytes in a client secret (256 bits).
pub const CLIENT_SECRET_RANDOM_BYTES: usize = 32;

/// The largest registration request body parsed, in bytes. Real requests
/// are a few hundred bytes; the cap bounds parsing work and what a client
/// can make the server store (an inline `jwks` is otherwise unbounded).
pub const MAX_REGISTRATION_BODY: usize = 64 * 1024;

/// Server-wide registration limits and lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistrationPolicy {
    /// Lifetime of issued client secrets (`None`: never expire, reported as
    /// `client_secret_expires_at: 0`). The default is `None`: without [RFC
    /// 7592] client management a client has no way to obtain a new secret.
    ///
    /// [RFC 7592]: https://www.rfc-editor.org/rfc/rfc7592
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

/// The [RFC 7591 section 3.2.1] response (HTTP 201): every registered
/// metadata value plus `client_id` and `client_id_issued_at`, and for
/// confidential clients `client_secret` and `client_secret_expires_at`
/// (0 = never).
///
/// `Debug` redacts the secret; serializing (or [`Self::to_json`]) is the
/// one place it is written out.
///
/// [RFC 7591 section 3.2.1]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.1
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
