//! The example server's admin API for the client and grant lifecycle and
//! the known resources, over real loopback sockets: the application on an
//! ephemeral port driven by a real HTTP client, and (with
//! `AUTHIO_TEST_DATABASE_URL`) two example-server processes on one
//! PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;
#[cfg(feature = "postgres")]
mod sql_support;

use std::net::SocketAddr;

use authio_mcp::dcr::IatOptions;
use authio_mcp::discovery::Issuer;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::resource::ResourceUri;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const INTROSPECT: &str = "introspect-secret";
const RESOURCE: &str = "http://127.0.0.1:8090/mcp";
const OTHER: &str = "https://crm.example.com/mcp";
const REDIRECT: &str = "https://client.example.com/cb";

/// An HTTP client for one server (or several sharing a database).
#[derive(Clone)]
struct Http(reqwest::Client);

impl Http {
    fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(32)
                .build()
                .unwrap(),
        )
    }

    async fn admin(&self, base: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.0.request(method, format!("{base}{path}")).bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, base: &str, name: &str) -> String {
        let (s, v) = self
            .admin(
                base,
                Method::POST,
                "/admin/projects/proj_demo/iats",
                Some(json!({"max_uses": 1})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let iat = v["token"].as_str().unwrap().to_owned();
        let body = json!({"redirect_uris": [REDIRECT], "client_name": name, "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"]});
        let r = self
            .0
            .post(format!("{base}/oauth2/register"))
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

    /// `GET /oauth2/authorize` (auto-approved): the redirect's `Location`,
    /// or the status of a page.
    async fn authorize(&self, base: &str, client_id: &str, resource: &str, seed: u8) -> Result<url::Url, StatusCode> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", CodeChallenge::s256(&verifier(seed)).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "s")
            .append_pair("resource", resource)
            .append_pair("scope", "mcp:read")
            .finish();
        let r = self
            .0
            .get(format!("{base}/oauth2/authorize?{query}"))
            .send()
            .await
            .unwrap();
        if r.status() != StatusCode::FOUND {
            return Err(r.status());
        }
        Ok(url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap())
    }

    async fn form(&self, base: &str, path: &str, pairs: &[(&str, &str)], bearer: Option<&str>) -> (StatusCode, Value) {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        let mut req = self
            .0
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(ser.finish());
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// Signs `client_id` in for `resource` and exchanges the code: the
    /// token response.
    async fn tokens(&self, base: &str, client_id: &str, resource: &str, seed: u8) -> Value {
        let location = self.authorize(base, client_id, resource, seed).await.unwrap();
        let code = param(&location, "code").unwrap_or_else(|| panic!("no code in {location}"));
        let v = verifier(seed);
        let (s, t) = self
            .form(
                base,
                "/oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("client_id", client_id),
                    ("code_verifier", v.as_str()),
                ],
                None,
            )
            .await;
        assert_eq!(s, 200, "{t}");
        t
    }

    async fn refresh(&self, base: &str, client_id: &str, token: &str) -> (StatusCode, Value) {
        self.form(
            base,
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", client_id),
            ],
            None,
        )
        .await
    }

    async fn active(&self, base: &str, token: &str) -> bool {
        let (s, v) = self
            .form(base, "/oauth2/introspect", &[("token", token)], Some(INTROSPECT))
            .await;
        assert_eq!(s, 200, "{v}");
        v["active"].as_bool().unwrap()
    }
}

fn verifier(seed: u8) -> CodeVerifier {
    CodeVerifier::from_random(&[seed; 32])
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

struct Running {
    base: String,
    http: Http,
    app: app::App,
}

async fn start() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let config = app::Config {
        issuer: Issuer::new_allowing_loopback_http_for_development(base.clone()).unwrap(),
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
    Running {
        base,
        http: Http::new(),
        app,
    }
}

impl Running {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.http.admin(&self.base, method, path, body).await
    }
}

#[tokio::test]
async fn clients_are_listed_shown_disabled_enabled_and_deleted() {
    let s = start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(s.http.register(&s.base, &format!("Client {n}")).await);
    }
    // Pages of two, oldest first (same second: by id), through `next`.
    let mut listed = Vec::new();
    let mut path = "/admin/projects/proj_demo/clients?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, v) = s.admin(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{v}");
        pages += 1;
        for c in v["clients"].as_array().unwrap() {
            assert!(
                c.get("secret_hash").is_none() && c.get("client_secret").is_none(),
                "{c}"
            );
            assert_eq!(c["disabled"], false);
            assert_eq!(c["confidential"], false);
            assert_eq!(c["redirect_uris"], json!([REDIRECT]));
            listed.push((
                c["issued_at"].as_i64().unwrap(),
                c["client_id"].as_str().unwrap().to_owned(),
            ));
        }
        match v["next"].as_str() {
            Some(next) => {
                path = format!(
                    "/admin/projects/proj_demo/clients?limit=2&after={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    // Oldest first, the id breaking ties within a second; each once.
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    let mut all: Vec<_> = listed.into_iter().map(|(_, id)| id).collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected);
    for bad in ["limit=0", "limit=501", "limit=x", "after=nope", "after=1.a%2Fb"] {
        let (status, v) = s
            .admin(Method::GET, &format!("/admin/projects/proj_demo/clients?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"], "invalid_request");
    }

    let id = ids[0].clone();
    let (status, v) = s
        .admin(Method::GET, &format!("/admin/projects/proj_demo/clients/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["client_id"], id.as_str());
    assert_eq!(v["client_name"], "Client 0");
    for unknown in ["client_000000000000000000000000", "nope"] {
        let (status, v) = s
            .admin(
                Method::GET,
                &format!("/admin/projects/proj_demo/clients/{unknown}"),
                None,
            )
            .await;
        assert_eq!(status, 404, "{v}");
        assert_eq!(v["error_description"], "unknown client");
    }

    // A signed-in client, then disabled.
    let t = s.http.tokens(&s.base, &id, RESOURCE, 1).await;
    let (access, refresh) = (
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert!(s.http.active(&s.base, &access).await);
    let (status, v) = s
        .admin(
            Method::POST,
            &format!("/admin/projects/proj_demo/clients/{id}/disable"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["disabled"], true);
    assert!(v["disabled_at"].is_i64());
    assert!(!s.http.active(&s.base, &access).await);
    assert!(!s.http.active(&s.base, &refresh).await);
    let (status, v) = s.http.refresh(&s.base, &id, &refresh).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"], "invalid_client");
    // Authorization is an error page, not a redirect.
    assert_eq!(
        s.http.authorize(&s.base, &id, RESOURCE, 2).await.unwrap_err(),
        StatusCode::BAD_REQUEST
    );
    let (_, list) = s.admin(Method::GET, "/admin/projects/proj_demo/clients", None).await;
    let shown = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(shown["disabled"], true);

    // Enabled again: the same tokens work.
    let (status, v) = s
        .admin(
            Method::POST,
            &format!("/admin/projects/proj_demo/clients/{id}/enable"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["disabled"], false);
    assert_eq!(v["disabled_at"], Value::Null);
    assert!(s.http.active(&s.base, &access).await);
    let (status, v) = s.http.refresh(&s.base, &id, &refresh).await;
    assert_eq!(status, 200, "{v}");
    let rotated = v["access_token"].as_str().unwrap().to_owned();

    // Deleted: its grant is revoked, it is gone.
    let (status, v) = s
        .admin(Method::DELETE, &format!("/admin/projects/proj_demo/clients/{id}"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"client_id": id, "grants_revoked": 1}));
    assert!(!s.http.active(&s.base, &rotated).await);
    let (status, _) = s
        .admin(Method::GET, &format!("/admin/projects/proj_demo/clients/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin(Method::DELETE, &format!("/admin/projects/proj_demo/clients/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let (_, list) = s.admin(Method::GET, "/admin/projects/proj_demo/clients", None).await;
    assert_eq!(list["clients"].as_array().unwrap().len(), 4);
    // The audit log tells the story.
    let (_, events) = s.admin(Method::GET, "/admin/projects/proj_demo/audit", None).await;
    let names: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    for n in [
        "oauth_client.disabled",
        "oauth_client.disabled_refused",
        "oauth_client.enabled",
        "oauth_client.deleted",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
}

#[tokio::test]
async fn a_users_grants_are_listed_and_revoked_one_or_all() {
    let s = start().await;
    let (a, b) = (s.http.register(&s.base, "A").await, s.http.register(&s.base, "B").await);
    let ta = s.http.tokens(&s.base, &a, RESOURCE, 1).await;
    let tb = s.http.tokens(&s.base, &b, RESOURCE, 2).await;
    let grants = "/admin/projects/proj_demo/users/user_demo/grants";
    let (status, v) = s.admin(Method::GET, &format!("{grants}?limit=1"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["grants"].as_array().unwrap().len(), 1);
    let next = v["next"].as_str().unwrap().to_owned();
    let page_one = v["grants"][0].clone();
    let (_, v) = s
        .admin(Method::GET, &format!("{grants}?limit=1&after={next}"), None)
        .await;
    assert_eq!(v["next"], Value::Null);
    let page_two = v["grants"][0].clone();
    // Granted in the same second: ordered by grant id, so either client
    // may come first; each exactly once.
    let mut clients = vec![
        page_one["client_id"].as_str().unwrap().to_owned(),
        page_two["client_id"].as_str().unwrap().to_owned(),
    ];
    clients.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(clients, expected);
    let first = if page_one["client_id"] == a.as_str() {
        page_one
    } else {
        page_two
    };
    assert_eq!(first["subject"], "user_demo");
    assert_eq!(first["scope"], "mcp:read");
    assert_eq!(first["resources"], json!([RESOURCE]));
    assert!(first["granted_at"].is_i64());
    assert!(first["last_used_at"].is_i64(), "exchanged: used");
    assert!(first["expires_at"].is_i64());
    // Another user has none.
    let (_, v) = s
        .admin(Method::GET, "/admin/projects/proj_demo/users/nobody/grants", None)
        .await;
    assert_eq!(v["grants"], json!([]));

    // Revoke one.
    let id = first["grant_id"].as_str().unwrap();
    let (status, v) = s.admin(Method::DELETE, &format!("{grants}/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["grant_id"], id);
    assert!(!s.http.active(&s.base, ta["access_token"].as_str().unwrap()).await);
    assert!(!s.http.active(&s.base, ta["refresh_token"].as_str().unwrap()).await);
    assert!(s.http.active(&s.base, tb["access_token"].as_str().unwrap()).await);
    let (status, _) = s.admin(Method::DELETE, &format!("{grants}/{id}"), None).await;
    assert_eq!(status, 404, "revoked already");
    let (status, _) = s
        .admin(
            Method::DELETE,
            &format!(
                "/admin/projects/proj_demo/users/nobody/grants/{}",
                first["grant_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 404, "not that user's");
    let (status, _) = s.admin(Method::DELETE, &format!("{grants}/grant_nope"), None).await;
    assert_eq!(status, 404);

    // Revoke all (account deletion).
    let (status, v) = s.admin(Method::DELETE, grants, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"subject": "user_demo", "grants_revoked": 1}));
    assert!(!s.http.active(&s.base, tb["access_token"].as_str().unwrap()).await);
    let (status, v) = s.http.refresh(&s.base, &b, tb["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "invalid_grant");
    let (_, v) = s.admin(Method::GET, grants, None).await;
    assert_eq!(v["grants"], json!([]));
    // Subjects are validated.
    let (status, _) = s
        .admin(Method::GET, "/admin/projects/proj_demo/users/a%0Ab/grants", None)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn only_known_resources_get_tokens_and_the_list_is_managed_through_the_api() {
    let s = start().await;
    let client = s.http.register(&s.base, "R").await;
    let resources = "/admin/projects/proj_demo/resources";
    // The demo project knows its MCP server, by name.
    let (status, v) = s.admin(Method::GET, resources, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resource_policy"], "known_only");
    assert_eq!(v["default_resource"], RESOURCE);
    assert_eq!(
        v["resources"],
        json!([{"resource": RESOURCE, "name": "Demo MCP server", "default": true}])
    );
    assert_eq!(v["lints"], json!([]));
    // The default works; an unknown resource gets invalid_target.
    let t = s.http.tokens(&s.base, &client, RESOURCE, 1).await;
    assert!(s.http.active(&s.base, t["access_token"].as_str().unwrap()).await);
    let refused = s.http.authorize(&s.base, &client, OTHER, 2).await.unwrap();
    assert_eq!(param(&refused, "error").as_deref(), Some("invalid_target"));
    assert!(param(&refused, "code").is_none());

    // Listed: accepted, with its name.
    let (status, v) = s
        .admin(
            Method::POST,
            resources,
            Some(json!({"resource": OTHER, "name": "Acme CRM"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["resources"][1],
        json!({"resource": OTHER, "name": "Acme CRM", "default": false})
    );
    let t = s.http.tokens(&s.base, &client, OTHER, 3).await;
    let crm_refresh = t["refresh_token"].as_str().unwrap().to_owned();
    // Renamed in place.
    let (_, v) = s
        .admin(Method::POST, resources, Some(json!({"resource": OTHER, "name": "CRM"})))
        .await;
    assert_eq!(v["resources"].as_array().unwrap().len(), 2);
    assert_eq!(v["resources"][1]["name"], "CRM");
    for bad in [
        json!({"resource": OTHER, "name": ""}),
        json!({"resource": OTHER, "name": "C\u{202E}RM"}),
        json!({"resource": "https://x.example.com/#f", "name": "X"}),
        json!({"resource": OTHER}),
        json!({"resource": OTHER, "name": "X", "extra": 1}),
    ] {
        let (status, v) = s.admin(Method::POST, resources, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"], "invalid_request");
    }
    // Removed: refused again, also at refresh for the grant made before.
    let remove = format!(
        "{resources}?resource={}",
        url::form_urlencoded::byte_serialize(OTHER.as_bytes()).collect::<String>()
    );
    let (status, v) = s.admin(Method::DELETE, &remove, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resources"].as_array().unwrap().len(), 1);
    let (status, _) = s.admin(Method::DELETE, &remove, None).await;
    assert_eq!(status, 404);
    let (status, _) = s.admin(Method::DELETE, resources, None).await;
    assert_eq!(status, 400, "the resource parameter is required");
    let refused = s.http.authorize(&s.base, &client, OTHER, 4).await.unwrap();
    assert_eq!(param(&refused, "error").as_deref(), Some("invalid_target"));
    let (status, v) = s.http.refresh(&s.base, &client, &crm_refresh).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "invalid_target");

    // `any` is an explicit setting, with a lint.
    let (status, v) = s
        .admin(
            Method::PATCH,
            "/admin/projects/proj_demo",
            Some(json!({"resource_policy": "any"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["lints"], json!(["any_resource"]));
    let t = s
        .http
        .tokens(&s.base, &client, "https://anything.example.com/mcp", 5)
        .await;
    assert!(s.http.active(&s.base, t["access_token"].as_str().unwrap()).await);
    // The whole list through PATCH, back to known_only.
    let (status, v) = s
        .admin(
            Method::PATCH,
            "/admin/projects/proj_demo",
            Some(json!({"resource_policy": "known_only", "resources": [{"resource": OTHER, "name": "CRM"}]})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["settings"]["resources"], json!([{"resource": OTHER, "name": "CRM"}]));
    assert!(s.http.tokens(&s.base, &client, OTHER, 6).await["access_token"].is_string());
    let refused = s
        .http
        .authorize(&s.base, &client, "https://anything.example.com/mcp", 7)
        .await
        .unwrap();
    assert_eq!(param(&refused, "error").as_deref(), Some("invalid_target"));
    let (status, v) = s
        .admin(
            Method::PATCH,
            "/admin/projects/proj_demo",
            Some(json!({"resources": [{"resource": OTHER, "name": "A"}, {"resource": OTHER, "name": "B"}]})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    // The refusals are audited.
    let (_, events) = s
        .admin(
            Method::GET,
            "/admin/projects/proj_demo/audit?event=resource.refused",
            None,
        )
        .await;
    assert!(events.as_array().unwrap().len() >= 3, "{events}");
}

/// A project whose settings were stored before resources had names and a
/// policy (`allowed_resources` empty, no `resource_policy`): it keeps
/// working for its default resource and refuses others.
#[tokio::test]
async fn settings_stored_by_an_earlier_version_default_to_the_known_resource() {
    let s = start().await;
    let mut v = serde_json::to_value(ProjectSettings::default()).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("resources");
    obj.remove("resource_policy");
    obj.insert("allowed_resources".into(), json!([]));
    obj.insert("default_resource".into(), json!(RESOURCE));
    obj.insert("scopes_supported".into(), json!("mcp:read"));
    obj.insert("dcr_mode".into(), json!("initial_access_token"));
    obj.insert("mcp_enabled".into(), json!(true));
    let old: ProjectSettings = serde_json::from_value(v).unwrap();
    let server = s.app.endpoints.server();
    server.put_project(&s.app.project(), old).await.unwrap();
    let client = s.http.register(&s.base, "Old").await;
    assert!(s.http.tokens(&s.base, &client, RESOURCE, 1).await["access_token"].is_string());
    let refused = s.http.authorize(&s.base, &client, OTHER, 2).await.unwrap();
    assert_eq!(param(&refused, "error").as_deref(), Some("invalid_target"));
}

#[tokio::test]
async fn admin_bodies_must_be_json() {
    let s = start().await;
    let send = |method: Method, path: &str, content_type: Option<&str>, body: &str| {
        let mut req = s.http.0.request(method, format!("{}{path}", s.base)).bearer_auth(ADMIN);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.body(body.to_owned()).send()
    };
    let cases: [(Method, &str, &str); 4] = [
        (Method::POST, "/admin/projects/proj_demo/mcp", r#"{"enabled":true}"#),
        (Method::PATCH, "/admin/projects/proj_demo", r#"{"strict_mode":true}"#),
        (Method::POST, "/admin/projects/proj_demo/iats", r#"{"max_uses":1}"#),
        (
            Method::POST,
            "/admin/projects/proj_demo/resources",
            r#"{"resource":"https://crm.example.com/mcp","name":"CRM"}"#,
        ),
    ];
    for (method, path, body) in &cases {
        for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let r = send(method.clone(), path, ct, body).await.unwrap();
            assert_eq!(r.status(), 415, "{method} {path} {ct:?}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], "invalid_request");
            assert_eq!(
                v["error_description"],
                "the body must be JSON: send Content-Type: application/json"
            );
        }
        // Broken JSON with the right type: 400 naming the problem.
        let r = send(method.clone(), path, Some("application/json"), "{").await.unwrap();
        assert_eq!(r.status(), 400, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON body")
        );
        // The right type, with a charset or a +json type: accepted.
        let r = send(method.clone(), path, Some("application/json; charset=utf-8"), body)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method} {path}");
    }
    let r = send(
        Method::POST,
        "/admin/projects/proj_demo/mcp",
        Some("application/merge-patch+json"),
        r#"{"enabled":true}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // An IAT with no body at all needs no content type.
    let r = send(Method::POST, "/admin/projects/proj_demo/iats", None, "")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn lifecycle_routes_need_the_admin_token() {
    let s = start().await;
    for (method, path) in [
        (Method::GET, "/admin/projects/proj_demo/clients"),
        (
            Method::GET,
            "/admin/projects/proj_demo/clients/client_000000000000000000000000",
        ),
        (
            Method::POST,
            "/admin/projects/proj_demo/clients/client_000000000000000000000000/disable",
        ),
        (
            Method::POST,
            "/admin/projects/proj_demo/clients/client_000000000000000000000000/enable",
        ),
        (
            Method::DELETE,
            "/admin/projects/proj_demo/clients/client_000000000000000000000000",
        ),
        (Method::GET, "/admin/projects/proj_demo/users/user_demo/grants"),
        (Method::DELETE, "/admin/projects/proj_demo/users/user_demo/grants"),
        (
            Method::DELETE,
            "/admin/projects/proj_demo/users/user_demo/grants/grant_00000000000000000000000000000000",
        ),
        (Method::GET, "/admin/projects/proj_demo/resources"),
        (Method::POST, "/admin/projects/proj_demo/resources"),
        (Method::DELETE, "/admin/projects/proj_demo/resources?resource=x"),
    ] {
        for token in [None, Some("wrong")] {
            let mut req = s.http.0.request(method.clone(), format!("{}{path}", s.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} {token:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], "invalid_token");
        }
    }
    // Unknown projects.
    let (status, _) = s.admin(Method::GET, "/admin/projects/proj_nope/clients", None).await;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin(Method::GET, "/admin/projects/proj_nope/users/u/grants", None)
        .await;
    assert_eq!(status, 404);
}

/// Registration's 401 says what is wrong with the initial access token,
/// and a token of another project is "not valid" exactly like one that
/// never existed.
#[tokio::test]
async fn registration_401_says_what_is_wrong_with_the_token() {
    let s = start().await;
    let server = s.app.endpoints.server();
    let other = ProjectId::new("proj_other").unwrap();
    server.put_project(&other, ProjectSettings::default()).await.unwrap();
    let foreign = server.issue_iat(&other, IatOptions::new()).await.unwrap();
    let once = server
        .issue_iat(&s.app.project(), IatOptions::new().max_uses(1))
        .await
        .unwrap();
    let revoked = server.issue_iat(&s.app.project(), IatOptions::new()).await.unwrap();
    server.revoke_iat(&s.app.project(), &revoked.id).await.unwrap();
    let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}).to_string();
    let register = |auth: Option<String>| {
        let mut req = s
            .http
            .0
            .post(format!("{}/oauth2/register", s.base))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let r = register(Some(format!("Bearer {}", once.token.expose_secret())))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cases = [
        (
            None,
            "an initial access token is required: send it as Authorization: Bearer iatk_...",
        ),
        (
            Some("Basic dXNlcjpwYXNz".to_owned()),
            "the Authorization header must be Bearer followed by the initial access token",
        ),
        (
            Some("Bearer iatk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
            "the initial access token is not valid for this project",
        ),
        (
            Some(format!("Bearer {}", foreign.token.expose_secret())),
            "the initial access token is not valid for this project",
        ),
        (
            Some(format!("Bearer {}", once.token.expose_secret())),
            "the initial access token has been used up (max_uses reached)",
        ),
        (
            Some(format!("Bearer {}", revoked.token.expose_secret())),
            "the initial access token was revoked",
        ),
    ];
    let mut answers = Vec::new();
    for (auth, description) in cases {
        let r = register(auth.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_eq!(
            challenge,
            format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_token");
        assert_eq!(v["error_description"], description, "{auth:?}");
        answers.push((challenge, v));
    }
    // Unknown and another project's token: the same answer, byte for byte.
    assert_eq!(answers[2], answers[3]);
}

/// Two example-server processes on one PostgreSQL database: a client
/// disabled through one is refused by the other; revoking every grant of
/// the user through one while the other refreshes leaves no live token
/// on either; a client deleted through one is gone on the other.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_the_lifecycle() {
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    struct Instance(Child, String);
    impl Drop for Instance {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    fn binary() -> std::path::PathBuf {
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
    fn port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
    async fn instance(port: u16, issuer: &str, db: &str) -> Instance {
        let log = std::env::temp_dir().join(format!("authio-lifecycle-{port}.log"));
        let child = Instance(
            Command::new(binary())
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--issuer", issuer, "--database-url", db])
                .args(["--admin-token", ADMIN, "--introspection-token", INTROSPECT])
                .args(["--auto-approve", "--max-clients", "none", "--purge-interval-secs", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
                .spawn()
                .unwrap(),
            format!("http://127.0.0.1:{port}"),
        );
        let base = child.1.clone();
        let http = Http::new().0;
        for _ in 0..200 {
            if let Ok(r) = http
                .get(format!("{base}/.well-known/oauth-authorization-server"))
                .send()
                .await
                && r.status() == 200
            {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "instance did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    let Some(db) = sql_support::pg_database("two_processes_share_the_lifecycle").await else {
        return;
    };
    let (pa, pb) = (port(), port());
    let issuer = format!("http://127.0.0.1:{pa}");
    // One after the other: the first migrates and seeds the project.
    let first = instance(pa, &issuer, &db.url).await;
    let second = instance(pb, &issuer, &db.url).await;
    let (a, b) = (first.1.clone(), second.1.clone());
    let http = Http::new();

    let client = http.register(&a, "Shared").await;
    let t = http.tokens(&b, &client, RESOURCE, 1).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert!(http.active(&a, &access).await);
    let (status, _) = http
        .admin(
            &a,
            Method::POST,
            &format!("/admin/projects/proj_demo/clients/{client}/disable"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!http.active(&b, &access).await, "disabled through A, refused by B");
    let (status, _) = http.refresh(&b, &client, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) = http
        .admin(
            &b,
            Method::POST,
            &format!("/admin/projects/proj_demo/clients/{client}/enable"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(http.active(&a, &access).await, "enabled through B, honoured by A");

    // Twelve grants of the user, refreshed through B while A revokes them all.
    let mut refresh_tokens = vec![t["refresh_token"].as_str().unwrap().to_owned()];
    let mut access_tokens = vec![access];
    for seed in 2..13u8 {
        let t = http
            .tokens(if seed % 2 == 0 { &a } else { &b }, &client, RESOURCE, seed)
            .await;
        refresh_tokens.push(t["refresh_token"].as_str().unwrap().to_owned());
        access_tokens.push(t["access_token"].as_str().unwrap().to_owned());
    }
    let refreshes = futures_util::future::join_all(refresh_tokens.iter().map(|r| {
        let (http, b, client) = (&http, &b, &client);
        async move { http.refresh(b, client, r).await }
    }));
    let revoke = http.admin(
        &a,
        Method::DELETE,
        "/admin/projects/proj_demo/users/user_demo/grants",
        None,
    );
    let (refreshed, (status, v)) = futures_util::future::join(refreshes, revoke).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["grants_revoked"], 12);
    for (s, t) in &refreshed {
        if *s == StatusCode::OK {
            access_tokens.push(t["access_token"].as_str().unwrap().to_owned());
            refresh_tokens.push(t["refresh_token"].as_str().unwrap().to_owned());
        }
    }
    for token in access_tokens.iter().chain(&refresh_tokens) {
        for base in [&a, &b] {
            assert!(
                !http.active(base, token).await,
                "a token outlived the revocation of every grant"
            );
        }
    }
    for r in &refresh_tokens {
        let (status, _) = http.refresh(&b, &client, r).await;
        assert_eq!(status, 400);
    }
    let (_, v) = http
        .admin(
            &b,
            Method::GET,
            "/admin/projects/proj_demo/users/user_demo/grants",
            None,
        )
        .await;
    assert_eq!(v["grants"], json!([]));

    // Deleted through B: gone on A.
    let (status, _) = http
        .admin(
            &b,
            Method::DELETE,
            &format!("/admin/projects/proj_demo/clients/{client}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = http
        .admin(
            &a,
            Method::GET,
            &format!("/admin/projects/proj_demo/clients/{client}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}
