//! Several projects, each with its own issuer under one host, reached the
//! way MCP clients reach them: through the issuer's URLs, with no custom
//! header.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use async_trait::async_trait;
use authio_mcp::authorize::PendingAuthorization;
use authio_mcp::axum::{ConsentHandler, RouterPaths, project_path_router, router};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::Subject;
use authio_mcp::http::{IssuerPathProjectResolver, OAuthEndpoints};
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::project::{DcrMode, ProjectId, ProjectSettings};
use authio_mcp::server::AuthorizationServer;
use serde_json::{Value, json};

struct AutoApprove;

#[async_trait]
impl ConsentHandler for AutoApprove {
    async fn consent(
        &self,
        endpoints: &OAuthEndpoints,
        pending: PendingAuthorization,
        _parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        endpoints.approve(pending, Subject::new("alice").unwrap(), None).await
    }
}

const REDIRECT: &str = "https://client.example.com/cb";

#[tokio::test]
async fn each_project_is_served_under_its_own_issuer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        AuthorizationServer::builder(Issuer::new_allowing_loopback_http_for_development(base.clone()).unwrap()).build();
    for name in ["proj_a", "proj_b"] {
        let mut s = ProjectSettings::default();
        s.dcr_mode = DcrMode::Open;
        s.issuer = Some(Issuer::new_allowing_loopback_http_for_development(format!("{base}/p/{name}")).unwrap());
        server.put_project(&ProjectId::new(name).unwrap(), s).await.unwrap();
    }
    let endpoints = OAuthEndpoints::new(server, Arc::new(IssuerPathProjectResolver::new("/p")));
    let paths = RouterPaths::new(&endpoints, "/oauth2/authorize");
    let router = project_path_router(endpoints, Arc::new(AutoApprove), &paths, "/p");
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Discovery, at the RFC 8414 location of each issuer.
    for name in ["proj_a", "proj_b"] {
        let issuer = format!("{base}/p/{name}");
        let v: Value = http
            .get(format!("{base}/.well-known/oauth-authorization-server/p/{name}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["issuer"], issuer);
        assert_eq!(v["registration_endpoint"], format!("{issuer}/oauth2/register"));
        let r = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http
        .get(format!("{base}/.well-known/oauth-authorization-server/p/proj_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Register in project A (open registration), sign in, get a token.
    let a = format!("{base}/p/proj_a");
    let reg: Value = http
        .post(format!("{a}/oauth2/register"))
        .header("content-type", "application/json")
        .body(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    let verifier = CodeVerifier::from_random(&[1; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .finish();
    let r = http.get(format!("{a}/oauth2/authorize?{query}")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let param = |k: &str| {
        location
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("iss").as_deref(),
        Some(a.as_str()),
        "RFC 9207: the project's own issuer"
    );
    let code = param("code").unwrap();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("client_id", &client_id)
        .append_pair("code_verifier", verifier.as_str())
        .finish();
    let post = |url: String| {
        http.post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
    };
    // Project B knows neither the client nor the code.
    let r = post(format!("{base}/p/proj_b/oauth2/token")).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post(format!("{a}/oauth2/token")).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The router honours `OAuthEndpoints::with_max_body` (it used to apply the
/// default 64 KiB whatever the endpoints said).
#[tokio::test]
async fn the_router_applies_the_endpoints_body_limit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        AuthorizationServer::builder(Issuer::new_allowing_loopback_http_for_development(base.clone()).unwrap()).build();
    let mut s = ProjectSettings::default();
    s.dcr_mode = DcrMode::Open;
    server.put_project(&ProjectId::new("proj_a").unwrap(), s).await.unwrap();
    let endpoints = OAuthEndpoints::new(
        server,
        Arc::new(authio_mcp::http::HeaderOrDefaultProjectResolver::new(
            ProjectId::new("proj_a").unwrap(),
        )),
    )
    .with_max_body(512);
    let paths = RouterPaths::new(&endpoints, "/oauth2/authorize");
    let app = router(endpoints, Arc::new(AutoApprove), &paths);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(format!("{base}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let small = post(format!("grant_type=authorization_code&code={}", "a".repeat(400)))
        .await
        .unwrap();
    assert_eq!(
        small.status(),
        401,
        "under the limit: invalid_client (no client_id), not 413"
    );
    let big = post(format!("grant_type=authorization_code&code={}", "a".repeat(600)))
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let v: Value = big.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}
