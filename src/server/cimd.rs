//! Resolving Client ID Metadata Documents: cache, then pre-flight checks,
//! then ONE shared fetch per project and URL, then validation, then cache;
//! and the dashboard's preview. Every rule lives in [`crate::cimd`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::{BoxFuture, FutureExt as _, Shared, WeakShared};
use time::OffsetDateTime;

use super::EndpointError;
use super::{AuthorizationServer, AuthorizationServerBuilder, Clock};
use crate::audit::AuditKind;
use crate::cimd::{
    self, CachedDocument, CimdError, CimdPreview, ClientIdUrl, FailedPreview, FetchClass, FetchGovernor, FetchPlan,
    FetchRequest, InFlightCounts, MetadataFetcher, RequestSource, ResolvedPreview,
};
use crate::client::{Client, ClientMetadata};
use crate::error::{ErrorCode, OAuthError};
use crate::project::{ProjectId, ProjectSettings};
use crate::store::CimdCache;
use crate::store::memory::MemoryCimdCache;

impl AuthorizationServer {
    /// Resolves a CIMD `client_id` URL into a client for a project.
    ///
    /// Steps: refuse when `settings.cimd_enabled` is false; check the URL
    /// against the project's URL and trust policies and refuse IP-literal
    /// or `localhost` special-use hosts ([`cimd::check_url`]); use a fresh
    /// cached document, re-validated against the current policy; otherwise
    /// fetch through the configured [`MetadataFetcher`] (concurrent
    /// resolutions of the same project and URL share one fetch), validate
    /// ([`cimd::validate_response`]) and cache valid documents for as long
    /// as [`cimd::cache_expiry`] allows. Failures are never cached.
    ///
    /// Records `oauth_client.cimd_resolved` on success and
    /// `oauth_client.cimd_fetch_failed` with the machine-readable reason on
    /// every failure.
    ///
    /// # Errors
    /// A [`CimdError`]; its [`CimdError::reason`] says why. Callers show it
    /// to the user at the authorization endpoint (never redirecting) and
    /// answer `invalid_client` at the token endpoint.
    pub async fn resolve_cimd_client(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        url: &ClientIdUrl,
    ) -> Result<Client, CimdError> {
        self.resolve_cimd_client_from(project, settings, url, None).await
    }

    /// [`Self::resolve_cimd_client`] for a request from `source` (the
    /// client IP, as the HTTP edge knows it): a first fetch of an unknown
    /// URL is also limited per source ([`cimd::FetchLimits`]).
    ///
    /// # Errors
    /// As [`Self::resolve_cimd_client`].
    pub async fn resolve_cimd_client_from(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        url: &ClientIdUrl,
        source: Option<&RequestSource>,
    ) -> Result<Client, CimdError> {
        let ctx = FetchContext { source, preview: false };
        self.resolve_cimd(project, settings, url, ctx).await.map(|r| r.client)
    }

    /// The dashboard's "Preview CIMD" (`POST /oauth2/cimd/resolve`): given
    /// the body `{"client_id": "<url>"}`, resolves the document for the
    /// project exactly as an authorization request would (including the
    /// cache and the audit events) and describes the outcome.
    ///
    /// A resolution failure is `Ok(CimdPreview::Failed)` carrying the exact
    /// reason; nothing is cached for it. A `client_id` that is not even an
    /// `https` URL fails with `invalid_url` without an audit event.
    ///
    /// # Errors
    /// `invalid_request` for a malformed body or an unknown project (the
    /// HTTP layer renders the latter as 404, like [`Self::metadata`]);
    /// `server_error` when the project store fails.
    pub async fn preview_cimd(&self, project: &ProjectId, body: &[u8]) -> Result<CimdPreview, EndpointError> {
        self.preview_cimd_from(project, body, None).await
    }

    /// [`Self::preview_cimd`] for a request from `source`. Previews that
    /// need a fetch draw from their own smaller budget and the source's
    /// ([`cimd::FetchLimits::preview_burst`]), never from the budgets
    /// authorization requests use.
    ///
    /// # Errors
    /// As [`Self::preview_cimd`].
    pub async fn preview_cimd_from(
        &self,
        project: &ProjectId,
        body: &[u8],
        source: Option<&RequestSource>,
    ) -> Result<CimdPreview, EndpointError> {
        let settings = self
            .projects
            .get(project)
            .await?
            .ok_or_else(|| OAuthError::with_description(ErrorCode::InvalidRequest, "unknown project"))?;
        let raw = cimd::parse_preview_request(body)?;
        let url = match ClientIdUrl::try_from(raw.clone()) {
            Ok(url) => url,
            Err(e) => return Ok(CimdPreview::Failed(FailedPreview::new(&raw, &CimdError::InvalidUrl(e)))),
        };
        let ctx = FetchContext { source, preview: true };
        Ok(match self.resolve_cimd(project, &settings, &url, ctx).await {
            Ok(r) => CimdPreview::Resolved(Box::new(ResolvedPreview::new(&r.client, r.from_cache, r.expires_at))),
            Err(e) => CimdPreview::Failed(FailedPreview::new(url.as_str(), &e)),
        })
    }

    /// Whether a [`MetadataFetcher`] is configured: without one, CIMD is
    /// not advertised in the metadata and every resolution fails with
    /// `fetcher_unavailable`.
    pub fn has_metadata_fetcher(&self) -> bool {
        self.metadata_fetcher.is_some()
    }

    async fn resolve_cimd(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        url: &ClientIdUrl,
        ctx: FetchContext<'_>,
    ) -> Result<Resolution, CimdError> {
        let result = self.resolve_cimd_steps(project, settings, url, ctx).await;
        let client_id = url.as_str().to_owned();
        let kind = match &result {
            Ok(r) => AuditKind::CimdResolved {
                client_id,
                from_cache: r.from_cache,
            },
            Err(e) => AuditKind::CimdFetchFailed {
                client_id,
                reason: e.reason().to_owned(),
                http_status: e.http_status(),
                detail: Some(e.to_string()),
            },
        };
        self.emit(project, kind).await;
        result
    }

    async fn resolve_cimd_steps(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        url: &ClientIdUrl,
        ctx: FetchContext<'_>,
    ) -> Result<Resolution, CimdError> {
        if !settings.cimd_enabled {
            return Err(CimdError::Disabled);
        }
        let allow_loopback = self
            .metadata_fetcher
            .as_ref()
            .is_some_and(|f| f.allows_loopback_for_development());
        let url = cimd::check_url(url, &settings.cimd, allow_loopback)?;
        let now = self.clock.now();
        let stale = match lookup(self.cimd_cache.as_ref(), project, settings, &url, now).await? {
            Lookup::Fresh(hit) => return Ok(hit.into_resolution()),
            Lookup::Stale(entry) => Some(entry),
            Lookup::Miss => None,
        };
        let url_key = FetchGovernor::url_key(project.as_str(), url.as_str());
        let known = stale.is_some() || self.cimd_inflight.is_known(&url_key, now, &self.cimd_limits);
        if !known && let Some(e) = self.cimd_inflight.negative(&url_key, now) {
            return Err(e);
        }
        let fetcher = self.metadata_fetcher.clone().ok_or(CimdError::FetcherUnavailable)?;
        let key = (project.clone(), url.clone());
        let meta = FetchMeta {
            class: FetchClass::of(ctx.preview, known),
            host: url.host().to_owned(),
            directory: url.directory(),
            source: ctx.source.cloned(),
        };
        let shared = self
            .cimd_inflight
            .join_or_start(key.clone(), meta, now, &self.cimd_limits, |id| {
                let job = FetchJob {
                    fetcher,
                    cache: self.cimd_cache.clone(),
                    clock: self.clock.clone(),
                    inflight: self.cimd_inflight.clone(),
                    limits: self.cimd_limits,
                    settings: settings.clone(),
                    key,
                    id,
                };
                job.run().boxed()
            });
        let fetched = match (shared.await, stale) {
            (Ok(f), _) => f,
            // Stale-while-revalidate: the host is busy or the limits
            // refused; the last valid document, re-validated under the
            // current policy, is still good for the grace period.
            (Err(e), Some(entry)) if is_busy(&e) => {
                let client = cimd::validate_document(
                    &url,
                    &entry.document,
                    &settings.cimd,
                    settings.effective_redirect_uri_policy(),
                    entry.fetched_at,
                )?;
                return Ok(Resolution {
                    client,
                    expires_at: Some(entry.expires_at),
                    from_cache: true,
                });
            }
            (Err(e), Some(_)) => {
                let _ = self.cimd_cache.remove(project, &url).await;
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        };
        // The shared fetch was validated under the settings of whoever
        // started it; re-validate under ours.
        let client = cimd::validate_document(
            &url,
            &fetched.document,
            &settings.cimd,
            settings.effective_redirect_uri_policy(),
            fetched.client.issued_at,
        )?;
        Ok(Resolution {
            client,
            expires_at: fetched.expires_at,
            from_cache: fetched.from_cache,
        })
    }

    pub(crate) fn cimd_advertised(&self, settings: &ProjectSettings) -> bool {
        settings.cimd_enabled && self.has_metadata_fetcher()
    }
}

impl AuthorizationServerBuilder {
    /// The fetcher for Client ID Metadata Documents. Default: with feature
    /// `reqwest`, a `net::ReqwestFetcher` with its secure defaults;
    /// without it, none (CIMD is then not advertised and resolution fails
    /// with `fetcher_unavailable`).
    pub fn metadata_fetcher(mut self, fetcher: Arc<dyn MetadataFetcher>) -> Self {
        self.metadata_fetcher = Some(Some(fetcher));
        self
    }

    /// Configures no metadata fetcher, even with feature `reqwest`.
    pub fn without_metadata_fetcher(mut self) -> Self {
        self.metadata_fetcher = Some(None);
        self
    }

    /// The cache of validated metadata documents (default: a
    /// [`MemoryCimdCache`] of 1024 entries).
    pub fn cimd_cache(mut self, cache: Arc<dyn CimdCache>) -> Self {
        self.cimd_cache = Some(cache);
        self
    }

    /// Bounds on outbound document fetches (see [`cimd::FetchLimits`] for
    /// the budgets and their defaults). Cache hits and joining a fetch in
    /// progress are never limited.
    pub fn cimd_fetch_limits(mut self, limits: cimd::FetchLimits) -> Self {
        self.cimd_limits = limits;
        self
    }
}

/// The default fetcher: reqwest's when the feature is on.
pub(super) fn default_fetcher() -> Option<Arc<dyn MetadataFetcher>> {
    #[cfg(feature = "reqwest")]
    {
        crate::net::ReqwestFetcher::builder()
            .build()
            .ok()
            .map(|f| Arc::new(f) as Arc<dyn MetadataFetcher>)
    }
    #[cfg(not(feature = "reqwest"))]
    {
        None
    }
}

/// The default cache.
pub(super) fn default_cache() -> Arc<dyn CimdCache> {
    Arc::new(MemoryCimdCache::new())
}

/// A resolved client, with where it came from.
struct Resolution {
    client: Client,
    expires_at: Option<OffsetDateTime>,
    from_cache: bool,
}

/// The outcome of a shared fetch (or of a cache hit found by it).
#[derive(Clone)]
struct Fetched {
    document: ClientMetadata,
    client: Client,
    expires_at: Option<OffsetDateTime>,
    from_cache: bool,
}

impl Fetched {
    fn into_resolution(self) -> Resolution {
        Resolution {
            client: self.client,
            expires_at: self.expires_at,
            from_cache: self.from_cache,
        }
    }
}

/// What the caller of a resolution brings: who asked, and whether it is a
/// preview.
#[derive(Clone, Copy, Debug)]
struct FetchContext<'a> {
    source: Option<&'a RequestSource>,
    preview: bool,
}

/// What a cache lookup found.
enum Lookup {
    /// A fresh entry, valid under the current settings.
    Fresh(Fetched),
    /// An expired entry still within the policy's stale grace (not yet
    /// re-validated: that happens only if it is served).
    Stale(CachedDocument),
    /// Nothing usable.
    Miss,
}

/// Looks the URL up in the cache. A fresh entry is re-validated under the
/// current settings (and evicted with the error if the policy now refuses
/// it); an entry past its stale grace is evicted. A failing cache counts
/// as a miss.
async fn lookup(
    cache: &dyn CimdCache,
    project: &ProjectId,
    settings: &ProjectSettings,
    url: &ClientIdUrl,
    now: OffsetDateTime,
) -> Result<Lookup, CimdError> {
    let Ok(Some(entry)) = cache.get(project, url).await else {
        return Ok(Lookup::Miss);
    };
    if !entry.is_fresh(now) {
        if now - entry.expires_at < settings.cimd.stale_grace {
            return Ok(Lookup::Stale(entry));
        }
        let _ = cache.remove(project, url).await;
        return Ok(Lookup::Miss);
    }
    match cimd::validate_document(
        url,
        &entry.document,
        &settings.cimd,
        settings.effective_redirect_uri_policy(),
        entry.fetched_at,
    ) {
        Ok(client) => Ok(Lookup::Fresh(Fetched {
            document: entry.document,
            client,
            expires_at: Some(entry.expires_at),
            from_cache: true,
        })),
        Err(e) => {
            let _ = cache.remove(project, url).await;
            Err(e)
        }
    }
}

/// Failures that say the host is busy or that we held back, not that the
/// document is wrong: a stale document may still be served after them.
fn is_busy(e: &CimdError) -> bool {
    match e {
        CimdError::RateLimited | CimdError::Timeout | CimdError::FetchFailed { .. } => true,
        CimdError::HttpStatus { status } => *status == 429 || *status >= 500,
        _ => false,
    }
}

type Key = (ProjectId, ClientIdUrl);
type FetchFuture = BoxFuture<'static, Result<Fetched, CimdError>>;
type SharedFetch = Shared<FetchFuture>;
/// A shared fetch of a client's JWK Set (`jwks_uri`).
pub(crate) type JwksFuture = BoxFuture<'static, Result<crate::jose::JwkSet, CimdError>>;

/// Who a fetch is charged to.
#[derive(Clone, Debug)]
pub(crate) struct FetchMeta {
    pub(crate) class: FetchClass,
    pub(crate) host: String,
    pub(crate) directory: String,
    pub(crate) source: Option<RequestSource>,
}

/// The fetches in progress, one per project and URL (single-flight), and
/// the [`FetchGovernor`] deciding new ones. Two kinds share the governor
/// and the in-flight bounds: metadata documents, and clients' JWK Sets
/// (`jwks_uri`, see `client_auth`). Holds only weak handles: when every
/// caller waiting on a fetch gives up, the fetch is dropped with them and
/// the next caller starts a new one.
#[derive(Default)]
pub(crate) struct InFlight {
    state: Mutex<InFlightState>,
}

#[derive(Default)]
struct InFlightState {
    next_id: u64,
    fetches: HashMap<Key, Running<FetchFuture>>,
    jwks: HashMap<Key, Running<JwksFuture>>,
    governor: FetchGovernor,
}

struct Running<F: std::future::Future>
where
    F::Output: Clone,
{
    id: u64,
    fetch: WeakShared<F>,
    meta: FetchMeta,
}

/// Which table of [`InFlightState`] a fetch lives in, and its governor
/// key (a JWK Set URL is kept apart from a document at the same URL).
trait Kind {
    type Fut: std::future::Future<Output: Clone>;
    fn table(state: &mut InFlightState) -> &mut HashMap<Key, Running<Self::Fut>>;
    fn url_key(key: &Key) -> String;
}

struct DocumentKind;

impl Kind for DocumentKind {
    type Fut = FetchFuture;
    fn table(state: &mut InFlightState) -> &mut HashMap<Key, Running<FetchFuture>> {
        &mut state.fetches
    }
    fn url_key(key: &Key) -> String {
        FetchGovernor::url_key(key.0.as_str(), key.1.as_str())
    }
}

struct JwksKind;

impl Kind for JwksKind {
    type Fut = JwksFuture;
    fn table(state: &mut InFlightState) -> &mut HashMap<Key, Running<JwksFuture>> {
        &mut state.jwks
    }
    fn url_key(key: &Key) -> String {
        jwks_url_key(&key.0, &key.1)
    }
}

/// The governor key of a JWK Set URL (`jwks:` never starts a document's
/// `https://` URL).
pub(crate) fn jwks_url_key(project: &ProjectId, url: &ClientIdUrl) -> String {
    FetchGovernor::url_key(project.as_str(), &format!("jwks:{}", url.as_str()))
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl InFlight {
    fn state(&self) -> MutexGuard<'_, InFlightState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_known(&self, url_key: &str, now: OffsetDateTime, limits: &cimd::FetchLimits) -> bool {
        self.state().governor.is_known(url_key, now, limits)
    }

    pub(crate) fn negative(&self, url_key: &str, now: OffsetDateTime) -> Option<CimdError> {
        self.state().governor.negative(url_key, now)
    }

    /// The document fetch in progress for `key`, or a new one made by
    /// `start` if the [`FetchGovernor`] admits one (else a fetch that fails
    /// with `rate_limited`). Joining a fetch in progress is always allowed.
    fn join_or_start(
        &self,
        key: Key,
        meta: FetchMeta,
        now: OffsetDateTime,
        limits: &cimd::FetchLimits,
        start: impl FnOnce(u64) -> FetchFuture,
    ) -> SharedFetch {
        self.join_or_start_kind::<DocumentKind>(key, meta, now, limits, start, || {
            Box::pin(async { Err(CimdError::RateLimited) })
        })
    }

    /// The JWK Set fetch in progress for `key`, if any (joining one is
    /// always allowed).
    pub(crate) fn running_jwks(&self, key: &Key) -> Option<Shared<JwksFuture>> {
        self.state().jwks.get(key).and_then(|r| r.fetch.upgrade())
    }

    /// [`Self::join_or_start`] for a client's JWK Set: the same governor,
    /// the same in-flight bounds, one fetch per project and URL.
    pub(crate) fn join_or_start_jwks(
        &self,
        key: Key,
        meta: FetchMeta,
        now: OffsetDateTime,
        limits: &cimd::FetchLimits,
        start: impl FnOnce(u64) -> JwksFuture,
    ) -> Shared<JwksFuture> {
        self.join_or_start_kind::<JwksKind>(key, meta, now, limits, start, || {
            Box::pin(async { Err(CimdError::RateLimited) })
        })
    }

    fn join_or_start_kind<K: Kind>(
        &self,
        key: Key,
        meta: FetchMeta,
        now: OffsetDateTime,
        limits: &cimd::FetchLimits,
        start: impl FnOnce(u64) -> K::Fut,
        refused: impl FnOnce() -> K::Fut,
    ) -> Shared<K::Fut> {
        let mut guard = self.state();
        let state = &mut *guard;
        if let Some(running) = K::table(state).get(&key).and_then(|r| r.fetch.upgrade()) {
            return running;
        }
        state.fetches.retain(|_, r| r.fetch.upgrade().is_some());
        state.jwks.retain(|_, r| r.fetch.upgrade().is_some());
        let mut counts = InFlightCounts {
            total: state.fetches.len() + state.jwks.len(),
            ..InFlightCounts::default()
        };
        let running = state
            .fetches
            .values()
            .map(|r| &r.meta)
            .chain(state.jwks.values().map(|r| &r.meta));
        for m in running {
            counts.first += usize::from(m.class != FetchClass::Revalidation);
            counts.host += usize::from(m.host == meta.host);
            counts.source += usize::from(meta.source.is_some() && m.source == meta.source);
        }
        let request = FetchRequest {
            class: meta.class,
            host: &meta.host,
            directory: &meta.directory,
            project: key.0.as_str(),
            source: meta.source.as_ref(),
        };
        if state.governor.try_admit(&request, counts, now, limits).is_err() {
            return refused().shared();
        }
        state.next_id = state.next_id.wrapping_add(1);
        let id = state.next_id;
        let shared = start(id).shared();
        if let Some(weak) = shared.downgrade() {
            K::table(state).insert(key, Running { id, fetch: weak, meta });
        }
        shared
    }

    /// Forgets the document fetch `id` for `key` (it finished) and records
    /// its outcome for the governor.
    fn finish(
        &self,
        key: &Key,
        id: u64,
        outcome: Result<(), &CimdError>,
        now: OffsetDateTime,
        limits: &cimd::FetchLimits,
    ) {
        self.finish_kind::<DocumentKind>(key, id, outcome, now, limits);
    }

    /// [`Self::finish`] for a JWK Set fetch.
    pub(crate) fn finish_jwks(
        &self,
        key: &Key,
        id: u64,
        outcome: Result<(), &CimdError>,
        now: OffsetDateTime,
        limits: &cimd::FetchLimits,
    ) {
        self.finish_kind::<JwksKind>(key, id, outcome, now, limits);
    }

    fn finish_kind<K: Kind>(
        &self,
        key: &Key,
        id: u64,
        outcome: Result<(), &CimdError>,
        now: OffsetDateTime,
        limits: &cimd::FetchLimits,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        let url_key = K::url_key(key);
        match outcome {
            Ok(()) => state.governor.record_success(&url_key, now, limits),
            Err(CimdError::RateLimited) => {}
            Err(e) => state.governor.record_failure(&url_key, e, now, limits),
        }
        let table = K::table(state);
        if table.get(key).is_some_and(|r| r.id == id) {
            table.remove(key);
        }
    }

    /// The number of fetches in progress (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        let state = self.state();
        state.fetches.len() + state.jwks.len()
    }
}

/// One shared fetch: everything it needs, owned, so it can outlive the
/// caller that started it.
struct FetchJob {
    fetcher: Arc<dyn MetadataFetcher>,
    cache: Arc<dyn CimdCache>,
    clock: Arc<dyn Clock>,
    inflight: Arc<InFlight>,
    limits: cimd::FetchLimits,
    settings: ProjectSettings,
    key: Key,
    id: u64,
}

impl FetchJob {
    async fn run(self) -> Result<Fetched, CimdError> {
        let result = self.fetch_validate_store().await;
        let outcome = result.as_ref().map(|_| ());
        self.inflight
            .finish(&self.key, self.id, outcome, self.clock.now(), &self.limits);
        result
    }

    async fn fetch_validate_store(&self) -> Result<Fetched, CimdError> {
        let (project, url) = &self.key;
        let policy = &self.settings.cimd;
        // A fetch that finished between our cache miss and now has cached
        // its document: use it rather than fetching twice.
        if let Lookup::Fresh(hit) = lookup(self.cache.as_ref(), project, &self.settings, url, self.clock.now()).await? {
            return Ok(hit);
        }
        let plan = FetchPlan::new(url.clone(), policy.fetch_timeout());
        let response = self.fetcher.fetch(&plan).await?;
        let now = self.clock.now();
        let (document, client) = cimd::validate_response(
            url,
            &response,
            policy,
            self.settings.effective_redirect_uri_policy(),
            now,
        )?;
        let mut expires_at = cimd::cache_expiry(&response, now, policy.cache_bounds());
        if let Some(at) = expires_at {
            let entry = CachedDocument::new(document.clone(), client.clone(), now, at);
            if self.cache.put(project, url, entry).await.is_err() {
                expires_at = None;
            }
        }
        Ok(Fetched {
            document,
            client,
            expires_at,
            from_cache: false,
        })
    }
}

/// Test helpers shared with the other driver tests.
#[cfg(test)]
pub(crate) mod test_support {
    use async_trait::async_trait;

    use crate::cimd::{FetchError, FetchPlan, FetchResponse, MetadataFetcher};

    /// A fetcher that refuses every fetch: for tests that only need one to
    /// be configured.
    #[derive(Debug)]
    pub(crate) struct RefusingFetcher;

    #[async_trait]
    impl MetadataFetcher for RefusingFetcher {
        async fn fetch(&self, _plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
            Err(FetchError::Other {
                detail: "test fetcher".to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimd::{FetchError, FetchResponse};
    use crate::issuer::Issuer;
    use crate::server::FixedClock;
    use crate::store::memory::MemoryAuditLog;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use time::macros::datetime;

    struct Slow(AtomicUsize);

    #[async_trait]
    impl MetadataFetcher for Slow {
        async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let body = serde_json::json!({
                "client_id": plan.url().as_str(), "client_name": "S", "redirect_uris": ["https://s.example/cb"]
            });
            Ok(FetchResponse::new(200, serde_json::to_vec(&body).unwrap()).with_content_type("application/json"))
        }
    }

    fn server(fetcher: Arc<dyn MetadataFetcher>) -> AuthorizationServer {
        AuthorizationServer::builder(Issuer::new("https://auth.example.com").unwrap())
            .audit(Arc::new(MemoryAuditLog::new()))
            .clock(Arc::new(FixedClock::new(datetime!(2026-11-26 12:00 UTC))))
            .metadata_fetcher(fetcher)
            .build()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_fetch_is_not_kept_and_next_caller_refetches() {
        let fetcher = Arc::new(Slow(AtomicUsize::new(0)));
        let s = server(fetcher.clone());
        let p = ProjectId::new("p").unwrap();
        let settings = ProjectSettings {
            cimd_enabled: true,
            ..ProjectSettings::default()
        };
        let url = ClientIdUrl::parse("https://s.example/c").unwrap();
        // start a resolution and abandon it mid-fetch
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            s.resolve_cimd_client(&p, &settings, &url),
        )
        .await;
        assert!(abandoned.is_err());
        // the dropped fetch left nothing behind but a dead weak handle
        let again = s.resolve_cimd_client(&p, &settings, &url).await.unwrap();
        assert_eq!(again.client_id.as_str(), url.as_str());
        assert_eq!(fetcher.0.load(Ordering::SeqCst), 2);
        assert_eq!(s.cimd_inflight.len(), 0);
    }
}
