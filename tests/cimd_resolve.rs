//! CIMD resolution end to end through the driver, with an in-memory fake
//! fetcher: real-world document shapes, a hostile table, single-flight,
//! cache expiry with a fixed clock, audit events and the preview API.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // test code

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use authio_mcp::ErrorCode;
use authio_mcp::audit::AuditKind;
use authio_mcp::cimd::{
    CimdPolicy, CimdPreview, CimdTrust, ClientIdUrl, FetchError, FetchLimits, FetchPlan, FetchResponse, HostPattern,
    MetadataFetcher, RequestSource,
};
use authio_mcp::client::{ApplicationType, GrantType, TokenEndpointAuthMethod};
use authio_mcp::discovery::Issuer;
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::server::{AuthorizationServer, FixedClock};
use authio_mcp::store::memory::{MemoryAuditLog, MemoryCimdCache};
use serde_json::{Value, json};
use time::Duration;
use time::macros::datetime;

// ---------------------------------------------------------------- helpers

type Canned = Result<FetchResponse, FetchError>;

/// Serves canned responses by URL; any other URL gets a valid document
/// whose `client_id` is the URL. Counts fetches.
#[derive(Default)]
struct FakeFetcher {
    canned: Mutex<HashMap<String, Canned>>,
    calls: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    delay: Option<StdDuration>,
}

impl FakeFetcher {
    fn with_delay(delay: StdDuration) -> Self {
        Self {
            delay: Some(delay),
            ..Self::default()
        }
    }

    fn serve(&self, url: &str, response: Canned) {
        self.canned.lock().unwrap().insert(url.to_owned(), response);
    }

    fn calls(&self, url: &str) -> usize {
        self.calls.lock().unwrap().get(url).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl MetadataFetcher for FakeFetcher {
    async fn fetch(&self, plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        assert_eq!(plan.accept(), "application/json");
        assert_eq!(plan.max_body_bytes(), 5120);
        assert!(!plan.follow_redirects());
        let url = plan.url().as_str().to_owned();
        self.total.fetch_add(1, Ordering::SeqCst);
        *self.calls.lock().unwrap().entry(url.clone()).or_default() += 1;
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let canned = self.canned.lock().unwrap().get(&url).cloned();
        canned.unwrap_or_else(|| {
            Ok(json_response(&json!({
                "client_id": url,
                "client_name": "Generated",
                "redirect_uris": ["https://generated.example/cb"]
            })))
        })
    }
}

fn json_response(v: &Value) -> FetchResponse {
    FetchResponse::new(200, serde_json::to_vec(v).unwrap()).with_content_type("application/json")
}

struct Harness {
    server: AuthorizationServer,
    fetcher: Arc<FakeFetcher>,
    cache: Arc<MemoryCimdCache>,
    audit: Arc<MemoryAuditLog>,
    clock: Arc<FixedClock>,
    project: ProjectId,
    settings: ProjectSettings,
}

const START: time::OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

impl Harness {
    async fn new() -> Self {
        Self::with_fetcher(FakeFetcher::default(), |_| {}).await
    }

    async fn with_fetcher(fetcher: FakeFetcher, edit: impl FnOnce(&mut ProjectSettings)) -> Self {
        let fetcher = Arc::new(fetcher);
        let cache = Arc::new(MemoryCimdCache::new());
        let audit = Arc::new(MemoryAuditLog::new());
        let clock = Arc::new(FixedClock::new(START));
        let server = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com").unwrap())
            .audit(audit.clone())
            .clock(clock.clone())
            .metadata_fetcher(fetcher.clone())
            .cimd_cache(cache.clone())
            .build();
        let project = ProjectId::new("proj_acme_prod").unwrap();
        let mut settings = ProjectSettings::default().set_mcp_enabled(true).0;
        edit(&mut settings);
        server.put_project(&project, settings.clone()).await.unwrap();
        Self {
            server,
            fetcher,
            cache,
            audit,
            clock,
            project,
            settings,
        }
    }

    async fn resolve(&self, url: &str) -> Result<authio_mcp::client::Client, authio_mcp::cimd::CimdError> {
        let url = ClientIdUrl::try_from(url.to_owned()).unwrap();
        self.server
            .resolve_cimd_client(&self.project, &self.settings, &url)
            .await
    }

    async fn preview(&self, client_id: &str) -> CimdPreview {
        let body = serde_json::to_vec(&json!({ "client_id": client_id })).unwrap();
        self.server.preview_cimd(&self.project, &body).await.unwrap()
    }

    fn events(&self) -> Vec<AuditKind> {
        self.audit
            .recent(&self.project, 10_000)
            .into_iter()
            .map(|e| e.kind)
            .filter(|k| matches!(k, AuditKind::CimdFetchFailed { .. } | AuditKind::CimdResolved { .. }))
            .collect()
    }
}

// ---------------------------------------------------------------- fixtures

const CLAUDE: &str = "https://claude.ai/oauth/mcp-oauth-client-metadata";
const CHATGPT: &str = "https://chatgpt.com/oauth/mcp-client-metadata.json";
const VSCODE: &str = "https://vscode.dev/oauth/client-metadata.json";
const SEED: &str = "https://my-mcp-server.example.com/.well-known/oauth-client-id";

fn claude_doc() -> Value {
    json!({
        "client_id": CLAUDE,
        "client_name": "Claude",
        "client_uri": "https://claude.ai",
        "logo_uri": "https://claude.ai/images/claude_app_icon.png",
        "redirect_uris": [
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.com/api/mcp/auth_callback"
        ],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "contacts": ["security@anthropic.com"]
    })
}

fn chatgpt_doc() -> Value {
    json!({
        "client_id": CHATGPT,
        "client_name": "ChatGPT",
        "client_uri": "https://chatgpt.com",
        "logo_uri": "https://cdn.oaistatic.com/assets/favicon-o20kmmos.svg",
        "redirect_uris": ["https://chatgpt.com/connector_platform_oauth_redirect"],
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "token_endpoint_auth_methods_supported": ["none"],
        "application_type": "web",
        "scope": "openid email profile offline_access",
        "tos_uri": "https://openai.com/policies/terms-of-use",
        "policy_uri": "https://openai.com/policies/privacy-policy"
    })
}

fn vscode_doc() -> Value {
    json!({
        "client_id": VSCODE,
        "client_name": "Visual Studio Code",
        "client_uri": "https://code.visualstudio.com",
        "logo_uri": "https://code.visualstudio.com/assets/images/code-stable.png",
        "application_type": "native",
        "grant_types": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"
        ],
        "response_types": ["code"],
        "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
        "token_endpoint_auth_method": "none",
        "software_id": "vscode",
        "software_version": "1.106.0"
    })
}

fn seed_doc() -> Value {
    json!({
        "client_id": SEED,
        "redirect_uris": ["https://my-mcp-server.example.com/oauth/callback"],
        "client_name": "My MCP Server",
        "client_uri": "https://my-mcp-server.example.com",
        "scope": "openid email mcp:read mcp:write",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "software_id": "my-mcp-server",
        "software_version": "1.4.0"
    })
}

// ---------------------------------------------------------------- real shapes

#[tokio::test]
async fn real_world_documents_resolve() {
    let h = Harness::new().await;
    h.fetcher.serve(
        CLAUDE,
        Ok(json_response(&claude_doc()).with_cache_control("public, max-age=3600")),
    );
    h.fetcher.serve(
        CHATGPT,
        Ok(FetchResponse::new(200, serde_json::to_vec(&chatgpt_doc()).unwrap())
            .with_content_type("application/json; charset=utf-8")),
    );
    h.fetcher.serve(VSCODE, Ok(json_response(&vscode_doc())));
    h.fetcher.serve(SEED, Ok(json_response(&seed_doc())));

    let claude = h.resolve(CLAUDE).await.unwrap();
    assert_eq!(claude.client_id.as_str(), CLAUDE);
    assert_eq!(claude.metadata.client_name.as_deref(), Some("Claude"));
    assert_eq!(claude.metadata.redirect_uris.len(), 2);
    assert!(!claude.is_confidential());
    assert!(claude.metadata.allows_refresh());

    let chatgpt = h.resolve(CHATGPT).await.unwrap();
    // the jwt-bearer grant is filtered, not fatal
    assert_eq!(
        chatgpt.metadata.grant_types,
        [GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert_eq!(
        chatgpt.metadata.token_endpoint_auth_method,
        TokenEndpointAuthMethod::None
    );
    assert!(
        chatgpt
            .metadata
            .match_redirect_uri(Some("https://chatgpt.com/connector_platform_oauth_redirect"))
            .is_some()
    );

    let vscode = h.resolve(VSCODE).await.unwrap();
    assert_eq!(vscode.metadata.application_type, ApplicationType::Native);
    assert_eq!(
        vscode.metadata.grant_types,
        [GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    // the loopback redirect matches on any port (RFC 8252)
    assert!(
        vscode
            .metadata
            .match_redirect_uri(Some("http://127.0.0.1:51234/"))
            .is_some()
    );

    let seed = h.resolve(SEED).await.unwrap();
    assert_eq!(seed.metadata.software_id.as_deref(), Some("my-mcp-server"));

    assert_eq!(h.cache.len(), 4);
    let events = h.events();
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| matches!(e, AuditKind::CimdResolved { from_cache: false, .. }))
    );

    // second resolution of each: from the cache, no new fetch
    for url in [CLAUDE, CHATGPT, VSCODE, SEED] {
        h.resolve(url).await.unwrap();
        assert_eq!(h.fetcher.calls(url), 1, "{url}");
    }
    assert!(matches!(
        h.events().last(),
        Some(AuditKind::CimdResolved { from_cache: true, client_id }) if client_id == SEED
    ));
}

#[tokio::test]
async fn preview_of_a_real_document() {
    let h = Harness::new().await;
    h.fetcher.serve(
        VSCODE,
        Ok(json_response(&vscode_doc()).with_cache_control("max-age=600")),
    );
    let preview = h.preview(VSCODE).await;
    assert!(preview.is_resolved());
    let v: Value = serde_json::from_slice(&preview.to_json()).unwrap();
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["client_id"], VSCODE);
    assert_eq!(v["client_name"], "Visual Studio Code");
    assert_eq!(
        v["redirect_uris"],
        json!(["http://127.0.0.1:33418/", "https://vscode.dev/redirect"])
    );
    assert_eq!(v["token_endpoint_auth_method"], "none");
    assert_eq!(v["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(v["application_type"], "native");
    // the anonymous answer says nothing about the cache (no oracle)
    assert!(
        v.get("from_cache").is_none() && v.get("cache_expires_at").is_none(),
        "{v}"
    );
    let v: Value = serde_json::from_slice(&preview.to_json_with_cache_details()).unwrap();
    assert_eq!(v["from_cache"], false);
    assert_eq!(v["cache_expires_at"], "2026-11-26T12:10:00Z");
    assert_eq!(v["consent"]["client_id_host"], "vscode.dev");
    assert_eq!(v["consent"]["redirect_uri_hosts"], json!(["127.0.0.1", "vscode.dev"]));
    assert_eq!(v["consent"]["all_redirect_uris_loopback"], false);

    // again: from the cache
    let v: Value = serde_json::from_slice(&h.preview(VSCODE).await.to_json_with_cache_details()).unwrap();
    assert_eq!(v["from_cache"], true);
    assert_eq!(h.fetcher.calls(VSCODE), 1);
}

#[tokio::test]
async fn preview_request_errors() {
    let h = Harness::new().await;
    for bad in [&b"not json"[..], b"{}", br#"{"client_id": 5}"#, b"[]"] {
        let e = h.server.preview_cimd(&h.project, bad).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
    }
    let unknown = ProjectId::new("proj_nope").unwrap();
    let e = h
        .server
        .preview_cimd(&unknown, br#"{"client_id":"https://a.example/c"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert_eq!(h.fetcher.total(), 0);
}

// ---------------------------------------------------------------- hostile table

/// One hostile case: a client_id as sent, what the fetcher answers for it,
/// a settings change, and the expected reason (plus HTTP status).
struct Case {
    name: &'static str,
    client_id: String,
    answer: Option<Canned>,
    edit: fn(&mut ProjectSettings),
    reason: &'static str,
    http_status: Option<u16>,
    /// Whether the fetcher may be called at all.
    fetches: bool,
}

const U: &str = "https://app.example.com/client.json";

fn doc_with(patch: Value) -> Value {
    let mut base = json!({
        "client_id": U,
        "client_name": "App",
        "redirect_uris": ["https://app.example.com/cb"]
    });
    let (Value::Object(b), Value::Object(p)) = (&mut base, patch) else {
        unreachable!()
    };
    for (k, v) in p {
        if v.is_null() && k != "client_secret" {
            b.remove(&k);
        } else {
            b.insert(k, v);
        }
    }
    base
}

fn doc_case(name: &'static str, patch: Value, reason: &'static str) -> Case {
    Case {
        name,
        client_id: U.to_owned(),
        answer: Some(Ok(json_response(&doc_with(patch)))),
        edit: |_| {},
        reason,
        http_status: None,
        fetches: true,
    }
}

fn answer_case(name: &'static str, answer: Canned, reason: &'static str, http_status: Option<u16>) -> Case {
    Case {
        name,
        client_id: U.to_owned(),
        answer: Some(answer),
        edit: |_| {},
        reason,
        http_status,
        fetches: true,
    }
}

fn url_case(name: &'static str, client_id: &str, reason: &'static str) -> Case {
    Case {
        name,
        client_id: client_id.to_owned(),
        answer: None,
        edit: |_| {},
        reason,
        http_status: None,
        fetches: false,
    }
}

fn body(status: u16, content_type: Option<&str>, bytes: &[u8]) -> Canned {
    let r = FetchResponse::new(status, bytes.to_vec());
    Ok(match content_type {
        Some(c) => r.with_content_type(c),
        None => r,
    })
}

fn hostile_cases() -> Vec<Case> {
    let good = serde_json::to_vec(&doc_with(json!({}))).unwrap();
    let mut padded = doc_with(json!({}));
    padded["padding"] = json!("x".repeat(5200));
    let padded = serde_json::to_vec(&padded).unwrap();
    vec![
        // URL forms
        url_case("plain http", "http://app.example.com/client.json", "invalid_url"),
        url_case("fragment", "https://app.example.com/client.json#x", "invalid_url"),
        url_case("userinfo", "https://user:pw@app.example.com/client.json", "invalid_url"),
        url_case("dot segment", "https://app.example.com/a/../client.json", "invalid_url"),
        url_case(
            "encoded dot segment",
            "https://app.example.com/a/%2E%2e/client.json",
            "invalid_url",
        ),
        url_case("no path", "https://app.example.com", "invalid_url"),
        url_case(
            "root path under the MCP rule",
            "https://app.example.com/",
            "invalid_url",
        ),
        url_case(
            "query refused by policy",
            "https://app.example.com/c?v=1",
            "invalid_url",
        ),
        url_case("repairable form", "https:app.example.com/client.json", "invalid_url"),
        url_case("backslash", "https://app.example.com\\@evil.example/c", "invalid_url"),
        url_case("whitespace", "https://app.example.com/cli ent.json", "invalid_url"),
        url_case("uppercase scheme", "HTTPS://app.example.com/client.json", "invalid_url"),
        url_case("registered-id form", "client_0123456789abcdef01234567", "invalid_url"),
        url_case("javascript scheme", "javascript:alert(1)//", "invalid_url"),
        // addresses
        url_case("IPv4 loopback", "https://127.0.0.1/client.json", "blocked_address"),
        url_case("private 10/8", "https://10.1.2.3/client.json", "blocked_address"),
        url_case(
            "cloud metadata",
            "https://169.254.169.254/latest/meta-data",
            "blocked_address",
        ),
        url_case("IPv6 loopback", "https://[::1]/client.json", "blocked_address"),
        url_case(
            "IPv4-mapped private",
            "https://[::ffff:c0a8:1]/client.json",
            "blocked_address",
        ),
        // Respelled addresses are refused as URLs before any address check:
        // the string must be written the way the parser reads it.
        url_case(
            "IPv4-mapped private, dotted spelling",
            "https://[::ffff:192.168.0.1]/client.json",
            "invalid_url",
        ),
        url_case(
            "NAT64 of link-local",
            "https://[64:ff9b::a9fe:a9fe]/client.json",
            "blocked_address",
        ),
        url_case("unique local IPv6", "https://[fd00::1]/client.json", "blocked_address"),
        url_case("localhost name", "https://localhost/client.json", "blocked_address"),
        url_case("hex IPv4 loopback", "https://0x7f000001/client.json", "invalid_url"),
        url_case("decimal IPv4 loopback", "https://2130706433/client.json", "invalid_url"),
        url_case(
            "userinfo hiding another host",
            "https://client.example.com@10.0.0.1/client.json",
            "invalid_url",
        ),
        url_case(
            "percent-encoded host",
            "https://client%2eexample.com/client.json",
            "invalid_url",
        ),
        answer_case(
            "DNS rebinding caught by the fetcher",
            Err(FetchError::BlockedAddress {
                address: Some("10.0.0.7".parse().unwrap()),
            }),
            "blocked_address",
            None,
        ),
        // trust policy
        Case {
            edit: |s| s.cimd.denied_hosts = vec![HostPattern::new("*.example.com").unwrap()],
            ..url_case("deny-listed host", U, "policy_denied")
        },
        Case {
            edit: |s| {
                s.cimd.trust = CimdTrust::AllowList {
                    hosts: vec![HostPattern::new("claude.ai").unwrap()],
                }
            },
            ..url_case("not on the allow-list", U, "policy_denied")
        },
        Case {
            edit: |s| s.cimd.require_same_origin_redirect_uris = true,
            ..doc_case(
                "redirect URI on another origin",
                json!({"redirect_uris": ["https://elsewhere.example/cb"]}),
                "policy_denied",
            )
        },
        Case {
            edit: |s| s.cimd_enabled = false,
            ..url_case("CIMD disabled", U, "cimd_disabled")
        },
        // HTTP behaviours
        answer_case(
            "404",
            body(404, Some("application/json"), &good),
            "http_status",
            Some(404),
        ),
        answer_case("500", body(500, Some("text/html"), b"oops"), "http_status", Some(500)),
        answer_case(
            "204",
            body(204, Some("application/json"), b""),
            "http_status",
            Some(204),
        ),
        answer_case(
            "302 returned as a response",
            body(302, None, b""),
            "redirect",
            Some(302),
        ),
        answer_case(
            "redirect reported by the fetcher",
            Err(FetchError::Redirect { status: 307 }),
            "redirect",
            Some(307),
        ),
        answer_case(
            "HTML content type",
            body(200, Some("text/html"), &good),
            "content_type",
            None,
        ),
        answer_case("no content type", body(200, None, &good), "content_type", None),
        answer_case("text/plain", body(200, Some("text/plain"), &good), "content_type", None),
        answer_case(
            "JSONP",
            body(200, Some("application/javascript"), &good),
            "content_type",
            None,
        ),
        answer_case(
            "body over 5120 bytes",
            body(200, Some("application/json"), &padded),
            "too_large",
            None,
        ),
        answer_case(
            "fetcher cut the body",
            Err(FetchError::TooLarge { limit: 5120 }),
            "too_large",
            None,
        ),
        answer_case("timeout", Err(FetchError::Timeout), "timeout", None),
        answer_case(
            "connection refused",
            Err(FetchError::Connect {
                detail: "connection refused".into(),
            }),
            "fetch_failed",
            None,
        ),
        answer_case(
            "bad certificate",
            Err(FetchError::Tls {
                detail: "unknown issuer".into(),
            }),
            "fetch_failed",
            None,
        ),
        // document contents
        answer_case(
            "not JSON",
            body(200, Some("application/json"), b"<html></html>"),
            "invalid_json",
            None,
        ),
        answer_case(
            "JSON array",
            body(200, Some("application/json"), b"[1,2]"),
            "invalid_json",
            None,
        ),
        answer_case(
            "not UTF-8",
            body(200, Some("application/json"), b"{\"client_id\":\"\xff\"}"),
            "invalid_json",
            None,
        ),
        answer_case(
            "truncated JSON",
            body(200, Some("application/json"), &good[..good.len() - 1]),
            "invalid_json",
            None,
        ),
        doc_case("client_id missing", json!({"client_id": null}), "client_id_mismatch"),
        doc_case(
            "client_id of another host",
            json!({"client_id": "https://evil.example/client.json"}),
            "client_id_mismatch",
        ),
        doc_case(
            "client_id with a default port",
            json!({"client_id": "https://app.example.com:443/client.json"}),
            "client_id_mismatch",
        ),
        doc_case(
            "client_id with a trailing slash",
            json!({"client_id": "https://app.example.com/client.json/"}),
            "client_id_mismatch",
        ),
        doc_case(
            "client_id in another case",
            json!({"client_id": "https://APP.example.com/client.json"}),
            "client_id_mismatch",
        ),
        doc_case("client_id not a string", json!({"client_id": 1}), "client_id_mismatch"),
        doc_case("client_secret", json!({"client_secret": "s3cr3t"}), "forbidden_field"),
        doc_case("client_secret null", json!({"client_secret": null}), "forbidden_field"),
        doc_case(
            "client_secret_expires_at",
            json!({"client_secret_expires_at": 0}),
            "forbidden_field",
        ),
        doc_case(
            "client_secret_basic",
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_metadata",
        ),
        doc_case(
            "client_secret_post",
            json!({"token_endpoint_auth_method": "client_secret_post"}),
            "invalid_metadata",
        ),
        doc_case(
            "client_secret_jwt",
            json!({"token_endpoint_auth_method": "client_secret_jwt"}),
            "invalid_metadata",
        ),
        doc_case(
            "private_key_jwt not allowed by the project",
            json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example.com/jwks"}),
            "invalid_metadata",
        ),
        Case {
            edit: |s| s.cimd.allow_private_key_jwt = true,
            ..doc_case(
                "private_key_jwt without keys",
                json!({"token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_metadata",
            )
        },
        doc_case(
            "private key in jwks",
            json!({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"}]}}),
            "invalid_metadata",
        ),
        doc_case("client_name missing", json!({"client_name": null}), "invalid_metadata"),
        doc_case("client_name blank", json!({"client_name": "  "}), "invalid_metadata"),
        doc_case(
            "redirect_uris missing",
            json!({"redirect_uris": null}),
            "invalid_metadata",
        ),
        doc_case("redirect_uris empty", json!({"redirect_uris": []}), "invalid_metadata"),
        doc_case(
            "javascript redirect URI",
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_metadata",
        ),
        doc_case(
            "redirect URI with a fragment",
            json!({"redirect_uris": ["https://app.example.com/cb#x"]}),
            "invalid_metadata",
        ),
        doc_case(
            "plain http redirect URI",
            json!({"redirect_uris": ["http://app.example.com/cb"]}),
            "invalid_metadata",
        ),
        doc_case(
            "data: logo",
            json!({"logo_uri": "data:image/png;base64,AAAA"}),
            "invalid_metadata",
        ),
        doc_case(
            "file: jwks_uri",
            json!({"jwks_uri": "file:///etc/passwd"}),
            "invalid_metadata",
        ),
        doc_case(
            "http client_uri",
            json!({"client_uri": "http://app.example.com"}),
            "invalid_metadata",
        ),
        doc_case(
            "no usable grant type",
            json!({"grant_types": ["client_credentials", "implicit"]}),
            "invalid_metadata",
        ),
        doc_case(
            "no usable response type",
            json!({"response_types": ["token"]}),
            "invalid_metadata",
        ),
        doc_case(
            "redirect_uris not an array",
            json!({"redirect_uris": "https://app.example.com/cb"}),
            "invalid_metadata",
        ),
        doc_case(
            "unknown application_type",
            json!({"application_type": "desktop"}),
            "invalid_metadata",
        ),
    ]
}

#[tokio::test]
async fn hostile_table_is_refused_with_the_expected_reason_and_nothing_cached() {
    let cases = hostile_cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for case in cases {
        let fetcher = FakeFetcher::default();
        if let Some(answer) = case.answer.clone() {
            fetcher.serve(&case.client_id, answer);
        }
        let h = Harness::with_fetcher(fetcher, case.edit).await;
        let preview = h.preview(&case.client_id).await;
        let CimdPreview::Failed(failed) = &preview else {
            panic!("{}: resolved but should fail with {}", case.name, case.reason);
        };
        assert_eq!(failed.reason, case.reason, "{}", case.name);
        assert_eq!(failed.http_status, case.http_status, "{}", case.name);
        assert_eq!(failed.error, ErrorCode::InvalidClient, "{}", case.name);
        assert!(h.cache.is_empty(), "{}: something was cached", case.name);
        if !case.fetches {
            assert_eq!(h.fetcher.total(), 0, "{}: fetched", case.name);
        }
        // every failure that reached the resolver is audited with its reason
        let events = h.events();
        assert!(
            !events.iter().any(|e| matches!(e, AuditKind::CimdResolved { .. })),
            "{}",
            case.name
        );
        if let Some(AuditKind::CimdFetchFailed {
            reason, http_status, ..
        }) = events.last()
        {
            assert_eq!(reason, case.reason, "{}", case.name);
            assert_eq!(*http_status, case.http_status, "{}", case.name);
        } else {
            // only URLs that are not https URLs at all stop before the resolver
            assert_eq!(case.reason, "invalid_url", "{}: no audit event", case.name);
        }
        // a second attempt within the negative TTL answers the same
        // failure without fetching; after it, it fetches again; the
        // document itself is never cached
        if case.fetches {
            let before = h.fetcher.total();
            let again = h.preview(&case.client_id).await;
            assert!(!again.is_resolved(), "{}", case.name);
            assert_eq!(h.fetcher.total(), before, "{}: failure not remembered", case.name);
            h.clock.advance(Duration::seconds(11));
            let _ = h.preview(&case.client_id).await;
            assert_eq!(h.fetcher.total(), before + 1, "{}: failure cached too long", case.name);
            assert!(h.cache.is_empty(), "{}", case.name);
        }
    }
}

#[tokio::test]
async fn no_fetcher_means_no_cimd() {
    let audit = Arc::new(MemoryAuditLog::new());
    let server = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com").unwrap())
        .audit(audit.clone())
        .without_metadata_fetcher()
        .build();
    assert!(!server.has_metadata_fetcher());
    let project = ProjectId::new("proj_acme_prod").unwrap();
    let settings = ProjectSettings::default().set_mcp_enabled(true).0;
    server.put_project(&project, settings.clone()).await.unwrap();
    // SPEC-CHECKLIST section 1: advertised only with a fetcher configured
    let m = server.metadata(&project).await.unwrap();
    assert!(settings.cimd_enabled);
    assert!(!m.client_id_metadata_document_supported);
    let e = server
        .resolve_cimd_client(&project, &settings, &ClientIdUrl::parse(CLAUDE).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "fetcher_unavailable");
    assert!(matches!(
        audit.recent(&project, 1).last().map(|e| &e.kind),
        Some(AuditKind::CimdFetchFailed { reason, .. }) if reason == "fetcher_unavailable"
    ));

    // with a fetcher, and CIMD enabled, it is advertised; disabled, it is not
    let with = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com").unwrap())
        .metadata_fetcher(Arc::new(FakeFetcher::default()))
        .build();
    with.put_project(&project, settings.clone()).await.unwrap();
    assert!(
        with.metadata(&project)
            .await
            .unwrap()
            .client_id_metadata_document_supported
    );
    let mut off = settings;
    off.cimd_enabled = false;
    with.put_project(&project, off).await.unwrap();
    assert!(
        !with
            .metadata(&project)
            .await
            .unwrap()
            .client_id_metadata_document_supported
    );
}

// ---------------------------------------------------------------- single flight

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_thousand_concurrent_resolutions_share_one_fetch() {
    let h = Arc::new(Harness::with_fetcher(FakeFetcher::with_delay(StdDuration::from_millis(200)), |_| {}).await);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.resolve(U).await }));
    }
    for t in tasks {
        let client = t.await.unwrap().unwrap();
        assert_eq!(client.client_id.as_str(), U);
    }
    assert_eq!(h.fetcher.calls(U), 1);
    assert_eq!(h.fetcher.total(), 1);
    assert_eq!(h.cache.len(), 1);
    let resolved = h
        .events()
        .iter()
        .filter(|e| matches!(e, AuditKind::CimdResolved { .. }))
        .count();
    assert_eq!(resolved, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hundred_distinct_urls_cause_one_hundred_fetches() {
    let h = Arc::new(Harness::with_fetcher(FakeFetcher::with_delay(StdDuration::from_millis(100)), |_| {}).await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        for _ in 0..10 {
            let h = h.clone();
            let url = format!("https://app{i}.example.com/client.json");
            tasks.push(tokio::spawn(async move { h.resolve(&url).await }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(h.fetcher.total(), 100);
    for i in 0..100 {
        assert_eq!(h.fetcher.calls(&format!("https://app{i}.example.com/client.json")), 1);
    }
    assert_eq!(h.cache.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_share_one_fetch_and_are_not_cached() {
    let fetcher = FakeFetcher::with_delay(StdDuration::from_millis(100));
    fetcher.serve(U, body(503, Some("text/html"), b"busy"));
    let h = Arc::new(Harness::with_fetcher(fetcher, |_| {}).await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.resolve(U).await }));
    }
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(e.http_status(), Some(503));
    }
    assert_eq!(h.fetcher.total(), 1);
    assert!(h.cache.is_empty());
    // fixed at the source: within the 10 s negative TTL the failure is
    // answered without a fetch; after it, the next resolution fetches
    // again and succeeds
    h.fetcher.serve(U, Ok(json_response(&doc_with(json!({})))));
    assert_eq!(h.resolve(U).await.unwrap_err().http_status(), Some(503));
    assert_eq!(h.fetcher.total(), 1);
    h.clock.advance(Duration::seconds(10));
    h.resolve(U).await.unwrap();
    assert_eq!(h.fetcher.total(), 2);
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn cache_expiry_follows_the_headers_within_the_bounds() {
    let h = Harness::new().await;
    h.fetcher.serve(
        U,
        Ok(json_response(&doc_with(json!({}))).with_cache_control("max-age=1800")),
    );
    h.resolve(U).await.unwrap();
    h.clock.advance(Duration::minutes(29));
    h.resolve(U).await.unwrap();
    assert_eq!(h.fetcher.calls(U), 1, "still fresh");
    h.clock.advance(Duration::minutes(1));
    h.resolve(U).await.unwrap();
    assert_eq!(h.fetcher.calls(U), 2, "expired at 30 minutes");

    // max-age=0 is raised to the 5 minute minimum
    let short = "https://short.example.com/client.json";
    h.fetcher.serve(
        short,
        Ok(json_response(
            &json!({"client_id": short, "client_name": "S", "redirect_uris": ["https://short.example.com/cb"]}),
        )
        .with_cache_control("max-age=0")),
    );
    h.resolve(short).await.unwrap();
    h.clock.advance(Duration::minutes(4));
    h.resolve(short).await.unwrap();
    assert_eq!(h.fetcher.calls(short), 1);
    h.clock.advance(Duration::minutes(1));
    h.resolve(short).await.unwrap();
    assert_eq!(h.fetcher.calls(short), 2);

    // a year is cut to the 24 hour maximum
    let long = "https://long.example.com/client.json";
    h.fetcher.serve(
        long,
        Ok(json_response(
            &json!({"client_id": long, "client_name": "L", "redirect_uris": ["https://long.example.com/cb"]}),
        )
        .with_cache_control("max-age=31536000")),
    );
    h.resolve(long).await.unwrap();
    h.clock.advance(Duration::hours(23));
    h.resolve(long).await.unwrap();
    assert_eq!(h.fetcher.calls(long), 1);
    h.clock.advance(Duration::hours(1));
    h.resolve(long).await.unwrap();
    assert_eq!(h.fetcher.calls(long), 2);
}

#[tokio::test]
async fn no_store_documents_are_fetched_every_time() {
    let h = Harness::new().await;
    for (i, cc) in ["no-store", "no-cache", "private, max-age=600"].into_iter().enumerate() {
        let url = format!("https://n{i}.example.com/client.json");
        h.fetcher.serve(
            &url,
            Ok(json_response(
                &json!({"client_id": url, "client_name": "N", "redirect_uris": ["https://n.example.com/cb"]}),
            )
            .with_cache_control(cc)),
        );
        h.resolve(&url).await.unwrap();
        h.resolve(&url).await.unwrap();
        assert_eq!(h.fetcher.calls(&url), 2, "{cc}");
        let v: Value = serde_json::from_slice(&h.preview(&url).await.to_json_with_cache_details()).unwrap();
        assert_eq!(v["cache_expires_at"], Value::Null, "{cc}");
    }
    assert!(h.cache.is_empty());
}

#[tokio::test]
async fn a_cached_document_is_rechecked_against_the_current_policy() {
    let mut h = Harness::new().await;
    let jwt = "https://jwt.example.com/client.json";
    h.fetcher.serve(
        jwt,
        Ok(json_response(&json!({
            "client_id": jwt, "client_name": "J", "redirect_uris": ["https://jwt.example.com/cb"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://jwt.example.com/jwks"
        }))),
    );
    h.settings.cimd.allow_private_key_jwt = true;
    let c = h.resolve(jwt).await.unwrap();
    assert!(c.is_confidential());
    h.fetcher.serve(U, Ok(json_response(&doc_with(json!({})))));
    h.resolve(U).await.unwrap();
    assert_eq!(h.cache.len(), 2);

    // the project stops accepting confidential CIMD clients: the cached
    // document is refused (and evicted) without a fetch
    h.settings.cimd.allow_private_key_jwt = false;
    assert_eq!(h.resolve(jwt).await.unwrap_err().reason(), "invalid_metadata");
    assert_eq!(h.fetcher.calls(jwt), 1);
    assert_eq!(h.cache.len(), 1);

    // the project deny-lists the host of a cached document
    h.settings.cimd.denied_hosts = vec![HostPattern::new("app.example.com").unwrap()];
    assert_eq!(h.resolve(U).await.unwrap_err().reason(), "policy_denied");
    // ... or switches to an allow-list without it
    h.settings.cimd.denied_hosts.clear();
    h.settings.cimd.trust = CimdTrust::AllowList {
        hosts: vec![HostPattern::new("claude.ai").unwrap()],
    };
    assert_eq!(h.resolve(U).await.unwrap_err().reason(), "policy_denied");
    // ... or turns CIMD off
    h.settings.cimd = CimdPolicy::default();
    h.settings.cimd_enabled = false;
    assert_eq!(h.resolve(U).await.unwrap_err().reason(), "cimd_disabled");
    h.settings.cimd_enabled = true;
    // ... or requires same-origin redirect URIs (U's are same-origin)
    h.settings.cimd.require_same_origin_redirect_uris = true;
    h.resolve(U).await.unwrap();
    assert_eq!(h.fetcher.calls(U), 1);
}

#[tokio::test]
async fn cache_entries_are_scoped_by_project() {
    let h = Harness::new().await;
    h.resolve(U).await.unwrap();
    let other = ProjectId::new("proj_other").unwrap();
    let url = ClientIdUrl::parse(U).unwrap();
    h.server.resolve_cimd_client(&other, &h.settings, &url).await.unwrap();
    assert_eq!(h.fetcher.calls(U), 2);
    assert_eq!(h.cache.len(), 2);
}

#[tokio::test]
async fn project_policy_relaxations_are_honoured() {
    let h = Harness::with_fetcher(FakeFetcher::default(), |s| {
        s.cimd.url_policy.allow_root_path = true;
        s.cimd.url_policy.allow_query = true;
    })
    .await;
    assert!(h.preview("https://root.example.com/").await.is_resolved());
    assert!(h.preview("https://q.example.com/c?v=2").await.is_resolved());
}

#[tokio::test]
async fn settings_with_inconsistent_cimd_bounds_are_refused() {
    let h = Harness::new().await;
    let mut s = h.settings.clone();
    s.cimd.cache_min_ttl = Duration::hours(2);
    s.cimd.cache_max_ttl = Duration::hours(1);
    assert!(h.server.put_project(&h.project, s).await.is_err());
}

#[tokio::test]
async fn fetches_per_host_are_rate_limited_and_refused_fetches_are_audited() {
    let h = Harness::new().await;
    // One directory per URL: the per-directory budget is tested apart.
    let url = |i: usize| format!("https://flood.example.com/{i}/c.json");
    let mut limited = 0;
    for i in 0..40 {
        match h.resolve(&url(i)).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.reason(), "rate_limited");
                limited += 1;
            }
        }
    }
    assert_eq!(h.fetcher.total(), 30, "a burst of 30 per host");
    assert_eq!(limited, 10);
    // Another host is unaffected, and cached documents are still served.
    assert!(h.resolve("https://other.example.com/client.json").await.is_ok());
    assert!(h.resolve(&url(0)).await.is_ok());
    assert_eq!(h.fetcher.total(), 31);
    // Time refills the bucket: one fetch every 2 seconds.
    h.clock.advance(Duration::seconds(4));
    assert!(h.resolve(&url(30)).await.is_ok());
    assert!(h.resolve(&url(31)).await.is_ok());
    assert_eq!(h.resolve(&url(32)).await.unwrap_err().reason(), "rate_limited");
    let limited_events = h
        .events()
        .iter()
        .filter(|e| matches!(e, AuditKind::CimdFetchFailed { reason, .. } if reason == "rate_limited"))
        .count();
    assert_eq!(limited_events, 11);
}

// ---------------------------------------------------------------- abuse (issue 18)

impl Harness {
    async fn resolve_from(
        &self,
        url: &str,
        source: &RequestSource,
    ) -> Result<authio_mcp::client::Client, authio_mcp::cimd::CimdError> {
        let url = ClientIdUrl::try_from(url.to_owned()).unwrap();
        self.server
            .resolve_cimd_client_from(&self.project, &self.settings, &url, Some(source))
            .await
    }
}

fn ip(i: u8) -> RequestSource {
    RequestSource::from_ip(std::net::IpAddr::from([198, 51, 100, i]))
}

#[tokio::test]
async fn junk_from_many_sources_spends_first_fetches_only_and_the_known_client_revalidates() {
    let h = Harness::new().await;
    // the real client signed in once; its document has expired
    h.fetcher.serve(U, Ok(json_response(&doc_with(json!({})))));
    h.resolve(U).await.unwrap();
    h.clock.advance(Duration::hours(2));
    // junk from 10 sources, one directory each: the host's first-fetch
    // burst (30) is spent, the 31st is refused
    let mut limited = 0;
    for i in 0..40u8 {
        let junk = format!("https://app.example.com/junk{i}/c.json");
        h.fetcher.serve(&junk, body(404, None, b""));
        if let Err(e) = h.resolve_from(&junk, &ip(i % 10)).await
            && e.reason() == "rate_limited"
        {
            limited += 1;
        }
    }
    assert_eq!(limited, 10);
    let before = h.fetcher.calls(U);
    h.resolve_from(U, &ip(200)).await.unwrap();
    assert_eq!(h.fetcher.calls(U), before + 1, "revalidated, not served stale");
    // a source that spent its first fetches (10) is refused; another is not
    let s = ip(1);
    let mut refused = 0;
    for k in 0..10 {
        let url = format!("https://new{k}.example.com/c.json");
        refused += usize::from(h.resolve_from(&url, &s).await.is_err());
    }
    assert!(refused > 0 && refused < 10, "{refused}");
    assert!(
        h.resolve_from("https://another.example.com/c.json", &ip(99))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn previews_have_their_own_budget() {
    let h = Harness::new().await;
    for i in 0..12 {
        let _ = h.preview(&format!("https://p{i}.example.com/c.json")).await;
    }
    let refused = h.preview("https://p99.example.com/c.json").await;
    let v: Value = serde_json::from_slice(&refused.to_json()).unwrap();
    assert_eq!(v["reason"], "rate_limited");
    // first fetches by authorization requests are untouched
    assert!(h.resolve("https://fresh.example.com/c.json").await.is_ok());
}

#[tokio::test]
async fn stale_documents_are_served_within_the_grace_when_the_host_is_busy() {
    let h = Harness::new().await;
    h.fetcher.serve(
        U,
        Ok(json_response(&doc_with(json!({}))).with_cache_control("max-age=600")),
    );
    h.resolve(U).await.unwrap();
    // expired 30 minutes ago, host answers 503: the stale document serves
    h.clock.advance(Duration::minutes(40));
    h.fetcher.serve(U, body(503, None, b""));
    assert!(h.resolve(U).await.is_ok());
    assert_eq!(h.fetcher.calls(U), 2);
    // past the grace (1 hour after expiry): the failure shows
    h.clock.advance(Duration::minutes(31));
    assert_eq!(h.resolve(U).await.unwrap_err().http_status(), Some(503));
    // and a definitive answer (404) ends the stale use at once
    let h = Harness::new().await;
    h.fetcher.serve(U, Ok(json_response(&doc_with(json!({})))));
    h.resolve(U).await.unwrap();
    h.clock.advance(Duration::minutes(6));
    h.fetcher.serve(U, body(404, None, b""));
    assert_eq!(h.resolve(U).await.unwrap_err().http_status(), Some(404));
    assert!(h.cache.is_empty());
    // a document that validated before is never negatively cached: fixed,
    // it is fetched again at once
    h.fetcher.serve(U, Ok(json_response(&doc_with(json!({})))));
    assert!(h.resolve(U).await.is_ok());
}

#[tokio::test]
async fn stale_documents_are_served_when_the_revalidation_budget_is_spent() {
    let fetcher = FakeFetcher::default();
    let h = Harness::with_fetcher(fetcher, |_| {}).await;
    let server = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com").unwrap())
        .audit(h.audit.clone())
        .clock(h.clock.clone())
        .metadata_fetcher(h.fetcher.clone())
        .cimd_cache(h.cache.clone())
        .cimd_fetch_limits(FetchLimits::default().revalidation(1, Duration::hours(1)))
        .build();
    server.put_project(&h.project, h.settings.clone()).await.unwrap();
    let a = ClientIdUrl::parse("https://a.example.com/c.json").unwrap();
    let b = ClientIdUrl::parse("https://a.example.com/d.json").unwrap();
    for u in [&a, &b] {
        server.resolve_cimd_client(&h.project, &h.settings, u).await.unwrap();
    }
    h.clock.advance(Duration::minutes(6));
    // one revalidation for the host: a fetches, b is served stale
    server.resolve_cimd_client(&h.project, &h.settings, &a).await.unwrap();
    server.resolve_cimd_client(&h.project, &h.settings, &b).await.unwrap();
    assert_eq!(h.fetcher.calls(a.as_str()), 2);
    assert_eq!(h.fetcher.calls(b.as_str()), 1);
}

/// A stale document served while the host is busy is re-validated under
/// the CURRENT effective policy, strict mode included, exactly like a
/// fresh one: strict mode refuses a private-use redirect scheme on every
/// path that yields a client.
#[tokio::test]
async fn stale_documents_are_rechecked_under_strict_mode() {
    let mut h = Harness::new().await;
    let doc = doc_with(json!({"redirect_uris": ["cursor://anysphere.cursor-retrieval/oauth/callback"]}));
    h.fetcher
        .serve(U, Ok(json_response(&doc).with_cache_control("max-age=600")));
    h.resolve(U).await.unwrap();
    // The fresh cached path refuses it under strict mode...
    h.settings.strict_mode = true;
    assert!(h.resolve(U).await.is_err(), "fresh cache, strict mode");
    h.settings.strict_mode = false;
    assert!(h.resolve(U).await.is_ok());
    // ... and so does the stale path (expired, the host busy).
    h.clock.advance(Duration::minutes(40));
    h.fetcher.serve(U, body(503, None, b""));
    assert!(h.resolve(U).await.is_ok(), "stale, default policy");
    h.settings.strict_mode = true;
    let e = h.resolve(U).await.unwrap_err();
    assert_ne!(
        e.http_status(),
        Some(503),
        "refused by the policy, not the fetch: {e:?}"
    );
}

/// PKCE with S256 is enforced on the metadata-document path exactly as on
/// the registered-client path (a peer skipped it there): no challenge, a
/// `plain` one, or one without its method is an error redirect with
/// `iss` and no code.
#[tokio::test]
async fn a_metadata_document_client_gets_no_code_without_s256_pkce() {
    use authio_mcp::server::AuthorizeOutcome;
    let h = Harness::new().await;
    h.fetcher.serve(U, Ok(json_response(&doc_with(json!({})))));
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let query = |extra: &[(&str, &str)]| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("response_type", "code")
            .append_pair("client_id", U)
            .append_pair("redirect_uri", "https://app.example.com/cb")
            .append_pair("state", "st4te");
        for (k, v) in extra {
            s.append_pair(k, v);
        }
        s.finish()
    };
    let cases: [(&str, Vec<(&str, &str)>); 3] = [
        ("no challenge", vec![]),
        (
            "plain",
            vec![("code_challenge", challenge), ("code_challenge_method", "plain")],
        ),
        ("no method", vec![("code_challenge", challenge)]),
    ];
    for (why, extra) in cases {
        match h.server.authorize(&h.project, &query(&extra)).await {
            AuthorizeOutcome::Redirect(location) => {
                let url = url::Url::parse(&location).unwrap();
                let get = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
                assert!(location.starts_with("https://app.example.com/cb?"), "{why}: {location}");
                assert_eq!(get("error").as_deref(), Some("invalid_request"), "{why}");
                assert!(get("iss").is_some(), "{why}");
                assert!(get("code").is_none(), "{why}");
            }
            other => panic!("{why}: expected an error redirect, got {other:?}"),
        }
    }
    // The same client with S256 is fine.
    let ok = query(&[("code_challenge", challenge), ("code_challenge_method", "S256")]);
    assert!(matches!(
        h.server.authorize(&h.project, &ok).await,
        AuthorizeOutcome::Pending(_)
    ));
}
