//! Client authentication at the token endpoint for registered clients.

use crate::client::{Client, RegisteredClientId};
use crate::client_auth::{ClientAuthError, ClientCredentials, PresentedMethod};
use crate::error::OAuthError;
use crate::project::ProjectId;
use crate::store::ReplayCheck;

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
    /// project, or an id that is not a registered one) and for every failed
    /// check, with the same description whatever the reason, and with
    /// `WWW-Authenticate: Basic` when the client used HTTP Basic (RFC 6749
    /// section 5.2); `server_error` when storage fails.
    pub async fn authenticate_registered_client(
        &self,
        project: &ProjectId,
        creds: &ClientCredentials,
    ) -> Result<Client, OAuthError> {
        let basic = creds.method() == PresentedMethod::ClientSecretBasic;
        let fail = |e: ClientAuthError| e.to_oauth_error(basic);
        let Ok(id) = RegisteredClientId::new(creds.client_id()) else {
            return Err(fail(ClientAuthError::UnknownClient));
        };
        let Some(client) = self.clients.get(project, &id).await? else {
            return Err(fail(ClientAuthError::UnknownClient));
        };
        creds.verify(&client, self.now()).map_err(fail)?;
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
    /// server accepts (its issuer, and its token endpoint URL); its `jti`
    /// must be new ([`crate::store::ReplayStore`]). `jwks_uri` is fetched
    /// through the project's metadata fetcher, with the CIMD fetch rules
    /// (https, no redirects, special-use addresses refused, 5120 bytes,
    /// the project's timeout), cached for [`CLIENT_JWKS_TTL`] and fetched
    /// again on an unknown `kid` at most every
    /// [`CLIENT_JWKS_REFETCH_AFTER`]. Every
    /// refusal is recorded as `oauth_client.assertion_rejected` and
    /// answered with one generic `invalid_client`.
    pub(crate) async fn authenticate_with_assertion(
        &self,
        project: &ProjectId,
        settings: &crate::project::ProjectSettings,
        id: &crate::client::ClientId,
        creds: &ClientCredentials,
    ) -> Result<Client, OAuthError> {
        let fail = || ClientAuthError::UnknownClient.to_oauth_error(false);
        let client = match self.resolve_client(project, settings, id).await {
            Ok(c) => c,
            Err(e) if e.code() == crate::error::ErrorCode::ServerError => return Err(e),
            Err(_) => {
                self.reject_assertion(project, id, "unknown_client").await;
                return Err(fail());
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
            let keys = match self.client_keys(project, settings, &client, refetch).await {
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
                return Err(fail());
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
        Err(fail())
    }

    async fn reject_assertion(&self, project: &ProjectId, id: &crate::client::ClientId, reason: &str) {
        self.emit(
            project,
            crate::audit::AuditKind::ClientAssertionRejected {
                client_id: id.to_string(),
                reason: reason.to_owned(),
            },
        )
        .await;
    }

    /// The client's public keys: its inline `jwks`, or the JWK Set at its
    /// `jwks_uri` (cached for [`CLIENT_JWKS_TTL`]). With `refetch`, only a
    /// `jwks_uri` whose cached copy is older than
    /// [`CLIENT_JWKS_REFETCH_AFTER`] is fetched again; `Ok(None)` means
    /// there is nothing newer to try.
    async fn client_keys(
        &self,
        project: &ProjectId,
        settings: &crate::project::ProjectSettings,
        client: &Client,
        refetch: bool,
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
        // Scoped by project: projects never share entries.
        let key = (format!("{project} {}", client.client_id), uri.to_owned());
        let now = self.now();
        let cached = self.client_jwks.get(&key, now);
        match (&cached, refetch) {
            (Some((keys, _)), false) => return Ok(Some(keys.clone())),
            (Some((_, fetched_at)), true) if now - *fetched_at < CLIENT_JWKS_REFETCH_AFTER => return Ok(None),
            (None, true) => return Ok(None),
            _ => {}
        }
        let fetcher = self.metadata_fetcher.as_ref().ok_or("keys_unavailable")?;
        let url = crate::cimd::ClientIdUrl::parse(uri).map_err(|_| "invalid_jwks_uri")?;
        let plan = crate::cimd::FetchPlan::new(url, settings.cimd.fetch_timeout());
        let response = fetcher.fetch(&plan).await.map_err(|_| "keys_unavailable")?;
        if response.status != 200 || response.body.len() > plan.max_body_bytes() {
            return Err("keys_unavailable");
        }
        let value: serde_json::Value = serde_json::from_slice(&response.body).map_err(|_| "invalid_jwks")?;
        let keys = crate::jose::JwkSet::from_json(value).map_err(|_| "invalid_jwks")?;
        self.client_jwks.put(key, keys.clone(), now);
        Ok(Some(keys))
    }
}

/// How long a client's JWK Set fetched from its `jwks_uri` is reused.
pub(crate) const CLIENT_JWKS_TTL: time::Duration = time::Duration::minutes(5);

/// The least age of a cached client JWK Set before an unknown `kid`
/// fetches it again.
pub(crate) const CLIENT_JWKS_REFETCH_AFTER: time::Duration = time::Duration::seconds(30);

/// The most client JWK Sets kept.
const CLIENT_JWKS_MAX: usize = 10_000;

/// Client JWK Sets fetched from `jwks_uri`, by client id and URL, with
/// their fetch time; bounded (when full, expired entries go, then nothing
/// more is cached).
#[derive(Debug, Default)]
pub(crate) struct ClientJwksCache(
    std::sync::Mutex<std::collections::HashMap<(String, String), (crate::jose::JwkSet, time::OffsetDateTime)>>,
);

impl ClientJwksCache {
    fn get(
        &self,
        key: &(String, String),
        now: time::OffsetDateTime,
    ) -> Option<(crate::jose::JwkSet, time::OffsetDateTime)> {
        let map = self.0.lock().ok()?;
        map.get(key).filter(|(_, at)| now - *at < CLIENT_JWKS_TTL).cloned()
    }

    fn put(&self, key: (String, String), keys: crate::jose::JwkSet, now: time::OffsetDateTime) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= CLIENT_JWKS_MAX && !map.contains_key(&key) {
            map.retain(|_, (_, at)| now - *at < CLIENT_JWKS_TTL);
            if map.len() >= CLIENT_JWKS_MAX {
                return;
            }
        }
        map.insert(key, (keys, now));
    }
}
