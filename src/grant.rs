//! Grants and the records stored for them: authorization codes, refresh
//! tokens and access tokens. Only hashes of the secret values are kept.
//!
//! A grant is one user's approval of one client for some scopes and
//! resources. Every code and token belongs to exactly one grant, and
//! revoking the grant revokes all of them. Grants are never revoked "per
//! client": one CIMD `client_id` is shared by every installation of that
//! client, so one user's action must not sign out everyone else.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::client::ClientId;
use crate::newtype::string_newtype;
use crate::pkce::CodeChallenge;
use crate::project::ProjectId;
use crate::resource::ResourceSet;
use crate::scope::ScopeSet;
use crate::secret::SecretHash;

/// A grant identifier: `grant_` and 32 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(String);

impl GrantId {
    /// A fresh id from 16 random bytes.
    pub fn from_random(random: &[u8; 16]) -> Self {
        Self(format!("grant_{}", hex(random)))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GrantId").field(&self.0).finish()
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The authenticated user, as the host names them (`sub`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

/// The subject was empty, longer than 255 bytes, or had control characters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("subject must be 1 to 255 bytes without control characters")]
pub struct InvalidSubject;

impl Subject {
    /// Validates a subject.
    ///
    /// # Errors
    /// [`InvalidSubject`].
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidSubject> {
        let s = s.into();
        if (1..=255).contains(&s.len()) && !s.chars().any(char::is_control) {
            Ok(Self(s))
        } else {
            Err(InvalidSubject)
        }
    }

    /// The subject.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Subject, InvalidSubject, no_display);

/// One user's approval of one client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Grant {
    /// The id.
    pub id: GrantId,
    /// The project.
    pub project: ProjectId,
    /// The client.
    pub client_id: ClientId,
    /// The user.
    pub subject: Subject,
    /// The granted scopes.
    pub scopes: ScopeSet,
    /// The granted resources (the audiences tokens may carry).
    pub resources: ResourceSet,
    /// When the user approved.
    #[serde(with = "time::serde::timestamp")]
    pub granted_at: OffsetDateTime,
}

/// A stored authorization code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CodeRecord {
    /// SHA-256 of the code.
    pub hash: SecretHash,
    /// The grant the code is for.
    pub grant: Grant,
    /// The `redirect_uri` the code was sent to, exactly.
    pub redirect_uri: String,
    /// The PKCE challenge.
    pub code_challenge: CodeChallenge,
    /// The OpenID Connect `nonce` of the authorization request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Expiry (at most 10 minutes after issue).
    #[serde(with = "time::serde::timestamp")]
    pub expires_at: OffsetDateTime,
    /// Whether the code was redeemed.
    pub consumed: bool,
}

/// A stored refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token.
    pub hash: SecretHash,
    /// The grant.
    pub grant: Grant,
    /// The scopes this token may request (at most the grant's).
    pub scopes: ScopeSet,
    /// The resources this token may request (at most the grant's).
    pub resources: ResourceSet,
    /// Issued at.
    #[serde(with = "time::serde::timestamp")]
    pub issued_at: OffsetDateTime,
    /// Expiry.
    #[serde(with = "time::serde::timestamp")]
    pub expires_at: OffsetDateTime,
    /// Whether the token was exchanged for a new one (presenting it again
    /// is reuse).
    pub rotated: bool,
}

/// The claims of an access token (RFC 9068 names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audiences: the canonical resource URIs.
    pub aud: Vec<String>,
    /// The client.
    pub client_id: String,
    /// Space-delimited scopes.
    pub scope: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// When the user authenticated (seconds since the epoch; RFC 9068
    /// section 2.2.1): the time of the approval that created the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// A stored access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessTokenRecord {
    /// SHA-256 of the token string.
    pub hash: SecretHash,
    /// The project.
    pub project: ProjectId,
    /// The grant.
    pub grant_id: GrantId,
    /// The claims.
    pub claims: AccessTokenClaims,
    /// Whether this one token was revoked.
    pub revoked: bool,
}

impl AccessTokenRecord {
    /// Whether the token is expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now.unix_timestamp() >= self.claims.exp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_subjects() {
        assert_eq!(
            GrantId::from_random(&[0xab; 16]).as_str(),
            format!("grant_{}", "ab".repeat(16))
        );
        assert!(Subject::new("user_demo").is_ok());
        assert_eq!(Subject::new(""), Err(InvalidSubject));
        assert_eq!(Subject::new("a\nb"), Err(InvalidSubject));
        assert_eq!(Subject::new("x".repeat(256)), Err(InvalidSubject));
    }
}
