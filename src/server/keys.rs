//! Signing keys in the driver: rotation with the injected clock and
//! randomness, the JWKS, and the active key for signing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::{BoxFuture, FutureExt as _, Shared, WeakShared};

use time::{Duration, OffsetDateTime};

use super::EndpointError;
use crate::audit::AuditKind;
use crate::error::OAuthError;
use crate::jose::{JoseError, JwkSet, PrivateKey, SigningAlgorithm};
use crate::keys::{self, KeyId, KeyState, RotationAction, SigningKey};
use crate::project::{AccessTokenFormat, ProjectId, ProjectSettings};
use crate::store::StoreError;

use super::{AdminError, AuthorizationServer};

/// How long a process reuses a project's signing keys read from the
/// [`crate::store::KeyStore`] by default: 10 seconds (see
/// [`super::AuthorizationServerBuilder::signing_key_cache_ttl`]).
pub const DEFAULT_SIGNING_KEY_CACHE_TTL: Duration = Duration::seconds(10);

/// What [`AuthorizationServer::revoke_signing_key`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRevocation {
    /// The revoked key (deleted from the store).
    pub kid: KeyId,
    /// The key activated in its place, when the revoked key was the
    /// active key of its algorithm.
    pub replaced_by: Option<KeyId>,
}

/// What one rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// Keys created (published).
    pub created: Vec<KeyId>,
    /// Keys activated.
    pub activated: Vec<KeyId>,
    /// Keys retired because their algorithm is no longer used.
    pub retired: Vec<KeyId>,
    /// How many retired keys were deleted.
    pub deleted: usize,
}

impl RotationReport {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.activated.is_empty() && self.retired.is_empty() && self.deleted == 0
    }
}

/// The algorithms a project signs with: its access-token algorithm when
/// access tokens are JWTs, its ID-token algorithm when it offers `openid`.
pub(crate) fn algorithms_in_use(settings: &ProjectSettings) -> Vec<SigningAlgorithm> {
    let mut algs = Vec::new();
    if settings.access_token_format == AccessTokenFormat::Jwt {
        algs.push(settings.signing.access_token_algorithm);
    }
    if settings.scopes_supported.contains("openid") && !algs.contains(&settings.signing.id_token_algorithm) {
        algs.push(settings.signing.id_token_algorithm);
    }
    // Client assertions at upstream providers sign with the access-token
    // algorithm.
    if settings.upstream.uses_private_key_jwt() && !algs.contains(&settings.signing.access_token_algorithm) {
        algs.push(settings.signing.access_token_algorithm);
    }
    algs
}

impl AuthorizationServer {
    /// Rotates a project's signing keys at the clock's `now`, following
    /// [`keys::plan_rotation`]: creates the first key (active at once) or a
    /// next key within the pre-publication window, activates a due next
    /// key (retiring the active one, still published until its tokens
    /// expired), and deletes retired keys past their publication. Records
    /// `signing_key.*` audit events. Idempotent: run it periodically (the
    /// example server does, with its purge); signing and the JWKS also run
    /// it when a project has no usable key.
    ///
    /// Rotations of one server are serialized; across servers the
    /// [`crate::store::KeyStore::activate`] contract keeps one active key
    /// per algorithm.
    ///
    /// # Errors
    /// `unknown_project`; `server_error` when storage or key generation
    /// fails (never with detail).
    pub async fn rotate_signing_keys(&self, project: &ProjectId) -> Result<RotationReport, EndpointError> {
        let settings = self.project_for_request(project).await?;
        self.rotate_with(project, &settings).await
    }

    pub(crate) async fn rotate_with(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
    ) -> Result<RotationReport, EndpointError> {
        let _serialized = self.rotation_lock.lock().await;
        // Whatever happens below, this process's copy is stale after it.
        let _invalidate = InvalidateOnDrop(&self.key_cache, project);
        let algs = algorithms_in_use(settings);
        let mut report = RotationReport::default();
        let now = self.clock.now();
        let keys = self.keys.keys(project).await?;
        for action in keys::plan_rotation(&keys, &algs, &settings.signing, settings.access_token_ttl, now) {
            match action {
                RotationAction::Create { algorithm, activate } => {
                    let key = self.generate_key(project, algorithm)?;
                    let kid = key.kid.clone();
                    if !self.keys.insert(key).await? {
                        return Err(StoreError::new("signing key id collision").into());
                    }
                    self.emit(
                        project,
                        AuditKind::SigningKeyCreated {
                            kid: kid.to_string(),
                            algorithm: algorithm.as_str().to_owned(),
                        },
                    )
                    .await;
                    report.created.push(kid.clone());
                    if activate {
                        let until = now + settings.access_token_ttl + keys::RETIRED_KEY_GRACE;
                        if self.keys.activate(project, &kid, now, until).await? {
                            self.emit(project, AuditKind::SigningKeyActivated { kid: kid.to_string() })
                                .await;
                            report.activated.push(kid);
                        }
                    }
                }
                RotationAction::Activate {
                    kid,
                    retired_publish_until,
                } => {
                    if self.keys.activate(project, &kid, now, retired_publish_until).await? {
                        self.emit(project, AuditKind::SigningKeyActivated { kid: kid.to_string() })
                            .await;
                        report.activated.push(kid);
                    }
                }
                RotationAction::Retire { kid, publish_until } => {
                    if self.keys.retire(project, &kid, now, publish_until).await? {
                        self.emit(project, AuditKind::SigningKeyRetired { kid: kid.to_string() })
                            .await;
                        report.retired.push(kid);
                    }
                }
                RotationAction::DeleteExpired => {
                    let count = self.keys.delete_expired(project, now).await?;
                    if count > 0 {
                        self.emit(project, AuditKind::SigningKeysDeleted { count }).await;
                    }
                    report.deleted += count;
                }
            }
        }
        Ok(report)
    }

    fn generate_key(&self, project: &ProjectId, alg: SigningAlgorithm) -> Result<SigningKey, EndpointError> {
        // A P-256 scalar is invalid with probability about 2^-128 per
        // draw; a few tries cannot all fail unless the random source is
        // broken.
        for _ in 0..4 {
            match PrivateKey::generate(alg, &self.random_array::<32>()) {
                Ok(pk) => {
                    let kid = KeyId::from_random(alg, &self.random_array::<16>());
                    return Ok(SigningKey::new(project.clone(), kid, pk, self.clock.now()));
                }
                Err(JoseError::Retry) => {}
                Err(_) => break,
            }
        }
        Err(OAuthError::server_error().into())
    }

    /// The JWKS of a project at the clock's `now`: next, active and
    /// not-yet-expired retired keys ([RFC 7517 section 5]), public members
    /// only. Creates the project's first keys when it signs with an
    /// algorithm that has none yet.
    ///
    /// # Errors
    /// `unknown_project`; `server_error` when storage fails.
    ///
    /// The keys come from this process's copy of the project's keys when
    /// it is younger than the signing-key cache lifetime
    /// ([`super::AuthorizationServerBuilder::signing_key_cache_ttl`]), so
    /// a JWKS request neither reads nor decrypts nor parses private keys
    /// on every call.
    ///
    /// [RFC 7517 section 5]: https://www.rfc-editor.org/rfc/rfc7517#section-5
    pub async fn jwks(&self, project: &ProjectId) -> Result<JwkSet, EndpointError> {
        let settings = self.project_for_request(project).await?;
        let mut keys = self.project_keys(project).await?;
        let missing = algorithms_in_use(&settings)
            .into_iter()
            .any(|a| keys::active_key(&keys, a).is_none());
        if missing {
            self.rotate_with(project, &settings).await?;
            keys = self.project_keys(project).await?;
        }
        Ok(keys::jwks(&keys, self.clock.now()))
    }

    /// Revokes a signing key at once, for a key believed compromised:
    /// when it is the active key of its algorithm, a new key is created
    /// and activated in its place immediately (no pre-publication) and the
    /// revoked key retires with no publication time left; then the key is
    /// deleted from the store whatever its state (next, active or
    /// retired). From then on this process neither publishes it in the
    /// JWKS nor signs with it; other processes sharing the store follow
    /// within their signing-key cache lifetime (default 10 s,
    /// [`super::AuthorizationServerBuilder::signing_key_cache_ttl`]).
    /// Records `signing_key.revoked` (and `signing_key.created` /
    /// `signing_key.activated` for the replacement).
    ///
    /// Tokens it signed stop verifying wherever the JWKS is fetched anew:
    /// resource servers that cached the JWKS (it is cacheable for 5
    /// minutes) accept them until their copy expires. Revoke the grants
    /// concerned as well if their refresh tokens must stop working.
    ///
    /// # Errors
    /// [`AdminError::UnknownProject`], [`AdminError::UnknownSigningKey`]
    /// (no such key in the project), or [`AdminError::Store`] (storage or
    /// key generation failed; what was done stays done: retry).
    pub async fn revoke_signing_key(&self, project: &ProjectId, kid: &KeyId) -> Result<KeyRevocation, AdminError> {
        self.project(project).await?;
        let _serialized = self.rotation_lock.lock().await;
        let _invalidate = InvalidateOnDrop(&self.key_cache, project);
        let keys = self.keys.keys(project).await?;
        let key = keys
            .iter()
            .find(|k| &k.kid == kid)
            .ok_or(AdminError::UnknownSigningKey)?;
        let now = self.clock.now();
        let mut replaced_by = None;
        if key.state == KeyState::Active {
            let algorithm = key.algorithm();
            let new = self
                .generate_key(project, algorithm)
                .map_err(|_| StoreError::new("generating a replacement signing key failed"))?;
            let new_kid = new.kid.clone();
            if !self.keys.insert(new).await? {
                return Err(StoreError::new("signing key id collision").into());
            }
            self.emit(
                project,
                AuditKind::SigningKeyCreated {
                    kid: new_kid.to_string(),
                    algorithm: algorithm.as_str().to_owned(),
                },
            )
            .await;
            // Activated now; the compromised key retires unpublished.
            if self.keys.activate(project, &new_kid, now, now).await? {
                self.emit(
                    project,
                    AuditKind::SigningKeyActivated {
                        kid: new_kid.to_string(),
                    },
                )
                .await;
                replaced_by = Some(new_kid);
            }
        }
        self.keys.delete(project, kid).await?;
        self.emit(
            project,
            AuditKind::SigningKeyRevoked {
                kid: kid.to_string(),
                replaced_by: replaced_by.as_ref().map(ToString::to_string),
            },
        )
        .await;
        Ok(KeyRevocation {
            kid: kid.clone(),
            replaced_by,
        })
    }

    /// A project's keys: this process's copy when it is younger than the
    /// cache lifetime, else read from the store (and kept).
    pub(crate) async fn project_keys(&self, project: &ProjectId) -> Result<Vec<SigningKey>, StoreError> {
        let now = self.clock.now();
        if let Some(keys) = self.key_cache.get(project, now, self.key_cache_ttl) {
            return Ok(keys);
        }
        if !self.key_cache_ttl.is_positive() {
            return self.keys.keys(project).await;
        }
        // Requests that find the copy missing or stale together share one
        // read (its result, an error included): a cold start or an expiry
        // under load would otherwise read and open every key once per
        // request. A read is shared only within one generation, so nobody
        // joins a read that began before a local rotation or revocation,
        // and only in its first moments; a joined request waits as long as
        // the read takes.
        let max_age = SHARED_KEY_READ_MAX_AGE.min(self.key_cache_ttl);
        let read = self.key_cache.read(project, now, max_age, || {
            let (store, cache, project) = (self.keys.clone(), self.key_cache.clone(), project.clone());
            let ttl = self.key_cache_ttl;
            move |generation| {
                async move {
                    let keys = store.keys(&project).await.map_err(Arc::new)?;
                    cache.put(&project, &keys, now, generation, ttl);
                    Ok(keys)
                }
                .boxed()
            }
        });
        let result = read.clone().await;
        self.key_cache.done(project, &read);
        result.map_err(|e| match e.kind() {
            crate::store::StoreErrorKind::CapacityExceeded => StoreError::capacity_exceeded(e.message()),
            _ => StoreError::with_source(e.message().to_owned(), SharedStoreError(e)),
        })
    }

    /// The active key of `alg` for a project, rotating first when there is
    /// none or the active one is due.
    pub(crate) async fn signing_key(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        alg: SigningAlgorithm,
    ) -> Result<SigningKey, EndpointError> {
        let now = self.clock.now();
        let keys = self.project_keys(project).await?;
        let algs = algorithms_in_use(settings);
        let plan = keys::plan_rotation(&keys, &algs, &settings.signing, settings.access_token_ttl, now);
        let keys = if plan.is_empty() && keys::active_key(&keys, alg).is_some() {
            keys
        } else {
            self.rotate_with(project, settings).await?;
            self.project_keys(project).await?
        };
        keys::active_key(&keys, alg)
            .cloned()
            .ok_or_else(|| OAuthError::server_error().into())
    }
}

/// The most projects whose keys one process keeps.
const KEY_CACHE_MAX_PROJECTS: usize = 10_000;

/// How long after it began a read of a project's keys is still joined by
/// requests that find the copy missing or stale (at most the cache
/// lifetime); later ones start their own. Short: a burst of misses comes
/// within one read's time, and a read stuck on a dead connection holds
/// every request that joined it for as long as it is stuck.
const SHARED_KEY_READ_MAX_AGE: Duration = Duration::milliseconds(250);

/// Each process's copy of its projects' signing keys (parsed, opened),
/// reused for the cache lifetime. Local rotations and revocations drop
/// the project's copy; a read that raced one of them is not kept (the
/// generation moved on), so this process never goes back to keys from
/// before its own change. Changes made by other processes are seen once
/// the copy is older than the lifetime.
#[derive(Default)]
pub(crate) struct KeyCache {
    state: Mutex<KeyCacheState>,
}

#[derive(Default)]
struct KeyCacheState {
    entries: HashMap<ProjectId, (OffsetDateTime, Vec<SigningKey>)>,
    generation: u64,
    /// The reads in progress, one per project, with the generation each
    /// began in. Weak: when every request waiting on a read gives up, the
    /// read is dropped with them.
    reads: HashMap<ProjectId, (u64, OffsetDateTime, WeakShared<KeyReadFuture>)>,
}

/// One store read of a project's keys, shared by the requests waiting on it.
type KeyRead = Shared<KeyReadFuture>;
type KeyReadFuture = BoxFuture<'static, Result<Vec<SigningKey>, Arc<StoreError>>>;

/// A shared read's error, as the source of each waiter's own
/// [`StoreError`].
#[derive(Debug)]
struct SharedStoreError(Arc<StoreError>);

impl std::fmt::Display for SharedStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    fn state(&self) -> MutexGuard<'_, KeyCacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The copy, if read at most `ttl` ago (and not in the future: a
    /// clock that went back does not extend it).
    fn get(&self, project: &ProjectId, now: OffsetDateTime, ttl: Duration) -> Option<Vec<SigningKey>> {
        let state = self.state();
        let (at, keys) = state.entries.get(project)?;
        (*at <= now && now - *at < ttl).then(|| keys.clone())
    }

    /// Keeps what a read that began at `generation` found, unless a local
    /// change happened since.
    fn put(&self, project: &ProjectId, keys: &[SigningKey], now: OffsetDateTime, generation: u64, ttl: Duration) {
        if !ttl.is_positive() {
            return;
        }
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= KEY_CACHE_MAX_PROJECTS && !state.entries.contains_key(project) {
            state.entries.clear();
        }
        state.entries.insert(project.clone(), (now, keys.to_vec()));
    }

    fn invalidate(&self, project: &ProjectId) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        state.entries.remove(project);
        state.reads.remove(project);
    }

    /// The read of `project`'s keys in progress in this generation, or a
    /// new one (`start` makes it from the generation it begins in).
    /// A read older than `max_age` is not joined (one stuck on a dead
    /// connection holds only the requests of its first moments, for as
    /// long as it is stuck).
    fn read<F>(&self, project: &ProjectId, now: OffsetDateTime, max_age: Duration, start: impl FnOnce() -> F) -> KeyRead
    where
        F: FnOnce(u64) -> BoxFuture<'static, Result<Vec<SigningKey>, Arc<StoreError>>>,
    {
        let mut state = self.state();
        let generation = state.generation;
        if let Some((g, started, weak)) = state.reads.get(project)
            && *g == generation
            && *started <= now
            && now - *started < max_age
            && let Some(read) = weak.upgrade()
        {
            return read;
        }
        let read = start()(generation).shared();
        if let Some(weak) = read.downgrade() {
            if state.reads.len() >= KEY_CACHE_MAX_PROJECTS && !state.reads.contains_key(project) {
                state.reads.retain(|_, (_, _, w)| w.upgrade().is_some());
            }
            state.reads.insert(project.clone(), (generation, now, weak));
        }
        read
    }

    /// A read has ended: later requests start their own (an error is not
    /// handed on past the requests that waited for it).
    fn done(&self, project: &ProjectId, read: &KeyRead) {
        let mut state = self.state();
        if state
            .reads
            .get(project)
            .and_then(|(_, _, weak)| weak.upgrade())
            .is_none_or(|current| Shared::ptr_eq(&current, read))
        {
            state.reads.remove(project);
        }
    }
}

/// Drops a project's cached keys when it goes out of scope: after a
/// rotation or revocation, whether it finished or failed half-way.
struct InvalidateOnDrop<'a>(&'a KeyCache, &'a ProjectId);

impl Drop for InvalidateOnDrop<'_> {
    fn drop(&mut self) {
        self.0.invalidate(self.1);
    }
}
