//! Client authentication at the token endpoint for registered clients.

use super::EndpointError;
use crate::client::{Client, RegisteredClientId};
use crate::client_auth::{ClientAuthError, ClientCredentials, PresentedMethod};
use crate::project::ProjectId;
use crate::store::ReplayCheck;

use futures_util::FutureExt as _;

use super::AuthorizationServer;

impl AuthorizationServer {
    /// Authenticates a client registered through DCR (`client_<24 hex>`)
    /// with the credentials of a token request (parse them with
    /// [`ClientCredentials::parse`]; route `https://` client ids, see
    /// [`ClientCredentials::client_id`], to the metadata-document path
    /// instead).
    ///
    /// Confidential clients must present their secret by their registered
    /// method (`client_secret_basic` or `client_secret_post`); it is
    /// checked in constant time against the stored hash and must not have
    /// expired. Public clients authenticate by `client_id` alone and must
    /// not send a secret (see [`crate::client_auth`]).
    ///
    /// # Errors
    /// 401 `invalid_client` for an unknown client (also a client of another
    /// project, or an id that is not a registered one), a disabled client
    /// (recorded as `oauth_client.disabled_refused`) and for every failed
    /// check, with the same description whatever the reason, and with
    /// `WWW-Authenticate: Basic` when the client used HTTP Basic ([RFC 6749
    /// section 5.2]); `server_error` when storage fails.
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    pub async fn authenticate_registered_client(
        &self,
        project: &ProjectId,
        creds: &ClientCredentials,
    ) -> Result<Client, EndpointError> {
        let basic = creds.method() == PresentedMethod::ClientSecretBasic;
        let fail = |e: ClientAuthError| EndpointError::from(e.to_oauth_error(basic));
        let Ok(id) = RegisteredClientId::new(creds.client_id()) else {
            return Err(fail(ClientAuthError::UnknownClient));
        };
        let Some(client) = self.clients.get(project, &id).await? else {
            return Err(fail(ClientAuthError::UnknownClient));
        };
        creds.verify(&client, self.now()).map_err(fail)?;
        // Checked after the credentials, so the audit log records only
        // disabled clients that could otherwise authenticate.
        if client.is_disabled() {
            self.disabled_client_refused(project, &client.client_id, "client_authentication")
                .await;
            return Err(fail(ClientAuthError::UnknownClient).audited());
        }
        Ok(client)
    }
}

/// The longest a `jti` is remembered beyond the assertion's `exp`: the
/// leeway with which an expired assertion is still accepted.
const REPLAY_MARGIN: time::Duration = crate::jwt::DEFAULT_LEEWAY;

// private_key_jwt (RFC 7523 section 2.2): separate from the shared-secret
// methods above.
impl AuthorizationServer {
    /// Authenticates a `private_key_jwt` client (registered or metadata
    /// document): the client must have registered that method with `jwks`
    /// or `jwks_uri`; the assertion must verify with one of those keys and
    /// pass [`crate::jwt::check_client_assertion`] with the audiences this
    /// server accepts (its issuer; also its token endpoint URL for
    /// registered clients of a project with
    /// [`crate::project::ProjectSettings::danger_accept_token_endpoint_assertion_audience`]);
    /// its `jti` must be new and within the client's quota
    /// ([`crate::store::ReplayStore`]).
    ///
    /// A `jwks_uri` is fetched like a metadata document: it must pass the
    /// project's CIMD URL and trust policy ([`crate::cimd::check_url`]:
    /// https, allow- and deny-lists, no special-use hosts), and the fetch
    /// goes through the same controller as documents (the
    /// [`crate::cimd::FetchLimits`] budgets per host, source, project and
    /// directory, the in-flight bounds, one fetch per project and URL
    /// shared by concurrent requests, and the negative cache of a URL that
    /// never answered with a valid JWK Set), through the project's
    /// metadata fetcher (no redirects, special-use addresses refused at
    /// connect time, 5120 bytes, the project's timeout). A fetched set is
    /// reused for [`CLIENT_JWKS_TTL`]; an unknown `kid` joins a fetch in
    /// progress or starts one at most every [`CLIENT_JWKS_REFETCH_AFTER`]
    /// per client, counted from the last ATTEMPT (a failed fetch counts),
    /// and a client whose keys could not be fetched waits as long before
    /// the next try. Every refusal is recorded as
    /// `oauth_client.assertion_rejected` and answered with one generic
    /// `invalid_client`.
    pub(crate) async fn authenticate_with_assertion(
        &self,
        project: &ProjectId,
        settings: &crate::project::ProjectSettings,
        id: &crate::client::ClientId,
        creds: &ClientCredentials,
        source: Option<&crate::cimd::RequestSource>,
    ) -> Result<Client, EndpointError> {
        // Every refusal below is recorded as `oauth_client.assertion_rejected`.
        let fail = || ClientAuthError::UnknownClient.to_oauth_error(false).audited();
        let client = match self
            .resolve_client_from(project, settings, id, source, "client_authentication")
            .await
        {
            Ok(c) => c,
            Err(e) if e.code() == crate::error::ErrorCode::ServerError => return Err(e),
            Err(_) => {
                self.reject_assertion(project, id, "unknown_client").await;
                return Err(fail().into());
            }
        };
        let issuer = self.issuer_for(settings);
        let token_endpoint = issuer.endpoint(&self.paths.token);
        // The issuer alone (draft-ietf-oauth-rfc7523bis); the token
        // endpoint URL only for registered clients of a project that opted
        // in for compatibility.
        let compat = settings.danger_accept_token_endpoint_assertion_audience
            && matches!(client.client_id, crate::client::ClientId::Registered(_));
        let audiences: &[&str] = if compat {
            &[issuer.as_str(), token_endpoint.as_str()]
        } else {
            &[issuer.as_str()]
        };
        let now = self.now();
        let mut verified = Err(ClientAuthError::InvalidAssertion("no_keys"));
        // Cached keys first; on an unknown key, fetch once more (a client
        // that rotated), at most every `CLIENT_JWKS_REFETCH_AFTER`.
        for refetch in [false, true] {
            let keys = match self.client_keys(project, settings, &client, refetch, source).await {
                Ok(Some(k)) => k,
                Ok(None) => break,
                Err(reason) => {
                    verified = Err(ClientAuthError::InvalidAssertion(reason));
                    break;
                }
            };
            verified = creds.verify_assertion(&client, &keys, audiences, now);
            if !matches!(verified, Err(ClientAuthError::InvalidAssertion("unknown_key"))) {
                break;
            }
        }
        let assertion = match verified {
            Ok(a) => a,
            Err(e) => {
                let reason = match e {
                    ClientAuthError::InvalidAssertion(r) => r,
                    _ => "wrong_method",
                };
                self.reject_assertion(project, id, reason).await;
                return Err(fail().into());
            }
        };
        let check = self
            .replay
            .check_and_insert(
                project,
                client.client_id.as_str(),
                &assertion.jti,
                assertion.exp + REPLAY_MARGIN,
                now,
                self.assertion_jti_quota,
            )
            .await?;
        let reason = match check {
            ReplayCheck::Fresh => return Ok(client),
            ReplayCheck::Replayed => "replayed_jti",
            ReplayCheck::QuotaExceeded => "jti_quota_exceeded",
            _ => "replay_store_full",
        };
        self.reject_assertion(project, id, reason).await;
        Err(fail().into())
    }

    async fn reject_assertion(&self, project: &ProjectId, id: &crate::client::ClientId, reason: &str) {
        self.emit(
            project,
            crate::audit::AuditKind::ClientAssertionRejected {
                client_id: id.to_string(),
                reason: reason.to_owned(),
                client_authenticated: false,
            },
        )
        .await;
    }

    /// The client's public keys: its inline `jwks`, or the JWK Set at its
    /// `jwks_uri` (see [`Self::authenticate_with_assertion`] for the
    /// fetch rules). With `refetch` (the cached set lacks the assertion's
    /// key), `Ok(None)` means there is nothing newer to try. The error is
    /// the audit reason.
    async fn client_keys(
        &self,
        project: &ProjectId,
        settings: &crate::project::ProjectSettings,
        client: &Client,
        refetch: bool,
        source: Option<&crate::cimd::RequestSource>,
    ) -> Result<Option<crate::jose::JwkSet>, &'static str> {
        if let Some(jwks) = &client.metadata.jwks {
            if refetch {
                return Ok(None);
            }
            return crate::jose::JwkSet::from_json(jwks.clone())
                .map(Some)
                .map_err(|_| "invalid_jwks");
        }
        let uri = client.metadata.jwks_uri.as_deref().ok_or("no_keys")?;
        let url = crate::cimd::ClientIdUrl::parse(uri).map_err(|_| "invalid_jwks_uri")?;
        let allow_loopback = self
            .metadata_fetcher
            .as_ref()
            .is_some_and(|f| f.allows_loopback_for_development());
        let url = crate::cimd::check_url(&url, &settings.cimd, allow_loopback).map_err(|_| "jwks_uri_refused")?;
        // Scoped by project: projects never share entries.
        let cache_key = (format!("{project} {}", client.client_id), url.as_str().to_owned());
        let now = self.now();
        let entry = self.client_jwks.get(&cache_key, now);
        if !refetch && let Some(keys) = entry.as_ref().and_then(|e| e.usable(now)) {
            return Ok(Some(keys));
        }
        let fetch_key = (project.clone(), url.clone());
        // A fetch of this URL in progress answers every waiting request.
        if let Some(running) = self.cimd_inflight.running_jwks(&fetch_key) {
            return self.keep_fetched(cache_key, running.await);
        }
        match &entry {
            Some(e) if now - e.attempted_at < CLIENT_JWKS_REFETCH_AFTER => {
                return if refetch { Ok(None) } else { Err("keys_unavailable") };
            }
            // The first pass fetched, or was refused without a fetch.
            None if refetch => return Ok(None),
            _ => {}
        }
        let fetcher = self.metadata_fetcher.clone().ok_or("keys_unavailable")?;
        let url_key = super::cimd::jwks_url_key(project, &url);
        let known = entry.as_ref().is_some_and(|e| e.keys.is_some())
            || self.cimd_inflight.is_known(&url_key, now, &self.cimd_limits);
        if !known && self.cimd_inflight.negative(&url_key, now).is_some() {
            return Err("keys_unavailable");
        }
        // Counted from the attempt, whatever its outcome.
        self.client_jwks.mark_attempt(cache_key.clone(), now);
        let meta = super::cimd::FetchMeta {
            class: crate::cimd::FetchClass::of(false, known),
            host: url.host().to_owned(),
            directory: url.directory(),
            source: source.cloned(),
        };
        let limits = self.cimd_limits;
        let shared = self
            .cimd_inflight
            .join_or_start_jwks(fetch_key.clone(), meta, now, &limits, |id| {
                JwksJob {
                    fetcher,
                    clock: self.clock.clone(),
                    inflight: self.cimd_inflight.clone(),
                    limits,
                    timeout: settings.cimd.fetch_timeout(),
                    key: fetch_key,
                    id,
                }
                .run()
                .boxed()
            });
        self.keep_fetched(cache_key, shared.await)
    }

    /// Caches a fetched JWK Set for the client; maps a failure to its
    /// audit reason.
    fn keep_fetched(
        &self,
        cache_key: (String, String),
        fetched: Result<crate::jose::JwkSet, crate::cimd::CimdError>,
    ) -> Result<Option<crate::jose::JwkSet>, &'static str> {
        use crate::cimd::CimdError;
        match fetched {
            Ok(keys) => {
                self.client_jwks.put(cache_key, keys.clone(), self.now());
                Ok(Some(keys))
            }
            Err(CimdError::RateLimited) => Err("jwks_rate_limited"),
            Err(CimdError::InvalidJson { .. }) => Err("invalid_jwks"),
            Err(_) => Err("keys_unavailable"),
        }
    }
}

/// One shared fetch of a JWK Set: everything it needs, owned, so it can
/// outlive the request that started it.
struct JwksJob {
    fetcher: std::sync::Arc<dyn crate::cimd::MetadataFetcher>,
    clock: std::sync::Arc<dyn super::Clock>,
    inflight: std::sync::Arc<super::cimd::InFlight>,
    limits: crate::cimd::FetchLimits,
    timeout: std::time::Duration,
    key: (ProjectId, crate::cimd::ClientIdUrl),
    id: u64,
}

impl JwksJob {
    async fn run(self) -> Result<crate::jose::JwkSet, crate::cimd::CimdError> {
        let result = self.fetch().await;
        self.inflight.finish_jwks(
            &self.key,
            self.id,
            result.as_ref().map(|_| ()),
            self.clock.now(),
            &self.limits,
        );
        result
    }

    /// The document rules that apply to a JWK Set: HTTP 200 (a redirect
    /// is never followed), at most the fetch plan's body cap, JSON, a
    /// valid JWK Set without private members.
    async fn fetch(&self) -> Result<crate::jose::JwkSet, crate::cimd::CimdError> {
        use crate::cimd::CimdError;
        let plan = crate::cimd::FetchPlan::new(self.key.1.clone(), self.timeout);
        let response = self.fetcher.fetch(&plan).await?;
        match response.status {
            200 => {}
            status @ 300..=399 => return Err(CimdError::Redirect { status }),
            status => return Err(CimdError::HttpStatus { status }),
        }
        if response.body.len() > plan.max_body_bytes() {
            return Err(CimdError::TooLarge {
                limit: plan.max_body_bytes(),
            });
        }
        let invalid = |detail: &str| CimdError::InvalidJson {
            detail: detail.to_owned(),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&response.body).map_err(|_| invalid("the JWK Set is not JSON"))?;
        crate::jose::JwkSet::from_json(value).map_err(|_| invalid("not a usable JWK Set"))
    }
}

/// How long a client's JWK Set fetched from its `jwks_uri` is reused.
pub(crate) const CLIENT_JWKS_TTL: time::Duration = time::Duration::minutes(5);

/// The least time between two fetches of one client's `jwks_uri` for an
/// unknown `kid`, or after a failed fetch: counted from the last attempt.
pub(crate) const CLIENT_JWKS_REFETCH_AFTER: time::Duration = time::Duration::seconds(30);

/// The most client JWK Sets kept.
const CLIENT_JWKS_MAX: usize = 10_000;

/// Client JWK Sets fetched from `jwks_uri`, by client id and URL, with
/// their fetch time and the time of the last fetch attempt; bounded (when
/// full, stale entries go, then nothing more is kept: the fetch
/// controller's budgets and negative cache still hold).
#[derive(Debug, Default)]
pub(crate) struct ClientJwksCache(std::sync::Mutex<std::collections::HashMap<(String, String), JwksEntry>>);

/// One client's JWK Set.
#[derive(Clone, Debug)]
pub(crate) struct JwksEntry {
    /// The last set fetched, and when.
    keys: Option<(crate::jose::JwkSet, time::OffsetDateTime)>,
    /// The last fetch attempt (successful or not).
    attempted_at: time::OffsetDateTime,
}

impl JwksEntry {
    /// The keys, if fetched within [`CLIENT_JWKS_TTL`].
    fn usable(&self, now: time::OffsetDateTime) -> Option<crate::jose::JwkSet> {
        self.keys
            .as_ref()
            .filter(|(_, at)| now - *at < CLIENT_JWKS_TTL)
            .map(|(k, _)| k.clone())
    }

    fn stale(&self, now: time::OffsetDateTime) -> bool {
        self.usable(now).is_none() && now - self.attempted_at >= CLIENT_JWKS_REFETCH_AFTER
    }
}

impl ClientJwksCache {
    /// The entry, unless nothing in it matters any more.
    fn get(&self, key: &(String, String), now: time::OffsetDateTime) -> Option<JwksEntry> {
        let map = self.0.lock().ok()?;
        map.get(key).filter(|e| !e.stale(now)).cloned()
    }

    fn put(&self, key: (String, String), keys: crate::jose::JwkSet, now: time::OffsetDateTime) {
        self.update(key, now, |e| e.keys = Some((keys, now)));
    }

    fn mark_attempt(&self, key: (String, String), now: time::OffsetDateTime) {
        self.update(key, now, |_| {});
    }

    /// Sets the attempt time to `now` and applies `f`, making room first.
    fn update(&self, key: (String, String), now: time::OffsetDateTime, f: impl FnOnce(&mut JwksEntry)) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= CLIENT_JWKS_MAX && !map.contains_key(&key) {
            map.retain(|_, e| !e.stale(now));
            if map.len() >= CLIENT_JWKS_MAX {
                return;
            }
        }
        let entry = map.entry(key).or_insert(JwksEntry {
            keys: None,
            attempted_at: now,
        });
        entry.attempted_at = now;
        f(entry);
    }
}
