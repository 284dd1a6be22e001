//! End-to-end over real loopback sockets: the example authorization
//! server and the example MCP server (rmcp, Streamable HTTP) on ephemeral
//! ports, driven the way an MCP client drives them: 401 challenge,
//! protected resource metadata, authorization server discovery, DCR, PKCE
//! for this resource, then `initialize` and `tools/call whoami`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;

#[path = "../examples/mcp_server/app.rs"]
#[allow(dead_code)]
mod mcp_app;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authio_mcp::discovery::Issuer;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::project::{AccessTokenFormat, ProjectId};
use authio_mcp::resource::ResourceUri;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const INTROSPECT: &str = "introspect-secret";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const ACCEPT: &str = "application/json, text/event-stream";
/// A second MCP server of the project.
const OTHER_RESOURCE: &str = "https://other.example.com/mcp";

struct Running {
    /// The authorization server's base URL (its issuer).
    auth: String,
    /// The MCP server's resource URL, `http://127.0.0.1:<port>/mcp`.
    resource: String,
    http: reqwest::Client,
    /// Requests the authorization server got at its introspection endpoint.
    introspections: Arc<AtomicUsize>,
    /// Requests the authorization server got at its JWKS.
    jwks_fetches: Arc<AtomicUsize>,
}

async fn start() -> Running {
    start_with(false).await
}

/// Both servers; with `jwt`, the authorization server issues RFC 9068
/// access tokens and the MCP server verifies them locally against the
/// JWKS it discovered.
async fn start_with(jwt: bool) -> Running {
    let mcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", mcp_listener.local_addr().unwrap());
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = format!("http://{}", as_listener.local_addr().unwrap());
    let issuer = Issuer::new_allowing_loopback_http_for_development(auth.clone()).unwrap();

    // The authorization server's default resource is the MCP server.
    let config = app::Config {
        issuer: issuer.clone(),
        admin_token: ADMIN.into(),
        auto_approve: true,
        allow_loopback_cimd: false,
        cimd_root_cert: None,
        dcr_mode: None,
        resource: ResourceUri::parse(resource.clone()).unwrap(),
        introspection_token: INTROSPECT.into(),
        upstream: None,
    };
    let as_app = app::App::new(config).await.unwrap();
    // The project serves a second MCP server: tokens for it exist, and the
    // first must refuse them (no passthrough).
    as_app
        .endpoints
        .server()
        .edit_project(&ProjectId::new(app::DEMO_PROJECT).unwrap(), |mut s| {
            s.resources.upsert(
                authio_mcp::project::KnownResource::new(
                    ResourceUri::parse(OTHER_RESOURCE).unwrap(),
                    "Other MCP server",
                )
                .unwrap(),
            );
            s
        })
        .await
        .unwrap();
    if jwt {
        as_app
            .endpoints
            .server()
            .edit_project(&ProjectId::new(app::DEMO_PROJECT).unwrap(), |mut s| {
                s.access_token_format = AccessTokenFormat::Jwt;
                s.access_token_ttl = time::Duration::minutes(5);
                s
            })
            .await
            .unwrap();
    }
    let (introspections, jwks_fetches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counters = (introspections.clone(), jwks_fetches.clone());
    let as_router = as_app.router().await.unwrap().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let (i, j) = counters.clone();
            async move {
                match req.uri().path() {
                    "/oauth2/introspect" => i.fetch_add(1, Ordering::SeqCst),
                    "/.well-known/jwks.json" => j.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
                next.run(req).await
            }
        },
    ));
    tokio::spawn(async move { axum::serve(as_listener, as_router).await.unwrap() });

    let mut mcp_config = mcp_app::Config::new(
        ResourceUri::parse(resource.clone()).unwrap(),
        issuer.clone(),
        INTROSPECT.into(),
    );
    if jwt {
        let jwks_uri = mcp_app::discover_jwks_uri(&issuer).await.unwrap().expect("a jwks_uri");
        assert_eq!(jwks_uri, format!("{auth}/.well-known/jwks.json"));
        mcp_config = mcp_config.verify(mcp_app::Verify::Jwt { jwks_uri });
    }
    let mcp_router = mcp_app::router(&mcp_config).unwrap();
    tokio::spawn(async move { axum::serve(mcp_listener, mcp_router).await.unwrap() });

    // reqwest is built without a default TLS crypto provider; tests install ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    Running {
        auth,
        resource,
        http,
        introspections,
        jwks_fetches,
    }
}

/// One JSON-RPC message of a response that is either JSON or SSE-framed.
fn rpc_message(content_type: &str, body: &str) -> Value {
    if content_type.starts_with("text/event-stream") {
        // Events are separated by blank lines; a `data:` line carries JSON.
        // Skip priming events with empty data and pick the response.
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC response in {body:?}"))
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
    }
}

struct Rpc {
    status: StatusCode,
    session: Option<String>,
    www_authenticate: Option<String>,
    message: Option<Value>,
}

impl Running {
    fn as_url(&self, path: &str) -> String {
        format!("{}{path}", self.auth)
    }

    async fn mcp(&self, token: Option<&str>, session: Option<&str>, body: &Value) -> Rpc {
        let mut req = self
            .http
            .post(&self.resource)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let session = header("mcp-session-id");
        let www_authenticate = header("www-authenticate");
        let content_type = header("content-type").unwrap_or_default();
        let text = r.text().await.unwrap();
        let message = (status == StatusCode::OK).then(|| rpc_message(&content_type, &text));
        Rpc {
            status,
            session,
            www_authenticate,
            message,
        }
    }

    async fn register_client(&self, registration_endpoint: &str) -> String {
        let r = self
            .http
            .post(self.as_url("/admin/projects/proj_demo/iats"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(json!({"max_uses": 1}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let iat = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
        let body = json!({"redirect_uris": [REDIRECT], "client_name": "MCP e2e", "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"]});
        let r = self
            .http
            .post(registration_endpoint)
            .bearer_auth(iat)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["client_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The authorization code flow with PKCE (auto-approved), for
    /// `resource` and `scope`; returns the access token.
    async fn access_token(&self, as_meta: &Value, client_id: &str, resource: &str, scope: &str) -> String {
        let verifier = CodeVerifier::from_random(&[9; 32]);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "s1")
            .append_pair("resource", resource)
            .append_pair("scope", scope)
            .finish();
        let authorize = as_meta["authorization_endpoint"].as_str().unwrap();
        let r = self.http.get(format!("{authorize}?{query}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.text().await);
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_verifier", verifier.as_str())
            .append_pair("resource", resource)
            .finish();
        let r = self
            .http
            .post(as_meta["token_endpoint"].as_str().unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let t: Value = r.json().await.unwrap();
        t["access_token"].as_str().unwrap().to_owned()
    }
}

fn initialize(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "authio-mcp-e2e", "version": "0.1.0"}
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_client_journey() {
    let s = start().await;
    let prm_url = s.resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp");

    // 1. No token: 401 pointing at the protected resource metadata.
    let r = s.mcp(None, None, &initialize(1)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.www_authenticate.as_deref(),
        Some(format!("Bearer resource_metadata=\"{prm_url}\"").as_str())
    );

    // 2. The metadata names the authorization server.
    let prm: Value = s.http.get(&prm_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], s.resource);
    assert_eq!(prm["authorization_servers"], json!([s.auth]));
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    assert_eq!(prm["scopes_supported"], json!(["mcp:read", "mcp:write"]));

    // 3. The authorization server's metadata, as a client finds it.
    let issuer =
        Issuer::new_allowing_loopback_http_for_development(prm["authorization_servers"][0].as_str().unwrap()).unwrap();
    let as_meta: Value = s
        .http
        .get(issuer.metadata_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_meta["code_challenge_methods_supported"], json!(["S256"]));

    // 4. Register, sign in with PKCE for this resource.
    let client_id = s
        .register_client(as_meta["registration_endpoint"].as_str().unwrap())
        .await;
    let token = s.access_token(&as_meta, &client_id, &s.resource, "mcp:read").await;

    // 5. initialize, initialized, tools/list, tools/call whoami.
    let r = s.mcp(Some(&token), None, &initialize(1)).await;
    assert_eq!(r.status, 200, "{:?}", r.message);
    let init = r.message.unwrap();
    assert_eq!(init["id"], 1);
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    let session = r.session;
    let notified = s
        .mcp(
            Some(&token),
            session.as_deref(),
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert_eq!(notified.status, 202);
    let r = s
        .mcp(
            Some(&token),
            session.as_deref(),
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let tools = r.message.unwrap();
    assert_eq!(tools["result"]["tools"][0]["name"], "whoami", "{tools}");
    let r = s
        .mcp(
            Some(&token),
            session.as_deref(),
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let call = r.message.unwrap();
    assert_eq!(call["id"], 3);
    assert_ne!(call["result"]["isError"], true, "{call}");
    let text = call["result"]["content"][0]["text"].as_str().unwrap();
    let who: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        who,
        json!({"subject": "user_demo", "client_id": client_id, "scopes": ["mcp:read"]})
    );

    // 6. A resource the project does not know gets no token at all...
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair(
            "code_challenge",
            CodeChallenge::s256(&CodeVerifier::from_random(&[9; 32])).as_str(),
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", "https://unknown.example.com/mcp")
        .finish();
    let authorize = as_meta["authorization_endpoint"].as_str().unwrap();
    let r = s.http.get(format!("{authorize}?{query}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.contains("error=invalid_target"), "{location}");
    //    ...and a token issued for another resource the project serves is
    //    refused by this one (no passthrough), even on an established
    //    session.
    let other = s.access_token(&as_meta, &client_id, OTHER_RESOURCE, "mcp:read").await;
    for session in [None, session.as_deref()] {
        let r = s.mcp(Some(&other), session, &initialize(4)).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.www_authenticate.as_deref(),
            Some(
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"the access token was not issued for this \
                     resource\", resource_metadata=\"{prm_url}\""
                )
                .as_str()
            )
        );
    }

    // 7. Missing scope: 403 naming the scope needed.
    let write_only = s.access_token(&as_meta, &client_id, &s.resource, "mcp:write").await;
    let r = s.mcp(Some(&write_only), None, &initialize(5)).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.www_authenticate.as_deref(),
        Some(
            format!("Bearer error=\"insufficient_scope\", scope=\"mcp:read\", resource_metadata=\"{prm_url}\"")
                .as_str()
        )
    );

    // 8. A made-up token and a token in the query string.
    let r = s.mcp(Some("not-a-real-token"), None, &initialize(6)).await;
    assert_eq!(r.status, 401);
    assert!(
        r.www_authenticate
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    let r = s
        .http
        .post(format!("{}?access_token={token}", s.resource))
        .header("accept", ACCEPT)
        .header("content-type", "application/json")
        .body(initialize(7).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_request\"")
    );
    // A token in a form body.
    let r = s
        .http
        .post(&s.resource)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Opaque tokens: the MCP server asked the authorization server (the
    // counter the JWT test relies on does count).
    assert!(s.introspections.load(Ordering::SeqCst) > 0);
    assert_eq!(s.jwks_fetches.load(Ordering::SeqCst), 0);
}

/// The MCP server verifies JWT access tokens locally: every call is
/// authorized without one introspection request, with one JWKS fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_access_tokens_are_verified_without_introspection() {
    let s = start_with(true).await;
    let issuer = Issuer::new_allowing_loopback_http_for_development(s.auth.clone()).unwrap();
    let as_meta: Value = s
        .http
        .get(issuer.metadata_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = s
        .register_client(as_meta["registration_endpoint"].as_str().unwrap())
        .await;
    let token = s.access_token(&as_meta, &client_id, &s.resource, "mcp:read").await;
    assert_eq!(token.split('.').count(), 3, "a JWS compact serialization");

    let r = s.mcp(Some(&token), None, &initialize(1)).await;
    assert_eq!(r.status, 200, "{:?}", r.message);
    let session = r.session;
    for id in 2..5 {
        let r = s
            .mcp(
                Some(&token),
                session.as_deref(),
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
            )
            .await;
        assert_eq!(r.status, 200);
        let text = r.message.unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let who: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(who["client_id"], client_id.as_str());
        assert_eq!(who["subject"], "user_demo");
    }
    // A JWT for another resource, and a forged one, are refused locally too.
    let other = s.access_token(&as_meta, &client_id, OTHER_RESOURCE, "mcp:read").await;
    assert_eq!(s.mcp(Some(&other), None, &initialize(9)).await.status, 401);
    let mut forged = token.clone();
    forged.push('A');
    assert_eq!(s.mcp(Some(&forged), None, &initialize(10)).await.status, 401);

    assert_eq!(s.introspections.load(Ordering::SeqCst), 0, "no introspection call");
    assert_eq!(
        s.jwks_fetches.load(Ordering::SeqCst),
        1,
        "one JWKS fetch, then the cache"
    );
}

#[tokio::test]
async fn metadata_endpoint_is_public_and_cors_enabled() {
    let s = start().await;
    let prm_url = s.resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp");
    let r = s.http.get(&prm_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = s.http.request(reqwest::Method::OPTIONS, &prm_url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = s.http.post(&prm_url).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn introspection_failures_are_never_active() {
    // The MCP server pointed at an authorization server that refuses its
    // credential: every token is refused with 500, never let through.
    let s = start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let config = mcp_app::Config::new(
        ResourceUri::parse(resource.clone()).unwrap(),
        Issuer::new_allowing_loopback_http_for_development(s.auth.clone()).unwrap(),
        "wrong-credential".into(),
    );
    let router = mcp_app::router(&config).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let r = s
        .http
        .post(&resource)
        .bearer_auth("anything")
        .header("accept", ACCEPT)
        .header("content-type", "application/json")
        .body(initialize(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("www-authenticate").is_none());
}

#[tokio::test]
async fn introspection_verifier_caches_active_results_only() {
    use authio_mcp::net::{IntrospectionVerifier, IntrospectionVerifierConfig};
    use authio_mcp::resource_server::{ResourceServerError, TokenVerifier};
    use authio_mcp::secret::SecretString;

    let s = start().await;
    let as_meta: Value = s
        .http
        .get(s.as_url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = s
        .register_client(as_meta["registration_endpoint"].as_str().unwrap())
        .await;
    let token = s.access_token(&as_meta, &client_id, &s.resource, "mcp:read").await;
    let endpoint = s.as_url("/oauth2/introspect");
    let cached = IntrospectionVerifier::new(endpoint.clone(), SecretString::from(INTROSPECT)).unwrap();
    let mut no_cache_config = IntrospectionVerifierConfig::default();
    no_cache_config.max_entries = 0;
    let uncached = IntrospectionVerifier::new(endpoint, SecretString::from(INTROSPECT))
        .unwrap()
        .config(no_cache_config);
    let now = time::OffsetDateTime::now_utc();

    // Unknown tokens are refused, and the refusal is not cached.
    assert_eq!(cached.verify("nope", now).await, Err(ResourceServerError::Inactive));
    let ok = cached.verify(&token, now).await.unwrap();
    assert_eq!(ok.subject, "user_demo");
    assert_eq!(ok.audiences, vec![s.resource.clone()]);
    assert!(uncached.verify(&token, now).await.is_ok());

    // Revoke at the authorization server.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", &token)
        .append_pair("client_id", &client_id)
        .finish();
    let r = s
        .http
        .post(s.as_url("/oauth2/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Without a cache the revocation shows at once; with one, the active
    // result is reused until max_ttl (30 s by default), then asked again.
    assert_eq!(uncached.verify(&token, now).await, Err(ResourceServerError::Inactive));
    assert!(cached.verify(&token, now).await.is_ok());
    let later = now + time::Duration::seconds(31);
    assert_eq!(cached.verify(&token, later).await, Err(ResourceServerError::Inactive));
}

/// OpenID Connect against the example server over HTTP: an ID token with
/// the nonce and the demo user's email, verifiable with the JWKS, and the
/// userinfo endpoint.
#[tokio::test]
async fn openid_connect_over_http() {
    let s = start_with(true).await;
    let issuer = Issuer::new_allowing_loopback_http_for_development(s.auth.clone()).unwrap();
    let oidc: Value = s
        .http
        .get(s.as_url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["issuer"], issuer.as_str());
    assert_eq!(oidc["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert_eq!(oidc["subject_types_supported"], json!(["public"]));
    let client_id = s.register_client(oidc["registration_endpoint"].as_str().unwrap()).await;
    let verifier = CodeVerifier::from_random(&[3; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &s.resource)
        .append_pair("scope", "openid email mcp:read")
        .append_pair("nonce", "n-0S6_WzA2Mj")
        .finish();
    let r = s
        .http
        .get(format!("{}?{query}", oidc["authorization_endpoint"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", verifier.as_str())
        .finish();
    let t: Value = s
        .http
        .post(oidc["token_endpoint"].as_str().unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = t["id_token"].as_str().expect("an ID token");
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["aud"], client_id.as_str());
    assert_eq!(claims["email"], "user_demo@example.com");
    assert_eq!(claims["email_verified"], true);
    let jwks: Value = s
        .http
        .get(oidc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"])
    );
    let info: Value = s
        .http
        .get(oidc["userinfo_endpoint"].as_str().unwrap())
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info,
        json!({"sub": "user_demo", "email": "user_demo@example.com", "email_verified": true})
    );
}
