//! Criterion benches for every hot path of the authorization server: the
//! pure core (PKCE, `client_id` URLs, CIMD documents, discovery) and the
//! driver over in-memory stores with a fixed clock (authorization request,
//! code exchange, refresh rotation, registration, introspection).
//!
//! Run: `cargo bench --bench hot_paths` (see BENCHMARKS.md). Driver benches
//! that change state prepare their inputs outside the timed section and
//! purge the stores between chunks, so memory stays bounded however many
//! iterations criterion asks for.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authio_mcp::authorize::PendingAuthorization;
use authio_mcp::cimd::{ClientIdUrl, FetchError, FetchPlan, FetchResponse, MetadataFetcher};
use authio_mcp::client::{ClientId, ClientMetadata, MetadataProfile};
use authio_mcp::dcr::{IatOptions, RegistrationPolicy};
use authio_mcp::discovery::{AuthorizationServerMetadata, EndpointPaths, Issuer};
use authio_mcp::grant::Subject;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::{AuthorizationServer, AuthorizeOutcome, FixedClock};
use authio_mcp::store::memory::{MemoryClientStore, MemoryGrantStore};
use authio_mcp::store::{ClientStore, GrantStore};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_executor::block_on;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::datetime;

const ISSUER: &str = "https://auth-api.authio.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";
const START: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);
/// A time after every code and token of a chunk has expired: purging "as
/// of" it empties the grant store without moving the fixed clock.
const FAR_FUTURE: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);
/// Inputs prepared (untimed) per chunk of a stateful bench.
const CHUNK: u64 = 512;

/// The Claude.ai client ID metadata document, as published.
const CLAUDE_CIMD: &str = r#"{
  "client_id": "https://claude.ai/oauth/mcp-oauth-client-metadata",
  "client_name": "Claude",
  "client_uri": "https://claude.ai",
  "logo_uri": "https://claude.ai/images/claude_app_icon.png",
  "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
  "grant_types": ["authorization_code", "refresh_token"],
  "response_types": ["code"],
  "token_endpoint_auth_method": "none"
}"#;

const CIMD_URL: &str = "https://claude.ai/oauth/mcp-oauth-client-metadata";

/// Serves the Claude.ai document from memory, cacheable for a day: after
/// the first authorization request every resolution is a cache hit.
struct InMemoryFetcher;

#[async_trait::async_trait]
impl MetadataFetcher for InMemoryFetcher {
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        assert_eq!(plan.url().as_str(), CIMD_URL);
        Ok(FetchResponse::new(200, CLAUDE_CIMD.as_bytes().to_vec())
            .with_content_type("application/json")
            .with_cache_control("public, max-age=86400"))
    }
}

const REGISTRATION: &str = r#"{"redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
  "client_name": "Claude", "token_endpoint_auth_method": "none",
  "grant_types": ["authorization_code", "refresh_token"], "application_type": "web"}"#;

struct Bench {
    server: AuthorizationServer,
    grants: Arc<MemoryGrantStore>,
    clients: Arc<MemoryClientStore>,
    project: ProjectId,
    client: ClientId,
    verifier: CodeVerifier,
    query: String,
    cimd_query: String,
}

fn settings() -> ProjectSettings {
    let mut s = ProjectSettings::default();
    s.scopes_supported = ScopeSet::parse("openid email mcp:read mcp:write").unwrap();
    s.default_scopes = ScopeSet::parse("mcp:read").unwrap();
    // The MCP server the requests name must be known to the project.
    s.default_resource = Some(authio_mcp::resource::ResourceUri::parse(RESOURCE).unwrap());
    s.set_mcp_enabled(true).0
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn setup() -> Bench {
    let grants = Arc::new(MemoryGrantStore::new());
    let clients = Arc::new(MemoryClientStore::new());
    let mut policy = RegistrationPolicy::default();
    policy.max_clients_per_project = None;
    let server = AuthorizationServer::builder(Issuer::new(ISSUER).unwrap())
        .clock(Arc::new(FixedClock::new(START)))
        .grants(grants.clone())
        .clients(clients.clone())
        .registration_policy(policy)
        .metadata_fetcher(Arc::new(InMemoryFetcher))
        .build();
    let project = ProjectId::new("proj_demo").unwrap();
    block_on(server.put_project(&project, settings())).unwrap();
    let issued = block_on(server.issue_iat(&project, IatOptions::new())).unwrap();
    let header = format!("Bearer {}", issued.token.expose_secret());
    let registered = block_on(server.register_client(&project, Some(&header), REGISTRATION.as_bytes())).unwrap();
    let client = ClientId::Registered(registered.client_id.clone());
    let verifier = CodeVerifier::from_random(&[7; 32]);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CodeChallenge::s256(&verifier).as_str()),
        ("code_challenge_method", "S256"),
        ("state", "af0ifjsldkj"),
        ("resource", RESOURCE),
        ("scope", "mcp:read mcp:write"),
    ]);
    let cimd_query = form(&[
        ("response_type", "code"),
        ("client_id", CIMD_URL),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CodeChallenge::s256(&verifier).as_str()),
        ("code_challenge_method", "S256"),
        ("state", "af0ifjsldkj"),
        ("resource", RESOURCE),
        ("scope", "mcp:read mcp:write"),
    ]);
    Bench {
        server,
        cimd_query,
        grants,
        clients,
        project,
        client,
        verifier,
        query,
    }
}

impl Bench {
    fn pending(&self) -> PendingAuthorization {
        match block_on(self.server.authorize(&self.project, &self.query)) {
            AuthorizeOutcome::Pending(p) => *p,
            other => panic!("expected pending, got {other:?}"),
        }
    }

    fn code(&self) -> String {
        let location = block_on(
            self.server
                .approve(self.pending(), Subject::new("user_demo").unwrap(), None),
        )
        .unwrap();
        let url = url::Url::parse(&location).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    fn exchange_body(&self, code: &str) -> String {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", self.client.as_str()),
            ("code_verifier", self.verifier.as_str()),
        ])
    }

    fn refresh_body(&self, refresh_token: &str) -> String {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", self.client.as_str()),
        ])
    }

    fn purge(&self) {
        block_on(self.grants.purge_expired(FAR_FUTURE)).unwrap();
    }
}

fn core(c: &mut Criterion) {
    let verifier = CodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
    let challenge = CodeChallenge::s256(&verifier);
    let mut g = c.benchmark_group("pkce");
    g.bench_function("s256_verify", |b| {
        b.iter(|| black_box(&challenge).verify(black_box(&verifier)).unwrap())
    });
    g.bench_function("bare_sha256_base64url", |b| {
        b.iter(|| {
            let mut out = [0u8; 43];
            let digest = Sha256::digest(black_box(verifier.as_str()).as_bytes());
            URL_SAFE_NO_PAD.encode_slice(digest, &mut out).unwrap();
            black_box(out)
        })
    });
    g.finish();

    c.bench_function("client_id_url/parse", |b| {
        b.iter(|| ClientIdUrl::parse(black_box("https://claude.ai/oauth/mcp-oauth-client-metadata")).unwrap())
    });

    c.bench_function("cimd_document/claude_ai_validate", |b| {
        b.iter(|| {
            let m = ClientMetadata::from_json(black_box(CLAUDE_CIMD.as_bytes())).unwrap();
            m.validate(
                MetadataProfile::Cimd {
                    allow_private_key_jwt: false,
                },
                RedirectUriPolicy::strict(),
            )
            .unwrap()
        })
    });

    let issuer = Issuer::new(ISSUER).unwrap();
    let s = settings();
    let paths = EndpointPaths::default();
    c.bench_function("discovery/render", |b| {
        b.iter(|| AuthorizationServerMetadata::build(black_box(&issuer), black_box(&s), &paths).to_json())
    });
}

fn driver(c: &mut Criterion) {
    let bench = setup();
    let mut g = c.benchmark_group("driver");

    g.bench_function("authorize_registered_client", |b| {
        b.iter(
            || match block_on(bench.server.authorize(&bench.project, black_box(&bench.query))) {
                AuthorizeOutcome::Pending(p) => p,
                other => panic!("{other:?}"),
            },
        )
    });

    // The first request fetches (untimed, here) and caches the document;
    // every timed one resolves the client from the cache.
    match block_on(bench.server.authorize(&bench.project, &bench.cimd_query)) {
        AuthorizeOutcome::Pending(_) => {}
        other => panic!("{other:?}"),
    }
    g.bench_function("authorize_cached_cimd_client", |b| {
        b.iter(
            || match block_on(bench.server.authorize(&bench.project, black_box(&bench.cimd_query))) {
                AuthorizeOutcome::Pending(p) => p,
                other => panic!("{other:?}"),
            },
        )
    });

    // Fresh codes are minted per chunk, outside the timed section; the
    // store is emptied after each chunk.
    g.bench_function("code_exchange", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = CHUNK.min(iters - done);
                let bodies: Vec<String> = (0..n).map(|_| bench.exchange_body(&bench.code())).collect();
                let start = Instant::now();
                for body in &bodies {
                    black_box(block_on(bench.server.token(&bench.project, None, body.as_bytes())).unwrap());
                }
                total += start.elapsed();
                done += n;
                bench.purge();
            }
            total
        })
    });

    // A chain of rotations: each iteration presents the token the previous
    // one received. A new chain starts for every chunk.
    g.bench_function("refresh_rotation", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = CHUNK.min(iters - done);
                let body = bench.exchange_body(&bench.code());
                let first = block_on(bench.server.token(&bench.project, None, body.as_bytes())).unwrap();
                let mut refresh = bench.refresh_body(first.refresh_token().unwrap());
                let start = Instant::now();
                for _ in 0..n {
                    let t = block_on(bench.server.token(&bench.project, None, refresh.as_bytes())).unwrap();
                    refresh = bench.refresh_body(t.refresh_token().unwrap());
                }
                total += start.elapsed();
                done += n;
                bench.purge();
            }
            total
        })
    });

    // The registered clients of a chunk are deleted after it.
    let issued = block_on(bench.server.issue_iat(&bench.project, IatOptions::new())).unwrap();
    let header = format!("Bearer {}", issued.token.expose_secret());
    g.bench_function("dcr_register_with_iat", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            let mut ids = Vec::with_capacity(CHUNK as usize);
            while done < iters {
                let n = CHUNK.min(iters - done);
                let start = Instant::now();
                for _ in 0..n {
                    let r = block_on(bench.server.register_client(
                        &bench.project,
                        Some(&header),
                        black_box(REGISTRATION.as_bytes()),
                    ))
                    .unwrap();
                    ids.push(r);
                }
                total += start.elapsed();
                done += n;
                for r in ids.drain(..) {
                    block_on(bench.clients.delete(&bench.project, &r.client_id)).unwrap();
                }
            }
            total
        })
    });

    let token = block_on(
        bench
            .server
            .token(&bench.project, None, bench.exchange_body(&bench.code()).as_bytes()),
    )
    .unwrap();
    let body = form(&[("token", token.access_token())]);
    g.bench_function("introspect_access_token", |b| {
        b.iter(|| {
            let r = block_on(bench.server.introspect(&bench.project, black_box(body.as_bytes()))).unwrap();
            black_box(r)
        })
    });
    g.finish();
}

fn executors(c: &mut Criterion) {
    // How much the executor adds around one driver call: the same
    // introspection under futures-executor and a current-thread tokio
    // runtime (the benches above use the cheaper one).
    let bench = setup();
    let token = block_on(
        bench
            .server
            .token(&bench.project, None, bench.exchange_body(&bench.code()).as_bytes()),
    )
    .unwrap();
    let body = form(&[("token", token.access_token())]);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut g = c.benchmark_group("executor");
    g.bench_function("futures_executor_block_on", |b| {
        b.iter(|| block_on(bench.server.introspect(&bench.project, black_box(body.as_bytes()))).unwrap())
    });
    g.bench_function("tokio_current_thread_block_on", |b| {
        b.iter(|| {
            rt.block_on(bench.server.introspect(&bench.project, black_box(body.as_bytes())))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, core, driver, executors);
criterion_main!(benches);
