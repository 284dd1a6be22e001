//! Criterion benches for signed tokens: signing and verifying an RFC 9068
//! access token per algorithm, and a code exchange with the JWT issuer
//! (with and without an ID token) next to the opaque one.
//!
//! Run: `cargo bench --bench signed_tokens` (see BENCHMARKS.md).

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authio_mcp::client::{ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::{AccessTokenClaims, Subject};
use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
use authio_mcp::jwt::JwtAccessTokenIssuer;
use authio_mcp::keys::{KeyId, SigningKey};
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::project::{AccessTokenFormat, ProjectId, ProjectSettings};
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::resource::ResourceUri;
use authio_mcp::resource_server::{JwksFetcher, JwtVerifier, TokenVerifier};
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::{AuthorizationServer, AuthorizeOutcome, FixedClock};
use authio_mcp::store::memory::{MemoryClientStore, MemoryGrantStore};
use authio_mcp::store::{ClientStore, GrantStore, TokenIssuer};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_executor::block_on;
use time::OffsetDateTime;
use time::macros::datetime;

const ISSUER: &str = "https://auth-api.authio.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";
const START: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);
const FAR_FUTURE: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);
const CHUNK: u64 = 256;

/// Serves one JWK Set from memory.
struct Keys(Vec<u8>);

#[async_trait::async_trait]
impl JwksFetcher for Keys {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, String> {
        Ok(self.0.clone())
    }
}

fn claims() -> AccessTokenClaims {
    serde_json::from_value(serde_json::json!({
        "iss": ISSUER, "sub": "user_demo", "aud": [RESOURCE], "client_id": "client_0123456789abcdef01234567",
        "scope": "mcp:read mcp:write", "iat": START.unix_timestamp(), "exp": START.unix_timestamp() + 300,
        "jti": "0123456789abcdef0123456789abcdef", "auth_time": START.unix_timestamp()
    }))
    .unwrap()
}

fn sign_and_verify(c: &mut Criterion) {
    let project = ProjectId::new("proj_demo").unwrap();
    let mut g = c.benchmark_group("jwt_access_token");
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Rs256,
    ] {
        let key = PrivateKey::generate(alg, &[5; 32]).unwrap();
        let kid = KeyId::from_random(alg, &[6; 16]);
        let jwks = serde_json::json!({"keys": [key.public_jwk(kid.as_str())]}).to_string();
        let issuer = JwtAccessTokenIssuer::new(SigningKey::new(project.clone(), kid, key, START));
        let claims = claims();
        g.bench_function(format!("sign/{alg}"), |b| {
            b.iter(|| block_on(issuer.issue(black_box(&claims), &[0; 32])).unwrap())
        });
        let token = block_on(issuer.issue(&claims, &[0; 32])).unwrap();
        let verifier = JwtVerifier::new(
            &Issuer::new(ISSUER).unwrap(),
            ResourceUri::parse(RESOURCE).unwrap(),
            "https://auth-api.authio.com/.well-known/jwks.json",
            Arc::new(Keys(jwks.into_bytes())),
        );
        // Warm the JWKS cache: the timed verifications never fetch.
        block_on(verifier.verify(token.expose_secret(), START)).unwrap();
        g.bench_function(format!("verify/{alg}"), |b| {
            b.iter(|| block_on(verifier.verify(black_box(token.expose_secret()), START)).unwrap())
        });
    }
    g.finish();
}

struct Exchange {
    server: AuthorizationServer,
    grants: Arc<MemoryGrantStore>,
    project: ProjectId,
    client: ClientId,
    verifier: CodeVerifier,
    query: String,
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn exchange_setup(format: AccessTokenFormat, scope: &str) -> Exchange {
    let grants = Arc::new(MemoryGrantStore::new());
    let clients = Arc::new(MemoryClientStore::new());
    let server = AuthorizationServer::builder(Issuer::new(ISSUER).unwrap())
        .clock(Arc::new(FixedClock::new(START)))
        .grants(grants.clone())
        .clients(clients.clone())
        .build();
    let project = ProjectId::new("proj_demo").unwrap();
    let mut s = ProjectSettings::default();
    s.scopes_supported = ScopeSet::parse("openid email mcp:read mcp:write").unwrap();
    s.default_resource = Some(ResourceUri::parse(RESOURCE).unwrap());
    s.access_token_format = format;
    s.access_token_ttl = time::Duration::minutes(5);
    block_on(server.put_project(&project, s.set_mcp_enabled(true).0)).unwrap();
    let metadata: ClientMetadata = serde_json::from_value(serde_json::json!({
        "redirect_uris": [REDIRECT], "client_name": "Claude", "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"]
    }))
    .unwrap();
    let v = metadata
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .unwrap();
    let client = ClientId::Registered(RegisteredClientId::from_random(&[1; 12]));
    block_on(clients.insert(&project, authio_mcp::client::Client::new(client.clone(), v, START))).unwrap();
    let verifier = CodeVerifier::from_random(&[7; 32]);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CodeChallenge::s256(&verifier).as_str()),
        ("code_challenge_method", "S256"),
        ("resource", RESOURCE),
        ("scope", scope),
        ("nonce", "n-0S6_WzA2Mj"),
    ]);
    Exchange {
        server,
        grants,
        project,
        client,
        verifier,
        query,
    }
}

impl Exchange {
    fn body(&self) -> String {
        let pending = match block_on(self.server.authorize(&self.project, &self.query)) {
            AuthorizeOutcome::Pending(p) => *p,
            other => panic!("{other:?}"),
        };
        let location = block_on(self.server.approve(pending, Subject::new("user_demo").unwrap(), None)).unwrap();
        let code = url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", self.client.as_str()),
            ("code_verifier", self.verifier.as_str()),
        ])
    }
}

fn code_exchange(c: &mut Criterion) {
    let mut g = c.benchmark_group("code_exchange");
    for (name, format, scope) in [
        ("opaque", AccessTokenFormat::Opaque, "mcp:read"),
        ("jwt_es256", AccessTokenFormat::Jwt, "mcp:read"),
        (
            "jwt_es256_id_token_rs256",
            AccessTokenFormat::Jwt,
            "openid email mcp:read",
        ),
    ] {
        let x = exchange_setup(format, scope);
        // Keys are created by the first exchange, untimed.
        let first = x.body();
        block_on(x.server.token(&x.project, None, first.as_bytes())).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = CHUNK.min(iters - done);
                    let bodies: Vec<String> = (0..n).map(|_| x.body()).collect();
                    let start = Instant::now();
                    for body in &bodies {
                        black_box(block_on(x.server.token(&x.project, None, body.as_bytes())).unwrap());
                    }
                    total += start.elapsed();
                    done += n;
                    block_on(x.grants.purge_expired(FAR_FUTURE)).unwrap();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, sign_and_verify, code_exchange);
criterion_main!(benches);
