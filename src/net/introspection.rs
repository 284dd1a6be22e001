//! [RFC 7662] token introspection over HTTP, with a bounded cache.
//!
//! [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::tls::{ClientBuildError, rustls_client_config};
use crate::http::PROJECT_HEADER;
use crate::project::ProjectId;
use crate::resource_server::{ResourceServerError, TokenVerifier, VerifiedToken};
use crate::secret::{SecretHash, SecretString};
use crate::token::IntrospectionResponse;

/// Limits of an [`IntrospectionVerifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntrospectionVerifierConfig {
    /// The most tokens cached at once (default 10 000). Zero disables the
    /// cache.
    pub max_entries: usize,
    /// The longest an active result is reused (default 30 seconds): the
    /// most a revocation can lag behind. An entry never outlives the
    /// token's `exp` either.
    pub max_ttl: Duration,
    /// The timeout of one introspection request (default 5 seconds).
    pub timeout: std::time::Duration,
    /// The largest introspection response read (default 64 KiB).
    pub max_response_bytes: usize,
}

impl Default for IntrospectionVerifierConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_ttl: Duration::seconds(30),
            timeout: std::time::Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
        }
    }
}

/// A [`TokenVerifier`] that asks an [RFC 7662] introspection endpoint:
/// `POST token=...&token_type_hint=access_token` with the resource
/// server's own bearer credential (section 2.1 requires the caller to be
/// authorized).
///
/// # Cache
/// Active results are cached, keyed by the SHA-256 of the token (the raw
/// token is never kept), until the earlier of the token's `exp` and
/// [`IntrospectionVerifierConfig::max_ttl`]; when the cache is full,
/// expired entries are dropped first, then the entry closest to expiry.
/// Negative results (inactive, revoked, unknown) are **not** cached: a
/// flood of made-up tokens must not evict real entries, and an inactive
/// token costs one request each time.
///
/// # Security
/// Any failure of the endpoint (connection error, timeout, a status
/// other than 200, a body that is too large or not an introspection
/// response) is [`ResourceServerError::Unavailable`], never an active
/// token. The client built by [`IntrospectionVerifier::new`] follows no
/// redirects; a client passed to [`IntrospectionVerifier::with_client`]
/// should not either, so the credential never travels elsewhere.
///
/// [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
#[derive(Debug)]
pub struct IntrospectionVerifier {
    client: reqwest::Client,
    endpoint: String,
    credential: SecretString,
    project: Option<ProjectId>,
    issuer: Option<String>,
    config: IntrospectionVerifierConfig,
    cache: Mutex<TokenCache>,
}

impl IntrospectionVerifier {
    /// A verifier for `endpoint`, presenting `credential`, with a client
    /// that follows no redirects.
    ///
    /// The client uses the same TLS configuration as the CIMD fetcher
    /// (rustls with the ring provider and the webpki roots).
    ///
    /// # Errors
    /// The client could not be built.
    pub fn new(endpoint: impl Into<String>, credential: SecretString) -> Result<Self, ClientBuildError> {
        let tls = rustls_client_config(&[])?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| ClientBuildError::Client(e.to_string()))?;
        Ok(Self::with_client(client, endpoint, credential))
    }

    /// A verifier using the host's `client` (its TLS configuration, proxy
    /// and so on). It should follow no redirects.
    pub fn with_client(client: reqwest::Client, endpoint: impl Into<String>, credential: SecretString) -> Self {
        let config = IntrospectionVerifierConfig::default();
        Self {
            client,
            endpoint: endpoint.into(),
            credential,
            project: None,
            issuer: None,
            cache: Mutex::new(TokenCache::new(config.max_entries)),
            config,
        }
    }

    /// Sends `X-Authio-Project: <project>` with every request, for an
    /// authio authorization server that serves several projects.
    #[must_use]
    pub fn project(mut self, project: ProjectId) -> Self {
        self.project = Some(project);
        self
    }

    /// Requires the introspection response's `iss` to be exactly this
    /// issuer (recommended: an endpoint reached through a misconfigured
    /// proxy then cannot vouch for another server's tokens).
    #[must_use]
    pub fn issuer(mut self, issuer: &crate::issuer::Issuer) -> Self {
        self.issuer = Some(issuer.as_str().to_owned());
        self
    }

    /// Replaces the limits (and empties the cache).
    #[must_use]
    pub fn config(mut self, config: IntrospectionVerifierConfig) -> Self {
        self.cache = Mutex::new(TokenCache::new(config.max_entries));
        self.config = config;
        self
    }

    async fn introspect(&self, token: &str) -> Result<IntrospectionResponse, ResourceServerError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut req = self
            .client
            .post(&self.endpoint)
            .timeout(self.config.timeout)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.credential.expose_secret()),
            )
            .body(body);
        if let Some(p) = &self.project {
            req = req.header(PROJECT_HEADER, p.as_str());
        }
        let unavailable = |_| ResourceServerError::Unavailable;
        let mut response = req.send().await.map_err(unavailable)?;
        if response.status() != http::StatusCode::OK {
            return Err(ResourceServerError::Unavailable);
        }
        let max = self.config.max_response_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(ResourceServerError::Unavailable);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if bytes.len() + chunk.len() > max {
                return Err(ResourceServerError::Unavailable);
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes).map_err(|_| ResourceServerError::Unavailable)
    }
}

#[async_trait]
impl TokenVerifier for IntrospectionVerifier {
    async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedToken, ResourceServerError> {
        let key = *SecretHash::of(token).as_bytes();
        if let Ok(mut cache) = self.cache.lock()
            && let Some(hit) = cache.get(&key, now)
        {
            return Ok(hit);
        }
        let response = self.introspect(token).await?;
        let verified = VerifiedToken::from_introspection_by(&response, self.issuer.as_deref())?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, verified.clone(), now, self.config.max_ttl);
        }
        Ok(verified)
    }
}

/// Active introspection results by token hash, each with the instant it
/// stops being reused.
#[derive(Debug)]
struct TokenCache {
    entries: HashMap<[u8; 32], (VerifiedToken, OffsetDateTime)>,
    max_entries: usize,
}

impl TokenCache {
    fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_entries,
        }
    }

    /// The cached token, if its entry is still fresh at `now`.
    fn get(&mut self, key: &[u8; 32], now: OffsetDateTime) -> Option<VerifiedToken> {
        match self.entries.get(key) {
            Some((token, until)) if now < *until => Some(token.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches `token` until the earlier of its `exp` and `now + max_ttl`.
    fn insert(&mut self, key: [u8; 32], token: VerifiedToken, now: OffsetDateTime, max_ttl: Duration) {
        if self.max_entries == 0 {
            return;
        }
        let cap = now.checked_add(max_ttl).unwrap_or(now);
        let until = token.expires_at.map_or(cap, |exp| exp.min(cap));
        if until <= now {
            return;
        }
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, u)| now < *u);
            if self.entries.len() >= self.max_entries {
                let soonest = self.entries.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k);
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, (token, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::ScopeSet;

    const T0: i64 = 1_700_000_000;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(T0 + secs).unwrap()
    }

    fn token(exp: Option<i64>) -> VerifiedToken {
        VerifiedToken::new(
            "user".into(),
            "client".into(),
            ScopeSet::parse("mcp:read").unwrap(),
            vec!["https://mcp.example.com/mcp".into()],
            exp.map(at),
        )
    }

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn entries_never_outlive_exp() {
        let mut c = TokenCache::new(10);
        c.insert(key(1), token(Some(10)), at(0), Duration::seconds(30));
        assert!(c.get(&key(1), at(9)).is_some());
        assert!(c.get(&key(1), at(10)).is_none(), "gone at exp");
        assert!(c.entries.is_empty(), "a stale entry is removed when read");
    }

    #[test]
    fn entries_never_outlive_max_ttl() {
        let mut c = TokenCache::new(10);
        c.insert(key(1), token(Some(3600)), at(0), Duration::seconds(30));
        assert!(c.get(&key(1), at(29)).is_some());
        assert!(c.get(&key(1), at(30)).is_none());
        // No exp at all: max_ttl still applies.
        c.insert(key(2), token(None), at(0), Duration::seconds(30));
        assert!(c.get(&key(2), at(31)).is_none());
    }

    #[test]
    fn expired_tokens_are_not_cached() {
        let mut c = TokenCache::new(10);
        c.insert(key(1), token(Some(0)), at(0), Duration::seconds(30));
        c.insert(key(2), token(Some(-5)), at(0), Duration::seconds(30));
        assert!(c.entries.is_empty());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = TokenCache::new(3);
        for n in 0..3u8 {
            c.insert(key(n), token(Some(100 + i64::from(n))), at(0), Duration::seconds(300));
        }
        c.insert(key(9), token(Some(500)), at(0), Duration::seconds(300));
        assert_eq!(c.entries.len(), 3);
        assert!(
            c.get(&key(0), at(1)).is_none(),
            "the entry closest to expiry is evicted"
        );
        assert!(c.get(&key(9), at(1)).is_some());
        // Expired entries go first (key 1 and 2 expire by 102; 9 stays).
        c.insert(key(8), token(Some(600)), at(102), Duration::seconds(300));
        assert_eq!(c.entries.len(), 2);
        assert!(c.get(&key(9), at(102)).is_some());
        assert!(c.get(&key(8), at(102)).is_some());
    }

    #[test]
    fn zero_entries_disables_the_cache() {
        let mut c = TokenCache::new(0);
        c.insert(key(1), token(Some(100)), at(0), Duration::seconds(30));
        assert!(c.get(&key(1), at(1)).is_none());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_never_active() {
        // Port 9 on loopback: nothing listens (connection refused).
        let v = IntrospectionVerifier::new("http://127.0.0.1:9/introspect", SecretString::from("cred")).unwrap();
        assert_eq!(v.verify("tok", at(0)).await, Err(ResourceServerError::Unavailable));
    }
}
