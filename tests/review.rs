//! Security review of the signed-token, key, client-authentication and
//! upstream-login code: each test here demonstrates one finding of the
//! review report (F1..Fn). A test marked `#[ignore]` fails today and
//! passes once its finding is fixed; run them with
//! `cargo test --all-features --test review -- --ignored`. F1 to F9 are
//! fixed (the tests run); F6 to F8 also in their stricter forms: logins
//! in flight bounded per source, remembered consent per resource and
//! judged on the request's own redirect URI, a `__Host-` binding cookie
//! and an error page for a replayed callback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod sql_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use authio_mcp::discovery::Issuer;
use authio_mcp::resource_server::{JwksFetcher, JwtVerifier, TokenVerifier as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------
// F1: JwtVerifier's unknown-kid rate limit does not hold while the JWKS
// cannot be fetched (cold cache, or concurrent callers).
// ---------------------------------------------------------------------

/// A JWKS endpoint that is down: every fetch fails after yielding once
/// (as a network call would), and is counted.
#[derive(Default)]
struct DownJwks {
    fetches: AtomicUsize,
}

#[async_trait]
impl JwksFetcher for DownJwks {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Err("connection refused".to_owned())
    }
}

/// A token whose header passes every check made before the key lookup
/// (`ES256`, `at+jwt`, a well-formed `kid`): what an attacker sends for
/// free. The signature is junk; it is never reached.
fn token_with_kid(kid: &str) -> String {
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
    let claims = json!({"iss": ISSUER, "sub": "u", "aud": RESOURCE, "exp": START.unix_timestamp() + 60});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

fn verifier_over(fetcher: Arc<DownJwks>) -> JwtVerifier {
    JwtVerifier::new(
        &Issuer::new(ISSUER).unwrap(),
        resource(),
        format!("{ISSUER}/.well-known/jwks.json"),
        fetcher,
    )
}

/// Demonstrates finding F1 (cold cache): while no JWKS was ever fetched,
/// `keys_for` refetches on EVERY token (`cache.keys.is_none()` bypasses
/// `min_refetch_interval`), so a flood of junk tokens becomes a flood of
/// JWKS requests, each holding the fetch lock up to the fetch timeout.
#[tokio::test]
async fn f1_cold_jwks_cache_still_rate_limits_fetches() {
    let fetcher = Arc::new(DownJwks::default());
    let v = verifier_over(fetcher.clone());
    for i in 0..20 {
        assert!(v.verify(&token_with_kid(&format!("k{i}")), START).await.is_err());
    }
    let n = fetcher.fetches.load(Ordering::SeqCst);
    assert_eq!(
        n, 1,
        "20 junk tokens within one second caused {n} JWKS fetches (min_refetch_interval is 30 s)"
    );
}

/// Demonstrates finding F1 (concurrency): callers that passed the
/// `may_try` check together queue on the fetch lock, and `refresh` only
/// skips the fetch when `fetched_at` changed, which a FAILED fetch does
/// not do: N concurrent junk tokens cause N sequential fetches.
#[tokio::test]
async fn f1_concurrent_unknown_kids_fetch_at_most_once() {
    let fetcher = Arc::new(DownJwks::default());
    let v = verifier_over(fetcher.clone());
    let tokens: Vec<String> = (0..20).map(|i| token_with_kid(&format!("k{i}"))).collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| v.verify(t, START))).await;
    assert!(results.iter().all(Result::is_err));
    let n = fetcher.fetches.load(Ordering::SeqCst);
    assert_eq!(n, 1, "20 concurrent junk tokens caused {n} JWKS fetches");
}

// ---------------------------------------------------------------------
// F2: a client's `jwks_uri` is fetched outside the CIMD fetch governor:
// no single flight, no per-host/per-source budget, no negative cache.
// ---------------------------------------------------------------------

mod f2 {
    use super::*;
    use authio_mcp::ErrorCode;
    use authio_mcp::cimd::{FetchError, FetchPlan, FetchResponse, MetadataFetcher};
    use authio_mcp::client_auth::JWT_BEARER_ASSERTION_TYPE;
    use authio_mcp::jose::{PrivateKey, SigningAlgorithm};

    pub(super) const DOC: &str = "https://agent.example.com/client.json";
    pub(super) const JWKS: &str = "https://victim.example.net/keys/jwks.json";

    pub(super) fn client_key() -> PrivateKey {
        PrivateKey::generate(SigningAlgorithm::EdDsa, &[11; 32]).unwrap()
    }

    /// Serves a confidential metadata document whose `jwks_uri` is on
    /// another host; the JWK Set answer takes a network round trip
    /// (yields) and is counted.
    #[derive(Default)]
    pub(super) struct SlowKeys {
        pub(super) jwks_fetches: AtomicUsize,
        /// Answer the JWK Set request with 404 (a victim host that has
        /// no such document).
        pub(super) jwks_missing: bool,
    }

    #[async_trait]
    impl MetadataFetcher for SlowKeys {
        async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
            let body = match plan.url().as_str() {
                DOC => json!({
                    "client_id": DOC,
                    "client_name": "Keyed agent",
                    "redirect_uris": ["https://agent.example.com/callback"],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks_uri": JWKS,
                }),
                JWKS => {
                    self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    if self.jwks_missing {
                        return Ok(FetchResponse::new(404, Vec::new()));
                    }
                    json!({"keys": [client_key().public_jwk("ck1")]})
                }
                _ => return Ok(FetchResponse::new(404, Vec::new())),
            };
            Ok(FetchResponse::new(200, body.to_string().into_bytes()).with_content_type("application/json"))
        }
    }

    pub(super) fn assertion(key: &PrivateKey, kid: &str, client: &str, jti: &str, now: i64) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(kid.to_owned());
        let claims = json!({"iss": client, "sub": client, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": jti});
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(key.expose_der())).unwrap()
    }

    pub(super) fn token_body(assertion: &str) -> String {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("redirect_uri", "https://agent.example.com/callback"),
            ("code_verifier", verifier(1).as_str()),
            ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
            ("client_assertion", assertion),
        ])
    }

    /// Demonstrates finding F2: 20 concurrent token requests whose
    /// assertions name an unknown `kid` make the server fetch the
    /// client's `jwks_uri` 20 times (the 30 s refetch rule is checked
    /// against a cache snapshot each request took before any of them
    /// fetched), none of them through the CIMD fetch governor. The
    /// `jwks_uri` host is whatever the (attacker's) document names.
    #[tokio::test]
    async fn f2_client_jwks_uri_fetches_are_coalesced() {
        let fetcher = Arc::new(SlowKeys::default());
        let h = harness_with(|b| b.metadata_fetcher(fetcher.clone())).await;
        let mut s = project_settings();
        s.cimd.allow_private_key_jwt = true;
        h.server.put_project(&h.project, s).await.unwrap();
        // One good assertion: the document and the JWK Set are cached.
        let now = START.unix_timestamp();
        let good = assertion(&client_key(), "ck1", DOC, "warm", now);
        let e = h
            .server
            .token(&h.project, None, token_body(&good).as_bytes())
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidGrant, "authenticated, then the junk code");
        assert_eq!(fetcher.jwks_fetches.load(Ordering::SeqCst), 1);
        // 31 s later, a burst of assertions with made-up key ids.
        h.clock.advance(time::Duration::seconds(31));
        let now = now + 31;
        let stranger = PrivateKey::generate(SigningAlgorithm::EdDsa, &[13; 32]).unwrap();
        let bodies: Vec<String> = (0..20)
            .map(|i| token_body(&assertion(&stranger, &format!("kid-{i}"), DOC, &format!("j{i}"), now)))
            .collect();
        let results =
            futures_util::future::join_all(bodies.iter().map(|b| h.server.token(&h.project, None, b.as_bytes()))).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.code() == ErrorCode::InvalidClient))
        );
        let n = fetcher.jwks_fetches.load(Ordering::SeqCst);
        assert_eq!(
            n,
            2,
            "20 concurrent unknown-kid assertions must share ONE refetch (a client that rotated its key), not cause {} jwks_uri fetches",
            n - 1
        );
    }

    /// Demonstrates finding F2 (no negative cache): when the `jwks_uri`
    /// fails, nothing is remembered, so EVERY token request naming the
    /// client fetches it again: one unauthenticated request, one
    /// outbound request to a URL of the attacker's choosing (its own
    /// metadata document names it), with no budget at all.
    #[tokio::test]
    async fn f2_a_failing_jwks_uri_is_not_fetched_on_every_request() {
        let fetcher = Arc::new(SlowKeys {
            jwks_missing: true,
            ..SlowKeys::default()
        });
        let h = harness_with(|b| b.metadata_fetcher(fetcher.clone())).await;
        let mut s = project_settings();
        s.cimd.allow_private_key_jwt = true;
        h.server.put_project(&h.project, s).await.unwrap();
        let now = START.unix_timestamp();
        for i in 0..10 {
            let a = assertion(&client_key(), "ck1", DOC, &format!("j{i}"), now);
            let e = h
                .server
                .token(&h.project, None, token_body(&a).as_bytes())
                .await
                .unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidClient);
        }
        let n = fetcher.jwks_fetches.load(Ordering::SeqCst);
        assert_eq!(
            n, 1,
            "10 token requests within one second fetched the failing jwks_uri {n} times"
        );
    }
}

// ---------------------------------------------------------------------
// F3: one client fills the shared replay store and locks every
// private_key_jwt client of every project out.
// ---------------------------------------------------------------------

mod f3 {
    use super::*;
    use authio_mcp::ErrorCode;
    use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
    use authio_mcp::project::ProjectId;
    use authio_mcp::redirect_uri::RedirectUriPolicy;
    use authio_mcp::store::ClientStore as _;
    use authio_mcp::store::memory::MemoryReplayStore;

    async fn keyed_client(h: &Harness, project: &ProjectId, n: u8) -> ClientId {
        let metadata: ClientMetadata = serde_json::from_value(json!({
            "redirect_uris": [REDIRECT],
            "client_name": format!("Keyed {n}"),
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["authorization_code"],
            "jwks": {"keys": [f2::client_key().public_jwk("ck1")]},
        }))
        .unwrap();
        let v = metadata
            .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
            .unwrap();
        let id = ClientId::Registered(RegisteredClientId::from_random(&[n; 12]));
        assert!(
            h.clients
                .insert(project, Client::new(id.clone(), v, START))
                .await
                .unwrap()
        );
        id
    }

    /// Demonstrates finding F3: the server's replay store (memory by
    /// default) had ONE bound for all projects and clients, and a full
    /// store answered "replay". An attacker's own client in its own
    /// project sent assertions with fresh `jti`s (each one is recorded as
    /// soon as the signature verifies, before the grant is looked at)
    /// until the store was full; from then on, for up to the assertion
    /// lifetime (6 minutes), every private_key_jwt client of every project
    /// got `invalid_client`. Fixed: each (project, client) has a quota in
    /// front of the global bound, and a full quota refuses only that
    /// client. Here the global bound is 8 and the quota 4, so the test
    /// stays small: the attacker gets 4 through, is refused after that
    /// (audited as `jti_quota_exceeded`), and the victim in another
    /// project still authenticates.
    #[tokio::test]
    async fn f3_one_client_cannot_exhaust_the_replay_store_of_others() {
        let h = harness_with(|b| {
            b.replay_store(Arc::new(MemoryReplayStore::new(8)))
                .assertion_jti_quota(4)
        })
        .await;
        let evil = ProjectId::new("proj_evil").unwrap();
        h.server.put_project(&evil, project_settings()).await.unwrap();
        let attacker = keyed_client(&h, &evil, 1).await;
        let victim = keyed_client(&h, &h.project, 2).await;
        let now = START.unix_timestamp();
        let key = f2::client_key();
        for i in 0..8 {
            let a = f2::assertion(&key, "ck1", attacker.as_str(), &format!("flood-{i}"), now);
            let e = h
                .server
                .token(&evil, None, f2::token_body(&a).as_bytes())
                .await
                .unwrap_err();
            let want = if i < 4 {
                ErrorCode::InvalidGrant // authenticated, then the junk code
            } else {
                ErrorCode::InvalidClient // its own quota is full
            };
            assert_eq!(e.code(), want, "attacker assertion {i}");
        }
        let refused: Vec<String> = h
            .audit
            .recent(&evil, 20)
            .iter()
            .map(authio_mcp::audit::AuditEvent::to_json)
            .filter(|e| e["event"] == "oauth_client.assertion_rejected")
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            refused,
            vec!["jti_quota_exceeded"; 4],
            "the attacker's refusals are audited"
        );
        let a = f2::assertion(&key, "ck1", victim.as_str(), "first-use", now);
        let e = h
            .server
            .token(&h.project, None, f2::token_body(&a).as_bytes())
            .await
            .unwrap_err();
        let reasons: Vec<String> = h
            .audit
            .recent(&h.project, 10)
            .iter()
            .map(authio_mcp::audit::AuditEvent::to_json)
            .filter(|e| e["event"] == "oauth_client.assertion_rejected")
            .map(|e| e["reason"].to_string())
            .collect();
        assert_eq!(
            e.code(),
            ErrorCode::InvalidGrant,
            "the victim's first use of a fresh jti in another project must authenticate (rejected as {reasons:?})"
        );
    }
}

// ---------------------------------------------------------------------
// F4: the upstream relying party's HTTP client (discovery, JWKS, token
// endpoint) connects to special-use addresses.
// ---------------------------------------------------------------------

mod f4 {
    use super::*;
    use authio_mcp::net::ReqwestUpstreamHttp;
    use authio_mcp::upstream::{UpstreamHttp as _, UpstreamHttpError};

    /// Demonstrates finding F4: a project's upstream issuer (a setting the
    /// project's admin chooses) and the endpoints its discovery document
    /// names (`jwks_uri`, `token_endpoint`: any https URL on any host) are
    /// requested by `ReqwestUpstreamHttp` without the special-use address
    /// checks the CIMD fetcher makes: the server connects to loopback,
    /// RFC 1918, link-local ... addresses, by IP literal or by a name that
    /// resolves there (blind SSRF: GET, and a form POST carrying the client
    /// credential to the token endpoint).
    #[tokio::test]
    async fn f4_upstream_http_never_connects_to_special_use_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        let http = ReqwestUpstreamHttp::builder().build().unwrap();
        let mut results = Vec::new();
        for url in [
            format!("https://127.0.0.1:{port}/.well-known/openid-configuration"),
            format!("https://localhost:{port}/.well-known/openid-configuration"),
            format!("https://[::ffff:127.0.0.1]:{port}/.well-known/jwks.json"),
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "https://10.0.0.1/.well-known/jwks.json".to_owned(),
        ] {
            results.push((url.clone(), http.get(&url).await));
        }
        let url = format!("https://127.0.0.1:{port}/token");
        results.push((url.clone(), http.post_form(&url, "code=x".into(), None).await));
        server.abort();
        let n = accepted.load(Ordering::SeqCst);
        assert_eq!(n, 0, "{n} connections were made to 127.0.0.1: {results:?}");
        for (url, r) in results {
            assert!(matches!(r, Err(UpstreamHttpError::UrlRefused)), "{url}: {r:?}");
        }
    }
}

// ---------------------------------------------------------------------
// F5: the SQL KeyStore keeps every signing key as plaintext DER, by
// default and with no way to plug in encryption.
// ---------------------------------------------------------------------

mod f5 {
    use super::*;
    use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
    use authio_mcp::project::AccessTokenFormat;
    use authio_mcp::store::sql::{SqlOptions, SqliteStore};

    /// Demonstrates finding F5: with the default SQL store, whoever could
    /// read `signing_keys` (a backup, a read replica, an analytics export,
    /// SQL injection in the host's own code) got the active keys, and
    /// with them could sign access tokens every resource server accepts
    /// and ID tokens every client accepts, for any user. The `KeyStore`
    /// trait's own contract says keys are "encrypted at rest"; CONVENTIONS
    /// 11 says an insecure choice must be an explicit `danger_*` opt-in.
    /// Fixed: a store with the default options refuses to store a key at
    /// all (the JWKS answers `server_error`, nothing lands in the table);
    /// with `SqlOptions::key_encryption` the table holds only sealed bytes.
    #[tokio::test]
    async fn f5_signing_keys_are_not_readable_from_the_database() {
        let dir = sql_support::TempDir::new();
        // The defaults: no key protection chosen, so no key is stored.
        let url = dir.sqlite_url("default.db");
        let store = Arc::new(SqliteStore::connect(&url, SqlOptions::default()).await.unwrap());
        store.migrate().await.unwrap();
        let h = harness_with(|b| b.key_store(store.clone())).await;
        let mut s = project_settings();
        s.access_token_format = AccessTokenFormat::Jwt;
        h.server.put_project(&h.project, s.clone()).await.unwrap();
        let e = h.server.jwks(&h.project).await.unwrap_err();
        assert_eq!(e.code(), authio_mcp::ErrorCode::ServerError);
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "no key was stored without a protection chosen");
        // Sealed: the store works, and the table holds no usable key.
        let url = dir.sqlite_url("keys.db");
        let store = Arc::new(SqliteStore::connect(&url, sql_support::sealed_options()).await.unwrap());
        store.migrate().await.unwrap();
        let h = harness_with(|b| b.key_store(store.clone())).await;
        h.server.put_project(&h.project, s).await.unwrap();
        let jwks = h.server.jwks(&h.project).await.unwrap();
        assert!(!jwks.keys.is_empty());
        // A reader of the table, nothing else.
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows: Vec<(String, String, Vec<u8>, String)> =
            sqlx::query_as("SELECT kid, alg, private_key, key_protection FROM signing_keys")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(!rows.is_empty());
        let mut usable = Vec::new();
        for (kid, alg, der, protection) in rows {
            assert_eq!(protection, "sealed");
            let alg = SigningAlgorithm::from_name(&alg).unwrap();
            if let Ok(k) = PrivateKey::from_der(alg, der)
                && jwks.keys.contains(&k.public_jwk(&kid))
            {
                usable.push(kid);
            }
        }
        assert!(
            usable.is_empty(),
            "published signing keys {usable:?} read back from the table as plaintext private keys"
        );
    }
}

// ---------------------------------------------------------------------
// Upstream login findings (F6, F7, F8): A signs users in at B, another
// authorization server in this process, behind an in-process
// `UpstreamHttp`.
// ---------------------------------------------------------------------

mod up {
    use super::*;
    use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
    use authio_mcp::grant::Subject;
    use authio_mcp::project::{ProjectId, ProjectSettings};
    use authio_mcp::redirect_uri::RedirectUriPolicy;
    use authio_mcp::scope::ScopeSet;
    use authio_mcp::secret::SecretString;
    use authio_mcp::server::{AuthorizationServer, AuthorizeOutcome, CallbackOutcome, FixedClock, SeededRandom};
    use authio_mcp::store::ClientStore as _;
    use authio_mcp::store::memory::MemoryClientStore;
    use authio_mcp::upstream::{
        HttpResponse, ProviderName, UpstreamClientAuth, UpstreamHttp, UpstreamHttpError, UpstreamProvider,
    };

    pub(super) const IDP: &str = "https://idp.example.com";

    pub(super) struct Bridge {
        pub(super) b: AuthorizationServer,
        pub(super) project: ProjectId,
    }

    #[async_trait]
    impl UpstreamHttp for Bridge {
        async fn get(&self, url: &str) -> Result<HttpResponse, UpstreamHttpError> {
            if url == format!("{IDP}/.well-known/openid-configuration") {
                let m = self.b.metadata(&self.project).await.unwrap();
                return Ok(HttpResponse::new(200, m.to_json()));
            }
            if url == format!("{IDP}/.well-known/jwks.json") {
                let k = self.b.jwks(&self.project).await.unwrap();
                return Ok(HttpResponse::new(200, k.to_json()));
            }
            Ok(HttpResponse::new(404, Vec::new()))
        }

        async fn post_form(
            &self,
            _url: &str,
            form: String,
            authorization: Option<&SecretString>,
        ) -> Result<HttpResponse, UpstreamHttpError> {
            let auth = authorization.map(SecretString::expose_secret);
            Ok(match self.b.token(&self.project, auth, form.as_bytes()).await {
                Ok(t) => HttpResponse::new(200, t.to_json()),
                Err(e) => {
                    let e = authio_mcp::OAuthError::from(e);
                    HttpResponse::new(e.status().as_u16(), e.to_json())
                }
            })
        }

        async fn get_with_bearer(&self, _url: &str, token: &SecretString) -> Result<HttpResponse, UpstreamHttpError> {
            let auth = format!("Bearer {}", token.expose_secret());
            Ok(match self.b.userinfo(&self.project, Some(&auth)).await {
                Ok(v) => HttpResponse::new(200, serde_json::to_vec(&v).unwrap()),
                Err(e) => {
                    let e = authio_mcp::OAuthError::from(e);
                    HttpResponse::new(e.status().as_u16(), e.to_json())
                }
            })
        }
    }

    pub(super) struct Setup {
        pub(super) a: Harness,
        pub(super) bridge: Arc<Bridge>,
        pub(super) provider: UpstreamProvider,
    }

    pub(super) async fn setup(
        extra: impl FnOnce(authio_mcp::server::AuthorizationServerBuilder) -> authio_mcp::server::AuthorizationServerBuilder,
    ) -> Setup {
        let clock = Arc::new(FixedClock::new(START));
        let b_project = ProjectId::new("proj_idp").unwrap();
        let b_clients = Arc::new(MemoryClientStore::new());
        let b = AuthorizationServer::builder(Issuer::new(IDP).unwrap())
            .clock(clock.clone())
            .random(Arc::new(SeededRandom::new(7)))
            .clients(b_clients.clone())
            .build();
        let mut s = project_settings();
        s.scopes_supported = ScopeSet::parse("openid email profile mcp:read").unwrap();
        b.put_project(&b_project, s).await.unwrap();
        let callback = format!("{ISSUER}/v1/auth/oauth/oidc/callback");
        let metadata: ClientMetadata = serde_json::from_value(json!({
            "redirect_uris": [callback],
            "token_endpoint_auth_method": "none",
        }))
        .unwrap();
        let v = metadata
            .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
            .unwrap();
        let a_at_b = ClientId::Registered(RegisteredClientId::from_random(&[3; 12]));
        b_clients
            .insert(&b_project, Client::new(a_at_b.clone(), v, START))
            .await
            .unwrap();
        let bridge = Arc::new(Bridge { b, project: b_project });
        let http: Arc<dyn UpstreamHttp> = bridge.clone();
        let a = harness_with(move |builder| extra(builder.upstream_http(http).clock(clock))).await;
        let mut provider = UpstreamProvider::generic(
            ProviderName::new("oidc").unwrap(),
            Issuer::new(IDP).unwrap(),
            a_at_b.as_str(),
        );
        provider.client_auth = UpstreamClientAuth::None;
        let setup = Setup { a, bridge, provider };
        setup.use_upstream(&setup.a.project.clone(), project_settings()).await;
        setup
    }

    impl Setup {
        /// Puts `project` with `settings`, every sign-in through B.
        pub(super) async fn use_upstream(&self, project: &ProjectId, mut settings: ProjectSettings) {
            settings.upstream.providers.push(self.provider.clone());
            settings
                .select_upstream(Some(self.provider.name.clone()), "/v1/auth/oauth")
                .unwrap();
            self.a.server.put_project(project, settings).await.unwrap();
        }

        /// The MCP authorization request of `client` in `project`: A's
        /// redirect to B and the browser-binding cookie, or what A
        /// answered instead.
        pub(super) async fn start(
            &self,
            project: &ProjectId,
            client: &ClientId,
            extra: &str,
        ) -> Result<(String, String), AuthorizeOutcome> {
            let q = auth_query(client, REDIRECT, &verifier(1), extra);
            match self.a.server.authorize(project, &q).await {
                AuthorizeOutcome::UpstreamLogin {
                    location,
                    browser_binding,
                    ..
                } => Ok((location, browser_binding.expose_secret().to_owned())),
                other => Err(other),
            }
        }

        /// Like [`Setup::start`] for a raw authorization query.
        pub(super) async fn start_query(&self, project: &ProjectId, query: &str) -> (String, String) {
            match self.a.server.authorize(project, query).await {
                AuthorizeOutcome::UpstreamLogin {
                    location,
                    browser_binding,
                    ..
                } => (location, browser_binding.expose_secret().to_owned()),
                other => panic!("expected an upstream login, got {other:?}"),
            }
        }

        /// A whole sign-in of `user` for `query`, ending at A's callback.
        pub(super) async fn sign_in(&self, query: &str, user: &str) -> CallbackOutcome {
            let (to_b, binding) = self.start_query(&self.a.project, query).await;
            let back = self.at_b(&to_b, user).await;
            self.callback(&back, Some(&binding)).await
        }

        /// B signs `user` in: B's redirect back to A's callback.
        pub(super) async fn at_b(&self, to_b: &str, user: &str) -> String {
            let query = to_b.split_once('?').unwrap().1;
            match self.bridge.b.authorize(&self.bridge.project, query).await {
                AuthorizeOutcome::Pending(p) => self
                    .bridge
                    .b
                    .approve(*p, Subject::new(user).unwrap(), None)
                    .await
                    .unwrap(),
                other => panic!("B refused: {other:?}"),
            }
        }

        pub(super) async fn callback(&self, back: &str, binding: Option<&str>) -> CallbackOutcome {
            let query = back.split_once('?').unwrap().1;
            self.a
                .server
                .finish_upstream_login(&self.a.project, "oidc", query, binding)
                .await
        }
    }
}

/// The upstream harness works: a whole sign-in at B ends signed in at A
/// (a baseline for F6..F8, not a finding).
#[tokio::test]
async fn upstream_harness_signs_a_user_in() {
    use authio_mcp::server::CallbackOutcome;
    let s = up::setup(|b| b).await;
    let client = s.a.public_client(1, &[REDIRECT]).await;
    let (to_b, binding) = s.start(&s.a.project, &client, "").await.unwrap();
    let back = s.at_b(&to_b, "alice").await;
    match s.callback(&back, Some(&binding)).await {
        CallbackOutcome::SignedIn(signed_in) => {
            let location = s.a.server.approve_signed_in(*signed_in, None).await.unwrap();
            assert!(query_param(&location, "code").is_some(), "{location}");
        }
        other => panic!("{other:?}"),
    }
}

mod f6 {
    use super::*;
    use authio_mcp::project::ProjectId;
    use authio_mcp::store::memory::MemoryUpstreamLoginStore;

    /// Demonstrates finding F6: upstream logins in flight are created by
    /// an unauthenticated `GET /authorize` (any public client of any
    /// project whose sign-in goes upstream), each holds a whole
    /// `PendingAuthorization` for 10 minutes, and the store has one bound
    /// for every project and source (100,000 by default, about 170
    /// requests per second, hundreds of MB in memory). When it is full,
    /// every project's users get an error instead of a sign-in. Here the
    /// bound is 5 so the test stays small.
    #[tokio::test]
    async fn f6_one_project_cannot_fill_the_login_store_of_others() {
        let s = up::setup(|b| b.upstream_login_store(Arc::new(MemoryUpstreamLoginStore::new(5)))).await;
        let evil = ProjectId::new("proj_evil").unwrap();
        s.use_upstream(&evil, project_settings()).await;
        let evil_client = {
            // A public client of the attacker's project.
            use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
            use authio_mcp::redirect_uri::RedirectUriPolicy;
            use authio_mcp::store::ClientStore as _;
            let m: ClientMetadata = serde_json::from_value(json!({
                "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"
            }))
            .unwrap();
            let v = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
            let id = ClientId::Registered(RegisteredClientId::from_random(&[66; 12]));
            s.a.clients
                .insert(&evil, Client::new(id.clone(), v, START))
                .await
                .unwrap();
            id
        };
        for _ in 0..5 {
            s.start(&evil, &evil_client, "").await.unwrap();
        }
        let victim_client = s.a.public_client(1, &[REDIRECT]).await;
        let r = s.start(&s.a.project, &victim_client, "").await;
        assert!(
            r.is_ok(),
            "another project's user cannot start a sign-in once the attacker filled the store: {:?}",
            r.err()
        );
    }
}

mod f6_source {
    use super::*;
    use authio_mcp::cimd::RequestSource;
    use authio_mcp::server::AuthorizeOutcome;
    use authio_mcp::store::memory::MemoryUpstreamLoginStore;

    /// Stricter F6: the per-project bound still let ONE source (one client
    /// address, anonymous `GET /authorize` requests) fill its whole
    /// project's share, so nobody else could sign in to that project.
    /// Fixed: a bound per (project, source). Here 3 per source: the fourth
    /// login from one address is refused with `temporarily_unavailable`
    /// on the redirect (not `server_error`: the store is not broken) and
    /// audited, while another address still signs in.
    #[tokio::test]
    async fn f6_one_source_cannot_fill_its_projects_login_store() {
        let s = up::setup(|b| b.upstream_login_store(Arc::new(MemoryUpstreamLoginStore::new(100).per_source_limit(3))))
            .await;
        let client = s.a.public_client(1, &[REDIRECT]).await;
        let q = auth_query(&client, REDIRECT, &verifier(1), "");
        let flood = RequestSource::from_ip("203.0.113.9".parse().unwrap());
        for i in 0..3 {
            let r = s.a.server.authorize_from(&s.a.project, &q, Some(&flood)).await;
            assert!(matches!(r, AuthorizeOutcome::UpstreamLogin { .. }), "login {i}: {r:?}");
        }
        match s.a.server.authorize_from(&s.a.project, &q, Some(&flood)).await {
            AuthorizeOutcome::Redirect(location) => {
                assert_eq!(
                    query_param(&location, "error").as_deref(),
                    Some("temporarily_unavailable"),
                    "{location}"
                );
                assert_eq!(query_param(&location, "state").as_deref(), Some("st4te"));
            }
            other => panic!("a fourth login from one source was not refused: {other:?}"),
        }
        let reasons: Vec<String> =
            s.a.audit
                .recent(&s.a.project, 20)
                .iter()
                .map(authio_mcp::audit::AuditEvent::to_json)
                .filter(|e| e["event"] == "upstream.login_failed")
                .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
                .collect();
        assert_eq!(reasons, vec!["too_many_logins"], "the refusal is audited");
        let other = RequestSource::from_ip("198.51.100.4".parse().unwrap());
        let r = s.a.server.authorize_from(&s.a.project, &q, Some(&other)).await;
        assert!(
            matches!(r, AuthorizeOutcome::UpstreamLogin { .. }),
            "another source is still admitted: {r:?}"
        );
    }
}

mod f7 {
    use super::*;
    use authio_mcp::resource::ResourceUri;
    use authio_mcp::server::CallbackOutcome;

    const PAYROLL: &str = "https://payroll.example.com/mcp";

    /// Demonstrates finding F7: a remembered consent is keyed by (user,
    /// client) and covers scopes only. Once a user allowed a client
    /// `mcp:read` on the calendar MCP server, the same client (or anyone
    /// holding its `client_id` and a registered redirect URI, e.g. a
    /// public CIMD client) gets a code for ANOTHER resource of the
    /// project, the payroll MCP server, without the user being asked:
    /// the consent screen named one audience, the token carries another.
    #[tokio::test]
    async fn f7_remembered_consent_does_not_cover_another_resource() {
        let s = up::setup(|b| b).await;
        let mut settings = project_settings();
        for (uri, name) in [(RESOURCE, "Calendar"), (PAYROLL, "Payroll")] {
            settings
                .resources
                .upsert(authio_mcp::project::KnownResource::new(ResourceUri::parse(uri).unwrap(), name).unwrap());
        }
        s.use_upstream(&s.a.project, settings).await;
        let client = s.a.public_client(1, &[REDIRECT]).await;
        // First sign-in: consent for the calendar server (RESOURCE).
        let (to_b, binding) = s.start(&s.a.project, &client, "").await.unwrap();
        let back = s.at_b(&to_b, "alice").await;
        let CallbackOutcome::SignedIn(signed_in) = s.callback(&back, Some(&binding)).await else {
            panic!("consent expected on the first sign-in");
        };
        s.a.server.approve_signed_in(*signed_in, None).await.unwrap();
        // Second: the same scopes for the payroll server.
        let q = auth_query(&client, REDIRECT, &verifier(1), "")
            .replace(&form(&[("resource", RESOURCE)]), &form(&[("resource", PAYROLL)]));
        let to_b = match s.a.server.authorize(&s.a.project, &q).await {
            authio_mcp::server::AuthorizeOutcome::UpstreamLogin {
                location,
                browser_binding,
                ..
            } => (location, browser_binding.expose_secret().to_owned()),
            other => panic!("{other:?}"),
        };
        let back = s.at_b(&to_b.0, "alice").await;
        match s.callback(&back, Some(&to_b.1)).await {
            CallbackOutcome::SignedIn(_) => {}
            CallbackOutcome::Redirect(location) => {
                let code = query_param(&location, "code").unwrap();
                let t = s.a.exchange(&client, &code, &verifier(1), "").await.unwrap();
                let aud = s.a.introspect(&t.access_token).await["aud"].clone();
                panic!("no consent asked for a new audience: straight to {location}, token aud {aud}")
            }
            other => panic!("{other:?}"),
        }
    }
}

mod f7b {
    use super::*;
    use authio_mcp::server::CallbackOutcome;

    /// Demonstrates finding F7 (`prompt=consent`): the client asks for the
    /// consent screen again (`PendingAuthorization::force_consent`, whose
    /// doc still says "this crate keeps no consent memory, so consent is
    /// asked every time anyway"), and the remembered consent answers with
    /// a code instead.
    #[tokio::test]
    async fn f7_prompt_consent_is_honoured_after_a_remembered_consent() {
        let s = up::setup(|b| b).await;
        let client = s.a.public_client(1, &[REDIRECT]).await;
        let q = auth_query(&client, REDIRECT, &verifier(1), "");
        let CallbackOutcome::SignedIn(first) = s.sign_in(&q, "alice").await else {
            panic!("consent expected on the first sign-in");
        };
        s.a.server.approve_signed_in(*first, None).await.unwrap();
        let q = auth_query(&client, REDIRECT, &verifier(1), "&prompt=consent");
        match s.sign_in(&q, "alice").await {
            CallbackOutcome::SignedIn(p) => assert!(p.pending.force_consent),
            other => panic!("prompt=consent, yet no consent screen: {other:?}"),
        }
    }

    /// Demonstrates finding F7 (native public clients): RFC 8252 section
    /// 8.6 says a request must not be approved automatically just because
    /// the user approved this client id before, unless the client's
    /// identity is assured; a public client with loopback redirect URIs
    /// (the CIMD document of a desktop MCP client, usable by any local
    /// process) is not. The consent page would warn (`loopback_only`);
    /// the remembered consent skips the page and hands the code to
    /// whatever listens on the port the request names.
    #[tokio::test]
    async fn f7_loopback_public_clients_are_not_approved_silently() {
        let s = up::setup(|b| b).await;
        let client = s.a.public_client(2, &["http://127.0.0.1/callback"]).await;
        let q = auth_query(&client, "http://127.0.0.1:49152/callback", &verifier(1), "");
        let CallbackOutcome::SignedIn(first) = s.sign_in(&q, "alice").await else {
            panic!("consent expected on the first sign-in");
        };
        assert!(first.pending.loopback_only);
        s.a.server.approve_signed_in(*first, None).await.unwrap();
        // Later, another local process, another port.
        let q = auth_query(&client, "http://127.0.0.1:6666/callback", &verifier(2), "");
        match s.sign_in(&q, "alice").await {
            CallbackOutcome::SignedIn(_) => {}
            CallbackOutcome::Redirect(location) => {
                panic!("code sent to a new loopback listener without any consent screen: {location}")
            }
            other => panic!("{other:?}"),
        }
    }
}

mod f7_strict {
    use super::*;
    use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
    use authio_mcp::redirect_uri::RedirectUriPolicy;
    use authio_mcp::resource::ResourceUri;
    use authio_mcp::server::{AuthorizeOutcome, CallbackOutcome};
    use authio_mcp::store::ClientStore as _;

    const PAYROLL: &str = "https://payroll.example.com/mcp";
    const LOOPBACK: &str = "http://127.0.0.1/callback";

    fn query(client: &ClientId, redirect: &str, n: u8, scope: &str, resource: &str) -> String {
        auth_query(
            client,
            redirect,
            &verifier(n),
            &format!("&{}", form(&[("scope", scope)])),
        )
        .replace(&form(&[("resource", RESOURCE)]), &form(&[("resource", resource)]))
    }

    async fn approve(s: &up::Setup, q: &str) {
        match s.sign_in(q, "alice").await {
            CallbackOutcome::SignedIn(signed_in) => {
                s.a.server.approve_signed_in(*signed_in, None).await.unwrap();
            }
            other => panic!("consent expected: {other:?}"),
        }
    }

    /// Stricter F7: remembered consent pooled the scopes and the resources
    /// of every approval, so approving `mcp:read` for the calendar server
    /// and later `mcp:write` for the payroll server silently covered
    /// `mcp:write` for the calendar server, which the user never allowed.
    /// Fixed: scopes are remembered per resource.
    #[tokio::test]
    async fn f7_scopes_allowed_for_one_resource_do_not_cover_another() {
        let s = up::setup(|b| b).await;
        let mut settings = project_settings();
        settings
            .resources
            .upsert(authio_mcp::project::KnownResource::new(ResourceUri::parse(PAYROLL).unwrap(), "Payroll").unwrap());
        s.use_upstream(&s.a.project, settings).await;
        let client = s.a.public_client(1, &[REDIRECT]).await;
        approve(&s, &query(&client, REDIRECT, 1, "mcp:read", RESOURCE)).await;
        approve(&s, &query(&client, REDIRECT, 2, "mcp:write", PAYROLL)).await;
        match s
            .sign_in(&query(&client, REDIRECT, 3, "mcp:write", RESOURCE), "alice")
            .await
        {
            CallbackOutcome::SignedIn(p) => assert_eq!(p.pending.scopes.to_string(), "mcp:write"),
            other => panic!("mcp:write on the calendar server was never allowed, yet: {other:?}"),
        }
        // What was allowed for each resource still answers at once.
        for (n, scope, resource) in [(4, "mcp:read", RESOURCE), (5, "mcp:write", PAYROLL)] {
            match s.sign_in(&query(&client, REDIRECT, n, scope, resource), "alice").await {
                CallbackOutcome::Redirect(l) => assert!(query_param(&l, "code").is_some(), "{l}"),
                other => panic!("{scope} on {resource} was allowed: {other:?}"),
            }
        }
    }

    /// Stricter F7: `loopback_only` describes the client (ALL its redirect
    /// URIs are loopback), so a public client registering an https URI
    /// AND a loopback one was approved by remembered consent while the
    /// code went to the loopback one, where any local process may listen
    /// (RFC 8252 section 8.6). Fixed: the redirect URI of THIS request
    /// decides; the https one still answers from remembered consent.
    #[tokio::test]
    async fn f7_a_loopback_redirect_of_a_mixed_public_client_is_asked_every_time() {
        let s = up::setup(|b| b).await;
        let client = s.a.public_client(2, &[REDIRECT, LOOPBACK]).await;
        approve(&s, &query(&client, REDIRECT, 1, "mcp:read", RESOURCE)).await;
        let to_loopback = query(&client, "http://127.0.0.1:49152/callback", 2, "mcp:read", RESOURCE);
        match s.sign_in(&to_loopback, "alice").await {
            CallbackOutcome::SignedIn(p) => assert!(!p.pending.client_identity_assured()),
            other => panic!("code sent to a loopback listener without a consent page: {other:?}"),
        }
        match s
            .sign_in(&query(&client, REDIRECT, 3, "mcp:read", RESOURCE), "alice")
            .await
        {
            CallbackOutcome::Redirect(l) => assert!(query_param(&l, "code").is_some(), "{l}"),
            other => panic!("the https redirect is answered by remembered consent: {other:?}"),
        }
    }

    /// Stricter F7: `prompt=none` for a request whose client identity is
    /// not assured (a public client, a loopback redirect) can never be
    /// answered silently, so it gets `consent_required` on the redirect at
    /// once (OpenID Connect Core 1.0 section 3.1.2.6), even with a
    /// remembered consent, and no login starts.
    #[tokio::test]
    async fn f7_prompt_none_for_an_unassured_client_is_consent_required() {
        let s = up::setup(|b| b).await;
        let client = s.a.public_client(2, &[REDIRECT, LOOPBACK]).await;
        approve(&s, &query(&client, REDIRECT, 1, "mcp:read", RESOURCE)).await;
        let q = query(&client, "http://127.0.0.1:49152/callback", 2, "mcp:read", RESOURCE) + "&prompt=none";
        match s.a.server.authorize(&s.a.project, &q).await {
            AuthorizeOutcome::Redirect(l) => {
                assert!(l.starts_with("http://127.0.0.1:49152/callback?"), "{l}");
                assert_eq!(query_param(&l, "error").as_deref(), Some("consent_required"), "{l}");
                assert_eq!(query_param(&l, "state").as_deref(), Some("st4te"));
            }
            other => panic!("prompt=none for a loopback public client: {other:?}"),
        }
    }

    /// A private-use scheme (`cursor://...`) is claimable by any installed
    /// app: a public client redirecting there is asked every time.
    #[tokio::test]
    async fn f7_a_private_use_scheme_redirect_is_asked_every_time() {
        const APP: &str = "cursor://anysphere.cursor-mcp/oauth/callback";
        let s = up::setup(|b| b).await;
        let mut settings = project_settings();
        settings.redirect_uri_policy = RedirectUriPolicy::with_private_use_schemes();
        s.use_upstream(&s.a.project, settings).await;
        let m: ClientMetadata =
            serde_json::from_value(json!({"redirect_uris": [APP], "token_endpoint_auth_method": "none"})).unwrap();
        let v = m
            .validate(MetadataProfile::Dcr, RedirectUriPolicy::with_private_use_schemes())
            .unwrap();
        let client = ClientId::Registered(RegisteredClientId::from_random(&[9; 12]));
        s.a.clients
            .insert(&s.a.project, Client::new(client.clone(), v, START))
            .await
            .unwrap();
        approve(&s, &query(&client, APP, 1, "mcp:read", RESOURCE)).await;
        match s.sign_in(&query(&client, APP, 2, "mcp:read", RESOURCE), "alice").await {
            CallbackOutcome::SignedIn(p) => assert_eq!(p.pending.app_scheme.as_deref(), Some("cursor")),
            other => panic!("code sent to an app scheme without a consent page: {other:?}"),
        }
    }

    /// A confidential client's code is worthless without its credential,
    /// so its identity is assured even on a loopback redirect: remembered
    /// consent answers it.
    #[tokio::test]
    async fn f7_a_confidential_client_on_loopback_is_answered_by_remembered_consent() {
        let s = up::setup(|b| b).await;
        let m: ClientMetadata = serde_json::from_value(json!({
            "redirect_uris": [LOOPBACK], "token_endpoint_auth_method": "client_secret_basic"
        }))
        .unwrap();
        let v = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
        let client = ClientId::Registered(RegisteredClientId::from_random(&[8; 12]));
        s.a.clients
            .insert(&s.a.project, Client::new(client.clone(), v, START))
            .await
            .unwrap();
        let redirect = "http://127.0.0.1:49152/callback";
        approve(&s, &query(&client, redirect, 1, "mcp:read", RESOURCE)).await;
        match s
            .sign_in(&query(&client, redirect, 2, "mcp:read", RESOURCE), "alice")
            .await
        {
            CallbackOutcome::Redirect(l) => assert!(query_param(&l, "code").is_some(), "{l}"),
            other => panic!("a confidential client's remembered consent: {other:?}"),
        }
    }
}

mod f8 {
    use super::*;
    use authio_mcp::server::CallbackOutcome;

    /// Demonstrates finding F8: the login is TAKEN (single use spent)
    /// before the browser binding is checked, and a callback from a
    /// browser without the binding cookie is answered with the error
    /// redirect to the MCP client carrying the client's own `state`. So
    /// whoever learns an upstream `state` (Referer, logs, a shared link;
    /// the upstream `code` is not needed) and calls the callback first
    /// (a) kills the victim's sign-in and (b) receives the victim
    /// client's redirect URI and `state`, the value the MCP client uses
    /// against CSRF on its own callback.
    #[tokio::test]
    async fn f8_a_callback_without_the_binding_neither_spends_the_login_nor_redirects() {
        let s = up::setup(|b| b).await;
        let client = s.a.public_client(1, &[REDIRECT]).await;
        let (to_b, binding) = s.start(&s.a.project, &client, "").await.unwrap();
        let back = s.at_b(&to_b, "alice").await;
        // The attacker replays the callback URL (or only its state) first,
        // from a browser without the cookie.
        let state = query_param(&back, "state").unwrap();
        let attacker = format!(
            "{ISSUER}/v1/auth/oauth/oidc/callback?{}",
            form(&[("state", &state), ("code", "x")])
        );
        let first = s.callback(&attacker, None).await;
        // The user's own browser must still complete the sign-in.
        let second = s.callback(&back, Some(&binding)).await;
        let leaked = matches!(&first, CallbackOutcome::Redirect(l) if l.contains("state=st4te"));
        let spent = !matches!(second, CallbackOutcome::SignedIn(_));
        assert!(
            !leaked && !spent,
            "bindingless caller got {first:?}; the victim's own callback then got {second:?}"
        );
    }
}

mod f8_strict {
    use super::*;
    use authio_mcp::http::{
        AuthorizeResponse, HeaderOrDefaultProjectResolver, OAuthEndpoints, UpstreamCallbackResponse,
    };
    use authio_mcp::server::CallbackOutcome;

    /// Stricter F8: a replayed callback (the login already taken: a reload,
    /// or a copy of the URL with the cookie) was answered with a second
    /// redirect to the MCP client. Fixed: an error page.
    #[tokio::test]
    async fn f8_a_replayed_callback_shows_an_error_page() {
        let s = up::setup(|b| b).await;
        let client = s.a.public_client(1, &[REDIRECT]).await;
        let (to_b, binding) = s.start(&s.a.project, &client, "").await.unwrap();
        let back = s.at_b(&to_b, "alice").await;
        assert!(matches!(
            s.callback(&back, Some(&binding)).await,
            CallbackOutcome::SignedIn(_)
        ));
        match s.callback(&back, Some(&binding)).await {
            CallbackOutcome::ShowError(e) => assert_eq!(e.status(), 400),
            other => panic!("a replayed callback: {other:?}"),
        }
    }

    fn get(url: &str, cookie: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::get(url);
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        b.body(()).unwrap()
    }

    /// Stricter F8: on an https issuer the binding cookie is a `__Host-`
    /// one (`Secure`, `Path=/`, no `Domain`), so a sibling subdomain or a
    /// plain-http response cannot plant it; a cookie of the plain name is
    /// no binding (and spends nothing); clearing uses the same name and
    /// attributes.
    #[tokio::test]
    async fn f8_the_binding_cookie_is_host_prefixed_on_https() {
        let s = up::setup(|b| b).await;
        let client = s.a.public_client(1, &[REDIRECT]).await;
        let endpoints = OAuthEndpoints::new(
            s.a.server.clone(),
            Arc::new(HeaderOrDefaultProjectResolver::new(s.a.project.clone())),
        );
        let q = auth_query(&client, REDIRECT, &verifier(1), "");
        let AuthorizeResponse::Response(r) = endpoints
            .authorize(&get(&format!("{ISSUER}/oauth2/authorize?{q}"), None))
            .await
        else {
            panic!("an upstream login was expected");
        };
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(set.starts_with("__Host-authio_ul_"), "{set}");
        for attribute in ["; Path=/;", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
            assert!(set.contains(attribute), "{attribute} missing: {set}");
        }
        assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
        let pair = set.split(';').next().unwrap().to_owned();
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let back = s.at_b(&location, "alice").await;
        // The same name and value without the prefix: no binding.
        let plain = pair.trim_start_matches("__Host-").to_owned();
        match endpoints.upstream_callback(&get(&back, Some(&plain)), "oidc").await {
            UpstreamCallbackResponse::Response(r) => {
                assert_eq!(r.status(), 400);
                assert!(r.headers().get("location").is_none(), "never a redirect to the client");
                let cleared = r.headers()["set-cookie"].to_str().unwrap();
                assert!(
                    cleared.starts_with("__Host-authio_ul_")
                        && cleared.contains("Max-Age=0")
                        && cleared.contains("; Path=/;")
                        && cleared.contains("; Secure"),
                    "{cleared}"
                );
            }
            other => panic!("a plain-named cookie bound the login: {other:?}"),
        }
        match endpoints.upstream_callback(&get(&back, Some(&pair)), "oidc").await {
            UpstreamCallbackResponse::SignedIn(signed_in) => assert!(signed_in.secure_cookie),
            other => panic!("the __Host- cookie is the binding: {other:?}"),
        }
    }
}

mod f9 {
    use super::*;
    use authio_mcp::jwt::{DEFAULT_LEEWAY, check_client_assertion};

    /// Demonstrates finding F9: a client assertion whose `aud` is an
    /// ARRAY naming another authorization server and this server's token
    /// endpoint is accepted. draft-ietf-oauth-rfc7523bis requires the
    /// issuer identifier as the SOLE value, because of audience injection:
    /// a client that talks to an attacker's AS (any CIMD client does: one
    /// document, one key, every AS) and derives `aud` from that AS's
    /// metadata sends the attacker an assertion this server accepts.
    #[test]
    fn f9_assertion_audience_must_be_this_issuer_alone() {
        let token_endpoint = format!("{ISSUER}/oauth2/token");
        let now = START.unix_timestamp();
        let claims = json!({
            "iss": "client_1", "sub": "client_1",
            "aud": ["https://attacker-as.example", token_endpoint],
            "iat": now, "exp": now + 60, "jti": "j1"
        });
        let serde_json::Value::Object(claims) = claims else {
            unreachable!()
        };
        let accepted = [ISSUER, token_endpoint.as_str()];
        let r = check_client_assertion(&claims, "client_1", &accepted, DEFAULT_LEEWAY, START);
        assert!(r.is_err(), "a multi-valued aud naming another AS was accepted: {r:?}");
    }
}
