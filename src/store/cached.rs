//! Read-through caches in front of a [`ProjectStore`] and a
//! [`ClientStore`], for stores where a read costs a database round trip on
//! every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{ClientStore, Page, PageRequest, ProjectStore, StoreError};
use crate::client::{Client, RegisteredClientId};
use crate::project::{ProjectId, ProjectSettings};

/// Caches project settings for a fixed time in front of another
/// [`ProjectStore`].
///
/// Writes (`put`, `compare_and_swap`) go to the inner store and refresh
/// this process's entry at once; changes made by OTHER processes sharing
/// the inner store are seen after at most `ttl`. That is the staleness
/// bound of every setting, the MCP switch and the DCR mode included.
///
/// # Security
/// `compare_and_swap` is the inner store's, so it stays atomic; only reads
/// may be stale. Choose `ttl` as the longest time a settings change made
/// elsewhere (switching MCP or DCR off, narrowing a trust policy) may take
/// to apply here. Unknown projects are not cached, so probing random ids
/// cannot grow the cache, which holds at most `capacity` entries.
pub struct CachedProjectStore {
    inner: Arc<dyn ProjectStore>,
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<ProjectId, (Instant, ProjectSettings)>>,
    /// Bumped by every local write before and after it reaches the inner
    /// store. A read-through only fills the cache when no write started or
    /// finished while it read, so a read that raced a local write can never
    /// put the settings from before that write back into the cache.
    writes: AtomicU64,
}

impl std::fmt::Debug for CachedProjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedProjectStore")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl CachedProjectStore {
    /// A cache of at most 10,000 projects, each read kept for `ttl`.
    pub fn new(inner: Arc<dyn ProjectStore>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            capacity: 10_000,
            entries: RwLock::new(HashMap::new()),
            writes: AtomicU64::new(0),
        }
    }

    fn remember(&self, id: &ProjectId, settings: Option<&ProjectSettings>) {
        let Ok(mut entries) = self.entries.write() else { return };
        Self::remember_locked(&mut entries, self.capacity, id, settings);
    }

    /// Fills the cache from a read-through that began when the write
    /// counter stood at `seen`, unless a local write happened since.
    fn remember_read(&self, id: &ProjectId, settings: Option<&ProjectSettings>, seen: u64) {
        let Ok(mut entries) = self.entries.write() else { return };
        // Checked under the lock: a write bumps the counter before it
        // touches the entry, so a read that saw the old counter and loses
        // this comparison leaves the entry to the writer.
        if self.writes.load(Ordering::SeqCst) != seen {
            return;
        }
        Self::remember_locked(&mut entries, self.capacity, id, settings);
    }

    fn begin_write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    fn remember_locked(
        entries: &mut HashMap<ProjectId, (Instant, ProjectSettings)>,
        capacity: usize,
        id: &ProjectId,
        settings: Option<&ProjectSettings>,
    ) {
        match settings {
            Some(s) => {
                if entries.len() >= capacity && !entries.contains_key(id) {
                    entries.clear();
                }
                entries.insert(id.clone(), (Instant::now(), s.clone()));
            }
            None => {
                entries.remove(id);
            }
        }
    }
}

#[async_trait]
impl ProjectStore for CachedProjectStore {
    async fn get(&self, id: &ProjectId) -> Result<Option<ProjectSettings>, StoreError> {
        if let Ok(entries) = self.entries.read()
            && let Some((at, settings)) = entries.get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(settings.clone()));
        }
        let seen = self.writes.load(Ordering::SeqCst);
        let settings = self.inner.get(id).await?;
        self.remember_read(id, settings.as_ref(), seen);
        Ok(settings)
    }

    async fn put(&self, id: &ProjectId, settings: ProjectSettings) -> Result<(), StoreError> {
        self.begin_write();
        self.remember(id, None);
        let written = self.inner.put(id, settings.clone()).await;
        self.begin_write();
        match written {
            Ok(()) => self.remember(id, Some(&settings)),
            Err(_) => self.remember(id, None),
        }
        written
    }

    async fn compare_and_swap(
        &self,
        id: &ProjectId,
        current: &ProjectSettings,
        new: ProjectSettings,
    ) -> Result<bool, StoreError> {
        self.begin_write();
        let swapped = self.inner.compare_and_swap(id, current, new.clone()).await;
        self.begin_write();
        match swapped {
            Ok(true) => self.remember(id, Some(&new)),
            // Someone else changed it (or the call failed): read it again next time.
            _ => self.remember(id, None),
        }
        swapped
    }
}

/// Caches registered clients for a fixed time in front of another
/// [`ClientStore`]: the token endpoint and the authorization endpoint read
/// the client on every request.
///
/// `delete` and `set_disabled` through this cache go to the inner store
/// and drop this process's entry before and after, so they apply here at
/// once (`insert` never changes a stored client; a client it inserts is
/// cached as written, so the authorization after a registration does not
/// read it back); a
/// client deleted, disabled or re-enabled by ANOTHER process sharing the
/// inner store is seen after at most `ttl`. That is the staleness bound:
/// for up to `ttl` after an administrator deletes or disables a client on
/// one instance, another instance may still authenticate it and let it
/// obtain NEW tokens (start authorizations, exchange codes, refresh its
/// grants until they are revoked). Only what does not read the cached
/// client applies at once: a deletion's revocation of the grants that
/// existed when it ran (the grant store is not cached), and the token
/// checks of introspection and userinfo, which ask
/// [`ClientStore::client_uncached`] (forwarded to the inner store), so a
/// deleted or disabled client's tokens read as inactive everywhere at
/// once. `count` and `list` always read through.
///
/// # Security
/// Only `get` may be stale, by at most `ttl`; choose it as the longest
/// time a disabling or deletion made elsewhere may take to apply here.
/// Unknown clients are not cached (probing random ids cannot grow the
/// cache), which holds at most `capacity` entries.
pub struct CachedClientStore {
    inner: Arc<dyn ClientStore>,
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<(ProjectId, RegisteredClientId), (Instant, Client)>>,
    /// As [`CachedProjectStore`]'s: a read that raced a local write never
    /// fills the cache.
    writes: AtomicU64,
}

impl std::fmt::Debug for CachedClientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedClientStore")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl CachedClientStore {
    /// A cache of at most 100,000 clients, each read kept for `ttl`.
    pub fn new(inner: Arc<dyn ClientStore>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            capacity: 100_000,
            entries: RwLock::new(HashMap::new()),
            writes: AtomicU64::new(0),
        }
    }

    fn forget(&self, project: &ProjectId, id: &RegisteredClientId) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(&(project.clone(), id.clone()));
        }
    }
}

#[async_trait]
impl ClientStore for CachedClientStore {
    async fn get(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Option<Client>, StoreError> {
        let key = (project.clone(), id.clone());
        if let Ok(entries) = self.entries.read()
            && let Some((at, client)) = entries.get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(client.clone()));
        }
        let seen = self.writes.load(Ordering::SeqCst);
        let client = self.inner.get(project, id).await?;
        if let Ok(mut entries) = self.entries.write()
            // Checked under the lock: a local write bumps the counter
            // before it drops the entry.
            && self.writes.load(Ordering::SeqCst) == seen
        {
            match &client {
                Some(c) => {
                    if entries.len() >= self.capacity && !entries.contains_key(&key) {
                        entries.clear();
                    }
                    entries.insert(key, (Instant::now(), c.clone()));
                }
                None => {
                    entries.remove(&key);
                }
            }
        }
        Ok(client)
    }

    async fn client_uncached(
        &self,
        project: &ProjectId,
        id: &RegisteredClientId,
    ) -> Result<Option<Client>, StoreError> {
        self.inner.client_uncached(project, id).await
    }

    async fn insert(&self, project: &ProjectId, client: Client) -> Result<bool, StoreError> {
        // No invalidation: an insert never changes a stored client (a
        // taken id is refused), so no read racing it can cache anything
        // it changed. (Bumping the write counter here would keep every
        // read from filling the cache while registrations are under way.)
        // A client inserted here is cached as written (the authorization
        // that follows a registration need not read it back), unless a
        // local delete or disabling ran meanwhile. (Registrations that are
        // never used take room too; at `capacity` the cache starts over.)
        let kept = match &client.client_id {
            crate::client::ClientId::Registered(id) => Some(((project.clone(), id.clone()), client.clone())),
            _ => None,
        };
        let seen = self.writes.load(Ordering::SeqCst);
        let inserted = self.inner.insert(project, client).await?;
        if inserted
            && !self.ttl.is_zero()
            && let Some((key, kept)) = kept
            && let Ok(mut entries) = self.entries.write()
            && self.writes.load(Ordering::SeqCst) == seen
        {
            if entries.len() >= self.capacity && !entries.contains_key(&key) {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), kept));
        }
        Ok(inserted)
    }

    async fn delete(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<bool, StoreError> {
        self.forget(project, id);
        let deleted = self.inner.delete(project, id).await;
        self.forget(project, id);
        deleted
    }

    async fn count(&self, project: &ProjectId) -> Result<usize, StoreError> {
        self.inner.count(project).await
    }

    async fn list(&self, project: &ProjectId, page: &PageRequest) -> Result<Page<Client>, StoreError> {
        self.inner.list(project, page).await
    }

    async fn set_disabled(
        &self,
        project: &ProjectId,
        id: &RegisteredClientId,
        disabled_at: Option<time::OffsetDateTime>,
    ) -> Result<Option<Client>, StoreError> {
        self.forget(project, id);
        let set = self.inner.set_disabled(project, id, disabled_at).await;
        self.forget(project, id);
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryProjectStore;

    #[tokio::test]
    async fn reads_are_cached_for_the_ttl_and_local_writes_apply_at_once() {
        let inner = Arc::new(MemoryProjectStore::new());
        let cached = CachedProjectStore::new(inner.clone(), Duration::from_secs(3600));
        let p = ProjectId::new("p").unwrap();
        assert!(
            cached.get(&p).await.unwrap().is_none(),
            "unknown projects are not cached"
        );
        inner.put(&p, ProjectSettings::default()).await.unwrap();
        let a = cached.get(&p).await.unwrap().unwrap();
        // A change made elsewhere is not seen within the ttl...
        let mut b = a.clone();
        b.mcp_enabled = true;
        inner.put(&p, b.clone()).await.unwrap();
        assert_eq!(cached.get(&p).await.unwrap(), Some(a.clone()));
        // ...and a compare-and-swap from the stale value fails, atomically, and drops the entry.
        assert!(!cached.compare_and_swap(&p, &a, a.clone()).await.unwrap());
        assert_eq!(cached.get(&p).await.unwrap(), Some(b.clone()));
        let mut c = b.clone();
        c.cimd_enabled = true;
        assert!(cached.compare_and_swap(&p, &b, c.clone()).await.unwrap());
        assert_eq!(cached.get(&p).await.unwrap(), Some(c), "local writes apply at once");

        let fresh = CachedProjectStore::new(inner.clone(), Duration::ZERO);
        inner.put(&p, a.clone()).await.unwrap();
        assert_eq!(fresh.get(&p).await.unwrap(), Some(a), "a zero ttl always reads through");
    }

    /// Reads the inner store, then waits for the test to open the gate
    /// before answering: a read-through held in flight.
    struct GatedStore {
        inner: MemoryProjectStore,
        read_done: tokio::sync::Notify,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl ProjectStore for GatedStore {
        async fn get(&self, id: &ProjectId) -> Result<Option<ProjectSettings>, StoreError> {
            let read = self.inner.get(id).await;
            self.read_done.notify_one();
            let _permit = self.gate.acquire().await;
            read
        }
        async fn put(&self, id: &ProjectId, settings: ProjectSettings) -> Result<(), StoreError> {
            self.inner.put(id, settings).await
        }
        async fn compare_and_swap(
            &self,
            id: &ProjectId,
            current: &ProjectSettings,
            new: ProjectSettings,
        ) -> Result<bool, StoreError> {
            self.inner.compare_and_swap(id, current, new).await
        }
    }

    #[tokio::test]
    async fn a_read_racing_a_local_write_never_reinstates_the_old_settings() {
        let p = ProjectId::new("p").unwrap();
        let gated = Arc::new(GatedStore {
            inner: MemoryProjectStore::new(),
            read_done: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let old = ProjectSettings::default();
        gated.inner.put(&p, old.clone()).await.unwrap();
        let cached = Arc::new(CachedProjectStore::new(gated.clone(), Duration::from_secs(3600)));

        // A read-through fetches the old settings and is held before it fills the cache...
        let reader = tokio::spawn({
            let cached = cached.clone();
            let p = p.clone();
            async move { cached.get(&p).await }
        });
        gated.read_done.notified().await;
        // ...while a local write switches MCP on.
        let mut new = old.clone();
        new.mcp_enabled = true;
        gated.gate.add_permits(1_000);
        cached.put(&p, new.clone()).await.unwrap();
        assert_eq!(
            reader.await.unwrap().unwrap(),
            Some(old),
            "the racing read answers what it read"
        );
        // The late read must not have put the old settings back for the ttl.
        assert_eq!(cached.get(&p).await.unwrap(), Some(new));
    }

    fn client(at: time::OffsetDateTime) -> Client {
        use crate::client::{ClientId, ClientMetadata, MetadataProfile};
        let m: ClientMetadata = serde_json::from_value(serde_json::json!({
            "client_name": "A", "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"
        }))
        .unwrap();
        let m = m
            .validate(MetadataProfile::Dcr, crate::redirect_uri::RedirectUriPolicy::strict())
            .unwrap();
        Client::new(ClientId::Registered(RegisteredClientId::from_random(&[7; 12])), m, at)
    }

    #[tokio::test]
    async fn clients_are_cached_for_the_ttl_and_local_writes_apply_at_once() {
        use crate::store::memory::MemoryClientStore;
        let inner = Arc::new(MemoryClientStore::new());
        let cached = CachedClientStore::new(inner.clone(), Duration::from_secs(3600));
        let p = ProjectId::new("p").unwrap();
        let at = time::macros::datetime!(2026-11-29 12:00 UTC);
        let c = client(at);
        let crate::client::ClientId::Registered(id) = c.client_id.clone() else {
            unreachable!()
        };
        assert!(cached.get(&p, &id).await.unwrap().is_none());
        inner.insert(&p, c.clone()).await.unwrap();
        assert_eq!(
            cached.get(&p, &id).await.unwrap(),
            Some(c.clone()),
            "unknown clients are not cached"
        );
        // Disabled elsewhere (the inner store directly): stale within the ttl.
        inner.set_disabled(&p, &id, Some(at)).await.unwrap();
        assert_eq!(cached.get(&p, &id).await.unwrap(), Some(c.clone()));
        // ...but never for the uncached read (introspection's check).
        assert!(
            cached
                .client_uncached(&p, &id)
                .await
                .unwrap()
                .is_some_and(|c| c.disabled_at.is_some()),
            "client_uncached bypasses the cache"
        );
        // Re-enabled, then disabled through the cache: applies at once.
        inner.set_disabled(&p, &id, None).await.unwrap();
        let disabled = cached.set_disabled(&p, &id, Some(at)).await.unwrap();
        assert!(disabled.as_ref().is_some_and(|c| c.disabled_at.is_some()));
        assert!(
            cached
                .get(&p, &id)
                .await
                .unwrap()
                .is_some_and(|c| c.disabled_at.is_some()),
            "a local disabling applies at once"
        );
        assert!(cached.delete(&p, &id).await.unwrap());
        assert!(
            cached.get(&p, &id).await.unwrap().is_none(),
            "a local deletion applies at once"
        );
        assert!(cached.get(&ProjectId::new("q").unwrap(), &id).await.unwrap().is_none());

        let fresh = CachedClientStore::new(inner.clone(), Duration::ZERO);
        inner.insert(&p, c.clone()).await.unwrap();
        assert!(fresh.get(&p, &id).await.unwrap().is_some());
        inner.delete(&p, &id).await.unwrap();
        assert!(
            fresh.get(&p, &id).await.unwrap().is_none(),
            "a zero ttl always reads through"
        );
    }

    #[tokio::test]
    async fn a_client_inserted_through_the_cache_is_cached_as_written() {
        use crate::store::memory::MemoryClientStore;
        let inner = Arc::new(MemoryClientStore::new());
        let cached = CachedClientStore::new(inner.clone(), Duration::from_secs(3600));
        let p = ProjectId::new("p").unwrap();
        let c = client(time::macros::datetime!(2026-11-29 12:00 UTC));
        let crate::client::ClientId::Registered(id) = c.client_id.clone() else {
            unreachable!()
        };
        assert!(cached.insert(&p, c.clone()).await.unwrap());
        // Gone from the inner store (deleted elsewhere): the insert's copy
        // answers, so the read after a registration costs no round trip.
        inner.delete(&p, &id).await.unwrap();
        assert_eq!(cached.get(&p, &id).await.unwrap(), Some(c.clone()));
        // A refused insert (the id is taken) caches nothing new...
        let mut other = c.clone();
        other.metadata.client_name = Some("B".to_owned());
        inner.insert(&p, c.clone()).await.unwrap();
        cached.delete(&p, &id).await.unwrap();
        inner.insert(&p, c.clone()).await.unwrap();
        assert!(!cached.insert(&p, other).await.unwrap());
        assert_eq!(cached.get(&p, &id).await.unwrap(), Some(c.clone()), "the stored client");
        // ...and a local deletion still applies at once.
        assert!(cached.delete(&p, &id).await.unwrap());
        assert!(cached.get(&p, &id).await.unwrap().is_none());
        let fresh = CachedClientStore::new(inner.clone(), Duration::ZERO);
        assert!(fresh.insert(&p, c.clone()).await.unwrap());
        inner.delete(&p, &id).await.unwrap();
        assert!(fresh.get(&p, &id).await.unwrap().is_none(), "a zero ttl keeps nothing");
    }

    /// Inserts into the inner store, then waits for the test to open the
    /// gate before answering: an insert held in flight.
    struct GatedClients {
        inner: crate::store::memory::MemoryClientStore,
        inserted: tokio::sync::Notify,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl ClientStore for GatedClients {
        async fn get(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Option<Client>, StoreError> {
            self.inner.get(project, id).await
        }
        async fn insert(&self, project: &ProjectId, client: Client) -> Result<bool, StoreError> {
            let inserted = self.inner.insert(project, client).await;
            self.inserted.notify_one();
            let _permit = self.gate.acquire().await;
            inserted
        }
        async fn delete(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<bool, StoreError> {
            self.inner.delete(project, id).await
        }
        async fn count(&self, project: &ProjectId) -> Result<usize, StoreError> {
            self.inner.count(project).await
        }
        async fn list(&self, project: &ProjectId, page: &PageRequest) -> Result<Page<Client>, StoreError> {
            self.inner.list(project, page).await
        }
        async fn set_disabled(
            &self,
            project: &ProjectId,
            id: &RegisteredClientId,
            disabled_at: Option<time::OffsetDateTime>,
        ) -> Result<Option<Client>, StoreError> {
            self.inner.set_disabled(project, id, disabled_at).await
        }
    }

    #[tokio::test]
    async fn an_insert_racing_a_local_deletion_does_not_cache_the_deleted_client() {
        let p = ProjectId::new("p").unwrap();
        let gated = Arc::new(GatedClients {
            inner: crate::store::memory::MemoryClientStore::new(),
            inserted: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let cached = Arc::new(CachedClientStore::new(gated.clone(), Duration::from_secs(3600)));
        let c = client(time::macros::datetime!(2026-11-29 12:00 UTC));
        let crate::client::ClientId::Registered(id) = c.client_id.clone() else {
            unreachable!()
        };
        // The insert reaches the store and is held before it fills the cache...
        let inserter = tokio::spawn({
            let (cached, p, c) = (cached.clone(), p.clone(), c.clone());
            async move { cached.insert(&p, c).await }
        });
        gated.inserted.notified().await;
        // ...while a local deletion removes the client.
        assert!(cached.delete(&p, &id).await.unwrap());
        gated.gate.add_permits(1_000);
        assert!(inserter.await.unwrap().unwrap(), "the insert itself succeeded");
        assert!(
            cached.get(&p, &id).await.unwrap().is_none(),
            "the late insert must not cache a client deleted meanwhile"
        );
    }
}
