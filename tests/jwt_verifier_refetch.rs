//! `JwtVerifier`'s JWKS fetching under failure: one attempt per
//! `min_refetch_interval`, counted from the last attempt (failed ones
//! included), before any JWKS was loaded and after; recovery once the
//! interval has passed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use authio_mcp::discovery::Issuer;
use authio_mcp::project::{AccessTokenFormat, ProjectId};
use authio_mcp::resource_server::{JwksFetcher, JwtVerifier, ResourceServerError, TokenVerifier as _};
use authio_mcp::server::AuthorizationServer;
use common::*;
use time::Duration;

/// Serves the server's JWKS in process, or fails while `down`; counts
/// attempts.
struct Switchable {
    server: AuthorizationServer,
    project: ProjectId,
    down: AtomicBool,
    attempts: AtomicUsize,
}

#[async_trait::async_trait]
impl JwksFetcher for Switchable {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, String> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".to_owned());
        }
        Ok(self
            .server
            .jwks(&self.project)
            .await
            .map_err(|e| e.to_string())?
            .to_json())
    }
}

async fn setup() -> (Harness, Arc<Switchable>, JwtVerifier, String) {
    let h = harness().await;
    let mut s = project_settings();
    s.access_token_format = AccessTokenFormat::Jwt;
    h.server.put_project(&h.project, s).await.unwrap();
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = h.code_for(&client, &v, "").await;
    let token = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .access_token()
        .to_owned();
    let fetcher = Arc::new(Switchable {
        server: h.server.clone(),
        project: h.project.clone(),
        down: AtomicBool::new(true),
        attempts: AtomicUsize::new(0),
    });
    let verifier = JwtVerifier::new(
        &Issuer::new(ISSUER).unwrap(),
        resource(),
        format!("{ISSUER}/.well-known/jwks.json"),
        fetcher.clone(),
    );
    (h, fetcher, verifier, token)
}

#[tokio::test]
async fn a_cold_verifier_retries_once_per_interval_and_recovers() {
    let (h, fetcher, v, token) = setup().await;
    let t0 = h.server.now();
    // The JWKS is down at start: one attempt, then none for 30 s.
    for s in [0, 1, 10, 29] {
        let r = v.verify(&token, t0 + Duration::seconds(s)).await;
        assert_eq!(r.unwrap_err(), ResourceServerError::Unavailable, "at {s} s");
    }
    assert_eq!(fetcher.attempts.load(Ordering::SeqCst), 1);
    // 30 s after the failed attempt: one more, still down.
    let r = v.verify(&token, t0 + Duration::seconds(30)).await;
    assert_eq!(r.unwrap_err(), ResourceServerError::Unavailable);
    assert_eq!(fetcher.attempts.load(Ordering::SeqCst), 2);
    // Back up: at the next allowed attempt the token verifies, and then
    // without fetching again.
    fetcher.down.store(false, Ordering::SeqCst);
    let r = v.verify(&token, t0 + Duration::seconds(45)).await;
    assert_eq!(
        r.unwrap_err(),
        ResourceServerError::Unavailable,
        "still within the interval"
    );
    assert_eq!(fetcher.attempts.load(Ordering::SeqCst), 2);
    v.verify(&token, t0 + Duration::seconds(60)).await.unwrap();
    v.verify(&token, t0 + Duration::seconds(61)).await.unwrap();
    assert_eq!(fetcher.attempts.load(Ordering::SeqCst), 3);
}

/// With a JWKS cached, a burst of unknown key ids while the JWKS is down
/// costs one attempt; the cached keys keep verifying good tokens.
#[tokio::test]
async fn unknown_kids_during_an_outage_cost_one_attempt() {
    let (h, fetcher, v, token) = setup().await;
    let t0 = h.server.now();
    fetcher.down.store(false, Ordering::SeqCst);
    v.verify(&token, t0).await.unwrap();
    assert_eq!(fetcher.attempts.load(Ordering::SeqCst), 1);
    fetcher.down.store(true, Ordering::SeqCst);
    // A well-formed header with a made-up kid, junk signature.
    let (_, rest) = token.split_once('.').unwrap();
    let header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"alg":"ES256","typ":"at+jwt","kid":"made-up"}"#,
    );
    let junk = format!("{header}.{rest}");
    let later = t0 + Duration::seconds(40);
    let results = futures_util::future::join_all((0..20).map(|_| v.verify(&junk, later))).await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(
        fetcher.attempts.load(Ordering::SeqCst),
        2,
        "one attempt for 20 unknown kids"
    );
    // The good token still verifies from the cached (stale-allowed) keys.
    v.verify(&token, later).await.unwrap();
    assert_eq!(fetcher.attempts.load(Ordering::SeqCst), 2);
}
