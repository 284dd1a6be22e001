//! The audience of `private_key_jwt` client assertions at the token
//! endpoint (draft-ietf-oauth-rfc7523bis): the issuer identifier as the
//! single `aud` string; the token endpoint URL only for registered clients
//! of a project that opted in (`danger_accept_token_endpoint_assertion_audience`),
//! never for metadata-document clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use authio_mcp::ErrorCode;
use authio_mcp::cimd::{FetchError, FetchPlan, FetchResponse, MetadataFetcher};
use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use authio_mcp::client_auth::JWT_BEARER_ASSERTION_TYPE;
use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
use authio_mcp::project::SettingsLint;
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::store::ClientStore as _;
use common::*;
use serde_json::{Value, json};

const TOKEN_ENDPOINT: &str = "https://auth-api.authio.com/oauth2/token";
const DOC: &str = "https://agent.example.com/client.json";
const DOC_REDIRECT: &str = "https://agent.example.com/callback";

fn client_key() -> PrivateKey {
    PrivateKey::generate(SigningAlgorithm::EdDsa, &[21; 32]).unwrap()
}

fn sign(client_id: &str, jti: &str, aud: Value) -> String {
    let now = START.unix_timestamp();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60, "jti": jti});
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some("k1".to_owned());
    jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(client_key().expose_der()),
    )
    .unwrap()
}

/// A junk-code token request: `invalid_grant` means the client
/// authenticated, `invalid_client` that it did not.
fn body(redirect: &str, assertion: &str) -> String {
    form(&[
        ("grant_type", "authorization_code"),
        ("code", "not-a-code"),
        ("redirect_uri", redirect),
        ("code_verifier", verifier(1).as_str()),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_assertion", assertion),
    ])
}

async fn registered_client(h: &Harness) -> ClientId {
    let metadata: ClientMetadata = serde_json::from_value(json!({
        "redirect_uris": [REDIRECT],
        "client_name": "Keyed",
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["authorization_code"],
        "jwks": {"keys": [client_key().public_jwk("k1")]},
    }))
    .unwrap();
    let v = metadata
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .unwrap();
    let id = ClientId::Registered(RegisteredClientId::from_random(&[21; 12]));
    assert!(
        h.clients
            .insert(&h.project, Client::new(id.clone(), v, START))
            .await
            .unwrap()
    );
    id
}

fn last_rejection(h: &Harness) -> String {
    h.audit
        .recent(&h.project, 20)
        .iter()
        .rev()
        .map(authio_mcp::audit::AuditEvent::to_json)
        .find(|e| e["event"] == "oauth_client.assertion_rejected")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

async fn code_of(h: &Harness, redirect: &str, assertion: &str) -> ErrorCode {
    h.server
        .token(&h.project, None, body(redirect, assertion).as_bytes())
        .await
        .unwrap_err()
        .code()
}

#[tokio::test]
async fn registered_clients_name_the_issuer_alone() {
    let h = harness().await;
    let id = registered_client(&h).await;
    let c = id.as_str();
    assert_eq!(
        code_of(&h, REDIRECT, &sign(c, "ok", json!(ISSUER))).await,
        ErrorCode::InvalidGrant,
        "the issuer as the single aud string authenticates"
    );
    let refused = [
        ("te", json!(TOKEN_ENDPOINT), "wrong_audience"),
        ("arr1", json!([ISSUER]), "audience_not_a_string"),
        (
            "arr2",
            json!([ISSUER, "https://attacker-as.example"]),
            "audience_not_a_string",
        ),
        (
            "arr3",
            json!(["https://attacker-as.example", TOKEN_ENDPOINT]),
            "audience_not_a_string",
        ),
        ("slash", json!(format!("{ISSUER}/")), "wrong_audience"),
    ];
    for (jti, aud, reason) in refused {
        assert_eq!(
            code_of(&h, REDIRECT, &sign(c, jti, aud.clone())).await,
            ErrorCode::InvalidClient,
            "{aud}"
        );
        assert_eq!(last_rejection(&h), reason, "{aud}");
    }
}

#[tokio::test]
async fn the_token_endpoint_audience_is_a_per_project_danger_opt_in() {
    let h = harness().await;
    let id = registered_client(&h).await;
    let c = id.as_str();
    let mut s = project_settings();
    assert!(!s.danger_accept_token_endpoint_assertion_audience, "off by default");
    assert!(!s.lints().contains(&SettingsLint::TokenEndpointAssertionAudience));
    s.danger_accept_token_endpoint_assertion_audience = true;
    assert!(s.lints().contains(&SettingsLint::TokenEndpointAssertionAudience));
    h.server.put_project(&h.project, s).await.unwrap();
    assert_eq!(
        code_of(&h, REDIRECT, &sign(c, "te", json!(TOKEN_ENDPOINT))).await,
        ErrorCode::InvalidGrant,
        "opted in: the token endpoint URL authenticates a registered client"
    );
    assert_eq!(
        code_of(&h, REDIRECT, &sign(c, "iss", json!(ISSUER))).await,
        ErrorCode::InvalidGrant,
        "the issuer still does"
    );
    // Still a single string, still only these two values.
    for (jti, aud) in [
        ("a1", json!([TOKEN_ENDPOINT])),
        ("a2", json!([ISSUER, TOKEN_ENDPOINT])),
        ("rv", json!("https://auth-api.authio.com/oauth2/revoke")),
    ] {
        assert_eq!(
            code_of(&h, REDIRECT, &sign(c, jti, aud.clone())).await,
            ErrorCode::InvalidClient,
            "{aud}"
        );
    }
}

/// Serves a confidential metadata document with inline keys.
struct KeyedDocument;

#[async_trait::async_trait]
impl MetadataFetcher for KeyedDocument {
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        if plan.url().as_str() != DOC {
            return Ok(FetchResponse::new(404, Vec::new()));
        }
        let doc = json!({
            "client_id": DOC,
            "client_name": "Keyed agent",
            "redirect_uris": [DOC_REDIRECT],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [client_key().public_jwk("k1")]},
        });
        Ok(FetchResponse::new(200, doc.to_string().into_bytes()).with_content_type("application/json"))
    }
}

/// A metadata-document client uses one key with every authorization
/// server, so an assertion addressed to an endpoint URL is never accepted
/// from it, whatever the project says.
#[tokio::test]
async fn metadata_document_clients_never_get_the_token_endpoint_audience() {
    let h = harness_with(|b| b.metadata_fetcher(Arc::new(KeyedDocument))).await;
    let mut s = project_settings();
    s.cimd.allow_private_key_jwt = true;
    s.danger_accept_token_endpoint_assertion_audience = true;
    h.server.put_project(&h.project, s).await.unwrap();
    assert_eq!(
        code_of(&h, DOC_REDIRECT, &sign(DOC, "iss", json!(ISSUER))).await,
        ErrorCode::InvalidGrant,
        "the issuer authenticates the document client"
    );
    assert_eq!(
        code_of(&h, DOC_REDIRECT, &sign(DOC, "te", json!(TOKEN_ENDPOINT))).await,
        ErrorCode::InvalidClient
    );
    assert_eq!(last_rejection(&h), "wrong_audience");
}
