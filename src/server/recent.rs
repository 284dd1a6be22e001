//! Records this process just wrote, kept so that the request that comes
//! next for them (the code exchange after an authorization, the refresh
//! after a token response, the next registration with an initial access
//! token) need not read them back from the store first
//! ([`crate::server::AuthorizationServerBuilder::recent_records`]).
//!
//! Only what the store's atomic call decides again is ever taken from
//! here. What the driver decides from a kept code or refresh token (its
//! client, redirect URI, PKCE challenge, scopes, resources, nonce, expiry)
//! is fixed when the record is stored; whether it was consumed or rotated
//! meanwhile, and whether its grant was revoked, the consume or rotation
//! call decides against the committed state. A kept copy may be stale in
//! exactly that (another server consumed or rotated it, or handed out the
//! same successor within the reuse grace), never in what the driver reads
//! from it. An initial access token's counters and revocation may be
//! stale, and [`crate::store::IatStore::use_once`] decides them; its
//! pinned metadata never changes after it is issued. A miss reads the
//! store as before. Each code and refresh token is taken at most once (a
//! second presentation reads the store).

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use crate::dcr::IatRecord;
use crate::grant::{CodeRecord, RefreshTokenRecord};
use crate::project::ProjectId;
use crate::secret::SecretHash;

/// How long an initial access token's record is used without reading the
/// store again. Its counters and revocation are decided by the store's
/// `use_once`; this only bounds how long a revoked token's requests are
/// validated before they are refused.
const IAT_TTL: Duration = Duration::seconds(5);

type Key = (ProjectId, SecretHash);

/// At most `capacity` entries (rounded up to an even number) in two
/// generations: new entries go into the young one; when it is full, it
/// becomes the old one and the previous old generation is dropped whole
/// (no per-entry bookkeeping; the caller drops it after unlocking).
#[derive(Debug)]
struct Generations<V> {
    young: HashMap<Key, V>,
    old: HashMap<Key, V>,
    half: usize,
}

impl<V> Generations<V> {
    fn new(capacity: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            half: capacity.div_ceil(2),
        }
    }

    /// Keeps `value`; returns the generation dropped to make room, for
    /// the caller to free outside the lock.
    #[must_use]
    fn put(&mut self, key: Key, value: V) -> Option<HashMap<Key, V>> {
        if self.half == 0 {
            return None;
        }
        let dropped = if self.young.len() >= self.half && !self.young.contains_key(&key) {
            Some(std::mem::replace(&mut self.old, std::mem::take(&mut self.young)))
        } else {
            None
        };
        self.old.remove(&key);
        self.young.insert(key, value);
        dropped
    }

    fn take(&mut self, key: &Key) -> Option<V> {
        self.young.remove(key).or_else(|| self.old.remove(key))
    }

    fn peek(&self, key: &Key) -> Option<&V> {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[derive(Debug)]
pub(crate) struct RecentRecords {
    enabled: bool,
    codes: Mutex<Generations<CodeRecord>>,
    refresh: Mutex<Generations<RefreshTokenRecord>>,
    iats: Mutex<Generations<(OffsetDateTime, IatRecord)>>,
}

fn lock<V>(m: &Mutex<Generations<V>>) -> std::sync::MutexGuard<'_, Generations<V>> {
    // A panic while holding the lock cannot leave a map half-updated in a
    // way that matters here (every entry is re-checked by the store).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RecentRecords {
    /// At most `capacity` codes, as many refresh tokens and as many
    /// initial access tokens; 0 keeps nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            enabled: capacity > 0,
            codes: Mutex::new(Generations::new(capacity)),
            refresh: Mutex::new(Generations::new(capacity)),
            iats: Mutex::new(Generations::new(capacity)),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// A code just stored (unconsumed).
    pub(crate) fn put_code(&self, record: CodeRecord) {
        if record.consumed {
            return;
        }
        let dropped = lock(&self.codes).put((record.grant.project.clone(), record.hash), record);
        drop(dropped);
    }

    /// The code stored here under `hash`, taken out.
    pub(crate) fn take_code(&self, project: &ProjectId, hash: &SecretHash) -> Option<CodeRecord> {
        lock(&self.codes).take(&(project.clone(), *hash))
    }

    /// A refresh token just stored (not rotated).
    pub(crate) fn put_refresh(&self, record: RefreshTokenRecord) {
        if record.rotated {
            return;
        }
        let dropped = lock(&self.refresh).put((record.grant.project.clone(), record.hash), record);
        drop(dropped);
    }

    /// The refresh token stored here under `hash`, taken out.
    pub(crate) fn take_refresh(&self, project: &ProjectId, hash: &SecretHash) -> Option<RefreshTokenRecord> {
        lock(&self.refresh).take(&(project.clone(), *hash))
    }

    /// An initial access token's record as read or used at `now`.
    pub(crate) fn put_iat(&self, project: &ProjectId, record: IatRecord, now: OffsetDateTime) {
        let dropped = lock(&self.iats).put((project.clone(), record.hash), (now, record));
        drop(dropped);
    }

    /// Drops an initial access token's record (its `use_once` refused it).
    pub(crate) fn forget_iat(&self, project: &ProjectId, hash: &SecretHash) {
        lock(&self.iats).take(&(project.clone(), *hash));
    }

    /// The record of an initial access token read or used here less than
    /// [`IAT_TTL`] before `now` (and not after it: a clock that went back
    /// does not extend it).
    pub(crate) fn iat(&self, project: &ProjectId, hash: &SecretHash, now: OffsetDateTime) -> Option<IatRecord> {
        let iats = lock(&self.iats);
        let (at, record) = iats.peek(&(project.clone(), *hash))?;
        (*at <= now && now - *at < IAT_TTL).then(|| record.clone())
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize, usize) {
        (
            lock(&self.codes).len(),
            lock(&self.refresh).len(),
            lock(&self.iats).len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        (ProjectId::new("p").unwrap(), SecretHash::of(&n.to_string()))
    }

    #[test]
    fn generations_hold_at_most_the_capacity_and_the_newest_half() {
        let mut g = Generations::new(4);
        for n in 0..10u8 {
            let _ = g.put(key(n), n);
            assert!(g.len() <= 4, "{} entries after {n}", g.len());
        }
        // The two newest are always kept.
        assert_eq!(g.peek(&key(9)), Some(&9));
        assert_eq!(g.peek(&key(8)), Some(&8));
        assert_eq!(g.peek(&key(0)), None);
        assert_eq!(g.take(&key(9)), Some(9));
        assert_eq!(g.take(&key(9)), None, "an entry is taken once");
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let recent = RecentRecords::new(0);
        assert!(!recent.enabled());
        let mut g = Generations::new(0);
        assert!(g.put(key(1), 1).is_none());
        assert_eq!(g.len(), 0);
        assert_eq!(recent.len(), (0, 0, 0));
    }
}
