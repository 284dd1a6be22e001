//! The storage traits the host implements, and their contracts.
//!
//! All traits take `&self` and are `Send + Sync`: one instance serves every
//! request. Implementations must never turn a storage failure into a
//! success; return [`StoreError`] and the driver answers `server_error`.
//! In-memory implementations live in [`memory`]; SQLite and PostgreSQL
//! ones in `sql` (features `sqlite`, `postgres`). The `contract` module
//! (feature `test-util`) is the test suite every implementation must pass.

mod cached;
#[cfg(feature = "test-util")]
pub mod contract;
mod key_encryption;
pub mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;
mod users;

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditEvent;
use crate::client::{Client, ClientId, RegisteredClientId};
use crate::grant::{
    AccessTokenClaims, AccessTokenRecord, CodeRecord, Grant, GrantId, GrantSummary, RefreshTokenRecord, Subject,
};
use crate::project::{ProjectId, ProjectSettings};
use crate::secret::{SecretHash, SecretString};

pub use self::cached::{CachedClientStore, CachedProjectStore};
pub use self::key_encryption::KeyEncryption;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use self::key_encryption::{Aes256GcmKeyEncryption, InvalidKeyEncryptionKey};
pub use self::users::{
    ConsentTarget, DEFAULT_UPSTREAM_LOGINS_PER_SOURCE, LocalUser, LoginTake, RememberedConsent, UpstreamLoginStore,
    UpstreamSecrets, UserStore, UserStoreClaims,
};

/// A failure of the host's storage. Rendered to clients as `server_error`
/// with no detail, unless it is a refusal to hold more
/// ([`StoreErrorKind::CapacityExceeded`]); the message is for the host's
/// logs.
#[derive(Debug, thiserror::Error)]
#[error("storage failure: {message}")]
pub struct StoreError {
    message: String,
    kind: StoreErrorKind,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What a [`StoreError`] says about the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store failed (unreachable, a constraint violated, corrupt data,
    /// a bug): the server answers `server_error`.
    Failure,
    /// The store works, and refused to hold more on purpose: a bound (per
    /// project, per request source) is reached, e.g.
    /// [`UpstreamLoginStore::insert`]. The same request may succeed once
    /// older records expire: the server answers `temporarily_unavailable`
    /// (HTTP 503) and audits the refusal.
    CapacityExceeded,
}

impl StoreError {
    /// A failure with a message ([`StoreErrorKind::Failure`]).
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            kind: StoreErrorKind::Failure,
            source: None,
        }
    }

    /// A failure caused by another error ([`StoreErrorKind::Failure`]).
    pub fn with_source(message: impl fmt::Display, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: message.to_string(),
            kind: StoreErrorKind::Failure,
            source: Some(Box::new(source)),
        }
    }

    /// A refusal to hold more ([`StoreErrorKind::CapacityExceeded`]).
    pub fn capacity_exceeded(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            kind: StoreErrorKind::CapacityExceeded,
            source: None,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Logs the failure through `tracing` at ERROR (target
    /// `authio_mcp::store`, with its message and its source chain) and
    /// counts it ([`crate::metrics`]). The driver calls this exactly once,
    /// where the failure becomes a `server_error` answer; the client sees
    /// none of it.
    pub fn log(&self) {
        crate::metrics::store_error();
        if tracing::enabled!(target: "authio_mcp::store", tracing::Level::ERROR) {
            let mut causes = String::new();
            let mut next = std::error::Error::source(self);
            while let Some(cause) = next {
                if !causes.is_empty() {
                    causes.push_str(": ");
                }
                causes.push_str(&cause.to_string());
                next = cause.source();
            }
            tracing::error!(
                target: "authio_mcp::store",
                error = %self.message,
                cause = causes.as_str(),
                "storage failure; answered server_error"
            );
        }
    }

    /// What kind of error this is.
    pub const fn kind(&self) -> StoreErrorKind {
        self.kind
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

/// The most items one page of a listing holds ([`PageRequest`]).
pub const MAX_PAGE_SIZE: usize = 500;

/// Where a listing continues: after the item with this sort key (a time
/// in unix seconds and an id). Handed to callers as the opaque string
/// `<seconds>.<id>` ([`PageCursor::parse`], `Display`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageCursor {
    at: i64,
    id: String,
}

/// The string is not a cursor a listing handed out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed page cursor")]
pub struct InvalidCursor;

impl PageCursor {
    /// The cursor after the item sorted at `(at, id)`.
    pub fn new(at: OffsetDateTime, id: impl Into<String>) -> Self {
        Self {
            at: at.unix_timestamp(),
            id: id.into(),
        }
    }

    /// Parses a cursor from its string form.
    ///
    /// # Errors
    /// [`InvalidCursor`].
    pub fn parse(s: &str) -> Result<Self, InvalidCursor> {
        let (at, id) = s.split_once('.').ok_or(InvalidCursor)?;
        let at: i64 = at.parse().map_err(|_| InvalidCursor)?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(InvalidCursor);
        }
        Ok(Self { at, id: id.to_owned() })
    }

    /// The time part (unix seconds).
    pub const fn at(&self) -> i64 {
        self.at
    }

    /// The id part.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at, self.id)
    }
}

/// Which page of a listing to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    limit: usize,
    after: Option<PageCursor>,
}

impl PageRequest {
    /// The first page of at most `limit` items (clamped to
    /// `1..=`[`MAX_PAGE_SIZE`]).
    pub fn first(limit: usize) -> Self {
        Self {
            limit: limit.clamp(1, MAX_PAGE_SIZE),
            after: None,
        }
    }

    /// The page after `cursor` (`None`: the first page).
    #[must_use]
    pub fn after(mut self, cursor: Option<PageCursor>) -> Self {
        self.after = cursor;
        self
    }

    /// The page size, within `1..=`[`MAX_PAGE_SIZE`].
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Where the page starts (exclusive).
    pub const fn cursor(&self) -> Option<&PageCursor> {
        self.after.as_ref()
    }

    /// Whether an item sorted at `(at, id)` comes after the cursor.
    pub fn admits(&self, at: i64, id: &str) -> bool {
        self.after.as_ref().is_none_or(|c| (at, id) > (c.at, c.id.as_str()))
    }

    /// A page from up to `limit + 1` items read in order: the extra item,
    /// if read, only says that a next page exists.
    pub fn page<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> PageCursor) -> Page<T> {
        let next = if items.len() > self.limit {
            items.truncate(self.limit);
            items.last().map(key)
        } else {
            None
        };
        Page { items, next }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next: Option<PageCursor>,
}

/// Clients registered through DCR, per project.
///
/// # Security
/// Clients are scoped by project: a client of one project must never be
/// returned for another. [`ClientStore::insert`] must refuse (not
/// overwrite) an existing id. [`ClientStore::get`] returns disabled
/// clients too, with [`Client::disabled_at`] set: the driver refuses them.
/// Listing goes through an index on `(project, issued_at, id)`, never a
/// scan of every client.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// A registered client.
    async fn get(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Option<Client>, StoreError>;

    /// A registered client as the backing store holds it now, bypassing
    /// any cache (see [`crate::store::CachedClientStore`]). The driver
    /// asks it where staleness would extend a client's life: whether a
    /// token's client is still active (introspection, userinfo). The
    /// default is [`ClientStore::get`], right for every store without a
    /// cache; a caching store must forward it to the store it caches.
    async fn client_uncached(
        &self,
        project: &ProjectId,
        id: &RegisteredClientId,
    ) -> Result<Option<Client>, StoreError> {
        self.get(project, id).await
    }

    /// Stores a new client. Returns `false` (and stores nothing) when the id
    /// is taken.
    async fn insert(&self, project: &ProjectId, client: Client) -> Result<bool, StoreError>;

    /// Deletes a client; returns whether it existed.
    async fn delete(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<bool, StoreError>;

    /// Number of clients of a project (for quotas).
    async fn count(&self, project: &ProjectId) -> Result<usize, StoreError>;

    /// One page of a project's clients in a stable order: by `issued_at`,
    /// then id (the cursor of a client is `(issued_at, id)`). Disabled
    /// clients are listed too. Fetch `page.limit() + 1` rows and build the
    /// result with [`PageRequest::page`].
    async fn list(&self, project: &ProjectId, page: &PageRequest) -> Result<Page<Client>, StoreError>;

    /// Disables a client (`Some(at)`; a client already disabled keeps its
    /// first time) or enables it (`None`), atomically. Returns the client
    /// as stored now, or `None` when there is no such client in the
    /// project.
    async fn set_disabled(
        &self,
        project: &ProjectId,
        id: &RegisteredClientId,
        disabled_at: Option<OffsetDateTime>,
    ) -> Result<Option<Client>, StoreError>;
}

/// Which grants [`GrantStore::revoke_grants`] revokes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantSelector {
    /// Every grant of a user (account deletion, "sign out everywhere").
    Subject(Subject),
    /// Every grant of a registered client (the client is being deleted).
    Client(ClientId),
    /// One grant, only if it is the user's.
    Grant {
        /// The user it must belong to.
        subject: Subject,
        /// The grant.
        grant: GrantId,
    },
}

impl GrantSelector {
    /// Whether `grant` is selected.
    pub fn matches(&self, grant: &Grant) -> bool {
        match self {
            Self::Subject(s) => &grant.subject == s,
            Self::Client(c) => &grant.client_id == c,
            Self::Grant { subject, grant: id } => &grant.subject == subject && &grant.id == id,
        }
    }
}

/// Rotated refresh tokens a [`GrantStore`] remembers per grant for reuse
/// detection (as tombstones). A token rotated longer ago than this many
/// rotations is answered as unknown (`invalid_grant`, without revoking the
/// grant): it never yields tokens either way; only the revocation of the
/// family on such a late reuse is lost.
pub const MAX_ROTATED_PER_GRANT: usize = 32;

/// Access-token records a [`GrantStore`] keeps per grant; beyond it the
/// oldest is dropped (it then introspects as inactive).
pub const MAX_ACCESS_TOKENS_PER_GRANT: usize = 32;

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
    /// The old token was marked rotated (with the given
    /// [`crate::grant::RotationMark`]) and the new one stored; the old
    /// record as it is now.
    Rotated(RefreshTokenRecord),
    /// The old token had already been rotated, and this presentation falls
    /// within the reuse grace of its recorded rotation
    /// ([`RefreshTokenRecord::within_reuse_grace`]); nothing was stored or
    /// changed. The record carries the first rotation's mark, from which
    /// the caller re-derives the same successor.
    WithinGrace(RefreshTokenRecord),
    /// The old token had already been rotated and the presentation is
    /// outside the grace (reuse); nothing was stored.
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
/// - [`GrantStore::rotate_refresh_token`] must be atomic in the same way:
///   of any number of concurrent calls for one old token, exactly one
///   returns `Rotated` (and only that one stores its `new` record and its
///   `mark`); every other call sees the winner's committed state and
///   returns `WithinGrace` or `AlreadyRotated` by the winner's
///   `mark.at`, never its own. With SQL (as `store::sql` does): `DELETE
///   FROM refresh_tokens WHERE project = :p AND hash = :old AND <grant not
///   revoked> RETURNING ...`, then the insert of its tombstone (with the
///   mark) and of `new`, in the same transaction; when no row was deleted,
///   read the tombstone and decide with
///   [`RefreshTokenRecord::within_reuse_grace`] (`mark.at` as `now`).
/// - After [`GrantStore::revoke_grant`], every code and token of the grant
///   must read as absent or revoked, including ones inserted later by a
///   request that raced the revocation (inserts for a revoked grant are
///   dropped, or, racing the revocation on PostgreSQL under READ
///   COMMITTED, stored and hidden: every read filters revoked grants).
/// - A storage error must be returned, never reported as success.
///
/// # Grant summaries
/// The store keeps a [`GrantSummary`] per grant, for
/// [`GrantStore::grants_of_subject`] and [`GrantStore::revoke_grants`]:
/// - [`GrantStore::insert_code`] creates it (from the code's grant,
///   `last_used_at = None`, `expires_at` the code's) BEFORE the code can be
///   read, so a grant is listed (and found by `revoke_grants`) before any
///   token of it can exist;
/// - [`GrantStore::insert_refresh_token`] and a successful
///   [`GrantStore::rotate_refresh_token`] create or update it (from the
///   token's grant, so grants stored before summaries existed are picked
///   up): `last_used_at` becomes the token's `issued_at` if later,
///   `expires_at` the token's if later;
/// - [`GrantStore::insert_access_token`] updates an existing one the same
///   way (`iat`, `exp`);
/// - a revoked grant's summary is never listed nor selected again:
///   [`GrantStore::revoke_grant`] and [`GrantStore::revoke_grants`] delete
///   it, and none of the calls above stores it again once the revocation
///   is committed (with SQL: the same `NOT EXISTS <marker>` as the token
///   inserts; a write that raced the revocation may leave a row behind,
///   which every read and selection skips by the marker, like a racing
///   token row); [`GrantStore::purge_expired`] deletes summaries past
///   `expires_at` (at least [`GRANT_SUMMARY_GRACE`] past, so one is never
///   purged while its grant's code is being exchanged).
/// - Listing goes through an index on `(project, subject, granted_at,
///   grant id)`, revoking a client's grants through one on `(project,
///   client id)`: never a scan of every grant.
///
/// # Bounded growth per grant
/// A grant refreshed a million times must not hold a million records: a
/// store keeps at most [`MAX_ROTATED_PER_GRANT`] rotated refresh tokens and
/// [`MAX_ACCESS_TOKENS_PER_GRANT`] access tokens per grant (the memory and
/// SQL stores do; the contract suite checks it by presenting tokens beyond
/// the caps, which must read as absent). Whatever a store forgets, the
/// grace contract above still holds for what it remembers.
/// - A rotated refresh token is not kept whole: the store keeps a
///   tombstone (its hash, grant, issue and expiry times, and its
///   [`crate::grant::RotationMark`] while one is recorded) and, when it is
///   presented again, answers [`GrantStore::refresh_token`] and
///   [`GrantStore::rotate_refresh_token`] with a record rebuilt from the
///   tombstone and the grant's current token (rotation never changes a
///   token's grant, scopes or resources), with `rotated = true` and the
///   tombstone's mark as `rotation`: within the grace the answer is
///   `WithinGrace` exactly as for a whole record, after it
///   `AlreadyRotated`, so the driver detects the reuse and revokes the
///   grant. A tombstone whose grant has no current token left (it expired
///   and was purged) may read as absent.
/// - Rotated tokens beyond the newest [`MAX_ROTATED_PER_GRANT`] of a
///   grant, and any past its `expires_at`, are forgotten; a forgotten
///   token reads as absent (`invalid_grant` without revoking the grant: it
///   never yields tokens either way, even within the grace).
/// - A grant's access-token records are dropped once expired (when the
///   grant gets a new one, and by purging), and its oldest beyond
///   [`MAX_ACCESS_TOKENS_PER_GRANT`]; a dropped one reads as absent
///   (inactive).
/// - [`GrantStore::purge_expired`] reclaims expired tombstones too.
///
/// # Inserts never replace
/// `insert_code`, `insert_refresh_token` and `insert_access_token` are
/// insert-if-absent: a hash that is already stored (a consumed code, a
/// revoked access token, a rotated refresh token's tombstone) keeps its
/// record, so a second insert can never un-consume, un-revoke or revive
/// anything.
///
/// # Rotation marks past the grace
/// A mark lets whoever holds the old token re-derive its successor, so it
/// is needed only within [`crate::project::MAX_REFRESH_REUSE_GRACE`] of
/// the rotation. [`GrantStore::purge_expired`] clears the mark
/// (`rotation = None`, keeping `rotated = true`) of every token rotated
/// longer ago than that (a tombstone's too), so that a copy of the store
/// and an old refresh token cannot derive later tokens; a presentation of
/// such a token is `AlreadyRotated` (reuse). The memory and SQL stores
/// do.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new authorization code.
    async fn insert_code(&self, record: CodeRecord) -> Result<(), StoreError>;

    /// Reads a code without consuming it.
    async fn code(&self, project: &ProjectId, hash: &SecretHash) -> Result<Option<CodeRecord>, StoreError>;

    /// Consumes a code, atomically, if it is not consumed, its grant is
    /// not revoked and it is still valid at `now` (`now < expires_at`):
    /// `Consumed`. Consumed before, or its grant revoked:
    /// `AlreadyConsumed`. Unknown, other project's, or expired at `now`
    /// (and not consumed): `NotFound`, and nothing changes.
    ///
    /// `now` is the caller's time of the consume, read after any slow
    /// work (signing, minting), so a code that expired meanwhile is not
    /// redeemed.
    async fn consume_code(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<CodeConsumption, StoreError>;

    /// Stores a refresh token (dropped if its grant is revoked; on
    /// PostgreSQL under READ COMMITTED, one racing the revocation may be
    /// stored and then hidden: every read filters revoked grants).
    async fn insert_refresh_token(&self, record: RefreshTokenRecord) -> Result<(), StoreError>;

    /// Reads a refresh token (absent if its grant is revoked).
    async fn refresh_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// Marks `old` rotated, records `mark` on it (`rotation`) and stores
    /// `new`, atomically, if `old` exists, is not yet rotated, and its grant
    /// is not revoked and `old` is still valid at `mark.at` (`mark.at <
    /// expires_at`): `Rotated`. If `old` was already rotated: `WithinGrace`
    /// when [`RefreshTokenRecord::within_reuse_grace`]`(mark.at, grace)`
    /// holds for the stored record, else `AlreadyRotated`; either way
    /// nothing changes. Unknown, other project's, revoked grant, or (not
    /// rotated and) expired at `mark.at`: `NotFound`. `mark.at` is the
    /// caller's time of the rotation, read after any slow work (signing,
    /// minting), so a token that expired meanwhile is not rotated. `mark.successor` is `new.hash`; `grace` is zero when
    /// the project allows no reuse.
    async fn rotate_refresh_token(
        &self,
        project: &ProjectId,
        old: &SecretHash,
        new: RefreshTokenRecord,
        mark: crate::grant::RotationMark,
        grace: time::Duration,
    ) -> Result<RefreshRotation, StoreError>;

    /// Stores an access token (dropped if its grant is revoked; one racing
    /// the revocation may instead be hidden, as for
    /// [`GrantStore::insert_refresh_token`]).
    async fn insert_access_token(&self, record: AccessTokenRecord) -> Result<(), StoreError>;

    /// A code exchange's whole state change in one call:
    /// [`GrantStore::consume_code`], and only when that returns
    /// `Consumed`, [`GrantStore::insert_refresh_token`] of `refresh` (if
    /// any) and [`GrantStore::insert_access_token`] of `access`. Any other
    /// outcome stores nothing.
    ///
    /// The default composes those calls, so every store has it; a database
    /// store should override it with one statement or one transaction (the
    /// SQL stores do), which also makes the consume and the inserts commit
    /// together.
    ///
    /// # Security
    /// Exactly as for [`GrantStore::consume_code`] (`now` included: a
    /// code expired at `now` is `NotFound`): of any number of concurrent
    /// calls for one code, exactly one returns `Consumed`, and only that
    /// call's tokens are stored. The inserts keep their own
    /// rules (insert-if-absent; dropped, or hidden from every read when
    /// racing the revocation, when the grant is revoked).
    async fn consume_code_issuing(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
        now: OffsetDateTime,
        refresh: Option<RefreshTokenRecord>,
        access: AccessTokenRecord,
    ) -> Result<CodeConsumption, StoreError> {
        // The tokens must be of the code's grant (a code's grant never
        // changes, so reading it first is enough).
        if self
            .code(project, hash)
            .await?
            .is_some_and(|c| c.grant.id != access.grant_id)
        {
            return Err(StoreError::new("issued tokens are not of the code's grant"));
        }
        let outcome = self.consume_code(project, hash, now).await?;
        if matches!(outcome, CodeConsumption::Consumed(_)) {
            if let Some(refresh) = refresh {
                self.insert_refresh_token(refresh).await?;
            }
            self.insert_access_token(access).await?;
        }
        Ok(outcome)
    }

    /// A refresh's whole state change in one call:
    /// [`GrantStore::rotate_refresh_token`], and only when that returns
    /// `Rotated`, [`GrantStore::insert_access_token`] of `access`. Any
    /// other outcome stores nothing.
    ///
    /// The default composes those calls; a database store should override
    /// it with one statement or one transaction (the SQL stores do).
    ///
    /// # Security
    /// Exactly as for [`GrantStore::rotate_refresh_token`]: of any number
    /// of concurrent calls for one old token, exactly one returns
    /// `Rotated`, and only that call's `new` and `access` are stored
    /// (dropped, or hidden from every read when racing a revocation, when
    /// the grant is revoked).
    async fn rotate_refresh_token_issuing(
        &self,
        project: &ProjectId,
        old: &SecretHash,
        new: RefreshTokenRecord,
        mark: crate::grant::RotationMark,
        grace: time::Duration,
        access: AccessTokenRecord,
    ) -> Result<RefreshRotation, StoreError> {
        // The tokens must be of the old token's grant (rotation never
        // changes a token's grant, so reading it first is enough).
        let foreign = |g: &GrantId| g != &new.grant.id || g != &access.grant_id;
        if self
            .refresh_token(project, old)
            .await?
            .is_some_and(|r| foreign(&r.grant.id))
        {
            return Err(StoreError::new("issued tokens are not of the refresh token's grant"));
        }
        let outcome = self.rotate_refresh_token(project, old, new, mark, grace).await?;
        if matches!(outcome, RefreshRotation::Rotated(_)) {
            self.insert_access_token(access).await?;
        }
        Ok(outcome)
    }

    /// Reads an access token (absent if its grant is revoked).
    async fn access_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError>;

    /// Revokes one access token; returns whether it existed.
    async fn revoke_access_token(&self, project: &ProjectId, hash: &SecretHash) -> Result<bool, StoreError>;

    /// Revokes a grant: every code and token of it, now and later, and its
    /// summary.
    async fn revoke_grant(&self, project: &ProjectId, grant: &GrantId, now: OffsetDateTime) -> Result<(), StoreError>;

    /// One page of a user's grants whose summaries are alive at `now`
    /// (`expires_at > now`) and not revoked, by `granted_at`, then grant
    /// id (the cursor of a grant is `(granted_at, id)`). Fetch
    /// `page.limit() + 1` rows and build the result with
    /// [`PageRequest::page`].
    async fn grants_of_subject(
        &self,
        project: &ProjectId,
        subject: &Subject,
        page: &PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<GrantSummary>, StoreError>;

    /// Revokes up to `limit` grants that `selector` selects among the
    /// project's summaries (expired ones included), each exactly as
    /// [`GrantStore::revoke_grant`] does, all in one atomic step (one
    /// transaction, or every lock); returns their summaries (empty: none
    /// left). The caller repeats until fewer than `limit` come back.
    async fn revoke_grants(
        &self,
        project: &ProjectId,
        selector: &GrantSelector,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantSummary>, StoreError>;

    /// Deletes expired codes and tokens and stale revocation markers, and
    /// clears rotation marks older than
    /// [`crate::project::MAX_REFRESH_REUSE_GRACE`] (see "Rotation marks
    /// past the grace" above); returns how many records were removed.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
}

/// How long past its `expires_at` a grant summary is kept before
/// [`GrantStore::purge_expired`] may delete it (it is no longer listed
/// meanwhile): covers a code exchanged in its last second.
pub const GRANT_SUMMARY_GRACE: time::Duration = time::Duration::hours(1);

/// Turns access-token claims into the token string a client presents.
///
/// The driver stores the claims under the hash of the returned string, so
/// introspection and revocation work whatever the format. The default,
/// [`OpaqueTokenIssuer`], makes random opaque tokens; a host may sign JWTs
/// ([RFC 9068]) instead.
///
/// [RFC 9068]: https://www.rfc-editor.org/rfc/rfc9068
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

/// An audit log that can be read back: the admin API's audit listing.
///
/// # Security
/// Pages are scoped by project: an event of one project must never be
/// returned for another.
#[async_trait]
pub trait AuditLog: AuditSink {
    /// One page of a project's events, newest first.
    ///
    /// # Errors
    /// [`StoreError`] when storage fails.
    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// The project's rejection counts per minute, event name and reason
    /// (rejections anyone can cause are counted, not only listed, so a
    /// flood of them is seen as a number and cannot bury anything), oldest
    /// minute first: at least the last day's, at most the newest 10,000
    /// counters. Counting must be exact across processes sharing the store
    /// (an atomic increment). A store may count in memory and write the
    /// counters in batches, so that junk requests are not a database write
    /// each: this process's pending counts are written before it answers,
    /// another process's within its flush interval (the SQL stores: at
    /// most `sql::REJECTION_FLUSH_INTERVAL`, a second, with the `sqlite` or
    /// `postgres` feature).
    ///
    /// # Errors
    /// [`StoreError`] when storage fails.
    async fn rejection_counts(&self, project: &ProjectId) -> Result<Vec<RejectionCount>, StoreError>;
}

/// How many rejections of one kind (an [`crate::audit::AuditClass::Rejection`]
/// event) arrived in one minute, for one project.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RejectionCount {
    /// The minute (its start).
    #[serde(with = "time::serde::rfc3339")]
    pub minute: OffsetDateTime,
    /// The event name (e.g. `oauth_client.registration_rejected`).
    pub event: String,
    /// The reason ([`crate::audit::AuditKind::rejection_reason`], at most
    /// [`MAX_REJECTION_REASON`] characters); for a failed authentication
    /// of a registered client (`wrong_secret`, `secret_expired`,
    /// `invalid_assertion`, a refused assertion), followed by ` client=`
    /// and the client id (at most [`MAX_REJECTION_CLIENT`] characters),
    /// e.g. `wrong_secret client=client_0123`: such failures are counted
    /// and sampled per client, for the first
    /// [`MAX_REJECTION_CLIENTS_PER_MINUTE`] clients of a project's minute;
    /// the further ones are counted together as `client=*`.
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// Characters of a rejection reason kept in its counter.
pub const MAX_REJECTION_REASON: usize = 64;

/// Characters of a client id kept whole in a rejection counter's reason
/// (see [`RejectionCount::reason`]); a longer id is kept as its first 200
/// characters, `~` and 16 hex digits of its SHA-256 (217 characters).
pub const MAX_REJECTION_CLIENT: usize = 256;

/// The counter a rejection event adds one to: its minute (unix minutes),
/// name and reason; `None` for events of other classes.
///
/// Failed client authentications of a registered client (credential
/// guessing: [`crate::audit::AuditKind::guessed_client`]) are counted and
/// sampled per client: the reason is followed by ` client=` and the client
/// id, so decoy failures against one client cannot use up the samples of
/// the minute and hide which client is being attacked.
pub(crate) fn rejection_key(event: &AuditEvent) -> Option<(i64, &'static str, String)> {
    if event.kind.class() != crate::audit::AuditClass::Rejection {
        return None;
    }
    let reason = event.kind.rejection_reason().unwrap_or_default();
    let mut reason: String = reason.chars().take(MAX_REJECTION_REASON).collect();
    if let Some(client) = event.kind.guessed_client() {
        reason.push_str(" client=");
        push_rejection_client(&mut reason, client);
    }
    Some((event.at.unix_timestamp().div_euclid(60), event.name(), reason))
}

/// Appends `client` whole when it has at most [`MAX_REJECTION_CLIENT`]
/// characters, else its first 200, `~` and 16 hex digits of the SHA-256
/// of the whole id, so long ids sharing a prefix stay apart.
fn push_rejection_client(reason: &mut String, client: &str) {
    if client.chars().nth(MAX_REJECTION_CLIENT).is_none() {
        reason.push_str(client);
        return;
    }
    use sha2::Digest as _;
    reason.extend(client.chars().take(MAX_REJECTION_CLIENT_PREFIX));
    reason.push('~');
    let digest = sha2::Sha256::digest(client.as_bytes());
    for byte in digest.iter().take(8) {
        reason.push_str(&format!("{byte:02x}"));
    }
}

/// Characters of a long client id kept before its hash.
const MAX_REJECTION_CLIENT_PREFIX: usize = 200;

/// Distinct clients counted apart per project and minute; the rejections
/// of further clients are counted together, as client `*`
/// ([`RejectionCount::reason`]).
pub const MAX_REJECTION_CLIENTS_PER_MINUTE: usize = 64;

/// Which clients get a rejection counter of their own: the first
/// [`MAX_REJECTION_CLIENTS_PER_MINUTE`] per project and minute; the others
/// share the counter `... client=*`, so minting decoy clients (CIMD client
/// ids are free) cannot grow the counters without bound, nor crowd out
/// the counts of the rest.
#[derive(Debug, Default)]
pub(crate) struct RejectionClients {
    /// (project, minute) -> hashes of the clients counted apart.
    seen: std::collections::HashMap<(String, i64), std::collections::HashSet<u64>>,
    latest: i64,
    hasher: std::hash::RandomState,
}

/// Project-minutes [`RejectionClients`] tracks at most.
const MAX_REJECTION_CLIENT_MINUTES: usize = 1024;

impl RejectionClients {
    const MARK: &'static str = " client=";

    /// The reason a rejection is counted under: `reason` itself, or its
    /// client replaced by `*` once the project's minute has its share of
    /// clients.
    pub(crate) fn admit(&mut self, project: &str, minute: i64, reason: String) -> String {
        let Some(at) = reason.find(Self::MARK) else {
            return reason;
        };
        let client = &reason[at + Self::MARK.len()..];
        if client == "*" {
            return reason;
        }
        if minute > self.latest {
            self.latest = minute;
            // Minutes well past are done with.
            self.seen.retain(|(_, m), _| *m >= minute - 2);
        }
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, client);
        let key = (project.to_owned(), minute);
        let room = self.seen.len() < MAX_REJECTION_CLIENT_MINUTES && minute >= self.latest - 2;
        let admitted = match self.seen.get_mut(&key) {
            Some(clients) => {
                clients.contains(&hash) || (clients.len() < MAX_REJECTION_CLIENTS_PER_MINUTE && clients.insert(hash))
            }
            None if room => {
                self.seen.insert(key, std::iter::once(hash).collect());
                true
            }
            None => false,
        };
        if admitted { reason } else { Self::shared(&reason) }
    }

    /// Whether `reason` names one client (not the shared `*`).
    pub(crate) fn names_client(reason: &str) -> bool {
        reason
            .find(Self::MARK)
            .is_some_and(|at| &reason[at + Self::MARK.len()..] != "*")
    }

    /// `reason` with its client replaced by `*`.
    pub(crate) fn shared(reason: &str) -> String {
        match reason.find(Self::MARK) {
            Some(at) => format!("{}{}*", &reason[..at], Self::MARK),
            None => reason.to_owned(),
        }
    }
}

/// Rejections not counted (too many counters held), counted, and logged at
/// most once a minute (`tracing` WARN, target `authio_mcp::audit`) and
/// reported as the metric `authio_audit_rejections_dropped_total`.
#[derive(Debug, Default)]
pub(crate) struct RejectionDrops {
    count: std::sync::atomic::AtomicU64,
    /// The unix minute (+ 1) of the last warning.
    warned: std::sync::atomic::AtomicI64,
}

impl RejectionDrops {
    /// Counts one dropped rejection of `minute`; `sink` names the counter
    /// (`sql`, `memory`, `jsonl`).
    pub(crate) fn add(&self, minute: i64, sink: &'static str) {
        use std::sync::atomic::Ordering;
        let total = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::rejection_dropped(sink);
        let last = self.warned.load(Ordering::Relaxed);
        if minute + 1 > last
            && self
                .warned
                .compare_exchange(last, minute + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                target: "authio_mcp::audit",
                sink,
                dropped = total,
                "too many rejection counters: rejections are dropped uncounted"
            );
        }
    }

    /// Rejections dropped so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Which audit events [`AuditLog::query`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// The project.
    pub project: ProjectId,
    /// Only events with this dotted name (e.g. `token.issued`).
    pub event: Option<String>,
    /// Only events at or after this time (whole seconds).
    pub since: Option<OffsetDateTime>,
    /// Only events before this time (whole seconds).
    pub until: Option<OffsetDateTime>,
    /// Page size (clamped to 1..=1000).
    pub limit: usize,
    /// Continue after this cursor (from the previous page's `next`).
    pub before: Option<AuditCursor>,
}

impl AuditQuery {
    /// The newest 100 events of a project.
    pub const fn new(project: ProjectId) -> Self {
        Self {
            project,
            event: None,
            since: None,
            until: None,
            limit: 100,
            before: None,
        }
    }

    /// Only events named `event`.
    #[must_use]
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Only events in `[since, until)`.
    #[must_use]
    pub const fn between(mut self, since: Option<OffsetDateTime>, until: Option<OffsetDateTime>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// The page size.
    #[must_use]
    pub const fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page after `cursor`.
    #[must_use]
    pub const fn before(mut self, cursor: Option<AuditCursor>) -> Self {
        self.before = cursor;
        self
    }

    pub(crate) fn matches(&self, seq: u64, event: &AuditEvent) -> bool {
        let at = event.at.unix_timestamp();
        event.project_id == self.project
            && self.event.as_deref().is_none_or(|n| n == event.name())
            && self.since.is_none_or(|s| at >= s.unix_timestamp())
            && self.until.is_none_or(|u| at < u.unix_timestamp())
            && self.before.is_none_or(|c| seq < c.0)
    }
}

/// Where the next page of an audit listing starts: an opaque position,
/// carried through the admin API as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditCursor(pub(crate) u64);

impl AuditCursor {
    /// A cursor from the number [`AuditCursor::get`] gave.
    pub const fn new(position: u64) -> Self {
        Self(position)
    }

    /// The number to hand to a client.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// One page of [`AuditLog::query`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditPage {
    /// The events, newest first.
    pub events: Vec<AuditEvent>,
    /// The cursor of the next (older) page, if there is one.
    pub next: Option<AuditCursor>,
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

/// Initial access tokens ([RFC 7591 section 3]), per project, keyed by the
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
///
/// [RFC 7591 section 3]: https://www.rfc-editor.org/rfc/rfc7591#section-3
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

/// Signing keys per project (see [`crate::keys`]).
///
/// # Security
/// - Private keys are secrets: a store that persists them must persist
///   [`crate::jose::PrivateKey::expose_der`] encrypted at rest (sealed with
///   a [`KeyEncryption`] such as [`Aes256GcmKeyEncryption`], bound to the
///   project and key id), unless the host explicitly opted out with a
///   `danger_*` setting; never log it; return keys only to the driver. A
///   stored record that fails to open is an error, never a key. The SQL
///   stores refuse to store or read keys until the host chose
///   (`SqlOptions::key_encryption` or `SqlOptions::danger_plaintext_keys`).
/// - Keys are scoped by project: one project's key must never be returned
///   for, or sign for, another.
/// - [`KeyStore::activate`] must be atomic (one lock, or one transaction
///   that locks the project's keys of that algorithm): the named key must
///   still be `next`; every `active` key of the same algorithm becomes
///   `retired` with `retired_at = now` and the given `publish_until`;
///   every other `next` key of that algorithm (a duplicate created by a
///   concurrent rotation; it never signed anything) becomes `retired` with
///   `retired_at = publish_until = now`; and the named key becomes
///   `active` with `activated_at = now`, all or nothing. Two servers rotating at once then leave exactly one active
///   key per algorithm, and no signing key ever disappears from the JWKS
///   while tokens it signed are valid.
/// - [`KeyStore::delete_expired`] deletes only `retired` keys whose
///   `publish_until` is at or before `now`; never a next or active key.
/// - A storage failure is an error, never an empty key list (an empty list
///   makes the driver create a key).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key of a project, in any state.
    async fn keys(&self, project: &ProjectId) -> Result<Vec<crate::keys::SigningKey>, StoreError>;

    /// Stores a new key. Returns `false` (and stores nothing) when its
    /// `kid` is taken in the project.
    async fn insert(&self, key: crate::keys::SigningKey) -> Result<bool, StoreError>;

    /// Activates a `next` key, atomically retiring the active key(s) of its
    /// algorithm (see the trait's `# Security`). Returns `false` and
    /// changes nothing when the key is missing or not `next`.
    async fn activate(
        &self,
        project: &ProjectId,
        kid: &crate::keys::KeyId,
        now: OffsetDateTime,
        retired_publish_until: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Retires an `active` key (its algorithm is no longer used):
    /// `retired_at = now`, `publish_until` as given. Returns `false` and
    /// changes nothing when the key is missing or not active.
    async fn retire(
        &self,
        project: &ProjectId,
        kid: &crate::keys::KeyId,
        now: OffsetDateTime,
        publish_until: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes the project's retired keys whose `publish_until` is at or
    /// before `now`; returns how many.
    async fn delete_expired(&self, project: &ProjectId, now: OffsetDateTime) -> Result<usize, StoreError>;

    /// Deletes one key of the project whatever its state (the emergency
    /// revocation of a compromised key: from now on it is neither
    /// published nor used). Returns whether it existed. The driver
    /// activates a replacement before it deletes an active key
    /// ([`crate::server::AuthorizationServer::revoke_signing_key`]).
    async fn delete(&self, project: &ProjectId, kid: &crate::keys::KeyId) -> Result<bool, StoreError>;
}

/// The claims about a user that the host releases in ID tokens and at the
/// userinfo endpoint (OpenID Connect Core section 5.1). The driver filters
/// them by the granted scopes ([`crate::claims::UserClaims::filtered`]).
///
/// # Security
/// Return only claims about `subject` in `project`; an error is answered
/// `server_error` (no ID token is issued without the claims the scopes
/// promise).
#[async_trait]
pub trait UserClaimsSource: Send + Sync {
    /// The claims of a user.
    async fn claims(
        &self,
        project: &ProjectId,
        subject: &crate::grant::Subject,
    ) -> Result<crate::claims::UserClaims, StoreError>;
}

/// No user claims: ID tokens and userinfo carry `sub` only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUserClaims;

#[async_trait]
impl UserClaimsSource for NoUserClaims {
    async fn claims(
        &self,
        _project: &ProjectId,
        _subject: &crate::grant::Subject,
    ) -> Result<crate::claims::UserClaims, StoreError> {
        Ok(crate::claims::UserClaims::default())
    }
}

/// Fixed-window admission counters: how many registrations without an
/// initial access token a source, its network and a project have made in
/// the current window (see [`crate::tokenless`]). Shared by every server
/// instance on one store, so the limits hold for the deployment, not per
/// process.
///
/// # Security
/// - [`AdmissionStore::admit`] is all or nothing and atomic: it counts one
///   admission in every named window only when each has room, and of any
///   number of concurrent calls (also from servers sharing the store) no
///   more than a window's `max` ever succeed within it. With SQL: one
///   transaction of conditional upserts (`INSERT ... ON CONFLICT DO UPDATE
///   SET count = count + 1 ... WHERE <window over> OR count < max`), in
///   the order given; when one affects no row, roll back.
/// - A window starts at the first admission after the previous one ended
///   (`now >= started_at + length`) and then counts from one; an
///   admission whose `now` is before the window's start (a race between
///   requests, or another instance's clock) counts in the window, never
///   restarts it.
/// - Keys are scoped by project.
/// - A storage failure is an error, never an admission.
#[async_trait]
pub trait AdmissionStore: Send + Sync {
    /// Counts one admission at `now` in each window `(key, max)` of
    /// `windows` (each `length` long) if every one has room; returns
    /// whether it did.
    async fn admit(
        &self,
        project: &ProjectId,
        windows: &[(String, u32)],
        length: time::Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Forgets windows that ended by `now`; returns how many.
    async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
}

/// Single-use identifiers with an expiry: the `jti` of client assertions
/// ([RFC 7523 section 3], item 7).
///
/// # Security
/// - [`ReplayStore::check_and_insert`] must be atomic insert-if-absent
///   (one lock, `INSERT ... ON CONFLICT DO NOTHING` and reading the row
///   count, or a unique key): of any number of concurrent calls for one
///   key, exactly one returns [`ReplayCheck::Fresh`], also across servers
///   sharing the store.
/// - An entry must be kept at least until its `expires_at`; a key whose
///   entry expired may be inserted again (the assertion itself has expired
///   by then, so it cannot be replayed).
/// - Keys are scoped by project and `scope` (the client id): the same
///   `jti` of two clients does not collide.
/// - **Quota per scope.** A (project, scope) pair holds at most `quota`
///   unexpired entries. A call that would exceed it records nothing and
///   answers [`ReplayCheck::QuotaExceeded`]; the check and the insert are
///   one atomic step (the same lock or transaction), so concurrent calls,
///   also from several servers, never leave more than `quota` live
///   entries in one scope. A full quota refuses only that scope: every
///   other client, of this project or another, is unaffected. This is
///   what keeps one client (which can mint fresh `jti`s as fast as it can
///   sign) from filling the store for everyone.
/// - **A global bound** may sit behind the quotas (the in-memory store has
///   one, to bound its memory): when it is reached the call records
///   nothing and answers [`ReplayCheck::Full`]. Never evict a live entry
///   to make room: a forgotten `jti` is a replay that succeeds.
/// - A live entry is reported as [`ReplayCheck::Replayed`] whatever the
///   quota or the bound say.
/// - A storage failure is an error, never [`ReplayCheck::Fresh`].
///
/// [RFC 7523 section 3]: https://www.rfc-editor.org/rfc/rfc7523#section-3
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `id` for `scope` until `expires_at`, if it is not recorded
    /// (or only expired entries are) and the scope holds fewer than `quota`
    /// unexpired entries at `now`. See the trait's `# Security` for the
    /// outcomes.
    async fn check_and_insert(
        &self,
        project: &ProjectId,
        scope: &str,
        id: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
        quota: u32,
    ) -> Result<ReplayCheck, StoreError>;

    /// Deletes entries expired at `now`; returns how many.
    async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
}

/// What [`ReplayStore::check_and_insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayCheck {
    /// First use: recorded until its expiry. The only answer that lets
    /// the assertion through.
    Fresh,
    /// A live entry exists: a replay. Nothing changed.
    Replayed,
    /// The scope already holds its quota of live entries; nothing was
    /// recorded. Only this scope (client) is refused.
    QuotaExceeded,
    /// The store as a whole is at its bound; nothing was recorded.
    Full,
}

impl ReplayCheck {
    /// Whether the id was recorded now (first use).
    pub const fn is_fresh(self) -> bool {
        matches!(self, Self::Fresh)
    }

    /// A short stable name (`fresh`, `replayed`, `quota_exceeded`,
    /// `full`), for logs and audit reasons.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Replayed => "replayed",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Full => "full",
        }
    }
}

#[cfg(test)]
mod rejection_key_tests {
    use time::macros::datetime;

    use super::*;
    use crate::audit::AuditKind;

    fn wrong_secret(client: &str) -> AuditEvent {
        AuditEvent::new(
            ProjectId::new("proj_a").unwrap(),
            datetime!(2026-11-26 12:00 UTC),
            AuditKind::TokenRejected {
                client_id: Some(client.into()),
                grant_type: None,
                error: "invalid_client".into(),
                reason: "wrong_secret".into(),
                client_authenticated: false,
            },
        )
    }

    #[test]
    fn long_client_ids_sharing_a_prefix_get_counters_of_their_own() {
        let prefix = "https://a.example/".to_owned() + &"x".repeat(300);
        let (_, _, a) = rejection_key(&wrong_secret(&format!("{prefix}/a"))).unwrap();
        let (_, _, b) = rejection_key(&wrong_secret(&format!("{prefix}/b"))).unwrap();
        assert_ne!(a, b);
        let client = a.strip_prefix("wrong_secret client=").unwrap();
        assert_eq!(client.chars().count(), MAX_REJECTION_CLIENT_PREFIX + 1 + 16);
        assert!(client.starts_with(&prefix[..MAX_REJECTION_CLIENT_PREFIX]));
        // Short ids are kept whole.
        let (_, _, short) = rejection_key(&wrong_secret("client_0123")).unwrap();
        assert_eq!(short, "wrong_secret client=client_0123");
        let exact = "y".repeat(MAX_REJECTION_CLIENT);
        let (_, _, exact_reason) = rejection_key(&wrong_secret(&exact)).unwrap();
        assert_eq!(exact_reason, format!("wrong_secret client={exact}"));
    }

    #[test]
    fn a_projects_minute_counts_its_first_clients_apart() {
        let mut clients = RejectionClients::default();
        for i in 0..MAX_REJECTION_CLIENTS_PER_MINUTE {
            let reason = format!("wrong_secret client=c{i}");
            assert_eq!(clients.admit("p", 10, reason.clone()), reason);
        }
        assert_eq!(
            clients.admit("p", 10, "wrong_secret client=late".into()),
            "wrong_secret client=*"
        );
        // Known clients stay apart; other projects and minutes have their own share.
        assert_eq!(
            clients.admit("p", 10, "wrong_secret client=c0".into()),
            "wrong_secret client=c0"
        );
        assert_eq!(
            clients.admit("q", 10, "wrong_secret client=late".into()),
            "wrong_secret client=late"
        );
        assert_eq!(
            clients.admit("p", 11, "wrong_secret client=late".into()),
            "wrong_secret client=late"
        );
        assert_eq!(clients.admit("p", 11, "invalid_code".into()), "invalid_code");
    }
}
