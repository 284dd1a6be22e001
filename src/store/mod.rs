//! The storage traits the host implements, and their contracts.
//!
//! All traits take `&self` and are `Send + Sync`: one instance serves every
//! request. Implementations must never turn a storage failure into a
//! success; return [`StoreError`] and the driver answers `server_error`.
//! In-memory implementations live in [`memory`].

pub mod memory;

use std::fmt;

use async_trait::async_trait;

use crate::audit::AuditEvent;
use crate::client::{Client, RegisteredClientId};
use crate::project::{ProjectId, ProjectSettings};

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

/// Where audit events go.
///
/// Recording is infallible from the driver's point of view: a sink that can
/// fail must buffer or log the failure itself. Events never carry secrets.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Records one event.
    async fn record(&self, event: AuditEvent);
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
