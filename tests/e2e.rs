//! End-to-end tests over real loopback sockets: the example server's
//! application on an ephemeral port, driven by a real HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/tls.rs"]
mod tls;

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;

use std::net::SocketAddr;

use authio_mcp::discovery::Issuer;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::resource::ResourceUri;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const INTROSPECT: &str = "introspect-secret";
const RESOURCE: &str = "http://127.0.0.1:8090/mcp";

struct Running {
    base: String,
    http: reqwest::Client,
}

async fn start(auto_approve: bool) -> Running {
    start_with(auto_approve, None).await
}

async fn start_with(auto_approve: bool, cimd_root_cert: Option<Vec<u8>>) -> Running {
    start_with_issuer(auto_approve, cimd_root_cert, None).await
}

async fn start_with_issuer(auto_approve: bool, cimd_root_cert: Option<Vec<u8>>, issuer: Option<&str>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let issuer = match issuer {
        Some(i) => Issuer::new(i).unwrap(),
        None => Issuer::new_allowing_loopback_http_for_development(base.clone()).unwrap(),
    };
    let config = app::Config {
        issuer,
        admin_token: ADMIN.into(),
        auto_approve,
        allow_loopback_cimd: true,
        cimd_root_cert,
        dcr_mode: None,
        resource: ResourceUri::parse(RESOURCE).unwrap(),
        introspection_token: INTROSPECT.into(),
        upstream: None,
    };
    let app = app::App::new(config).await.unwrap();
    let router = app.router().await.unwrap();
    // As the example's main: the peer address is each request's source.
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap()
    });
    // reqwest is built without a default TLS crypto provider (the crate
    // brings its own rustls configuration); tests install ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Running { base, http }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn issue_iat(&self) -> String {
        let (s, v) = self
            .admin(
                reqwest::Method::POST,
                "/admin/projects/proj_demo/iats",
                Some(json!({"max_uses": 5})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    async fn post_form(&self, path: &str, pairs: &[(&str, &str)], bearer: Option<&str>) -> reqwest::Response {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(ser.finish());
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send().await.unwrap()
    }

    async fn register(&self, iat: &str, body: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url("/oauth2/register"))
            .bearer_auth(iat)
            .header("X-Authio-Project", "proj_demo")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(r.headers()["cache-control"], "no-store");
        (status, r.json().await.unwrap())
    }

    /// Authorize (auto-approve) and return the code from the redirect.
    async fn sign_in(&self, client_id: &str, redirect: &str, verifier: &CodeVerifier) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("code_challenge", CodeChallenge::s256(verifier).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "xyz")
            .append_pair("resource", RESOURCE)
            .append_pair("scope", "mcp:read")
            .finish();
        let r = self
            .http
            .get(self.url(&format!("/oauth2/authorize?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.text().await);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(redirect), "{location}");
        let url = url::Url::parse(&location).unwrap();
        let get = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
        assert_eq!(get("state").as_deref(), Some("xyz"));
        assert_eq!(get("iss").as_deref(), Some(self.base.as_str()));
        get("code").expect("code")
    }

    /// `POST /oauth2/cimd/resolve`: both outcomes are 200 JSON.
    async fn preview(&self, client_id: &str) -> Value {
        let r = self
            .http
            .post(self.url("/oauth2/cimd/resolve"))
            .header("X-Authio-Project", "proj_demo")
            .header("content-type", "application/json")
            .body(json!({ "client_id": client_id }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn introspect(&self, token: &str) -> Value {
        let r = self
            .post_form("/oauth2/introspect", &[("token", token)], Some(INTROSPECT))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

const SEED_STEP_3B: &str = r#"{
    "redirect_uris":               ["https://my-mcp-server.example.com/oauth/callback"],
    "client_name":                 "My MCP Server",
    "token_endpoint_auth_method":  "none",
    "application_type":            "web"
  }"#;

#[tokio::test]
async fn discovery_with_and_without_the_project_header() {
    let s = start(true).await;
    for header in [None, Some("proj_demo")] {
        let mut req = s.http.get(s.url("/.well-known/oauth-authorization-server"));
        if let Some(h) = header {
            req = req.header("X-Authio-Project", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert_eq!(
            r.headers()["vary"],
            "x-authio-project",
            "the document depends on the project"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["registration_endpoint"], s.url("/oauth2/register"));
        assert_eq!(v["mcp_authorization_supported"], true);
        assert_eq!(v["issuer"], s.base);
        assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));
    }
    let r = s
        .http
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .header("X-Authio-Project", "proj_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    let r = s
        .http
        .post(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn seed_step_3b_registration_is_public() {
    let s = start(true).await;
    let iat = s.issue_iat().await;
    assert!(iat.starts_with("iatk_"));
    let (status, v) = s.register(&iat, SEED_STEP_3B).await;
    assert_eq!(status, 201, "{v}");
    assert!(v["client_id"].as_str().unwrap().starts_with("client_"));
    assert!(v.get("client_secret").is_none());
    assert_eq!(v["token_endpoint_auth_method"], "none");
    assert_eq!(
        v["redirect_uris"],
        json!(["https://my-mcp-server.example.com/oauth/callback"])
    );
    // Without a token: 401 with a Bearer challenge.
    let r = s
        .http
        .post(s.url("/oauth2/register"))
        .header("content-type", "application/json")
        .body(SEED_STEP_3B)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    // Browser-based clients can read the challenge cross-origin.
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["access-control-expose-headers"], "www-authenticate");
    // Wrong media type.
    let r = s
        .http
        .post(s.url("/oauth2/register"))
        .bearer_auth(&iat)
        .body(SEED_STEP_3B)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn dcr_client_full_pkce_flow() {
    let s = start(true).await;
    let iat = s.issue_iat().await;
    let redirect = "http://127.0.0.1:33418/callback";
    let body = json!({"redirect_uris": [redirect], "client_name": "E2E", "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"]});
    let (status, v) = s.register(&iat, &body.to_string()).await;
    assert_eq!(status, 201, "{v}");
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    let verifier = CodeVerifier::from_random(&[7; 32]);
    // The loopback port may differ from the registered one.
    let code = s
        .sign_in(&client_id, "http://127.0.0.1:40000/callback", &verifier)
        .await;

    let r = s
        .post_form(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("redirect_uri", "http://127.0.0.1:40000/callback"),
                ("code_verifier", verifier.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);

    let info = s.introspect(&access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["aud"], json!([RESOURCE]));
    assert_eq!(info["sub"], "user_demo");
    assert_eq!(info["scope"], "mcp:read");
    // Introspection needs the resource server's credential.
    let r = s
        .post_form("/oauth2/introspect", &[("token", &access)], Some("wrong"))
        .await;
    assert_eq!(r.status(), 401);

    // The code is single-use; the replay revokes what it produced.
    let r = s
        .post_form(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("code_verifier", verifier.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(s.introspect(&access).await["active"], false);
    assert_eq!(s.introspect(&refresh).await["active"], false);
}

#[tokio::test]
async fn refresh_rotation_and_revocation_over_http() {
    let s = start(true).await;
    let iat = s.issue_iat().await;
    let redirect = "https://app.example.com/cb";
    let body = json!({"redirect_uris": [redirect], "client_name": "E2E", "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"]});
    let (_, v) = s.register(&iat, &body.to_string()).await;
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    let verifier = CodeVerifier::from_random(&[8; 32]);
    let code = s.sign_in(&client_id, redirect, &verifier).await;
    let t: Value = s
        .post_form(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("code_verifier", verifier.as_str()),
            ],
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let t2: Value = s
        .post_form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt1),
                ("client_id", &client_id),
            ],
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_eq!(s.introspect(&rt1).await["active"], false);
    assert_eq!(s.introspect(&rt2).await["active"], true);
    let a2 = t2["access_token"].as_str().unwrap().to_owned();
    let r = s
        .post_form("/oauth2/revoke", &[("token", &rt2), ("client_id", &client_id)], None)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.introspect(&rt2).await["active"], false);
    assert_eq!(s.introspect(&a2).await["active"], false);
    // Unknown tokens are fine too (RFC 7009).
    let r = s
        .post_form("/oauth2/revoke", &[("token", "nope"), ("client_id", &client_id)], None)
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn admin_api_switches_mcp_and_lists_iats() {
    let s = start(true).await;
    let (st, _) = s.admin(reqwest::Method::GET, "/admin/projects/proj_demo", None).await;
    assert_eq!(st, 200);
    let r = s.http.get(s.url("/admin/projects/proj_demo")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the admin API needs the admin token");
    let (st, v) = s
        .admin(
            reqwest::Method::PATCH,
            "/admin/projects/proj_demo",
            Some(json!({"dcr_mode": "open"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["lints"], json!(["open_registration_with_mcp"]));
    let (st, v) = s
        .admin(
            reqwest::Method::POST,
            "/admin/projects/proj_demo/mcp",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        v["changes"],
        json!([{"field": "mcp_enabled", "from": true, "to": false}])
    );
    let iat = s.issue_iat().await;
    let (_, list) = s
        .admin(reqwest::Method::GET, "/admin/projects/proj_demo/iats", None)
        .await;
    assert!(!list.to_string().contains(&iat), "listing never shows raw tokens");
    let id = list.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, _) = s
        .admin(
            reqwest::Method::DELETE,
            &format!("/admin/projects/proj_demo/iats/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (_, audit) = s
        .admin(reqwest::Method::GET, "/admin/projects/proj_demo/audit", None)
        .await;
    let names: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for n in [
        "project.mcp_enabled",
        "project.settings_updated",
        "project.mcp_disabled",
        "initial_access_token.issued",
        "initial_access_token.revoked",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
}

#[tokio::test]
async fn consent_page_with_csrf_protected_form() {
    let s = start(false).await;
    let iat = s.issue_iat().await;
    let body = json!({"redirect_uris": ["http://127.0.0.1:5555/cb"], "client_name": "Loopback <App>", "token_endpoint_auth_method": "none"});
    let (_, v) = s.register(&iat, &body.to_string()).await;
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    let verifier = CodeVerifier::from_random(&[9; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", "http://127.0.0.1:5555/cb")
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "s1")
        .finish();
    let r = s
        .http
        .get(s.url(&format!("/oauth2/authorize?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(
        !r.headers()["set-cookie"].to_str().unwrap().contains("Secure"),
        "plain-http development issuer: a Secure cookie would never come back"
    );
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    assert!(html.contains("Loopback &lt;App&gt;"), "escaped client name");
    assert!(html.contains("id=\"loopback-warning\""));
    assert!(html.contains("127.0.0.1"));
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap() + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    };
    let (id, csrf) = (field("request_id"), field("csrf"));
    let form = |csrf: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request_id", &id)
            .append_pair("csrf", csrf)
            .append_pair("username", "alice")
            .append_pair("action", "approve")
            .finish()
    };
    let post = |body: String, cookie: Option<String>| {
        let mut req = s
            .http
            .post(s.url("/consent"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    // Forged posts: wrong CSRF token, or no cookie.
    assert_eq!(post(form("forged"), Some(cookie.clone())).await.unwrap().status(), 403);
    assert_eq!(post(form(&csrf), None).await.unwrap().status(), 403);
    // The real one.
    let r = post(form(&csrf), Some(cookie.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://127.0.0.1:5555/cb?code="), "{location}");
    // Single use.
    assert_eq!(post(form(&csrf), Some(cookie)).await.unwrap().status(), 403);
}

#[tokio::test]
async fn phase_one_errors_are_pages_not_redirects() {
    let s = start(true).await;
    let r = s
        .http
        .get(s.url("/oauth2/authorize?response_type=code&client_id=client_ffffffffffffffffffffffff&redirect_uri=https%3A%2F%2Fevil.example.com%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

/// The request id the example server logs and returns in `X-Request-Id`
/// is the one its error pages show, so a user quoting it can be found.
#[tokio::test]
async fn error_pages_show_the_logged_request_id() {
    let s = start(false).await;
    let r = s
        .http
        .get(s.url("/oauth2/authorize?response_type=code&client_id=client_ffffffffffffffffffffffff"))
        .header("x-request-id", "client-chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "client-chosen", "the server's own id replaces the client's");
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("id=\"request-id\">{id}<")), "{html}");
    assert!(html.contains("misconfigured"));
}

/// The consent page's service name, scope descriptions and resource
/// names are project settings the admin API sets; malformed ones are
/// refused with a precise error.
#[tokio::test]
async fn display_settings_through_the_admin_api() {
    let s = start(false).await;
    let (st, v) = s
        .admin(
            reqwest::Method::PATCH,
            "/admin/projects/proj_demo",
            Some(json!({"display": {
                "name": "Acme Cloud",
                "logo_uri": "https://static.acme.example/logo.svg",
                "scope_descriptions": {"mcp:read": "Read your Acme projects"},
                "resource_names": {RESOURCE: "Acme MCP"}
            }})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["settings"]["display"]["name"], "Acme Cloud");
    let (_, v) = s.admin(reqwest::Method::GET, "/admin/projects/proj_demo", None).await;
    assert_eq!(
        v["settings"]["display"]["scope_descriptions"]["mcp:read"],
        "Read your Acme projects"
    );

    let iat = s.issue_iat().await;
    let body = json!({"redirect_uris": ["http://127.0.0.1:5556/cb"], "client_name": "Display App", "token_endpoint_auth_method": "none"});
    let (_, reg) = s.register(&iat, &body.to_string()).await;
    let verifier = CodeVerifier::from_random(&[8; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", reg["client_id"].as_str().unwrap())
        .append_pair("redirect_uri", "http://127.0.0.1:5556/cb")
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "mcp:read")
        .finish();
    let r = s
        .http
        .get(s.url(&format!("/oauth2/authorize?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("img-src https://static.acme.example;"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains("<title>Sign in to Acme Cloud</title>"));
    assert!(html.contains("Read your Acme projects"));
    assert!(html.contains("Acme MCP"));

    for (bad, says) in [
        (json!({"name": "Acme\u{202E}duolC"}), "display.name"),
        (
            json!({"logo_uri": "http://static.acme.example/logo.svg"}),
            "display.logo_uri",
        ),
        (
            json!({"scope_descriptions": {"bad scope": "x"}}),
            "display.scope_descriptions",
        ),
        (json!({"resource_names": {"not a uri": "x"}}), "display.resource_names"),
    ] {
        let (st, v) = s
            .admin(
                reqwest::Method::PATCH,
                "/admin/projects/proj_demo",
                Some(json!({ "display": bad })),
            )
            .await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"], "invalid_request");
        let d = v["error_description"].as_str().unwrap();
        assert!(d.contains(says) && !d.contains('?'), "{d}");
    }
    let (st, v) = s
        .admin(
            reqwest::Method::PATCH,
            "/admin/projects/proj_demo",
            Some(json!({"display": {"nmae": "typo"}})),
        )
        .await;
    assert_eq!(st, 400, "unknown display fields are refused: {v}");
}

/// An HTTPS server on 127.0.0.1 serving one CIMD document at
/// `/client.json` (404 elsewhere), with a self-signed certificate.
struct DocumentServer {
    port: u16,
    ca_pem: String,
}

impl DocumentServer {
    async fn start(redirect: &'static str) -> Self {
        Self::start_with_cache(redirect, "max-age=600").await
    }

    async fn start_with_cache(redirect: &'static str, cache_control: &'static str) -> Self {
        use tokio::io::AsyncWriteExt as _;
        let (acceptor, ca_pem) = tls::self_signed_acceptor(&["localhost"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(head) = tls::read_head(&mut tls).await else {
                        return;
                    };
                    let response = if head.starts_with("GET /client.json ") {
                        let doc = json!({
                            "client_id": format!("https://localhost:{port}/client.json"),
                            "client_name": "Local CIMD Client",
                            "redirect_uris": [redirect],
                            "grant_types": ["authorization_code", "refresh_token"],
                            "token_endpoint_auth_method": "none"
                        })
                        .to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: {cache_control}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                            doc.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                    };
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { port, ca_pem }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

#[tokio::test]
async fn cimd_client_full_pkce_flow_and_preview() {
    let redirect = "http://127.0.0.1:7777/cb";
    let docs = DocumentServer::start(redirect).await;
    let s = start_with(true, Some(docs.ca_pem.clone().into_bytes())).await;
    let client_id = docs.url("/client.json");

    // The dashboard's "Preview CIMD" button.
    let preview = s.preview(&client_id).await;
    assert_eq!(preview["status"], "resolved", "{preview}");
    assert_eq!(preview["client_name"], "Local CIMD Client");
    assert_eq!(preview["redirect_uris"], json!([redirect]));
    assert_eq!(preview["token_endpoint_auth_method"], "none");
    // Anonymous: the validation result only, nothing about the cache.
    assert!(preview.get("from_cache").is_none(), "{preview}");
    assert!(preview.get("cache_expires_at").is_none(), "{preview}");
    // The administrator sees the cache state.
    let r = s
        .http
        .post(s.url("/admin/cimd/resolve"))
        .bearer_auth(ADMIN)
        .header("X-Authio-Project", "proj_demo")
        .header("content-type", "application/json")
        .body(json!({ "client_id": client_id }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let detailed: Value = r.json().await.unwrap();
    assert_eq!(detailed["from_cache"], true, "{detailed}");
    assert!(detailed["cache_expires_at"].is_string(), "{detailed}");
    let r = s
        .http
        .post(s.url("/admin/cimd/resolve"))
        .header("X-Authio-Project", "proj_demo")
        .body(json!({ "client_id": client_id }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "cache details need the admin token");

    // Sign in with the document's URL as client_id.
    let verifier = CodeVerifier::from_random(&[11; 32]);
    let code = s.sign_in(&client_id, redirect, &verifier).await;
    let r = s
        .post_form(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("code_verifier", verifier.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let info = s.introspect(t["access_token"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], client_id);
    assert_eq!(info["aud"], json!([RESOURCE]));
    // Public CIMD clients refresh too.
    let r = s
        .post_form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", &client_id),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let (_, audit) = s
        .admin(reqwest::Method::GET, "/admin/projects/proj_demo/audit", None)
        .await;
    assert!(audit.to_string().contains("oauth_client.cimd_resolved"));
}

#[tokio::test]
async fn missing_cimd_document_is_an_error_page_and_an_audit_event() {
    let docs = DocumentServer::start("http://127.0.0.1:7777/cb").await;
    let s = start_with(true, Some(docs.ca_pem.clone().into_bytes())).await;
    let missing = docs.url("/missing.json");

    let preview = s.preview(&missing).await;
    assert_eq!(preview["status"], "failed", "{preview}");
    assert_eq!(preview["reason"], "http_status");
    assert_eq!(preview["http_status"], 404);

    let verifier = CodeVerifier::from_random(&[12; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &missing)
        .append_pair("redirect_uri", "http://127.0.0.1:7777/cb")
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .finish();
    let r = s
        .http
        .get(s.url(&format!("/oauth2/authorize?{query}")))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("location").is_none(),
        "a CIMD failure is never redirected"
    );
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("http_status"));

    let (_, audit) = s
        .admin(reqwest::Method::GET, "/admin/projects/proj_demo/audit", None)
        .await;
    let failures: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "oauth_client.cimd_fetch_failed")
        .collect();
    assert_eq!(failures.len(), 2, "{audit}");
    assert_eq!(failures[0]["reason"], "http_status");
    assert_eq!(failures[0]["http_status"], 404);
    assert_eq!(failures[0]["client_id"], missing);
}

#[tokio::test]
async fn an_issuer_with_a_path_is_discoverable_and_served_under_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{origin}/t1");
    let config = app::Config {
        issuer: Issuer::new_allowing_loopback_http_for_development(issuer.clone()).unwrap(),
        admin_token: ADMIN.into(),
        auto_approve: true,
        allow_loopback_cimd: false,
        cimd_root_cert: None,
        dcr_mode: None,
        resource: ResourceUri::parse(RESOURCE).unwrap(),
        introspection_token: INTROSPECT.into(),
        upstream: None,
    };
    let app = app::App::new(config).await.unwrap();
    let router = app.router().await.unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap()
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The MCP discovery order for an issuer with a path.
    for path in [
        "/.well-known/oauth-authorization-server/t1",
        "/.well-known/openid-configuration/t1",
        "/t1/.well-known/openid-configuration",
    ] {
        let r = http.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["issuer"], issuer);
        assert_eq!(v["token_endpoint"], format!("{issuer}/oauth2/token"));
    }
    // The endpoints live under the issuer's path.
    let iat: Value = http
        .post(format!("{origin}/admin/projects/proj_demo/iats"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .post(format!("{issuer}/oauth2/register"))
        .bearer_auth(iat["token"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(SEED_STEP_3B)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let verifier = CodeVerifier::from_random(&[13; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .finish();
    let r = http
        .get(format!("{issuer}/oauth2/authorize?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.contains(&format!(
        "iss={}",
        url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect::<String>()
    )));
}

/// `/metrics` serves the library's metrics as Prometheus text behind the
/// admin token, and every response carries the request id its log lines
/// were tagged with.
#[tokio::test]
async fn metrics_behind_the_admin_token_and_request_ids() {
    app::install_metrics();
    let s = start(false).await;
    let r = s
        .post_form(
            "/oauth2/token",
            &[("grant_type", "authorization_code"), ("code", "x")],
            None,
        )
        .await;
    assert_eq!(r.status(), 401);
    let id = r.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let iat = s.issue_iat().await;
    let (status, _) = s
        .register(
            &iat,
            r#"{"redirect_uris":["https://client.example.com/cb"],"token_endpoint_auth_method":"none"}"#,
        )
        .await;
    assert_eq!(status, 201);

    let anonymous = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let text = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "authio_requests_total{endpoint=\"token\",outcome=\"invalid_client\"}",
        "authio_requests_total{endpoint=\"register\",outcome=\"ok\"}",
        "authio_request_duration_seconds",
        "authio_iat_uses_total",
        "authio_audit_events_total{event=\"oauth_client.registered\"}",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // Nothing secret or client-chosen in a label.
    assert!(!text.contains(&iat));
    assert!(!text.contains("client.example.com"));
}

/// Issue 18, point 1: 40 anonymous authorization requests naming junk URLs
/// on a client's host, and a dozen anonymous previews, do not lock out
/// the real client of that host, even when its document is never cached
/// (`no-store`: every sign-in revalidates it).
#[tokio::test]
async fn anonymous_junk_on_a_client_host_does_not_lock_out_the_known_client() {
    let redirect = "http://127.0.0.1:7777/cb";
    let docs = DocumentServer::start_with_cache(redirect, "no-store").await;
    let s = start_with(true, Some(docs.ca_pem.clone().into_bytes())).await;
    let client_id = docs.url("/client.json");
    let verifier = CodeVerifier::from_random(&[12; 32]);
    s.sign_in(&client_id, redirect, &verifier).await;

    let mut refused = 0;
    for n in 0..40 {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &docs.url(&format!("/junk/{n}/c.json")))
            .append_pair("redirect_uri", redirect)
            .finish();
        let r = s
            .http
            .get(s.url(&format!("/oauth2/authorize?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let page = r.text().await.unwrap();
        refused += usize::from(page.contains("rate_limited"));
    }
    assert!(refused > 0, "the attacker's source ran out of first fetches");
    for n in 0..12 {
        let v = s.preview(&docs.url(&format!("/junk/p{n}.json"))).await;
        assert_eq!(v["status"], "failed");
    }
    // The real client still signs in: its revalidation has its own budget.
    let code = s.sign_in(&client_id, redirect, &verifier).await;
    let r = s
        .post_form(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("code_verifier", verifier.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// Issue 18, point 8: the consent cookie is `Secure` whenever the issuer
/// is https.
#[tokio::test]
async fn consent_cookie_is_secure_when_the_issuer_is_https() {
    let s = start_with_issuer(false, None, Some("https://auth.example.com")).await;
    let iat = s.issue_iat().await;
    let body = json!({"redirect_uris": ["http://127.0.0.1:5555/cb"], "client_name": "App", "token_endpoint_auth_method": "none"});
    let (_, v) = s.register(&iat, &body.to_string()).await;
    let verifier = CodeVerifier::from_random(&[9; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", v["client_id"].as_str().unwrap())
        .append_pair("redirect_uri", "http://127.0.0.1:5555/cb")
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .finish();
    let r = s
        .http
        .get(s.url(&format!("/oauth2/authorize?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
}

/// Issue 18, point 8: the introspection credential is the demo project's
/// only; presenting it for another project is refused.
#[tokio::test]
async fn introspection_credentials_are_scoped_to_their_project() {
    let s = start(true).await;
    let for_project = |project: &'static str| {
        s.http
            .post(s.url("/oauth2/introspect"))
            .header("X-Authio-Project", project)
            .bearer_auth(INTROSPECT)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=whatever")
            .send()
    };
    assert_eq!(for_project("proj_demo").await.unwrap().status(), 200);
    assert_eq!(for_project("proj_other").await.unwrap().status(), 401);
}

/// Issue 18, point 5: 600 anonymous rejected registrations do not bury a
/// reuse detection: it stays in the default listing, the listing filters
/// by event name and pages, and the rejections are counted per minute.
#[tokio::test]
async fn security_events_are_not_buried_by_anonymous_rejections() {
    let s = start(true).await;
    let iat = s.issue_iat().await;
    let (_, v) = s.register(&iat, SEED_STEP_3B).await;
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    let redirect = "https://my-mcp-server.example.com/oauth/callback";
    let verifier = CodeVerifier::from_random(&[13; 32]);
    let code = s.sign_in(&client_id, redirect, &verifier).await;
    for expected in [200, 400] {
        let r = s
            .post_form(
                "/oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("client_id", &client_id),
                    ("code_verifier", verifier.as_str()),
                ],
                None,
            )
            .await;
        assert_eq!(r.status(), expected, "the second is a replay");
    }
    for _ in 0..600 {
        let (status, _) = s.register("iatk_bogus", SEED_STEP_3B).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (_, all) = s
        .admin(reqwest::Method::GET, "/admin/projects/proj_demo/audit", None)
        .await;
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"authorization_code.reuse_detected"), "{names:?}");
    let rejected = names
        .iter()
        .filter(|n| **n == "oauth_client.registration_rejected")
        .count();
    assert_eq!(rejected, 100, "only samples of the rejections are kept whole");
    let (_, only) = s
        .admin(
            reqwest::Method::GET,
            "/admin/projects/proj_demo/audit?event=authorization_code.reuse_detected",
            None,
        )
        .await;
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    // Paging: two events per page, newest page first, chained by `before`.
    let r = s
        .http
        .get(s.url("/admin/projects/proj_demo/audit?limit=2"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let next: u64 = r.headers()["x-next-cursor"].to_str().unwrap().parse().unwrap();
    let first: Value = r.json().await.unwrap();
    assert_eq!(first.as_array().unwrap().len(), 2);
    let (_, second) = s
        .admin(
            reqwest::Method::GET,
            &format!("/admin/projects/proj_demo/audit?limit=2&before={next}"),
            None,
        )
        .await;
    assert_eq!(second.as_array().unwrap().len(), 2);
    assert_ne!(second, first);
    assert!(second[1]["at"].as_str().unwrap() <= first[0]["at"].as_str().unwrap());
    let (_, counts) = s
        .admin(reqwest::Method::GET, "/admin/projects/proj_demo/audit/rejections", None)
        .await;
    let total: u64 = counts
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event"] == "oauth_client.registration_rejected")
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 600);
}

/// Issue 18, point 4: pending consents are capped per source; a flood
/// from one address does not stop another address's user from signing in.
#[tokio::test]
async fn pending_consents_are_capped_per_source() {
    let s = start(false).await;
    let iat = s.issue_iat().await;
    let body = json!({"redirect_uris": ["http://127.0.0.1:5555/cb"], "client_name": "App", "token_endpoint_auth_method": "none"});
    let (_, v) = s.register(&iat, &body.to_string()).await;
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let (attacker, user) = (from([127, 0, 0, 2]), from([127, 0, 0, 3]));
    let verifier = CodeVerifier::from_random(&[14; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", "http://127.0.0.1:5555/cb")
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .finish();
    let url = s.url(&format!("/oauth2/authorize?{query}"));
    let mut shown = 0;
    let mut refused = 0;
    for _ in 0..40 {
        match attacker.get(&url).send().await.unwrap().status().as_u16() {
            200 => shown += 1,
            503 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((shown, refused), (32, 8));
    assert_eq!(
        user.get(&url).send().await.unwrap().status(),
        200,
        "another source still gets its page"
    );
}
