//! The consent page in a real headless browser (Debian's chromium driven
//! through chromedriver's WebDriver API). Opt-in: `cargo test --test
//! browser -- --ignored`, which `.ci/run` does after installing the
//! browser; the plain test command skips it on machines without one.
//!
//! The pages are checked at a phone's width (390 CSS pixels) and on a
//! desktop, and every screen is saved as a PNG under
//! `target/browser-screenshots/` (a CI artifact) for a person to look at.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "support/tls.rs"]
mod tls;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authio_mcp::discovery::Issuer;
use authio_mcp::pages::ErrorKind;
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
        Self::start_with(&[]).await
    }

    /// A session with extra chromium arguments.
    async fn start_with(extra_args: &[&str]) -> Self {
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
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--hide-scrollbars",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": args
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
        // A WebDriver error ("no such element") is an object too.
        if v.get("error").is_some() {
            return None;
        }
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

    async fn go(&self, url: &str) {
        self.session(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn script(&self, script: &str) -> Value {
        self.session(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Sets the window so that the page's viewport is `width` CSS pixels
    /// wide (the window's frame, if any, is measured and added).
    async fn viewport(&self, width: i64, height: i64) {
        self.session(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
        let inner = self.script("return window.innerWidth").await.as_i64().unwrap();
        if inner != width {
            self.session(
                reqwest::Method::POST,
                "/window/rect",
                Some(json!({"width": width + (width - inner), "height": height})),
            )
            .await;
        }
        assert_eq!(self.script("return window.innerWidth").await.as_i64(), Some(width));
    }

    /// Saves the viewport as `target/browser-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.session(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 PNG"))
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let dir = std::path::Path::new(
            &std::env::var("CARGO_TARGET_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").into()),
        )
        .join("browser-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// The page fits its viewport: no horizontal scrolling, text at least
    /// 12 px, the body text 16 px.
    async fn assert_fits_viewport(&self) {
        let v = self
            .script(
                "const d = document.documentElement; \
                 const small = [...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null \
                   && e.childNodes.length && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()) \
                   && parseFloat(getComputedStyle(e).fontSize) < 12).map(e => e.id || e.tagName); \
                 return {scroll: d.scrollWidth, inner: window.innerWidth, small: small, \
                   body: getComputedStyle(document.body).fontSize};",
            )
            .await;
        assert!(
            v["scroll"].as_i64().unwrap() <= v["inner"].as_i64().unwrap(),
            "horizontal overflow: {v}"
        );
        assert_eq!(v["small"], json!([]), "text smaller than 12px: {v}");
        assert_eq!(v["body"], "16px");
    }

    /// The top of the element matched by `css`, in page pixels.
    async fn top(&self, css: &str) -> f64 {
        self.script(&format!(
            "return document.querySelector({}).getBoundingClientRect().top + window.scrollY",
            json!(css)
        ))
        .await
        .as_f64()
        .unwrap_or_else(|| panic!("no element {css}"))
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
    // A phone: 390 CSS pixels wide (tall enough to hold the whole page in
    // the screenshot).
    driver.viewport(390, 1500).await;
    driver.go(&format!("{base}/oauth2/authorize?{query}")).await;
    // The service first, then the host the code goes to, then the name the
    // client chose, marked as unverified (a DCR client).
    assert_eq!(driver.text("#service-name").await, "Authio demo");
    assert_eq!(driver.text("#client-name").await, "Browser Test Client");
    assert_eq!(driver.text("#unverified-name").await, "Unverified name");
    assert_eq!(driver.text("#redirect-host").await, "127.0.0.1");
    assert!(
        driver.element("#client-host").await.is_none(),
        "nothing verified to show"
    );
    assert!(driver.top("#service-name").await < driver.top("#redirect-host").await);
    assert!(driver.top("#redirect-host").await < driver.top("#client-name").await);
    assert!(driver.text("#loopback-warning").await.contains("localhost"));
    // Scopes in words, the resource by its name.
    let scopes = driver.text("#scopes").await;
    assert!(scopes.contains("Read your data through the MCP server"), "{scopes}");
    assert!(
        scopes.contains("Create and change your data through the MCP server"),
        "{scopes}"
    );
    assert!(driver.text("#resources").await.contains("Demo MCP server"));
    // Readable at 390 px; Allow is the primary action, full width, above Deny.
    driver.assert_fits_viewport().await;
    let buttons = driver
        .script(
            "const a = document.getElementById('approve'), d = document.getElementById('deny'); \
             return {aw: a.offsetWidth, at: a.getBoundingClientRect().top, dt: d.getBoundingClientRect().top, \
               abg: getComputedStyle(a).backgroundColor, dbg: getComputedStyle(d).backgroundColor, \
               label: document.querySelector('label[for=username]').textContent};",
        )
        .await;
    assert!(buttons["aw"].as_i64().unwrap() >= 300, "{buttons}");
    assert!(buttons["at"].as_f64() < buttons["dt"].as_f64(), "{buttons}");
    assert_ne!(buttons["abg"], buttons["dbg"], "Allow and Deny look different");
    assert_eq!(
        buttons["dbg"], "rgb(255, 255, 255)",
        "Deny is the secondary, outlined button"
    );
    assert!(buttons["label"].as_str().unwrap().contains("User name"));
    driver.screenshot("consent-dcr-390").await;
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

/// An HTTPS document server on 127.0.0.1 for one CIMD client whose
/// `client_id` is `https://localhost:<port>/client.json`, with a homepage
/// and a logo on that host.
async fn cimd_documents(redirect: String) -> (u16, String) {
    let (acceptor, ca_pem) = tls::self_signed_acceptor(&["localhost"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let redirect = redirect.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some(head) = tls::read_head(&mut tls).await else {
                    return;
                };
                let (kind, body) = if head.starts_with("GET /client.json ") {
                    let doc = json!({
                        "client_id": format!("https://localhost:{port}/client.json"),
                        "client_name": "Verified Browser Client",
                        "client_uri": format!("https://localhost:{port}/"),
                        "logo_uri": format!("https://localhost:{port}/logo.svg"),
                        "redirect_uris": [redirect],
                        "grant_types": ["authorization_code", "refresh_token"],
                        "token_endpoint_auth_method": "none"
                    });
                    ("application/json", doc.to_string())
                } else if head.starts_with("GET /logo.svg ") {
                    (
                        "image/svg+xml",
                        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 40 40'><rect width='40' height='40' rx='8' \
                         fill='#0f766e'/><path d='M11 21l6 6 12-14' stroke='#fff' stroke-width='4' fill='none'/></svg>"
                            .to_owned(),
                    )
                } else {
                    ("text/plain", String::new())
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncache-control: max-age=600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, ca_pem)
}

/// A CIMD client's consent page leads with the host its document came
/// from (verified), then its claimed name and its logo and homepage on
/// that host; on a phone and on a desktop. Deny sends the user back with
/// `access_denied`.
#[tokio::test]
#[ignore = "needs chromium and chromedriver; .ci/run runs it with --ignored"]
async fn cimd_consent_page_leads_with_the_verified_host() {
    let target = redirect_target().await;
    let redirect = format!("http://127.0.0.1:{target}/cb");
    let (doc_port, ca_pem) = cimd_documents(redirect.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = demo_config(&base, None);
    config.allow_loopback_cimd = true;
    config.cimd_root_cert = Some(ca_pem.into_bytes());
    let _app = serve(config, listener).await;
    let client_id = format!("https://localhost:{doc_port}/client.json");
    let verifier = CodeVerifier::from_random(&[5; 32]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "openid email mcp:read offline_access")
        .append_pair("state", "cimd")
        .finish();
    let authorize = format!("{base}/oauth2/authorize?{query}");

    // The logo is served with the test's self-signed certificate.
    let driver = Driver::start_with(&["--ignore-certificate-errors"]).await;
    for (name, width) in [("consent-cimd-390", 390), ("consent-cimd-desktop", 1280)] {
        driver.viewport(width, 1400).await;
        driver.go(&authorize).await;
        assert_eq!(driver.text("#client-host").await, "localhost");
        assert_eq!(driver.text("#verified-badge").await, "Verified domain");
        assert_eq!(driver.text("#client-name").await, "Verified Browser Client");
        assert!(driver.element("#unverified-name").await.is_none());
        assert!(driver.top("#service-name").await < driver.top("#client-host").await);
        assert!(driver.top("#client-host").await < driver.top("#client-name").await);
        let links = driver.text("#client-links").await;
        assert!(links.contains("Homepage") && !links.contains("unverified"), "{links}");
        let logo = driver
            .script("const i = document.querySelector('#client img'); return i ? i.naturalWidth : -1")
            .await;
        assert!(
            logo.as_i64().unwrap() > 0,
            "the verified logo loads under the CSP: {logo}"
        );
        let scopes = driver.text("#scopes").await;
        for words in [
            "Confirm who you are",
            "See your email address",
            "Read your data through the MCP server",
            "Stay connected",
        ] {
            assert!(scopes.contains(words), "{words}: {scopes}");
        }
        driver.assert_fits_viewport().await;
        if width > 500 {
            // Side by side on a desktop: Allow on the right, Deny left.
            let (a, d) = (driver.top("#approve").await, driver.top("#deny").await);
            assert!((a - d).abs() < 1.0, "one row: {a} {d}");
        }
        driver.screenshot(name).await;
    }
    driver.click("#deny").await;
    let landed = driver.wait_for_url(&redirect).await;
    let url = url::Url::parse(&landed).unwrap();
    let param = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    assert_eq!(param("error").as_deref(), Some("access_denied"), "{landed}");
    assert_eq!(param("state").as_deref(), Some("cimd"));
    driver.session(reqwest::Method::DELETE, "", None).await;
}

/// Error pages say whose fault it is and show the request id; an error
/// before the redirect URI is verified stays on the page; a forged or
/// reused consent form says to start again from the app.
#[tokio::test]
#[ignore = "needs chromium and chromedriver; .ci/run runs it with --ignored"]
async fn error_pages_say_whose_fault_it_is() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let application = serve(demo_config(&base, None), listener).await;
    let target = redirect_target().await;
    let redirect = format!("http://127.0.0.1:{target}/cb");
    let driver = Driver::start().await;
    driver.viewport(390, 1000).await;

    // An unknown client asking to send the code to an unverified URI.
    let bad = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", "client_ffffffffffffffffffffffff")
        .append_pair("redirect_uri", &redirect)
        .finish();
    driver.go(&format!("{base}/oauth2/authorize?{bad}")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(driver.wait_for_url(&base).await.starts_with(&base), "not redirected");
    assert_eq!(
        driver.text("#error-title").await,
        ErrorKind::ClientMisconfigured.headline()
    );
    assert_eq!(driver.text("#error-kind").await, "Problem with the app");
    assert!(driver.text("#error-next").await.contains("developer"));
    assert_eq!(driver.text("#error-code").await, "invalid_client");
    let id = driver.text("#request-id").await;
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "the example's request id: {id}"
    );
    let links = driver.script("return document.querySelectorAll('a').length").await;
    assert_eq!(links, json!(0), "no way back to the client");
    driver.assert_fits_viewport().await;
    driver.screenshot("error-client-misconfigured-390").await;

    // A consent form that was tampered with (or already used).
    let iat = application
        .endpoints
        .server()
        .issue_iat(&application.project(), authio_mcp::dcr::IatOptions::new())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let reg: Value = http
        .post(format!("{base}/oauth2/register"))
        .bearer_auth(iat.token.expose_secret())
        .header("content-type", "application/json")
        .body(json!({"redirect_uris": [redirect], "client_name": "Error Page Client", "token_endpoint_auth_method": "none"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", reg["client_id"].as_str().unwrap())
        .append_pair("redirect_uri", &redirect)
        .append_pair(
            "code_challenge",
            CodeChallenge::s256(&CodeVerifier::from_random(&[6; 32])).as_str(),
        )
        .append_pair("code_challenge_method", "S256")
        .finish();
    driver.go(&format!("{base}/oauth2/authorize?{query}")).await;
    assert_eq!(driver.text("#client-name").await, "Error Page Client");
    driver
        .script("document.querySelector('input[name=csrf]').value = 'forged'; return null")
        .await;
    driver.click("#approve").await;
    for _ in 0..50 {
        if driver.element("#error-title").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(driver.text("#error-title").await, ErrorKind::StartAgain.headline());
    assert_eq!(driver.text("#error-kind").await, "Sign-in expired");
    assert!(driver.text("#error-next").await.contains("start signing in again"));
    assert!(!driver.text("#request-id").await.is_empty());
    assert!(driver.wait_for_url(&base).await.starts_with(&base), "not redirected");
    driver.assert_fits_viewport().await;
    driver.screenshot("error-start-again-390").await;
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
