//! Clients: identifiers, [RFC 7591] metadata, and the validation shared by
//! Dynamic Client Registration and Client ID Metadata Documents.
//!
//! Every path that yields a client goes through [`ClientMetadata::validate`]
//! with a [`MetadataProfile`]; the profiles differ only where the
//! specifications do (defaults, secrets, required fields).
//!
//! [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591

mod id;
mod metadata;
#[cfg(test)]
mod tests;
mod validation;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use self::id::{ClientId, ClientIdError, RegisteredClientId};
pub use self::metadata::{
    ApplicationType, ClientMetadata, ClientMetadataError, GrantType, MetadataProfile, TokenEndpointAuthMethod,
    VERIFIES_PRIVATE_KEY_JWT, ValidatedMetadata, negotiate_auth_method,
};
pub use self::validation::related_host;
use crate::secret::SecretHash;

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
