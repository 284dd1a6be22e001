//! Resolving Client ID Metadata Documents: cache, then pre-flight checks,
//! then ONE shared fetch per project and URL, then validation, then cache;
//! and the dashboard's preview. Every rule lives in [`crate::cimd`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::{BoxFuture, FutureExt as _, Shared, WeakShared};
use time::OffsetDateTime;

use super::{AuthorizationServer, AuthorizationServerBuilder, Clock};
use crate::audit::AuditKind;
use crate::cimd::{
    self, CachedDocument, CimdError, CimdPreview, ClientIdUrl, FailedPreview, FetchPlan, MetadataFetcher,
    ResolvedPreview,
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
        self.resolve_cimd(project, settings, url).await.map(|r| r.client)
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
    pub async fn preview_cimd(&self, project: &ProjectId, body: &[u8]) -> Result<CimdPreview, OAuthError> {
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
        Ok(match self.resolve_cimd(project, &settings, &url).await {
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
    ) -> Result<Resolution, CimdError> {
        let result = self.resolve_cimd_steps(project, settings, url).await;
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
        if let Some(hit) = cached(self.cimd_cache.as_ref(), project, settings, &url, now).await? {
            return Ok(hit.into_resolution());
        }
        let fetcher = self.metadata_fetcher.clone().ok_or(CimdError::FetcherUnavailable)?;
        let key = (project.clone(), url.clone());
        let shared = self
            .cimd_inflight
            .join_or_start(key.clone(), self.clock.now(), &self.cimd_limits, |id| {
                let job = FetchJob {
                    fetcher,
                    cache: self.cimd_cache.clone(),
                    clock: self.clock.clone(),
                    inflight: self.cimd_inflight.clone(),
                    settings: settings.clone(),
                    key,
                    id,
                };
                job.run().boxed()
            });
        let fetched = shared.await?;
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
    /// `reqwest`, a `cimd::ReqwestFetcher` with its secure defaults;
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

    /// Bounds on outbound document fetches (default: 256 in flight, 30 per
    /// host in a burst, one more every 2 s). Cache hits and joining a
    /// fetch in progress are never limited.
    pub fn cimd_fetch_limits(mut self, limits: cimd::FetchLimits) -> Self {
        self.cimd_limits = limits;
        self
    }
}

/// The default fetcher: reqwest's when the feature is on.
pub(super) fn default_fetcher() -> Option<Arc<dyn MetadataFetcher>> {
    #[cfg(feature = "reqwest")]
    {
        cimd::ReqwestFetcher::builder()
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

/// A fresh cache entry, re-validated under the current settings. An entry
/// that is stale or that the current policy refuses is evicted. A failing
/// cache counts as a miss.
async fn cached(
    cache: &dyn CimdCache,
    project: &ProjectId,
    settings: &ProjectSettings,
    url: &ClientIdUrl,
    now: OffsetDateTime,
) -> Result<Option<Fetched>, CimdError> {
    let Ok(Some(entry)) = cache.get(project, url).await else {
        return Ok(None);
    };
    if !entry.is_fresh(now) {
        let _ = cache.remove(project, url).await;
        return Ok(None);
    }
    match cimd::validate_document(
        url,
        &entry.document,
        &settings.cimd,
        settings.effective_redirect_uri_policy(),
        entry.fetched_at,
    ) {
        Ok(client) => Ok(Some(Fetched {
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

type Key = (ProjectId, ClientIdUrl);
type FetchFuture = BoxFuture<'static, Result<Fetched, CimdError>>;
type SharedFetch = Shared<FetchFuture>;

/// The fetches in progress, one per project and URL (single-flight). Holds
/// only weak handles: when every caller waiting on a fetch gives up, the
/// fetch is dropped with them and the next caller starts a new one.
#[derive(Default)]
pub(crate) struct InFlight {
    state: Mutex<InFlightState>,
}

#[derive(Default)]
struct InFlightState {
    next_id: u64,
    fetches: HashMap<Key, (u64, WeakShared<FetchFuture>)>,
    limiter: cimd::HostRateLimiter,
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

    /// The fetch in progress for `key`, or a new one made by `start` if the
    /// [`cimd::FetchLimits`] allow one (else a fetch that fails with
    /// `rate_limited`). Joining a fetch in progress is always allowed.
    fn join_or_start(
        &self,
        key: Key,
        now: time::OffsetDateTime,
        limits: &cimd::FetchLimits,
        start: impl FnOnce(u64) -> FetchFuture,
    ) -> SharedFetch {
        let mut state = self.state();
        if let Some(running) = state.fetches.get(&key).and_then(|(_, weak)| weak.upgrade()) {
            return running;
        }
        state.fetches.retain(|_, (_, weak)| weak.upgrade().is_some());
        let host = key.1.host();
        if state.fetches.len() >= limits.max_in_flight || !state.limiter.try_acquire(&host, now, limits) {
            let refused: FetchFuture = Box::pin(async { Err(CimdError::RateLimited) });
            return refused.shared();
        }
        state.next_id = state.next_id.wrapping_add(1);
        let id = state.next_id;
        let shared = start(id).shared();
        if let Some(weak) = shared.downgrade() {
            state.fetches.insert(key, (id, weak));
        }
        shared
    }

    /// Forgets the fetch `id` for `key` (it finished).
    fn finish(&self, key: &Key, id: u64) {
        let mut state = self.state();
        if state.fetches.get(key).is_some_and(|(current, _)| *current == id) {
            state.fetches.remove(key);
        }
    }

    /// The number of fetches in progress (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().fetches.len()
    }
}

/// One shared fetch: everything it needs, owned, so it can outlive the
/// caller that started it.
struct FetchJob {
    fetcher: Arc<dyn MetadataFetcher>,
    cache: Arc<dyn CimdCache>,
    clock: Arc<dyn Clock>,
    inflight: Arc<InFlight>,
    settings: ProjectSettings,
    key: Key,
    id: u64,
}

impl FetchJob {
    async fn run(self) -> Result<Fetched, CimdError> {
        let result = self.fetch_validate_store().await;
        self.inflight.finish(&self.key, self.id);
        result
    }

    async fn fetch_validate_store(&self) -> Result<Fetched, CimdError> {
        let (project, url) = &self.key;
        let policy = &self.settings.cimd;
        // A fetch that finished between our cache miss and now has cached
        // its document: use it rather than fetching twice.
        if let Some(hit) = cached(self.cache.as_ref(), project, &self.settings, url, self.clock.now()).await? {
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
    use crate::discovery::Issuer;
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
