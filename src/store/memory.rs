//! In-memory implementations of the storage traits: the embedded default,
//! and what tests and the example server use.
//!
//! They are correct under concurrency (every compound operation happens
//! under one lock) but not shared between processes: a deployment with
//! several instances needs a shared store.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, RwLock};

use async_trait::async_trait;

use time::OffsetDateTime;

pub use super::users::{MemoryUpstreamLoginStore, MemoryUpstreamSecrets, MemoryUserStore};
use super::{
    AuditSink, ClientStore, CodeConsumption, GrantSelector, GrantStore, Page, PageCursor, PageRequest, ProjectStore,
    RefreshRotation, StoreError,
};
use crate::audit::{AuditClass, AuditEvent};
use crate::client::{Client, ClientId, RegisteredClientId};
use crate::grant::{AccessTokenRecord, CodeRecord, Grant, GrantId, GrantSummary, RefreshTokenRecord, Subject};
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

/// Registered clients in memory, per project: lookups borrow the keys (no
/// allocation), counting a project's clients is O(1), and listing walks an
/// ordered index from the cursor (no scan of the project's clients).
#[derive(Debug, Default)]
pub struct MemoryClientStore {
    clients: RwLock<HashMap<ProjectId, ProjectClients>>,
}

#[derive(Debug, Default)]
struct ProjectClients {
    by_id: HashMap<RegisteredClientId, Client>,
    /// `(issued_at, id)`: the listing order.
    order: BTreeSet<(i64, String)>,
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
        Ok(map.get(project).and_then(|p| p.by_id.get(id)).cloned())
    }

    async fn insert(&self, project: &ProjectId, client: Client) -> Result<bool, StoreError> {
        let ClientId::Registered(id) = &client.client_id else {
            return Err(StoreError::new("only registered clients are stored"));
        };
        let mut map = self.clients.write().map_err(|_| StoreError::new("lock poisoned"))?;
        let clients = map.entry(project.clone()).or_default();
        if clients.by_id.contains_key(id) {
            return Ok(false);
        }
        clients
            .order
            .insert((client.issued_at.unix_timestamp(), id.as_str().to_owned()));
        clients.by_id.insert(id.clone(), client);
        Ok(true)
    }

    async fn delete(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<bool, StoreError> {
        let mut map = self.clients.write().map_err(|_| StoreError::new("lock poisoned"))?;
        let Some(clients) = map.get_mut(project) else {
            return Ok(false);
        };
        let removed = clients.by_id.remove(id);
        if let Some(c) = &removed {
            clients
                .order
                .remove(&(c.issued_at.unix_timestamp(), id.as_str().to_owned()));
        }
        if clients.by_id.is_empty() {
            map.remove(project);
        }
        Ok(removed.is_some())
    }

    async fn count(&self, project: &ProjectId) -> Result<usize, StoreError> {
        let map = self.clients.read().map_err(|_| StoreError::new("lock poisoned"))?;
        Ok(map.get(project).map_or(0, |p| p.by_id.len()))
    }

    async fn list(&self, project: &ProjectId, page: &PageRequest) -> Result<Page<Client>, StoreError> {
        let map = self.clients.read().map_err(|_| StoreError::new("lock poisoned"))?;
        let Some(clients) = map.get(project) else {
            return Ok(page.page(Vec::new(), client_cursor));
        };
        let start = match page.cursor() {
            Some(c) => Bound::Excluded((c.at(), c.id().to_owned())),
            None => Bound::Unbounded,
        };
        let mut items = Vec::with_capacity(page.limit() + 1);
        for (_, id) in clients.order.range((start, Bound::Unbounded)).take(page.limit() + 1) {
            let client = RegisteredClientId::new(id.as_str())
                .ok()
                .and_then(|id| clients.by_id.get(&id))
                .ok_or_else(|| StoreError::new("client index out of step"))?;
            items.push(client.clone());
        }
        Ok(page.page(items, client_cursor))
    }

    async fn set_disabled(
        &self,
        project: &ProjectId,
        id: &RegisteredClientId,
        disabled_at: Option<OffsetDateTime>,
    ) -> Result<Option<Client>, StoreError> {
        let mut map = self.clients.write().map_err(|_| StoreError::new("lock poisoned"))?;
        let Some(client) = map.get_mut(project).and_then(|p| p.by_id.get_mut(id)) else {
            return Ok(None);
        };
        client.disabled_at = match disabled_at {
            Some(at) => Some(client.disabled_at.unwrap_or(at)),
            None => None,
        };
        Ok(Some(client.clone()))
    }
}

/// The listing cursor of a grant: `(granted_at, id)`.
pub(crate) fn grant_cursor(s: &GrantSummary) -> PageCursor {
    PageCursor::new(s.grant.granted_at, s.grant.id.as_str())
}

/// The listing cursor of a client: `(issued_at, id)`.
pub(crate) fn client_cursor(c: &Client) -> PageCursor {
    PageCursor::new(c.issued_at, c.client_id.as_str())
}

/// Codes, tokens and grant revocations in memory, in [`GRANT_SHARDS`]
/// shards so that concurrent requests for different codes and tokens do
/// not wait on one lock.
///
/// A record lives in the shard chosen by its hash (the SHA-256 of a random
/// secret, so records spread evenly), keyed by that hash; a read only
/// returns it for its own project.
///
/// # Atomicity
/// - Consuming a code, and every read or insert, happens under the lock
///   of the one shard that holds the record.
/// - Rotating a refresh token locks the shards of the old and the new
///   token together (in shard order, so two rotations cannot deadlock).
/// - A grant's revocation marker is kept in EVERY shard, and
///   [`GrantStore::revoke_grant`] holds all shard locks (in order) while
///   it deletes the grant's records and writes the markers. Any operation
///   on a shard therefore runs entirely before the revocation (whose
///   deletion then removes what it wrote) or entirely after it (and sees
///   the marker in its own shard, under the lock it already holds). That
///   is the same guarantee the single lock gave; revocations are rare, so
///   taking every lock for them costs little.
/// - Purging goes shard by shard: each shard is purged atomically, and a
///   marker is only dropped once everything it guards has expired.
/// - Per-grant bookkeeping (the grant's current refresh
///   token, the tombstones of its rotated ones, its access tokens) sits
///   behind one more lock, always taken AFTER the shard locks an
///   operation needs, never before one.
///
/// # Bounded growth per grant
/// A rotated refresh token leaves its shard; only a tombstone (its hash,
/// issue and expiry times) stays, for reuse detection, until it expires,
/// and at most [`MAX_ROTATED_PER_GRANT`] of them per grant (the oldest
/// go first). A reused tombstone is answered as the full record (grant,
/// scopes and resources of the grant's current token, which rotation
/// never changes) with `rotated = true`. A grant keeps at most
/// [`MAX_ACCESS_TOKENS_PER_GRANT`] access-token records: inserting one
/// drops the grant's expired ones, then its oldest beyond the cap.
/// Memory per grant is therefore flat however often it is refreshed.
///
/// # Grant summaries
/// One [`GrantSummary`] per grant, behind a lock taken AFTER the shard
/// locks (and after the per-grant bookkeeping lock when both are needed):
/// it is written under the lock of the shard whose record created or
/// extended it, and removed under every shard lock by a revocation, so a
/// revoked grant never gets a summary again. Two ordered sets index the
/// summaries by user and by client for listing and bulk revocation.
#[derive(Debug, Default)]
pub struct MemoryGrantStore {
    shards: [Mutex<GrantMaps>; GRANT_SHARDS],
    families: Mutex<Families>,
    index: Mutex<GrantIndex>,
}

/// `(project, subject or client id, granted_at, grant id)`.
type IndexKey = (ProjectId, String, i64, GrantId);

#[derive(Debug, Default)]
struct GrantIndex {
    by_grant: HashMap<FamilyKey, GrantSummary>,
    by_subject: BTreeSet<IndexKey>,
    by_client: BTreeSet<IndexKey>,
}

fn subject_key(g: &Grant) -> IndexKey {
    (
        g.project.clone(),
        g.subject.as_str().to_owned(),
        g.granted_at.unix_timestamp(),
        g.id.clone(),
    )
}

fn client_key(g: &Grant) -> IndexKey {
    (
        g.project.clone(),
        g.client_id.as_str().to_owned(),
        g.granted_at.unix_timestamp(),
        g.id.clone(),
    )
}

/// Later use and expiry extend a summary, never shorten it.
fn extend(summary: &mut GrantSummary, used_at: Option<OffsetDateTime>, expires_at: OffsetDateTime) {
    if let Some(at) = used_at
        && summary.last_used_at.is_none_or(|last| at > last)
    {
        summary.last_used_at = Some(at);
    }
    summary.expires_at = summary.expires_at.max(expires_at);
}

impl GrantIndex {
    /// Creates or extends the summary of `grant`.
    fn touch(&mut self, grant: &Grant, used_at: Option<OffsetDateTime>, expires_at: OffsetDateTime) {
        let key = (grant.project.clone(), grant.id.clone());
        if let Some(summary) = self.by_grant.get_mut(&key) {
            extend(summary, used_at, expires_at);
            return;
        }
        self.by_subject.insert(subject_key(grant));
        self.by_client.insert(client_key(grant));
        let mut summary = GrantSummary::new(grant.clone(), expires_at);
        summary.last_used_at = used_at;
        self.by_grant.insert(key, summary);
    }

    /// Extends an existing summary.
    fn extend(&mut self, key: &FamilyKey, used_at: OffsetDateTime, expires_at: OffsetDateTime) {
        if let Some(summary) = self.by_grant.get_mut(key) {
            extend(summary, Some(used_at), expires_at);
        }
    }

    fn remove(&mut self, key: &FamilyKey) -> Option<GrantSummary> {
        let summary = self.by_grant.remove(key)?;
        self.by_subject.remove(&subject_key(&summary.grant));
        self.by_client.remove(&client_key(&summary.grant));
        Some(summary)
    }

    /// The summaries `selector` picks, at most `limit`, in index order.
    fn select(&self, project: &ProjectId, selector: &GrantSelector, limit: usize) -> Vec<FamilyKey> {
        let (set, value) = match selector {
            GrantSelector::Subject(s) => (&self.by_subject, s.as_str()),
            GrantSelector::Client(c) => (&self.by_client, c.as_str()),
            GrantSelector::Grant { subject, grant } => {
                let key = (project.clone(), grant.clone());
                return self
                    .by_grant
                    .get(&key)
                    .filter(|s| &s.grant.subject == subject)
                    .map(|_| vec![key])
                    .unwrap_or_default();
            }
        };
        let from = (project.clone(), value.to_owned(), i64::MIN, GrantId::lowest());
        set.range(from..)
            .take_while(|(p, v, _, _)| p == project && v == value)
            .map(|(p, _, _, id)| (p.clone(), id.clone()))
            .take(limit)
            .collect()
    }
}

/// The number of shards of a [`MemoryGrantStore`].
pub const GRANT_SHARDS: usize = 16;

pub use super::{MAX_ACCESS_TOKENS_PER_GRANT, MAX_ROTATED_PER_GRANT};

type FamilyKey = (ProjectId, GrantId);

#[derive(Debug, Default)]
struct Families {
    by_grant: HashMap<FamilyKey, Family>,
    /// Tombstone hash -> its grant.
    tombstones: HashMap<SecretHash, FamilyKey>,
}

/// One grant's bookkeeping.
#[derive(Debug, Default)]
struct Family {
    /// The grant's current (unrotated) refresh token.
    head: Option<RefreshTokenRecord>,
    /// Rotated refresh tokens, oldest first.
    rotated: VecDeque<Tombstone>,
    /// Access tokens (hash, exp), oldest first.
    access: VecDeque<(SecretHash, i64)>,
}

#[derive(Debug, Clone)]
struct Tombstone {
    hash: SecretHash,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    /// The rotation's mark, for presentations within the reuse grace;
    /// cleared by purging once no grace can reach it.
    rotation: Option<crate::grant::RotationMark>,
}

impl Families {
    fn family(&mut self, key: FamilyKey) -> &mut Family {
        self.by_grant.entry(key).or_default()
    }

    fn remove(&mut self, key: &FamilyKey) {
        if let Some(f) = self.by_grant.remove(key) {
            for t in f.rotated {
                self.tombstones.remove(&t.hash);
            }
        }
    }

    /// The full record of a rotated token, rebuilt from its tombstone and
    /// the grant's current token.
    fn rotated_record(&self, project: &ProjectId, hash: &SecretHash) -> Option<RefreshTokenRecord> {
        let key = self.tombstones.get(hash).filter(|(p, _)| p == project)?;
        let family = self.by_grant.get(key)?;
        let t = family.rotated.iter().find(|t| &t.hash == hash)?;
        let mut record = family.head.clone()?;
        record.hash = t.hash;
        record.issued_at = t.issued_at;
        record.expires_at = t.expires_at;
        record.rotated = true;
        record.rotation = t.rotation.clone();
        Some(record)
    }
}

#[derive(Debug, Default)]
struct GrantMaps {
    codes: HashMap<SecretHash, CodeRecord>,
    refresh: HashMap<SecretHash, RefreshTokenRecord>,
    access: HashMap<SecretHash, AccessTokenRecord>,
    /// Revoked grants, with the time after which the marker may go (a
    /// copy in every shard).
    revoked: HashMap<(ProjectId, GrantId), OffsetDateTime>,
}

impl GrantMaps {
    fn is_revoked(&self, project: &ProjectId, grant: &GrantId) -> bool {
        !self.revoked.is_empty() && self.revoked.contains_key(&(project.clone(), grant.clone()))
    }

    fn len(&self) -> usize {
        self.codes.len() + self.refresh.len() + self.access.len()
    }
}

const fn shard_of(hash: &SecretHash) -> usize {
    let [first, ..] = hash.as_bytes();
    *first as usize % GRANT_SHARDS
}

impl MemoryGrantStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of codes, refresh tokens and access tokens held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// Whether the store holds no codes or tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, hash: &SecretHash) -> Result<MutexGuard<'_, GrantMaps>, StoreError> {
        let shard = self
            .shards
            .get(shard_of(hash))
            .ok_or_else(|| StoreError::new("grant store shard out of range"))?;
        lock(shard)
    }

    /// Every shard locked, in shard order.
    fn all_shards(&self) -> Result<Vec<MutexGuard<'_, GrantMaps>>, StoreError> {
        self.shards.iter().map(lock).collect()
    }

    fn families(&self) -> Result<MutexGuard<'_, Families>, StoreError> {
        lock(&self.families)
    }

    fn index(&self) -> Result<MutexGuard<'_, GrantIndex>, StoreError> {
        lock(&self.index)
    }

    /// Revokes `grants` of `project` with every shard locked (see the
    /// type's docs): their records go, their markers are written in every
    /// shard, their bookkeeping and summaries go.
    fn revoke_locked(
        &self,
        shards: &mut [MutexGuard<'_, GrantMaps>],
        project: &ProjectId,
        grants: &HashSet<GrantId>,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantSummary>, StoreError> {
        if grants.is_empty() {
            return Ok(Vec::new());
        }
        // Keep each marker while anything of its grant could still be
        // alive: codes live 10 minutes, access tokens at most a day;
        // refresh tokens inserted after this point are dropped.
        let mut until: HashMap<GrantId, OffsetDateTime> = grants
            .iter()
            .map(|g| (g.clone(), now + time::Duration::days(1)))
            .collect();
        for m in shards.iter_mut() {
            m.codes
                .retain(|_, c| !(&c.grant.project == project && grants.contains(&c.grant.id)));
            m.access.retain(|_, a| {
                let same = &a.project == project && grants.contains(&a.grant_id);
                if same && let Some(u) = until.get_mut(&a.grant_id) {
                    *u = (*u).max(OffsetDateTime::from_unix_timestamp(a.claims.exp).unwrap_or(*u));
                }
                !same
            });
            m.refresh
                .retain(|_, r| !(&r.grant.project == project && grants.contains(&r.grant.id)));
        }
        for m in shards.iter_mut() {
            for (g, u) in &until {
                m.revoked.insert((project.clone(), g.clone()), *u);
            }
        }
        let mut families = self.families()?;
        for g in grants {
            families.remove(&(project.clone(), g.clone()));
        }
        drop(families);
        let mut index = self.index()?;
        Ok(grants
            .iter()
            .filter_map(|g| index.remove(&(project.clone(), g.clone())))
            .collect())
    }

    /// Grant summaries held (for tests and benchmarks).
    pub fn grant_summaries(&self) -> usize {
        self.index().map(|i| i.by_grant.len()).unwrap_or(0)
    }

    /// Tombstones held (for tests and benchmarks).
    pub fn tombstones(&self) -> usize {
        self.families().map(|f| f.tombstones.len()).unwrap_or(0)
    }
}

#[async_trait]
impl GrantStore for MemoryGrantStore {
    async fn insert_code(&self, record: CodeRecord) -> Result<(), StoreError> {
        let mut m = self.shard(&record.hash)?;
        if !m.is_revoked(&record.grant.project, &record.grant.id) {
            // The summary first: listed before the code can be read.
            self.index()?.touch(&record.grant, None, record.expires_at);
            // Insert-if-absent: a stored code (consumed or not) is never
            // replaced, so a second insert cannot un-consume it.
            m.codes.entry(record.hash).or_insert(record);
        }
        Ok(())
    }

    async fn code(&self, project: &ProjectId, hash: &SecretHash) -> Result<Option<CodeRecord>, StoreError> {
        let m = self.shard(hash)?;
        Ok(m.codes
            .get(hash)
            .filter(|c| &c.grant.project == project && !m.is_revoked(project, &c.grant.id))
            .cloned())
    }

    async fn consume_code(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<CodeConsumption, StoreError> {
        let mut m = self.shard(hash)?;
        let revoked = match m.codes.get(hash) {
            Some(c) if &c.grant.project == project => m.is_revoked(project, &c.grant.id),
            _ => return Ok(CodeConsumption::NotFound),
        };
        let Some(code) = m.codes.get_mut(hash) else {
            return Ok(CodeConsumption::NotFound);
        };
        if code.consumed {
            return Ok(CodeConsumption::AlreadyConsumed(code.clone()));
        }
        // Expired at `now` (it may have expired while the caller minted):
        // as absent, never consumed.
        if now >= code.expires_at {
            return Ok(CodeConsumption::NotFound);
        }
        if revoked {
            return Ok(CodeConsumption::AlreadyConsumed(code.clone()));
        }
        code.consumed = true;
        Ok(CodeConsumption::Consumed(code.clone()))
    }

    async fn insert_refresh_token(&self, record: RefreshTokenRecord) -> Result<(), StoreError> {
        let mut m = self.shard(&record.hash)?;
        if m.is_revoked(&record.grant.project, &record.grant.id) || m.refresh.contains_key(&record.hash) {
            return Ok(());
        }
        let mut families = self.families()?;
        // Insert-if-absent, rotated tokens included: a tombstone's hash is
        // taken, so a second insert cannot revive a rotated token.
        if families.tombstones.contains_key(&record.hash) {
            return Ok(());
        }
        let key = (record.grant.project.clone(), record.grant.id.clone());
        families.family(key).head = Some(record.clone());
        drop(families);
        // The summary first: listed before the token can be read.
        self.index()?
            .touch(&record.grant, Some(record.issued_at), record.expires_at);
        m.refresh.insert(record.hash, record);
        Ok(())
    }

    async fn refresh_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        {
            let m = self.shard(hash)?;
            if let Some(live) = m.refresh.get(hash) {
                return Ok(Some(live)
                    .filter(|r| &r.grant.project == project && !m.is_revoked(project, &r.grant.id))
                    .cloned());
            }
        }
        // A rotated token: its tombstone (gone with a revoked grant).
        Ok(self.families()?.rotated_record(project, hash))
    }

    async fn rotate_refresh_token(
        &self,
        project: &ProjectId,
        old: &SecretHash,
        new: RefreshTokenRecord,
        mark: crate::grant::RotationMark,
        grace: time::Duration,
    ) -> Result<RefreshRotation, StoreError> {
        let (old_shard, new_shard) = (shard_of(old), shard_of(&new.hash));
        // Both shards locked, in shard order, for the whole rotation.
        let (mut first, mut second) = match old_shard.cmp(&new_shard) {
            std::cmp::Ordering::Equal => (self.shard(old)?, None),
            std::cmp::Ordering::Less => {
                let a = self.shard(old)?;
                (a, Some(self.shard(&new.hash)?))
            }
            std::cmp::Ordering::Greater => {
                let b = self.shard(&new.hash)?;
                (self.shard(old)?, Some(b))
            }
        };
        let m = &mut *first;
        let revoked = match m.refresh.get(old) {
            Some(r) if &r.grant.project == project => m.is_revoked(project, &r.grant.id),
            Some(_) => return Ok(RefreshRotation::NotFound),
            None => {
                // Rotated before (a tombstone) or unknown. The rotation that
                // made the tombstone held this shard's lock while writing
                // it, so it is visible here.
                return Ok(match self.families()?.rotated_record(project, old) {
                    Some(record) if record.within_reuse_grace(mark.at, grace) => RefreshRotation::WithinGrace(record),
                    Some(record) => RefreshRotation::AlreadyRotated(record),
                    None => RefreshRotation::NotFound,
                });
            }
        };
        // Revoked, or expired at the rotation's time (it may have expired
        // while the caller minted): as absent, nothing changes.
        let expired = m.refresh.get(old).is_some_and(|r| mark.at >= r.expires_at);
        if revoked || expired {
            return Ok(RefreshRotation::NotFound);
        }
        let Some(mut old_record) = m.refresh.remove(old) else {
            return Ok(RefreshRotation::NotFound);
        };
        old_record.rotated = true;
        old_record.rotation = Some(mark.clone());
        {
            let mut families = self.families()?;
            let key = (project.clone(), old_record.grant.id.clone());
            let family = families.family(key.clone());
            family.head = Some(new.clone());
            family.rotated.push_back(Tombstone {
                hash: old_record.hash,
                issued_at: old_record.issued_at,
                expires_at: old_record.expires_at,
                rotation: Some(mark),
            });
            let mut evicted = Vec::new();
            while family.rotated.len() > MAX_ROTATED_PER_GRANT {
                evicted.extend(family.rotated.pop_front().map(|t| t.hash));
            }
            for h in evicted {
                families.tombstones.remove(&h);
            }
            families.tombstones.insert(old_record.hash, key);
        }
        self.index()?.touch(&new.grant, Some(new.issued_at), new.expires_at);
        // The marker is in every shard: the grant is not revoked in the
        // new token's shard either.
        let target = match second.as_deref_mut() {
            Some(s) => s,
            None => m,
        };
        target.refresh.insert(new.hash, new);
        Ok(RefreshRotation::Rotated(old_record))
    }

    async fn insert_access_token(&self, record: AccessTokenRecord) -> Result<(), StoreError> {
        let dropped = {
            let mut m = self.shard(&record.hash)?;
            // Insert-if-absent: a stored record is never replaced, so a
            // second insert cannot un-revoke a revoked token.
            if m.is_revoked(&record.project, &record.grant_id) || m.access.contains_key(&record.hash) {
                return Ok(());
            }
            let mut families = self.families()?;
            let family = families.family((record.project.clone(), record.grant_id.clone()));
            // The grant's expired access tokens, then its oldest beyond
            // the cap, are dropped (outside this lock, below).
            let now = record.claims.iat;
            let mut dropped: Vec<SecretHash> = Vec::new();
            family.access.retain(|(h, exp)| {
                let keep = *exp > now;
                if !keep {
                    dropped.push(*h);
                }
                keep
            });
            family.access.push_back((record.hash, record.claims.exp));
            while family.access.len() > MAX_ACCESS_TOKENS_PER_GRANT {
                dropped.extend(family.access.pop_front().map(|(h, _)| h));
            }
            drop(families);
            if let (Ok(iat), Ok(exp)) = (
                OffsetDateTime::from_unix_timestamp(record.claims.iat),
                OffsetDateTime::from_unix_timestamp(record.claims.exp),
            ) {
                self.index()?
                    .extend(&(record.project.clone(), record.grant_id.clone()), iat, exp);
            }
            m.access.insert(record.hash, record);
            dropped
        };
        for h in dropped {
            self.shard(&h)?.access.remove(&h);
        }
        Ok(())
    }

    async fn access_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        let m = self.shard(hash)?;
        Ok(m.access
            .get(hash)
            .filter(|a| &a.project == project && !m.is_revoked(project, &a.grant_id))
            .cloned())
    }

    async fn revoke_access_token(&self, project: &ProjectId, hash: &SecretHash) -> Result<bool, StoreError> {
        let mut m = self.shard(hash)?;
        Ok(match m.access.get_mut(hash) {
            Some(a) if &a.project == project => {
                a.revoked = true;
                true
            }
            _ => false,
        })
    }

    async fn revoke_grant(&self, project: &ProjectId, grant: &GrantId, now: OffsetDateTime) -> Result<(), StoreError> {
        // Every shard locked at once: the revocation is one atomic step
        // with respect to every other operation (see the type's docs).
        let mut shards = self.all_shards()?;
        self.revoke_locked(&mut shards, project, &HashSet::from([grant.clone()]), now)?;
        Ok(())
    }

    async fn grants_of_subject(
        &self,
        project: &ProjectId,
        subject: &Subject,
        page: &PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<GrantSummary>, StoreError> {
        let index = self.index()?;
        let start = match page.cursor() {
            Some(c) => Bound::Excluded((
                project.clone(),
                subject.as_str().to_owned(),
                c.at(),
                GrantId::new(c.id()).unwrap_or_else(|_| GrantId::lowest()),
            )),
            None => Bound::Included((
                project.clone(),
                subject.as_str().to_owned(),
                i64::MIN,
                GrantId::lowest(),
            )),
        };
        let items: Vec<GrantSummary> = index
            .by_subject
            .range((start, Bound::Unbounded))
            .take_while(|(p, s, _, _)| p == project && s == subject.as_str())
            .filter_map(|(p, _, _, id)| index.by_grant.get(&(p.clone(), id.clone())))
            .filter(|summary| summary.expires_at > now)
            .take(page.limit() + 1)
            .cloned()
            .collect();
        Ok(page.page(items, grant_cursor))
    }

    async fn revoke_grants(
        &self,
        project: &ProjectId,
        selector: &GrantSelector,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantSummary>, StoreError> {
        let mut shards = self.all_shards()?;
        let keys = self.index()?.select(project, selector, limit.max(1));
        let grants: HashSet<GrantId> = keys.into_iter().map(|(_, g)| g).collect();
        let mut revoked = self.revoke_locked(&mut shards, project, &grants, now)?;
        revoked
            .sort_by(|a, b| (a.grant.granted_at, a.grant.id.as_str()).cmp(&(b.grant.granted_at, b.grant.id.as_str())));
        Ok(revoked)
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let ts = now.unix_timestamp();
        let mut removed = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            let mut m = lock(shard)?;
            let before = m.len();
            m.codes.retain(|_, c| c.expires_at > now);
            m.refresh.retain(|_, r| r.expires_at > now);
            m.access.retain(|_, a| a.claims.exp > ts);
            removed += before - m.len();
            // Markers are copies: counted once, from the first shard.
            let markers = m.revoked.len();
            m.revoked.retain(|_, until| *until > now);
            if i == 0 {
                removed += markers - m.revoked.len();
            }
        }
        // Tombstones and per-grant indexes of what expired.
        let mut families = self.families()?;
        let mut gone_tombstones = Vec::new();
        families.by_grant.retain(|_, f| {
            f.rotated.retain_mut(|t| {
                let keep = t.expires_at > now;
                if !keep {
                    gone_tombstones.push(t.hash);
                }
                // Past every possible grace the mark only lets a copy of
                // the store and an old token derive later tokens (review
                // finding F2): it goes, the tombstone stays rotated.
                if t.rotation
                    .as_ref()
                    .is_some_and(|m| m.at + crate::project::MAX_REFRESH_REUSE_GRACE <= now)
                {
                    t.rotation = None;
                }
                keep
            });
            f.access.retain(|(_, exp)| *exp > ts);
            if f.head.as_ref().is_some_and(|h| h.expires_at <= now) && f.rotated.is_empty() {
                f.head = None;
            }
            f.head.is_some() || !f.rotated.is_empty() || !f.access.is_empty()
        });
        removed += gone_tombstones.len();
        for h in gone_tombstones {
            families.tombstones.remove(&h);
        }
        drop(families);
        // Summaries past their expiry (and the grace).
        let mut index = self.index()?;
        let cutoff = now - super::GRANT_SUMMARY_GRACE;
        let stale: Vec<FamilyKey> = index
            .by_grant
            .iter()
            .filter(|(_, s)| s.expires_at <= cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            index.remove(k);
        }
        removed += stale.len();
        Ok(removed)
    }
}

/// A bounded in-memory audit log, per project, in three retentions so
/// that anonymous traffic cannot bury what matters:
///
/// - security events ([`AuditClass::Security`]: reuse detections,
///   revocations, admin changes): the newest `capacity`;
/// - other activity: the newest `capacity`;
/// - rejections anyone can cause ([`AuditClass::Rejection`]): counted per
///   minute, event name and reason (the newest [`REJECTION_MINUTES`]
///   minutes' worth of counts, at most [`MAX_REJECTION_COUNTERS`]
///   counters, of which those naming a client (at most
///   [`super::MAX_REJECTION_CLIENTS_PER_MINUTE`] clients a minute, the
///   others counted together as `client=*`) may take three quarters;
///   a rejection needing one more is dropped and counted,
///   [`MemoryAuditLog::rejections_dropped`]), and only the newest [`REJECTION_SAMPLES`] kept whole as
///   samples.
///
/// [`super::AuditLog::query`] lists every retention (rejection samples
/// included) with its filters and pages, so security events are found
/// however many rejections arrived since.
#[derive(Debug)]
pub struct MemoryAuditLog {
    inner: Mutex<AuditRings>,
    capacity: usize,
    dropped: super::RejectionDrops,
}

/// Rejection samples kept whole per project.
pub const REJECTION_SAMPLES: usize = 100;
/// Minutes of rejection counts kept per project.
pub const REJECTION_MINUTES: i64 = 24 * 60;
/// Rejection counters kept per project (minute x event x reason).
pub const MAX_REJECTION_COUNTERS: usize = 10_000;

#[derive(Debug, Default)]
struct AuditRings {
    seq: u64,
    projects: HashMap<ProjectId, ProjectAudit>,
}

#[derive(Debug, Default)]
struct ProjectAudit {
    security: AuditRing,
    activity: AuditRing,
    samples: AuditRing,
    /// (unix minute, event name, reason) -> count, oldest first by minute.
    counts: std::collections::BTreeMap<(i64, &'static str, String), u64>,
    clients: super::RejectionClients,
}

type AuditRing = VecDeque<(u64, AuditEvent)>;

pub use super::RejectionCount;

impl Default for MemoryAuditLog {
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl MemoryAuditLog {
    /// A log keeping 10,000 security events and 10,000 other events per
    /// project.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log keeping `capacity` security events and `capacity` other
    /// events per project (at least one each).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(AuditRings::default()),
            capacity: capacity.max(1),
            dropped: super::RejectionDrops::default(),
        }
    }

    /// The newest `limit` events of a project (every retention, rejection
    /// samples included), oldest first.
    pub fn recent(&self, project: &ProjectId, limit: usize) -> Vec<AuditEvent> {
        let Ok(rings) = lock(&self.inner) else {
            return Vec::new();
        };
        let Some(p) = rings.projects.get(project) else {
            return Vec::new();
        };
        let mut all: Vec<&(u64, AuditEvent)> = p
            .security
            .iter()
            .chain(p.activity.iter())
            .chain(p.samples.iter())
            .collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        let skip = all.len().saturating_sub(limit);
        all.into_iter().skip(skip).map(|(_, e)| e.clone()).collect()
    }

    /// The rejection counts of a project, oldest minute first.
    pub fn rejection_counts(&self, project: &ProjectId) -> Vec<RejectionCount> {
        let Ok(rings) = lock(&self.inner) else {
            return Vec::new();
        };
        rings.projects.get(project).map_or_else(Vec::new, |p| {
            p.counts
                .iter()
                .map(|((minute, event, reason), count)| RejectionCount {
                    minute: OffsetDateTime::from_unix_timestamp(minute * 60).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    event: (*event).to_owned(),
                    reason: reason.clone(),
                    count: *count,
                })
                .collect()
        })
    }

    /// Rejections not counted because their project held
    /// [`MAX_REJECTION_COUNTERS`] counters (also logged, at most once a
    /// minute, and reported as the metric
    /// `authio_audit_rejections_dropped_total`).
    pub fn rejections_dropped(&self) -> u64 {
        self.dropped.count()
    }

    /// Every event held, oldest first.
    pub fn all(&self) -> Vec<AuditEvent> {
        let Ok(rings) = lock(&self.inner) else {
            return Vec::new();
        };
        let mut all: Vec<&(u64, AuditEvent)> = rings
            .projects
            .values()
            .flat_map(|p| p.security.iter().chain(p.activity.iter()).chain(p.samples.iter()))
            .collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, e)| e.clone()).collect()
    }
}

#[async_trait]
impl AuditSink for MemoryAuditLog {
    async fn record(&self, event: AuditEvent) {
        let Ok(mut rings) = lock(&self.inner) else { return };
        rings.seq += 1;
        let seq = rings.seq;
        let p = rings.projects.entry(event.project_id.clone()).or_default();
        let (ring, cap) = match event.kind.class() {
            AuditClass::Security => (&mut p.security, self.capacity),
            AuditClass::Activity => (&mut p.activity, self.capacity),
            AuditClass::Rejection => {
                if let Some((minute, name, reason)) = super::rejection_key(&event) {
                    let reason = p.clients.admit(event.project_id.as_str(), minute, reason);
                    let mut key = (minute, name, reason);
                    // Counters naming a client leave a quarter to the others.
                    if super::RejectionClients::names_client(&key.2)
                        && !p.counts.contains_key(&key)
                        && p.counts.len() >= MAX_REJECTION_COUNTERS - MAX_REJECTION_COUNTERS / 4
                    {
                        key.2 = super::RejectionClients::shared(&key.2);
                    }
                    if p.counts.contains_key(&key) || p.counts.len() < MAX_REJECTION_COUNTERS {
                        *p.counts.entry(key).or_default() += 1;
                    } else {
                        self.dropped.add(minute, "memory");
                    }
                    while p
                        .counts
                        .first_key_value()
                        .is_some_and(|((m, _, _), _)| *m <= minute - REJECTION_MINUTES)
                    {
                        p.counts.pop_first();
                    }
                }
                (&mut p.samples, REJECTION_SAMPLES)
            }
        };
        if ring.len() >= cap {
            ring.pop_front();
        }
        ring.push_back((seq, event));
    }
}

#[async_trait]
impl super::AuditLog for MemoryAuditLog {
    async fn rejection_counts(&self, project: &ProjectId) -> Result<Vec<RejectionCount>, StoreError> {
        Ok(Self::rejection_counts(self, project))
    }

    async fn query(&self, query: &super::AuditQuery) -> Result<super::AuditPage, StoreError> {
        let rings = lock(&self.inner)?;
        let limit = query.limit.clamp(1, 1000);
        let mut hits: Vec<&(u64, AuditEvent)> = rings
            .projects
            .get(&query.project)
            .map(|p| {
                p.security
                    .iter()
                    .chain(p.activity.iter())
                    .chain(p.samples.iter())
                    .filter(|(seq, e)| query.matches(*seq, e))
                    .collect()
            })
            .unwrap_or_default();
        hits.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let more = hits.len() > limit;
        hits.truncate(limit);
        Ok(super::AuditPage {
            next: if more {
                hits.last().map(|(seq, _)| super::AuditCursor(*seq))
            } else {
                None
            },
            events: hits.into_iter().map(|(_, e)| e.clone()).collect(),
        })
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

/// Signing keys in memory (per process: keys are regenerated on restart,
/// which invalidates every JWT signed before; use a persistent store when
/// that matters).
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: Mutex<HashMap<ProjectId, Vec<crate::keys::SigningKey>>>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl super::KeyStore for MemoryKeyStore {
    async fn keys(&self, project: &ProjectId) -> Result<Vec<crate::keys::SigningKey>, StoreError> {
        Ok(lock(&self.keys)?.get(project).cloned().unwrap_or_default())
    }

    async fn insert(&self, key: crate::keys::SigningKey) -> Result<bool, StoreError> {
        let mut map = lock(&self.keys)?;
        let keys = map.entry(key.project.clone()).or_default();
        if keys.iter().any(|k| k.kid == key.kid) {
            return Ok(false);
        }
        keys.push(key);
        Ok(true)
    }

    async fn activate(
        &self,
        project: &ProjectId,
        kid: &crate::keys::KeyId,
        now: OffsetDateTime,
        retired_publish_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        use crate::keys::KeyState;
        let mut map = lock(&self.keys)?;
        let Some(keys) = map.get_mut(project) else {
            return Ok(false);
        };
        let Some(alg) = keys
            .iter()
            .find(|k| &k.kid == kid && k.state == KeyState::Next)
            .map(crate::keys::SigningKey::algorithm)
        else {
            return Ok(false);
        };
        for k in keys.iter_mut() {
            if &k.kid == kid {
                k.state = KeyState::Active;
                k.activated_at = Some(now);
            } else if k.state == KeyState::Active && k.algorithm() == alg {
                k.state = KeyState::Retired;
                k.retired_at = Some(now);
                k.publish_until = Some(retired_publish_until);
            } else if k.state == KeyState::Next && k.algorithm() == alg {
                // A duplicate next key signed nothing: it may leave at once.
                k.state = KeyState::Retired;
                k.retired_at = Some(now);
                k.publish_until = Some(now);
            }
        }
        Ok(true)
    }

    async fn retire(
        &self,
        project: &ProjectId,
        kid: &crate::keys::KeyId,
        now: OffsetDateTime,
        publish_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut map = lock(&self.keys)?;
        let key = map.get_mut(project).and_then(|keys| {
            keys.iter_mut()
                .find(|k| &k.kid == kid && k.state == crate::keys::KeyState::Active)
        });
        Ok(match key {
            Some(k) => {
                k.state = crate::keys::KeyState::Retired;
                k.retired_at = Some(now);
                k.publish_until = Some(publish_until);
                true
            }
            None => false,
        })
    }

    async fn delete_expired(&self, project: &ProjectId, now: OffsetDateTime) -> Result<usize, StoreError> {
        let mut map = lock(&self.keys)?;
        let Some(keys) = map.get_mut(project) else {
            return Ok(0);
        };
        let before = keys.len();
        keys.retain(|k| !(k.state == crate::keys::KeyState::Retired && k.publish_until.is_some_and(|t| t <= now)));
        Ok(before - keys.len())
    }

    async fn delete(&self, project: &ProjectId, kid: &crate::keys::KeyId) -> Result<bool, StoreError> {
        let mut map = lock(&self.keys)?;
        let Some(keys) = map.get_mut(project) else {
            return Ok(false);
        };
        let before = keys.len();
        keys.retain(|k| &k.kid != kid);
        Ok(keys.len() < before)
    }
}

/// Single-use identifiers in memory.
///
/// Two bounds, both refusing (never forgetting a live entry, which would
/// let a replay through): the quota per project and client that the
/// driver passes with every call ([`super::ReplayStore`]), so one client
/// filling its own quota refuses only itself; and behind it a global bound
/// on all entries ([`MemoryReplayStore::new`], default
/// [`DEFAULT_REPLAY_MAX_ENTRIES`]), which keeps memory bounded whatever
/// the number of clients. Ids are kept as their SHA-256 digest, so an
/// entry costs the same whatever the `jti`'s length. Expired entries are
/// dropped by [`super::ReplayStore::purge`], and by a call that finds its
/// quota or the bound reached.
#[derive(Debug)]
pub struct MemoryReplayStore {
    inner: Mutex<ReplayEntries>,
    max_entries: usize,
}

/// The default global bound of a [`MemoryReplayStore`]: 100,000 entries
/// (a few MB).
pub const DEFAULT_REPLAY_MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
struct ReplayEntries {
    /// Live (and not yet swept) ids per project and scope.
    scopes: HashMap<(ProjectId, String), HashMap<SecretHash, OffsetDateTime>>,
    /// Entries over every scope.
    total: usize,
    /// No entry expires before this: a global sweep earlier frees nothing.
    earliest_expiry: Option<OffsetDateTime>,
}

impl ReplayEntries {
    /// Drops every entry expired at `now`; returns how many went.
    fn sweep(&mut self, now: OffsetDateTime) -> usize {
        let before = self.total;
        let mut earliest: Option<OffsetDateTime> = None;
        self.scopes.retain(|_, ids| {
            ids.retain(|_, exp| *exp > now);
            for exp in ids.values() {
                earliest = Some(earliest.map_or(*exp, |e| e.min(*exp)));
            }
            !ids.is_empty()
        });
        self.total = self.scopes.values().map(HashMap::len).sum();
        self.earliest_expiry = earliest;
        before - self.total
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_MAX_ENTRIES)
    }
}

impl MemoryReplayStore {
    /// A store holding at most `max_entries` unexpired entries over all
    /// projects and clients; when full, new identifiers are refused
    /// ([`super::ReplayCheck::Full`]) rather than old ones evicted, so a
    /// flood can never make a replay succeed. The per-client quotas the
    /// driver passes keep one client from reaching this bound alone.
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(ReplayEntries::default()),
            max_entries,
        }
    }

    /// Entries held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        lock(&self.inner).map(|e| e.total).unwrap_or(0)
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl super::ReplayStore for MemoryReplayStore {
    async fn check_and_insert(
        &self,
        project: &ProjectId,
        scope: &str,
        id: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
        quota: u32,
    ) -> Result<super::ReplayCheck, StoreError> {
        use super::ReplayCheck;
        let digest = SecretHash::of(id);
        let key = (project.clone(), scope.to_owned());
        let mut guard = lock(&self.inner)?;
        let e = &mut *guard;
        let quota = usize::try_from(quota).unwrap_or(usize::MAX);
        // One lock for the whole decision: replay, quota, bound, insert.
        let mut held = 0;
        let mut replaced = false;
        if let Some(ids) = e.scopes.get_mut(&key) {
            match ids.get(&digest) {
                Some(exp) if *exp > now => return Ok(ReplayCheck::Replayed),
                Some(_) => replaced = true,
                None => {}
            }
            if ids.len() >= quota {
                // Only this scope's expired entries can make room in it.
                let before = ids.len();
                ids.retain(|_, exp| *exp > now);
                replaced = false; // an expired entry of this id went too
                e.total -= before - ids.len();
            }
            held = ids.len();
        }
        if held >= quota {
            return Ok(ReplayCheck::QuotaExceeded);
        }
        if !replaced && e.total >= self.max_entries {
            if e.earliest_expiry.is_some_and(|t| t <= now) {
                e.sweep(now);
            }
            if e.total >= self.max_entries {
                return Ok(ReplayCheck::Full);
            }
        }
        let ids = e.scopes.entry(key).or_default();
        if ids.insert(digest, expires_at).is_none() {
            e.total += 1;
        }
        e.earliest_expiry = Some(e.earliest_expiry.map_or(expires_at, |t| t.min(expires_at)));
        Ok(ReplayCheck::Fresh)
    }

    async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(lock(&self.inner)?.sweep(now))
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;
    use crate::client::RegisteredClientId;
    use crate::grant::{Grant, GrantId, RotationMark, RotationNonce, Subject};
    use crate::resource::ResourceSet;
    use crate::scope::ScopeSet;
    use time::Duration;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn record(token: &str, project: &ProjectId) -> RefreshTokenRecord {
        RefreshTokenRecord {
            hash: SecretHash::of(token),
            grant: Grant {
                id: GrantId::from_random(&[9; 16]),
                project: project.clone(),
                client_id: ClientId::Registered(RegisteredClientId::from_random(&[1; 12])),
                subject: Subject::new("u").unwrap(),
                scopes: ScopeSet::new(),
                resources: ResourceSet::new(),
                granted_at: AT,
            },
            scopes: ScopeSet::new(),
            resources: ResourceSet::new(),
            issued_at: AT,
            expires_at: AT + Duration::days(1),
            rotated: false,
            rotation: None,
        }
    }

    fn mark(at: OffsetDateTime, successor: &str) -> RotationMark {
        RotationMark::new(at, RotationNonce::from_random([3; 32]), SecretHash::of(successor))
    }

    /// The `rotate_refresh_token` contract the SQL stores port: one winner
    /// records its mark; later calls decide by the winner's mark and store
    /// nothing.
    #[tokio::test]
    async fn rotation_with_grace() {
        let store = MemoryGrantStore::new();
        let p = ProjectId::new("p").unwrap();
        let grace = Duration::seconds(5);
        store.insert_refresh_token(record("rt1", &p)).await.unwrap();
        let won = store
            .rotate_refresh_token(&p, &SecretHash::of("rt1"), record("rt2", &p), mark(AT, "rt2"), grace)
            .await
            .unwrap();
        let RefreshRotation::Rotated(old) = won else {
            panic!("{won:?}")
        };
        assert!(old.rotated);
        assert_eq!(old.rotation, Some(mark(AT, "rt2")));
        // Within the grace: the winner's mark, nothing stored (rt3 absent).
        let again = store
            .rotate_refresh_token(
                &p,
                &SecretHash::of("rt1"),
                record("rt3", &p),
                mark(AT + Duration::seconds(4), "rt3"),
                grace,
            )
            .await
            .unwrap();
        let RefreshRotation::WithinGrace(seen) = again else {
            panic!("{again:?}")
        };
        assert_eq!(seen.rotation, Some(mark(AT, "rt2")));
        assert!(store.refresh_token(&p, &SecretHash::of("rt3")).await.unwrap().is_none());
        // After it, or with no grace: reuse.
        for (at, g) in [(AT + grace, grace), (AT, Duration::ZERO)] {
            let late = store
                .rotate_refresh_token(&p, &SecretHash::of("rt1"), record("rt4", &p), mark(at, "rt4"), g)
                .await
                .unwrap();
            assert!(matches!(late, RefreshRotation::AlreadyRotated(_)), "{late:?}");
        }
        // Another project, or a revoked grant: not found.
        let q = ProjectId::new("q").unwrap();
        let other = store
            .rotate_refresh_token(&q, &SecretHash::of("rt1"), record("rt5", &q), mark(AT, "rt5"), grace)
            .await
            .unwrap();
        assert_eq!(other, RefreshRotation::NotFound);
        store
            .revoke_grant(&p, &GrantId::from_random(&[9; 16]), AT)
            .await
            .unwrap();
        let revoked = store
            .rotate_refresh_token(&p, &SecretHash::of("rt1"), record("rt6", &p), mark(AT, "rt6"), grace)
            .await
            .unwrap();
        assert_eq!(revoked, RefreshRotation::NotFound);
    }

    /// Review finding F2: once no grace can reach it, purging drops the
    /// mark of a rotated token (the tombstone stays, rotated), so a copy of
    /// the store and an old token cannot derive the successor; a reuse is
    /// still detected. A mark younger than the maximum grace is kept.
    #[tokio::test]
    async fn purge_clears_marks_past_the_maximum_grace() {
        let store = MemoryGrantStore::new();
        let p = ProjectId::new("p").unwrap();
        let grace = crate::project::MAX_REFRESH_REUSE_GRACE;
        store.insert_refresh_token(record("rt1", &p)).await.unwrap();
        let won = store
            .rotate_refresh_token(&p, &SecretHash::of("rt1"), record("rt2", &p), mark(AT, "rt2"), grace)
            .await
            .unwrap();
        assert!(matches!(won, RefreshRotation::Rotated(_)), "{won:?}");
        let rt1 = SecretHash::of("rt1");
        // Within the maximum grace: kept.
        store.purge_expired(AT + grace - Duration::seconds(1)).await.unwrap();
        let kept = store.refresh_token(&p, &rt1).await.unwrap().unwrap();
        assert_eq!(kept.rotation, Some(mark(AT, "rt2")));
        // Past it: cleared, still rotated, still a reuse.
        store.purge_expired(AT + grace).await.unwrap();
        let cleared = store.refresh_token(&p, &rt1).await.unwrap().unwrap();
        assert!(cleared.rotated);
        assert_eq!(cleared.rotation, None);
        assert_eq!(store.tombstones(), 1);
        let late = store
            .rotate_refresh_token(&p, &rt1, record("rt3", &p), mark(AT + grace, "rt3"), grace)
            .await
            .unwrap();
        let RefreshRotation::AlreadyRotated(seen) = late else {
            panic!("{late:?}")
        };
        assert_eq!(seen.rotation, None);
        // The live successor is untouched.
        let rt2 = store.refresh_token(&p, &SecretHash::of("rt2")).await.unwrap().unwrap();
        assert!(!rt2.rotated);
    }
}

/// Admission windows in memory (one process). Bounded: at most
/// [`MAX_ADMISSION_WINDOWS`] windows; when full, ended ones are forgotten,
/// and if it is still full the admission is refused (the safe side).
#[derive(Debug, Default)]
pub struct MemoryAdmissionStore {
    windows: Mutex<HashMap<(ProjectId, String), AdmissionWindow>>,
}

/// A window's start, end and count.
type AdmissionWindow = (OffsetDateTime, OffsetDateTime, u32);

/// The most admission windows a [`MemoryAdmissionStore`] tracks.
pub const MAX_ADMISSION_WINDOWS: usize = 100_000;

impl MemoryAdmissionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl super::AdmissionStore for MemoryAdmissionStore {
    async fn admit(
        &self,
        project: &ProjectId,
        windows: &[(String, u32)],
        length: time::Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut map = lock(&self.windows)?;
        if map.len() + windows.len() > MAX_ADMISSION_WINDOWS {
            map.retain(|_, (_, ends, _)| *ends > now);
            if map.len() + windows.len() > MAX_ADMISSION_WINDOWS {
                return Ok(false);
            }
        }
        let mut next = Vec::with_capacity(windows.len());
        for (key, max) in windows {
            let k = (project.clone(), key.clone());
            let counted = match map.get(&k) {
                // A window restarts only once it ended: a request that read
                // the clock just before the window's start (a race, or
                // another instance's clock) counts in it.
                Some((started, ends, count)) if now < *ends => {
                    if count >= max {
                        return Ok(false);
                    }
                    (*started, *ends, count + 1)
                }
                _ if *max == 0 => return Ok(false),
                _ => (now, now + length, 1),
            };
            next.push((k, counted));
        }
        map.extend(next);
        Ok(true)
    }

    async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let mut map = lock(&self.windows)?;
        let before = map.len();
        map.retain(|_, (_, ends, _)| *ends > now);
        Ok(before - map.len())
    }
}

#[cfg(test)]
mod rejection_tests {
    use time::macros::datetime;

    use super::*;
    use crate::audit::AuditKind;

    fn wrong_secret(client: &str, minute: i64) -> AuditEvent {
        AuditEvent::new(
            ProjectId::new("proj_a").unwrap(),
            datetime!(2026-11-26 00:00 UTC) + time::Duration::minutes(minute),
            AuditKind::TokenRejected {
                client_id: Some(client.into()),
                grant_type: Some("client_credentials".into()),
                error: "invalid_client".into(),
                reason: "wrong_secret".into(),
                client_authenticated: false,
            },
        )
    }

    #[tokio::test]
    async fn decoy_clients_never_stop_the_counting() {
        let log = MemoryAuditLog::new();
        let project = ProjectId::new("proj_a").unwrap();
        let mut total = 0;
        for minute in 0..200 {
            for i in 0..100 {
                log.record(wrong_secret(&format!("decoy_{minute}_{i}"), minute)).await;
                total += 1;
            }
        }
        log.record(wrong_secret("target", 200)).await;
        let mut other = wrong_secret("x", 200);
        other.kind = AuditKind::TokenRejected {
            client_id: None,
            grant_type: None,
            error: "invalid_grant".into(),
            reason: "invalid_code".into(),
            client_authenticated: false,
        };
        log.record(other).await;
        total += 2;
        assert_eq!(log.rejections_dropped(), 0);
        let counts = log.rejection_counts(&project);
        assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), total);
        assert!(counts.len() <= MAX_REJECTION_COUNTERS);
        assert!(counts.iter().any(|c| c.reason == "invalid_code"));
        // The target is counted, apart or in the minute's shared counter.
        assert!(counts.iter().any(|c| c.minute == datetime!(2026-11-26 03:20 UTC)
            && (c.reason == "wrong_secret client=target" || c.reason == "wrong_secret client=*")));
        // At most 64 clients apart in a minute.
        let first = counts
            .iter()
            .filter(|c| c.minute == datetime!(2026-11-26 00:00 UTC) && c.reason != "wrong_secret client=*")
            .count();
        assert_eq!(first, crate::store::MAX_REJECTION_CLIENTS_PER_MINUTE);
    }
}
