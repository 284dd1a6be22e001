//! In-memory implementations of the storage traits: the embedded default,
//! and what tests and the example server use.
//!
//! They are correct under concurrency (every compound operation happens
//! under one lock) but not shared between processes: a deployment with
//! several instances needs a shared store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, RwLock};

use async_trait::async_trait;

use super::{AuditSink, ClientStore, ProjectStore, StoreError};
use crate::audit::AuditEvent;
use crate::client::{Client, ClientId, RegisteredClientId};
use crate::project::{ProjectId, ProjectSettings};

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock().map_err(|_| StoreError::new("in-memory store lock poisoned"))
}

/// Projects in memory.
#[derive(Debug, Default)]
pub struct MemoryProjectStore {
    projects: RwLock<HashMap<ProjectId, ProjectSettings>>,
}

impl MemoryProjectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ProjectStore for MemoryProjectStore {
    async fn get(&self, id: &ProjectId) -> Result<Option<ProjectSettings>, StoreError> {
        let map = self.projects.read().map_err(|_| StoreError::new("lock poisoned"))?;
        Ok(map.get(id).cloned())
    }

    async fn put(&self, id: &ProjectId, settings: ProjectSettings) -> Result<(), StoreError> {
        let mut map = self.projects.write().map_err(|_| StoreError::new("lock poisoned"))?;
        map.insert(id.clone(), settings);
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        id: &ProjectId,
        current: &ProjectSettings,
        new: ProjectSettings,
    ) -> Result<bool, StoreError> {
        let mut map = self.projects.write().map_err(|_| StoreError::new("lock poisoned"))?;
        match map.get_mut(id) {
            Some(stored) if stored == current => {
                *stored = new;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Registered clients in memory.
#[derive(Debug, Default)]
pub struct MemoryClientStore {
    clients: RwLock<HashMap<(ProjectId, RegisteredClientId), Client>>,
}

impl MemoryClientStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ClientStore for MemoryClientStore {
    async fn get(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Option<Client>, StoreError> {
        let map = self.clients.read().map_err(|_| StoreError::new("lock poisoned"))?;
        Ok(map.get(&(project.clone(), id.clone())).cloned())
    }

    async fn insert(&self, project: &ProjectId, client: Client) -> Result<bool, StoreError> {
        let ClientId::Registered(id) = &client.client_id else {
            return Err(StoreError::new("only registered clients are stored"));
        };
        let mut map = self.clients.write().map_err(|_| StoreError::new("lock poisoned"))?;
        let key = (project.clone(), id.clone());
        if map.contains_key(&key) {
            return Ok(false);
        }
        map.insert(key, client);
        Ok(true)
    }

    async fn delete(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<bool, StoreError> {
        let mut map = self.clients.write().map_err(|_| StoreError::new("lock poisoned"))?;
        Ok(map.remove(&(project.clone(), id.clone())).is_some())
    }

    async fn count(&self, project: &ProjectId) -> Result<usize, StoreError> {
        let map = self.clients.read().map_err(|_| StoreError::new("lock poisoned"))?;
        Ok(map.keys().filter(|(p, _)| p == project).count())
    }
}

/// A bounded in-memory audit log: keeps the newest `capacity` events.
#[derive(Debug)]
pub struct MemoryAuditLog {
    events: Mutex<VecDeque<AuditEvent>>,
    capacity: usize,
}

impl Default for MemoryAuditLog {
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl MemoryAuditLog {
    /// A log keeping 10,000 events.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log keeping `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// The newest `limit` events of a project, oldest first.
    pub fn recent(&self, project: &ProjectId, limit: usize) -> Vec<AuditEvent> {
        let Ok(events) = lock(&self.events) else {
            return Vec::new();
        };
        let mut out: Vec<AuditEvent> = events
            .iter()
            .rev()
            .filter(|e| &e.project_id == project)
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Every event held, oldest first.
    pub fn all(&self) -> Vec<AuditEvent> {
        lock(&self.events)
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl AuditSink for MemoryAuditLog {
    async fn record(&self, event: AuditEvent) {
        if let Ok(mut events) = lock(&self.events) {
            if events.len() >= self.capacity {
                events.pop_front();
            }
            events.push_back(event);
        }
    }
}

/// Initial access tokens in memory, keyed by project and token hash. Every
/// operation runs under one lock, so [`super::IatStore::use_once`] counts exactly.
#[derive(Debug, Default)]
pub struct MemoryIatStore {
    records: Mutex<HashMap<(ProjectId, crate::secret::SecretHash), crate::dcr::IatRecord>>,
}

impl MemoryIatStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl super::IatStore for MemoryIatStore {
    async fn insert(&self, project: &ProjectId, record: crate::dcr::IatRecord) -> Result<bool, StoreError> {
        let mut map = lock(&self.records)?;
        let key = (project.clone(), record.hash);
        let id_taken = map.iter().any(|((p, _), r)| p == project && r.id == record.id);
        if id_taken || map.contains_key(&key) {
            return Ok(false);
        }
        map.insert(key, record);
        Ok(true)
    }

    async fn find(
        &self,
        project: &ProjectId,
        hash: &crate::secret::SecretHash,
    ) -> Result<Option<crate::dcr::IatRecord>, StoreError> {
        let map = lock(&self.records)?;
        Ok(map.get(&(project.clone(), *hash)).cloned())
    }

    async fn use_once(
        &self,
        project: &ProjectId,
        hash: &crate::secret::SecretHash,
        now: time::OffsetDateTime,
    ) -> Result<super::UseOutcome, StoreError> {
        let mut map = lock(&self.records)?;
        let Some(record) = map.get_mut(&(project.clone(), *hash)) else {
            return Ok(super::UseOutcome::Unknown);
        };
        Ok(match record.try_use(now) {
            Ok(()) => super::UseOutcome::Used(record.clone()),
            Err(e) => super::UseOutcome::Unusable(e),
        })
    }

    async fn list(&self, project: &ProjectId) -> Result<Vec<crate::dcr::IatRecord>, StoreError> {
        let map = lock(&self.records)?;
        Ok(map
            .iter()
            .filter(|((p, _), _)| p == project)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn revoke(
        &self,
        project: &ProjectId,
        id: &crate::dcr::IatId,
        now: time::OffsetDateTime,
    ) -> Result<super::RevokeOutcome, StoreError> {
        let mut map = lock(&self.records)?;
        let Some(record) = map
            .iter_mut()
            .find(|((p, _), r)| p == project && &r.id == id)
            .map(|(_, r)| r)
        else {
            return Ok(super::RevokeOutcome::Unknown);
        };
        if record.revoked_at.is_some() {
            return Ok(super::RevokeOutcome::AlreadyRevoked(record.clone()));
        }
        record.revoked_at = Some(now);
        Ok(super::RevokeOutcome::Revoked(record.clone()))
    }

    async fn purge(&self, now: time::OffsetDateTime) -> Result<usize, StoreError> {
        let mut map = lock(&self.records)?;
        let before = map.len();
        map.retain(|_, r| r.check(now).is_ok());
        Ok(before - map.len())
    }
}
