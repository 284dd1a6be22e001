//! The consent page in a real headless browser (Debian's chromium driven
//! through chromedriver's WebDriver API). Opt-in: `cargo test --test
//! browser -- --ignored`, which `.ci/run` does after installing the
//! browser; the plain test command skips it on machines without one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authio_mcp::discovery::Issuer;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::resource::ResourceUri;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed for the browser test (apt-get install chromium chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let mut driver = Self {
            child,
            base,
            session: String::new(),
            http,
        };
        for _ in 0..100 {
            if let Ok(r) = driver.http.get(format!("{}/status", driver.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("authio-chromium-{port}"));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-quic", "--no-first-run", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = driver.call(reqwest::Method::POST, "/session", Some(caps)).await;
        driver.session = v["sessionId"].as_str().expect("a WebDriver session").to_owned();
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn session(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn element(&self, css: &str) -> Option<String> {
        let v = self
            .session(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_object()?.values().next()?.as_str().map(str::to_owned)
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await.unwrap_or_else(|| panic!("no element {css}"));
        self.session(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await.unwrap_or_else(|| panic!("no element {css}"));
        self.session(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({})))
            .await;
        self.session(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Waits until the browser is at a URL starting with `prefix`.
    async fn wait_for_url(&self, prefix: &str) -> String {
        let mut landed = String::new();
        for _ in 0..100 {
            landed = self
                .session(reqwest::Method::GET, "/url", None)
                .await
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if landed.starts_with(prefix) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        landed
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await.unwrap_or_else(|| panic!("no element {css}"));
        self.session(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// A tiny page at the client's redirect URI, so the browser lands somewhere real.
async fn redirect_target() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<p>client</p>")
                .await;
        }
    });
    port
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver; .ci/run runs it with --ignored"]
async fn consent_page_renders_and_approving_redirects_with_a_code() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = app::Config {
        issuer: Issuer::new_allowing_loopback_http_for_development(base.clone()).unwrap(),
        admin_token: "admin".into(),
        auto_approve: false,
        allow_loopback_cimd: false,
        cimd_root_cert: None,
        dcr_mode: None,
        resource: ResourceUri::parse("http://127.0.0.1:8090/mcp").unwrap(),
        introspection_token: "rs".into(),
        upstream: None,
    };
    let application = app::App::new(config).await.unwrap();
    let router = application.router().await.unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let target = redirect_target().await;
    let redirect = format!("http://127.0.0.1:{target}/cb");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let iat: Value = http
        .post(format!("{base}/admin/projects/proj_demo/iats"))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reg: Value = http
        .post(format!("{base}/oauth2/register"))
        .bearer_auth(iat["token"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(json!({"redirect_uris": [redirect], "client_name": "Browser Test Client", "token_endpoint_auth_method": "none"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    let verifier = CodeVerifier::from_random(&[3; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "browser")
        .finish();

    let driver = Driver::start().await;
    driver
        .session(
            reqwest::Method::POST,
            "/url",
            Some(json!({"url": format!("{base}/oauth2/authorize?{query}")})),
        )
        .await;
    assert_eq!(driver.text("#client-name").await, "Browser Test Client");
    assert_eq!(driver.text("#redirect-host").await, "127.0.0.1");
    assert!(driver.text("#loopback-warning").await.contains("localhost"));
    let approve = driver.element("#approve").await.expect("an approve button");
    driver
        .session(
            reqwest::Method::POST,
            &format!("/element/{approve}/click"),
            Some(json!({})),
        )
        .await;

    let mut landed = String::new();
    for _ in 0..100 {
        landed = driver
            .session(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if landed.starts_with(&redirect) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = url::Url::parse(&landed).unwrap();
    let param = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    assert!(landed.starts_with(&redirect), "{landed}");
    assert!(param("code").is_some_and(|c| c.starts_with("ac_")));
    assert_eq!(param("state").as_deref(), Some("browser"));
    assert_eq!(param("iss").as_deref(), Some(base.as_str()));

    // The code works at the token endpoint.
    let token = http
        .post(format!("{base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", &param("code").unwrap())
                .append_pair("client_id", client_id)
                .append_pair("code_verifier", verifier.as_str())
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    driver.session(reqwest::Method::DELETE, "", None).await;
}

async fn serve(config: app::Config, listener: tokio::net::TcpListener) -> app::App {
    let application = app::App::new(config).await.unwrap();
    let router = application.router().await.unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    application
}

fn demo_config(base: &str, upstream: Option<app::UpstreamConfig>) -> app::Config {
    app::Config {
        issuer: Issuer::new_allowing_loopback_http_for_development(base.to_owned()).unwrap(),
        admin_token: "admin".into(),
        auto_approve: false,
        allow_loopback_cimd: false,
        cimd_root_cert: None,
        dcr_mode: None,
        resource: ResourceUri::parse("http://127.0.0.1:8090/mcp").unwrap(),
        introspection_token: "rs".into(),
        upstream,
    }
}

/// The upstream chain through both pages: the MCP client sends the browser
/// to A, A to B (B's demo login and consent page), B back to A (A's
/// consent page naming the signed-in user), A to the client with a code.
#[tokio::test]
#[ignore = "needs chromium and chromedriver; .ci/run runs it with --ignored"]
async fn upstream_login_walks_through_both_pages() {
    use authio_mcp::client::TokenEndpointAuthMethod;
    use authio_mcp::dcr::{IatOptions, PinnedMetadata};

    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_base = format!("http://{}", lb.local_addr().unwrap());
    let b = serve(demo_config(&b_base, None), lb).await;
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_base = format!("http://{}", la.local_addr().unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    let iat = b
        .endpoints
        .server()
        .issue_iat(
            &b.project(),
            IatOptions::new().pinned(PinnedMetadata::auth_method(TokenEndpointAuthMethod::ClientSecretBasic)),
        )
        .await
        .unwrap();
    let reg: Value = http
        .post(format!("{b_base}/oauth2/register"))
        .bearer_auth(iat.token.expose_secret())
        .header("content-type", "application/json")
        .body(
            json!({"redirect_uris": [format!("{a_base}/v1/auth/oauth/oidc/callback")], "client_name": "Service A",
                "token_endpoint_auth_method": "client_secret_basic"})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upstream = app::UpstreamConfig {
        name: authio_mcp::upstream::ProviderName::new("oidc").unwrap(),
        issuer: Issuer::new_allowing_loopback_http_for_development(b_base.clone()).unwrap(),
        client_id: reg["client_id"].as_str().unwrap().to_owned(),
        client_secret: Some(authio_mcp::secret::SecretString::from(
            reg["client_secret"].as_str().unwrap(),
        )),
        private_key_jwt: false,
        allow_http: true,
        userinfo: false,
        http: None,
    };
    let a = serve(demo_config(&a_base, Some(upstream)), la).await;

    let target = redirect_target().await;
    let redirect = format!("http://127.0.0.1:{target}/cb");
    let iat = a
        .endpoints
        .server()
        .issue_iat(&a.project(), IatOptions::new())
        .await
        .unwrap();
    let reg: Value = http
        .post(format!("{a_base}/oauth2/register"))
        .bearer_auth(iat.token.expose_secret())
        .header("content-type", "application/json")
        .body(
            json!({"redirect_uris": [redirect], "client_name": "MCP Client", "token_endpoint_auth_method": "none"})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    let verifier = CodeVerifier::from_random(&[4; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "chain")
        .finish();

    let driver = Driver::start().await;
    driver
        .session(
            reqwest::Method::POST,
            "/url",
            Some(json!({"url": format!("{a_base}/v1/auth/oauth/oidc/authorize?{query}")})),
        )
        .await;
    // B's page: A is the client; sign in as alice.
    assert!(driver.wait_for_url(&b_base).await.starts_with(&b_base));
    assert_eq!(driver.text("#client-name").await, "Service A");
    driver.type_into("#username", "alice").await;
    driver.click("#approve").await;
    // A's page: the MCP client, and the user B vouched for.
    assert!(driver.wait_for_url(&a_base).await.starts_with(&a_base));
    assert_eq!(driver.text("#client-name").await, "MCP Client");
    let subject = authio_mcp::upstream::local_subject(&b_base, "alice");
    assert_eq!(
        driver.text("#signed-in-as").await,
        "alice@example.com",
        "B's verified email"
    );
    let source = driver.session(reqwest::Method::GET, "/source", None).await;
    let source = source.as_str().unwrap();
    assert!(
        source.contains("signed-in-as") && !source.contains("id=\"username\""),
        "no user name to type"
    );
    driver.click("#approve").await;

    let landed = driver.wait_for_url(&redirect).await;
    let url = url::Url::parse(&landed).unwrap();
    let param = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    assert!(landed.starts_with(&redirect), "{landed}");
    assert_eq!(param("state").as_deref(), Some("chain"));
    assert_eq!(param("iss").as_deref(), Some(a_base.as_str()));
    let token: Value = http
        .post(format!("{a_base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", &param("code").unwrap())
                .append_pair("client_id", client_id)
                .append_pair("code_verifier", verifier.as_str())
                .finish(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let info: Value = http
        .post(format!("{a_base}/oauth2/introspect"))
        .bearer_auth("rs")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token["access_token"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], subject.as_str());
    driver.session(reqwest::Method::DELETE, "", None).await;
}
