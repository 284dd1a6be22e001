//! In-memory implementations of the storage traits: the embedded default,
//! and what tests and the example server use.
//!
//! They are correct under concurrency (every compound operation happens
//! under one lock) but not shared between processes: a deployment with
//! several instances needs a shared store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, RwLock};

use async_trait::async_trait;

use time::OffsetDateTime;

use super::{AuditSink, ClientStore, CodeConsumption, GrantStore, ProjectStore, RefreshRotation, StoreError};
use crate::audit::AuditEvent;
use crate::client::{Client, ClientId, RegisteredClientId};
use crate::grant::{AccessTokenRecord, CodeRecord, GrantId, RefreshTokenRecord};
use crate::project::{ProjectId, ProjectSettings};
use crate::secret::SecretHash;

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

/// Codes, tokens and grant revocations in memory, under one lock so that
/// consumption, rotation and revocation are atomic with respect to each
/// other.
#[derive(Debug, Default)]
pub struct MemoryGrantStore {
    inner: Mutex<GrantMaps>,
}

type Key = (ProjectId, SecretHash);

#[derive(Debug, Default)]
struct GrantMaps {
    codes: HashMap<Key, CodeRecord>,
    refresh: HashMap<Key, RefreshTokenRecord>,
    access: HashMap<Key, AccessTokenRecord>,
    /// Revoked grants, with the time after which the marker may go.
    revoked: HashMap<(ProjectId, GrantId), OffsetDateTime>,
}

impl GrantMaps {
    fn is_revoked(&self, project: &ProjectId, grant: &GrantId) -> bool {
        !self.revoked.is_empty() && self.revoked.contains_key(&(project.clone(), grant.clone()))
    }
}

impl MemoryGrantStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of codes, refresh tokens and access tokens held.
    pub fn len(&self) -> usize {
        lock(&self.inner)
            .map(|m| m.codes.len() + m.refresh.len() + m.access.len())
            .unwrap_or(0)
    }

    /// Whether the store holds no codes or tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl GrantStore for MemoryGrantStore {
    async fn insert_code(&self, record: CodeRecord) -> Result<(), StoreError> {
        let mut m = lock(&self.inner)?;
        if !m.is_revoked(&record.grant.project, &record.grant.id) {
            m.codes.insert((record.grant.project.clone(), record.hash), record);
        }
        Ok(())
    }

    async fn code(&self, project: &ProjectId, hash: &SecretHash) -> Result<Option<CodeRecord>, StoreError> {
        let m = lock(&self.inner)?;
        Ok(m.codes
            .get(&(project.clone(), *hash))
            .filter(|c| !m.is_revoked(project, &c.grant.id))
            .cloned())
    }

    async fn consume_code(&self, project: &ProjectId, hash: &SecretHash) -> Result<CodeConsumption, StoreError> {
        let mut m = lock(&self.inner)?;
        let revoked = match m.codes.get(&(project.clone(), *hash)) {
            None => return Ok(CodeConsumption::NotFound),
            Some(c) => m.is_revoked(project, &c.grant.id),
        };
        let Some(code) = m.codes.get_mut(&(project.clone(), *hash)) else {
            return Ok(CodeConsumption::NotFound);
        };
        if code.consumed || revoked {
            return Ok(CodeConsumption::AlreadyConsumed(code.clone()));
        }
        code.consumed = true;
        Ok(CodeConsumption::Consumed(code.clone()))
    }

    async fn insert_refresh_token(&self, record: RefreshTokenRecord) -> Result<(), StoreError> {
        let mut m = lock(&self.inner)?;
        if !m.is_revoked(&record.grant.project, &record.grant.id) {
            m.refresh.insert((record.grant.project.clone(), record.hash), record);
        }
        Ok(())
    }

    async fn refresh_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let m = lock(&self.inner)?;
        Ok(m.refresh
            .get(&(project.clone(), *hash))
            .filter(|r| !m.is_revoked(project, &r.grant.id))
            .cloned())
    }

    async fn rotate_refresh_token(
        &self,
        project: &ProjectId,
        old: &SecretHash,
        new: RefreshTokenRecord,
    ) -> Result<RefreshRotation, StoreError> {
        let mut m = lock(&self.inner)?;
        let key = (project.clone(), *old);
        let (rotated, revoked) = match m.refresh.get(&key) {
            None => return Ok(RefreshRotation::NotFound),
            Some(r) => (r.rotated, m.is_revoked(project, &r.grant.id)),
        };
        if revoked {
            return Ok(RefreshRotation::NotFound);
        }
        let Some(record) = m.refresh.get_mut(&key) else {
            return Ok(RefreshRotation::NotFound);
        };
        if rotated {
            return Ok(RefreshRotation::AlreadyRotated(record.clone()));
        }
        record.rotated = true;
        let old_record = record.clone();
        m.refresh.insert((project.clone(), new.hash), new);
        Ok(RefreshRotation::Rotated(old_record))
    }

    async fn insert_access_token(&self, record: AccessTokenRecord) -> Result<(), StoreError> {
        let mut m = lock(&self.inner)?;
        if !m.is_revoked(&record.project, &record.grant_id) {
            m.access.insert((record.project.clone(), record.hash), record);
        }
        Ok(())
    }

    async fn access_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        let m = lock(&self.inner)?;
        Ok(m.access
            .get(&(project.clone(), *hash))
            .filter(|a| !m.is_revoked(project, &a.grant_id))
            .cloned())
    }

    async fn revoke_access_token(&self, project: &ProjectId, hash: &SecretHash) -> Result<bool, StoreError> {
        let mut m = lock(&self.inner)?;
        Ok(match m.access.get_mut(&(project.clone(), *hash)) {
            Some(a) => {
                a.revoked = true;
                true
            }
            None => false,
        })
    }

    async fn revoke_grant(&self, project: &ProjectId, grant: &GrantId, now: OffsetDateTime) -> Result<(), StoreError> {
        let mut m = lock(&self.inner)?;
        // Keep the marker while anything of the grant could still be alive:
        // codes live 10 minutes, access tokens at most a day; refresh
        // tokens inserted after this point are dropped.
        let mut until = now + time::Duration::days(1);
        m.codes.retain(|(p, _), c| !(p == project && &c.grant.id == grant));
        m.access.retain(|(p, _), a| {
            let same = p == project && &a.grant_id == grant;
            if same {
                until = until.max(OffsetDateTime::from_unix_timestamp(a.claims.exp).unwrap_or(until));
            }
            !same
        });
        m.refresh.retain(|(p, _), r| !(p == project && &r.grant.id == grant));
        m.revoked.insert((project.clone(), grant.clone()), until);
        Ok(())
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let mut m = lock(&self.inner)?;
        let before = m.codes.len() + m.refresh.len() + m.access.len() + m.revoked.len();
        let ts = now.unix_timestamp();
        m.codes.retain(|_, c| c.expires_at > now);
        m.refresh.retain(|_, r| r.expires_at > now);
        m.access.retain(|_, a| a.claims.exp > ts);
        m.revoked.retain(|_, until| *until > now);
        Ok(before - (m.codes.len() + m.refresh.len() + m.access.len() + m.revoked.len()))
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
