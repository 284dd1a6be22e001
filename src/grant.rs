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

    /// An id that sorts before every other (a range bound for indexes).
    pub(crate) const fn lowest() -> Self {
        Self(String::new())
    }

    /// Validates the form: `grant_` and 32 lowercase hex digits.
    ///
    /// # Errors
    /// [`InvalidGrantId`].
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidGrantId> {
        let id = id.into();
        let ok = id
            .strip_prefix("grant_")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok { Ok(Self(id)) } else { Err(InvalidGrantId) }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The string was not `grant_` and 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a grant id is grant_ followed by 32 lowercase hex digits")]
pub struct InvalidGrantId;

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

/// A grant as its user and the administrator see it ("connected apps"):
/// what was granted, when, and when it was last used. The
/// [`crate::store::GrantStore`] keeps one from the moment the user
/// approves (the code is stored) for as long as any code or token of the
/// grant may be alive, and forgets it when the grant is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GrantSummary {
    /// The grant: client, user, scopes, resources, when approved.
    pub grant: Grant,
    /// When a token was last issued for it (code exchange or refresh);
    /// `None` while the code has not been exchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the last of its codes and tokens expires (as far as the store
    /// knows); a grant past it is no longer listed.
    #[serde(with = "time::serde::timestamp")]
    pub expires_at: OffsetDateTime,
}

impl GrantSummary {
    /// A summary of a grant approved just now, alive until `expires_at`.
    pub const fn new(grant: Grant, expires_at: OffsetDateTime) -> Self {
        Self {
            grant,
            last_used_at: None,
            expires_at,
        }
    }
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
    /// When and into what the token was rotated: set by
    /// [`crate::store::GrantStore::rotate_refresh_token`] together with
    /// `rotated`. Absent in records stored before this field existed, which
    /// then get no reuse grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationMark>,
}

impl RefreshTokenRecord {
    /// Whether a presentation of this (rotated) token at `now` falls within
    /// the reuse `grace`: it was rotated, the rotation is recorded, and
    /// `rotated_at <= now < rotated_at + grace`. A zero grace is never met.
    /// The rule every [`crate::store::GrantStore`] applies.
    pub fn within_reuse_grace(&self, now: OffsetDateTime, grace: time::Duration) -> bool {
        self.rotated
            && grace.is_positive()
            && self
                .rotation
                .as_ref()
                .is_some_and(|m| now >= m.at && now < m.at + grace)
    }
}

/// What a refresh-token rotation records on the old token: enough for a
/// concurrent presentation of the old token within the grace to be given
/// the same successor, which only a holder of the old token can derive
/// (see [`crate::token::successor_refresh_token`]). No secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RotationMark {
    /// When the token was rotated (also the issue time of the successor
    /// and of the access token issued with it).
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// The random input of the derivation.
    pub nonce: RotationNonce,
    /// SHA-256 of the successor refresh token.
    pub successor: SecretHash,
    /// SHA-256 of what the first rotation issued (scopes and audiences,
    /// [`crate::token::issuance_digest`]): a presentation within the grace
    /// gets the same pair only when it asks for exactly this, so a replay
    /// cannot mint access tokens the first rotation did not (marks stored
    /// without it never match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuance: Option<SecretHash>,
}

impl RotationMark {
    /// A mark from its parts.
    pub const fn new(at: OffsetDateTime, nonce: RotationNonce, successor: SecretHash) -> Self {
        Self {
            at,
            nonce,
            successor,
            issuance: None,
        }
    }

    /// Records the digest of the first rotation's issuance.
    #[must_use]
    pub const fn with_issuance(mut self, digest: SecretHash) -> Self {
        self.issuance = Some(digest);
        self
    }
}

/// 256 random bits drawn at a rotation; serialized as 64 lowercase hex
/// digits. Not a secret on its own: the successor tokens are derived from
/// it *and* the old refresh token.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RotationNonce([u8; 32]);

/// The string was not 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a rotation nonce is 64 lowercase hex digits")]
pub struct InvalidRotationNonce;

impl RotationNonce {
    /// A nonce from 32 random bytes.
    pub const fn from_random(random: [u8; 32]) -> Self {
        Self(random)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RotationNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RotationNonce").field(&hex(&self.0)).finish()
    }
}

impl TryFrom<String> for RotationNonce {
    type Error = InvalidRotationNonce;
    fn try_from(s: String) -> Result<Self, InvalidRotationNonce> {
        if s.len() != 64 {
            return Err(InvalidRotationNonce);
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            match pair {
                [h, l] => {
                    *slot = (digit(*h).ok_or(InvalidRotationNonce)? << 4) | digit(*l).ok_or(InvalidRotationNonce)?
                }
                _ => return Err(InvalidRotationNonce),
            }
        }
        Ok(Self(out))
    }
}

impl From<RotationNonce> for String {
    fn from(n: RotationNonce) -> Self {
        hex(&n.0)
    }
}

/// The claims of an access token ([RFC 9068] names).
///
/// [RFC 9068]: https://www.rfc-editor.org/rfc/rfc9068
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
    /// When the user authenticated (seconds since the epoch; [RFC 9068
    /// section 2.2.1]): the time of the approval that created the grant.
    ///
    /// [RFC 9068 section 2.2.1]: https://www.rfc-editor.org/rfc/rfc9068#section-2.2.1
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

    #[test]
    fn rotation_nonce_round_trips_and_refuses_junk() {
        let n = RotationNonce::from_random([0x5a; 32]);
        let s: String = n.into();
        assert_eq!(s, "5a".repeat(32));
        assert_eq!(RotationNonce::try_from(s).unwrap(), n);
        for bad in [
            "",
            "5A".repeat(32).as_str(),
            "zz".repeat(32).as_str(),
            "5a".repeat(31).as_str(),
        ] {
            assert_eq!(
                RotationNonce::try_from(bad.to_owned()),
                Err(InvalidRotationNonce),
                "{bad}"
            );
        }
    }

    #[test]
    fn reuse_grace_window() {
        use time::Duration;
        use time::macros::datetime;
        let at = datetime!(2026-11-26 12:00 UTC);
        let grant = Grant {
            id: GrantId::from_random(&[1; 16]),
            project: ProjectId::new("p").unwrap(),
            client_id: ClientId::Registered(crate::client::RegisteredClientId::from_random(&[2; 12])),
            subject: Subject::new("u").unwrap(),
            scopes: ScopeSet::new(),
            resources: ResourceSet::new(),
            granted_at: at,
        };
        let mut r = RefreshTokenRecord {
            hash: SecretHash::of("rt"),
            grant,
            scopes: ScopeSet::new(),
            resources: ResourceSet::new(),
            issued_at: at,
            expires_at: at + Duration::days(1),
            rotated: false,
            rotation: None,
        };
        let five = Duration::seconds(5);
        assert!(!r.within_reuse_grace(at, five), "not rotated");
        r.rotated = true;
        assert!(!r.within_reuse_grace(at, five), "rotation not recorded");
        r.rotation = Some(RotationMark::new(
            at,
            RotationNonce::from_random([0; 32]),
            SecretHash::of("s"),
        ));
        assert!(r.within_reuse_grace(at, five));
        assert!(r.within_reuse_grace(at + Duration::milliseconds(4999), five));
        assert!(!r.within_reuse_grace(at + five, five), "the window is half-open");
        assert!(
            !r.within_reuse_grace(at - Duration::SECOND, five),
            "before the rotation"
        );
        assert!(!r.within_reuse_grace(at, Duration::ZERO), "zero grace");
    }
}
