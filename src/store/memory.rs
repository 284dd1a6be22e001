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
