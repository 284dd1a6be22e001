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

/// A bounded in-memory [`super::CimdCache`]: keeps at most `capacity`
/// entries and evicts the least recently used one when full.
#[derive(Debug)]
pub struct MemoryCimdCache {
    inner: Mutex<CimdLru>,
}

type CimdKey = (ProjectId, crate::cimd::ClientIdUrl);

#[derive(Debug)]
struct CimdLru {
    capacity: usize,
    tick: u64,
    entries: HashMap<CimdKey, (crate::cimd::CachedDocument, u64)>,
    by_use: std::collections::BTreeMap<u64, CimdKey>,
}

impl CimdLru {
    fn touch(&mut self, key: &CimdKey) {
        self.tick = self.tick.wrapping_add(1);
        let tick = self.tick;
        if let Some((_, used)) = self.entries.get_mut(key) {
            self.by_use.remove(used);
            *used = tick;
            self.by_use.insert(tick, key.clone());
        }
    }
}

impl Default for MemoryCimdCache {
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl MemoryCimdCache {
    /// A cache of 1024 entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache of `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(CimdLru {
                capacity: capacity.max(1),
                tick: 0,
                entries: HashMap::new(),
                by_use: std::collections::BTreeMap::new(),
            }),
        }
    }

    /// The number of entries held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        lock(&self.inner).map(|c| c.entries.len()).unwrap_or(0)
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry.
    pub fn clear(&self) {
        if let Ok(mut c) = lock(&self.inner) {
            c.entries.clear();
            c.by_use.clear();
        }
    }
}

#[async_trait]
impl super::CimdCache for MemoryCimdCache {
    async fn get(
        &self,
        project: &ProjectId,
        url: &crate::cimd::ClientIdUrl,
    ) -> Result<Option<crate::cimd::CachedDocument>, StoreError> {
        let mut c = lock(&self.inner)?;
        let key = (project.clone(), url.clone());
        let found = c.entries.get(&key).map(|(e, _)| e.clone());
        if found.is_some() {
            c.touch(&key);
        }
        Ok(found)
    }

    async fn put(
        &self,
        project: &ProjectId,
        url: &crate::cimd::ClientIdUrl,
        entry: crate::cimd::CachedDocument,
    ) -> Result<(), StoreError> {
        let mut c = lock(&self.inner)?;
        let key = (project.clone(), url.clone());
        if let Some((_, used)) = c.entries.remove(&key) {
            c.by_use.remove(&used);
        }
        while c.entries.len() >= c.capacity {
            let Some((_, oldest)) = c.by_use.pop_first() else {
                break;
            };
            c.entries.remove(&oldest);
        }
        c.tick = c.tick.wrapping_add(1);
        let tick = c.tick;
        c.by_use.insert(tick, key.clone());
        c.entries.insert(key, (entry, tick));
        Ok(())
    }

    async fn remove(&self, project: &ProjectId, url: &crate::cimd::ClientIdUrl) -> Result<(), StoreError> {
        let mut c = lock(&self.inner)?;
        if let Some((_, used)) = c.entries.remove(&(project.clone(), url.clone())) {
            c.by_use.remove(&used);
        }
        Ok(())
    }
}

#[cfg(test)]
mod cimd_cache_tests {
    use super::*;
    use crate::cimd::{CachedDocument, ClientIdUrl};
    use crate::client::{ClientMetadata, MetadataProfile};
    use crate::redirect_uri::RedirectUriPolicy;
    use crate::store::CimdCache;
    use time::macros::datetime;

    fn entry(url: &ClientIdUrl) -> CachedDocument {
        let doc: ClientMetadata = serde_json::from_value(serde_json::json!({
            "client_id": url.as_str(), "client_name": "A", "redirect_uris": ["https://a.example/cb"]
        }))
        .unwrap();
        let m = doc
            .validate(
                MetadataProfile::Cimd {
                    allow_private_key_jwt: false,
                },
                RedirectUriPolicy::strict(),
            )
            .unwrap();
        let at = datetime!(2026-11-26 12:00 UTC);
        let client = Client::new(ClientId::Metadata(url.clone()), m, at);
        CachedDocument::new(doc, client, at, at + time::Duration::minutes(5))
    }

    #[tokio::test]
    async fn bounded_lru_scoped_by_project() {
        let cache = MemoryCimdCache::with_capacity(2);
        let p = ProjectId::new("p1").unwrap();
        let q = ProjectId::new("p2").unwrap();
        let a = ClientIdUrl::parse("https://a.example/c").unwrap();
        let b = ClientIdUrl::parse("https://b.example/c").unwrap();
        let c = ClientIdUrl::parse("https://c.example/c").unwrap();
        cache.put(&p, &a, entry(&a)).await.unwrap();
        cache.put(&p, &b, entry(&b)).await.unwrap();
        assert!(cache.get(&q, &a).await.unwrap().is_none(), "scoped by project");
        // use a, so b is the least recently used
        assert!(cache.get(&p, &a).await.unwrap().is_some());
        cache.put(&p, &c, entry(&c)).await.unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&p, &b).await.unwrap().is_none());
        assert!(cache.get(&p, &a).await.unwrap().is_some());
        assert!(cache.get(&p, &c).await.unwrap().is_some());
        // replacing does not grow
        cache.put(&p, &c, entry(&c)).await.unwrap();
        assert_eq!(cache.len(), 2);
        cache.remove(&p, &c).await.unwrap();
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.is_empty());
    }
}
