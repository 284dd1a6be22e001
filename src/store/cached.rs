//! A read-through cache in front of a [`ProjectStore`], for stores where a
//! read costs a database round trip on every request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{ProjectStore, StoreError};
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
        }
    }

    fn remember(&self, id: &ProjectId, settings: Option<&ProjectSettings>) {
        let Ok(mut entries) = self.entries.write() else { return };
        match settings {
            Some(s) => {
                if entries.len() >= self.capacity && !entries.contains_key(id) {
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
        let settings = self.inner.get(id).await?;
        self.remember(id, settings.as_ref());
        Ok(settings)
    }

    async fn put(&self, id: &ProjectId, settings: ProjectSettings) -> Result<(), StoreError> {
        self.remember(id, None);
        self.inner.put(id, settings.clone()).await?;
        self.remember(id, Some(&settings));
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        id: &ProjectId,
        current: &ProjectSettings,
        new: ProjectSettings,
    ) -> Result<bool, StoreError> {
        let swapped = self.inner.compare_and_swap(id, current, new.clone()).await;
        match swapped {
            Ok(true) => self.remember(id, Some(&new)),
            // Someone else changed it (or the call failed): read it again next time.
            _ => self.remember(id, None),
        }
        swapped
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
}
