//! Local verification of JWT access tokens ([RFC 9068 section 4]) against
//! the authorization server's JWKS: no call to the authorization server
//! per request.
//!
//! [RFC 9068 section 4]: https://www.rfc-editor.org/rfc/rfc9068#section-4

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::{ResourceServerError, TokenVerifier, VerifiedToken};
use crate::jose::{self, JwkSet, SigningAlgorithm};
use crate::jwt::{self, ClaimsError};
use crate::resource::ResourceUri;

/// Fetches a JSON document (the authorization server's metadata or its
/// JWKS) for a [`JwtVerifier`].
///
/// # Security
/// Follow no redirects, cap the body (64 KiB is plenty), time out, and
/// return an error for any status but 200. The URLs are the configured
/// issuer's metadata URL and the `jwks_uri` it publishes.
#[async_trait]
pub trait JwksFetcher: Send + Sync {
    /// The body of a `GET url`.
    ///
    /// # Errors
    /// A description of the failure, for logs.
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// Limits of a [`JwtVerifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtVerifierConfig {
    /// The algorithms accepted (default ES256, EdDSA, RS256; `none` and
    /// the HMAC algorithms cannot be configured).
    pub algorithms: Vec<SigningAlgorithm>,
    /// The clock-skew leeway for `exp`, `nbf` and `iat` (default 60 s).
    pub leeway: Duration,
    /// How long a fetched JWKS is used before it is fetched again
    /// (default 5 minutes).
    pub cache_ttl: Duration,
    /// How long a JWKS may still be used when refetching it fails
    /// (default 1 hour); after that, verification is
    /// [`ResourceServerError::Unavailable`].
    pub max_stale: Duration,
    /// The least time between two JWKS fetch attempts, counted from the
    /// start of the last one, successful or not (default 30 s): a flood of
    /// tokens with made-up key ids costs at most one fetch per interval,
    /// also before any JWKS was loaded and while the JWKS cannot be
    /// fetched. The other side of it: after a failed fetch, tokens are
    /// answered [`ResourceServerError::Unavailable`] (when no usable JWKS
    /// is cached) until the interval has passed.
    pub min_refetch_interval: Duration,
}

impl Default for JwtVerifierConfig {
    fn default() -> Self {
        Self {
            algorithms: SigningAlgorithm::ALL.to_vec(),
            leeway: jwt::DEFAULT_LEEWAY,
            cache_ttl: Duration::minutes(5),
            max_stale: Duration::hours(1),
            min_refetch_interval: Duration::seconds(30),
        }
    }
}

#[derive(Debug, Default)]
struct Cache {
    keys: Option<JwkSet>,
    fetched_at: Option<OffsetDateTime>,
    last_attempt: Option<OffsetDateTime>,
}

/// A [`TokenVerifier`] for [RFC 9068] JWT access tokens, verified locally:
/// the signature against the issuer's JWKS (cached; refetched when it is
/// old, and on an unknown `kid` at most once per
/// [`JwtVerifierConfig::min_refetch_interval`]), `typ` `at+jwt`, the
/// configured algorithms only, `iss` equal to the issuer, `aud` containing
/// this resource, `exp`/`nbf`/`iat` with a small leeway.
///
/// # Security
/// A revoked JWT stays valid here until it expires: the authorization
/// server keeps JWT lifetimes short for that reason. Use
/// `net::IntrospectionVerifier` (feature `reqwest`) where revocation must take effect at
/// once. The token's own header can never choose the key source (`jku`,
/// `jwk`, `x5u` are refused) or the algorithm family.
///
/// [RFC 9068]: https://www.rfc-editor.org/rfc/rfc9068
pub struct JwtVerifier {
    issuer: String,
    resource: ResourceUri,
    jwks_uri: String,
    fetcher: Arc<dyn JwksFetcher>,
    config: JwtVerifierConfig,
    cache: Mutex<Cache>,
    fetch_lock: futures_util::lock::Mutex<()>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("resource", &self.resource)
            .field("jwks_uri", &self.jwks_uri)
            .finish_non_exhaustive()
    }
}

/// Why a [`JwtVerifier`] could not be set up from the issuer's metadata.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtVerifierError {
    /// The metadata could not be fetched.
    #[error("the authorization server metadata could not be fetched: {0}")]
    Fetch(String),
    /// The metadata is not JSON, or its `issuer` is not the expected one
    /// ([RFC 8414 section 3.3]).
    ///
    /// [RFC 8414 section 3.3]: https://www.rfc-editor.org/rfc/rfc8414#section-3.3
    #[error("the authorization server metadata is invalid or names another issuer")]
    InvalidMetadata,
    /// The metadata has no `jwks_uri`: the server issues no JWTs.
    #[error("the authorization server publishes no jwks_uri")]
    NoJwksUri,
}

impl JwtVerifier {
    /// A verifier for tokens of `issuer` meant for `resource`, with keys
    /// from `jwks_uri`.
    pub fn new(
        issuer: &crate::issuer::Issuer,
        resource: ResourceUri,
        jwks_uri: impl Into<String>,
        fetcher: Arc<dyn JwksFetcher>,
    ) -> Self {
        Self {
            issuer: issuer.as_str().to_owned(),
            resource,
            jwks_uri: jwks_uri.into(),
            fetcher,
            config: JwtVerifierConfig::default(),
            cache: Mutex::new(Cache::default()),
            fetch_lock: futures_util::lock::Mutex::new(()),
        }
    }

    /// Discovers `jwks_uri` from the issuer's [RFC 8414] metadata (at
    /// [`crate::issuer::Issuer::metadata_url`]); its `issuer` must be
    /// exactly `issuer`.
    ///
    /// # Errors
    /// A [`JwtVerifierError`]; [`JwtVerifierError::NoJwksUri`] means the
    /// server issues opaque tokens only (use introspection).
    ///
    /// [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414
    pub async fn discover(
        issuer: &crate::issuer::Issuer,
        resource: ResourceUri,
        fetcher: Arc<dyn JwksFetcher>,
    ) -> Result<Self, JwtVerifierError> {
        let body = fetcher
            .fetch(&issuer.metadata_url())
            .await
            .map_err(JwtVerifierError::Fetch)?;
        let m: serde_json::Value = serde_json::from_slice(&body).map_err(|_| JwtVerifierError::InvalidMetadata)?;
        if m.get("issuer").and_then(serde_json::Value::as_str) != Some(issuer.as_str()) {
            return Err(JwtVerifierError::InvalidMetadata);
        }
        let jwks_uri = m
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or(JwtVerifierError::NoJwksUri)?;
        Ok(Self::new(issuer, resource, jwks_uri, fetcher))
    }

    /// Replaces the limits (and empties the cache).
    #[must_use]
    pub fn config(mut self, config: JwtVerifierConfig) -> Self {
        self.config = config;
        self.cache = Mutex::new(Cache::default());
        self
    }

    /// The JWKS URL in use.
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    fn cached(&self) -> Result<Cache, ResourceServerError> {
        let c = self.cache.lock().map_err(|_| ResourceServerError::Unavailable)?;
        Ok(Cache {
            keys: c.keys.clone(),
            fetched_at: c.fetched_at,
            last_attempt: c.last_attempt,
        })
    }

    /// Whether a fetch may start at `now`: none was attempted (successful
    /// or not) within [`JwtVerifierConfig::min_refetch_interval`].
    fn may_try(&self, cache: &Cache, now: OffsetDateTime) -> bool {
        cache
            .last_attempt
            .is_none_or(|t| t > now || now - t >= self.config.min_refetch_interval)
    }

    /// Fetches the JWKS, one task at a time, unless a fetch was attempted
    /// within the refetch interval: re-checked under the lock, so tasks
    /// that queued behind a fetch (failed or not) do not fetch again.
    /// Returns the current cache.
    async fn refresh(&self, now: OffsetDateTime) -> Result<Cache, ResourceServerError> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        let current = self.cached()?;
        if !self.may_try(&current, now) {
            return Ok(current);
        }
        // The attempt counts from its start, whatever its outcome (also
        // when the caller gives up while it runs).
        self.cache
            .lock()
            .map_err(|_| ResourceServerError::Unavailable)?
            .last_attempt = Some(now);
        let fetched = match self.fetcher.fetch(&self.jwks_uri).await {
            Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| JwkSet::from_json(v).ok()),
            Err(_) => None,
        };
        let mut c = self.cache.lock().map_err(|_| ResourceServerError::Unavailable)?;
        if let Some(keys) = fetched {
            c.keys = Some(keys);
            c.fetched_at = Some(now);
        }
        Ok(Cache {
            keys: c.keys.clone(),
            fetched_at: c.fetched_at,
            last_attempt: c.last_attempt,
        })
    }

    /// The keys to verify a token with key id `kid`. The JWKS is fetched
    /// when none was ever loaded, when the cached one is older than
    /// [`JwtVerifierConfig::cache_ttl`], or when it lacks `kid`, but in
    /// every case at most once per
    /// [`JwtVerifierConfig::min_refetch_interval`], counted from the last
    /// attempt: a flood of junk tokens, also while the JWKS cannot be
    /// fetched (a cold start, an outage), costs one fetch per interval.
    async fn keys_for(&self, kid: &str, now: OffsetDateTime) -> Result<JwkSet, ResourceServerError> {
        let mut cache = self.cached()?;
        let fresh = cache.fetched_at.is_some_and(|t| now - t < self.config.cache_ttl);
        let known = cache.keys.as_ref().is_some_and(|k| k.contains_kid(kid));
        if (!fresh || !known) && self.may_try(&cache, now) {
            cache = self.refresh(now).await?;
        }
        let usable = cache
            .fetched_at
            .is_some_and(|t| now - t < self.config.cache_ttl.saturating_add(self.config.max_stale));
        match cache.keys {
            Some(keys) if usable => Ok(keys),
            _ => Err(ResourceServerError::Unavailable),
        }
    }
}

#[async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedToken, ResourceServerError> {
        let expect = jose::Expect {
            algorithms: &self.config.algorithms,
            typ: Some(jwt::ACCESS_TOKEN_TYP),
        };
        // Header checks first: a token we would refuse anyway costs no
        // fetch.
        let header = jose::peek(token, expect).map_err(|_| ResourceServerError::Inactive)?;
        let keys = self.keys_for(&header.kid, now).await?;
        let (_, claims) = jose::verify(token, &keys, expect).map_err(|_| ResourceServerError::Inactive)?;
        let canonical = self.resource.canonical();
        let c = jwt::check_access_token_claims(
            &claims,
            &self.issuer,
            |a| ResourceUri::parse(a).is_ok_and(|r| r.canonical() == canonical),
            self.config.leeway,
            now,
        )
        .map_err(|e| match e {
            ClaimsError::WrongIssuer => ResourceServerError::WrongIssuer,
            ClaimsError::WrongAudience => ResourceServerError::WrongAudience,
            ClaimsError::Expired => ResourceServerError::Expired,
            ClaimsError::Missing(_) => ResourceServerError::IncompleteClaims,
            _ => ResourceServerError::Inactive,
        })?;
        // `ProtectedResource::check` then compares `exp` again, without
        // leeway: the leeway only ever helps `nbf` and `iat`.
        Ok(VerifiedToken::new(c.sub, c.client_id, c.scope, c.aud, Some(c.exp)))
    }
}
