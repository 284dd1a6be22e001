//! The resource-server side against a real in-process authorization
//! server: tokens from a whole flow, checked by `LocalTokenVerifier` and
//! `ProtectedResource`, for every refusal that needs a real token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use authio_mcp::resource::ResourceUri;
use authio_mcp::resource_server::{ProtectedResource, ResourceServerError, TokenVerifier};
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::LocalTokenVerifier;
use common::*;
use http::{HeaderMap, HeaderValue, Uri, header};

struct Issued {
    access: String,
    refresh: Option<String>,
    client: authio_mcp::client::ClientId,
}

async fn issue(h: &Harness, scope: &str) -> Issued {
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = h.code_for(&client, &v, &format!("&scope={scope}")).await;
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    Issued {
        access: t.access_token().to_owned(),
        refresh: t.refresh_token().map(str::to_owned),
        client,
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut m = HeaderMap::new();
    m.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    m
}

fn guard(required: &str) -> ProtectedResource {
    ProtectedResource::new(resource()).require_scopes(ScopeSet::parse(required).unwrap())
}

#[tokio::test]
async fn a_token_from_the_flow_is_accepted() {
    let h = harness().await;
    let t = issue(&h, "mcp:read").await;
    let v = LocalTokenVerifier::new(h.server.clone(), h.project.clone());
    let ok = guard("mcp:read")
        .authorize(&v, &bearer(&t.access), &Uri::from_static("/mcp"), START)
        .await
        .unwrap();
    assert_eq!(ok.subject, "user_demo");
    assert_eq!(ok.client_id, t.client.as_str());
    assert_eq!(ok.scopes, ScopeSet::parse("mcp:read").unwrap());
    assert_eq!(ok.audiences, vec![RESOURCE.to_owned()]);
    assert_eq!(ok.expires_at, Some(START + time::Duration::minutes(15)));
}

#[tokio::test]
async fn refusal_expired() {
    let h = harness().await;
    let t = issue(&h, "mcp:read").await;
    let v = LocalTokenVerifier::new(h.server.clone(), h.project.clone());
    let later = START + time::Duration::minutes(15);
    // The resource server applies its own clock even if the verifier
    // (here the AS's fixed clock) still says active.
    let r = guard("mcp:read")
        .authorize(&v, &bearer(&t.access), &Uri::from_static("/mcp"), later)
        .await;
    assert_eq!(r, Err(ResourceServerError::Expired));
    // And once the authorization server's clock agrees, it is inactive.
    h.clock.set(later);
    assert_eq!(v.verify(&t.access, later).await, Err(ResourceServerError::Inactive));
}

#[tokio::test]
async fn refusal_revoked() {
    let h = harness().await;
    let t = issue(&h, "mcp:read").await;
    let v = LocalTokenVerifier::new(h.server.clone(), h.project.clone());
    assert!(v.verify(&t.access, START).await.is_ok());
    let body = form(&[("token", &t.access), ("client_id", t.client.as_str())]);
    h.server.revoke(&h.project, None, body.as_bytes()).await.unwrap();
    let r = guard("mcp:read")
        .authorize(&v, &bearer(&t.access), &Uri::from_static("/mcp"), START)
        .await;
    assert_eq!(r, Err(ResourceServerError::Inactive));
    let refusal = guard("mcp:read").refusal(&r.unwrap_err());
    assert_eq!(refusal.status(), 401);
    assert!(
        refusal.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn refusal_unknown_token_and_refresh_token() {
    let h = harness().await;
    let t = issue(&h, "mcp:read").await;
    let v = LocalTokenVerifier::new(h.server.clone(), h.project.clone());
    assert_eq!(v.verify("made-up", START).await, Err(ResourceServerError::Inactive));
    let refresh = t.refresh.expect("a refresh token");
    assert_eq!(
        v.verify(&refresh, START).await,
        Err(ResourceServerError::NotAnAccessToken)
    );
}

#[tokio::test]
async fn refusal_wrong_audience() {
    let h = harness().await;
    let t = issue(&h, "mcp:read").await;
    let v = LocalTokenVerifier::new(h.server.clone(), h.project.clone());
    let other = ProtectedResource::new(ResourceUri::parse("https://other.example.com/mcp").unwrap());
    let r = other
        .authorize(&v, &bearer(&t.access), &Uri::from_static("/mcp"), START)
        .await;
    assert_eq!(r, Err(ResourceServerError::WrongAudience));
}

#[tokio::test]
async fn refusal_missing_scope() {
    let h = harness().await;
    let t = issue(&h, "mcp:read").await;
    let v = LocalTokenVerifier::new(h.server.clone(), h.project.clone());
    let r = guard("mcp:read mcp:write")
        .authorize(&v, &bearer(&t.access), &Uri::from_static("/mcp"), START)
        .await;
    let e = r.unwrap_err();
    assert_eq!(e.status(), 403);
    let refusal = guard("mcp:read mcp:write").refusal(&e);
    assert_eq!(
        refusal.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\", scope=\"mcp:read mcp:write\", \
         resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
    );
}

#[tokio::test]
async fn refusal_token_in_query_even_when_valid() {
    let h = harness().await;
    let t = issue(&h, "mcp:read").await;
    let v = LocalTokenVerifier::new(h.server.clone(), h.project.clone());
    let uri: Uri = format!("/mcp?access_token={}", t.access).parse().unwrap();
    let r = guard("mcp:read").authorize(&v, &HeaderMap::new(), &uri, START).await;
    assert_eq!(r, Err(ResourceServerError::TokenInQuery));
}
