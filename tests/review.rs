//! Security review of the signed-token, key, client-authentication and
//! upstream-login code: each test here demonstrates one finding of the
//! review report (F1..Fn). A test marked `#[ignore]` fails today and
//! passes once its finding is fixed; run them with
//! `cargo test --all-features --test review -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

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
#[ignore = "demonstrates finding F1"]
async fn f1_cold_jwks_cache_still_rate_limits_fetches() {
    let fetcher = Arc::new(DownJwks::default());
    let v = verifier_over(fetcher.clone());
    for i in 0..20 {
        assert!(v.verify(&token_with_kid(&format!("k{i}")), START).await.is_err());
    }
    let n = fetcher.fetches.load(Ordering::SeqCst);
    assert!(
        n <= 1,
        "20 junk tokens within one second caused {n} JWKS fetches (min_refetch_interval is 30 s)"
    );
}

/// Demonstrates finding F1 (concurrency): callers that passed the
/// `may_try` check together queue on the fetch lock, and `refresh` only
/// skips the fetch when `fetched_at` changed, which a FAILED fetch does
/// not do: N concurrent junk tokens cause N sequential fetches.
#[tokio::test]
#[ignore = "demonstrates finding F1"]
async fn f1_concurrent_unknown_kids_fetch_at_most_once() {
    let fetcher = Arc::new(DownJwks::default());
    let v = verifier_over(fetcher.clone());
    let tokens: Vec<String> = (0..20).map(|i| token_with_kid(&format!("k{i}"))).collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| v.verify(t, START))).await;
    assert!(results.iter().all(Result::is_err));
    let n = fetcher.fetches.load(Ordering::SeqCst);
    assert!(n <= 1, "20 concurrent junk tokens caused {n} JWKS fetches");
}
