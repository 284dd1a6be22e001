//! Upstream OpenID Connect login over real loopback sockets, without the
//! internet: two example servers in one process. B (the demo login, with
//! ID tokens) is the upstream provider of A. An MCP client signs in at A,
//! is sent to B, signs in there, comes back to A and gets tokens from A
//! whose subject derives from B's user; every failure path is driven the
//! same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;

use std::sync::Arc;

use async_trait::async_trait;
use authio_mcp::client::TokenEndpointAuthMethod;
use authio_mcp::dcr::{IatOptions, PinnedMetadata};
use authio_mcp::discovery::Issuer;
use authio_mcp::net::ReqwestUpstreamHttp;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::resource::ResourceUri;
use authio_mcp::secret::SecretString;
use authio_mcp::upstream::{self, HttpResponse, ProviderName, UpstreamHttp, UpstreamHttpError};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const INTROSPECT: &str = "introspect-secret";
const RESOURCE: &str = "http://127.0.0.1:8090/mcp";
/// An https redirect URI: a client whose redirect URIs are all loopback
/// ones never has its consent remembered (RFC 8252 section 8.6), and
/// these tests never follow the redirect to the client anyway.
const MCP_REDIRECT: &str = "https://mcp-client.example/callback";

struct Node {
    base: String,
    app: app::App,
}

fn config(base: &str, auto_approve: bool, upstream: Option<app::UpstreamConfig>) -> app::Config {
    app::Config {
        issuer: Issuer::new_allowing_loopback_http_for_development(base.to_owned()).unwrap(),
        admin_token: ADMIN.into(),
        auto_approve,
        allow_loopback_cimd: false,
        cimd_root_cert: None,
        dcr_mode: None,
        resource: ResourceUri::parse(RESOURCE).unwrap(),
        introspection_token: INTROSPECT.into(),
        upstream,
    }
}

async fn serve(listener: tokio::net::TcpListener, config: app::Config) -> Node {
    let base = config.issuer.as_str().to_owned();
    let app = app::App::new(config).await.unwrap();
    let router = app.router().await.unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Node { base, app }
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    (l, base)
}

/// How A reaches B.
#[derive(Default)]
struct Options {
    a_auto_approve: bool,
    b_auto_approve: bool,
    wrong_secret: bool,
    tamper_id_token: bool,
    /// The `sub` B's userinfo responses are rewritten to name.
    tamper_userinfo_sub: Option<&'static str>,
    /// A calls userinfo on every sign-in.
    a_userinfo: bool,
    provider_down: bool,
    private_key_jwt: bool,
}

struct Chain {
    a: Node,
    b: Node,
    http: reqwest::Client,
    /// The MCP client registered at A.
    client_id: String,
    /// How often A called B's userinfo endpoint.
    userinfo_calls: Arc<std::sync::atomic::AtomicUsize>,
}

/// A's HTTP client to B, over sockets, changing what B answers: breaks the
/// signature of the ID token in B's token response (flips one payload
/// character) to drive the invalid-ID-token path, or rewrites the `sub`
/// of B's userinfo responses; counts userinfo requests.
struct Tampering {
    inner: ReqwestUpstreamHttp,
    id_token: bool,
    userinfo_sub: Option<&'static str>,
    userinfo_calls: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl UpstreamHttp for Tampering {
    async fn get(&self, url: &str) -> Result<HttpResponse, UpstreamHttpError> {
        self.inner.get(url).await
    }

    async fn get_with_bearer(&self, url: &str, token: &SecretString) -> Result<HttpResponse, UpstreamHttpError> {
        self.userinfo_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let r = self.inner.get_with_bearer(url, token).await?;
        let Some(sub) = self.userinfo_sub else { return Ok(r) };
        let mut v: Value = serde_json::from_slice(&r.body).unwrap();
        v["sub"] = Value::String(sub.to_owned());
        Ok(HttpResponse::new(r.status, serde_json::to_vec(&v).unwrap()))
    }

    async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<&SecretString>,
    ) -> Result<HttpResponse, UpstreamHttpError> {
        let r = self.inner.post_form(url, form, authorization).await?;
        if !self.id_token {
            return Ok(r);
        }
        let mut v: Value = serde_json::from_slice(&r.body).unwrap();
        let token = v["id_token"].as_str().unwrap().to_owned();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let payload = &mut parts[1];
        let last = payload.pop().unwrap();
        payload.push(if last == 'A' { 'B' } else { 'A' });
        v["id_token"] = Value::String(parts.join("."));
        Ok(HttpResponse::new(r.status, serde_json::to_vec(&v).unwrap()))
    }
}

async fn chain(o: Options) -> Chain {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (lb, b_base) = listener().await;
    let b = serve(lb, config(&b_base, o.b_auto_approve, None)).await;
    let (la, a_base) = listener().await;

    // A registers at B as a confidential client (client_secret_basic) with
    // its callback as the redirect URI.
    let iat = b
        .app
        .endpoints
        .server()
        .issue_iat(
            &b.app.project(),
            IatOptions::new().pinned(PinnedMetadata::auth_method(TokenEndpointAuthMethod::ClientSecretBasic)),
        )
        .await
        .unwrap();
    let r = http
        .post(format!("{b_base}/oauth2/register"))
        .bearer_auth(iat.token.expose_secret())
        .header("content-type", "application/json")
        .body(
            json!({"redirect_uris": [format!("{a_base}/v1/auth/oauth/oidc/callback")], "client_name": "A",
                "token_endpoint_auth_method": "client_secret_basic"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    let secret = if o.wrong_secret {
        "not-the-secret".to_owned()
    } else {
        reg["client_secret"].as_str().unwrap().to_owned()
    };
    let issuer = if o.provider_down {
        // A closed port: nothing listens there.
        let (l, dead) = listener().await;
        drop(l);
        dead
    } else {
        b_base.clone()
    };
    let inner = ReqwestUpstreamHttp::builder()
        .allow_http_loopback_for_development(true)
        .build()
        .unwrap();
    let userinfo_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream_http: Option<Arc<dyn UpstreamHttp>> = Some(Arc::new(Tampering {
        inner,
        id_token: o.tamper_id_token,
        userinfo_sub: o.tamper_userinfo_sub,
        userinfo_calls: userinfo_calls.clone(),
    }));
    let up = app::UpstreamConfig {
        name: ProviderName::new("oidc").unwrap(),
        issuer: Issuer::new_allowing_loopback_http_for_development(issuer).unwrap(),
        client_id: reg["client_id"].as_str().unwrap().to_owned(),
        client_secret: (!o.private_key_jwt).then(|| SecretString::from(secret)),
        private_key_jwt: o.private_key_jwt,
        allow_http: true,
        userinfo: o.a_userinfo,
        http: upstream_http,
    };
    let a = serve(la, config(&a_base, o.a_auto_approve, Some(up))).await;
    if o.private_key_jwt {
        // A registers again at B, now with its public keys (an http
        // jwks_uri is not fetched by B, so the JWKS goes inline), and
        // uses that client id.
        let jwks: Value = http
            .get(format!("{a_base}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(!jwks["keys"].as_array().unwrap().is_empty());
        let iat = b
            .app
            .endpoints
            .server()
            .issue_iat(&b.app.project(), IatOptions::new().pinned(PinnedMetadata::unpinned()))
            .await
            .unwrap();
        let r = http
            .post(format!("{b_base}/oauth2/register"))
            .bearer_auth(iat.token.expose_secret())
            .header("content-type", "application/json")
            .body(
                json!({"redirect_uris": [format!("{a_base}/v1/auth/oauth/oidc/callback")], "client_name": "A",
                    "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let reg: Value = r.json().await.unwrap();
        assert!(reg.get("client_secret").is_none());
        let id = reg["client_id"].as_str().unwrap().to_owned();
        a.app
            .endpoints
            .server()
            .edit_project(&a.app.project(), |mut s| {
                s.upstream.providers[0].client_id = id.clone();
                s
            })
            .await
            .unwrap();
    }

    // The MCP client at A: a public DCR client.
    let iat = a
        .app
        .endpoints
        .server()
        .issue_iat(&a.app.project(), IatOptions::new())
        .await
        .unwrap();
    let r = http
        .post(format!("{a_base}/oauth2/register"))
        .bearer_auth(iat.token.expose_secret())
        .header("content-type", "application/json")
        .body(
            json!({"redirect_uris": [MCP_REDIRECT], "client_name": "MCP", "token_endpoint_auth_method": "none"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    Chain {
        a,
        b,
        http,
        client_id: v["client_id"].as_str().unwrap().to_owned(),
        userinfo_calls,
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `name=value` of the first `Set-Cookie` whose name starts with `prefix`.
fn set_cookie(r: &reqwest::Response, prefix: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(prefix))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// A hidden input's value in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// The authorization request the MCP client sends to A, started at `path`:
/// A's 302 to B and the browser-binding cookie it set.
struct Started {
    to_b: String,
    cookie: String,
    verifier: CodeVerifier,
}

impl Chain {
    fn project(&self) -> authio_mcp::project::ProjectId {
        self.a.app.project()
    }

    async fn start(&self, path: &str, scope: &str) -> Started {
        self.start_with(path, scope, &[]).await
    }

    /// [`Self::start`] with more authorization parameters.
    async fn start_with(&self, path: &str, scope: &str, extra: &[(&str, &str)]) -> Started {
        let verifier = CodeVerifier::from_random(&[7; 32]);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", MCP_REDIRECT)
            .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "mcp-state")
            .append_pair("scope", scope);
        for (k, v) in extra {
            query.append_pair(k, v);
        }
        let query = query.finish();
        let r = self
            .http
            .get(format!("{}{path}?{query}", self.a.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{}", r.text().await.unwrap());
        let to_b = location(&r);
        let cookie = set_cookie(&r, "authio_ul_").expect("the browser-binding cookie");
        Started { to_b, cookie, verifier }
    }

    /// At B: auto-approved, or the demo consent form posted with `action`
    /// as `username`. Returns B's redirect back to A.
    async fn at_b(&self, to_b: &str, action: &str, username: &str) -> String {
        assert!(to_b.starts_with(&self.b.base), "{to_b}");
        let r = self.http.get(to_b).send().await.unwrap();
        if r.status() == StatusCode::FOUND {
            return location(&r);
        }
        assert_eq!(r.status(), 200);
        let cookie = set_cookie(&r, "authio_consent=").unwrap();
        let page = r.text().await.unwrap();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request_id", &hidden(&page, "request_id"))
            .append_pair("csrf", &hidden(&page, "csrf"))
            .append_pair("username", username)
            .append_pair("action", action)
            .finish();
        let r = self
            .http
            .post(format!("{}/consent", self.b.base))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        location(&r)
    }

    async fn callback(&self, url: &str, cookie: Option<&str>) -> reqwest::Response {
        assert!(
            url.starts_with(&format!("{}/v1/auth/oauth/oidc/callback?", self.a.base)),
            "{url}"
        );
        let mut req = self.http.get(url);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    /// The whole chain with both sides auto-approving: A's final redirect
    /// to the MCP client.
    async fn sign_in(&self, scope: &str) -> (Started, String) {
        let s = self.start("/v1/auth/oauth/oidc/authorize", scope).await;
        let back = self.at_b(&s.to_b, "approve", "").await;
        let r = self.callback(&back, Some(&s.cookie)).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        let l = location(&r);
        (s, l)
    }

    async fn exchange(&self, code: &str, verifier: &CodeVerifier) -> Value {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", MCP_REDIRECT)
            .append_pair("client_id", &self.client_id)
            .append_pair("code_verifier", verifier.as_str())
            .finish();
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.a.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn introspect(&self, token: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/oauth2/introspect", self.a.base))
            .bearer_auth(INTROSPECT)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// A's `upstream.login_*` audit events, as JSON.
    async fn upstream_events(&self) -> Vec<Value> {
        recent(&self.a.app, &self.project())
            .await
            .iter()
            .map(authio_mcp::audit::AuditEvent::to_json)
            .filter(|e| e["event"].as_str().unwrap().starts_with("upstream."))
            .collect()
    }

    async fn last_failure_reason(&self) -> String {
        let events = self.upstream_events().await;
        let e = events
            .iter()
            .rev()
            .find(|e| e["event"] == "upstream.login_failed")
            .expect("an upstream.login_failed event");
        e["reason"].as_str().unwrap().to_owned()
    }

    /// The local subject of B's user `name`.
    fn subject_of(&self, name: &str) -> authio_mcp::grant::Subject {
        upstream::local_subject(&self.b.base, name)
    }

    async fn user_exists(&self, name: &str) -> bool {
        self.a
            .app
            .endpoints
            .server()
            .user(&self.project(), &self.subject_of(name))
            .await
            .unwrap()
            .is_some()
    }
}

/// The MCP client's view of an error redirect from A: `error`, and that
/// `state` and `iss` are there.
fn client_error(l: &str, a_base: &str) -> String {
    assert!(l.starts_with(MCP_REDIRECT), "{l}");
    assert_eq!(param(l, "state").as_deref(), Some("mcp-state"), "{l}");
    assert_eq!(param(l, "iss").as_deref(), Some(a_base), "{l}");
    assert!(param(l, "code").is_none());
    param(l, "error").unwrap()
}

#[tokio::test]
async fn mcp_client_signs_in_through_the_upstream_provider() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    // Discovery advertises the provider's authorization endpoint.
    let d: Value = c
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", c.a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["authorization_endpoint"],
        format!("{}/v1/auth/oauth/oidc/authorize", c.a.base)
    );

    let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read openid email").await;
    // The request to B: code flow, PKCE S256, state, nonce, A's callback.
    assert!(s.to_b.starts_with(&format!("{}/oauth2/authorize?", c.b.base)));
    assert_eq!(param(&s.to_b, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&s.to_b, "code_challenge_method").as_deref(), Some("S256"));
    assert!(param(&s.to_b, "nonce").is_some() && param(&s.to_b, "state").is_some());
    assert_ne!(param(&s.to_b, "state").as_deref(), Some("mcp-state"), "A's own state");
    assert_eq!(
        param(&s.to_b, "redirect_uri").unwrap(),
        format!("{}/v1/auth/oauth/oidc/callback", c.a.base)
    );
    let back = c.at_b(&s.to_b, "approve", "").await;
    assert_eq!(param(&back, "iss").as_deref(), Some(c.b.base.as_str()));
    let r = c.callback(&back, Some(&s.cookie)).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let cleared = set_cookie(&r, "authio_ul_").unwrap();
    assert!(cleared.ends_with('='), "the binding cookie is cleared: {cleared}");
    let l = location(&r);
    assert!(l.starts_with(MCP_REDIRECT), "{l}");
    assert_eq!(param(&l, "state").as_deref(), Some("mcp-state"));
    assert_eq!(param(&l, "iss").as_deref(), Some(c.a.base.as_str()));
    let code = param(&l, "code").unwrap();

    let tokens = c.exchange(&code, &s.verifier).await;
    let subject = c.subject_of(app::DEMO_SUBJECT);
    let info = c.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], subject.as_str(), "the subject derives from B's user");
    assert_ne!(info["sub"], app::DEMO_SUBJECT);
    assert!(tokens["id_token"].is_string(), "A issues its own ID token");
    let user =
        c.a.app
            .endpoints
            .server()
            .user(&c.project(), &subject)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(user.upstream_issuer, c.b.base);
    assert_eq!(user.upstream_subject, app::DEMO_SUBJECT);
    let events = c.upstream_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "upstream.login_succeeded");

    // `/oauth2/authorize` keeps working, and goes upstream too: there is no
    // local login to bypass it.
    let s = c.start("/oauth2/authorize", "mcp:read").await;
    assert!(s.to_b.starts_with(&c.b.base));
}

#[tokio::test]
async fn consent_is_remembered_per_user_client_and_scopes() {
    let c = chain(Options {
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    let consent_page = |scope: &'static str| {
        let c = &c;
        async move {
            let s = c.start("/v1/auth/oauth/oidc/authorize", scope).await;
            let back = c.at_b(&s.to_b, "approve", "").await;
            c.callback(&back, Some(&s.cookie)).await
        }
    };
    // First time: A asks, naming the signed-in user, asking no user name.
    let r = consent_page("mcp:read").await;
    assert_eq!(r.status(), 200);
    let cookie = set_cookie(&r, "authio_consent=").unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"signed-in-as\""), "{page}");
    assert!(!page.contains("name=\"username\""));
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("request_id", &hidden(&page, "request_id"))
        .append_pair("csrf", &hidden(&page, "csrf"))
        .append_pair("username", "someone_else")
        .append_pair("action", "approve")
        .finish();
    let r = c
        .http
        .post(format!("{}/consent", c.a.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let l = location(&r);
    assert!(param(&l, "code").is_some(), "{l}");
    // Second time, same scopes: no page, the code at once.
    let r = consent_page("mcp:read").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let code = param(&location(&r), "code").expect("remembered consent");
    let tokens = c.exchange(&code, &CodeVerifier::from_random(&[7; 32])).await;
    let info = c.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(
        info["sub"],
        c.subject_of(app::DEMO_SUBJECT).as_str(),
        "the upstream user, not a typed name"
    );
    // More scopes: asked again.
    assert_eq!(consent_page("mcp:read mcp:write").await.status(), 200);
    // Revoked: asked again.
    let revoked =
        c.a.app
            .endpoints
            .server()
            .revoke_consent(&c.project(), &c.subject_of(app::DEMO_SUBJECT), &c.client_id)
            .await
            .unwrap();
    assert!(revoked);
    assert_eq!(consent_page("mcp:read").await.status(), 200);
}

#[tokio::test]
async fn prompt_and_login_hint_reach_the_upstream_provider() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    // prompt=login and login_hint go to B; B authenticates afresh (its ID
    // token's auth_time is now), so A accepts.
    let s = c
        .start_with(
            "/v1/auth/oauth/oidc/authorize",
            "mcp:read",
            &[("prompt", "login"), ("login_hint", "demo@example.com")],
        )
        .await;
    assert_eq!(param(&s.to_b, "prompt").as_deref(), Some("login"));
    assert_eq!(param(&s.to_b, "max_age").as_deref(), Some("0"));
    assert_eq!(param(&s.to_b, "login_hint").as_deref(), Some("demo@example.com"));
    let back = c.at_b(&s.to_b, "approve", "").await;
    let r = c.callback(&back, Some(&s.cookie)).await;
    assert!(param(&location(&r), "code").is_some(), "{}", location(&r));
    // prompt=none goes to B too; B (no remembered consent of its own)
    // answers consent_required, which the MCP client receives as such.
    let s = c
        .start_with("/v1/auth/oauth/oidc/authorize", "mcp:read", &[("prompt", "none")])
        .await;
    assert_eq!(param(&s.to_b, "prompt").as_deref(), Some("none"));
    let back = c.at_b(&s.to_b, "approve", "").await;
    assert_eq!(param(&back, "error").as_deref(), Some("consent_required"), "{back}");
    let r = c.callback(&back, Some(&s.cookie)).await;
    assert_eq!(client_error(&location(&r), &c.a.base), "consent_required");
    assert_eq!(c.last_failure_reason().await, "interaction_required:consent_required");
    // The same answer through /oauth2/authorize, which also starts the
    // upstream login when a provider is selected.
    let s = c
        .start_with("/oauth2/authorize", "mcp:read", &[("prompt", "none")])
        .await;
    assert_eq!(param(&s.to_b, "prompt").as_deref(), Some("none"));
}

#[tokio::test]
async fn userinfo_is_called_when_configured() {
    // B's ID tokens carry the email: by default A does not call userinfo.
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    let (_, l) = c.sign_in("mcp:read").await;
    assert!(param(&l, "code").is_some(), "{l}");
    assert_eq!(c.userinfo_calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Configured to (--upstream-userinfo): called, over sockets, with B's
    // access token; its sub is B's user's.
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        a_userinfo: true,
        ..Options::default()
    })
    .await;
    let (_, l) = c.sign_in("mcp:read").await;
    assert!(param(&l, "code").is_some(), "{l}");
    assert_eq!(c.userinfo_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let user =
        c.a.app
            .endpoints
            .server()
            .user(&c.project(), &c.subject_of(app::DEMO_SUBJECT))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(user.email.as_deref(), Some("user_demo@example.com"));
}

#[tokio::test]
async fn userinfo_about_another_user_is_refused() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        a_userinfo: true,
        tamper_userinfo_sub: Some("someone_else"),
        ..Options::default()
    })
    .await;
    let (_, l) = c.sign_in("mcp:read").await;
    assert_eq!(client_error(&l, &c.a.base), "server_error");
    assert_eq!(c.last_failure_reason().await, "userinfo:sub_mismatch");
    assert!(!c.user_exists(app::DEMO_SUBJECT).await, "nothing half-created");
}

#[tokio::test]
async fn user_cancels_at_the_upstream_provider() {
    let c = chain(Options {
        a_auto_approve: true,
        ..Options::default()
    })
    .await;
    let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read").await;
    let back = c.at_b(&s.to_b, "deny", "alice").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    let r = c.callback(&back, Some(&s.cookie)).await;
    assert_eq!(client_error(&location(&r), &c.a.base), "access_denied");
    assert_eq!(c.last_failure_reason().await, "user_cancelled");
    assert!(!c.user_exists("alice").await, "nothing half-created");
}

#[tokio::test]
async fn chosen_upstream_user_becomes_the_subject() {
    let c = chain(Options {
        a_auto_approve: true,
        ..Options::default()
    })
    .await;
    let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read").await;
    let back = c.at_b(&s.to_b, "approve", "alice").await;
    let r = c.callback(&back, Some(&s.cookie)).await;
    let code = param(&location(&r), "code").unwrap();
    let tokens = c.exchange(&code, &s.verifier).await;
    let info = c.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info["sub"], c.subject_of("alice").as_str());
    assert!(c.user_exists("alice").await);
}

#[tokio::test]
async fn upstream_error_reaches_the_client() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    for (upstream_error, want) in [
        ("server_error", "server_error"),
        ("temporarily_unavailable", "temporarily_unavailable"),
        ("invalid_scope", "server_error"),
    ] {
        let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read").await;
        let state = param(&s.to_b, "state").unwrap();
        let url = format!(
            "{}/v1/auth/oauth/oidc/callback?state={state}&error={upstream_error}&iss={}",
            c.a.base,
            url::form_urlencoded::byte_serialize(c.b.base.as_bytes()).collect::<String>()
        );
        let r = c.callback(&url, Some(&s.cookie)).await;
        assert_eq!(client_error(&location(&r), &c.a.base), want, "{upstream_error}");
        assert_eq!(c.last_failure_reason().await, "upstream_error");
    }
}

#[tokio::test]
async fn state_mismatch_is_shown_not_redirected() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read").await;
    let back = c.at_b(&s.to_b, "approve", "").await;
    let code = param(&back, "code").unwrap();
    for forged in ["forged", ""] {
        let url = format!("{}/v1/auth/oauth/oidc/callback?state={forged}&code={code}", c.a.base);
        let r = c.callback(&url, Some(&s.cookie)).await;
        assert_eq!(r.status(), 400, "no login to complete: an error page, never a redirect");
        assert!(r.headers().get("location").is_none());
        assert_eq!(c.last_failure_reason().await, "state_mismatch");
    }
    // The genuine callback still works afterwards.
    let r = c.callback(&back, Some(&s.cookie)).await;
    assert!(param(&location(&r), "code").is_some());
}

#[tokio::test]
async fn replayed_callback_fails_and_the_first_code_still_works() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read").await;
    let back = c.at_b(&s.to_b, "approve", "").await;
    let first = location(&c.callback(&back, Some(&s.cookie)).await);
    let code = param(&first, "code").unwrap();
    // A replay gets an error page, never a second redirect to the client.
    let again = c.callback(&back, Some(&s.cookie)).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.headers().get("location").is_none());
    assert_eq!(c.last_failure_reason().await, "replayed_callback");
    let tokens = c.exchange(&code, &s.verifier).await;
    assert!(tokens["access_token"].is_string());
}

#[tokio::test]
async fn callback_in_another_browser_is_refused() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    // An attacker starts the login and lures a victim through B: the
    // victim's browser has no binding cookie. An error page: no redirect
    // (which would carry the MCP client's state), nothing spent.
    let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read").await;
    let back = c.at_b(&s.to_b, "approve", "").await;
    let r = c.callback(&back, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert_eq!(c.last_failure_reason().await, "browser_mismatch");
    assert!(!c.user_exists(app::DEMO_SUBJECT).await);
    // A forged cookie value fares no better.
    let name = s.cookie.split('=').next().unwrap();
    let r = c.callback(&back, Some(&format!("{name}=forged"))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert_eq!(c.last_failure_reason().await, "browser_mismatch");
    // The browser that started it still completes it, once.
    let r = c.callback(&back, Some(&s.cookie)).await;
    assert!(param(&location(&r), "code").is_some(), "{}", location(&r));
    let r = c.callback(&back, Some(&s.cookie)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert_eq!(c.last_failure_reason().await, "replayed_callback");
    // Another browser replaying it then learns nothing either.
    let r = c.callback(&back, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn invalid_id_token_is_refused() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        tamper_id_token: true,
        ..Options::default()
    })
    .await;
    let (_, l) = c.sign_in("mcp:read").await;
    assert_eq!(client_error(&l, &c.a.base), "server_error");
    assert_eq!(c.last_failure_reason().await, "invalid_id_token:signature");
    assert!(!c.user_exists(app::DEMO_SUBJECT).await, "nothing half-created");
}

#[tokio::test]
async fn token_exchange_failure_reaches_the_client() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        wrong_secret: true,
        ..Options::default()
    })
    .await;
    let (_, l) = c.sign_in("mcp:read").await;
    assert_eq!(client_error(&l, &c.a.base), "server_error");
    assert_eq!(c.last_failure_reason().await, "token_exchange_failed");
    assert!(!c.user_exists(app::DEMO_SUBJECT).await);
}

#[tokio::test]
async fn user_refused_by_policy() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    // B's demo users have verified addresses at example.com.
    c.a.app
        .endpoints
        .server()
        .edit_project(&c.project(), |mut s| {
            s.upstream.providers[0].allowed_email_domains = vec!["corp.example".into()];
            s
        })
        .await
        .unwrap();
    let (_, l) = c.sign_in("mcp:read").await;
    assert_eq!(client_error(&l, &c.a.base), "access_denied");
    assert_eq!(c.last_failure_reason().await, "refused_by_policy:email_domain");
    assert!(!c.user_exists(app::DEMO_SUBJECT).await, "nothing half-created");
    let granted = recent(&c.a.app, &c.project())
        .await
        .iter()
        .any(|e| e.name() == "authorization.granted");
    assert!(!granted);
    // The right domain gets in, with B's claims on the local user.
    c.a.app
        .endpoints
        .server()
        .edit_project(&c.project(), |mut s| {
            s.upstream.providers[0].allowed_email_domains = vec!["EXAMPLE.com".into()];
            s
        })
        .await
        .unwrap();
    let (_, l) = c.sign_in("mcp:read").await;
    assert!(param(&l, "code").is_some(), "{l}");
    let user =
        c.a.app
            .endpoints
            .server()
            .user(&c.project(), &c.subject_of(app::DEMO_SUBJECT))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(user.email.as_deref(), Some("user_demo@example.com"));
    assert!(user.email_verified);
}

#[tokio::test]
async fn provider_down_sends_temporarily_unavailable() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        provider_down: true,
        ..Options::default()
    })
    .await;
    let verifier = CodeVerifier::from_random(&[7; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &c.client_id)
        .append_pair("redirect_uri", MCP_REDIRECT)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "mcp-state")
        .finish();
    let r = c
        .http
        .get(format!("{}/v1/auth/oauth/oidc/authorize?{query}", c.a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(client_error(&location(&r), &c.a.base), "temporarily_unavailable");
    assert_eq!(c.last_failure_reason().await, "provider_unavailable");
}

#[tokio::test]
async fn unknown_provider_is_an_error_page() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    let r = c
        .http
        .get(format!(
            "{}/v1/auth/oauth/google/authorize?response_type=code&client_id={}",
            c.a.base, c.client_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("location").is_none());
    let r = c
        .http
        .get(format!("{}/v1/auth/oauth/google/callback?state=x&code=y", c.a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn callback_from_another_issuer_is_refused() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        ..Options::default()
    })
    .await;
    // B advertises RFC 9207: a response without iss, or with another
    // issuer's, is a mix-up and refused.
    for iss in [None, Some("https://evil.example")] {
        let s = c.start("/v1/auth/oauth/oidc/authorize", "mcp:read").await;
        let back = c.at_b(&s.to_b, "approve", "").await;
        let mut u = url::Url::parse(&back).unwrap();
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = u.query_pairs_mut();
            q.clear();
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
            if let Some(i) = iss {
                q.append_pair("iss", i);
            }
        }
        let r = c.callback(u.as_str(), Some(&s.cookie)).await;
        assert_eq!(client_error(&location(&r), &c.a.base), "access_denied", "{iss:?}");
        assert_eq!(c.last_failure_reason().await, "issuer_mismatch");
    }
}

#[tokio::test]
async fn private_key_jwt_at_the_upstream_token_endpoint() {
    let c = chain(Options {
        a_auto_approve: true,
        b_auto_approve: true,
        private_key_jwt: true,
        ..Options::default()
    })
    .await;
    let (s, l) = c.sign_in("mcp:read").await;
    let events = c.upstream_events().await;
    let code = param(&l, "code").unwrap_or_else(|| panic!("{l} {events:?}"));
    let tokens = c.exchange(&code, &s.verifier).await;
    let info = c.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info["sub"], c.subject_of(app::DEMO_SUBJECT).as_str());
    // B saw no assertion refused.
    let refused = recent(&c.b.app, &c.b.app.project())
        .await
        .iter()
        .any(|e| e.name() == "oauth_client.assertion_rejected");
    assert!(!refused);
}

/// The newest 500 audit events of a project, oldest first.
async fn recent(app: &app::App, project: &authio_mcp::project::ProjectId) -> Vec<authio_mcp::audit::AuditEvent> {
    let mut events = app
        .audit
        .query(&authio_mcp::store::AuditQuery::new(project.clone()).limit(500))
        .await
        .unwrap()
        .events;
    events.reverse();
    events
}
