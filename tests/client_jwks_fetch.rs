//! Fetching a `private_key_jwt` client's `jwks_uri`: through the CIMD
//! fetch controller (budgets per host and per source, shared with metadata
//! documents; one fetch per URL; the negative cache), under the project's
//! URL and trust policy, and at most one attempt per client every 30
//! seconds, a failed one included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use authio_mcp::ErrorCode;
use authio_mcp::cimd::{
    FetchError, FetchLimits, FetchPlan, FetchResponse, HostPattern, MetadataFetcher, RequestSource,
};
use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use authio_mcp::client_auth::JWT_BEARER_ASSERTION_TYPE;
use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::store::ClientStore as _;
use common::*;
use serde_json::json;
use time::Duration;

fn client_key() -> PrivateKey {
    PrivateKey::generate(SigningAlgorithm::EdDsa, &[31; 32]).unwrap()
}

/// Serves the client's JWK Set at every URL (or 503 while `down`);
/// counts fetches per URL.
#[derive(Default)]
struct Keys {
    fetches: std::sync::Mutex<Vec<String>>,
    down: AtomicBool,
    total: AtomicUsize,
}

impl Keys {
    fn count(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl MetadataFetcher for Keys {
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        self.total.fetch_add(1, Ordering::SeqCst);
        self.fetches.lock().unwrap().push(plan.url().as_str().to_owned());
        tokio::task::yield_now().await;
        if self.down.load(Ordering::SeqCst) {
            return Ok(FetchResponse::new(503, Vec::new()));
        }
        let body = json!({"keys": [client_key().public_jwk("k1")]});
        Ok(FetchResponse::new(200, body.to_string().into_bytes()).with_content_type("application/jwk-set+json"))
    }
}

/// A registered `private_key_jwt` client whose keys are at `jwks_uri`.
async fn client_at(h: &Harness, n: u8, jwks_uri: &str) -> ClientId {
    let metadata: ClientMetadata = serde_json::from_value(json!({
        "redirect_uris": [REDIRECT],
        "client_name": format!("Keyed {n}"),
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["authorization_code"],
        "jwks_uri": jwks_uri,
    }))
    .unwrap();
    let v = metadata
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .unwrap();
    let id = ClientId::Registered(RegisteredClientId::from_random(&[n; 12]));
    assert!(
        h.clients
            .insert(&h.project, Client::new(id.clone(), v, START))
            .await
            .unwrap()
    );
    id
}

fn assertion(key: &PrivateKey, kid: &str, client: &ClientId, jti: &str, now: i64) -> String {
    let c = client.as_str();
    let claims = json!({"iss": c, "sub": c, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": jti});
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(key.expose_der())).unwrap()
}

/// A junk-code token request: `invalid_grant` means the client
/// authenticated, `invalid_client` that it did not.
async fn try_auth(h: &Harness, a: &str, source: Option<&RequestSource>) -> ErrorCode {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", "not-a-code"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier(1).as_str()),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_assertion", a),
    ]);
    h.server
        .token_from(&h.project, None, body.as_bytes(), source)
        .await
        .unwrap_err()
        .code()
}

fn rejections(h: &Harness) -> Vec<String> {
    h.audit
        .recent(&h.project, 100)
        .iter()
        .map(authio_mcp::audit::AuditEvent::to_json)
        .filter(|e| e["event"] == "oauth_client.assertion_rejected")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn harness_over(keys: Arc<Keys>, limits: FetchLimits) -> Harness {
    harness_with(|b| b.metadata_fetcher(keys).cimd_fetch_limits(limits)).await
}

/// The project's trust policy and the special-use host rules decide
/// whether a `jwks_uri` is fetched at all, as for a metadata document.
#[tokio::test]
async fn the_project_policy_decides_which_jwks_uri_hosts_are_fetched() {
    let keys = Arc::new(Keys::default());
    let h = harness_over(keys.clone(), FetchLimits::default()).await;
    let mut s = project_settings();
    s.cimd.denied_hosts = vec![HostPattern::new("*.internal.example").unwrap()];
    h.server.put_project(&h.project, s).await.unwrap();
    let now = START.unix_timestamp();
    let key = client_key();
    let refused = [
        "https://keys.internal.example/jwks.json",
        "https://127.0.0.1/jwks.json",
        "https://[::1]/jwks.json",
        "https://localhost/jwks.json",
        "https://169.254.169.254/latest/jwks.json",
    ];
    for (i, uri) in refused.iter().enumerate() {
        let c = client_at(&h, 40 + i as u8, uri).await;
        let e = try_auth(&h, &assertion(&key, "k1", &c, &format!("r{i}"), now), None).await;
        assert_eq!(e, ErrorCode::InvalidClient, "{uri}");
        assert_eq!(rejections(&h).last().unwrap(), "jwks_uri_refused", "{uri}");
    }
    assert_eq!(keys.count(), 0, "nothing was fetched");
    // An allow-list admits only its hosts.
    let mut s = project_settings();
    s.cimd.trust = authio_mcp::cimd::CimdTrust::AllowList {
        hosts: vec![HostPattern::new("keys.example.com").unwrap()],
    };
    h.server.put_project(&h.project, s).await.unwrap();
    let outside = client_at(&h, 50, "https://keys.example.org/jwks.json").await;
    let e = try_auth(&h, &assertion(&key, "k1", &outside, "o", now), None).await;
    assert_eq!(e, ErrorCode::InvalidClient);
    assert_eq!(keys.count(), 0);
    let inside = client_at(&h, 51, "https://keys.example.com/jwks.json").await;
    let e = try_auth(&h, &assertion(&key, "k1", &inside, "i", now), None).await;
    assert_eq!(
        e,
        ErrorCode::InvalidGrant,
        "an allowed host is fetched and the client authenticates"
    );
    assert_eq!(keys.count(), 1);
}

/// `jwks_uri` first fetches draw from the same per-host bucket as
/// metadata documents: many clients naming URLs on one victim host cannot
/// make the server flood it.
#[tokio::test]
async fn jwks_uri_fetches_spend_the_per_host_budget() {
    let keys = Arc::new(Keys::default());
    let limits = FetchLimits::default().per_host(2, Duration::hours(1));
    let h = harness_over(keys.clone(), limits).await;
    let now = START.unix_timestamp();
    let key = client_key();
    let mut codes = Vec::new();
    for i in 0..6u8 {
        let c = client_at(&h, 60 + i, &format!("https://victim.example.net/k{i}/jwks.json")).await;
        codes.push(try_auth(&h, &assertion(&key, "k1", &c, &format!("j{i}"), now), None).await);
    }
    assert_eq!(keys.count(), 2, "the host's burst of 2, then nothing");
    assert_eq!(&codes[..2], &[ErrorCode::InvalidGrant, ErrorCode::InvalidGrant]);
    assert!(codes[2..].iter().all(|c| *c == ErrorCode::InvalidClient), "{codes:?}");
    assert!(
        rejections(&h).iter().all(|r| r == "jwks_rate_limited"),
        "{:?}",
        rejections(&h)
    );
}

/// The token endpoint passes the request source on: first fetches of
/// unknown `jwks_uri`s are limited per source as well.
#[tokio::test]
async fn jwks_uri_first_fetches_spend_the_source_budget() {
    let keys = Arc::new(Keys::default());
    let limits = FetchLimits::default().per_source(2, Duration::hours(1));
    let h = harness_over(keys.clone(), limits).await;
    let now = START.unix_timestamp();
    let key = client_key();
    let attacker = RequestSource::named("attacker");
    for i in 0..5u8 {
        let c = client_at(&h, 70 + i, &format!("https://host{i}.example.net/jwks.json")).await;
        let e = try_auth(&h, &assertion(&key, "k1", &c, &format!("j{i}"), now), Some(&attacker)).await;
        assert_eq!(
            e,
            if i < 2 {
                ErrorCode::InvalidGrant
            } else {
                ErrorCode::InvalidClient
            }
        );
    }
    assert_eq!(keys.count(), 2);
    // Another source is not held back by the attacker's budget.
    let c = client_at(&h, 80, "https://host9.example.net/jwks.json").await;
    let e = try_auth(
        &h,
        &assertion(&key, "k1", &c, "other", now),
        Some(&RequestSource::named("user")),
    )
    .await;
    assert_eq!(e, ErrorCode::InvalidGrant);
    assert_eq!(keys.count(), 3);
}

/// A refetch for an unknown `kid` that fails still counts as the attempt:
/// the next one waits 30 seconds from it, and a client whose keys expired
/// while its host is down is not fetched on every request either.
#[tokio::test]
async fn failed_refetches_count_as_attempts() {
    let keys = Arc::new(Keys::default());
    let h = harness_over(keys.clone(), FetchLimits::default()).await;
    let key = client_key();
    let stranger = PrivateKey::generate(SigningAlgorithm::EdDsa, &[32; 32]).unwrap();
    let c = client_at(&h, 90, "https://keys.example.com/jwks.json").await;
    let t0 = START.unix_timestamp();
    assert_eq!(
        try_auth(&h, &assertion(&key, "k1", &c, "a", t0), None).await,
        ErrorCode::InvalidGrant
    );
    assert_eq!(keys.count(), 1);
    keys.down.store(true, Ordering::SeqCst);
    // 31 s later an unknown kid: one refetch, which fails.
    h.clock.advance(Duration::seconds(31));
    let t = t0 + 31;
    assert_eq!(
        try_auth(&h, &assertion(&stranger, "k2", &c, "b", t), None).await,
        ErrorCode::InvalidClient
    );
    assert_eq!(keys.count(), 2);
    // 20 s after that failed attempt: no fetch, and the cached key works.
    h.clock.advance(Duration::seconds(20));
    let t = t + 20;
    for i in 0..5 {
        let e = try_auth(&h, &assertion(&stranger, "k2", &c, &format!("c{i}"), t), None).await;
        assert_eq!(e, ErrorCode::InvalidClient);
    }
    assert_eq!(
        try_auth(&h, &assertion(&key, "k1", &c, "d", t), None).await,
        ErrorCode::InvalidGrant
    );
    assert_eq!(keys.count(), 2, "no fetch within 30 s of the failed attempt");
    // 30 s after it: one more try.
    h.clock.advance(Duration::seconds(10));
    let t = t + 10;
    assert_eq!(
        try_auth(&h, &assertion(&stranger, "k2", &c, "e", t), None).await,
        ErrorCode::InvalidClient
    );
    assert_eq!(keys.count(), 3);
    // The cached set expires (5 minutes) while the host is down: one
    // attempt, then nothing for 30 s.
    h.clock.advance(Duration::minutes(5));
    let t = t + 300;
    for i in 0..5 {
        let e = try_auth(&h, &assertion(&key, "k1", &c, &format!("f{i}"), t), None).await;
        assert_eq!(e, ErrorCode::InvalidClient);
    }
    assert_eq!(keys.count(), 4);
    assert!(rejections(&h).contains(&"keys_unavailable".to_owned()));
    // The host is back: after 30 s the client recovers.
    keys.down.store(false, Ordering::SeqCst);
    h.clock.advance(Duration::seconds(30));
    let t = t + 30;
    assert_eq!(
        try_auth(&h, &assertion(&key, "k1", &c, "g", t), None).await,
        ErrorCode::InvalidGrant
    );
    assert_eq!(keys.count(), 5);
}
