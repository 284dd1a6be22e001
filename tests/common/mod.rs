//! Shared fixtures for the integration tests: a server with a fixed clock,
//! a seeded random source and in-memory stores.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use authio_mcp::authorize::PendingAuthorization;
use authio_mcp::cimd::{FetchError, FetchPlan, FetchResponse, MetadataFetcher};
use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::Subject;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::resource::ResourceUri;
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::{AuthorizationServer, AuthorizeOutcome, FixedClock, SeededRandom};
use authio_mcp::store::ClientStore;
use authio_mcp::store::memory::{MemoryAuditLog, MemoryClientStore, MemoryGrantStore};
use authio_mcp::token::TokenResponse;
use time::OffsetDateTime;
use time::macros::datetime;

pub const ISSUER: &str = "https://auth-api.authio.com";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
pub const REDIRECT: &str = "https://my-mcp-server.example.com/oauth/callback";
pub const START: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

pub const CIMD_URL: &str = "https://claude.ai/oauth/mcp-oauth-client-metadata";
pub const CIMD_REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";

/// Serves one Claude.ai-shaped metadata document; counts fetches.
#[derive(Default)]
pub struct DocumentFetcher {
    pub fetches: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl MetadataFetcher for DocumentFetcher {
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if plan.url().as_str() != CIMD_URL {
            return Ok(FetchResponse::new(404, b"not found".to_vec()).with_content_type("text/html"));
        }
        let doc = serde_json::json!({
            "client_id": CIMD_URL,
            "client_name": "Claude",
            "client_uri": "https://claude.ai",
            "redirect_uris": [CIMD_REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        });
        Ok(FetchResponse::new(200, doc.to_string().into_bytes()).with_content_type("application/json"))
    }
}

pub struct Harness {
    pub server: AuthorizationServer,
    pub clock: Arc<FixedClock>,
    pub audit: Arc<MemoryAuditLog>,
    pub clients: Arc<MemoryClientStore>,
    pub grants: Arc<MemoryGrantStore>,
    pub project: ProjectId,
}

/// The demo project: MCP on, the MCP server at [`RESOURCE`] known (listed,
/// not the default: a request without `resource` gets no audience).
pub fn project_settings() -> ProjectSettings {
    let mut s = ProjectSettings::default();
    s.resources.upsert(
        authio_mcp::project::KnownResource::new(ResourceUri::parse(RESOURCE).unwrap(), "Example MCP server").unwrap(),
    );
    s.scopes_supported = ScopeSet::parse("openid email mcp:read mcp:write").unwrap();
    s.default_scopes = ScopeSet::parse("mcp:read").unwrap();
    s.access_token_ttl = time::Duration::minutes(15);
    s.set_mcp_enabled(true).0
}

pub async fn harness() -> Harness {
    harness_with(|b| b).await
}

/// Like [`harness`], with extra builder settings.
pub async fn harness_with(
    extra: impl FnOnce(authio_mcp::server::AuthorizationServerBuilder) -> authio_mcp::server::AuthorizationServerBuilder,
) -> Harness {
    let clock = Arc::new(FixedClock::new(START));
    let audit = Arc::new(MemoryAuditLog::new());
    let clients = Arc::new(MemoryClientStore::new());
    let grants = Arc::new(MemoryGrantStore::new());
    let server = AuthorizationServer::builder(Issuer::new(ISSUER).unwrap())
        .clock(clock.clone())
        .audit(audit.clone())
        .clients(clients.clone())
        .grants(grants.clone())
        .random(Arc::new(SeededRandom::new(42)))
        .metadata_fetcher(Arc::new(DocumentFetcher::default()));
    let server = extra(server).build();
    let project = ProjectId::new("proj_demo").unwrap();
    server.put_project(&project, project_settings()).await.unwrap();
    Harness {
        server,
        clock,
        audit,
        clients,
        grants,
        project,
    }
}

impl Harness {
    /// Stores a public client with the given redirect URIs directly.
    pub async fn public_client(&self, n: u8, redirects: &[&str]) -> ClientId {
        self.public_client_in(self.clients.as_ref(), n, redirects).await
    }

    /// [`Harness::public_client`], stored in `store` (a store the server
    /// reaches through a wrapper, say).
    pub async fn public_client_in(&self, store: &dyn ClientStore, n: u8, redirects: &[&str]) -> ClientId {
        let metadata: ClientMetadata = serde_json::from_value(serde_json::json!({
            "redirect_uris": redirects,
            "client_name": format!("Client {n}"),
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .unwrap();
        let v = metadata
            .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
            .unwrap();
        let id = ClientId::Registered(RegisteredClientId::from_random(&[n; 12]));
        assert!(
            store
                .insert(&self.project, Client::new(id.clone(), v, START))
                .await
                .unwrap()
        );
        id
    }

    pub async fn authorize(&self, query: &str) -> AuthorizeOutcome {
        self.server.authorize(&self.project, query).await
    }

    pub async fn pending(&self, query: &str) -> PendingAuthorization {
        match self.authorize(query).await {
            AuthorizeOutcome::Pending(p) => *p,
            other => panic!("expected a pending authorization, got {other:?}"),
        }
    }

    /// authorize + approve as `user_demo`; returns the code.
    pub async fn code_for(&self, client: &ClientId, verifier: &CodeVerifier, extra: &str) -> String {
        let q = auth_query(client, REDIRECT, verifier, extra);
        let pending = self.pending(&q).await;
        let location = self
            .server
            .approve(pending, Subject::new("user_demo").unwrap(), None)
            .await
            .unwrap();
        query_param(&location, "code").expect("code in redirect")
    }

    pub async fn exchange(
        &self,
        client: &ClientId,
        code: &str,
        verifier: &CodeVerifier,
        extra: &str,
    ) -> Result<TokenResponse, authio_mcp::OAuthError> {
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client.as_str()),
            ("code_verifier", verifier.as_str()),
        ]) + extra;
        self.server
            .token(&self.project, None, body.as_bytes())
            .await
            .map_err(authio_mcp::OAuthError::from)
    }

    pub async fn refresh(
        &self,
        client: &ClientId,
        rt: &str,
        extra: &str,
    ) -> Result<TokenResponse, authio_mcp::OAuthError> {
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", client.as_str()),
        ]) + extra;
        self.server
            .token(&self.project, None, body.as_bytes())
            .await
            .map_err(authio_mcp::OAuthError::from)
    }

    pub async fn introspect(&self, token: &str) -> serde_json::Value {
        let r = self
            .server
            .introspect(&self.project, form(&[("token", token)]).as_bytes())
            .await
            .unwrap();
        serde_json::from_slice(&r.to_json()).unwrap()
    }

    pub fn events(&self) -> Vec<&'static str> {
        self.audit
            .recent(&self.project, 1000)
            .iter()
            .map(|e| e.name())
            .collect()
    }
}

pub fn verifier(n: u8) -> CodeVerifier {
    CodeVerifier::from_random(&[n; 32])
}

pub fn auth_query(client: &ClientId, redirect: &str, verifier: &CodeVerifier, extra: &str) -> String {
    form(&[
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", redirect),
        ("code_challenge", CodeChallenge::s256(verifier).as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st4te"),
        ("resource", RESOURCE),
    ]) + extra
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn query_param(location: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(location).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub fn resource() -> ResourceUri {
    ResourceUri::parse(RESOURCE).unwrap()
}

/// The example server's binary: `AUTHIO_TEST_SERVER_BIN`, else the one
/// cargo built next to the test (`target/debug/deps/TEST-HASH` ->
/// `target/debug/examples/server`; `cargo test` builds examples first).
pub fn server_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("AUTHIO_TEST_SERVER_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("examples").join("server");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --example server`",
        bin.display()
    );
    bin
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
