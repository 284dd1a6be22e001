//! `private_key_jwt` client authentication (RFC 7523 section 2.2): DCR
//! clients with inline keys, metadata-document clients with a `jwks_uri`,
//! and the assertions an attacker might send.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use authio_mcp::ErrorCode;
use authio_mcp::cimd::{FetchError, FetchPlan, FetchResponse, MetadataFetcher};
use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use authio_mcp::client_auth::JWT_BEARER_ASSERTION_TYPE;
use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::store::ClientStore;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use time::Duration;

const TOKEN_ENDPOINT: &str = "https://auth-api.authio.com/oauth2/token";
const CIMD_KEYS_URL: &str = "https://agent.example.com/client.json";
const CIMD_JWKS_URI: &str = "https://agent.example.com/jwks.json";
const CIMD_REDIRECT_URI: &str = "https://agent.example.com/callback";

fn client_key() -> PrivateKey {
    PrivateKey::generate(SigningAlgorithm::EdDsa, &[11; 32]).unwrap()
}

fn sign(key: &PrivateKey, kid: &str, claims: &Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &jsonwebtoken::EncodingKey::from_ed_der(key.expose_der())).unwrap()
}

fn claims(client_id: &str, jti: &str, aud: &str) -> Value {
    let now = START.unix_timestamp();
    json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60, "jti": jti})
}

/// A DCR client registered with `private_key_jwt` and an inline JWK Set.
async fn dcr_client(h: &Harness) -> ClientId {
    let jwks = json!({"keys": [client_key().public_jwk("ck1")]});
    let metadata: ClientMetadata = serde_json::from_value(json!({
        "redirect_uris": [REDIRECT],
        "client_name": "Confidential agent",
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["authorization_code", "refresh_token"],
        "jwks": jwks,
    }))
    .unwrap();
    let v = metadata
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .unwrap();
    let id = ClientId::Registered(RegisteredClientId::from_random(&[9; 12]));
    assert!(
        h.clients
            .insert(&h.project, Client::new(id.clone(), v, START))
            .await
            .unwrap()
    );
    id
}

async fn exchange_with(
    h: &Harness,
    client: &ClientId,
    n: u8,
    assertion_params: &[(&str, &str)],
) -> Result<authio_mcp::token::TokenResponse, authio_mcp::OAuthError> {
    let v = verifier(n);
    let code = h.code_for(client, &v, "").await;
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", v.as_str()),
    ];
    pairs.extend_from_slice(assertion_params);
    h.server
        .token(&h.project, None, form(&pairs).as_bytes())
        .await
        .map_err(authio_mcp::OAuthError::from)
}

fn with_assertion(a: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE.to_owned()),
        ("client_assertion", a.to_owned()),
    ]
}

async fn try_assertion(
    h: &Harness,
    client: &ClientId,
    n: u8,
    assertion: &str,
) -> Result<authio_mcp::token::TokenResponse, authio_mcp::OAuthError> {
    let p = with_assertion(assertion);
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exchange_with(h, client, n, &p).await
}

#[tokio::test]
async fn dcr_client_authenticates_with_an_assertion_once() {
    let h = harness().await;
    let client = dcr_client(&h).await;
    let key = client_key();
    // Audience: the issuer, alone (draft-ietf-oauth-rfc7523bis); the token
    // endpoint URL only where the project opted in (tests/assertion_audience.rs).
    let a = sign(&key, "ck1", &claims(client.as_str(), "jti-1", ISSUER));
    let t = try_assertion(&h, &client, 1, &a).await.unwrap();
    assert!(t.access_token.starts_with("at_"));
    let a2 = sign(&key, "ck1", &claims(client.as_str(), "jti-2", TOKEN_ENDPOINT));
    let e = try_assertion(&h, &client, 2, &a2).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    // The same assertion again: replayed jti.
    let e = try_assertion(&h, &client, 3, &a).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    assert!(h.events().contains(&"oauth_client.assertion_rejected"));
    // The client_id parameter may be sent too; it must match.
    let a4 = sign(&key, "ck1", &claims(client.as_str(), "jti-4", ISSUER));
    let mut p = with_assertion(&a4);
    p.push(("client_id", client.as_str().to_owned()));
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exchange_with(&h, &client, 4, &p).await.unwrap();
    // Without an assertion the confidential client cannot authenticate.
    let e = h
        .exchange(&client, &h.code_for(&client, &verifier(5), "").await, &verifier(5), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    // Metadata advertises the method and its algorithms.
    let m = serde_json::to_value(h.server.metadata(&h.project).await.unwrap()).unwrap();
    assert!(
        m["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
    assert_eq!(
        m["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256"])
    );
}

#[tokio::test]
async fn hostile_assertions_are_refused() {
    let h = harness().await;
    let client = dcr_client(&h).await;
    let id = client.as_str();
    let key = client_key();
    let now = START.unix_timestamp();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let good = sign(&key, "ck1", &claims(id, "ok", ISSUER));
    let sig = good.split('.').nth(2).unwrap().to_owned();
    let other_key = PrivateKey::generate(SigningAlgorithm::EdDsa, &[12; 32]).unwrap();
    let public = serde_json::to_vec(&key.public_jwk("ck1")).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("ck1".into());
    let hs256 = jsonwebtoken::encode(
        &hs,
        &claims(id, "hs", ISSUER),
        &jsonwebtoken::EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    let c = |k: &str, v: Value, jti: &str| {
        let mut x = claims(id, jti, ISSUER);
        x[k] = v;
        sign(&key, "ck1", &x)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                enc(&json!({"alg": "none", "kid": "ck1"})),
                enc(&claims(id, "n", ISSUER))
            ),
        ),
        (
            "alg none with signature",
            format!(
                "{}.{}.{sig}",
                enc(&json!({"alg": "none", "kid": "ck1"})),
                enc(&claims(id, "n2", ISSUER))
            ),
        ),
        ("HS256 with the public key", hs256),
        ("another key", sign(&other_key, "ck1", &claims(id, "k", ISSUER))),
        ("unknown kid", sign(&key, "nope", &claims(id, "u", ISSUER))),
        ("kid injection", sign(&key, "../../jwks.json", &claims(id, "i", ISSUER))),
        ("wrong aud", c("aud", json!("https://evil.example"), "a")),
        (
            "other endpoint as aud",
            c("aud", json!("https://auth-api.authio.com/oauth2/revoke"), "a2"),
        ),
        ("expired", c("exp", json!(now - 120), "e")),
        ("nbf in the future", c("nbf", json!(now + 600), "f")),
        ("lives too long", c("exp", json!(now + 3600), "l")),
        ("iss is another client", c("iss", json!("client_other"), "s")),
        ("no jti", c("jti", json!(""), "")),
        ("oversized", c("pad", json!("x".repeat(9000)), "o")),
    ];
    for (n, (what, assertion)) in cases.into_iter().enumerate() {
        let p = with_assertion(&assertion);
        let mut p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Assertions without a readable `sub` need the client_id parameter.
        p.push(("client_id", id));
        let e = exchange_with(&h, &client, n as u8 + 10, &p).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidClient, "{what}");
    }
    // Syntax errors are invalid_request: a type without an assertion, or
    // an assertion together with a client secret.
    let e = exchange_with(
        &h,
        &client,
        40,
        &[("client_assertion_type", JWT_BEARER_ASSERTION_TYPE), ("client_id", id)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    let e = exchange_with(
        &h,
        &client,
        41,
        &[
            ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
            ("client_assertion", &good),
            ("client_secret", "x"),
            ("client_id", id),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    // And after all that, the good assertion still works once.
    try_assertion(&h, &client, 42, &good).await.unwrap();
    let rejected = h
        .events()
        .iter()
        .filter(|e| **e == "oauth_client.assertion_rejected")
        .count();
    assert!(rejected >= 14, "{rejected}");
}

/// Serves a confidential metadata document and its JWK Set; counts the
/// JWK Set fetches.
#[derive(Default)]
struct KeyedDocument {
    jwks_fetches: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl MetadataFetcher for KeyedDocument {
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        if plan.url().as_str() == CIMD_JWKS_URI {
            self.jwks_fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let body = match plan.url().as_str() {
            CIMD_KEYS_URL => json!({
                "client_id": CIMD_KEYS_URL,
                "client_name": "Keyed agent",
                "redirect_uris": [CIMD_REDIRECT_URI],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks_uri": CIMD_JWKS_URI,
            }),
            CIMD_JWKS_URI => json!({"keys": [client_key().public_jwk("ck1")]}),
            _ => return Ok(FetchResponse::new(404, Vec::new())),
        };
        Ok(FetchResponse::new(200, body.to_string().into_bytes()).with_content_type("application/json"))
    }
}

#[tokio::test]
async fn metadata_document_client_with_jwks_uri() {
    let fetcher = Arc::new(KeyedDocument::default());
    let h = harness_with(|b| b.metadata_fetcher(fetcher.clone())).await;
    let mut s = project_settings();
    s.cimd.allow_private_key_jwt = true;
    h.server.put_project(&h.project, s).await.unwrap();
    let client = ClientId::parse_with(CIMD_KEYS_URL, Default::default()).unwrap();
    let v = verifier(1);
    let pending = h.pending(&auth_query(&client, CIMD_REDIRECT_URI, &v, "")).await;
    let location = h
        .server
        .approve(pending, authio_mcp::grant::Subject::new("user_demo").unwrap(), None)
        .await
        .unwrap();
    let code = query_param(&location, "code").unwrap();
    let token_form = |extra: &[(&str, &str)]| {
        let mut p = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CIMD_REDIRECT_URI),
            ("code_verifier", v.as_str()),
        ];
        p.extend_from_slice(extra);
        form(&p)
    };
    // client_id alone no longer passes for a confidential document client.
    let e = h
        .server
        .token(&h.project, None, token_form(&[("client_id", CIMD_KEYS_URL)]).as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    let a = sign(&client_key(), "ck1", &claims(CIMD_KEYS_URL, "cimd-1", ISSUER));
    let t = h
        .server
        .token(
            &h.project,
            None,
            token_form(&[
                ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
                ("client_assertion", &a),
            ])
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(!t.access_token.is_empty());
    // Revocation authenticates the same way.
    let b = sign(&client_key(), "ck1", &claims(CIMD_KEYS_URL, "cimd-2", ISSUER));
    h.server
        .revoke(
            &h.project,
            None,
            form(&[
                ("token", &t.access_token),
                ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
                ("client_assertion", &b),
            ])
            .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(h.introspect(&t.access_token).await["active"], false);
    // The client's JWK Set was fetched once and then reused.
    assert_eq!(fetcher.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    // An assertion from an unknown key: one refetch at most (the cached
    // copy is young, so none at all here), then invalid_client.
    let stranger = PrivateKey::generate(SigningAlgorithm::EdDsa, &[13; 32]).unwrap();
    let x = sign(&stranger, "rotated", &claims(CIMD_KEYS_URL, "cimd-3", ISSUER));
    let e = h
        .server
        .revoke(
            &h.project,
            None,
            form(&[
                ("token", "whatever"),
                ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
                ("client_assertion", &x),
            ])
            .as_bytes(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    assert_eq!(fetcher.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    h.clock.advance(Duration::minutes(1));
    let y = sign(&stranger, "rotated", &claims(CIMD_KEYS_URL, "cimd-4", ISSUER));
    let body = form(&[
        ("token", "whatever"),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_assertion", &y),
    ]);
    // (exp is relative to START: the clock moved a minute, still valid.)
    assert!(h.server.revoke(&h.project, None, body.as_bytes()).await.is_err());
    assert_eq!(
        fetcher.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "refetched once for the unknown kid"
    );
    // The jti is remembered until the assertion expires; purge forgets it
    // afterwards.
    h.clock.advance(Duration::minutes(10));
    assert!(h.server.purge_expired().await.unwrap() >= 2);
}

/// Registration (RFC 7591) of a `private_key_jwt` client with an initial
/// access token that pins `private_key_jwt`: no secret is issued, and the
/// client authenticates with an assertion.
#[tokio::test]
async fn dcr_registers_a_private_key_jwt_client_without_a_secret() {
    use authio_mcp::client::TokenEndpointAuthMethod;
    use authio_mcp::dcr::{IatOptions, PinnedMetadata};
    let h = harness().await;
    let issued = h
        .server
        .issue_iat(
            &h.project,
            IatOptions::new().pinned(PinnedMetadata::auth_method(TokenEndpointAuthMethod::PrivateKeyJwt)),
        )
        .await
        .unwrap();
    let body = json!({
        "redirect_uris": [REDIRECT], "client_name": "Keyed", "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["authorization_code"], "jwks": {"keys": [client_key().public_jwk("ck1")]}
    });
    let header = format!("Bearer {}", issued.token.expose_secret());
    let r = h
        .server
        .register_client(&h.project, Some(&header), body.to_string().as_bytes())
        .await
        .unwrap();
    assert!(r.client_secret.is_none());
    let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
    assert_eq!(v["token_endpoint_auth_method"], "private_key_jwt");
    assert!(v.get("client_secret").is_none_or(Value::is_null));
    let client = ClientId::Registered(r.client_id.clone());
    let a = sign(&client_key(), "ck1", &claims(client.as_str(), "reg-1", ISSUER));
    try_assertion(&h, &client, 1, &a).await.unwrap();
}
