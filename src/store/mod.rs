//! The storage traits the host implements, and their contracts.
//!
//! All traits take `&self` and are `Send + Sync`: one instance serves every
//! request. Implementations must never turn a storage failure into a
//! success; return [`StoreError`] and the driver answers `server_error`.
//! In-memory implementations live in [`memory`].

pub mod memory;

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditEvent;
use crate::client::{Client, RegisteredClientId};
use crate::grant::{AccessTokenClaims, AccessTokenRecord, CodeRecord, GrantId, RefreshTokenRecord};
use crate::project::{ProjectId, ProjectSettings};
use crate::secret::{SecretHash, SecretString};

/// A failure of the host's storage. Rendered to clients as `server_error`
/// with no detail; the message is for the host's logs.
#[derive(Debug, thiserror::Error)]
#[error("storage failure: {message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failure with a message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            source: None,
        }
    }

    /// A failure caused by another error.
    pub fn with_source(message: impl fmt::Display, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: message.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for crate::error::OAuthError {
    fn from(_: StoreError) -> Self {
        crate::metrics::store_error();
        Self::server_error()
    }
}

/// Project settings by id.
///
/// # Security
/// [`ProjectStore::compare_and_swap`] must be atomic: two concurrent admin
/// actions must not both succeed from the same starting settings, or the
/// MCP cascade could be lost.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// The settings of a project, or `None` if it does not exist.
    async fn get(&self, id: &ProjectId) -> Result<Option<ProjectSettings>, StoreError>;

    /// Creates or replaces a project unconditionally.
    async fn put(&self, id: &ProjectId, settings: ProjectSettings) -> Result<(), StoreError>;

    /// Replaces the settings only if they still equal `current`. Returns
    /// whether the swap happened (`false`: someone else changed them, or
    /// the project is gone).
    async fn compare_and_swap(
        &self,
        id: &ProjectId,
        current: &ProjectSettings,
        new: ProjectSettings,
    ) -> Result<bool, StoreError>;
}

/// Clients registered through DCR, per project.
///
/// # Security
/// Clients are scoped by project: a client of one project must never be
/// returned for another. [`ClientStore::insert`] must refuse (not
/// overwrite) an existing id.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// A registered client.
    async fn get(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Option<Client>, StoreError>;

    /// Stores a new client. Returns `false` (and stores nothing) when the id
    /// is taken.
    async fn insert(&self, project: &ProjectId, client: Client) -> Result<bool, StoreError>;

    /// Deletes a client; returns whether it existed.
    async fn delete(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<bool, StoreError>;

    /// Number of clients of a project (for quotas).
    async fn count(&self, project: &ProjectId) -> Result<usize, StoreError>;
}

/// The outcome of [`GrantStore::consume_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeConsumption {
    /// This call consumed the code; it is the only one that ever will.
    Consumed(CodeRecord),
    /// The code had already been consumed (a replay).
    AlreadyConsumed(CodeRecord),
    /// No such code.
    NotFound,
}

/// The outcome of [`GrantStore::rotate_refresh_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshRotation {
    /// The old token was marked rotated and the new one stored.
    Rotated(RefreshTokenRecord),
    /// The old token had already been rotated (reuse); nothing was stored.
    AlreadyRotated(RefreshTokenRecord),
    /// No such token, or its grant is revoked; nothing was stored.
    NotFound,
}

/// Authorization codes, refresh tokens, access tokens and grant revocation.
/// Keys are the SHA-256 hashes of the secret values, scoped by project.
///
/// # Security
/// - [`GrantStore::consume_code`] must be atomic: of any number of
///   concurrent calls for one code, exactly one returns `Consumed`.
/// - [`GrantStore::rotate_refresh_token`] must be atomic in the same way.
/// - After [`GrantStore::revoke_grant`], every code and token of the grant
///   must read as absent or revoked, including ones inserted later by a
///   request that raced the revocation (inserts for a revoked grant are
///   dropped).
/// - A storage error must be returned, never reported as success.
///
/// # Bounded growth per grant
/// A grant refreshed a million times must not hold a million records.
/// - A rotated refresh token need not be kept whole: a store may keep a
///   tombstone (its hash, grant, issue and expiry times) and, when it is
///   presented again, answer [`GrantStore::refresh_token`] and
///   [`GrantStore::rotate_refresh_token`] with a record rebuilt from the
///   tombstone and the grant's current token (rotation never changes a
///   token's grant, scopes or resources), with `rotated = true`, so the
///   driver detects the reuse and revokes the grant.
/// - A store may forget rotated tokens beyond the newest
///   [`memory::MAX_ROTATED_PER_GRANT`] of a grant, and any past its
///   `expires_at`; a forgotten token reads as absent (`invalid_grant`
///   without revoking the grant: it never yields tokens either way).
/// - A store may drop a grant's access-token records once expired, and
///   its oldest beyond [`memory::MAX_ACCESS_TOKENS_PER_GRANT`]; a dropped
///   one reads as absent (inactive).
/// - [`GrantStore::purge_expired`] reclaims expired tombstones too.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new authorization code.
    async fn insert_code(&self, record: CodeRecord) -> Result<(), StoreError>;

    /// Reads a code without consuming it.
    async fn code(&self, project: &ProjectId, hash: &SecretHash) -> Result<Option<CodeRecord>, StoreError>;

    /// Consumes a code, atomically.
    async fn consume_code(&self, project: &ProjectId, hash: &SecretHash) -> Result<CodeConsumption, StoreError>;

    /// Stores a refresh token (dropped if its grant is revoked).
    async fn insert_refresh_token(&self, record: RefreshTokenRecord) -> Result<(), StoreError>;

    /// Reads a refresh token (absent if its grant is revoked).
    async fn refresh_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// Marks `old` rotated and stores `new`, atomically, if `old` exists,
    /// is not yet rotated, and its grant is not revoked.
    async fn rotate_refresh_token(
        &self,
        project: &ProjectId,
        old: &SecretHash,
        new: RefreshTokenRecord,
    ) -> Result<RefreshRotation, StoreError>;

    /// Stores an access token (dropped if its grant is revoked).
    async fn insert_access_token(&self, record: AccessTokenRecord) -> Result<(), StoreError>;

    /// Reads an access token (absent if its grant is revoked).
    async fn access_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError>;

    /// Revokes one access token; returns whether it existed.
    async fn revoke_access_token(&self, project: &ProjectId, hash: &SecretHash) -> Result<bool, StoreError>;

    /// Revokes a grant: every code and token of it, now and later.
    async fn revoke_grant(&self, project: &ProjectId, grant: &GrantId, now: OffsetDateTime) -> Result<(), StoreError>;

    /// Deletes expired codes and tokens and stale revocation markers;
    /// returns how many records were removed.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
}

/// Turns access-token claims into the token string a client presents.
///
/// The driver stores the claims under the hash of the returned string, so
/// introspection and revocation work whatever the format. The default,
/// [`OpaqueTokenIssuer`], makes random opaque tokens; a host may sign JWTs
/// (RFC 9068) instead.
#[async_trait]
pub trait TokenIssuer: Send + Sync {
    /// The token for `claims`. `random` is 32 fresh random bytes.
    async fn issue(&self, claims: &AccessTokenClaims, random: &[u8; 32]) -> Result<SecretString, StoreError>;
}

/// Opaque access tokens: `at_` and 256 random bits, base64url.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpaqueTokenIssuer;

#[async_trait]
impl TokenIssuer for OpaqueTokenIssuer {
    async fn issue(&self, _claims: &AccessTokenClaims, random: &[u8; 32]) -> Result<SecretString, StoreError> {
        Ok(SecretString::random_with_prefix("at_", random))
    }
}

/// Where audit events go.
///
/// Recording is infallible from the driver's point of view: a sink that can
/// fail must buffer or log the failure itself. Events never carry secrets.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Records one event.
    async fn record(&self, event: AuditEvent);
}

/// What [`IatStore::use_once`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UseOutcome {
    /// The use was counted; the record as it is now (its `uses` includes
    /// this one).
    Used(crate::dcr::IatRecord),
    /// No token with this hash in this project.
    Unknown,
    /// The token exists but is expired, exhausted or revoked; nothing was
    /// counted.
    Unusable(crate::dcr::IatError),
}

/// What [`IatStore::revoke`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeOutcome {
    /// Revoked now; the record as it is now.
    Revoked(crate::dcr::IatRecord),
    /// It was already revoked; unchanged.
    AlreadyRevoked(crate::dcr::IatRecord),
    /// No token with this id in this project.
    Unknown,
}

/// Initial access tokens (RFC 7591 section 3), per project, keyed by the
/// SHA-256 hash of the token. Raw tokens are never given to the store.
///
/// # Security
/// - [`IatStore::use_once`] is the ONE call that counts a use. It must
///   check the token (with [`crate::dcr::IatRecord::try_use`]: revocation,
///   expiry, `max_uses`) and store the incremented count atomically (one
///   lock, one transaction, or a conditional update such as
///   `UPDATE ... SET uses = uses + 1 WHERE hash = ? AND project = ? AND
///   revoked_at IS NULL AND (max_uses IS NULL OR uses < max_uses) AND
///   (expires_at IS NULL OR expires_at > ?)`), so that N concurrent
///   registrations with a `max_uses = k` token yield exactly k clients,
///   also across server instances sharing the store.
/// - Records are scoped by project: a token of one project must be unknown
///   in every other.
/// - A failure is an error, never a success: when in doubt, count nothing
///   and return [`StoreError`].
#[async_trait]
pub trait IatStore: Send + Sync {
    /// Stores a new record. Returns `false` (and stores nothing) when its id
    /// or hash is already taken in the project.
    async fn insert(&self, project: &ProjectId, record: crate::dcr::IatRecord) -> Result<bool, StoreError>;

    /// The record with this token hash, whatever its state. A read: it
    /// counts nothing.
    async fn find(
        &self,
        project: &ProjectId,
        hash: &crate::secret::SecretHash,
    ) -> Result<Option<crate::dcr::IatRecord>, StoreError>;

    /// Counts one use of the token with this hash if it is usable at `now`,
    /// atomically (see the trait's `# Security`).
    async fn use_once(
        &self,
        project: &ProjectId,
        hash: &crate::secret::SecretHash,
        now: time::OffsetDateTime,
    ) -> Result<UseOutcome, StoreError>;

    /// Every record of a project, in any state.
    async fn list(&self, project: &ProjectId) -> Result<Vec<crate::dcr::IatRecord>, StoreError>;

    /// Marks a token revoked at `now` (once: a second revocation keeps the
    /// first time).
    async fn revoke(
        &self,
        project: &ProjectId,
        id: &crate::dcr::IatId,
        now: time::OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError>;

    /// Deletes the records of every project that can no longer be used at
    /// `now` (expired, exhausted or revoked); returns how many.
    async fn purge(&self, now: time::OffsetDateTime) -> Result<usize, StoreError>;
}

/// Validated Client ID Metadata Documents, per project and URL.
///
/// # Security
/// - Only documents that passed every check are stored: the driver never
///   caches an error response, a failed fetch or an invalid document, and
///   an implementation must not synthesize entries.
/// - Entries are scoped by project: one project's entry must never be
///   returned for another (projects differ in trust and validation
///   policy).
/// - Every entry carries [`crate::cimd::CachedDocument::expires_at`]; the
///   driver never uses an expired entry and re-validates a fresh one
///   against the project's current policy on every use. Implementations
///   may evict any entry at any time (a miss only costs a fetch).
/// - A failing cache is treated as a miss by the driver (and a failed
///   `put` as not cached): the safe failure mode is fetching again.
#[async_trait]
pub trait CimdCache: Send + Sync {
    /// The entry for a project and URL, fresh or not.
    async fn get(
        &self,
        project: &ProjectId,
        url: &crate::cimd::ClientIdUrl,
    ) -> Result<Option<crate::cimd::CachedDocument>, StoreError>;

    /// Stores (or replaces) the entry for a project and URL.
    async fn put(
        &self,
        project: &ProjectId,
        url: &crate::cimd::ClientIdUrl,
        entry: crate::cimd::CachedDocument,
    ) -> Result<(), StoreError>;

    /// Removes the entry for a project and URL, if any.
    async fn remove(&self, project: &ProjectId, url: &crate::cimd::ClientIdUrl) -> Result<(), StoreError>;
}
