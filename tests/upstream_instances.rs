//! Upstream login across example-server PROCESSES, over real sockets: two
//! instances of the relying party (A and B) share one PostgreSQL database
//! and one issuer (as behind a load balancer); a third process is their
//! OpenID provider. A login started on A is finished by the provider's
//! callback delivered to B; a replayed callback fails on either; of
//! concurrent deliveries of one callback exactly one signs the user in;
//! after both instances restart, the user and the remembered consent are
//! still there, so the returning user goes straight back to the client.
//!
//! Runs when `AUTHIO_TEST_DATABASE_URL` names a PostgreSQL server (the
//! test creates and drops a database of its own); otherwise it prints one
//! line and passes. Spawns the example binary cargo built for the tests
//! (`target/debug/examples/server`; `cargo build --example server` first
//! when running this test alone), or the one `AUTHIO_TEST_SERVER_BIN`
//! names.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod sql_support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, server_binary};

use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-upstream-instances";
const INTROSPECT: &str = "introspect-upstream-instances";
/// An https redirect URI: a client whose redirect URIs are all loopback
/// ones never has its consent remembered (RFC 8252 section 8.6), and
/// this test never follows the redirect to the client anyway.
const MCP_REDIRECT: &str = "https://mcp-client.example/callback";

/// One server process, killed on drop.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(port: u16, args: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("authio-upstream-instances-{port}.log"));
        let mut child = Command::new(server_binary())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-token", ADMIN, "--introspection-token", INTROSPECT])
            .args(["--purge-interval-secs", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http
                .get(format!("{base}/.well-known/oauth-authorization-server"))
                .send()
                .await
                && r.status() == 200
            {
                return Self { child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "instance on port {port} did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relying-party instance on `port`, answering for `issuer`, signing
/// users in at `idp`.
async fn relying_party(port: u16, issuer: &str, db: &str, idp: &str, client_id: &str) -> Instance {
    Instance::start(
        port,
        &[
            "--issuer",
            issuer,
            "--database-url",
            db,
            "--upstream-issuer",
            idp,
            "--upstream-client-id",
            client_id,
            "--allow-http-upstream",
        ],
    )
    .await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
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

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// Registers a public client (PKCE only) redirecting to `redirect_uri`
/// at `base`, with an initial access token from its admin API.
async fn register(http: &reqwest::Client, base: &str, redirect_uri: &str) -> String {
    let r = http
        .post(format!("{base}/admin/projects/proj_demo/iats"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(json!({"max_uses": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let iat: Value = r.json().await.unwrap();
    let r = http
        .post(format!("{base}/oauth2/register"))
        .bearer_auth(iat["token"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(
            json!({"redirect_uris": [redirect_uri], "client_name": "upstream-instances",
                "token_endpoint_auth_method": "none"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["client_id"].as_str().unwrap().to_owned()
}

/// A login the MCP client started at one relying-party instance: the
/// provider's callback (addressed to the issuer) and the browser-binding
/// cookie.
struct Started {
    callback: String,
    cookie: String,
    verifier: CodeVerifier,
}

struct Setup {
    http: reqwest::Client,
    issuer: String,
    mcp_client: String,
}

impl Setup {
    /// Starts a login at `base` and signs in at the provider (which
    /// auto-approves): the provider's redirect back, not yet delivered.
    async fn start(&self, base: &str, n: u8) -> Started {
        let verifier = CodeVerifier::from_random(&[n; 32]);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.mcp_client)
            .append_pair("redirect_uri", MCP_REDIRECT)
            .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "mcp-state")
            .append_pair("scope", "mcp:read")
            .finish();
        let r = self
            .http
            .get(format!("{base}/v1/auth/oauth/oidc/authorize?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{}", r.text().await.unwrap());
        let cookie = set_cookie(&r, "authio_ul_").expect("the browser-binding cookie");
        let to_idp = location(&r);
        let r = self.http.get(&to_idp).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "the provider auto-approves");
        let callback = location(&r);
        assert!(
            callback.starts_with(&format!("{}/v1/auth/oauth/oidc/callback?", self.issuer)),
            "{callback}"
        );
        Started {
            callback,
            cookie,
            verifier,
        }
    }

    /// Delivers the provider's callback to the instance at `base` (as a
    /// load balancer would).
    async fn deliver(&self, started: &Started, base: &str) -> reqwest::Response {
        let url = started.callback.replacen(&self.issuer, base, 1);
        self.http
            .get(url)
            .header("cookie", &started.cookie)
            .send()
            .await
            .unwrap()
    }

    /// Approves the consent page `page` served by `base`: the redirect
    /// to the MCP client.
    async fn approve(&self, base: &str, page: reqwest::Response) -> String {
        assert_eq!(page.status(), 200);
        let cookie = set_cookie(&page, "authio_consent=").unwrap();
        let html = page.text().await.unwrap();
        assert!(
            html.contains("signed-in-as"),
            "the consent page names the signed-in user"
        );
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request_id", &hidden(&html, "request_id"))
            .append_pair("csrf", &hidden(&html, "csrf"))
            .append_pair("action", "approve")
            .finish();
        let r = self
            .http
            .post(format!("{base}/consent"))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        location(&r)
    }

    /// Redeems the code of a redirect to the MCP client at `base`: the
    /// access token's subject.
    async fn subject(&self, base: &str, redirect: &str, verifier: &CodeVerifier) -> String {
        assert!(redirect.starts_with(MCP_REDIRECT), "{redirect}");
        let code = param(redirect, "code").unwrap_or_else(|| panic!("no code: {redirect}"));
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", MCP_REDIRECT)
            .append_pair("client_id", &self.mcp_client)
            .append_pair("code_verifier", verifier.as_str())
            .finish();
        let r = self
            .http
            .post(format!("{base}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tokens: Value = r.json().await.unwrap();
        let r = self
            .http
            .post(format!("{base}/oauth2/introspect"))
            .bearer_auth(INTROSPECT)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", tokens["access_token"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        let info: Value = r.json().await.unwrap();
        assert_eq!(info["active"], true, "{info}");
        info["sub"].as_str().unwrap().to_owned()
    }

    async fn failure_reasons(&self, base: &str) -> Vec<String> {
        let r = self
            .http
            .get(format!(
                "{base}/admin/projects/proj_demo/audit?event=upstream.login_failed&limit=100"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_logins_are_shared_by_instances_and_survive_restarts() {
    let Some(db) = sql_support::pg_database("upstream_logins_shared_by_instances").await else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = http();

    // The provider: an example server with the demo login, approving
    // every request as user_demo, on its own memory storage.
    let idp_port = free_port();
    let idp = Instance::start(idp_port, &["--database-url", "memory:", "--auto-approve"]).await;

    // A and B: one issuer (A's address, as the load balancer's), one
    // database. The relying party is a public client of the provider.
    let (port_a, port_b) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{port_a}");
    let rp_client = register(&http, &idp.base, &format!("{issuer}/v1/auth/oauth/oidc/callback")).await;
    let a = relying_party(port_a, &issuer, &db.url, &idp.base, &rp_client).await;
    let b = relying_party(port_b, &issuer, &db.url, &idp.base, &rp_client).await;
    let (a_url, b_url) = (a.base.clone(), b.base.clone());
    let setup = Setup {
        mcp_client: register(&http, &a_url, MCP_REDIRECT).await,
        http,
        issuer: issuer.clone(),
    };
    let alice = authio_mcp::upstream::local_subject(&idp.base, "user_demo");

    // Started on A, the callback lands on B: B finds the login in the
    // database, signs the user in and asks for consent.
    let first = setup.start(&a_url, 1).await;
    let page = setup.deliver(&first, &b_url).await;
    let redirect = setup.approve(&b_url, page).await;
    assert_eq!(setup.subject(&a_url, &redirect, &first.verifier).await, alice.as_str());

    // The same callback again, on either instance: refused with an error
    // page (the login's one answer went to the MCP client already).
    for base in [&a_url, &b_url] {
        let r = setup.deliver(&first, base).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get("location").is_none(), "never a second redirect");
    }
    // B's rejection reaches the database with its next rejection flush
    // (once a second): read on A until it is there.
    let mut reasons = Vec::new();
    for _ in 0..50 {
        reasons = setup.failure_reasons(&a_url).await;
        if reasons.iter().filter(|r| *r == "replayed_callback").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reasons.iter().filter(|r| *r == "replayed_callback").count(),
        2,
        "{reasons:?}"
    );

    // One callback delivered 20 times at once, split across A and B:
    // exactly one delivery signs the user in (returning user, same
    // client, same scopes: straight back with a code).
    let second = setup.start(&b_url, 2).await;
    let responses = futures_util::future::join_all((0..20).map(|i| {
        let base = if i % 2 == 0 { &a_url } else { &b_url };
        setup.deliver(&second, base)
    }))
    .await;
    let mut codes = Vec::new();
    for r in &responses {
        if r.status() == StatusCode::FOUND {
            let l = location(r);
            assert!(param(&l, "code").is_some(), "{l}");
            codes.push(l);
        } else {
            // The others are replays: an error page, no redirect.
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
            assert!(r.headers().get("location").is_none());
        }
    }
    assert_eq!(codes.len(), 1, "exactly one delivery of one callback signs in");
    assert_eq!(setup.subject(&b_url, &codes[0], &second.verifier).await, alice.as_str());

    // Both instances go away; a new one on the same database still knows
    // the user and the consent: the returning user is not asked again.
    a.stop();
    b.stop();
    let a2 = relying_party(port_a, &issuer, &db.url, &idp.base, &rp_client).await;
    let third = setup.start(&a2.base, 3).await;
    let r = setup.deliver(&third, &a2.base).await;
    assert_eq!(r.status(), StatusCode::FOUND, "remembered consent: no page");
    let redirect = location(&r);
    assert_eq!(
        setup.subject(&a2.base, &redirect, &third.verifier).await,
        alice.as_str()
    );

    // And a login started before the restart (still in flight in the
    // database) completes after it.
    let pending = setup.start(&a2.base, 4).await;
    a2.stop();
    let b2 = relying_party(port_b, &issuer, &db.url, &idp.base, &rp_client).await;
    let r = setup.deliver(&pending, &b2.base).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let redirect = location(&r);
    assert_eq!(
        setup.subject(&b2.base, &redirect, &pending.verifier).await,
        alice.as_str()
    );
    drop(b2);
    drop(idp);
}
