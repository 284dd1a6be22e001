//! The pages over HTTP: error pages say whose fault it is, show the
//! request id and never redirect before the redirect URI is verified; the
//! consent page leads with what is verified; a host's renderer replaces
//! the built-in one; 405 answers name the endpoint's own methods; quotes in
//! error descriptions survive.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use authio_mcp::dcr::IatOptions;
use authio_mcp::grant::Subject;
use authio_mcp::http::{AuthorizeResponse, HeaderOrDefaultProjectResolver, OAuthEndpoints, PROJECT_HEADER};
use authio_mcp::pages::{ConsentView, ErrorKind, ErrorView, Html, PageRenderer, escape_html};
use authio_mcp::presentation::ClientIdentity;
use common::*;
use http::{Method, Request, StatusCode, header};

fn endpoints(h: &Harness) -> OAuthEndpoints {
    OAuthEndpoints::new(
        h.server.clone(),
        Arc::new(HeaderOrDefaultProjectResolver::new(h.project.clone())),
    )
}

fn get(uri: &str) -> Request<Vec<u8>> {
    Request::builder()
        .uri(uri)
        .header("x-request-id", "req-7f3a")
        .body(Vec::new())
        .unwrap()
}

fn body(r: &http::Response<Vec<u8>>) -> String {
    String::from_utf8(r.body().clone()).unwrap()
}

async fn page(e: &OAuthEndpoints, uri: &str) -> http::Response<Vec<u8>> {
    match e.authorize(&get(uri)).await {
        AuthorizeResponse::Response(r) => r,
        other => panic!("expected a page, got {other:?}"),
    }
}

#[tokio::test]
async fn phase_one_errors_are_pages_saying_the_app_is_misconfigured() {
    let h = harness().await;
    let e = endpoints(&h);
    let client = h.public_client(1, &[REDIRECT]).await;
    let q = auth_query(&client, REDIRECT, &verifier(1), "");
    let cases = [
        q.replace(client.as_str(), "client_ffffffffffffffffffffffff"),
        q.replace("my-mcp-server", "evil"),
        q.replace(client.as_str(), "https%3A%2F%2Fclient.example.com%2Fmissing.json"),
    ];
    for query in cases {
        let r = page(&e, &format!("/oauth2/authorize?{query}")).await;
        assert!(r.status().is_client_error(), "{}", r.status());
        assert!(r.headers().get(header::LOCATION).is_none(), "never redirected");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = body(&r);
        assert!(html.contains(ErrorKind::ClientMisconfigured.headline()), "{html}");
        assert!(html.contains("id=\"request-id\">req-7f3a<"), "the request id is shown");
        assert!(
            !html.contains("evil.example.com"),
            "the unverified redirect URI is not echoed"
        );
        assert!(!html.contains("<a "), "no way back to the client");
    }
}

#[tokio::test]
async fn an_unknown_project_and_server_trouble_have_their_own_pages() {
    let h = harness().await;
    let e = endpoints(&h);
    let mut req = get("/oauth2/authorize?client_id=x");
    req.headers_mut().insert(PROJECT_HEADER, "proj_nope".parse().unwrap());
    let r = match e.authorize(&req).await {
        AuthorizeResponse::Response(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.status(), 404);
    assert!(body(&r).contains(ErrorKind::UnknownService.headline()));
    // A page for server trouble, from the same renderer.
    let r = e.error_page_for(req.headers(), &authio_mcp::OAuthError::server_error(), None);
    assert_eq!(r.status(), 500);
    let html = body(&r);
    assert!(html.contains(ErrorKind::ServerTrouble.headline()));
    assert!(html.contains("req-7f3a"));
}

#[tokio::test]
async fn an_expired_consent_says_start_again() {
    let h = harness().await;
    let e = endpoints(&h);
    let client = h.public_client(1, &[REDIRECT]).await;
    let pending = match e
        .authorize(&get(&format!(
            "/oauth2/authorize?{}",
            auth_query(&client, REDIRECT, &verifier(1), "")
        )))
        .await
    {
        AuthorizeResponse::Pending(p) => *p,
        other => panic!("{other:?}"),
    };
    h.clock
        .advance(authio_mcp::authorize::PENDING_AUTHORIZATION_TTL + time::Duration::SECOND);
    let r = e.approve(pending, Subject::new("alice").unwrap(), None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(header::LOCATION).is_none());
    let html = body(&r);
    assert!(html.contains(ErrorKind::StartAgain.headline()), "{html}");
    assert!(html.contains(ErrorKind::StartAgain.next_step()));
}

#[tokio::test]
async fn the_consent_page_leads_with_the_verified_cimd_host() {
    let h = harness().await;
    let e = endpoints(&h);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", CIMD_URL),
        ("redirect_uri", CIMD_REDIRECT),
        (
            "code_challenge",
            authio_mcp::pkce::CodeChallenge::s256(&verifier(2)).as_str(),
        ),
        ("code_challenge_method", "S256"),
        ("scope", "openid mcp:read"),
        ("resource", RESOURCE),
    ]);
    let pending = match e.authorize(&get(&format!("/oauth2/authorize?{query}"))).await {
        AuthorizeResponse::Pending(p) => *p,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        pending.presentation().client.identity,
        ClientIdentity::Verified {
            host: "claude.ai".into()
        }
    );
    assert_eq!(pending.presentation().service.name, "auth-api.authio.com");
    let view = ConsentView::new(&pending, "/consent").hidden_field("csrf", "t");
    let r = e.consent_page(&view);
    assert_eq!(r.status(), 200);
    let html = body(&r);
    let host = html.find("id=\"client-host\">claude.ai<").expect("the verified host");
    let name = html.find("id=\"client-name\">Claude<").expect("the claimed name");
    assert!(host < name);
    assert!(
        html.contains("href=\"https://claude.ai\""),
        "the homepage on the verified host"
    );
    assert!(html.contains("Confirm who you are"));
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("form-action 'self' https://claude.ai;"), "{csp}");
}

#[tokio::test]
async fn a_host_renderer_replaces_the_built_in_pages() {
    struct Branded;
    impl PageRenderer for Branded {
        fn consent(&self, view: &ConsentView<'_>) -> Html {
            Html::new(format!(
                "<main class=\"acme\">{}</main>",
                escape_html(&view.presentation().service.name)
            ))
        }
        fn error(&self, view: &ErrorView) -> Html {
            Html::new(format!(
                "<main class=\"acme\">{} ({})</main>",
                view.kind.headline(),
                view.request_id.as_deref().unwrap_or("-")
            ))
        }
    }
    let h = harness().await;
    let e = endpoints(&h).with_pages(Arc::new(Branded));
    let r = page(&e, "/oauth2/authorize?client_id=client_ffffffffffffffffffffffff").await;
    assert_eq!(
        body(&r),
        format!(
            "<main class=\"acme\">{} (req-7f3a)</main>",
            ErrorKind::ClientMisconfigured.headline()
        )
    );
    assert!(
        r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
}

#[tokio::test]
async fn method_not_allowed_names_each_endpoints_own_methods() {
    let h = harness().await;
    let e = endpoints(&h);
    let req = |m: Method, uri: &str| Request::builder().method(m).uri(uri).body(Vec::<u8>::new()).unwrap();
    let r = e.token(&req(Method::GET, "/oauth2/token")).await;
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.headers()[header::ALLOW],
        "POST, OPTIONS",
        "the token endpoint does not take GET"
    );
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(v["error"], "invalid_request");
    let r = e.introspect(&req(Method::GET, "/oauth2/introspect")).await;
    assert_eq!(r.headers()[header::ALLOW], "POST");
    let r = e.register(&req(Method::PUT, "/oauth2/register")).await;
    assert_eq!(r.headers()[header::ALLOW], "POST, OPTIONS");
    let r = e.revoke(&req(Method::DELETE, "/oauth2/revoke")).await;
    assert_eq!(r.headers()[header::ALLOW], "POST, OPTIONS");
    let r = e.cimd_resolve(&req(Method::GET, "/oauth2/cimd/resolve")).await;
    assert_eq!(r.headers()[header::ALLOW], "POST");
    let r = e
        .discovery(&req(Method::POST, "/.well-known/oauth-authorization-server"))
        .await;
    assert_eq!(r.headers()[header::ALLOW], "GET, HEAD, OPTIONS");
    let r = e.userinfo(&req(Method::DELETE, "/oauth2/userinfo")).await;
    assert_eq!(r.headers()[header::ALLOW], "GET, POST, OPTIONS");
    let AuthorizeResponse::Response(r) = e.authorize(&req(Method::POST, "/oauth2/authorize")).await else {
        panic!("a page")
    };
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()[header::ALLOW], "GET");
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn quotes_in_json_error_descriptions_stay_quotes() {
    let h = harness().await;
    let e = endpoints(&h);
    let iat = h.server.issue_iat(&h.project, IatOptions::new()).await.unwrap();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/oauth2/register")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", iat.token.expose_secret()))
        .body(br#"{"redirect_uris": "https://app.example.com/cb"}"#.to_vec())
        .unwrap();
    let r = e.register(&req).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    let d = v["error_description"].as_str().unwrap();
    assert!(d.contains("string 'https://app.example.com/cb'"), "{d}");
    assert!(!d.contains('?'), "{d}");
}
