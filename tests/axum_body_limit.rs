//! The axum router honours [`OAuthEndpoints::with_max_body`]: a body of
//! the limit is read, one byte more is refused with 413, for a limit below
//! and a limit above axum's own 2 MiB default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use async_trait::async_trait;
use authio_mcp::authorize::PendingAuthorization;
use authio_mcp::axum::{ConsentHandler, RouterPaths, router};
use authio_mcp::discovery::Issuer;
use authio_mcp::http::{DEFAULT_MAX_BODY, HeaderOrDefaultProjectResolver, OAuthEndpoints};
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::server::AuthorizationServer;

struct NoConsent;

#[async_trait]
impl ConsentHandler for NoConsent {
    async fn consent(
        &self,
        endpoints: &OAuthEndpoints,
        pending: PendingAuthorization,
        _parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        endpoints.deny(&pending).await
    }
}

/// Serves the router of endpoints limited to `max_body` (`None`: the
/// default) on a free port; its base URL.
async fn serve(max_body: Option<usize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        AuthorizationServer::builder(Issuer::new_allowing_loopback_http_for_development(base.clone()).unwrap()).build();
    let project = ProjectId::new("proj_demo").unwrap();
    server.put_project(&project, ProjectSettings::default()).await.unwrap();
    let mut endpoints = OAuthEndpoints::new(server, Arc::new(HeaderOrDefaultProjectResolver::new(project)));
    if let Some(max_body) = max_body {
        endpoints = endpoints.with_max_body(max_body);
    }
    assert_eq!(endpoints.max_body(), max_body.unwrap_or(DEFAULT_MAX_BODY));
    let paths = RouterPaths::new(&endpoints, "/oauth2/authorize");
    let router = router(endpoints, Arc::new(NoConsent), &paths);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    // reqwest's TLS stack needs a process-wide provider (plain http here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    base
}

/// The status of a POST of `len` bytes of `content_type` to `path`.
async fn post(base: &str, path: &str, content_type: &str, len: usize) -> u16 {
    let body = if content_type == "application/json" {
        // Whitespace then an object: valid JSON of exactly `len` bytes.
        let mut b = vec![b' '; len.saturating_sub(2)];
        b.extend_from_slice(b"{}");
        b
    } else {
        // One long (unknown) form parameter.
        let mut b = b"x=".to_vec();
        b.resize(len, b'a');
        b
    };
    assert_eq!(body.len(), len);
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

async fn limit_is_honoured(max_body: Option<usize>) {
    let limit = max_body.unwrap_or(DEFAULT_MAX_BODY);
    let base = serve(max_body).await;
    for (path, content_type) in [
        ("/oauth2/token", FORM),
        ("/oauth2/register", JSON),
        ("/oauth2/cimd/resolve", JSON),
        ("/oauth2/revoke", FORM),
        ("/oauth2/introspect", FORM),
    ] {
        let at_limit = post(&base, path, content_type, limit).await;
        assert_ne!(at_limit, 413, "{path}: a body of the limit ({limit} bytes) is read");
        assert!((400..500).contains(&at_limit), "{path}: {at_limit}");
        assert_eq!(
            post(&base, path, content_type, limit + 1).await,
            413,
            "{path}: a body over the limit ({limit} bytes)"
        );
    }
}

#[tokio::test]
async fn the_default_limit_is_honoured() {
    limit_is_honoured(None).await;
}

#[tokio::test]
async fn a_limit_below_axums_default_is_honoured() {
    limit_is_honoured(Some(1000)).await;
}

#[tokio::test]
async fn a_limit_above_axums_default_is_honoured() {
    limit_is_honoured(Some(3 * 1024 * 1024)).await;
}
