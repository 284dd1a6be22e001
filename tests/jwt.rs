//! Signed tokens end to end, with a fixed clock: JWT access tokens, the
//! JWKS and its rotation, ID tokens and userinfo, and local verification
//! by `JwtVerifier` (hostile tokens included).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use authio_mcp::ErrorCode;
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::Subject;
use authio_mcp::jose::SigningAlgorithm;
use authio_mcp::jwt::UserClaims;
use authio_mcp::project::{AccessTokenFormat, ProjectId};
use authio_mcp::resource_server::{JwksFetcher, JwtVerifier, ProtectedResource, ResourceServerError, TokenVerifier};
use authio_mcp::server::AuthorizationServer;
use authio_mcp::store::{StoreError, UserClaimsSource};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use time::Duration;

/// Serves the server's metadata and JWKS in process; counts fetches.
struct LocalFetcher {
    server: AuthorizationServer,
    project: ProjectId,
    fetches: AtomicUsize,
}

#[async_trait::async_trait]
impl JwksFetcher for LocalFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if url.ends_with("/.well-known/jwks.json") {
            Ok(self
                .server
                .jwks(&self.project)
                .await
                .map_err(|e| e.to_string())?
                .to_json())
        } else if url.contains("/.well-known/oauth-authorization-server") {
            Ok(self
                .server
                .metadata(&self.project)
                .await
                .map_err(|e| e.to_string())?
                .to_json())
        } else {
            Err("404".into())
        }
    }
}

struct Emails;

#[async_trait::async_trait]
impl UserClaimsSource for Emails {
    async fn claims(&self, _p: &ProjectId, s: &Subject) -> Result<UserClaims, StoreError> {
        Ok(UserClaims::with_email(format!("{}@example.com", s.as_str()), true))
    }
}

/// A JWT project signing access tokens with `alg` (ID tokens: ES256,
/// except when `alg` is EdDSA: then one EdDSA key signs both, so the
/// rotation test sees one key per step).
async fn jwt_harness(alg: SigningAlgorithm) -> Harness {
    let h = harness_with(|b| b.user_claims(Arc::new(Emails))).await;
    let mut s = project_settings();
    s.access_token_format = AccessTokenFormat::Jwt;
    s.access_token_ttl = Duration::minutes(10);
    s.signing.access_token_algorithm = alg;
    s.signing.id_token_algorithm = if alg == SigningAlgorithm::EdDsa {
        alg
    } else {
        SigningAlgorithm::Es256
    };
    h.server.put_project(&h.project, s).await.unwrap();
    h
}

fn part(token: &str, i: usize) -> Value {
    let p = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

fn kids(jwks: &authio_mcp::jose::JwkSet) -> Vec<String> {
    jwks.keys.iter().map(|k| k.kid().unwrap().to_owned()).collect()
}

async fn verifier_for(h: &Harness) -> (JwtVerifier, Arc<LocalFetcher>) {
    let fetcher = Arc::new(LocalFetcher {
        server: h.server.clone(),
        project: h.project.clone(),
        fetches: AtomicUsize::new(0),
    });
    let v = JwtVerifier::discover(&Issuer::new(ISSUER).unwrap(), resource(), fetcher.clone())
        .await
        .unwrap();
    (v, fetcher)
}

async fn jwt_tokens(
    h: &Harness,
    client: &authio_mcp::client::ClientId,
    n: u8,
    extra: &str,
) -> authio_mcp::token::TokenResponse {
    let v = verifier(n);
    let code = h.code_for(client, &v, extra).await;
    h.exchange(client, &code, &v, "").await.unwrap()
}

#[tokio::test]
async fn jwt_access_tokens_verify_locally_for_every_algorithm() {
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Rs256,
    ] {
        let h = jwt_harness(alg).await;
        let client = h.public_client(1, &[REDIRECT]).await;
        let t = jwt_tokens(&h, &client, 1, "&scope=mcp%3Aread").await;
        let header = part(t.access_token(), 0);
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], alg.as_str());
        let claims = part(t.access_token(), 1);
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["aud"], json!([RESOURCE]));
        assert_eq!(claims["sub"], "user_demo");
        assert_eq!(claims["client_id"], client.as_str());
        assert_eq!(claims["scope"], "mcp:read");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
        assert_eq!(claims["auth_time"], START.unix_timestamp());
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 32));

        let (v, fetcher) = verifier_for(&h).await;
        let ok = v.verify(t.access_token(), h.server.now()).await.unwrap();
        assert_eq!(ok.subject, "user_demo");
        assert!(ok.scopes.contains("mcp:read"));
        let ok = ProtectedResource::new(resource()).check(ok, h.server.now()).unwrap();
        assert_eq!(ok.client_id, client.as_str());
        // Verified again: from the cached JWKS (one metadata + one JWKS fetch).
        v.verify(t.access_token(), h.server.now()).await.unwrap();
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 2);

        // Introspection and revocation still work on the stored record; a
        // local verifier keeps accepting the revoked JWT until it expires.
        assert_eq!(h.introspect(t.access_token()).await["active"], true);
        h.server
            .revoke(
                &h.project,
                None,
                form(&[("token", t.access_token()), ("client_id", client.as_str())]).as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(h.introspect(t.access_token()).await["active"], false);
        assert!(v.verify(t.access_token(), h.server.now()).await.is_ok());
        h.clock.advance(Duration::minutes(10));
        let expired = v.verify(t.access_token(), h.server.now()).await;
        assert!(
            matches!(expired, Err(ResourceServerError::Expired)) || {
                let t = expired.unwrap();
                ProtectedResource::new(resource()).check(t, h.server.now()) == Err(ResourceServerError::Expired)
            }
        );
    }
}

#[tokio::test]
async fn jwt_needs_a_resource_and_the_metadata_publishes_the_keys() {
    let h = jwt_harness(SigningAlgorithm::Es256).await;
    let m = serde_json::to_value(h.server.metadata(&h.project).await.unwrap()).unwrap();
    assert_eq!(m["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(m["userinfo_endpoint"], format!("{ISSUER}/oauth2/userinfo"));
    assert_eq!(m["id_token_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(m["subject_types_supported"], json!(["public"]));

    // An opaque project without openid publishes no jwks_uri.
    let mut s = project_settings();
    s.scopes_supported = authio_mcp::scope::ScopeSet::parse("mcp:read").unwrap();
    let other = ProjectId::new("proj_opaque").unwrap();
    h.server.put_project(&other, s).await.unwrap();
    let m = serde_json::to_value(h.server.metadata(&other).await.unwrap()).unwrap();
    assert!(m.get("jwks_uri").is_none());
    assert!(m.get("userinfo_endpoint").is_none());
}

/// The rotation scenario of the issue: next -> active -> retired -> gone,
/// with the JWKS at each step and tokens signed before a rotation still
/// verifying until their key leaves the JWKS.
#[tokio::test]
async fn key_rotation_with_a_fixed_clock() {
    let h = jwt_harness(SigningAlgorithm::EdDsa).await;
    let client = h.public_client(1, &[REDIRECT]).await;

    // Day 0: the first token creates the first key, active at once.
    let t0 = jwt_tokens(&h, &client, 1, "&scope=mcp%3Aread").await;
    let jwks = h.server.jwks(&h.project).await.unwrap();
    let first = kids(&jwks);
    assert_eq!(first.len(), 1);
    assert_eq!(part(t0.access_token(), 0)["kid"], first[0].as_str());
    let (v, fetcher) = verifier_for(&h).await;
    v.verify(t0.access_token(), h.server.now()).await.unwrap();

    // Day 29: within the one-day pre-publication window, a next key is
    // published but signs nothing.
    h.clock.advance(Duration::days(29));
    let report = h.server.rotate_signing_keys(&h.project).await.unwrap();
    assert_eq!(report.created.len(), 1);
    assert!(report.activated.is_empty());
    let next = report.created[0].to_string();
    let jwks = h.server.jwks(&h.project).await.unwrap();
    assert_eq!(
        kids(&jwks),
        vec![first[0].clone(), next.clone()],
        "active first, then next"
    );
    let t1 = jwt_tokens(&h, &client, 2, "&scope=mcp%3Aread").await;
    assert_eq!(
        part(t1.access_token(), 0)["kid"],
        first[0].as_str(),
        "the next key signs nothing"
    );

    // Day 30, one minute before: one more token from the old key.
    h.clock.advance(Duration::days(1) - Duration::minutes(1));
    let before = jwt_tokens(&h, &client, 3, "&scope=mcp%3Aread").await;
    h.clock.advance(Duration::minutes(1));
    // Day 30: rotation. The next key becomes active; the old one retires
    // but stays published until its last token (10 min) plus 5 min grace.
    let report = h.server.rotate_signing_keys(&h.project).await.unwrap();
    assert_eq!(
        report.activated,
        vec![authio_mcp::keys::KeyId::new(next.clone()).unwrap()]
    );
    let jwks = h.server.jwks(&h.project).await.unwrap();
    assert_eq!(
        kids(&jwks),
        vec![next.clone(), first[0].clone()],
        "active, then retired"
    );
    let after = jwt_tokens(&h, &client, 4, "&scope=mcp%3Aread").await;
    assert_eq!(part(after.access_token(), 0)["kid"], next.as_str());
    // The verifier has never seen the new kid: it refetches once.
    let before_fetches = fetcher.fetches.load(Ordering::SeqCst);
    v.verify(after.access_token(), h.server.now()).await.unwrap();
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), before_fetches + 1);
    // A token signed before the rotation still verifies.
    v.verify(before.access_token(), h.server.now()).await.unwrap();

    // 15 minutes later the retired key has left the JWKS.
    h.clock.advance(Duration::minutes(15));
    let report = h.server.rotate_signing_keys(&h.project).await.unwrap();
    assert_eq!(report.deleted, 1);
    let jwks = h.server.jwks(&h.project).await.unwrap();
    assert_eq!(kids(&jwks), vec![next.clone()]);
    // A verifier that only knows the current JWKS refuses the old key.
    let (fresh, _) = verifier_for(&h).await;
    let old_key = fresh
        .verify(before.access_token(), h.server.now() - Duration::minutes(15))
        .await;
    assert_eq!(old_key, Err(ResourceServerError::Inactive));
    let events = h.events();
    for name in ["signing_key.created", "signing_key.activated", "signing_key.deleted"] {
        assert!(events.contains(&name), "{name}");
    }
}

#[tokio::test]
async fn id_tokens_nonce_at_hash_refresh_and_userinfo() {
    let h = jwt_harness(SigningAlgorithm::Es256).await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let t = jwt_tokens(&h, &client, 1, "&scope=openid+email+mcp%3Aread&nonce=n-0S6_WzA2Mj").await;
    let id = t.id_token.clone().expect("an ID token with openid");
    let header = part(&id, 0);
    assert_eq!(header["alg"], "ES256");
    let c = part(&id, 1);
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["aud"], client.as_str());
    assert_eq!(c["azp"], client.as_str());
    assert_eq!(c["sub"], "user_demo");
    assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(c["email"], "user_demo@example.com");
    assert_eq!(c["email_verified"], true);
    assert_eq!(c["auth_time"], START.unix_timestamp());
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(t.access_token().as_bytes());
    assert_eq!(c["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));
    // The ID token verifies with its key from the JWKS, as an OpenID
    // Connect library would check it (independently of our code).
    let jwks = h.server.jwks(&h.project).await.unwrap();
    assert!(jwks.contains_kid(header["kid"].as_str().unwrap()));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        serde_json::to_value(jwks.keys.iter().find(|k| k.kid() == header["kid"].as_str()).unwrap()).unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[client.as_str()]);
    validation.set_issuer(&[ISSUER]);
    validation.validate_exp = false; // the fixed clock is not the system clock
    jsonwebtoken::decode::<Value>(&id, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap();
    let mut tampered = id.clone();
    tampered.insert(id.find('.').unwrap() + 2, 'x');
    assert!(
        jsonwebtoken::decode::<Value>(
            &tampered,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &validation
        )
        .is_err()
    );

    // Userinfo: sub and the email claims.
    let bearer = format!("Bearer {}", t.access_token());
    let info = h.server.userinfo(&h.project, Some(&bearer)).await.unwrap();
    assert_eq!(
        info,
        json!({"sub": "user_demo", "email": "user_demo@example.com", "email_verified": true})
    );
    let e = h.server.userinfo(&h.project, Some("Bearer nope")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidToken);
    assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);

    // Refresh keeping openid: a new ID token, without the nonce.
    let rt = t.refresh_token().unwrap();
    let t2 = h.refresh(&client, rt, "").await.unwrap();
    let c2 = part(t2.id_token.as_deref().unwrap(), 1);
    assert!(c2.get("nonce").is_none());
    // Refresh narrowed to mcp:read: no ID token, and userinfo refuses.
    let t3 = h
        .refresh(&client, t2.refresh_token().unwrap(), "&scope=mcp%3Aread")
        .await
        .unwrap();
    assert!(t3.id_token.is_none());
    let e = h
        .server
        .userinfo(&h.project, Some(&format!("Bearer {}", t3.access_token())))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientScope);

    // Without the email scope, no email claims.
    let t4 = jwt_tokens(&h, &client, 2, "&scope=openid").await;
    let c4 = part(t4.id_token.as_deref().unwrap(), 1);
    assert!(c4.get("email").is_none());
    assert!(c4.get("nonce").is_none());
}

/// Tokens an attacker might present to a locally verifying MCP server.
#[tokio::test]
async fn hostile_tokens_are_refused_by_the_jwt_verifier() {
    let h = jwt_harness(SigningAlgorithm::Es256).await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let good = jwt_tokens(&h, &client, 1, "&scope=mcp%3Aread")
        .await
        .access_token()
        .to_owned();
    let (v, fetcher) = verifier_for(&h).await;
    let now = h.server.now();
    v.verify(&good, now).await.unwrap();

    let header = part(&good, 0);
    let claims = part(&good, 1);
    let sig = good.split('.').nth(2).unwrap().to_owned();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let with = |h: Value, c: Value| format!("{}.{}.{sig}", enc(&h), enc(&c));
    let hdr = |k: &str, val: Value| {
        let mut x = header.clone();
        x[k] = val;
        x
    };
    let clm = |k: &str, val: Value| {
        let mut x = claims.clone();
        x[k] = val;
        x
    };

    // alg none, with and without a signature.
    let none = hdr("alg", json!("none"));
    assert_eq!(
        v.verify(&with(none.clone(), claims.clone()), now).await,
        Err(ResourceServerError::Inactive)
    );
    assert_eq!(
        v.verify(&format!("{}.{}.", enc(&none), enc(&claims)), now).await,
        Err(ResourceServerError::Inactive)
    );
    // HS256 "signed" with the public key (algorithm confusion).
    let jwks = h.server.jwks(&h.project).await.unwrap();
    let public = serde_json::to_vec(&jwks.keys[0]).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = header["kid"].as_str().map(str::to_owned);
    let forged = jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(&public).unwrap()).unwrap();
    assert_eq!(v.verify(&forged, now).await, Err(ResourceServerError::Inactive));
    // Wrong typ (an ID token or a plain JWT is not an access token).
    assert_eq!(
        v.verify(&with(hdr("typ", json!("JWT")), claims.clone()), now).await,
        Err(ResourceServerError::Inactive)
    );
    // Claims changed under the original signature.
    assert_eq!(
        v.verify(&with(header.clone(), clm("scope", json!("mcp:read mcp:write"))), now)
            .await,
        Err(ResourceServerError::Inactive)
    );
    // Unknown kid and kid injection: refused, and the refetches they
    // trigger are rate-limited to one per interval.
    let before = fetcher.fetches.load(Ordering::SeqCst);
    for kid in [
        "nope",
        "../../../../etc/passwd",
        "https://evil.example/jwks.json",
        "' OR 1=1 --",
    ] {
        assert_eq!(
            v.verify(&with(hdr("kid", json!(kid)), claims.clone()), now).await,
            Err(ResourceServerError::Inactive),
            "{kid}"
        );
    }
    assert!(
        fetcher.fetches.load(Ordering::SeqCst) - before <= 1,
        "rate-limited refetch"
    );
    // A key named by the token itself is never used.
    assert_eq!(
        v.verify(
            &with(hdr("jku", json!("https://evil.example/jwks.json")), claims.clone()),
            now
        )
        .await,
        Err(ResourceServerError::Inactive)
    );
    // Oversized.
    let huge = with(header.clone(), clm("pad", json!("x".repeat(10_000))));
    assert_eq!(v.verify(&huge, now).await, Err(ResourceServerError::Inactive));

    // Properly signed tokens with bad claims: sign them with the real key
    // through a project of another resource / time.
    let other = ProtectedResource::new(authio_mcp::resource::ResourceUri::parse("https://other.example/mcp").unwrap());
    let ok = v.verify(&good, now).await.unwrap();
    assert_eq!(other.check(ok, now), Err(ResourceServerError::WrongAudience));
    let wrong_aud = JwtVerifier::new(
        &Issuer::new(ISSUER).unwrap(),
        authio_mcp::resource::ResourceUri::parse("https://other.example/mcp").unwrap(),
        v.jwks_uri(),
        fetcher.clone(),
    );
    assert_eq!(
        wrong_aud.verify(&good, now).await,
        Err(ResourceServerError::WrongAudience)
    );
    let wrong_iss = JwtVerifier::new(
        &Issuer::new("https://evil.example").unwrap(),
        resource(),
        v.jwks_uri(),
        fetcher.clone(),
    );
    assert_eq!(
        wrong_iss.verify(&good, now).await,
        Err(ResourceServerError::WrongIssuer)
    );
    // Expired (beyond the 60 s leeway) and not yet valid (issued in the
    // future as seen by a verifier whose clock is behind).
    assert_eq!(
        v.verify(&good, now + Duration::minutes(12)).await,
        Err(ResourceServerError::Expired)
    );
    assert_eq!(
        v.verify(&good, now - Duration::minutes(5)).await,
        Err(ResourceServerError::Inactive),
        "iat in the future"
    );
}

/// The HTTP layer: the JWKS with its media type and cache headers under a
/// per-project issuer path, and the userinfo endpoint's challenges.
#[tokio::test]
async fn jwks_and_userinfo_over_oauth_endpoints() {
    use authio_mcp::http::{IssuerPathProjectResolver, OAuthEndpoints};
    let h = jwt_harness(SigningAlgorithm::Es256).await;
    let mut s = h.server.project(&h.project).await.unwrap();
    s.issuer = Some(Issuer::new(format!("{ISSUER}/p/proj_demo")).unwrap());
    h.server.put_project(&h.project, s).await.unwrap();
    let endpoints = OAuthEndpoints::new(h.server.clone(), Arc::new(IssuerPathProjectResolver::new("/p")));
    let get = |path: &str| http::Request::get(path).body(Vec::<u8>::new()).unwrap();

    let r = endpoints.jwks(&get("/p/proj_demo/.well-known/jwks.json")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/jwk-set+json");
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let body: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body["keys"].as_array().unwrap().len(), 1);
    assert!(body["keys"][0].get("d").is_none());
    let r = endpoints.jwks(&get("/p/proj_unknown/.well-known/jwks.json")).await;
    assert_eq!(r.status(), 404, "unknown project");
    let post = http::Request::post("/p/proj_demo/.well-known/jwks.json")
        .body(Vec::<u8>::new())
        .unwrap();
    assert_eq!(endpoints.jwks(&post).await.status(), 405);

    let m = serde_json::to_value(h.server.metadata(&h.project).await.unwrap()).unwrap();
    assert_eq!(m["jwks_uri"], format!("{ISSUER}/p/proj_demo/.well-known/jwks.json"));

    let r = endpoints.userinfo(&get("/p/proj_demo/oauth2/userinfo")).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    let client = h.public_client(1, &[REDIRECT]).await;
    let t = jwt_tokens(&h, &client, 1, "&scope=openid+mcp%3Aread").await;
    let req = http::Request::get("/p/proj_demo/oauth2/userinfo")
        .header("authorization", format!("Bearer {}", t.access_token()))
        .body(Vec::<u8>::new())
        .unwrap();
    let r = endpoints.userinfo(&req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body, json!({"sub": "user_demo"}), "no email without the email scope");
    // The token's iss is the project's issuer.
    assert_eq!(part(t.access_token(), 1)["iss"], format!("{ISSUER}/p/proj_demo"));
}

/// Switching a project's access-token algorithm retires the old key: it
/// stays published until its tokens expired, then leaves the JWKS.
#[tokio::test]
async fn changing_the_algorithm_retires_the_old_key() {
    let h = jwt_harness(SigningAlgorithm::EdDsa).await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let old = jwt_tokens(&h, &client, 1, "&scope=mcp%3Aread").await;
    let old_kid = part(old.access_token(), 0)["kid"].as_str().unwrap().to_owned();
    let mut s = h.server.project(&h.project).await.unwrap();
    s.signing.access_token_algorithm = SigningAlgorithm::Es256;
    s.signing.id_token_algorithm = SigningAlgorithm::Es256;
    h.server.put_project(&h.project, s).await.unwrap();
    let new = jwt_tokens(&h, &client, 2, "&scope=mcp%3Aread").await;
    assert_eq!(part(new.access_token(), 0)["alg"], "ES256");
    let jwks = h.server.jwks(&h.project).await.unwrap();
    assert_eq!(kids(&jwks).len(), 2);
    assert!(jwks.contains_kid(&old_kid), "still published for its tokens");
    let (v, _) = verifier_for(&h).await;
    v.verify(old.access_token(), h.server.now()).await.unwrap();
    h.clock.advance(Duration::minutes(15));
    let report = h.server.rotate_signing_keys(&h.project).await.unwrap();
    assert_eq!(report.deleted, 1);
    assert!(!h.server.jwks(&h.project).await.unwrap().contains_kid(&old_kid));
    assert!(h.events().contains(&"signing_key.retired"));
}

/// Properly signed tokens (with the server's own key, read from its key
/// store) whose claims are wrong: the claim rules refuse them.
#[tokio::test]
async fn signed_tokens_with_bad_claims_are_refused() {
    use authio_mcp::store::KeyStore as _;
    let keys = Arc::new(authio_mcp::store::memory::MemoryKeyStore::new());
    let h = harness_with({
        let keys = keys.clone();
        move |b| b.key_store(keys)
    })
    .await;
    let mut s = project_settings();
    s.access_token_format = AccessTokenFormat::Jwt;
    s.signing.id_token_algorithm = SigningAlgorithm::Es256;
    h.server.put_project(&h.project, s).await.unwrap();
    let jwks = h.server.jwks(&h.project).await.unwrap();
    let stored = keys.keys(&h.project).await.unwrap();
    let key = &stored[0];
    assert_eq!(jwks.keys.len(), 1);
    let (v, _) = verifier_for(&h).await;
    let now = h.server.now();
    let t = now.unix_timestamp();
    let sign = |claims: Value, typ: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(key.kid.as_str().to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_der(key.private_key.expose_der()),
        )
        .unwrap()
    };
    let base = json!({"iss": ISSUER, "aud": [RESOURCE], "sub": "u", "client_id": "c", "scope": "mcp:read",
        "iat": t, "exp": t + 300, "jti": "j"});
    let with = |k: &str, val: Value| {
        let mut c = base.clone();
        c[k] = val;
        c
    };
    assert!(
        v.verify(&sign(base.clone(), "at+jwt"), now).await.is_ok(),
        "the baseline verifies"
    );
    let cases = [
        (
            sign(with("aud", json!(["https://other.example/mcp"])), "at+jwt"),
            ResourceServerError::WrongAudience,
        ),
        (
            sign(with("iss", json!("https://evil.example")), "at+jwt"),
            ResourceServerError::WrongIssuer,
        ),
        (
            sign(with("exp", json!(t - 120)), "at+jwt"),
            ResourceServerError::Expired,
        ),
        (
            sign(with("nbf", json!(t + 600)), "at+jwt"),
            ResourceServerError::Inactive,
        ),
        (
            sign(with("client_id", json!(7)), "at+jwt"),
            ResourceServerError::IncompleteClaims,
        ),
        (sign(base.clone(), "JWT"), ResourceServerError::Inactive),
    ];
    for (i, (token, want)) in cases.into_iter().enumerate() {
        assert_eq!(v.verify(&token, now).await, Err(want), "case {i}");
    }
    // `application/at+jwt` is the same type (RFC 7515 section 4.1.9).
    assert!(v.verify(&sign(base.clone(), "application/at+jwt"), now).await.is_ok());
}

#[tokio::test]
async fn settings_lint_long_jwts_and_refuse_bad_rotation() {
    use authio_mcp::project::SettingsLint;
    let h = harness().await;
    let mut s = project_settings();
    s.access_token_format = AccessTokenFormat::Jwt;
    s.access_token_ttl = Duration::hours(1);
    assert!(s.lints().contains(&SettingsLint::LongLivedJwtAccessTokens));
    s.access_token_ttl = Duration::minutes(5);
    assert!(!s.lints().contains(&SettingsLint::LongLivedJwtAccessTokens));
    s.signing.pre_publication = Duration::minutes(1);
    assert!(h.server.put_project(&h.project, s.clone()).await.is_err());
    s.signing.pre_publication = Duration::days(40);
    assert!(
        h.server.put_project(&h.project, s).await.is_err(),
        "rotation period must be longer"
    );
    // Stored settings from before signed tokens read back as opaque.
    let mut old = serde_json::to_value(project_settings()).unwrap();
    old.as_object_mut().unwrap().remove("access_token_format");
    old.as_object_mut().unwrap().remove("signing");
    let back: authio_mcp::project::ProjectSettings = serde_json::from_value(old).unwrap();
    assert_eq!(back.access_token_format, AccessTokenFormat::Opaque);
    assert_eq!(back.signing.access_token_algorithm, SigningAlgorithm::Es256);
}

/// The refresh grace with JWTs: a concurrent refresh within the grace gets
/// the very same signed access token and ID token (the signatures are
/// deterministic and the claims are re-derived), and it verifies.
#[tokio::test]
async fn a_refresh_within_the_grace_returns_the_same_jwts() {
    let h = jwt_harness(SigningAlgorithm::Es256).await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let t = jwt_tokens(&h, &client, 1, "&scope=openid+mcp%3Aread").await;
    let rt1 = t.refresh_token().unwrap().to_owned();
    let a = h.refresh(&client, &rt1, "").await.unwrap();
    h.clock.advance(Duration::seconds(2));
    let b = h.refresh(&client, &rt1, "").await.unwrap();
    assert_eq!(a.access_token(), b.access_token());
    assert_eq!(a.id_token, b.id_token);
    assert!(a.id_token.is_some());
    assert_eq!(a.access_token().split('.').count(), 3);
    let (v, _) = verifier_for(&h).await;
    v.verify(b.access_token(), h.server.now()).await.unwrap();
    assert_eq!(h.introspect(b.access_token()).await["active"], true);
}
